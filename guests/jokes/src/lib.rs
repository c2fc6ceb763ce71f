//! Example Tongdao module: a joke a day (service `XH`, 笑话).
//!
//! The jokes are not built in: the partner uploads them to its content library,
//! collection `jokes`, over the platform's API, and can add more at any time
//! without uploading a new module.
//!
//! * `bulletin` goes round the collection one joke per day, chosen by the push's
//!   date, so the same push asked for twice gets the same joke. An empty library
//!   is a business error ([`ModuleError::NoContent`]): nothing is sent.
//! * `on_mo` answers `MORE` / `再来` with a random joke.

use tongdao_sdk::clock::Date;
use tongdao_sdk::{
    Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo, SubscriptionEvent, content,
    log, random, text,
};

/// The content library collection this module reads.
const COLLECTION: &str = "jokes";

struct Jokes;

impl Module for Jokes {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "jokes".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "每日笑话：轮流推送内容库 jokes 中的笑话".into(),
            services: vec!["XH".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let day = Date::parse(&request.date)
            .ok_or_else(|| {
                ModuleError::InvalidRequest(format!(
                    "push date {:?} is not YYYY-MM-DD",
                    request.date
                ))
            })?
            .days_since_epoch();
        match content::item_for_day(COLLECTION, day) {
            Some(item) => Ok(Bulletin::Single(item.text)),
            None => {
                log::warn("the `jokes` collection is empty: nothing to send");
                Err(ModuleError::NoContent(
                    "the content library collection `jokes` is empty".into(),
                ))
            }
        }
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let keyword = text::keyword(&message.text);
        if !matches!(keyword.as_str(), "MORE" | "再来" | "再来一个") {
            return Ok(Some("想再听一个？回复“再来”或 MORE。".into()));
        }
        let count = content::count(COLLECTION);
        let joke = content::get(COLLECTION, random::below(u64::from(count)) as u32);
        Ok(Some(match joke {
            Some(item) => item.text,
            None => "笑话库正在补充中，稍后再来吧！".into(),
        }))
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some(
            "欢迎订阅每日笑话！每天一个笑话，想多听一个就回复“再来”。".into(),
        ))
    }

    fn on_unsubscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some("感谢您一直以来的陪伴，祝您天天开心！".into()))
    }
}

tongdao_sdk::export_module!(Jokes);
