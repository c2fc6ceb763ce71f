//! The relay over real SMPP on loopback against the SMSC simulator (R-1.3, R-2.5,
//! routing by prefix, every MT reaching the SMSC, every receipt matched,
//! Chinese long messages intact, faults survived, MOs re-assembled.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tongdao::config::{OperatorConfig, RelayConfig};
use tongdao::relay::Relay;
use tongdao::store::Store;
use tongdao_smpp::canonical_message_id;
use tongdao_smpp::sim::{Faults, Sim, SimConfig, SimHandle};

fn operator(name: &str, sim: &SimHandle, prefixes: &[&str]) -> OperatorConfig {
    OperatorConfig {
        name: name.into(),
        address: sim.local_addr().to_string(),
        system_id: format!("td-{name}"),
        password: "pw".into(),
        system_type: String::new(),
        binds: 2,
        window: 50,
        tps: 0,
        prefixes: prefixes.iter().map(|p| (*p).to_string()).collect(),
        source_addr: "10661234".into(),
        concat: tongdao::config::ConcatMode::Udh,
        // Links dropped by fault injection come back fast; the back-off rule has its
        // own test.
        reconnect_initial_ms: 50,
        reconnect_max_ms: 500,
        reconnect_stable_secs: 1,
        ..Default::default()
    }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        retry_initial_ms: 50,
        retry_max_ms: 500,
        lease_secs: 5,
        ..RelayConfig::default()
    }
}

/// Wait until `n` messages are final; panics with the status counts on timeout.
async fn wait_final(store: &Store, n: i64, timeout: Duration) {
    let started = Instant::now();
    loop {
        let done = common::count_messages(store, "delivered").await
            + common::count_messages(store, "failed").await
            + common::count_messages(store, "expired").await;
        if done >= n {
            return;
        }
        if started.elapsed() > timeout {
            let counts: Vec<(String, i64)> =
                sqlx::query_as("SELECT status, COUNT(*) FROM messages GROUP BY status")
                    .fetch_all(store.pool())
                    .await
                    .unwrap();
            panic!("only {done} of {n} final after {timeout:?}: {counts:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Messages each destination got at the SMSC, counting segments once per message.
fn received_per_destination(sim: &SimHandle) -> HashMap<String, usize> {
    sim.per_destination()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_mts_through_two_operators_each_once_every_receipt_matched() {
    let db = common::sqlite().await;
    let mobile_sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    // The second operator's SMSC writes ids in hex in submit_sm_resp and in decimal
    // in receipts, as some do.
    let unicom_sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        hex_ids: true,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let operators = [
        operator("mobile", &mobile_sim, &["138", "139"]),
        operator("unicom", &unicom_sim, &["130", "186"]),
    ];
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &operators,
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
    let prefixes = ["138", "139", "130", "186"];
    for i in 0..10_000u32 {
        let number = format!("+86{}{:08}", prefixes[(i % 4) as usize], i);
        relay
            .enqueue(
                audience
                    .mt(&db.store, number, format!("第{i}条 bulletin {i}"))
                    .await,
            )
            .await
            .unwrap();
    }
    wait_final(&db.store, 10_000, Duration::from_secs(180)).await;
    assert_eq!(common::count_messages(&db.store, "delivered").await, 10_000);

    // Each number reached its own operator's SMSC exactly once.
    let mobile = received_per_destination(&mobile_sim);
    let unicom = received_per_destination(&unicom_sim);
    assert_eq!(mobile.len(), 5_000);
    assert_eq!(unicom.len(), 5_000);
    assert!(
        mobile
            .keys()
            .all(|n| n.starts_with("138") || n.starts_with("139"))
    );
    assert!(
        unicom
            .keys()
            .all(|n| n.starts_with("130") || n.starts_with("186"))
    );
    assert!(
        mobile.values().chain(unicom.values()).all(|&n| n == 1),
        "a number got two MTs"
    );
    // Every receipt matched (hex/decimal ids included); none left over.
    let (matched, unmatched): (i64, i64) = sqlx::query_as(
        "SELECT COUNT(CASE WHEN matched_at IS NOT NULL THEN 1 END), COUNT(CASE WHEN matched_at IS NULL THEN 1 END) FROM receipts",
    )
    .fetch_one(db.store.pool())
    .await
    .unwrap();
    assert_eq!((matched, unmatched), (10_000, 0));
    let (resent,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE resent_unknown = 1")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    assert_eq!(resent, 0, "no faults were injected, so nothing was resent");
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_text_of_300_characters_arrives_intact_in_ucs2_segments() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[operator("mobile", &sim, &["13"])],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
    let phrase = "通道平台为合作伙伴提供短信内容服务，星座运势笑话每日推送。";
    let text: String = phrase.chars().cycle().take(300).collect();
    assert_eq!(text.chars().count(), 300);
    let id = relay
        .enqueue(audience.mt(&db.store, "13800138000", text.clone()).await)
        .await
        .unwrap();
    wait_final(&db.store, 1, Duration::from_secs(30)).await;

    let detail = tongdao::relay::messages::get(&db.store, id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.message.status, "delivered");
    assert_eq!(
        detail.message.segments, 5,
        "300 UCS-2 characters need 5 segments of at most 67"
    );
    assert!(
        detail
            .segment_status
            .iter()
            .all(|s| s.status == "delivered" && s.operator_message_id.is_some())
    );
    assert_eq!(
        detail.message.content_sha256,
        tongdao::relay::outbox::fingerprint(&text).1
    );
    // Byte for byte what was queued, re-assembled by the SMSC from its segments.
    let submits = sim.received();
    assert_eq!(submits.len(), 5);
    assert!(
        submits
            .iter()
            .all(|s| s.data_coding == 0x08 && s.esm_class & 0x40 != 0)
    );
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, text);
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_dropped_connections_lose_nothing_and_duplicates_are_counted() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        faults: Faults {
            throttle: 0.05,
            disconnect: 0.003,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut op = operator("mobile", &sim, &["13"]);
    op.binds = 1;
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[op],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
    let n = 2_000u32;
    for i in 0..n {
        relay
            .enqueue(
                audience
                    .mt(&db.store, format!("1380000{i:04}"), format!("msg {i}"))
                    .await,
            )
            .await
            .unwrap();
    }
    wait_final(&db.store, i64::from(n), Duration::from_secs(180)).await;
    assert_eq!(
        common::count_messages(&db.store, "delivered").await,
        i64::from(n),
        "every MT delivered"
    );

    let per_destination = received_per_destination(&sim);
    assert_eq!(
        per_destination.len(),
        n as usize,
        "every number reached the SMSC"
    );
    let stats = sim.stats();
    assert!(
        stats.disconnects > 0 && stats.throttled > 0,
        "faults were injected: {stats:?}"
    );
    // Duplicates only come from the documented unknown-outcome rule, number by number.
    let duplicates = common::assert_duplicates_are_marked(&db.store, &per_destination).await;
    let resent = common::count_where(&db.store, "resent_unknown = 1").await;
    eprintln!(
        "faults: {stats:?}; duplicates at the SMSC: {duplicates}; resent after unknown outcome: {resent}"
    );
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_and_rejected_mts_fail_with_a_readable_reason() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::from_millis(5),
        faults: Faults {
            undeliverable: 1.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[operator("mobile", &sim, &["13"])],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
    let id = relay
        .enqueue(audience.mt(&db.store, "13800138000", "hello".into()).await)
        .await
        .unwrap();
    wait_final(&db.store, 1, Duration::from_secs(30)).await;
    let detail = tongdao::relay::messages::get(&db.store, id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.message.status, "failed");
    let reason = detail.message.failure_reason.unwrap();
    assert!(reason.contains("UNDELIV"), "{reason}");
    let statuses: Vec<&str> = detail.history.iter().map(|e| e.status.as_str()).collect();
    assert_eq!(statuses, ["queued", "submitted", "failed"]);

    sim.set_faults(Faults {
        reject: 1.0,
        ..Faults::default()
    });
    let id = relay
        .enqueue(audience.mt(&db.store, "13800138001", "hello".into()).await)
        .await
        .unwrap();
    wait_final(&db.store, 2, Duration::from_secs(30)).await;
    let detail = tongdao::relay::messages::get(&db.store, id, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(detail.message.status, "failed");
    assert!(
        detail
            .message
            .failure_reason
            .unwrap()
            .contains("RINVDSTADR")
    );

    // A number no operator serves is refused before anything is queued.
    let error = relay
        .enqueue(audience.mt(&db.store, "19900000000", "x".into()).await)
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no operator serves 19900000000"),
        "{error}"
    );
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mos_are_reassembled_and_stored() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[operator("mobile", &sim, &["13"])],
        common::relay_compliance(&db.store),
    );
    // The simulator holds MOs until a bind is up: nothing to wait for.
    let mut mos = relay.subscribe_mo();
    let text: String = "我想订阅每日星座运势，请问怎么设置我的星座？"
        .chars()
        .cycle()
        .take(150)
        .collect();
    assert!(sim.send_mo("+8613800138000", "10661234", &text).unwrap() > 1);
    sim.send_mo("13900139000", "10661234", "TD").unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let mo = tokio::time::timeout(Duration::from_secs(10), mos.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(mo);
    }
    got.sort_by_key(|m| m.source.clone());
    assert_eq!(
        (got[0].source.as_str(), got[0].text.as_str()),
        ("13800138000", text.as_str())
    );
    assert_eq!(
        (got[1].source.as_str(), got[1].text.as_str()),
        ("13900139000", "TD")
    );
    let (stored,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mo_messages")
        .fetch_one(db.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 2);
    relay.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_configured_for_sar_gets_sar_tlvs_instead_of_a_udh() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let mut op = operator("mobile", &sim, &["13"]);
    op.concat = tongdao::config::ConcatMode::Sar;
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[op],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
    let text: String = "长短信分段测试，".chars().cycle().take(100).collect();
    relay
        .enqueue(audience.mt(&db.store, "13800138000", text.clone()).await)
        .await
        .unwrap();
    wait_final(&db.store, 1, Duration::from_secs(30)).await;
    assert_eq!(common::count_messages(&db.store, "delivered").await, 1);
    let submits = sim.received();
    assert_eq!(submits.len(), 2);
    assert!(
        submits.iter().all(|s| s.esm_class & 0x40 == 0),
        "no UDH under SAR"
    );
    assert_eq!(sim.messages()[0].text, text);
    relay.stop();
}

/// Issue 12 item 4: with receipts faster than the responses are stored (20 ms) and
/// under throttling (receipts 1.5 s later), every MT ends with its OWN receipt. The
/// SMSCs write 10-digit decimal ids from 1 (`0000000136`), so the hex reading of a
/// receipt id (`88`) is the id of an older MT: the pairing, not just the count, is
/// checked against what the simulator sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item4_every_receipt_lands_on_its_own_mt_faster_than_responses_and_throttled() {
    for db in common::stores().await {
        let padded = |dlr_delay, faults| SimConfig {
            dlr_delay,
            first_id: 1,
            id_width: 10,
            faults,
            ..SimConfig::default()
        };
        let fast = Sim::start(padded(Duration::from_millis(20), Faults::default()))
            .await
            .unwrap();
        let throttling = Sim::start(padded(
            Duration::from_millis(1500),
            Faults {
                throttle: 0.1,
                ..Faults::default()
            },
        ))
        .await
        .unwrap();
        let mut mobile = operator("mobile", &fast, &["138"]);
        mobile.binds = 1;
        mobile.window = 10;
        let mut unicom = operator("unicom", &throttling, &["130"]);
        unicom.binds = 1;
        unicom.window = 10;
        let relay = Relay::start(
            db.store.clone(),
            relay_config(),
            &[mobile, unicom],
            common::relay_compliance(&db.store),
        );
        let audience = common::Audience::new(&db.store, &["mobile", "unicom"]).await;
        let mut ids = HashMap::new();
        for i in 0..300u32 {
            for prefix in ["138", "130"] {
                let number = format!("{prefix}{i:08}");
                let id = relay
                    .enqueue(audience.mt(&db.store, &number, format!("第{i}条")).await)
                    .await
                    .unwrap();
                ids.insert(number, id);
            }
        }
        wait_final(&db.store, 600, Duration::from_secs(120)).await;
        assert_eq!(
            common::count_messages(&db.store, "delivered").await,
            600,
            "{}",
            db.name
        );
        assert!(throttling.stats().throttled > 0, "throttling happened");
        for (operator, sim) in [("mobile", &fast), ("unicom", &throttling)] {
            let submits = sim.received();
            assert_eq!(
                submits.len(),
                300,
                "{}: each MT once at {operator}",
                db.name
            );
            for submit in submits {
                let mt = ids[&submit.destination_addr];
                let (stored_id,): (String,) = sqlx::query_as(
                    "SELECT operator_message_id FROM message_segments WHERE message_id = $1",
                )
                .bind(mt)
                .fetch_one(db.store.pool())
                .await
                .unwrap();
                assert_eq!(stored_id, canonical_message_id(&submit.message_id));
                // The receipt the SMSC sent for this submit is applied to this MT.
                let applied: Vec<(Option<i64>,)> = sqlx::query_as(
                    "SELECT message_id FROM receipts WHERE operator = $1 AND operator_message_id = $2",
                )
                .bind(operator)
                .bind(&submit.receipt_id)
                .fetch_all(db.store.pool())
                .await
                .unwrap();
                assert!(
                    !applied.is_empty(),
                    "{}: no receipt {}",
                    db.name,
                    submit.receipt_id
                );
                assert!(
                    applied.iter().all(|(m,)| *m == Some(mt)),
                    "{}: receipt {} of MT {mt} applied to {applied:?}",
                    db.name,
                    submit.receipt_id
                );
            }
        }
        let (learned,): (String,) =
            sqlx::query_as("SELECT format FROM operator_receipt_ids WHERE operator = 'mobile'")
                .fetch_one(db.store.pool())
                .await
                .unwrap();
        assert_eq!(learned, "same", "{}", db.name);
        relay.stop();
    }
}

/// Issue 12 item 2: long MO parts. A redelivered part is a duplicate (not the start
/// of the next message: `new8-p1 b2` was stored), a reused reference starts a new
/// message (`lost-half new9-p2` was stored), and a message whose parts do not all
/// arrive within the window is closed incomplete and its parts cleared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_long_mo_parts_redelivered_reused_or_lost_make_the_right_messages() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig::default()).await.unwrap();
        let relay = Relay::start(
            db.store.clone(),
            RelayConfig {
                mo_part_window_secs: 1,
                ..relay_config()
            },
            &[operator("mobile", &sim, &["13"])],
            common::relay_compliance(&db.store),
        );
        let store = &db.store;
        let handset = "13800138000";
        let part = |reference, total, seq, text: &str| {
            sim.send_mo_part(handset, "10661234", reference, total, seq, text)
                .unwrap();
        };
        let acked = |n: u64| {
            let sim = &sim;
            move || async move { sim.stats().mos_acked >= n }
        };
        // ref 8: both parts, then part 2 again (the SMSC missed our answer).
        part(8, 2, 1, "a1 ");
        part(8, 2, 2, "b2");
        common::wait_until("ref 8 answered", Duration::from_secs(20), acked(2)).await;
        part(8, 2, 2, "b2");
        common::wait_until("the redelivery answered", Duration::from_secs(20), acked(3)).await;
        // Later ref 8 again: a new message.
        part(8, 2, 1, "new8-p1 ");
        part(8, 2, 2, "new8-p2");
        // ref 9: the first half of a message whose second half is lost, then a new
        // message with the same reference.
        part(9, 2, 1, "lost-half ");
        common::wait_until("parts answered", Duration::from_secs(20), acked(6)).await;
        part(9, 2, 1, "new9-p1 ");
        // In order (two binds could swap them: within the window a second part
        // arriving first would still join the orphan; that case is the window's).
        common::wait_until(
            "the new first part answered",
            Duration::from_secs(20),
            acked(7),
        )
        .await;
        part(9, 2, 2, "new9-p2");
        // ref 10: one part of three, and nothing more.
        part(10, 3, 1, "alone ");
        common::wait_until(
            "every message closed and no part left",
            Duration::from_secs(20),
            || async {
                let (parts,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mo_parts")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                let (mos,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mo_messages")
                    .fetch_one(store.pool())
                    .await
                    .unwrap();
                parts == 0 && mos >= 5
            },
        )
        .await;
        let mut stored: Vec<(String, Option<String>, String)> = sqlx::query_as(
            "SELECT text, missing_parts, status FROM mo_messages WHERE source = $1 ORDER BY id",
        )
        .bind(handset)
        .fetch_all(store.pool())
        .await
        .unwrap();
        stored.sort();
        let received = |text: &str, missing: Option<&str>| {
            (
                text.to_string(),
                missing.map(String::from),
                "received".to_string(),
            )
        };
        let mut expected = vec![
            received("a1 b2", None),
            received("new8-p1 new8-p2", None),
            received("lost-half ", Some("2/2")),
            received("new9-p1 new9-p2", None),
            received("alone ", Some("2,3/3")),
        ];
        expected.sort();
        assert_eq!(stored, expected, "{}", db.name);
        relay.stop();
    }
}

/// Issue 12 item 5: an MO delivered again after a link drop between our answer and
/// the SMSC (and a part delivered twice at once on two binds) is answered and stored
/// and routed once; the same text sent again by the user is a new MO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item5_a_redelivered_mo_is_answered_and_not_routed_again() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            redelivery_delay: Duration::from_millis(50),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let relay = Relay::start(
            db.store.clone(),
            relay_config(),
            &[operator("mobile", &sim, &["13"])],
            common::relay_compliance(&db.store),
        );
        let mut routed = relay.subscribe_mo();
        // The link dies as our answer to the MO arrives: the SMSC redelivers it.
        sim.lose_next_mo_acks(1);
        sim.send_mo("13800138001", "10661234", "TD").unwrap();
        // A long MO whose second part is redelivered after a link drop.
        let long: String = "长短信去重测试，".chars().cycle().take(100).collect();
        let parts = sim.send_mo("13800138002", "10661234", &long).unwrap() as u64;
        common::wait_until(
            "every MO answered after the redelivery",
            Duration::from_secs(30),
            || async { sim.stats().mos_acked > parts },
        )
        .await;
        assert!(sim.stats().mos_redelivered >= 1, "{:?}", sim.stats());
        // Two binds get the same part at once.
        sim.lose_next_mo_acks(0);
        sim.send_mo_part("13800138003", "10661234", 42, 2, 1, "twice ")
            .unwrap();
        sim.send_mo_part("13800138003", "10661234", 42, 2, 1, "twice ")
            .unwrap();
        sim.send_mo_part("13800138003", "10661234", 42, 2, 2, "at once")
            .unwrap();
        common::wait_until("the copies answered", Duration::from_secs(30), || async {
            sim.stats().mos_acked >= 4 + parts
        })
        .await;
        // The same text again while the link that answered the first is up is the
        // user writing again (an "A" to two quiz questions): a new MO.
        sim.send_mo("13800138004", "10661234", "A").unwrap();
        common::wait_until("the first A answered", Duration::from_secs(30), || async {
            sim.stats().mos_acked >= 5 + parts
        })
        .await;
        sim.send_mo("13800138004", "10661234", "A").unwrap();
        common::wait_until("the second A answered", Duration::from_secs(30), || async {
            sim.stats().mos_acked >= 6 + parts
        })
        .await;
        let stored: Vec<(String, String)> =
            sqlx::query_as("SELECT source, text FROM mo_messages ORDER BY source, id")
                .fetch_all(db.store.pool())
                .await
                .unwrap();
        assert_eq!(
            stored,
            [
                ("13800138001".to_string(), "TD".to_string()),
                ("13800138002".to_string(), long.clone()),
                ("13800138003".to_string(), "twice at once".to_string()),
                ("13800138004".to_string(), "A".to_string()),
                ("13800138004".to_string(), "A".to_string()),
            ],
            "{}",
            db.name
        );
        let mut events = Vec::new();
        while let Ok(mo) = routed.try_recv() {
            events.push(mo.text);
        }
        events.sort();
        let mut expected = vec![
            "TD".to_string(),
            long,
            "twice at once".to_string(),
            "A".to_string(),
            "A".to_string(),
        ];
        expected.sort();
        assert_eq!(
            events, expected,
            "{}: each MO handed to the router once",
            db.name
        );
        relay.stop();
    }
}

/// Issue 12 item 3: an SMSC that accepts every bind and drops the link 100 ms later
/// gets binds further and further apart (exponential, jittered, capped), the attempt
/// count and state are visible, and only a link that stayed up resets the back-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item3_a_flapping_smsc_gets_exponential_backoff_reset_only_by_a_stable_link() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig {
        faults: Faults {
            drop_after_bind: Some(Duration::from_millis(100)),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut op = operator("mobile", &sim, &["13"]);
    op.binds = 1;
    op.reconnect_initial_ms = 100;
    op.reconnect_max_ms = 800;
    op.reconnect_stable_secs = 1;
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[op],
        common::relay_compliance(&db.store),
    );
    // Seven binds seen by both ends: the SMSC counts a bind when it answers it, the
    // relay once the answer is read.
    common::wait_until("seven binds", Duration::from_secs(30), || async {
        sim.stats().binds >= 7 && relay.binds()[0].binds >= 7
    })
    .await;
    let times = sim.bind_times();
    let status = &relay.binds()[0];
    assert!(status.attempts >= 6, "{status:?}");
    assert!(status.binds >= 7, "{status:?}");
    assert!(status.last_error.is_some(), "{status:?}");
    // Gap k = 100 ms up + a pause in [c/2, c], c = min(800, 100 × 2^(k-1)).
    for (k, pair) in times.windows(2).take(6).enumerate() {
        let gap = pair[1].duration_since(pair[0]);
        let ceiling = Duration::from_millis((100u64 << k).min(800));
        assert!(
            gap >= Duration::from_millis(100) + ceiling / 2 - Duration::from_millis(20),
            "gap {k}: {gap:?} shorter than the back-off allows ({ceiling:?})"
        );
    }
    let first_six = times[6].duration_since(times[0]);
    assert!(
        first_six >= Duration::from_millis(600 + 50 + 100 + 200 + 400 + 400 + 400),
        "six reconnects took only {first_six:?}"
    );
    // The SMSC stops dropping: once the link has been up a second, attempts reset.
    sim.set_faults(Faults::default());
    common::wait_until("a stable link", Duration::from_secs(30), || async {
        let status = &relay.binds()[0];
        status.state == "bound" && status.attempts == 0
    })
    .await;
    // A drop now is the first attempt again: the next bind comes after ≤ 100 ms.
    let binds = sim.stats().binds;
    let dropped = Instant::now();
    sim.disconnect_all();
    common::wait_until("bound again", Duration::from_secs(30), || async {
        sim.stats().binds > binds
    })
    .await;
    assert!(
        dropped.elapsed() < Duration::from_millis(100 + 400),
        "after a stable link the back-off starts from the beginning: {:?}",
        dropped.elapsed()
    );
    relay.stop();
}

/// Issue 12 item 1, the mechanism: a shutdown in the middle of a claimed batch waits
/// for the answers of what was sent, records them, and hands the claimed MTs it did
/// not send back to the queue unmarked; a second relay then sends exactly those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item1_shutdown_mid_batch_releases_unsent_claims_unmarked() {
    for db in common::stores().await {
        let sim = Sim::start(SimConfig {
            dlr_delay: Duration::from_millis(5),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        let mut op = operator("mobile", &sim, &["13"]);
        op.binds = 1;
        op.tps = 100; // a claimed batch of 256 takes seconds to send
        // Queued before the relay starts, so its first claim is a full batch.
        let audience = common::Audience::new(&db.store, &["mobile"]).await;
        let routes = tongdao::relay::Routes::new(std::slice::from_ref(&op));
        let compliance = common::relay_compliance(&db.store);
        let config = relay_config();
        let gate = tongdao::relay::outbox::Gate {
            routes: &routes,
            relay: &config,
            compliance: &compliance,
        };
        let n = 300;
        for i in 0..n {
            let mt = audience
                .mt(&db.store, format!("1380000{i:04}"), format!("m{i}"))
                .await;
            tongdao::relay::outbox::enqueue(&db.store, gate, mt)
                .await
                .unwrap();
        }
        let relay = Relay::start(
            db.store.clone(),
            relay_config(),
            std::slice::from_ref(&op),
            common::relay_compliance(&db.store),
        );
        common::wait_until("a batch under way", Duration::from_secs(30), || async {
            sim.stats().accepted >= 20
        })
        .await;
        relay.shutdown().await;
        let sent = sim.stats().accepted as i64;
        assert!(sent < n, "{}: the shutdown came mid-batch", db.name);
        assert_eq!(
            common::count_where(&db.store, "status = 'submitting'").await,
            0
        );
        assert_eq!(
            common::count_where(&db.store, "resent_unknown = 1").await,
            0
        );
        // Everything the SMSC accepted is recorded as submitted; the rest is queued.
        let recorded = common::count_where(&db.store, "status IN ('submitted', 'delivered')").await;
        assert_eq!(recorded, sent, "{}", db.name);
        let released = common::count_where(
            &db.store,
            "id IN (SELECT message_id FROM message_events WHERE status = 'released')",
        )
        .await;
        assert!(released > 0, "{}: claimed MTs were released", db.name);
        assert_eq!(
            common::count_where(&db.store, "status = 'queued' AND attempts = 0").await,
            n - sent,
            "{}: released claims do not count as attempts",
            db.name
        );
        assert!(
            relay.binds().iter().all(|b| b.state == "stopped"),
            "{:?}",
            relay.binds()
        );
        // A new start sends exactly the rest, each once.
        op.tps = 0;
        let relay = Relay::start(
            db.store.clone(),
            relay_config(),
            &[op],
            common::relay_compliance(&db.store),
        );
        wait_final(&db.store, n, Duration::from_secs(60)).await;
        let per_destination = sim.per_destination();
        assert_eq!(per_destination.len(), n as usize);
        assert!(
            per_destination.values().all(|&c| c == 1),
            "{}: no duplicates",
            db.name
        );
        relay.stop();
    }
}

/// A user reads their MTs in the order they were queued (a confirmation before the
/// module's farewell, a prompt before its answer): one bind's submits to one
/// recipient go one after the other, across claims, while different recipients'
/// submits share the window. Short and two-segment texts are mixed so a longer MT
/// would be overtaken if the order were left to chance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_recipients_mts_reach_the_smsc_in_queue_order() {
    let db = common::sqlite().await;
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    let mut mobile = operator("mobile", &sim, &["13"]);
    mobile.binds = 1;
    let relay = Relay::start(
        db.store.clone(),
        relay_config(),
        &[mobile],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile"]).await;
    let users = ["13800138001", "13800138002", "13800138003"];
    let long = "长".repeat(80);
    let mut queued: HashMap<&str, Vec<String>> = HashMap::new();
    for i in 0..120 {
        let user = users[i % users.len()];
        let text = if i % 4 == 0 {
            format!("第{i}条{long}")
        } else {
            format!("第{i}条")
        };
        relay
            .enqueue(audience.mt(&db.store, user, text.clone()).await)
            .await
            .unwrap();
        queued.entry(user).or_default().push(text);
    }
    wait_final(&db.store, 120, Duration::from_secs(60)).await;
    let messages = sim.messages();
    for user in users {
        let received: Vec<&str> = messages
            .iter()
            .filter(|m| m.destination_addr == user)
            .map(|m| m.text.as_str())
            .collect();
        assert_eq!(received, queued[user], "{user}");
    }
    relay.stop();
}

/// One push of `n` short MTs queued before any bind is up, then sent by a relay with
/// `max_awaited_receipts = cap` to an SMSC that keeps few `deliver_sm`s outstanding
/// (so the relay's receipt intake, not the SMSC, sets the pace), while users send an
/// MO every 50 ms. Returns the SMSC's counters once every MT is final and every MO
/// has reached the router, and how many MOs were sent.
async fn push_under_mos(n: u32, cap: u64) -> (tongdao_smpp::sim::SimStats, usize) {
    let db = common::sqlite().await;
    let config = RelayConfig {
        max_awaited_receipts: cap,
        receipt_wait_secs: 600,
        ..relay_config()
    };
    // Queued while no SMSC answers (port 1 refuses), so the push starts all at once.
    let sim = Sim::start(SimConfig {
        dlr_delay: Duration::ZERO,
        dlr_window: 4,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let mut nowhere = operator("mobile", &sim, &["13"]);
    nowhere.address = "127.0.0.1:1".into();
    let queueing = Relay::start(
        db.store.clone(),
        config.clone(),
        &[nowhere],
        common::relay_compliance(&db.store),
    );
    let audience = common::Audience::new(&db.store, &["mobile"]).await;
    for i in 0..n {
        queueing
            .enqueue(
                audience
                    .mt(&db.store, format!("138{i:08}"), format!("bulletin {i}"))
                    .await,
            )
            .await
            .unwrap();
    }
    queueing.shutdown().await;

    let relay = Relay::start(
        db.store.clone(),
        config,
        &[operator("mobile", &sim, &["13"])],
        common::relay_compliance(&db.store),
    );
    let mut routed = relay.subscribe_mo();
    let mut sent = 0usize;
    let mut arrived = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    loop {
        let done =
            common::count_where(&db.store, "status IN ('delivered', 'failed', 'expired')").await;
        if i64::from(n) <= done && arrived == sent && sent > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{done} of {n} MTs final, {arrived} of {sent} MOs routed: {:?}",
            sim.stats()
        );
        tokio::select! {
            _ = tick.tick() => {
                if i64::from(n) > done {
                    sim.send_mo(&format!("139{sent:08}"), "10661234", "TD").unwrap();
                    sent += 1;
                }
            }
            mo = routed.recv() => {
                mo.unwrap();
                arrived += 1;
            }
        }
    }
    assert_eq!(
        common::count_messages(&db.store, "delivered").await,
        i64::from(n)
    );
    relay.shutdown().await;
    (sim.stats(), sent)
}

/// Issue 18 item 2: a push never delays MOs. An SMSC sends receipts
/// and MOs down the same binds as they fall due, so a relay that submits faster than
/// it takes receipts in makes every user's MO (a `TD` included) wait behind the
/// receipts it owes: the load bench measured minutes. With `max_awaited_receipts`
/// the relay claims only within the receipts it still awaits, so no MO is ever
/// queued at the SMSC behind more than that many receipts, however big the
/// push. The same push without the bound shows the queue this prevents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item2_a_push_never_queues_mos_behind_more_receipts_than_the_bound() {
    const MTS: u32 = 3_000;
    const CAP: u64 = 200;
    let (unbounded, _) = push_under_mos(MTS, 0).await;
    let (bounded, mos) = push_under_mos(MTS, CAP).await;
    println!(
        "{MTS} MTs: MOs queued behind at most {} receipts without the bound (longest wait {} ms), {} with max_awaited_receipts = {CAP} (longest wait {} ms, {mos} MOs)",
        unbounded.mo_receipts_ahead_max,
        unbounded.mo_wait_max_ms,
        bounded.mo_receipts_ahead_max,
        bounded.mo_wait_max_ms
    );
    // The set-up makes the queue the bound prevents: without it, MOs wait behind
    // far more receipts than the bound allows.
    assert!(
        unbounded.mo_receipts_ahead_max > 2 * CAP,
        "the push built no queue at the SMSC, so this test proves nothing: {unbounded:?}"
    );
    // With it: at most CAP receipts (the MTs claimed and the segments awaited).
    assert!(
        bounded.mo_receipts_ahead_max <= CAP,
        "an MO waited behind {} receipts: {bounded:?}",
        bounded.mo_receipts_ahead_max
    );
    assert_eq!(bounded.receipts_acked, u64::from(MTS), "{bounded:?}");
}
