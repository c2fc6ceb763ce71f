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

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use tongdao_smpp::ReceiptState;
use tongdao_smpp::encode::ConcatInfo;
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
}

impl ServerConfig {
    /// Defaults: inbound capacity 4096, links closed after 60 s of silence.
    pub fn new(listen: SocketAddr, login_name: &str, password: &str) -> Self {
        Self {
            listen,
            login_name: login_name.to_string(),
            password: password.to_string(),
            inbound_capacity: 4096,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// A mobile-originated message (one part, if concatenated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mo {
    /// UserNumber: the handset.
    pub user_number: String,
    /// SPNumber: the service number it was sent to.
    pub sp_number: String,
    /// TP_pid.
    pub tp_pid: u8,
    /// TP_udhi.
    pub tp_udhi: u8,
    /// MessageCoding.
    pub message_coding: u8,
    /// MessageContent, UDH included.
    pub content: Vec<u8>,
    /// Concatenation info from the UDH.
    pub concat: Option<ConcatInfo>,
    /// This part's text, decoded.
    pub text: String,
}

impl Mo {
    fn from_deliver(d: Deliver) -> Self {
        let (concat, payload) = text::split(d.tp_udhi, &d.message_content);
        let body = text::decode(d.message_coding, payload);
        Self {
            user_number: d.user_number,
            sp_number: d.sp_number,
            tp_pid: d.tp_pid,
            tp_udhi: d.tp_udhi,
            message_coding: d.message_coding,
            concat,
            text: body,
            content: d.message_content,
        }
    }

    /// Feeds this part to `reassembler`; the full text once every part is in.
    pub fn reassemble(&self, reassembler: &mut tongdao_smpp::encode::Reassembler) -> Option<String> {
        text::reassemble(
            reassembler,
            &self.user_number,
            self.tp_udhi,
            self.message_coding,
            &self.content,
        )
    }
}

/// A status report of an earlier Submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    /// The MT's message id: the canonical string of `submit_sequence`, as
    /// [`crate::SubmitOutcome::message_id`] gave it.
    pub message_id: String,
    /// SubmitSequenceNumber.
    pub submit_sequence: SequenceNumber,
    /// ReportType (0 for a Submit).
    pub report_type: u8,
    /// UserNumber.
    pub user_number: String,
    /// State: 0 delivered, 1 waiting, 2 failed.
    pub state: u8,
    /// ErrorCode.
    pub error_code: u8,
}

impl StatusReport {
    fn from_report(r: Report) -> Self {
        Self {
            message_id: r.submit_sequence.to_string(),
            submit_sequence: r.submit_sequence,
            report_type: r.report_type,
            user_number: r.user_number,
            state: r.state,
            error_code: r.error_code,
        }
    }

    /// The SMPP-style receipt state: 0 Delivered, 1 Enroute, 2 Undeliverable, anything
    /// else Unknown.
    pub fn receipt_state(&self) -> ReceiptState {
        match self.state {
            STATE_DELIVERED => ReceiptState::Delivered,
            STATE_WAITING => ReceiptState::Enroute,
            STATE_FAILED => ReceiptState::Undeliverable,
            _ => ReceiptState::Unknown,
        }
    }
}

/// Events from the SMG.
#[derive(Debug)]
pub enum Inbound {
    /// A status report (Report).
    Report(StatusReport, Ack),
    /// A mobile-originated message (Deliver).
    Mo(Mo, Ack),
}

/// Acknowledgement of one Deliver or Report. Call [`Ack::ack`] once it is stored;
/// dropping it answers Result 11 (node busy) so the SMG sends it again.
#[derive(Debug)]
pub struct Ack {
    sequence: SequenceNumber,
    report: bool,
    out: Option<OutTx>,
}

impl Ack {
    /// Answers Result 0.
    pub fn ack(mut self) {
        self.respond(result::OK);
    }

    /// Answers with `result` (a permanent refusal, e.g. 5).
    pub fn reject(mut self, result: u8) {
        self.respond(result);
    }

    fn respond(&mut self, result: u8) {
        if let Some(out) = self.out.take() {
            let resp = Resp::new(result);
            let pdu = if self.report {
                Pdu::ReportResp(resp)
            } else {
                Pdu::DeliverResp(resp)
            };
            // A closed link loses the answer; the SMG resends.
            let _ = out.send(link::packet(self.sequence, pdu));
        }
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        self.respond(result::NODE_BUSY);
    }
}

/// A running listener. Dropping it stops listening and closes every link.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    cancel: CancellationToken,
}

impl Server {
    /// Binds the listener; events arrive on the returned receiver.
    ///
    /// # Errors
    /// The socket error when the address cannot be bound.
    pub async fn start(
        config: ServerConfig,
    ) -> std::io::Result<(Server, mpsc::Receiver<Inbound>)> {
        let listener = TcpListener::bind(config.listen).await?;
        let local_addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let (tx, rx) = mpsc::channel(config.inbound_capacity.max(1));
        tokio::spawn(accept_loop(listener, config, tx, cancel.clone()));
        Ok((Server { local_addr, cancel }, rx))
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
    tx: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                debug!(%peer, "sgip SMG connected");
                tokio::spawn(serve(stream, config.clone(), tx.clone(), cancel.child_token()));
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
    inbound: mpsc::Sender<Inbound>,
    cancel: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, SgipCodec);
    let (out, out_rx) = mpsc::unbounded_channel();
    let writer = tokio::spawn(link::writer(write, out_rx, cancel.clone()));
    let mut bound = false;
    let reason = loop {
        let frame = tokio::select! {
            _ = cancel.cancelled() => break "closed locally",
            f = timeout(config.idle_timeout, reader.next()) => match f {
                Err(_) => {
                    let _ = out.send(Out::Close);
                    break "idle";
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
                } else if b.login_name != config.login_name || b.login_password != config.password
                {
                    result::ILLEGAL_LOGIN
                } else {
                    result::OK
                };
                let _ = out.send(link::packet(seq, Pdu::BindResp(Resp::new(code))));
                if code == result::OK {
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
                let ack = Ack {
                    sequence: seq,
                    report: false,
                    out: Some(out.clone()),
                };
                // Full or gone: the dropped Ack answers node busy; the SMG resends.
                let _ = inbound.try_send(Inbound::Mo(Mo::from_deliver(*d), ack));
            }
            Pdu::Report(r) if bound => {
                let ack = Ack {
                    sequence: seq,
                    report: true,
                    out: Some(out.clone()),
                };
                let _ = inbound.try_send(Inbound::Report(StatusReport::from_report(r), ack));
            }
            pdu if pdu.command_id() & command::RESP_BIT != 0 => {
                debug!(id = pdu.command_id(), "sgip response on the SMG's link ignored");
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
