//! Anomaly alerts: the platform watches its own operation and each
//! partner's traffic, records what it finds, and clears it when it ends.
//!
//! The evaluator ([`Evaluator::run_once`], every `[alerts] interval_ms`) reads the
//! records, read-only (`messages`, `message_events`, `module_fault_windows`,
//! `complaints`, `subscriptions`) and the relay's bind states, and computes the
//! conditions that hold now. In one transaction (holding the feed lock) it opens
//! an alert for each new condition, updates the measured value of open ones, and
//! ends the open alerts whose condition no longer holds; each opening and clearing
//! is an `alert` event to the partner (a platform alert, `partner_id` NULL, to
//! every partner). It is the only writer of `alerts`.
//!
//! | kind | scope | condition (`[alerts]`) | severity |
//! |---|---|---|---|
//! | `delivery-rate` | operator; partner | delivered ÷ final MTs in the window < `delivery_rate_min_bp`, at least `delivery_min_final` final | critical below half the threshold, else warning |
//! | `failure-reason` | operator and reason | one reason ≥ `failure_reason_share_bp` of the final MTs and ≥ `failure_reason_min` | warning |
//! | `bind-down` | operator | no bind bound for `bind_down_secs` | critical |
//! | `bind-flapping` | operator | binds made ≥ `flap_binds` times in the window and one is not stable now | warning |
//! | `queue-age` | operator | the oldest due queued MT waited ≥ `queue_age_secs` | warning |
//! | `volume-spike` | partner | MTs queued in the window ≥ `volume_spike_pct` % of its average per window over `baseline_hours`, and ≥ `volume_min` | warning |
//! | `module-faults` | partner and module | faults in the window ≥ `module_faults` | warning |
//! | `complaints` | partner and service | complaints in the window ≥ `complaints` | warning |
//! | `unsubscribes` | partner and service | cancellations in the window ≥ `unsubscribes` | warning |
//!
//! Windows over `messages` and `message_events` are found by id (a binary search
//! on the primary key for the first row of the window), so no scan of the tables
//! by time is needed. Bind states are those of this process's binds.

pub mod settings;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

pub use settings::AlertsConfig;

use crate::relay::Relay;
use crate::store::{Store, StoreError, now_ms};
use crate::webhooks::{self, NewEvent};

/// A condition that holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub kind: &'static str,
    pub severity: &'static str,
    pub scope_key: String,
    pub partner_id: Option<i64>,
    pub service_id: Option<i64>,
    pub operator: Option<String>,
    pub value: i64,
    pub threshold: i64,
    /// `bp`, `count`, `secs` or `pct-of-baseline`.
    pub unit: &'static str,
    pub detail: String,
}

/// An alert as stored and shown (`GET /v1/alerts`).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    /// `warning` or `critical`.
    pub severity: String,
    /// `None`: a platform alert (an operator), told to every partner.
    pub partner_id: Option<i64>,
    pub service_id: Option<i64>,
    pub operator: Option<String>,
    /// What was measured, in `unit`, over `window_secs`.
    pub value: i64,
    pub threshold: i64,
    pub unit: String,
    pub window_secs: i64,
    pub detail: String,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub updated_at: String,
    /// `None` while the alert is open.
    pub ended_at: Option<String>,
    pub active: bool,
}

type AlertRow = (
    i64,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Option<String>,
    i64,
    i64,
    String,
    i64,
    String,
    i64,
    i64,
    Option<i64>,
);

const ALERT_COLUMNS: &str = "id, kind, severity, partner_id, service_id, operator, value, threshold, unit, \
     window_secs, detail, started_at, updated_at, ended_at";

fn alert_from_row(row: AlertRow) -> Alert {
    let (
        id,
        kind,
        severity,
        partner_id,
        service_id,
        operator,
        value,
        threshold,
        unit,
        window,
        detail,
        started,
        updated,
        ended,
    ) = row;
    Alert {
        id,
        kind,
        severity,
        partner_id,
        service_id,
        operator,
        value,
        threshold,
        unit,
        window_secs: window,
        detail,
        started_at: crate::api::time::format(started),
        updated_at: crate::api::time::format(updated),
        ended_at: ended.map(crate::api::time::format),
        active: ended.is_none(),
    }
}

/// Alerts a partner sees (its own and the platform's; everyone's for `None`),
/// newest first, ids below `before`, at most `limit`; only open ones if `active`.
///
/// # Errors
/// [`StoreError`] when the store fails.
pub async fn list(
    store: &Store,
    partner_id: Option<i64>,
    active: Option<bool>,
    before: i64,
    limit: i64,
) -> Result<Vec<Alert>, StoreError> {
    let rows: Vec<AlertRow> = sqlx::query_as(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts
         WHERE ($1 = 0 OR partner_id = $1 OR partner_id IS NULL)
           AND ($2 = 0 OR ($2 = 1 AND ended_at IS NULL) OR ($2 = 2 AND ended_at IS NOT NULL))
           AND id < $3
         ORDER BY id DESC LIMIT $4"
    ))
    .bind(partner_id.unwrap_or(0))
    .bind(match active {
        None => 0,
        Some(true) => 1,
        Some(false) => 2,
    })
    .bind(before)
    .bind(limit.clamp(1, 500))
    .fetch_all(store.pool())
    .await?;
    Ok(rows.into_iter().map(alert_from_row).collect())
}

/// The evaluator: its settings, the relay whose binds it watches, and what it
/// remembers between rounds (when each operator went down, bind counts).
pub struct Evaluator {
    store: Store,
    relay: Option<Arc<Relay>>,
    config: AlertsConfig,
    down_since: HashMap<String, i64>,
    binds_seen: HashMap<String, VecDeque<(i64, u64)>>,
    /// The partners' baselines (MTs per partner over `baseline_hours` before the
    /// window) and when they were counted; counted again every ten minutes.
    baseline: Option<(i64, HashMap<i64, i64>)>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Start the evaluator; it runs every `interval_ms` until the task is aborted.
pub fn spawn(store: Store, relay: Arc<Relay>, config: AlertsConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = std::time::Duration::from_millis(config.interval_ms);
        let mut evaluator = Evaluator::new(store, Some(relay), config);
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = evaluator.run_once().await {
                tracing::error!(error = %e, "alert evaluation failed");
            }
        }
    })
}

/// What a round changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    pub opened: Vec<String>,
    pub cleared: Vec<String>,
}

impl Evaluator {
    /// An evaluator over `store` (and the binds of `relay`, if given).
    pub fn new(store: Store, relay: Option<Arc<Relay>>, config: AlertsConfig) -> Self {
        Self {
            store,
            relay,
            config,
            down_since: HashMap::new(),
            binds_seen: HashMap::new(),
            baseline: None,
        }
    }

    /// Evaluate once: open, update and clear alerts; returns the scope keys opened
    /// and cleared.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails (nothing is changed then).
    pub async fn run_once(&mut self) -> Result<Round, StoreError> {
        let now = now_ms();
        let conditions = self.conditions(now).await?;
        self.apply(now, conditions).await
    }

    fn window_ms(&self) -> i64 {
        i64::try_from(self.config.window_secs.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// Every condition that holds at `now`.
    async fn conditions(&mut self, now: i64) -> Result<Vec<Condition>, StoreError> {
        let mut out = Vec::new();
        self.delivery(now, &mut out).await?;
        self.binds(now, &mut out);
        self.queue_age(now, &mut out).await?;
        self.volume(now, &mut out).await?;
        self.counts(now, &mut out).await?;
        Ok(out)
    }

    async fn delivery(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let c = &self.config;
        let from =
            first_id_since(&self.store, "message_events", "at", now - self.window_ms()).await?;
        let rows: Vec<FinalRow> = sqlx::query_as(
            "SELECT m.operator, m.partner_id, e.status, m.failure_reason, COUNT(*)
             FROM message_events e JOIN messages m ON m.id = e.message_id
             WHERE e.id >= $1 AND e.status IN ('delivered', 'failed', 'expired')
             GROUP BY m.operator, m.partner_id, e.status, m.failure_reason",
        )
        .bind(from)
        .fetch_all(self.store.pool())
        .await?;
        // (final, delivered) per operator and per partner; failures per operator and reason.
        let mut operators: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        let mut partners: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
        let mut reasons: BTreeMap<(String, String), i64> = BTreeMap::new();
        for (operator, partner, status, reason, n) in rows {
            let delivered = if status == "delivered" { n } else { 0 };
            let entry = operators.entry(operator.clone()).or_default();
            entry.0 += n;
            entry.1 += delivered;
            if let Some(p) = partner {
                let entry = partners.entry(p).or_default();
                entry.0 += n;
                entry.1 += delivered;
            }
            if status != "delivered" {
                let reason = reason.unwrap_or_else(|| status.clone());
                *reasons.entry((operator, reason)).or_default() += n;
            }
        }
        let window = self.config.window_secs;
        let rate = |(finals, delivered): (i64, i64)| {
            (finals >= c.delivery_min_final && finals > 0)
                .then(|| delivered.saturating_mul(10_000) / finals)
        };
        for (operator, counts) in &operators {
            if let Some(bp) = rate(*counts).filter(|bp| *bp < c.delivery_rate_min_bp) {
                out.push(Condition {
                    kind: "delivery-rate",
                    severity: if bp * 2 < c.delivery_rate_min_bp {
                        "critical"
                    } else {
                        "warning"
                    },
                    scope_key: format!("delivery-rate:operator={operator}"),
                    partner_id: None,
                    service_id: None,
                    operator: Some(operator.clone()),
                    value: bp,
                    threshold: c.delivery_rate_min_bp,
                    unit: "bp",
                    detail: format!(
                        "{} of {} final MTs on {operator} delivered in the last {window} s",
                        counts.1, counts.0
                    ),
                });
            }
        }
        for (partner, counts) in &partners {
            if let Some(bp) = rate(*counts).filter(|bp| *bp < c.delivery_rate_min_bp) {
                out.push(Condition {
                    kind: "delivery-rate",
                    severity: if bp * 2 < c.delivery_rate_min_bp {
                        "critical"
                    } else {
                        "warning"
                    },
                    scope_key: format!("delivery-rate:partner={partner}"),
                    partner_id: Some(*partner),
                    service_id: None,
                    operator: None,
                    value: bp,
                    threshold: c.delivery_rate_min_bp,
                    unit: "bp",
                    detail: format!(
                        "{} of {} of your final MTs delivered in the last {window} s",
                        counts.1, counts.0
                    ),
                });
            }
        }
        for ((operator, reason), n) in &reasons {
            let finals = operators.get(operator).map_or(0, |c| c.0);
            if finals == 0 || *n < c.failure_reason_min {
                continue;
            }
            let share = n.saturating_mul(10_000) / finals;
            if share >= c.failure_reason_share_bp {
                out.push(Condition {
                    kind: "failure-reason",
                    severity: "warning",
                    scope_key: format!("failure-reason:operator={operator}:reason={reason}"),
                    partner_id: None,
                    service_id: None,
                    operator: Some(operator.clone()),
                    value: share,
                    threshold: c.failure_reason_share_bp,
                    unit: "bp",
                    detail: format!(
                        "{n} of {finals} final MTs on {operator} failed with `{reason}` in the last {window} s"
                    ),
                });
            }
        }
        Ok(())
    }

    fn binds(&mut self, now: i64, out: &mut Vec<Condition>) {
        let Some(relay) = &self.relay else { return };
        let mut by_operator: BTreeMap<String, Vec<crate::relay::BindStatus>> = BTreeMap::new();
        for bind in relay.binds() {
            by_operator
                .entry(bind.operator.clone())
                .or_default()
                .push(bind);
        }
        let window = self.window_ms();
        for (operator, binds) in by_operator {
            let up = binds.iter().any(|b| b.state == "bound");
            let stopped = binds.iter().all(|b| b.state == "stopped");
            if up || stopped {
                self.down_since.remove(&operator);
            } else {
                let since = *self.down_since.entry(operator.clone()).or_insert(now);
                let secs = (now - since) / 1000;
                if u64::try_from(now - since).unwrap_or(0)
                    >= self.config.bind_down_secs.saturating_mul(1000)
                {
                    let error = binds
                        .iter()
                        .find_map(|b| b.last_error.clone())
                        .unwrap_or_else(|| "not bound".into());
                    out.push(Condition {
                        kind: "bind-down",
                        severity: "critical",
                        scope_key: format!("bind-down:operator={operator}"),
                        partner_id: None,
                        service_id: None,
                        operator: Some(operator.clone()),
                        value: secs,
                        threshold: i64::try_from(self.config.bind_down_secs).unwrap_or(i64::MAX),
                        unit: "secs",
                        detail: format!("no bind to {operator} for {secs} s: {error}"),
                    });
                }
            }
            let total: u64 = binds.iter().map(|b| b.binds).sum();
            let seen = self.binds_seen.entry(operator.clone()).or_default();
            seen.push_back((now, total));
            while seen.front().is_some_and(|(at, _)| *at < now - window) {
                seen.pop_front();
            }
            let made = total.saturating_sub(seen.front().map_or(total, |(_, n)| *n));
            let unstable = binds.iter().any(|b| b.attempts > 0);
            if unstable && made >= self.config.flap_binds {
                out.push(Condition {
                    kind: "bind-flapping",
                    severity: "warning",
                    scope_key: format!("bind-flapping:operator={operator}"),
                    partner_id: None,
                    service_id: None,
                    operator: Some(operator.clone()),
                    value: i64::try_from(made).unwrap_or(i64::MAX),
                    threshold: i64::try_from(self.config.flap_binds).unwrap_or(i64::MAX),
                    unit: "count",
                    detail: format!(
                        "{made} binds to {operator} within {} s, dropped soon after binding",
                        self.config.window_secs
                    ),
                });
            }
        }
    }

    async fn queue_age(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT operator, MIN(next_attempt_at) FROM messages
             WHERE status = 'queued' AND next_attempt_at <= $1 GROUP BY operator",
        )
        .bind(now)
        .fetch_all(self.store.pool())
        .await?;
        for (operator, oldest) in rows {
            let secs = (now - oldest) / 1000;
            if u64::try_from(secs).unwrap_or(0) >= self.config.queue_age_secs {
                out.push(Condition {
                    kind: "queue-age",
                    severity: "warning",
                    scope_key: format!("queue-age:operator={operator}"),
                    partner_id: None,
                    service_id: None,
                    operator: Some(operator.clone()),
                    value: secs,
                    threshold: i64::try_from(self.config.queue_age_secs).unwrap_or(i64::MAX),
                    unit: "secs",
                    detail: format!("the oldest MT queued for {operator} has waited {secs} s"),
                });
            }
        }
        Ok(())
    }

    async fn volume(&mut self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let c = &self.config;
        let window = self.window_ms();
        let baseline_ms =
            i64::try_from(c.baseline_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        let window_from =
            first_id_since(&self.store, "messages", "created_at", now - window).await?;
        let current: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT partner_id, COUNT(*) FROM messages WHERE id >= $1 AND partner_id IS NOT NULL
             GROUP BY partner_id",
        )
        .bind(window_from)
        .fetch_all(self.store.pool())
        .await?;
        if !current.iter().any(|(_, n)| *n >= c.volume_min) {
            return Ok(());
        }
        let stale = self
            .baseline
            .as_ref()
            .is_none_or(|(at, _)| now - at > 600_000);
        if stale {
            let base_from = first_id_since(
                &self.store,
                "messages",
                "created_at",
                now - window - baseline_ms,
            )
            .await?;
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT partner_id, COUNT(*) FROM messages WHERE id >= $1 AND id < $2
                 AND partner_id IS NOT NULL GROUP BY partner_id",
            )
            .bind(base_from)
            .bind(window_from)
            .fetch_all(self.store.pool())
            .await?;
            self.baseline = Some((now, rows.into_iter().collect()));
        }
        let baseline = self.baseline.as_ref().map(|(_, b)| b);
        let c = &self.config;
        for (partner, n) in current {
            let Some(&base) = baseline.and_then(|b| b.get(&partner)) else {
                continue;
            };
            if n < c.volume_min || base == 0 {
                continue;
            }
            // n ÷ (base × window ÷ baseline), in percent.
            let pct = i128::from(n) * 100 * i128::from(baseline_ms)
                / (i128::from(base) * i128::from(window)).max(1);
            let pct = i64::try_from(pct).unwrap_or(i64::MAX);
            if pct >= c.volume_spike_pct {
                out.push(Condition {
                    kind: "volume-spike",
                    severity: "warning",
                    scope_key: format!("volume-spike:partner={partner}"),
                    partner_id: Some(partner),
                    service_id: None,
                    operator: None,
                    value: pct,
                    threshold: c.volume_spike_pct,
                    unit: "pct-of-baseline",
                    detail: format!(
                        "{n} MTs in the last {} s, {pct} % of the average of the {} h before",
                        c.window_secs, c.baseline_hours
                    ),
                });
            }
        }
        Ok(())
    }

    async fn counts(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let c = &self.config;
        let since = now - self.window_ms();
        let window = c.window_secs;
        let faults: Vec<(i64, i64, String, i64)> = sqlx::query_as(
            "SELECT w.partner_id, w.module_id, m.name, SUM(w.count) FROM module_fault_windows w
             JOIN modules m ON m.id = w.module_id
             WHERE w.last_at >= $1 GROUP BY w.partner_id, w.module_id, m.name",
        )
        .bind(since)
        .fetch_all(self.store.pool())
        .await?;
        for (partner, module_id, name, n) in faults {
            if n >= c.module_faults {
                out.push(Condition {
                    kind: "module-faults",
                    severity: "warning",
                    scope_key: format!("module-faults:partner={partner}:module={module_id}"),
                    partner_id: Some(partner),
                    service_id: None,
                    operator: None,
                    value: n,
                    threshold: c.module_faults,
                    unit: "count",
                    detail: format!("module `{name}` faulted {n} times in the last {window} s"),
                });
            }
        }
        for (kind, sql, threshold, what) in [
            (
                "complaints",
                "SELECT partner_id, service_id, COUNT(*) FROM complaints
                 WHERE at >= $1 AND service_id IS NOT NULL GROUP BY partner_id, service_id",
                c.complaints,
                "complaints",
            ),
            (
                "unsubscribes",
                "SELECT partner_id, service_id, COUNT(*) FROM subscriptions
                 WHERE status = 'cancelled' AND ended_at >= $1 GROUP BY partner_id, service_id",
                c.unsubscribes,
                "cancelled subscriptions",
            ),
        ] {
            let rows: Vec<(i64, i64, i64)> = sqlx::query_as(sql)
                .bind(since)
                .fetch_all(self.store.pool())
                .await?;
            for (partner, service, n) in rows {
                if n >= threshold && threshold > 0 {
                    out.push(Condition {
                        kind,
                        severity: "warning",
                        scope_key: format!("{kind}:partner={partner}:service={service}"),
                        partner_id: Some(partner),
                        service_id: Some(service),
                        operator: None,
                        value: n,
                        threshold,
                        unit: "count",
                        detail: format!("{n} {what} of service {service} in the last {window} s"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Open, update and clear, in one transaction with the events.
    async fn apply(&self, now: i64, conditions: Vec<Condition>) -> Result<Round, StoreError> {
        let window = i64::try_from(self.config.window_secs).unwrap_or(i64::MAX);
        let mut tx = self.store.begin_write().await?;
        webhooks::lock_feed(&mut tx).await?;
        let open: Vec<AlertRow> = sqlx::query_as(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE ended_at IS NULL"
        ))
        .fetch_all(&mut *tx)
        .await?;
        let open_keys: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, scope_key FROM alerts WHERE ended_at IS NULL")
                .fetch_all(&mut *tx)
                .await?;
        let mut round = Round::default();
        let mut events = Vec::new();
        for condition in &conditions {
            match open_keys.iter().find(|(_, k)| *k == condition.scope_key) {
                Some((id, _)) => {
                    sqlx::query(
                        "UPDATE alerts SET value = $1, severity = $2, detail = $3, updated_at = $4 WHERE id = $5",
                    )
                    .bind(condition.value)
                    .bind(condition.severity)
                    .bind(&condition.detail)
                    .bind(now)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO alerts (kind, severity, scope_key, partner_id, service_id, operator, value,
                           threshold, unit, window_secs, detail, started_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING id",
                    )
                    .bind(condition.kind)
                    .bind(condition.severity)
                    .bind(&condition.scope_key)
                    .bind(condition.partner_id)
                    .bind(condition.service_id)
                    .bind(&condition.operator)
                    .bind(condition.value)
                    .bind(condition.threshold)
                    .bind(condition.unit)
                    .bind(window)
                    .bind(&condition.detail)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    tracing::warn!(alert = id, scope = %condition.scope_key, detail = %condition.detail, "alert opened");
                    round.opened.push(condition.scope_key.clone());
                    events.push(event(
                        id,
                        "open",
                        condition.kind,
                        condition.severity,
                        condition.partner_id,
                        condition.service_id,
                        condition.operator.as_deref(),
                        (condition.value, condition.threshold, condition.unit, window),
                        &condition.detail,
                        (now, None),
                    ));
                }
            }
        }
        for row in open {
            let alert = alert_from_row(row.clone());
            let scope_key = &open_keys
                .iter()
                .find(|(id, _)| *id == alert.id)
                .map(|(_, k)| k.clone())
                .unwrap_or_default();
            if conditions.iter().any(|c| c.scope_key == *scope_key) {
                continue;
            }
            sqlx::query("UPDATE alerts SET ended_at = $1, updated_at = $1 WHERE id = $2 AND ended_at IS NULL")
                .bind(now)
                .bind(alert.id)
                .execute(&mut *tx)
                .await?;
            tracing::info!(alert = alert.id, scope = %scope_key, "alert cleared");
            round.cleared.push(scope_key.clone());
            let kind = known_kind(&alert.kind);
            events.push(event(
                alert.id,
                "cleared",
                kind,
                &alert.severity,
                alert.partner_id,
                alert.service_id,
                alert.operator.as_deref(),
                (alert.value, alert.threshold, &alert.unit, alert.window_secs),
                &alert.detail,
                (row.11, Some(now)),
            ));
        }
        webhooks::append_in(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(round)
    }
}

/// The alert kinds, as `&'static str`.
pub const KINDS: &[&str] = &[
    "delivery-rate",
    "failure-reason",
    "bind-down",
    "bind-flapping",
    "queue-age",
    "volume-spike",
    "module-faults",
    "complaints",
    "unsubscribes",
];

fn known_kind(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|k| **k == kind)
        .copied()
        .unwrap_or("alert")
}

/// The `alert` event of an opening or a clearing.
#[allow(clippy::too_many_arguments)]
fn event(
    id: i64,
    state: &str,
    kind: &str,
    severity: &str,
    partner_id: Option<i64>,
    service_id: Option<i64>,
    operator: Option<&str>,
    (value, threshold, unit, window): (i64, i64, &str, i64),
    detail: &str,
    (started, ended): (i64, Option<i64>),
) -> NewEvent {
    NewEvent {
        partner_id,
        kind: "alert",
        source_key: format!("alert:{id}:{state}"),
        data: json!({
            "alert_id": id, "state": state, "alert": kind, "severity": severity,
            "partner_id": partner_id, "service_id": service_id, "operator": operator,
            "value": value, "threshold": threshold, "unit": unit, "window_secs": window,
            "detail": detail, "started_at": crate::api::time::format(started), "ended_at": ended.map(crate::api::time::format),
        }),
        at: ended.unwrap_or(started),
    }
}

/// Final MTs in a window: operator, partner, status, failure reason, count.
type FinalRow = (String, Option<i64>, String, Option<String>, i64);

/// The smallest id of `table` whose `column` (a time that grows with the id) is
/// at least `since`: a binary search on the primary key, a few point reads
/// instead of a scan. One past the last id when there is none.
async fn first_id_since(
    store: &Store,
    table: &'static str,
    column: &'static str,
    since: i64,
) -> Result<i64, StoreError> {
    let (max,): (Option<i64>,) = sqlx::query_as(&format!("SELECT MAX(id) FROM {table}"))
        .fetch_one(store.pool())
        .await?;
    let Some(max) = max else { return Ok(0) };
    let (mut lo, mut hi) = (0_i64, max.saturating_add(1));
    let probe = format!("SELECT id, {column} FROM {table} WHERE id >= $1 ORDER BY id LIMIT 1");
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, i64)> = sqlx::query_as(&probe)
            .bind(mid)
            .fetch_optional(store.pool())
            .await?;
        match row {
            Some((id, at)) if at < since => lo = id.saturating_add(1),
            _ => hi = mid,
        }
    }
    Ok(lo)
}
