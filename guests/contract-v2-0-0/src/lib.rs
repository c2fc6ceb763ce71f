//! Test fixture: a complete content module built against `tongdao:partner@2.0.0`
//! (`guests/fixtures/wit/v2.0.0`, a copy of the 1.0.0 contract under another
//! version). The platform must read that version and refuse or report it by name.

#[allow(unsafe_code, clippy::all, clippy::unwrap_used)]
mod bindings {
    wit_bindgen::generate!({
        world: "tongdao:partner/content-module@2.0.0",
        path: "../fixtures/wit/v2.0.0",
        generate_all,
    });
}

use bindings::exports::tongdao::partner::module::{
    BulletinContent, BulletinRequest, Guest, Mo, ModuleError, ModuleInfo, SubscriptionEvent,
};
use bindings::tongdao::partner::log;

struct Contract;

impl Guest for Contract {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "contract-v2-0-0".into(),
            version: "2.0.0".into(),
            description: "Test fixture: built against tongdao:partner@2.0.0".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<BulletinContent, ModuleError> {
        // Use an import, so that the component imports the contract's package too.
        log::write(log::Level::Info, "bulletin");
        Ok(BulletinContent::Single(format!("{}: built against 2.0.0", request.date)))
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(None)
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(None)
    }

    fn on_unsubscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(None)
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{Contract, bindings};
    bindings::export!(Contract with_types_in bindings);
}
