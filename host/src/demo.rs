//! `serve --demo`: the whole flow on one machine with nothing installed, alive
//! from the first minute. Built-in gateway simulators stand in for two operators,
//! each over its own protocol: 移动 (`mobile`) over CMPP 3.0 to an ISMG simulator,
//! 联通 (`unicom`) over SGIP 1.2 to an SMG simulator that connects back to the
//! relay's SGIP listener (receipts after 0.2 s or more, 2 % of them undelivered);
//! the example modules (built
//! from `guests/` with the SDK and embedded in the binary) are registered under
//! the partner `demo` (乐游) with three approved, scheduled services and 3,000
//! subscribers; simulated handsets keep texting (subscribe, confirm `Y`, answer the
//! quiz, ask for more jokes, `TD` now and then); and charges accrue from the
//! delivered per-message MTs and the monthly subscriptions. Nothing here runs
//! without `--demo`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::billing::calendar::Month;
use crate::billing::{agreement, terms};
use crate::config::Config;
use crate::modules::Registry;
use crate::partners::{self, PartnerError};
use crate::relay::Routes;
use crate::relay::settings::{CmppSettings, ConcatMode, OperatorConfig, Protocol, SgipSettings};
use crate::schedule::{Scheduler, schedules};
use crate::services::{self, FeeType, ServiceTerms};
use crate::store::Store;
use crate::subscriptions::bulk;
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

/// The demo partner's login name and display name.
pub const PARTNER: &str = "demo";
pub const PARTNER_DISPLAY_NAME: &str = "乐游";

/// Receipts come this long after a submit, and this share says undelivered.
const RECEIPT_DELAY: Duration = Duration::from_millis(200);
const UNDELIVERABLE: f64 = 0.02;

/// How often a simulated handset texts (one MO per tick: 0.5 MO/s, bounded).
const HANDSET_TICK: Duration = Duration::from_secs(2);

/// The demo's services: (code, module, schedule, subscriber cohorts as
/// (first number, count, subscriber id prefix)). Jokes every minute (free, so
/// the fee-only detector never counts them); the paid horoscope and quiz daily,
/// as real ones would be, and pushed once when the demo is first installed.
struct DemoService {
    code: &'static str,
    module: &'static str,
    cron: &'static str,
    cohorts: &'static [(i64, i64, &'static str)],
}

const SERVICES: [DemoService; 3] = [
    DemoService {
        code: "XZ",
        module: "horoscope",
        cron: "0 8 * * *",
        cohorts: &[
            (13_900_000_000, 600, "xz-m-"),
            (13_000_000_000, 400, "xz-u-"),
        ],
    },
    DemoService {
        code: "DT",
        module: "quiz",
        cron: "0 9 * * *",
        cohorts: &[
            (15_000_000_000, 300, "dt-m-"),
            (15_500_000_000, 200, "dt-u-"),
        ],
    },
    DemoService {
        code: "XH",
        module: "jokes",
        cron: "* * * * *",
        cohorts: &[
            (13_800_000_000, 1000, "xh-m-"),
            (18_600_000_000, 500, "xh-u-"),
        ],
    },
];

/// The first number of the quiz cohort (each answers the quiz once per cycle).
pub const QUIZ_FIRST: i64 = 15_000_000_000;
/// The first number of the jokes cohort (they send `TD` now and then).
pub const JOKES_FIRST: i64 = 13_800_000_000;

/// Before the platform opens: with no operators configured, start the built-in
/// gateway simulators and point two operators at them (see [`Gateways`]); turn the
/// default quiet hours off so pushes show at any hour (a configured window is kept).
///
/// # Errors
/// A simulator cannot listen.
pub async fn prepare(config: &mut Config) -> anyhow::Result<Option<Arc<Gateways>>> {
    let simulator = if config.operators.is_empty() {
        Some(Arc::new(operators(config).await?))
    } else {
        None
    };
    if config.compliance.quiet_hours == compliance::ComplianceConfig::default().quiet_hours {
        config.compliance.quiet_hours.clear();
        println!("demo: quiet hours off (set [compliance] quiet_hours to try them)");
    }
    // A demo's webhook receiver runs on this machine (`http://127.0.0.1:…`).
    if !config.webhooks.allow_private {
        config.webhooks.allow_private = true;
        println!("demo: webhooks may go to loopback and private addresses");
    }
    Ok(simulator)
}

/// What [`install`] set up.
#[derive(Debug, Clone)]
pub struct Installed {
    pub partner: partners::Partner,
    /// A key of the demo partner issued by this start (earlier keys stay valid).
    pub key: String,
    /// Service code → id.
    pub services: Vec<(String, i64)>,
    /// Services created by this start (pushed once at once).
    pub created: Vec<i64>,
}

/// Register the example modules and content under the partner `demo` (乐游),
/// declare and approve its services with their schedules and subscribers (first
/// start only), and issue a partner key for this start. `routes`: the relay's
/// operators, which carry the demo services.
///
/// # Errors
/// A store error, or an example module the registry refuses.
pub async fn install(
    store: &Store,
    registry: &Registry,
    routes: &Routes,
) -> anyhow::Result<Installed> {
    let operators = routes.operators();
    let (partner, key) = match partners::create(store, PARTNER, PARTNER_DISPLAY_NAME).await {
        Ok((partner, key)) => (partner, key.key),
        Err(PartnerError::Exists(_)) => {
            let key = partners::issue_key(store, PARTNER, false).await?;
            (partners::get(store, PARTNER).await?, key.key)
        }
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
    install_agreement(store, routes, &partner).await?;
    let (services, created) = install_services(store, &partner, operators).await?;
    Ok(Installed {
        partner,
        key,
        services,
        created,
    })
}

/// An agreement from this month with the example terms of the tests (tiers 50/60/70 %
/// to the partner, 6 % tax, 2 % discrepancy tolerance; each operator takes 15 %
/// collection fee and no imbalance fee), so the partner's statement of the month exists from the start
/// . Kept when one exists.
async fn install_agreement(
    store: &Store,
    routes: &Routes,
    partner: &partners::Partner,
) -> anyhow::Result<()> {
    if agreement::get(store, partner.id).await?.is_some() {
        return Ok(());
    }
    let month = Month::of_ms(crate::store::now_ms());
    let input: agreement::AgreementInput = serde_json::from_value(serde_json::json!({
        "start_date": month.first_day().to_string(),
        "term_months": 24,
        "notice_months": 3,
        "remedy_days": 10,
    }))?;
    agreement::set(store, partner.id, &input).await?;
    let terms: terms::AgreementTerms = serde_json::from_value(serde_json::json!({
        "effective_from": month.to_string(),
        "tier_mode": "whole",
        "t1_fen": 5000,
        "t2_fen": 10000,
        "tiers": [
            {"platform_bp": 5000, "partner_bp": 5000},
            {"platform_bp": 4000, "partner_bp": 6000},
            {"platform_bp": 3000, "partner_bp": 7000}
        ],
        "tax_bp": 600,
        "discrepancy_bp": 200,
        "payment_days": 5,
        "activation_rule": "pro-rata"
    }))?;
    terms::add_terms(store, partner.id, &terms).await?;
    for operator in routes.operators() {
        if terms::operator_billing(store, &operator).await?.is_none() {
            let range = terms::OperatorBilling {
                operator: operator.clone(),
                imbalance_min_fen: 0,
                imbalance_max_fen: 8,
                calendar: terms::DEFAULT_CALENDAR.into(),
            };
            terms::set_operator_billing(store, routes, &range).await?;
        }
        let terms: terms::OperatorTerms = serde_json::from_value(serde_json::json!({
            "operator": operator,
            "effective_from": month.to_string(),
            "collection_bp": 1500,
            // No imbalance fee: a push service's MTs far outnumber its MOs,
            // and the demo's statement should show income, not channel fees.
            "imbalance_rate_fen": 0,
            "balance_mt": 2,
            "balance_mo": 1,
            "schedule": "M+2 day 15"
        }))?;
        terms::add_operator_terms(store, partner.id, &terms).await?;
    }
    Ok(())
}

/// The demo's three services, declared and approved like any partner's, each
/// with its schedule and its subscribers (written through the bulk path,
/// [`crate::subscriptions::bulk`]). Returns every demo service and the new ones.
async fn install_services(
    store: &Store,
    partner: &partners::Partner,
    operators: Vec<String>,
) -> anyhow::Result<(Vec<(String, i64)>, Vec<i64>)> {
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
    let mut all = Vec::new();
    let mut created = Vec::new();
    for demo in &SERVICES {
        if let Some(s) = existing.iter().find(|s| s.code == demo.code) {
            all.push((demo.code.to_string(), s.id));
            continue;
        }
        let terms = match demo.code {
            "XZ" => terms(
                "每日星座运势",
                FeeType::Monthly,
                200,
                Some(31),
                "01",
                ["星座", "XINGZUO"],
            ),
            "DT" => terms(
                "每日答题",
                FeeType::PerMessage,
                10,
                None,
                "02",
                ["答题", "DATI"],
            ),
            _ => terms(
                "每日笑话",
                FeeType::Free,
                0,
                None,
                "03",
                ["笑话", "XIAOHUA"],
            ),
        };
        let view = services::create(
            store,
            partner.id,
            "demo",
            demo.code,
            Some(demo.module),
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
        schedules::create(
            store,
            partner.id,
            view.id,
            schedules::ScheduleInput {
                cron: Some(demo.cron.to_string()),
                ..Default::default()
            },
            crate::clock::time_zone_name(),
            "demo",
        )
        .await?;
        for (first, n, prefix) in demo.cohorts {
            bulk::seed(
                store,
                &bulk::Cohort {
                    partner_id: partner.id,
                    service_id: view.id,
                    first: *first,
                    n: *n,
                    id_prefix: prefix,
                    fee_type: terms.fee_type,
                    price_fen: terms.price_fen,
                    source: "demo",
                    activated_at: crate::store::now_ms(),
                    signs: demo.module == "horoscope",
                },
            )
            .await?;
        }
        tracing::info!(
            service = demo.code,
            "demo service approved, scheduled and subscribed"
        );
        all.push((demo.code.to_string(), view.id));
        created.push(view.id);
    }
    Ok((all, created))
}

/// Push each service created by this start once, and the free jokes on every
/// start, so pushes and receipts show before the first cron minute. A refusal
/// (the daily push-now limit after many restarts) is logged, not fatal.
pub async fn first_pushes(scheduler: &Scheduler, installed: &Installed) {
    for (code, id) in &installed.services {
        if code != "XH" && !installed.created.contains(id) {
            continue;
        }
        match scheduler
            .push_now(installed.partner.id, *id, None, "demo")
            .await
        {
            Ok(run) => tracing::info!(service = %code, run = run.id, "demo push started"),
            Err(e) => tracing::warn!(service = %code, error = %e, "demo push not started"),
        }
    }
}

/// The lines `serve --demo` prints once it listens: where to look and the keys
/// to look with. `admin_key`: the admin key in plain text when this start knows
/// it (generated now or configured).
pub fn banner(base: &str, admin_key: Option<&str>, installed: &Installed) -> String {
    let admin = admin_key
        .unwrap_or("(printed at first start, stored hashed; set TONGDAO_ADMIN__KEY to choose one)");
    let services = installed
        .services
        .iter()
        .map(|(code, id)| format!("{code}={id}"))
        .collect::<Vec<_>>()
        .join(" ");
    format!(
        "\n== Tongdao demo ==\n\
         \x20 console      {base}/console\n\
         \x20 API docs     {base}/docs\n\
         \x20 admin key    {admin}\n\
         \x20 partner key  {key}   (partner {name}, {display})\n\
         \x20 services     {services}\n\
         \x20 try          TONGDAO_KEY={key} tongdao --url {base} messages list\n",
        key = installed.key,
        name = installed.partner.name,
        display = installed.partner.display_name,
    )
}

const DEMO_JOKES: &[&str] = &[
    "程序员的三大谎言：马上就好、这个很简单、我没改过那段代码。",
    "老师：你为什么迟到？学生：因为路上有个牌子写着“学校慢行”。",
    "我问手机：我胖吗？它说：请勿遮挡屏幕。",
    "减肥第一天：饿了就喝水。第二天：喝水喝饱了，再吃点。",
    "同事问我为什么总是笑，我说因为工资太少，哭不起。",
];

/// The demo SP's login at both gateways (CMPP SP_Id, SGIP Login Name) and its secret.
const DEMO_SP_ID: &str = "901234";
const DEMO_SECRET: &str = "demo";

/// The demo's operator gateways: China Mobile's ISMG (CMPP 3.0) and China Unicom's
/// SMG (SGIP 1.2), simulated in process, each serving its operator's prefixes.
pub struct Gateways {
    /// 移动's ISMG.
    pub cmpp: tongdao_cmpp::sim::SimHandle,
    /// 联通's SMG.
    pub sgip: tongdao_sgip::sim::SimHandle,
    /// Which operator serves a number.
    routes: Routes,
    /// Numbers the LinkIDs of MOs (CMPP 3.0).
    link_ids: std::sync::atomic::AtomicU64,
}

impl Gateways {
    /// A handset texts `to`: the MO comes from its own operator's gateway (with a
    /// `LinkID` over CMPP 3.0).
    ///
    /// # Errors
    /// A number no operator serves, or a text the gateway cannot send.
    pub fn send_mo(&self, from: &str, to: &str, text: &str) -> anyhow::Result<usize> {
        let (_, operator) = self.routes.route(from)?;
        if operator == "unicom" {
            return Ok(self.sgip.send_mo(from, to, text)?);
        }
        let n = self
            .link_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let link_id = format!("DEMO{n:016}");
        Ok(self.cmpp.send_mo(from, to, "", text, &link_id)?)
    }
}

/// Start the built-in ISMG and SMG simulators and point `mobile` (CMPP 3.0) and
/// `unicom` (SGIP 1.2, with the relay's listener on a free loopback port the SMG
/// connects back to) at them.
async fn operators(config: &mut Config) -> anyhow::Result<Gateways> {
    // The ISMG checks our authenticator and proves it knows the secret too.
    let cmpp = tongdao_cmpp::sim::Sim::start(tongdao_cmpp::sim::SimConfig {
        credentials: Some((DEMO_SP_ID.into(), DEMO_SECRET.into())),
        report_delay: RECEIPT_DELAY,
        report_failure: UNDELIVERABLE,
        ..Default::default()
    })
    .await
    .context("starting the built-in ISMG simulator (CMPP)")?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .context("finding a loopback port for the SGIP listener")?;
    let sgip = tongdao_sgip::sim::Sim::start(tongdao_sgip::sim::SimConfig {
        sp_address: Some(listen),
        sp_credentials: ("smg".into(), "demo".into()),
        report_delay: RECEIPT_DELAY,
        failure_ratio: UNDELIVERABLE,
        ..Default::default()
    })
    .await
    .context("starting the built-in SMG simulator (SGIP)")?;
    let base = |name: &str, prefixes: &[&str], address: String| OperatorConfig {
        name: name.into(),
        address,
        system_id: DEMO_SP_ID.into(),
        password: DEMO_SECRET.into(),
        binds: 1,
        window: 50,
        prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
        source_addr: config.dialogue.short_code.clone(),
        concat: ConcatMode::Udh,
        ..Default::default()
    };
    let mobile = OperatorConfig {
        protocol: Protocol::Cmpp3,
        cmpp: Some(CmppSettings {
            service_id: "HELP".into(),
            ..CmppSettings::default()
        }),
        ..base(
            "mobile",
            crate::relay::numbering::blocks(crate::relay::numbering::CHINA_MOBILE),
            cmpp.local_addr().to_string(),
        )
    };
    let unicom = OperatorConfig {
        protocol: Protocol::Sgip12,
        sgip: Some(SgipSettings {
            node_id: 3_010_099_001,
            corp_id: "12345".into(),
            service_type: "HELP".into(),
            listen: listen.to_string(),
            smg_login: "smg".into(),
            smg_password: "demo".into(),
            ..SgipSettings::default()
        }),
        ..base(
            "unicom",
            crate::relay::numbering::blocks(crate::relay::numbering::CHINA_UNICOM),
            sgip.local_addr().to_string(),
        )
    };
    config.operators.push(mobile);
    config.operators.push(unicom);
    tracing::info!(ismg = %cmpp.local_addr(), smg = %sgip.local_addr(), "built-in gateway simulators listening");
    println!(
        "built-in gateways: mobile over CMPP 3.0 (ISMG {}), unicom over SGIP 1.2 (SMG {}, reports to {listen}); receipts after {} ms, {}% undelivered",
        cmpp.local_addr(),
        sgip.local_addr(),
        RECEIPT_DELAY.as_millis(),
        UNDELIVERABLE * 100.0
    );
    Ok(Gateways {
        cmpp,
        sgip,
        routes: Routes::new(&config.operators),
        link_ids: std::sync::atomic::AtomicU64::new(1),
    })
}

/// Simulated handsets, one MO every [`HANDSET_TICK`] in a cycle of ten steps:
/// the quiz cohort answers (a reply), a new user subscribes to the jokes, a jokes
/// subscriber texts `TD`, a new user subscribes to the paid horoscope and confirms
/// with `Y`, another to the quiz (`答题`, `Y`, an answer), a quiz subscriber asks
/// for the leaderboard (`TOP`), a jokes subscriber asks for `MORE`. Every number
/// acts once per cycle, so no user is sent the same paid text twice. Stopped with
/// the platform's background tasks.
pub fn handsets(sim: Arc<Gateways>, short_code: &str) -> tokio::task::JoinHandle<()> {
    let number = |ext: &str| format!("{short_code}{ext}");
    let (horoscope, quiz, jokes) = (number("01"), number("02"), number("03"));
    println!(
        "demo: simulated handsets text every {}s (笑话, 星座 + Y, 答题 + Y, quiz answers, TOP, MORE, TD)",
        HANDSET_TICK.as_secs()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(HANDSET_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for step in 0i64.. {
            tick.tick().await;
            let cycle = step / 10;
            let letter = ["A", "B", "C", "D"][usize::try_from(cycle % 4).unwrap_or(0)];
            let (from, to, text) = match step % 10 {
                0 => ((QUIZ_FIRST + cycle % 300).to_string(), &quiz, letter),
                1 => ((17_800_000_000 + cycle).to_string(), &jokes, "笑话"),
                2 => ((JOKES_FIRST + cycle % 1000).to_string(), &jokes, "TD"),
                3 => ((17_600_000_000 + cycle).to_string(), &horoscope, "星座"),
                4 => ((17_600_000_000 + cycle).to_string(), &horoscope, "Y"),
                5 => ((17_200_000_000 + cycle).to_string(), &quiz, "答题"),
                6 => ((17_200_000_000 + cycle).to_string(), &quiz, "Y"),
                7 => ((17_200_000_000 + cycle).to_string(), &quiz, letter),
                8 => ((15_500_000_000 + cycle % 200).to_string(), &quiz, "TOP"),
                _ => ((17_800_000_000 + cycle).to_string(), &jokes, "MORE"),
            };
            if let Err(e) = sim.send_mo(&from, to, text) {
                tracing::warn!(error = %e, "demo handset could not text");
            }
        }
    })
}
