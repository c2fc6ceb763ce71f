//! Fan-out: a run's bulletin to the active subscriptions of its
//! service, one batch per transaction, never the whole list in memory.
//!
//! Each batch, in one write transaction:
//! 1. re-takes the run's claim (it must still be this owner's and `running`; on
//!    PostgreSQL the row lock also keeps any other worker out until commit),
//! 2. hands the next slice of subscriptions (keyset: `id > cursor`, up to
//!    `high_water`) to the outbox's gate ([`outbox::admit_push_in`]), which
//!    applies every rule (suspension, opt-in, caps, quiet hours, validity) and
//!    writes the MTs set-based in SQL,
//! 3. moves the cursor and the counters.
//!
//! A crash anywhere rolls the batch back whole; the resumed run starts at the
//! stored cursor. `UNIQUE (push_run_id, subscription_id)` on `messages` is the
//! last guard: a subscription never gets a run's bulletin twice.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::ScheduleError;
use crate::compliance::Blocked;
use crate::relay::ChargePlan;
use crate::relay::outbox::{self, CanarySlice, Gate, OutboxError, PushSlice, Variant};
use crate::runtime::BulletinContent;
use crate::services::LiveService;
use crate::store::{Backend, Store};

/// How long a batch waits for SQLite's write lock before the step fails (and the
/// run is taken up again), as `busy_timeout` does for every other writer.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// How long a batch should hold SQLite's write lock while other writers wait for
/// it (ms); the batch is sized from the last one's pace.
const CONTENDED_HOLD_MS: u64 = 50;

/// The smallest batch while other writers wait: below it the statements and the
/// commit of a batch cost more than its rows.
const MIN_BATCH: u32 = 500;

/// SQLite page cache of a connection that fans out, in KiB.
const FANOUT_CACHE_KIB: u32 = 16 * 1024;

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
}

/// Everything a batch needs, built once per run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub run_id: i64,
    pub owner: String,
    pub terms: Terms,
    /// The subscriber attribute the bulletin is keyed on (None: one text for all).
    pub attribute: Option<String>,
    /// The variants are keyed by operator (`tongdao:partner@1.1.0`).
    pub by_operator: bool,
    pub variants: Vec<Variant>,
    /// The variant for subscribers whose attribute has no variant.
    pub fallback: Option<usize>,
    /// The module version that wrote the bulletin.
    pub module_version_id: Option<i64>,
    /// A canary's bulletin for its cohort (issue 17 item 4).
    pub canary: Option<PlanCanary>,
    pub high_water: i64,
    /// Subscriptions the next batch takes: `max_batch` (`[schedule] batch`), less
    /// while other writers wait for SQLite's lock (see [`Held::give_way`]).
    pub batch: u32,
    pub max_batch: u32,
    pub lease_ms: i64,
}

/// A canary's part of a run: its version, cohort and texts.
#[derive(Debug, Clone)]
pub struct PlanCanary {
    pub module_version_id: i64,
    pub percent: u32,
    pub attribute: Option<String>,
    /// The canary's variants are keyed by operator.
    pub by_operator: bool,
    pub variants: Vec<Variant>,
    pub fallback: Option<usize>,
}

/// The texts of a bulletin as the gate writes them: the attribute it is keyed
/// on or whether it is keyed by operator, the variants (refused ones marked), the
/// fallback's index.
struct Texts {
    attribute: Option<String>,
    by_operator: bool,
    variants: Vec<Variant>,
    fallback: Option<usize>,
}

fn variants_of(content: &BulletinContent, blocked: &[String]) -> Texts {
    let variant = |key: &str, text: &str| Variant::new(key, text, blocked.iter().any(|b| b == key));
    let keyed = |variants: &[(String, String)], fallback: &Option<String>| {
        let mut list: Vec<Variant> = variants.iter().map(|(k, t)| variant(k, t)).collect();
        let fallback = fallback.as_ref().map(|t| {
            list.push(variant(FALLBACK_KEY, t));
            list.len() - 1
        });
        (list, fallback)
    };
    let (attribute, mut variants, fallback) = match content {
        BulletinContent::Single { text } => (None, vec![variant(SINGLE_KEY, text)], Some(0)),
        BulletinContent::Keyed {
            attribute,
            variants,
            fallback,
        } => {
            let (list, fallback) = keyed(variants, fallback);
            (Some(attribute.clone()), list, fallback)
        }
        BulletinContent::PerOperator { variants, fallback } => {
            let (list, fallback) = keyed(variants, fallback);
            (None, list, fallback)
        }
    };
    variants.shrink_to_fit();
    Texts {
        attribute,
        by_operator: matches!(content, BulletinContent::PerOperator { .. }),
        variants,
        fallback,
    }
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
        module_version_id: Option<i64>,
        high_water: i64,
        batch: u32,
        lease_ms: i64,
    ) -> Self {
        let Texts {
            attribute,
            by_operator,
            variants,
            fallback,
        } = variants_of(content, blocked);
        Self {
            run_id,
            owner,
            terms,
            attribute,
            by_operator,
            variants,
            fallback,
            module_version_id,
            canary: None,
            high_water,
            batch,
            max_batch: batch,
            lease_ms,
        }
    }

    /// The plan with a canary: the subscriptions of the cohort of `percent`
    /// percent get `content` (with `blocked` refused), written by version
    /// `module_version_id`.
    #[must_use]
    pub fn with_canary(
        mut self,
        module_version_id: i64,
        percent: u32,
        content: &BulletinContent,
        blocked: &[String],
    ) -> Self {
        let Texts {
            attribute,
            by_operator,
            variants,
            fallback,
        } = variants_of(content, blocked);
        self.canary = Some(PlanCanary {
            module_version_id,
            percent,
            attribute,
            by_operator,
            variants,
            fallback,
        });
        self
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

/// Fan out the next batch of the run through the outbox's gate, at `now` (Unix ms).
pub async fn step(
    store: &Store,
    gate: Gate<'_>,
    service: &LiveService,
    plan: &mut Plan,
    now: i64,
) -> Result<Step, ScheduleError> {
    let mut tx = begin_batch(store).await?;
    let lock = Held::now(store);
    if store.backend() == Backend::Sqlite {
        // A batch touches several B-trees per MT; SQLite's default 2 MiB page
        // cache makes a million-row fan-out re-read pages. Per connection, bounded.
        sqlx::query(&format!("PRAGMA cache_size = -{FANOUT_CACHE_KIB}"))
            .execute(&mut *tx)
            .await?;
    }
    let cursor: Option<(i64,)> = sqlx::query_as(
        "UPDATE push_runs SET lease_until = $3, updated_at = $4
         WHERE id = $1 AND owner = $2 AND status = 'running' RETURNING cursor_id",
    )
    .bind(plan.run_id)
    .bind(&plan.owner)
    .bind(now.saturating_add(plan.lease_ms))
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((cursor,)) = cursor else {
        tx.rollback().await?;
        return Ok(Step::Lost);
    };
    let slice = PushSlice {
        run_id: plan.run_id,
        service,
        charge_plan: plan.terms.charge_plan,
        price_fen: plan.terms.price_fen,
        sender: plan.terms.sender.as_deref(),
        module_version_id: plan.module_version_id,
        attribute: plan.attribute.as_deref(),
        by_operator: plan.by_operator,
        variants: &plan.variants,
        fallback: plan.fallback,
        canary: plan.canary.as_ref().map(|c| CanarySlice {
            module_version_id: c.module_version_id,
            percent: c.percent,
            attribute: c.attribute.as_deref(),
            by_operator: c.by_operator,
            variants: &c.variants,
            fallback: c.fallback,
        }),
        after: cursor,
        up_to: plan.high_water,
        limit: plan.batch,
        now,
    };
    let admitted = match outbox::admit_push_in(store, &mut tx, gate, &slice).await {
        Ok(admitted) => admitted,
        Err(OutboxError::Store(e) | OutboxError::Blocked(Blocked::Store(e))) => {
            return Err(e.into());
        }
        // Under the lock: a suspension either committed before (nothing is
        // written) or waits for this batch and then holds its rows.
        Err(refused) => {
            tx.rollback().await?;
            return Ok(Step::Blocked(refused.to_string()));
        }
    };
    let Some(last_id) = admitted.last_id else {
        tx.commit().await?;
        return Ok(Step::Done(BatchCounts::default()));
    };
    let counts = BatchCounts {
        subscribers: admitted.subscribers,
        queued: admitted.queued,
        blocked: admitted.blocked,
        held: admitted.held,
        skipped: admitted.skipped,
    };
    sqlx::query(
        "UPDATE push_runs SET cursor_id = $2, release_at = $3, subscribers = subscribers + $4,
            queued = queued + $5, blocked = blocked + $6, held = held + $7, skipped = skipped + $8
         WHERE id = $1",
    )
    .bind(plan.run_id)
    .bind(last_id)
    .bind(admitted.release_at)
    .bind(counts.subscribers)
    .bind(counts.queued)
    .bind(counts.blocked)
    .bind(counts.held)
    .bind(counts.skipped)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let done = admitted.subscribers < i64::from(plan.batch) || last_id >= plan.high_water;
    if done {
        // The run ends here: nothing to give way to or to size.
        Ok(Step::Done(counts))
    } else {
        plan.batch = lock.give_way(store, plan.batch, plan.max_batch).await;
        Ok(Step::More(counts))
    }
}

/// How long a batch held SQLite's write lock, and whether another writer asked
/// for it meanwhile.
struct Held {
    since: Instant,
    demand: u64,
}

impl Held {
    fn now(store: &Store) -> Self {
        Self {
            since: Instant::now(),
            demand: store.write_demand(),
        }
    }

    /// After a committed batch of `batch` subscriptions, the size of the next (at
    /// most `max_batch`). When another writer began a transaction while this one
    /// held SQLite's write lock (the relay storing receipts and MOs, an API call),
    /// pause as long as the lock was held, so under contention the fan-out takes at
    /// most half of the lock's time, and size the next batch to hold it about
    /// [`CONTENDED_HOLD_MS`]; without contention the batch grows back, doubling.
    ///
    /// Why: an SMSC sends receipts and MOs down the same binds a few at a time and
    /// waits for each answer; each answer waits for the lock, so behind 10,000-MT
    /// batches (~200 ms each, the lock asked for every millisecond) receipts came
    /// in slowly and an MO waited at the SMSC behind them for up to 12.4 s
    /// (1,000,000-subscriber load bench). Not on PostgreSQL, where a batch locks
    /// only its own rows.
    async fn give_way(self, store: &Store, batch: u32, max_batch: u32) -> u32 {
        if store.backend() != Backend::Sqlite {
            return max_batch;
        }
        let held = self.since.elapsed();
        let contended = store.write_demand() != self.demand;
        if contended {
            tokio::time::sleep(held).await;
        }
        next_batch(batch, max_batch, contended.then_some(held))
    }
}

/// The next batch's size after one of `batch` that held the lock for `contended`
/// while other writers waited (`None`: nobody waited): sized to hold it
/// [`CONTENDED_HOLD_MS`] at the last batch's pace, at least [`MIN_BATCH`];
/// uncontended, twice the last; never above `max_batch`.
fn next_batch(batch: u32, max_batch: u32, contended: Option<Duration>) -> u32 {
    match contended {
        None => batch.saturating_mul(2).min(max_batch),
        Some(held) => {
            let held_ms = u64::try_from(held.as_millis()).unwrap_or(u64::MAX).max(1);
            let fitting = u64::from(batch).saturating_mul(CONTENDED_HOLD_MS) / held_ms;
            u32::try_from(fitting)
                .unwrap_or(u32::MAX)
                .clamp(MIN_BATCH.min(max_batch), max_batch)
        }
    }
}

/// A write transaction for one batch. On SQLite the write lock is asked for every
/// millisecond rather than through the busy handler, whose sleeps grow to 100 ms:
/// a batch is one big writer among the relay's many small ones, and with growing
/// sleeps it kept losing the lock to them (measured: 1,000,000 queued in 13 s alone,
/// 64 s while two binds sent).
async fn begin_batch(
    store: &Store,
) -> Result<sqlx::Transaction<'static, sqlx::Any>, ScheduleError> {
    if store.backend() != Backend::Sqlite {
        return Ok(store.begin_write().await?);
    }
    let mut tx = store.pool().begin().await?;
    sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *tx)
        .await?;
    let deadline = Instant::now() + LOCK_WAIT;
    let taken = loop {
        // The same lock-taking write as `Store::begin_write`.
        match sqlx::query("UPDATE settings SET value = value WHERE 1 = 0")
            .execute(&mut *tx)
            .await
        {
            Ok(_) => break Ok(()),
            Err(sqlx::Error::Database(e))
                if e.message().contains("locked") && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err(e) => break Err(e),
        }
    };
    sqlx::query("PRAGMA busy_timeout = 10000")
        .execute(&mut *tx)
        .await?;
    taken?;
    Ok(tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contended_batch_is_sized_to_hold_the_lock_about_50_ms() {
        let ms = Duration::from_millis;
        // 10,000 MTs held the lock 200 ms while others waited: 2,500 next.
        assert_eq!(next_batch(10_000, 10_000, Some(ms(200))), 2_500);
        // Never below the floor, never above the setting.
        assert_eq!(next_batch(2_500, 10_000, Some(ms(2_000))), MIN_BATCH);
        assert_eq!(next_batch(600, 10_000, Some(ms(1))), 10_000);
        // A setting below the floor is kept.
        assert_eq!(next_batch(100, 100, Some(ms(500))), 100);
        // Nobody waited: it grows back, doubling, to the setting.
        assert_eq!(next_batch(2_500, 10_000, None), 5_000);
        assert_eq!(next_batch(5_000, 10_000, None), 10_000);
        assert_eq!(
            next_batch(u32::MAX, u32::MAX, Some(Duration::ZERO)),
            u32::MAX
        );
    }
}
