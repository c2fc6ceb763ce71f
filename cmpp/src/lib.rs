//! CMPP links for Tongdao: China Mobile's SP↔ISMG protocol, version 3.0 (中国移动通信互联网
//! 短信网关接口协议 V3.0.0) and 2.0, with the fee fields the operator bills from. The
//! SP client session the relay uses towards an ISMG, and an ISMG simulator for tests and
//! the demo. The crate knows nothing of the host.
//!
//! # Layout
//! * [`pdu`] — packets ([`pdu::Packet`], [`pdu::Pdu`]) and their layouts per
//!   [`pdu::Version`], with the specification's section numbers; the status report
//!   ([`pdu::Report`]).
//! * [`codec`] — [`codec::CmppCodec`]: framing by `Total_Length` with a length guard;
//!   undecodable bodies surface as [`codec::Frame::Undecodable`] (answered, link kept).
//! * [`msg_id`] — [`MsgId`], the 64-bit `Msg_Id` layout (time, gateway, sequence).
//! * [`auth`] — `AuthenticatorSource` / `AuthenticatorISMG` (MD5).
//! * [`status`] — `Result` classification ([`StatusClass`], table in the module docs).
//! * [`text`] — `Msg_Fmt` (ASCII, UCS-2, GBK), UDH segmentation, [`text::Reassembler`].
//! * [`client`] — [`Client`]: login, window, TPS pacing, flow-control back-off, active
//!   test, submit with outcome classes and the fee fields ([`Fee`]), inbound reports and
//!   MOs with durable-ack handles, `CMPP_TERMINATE` on close.
//! * [`sim`] — [`sim::Sim`]: an ISMG on a TCP listener that checks the authenticator,
//!   records every submit with its fee fields, sends reports and MOs (with LinkID), and
//!   injects faults.
//! * [`time`] — China Standard Time digits (`MMDDHHMMSS`, `YYMMDDHHMM`).
//!
//! # Use
//! ```no_run
//! use tongdao_cmpp::{Client, ClientConfig, Fee, FeeType, Inbound, SubmitRequest, Version};
//! use tongdao_cmpp::text::Coding;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClientConfig::new("127.0.0.1:7890", "901234", "secret", Version::V30);
//! let (client, mut inbound) = Client::connect(config).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = inbound.recv().await {
//!         match event {
//!             // Store first, then acknowledge: the ISMG redelivers what is not acked.
//!             Inbound::Report(report, ack) => ack.ack(),
//!             Inbound::Mo(mo, ack) => ack.ack(),
//!             Inbound::Closed(reason) => break,
//!         }
//!     }
//! });
//! let fee = Fee {
//!     service_id: "MWEATHER".into(),
//!     fee_type: FeeType::PerMessage,
//!     fee_code: 10, // fen
//!     fee_user_type: 0,
//!     fee_terminal_id: String::new(),
//!     link_id: String::new(),
//! };
//! for request in SubmitRequest::for_text("10661234", "13800138000", "你好", Coding::Auto, 7, &fee)? {
//!     match client.submit(&request).await {
//!         Ok(outcome) => println!("accepted as {}", outcome.message_id),
//!         Err(e) if e.outcome_unknown() => println!("unknown outcome: {e}"),
//!         Err(e) => println!("failed ({:?}): {e}", e.class()),
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod client;
pub mod codec;
mod dice;
#[doc(hidden)]
pub mod fuzzing;
mod link;
pub mod msg_id;
pub mod pdu;
pub mod sim;
pub mod status;
pub mod text;
pub mod time;

pub use client::{
    Ack, Client, ClientConfig, ConnectError, Fee, FeeType, Inbound, Mo, SubmitError, SubmitOutcome,
    SubmitRequest,
};
pub use msg_id::MsgId;
pub use pdu::{Packet, Pdu, Report, Version};
pub use status::{StatusClass, classify};
