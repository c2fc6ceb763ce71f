//! The keyword router over a backlog (issue 13 item 3, R-2.5, R-8.3), on SQLite and
//! PostgreSQL: MOs arrive over SMPP from the simulator and wait; the router claims
//! them in batches and answers each once, the MOs of one number in arrival order.
//! An MO whose router died mid-way (claimed, lease run out) is claimed again: if it
//! was answered it is marked `already-answered`, never answered twice; if not, it
//! is answered now. An MO another router holds (lease running) is left alone.

#![allow(clippy::unwrap_used)]

#[path = "common/bulk.rs"]
mod bulk;
mod common;

use std::sync::Arc;
use std::time::Duration;

use tongdao::mo::DialogueConfig;
use tongdao::mo::router::{self, CLAIM_BATCH, RouterContext};
use tongdao::relay::Relay;
use tongdao::relay::settings::RelayConfig;
use tongdao::store::{Store, now_ms};
use tongdao_smpp::sim::{Sim, SimConfig};

/// Signs as users write them; the horoscope module's reply names the sign.
const SIGNS: [&str; 4] = ["白羊座", "金牛座", "双子座", "巨蟹座"];

async fn mo_count(store: &Store) -> i64 {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mo_messages")
        .fetch_one(store.pool())
        .await
        .unwrap();
    n
}

/// (MO id, MO text, outcome) of every MO from `source`, in arrival order.
async fn mos_of(store: &Store, source: &str) -> Vec<(i64, String, Option<String>)> {
    sqlx::query_as("SELECT id, text, outcome FROM mo_messages WHERE source = $1 ORDER BY id")
        .bind(source)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// (MO id, text) of every reply to `recipient`, in the order they were queued.
async fn replies_to(store: &Store, recipient: &str) -> Vec<(i64, String)> {
    sqlx::query_as(
        "SELECT mo_id, text FROM messages WHERE recipient = $1 AND mo_id IS NOT NULL ORDER BY id",
    )
    .bind(recipient)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_backlog_is_answered_once_in_order_and_a_dead_routers_claims_are_resumed() {
    for db in common::stores().await {
        let store = db.store.clone();
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let dialogue = DialogueConfig::default();
        let operator = common::sim_operator(sim.local_addr().to_string(), 1);
        let compliance = common::relay_compliance(&store);
        let relay = Arc::new(Relay::start(
            store.clone(),
            RelayConfig::default(),
            &[operator],
            compliance.clone(),
        ));
        let registry = Arc::new(common::registry(&store));
        let partner = common::partner(&store, "acme").await;
        registry
            .upload(&partner, &common::guest("horoscope"), "t")
            .await
            .unwrap();
        let service = bulk::approved_service(&store, partner.id, "XZ", "horoscope").await;
        let first = 13_800_000_000;
        bulk::subscribers(&store, partner.id, service, first, 3).await;
        let live = tongdao::services::all_live(&store).await.unwrap();
        let service_number = live[0].sender(&dialogue.short_code);
        let numbers: Vec<String> = (0..3).map(|i| bulk::number(first, i)).collect();
        let ctx = RouterContext {
            store: store.clone(),
            registry,
            relay: relay.clone(),
            compliance,
            config: dialogue,
        };

        // A backlog of several claim batches, the three numbers interleaved.
        let per_number = usize::try_from(CLAIM_BATCH).unwrap() * 2 + 5;
        for k in 0..per_number {
            for number in &numbers {
                sim.send_mo(number, &service_number, SIGNS[k % SIGNS.len()])
                    .unwrap();
            }
        }
        let total = i64::try_from(per_number * numbers.len()).unwrap();
        common::wait_until("the backlog stored", Duration::from_secs(30), || async {
            mo_count(&store).await == total
        })
        .await;
        assert_eq!(
            router::route_ready(&ctx).await.unwrap(),
            usize::try_from(total).unwrap(),
            "{}",
            db.name
        );
        for number in &numbers {
            let mos = mos_of(&store, number).await;
            let replies = replies_to(&store, number).await;
            assert_eq!(mos.len(), per_number, "{}", db.name);
            assert!(
                mos.iter()
                    .all(|(_, _, outcome)| outcome.as_deref() == Some("module-reply")),
                "{}: {mos:?}",
                db.name
            );
            // One reply per MO, queued in the order the MOs arrived, each answering
            // its own MO.
            assert_eq!(
                replies.iter().map(|(mo, _)| *mo).collect::<Vec<_>>(),
                mos.iter().map(|(id, _, _)| *id).collect::<Vec<_>>(),
                "{}: replies to {number} in arrival order",
                db.name
            );
            for ((_, asked, _), (_, reply)) in mos.iter().zip(&replies) {
                let sign = asked.trim_end_matches('座');
                assert!(
                    reply.contains(sign),
                    "{}: {asked} answered {reply}",
                    db.name
                );
            }
        }

        // Three more MOs, then three routers' fates: A's router answered A and died
        // before marking it routed; B's router died before answering; C's router is
        // alive and still holds C.
        let answered = mos_of(&store, &numbers[0]).await.last().unwrap().0;
        for number in &numbers[1..] {
            sim.send_mo(number, &service_number, "双子座").unwrap();
        }
        common::wait_until("two more MOs stored", Duration::from_secs(30), || async {
            mo_count(&store).await == total + 2
        })
        .await;
        let unanswered = mos_of(&store, &numbers[1]).await.last().unwrap().0;
        let held = mos_of(&store, &numbers[2]).await.last().unwrap().0;
        for (id, lease_until) in [(answered, 1), (unanswered, 1), (held, now_ms() + 600_000)] {
            sqlx::query(
                "UPDATE mo_messages SET status = 'routing', lease_until = $2, outcome = NULL,
                    routed_at = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(lease_until)
            .execute(store.pool())
            .await
            .unwrap();
        }
        let replies_before = replies_to(&store, &numbers[0]).await.len();
        assert_eq!(router::route_ready(&ctx).await.unwrap(), 2, "{}", db.name);
        let outcome = |id: i64| {
            let store = store.clone();
            async move {
                let row: (String, Option<String>) =
                    sqlx::query_as("SELECT status, outcome FROM mo_messages WHERE id = $1")
                        .bind(id)
                        .fetch_one(store.pool())
                        .await
                        .unwrap();
                row
            }
        };
        assert_eq!(
            outcome(answered).await,
            ("routed".into(), Some("already-answered".into())),
            "{}",
            db.name
        );
        assert_eq!(
            replies_to(&store, &numbers[0]).await.len(),
            replies_before,
            "{}: A is not answered twice",
            db.name
        );
        assert_eq!(
            outcome(unanswered).await,
            ("routed".into(), Some("module-reply".into())),
            "{}",
            db.name
        );
        assert_eq!(
            replies_to(&store, &numbers[1]).await.last().unwrap().0,
            unanswered,
            "{}: B answered now",
            db.name
        );
        assert_eq!(
            outcome(held).await,
            ("routing".into(), None),
            "{}: C stays with its router",
            db.name
        );
        relay.stop();
    }
}
