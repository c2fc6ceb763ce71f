//! SGIP 1.2 codec properties: every packet survives encode → frame → decode unchanged,
//! and no input makes the decoder panic (issue 16 tests: codec round-trip property tests).

use bytes::{BufMut, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use tongdao_sgip::codec::{
    Bind, Deliver, Frame, Packet, Pdu, Report, Resp, SequenceNumber, Submit, command, decode_body,
    decode_from, to_bytes,
};

fn ascii(max: usize) -> impl Strategy<Value = String> {
    vec(0x20u8..0x7F, 0..=max).prop_map(|b| String::from_utf8(b).expect("ascii"))
}

fn sequence() -> impl Strategy<Value = SequenceNumber> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(node_id, timestamp, sequence)| {
        SequenceNumber {
            node_id,
            timestamp,
            sequence,
        }
    })
}

fn resp() -> impl Strategy<Value = Resp> {
    (any::<u8>(), any::<[u8; 8]>()).prop_map(|(result, reserve)| Resp { result, reserve })
}

fn submit() -> impl Strategy<Value = Submit> {
    (
        (
            ascii(21),
            ascii(21),
            vec(ascii(21), 1..=100),
            ascii(5),
            ascii(10),
        ),
        (
            any::<u8>(),
            0u32..=99_999,
            0u32..=99_999,
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (ascii(16), ascii(16), any::<[u8; 6]>()),
        (vec(any::<u8>(), 0..=160), any::<[u8; 8]>()),
    )
        .prop_map(
            |(
                (sp_number, charge_number, user_numbers, corp_id, service_type),
                (fee_type, fee_value, given_value, agent_flag, morelateto_mt_flag, priority),
                (expire_time, schedule_time, flags),
                (message_content, reserve),
            )| Submit {
                sp_number,
                charge_number,
                user_numbers,
                corp_id,
                service_type,
                fee_type,
                fee_value,
                given_value,
                agent_flag,
                morelateto_mt_flag,
                priority,
                expire_time,
                schedule_time,
                report_flag: flags[0],
                tp_pid: flags[1],
                tp_udhi: flags[2],
                message_coding: flags[3],
                message_type: flags[4],
                message_content,
                reserve,
            },
        )
}

fn pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![
        (any::<u8>(), ascii(16), ascii(16), any::<[u8; 8]>()).prop_map(
            |(login_type, login_name, login_password, reserve)| Pdu::Bind(Bind {
                login_type,
                login_name,
                login_password,
                reserve,
            })
        ),
        resp().prop_map(Pdu::BindResp),
        Just(Pdu::Unbind),
        Just(Pdu::UnbindResp),
        submit().prop_map(|s| Pdu::Submit(Box::new(s))),
        resp().prop_map(Pdu::SubmitResp),
        (
            ascii(21),
            ascii(21),
            any::<[u8; 3]>(),
            vec(any::<u8>(), 0..=160),
            any::<[u8; 8]>()
        )
            .prop_map(|(user_number, sp_number, f, message_content, reserve)| {
                Pdu::Deliver(Box::new(Deliver {
                    user_number,
                    sp_number,
                    tp_pid: f[0],
                    tp_udhi: f[1],
                    message_coding: f[2],
                    message_content,
                    reserve,
                }))
            }),
        resp().prop_map(Pdu::DeliverResp),
        (sequence(), any::<[u8; 3]>(), ascii(21), any::<[u8; 8]>()).prop_map(
            |(submit_sequence, f, user_number, reserve)| Pdu::Report(Report {
                submit_sequence,
                report_type: f[0],
                user_number,
                state: f[1],
                error_code: f[2],
                reserve,
            })
        ),
        resp().prop_map(Pdu::ReportResp),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every PDU round-trips through the framing, also when frames arrive back to back
    /// and split at an arbitrary point.
    #[test]
    fn every_pdu_round_trips(a in (sequence(), pdu()), b in (sequence(), pdu()), cut in 0usize..4096) {
        let first = Packet { sequence: a.0, pdu: a.1 };
        let second = Packet { sequence: b.0, pdu: b.1 };
        let mut wire = to_bytes(&first).expect("encode");
        let len = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]) as usize;
        prop_assert_eq!(len, wire.len());
        wire.extend_from_slice(&to_bytes(&second).expect("encode"));
        let cut = cut.min(wire.len());
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut got = Vec::new();
        while let Some(frame) = decode_from(&mut buf).expect("framing") {
            got.push(frame);
        }
        buf.extend_from_slice(&wire[cut..]);
        while let Some(frame) = decode_from(&mut buf).expect("framing") {
            got.push(frame);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, vec![Frame::Packet(Box::new(first)), Frame::Packet(Box::new(second))]);
    }

    /// Arbitrary bodies under every Command ID: decoding returns, never panics.
    #[test]
    fn body_decoding_never_panics(id in prop_oneof![
        Just(command::BIND), Just(command::BIND_RESP), Just(command::SUBMIT),
        Just(command::SUBMIT_RESP), Just(command::DELIVER), Just(command::DELIVER_RESP),
        Just(command::REPORT), Just(command::REPORT_RESP), any::<u32>()
    ], body in vec(any::<u8>(), 0..600)) {
        let _ = decode_body(id, &body);
    }

    /// Arbitrary byte streams: framing yields frames or a length error, never panics,
    /// and a frame's header always comes back intact.
    #[test]
    fn framing_never_panics(bytes in vec(any::<u8>(), 0..2048)) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decode_from(&mut buf) {
            if let Frame::Undecodable(u) = frame {
                prop_assert!(u.error.to_string().len() > 1);
            }
        }
    }

    /// A valid header with a truncated or padded body of a known command: the frame is
    /// cut by its length, so the next frame still decodes.
    #[test]
    fn a_bad_body_never_desynchronises_the_stream(id in prop_oneof![
        Just(command::SUBMIT), Just(command::DELIVER), Just(command::REPORT), Just(command::BIND)
    ], body in vec(any::<u8>(), 0..200), next in (sequence(), pdu())) {
        let mut buf = BytesMut::new();
        buf.put_u32(20 + body.len() as u32);
        buf.put_u32(id);
        buf.put_bytes(1, 12);
        buf.put_slice(&body);
        let good = Packet { sequence: next.0, pdu: next.1 };
        buf.extend_from_slice(&to_bytes(&good).expect("encode"));
        let _first = decode_from(&mut buf).expect("framing").expect("a frame");
        let second = decode_from(&mut buf).expect("framing").expect("a frame");
        prop_assert_eq!(second, Frame::Packet(Box::new(good)));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text splits into Submits of at most 160 (ASCII) / 140 octets, TP_udhi set
    /// exactly when there are parts, and reassembles to itself in any part order.
    #[test]
    fn text_segments_fit_and_reassemble(text in "\\PC{1,400}", reverse in any::<bool>()) {
        let parts = tongdao_sgip::text::encode(&text, 7).expect("encode");
        let limit = if parts[0].message_coding == 0 { 160 } else { 140 };
        prop_assert!(parts.iter().all(|p| p.content.len() <= limit));
        prop_assert!(parts.iter().all(|p| (p.tp_udhi == 1) == (parts.len() > 1)));
        let mut reassembler = tongdao_link::encode::Reassembler::new();
        let mut done = None;
        let ordered: Vec<_> = if reverse { parts.iter().rev().collect() } else { parts.iter().collect() };
        for p in ordered {
            done = tongdao_sgip::text::reassemble(
                &mut reassembler, "8613000000000", p.tp_udhi, p.message_coding, &p.content);
        }
        prop_assert_eq!(done, Some(text));
    }
}
