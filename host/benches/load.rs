//! Issue 18 item 2: the MO intake and the partner API under a
//! running push to 1,000,000 subscribers, every part a real process on loopback.
//!
//! This process seeds the store (the bulk path, not timed), then starts the real
//! `tongdao serve` and the SMSC simulator `tongdao smsc-sim` as processes of their
//! own and drives them from here, as a handset and partners would:
//!
//! - **MO intake**: MOs injected through the simulator's hook (`POST /mo`) reach the
//!   server as `deliver_sm` and are routed by the keyword router: a sign name to a
//!   subscriber's service (the module's `on-mo`, which answers), a subscribe keyword
//!   from a new number. Latency is the server's `routed_at` (and `received_at`)
//!   against the instant this process sent the MO to the hook (one clock, one
//!   machine); an MO not routed within two minutes after the push is an error.
//! - **API**: a fixed number of workers (`--concurrency`, default 8) on a paced mix
//!   (`--api-rate` requests/s in all, default 100; 0: as fast as answers come) of
//!   partner GETs and a few POSTs (10 %: content items, subscriptions), half with the
//!   key of the pushing tenant and half with another tenant's; `[http]
//!   rate_per_key_per_second = 0` (the per-key limit would otherwise answer 429 to a
//!   benchmark by design). p50/p99 and errors (transport errors and non-2xx).
//!
//! Both run first for `--baseline-secs` (default 30) with no push, then from the
//! push's firing until every MT of the push is final. The push must complete with
//! every MT delivered; its duration is printed. One summary line at the end:
//! `load: subscribers=… push_s=… api_p50_ms=… api_p99_ms=… api_errors=… mo_p50_ms=… mo_p99_ms=… mo_errors=… store=…`.
//!
//! `cargo bench --workspace --bench load [-- N] [--concurrency=C] [--api-rate=R]
//! [--mo-rate=M] [--baseline-secs=S] [--dlr-delay-ms=D] [--tps=T] [--max-awaited=A] [--postgres]`
//! (`--tps`: the operator's submit limit per bind, as an SMSC grants one; 0, the
//! default, none)
//! (`--postgres`: a fresh database beside `TONGDAO_TEST_DATABASE_URL`, dropped at
//! the end).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/bulk.rs"]
mod bulk;
#[path = "../tests/common/mod.rs"]
mod common;
mod process;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::SimProcess;
use process::{Latencies, ms};
use serde_json::json;
use tongdao::schedule::runs;
use tongdao::store::Store;

/// The pushing tenant's first subscriber number.
const FIRST: i64 = 13_000_000_000;
/// The other tenant's subscribers.
const OTHER_FIRST: i64 = 13_500_000_000;
const OTHER_SUBSCRIBERS: i64 = 1_000;
/// New numbers (MO subscribe keywords, API subscriptions) count up from here.
const FRESH_MO: i64 = 13_700_000_000;
const FRESH_API: i64 = 13_600_000_000;

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::args()
        .find_map(|a| a.strip_prefix(&format!("--{name}="))?.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: i64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

/// One tenant as the API driver sees it.
#[derive(Clone)]
struct Tenant {
    name: &'static str,
    key: String,
    service: i64,
    /// A subscriber number of its, for the by-recipient lookup.
    number: String,
}

/// What one phase (baseline or under the push) measured.
#[derive(Default)]
struct Phase {
    /// Per tenant name.
    api: BTreeMap<&'static str, Latencies>,
    /// Per request kind, both tenants.
    kinds: BTreeMap<&'static str, Latencies>,
    mo_intake: Latencies,
    mo_routed: Latencies,
    mo_sent: usize,
    seconds: f64,
}

async fn run(n: i64) {
    let postgres = std::env::args().any(|a| a == "--postgres");
    let concurrency: usize = arg("concurrency", 8);
    let api_rate: f64 = arg("api-rate", 100.0);
    let mo_rate: f64 = arg("mo-rate", 10.0);
    let baseline_secs: u64 = arg("baseline-secs", 30);
    let dlr_delay_ms: u64 = arg("dlr-delay-ms", 1);
    let tps: u32 = arg("tps", 0);
    // `[relay] max_awaited_receipts` (flow control; 0: no bound).
    let max_awaited: u64 = arg(
        "max-awaited",
        tongdao::config::RelayConfig::default().max_awaited_receipts,
    );

    let dir = tempfile::tempdir().unwrap();
    let url = if postgres {
        common::postgres_url()
            .await
            .expect("--postgres needs TONGDAO_TEST_DATABASE_URL")
    } else {
        std::fs::create_dir_all(dir.path().join("tongdao-data")).unwrap();
        format!(
            "sqlite://{}",
            dir.path().join("tongdao-data/tongdao.db").display()
        )
    };
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let seeded = Instant::now();
    let (stars_key, stars) = process::tenant(&store, "stars", "XZ", FIRST, n).await;
    let (moon_key, moon) =
        process::tenant(&store, "moon", "YL", OTHER_FIRST, OTHER_SUBSCRIBERS).await;
    let stars_number = process::service_number(&store, stars).await;
    println!(
        "store: {}; seeded {n} subscribers of `stars` and {OTHER_SUBSCRIBERS} of `moon` in {:.1} s (not timed)",
        if postgres { "postgres" } else { "sqlite" },
        seeded.elapsed().as_secs_f64()
    );

    let sim = Arc::new(SimProcess::start(&[
        "--dlr-delay-ms".to_string(),
        dlr_delay_ms.to_string(),
    ]));
    std::fs::write(
        dir.path().join("tongdao.toml"),
        process::server_config(
            &sim.address,
            &url,
            "rate_per_key_per_second = 0",
            &format!("[schedule]\nbatch = 10000\n[relay]\nmax_awaited_receipts = {max_awaited}\n"),
            tps,
        ),
    )
    .unwrap();
    let (server, base) = common::start_server(dir.path());
    let server = process::KillOnDrop(server);
    let server_pid = server.0.id();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    common::wait_until("both binds up", Duration::from_secs(60), || async {
        sim.stats().await.get("bound_sessions").copied() == Some(2)
    })
    .await;
    println!(
        "server pid {server_pid} at {base}, simulator pid {} (receipts after {dlr_delay_ms} ms); \
         operator TPS per bind {tps} (0: none); API: {concurrency} workers, {api_rate} requests/s in all; MOs: {mo_rate}/s",
        sim.pid()
    );
    let tenants = [
        Tenant {
            name: "stars (pushing)",
            key: stars_key.clone(),
            service: stars,
            number: bulk::number(FIRST, n / 2),
        },
        Tenant {
            name: "moon (other)",
            key: moon_key,
            service: moon,
            number: bulk::number(OTHER_FIRST, 7),
        },
    ];
    let counters = Arc::new(Counters::default());

    // Baseline: the same drivers with no push.
    let mut baseline = drive(
        &base,
        &http,
        &sim,
        &tenants,
        &counters,
        Settings {
            concurrency,
            api_rate,
            mo_rate,
            stars_number: stars_number.clone(),
            subscribers: n,
        },
        Until::For(Duration::from_secs(baseline_secs)),
    )
    .await;
    mo_latencies(&store, &mut baseline, &counters).await;

    // The push, and the drivers until every MT of it is final.
    let cpu_before = process::cpu_secs(server_pid);
    let fired = Instant::now();
    let response = http
        .post(format!("{base}/v1/services/{stars}/push"))
        .bearer_auth(&stars_key)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let run_id = response.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_push(
        counters.clone(),
        store.clone(),
        sim.clone(),
        run_id,
        fired,
        done.clone(),
        server_pid,
    ));
    let mut loaded = drive(
        &base,
        &http,
        &sim,
        &tenants,
        &counters,
        Settings {
            concurrency,
            api_rate,
            mo_rate,
            stars_number,
            subscribers: n,
        },
        Until::Flag(done),
    )
    .await;
    let timings = watcher.await.unwrap();
    let cpu = process::cpu_secs(server_pid) - cpu_before;
    mo_latencies(&store, &mut loaded, &counters).await;

    // Every MT of the push delivered, once each at the SMSC counters' level.
    let run = runs::get(&store, run_id).await.unwrap();
    let delivery = runs::delivery(&store, run_id).await.unwrap();
    // The audience is the seeded N and whoever subscribed since (baseline MOs and
    // API subscriptions of the free service): every one of them got one MT.
    assert_eq!(run.status, "completed", "{run:?}");
    assert!(run.queued >= n, "{run:?}");
    assert_eq!(run.queued, run.subscribers, "{run:?}");
    assert_eq!(delivery.pending, 0, "{delivery:?}");
    assert_eq!(delivery.delivered, run.queued, "{delivery:?}");
    let stats = sim.stats().await;
    let peak_rss_mb = process::status_kb(server_pid, "VmHWM") / 1024;
    drop(server);

    println!();
    println!(
        "push to {} subscribers: all queued {:.1} s after the firing, every MT final {:.1} s after it \
         ({:.0} MT/s); delivered {}, failed {}; simulator accepted {} submits, {} receipts acked; \
         server peak RSS {peak_rss_mb} MiB, CPU {:.2} ms per MT; an MO waited at the SMSC \
         behind at most {} receipts, {} ms at most (max_awaited_receipts {max_awaited})",
        run.queued,
        timings.queued_s,
        timings.final_s,
        run.queued as f64 / timings.final_s,
        delivery.delivered,
        delivery.failed,
        stats.get("accepted").copied().unwrap_or(0),
        stats.get("receipts_acked").copied().unwrap_or(0),
        cpu * 1000.0 / run.queued as f64,
        stats.get("mo_receipts_ahead_max").copied().unwrap_or(0),
        stats.get("mo_wait_max_ms").copied().unwrap_or(0),
    );
    println!();
    println!("| phase | traffic | requests | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (label, phase) in [("no push", &mut baseline), ("under the push", &mut loaded)] {
        let mut all = Latencies::default();
        for (tenant, lat) in &mut phase.api {
            row(label, &format!("API, {tenant}"), lat);
            all.merge(lat.clone());
        }
        row(label, "API, both tenants", &mut all);
        row(
            label,
            "MO: hook → stored (`received_at`)",
            &mut phase.mo_intake,
        );
        row(
            label,
            "MO: hook → routed (`routed_at`)",
            &mut phase.mo_routed,
        );
        println!(
            "| {label} | ({:.0} s; {:.1} API req/s, {:.1} MO/s sent) | | | | | |",
            phase.seconds,
            all.count() as f64 / phase.seconds,
            phase.mo_sent as f64 / phase.seconds
        );
    }
    println!();
    println!("| request (under the push) | requests | errors | p50 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|");
    for (kind, lat) in &mut loaded.kinds {
        println!(
            "| {kind} | {} | {} | {} | {} | {} |",
            lat.count(),
            lat.errors,
            ms(lat.percentile(50.0)),
            ms(lat.percentile(99.0)),
            ms(lat.max())
        );
    }
    let mut all = Latencies::default();
    for lat in loaded.api.values() {
        all.merge(lat.clone());
    }
    for example in &all.error_examples {
        println!("API error example: {example}");
    }
    for example in &loaded.mo_routed.error_examples {
        println!("MO error example: {example}");
    }
    println!(
        "load: subscribers={n} push_s={:.1} api_p50_ms={} api_p99_ms={} api_errors={} mo_p50_ms={} mo_p99_ms={} mo_errors={} store={}",
        timings.final_s,
        ms(all.percentile(50.0)),
        ms(all.percentile(99.0)),
        all.errors,
        ms(loaded.mo_routed.percentile(50.0)),
        ms(loaded.mo_routed.percentile(99.0)),
        loaded.mo_routed.errors,
        if postgres { "postgres" } else { "sqlite" },
    );
    drop_database(&store, postgres, &url).await;
}

fn row(phase: &str, what: &str, lat: &mut Latencies) {
    println!(
        "| {phase} | {what} | {} | {} | {} | {} | {} |",
        lat.count(),
        lat.errors,
        ms(lat.percentile(50.0)),
        ms(lat.percentile(99.0)),
        ms(lat.max())
    );
}

/// Numbers handed out across phases, so no MO or subscription repeats a number
/// (a repeated MO within `[relay] mo_dedup_window_secs` is a redelivery by design).
#[derive(Default)]
struct Counters {
    mo: AtomicU64,
    api_subscriptions: AtomicU64,
    content: AtomicU64,
    /// MOs sent in the current phase: source → the ms it went to the hook.
    sent: std::sync::Mutex<HashMap<String, i64>>,
    /// API latencies of the current phase so far, per (tenant, request kind).
    api: std::sync::Mutex<BTreeMap<(&'static str, &'static str), Latencies>>,
}

struct Settings {
    concurrency: usize,
    api_rate: f64,
    mo_rate: f64,
    stars_number: String,
    subscribers: i64,
}

enum Until {
    For(Duration),
    Flag(Arc<AtomicBool>),
}

impl Until {
    fn over(&self, started: Instant) -> bool {
        match self {
            Self::For(d) => started.elapsed() >= *d,
            Self::Flag(flag) => flag.load(Ordering::Relaxed),
        }
    }
}

/// Run the API workers and the MO stream until `until`; API latencies come back
/// measured, MOs are recorded in `counters.sent` (their latencies are read from
/// the store afterwards).
async fn drive(
    base: &str,
    http: &reqwest::Client,
    sim: &Arc<SimProcess>,
    tenants: &[Tenant; 2],
    counters: &Arc<Counters>,
    settings: Settings,
    until: Until,
) -> Phase {
    let until = Arc::new(until);
    let started = Instant::now();
    counters.sent.lock().unwrap().clear();
    counters.api.lock().unwrap().clear();
    let mut workers = Vec::new();
    for w in 0..settings.concurrency {
        let tenant = tenants[w % 2].clone();
        let (base, http, counters, until) = (
            base.to_string(),
            http.clone(),
            counters.clone(),
            until.clone(),
        );
        let interval = (settings.api_rate > 0.0)
            .then(|| Duration::from_secs_f64(settings.concurrency as f64 / settings.api_rate));
        workers.push(tokio::spawn(async move {
            let mut next = Instant::now();
            let mut k = w;
            while !until.over(started) {
                let (kind, request) = api_request(&base, &http, &tenant, &counters, k);
                k += 1;
                let sent = Instant::now();
                let outcome = match request.send().await {
                    Ok(response) if response.status().is_success() => {
                        // The whole body, as a client reads it.
                        match response.bytes().await {
                            Ok(_) => Ok(sent.elapsed()),
                            Err(e) => Err(format!("{kind}: {e}")),
                        }
                    }
                    Ok(response) => {
                        let status = response.status();
                        let body = response.text().await.unwrap_or_default();
                        Err(format!("{kind}: {status} {body}"))
                    }
                    Err(e) => Err(format!("{kind}: {e}")),
                };
                {
                    let mut api = counters.api.lock().unwrap();
                    let lat = api.entry((tenant.name, kind)).or_default();
                    match outcome {
                        Ok(took) => lat.record(took),
                        Err(e) => lat.error(e),
                    }
                }
                if let Some(interval) = interval {
                    next = (next + interval).max(Instant::now() - interval);
                    tokio::time::sleep_until(next.into()).await;
                }
            }
        }));
    }
    // The MO stream: a sign name from a subscriber of `stars` to its service number
    // (the module answers) four times in five, a subscribe keyword from a new
    // number the fifth time.
    let mos = {
        let (sim, counters, until) = (sim.clone(), counters.clone(), until.clone());
        let interval = Duration::from_secs_f64(1.0 / settings.mo_rate.max(0.001));
        tokio::spawn(async move {
            let mut errors = Latencies::default();
            let mut next = Instant::now();
            let mut sent = 0;
            while !until.over(started) {
                let k = counters.mo.fetch_add(1, Ordering::Relaxed) as i64;
                let (from, text) = if k % 5 == 4 {
                    ((FRESH_MO + k).to_string(), "订XZ".to_string())
                } else {
                    // Spread over the audience (a prime stride).
                    let i = (k * 7_919) % settings.subscribers;
                    (bulk::number(FIRST, i), bulk::sign(k).to_string())
                };
                let at = tongdao::store::now_ms();
                match sim.mo(&from, &settings.stars_number, &text).await {
                    Ok(()) => {
                        counters.sent.lock().unwrap().insert(from, at);
                        sent += 1;
                    }
                    Err(e) => errors.error(format!("hook: {e}")),
                }
                next = (next + interval).max(Instant::now() - interval);
                tokio::time::sleep_until(next.into()).await;
            }
            (sent, errors)
        })
    };
    let mut phase = Phase::default();
    for worker in workers {
        worker.await.unwrap();
    }
    for ((tenant, kind), lat) in std::mem::take(&mut *counters.api.lock().unwrap()) {
        phase.api.entry(tenant).or_default().merge(lat.clone());
        phase.kinds.entry(kind).or_default().merge(lat);
    }
    let (sent, errors) = mos.await.unwrap();
    phase.mo_sent = sent;
    phase.mo_routed.merge(errors);
    phase.seconds = started.elapsed().as_secs_f64();
    phase
}

/// Request `k` of the mix for `tenant`: 90 % GETs a partner makes (its services,
/// runs, MTs, one recipient's MTs, statistics, subscriptions, modules, content),
/// 10 % POSTs (a content item, a subscription of a new number through the API).
fn api_request(
    base: &str,
    http: &reqwest::Client,
    tenant: &Tenant,
    counters: &Counters,
    k: usize,
) -> (&'static str, reqwest::RequestBuilder) {
    let service = tenant.service;
    let get = |path: String| http.get(format!("{base}{path}")).bearer_auth(&tenant.key);
    let post = |path: String, body: serde_json::Value| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&tenant.key)
            .json(&body)
    };
    match k % 20 {
        0..=3 => (
            "GET /v1/services/{id}",
            get(format!("/v1/services/{service}")),
        ),
        4..=5 => (
            "GET /v1/services/{id}/runs",
            get(format!("/v1/services/{service}/runs?limit=5")),
        ),
        6..=8 => ("GET /v1/messages", get("/v1/messages?limit=20".into())),
        9 => (
            "GET /v1/messages?recipient=",
            get(format!("/v1/messages?recipient={}&limit=5", tenant.number)),
        ),
        10..=11 => (
            "GET /v1/stats",
            get("/v1/stats?granularity=day&limit=20".into()),
        ),
        12..=13 => ("GET /v1/services", get("/v1/services".into())),
        14 => ("GET /v1/modules", get("/v1/modules".into())),
        15..=16 => (
            "GET /v1/services/{id}/subscriptions",
            get(format!("/v1/services/{service}/subscriptions?limit=20")),
        ),
        17 => (
            "GET /v1/content/{collection}",
            get("/v1/content/notes?limit=20".into()),
        ),
        18 => {
            let id = counters.content.fetch_add(1, Ordering::Relaxed);
            (
                "POST /v1/content/{collection}",
                post(
                    "/v1/content/notes".into(),
                    json!({"items": [{"id": format!("note-{id}"), "text": "今日提示：多喝水。"}]}),
                ),
            )
        }
        _ => {
            let i = counters.api_subscriptions.fetch_add(1, Ordering::Relaxed);
            (
                "POST /v1/services/{id}/subscriptions",
                post(
                    format!("/v1/services/{service}/subscriptions"),
                    json!({"msisdn": (FRESH_API + i as i64).to_string()}),
                ),
            )
        }
    }
}

/// When the push got where.
struct Timings {
    queued_s: f64,
    final_s: f64,
}

/// Watch the push until every MT of it is final, then raise `done`. Cheap checks
/// first (the run row, the simulator's counters), the run's count over its MTs
/// only once every receipt is in. Prints progress every 30 s.
#[allow(clippy::too_many_arguments)]
async fn watch_push(
    counters: Arc<Counters>,
    store: Store,
    sim: Arc<SimProcess>,
    run_id: i64,
    fired: Instant,
    done: Arc<AtomicBool>,
    server_pid: u32,
) -> Timings {
    let mut queued_s = None;
    let mut last_report = Instant::now();
    let acked_before = sim
        .stats()
        .await
        .get("receipts_acked")
        .copied()
        .unwrap_or(0);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let run = runs::get(&store, run_id).await.unwrap();
        if queued_s.is_none() && runs::FINAL.contains(&run.status.as_str()) {
            assert_eq!(run.status, "completed", "{run:?}");
            queued_s = Some(fired.elapsed().as_secs_f64());
        }
        let stats = sim.stats().await;
        let acked = stats.get("receipts_acked").copied().unwrap_or(0) - acked_before;
        if last_report.elapsed() >= Duration::from_secs(30) {
            println!(
                "  … {:.0} s: {} queued, {} accepted by the SMSC, {acked} receipts acked; server RSS {} MiB",
                fired.elapsed().as_secs_f64(),
                run.queued,
                stats.get("accepted").copied().unwrap_or(0),
                process::status_kb(server_pid, "VmRSS") / 1024,
            );
            last_report = Instant::now();
            if (fired.elapsed().as_secs() / 30).is_multiple_of(2) {
                interim(&counters, &store).await;
            }
        }
        assert!(
            fired.elapsed() < Duration::from_secs(4 * 3600),
            "the push did not finish in four hours: {run:?}"
        );
        if let Some(queued_s) = queued_s
            && acked >= u64::try_from(run.queued).unwrap()
        {
            let delivery = runs::delivery(&store, run_id).await.unwrap();
            if delivery.pending == 0 {
                done.store(true, Ordering::Relaxed);
                return Timings {
                    queued_s,
                    final_s: fired.elapsed().as_secs_f64(),
                };
            }
        }
    }
}

/// The figures of the push so far (every minute, so a push that cannot finish in
/// the time there is still leaves its figures).
async fn interim(counters: &Counters, store: &Store) {
    let mut all = Latencies::default();
    for lat in counters.api.lock().unwrap().values() {
        all.merge(lat.clone());
    }
    let sent = counters.sent.lock().unwrap().clone();
    let mut phase = Phase::default();
    let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
        "SELECT source, received_at, routed_at FROM mo_messages WHERE status = 'routed'",
    )
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (source, _, routed_at) in rows {
        if let (Some(at), Some(routed)) = (sent.get(&source), routed_at) {
            phase.mo_routed.record(Duration::from_millis(
                u64::try_from((routed - at).max(0)).unwrap(),
            ));
        }
    }
    println!(
        "    so far under the push: API {} requests, {} errors, p50 {} ms, p99 {} ms; MOs {} sent, {} routed, hook → routed p50 {} ms, p99 {} ms",
        all.count(),
        all.errors,
        ms(all.percentile(50.0)),
        ms(all.percentile(99.0)),
        sent.len(),
        phase.mo_routed.count(),
        ms(phase.mo_routed.percentile(50.0)),
        ms(phase.mo_routed.percentile(99.0)),
    );
}

/// The MOs of the phase, from the store: intake (`received_at`) and routing
/// (`routed_at`) against the instant each went to the hook. Waits up to two
/// minutes for the last ones; any still not routed is an error.
async fn mo_latencies(store: &Store, phase: &mut Phase, counters: &Counters) {
    let sent = std::mem::take(&mut *counters.sent.lock().unwrap());
    let deadline = Instant::now() + Duration::from_secs(120);
    let rows = loop {
        let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
            "SELECT source, received_at, routed_at FROM mo_messages WHERE status = 'routed'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let routed = rows.iter().filter(|(s, _, _)| sent.contains_key(s)).count();
        if routed >= sent.len() || Instant::now() > deadline {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut seen = 0;
    for (source, received_at, routed_at) in rows {
        let Some(at) = sent.get(&source) else {
            continue;
        };
        seen += 1;
        let since = |t: i64| Duration::from_millis(u64::try_from((t - at).max(0)).unwrap());
        phase.mo_intake.record(since(received_at));
        if let Some(routed) = routed_at {
            phase.mo_routed.record(since(routed));
        }
    }
    for _ in seen..sent.len() {
        phase
            .mo_routed
            .error("an MO sent to the hook was not routed within 2 minutes".into());
    }
}

/// Drop the PostgreSQL database the run made (SQLite's goes with its directory).
async fn drop_database(store: &Store, postgres: bool, url: &str) {
    store.close().await;
    if !postgres {
        return;
    }
    let (Ok(base), Some((_, name))) = (
        std::env::var("TONGDAO_TEST_DATABASE_URL"),
        url.rsplit_once('/'),
    ) else {
        return;
    };
    let admin = Store::connect(&base, 1).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(admin.pool())
        .await;
    admin.close().await;
}
