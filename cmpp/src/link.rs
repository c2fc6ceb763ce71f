//! Connection plumbing the client and the simulator share: a writer task that batches
//! frames into one flush.

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::codec::{CmppCodec, CodecError, Outgoing};
use crate::pdu::{Packet, Pdu, Version};

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// Encoded bytes (packets are encoded by the sender, so encode errors reach it).
    Raw(Bytes),
    /// Flush, half-close the socket and stop.
    Close,
}

pub(crate) type OutTx = mpsc::UnboundedSender<Out>;

/// Most frames fed before a flush.
const MAX_BATCH: usize = 512;

/// Writes until the channel closes, `Out::Close`, a write error or `cancel`; every frame
/// already queued is fed before one flush. Cancels `cancel` when it stops on an error.
pub(crate) async fn writer(
    half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancel: CancellationToken,
) -> Result<(), CodecError> {
    // Only raw bytes go through it, so the codec's version does not matter.
    let mut sink = FramedWrite::new(half, CmppCodec::new(Version::V30));
    let result = async {
        loop {
            let first = tokio::select! {
                biased;
                item = rx.recv() => item,
                _ = cancel.cancelled() => return Ok(()),
            };
            let Some(mut item) = first else {
                return SinkExt::<Outgoing>::close(&mut sink).await;
            };
            let mut fed = 0;
            loop {
                match item {
                    Out::Raw(bytes) => sink.feed(Outgoing::Raw(bytes)).await?,
                    Out::Close => {
                        SinkExt::<Outgoing>::flush(&mut sink).await?;
                        return SinkExt::<Outgoing>::close(&mut sink).await;
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
            SinkExt::<Outgoing>::flush(&mut sink).await?;
        }
    }
    .await;
    if result.is_err() {
        cancel.cancel();
    }
    result
}

/// Encodes `pdu` with `seq` for the writer. Only for packets that cannot fail to encode
/// (responses, heartbeats); `None` otherwise.
pub(crate) fn packet(version: Version, seq: u32, pdu: Pdu) -> Option<Out> {
    Packet {
        sequence_id: seq,
        pdu,
    }
    .encode(version)
    .ok()
    .map(|b| Out::Raw(b.freeze()))
}

/// Sends `pdu` with `seq` on `out`, ignoring a closed link (the peer resends).
pub(crate) fn send(out: &OutTx, version: Version, seq: u32, pdu: Pdu) {
    if let Some(o) = packet(version, seq, pdu) {
        let _ = out.send(o);
    }
}

/// Sequence ids run 1..=0x7FFFFFFF and wrap (the shared counter of every client).
pub(crate) use tongdao_link::window::next_seq;
