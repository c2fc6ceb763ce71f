//! End-to-end: the real client against the real simulator over loopback TCP.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::timeout;
use tongdao_smpp::encode::{self, Concat, Reassembler};
use tongdao_smpp::sim::{Faults, Sim, SimConfig, SimHandle};
use tongdao_smpp::{
    Backoff, Client, ClientConfig, ConnectError, Inbound, MoPdu, Receipt, ReceiptState,
    StatusClass, SubmitError, SubmitRequest, normalize_message_id, run_with_reconnect,
};

async fn sim(config: SimConfig) -> SimHandle {
    Sim::start(config).await.expect("start simulator")
}

fn config(sim: &SimHandle) -> ClientConfig {
    let mut c = ClientConfig::new(sim.local_addr().to_string(), "tongdao", "secret");
    c.response_timeout = Duration::from_secs(5);
    c
}

fn request(dest: &str, text: &str) -> SubmitRequest {
    let segs = encode::encode(text, Concat::Udh8(1)).expect("encode");
    SubmitRequest::new("10661234", dest, &segs[0])
}

/// Acks every inbound event, collecting receipts and MOs.
#[derive(Default)]
struct Collected {
    receipts: Vec<Receipt>,
    mos: Vec<MoPdu>,
    closed: Vec<String>,
}

fn collect(mut rx: mpsc::Receiver<Inbound>) -> Arc<Mutex<Collected>> {
    let out = Arc::new(Mutex::new(Collected::default()));
    let sink = out.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            let mut c = sink.lock().expect("lock");
            match ev {
                Inbound::Receipt(r, ack) => {
                    c.receipts.push(r);
                    ack.ack();
                }
                Inbound::Mo(m, ack) => {
                    c.mos.push(m);
                    ack.ack();
                }
                Inbound::Closed(reason) => c.closed.push(reason),
            }
        }
    });
    out
}

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_submit_receipt_roundtrip_with_hex_decimal_ids() {
    let sim = sim(SimConfig {
        credentials: Some(("tongdao".into(), "secret".into())),
        dlr_delay: Duration::from_millis(20),
        hex_ids: true,
        ..SimConfig::default()
    })
    .await;

    // Wrong password is refused with a typed error.
    let mut bad = config(&sim);
    bad.password = "nope".into();
    match Client::connect(bad).await {
        Err(ConnectError::BindRejected { status }) => assert_eq!(status, 0x0E),
        other => panic!("expected BindRejected, got {other:?}"),
    }

    let (client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let got = collect(rx);
    let outcome = client
        .submit(&request("8613800138000", "Hello from Tongdao"))
        .await
        .expect("submit");
    assert_eq!(outcome.attempts, 1);
    // Hex in the response…
    assert!(outcome.message_id.bytes().all(|b| b.is_ascii_hexdigit()));
    wait_for("receipt", 5, || {
        got.lock().expect("lock").receipts.len() == 1
    })
    .await;
    let r = got.lock().expect("lock").receipts[0].clone();
    assert_eq!(r.state, ReceiptState::Delivered);
    assert_eq!(r.source_addr, "8613800138000");
    assert_eq!(r.destination_addr, "10661234");
    assert_eq!(r.error_code.as_deref(), Some("000"));
    // …decimal in the receipt: they match through the normalised candidates.
    assert_ne!(r.message_id, outcome.message_id);
    let key = &normalize_message_id(&outcome.message_id)[0];
    assert!(normalize_message_id(&r.message_id).contains(key));

    let received = sim.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].short_message, b"Hello from Tongdao");
    assert_eq!(sim.messages()[0].text, "Hello from Tongdao");

    client.close().await;
    wait_for("unbind", 5, || {
        got.lock().expect("lock").closed.len() == 1 && sim.stats().bound_sessions == 0
    })
    .await;
    assert!(matches!(
        client.submit(&request("8613800138000", "late")).await,
        Err(SubmitError::NotConnected)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_submits_window_50_every_receipt_once() {
    const N: usize = 10_000;
    let sim = sim(SimConfig {
        dlr_delay: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = config(&sim);
    cfg.window = 50;
    let (client, rx) = Client::connect(cfg).await.expect("bind");
    let got = collect(rx);

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        tasks.spawn(async move {
            let dest = format!("86138{:08}", i);
            client.submit(&request(&dest, &format!("msg {i}"))).await
        });
    }
    let mut ids = HashMap::new();
    while let Some(res) = tasks.join_next().await {
        let outcome = res.expect("join").expect("submit");
        *ids.entry(outcome.message_id).or_insert(0) += 1;
    }
    assert_eq!(ids.len(), N, "message ids are unique");
    wait_for("all receipts", 60, || {
        got.lock().expect("lock").receipts.len() >= N && sim.stats().receipts_acked as usize >= N
    })
    .await;
    // Nothing more can arrive: the simulator made one receipt per submit, sent each
    // once and had each acknowledged, so it has nothing left to redeliver.
    wait_for("every receipt sent acknowledged", 20, || {
        let stats = sim.stats();
        stats.receipts_acked == stats.receipts_sent
    })
    .await;
    let stats = sim.stats();
    assert_eq!(stats.receipts_sent as usize, N, "{stats:?}");
    assert_eq!(stats.receipts_redelivered, 0, "{stats:?}");
    let c = got.lock().expect("lock");
    assert_eq!(c.receipts.len(), N);
    let mut seen = HashMap::new();
    for r in &c.receipts {
        *seen.entry(r.message_id.clone()).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), N);
    assert!(seen.keys().all(|k| ids.contains_key(k)));
    let stats = sim.stats();
    assert_eq!(stats.accepted as usize, N);
    assert_eq!(stats.submit_pdus as usize, N);
    assert_eq!(stats.receipts_sent as usize, N);
    assert_eq!(stats.receipts_redelivered, 0);
    let per_dest = sim.per_destination();
    assert_eq!(per_dest.len(), N);
    assert!(per_dest.values().all(|&n| n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chinese_300_chars_five_ucs2_segments_reassembled_by_sim() {
    let sim = sim(SimConfig::default()).await;
    let (client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let _got = collect(rx);
    let text: String = "通道短信内容平台合作伙伴模块测试，"
        .chars()
        .cycle()
        .take(300)
        .collect();
    assert_eq!(encode::segment_count(&text), 5); // ceil(300 / 67)
    let segs = encode::encode(&text, Concat::Udh8(77)).expect("encode");
    assert_eq!(segs.len(), 5);
    let lens: Vec<usize> = segs.iter().map(|s| s.short_message.len()).collect();
    assert_eq!(lens, vec![140, 140, 140, 140, 6 + 2 * 32]);
    for seg in &segs {
        assert_eq!((seg.data_coding, seg.esm_class), (0x08, 0x40));
        client
            .submit(&SubmitRequest::new("10661234", "8613900000000", seg))
            .await
            .expect("submit");
    }
    let msgs = sim.messages();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].text, text);
    assert_eq!(sim.received().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gsm7_extension_characters() {
    let text = "Price: 5€ [promo] {x} ~^|\\";
    // 26 chars of which 9 extension chars → 35 septets.
    assert_eq!(encode::gsm7_septets(text), Some(26 + 9));
    let segs = encode::encode(text, Concat::Udh8(1)).expect("encode");
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0].data_coding, 0x00);
    assert_eq!(segs[0].short_message.len(), 35);
    // 153-septet segments: 100 euro signs = 200 septets → 2 segments, none ends in ESC.
    let long = "€".repeat(100);
    let segs = encode::encode(&long, Concat::Udh8(2)).expect("encode");
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].short_message.len(), 6 + 152);

    let sim = sim(SimConfig::default()).await;
    let (client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let _got = collect(rx);
    for seg in encode::encode(&long, Concat::Udh8(3)).expect("encode") {
        client
            .submit(&SubmitRequest::new("10661234", "8613700000000", &seg))
            .await
            .expect("submit");
    }
    client
        .submit(&request("8613700000001", text))
        .await
        .expect("submit");
    let texts: Vec<String> = sim.messages().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec![long, text.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_backs_off_and_succeeds() {
    let sim = sim(SimConfig {
        faults: Faults {
            throttle: 0.3,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let mut cfg = config(&sim);
    cfg.window = 10;
    cfg.throttle_backoff = Duration::from_millis(20);
    cfg.throttle_retries = 50;
    let (client, rx) = Client::connect(cfg).await.expect("bind");
    let _got = collect(rx);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let client = client.clone();
        tasks.spawn(async move { client.submit(&request(&format!("8613{i:09}"), "hi")).await });
    }
    let mut retried = 0;
    while let Some(res) = tasks.join_next().await {
        let outcome = res.expect("join").expect("eventually accepted");
        if outcome.attempts > 1 {
            retried += 1;
        }
    }
    let stats = sim.stats();
    assert_eq!(stats.accepted, 200);
    assert!(stats.throttled > 0 && retried > 0);
    // Backing off costs time: at least one 20 ms pause happened.
    assert!(started.elapsed() >= Duration::from_millis(20));

    // With retries exhausted the throttled class is returned.
    sim.set_faults(Faults {
        throttle: 1.0,
        ..Faults::default()
    });
    let mut cfg = config(&sim);
    cfg.throttle_backoff = Duration::from_millis(1);
    cfg.throttle_retries = 2;
    let (client, rx) = Client::connect(cfg).await.expect("bind");
    let _got = collect(rx);
    match client.submit(&request("8613000000000", "x")).await {
        Err(e @ SubmitError::Rejected { status: 0x58, .. }) => {
            assert_eq!(e.class(), StatusClass::Throttled);
            assert!(!e.outcome_unknown());
        }
        other => panic!("expected throttled, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_and_undeliverable_receipts() {
    let sim = sim(SimConfig {
        dlr_delay: Duration::from_millis(1),
        faults: Faults {
            reject: 1.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let got = collect(rx);
    match client.submit(&request("8613000000000", "x")).await {
        Err(e @ SubmitError::Rejected { status: 0x0B, .. }) => {
            assert_eq!(e.class(), StatusClass::Permanent)
        }
        other => panic!("expected RINVDSTADR, got {other:?}"),
    }
    sim.set_faults(Faults {
        undeliverable: 1.0,
        ..Faults::default()
    });
    client
        .submit(&request("8613000000000", "x"))
        .await
        .expect("accepted");
    wait_for("receipt", 5, || {
        got.lock().expect("lock").receipts.len() == 1
    })
    .await;
    let r = got.lock().expect("lock").receipts[0].clone();
    assert_eq!(r.state, ReceiptState::Undeliverable);
    assert_eq!(r.error_code.as_deref(), Some("001"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_fails_pending_as_unknown_and_reconnect_works() {
    let sim = sim(SimConfig {
        dlr_delay: Duration::from_millis(300),
        redelivery_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await;
    let mut cfg = config(&sim);
    cfg.window = 20;
    // Slow the client down so that submits are in flight when the link drops.
    cfg.tps = 2000;
    let (client, rx) = Client::connect(cfg.clone()).await.expect("bind");
    let got = collect(rx);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..2000 {
        let client = client.clone();
        tasks.spawn(async move { client.submit(&request(&format!("8615{i:09}"), "x")).await });
    }
    // Some submits are through (and more in flight) before the fault is switched on.
    wait_for("submits under way", 20, || sim.stats().accepted >= 100).await;
    // The next submit makes the SMSC drop the link without answering it: that one (and any
    // other in flight) has an unknown outcome.
    sim.set_faults(Faults {
        disconnect: 1.0,
        ..Faults::default()
    });
    let (mut ok, mut unknown, mut not_connected) = (0, 0, 0);
    while let Some(res) = tasks.join_next().await {
        match res.expect("join") {
            Ok(_) => ok += 1,
            Err(e) if e.outcome_unknown() => {
                assert!(matches!(e, SubmitError::ConnectionLost), "{e}");
                unknown += 1
            }
            Err(SubmitError::NotConnected) => not_connected += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(ok > 0, "some submits completed before the drop");
    assert!(
        unknown > 0,
        "in-flight submits are reported as unknown outcome"
    );
    assert!(not_connected > 0, "queued submits were never sent");
    assert_eq!(ok + unknown + not_connected, 2000);
    wait_for("closed event", 5, || {
        !got.lock().expect("lock").closed.is_empty()
    })
    .await;
    assert!(client.is_closed());
    assert_eq!(sim.stats().disconnects, 1);
    sim.set_faults(Faults::default());

    // The reconnect helper binds again; receipts of accepted submits arrive on the new bind.
    let (tx, mut done) = mpsc::channel(1);
    let runner = tokio::spawn(run_with_reconnect(
        cfg,
        Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(100),
            stable_after: Duration::from_secs(1),
        },
        tokio::sync::watch::channel(tongdao_smpp::LinkStatus::default()).0,
        std::future::pending(),
        move |client, rx| {
            let tx = tx.clone();
            async move {
                let got = collect(rx);
                let outcome = client.submit(&request("8615999999999", "after")).await;
                let _ = tx.send((outcome.is_ok(), got)).await;
                ControlFlow::Break(())
            }
        },
    ));
    let (ok_after, got2) = timeout(Duration::from_secs(10), done.recv())
        .await
        .expect("reconnected")
        .expect("result");
    assert!(ok_after);
    runner.await.expect("runner");
    // Every accepted submit gets its receipt (on the old bind or the new one), and none is
    // lost; unacked ones on the dropped link are redelivered. The runner's client is
    // dropped by now, so bind again to drain the rest.
    let (client3, rx3) = Client::connect(config(&sim)).await.expect("bind again");
    let got3 = collect(rx3);
    let accepted = sim.stats().accepted as usize;
    wait_for("receipts for all accepted", 20, || {
        sim.stats().receipts_acked as usize >= accepted
    })
    .await;
    let mut ids: Vec<String> = [&got, &got2, &got3]
        .iter()
        .flat_map(|g| {
            g.lock()
                .expect("lock")
                .receipts
                .iter()
                .map(|r| r.message_id.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), accepted);

    // An operator-side drop of every link is seen as Closed too.
    sim.disconnect_all();
    wait_for("closed after disconnect_all", 5, || {
        !got3.lock().expect("lock").closed.is_empty()
    })
    .await;
    assert!(client3.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_ack_makes_the_smsc_redeliver() {
    let sim = sim(SimConfig {
        dlr_delay: Duration::from_millis(1),
        redelivery_delay: Duration::from_millis(20),
        quirky_receipts: true,
        ..SimConfig::default()
    })
    .await;
    let (client, mut rx) = Client::connect(config(&sim)).await.expect("bind");
    let outcome = client
        .submit(&request("8613000000000", "x"))
        .await
        .expect("submit");
    // First delivery: drop the ack (e.g. the store failed).
    match timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Inbound::Receipt(r, ack))) => {
            assert_eq!(r.message_id, outcome.message_id);
            drop(ack);
        }
        other => panic!("expected receipt, got {other:?}"),
    }
    // Redelivered; this time acknowledge.
    match timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Inbound::Receipt(r, ack))) => {
            assert_eq!(r.message_id, outcome.message_id);
            ack.ack();
        }
        other => panic!("expected redelivered receipt, got {other:?}"),
    }
    wait_for("ack", 5, || sim.stats().receipts_acked == 1).await;
    let s = sim.stats();
    assert_eq!((s.receipts_sent, s.receipts_redelivered), (2, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_long_chinese_reassembled_by_client() {
    let sim = sim(SimConfig::default()).await;
    let (_client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let got = collect(rx);
    let text: String = "退订请回复TD，查询请回复CX。"
        .chars()
        .cycle()
        .take(150)
        .collect();
    let parts = sim.send_mo("8613800138000", "10661234", &text).expect("mo");
    assert_eq!(parts, 3);
    sim.send_mo("8613800138001", "10661234", "QUIZ")
        .expect("mo");
    wait_for("mo parts", 5, || got.lock().expect("lock").mos.len() == 4).await;
    let mos = got.lock().expect("lock").mos.clone();
    let mut r = Reassembler::new();
    let mut complete = Vec::new();
    for mo in &mos {
        if let Some(t) = mo.reassemble(&mut r) {
            complete.push((mo.source_addr.clone(), t));
        }
    }
    complete.sort();
    assert_eq!(
        complete,
        vec![
            ("8613800138000".to_string(), text),
            ("8613800138001".to_string(), "QUIZ".to_string())
        ]
    );
    let single = mos.iter().find(|m| m.concat.is_none()).expect("single");
    assert_eq!(single.text, "QUIZ");
    assert_eq!(single.destination_addr, "10661234");
    wait_for("mo acks", 5, || sim.stats().mos_acked == 4).await;
}

// Current-thread runtime: the loop below queues all 3000 before the simulator's dispatcher
// runs, a burst larger than its per-wakeup batch. None may be lost.
#[tokio::test]
async fn burst_of_3000_mos_all_delivered_once() {
    let sim = sim(SimConfig::default()).await;
    let (_client, rx) = Client::connect(config(&sim)).await.expect("bind");
    let got = collect(rx);
    for i in 0..3000 {
        sim.send_mo(&format!("8613{i:09}"), "10661234", "TD")
            .expect("mo");
    }
    wait_for("3000 MOs", 20, || sim.stats().mos_acked == 3000).await;
    let c = got.lock().expect("lock");
    let mut from: Vec<&str> = c.mos.iter().map(|m| m.source_addr.as_str()).collect();
    from.sort_unstable();
    from.dedup();
    assert_eq!((c.mos.len(), from.len()), (3000, 3000));
    assert_eq!(sim.stats().mos_sent, 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tps_limit_paces_submits_and_enquire_link_keeps_idle_link() {
    let sim = sim(SimConfig::default()).await;
    let mut cfg = config(&sim);
    cfg.tps = 500;
    cfg.window = 50;
    cfg.enquire_link_interval = Duration::from_millis(50);
    let (client, rx) = Client::connect(cfg).await.expect("bind");
    let got = collect(rx);
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..300 {
        let client = client.clone();
        tasks.spawn(async move { client.submit(&request(&format!("8613{i:09}"), "x")).await });
    }
    while let Some(res) = tasks.join_next().await {
        res.expect("join").expect("submit");
    }
    // 300 at 500/s with a 50-token burst: at least (300 - 50) / 500 = 0.5 s.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    // Idle for several enquire_link intervals (each answered): the link stays up.
    let answered = sim.stats().enquire_links;
    wait_for("three enquire_links answered", 20, || {
        sim.stats().enquire_links >= answered + 3
    })
    .await;
    assert!(!client.is_closed());
    assert!(got.lock().expect("lock").closed.is_empty());
    client
        .submit(&request("8613000000000", "still up"))
        .await
        .expect("submit after idle");
}

/// Issue 14 item 4: receipts spread over `dlr_delay + [0, dlr_jitter)` (the demo's
/// realistic handsets): none before `dlr_delay`, and the spread reorders them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_spread_over_the_jitter_window() {
    const N: usize = 30;
    let delay = Duration::from_millis(100);
    let sim = sim(SimConfig {
        dlr_delay: delay,
        dlr_jitter: Duration::from_millis(900),
        ..SimConfig::default()
    })
    .await;
    let (client, mut rx) = Client::connect(config(&sim)).await.expect("bind");
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let sink = arrivals.clone();
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            if let Inbound::Receipt(r, ack) = ev {
                sink.lock()
                    .expect("lock")
                    .push((r.source_addr.clone(), tokio::time::Instant::now()));
                ack.ack();
            }
        }
    });
    let mut submitted = HashMap::new();
    for i in 0..N {
        let dest = format!("86138000{i:05}");
        let at = tokio::time::Instant::now();
        client
            .submit(&request(&dest, "spread"))
            .await
            .expect("submit");
        submitted.insert(dest, at);
    }
    wait_for("every receipt", 10, || {
        arrivals.lock().expect("lock").len() == N
    })
    .await;
    let arrivals = arrivals.lock().expect("lock").clone();
    for (dest, at) in &arrivals {
        let sent = submitted[dest.as_str()];
        assert!(
            *at >= sent + delay,
            "receipt for {dest} after {:?}, before dlr_delay",
            *at - sent
        );
    }
    let order: Vec<&str> = arrivals.iter().map(|(d, _)| d.as_str()).collect();
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_ne!(order, sorted, "the jitter reorders receipts");
    client.close().await;
}
