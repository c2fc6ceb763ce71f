//! Fuzz target: `tongdao::fuzzing::content_policy` (see its docs for the properties checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tongdao::fuzzing::content_policy(data);
});
