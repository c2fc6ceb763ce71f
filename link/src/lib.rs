//! Operator links for Tongdao, protocol-neutral: what SMPP 3.4, CMPP 3.0/2.0 and SGIP 1.2
//! sessions share, so the relay keeps one window, one set of retry and unknown-outcome
//! rules, one segmentation and one receipt matcher for all of them (issue 16 item 1).
//!
//! # Layout
//! * [`session`] — the [`Session`] trait every protocol's client implements and the
//!   [`Connect`] trait that opens one; [`SubmitRequest`] (with the operator fee fields
//!   [`Fee`]), [`SubmitOutcome`], [`SubmitError`], [`Inbound`] events with their [`Ack`].
//! * [`status`] — [`StatusClass`]: ok / throttled / temporary / permanent / unknown
//!   outcome; each protocol maps its result codes onto it.
//! * [`encode`] — GSM 7-bit / UCS-2 choice ([`encode::Alphabet`]), TP-UDHI segmentation,
//!   MO decoding, [`encode::Reassembler`].
//! * [`receipt`] — [`Receipt`], [`ReceiptState`], message-id normalisation.
//! * [`reconnect`] — [`run_with_reconnect`] over any [`Connect`]: binds again after
//!   failures and flaps with a jittered exponential back-off; [`LinkStatus`].
//! * [`corpus`] — the checked-in fuzz corpora, read for the replay tests.
//! * [`dice`] — the small deterministic generator behind jitter and simulator faults.
//! * [`window`] — what every client keeps around its window: [`window::Pending`]
//!   requests by sequence number, the [`window::Pacer`] (TPS bucket, throttle back-off),
//!   [`window::next_seq`].
//!
//! # Plugging in a protocol
//! A protocol crate implements [`Session`] on its client handle and [`Connect`] on its
//! bind settings (connect + login, returning the session and a
//! `tokio::sync::mpsc::Receiver<Inbound>`), maps its submit result codes to
//! [`StatusClass`], its status reports to [`Receipt`] and its MOs to [`MoPdu`], and
//! answers each inbound PDU through the [`Ack`] it hands out. The relay then runs it
//! with [`run_with_reconnect`].

pub mod corpus;
pub mod dice;
pub mod encode;
pub mod receipt;
pub mod reconnect;
pub mod session;
pub mod status;
pub mod window;

pub use encode::{Alphabet, Concat, ConcatInfo, Segment};
pub use receipt::{Receipt, ReceiptState, canonical_message_id, normalize_message_id};
pub use reconnect::{Backoff, LinkState, LinkStatus, run_with_reconnect};
pub use session::{
    Ack, Answer, Connect, Fee, FeeType, FeeUserType, Inbound, MoPdu, Session, SubmitError,
    SubmitOutcome, SubmitRequest,
};
pub use status::StatusClass;
pub use window::{Lifecycle, Pacer, Pending};
