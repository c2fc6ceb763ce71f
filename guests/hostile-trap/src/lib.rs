//! Test fixture: a module that crashes.
//!
//! `bulletin` panics (with `panic = "abort"` a panic is a WebAssembly trap);
//! `on-mo` aborts, which executes `unreachable`. The platform must record a crash,
//! not a business error.

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo};

struct HostileTrap;

impl Module for HostileTrap {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-trap".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: panics in bulletin, aborts in on-mo".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        panic!(
            "hostile-trap: deliberate panic in bulletin for push {}",
            request.push_id
        )
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        std::process::abort()
    }
}

tongdao_sdk::export_module!(HostileTrap);
