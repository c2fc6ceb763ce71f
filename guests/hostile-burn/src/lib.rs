//! Test fixture: a module that legitimately burns CPU: `bulletin` computes until
//! its call clock (WASI's monotonic clock) shows 80 ms, under the 100 ms deadline,
//! then answers. Many of these at once must not slow another partner's calls.

use core::hint::black_box;
use std::time::{Duration, Instant};

use tongdao_sdk::{Bulletin, BulletinRequest, Module, ModuleError, ModuleInfo};

struct HostileBurn;

const BURN: Duration = Duration::from_millis(80);

impl Module for HostileBurn {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-burn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: burns 80 ms of CPU per bulletin".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let started = Instant::now();
        let mut counter: u64 = 0;
        while started.elapsed() < BURN {
            for _ in 0..10_000 {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        Ok(Bulletin::Single(format!("burned {counter} rounds")))
    }
}

tongdao_sdk::export_module!(HostileBurn);
