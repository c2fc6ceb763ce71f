//! Test fixture: a module that keeps a call counter in its own linear memory.
//!
//! `bulletin` and `on-mo` answer `call 1` on a fresh instance. An instance reused
//! for a second call would answer `call 2`, so a host that reused instances (and
//! leaked one caller's state into the next call) is caught at once.

use std::sync::atomic::{AtomicU64, Ordering};

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo};

/// Lives in the instance's memory: starts at 0 in every fresh instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

struct StatefulCounter;

fn next_call() -> String {
    format!("call {}", CALLS.fetch_add(1, Ordering::Relaxed) + 1)
}

impl Module for StatefulCounter {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "stateful-counter".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: counts its calls in linear memory".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Ok(Bulletin::Single(next_call()))
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(Some(next_call()))
    }
}

tongdao_sdk::export_module!(StatefulCounter);
