//! SGIP 1.2 links end to end over real sockets: our SP client and listener against the
//! SMG simulator (R-1.2 fee fields, R-1.3/R-2.2 delivery and reports, R-2.5 MOs,
//! billing fields, R-4.7 link faults).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tongdao_link::encode::{Alphabet, Concat, Reassembler, encode_in};
use tongdao_link::{
    Connect, Fee, FeeType, FeeUserType, Inbound, MoPdu, Receipt, ReceiptState, Session,
    SubmitError, SubmitRequest,
};
use tongdao_sgip::client::ConnectError;
use tongdao_sgip::sim::{Faults, Sim, SimConfig, SimHandle};
use tongdao_sgip::{
    CHARGE_SP, Client, ClientConfig, MtRequest, Server, ServerConfig, Sgip, SgipFee, text,
};

/// How often a wait looks again (tests wait for states, never for time).
const POLL: Duration = Duration::from_millis(10);

const SP_NODE: u32 = 3_010_012_345;

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

/// What the SP's listener received (acked after "storing" it here).
#[derive(Default)]
struct Collected {
    reports: Vec<Receipt>,
    mos: Vec<MoPdu>,
    texts: Vec<String>,
}

async fn listener(login: &str, password: &str) -> (Server, Arc<Mutex<Collected>>) {
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), login, password);
    let (server, inbound) = Server::start(config).await.expect("listen");
    (server, collect(inbound))
}

fn collect(mut inbound: mpsc::Receiver<Inbound>) -> Arc<Mutex<Collected>> {
    let out = Arc::new(Mutex::new(Collected::default()));
    let sink = out.clone();
    tokio::spawn(async move {
        let mut reassembler = Reassembler::new();
        while let Some(event) = inbound.recv().await {
            let mut c = sink.lock().expect("lock");
            match event {
                Inbound::Receipt(r, ack) => {
                    c.reports.push(r);
                    ack.ack();
                }
                Inbound::Closed(_) => break,
                Inbound::Mo(mo, ack) => {
                    if let Some(full) = mo.reassemble(&mut reassembler) {
                        c.texts.push(full);
                    }
                    c.mos.push(mo);
                    ack.ack();
                }
            }
        }
    });
    out
}

async fn smg(server: &Server, config: SimConfig) -> SimHandle {
    Sim::start(SimConfig {
        credentials: Some(("sp".into(), "sp-secret".into())),
        sp_address: Some(server.local_addr()),
        sp_credentials: ("smg".into(), "smg-secret".into()),
        report_delay: Duration::from_millis(20),
        redelivery_delay: Duration::from_millis(50),
        ..config
    })
    .await
    .expect("start simulator")
}

fn client_config(sim: &SimHandle) -> ClientConfig {
    let mut c = ClientConfig::new(
        sim.local_addr().to_string(),
        "sp",
        "sp-secret",
        SP_NODE,
        "12345",
    );
    c.response_timeout = Duration::from_secs(5);
    c
}

fn segment(body: &str) -> text::Segment {
    text::encode(body, 1).expect("encode").remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_both_directions_and_refuses_bad_passwords() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;

    // SP → SMG, Login Type 1: a wrong password is Result 1 (illegal login).
    let mut bad = client_config(&sim);
    bad.password = "wrong".into();
    match Client::connect(bad).await {
        Err(ConnectError::BindRejected { result }) => assert_eq!(result, 1),
        other => panic!("expected a refused bind, got {other:?}"),
    }
    let client = Client::connect(client_config(&sim)).await.expect("bind");
    assert!(client.is_bound());
    assert_eq!(sim.stats().binds, 1);
    assert_eq!(sim.stats().bind_failures, 1);

    // SMG → SP, Login Type 2: an MO makes the simulator bind to our listener.
    sim.send_mo("8613100000001", "10661234", "hello")
        .expect("mo");
    wait_for("the MO over the reverse link", 10, || {
        got.lock().expect("lock").texts == ["hello"]
    })
    .await;
    assert_eq!(sim.stats().reverse_binds, 1);

    // A simulator with the wrong password for our listener is refused.
    let wrong = Sim::start(SimConfig {
        sp_address: Some(server.local_addr()),
        sp_credentials: ("smg".into(), "nope".into()),
        redelivery_delay: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    wrong.send_mo("8613100000002", "10661234", "x").expect("mo");
    wait_for("the refused reverse bind", 10, || {
        wrong.stats().reverse_bind_failures >= 1
    })
    .await;
    assert_eq!(wrong.stats().mos_acked, 0);
    assert_eq!(got.lock().expect("lock").mos.len(), 1);
    client.close().await;
    assert!(!client.is_bound());
}

/// 2,000 MTs through a window of 16, every Report matched to its MT by the
/// Submit's sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_submits_through_a_window_with_every_report_matched() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(
        &server,
        SimConfig {
            failure_ratio: 0.1,
            ..SimConfig::default()
        },
    )
    .await;
    let mut config = client_config(&sim);
    config.window = 16;
    let client = Client::new(config).expect("client");
    let started = std::time::Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut ids: HashMap<String, String> = HashMap::new();
    for i in 0..2000u32 {
        let c = client.clone();
        let user = format!("86131{i:08}");
        pending.push(async move {
            let request = MtRequest::new("10661234", &user, &segment("code 4711"));
            (user, c.submit_mt(&request).await)
        });
    }
    while let Some((user, outcome)) = pending.next().await {
        let outcome = outcome.expect("accepted");
        assert_eq!(outcome.attempts, 1);
        assert!(ids.insert(outcome.message_id, user).is_none(), "ids unique");
    }
    let elapsed = started.elapsed();
    assert_eq!(ids.len(), 2000);
    assert_eq!(sim.stats().accepted, 2000);
    wait_for("2,000 reports", 30, || {
        got.lock().expect("lock").reports.len() >= 2000
    })
    .await;
    let reports = got.lock().expect("lock").reports.clone();
    let mut matched = HashSet::new();
    let mut failed = 0;
    for r in &reports {
        let user = ids.get(&r.message_id).expect("report names a sent MT");
        assert_eq!(&r.source_addr, user, "report for the MT's recipient");
        assert!(matched.insert(r.message_id.clone()), "one report per MT");
        match r.state {
            ReceiptState::Delivered => assert_eq!(r.error_code, None),
            ReceiptState::Undeliverable => {
                assert_eq!(r.error_code.as_deref(), Some("29"));
                failed += 1;
            }
            other => panic!("unexpected state {other:?}"),
        }
    }
    assert_eq!(matched.len(), 2000);
    assert!((100..=300).contains(&failed), "about 10% failed: {failed}");
    println!(
        "sgip: 2000 submits, window 16, in {:.0} ms ({:.0}/s); {} binds",
        elapsed.as_secs_f64() * 1000.0,
        2000.0 / elapsed.as_secs_f64(),
        client.binds()
    );
    client.close().await;
}

/// Expected (FeeType, FeeValue, ChargeNumber — "U" for the recipient —,
/// MorelatetoMTFlag, ReportFlag, ServiceType).
type Wire = (u8, u32, &'static str, u8, u8, &'static str);

fn link_fee(fee_type: FeeType, fen: u32, who: FeeUserType, reply: bool) -> Fee {
    Fee {
        fee_type,
        fee_code_fen: fen,
        fee_user_type: who,
        charge_number: "8613999999999".into(),
        service_id: format!("SVC{fen}"),
        link_id: None,
        in_reply_to_mo: reply,
    }
}

/// R-4.3 (issue 16 item 4): for a mixed scenario sent through the `tongdao-link`
/// session (free, per message, 包月 delivered, 包月 fee record, SP pays, a third
/// party pays, no fee), the fee fields the SMG records on the wire are exactly what
/// the relay's fee says, and the 包月 record gets no Report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_fields_on_the_wire_equal_the_relays_fee() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    let sgip = Sgip::new(client_config(&sim), &server);
    let (session, inbound) = sgip.connect().await.expect("connect");
    let got_session = collect(inbound);
    let cases: Vec<(Option<Fee>, Wire)> = vec![
        (None, (1, 0, "U", 2, 1, "")),
        (
            Some(link_fee(FeeType::Free, 0, FeeUserType::Destination, false)),
            (1, 0, "U", 2, 1, "SVC0"),
        ),
        (
            Some(link_fee(
                FeeType::PerMessage,
                200,
                FeeUserType::Destination,
                true,
            )),
            (2, 200, "U", 0, 1, "SVC200"),
        ),
        (
            Some(link_fee(
                FeeType::Monthly,
                0,
                FeeUserType::Destination,
                false,
            )),
            (3, 0, "U", 2, 1, "SVC0"),
        ),
        (
            Some(link_fee(
                FeeType::MonthlyRecordOnly,
                1500,
                FeeUserType::Destination,
                false,
            )),
            (3, 1500, "U", 2, 3, "SVC1500"),
        ),
        (
            Some(link_fee(FeeType::PerMessage, 100, FeeUserType::Sp, false)),
            (2, 100, CHARGE_SP, 2, 1, "SVC100"),
        ),
        (
            Some(link_fee(
                FeeType::PerMessage,
                50,
                FeeUserType::ChargeNumber,
                true,
            )),
            (2, 50, "8613999999999", 0, 1, "SVC50"),
        ),
    ];
    let mut expected = HashMap::new();
    for (i, (fee, want)) in cases.iter().enumerate() {
        let user = format!("8613200000{i:03}");
        let segment = encode_in("天气预报", Alphabet::Ucs2, Concat::Udh8(0)).expect("encode");
        let request = SubmitRequest::new("1066123401", &user, &segment[0]).with_fee(fee.clone());
        let outcome = Session::submit(&session, &request).await.expect("accepted");
        expected.insert(outcome.message_id, (user, *want));
    }
    let received = sim.received();
    assert_eq!(received.len(), cases.len());
    for r in &received {
        let (user, (fee_type, value, charge, mt_flag, report_flag, service)) =
            expected.get(&r.message_id).expect("recorded under its id");
        let s = &r.submit;
        let charge = if *charge == "U" {
            user.as_str()
        } else {
            charge
        };
        assert_eq!(s.user_numbers, std::slice::from_ref(user));
        assert_eq!(
            (s.fee_type, s.fee_value, s.charge_number.as_str()),
            (*fee_type, *value, charge),
            "{user}"
        );
        assert_eq!(
            (s.morelateto_mt_flag, s.report_flag),
            (*mt_flag, *report_flag)
        );
        assert_eq!(
            (s.service_type.as_str(), s.given_value, s.agent_flag),
            (*service, 0, 0)
        );
        assert_eq!(
            (s.corp_id.as_str(), s.sp_number.as_str()),
            ("12345", "1066123401")
        );
        assert_eq!((s.message_coding, s.tp_udhi), (8, 0));
    }
    // Seven Reports reach the session's channel, the 包月 fee record's among them
    // (ReportFlag 3: "仅携带包月计费信息，不下发给用户，要返回状态报告").
    wait_for("seven reports", 10, || {
        got_session.lock().expect("lock").reports.len() >= 7
    })
    .await;
    let record = received
        .iter()
        .find(|r| r.submit.report_flag == 3)
        .expect("the monthly record");
    let reports = got_session.lock().expect("lock").reports.clone();
    assert_eq!(reports.len(), 7);
    assert!(reports.iter().any(|r| r.message_id == record.message_id));
    // The SMG keeps it as a billing record; no handset receives it.
    let records = sim.fee_records();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message_id, record.message_id);
    assert_eq!(sim.messages().len(), cases.len() - 1);
    assert!(
        got.lock().expect("lock").reports.is_empty(),
        "routed to the session"
    );
    session.close_within(Duration::from_secs(2)).await;
    assert!(Session::is_closed(&session));
}

/// The native fee fields reach the wire as set, FeeType 0 (record only) and GivenValue
/// included; a fee the 6-digit field cannot hold is refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_fee_fields_reach_the_wire() {
    let (server, _got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    let client = Client::new(client_config(&sim)).expect("client");
    let fee = SgipFee {
        fee_type: 0,
        fee_value: 0,
        given_value: 5,
        charge_number: CHARGE_SP.into(),
        agent_flag: 1,
        morelateto_mt_flag: 1,
        report_flag: 0,
        service_type: "RECORD".into(),
    };
    let mut request = MtRequest::new("1066", "8613200000001", &segment("x"));
    request.fee = fee.clone();
    let outcome = client.submit_mt(&request).await.expect("accepted");
    let r = sim.received();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].message_id, outcome.message_id);
    let s = &r[0].submit;
    assert_eq!(
        (s.fee_type, s.fee_value, s.given_value, s.agent_flag),
        (0, 0, 5, 1)
    );
    assert_eq!((s.morelateto_mt_flag, s.report_flag), (1, 0));
    assert_eq!(
        (s.charge_number.as_str(), s.service_type.as_str()),
        (CHARGE_SP, "RECORD")
    );
    request.fee.fee_value = 100_000;
    let err = client.submit_mt(&request).await.expect_err("refused");
    assert!(matches!(err, SubmitError::Invalid(_)), "{err}");
    assert_eq!(sim.stats().submits, 1);
}

/// a long Chinese MT goes as UCS-2 parts with TP_udhi 1 and the SMG reassembles
/// it; a long Chinese MO comes back over the reverse link in parts and is reassembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_chinese_text_is_segmented_and_mo_reassembled() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    let client = Client::new(client_config(&sim)).expect("client");
    let body = "联通短信网关长消息测试，".repeat(15); // 180 characters
    let parts = text::encode(&body, 42).expect("encode");
    assert_eq!(parts.len(), 3);
    for p in &parts {
        assert_eq!((p.tp_udhi, p.message_coding), (1, 8));
        client
            .submit_mt(&MtRequest::new("10661234", "8613300000001", p))
            .await
            .expect("accepted");
    }
    let messages = sim.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, body);
    assert!(sim.received().iter().all(|r| r.submit.tp_udhi == 1));

    let mo = "请把我的套餐改成包月，谢谢。".repeat(8); // 112 characters
    let n = sim.send_mo("8613300000001", "10661234", &mo).expect("mo");
    assert_eq!(n, 2);
    wait_for("the long MO", 10, || {
        got.lock().expect("lock").texts.contains(&mo)
    })
    .await;
    let c = got.lock().expect("lock");
    assert_eq!(c.mos.len(), 2);
    assert!(
        c.mos
            .iter()
            .all(|m| m.esm_class == 0x40 && m.concat.is_some())
    );
    assert_eq!(c.mos[0].source_addr, "8613300000001");
    assert_eq!(c.mos[0].destination_addr, "10661234");
}

/// submits in flight when the link drops end with an unknown outcome; the next
/// submit binds again on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_drop_with_submits_in_flight_gives_unknown_outcome() {
    let (server, _got) = listener("smg", "smg-secret").await;
    let sim = smg(
        &server,
        SimConfig {
            faults: Faults {
                stall: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let client = Client::new(client_config(&sim)).expect("client");
    let mut in_flight = Vec::new();
    for i in 0..5 {
        let c = client.clone();
        in_flight.push(tokio::spawn(async move {
            let request = MtRequest::new("10661234", &format!("861340000000{i}"), &segment("x"));
            c.submit_mt(&request).await
        }));
    }
    wait_for("five stalled submits", 10, || sim.stats().stalled == 5).await;
    assert_eq!(client.in_flight(), 5);
    sim.disconnect_all();
    for task in in_flight {
        let err = task.await.expect("join").expect_err("no answer");
        assert!(matches!(err, SubmitError::ConnectionLost), "{err}");
        assert!(err.outcome_unknown());
    }
    sim.set_faults(Faults::default());
    let outcome = client
        .submit_mt(&MtRequest::new(
            "10661234",
            "8613400000009",
            &segment("again"),
        ))
        .await
        .expect("accepted after rebinding");
    assert_eq!(outcome.attempts, 1);
    assert_eq!(client.binds(), 2);
}

/// SGIP links are short-lived: an idle link is closed with Unbind and the next submit
/// binds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_link_is_closed_and_rebound_on_demand() {
    let (server, _got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    let mut config = client_config(&sim);
    config.idle_timeout = Duration::from_millis(200);
    let client = Client::new(config).expect("client");
    let send = |n: &str| MtRequest::new("10661234", n, &segment("hi"));
    client
        .submit_mt(&send("8613500000001"))
        .await
        .expect("first");
    assert!(client.is_bound());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.is_bound() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle link not closed"
        );
        tokio::time::sleep(POLL).await;
    }
    client
        .submit_mt(&send("8613500000002"))
        .await
        .expect("second");
    assert_eq!(client.binds(), 2);
    assert_eq!(sim.stats().accepted, 2);
}

/// A malformed packet is answered without dropping the link, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_answered_without_dropping_the_link() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    // SMG → SP: a Deliver cut short, then a good MO on the same link.
    sim.send_malformed_deliver().expect("queue");
    sim.send_mo("8613600000001", "10661234", "after")
        .expect("mo");
    wait_for("the MO after the malformed Deliver", 10, || {
        got.lock().expect("lock").texts == ["after"]
    })
    .await;
    let stats = sim.stats();
    assert_eq!(stats.malformed_sent, 1);
    assert_eq!(stats.malformed_answered, 1);
    assert_eq!(stats.reverse_binds, 1, "one link carried both");

    // SP → SMG over a raw socket: a Submit with a short body is answered Result 5 and a
    // good Submit on the same link is accepted.
    use bytes::BufMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tongdao_sgip::codec::{Bind, Packet, Pdu, SequenceNumber, Submit, command, to_bytes};
    let mut s = tokio::net::TcpStream::connect(sim.local_addr())
        .await
        .expect("tcp");
    let seq = |n| SequenceNumber {
        node_id: SP_NODE,
        timestamp: 1_130_000_000,
        sequence: n,
    };
    let bind = Pdu::Bind(Bind {
        login_type: 1,
        login_name: "sp".into(),
        login_password: "sp-secret".into(),
        reserve: [0; 8],
    });
    s.write_all(
        &to_bytes(&Packet {
            sequence: seq(1),
            pdu: bind,
        })
        .expect("encode"),
    )
    .await
    .expect("write");
    let mut bad = bytes::BytesMut::new();
    bad.put_u32(20 + 10);
    bad.put_u32(command::SUBMIT);
    bad.put_u32(SP_NODE);
    bad.put_u32(1_130_000_000);
    bad.put_u32(2);
    bad.put_bytes(b'1', 10);
    s.write_all(&bad).await.expect("write");
    let good = Pdu::Submit(Box::new(Submit {
        sp_number: "10661234".into(),
        user_numbers: vec!["8613600000002".into()],
        message_content: b"ok".to_vec(),
        ..Submit::default()
    }));
    s.write_all(
        &to_bytes(&Packet {
            sequence: seq(3),
            pdu: good,
        })
        .expect("encode"),
    )
    .await
    .expect("write");
    let mut answers = Vec::new();
    for _ in 0..3 {
        let mut frame = [0u8; 29];
        s.read_exact(&mut frame).await.expect("answer");
        let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let n = u32::from_be_bytes([frame[16], frame[17], frame[18], frame[19]]);
        answers.push((id, n, frame[20]));
    }
    assert_eq!(
        answers,
        [
            (command::BIND_RESP, 1, 0),
            (command::SUBMIT_RESP, 2, 5),
            (command::SUBMIT_RESP, 3, 0)
        ]
    );
    assert_eq!(sim.stats().malformed_received, 1);
}

/// An answer lost with its link makes the SMG send the MO again (at-least-once): the
/// listener sees it twice and the owner stores it idempotently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_ack_makes_the_smg_resend() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    sim.lose_next_acks(1);
    sim.send_mo("8613700000001", "10661234", "twice")
        .expect("mo");
    wait_for("the resent MO", 10, || {
        got.lock().expect("lock").texts.len() == 2
    })
    .await;
    wait_for("the ack of the resend", 10, || sim.stats().mos_acked == 1).await;
    let stats = sim.stats();
    assert_eq!(stats.mos_sent, 2);
    assert_eq!(stats.mos_redelivered, 1);
    assert_eq!(stats.reverse_binds, 2);
}

/// error Results are classified (21 unreachable → temporary), throttling
/// (Result 11) is resent up to `throttle_retries` times and then reported as throttled;
/// neither is an unknown outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_and_throttle_results_are_classified() {
    use tongdao_link::StatusClass;
    let (server, _got) = listener("smg", "smg-secret").await;
    let sim = smg(
        &server,
        SimConfig {
            faults: Faults {
                error: 1.0,
                ..Faults::default()
            },
            ..SimConfig::default()
        },
    )
    .await;
    let mut config = client_config(&sim);
    config.throttle_retries = 2;
    config.throttle_backoff = Duration::from_millis(1);
    let client = Client::new(config).expect("client");
    let request = MtRequest::new("10661234", "8613800000001", &segment("x"));
    match client.submit_mt(&request).await {
        Err(SubmitError::Rejected { status, class, .. }) => {
            assert_eq!((status, class), (21, StatusClass::Temporary));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    sim.set_faults(Faults {
        throttle: 1.0,
        ..Faults::default()
    });
    let err = client.submit_mt(&request).await.expect_err("throttled");
    assert_eq!(err.class(), StatusClass::Throttled);
    assert!(!err.outcome_unknown());
    assert_eq!(sim.stats().throttled, 3, "sent once and resent twice");
    sim.set_faults(Faults::default());
    let ok = client.submit_mt(&request).await.expect("accepted");
    assert_eq!(ok.attempts, 1);
    assert_eq!(sim.stats().accepted, 1);
}

/// A connection to the SP's listener that never logs in: `trickle` sends the start
/// of a 4 KiB packet and then one byte every 100 ms (never idle, never a whole
/// packet), otherwise it sends nothing. Resolves to how long it lived before the
/// listener closed it.
async fn never_logs_in(
    addr: std::net::SocketAddr,
    trickle: bool,
) -> tokio::task::JoinHandle<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let (mut read, mut write) = stream.into_split();
        if trickle {
            let _ = write.write_all(&4096u32.to_be_bytes()).await;
        }
        let mut buf = [0u8; 256];
        let mut pace = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                n = read.read(&mut buf) => match n {
                    Ok(0) | Err(_) => return started.elapsed(),
                    Ok(_) => {}
                },
                _ = pace.tick(), if trickle => {
                    let _ = write.write_all(&[0x20]).await;
                }
            }
        }
    })
}

/// SECURITY.md section 4 (issue 18 item 4, gap 9), R-4.7: the SP's listener (what
/// the SMG connects to) is not held by connections that never log in. One that
/// trickles bytes, never idle, is closed at the login deadline; a flood of 200 keeps
/// at most `max_pending_logins` waiting (a new one closes the oldest) and every one
/// is closed within the deadline; meanwhile a real SMG binds and its MO arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_log_in_are_cut_while_the_smg_still_binds() {
    let login_timeout = Duration::from_millis(1500);
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"), "smg", "smg-secret");
    config.login_timeout = login_timeout;
    config.max_pending_logins = 8;
    let (server, inbound) = Server::start(config).await.expect("listen");
    let got = collect(inbound);
    let addr = server.local_addr();

    // Below the cap: a silent and a trickling connection end at the deadline,
    // not before (the trickler is never idle).
    let alone = [
        never_logs_in(addr, false).await,
        never_logs_in(addr, true).await,
    ];
    for task in alone {
        let lived = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("a connection that never logs in is never closed")
            .expect("task");
        assert!(
            lived >= login_timeout - Duration::from_millis(100)
                && lived < login_timeout + Duration::from_secs(5),
            "closed after {lived:?}, the login deadline is {login_timeout:?}"
        );
    }

    // A flood: 200 connections, half trickling.
    let mut flood = Vec::new();
    for i in 0..200 {
        flood.push(never_logs_in(addr, i % 2 == 1).await);
    }
    // A real SMG logs in meanwhile and delivers an MO.
    let sim = smg(&server, SimConfig::default()).await;
    sim.send_mo("8613100000001", "10661234", "during the flood")
        .expect("mo");
    wait_for("the SMG's MO during the flood", 20, || {
        got.lock().expect("lock").texts == ["during the flood"]
    })
    .await;
    assert!(sim.stats().reverse_binds >= 1);
    let mut evicted = 0;
    for task in flood {
        let lived = tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("a flood connection is never closed")
            .expect("task");
        assert!(lived < login_timeout + Duration::from_secs(5), "{lived:?}");
        if lived < login_timeout - Duration::from_millis(100) {
            evicted += 1;
        }
    }
    // All but the last few waiting were closed by the cap, before any deadline.
    assert!(evicted >= 200 - 8 - 1, "only {evicted} closed by the cap");
}
