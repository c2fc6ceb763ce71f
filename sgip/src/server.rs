//! The SP's server: the SMG connects back to the SP (Bind with Login Type 2) to send
//! Deliver (MOs) and Report (status reports of earlier Submits).
//!
//! * A Bind is accepted only with Login Type 2 and the configured Login Name and
//!   Password (Result 1 illegal login, 4 wrong Login Type; the connection is closed).
//! * Each Deliver and Report becomes an [`Inbound`] event with an [`Ack`]. The
//!   Deliver_Resp/Report_Resp is written only when the owner calls [`Ack::ack`], after
//!   storing the event durably. Dropping the Ack answers Result 11 (node busy), so the
//!   SMG sends it again; a full inbound channel does the same at once instead of
//!   blocking the link. An ack on a link that has died is lost and the SMG resends:
//!   events are at-least-once, store them idempotently.
//! * A packet whose body does not decode is answered (Result 5, 7 or 8) and the link is
//!   kept.
//! * SGIP links are short-lived: the SMG opens one when it has something to send and
//!   Unbinds when done; a link silent for [`ServerConfig::idle_timeout`] is closed here.
//! * A connection must log in within [`ServerConfig::login_timeout`] of being
//!   accepted, however it trickles bytes, or it is closed; at most
//!   [`ServerConfig::max_pending_logins`] connections wait for their Bind at once, and
//!   a new one beyond that closes the oldest waiting one. A flood of connections that
//!   never log in therefore holds a bounded number of sockets for a bounded time, and
//!   an SMG that binds at once still gets in.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tongdao_link::{Ack, Answer, Inbound, MoPdu, Receipt, ReceiptState};
use tracing::{debug, warn};

use crate::client::{bare_resp, undecodable_result};
use crate::codec::{
    Deliver, Frame, LOGIN_SMG_TO_SP, Pdu, Report, Resp, STATE_DELIVERED, STATE_FAILED,
    STATE_WAITING, SequenceNumber, SgipCodec, command,
};
use crate::link::{self, Out, OutTx};
use crate::result;
use crate::text;

/// Settings of the SP's listener.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Login Name the SMG must bind with.
    pub login_name: String,
    /// Login Password the SMG must bind with.
    pub password: String,
    /// Capacity of the inbound channel.
    pub inbound_capacity: usize,
    /// A link silent this long is closed.
    pub idle_timeout: Duration,
    /// A connection that has not bound this long after it was accepted is closed.
    pub login_timeout: Duration,
    /// Connections waiting for their Bind at once; a new one beyond this closes the
    /// oldest waiting one.
    pub max_pending_logins: usize,
}

impl ServerConfig {
    /// Defaults: inbound capacity 4096, links closed after 60 s of silence, a Bind
    /// due within 10 s of connecting, at most 32 connections waiting for theirs.
    pub fn new(listen: SocketAddr, login_name: &str, password: &str) -> Self {
        Self {
            listen,
            login_name: login_name.to_string(),
            password: password.to_string(),
            inbound_capacity: 4096,
            idle_timeout: Duration::from_secs(60),
            login_timeout: Duration::from_secs(10),
            max_pending_logins: 32,
        }
    }
}

/// The connections accepted and not yet bound, oldest first, each with the token
/// that closes it.
#[derive(Debug, Default)]
struct Pending {
    next_id: u64,
    waiting: VecDeque<(u64, CancellationToken)>,
}

type PendingLogins = Arc<Mutex<Pending>>;

/// Register a new connection as waiting for its Bind; close the oldest waiting
/// ones beyond `max`. Returns its id.
fn admit(pending: &PendingLogins, token: CancellationToken, max: usize) -> u64 {
    let Ok(mut p) = pending.lock() else { return 0 };
    p.next_id += 1;
    let id = p.next_id;
    p.waiting.push_back((id, token));
    while p.waiting.len() > max.max(1) {
        if let Some((_, oldest)) = p.waiting.pop_front() {
            oldest.cancel();
        }
    }
    id
}

/// The connection `id` bound or ended: it no longer waits.
fn leave(pending: &PendingLogins, id: u64) {
    if let Ok(mut p) = pending.lock() {
        p.waiting.retain(|(i, _)| *i != id);
    }
}

/// The `tongdao-link` MO for one Deliver. The content is handed over as UCS-2
/// (`data_coding` 8, UDH kept, `esm_class` 0x40 when TP_udhi), whatever its
/// MessageCoding (0 ASCII, 15 GBK…), so the shared [`tongdao_link::encode::Reassembler`]
/// joins parts in any coding.
pub fn mo_of(d: &Deliver) -> MoPdu {
    let (concat, payload) = text::split(d.tp_udhi, &d.message_content);
    let body = text::decode(d.message_coding, payload);
    let udh_len = d.message_content.len() - payload.len();
    let mut short_message = d.message_content[..udh_len].to_vec();
    short_message.extend(body.encode_utf16().flat_map(u16::to_be_bytes));
    MoPdu {
        source_addr: d.user_number.clone(),
        destination_addr: d.sp_number.clone(),
        service_type: String::new(),
        data_coding: text::CODING_UCS2,
        esm_class: if d.tp_udhi != 0 {
            tongdao_link::encode::ESM_UDHI
        } else {
            0
        },
        short_message,
        concat,
        text: body,
        link_id: None,
    }
}

/// The `tongdao-link` receipt for one Report: `message_id` is the SubmitSequenceNumber's
/// canonical string (what [`crate::Client`] returned for the MT); State 0 → Delivered,
/// 1 → Enroute, 2 → Undeliverable (ErrorCode kept), else Unknown; `source_addr` the
/// recipient. SGIP Reports carry no dates and no SPNumber.
pub fn receipt_of(r: &Report) -> Receipt {
    let state = match r.state {
        STATE_DELIVERED => ReceiptState::Delivered,
        STATE_WAITING => ReceiptState::Enroute,
        STATE_FAILED => ReceiptState::Undeliverable,
        _ => ReceiptState::Unknown,
    };
    Receipt {
        message_id: r.submit_sequence.to_string(),
        state,
        error_code: (r.state == STATE_FAILED).then(|| r.error_code.to_string()),
        submit_date: None,
        done_date: None,
        source_addr: r.user_number.clone(),
        destination_addr: String::new(),
        raw: format!(
            "SGIP Report submit={} type={} user={} state={} error={}",
            r.submit_sequence, r.report_type, r.user_number, r.state, r.error_code
        ),
    }
}

/// Where the listener delivers its events: the receiver of the current session.
/// [`crate::Sgip`] points it at each new session's channel; [`Server::start`] at the one
/// it returns. With no receiver (or a full one) an event is answered Result 11 and the
/// SMG sends it again.
#[derive(Debug, Clone, Default)]
pub struct Inlet(Arc<Mutex<Option<mpsc::Sender<Inbound>>>>);

impl Inlet {
    /// Sends events to `tx` from now on.
    pub fn set(&self, tx: mpsc::Sender<Inbound>) {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(tx);
        }
    }

    fn send(&self, event: Inbound) {
        let tx = self.0.lock().ok().and_then(|g| g.clone());
        // Full or gone: the event's dropped Ack answers Result 11; the SMG resends.
        if let Some(tx) = tx {
            let _ = tx.try_send(event);
        }
    }
}

/// An Ack answering a Deliver/Report on `out`: Ok → Result 0, Retry → 11 (node busy,
/// the SMG resends), `Status(s)` → Result `s` (32 if above 255).
fn ack(out: &OutTx, sequence: SequenceNumber, report: bool) -> Ack {
    let out = out.clone();
    Ack::new(move |answer| {
        let code = match answer {
            Answer::Ok => result::OK,
            Answer::Retry => result::NODE_BUSY,
            Answer::Status(s) => u8::try_from(s).unwrap_or(result::SYSTEM_FAILURE),
        };
        let resp = Resp::new(code);
        let pdu = if report {
            Pdu::ReportResp(resp)
        } else {
            Pdu::DeliverResp(resp)
        };
        // A closed link loses the answer; the SMG resends.
        let _ = out.send(link::packet(sequence, pdu));
    })
}

/// A running listener. Dropping it stops listening and closes every link.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    cancel: CancellationToken,
    inlet: Inlet,
}

impl Server {
    /// Binds the listener; events arrive on the returned receiver.
    ///
    /// # Errors
    /// The socket error when the address cannot be bound.
    pub async fn start(config: ServerConfig) -> std::io::Result<(Server, mpsc::Receiver<Inbound>)> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(config.inbound_capacity.max(1));
        let inlet = Inlet::default();
        inlet.set(tx);
        tokio::spawn(accept_loop(listener, config, inlet.clone(), cancel.clone()));
        Ok((
            Server {
                local_addr,
                cancel,
                inlet,
            },
            rx,
        ))
    }

    /// Where events go (see [`Inlet`]).
    pub fn inlet(&self) -> Inlet {
        self.inlet.clone()
    }

    /// The address the SMG should connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops listening and closes every link.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: ServerConfig,
    inlet: Inlet,
    cancel: CancellationToken,
) {
    let pending = PendingLogins::default();
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "sgip SMG connected");
                let token = cancel.child_token();
                let id = admit(&pending, token.clone(), config.max_pending_logins);
                let pending = pending.clone();
                let (config, inlet) = (config.clone(), inlet.clone());
                tokio::spawn(async move {
                    serve(stream, config, inlet, token, || leave(&pending, id)).await;
                    leave(&pending, id);
                });
            }
            Err(e) => {
                warn!(error = %e, "sgip accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    config: ServerConfig,
    inlet: Inlet,
    cancel: CancellationToken,
    on_bound: impl Fn(),
) {
    let login_deadline = Instant::now() + config.login_timeout;
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, SgipCodec);
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(link::writer(write, out_rx, cancel.clone()));
    let mut bound = false;
    let reason = loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break if bound { "closed locally" } else { "closed: too many connections waiting to log in" },
            f = timeout(
                if bound {
                    config.idle_timeout
                } else {
                    login_deadline
                        .saturating_duration_since(Instant::now())
                        .min(config.idle_timeout)
                },
                reader.next(),
            ) => match f {
                Err(_) => {
                    let _ = out.send(Out::Close);
                    break if bound { "idle" } else { "no login in time" };
                }
                Ok(f) => f,
            },
        };
        let packet = match frame {
            None => break "closed by SMG",
            Some(Err(e)) => {
                warn!(error = %e, "sgip listener link error");
                break "link error";
            }
            Some(Ok(Frame::Undecodable(u))) => {
                warn!(command_id = u.command_id, error = %u.error, "sgip undecodable packet from SMG");
                if !u.is_response() {
                    match Pdu::response_to(u.command_id, undecodable_result(&u.error)) {
                        Some(pdu) => {
                            let _ = out.send(link::packet(u.sequence, pdu));
                        }
                        None => {
                            let _ = out.send(Out::Raw(bare_resp(
                                u.command_id,
                                u.sequence,
                                result::MESSAGE_ID,
                            )));
                        }
                    }
                }
                continue;
            }
            Some(Ok(Frame::Packet(p))) => *p,
        };
        let seq = packet.sequence;
        match packet.pdu {
            Pdu::Bind(b) => {
                let code = if bound {
                    result::REPEATED_LOGIN
                } else if b.login_type != LOGIN_SMG_TO_SP {
                    result::LOGIN_TYPE
                } else if b.login_name != config.login_name || b.login_password != config.password {
                    result::ILLEGAL_LOGIN
                } else {
                    result::OK
                };
                let _ = out.send(link::packet(seq, Pdu::BindResp(Resp::new(code))));
                if code == result::OK {
                    if !bound {
                        on_bound();
                    }
                    bound = true;
                } else if !bound {
                    let _ = out.send(Out::Close);
                    break "bind refused";
                }
            }
            Pdu::Unbind => {
                let _ = out.send(link::packet(seq, Pdu::UnbindResp));
                let _ = out.send(Out::Close);
                break "SMG unbound";
            }
            Pdu::Deliver(d) if bound => {
                inlet.send(Inbound::Mo(mo_of(&d), ack(&out, seq, false)));
            }
            Pdu::Report(r) if bound => {
                inlet.send(Inbound::Receipt(receipt_of(&r), ack(&out, seq, true)));
            }
            pdu if pdu.command_id() & command::RESP_BIT != 0 => {
                debug!(
                    id = pdu.command_id(),
                    "sgip response on the SMG's link ignored"
                );
            }
            pdu => {
                // Before Bind, or a command an SP does not serve (Submit).
                let code = if bound {
                    result::LOGIN_TYPE
                } else {
                    result::ILLEGAL_SEQUENCE
                };
                if let Some(resp) = Pdu::response_to(pdu.command_id(), code) {
                    let _ = out.send(link::packet(seq, resp));
                }
            }
        }
    };
    debug!(reason, "sgip SMG link ended");
    drop(out);
    // Acks still held by the owner keep the writer's channel open: give a closing link a
    // moment to flush, then stop the writer (their answers are lost; the SMG resends).
    let mut writer = writer;
    if timeout(Duration::from_secs(1), &mut writer).await.is_err() {
        cancel.cancel();
        let _ = writer.await;
    }
}
