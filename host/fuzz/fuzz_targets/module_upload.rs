//! Fuzz target: `tongdao::fuzzing::module_upload` (see its docs for the properties checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tongdao::fuzzing::module_upload(data);
});
