//! Issue 11 item 5: the local runner (`tongdao module run`) and
//! the server are one sandbox with one set of limits: on every hostile fixture
//! they give the same verdict (the same result or the same fault kind).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Command;

use serde_json::{Value, json};
use tongdao::config::Config;
use tongdao::server::{Platform, serve_until};

const ADMIN_KEY: &str = "parity-admin-key-0123456789";

/// `(fixture, service)`: each fixture's `bulletin`, with the service code it is
/// asked for (`hostile-log-flood` answers 40 MB for `BIG`, logs 90 MB otherwise).
const CASES: [(&str, &str); 11] = [
    ("hostile-loop", "T"),
    ("hostile-memory", "T"),
    ("hostile-trap", "T"),
    ("hostile-oversize", "T"),
    ("hostile-kv-flood", "T"),
    ("hostile-sleep", "T"),
    ("hostile-burn", "T"),
    ("hostile-log-flood", "T"),
    ("hostile-log-flood", "BIG"),
    ("hostile-flaky", "T"),
    ("horoscope", "XZ"),
];

/// The `[runtime]` both sides run under: a CPU budget well above what the
/// 90 MB log flood needs (so neither side's verdict rests on a loaded machine's
/// noise), the other limits at their defaults.
const RUNTIME_TOML: &str = "[runtime]\ncall_timeout_ms = 1000\nwall_timeout_ms = 5000\n";

/// What the local runner says: "ok" or the fault kind, and the log lines.
fn runner_verdict(config: &std::path::Path, fixture: &str, service: &str) -> (String, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongdao"));
    cmd.env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("TONGDAO_") && key.contains("__") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args([
            "module",
            "run",
            "--bulletin",
            "--date",
            "2026-11-28",
            "--service",
            service,
            "--config",
        ])
        .arg(config)
        .arg(tongdao_test_programs::artifact(fixture))
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
        panic!(
            "{fixture}: no report; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let verdict = if report["ok"] == true {
        "ok".to_string()
    } else {
        report["result"]["kind"].as_str().unwrap().to_string()
    };
    (verdict, report["logs"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_5_local_runner_and_server_agree_on_every_hostile_fixture() {
    // The server with the same limits as the runner, read from the same file.
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("tongdao.toml");
    std::fs::write(&toml, RUNTIME_TOML).unwrap();
    let mut config = Config::load(Some(&toml)).unwrap();
    config.store.data_dir = dir.path().to_path_buf();
    config.admin.key = Some(ADMIN_KEY.into());
    config.http.max_module_bytes = 4 << 20;
    // The fixtures run live on both sides: admission reports, as in the runner.
    config.modules.admission = tongdao::modules::AdmissionMode::Report;
    let platform = Platform::open(&config).await.unwrap();
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = platform.clone();
    let serving_config = config.clone();
    let server = tokio::spawn(async move {
        serve_until(&serving_config, &served, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{base}/v1/partners"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "parity", "display_name": "parity"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["api_key"].as_str().unwrap().to_string();

    for (fixture, service) in CASES {
        let wasm = std::fs::read(tongdao_test_programs::artifact(fixture)).unwrap();
        let status = http
            .post(format!("{base}/v1/modules"))
            .bearer_auth(&key)
            .header("content-type", "application/wasm")
            .body(wasm)
            .send()
            .await
            .unwrap()
            .status();
        assert!(status.is_success(), "{fixture}: upload {status}");
        let response = http
            .post(format!("{base}/v1/modules/{fixture}/bulletin"))
            .bearer_auth(&key)
            .json(&json!({"service": service, "date": "2026-11-28"}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        let server = if status == reqwest::StatusCode::OK {
            "ok".to_string()
        } else {
            body["error"]["code"].as_str().unwrap().to_string()
        };
        let (runner, runner_logs) = runner_verdict(&toml, fixture, service);
        eprintln!("{fixture} ({service}): server {server}, runner {runner}");
        assert_eq!(server, runner, "{fixture} ({service}): server {body}");
        if server == "ok" {
            assert_eq!(
                body["logs"], runner_logs,
                "{fixture} ({service}): the same log lines"
            );
        }
    }
    let _ = stop.send(());
    server.await.unwrap();
}
