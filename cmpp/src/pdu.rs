//! CMPP packets: the SP↔ISMG messages of CMPP 3.0 (中国移动通信互联网短信网关接口协议
//! V3.0.0, §8) and of CMPP 2.0, encoded and decoded by one codec parameterised by
//! [`Version`].
//!
//! # Layout (section and table numbers of the 3.0 specification)
//! * Header, §8.3: `Total_Length` (4, header included), `Command_Id` (4), `Sequence_Id`
//!   (4), all unsigned big-endian.
//! * `CMPP_CONNECT` §8.4.1.1: `Source_Addr` 6, `AuthenticatorSource` 16, `Version` 1,
//!   `Timestamp` 4. The same in 2.0.
//! * `CMPP_CONNECT_RESP` §8.4.1.2: `Status` **4** (2.0: **1**), `AuthenticatorISMG` 16,
//!   `Version` 1.
//! * `CMPP_TERMINATE(_RESP)` §8.4.2: no body.
//! * `CMPP_SUBMIT` §8.4.3.1: `Msg_Id` 8, `Pk_total` 1, `Pk_number` 1,
//!   `Registered_Delivery` 1, `Msg_level` 1, `Service_Id` 10, `Fee_UserType` 1,
//!   `Fee_terminal_Id` **32** (2.0: **21**), `Fee_terminal_type` 1 (3.0 only), `TP_pId` 1,
//!   `TP_udhi` 1, `Msg_Fmt` 1, `Msg_src` 6, `FeeType` 2, `FeeCode` 6, `ValId_Time` 17,
//!   `At_Time` 17, `Src_Id` 21, `DestUsr_tl` 1, `Dest_terminal_Id` **32** (2.0: **21**) ×
//!   `DestUsr_tl`, `Dest_terminal_type` 1 (3.0 only), `Msg_Length` 1, `Msg_Content`,
//!   then `LinkID` 20 (3.0) or `Reserve` 8 (2.0).
//! * `CMPP_SUBMIT_RESP` §8.4.3.2: `Msg_Id` 8, `Result` **4** (2.0: **1**).
//! * `CMPP_DELIVER` §8.4.5.1: `Msg_Id` 8, `Dest_Id` 21, `Service_Id` 10, `TP_pid` 1,
//!   `TP_udhi` 1, `Msg_Fmt` 1, `Src_terminal_Id` **32** (2.0: **21**), `Src_terminal_type` 1
//!   (3.0 only), `Registered_Delivery` 1, `Msg_Length` 1, `Msg_Content`, then `LinkID` 20
//!   (3.0) or `Reserved` 8 (2.0). With `Registered_Delivery` = 1 `Msg_Content` is a status
//!   report ([`Report`]): `Msg_Id` 8, `Stat` 7, `Submit_time` 10, `Done_time` 10,
//!   `Dest_terminal_Id` **32** (2.0: **21**), `SMSC_sequence` 4.
//! * `CMPP_DELIVER_RESP` §8.4.5.2: `Msg_Id` 8, `Result` **4** (2.0: **1**).
//! * `CMPP_ACTIVE_TEST` §8.4.7.1: no body; `CMPP_ACTIVE_TEST_RESP` §8.4.7.2: `Reserved` 1.
//! * `Command_Id` values §8.7.1 ([`command`]).
//!
//! `Octet String` fields (§8.1) are fixed-width, right-padded with binary zeros; decoding
//! stops at the first zero. Responses whose body length is the other version's (an ISMG
//! announcing 3.0 that answers in 2.0 widths, which happens) are decoded by their length.
//! Requests must have exactly their version's length, else they are [`DecodeError`]s
//! (answered, not fatal: see [`crate::codec`]).

use bytes::{BufMut, BytesMut};

use crate::msg_id::MsgId;

/// Size of the header (§8.3).
pub const HEADER_LENGTH: usize = 12;

/// `Command_Id` values (§8.7.1). A response is its request's id with bit 31 set.
pub mod command {
    /// `CMPP_CONNECT`.
    pub const CONNECT: u32 = 0x0000_0001;
    /// `CMPP_CONNECT_RESP`.
    pub const CONNECT_RESP: u32 = 0x8000_0001;
    /// `CMPP_TERMINATE`.
    pub const TERMINATE: u32 = 0x0000_0002;
    /// `CMPP_TERMINATE_RESP`.
    pub const TERMINATE_RESP: u32 = 0x8000_0002;
    /// `CMPP_SUBMIT`.
    pub const SUBMIT: u32 = 0x0000_0004;
    /// `CMPP_SUBMIT_RESP`.
    pub const SUBMIT_RESP: u32 = 0x8000_0004;
    /// `CMPP_DELIVER`.
    pub const DELIVER: u32 = 0x0000_0005;
    /// `CMPP_DELIVER_RESP`.
    pub const DELIVER_RESP: u32 = 0x8000_0005;
    /// `CMPP_ACTIVE_TEST`.
    pub const ACTIVE_TEST: u32 = 0x0000_0008;
    /// `CMPP_ACTIVE_TEST_RESP`.
    pub const ACTIVE_TEST_RESP: u32 = 0x8000_0008;
    /// Bit 31: the id is a response's.
    pub const RESP_BIT: u32 = 0x8000_0000;
}

/// The protocol version: the `Version` octet of `CMPP_CONNECT` (high nibble major, low
/// nibble minor) and the field widths that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// CMPP 2.0 (`0x20`).
    V20,
    /// CMPP 3.0 (`0x30`).
    V30,
}

impl Version {
    /// The `Version` octet.
    pub fn octet(self) -> u8 {
        match self {
            Version::V20 => 0x20,
            Version::V30 => 0x30,
        }
    }

    /// The version an octet announces: 0x30 and above → 3.0, 0x20–0x2F → 2.0 (2.1 shares
    /// 2.0's layout), anything lower → `None`.
    pub fn from_octet(v: u8) -> Option<Self> {
        match v {
            0x30.. => Some(Version::V30),
            0x20..=0x2F => Some(Version::V20),
            _ => None,
        }
    }

    /// Width of a terminal id (`Fee_terminal_Id`, `Dest_terminal_Id`, `Src_terminal_Id`):
    /// 32 in 3.0, 21 in 2.0.
    pub fn terminal_id_width(self) -> usize {
        match self {
            Version::V20 => 21,
            Version::V30 => 32,
        }
    }
}

/// `CMPP_CONNECT` (§8.4.1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// `Source_Addr`: the SP's enterprise code (SP_Id, 6 digits).
    pub source_addr: String,
    /// `AuthenticatorSource` ([`crate::auth::authenticator_source`]).
    pub authenticator_source: [u8; 16],
    /// `Version` octet (0x30, 0x20).
    pub version: u8,
    /// `Timestamp`: MMDDHHMMSS as an integer.
    pub timestamp: u32,
}

/// `CMPP_CONNECT_RESP` (§8.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResp {
    /// `Status`: 0 ok, 1 bad structure, 2 bad source address, 3 authentication failed,
    /// 4 version too high, 5+ other. One octet in 2.0.
    pub status: u32,
    /// `AuthenticatorISMG` ([`crate::auth::authenticator_ismg`]); zeros when refused.
    pub authenticator_ismg: [u8; 16],
    /// `Version`: the highest version the ISMG supports.
    pub version: u8,
}

/// `CMPP_SUBMIT` (§8.4.3.1): one MT (one segment of it) to up to 99 handsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submit {
    /// `Msg_Id`: zero from the SP; the ISMG assigns the real one.
    pub msg_id: u64,
    /// `Pk_total`: segments of this message (from 1).
    pub pk_total: u8,
    /// `Pk_number`: this segment's number (from 1).
    pub pk_number: u8,
    /// `Registered_Delivery`: 0 no report, 1 report, 2 billing record only (not
    /// delivered to the handset).
    pub registered_delivery: u8,
    /// `Msg_level`.
    pub msg_level: u8,
    /// `Service_Id` (≤ 10): the service code the operator bills under.
    pub service_id: String,
    /// `Fee_UserType`: 0 recipient pays, 1 sender, 2 SP, 3 see `fee_terminal_id`.
    pub fee_user_type: u8,
    /// `Fee_terminal_Id` (≤ 32 in 3.0, ≤ 21 in 2.0): the charged number when
    /// `fee_user_type` is 3.
    pub fee_terminal_id: String,
    /// `Fee_terminal_type` (3.0 only; 0 real number, 1 pseudo). Not sent in 2.0.
    pub fee_terminal_type: u8,
    /// `TP_pId`.
    pub tp_pid: u8,
    /// `TP_udhi`: 1 when `msg_content` starts with a user data header.
    pub tp_udhi: u8,
    /// `Msg_Fmt`: 0 ASCII, 3 SIM write, 4 binary, 8 UCS-2, 15 GBK.
    pub msg_fmt: u8,
    /// `Msg_src` (≤ 6): the SP_Id.
    pub msg_src: String,
    /// `FeeType` (2 digits): 01 free, 02 per message, 03 monthly (包月), 04 capped,
    /// 05 charged by the SP.
    pub fee_type: String,
    /// `FeeCode` (≤ 6 digits): the fee in fen.
    pub fee_code: String,
    /// `ValId_Time` (≤ 17, SMPP 3.3 time format), often empty.
    pub valid_time: String,
    /// `At_Time` (≤ 17), often empty.
    pub at_time: String,
    /// `Src_Id` (≤ 21): service number (+ extension), shown as the sender.
    pub src_id: String,
    /// `Dest_terminal_Id`s (1–99 handsets; ≤ 32 chars each in 3.0, ≤ 21 in 2.0).
    pub dest_terminal_ids: Vec<String>,
    /// `Dest_terminal_type` (3.0 only). Not sent in 2.0.
    pub dest_terminal_type: u8,
    /// `Msg_Content` (≤ 255 octets; the spec's limits are 159 for ASCII, 140 otherwise).
    pub msg_content: Vec<u8>,
    /// `LinkID` (3.0 only, ≤ 20): the MO's LinkID when this MT answers it (点播).
    pub link_id: String,
    /// `Reserve` (2.0 only, ≤ 8).
    pub reserve: String,
}

/// `CMPP_SUBMIT_RESP` (§8.4.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitResp {
    /// `Msg_Id` the ISMG gave the message ([`MsgId`]).
    pub msg_id: u64,
    /// `Result` (see [`crate::status`]). One octet in 2.0.
    pub result: u32,
}

/// `CMPP_DELIVER` (§8.4.5.1): an MO, or a status report when `registered_delivery` is 1.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliver {
    /// `Msg_Id` of this delivery (echoed in the response).
    pub msg_id: u64,
    /// `Dest_Id` (≤ 21): the SP's service number the handset wrote to.
    pub dest_id: String,
    /// `Service_Id` (≤ 10).
    pub service_id: String,
    /// `TP_pid`.
    pub tp_pid: u8,
    /// `TP_udhi`.
    pub tp_udhi: u8,
    /// `Msg_Fmt`.
    pub msg_fmt: u8,
    /// `Src_terminal_Id` (≤ 32 in 3.0, ≤ 21 in 2.0): the handset (for a report: the MT's
    /// destination).
    pub src_terminal_id: String,
    /// `Src_terminal_type` (3.0 only).
    pub src_terminal_type: u8,
    /// `Registered_Delivery`: 0 MO, 1 status report.
    pub registered_delivery: u8,
    /// `Msg_Content` (≤ 255 octets); a [`Report`] when `registered_delivery` is 1.
    pub msg_content: Vec<u8>,
    /// `LinkID` (3.0 only, ≤ 20): to be echoed in the replies to this MO.
    pub link_id: String,
    /// `Reserved` (2.0 only, ≤ 8).
    pub reserve: String,
}

/// `CMPP_DELIVER_RESP` (§8.4.5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverResp {
    /// The `Msg_Id` of the `CMPP_DELIVER` answered.
    pub msg_id: u64,
    /// `Result`: 0 ok, 8 flow control, 9+ other. One octet in 2.0.
    pub result: u32,
}

/// A status report: `Msg_Content` of a `CMPP_DELIVER` with `Registered_Delivery` = 1
/// (§8.4.5.1, second table).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// `Msg_Id` of the MT, as in its `CMPP_SUBMIT_RESP`.
    pub msg_id: u64,
    /// `Stat` (7): `DELIVRD`, `EXPIRED`, `DELETED`, `UNDELIV`, `ACCEPTD`, `UNKNOWN`,
    /// `REJECTD`, or an ISMG code such as `MA:0001` (table 1).
    pub stat: String,
    /// `Submit_time` YYMMDDHHMM.
    pub submit_time: String,
    /// `Done_time` YYMMDDHHMM.
    pub done_time: String,
    /// `Dest_terminal_Id` (≤ 32 in 3.0, ≤ 21 in 2.0).
    pub dest_terminal_id: String,
    /// `SMSC_sequence`.
    pub smsc_sequence: u32,
}

/// A packet body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// `CMPP_CONNECT`.
    Connect(Connect),
    /// `CMPP_CONNECT_RESP`.
    ConnectResp(ConnectResp),
    /// `CMPP_TERMINATE`.
    Terminate,
    /// `CMPP_TERMINATE_RESP`.
    TerminateResp,
    /// `CMPP_SUBMIT`.
    Submit(Box<Submit>),
    /// `CMPP_SUBMIT_RESP`.
    SubmitResp(SubmitResp),
    /// `CMPP_DELIVER`.
    Deliver(Box<Deliver>),
    /// `CMPP_DELIVER_RESP`.
    DeliverResp(DeliverResp),
    /// `CMPP_ACTIVE_TEST`.
    ActiveTest,
    /// `CMPP_ACTIVE_TEST_RESP` with its `Reserved` octet.
    ActiveTestResp(u8),
}

impl Pdu {
    /// The `Command_Id` (§8.7.1).
    pub fn command_id(&self) -> u32 {
        use command::*;
        match self {
            Pdu::Connect(_) => CONNECT,
            Pdu::ConnectResp(_) => CONNECT_RESP,
            Pdu::Terminate => TERMINATE,
            Pdu::TerminateResp => TERMINATE_RESP,
            Pdu::Submit(_) => SUBMIT,
            Pdu::SubmitResp(_) => SUBMIT_RESP,
            Pdu::Deliver(_) => DELIVER,
            Pdu::DeliverResp(_) => DELIVER_RESP,
            Pdu::ActiveTest => ACTIVE_TEST,
            Pdu::ActiveTestResp(_) => ACTIVE_TEST_RESP,
        }
    }
}

/// A whole packet: header fields and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// `Sequence_Id` (a request and its response share it).
    pub sequence_id: u32,
    /// The body.
    pub pdu: Pdu,
}

/// Why a packet cannot be encoded (a field too long, a field the version lacks).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A text field is longer than its width.
    #[error("{field}: {len} octets, at most {max}")]
    TooLong {
        /// The field name (the spec's).
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its width.
        max: usize,
    },
    /// A value does not fit the version's field (a `Result` above 255 in 2.0), or a
    /// field exists only in the other version (`LinkID` in 2.0), or a count is out of
    /// range (`DestUsr_tl` 0 or ≥ 100).
    #[error("{0}")]
    Invalid(String),
}

/// Why a packet body cannot be decoded. The header was readable, so the link stays in
/// sync and the peer can be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command 0x{command_id:08X} seq {sequence_id}: {reason}")]
pub struct DecodeError {
    /// `Command_Id` from the header.
    pub command_id: u32,
    /// `Sequence_Id` from the header.
    pub sequence_id: u32,
    /// The first 8 body octets of a command that starts with a `Msg_Id` (`CMPP_SUBMIT`,
    /// `CMPP_DELIVER`, their responses), so even a malformed one can be answered.
    pub msg_id: Option<u64>,
    /// What was wrong.
    pub reason: String,
}

impl DecodeError {
    /// True when the undecodable packet is a response (bit 31 of its `Command_Id`).
    pub fn is_response(&self) -> bool {
        self.command_id & command::RESP_BIT != 0
    }
}

// ---------------------------------------------------------------------------------------
// Encoding

struct Writer<'a> {
    buf: &'a mut BytesMut,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }
    fn u32(&mut self, v: u32) {
        self.buf.put_u32(v);
    }
    fn u64(&mut self, v: u64) {
        self.buf.put_u64(v);
    }
    /// An `Octet String` of `width`, right-padded with zeros.
    fn text(&mut self, field: &'static str, v: &str, width: usize) -> Result<(), EncodeError> {
        self.octets(field, v.as_bytes(), width)
    }
    fn octets(&mut self, field: &'static str, v: &[u8], width: usize) -> Result<(), EncodeError> {
        if v.len() > width {
            return Err(EncodeError::TooLong {
                field,
                len: v.len(),
                max: width,
            });
        }
        self.buf.put_slice(v);
        self.buf.put_bytes(0, width - v.len());
        Ok(())
    }
    /// A `Result`/`Status` of the version's width.
    fn result(&mut self, field: &'static str, v: u32, version: Version) -> Result<(), EncodeError> {
        match version {
            Version::V30 => self.u32(v),
            Version::V20 => {
                let b = u8::try_from(v).map_err(|_| {
                    EncodeError::Invalid(format!("{field} {v} does not fit CMPP 2.0's one octet"))
                })?;
                self.u8(b);
            }
        }
        Ok(())
    }
    /// `LinkID` (3.0) or `Reserve` (2.0).
    fn tail(&mut self, link_id: &str, reserve: &str, version: Version) -> Result<(), EncodeError> {
        match version {
            Version::V30 if !reserve.is_empty() => Err(EncodeError::Invalid(
                "Reserve is a CMPP 2.0 field; CMPP 3.0 has LinkID there".into(),
            )),
            Version::V30 => self.text("LinkID", link_id, 20),
            Version::V20 if !link_id.is_empty() => Err(EncodeError::Invalid(
                "LinkID needs CMPP 3.0 (2.0 has no such field)".into(),
            )),
            Version::V20 => self.text("Reserve", reserve, 8),
        }
    }
    fn content(&mut self, v: &[u8]) -> Result<(), EncodeError> {
        let len = u8::try_from(v.len()).map_err(|_| EncodeError::TooLong {
            field: "Msg_Content",
            len: v.len(),
            max: 255,
        })?;
        self.u8(len);
        self.buf.put_slice(v);
        Ok(())
    }
}

impl Packet {
    /// Encodes the packet, header included, in `version`'s layout.
    ///
    /// # Errors
    /// [`EncodeError`] when a field is longer than its width, a value does not fit the
    /// version, or a version-only field is set in the other version.
    pub fn encode(&self, version: Version) -> Result<BytesMut, EncodeError> {
        let mut buf = BytesMut::with_capacity(64);
        self.encode_into(version, &mut buf)?;
        Ok(buf)
    }

    /// Appends the encoded packet to `buf` (nothing is appended on error).
    ///
    /// # Errors
    /// As [`Packet::encode`].
    pub fn encode_into(&self, version: Version, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let start = buf.len();
        let result = self.write(version, buf);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    fn write(&self, version: Version, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let start = buf.len();
        buf.put_u32(0); // Total_Length, patched below
        buf.put_u32(self.pdu.command_id());
        buf.put_u32(self.sequence_id);
        let mut w = Writer { buf };
        let tid = version.terminal_id_width();
        match &self.pdu {
            Pdu::Connect(c) => {
                w.text("Source_Addr", &c.source_addr, 6)?;
                w.octets("AuthenticatorSource", &c.authenticator_source, 16)?;
                w.u8(c.version);
                w.u32(c.timestamp);
            }
            Pdu::ConnectResp(c) => {
                w.result("Status", c.status, version)?;
                w.octets("AuthenticatorISMG", &c.authenticator_ismg, 16)?;
                w.u8(c.version);
            }
            Pdu::Terminate | Pdu::TerminateResp | Pdu::ActiveTest => {}
            Pdu::ActiveTestResp(r) => w.u8(*r),
            Pdu::Submit(s) => {
                let n = s.dest_terminal_ids.len();
                if !(1..100).contains(&n) {
                    return Err(EncodeError::Invalid(format!(
                        "DestUsr_tl {n}: 1 to 99 destinations"
                    )));
                }
                w.u64(s.msg_id);
                w.u8(s.pk_total);
                w.u8(s.pk_number);
                w.u8(s.registered_delivery);
                w.u8(s.msg_level);
                w.text("Service_Id", &s.service_id, 10)?;
                w.u8(s.fee_user_type);
                w.text("Fee_terminal_Id", &s.fee_terminal_id, tid)?;
                if version == Version::V30 {
                    w.u8(s.fee_terminal_type);
                }
                w.u8(s.tp_pid);
                w.u8(s.tp_udhi);
                w.u8(s.msg_fmt);
                w.text("Msg_src", &s.msg_src, 6)?;
                w.text("FeeType", &s.fee_type, 2)?;
                w.text("FeeCode", &s.fee_code, 6)?;
                w.text("ValId_Time", &s.valid_time, 17)?;
                w.text("At_Time", &s.at_time, 17)?;
                w.text("Src_Id", &s.src_id, 21)?;
                w.u8(n as u8);
                for d in &s.dest_terminal_ids {
                    w.text("Dest_terminal_Id", d, tid)?;
                }
                if version == Version::V30 {
                    w.u8(s.dest_terminal_type);
                }
                w.content(&s.msg_content)?;
                w.tail(&s.link_id, &s.reserve, version)?;
            }
            Pdu::SubmitResp(r) => {
                w.u64(r.msg_id);
                w.result("Result", r.result, version)?;
            }
            Pdu::Deliver(d) => {
                w.u64(d.msg_id);
                w.text("Dest_Id", &d.dest_id, 21)?;
                w.text("Service_Id", &d.service_id, 10)?;
                w.u8(d.tp_pid);
                w.u8(d.tp_udhi);
                w.u8(d.msg_fmt);
                w.text("Src_terminal_Id", &d.src_terminal_id, tid)?;
                if version == Version::V30 {
                    w.u8(d.src_terminal_type);
                }
                w.u8(d.registered_delivery);
                w.content(&d.msg_content)?;
                w.tail(&d.link_id, &d.reserve, version)?;
            }
            Pdu::DeliverResp(r) => {
                w.u64(r.msg_id);
                w.result("Result", r.result, version)?;
            }
        }
        let len = (buf.len() - start) as u32;
        buf[start..start + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes one whole packet (`Total_Length` bytes, header included) in `version`'s
    /// layout. Never panics, whatever the bytes.
    ///
    /// # Errors
    /// [`DecodeError`] (with the header's id and sequence when there was a header) when
    /// the length field disagrees with the bytes, the command is unknown, or the body
    /// does not have its layout's length.
    pub fn decode(bytes: &[u8], version: Version) -> Result<Packet, DecodeError> {
        let err = |command_id: u32, sequence_id, reason: String| DecodeError {
            command_id,
            sequence_id,
            msg_id: match command_id & !command::RESP_BIT {
                command::SUBMIT | command::DELIVER => bytes
                    .get(HEADER_LENGTH..HEADER_LENGTH + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_be_bytes),
                _ => None,
            },
            reason,
        };
        if bytes.len() < HEADER_LENGTH {
            return Err(err(
                0,
                0,
                format!("{} octets: shorter than a header", bytes.len()),
            ));
        }
        let be32 =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (total, command_id, sequence_id) = (be32(0), be32(4), be32(8));
        if total as usize != bytes.len() {
            return Err(err(
                command_id,
                sequence_id,
                format!("Total_Length {total} but {} octets", bytes.len()),
            ));
        }
        let mut r = Reader {
            body: &bytes[HEADER_LENGTH..],
            pos: 0,
        };
        let pdu = decode_body(command_id, &mut r, version)
            .and_then(|pdu| {
                if r.pos == r.body.len() {
                    Ok(pdu)
                } else {
                    Err(format!(
                        "{} octets after the body's {} (wrong version or layout?)",
                        r.body.len() - r.pos,
                        r.pos
                    ))
                }
            })
            .map_err(|reason| err(command_id, sequence_id, reason))?;
        Ok(Packet { sequence_id, pdu })
    }
}

// ---------------------------------------------------------------------------------------
// Decoding

struct Reader<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.body.len())
            .ok_or_else(|| format!("body ends inside {field}"))?;
        let s = &self.body[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, field: &str) -> Result<u8, String> {
        Ok(self.take(1, field)?[0])
    }
    fn u32(&mut self, field: &str) -> Result<u32, String> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &str) -> Result<u64, String> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    /// An `Octet String`: up to the first zero; non-UTF-8 bytes are replaced (U+FFFD).
    fn text(&mut self, width: usize, field: &str) -> Result<String, String> {
        let b = self.take(width, field)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(&b[..end]).into_owned())
    }
    fn array16(&mut self, field: &str) -> Result<[u8; 16], String> {
        let mut a = [0u8; 16];
        a.copy_from_slice(self.take(16, field)?);
        Ok(a)
    }
    fn content(&mut self) -> Result<Vec<u8>, String> {
        let n = self.u8("Msg_Length")?;
        Ok(self.take(usize::from(n), "Msg_Content")?.to_vec())
    }
    fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }
}

/// `Result`/`Status` of a response, its width told by the remaining length: responses
/// in the other version's widths are accepted (`rest` is what follows the field).
fn lenient_result(r: &mut Reader<'_>, rest: usize, field: &str) -> Result<u32, String> {
    match r.remaining().checked_sub(rest) {
        Some(4) => r.u32(field),
        Some(1) => r.u8(field).map(u32::from),
        _ => Err(format!(
            "{} octets of body: neither the CMPP 3.0 nor the 2.0 layout",
            r.body.len()
        )),
    }
}

fn decode_body(command_id: u32, r: &mut Reader<'_>, version: Version) -> Result<Pdu, String> {
    use command::*;
    let tid = version.terminal_id_width();
    Ok(match command_id {
        CONNECT => Pdu::Connect(Connect {
            source_addr: r.text(6, "Source_Addr")?,
            authenticator_source: r.array16("AuthenticatorSource")?,
            version: r.u8("Version")?,
            timestamp: r.u32("Timestamp")?,
        }),
        CONNECT_RESP => Pdu::ConnectResp(ConnectResp {
            status: lenient_result(r, 17, "Status")?,
            authenticator_ismg: r.array16("AuthenticatorISMG")?,
            version: r.u8("Version")?,
        }),
        TERMINATE => Pdu::Terminate,
        TERMINATE_RESP => Pdu::TerminateResp,
        ACTIVE_TEST => Pdu::ActiveTest,
        // Some ISMGs send it without its Reserved octet.
        ACTIVE_TEST_RESP if r.remaining() == 0 => Pdu::ActiveTestResp(0),
        ACTIVE_TEST_RESP => Pdu::ActiveTestResp(r.u8("Reserved")?),
        SUBMIT => {
            let mut s = Submit {
                msg_id: r.u64("Msg_Id")?,
                pk_total: r.u8("Pk_total")?,
                pk_number: r.u8("Pk_number")?,
                registered_delivery: r.u8("Registered_Delivery")?,
                msg_level: r.u8("Msg_level")?,
                service_id: r.text(10, "Service_Id")?,
                fee_user_type: r.u8("Fee_UserType")?,
                fee_terminal_id: r.text(tid, "Fee_terminal_Id")?,
                ..Submit::default()
            };
            if version == Version::V30 {
                s.fee_terminal_type = r.u8("Fee_terminal_type")?;
            }
            s.tp_pid = r.u8("TP_pId")?;
            s.tp_udhi = r.u8("TP_udhi")?;
            s.msg_fmt = r.u8("Msg_Fmt")?;
            s.msg_src = r.text(6, "Msg_src")?;
            s.fee_type = r.text(2, "FeeType")?;
            s.fee_code = r.text(6, "FeeCode")?;
            s.valid_time = r.text(17, "ValId_Time")?;
            s.at_time = r.text(17, "At_Time")?;
            s.src_id = r.text(21, "Src_Id")?;
            let n = r.u8("DestUsr_tl")?;
            if n == 0 || n >= 100 {
                return Err(format!("DestUsr_tl {n}: 1 to 99 destinations"));
            }
            for _ in 0..n {
                s.dest_terminal_ids.push(r.text(tid, "Dest_terminal_Id")?);
            }
            if version == Version::V30 {
                s.dest_terminal_type = r.u8("Dest_terminal_type")?;
            }
            s.msg_content = r.content()?;
            match version {
                Version::V30 => s.link_id = r.text(20, "LinkID")?,
                Version::V20 => s.reserve = r.text(8, "Reserve")?,
            }
            Pdu::Submit(Box::new(s))
        }
        SUBMIT_RESP => Pdu::SubmitResp(SubmitResp {
            msg_id: r.u64("Msg_Id")?,
            result: lenient_result(r, 0, "Result")?,
        }),
        DELIVER => {
            let mut d = Deliver {
                msg_id: r.u64("Msg_Id")?,
                dest_id: r.text(21, "Dest_Id")?,
                service_id: r.text(10, "Service_Id")?,
                tp_pid: r.u8("TP_pid")?,
                tp_udhi: r.u8("TP_udhi")?,
                msg_fmt: r.u8("Msg_Fmt")?,
                src_terminal_id: r.text(tid, "Src_terminal_Id")?,
                ..Deliver::default()
            };
            if version == Version::V30 {
                d.src_terminal_type = r.u8("Src_terminal_type")?;
            }
            d.registered_delivery = r.u8("Registered_Delivery")?;
            d.msg_content = r.content()?;
            match version {
                Version::V30 => d.link_id = r.text(20, "LinkID")?,
                Version::V20 => d.reserve = r.text(8, "Reserved")?,
            }
            Pdu::Deliver(Box::new(d))
        }
        DELIVER_RESP => Pdu::DeliverResp(DeliverResp {
            msg_id: r.u64("Msg_Id")?,
            result: lenient_result(r, 0, "Result")?,
        }),
        other => return Err(format!("unknown Command_Id 0x{other:08X}")),
    })
}

impl Report {
    /// Length of an encoded report: 71 in 3.0, 60 in 2.0.
    pub fn encoded_len(version: Version) -> usize {
        8 + 7 + 10 + 10 + version.terminal_id_width() + 4
    }

    /// Encodes the report as the `Msg_Content` of a `CMPP_DELIVER`.
    ///
    /// # Errors
    /// [`EncodeError::TooLong`] when a field is longer than its width.
    pub fn encode(&self, version: Version) -> Result<Vec<u8>, EncodeError> {
        let mut buf = BytesMut::with_capacity(Self::encoded_len(version));
        let mut w = Writer { buf: &mut buf };
        w.u64(self.msg_id);
        w.text("Stat", &self.stat, 7)?;
        w.text("Submit_time", &self.submit_time, 10)?;
        w.text("Done_time", &self.done_time, 10)?;
        w.text(
            "Dest_terminal_Id",
            &self.dest_terminal_id,
            version.terminal_id_width(),
        )?;
        w.u32(self.smsc_sequence);
        Ok(buf.to_vec())
    }

    /// Decodes a report from a `CMPP_DELIVER`'s `Msg_Content`. A content of the other
    /// version's length (60 or 71 octets) is decoded in that layout.
    ///
    /// # Errors
    /// A description when the length is neither layout's.
    pub fn decode(content: &[u8], version: Version) -> Result<Report, String> {
        let layout = if content.len() == Self::encoded_len(version) {
            version
        } else if content.len() == Self::encoded_len(Version::V20) {
            Version::V20
        } else if content.len() == Self::encoded_len(Version::V30) {
            Version::V30
        } else {
            return Err(format!(
                "status report of {} octets (expected {})",
                content.len(),
                Self::encoded_len(version)
            ));
        };
        let mut r = Reader {
            body: content,
            pos: 0,
        };
        Ok(Report {
            msg_id: r.u64("Msg_Id")?,
            stat: r.text(7, "Stat")?,
            submit_time: r.text(10, "Submit_time")?,
            done_time: r.text(10, "Done_time")?,
            dest_terminal_id: r.text(layout.terminal_id_width(), "Dest_terminal_Id")?,
            smsc_sequence: r.u32("SMSC_sequence")?,
        })
    }

    /// The MT's id split into its fields.
    pub fn msg_id(&self) -> MsgId {
        MsgId::from_u64(self.msg_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submit() -> Submit {
        Submit {
            pk_total: 1,
            pk_number: 1,
            registered_delivery: 1,
            service_id: "MJT".into(),
            fee_user_type: 0,
            msg_fmt: 15,
            msg_src: "901234".into(),
            fee_type: "02".into(),
            fee_code: "000010".into(),
            src_id: "1066888801".into(),
            dest_terminal_ids: vec!["13800138000".into()],
            msg_content: b"hi".to_vec(),
            ..Submit::default()
        }
    }

    #[test]
    fn submit_lengths_follow_the_spec_tables() {
        // §8.4.3.1: 129 fixed octets before the destinations in 3.0 (gocmpp and SMSGate
        // agree), 32 per destination, 1 + 1 + content + 20 after; 2.0: 117 + 21n + 1 +
        // content + 8.
        let p = Packet {
            sequence_id: 7,
            pdu: Pdu::Submit(Box::new(submit())),
        };
        assert_eq!(
            p.encode(Version::V30).expect("3.0").len(),
            12 + 129 + 32 + 2 + 2 + 20
        );
        assert_eq!(
            p.encode(Version::V20).expect("2.0").len(),
            12 + 117 + 21 + 1 + 2 + 8
        );
    }

    #[test]
    fn connect_resp_and_submit_resp_widths() {
        let c = Packet {
            sequence_id: 1,
            pdu: Pdu::ConnectResp(ConnectResp {
                status: 0,
                authenticator_ismg: [7; 16],
                version: 0x30,
            }),
        };
        assert_eq!(c.encode(Version::V30).expect("3.0").len(), 33);
        assert_eq!(c.encode(Version::V20).expect("2.0").len(), 30);
        let s = Packet {
            sequence_id: 1,
            pdu: Pdu::SubmitResp(SubmitResp {
                msg_id: 1,
                result: 300,
            }),
        };
        assert_eq!(s.encode(Version::V30).expect("3.0").len(), 24);
        assert!(matches!(
            s.encode(Version::V20),
            Err(EncodeError::Invalid(_))
        ));
        // A 2.0-width response decodes even on a 3.0 link.
        let two = Packet {
            sequence_id: 9,
            pdu: Pdu::SubmitResp(SubmitResp {
                msg_id: 5,
                result: 8,
            }),
        };
        let bytes = two.encode(Version::V20).expect("2.0");
        assert_eq!(Packet::decode(&bytes, Version::V30), Ok(two));
    }

    #[test]
    fn link_id_needs_3_0() {
        let mut s = submit();
        s.link_id = "LINK0001".into();
        let p = Packet {
            sequence_id: 1,
            pdu: Pdu::Submit(Box::new(s)),
        };
        assert!(p.encode(Version::V30).is_ok());
        assert!(matches!(
            p.encode(Version::V20),
            Err(EncodeError::Invalid(_))
        ));
    }

    #[test]
    fn too_long_fields_are_refused_not_cut() {
        let mut s = submit();
        s.fee_code = "1234567".into();
        let p = Packet {
            sequence_id: 1,
            pdu: Pdu::Submit(Box::new(s)),
        };
        let mut buf = BytesMut::new();
        assert_eq!(
            p.encode_into(Version::V30, &mut buf),
            Err(EncodeError::TooLong {
                field: "FeeCode",
                len: 7,
                max: 6
            })
        );
        assert!(buf.is_empty(), "nothing half-written");
    }

    #[test]
    fn report_lengths() {
        assert_eq!(Report::encoded_len(Version::V30), 71);
        assert_eq!(Report::encoded_len(Version::V20), 60);
    }
}
