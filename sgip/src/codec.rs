//! SGIP 1.2 packets: the header, the three-part sequence number, every SP↔SMG command
//! body, and framing with a length guard.
//!
//! Source: 中国联通短消息网关系统接口协议 SGIP 1.2 (the "SGIP 1.2 specification"), chapter
//! "消息定义" (message definitions): the message header table, the command-ID table,
//! and one field table per command (Bind, Bind_Resp, Unbind, Unbind_Resp, Submit,
//! Submit_Resp, Deliver, Deliver_Resp, Report, Report_Resp); error codes from its
//! "错误代码" table (see [`crate::result`]). Field widths were cross-checked against
//! SMSGate's `SgipSubmitRequest`/`SgipDeliverRequest`/`SgipReportRequest` packet
//! structures.
//!
//! # Citations: what is verified
//! * **§3.3 通信节点编号规则** (node ids: SMG `1AAAAX`, SMSC `2AAAAX`, SP `3AAAAQQQQQ`,
//!   GNS `4AAAAX`; [`SequenceNumber::node_id`]): the section number is quoted with the
//!   rule by two independent SP implementations (one cites "参考3.3节", one "3.3通信节点
//!   编号规则").
//! * **Field widths and order** of Bind, Submit, Deliver, Report and the responses
//!   (the Submit table: SPNumber 21, ChargeNumber 21, UserCount 1, UserNumber 21 ×
//!   UserCount, CorpId 5, ServiceType 10, FeeType 1, FeeValue 6, GivenValue 6,
//!   AgentFlag 1, MorelatetoMTFlag 1, Priority 1, ExpireTime 16, ScheduleTime 16,
//!   ReportFlag 1, TP_pid 1, TP_udhi 1, MessageCoding 1, MessageType 1, MessageLength
//!   4, MessageContent, Reserve 8): checked field by field against `yedamao/go_sgip`
//!   (`sgip/protocol/op_submit.go`, `op_deliver.go`, `op_report.go`, `op_bind.go`) as
//!   well as SMSGate; the test `body_sizes_match_the_field_tables` pins the sizes.
//! * **Value tables quoted from the specification's wording** by several
//!   implementations (`bromine0x23/sgip` `SgipConstants`, go_sgip, SMSGate): ReportFlag
//!   0 "只有最后出错时要返回状态报告", 1 "无论最后是否成功都要返回状态报告", 2 "不需要返回
//!   状态报告", 3 "仅携带包月计费信息，不下发给用户，要返回状态报告"; MorelatetoMTFlag 0
//!   "MO点播引起的第一条MT消息", 1 "…非第一条MT消息", 2 "非MO点播引起的MT消息", 3 "系统反馈
//!   引起的MT消息"; Login Type 1 "SP向SMG建立的连接", 2 "SMG向SP建立的连接".
//! * **Not verified: the section numbers of the command tables** (Bind, Submit,
//!   Deliver, Report, the error codes). No copy of the specification with its
//!   numbering could be found among published sources, and the implementations cite
//!   no numbers for them, so they are cited here by table name only.
//!
//! # Layout (all integers big-endian)
//! | part | bytes |
//! | --- | --- |
//! | Message Length (header included) | 4 |
//! | Command ID | 4 |
//! | Sequence Number: node id, time `MMDDHHMMSS` as a number, counter | 4 + 4 + 4 |
//! | body | Message Length − 20 |
//!
//! *Octet String* fields are fixed width, ASCII, right-padded with NUL; decoding stops at
//! the first NUL. *Integer* fields are unsigned big-endian.
//!
//! # Errors and robustness
//! * [`SgipCodec`] cuts each frame by its Message Length *before* decoding the body. A
//!   length below 20 or above [`MAX_MESSAGE_LENGTH`] is a fatal [`CodecError`] (the
//!   stream cannot be re-synchronised; nothing is allocated for it).
//! * A body that does not decode (short, a non-ASCII Octet String, a non-numeric
//!   FeeValue, an unknown Command ID) yields [`Frame::Undecodable`] with the header
//!   intact, so the session answers it (the matching `*_Resp` with a non-zero Result)
//!   and keeps the link.
//! * Decoding never panics on any input (property-tested and fuzzed, `sgip/fuzz`).
//! * Trailing bytes after a body's last field are ignored: some provincial SMGs append
//!   fields (a LinkID) to Submit/Deliver.

use std::fmt;
use std::str::FromStr;

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Size of the SGIP header: Message Length (4) + Command ID (4) + Sequence Number (12).
pub const HEADER_LENGTH: usize = 20;
/// Largest Message Length accepted (16 KiB). The largest legal Submit (100 recipients,
/// 160 octets of content) is about 2.5 KiB.
pub const MAX_MESSAGE_LENGTH: usize = 16 * 1024;
/// Most recipients in one Submit (UserCount 1–100, Submit table).
pub const MAX_USER_COUNT: usize = 100;
/// Width of a phone number or service number field (SPNumber, ChargeNumber, UserNumber).
pub const NUMBER_WIDTH: usize = 21;

/// Command IDs (SGIP 1.2 command-ID table). A response is its request's ID with bit 31
/// set.
pub mod command {
    /// Bind.
    pub const BIND: u32 = 0x0000_0001;
    /// Bind_Resp.
    pub const BIND_RESP: u32 = 0x8000_0001;
    /// Unbind.
    pub const UNBIND: u32 = 0x0000_0002;
    /// Unbind_Resp.
    pub const UNBIND_RESP: u32 = 0x8000_0002;
    /// Submit (MT, SP → SMG).
    pub const SUBMIT: u32 = 0x0000_0003;
    /// Submit_Resp.
    pub const SUBMIT_RESP: u32 = 0x8000_0003;
    /// Deliver (MO, SMG → SP).
    pub const DELIVER: u32 = 0x0000_0004;
    /// Deliver_Resp.
    pub const DELIVER_RESP: u32 = 0x8000_0004;
    /// Report (status report of an earlier Submit, SMG → SP).
    pub const REPORT: u32 = 0x0000_0005;
    /// Report_Resp.
    pub const REPORT_RESP: u32 = 0x8000_0005;
    /// Bit 31: the command is a response.
    pub const RESP_BIT: u32 = 0x8000_0000;
}

/// The three-part Sequence Number of every SGIP header (SGIP 1.2, message header table):
/// the source node's id, the time the command was made (`MMDDHHMMSS` as a decimal
/// number, e.g. 1130062959 for 30 Nov 06:29:59) and a counter. A response echoes its
/// request's. SGIP's Submit_Resp carries no message id: the SMG's Report names the MT by
/// the Submit's sequence number ([`Report::submit_sequence`]), so its canonical string
/// ([`fmt::Display`]) is the MT's message id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SequenceNumber {
    /// Node id of the sender (an SP's is `3AAAAQQQQQ`: area code + corp id, §3.3).
    pub node_id: u32,
    /// `MMDDHHMMSS` as a number.
    pub timestamp: u32,
    /// Counter, wrapping.
    pub sequence: u32,
}

impl SequenceNumber {
    /// Reads 12 octets.
    fn read(buf: &mut &[u8]) -> Self {
        Self {
            node_id: buf.get_u32(),
            timestamp: buf.get_u32(),
            sequence: buf.get_u32(),
        }
    }

    fn write(&self, dst: &mut BytesMut) {
        dst.put_u32(self.node_id);
        dst.put_u32(self.timestamp);
        dst.put_u32(self.sequence);
    }
}

impl fmt::Display for SequenceNumber {
    /// `node-MMDDHHMMSS-counter`, the time zero-padded to 10 digits:
    /// `3075512345-1130062959-42`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{:010}-{}",
            self.node_id, self.timestamp, self.sequence
        )
    }
}

/// A string that is not a canonical [`SequenceNumber`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SGIP sequence number (want node-MMDDHHMMSS-counter): {0:?}")]
pub struct ParseSequenceError(pub String);

impl FromStr for SequenceNumber {
    type Err = ParseSequenceError;

    /// Parses the [`fmt::Display`] form.
    ///
    /// # Errors
    /// Anything but three dash-separated `u32`s.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseSequenceError(s.to_string());
        let mut parts = s.split('-');
        let mut next = || -> Result<u32, ParseSequenceError> {
            parts.next().ok_or_else(bad)?.parse().map_err(|_| bad())
        };
        let seq = Self {
            node_id: next()?,
            timestamp: next()?,
            sequence: next()?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(seq)
    }
}

/// Bind (SGIP 1.2 Bind table): Login Type 1, Login Name 16, Login Password 16, Reserve 8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// 1 = SP → SMG (the SP submits), 2 = SMG → SP (the SMG delivers), 3 = SMG ↔ SMG,
    /// 4 = SMG → GNS, 5 = GNS → SMG, 6 = GNS ↔ GNS, 11 = test link.
    pub login_type: u8,
    /// ≤ 16 ASCII chars.
    pub login_name: String,
    /// ≤ 16 ASCII chars.
    pub login_password: String,
    /// Reserve.
    pub reserve: [u8; 8],
}

/// Login Type of the SP's link to the SMG.
pub const LOGIN_SP_TO_SMG: u8 = 1;
/// Login Type of the SMG's link to the SP.
pub const LOGIN_SMG_TO_SP: u8 = 2;

/// Submit (SGIP 1.2 Submit table): an MT, SP → SMG, with the fee fields the SMG bills
/// from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submit {
    /// SPNumber (21): the SP's service number, extension appended.
    pub sp_number: String,
    /// ChargeNumber (21): who pays; empty (all zeros) = the recipient, `000000000000000000000`
    /// = the SP.
    pub charge_number: String,
    /// UserNumber (21 each) × UserCount (1, 1–100): the recipients, `86` + number.
    pub user_numbers: Vec<String>,
    /// CorpId (5): the SP's corp id.
    pub corp_id: String,
    /// ServiceType (10): the service code billed under.
    pub service_type: String,
    /// FeeType (1): 0 record only (offsets the SP's channel fee), 1 free, 2 per message,
    /// 3 monthly (包月), 4 capped, 5 charged by the SP.
    pub fee_type: u8,
    /// FeeValue (6, decimal text): the fee in fen, 0–99999 (the monthly fee for 包月).
    pub fee_value: u32,
    /// GivenValue (6, decimal text): fen given to the user free, 0–99999.
    pub given_value: u32,
    /// AgentFlag (1): 0 receivable (应收), 1 collected (实收).
    pub agent_flag: u8,
    /// MorelatetoMTFlag (1): 0 first reply to a user's MO, 1 later reply, 2 unsolicited,
    /// 3 system message.
    pub morelateto_mt_flag: u8,
    /// Priority (1): 0–9.
    pub priority: u8,
    /// ExpireTime (16): `YYMMDDhhmmsstnnp` or empty.
    pub expire_time: String,
    /// ScheduleTime (16): `YYMMDDhhmmsstnnp` or empty (send now).
    pub schedule_time: String,
    /// ReportFlag (1): 0 report on failure only, 1 always, 2 never, 3 monthly billing
    /// record only (not delivered to the phone, reported: "仅携带包月计费信息，不下发给
    /// 用户，要返回状态报告").
    pub report_flag: u8,
    /// TP_pid (1), GSM 03.40.
    pub tp_pid: u8,
    /// TP_udhi (1): 1 when the content starts with a user data header.
    pub tp_udhi: u8,
    /// MessageCoding (1): 0 ASCII, 3 written to SIM, 4 binary, 8 UCS-2, 15 GBK.
    pub message_coding: u8,
    /// MessageType (1): 0 short message.
    pub message_type: u8,
    /// MessageContent (MessageLength (4) octets, UDH included).
    pub message_content: Vec<u8>,
    /// Reserve (8).
    pub reserve: [u8; 8],
}

/// Deliver (SGIP 1.2 Deliver table): an MO, SMG → SP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliver {
    /// UserNumber (21): the handset.
    pub user_number: String,
    /// SPNumber (21): the service number it was sent to.
    pub sp_number: String,
    /// TP_pid (1).
    pub tp_pid: u8,
    /// TP_udhi (1).
    pub tp_udhi: u8,
    /// MessageCoding (1): as in [`Submit::message_coding`].
    pub message_coding: u8,
    /// MessageContent (MessageLength (4) octets).
    pub message_content: Vec<u8>,
    /// Reserve (8).
    pub reserve: [u8; 8],
}

/// Report (SGIP 1.2 Report table): the status of an earlier Submit, SMG → SP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// SubmitSequenceNumber (12): the Submit's header sequence number.
    pub submit_sequence: SequenceNumber,
    /// ReportType (1): 0 for a Submit, 1 for a forwarded Deliver.
    pub report_type: u8,
    /// UserNumber (21): the recipient.
    pub user_number: String,
    /// State (1): 0 delivered, 1 waiting, 2 failed.
    pub state: u8,
    /// ErrorCode (1): the reason when State is 2 (error-code table).
    pub error_code: u8,
    /// Reserve (8).
    pub reserve: [u8; 8],
}

/// Report State: delivered.
pub const STATE_DELIVERED: u8 = 0;
/// Report State: waiting to be sent.
pub const STATE_WAITING: u8 = 1;
/// Report State: failed.
pub const STATE_FAILED: u8 = 2;

/// Every response body of SGIP 1.2 (Bind_Resp, Submit_Resp, Deliver_Resp, Report_Resp):
/// Result 1, Reserve 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resp {
    /// Result: 0 success, else the error-code table ([`crate::result`]).
    pub result: u8,
    /// Reserve.
    pub reserve: [u8; 8],
}

impl Resp {
    /// A response with `result` and an empty Reserve.
    pub fn new(result: u8) -> Self {
        Self {
            result,
            reserve: [0; 8],
        }
    }
}

/// A decoded SGIP command body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// Bind.
    Bind(Bind),
    /// Bind_Resp.
    BindResp(Resp),
    /// Unbind (no body).
    Unbind,
    /// Unbind_Resp (no body).
    UnbindResp,
    /// Submit.
    Submit(Box<Submit>),
    /// Submit_Resp.
    SubmitResp(Resp),
    /// Deliver.
    Deliver(Box<Deliver>),
    /// Deliver_Resp.
    DeliverResp(Resp),
    /// Report.
    Report(Report),
    /// Report_Resp.
    ReportResp(Resp),
}

impl Pdu {
    /// The Command ID.
    pub fn command_id(&self) -> u32 {
        match self {
            Pdu::Bind(_) => command::BIND,
            Pdu::BindResp(_) => command::BIND_RESP,
            Pdu::Unbind => command::UNBIND,
            Pdu::UnbindResp => command::UNBIND_RESP,
            Pdu::Submit(_) => command::SUBMIT,
            Pdu::SubmitResp(_) => command::SUBMIT_RESP,
            Pdu::Deliver(_) => command::DELIVER,
            Pdu::DeliverResp(_) => command::DELIVER_RESP,
            Pdu::Report(_) => command::REPORT,
            Pdu::ReportResp(_) => command::REPORT_RESP,
        }
    }

    /// The response to a request with this Command ID, carrying `result`; `None` for a
    /// response or an unknown ID other than a request (bit 31 clear), which gets
    /// a bare `Result`/`Reserve` body like every SGIP response.
    pub fn response_to(command_id: u32, result: u8) -> Option<Pdu> {
        let resp = Resp::new(result);
        Some(match command_id {
            command::BIND => Pdu::BindResp(resp),
            command::UNBIND => Pdu::UnbindResp,
            command::SUBMIT => Pdu::SubmitResp(resp),
            command::DELIVER => Pdu::DeliverResp(resp),
            command::REPORT => Pdu::ReportResp(resp),
            _ => return None,
        })
    }
}

/// One packet: header sequence number and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The header's Sequence Number.
    pub sequence: SequenceNumber,
    /// The body.
    pub pdu: Pdu,
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// An Octet String longer than its field, or not ASCII, or holding a NUL.
    #[error("{field}: {value:?} does not fit {width} ASCII octets without NUL")]
    Field {
        /// Field name as in the specification.
        field: &'static str,
        /// The value.
        value: String,
        /// Field width.
        width: usize,
    },
    /// A number outside its range (FeeValue/GivenValue > 99999, UserCount 0 or > 100).
    #[error("{field}: {value} outside {range}")]
    Range {
        /// Field name.
        field: &'static str,
        /// The value.
        value: u64,
        /// The allowed range.
        range: &'static str,
    },
    /// The packet would exceed [`MAX_MESSAGE_LENGTH`].
    #[error("packet of {0} octets exceeds {MAX_MESSAGE_LENGTH}")]
    TooLong(usize),
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ends before a field.
    #[error("body too short: {field} needs {need} octets, {have} left")]
    Short {
        /// The field being read.
        field: &'static str,
        /// Octets needed.
        need: usize,
        /// Octets left.
        have: usize,
    },
    /// An Octet String with non-ASCII octets.
    #[error("{0}: not ASCII")]
    NotAscii(&'static str),
    /// FeeValue/GivenValue not a decimal number.
    #[error("{field}: not a decimal number: {value:?}")]
    NotNumeric {
        /// The field.
        field: &'static str,
        /// Its text.
        value: String,
    },
    /// UserCount 0 or above 100.
    #[error("UserCount {0} outside 1..=100")]
    UserCount(u8),
    /// Unknown or unsupported Command ID.
    #[error("unknown Command ID {0:#010x}")]
    UnknownCommand(u32),
}

// ---- encoding ----

fn put_str(
    dst: &mut BytesMut,
    field: &'static str,
    value: &str,
    width: usize,
) -> Result<(), EncodeError> {
    let bytes = value.as_bytes();
    if bytes.len() > width || !value.is_ascii() || bytes.contains(&0) {
        return Err(EncodeError::Field {
            field,
            value: value.to_string(),
            width,
        });
    }
    dst.put_slice(bytes);
    dst.put_bytes(0, width - bytes.len());
    Ok(())
}

fn put_fen(dst: &mut BytesMut, field: &'static str, value: u32) -> Result<(), EncodeError> {
    if value > 99_999 {
        return Err(EncodeError::Range {
            field,
            value: value.into(),
            range: "0..=99999 fen",
        });
    }
    put_str(dst, field, &value.to_string(), 6)
}

/// Encodes a whole packet (header included).
///
/// # Errors
/// [`EncodeError`] when a field does not fit its width or range.
pub fn encode(packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let start = dst.len();
    dst.put_u32(0); // patched below
    dst.put_u32(packet.pdu.command_id());
    packet.sequence.write(dst);
    match &packet.pdu {
        Pdu::Bind(b) => {
            dst.put_u8(b.login_type);
            put_str(dst, "Login Name", &b.login_name, 16)?;
            put_str(dst, "Login Password", &b.login_password, 16)?;
            dst.put_slice(&b.reserve);
        }
        Pdu::BindResp(r) | Pdu::SubmitResp(r) | Pdu::DeliverResp(r) | Pdu::ReportResp(r) => {
            dst.put_u8(r.result);
            dst.put_slice(&r.reserve);
        }
        Pdu::Unbind | Pdu::UnbindResp => {}
        Pdu::Submit(s) => {
            put_str(dst, "SPNumber", &s.sp_number, NUMBER_WIDTH)?;
            put_str(dst, "ChargeNumber", &s.charge_number, NUMBER_WIDTH)?;
            let count = s.user_numbers.len();
            if count == 0 || count > MAX_USER_COUNT {
                return Err(EncodeError::Range {
                    field: "UserCount",
                    value: count as u64,
                    range: "1..=100",
                });
            }
            dst.put_u8(count as u8);
            for n in &s.user_numbers {
                put_str(dst, "UserNumber", n, NUMBER_WIDTH)?;
            }
            put_str(dst, "CorpId", &s.corp_id, 5)?;
            put_str(dst, "ServiceType", &s.service_type, 10)?;
            dst.put_u8(s.fee_type);
            put_fen(dst, "FeeValue", s.fee_value)?;
            put_fen(dst, "GivenValue", s.given_value)?;
            dst.put_u8(s.agent_flag);
            dst.put_u8(s.morelateto_mt_flag);
            dst.put_u8(s.priority);
            put_str(dst, "ExpireTime", &s.expire_time, 16)?;
            put_str(dst, "ScheduleTime", &s.schedule_time, 16)?;
            dst.put_u8(s.report_flag);
            dst.put_u8(s.tp_pid);
            dst.put_u8(s.tp_udhi);
            dst.put_u8(s.message_coding);
            dst.put_u8(s.message_type);
            put_content(dst, &s.message_content)?;
            dst.put_slice(&s.reserve);
        }
        Pdu::Deliver(d) => {
            put_str(dst, "UserNumber", &d.user_number, NUMBER_WIDTH)?;
            put_str(dst, "SPNumber", &d.sp_number, NUMBER_WIDTH)?;
            dst.put_u8(d.tp_pid);
            dst.put_u8(d.tp_udhi);
            dst.put_u8(d.message_coding);
            put_content(dst, &d.message_content)?;
            dst.put_slice(&d.reserve);
        }
        Pdu::Report(r) => {
            r.submit_sequence.write(dst);
            dst.put_u8(r.report_type);
            put_str(dst, "UserNumber", &r.user_number, NUMBER_WIDTH)?;
            dst.put_u8(r.state);
            dst.put_u8(r.error_code);
            dst.put_slice(&r.reserve);
        }
    }
    let len = dst.len() - start;
    if len > MAX_MESSAGE_LENGTH {
        dst.truncate(start);
        return Err(EncodeError::TooLong(len));
    }
    dst[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

fn put_content(dst: &mut BytesMut, content: &[u8]) -> Result<(), EncodeError> {
    if content.len() > MAX_MESSAGE_LENGTH {
        return Err(EncodeError::TooLong(content.len()));
    }
    dst.put_u32(content.len() as u32);
    dst.put_slice(content);
    Ok(())
}

/// Encodes a packet into a new buffer.
///
/// # Errors
/// As [`encode`].
pub fn to_bytes(packet: &Packet) -> Result<BytesMut, EncodeError> {
    let mut dst = BytesMut::new();
    encode(packet, &mut dst)?;
    Ok(dst)
}

// ---- decoding ----

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Short {
                field,
                need: n,
                have: self.0.len(),
            });
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(field, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn str(&mut self, field: &'static str, width: usize) -> Result<String, DecodeError> {
        let raw = self.take(field, width)?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let s = &raw[..end];
        if !s.is_ascii() {
            return Err(DecodeError::NotAscii(field));
        }
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    /// A 6-octet decimal fee; empty (all NUL or blanks) reads as 0.
    fn fen(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let s = self.str(field, 6)?;
        let t = s.trim();
        if t.is_empty() {
            return Ok(0);
        }
        if !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::NotNumeric {
                field,
                value: s.clone(),
            });
        }
        // At most 6 digits: fits u32.
        t.parse()
            .map_err(|_| DecodeError::NotNumeric { field, value: s })
    }

    fn reserve(&mut self) -> Result<[u8; 8], DecodeError> {
        let b = self.take("Reserve", 8)?;
        let mut r = [0; 8];
        r.copy_from_slice(b);
        Ok(r)
    }

    fn content(&mut self) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32("MessageLength")? as usize;
        Ok(self.take("MessageContent", len)?.to_vec())
    }

    fn sequence(&mut self, field: &'static str) -> Result<SequenceNumber, DecodeError> {
        let mut b = self.take(field, 12)?;
        Ok(SequenceNumber::read(&mut b))
    }

    fn resp(&mut self) -> Result<Resp, DecodeError> {
        Ok(Resp {
            result: self.u8("Result")?,
            reserve: self.reserve()?,
        })
    }
}

/// Decodes a body of `command_id` (the header already read).
///
/// # Errors
/// [`DecodeError`] for a short or malformed body or an unknown Command ID. Never panics.
pub fn decode_body(command_id: u32, body: &[u8]) -> Result<Pdu, DecodeError> {
    let mut r = Reader(body);
    Ok(match command_id {
        command::BIND => Pdu::Bind(Bind {
            login_type: r.u8("Login Type")?,
            login_name: r.str("Login Name", 16)?,
            login_password: r.str("Login Password", 16)?,
            reserve: r.reserve()?,
        }),
        command::BIND_RESP => Pdu::BindResp(r.resp()?),
        command::UNBIND => Pdu::Unbind,
        command::UNBIND_RESP => Pdu::UnbindResp,
        command::SUBMIT => {
            let sp_number = r.str("SPNumber", NUMBER_WIDTH)?;
            let charge_number = r.str("ChargeNumber", NUMBER_WIDTH)?;
            let count = r.u8("UserCount")?;
            if count == 0 || usize::from(count) > MAX_USER_COUNT {
                return Err(DecodeError::UserCount(count));
            }
            let mut user_numbers = Vec::with_capacity(count.into());
            for _ in 0..count {
                user_numbers.push(r.str("UserNumber", NUMBER_WIDTH)?);
            }
            Pdu::Submit(Box::new(Submit {
                sp_number,
                charge_number,
                user_numbers,
                corp_id: r.str("CorpId", 5)?,
                service_type: r.str("ServiceType", 10)?,
                fee_type: r.u8("FeeType")?,
                fee_value: r.fen("FeeValue")?,
                given_value: r.fen("GivenValue")?,
                agent_flag: r.u8("AgentFlag")?,
                morelateto_mt_flag: r.u8("MorelatetoMTFlag")?,
                priority: r.u8("Priority")?,
                expire_time: r.str("ExpireTime", 16)?,
                schedule_time: r.str("ScheduleTime", 16)?,
                report_flag: r.u8("ReportFlag")?,
                tp_pid: r.u8("TP_pid")?,
                tp_udhi: r.u8("TP_udhi")?,
                message_coding: r.u8("MessageCoding")?,
                message_type: r.u8("MessageType")?,
                message_content: r.content()?,
                reserve: r.reserve()?,
            }))
        }
        command::SUBMIT_RESP => Pdu::SubmitResp(r.resp()?),
        command::DELIVER => Pdu::Deliver(Box::new(Deliver {
            user_number: r.str("UserNumber", NUMBER_WIDTH)?,
            sp_number: r.str("SPNumber", NUMBER_WIDTH)?,
            tp_pid: r.u8("TP_pid")?,
            tp_udhi: r.u8("TP_udhi")?,
            message_coding: r.u8("MessageCoding")?,
            message_content: r.content()?,
            reserve: r.reserve()?,
        })),
        command::DELIVER_RESP => Pdu::DeliverResp(r.resp()?),
        command::REPORT => Pdu::Report(Report {
            submit_sequence: r.sequence("SubmitSequenceNumber")?,
            report_type: r.u8("ReportType")?,
            user_number: r.str("UserNumber", NUMBER_WIDTH)?,
            state: r.u8("State")?,
            error_code: r.u8("ErrorCode")?,
            reserve: r.reserve()?,
        }),
        command::REPORT_RESP => Pdu::ReportResp(r.resp()?),
        other => return Err(DecodeError::UnknownCommand(other)),
    })
}

/// The header of a frame whose body did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// Command ID from the header.
    pub command_id: u32,
    /// Sequence Number from the header (echoed in the answer).
    pub sequence: SequenceNumber,
    /// Why.
    pub error: DecodeError,
}

impl Undecodable {
    /// True when the frame is a response (bit 31 of the Command ID).
    pub fn is_response(&self) -> bool {
        self.command_id & command::RESP_BIT != 0
    }
}

/// One frame read from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A decoded packet.
    Packet(Box<Packet>),
    /// A frame with a readable header and an unreadable body.
    Undecodable(Undecodable),
}

/// Fatal framing errors: the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Message Length outside `20..=MAX_MESSAGE_LENGTH`.
    #[error("invalid Message Length {0} (allowed {HEADER_LENGTH}..={MAX_MESSAGE_LENGTH})")]
    BadLength(u32),
    /// A packet that cannot be encoded (a bug upstream; the session checks first).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// Socket error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes one complete frame (`frame.len() >= 20`, its Message Length).
pub fn decode_frame(frame: &[u8]) -> Frame {
    let mut head = &frame[4..HEADER_LENGTH];
    let command_id = head.get_u32();
    let sequence = SequenceNumber::read(&mut head);
    match decode_body(command_id, &frame[HEADER_LENGTH..]) {
        Ok(pdu) => Frame::Packet(Box::new(Packet { sequence, pdu })),
        Err(error) => Frame::Undecodable(Undecodable {
            command_id,
            sequence,
            error,
        }),
    }
}

/// Decodes the first frame of `src` if complete: `Ok(None)` when more octets are needed.
///
/// # Errors
/// [`CodecError::BadLength`] for a Message Length outside `20..=MAX_MESSAGE_LENGTH`.
pub fn decode_from(src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    if src.len() < 4 {
        return Ok(None);
    }
    let len_u32 = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
    let len = len_u32 as usize;
    if !(HEADER_LENGTH..=MAX_MESSAGE_LENGTH).contains(&len) {
        return Err(CodecError::BadLength(len_u32));
    }
    if src.len() < len {
        src.reserve(len - src.len());
        return Ok(None);
    }
    let frame = src.split_to(len);
    Ok(Some(decode_frame(&frame)))
}

/// [`tokio_util::codec`] framing: decodes [`Frame`]s, encodes [`Packet`]s and
/// pre-encoded bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct SgipCodec;

impl Decoder for SgipCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        decode_from(src)
    }
}

impl Encoder<Packet> for SgipCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Packet, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(encode(&item, dst)?)
    }
}

impl Encoder<bytes::Bytes> for SgipCodec {
    type Error = CodecError;

    fn encode(&mut self, item: bytes::Bytes, dst: &mut BytesMut) -> Result<(), CodecError> {
        dst.extend_from_slice(&item);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_string_round_trips() {
        let s = SequenceNumber {
            node_id: 3_075_512_345,
            timestamp: 130_062_959,
            sequence: 42,
        };
        assert_eq!(s.to_string(), "3075512345-0130062959-42");
        assert_eq!(s.to_string().parse::<SequenceNumber>(), Ok(s));
        assert!("1-2".parse::<SequenceNumber>().is_err());
        assert!("1-2-3-4".parse::<SequenceNumber>().is_err());
        assert!("a-2-3".parse::<SequenceNumber>().is_err());
    }

    /// Body sizes from the SGIP 1.2 field tables: Bind 41, every Resp 9, Report 44,
    /// Submit with one recipient and n octets 144 + n, Deliver 57 + n.
    #[test]
    fn body_sizes_match_the_field_tables() {
        let seq = SequenceNumber::default();
        let len = |pdu: Pdu| to_bytes(&Packet { sequence: seq, pdu }).map(|b| b.len() - 20);
        let bind = Bind {
            login_type: 1,
            login_name: "sp".into(),
            login_password: "pw".into(),
            reserve: [0; 8],
        };
        assert_eq!(len(Pdu::Bind(bind)), Ok(41));
        assert_eq!(len(Pdu::SubmitResp(Resp::new(0))), Ok(9));
        assert_eq!(len(Pdu::Unbind), Ok(0));
        assert_eq!(len(Pdu::Report(Report::default())), Ok(44));
        let submit = Submit {
            user_numbers: vec!["8613000000000".into()],
            message_content: b"hello".to_vec(),
            ..Submit::default()
        };
        assert_eq!(len(Pdu::Submit(Box::new(submit))), Ok(144 + 5));
        let deliver = Deliver {
            message_content: b"hi".to_vec(),
            ..Deliver::default()
        };
        assert_eq!(len(Pdu::Deliver(Box::new(deliver))), Ok(57 + 2));
    }

    #[test]
    fn fields_out_of_range_are_refused() {
        let seq = SequenceNumber::default();
        let submit = |s: Submit| {
            to_bytes(&Packet {
                sequence: seq,
                pdu: Pdu::Submit(Box::new(s)),
            })
        };
        assert!(matches!(
            submit(Submit::default()),
            Err(EncodeError::Range {
                field: "UserCount",
                ..
            })
        ));
        let one = vec!["1".to_string()];
        assert!(matches!(
            submit(Submit {
                user_numbers: one.clone(),
                fee_value: 100_000,
                ..Submit::default()
            }),
            Err(EncodeError::Range {
                field: "FeeValue",
                ..
            })
        ));
        assert!(matches!(
            submit(Submit {
                user_numbers: one,
                sp_number: "1".repeat(22),
                ..Submit::default()
            }),
            Err(EncodeError::Field {
                field: "SPNumber",
                ..
            })
        ));
    }

    #[test]
    fn bad_length_is_fatal_and_short_body_is_undecodable() {
        let mut src = BytesMut::from(&[0u8, 0, 0, 5, 0, 0, 0, 1][..]);
        assert!(matches!(
            decode_from(&mut src),
            Err(CodecError::BadLength(5))
        ));
        // A Submit header with a 3-octet body.
        let mut frame = BytesMut::new();
        frame.put_u32(23);
        frame.put_u32(command::SUBMIT);
        frame.put_bytes(7, 12);
        frame.put_slice(b"abc");
        frame.put_slice(b"tail"); // the next frame's first octets stay in the buffer
        let got = decode_from(&mut frame).ok().flatten();
        assert!(
            matches!(got, Some(Frame::Undecodable(u)) if !u.is_response()
            && matches!(u.error, DecodeError::Short { .. }))
        );
        assert_eq!(&frame[..], b"tail");
    }
}
