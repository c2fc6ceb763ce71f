//! The protocol-neutral session: what the relay asks of a bind to an operator
//! ([`Session`], opened by a [`Connect`]), the requests it sends ([`SubmitRequest`], with
//! the operator fee fields in [`Fee`]) and what comes back ([`SubmitOutcome`],
//! [`SubmitError`], [`Inbound`] events with their [`Ack`]).
//!
//! Field names follow SMPP where a concept is shared (`short_message`, `data_coding`,
//! `esm_class` bit 0x40 = TP-UDHI); each protocol maps them onto its own fields (CMPP
//! `Msg_Content`/`Msg_Fmt`/`TP_udhi`, SGIP `MessageContent`/`MessageCoding`/`TP_udhi`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::encode::{ConcatInfo, Reassembler, Segment};
use crate::status::StatusClass;

/// How the operator bills the user for one MT (CMPP 3.0 §8.4.3.1 `FeeType`; SGIP 1.2
/// Submit table, `FeeType`, whose section number is not verified: see `tongdao_sgip::codec`).
/// Source: issue 16 item 4, R-1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeeType {
    /// Free to the user (CMPP `01`, SGIP 1).
    Free,
    /// An information fee per message (点播, CMPP `02`, SGIP 2).
    PerMessage,
    /// Covered by a monthly subscription (包月, CMPP `03`, SGIP 3): delivered, not billed
    /// per message.
    Monthly,
    /// The monthly fee itself (包月扣费记录): a billing record the user does not receive
    /// (CMPP 2.0 `Registered_Delivery` 2; SGIP `ReportFlag` 3). Protocols without such a
    /// record send it as [`FeeType::Monthly`].
    MonthlyRecordOnly,
}

/// Whose number is billed (CMPP `Fee_UserType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeeUserType {
    /// The MT's destination (CMPP 0).
    Destination,
    /// The MT's source terminal (CMPP 1).
    Source,
    /// The SP itself (CMPP 2).
    Sp,
    /// The number in [`Fee::charge_number`] (CMPP 3; SGIP always bills `ChargeNumber`).
    ChargeNumber,
}

/// The operator fee fields of one MT: what the operator bills the user on the
/// platform's behalf (代计费). Filled by the host from the service and the MT's charge
/// plan; SMPP sends none of it (SMPP 3.4 has no fee fields), CMPP and SGIP send it on
/// every submit. Source: issue 16 item 4, R-1.2.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fee {
    /// How the user is billed.
    pub fee_type: FeeType,
    /// The information fee in fen (CMPP `FeeCode`, SGIP `FeeValue`); 0 unless
    /// [`FeeType::PerMessage`] or a monthly fee record.
    pub fee_code_fen: u32,
    /// Whose number is billed.
    pub fee_user_type: FeeUserType,
    /// The billed user's number (CMPP `Fee_terminal_Id`, SGIP `ChargeNumber`).
    pub charge_number: String,
    /// The service's code at the operator (CMPP `Service_Id`, SGIP `ServiceType`).
    pub service_id: String,
    /// The operator's `LinkID` of the MO this MT answers (点播 replies, CMPP 3.0).
    pub link_id: Option<String>,
    /// The MT answers a user's MO (SGIP `MorelatetoMTFlag` 0 rather than 2).
    pub in_reply_to_mo: bool,
}

/// One message part to submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRequest {
    /// SMPP `service_type` (≤ 5 chars), usually empty; other protocols ignore it.
    pub service_type: String,
    /// Sender: service number (+ extension), ≤ 20 chars (CMPP `Src_Id`, SGIP `SPNumber`).
    pub source_addr: String,
    /// SMPP `source_addr_ton`.
    pub source_ton: u8,
    /// SMPP `source_addr_npi`.
    pub source_npi: u8,
    /// Recipient, ≤ 20 chars (CMPP `Dest_terminal_Id`, SGIP `UserNumber`).
    pub destination_addr: String,
    /// SMPP `dest_addr_ton`.
    pub dest_ton: u8,
    /// SMPP `dest_addr_npi`.
    pub dest_npi: u8,
    /// `esm_class`; bit 0x40 is TP-UDHI (`short_message` starts with a UDH).
    pub esm_class: u8,
    /// `data_coding`: 0x00 GSM 7-bit unpacked (SMPP only), 0x08 UCS-2.
    pub data_coding: u8,
    /// Message octets (≤ 140 for CMPP/SGIP, ≤ 254 for SMPP), UDH included.
    pub short_message: Vec<u8>,
    /// Part numbering of a long message (CMPP `Pk_total`/`Pk_number`).
    pub concat: Option<ConcatInfo>,
    /// Request a final delivery receipt.
    pub registered_delivery: bool,
    /// SMPP `validity_period` in SMPP absolute/relative format (16 chars), or empty.
    pub validity_period: String,
    /// SMPP TLVs (`sar_*`…): (tag, value); other protocols ignore them.
    pub tlvs: Vec<(u16, Vec<u8>)>,
    /// Operator fee fields; `None` sends the protocol's "free" defaults (SMPP never
    /// sends any).
    pub fee: Option<Fee>,
}

impl SubmitRequest {
    /// A request for one [`Segment`], receipt requested, no fee fields. TON/NPI: a
    /// source of digits is (0 unknown, 1 ISDN), an alphanumeric source (5, 0); a
    /// destination starting with `+` is sent without it as (1 international, 1),
    /// otherwise (0, 1).
    pub fn new(source_addr: &str, destination_addr: &str, segment: &Segment) -> Self {
        let numeric = !source_addr.is_empty() && source_addr.bytes().all(|b| b.is_ascii_digit());
        let (source_ton, source_npi) = if numeric { (0, 1) } else { (5, 0) };
        let (dest, dest_ton) = match destination_addr.strip_prefix('+') {
            Some(rest) => (rest, 1),
            None => (destination_addr, 0),
        };
        Self {
            service_type: String::new(),
            source_addr: source_addr.to_string(),
            source_ton,
            source_npi,
            destination_addr: dest.to_string(),
            dest_ton,
            dest_npi: 1,
            esm_class: segment.esm_class,
            data_coding: segment.data_coding,
            short_message: segment.short_message.clone(),
            concat: segment.concat,
            registered_delivery: true,
            validity_period: String::new(),
            tlvs: segment.tlvs.clone(),
            fee: None,
        }
    }

    /// The same request carrying `fee`.
    #[must_use]
    pub fn with_fee(mut self, fee: Option<Fee>) -> Self {
        self.fee = fee;
        self
    }
}

/// A submit the operator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitOutcome {
    /// The operator's message id from the response, as written (CMPP: the 64-bit
    /// `Msg_Id` in decimal; SGIP: the three-part sequence number as
    /// `node-time-seq`).
    pub message_id: String,
    /// How many times the request was sent (> 1 after throttling).
    pub attempts: u32,
}

/// Why a submit did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The request cannot be encoded (address too long…). Permanent.
    #[error("invalid submit: {0}")]
    Invalid(String),
    /// The bind is closed or closing; nothing was sent. Safe to resend elsewhere.
    #[error("not connected")]
    NotConnected,
    /// The operator answered with an error status.
    #[error("rejected: {name} ({class:?})")]
    Rejected {
        /// The protocol's result code (SMPP `command_status`, CMPP/SGIP `Result`).
        status: u32,
        /// Its name in the protocol's specification (`ESME_RTHROTTLED`), or `0x…`.
        name: String,
        /// How to treat it.
        class: StatusClass,
    },
    /// Sent, no response within the timeout: outcome unknown.
    #[error("no submit response within the timeout: outcome unknown")]
    Timeout,
    /// Sent, then the connection was lost before a response: outcome unknown.
    #[error("connection lost before the submit response: outcome unknown")]
    ConnectionLost,
    /// A response arrived with success but an unreadable body: the operator accepted
    /// the message but its id is unknown, so its receipt cannot be matched.
    #[error("unreadable submit response: {0}")]
    MalformedResponse(String),
}

impl SubmitError {
    /// True when the message may or may not have reached the operator.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            SubmitError::Timeout | SubmitError::ConnectionLost | SubmitError::MalformedResponse(_)
        )
    }

    /// How the relay should treat this failure: `Permanent` for invalid requests and
    /// permanent statuses, the status's class for rejections, `UnknownOutcome` when
    /// [`SubmitError::outcome_unknown`], `Temporary` for [`SubmitError::NotConnected`].
    pub fn class(&self) -> StatusClass {
        match self {
            SubmitError::Invalid(_) => StatusClass::Permanent,
            SubmitError::Rejected { class, .. } => *class,
            SubmitError::NotConnected => StatusClass::Temporary,
            SubmitError::Timeout
            | SubmitError::ConnectionLost
            | SubmitError::MalformedResponse(_) => StatusClass::UnknownOutcome,
        }
    }
}

/// A mobile-originated message (one part of it, if concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoPdu {
    /// The handset.
    pub source_addr: String,
    /// The service number (+ extension) it was sent to.
    pub destination_addr: String,
    /// SMPP `service_type`; CMPP `Service_Id`.
    pub service_type: String,
    /// `data_coding` (CMPP/SGIP: 8 UCS-2; 0x00 text the session already made GSM/ASCII).
    pub data_coding: u8,
    /// `esm_class` (bit 0x40: TP-UDHI).
    pub esm_class: u8,
    /// Raw message octets, UDH included.
    pub short_message: Vec<u8>,
    /// Concatenation info from the UDH (or SMPP `sar_*` TLVs).
    pub concat: Option<ConcatInfo>,
    /// This part's text, decoded. For concatenated MOs feed the parts to
    /// [`Reassembler`].
    pub text: String,
    /// The operator's `LinkID` for replies to this MO (CMPP 3.0 `CMPP_DELIVER`), to be
    /// sent back in [`Fee::link_id`]; `None` where the protocol has none.
    pub link_id: Option<String>,
}

impl MoPdu {
    /// Feeds this part to `reassembler`; returns the full text once every part is in
    /// (at once for a single-part MO).
    pub fn reassemble(&self, reassembler: &mut Reassembler) -> Option<String> {
        reassembler.push(
            &self.source_addr,
            self.data_coding,
            self.esm_class,
            &self.short_message,
            self.concat,
        )
    }
}

/// Events from the operator.
#[derive(Debug)]
pub enum Inbound {
    /// A delivery receipt. Unparsable receipts come with an empty `message_id` and state
    /// `Unknown`, so they can be kept.
    Receipt(crate::receipt::Receipt, Ack),
    /// A mobile-originated message.
    Mo(MoPdu, Ack),
    /// The connection is gone (the reason); no more events follow.
    Closed(String),
}

/// The answer to one inbound PDU, as the session will send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Stored: success (SMPP `ESME_ROK`, CMPP/SGIP `Result` 0).
    Ok,
    /// Not stored: a temporary error so the operator delivers it again (SMPP
    /// `ESME_RX_T_APPN`; CMPP/SGIP a non-zero `Result` the gateway retries).
    Retry,
    /// Refused with the protocol's own status code.
    Status(u32),
}

/// Acknowledgement of one inbound PDU. Call [`Ack::ack`] once it is stored; dropping it
/// answers [`Answer::Retry`] so the operator redelivers. An answer on a link that has
/// died is lost and the operator redelivers too: receipts and MOs are at-least-once.
pub struct Ack {
    respond: Option<Box<dyn FnOnce(Answer) + Send>>,
}

impl fmt::Debug for Ack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ack")
            .field("answered", &self.respond.is_none())
            .finish()
    }
}

impl Ack {
    /// An acknowledgement that calls `respond` with the answer, exactly once (a
    /// protocol session queues its response PDU there).
    pub fn new(respond: impl FnOnce(Answer) + Send + 'static) -> Self {
        Self {
            respond: Some(Box::new(respond)),
        }
    }

    /// Answers success.
    pub fn ack(mut self) {
        self.answer(Answer::Ok);
    }

    /// Answers with the protocol's `status` (e.g. SMPP `ESME_RX_P_APPN` for a permanent
    /// refusal).
    pub fn reject(mut self, status: u32) {
        self.answer(Answer::Status(status));
    }

    fn answer(&mut self, answer: Answer) {
        if let Some(respond) = self.respond.take() {
            respond(answer);
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.answer(Answer::Retry);
    }
}

/// One bound session to an operator, whatever the protocol. Clones share the session;
/// the relay submits from many tasks at once.
///
/// # Contract
/// * [`Session::submit`] applies the protocol's window, pacing and throttling back-off,
///   and returns `Ok` only for an accepted message; [`SubmitError::outcome_unknown`]
///   when the request may have reached the operator without an answer.
/// * [`Session::stop_submitting`] makes every submit not yet written fail with
///   [`SubmitError::NotConnected`] while those written keep waiting for their answers.
/// * [`Session::close_within`] stops submitting, waits up to `grace` for the answers of
///   those in flight (the rest fail as outcome unknown), logs out (unbind, terminate)
///   and closes.
/// * The session's inbound receiver yields [`Inbound::Closed`] last.
pub trait Session: Clone + Send + Sync + 'static {
    /// Sends one message part and waits for the operator's answer.
    fn submit(
        &self,
        request: &SubmitRequest,
    ) -> impl Future<Output = Result<SubmitOutcome, SubmitError>> + Send;

    /// Stops new submits (see the trait docs).
    fn stop_submitting(&self);

    /// Graceful close within `grace` (see the trait docs).
    fn close_within(&self, grace: Duration) -> impl Future<Output = ()> + Send;

    /// True once the session is closing or closed.
    fn is_closed(&self) -> bool;

    /// Resolves when the connection is closed.
    fn closed(&self) -> impl Future<Output = ()> + Send;

    /// Requests sent and still awaiting their response.
    fn in_flight(&self) -> usize;
}

/// How to open one session of a protocol: the settings of a bind. Each protocol crate
/// implements it on its client configuration (`tongdao_smpp::ClientConfig`, …).
pub trait Connect: Clone + Send + Sync + 'static {
    /// The session this opens.
    type Session: Session;
    /// Why connecting or logging in failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The protocol's short name for logs (`smpp`, `cmpp3`, `sgip12`).
    fn protocol(&self) -> &'static str;

    /// `host:port` of the operator's gateway (logs, jitter seed).
    fn address(&self) -> &str;

    /// Connects and logs in; returns the session and its inbound events.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<(Self::Session, mpsc::Receiver<Inbound>), Self::Error>> + Send;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn recorder() -> (Arc<Mutex<Vec<Answer>>>, impl Fn() -> Ack) {
        let answers = Arc::new(Mutex::new(Vec::new()));
        let a = answers.clone();
        let make = move || {
            let a = a.clone();
            Ack::new(move |answer| a.lock().expect("lock").push(answer))
        };
        (answers, make)
    }

    #[test]
    fn ack_answers_once_and_a_dropped_ack_asks_for_redelivery() {
        let (answers, ack) = recorder();
        ack().ack();
        drop(ack());
        ack().reject(0x65);
        assert_eq!(
            *answers.lock().expect("lock"),
            vec![Answer::Ok, Answer::Retry, Answer::Status(0x65)]
        );
    }

    #[test]
    fn outcome_classes() {
        assert_eq!(SubmitError::Timeout.class(), StatusClass::UnknownOutcome);
        assert!(SubmitError::ConnectionLost.outcome_unknown());
        assert!(!SubmitError::NotConnected.outcome_unknown());
        assert_eq!(SubmitError::NotConnected.class(), StatusClass::Temporary);
        assert_eq!(
            SubmitError::Invalid("x".into()).class(),
            StatusClass::Permanent
        );
        let rejected = SubmitError::Rejected {
            status: 8,
            name: "系统忙".into(),
            class: StatusClass::Throttled,
        };
        assert_eq!(rejected.class(), StatusClass::Throttled);
        assert_eq!(rejected.to_string(), "rejected: 系统忙 (Throttled)");
    }

    #[test]
    fn a_request_carries_the_segment_and_its_fee() {
        let segments = crate::encode::encode_in(
            &"中".repeat(80),
            crate::Alphabet::Ucs2,
            crate::Concat::Udh8(3),
        )
        .expect("encode");
        let fee = Fee {
            fee_type: FeeType::PerMessage,
            fee_code_fen: 200,
            fee_user_type: FeeUserType::Destination,
            charge_number: "13800138000".into(),
            service_id: "MJY0010101".into(),
            link_id: Some("1234567890".into()),
            in_reply_to_mo: true,
        };
        let request =
            SubmitRequest::new("1066881", "13800138000", &segments[1]).with_fee(Some(fee.clone()));
        assert_eq!(request.esm_class, 0x40);
        assert_eq!(request.concat.map(|c| (c.total, c.seq)), Some((2, 2)));
        assert_eq!(request.fee, Some(fee));
    }
}
