//! Example Tongdao module: a daily quiz (service `DT`, 每日答题).
//!
//! * `bulletin` sends the day's question, picked from a built-in list by the push's
//!   date, to every subscriber.
//! * `on_mo` takes an answer `A`–`D` (any case, half- or full-width), once per
//!   subscriber per day, and keeps a score per subscriber in the key-value store;
//!   `TOP` or `排行` shows the five best scores.
//!
//! Store layout (keys are shared by all modules of the partner, so they carry the
//! module's prefix `quiz:`):
//!
//! | key | value |
//! |---|---|
//! | `quiz:answered:<date>:<subscriber>` | how many times the subscriber answered that day (only the first counts) |
//! | `quiz:score:<subscriber>` | the subscriber's number of correct answers |

use tongdao_sdk::clock::{self, Date};
use tongdao_sdk::content::index_for_day;
use tongdao_sdk::{
    Bulletin, BulletinRequest, Mo, Module, ModuleError, ModuleInfo, SubscriptionEvent, kv, text,
};

/// One question: the text, four options (A–D) and the index of the right one.
struct Question {
    text: &'static str,
    options: [&'static str; 4],
    answer: usize,
}

#[rustfmt::skip]
const QUESTIONS: [Question; 10] = [
    Question { text: "中国最长的河流是？", options: ["黄河", "长江", "珠江", "黑龙江"], answer: 1 },
    Question { text: "“床前明月光”的作者是？", options: ["杜甫", "白居易", "李白", "王维"], answer: 2 },
    Question { text: "一年中白天最长的节气是？", options: ["春分", "夏至", "秋分", "冬至"], answer: 1 },
    Question { text: "围棋棋盘有多少条横线？", options: ["15", "17", "19", "21"], answer: 2 },
    Question { text: "太阳系中最大的行星是？", options: ["木星", "土星", "地球", "海王星"], answer: 0 },
    Question { text: "“四大发明”不包括？", options: ["造纸术", "火药", "指南针", "算盘"], answer: 3 },
    Question { text: "水的化学式是？", options: ["CO2", "H2O", "O2", "NaCl"], answer: 1 },
    Question { text: "端午节是农历几月初五？", options: ["一月", "三月", "五月", "八月"], answer: 2 },
    Question { text: "熊猫的主食是？", options: ["竹子", "松子", "蜂蜜", "鱼"], answer: 0 },
    Question { text: "一个标准足球队上场几人？", options: ["9", "10", "11", "12"], answer: 2 },
];

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

/// How many score keys the leaderboard reads at most: every key costs a host
/// call, and calls per invocation are capped by the platform. A module with a
/// large audience would maintain a leaderboard key on each correct answer instead.
const LEADERBOARD_SCAN: usize = 200;

struct Quiz;

impl Module for Quiz {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "quiz".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "每日答题：每天一道题，答对加分，回复 TOP 看排行".into(),
            services: vec!["DT".into()],
        }
    }

    fn bulletin(request: BulletinRequest) -> Result<Bulletin, ModuleError> {
        let date = Date::parse(&request.date).ok_or_else(|| {
            ModuleError::InvalidRequest(format!("push date {:?} is not YYYY-MM-DD", request.date))
        })?;
        let q = question_for(date);
        let options: Vec<String> = LETTERS
            .iter()
            .zip(q.options)
            .map(|(letter, option)| format!("{letter}.{option}"))
            .collect();
        Ok(Bulletin::Single(format!(
            "【每日答题 {}月{}日】{} {} 回复字母作答，答对加1分。",
            date.month,
            date.day,
            q.text,
            options.join(" ")
        )))
    }

    fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
        // `ｔｏｐ`, ` Ａ ` and `a` all count: fold width, trim and upper-case.
        let keyword = text::keyword(&message.text);
        if matches!(keyword.as_str(), "TOP" | "排行" | "排行榜") {
            return leaderboard(&message.subscriber).map(Some);
        }
        match LETTERS.iter().position(|&l| keyword == l) {
            Some(choice) => answer(&message.subscriber, choice).map(Some),
            None => Ok(Some(
                "回复 A、B、C 或 D 回答今天的题目，回复 TOP 查看排行榜。".into(),
            )),
        }
    }

    fn on_subscribe(_event: SubscriptionEvent) -> Result<Option<String>, ModuleError> {
        Ok(Some(
            "欢迎参加每日答题！每天一道题，回复字母作答，答对加1分；回复 TOP 查看排行榜。".into(),
        ))
    }
}

tongdao_sdk::export_module!(Quiz);

/// The question of `date` (the same for every subscriber on that day).
fn question_for(date: Date) -> &'static Question {
    let index = index_for_day(date.days_since_epoch(), QUESTIONS.len()).unwrap_or(0);
    &QUESTIONS[index]
}

/// Score the subscriber's `choice` (0 = A) against today's question.
fn answer(subscriber: &str, choice: usize) -> Result<String, ModuleError> {
    // Today in the platform's time zone: the day the bulletin was sent for.
    let today = clock::local_date();
    let q = question_for(today);

    // `incr` is atomic, so two answers arriving at once cannot both be first.
    let attempts = kv::incr(&format!("quiz:answered:{today}:{subscriber}"), 1)?;
    if attempts > 1 {
        return Ok("今天您已经答过啦，明天再来！回复 TOP 查看排行榜。".into());
    }
    // Yesterday's marker is no longer needed; failing to remove it is harmless.
    let yesterday = Date::from_days_since_epoch(today.days_since_epoch() - 1);
    let _ = kv::delete(&format!("quiz:answered:{yesterday}:{subscriber}"));

    let score_key = format!("quiz:score:{subscriber}");
    let right = format!("{}.{}", LETTERS[q.answer], q.options[q.answer]);
    if choice == q.answer {
        let score = kv::incr(&score_key, 1)?;
        Ok(format!("回答正确！答案是 {right}。您的总分：{score}。"))
    } else {
        let score = kv::get_i64(&score_key)?.unwrap_or(0);
        Ok(format!(
            "很遗憾，正确答案是 {right}。您的总分：{score}，明天继续加油！"
        ))
    }
}

/// The five best scores, the asking subscriber marked.
fn leaderboard(asking: &str) -> Result<String, ModuleError> {
    const PREFIX: &str = "quiz:score:";
    let mut scores: Vec<(i64, String)> = Vec::new();
    for key in kv::list_all_keys(PREFIX, LEADERBOARD_SCAN)? {
        // A value that is not a number should not break the board: skip it.
        if let Ok(Some(score)) = kv::get_i64(&key) {
            let subscriber = key.strip_prefix(PREFIX).unwrap_or(&key).to_string();
            scores.push((score, subscriber));
        }
    }
    if scores.is_empty() {
        return Ok("还没有人上榜，快来答题吧！".into());
    }
    // Highest score first; ties by subscriber id, so the order is stable.
    scores.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut lines: Vec<String> = scores
        .iter()
        .take(5)
        .enumerate()
        .map(|(rank, (score, subscriber))| {
            let me = if subscriber == asking {
                "（您）"
            } else {
                ""
            };
            format!("{}. {}{} {}分", rank + 1, shorten(subscriber), me, score)
        })
        .collect();
    // Below the top five? Tell the asking subscriber where they stand.
    if let Some(rank) = scores
        .iter()
        .position(|(_, s)| s == asking)
        .filter(|&r| r >= 5)
    {
        lines.push(format!("您：第{}名 {}分", rank + 1, scores[rank].0));
    }
    Ok(format!("【排行榜】{}", lines.join("；")))
}

/// A subscriber id shortened for display: its last four characters.
fn shorten(subscriber: &str) -> String {
    let count = subscriber.chars().count();
    if count <= 4 {
        return subscriber.to_string();
    }
    let tail: String = subscriber.chars().skip(count - 4).collect();
    format!("…{tail}")
}
