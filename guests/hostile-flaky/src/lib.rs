//! Test fixture: a bulletin that fails transiently. Each `bulletin` counts itself
//! in the key-value store (`attempts`); the first two spin past the CPU deadline
//! (as a module does on a loaded machine), the third answers. A push run must retry
//! it and send the third answer.

use core::hint::black_box;

use tongdao_sdk::{Bulletin, BulletinRequest, Module, ModuleError, ModuleInfo, kv};

struct HostileFlaky;

impl Module for HostileFlaky {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-flaky".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: the first two bulletins run past the deadline".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let attempt = kv::incr("attempts", 1)?;
        if attempt <= 2 {
            let mut counter: u64 = 0;
            loop {
                counter = black_box(counter.wrapping_add(1));
            }
        }
        Ok(Bulletin::Single(format!(
            "【测试】{} 第 {attempt} 次尝试成功",
            request.date
        )))
    }
}

tongdao_sdk::export_module!(HostileFlaky);
