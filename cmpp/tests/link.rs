//! End-to-end (issue 16 item 2; fee fields, R-1.3 delivery rules): the real CMPP
//! client against the real ISMG simulator over loopback TCP, both versions.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tongdao_cmpp::pdu::{Packet, Pdu, Version};
use tongdao_cmpp::sim::{Faults, Sim, SimConfig, SimHandle};
use tongdao_cmpp::{Client, ClientConfig, ConnectError};
use tongdao_link::encode::{Concat, Reassembler, encode_in};
use tongdao_link::{
    Alphabet, Fee, FeeType, FeeUserType, Inbound, MoPdu, Receipt, ReceiptState, Session,
    StatusClass, SubmitError, SubmitRequest,
};

/// How often a wait looks again (tests wait for states, never for time).
const POLL: Duration = Duration::from_millis(10);

const SP: &str = "901234";
const SECRET: &str = "s3cret";

async fn sim(config: SimConfig) -> SimHandle {
    Sim::start(SimConfig {
        credentials: Some((SP.into(), SECRET.into())),
        ..config
    })
    .await
    .expect("start simulator")
}

fn config(sim: &SimHandle, version: Version) -> ClientConfig {
    let mut c = ClientConfig::new(sim.local_addr().to_string(), SP, SECRET, version);
    c.response_timeout = Duration::from_secs(10);
    c
}

fn requests(dest: &str, text: &str, reference: u8, fee: Option<Fee>) -> Vec<SubmitRequest> {
    encode_in(text, Alphabet::Ucs2, Concat::Udh8(reference))
        .expect("encode")
        .iter()
        .map(|s| SubmitRequest::new("10661234", dest, s).with_fee(fee.clone()))
        .collect()
}

fn fee(fee_type: FeeType, fen: u32) -> Fee {
    Fee {
        fee_type,
        fee_code_fen: fen,
        fee_user_type: FeeUserType::Destination,
        charge_number: String::new(),
        service_id: "MWEATHER".into(),
        link_id: None,
        in_reply_to_mo: false,
    }
}

#[derive(Default)]
struct Collected {
    receipts: Vec<Receipt>,
    mos: Vec<MoPdu>,
    closed: Vec<String>,
}

/// Acks every inbound event after "storing" it in the collection.
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

async fn submit_as_session<S: Session>(
    session: &S,
    request: &SubmitRequest,
) -> Result<tongdao_link::SubmitOutcome, SubmitError> {
    session.submit(request).await
}

/// Waits for a state, never for a time.
async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_succeeds_in_both_versions_and_a_bad_secret_is_refused() {
    let sim = sim(SimConfig::default()).await;
    for v in [Version::V30, Version::V20] {
        let (client, _rx) = Client::connect(config(&sim, v)).await.expect("login");
        assert_eq!(client.version(), v);
        client.close().await;
    }
    let mut bad = config(&sim, Version::V30);
    bad.secret = "wrong".into();
    match Client::connect(bad).await {
        Err(ConnectError::Rejected { status }) => assert_eq!(status, 3, "authentication error"),
        other => panic!("expected Status 3, got {other:?}"),
    }
    let mut bad = config(&sim, Version::V20);
    bad.sp_id = "900000".into();
    match Client::connect(bad).await {
        Err(ConnectError::Rejected { status }) => assert_eq!(status, 2, "bad source address"),
        other => panic!("expected Status 2, got {other:?}"),
    }
    let s = sim.stats();
    assert_eq!((s.logins, s.login_failures), (2, 2));
    wait_for("both terminates", 5, || sim.stats().terminates == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ismg_that_does_not_know_our_secret_is_not_trusted() {
    // The simulator accepts anyone (no credentials) and so signs with an empty secret:
    // its AuthenticatorISMG cannot match ours.
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    match Client::connect(config(&sim, Version::V30)).await {
        Err(ConnectError::Protocol(reason)) => assert!(reason.contains("AuthenticatorISMG")),
        other => panic!("expected an AuthenticatorISMG mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_submits_through_the_window_with_every_report_matched() {
    let sim = sim(SimConfig {
        report_delay: Duration::from_millis(5),
        report_failure: 0.1,
        ..SimConfig::default()
    })
    .await;
    let (client, rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let got = collect(rx);
    let n = 2000;
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        let req = requests(
            &format!("1380013{i:04}"),
            "您的验证码是 1234",
            1,
            Some(fee(FeeType::PerMessage, 10)),
        );
        tasks.spawn(async move { client.submit(&req[0]).await });
    }
    let mut ids = HashSet::new();
    while let Some(r) = tasks.join_next().await {
        let outcome = r.expect("task").expect("accepted");
        assert!(client.in_flight() <= 16, "window 16 exceeded");
        ids.insert(outcome.message_id);
    }
    let submit_secs = started.elapsed().as_secs_f64();
    assert_eq!(ids.len(), n, "unique Msg_Ids");
    wait_for("all reports", 30, || {
        got.lock().expect("lock").receipts.len() >= n
    })
    .await;
    let receipts = std::mem::take(&mut got.lock().expect("lock").receipts);
    let reported: HashSet<_> = receipts.iter().map(|r| r.message_id.clone()).collect();
    assert_eq!(
        reported, ids,
        "every report matches a submit, every submit has one"
    );
    let failed = receipts
        .iter()
        .filter(|r| r.state == ReceiptState::Undeliverable)
        .count();
    assert!((100..=300).contains(&failed), "~10% UNDELIV, got {failed}");
    assert!(receipts.iter().all(|r| r.state.is_final()));
    // Every record carries the fee fields it was sent with.
    let received = sim.received();
    assert_eq!(received.len(), n);
    assert!(received.iter().all(|r| r.submit.fee_type == "02"
        && r.submit.fee_code == "000010"
        && r.submit.service_id == "MWEATHER"
        && r.submit.msg_src == SP));
    wait_for("reports acked", 10, || {
        sim.stats().reports_acked as usize == n
    })
    .await;
    println!(
        "cmpp: {n} submits through window 16 in {submit_secs:.2}s ({:.0}/s)",
        n as f64 / submit_secs
    );
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chinese_text_is_segmented_and_reassembled() {
    let sim = sim(SimConfig::default()).await;
    let (client, rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let _got = collect(rx);
    let text =
        "【天气】明天北京晴转多云，气温十二到二十五度，东南风三到四级，空气质量良。".repeat(4);
    let reqs = requests("13800138000", &text, 42, None);
    assert!(reqs.len() >= 3, "{} segments", reqs.len());
    for r in &reqs {
        client.submit(r).await.expect("accepted");
    }
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, text);
    let records = sim.received();
    let total = reqs.len() as u8;
    for (i, r) in records.iter().enumerate() {
        let s = &r.submit;
        assert_eq!(
            (s.pk_total, s.pk_number, s.tp_udhi, s.msg_fmt),
            (total, i as u8 + 1, 1, 8)
        );
        assert_eq!(
            &s.msg_content[..6],
            &[0x05, 0x00, 0x03, 42, total, i as u8 + 1]
        );
        assert!(s.msg_content.len() <= 140);
    }
    // And a long MO back, reassembled on our side.
    let parts = sim
        .send_mo("13800138000", "10661234", "", &text, "")
        .expect("mo");
    assert_eq!(parts, reqs.len());
    let got = _got;
    wait_for("MO parts", 10, || {
        got.lock().expect("lock").mos.len() == parts
    })
    .await;
    let mut re = Reassembler::new();
    let full: Vec<String> = got
        .lock()
        .expect("lock")
        .mos
        .iter()
        .filter_map(|m| m.reassemble(&mut re))
        .collect();
    assert_eq!(full, vec![text]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_with_link_id_is_delivered_and_the_reply_carries_it() {
    let sim = sim(SimConfig::default()).await;
    let (client, rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let got = collect(rx);
    sim.send_mo(
        "13800138000",
        "1066123401",
        "MWEATHER",
        "TQ 北京",
        "LK20250101ABCDEF",
    )
    .expect("mo");
    wait_for("the MO", 10, || !got.lock().expect("lock").mos.is_empty()).await;
    let mo = got.lock().expect("lock").mos[0].clone();
    assert_eq!(mo.text, "TQ 北京");
    assert_eq!(mo.source_addr, "13800138000");
    assert_eq!(mo.destination_addr, "1066123401");
    assert_eq!(mo.service_type, "MWEATHER");
    assert_eq!(mo.link_id.as_deref(), Some("LK20250101ABCDEF"));
    wait_for("MO acked", 5, || sim.stats().mos_acked == 1).await;
    // The 点播 reply: per message, 2 yuan, with the MO's LinkID.
    let mut f = fee(FeeType::PerMessage, 200);
    f.link_id = mo.link_id.clone();
    f.in_reply_to_mo = true;
    let reqs = requests(&mo.source_addr, "北京：晴，25度", 1, Some(f));
    // Through the protocol-neutral trait, as the relay sends.
    submit_as_session(&client, &reqs[0])
        .await
        .expect("reply accepted");
    let s = &sim.received()[0].submit;
    assert_eq!(s.link_id, "LK20250101ABCDEF");
    assert_eq!((s.fee_type.as_str(), s.fee_code.as_str()), ("02", "000200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_fields_on_the_wire_equal_the_charge_plan_in_both_versions() {
    let sim = sim(SimConfig::default()).await;
    for v in [Version::V30, Version::V20] {
        let (client, rx) = Client::connect(config(&sim, v)).await.expect("login");
        let _got = collect(rx);
        let mut charged = fee(FeeType::PerMessage, 150);
        charged.fee_user_type = FeeUserType::ChargeNumber;
        charged.charge_number = "13900139000".into();
        let plans = [
            fee(FeeType::Free, 0),
            fee(FeeType::PerMessage, 10),
            fee(FeeType::Monthly, 500),
            fee(FeeType::MonthlyRecordOnly, 500),
            charged,
        ];
        for p in &plans {
            let sent = client
                .submit(&requests("13800138000", "x", 1, Some(p.clone()))[0])
                .await;
            if p.fee_type == FeeType::MonthlyRecordOnly && v == Version::V30 {
                // CMPP 3.0 §8.4.3.1: Registered_Delivery is 0 or 1; a 包月 record
                // would reach the handset, so it is refused before sending.
                assert!(matches!(sent, Err(SubmitError::Invalid(_))), "{sent:?}");
            } else {
                sent.expect("accepted");
            }
        }
        client.close().await;
    }
    let got = sim.received();
    assert_eq!(got.len(), 9);
    // The 2.0 record is the gateway's billing record, never a handset's message.
    let records = sim.fee_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].version, Version::V20);
    assert_eq!(records[0].submit.registered_delivery, 2);
    assert!(sim.messages().iter().all(|m| m.text == "x"));
    assert_eq!(sim.messages().len(), 8);
    // (FeeType, FeeCode, Fee_UserType, Fee_terminal_Id, Registered_Delivery) per plan.
    let want = |v: Version| {
        let mut want = vec![
            ("01", "000000", 0, "", 1),
            ("02", "000010", 0, "", 1),
            ("03", "000500", 0, "", 1),
            ("02", "000150", 3, "13900139000", 1),
        ];
        // 2.0 has the billing-record-only Registered_Delivery 2; 3.0's has not.
        if v == Version::V20 {
            want.insert(3, ("03", "000500", 0, "", 2));
        }
        want
    };
    let (v30, v20) = got.split_at(4);
    for (chunk, v) in [(v30, Version::V30), (v20, Version::V20)] {
        let wire: Vec<_> = chunk
            .iter()
            .map(|r| {
                assert_eq!(r.version, v);
                let s = &r.submit;
                (
                    s.fee_type.as_str(),
                    s.fee_code.as_str(),
                    s.fee_user_type,
                    s.fee_terminal_id.as_str(),
                    s.registered_delivery,
                )
            })
            .collect();
        assert_eq!(wire, want(v), "{v:?}");
        assert!(chunk.iter().all(|r| r.submit.service_id == "MWEATHER"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_id_on_cmpp_2_is_refused_before_sending() {
    let sim = sim(SimConfig::default()).await;
    let (client, _rx) = Client::connect(config(&sim, Version::V20))
        .await
        .expect("login");
    let mut f = fee(FeeType::PerMessage, 10);
    f.link_id = Some("LK1".into());
    let err = client
        .submit(&requests("13800138000", "x", 1, Some(f))[0])
        .await
        .expect_err("2.0 has no LinkID");
    assert!(matches!(err, SubmitError::Invalid(_)), "{err}");
    assert_eq!(err.class(), StatusClass::Permanent);
    assert_eq!(sim.stats().submits, 0, "nothing sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_is_retried_and_rejections_are_classified() {
    let sim = sim(SimConfig {
        faults: Faults {
            throttle: 0.3,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let mut cfg = config(&sim, Version::V30);
    cfg.throttle_backoff = Duration::from_millis(1);
    cfg.throttle_retries = 50;
    let (client, _rx) = Client::connect(cfg).await.expect("login");
    let mut retried = 0;
    for i in 0..50 {
        let o = client
            .submit(&requests(&format!("138{i:08}"), "x", 1, None)[0])
            .await
            .expect("accepted after flow control");
        retried += usize::from(o.attempts > 1);
    }
    assert!(retried > 0 && sim.stats().throttled > 0);
    sim.set_faults(Faults {
        reject: 1.0,
        ..Faults::default()
    });
    let err = client
        .submit(&requests("13800138000", "x", 1, None)[0])
        .await
        .expect_err("rejected");
    match err {
        SubmitError::Rejected { status, class, .. } => {
            assert_eq!((status, class), (13, StatusClass::Permanent));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_drop_with_submits_in_flight_is_an_unknown_outcome() {
    let sim = sim(SimConfig {
        faults: Faults {
            // Accepted, then answered far too late: the link drops first.
            stall: Some(Duration::from_secs(60)),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (client, rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let got = collect(rx);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let client = client.clone();
        let req = requests(&format!("138{i:08}"), "x", 1, None);
        tasks.spawn(async move { client.submit(&req[0]).await });
    }
    wait_for("8 submits accepted by the ISMG", 10, || {
        sim.stats().accepted == 8
    })
    .await;
    assert_eq!(client.in_flight(), 8);
    sim.disconnect_all();
    let mut unknown = 0;
    while let Some(r) = tasks.join_next().await {
        let err = r.expect("task").expect_err("no response came");
        assert!(matches!(err, SubmitError::ConnectionLost), "{err}");
        assert_eq!(err.class(), StatusClass::UnknownOutcome);
        unknown += usize::from(err.outcome_unknown());
    }
    assert_eq!(unknown, 8);
    wait_for("Closed event", 5, || {
        !got.lock().expect("lock").closed.is_empty()
    })
    .await;
    assert!(client.is_closed());
    let after = client
        .submit(&requests("13800138000", "x", 1, None)[0])
        .await
        .expect_err("closed");
    assert!(matches!(after, SubmitError::NotConnected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_or_malformed_response_is_an_unknown_outcome_and_the_link_stays() {
    let sim = sim(SimConfig {
        faults: Faults {
            malformed_response: 1.0,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let (client, _rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let err = client
        .submit(&requests("13800138000", "x", 1, None)[0])
        .await
        .expect_err("malformed");
    assert!(matches!(err, SubmitError::MalformedResponse(_)), "{err}");
    assert!(err.outcome_unknown());
    sim.set_faults(Faults::default());
    client
        .submit(&requests("13800138000", "y", 1, None)[0])
        .await
        .expect("same link still works");
    assert!(!client.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_packet_is_answered_without_dropping_the_link() {
    let sim = sim(SimConfig::default()).await;
    let (client, rx) = Client::connect(config(&sim, Version::V30))
        .await
        .expect("login");
    let got = collect(rx);
    // The ISMG sends us a cut-short CMPP_DELIVER: we answer Result 1, keep the link.
    sim.send_malformed();
    wait_for("the Result 1 answer", 10, || {
        sim.stats().bad_structure_answers == 1
    })
    .await;
    client
        .submit(&requests("13800138000", "still here", 1, None)[0])
        .await
        .expect("link kept");
    assert!(got.lock().expect("lock").closed.is_empty());

    // And we send the ISMG a cut-short CMPP_SUBMIT over a raw socket: it answers Result 1
    // and answers the next packet on the same connection.
    let addr = sim.local_addr();
    let answers = tokio::task::spawn_blocking(move || raw_malformed_submit(addr))
        .await
        .expect("raw client");
    assert_eq!(answers, (1, true));
    assert_eq!(sim.stats().malformed_received, 1);
}

/// Logs in over a plain socket, sends a `CMPP_SUBMIT` with a 4-octet body, then an
/// `CMPP_ACTIVE_TEST`; returns (the submit's `Result`, whether the active test was
/// answered).
fn raw_malformed_submit(addr: std::net::SocketAddr) -> (u32, bool) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let ts = tongdao_cmpp::time::connect_timestamp(jiff::Timestamp::now());
    let login = Packet {
        sequence_id: 1,
        pdu: Pdu::Connect(tongdao_cmpp::pdu::Connect {
            source_addr: SP.into(),
            authenticator_source: tongdao_cmpp::auth::authenticator_source(SP, SECRET, ts),
            version: 0x30,
            timestamp: ts,
        }),
    };
    s.write_all(&login.encode(Version::V30).expect("encode"))
        .expect("write");
    let read_packet = |s: &mut std::net::TcpStream| {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).expect("length");
        let mut rest = vec![0u8; u32::from_be_bytes(len) as usize - 4];
        s.read_exact(&mut rest).expect("body");
        let mut all = len.to_vec();
        all.extend(rest);
        Packet::decode(&all, Version::V30).expect("decodes")
    };
    assert!(matches!(read_packet(&mut s).pdu, Pdu::ConnectResp(r) if r.status == 0));
    s.write_all(&[0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 0, 2, 9, 9, 9, 9])
        .expect("write");
    let active = Packet {
        sequence_id: 3,
        pdu: Pdu::ActiveTest,
    };
    s.write_all(&active.encode(Version::V30).expect("encode"))
        .expect("write");
    let result = match read_packet(&mut s) {
        Packet {
            sequence_id: 2,
            pdu: Pdu::SubmitResp(r),
        } => r.result,
        other => panic!("expected the submit's answer, got {other:?}"),
    };
    let answered = matches!(
        read_packet(&mut s),
        Packet {
            sequence_id: 3,
            pdu: Pdu::ActiveTestResp(_)
        }
    );
    (result, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_test_keeps_an_idle_link_up() {
    let sim = sim(SimConfig::default()).await;
    let mut cfg = config(&sim, Version::V20);
    cfg.active_test_interval = Duration::from_millis(50);
    cfg.response_timeout = Duration::from_secs(2);
    let (client, rx) = Client::connect(cfg).await.expect("login");
    let got = collect(rx);
    wait_for("5 active tests", 10, || sim.stats().active_tests >= 5).await;
    assert!(!client.is_closed());
    assert!(got.lock().expect("lock").closed.is_empty());
    client
        .submit(&requests("13800138000", "after idling", 1, None)[0])
        .await
        .expect("idle link still usable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_active_test_drops_the_link_after_three_tries() {
    // A listener that accepts the login and then stays silent.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let silent = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 39];
        s.read_exact(&mut buf).await.expect("login");
        let src: [u8; 16] = buf[18..34].try_into().expect("16");
        let resp = Packet {
            sequence_id: 1,
            pdu: Pdu::ConnectResp(tongdao_cmpp::pdu::ConnectResp {
                status: 0,
                authenticator_ismg: tongdao_cmpp::auth::authenticator_ismg(
                    0,
                    &src,
                    SECRET,
                    Version::V30,
                ),
                version: 0x30,
            }),
        };
        s.write_all(&resp.encode(Version::V30).expect("encode"))
            .await
            .expect("write");
        let mut active_tests = 0;
        let mut sink = [0u8; 12];
        while s.read_exact(&mut sink).await.is_ok() {
            active_tests += 1;
        }
        active_tests
    });
    let mut cfg = ClientConfig::new(addr.to_string(), SP, SECRET, Version::V30);
    cfg.active_test_interval = Duration::from_millis(30);
    cfg.response_timeout = Duration::from_millis(100);
    let (client, rx) = Client::connect(cfg).await.expect("login");
    let got = collect(rx);
    wait_for("the link to drop", 10, || {
        !got.lock().expect("lock").closed.is_empty()
    })
    .await;
    let reason = got.lock().expect("lock").closed[0].clone();
    assert!(reason.contains("3 CMPP_ACTIVE_TEST unanswered"), "{reason}");
    assert!(client.is_closed());
    drop(client);
    assert_eq!(silent.await.expect("server"), 3, "three tries (N = 3)");
}
