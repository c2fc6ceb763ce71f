//! Issue 18 item 5: the soak. The real `tongdao serve` and the SMSC
//! simulator `tongdao smsc-sim` as processes on loopback, at a steady load for a
//! long time (default one hour), sampled as it runs:
//!
//! - pushes on a schedule: a cron schedule made through the API fires every minute
//!   (every sampling period when that is shorter) to `--subscribers` (default
//!   3,000) with the horoscope module's bulletin;
//! - a stream of MOs through the simulator's hook (`--mo-rate`, default 2/s): sign
//!   names from subscribers (the module answers each with an MT), the `0000` menu,
//!   a subscribe keyword from a new number;
//! - receipts for every MT (the simulator, 10 ms after each submit);
//! - partner API reads (`--api-rate`, default 5 requests/s): services, runs, MTs,
//!   statistics.
//!
//! Every `duration / 60` seconds (60 s for the hour) it samples the server's RSS
//! (`/proc/PID/status` `VmRSS`), its open file descriptors (`/proc/PID/fd`), the
//! queue (MTs `queued`, and all unfinished: queued, submitting, held, submitted),
//! the database (the SQLite file plus its `-wal`), the MTs and MOs stored and the
//! simulator's RSS, and prints them as a table, then one summary line:
//! `soak: secs=… samples=… rss_mb=A→B (max M) fds=A→B (max M) queue_max=… db_mb=A→B mts=… mos=… api=… api_errors=… mo_errors=…`.
//! What grows by design is the history (MTs, MOs, receipts) until `[retention]
//! months`; RSS and file descriptors must stay flat.
//!
//! Not run in CI. `cargo bench --workspace --bench soak [-- SECS]
//! [--subscribers=N] [--mo-rate=M] [--api-rate=R]`, or the duration in
//! `TONGDAO_SOAK_SECS`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/bulk.rs"]
mod bulk;
#[path = "../tests/common/mod.rs"]
mod common;
mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::SimProcess;
use process::ms;
use serde_json::json;
use tongdao::store::Store;

const FIRST: i64 = 13_900_000_000;
const FRESH_MO: i64 = 13_700_000_000;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args()
        .find_map(|a| a.strip_prefix(&format!("--{name}="))?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs: u64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .or_else(|| std::env::var("TONGDAO_SOAK_SECS").ok()?.parse().ok())
        .unwrap_or(3600);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(secs.max(60)));
}

/// One row of the table.
struct Sample {
    t: f64,
    rss_kb: u64,
    fds: usize,
    queued: i64,
    unfinished: i64,
    db_bytes: u64,
    mts: i64,
    mos: i64,
    runs: i64,
    sim_rss_kb: u64,
}

async fn run(secs: u64) {
    let subscribers: i64 = arg("subscribers", 3_000);
    let mo_rate: f64 = arg("mo-rate", 2.0);
    let api_rate: f64 = arg("api-rate", 5.0);
    let every = Duration::from_secs((secs / 60).max(1));
    // The push period: a divisor of 60 s no longer than the sampling period.
    let push_every = [60, 30, 20, 15, 10, 5]
        .into_iter()
        .find(|p| *p <= every.as_secs())
        .unwrap_or(5);

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tongdao-data")).unwrap();
    let db = dir.path().join("tongdao-data/tongdao.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let (key, service) = process::tenant(&store, "stars", "XZ", FIRST, subscribers).await;
    let number = process::service_number(&store, service).await;

    let sim = Arc::new(SimProcess::start(&[
        "--dlr-delay-ms".to_string(),
        "10".to_string(),
    ]));
    std::fs::write(
        dir.path().join("tongdao.toml"),
        process::server_config(&sim.address, &url, "", "", 0),
    )
    .unwrap();
    let (server, base) = common::start_server(dir.path());
    let mut server = process::KillOnDrop(server);
    let pid = server.0.id();
    let http = reqwest::Client::new();
    let cron = if push_every == 60 {
        "0 * * * * *".to_string()
    } else {
        format!("*/{push_every} * * * * *")
    };
    let response = http
        .post(format!("{base}/v1/services/{service}/schedules"))
        .bearer_auth(&key)
        .json(&json!({ "cron": cron }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().await.unwrap()
    );
    println!(
        "soak: {secs} s, a sample every {} s; {subscribers} subscribers pushed to on `{cron}`, \
         {mo_rate} MOs/s, {api_rate} API reads/s; server pid {pid}, simulator pid {}",
        every.as_secs(),
        sim.pid()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let api_count = Arc::new(AtomicU64::new(0));
    let api_errors = Arc::new(AtomicU64::new(0));
    let mo_errors = Arc::new(AtomicU64::new(0));
    // API reads, paced.
    let reader = {
        let (http, base, key, stop, count, errors) = (
            http.clone(),
            base.clone(),
            key.clone(),
            stop.clone(),
            api_count.clone(),
            api_errors.clone(),
        );
        tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / api_rate.max(0.001));
            let paths = [
                format!("/v1/services/{service}"),
                format!("/v1/services/{service}/runs?limit=5"),
                "/v1/messages?limit=20".to_string(),
                "/v1/stats?granularity=hour&limit=24".to_string(),
                format!("/v1/services/{service}/subscriptions?limit=20"),
            ];
            let mut k = 0;
            let mut latencies = process::Latencies::default();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let ok = match http
                    .get(format!("{base}{}", paths[k % paths.len()]))
                    .bearer_auth(&key)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                    _ => false,
                };
                k += 1;
                count.fetch_add(1, Ordering::Relaxed);
                if ok {
                    latencies.record(sent.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(interval).await;
            }
            latencies
        })
    };
    // MOs through the hook.
    let writer = {
        let (sim, stop, errors, number) =
            (sim.clone(), stop.clone(), mo_errors.clone(), number.clone());
        tokio::spawn(async move {
            let interval = Duration::from_secs_f64(1.0 / mo_rate.max(0.001));
            // A number comes round again only after `subscribers` MOs (25 min for
            // 3,000 at 2/s): never within `[relay] mo_dedup_window_secs`, where the
            // same text again would be a redelivery by design.
            let mut k: i64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let (from, text) = match k % 10 {
                    9 => ((FRESH_MO + k).to_string(), "订XZ".to_string()),
                    8 => (
                        bulk::number(FIRST, (k * 7_919) % subscribers),
                        "0000".into(),
                    ),
                    _ => (
                        bulk::number(FIRST, (k * 7_919) % subscribers),
                        bulk::sign(k).to_string(),
                    ),
                };
                if sim.mo(&from, &number, &text).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                k += 1;
                tokio::time::sleep(interval).await;
            }
        })
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    println!();
    println!(
        "| t (s) | server RSS (MiB) | open fds | MTs queued | unfinished | DB + WAL (MiB) | MTs stored | MOs stored | runs | simulator RSS (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    loop {
        let sample = sample(&store, pid, sim.pid(), &db, started).await;
        println!(
            "| {:.0} | {:.1} | {} | {} | {} | {:.1} | {} | {} | {} | {:.1} |",
            sample.t,
            sample.rss_kb as f64 / 1024.0,
            sample.fds,
            sample.queued,
            sample.unfinished,
            sample.db_bytes as f64 / 1_048_576.0,
            sample.mts,
            sample.mos,
            sample.runs,
            sample.sim_rss_kb as f64 / 1024.0,
        );
        samples.push(sample);
        if started.elapsed() >= Duration::from_secs(secs) {
            break;
        }
        let next = every.mul_f64(samples.len() as f64);
        tokio::time::sleep(next.saturating_sub(started.elapsed())).await;
    }
    stop.store(true, Ordering::Relaxed);
    let latencies = reader.await.unwrap();
    writer.await.unwrap();
    assert!(
        server.0.try_wait().unwrap().is_none(),
        "the server exited during the soak"
    );
    drop(server);

    let first = &samples[0];
    let last = samples.last().unwrap();
    // After warm-up: the sample at a tenth of the run (the first pushes done).
    let warm = &samples[samples.len() / 10];
    let mb = |kb: u64| kb as f64 / 1024.0;
    let rss_max = samples.iter().map(|s| s.rss_kb).max().unwrap();
    let fds_max = samples.iter().map(|s| s.fds).max().unwrap();
    let queue_max = samples.iter().map(|s| s.queued).max().unwrap();
    println!();
    println!(
        "after warm-up (t = {:.0} s → {:.0} s): RSS {:.1} → {:.1} MiB, fds {} → {}; API p50 {} ms, p99 {} ms",
        warm.t,
        last.t,
        mb(warm.rss_kb),
        mb(last.rss_kb),
        warm.fds,
        last.fds,
        ms(latencies.percentile(50.0)),
        ms(latencies.percentile(99.0)),
    );
    println!(
        "soak: secs={secs} samples={} rss_mb={:.1}→{:.1} (max {:.1}) fds={}→{} (max {fds_max}) queue_max={queue_max} db_mb={:.1}→{:.1} mts={} mos={} runs={} api={} api_errors={} mo_errors={}",
        samples.len(),
        mb(first.rss_kb),
        mb(last.rss_kb),
        mb(rss_max),
        first.fds,
        last.fds,
        first.db_bytes as f64 / 1_048_576.0,
        last.db_bytes as f64 / 1_048_576.0,
        last.mts,
        last.mos,
        last.runs,
        api_count.load(Ordering::Relaxed),
        api_errors.load(Ordering::Relaxed),
        mo_errors.load(Ordering::Relaxed),
    );
    store.close().await;
}

async fn sample(
    store: &Store,
    pid: u32,
    sim_pid: u32,
    db: &std::path::Path,
    started: Instant,
) -> Sample {
    let depth = tongdao::relay::messages::queue_depth(store).await.unwrap();
    let count = |sql: &'static str| async move {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(store.pool()).await.unwrap();
        n
    };
    Sample {
        t: started.elapsed().as_secs_f64(),
        rss_kb: process::status_kb(pid, "VmRSS"),
        fds: process::open_fds(pid),
        queued: depth
            .iter()
            .filter(|d| d.status == "queued")
            .map(|d| d.count)
            .sum(),
        unfinished: depth.iter().map(|d| d.count).sum(),
        db_bytes: process::sqlite_bytes(db),
        mts: count("SELECT COUNT(*) FROM messages").await,
        mos: count("SELECT COUNT(*) FROM mo_messages").await,
        runs: count("SELECT COUNT(*) FROM push_runs").await,
        sim_rss_kb: process::status_kb(sim_pid, "VmRSS"),
    }
}
