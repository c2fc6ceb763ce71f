//! Example Tongdao module: a daily horoscope (service `XZ`, 星座运势).
//!
//! * `bulletin` sends one text per zodiac sign, keyed by the subscriber attribute
//!   `sign`; the platform gives every subscriber the text of their sign, and the
//!   fallback to those who have not chosen one yet. The texts come from small
//!   built-in tables and depend only on the date and the sign, so the same push
//!   asked for twice gets the same words. It makes no host call at all: it is the
//!   hot path the platform benchmarks.
//! * `on_mo` lets a user choose a sign by name (`白羊`, `白羊座`, `aries`, …) and
//!   stores it in the `sign` attribute; anything else gets a short help.
//! * `on_subscribe` welcomes and explains how to choose a sign.

use tongdao_sdk::clock::Date;
use tongdao_sdk::{
    Bulletin, BulletinRequest, KeyedBulletin, KeyedText, Mo, Module, ModuleError, ModuleInfo,
    SubscriptionEvent, subscribers, text,
};

/// The subscriber attribute that holds the sign's key (e.g. `aries`).
const ATTRIBUTE: &str = "sign";

/// One zodiac sign: its attribute value, its Chinese name (without 座) and dates.
struct Sign {
    key: &'static str,
    name: &'static str,
    dates: &'static str,
}

#[rustfmt::skip]
const SIGNS: [Sign; 12] = [
    Sign { key: "aries", name: "白羊", dates: "3.21-4.19" },
    Sign { key: "taurus", name: "金牛", dates: "4.20-5.20" },
    Sign { key: "gemini", name: "双子", dates: "5.21-6.21" },
    Sign { key: "cancer", name: "巨蟹", dates: "6.22-7.22" },
    Sign { key: "leo", name: "狮子", dates: "7.23-8.22" },
    Sign { key: "virgo", name: "处女", dates: "8.23-9.22" },
    Sign { key: "libra", name: "天秤", dates: "9.23-10.23" },
    Sign { key: "scorpio", name: "天蝎", dates: "10.24-11.22" },
    Sign { key: "sagittarius", name: "射手", dates: "11.23-12.21" },
    Sign { key: "capricorn", name: "摩羯", dates: "12.22-1.19" },
    Sign { key: "aquarius", name: "水瓶", dates: "1.20-2.18" },
    Sign { key: "pisces", name: "双鱼", dates: "2.19-3.20" },
];

/// The day's outlook; one is picked per sign and date.
const OUTLOOKS: [&str; 12] = [
    "状态在线，适合把拖了很久的小事一口气做完",
    "人缘不错，主动打个招呼会有意外收获",
    "灵感多多，记下来的想法日后会派上用场",
    "节奏放慢一点，细节里藏着今天的好运",
    "适合学习新东西，专注一小时胜过忙碌一整天",
    "财运平稳，理性消费，别为冲动买单",
    "和家人多聊几句，温暖会加倍回来",
    "工作上有人需要你的意见，大胆说出来",
    "小有波折但无大碍，保持耐心就能化解",
    "精力充沛，运动一下会让心情更好",
    "适合整理房间和思路，清爽带来新机会",
    "贵人运佳，遇到难题不妨请教前辈",
];

/// Lucky colours; one is picked per sign and date.
const COLOURS: [&str; 8] = [
    "红色", "橙色", "金色", "绿色", "青色", "蓝色", "紫色", "白色",
];

/// Overall ratings, one to five stars.
const STARS: [&str; 5] = ["★☆☆☆☆", "★★☆☆☆", "★★★☆☆", "★★★★☆", "★★★★★"];

struct Horoscope;

impl Module for Horoscope {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "horoscope".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "每日星座运势：按订户的星座（属性 sign）推送".into(),
            services: vec!["XZ".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let date = Date::parse(&request.date).ok_or_else(|| {
            ModuleError::InvalidRequest(format!("push date {:?} is not YYYY-MM-DD", request.date))
        })?;
        let variants = SIGNS
            .iter()
            .map(|sign| KeyedText {
                key: sign.key.into(),
                text: reading(sign, &request.date, date),
            })
            .collect();
        Ok(Bulletin::Keyed(KeyedBulletin {
            attribute: ATTRIBUTE.into(),
            variants,
            fallback: Some(format!(
                "【{}月{}日星座运势】您还没有设置星座哦！回复星座名称（如：白羊、金牛、aries）即可每天收到专属运势。",
                date.month, date.day
            )),
        }))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        let Some(sign) = find_sign(&message.text) else {
            return Ok(Some(help()));
        };
        subscribers::set_attribute(&message.subscriber, ATTRIBUTE, sign.key)?;
        Ok(Some(format!(
            "已将您的星座设为{}座（{}），明天起为您推送{}座运势。",
            sign.name, sign.dates, sign.name
        )))
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some(format!("欢迎订阅每日星座运势！{}", help())))
    }
}

tongdao_sdk::export_module!(Horoscope);

/// The day's text for one sign. `raw_date` is hashed as sent, `date` is displayed.
fn reading(sign: &Sign, raw_date: &str, date: Date) -> String {
    let h = fnv1a(&[raw_date.as_bytes(), b"/", sign.key.as_bytes()]);
    let outlook = OUTLOOKS[(h % OUTLOOKS.len() as u64) as usize];
    let colour = COLOURS[((h >> 16) % COLOURS.len() as u64) as usize];
    let stars = STARS[((h >> 32) % STARS.len() as u64) as usize];
    let number = (h >> 48) % 9 + 1;
    format!(
        "【{}座 {}月{}日】综合{}。{}。幸运色：{}，幸运数字：{}。",
        sign.name, date.month, date.day, stars, outlook, colour, number
    )
}

/// The sign a user's message names, if any: the English key or the Chinese name,
/// with or without 座, ignoring case, full-width letters and surrounding spaces.
fn find_sign(message: &str) -> Option<&'static Sign> {
    let word = text::keyword(message);
    let word = word.strip_suffix('座').unwrap_or(&word).trim_end();
    SIGNS
        .iter()
        .find(|sign| sign.name == word || sign.key.eq_ignore_ascii_case(word))
}

fn help() -> String {
    let names: Vec<&str> = SIGNS.iter().map(|s| s.name).collect();
    format!(
        "回复星座名称设置您的星座：{}（也可回复英文，如 aries）。",
        names.join("、")
    )
}

/// 64-bit FNV-1a over the concatenation of `parts`: tiny, fast and stable.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.iter()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}
