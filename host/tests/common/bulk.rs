//! Bulk test data for push tests and the fan-out benchmark: an approved service
//! (through the services workflow) and many subscribers with active subscriptions
//! and a `sign` attribute, written with SQL in a few statements (`subscriptions::bulk`). The opt-in flow that creates these one by one in
//! production (keyword, double confirmation) is issue 4's and tested there; pushes
//! only read the resulting rows, so this is all their tests need. Everything else
//! in those tests (module upload, push, fan-out, relay, SMSC) goes the real path.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use tongdao::modules::Registry;
use tongdao::partners::Partner;
use tongdao::runtime::{Runtime, RuntimeConfig};
use tongdao::services::{FeeType, ServiceTerms};
use tongdao::store::Store;

/// The twelve `sign` values the horoscope module keys its bulletin on.
pub const SIGNS: [&str; 12] = tongdao::subscriptions::bulk::SIGNS;

/// An approved free service `code` of `partner_id` served by `module`, declared,
/// submitted and approved through the product's workflow (`services`). Returns its id.
pub async fn approved_service(store: &Store, partner_id: i64, code: &str, module: &str) -> i64 {
    approved_service_with(store, partner_id, code, module, FeeType::Free, 0, None).await
}

/// Like [`approved_service`] with a fee type, price and declared monthly maximum.
pub async fn approved_service_with(
    store: &Store,
    partner_id: i64,
    code: &str,
    module: &str,
    fee_type: FeeType,
    price_fen: i64,
    monthly_max_messages: Option<i64>,
) -> i64 {
    // Each service has its own number extension.
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM services")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let terms = ServiceTerms {
        name: format!("{code} service"),
        description: String::new(),
        // A keyword is never the code itself: that would get the help (issue 10 item 10).
        keywords: vec![format!("订{code}")],
        fee_type,
        price_fen,
        operators: vec!["mobile".into()],
        monthly_max_messages,
        number_ext: format!("{:02}", count + 1),
    };
    crate::common::approved(store, partner_id, code, Some(module), &terms).await
}

/// The number of subscriber `i` (0-based): `first + i`, eleven digits.
pub fn number(first: i64, i: i64) -> String {
    (first + i).to_string()
}

/// The sign of subscriber `i`: `SIGNS[i % 12]`.
pub fn sign(i: i64) -> &'static str {
    SIGNS[usize::try_from(i % 12).unwrap()]
}

/// `n` subscribers of `partner_id` numbered `first + i`, each with an active
/// subscription to `service_id` (ids in the order of i) and attribute
/// `sign = SIGNS[i % 12]`. Subscriber ids are `p<partner>-<i>`. Written by the
/// library's bulk path (`subscriptions::bulk`), which `serve --demo` uses too.
pub async fn subscribers(store: &Store, partner_id: i64, service_id: i64, first: i64, n: i64) {
    tongdao::subscriptions::bulk::seed(
        store,
        &tongdao::subscriptions::bulk::Cohort {
            partner_id,
            service_id,
            first,
            n,
            id_prefix: &format!("p{partner_id}-"),
            fee_type: FeeType::Free,
            price_fen: 0,
            source: "test",
            activated_at: 0,
            signs: true,
        },
    )
    .await
    .unwrap();
}

/// The benchmarks' tenant: partner `bench` with the embedded horoscope module
/// uploaded (and so active) in a default runtime, and its approved free service
/// `XZ`. Returns the registry, the partner and the service id.
pub async fn horoscope_tenant(store: &Store) -> (Arc<Registry>, Partner, i64) {
    let (partner, _) = tongdao::partners::create(store, "bench", "Bench")
        .await
        .unwrap();
    let runtime = Arc::new(Runtime::new(RuntimeConfig::default(), None).unwrap());
    let registry = Arc::new(Registry::new(store.clone(), runtime));
    registry
        .upload(&partner, tongdao::demo::HOROSCOPE, "bench")
        .await
        .unwrap();
    let service = approved_service(store, partner.id, "XZ", "horoscope").await;
    (registry, partner, service)
}
