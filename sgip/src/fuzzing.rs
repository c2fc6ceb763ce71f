//! The properties the fuzz targets (`sgip/fuzz`, cargo-fuzz/libFuzzer) check, shared with
//! the stable test that replays the checked-in corpus (`sgip/tests/fuzz_corpus.rs`).
//! Each function panics when a property fails, which is how a fuzzer reports it.

use bytes::BytesMut;

use crate::codec::{self, Frame, Packet, SequenceNumber, decode_body, decode_from, to_bytes};

/// One decoder's property for `command_id`: decoding `data` as its body returns
/// without panicking; a body that decodes and re-encodes decodes again to the same
/// packet.
///
/// # Panics
/// When the round trip changes the packet (a codec bug).
pub fn body(command_id: u32, data: &[u8]) {
    let Ok(pdu) = decode_body(command_id, data) else {
        return;
    };
    let packet = Packet {
        sequence: SequenceNumber::default(),
        pdu,
    };
    // Values the decoder accepts but the encoder refuses (a FeeValue of 6 digits above
    // 99999) are fine: the SP answers them, it never sends them.
    let Ok(wire) = to_bytes(&packet) else {
        return;
    };
    let mut buf = BytesMut::from(&wire[..]);
    match decode_from(&mut buf) {
        Ok(Some(Frame::Packet(again))) => assert_eq!(*again, packet, "round trip changed it"),
        other => panic!("re-encoded packet did not decode: {other:?}"),
    }
}

/// The framing's property: any byte stream yields frames until it needs more bytes or
/// hits a bad Message Length, never panics, and each frame consumes exactly its length.
///
/// # Panics
/// When a frame consumes more or fewer bytes than its Message Length.
pub fn stream(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        let declared =
            (before >= 4).then(|| u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize);
        match decode_from(&mut buf) {
            Ok(Some(_)) => {
                assert_eq!(
                    Some(before - buf.len()),
                    declared,
                    "a frame consumed other than its Message Length"
                );
            }
            Ok(None) | Err(codec::CodecError::BadLength(_)) => return,
            Err(e) => panic!("framing error other than a bad length: {e}"),
        }
    }
}

/// The response decoders' property: the first octet picks the response (Bind_Resp,
/// Unbind_Resp, Submit_Resp, Deliver_Resp, Report_Resp), the rest is its body; as
/// [`body`].
///
/// # Panics
/// As [`body`].
pub fn resp(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let id = match pick % 5 {
        0 => codec::command::BIND_RESP,
        1 => codec::command::UNBIND_RESP,
        2 => codec::command::SUBMIT_RESP,
        3 => codec::command::DELIVER_RESP,
        _ => codec::command::REPORT_RESP,
    };
    body(id, rest);
}
