//! Anomaly alerts: the platform watches its own operation and each
//! partner's traffic, records what it finds, and clears it when it ends.
//!
//! The evaluator ([`Evaluator::run_once`], every `[alerts] interval_ms`) reads the
//! records, read-only (`messages`, `message_events`, `module_fault_windows`,
//! `complaints`, `subscriptions`) and the bind states of every replica, and computes the
//! conditions that hold now. In one transaction (holding the feed lock) it opens
//! an alert for each new condition, updates the measured value of open ones, and
//! ends the open alerts whose condition no longer holds; each opening and clearing
//! is an `alert` event to the partner (a platform alert, `partner_id` NULL, to
//! every partner). It is the only writer of `alerts` and `bind_heartbeats`.
//!
//! | kind | scope | condition (`[alerts]`) | severity |
//! |---|---|---|---|
//! | `delivery-rate` | operator; partner | delivered ÷ final MTs in the window < `delivery_rate_min_bp`, at least `delivery_min_final` final | critical below half the threshold, else warning |
//! | `failure-reason` | operator and reason | one reason ≥ `failure_reason_share_bp` of the final MTs and ≥ `failure_reason_min` | warning |
//! | `bind-down` | operator | no bind bound on any replica for `bind_down_secs` | critical |
//! | `bind-flapping` | operator | binds made (all replicas) ≥ `flap_binds` times in the window and one is not stable now | warning |
//! | `queue-age` | operator | the oldest due queued MT waited ≥ `queue_age_secs` | warning |
//! | `volume-spike` | partner | MTs queued in the window ≥ `volume_spike_pct` % of its average per window over `baseline_hours`, and ≥ `volume_min` | warning |
//! | `module-faults` | partner and module | faults in the window ≥ `module_faults` | warning |
//! | `complaints` | partner and service | complaints in the window ≥ `complaints` | warning |
//! | `unsubscribes` | partner and service | cancellations in the window ≥ `unsubscribes` | warning |
//!
//! Each kind is defined once ([`KIND_TABLE`]: name, unit, severity rule), and the
//! plain counts (module faults, complaints, cancellations) are one table of
//! queries (`COUNTS`); a condition's scope key is built from its scope by one
//! function.
//!
//! Windows over `messages` and `message_events` are found by id (a binary search
//! on the primary key for the first row of the window), so no scan of the tables
//! by time is needed.
//!
//! **Binds across replicas.** Every round each evaluator writes what its own
//! relay sees of each operator's binds to `bind_heartbeats` (bound, stopped,
//! since when none is bound, binds made in the window; its only writer), and
//! judges `bind-down` and `bind-flapping` from the fresh rows of every replica
//! (updated within three rounds, at least 5 s): an operator is down only when no
//! replica has a bind to it bound, counted from when the last replica lost its
//! last bind. So with N replicas on PostgreSQL a replica whose link is down does
//! not open an alert that another replica, seeing its binds up, would clear: every
//! evaluator reaches the same verdict. A replica that dies stops counting once its
//! heartbeat is stale.

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

/// One definition per alert kind: its name, the unit of what it measures, and
/// its severity for a measured value against the threshold.
#[derive(Debug)]
pub struct Kind {
    pub name: &'static str,
    /// `bp`, `count`, `secs` or `pct-of-baseline`.
    pub unit: &'static str,
    severity: fn(value: i64, threshold: i64) -> &'static str,
}

fn warning(_: i64, _: i64) -> &'static str {
    "warning"
}

fn critical(_: i64, _: i64) -> &'static str {
    "critical"
}

/// A rate under half its minimum is critical.
fn critical_under_half(value: i64, threshold: i64) -> &'static str {
    if value.saturating_mul(2) < threshold {
        "critical"
    } else {
        "warning"
    }
}

const DELIVERY_RATE: Kind = Kind {
    name: "delivery-rate",
    unit: "bp",
    severity: critical_under_half,
};
const FAILURE_REASON: Kind = Kind {
    name: "failure-reason",
    unit: "bp",
    severity: warning,
};
const BIND_DOWN: Kind = Kind {
    name: "bind-down",
    unit: "secs",
    severity: critical,
};
const BIND_FLAPPING: Kind = Kind {
    name: "bind-flapping",
    unit: "count",
    severity: warning,
};
const QUEUE_AGE: Kind = Kind {
    name: "queue-age",
    unit: "secs",
    severity: warning,
};
const VOLUME_SPIKE: Kind = Kind {
    name: "volume-spike",
    unit: "pct-of-baseline",
    severity: warning,
};
const MODULE_FAULTS: Kind = Kind {
    name: "module-faults",
    unit: "count",
    severity: warning,
};
const COMPLAINTS: Kind = Kind {
    name: "complaints",
    unit: "count",
    severity: warning,
};
const UNSUBSCRIBES: Kind = Kind {
    name: "unsubscribes",
    unit: "count",
    severity: warning,
};

/// Every alert kind, in the order of the table in the module docs.
pub const KIND_TABLE: &[&Kind] = &[
    &DELIVERY_RATE,
    &FAILURE_REASON,
    &BIND_DOWN,
    &BIND_FLAPPING,
    &QUEUE_AGE,
    &VOLUME_SPIKE,
    &MODULE_FAULTS,
    &COMPLAINTS,
    &UNSUBSCRIBES,
];

/// What an alert is about: the parts of its scope key, in key order.
#[derive(Debug, Clone, Default)]
struct Scope {
    partner_id: Option<i64>,
    service_id: Option<i64>,
    operator: Option<String>,
    /// Further parts (`module`, `reason`).
    more: Vec<(&'static str, String)>,
}

impl Scope {
    fn operator(operator: &str) -> Self {
        Self {
            operator: Some(operator.to_string()),
            ..Self::default()
        }
    }

    fn partner(partner_id: i64) -> Self {
        Self {
            partner_id: Some(partner_id),
            ..Self::default()
        }
    }

    fn with(mut self, key: &'static str, value: impl ToString) -> Self {
        self.more.push((key, value.to_string()));
        self
    }
}

impl Condition {
    /// A condition of `kind` in `scope`: the scope key is the kind and every part
    /// of the scope (`delivery-rate:operator=mobile`,
    /// `complaints:partner=3:service=7`).
    fn new(kind: &Kind, scope: Scope, value: i64, threshold: i64, detail: String) -> Self {
        let mut scope_key = kind.name.to_string();
        for (key, part) in [
            ("operator", scope.operator.clone()),
            ("partner", scope.partner_id.map(|p| p.to_string())),
            ("service", scope.service_id.map(|s| s.to_string())),
        ] {
            if let Some(part) = part {
                scope_key.push_str(&format!(":{key}={part}"));
            }
        }
        for (key, part) in &scope.more {
            scope_key.push_str(&format!(":{key}={part}"));
        }
        Self {
            kind: kind.name,
            severity: (kind.severity)(value, threshold),
            scope_key,
            partner_id: scope.partner_id,
            service_id: scope.service_id,
            operator: scope.operator,
            value,
            threshold,
            unit: kind.unit,
            detail,
        }
    }
}

/// A count over the window, per partner and a second scope, that opens an alert
/// at a threshold: `(kind, SQL, what is counted)`. The SQL binds the window's
/// start as `$1` and answers `(partner_id, scope id, label, count)`.
struct Count {
    kind: &'static Kind,
    sql: &'static str,
    /// The second scope: `module` or `service`.
    scope: &'static str,
    threshold: fn(&AlertsConfig) -> i64,
    detail: fn(label: &str, n: i64, window_secs: u64) -> String,
}

const COUNTS: &[Count] = &[
    Count {
        kind: &MODULE_FAULTS,
        sql: "SELECT w.partner_id, w.module_id, m.name, CAST(SUM(w.count) AS BIGINT) FROM module_fault_windows w
              JOIN modules m ON m.id = w.module_id
              WHERE w.last_at >= $1 GROUP BY w.partner_id, w.module_id, m.name",
        scope: "module",
        threshold: |c| c.module_faults,
        detail: |name, n, w| format!("module `{name}` faulted {n} times in the last {w} s"),
    },
    Count {
        kind: &COMPLAINTS,
        sql: "SELECT partner_id, service_id, CAST(service_id AS TEXT), COUNT(*) FROM complaints
              WHERE at >= $1 AND service_id IS NOT NULL GROUP BY partner_id, service_id",
        scope: "service",
        threshold: |c| c.complaints,
        detail: |service, n, w| format!("{n} complaints of service {service} in the last {w} s"),
    },
    Count {
        kind: &UNSUBSCRIBES,
        sql: "SELECT partner_id, service_id, CAST(service_id AS TEXT), COUNT(*) FROM subscriptions
              WHERE status = 'cancelled' AND ended_at >= $1 GROUP BY partner_id, service_id",
        scope: "service",
        threshold: |c| c.unsubscribes,
        detail: |service, n, w| {
            format!("{n} cancelled subscriptions of service {service} in the last {w} s")
        },
    },
];

/// One replica's view of an operator's binds (a row of `bind_heartbeats`).
#[derive(Debug, Clone)]
struct Heartbeat {
    operator: String,
    binds: i64,
    bound: i64,
    stopped: bool,
    down_since: Option<i64>,
    made: i64,
    unstable: bool,
    last_error: Option<String>,
}

type HeartbeatRow = (
    String,
    String,
    i64,
    i64,
    i64,
    Option<i64>,
    i64,
    i64,
    Option<String>,
);

/// The evaluator: its settings, the relay whose binds it watches, and what it
/// remembers between rounds (when this replica's binds to each operator went
/// down, bind counts).
pub struct Evaluator {
    store: Store,
    relay: Option<Arc<Relay>>,
    /// Names this replica in `bind_heartbeats`.
    replica: String,
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
            .field("replica", &self.replica)
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
        let replica = relay.as_ref().map_or_else(
            || format!("{:016x}", rand::random::<u64>()),
            |r| r.replica().to_string(),
        );
        Self {
            store,
            relay,
            replica,
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

    /// How long a replica's heartbeat counts: three rounds, at least 5 s.
    fn heartbeat_fresh_ms(&self) -> i64 {
        i64::try_from(self.config.interval_ms.saturating_mul(3).max(5000)).unwrap_or(i64::MAX)
    }

    /// Every condition that holds at `now`.
    async fn conditions(&mut self, now: i64) -> Result<Vec<Condition>, StoreError> {
        let mut out = Vec::new();
        self.delivery(now, &mut out).await?;
        self.beat(now).await?;
        self.binds(now, &mut out).await?;
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
        let window = c.window_secs;
        let scopes = operators
            .iter()
            .map(|(operator, counts)| {
                (Scope::operator(operator), format!("on {operator}"), *counts)
            })
            .chain(
                partners
                    .iter()
                    .map(|(p, counts)| (Scope::partner(*p), "of yours".to_string(), *counts)),
            );
        for (scope, whose, (finals, delivered)) in scopes {
            if finals < c.delivery_min_final || finals == 0 {
                continue;
            }
            let bp = delivered.saturating_mul(10_000) / finals;
            if bp < c.delivery_rate_min_bp {
                out.push(Condition::new(
                    &DELIVERY_RATE,
                    scope,
                    bp,
                    c.delivery_rate_min_bp,
                    format!(
                        "{delivered} of {finals} final MTs {whose} delivered in the last {window} s"
                    ),
                ));
            }
        }
        for ((operator, reason), n) in &reasons {
            let finals = operators.get(operator).map_or(0, |c| c.0);
            if finals == 0 || *n < c.failure_reason_min {
                continue;
            }
            let share = n.saturating_mul(10_000) / finals;
            if share >= c.failure_reason_share_bp {
                out.push(Condition::new(
                    &FAILURE_REASON,
                    Scope::operator(operator).with("reason", reason),
                    share,
                    c.failure_reason_share_bp,
                    format!(
                        "{n} of {finals} final MTs on {operator} failed with `{reason}` in the last {window} s"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Write this replica's view of its binds to `bind_heartbeats` (one row per
    /// operator), and drop the rows of replicas silent for an hour.
    async fn beat(&mut self, now: i64) -> Result<(), StoreError> {
        let Some(relay) = &self.relay else {
            return Ok(());
        };
        let mut by_operator: BTreeMap<String, Vec<crate::relay::BindStatus>> = BTreeMap::new();
        for bind in relay.binds() {
            by_operator
                .entry(bind.operator.clone())
                .or_default()
                .push(bind);
        }
        let window = self.window_ms();
        let mut beats = Vec::new();
        for (operator, binds) in by_operator {
            let bound = binds.iter().filter(|b| b.state == "bound").count();
            let stopped = binds.iter().all(|b| b.state == "stopped");
            let down_since = if bound > 0 || stopped {
                self.down_since.remove(&operator);
                None
            } else {
                Some(*self.down_since.entry(operator.clone()).or_insert(now))
            };
            let total: u64 = binds.iter().map(|b| b.binds).sum();
            let seen = self.binds_seen.entry(operator.clone()).or_default();
            seen.push_back((now, total));
            while seen.front().is_some_and(|(at, _)| *at < now - window) {
                seen.pop_front();
            }
            let made = total.saturating_sub(seen.front().map_or(total, |(_, n)| *n));
            beats.push(Heartbeat {
                operator,
                binds: i64::try_from(binds.len()).unwrap_or(i64::MAX),
                bound: i64::try_from(bound).unwrap_or(i64::MAX),
                stopped,
                down_since,
                made: i64::try_from(made).unwrap_or(i64::MAX),
                unstable: binds.iter().any(|b| b.attempts > 0),
                last_error: binds.iter().find_map(|b| b.last_error.clone()),
            });
        }
        let mut tx = self.store.begin_write().await?;
        for beat in &beats {
            sqlx::query(
                "INSERT INTO bind_heartbeats (replica, operator, binds, bound, stopped, down_since, made,
                   unstable, last_error, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (replica, operator) DO UPDATE SET binds = excluded.binds,
                   bound = excluded.bound, stopped = excluded.stopped, down_since = excluded.down_since,
                   made = excluded.made, unstable = excluded.unstable, last_error = excluded.last_error,
                   updated_at = excluded.updated_at",
            )
            .bind(&self.replica)
            .bind(&beat.operator)
            .bind(beat.binds)
            .bind(beat.bound)
            .bind(i64::from(beat.stopped))
            .bind(beat.down_since)
            .bind(beat.made)
            .bind(i64::from(beat.unstable))
            .bind(&beat.last_error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DELETE FROM bind_heartbeats WHERE updated_at < $1")
            .bind(now.saturating_sub(3_600_000))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `bind-down` and `bind-flapping`, judged across replicas from their fresh
    /// heartbeats: an operator is down when no replica has a bind to it bound
    /// (and not every replica stopped it), since the last replica lost its last
    /// bind; it flaps when the binds all replicas made within the window reach
    /// `flap_binds` and one is unstable now.
    async fn binds(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let rows: Vec<HeartbeatRow> = sqlx::query_as(
            "SELECT replica, operator, binds, bound, stopped, down_since, made, unstable, last_error
             FROM bind_heartbeats WHERE updated_at >= $1 ORDER BY operator, replica",
        )
        .bind(now.saturating_sub(self.heartbeat_fresh_ms()))
        .fetch_all(self.store.pool())
        .await?;
        let mut by_operator: BTreeMap<String, Vec<(String, Heartbeat)>> = BTreeMap::new();
        for (replica, operator, binds, bound, stopped, down_since, made, unstable, last_error) in
            rows
        {
            by_operator.entry(operator.clone()).or_default().push((
                replica,
                Heartbeat {
                    operator,
                    binds,
                    bound,
                    stopped: stopped != 0,
                    down_since,
                    made,
                    unstable: unstable != 0,
                    last_error,
                },
            ));
        }
        let c = &self.config;
        for (operator, beats) in by_operator {
            let replicas = beats.len();
            let up = beats.iter().any(|(_, b)| b.bound > 0);
            let stopped = beats.iter().all(|(_, b)| b.stopped);
            let since = beats.iter().filter_map(|(_, b)| b.down_since).max();
            if let (false, false, Some(since)) = (up, stopped, since) {
                let down_ms = now.saturating_sub(since);
                if u64::try_from(down_ms).unwrap_or(0) >= c.bind_down_secs.saturating_mul(1000) {
                    let secs = down_ms / 1000;
                    let binds: i64 = beats.iter().map(|(_, b)| b.binds).sum();
                    let error = beats
                        .iter()
                        .find_map(|(_, b)| b.last_error.clone())
                        .unwrap_or_else(|| "not bound".into());
                    out.push(Condition::new(
                        &BIND_DOWN,
                        Scope::operator(&operator),
                        secs,
                        i64::try_from(c.bind_down_secs).unwrap_or(i64::MAX),
                        format!(
                            "none of {binds} binds to {operator} on {replicas} replica(s) bound for {secs} s: {error}"
                        ),
                    ));
                }
            }
            let made: i64 = beats.iter().map(|(_, b)| b.made).sum();
            let unstable = beats.iter().any(|(_, b)| b.unstable);
            let flap = i64::try_from(c.flap_binds).unwrap_or(i64::MAX);
            if unstable && made >= flap {
                out.push(Condition::new(
                    &BIND_FLAPPING,
                    Scope::operator(&operator),
                    made,
                    flap,
                    format!(
                        "{made} binds to {operator} within {} s on {replicas} replica(s), dropped soon after binding",
                        c.window_secs
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn queue_age(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        // One look per operator (every replica's binds write theirs to
        // `bind_heartbeats`) reads the head of `messages_ready`; one grouped read of
        // every queued MT took over a second with 900,000 queued.
        let operators: Vec<(String,)> =
            sqlx::query_as("SELECT DISTINCT operator FROM bind_heartbeats")
                .fetch_all(self.store.pool())
                .await?;
        let mut rows = Vec::new();
        for (operator,) in operators {
            let (oldest,): (Option<i64>,) = sqlx::query_as(
                "SELECT MIN(next_attempt_at) FROM messages
                 WHERE operator = $1 AND status = 'queued' AND next_attempt_at <= $2",
            )
            .bind(&operator)
            .bind(now)
            .fetch_one(self.store.pool())
            .await?;
            if let Some(oldest) = oldest {
                rows.push((operator, oldest));
            }
        }
        for (operator, oldest) in rows {
            let secs = (now - oldest) / 1000;
            if u64::try_from(secs).unwrap_or(0) >= self.config.queue_age_secs {
                out.push(Condition::new(
                    &QUEUE_AGE,
                    Scope::operator(&operator),
                    secs,
                    i64::try_from(self.config.queue_age_secs).unwrap_or(i64::MAX),
                    format!("the oldest MT queued for {operator} has waited {secs} s"),
                ));
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
                out.push(Condition::new(
                    &VOLUME_SPIKE,
                    Scope::partner(partner),
                    pct,
                    c.volume_spike_pct,
                    format!(
                        "{n} MTs in the last {} s, {pct} % of the average of the {} h before",
                        c.window_secs, c.baseline_hours
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The counts of [`COUNTS`] over the window.
    async fn counts(&self, now: i64, out: &mut Vec<Condition>) -> Result<(), StoreError> {
        let since = now - self.window_ms();
        for count in COUNTS {
            let threshold = (count.threshold)(&self.config);
            let rows: Vec<(i64, i64, String, i64)> = sqlx::query_as(count.sql)
                .bind(since)
                .fetch_all(self.store.pool())
                .await?;
            for (partner, id, label, n) in rows {
                if n < threshold || threshold <= 0 {
                    continue;
                }
                let scope = match count.scope {
                    "service" => Scope {
                        service_id: Some(id),
                        ..Scope::partner(partner)
                    },
                    other => Scope::partner(partner).with(other, id),
                };
                let detail = (count.detail)(&label, n, self.config.window_secs);
                out.push(Condition::new(count.kind, scope, n, threshold, detail));
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

/// The stored kind's name as `&'static str` (`alert` for one no longer known).
fn known_kind(kind: &str) -> &'static str {
    KIND_TABLE
        .iter()
        .find(|k| k.name == kind)
        .map_or("alert", |k| k.name)
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
