//! Issue 14 item 5: the operator's CLI against a real running `tongdao serve`
//! . Every step is the real binary talking to the real
//! server over loopback, with the key from `TONGDAO_KEY` or `--key`: create a
//! partner, upload a module, upload a second version, activate it and roll back,
//! declare a service, submit, approve (admin), push, `run wait` until every MT has
//! its receipt from the SMSC simulator, and fetch the statement; an API error
//! prints `error: <code>: <message>` and exits non-zero; `--json` parses. SQLite,
//! and PostgreSQL when configured.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};
use tongdao_smpp::sim::{Sim, SimConfig, SimHandle};

const ADMIN_KEY: &str = "cli-api-admin-key";

/// The CLI against `base`, with `key` in the environment.
fn tongdao(base: &str, key: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tongdao"));
    for (name, _) in std::env::vars() {
        if name.starts_with("TONGDAO_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .env("TONGDAO_KEY", key)
        .args(["--url", base])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).to_string()
}

/// Run a command that must succeed; its standard output.
fn ok(base: &str, key: &str, args: &[&str]) -> String {
    let out = tongdao(base, key, args);
    assert!(
        out.status.success(),
        "tongdao {args:?} failed: {}{}",
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// Run a `--json` command that must succeed; its answer.
fn ok_json(base: &str, key: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let stdout = ok(base, key, &all);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// Run a command that the API must refuse with `code`; its standard error.
fn refused(base: &str, key: &str, args: &[&str], code: &str) -> String {
    let out = tongdao(base, key, args);
    let stderr = text(&out.stderr);
    assert!(
        !out.status.success(),
        "tongdao {args:?} should fail: {stderr}"
    );
    assert!(
        stderr.starts_with(&format!("error: {code}: ")),
        "tongdao {args:?}: want `error: {code}: …`, got: {stderr}"
    );
    stderr
}

fn config(sim: &SimHandle, store_url: Option<&str>) -> String {
    let store = store_url
        .map(|url| format!("[store]\nurl = \"{url}\"\n"))
        .unwrap_or_default();
    format!(
        "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"{ADMIN_KEY}\"\n{store}\
         [compliance]\nquiet_hours = \"\"\n[schedule]\ntick_ms = 100\n\
         [[operators]]\nname = \"mobile\"\naddress = \"{}\"\nsystem_id = \"td\"\npassword = \"pw\"\n\
         binds = 1\nwindow = 20\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n",
        sim.local_addr()
    )
}

async fn operator_workflow(store_url: Option<&str>) {
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(20),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tongdao.toml"), config(&sim, store_url)).unwrap();
    let (mut server, base) = common::start_server(dir.path());
    let base = base.as_str();

    // The CLI steps block; the simulator keeps answering on the runtime's threads.
    let outcome = tokio::task::spawn_blocking({
        let base = base.to_string();
        move || steps(&base)
    })
    .await;
    server.kill().unwrap();
    server.wait().unwrap();
    outcome.unwrap();
}

fn steps(base: &str) {
    // Partners (admin): create, list, a second key.
    let created = ok_json(
        base,
        ADMIN_KEY,
        &["partner", "create", "stars", "--display-name", "星星娱乐"],
    );
    assert_eq!(created["partner"]["display_name"], "星星娱乐");
    let key = created["api_key"].as_str().unwrap().to_string();
    let listed = ok(base, ADMIN_KEY, &["partner", "list"]);
    assert!(
        listed.lines().next().unwrap().starts_with("ID"),
        "a table: {listed}"
    );
    assert!(listed.contains("星星娱乐"), "{listed}");
    let second = ok_json(base, ADMIN_KEY, &["partner", "key", "stars"]);
    assert_ne!(second["api_key"].as_str().unwrap(), key);
    // `--key` wins over the environment.
    let out = tongdao(
        base,
        "not-a-key",
        &["--key", &key, "module", "list", "--json"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Modules (partner): upload v1 (live at once), v2 (waits), activate, roll back.
    let horoscope = tongdao_test_programs::artifact("horoscope");
    let v1 = ok_json(
        base,
        &key,
        &["module", "upload", horoscope.to_str().unwrap()],
    );
    assert_eq!(
        (v1["version"].as_i64(), v1["activated"].as_bool()),
        (Some(1), Some(true))
    );
    let copy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        copy.path(),
        tongdao_test_programs::byte_different_copy(&std::fs::read(&horoscope).unwrap(), 2, 16),
    )
    .unwrap();
    let upload = ok(
        base,
        &key,
        &["module", "upload", copy.path().to_str().unwrap()],
    );
    assert!(
        upload.contains("version") && upload.contains('2'),
        "{upload}"
    );
    let active = |expect: i64| {
        let modules = ok_json(base, &key, &["module", "list"]);
        let list = modules
            .get("items")
            .or_else(|| modules.get("modules"))
            .unwrap();
        assert_eq!(list[0]["active_version"], expect, "{modules}");
    };
    active(1);
    ok(
        base,
        &key,
        &["module", "activate", "horoscope", "--version", "2"],
    );
    active(2);
    ok(base, &key, &["module", "rollback", "horoscope"]);
    active(1);
    // Version 2 as the shadow, then as a 10 % canary; each stopped again.
    let module = ok_json(
        base,
        &key,
        &["module", "shadow", "horoscope", "--version", "2"],
    );
    assert_eq!(module["shadow_version"], 2, "{module}");
    let diffs = ok(base, &key, &["module", "diffs", "horoscope"]);
    assert!(diffs.contains("(none)") || diffs.contains("RUN"), "{diffs}");
    let module = ok_json(base, &key, &["module", "shadow", "horoscope", "--stop"]);
    assert!(module["shadow_version"].is_null(), "{module}");
    let module = ok_json(
        base,
        &key,
        &[
            "module",
            "canary",
            "horoscope",
            "--version",
            "2",
            "--percent",
            "10",
        ],
    );
    assert_eq!(module["canary"]["version"], 2, "{module}");
    assert_eq!(module["canary"]["percent"], 10, "{module}");
    let module = ok_json(base, &key, &["module", "canary", "horoscope", "--stop"]);
    assert!(module["canary"].is_null(), "{module}");
    active(1);
    refused(
        base,
        &key,
        &[
            "module",
            "canary",
            "horoscope",
            "--version",
            "2",
            "--percent",
            "0",
        ],
        "invalid-percent",
    );
    let shown = ok(base, &key, &["module", "show", "horoscope"]);
    assert!(shown.contains("VERSION"), "{shown}");

    // A service: declared by the partner, approved by the admin.
    let service = ok_json(
        base,
        &key,
        &[
            "service",
            "create",
            "--code",
            "XZ",
            "--module",
            "horoscope",
            "--name",
            "星座运势",
            "--keyword",
            "星座",
            "--fee-type",
            "free",
            "--operator",
            "mobile",
            "--number-ext",
            "01",
        ],
    );
    let id = service["id"].as_i64().unwrap().to_string();
    ok(base, &key, &["service", "submit", &id]);
    // A partner may not approve: the API's 403, printed with its code.
    refused(
        base,
        &key,
        &["service", "approve", &id, "--reason", "self-service"],
        "forbidden",
    );
    let approved = ok_json(
        base,
        ADMIN_KEY,
        &["service", "approve", &id, "--reason", "terms checked"],
    );
    assert_eq!(approved["status"], "approved");
    let services = ok(
        base,
        ADMIN_KEY,
        &["service", "list", "--status", "approved"],
    );
    assert!(services.contains("星座运势"), "{services}");

    // Three users opt in (free: active at once), through the API.
    let http = reqwest::blocking::Client::new();
    for n in 0..3 {
        let status = http
            .post(format!("{base}/v1/services/{id}/subscriptions"))
            .bearer_auth(&key)
            .json(&json!({ "msisdn": format!("1380000000{n}") }))
            .send()
            .unwrap()
            .status();
        assert!(status.is_success(), "subscribe: {status}");
    }

    // Push now, wait until every MT has its receipt.
    let run = ok_json(base, &key, &["run", "push", &id]);
    let run_id = run["id"].as_i64().unwrap().to_string();
    let waited = ok(base, &key, &["run", "wait", &run_id, "--timeout", "60"]);
    assert!(waited.contains("completed"), "{waited}");
    let shown = ok_json(base, &key, &["run", "show", &run_id]);
    assert_eq!(shown["status"], "completed");
    assert_eq!(shown["queued"], 3, "{shown}");
    assert_eq!(shown["delivery"]["delivered"], 3, "{shown}");
    let runs = ok(base, &key, &["run", "list", "--service", &id]);
    assert!(runs.contains(&run_id), "{runs}");
    refused(base, &key, &["run", "cancel", &run_id], "run-finished");
    let delivered = ok_json(base, &key, &["messages", "list", "--status", "delivered"]);
    let items = delivered
        .get("items")
        .or_else(|| delivered.get("messages"))
        .unwrap();
    assert_eq!(items.as_array().unwrap().len(), 3, "{delivered}");
    let message = items[0]["id"].as_i64().unwrap().to_string();
    let detail = ok(base, &key, &["messages", "show", &message]);
    assert!(detail.contains("delivered"), "{detail}");

    // Statements: refused until terms are in force (the API's code and message),
    // then fetched as CSV and as JSON.
    let month = tongdao::billing::calendar::Month::of_ms(tongdao::store::now_ms()).to_string();
    let stderr = refused(
        base,
        &key,
        &["statement", "get", "--month", &month],
        "no-terms",
    );
    assert!(stderr.contains(&month), "{stderr}");
    refused(
        base,
        &key,
        &["statement", "get", "--month", "2026-13"],
        "invalid-month",
    );
    let range = http
        .put(format!("{base}/v1/admin/operators/mobile/billing"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"imbalance_min_fen": 3, "imbalance_max_fen": 8}))
        .send()
        .unwrap();
    assert!(range.status().is_success(), "{}", range.text().unwrap());
    for (path, body) in [
        (
            "agreement",
            json!({"start_date": format!("{month}-01"), "term_months": 24, "notice_months": 3, "remedy_days": 10}),
        ),
        (
            "terms",
            json!({
                "effective_from": month, "tier_mode": "whole", "t1_fen": 5000, "t2_fen": 10000,
                "tiers": [{"platform_bp": 5000, "partner_bp": 5000}, {"platform_bp": 4000, "partner_bp": 6000},
                          {"platform_bp": 3000, "partner_bp": 7000}],
                "tax_bp": 600, "discrepancy_bp": 200, "payment_days": 5, "activation_rule": "pro-rata"
            }),
        ),
        (
            "operator-terms",
            json!({"operator": "mobile", "effective_from": month, "collection_bp": 1500,
                   "imbalance_rate_fen": 5, "balance_mt": 2, "balance_mo": 1, "schedule": "M+2 day 15"}),
        ),
    ] {
        let request = if path == "agreement" {
            http.put(format!("{base}/v1/admin/partners/stars/{path}"))
        } else {
            http.post(format!("{base}/v1/admin/partners/stars/{path}"))
        };
        let response = request.bearer_auth(ADMIN_KEY).json(&body).send().unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.text().unwrap()
        );
    }
    let csv = ok(
        base,
        &key,
        &["statement", "get", "--month", &month, "--format", "csv"],
    );
    assert!(csv.contains(&month), "{csv}");
    let statement = ok_json(base, &key, &["statement", "get", "--month", &month]);
    assert_eq!(statement["month"], month.as_str());
    let file = tempfile::NamedTempFile::new().unwrap();
    ok(
        base,
        ADMIN_KEY,
        &[
            "statement",
            "get",
            "--month",
            &month,
            "--format",
            "html",
            "--partner",
            "stars",
            "--output",
            file.path().to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read_to_string(file.path())
            .unwrap()
            .contains("<html")
    );

    // Errors: an unknown key, a missing service, an unreachable server.
    refused(base, "wrong-key", &["service", "list"], "unauthorized");
    refused(base, &key, &["service", "show", "999999"], "not-found");
    let out = tongdao("http://127.0.0.1:9", &key, &["partner", "list"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).starts_with("error: unreachable: "),
        "{}",
        text(&out.stderr)
    );
}

/// Issue 14 item 5: the common operator tasks through the CLI, on both
/// stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_cli_runs_the_operator_workflow_against_a_running_server() {
    operator_workflow(None).await;
    if let Some(url) = common::postgres_url().await {
        operator_workflow(Some(&url)).await;
    }
}
