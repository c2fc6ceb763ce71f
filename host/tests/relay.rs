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
    let duplicates: usize = per_destination.values().map(|&c| c - 1).sum();
    let (resent,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM messages WHERE resent_unknown = 1")
            .fetch_one(db.store.pool())
            .await
            .unwrap();
    let stats = sim.stats();
    assert!(
        stats.disconnects > 0 && stats.throttled > 0,
        "faults were injected: {stats:?}"
    );
    // Duplicates only come from the documented unknown-outcome rule.
    assert!(
        duplicates as i64 <= resent,
        "{duplicates} duplicates but only {resent} messages resent after an unknown outcome"
    );
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
    let mut mos = relay.subscribe_mo();
    // Wait for the binds before the simulator sends.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
