//! `tongdao run push|show|wait|list|cancel`: `POST /v1/services/{id}/push`,
//! `GET /v1/runs/{id}`, `GET /v1/services/{id}/runs`, `POST /v1/runs/{id}/cancel`.
//! `wait` follows a run with progress bars (queued of the subscribers, sent and
//! delivered of the queued) until it is final and every MT has its outcome.

use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::output::{self, Column};
use super::{CliError, Global, PageArgs};

/// How often `run wait` asks again.
const POLL: Duration = Duration::from_millis(500);

/// Statuses in which a run does nothing more (the scheduler's `runs::FINAL`).
const FINAL: [&str; 5] = ["completed", "failed", "skipped", "cancelled", "expired"];

/// Push runs: push now, follow, list, cancel.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Push a service's bulletin now (a run is queued; 202).
    Push {
        /// The service id.
        service: i64,
        /// The date the bulletin is for, YYYY-MM-DD (default today).
        #[arg(long)]
        date: Option<String>,
        /// Sent as `Idempotency-Key`: a retry with the same key pushes once.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Then wait for it as `run wait` does.
        #[arg(long)]
        wait: bool,
        /// Seconds `--wait` waits at most.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// One run with its counters and delivery.
    Show { id: i64 },
    /// Follow a run until it is final and all its MTs have their outcome; exit 0
    /// only if it completed.
    Wait {
        id: i64,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// A service's runs, newest first.
    List {
        /// The service id.
        #[arg(long)]
        service: i64,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Stop a run that has not finished (what it queued stays queued).
    Cancel { id: i64 },
}

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("SERVICE", "service_id"),
    ("ORIGIN", "origin"),
    ("STATUS", "status"),
    ("DATE", "push_date"),
    ("SUBSCRIBERS", "subscribers"),
    ("QUEUED", "queued"),
    ("SENT", "delivery.sent"),
    ("DELIVERED", "delivery.delivered"),
    ("FAILED", "delivery.failed"),
    ("PENDING", "delivery.pending"),
    ("CREATED", "created_at"),
];

const DETAIL: &[&str] = &[
    "id",
    "service_id",
    "origin",
    "status",
    "push_date",
    "subscribers",
    "variants",
    "queued",
    "blocked",
    "held",
    "skipped",
    "delivery.sent",
    "delivery.delivered",
    "delivery.failed",
    "delivery.pending",
    "reason",
    "created_at",
    "finished_at",
];

fn show(global: &Global, run: &Value) {
    if global.json {
        output::json(run);
    } else {
        output::object(run, Some(DETAIL));
    }
}

/// Run one `run` command.
///
/// # Errors
/// The API's error, no answer, a timeout, or (for `wait`) a run that ended
/// other than `completed`.
pub fn run(global: &Global, command: RunCommand) -> Result<(), CliError> {
    let client = global.client()?;
    match command {
        RunCommand::Push {
            service,
            date,
            idempotency_key,
            wait: then_wait,
            timeout,
        } => {
            let body = date.map(|d| json!({ "date": d }));
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| ("Idempotency-Key", k))
                .into_iter()
                .collect();
            let run = client.post_with(
                &format!("/v1/services/{service}/push"),
                body.as_ref(),
                &headers,
            )?;
            if then_wait {
                let id = run["id"]
                    .as_i64()
                    .ok_or_else(|| CliError::Answer("the push answer has no run id".into()))?;
                if !global.json {
                    println!("run {id} queued");
                }
                return wait(global, id, Duration::from_secs(timeout));
            }
            show(global, &run);
        }
        RunCommand::Show { id } => show(global, &client.get(&format!("/v1/runs/{id}"), &[])?),
        RunCommand::Wait { id, timeout } => {
            return wait(global, id, Duration::from_secs(timeout));
        }
        RunCommand::List { service, page } => {
            let mut query = Vec::new();
            page.push(&mut query);
            let listed = client.list(&format!("/v1/services/{service}/runs"), &query, "runs")?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(&listed.items, listed.next.as_deref(), COLUMNS);
            }
        }
        RunCommand::Cancel { id } => {
            show(
                global,
                &client.post(&format!("/v1/runs/{id}/cancel"), None)?,
            );
        }
    }
    Ok(())
}

/// Whether a run is done: final, and no MT of it without its outcome.
pub fn is_done(run: &Value) -> bool {
    let status = run["status"].as_str().unwrap_or("");
    FINAL.contains(&status) && run["delivery"]["pending"].as_i64().unwrap_or(0) == 0
}

fn counter(run: &Value, path: &str) -> u64 {
    output::field(run, path)
        .as_i64()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(0)
}

/// Follow run `id` with three bars until [`is_done`] or `timeout`.
fn wait(global: &Global, id: i64, timeout: Duration) -> Result<(), CliError> {
    let client = global.client()?;
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = |name: &str| {
        let b = bars.add(ProgressBar::new(0));
        b.set_style(style.clone());
        b.set_prefix(name.to_string());
        b
    };
    let (queued, sent, delivered) = (bar("queued"), bar("sent"), bar("delivered"));
    let started = Instant::now();
    let run = loop {
        let run = client.get(&format!("/v1/runs/{id}"), &[])?;
        queued.set_length(counter(&run, "subscribers"));
        queued.set_position(counter(&run, "queued"));
        queued.set_message(run["status"].as_str().unwrap_or("").to_string());
        for (b, path) in [(&sent, "delivery.sent"), (&delivered, "delivery.delivered")] {
            b.set_length(counter(&run, "queued"));
            b.set_position(counter(&run, path));
        }
        delivered.set_message(format!("{} failed", counter(&run, "delivery.failed")));
        if is_done(&run) {
            break run;
        }
        if started.elapsed() >= timeout {
            for b in [&queued, &sent, &delivered] {
                b.abandon();
            }
            return Err(CliError::Timeout(format!(
                "run {id} is still {} after {}s ({} pending)",
                run["status"].as_str().unwrap_or("?"),
                timeout.as_secs(),
                counter(&run, "delivery.pending")
            )));
        }
        std::thread::sleep(POLL);
    };
    for b in [&queued, &sent, &delivered] {
        b.finish_and_clear();
    }
    show(global, &run);
    match run["status"].as_str() {
        Some("completed") => Ok(()),
        other => Err(CliError::Outcome {
            code: format!("run-{}", other.unwrap_or("unknown")),
            message: format!(
                "run {id} ended {}{}",
                other.unwrap_or("unknown"),
                run["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
        }),
    }
}
