//! Test fixture: a component that implements Tongdao's world but also imports
//! `evil:net/socket@0.1.0`, an interface the host does not offer.
//!
//! It uses `wit-bindgen` directly (partners use `tongdao-sdk`): its world is the
//! contract (`../../wit/v1.0.0`) plus the extra import (`wit/evil.wit`). The
//! platform must refuse it at upload, naming the unknown import.

#[allow(unsafe_code, clippy::all, clippy::unwrap_used)]
mod bindings {
    wit_bindgen::generate!({
        world: "evil:net/hostile-imports@0.1.0",
        path: ["../../wit/v1.0.0", "wit"],
        // Tongdao's interfaces come from the contract's package, not from ours.
        generate_all,
    });
}

use bindings::evil::net::socket;
use bindings::exports::tongdao::partner::module::{
    BulletinContent, BulletinRequest, Guest, Mo, ModuleError, ModuleInfo, SubscriptionEvent,
};

struct HostileImports;

impl Guest for HostileImports {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-imports".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: imports evil:net/socket".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<BulletinContent, ModuleError> {
        // Use the import, so that it stays in the component.
        match socket::connect("exfiltrate.example", 443) {
            Ok(connection) => Ok(BulletinContent::Single(format!("connected: {connection}"))),
            Err(e) => Err(ModuleError::HostFailure(e)),
        }
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        socket::connect(&message.text, 80)
            .map(|c| Some(format!("connected: {c}")))
            .map_err(ModuleError::HostFailure)
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
    use super::{HostileImports, bindings};
    bindings::export!(HostileImports with_types_in bindings);
}
