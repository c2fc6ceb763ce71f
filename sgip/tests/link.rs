//! SGIP 1.2 links end to end over real sockets: our SP client and listener against the
//! SMG simulator (R-1.2 fee fields, R-1.3/R-2.2 delivery and reports, R-2.5 MOs,
//! billing fields, R-4.7 link faults).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tongdao_sgip::client::ConnectError;
use tongdao_sgip::codec::{STATE_DELIVERED, STATE_FAILED};
use tongdao_sgip::sim::{Faults, Sim, SimConfig, SimHandle};
use tongdao_sgip::{
    Client, ClientConfig, Fee, Inbound, Mo, Server, ServerConfig, StatusReport, SubmitError,
    SubmitRequest, text,
};
use tongdao_smpp::encode::Reassembler;

const SP_NODE: u32 = 3_010_012_345;

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

/// What the SP's listener received (acked after "storing" it here).
#[derive(Default)]
struct Collected {
    reports: Vec<StatusReport>,
    mos: Vec<Mo>,
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
                Inbound::Report(r, ack) => {
                    c.reports.push(r);
                    ack.ack();
                }
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
    assert!(client.is_bound().await);
    assert_eq!(sim.stats().binds, 1);
    assert_eq!(sim.stats().bind_failures, 1);

    // SMG → SP, Login Type 2: an MO makes the simulator bind to our listener.
    sim.send_mo("8613100000001", "10661234", "hello").expect("mo");
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
    assert!(!client.is_bound().await);
}

/// 2,000 MTs through a window of 16, every Report matched to its MT by the
/// Submit's sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_submits_through_a_window_with_every_report_matched() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(
        &server,
        SimConfig {
            failure_share: 0.1,
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
            let request = SubmitRequest::new("10661234", &user, &segment("code 4711"));
            (user, c.submit(&request).await)
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
    let c = got.lock().expect("lock");
    let mut matched = HashSet::new();
    let mut failed = 0;
    for r in &c.reports {
        let user = ids.get(&r.message_id).expect("report names a sent MT");
        assert_eq!(&r.user_number, user, "report for the MT's recipient");
        assert!(matched.insert(r.message_id.clone()), "one report per MT");
        match r.state {
            STATE_DELIVERED => assert_eq!(r.error_code, 0),
            STATE_FAILED => {
                assert_eq!(r.error_code, 29);
                failed += 1;
            }
            other => panic!("unexpected State {other}"),
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

/// the fee fields on the wire are the request's Fee, for a mixed scenario
/// (free, per message, 包月 billing record, record-only, reply to an MO, SP pays).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_fields_on_the_wire_equal_the_request() {
    let (server, got) = listener("smg", "smg-secret").await;
    let sim = smg(&server, SimConfig::default()).await;
    let client = Client::new(client_config(&sim)).expect("client");
    let fees = [
        None,
        Some(Fee {
            fee_type: 2,
            fee_value: 10,
            morelateto_mt_flag: 0,
            ..Fee::default()
        }),
        Some(Fee {
            fee_type: 3,
            fee_value: 500,
            report_flag: 3,
            morelateto_mt_flag: 3,
            ..Fee::default()
        }),
        Some(Fee {
            fee_type: 0,
            fee_value: 0,
            given_value: 5,
            agent_flag: 1,
            morelateto_mt_flag: 1,
            ..Fee::default()
        }),
        Some(Fee {
            fee_type: 2,
            fee_value: 99_999,
            charge_number: "000000000000000000000".into(),
            ..Fee::default()
        }),
    ];
    let mut sent = HashMap::new();
    for (i, fee) in fees.iter().enumerate() {
        let mut request =
            SubmitRequest::new("1066123401", &format!("8613200000{i:03}"), &segment("fee"));
        request.service_type = format!("SVC{i}");
        request.fee = fee.clone();
        let outcome = client.submit(&request).await.expect("accepted");
        sent.insert(outcome.message_id, (request, fee.clone().unwrap_or_default()));
    }
    let received = sim.received();
    assert_eq!(received.len(), fees.len());
    for r in &received {
        let (request, fee) = sent.get(&r.message_id).expect("recorded under its id");
        let s = &r.submit;
        assert_eq!(s.user_numbers, [request.user_number.clone()]);
        assert_eq!(s.service_type, request.service_type);
        assert_eq!(s.corp_id, "12345");
        assert_eq!(s.sp_number, "1066123401");
        assert_eq!(
            (s.fee_type, s.fee_value, s.given_value, s.agent_flag),
            (fee.fee_type, fee.fee_value, fee.given_value, fee.agent_flag)
        );
        assert_eq!(s.charge_number, fee.charge_number);
        assert_eq!(s.morelateto_mt_flag, fee.morelateto_mt_flag);
        assert_eq!(s.report_flag, fee.report_flag);
    }
    // ReportFlag 3 (包月 billing record only) gets no Report; the other four do.
    wait_for("four reports", 10, || got.lock().expect("lock").reports.len() >= 4).await;
    let monthly = received
        .iter()
        .find(|r| r.submit.report_flag == 3)
        .expect("monthly MT");
    let c = got.lock().expect("lock");
    assert!(c.reports.iter().all(|r| r.message_id != monthly.message_id));
    assert_eq!(c.reports.len(), 4);
    // A fee the field cannot hold is refused before anything is sent.
    let mut too_big = SubmitRequest::new("1066", "8613200000999", &segment("x"));
    too_big.fee = Some(Fee {
        fee_value: 100_000,
        ..Fee::default()
    });
    let err = client.submit(&too_big).await.expect_err("refused");
    assert!(matches!(err, SubmitError::Invalid(_)), "{err}");
    assert_eq!(sim.stats().submits, fees.len() as u64);
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
            .submit(&SubmitRequest::new("10661234", "8613300000001", p))
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
    assert!(c.mos.iter().all(|m| m.tp_udhi == 1 && m.concat.is_some()));
    assert_eq!(c.mos[0].user_number, "8613300000001");
    assert_eq!(c.mos[0].sp_number, "10661234");
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
            let request = SubmitRequest::new("10661234", &format!("861340000000{i}"), &segment("x"));
            c.submit(&request).await
        }));
    }
    wait_for("five stalled submits", 10, || sim.stats().stalled == 5).await;
    assert_eq!(client.in_flight().await, 5);
    sim.disconnect_all();
    for task in in_flight {
        let err = task.await.expect("join").expect_err("no answer");
        assert!(matches!(err, SubmitError::ConnectionLost), "{err}");
        assert!(err.outcome_unknown());
    }
    sim.set_faults(Faults::default());
    let outcome = client
        .submit(&SubmitRequest::new("10661234", "8613400000009", &segment("again")))
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
    let send = |n: &str| SubmitRequest::new("10661234", n, &segment("hi"));
    client.submit(&send("8613500000001")).await.expect("first");
    assert!(client.is_bound().await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while client.is_bound().await {
        assert!(tokio::time::Instant::now() < deadline, "idle link not closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.submit(&send("8613500000002")).await.expect("second");
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
    sim.send_mo("8613600000001", "10661234", "after").expect("mo");
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
    let mut s = tokio::net::TcpStream::connect(sim.local_addr()).await.expect("tcp");
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
    s.write_all(&to_bytes(&Packet { sequence: seq(1), pdu: bind }).expect("encode"))
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
    s.write_all(&to_bytes(&Packet { sequence: seq(3), pdu: good }).expect("encode"))
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
    sim.send_mo("8613700000001", "10661234", "twice").expect("mo");
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
