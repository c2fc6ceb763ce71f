//! Connection plumbing shared by the client, the listener and the simulator: a writer
//! task that batches packets into one flush, sequence-number minting and the `MMDDHHMMSS`
//! clock.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio_util::codec::FramedWrite;
use tokio_util::sync::CancellationToken;

use crate::codec::{CodecError, Packet, Pdu, SequenceNumber, SgipCodec};

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// A packet to encode.
    Packet(Box<Packet>),
    /// Pre-encoded bytes (malformed packets crafted by the simulator).
    Raw(Bytes),
    /// Flush, half-close the socket and stop.
    Close,
}

pub(crate) type OutTx = mpsc::UnboundedSender<Out>;

/// A packet for the writer.
pub(crate) fn packet(sequence: SequenceNumber, pdu: Pdu) -> Out {
    Out::Packet(Box::new(Packet { sequence, pdu }))
}

/// Most packets fed before a flush.
const MAX_BATCH: usize = 512;

/// Writes until the channel closes, `Out::Close`, a write error or `cancel`; every
/// packet already queued is fed before one flush. Cancels `cancel` on a write error so
/// the reader side ends too.
pub(crate) async fn writer(
    half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    cancel: CancellationToken,
) -> Result<(), CodecError> {
    let mut sink = FramedWrite::new(half, SgipCodec);
    let result = async {
        loop {
            let first = tokio::select! {
                biased;
                item = rx.recv() => item,
                _ = cancel.cancelled() => return Ok(()),
            };
            let Some(mut item) = first else {
                return SinkExt::<Bytes>::close(&mut sink).await;
            };
            let mut fed = 0;
            loop {
                match item {
                    Out::Packet(p) => sink.feed(*p).await?,
                    Out::Raw(bytes) => sink.feed(bytes).await?,
                    Out::Close => {
                        SinkExt::<Bytes>::flush(&mut sink).await?;
                        return SinkExt::<Bytes>::close(&mut sink).await;
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
            SinkExt::<Bytes>::flush(&mut sink).await?;
        }
    }
    .await;
    if result.is_err() {
        cancel.cancel();
    }
    result
}

/// The low 24 bits of the counter part of every sequence number this process mints.
/// One counter for all clients, so a session opened again within the same second
/// never reuses a number (the Report matches MTs by it).
static COUNTER: AtomicU32 = AtomicU32::new(1);

/// Mints sequence numbers for one node: its id, the current `MMDDHHMMSS` (UTC), and
/// the counter part: the minter's incarnation in the top 8 bits, the process-wide
/// counter (wrapping at 2^24) below. Another process, or this one started again within
/// the same second, mints other numbers as long as its incarnation differs
/// ([`crate::ClientConfig::incarnation`]).
#[derive(Debug)]
pub(crate) struct Minter {
    node_id: u32,
    incarnation: u8,
}

impl Minter {
    pub(crate) fn new(node_id: u32, incarnation: u8) -> Self {
        Self {
            node_id,
            incarnation,
        }
    }

    pub(crate) fn next(&self) -> SequenceNumber {
        SequenceNumber {
            node_id: self.node_id,
            timestamp: mmddhhmmss(SystemTime::now()),
            sequence: (u32::from(self.incarnation) << 24)
                | (COUNTER.fetch_add(1, Ordering::Relaxed) & 0x00FF_FFFF),
        }
    }
}

/// `MMDDHHMMSS` in UTC as a number (SGIP 1.2 header table: the second part of the
/// sequence number).
pub fn mmddhhmmss(t: SystemTime) -> u32 {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = (secs % 86_400) as u32;
    // Howard Hinnant's civil_from_days (month and day only).
    let z = days + 719_468;
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    m * 100_000_000 + d * 1_000_000 + (rem / 3600) * 10_000 + (rem % 3600 / 60) * 100 + rem % 60
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn clock() {
        let t = UNIX_EPOCH + Duration::from_secs(1_704_110_400 + 59); // 2024-01-01 12:00:59
        assert_eq!(mmddhhmmss(t), 101_120_059);
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661); // 2000-02-29 01:01:01
        assert_eq!(mmddhhmmss(t), 229_010_101);
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31 23:59:59
        assert_eq!(mmddhhmmss(t), 1_231_235_959);
    }

    /// A process started again within the same second (or a second replica with the
    /// same node id) mints with another incarnation: none of its numbers is one the
    /// first minted, though both counters run over the same values.
    #[test]
    fn incarnations_never_mint_the_same_number() {
        let (first, second) = (Minter::new(3_010_099_001, 7), Minter::new(3_010_099_001, 8));
        let a: Vec<SequenceNumber> = (0..1000).map(|_| first.next()).collect();
        let b: Vec<SequenceNumber> = (0..1000).map(|_| second.next()).collect();
        assert!(a.iter().all(|n| n.sequence >> 24 == 7));
        assert!(b.iter().all(|n| n.sequence >> 24 == 8));
        let low = |v: &[SequenceNumber]| -> std::collections::HashSet<u32> {
            v.iter().map(|n| n.sequence & 0x00FF_FFFF).collect()
        };
        // Unique within a minter, and apart only by the incarnation across the two.
        assert_eq!(low(&a).len(), 1000);
        assert!(a.iter().all(|n| !b.contains(n)));
    }
}
