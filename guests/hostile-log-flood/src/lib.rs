//! Test fixture: floods the host with big strings. `bulletin` logs three lines of
//! 30 MB each and answers a short text, or for service `BIG` answers a 40 MB text;
//! `on-mo` answers with a 40 MB reply. The local runner and the server must give
//! the same verdict on each.

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo, log};

struct HostileLogFlood;

const LINE_BYTES: usize = 30 * 1024 * 1024;
const REPLY_BYTES: usize = 40 * 1024 * 1024;

impl Module for HostileLogFlood {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile-log-flood".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: three 30 MB log lines, a 40 MB reply".into(),
            services: vec!["T".into(), "BIG".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        if request.service == "BIG" {
            return Ok(Bulletin::Single("y".repeat(REPLY_BYTES)));
        }
        let line = "x".repeat(LINE_BYTES);
        for _ in 0..3 {
            log::info(&line);
        }
        Ok(Bulletin::Single("logged three 30 MB lines".into()))
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(Some("y".repeat(REPLY_BYTES)))
    }
}

tongdao_sdk::export_module!(HostileLogFlood);
