//! What operators send us, each durable before the SMSC gets its `deliver_sm_resp`,
//! so nothing an operator hands over is lost:
//!
//! - [`receipts`]: delivery receipts, matched to exactly one MT segment by the
//!   operator's id format (configured or learned), or kept and matched later.
//! - [`mo`]: MOs, each stored once (redeliveries recognised), long ones re-assembled
//!   within a window.

pub mod mo;
pub mod receipts;

pub use mo::{MoIntake, MoRecord};
pub use receipts::receipts;
