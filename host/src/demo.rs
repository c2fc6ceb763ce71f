//! `serve --demo`: the whole flow on one machine with nothing installed. The built-in
//! SMSC simulator stands in for two operators, the example modules (built from
//! `guests/` with the SDK and embedded in the binary) are registered under the
//! partner `demo` with three approved, scheduled services, and simulated handsets
//! subscribe by texting keywords. Nothing here runs without `--demo`.

use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::modules::Registry;
use crate::partners::{self, PartnerError};
use crate::relay::settings::{ConcatMode, OperatorConfig};
use crate::schedule::schedules;
use crate::services::{self, FeeType, ServiceTerms};
use crate::store::Store;
use crate::{compliance, content};

/// The example horoscope module (`horoscope.wasm`): a bulletin keyed by the
/// subscriber attribute `sign`, service `XZ`. Its `bulletin` makes no host call.
pub const HOROSCOPE: &[u8] = include_bytes!(concat!(env!("TONGDAO_GUESTS_DIR"), "/horoscope.wasm"));

/// The example quiz module (`quiz.wasm`): a daily question, answers scored in the
/// key-value store, `TOP` for a leaderboard; service `DT`.
pub const QUIZ: &[u8] = include_bytes!(concat!(env!("TONGDAO_GUESTS_DIR"), "/quiz.wasm"));

/// The example jokes module (`jokes.wasm`): rotates through the content library
/// collection `jokes`, `MORE`/`再来` for a random one; service `XH`.
pub const JOKES: &[u8] = include_bytes!(concat!(env!("TONGDAO_GUESTS_DIR"), "/jokes.wasm"));

/// The example modules `serve --demo` registers, by module name (the name each
/// one describes itself with).
pub const EXAMPLES: &[(&str, &[u8])] =
    &[("horoscope", HOROSCOPE), ("quiz", QUIZ), ("jokes", JOKES)];

/// Before the platform opens: with no operators configured, start the built-in
/// SMSC simulator and point two operators at it; turn the default quiet hours off
/// so pushes show at any hour (a configured window is kept).
pub async fn prepare(
    config: &mut Config,
) -> anyhow::Result<Option<Arc<tongdao_smpp::sim::SimHandle>>> {
    let simulator = if config.operators.is_empty() {
        Some(Arc::new(operators(config).await?))
    } else {
        None
    };
    if config.compliance.quiet_hours == compliance::ComplianceConfig::default().quiet_hours {
        config.compliance.quiet_hours.clear();
        println!("demo: quiet hours off (set [compliance] quiet_hours to try them)");
    }
    Ok(simulator)
}

/// Register the example modules and content under the partner `demo`; print its
/// key when it is created. `operators`: the operator names the demo services are
/// registered with (all the relay routes to).
pub async fn install(
    store: &Store,
    registry: &Registry,
    operators: Vec<String>,
) -> anyhow::Result<()> {
    let partner = match partners::create(store, "demo", "Demo Content Partner").await {
        Ok((partner, key)) => {
            println!(
                "demo partner created; its API key (shown once): {}",
                key.key
            );
            partner
        }
        Err(PartnerError::Exists(_)) => partners::get(store, "demo").await?,
        Err(e) => return Err(e.into()),
    };
    for (name, wasm) in EXAMPLES {
        let uploaded = registry
            .upload(&partner, wasm, "demo")
            .await
            .with_context(|| format!("registering example module {name}"))?;
        tracing::info!(module = %uploaded.module, version = uploaded.version, created = uploaded.created, "demo module registered");
    }
    let existing = content::list(store, partner.id, "jokes", i64::MIN, 1).await?;
    if existing.is_empty() {
        let items = DEMO_JOKES
            .iter()
            .map(|text| content::NewItem {
                id: None,
                text: (*text).to_string(),
                tags: vec!["demo".into()],
            })
            .collect();
        content::add(store, partner.id, "jokes", items).await?;
    }
    install_services(store, &partner, operators).await
}

/// The demo's three services, declared and approved like any partner's.
async fn install_services(
    store: &Store,
    partner: &partners::Partner,
    operators: Vec<String>,
) -> anyhow::Result<()> {
    let existing = services::list(store, Some(partner.id), None).await?;
    let terms = |name: &str, fee_type, price_fen, monthly_max, ext: &str, keywords: [&str; 2]| {
        ServiceTerms {
            name: name.into(),
            description: format!("{name}（示例业务）"),
            keywords: keywords.map(String::from).to_vec(),
            fee_type,
            price_fen,
            operators: operators.clone(),
            monthly_max_messages: monthly_max,
            number_ext: ext.into(),
        }
    };
    let demo = [
        (
            "XZ",
            "horoscope",
            terms(
                "每日星座运势",
                FeeType::Monthly,
                200,
                Some(31),
                "01",
                ["星座", "XINGZUO"],
            ),
        ),
        (
            "DT",
            "quiz",
            terms(
                "每日答题",
                FeeType::PerMessage,
                10,
                None,
                "02",
                ["答题", "DATI"],
            ),
        ),
        (
            "XH",
            "jokes",
            terms(
                "每日笑话",
                FeeType::Free,
                0,
                None,
                "03",
                ["笑话", "XIAOHUA"],
            ),
        ),
    ];
    // Jokes every minute and horoscopes every ten, so pushes flow while you
    // watch; the paid quiz once a day, as a real one would.
    let crons = [
        ("XZ", "*/10 * * * *"),
        ("DT", "0 9 * * *"),
        ("XH", "* * * * *"),
    ];
    for (code, module, terms) in demo {
        if existing.iter().any(|s| s.code == code) {
            continue;
        }
        let view = services::create(
            store,
            partner.id,
            "demo",
            code,
            Some(module),
            &terms,
            &operators,
        )
        .await?;
        services::submit(store, partner.id, view.id, "demo").await?;
        services::decide(
            store,
            view.id,
            true,
            "demo",
            "example service of serve --demo",
        )
        .await?;
        let cron = crons
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, cron)| cron.to_string());
        schedules::create(
            store,
            partner.id,
            view.id,
            schedules::ScheduleInput {
                cron,
                ..Default::default()
            },
            crate::clock::time_zone_name(),
            "demo",
        )
        .await?;
        tracing::info!(service = code, "demo service approved and scheduled");
    }
    Ok(())
}

const DEMO_JOKES: &[&str] = &[
    "程序员的三大谎言：马上就好、这个很简单、我没改过那段代码。",
    "老师：你为什么迟到？学生：因为路上有个牌子写着“学校慢行”。",
    "我问手机：我胖吗？它说：请勿遮挡屏幕。",
    "减肥第一天：饿了就喝水。第二天：喝水喝饱了，再吃点。",
    "同事问我为什么总是笑，我说因为工资太少，哭不起。",
];

/// China Mobile's and China Unicom's mobile prefixes, for the demo's two operators.
const DEMO_MOBILE_PREFIXES: &[&str] = &[
    "134", "135", "136", "137", "138", "139", "147", "150", "151", "152", "157", "158", "159",
    "172", "178", "182", "183", "184", "187", "188", "195", "197", "198",
];
const DEMO_UNICOM_PREFIXES: &[&str] = &[
    "130", "131", "132", "145", "155", "156", "166", "167", "175", "176", "185", "186", "196",
];

/// Start the built-in SMSC simulator and point two operators at it.
async fn operators(config: &mut Config) -> anyhow::Result<tongdao_smpp::sim::SimHandle> {
    let sim = tongdao_smpp::sim::Sim::start(tongdao_smpp::sim::SimConfig::default())
        .await
        .context("starting the built-in SMSC simulator")?;
    let address = sim.local_addr().to_string();
    for (name, prefixes) in [
        ("mobile", DEMO_MOBILE_PREFIXES),
        ("unicom", DEMO_UNICOM_PREFIXES),
    ] {
        config.operators.push(OperatorConfig {
            name: name.into(),
            address: address.clone(),
            system_id: format!("tongdao-{name}"),
            password: "demo".into(),
            system_type: String::new(),
            binds: 1,
            window: 50,
            tps: 0,
            prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
            source_addr: config.dialogue.short_code.clone(),
            concat: ConcatMode::Udh,
            ..Default::default()
        });
    }
    tracing::info!(%address, "built-in SMSC simulator listening (SMPP 3.4)");
    println!("built-in SMSC simulator on {address} (operators: mobile, unicom)");
    Ok(sim)
}

/// Simulated handsets that subscribe to the demo services the way users do: by
/// texting a keyword to the service's number (and `Y` for the paid one).
pub fn users(sim: Arc<tongdao_smpp::sim::SimHandle>, short_code: &str) {
    let jokes = format!("{short_code}03");
    let horoscope = format!("{short_code}01");
    for i in 1..=5 {
        let _ = sim.send_mo(&format!("1380013800{i}"), &jokes, "笑话");
    }
    for i in 1..=3 {
        let _ = sim.send_mo(&format!("1300013000{i}"), &horoscope, "星座");
    }
    // A user answers the confirmation request after reading it, not before.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        for i in 1..=3 {
            let _ = sim.send_mo(&format!("1300013000{i}"), &horoscope, "Y");
        }
    });
    println!("demo: simulated handsets subscribe to XH (笑话) and XZ (星座, then Y)");
}
