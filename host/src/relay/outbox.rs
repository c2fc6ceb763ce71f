//! The durable outbox: every MT is a row before anything is sent, and every
//! step (claim, submit, receipt) is a state change in the database, so a crash at
//! any point resumes.
//!
//! **The gate.** Every MT enters through [`admit`] (replies, notices, welcome and
//! farewell texts, test sends; [`enqueue`] is a batch of one) or, for a push,
//! [`admit_push_in`] (a slice of a run's subscriptions, set-based). Both apply the
//! same rules once per batch, in the transaction that writes the rows: opt-in
//! basis, suspension, content policy (R-3.1, control and invisible
//! characters included), the monthly and daily caps (R-4.7, [`crate::compliance::caps`]),
//! quiet hours and validity. Only this module writes `messages`,
//! `message_segments` and `message_events`; state changes made for other parts
//! (a suspension's hold, an unsubscription's withdrawal, a termination) are its
//! functions too ([`hold_in`], [`withdraw_in`], [`fail_queued_in`]).
//!
//! Statuses: `queued` (or `held` while its partner or service is suspended) →
//! `submitting` (claimed, leased) → `submitted` → `delivered`
//! | `failed` | `expired`, or `cancelled` when the user unsubscribed first. A temporary failure puts the row back to `queued` with a
//! later `next_attempt_at`; past `expires_at` it becomes `expired`.
//!
//! **Unknown-outcome rule.** SMPP has no idempotency key: when the link is lost (or
//! the process dies) after a `submit_sm` was written but before its response, the
//! SMSC may or may not have the segment. Tongdao resends such segments (at least
//! once, never lost) and marks the message `resent_unknown = 1`, so possible
//! duplicates are counted, never hidden. Segments whose `submit_sm_resp` was stored
//! are never sent again.
//!
//! **Clean shutdown.** A bind that stops writes nothing new; MTs it claimed but did
//! not send go back to the queue unmarked ([`Failure::NotSent`], [`release_unsent`]),
//! and those it sent are recorded once their responses arrive. Only a submit still
//! unanswered when the shutdown's grace period ends has an unknown outcome.

mod admit;
mod push;
pub mod records;
pub mod retention;
mod sending;
mod states;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::routing::RouteError;
use crate::compliance::blocked::Blocked;
use crate::store::StoreError;

pub use admit::{Gate, Outcome, admit, enqueue, enqueue_test};
pub use push::{CanarySlice, PushAdmitted, PushSlice, Variant, admit_push_in};
pub use sending::{
    SegmentReceipt, accepted_segments, apply_receipts, claim, record_submits, record_submits_in,
    release_unsent, renew_leases, sweep,
};
pub use states::{Holder, fail_queued_in, hold_in, release_in, withdraw_in};

/// Who pays for an MT; decided by the service (billing reads it later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChargePlan {
    Free,
    PerMessage,
    Monthly,
    /// A test send (agreement 7.3): never billed.
    Test,
}

impl ChargePlan {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::PerMessage => "per-message",
            Self::Monthly => "monthly",
            Self::Test => "test",
        }
    }
}

/// Why an MT may leave at all. The outbox checks the claim against stored
/// records before it writes the row, so no caller can send to a number that did
/// not ask for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A push under this active subscription (subscription id).
    Subscription(i64),
    /// A module's direct reply to this MO of the recipient (MO id).
    Reply(i64),
    /// A platform notice (confirmation request, help, unsubscribe confirmation)
    /// answering this MO of the recipient, or about this subscription of theirs.
    /// Always free.
    Notice {
        mo_id: Option<i64>,
        subscription_id: Option<i64>,
    },
    /// A test send to a number in `[relay] test_numbers` (agreement 7.3).
    Test,
    /// A module's farewell (`on-unsubscribe`) to the user who just left this
    /// subscription (subscription id): free, within a day of the end, and once.
    Farewell(i64),
    /// A 包月 billing record (包月扣费记录, issue 16 item 4): the monthly charge event
    /// `charge_event_id` of subscription `subscription_id`, carried to an operator
    /// whose protocol has such records (CMPP 2.0, SGIP 1.2; see [`records`]) so that
    /// it bills the user. The user never receives it; it is not a second charge
    /// (charge plan `monthly`, never charged per message), once per charge event.
    FeeRecord {
        charge_event_id: i64,
        subscription_id: i64,
    },
}

impl Basis {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Subscription(_) => "subscription",
            Self::Reply(_) => "reply",
            Self::Notice { .. } => "notice",
            Self::Test => "test",
            Self::Farewell(_) => "farewell",
            Self::FeeRecord { .. } => "fee-record",
        }
    }
}

/// An MT to queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub partner_id: Option<i64>,
    /// The service code (for display) and id.
    pub service: Option<String>,
    pub service_id: Option<i64>,
    pub recipient: String,
    pub text: String,
    pub charge_plan: ChargePlan,
    /// What the recipient pays for this MT (per-message services), in fen.
    pub price_fen: i64,
    pub basis: Basis,
    /// Source address (the service's number); `None`: the operator's default.
    pub sender: Option<String>,
    /// The module version that wrote the text, for violations and provenance.
    pub module_version_id: Option<i64>,
    /// SHA-256 of the inputs of the module call that wrote the text (provenance,
    /// issue 17 item 6; `crate::runtime::input_sha256`); `None` for the platform's
    /// own texts.
    pub input_sha256: Option<String>,
    /// Send through this operator rather than the routed one (test sends).
    pub operator: Option<String>,
}

impl NewMessage {
    /// A free platform notice to `recipient` (see [`Basis::Notice`]).
    pub fn notice(
        recipient: &str,
        text: String,
        sender: Option<String>,
        mo_id: Option<i64>,
        subscription_id: Option<i64>,
    ) -> Self {
        Self {
            partner_id: None,
            service: None,
            service_id: None,
            recipient: recipient.to_string(),
            text,
            charge_plan: ChargePlan::Free,
            price_fen: 0,
            basis: Basis::Notice {
                mo_id,
                subscription_id,
            },
            sender,
            module_version_id: None,
            input_sha256: None,
            operator: None,
        }
    }
}

/// Why an MT was not queued.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error("the text is empty")]
    EmptyText,
    #[error("the text needs {0} segments; at most 255 fit one concatenated message")]
    TooLong(usize),
    #[error("no operator named `{0}`")]
    UnknownOperator(String),
    #[error("{0} is not in [relay] test_numbers; test sends go only to listed numbers")]
    NotATestNumber(String),
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for OutboxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// A queued message as a relay worker sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub recipient: String,
    pub text: String,
    pub attempts: i64,
    pub expires_at: i64,
    pub sender: Option<String>,
    /// `messages.charge_plan` ([`ChargePlan::as_str`]): the fee fields follow it.
    pub charge_plan: String,
    /// What the recipient pays per MT (per-message services), in fen; for a
    /// [`Basis::FeeRecord`], the monthly charge it carries.
    pub price_fen: i64,
    /// The service's code (its `Service_Id` at the operator), if a service's MT.
    pub service: Option<String>,
    /// `messages.basis` ([`Basis::as_str`]).
    pub basis: String,
    /// The MO this MT answers (replies and notices).
    pub mo_id: Option<i64>,
    /// The subscription this MT was pushed under.
    pub subscription_id: Option<i64>,
}

/// How one claimed message's submit attempt ended.
#[derive(Debug, Clone)]
pub enum SubmitResult {
    /// Every segment was accepted: (seq, operator message id) per segment sent now.
    Accepted(Vec<(i64, String)>),
    /// Every segment of a billing record ([`Basis::FeeRecord`]) was accepted by a
    /// gateway that sends no status report for records (CMPP 2.0 `Registered_Delivery`
    /// 2): the record is final (`delivered`: recorded by the operator) at once.
    Recorded(Vec<(i64, String)>),
    /// Some segments were accepted, then a failure of `class` stopped the rest.
    Failed {
        accepted: Vec<(i64, String)>,
        failure: Failure,
    },
}

/// What stopped a submit.
#[derive(Debug, Clone)]
pub enum Failure {
    /// Worth retrying later (throttling, SMSC busy, link down before sending).
    Temporary(String),
    /// Sent but no response: resend under the unknown-outcome rule.
    Unknown(String),
    /// Never deliverable (bad number, refused content…).
    Permanent(String),
    /// Not sent at all (the bind was stopping or down before the PDU was written):
    /// back to the queue at once, unmarked, not counted as an attempt.
    NotSent(String),
}

/// The text's segment count (under SMPP's rule) and content hash (R-2.5: integrity
/// is provable).
pub fn fingerprint(text: &str) -> (usize, String) {
    fingerprint_in(text, tongdao_link::Alphabet::Auto)
}

/// The text's segment count under the `alphabet` of the operator it goes to
/// ([`super::Routes::alphabet`]) and its content hash.
pub fn fingerprint_in(text: &str, alphabet: tongdao_link::Alphabet) -> (usize, String) {
    (
        tongdao_link::encode::segment_count_in(text, alphabet),
        hex::encode(Sha256::digest(text.as_bytes())),
    )
}

/// Hash of the folded text without digits: near-identical texts share it (the
/// fee-only detector groups paid MTs by it).
pub fn content_key(text: &str) -> String {
    let folded: String = crate::text::squash(text)
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect();
    hex::encode(&Sha256::digest(folded.as_bytes())[..16])
}

async fn event(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    message_id: i64,
    status: &str,
    detail: Option<&str>,
    at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO message_events (message_id, status, detail, at) VALUES ($1, $2, $3, $4)",
    )
    .bind(message_id)
    .bind(status)
    .bind(detail)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
