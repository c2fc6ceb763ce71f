//! Fuzz target: `tongdao_smpp::fuzzing::decode_pdu` (see its docs for the properties checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tongdao_smpp::fuzzing::decode_pdu(data);
});
