//! The response body decoders (Result + Reserve, shared by every *_Resp); the first
//! octet picks which response.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tongdao_sgip::fuzzing::resp(data));
