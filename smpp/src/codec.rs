//! Framing and PDU decoding on top of rusmpp's command codec.
//!
//! [`SmppCodec`] is a [`tokio_util::codec`] decoder/encoder that never lets one bad PDU take
//! the link down:
//!
//! * the frame is cut by its `command_length` *before* decoding, so a body rusmpp cannot
//!   decode is yielded as [`Frame::Undecodable`] (header intact: id, status, sequence) and
//!   the stream stays in sync; the session answers it with `generic_nack`;
//! * `deliver_sm`, `data_sm`, `submit_sm` and `submit_sm_resp` are *sanitised* first:
//!   quirks real SMSCs produce (a `receipted_message_id` without its NUL, fixed-size TLVs of
//!   the wrong length, truncated trailing TLVs, non-ASCII bytes in addresses, malformed
//!   dates) are repaired or the offending TLV dropped, because rusmpp's TLV decoding is not
//!   bounded by the TLV length and would otherwise mis-read the following TLVs;
//! * vendor TLVs (0x1400–0x3FFF) need no repair: rusmpp keeps them as `TlvValue::Other`;
//! * a `command_length` below 16 or above [`MAX_COMMAND_LENGTH`] is a [`CodecError`]: the
//!   stream cannot be re-synchronised, so the connection must be closed. Nothing is
//!   allocated for such a length.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use rusmpp::Command;
use rusmpp::decode::DecodeWithLength;
use rusmpp::tokio_codec::CommandCodec;
use tokio_util::codec::{Decoder, Encoder};

/// Largest `command_length` accepted (64 KiB). Real PDUs are well under 1 KiB.
pub const MAX_COMMAND_LENGTH: usize = 64 * 1024;
/// Size of the SMPP header (command_length, command_id, command_status, sequence_number).
pub const HEADER_LENGTH: usize = 16;

/// SMPP command ids used by this crate.
pub(crate) mod id {
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const DATA_SM: u32 = 0x0000_0103;
}

/// One framed PDU read from the peer.
#[derive(Debug)]
pub enum Frame {
    /// A PDU rusmpp decoded (after sanitising). Unknown command ids arrive here as
    /// `Pdu::Other`.
    Command(Box<Command>),
    /// A frame whose length and header were readable but whose body was not.
    Undecodable(Undecodable),
}

/// Header of a PDU whose body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// `command_id` from the header.
    pub command_id: u32,
    /// `command_status` from the header.
    pub command_status: u32,
    /// `sequence_number` from the header (echoed in the `generic_nack`).
    pub sequence_number: u32,
    /// Why decoding failed.
    pub reason: String,
}

impl Undecodable {
    /// True when the undecodable PDU is a response (command_id has bit 31 set).
    pub fn is_response(&self) -> bool {
        self.command_id & 0x8000_0000 != 0
    }
}

/// Fatal framing errors: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// `command_length` outside `16..=MAX_COMMAND_LENGTH`; the stream cannot be re-synced.
    #[error("invalid command_length {0} (allowed 16..={MAX_COMMAND_LENGTH})")]
    BadLength(u32),
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Codec for [`tokio_util::codec::Framed`] (or its read/write halves): decodes [`Frame`]s,
/// encodes rusmpp [`Command`]s through rusmpp's own `CommandCodec`, and raw pre-encoded
/// PDUs ([`Bytes`]) verbatim.
#[derive(Debug, Default)]
pub struct SmppCodec {
    inner: CommandCodec,
}

impl SmppCodec {
    /// A new codec.
    pub fn new() -> Self {
        Self {
            inner: CommandCodec::new().with_max_length(MAX_COMMAND_LENGTH),
        }
    }
}

impl Decoder for SmppCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len_u32 = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let len = len_u32 as usize;
        if !(HEADER_LENGTH..=MAX_COMMAND_LENGTH).contains(&len) {
            return Err(CodecError::BadLength(len_u32));
        }
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(len);
        Ok(Some(decode_frame(frame)))
    }
}

impl Encoder<Command> for SmppCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.inner.encode(&item, dst).map_err(|e| match e {
            rusmpp::tokio_codec::EncodeError::Io(e) => CodecError::Io(e),
            other => CodecError::Io(std::io::Error::other(other.to_string())),
        })
    }
}

impl Encoder<Bytes> for SmppCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

/// Encodes one command to bytes (used for crafting quirky PDUs and in tests).
pub fn encode_command(command: &Command) -> BytesMut {
    let mut dst = BytesMut::new();
    // Encoding into memory cannot fail.
    let _ = CommandCodec::new()
        .without_max_length()
        .encode(command, &mut dst);
    dst
}

fn header(frame: &[u8]) -> (u32, u32, u32) {
    let word = |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    (word(4), word(8), word(12))
}

/// Decodes one complete frame (`frame.len() == command_length >= 16`).
fn decode_frame(frame: BytesMut) -> Frame {
    let (command_id, command_status, sequence_number) = header(&frame);
    let frame = match sanitize(command_id, &frame) {
        Some(fixed) => fixed,
        None => frame,
    };
    let undecodable = |reason: String| {
        Frame::Undecodable(Undecodable {
            command_id,
            command_status,
            sequence_number,
            reason,
        })
    };
    let body_len = frame.len() - 4;
    let mut buf = frame;
    buf.advance(4);
    // rusmpp is `forbid(unsafe_code)` and fuzzed, but a panic in a decoder must still not
    // take the link (and every pending submit) down with it.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Command::decode(&mut buf, body_len)
    }));
    match result {
        // Unknown command ids decode as `Pdu::Other`; the session nacks them RINVCMDID.
        Ok(Ok((command, _))) => Frame::Command(Box::new(command)),
        Ok(Err(e)) => undecodable(format!("{e}")),
        Err(_) => undecodable("decoder panicked".to_string()),
    }
}

/// Fixed value sizes of TLVs rusmpp decodes with a fixed-width reader (so a wrong TLV length
/// would desynchronise it).
fn fixed_tlv_size(tag: u16) -> Option<usize> {
    Some(match tag {
        0x0427 => 1, // message_state
        0x0423 => 3, // network_error_code
        0x020C => 2, // sar_msg_ref_num
        0x020E => 1, // sar_total_segments
        0x020F => 1, // sar_segment_seqnum
        0x0204 => 2, // user_message_reference
        0x020A => 2, // source_port
        0x020B => 2, // dest_port
        0x0019 => 1, // payload_type
        0x0426 => 1, // more_messages_to_send
        0x0425 => 1, // delivery_failure_reason
        0x0420 => 1, // dpf_result
        0x0422 => 1, // ms_availability_status
        0x0421 => 1, // set_dpf
        0x0201 => 1, // privacy_indicator
        0x020D => 1, // language_indicator
        0x0030 => 1, // ms_msg_wait_facilities
        0x0501 => 1, // ussd_service_op
        0x0205 => 1, // user_response_code
        _ => return None,
    })
}

const TAG_RECEIPTED_MESSAGE_ID: u16 = 0x001E;

/// Lazily-built repaired copy of a frame.
struct Patch<'a> {
    src: &'a [u8],
    out: Option<BytesMut>,
    /// Bytes of `src` already accounted for (copied to `out` or deliberately skipped).
    done: usize,
}

impl<'a> Patch<'a> {
    fn new(src: &'a [u8]) -> Self {
        Self {
            src,
            out: None,
            done: 0,
        }
    }

    fn out(&mut self) -> &mut BytesMut {
        let src = self.src;
        let done = self.done;
        self.out.get_or_insert_with(|| {
            let mut b = BytesMut::with_capacity(src.len() + 8);
            b.extend_from_slice(&src[..done]);
            b
        })
    }

    /// Marks `src[self.done..upto]` as unchanged.
    fn keep(&mut self, upto: usize) {
        if let Some(out) = self.out.as_mut() {
            out.extend_from_slice(&self.src[self.done..upto]);
        }
        self.done = upto;
    }

    /// Replaces `src[self.done..upto]` with `bytes`.
    fn replace(&mut self, upto: usize, bytes: &[u8]) {
        self.out().extend_from_slice(bytes);
        self.done = upto;
    }

    fn finish(mut self) -> Option<BytesMut> {
        let end = self.src.len();
        self.keep(end);
        let mut out = self.out?;
        let len = out.len() as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        Some(out)
    }
}

/// Cursor over the body for walking mandatory fields.
struct Walk<'a, 'b> {
    patch: &'b mut Patch<'a>,
    pos: usize,
}

impl Walk<'_, '_> {
    fn skip(&mut self, n: usize) -> Option<()> {
        if self.pos + n > self.patch.src.len() {
            return None;
        }
        self.pos += n;
        Some(())
    }

    fn u8(&mut self) -> Option<u8> {
        let b = *self.patch.src.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// A C-octet string: non-ASCII bytes become '?', an `EmptyOrFull<17>` date of the
    /// wrong size becomes empty.
    fn cstr(&mut self, date: bool) -> Option<()> {
        let src = self.patch.src;
        let start = self.pos;
        let nul = src[start..].iter().position(|&b| b == 0)?;
        let end = start + nul + 1;
        let value = &src[start..start + nul];
        if date && !(value.is_empty() || value.len() == 16) {
            self.patch.keep(start);
            self.patch.replace(end, &[0]);
        } else if !value.is_ascii() {
            self.patch.keep(start);
            let mut fixed: Vec<u8> = value
                .iter()
                .map(|&b| if b.is_ascii() { b } else { b'?' })
                .collect();
            fixed.push(0);
            self.patch.replace(end, &fixed);
        }
        self.pos = end;
        Some(())
    }
}

/// Returns a repaired frame when `frame` needed repairs, `None` when it is fine as is (or
/// too broken to repair: decoding then reports it).
pub(crate) fn sanitize(command_id: u32, frame: &[u8]) -> Option<BytesMut> {
    match command_id {
        id::SUBMIT_SM_RESP => {
            // message_id without NUL (seen from SMSCs that omit it when no TLVs follow).
            let body = &frame[HEADER_LENGTH..];
            if !body.is_empty() && !body.contains(&0) {
                let mut out = BytesMut::with_capacity(frame.len() + 1);
                out.extend_from_slice(frame);
                out.put_u8(0);
                let len = out.len() as u32;
                out[..4].copy_from_slice(&len.to_be_bytes());
                return Some(out);
            }
            None
        }
        id::DELIVER_SM | id::SUBMIT_SM | id::DATA_SM => {
            let mut patch = Patch::new(frame);
            let tlv_start = {
                let mut w = Walk {
                    patch: &mut patch,
                    pos: HEADER_LENGTH,
                };
                walk_mandatory(&mut w, command_id == id::DATA_SM)?;
                w.pos
            };
            sanitize_tlvs(&mut patch, tlv_start);
            patch.finish()
        }
        _ => None,
    }
}

fn walk_mandatory(w: &mut Walk<'_, '_>, data_sm: bool) -> Option<()> {
    w.cstr(false)?; // service_type
    w.skip(2)?; // source ton/npi
    w.cstr(false)?; // source_addr
    w.skip(2)?; // dest ton/npi
    w.cstr(false)?; // destination_addr
    if data_sm {
        w.skip(3)?; // esm_class, registered_delivery, data_coding
        return Some(());
    }
    w.skip(3)?; // esm_class, protocol_id, priority_flag
    w.cstr(true)?; // schedule_delivery_time
    w.cstr(true)?; // validity_period
    w.skip(4)?; // registered_delivery, replace_if_present, data_coding, sm_default_msg_id
    let sm_length = w.u8()? as usize;
    w.skip(sm_length)
}

fn sanitize_tlvs(patch: &mut Patch<'_>, mut pos: usize) {
    let src = patch.src;
    patch.keep(pos);
    while pos < src.len() {
        if pos + 4 > src.len() {
            // Trailing junk shorter than a TLV header: drop it.
            patch.replace(src.len(), &[]);
            return;
        }
        let tag = u16::from_be_bytes([src[pos], src[pos + 1]]);
        let len = u16::from_be_bytes([src[pos + 2], src[pos + 3]]) as usize;
        let value_start = pos + 4;
        let end = value_start + len;
        if end > src.len() {
            // Truncated TLV: drop it and whatever follows.
            patch.keep(pos);
            patch.replace(src.len(), &[]);
            return;
        }
        let value = &src[value_start..end];
        if tag == TAG_RECEIPTED_MESSAGE_ID {
            let ok = !value.is_empty()
                && value.len() <= 65
                && value[value.len() - 1] == 0
                && value.is_ascii()
                && !value[..value.len() - 1].contains(&0);
            if !ok {
                let id: Vec<u8> = value
                    .iter()
                    .copied()
                    .take_while(|&b| b != 0)
                    .filter(|b| b.is_ascii())
                    .take(64)
                    .collect();
                let mut tlv = Vec::with_capacity(id.len() + 5);
                tlv.extend_from_slice(&tag.to_be_bytes());
                tlv.extend_from_slice(&((id.len() + 1) as u16).to_be_bytes());
                tlv.extend_from_slice(&id);
                tlv.push(0);
                patch.keep(pos);
                patch.replace(end, &tlv);
            }
        } else if let Some(size) = fixed_tlv_size(tag)
            && size != len
        {
            // Unusable anyway; dropping it keeps the rest of the PDU readable.
            patch.keep(pos);
            patch.replace(end, &[]);
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusmpp::Pdu;

    fn pdu(command_id: u32, seq: u32, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32((16 + body.len()) as u32);
        b.put_u32(command_id);
        b.put_u32(0);
        b.put_u32(seq);
        b.extend_from_slice(body);
        b
    }

    fn deliver_body(tlvs: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        b.push(0); // service_type
        b.extend_from_slice(&[1, 1]);
        b.extend_from_slice(b"8613800138000\0");
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(b"10661234\0");
        b.extend_from_slice(&[0x04, 0, 0]);
        b.push(0);
        b.push(0);
        b.extend_from_slice(&[0, 0, 0, 0]);
        let text = b"id:1A2B sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:hi";
        b.push(text.len() as u8);
        b.extend_from_slice(text);
        b.extend_from_slice(tlvs);
        b
    }

    fn decode_all(mut buf: BytesMut) -> Vec<Frame> {
        let mut codec = SmppCodec::new();
        let mut out = Vec::new();
        while let Some(f) = codec.decode(&mut buf).expect("decode") {
            out.push(f);
        }
        out
    }

    #[test]
    fn receipted_message_id_without_nul_and_vendor_tlv() {
        let mut tlvs = Vec::new();
        tlvs.extend_from_slice(&[0x00, 0x1E, 0x00, 0x04]);
        tlvs.extend_from_slice(b"1A2B");
        tlvs.extend_from_slice(&[0x14, 0x01, 0x00, 0x02, 0xAB, 0xCD]);
        tlvs.extend_from_slice(&[0x04, 0x27, 0x00, 0x01, 0x02]);
        let mut buf = pdu(id::DELIVER_SM, 7, &deliver_body(&tlvs));
        buf.extend_from_slice(&pdu(0x15, 8, &[]));
        let frames = decode_all(buf);
        assert_eq!(frames.len(), 2);
        let Frame::Command(cmd) = &frames[0] else {
            panic!("undecodable: {:?}", frames[0]);
        };
        let Some(Pdu::DeliverSm(d)) = cmd.pdu() else {
            panic!("not deliver_sm")
        };
        assert_eq!(d.tlvs().len(), 3);
        assert!(matches!(&frames[1], Frame::Command(c) if c.sequence_number == 8));
    }

    #[test]
    fn wrong_size_fixed_tlv_dropped_and_truncated_tlv_cut() {
        let mut tlvs = Vec::new();
        tlvs.extend_from_slice(&[0x04, 0x27, 0x00, 0x02, 0x02, 0x00]);
        tlvs.extend_from_slice(&[0x00, 0x1E, 0x00, 0x05, b'1', b'2', b'3', b'4', 0]);
        tlvs.extend_from_slice(&[0x14, 0x01, 0x00, 0x09, 0xAB]);
        let frames = decode_all(pdu(id::DELIVER_SM, 9, &deliver_body(&tlvs)));
        let Frame::Command(cmd) = &frames[0] else {
            panic!("undecodable: {:?}", frames[0]);
        };
        let Some(Pdu::DeliverSm(d)) = cmd.pdu() else {
            panic!("not deliver_sm")
        };
        assert_eq!(d.tlvs().len(), 1);
    }

    #[test]
    fn garbage_body_is_undecodable_and_stream_stays_in_sync() {
        let mut buf = pdu(id::SUBMIT_SM, 3, &[0xFF; 5]);
        buf.extend_from_slice(&pdu(0x15, 4, &[]));
        let frames = decode_all(buf);
        assert!(
            matches!(&frames[0], Frame::Undecodable(u) if u.sequence_number == 3 && u.command_id == id::SUBMIT_SM)
        );
        assert!(matches!(&frames[1], Frame::Command(c) if c.sequence_number == 4));
    }

    #[test]
    fn unknown_command_id_decodes_as_other() {
        let frames = decode_all(pdu(0x0000_0999, 5, &[1, 2, 3]));
        assert!(
            matches!(&frames[0], Frame::Command(c) if matches!(c.pdu(), Some(Pdu::Other { .. })) || c.pdu().is_none()),
            "{:?}",
            frames[0]
        );
    }

    #[test]
    fn absurd_lengths_are_errors_without_allocation() {
        let mut codec = SmppCodec::new();
        let mut buf = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::BadLength(_))
        ));
        assert!(buf.capacity() < 1024);
        let mut buf = BytesMut::from(&[0, 0, 0, 8, 0, 0, 0, 4][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::BadLength(8))
        ));
    }

    #[test]
    fn submit_sm_resp_without_nul() {
        let frames = decode_all(pdu(id::SUBMIT_SM_RESP, 11, b"ABC123"));
        let Frame::Command(cmd) = &frames[0] else {
            panic!("undecodable")
        };
        let Some(Pdu::SubmitSmResp(r)) = cmd.pdu() else {
            panic!("not resp")
        };
        assert_eq!(r.message_id().as_str(), "ABC123");
    }

    #[test]
    fn random_frames_never_panic() {
        let mut state = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..3000u32 {
            let n = (next() % 200) as usize;
            let body: Vec<u8> = (0..n).map(|_| next() as u8).collect();
            let ids = [
                id::DELIVER_SM,
                id::SUBMIT_SM,
                id::SUBMIT_SM_RESP,
                id::DATA_SM,
                0x09,
                0x8000_0009,
            ];
            let cid = ids[(next() % ids.len() as u64) as usize];
            let mut buf = pdu(cid, i, &body);
            buf.extend_from_slice(&pdu(0x15, i, &[]));
            let frames = decode_all(buf);
            assert_eq!(frames.len(), 2);
        }
    }
}
