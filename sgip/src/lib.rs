//! SGIP 1.2 links for Tongdao: China Unicom's SMG protocol (中国联通短消息网关系统接口协议
//! SGIP 1.2), the fee fields the SMG bills from included.
//!
//! SGIP differs from SMPP in two ways that shape this crate: the SMG connects *back* to
//! the SP to send MOs (Deliver) and status reports (Report), so the SP runs a server too;
//! and Submit_Resp carries no message id: the Report names the MT by the Submit's
//! three-part sequence number, whose canonical string is therefore the message id.
//!
//! # Layout
//! * [`codec`] — header, [`SequenceNumber`], every SP↔SMG command, framing with a length
//!   guard ([`codec::SgipCodec`]); undecodable bodies surface as
//!   [`codec::Frame::Undecodable`] and are answered, the link kept.
//! * [`result`] — Result/ErrorCode values and their [`tongdao_smpp::StatusClass`].
//! * [`text`] — MessageCoding (0 ASCII, 8 UCS-2, 15 GBK), segmentation with TP_udhi,
//!   MO decoding and reassembly.
//! * [`client`] — [`Client`]: the SP's link to the SMG (Bind Login Type 1, window, TPS,
//!   on-demand binds and idle close, Submit with the fee fields of a [`Fee`]).
//! * [`server`] — [`Server`]: the SP's listener for the SMG's binds (Login Type 2),
//!   Deliver and Report as [`Inbound`] events acked after the owner stores them.
//! * [`sim`] — [`sim::Sim`]: an SMG simulator with fault injection, for tests and the
//!   demo.
//!
//! # Use
//! ```no_run
//! use tongdao_sgip::{Client, ClientConfig, Fee, Inbound, Server, ServerConfig, SubmitRequest, text};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let (server, mut inbound) =
//!     Server::start(ServerConfig::new("0.0.0.0:8801".parse()?, "smg", "secret")).await?;
//! tokio::spawn(async move {
//!     while let Some(event) = inbound.recv().await {
//!         match event {
//!             // Store first, then acknowledge: the SMG resends what is not acked.
//!             Inbound::Report(report, ack) => ack.ack(),
//!             Inbound::Mo(mo, ack) => ack.ack(),
//!         }
//!     }
//! });
//! let client = Client::new(ClientConfig::new("10.0.0.1:8801", "sp", "pw", 3_010_012_345, "12345"))?;
//! for segment in text::encode("你好，世界", 7)? {
//!     let mut request = SubmitRequest::new("10661234", "8613000000000", &segment);
//!     request.fee = Some(Fee { fee_type: 2, fee_value: 10, ..Fee::default() });
//!     match client.submit(&request).await {
//!         Ok(outcome) => println!("accepted as {}", outcome.message_id),
//!         Err(e) if e.outcome_unknown() => println!("unknown outcome: {e}"),
//!         Err(e) => println!("failed ({:?}): {e}", e.class()),
//!     }
//! }
//! client.close().await;
//! # drop(server);
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod codec;
mod link;
pub mod result;
pub mod server;
pub mod sim;
pub mod text;

pub use client::{
    Client, ClientConfig, ConnectError, Fee, SubmitError, SubmitOutcome, SubmitRequest,
};
pub use codec::SequenceNumber;
pub use link::mmddhhmmss;
pub use server::{Ack, Inbound, Mo, Server, ServerConfig, StatusReport};
