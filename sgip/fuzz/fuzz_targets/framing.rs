//! Framing: any byte stream (length guard, header, body dispatch).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tongdao_sgip::fuzzing::stream(data));
