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

/// Submits per second per bind in the crash and shutdown tests: 5,000 MTs take at
/// least 2.5 s over the two binds however fast the machine, so a signal sent once 500
/// are delivered always lands mid-send (unlimited, a fast run had delivered every MT
/// before SIGTERM stopped it).
const SEND_TPS: u32 = 1_000;

/// Write the server's configuration (two binds of window 20 to `sim`, [`SEND_TPS`])
/// and queue `n` MTs to distinct numbers in its store before it starts.
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
             binds = 2\nwindow = 20\ntps = {SEND_TPS}\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
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

/// Start `tongdao serve` with the configuration in `dir` at `RUST_LOG=rust_log`,
/// its standard error collected: the child, its base URL and a thread that answers
/// the whole log once the child has ended.
async fn serve_logging(
    dir: &std::path::Path,
    rust_log: &str,
    environment: &[(&str, &str)],
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::Read;
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["serve", "--config"])
        .arg(dir.join("tongdao.toml"))
        .current_dir(dir)
        .env("RUST_LOG", rust_log)
        .envs(environment.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        all
    });
    let stdout = child.stdout.take().unwrap();
    let (base_tx, base_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(url) = line.strip_prefix("tongdao listening on ") {
                let _ = base_tx.send(url.trim().to_string());
            }
        }
    });
    let base = tokio::task::spawn_blocking(move || base_rx.recv().unwrap())
        .await
        .unwrap();
    (child, base, log)
}

/// Issue 15 item 1: one access-log line per request at INFO (target
/// `tongdao::access`) with the method, the matched route, the status, the latency,
/// the caller and the request id the answer carries (a client's sane id kept); as
/// JSON objects with `[log] format = "json"`, and as text without ANSI colours when
/// standard error is not a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_lines_carry_the_request_id_at_info() {
    const ADMIN: &str = "access-log-admin-key-0123";
    let http = reqwest::Client::new();
    for format in ["json", "text"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tongdao.toml"),
            format!(
                "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN}\"\n\
                 [log]\nformat = \"{format}\"\n"
            ),
        )
        .unwrap();
        let (mut child, base, log) = serve_logging(dir.path(), "info", &[]).await;
        let sent = format!("access-{format}-7f3a");
        let listed = http
            .get(format!("{base}/v1/partners"))
            .bearer_auth(ADMIN)
            .header("x-request-id", &sent)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), reqwest::StatusCode::OK);
        assert_eq!(listed.headers()["x-request-id"], sent.as_str());
        let refused = http
            .get(format!("{base}/v1/services/17"))
            .bearer_auth("not-a-key")
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
        let made = refused.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string();
        assert_ne!(made, sent);
        child.kill().unwrap();
        child.wait().unwrap();
        let log = log.join().unwrap();
        assert!(
            !log.contains('\u{1b}'),
            "ANSI escapes in a piped log:\n{log}"
        );
        let access: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("tongdao::access"))
            .collect();
        let line_of = |id: &str| {
            let found: Vec<&&str> = access.iter().filter(|l| l.contains(id)).collect();
            assert_eq!(found.len(), 1, "one access line for {id} in:\n{log}");
            *found[0]
        };
        if format == "json" {
            for (id, path, status, caller) in [
                (sent.as_str(), "/v1/partners", 200, "admin"),
                (made.as_str(), "/v1/services/{id}", 401, ""),
            ] {
                let line: serde_json::Value = serde_json::from_str(line_of(id)).unwrap();
                assert_eq!(line["level"], "INFO", "{line}");
                assert_eq!(line["target"], "tongdao::access", "{line}");
                assert_eq!(line["span"]["request_id"], id, "{line}");
                assert_eq!(line["span"]["method"], "GET", "{line}");
                assert_eq!(line["span"]["path"], path, "{line}");
                assert_eq!(line["fields"]["status"], status, "{line}");
                assert!(line["fields"]["latency_ms"].is_u64(), "{line}");
                if !caller.is_empty() {
                    assert_eq!(line["span"]["caller"], caller, "{line}");
                }
            }
        } else {
            let line = line_of(&sent);
            for part in [
                "INFO",
                "path=\"/v1/partners\"",
                "status=200",
                "caller=\"admin\"",
            ] {
                assert!(line.contains(part), "{part} missing from {line}");
            }
            assert!(line_of(&made).contains("status=401"));
        }
    }
}

/// SECURITY.md (secrets in logs): at `RUST_LOG=trace`, with JSON log lines, no
/// secret the server handles reaches its log: the admin key and a partner key (in
/// `Authorization` headers, a console login form, a failed login), the webhook
/// signing secrets (created, rotated, used to sign deliveries), the operator link's
/// password (sent in every bind). Each secret is checked to have really been used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_even_at_trace() {
    const ADMIN: &str = "admin-secret-3b9f27c1d0e4a6f8";
    const OPERATOR_PASSWORD: &str = "opw5x9k2";
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(SimConfig {
        credentials: Some(("td".into(), OPERATOR_PASSWORD.into())),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let (receiver_addr, deliveries) = answering_listener().await;
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN}\"\n[log]\nformat = \"json\"\n\
             [webhooks]\nallow_private = true\n\
             [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"td\"\npassword = \"{OPERATOR_PASSWORD}\"\n\
             prefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
            sim.local_addr()
        ),
    )
    .unwrap();
    let (mut child, base, log) = serve_logging(dir.path(), "trace", &[]).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let (partner_key, webhook) = partner_with_webhook(&http, &base, ADMIN, receiver_addr).await;
    let modules = http
        .get(format!("{base}/v1/modules"))
        .bearer_auth(&partner_key)
        .send()
        .await
        .unwrap();
    assert_eq!(modules.status(), reqwest::StatusCode::OK);
    let console = http
        .post(format!("{base}/console/login"))
        .form(&[("key", partner_key.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(console.status(), reqwest::StatusCode::SEE_OTHER);
    let wrong = format!("{partner_key}x");
    let refused = http
        .get(format!("{base}/v1/modules"))
        .bearer_auth(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);
    let first_secret = webhook["secret"].as_str().unwrap().to_string();
    let rotated = common::post_json(
        &http,
        &format!("{base}/v1/webhook-secret/rotate"),
        &partner_key,
        &serde_json::json!({}),
    )
    .await;
    let second_secret = rotated["secret"].as_str().unwrap().to_string();
    // Events to deliver, signed with the secrets: the partner suspended and resumed.
    for action in ["suspend", "resume"] {
        partner_action(&http, &base, ADMIN, action).await;
    }
    common::wait_until(
        "a webhook delivery reached the receiver, and the link is bound",
        Duration::from_secs(30),
        || async {
            deliveries.load(std::sync::atomic::Ordering::SeqCst) > 0 && !sim.bind_times().is_empty()
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.join().unwrap();
    assert!(
        log.lines().count() > 100,
        "trace logging was on: {} lines",
        log.lines().count()
    );
    for (what, secret) in [
        ("the admin key", ADMIN),
        ("the partner key", partner_key.as_str()),
        ("a wrong key", wrong.as_str()),
        ("the first webhook secret", first_secret.as_str()),
        ("the rotated webhook secret", second_secret.as_str()),
        ("the operator password", OPERATOR_PASSWORD),
    ] {
        if let Some(line) = log.lines().find(|l| l.contains(secret)) {
            panic!("{what} is in the log: {line}");
        }
    }
}

/// Partner `leyou` created by the admin over the API, with a webhook endpoint at
/// `receiver`: the partner's key and the endpoint as answered (its `secret`).
async fn partner_with_webhook(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    receiver: std::net::SocketAddr,
) -> (String, serde_json::Value) {
    let created = common::post_json(
        http,
        &format!("{base}/v1/partners"),
        admin,
        &serde_json::json!({"name": "leyou", "display_name": "乐游"}),
    )
    .await;
    let partner_key = created["api_key"].as_str().unwrap().to_string();
    let webhook = http
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&partner_key)
        .json(&serde_json::json!({"url": format!("http://{receiver}/hook")}))
        .send()
        .await
        .unwrap();
    assert!(
        webhook.status().is_success(),
        "POST /v1/webhooks: {}",
        webhook.status()
    );
    (partner_key, webhook.json().await.unwrap())
}

/// `POST /v1/admin/partners/leyou/{action}` (`suspend`, `resume`) by the admin: an
/// event each for the partner's webhook.
async fn partner_action(http: &reqwest::Client, base: &str, admin: &str, action: &str) {
    let answer = http
        .post(format!("{base}/v1/admin/partners/leyou/{action}"))
        .bearer_auth(admin)
        .json(&serde_json::json!({"reason": "a test of the server process"}))
        .send()
        .await
        .unwrap();
    assert!(
        answer.status().is_success(),
        "{action}: {}",
        answer.text().await.unwrap()
    );
}

/// A listener on loopback that answers every request `200` and counts the requests
/// it read: a webhook receiver, or a proxy that must never be asked.
async fn answering_listener() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                if socket.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                }
            });
        }
    });
    (addr, requests)
}

/// SECURITY.md claim 13 (no proxy): the webhook client takes no proxy from the
/// environment. Through a proxy the proxy would resolve the endpoint's name, out
/// of reach of the address rule. The server runs with every proxy variable
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, upper and lower case) pointing at a
/// listener of the test's and no `NO_PROXY`; a delivery reaches the receiver
/// directly and the proxy is never asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_never_go_through_an_environment_proxy() {
    const ADMIN: &str = "proxy-test-admin-key-5e1c";
    let (receiver, deliveries) = answering_listener().await;
    let (proxy, proxied) = answering_listener().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN}\"\n\
             [webhooks]\nallow_private = true\n"
        ),
    )
    .unwrap();
    let proxy_url = format!("http://{proxy}");
    let environment: Vec<(&str, &str)> = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .map(|name| (name, proxy_url.as_str()))
    .chain([("NO_PROXY", ""), ("no_proxy", "")])
    .collect();
    let (mut child, base, _log) = serve_logging(dir.path(), "info", &environment).await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    partner_with_webhook(&http, &base, ADMIN, receiver).await;
    // An event to deliver: the partner suspended.
    partner_action(&http, &base, ADMIN, "suspend").await;
    let asked = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    common::wait_until(
        "a webhook delivery reached the receiver or the proxy",
        Duration::from_secs(30),
        || async { asked(&deliveries) + asked(&proxied) > 0 },
    )
    .await;
    assert_eq!(asked(&proxied), 0, "the proxy of the environment was asked");
    assert!(asked(&deliveries) > 0, "delivered directly");
    child.kill().unwrap();
    child.wait().unwrap();
}
