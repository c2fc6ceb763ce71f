//! Tests that run the real `tongdao serve` process against the SMSC simulator:
//! `kill -9` mid-send and `tongdao send-test` (agreement 7.3).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::{Routes, outbox};
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig};

fn start_server(dir: &std::path::Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["serve", "--config"])
        .arg(dir.join("tongdao.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until it serves (migrations done, binds starting).
    let stdout = child.stdout.take().unwrap();
    for line in BufReader::new(stdout).lines() {
        if line.unwrap().starts_with("tongdao listening on") {
            break;
        }
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_send_and_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let operator = OperatorConfig {
        name: "mobile".into(),
        address: sim.local_addr().to_string(),
        system_id: "td".into(),
        password: "pw".into(),
        system_type: String::new(),
        binds: 2,
        window: 20,
        tps: 0,
        prefixes: vec!["13".into()],
        source_addr: "10661234".into(),
        concat: tongdao::config::ConcatMode::Udh,
        ..Default::default()
    };
    let relay = RelayConfig {
        lease_secs: 2,
        retry_initial_ms: 100,
        retry_max_ms: 1000,
        ..RelayConfig::default()
    };
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"crash-test-admin-key\"\n\
             [relay]\nlease_secs = {}\nretry_initial_ms = {}\nretry_max_ms = {}\n\
             [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"td\"\npassword = \"pw\"\n\
             binds = 2\nwindow = 20\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
            relay.lease_secs,
            relay.retry_initial_ms,
            relay.retry_max_ms,
            operator.address
        ),
    )
    .unwrap();

    // Queue 5,000 MTs in the server's store before it starts.
    let url = format!(
        "sqlite://{}",
        dir.path().join("tongdao-data/tongdao.db").display()
    );
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();
    let routes = Routes::new(std::slice::from_ref(&operator));
    let compliance = common::relay_compliance(&store);
    let gate = outbox::Gate {
        routes: &routes,
        relay: &relay,
        compliance: &compliance,
    };
    let audience = common::Audience::new(&store, &["mobile"]).await;
    let n = 5_000;
    for i in 0..n {
        let message = audience
            .mt(&store, format!("1390000{i:04}"), format!("bulletin {i}"))
            .await;
        outbox::enqueue(&store, gate, message).await.unwrap();
    }

    let mut server = start_server(dir.path());
    // Kill it hard once part of the batch is through.
    let started = Instant::now();
    while common::count_messages(&store, "delivered").await < 500 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the server sent nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let at_kill = common::count_messages(&store, "delivered").await;
    assert!(
        at_kill < n,
        "the kill came too late to test anything ({at_kill} delivered)"
    );

    let mut server = start_server(dir.path());
    let started = Instant::now();
    loop {
        let delivered = common::count_messages(&store, "delivered").await;
        if delivered == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "after restart only {delivered} of {n} delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.kill().unwrap();
    server.wait().unwrap();

    let per_destination = sim.per_destination();
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every MT reached the SMSC"
    );
    let duplicates: usize = per_destination.values().map(|&c| c - 1).sum();
    let (resent,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE resent_unknown = 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert!(
        duplicates as i64 <= resent,
        "{duplicates} duplicates but only {resent} resent under the unknown-outcome rule"
    );
    eprintln!(
        "kill -9 at {at_kill} delivered; duplicates at the SMSC: {duplicates}; resent after unknown outcome: {resent}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_test_waits_for_the_receipt_and_reports_operator_ids() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"send-test-admin-key\"\n\
             [relay]\ntest_numbers = [\"+8613800138000\"]\n\
             [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"td\"\npassword = \"pw\"\n\
             prefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
            sim.local_addr()
        ),
    )
    .unwrap();
    let mut server = start_server(dir.path());
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tongdao"))
            .args([
                "send-test",
                "--to",
                "13800138000",
                "--text",
                "测试短信 test",
                "--timeout",
                "30",
                "--config",
            ])
            .arg(dir_path.join("tongdao.toml"))
            .current_dir(&dir_path)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let detail: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(detail["status"], "delivered");
    assert_eq!(detail["charge_plan"], "test");
    assert_eq!(detail["is_test"], 1);
    assert!(detail["segment_status"][0]["operator_message_id"].is_string());
    assert_eq!(sim.received()[0].destination_addr, "13800138000");

    // Only listed numbers.
    let dir_path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_tongdao"))
            .args([
                "send-test",
                "--to",
                "13900139000",
                "--text",
                "x",
                "--config",
            ])
            .arg(dir_path.join("tongdao.toml"))
            .current_dir(&dir_path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("test_numbers"));
    server.kill().unwrap();
    server.wait().unwrap();
}
