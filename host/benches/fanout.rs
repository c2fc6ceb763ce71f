//! A push to N subscribers (default 1,000,000) on SQLite: the horoscope module's
//! 12-variant bulletin fanned out by the scheduler through the outbox's gate, sent
//! over loopback SMPP to the simulator by two binds, every receipt matched.
//! Measures the time from the firing to all outbox rows queued, to all receipts
//! matched, the process's peak RSS (VmHWM) and its CPU time (user + system, from
//! `getrusage`) per MT over the whole push. Ends with one summary line for scripts:
//! `fanout: subscribers=… queued_s=… delivered_s=… peak_rss_mb=… cpu_ms_per_mt=…`.
//!
//! `cargo bench -p tongdao --bench fanout [-- N] [--queue-only] [--batch=N] [--tps=N] [--postgres]` (`--queue-only`:
//! no operator binds, so only the fan-out is measured; `--postgres`: on a fresh
//! PostgreSQL database made beside `TONGDAO_TEST_DATABASE_URL`, as the tests do,
//! dropped at the end).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/bulk.rs"]
mod bulk;
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tongdao::compliance::{Compliance, ComplianceConfig};
use tongdao::config::{ConcatMode, OperatorConfig, RelayConfig, ScheduleConfig};
use tongdao::relay::Relay;
use tongdao::schedule::{Scheduler, runs};
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig};

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let queue_only = std::env::args().any(|a| a == "--queue-only");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, queue_only));
}

/// CPU time this process has used (user + system), in ms.
#[allow(unsafe_code)] // getrusage: a plain syscall writing one struct.
fn cpu_ms() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// A fresh store: SQLite in `dir`, or (`--postgres`) a new PostgreSQL database
/// from the tests' helper.
async fn open_store(dir: &std::path::Path, postgres: bool) -> Store {
    if postgres {
        let test = common::postgres()
            .await
            .expect("--postgres needs TONGDAO_TEST_DATABASE_URL");
        return test.store;
    }
    let url = format!("sqlite://{}", dir.join("bench.db").display());
    let store = Store::connect(&url, 8).await.unwrap();
    store.migrate().await.unwrap();
    store
}

/// Peak resident set size of this process, in MiB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

async fn run(n: i64, queue_only: bool) {
    let dir = tempfile::tempdir().unwrap();
    let postgres = std::env::args().any(|a| a == "--postgres");
    let store = open_store(dir.path(), postgres).await;
    println!("store: {}", if postgres { "postgres" } else { "sqlite" });

    // Not timed: the partner, its module, an approved service, N subscribers.
    let seeded = Instant::now();
    let (registry, partner, service) = bulk::horoscope_tenant(&store).await;
    bulk::subscribers(&store, partner.id, service, 13_800_000_000, n).await;
    println!(
        "seeded {n} subscribers with active subscriptions and a sign in {:.1} s (not timed)",
        seeded.elapsed().as_secs_f64()
    );

    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(1),
        // Keep only a few records: the simulator shares this process's memory.
        max_records: 1_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let operators = [OperatorConfig {
        name: "mobile".into(),
        address: sim.local_addr().to_string(),
        system_id: "bench".into(),
        password: "pw".into(),
        system_type: String::new(),
        // Routes stay; with no binds nothing is sent.
        binds: if queue_only { 0 } else { 2 },
        window: 50,
        // `--tps=N`: an operator's submit rate limit per bind (0: none), so the
        // simulator's owed receipts (in this process's memory) can be kept apart.
        tps: std::env::args()
            .find_map(|a| a.strip_prefix("--tps=").and_then(|n| n.parse().ok()))
            .unwrap_or(0),
        prefixes: vec!["13".into()],
        source_addr: "10661234".into(),
        concat: ConcatMode::Udh,
        ..Default::default()
    }];
    // No quiet hours, so the figure is the fan-out's and not the clock's.
    let compliance = Compliance::new(
        store.clone(),
        ComplianceConfig {
            quiet_hours: String::new(),
            ..ComplianceConfig::default()
        },
    )
    .unwrap();
    let relay = Arc::new(Relay::start(
        store.clone(),
        RelayConfig {
            batch: 512,
            ..RelayConfig::default()
        },
        &operators,
        compliance.clone(),
    ));
    let scheduler = Scheduler::start(
        store.clone(),
        registry,
        relay.clone(),
        compliance,
        ScheduleConfig {
            tick_ms: 50,
            // `--batch=N`: subscriptions per fan-out transaction (default 10,000).
            batch: std::env::args()
                .find_map(|a| a.strip_prefix("--batch=").and_then(|n| n.parse().ok()))
                .unwrap_or(ScheduleConfig::default().batch),
            ..ScheduleConfig::default()
        },
        "10661234".into(),
    )
    .unwrap();

    let fired = Instant::now();
    let cpu_at_firing = cpu_ms();
    let run = scheduler
        .push_now(partner.id, service, None, "bench")
        .await
        .unwrap();
    let queued_s = loop {
        let r = runs::get(&store, run.id).await.unwrap();
        if runs::FINAL.contains(&r.status.as_str()) {
            assert_eq!(r.status, "completed", "{r:?}");
            assert_eq!(r.queued, n, "{r:?}");
            break fired.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "all {n} MTs queued {queued_s:.2} s after the firing (peak RSS so far {:.0} MiB)",
        peak_rss_mb()
    );
    let cpu_per_mt = |cpu: f64| cpu / n as f64;
    if queue_only {
        let cpu = cpu_ms() - cpu_at_firing;
        scheduler.stop().await;
        relay.stop();
        println!(
            "fanout: subscribers={n} queued_s={queued_s:.2} delivered_s=- peak_rss_mb={:.0} cpu_ms_per_mt={:.4}",
            peak_rss_mb(),
            cpu_per_mt(cpu)
        );
        drop_database(&store, postgres).await;
        return;
    }
    // Receipts are acknowledged to the SMSC only once stored and matched.
    let mut last_report = Instant::now();
    let delivered_s = loop {
        let stats = sim.stats();
        if stats.receipts_acked >= u64::try_from(n).unwrap() {
            // A receipt that raced ahead of its submit response is matched by the
            // sweeper a moment later: count from the outbox to be sure.
            let delivery = runs::delivery(&store, run.id).await.unwrap();
            if delivery.delivered >= n {
                break fired.elapsed().as_secs_f64();
            }
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            println!(
                "  … {} submits accepted, {} receipts matched after {:.0} s",
                stats.accepted,
                stats.receipts_acked,
                fired.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let cpu = cpu_ms() - cpu_at_firing;
    scheduler.stop().await;
    relay.stop();
    let delivery = runs::delivery(&store, run.id).await.unwrap();
    assert_eq!(delivery.delivered, n, "{delivery:?}");
    println!(
        "all receipts matched {delivered_s:.1} s after the firing ({:.0} MT/s end to end)",
        n as f64 / delivered_s
    );
    println!(
        "fanout: subscribers={n} queued_s={queued_s:.2} delivered_s={delivered_s:.1} peak_rss_mb={:.0} cpu_ms_per_mt={:.4}",
        peak_rss_mb(),
        cpu_per_mt(cpu)
    );
    drop_database(&store, postgres).await;
}

/// Drop the PostgreSQL database the run made (SQLite's goes with its directory).
async fn drop_database(store: &Store, postgres: bool) {
    let name: Option<(String,)> = if postgres {
        sqlx::query_as("SELECT current_database()")
            .fetch_optional(store.pool())
            .await
            .ok()
            .flatten()
    } else {
        None
    };
    store.close().await;
    if let (Some((name,)), Ok(base)) = (name, std::env::var("TONGDAO_TEST_DATABASE_URL")) {
        let admin = Store::connect(&base, 1).await.unwrap();
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(admin.pool())
            .await;
        admin.close().await;
    }
}
