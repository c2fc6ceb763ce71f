//! The three languages a partner may write a module in, side by side: the
//! Rust `horoscope`, the Python `fortune-py` (componentize-py, `guests/python`) and
//! the JavaScript `shengxiao-js` (componentize-js, `guests/js`). For each: the
//! component's size, the cold compile (Cranelift) with the cache write, a load from
//! that cache by a new engine, the first `bulletin` call after it, and p50/p99 of
//! `bulletin` in a fresh instance per call (the bare runtime call, one thread), and
//! the least memory a `bulletin` call needs (the smallest `max_memory_bytes`, in
//! 64 KiB pages, under which it still succeeds).
//! A language whose example has not been built (`guests/python/build.sh`,
//! `guests/js/build.sh`) is left out with a note. Ends with one summary line:
//! `languages: rust_p50_us=… python_p50_us=… js_p50_us=… rust_compile_ms=… …`.
//!
//! `cargo bench -p tongdao --bench languages [-- CALLS]` (default 200 calls each).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tongdao::config::RuntimeConfig;
use tongdao::runtime::{BulletinRequest, PartnerScope, Runtime};
use tongdao::store::Store;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let calls: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(calls));
}

async fn run(calls: usize) {
    // Where guests/python/build.sh and guests/js/build.sh write.
    let built = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests");
    let guests: [(&str, PathBuf, &str); 3] = [
        ("rust", tongdao_test_programs::artifact("horoscope"), "XZ"),
        ("python", built.join("python/fortune_py.wasm"), "FP"),
        ("js", built.join("js/shengxiao_js.wasm"), "SX"),
    ];
    let dir = tempfile::tempdir().unwrap();
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

    let mut summary = Vec::new();
    for (lang, path, service) in guests {
        let Ok(wasm) = std::fs::read(&path) else {
            println!("{lang}: {} not built, left out", path.display());
            continue;
        };
        let cache = dir.path().join(format!("cache-{lang}"));
        let limits = RuntimeConfig::default();

        // Cold: compile and write the cache file.
        let cold_runtime = Runtime::new(limits.clone(), Some(cache.clone())).unwrap();
        let started = Instant::now();
        cold_runtime.load(&wasm).unwrap();
        let compile = started.elapsed();
        drop(cold_runtime);
        // A new engine (a restarted server) loads the compiled file.
        let runtime = Runtime::new(limits, Some(cache)).unwrap();
        let started = Instant::now();
        let module = runtime.load(&wasm).unwrap();
        let load = started.elapsed();

        let request = BulletinRequest {
            service: service.into(),
            push_id: "bench".into(),
            date: "2026-11-28".into(),
        };
        let started = Instant::now();
        runtime
            .bulletin(&module, scope.clone(), &request)
            .await
            .result
            .unwrap();
        let first = started.elapsed();
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            let outcome = runtime.bulletin(&module, scope.clone(), &request).await;
            samples.push(t.elapsed());
            outcome.result.unwrap();
        }
        samples.sort();

        // The least memory a call needs: the smallest `max_memory_bytes` (in
        // 64 KiB pages) under which `bulletin` still succeeds, by bisection.
        let cache = dir.path().join(format!("cache-{lang}"));
        let (mut fails, mut works) = (0usize, RuntimeConfig::default().max_memory_bytes >> 16);
        while works - fails > 1 {
            let pages = (fails + works) / 2;
            let limits = RuntimeConfig {
                max_memory_bytes: pages << 16,
                ..RuntimeConfig::default()
            };
            let runtime = Runtime::new(limits, Some(cache.clone())).unwrap();
            let ok = match runtime.load(&wasm) {
                Ok(module) => runtime
                    .bulletin(&module, scope.clone(), &request)
                    .await
                    .result
                    .is_ok(),
                Err(_) => false,
            };
            if ok { works = pages } else { fails = pages }
        }
        let memory_mib = (works << 16) as f64 / 1048576.0;
        let p50 = micros(samples[(samples.len() - 1) / 2]);
        let p99 = micros(samples[((samples.len() - 1) as f64 * 0.99).round() as usize]);
        println!(
            "{lang}: {} ({} bytes): compile + cache write {:.0} ms, cache-hit load {:.1} ms, first call {:.2} ms, bulletin p50 {p50:.0} us, p99 {p99:.0} us ({calls} calls, fresh instance each), memory a call needs {memory_mib:.2} MiB",
            path.file_name().unwrap().to_string_lossy(),
            wasm.len(),
            millis(compile),
            millis(load),
            millis(first),
        );
        summary.push(format!(
            "{lang}_bytes={} {lang}_compile_ms={:.0} {lang}_load_ms={:.1} {lang}_first_ms={:.2} {lang}_p50_us={p50:.0} {lang}_p99_us={p99:.0} {lang}_memory_mib={memory_mib:.2}",
            wasm.len(),
            millis(compile),
            millis(load),
            millis(first),
        ));
    }
    println!("languages: {}", summary.join(" "));
}
