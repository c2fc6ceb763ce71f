//! Framing on a TCP stream: [`CmppCodec`] cuts packets by `Total_Length` (§8.3) before
//! decoding them, so one bad body never desynchronises the link.
//!
//! * `Total_Length` below 12 (no room for the header) or above [`MAX_TOTAL_LENGTH`] is a
//!   [`CodecError::BadLength`]: the stream cannot be re-synchronised, the connection must
//!   close. Nothing is allocated for such a length.
//! * Any other frame is decoded; a body that does not decode is yielded as
//!   [`Frame::Undecodable`] with its header (id, sequence), and the session answers it
//!   (a `CMPP_*_RESP` with `Result` 1, "bad structure") and keeps the link.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::pdu::{DecodeError, EncodeError, HEADER_LENGTH, Packet, Version};

/// Largest `Total_Length` accepted. The largest legal packet is a 3.0 `CMPP_SUBMIT` to
/// 99 handsets with 255 octets of content: 12 + 129 + 99 × 32 + 2 + 255 + 20 = 3,586.
pub const MAX_TOTAL_LENGTH: usize = 4096;

/// One framed packet read from the peer.
#[derive(Debug)]
pub enum Frame {
    /// A packet that decoded.
    Packet(Packet),
    /// A frame whose header was readable but whose body was not.
    Undecodable(DecodeError),
}

/// Fatal framing errors: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// `Total_Length` outside `12..=MAX_TOTAL_LENGTH`.
    #[error("invalid Total_Length {0} (allowed {HEADER_LENGTH}..={MAX_TOTAL_LENGTH})")]
    BadLength(u32),
    /// A packet handed to the encoder could not be encoded (a bug of the caller: the
    /// client validates before queueing).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// What the encoder writes.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A packet, encoded in the codec's version.
    Packet(Packet),
    /// Bytes written as they are (the simulator's malformed packets, pre-encoded
    /// deliveries).
    Raw(Bytes),
}

/// Decoder/encoder of CMPP frames in one [`Version`]'s layout (changeable once the
/// version is negotiated: [`CmppCodec::set_version`]).
#[derive(Debug, Clone)]
pub struct CmppCodec {
    version: Version,
}

impl CmppCodec {
    /// A codec for `version`.
    pub fn new(version: Version) -> Self {
        Self { version }
    }

    /// The layout used from now on.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }

    /// The current layout.
    pub fn version(&self) -> Version {
        self.version
    }
}

impl Decoder for CmppCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let total = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let len = total as usize;
        if !(HEADER_LENGTH..=MAX_TOTAL_LENGTH).contains(&len) {
            return Err(CodecError::BadLength(total));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(len);
        Ok(Some(match Packet::decode(&frame, self.version) {
            Ok(p) => Frame::Packet(p),
            Err(e) => Frame::Undecodable(e),
        }))
    }
}

impl Encoder<Outgoing> for CmppCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Outgoing, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Outgoing::Packet(p) => p.encode_into(self.version, dst)?,
            Outgoing::Raw(b) => dst.extend_from_slice(b.chunk()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Pdu;

    #[test]
    fn bad_lengths_are_fatal_and_allocate_nothing() {
        let mut c = CmppCodec::new(Version::V30);
        let mut b = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0][..]);
        assert!(matches!(
            c.decode(&mut b),
            Err(CodecError::BadLength(0xFFFF_FFFF))
        ));
        assert!(b.capacity() < 1024);
        let mut b = BytesMut::from(&[0, 0, 0, 11, 0, 0, 0, 8, 0, 0, 0][..]);
        assert!(matches!(c.decode(&mut b), Err(CodecError::BadLength(11))));
    }

    #[test]
    fn an_undecodable_body_keeps_the_stream_in_sync() {
        let mut c = CmppCodec::new(Version::V30);
        let mut b = BytesMut::new();
        // A CMPP_SUBMIT of 16 octets (a 4-octet body: far too short), then an ACTIVE_TEST.
        b.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 4, 0, 0, 0, 42, 1, 2, 3, 4]);
        c.encode(
            Outgoing::Packet(Packet {
                sequence_id: 43,
                pdu: Pdu::ActiveTest,
            }),
            &mut b,
        )
        .expect("encode");
        match c.decode(&mut b).expect("frame") {
            Some(Frame::Undecodable(e)) => {
                assert_eq!((e.command_id, e.sequence_id), (4, 42));
            }
            other => panic!("expected undecodable, got {other:?}"),
        }
        match c.decode(&mut b).expect("frame") {
            Some(Frame::Packet(p)) => assert_eq!(p.sequence_id, 43),
            other => panic!("expected the next packet, got {other:?}"),
        }
    }
}
