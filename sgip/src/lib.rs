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
//! * [`result`] — Result/ErrorCode values and their [`tongdao_link::StatusClass`].
//! * [`text`] — MessageCoding (0 ASCII, 8 UCS-2, 15 GBK), segmentation with TP_udhi,
//!   MO decoding and reassembly.
//! * [`client`] — [`Client`]: the SP's link to the SMG (Bind Login Type 1, window, TPS,
//!   on-demand binds and idle close, Submit with the fee fields of an [`SgipFee`]).
//! * [`server`] — [`Server`]: the SP's listener for the SMG's binds (Login Type 2),
//!   Deliver and Report as `tongdao-link` `Inbound` events acked after the owner stores
//!   them.
//! * [`sim`] — [`sim::Sim`]: an SMG simulator with fault injection, for tests and the
//!   demo.
//!
//! * [`session`] — [`Sgip`]: the `tongdao-link` [`tongdao_link::Connect`] that opens
//!   [`Client`] sessions ([`tongdao_link::Session`]) and routes the listener's events.
//!
//! # Use
//! ```no_run
//! use tongdao_link::encode::{Alphabet, Concat, encode_in};
//! use tongdao_link::{Connect, Fee, FeeType, FeeUserType, Inbound, Session, SubmitRequest};
//! use tongdao_sgip::{ClientConfig, Server, ServerConfig, Sgip};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The SMG connects back here for Reports and MOs.
//! let (server, _unused) =
//!     Server::start(ServerConfig::new("0.0.0.0:8801".parse()?, "smg", "secret")).await?;
//! let sgip = Sgip::new(
//!     ClientConfig::new("10.0.0.1:8801", "sp", "pw", 3_010_012_345, "12345"),
//!     &server,
//! );
//! let (session, mut inbound) = sgip.connect().await?;
//! tokio::spawn(async move {
//!     while let Some(event) = inbound.recv().await {
//!         match event {
//!             // Store first, then acknowledge: the SMG resends what is not acked.
//!             Inbound::Receipt(receipt, ack) => ack.ack(),
//!             Inbound::Mo(mo, ack) => ack.ack(),
//!             Inbound::Closed(_) => break,
//!         }
//!     }
//! });
//! let fee = Fee {
//!     fee_type: FeeType::PerMessage,
//!     fee_code_fen: 10,
//!     fee_user_type: FeeUserType::Destination,
//!     charge_number: String::new(),
//!     service_id: "WEATHER".into(),
//!     link_id: None,
//!     in_reply_to_mo: true,
//! };
//! for segment in encode_in("你好，世界", Alphabet::Ucs2, Concat::Udh8(7))? {
//!     let request = SubmitRequest::new("10661234", "8613000000000", &segment)
//!         .with_fee(Some(fee.clone()));
//!     match session.submit(&request).await {
//!         // The Report's message id: the Submit's node-MMDDHHMMSS-counter.
//!         Ok(outcome) => println!("accepted as {}", outcome.message_id),
//!         Err(e) if e.outcome_unknown() => println!("unknown outcome: {e}"),
//!         Err(e) => println!("failed ({:?}): {e}", e.class()),
//!     }
//! }
//! session.close_within(std::time::Duration::from_secs(5)).await;
//! # Ok(())
//! # }
//! ```

pub mod client;
pub mod codec;
pub mod fuzzing;
mod link;
pub mod result;
pub mod server;
pub mod session;
pub mod sim;
pub mod text;

pub use client::{CHARGE_SP, Client, ClientConfig, ConnectError, MtRequest, SgipFee};
pub use codec::SequenceNumber;
pub use link::mmddhhmmss;
pub use server::{Inlet, Server, ServerConfig};
pub use session::Sgip;
