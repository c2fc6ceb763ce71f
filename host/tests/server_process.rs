//! Tests that run the real `tongdao serve` process against the SMSC simulator:
//! `kill -9` mid-send and `tongdao send-test` (agreement 7.3).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::{Routes, outbox};
use tongdao::store::Store;
use tongdao_smpp::sim::{Sim, SimConfig, SimHandle};

/// Write the server's configuration (two binds of window 20 to `sim`) and queue `n`
/// MTs to distinct numbers in its store before it starts.
async fn queue_mts(dir: &std::path::Path, sim: &SimHandle, n: i64) -> (Store, i64) {
    let operator = OperatorConfig {
        name: "mobile".into(),
        address: sim.local_addr().to_string(),
        system_id: "td".into(),
        password: "pw".into(),
        binds: 2,
        window: 20,
        prefixes: vec!["13".into()],
        source_addr: "10661234".into(),
        ..Default::default()
    };
    let relay = RelayConfig {
        lease_secs: 2,
        retry_initial_ms: 100,
        retry_max_ms: 1000,
        ..RelayConfig::default()
    };
    std::fs::write(
        dir.join("tongdao.toml"),
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
    let url = format!("sqlite://{}", dir.join("tongdao-data/tongdao.db").display());
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
    for i in 0..n {
        let message = audience
            .mt(&store, format!("1390000{i:04}"), format!("bulletin {i}"))
            .await;
        outbox::enqueue(&store, gate, message).await.unwrap();
    }
    (store, n)
}

/// Start the server again and wait until all `n` MTs are delivered; then stop it.
async fn restart_until_delivered(dir: &std::path::Path, store: &Store, n: i64) {
    let mut server = common::start_server(dir).0;
    common::wait_until(
        "all delivered after the restart",
        Duration::from_secs(120),
        || async { common::count_messages(store, "delivered").await == n },
    )
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
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
    let (store, n) = queue_mts(dir.path(), &sim, 5_000).await;

    let mut server = common::start_server(dir.path()).0;
    // Kill it hard once part of the batch is through.
    common::wait_until("500 delivered", Duration::from_secs(60), || async {
        common::count_messages(&store, "delivered").await >= 500
    })
    .await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let at_kill = common::count_messages(&store, "delivered").await;
    assert!(
        at_kill < n,
        "the kill came too late to test anything ({at_kill} delivered)"
    );

    restart_until_delivered(dir.path(), &store, n).await;

    let per_destination = sim.per_destination();
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every MT reached the SMSC"
    );
    let duplicates = common::assert_duplicates_are_marked(&store, &per_destination).await;
    let resent = common::count_where(&store, "resent_unknown = 1").await;
    eprintln!(
        "kill -9 at {at_kill} delivered; duplicates at the SMSC: {duplicates}; resent after unknown outcome: {resent}"
    );
}

/// Issue 12 item 1: SIGTERM in the middle of a 5,000-MT send is a clean shutdown,
/// not a crash: the process stops claiming, waits for the answers of what it sent,
/// releases what it claimed but did not send, unbinds and exits; nothing is left
/// `submitting` or marked `resent_unknown`, and after a restart every number got its
/// MT exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_sigterm_mid_send_drains_and_restart_sends_each_mt_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (store, n) = queue_mts(dir.path(), &sim, 5_000).await;

    let mut server = common::start_server(dir.path()).0;
    common::wait_until("500 delivered", Duration::from_secs(60), || async {
        common::count_messages(&store, "delivered").await >= 500
    })
    .await;
    let signalled = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::task::spawn_blocking(move || server.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "a clean shutdown exits 0: {exit:?}");
    let at_stop = common::count_messages(&store, "delivered").await;
    assert!(at_stop < n, "the signal came too late to test anything");
    assert_eq!(
        common::count_where(&store, "status = 'submitting'").await,
        0,
        "every claim was recorded or released"
    );
    assert_eq!(common::count_where(&store, "resent_unknown = 1").await, 0);
    let released = common::count_where(
        &store,
        "id IN (SELECT message_id FROM message_events WHERE status = 'released')",
    )
    .await;

    restart_until_delivered(dir.path(), &store, n).await;
    let per_destination = sim.per_destination();
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every MT reached the SMSC"
    );
    assert!(
        per_destination.values().all(|&c| c == 1),
        "a number got its MT twice"
    );
    assert_eq!(common::count_where(&store, "resent_unknown = 1").await, 0);
    eprintln!(
        "SIGTERM at {at_stop} of {n} delivered; {released} claimed MTs released unsent; \
         0 duplicates, 0 marked resent_unknown"
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
    let mut server = common::start_server(dir.path()).0;
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
