//! Fuzz target: `tongdao_cmpp::fuzzing::decode_packet` (see its docs for the property checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tongdao_cmpp::fuzzing::decode_packet(data);
});
