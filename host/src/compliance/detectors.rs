//! detectors: bulk sending outside subscriptions (群发), fee-only traffic
//! (纯代收费), monthly services sent over their count, and complaint spikes.
//!
//! Each looks back over `detectors.window_secs`; a finding is a violation (at most
//! one per rule and service or partner per window), and rules listed in
//! `detectors.auto_suspend` also suspend the service, or the partner for bulk
//! sending, at once.

use super::{Compliance, NewViolation};
use crate::store::{StoreError, now_ms};

/// One detector finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static str,
    pub partner_id: i64,
    pub service_id: Option<i64>,
    pub detail: String,
}

/// The detectors' background task, started with the platform: [`run_once`] every
/// `detectors.interval_secs` (at least 1 s); findings are logged (and recorded and
/// acted on by [`run_once`] itself).
pub fn spawn(compliance: Compliance) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every =
            std::time::Duration::from_secs(compliance.config().detectors.interval_secs.max(1));
        loop {
            tokio::time::sleep(every).await;
            match run_once(&compliance).await {
                Ok(found) if !found.is_empty() => {
                    tracing::warn!(
                        findings = found.len(),
                        "compliance detectors found violations"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "compliance detectors failed"),
            }
        }
    })
}

/// Run every detector once; returns the new findings (already recorded, and acted
/// on where a rule auto-suspends).
pub async fn run_once(compliance: &Compliance) -> Result<Vec<Finding>, StoreError> {
    let config = &compliance.config().detectors;
    let now = now_ms();
    let since = now - i64::try_from(config.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let pool = compliance.store().pool();
    let mut findings = Vec::new();

    let bulk: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT partner_id, COUNT(*) FROM violations WHERE kind = 'opt-in' AND at >= $1
         GROUP BY partner_id HAVING COUNT(*) >= $2",
    )
    .bind(since)
    .bind(config.opt_in_refusals)
    .fetch_all(pool)
    .await?;
    for (partner_id, n) in bulk {
        findings.push(Finding {
            rule: "bulk-outside-subscription",
            partner_id,
            service_id: None,
            detail: format!(
                "{n} MTs to numbers without a subscription were refused within the window"
            ),
        });
    }

    let fee_only: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT partner_id, service_id, recipient, COUNT(*) FROM messages
         WHERE created_at >= $1 AND price_fen > 0 AND service_id IS NOT NULL AND partner_id IS NOT NULL
         GROUP BY partner_id, service_id, recipient, COALESCE(content_key, content_sha256)
         HAVING COUNT(*) >= $2",
    )
    .bind(since)
    .bind(config.fee_only_repeats)
    .fetch_all(pool)
    .await?;
    for (partner_id, service_id, recipient, n) in fee_only {
        let masked: String = recipient.chars().take(7).collect();
        findings.push(Finding {
            rule: "fee-only",
            partner_id,
            service_id: Some(service_id),
            detail: format!("{n} paid MTs with the same content to {masked}…… within the window"),
        });
    }

    let over_count: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT partner_id, service_id, COUNT(*) FROM violations
         WHERE rule = 'monthly-over-count' AND kind = 'cap' AND service_id IS NOT NULL AND at >= $1
         GROUP BY partner_id, service_id HAVING COUNT(*) >= $2",
    )
    .bind(since)
    .bind(config.over_count_attempts)
    .fetch_all(pool)
    .await?;
    for (partner_id, service_id, n) in over_count {
        findings.push(Finding {
            rule: "monthly-over-count",
            partner_id,
            service_id: Some(service_id),
            detail: format!("{n} pushes over the monthly count were attempted within the window"),
        });
    }

    for rate in complaint_rates(compliance, now).await? {
        if rate.complaints >= config.complaints
            && rate.per_10k_reached(config.complaint_rate_per_10k)
        {
            findings.push(Finding {
                rule: "complaint-spike",
                partner_id: rate.partner_id,
                service_id: rate.service_id,
                detail: format!(
                    "{} complaints against {} MTs within the window: {} per 10,000 (threshold {})",
                    rate.complaints, rate.mts, rate.per_10k, config.complaint_rate_per_10k
                ),
            });
        }
    }

    let mut new = Vec::new();
    for finding in findings {
        let (seen,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM violations WHERE kind = 'detector' AND rule = $1 AND partner_id = $2
             AND (($3 IS NULL AND service_id IS NULL) OR service_id = $3) AND at >= $4",
        )
        .bind(finding.rule)
        .bind(finding.partner_id)
        .bind(finding.service_id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        if seen > 0 {
            continue;
        }
        compliance
            .record_violation(NewViolation {
                partner_id: finding.partner_id,
                service_id: finding.service_id,
                module_version_id: None,
                kind: "detector",
                rule: finding.rule,
                detail: &finding.detail,
                excerpt: None,
            })
            .await?;
        if config.auto_suspend.iter().any(|r| r == finding.rule) {
            let actor = format!("rule:{}", finding.rule);
            let result = match finding.service_id {
                Some(service) => {
                    compliance
                        .suspend_service(service, &actor, &finding.detail)
                        .await
                }
                None => {
                    compliance
                        .suspend_partner(finding.partner_id, &actor, &finding.detail)
                        .await
                }
            };
            match result {
                Ok(_) => {
                    // The platform's own administrative action: on the audit chain.
                    let (action, target) = match finding.service_id {
                        Some(service) => ("suspend-service", format!("service {service}")),
                        None => ("suspend-partner", format!("partner {}", finding.partner_id)),
                    };
                    crate::audit::append(
                        compliance.store(),
                        crate::audit::NewEntry {
                            actor,
                            action: action.into(),
                            detail: format!("{target}: {}", finding.detail),
                            ..crate::audit::NewEntry::default()
                        },
                    )
                    .await?;
                }
                // Already suspended is fine; anything else is logged and retried next round.
                Err(e) => {
                    tracing::warn!(rule = finding.rule, error = %e, "auto-suspension not applied");
                }
            }
        }
        new.push(finding);
    }
    Ok(new)
}

/// Complaints against a partner (per service, or with no service named) and the
/// MTs it sent within `detectors.complaint_window_secs`: the complaint-spike
/// detector's input. Channel-cause complaints are the platform's,
/// not the partner's, and are left out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComplaintRate {
    pub partner_id: i64,
    /// `None`: complaints that name no service, against all the partner's MTs.
    pub service_id: Option<i64>,
    pub complaints: i64,
    /// MTs (not test sends) queued for the partner (or the service) in the window.
    pub mts: i64,
    /// Complaints per 10,000 MTs, rounded down; with no MTs, `complaints × 10,000`.
    pub per_10k: i64,
}

impl ComplaintRate {
    /// Whether the rate is at least `threshold` complaints per 10,000 MTs,
    /// compared exactly (`complaints × 10,000 ≥ threshold × MTs`).
    pub fn per_10k_reached(&self, threshold: i64) -> bool {
        let lhs = i128::from(self.complaints) * 10_000;
        let rhs = i128::from(threshold) * i128::from(self.mts.max(1));
        lhs >= rhs
    }
}

/// Every partner's (and service's) complaint rate over the window ending at `now`.
///
/// # Errors
/// A store failure.
pub async fn complaint_rates(
    compliance: &Compliance,
    now: i64,
) -> Result<Vec<ComplaintRate>, StoreError> {
    let config = &compliance.config().detectors;
    let since =
        now - i64::try_from(config.complaint_window_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let pool = compliance.store().pool();
    let groups: Vec<(i64, Option<i64>, i64)> = sqlx::query_as(
        "SELECT partner_id, service_id, COUNT(*) FROM complaints
         WHERE at >= $1 AND cause <> 'channel'
         GROUP BY partner_id, service_id ORDER BY partner_id, service_id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut rates = Vec::with_capacity(groups.len());
    for (partner_id, service_id, complaints) in groups {
        let (mts,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM messages
             WHERE partner_id = $1 AND ($2 IS NULL OR service_id = $2) AND is_test = 0
               AND created_at >= $3",
        )
        .bind(partner_id)
        .bind(service_id)
        .bind(since)
        .fetch_one(pool)
        .await?;
        let per_10k = i64::try_from(i128::from(complaints) * 10_000 / i128::from(mts.max(1)))
            .unwrap_or(i64::MAX);
        rates.push(ComplaintRate {
            partner_id,
            service_id,
            complaints,
            mts,
            per_10k,
        });
    }
    Ok(rates)
}
