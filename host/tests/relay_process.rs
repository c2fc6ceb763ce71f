//! The relay's bulk fast path under `kill -9` (R-1.3, issue 13 item 3): the real
//! `tongdao serve` process sends a paid push with large claims (one statement per
//! claim), submit outcomes stored in group commits and receipts applied in bursts,
//! and is killed while all of that is busy. After a restart every MT reaches a final
//! state exactly once, every segment is finished once, billing charges each
//! delivered MT once and nothing else, and every duplicate at the SMSC is counted
//! (`resent_unknown`).

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;

use std::time::Duration;

use tongdao::billing::charges::{self, Scan};
use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::{Basis, ChargePlan, NewMessage, Routes, outbox};
use tongdao::services::FeeType;
use tongdao::store::Store;
use tongdao_smpp::sim::{Faults, Sim, SimConfig};

const FIRST_NUMBER: i64 = 13_800_000_000;
const PRICE_FEN: i64 = 10;

async fn count(store: &Store, sql: &str) -> i64 {
    let (n,): (i64,) = sqlx::query_as(sql).fetch_one(store.pool()).await.unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_the_bulk_fast_path_each_mt_final_once_no_double_charge() {
    let n: i64 = 6_000;
    let dir = tempfile::tempdir().unwrap();
    // Receipts 1 ms after each submit, so claims, outcome commits and receipt bursts
    // all run at once; one MT in 20 is reported undeliverable.
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(1),
        faults: Faults {
            undeliverable: 0.05,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let address = sim.local_addr().to_string();
    std::fs::write(
        dir.path().join("tongdao.toml"),
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[admin]\nkey = \"bulk-crash-admin-key\"\n\
             [relay]\nbatch = 512\nlease_secs = 2\nretry_initial_ms = 100\nretry_max_ms = 1000\n\
             [compliance]\nquiet_hours = \"\"\n\
             [[operators]]\nname = \"mobile\"\naddress = \"{address}\"\nsystem_id = \"td\"\npassword = \"pw\"\n\
             binds = 2\nwindow = 50\nprefixes = [\"13\"]\nsource_addr = \"10661234\"\n"
        ),
    )
    .unwrap();
    let url = format!(
        "sqlite://{}",
        dir.path().join("tongdao-data/tongdao.db").display()
    );
    let store = Store::connect(&url, 2).await.unwrap();
    store.migrate().await.unwrap();

    // A paid per-message service with n subscribers; one push MT each, queued through
    // the outbox's gate before the server starts.
    let partner = common::partner(&store, "paid").await;
    let service = bulk::approved_service_with(
        &store,
        partner.id,
        "JB",
        "horoscope",
        FeeType::PerMessage,
        PRICE_FEN,
        None,
    )
    .await;
    bulk::subscribers(&store, partner.id, service, FIRST_NUMBER, n).await;
    let subscriptions: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, msisdn FROM subscriptions WHERE service_id = $1 ORDER BY id")
            .bind(service)
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(subscriptions.len(), n as usize);
    let operator = OperatorConfig {
        name: "mobile".into(),
        address: address.clone(),
        prefixes: vec!["13".into()],
        ..Default::default()
    };
    let routes = Routes::new(std::slice::from_ref(&operator));
    let relay = RelayConfig::default();
    let compliance = common::relay_compliance(&store);
    let gate = outbox::Gate {
        routes: &routes,
        relay: &relay,
        compliance: &compliance,
    };
    for (i, (subscription, number)) in subscriptions.iter().enumerate() {
        let message = NewMessage {
            partner_id: Some(partner.id),
            service: Some("JB".into()),
            service_id: Some(service),
            recipient: number.clone(),
            text: format!("【简报】第{i}期：今日要闻"),
            charge_plan: ChargePlan::PerMessage,
            price_fen: PRICE_FEN,
            basis: Basis::Subscription(*subscription),
            sender: None,
            module_version_id: None,
            input_sha256: None,
            operator: None,
        };
        outbox::enqueue(&store, gate, message).await.unwrap();
    }

    let mut server = common::start_server(dir.path()).0;
    // Kill it hard while claims, submits and receipts are all in flight: a fifth
    // of the MTs past their submit, some receipts applied, the rest still claimed or
    // queued.
    common::wait_until(
        "a fifth submitted and some receipts applied",
        Duration::from_secs(60),
        || async {
            let past_submit = count(
                &store,
                "SELECT COUNT(*) FROM messages WHERE status IN ('submitted', 'delivered', 'failed')",
            )
            .await;
            let finished = count(
                &store,
                "SELECT COUNT(*) FROM messages WHERE status IN ('delivered', 'failed')",
            )
            .await;
            past_submit >= n / 5 && finished > 0
        },
    )
    .await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    let at_kill = count(
        &store,
        "SELECT COUNT(*) FROM messages WHERE status IN ('delivered', 'failed')",
    )
    .await;
    let claimed = common::count_messages(&store, "submitting").await;
    let submitted = common::count_messages(&store, "submitted").await;
    let queued = common::count_messages(&store, "queued").await;
    assert!(
        at_kill < n && claimed + queued > 0,
        "the kill came too late to test anything ({at_kill} final, {claimed} claimed, {queued} queued)"
    );

    let mut server = common::start_server(dir.path()).0;
    common::wait_until(
        "every MT final after the restart",
        Duration::from_secs(120),
        || async {
            count(
                &store,
                "SELECT COUNT(*) FROM messages WHERE status IN ('delivered', 'failed')",
            )
            .await
                == n
        },
    )
    .await;
    server.kill().unwrap();
    server.wait().unwrap();

    // Every MT reached a final state exactly once: one final event each.
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM (SELECT message_id FROM message_events
              WHERE status IN ('delivered', 'failed', 'expired')
              GROUP BY message_id HAVING COUNT(*) = 1) AS once",
        )
        .await,
        n,
        "each MT has exactly one final event"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM message_events WHERE status IN ('delivered', 'failed', 'expired')",
        )
        .await,
        n
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM message_segments WHERE done_at IS NULL OR operator_message_id IS NULL",
        )
        .await,
        0,
        "every segment was submitted and finished"
    );
    // The undeliverable ones failed with the operator's report, the rest delivered.
    let failed = common::count_messages(&store, "failed").await;
    let delivered = common::count_messages(&store, "delivered").await;
    assert_eq!(delivered + failed, n);
    assert!(failed > 0, "the SMSC reported some MTs undeliverable");
    assert_eq!(
        common::count_where(
            &store,
            "status = 'failed' AND failure_reason NOT LIKE 'the operator reported UNDELIV%'"
        )
        .await,
        0
    );

    // At the SMSC: every number reached; duplicates only where the relay counted an
    // unknown outcome.
    let per_destination = sim.per_destination();
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every MT reached the SMSC"
    );
    let duplicates = common::assert_duplicates_are_marked(&store, &per_destination).await;
    let resent = common::count_where(&store, "resent_unknown = 1").await;

    // Billing reads final status: each delivered MT charged once, failed ones never,
    // however often the pass runs.
    for _ in 0..2 {
        charges::charge(&store, &routes, tongdao::store::now_ms(), Scan::Full)
            .await
            .unwrap();
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM charge_events WHERE kind = 'per-message'"
        )
        .await,
        delivered,
        "one charge per delivered MT"
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(DISTINCT message_id) FROM charge_events WHERE kind = 'per-message'"
        )
        .await,
        delivered
    );
    assert_eq!(
        count(
            &store,
            "SELECT COALESCE(SUM(amount_fen), 0) FROM charge_events WHERE kind = 'per-message'"
        )
        .await,
        delivered * PRICE_FEN
    );
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM charge_events e JOIN messages m ON m.id = e.message_id
             WHERE m.status <> 'delivered'"
        )
        .await,
        0,
        "nothing charged for an MT that was not delivered"
    );
    eprintln!(
        "kill -9 at {at_kill} of {n} final, {claimed} claimed, {submitted} submitted, {queued} queued; \
         {delivered} delivered, {failed} failed; duplicates at the SMSC: {duplicates}; \
         resent after unknown outcome: {resent}"
    );
}
