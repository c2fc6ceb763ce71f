//! The relay: the durable outbox, operator links over
//! SMPP 3.4, receipts and MO intake.
//!
//! - [`routing`]: number normalisation and longest-prefix routing to an operator.
//! - [`outbox`]: MT rows, claims, submit outcomes, retries, expiry, receipts applied.
//! - [`connector`]: one task per operator bind: submit loop and inbound handling.
//! - [`inbound`]: receipts (matched or kept) and MOs (long ones re-assembled).
//! - [`messages`]: what the API shows of an MT and its history.

pub mod connector;
pub mod inbound;
pub mod messages;
pub mod outbox;
pub mod routing;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;

use crate::compliance::Compliance;
use crate::config::{OperatorConfig, RelayConfig};
use crate::store::Store;
pub use inbound::MoRecord;
pub use outbox::{Basis, ChargePlan, NewMessage, OutboxError};
pub use routing::{RouteError, Routes};

/// How often leases, expiry and unmatched receipts are looked at.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// State every relay task shares.
pub struct RelayShared {
    pub store: Store,
    pub relay: RelayConfig,
    /// Woken when an MT is queued, so an idle bind sends it at once.
    pub wake: Notify,
    /// Every complete MO, for the keyword router.
    pub mo_events: broadcast::Sender<MoRecord>,
    stopping: AtomicBool,
}

impl RelayShared {
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }
}

/// The running relay: one task per operator bind plus the sweeper.
pub struct Relay {
    shared: Arc<RelayShared>,
    routes: Routes,
    compliance: Compliance,
    tasks: Vec<JoinHandle<()>>,
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
        let shared = Arc::new(RelayShared {
            store,
            relay,
            wake: Notify::new(),
            mo_events,
            stopping: AtomicBool::new(false),
        });
        let mut tasks = Vec::new();
        for operator in operators {
            for _ in 0..operator.binds {
                tasks.push(tokio::spawn(connector::run_bind(
                    shared.clone(),
                    operator.clone(),
                )));
            }
        }
        tasks.push(tokio::spawn(sweeper(shared.clone())));
        Self {
            shared,
            routes: Routes::new(operators),
            compliance,
            tasks,
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

    /// Wake the binds after MTs were queued by someone else (a push's bulk insert,
    /// a released suspension).
    pub fn wake(&self) {
        self.shared.wake.notify_waiters();
    }

    /// The compliance checks every MT passes.
    pub fn compliance(&self) -> &Compliance {
        &self.compliance
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

    /// Stop every task (binds are closed; claimed rows are re-queued by the next
    /// start's sweep under the unknown-outcome rule).
    pub fn stop(&self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.wake.notify_waiters();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn sweeper(shared: Arc<RelayShared>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        match outbox::sweep(&shared.store).await {
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
        if let Err(e) = inbound::rematch(&shared.store).await {
            tracing::error!(error = %e, "receipt re-matching failed");
        }
    }
}
