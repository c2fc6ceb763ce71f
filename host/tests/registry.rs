//! upload, validation with a precise reason, versions, activation and
//! rollback, on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tongdao::modules::{Registry, RegistryConfig, RegistryError};
use tongdao::partners::Partner;
use tongdao::runtime::ValidationError;

fn rejection(result: Result<tongdao::modules::Uploaded, RegistryError>) -> ValidationError {
    match result {
        Err(RegistryError::Invalid(v)) => v,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_rejected_with_their_reason() {
    for db in common::stores().await {
        let registry = common::registry(&db.store);
        let partner = common::partner(&db.store, "acme").await;
        let upload = |bytes: Vec<u8>| {
            let registry = &registry;
            let partner = &partner;
            async move { registry.upload(partner, &bytes, "test").await }
        };

        let random = std::fs::read(tongdao_test_programs::artifact("random.bin")).unwrap();
        assert_eq!(
            rejection(upload(random).await),
            ValidationError::NotWasm,
            "{}",
            db.name
        );

        let core = std::fs::read(tongdao_test_programs::artifact("core-module.wasm")).unwrap();
        assert_eq!(
            rejection(upload(core).await),
            ValidationError::CoreModule,
            "{}",
            db.name
        );

        match rejection(upload(common::guest("wrong_world")).await) {
            ValidationError::WrongWorld(reason) => {
                assert!(reason.contains("tongdao:partner/module"), "{reason}")
            }
            other => panic!("{}: expected wrong-world, got {other:?}", db.name),
        }
        match rejection(upload(common::guest("hostile_imports")).await) {
            ValidationError::UnsupportedImport(reason) => {
                assert!(reason.contains("evil:"), "{reason}")
            }
            other => panic!("{}: expected unsupported-import, got {other:?}", db.name),
        }
        // A truncated component is refused by the compiler with its reason.
        let mut truncated = common::guest("horoscope");
        truncated.truncate(truncated.len() / 2);
        assert!(matches!(
            rejection(upload(truncated).await),
            ValidationError::Invalid(_)
        ));

        // Nothing was stored for any of them.
        assert!(
            registry.list(&partner).await.unwrap().is_empty(),
            "{}",
            db.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_activation_and_rollback() {
    for db in common::stores().await {
        let registry = common::registry(&db.store);
        let partner = common::partner(&db.store, "acme").await;
        let v1_bytes = common::guest("horoscope");
        // A second version: the same component with a custom section appended is
        // different bytes (a new sha-256) with the same name.
        let mut v2_bytes = v1_bytes.clone();
        v2_bytes.extend_from_slice(&custom_section("build", b"v2"));
        let mut v3_bytes = v1_bytes.clone();
        v3_bytes.extend_from_slice(&custom_section("build", b"v3"));

        let v1 = registry.upload(&partner, &v1_bytes, "t").await.unwrap();
        assert!(
            v1.created && v1.activated && v1.version == 1,
            "{}: {v1:?}",
            db.name
        );
        // The same bytes again are the same version, not a new one.
        let again = registry.upload(&partner, &v1_bytes, "t").await.unwrap();
        assert!(!again.created && again.version == 1);

        let v2 = registry.upload(&partner, &v2_bytes, "t").await.unwrap();
        assert!(
            v2.created && !v2.activated && v2.version == 2,
            "a later upload does not go live by itself"
        );
        let v3 = registry.upload(&partner, &v3_bytes, "t").await.unwrap();
        assert_eq!(v3.version, 3);
        assert_eq!(
            registry
                .get(&partner, "horoscope")
                .await
                .unwrap()
                .active_version,
            Some(1)
        );

        // Nothing to roll back to yet.
        assert!(matches!(
            registry.rollback(&partner, "horoscope", "t").await,
            Err(RegistryError::NothingToRollBack(_))
        ));
        assert_eq!(
            registry
                .activate(&partner, "horoscope", 2, "t")
                .await
                .unwrap()
                .active_version,
            Some(2)
        );
        assert_eq!(
            registry
                .activate(&partner, "horoscope", 3, "t")
                .await
                .unwrap()
                .active_version,
            Some(3)
        );
        assert!(matches!(
            registry.activate(&partner, "horoscope", 3, "t").await,
            Err(RegistryError::AlreadyActive { .. })
        ));
        assert!(matches!(
            registry.activate(&partner, "horoscope", 9, "t").await,
            Err(RegistryError::NoSuchVersion { version: 9, .. })
        ));
        // Rollback walks back one activation at a time: 3 → 2 → 1, then stops.
        assert_eq!(
            registry
                .rollback(&partner, "horoscope", "t")
                .await
                .unwrap()
                .active_version,
            Some(2)
        );
        assert_eq!(
            registry
                .rollback(&partner, "horoscope", "t")
                .await
                .unwrap()
                .active_version,
            Some(1)
        );
        assert!(matches!(
            registry.rollback(&partner, "horoscope", "t").await,
            Err(RegistryError::NothingToRollBack(_))
        ));
        let info = registry.get(&partner, "horoscope").await.unwrap();
        assert_eq!(info.versions.len(), 3);
        assert_eq!(info.versions.iter().filter(|v| v.active).count(), 1);
        assert!(info.versions[0].active);

        // Calls run on the active version.
        let request = tongdao::runtime::BulletinRequest {
            service: "XZ".into(),
            push_id: "p".into(),
            date: "2026-11-28".into(),
        };
        assert!(
            registry
                .bulletin(&partner, "horoscope", &request)
                .await
                .unwrap()
                .result
                .is_ok()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_are_per_partner() {
    for db in common::stores().await {
        let registry = common::registry(&db.store);
        let acme = common::partner(&db.store, "acme").await;
        let other = common::partner(&db.store, "other").await;
        registry
            .upload(&acme, &common::guest("horoscope"), "t")
            .await
            .unwrap();
        assert!(matches!(
            registry.get(&other, "horoscope").await,
            Err(RegistryError::NotFound(_))
        ));
        assert!(registry.list(&other).await.unwrap().is_empty());
        // The other partner may upload a module of the same name: it is its own.
        let theirs = registry
            .upload(&other, &common::guest("horoscope"), "t")
            .await
            .unwrap();
        assert_eq!(theirs.version, 1);
        assert_eq!(registry.list(&acme).await.unwrap().len(), 1);
    }
}

/// A WebAssembly custom section (id 0) with `name` and `payload`.
/// Faults counted per version number of `module` (every fault, not only samples).
async fn faults_per_version(
    registry: &Registry,
    partner: &Partner,
    module: &str,
) -> BTreeMap<i64, i64> {
    let mut out = BTreeMap::new();
    for window in registry.fault_windows(partner, module, 1000).await.unwrap() {
        *out.entry(window.version).or_insert(0) += window.count;
    }
    out
}

/// Issue 13 item 3: calls keep the active version in memory instead of reading it
/// from the store each time, yet an activation or rollback is seen by the very next
/// call, and another replica's by a call within `active_recheck_ms`. Which version
/// ran is read from the fault bookkeeping: both versions trap, and each fault is
/// counted against the version that ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_an_activation_or_rollback_is_seen_by_the_next_call() {
    for db in common::stores().await {
        let config = RegistryConfig {
            active_recheck_ms: 200,
            ..common::reporting()
        };
        let registry = Registry::with_config(db.store.clone(), common::runtime(), config.clone());
        let partner = common::partner(&db.store, "acme").await;
        let v1_bytes = common::guest("hostile_trap");
        let mut v2_bytes = v1_bytes.clone();
        v2_bytes.extend_from_slice(&custom_section("build", b"v2"));
        let module = registry
            .upload(&partner, &v1_bytes, "t")
            .await
            .unwrap()
            .module;
        registry.upload(&partner, &v2_bytes, "t").await.unwrap();
        let request = tongdao::runtime::BulletinRequest {
            service: "T".into(),
            push_id: "p".into(),
            date: "2026-11-30".into(),
        };
        let call = || async {
            let outcome = registry
                .bulletin(&partner, &module, &request)
                .await
                .unwrap();
            assert!(outcome.result.is_err(), "{}: hostile-trap traps", db.name);
        };
        let faults = || faults_per_version(&registry, &partner, &module);

        call().await;
        call().await;
        assert_eq!(faults().await, BTreeMap::from([(1, 2)]), "{}", db.name);
        assert_eq!(
            registry.active_version_id(&partner, &module).await.unwrap(),
            active_id(&db.store, &module).await,
            "{}",
            db.name
        );

        registry.activate(&partner, &module, 2, "t").await.unwrap();
        call().await;
        assert_eq!(
            faults().await,
            BTreeMap::from([(1, 2), (2, 1)]),
            "{}: the call right after the activation ran version 2",
            db.name
        );
        assert_eq!(
            registry.active_version_id(&partner, &module).await.unwrap(),
            active_id(&db.store, &module).await
        );

        registry.rollback(&partner, &module, "t").await.unwrap();
        call().await;
        assert_eq!(
            faults().await,
            BTreeMap::from([(1, 3), (2, 1)]),
            "{}: the call right after the rollback ran version 1",
            db.name
        );

        // Another replica (its own registry on the same store) activates version 2:
        // this one runs it within `active_recheck_ms`.
        let replica = Registry::with_config(db.store.clone(), common::runtime(), config.clone());
        replica.activate(&partner, &module, 2, "t").await.unwrap();
        let changed = Instant::now();
        let deadline = changed + Duration::from_secs(10);
        loop {
            call().await;
            if faults().await.get(&2) == Some(&2) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: another replica's activation never seen: {:?}",
                db.name,
                faults().await
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(
            registry.active_version_id(&partner, &module).await.unwrap(),
            active_id(&db.store, &module).await
        );
        println!(
            "{}: another replica's activation seen after {} ms (recheck {} ms)",
            db.name,
            changed.elapsed().as_millis(),
            config.active_recheck_ms
        );
    }
}

/// The active version id of `module`, read from the store.
async fn active_id(store: &tongdao::store::Store, module: &str) -> i64 {
    let (id,): (i64,) = sqlx::query_as("SELECT active_version_id FROM modules WHERE name = $1")
        .bind(module)
        .fetch_one(store.pool())
        .await
        .unwrap();
    id
}

fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut body = leb128(name.len());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(payload);
    let mut out = vec![0u8];
    out.extend(leb128(body.len()));
    out.extend(body);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}
