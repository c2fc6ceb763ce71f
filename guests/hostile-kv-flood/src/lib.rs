//! Test fixture: a module whose `bulletin` writes new keys without end.
//!
//! Every write uses a new key and errors are ignored, so only the platform's limits
//! (host-call quota, key quota, CPU deadline) can stop it.

use tongdao_sdk::{Bulletin, BulletinRequest, Module, ModuleError, ModuleInfo, kv};

struct HostileKvFlood;

impl Module for HostileKvFlood {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-kv-flood".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: writes new keys forever in bulletin".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let mut i: u64 = 0;
        loop {
            let _ = kv::set(&format!("flood:{i}"), b"x");
            i = i.wrapping_add(1);
        }
    }
}

tongdao_sdk::export_module!(HostileKvFlood);
