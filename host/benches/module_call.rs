//! Per-call cost of the sandbox: instantiate + `bulletin` of the Rust `horoscope`
//! guest in a fresh instance per call, on one core, plus cold compile and cache-hit
//! load times. Ends with one summary line for scripts:
//! `module_call: p50_us=… p99_us=… calls_per_s=…`
//!
//! `cargo bench -p tongdao --bench module_call [-- CALLS]` (default 10,000 calls).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use tongdao::config::RuntimeConfig;
use tongdao::runtime::{BulletinRequest, PartnerScope, Runtime};
use tongdao::store::Store;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(10_000);
    // One worker thread: the figure is per core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(calls));
}

async fn run(calls: usize) {
    let wasm = std::fs::read(tongdao_test_programs::artifact("horoscope")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = RuntimeConfig::default();

    // Cold: compile (Cranelift) and write the cache file.
    let cold_runtime = Runtime::new(limits.clone(), Some(dir.path().join("cache"))).unwrap();
    let started = Instant::now();
    cold_runtime.load(&wasm).unwrap();
    let cold = started.elapsed();
    drop(cold_runtime);
    // Warm: a new engine finds the compiled file on disk.
    let runtime = Runtime::new(limits, Some(dir.path().join("cache"))).unwrap();
    let started = Instant::now();
    let module = runtime.load(&wasm).unwrap();
    let cache_hit = started.elapsed();

    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("bench.db").display()),
        2,
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    let partner = tongdao::partners::create(&store, "bench", "bench")
        .await
        .unwrap()
        .0;
    let scope = PartnerScope {
        store: store.clone(),
        partner_id: partner.id,
    };
    let request = BulletinRequest {
        service: "XZ".into(),
        push_id: "bench".into(),
        date: "2026-11-28".into(),
    };

    for _ in 0..500 {
        runtime
            .bulletin(&module, scope.clone(), &request)
            .await
            .result
            .unwrap();
    }
    let mut samples = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let t = Instant::now();
        let outcome = runtime.bulletin(&module, scope.clone(), &request).await;
        samples.push(t.elapsed());
        outcome.result.unwrap();
    }
    let total = started.elapsed();
    samples.sort();
    let p50 = percentile(&samples, 0.50);
    let p99 = percentile(&samples, 0.99);
    let calls_per_s = calls as f64 / total.as_secs_f64();

    println!(
        "guest: horoscope ({} bytes), {calls} calls, fresh instance per call, one thread",
        wasm.len()
    );
    println!(
        "instantiate + bulletin: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        micros(p50),
        micros(p99),
        micros(samples[samples.len() - 1])
    );
    println!("throughput: {calls_per_s:.0} calls/s on one core");
    println!(
        "cold compile + cache write: {:.1} ms; cache-hit load: {:.2} ms",
        micros(cold) / 1000.0,
        micros(cache_hit) / 1000.0
    );
    println!(
        "module_call: p50_us={:.1} p99_us={:.1} calls_per_s={calls_per_s:.0}",
        micros(p50),
        micros(p99)
    );
}
