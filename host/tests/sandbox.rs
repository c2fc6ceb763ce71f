//! every call is sandboxed and bounded. Each hostile fixture ends with its
//! typed error within the configured limit, is recorded against partner and module
//! version, and the host and other modules carry on.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use std::sync::Arc;

use tongdao::config::RuntimeConfig;
use tongdao::modules::Registry;
use tongdao::runtime::{BulletinContent, BulletinRequest, CallError, Runtime};

/// A deadline long enough that only the limit under test can end the call, even
/// on a loaded 2-core CI machine (host calls count against the deadline).
const GENEROUS_MS: u64 = 5_000;

fn request() -> BulletinRequest {
    BulletinRequest {
        service: "T".into(),
        push_id: "push-1".into(),
        date: "2026-11-28".into(),
    }
}

/// Upload `fixture` and the horoscope for one partner, then call the fixture's
/// bulletin while horoscope calls run beside it; return the fixture's error.
async fn hostile_bulletin(fixture: &str, call_timeout_ms: u64) -> CallError {
    let db = common::sqlite().await;
    let limits = RuntimeConfig {
        call_timeout_ms,
        wall_timeout_ms: GENEROUS_MS,
        ..common::limits()
    };
    let registry = Registry::with_config(
        db.store.clone(),
        Arc::new(Runtime::new(limits, None).unwrap()),
        common::reporting(),
    );
    let partner = common::partner(&db.store, "acme").await;
    let hostile = registry
        .upload(&partner, &common::guest(fixture), "test")
        .await
        .unwrap();
    registry
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();

    // Healthy calls keep succeeding while the hostile call runs on another task.
    let registry = Arc::new(registry);
    let bad = {
        let (registry, partner, name) = (registry.clone(), partner.clone(), hostile.module.clone());
        tokio::spawn(async move {
            registry
                .bulletin(&partner, &name, &request())
                .await
                .unwrap()
        })
    };
    for _ in 0..20 {
        let outcome = registry
            .bulletin(&partner, "horoscope", &request())
            .await
            .unwrap();
        assert!(
            outcome.result.is_ok(),
            "horoscope failed beside {fixture}: {:?}",
            outcome.result
        );
    }
    let error = bad.await.unwrap().result.unwrap_err();

    // The fault is recorded against the partner, module and version, and visible.
    let faults = registry
        .faults(&partner, &hostile.module, 10)
        .await
        .unwrap();
    assert_eq!(faults.len(), 1, "one fault recorded for {fixture}");
    assert_eq!(
        (faults[0].version, faults[0].export.as_str()),
        (hostile.version, "bulletin")
    );
    assert_eq!(faults[0].kind, error.kind());
    let info = registry.get(&partner, &hostile.module).await.unwrap();
    assert_eq!((info.fault_count, info.versions[0].fault_count), (1, 1));
    // And the host still serves the hostile module's neighbours afterwards.
    assert!(
        registry
            .bulletin(&partner, "horoscope", &request())
            .await
            .unwrap()
            .result
            .is_ok()
    );
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_ends_at_the_deadline() {
    let started = Instant::now();
    let error = hostile_bulletin("hostile_loop", 100).await;
    assert_eq!(error, CallError::CpuLimit { limit_ms: 100 });
    // The deadline is 100 ms; compiling and set-up take the rest.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bomb_ends_at_the_memory_limit() {
    match hostile_bulletin("hostile_memory", GENEROUS_MS).await {
        CallError::MemoryLimit { limit, requested } => {
            assert_eq!(limit, common::limits().max_memory_bytes);
            assert!(
                requested > limit,
                "requested {requested} should exceed {limit}"
            );
        }
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_reported_as_a_trap() {
    match hostile_bulletin("hostile_trap", GENEROUS_MS).await {
        CallError::Trap(message) => assert!(!message.is_empty()),
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_output_is_refused() {
    match hostile_bulletin("hostile_oversize", GENEROUS_MS).await {
        CallError::OutputLimit { limit, actual, .. } => {
            assert_eq!(limit, common::limits().max_output_bytes);
            assert!(actual > limit);
        }
        other => panic!("expected an output-limit error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_flood_hits_the_host_call_quota() {
    let error = hostile_bulletin("hostile_kv_flood", GENEROUS_MS).await;
    assert_eq!(
        error,
        CallError::HostCallQuota {
            what: "key-value",
            limit: common::limits().max_kv_ops
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_gets_a_fresh_instance() {
    // `stateful-counter` counts its calls in its own linear memory: a fresh instance
    // answers `call 1`, a reused one would answer `call 2`, `call 3`…
    let db = common::sqlite().await;
    // The trap below runs live: admission reports it and does not block it.
    let registry = Registry::with_config(db.store.clone(), common::runtime(), common::reporting());
    let partner = common::partner(&db.store, "acme").await;
    registry
        .upload(&partner, &common::guest("stateful-counter"), "t")
        .await
        .unwrap();
    for _ in 0..5 {
        let content = registry
            .bulletin(&partner, "stateful-counter", &request())
            .await
            .unwrap()
            .result
            .unwrap();
        assert_eq!(
            content,
            BulletinContent::Single {
                text: "call 1".into()
            },
            "a call saw the state of an earlier one"
        );
    }
    // Concurrent calls do not share an instance either.
    let registry = Arc::new(registry);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (registry, partner) = (registry.clone(), partner.clone());
            tokio::spawn(async move {
                registry
                    .bulletin(&partner, "stateful-counter", &request())
                    .await
                    .unwrap()
                    .result
                    .unwrap()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(
            call.await.unwrap(),
            BulletinContent::Single {
                text: "call 1".into()
            }
        );
    }

    // A trap in one call leaves the next call of the same module intact.
    registry
        .upload(&partner, &common::guest("hostile_trap"), "t")
        .await
        .unwrap();
    for _ in 0..3 {
        let outcome = registry
            .bulletin(&partner, "hostile-trap", &request())
            .await
            .unwrap();
        assert!(matches!(outcome.result, Err(CallError::Trap(_))));
    }
    assert_eq!(
        registry
            .faults(&partner, "hostile-trap", 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

/// A partner's key quota (`[runtime] max_kv_keys`) holds under a flood: the
/// module that writes new keys forever ends at its host-call quota, and the store
/// holds exactly `max_kv_keys` of its keys, however many it tried (SECURITY.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_key_quota_holds_under_a_flood() {
    let db = common::sqlite().await;
    let limits = RuntimeConfig {
        call_timeout_ms: GENEROUS_MS,
        max_kv_keys: 25,
        max_kv_ops: 400,
        ..common::limits()
    };
    let registry = Registry::with_config(
        db.store.clone(),
        Arc::new(Runtime::new(limits, None).unwrap()),
        common::reporting(),
    );
    let partner = common::partner(&db.store, "acme").await;
    let flood = registry
        .upload(&partner, &common::guest("hostile_kv_flood"), "test")
        .await
        .unwrap();
    let outcome = registry
        .bulletin(&partner, &flood.module, &request())
        .await
        .unwrap();
    assert_eq!(
        outcome.result.unwrap_err(),
        CallError::HostCallQuota {
            what: "key-value",
            limit: 400
        }
    );
    let (keys,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1")
        .bind(partner.id)
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(keys, 25, "the key quota holds");
}

/// Log lines are bounded (`[runtime] max_log_lines`, 1 KiB each): a module that
/// logs three 30 MB lines keeps two lines of at most 1 KiB when the limit is two,
/// the third counted as dropped, and its call still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_are_capped_in_number_and_length() {
    let db = common::sqlite().await;
    let limits = RuntimeConfig {
        call_timeout_ms: GENEROUS_MS,
        max_log_lines: 2,
        ..common::limits()
    };
    let registry = Registry::with_config(
        db.store.clone(),
        Arc::new(Runtime::new(limits, None).unwrap()),
        common::reporting(),
    );
    let partner = common::partner(&db.store, "acme").await;
    let flood = registry
        .upload(&partner, &common::guest("hostile_log_flood"), "test")
        .await
        .unwrap();
    let outcome = registry
        .bulletin(&partner, &flood.module, &request())
        .await
        .unwrap();
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    assert_eq!(outcome.logs.len(), 2);
    assert_eq!(outcome.logs_dropped, 1);
    for line in &outcome.logs {
        assert!(
            !line.message.is_empty() && line.message.len() <= 1024,
            "a line of {} bytes",
            line.message.len()
        );
    }
}

/// A registry whose runtime has `limits`, and partner `acme` with the
/// `hostile-limits` fixture uploaded (and live).
async fn limits_fixture(
    limits: RuntimeConfig,
) -> (common::TestStore, Registry, tongdao::partners::Partner) {
    let db = common::sqlite().await;
    let registry = Registry::with_config(
        db.store.clone(),
        Arc::new(Runtime::new(limits, None).unwrap()),
        common::reporting(),
    );
    let partner = common::partner(&db.store, "acme").await;
    registry
        .upload(&partner, &common::guest("hostile-limits"), "test")
        .await
        .unwrap();
    (db, registry, partner)
}

fn limits_mo(text: &str) -> tongdao::runtime::MoMessage {
    tongdao::runtime::MoMessage {
        subscriber: "sub-1".into(),
        service: "T".into(),
        text: text.into(),
        received_at_ms: tongdao::store::now_ms(),
    }
}

/// SECURITY.md section 1, `max_kv_value_bytes`: a value of exactly the limit is
/// stored; one byte more is refused to the module as `value-too-large` naming the
/// limit, the call goes on (the module answers the verdict) and the store keeps the
/// earlier value. Issue 18 item 4 (gap 6), R-8.2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_a_value_over_max_kv_value_bytes_is_refused_as_value_too_large() {
    let (db, registry, partner) = limits_fixture(RuntimeConfig {
        call_timeout_ms: GENEROUS_MS,
        max_kv_value_bytes: 1000,
        ..common::limits()
    })
    .await;
    let reply = async |text: &str| {
        registry
            .on_mo(&partner, "hostile-limits", &limits_mo(text))
            .await
            .unwrap()
            .result
            .unwrap()
            .unwrap()
    };
    assert_eq!(reply("kv 1000").await, "stored 1000");
    let refused = reply("kv 1001").await;
    assert!(
        refused.starts_with("refused:") && refused.contains("ValueTooLarge(1000)"),
        "{refused}"
    );
    assert_eq!(reply("get").await, "big is 1000 bytes");
    let (stored,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1 AND LENGTH(value) > 1000",
    )
    .bind(partner.id)
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!(stored, 0, "no value over the limit is stored");
    // A refused write is the module's business, not a fault.
    assert!(
        registry
            .faults(&partner, "hostile-limits", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// SECURITY.md section 1, `max_data_ops`: a call may make exactly the configured
/// number of content-library and attribute calls; one more ends the call as
/// `host-call-quota` (what: `data`), recorded as a fault. Issue 18 item 4 (gap 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_data_calls_past_max_data_ops_end_the_call() {
    let (_db, registry, partner) = limits_fixture(RuntimeConfig {
        call_timeout_ms: GENEROUS_MS,
        max_data_ops: 30,
        ..common::limits()
    })
    .await;
    let outcome = registry
        .on_mo(&partner, "hostile-limits", &limits_mo("data 30"))
        .await
        .unwrap();
    assert_eq!(outcome.result, Ok(Some("data 30 done".into())));
    let outcome = registry
        .on_mo(&partner, "hostile-limits", &limits_mo("data 31"))
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        Err(CallError::HostCallQuota {
            what: "data",
            limit: 30
        })
    );
    let faults = registry
        .faults(&partner, "hostile-limits", 10)
        .await
        .unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!(
        (faults[0].kind.as_str(), faults[0].export.as_str()),
        ("host-call-quota", "on-mo")
    );
}

/// SECURITY.md section 1, `max_variants`: a keyed bulletin of exactly the limit
/// passes; one variant more is refused as `output-limit` naming the number of
/// variants, recorded as a fault. Issue 18 item 4 (gap 6).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item18_a_bulletin_over_max_variants_is_an_output_limit() {
    let (_db, registry, partner) = limits_fixture(RuntimeConfig {
        call_timeout_ms: GENEROUS_MS,
        max_variants: 12,
        ..common::limits()
    })
    .await;
    let push = |n: usize| BulletinRequest {
        service: "T".into(),
        push_id: format!("push-{n}"),
        date: "2026-11-28".into(),
    };
    let outcome = registry
        .bulletin(&partner, "hostile-limits", &push(12))
        .await
        .unwrap();
    match outcome.result {
        Ok(BulletinContent::Keyed { variants, .. }) => assert_eq!(variants.len(), 12),
        other => panic!("12 variants should pass: {other:?}"),
    }
    let outcome = registry
        .bulletin(&partner, "hostile-limits", &push(13))
        .await
        .unwrap();
    assert_eq!(
        outcome.result,
        Err(CallError::OutputLimit {
            what: "number of variants",
            limit: 12,
            actual: 13
        })
    );
    let faults = registry
        .faults(&partner, "hostile-limits", 10)
        .await
        .unwrap();
    assert_eq!(faults.len(), 1);
    assert_eq!(faults[0].kind, "output-limit");
}
