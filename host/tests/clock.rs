//! Issue 11 item 2: a module sees only the time the host gives. WASI's
//! clocks answer from the call clock, a WASI sleep moves that clock instead of
//! blocking, and a call stopped by the wall clock is `timeout`, distinct from
//! `cpu-limit`. SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use tongdao::config::RuntimeConfig;
use tongdao::modules::Registry;
use tongdao::runtime::{
    BulletinContent, BulletinRequest, CallError, MoMessage, PartnerScope, Runtime,
};
use tongdao::store::now_ms;

/// Long enough that a loop reaches its 100 ms CPU budget first, even on a loaded
/// 2-core machine.
const WALL_MS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_2_wall_clock_time_cannot_escape_the_limits() {
    for db in common::stores().await {
        let limits = RuntimeConfig {
            call_timeout_ms: 100,
            wall_timeout_ms: WALL_MS,
            ..common::limits()
        };
        let registry = Registry::with_config(
            db.store.clone(),
            Arc::new(Runtime::new(limits, None).unwrap()),
            common::reporting(),
        );
        let partner = common::partner(&db.store, "sleepy").await;
        registry
            .upload(&partner, &common::guest("hostile-sleep"), "test")
            .await
            .unwrap();
        let request = BulletinRequest {
            service: "T".into(),
            push_id: "p".into(),
            date: "2026-11-28".into(),
        };

        // `std::thread::sleep(1 s)`: the module's clock shows the second pass, the
        // host's does not: the call answers inside its wall-clock limit (a
        // sleep that blocked would end as `timeout`).
        let outcome = registry
            .bulletin(&partner, "hostile-sleep", &request)
            .await
            .unwrap();
        match outcome.result {
            Ok(BulletinContent::Single { text }) => {
                let slept: u64 = text
                    .strip_prefix("slept ")
                    .and_then(|t| t.strip_suffix(" ms"))
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(slept >= 1000, "{}: the module saw {slept} ms", db.name);
            }
            other => panic!(
                "{}: expected the sleep to end at once, got {other:?}",
                db.name
            ),
        }

        // A host call that blocks (the key the module writes is locked by another
        // transaction) is stopped by the wall clock, as `timeout`. Called on the
        // runtime itself: recording the fault needs the store the blocker holds
        // (on SQLite, all of it), which the registry path below covers.
        let runtime = registry.runtime().clone();
        let loaded = runtime.load(&common::guest("hostile-sleep")).unwrap();
        let scope = PartnerScope {
            store: db.store.clone(),
            partner_id: partner.id,
            dry: None,
        };
        let mut blocker = db.store.begin_write().await.unwrap();
        sqlx::query(
            "INSERT INTO kv_entries (partner_id, key, value, updated_at) VALUES ($1, 'held', $2, $3)",
        )
        .bind(partner.id)
        .bind(b"locked".to_vec())
        .bind(now_ms())
        .execute(&mut *blocker)
        .await
        .unwrap();
        let message = MoMessage {
            subscriber: "s-1".into(),
            service: "T".into(),
            text: "hello".into(),
            received_at_ms: now_ms(),
        };
        let outcome = runtime.on_mo(&loaded, scope, &message).await;
        blocker.rollback().await.unwrap();
        let error = outcome.result.unwrap_err();
        assert_eq!(
            error,
            CallError::Timeout { limit_ms: WALL_MS },
            "{}",
            db.name
        );
        assert_eq!(error.kind(), "timeout");
        assert!(error.to_string().contains("wall-clock"), "{error}");
        assert!(error.is_module_fault() && error.is_transient());

        // Unblocked, the same call succeeds: the timeout was the host's wait.
        let outcome = registry
            .on_mo(&partner, "hostile-sleep", &message)
            .await
            .unwrap();
        assert_eq!(outcome.result, Ok(Some("stored".into())), "{}", db.name);

        // A module that computes is still `cpu-limit`, within its budget's reach.
        registry
            .upload(&partner, &common::guest("hostile-loop"), "test")
            .await
            .unwrap();
        let outcome = registry
            .bulletin(&partner, "hostile-loop", &request)
            .await
            .unwrap();
        assert_eq!(outcome.result, Err(CallError::CpuLimit { limit_ms: 100 }));
    }
}
