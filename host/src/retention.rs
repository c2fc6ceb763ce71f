//! `[retention]`: how long the history of MTs and MOs is kept for the regulator
//! (R-3.6, agreement 2.3: "N months"), and the background purge that removes what
//! is older, in small batches with a pause between them so it never holds the
//! store for long.
//!
//! The deletes themselves belong to the tables' owners (see [`purge_once`]):
//! MTs, MOs, receipts, MO fingerprints, webhook deliveries, partner events and
//! closed complaints. What settlement still needs is kept or carried over (see
//! [`crate::relay::outbox::retention`], [`crate::mo::retention`]): statements of
//! purged months read the same figures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};

/// `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// N: calendar months (platform time zone) an MT, MO, receipt, partner event,
    /// webhook delivery or closed complaint is kept after it was created (closed); the agreement leaves N blank, the default is 6 (above the 5 months
    /// regulators ask consent evidence to be kept). At least 1.
    pub months: u32,
    /// Seconds between two purge passes.
    pub interval_secs: u64,
    /// Rows per transaction.
    pub batch: u32,
    /// Pause between two batches, in milliseconds.
    pub pause_ms: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            months: 6,
            interval_secs: 3600,
            batch: 500,
            pause_ms: 50,
        }
    }
}

impl RetentionConfig {
    /// # Errors
    /// The key and why it is wrong.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.months == 0 {
            return Err(("retention.months", "must be at least 1".into()));
        }
        if self.batch == 0 {
            return Err(("retention.batch", "must be at least 1".into()));
        }
        if self.interval_secs == 0 {
            return Err(("retention.interval_secs", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The first instant kept at `now_ms`: `now` minus `months` calendar months in the
/// platform time zone (Unix ms). Rows created before it are purged; a row created
/// exactly at it is kept.
pub fn cutoff_ms(now_ms: i64, months: u32) -> i64 {
    let zoned = jiff::Timestamp::from_millisecond(now_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_zoned(crate::clock::time_zone());
    zoned
        .checked_sub(jiff::Span::new().months(i64::from(months)))
        .map_or(i64::MIN, |z| z.timestamp().as_millisecond())
}

/// What one purge pass removed, per table (rows).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// MTs (with their segments and events).
    pub mts: u64,
    pub mos: u64,
    /// Stored delivery receipts.
    pub receipts: u64,
    /// MO fingerprints of the de-duplication (`mo_seen`).
    pub mo_seen: u64,
    /// Webhook deliveries (not pending).
    pub deliveries: u64,
    /// Partner events no delivery refers to any more.
    pub events: u64,
    /// Closed complaints (with their history).
    pub complaints: u64,
    /// The cutoff used (Unix ms): everything older went.
    pub cutoff_ms: i64,
}

impl Purged {
    /// Rows removed in all.
    pub fn total(&self) -> u64 {
        self.mts
            + self.mos
            + self.receipts
            + self.mo_seen
            + self.deliveries
            + self.events
            + self.complaints
    }
}

/// Run `one` (a batch delete returning how many rows went) until a batch comes
/// back short, pausing `pause` between batches; returns the rows removed.
async fn drain<F>(
    batch: i64,
    pause: Duration,
    mut one: impl FnMut() -> F,
) -> Result<u64, StoreError>
where
    F: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    loop {
        let n = one().await?;
        total += n;
        if n < batch.unsigned_abs() {
            return Ok(total);
        }
        tokio::time::sleep(pause).await;
    }
}

/// Purge everything older than the window at `now_ms`, table by table, batch by
/// batch with `pause_ms` between batches. Each table's delete is its owner's:
///
/// | table | owner | what goes |
/// |---|---|---|
/// | `messages` (+ segments, events) | `relay::outbox::retention` | created before the cutoff (not an uncharged paid MT) |
/// | `mo_messages` | `mo::retention` | received before it (not one the router still holds) |
/// | `receipts` | `relay::inbound::receipts` | received before it |
/// | `mo_seen` | `relay::inbound::mo` | received before it |
/// | `webhook_deliveries` | `webhooks::retention` | created before it, not pending |
/// | `partner_events` | `webhooks::retention` | happened before it, no delivery left |
/// | `complaints` (+ `complaint_events`) | `complaints` | closed before it |
///
/// # Errors
/// A store failure; batches already committed stay purged.
pub async fn purge_once(
    store: &Store,
    config: &RetentionConfig,
    now_ms: i64,
) -> Result<Purged, StoreError> {
    use crate::{complaints, mo, relay, webhooks};
    let cutoff = cutoff_ms(now_ms, config.months);
    let batch = i64::from(config.batch.max(1));
    let pause = Duration::from_millis(config.pause_ms);
    Ok(Purged {
        mts: drain(batch, pause, || {
            relay::outbox::retention::purge_mt_batch(store, cutoff, batch)
        })
        .await?,
        mos: drain(batch, pause, || {
            mo::retention::purge_mo_batch(store, cutoff, batch)
        })
        .await?,
        receipts: drain(batch, pause, || {
            relay::inbound::receipts::purge_batch(store, cutoff, batch)
        })
        .await?,
        mo_seen: drain(batch, pause, || {
            relay::inbound::mo::purge_seen_batch(store, cutoff, batch)
        })
        .await?,
        // Deliveries before events: an event goes once no delivery refers to it.
        deliveries: drain(batch, pause, || {
            webhooks::retention::purge_deliveries_batch(store, cutoff, batch)
        })
        .await?,
        events: drain(batch, pause, || {
            webhooks::retention::purge_events_batch(store, cutoff, batch)
        })
        .await?,
        complaints: drain(batch, pause, || {
            complaints::purge_closed_batch(store, cutoff, batch)
        })
        .await?,
        cutoff_ms: cutoff,
    })
}

/// The purge's background task: [`purge_once`] every `interval_secs`.
pub fn spawn(store: Store, config: RetentionConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(config.interval_secs.max(1));
        loop {
            // The first pass waits an interval too: a start is no reason to purge.
            tokio::time::sleep(every).await;
            match purge_once(&store, &config, now_ms()).await {
                Ok(p) if p.total() > 0 => {
                    tracing::info!(
                        mts = p.mts,
                        mos = p.mos,
                        receipts = p.receipts,
                        mo_seen = p.mo_seen,
                        deliveries = p.deliveries,
                        events = p.events,
                        complaints = p.complaints,
                        cutoff_ms = p.cutoff_ms,
                        "history purged"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "history purge failed"),
            }
        }
    })
}
