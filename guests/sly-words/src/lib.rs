//! Test fixture: a module that behaves on almost every input and writes a
//! prohibited word (`赌博`, in the default `[compliance] prohibited_words`) for one:
//! an MO made only of digits. Against the admission corpus (six bulletins, a
//! subscription, ten MOs, one MO per variant key of its two-key bulletin, an
//! unsubscription: twenty calls) that is one call in twenty, 5 %.

use tongdao_sdk::{
    Bulletin, BulletinRequest, KeyedBulletin, KeyedText, Mo, Module, ModuleError, ModuleInfo,
    SubscriptionEvent,
};

struct SlyWords;

impl Module for SlyWords {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "sly-words".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Test fixture: a prohibited word for all-digit MOs".into(),
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
            format!("幸运号码 {} 来赌博赢大奖", message.text)
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

tongdao_sdk::export_module!(SlyWords);
