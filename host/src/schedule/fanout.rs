//! Fan-out: a run's bulletin to the active subscriptions of its
//! service, one batch per transaction, never the whole list in memory.
//!
//! Each batch, in one write transaction:
//! 1. re-takes the run's claim (it must still be this owner's and `running`; on
//!    PostgreSQL the row lock also keeps any other worker out until commit),
//! 2. reads the next subscriptions by keyset (`id > cursor`, up to `high_water`)
//!    with the subscriber's attribute the bulletin is keyed on,
//! 3. maps each to its variant, skips those refused by policy or over a cap,
//! 4. writes the outbox rows with multi-row INSERTs (messages; then segments, the
//!    first event and the cap counters set-based from the rows just written),
//! 5. moves the cursor and the counters.
//!
//! A crash anywhere rolls the batch back whole; the resumed run starts at the
//! stored cursor. `UNIQUE (push_run_id, subscription_id)` on `messages` is the
//! last guard: a subscription never gets a run's bulletin twice.

use std::collections::HashMap;
use std::fmt::Write;

use serde::Serialize;

use super::ScheduleError;
use crate::compliance::{Blocked, Compliance};
use crate::relay::ChargePlan;
use crate::relay::outbox::{content_key, fingerprint};
use crate::relay::routing::Routes;
use crate::runtime::BulletinContent;
use crate::store::Store;

/// Rows per INSERT statement: well under SQLite's and PostgreSQL's bind limits.
const ROWS_PER_INSERT: usize = 1000;

/// The service terms a run sends under, settled when the run starts.
#[derive(Debug, Clone)]
pub struct Terms {
    pub partner_id: i64,
    pub service_id: i64,
    /// The service code (`messages.service`).
    pub service_code: String,
    pub charge_plan: ChargePlan,
    /// Charged per MT: the per-message price, else 0.
    pub price_fen: i64,
    /// Source address (the service's own number); None: the operator's default.
    pub sender: Option<String>,
    /// Most MTs one subscription may get in a month.
    pub monthly_cap: Option<i64>,
    /// Most MTs the partner may have queued in a day.
    pub daily_cap: Option<i64>,
}

/// One text of the bulletin, with what the outbox row needs.
#[derive(Debug, Clone)]
pub struct Variant {
    pub key: String,
    pub text: String,
    pub sha256: String,
    /// `messages.content_key` (the fee-only detector groups by it).
    pub content_key: String,
    pub segments: i64,
    /// Refused by the content policy: its subscribers get nothing.
    pub blocked: bool,
}

/// Everything a batch needs, built once per run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_id: i64,
    pub owner: String,
    pub terms: Terms,
    /// The subscriber attribute the bulletin is keyed on (None: one text for all).
    pub attribute: Option<String>,
    pub variants: Vec<Variant>,
    by_key: HashMap<String, usize>,
    /// The variant for subscribers whose attribute has no variant.
    pub fallback: Option<usize>,
    pub high_water: i64,
    pub batch: u32,
    pub lease_ms: i64,
    /// How long an MT stays valid after its release (`[relay] validity_secs`).
    pub validity_ms: i64,
}

/// The key the fallback text has in `blocked_variants`.
pub const FALLBACK_KEY: &str = "*fallback";
/// The key of a single-text bulletin.
pub const SINGLE_KEY: &str = "*single";

impl Plan {
    /// Build the plan of a run from its stored bulletin. `blocked` are the variant
    /// keys the content policy refused.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        run_id: i64,
        owner: String,
        terms: Terms,
        content: &BulletinContent,
        blocked: &[String],
        high_water: i64,
        batch: u32,
        lease_ms: i64,
        validity_ms: i64,
    ) -> Self {
        let variant = |key: &str, text: &str| {
            let (segments, sha256) = fingerprint(text);
            Variant {
                key: key.to_string(),
                text: text.to_string(),
                sha256,
                content_key: content_key(text),
                segments: i64::try_from(segments).unwrap_or(i64::MAX),
                blocked: blocked.iter().any(|b| b == key),
            }
        };
        let (attribute, mut variants, fallback) = match content {
            BulletinContent::Single { text } => (None, vec![variant(SINGLE_KEY, text)], Some(0)),
            BulletinContent::Keyed {
                attribute,
                variants,
                fallback,
            } => {
                let mut list: Vec<Variant> = variants.iter().map(|(k, t)| variant(k, t)).collect();
                let fallback = fallback.as_ref().map(|t| {
                    list.push(variant(FALLBACK_KEY, t));
                    list.len() - 1
                });
                (Some(attribute.clone()), list, fallback)
            }
        };
        variants.shrink_to_fit();
        let mut by_key = HashMap::new();
        if attribute.is_some() {
            for (i, v) in variants.iter().enumerate() {
                if Some(i) != fallback {
                    // The first of duplicate keys wins, as in `BulletinContent::text_for`.
                    by_key.entry(v.key.clone()).or_insert(i);
                }
            }
        }
        Self {
            run_id,
            owner,
            terms,
            attribute,
            variants,
            by_key,
            fallback,
            high_water,
            batch,
            lease_ms,
            validity_ms,
        }
    }

    /// The variant of a subscriber whose attribute has `value`.
    fn variant_for(&self, value: Option<&str>) -> Option<usize> {
        if self.attribute.is_none() {
            return Some(0);
        }
        value
            .and_then(|v| self.by_key.get(v).copied())
            .or(self.fallback)
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BatchCounts {
    /// Active subscriptions looked at.
    pub subscribers: i64,
    /// MTs written to the outbox.
    pub queued: i64,
    /// Their variant was refused by the content policy.
    pub blocked: i64,
    /// Over the monthly cap of the subscription or the partner's daily cap.
    pub held: i64,
    /// No variant for their attribute and no fallback, or an unroutable number.
    pub skipped: i64,
}

/// How a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// More subscriptions may follow.
    More(BatchCounts),
    /// The last batch: every subscription up to `high_water` is done.
    Done(BatchCounts),
    /// The run is no longer this owner's (lease lost, cancelled): stop at once.
    Lost,
    /// The partner or service may not send: nothing was written.
    Blocked(String),
}

/// Clocks and cap keys of one batch, from the caller so tests can pin them.
#[derive(Debug, Clone)]
pub struct BatchTime {
    pub now: i64,
    /// When the MTs may leave (quiet hours).
    pub release_at: i64,
    /// `subscription_usage.month` and `partner_daily_usage.day` of `now`.
    pub month: String,
    pub day: String,
}

/// Fan out the next batch of the run.
pub async fn step(
    store: &Store,
    routes: &Routes,
    compliance: &Compliance,
    plan: &Plan,
    time: &BatchTime,
) -> Result<Step, ScheduleError> {
    let now = time.now;
    let mut tx = store.begin_write().await?;
    let cursor: Option<(i64,)> = sqlx::query_as(
        "UPDATE push_runs SET lease_until = $3, release_at = $4, updated_at = $5
         WHERE id = $1 AND owner = $2 AND status = 'running' RETURNING cursor_id",
    )
    .bind(plan.run_id)
    .bind(&plan.owner)
    .bind(now.saturating_add(plan.lease_ms))
    .bind(time.release_at)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((cursor,)) = cursor else {
        tx.rollback().await?;
        return Ok(Step::Lost);
    };
    // Under the lock: a suspension either committed before (nothing is written)
    // or waits for this batch and then holds its rows with the partner's others.
    match compliance
        .may_send_in(&mut tx, plan.terms.partner_id, plan.terms.service_id)
        .await
    {
        Ok(()) => {}
        Err(Blocked::Store(e)) => return Err(e.into()),
        Err(blocked) => {
            tx.rollback().await?;
            return Ok(Step::Blocked(blocked.to_string()));
        }
    }

    let subscriptions: Vec<(i64, String, Option<String>)> = match &plan.attribute {
        Some(attribute) => {
            sqlx::query_as(
                "SELECT s.id, s.msisdn, a.value FROM subscriptions s
                 LEFT JOIN subscriber_attributes a
                   ON a.partner_id = s.partner_id AND a.subscriber_id = s.subscriber_id AND a.name = $4
                 WHERE s.service_id = $1 AND s.status = 'active' AND s.id > $2 AND s.id <= $3
                 ORDER BY s.id LIMIT $5",
            )
            .bind(plan.terms.service_id)
            .bind(cursor)
            .bind(plan.high_water)
            .bind(attribute)
            .bind(i64::from(plan.batch))
            .fetch_all(&mut *tx)
            .await?
        }
        None => {
            sqlx::query_as(
                "SELECT id, msisdn, NULL FROM subscriptions
                 WHERE service_id = $1 AND status = 'active' AND id > $2 AND id <= $3
                 ORDER BY id LIMIT $4",
            )
            .bind(plan.terms.service_id)
            .bind(cursor)
            .bind(plan.high_water)
            .bind(i64::from(plan.batch))
            .fetch_all(&mut *tx)
            .await?
        }
    };
    let Some(&(last_id, _, _)) = subscriptions.last() else {
        tx.commit().await?;
        return Ok(Step::Done(BatchCounts::default()));
    };

    let monthly_usage: HashMap<i64, i64> = match plan.terms.monthly_cap {
        Some(_) => sqlx::query_as::<_, (i64, i64)>(
            "SELECT subscription_id, messages FROM subscription_usage
             WHERE month = $1 AND subscription_id > $2 AND subscription_id <= $3",
        )
        .bind(&time.month)
        .bind(cursor)
        .bind(last_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect(),
        None => HashMap::new(),
    };
    // The partner's row is locked (PostgreSQL) by the no-op upsert, so two runs
    // of one partner cannot both spend the last of the day's allowance.
    let mut daily_left = match plan.terms.daily_cap {
        Some(cap) => {
            let (used,): (i64,) = sqlx::query_as(
                "INSERT INTO partner_daily_usage (partner_id, day, messages) VALUES ($1, $2, 0)
                 ON CONFLICT (partner_id, day) DO UPDATE SET messages = partner_daily_usage.messages
                 RETURNING messages",
            )
            .bind(plan.terms.partner_id)
            .bind(&time.day)
            .fetch_one(&mut *tx)
            .await?;
            Some((cap - used).max(0))
        }
        None => None,
    };

    let mut counts = BatchCounts {
        subscribers: i64::try_from(subscriptions.len()).unwrap_or(i64::MAX),
        ..BatchCounts::default()
    };
    // (subscription id, number, operator index, variant index)
    let mut rows: Vec<(i64, String, usize, usize)> = Vec::with_capacity(subscriptions.len());
    let mut operators: Vec<String> = Vec::new();
    for (id, msisdn, value) in &subscriptions {
        let Some(v) = plan.variant_for(value.as_deref()) else {
            counts.skipped += 1;
            continue;
        };
        if plan.variants[v].blocked {
            counts.blocked += 1;
            continue;
        }
        // Routed numbers are 11 ASCII digits (written into the SQL as they are).
        let Some((number, operator)) = routes
            .route(msisdn)
            .ok()
            .filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            counts.skipped += 1;
            continue;
        };
        if let Some(cap) = plan.terms.monthly_cap
            && monthly_usage.get(id).copied().unwrap_or(0) >= cap
        {
            counts.held += 1;
            continue;
        }
        if let Some(left) = daily_left.as_mut() {
            if *left == 0 {
                counts.held += 1;
                continue;
            }
            *left -= 1;
        }
        let op = match operators.iter().position(|o| *o == operator) {
            Some(i) => i,
            None => {
                operators.push(operator);
                operators.len() - 1
            }
        };
        rows.push((*id, number, op, v));
    }

    let expires_at = time.release_at.saturating_add(plan.validity_ms);
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let written = insert_messages(&mut tx, plan, &operators, chunk, time, expires_at).await?;
        if written.is_empty() {
            continue;
        }
        counts.queued += i64::try_from(written.len()).unwrap_or(i64::MAX);
        let by_subscription: HashMap<i64, (usize, usize)> = chunk
            .iter()
            .map(|(id, _, op, v)| (*id, (*op, *v)))
            .collect();
        follow_up(&mut tx, plan, &operators, &by_subscription, &written, time).await?;
    }
    if counts.queued > 0 {
        sqlx::query(
            "INSERT INTO partner_daily_usage (partner_id, day, messages) VALUES ($1, $2, $3)
             ON CONFLICT (partner_id, day) DO UPDATE SET messages = partner_daily_usage.messages + $3",
        )
        .bind(plan.terms.partner_id)
        .bind(&time.day)
        .bind(counts.queued)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE push_runs SET cursor_id = $2, subscribers = subscribers + $3, queued = queued + $4,
            blocked = blocked + $5, held = held + $6, skipped = skipped + $7
         WHERE id = $1",
    )
    .bind(plan.run_id)
    .bind(last_id)
    .bind(counts.subscribers)
    .bind(counts.queued)
    .bind(counts.blocked)
    .bind(counts.held)
    .bind(counts.skipped)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    if subscriptions.len() < plan.batch as usize || last_id >= plan.high_water {
        Ok(Step::Done(counts))
    } else {
        Ok(Step::More(counts))
    }
}

// Per-row values are written into the SQL as integer and digit literals, not bound:
// SQLite looks each named parameter up by a linear scan, so a statement with
// thousands of `$n` costs quadratic time to prepare (measured: 23 µs per row at
// 1,000 rows). Only values the host made itself are inlined (ids, times, counts,
// and routed numbers, which are 11 ASCII digits); all text is bound, once per
// statement, and rows refer to it by number.

/// One multi-row INSERT into `messages`; returns (message id, subscription id) of
/// the rows written (a subscription that already has this run's MT is left out by
/// the unique key).
async fn insert_messages(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    plan: &Plan,
    operators: &[String],
    rows: &[(i64, String, usize, usize)],
    time: &BatchTime,
    expires_at: i64,
) -> Result<Vec<(i64, i64)>, ScheduleError> {
    // $1 service code, $2 charge plan, $3 sender; then 3 per variant; then operators.
    const SHARED: usize = 3;
    let variant_base = SHARED + 1;
    let operator_base = variant_base + 3 * plan.variants.len();
    let terms = &plan.terms;
    // The same for every row of the run (integers the host made).
    let common_a = format!("{},$1", terms.partner_id);
    let common_b = format!(
        "$2,0,'queued',0,{},{expires_at},{now},{now},{}",
        time.release_at,
        terms.service_id,
        now = time.now,
    );
    let common_c = format!("{},$3,'subscription',{}", terms.price_fen, plan.run_id);
    let mut sql = String::with_capacity(400 + rows.len() * 140);
    sql.push_str(
        "INSERT INTO messages (partner_id, service, recipient, operator, text, content_sha256, segments,
            charge_plan, is_test, status, attempts, next_attempt_at, expires_at, created_at, updated_at,
            service_id, subscription_id, price_fen, sender, basis, push_run_id, content_key) VALUES ",
    );
    for (i, (subscription_id, number, op, v)) in rows.iter().enumerate() {
        let t = variant_base + 3 * v;
        let o = operator_base + op;
        let segments = plan.variants[*v].segments;
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(
            sql,
            "({common_a},'{number}',${o},${t},${},{segments},{common_b},{subscription_id},{common_c},${})",
            t + 1,
            t + 2,
        );
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING id, subscription_id");
    // Every statement's text is different: not worth a cached statement.
    let mut query = sqlx::query_as::<_, (i64, i64)>(&sql)
        .persistent(false)
        .bind(&terms.service_code)
        .bind(terms.charge_plan.as_str())
        .bind(&terms.sender);
    for v in &plan.variants {
        query = query.bind(&v.text).bind(&v.sha256).bind(&v.content_key);
    }
    for o in operators {
        query = query.bind(o);
    }
    Ok(query.fetch_all(&mut **tx).await?)
}

/// Segments, first events and monthly counters of the MTs just written, each one
/// multi-row INSERT.
async fn follow_up(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    plan: &Plan,
    operators: &[String],
    by_subscription: &HashMap<i64, (usize, usize)>,
    written: &[(i64, i64)],
    time: &BatchTime,
) -> Result<(), ScheduleError> {
    let mut sql = String::with_capacity(100 + written.len() * 24);
    sql.push_str("INSERT INTO message_segments (message_id, seq, operator, status) VALUES ");
    let mut first = true;
    for (message_id, subscription_id) in written {
        let (op, v) = by_subscription
            .get(subscription_id)
            .copied()
            .unwrap_or((0, 0));
        for seq in 1..=plan.variants[v].segments {
            if !first {
                sql.push(',');
            }
            first = false;
            let _ = write!(sql, "({message_id},{seq},${},'queued')", op + 1);
        }
    }
    let mut query = sqlx::query(&sql).persistent(false);
    for o in operators {
        query = query.bind(o);
    }
    query.execute(&mut **tx).await?;

    let detail = if time.release_at > time.now {
        format!("push run {}; held for quiet hours", plan.run_id)
    } else {
        format!("push run {}", plan.run_id)
    };
    let mut sql = String::with_capacity(100 + written.len() * 24);
    sql.push_str("INSERT INTO message_events (message_id, status, detail, at) VALUES ");
    for (i, (message_id, _)) in written.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "({message_id},'queued',$1,$2)");
    }
    sqlx::query(&sql)
        .persistent(false)
        .bind(&detail)
        .bind(time.now)
        .execute(&mut **tx)
        .await?;

    let mut sql = String::with_capacity(150 + written.len() * 16);
    sql.push_str("INSERT INTO subscription_usage (subscription_id, month, messages) VALUES ");
    for (i, (_, subscription_id)) in written.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        let _ = write!(sql, "({subscription_id},$1,1)");
    }
    sql.push_str(
        " ON CONFLICT (subscription_id, month) DO UPDATE SET messages = subscription_usage.messages + 1",
    );
    sqlx::query(&sql)
        .persistent(false)
        .bind(&time.month)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
