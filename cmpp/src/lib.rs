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
//! * [`status`] — `Result` classification onto the link's
//!   [`tongdao_link::StatusClass`] (table in the module docs).
//! * [`text`] — `Msg_Fmt` (ASCII, UCS-2, GBK) ↔ the link's `data_coding`; segmentation,
//!   UDH and reassembly are the link's ([`tongdao_link::encode`]).
//! * [`client`] — [`Client`], a [`tongdao_link::Session`] (and [`ClientConfig`] a
//!   [`tongdao_link::Connect`]): login, window, TPS pacing, flow-control back-off,
//!   active test, submit with outcome classes and the fee fields ([`to_submit`] maps
//!   [`tongdao_link::Fee`]), inbound reports and MOs (with `LinkID`) with durable-ack
//!   handles, `CMPP_TERMINATE` on close.
//! * [`sim`] — [`sim::Sim`]: an ISMG on a TCP listener that checks the authenticator,
//!   records every submit with its fee fields, sends reports and MOs (with LinkID), and
//!   injects faults.
//! * [`time`] — China Standard Time digits (`MMDDHHMMSS`, `YYMMDDHHMM`).
//!
//! # Use
//! ```no_run
//! use tongdao_cmpp::{Client, ClientConfig, Version};
//! use tongdao_link::encode::{Concat, encode_in};
//! use tongdao_link::{Alphabet, Fee, FeeType, FeeUserType, Inbound, SubmitRequest};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClientConfig::new("127.0.0.1:7890", "901234", "secret", Version::V30);
//! let (client, mut inbound) = Client::connect(config).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = inbound.recv().await {
//!         match event {
//!             // Store first, then acknowledge: the ISMG redelivers what is not acked.
//!             Inbound::Receipt(receipt, ack) => ack.ack(),
//!             Inbound::Mo(mo, ack) => ack.ack(), // mo.link_id: echo it in the reply
//!             Inbound::Closed(reason) => break,
//!         }
//!     }
//! });
//! let fee = Fee {
//!     fee_type: FeeType::PerMessage,
//!     fee_code_fen: 10,
//!     fee_user_type: FeeUserType::Destination,
//!     charge_number: String::new(),
//!     service_id: "MWEATHER".into(),
//!     link_id: None,
//!     in_reply_to_mo: false,
//! };
//! for segment in encode_in("你好，世界", Alphabet::Ucs2, Concat::Udh8(7))? {
//!     let request = SubmitRequest::new("10661234", "13800138000", &segment)
//!         .with_fee(Some(fee.clone()));
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
#[doc(hidden)]
pub mod fuzzing;
mod link;
pub mod msg_id;
pub mod pdu;
pub mod sim;
pub mod status;
pub mod text;
pub mod time;

pub use client::{Client, ClientConfig, ConnectError, to_submit};
pub use msg_id::MsgId;
pub use pdu::{Packet, Pdu, Report, Version};
pub use status::classify;
