//! Issue 17 item 1: every upload runs the admission corpus in
//! the sandbox, every text it produces goes through the content policy, and a
//! version that fails cannot be activated; on SQLite and PostgreSQL.

#![allow(clippy::unwrap_used)]

mod common;

use tongdao::modules::{Registry, RegistryConfig, RegistryError};

/// Rows of `table` (the corpus must leave nothing behind).
async fn count(store: &tongdao::store::Store, table: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

/// `sly-words` writes `赌博` (a default prohibited word) for one input of the
/// twenty-call corpus, the all-digit MO: 5 % of its corpus. It is refused with the
/// report naming the text that hit, cannot be activated, and the corpus wrote
/// nothing (no key-value entries, attributes, faults, violations or messages).
/// With `admission_max_violation_permille = 50` the same bytes are admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_8_1_a_version_violating_policy_on_5_percent_of_its_corpus_is_refused() {
    for db in common::stores().await {
        let registry = common::registry(&db.store);
        let partner = common::partner(&db.store, "acme").await;
        let uploaded = registry
            .upload(&partner, &common::guest("sly-words"), "t")
            .await
            .unwrap();
        let report = uploaded.admission.clone().unwrap();
        assert!(!report.passed, "{}: {report:?}", db.name);
        assert!(
            !uploaded.activated,
            "a failed first version does not go live"
        );
        assert_eq!(report.figures.calls, 20, "{}: {:?}", db.name, report.calls);
        assert_eq!(report.figures.violating_calls, 1);
        assert_eq!(report.figures.violation_permille, 50);
        assert_eq!(report.figures.faults, 0);
        let policy = report
            .checks
            .iter()
            .find(|c| c.name == "content-policy")
            .unwrap();
        assert!(
            !policy.passed && policy.detail.contains("1 of 20"),
            "{policy:?}"
        );
        assert!(
            report
                .checks
                .iter()
                .filter(|c| c.name != "content-policy")
                .all(|c| c.passed)
        );
        let [hit] = report.policy_hits.as_slice() else {
            panic!("one hit expected: {:?}", report.policy_hits)
        };
        assert_eq!(
            (hit.export.as_str(), hit.input.as_str(), hit.rule.as_str()),
            ("on-mo", "digits", "prohibited-word")
        );
        assert!(hit.text.contains("赌博"), "{hit:?}");
        // Both variant keys of its bulletin got an MO of their own.
        for key in ["level=gold", "level=silver"] {
            assert!(report.calls.iter().any(|c| c.input == key), "{key}");
        }

        // The report is stored with the version, and blocks its activation.
        let stored = registry
            .admission(&partner, "sly-words", uploaded.version)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.policy_hits.len(), 1);
        assert_eq!(stored.at, report.at);
        match registry
            .activate(&partner, "sly-words", uploaded.version, "t")
            .await
        {
            Err(RegistryError::AdmissionFailed { module, version }) => {
                assert_eq!((module.as_str(), version), ("sly-words", 1));
            }
            other => panic!("{}: expected admission-failed, got {other:?}", db.name),
        }
        let info = registry.get(&partner, "sly-words").await.unwrap();
        assert_eq!(info.active_version, None);
        assert_eq!(info.versions[0].admission_passed, Some(false));

        // Uploading the same bytes again keeps the same report, runs nothing new.
        let again = registry
            .upload(&partner, &common::guest("sly-words"), "t")
            .await
            .unwrap();
        assert_eq!(again.admission.unwrap().at, report.at);

        // The corpus ran in a dry run: nothing it did was stored or recorded.
        for table in [
            "kv_entries",
            "subscriber_attributes",
            "module_faults",
            "violations",
            "messages",
        ] {
            assert_eq!(count(&db.store, table).await, 0, "{}: {table}", db.name);
        }

        // A platform that tolerates 5 % admits the same bytes.
        let lenient = Registry::with_config(
            db.store.clone(),
            common::runtime(),
            RegistryConfig {
                admission_max_violation_permille: 50,
                ..RegistryConfig::default()
            },
        );
        let other = common::partner(&db.store, "lenient").await;
        let admitted = lenient
            .upload(&other, &common::guest("sly-words"), "t")
            .await
            .unwrap();
        assert!(admitted.admission.unwrap().passed);
        assert!(admitted.activated);
    }
}

/// The example modules pass admission and go live; a module that traps fails
/// the `faults` check and each of its exports is called only until it faults.
/// Prints the admission time per example (the README's figures).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_8_1_clean_examples_pass_and_a_trapping_module_fails() {
    let db = common::sqlite().await;
    let registry = common::registry(&db.store);
    let partner = common::partner(&db.store, "acme").await;
    for name in [
        "horoscope",
        "quiz",
        "jokes",
        "clock-probe",
        "stateful-counter",
    ] {
        let uploaded = registry
            .upload(&partner, &common::guest(name), "t")
            .await
            .unwrap();
        let report = uploaded.admission.unwrap();
        let f = &report.figures;
        println!(
            "admission {name}: passed={} calls={} texts={} module_errors={} cpu_us_p50={} cpu_us_max={} output_bytes_max={} took_ms={}",
            report.passed,
            f.calls,
            f.texts,
            f.module_errors,
            f.cpu_us_p50,
            f.cpu_us_max,
            f.output_bytes_max,
            f.took_ms
        );
        assert!(
            report.passed,
            "{name}: {:?} {:?}",
            report.checks, report.policy_hits
        );
        assert!(uploaded.activated, "{name}");
        assert!(f.calls >= 18, "{name}: {}", f.calls);
    }
    // The horoscope's twelve signs each got an MO from a subscriber with that sign.
    let horoscope = registry
        .admission(&partner, "horoscope", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        horoscope
            .calls
            .iter()
            .filter(|c| c.input.starts_with("sign="))
            .count(),
        12
    );

    let trap = registry
        .upload(&partner, &common::guest("hostile-trap"), "t")
        .await
        .unwrap();
    let report = trap.admission.unwrap();
    assert!(!report.passed);
    let faults = report.checks.iter().find(|c| c.name == "faults").unwrap();
    assert!(!faults.passed, "{faults:?}");
    // `bulletin` panics and `on-mo` aborts: one call each, the rest skipped.
    let outcomes: Vec<(&str, &str)> = report
        .calls
        .iter()
        .map(|c| (c.export.as_str(), c.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes.iter().filter(|(_, o)| *o == "trap").count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(report.figures.skipped, 14, "{outcomes:?}");
    // The corpus records no fault against the module: the report is the record.
    let info = registry.get(&partner, "hostile-trap").await.unwrap();
    assert_eq!(info.fault_count, 0);
}
