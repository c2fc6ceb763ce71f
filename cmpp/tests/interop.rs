//! An implementation nobody on the team wrote talking to ours (issue 16, Tests): the
//! crates.io `cmppprotocol` CMPP 2.0 client logs in to our ISMG simulator (checking our
//! `AuthenticatorISMG`, as it does by default), submits a short and a long Chinese text
//! with fee fields, and receives our status reports.

use std::time::Duration;

use cmppprotocol::{
    CMPP_VERSION_20, CmppConfig, CmppConnection, CmppProtocolParams, Event, SubmitOptions,
};
use tongdao_cmpp::pdu::Version;
use tongdao_cmpp::sim::{Sim, SimConfig};

/// How often a wait looks again (tests wait for states, never for time).
const POLL: Duration = Duration::from_millis(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmppprotocol_client_logs_in_submits_and_gets_reports() {
    let sim = Sim::start(SimConfig {
        credentials: Some(("901234".into(), "s3cret".into())),
        report_delay: Duration::from_millis(10),
        ..SimConfig::default()
    })
    .await
    .expect("sim");
    let config = CmppConfig {
        host: "127.0.0.1".into(),
        port: i32::from(sim.local_addr().port()),
        account: "901234".into(),
        password: "s3cret".into(),
        version: CMPP_VERSION_20,
        protocol_params: CmppProtocolParams::default(),
    };
    let conn = CmppConnection::connect(config)
        .await
        .expect("their login to our ISMG");
    let mut events = conn.take_events().await.expect("events");

    let mut opts = SubmitOptions::new("MWEATHER", "901234", "10661234", "13800138000");
    opts.fee_type = "02".into();
    opts.fee_code = "000010".into();
    opts.fee_user_type = 0;
    let long =
        "【天气】明天北京晴转多云，气温十二到二十五度，东南风三到四级，空气质量良。".repeat(3);
    let mut seqs = conn
        .submit(&opts, "Hello CMPP", None)
        .await
        .expect("submit");
    seqs.extend(conn.submit(&opts, &long, None).await.expect("submit long"));
    assert!(seqs.len() >= 3);

    let mut accepted = Vec::new();
    let mut reports = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while accepted.len() < seqs.len() || reports.len() < seqs.len() {
        let ev = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("events before the deadline")
            .expect("channel open");
        match ev {
            Event::SubmitResp { result, msg_id, .. } => {
                assert_eq!(result, 0);
                accepted.push(u64::from_be_bytes(msg_id));
            }
            Event::Deliver(d) => {
                let r = d.report().expect("a status report");
                assert_eq!(r.stat, "DELIVRD");
                assert_eq!(r.dest_terminal_id, "13800138000");
                reports.push(u64::from_be_bytes(r.msg_id));
            }
            Event::SubmitTimeout { sequence_id } => panic!("timeout on {sequence_id}"),
            Event::Disconnected(e) => panic!("disconnected: {e}"),
        }
    }
    accepted.sort_unstable();
    reports.sort_unstable();
    assert_eq!(
        accepted, reports,
        "each report names a Msg_Id our ISMG gave"
    );

    // What our ISMG recorded from their packets: 2.0 layout, the fee fields as set.
    let received = sim.received();
    assert_eq!(received.len(), seqs.len());
    for r in &received {
        assert_eq!(r.version, Version::V20);
        let s = &r.submit;
        assert_eq!(
            (
                s.service_id.as_str(),
                s.fee_type.as_str(),
                s.fee_code.as_str(),
                s.msg_src.as_str()
            ),
            ("MWEATHER", "02", "000010", "901234")
        );
        assert_eq!(s.dest_terminal_ids, vec!["13800138000".to_string()]);
    }
    let texts: Vec<String> = sim.messages().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, vec!["Hello CMPP".to_string(), long]);
    conn.close().await;
    let closed = tokio::time::Instant::now() + Duration::from_secs(10);
    while sim.stats().terminates < 1 {
        assert!(tokio::time::Instant::now() < closed, "no CMPP_TERMINATE");
        tokio::time::sleep(POLL).await;
    }
}
