//! Fuzz target: `tongdao::fuzzing::mo_route` (see its docs for the properties checked).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tongdao::fuzzing::mo_route(data);
});
