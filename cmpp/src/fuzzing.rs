//! Entry points of the fuzz targets (`cmpp/fuzz`), public so the stable corpus test
//! runs exactly what the targets run. Each panics only when a decoder breaks a
//! property: a panic inside a decoder, or a decoded packet that does not survive
//! re-encoding.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::codec::CmppCodec;
use crate::pdu::{Packet, Report, Version};

/// The first octet chooses the version (even: 3.0, odd: 2.0), the rest is the input.
fn split(data: &[u8]) -> (Version, &[u8]) {
    match data.split_first() {
        Some((v, rest)) if v % 2 == 1 => (Version::V20, rest),
        Some((_, rest)) => (Version::V30, rest),
        None => (Version::V30, data),
    }
}

/// [`Packet::decode`] on one frame; whatever decodes must re-encode and decode to
/// itself.
pub fn decode_packet(data: &[u8]) {
    let (v, bytes) = split(data);
    if let Ok(p) = Packet::decode(bytes, v)
        && let Ok(again) = p.encode(v)
    {
        assert_eq!(
            Packet::decode(&again, v).ok(),
            Some(p),
            "re-encoding changed a packet"
        );
    }
}

/// [`Report::decode`] on a `Msg_Content`; whatever decodes must re-encode to a report
/// that decodes to itself.
pub fn decode_report(data: &[u8]) {
    let (v, bytes) = split(data);
    if let Ok(r) = Report::decode(bytes, v)
        && let Ok(again) = r.encode(v)
    {
        assert_eq!(
            Report::decode(&again, v).ok(),
            Some(r),
            "re-encoding changed a report"
        );
    }
}

/// The framing codec over a byte stream delivered in chunks of the second octet's size:
/// it must end in `Ok(None)` (waiting) or a fatal length error, never panic or loop.
pub fn codec_stream(data: &[u8]) {
    let (v, rest) = split(data);
    let (chunk, stream) = match rest.split_first() {
        Some((c, s)) => (usize::from(*c).max(1), s),
        None => (1, rest),
    };
    let mut codec = CmppCodec::new(v);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
}
