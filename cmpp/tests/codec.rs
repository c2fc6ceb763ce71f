//! Codec properties (issue 16, R-1.2/R-1.3): every packet of both versions survives an
//! encode/decode round trip exactly, and decoding never panics on arbitrary bytes. The
//! fuzz targets under `cmpp/fuzz` run the same decoders for longer; their checked-in
//! corpus is fed through here so CI exercises it on stable.

use std::path::Path;

use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;
use tongdao_cmpp::codec::{CmppCodec, Frame};
use tongdao_cmpp::pdu::{
    Connect, ConnectResp, Deliver, DeliverResp, Packet, Pdu, Report, Submit, SubmitResp, Version,
};

fn version() -> impl Strategy<Value = Version> {
    prop_oneof![Just(Version::V20), Just(Version::V30)]
}

/// Text of at most `max` octets without NUL (an `Octet String` ends at its first zero).
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(1u8..=0x7F, 0..=max)
        .prop_map(|b| String::from_utf8(b).unwrap_or_default())
}

fn content() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=255)
}

fn submit(v: Version) -> impl Strategy<Value = Submit> {
    let tid = v.terminal_id_width();
    let v3 = v == Version::V30;
    (
        (
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            text(10),
            any::<u8>(),
            text(tid),
        ),
        (
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            text(6),
            text(2),
            text(6),
            text(17),
        ),
        (
            text(17),
            text(21),
            proptest::collection::vec(text(tid), 1..=99),
            any::<u8>(),
            content(),
            text(20),
            text(8),
        ),
    )
        .prop_map(move |(a, b, c)| Submit {
            msg_id: a.0,
            pk_total: a.1,
            pk_number: a.2,
            registered_delivery: a.3,
            msg_level: a.4,
            service_id: a.5,
            fee_user_type: a.6,
            fee_terminal_id: a.7,
            fee_terminal_type: if v3 { b.0 } else { 0 },
            tp_pid: b.1,
            tp_udhi: b.2,
            msg_fmt: b.3,
            msg_src: b.4,
            fee_type: b.5,
            fee_code: b.6,
            valid_time: b.7,
            at_time: c.0,
            src_id: c.1,
            dest_terminal_ids: c.2,
            dest_terminal_type: if v3 { c.3 } else { 0 },
            msg_content: c.4,
            link_id: if v3 { c.5 } else { String::new() },
            reserve: if v3 { String::new() } else { c.6 },
        })
}

fn deliver(v: Version) -> impl Strategy<Value = Deliver> {
    let tid = v.terminal_id_width();
    let v3 = v == Version::V30;
    (
        (
            any::<u64>(),
            text(21),
            text(10),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            text(tid),
            any::<u8>(),
            any::<u8>(),
            content(),
            text(20),
            text(8),
        ),
    )
        .prop_map(move |(a, b)| Deliver {
            msg_id: a.0,
            dest_id: a.1,
            service_id: a.2,
            tp_pid: a.3,
            tp_udhi: a.4,
            msg_fmt: a.5,
            src_terminal_id: b.0,
            src_terminal_type: if v3 { b.1 } else { 0 },
            registered_delivery: b.2,
            msg_content: b.3,
            link_id: if v3 { b.4 } else { String::new() },
            reserve: if v3 { String::new() } else { b.5 },
        })
}

fn result(v: Version) -> impl Strategy<Value = u32> {
    match v {
        Version::V30 => any::<u32>().boxed(),
        Version::V20 => (0u32..=255).boxed(),
    }
}

fn pdu(v: Version) -> impl Strategy<Value = Pdu> {
    prop_oneof![
        (text(6), any::<[u8; 16]>(), any::<u8>(), any::<u32>()).prop_map(|(s, a, ver, t)| {
            Pdu::Connect(Connect {
                source_addr: s,
                authenticator_source: a,
                version: ver,
                timestamp: t,
            })
        }),
        (result(v), any::<[u8; 16]>(), any::<u8>()).prop_map(|(status, a, ver)| {
            Pdu::ConnectResp(ConnectResp {
                status,
                authenticator_ismg: a,
                version: ver,
            })
        }),
        Just(Pdu::Terminate),
        Just(Pdu::TerminateResp),
        submit(v).prop_map(|s| Pdu::Submit(Box::new(s))),
        (any::<u64>(), result(v))
            .prop_map(|(msg_id, result)| Pdu::SubmitResp(SubmitResp { msg_id, result })),
        deliver(v).prop_map(|d| Pdu::Deliver(Box::new(d))),
        (any::<u64>(), result(v))
            .prop_map(|(msg_id, result)| Pdu::DeliverResp(DeliverResp { msg_id, result })),
        Just(Pdu::ActiveTest),
        any::<u8>().prop_map(Pdu::ActiveTestResp),
    ]
}

fn versioned_packet() -> impl Strategy<Value = (Version, Packet)> {
    version().prop_flat_map(|v| {
        (Just(v), any::<u32>(), pdu(v))
            .prop_map(|(v, sequence_id, pdu)| (v, Packet { sequence_id, pdu }))
    })
}

fn report(v: Version) -> impl Strategy<Value = Report> {
    (
        any::<u64>(),
        text(7),
        text(10),
        text(10),
        text(v.terminal_id_width()),
        any::<u32>(),
    )
        .prop_map(
            |(msg_id, stat, submit_time, done_time, dest_terminal_id, smsc_sequence)| Report {
                msg_id,
                stat,
                submit_time,
                done_time,
                dest_terminal_id,
                smsc_sequence,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Every packet of either version decodes to itself, through the framing codec too.
    #[test]
    fn round_trip_every_packet((v, packet) in versioned_packet()) {
        let bytes = packet.encode(v).expect("generated fields fit");
        prop_assert_eq!(Packet::decode(&bytes, v).expect("decodes"), packet.clone());
        let mut codec = CmppCodec::new(v);
        let mut buf = BytesMut::from(&bytes[..]);
        match codec.decode(&mut buf) {
            Ok(Some(Frame::Packet(p))) => prop_assert_eq!(p, packet),
            other => prop_assert!(false, "framing: {:?}", other),
        }
        prop_assert!(buf.is_empty());
    }

    /// Status reports round-trip in both versions' layouts.
    #[test]
    fn round_trip_reports(r in version().prop_flat_map(|v| (Just(v), report(v)))) {
        let (v, report) = r;
        let bytes = report.encode(v).expect("fits");
        prop_assert_eq!(bytes.len(), Report::encoded_len(v));
        prop_assert_eq!(Report::decode(&bytes, v).expect("decodes"), report);
    }

    /// Arbitrary bytes never panic the decoders; what decodes re-encodes to a packet
    /// that decodes to the same value.
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), v in version()) {
        if let Ok(p) = Packet::decode(&bytes, v)
            && let Ok(again) = p.encode(v)
        {
            prop_assert_eq!(Packet::decode(&again, v).expect("re-decodes"), p);
        }
        let _ = Report::decode(&bytes, v);
        let mut codec = CmppCodec::new(v);
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }

    /// Headers with a plausible length and a real command id but a random body: the
    /// decoder must not panic and must keep the header.
    #[test]
    fn random_bodies_keep_their_header(
        id in prop_oneof![Just(1u32), Just(0x8000_0001), Just(4), Just(0x8000_0004), Just(5), Just(0x8000_0005), Just(8), Just(0x8000_0008)],
        seq in any::<u32>(),
        body in proptest::collection::vec(any::<u8>(), 0..400),
        v in version(),
    ) {
        let mut bytes = Vec::with_capacity(12 + body.len());
        bytes.extend_from_slice(&((12 + body.len()) as u32).to_be_bytes());
        bytes.extend_from_slice(&id.to_be_bytes());
        bytes.extend_from_slice(&seq.to_be_bytes());
        bytes.extend_from_slice(&body);
        if let Err(e) = Packet::decode(&bytes, v) {
            prop_assert_eq!((e.command_id, e.sequence_id), (id, seq));
        }
    }
}

/// The fuzz targets' checked-in corpus (`cmpp/fuzz/corpus/<target>/*`) through the same
/// entry points the targets call, on stable.
#[test]
fn fuzz_corpus_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut files = 0;
    for target in ["decode_packet", "decode_report", "codec_stream"] {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            match target {
                "decode_packet" => tongdao_cmpp::fuzzing::decode_packet(&data),
                "decode_report" => tongdao_cmpp::fuzzing::decode_report(&data),
                _ => tongdao_cmpp::fuzzing::codec_stream(&data),
            }
            files += 1;
        }
    }
    assert!(files >= 10, "only {files} corpus files");
}
