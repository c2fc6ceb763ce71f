//! What uploads cost the server (issue 11 item 3): twelve byte-different 30 MB
//! copies of a component uploaded by one partner, under the default `[modules]`
//! quotas and retention. Prints the process RSS, the database and the compiled
//! cache before and after, and how many versions stay loaded. One summary line:
//! `uploads: n=… rss_before_mb=… rss_after_mb=… db_mb=… cache_mb=… loaded=…`
//!
//! `cargo bench -p tongdao --bench uploads [-- N]` (default 12).

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use tongdao::config::RuntimeConfig;
use tongdao::modules::{Registry, RegistryConfig};
use tongdao::runtime::Runtime;
use tongdao::store::Store;

const PAD_BYTES: usize = 30 * 1024 * 1024;

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_mb(path: &Path) -> f64 {
    let mut total = 0u64;
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            total += entry.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    total as f64 / (1024.0 * 1024.0)
}

fn main() {
    let n: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(12);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n));
}

async fn run(n: u32) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let cache = dir.path().join("module-cache");
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default(), Some(cache.clone())).unwrap());
    let config = RegistryConfig {
        max_stored_bytes: 1 << 30,
        ..RegistryConfig::default()
    };
    let registry = Registry::with_config(store.clone(), runtime, config);
    let partner = tongdao::partners::create(&store, "bench", "bench")
        .await
        .unwrap()
        .0;
    let wasm = std::fs::read(tongdao_test_programs::artifact("horoscope")).unwrap();
    let before = rss_mb();
    for i in 0..n {
        registry
            .upload(
                &partner,
                &tongdao_test_programs::byte_different_copy(&wasm, i, PAD_BYTES),
                "bench",
            )
            .await
            .unwrap();
    }
    // The live version is called, as the platform would.
    let request = tongdao::runtime::BulletinRequest {
        service: "XZ".into(),
        push_id: "bench".into(),
        date: "2026-11-28".into(),
    };
    registry
        .bulletin(&partner, "horoscope", &request)
        .await
        .unwrap()
        .result
        .unwrap();
    let after = rss_mb();
    let info = registry.get(&partner, "horoscope").await.unwrap();
    let kept = info.versions.iter().filter(|v| !v.pruned).count();
    println!(
        "versions uploaded {n}, kept whole {kept}, pruned {}",
        info.versions.len() - kept
    );
    println!(
        "uploads: n={n} rss_before_mb={before:.0} rss_after_mb={after:.0} db_mb={:.0} cache_mb={:.1} loaded={}",
        dir_mb(dir.path()),
        dir_mb(&cache),
        registry.loaded_count()
    );
}
