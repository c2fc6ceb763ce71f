//! An SMG simulator: a real SGIP 1.2 gateway on TCP, for tests and the demo.
//!
//! * Listens for the SP's binds (Login Type 1; Login Name/Password checked when
//!   [`SimConfig::credentials`] is set: Result 1 otherwise, 4 for another Login Type).
//! * Answers every Submit, records it with every field, the fee fields included
//!   ([`SimHandle::received`]: tests compare them with the charge events), reassembles
//!   concatenated ones ([`SimHandle::messages`]). A Submit with ReportFlag 3 ("该条消息
//!   仅携带包月计费信息，不下发给用户", a 包月 billing record) is kept as a billing record
//!   ([`SimHandle::fee_records`]), never as a handset's message.
//! * Sends a Report per recipient [`SimConfig::report_delay`] after each accepted Submit
//!   whose ReportFlag asks for one (1 and 3 always; 0 on failure only; 2 never), State 2
//!   with ErrorCode [`SimConfig::report_error_code`] for a [`SimConfig::failure_ratio`]
//!   of them, State 0 otherwise.
//! * Reports and MOs ([`SimHandle::send_mo`]) go over the simulator's own link to the
//!   SP's listener ([`SimConfig::sp_address`], Bind with Login Type 2), opened when
//!   something is due and closed with Unbind after [`SimConfig::idle_timeout`] of
//!   silence, as SMGs do. A non-zero Deliver_Resp/Report_Resp, or a link lost before the
//!   answer, makes it resend after [`SimConfig::redelivery_delay`] (at-least-once).
//! * Fault injection ([`Faults`], changeable at run time): links dropped on a Submit
//!   (half of them after accepting it, so "outcome unknown" really is unknown), stalled
//!   Submits (never answered), error Results, throttling (Result 11); lost acks
//!   ([`SimHandle::lose_next_acks`]: the link to the SP dies as the answer arrives, so
//!   the item is resent); malformed packets ([`SimHandle::send_malformed_deliver`]: a
//!   Deliver with a truncated body, which the SP must answer without dropping the link).
//! * Undecodable packets from the SP are answered (Result 5/7/8), the link kept.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tongdao_link::dice::Dice;
use tongdao_link::encode::Reassembler;
use tracing::debug;

use crate::client::{bare_resp, undecodable_result};
use crate::codec::{
    Bind, Deliver, Frame, LOGIN_SMG_TO_SP, LOGIN_SP_TO_SMG, Packet, Pdu, Report, Resp,
    STATE_DELIVERED, STATE_FAILED, SequenceNumber, SgipCodec, Submit, command,
};
use crate::link::{self, Minter, Out, OutTx};
use crate::result;
use crate::text;

/// Fault rates, each a probability in `0.0..=1.0` per Submit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// The link is dropped without an answer (half of these after accepting).
    pub disconnect: f64,
    /// The Submit is never answered; the link stays up.
    pub stall: f64,
    /// Answered with [`SimConfig::error_result`].
    pub error: f64,
    /// Answered Result 11 (node busy).
    pub throttle: f64,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on for the SP (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `(Login Name, Password)` required from the SP; `None` accepts any.
    pub credentials: Option<(String, String)>,
    /// The SMG's node id (first part of its sequence numbers).
    pub node_id: u32,
    /// The SP's listener for Reports and MOs; `None` keeps them queued.
    pub sp_address: Option<SocketAddr>,
    /// `(Login Name, Password)` the simulator binds to the SP with.
    pub sp_credentials: (String, String),
    /// Delay between accepting a Submit and sending its Report.
    pub report_delay: Duration,
    /// Share of Reports with State 2 (failed).
    pub failure_ratio: f64,
    /// ErrorCode of failed Reports.
    pub report_error_code: u8,
    /// Result of Submits failed by [`Faults::error`].
    pub error_result: u8,
    /// Fault rates at start.
    pub faults: Faults,
    /// Seed of the dice (reproducible per connection order).
    pub seed: u64,
    /// Pause before resending a refused or lost Report/Deliver.
    pub redelivery_delay: Duration,
    /// Reports/Delivers outstanding (unanswered) on the link to the SP.
    pub window: usize,
    /// Links (both directions) silent this long are closed with Unbind.
    pub idle_timeout: Duration,
    /// Most Submits (and complete messages) kept; counters keep counting.
    pub max_records: usize,
}

impl Default for SimConfig {
    /// `127.0.0.1:0`, any credentials, node 2_000_001, no SP address, 100 ms reports, no
    /// failures (ErrorCode 29 when failing), error Result 21, no faults, 500 ms
    /// redelivery, window 64, 5 s idle close, 100,000 records.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: None,
            node_id: 2_000_001,
            sp_address: None,
            sp_credentials: (String::new(), String::new()),
            report_delay: Duration::from_millis(100),
            failure_ratio: 0.0,
            report_error_code: result::UNKNOWN_USER,
            error_result: result::UNREACHABLE,
            faults: Faults::default(),
            seed: 0x5EED,
            redelivery_delay: Duration::from_millis(500),
            window: 64,
            idle_timeout: Duration::from_secs(5),
            max_records: 100_000,
        }
    }
}

/// One accepted Submit, every field as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSubmit {
    /// The Submit's sequence number.
    pub sequence: SequenceNumber,
    /// Its canonical string: the message id its Report names.
    pub message_id: String,
    /// Login Name of the bind it came on.
    pub login_name: String,
    /// The Submit.
    pub submit: Submit,
}

/// A complete message (all parts received), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// SPNumber.
    pub sp_number: String,
    /// UserNumber.
    pub user_number: String,
    /// The full text.
    pub text: String,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Successful SP binds.
    pub binds: u64,
    /// SP binds refused.
    pub bind_failures: u64,
    /// Submit packets received (all outcomes).
    pub submits: u64,
    /// Submits accepted.
    pub accepted: u64,
    /// Submits answered with the error Result.
    pub rejected: u64,
    /// Submits answered Result 11.
    pub throttled: u64,
    /// Submits never answered (stall fault).
    pub stalled: u64,
    /// Links dropped by faults, lost acks or [`SimHandle::disconnect_all`].
    pub disconnects: u64,
    /// Undecodable packets received from the SP (each answered).
    pub malformed_received: u64,
    /// Binds of the simulator to the SP's listener.
    pub reverse_binds: u64,
    /// Reverse binds the SP refused.
    pub reverse_bind_failures: u64,
    /// Reports written (resends included).
    pub reports_sent: u64,
    /// Reports answered Result 0.
    pub reports_acked: u64,
    /// Reports sent again after a refusal or a lost link.
    pub reports_redelivered: u64,
    /// MO parts written (resends included).
    pub mos_sent: u64,
    /// MO parts answered Result 0.
    pub mos_acked: u64,
    /// MO parts sent again.
    pub mos_redelivered: u64,
    /// Malformed packets sent to the SP.
    pub malformed_sent: u64,
    /// Malformed packets the SP answered with a non-zero Result.
    pub malformed_answered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    binds: AtomicU64,
    bind_failures: AtomicU64,
    submits: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    throttled: AtomicU64,
    stalled: AtomicU64,
    disconnects: AtomicU64,
    malformed_received: AtomicU64,
    reverse_binds: AtomicU64,
    reverse_bind_failures: AtomicU64,
    reports_sent: AtomicU64,
    reports_acked: AtomicU64,
    reports_redelivered: AtomicU64,
    mos_sent: AtomicU64,
    mos_acked: AtomicU64,
    mos_redelivered: AtomicU64,
    malformed_sent: AtomicU64,
    malformed_answered: AtomicU64,
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
    /// The simulator has stopped.
    #[error("simulator stopped")]
    Stopped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Report,
    Mo,
    Malformed,
}

/// A Report or Deliver waiting to be (re)sent.
#[derive(Debug)]
struct Item {
    kind: Kind,
    /// The body; `None` for a malformed packet (`raw`).
    pdu: Option<Pdu>,
    /// A crafted malformed Deliver (sequence patched when sent).
    raw: Option<Bytes>,
    due: Instant,
}

#[derive(Debug)]
enum Ctl {
    Enqueue(Item),
}

#[derive(Debug)]
struct State {
    config: SimConfig,
    faults: RwLock<Faults>,
    counters: Counters,
    minter: Minter,
    mo_ref: AtomicU32,
    received: Mutex<VecDeque<ReceivedSubmit>>,
    fee_records: Mutex<VecDeque<ReceivedSubmit>>,
    reassembler: Mutex<Reassembler>,
    messages: Mutex<VecDeque<SimMessage>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    cancel: CancellationToken,
    /// Replaced by `disconnect_all`; every link watches the one current at its start.
    kill: Mutex<CancellationToken>,
    lose_acks: AtomicU32,
}

impl State {
    fn kill_token(&self) -> CancellationToken {
        self.kill.lock().map(|k| k.clone()).unwrap_or_default()
    }
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
        let listen = config.listen;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| SimError::Listen {
                addr: listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Listen {
            addr: listen,
            source,
        })?;
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            faults: RwLock::new(config.faults),
            minter: Minter::new(config.node_id, 0),
            config,
            counters: Counters::default(),
            mo_ref: AtomicU32::new(0),
            received: Mutex::new(VecDeque::new()),
            fee_records: Mutex::new(VecDeque::new()),
            reassembler: Mutex::new(Reassembler::new()),
            messages: Mutex::new(VecDeque::new()),
            ctl,
            cancel: CancellationToken::new(),
            kill: Mutex::new(CancellationToken::new()),
            lose_acks: AtomicU32::new(0),
        });
        tokio::spawn(outbound(state.clone(), ctl_rx));
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
    /// The address the SP binds to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Counters so far.
    pub fn stats(&self) -> SimStats {
        let c = &self.state.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimStats {
            binds: g(&c.binds),
            bind_failures: g(&c.bind_failures),
            submits: g(&c.submits),
            accepted: g(&c.accepted),
            rejected: g(&c.rejected),
            throttled: g(&c.throttled),
            stalled: g(&c.stalled),
            disconnects: g(&c.disconnects),
            malformed_received: g(&c.malformed_received),
            reverse_binds: g(&c.reverse_binds),
            reverse_bind_failures: g(&c.reverse_bind_failures),
            reports_sent: g(&c.reports_sent),
            reports_acked: g(&c.reports_acked),
            reports_redelivered: g(&c.reports_redelivered),
            mos_sent: g(&c.mos_sent),
            mos_acked: g(&c.mos_acked),
            mos_redelivered: g(&c.mos_redelivered),
            malformed_sent: g(&c.malformed_sent),
            malformed_answered: g(&c.malformed_answered),
        }
    }

    /// Every accepted Submit (the last `max_records`), in arrival order.
    pub fn received(&self) -> Vec<ReceivedSubmit> {
        self.state
            .received
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Billing records (ReportFlag 3: billed, reported, never delivered), in arrival
    /// order; they are also in [`SimHandle::received`], never in
    /// [`SimHandle::messages`].
    pub fn fee_records(&self) -> Vec<ReceivedSubmit> {
        self.state
            .fee_records
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Complete messages: single Submits and reassembled concatenated ones.
    pub fn messages(&self) -> Vec<SimMessage> {
        self.state
            .messages
            .lock()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Current fault rates.
    pub fn faults(&self) -> Faults {
        self.state.faults.read().map(|f| *f).unwrap_or_default()
    }

    /// Changes the fault rates from now on.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.state.faults.write() {
            *f = faults;
        }
    }

    /// Queues an MO from handset `from` to service number `to`: long texts go as
    /// UDH-concatenated parts (UCS-2 unless ASCII). Returns the number of parts.
    ///
    /// # Errors
    /// [`SimError::InvalidMo`] for an empty text or a number too long;
    /// [`SimError::Stopped`].
    pub fn send_mo(&self, from: &str, to: &str, body: &str) -> Result<usize, SimError> {
        let reference = self.state.mo_ref.fetch_add(1, Ordering::Relaxed) as u8;
        let parts =
            text::encode(body, reference).map_err(|e| SimError::InvalidMo(e.to_string()))?;
        let mut items = Vec::with_capacity(parts.len());
        for p in &parts {
            let d = Deliver {
                user_number: from.to_string(),
                sp_number: to.to_string(),
                tp_pid: 0,
                tp_udhi: p.tp_udhi,
                message_coding: p.message_coding,
                message_content: p.content.clone(),
                reserve: [0; 8],
            };
            let pdu = Pdu::Deliver(Box::new(d));
            crate::codec::to_bytes(&Packet {
                sequence: SequenceNumber::default(),
                pdu: pdu.clone(),
            })
            .map_err(|e| SimError::InvalidMo(e.to_string()))?;
            items.push(pdu);
        }
        for pdu in items {
            self.enqueue(Item {
                kind: Kind::Mo,
                pdu: Some(pdu),
                raw: None,
                due: Instant::now(),
            })?;
        }
        Ok(parts.len())
    }

    /// Queues a malformed Deliver (a header and a body cut after the UserNumber) for the
    /// SP. The SP must answer it with a non-zero Result and keep the link; the simulator
    /// counts the answer in [`SimStats::malformed_answered`] and does not resend it.
    ///
    /// # Errors
    /// [`SimError::Stopped`].
    pub fn send_malformed_deliver(&self) -> Result<(), SimError> {
        let mut b = BytesMut::new();
        b.put_u32(20 + 21);
        b.put_u32(command::DELIVER);
        b.put_bytes(0, 12);
        b.put_slice(b"8613000000000");
        b.put_bytes(0, 8);
        self.enqueue(Item {
            kind: Kind::Malformed,
            pdu: None,
            raw: Some(b.freeze()),
            due: Instant::now(),
        })
    }

    fn enqueue(&self, item: Item) -> Result<(), SimError> {
        self.state
            .ctl
            .send(Ctl::Enqueue(item))
            .map_err(|_| SimError::Stopped)
    }

    /// The next `n` answers from the SP to Reports/Delivers are lost with their link:
    /// the simulator drops the link as the answer arrives and resends the item, as an
    /// SMG does when a link dies between its packet and the SP's answer.
    pub fn lose_next_acks(&self, n: u32) {
        self.state.lose_acks.store(n, Ordering::SeqCst);
    }

    /// Drops every open link at once (unanswered Submits stay unanswered).
    pub fn disconnect_all(&self) {
        if let Ok(mut kill) = self.state.kill.lock() {
            kill.cancel();
            *kill = CancellationToken::new();
        }
    }

    /// Stops listening and closes every link.
    pub fn shutdown(&self) {
        self.state.cancel.cancel();
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, cap: usize, item: T) {
    if q.len() >= cap.max(1) {
        q.pop_front();
    }
    q.push_back(item);
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
                debug!(%peer, session, "smg-sim connection");
                tokio::spawn(serve(state.clone(), stream, session));
            }
            Err(e) => {
                debug!(error = %e, "smg-sim accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// One SP link: Bind, Submits, Unbind.
async fn serve(state: Arc<State>, stream: TcpStream, session: u64) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, SgipCodec);
    let (out, out_rx) = mpsc::unbounded_channel();
    let conn = state.cancel.child_token();
    let writer = tokio::spawn(link::writer(write, out_rx, conn.clone()));
    let kill = state.kill_token();
    let mut dice = Dice::new(state.config.seed ^ session.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let c = &state.counters;
    let idle = state.config.idle_timeout;
    let mut bound: Option<String> = None;
    loop {
        let frame = tokio::select! {
            _ = conn.cancelled() => break,
            _ = kill.cancelled() => {
                inc(&c.disconnects);
                conn.cancel();
                break;
            }
            f = timeout(idle, reader.next()) => match f {
                Err(_) => {
                    // Idle: SMGs close quiet links.
                    let _ = out.send(link::packet(state.minter.next(), Pdu::Unbind));
                    let _ = out.send(Out::Close);
                    break;
                }
                Ok(f) => f,
            },
        };
        let packet = match frame {
            None | Some(Err(_)) => break,
            Some(Ok(Frame::Undecodable(u))) => {
                if !u.is_response() {
                    inc(&c.malformed_received);
                    let code = undecodable_result(&u.error);
                    let _ = match Pdu::response_to(u.command_id, code) {
                        Some(pdu) => out.send(link::packet(u.sequence, pdu)),
                        None => out.send(Out::Raw(bare_resp(u.command_id, u.sequence, code))),
                    };
                }
                continue;
            }
            Some(Ok(Frame::Packet(p))) => *p,
        };
        let seq = packet.sequence;
        match packet.pdu {
            Pdu::Bind(b) => {
                let code = check_bind(&state, &b, bound.is_some());
                let _ = out.send(link::packet(seq, Pdu::BindResp(Resp::new(code))));
                if code == result::OK {
                    inc(&c.binds);
                    bound = Some(b.login_name);
                } else if bound.is_none() {
                    inc(&c.bind_failures);
                    let _ = out.send(Out::Close);
                    break;
                }
            }
            Pdu::Unbind => {
                let _ = out.send(link::packet(seq, Pdu::UnbindResp));
                let _ = out.send(Out::Close);
                break;
            }
            Pdu::Submit(s) => {
                inc(&c.submits);
                let Some(login) = bound.as_deref() else {
                    let resp = Resp::new(result::ILLEGAL_SEQUENCE);
                    let _ = out.send(link::packet(seq, Pdu::SubmitResp(resp)));
                    continue;
                };
                let faults = state.faults.read().map(|f| *f).unwrap_or_default();
                let roll = dice.next();
                let mut edge = faults.disconnect;
                if roll < edge {
                    if dice.next() < 0.5 {
                        accept(&state, login, seq, *s, &mut dice);
                    }
                    inc(&c.disconnects);
                    conn.cancel();
                    break;
                }
                edge += faults.stall;
                if roll < edge {
                    inc(&c.stalled);
                    continue;
                }
                edge += faults.throttle;
                if roll < edge {
                    inc(&c.throttled);
                    let resp = Resp::new(result::NODE_BUSY);
                    let _ = out.send(link::packet(seq, Pdu::SubmitResp(resp)));
                    continue;
                }
                edge += faults.error;
                if roll < edge {
                    inc(&c.rejected);
                    let resp = Resp::new(state.config.error_result);
                    let _ = out.send(link::packet(seq, Pdu::SubmitResp(resp)));
                    continue;
                }
                accept(&state, login, seq, *s, &mut dice);
                let _ = out.send(link::packet(seq, Pdu::SubmitResp(Resp::new(result::OK))));
            }
            pdu if pdu.command_id() & command::RESP_BIT != 0 => {}
            pdu => {
                if let Some(resp) = Pdu::response_to(pdu.command_id(), result::LOGIN_TYPE) {
                    let _ = out.send(link::packet(seq, resp));
                }
            }
        }
    }
    drop(out);
    let mut writer = writer;
    if timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        conn.cancel();
        let _ = writer.await;
    }
}

fn check_bind(state: &State, b: &Bind, already: bool) -> u8 {
    if already {
        return result::REPEATED_LOGIN;
    }
    if b.login_type != LOGIN_SP_TO_SMG {
        return result::LOGIN_TYPE;
    }
    match &state.config.credentials {
        Some((name, pw)) if *name != b.login_name || *pw != b.login_password => {
            result::ILLEGAL_LOGIN
        }
        _ => result::OK,
    }
}

/// Records an accepted Submit and schedules its Reports.
fn accept(state: &State, login: &str, seq: SequenceNumber, s: Submit, dice: &mut Dice) {
    let c = &state.counters;
    inc(&c.accepted);
    // ReportFlag 3: a 包月 billing record, billed and reported, never delivered.
    let record = s.report_flag == REPORT_FLAG_FEE_RECORD;
    for user in &s.user_numbers {
        let key = format!("{}\u{0}{user}", s.sp_number);
        let done = state.reassembler.lock().ok().and_then(|mut r| {
            text::reassemble(
                &mut r,
                &key,
                s.tp_udhi,
                s.message_coding,
                &s.message_content,
            )
        });
        if !record
            && let Some(full) = done
            && let Ok(mut m) = state.messages.lock()
        {
            push_capped(
                &mut m,
                state.config.max_records,
                SimMessage {
                    sp_number: s.sp_number.clone(),
                    user_number: user.clone(),
                    text: full,
                },
            );
        }
        let failed = state.config.failure_ratio > 0.0 && dice.next() < state.config.failure_ratio;
        let wants = match s.report_flag {
            1 | REPORT_FLAG_FEE_RECORD => true,
            0 => failed,
            _ => false,
        };
        if wants {
            let report = Report {
                submit_sequence: seq,
                report_type: 0,
                user_number: user.clone(),
                state: if failed {
                    STATE_FAILED
                } else {
                    STATE_DELIVERED
                },
                error_code: if failed {
                    state.config.report_error_code
                } else {
                    0
                },
                reserve: [0; 8],
            };
            let _ = state.ctl.send(Ctl::Enqueue(Item {
                kind: Kind::Report,
                pdu: Some(Pdu::Report(report)),
                raw: None,
                due: Instant::now() + state.config.report_delay,
            }));
        }
    }
    let received = ReceivedSubmit {
        sequence: seq,
        message_id: seq.to_string(),
        login_name: login.to_string(),
        submit: s,
    };
    if record && let Ok(mut r) = state.fee_records.lock() {
        push_capped(&mut r, state.config.max_records, received.clone());
    }
    if let Ok(mut r) = state.received.lock() {
        push_capped(&mut r, state.config.max_records, received);
    }
}

/// ReportFlag 3 (SGIP 1.2 Submit): "该条消息仅携带包月计费信息，不下发给用户，要返回状态报告".
const REPORT_FLAG_FEE_RECORD: u8 = 3;

/// The simulator's link to the SP: connected and bound on demand.
struct SpLink {
    out: OutTx,
    reader: FramedRead<tokio::net::tcp::OwnedReadHalf, SgipCodec>,
    cancel: CancellationToken,
    kill: CancellationToken,
    /// sequence → item id.
    outstanding: HashMap<SequenceNumber, u64>,
    last_activity: Instant,
}

async fn connect_reverse(state: &State, addr: SocketAddr) -> Option<SpLink> {
    let c = &state.counters;
    let wait = Duration::from_secs(5);
    let stream = timeout(wait, TcpStream::connect(addr)).await.ok()?.ok()?;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, SgipCodec);
    let (out, out_rx) = mpsc::unbounded_channel();
    let cancel = state.cancel.child_token();
    tokio::spawn(link::writer(write, out_rx, cancel.clone()));
    let seq = state.minter.next();
    let (name, pw) = &state.config.sp_credentials;
    let bind = Bind {
        login_type: LOGIN_SMG_TO_SP,
        login_name: name.clone(),
        login_password: pw.clone(),
        reserve: [0; 8],
    };
    let _ = out.send(link::packet(seq, Pdu::Bind(bind)));
    let answer = timeout(wait, reader.next()).await;
    match answer {
        Ok(Some(Ok(Frame::Packet(p)))) if p.sequence == seq => match p.pdu {
            Pdu::BindResp(r) if r.result == result::OK => {
                inc(&c.reverse_binds);
                Some(SpLink {
                    out,
                    reader,
                    cancel,
                    kill: state.kill_token(),
                    outstanding: HashMap::new(),
                    last_activity: Instant::now(),
                })
            }
            _ => {
                inc(&c.reverse_bind_failures);
                cancel.cancel();
                None
            }
        },
        _ => {
            inc(&c.reverse_bind_failures);
            cancel.cancel();
            None
        }
    }
}

/// Owns every queued Report/Deliver: opens the link to the SP when something is due,
/// sends within the window, resends what is refused or lost, closes the link when idle.
async fn outbound(state: Arc<State>, mut rx: mpsc::UnboundedReceiver<Ctl>) {
    let c = &state.counters;
    let redelivery = state.config.redelivery_delay;
    let window = state.config.window.max(1);
    let mut items: HashMap<u64, Item> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut next_id = 0u64;
    let mut link: Option<SpLink> = None;
    let mut retry_at = Instant::now();

    let count_resend = |kind: Kind| match kind {
        Kind::Report => inc(&c.reports_redelivered),
        Kind::Mo => inc(&c.mos_redelivered),
        Kind::Malformed => {}
    };

    loop {
        let now = Instant::now();
        let due_now = queue.peek().is_some_and(|Reverse((d, _))| *d <= now);
        // Open the link when something is due.
        if due_now
            && link.is_none()
            && now >= retry_at
            && let Some(addr) = state.config.sp_address
        {
            link = connect_reverse(&state, addr).await;
            if link.is_none() {
                retry_at = Instant::now() + redelivery;
            }
        }
        // Send what is due while the window has room.
        if let Some(l) = link.as_mut() {
            let now = Instant::now();
            while l.outstanding.len() < window {
                let Some(&Reverse((due, id))) = queue.peek() else {
                    break;
                };
                if due > now {
                    break;
                }
                queue.pop();
                let Some(item) = items.get(&id) else { continue };
                let seq = state.minter.next();
                let sent = match (&item.pdu, &item.raw) {
                    (Some(pdu), _) => l.out.send(link::packet(seq, pdu.clone())),
                    (None, Some(raw)) => {
                        let mut b = BytesMut::from(&raw[..]);
                        b[8..12].copy_from_slice(&seq.node_id.to_be_bytes());
                        b[12..16].copy_from_slice(&seq.timestamp.to_be_bytes());
                        b[16..20].copy_from_slice(&seq.sequence.to_be_bytes());
                        l.out.send(Out::Raw(b.freeze()))
                    }
                    (None, None) => continue,
                };
                if sent.is_err() {
                    queue.push(Reverse((now + redelivery, id)));
                    break;
                }
                l.outstanding.insert(seq, id);
                l.last_activity = now;
                inc(match item.kind {
                    Kind::Report => &c.reports_sent,
                    Kind::Mo => &c.mos_sent,
                    Kind::Malformed => &c.malformed_sent,
                });
            }
        }
        let next_due = queue.peek().map(|Reverse((d, _))| *d);
        let wake = match (&link, next_due) {
            (Some(l), _) if l.outstanding.is_empty() => {
                let idle_at = l.last_activity + state.config.idle_timeout;
                Some(next_due.map_or(idle_at, |d| d.min(idle_at)))
            }
            (Some(l), Some(d)) if l.outstanding.len() < window => Some(d),
            (Some(_), _) => None,
            (None, Some(d)) if state.config.sp_address.is_some() => Some(d.max(retry_at)),
            (None, _) => None,
        };
        enum Ev {
            Stop,
            Ctl(Option<Ctl>),
            Frame(Option<Result<Frame, crate::codec::CodecError>>),
            Killed,
            Wake,
        }
        let ev = {
            let tokens = link.as_ref().map(|l| (l.kill.clone(), l.cancel.clone()));
            let killed = async move {
                match tokens {
                    Some((a, b)) => {
                        tokio::select! { _ = a.cancelled() => {}, _ = b.cancelled() => {} }
                    }
                    None => std::future::pending().await,
                }
            };
            let frame = async {
                match link.as_mut() {
                    Some(l) => l.reader.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = state.cancel.cancelled() => Ev::Stop,
                m = rx.recv() => Ev::Ctl(m),
                f = frame => Ev::Frame(f),
                _ = killed => Ev::Killed,
                _ = async {
                    match wake {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => Ev::Wake,
            }
        };
        let mut drop_link = false;
        match ev {
            Ev::Stop | Ev::Ctl(None) => return,
            Ev::Ctl(Some(Ctl::Enqueue(item))) => {
                let id = next_id;
                next_id += 1;
                queue.push(Reverse((item.due, id)));
                items.insert(id, item);
            }
            Ev::Killed => {
                inc(&c.disconnects);
                drop_link = true;
            }
            Ev::Wake => {
                if let Some(l) = link.as_ref()
                    && l.outstanding.is_empty()
                    && l.last_activity.elapsed() >= state.config.idle_timeout
                {
                    let _ = l.out.send(link::packet(state.minter.next(), Pdu::Unbind));
                    let _ = l.out.send(Out::Close);
                    drop_link = true;
                }
            }
            Ev::Frame(None) | Ev::Frame(Some(Err(_))) => drop_link = true,
            Ev::Frame(Some(Ok(frame))) => {
                let (seq, answer) = match frame {
                    Frame::Packet(p) => {
                        let code = match &p.pdu {
                            Pdu::DeliverResp(r) | Pdu::ReportResp(r) => Some(r.result),
                            Pdu::Unbind => {
                                if let Some(l) = link.as_ref() {
                                    let _ = l.out.send(link::packet(p.sequence, Pdu::UnbindResp));
                                    let _ = l.out.send(Out::Close);
                                }
                                drop_link = true;
                                None
                            }
                            _ => None,
                        };
                        (p.sequence, code)
                    }
                    Frame::Undecodable(u) => (u.sequence, Some(result::SYSTEM_FAILURE)),
                };
                if let Some(code) = answer
                    && let Some(l) = link.as_mut()
                    && let Some(id) = l.outstanding.remove(&seq)
                {
                    l.last_activity = Instant::now();
                    let kind = items.get(&id).map(|i| i.kind);
                    if kind == Some(Kind::Malformed) {
                        if code != result::OK {
                            inc(&c.malformed_answered);
                        }
                        items.remove(&id);
                    } else if state
                        .lose_acks
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        // The answer is lost with its link: resend it.
                        l.outstanding.insert(seq, id);
                        inc(&c.disconnects);
                        drop_link = true;
                    } else if code == result::OK {
                        if let Some(item) = items.remove(&id) {
                            inc(match item.kind {
                                Kind::Report => &c.reports_acked,
                                _ => &c.mos_acked,
                            });
                        }
                    } else {
                        if let Some(k) = kind {
                            count_resend(k);
                        }
                        queue.push(Reverse((Instant::now() + redelivery, id)));
                    }
                }
            }
        }
        if drop_link && let Some(l) = link.take() {
            let at = Instant::now() + redelivery;
            for (_, id) in l.outstanding {
                if let Some(item) = items.get(&id) {
                    if item.kind == Kind::Malformed {
                        items.remove(&id);
                        continue;
                    }
                    count_resend(item.kind);
                }
                queue.push(Reverse((at, id)));
            }
            // Let a graceful Unbind flush before the writer stops.
            let cancel = l.cancel.clone();
            drop(l.out);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(500)).await;
                cancel.cancel();
            });
        }
    }
}
