//! Test fixture: a complete content module built against `tongdao:partner@1.1.0`
//! (`guests/fixtures/wit/v1.1.0`, a copy of the 1.0.0 contract under another
//! version). The platform must read that version and refuse or report it by name.
//! The module itself is `guests/fixtures/contract_module.rs`, shared by the
//! `contract-v*` fixtures.

#[allow(unsafe_code, clippy::all, clippy::unwrap_used)]
mod bindings {
    wit_bindgen::generate!({
        world: "tongdao:partner/content-module@1.1.0",
        path: "../fixtures/wit/v1.1.0",
        generate_all,
    });
}

const NAME: &str = "contract-v1-1-0";
const VERSION: &str = "1.1.0";

include!("../../fixtures/contract_module.rs");
