//! SMPP 3.4 links for Tongdao: the ESME session the relay uses towards operators, and an
//! SMSC simulator for tests and the demo. Built on rusmpp's PDU types and command codec,
//! with our own connection handling (rusmppc stalls and drops the link on quirky PDUs).
//!
//! # Layout
//! * [`codec`] — [`codec::SmppCodec`]: framing with a length guard, rusmpp decoding after
//!   sanitising known SMSC quirks, undecodable bodies surfaced as [`codec::Frame::Undecodable`]
//!   (answered with `generic_nack`, link kept).
//! * [`client`] — [`Client`]: bind_transceiver, window, TPS pacing, throttling back-off,
//!   enquire_link, `submit` with outcome classes, inbound receipts/MOs with durable-ack
//!   handles, [`run_with_reconnect`].
//! * [`status`] — `command_status` classification ([`StatusClass`], table in the module
//!   docs) and names.
//! * [`encode`] — GSM 7-bit / UCS-2 choice, UDH (or SAR) segmentation, MO decoding,
//!   [`encode::Reassembler`].
//! * [`receipt`] — receipt text/TLV parsing ([`Receipt`]) and [`normalize_message_id`].
//! * [`sim`] — [`sim::Sim`]: an SMSC on a TCP listener with receipts, fault injection and
//!   MO sending.
//! * `link` (private) — the batching writer task and PDU helpers both sides share.

pub mod client;
pub mod codec;
pub mod encode;
mod link;
pub mod receipt;
pub mod sim;
pub mod status;

pub use client::{
    Ack, Backoff, Client, ClientConfig, ConnectError, Inbound, MoPdu, SubmitError, SubmitOutcome,
    SubmitRequest, run_with_reconnect,
};
pub use encode::{Concat, ConcatInfo, Segment};
pub use receipt::{Receipt, ReceiptState, normalize_message_id};
pub use status::{StatusClass, classify};
