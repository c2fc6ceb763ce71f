//! The relay: the durable outbox, operator links over
//! SMPP 3.4, CMPP 3.0/2.0 or SGIP 1.2 (issue 16), receipts and MO intake.
//!
//! - [`routing`]: number normalisation and longest-prefix routing to an operator.
//! - [`outbox`]: MT rows, claims, submit outcomes, retries, expiry, receipts applied.
//! - [`connector`]: one task per operator bind: submit loop, inbound handling, the
//!   drain at shutdown.
//! - [`inbound`]: receipts (matched by the operator's id format, or kept) and MOs
//!   (each once; long ones re-assembled within a window).
//! - `flow`: submits kept within receipt intake, so a push never delays MOs.
//! - [`messages`]: what the API shows of an MT and its history.
//! - [`settings`]: `[relay]` and `[[operators]]`.

pub mod connector;
pub mod fees;
mod flow;
pub mod inbound;
pub mod messages;
pub mod numbering;
pub mod outbox;
pub mod routing;
pub mod settings;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tongdao_link::{LinkStatus, Session};

use crate::compliance::Compliance;
use crate::store::Store;
pub use inbound::MoRecord;
pub use outbox::{Basis, ChargePlan, NewMessage, OutboxError};
pub use routing::{RouteError, Routes};
use settings::{OperatorConfig, ReceiptIds, RelayConfig};

/// How often leases, expiry, unmatched receipts and open long MOs are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// State every relay task shares.
pub struct RelayShared {
    pub store: Store,
    pub relay: RelayConfig,
    /// Woken when an MT is queued, so an idle bind sends it at once.
    pub wake: Notify,
    /// Every complete MO, for the keyword router.
    pub mo_events: broadcast::Sender<MoRecord>,
    /// `true` once the relay is shutting down.
    stop: watch::Sender<bool>,
    /// Names this process's operator sessions (`<nonce>:<operator>:<bind>:<n>`).
    nonce: String,
    /// This process's operator sessions (any protocol), by name, while their session
    /// task runs: whether each is still up.
    sessions: Mutex<HashMap<String, SessionAlive>>,
    /// Submit outcomes on their way to the store (one recorder, group commits).
    outcomes: connector::Outcomes,
    /// One hot-path write at a time on SQLite (claims, submit outcomes, receipts,
    /// the sweep): SQLite has one writer anyway, and waiting here is a queue, while
    /// waiting in SQLite's busy handler is sleeping in steps of milliseconds.
    write_turn: tokio::sync::Mutex<()>,
    /// MTs this process claimed whose outcome is not stored yet: their leases are
    /// renewed while the process lives, so the sweep re-queues only a dead worker's
    /// rows, never those a live bind still holds (tps limits, throttling, a stalled
    /// SMSC can hold a claim longer than `lease_secs`; re-queuing it then sent the
    /// same MT from two binds, issue 18's fault-injection suite).
    held: Mutex<HashSet<i64>>,
    /// Receipts each operator owes this process: its binds claim within the bound.
    awaited: flow::AwaitedReceipts,
}

impl RelayShared {
    /// Claimed by this process: renew their leases until [`Self::let_go`].
    fn hold(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut held) = self.held.lock() {
            held.extend(ids);
        }
    }

    /// Stored (or released, or their outcome failed to store): their leases run as
    /// claimed, so the sweep recovers any that are still `submitting`.
    fn let_go(&self, ids: impl IntoIterator<Item = i64>) {
        if let Ok(mut held) = self.held.lock() {
            for id in ids {
                held.remove(&id);
            }
        }
    }

    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Wait for this process's turn to write on the hot path (SQLite; on PostgreSQL
    /// writers run side by side and this returns at once).
    async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.store.backend() {
            crate::store::Backend::Sqlite => Some(self.write_turn.lock().await),
            crate::store::Backend::Postgres => None,
        }
    }

    /// A new session's name, registered as up.
    fn open_session<S: Session>(&self, view: &BindView, client: &S) -> String {
        let n = view.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let name = format!("{}:{}:{}:{n}", self.nonce, view.operator, view.bind);
        let client = client.clone();
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.insert(name.clone(), Box::new(move || !client.is_closed()));
        }
        name
    }

    fn close_session(&self, name: &str) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(name);
        }
    }

    /// Is the operator session `name` still up? Another process's sessions count as gone.
    pub fn session_alive(&self, name: &str) -> bool {
        self.sessions
            .lock()
            .ok()
            .and_then(|s| s.get(name).map(|alive| alive()))
            .unwrap_or(false)
    }
}

/// Whether one session is still up (type-erased over the protocol).
type SessionAlive = Box<dyn Fn() -> bool + Send + Sync>;

/// What one bind shows of itself (log and API).
pub struct BindView {
    pub operator: String,
    /// 1-based bind number within its operator.
    pub bind: u32,
    status: watch::Receiver<LinkStatus>,
    /// Times this bind looked at the queue (claimed, or found nothing due).
    claims: AtomicU64,
    /// Sessions this bind has had.
    sessions: AtomicU64,
}

/// The state of one operator bind (`GET /v1/admin/relay/binds`).
#[derive(Debug, Clone, Serialize)]
pub struct BindStatus {
    pub operator: String,
    pub bind: u32,
    /// `connecting`, `bound`, `backing-off` or `stopped`.
    pub state: &'static str,
    /// Failed binds and flaps since the link was last stable (0 once it is).
    pub attempts: u32,
    /// Successful binds since start.
    pub binds: u64,
    /// RFC 3339 UTC: bound since (while bound).
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub bound_since: Option<i64>,
    /// RFC 3339 UTC: next bind attempt (while backing off).
    #[serde(serialize_with = "crate::api::time::opt_ms")]
    pub next_attempt_at: Option<i64>,
    pub last_error: Option<String>,
    /// Times the bind looked at the queue.
    pub claims: u64,
}

/// The running relay: one task per operator bind plus the sweeper.
pub struct Relay {
    shared: Arc<RelayShared>,
    routes: Routes,
    compliance: Compliance,
    /// Operators whose protocol has 包月 billing records (CMPP 2.0, SGIP 1.2).
    record_operators: Vec<String>,
    binds: Vec<Arc<BindView>>,
    bind_tasks: Mutex<Vec<JoinHandle<()>>>,
    sweeper: JoinHandle<()>,
    recorder: JoinHandle<()>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("routes", &self.routes)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// Start binds for every operator and the sweeper.
    pub fn start(
        store: Store,
        relay: RelayConfig,
        operators: &[OperatorConfig],
        compliance: Compliance,
    ) -> Self {
        let (mo_events, _) = broadcast::channel(1024);
        let (stop, _) = watch::channel(false);
        let awaited = flow::AwaitedReceipts::new(
            relay.max_awaited_receipts,
            Duration::from_secs(relay.receipt_wait_secs),
        );
        let shared = Arc::new(RelayShared {
            store,
            relay,
            awaited,
            wake: Notify::new(),
            mo_events,
            stop,
            nonce: format!("{:016x}", rand::random::<u64>()),
            sessions: Mutex::new(HashMap::new()),
            outcomes: connector::Outcomes::new(),
            write_turn: tokio::sync::Mutex::new(()),
            held: Mutex::new(HashSet::new()),
        });
        let recorder = tokio::spawn(connector::record_outcomes(shared.clone()));
        let mut binds = Vec::new();
        let mut bind_tasks = Vec::new();
        for operator in operators {
            for bind in 1..=operator.binds {
                let (status, status_rx) = watch::channel(LinkStatus::default());
                let view = Arc::new(BindView {
                    operator: operator.name.clone(),
                    bind,
                    status: status_rx,
                    claims: AtomicU64::new(0),
                    sessions: AtomicU64::new(0),
                });
                binds.push(view.clone());
                bind_tasks.push(tokio::spawn(connector::run_bind(
                    shared.clone(),
                    operator.clone(),
                    view,
                    status,
                )));
            }
        }
        let receipt_ids: Vec<(String, ReceiptIds)> = operators
            .iter()
            .map(|o| (o.name.clone(), o.receipt_format()))
            .collect();
        let sweeper = tokio::spawn(sweeper(shared.clone(), receipt_ids));
        Self {
            shared,
            routes: Routes::new(operators),
            compliance,
            record_operators: operators
                .iter()
                .filter(|o| o.protocol.has_fee_records())
                .map(|o| o.name.clone())
                .collect(),
            binds,
            bind_tasks: Mutex::new(bind_tasks),
            sweeper,
            recorder,
        }
    }

    fn gate(&self) -> outbox::Gate<'_> {
        outbox::Gate {
            routes: &self.routes,
            relay: &self.shared.relay,
            compliance: &self.compliance,
        }
    }

    /// Queue an MT (every check of [`outbox::enqueue`] applies) and wake the binds.
    pub async fn enqueue(&self, message: NewMessage) -> Result<i64, OutboxError> {
        let id = outbox::enqueue(&self.shared.store, self.gate(), message).await?;
        self.shared.wake.notify_waiters();
        Ok(id)
    }

    /// Queue a test MT (see [`outbox::enqueue_test`]) and wake the binds.
    pub async fn enqueue_test(
        &self,
        to: &str,
        text: &str,
        operator: Option<String>,
    ) -> Result<i64, OutboxError> {
        let id = outbox::enqueue_test(&self.shared.store, self.gate(), to, text, operator).await?;
        self.shared.wake.notify_waiters();
        Ok(id)
    }

    /// Queue the 包月 billing record of every monthly charge event of `months`
    /// (`YYYY-MM`) on an operator whose protocol has records and that has none yet
    /// (issue 16 item 4, [`outbox::records`]), and wake the binds. Idempotent.
    /// Returns how many were queued.
    ///
    /// # Errors
    /// A store failure.
    pub async fn queue_fee_records(&self, months: &[String]) -> Result<u64, OutboxError> {
        let queued = outbox::records::admit_fee_records(
            &self.shared.store,
            self.gate(),
            &self.record_operators,
            months,
        )
        .await?;
        if queued > 0 {
            self.shared.wake.notify_waiters();
        }
        Ok(queued)
    }

    /// Wake the binds after MTs were queued by someone else (a push's bulk insert,
    /// a released suspension).
    pub fn wake(&self) {
        self.shared.wake.notify_waiters();
    }

    /// The routing table.
    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// The relay settings.
    pub fn config(&self) -> &RelayConfig {
        &self.shared.relay
    }

    /// Complete MOs as they arrive.
    pub fn subscribe_mo(&self) -> broadcast::Receiver<MoRecord> {
        self.shared.mo_events.subscribe()
    }

    /// Names this process among the replicas (random per start, as in its SMPP
    /// session names).
    pub fn replica(&self) -> &str {
        &self.shared.nonce
    }

    /// The state of every bind: link state, attempts since the link was last stable,
    /// binds so far, timestamps, last error.
    pub fn binds(&self) -> Vec<BindStatus> {
        self.binds
            .iter()
            .map(|view| {
                let status = view.status.borrow().clone();
                BindStatus {
                    operator: view.operator.clone(),
                    bind: view.bind,
                    state: status.state.as_str(),
                    attempts: status.attempts,
                    binds: status.binds,
                    bound_since: status.bound_since_ms,
                    next_attempt_at: status.next_attempt_ms,
                    last_error: status.last_error,
                    claims: view.claims.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Clean shutdown: claim nothing more, write no new submit, wait up to `[relay]
    /// shutdown_grace_ms` for the `submit_sm_resp`s of submits already written, record
    /// every outcome (claimed MTs not sent go back to the queue unmarked), unbind.
    /// Nothing is left for the next start's sweep to mark `resent_unknown` unless a
    /// response did not come within the grace period.
    pub async fn shutdown(&self) {
        self.shared.stop.send_replace(true);
        self.shared.wake.notify_waiters();
        let tasks: Vec<JoinHandle<()>> = match self.bind_tasks.lock() {
            Ok(mut tasks) => tasks.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        // The grace covers the answers; recording them and the unbind need a moment more.
        let bound = self.shared.relay.shutdown_grace() + Duration::from_secs(15);
        let deadline = tokio::time::Instant::now() + bound;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::error!("a bind did not stop within the shutdown bound; aborted");
                task.abort();
            }
        }
        // Each bind waited for its outcomes to be stored; the recorder is idle now.
        self.sweeper.abort();
        self.recorder.abort();
        tracing::info!("relay stopped");
    }

    /// Stop every task at once, without draining (a drop, or a crash-like stop):
    /// claimed rows are re-queued by the next start's sweep under the unknown-outcome
    /// rule. Prefer [`Relay::shutdown`].
    pub fn stop(&self) {
        self.shared.stop.send_replace(true);
        self.shared.wake.notify_waiters();
        if let Ok(tasks) = self.bind_tasks.lock() {
            for task in tasks.iter() {
                task.abort();
            }
        }
        self.sweeper.abort();
        self.recorder.abort();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn sweeper(shared: Arc<RelayShared>, receipt_ids: Vec<(String, ReceiptIds)>) {
    let configured = |operator: &str| {
        receipt_ids
            .iter()
            .find(|(name, _)| name == operator)
            .map_or(ReceiptIds::Auto, |(_, ids)| *ids)
    };
    let lease = Duration::from_secs(shared.relay.lease_secs);
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        // Renew the leases of what this process still holds, a third of the lease
        // before they could run out, so the sweep below never takes them.
        if renewed.elapsed() >= lease / 3 {
            renewed = tokio::time::Instant::now();
            let ids: Vec<i64> = shared
                .held
                .lock()
                .map(|h| h.iter().copied().collect())
                .unwrap_or_default();
            if !ids.is_empty() {
                let _turn = shared.write_turn().await;
                if let Err(e) = outbox::renew_leases(&shared.store, &ids, lease).await {
                    tracing::error!(error = %e, "cannot renew the leases of claimed MTs");
                }
            }
        }
        let swept = {
            let _turn = shared.write_turn().await;
            outbox::sweep(&shared.store).await
        };
        match swept {
            Ok((recovered, expired)) => {
                if recovered > 0 {
                    tracing::warn!(
                        recovered,
                        "re-queued MTs whose claim ran out (resent under the unknown-outcome rule)"
                    );
                    shared.wake.notify_waiters();
                }
                if expired > 0 {
                    tracing::warn!(expired, "MTs expired before they could be sent");
                }
            }
            Err(e) => tracing::error!(error = %e, "outbox sweep failed"),
        }
        let rematched = {
            let _turn = shared.write_turn().await;
            inbound::receipts::rematch(&shared.store, &configured).await
        };
        if let Err(e) = rematched {
            tracing::error!(error = %e, "receipt re-matching failed");
        }
        match inbound::mo::sweep(&shared.store, &shared.relay).await {
            Ok(stored) => {
                for record in stored.into_iter().filter(|m| m.status == "received") {
                    let _ = shared.mo_events.send(record);
                }
            }
            Err(e) => tracing::error!(error = %e, "closing expired long MOs failed"),
        }
    }
}
