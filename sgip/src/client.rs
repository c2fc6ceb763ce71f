//! The SP's side towards the SMG: Bind (Login Type 1), Submit with a window and TPS,
//! outcomes keyed by the three-part sequence number, Unbind on close.
//!
//! SGIP links are short-lived by convention: the SMG closes links that stay idle, and
//! SPs open one when they have something to send. So a [`Client`] is not one connection
//! but a handle that connects and binds on demand (on the first submit, or the first
//! after a drop), closes the link with Unbind once it has been idle for
//! [`ClientConfig::idle_timeout`] with nothing in flight, and binds again on the next
//! submit.
//!
//! # Delivery semantics (the same classes as the SMPP session)
//! * [`Client::submit_mt`] (SGIP fields) and `Session::submit` (the relay's request,
//!   mapped by [`MtRequest::from_link`]) return `Ok` only for Result 0. The outcome's `message_id` is the
//!   canonical string of the Submit's [`SequenceNumber`]: SGIP's Submit_Resp carries no
//!   message id, and the SMG's Report names the MT by that sequence number.
//! * [`SubmitError::outcome_unknown`] is true when the Submit may have reached the SMG
//!   without an answer (timeout, link lost with it in flight, unreadable Submit_Resp).
//! * Nothing is resent on its own except after a throttling Result (11 node busy,
//!   33 queue full), which the SMG refused without accepting.
//!
//! # Closing
//! [`Client::close_within`] stops new submits ([`SubmitError::NotConnected`], nothing
//! sent), waits up to a grace for those in flight, sends Unbind, waits for Unbind_Resp
//! (at most the response timeout) and closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tongdao_link::{
    Fee, FeeType, FeeUserType, Lifecycle, Pacer, Pending, Session, StatusClass, SubmitError,
    SubmitOutcome, SubmitRequest,
};
use tracing::{debug, warn};

use crate::codec::{
    Bind, DecodeError, Frame, LOGIN_SP_TO_SMG, Packet, Pdu, SequenceNumber, SgipCodec, Submit,
    command,
};
use crate::link::{self, Minter, Out, OutTx};
use crate::result::{self, classify};
use crate::text::Segment;

/// Settings of the SP's link to one SMG.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the SMG.
    pub address: String,
    /// Login Name (≤ 16 ASCII chars).
    pub login_name: String,
    /// Login Password (≤ 16 ASCII chars).
    pub password: String,
    /// The SP's node id, the first part of every sequence number (`3AAAAQQQQQ`).
    pub node_id: u32,
    /// CorpId (≤ 5 chars) written in every Submit.
    pub corp_id: String,
    /// ServiceType (≤ 10 chars) for MTs whose request names none.
    pub service_type: String,
    /// Most Submits outstanding without a Submit_Resp.
    pub window: usize,
    /// Submits per second; 0 = unlimited.
    pub tps: u32,
    /// How long to wait for any response (Bind, Submit, Unbind).
    pub response_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// A link idle this long with nothing in flight is closed with Unbind; the next
    /// submit binds again. Zero keeps links open until closed.
    pub idle_timeout: Duration,
    /// First pause after a throttling Result; doubles per episode up to 32×.
    pub throttle_backoff: Duration,
    /// How often one Submit is resent after throttling before it fails.
    pub throttle_retries: u32,
    /// The top 8 bits of the counter part of every sequence number this client
    /// mints. A Report names its Submit by the sequence number alone, so two
    /// processes with one node id (a restart within the same second, two replicas)
    /// must mint with different incarnations, or a Report of one process's Submit
    /// matches the other's MT. Default 0; the host takes a new one from its store
    /// at every start.
    pub incarnation: u8,
}

impl ClientConfig {
    /// Defaults: no default ServiceType, window 16, unlimited TPS, 10 s response and connect timeouts, links
    /// closed after 30 s idle, 100 ms first throttle pause, 10 throttle retries.
    pub fn new(
        address: impl Into<String>,
        login_name: impl Into<String>,
        password: impl Into<String>,
        node_id: u32,
        corp_id: impl Into<String>,
    ) -> Self {
        Self {
            address: address.into(),
            login_name: login_name.into(),
            password: password.into(),
            node_id,
            corp_id: corp_id.into(),
            service_type: String::new(),
            window: 16,
            tps: 0,
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            throttle_backoff: Duration::from_millis(100),
            throttle_retries: 10,
            incarnation: 0,
        }
    }
}

/// The fee fields of one Submit in SGIP's own terms (SGIP 1.2 Submit table), for
/// callers that set them directly; the relay passes a [`tongdao_link::Fee`] instead and
/// [`SgipFee::from_link`] maps it. What the SMG bills must equal what the charge events
/// say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SgipFee {
    /// FeeType: 0 record only (offsets the SP's channel fee), 1 free, 2 per message,
    /// 3 monthly (包月), 4 capped, 5 SP-charged.
    pub fee_type: u8,
    /// FeeValue in fen (0–99999): the per-message fee, or the monthly fee for 包月.
    pub fee_value: u32,
    /// GivenValue in fen (0–99999).
    pub given_value: u32,
    /// ChargeNumber: the billed number; `000000000000000000000` = the SP pays; empty =
    /// the recipient (the specification allows empty only for group sends).
    pub charge_number: String,
    /// AgentFlag: 0 receivable (应收), 1 collected (实收).
    pub agent_flag: u8,
    /// MorelatetoMTFlag: 0 first reply to a user's MO, 1 later reply, 2 unsolicited,
    /// 3 system message.
    pub morelateto_mt_flag: u8,
    /// ReportFlag: 0 on failure only, 1 always, 2 never, 3 monthly billing record only
    /// (not delivered to the phone).
    pub report_flag: u8,
    /// ServiceType (≤ 10 chars): the service code billed under.
    pub service_type: String,
}

/// ChargeNumber meaning "the SP pays" (21 zeros).
pub const CHARGE_SP: &str = "000000000000000000000";

impl SgipFee {
    /// A free MT to `user`: FeeType 1, no value, `user` as ChargeNumber, AgentFlag 0,
    /// MorelatetoMTFlag 2 (unsolicited), ReportFlag 1 (always) or 2 (never).
    pub fn free(user: &str, report: bool) -> Self {
        Self {
            fee_type: 1,
            fee_value: 0,
            given_value: 0,
            charge_number: user.to_string(),
            agent_flag: 0,
            morelateto_mt_flag: 2,
            report_flag: if report { 1 } else { 2 },
            service_type: String::new(),
        }
    }

    /// The SGIP fields of the relay's fee for an MT to `user` (issue 16 item 4):
    ///
    /// | `tongdao_link` | SGIP |
    /// | --- | --- |
    /// | `None` | [`SgipFee::free`] |
    /// | `FeeType::Free` / `PerMessage` / `Monthly` | FeeType 1 / 2 / 3, ReportFlag 1 (2 without a receipt) |
    /// | `FeeType::MonthlyRecordOnly` | FeeType 3, ReportFlag 3 (billing record, not delivered) |
    /// | `fee_code_fen` | FeeValue (fen) |
    /// | `fee_user_type` Destination / Source / ChargeNumber / Sp | ChargeNumber `user` / `user` / `charge_number` / 21 zeros |
    /// | `service_id` | ServiceType |
    /// | `in_reply_to_mo` | MorelatetoMTFlag 0, else 2 |
    ///
    /// GivenValue is 0 and AgentFlag 0 (receivable); FeeType 0 (record only) has no
    /// counterpart in the relay's model and is sent only through [`MtRequest`].
    pub fn from_link(fee: Option<&Fee>, user: &str, report: bool) -> Self {
        let Some(fee) = fee else {
            return Self::free(user, report);
        };
        let report_flag = if report { 1 } else { 2 };
        let (fee_type, report_flag) = match fee.fee_type {
            FeeType::Free => (1, report_flag),
            FeeType::PerMessage => (2, report_flag),
            FeeType::Monthly => (3, report_flag),
            FeeType::MonthlyRecordOnly => (3, 3),
        };
        let charge_number = match fee.fee_user_type {
            FeeUserType::Destination | FeeUserType::Source => user.to_string(),
            FeeUserType::ChargeNumber => fee.charge_number.clone(),
            FeeUserType::Sp => CHARGE_SP.to_string(),
        };
        Self {
            fee_type,
            fee_value: fee.fee_code_fen,
            given_value: 0,
            charge_number,
            agent_flag: 0,
            morelateto_mt_flag: if fee.in_reply_to_mo { 0 } else { 2 },
            report_flag,
            service_type: fee.service_id.clone(),
        }
    }
}

/// One MT Submit to one recipient, in SGIP's own fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtRequest {
    /// SPNumber: the service number (+ extension), ≤ 21 chars.
    pub sp_number: String,
    /// UserNumber: the recipient, ≤ 21 chars.
    pub user_number: String,
    /// The fee fields and ServiceType.
    pub fee: SgipFee,
    /// Priority 0–9.
    pub priority: u8,
    /// ExpireTime (`YYMMDDhhmmsstnnp`) or empty.
    pub expire_time: String,
    /// ScheduleTime or empty.
    pub schedule_time: String,
    /// TP_pid.
    pub tp_pid: u8,
    /// TP_udhi.
    pub tp_udhi: u8,
    /// MessageCoding.
    pub message_coding: u8,
    /// MessageContent, UDH included.
    pub content: Vec<u8>,
}

impl MtRequest {
    /// A free request for one [`Segment`], report always.
    pub fn new(sp_number: &str, user_number: &str, segment: &Segment) -> Self {
        Self {
            sp_number: sp_number.to_string(),
            user_number: user_number.to_string(),
            fee: SgipFee::free(user_number, true),
            priority: 0,
            expire_time: String::new(),
            schedule_time: String::new(),
            tp_pid: 0,
            tp_udhi: segment.tp_udhi,
            message_coding: segment.message_coding,
            content: segment.content.clone(),
        }
    }

    /// The relay's request in SGIP fields: `data_coding` 8 (UCS-2) and other codings
    /// pass through as MessageCoding; 0 (GSM 7-bit unpacked, the relay's single-byte
    /// parts) is re-encoded as MessageCoding 0 ASCII when the text is ASCII (the SMG
    /// packs it, so 153 characters a part still fit), else as 15 GBK when that fits
    /// 140 octets. TP_udhi from `esm_class` 0x40; the fee fields by
    /// [`SgipFee::from_link`]; ServiceType from the fee's `service_id`, else
    /// [`ClientConfig::service_type`] (filled in by the client).
    ///
    /// # Errors
    /// [`SubmitError::Invalid`] for GSM 7-bit text that is neither ASCII nor fits as GBK
    /// (send it with `Alphabet::Ucs2`).
    pub fn from_link(request: &SubmitRequest) -> Result<Self, SubmitError> {
        let tp_udhi = u8::from(request.esm_class & tongdao_link::encode::ESM_UDHI != 0);
        let (message_coding, content) = if request.data_coding == tongdao_link::encode::DC_GSM7 {
            let (_, payload) = crate::text::split(tp_udhi, &request.short_message);
            let udh_len = request.short_message.len() - payload.len();
            let decoded = tongdao_link::encode::decode_payload(0, payload);
            let mut content = request.short_message[..udh_len].to_vec();
            if decoded.is_ascii() {
                content.extend_from_slice(decoded.as_bytes());
                (crate::text::CODING_ASCII, content)
            } else {
                // GSM 7-bit letters outside ASCII (é, £, €…): GBK has them, two octets
                // each, if the part still fits 140 octets.
                let (gbk, _, unmappable) = encoding_rs::GBK.encode(&decoded);
                if unmappable || udh_len + gbk.len() > 140 {
                    return Err(SubmitError::Invalid(format!(
                        "GSM 7-bit text {decoded:?} is neither ASCII nor 140 octets of GBK; \
                         send it in UCS-2 parts"
                    )));
                }
                content.extend_from_slice(&gbk);
                (crate::text::CODING_GBK, content)
            }
        } else {
            (request.data_coding, request.short_message.clone())
        };
        let user = request.destination_addr.as_str();
        Ok(Self {
            sp_number: request.source_addr.clone(),
            user_number: user.to_string(),
            fee: SgipFee::from_link(request.fee.as_ref(), user, request.registered_delivery),
            priority: 0,
            expire_time: String::new(),
            schedule_time: String::new(),
            tp_pid: 0,
            tp_udhi,
            message_coding,
            content,
        })
    }

    /// The Submit body with `corp_id`.
    pub fn to_submit(&self, corp_id: &str) -> Submit {
        let fee = &self.fee;
        Submit {
            sp_number: self.sp_number.clone(),
            charge_number: fee.charge_number.clone(),
            user_numbers: vec![self.user_number.clone()],
            corp_id: corp_id.to_string(),
            service_type: fee.service_type.clone(),
            fee_type: fee.fee_type,
            fee_value: fee.fee_value,
            given_value: fee.given_value,
            agent_flag: fee.agent_flag,
            morelateto_mt_flag: fee.morelateto_mt_flag,
            priority: self.priority,
            expire_time: self.expire_time.clone(),
            schedule_time: self.schedule_time.clone(),
            report_flag: fee.report_flag,
            tp_pid: self.tp_pid,
            tp_udhi: self.tp_udhi,
            message_coding: self.message_coding,
            message_type: 0,
            message_content: self.content.clone(),
            reserve: [0; 8],
        }
    }
}

/// A [`SubmitError::Rejected`] for a Result.
fn rejected(result_code: u8, class: StatusClass) -> SubmitError {
    SubmitError::Rejected {
        status: result_code.into(),
        name: result::name(result_code),
        class,
    }
}

/// Why a Bind failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Invalid settings.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// TCP connect failed.
    #[error("connect to {address}: {source}")]
    Io {
        /// The address tried.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// No connection or no Bind_Resp within the timeout.
    #[error("timed out connecting or binding")]
    Timeout,
    /// The SMG refused the Bind.
    #[error("bind rejected: {}", result::name(*result))]
    BindRejected {
        /// Result of the Bind_Resp.
        result: u8,
    },
    /// The peer closed or answered something else.
    #[error("bind failed: {0}")]
    Protocol(String),
}

type Answer = Result<Pdu, DecodeError>;

/// One bound connection.
#[derive(Debug)]
struct Link {
    out: OutTx,
    /// Requests awaiting their response (closed when the link is down).
    pending: Pending<SequenceNumber, Answer>,
    cancel: CancellationToken,
    last_used: Mutex<Instant>,
}

impl Link {
    fn register(&self, seq: SequenceNumber) -> Option<oneshot::Receiver<Answer>> {
        let rx = self.pending.register(seq)?;
        self.touch();
        Some(rx)
    }

    fn unregister(&self, seq: &SequenceNumber) {
        self.pending.unregister(seq);
    }

    fn complete(&self, seq: &SequenceNumber, answer: Answer) -> bool {
        let found = self.pending.complete(seq, answer);
        self.touch();
        found
    }

    /// The link was used now (the idle closer measures from here).
    fn touch(&self) {
        if let Ok(mut t) = self.last_used.lock() {
            *t = Instant::now();
        }
    }

    fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn is_down(&self) -> bool {
        self.cancel.is_cancelled()
    }

    fn shut(&self) {
        // Dropping the senders wakes the waiters with ConnectionLost.
        self.pending.close();
        self.cancel.cancel();
    }

    /// Sends a request and waits for its answer.
    async fn request(
        &self,
        seq: SequenceNumber,
        rx: oneshot::Receiver<Answer>,
        pdu: Pdu,
        wait: Duration,
    ) -> Result<Pdu, SubmitError> {
        if self.out.send(link::packet(seq, pdu)).is_err() {
            self.unregister(&seq);
            return Err(SubmitError::NotConnected);
        }
        match timeout(wait, rx).await {
            Err(_) => {
                self.unregister(&seq);
                Err(SubmitError::Timeout)
            }
            Ok(Err(_)) => Err(SubmitError::ConnectionLost),
            Ok(Ok(Err(e))) => Err(SubmitError::MalformedResponse(e.to_string())),
            Ok(Ok(Ok(pdu))) => Ok(pdu),
        }
    }
}

#[derive(Debug)]
struct Shared {
    config: ClientConfig,
    minter: Minter,
    pacer: Pacer,
    /// The window, the drain and close flags, the token cancelled once closed.
    life: Lifecycle,
    /// The current link; a std mutex, never held across an await.
    link: Mutex<Option<Arc<Link>>>,
    /// Serialises binds, so concurrent submits wait for one connect.
    connecting: tokio::sync::Mutex<()>,
    binds: AtomicU64,
}

impl Shared {
    /// The bound link, if one is up.
    fn live(&self) -> Option<Arc<Link>> {
        self.link
            .lock()
            .ok()
            .and_then(|g| g.as_ref().filter(|l| !l.is_down()).cloned())
    }
}

/// Handle to the SP's link(s) to one SMG. Cheap to clone; clones share the link. It is
/// the [`Session`] of `tongdao-link` (see [`crate::Sgip`] for its [`tongdao_link::Connect`]).
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

impl Client {
    /// A client that binds on the first submit.
    ///
    /// # Errors
    /// [`ConnectError::Config`] for window 0 or a login that does not fit its field.
    pub fn new(config: ClientConfig) -> Result<Client, ConnectError> {
        if config.window == 0 {
            return Err(ConnectError::Config("window must be at least 1".into()));
        }
        for (field, value, width) in [
            ("login_name", &config.login_name, 16),
            ("password", &config.password, 16),
            ("corp_id", &config.corp_id, 5),
            ("service_type", &config.service_type, 10),
        ] {
            if value.len() > width || !value.is_ascii() {
                return Err(ConnectError::Config(format!(
                    "{field} {value:?}: at most {width} ASCII chars"
                )));
            }
        }
        Ok(Client {
            shared: Arc::new(Shared {
                minter: Minter::new(config.node_id, config.incarnation),
                life: Lifecycle::new(config.window, CancellationToken::new()),
                pacer: Pacer::new(config.tps, config.throttle_backoff),
                link: Mutex::new(None),
                connecting: tokio::sync::Mutex::new(()),
                binds: AtomicU64::new(0),
                config,
            }),
        })
    }

    /// A client bound now (fails fast on a bad address or password).
    ///
    /// # Errors
    /// [`ConnectError`] when the Bind fails.
    pub async fn connect(config: ClientConfig) -> Result<Client, ConnectError> {
        let client = Client::new(config)?;
        client.ensure_link().await?;
        Ok(client)
    }

    /// Successful Binds so far (each on-demand reconnect counts one).
    pub fn binds(&self) -> u64 {
        self.shared.binds.load(Ordering::Relaxed)
    }

    /// True while a link is bound.
    pub fn is_bound(&self) -> bool {
        self.shared.live().is_some()
    }

    /// Submits in flight on the current link.
    pub fn in_flight(&self) -> usize {
        self.shared.live().map_or(0, |l| l.in_flight())
    }

    /// True once the client is closing or closed.
    pub fn is_closed(&self) -> bool {
        !self.shared.life.accepting() || self.shared.life.token().is_cancelled()
    }

    /// Resolves when the client is closed.
    pub async fn closed(&self) {
        self.shared.life.closed().await;
    }

    /// The bound link, binding one if none is up.
    async fn ensure_link(&self) -> Result<Arc<Link>, ConnectError> {
        if let Some(l) = self.shared.live() {
            return Ok(l);
        }
        let _one = self.shared.connecting.lock().await;
        if let Some(l) = self.shared.live() {
            return Ok(l);
        }
        let l = self.bind().await?;
        if let Ok(mut slot) = self.shared.link.lock() {
            *slot = Some(l.clone());
        }
        Ok(l)
    }

    /// Sends one Submit in SGIP's own fields and waits for its Submit_Resp: waits for a
    /// window slot, the TPS pace and any throttling pause, binds if no link is up,
    /// resends after a throttling Result up to `throttle_retries` times.
    ///
    /// # Errors
    /// [`SubmitError`]; see the module docs for which are outcome-unknown.
    pub async fn submit_mt(&self, request: &MtRequest) -> Result<SubmitOutcome, SubmitError> {
        let shared = &self.shared;
        let mut submit = request.to_submit(&shared.config.corp_id);
        if submit.service_type.is_empty() {
            submit.service_type.clone_from(&shared.config.service_type);
        }
        // Checked before anything is sent: an invalid request is permanent.
        crate::codec::to_bytes(&Packet {
            sequence: SequenceNumber::default(),
            pdu: Pdu::Submit(Box::new(submit.clone())),
        })
        .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let mut attempts = 0;
        loop {
            if self.is_closed() {
                return Err(SubmitError::NotConnected);
            }
            let _permit = shared.life.slot().await.ok_or(SubmitError::NotConnected)?;
            self.pace().await;
            if self.is_closed() {
                return Err(SubmitError::NotConnected);
            }
            let seq = shared.minter.next();
            let (l, rx) = loop {
                let l = self.ensure_link().await.map_err(|e| {
                    debug!(error = %e, "sgip bind failed");
                    SubmitError::NotConnected
                })?;
                // Registered under the slot lock, so the idle closer never takes a link
                // a submit is about to use.
                let registered = shared.link.lock().ok().and_then(|slot| {
                    slot.as_ref()
                        .filter(|s| Arc::ptr_eq(s, &l))
                        .and_then(|_| l.register(seq))
                });
                if let Some(rx) = registered {
                    break (l, rx);
                }
            };
            attempts += 1;
            let answer = l
                .request(
                    seq,
                    rx,
                    Pdu::Submit(Box::new(submit.clone())),
                    shared.config.response_timeout,
                )
                .await?;
            let Pdu::SubmitResp(resp) = answer else {
                return Err(SubmitError::MalformedResponse(format!(
                    "answered with Command ID {:#010x}",
                    answer.command_id()
                )));
            };
            match classify(resp.result) {
                StatusClass::Ok => {
                    self.accepted();
                    return Ok(SubmitOutcome {
                        message_id: seq.to_string(),
                        attempts,
                    });
                }
                StatusClass::Throttled if attempts <= shared.config.throttle_retries => {
                    self.throttled();
                }
                class => {
                    if class == StatusClass::Throttled {
                        self.throttled();
                    }
                    return Err(rejected(resp.result, class));
                }
            }
        }
    }

    /// Stops new submits; those in flight keep waiting for their answers.
    pub fn stop_submitting(&self) {
        self.shared.life.stop_submitting();
    }

    /// Graceful close with the response timeout as grace.
    pub async fn close(&self) {
        self.close_within(self.shared.config.response_timeout).await;
    }

    /// Graceful close: stops new submits, waits up to `grace` for those in flight (any
    /// still unanswered then fail with [`SubmitError::ConnectionLost`]: outcome
    /// unknown), sends Unbind, waits for Unbind_Resp (at most the response timeout),
    /// closes the socket.
    pub async fn close_within(&self, grace: Duration) {
        let shared = &self.shared;
        let goodbye = async {
            let taken = shared.link.lock().ok().and_then(|mut slot| slot.take());
            if let Some(l) = taken {
                unbind(&l, &shared.minter, shared.config.response_timeout).await;
            }
        };
        if shared.life.close_within(grace, goodbye).await {
            shared.life.shut();
        }
    }

    async fn pace(&self) {
        self.shared.pacer.pace().await;
    }

    fn throttled(&self) {
        if let Some(pause) = self.shared.pacer.throttled() {
            debug!(?pause, "sgip throttled");
        }
    }

    fn accepted(&self) {
        self.shared.pacer.accepted();
    }

    /// Connects and binds one link (Login Type 1), starts its reader and idle closer.
    async fn bind(&self) -> Result<Arc<Link>, ConnectError> {
        let config = &self.shared.config;
        let stream = timeout(config.connect_timeout, TcpStream::connect(&config.address))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|source| ConnectError::Io {
                address: config.address.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, SgipCodec);
        let (out, out_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(link::writer(write, out_rx, cancel.clone()));
        let seq = self.shared.minter.next();
        let bind = Bind {
            login_type: LOGIN_SP_TO_SMG,
            login_name: config.login_name.clone(),
            login_password: config.password.clone(),
            reserve: [0; 8],
        };
        let _ = out.send(link::packet(seq, Pdu::Bind(bind)));
        let answer = timeout(config.response_timeout, async {
            loop {
                match reader.next().await {
                    Some(Ok(Frame::Packet(p))) if p.sequence == seq => match p.pdu {
                        Pdu::BindResp(r) if r.result == 0 => return Ok(()),
                        Pdu::BindResp(r) => {
                            return Err(ConnectError::BindRejected { result: r.result });
                        }
                        other => {
                            return Err(ConnectError::Protocol(format!(
                                "answered Bind with Command ID {:#010x}",
                                other.command_id()
                            )));
                        }
                    },
                    Some(Ok(Frame::Packet(p))) => {
                        debug!(
                            id = p.pdu.command_id(),
                            "sgip packet before Bind_Resp ignored"
                        );
                    }
                    Some(Ok(Frame::Undecodable(u))) => {
                        return Err(ConnectError::Protocol(format!(
                            "undecodable Bind_Resp: {}",
                            u.error
                        )));
                    }
                    Some(Err(e)) => return Err(ConnectError::Protocol(e.to_string())),
                    None => return Err(ConnectError::Protocol("connection closed".into())),
                }
            }
        })
        .await;
        match answer {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                cancel.cancel();
                return Err(e);
            }
            Err(_) => {
                cancel.cancel();
                return Err(ConnectError::Timeout);
            }
        }
        self.shared.binds.fetch_add(1, Ordering::Relaxed);
        let l = Arc::new(Link {
            out,
            pending: Pending::new(),
            cancel,
            last_used: Mutex::new(Instant::now()),
        });
        tokio::spawn(read_loop(l.clone(), reader));
        if !config.idle_timeout.is_zero() {
            tokio::spawn(idle_closer(self.shared.clone(), Arc::downgrade(&l)));
        }
        Ok(l)
    }
}

/// Unbinds a link taken out of the slot and closes it; anything still in flight fails
/// with ConnectionLost.
async fn unbind(l: &Link, minter: &Minter, wait: Duration) {
    let seq = minter.next();
    if let Some(rx) = l.register(seq) {
        let _ = l.request(seq, rx, Pdu::Unbind, wait).await;
    }
    let _ = l.out.send(Out::Close);
    let _ = timeout(Duration::from_secs(1), l.cancel.cancelled()).await;
    l.shut();
}

/// Closes the link once it has been idle for `idle_timeout` with nothing in flight.
async fn idle_closer(shared: Arc<Shared>, weak: std::sync::Weak<Link>) {
    let idle = shared.config.idle_timeout;
    loop {
        let Some(l) = weak.upgrade() else { return };
        if l.is_down() {
            return;
        }
        let last = l
            .last_used
            .lock()
            .map(|t| *t)
            .unwrap_or_else(|_| Instant::now());
        let due = last + idle;
        let cancel = l.cancel.clone();
        drop(l);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = sleep_until(due) => {}
        }
        let taken = {
            let Some(l) = weak.upgrade() else { return };
            let idle_now = l.in_flight() == 0
                && l.last_used
                    .lock()
                    .map(|t| t.elapsed() >= idle)
                    .unwrap_or(false);
            match shared.link.lock() {
                Ok(mut slot) if idle_now && slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, &l)) => {
                    slot.take()
                }
                _ => None,
            }
        };
        if let Some(l) = taken {
            debug!("sgip link idle: unbinding");
            unbind(&l, &shared.minter, shared.config.response_timeout).await;
            return;
        }
    }
}

/// Dispatches answers; answers what the SMG asks (Unbind) and what does not decode.
async fn read_loop(l: Arc<Link>, mut reader: FramedRead<OwnedReadHalf, SgipCodec>) {
    let reason = loop {
        let frame = tokio::select! {
            _ = l.cancel.cancelled() => break "closed locally".to_string(),
            f = reader.next() => f,
        };
        match frame {
            None => break "connection closed by peer".to_string(),
            Some(Err(e)) => break format!("link error: {e}"),
            Some(Ok(Frame::Undecodable(u))) => {
                warn!(command_id = u.command_id, seq = %u.sequence, error = %u.error, "sgip undecodable packet");
                if u.is_response() {
                    l.complete(&u.sequence, Err(u.error));
                } else if let Some(pdu) =
                    Pdu::response_to(u.command_id, undecodable_result(&u.error))
                {
                    let _ = l.out.send(link::packet(u.sequence, pdu));
                } else {
                    let resp = bare_resp(u.command_id, u.sequence, result::MESSAGE_ID);
                    let _ = l.out.send(Out::Raw(resp));
                }
            }
            Some(Ok(Frame::Packet(p))) => match p.pdu {
                Pdu::Unbind => {
                    let _ = l.out.send(link::packet(p.sequence, Pdu::UnbindResp));
                    let _ = l.out.send(Out::Close);
                    break "SMG unbound".to_string();
                }
                pdu if pdu.command_id() & command::RESP_BIT != 0 => {
                    if !l.complete(&p.sequence, Ok(pdu)) {
                        debug!(seq = %p.sequence, "sgip response without request (late or unknown)");
                    }
                }
                pdu => {
                    // Deliver/Report/Bind belong on the SMG's own link to the SP.
                    if let Some(resp) = Pdu::response_to(pdu.command_id(), result::LOGIN_TYPE) {
                        let _ = l.out.send(link::packet(p.sequence, resp));
                    }
                }
            },
        }
    };
    debug!(%reason, "sgip link ended");
    l.shut();
}

/// The Result for a request whose body did not decode.
pub(crate) fn undecodable_result(e: &DecodeError) -> u8 {
    match e {
        DecodeError::UnknownCommand(_) => result::MESSAGE_ID,
        DecodeError::Short { field, .. } if *field == "MessageContent" => result::MESSAGE_LENGTH,
        _ => result::PARAMETER_FORMAT,
    }
}

/// A bare response (Result + Reserve, the shape of every SGIP response) to a request
/// with an unknown Command ID, echoing its sequence number.
pub(crate) fn bare_resp(
    command_id: u32,
    sequence: SequenceNumber,
    result_code: u8,
) -> bytes::Bytes {
    use bytes::BufMut;
    let mut b = bytes::BytesMut::with_capacity(29);
    b.put_u32(29);
    b.put_u32(command_id | command::RESP_BIT);
    b.put_u32(sequence.node_id);
    b.put_u32(sequence.timestamp);
    b.put_u32(sequence.sequence);
    b.put_u8(result_code);
    b.put_bytes(0, 8);
    b.freeze()
}

/// The relay's view: [`Client`] is a `tongdao-link` [`Session`]. Requests are mapped by
/// [`MtRequest::from_link`] (fee fields by [`SgipFee::from_link`]); the outcome's
/// `message_id` is the Submit's sequence number (`node-MMDDHHMMSS-counter`), which
/// the Report names.
impl Session for Client {
    fn submit(
        &self,
        request: &SubmitRequest,
    ) -> impl std::future::Future<Output = Result<SubmitOutcome, SubmitError>> + Send {
        let mt = MtRequest::from_link(request);
        let this = self.clone();
        async move { this.submit_mt(&mt?).await }
    }

    fn stop_submitting(&self) {
        Client::stop_submitting(self);
    }

    fn close_within(&self, grace: Duration) -> impl std::future::Future<Output = ()> + Send {
        let this = self.clone();
        async move { Client::close_within(&this, grace).await }
    }

    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }

    fn closed(&self) -> impl std::future::Future<Output = ()> + Send {
        let this = self.clone();
        async move { Client::closed(&this).await }
    }

    fn in_flight(&self) -> usize {
        Client::in_flight(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tongdao_link::encode::{Alphabet, Concat, encode_in};

    fn relay_request(text: &str) -> Vec<SubmitRequest> {
        encode_in(text, Alphabet::Auto, Concat::Udh8(1))
            .expect("encode")
            .iter()
            .map(|s| SubmitRequest::new("1066", "8613000000001", s))
            .collect()
    }

    /// The relay's GSM 7-bit parts become ASCII (or GBK for é, £…), its UCS-2 parts stay
    /// UCS-2, TP_udhi follows the UDH.
    #[test]
    fn relay_parts_map_to_message_codings() {
        let ascii = MtRequest::from_link(&relay_request("Hello @ home")[0]).expect("ascii");
        assert_eq!((ascii.message_coding, ascii.tp_udhi), (0, 0));
        assert_eq!(ascii.content, b"Hello @ home");

        let latin = MtRequest::from_link(&relay_request("Café 5€")[0]).expect("gbk");
        assert_eq!(latin.message_coding, 15);
        assert_eq!(crate::text::decode(15, &latin.content), "Café 5€");

        let long: Vec<_> = relay_request(&"a".repeat(200))
            .iter()
            .map(|r| MtRequest::from_link(r).expect("ascii parts"))
            .collect();
        assert_eq!(long.len(), 2);
        assert!(long.iter().all(|m| m.tp_udhi == 1 && m.message_coding == 0));
        assert_eq!(&long[0].content[..3], &[5, 0, 3]);

        let chinese = MtRequest::from_link(&relay_request("你好")[0]).expect("ucs2");
        assert_eq!(chinese.message_coding, 8);

        let too_wide = relay_request(&"é".repeat(150));
        assert!(matches!(
            MtRequest::from_link(&too_wide[0]),
            Err(SubmitError::Invalid(_))
        ));
    }
}
