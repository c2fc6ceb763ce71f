//! Statistics per partner: hourly and daily aggregates per partner,
//! service and operator of MTs queued, delivered and failed (by reason), MOs, new
//! and cancelled subscriptions, revenue accrued (fen, from charge events) and
//! complaints. The agreement settles on the platform's statistics (clause 3.1), so
//! they are kept **exactly**:
//!
//! - one roll-up ([`rollup`]) reads each source by a durable cursor (the highest
//!   id counted: `message_events`, `mo_messages`, `charge_events`, `complaints`,
//!   `subscription_changes`) and adds to `stats_hourly` in the **same transaction**
//!   that moves the cursor, so a crash (or `kill -9`) between two passes neither
//!   loses nor double-counts anything;
//! - several replicas claim a source's cursor row (`FOR UPDATE` on PostgreSQL, the
//!   write lock on SQLite), so one pass counts a row once;
//! - on PostgreSQL ids are not committed in order, so a pass reads only up to a
//!   watermark taken under a `SHARE` lock of the source table (every transaction
//!   that had taken an id has committed or rolled back by then); on SQLite the one
//!   writer commits ids in order;
//! - MOs are counted once routed (their service is known); the cursor stops at the
//!   first MO still waiting for the router.
//!
//! [`query`] reads the aggregates for the API (`GET /v1/stats`).

pub mod query;
pub mod rollup;

use std::time::Duration;

use crate::relay::Routes;
use crate::store::Store;

pub use query::{Granularity, StatsFilter, StatsRow};
pub use rollup::{RollupReport, roll_up};

/// How often the background roll-up runs.
const ROLLUP_EVERY: Duration = Duration::from_secs(1);

/// The background roll-up started with the platform: a pass every second (each
/// source read to its end in batches). Aborting it at any point loses nothing.
pub fn spawn(store: Store, routes: Routes) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match roll_up(&store, &routes).await {
                Ok(report) if report.rows > 0 => {
                    tracing::debug!(?report, "statistics rolled up");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "statistics roll-up failed; retrying"),
            }
            tokio::time::sleep(ROLLUP_EVERY).await;
        }
    })
}
