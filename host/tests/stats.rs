//! Issue 15 item 2: the statistics roll-up on both stores, in process. Two roll-ups
//! racing (two replicas) over 30,000 MTs' history count every event exactly once,
//! and the throughput of the roll-up is measured (events per second).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Instant;

use tongdao::relay::Routes;
use tongdao::store::{Backend, Store};

/// `n` MTs of `partner_id` with their history written as a relay would leave it:
/// every MT `queued` and `submitted`; 9 in 10 `delivered`, the rest `failed` with
/// an operator's report. Events spread over the last hours.
async fn history(store: &Store, partner_id: i64, n: i64) {
    let series = match store.backend() {
        Backend::Sqlite => {
            "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $2)"
        }
        Backend::Postgres => "WITH seq(i) AS (SELECT generate_series(0, $2 - 1))",
    };
    let now = tongdao::store::now_ms();
    sqlx::query(&format!(
        "{series} INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, status, next_attempt_at, expires_at, created_at, updated_at, done_at, failure_reason)
         SELECT $1, NULL, CAST(13900000000 + i AS TEXT), CASE WHEN i % 3 = 0 THEN 'unicom' ELSE 'mobile' END,
            'x', 'h', 1, 'free', CASE WHEN i % 10 = 9 THEN 'failed' ELSE 'delivered' END, 0, 0,
            $3 - i * 300, $3, $3 - i * 300,
            CASE WHEN i % 10 = 9 THEN 'the operator reported UNDELIV err:001' ELSE NULL END
         FROM seq ORDER BY i"
    ))
    .bind(partner_id)
    .bind(n)
    .bind(now)
    .execute(store.pool())
    .await
    .unwrap();
    for status in ["queued", "submitted", "final"] {
        let (status_sql, detail) = if status == "final" {
            ("m.status", "m.failure_reason")
        } else {
            (
                if status == "queued" {
                    "'queued'"
                } else {
                    "'submitted'"
                },
                "NULL",
            )
        };
        sqlx::query(&format!(
            "INSERT INTO message_events (message_id, status, detail, at)
             SELECT m.id, {status_sql}, {detail}, m.created_at FROM messages m WHERE m.partner_id = $1 ORDER BY m.id"
        ))
        .bind(partner_id)
        .execute(store.pool())
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_two_racing_rollups_count_every_event_once_and_throughput() {
    for db in common::stores().await {
        let store = &db.store;
        let partner = common::partner(store, "stars").await;
        let n = 30_000;
        history(store, partner.id, n).await;
        let routes = Routes::default();
        let started = Instant::now();
        let (a, b) = tokio::join!(
            tongdao::stats::roll_up(store, &routes),
            tongdao::stats::roll_up(store, &routes)
        );
        let took = started.elapsed();
        let (a, b) = (a.unwrap(), b.unwrap());
        let events = a.rows + b.rows;
        assert_eq!(events, 3 * u64::try_from(n).unwrap(), "{a:?} {b:?}");
        let per_metric: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT metric, reason, CAST(SUM(count) AS BIGINT) FROM stats_hourly WHERE partner_id = $1
             GROUP BY metric, reason ORDER BY metric, reason",
        )
        .bind(partner.id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        let failed = n / 10;
        assert_eq!(
            per_metric,
            vec![
                ("mt_delivered".into(), String::new(), n - failed),
                ("mt_failed".into(), "receipt-UNDELIV".into(), failed),
                ("mt_queued".into(), String::new(), n),
                ("mt_sent".into(), String::new(), n),
            ],
            "{}",
            db.name
        );
        // Per operator too: a third are unicom's.
        let (unicom,): (i64,) = sqlx::query_as(
            "SELECT CAST(SUM(count) AS BIGINT) FROM stats_hourly WHERE partner_id = $1 AND metric = 'mt_queued' AND operator = 'unicom'",
        )
        .bind(partner.id)
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert_eq!(unicom, n / 3);
        // A second pass finds nothing new.
        let again = tongdao::stats::roll_up(store, &routes).await.unwrap();
        assert_eq!(again.rows, 0);
        #[allow(clippy::cast_precision_loss)]
        let rate = events as f64 / took.as_secs_f64();
        eprintln!(
            "stats roll-up ({}): {events} events in {:.2} s = {rate:.0} events/s (two racing roll-ups; {} + {} batches)",
            db.name,
            took.as_secs_f64(),
            a.batches,
            b.batches
        );
    }
}
