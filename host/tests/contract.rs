//! Issue 11 item 4: the validator reads the version of
//! `tongdao:partner` a component was built against, refuses the versions this
//! platform does not serve with a reason naming the version found and those
//! supported, and reports the version a component was really built against
//! (1.0.0 and, since issue 17 item 9, 1.1.0).

#![allow(clippy::unwrap_used)]

mod common;

use tongdao::modules::RegistryError;
use tongdao::runtime::ValidationError;
use tongdao::runtime::bindings::SUPPORTED_WIT_VERSIONS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_4_wrong_contract_versions_are_refused_by_name() {
    let db = common::sqlite().await;
    let registry = common::registry(&db.store);
    let partner = common::partner(&db.store, "acme").await;
    assert_eq!(SUPPORTED_WIT_VERSIONS, ["1.0.0", "1.1.0"]);

    // A major above and a major below: each refused, naming what it found and
    // what is served.
    for (fixture, found) in [("contract-v2-0-0", "2.0.0"), ("contract-v0-9-0", "0.9.0")] {
        let error = registry
            .upload(&partner, &common::guest(fixture), "test")
            .await
            .unwrap_err();
        match &error {
            RegistryError::Invalid(ValidationError::UnsupportedVersion {
                found: f,
                supported,
            }) => {
                assert_eq!(f, found, "{fixture}");
                assert_eq!(supported, &["1.0.0", "1.1.0"]);
            }
            other => panic!("{fixture}: expected unsupported-version, got {other:?}"),
        }
        let message = error.to_string();
        assert!(
            message.contains(&format!("tongdao:partner@{found}"))
                && message.contains("supports tongdao:partner@1.0.0, @1.1.0")
                && !message.contains("write"),
            "{fixture}: {message}"
        );
        if let RegistryError::Invalid(v) = &error {
            assert_eq!(v.code(), "unsupported-version");
        }
    }

    // What is accepted is reported as what it was built against.
    let uploaded = registry
        .upload(&partner, &common::guest("horoscope"), "test")
        .await
        .unwrap();
    assert_eq!(uploaded.wit_version, "1.0.0");
    let info = registry.get(&partner, "horoscope").await.unwrap();
    assert_eq!(info.versions[0].wit_version, "1.0.0");
    let newer = registry
        .upload(&partner, &common::guest("contract-v1-1-0"), "test")
        .await
        .unwrap();
    assert_eq!(
        (newer.module.as_str(), newer.wit_version.as_str()),
        ("jokes", "1.1.0")
    );
    let info = registry.get(&partner, "jokes").await.unwrap();
    assert_eq!(info.versions[0].wit_version, "1.1.0");
    // No refused upload left a module behind.
    assert_eq!(registry.list(&partner).await.unwrap().len(), 2);
}
