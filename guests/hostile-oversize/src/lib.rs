//! Test fixture: a well-behaved module except that its answers are 1 MiB long.
//!
//! `describe` is normal, so the module uploads; `bulletin` returns a 1 MiB single
//! text and `on-mo` a 1 MiB reply. The platform's output cap must refuse both.

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo};

/// The size of every answer, in bytes.
const SIZE: usize = 1 << 20;

struct HostileOversize;

impl Module for HostileOversize {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-oversize".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: answers with 1 MiB texts".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Ok(Bulletin::Single("x".repeat(SIZE)))
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(Some("y".repeat(SIZE)))
    }
}

tongdao_sdk::export_module!(HostileOversize);
