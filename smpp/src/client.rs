//! The ESME side: one transceiver bind to an SMSC.
//!
//! [`Client::connect`] opens the TCP connection, binds as transceiver and returns the
//! client plus the receiver of [`Inbound`] events. The client is cheap to clone; all clones
//! share the bind. It keeps at most `window` submits outstanding, paces them to `tps`,
//! sends `enquire_link` when idle and answers the peer's, and backs the whole bind off when
//! the SMSC throttles.
//!
//! # Delivery semantics
//! * [`Client::submit`] returns `Ok` only for `ESME_ROK`. [`SubmitError::outcome_unknown`]
//!   is true when the PDU may have reached the SMSC without an answer (timeout, connection
//!   lost): resending may duplicate, not resending may lose — the caller decides.
//! * Each inbound `deliver_sm`/`data_sm` comes with an [`Ack`]. The `*_resp` is sent only
//!   when the owner calls [`Ack::ack`] (after storing it durably). Dropping the `Ack`
//!   answers `ESME_RX_T_APPN`, so the SMSC redelivers. An ack on a link that has died is
//!   lost and the SMSC redelivers too: receipts and MOs are at-least-once, store them
//!   idempotently.
//!
//! # Reconnecting
//! A `Client` is one connection; when it closes (peer, network, `enquire_link` timeout) the
//! receiver yields [`Inbound::Closed`] and every pending submit fails with
//! [`SubmitError::ConnectionLost`]. [`crate::run_with_reconnect`] is the loop that binds
//! again with back-off and hands each new session to the owner.
//!
//! # Closing cleanly
//! [`Client::stop_submitting`] makes every submit not yet written fail with
//! [`SubmitError::NotConnected`] (nothing sent, safe to send later) while those already
//! written keep waiting for their `submit_sm_resp`; [`Client::close_within`] then waits a
//! bounded time for them, unbinds and closes. A shutdown that does both loses no answer
//! it could have had, and sends nothing it cannot account for.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use futures_util::StreamExt;
use rusmpp::pdus::{BindTransceiver, SubmitSm};
use rusmpp::tlvs::{MessageSubmissionRequestTlvValue, TlvTag, TlvValue};
use rusmpp::types::{AnyOctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, PriorityFlag, RegisteredDelivery,
    ReplaceIfPresentFlag, ServiceType, Ton,
};
use rusmpp::{Command, CommandId, Pdu};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::codec::{Frame, SmppCodec, Undecodable};
use crate::link::{self, Out, OutTx};
use crate::receipt::{Receipt, ReceiptState, build_receipt, parse_receipt_text};
use crate::status::{
    ESME_RINVCMDID, ESME_ROK, ESME_RSYSERR, ESME_RX_T_APPN, StatusClass, classify, status_name,
};
use tongdao_link::encode::{ConcatInfo, decode_payload, split_udh};
use tongdao_link::{
    Ack, Answer, Connect, Inbound, Lifecycle, MoPdu, Pacer, Pending, Session, SubmitError,
    SubmitOutcome, SubmitRequest,
};

/// Settings of one bind.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` of the SMSC.
    pub address: String,
    /// `system_id` (≤ 15 ASCII chars).
    pub system_id: String,
    /// `password` (≤ 8 ASCII chars).
    pub password: String,
    /// `system_type` (≤ 12 ASCII chars), often empty.
    pub system_type: String,
    /// Most submits outstanding without a response.
    pub window: usize,
    /// Submits per second; 0 = unlimited.
    pub tps: u32,
    /// Idle time after which an `enquire_link` is sent.
    pub enquire_link_interval: Duration,
    /// How long to wait for any response (submit timeout, bind, enquire_link, unbind).
    pub response_timeout: Duration,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// First pause after an `ESME_RTHROTTLED`/`ESME_RMSGQFUL`; doubles per throttling
    /// episode up to 32×.
    pub throttle_backoff: Duration,
    /// How often one submit is resent after being throttled before it fails with the
    /// throttled status.
    pub throttle_retries: u32,
    /// Capacity of the inbound channel. When full, a `deliver_sm` is answered
    /// `ESME_RX_T_APPN` at once (the SMSC redelivers) instead of blocking the link.
    pub inbound_capacity: usize,
}

impl ClientConfig {
    /// Defaults: window 10, unlimited TPS, enquire_link every 30 s, 10 s response timeout,
    /// 100 ms first throttle pause, 10 throttle retries, inbound capacity 4096.
    pub fn new(
        address: impl Into<String>,
        system_id: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            address: address.into(),
            system_id: system_id.into(),
            password: password.into(),
            system_type: String::new(),
            window: 10,
            tps: 0,
            enquire_link_interval: Duration::from_secs(30),
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            throttle_backoff: Duration::from_millis(100),
            throttle_retries: 10,
            inbound_capacity: 4096,
        }
    }
}

/// Why connecting or binding failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Invalid settings (field too long, window 0).
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
    /// No connection or no `bind_transceiver_resp` within the timeout.
    #[error("timed out connecting or binding")]
    Timeout,
    /// The SMSC answered the bind with an error status.
    #[error("bind rejected: {}", status_name(*status))]
    BindRejected {
        /// `command_status` of the `bind_transceiver_resp`.
        status: u32,
    },
    /// The peer closed or sent something other than a bind response.
    #[error("bind failed: {0}")]
    Protocol(String),
}

/// The `submit_sm` for `request`. The fee fields are not sent: SMPP 3.4 has none.
fn submit_pdu(request: &SubmitRequest) -> Result<Pdu, SubmitError> {
    let invalid = SubmitError::Invalid;
    let tlvs = request
        .tlvs
        .iter()
        .map(|(tag, value)| MessageSubmissionRequestTlvValue::Other {
            tag: TlvTag::from(*tag),
            value: AnyOctetString::from_vec(value.clone()),
        })
        .collect();
    let validity = if request.validity_period.is_empty() {
        EmptyOrFullCOctetString::empty()
    } else {
        EmptyOrFullCOctetString::from_string(request.validity_period.clone())
            .map_err(|e| invalid(format!("validity_period: {e}")))?
    };
    let sm = OctetString::from_vec(request.short_message.clone())
        .map_err(|e| invalid(format!("short_message: {e}")))?;
    Ok(Pdu::SubmitSm(SubmitSm::new(
        ServiceType::new(link::c_string("service_type", &request.service_type).map_err(invalid)?),
        Ton::from(request.source_ton),
        Npi::from(request.source_npi),
        link::c_string("source_addr", &request.source_addr).map_err(invalid)?,
        Ton::from(request.dest_ton),
        Npi::from(request.dest_npi),
        link::c_string("destination_addr", &request.destination_addr).map_err(invalid)?,
        EsmClass::from(request.esm_class),
        0,
        PriorityFlag::from(0),
        EmptyOrFullCOctetString::empty(),
        validity,
        RegisteredDelivery::from(u8::from(request.registered_delivery)),
        ReplaceIfPresentFlag::from(0),
        DataCoding::from(request.data_coding),
        0,
        sm,
        tlvs,
    )))
}

/// Handle to one bound transceiver session. Clones share it; when the last clone is
/// dropped the session unbinds and closes.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _guard: Arc<DropGuard>,
}

#[derive(Debug)]
struct DropGuard(Arc<Inner>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        // Best effort without awaiting: unbind, flush, half-close; the reader ends on the
        // peer's unbind_resp/EOF, or the timer below.
        let inner = self.0.clone();
        if inner.life.begin_closing() {
            return;
        }
        let seq = inner.next_seq();
        let _ = inner.out.send(link::cmd(ESME_ROK, seq, Pdu::Unbind));
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
struct Resp {
    status: u32,
    message_id: Result<String, String>,
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
    fn next_seq(&self) -> u32 {
        tongdao_link::window::next_seq(&self.seq)
    }

    fn complete(&self, seq: u32, resp: Resp) -> bool {
        self.pending.complete(&seq, resp)
    }

    /// Sends a request and waits for its response.
    async fn request(&self, pdu: Pdu) -> Result<Resp, SubmitError> {
        let seq = self.next_seq();
        let rx = self
            .pending
            .register(seq)
            .ok_or(SubmitError::NotConnected)?;
        if self.out.send(link::cmd(ESME_ROK, seq, pdu)).is_err() {
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
            debug!(?pause, "smpp throttled");
        }
    }

    fn accepted(&self) {
        self.pacer.accepted();
    }

    /// Marks the session closed and fails everything waiting on it.
    fn shut(&self) {
        // Dropping the senders wakes the waiters with ConnectionLost.
        self.pending.close();
        self.life.shut();
    }
}

impl Client {
    /// Connects and binds as transceiver. Returns the client and the inbound events.
    pub async fn connect(
        config: ClientConfig,
    ) -> Result<(Client, mpsc::Receiver<Inbound>), ConnectError> {
        if config.window == 0 {
            return Err(ConnectError::Config("window must be at least 1".into()));
        }
        let bind = BindTransceiver::new(
            link::c_string("system_id", &config.system_id).map_err(ConnectError::Config)?,
            link::c_string("password", &config.password).map_err(ConnectError::Config)?,
            link::c_string("system_type", &config.system_type).map_err(ConnectError::Config)?,
            InterfaceVersion::Smpp3_4,
            Ton::from(0),
            Npi::from(0),
            rusmpp::types::COctetString::empty(),
        );
        let stream = timeout(config.connect_timeout, TcpStream::connect(&config.address))
            .await
            .map_err(|_| ConnectError::Timeout)?
            .map_err(|source| ConnectError::Io {
                address: config.address.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let mut reader = FramedRead::new(read, SmppCodec::new());
        let (out, out_rx) = mpsc::unbounded_channel();
        let cancel = CancellationToken::new();
        tokio::spawn(link::writer(write, out_rx, cancel.clone()));

        let _ = out.send(link::cmd(ESME_ROK, 1, Pdu::BindTransceiver(bind)));
        let bound = timeout(config.response_timeout, async {
            loop {
                match reader.next().await {
                    Some(Ok(Frame::Command(cmd))) => match cmd.id() {
                        CommandId::BindTransceiverResp | CommandId::GenericNack => {
                            let status = u32::from(cmd.status());
                            return if status == ESME_ROK {
                                Ok(())
                            } else {
                                Err(ConnectError::BindRejected { status })
                            };
                        }
                        CommandId::EnquireLink => {
                            let _ = out.send(link::cmd(
                                ESME_ROK,
                                cmd.sequence_number(),
                                Pdu::EnquireLinkResp,
                            ));
                        }
                        other => debug!(?other, "smpp pdu before bind_resp ignored"),
                    },
                    Some(Ok(Frame::Undecodable(u))) => {
                        return Err(ConnectError::Protocol(format!(
                            "undecodable bind response: {}",
                            u.reason
                        )));
                    }
                    Some(Err(e)) => return Err(ConnectError::Protocol(e.to_string())),
                    None => return Err(ConnectError::Protocol("connection closed".into())),
                }
            }
        })
        .await;
        match bound {
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

    /// Sends one `submit_sm` and waits for its `submit_sm_resp`. Waits for a window slot,
    /// the TPS pace and any throttling pause first; resends after `ESME_RTHROTTLED` /
    /// `ESME_RMSGQFUL` up to `throttle_retries` times.
    pub async fn submit(&self, request: &SubmitRequest) -> Result<SubmitOutcome, SubmitError> {
        let pdu = submit_pdu(request)?;
        let inner = &self.inner;
        let mut attempts = 0;
        loop {
            if !inner.life.accepting() {
                return Err(SubmitError::NotConnected);
            }
            let _permit = inner.life.slot().await.ok_or(SubmitError::NotConnected)?;
            inner.pace().await;
            // Checked again after every wait: a drain that began meanwhile sends nothing new.
            if !inner.life.accepting() {
                return Err(SubmitError::NotConnected);
            }
            attempts += 1;
            let resp = inner.request(pdu.clone()).await?;
            match classify(resp.status) {
                StatusClass::Ok => {
                    inner.accepted();
                    return match resp.message_id {
                        Ok(message_id) => Ok(SubmitOutcome {
                            message_id,
                            attempts,
                        }),
                        Err(reason) => Err(SubmitError::MalformedResponse(reason)),
                    };
                }
                StatusClass::Throttled if attempts <= inner.config.throttle_retries => {
                    inner.throttled();
                }
                class => {
                    if class == StatusClass::Throttled {
                        inner.throttled();
                    }
                    return Err(SubmitError::Rejected {
                        status: resp.status,
                        name: status_name(resp.status),
                        class,
                    });
                }
            }
        }
    }

    /// Stops new submits: from now on [`Client::submit`] fails with
    /// [`SubmitError::NotConnected`] before writing anything, while submits already written
    /// keep waiting for their responses. Inbound receipts and MOs still flow.
    pub fn stop_submitting(&self) {
        self.inner.life.stop_submitting();
    }

    /// Graceful close: stops new submits, waits (up to the response timeout) for those in
    /// flight, sends `unbind`, waits for `unbind_resp`, closes the socket.
    pub async fn close(&self) {
        self.close_within(self.inner.config.response_timeout).await;
    }

    /// Graceful close with a bound: stops new submits, waits up to `grace` for the
    /// responses of those in flight (any still unanswered then fail with
    /// [`SubmitError::ConnectionLost`]: outcome unknown), sends `unbind`, waits for
    /// `unbind_resp` (at most the response timeout), closes the socket.
    pub async fn close_within(&self, grace: Duration) {
        let inner = &self.inner;
        let goodbye = async {
            let _ = inner.request(Pdu::Unbind).await;
            let _ = inner.out.send(Out::Close);
            // Give the writer a moment to flush; the peer closes after unbind_resp anyway.
            let _ = timeout(Duration::from_secs(1), inner.life.closed()).await;
        };
        if inner.life.close_within(grace, goodbye).await {
            inner.shut();
        }
    }

    /// True once the session is closing or closed.
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

/// The reader side: dispatches every frame, sends enquire_link when idle, and on exit fails
/// all pending requests and emits `Closed`.
async fn session(
    inner: Arc<Inner>,
    mut reader: FramedRead<OwnedReadHalf, SmppCodec>,
    inbound: mpsc::Sender<Inbound>,
) {
    let interval = inner.config.enquire_link_interval;
    let mut idle_deadline = Instant::now() + interval;
    // (sequence, deadline) of the enquire_link awaiting its response.
    let mut link_check: Option<(u32, Instant)> = None;
    let reason = loop {
        let deadline = link_check.map_or(idle_deadline, |(_, d)| d);
        let frame = tokio::select! {
            _ = inner.life.closed() => break "closed locally".to_string(),
            _ = sleep_until(deadline) => {
                if link_check.is_some() {
                    break "enquire_link not answered".to_string();
                }
                let seq = inner.next_seq();
                let _ = inner.out.send(link::cmd(ESME_ROK, seq, Pdu::EnquireLink));
                link_check = Some((seq, Instant::now() + inner.config.response_timeout));
                continue;
            }
            frame = reader.next() => frame,
        };
        idle_deadline = Instant::now() + interval;
        match frame {
            None if inner.life.is_closing() => break "unbound".to_string(),
            None => break "connection closed by peer".to_string(),
            Some(Err(e)) => break format!("link error: {e}"),
            Some(Ok(Frame::Undecodable(u))) => on_undecodable(&inner, u),
            Some(Ok(Frame::Command(cmd))) => {
                if cmd.id() == CommandId::EnquireLinkResp
                    && link_check.is_some_and(|(s, _)| s == cmd.sequence_number())
                {
                    link_check = None;
                    continue;
                }
                // Any traffic proves the link alive.
                link_check = None;
                if let Some(reason) = on_command(&inner, *cmd, &inbound) {
                    break reason;
                }
            }
        }
    };
    debug!(%reason, "smpp session ended");
    inner.shut();
    let _ = inbound.send(Inbound::Closed(reason)).await;
}

fn on_undecodable(inner: &Inner, u: Undecodable) {
    warn!(command_id = u.command_id, seq = u.sequence_number, reason = %u.reason, "smpp undecodable pdu");
    if u.is_response() {
        let message_id = Err(u.reason.clone());
        inner.complete(
            u.sequence_number,
            Resp {
                status: u.command_status,
                message_id,
            },
        );
    } else {
        let _ = inner
            .out
            .send(link::generic_nack(ESME_RSYSERR, u.sequence_number));
    }
}

/// Handles one decoded PDU; returns a reason when the session must end.
fn on_command(inner: &Inner, cmd: Command, inbound: &mpsc::Sender<Inbound>) -> Option<String> {
    let seq = cmd.sequence_number();
    let status = u32::from(cmd.status());
    match cmd.id() {
        CommandId::SubmitSmResp
        | CommandId::UnbindResp
        | CommandId::EnquireLinkResp
        | CommandId::GenericNack => {
            let message_id = match cmd.pdu() {
                Some(Pdu::SubmitSmResp(r)) => r.message_id().as_str().to_string(),
                _ => String::new(),
            };
            if !inner.complete(
                seq,
                Resp {
                    status,
                    message_id: Ok(message_id),
                },
            ) {
                debug!(seq, id = ?cmd.id(), "smpp response without request (late or unknown)");
            }
            None
        }
        CommandId::EnquireLink => {
            let _ = inner
                .out
                .send(link::cmd(ESME_ROK, seq, Pdu::EnquireLinkResp));
            None
        }
        CommandId::Unbind => {
            let _ = inner.out.send(link::cmd(ESME_ROK, seq, Pdu::UnbindResp));
            let _ = inner.out.send(Out::Close);
            Some("peer unbound".to_string())
        }
        CommandId::DeliverSm | CommandId::DataSm => {
            let data_sm = cmd.id() == CommandId::DataSm;
            let Some(event) = inbound_event(&cmd) else {
                let _ = inner.out.send(link::generic_nack(ESME_RSYSERR, seq));
                return None;
            };
            let out = inner.out.clone();
            let ack = Ack::new(move |answer| {
                let status = match answer {
                    Answer::Ok => ESME_ROK,
                    Answer::Retry => ESME_RX_T_APPN,
                    Answer::Status(status) => status,
                };
                // A closed link just loses the response; the SMSC redelivers.
                let _ = out.send(link::deliver_resp(data_sm, status, seq));
            });
            let item = match event {
                Event::Receipt(r) => Inbound::Receipt(r, ack),
                Event::Mo(m) => Inbound::Mo(m, ack),
            };
            // Full or gone: the dropped Ack answers ESME_RX_T_APPN, the SMSC redelivers.
            let _ = inbound.try_send(item);
            None
        }
        // No response is defined for alert_notification; nothing to do for a transceiver.
        CommandId::AlertNotification => None,
        CommandId::Other(_) => {
            let _ = inner.out.send(link::generic_nack(ESME_RINVCMDID, seq));
            None
        }
        id if u32::from(id) & 0x8000_0000 != 0 => {
            debug!(?id, seq, "smpp unexpected response ignored");
            None
        }
        _ => {
            // A request a transceiver ESME does not serve (bind, query_sm, …).
            let _ = inner.out.send(link::generic_nack(ESME_RINVCMDID, seq));
            None
        }
    }
}

/// What a `deliver_sm`/`data_sm` carries (crate-visible for the fuzz entry points).
pub(crate) enum Event {
    Receipt(Receipt),
    Mo(MoPdu),
}

/// Fields common to deliver_sm and data_sm.
struct Delivered<'a> {
    service_type: &'a str,
    source: &'a str,
    dest: &'a str,
    esm_class: u8,
    data_coding: u8,
    short_message: &'a [u8],
    tlvs: &'a [rusmpp::tlvs::Tlv],
}

pub(crate) fn inbound_event(cmd: &Command) -> Option<Event> {
    let d = match cmd.pdu()? {
        Pdu::DeliverSm(d) => Delivered {
            service_type: d.service_type.value().as_str(),
            source: d.source_addr.as_str(),
            dest: d.destination_addr.as_str(),
            esm_class: u8::from(d.esm_class),
            data_coding: u8::from(d.data_coding),
            short_message: d.short_message().as_ref(),
            tlvs: d.tlvs(),
        },
        Pdu::DataSm(d) => Delivered {
            service_type: d.service_type.value().as_str(),
            source: d.source_addr.as_str(),
            dest: d.destination_addr.as_str(),
            esm_class: u8::from(d.esm_class),
            data_coding: u8::from(d.data_coding),
            short_message: &[],
            tlvs: d.tlvs(),
        },
        _ => return None,
    };
    let mut receipted_id = None;
    let mut state = None;
    let mut net_err = None;
    let mut payload: Option<&[u8]> = None;
    let (mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None);
    for tlv in d.tlvs {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.as_str()),
            Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
            Some(TlvValue::NetworkErrorCode(n)) => net_err = Some(n.error_code),
            Some(TlvValue::MessagePayload(p)) => payload = Some(p.value.as_ref()),
            Some(TlvValue::SarMsgRefNum(r)) => sar_ref = Some(*r),
            Some(TlvValue::SarTotalSegments(t)) => sar_total = Some(*t),
            Some(TlvValue::SarSegmentSeqnum(s)) => sar_seq = Some(*s),
            _ => {}
        }
    }
    let short_message = match payload {
        Some(p) if d.short_message.is_empty() => p,
        _ => d.short_message,
    };
    let (udh, body) = split_udh(d.esm_class, short_message);
    let text = decode_payload(d.data_coding, body);
    // esm_class message type (bits 5..2): 0x04 SMSC receipt, 0x08 SME delivery ack,
    // 0x20 intermediate notification.
    let receipt_type = matches!(d.esm_class & 0x3C, 0x04 | 0x08 | 0x20);
    let looks_like_receipt = receipt_type
        || receipted_id.is_some()
        || parse_receipt_text(&text).is_some_and(|p| p.id.is_some() && p.stat.is_some());
    if looks_like_receipt {
        let receipt = build_receipt(&text, receipted_id, state, net_err, d.source, d.dest)
            .unwrap_or_else(|| Receipt {
                message_id: String::new(),
                state: ReceiptState::Unknown,
                error_code: None,
                submit_date: None,
                done_date: None,
                source_addr: d.source.to_string(),
                destination_addr: d.dest.to_string(),
                raw: text.clone(),
            });
        return Some(Event::Receipt(receipt));
    }
    let sar = match (sar_ref, sar_total, sar_seq) {
        (Some(reference), Some(total), Some(seq)) => Some(ConcatInfo {
            reference,
            total,
            seq,
        }),
        _ => None,
    };
    Some(Event::Mo(MoPdu {
        source_addr: d.source.to_string(),
        destination_addr: d.dest.to_string(),
        service_type: d.service_type.to_string(),
        data_coding: d.data_coding,
        esm_class: d.esm_class,
        short_message: short_message.to_vec(),
        concat: udh.or(sar),
        text,
        link_id: None,
    }))
}

/// The relay's view of an SMPP bind (see [`tongdao_link::Session`]).
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

/// An SMPP transceiver bind's settings open an SMPP [`Client`].
impl Connect for ClientConfig {
    type Session = Client;
    type Error = ConnectError;

    fn protocol(&self) -> &'static str {
        "smpp"
    }

    fn address(&self) -> &str {
        &self.address
    }

    async fn connect(&self) -> Result<(Client, mpsc::Receiver<Inbound>), ConnectError> {
        Client::connect(self.clone()).await
    }
}
