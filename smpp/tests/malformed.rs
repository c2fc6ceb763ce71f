//! Raw-socket peers. Malformed and quirky PDUs to the simulator from a raw client and to the
//! client from a raw server (expect generic_nack, the link kept, no panic); and session
//! rules a well-behaved simulator cannot show: the window, submit timeouts, a peer that
//! stops answering enquire_link.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tongdao_smpp::encode::{Concat, encode};
use tongdao_smpp::sim::{Sim, SimConfig};
use tongdao_smpp::{Client, ClientConfig, Inbound, ReceiptState, SubmitError, SubmitRequest};

const GENERIC_NACK: u32 = 0x8000_0000;

fn pdu(command_id: u32, status: u32, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + body.len());
    b.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    b.extend_from_slice(&command_id.to_be_bytes());
    b.extend_from_slice(&status.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(body);
    b
}

/// Reads one PDU: (command_id, status, seq, body). `None` on EOF.
async fn read_pdu(s: &mut TcpStream) -> Option<(u32, u32, u32, Vec<u8>)> {
    let mut len = [0u8; 4];
    timeout(Duration::from_secs(5), s.read_exact(&mut len))
        .await
        .expect("read timed out")
        .ok()?;
    let len = u32::from_be_bytes(len) as usize;
    let mut rest = vec![0u8; len - 4];
    s.read_exact(&mut rest).await.ok()?;
    let w = |i: usize| u32::from_be_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    Some((w(0), w(4), w(8), rest[12..].to_vec()))
}

fn bind_body() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"raw\0pw\0\0");
    b.extend_from_slice(&[0x34, 0, 0, 0]);
    b
}

fn submit_body(text: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 0];
    b.extend_from_slice(b"10661234\0");
    b.extend_from_slice(&[0, 1]);
    b.extend_from_slice(b"8613800138000\0");
    b.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0, 0, 0]);
    b.push(text.len() as u8);
    b.extend_from_slice(text);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_survives_malformed_pdus() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let mut s = TcpStream::connect(sim.local_addr()).await.expect("connect");

    // Before binding, a submit is refused with RINVBNDSTS.
    s.write_all(&pdu(0x04, 0, 1, &submit_body(b"hi")))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((0x8000_0004, 0x04, 1))
    );

    s.write_all(&pdu(0x09, 0, 2, &bind_body()))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((0x8000_0009, 0, 2))
    );

    // Garbage body of a known command: generic_nack ESME_RSYSERR, same sequence.
    s.write_all(&pdu(0x04, 0, 10, &[0xFF; 7]))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((GENERIC_NACK, 0x08, 10))
    );
    // Unknown command id: generic_nack ESME_RINVCMDID.
    s.write_all(&pdu(0x0000_0999, 0, 11, &[1, 2, 3]))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((GENERIC_NACK, 0x03, 11))
    );
    // Vendor TLV and a wrong-size message_state on a submit: still accepted.
    let mut body = submit_body(b"hi");
    body.extend_from_slice(&[0x14, 0x01, 0x00, 0x02, 0xAB, 0xCD]);
    body.extend_from_slice(&[0x04, 0x27, 0x00, 0x03, 1, 2, 3]);
    s.write_all(&pdu(0x04, 0, 12, &body)).await.expect("write");
    let (id, status, seq, resp) = read_pdu(&mut s).await.expect("resp");
    assert_eq!((id, status, seq), (0x8000_0004, 0, 12));
    assert!(resp.len() > 1);
    // The link is kept.
    s.write_all(&pdu(0x15, 0, 13, &[])).await.expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.2)),
        Some((0x8000_0015, 13))
    );
    // An absurd command_length cannot be re-synchronised: that connection is closed…
    s.write_all(&[0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 4])
        .await
        .expect("write");
    assert!(read_pdu(&mut s).await.is_none());
    // …and the simulator keeps serving.
    let mut s2 = TcpStream::connect(sim.local_addr()).await.expect("connect");
    s2.write_all(&pdu(0x09, 0, 1, &bind_body()))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s2).await.map(|p| (p.0, p.1)),
        Some((0x8000_0009, 0))
    );
    let stats = sim.stats();
    assert_eq!((stats.accepted, stats.generic_nacks_sent), (1, 2));
}

fn deliver_body(esm_class: u8, text: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 1, 1];
    b.extend_from_slice(b"8613800138000\0");
    b.extend_from_slice(&[0, 1]);
    b.extend_from_slice(b"10661234\0");
    b.extend_from_slice(&[esm_class, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.push(text.len() as u8);
    b.extend_from_slice(text);
    b.extend_from_slice(tlvs);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_survives_malformed_and_quirky_pdus() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();
    let connect = tokio::spawn(Client::connect(ClientConfig::new(addr, "esme", "pw")));
    let (mut s, _) = listener.accept().await.expect("accept");
    let (id, _, seq, _) = read_pdu(&mut s).await.expect("bind");
    assert_eq!(id, 0x09);
    s.write_all(&pdu(0x8000_0009, 0, seq, b"RAW\0"))
        .await
        .expect("write");
    let (client, mut rx) = connect.await.expect("join").expect("bound");

    // Undecodable deliver_sm: generic_nack ESME_RSYSERR with its sequence.
    s.write_all(&pdu(0x05, 0, 100, &[0x00, 0x01]))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((GENERIC_NACK, 0x08, 100))
    );

    // A receipt with a vendor TLV and receipted_message_id without its NUL.
    let mut tlvs = Vec::new();
    tlvs.extend_from_slice(&[0x14, 0x01, 0x00, 0x03, b'v', b'n', b'd']);
    tlvs.extend_from_slice(&[0x00, 0x1E, 0x00, 0x06]);
    tlvs.extend_from_slice(b"ABC123");
    tlvs.extend_from_slice(&[0x04, 0x27, 0x00, 0x01, 0x02]);
    let text = b"ID:abc123 SUB:001 DLVRD:001 SUBMIT DATE:2401011200 DONE DATE:2401011201 STAT:DELIVRD ERR:000";
    s.write_all(&pdu(0x05, 0, 101, &deliver_body(0x04, text, &tlvs)))
        .await
        .expect("write");
    match timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Inbound::Receipt(r, ack))) => {
            assert_eq!(r.message_id, "ABC123");
            assert_eq!(r.state, ReceiptState::Delivered);
            assert_eq!(r.done_date.as_deref(), Some("2401011201"));
            ack.ack();
        }
        other => panic!("expected receipt, got {other:?}"),
    }
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((0x8000_0005, 0, 101))
    );

    // Unknown command: generic_nack ESME_RINVCMDID.
    s.write_all(&pdu(0x0000_0999, 0, 102, &[9, 9]))
        .await
        .expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.1, p.2)),
        Some((GENERIC_NACK, 0x03, 102))
    );
    // The link is kept: enquire_link answered.
    s.write_all(&pdu(0x15, 0, 103, &[])).await.expect("write");
    assert_eq!(
        read_pdu(&mut s).await.map(|p| (p.0, p.2)),
        Some((0x8000_0015, 103))
    );

    // A submit answered with a message_id lacking its NUL still succeeds.
    let seg = encode("hello", Concat::Udh8(0)).expect("encode").remove(0);
    let req = SubmitRequest::new("10661234", "8613800138000", &seg);
    let c2 = client.clone();
    let submit = tokio::spawn(async move { c2.submit(&req).await });
    let (id, _, seq, _) = read_pdu(&mut s).await.expect("submit_sm");
    assert_eq!(id, 0x04);
    s.write_all(&pdu(0x8000_0004, 0, seq, b"XYZ789"))
        .await
        .expect("write");
    let outcome = submit.await.expect("join").expect("submit");
    assert_eq!(outcome.message_id, "XYZ789");

    // A submit in flight when the peer sends an absurd length: unknown outcome, Closed.
    let seg = encode("again", Concat::Udh8(0)).expect("encode").remove(0);
    let req = SubmitRequest::new("10661234", "8613800138000", &seg);
    let c3 = client.clone();
    let submit = tokio::spawn(async move { c3.submit(&req).await });
    let _ = read_pdu(&mut s).await.expect("submit_sm");
    s.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4])
        .await
        .expect("write");
    let err = submit.await.expect("join").expect_err("link dropped");
    assert!(matches!(err, SubmitError::ConnectionLost), "{err}");
    assert!(err.outcome_unknown());
    match timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Inbound::Closed(reason))) => assert!(reason.contains("command_length")),
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Accepts one client and answers its bind; returns the raw server side.
async fn raw_server(
    cfg: impl FnOnce(String) -> ClientConfig,
) -> (TcpStream, Client, tokio::sync::mpsc::Receiver<Inbound>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("listen");
    let addr = listener.local_addr().expect("addr").to_string();
    let connect = tokio::spawn(Client::connect(cfg(addr)));
    let (mut s, _) = listener.accept().await.expect("accept");
    let (_, _, seq, _) = read_pdu(&mut s).await.expect("bind");
    s.write_all(&pdu(0x8000_0009, 0, seq, b"RAW\0"))
        .await
        .expect("write");
    let (client, rx) = connect.await.expect("join").expect("bound");
    (s, client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_limits_outstanding_and_silence_times_out() {
    let (mut s, client, _rx) = raw_server(|addr| {
        let mut c = ClientConfig::new(addr, "esme", "pw");
        c.window = 5;
        c.response_timeout = Duration::from_millis(300);
        c
    })
    .await;
    let seg = encode("hi", Concat::Udh8(0)).expect("encode").remove(0);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = client.clone();
        let req = SubmitRequest::new("10661234", "8613800138000", &seg);
        tasks.spawn(async move { client.submit(&req).await });
    }
    // Exactly `window` submits arrive while none is answered.
    for _ in 0..5 {
        assert_eq!(read_pdu(&mut s).await.map(|p| p.0), Some(0x04));
    }
    let mut one = [0u8; 1];
    assert!(
        timeout(Duration::from_millis(150), s.read(&mut one))
            .await
            .is_err(),
        "a sixth submit was sent beyond the window"
    );
    // Unanswered submits time out (outcome unknown) and free the window for the next ones.
    let mut timeouts = 0;
    let drain = async {
        while let Some(res) = tasks.join_next().await {
            match res.expect("join") {
                Err(SubmitError::Timeout) => timeouts += 1,
                other => panic!("expected timeout, got {other:?}"),
            }
        }
    };
    let reader = async {
        let mut n = 5;
        while n < 12 {
            if read_pdu(&mut s).await.is_some_and(|p| p.0 == 0x04) {
                n += 1;
            }
        }
    };
    tokio::join!(drain, reader);
    assert_eq!(timeouts, 12);
    assert!(SubmitError::Timeout.outcome_unknown());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_enquire_link_closes_the_link() {
    let (mut s, client, mut rx) = raw_server(|addr| {
        let mut c = ClientConfig::new(addr, "esme", "pw");
        c.enquire_link_interval = Duration::from_millis(100);
        c.response_timeout = Duration::from_millis(200);
        c
    })
    .await;
    // The first enquire_link is answered, the second is not.
    let (id, _, seq, _) = read_pdu(&mut s).await.expect("enquire_link");
    assert_eq!(id, 0x15);
    s.write_all(&pdu(0x8000_0015, 0, seq, &[]))
        .await
        .expect("write");
    assert_eq!(read_pdu(&mut s).await.map(|p| p.0), Some(0x15));
    match timeout(Duration::from_secs(5), rx.recv()).await {
        Ok(Some(Inbound::Closed(reason))) => assert!(reason.contains("enquire_link"), "{reason}"),
        other => panic!("expected Closed, got {other:?}"),
    }
    assert!(client.is_closed());
}
