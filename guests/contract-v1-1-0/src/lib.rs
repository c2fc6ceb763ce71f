//! Test fixture: the `jokes` example rebuilt against `tongdao:partner@1.1.0`
//! (`wit/v1.1.0`), as a partner's next version of it would be. It describes
//! itself as `jokes` (version `2.0.0`), so it can be uploaded as a later version
//! of the 1.0.0 example, or stand beside it for another partner.
//!
//! * `bulletin` uses the 1.1.0 addition: one text per operator (China Mobile,
//!   China Unicom) and a fallback for everyone else, each naming the day's joke
//!   (`joke <id>`) from the content library collection `jokes`.
//! * `on_mo` answers `MORE` / `再来` like the example (a random joke), but numbers
//!   the jokes each subscriber was told (key `told:<subscriber>`) and says so:
//!   `<joke>（第N个）`. Anything else gets a hint.
//!
//! It uses `wit-bindgen` directly: the SDK's `contract-v1-1` feature would be
//! unified across this guest workspace and move every example to 1.1.0.

#[allow(unsafe_code, clippy::all, clippy::unwrap_used)]
mod bindings {
    wit_bindgen::generate!({
        world: "tongdao:partner/content-module@1.1.0",
        path: "../../wit/v1.1.0",
        generate_all,
    });
}

use bindings::exports::tongdao::partner::module::{
    BulletinContent, BulletinRequest, Guest, Mo, ModuleError, ModuleInfo, SubscriptionEvent,
};
use bindings::tongdao::partner::types::{Operator, OperatorBulletin, OperatorText};
use bindings::tongdao::partner::{content, kv, log, random};

const COLLECTION: &str = "jokes";

struct Jokes;

/// The index of the day's joke: the push date's digits, modulo `count`.
fn index_for(date: &str, count: u32) -> u32 {
    let digits: u64 = date
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0, |n, b| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0')));
    (digits % u64::from(count.max(1))) as u32
}

impl Guest for Jokes {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "jokes".into(),
            version: "2.0.0".into(),
            description: "每日笑话（tongdao:partner@1.1.0）：按运营商措辞".into(),
            services: vec!["XH".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<BulletinContent, ModuleError> {
        let count = content::count(COLLECTION);
        let Some(item) = content::get(COLLECTION, index_for(&request.date, count)) else {
            log::write(log::Level::Warn, "the `jokes` collection is empty");
            return Err(ModuleError::NoContent(
                "the content library collection `jokes` is empty".into(),
            ));
        };
        let text = |greeting: &str| format!("{greeting}今日笑话 joke {}：{}", item.id, item.text);
        Ok(BulletinContent::PerOperator(OperatorBulletin {
            variants: vec![
                OperatorText {
                    operator: Operator::ChinaMobile,
                    text: text("移动用户您好！"),
                },
                OperatorText {
                    operator: Operator::ChinaUnicom,
                    text: text("联通用户您好！"),
                },
            ],
            fallback: Some(text("您好！")),
        }))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let keyword = message.text.trim().to_uppercase();
        if !matches!(keyword.as_str(), "MORE" | "再来" | "再来一个") {
            return Ok(Some("想再听一个？回复“再来”或 MORE。".into()));
        }
        let count = content::count(COLLECTION);
        if count == 0 {
            return Ok(Some("笑话库正在补充中，稍后再来吧！".into()));
        }
        let index = (random::next_u64() % u64::from(count)) as u32;
        let told = kv::incr(&format!("told:{}", message.subscriber), 1)
            .map_err(|e| ModuleError::HostFailure(format!("{e:?}")))?;
        Ok(Some(match content::get(COLLECTION, index) {
            Some(item) => format!("{}（第{told}个）", item.text),
            None => "笑话库正在补充中，稍后再来吧！".into(),
        }))
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some("欢迎订阅每日笑话！回复“再来”多听一个。".into()))
    }

    fn on_unsubscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(None)
    }
}

#[allow(unsafe_code)]
mod export {
    use super::{Jokes, bindings};
    bindings::export!(Jokes with_types_in bindings);
}
