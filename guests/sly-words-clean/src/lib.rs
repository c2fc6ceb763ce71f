//! Test fixture: another version of the module `sly-words` (it describes itself
//! with that name, as version `2.0.0`) that answers an all-digit MO with a clean
//! text instead of a prohibited word. Uploaded beside `sly-words` it is a second
//! version of the same module: a clean candidate or a last good version whose
//! output differs from `sly-words` on exactly those MOs (shadow runs, automatic
//! rollback).

use tongdao_sdk::{
    Bulletin, BulletinRequest, KeyedBulletin, KeyedText, Mo, Module, ModuleError, ModuleInfo,
    SubscriptionEvent,
};

struct SlyWordsClean;

impl Module for SlyWordsClean {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "sly-words".into(),
            version: "2.0.0".into(),
            description: "Test fixture: clean answers for all-digit MOs".into(),
            services: vec!["T".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        Ok(Bulletin::Keyed(KeyedBulletin {
            attribute: "level".into(),
            variants: vec![
                KeyedText {
                    key: "gold".into(),
                    text: format!("{} 金卡会员：今日好运。", request.date),
                },
                KeyedText {
                    key: "silver".into(),
                    text: format!("{} 银卡会员：今日平安。", request.date),
                },
            ],
            fallback: Some(format!("{} 今日顺利。", request.date)),
        }))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let digits = !message.text.is_empty() && message.text.bytes().all(|b| b.is_ascii_digit());
        Ok(Some(if digits {
            format!("幸运号码 {}，祝您好运。", message.text)
        } else {
            "收到，谢谢。".to_string()
        }))
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some("欢迎订阅。".into()))
    }

    fn on_unsubscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some("再见。".into()))
    }
}

tongdao_sdk::export_module!(SlyWordsClean);
