//! The figures of issue 15's statistics, from the records and from `GET /v1/stats`,
//! per (service, operator): what the statistics tests and the fault-injection suite
//! compare.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use serde_json::Value;
use tongdao::store::Store;

/// The figures of one (service, operator), from the records or from the API.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    pub mt_queued: i64,
    pub mt_delivered: i64,
    pub mt_failed: i64,
    pub failed_by_reason: BTreeMap<String, i64>,
    pub mo: i64,
    pub subscriptions_new: i64,
    pub subscriptions_cancelled: i64,
    pub revenue_fen: i64,
    pub charges: i64,
    pub complaints: i64,
}

pub type ByKey = BTreeMap<(String, String), Figures>;

pub fn entry<'a>(map: &'a mut ByKey, service: Option<String>, operator: &str) -> &'a mut Figures {
    map.entry((service.unwrap_or_default(), operator.to_string()))
        .or_default()
}

/// What the records say, for `partner_id`, per service code and operator.
pub async fn records(store: &Store, partner_id: i64) -> ByKey {
    let mut out = ByKey::new();
    let mts: Vec<(Option<String>, String, String, Option<String>)> = sqlx::query_as(
        "SELECT s.code, m.operator, m.status, m.failure_reason FROM messages m
         LEFT JOIN services s ON s.id = m.service_id WHERE m.partner_id = $1 AND m.is_test = 0",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (code, operator, status, reason) in mts {
        let f = entry(&mut out, code, &operator);
        f.mt_queued += 1;
        match status.as_str() {
            "delivered" => f.mt_delivered += 1,
            "failed" | "expired" | "cancelled" => {
                f.mt_failed += 1;
                *f.failed_by_reason
                    .entry(tongdao::stats::rollup::reason_code(
                        &status,
                        reason.as_deref(),
                    ))
                    .or_default() += 1;
            }
            _ => {}
        }
    }
    let mos: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.code, mo.operator FROM mo_messages mo JOIN services s ON s.id = mo.service_id
         WHERE s.partner_id = $1",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (code, operator) in mos {
        entry(&mut out, Some(code), &operator).mo += 1;
    }
    let charges: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT service, operator, amount_fen FROM charge_events WHERE partner_id = $1",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (code, operator, amount) in charges {
        let f = entry(&mut out, Some(code), &operator);
        f.revenue_fen += amount;
        f.charges += 1;
    }
    let complaints: Vec<(String,)> = sqlx::query_as(
        "SELECT s.code FROM complaints c JOIN services s ON s.id = c.service_id WHERE c.partner_id = $1",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (code,) in complaints {
        entry(&mut out, Some(code), "mobile").complaints += 1;
    }
    // Subscriptions made and ended through the platform (the bulk-loaded audience
    // of the push was written straight into the table, before the test).
    let subs: Vec<(String, Option<i64>, String)> = sqlx::query_as(
        "SELECT s.code, sub.activated_at, sub.status FROM subscriptions sub
         JOIN services s ON s.id = sub.service_id WHERE sub.partner_id = $1 AND sub.source = 'api'",
    )
    .bind(partner_id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    for (code, activated, status) in subs {
        let f = entry(&mut out, Some(code), "mobile");
        if activated.is_some() {
            f.subscriptions_new += 1;
            if status == "cancelled" {
                f.subscriptions_cancelled += 1;
            }
        }
    }
    out
}

/// What `GET /v1/stats` says for `partner` at `granularity` over this month, read
/// with `admin_key`, summed per service and operator (every page).
pub async fn api_stats(base: &str, partner: &str, admin_key: &str, granularity: &str) -> ByKey {
    let http = reqwest::Client::new();
    let month = tongdao::clock::month_key(tongdao::store::now_ms());
    let mut out = ByKey::new();
    let mut after: Option<String> = None;
    loop {
        let mut url = format!(
            "{base}/v1/stats?partner={partner}&granularity={granularity}&from={month}&to={month}&limit=7"
        );
        if let Some(a) = &after {
            url.push_str(&format!("&after={a}"));
        }
        let page: Value = http
            .get(url)
            .bearer_auth(admin_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for row in page["items"].as_array().unwrap() {
            let f = entry(
                &mut out,
                row["service"].as_str().map(str::to_string),
                row["operator"].as_str().unwrap_or(""),
            );
            let n = |k: &str| row[k].as_i64().unwrap();
            f.mt_queued += n("mt_queued");
            f.mt_delivered += n("mt_delivered");
            f.mt_failed += n("mt_failed");
            for (reason, count) in row["failed_by_reason"].as_object().unwrap() {
                *f.failed_by_reason.entry(reason.clone()).or_default() += count.as_i64().unwrap();
            }
            f.mo += n("mo");
            f.subscriptions_new += n("subscriptions_new");
            f.subscriptions_cancelled += n("subscriptions_cancelled");
            f.revenue_fen += n("revenue_fen");
            f.charges += n("charges");
            f.complaints += n("complaints");
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_string()),
            None => break,
        }
    }
    out
}
