//! Issue 14 item 4: `tongdao serve --demo` tells the story on its own. The real
//! binary starts with nothing configured but the listen address (and, for the
//! PostgreSQL half, the store); the test reads the keys it prints and, over the
//! API with those keys only, waits (polling, with a deadline) until messages are
//! delivered, an MO got a reply from a module, a subscription was cancelled by
//! `TD` and a charge exists. Runs on SQLite, and on PostgreSQL when configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long the story may take to show (the brief: about 90 s).
const STORY: Duration = Duration::from_secs(90);
/// How often the test asks the API again.
const POLL: Duration = Duration::from_millis(500);

/// What the demo printed: its base URL, the admin key and the partner key.
struct Demo {
    child: Child,
    base: String,
    admin_key: String,
    partner_key: String,
    banner: Vec<String>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(dir: &std::path::Path, store_url: Option<&str>) -> Demo {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongdao"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TONGDAO_") && key.contains("__") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["serve", "--demo"])
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .env("TONGDAO_HTTP__LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(url) = store_url {
        cmd.env("TONGDAO_STORE__URL", url);
    }
    let mut child = cmd.spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = Vec::new();
    let (mut admin_key, mut partner_key) = (None, None);
    let word = |rest: &str| rest.split_whitespace().next().map(str::to_string);
    let base = loop {
        let line = lines
            .next()
            .expect("the demo exited before it listened")
            .unwrap();
        if let Some(rest) = line.trim_start().strip_prefix("admin key ") {
            admin_key = word(rest);
        }
        if let Some(rest) = line.trim_start().strip_prefix("partner key ") {
            partner_key = word(rest);
        }
        if let Some(url) = line.strip_prefix("tongdao listening on ") {
            break url.trim().to_string();
        }
        banner.push(line);
    };
    std::thread::spawn(move || for _ in lines {});
    Demo {
        child,
        base,
        admin_key: admin_key.expect("the demo printed the admin key"),
        partner_key: partner_key.expect("the demo printed the partner key"),
        banner,
    }
}

fn get(client: &reqwest::blocking::Client, key: &str, url: &str) -> Value {
    let response = client.get(url).bearer_auth(key).send().unwrap();
    let status = response.status();
    let body: Value = response.json().unwrap();
    assert!(status.is_success(), "GET {url}: {status} {body}");
    body
}

/// The items of a list answer: `{items}` (the shared page shape) or the named
/// array of today's answers.
fn items<'a>(body: &'a Value, name: &str) -> &'a Vec<Value> {
    body.get("items")
        .or_else(|| body.get(name))
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("no list `{name}` in {body}"))
}

/// What a newcomer can see so far.
#[derive(Debug, Default)]
struct Story {
    delivered: usize,
    reply: Option<String>,
    cancelled_by_td: usize,
    charges: usize,
    admin_sees_demo: bool,
}

impl Story {
    fn told(&self) -> bool {
        self.delivered > 0
            && self.reply.is_some()
            && self.cancelled_by_td > 0
            && self.charges > 0
            && self.admin_sees_demo
    }
}

fn look(client: &reqwest::blocking::Client, demo: &Demo, story: &mut Story) {
    let base = &demo.base;
    let key = &demo.partner_key;
    let delivered = get(
        client,
        key,
        &format!("{base}/v1/messages?status=delivered&limit=50"),
    );
    story.delivered = items(&delivered, "messages").len();
    // The first quiz subscriber answers the quiz in the demo's first second; the
    // module's reply names the score.
    let to_quiz_user = get(
        client,
        key,
        &format!(
            "{base}/v1/messages?recipient={}&limit=50",
            tongdao::demo::QUIZ_FIRST
        ),
    );
    story.reply = items(&to_quiz_user, "messages")
        .iter()
        .filter_map(|m| m["text"].as_str())
        .find(|t| t.contains("总分"))
        .map(str::to_string);
    let services = get(client, key, &format!("{base}/v1/services"));
    let jokes = items(&services, "services")
        .iter()
        .find(|s| s["code"] == "XH")
        .expect("the demo has the jokes service XH");
    let cancelled = get(
        client,
        key,
        &format!(
            "{base}/v1/services/{}/subscriptions?status=cancelled",
            jokes["id"]
        ),
    );
    story.cancelled_by_td = items(&cancelled, "subscriptions").len();
    let month = tongdao::billing::calendar::Month::of_ms(tongdao::store::now_ms());
    let charges = get(client, key, &format!("{base}/v1/charges?month={month}"));
    story.charges = items(&charges, "charges").len();
    let partners = get(client, &demo.admin_key, &format!("{base}/v1/partners"));
    story.admin_sees_demo = items(&partners, "partners")
        .iter()
        .any(|p| p["name"] == "demo" && p["display_name"] == "乐游");
}

fn demo_tells_the_story(store_url: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path(), store_url);
    let banner = demo.banner.join("\n");
    for shown in [
        format!("{}/console", demo.base),
        format!("{}/docs", demo.base),
    ] {
        assert!(banner.contains(&shown), "{shown} in the banner:\n{banner}");
    }
    let client = reqwest::blocking::Client::new();
    let modules = get(
        &client,
        &demo.partner_key,
        &format!("{}/v1/modules", demo.base),
    );
    let names: Vec<&str> = items(&modules, "modules")
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["horoscope", "jokes", "quiz"]);
    // The demo partner has an agreement: its statement of the month exists.
    let month = tongdao::billing::calendar::Month::of_ms(tongdao::store::now_ms());
    let statement = get(
        &client,
        &demo.partner_key,
        &format!("{}/v1/statements/{month}", demo.base),
    );
    assert_eq!(statement["month"], month.to_string());

    let started = Instant::now();
    let mut story = Story::default();
    loop {
        look(&client, &demo, &mut story);
        if story.told() {
            break;
        }
        assert!(
            started.elapsed() < STORY,
            "after {STORY:?} the demo has not told its story: {story:?}"
        );
        std::thread::sleep(POLL);
    }
    eprintln!(
        "demo ({}): story told in {:.1} s: {story:?}",
        store_url.map_or("sqlite", |_| "postgres"),
        started.elapsed().as_secs_f64()
    );
    if store_url.is_none() {
        assert!(
            dir.path().join("tongdao-data/tongdao.db").exists(),
            "the SQLite file is created"
        );
    }
}

/// Issue 14 item 4: pushes, receipts, replies, a `TD` and money within
/// about a minute, read over the API with the printed keys; both stores.
#[test]
fn item4_serve_demo_shows_pushes_receipts_replies_td_and_charges() {
    demo_tells_the_story(None);
    let url = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(common::postgres_url());
    if let Some(url) = url {
        demo_tells_the_story(Some(&url));
    }
}
