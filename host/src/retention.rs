//! `[retention]`: how long the history of MTs and MOs is kept for the regulator
//! (R-3.6, agreement 2.3: "N months"), and the background purge that removes what
//! is older, in small batches with a pause between them so it never holds the
//! store for long.
//!
//! The deletes themselves belong to the tables' owners:
//! [`crate::relay::outbox::retention`] (MTs, their segments and events) and
//! [`crate::mo::retention`] (MOs). What settlement still needs is kept or carried
//! over (see those modules): statements of purged months read the same figures.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{Store, StoreError, now_ms};

/// `[retention]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// N: calendar months (platform time zone) an MT or MO is kept after it was
    /// created; the agreement leaves N blank, the default is 6 (above the 5 months
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

/// What one purge pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    pub mts: u64,
    pub mos: u64,
    /// The cutoff used (Unix ms): everything created before it went.
    pub cutoff_ms: i64,
}

/// Purge everything older than the window at `now_ms`, batch by batch with
/// `pause_ms` between batches.
///
/// # Errors
/// A store failure; batches already committed stay purged.
pub async fn purge_once(
    store: &Store,
    config: &RetentionConfig,
    now_ms: i64,
) -> Result<Purged, StoreError> {
    let cutoff = cutoff_ms(now_ms, config.months);
    let batch = i64::from(config.batch.max(1));
    let pause = Duration::from_millis(config.pause_ms);
    let mut purged = Purged {
        cutoff_ms: cutoff,
        ..Purged::default()
    };
    loop {
        let n = crate::relay::outbox::retention::purge_mt_batch(store, cutoff, batch).await?;
        purged.mts += n;
        if n < batch.unsigned_abs() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    loop {
        let n = crate::mo::retention::purge_mo_batch(store, cutoff, batch).await?;
        purged.mos += n;
        if n < batch.unsigned_abs() {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(purged)
}

/// The purge's background task: [`purge_once`] every `interval_secs`.
pub fn spawn(store: Store, config: RetentionConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = Duration::from_secs(config.interval_secs.max(1));
        loop {
            // The first pass waits an interval too: a start is no reason to purge.
            tokio::time::sleep(every).await;
            match purge_once(&store, &config, now_ms()).await {
                Ok(p) if p.mts + p.mos > 0 => {
                    tracing::info!(
                        mts = p.mts,
                        mos = p.mos,
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
