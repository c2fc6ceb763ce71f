//! Test fixture: a valid component for another world.
//!
//! It exports `other:thing/greeter@0.1.0` and nothing of
//! `tongdao:partner/module@1.0.0`; the platform must refuse it at upload as not a
//! Tongdao content module. It uses `wit-bindgen` directly with its own WIT
//! (`wit/greeter.wit`).

#[allow(unsafe_code, clippy::all, clippy::unwrap_used)]
mod bindings {
    wit_bindgen::generate!({
        world: "greeter-world",
        path: "wit",
    });
}

use bindings::exports::other::thing::greeter::Guest;

struct Greeter;

impl Guest for Greeter {
    fn greet() -> String {
        "hello from another world".into()
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{Greeter, bindings};
    bindings::export!(Greeter with_types_in bindings);
}
