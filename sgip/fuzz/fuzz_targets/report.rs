//! The Report body decoder (SGIP 1.2 Report table), with a re-encode round trip.
#![no_main]
use tongdao_sgip::codec::command;
libfuzzer_sys::fuzz_target!(|data: &[u8]| tongdao_sgip::fuzzing::body(command::REPORT, data));
