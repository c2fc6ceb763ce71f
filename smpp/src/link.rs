//! Connection plumbing shared by the client and the simulator: a writer task that batches
//! PDUs into one flush, and helpers to build common PDUs.

use bytes::Bytes;
use futures_util::SinkExt;
use rusmpp::pdus::{DataSmResp, DeliverSmResp, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::codec::{CodecError, SmppCodec};

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// A PDU to encode.
    Cmd(Box<Command>),
    /// Pre-encoded bytes (quirky PDUs crafted by the simulator).
    Raw(Bytes),
    /// Flush, half-close the socket and stop (graceful close after unbind).
    Close,
}

pub(crate) type OutTx = mpsc::UnboundedSender<Out>;

/// Most PDUs fed before a flush; bounds latency under a constant stream.
const MAX_BATCH: usize = 512;

/// Writes PDUs until the channel closes, `Out::Close`, a write error or `cancel`. Every
/// PDU already queued is fed before one flush, so bursts cost one syscall, not one each.
/// Cancels `cancel` when it stops on an error so the reader side closes too.
pub(crate) async fn writer(
    half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancel: CancellationToken,
) -> Result<(), CodecError> {
    let mut sink = FramedWrite::new(half, SmppCodec::new());
    let result = async {
        loop {
            let first = tokio::select! {
                biased;
                item = rx.recv() => item,
                _ = cancel.cancelled() => return Ok(()),
            };
            let Some(mut item) = first else {
                return SinkExt::<Command>::close(&mut sink).await;
            };
            let mut fed = 0;
            loop {
                match item {
                    Out::Cmd(cmd) => sink.feed(*cmd).await?,
                    Out::Raw(bytes) => sink.feed(bytes).await?,
                    Out::Close => {
                        SinkExt::<Command>::flush(&mut sink).await?;
                        return SinkExt::<Command>::close(&mut sink).await;
                    }
                }
                fed += 1;
                if fed >= MAX_BATCH {
                    break;
                }
                match rx.try_recv() {
                    Ok(next) => item = next,
                    Err(_) => break,
                }
            }
            SinkExt::<Command>::flush(&mut sink).await?;
        }
    }
    .await;
    if result.is_err() {
        cancel.cancel();
    }
    result
}

/// A command with the given status, sequence and body.
pub(crate) fn cmd(status: u32, seq: u32, pdu: Pdu) -> Out {
    Out::Cmd(Box::new(Command::new(
        CommandStatus::from(status),
        seq,
        pdu,
    )))
}

/// `generic_nack` with `status` echoing `seq`.
pub(crate) fn generic_nack(status: u32, seq: u32) -> Out {
    cmd(status, seq, Pdu::GenericNack)
}

/// `deliver_sm_resp`/`data_sm_resp` (empty message_id).
pub(crate) fn deliver_resp(data_sm: bool, status: u32, seq: u32) -> Out {
    let pdu = if data_sm {
        Pdu::DataSmResp(DataSmResp::new(COctetString::empty(), Vec::new()))
    } else {
        Pdu::DeliverSmResp(DeliverSmResp::new(COctetString::empty(), Vec::new()))
    };
    cmd(status, seq, pdu)
}

/// `submit_sm_resp` (empty message_id when rejected).
pub(crate) fn submit_resp(status: u32, seq: u32, message_id: &str) -> Out {
    let id = if status == 0 {
        COctetString::from_string(message_id.to_string()).unwrap_or_default()
    } else {
        COctetString::empty()
    };
    cmd(
        status,
        seq,
        Pdu::SubmitSmResp(SubmitSmResp::new(id, Vec::new())),
    )
}

/// A `COctetString` from text, or a description of why it cannot be one.
pub(crate) fn c_string<const MIN: usize, const MAX: usize>(
    field: &str,
    value: &str,
) -> Result<COctetString<MIN, MAX>, String> {
    COctetString::from_string(value.to_string())
        .map_err(|e| format!("{field} {value:?}: {e} (max {} ASCII chars)", MAX - 1))
}
