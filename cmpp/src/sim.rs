//! An ISMG simulator: a real CMPP 3.0/2.0 server on a TCP listener, for tests and the
//! demo.
//!
//! * Accepts any number of SP connections; each speaks the version its `CMPP_CONNECT`
//!   announces (0x30 → 3.0, 0x20 → 2.0). Checks `Source_Addr` and
//!   `AuthenticatorSource` against [`SimConfig::credentials`] (`Status` 2 or 3 when
//!   wrong, then closes) and answers with a correct `AuthenticatorISMG`.
//! * Answers `CMPP_SUBMIT` with `Msg_Id`s in the spec's layout (time, gateway
//!   [`SimConfig::gateway`], sequence) and records every accepted submit **with all its
//!   fields**, fee fields included ([`SimHandle::received`]), so tests can compare what
//!   the operator would bill with the charge events. Reassembles long messages
//!   ([`SimHandle::messages`]). A CMPP 2.0 submit with `Registered_Delivery` 2
//!   ("产生SMC话单", a 包月 billing record) is kept as a billing record
//!   ([`SimHandle::fee_records`]): never a handset's message, no report.
//! * Sends a status report [`SimConfig::report_delay`] after each accepted submit that
//!   asked for one (`UNDELIV` for a [`SimConfig::report_failure`] share), to a logged-in
//!   connection of the same SP_Id; a non-zero `CMPP_DELIVER_RESP`, or a connection lost
//!   before it, redelivers after [`SimConfig::redelivery_delay`] (at least once).
//! * Sends MOs on demand, with a `LinkID` ([`SimHandle::send_mo`]), long ones as
//!   UDH-concatenated UCS-2 parts.
//! * Injects faults ([`Faults`], changeable at run time): disconnects on a submit (half of
//!   them after accepting it, so "unknown outcome" really is unknown), flow control
//!   (`Result` 8), rejection (`Result` 13), lost responses (accepted, never answered),
//!   malformed responses, stalls (responses delayed); malformed deliveries on demand
//!   ([`SimHandle::send_malformed`]) and dropped links ([`SimHandle::disconnect_all`]).
//! * Answers `CMPP_ACTIVE_TEST` and `CMPP_TERMINATE`; an undecodable `CMPP_SUBMIT` is
//!   answered with `Result` 1 and the link kept.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tongdao_link::Alphabet;
use tongdao_link::dice::Dice;
use tongdao_link::encode::{Concat, Reassembler, encode_in};
use tracing::debug;

use crate::auth;
use crate::codec::{CmppCodec, Frame};
use crate::link::{self, Out, OutTx};
use crate::msg_id::MsgId;
use crate::pdu::{ConnectResp, Deliver, Pdu, Report, Submit, SubmitResp, Version, command};
use crate::status::{
    CONNECT_AUTH_FAILED, CONNECT_BAD_SOURCE, RESULT_BAD_DEST, RESULT_BAD_STRUCTURE,
    RESULT_FLOW_CONTROL, RESULT_OK,
};
use crate::text;

/// Fault rates, each a probability in `0.0..=1.0` per submit, and a stall.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Connection dropped without an answer (half of these after accepting the submit).
    pub disconnect: f64,
    /// Answered `Result` 8 (flow control).
    pub throttle: f64,
    /// Answered `Result` 13 (bad `Dest_terminal_Id`, permanent).
    pub reject: f64,
    /// Accepted (report and all) but never answered.
    pub lose_response: f64,
    /// Accepted, answered with a `CMPP_SUBMIT_RESP` of the wrong length.
    pub malformed_response: f64,
    /// Every response written this much later (a stalled ISMG).
    pub stall: Option<Duration>,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `(SP_Id, shared secret)` required at login; `None` accepts any SP_Id and checks
    /// nothing.
    pub credentials: Option<(String, String)>,
    /// The ISMG code in the `Msg_Id`s (22 bits; Beijing gateway 1 is 001001).
    pub gateway: u32,
    /// Delay between accepting a submit and sending its report.
    pub report_delay: Duration,
    /// Share of reports that say `UNDELIV`.
    pub report_failure: f64,
    /// `CMPP_DELIVER`s outstanding (unanswered) per connection.
    pub deliver_window: usize,
    /// Pause before redelivering a refused or orphaned `CMPP_DELIVER`.
    pub redelivery_delay: Duration,
    /// Fault rates at start.
    pub faults: Faults,
    /// Seed of the fault dice.
    pub seed: u64,
    /// Most submits (and complete messages) kept; older ones are forgotten.
    pub max_records: usize,
}

impl Default for SimConfig {
    /// `127.0.0.1:0`, any credentials, gateway 001001, reports after 100 ms, none
    /// failed, window 16, 500 ms redelivery, no faults, the last 100,000 submits kept.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: None,
            gateway: 1001,
            report_delay: Duration::from_millis(100),
            report_failure: 0.0,
            deliver_window: 16,
            redelivery_delay: Duration::from_millis(500),
            faults: Faults::default(),
            seed: 0x5EED,
            max_records: 100_000,
        }
    }
}

/// One `CMPP_SUBMIT` the simulator accepted, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSubmit {
    /// The `Msg_Id` it was given.
    pub msg_id: u64,
    /// `msg_id` in decimal, as the client reports it.
    pub message_id: String,
    /// SP_Id of the connection.
    pub sp_id: String,
    /// Version of the connection.
    pub version: Version,
    /// Every field (fee fields included).
    pub submit: Submit,
}

/// A complete message (all parts in), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// `Src_Id`.
    pub src_id: String,
    /// The handset.
    pub destination: String,
    /// The whole text.
    pub text: String,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Successful logins.
    pub logins: u64,
    /// Logins refused.
    pub login_failures: u64,
    /// `CMPP_SUBMIT`s received (all outcomes).
    pub submits: u64,
    /// Submits accepted.
    pub accepted: u64,
    /// Answered `Result` 8.
    pub throttled: u64,
    /// Answered `Result` 13.
    pub rejected: u64,
    /// Accepted and never answered.
    pub lost_responses: u64,
    /// Connections dropped by fault injection or [`SimHandle::disconnect_all`].
    pub disconnects: u64,
    /// Report deliveries written (redeliveries included).
    pub reports_sent: u64,
    /// Reports answered `Result` 0.
    pub reports_acked: u64,
    /// Reports sent again.
    pub reports_redelivered: u64,
    /// MO deliveries written (per part, redeliveries included).
    pub mos_sent: u64,
    /// MO parts answered `Result` 0.
    pub mos_acked: u64,
    /// `CMPP_ACTIVE_TEST`s answered.
    pub active_tests: u64,
    /// Undecodable packets received (and answered where they have an answer).
    pub malformed_received: u64,
    /// Malformed packets sent by fault injection.
    pub malformed_sent: u64,
    /// `CMPP_DELIVER_RESP`s with `Result` 1 (bad structure) received: the peer's answer
    /// to a malformed delivery.
    pub bad_structure_answers: u64,
    /// `CMPP_TERMINATE`s received.
    pub terminates: u64,
}

#[derive(Debug, Default)]
struct Counters {
    logins: AtomicU64,
    login_failures: AtomicU64,
    submits: AtomicU64,
    accepted: AtomicU64,
    throttled: AtomicU64,
    rejected: AtomicU64,
    lost_responses: AtomicU64,
    disconnects: AtomicU64,
    reports_sent: AtomicU64,
    reports_acked: AtomicU64,
    reports_redelivered: AtomicU64,
    mos_sent: AtomicU64,
    mos_acked: AtomicU64,
    active_tests: AtomicU64,
    malformed_received: AtomicU64,
    malformed_sent: AtomicU64,
    bad_structure_answers: AtomicU64,
    terminates: AtomicU64,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Errors of the simulator API.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listener could not be bound.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// Address tried.
        addr: SocketAddr,
        /// Socket error.
        source: std::io::Error,
    },
    /// The MO cannot be encoded.
    #[error("invalid MO: {0}")]
    InvalidMo(String),
    /// The simulator has shut down.
    #[error("simulator stopped")]
    Stopped,
}

/// Starts simulators.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Binds the listener and starts serving. Must run inside a Tokio runtime.
    ///
    /// # Errors
    /// [`SimError::Listen`] when the address cannot be bound.
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listen_err = |source| SimError::Listen {
            addr: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen).await.map_err(listen_err)?;
        let local_addr = listener.local_addr().map_err(listen_err)?;
        let cancel = CancellationToken::new();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            faults: RwLock::new(config.faults),
            config,
            counters: Counters::default(),
            next_seq16: AtomicU32::new(0),
            mo_ref: AtomicU32::new(0),
            received: Mutex::new(VecDeque::new()),
            fee_records: Mutex::new(VecDeque::new()),
            reassembler: Mutex::new(Reassembler::new()),
            messages: Mutex::new(VecDeque::new()),
            ctl,
            cancel: cancel.clone(),
            kill: Mutex::new(CancellationToken::new()),
        });
        tokio::spawn(dispatcher(state.clone(), ctl_rx));
        tokio::spawn(accept_loop(state.clone(), listener));
        Ok(SimHandle { state, local_addr })
    }
}

/// Control of a running simulator. Dropping it stops the simulator.
#[derive(Debug)]
pub struct SimHandle {
    state: Arc<State>,
    local_addr: SocketAddr,
}

impl SimHandle {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        let c = &self.state.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            logins: g(&c.logins),
            login_failures: g(&c.login_failures),
            submits: g(&c.submits),
            accepted: g(&c.accepted),
            throttled: g(&c.throttled),
            rejected: g(&c.rejected),
            lost_responses: g(&c.lost_responses),
            disconnects: g(&c.disconnects),
            reports_sent: g(&c.reports_sent),
            reports_acked: g(&c.reports_acked),
            reports_redelivered: g(&c.reports_redelivered),
            mos_sent: g(&c.mos_sent),
            mos_acked: g(&c.mos_acked),
            active_tests: g(&c.active_tests),
            malformed_received: g(&c.malformed_received),
            malformed_sent: g(&c.malformed_sent),
            bad_structure_answers: g(&c.bad_structure_answers),
            terminates: g(&c.terminates),
        }
    }

    /// Every accepted submit (the last `max_records`), in arrival order, with all fields.
    pub fn received(&self) -> Vec<ReceivedSubmit> {
        self.state
            .received
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Billing records (CMPP 2.0 `Registered_Delivery` 2: "产生SMC话单", billed, never
    /// delivered), in arrival order; they are also in [`SimHandle::received`], never
    /// in [`SimHandle::messages`].
    pub fn fee_records(&self) -> Vec<ReceivedSubmit> {
        self.state
            .fee_records
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Complete messages (single submits and reassembled long ones).
    pub fn messages(&self) -> Vec<SimMessage> {
        self.state
            .messages
            .lock()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Changes the fault rates from now on.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.state.faults.write() {
            *f = faults;
        }
    }

    /// Queues an MO from handset `from` to service number `to` for any logged-in
    /// connection (sent as soon as one is up), with `link_id` as its `LinkID` (3.0
    /// connections only; 2.0 has none). Long texts go as UDH-concatenated UCS-2 parts.
    /// Returns the number of parts.
    ///
    /// # Errors
    /// [`SimError::InvalidMo`] for a text too long; [`SimError::Stopped`].
    pub fn send_mo(
        &self,
        from: &str,
        to: &str,
        service_id: &str,
        text: &str,
        link_id: &str,
    ) -> Result<usize, SimError> {
        let reference = self.state.mo_ref.fetch_add(1, Ordering::Relaxed) as u8;
        let segments = encode_in(text, Alphabet::Ucs2, Concat::Udh8(reference))
            .map_err(|e| SimError::InvalidMo(e.to_string()))?;
        for seg in &segments {
            let deliver = Deliver {
                msg_id: 0,
                dest_id: to.to_string(),
                service_id: service_id.to_string(),
                tp_pid: 0,
                tp_udhi: u8::from(seg.esm_class & 0x40 != 0),
                msg_fmt: text::FMT_UCS2,
                src_terminal_id: from.to_string(),
                src_terminal_type: 0,
                registered_delivery: 0,
                msg_content: seg.short_message.clone(),
                link_id: link_id.to_string(),
                reserve: String::new(),
            };
            self.state
                .ctl
                .send(Ctl::Enqueue(Box::new(Pending {
                    sp_id: None,
                    kind: Kind::Mo,
                    deliver,
                    report: None,
                    due: Instant::now(),
                })))
                .map_err(|_| SimError::Stopped)?;
        }
        Ok(segments.len())
    }

    /// Sends every logged-in connection a `CMPP_DELIVER` whose body is cut short (a valid
    /// header and `Msg_Id`, then 5 octets): a peer that keeps its link answers it with
    /// `Result` 1 ([`SimStats::bad_structure_answers`]).
    pub fn send_malformed(&self) {
        let _ = self.state.ctl.send(Ctl::Malformed);
    }

    /// Drops every open connection at once (unanswered submits stay unanswered).
    pub fn disconnect_all(&self) {
        if let Ok(mut kill) = self.state.kill.lock() {
            kill.cancel();
            *kill = CancellationToken::new();
        }
    }

    /// Stops listening and closes every connection.
    pub fn shutdown(&self) {
        self.state.cancel.cancel();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug)]
struct State {
    config: SimConfig,
    faults: RwLock<Faults>,
    counters: Counters,
    next_seq16: AtomicU32,
    mo_ref: AtomicU32,
    received: Mutex<VecDeque<ReceivedSubmit>>,
    fee_records: Mutex<VecDeque<ReceivedSubmit>>,
    reassembler: Mutex<Reassembler>,
    messages: Mutex<VecDeque<SimMessage>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    cancel: CancellationToken,
    kill: Mutex<CancellationToken>,
}

impl State {
    fn new_msg_id(&self) -> u64 {
        let seq = self.next_seq16.fetch_add(1, Ordering::Relaxed) as u16;
        MsgId::new(jiff::Timestamp::now(), self.config.gateway, seq).to_u64()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Report,
    Mo,
}

/// A `CMPP_DELIVER` waiting to be (re)sent; encoded per connection version when sent.
#[derive(Debug)]
struct Pending {
    /// Only connections of this SP_Id may receive it; `None` = any.
    sp_id: Option<String>,
    kind: Kind,
    deliver: Deliver,
    /// For reports: `Msg_Content` is this report, encoded in the connection's version.
    report: Option<Report>,
    due: Instant,
}

#[derive(Debug)]
enum Ctl {
    Up {
        session: u64,
        sp_id: String,
        version: Version,
        out: OutTx,
        seq: Arc<AtomicU32>,
    },
    Down {
        session: u64,
    },
    Enqueue(Box<Pending>),
    Resp {
        session: u64,
        seq: u32,
        result: u32,
    },
    Malformed,
}

struct Session {
    sp_id: String,
    version: Version,
    out: OutTx,
    seq: Arc<AtomicU32>,
    outstanding: HashMap<u32, u64>,
}

/// Owns every queued delivery: sends it when due to a connection with window room,
/// tracks the responses, redelivers refused or orphaned ones.
async fn dispatcher(state: Arc<State>, mut rx: mpsc::UnboundedReceiver<Ctl>) {
    let window = state.config.deliver_window.max(1);
    let redelivery = state.config.redelivery_delay;
    let mut items: HashMap<u64, Pending> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut sessions: HashMap<u64, Session> = HashMap::new();
    let mut order: Vec<u64> = Vec::new();
    let mut rr = 0usize;
    let mut next_item = 0u64;
    let c = &state.counters;
    loop {
        let now = Instant::now();
        while let Some(&Reverse((due, id))) = queue.peek() {
            if due > now {
                break;
            }
            let Some(item) = items.get(&id) else {
                queue.pop();
                continue;
            };
            let n = order.len();
            let target = (0..n).map(|k| order[(rr + k) % n]).find(|sid| {
                sessions.get(sid).is_some_and(|s| {
                    s.outstanding.len() < window
                        && item.sp_id.as_ref().is_none_or(|want| *want == s.sp_id)
                })
            });
            let Some(sid) = target else { break };
            rr = rr.wrapping_add(1);
            queue.pop();
            let Some(session) = sessions.get_mut(&sid) else {
                continue;
            };
            let mut deliver = item.deliver.clone();
            if let Some(report) = &item.report {
                deliver.msg_content = report.encode(session.version).unwrap_or_default();
            }
            if session.version == Version::V20 {
                deliver.link_id.clear();
            }
            let seq = link::next_seq(&session.seq);
            let sent = link::packet(session.version, seq, Pdu::Deliver(Box::new(deliver)))
                .is_some_and(|o| session.out.send(o).is_ok());
            if sent {
                session.outstanding.insert(seq, id);
                inc(match item.kind {
                    Kind::Report => &c.reports_sent,
                    Kind::Mo => &c.mos_sent,
                });
            } else {
                queue.push(Reverse((now + redelivery, id)));
            }
        }
        let wake = queue
            .peek()
            .map(|Reverse((due, _))| *due)
            .filter(|due| *due > now);
        let msg = tokio::select! {
            _ = state.cancel.cancelled() => return,
            msg = rx.recv() => msg,
            _ = async {
                match wake {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => continue,
        };
        let Some(msg) = msg else { return };
        match msg {
            Ctl::Up {
                session,
                sp_id,
                version,
                out,
                seq,
            } => {
                sessions.insert(
                    session,
                    Session {
                        sp_id,
                        version,
                        out,
                        seq,
                        outstanding: HashMap::new(),
                    },
                );
                order.push(session);
            }
            Ctl::Down { session } => {
                order.retain(|s| *s != session);
                if let Some(s) = sessions.remove(&session) {
                    let at = Instant::now() + redelivery;
                    for (_, id) in s.outstanding {
                        count_redelivery(c, items.get(&id));
                        queue.push(Reverse((at, id)));
                    }
                }
            }
            Ctl::Enqueue(item) => {
                let id = next_item;
                next_item += 1;
                queue.push(Reverse((item.due, id)));
                items.insert(id, *item);
            }
            Ctl::Resp {
                session,
                seq,
                result,
            } => {
                let Some(id) = sessions
                    .get_mut(&session)
                    .and_then(|s| s.outstanding.remove(&seq))
                else {
                    continue;
                };
                if result == RESULT_OK {
                    if let Some(item) = items.remove(&id) {
                        inc(match item.kind {
                            Kind::Report => &c.reports_acked,
                            Kind::Mo => &c.mos_acked,
                        });
                    }
                } else {
                    count_redelivery(c, items.get(&id));
                    queue.push(Reverse((Instant::now() + redelivery, id)));
                }
            }
            Ctl::Malformed => {
                for s in sessions.values() {
                    let seq = link::next_seq(&s.seq);
                    let mut b = BytesMut::with_capacity(25);
                    b.put_u32(25);
                    b.put_u32(command::DELIVER);
                    b.put_u32(seq);
                    b.put_u64(state.new_msg_id());
                    b.put_slice(b"BROKE");
                    if s.out.send(Out::Raw(b.freeze())).is_ok() {
                        inc(&c.malformed_sent);
                    }
                }
            }
        }
    }
}

fn count_redelivery(c: &Counters, item: Option<&Pending>) {
    if item.is_some_and(|i| i.kind == Kind::Report) {
        inc(&c.reports_redelivered);
    }
}

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let mut session = 0u64;
    loop {
        let accepted = tokio::select! {
            _ = state.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                session += 1;
                debug!(%peer, session, "ismg-sim connection");
                tokio::spawn(serve(state.clone(), stream, session));
            }
            Err(e) => {
                debug!(error = %e, "ismg-sim accept failed");
                sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Sends `out` now, or after the stall when one is set.
fn respond(out: &OutTx, stall: Option<Duration>, o: Option<Out>) {
    let Some(o) = o else { return };
    match stall {
        None => {
            let _ = out.send(o);
        }
        Some(d) => {
            let out = out.clone();
            tokio::spawn(async move {
                sleep(d).await;
                let _ = out.send(o);
            });
        }
    }
}

async fn serve(state: Arc<State>, stream: TcpStream, session: u64) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, CmppCodec::new(Version::V30));
    let (out, out_rx) = mpsc::unbounded_channel();
    let conn_cancel = state.cancel.child_token();
    let writer = tokio::spawn(link::writer(write, out_rx, conn_cancel.clone()));
    let kill = state.kill.lock().map(|k| k.clone()).unwrap_or_default();
    let mut dice = Dice::new(state.config.seed ^ session.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let seq = Arc::new(AtomicU32::new(1));
    let c = &state.counters;
    // (SP_Id, version) once logged in.
    let mut login: Option<(String, Version)> = None;
    loop {
        let frame = tokio::select! {
            _ = conn_cancel.cancelled() => break,
            _ = kill.cancelled() => {
                inc(&c.disconnects);
                conn_cancel.cancel();
                break;
            }
            f = reader.next() => f,
        };
        let version = login.as_ref().map_or(Version::V30, |(_, v)| *v);
        let p = match frame {
            None | Some(Err(_)) => break,
            Some(Ok(Frame::Undecodable(u))) => {
                inc(&c.malformed_received);
                if u.command_id == command::SUBMIT {
                    link::send(
                        &out,
                        version,
                        u.sequence_id,
                        Pdu::SubmitResp(SubmitResp {
                            msg_id: u.msg_id.unwrap_or(0),
                            result: RESULT_BAD_STRUCTURE,
                        }),
                    );
                }
                continue;
            }
            Some(Ok(Frame::Packet(p))) => p,
        };
        let s = p.sequence_id;
        match p.pdu {
            Pdu::Connect(conn) => {
                let v = Version::from_octet(conn.version).unwrap_or(Version::V20);
                let status = match &state.config.credentials {
                    Some((id, _)) if *id != conn.source_addr => CONNECT_BAD_SOURCE,
                    Some((id, secret))
                        if auth::authenticator_source(id, secret, conn.timestamp)
                            != conn.authenticator_source =>
                    {
                        CONNECT_AUTH_FAILED
                    }
                    _ => RESULT_OK,
                };
                let secret = state
                    .config
                    .credentials
                    .as_ref()
                    .map_or("", |(_, s)| s.as_str());
                let authenticator_ismg = if status == RESULT_OK {
                    auth::authenticator_ismg(status, &conn.authenticator_source, secret, v)
                } else {
                    [0; 16]
                };
                link::send(
                    &out,
                    v,
                    s,
                    Pdu::ConnectResp(ConnectResp {
                        status,
                        authenticator_ismg,
                        version: v.octet(),
                    }),
                );
                if status != RESULT_OK {
                    inc(&c.login_failures);
                    let _ = out.send(Out::Close);
                    break;
                }
                inc(&c.logins);
                reader.decoder_mut().set_version(v);
                login = Some((conn.source_addr.clone(), v));
                let _ = state.ctl.send(Ctl::Up {
                    session,
                    sp_id: conn.source_addr,
                    version: v,
                    out: out.clone(),
                    seq: seq.clone(),
                });
            }
            Pdu::Submit(submit) => {
                inc(&c.submits);
                let Some((sp_id, v)) = login.clone() else {
                    // Not logged in: the spec allows nothing before CMPP_CONNECT.
                    let _ = out.send(Out::Close);
                    break;
                };
                let faults = state.faults.read().map(|f| *f).unwrap_or_default();
                let resp = |result: u32, msg_id: u64| {
                    link::packet(v, s, Pdu::SubmitResp(SubmitResp { msg_id, result }))
                };
                let roll = dice.next();
                let mut edge = faults.disconnect;
                if roll < edge {
                    if dice.next() < 0.5 {
                        accept(&state, &sp_id, v, *submit, &mut dice);
                    }
                    inc(&c.disconnects);
                    conn_cancel.cancel();
                    break;
                }
                edge += faults.throttle;
                if roll < edge {
                    inc(&c.throttled);
                    respond(&out, faults.stall, resp(RESULT_FLOW_CONTROL, 0));
                    continue;
                }
                edge += faults.reject;
                if roll < edge {
                    inc(&c.rejected);
                    respond(&out, faults.stall, resp(RESULT_BAD_DEST, 0));
                    continue;
                }
                let msg_id = accept(&state, &sp_id, v, *submit, &mut dice);
                edge += faults.lose_response;
                if roll < edge {
                    inc(&c.lost_responses);
                    continue;
                }
                edge += faults.malformed_response;
                if roll < edge {
                    inc(&c.malformed_sent);
                    let mut b = BytesMut::with_capacity(15);
                    b.put_u32(15);
                    b.put_u32(command::SUBMIT_RESP);
                    b.put_u32(s);
                    b.put_slice(&[1, 2, 3]);
                    respond(&out, faults.stall, Some(Out::Raw(b.freeze())));
                    continue;
                }
                respond(&out, faults.stall, resp(RESULT_OK, msg_id));
            }
            Pdu::DeliverResp(r) => {
                if r.result == RESULT_BAD_STRUCTURE {
                    inc(&c.bad_structure_answers);
                }
                let _ = state.ctl.send(Ctl::Resp {
                    session,
                    seq: s,
                    result: r.result,
                });
            }
            Pdu::ActiveTest => {
                inc(&c.active_tests);
                link::send(&out, version, s, Pdu::ActiveTestResp(0));
            }
            Pdu::Terminate => {
                inc(&c.terminates);
                link::send(&out, version, s, Pdu::TerminateResp);
                let _ = out.send(Out::Close);
                break;
            }
            // Responses to our own requests, and requests an ISMG does not take from an SP.
            Pdu::ActiveTestResp(_)
            | Pdu::TerminateResp
            | Pdu::ConnectResp(_)
            | Pdu::SubmitResp(_)
            | Pdu::Deliver(_) => {}
        }
    }
    drop(out);
    if login.is_some() {
        let _ = state.ctl.send(Ctl::Down { session });
    }
    let _ = writer.await;
}

/// Records an accepted submit, queues its reports; returns its `Msg_Id`.
fn accept(state: &State, sp_id: &str, version: Version, submit: Submit, dice: &mut Dice) -> u64 {
    let c = &state.counters;
    inc(&c.accepted);
    let msg_id = state.new_msg_id();
    let record = ReceivedSubmit {
        msg_id,
        message_id: MsgId::from_u64(msg_id).to_string(),
        sp_id: sp_id.to_string(),
        version,
        submit,
    };
    // CMPP 2.0 Registered_Delivery 2: a billing record for the gateway only.
    if version == Version::V20 && record.submit.registered_delivery == 2 {
        if let Ok(mut r) = state.fee_records.lock() {
            push_capped(&mut r, state.config.max_records, record.clone());
        }
        if let Ok(mut r) = state.received.lock() {
            push_capped(&mut r, state.config.max_records, record);
        }
        return msg_id;
    }
    let submit = &record.submit;
    let (dc, esm, sm) = text::to_ucs2(submit.msg_fmt, submit.tp_udhi, &submit.msg_content);
    for dest in &submit.dest_terminal_ids {
        let key = format!("{}\u{0}{dest}", submit.src_id);
        let done = state
            .reassembler
            .lock()
            .ok()
            .and_then(|mut r| r.push(&key, dc, esm, &sm, None));
        if let Some(full) = done
            && let Ok(mut m) = state.messages.lock()
        {
            push_capped(
                &mut m,
                state.config.max_records,
                SimMessage {
                    src_id: submit.src_id.clone(),
                    destination: dest.clone(),
                    text: full,
                },
            );
        }
        if submit.registered_delivery == 1 {
            let failed =
                state.config.report_failure > 0.0 && dice.next() < state.config.report_failure;
            let now = jiff::Timestamp::now();
            let report = Report {
                msg_id,
                stat: if failed { "UNDELIV" } else { "DELIVRD" }.to_string(),
                submit_time: crate::time::yymmddhhmm(now),
                done_time: crate::time::yymmddhhmm(now),
                dest_terminal_id: dest.clone(),
                smsc_sequence: (msg_id & 0xFFFF_FFFF) as u32,
            };
            let deliver = Deliver {
                msg_id: state.new_msg_id(),
                dest_id: submit.src_id.clone(),
                service_id: submit.service_id.clone(),
                src_terminal_id: dest.clone(),
                registered_delivery: 1,
                ..Deliver::default()
            };
            let _ = state.ctl.send(Ctl::Enqueue(Box::new(Pending {
                sp_id: Some(sp_id.to_string()),
                kind: Kind::Report,
                deliver,
                report: Some(report),
                due: Instant::now() + state.config.report_delay,
            })));
        }
    }
    if let Ok(mut r) = state.received.lock() {
        push_capped(&mut r, state.config.max_records, record);
    }
    msg_id
}

fn push_capped<T>(q: &mut VecDeque<T>, cap: usize, item: T) {
    if q.len() >= cap.max(1) {
        q.pop_front();
    }
    q.push_back(item);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::Packet;

    #[test]
    fn packet_helper_encodes_a_report_delivery() {
        let d = Deliver {
            registered_delivery: 1,
            msg_content: Report::default().encode(Version::V30).expect("report"),
            ..Deliver::default()
        };
        let bytes = Packet {
            sequence_id: 1,
            pdu: Pdu::Deliver(Box::new(d)),
        }
        .encode(Version::V30)
        .expect("encode");
        assert_eq!(bytes.len(), 12 + 8 + 21 + 10 + 3 + 32 + 1 + 1 + 1 + 71 + 20);
    }
}
