//! Test fixture: a module whose `bulletin` tries to use 1 GiB of memory.
//!
//! It grows a list of 1 MiB blocks and writes to every one of them, so the memory
//! is really used, not only reserved. The platform's memory cap must stop it (a
//! failed `memory.grow` traps) long before 1 GiB.

use core::hint::black_box;

use tongdao_sdk::{Bulletin, BulletinRequest, Module, ModuleError, ModuleInfo};

const MIB: usize = 1 << 20;

struct HostileMemory;

impl Module for HostileMemory {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-memory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: tries to allocate and touch 1 GiB in bulletin".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        for i in 0..1024 {
            // `vec![x; n]` with a non-zero `x` writes every byte.
            blocks.push(black_box(vec![(i % 255 + 1) as u8; MIB]));
        }
        let total: usize = black_box(&blocks).iter().map(Vec::len).sum();
        Ok(Bulletin::Single(format!("allocated {} MiB", total / MIB)))
    }
}

tongdao_sdk::export_module!(HostileMemory);
