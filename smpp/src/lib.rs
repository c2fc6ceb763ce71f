//! SMPP 3.4 links for Tongdao: the ESME session the relay uses towards operators, and an
//! SMSC simulator for tests and the demo. [`Client`] implements the protocol-neutral
//! [`Session`] of `tongdao-link` and [`ClientConfig`] its [`Connect`]; the neutral types
//! (requests, outcomes, receipts, segmentation, the reconnect loop) are re-exported here. Built on rusmpp's PDU types and command codec,
//! with our own connection handling (rusmppc stalls and drops the link on quirky PDUs).
//!
//! # Layout
//! * [`codec`] — [`codec::SmppCodec`]: framing with a length guard, rusmpp decoding after
//!   sanitising known SMSC quirks, undecodable bodies surfaced as [`codec::Frame::Undecodable`]
//!   (answered with `generic_nack`, link kept).
//! * [`client`] — [`Client`]: bind_transceiver, window, TPS pacing, throttling back-off,
//!   enquire_link, `submit` with outcome classes, inbound receipts/MOs with durable-ack
//!   handles.
//! * [`reconnect`] (re-exported) — [`run_with_reconnect`]: binds again after failures and
//!   flaps with an exponential, jittered back-off that resets only once a link stayed up;
//!   [`LinkStatus`].
//! * [`status`] — `command_status` classification ([`StatusClass`], table in the module
//!   docs) and names.
//! * [`encode`] (re-exported) — GSM 7-bit / UCS-2 choice, UDH (or SAR) segmentation, MO
//!   decoding, [`encode::Reassembler`].
//! * [`receipt`] — receipt text/TLV parsing ([`Receipt`]) and [`normalize_message_id`].
//! * [`fuzzing`] — the properties the fuzz targets (`smpp/fuzz`) check, shared with the
//!   stable test that replays their corpus.
//! * [`sim`] — [`sim::Sim`]: an SMSC on a TCP listener with receipts, fault injection and
//!   MO sending.
//! * `link` (private) — the batching writer task and PDU helpers both sides share.
//!
//! # Use
//! ```no_run
//! use tongdao_smpp::{Client, ClientConfig, Concat, Inbound, SubmitRequest, encode};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ClientConfig::new("127.0.0.1:2775", "tongdao", "secret");
//! config.window = 10;
//! config.tps = 200;
//! let (client, mut inbound) = Client::connect(config).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = inbound.recv().await {
//!         match event {
//!             // Store first, then acknowledge: the SMSC redelivers what is not acked.
//!             Inbound::Receipt(receipt, ack) => ack.ack(),
//!             Inbound::Mo(mo, ack) => ack.ack(),
//!             Inbound::Closed(reason) => break,
//!         }
//!     }
//! });
//! for segment in encode::encode("你好，世界", Concat::Udh8(7))? {
//!     match client.submit(&SubmitRequest::new("10661234", "8613800138000", &segment)).await {
//!         Ok(outcome) => println!("accepted as {}", outcome.message_id),
//!         Err(e) if e.outcome_unknown() => println!("unknown outcome: {e}"),
//!         Err(e) => println!("failed ({:?}): {e}", e.class()),
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod codec;
pub mod fuzzing;
mod link;
pub mod receipt;
pub mod sim;
pub mod status;

/// Segmentation, UDH and reassembly (protocol-neutral, from `tongdao-link`).
pub use tongdao_link::encode;
/// The reconnect loop (protocol-neutral, from `tongdao-link`).
pub use tongdao_link::reconnect;

pub use client::{Client, ClientConfig, ConnectError};
pub use encode::{Concat, ConcatInfo, Segment};
pub use receipt::{Receipt, ReceiptState, canonical_message_id, normalize_message_id};
pub use reconnect::{Backoff, LinkState, LinkStatus, run_with_reconnect};
pub use status::{StatusClass, classify};
pub use tongdao_link::{
    Ack, Answer, Connect, Fee, FeeType, FeeUserType, Inbound, MoPdu, Session, SubmitError,
    SubmitOutcome, SubmitRequest,
};
