//! Test fixture: a module that sleeps through WASI (`std::thread::sleep`, which is
//! `wasi:clocks/monotonic-clock.subscribe-duration` plus `wasi:io/poll`).
//!
//! `bulletin` sleeps one second and answers with how long the WASI monotonic clock
//! says it slept; `on-mo` writes the key `held` (a test holds that row's lock to
//! make the host call block) and answers `stored`. The platform must never let a
//! sleep hold an instance slot or outlast the call's wall-clock backstop.

use std::time::{Duration, Instant};

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo, kv};

struct HostileSleep;

impl Module for HostileSleep {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-sleep".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: sleeps one second per bulletin".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(1));
        Ok(Bulletin::Single(format!(
            "slept {} ms",
            started.elapsed().as_millis()
        )))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        kv::set("held", message.text.as_bytes())?;
        Ok(Some("stored".into()))
    }
}

tongdao_sdk::export_module!(HostileSleep);
