//! Many subscribers at once, for `serve --demo`, the tests and the benchmarks: a
//! cohort of numbers with active subscriptions to one service (and optionally the
//! horoscope's `sign` attribute), written in three statements whatever its size.
//!
//! Production opt-in goes through [`super::request`]/[`super::confirm`] one user
//! at a time (keyword, double confirmation); pushes and billing only read the
//! resulting rows, so a cohort written here is served and charged exactly like
//! users who texted in. Nothing in the platform calls this but the demo.

use crate::services::FeeType;
use crate::store::{Backend, Store, StoreError};

/// The twelve `sign` values the example horoscope module keys its bulletin on.
pub const SIGNS: [&str; 12] = [
    "aries",
    "taurus",
    "gemini",
    "cancer",
    "leo",
    "virgo",
    "libra",
    "scorpio",
    "sagittarius",
    "capricorn",
    "aquarius",
    "pisces",
];

/// A cohort of subscribers of one partner to one service.
#[derive(Debug, Clone)]
pub struct Cohort<'a> {
    pub partner_id: i64,
    pub service_id: i64,
    /// The number of subscriber `i` (0-based) is `first + i` (eleven digits).
    pub first: i64,
    /// How many subscribers (0 writes nothing).
    pub n: i64,
    /// Subscriber ids are `id_prefix` followed by `i`; unique per partner.
    pub id_prefix: &'a str,
    /// The fee type and price (fen) copied onto each subscription, as a
    /// confirmed opt-in would.
    pub fee_type: FeeType,
    pub price_fen: i64,
    /// The subscriptions' `source` (`demo`, `test`…).
    pub source: &'a str,
    /// When they were requested and activated, Unix ms (monthly charges are
    /// pro-rated from it under a pro-rata activation rule).
    pub activated_at: i64,
    /// Give subscriber `i` the attribute `sign = SIGNS[i % 12]`.
    pub signs: bool,
}

/// Write the cohort: subscribers, active subscriptions (ids in the order of `i`)
/// and, with `signs`, their `sign` attribute.
///
/// # Errors
/// A store error, e.g. when a subscriber id or an open subscription of one of the
/// numbers to the service already exists (nothing of the failing statement is kept).
pub async fn seed(store: &Store, cohort: &Cohort<'_>) -> Result<(), StoreError> {
    if cohort.n <= 0 {
        return Ok(());
    }
    // Rows 0..n from a number series, per backend.
    let series = match store.backend() {
        Backend::Sqlite => {
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $2)"
        }
        Backend::Postgres => "WITH seq(i) AS (SELECT generate_series(0, $2 - 1))",
    };
    let sign_case = SIGNS
        .iter()
        .enumerate()
        .map(|(k, s)| format!("WHEN {k} THEN '{s}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let id = "$1 || CAST(i AS TEXT)";
    let subscribers = format!(
        "{series} INSERT INTO subscribers (id, partner_id, msisdn, created_at)
         SELECT {id}, $3, CAST($4 + i AS TEXT), $5 FROM seq"
    );
    let subscriptions = format!(
        "{series} INSERT INTO subscriptions (partner_id, service_id, subscriber_id, msisdn, status, source,
            fee_type, price_fen, requested_at, activated_at)
         SELECT $3, $6, {id}, CAST($4 + i AS TEXT), 'active', $7, $8, $9, $5, $5 FROM seq ORDER BY i"
    );
    let attributes = format!(
        "{series} INSERT INTO subscriber_attributes (partner_id, subscriber_id, name, value, updated_at)
         SELECT $3, {id}, 'sign', CASE i % 12 {sign_case} END, $4 FROM seq"
    );
    let mut tx = store.begin_write().await?;
    sqlx::query(&subscribers)
        .bind(cohort.id_prefix)
        .bind(cohort.n)
        .bind(cohort.partner_id)
        .bind(cohort.first)
        .bind(cohort.activated_at)
        .execute(&mut *tx)
        .await?;
    sqlx::query(&subscriptions)
        .bind(cohort.id_prefix)
        .bind(cohort.n)
        .bind(cohort.partner_id)
        .bind(cohort.first)
        .bind(cohort.activated_at)
        .bind(cohort.service_id)
        .bind(cohort.source)
        .bind(cohort.fee_type.as_str())
        .bind(cohort.price_fen)
        .execute(&mut *tx)
        .await?;
    if cohort.signs {
        // PostgreSQL wants exactly the parameters a statement uses.
        sqlx::query(&attributes)
            .bind(cohort.id_prefix)
            .bind(cohort.n)
            .bind(cohort.partner_id)
            .bind(cohort.activated_at)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
