//! Entry points of the fuzz targets (`smpp/fuzz`, cargo-fuzz/libFuzzer), public so the
//! stable test `smpp/tests/fuzz_corpus.rs` replays the checked-in corpus through exactly
//! what the targets run. Each function panics only when a property breaks: a panic
//! inside the code under test, or one of the properties named in its docs.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::Decoder;

use crate::client::{Event, inbound_event};
use crate::codec::{CodecError, Frame, HEADER_LENGTH, SmppCodec, encode_command};
use crate::encode::{ConcatInfo, Reassembler, decode};
use crate::receipt::{ReceiptText, build_receipt, parse_receipt_text};

/// One PDU as a peer (an SMSC) sends it: `data` is the frame after `command_length`
/// (id, status, sequence, body); the length is written for it, so every input is a
/// frame the codec cuts. Properties:
/// - the codec yields exactly one frame and consumes every byte;
/// - a decoded command keeps the header's id, status and sequence number;
/// - a decoded `deliver_sm`, `data_sm` or `submit_sm_resp` re-encodes to octets that decode to the same header and
///   re-encode to the same octets (the sanitiser repairs quirks once: what it made is
///   not repaired again);
/// - what the session makes of it (receipt or MO) holds no more characters than the
///   octets it came in.
pub fn decode_pdu(data: &[u8]) {
    if data.len() < HEADER_LENGTH - 4 {
        return;
    }
    let mut buf = BytesMut::with_capacity(data.len() + 4);
    buf.put_u32(u32::try_from(data.len() + 4).unwrap_or(u32::MAX));
    buf.extend_from_slice(data);
    if buf.len() > crate::codec::MAX_COMMAND_LENGTH {
        return;
    }
    let header = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let (id, status, sequence) = (header(4), header(8), header(12));
    let mut codec = SmppCodec::new();
    let frame = match codec.decode(&mut buf) {
        Ok(Some(frame)) => frame,
        other => panic!("a whole frame of a valid length did not decode: {other:?}"),
    };
    assert!(buf.is_empty(), "the frame left {} bytes", buf.len());
    let command = match frame {
        Frame::Undecodable(u) => {
            assert_eq!(
                (u.command_id, u.command_status, u.sequence_number),
                (id, status, sequence),
                "an undecodable frame lost its header"
            );
            return;
        }
        Frame::Command(command) => command,
    };
    assert_eq!(command.sequence_number, sequence, "sequence number changed");
    assert_eq!(u32::from(command.id()), id, "command id changed");
    assert_eq!(u32::from(command.status), status, "command status changed");
    // The round trip is asked of the PDUs whose content the session reads (receipts,
    // MOs, submit answers): what rusmpp makes of the others' bodies (a bind answer's
    // TLVs) is never used.
    let read = matches!(id, 0x0000_0005 | 0x0000_0103 | 0x8000_0004);
    if read {
        round_trip(&command);
    }
    match inbound_event(&command) {
        Some(Event::Mo(mo)) => {
            assert!(
                mo.text.chars().count() <= mo.short_message.len(),
                "an MO decoded to more characters than its octets"
            );
        }
        Some(Event::Receipt(_)) | None => {}
    }
}

/// Re-encoding `command` gives octets that decode to the same header and re-encode to
/// the same octets.
fn round_trip(command: &rusmpp::Command) {
    let mut codec = SmppCodec::new();
    // rusmpp keeps a body-less PDU as `None` or as its empty variant depending on the
    // status; both are the same octets, so the round trip compares what goes on the wire.
    let wire = encode_command(command);
    let mut again = wire.clone();
    match codec.decode(&mut again) {
        Ok(Some(Frame::Command(twice))) => {
            assert_eq!(
                (twice.id(), twice.status, twice.sequence_number),
                (command.id(), command.status, command.sequence_number),
                "re-encoding changed the header"
            );
            assert_eq!(
                encode_command(&twice),
                wire,
                "re-encoding changed the command: {command:?} became {twice:?}"
            );
        }
        other => panic!("a re-encoded command did not decode: {other:?}"),
    }
}

/// The framing codec over a byte stream delivered in chunks of the first octet's size
/// (at least 1): each frame consumes exactly its `command_length`, and the stream ends
/// waiting for more bytes or at a fatal length error, never a panic or a loop.
pub fn codec_stream(data: &[u8]) {
    let (chunk, stream) = match data.split_first() {
        Some((c, s)) => (usize::from(*c).max(1), s),
        None => return,
    };
    let mut codec = SmppCodec::new();
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            let declared = (before >= 4)
                .then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize);
            match codec.decode(&mut buf) {
                Ok(Some(_)) => assert_eq!(
                    Some(before - buf.len()),
                    declared,
                    "a frame consumed other than its command_length"
                ),
                Ok(None) => {
                    assert!(
                        declared.is_none_or(|d| d > before),
                        "a complete frame was left waiting"
                    );
                    break;
                }
                Err(CodecError::BadLength(_)) => return,
                Err(e) => panic!("framing error other than a bad length: {e}"),
            }
        }
    }
}

/// Receipt text as an SMSC writes it (`id:… stat:… err:… text:…`), lossy UTF-8.
/// Properties:
/// - every field parsed is non-empty, trimmed, and a piece of the text;
/// - the parse is `Some` exactly when it found `id` or `stat`;
/// - the fields written back in the canonical order parse to the same fields;
/// - [`build_receipt`] takes the id and error code the text carries.
pub fn receipt_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Some(parsed) = parse_receipt_text(&text) else {
        return;
    };
    assert!(parsed.id.is_some() || parsed.stat.is_some());
    for value in fields(&parsed).into_iter().flatten() {
        assert!(!value.is_empty(), "an empty field was kept");
        assert_eq!(value.trim(), value, "a field was not trimmed");
        assert!(text.contains(value), "a field is not in the text");
    }
    let canonical = render(&parsed);
    assert_eq!(
        parse_receipt_text(&canonical).as_ref(),
        Some(&parsed),
        "the canonical text {canonical:?} parses differently"
    );
    let receipt = build_receipt(&text, None, None, None, "src", "dst");
    assert_eq!(
        receipt.as_ref().map(|r| r.message_id.as_str()),
        parsed.id.as_deref(),
        "the receipt's id is not the text's"
    );
    if let Some(r) = receipt {
        assert_eq!(
            r.error_code, parsed.err,
            "the receipt's error is not the text's"
        );
    }
}

fn fields(p: &ReceiptText) -> [&Option<String>; 8] {
    [
        &p.id,
        &p.sub,
        &p.dlvrd,
        &p.submit_date,
        &p.done_date,
        &p.stat,
        &p.err,
        &p.text,
    ]
}

/// The fields of `p` as the SMPP 3.4 Appendix B text, in its order.
fn render(p: &ReceiptText) -> String {
    let keys = [
        "id",
        "sub",
        "dlvrd",
        "submit date",
        "done date",
        "stat",
        "err",
        "text",
    ];
    keys.iter()
        .zip(fields(p))
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}:{v}")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Long-MO re-assembly in memory ([`Reassembler`]): the input is a run of parts, each
/// `[source, data_coding, esm_class, sar_ref, sar_total, sar_seq, length, octets…]`
/// (a `sar_total` of 0 means no SAR TLVs). Properties: a complete message holds no more
/// characters than the octets of the parts pushed since the last message came out, and
/// nothing comes out of parts that were all held back.
pub fn reassembly(data: &[u8]) {
    let mut r = Reassembler::new();
    let mut rest = data;
    let mut held_octets = 0usize;
    while let [source, dc, esm, reference, total, seq, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (octets, after) = tail.split_at(n);
        rest = after;
        let source = ["8613800138000", "8613900139000"][usize::from(*source % 2)];
        let sar = (*total > 0).then_some(ConcatInfo {
            reference: u16::from(*reference),
            total: *total,
            seq: *seq,
        });
        let (_, payload_text) = decode(*dc, *esm, octets);
        assert!(payload_text.chars().count() <= octets.len());
        held_octets += octets.len();
        if let Some(text) = r.push(source, *dc, *esm, octets, sar) {
            assert!(
                text.chars().count() <= held_octets,
                "a message of {} characters from {held_octets} octets",
                text.chars().count()
            );
            if r.pending() == 0 {
                held_octets = 0;
            }
        }
    }
}
