//! Metrics and logs (issue 15 item 1).
//!
//! **Metrics**: one process-wide recorder of the `metrics` crate, rendered as
//! Prometheus text by `GET /metrics` (`metrics-exporter-prometheus` without its own
//! HTTP server). Labels are bounded: operator, partner (name), service (code),
//! module, fault kind, failure reason code; never a number or a message id. The
//! metric list with labels is in the README.
//!
//! **Logs**: `tracing` to stderr, `[log] format = "text"` (default) or `"json"` (one
//! JSON object per line with the current span and its parents, so partner,
//! service, run and message ids travel with each line); no ANSI colours when stderr
//! is not a terminal.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

use crate::store::Store;

/// `[log]`: how log lines are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Start logging to stderr (once per process; later calls do nothing). The filter
/// comes from `RUST_LOG`, default `info` with sqlx, wasmtime and cranelift at
/// `warn`. Colours only when stderr is a terminal.
pub fn init_logging(config: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sqlx=warn,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // A second start (tests, a command after `serve`) keeps the first subscriber.
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

/// Histogram buckets, in seconds: 0.5 ms to 10 s.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. `None` only if
/// another recorder was installed first (then `/metrics` says so).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder not installed");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!("tongdao_mt_queued_total", "MTs admitted to the outbox");
    describe_counter!("tongdao_mt_sent_total", "MT submits the SMSC accepted");
    describe_counter!("tongdao_mt_delivered_total", "MTs delivered (receipt)");
    describe_counter!(
        "tongdao_mt_failed_total",
        "MTs ended without delivery, by reason code"
    );
    describe_counter!("tongdao_mo_total", "MOs routed to a partner's service");
    describe_counter!("tongdao_revenue_fen_total", "charge events accrued, fen");
    describe_gauge!("tongdao_binds_up", "operator binds whose link is bound");
    describe_gauge!("tongdao_window_in_use", "submits awaiting their response");
    describe_gauge!(
        "tongdao_receipts_awaited",
        "segments whose receipt this process awaits, per operator"
    );
    describe_histogram!(
        "tongdao_submit_latency_seconds",
        "submit_sm to submit_sm_resp"
    );
    describe_counter!(
        "tongdao_submit_throttled_total",
        "submits answered ESME_RTHROTTLED / ESME_RMSGQFUL"
    );
    describe_counter!("tongdao_module_calls_total", "module export calls");
    describe_histogram!("tongdao_module_call_seconds", "module call duration");
    describe_counter!("tongdao_module_faults_total", "module faults by kind");
    describe_counter!("tongdao_push_runs_started_total", "push runs started");
    describe_counter!("tongdao_push_runs_finished_total", "push runs finished");
    describe_gauge!("tongdao_queue_depth", "MTs queued, per operator");
    describe_gauge!(
        "tongdao_queue_oldest_age_seconds",
        "age of the oldest queued MT, per operator"
    );
    describe_gauge!("tongdao_db_probe_seconds", "the last timed store probe");
    describe_histogram!("tongdao_db_latency_seconds", "timed store probes");
}

/// The Prometheus text of every metric.
pub fn render() -> String {
    match handle() {
        Some(h) => h.render(),
        None => "# metrics recorder not installed in this process\n".into(),
    }
}

/// A submit is in flight on `operator`'s window until the guard is dropped; on
/// drop its latency is recorded.
pub struct SubmitTimer {
    operator: String,
    started: Instant,
}

impl SubmitTimer {
    pub fn start(operator: &str) -> Self {
        metrics::gauge!("tongdao_window_in_use", "operator" => operator.to_string()).increment(1.0);
        Self {
            operator: operator.to_string(),
            started: Instant::now(),
        }
    }

    /// The submit was throttled `times` times (each resent after a pause).
    pub fn throttled(&self, times: u64) {
        if times > 0 {
            metrics::counter!("tongdao_submit_throttled_total", "operator" => self.operator.clone())
                .increment(times);
        }
    }
}

impl Drop for SubmitTimer {
    fn drop(&mut self) {
        metrics::gauge!("tongdao_window_in_use", "operator" => self.operator.clone())
            .decrement(1.0);
        metrics::histogram!("tongdao_submit_latency_seconds", "operator" => self.operator.clone())
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// One module call: its export, duration and fault kind (`None`: it succeeded).
pub fn module_call(partner: &str, module: &str, export: &str, took: Duration, fault: Option<&str>) {
    let labels = [
        ("partner", partner.to_string()),
        ("module", module.to_string()),
        ("export", export.to_string()),
    ];
    metrics::counter!("tongdao_module_calls_total", &labels).increment(1);
    metrics::histogram!("tongdao_module_call_seconds", &labels).record(took.as_secs_f64());
    if let Some(kind) = fault {
        metrics::counter!(
            "tongdao_module_faults_total",
            "partner" => partner.to_string(),
            "module" => module.to_string(),
            "kind" => kind.to_string()
        )
        .increment(1);
    }
}

/// A push run started (`started`, its first claim) or ended with `status`
/// (`completed`, `failed`, `expired`), counted after the change committed.
pub fn push_run(started: bool, status: &str) {
    if started {
        metrics::counter!("tongdao_push_runs_started_total").increment(1);
    } else {
        metrics::counter!("tongdao_push_runs_finished_total", "status" => status.to_string())
            .increment(1);
    }
}

/// How often the store-read gauges are refreshed (at least; see `spawn_gauges`).
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// The periodic gauges: queue depth and the oldest queued MT's age per operator (one
/// grouped read of the `messages_ready` index), and a timed store probe; also the
/// recorder's upkeep.
/// `operators` (the configured ones) show 0 while nothing is queued for them.
pub fn spawn_gauges(store: Store, operators: Vec<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut operators = operators;
        loop {
            if let Some(h) = handle() {
                h.run_upkeep();
            }
            let started = Instant::now();
            let probe = sqlx::query("SELECT 1").execute(store.pool()).await;
            let took = started.elapsed().as_secs_f64();
            if probe.is_ok() {
                metrics::gauge!("tongdao_db_probe_seconds").set(took);
                metrics::histogram!("tongdao_db_latency_seconds").record(took);
            }
            let now = crate::store::now_ms();
            let counted = Instant::now();
            let rows: Result<Vec<(String, i64, Option<i64>)>, _> = sqlx::query_as(
                "SELECT operator, COUNT(*), MIN(created_at) FROM messages
                 WHERE status = 'queued' GROUP BY operator",
            )
            .fetch_all(store.pool())
            .await;
            if let Ok(rows) = rows {
                // Operators whose queue emptied go back to 0.
                for op in &operators {
                    if !rows.iter().any(|(o, _, _)| o == op) {
                        metrics::gauge!("tongdao_queue_depth", "operator" => op.clone()).set(0.0);
                        metrics::gauge!("tongdao_queue_oldest_age_seconds", "operator" => op.clone())
                            .set(0.0);
                    }
                }
                for (o, _, _) in &rows {
                    if !operators.contains(o) {
                        operators.push(o.clone());
                    }
                }
                for (op, depth, oldest) in rows {
                    #[allow(clippy::cast_precision_loss)]
                    let age = oldest.map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
                    #[allow(clippy::cast_precision_loss)]
                    metrics::gauge!("tongdao_queue_depth", "operator" => op.clone())
                        .set(depth as f64);
                    metrics::gauge!("tongdao_queue_oldest_age_seconds", "operator" => op).set(age);
                }
            }
            // The queue count reads every queued MT: 1.6 s with 880,000 queued. A
            // slow count is repeated less often, so the gauge never costs more
            // than a twentieth of the store's time.
            let took = counted.elapsed();
            tokio::time::sleep(GAUGES_EVERY.max(took.saturating_mul(20))).await;
        }
    })
}
