//! Test fixture: a module whose `bulletin` and `on-mo` never return.
//!
//! The platform must end such calls by its CPU deadline (fuel or epoch) and record
//! a crash. `black_box` keeps the optimiser from reasoning the loop away.

use core::hint::black_box;

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo};

struct HostileLoop;

impl Module for HostileLoop {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-loop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: never returns from bulletin or on-mo".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(_request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        spin()
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        spin()
    }
}

tongdao_sdk::export_module!(HostileLoop);

/// Count forever.
fn spin() -> ! {
    let mut counter: u64 = 0;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}
