//! Billing (R-1.2, R-2.2, R-4.*): what the platform charges on the partner's behalf
//! and under which terms.
//!
//! - [`agreement`]: the agreement with a partner: dates, status, periods.
//! - [`terms`]: money terms from a month on, operator terms,
//!   operator ranges and bad-debt ratios.
//! - [`calendar`]: billing months (in the platform time zone, R-4.5) and working
//!   days.
//! - [`charges`]: immutable, idempotent charge events from DLRs and subscriptions.
//! - [`money`]: exact fen arithmetic and the one rounding rule.
//!
//! Statements, reconciliation and obligations are in [`crate::settlement`], which
//! reads billing; billing never reads settlement.

pub mod agreement;
pub mod calendar;
pub mod charges;
pub mod money;
pub mod terms;

use std::sync::Arc;
use std::time::Duration;

use crate::relay::Relay;
use crate::store::{Store, StoreError};

/// Why a billing or settlement operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    /// Bad input: which field, and why.
    #[error("`{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0}")]
    NotFound(String),
    /// The records do not allow it (terms exist, none in force, case resolved…).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A figure would not fit in `i64` fen (never wrapped, never saturated).
    #[error(transparent)]
    Overflow(#[from] money::Overflow),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BillingError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for BillingError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

/// How often the background task charges delivered MTs and subscriptions.
const CHARGE_EVERY: Duration = Duration::from_secs(15);

/// The background billing task started with the platform (`server::Platform`):
/// charge events from delivered MTs and subscriptions (a full scan first, then
/// incremental). Every step is durable and idempotent, so aborting the task at any
/// point loses nothing. The obligation checks that read these charges are
/// settlement's ([`crate::settlement::spawn`]).
pub fn spawn(store: Store, relay: Arc<Relay>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut scan = charges::Scan::Full;
        loop {
            let now = crate::store::now_ms();
            match charges::charge(&store, relay.routes(), now, scan).await {
                Ok(report) => {
                    scan = charges::Scan::Incremental;
                    if report != charges::ChargeReport::default() {
                        tracing::info!(?report, "charge events recorded");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "charge pass failed; retrying"),
            }
            // Monthly charges the operator bills from a record (CMPP 2.0, SGIP 1.2).
            match relay.queue_fee_records(&charges::record_months(now)).await {
                Ok(0) => {}
                Ok(queued) => tracing::info!(queued, "billing records queued"),
                Err(e) => tracing::warn!(error = %e, "billing records not queued; retrying"),
            }
            tokio::time::sleep(CHARGE_EVERY).await;
        }
    })
}
