//! Test fixture: reports the time a module sees. `bulletin` answers
//! `offset=<s> date=<push date> local=<YYYY-MM-DD>` and `on-mo` the same without the
//! push date: `offset` is the host's `clock.utc-offset-seconds` (the platform time
//! zone's offset, `[platform] time_zone`), `local` the local date the SDK derives
//! from it. A host that kept a fixed offset, or a zone other than the platform's,
//! shows in the text.

use tongdao_sdk::{Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo, clock};

struct ClockProbe;

fn seen() -> String {
    format!(
        "offset={} local={}",
        clock::utc_offset_seconds(),
        clock::local_date()
    )
}

impl Module for ClockProbe {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "clock-probe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: reports its UTC offset and local date".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Ok(Bulletin::Single(format!(
            "{} date={}",
            seen(),
            request.date
        )))
    }

    fn on_mo(_message: Mo) -> Result<Option<String>, ModuleError> {
        Ok(Some(seen()))
    }
}

tongdao_sdk::export_module!(ClockProbe);
