//! Settlement: from charge events to what the partner
//! is owed and when.
//!
//! - [`statement`]: the monthly statement, computed only from stored records.
//! - [`render`]: the statement as JSON, CSV and printable HTML.
//! - [`figures`]: which partner figures are admissible at all (own services,
//!   configured operators, closed months, consistent counts and amounts).
//! - [`reconcile`]: the partner's own figures, the mean rule, held lines and
//!   discrepancy cases.
//! - [`cases`]: discrepancy cases, the admin's decisions on held lines, resolutions.
//! - [`issue`]: issuing a month's statement, and adjustments when its money inputs
//!   change afterwards.
//! - [`obligations`]: payments, due dates, breach notices, termination, alerts.

pub mod cases;
pub mod figures;
pub mod issue;
pub mod obligations;
pub mod reconcile;
pub mod render;
pub mod statement;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::Store;

/// How often obligations (overdue settlements, deadlines, notices) are checked.
const OBLIGATIONS_EVERY: Duration = Duration::from_secs(600);

/// The background obligation checks started with the platform (`server::Platform`):
/// every 10 minutes, on the platform's today ([`crate::clock`]), raise alerts for
/// overdue settlements and deadlines and end agreements whose notice ran out
/// . Durable and idempotent, so aborting it loses nothing.
pub fn spawn(store: Store) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let today = crate::clock::day_of_ms(crate::store::now_ms());
            match obligations::check(&store, today).await {
                Ok(alerts) if !alerts.is_empty() => {
                    tracing::warn!(count = alerts.len(), "billing alerts raised");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "obligation check failed"),
            }
            tokio::time::sleep(OBLIGATIONS_EVERY).await;
        }
    })
}

/// `[settlement]`: how far the partner's figures are trusted (R-4.2 read with ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SettlementConfig {
    /// A line where the partner's count or amount exceeds the platform's by more
    /// than this (basis points of the platform's figure; 5000 = 50 %), or where the
    /// platform has nothing, is held for the admin's decision instead of settling
    /// on the mean. Far above any agreement's X.
    pub hold_above_bp: i64,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        Self {
            hold_above_bp: 5000,
        }
    }
}

impl SettlementConfig {
    /// # Errors
    /// Why `hold_above_bp` is refused, when it is not 0–1,000,000 bp.
    pub fn validate(&self) -> Result<(), String> {
        if !(0..=1_000_000).contains(&self.hold_above_bp) {
            return Err("basis points from 0 to 1000000 (0 % to 10,000 %)".into());
        }
        Ok(())
    }
}
