//! The SP side: one long connection (§7.1) to an ISMG.
//!
//! [`Client::connect`] opens the TCP connection, logs in with `CMPP_CONNECT` (checking
//! the ISMG's `AuthenticatorISMG` too: a gateway that does not know our secret is not
//! ours) and returns the client plus the receiver of [`Inbound`] events. Clones share
//! the connection. It keeps at most `window` submits outstanding (the spec's W, 16), paces
//! them to `tps`, sends `CMPP_ACTIVE_TEST` after `active_test_interval` idle (C, 3 min),
//! resends it after `response_timeout` (T, 60 s) and drops the link after
//! `active_test_tries` unanswered ones (N, 3), and backs the whole link off when the ISMG
//! answers `Result` 8 (flow control).
//!
//! # Delivery semantics (the same as the SMPP client's)
//! * [`Client::submit`] returns `Ok` only for `Result` 0, with the ISMG's `Msg_Id`.
//!   [`SubmitError::outcome_unknown`] is true when the packet may have reached the ISMG
//!   without an answer (timeout, connection lost, unreadable response): resending may
//!   duplicate, not resending may lose; the caller decides. A submit is never resent
//!   after a timeout here, unlike §7.1's suggestion, because CMPP has no idempotency key.
//! * Each inbound `CMPP_DELIVER` (MO or status report) comes with an [`Ack`]. The
//!   `CMPP_DELIVER_RESP` is sent only when the owner calls [`Ack::ack`] (after storing it
//!   durably). Dropping the `Ack` answers `Result` 9 so the ISMG redelivers; a full
//!   inbound channel answers 8 (flow control) at once. Reports and MOs are at least
//!   once: store them idempotently.
//!
//! # Closing
//! [`Client::close_within`] stops new submits (they fail with
//! [`SubmitError::NotConnected`], nothing sent), waits up to a grace for the responses
//! of those in flight, sends `CMPP_TERMINATE`, waits for its response and closes. A
//! connection lost with submits in flight fails each with [`SubmitError::ConnectionLost`].

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use tongdao_link::encode::ESM_UDHI;
use tongdao_link::{
    Ack, Answer, Connect as LinkConnect, FeeType, FeeUserType, Inbound, Lifecycle, MoPdu, Pacer,
    Pending, Receipt, ReceiptState, Session, StatusClass, SubmitError, SubmitOutcome,
    SubmitRequest,
};

use crate::auth;
use crate::codec::{CmppCodec, Frame};
use crate::link::{self, Out, OutTx};
use crate::msg_id::MsgId;
use crate::pdu::{
    Connect, DecodeError, Deliver, DeliverResp, Packet, Pdu, Report, Submit, Version, command,
};
use crate::status::{
    RESULT_BAD_STRUCTURE, RESULT_FLOW_CONTROL, RESULT_OK, classify, connect_status_name,
    result_name,
};
use crate::text;

/// Why a 包月 billing record is refused on a 3.0 link: sent as an MT, the user would
/// receive it.
const NO_RECORD_ON_3_0: &str =
    "CMPP 3.0 has no billing-record submit (Registered_Delivery is 0 or 1, §8.4.3.1)";

/// `CMPP_DELIVER_RESP` `Result` for a delivery the owner did not store (9~: other).
const RESULT_NOT_STORED: u32 = 9;

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the ISMG (7890 is the spec's long-connection port, §7.3).
    pub address: String,
    /// `Source_Addr`: the SP_Id (enterprise code, 6 digits). Also the default `Msg_src`.
    pub sp_id: String,
    /// The shared secret.
    pub secret: String,
    /// 3.0 or 2.0.
    pub version: Version,
    /// Most submits outstanding without a response (W).
    pub window: usize,
    /// Submits per second; 0 = unlimited.
    pub tps: u32,
    /// Idle time before a `CMPP_ACTIVE_TEST` (C).
    pub active_test_interval: Duration,
    /// How long any response may take (T): submit, login, active test, terminate.
    pub response_timeout: Duration,
    /// Unanswered `CMPP_ACTIVE_TEST`s in a row that end the link (N).
    pub active_test_tries: u32,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// First pause after `Result` 8; doubles per episode up to 32×.
    pub throttle_backoff: Duration,
    /// How often one submit is resent after `Result` 8 before it fails with it.
    pub throttle_retries: u32,
    /// Capacity of the inbound channel; when full, a delivery is answered 8 at once.
    pub inbound_capacity: usize,
}

impl ClientConfig {
    /// The spec's link rules (§7.1): window 16, active test after 3 min idle, 60 s
    /// response timeout, 3 tries; unlimited TPS, 10 s connect timeout, 100 ms first
    /// throttle pause, 10 throttle retries, inbound capacity 4096.
    pub fn new(
        address: impl Into<String>,
        sp_id: impl Into<String>,
        secret: impl Into<String>,
        version: Version,
    ) -> Self {
        Self {
            address: address.into(),
            sp_id: sp_id.into(),
            secret: secret.into(),
            version,
            window: 16,
            tps: 0,
            active_test_interval: Duration::from_secs(180),
            response_timeout: Duration::from_secs(60),
            active_test_tries: 3,
            connect_timeout: Duration::from_secs(10),
            throttle_backoff: Duration::from_millis(100),
            throttle_retries: 10,
            inbound_capacity: 4096,
        }
    }
}

/// Why connecting or logging in failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Invalid settings (SP_Id too long, window 0).
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
    /// No connection or no `CMPP_CONNECT_RESP` within the timeout.
    #[error("timed out connecting or logging in")]
    Timeout,
    /// The ISMG refused the login.
    #[error("login refused: Status {status} ({})", connect_status_name(*status))]
    Rejected {
        /// `Status` of the `CMPP_CONNECT_RESP`.
        status: u32,
    },
    /// The ISMG accepted but its `AuthenticatorISMG` is wrong, or it answered with
    /// something else, or closed.
    #[error("login failed: {0}")]
    Protocol(String),
}

/// How this crate fills `CMPP_SUBMIT` from a link [`SubmitRequest`] (§8.4.3.1):
///
/// | `CMPP_SUBMIT` | from |
/// | --- | --- |
/// | `Src_Id` / `Dest_terminal_Id` | `source_addr` / `destination_addr` (one handset) |
/// | `Msg_Fmt`, `Msg_Content`, `TP_udhi` | `data_coding`, `short_message`, `esm_class` & 0x40 ([`crate::text::to_msg_fmt`]) |
/// | `Pk_total` / `Pk_number` | `concat` (1/1 without) |
/// | `Registered_Delivery` | 1 if `registered_delivery`, else 0; 2 ("产生SMC话单": a billing record, never delivered, no report) for [`FeeType::MonthlyRecordOnly`] on CMPP 2.0; 3.0's field has only 0 and 1 (§8.4.3.1), so a record is refused there rather than sent as an MT the user would see |
/// | `FeeType` | `01` free, `02` per message, `03` monthly and monthly record; `01` without a fee |
/// | `FeeCode` | `fee_code_fen`, 6 digits zero-padded; above 999,999 fen is refused |
/// | `Fee_UserType` | 0 destination, 1 source, 2 SP, 3 charge number |
/// | `Fee_terminal_Id` | `charge_number` when `Fee_UserType` is 3, else empty |
/// | `Service_Id` | `service_id` |
/// | `LinkID` | `link_id` (3.0; a LinkID on 2.0 is refused: 2.0 has no such field) |
/// | `Msg_src` | the SP_Id of the login |
/// | `ValId_Time` | `validity_period` |
///
/// # Errors
/// [`SubmitError::Invalid`] for a fee that does not fit, a billing record on CMPP 3.0,
/// a GSM 7-bit text that is not ASCII, or a `Msg_Content` over the spec's limit (159
/// octets for `Msg_Fmt` 0, 140 otherwise: encode with [`crate::text::ALPHABET`]);
/// field widths are checked when encoding.
pub fn to_submit(
    request: &SubmitRequest,
    sp_id: &str,
    version: Version,
) -> Result<Submit, SubmitError> {
    let invalid = SubmitError::Invalid;
    let (msg_fmt, msg_content) = text::to_msg_fmt(
        request.data_coding,
        request.esm_class,
        &request.short_message,
    )
    .map_err(invalid)?;
    // CMPP 3.0 §8.4.3.1 Msg_Length: below 160 octets for Msg_Fmt 0, ≤ 140 otherwise.
    let limit = if msg_fmt == text::FMT_ASCII { 159 } else { 140 };
    if msg_content.len() > limit {
        return Err(invalid(format!(
            "Msg_Content of {} octets exceeds the {limit} of Msg_Fmt {msg_fmt} (§8.4.3.1)",
            msg_content.len()
        )));
    }
    let (pk_total, pk_number) = request.concat.map_or((1, 1), |c| (c.total, c.seq));
    let mut registered_delivery = u8::from(request.registered_delivery);
    let (fee_type, fee_code, fee_user_type, fee_terminal_id, service_id, link_id) =
        match &request.fee {
            None => ("01", 0, 0, String::new(), String::new(), String::new()),
            Some(fee) => {
                if fee.fee_code_fen > 999_999 {
                    return Err(invalid(format!(
                        "FeeCode {} fen does not fit 6 digits",
                        fee.fee_code_fen
                    )));
                }
                let fee_type = match fee.fee_type {
                    FeeType::Free => "01",
                    FeeType::PerMessage => "02",
                    FeeType::Monthly => "03",
                    FeeType::MonthlyRecordOnly => {
                        if version != Version::V20 {
                            return Err(invalid(NO_RECORD_ON_3_0.to_string()));
                        }
                        registered_delivery = 2;
                        "03"
                    }
                };
                let user_type = match fee.fee_user_type {
                    FeeUserType::Destination => 0,
                    FeeUserType::Source => 1,
                    FeeUserType::Sp => 2,
                    FeeUserType::ChargeNumber => 3,
                };
                let terminal = if user_type == 3 {
                    fee.charge_number.clone()
                } else {
                    String::new()
                };
                (
                    fee_type,
                    fee.fee_code_fen,
                    user_type,
                    terminal,
                    fee.service_id.clone(),
                    fee.link_id.clone().unwrap_or_default(),
                )
            }
        };
    Ok(Submit {
        msg_id: 0,
        pk_total,
        pk_number,
        registered_delivery,
        msg_level: 0,
        service_id,
        fee_user_type,
        fee_terminal_id,
        fee_terminal_type: 0,
        tp_pid: 0,
        tp_udhi: u8::from(request.esm_class & ESM_UDHI != 0),
        msg_fmt,
        msg_src: sp_id.to_string(),
        fee_type: fee_type.to_string(),
        fee_code: format!("{fee_code:06}"),
        valid_time: request.validity_period.clone(),
        at_time: String::new(),
        src_id: request.source_addr.clone(),
        dest_terminal_ids: vec![request.destination_addr.clone()],
        dest_terminal_type: 0,
        msg_content,
        link_id,
        reserve: String::new(),
    })
}

/// A `CMPP_DELIVER_RESP` answer for a link [`Answer`]: 0 stored; 9 (other error) not
/// stored, so the ISMG redelivers; or the given `Result`.
fn result_of(answer: Answer) -> u32 {
    match answer {
        Answer::Ok => RESULT_OK,
        Answer::Retry => RESULT_NOT_STORED,
        Answer::Status(s) => s,
    }
}

fn ack(out: &OutTx, version: Version, seq: u32, msg_id: u64) -> Ack {
    let out = out.clone();
    Ack::new(move |answer| {
        link::send(
            &out,
            version,
            seq,
            Pdu::DeliverResp(DeliverResp {
                msg_id,
                result: result_of(answer),
            }),
        );
    })
}

/// Handle to one logged-in connection. Clones share it; when the last is dropped the
/// connection terminates.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

#[derive(Debug)]
struct DropGuard(Arc<Inner>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        let inner = self.0.clone();
        if inner.life.begin_closing() {
            return;
        }
        let seq = link::next_seq(&inner.seq);
        link::send(&inner.out, inner.config.version, seq, Pdu::Terminate);
        let _ = inner.out.send(Out::Close);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let wait = inner.config.response_timeout;
            handle.spawn(async move {
                sleep(wait).await;
                inner.life.token().cancel();
            });
        } else {
            inner.life.token().cancel();
        }
    }
}

#[derive(Debug)]
enum Resp {
    Submit { msg_id: u64, result: u32 },
    Other,
    Malformed(String),
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    out: OutTx,
    seq: AtomicU32,
    /// Requests awaiting their response (closed with the connection).
    pending: Pending<u32, Resp>,
    pacer: Pacer,
    /// The window, the drain and close flags, the cancel token.
    life: Lifecycle,
}

impl Inner {
    fn complete(&self, seq: u32, resp: Resp) -> bool {
        self.pending.complete(&seq, resp)
    }

    /// Encodes and sends a request, waits for its response.
    async fn request(&self, pdu: Pdu) -> Result<Resp, SubmitError> {
        let seq = link::next_seq(&self.seq);
        let bytes = Packet {
            sequence_id: seq,
            pdu,
        }
        .encode(self.config.version)
        .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let rx = self
            .pending
            .register(seq)
            .ok_or(SubmitError::NotConnected)?;
        if self.out.send(Out::Raw(bytes.freeze())).is_err() {
            self.pending.unregister(&seq);
            return Err(SubmitError::NotConnected);
        }
        match timeout(self.config.response_timeout, rx).await {
            Err(_) => {
                self.pending.unregister(&seq);
                Err(SubmitError::Timeout)
            }
            Ok(Err(_)) => Err(SubmitError::ConnectionLost),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    async fn pace(&self) {
        self.pacer.pace().await;
    }

    fn throttled(&self) {
        if let Some(pause) = self.pacer.throttled() {
            debug!(?pause, "cmpp flow control");
        }
    }

    fn accepted(&self) {
        self.pacer.accepted();
    }

    fn shut(&self) {
        self.pending.close();
        self.life.shut();
    }
}

impl Client {
    /// Connects and logs in. Returns the client and the inbound events.
    ///
    /// # Errors
    /// [`ConnectError`]: bad settings, socket errors, timeout, a refused login, or an
    /// ISMG whose `AuthenticatorISMG` does not prove it knows the secret.
    pub async fn connect(
        config: ClientConfig,
    ) -> Result<(Client, mpsc::Receiver<Inbound>), ConnectError> {
        if config.window == 0 {
            return Err(ConnectError::Config("window must be at least 1".into()));
        }
        let version = config.version;
        let timestamp = crate::time::connect_timestamp(jiff::Timestamp::now());
        let authenticator_source =
            auth::authenticator_source(&config.sp_id, &config.secret, timestamp);
        let login = Packet {
            sequence_id: 1,
            pdu: Pdu::Connect(Connect {
                source_addr: config.sp_id.clone(),
                authenticator_source,
                version: version.octet(),
                timestamp,
            }),
        }
        .encode(version)
        .map_err(|e| ConnectError::Config(e.to_string()))?;
        let stream = timeout(config.connect_timeout, TcpStream::connect(&config.address))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|source| ConnectError::Io {
                address: config.address.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, CmppCodec::new(version));
        let (out, out_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(link::writer(write, out_rx, cancel.clone()));
        let _ = out.send(Out::Raw(login.freeze()));

        let secret = config.secret.clone();
        let logged_in = timeout(config.response_timeout, async {
            loop {
                match reader.next().await {
                    Some(Ok(Frame::Packet(p))) => match p.pdu {
                        Pdu::ConnectResp(r) if r.status != 0 => {
                            return Err(ConnectError::Rejected { status: r.status });
                        }
                        Pdu::ConnectResp(r) => {
                            let wire = if Version::from_octet(r.version) == Some(Version::V20)
                                && version == Version::V30
                            {
                                return Err(ConnectError::Protocol(format!(
                                    "the ISMG speaks version 0x{:02X}, not CMPP 3.0",
                                    r.version
                                )));
                            } else {
                                version
                            };
                            let expected =
                                auth::authenticator_ismg(0, &authenticator_source, &secret, wire);
                            if r.authenticator_ismg != expected {
                                return Err(ConnectError::Protocol(
                                    "AuthenticatorISMG does not match our secret".into(),
                                ));
                            }
                            return Ok(());
                        }
                        Pdu::ActiveTest => {
                            link::send(&out, version, p.sequence_id, Pdu::ActiveTestResp(0));
                        }
                        other => {
                            debug!(id = other.command_id(), "cmpp packet before login ignored")
                        }
                    },
                    Some(Ok(Frame::Undecodable(u))) => {
                        return Err(ConnectError::Protocol(format!(
                            "undecodable login response: {}",
                            u.reason
                        )));
                    }
                    Some(Err(e)) => return Err(ConnectError::Protocol(e.to_string())),
                    None => return Err(ConnectError::Protocol("connection closed".into())),
                }
            }
        })
        .await;
        match logged_in {
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

        let inner = Arc::new(Inner {
            life: Lifecycle::new(config.window, cancel),
            pacer: Pacer::new(config.tps, config.throttle_backoff),
            config,
            out,
            seq: AtomicU32::new(2),
            pending: Pending::new(),
        });
        let (in_tx, in_rx) = mpsc::channel(inner.config.inbound_capacity.max(1));
        tokio::spawn(session(inner.clone(), reader, in_tx));
        let client = Client {
            _guard: Arc::new(DropGuard(inner.clone())),
            inner,
        };
        Ok((client, in_rx))
    }

    /// The version this link speaks.
    pub fn version(&self) -> Version {
        self.inner.config.version
    }

    /// Sends one `CMPP_SUBMIT` and waits for its `CMPP_SUBMIT_RESP`. Waits for a window
    /// slot, the TPS pace and any flow-control pause first; resends after `Result` 8 up
    /// to `throttle_retries` times.
    ///
    /// # Errors
    /// [`SubmitError`]; see [`SubmitError::outcome_unknown`] and [`SubmitError::class`].
    pub async fn submit(&self, request: &SubmitRequest) -> Result<SubmitOutcome, SubmitError> {
        let submit = to_submit(request, &self.inner.config.sp_id, self.inner.config.version)?;
        // Checked before anything is sent, so a bad field is a clean permanent failure.
        Packet {
            sequence_id: 0,
            pdu: Pdu::Submit(Box::new(submit.clone())),
        }
        .encode(self.inner.config.version)
        .map_err(|e| SubmitError::Invalid(e.to_string()))?;
        let inner = &self.inner;
        let mut attempts = 0;
        loop {
            if !inner.life.accepting() {
                return Err(SubmitError::NotConnected);
            }
            let _permit = inner.life.slot().await.ok_or(SubmitError::NotConnected)?;
            inner.pace().await;
            if !inner.life.accepting() {
                return Err(SubmitError::NotConnected);
            }
            attempts += 1;
            let (msg_id, result) =
                match inner.request(Pdu::Submit(Box::new(submit.clone()))).await? {
                    Resp::Submit { msg_id, result } => (msg_id, result),
                    Resp::Malformed(reason) => return Err(SubmitError::MalformedResponse(reason)),
                    Resp::Other => {
                        return Err(SubmitError::MalformedResponse(
                            "a response of another command for this sequence".into(),
                        ));
                    }
                };
            match classify(result) {
                StatusClass::Ok => {
                    inner.accepted();
                    return Ok(SubmitOutcome {
                        message_id: MsgId::from_u64(msg_id).to_string(),
                        attempts,
                    });
                }
                StatusClass::Throttled if attempts <= inner.config.throttle_retries => {
                    inner.throttled();
                }
                class => {
                    if class == StatusClass::Throttled {
                        inner.throttled();
                    }
                    return Err(SubmitError::Rejected {
                        status: result,
                        name: format!("Result {result} ({})", result_name(result)),
                        class,
                    });
                }
            }
        }
    }

    /// Stops new submits; those already written keep waiting for their responses.
    pub fn stop_submitting(&self) {
        self.inner.life.stop_submitting();
    }

    /// [`Client::close_within`] with the response timeout as the grace.
    pub async fn close(&self) {
        self.close_within(self.inner.config.response_timeout).await;
    }

    /// Graceful close: stops new submits, waits up to `grace` for the responses of
    /// those in flight (any still unanswered then fail with
    /// [`SubmitError::ConnectionLost`]), sends `CMPP_TERMINATE`, waits for its response
    /// (at most the response timeout), closes.
    pub async fn close_within(&self, grace: Duration) {
        let inner = &self.inner;
        let goodbye = async {
            let _ = inner.request(Pdu::Terminate).await;
            let _ = inner.out.send(Out::Close);
            let _ = timeout(Duration::from_secs(1), inner.life.closed()).await;
        };
        if inner.life.close_within(grace, goodbye).await {
            inner.shut();
        }
    }

    /// True once closing or closed.
    pub fn is_closed(&self) -> bool {
        self.inner.life.is_closed()
    }

    /// Resolves when the connection is closed.
    pub async fn closed(&self) {
        self.inner.life.closed().await;
    }

    /// Requests sent and still awaiting their response.
    pub fn in_flight(&self) -> usize {
        self.inner.pending.len()
    }
}

/// The reader side: dispatches every frame, runs the active test, and on exit fails all
/// pending requests and emits `Closed`.
async fn session(
    inner: Arc<Inner>,
    mut reader: FramedRead<OwnedReadHalf, CmppCodec>,
    inbound: mpsc::Sender<Inbound>,
) {
    let version = inner.config.version;
    let interval = inner.config.active_test_interval;
    let mut idle_deadline = Instant::now() + interval;
    // (sequence, deadline, tries so far) of the active test awaiting its response.
    let mut check: Option<(u32, Instant, u32)> = None;
    let reason = loop {
        let deadline = check.map_or(idle_deadline, |(_, d, _)| d);
        let frame = tokio::select! {
            _ = inner.life.closed() => break "closed locally".to_string(),
            _ = sleep_until(deadline) => {
                let tries = check.map_or(0, |(_, _, n)| n);
                if tries >= inner.config.active_test_tries.max(1) {
                    break format!("{tries} CMPP_ACTIVE_TEST unanswered");
                }
                let seq = link::next_seq(&inner.seq);
                link::send(&inner.out, version, seq, Pdu::ActiveTest);
                check = Some((seq, Instant::now() + inner.config.response_timeout, tries + 1));
                continue;
            }
            frame = reader.next() => frame,
        };
        idle_deadline = Instant::now() + interval;
        match frame {
            None if inner.life.is_closing() => break "terminated".to_string(),
            None => break "connection closed by peer".to_string(),
            Some(Err(e)) => break format!("link error: {e}"),
            Some(Ok(Frame::Undecodable(u))) => {
                check = None;
                on_undecodable(&inner, u);
            }
            Some(Ok(Frame::Packet(p))) => {
                // Any traffic proves the link alive.
                check = None;
                if let Some(reason) = on_packet(&inner, p, &inbound) {
                    break reason;
                }
            }
        }
    };
    debug!(%reason, "cmpp session ended");
    inner.shut();
    let _ = inbound.send(Inbound::Closed(reason)).await;
}

fn on_undecodable(inner: &Inner, u: DecodeError) {
    warn!(error = %u, "cmpp undecodable packet");
    let version = inner.config.version;
    if u.is_response() {
        inner.complete(u.sequence_id, Resp::Malformed(u.reason));
        return;
    }
    // Answer what has an answer, with Result 1 (bad structure); keep the link.
    match u.command_id {
        command::DELIVER => link::send(
            &inner.out,
            version,
            u.sequence_id,
            Pdu::DeliverResp(DeliverResp {
                msg_id: u.msg_id.unwrap_or(0),
                result: RESULT_BAD_STRUCTURE,
            }),
        ),
        command::ACTIVE_TEST => {
            link::send(&inner.out, version, u.sequence_id, Pdu::ActiveTestResp(0));
        }
        command::TERMINATE => {
            link::send(&inner.out, version, u.sequence_id, Pdu::TerminateResp);
        }
        _ => {}
    }
}

/// Handles one packet; returns a reason when the session must end.
fn on_packet(inner: &Inner, p: Packet, inbound: &mpsc::Sender<Inbound>) -> Option<String> {
    let version = inner.config.version;
    let seq = p.sequence_id;
    match p.pdu {
        Pdu::SubmitResp(r) => {
            inner.complete(
                seq,
                Resp::Submit {
                    msg_id: r.msg_id,
                    result: r.result,
                },
            );
            None
        }
        Pdu::ActiveTestResp(_) | Pdu::TerminateResp | Pdu::ConnectResp(_) | Pdu::DeliverResp(_) => {
            inner.complete(seq, Resp::Other);
            None
        }
        Pdu::ActiveTest => {
            link::send(&inner.out, version, seq, Pdu::ActiveTestResp(0));
            None
        }
        Pdu::Terminate => {
            link::send(&inner.out, version, seq, Pdu::TerminateResp);
            let _ = inner.out.send(Out::Close);
            Some("terminated by the ISMG".to_string())
        }
        Pdu::Deliver(d) => {
            let item = match inbound_event(&d, version) {
                Ok(Event::Report(r)) => {
                    Inbound::Receipt(r, ack(&inner.out, version, seq, d.msg_id))
                }
                Ok(Event::Mo(m)) => Inbound::Mo(m, ack(&inner.out, version, seq, d.msg_id)),
                Err(reason) => {
                    warn!(%reason, "cmpp unreadable status report");
                    ack(&inner.out, version, seq, d.msg_id).reject(RESULT_BAD_STRUCTURE);
                    return None;
                }
            };
            if let Err(e) = inbound.try_send(item) {
                // Full (or gone): flow control, the ISMG delivers it again later.
                if let Inbound::Receipt(_, a) | Inbound::Mo(_, a) = e.into_inner() {
                    a.reject(RESULT_FLOW_CONTROL);
                }
            }
            None
        }
        // Requests an SP does not serve.
        Pdu::Connect(_) | Pdu::Submit(_) => {
            debug!(seq, "cmpp request an SP does not serve ignored");
            None
        }
    }
}

enum Event {
    Report(Receipt),
    Mo(MoPdu),
}

/// A delivery as a link event: a status report ([`Receipt`], `message_id` the MT's
/// `Msg_Id` in decimal as in [`SubmitOutcome::message_id`]) or an MO ([`MoPdu`] in UCS-2
/// terms, [`text::to_ucs2`], with its `LinkID`).
fn inbound_event(d: &Deliver, version: Version) -> Result<Event, String> {
    if d.registered_delivery == 1 {
        let r = Report::decode(&d.msg_content, version)?;
        let state = ReceiptState::from_stat(&r.stat);
        // ISMG codes (MA:0001, DB:0008…) are failures with a reason: keep the code.
        let error_code =
            (state == ReceiptState::Unknown && r.stat != "UNKNOWN").then(|| r.stat.clone());
        return Ok(Event::Report(Receipt {
            message_id: MsgId::from_u64(r.msg_id).to_string(),
            state,
            error_code,
            submit_date: Some(r.submit_time.clone()),
            done_date: Some(r.done_time.clone()),
            source_addr: r.dest_terminal_id.clone(),
            destination_addr: d.dest_id.clone(),
            raw: format!(
                "Msg_Id:{} Stat:{} Submit_time:{} Done_time:{} Dest_terminal_Id:{} SMSC_sequence:{}",
                r.msg_id, r.stat, r.submit_time, r.done_time, r.dest_terminal_id, r.smsc_sequence
            ),
        }));
    }
    let (data_coding, esm_class, short_message) =
        text::to_ucs2(d.msg_fmt, d.tp_udhi, &d.msg_content);
    let (concat, text) = tongdao_link::encode::decode(data_coding, esm_class, &short_message);
    Ok(Event::Mo(MoPdu {
        source_addr: d.src_terminal_id.clone(),
        destination_addr: d.dest_id.clone(),
        service_type: d.service_id.clone(),
        data_coding,
        esm_class,
        short_message,
        concat,
        text,
        link_id: (!d.link_id.is_empty()).then(|| d.link_id.clone()),
    }))
}

impl Session for Client {
    async fn submit(&self, request: &SubmitRequest) -> Result<SubmitOutcome, SubmitError> {
        Client::submit(self, request).await
    }

    fn stop_submitting(&self) {
        Client::stop_submitting(self);
    }

    async fn close_within(&self, grace: Duration) {
        Client::close_within(self, grace).await;
    }

    fn is_closed(&self) -> bool {
        Client::is_closed(self)
    }

    async fn closed(&self) {
        Client::closed(self).await;
    }

    fn in_flight(&self) -> usize {
        Client::in_flight(self)
    }
}

/// A CMPP login's settings open a CMPP [`Client`] (`cmpp3` or `cmpp2`).
impl LinkConnect for ClientConfig {
    type Session = Client;
    type Error = ConnectError;

    fn protocol(&self) -> &'static str {
        match self.version {
            Version::V30 => "cmpp3",
            Version::V20 => "cmpp2",
        }
    }

    fn address(&self) -> &str {
        &self.address
    }

    async fn connect(&self) -> Result<(Client, mpsc::Receiver<Inbound>), ConnectError> {
        Client::connect(self.clone()).await
    }
}
