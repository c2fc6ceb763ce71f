//! Per-call cost of the sandbox on the production path: `Registry::bulletin`, the
//! function the scheduler and (as `on_mo`) the keyword router call: lookup of the
//! active version of the module, instantiate + `bulletin` of the Rust `horoscope`
//! guest in a fresh instance, fault bookkeeping. Beside it the bare runtime call
//! (instantiate + `bulletin` on an already loaded module) and the production path
//! with the active-version lookup read from the store on every call
//! (`[modules] active_recheck_ms = 0`, what every call paid before). One core; the
//! three are measured in alternating rounds so machine load weighs on each alike.
//! Also cold compile and cache-hit load times. Ends with one summary line:
//! `module_call: p50_us=… p99_us=… calls_per_s=… bare_p50_us=… bare_p99_us=… uncached_p50_us=…`
//! (the first three are the production path).
//!
//! `cargo bench -p tongdao --bench module_call [-- CALLS]` (default 10,000 calls per path).

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use tongdao::config::RuntimeConfig;
use tongdao::modules::{Registry, RegistryConfig};
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

/// Samples of one path: each call's time, and the time of all calls together.
#[derive(Default)]
struct Path {
    samples: Vec<Duration>,
    total: Duration,
}

impl Path {
    fn report(&mut self, name: &str) -> (f64, f64, f64) {
        self.samples.sort();
        let p50 = micros(percentile(&self.samples, 0.50));
        let p99 = micros(percentile(&self.samples, 0.99));
        let max = micros(self.samples[self.samples.len() - 1]);
        let per_s = self.samples.len() as f64 / self.total.as_secs_f64();
        println!(
            "{name}: p50 {p50:.1} us, p99 {p99:.1} us, max {max:.1} us, {per_s:.0} calls/s on one core"
        );
        (p50, p99, per_s)
    }
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
    let runtime = Arc::new(Runtime::new(limits, Some(dir.path().join("cache"))).unwrap());
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
        dry: None,
    };
    let request = BulletinRequest {
        service: "XZ".into(),
        push_id: "bench".into(),
        date: "2026-11-28".into(),
    };
    // The production registry, and one that reads the active version every call.
    let registry = Registry::new(store.clone(), runtime.clone());
    let uploaded = registry.upload(&partner, &wasm, "bench").await.unwrap();
    let uncached = Registry::with_config(
        store.clone(),
        runtime.clone(),
        RegistryConfig {
            active_recheck_ms: 0,
            ..RegistryConfig::default()
        },
    );

    for _ in 0..500 {
        runtime
            .bulletin(&module, scope.clone(), &request)
            .await
            .result
            .unwrap();
        for r in [&registry, &uncached] {
            r.bulletin(&partner, &uploaded.module, &request)
                .await
                .unwrap()
                .result
                .unwrap();
        }
    }
    let (mut bare, mut production, mut reread) =
        (Path::default(), Path::default(), Path::default());
    let rounds = 10;
    let per_round = calls.div_ceil(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for _ in 0..per_round {
            let t = Instant::now();
            let outcome = runtime.bulletin(&module, scope.clone(), &request).await;
            bare.samples.push(t.elapsed());
            outcome.result.unwrap();
        }
        bare.total += started.elapsed();
        for (r, path) in [(&registry, &mut production), (&uncached, &mut reread)] {
            let started = Instant::now();
            for _ in 0..per_round {
                let t = Instant::now();
                let outcome = r.bulletin(&partner, &uploaded.module, &request).await;
                path.samples.push(t.elapsed());
                outcome.unwrap().result.unwrap();
            }
            path.total += started.elapsed();
        }
    }

    println!(
        "guest: horoscope ({} bytes), {} calls per path, fresh instance per call, one thread",
        wasm.len(),
        per_round * rounds
    );
    let (p50, p99, calls_per_s) =
        production.report("production (Registry::bulletin: active version, call, faults)");
    let (bare_p50, bare_p99, _) = bare.report("bare runtime (instantiate + bulletin)");
    let (uncached_p50, _, _) =
        reread.report("production, active version read from the store every call");
    println!(
        "cold compile + cache write: {:.1} ms; cache-hit load: {:.2} ms",
        micros(cold) / 1000.0,
        micros(cache_hit) / 1000.0
    );
    println!(
        "module_call: p50_us={p50:.1} p99_us={p99:.1} calls_per_s={calls_per_s:.0} bare_p50_us={bare_p50:.1} bare_p99_us={bare_p99:.1} uncached_p50_us={uncached_p50:.1}"
    );
}
