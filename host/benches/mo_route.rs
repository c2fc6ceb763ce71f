//! MO intake and keyword routing with a backlog (issue 13 item 3): N MOs (default
//! 100,000) from subscribers of an approved service (the Rust `horoscope` module)
//! arrive from the simulator over loopback SMPP and are stored while the router is
//! stopped; then the router starts and is timed until every one is routed. Each MO
//! names a sign, so it goes the whole way: the host's commands and keywords, the
//! module's `on-mo` (which stores the subscriber's sign through a host call), the
//! reply queued through the outbox's gate. Every twentieth MO is
//! the service's code instead, answered by the host (help). Ends with one summary
//! line for scripts: `mo_route: waiting=… routed=… seconds=… mo_per_s=…`, after
//! the intake rate and the routing rate per tenth of the backlog (the first tenth
//! routed with N waiting, the last with N/10).
//!
//! `cargo bench -p tongdao --bench mo_route [-- N] [--postgres] [--send]`
//! (`--postgres`: a fresh database on `TONGDAO_TEST_DATABASE_URL` instead of
//! SQLite; `--send`: the bind stays up and sends the replies while the router
//! works, so both share the machine and the store; without it the binds stop after
//! the intake and the replies stay queued).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/bulk.rs"]
mod bulk;
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tongdao::config::RelayConfig;
use tongdao::mo::DialogueConfig;
use tongdao::mo::router::{self, RouterContext};
use tongdao::relay::Relay;
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig};

/// The signs as users write them.
const SIGNS: [&str; 12] = [
    "白羊座",
    "金牛座",
    "双子座",
    "巨蟹座",
    "狮子座",
    "处女座",
    "天秤座",
    "天蝎座",
    "射手座",
    "摩羯座",
    "水瓶座",
    "双鱼座",
];

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let postgres = std::env::args().any(|a| a == "--postgres");
    let send = std::env::args().any(|a| a == "--send");
    // `RUST_LOG=sqlx::query=debug` lists every statement (what a profile needs).
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, postgres, send));
}

async fn count(store: &Store, condition: &str) -> i64 {
    let (c,): (i64,) = sqlx::query_as(&format!(
        "SELECT COUNT(*) FROM mo_messages WHERE {condition}"
    ))
    .fetch_one(store.pool())
    .await
    .unwrap();
    c
}

async fn run(n: i64, postgres: bool, send: bool) {
    // A fresh store with the server's default pool (`[store] max_connections`).
    let connections = tongdao::config::Config::default().store.max_connections;
    let dir = tempfile::tempdir().unwrap();
    let (name, store) = if postgres {
        let base = std::env::var("TONGDAO_TEST_DATABASE_URL")
            .expect("--postgres needs TONGDAO_TEST_DATABASE_URL");
        let db = format!("tongdao_bench_mo_{}", std::process::id());
        let admin = Store::connect(&base, 1).await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {db}"))
            .execute(admin.pool())
            .await
            .unwrap();
        admin.close().await;
        let (prefix, _) = base.rsplit_once('/').unwrap();
        let store = Store::connect(&format!("{prefix}/{db}"), connections)
            .await
            .unwrap();
        ("postgres", store)
    } else {
        let url = format!("sqlite://{}", dir.path().join("bench.db").display());
        ("sqlite", Store::connect(&url, connections).await.unwrap())
    };
    store.migrate().await.unwrap();

    // Not timed: the partner, its module, an approved service, N subscribers.
    let (registry, partner, service) = bulk::horoscope_tenant(&store).await;
    let first = 13_800_000_000;
    let subscribers = n.min(10_000);
    bulk::subscribers(&store, partner.id, service, first, subscribers).await;
    let dialogue = DialogueConfig::default();
    let live = tongdao::services::all_live(&store).await.unwrap();
    let service_number = live[0].sender(&dialogue.short_code);

    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(1),
        max_records: 1_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let operators = [common::sim_operator(sim.local_addr().to_string(), 1)];
    let compliance = tongdao::compliance::Compliance::new(
        store.clone(),
        tongdao::compliance::ComplianceConfig {
            // No quiet hours: the figure is the router's, not the clock's.
            quiet_hours: String::new(),
            ..Default::default()
        },
    )
    .unwrap();
    let relay = Arc::new(Relay::start(
        store.clone(),
        RelayConfig::default(),
        &operators,
        compliance.clone(),
    ));

    // Intake: N MOs stored while the router is stopped (each subscriber writes in
    // turn, so every number has several MOs waiting, in order).
    let intake_started = Instant::now();
    for i in 0..n {
        let from = (first + i % subscribers).to_string();
        let text = if i % 20 == 19 {
            "XZ"
        } else {
            SIGNS[usize::try_from(i % 12).unwrap()]
        };
        sim.send_mo(&from, &service_number, text).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(3600);
    while count(&store, "1 = 1").await < n {
        assert!(Instant::now() < deadline, "intake stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let intake = intake_started.elapsed().as_secs_f64();
    let waiting = count(&store, "status = 'received'").await;
    if !send {
        // The binds stop: replies are queued through the gate, not sent (sending is
        // the relay bench's figure).
        relay.stop();
    }

    // Routing, timed.
    let started = Instant::now();
    let task = router::start(Arc::new(RouterContext {
        store: store.clone(),
        registry,
        relay: relay.clone(),
        compliance,
        config: dialogue,
    }));
    let tenth = (waiting / 10).max(1);
    let mut marks: Vec<(i64, f64)> = vec![(0, 0.0)];
    let deadline = Instant::now() + Duration::from_secs(3600);
    let routed = loop {
        let routed = count(&store, "status = 'routed'").await;
        let at = started.elapsed().as_secs_f64();
        while marks.last().is_some_and(|(r, _)| routed >= r + tenth) {
            let next = marks.last().map_or(0, |(r, _)| r + tenth);
            marks.push((next, at));
        }
        if routed >= waiting {
            break routed;
        }
        assert!(Instant::now() < deadline, "routing stalled at {routed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    task.abort();
    relay.stop();

    let (replies,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE mo_id IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap();
    let (outcomes,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM mo_messages WHERE outcome = 'module-reply'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    println!(
        "{}: {n} MOs from {subscribers} subscribers stored through SMPP intake in {intake:.1} s ({:.0} MO/s, not timed below)",
        name,
        n as f64 / intake
    );
    println!(
        "replies {}",
        if send {
            "sent by the bind meanwhile"
        } else {
            "queued, not sent (binds stopped)"
        }
    );
    println!(
        "routed {routed} in {seconds:.2} s; {outcomes} answered by the module, {replies} replies queued"
    );
    let rates: Vec<String> = marks
        .windows(2)
        .map(|w| {
            format!(
                "{:.0}",
                (w[1].0 - w[0].0) as f64 / (w[1].1 - w[0].1).max(1e-3)
            )
        })
        .collect();
    println!(
        "MO/s per tenth of the backlog, first (most waiting) to last: {}",
        rates.join(" ")
    );
    println!(
        "mo_route: waiting={waiting} routed={routed} seconds={seconds:.2} mo_per_s={:.0}",
        routed as f64 / seconds
    );
    if postgres {
        store.close().await;
        let base = std::env::var("TONGDAO_TEST_DATABASE_URL").unwrap();
        let admin = Store::connect(&base, 1).await.unwrap();
        sqlx::query(&format!(
            "DROP DATABASE tongdao_bench_mo_{}",
            std::process::id()
        ))
        .execute(admin.pool())
        .await
        .unwrap();
    }
}
