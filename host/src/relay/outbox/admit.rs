//! The gate for MTs that each carry their own basis: module replies, welcome and
//! farewell texts, platform notices, test sends, 包月 billing records (R-3.1, R-3.2,
//! records: issue 16 item 4, [`super::records`]).
//!
//! A batch is admitted in two steps. Outside the write transaction, each MT is
//! routed and its text checked against the content policy (a refusal is recorded
//! as a violation by compliance on its own connection, so it cannot wait on the
//! write lock). Then one write transaction checks, for the whole batch, that each
//! partner and service may send (once per pair), each MT's opt-in basis against
//! stored records, and the caps, and writes every admitted MT with its segments
//! and first event. Refusals of opt-in and caps are recorded as violations in the
//! same transaction. The outcome is per MT: its id, or why it was refused.

use std::collections::HashMap;

use super::{Basis, ChargePlan, NewMessage, OutboxError, content_key, event, fingerprint_in};
use crate::compliance::{Blocked, Compliance, NewViolation, day_key, month_key};
use crate::relay::routing::Routes;
use crate::relay::settings::RelayConfig;
use crate::services::LiveService;
use crate::store::{Store, StoreError, now_ms};

/// What the gate needs besides the store: routing, `[relay]` settings (validity,
/// test numbers) and the compliance service whose rules it applies.
#[derive(Debug, Clone, Copy)]
pub struct Gate<'a> {
    pub routes: &'a Routes,
    pub relay: &'a RelayConfig,
    pub compliance: &'a Compliance,
}

impl Gate<'_> {
    /// Validity (R-8.4's other half): an MT released at `release_at` (Unix ms)
    /// expires `[relay] validity_secs` later.
    pub(super) fn expires_at(&self, release_at: i64) -> i64 {
        let validity =
            i64::try_from(self.relay.validity_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        release_at.saturating_add(validity)
    }

    /// Whether `number` (normalised) is in `[relay] test_numbers`.
    pub(super) fn is_test_number(&self, number: &str) -> bool {
        self.relay
            .test_numbers
            .iter()
            .any(|n| crate::relay::routing::normalize_msisdn(n).is_ok_and(|n| n == number))
    }
}

/// How long an MT may wait for a reply basis: a module's answer to an MO older
/// than this is no longer a reply.
const REPLY_WINDOW_MS: i64 = 24 * 3600 * 1000;

/// What became of one MT handed to the gate: its `messages.id`, or why not.
pub type Outcome = Result<i64, OutboxError>;

/// An MT that passed the checks made outside the transaction.
struct Ready {
    message: NewMessage,
    /// Normalised recipient and its operator.
    number: String,
    operator: String,
    /// The service of partner content (index into the batch's services).
    service: Option<usize>,
    segments: usize,
    sha256: String,
    release_at: i64,
    expires_at: i64,
}

/// Queue a batch of MTs through every rule (see the module docs); one outcome per
/// MT, in order. An error of the store aborts the whole batch (nothing written).
pub async fn admit(
    store: &Store,
    gate: Gate<'_>,
    batch: Vec<NewMessage>,
) -> Result<Vec<Outcome>, OutboxError> {
    let now = now_ms();
    let mut services: Vec<LiveService> = Vec::new();
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
    let mut ready: Vec<(usize, Ready)> = Vec::new();
    for (i, message) in batch.into_iter().enumerate() {
        match prepare(store, gate, message, &mut services, now).await {
            Ok(r) => {
                outcomes.push(None);
                ready.push((i, r));
            }
            Err(OutboxError::Blocked(Blocked::Store(e))) | Err(OutboxError::Store(e)) => {
                return Err(e.into());
            }
            Err(refused) => outcomes.push(Some(Err(refused))),
        }
    }
    if !ready.is_empty() {
        let month = month_key(now);
        let day = day_key(now);
        let mut tx = store.begin_write().await?;
        // once per partner and service, under lock: a suspension that
        // committed since the first look wins.
        let mut refused: HashMap<usize, Option<Blocked>> = HashMap::new();
        for (_, r) in &ready {
            if let Some(s) = r.service
                && !refused.contains_key(&s)
            {
                let service = &services[s];
                let verdict = match gate
                    .compliance
                    .may_send_in(&mut tx, service.partner_id, service.id)
                    .await
                {
                    Ok(()) => None,
                    Err(Blocked::Store(e)) => return Err(e.into()),
                    Err(blocked) => Some(blocked),
                };
                refused.insert(s, verdict);
            }
        }
        for (i, r) in ready {
            let service = r.service.map(|s| &services[s]);
            if let Some(Some(blocked)) = r.service.and_then(|s| refused.get(&s)) {
                outcomes[i] = Some(Err(same(blocked).into()));
                continue;
            }
            let caps = service.map(|s| gate.compliance.caps(s)).unwrap_or_default();
            let checked = match check_basis(&mut tx, gate, &r, service, now).await {
                Ok(counted_under) => match service {
                    Some(service) => {
                        caps.take_one_in(&mut tx, service.partner_id, counted_under, &month, &day)
                            .await
                    }
                    None => Ok(()),
                },
                Err(blocked) => Err(blocked),
            };
            match checked {
                Ok(()) => {
                    let id = write(&mut tx, &r, now).await?;
                    outcomes[i] = Some(Ok(id));
                }
                Err(Blocked::Store(e)) => return Err(e.into()),
                Err(blocked) => {
                    if let Some(service) = service {
                        record_refusal(&mut tx, gate, service, &r.message, &blocked).await?;
                    }
                    outcomes[i] = Some(Err(blocked.into()));
                }
            }
        }
        tx.commit().await?;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or(Err(OutboxError::Store(StoreError::Corrupt(
                "no outcome".into(),
            ))))
        })
        .collect())
}

/// Queue one MT: a batch of one through [`admit`].
pub async fn enqueue(
    store: &Store,
    gate: Gate<'_>,
    message: NewMessage,
) -> Result<i64, OutboxError> {
    admit(store, gate, vec![message])
        .await?
        .pop()
        .unwrap_or(Err(OutboxError::EmptyText))
}

/// Queue a test MT (agreement 7.3): only to a number in `[relay] test_numbers`,
/// marked as test and never billed, through the same gate as everything else.
pub async fn enqueue_test(
    store: &Store,
    gate: Gate<'_>,
    to: &str,
    text: &str,
    operator: Option<String>,
) -> Result<i64, OutboxError> {
    let number = super::super::routing::normalize_msisdn(to)?;
    if !gate.is_test_number(&number) {
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
        input_sha256: None,
        operator,
    };
    enqueue(store, gate, message).await
}

/// Route, size and check the content of one MT; find its service.
async fn prepare(
    store: &Store,
    gate: Gate<'_>,
    mut message: NewMessage,
    services: &mut Vec<LiveService>,
    now: i64,
) -> Result<Ready, OutboxError> {
    if message.text.trim().is_empty() {
        return Err(OutboxError::EmptyText);
    }
    let (number, routed) = gate.routes.route(&message.recipient)?;
    let operator = match &message.operator {
        Some(name) if gate.routes.has_operator(name) => name.clone(),
        Some(name) => return Err(OutboxError::UnknownOperator(name.clone())),
        None => routed,
    };
    let alphabet = gate.routes.alphabet(&operator);
    let segments = tongdao_link::encode::segment_count_in(&message.text, alphabet);
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
        (true, Some(id)) => match services.iter().position(|s| s.id == id) {
            Some(i) => Some(i),
            None => {
                let live = crate::services::live(store, id)
                    .await
                    .map_err(Blocked::from)?
                    .ok_or(Blocked::UnknownService)?;
                services.push(live);
                Some(services.len() - 1)
            }
        },
    };
    match service.map(|i| &services[i]) {
        None => message.text = gate.compliance.check_invisible(&message.text)?,
        Some(service) => {
            if Some(service.partner_id) != message.partner_id {
                return Err(
                    Blocked::NoOptIn("the service belongs to another partner".into()).into(),
                );
            }
            message.text = gate
                .compliance
                .check_content(service, message.module_version_id, &message.text)
                .await?;
        }
    }
    let (segments, sha256) = fingerprint_in(&message.text, alphabet);
    // Quiet hours hold pushes only; answers to the user go at once.
    let release_at = match message.basis {
        Basis::Subscription(_) => gate.compliance.push_release_at(now),
        _ => now,
    };
    Ok(Ready {
        message,
        number,
        operator,
        service,
        segments,
        sha256,
        release_at,
        expires_at: gate.expires_at(release_at),
    })
}

/// The check inside the transaction that writes the MT. Ok: the subscription
/// the MT counts under for the monthly cap, if any.
async fn check_basis(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    gate: Gate<'_>,
    r: &Ready,
    service: Option<&LiveService>,
    now: i64,
) -> Result<Option<i64>, Blocked> {
    let message = &r.message;
    let number = r.number.as_str();
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
                    if msisdn == number && service_id == service.id && status == "active" =>
                {
                    Ok(Some(subscription_id))
                }
                _ => Err(Blocked::NoOptIn(format!(
                    "{number} holds no active subscription to service {}",
                    service.code
                ))),
            }
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
                        "{number} sent no recent message to service {}",
                        service.code
                    )));
                }
            }
            // A charged reply to a subscriber is an MT under their subscription: it
            // counts against the same monthly cap as the pushes. The free
            // welcome does not.
            if message.charge_plan == ChargePlan::Free {
                return Ok(None);
            }
            let subscription: Option<(i64,)> = sqlx::query_as(
                "SELECT id FROM subscriptions WHERE service_id = $1 AND msisdn = $2 AND status = 'active'",
            )
            .bind(service.id)
            .bind(number)
            .fetch_optional(&mut **tx)
            .await?;
            Ok(subscription.map(|(id,)| id))
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
                Ok(None)
            } else if about_subscription {
                // Not asked for by the recipient's own message: capped per number
                // and day, so no partner can make the platform text anyone at will.
                gate.compliance.take_notice_cap_in(tx, number, now).await?;
                Ok(None)
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
            // The subscription has ended: only the partner's day counts it.
            Ok(None)
        }
        Basis::FeeRecord {
            charge_event_id,
            subscription_id,
        } => {
            // The record carries exactly one monthly charge event of this number's
            // subscription, at its amount, once (the unique index on
            // `messages.charge_event_id` holds it across replicas too).
            let row: Option<(String, Option<i64>, i64, String)> = sqlx::query_as(
                "SELECT e.kind, e.subscription_id, e.amount_fen, s.msisdn
                 FROM charge_events e JOIN subscriptions s ON s.id = e.subscription_id
                 WHERE e.id = $1",
            )
            .bind(charge_event_id)
            .fetch_optional(&mut **tx)
            .await?;
            let carries = matches!(
                &row,
                Some((kind, Some(sub), amount, msisdn))
                    if kind == "monthly" && *sub == subscription_id && msisdn == number
                        && *amount == message.price_fen && *amount > 0
            );
            if !carries || message.charge_plan != ChargePlan::Monthly {
                return Err(Blocked::NoOptIn(format!(
                    "a billing record must carry a monthly charge event of {number} at its amount"
                )));
            }
            let (sent,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM messages WHERE charge_event_id = $1")
                    .bind(charge_event_id)
                    .fetch_one(&mut **tx)
                    .await?;
            if sent > 0 {
                return Err(Blocked::NoOptIn(format!(
                    "charge event {charge_event_id} already has its billing record"
                )));
            }
            // Never shown to the user: no cap counts it.
            Ok(None)
        }
        Basis::Test => {
            if message.charge_plan == ChargePlan::Test && gate.is_test_number(number) {
                Ok(None)
            } else {
                Err(Blocked::NoOptIn(format!(
                    "{number} is not a test number, or the MT is not marked as a test"
                )))
            }
        }
    }
}

/// Refused opt-in and over-cap MTs are violations of the partner, recorded
/// with the refusal. The rule names are those the set-based push records.
async fn record_refusal(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    gate: Gate<'_>,
    service: &LiveService,
    message: &NewMessage,
    blocked: &Blocked,
) -> Result<(), OutboxError> {
    let Some((kind, rule)) = violation_rule(blocked) else {
        return Ok(());
    };
    gate.compliance
        .record_violation_in(
            tx,
            NewViolation {
                partner_id: service.partner_id,
                service_id: Some(service.id),
                module_version_id: message.module_version_id,
                kind,
                rule,
                detail: &blocked.to_string(),
                excerpt: Some(&message.text),
            },
        )
        .await?;
    Ok(())
}

/// The same suspension refusal again, for the next MT of that service.
fn same(blocked: &Blocked) -> Blocked {
    match blocked {
        Blocked::PartnerNotActive(s) => Blocked::PartnerNotActive(s.clone()),
        Blocked::ServiceNotApproved(s) => Blocked::ServiceNotApproved(s.clone()),
        _ => Blocked::UnknownService,
    }
}

/// The violation kind and rule of a refusal, if it is one.
pub(super) fn violation_rule(blocked: &Blocked) -> Option<(&'static str, &'static str)> {
    match blocked {
        Blocked::NoOptIn(_) => Some(("opt-in", "no-subscription")),
        Blocked::MonthlyCap(_) => Some(("cap", "monthly-over-count")),
        Blocked::DailyCap(_) => Some(("cap", "daily-over-count")),
        _ => None,
    }
}

/// Write one admitted MT: the message, its segments, its first event.
async fn write(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &Ready,
    now: i64,
) -> Result<i64, OutboxError> {
    let message = &r.message;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
            service_id, subscription_id, price_fen, sender, basis, mo_id, content_key,
            module_version_id, module_sha256, input_sha256, charge_event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'queued', 0, $10, $11, $12, $12, $13, $14, $15, $16, $17, $18, $19,
            $20, (SELECT v.sha256 FROM module_versions v WHERE v.id = $20), $21, $22)
         RETURNING id",
    )
    .bind(message.partner_id)
    .bind(&message.service)
    .bind(&r.number)
    .bind(&r.operator)
    .bind(&message.text)
    .bind(&r.sha256)
    .bind(i64::try_from(r.segments).unwrap_or(i64::MAX))
    .bind(message.charge_plan.as_str())
    .bind(i64::from(message.charge_plan == ChargePlan::Test))
    .bind(r.release_at)
    .bind(r.expires_at)
    .bind(now)
    .bind(message.service_id)
    .bind(match message.basis {
        Basis::Subscription(id)
        | Basis::Farewell(id)
        | Basis::FeeRecord {
            subscription_id: id,
            ..
        } => Some(id),
        Basis::Notice {
            subscription_id, ..
        } => subscription_id,
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
    .bind(message.module_version_id)
    .bind(&message.input_sha256)
    .bind(match message.basis {
        Basis::FeeRecord {
            charge_event_id, ..
        } => Some(charge_event_id),
        _ => None,
    })
    .fetch_one(&mut **tx)
    .await?;
    for seq in 1..=i64::try_from(r.segments).unwrap_or(1) {
        sqlx::query(
            "INSERT INTO message_segments (message_id, seq, operator, status) VALUES ($1, $2, $3, 'queued')",
        )
        .bind(id)
        .bind(seq)
        .bind(&r.operator)
        .execute(&mut **tx)
        .await?;
    }
    let detail = (r.release_at > now).then(|| "held for quiet hours".to_string());
    event(tx, id, "queued", detail.as_deref(), now).await?;
    Ok(id)
}
