//! An SMSC simulator: a real SMPP 3.4 server on a TCP listener, for tests and the demo.
//!
//! * Accepts any number of binds (transceiver, transmitter, receiver); checks
//!   `system_id`/`password` when [`SimConfig::credentials`] is set.
//! * Answers `submit_sm` with unique message ids — optionally hex in `submit_sm_resp` and
//!   decimal in the receipt ([`SimConfig::hex_ids`]), the quirk some SMSCs have; ids count
//!   up from [`SimConfig::first_id`], zero-padded to [`SimConfig::id_width`] if asked.
//! * Sends a receipt `deliver_sm` (classic text + `receipted_message_id` + `message_state`)
//!   [`SimConfig::dlr_delay`] after each accepted submit that asked for one, to any bound
//!   receiving session of the same `system_id` (so receipts survive reconnects). A
//!   non-OK `deliver_sm_resp`, or a session lost before answering, makes it redeliver after
//!   [`SimConfig::redelivery_delay`] — like a real SMSC, at-least-once.
//! * Injects faults at given rates ([`Faults`], changeable at run time): permanent failure
//!   (receipt `UNDELIV`), submit rejection (`ESME_RINVDSTADR`), throttling
//!   (`ESME_RTHROTTLED`), and disconnects (the connection is dropped on a submit without
//!   answering it; half of those submits were accepted first, so the client's "outcome
//!   unknown" really is unknown), a flapping SMSC ([`Faults::drop_after_bind`]: every bind
//!   accepted, the link dropped a moment later), and lost MO answers
//!   ([`SimHandle::lose_next_mo_acks`]: the link dies as the `deliver_sm_resp` arrives,
//!   so the MO is redelivered on the next bind).
//! * Misbehaves with receipts and stalls: duplicate receipts
//!   ([`Faults::duplicate_receipt`]), receipts for ids the peer was never given
//!   ([`Faults::unknown_receipt`]), and a stalled SMSC ([`SimHandle::stall`]: for a
//!   while it answers nothing, sends nothing, then resumes with what it had read).
//! * Sends MOs on demand ([`SimHandle::send_mo`]), long ones as UDH-concatenated parts,
//!   or single parts exactly as given ([`SimHandle::send_mo_part`]).
//! * Records every submit ([`SimHandle::received`]), reassembles concatenated ones
//!   ([`SimHandle::messages`]) and counts everything ([`SimHandle::stats`]).
//!
//! Window-agnostic: it answers every submit as it comes, however many are outstanding.
//! Responses are written in batches (one flush per burst), so it sustains well over
//! 20,000 submits/s on loopback.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, ErrorCodeNetworkType, EsmClass, MessageState, NetworkErrorCode, Npi, ServiceType,
    Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::codec::{Frame, SmppCodec, encode_command};
use crate::encode::{self, Concat, Reassembler};
use crate::link::{self, Out, OutTx};
use crate::receipt::ReceiptState;
use crate::status::{
    ESME_RINVBNDSTS, ESME_RINVCMDID, ESME_RINVDSTADR, ESME_RINVPASWD, ESME_RINVSYSID, ESME_ROK,
    ESME_RSYSERR, ESME_RTHROTTLED,
};
use tongdao_link::dice::Dice;

/// Fault injection rates, each a probability in `0.0..=1.0` per submit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// Accepted, but the receipt says `UNDELIV` (err 001).
    pub undeliverable: f64,
    /// Answered `ESME_RINVDSTADR` (permanent).
    pub reject: f64,
    /// Answered `ESME_RTHROTTLED`.
    pub throttle: f64,
    /// Connection dropped without an answer (half of these after accepting the submit).
    pub disconnect: f64,
    /// Accept every bind, then drop the link this long after it (a flapping SMSC).
    pub drop_after_bind: Option<Duration>,
    /// The receipt of an accepted submit is sent twice (the same `deliver_sm`, as an
    /// SMSC that missed nothing but repeats itself does).
    pub duplicate_receipt: f64,
    /// With an accepted submit, one more receipt for a message id this peer was never
    /// given: the last id given to another `system_id` (another peer's) when there is
    /// one, otherwise an id the simulator never hands out (`9` and eleven digits).
    pub unknown_receipt: f64,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// `(system_id, password)` required from binds; `None` accepts any.
    pub credentials: Option<(String, String)>,
    /// Delay between accepting a submit and sending its receipt.
    pub dlr_delay: Duration,
    /// Up to this much more delay per receipt, drawn uniformly (a realistic spread
    /// of handsets answering; `serve --demo`). Zero: every receipt after `dlr_delay`.
    pub dlr_jitter: Duration,
    /// Message ids in hex in `submit_sm_resp` and in decimal in receipts.
    pub hex_ids: bool,
    /// The first message id handed out (ids count up from it).
    pub first_id: u64,
    /// Decimal ids are zero-padded to this many digits (`0000000136`), as some SMSCs
    /// write them; 0 for no padding.
    pub id_width: usize,
    /// Receipts carry a vendor TLV (0x1401) and a `receipted_message_id` without its NUL.
    pub quirky_receipts: bool,
    /// `deliver_sm`s outstanding (unanswered) per session.
    pub dlr_window: usize,
    /// Pause before redelivering a `deliver_sm` that was refused or lost.
    pub redelivery_delay: Duration,
    /// Fault rates at start.
    pub faults: Faults,
    /// Seed of the fault dice (runs are reproducible per connection order).
    pub seed: u64,
    /// Most submits (and complete messages) kept for [`SimHandle::received`] /
    /// [`SimHandle::messages`]; older ones are forgotten, counters keep counting. Bounds
    /// memory when the simulator runs for long (`serve --demo`).
    pub max_records: usize,
}

impl Default for SimConfig {
    /// `127.0.0.1:0`, any credentials, 100 ms receipts (no jitter), decimal ids from 1,000,000
    /// unpadded, no quirks, window 100,
    /// 500 ms redelivery, no faults, the last 100,000 submits kept.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials: None,
            dlr_delay: Duration::from_millis(100),
            dlr_jitter: Duration::ZERO,
            hex_ids: false,
            first_id: 1_000_000,
            id_width: 0,
            quirky_receipts: false,
            dlr_window: 100,
            redelivery_delay: Duration::from_millis(500),
            faults: Faults::default(),
            seed: 0x5EED,
            max_records: 100_000,
        }
    }
}

/// One `submit_sm` the simulator accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSubmit {
    /// Id returned in `submit_sm_resp` (hex when `hex_ids`).
    pub message_id: String,
    /// Id its receipt carries (decimal; differs from `message_id` when `hex_ids`).
    pub receipt_id: String,
    /// `system_id` of the bind it came on.
    pub system_id: String,
    /// `source_addr`.
    pub source_addr: String,
    /// `destination_addr`.
    pub destination_addr: String,
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class`.
    pub esm_class: u8,
    /// `short_message` octets.
    pub short_message: Vec<u8>,
    /// `registered_delivery`.
    pub registered_delivery: u8,
}

/// A complete message (all parts received), decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMessage {
    /// `source_addr`.
    pub source_addr: String,
    /// `destination_addr`.
    pub destination_addr: String,
    /// The full text.
    pub text: String,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Successful binds.
    pub binds: u64,
    /// Binds refused (bad credentials).
    pub bind_failures: u64,
    /// Sessions currently bound.
    pub bound_sessions: u64,
    /// `submit_sm` PDUs received (all outcomes).
    pub submit_pdus: u64,
    /// Submits accepted (each with a new message id).
    pub accepted: u64,
    /// Submits answered `ESME_RTHROTTLED`.
    pub throttled: u64,
    /// Submits answered `ESME_RINVDSTADR`.
    pub rejected: u64,
    /// Connections dropped by fault injection or [`SimHandle::disconnect_all`].
    pub disconnects: u64,
    /// Receipt `deliver_sm`s written (redeliveries included).
    pub receipts_sent: u64,
    /// Receipts answered `ESME_ROK`.
    pub receipts_acked: u64,
    /// Receipts sent again after a refusal or a lost session.
    pub receipts_redelivered: u64,
    /// Receipts queued a second time by [`Faults::duplicate_receipt`].
    pub receipts_duplicated: u64,
    /// Receipts queued for ids the peer was never given ([`Faults::unknown_receipt`]).
    pub receipts_unknown: u64,
    /// Stalls begun ([`SimHandle::stall`]).
    pub stalls: u64,
    /// MO `deliver_sm`s written (per part, redeliveries included).
    pub mos_sent: u64,
    /// MO parts answered `ESME_ROK`.
    pub mos_acked: u64,
    /// MO parts sent again after a refusal, a lost session or a lost answer.
    pub mos_redelivered: u64,
    /// Most receipts already due and unsent when an MO part was queued: the
    /// receipts it had to wait behind at this SMSC.
    pub mo_receipts_ahead_max: u64,
    /// Longest wait of an MO part from being queued to its first `deliver_sm`, ms.
    pub mo_wait_max_ms: u64,
    /// `enquire_link`s the simulator answered.
    pub enquire_links: u64,
    /// `generic_nack`s the simulator sent.
    pub generic_nacks_sent: u64,
    /// `generic_nack`s the simulator received.
    pub generic_nacks_received: u64,
}

#[derive(Debug, Default)]
struct Counters {
    binds: AtomicU64,
    bind_failures: AtomicU64,
    bound_sessions: AtomicU64,
    submit_pdus: AtomicU64,
    accepted: AtomicU64,
    throttled: AtomicU64,
    rejected: AtomicU64,
    disconnects: AtomicU64,
    receipts_sent: AtomicU64,
    receipts_acked: AtomicU64,
    receipts_redelivered: AtomicU64,
    receipts_duplicated: AtomicU64,
    receipts_unknown: AtomicU64,
    stalls: AtomicU64,
    mos_sent: AtomicU64,
    mos_acked: AtomicU64,
    mos_redelivered: AtomicU64,
    mo_receipts_ahead_max: AtomicU64,
    mo_wait_max_ms: AtomicU64,
    enquire_links: AtomicU64,
    generic_nacks_sent: AtomicU64,
    generic_nacks_received: AtomicU64,
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
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| SimError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| SimError::Listen {
            addr: config.listen,
            source,
        })?;
        let cancel = CancellationToken::new();
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let first_id = config.first_id;
        let state = Arc::new(State {
            faults: RwLock::new(config.faults),
            config,
            counters: Counters::default(),
            next_id: AtomicU64::new(first_id),
            mo_ref: AtomicU32::new(0),
            received: Mutex::new(VecDeque::new()),
            reassembler: Mutex::new(Reassembler::new()),
            messages: Mutex::new(VecDeque::new()),
            ctl,
            cancel: cancel.clone(),
            kill: Mutex::new(CancellationToken::new()),
            lose_mo_acks: AtomicU32::new(0),
            bind_log: Mutex::new(Vec::new()),
            stalled_until: Mutex::new(None),
            last_id_of: Mutex::new(HashMap::new()),
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
            binds: g(&c.binds),
            bind_failures: g(&c.bind_failures),
            bound_sessions: g(&c.bound_sessions),
            submit_pdus: g(&c.submit_pdus),
            accepted: g(&c.accepted),
            throttled: g(&c.throttled),
            rejected: g(&c.rejected),
            disconnects: g(&c.disconnects),
            receipts_sent: g(&c.receipts_sent),
            receipts_acked: g(&c.receipts_acked),
            receipts_redelivered: g(&c.receipts_redelivered),
            receipts_duplicated: g(&c.receipts_duplicated),
            receipts_unknown: g(&c.receipts_unknown),
            stalls: g(&c.stalls),
            mos_sent: g(&c.mos_sent),
            mos_acked: g(&c.mos_acked),
            mos_redelivered: g(&c.mos_redelivered),
            mo_receipts_ahead_max: g(&c.mo_receipts_ahead_max),
            mo_wait_max_ms: g(&c.mo_wait_max_ms),
            enquire_links: g(&c.enquire_links),
            generic_nacks_sent: g(&c.generic_nacks_sent),
            generic_nacks_received: g(&c.generic_nacks_received),
        }
    }

    /// Every accepted submit (the last `max_records`), in arrival order.
    pub fn received(&self) -> Vec<ReceivedSubmit> {
        self.state
            .received
            .lock()
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Accepted submits per destination address (over the kept records).
    pub fn per_destination(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        if let Ok(r) = self.state.received.lock() {
            for s in r.iter() {
                *out.entry(s.destination_addr.clone()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Complete messages (the last `max_records`): single submits and reassembled
    /// concatenated ones.
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

    /// Queues an MO from handset `from` to service number `to` for any bound receiving
    /// session (sent as soon as one is bound). Long texts go as UDH-concatenated parts
    /// (UCS-2 unless the text fits GSM 7-bit). Returns the number of parts.
    pub fn send_mo(&self, from: &str, to: &str, text: &str) -> Result<usize, SimError> {
        let reference = self.state.mo_ref.fetch_add(1, Ordering::Relaxed) as u8;
        let segments = encode::encode(text, Concat::Udh8(reference))
            .map_err(|e| SimError::InvalidMo(e.to_string()))?;
        let mut pdus = Vec::with_capacity(segments.len());
        for seg in &segments {
            pdus.push(mo_pdu(
                from,
                to,
                seg.esm_class,
                seg.data_coding,
                seg.short_message.clone(),
            )?);
        }
        for bytes in pdus {
            self.enqueue_mo(bytes)?;
        }
        Ok(segments.len())
    }

    /// Queues one part of a long MO exactly as given: an 8-bit-reference UDH
    /// (`reference`, `total`, `seq`) and `text` in UCS-2. Sending the same arguments
    /// twice sends the same bytes twice, as an SMSC does when it redelivers a part.
    pub fn send_mo_part(
        &self,
        from: &str,
        to: &str,
        reference: u8,
        total: u8,
        seq: u8,
        text: &str,
    ) -> Result<(), SimError> {
        let mut short_message = vec![0x05, 0x00, 0x03, reference, total, seq];
        short_message.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        if short_message.len() > 140 {
            return Err(SimError::InvalidMo(format!(
                "part of {} octets; at most 140 fit",
                short_message.len()
            )));
        }
        self.enqueue_mo(mo_pdu(from, to, 0x40, 0x08, short_message)?)
    }

    fn enqueue_mo(&self, bytes: BytesMut) -> Result<(), SimError> {
        self.state
            .ctl
            .send(Ctl::Enqueue(Pending {
                system_id: None,
                kind: Kind::Mo,
                bytes: bytes.freeze(),
                due: Instant::now(),
                sent_before: false,
            }))
            .map_err(|_| SimError::Stopped)
    }

    /// The next `n` answers to MO `deliver_sm`s are lost together with their link: the
    /// simulator drops the connection as the answer arrives and redelivers the MO on the
    /// next bind, as an SMSC does when a link dies between its `deliver_sm` and our
    /// `deliver_sm_resp` (the ESME stored it; the SMSC does not know).
    pub fn lose_next_mo_acks(&self, n: u32) {
        self.state.lose_mo_acks.store(n, Ordering::SeqCst);
    }

    /// The SMSC stalls for `duration` from now: it reads nothing more from any
    /// connection (so answers nothing, not even `enquire_link`) and sends no
    /// `deliver_sm`; then it resumes with what is waiting, as a real SMSC that froze
    /// does. Connections the peer closed meanwhile still have their unread submits
    /// processed (accepted, unanswerable), so the peer's "outcome unknown" is real.
    pub fn stall(&self, duration: Duration) {
        if let Ok(mut until) = self.state.stalled_until.lock() {
            *until = Some(Instant::now() + duration);
        }
        inc(&self.state.counters.stalls);
    }

    /// When each successful bind happened, in order.
    pub fn bind_times(&self) -> Vec<Instant> {
        self.state
            .bind_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
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
    next_id: AtomicU64,
    mo_ref: AtomicU32,
    received: Mutex<VecDeque<ReceivedSubmit>>,
    reassembler: Mutex<Reassembler>,
    messages: Mutex<VecDeque<SimMessage>>,
    ctl: mpsc::UnboundedSender<Ctl>,
    cancel: CancellationToken,
    /// Replaced by `disconnect_all`; every connection watches the one current at its start.
    kill: Mutex<CancellationToken>,
    /// MO answers still to be lost (with their link) by `lose_next_mo_acks`.
    lose_mo_acks: AtomicU32,
    /// When each successful bind happened.
    bind_log: Mutex<Vec<Instant>>,
    /// Set by [`SimHandle::stall`]: nothing is read, answered or sent before then.
    stalled_until: Mutex<Option<Instant>>,
    /// The last receipt id given to each `system_id` (for [`Faults::unknown_receipt`]).
    last_id_of: Mutex<HashMap<String, String>>,
}

impl State {
    /// The end of the current stall, if one is on.
    fn stalled_until(&self) -> Option<Instant> {
        let until = self.stalled_until.lock().ok().and_then(|u| *u)?;
        (until > Instant::now()).then_some(until)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Receipt,
    Mo,
}

/// A `deliver_sm` waiting to be (re)sent: encoded with sequence 0, patched when sent.
#[derive(Debug)]
struct Pending {
    /// Only sessions of this system_id may receive it; `None` = any.
    system_id: Option<String>,
    kind: Kind,
    bytes: Bytes,
    due: Instant,
    /// Written to a session at least once (a redelivery follows).
    sent_before: bool,
}

#[derive(Debug)]
enum Ctl {
    Up {
        session: u64,
        system_id: String,
        out: OutTx,
        seq: Arc<AtomicU32>,
        /// Ends the connection (a lost answer takes its link with it).
        kill: CancellationToken,
    },
    Down {
        session: u64,
    },
    Enqueue(Pending),
    Resp {
        session: u64,
        seq: u32,
        status: u32,
    },
}

struct Session {
    system_id: String,
    out: OutTx,
    seq: Arc<AtomicU32>,
    kill: CancellationToken,
    outstanding: HashMap<u32, u64>,
}

/// Owns every queued `deliver_sm`: sends them when due to a session with window room,
/// tracks their responses, redelivers refused or orphaned ones.
async fn dispatcher(state: Arc<State>, mut rx: mpsc::UnboundedReceiver<Ctl>) {
    let window = state.config.dlr_window.max(1);
    let redelivery = state.config.redelivery_delay;
    let mut items: HashMap<u64, Pending> = HashMap::new();
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut sessions: HashMap<u64, Session> = HashMap::new();
    let mut order: Vec<u64> = Vec::new(); // session ids, for round-robin
    let mut rr = 0usize;
    let mut next_item = 0u64;
    let c = &state.counters;

    loop {
        // Send everything due while some session has room (nothing during a stall).
        let now = Instant::now();
        let stalled = state.stalled_until();
        while let Some(&Reverse((due, id))) = queue.peek() {
            if stalled.is_some() {
                break;
            }
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
                        && item
                            .system_id
                            .as_ref()
                            .is_none_or(|want| *want == s.system_id)
                })
            });
            let Some(sid) = target else { break };
            rr = rr.wrapping_add(1);
            queue.pop();
            let Some(session) = sessions.get_mut(&sid) else {
                continue;
            };
            let seq = next_seq(&session.seq);
            let mut pdu = BytesMut::from(&item.bytes[..]);
            pdu[12..16].copy_from_slice(&seq.to_be_bytes());
            if session.out.send(Out::Raw(pdu.freeze())).is_ok() {
                session.outstanding.insert(seq, id);
                if item.kind == Kind::Mo && !item.sent_before {
                    let waited = now.saturating_duration_since(item.due).as_millis();
                    c.mo_wait_max_ms
                        .fetch_max(u64::try_from(waited).unwrap_or(u64::MAX), Ordering::Relaxed);
                }
                inc(match item.kind {
                    Kind::Receipt => &c.receipts_sent,
                    Kind::Mo => &c.mos_sent,
                });
                if let Some(item) = items.get_mut(&id) {
                    item.sent_before = true;
                }
            } else {
                queue.push(Reverse((now + redelivery, id)));
            }
        }
        let wake = match stalled {
            Some(until) => Some(until),
            None => queue
                .peek()
                .map(|Reverse((due, _))| *due)
                .filter(|due| *due > now),
        };

        let first = tokio::select! {
            _ = state.cancel.cancelled() => return,
            msg = rx.recv() => msg,
            _ = async {
                match wake {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => continue,
        };
        let Some(mut msg) = first else { return };
        // Handle a burst of control messages before the next send pass.
        let mut handled = 0;
        loop {
            match msg {
                Ctl::Up {
                    session,
                    system_id,
                    out,
                    seq,
                    kill,
                } => {
                    sessions.insert(
                        session,
                        Session {
                            system_id,
                            out,
                            seq,
                            kill,
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
                    if item.kind == Kind::Mo {
                        let behind = queue
                            .iter()
                            .filter(|Reverse((due, id))| {
                                *due <= item.due
                                    && items.get(id).is_some_and(|i| i.kind == Kind::Receipt)
                            })
                            .count();
                        c.mo_receipts_ahead_max.fetch_max(
                            u64::try_from(behind).unwrap_or(u64::MAX),
                            Ordering::Relaxed,
                        );
                    }
                    let id = next_item;
                    next_item += 1;
                    queue.push(Reverse((item.due, id)));
                    items.insert(id, item);
                }
                Ctl::Resp {
                    session,
                    seq,
                    status,
                } => {
                    let is_mo = sessions
                        .get(&session)
                        .and_then(|s| s.outstanding.get(&seq))
                        .and_then(|id| items.get(id))
                        .is_some_and(|item| item.kind == Kind::Mo);
                    if is_mo
                        && state
                            .lose_mo_acks
                            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                            .is_ok()
                    {
                        // The answer is lost with its link: the item stays outstanding,
                        // and the session's end queues it for redelivery.
                        if let Some(s) = sessions.get(&session) {
                            inc(&c.disconnects);
                            s.kill.cancel();
                        }
                    } else if let Some(id) = sessions
                        .get_mut(&session)
                        .and_then(|s| s.outstanding.remove(&seq))
                    {
                        if status == ESME_ROK {
                            if let Some(item) = items.remove(&id) {
                                inc(match item.kind {
                                    Kind::Receipt => &c.receipts_acked,
                                    Kind::Mo => &c.mos_acked,
                                });
                            }
                        } else {
                            count_redelivery(c, items.get(&id));
                            queue.push(Reverse((Instant::now() + redelivery, id)));
                        }
                    }
                }
            }
            handled += 1;
            // Check the bound before taking the next message, so none is dropped.
            if handled >= 1024 {
                break;
            }
            match rx.try_recv() {
                Ok(next) => msg = next,
                Err(_) => break,
            }
        }
    }
}

fn count_redelivery(c: &Counters, item: Option<&Pending>) {
    match item.map(|i| i.kind) {
        Some(Kind::Receipt) => inc(&c.receipts_redelivered),
        Some(Kind::Mo) => inc(&c.mos_redelivered),
        None => {}
    }
}

fn next_seq(seq: &AtomicU32) -> u32 {
    let s = seq.fetch_add(1, Ordering::Relaxed) & 0x7FFF_FFFF;
    if s == 0 { 1 } else { s }
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
                debug!(%peer, session, "smsc-sim connection");
                tokio::spawn(serve(state.clone(), stream, session));
            }
            Err(e) => {
                debug!(error = %e, "smsc-sim accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(state: Arc<State>, stream: TcpStream, session: u64) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, SmppCodec::new());
    let (out, out_rx) = mpsc::unbounded_channel();
    let conn_cancel = state.cancel.child_token();
    let writer = tokio::spawn(link::writer(write, out_rx, conn_cancel.clone()));
    let kill = state.kill.lock().map(|k| k.clone()).unwrap_or_default();
    let mut dice = Dice::new(state.config.seed ^ session.wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut bound: Option<String> = None;
    // Set by a successful bind: (receives deliveries?).
    let mut just_bound: Option<bool> = None;
    let seq = Arc::new(AtomicU32::new(1));
    let c = &state.counters;

    // Set by a bind when the faults say to drop the link some time after it.
    let mut drop_at: Option<Instant> = None;
    loop {
        if let Some(until) = state.stalled_until() {
            // Frozen: read nothing (the peer's PDUs wait in the socket).
            tokio::select! {
                _ = conn_cancel.cancelled() => break,
                _ = state.cancel.cancelled() => break,
                () = sleep_until(until) => {}
            }
            continue;
        }
        let frame = tokio::select! {
            _ = conn_cancel.cancelled() => break,
            _ = kill.cancelled() => {
                inc(&c.disconnects);
                conn_cancel.cancel();
                break;
            }
            () = async {
                match drop_at {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                inc(&c.disconnects);
                conn_cancel.cancel();
                break;
            }
            f = reader.next() => f,
        };
        let cmd = match frame {
            None | Some(Err(_)) => break,
            Some(Ok(Frame::Undecodable(u))) => {
                if u.is_response() {
                    let _ = state.ctl.send(Ctl::Resp {
                        session,
                        seq: u.sequence_number,
                        status: u.command_status,
                    });
                } else {
                    inc(&c.generic_nacks_sent);
                    let _ = out.send(link::generic_nack(ESME_RSYSERR, u.sequence_number));
                }
                continue;
            }
            Some(Ok(Frame::Command(cmd))) => cmd,
        };
        let s = cmd.sequence_number();
        match cmd.pdu() {
            Some(Pdu::BindTransceiver(b)) => {
                let (ok, status) = check_bind(&state, b.system_id.as_str(), b.password.as_str());
                let _ = out.send(link::cmd(
                    status,
                    s,
                    Pdu::BindTransceiverResp(BindTransceiverResp::new(sim_id(), None)),
                ));
                if ok {
                    bound = Some(b.system_id.as_str().to_string());
                    just_bound = Some(true);
                }
            }
            Some(Pdu::BindTransmitter(b)) => {
                let (ok, status) = check_bind(&state, b.system_id.as_str(), b.password.as_str());
                let _ = out.send(link::cmd(
                    status,
                    s,
                    Pdu::BindTransmitterResp(BindTransmitterResp::new(sim_id(), None)),
                ));
                if ok {
                    bound = Some(b.system_id.as_str().to_string());
                    just_bound = Some(false);
                }
            }
            Some(Pdu::BindReceiver(b)) => {
                let (ok, status) = check_bind(&state, b.system_id.as_str(), b.password.as_str());
                let _ = out.send(link::cmd(
                    status,
                    s,
                    Pdu::BindReceiverResp(BindReceiverResp::new(sim_id(), None)),
                ));
                if ok {
                    bound = Some(b.system_id.as_str().to_string());
                    just_bound = Some(true);
                }
            }
            Some(Pdu::SubmitSm(sm)) => {
                inc(&c.submit_pdus);
                let Some(system_id) = bound.as_deref() else {
                    let _ = out.send(link::submit_resp(ESME_RINVBNDSTS, s, ""));
                    continue;
                };
                let faults = state.faults.read().map(|f| *f).unwrap_or_default();
                let roll = dice.next();
                if roll < faults.disconnect {
                    if dice.next() < 0.5 {
                        accept(&state, system_id, sm, &mut dice, faults);
                    }
                    inc(&c.disconnects);
                    conn_cancel.cancel();
                    break;
                } else if roll < faults.disconnect + faults.throttle {
                    inc(&c.throttled);
                    let _ = out.send(link::submit_resp(ESME_RTHROTTLED, s, ""));
                } else if roll < faults.disconnect + faults.throttle + faults.reject {
                    inc(&c.rejected);
                    let _ = out.send(link::submit_resp(ESME_RINVDSTADR, s, ""));
                } else {
                    let id = accept(&state, system_id, sm, &mut dice, faults);
                    let _ = out.send(link::submit_resp(ESME_ROK, s, &id));
                }
            }
            Some(Pdu::DeliverSmResp(_)) | Some(Pdu::DataSmResp(_)) => {
                let _ = state.ctl.send(Ctl::Resp {
                    session,
                    seq: s,
                    status: u32::from(cmd.status()),
                });
            }
            Some(Pdu::EnquireLink) => {
                inc(&c.enquire_links);
                let _ = out.send(link::cmd(ESME_ROK, s, Pdu::EnquireLinkResp));
            }
            Some(Pdu::Unbind) => {
                let _ = out.send(link::cmd(ESME_ROK, s, Pdu::UnbindResp));
                let _ = out.send(Out::Close);
                break;
            }
            Some(Pdu::GenericNack) => {
                inc(&c.generic_nacks_received);
                // A nacked deliver_sm is a refused one: redeliver.
                let _ = state.ctl.send(Ctl::Resp {
                    session,
                    seq: s,
                    status: u32::from(cmd.status()).max(1),
                });
            }
            _ if cmd.id() == CommandId::DeliverSmResp || cmd.id() == CommandId::DataSmResp => {
                // Bodyless response (allowed by some peers).
                let _ = state.ctl.send(Ctl::Resp {
                    session,
                    seq: s,
                    status: u32::from(cmd.status()),
                });
            }
            _ if u32::from(cmd.id()) & 0x8000_0000 != 0 => {}
            _ => {
                inc(&c.generic_nacks_sent);
                let _ = out.send(link::generic_nack(ESME_RINVCMDID, s));
            }
        }
        if let Some(receiving) = just_bound.take() {
            inc(&c.binds);
            c.bound_sessions.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut log) = state.bind_log.lock() {
                log.push(Instant::now());
            }
            let faults = state.faults.read().map(|f| *f).unwrap_or_default();
            drop_at = faults.drop_after_bind.map(|d| Instant::now() + d);
            if !receiving {
                continue;
            }
            let _ = state.ctl.send(Ctl::Up {
                session,
                system_id: bound.clone().unwrap_or_default(),
                out: out.clone(),
                seq: seq.clone(),
                kill: conn_cancel.clone(),
            });
        }
    }
    drop(out);
    if bound.is_some() {
        c.bound_sessions.fetch_sub(1, Ordering::Relaxed);
        let _ = state.ctl.send(Ctl::Down { session });
    }
    // Let a graceful close flush; a cancelled writer stops at once.
    let _ = writer.await;
}

fn sim_id() -> COctetString<1, 16> {
    COctetString::from_string("TDSIM".to_string()).unwrap_or_default()
}

fn c_str<const MIN: usize, const MAX: usize>(s: &str) -> Result<COctetString<MIN, MAX>, String> {
    link::c_string("address", s)
}

/// Encodes an MO `deliver_sm` (sequence 0, patched when sent).
fn mo_pdu(
    from: &str,
    to: &str,
    esm_class: u8,
    data_coding: u8,
    short_message: Vec<u8>,
) -> Result<BytesMut, SimError> {
    let d = DeliverSm::builder()
        .service_type(ServiceType::null())
        .source_addr_ton(Ton::from(1))
        .source_addr_npi(Npi::from(1))
        .source_addr(c_str(from).map_err(SimError::InvalidMo)?)
        .dest_addr_ton(Ton::from(0))
        .dest_addr_npi(Npi::from(1))
        .destination_addr(c_str(to).map_err(SimError::InvalidMo)?)
        .esm_class(EsmClass::from(esm_class))
        .data_coding(DataCoding::from(data_coding))
        .short_message(
            OctetString::from_vec(short_message).map_err(|e| SimError::InvalidMo(e.to_string()))?,
        )
        .build();
    Ok(encode_command(&Command::new(
        CommandStatus::EsmeRok,
        0,
        Pdu::DeliverSm(d),
    )))
}

/// Returns (bound?, status for the bind response).
fn check_bind(state: &State, system_id: &str, password: &str) -> (bool, u32) {
    let c = &state.counters;
    match &state.config.credentials {
        Some((id, _)) if id != system_id => {
            inc(&c.bind_failures);
            (false, ESME_RINVSYSID)
        }
        Some((_, pw)) if pw != password => {
            inc(&c.bind_failures);
            (false, ESME_RINVPASWD)
        }
        _ => (true, ESME_ROK),
    }
}

/// Records an accepted submit, schedules its receipt; returns the id for the response.
fn accept(
    state: &State,
    system_id: &str,
    sm: &rusmpp::pdus::SubmitSm,
    dice: &mut Dice,
    faults: Faults,
) -> String {
    let c = &state.counters;
    inc(&c.accepted);
    let n = state.next_id.fetch_add(1, Ordering::Relaxed);
    let width = state.config.id_width;
    let receipt_id = format!("{n:0width$}");
    let resp_id = if state.config.hex_ids {
        format!("{n:X}")
    } else {
        receipt_id.clone()
    };
    let source = sm.source_addr.as_str().to_string();
    let dest = sm.destination_addr.as_str().to_string();
    let data_coding = u8::from(sm.data_coding);
    let esm_class = u8::from(sm.esm_class);
    let short_message = sm.short_message().as_ref().to_vec();
    let registered = u8::from(sm.registered_delivery);

    let text = {
        let sar = sar_of(sm);
        let key = format!("{source}\u{0}{dest}");
        let done = state
            .reassembler
            .lock()
            .ok()
            .and_then(|mut r| r.push(&key, data_coding, esm_class, &short_message, sar));
        if let Some(full) = &done
            && let Ok(mut m) = state.messages.lock()
        {
            push_capped(
                &mut m,
                state.config.max_records,
                SimMessage {
                    source_addr: source.clone(),
                    destination_addr: dest.clone(),
                    text: full.clone(),
                },
            );
        }
        encode::decode(data_coding, esm_class, &short_message).1
    };

    let undeliverable = faults.undeliverable > 0.0 && dice.next() < faults.undeliverable;
    // registered_delivery bits 1..0: 1 = receipt always, 2 = on failure only.
    let wants = match registered & 0x03 {
        1 => true,
        2 => undeliverable,
        _ => false,
    };
    if wants {
        let state_ = if undeliverable {
            ReceiptState::Undeliverable
        } else {
            ReceiptState::Delivered
        };
        let bytes = receipt_pdu(&state.config, &receipt_id, &dest, &source, state_, &text);
        // The dice are rolled for the spread only when there is one, so runs
        // without jitter keep their fault sequence.
        let jitter = if state.config.dlr_jitter.is_zero() {
            Duration::ZERO
        } else {
            state.config.dlr_jitter.mul_f64(dice.next())
        };
        let due = Instant::now() + state.config.dlr_delay + jitter;
        if faults.duplicate_receipt > 0.0 && dice.next() < faults.duplicate_receipt {
            inc(&c.receipts_duplicated);
            let _ = state.ctl.send(Ctl::Enqueue(Pending {
                system_id: Some(system_id.to_string()),
                kind: Kind::Receipt,
                bytes: bytes.clone(),
                due,
                sent_before: false,
            }));
        }
        let _ = state.ctl.send(Ctl::Enqueue(Pending {
            system_id: Some(system_id.to_string()),
            kind: Kind::Receipt,
            bytes,
            due,
            sent_before: false,
        }));
        if faults.unknown_receipt > 0.0 && dice.next() < faults.unknown_receipt {
            inc(&c.receipts_unknown);
            let foreign = state.last_id_of.lock().ok().and_then(|ids| {
                ids.iter()
                    .find(|(peer, _)| peer.as_str() != system_id)
                    .map(|(_, id)| id.clone())
            });
            let id = foreign.unwrap_or_else(|| format!("9{:011}", n % 100_000_000_000));
            let state_ = if dice.next() < 0.5 {
                ReceiptState::Delivered
            } else {
                ReceiptState::Undeliverable
            };
            let bytes = receipt_pdu(&state.config, &id, &dest, &source, state_, &text);
            let _ = state.ctl.send(Ctl::Enqueue(Pending {
                system_id: Some(system_id.to_string()),
                kind: Kind::Receipt,
                bytes,
                due,
                sent_before: false,
            }));
        }
    }
    if let Ok(mut ids) = state.last_id_of.lock() {
        ids.insert(system_id.to_string(), receipt_id.clone());
    }
    if let Ok(mut r) = state.received.lock() {
        push_capped(
            &mut r,
            state.config.max_records,
            ReceivedSubmit {
                message_id: resp_id.clone(),
                receipt_id,
                system_id: system_id.to_string(),
                source_addr: source,
                destination_addr: dest,
                data_coding,
                esm_class,
                short_message,
                registered_delivery: registered,
            },
        );
    }
    resp_id
}

fn push_capped<T>(q: &mut VecDeque<T>, cap: usize, item: T) {
    if q.len() >= cap.max(1) {
        q.pop_front();
    }
    q.push_back(item);
}

fn sar_of(sm: &rusmpp::pdus::SubmitSm) -> Option<encode::ConcatInfo> {
    use rusmpp::tlvs::TlvValue;
    let (mut r, mut t, mut s) = (None, None, None);
    for tlv in sm.tlvs() {
        match tlv.value() {
            Some(TlvValue::SarMsgRefNum(v)) => r = Some(*v),
            Some(TlvValue::SarTotalSegments(v)) => t = Some(*v),
            Some(TlvValue::SarSegmentSeqnum(v)) => s = Some(*v),
            _ => {}
        }
    }
    Some(encode::ConcatInfo {
        reference: r?,
        total: t?,
        seq: s?,
    })
}

/// Encodes a receipt `deliver_sm` (sequence 0, patched when sent).
fn receipt_pdu(
    config: &SimConfig,
    id: &str,
    from: &str,
    to: &str,
    state: ReceiptState,
    text: &str,
) -> Bytes {
    let date = yymmddhhmm(SystemTime::now());
    let (dlvrd, err) = if state.is_success() {
        ("001", "000")
    } else {
        ("000", "001")
    };
    let excerpt: String = text
        .chars()
        .take(20)
        .map(|ch| {
            if ch == ' ' || ch.is_ascii_graphic() {
                ch
            } else {
                '?'
            }
        })
        .collect();
    let body = format!(
        "id:{id} sub:001 dlvrd:{dlvrd} submit date:{date} done date:{date} stat:{} err:{err} text:{excerpt}",
        state.stat()
    );
    let mut tlvs = vec![MessageDeliveryRequestTlvValue::MessageState(
        MessageState::from(state.message_state()),
    )];
    if !state.is_success() {
        tlvs.push(MessageDeliveryRequestTlvValue::NetworkErrorCode(
            NetworkErrorCode::new(ErrorCodeNetworkType::Gsm, 1),
        ));
    }
    if !config.quirky_receipts
        && let Ok(rid) = COctetString::from_string(id.to_string())
    {
        tlvs.push(MessageDeliveryRequestTlvValue::ReceiptedMessageId(rid));
    }
    let d = DeliverSm::builder()
        .service_type(ServiceType::null())
        .source_addr_ton(Ton::from(1))
        .source_addr_npi(Npi::from(1))
        .source_addr(c_str(from).unwrap_or_default())
        .dest_addr_ton(Ton::from(0))
        .dest_addr_npi(Npi::from(1))
        .destination_addr(c_str(to).unwrap_or_default())
        .esm_class(EsmClass::from(0x04))
        .data_coding(DataCoding::from(0))
        .short_message(OctetString::from_vec(body.into_bytes()).unwrap_or_default())
        .tlvs(tlvs)
        .build();
    let mut bytes = encode_command(&Command::new(CommandStatus::EsmeRok, 0, Pdu::DeliverSm(d)));
    if config.quirky_receipts {
        // Vendor TLV, then receipted_message_id without its NUL, as some SMSCs send.
        bytes.put_u16(0x1401);
        bytes.put_u16(7);
        bytes.extend_from_slice(b"TONGDAO");
        bytes.put_u16(0x001E);
        bytes.put_u16(id.len() as u16);
        bytes.extend_from_slice(id.as_bytes());
        let len = bytes.len() as u32;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
    }
    bytes.freeze()
}

/// `YYMMDDhhmm` in UTC.
fn yymmddhhmm(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        y.rem_euclid(100),
        m,
        d,
        rem / 3600,
        (rem % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_704_110_400); // 2024-01-01 12:00 UTC
        assert_eq!(yymmddhhmm(t), "2401011200");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3660); // 2000-02-29 01:01
        assert_eq!(yymmddhhmm(t), "0002290101");
    }
}
