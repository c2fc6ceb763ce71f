//! The durable outbox: every MT is a row before anything is sent, and every
//! step (claim, submit, receipt) is a state change in the database, so a crash at
//! any point resumes.
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

mod sending;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::routing::{RouteError, Routes};
use crate::compliance::{Blocked, Compliance, NewViolation};
use crate::config::RelayConfig;
use crate::services::LiveService;
use crate::store::{Store, StoreError, now_ms};

pub use sending::{
    SegmentReceipt, accepted_segments, apply_receipts, claim, record_submits, record_submits_in,
    release_unsent, sweep,
};

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
}

impl Basis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscription(_) => "subscription",
            Self::Reply(_) => "reply",
            Self::Notice { .. } => "notice",
            Self::Test => "test",
            Self::Farewell(_) => "farewell",
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
    /// The module version that wrote the text, for violations.
    pub module_version_id: Option<i64>,
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
}

/// How one claimed message's submit attempt ended.
#[derive(Debug, Clone)]
pub enum SubmitResult {
    /// Every segment was accepted: (seq, operator message id) per segment sent now.
    Accepted(Vec<(i64, String)>),
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

/// The text's segment count and content hash (R-2.5: integrity is provable).
pub fn fingerprint(text: &str) -> (usize, String) {
    (
        tongdao_smpp::encode::segment_count(text),
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

/// How long an MT may wait for a reply basis: a module's answer to an MO older
/// than this is no longer a reply.
const REPLY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// Where the outbox gets its compliance decisions and settings.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub routes: &'a Routes,
    pub relay: &'a RelayConfig,
    pub compliance: &'a Compliance,
}

/// Queue one MT: the basis is checked, partner content passes the policy
/// suspension and caps; then the message, its segments and its
/// first event are written, all or nothing. Pushes wait out quiet hours.
pub async fn enqueue(
    store: &Store,
    gate: Gate<'_>,
    message: NewMessage,
) -> Result<i64, OutboxError> {
    if message.text.trim().is_empty() {
        return Err(OutboxError::EmptyText);
    }
    let (number, routed) = gate.routes.route(&message.recipient)?;
    let operator = match &message.operator {
        Some(name) if gate.routes.has_operator(name) => name.clone(),
        Some(name) => return Err(OutboxError::UnknownOperator(name.clone())),
        None => routed,
    };
    let segments = tongdao_smpp::encode::segment_count(&message.text);
    if segments > 255 {
        return Err(OutboxError::TooLong(segments));
    }
    let partner_content = matches!(
        message.basis,
        Basis::Subscription(_) | Basis::Reply(_) | Basis::Farewell(_)
    );
    let service = match (partner_content, message.service_id) {
        (false, _) => None,
        (true, None) => {
            return Err(Blocked::NoOptIn("a partner MT must name its service".into()).into());
        }
        (true, Some(id)) => Some(
            crate::services::live(store, id)
                .await
                .map_err(Blocked::from)?
                .ok_or(Blocked::UnknownService)?,
        ),
    };
    let mut message = message;
    if service.is_none() {
        message.text = gate.compliance.check_invisible(&message.text)?;
    }
    if let Some(service) = &service {
        if Some(service.partner_id) != message.partner_id {
            return Err(Blocked::NoOptIn("the service belongs to another partner".into()).into());
        }
        gate.compliance
            .may_send(service.partner_id, service.id)
            .await?;
        message.text = gate
            .compliance
            .check_content(service, message.module_version_id, &message.text)
            .await?;
    }
    let (segments, sha) = fingerprint(&message.text);
    let now = now_ms();
    let release = match message.basis {
        Basis::Subscription(_) => gate.compliance.push_release_at(now),
        _ => now,
    };
    let validity = i64::try_from(gate.relay.validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let expires_at = release.saturating_add(validity);
    let mut tx = store.begin_write().await?;
    if let Err(blocked) = check_basis(&mut tx, gate, &message, &number, service.as_ref(), now).await
    {
        drop(tx);
        // Refused opt-in and over-count pushes are violations of the partner.
        let rule = match &blocked {
            Blocked::NoOptIn(_) => Some(("opt-in", "no-subscription")),
            Blocked::MonthlyCap(_) => Some(("cap", "monthly-over-count")),
            _ => None,
        };
        if let (Some(service), Some((kind, rule))) = (&service, rule) {
            gate.compliance
                .record_violation(NewViolation {
                    partner_id: service.partner_id,
                    service_id: Some(service.id),
                    module_version_id: message.module_version_id,
                    kind,
                    rule,
                    detail: &blocked.to_string(),
                    excerpt: Some(&message.text),
                })
                .await?;
        }
        return Err(blocked.into());
    }
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
            service_id, subscription_id, price_fen, sender, basis, mo_id, content_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $12, $12, $13, $14, $15, $16, $17, $18, $19)
         RETURNING id",
    )
    .bind(message.partner_id)
    .bind(&message.service)
    .bind(&number)
    .bind(&operator)
    .bind(&message.text)
    .bind(&sha)
    .bind(i64::try_from(segments).unwrap_or(i64::MAX))
    .bind(message.charge_plan.as_str())
    .bind(i64::from(message.charge_plan == ChargePlan::Test))
    .bind(release)
    .bind(expires_at)
    .bind(now)
    .bind(message.service_id)
    .bind(match message.basis {
        Basis::Subscription(id) | Basis::Farewell(id) => Some(id),
        Basis::Notice { subscription_id, .. } => subscription_id,
        _ => None,
    })
    .bind(message.price_fen)
    .bind(&message.sender)
    .bind(message.basis.as_str())
    .bind(match message.basis {
        Basis::Reply(mo) => Some(mo),
        Basis::Notice { mo_id, .. } => mo_id,
        _ => None,
    })
    .bind(content_key(&message.text))
    .fetch_one(&mut *tx)
    .await?;
    for seq in 1..=i64::try_from(segments).unwrap_or(1) {
        sqlx::query(
            "INSERT INTO message_segments (message_id, seq, operator, status) VALUES ($1, $2, $3, 'queued')",
        )
        .bind(id)
        .bind(seq)
        .bind(&operator)
        .execute(&mut *tx)
        .await?;
    }
    let detail = (release > now).then(|| "held for quiet hours".to_string());
    event(&mut tx, id, "queued", detail.as_deref(), now).await?;
    tx.commit().await?;
    Ok(id)
}

/// The check and the caps, inside the transaction that writes the MT.
async fn check_basis(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    gate: Gate<'_>,
    message: &NewMessage,
    number: &str,
    service: Option<&LiveService>,
    now: i64,
) -> Result<(), Blocked> {
    if let Some(service) = service {
        // Again under lock: a suspension that committed since the first look wins.
        gate.compliance
            .may_send_in(tx, service.partner_id, service.id)
            .await?;
    }
    match message.basis {
        Basis::Subscription(subscription_id) => {
            let service = service.ok_or(Blocked::UnknownService)?;
            let row: Option<(String, i64, String)> = sqlx::query_as(
                "SELECT msisdn, service_id, status FROM subscriptions WHERE id = $1",
            )
            .bind(subscription_id)
            .fetch_optional(&mut **tx)
            .await?;
            match row {
                Some((msisdn, service_id, status))
                    if msisdn == number && service_id == service.id && status == "active" => {}
                _ => {
                    return Err(Blocked::NoOptIn(format!(
                        "{number} holds no active subscription to service {}",
                        service.code
                    )));
                }
            }
            let cap = gate.compliance.monthly_cap(service);
            gate.compliance
                .take_caps_in(tx, service.partner_id, Some((subscription_id, cap)), now)
                .await
        }
        Basis::Reply(mo_id) => {
            let service = service.ok_or(Blocked::UnknownService)?;
            let row: Option<(String, Option<i64>, i64)> = sqlx::query_as(
                "SELECT source, service_id, received_at FROM mo_messages WHERE id = $1",
            )
            .bind(mo_id)
            .fetch_optional(&mut **tx)
            .await?;
            match row {
                Some((source, Some(service_id), received_at))
                    if source == number
                        && service_id == service.id
                        && now - received_at <= REPLY_WINDOW_MS => {}
                _ => {
                    return Err(Blocked::NoOptIn(format!(
                        "{number} sent no recent message to service {} to reply to",
                        service.code
                    )));
                }
            }
            gate.compliance
                .take_caps_in(tx, service.partner_id, None, now)
                .await
        }
        Basis::Notice {
            mo_id,
            subscription_id,
        } => {
            if message.charge_plan != ChargePlan::Free || message.price_fen != 0 {
                return Err(Blocked::NoOptIn("platform notices are always free".into()));
            }
            let from_mo = match mo_id {
                Some(id) => {
                    sqlx::query_as::<_, (String,)>("SELECT source FROM mo_messages WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_some_and(|(source,)| source == number)
                }
                None => false,
            };
            let about_subscription = match subscription_id {
                Some(id) => {
                    sqlx::query_as::<_, (String,)>("SELECT msisdn FROM subscriptions WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut **tx)
                        .await?
                        .is_some_and(|(msisdn,)| msisdn == number)
                }
                None => false,
            };
            if from_mo {
                Ok(())
            } else if about_subscription {
                // Not asked for by the recipient's own message: capped per number
                // and day, so no partner can make the platform text anyone at will.
                gate.compliance.take_notice_cap_in(tx, number, now).await
            } else {
                Err(Blocked::NoOptIn(format!(
                    "a notice must answer a message or subscription of {number}"
                )))
            }
        }
        Basis::Farewell(subscription_id) => {
            let service = service.ok_or(Blocked::UnknownService)?;
            if message.charge_plan != ChargePlan::Free || message.price_fen != 0 {
                return Err(Blocked::NoOptIn("a farewell is always free".into()));
            }
            let row: Option<(String, i64, String, Option<i64>)> = sqlx::query_as(
                "SELECT msisdn, service_id, status, ended_at FROM subscriptions WHERE id = $1",
            )
            .bind(subscription_id)
            .fetch_optional(&mut **tx)
            .await?;
            let just_left = matches!(
                row,
                Some((msisdn, service_id, status, Some(ended_at)))
                    if msisdn == number && service_id == service.id && status == "cancelled"
                        && now - ended_at <= REPLY_WINDOW_MS
            );
            if !just_left {
                return Err(Blocked::NoOptIn(format!(
                    "{number} did not just leave service {}",
                    service.code
                )));
            }
            let (sent,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM messages WHERE subscription_id = $1 AND basis = 'farewell'",
            )
            .bind(subscription_id)
            .fetch_one(&mut **tx)
            .await?;
            if sent > 0 {
                return Err(Blocked::NoOptIn(
                    "the farewell of this subscription was already sent".into(),
                ));
            }
            gate.compliance
                .take_caps_in(tx, service.partner_id, None, now)
                .await
        }
        Basis::Test => {
            let listed = gate
                .relay
                .test_numbers
                .iter()
                .any(|n| super::routing::normalize_msisdn(n).is_ok_and(|n| n == number));
            if message.charge_plan == ChargePlan::Test && listed {
                Ok(())
            } else {
                Err(Blocked::NoOptIn(format!(
                    "{number} is not a test number, or the MT is not marked as a test"
                )))
            }
        }
    }
}

/// Queue a test MT (agreement 7.3): only to a number in `[relay] test_numbers`,
/// marked as test and never billed, through the same outbox as everything else.
pub async fn enqueue_test(
    store: &Store,
    gate: Gate<'_>,
    to: &str,
    text: &str,
    operator: Option<String>,
) -> Result<i64, OutboxError> {
    let number = super::routing::normalize_msisdn(to)?;
    let listed = gate
        .relay
        .test_numbers
        .iter()
        .any(|n| super::routing::normalize_msisdn(n).is_ok_and(|n| n == number));
    if !listed {
        return Err(OutboxError::NotATestNumber(number));
    }
    let message = NewMessage {
        partner_id: None,
        service: None,
        service_id: None,
        recipient: number,
        text: text.to_string(),
        charge_plan: ChargePlan::Test,
        price_fen: 0,
        basis: Basis::Test,
        sender: None,
        module_version_id: None,
        operator,
    };
    enqueue(store, gate, message).await
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
