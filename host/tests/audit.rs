//! Issue 15 item 6: the hash-chained audit log. Concurrent appends keep
//! one chain, and `tongdao audit verify` (the real binary, as a process) exits 0
//! on an intact chain and non-zero naming the first bad row when a row was
//! edited, deleted in the middle, or deleted at the end. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use tongdao::audit::{self, NewEntry, Verdict};
use tongdao::store::Store;

/// A fresh migrated store and its URL: SQLite always, PostgreSQL when configured.
async fn stores() -> Vec<(Store, String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let store = Store::connect(&url, 4).await.unwrap();
    store.migrate().await.unwrap();
    let mut out = vec![(store, url, Some(dir))];
    match std::env::var("TONGDAO_TEST_DATABASE_URL") {
        Ok(base) => {
            let name = format!("tongdao_audit_{}", std::process::id());
            let admin = Store::connect(&base, 1).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                .execute(admin.pool())
                .await
                .unwrap();
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(admin.pool())
                .await
                .unwrap();
            admin.close().await;
            let (prefix, _) = base.rsplit_once('/').unwrap();
            let url = format!("{prefix}/{name}");
            let store = Store::connect(&url, 8).await.unwrap();
            store.migrate().await.unwrap();
            out.push((store, url, None));
        }
        Err(_) => common::skip(
            "the PostgreSQL half of the audit test: TONGDAO_TEST_DATABASE_URL is not set",
        ),
    }
    out
}

/// `tongdao audit verify --config` on `url`: (exit success, stdout).
fn verify_cli(url: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tongdao.toml");
    std::fs::write(&config, format!("[store]\nurl = \"{url}\"\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tongdao"))
        .args(["audit", "verify", "--config"])
        .arg(&config)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.code().is_some(),
        "killed by a signal: {stdout} {stderr}"
    );
    (out.status.success(), format!("{stdout}{stderr}"))
}

fn entry(i: usize) -> NewEntry {
    NewEntry {
        actor: "admin".into(),
        action: "http".into(),
        method: Some("POST".into()),
        path: Some("/v1/admin/services/{id}/{action}".into()),
        status: Some(200),
        body_sha256: Some(audit::sha256_hex(
            format!("{{\"reason\":\"{i}\"}}").as_bytes(),
        )),
        request_id: Some(format!("req-{i}")),
        detail: format!("/v1/admin/services/{i}/suspend"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_audit_chain_detects_an_edited_and_a_deleted_row() {
    for (store, url, _dir) in stores().await {
        // 40 appends from 8 tasks at once: one chain, ids 1..=40 without gaps.
        let mut tasks = Vec::new();
        for t in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..5 {
                    audit::append(&store, entry(t * 5 + i)).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        let verdict = audit::verify(&store).await.unwrap();
        assert!(
            matches!(verdict, Verdict::Intact { rows: 40, .. }),
            "{verdict:?}"
        );
        let (ok, out) = verify_cli(&url);
        assert!(ok, "{out}");
        assert!(out.contains("intact: 40 rows"), "{out}");

        // An edited row: its content no longer matches its hash.
        let (detail,): (String,) = sqlx::query_as("SELECT detail FROM audit_log WHERE id = 7")
            .fetch_one(store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_log SET detail = 'nothing happened' WHERE id = 7")
            .execute(store.pool())
            .await
            .unwrap();
        let (ok, out) = verify_cli(&url);
        assert!(!ok, "an edited row must fail: {out}");
        assert!(out.contains("broken at row 7"), "{out}");
        assert!(out.contains("edited"), "{out}");
        // Put back: intact again.
        sqlx::query("UPDATE audit_log SET detail = $1 WHERE id = 7")
            .bind(&detail)
            .execute(store.pool())
            .await
            .unwrap();
        assert!(verify_cli(&url).0);

        // A row deleted in the middle: the gap is named.
        sqlx::query("DELETE FROM audit_log WHERE id = 12")
            .execute(store.pool())
            .await
            .unwrap();
        let (ok, out) = verify_cli(&url);
        assert!(!ok, "a deleted row must fail: {out}");
        assert!(out.contains("broken at row 12"), "{out}");
        assert!(out.contains("missing"), "{out}");

        // The last row deleted (on a fresh chain): the head still names it.
        sqlx::query("DELETE FROM audit_log")
            .execute(store.pool())
            .await
            .unwrap();
        sqlx::query("UPDATE audit_head SET last_id = 0, last_hash = $1 WHERE id = 1")
            .bind(audit::GENESIS)
            .execute(store.pool())
            .await
            .unwrap();
        for i in 0..3 {
            audit::append(&store, entry(i)).await.unwrap();
        }
        assert!(verify_cli(&url).0);
        sqlx::query("DELETE FROM audit_log WHERE id = 3")
            .execute(store.pool())
            .await
            .unwrap();
        let (ok, out) = verify_cli(&url);
        assert!(!ok, "a deleted last row must fail: {out}");
        assert!(out.contains("broken at row 3"), "{out}");
        store.close().await;
    }
}
