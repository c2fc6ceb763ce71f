//! Who may run a call now: each partner has its own lane with
//! `partner_concurrent_calls` slots and a queue of `partner_queue` waiting calls;
//! behind the lanes, the engine's instance slots (`max_concurrent_calls`). A call
//! waits for a slot at most `queue_wait_ms`, first in, first out. A partner over
//! its share waits, or gets `concurrency-limit` naming its limit; it can never
//! take another partner's slot, so another partner never sees its load as an error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::CallError;
use crate::runtime::RuntimeConfig;

/// The lane a call queues in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// A partner's calls (its module calls and the `describe` of its uploads).
    Partner(i64),
    /// Calls on nobody's behalf (the local runner's `module check`).
    Local,
    /// A partner's shadow runs (issue 17 item 3): slots of their own, so a
    /// candidate never delays a live call of the same partner.
    Shadow(i64),
}

struct PartnerLane {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
}

/// The lanes and the engine's slots.
pub(super) struct Admission {
    engine_slots: Arc<Semaphore>,
    engine_total: u32,
    lanes: Mutex<HashMap<Lane, Arc<PartnerLane>>>,
    per_lane: u32,
    queue: u32,
    wait: Duration,
}

/// The slots a running call holds; dropped when it ends.
pub(super) struct Admitted {
    _lane: OwnedSemaphorePermit,
    _engine: OwnedSemaphorePermit,
}

impl Admission {
    pub(super) fn new(limits: &RuntimeConfig) -> Self {
        Self {
            engine_slots: Arc::new(Semaphore::new(limits.max_concurrent_calls as usize)),
            engine_total: limits.max_concurrent_calls,
            lanes: Mutex::new(HashMap::new()),
            per_lane: limits
                .partner_concurrent_calls
                .min(limits.max_concurrent_calls),
            queue: limits.partner_queue,
            wait: Duration::from_millis(limits.queue_wait_ms),
        }
    }

    fn lane(&self, lane: Lane) -> Arc<PartnerLane> {
        self.lanes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(lane)
            .or_insert_with(|| {
                Arc::new(PartnerLane {
                    slots: Arc::new(Semaphore::new(self.per_lane as usize)),
                    waiting: AtomicU32::new(0),
                })
            })
            .clone()
    }

    /// Take a slot in `lane`, then an engine slot, waiting at most `queue_wait_ms`
    /// in all.
    ///
    /// # Errors
    /// [`CallError::ConcurrencyLimit`] when the lane's slots are busy and its queue
    /// is full, or the wait ran out; [`CallError::Unavailable`] when the lane had a
    /// slot but every engine slot stayed busy (the host is overloaded).
    pub(super) async fn admit(&self, lane: Lane) -> Result<Admitted, CallError> {
        let started = tokio::time::Instant::now();
        let deadline = started + self.wait;
        let partner = self.lane(lane);
        let lane_permit = match partner.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let waiting = partner.waiting.fetch_add(1, Ordering::AcqRel);
                let _queued = Queued(&partner.waiting);
                if waiting >= self.queue {
                    return Err(CallError::ConcurrencyLimit(format!(
                        "{} calls of this partner are running and {} more are waiting \
                         ([runtime] partner_concurrent_calls = {}, partner_queue = {})",
                        self.per_lane, self.queue, self.per_lane, self.queue
                    )));
                }
                match tokio::time::timeout_at(deadline, partner.slots.clone().acquire_owned()).await
                {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_closed)) => {
                        return Err(CallError::Unavailable(
                            "the runtime is shutting down".into(),
                        ));
                    }
                    Err(_elapsed) => {
                        return Err(CallError::ConcurrencyLimit(format!(
                            "waited {} ms for one of this partner's {} call slots \
                             ([runtime] partner_concurrent_calls, queue_wait_ms)",
                            self.wait.as_millis(),
                            self.per_lane
                        )));
                    }
                }
            }
        };
        let engine_permit = match tokio::time::timeout_at(
            deadline,
            self.engine_slots.clone().acquire_owned(),
        )
        .await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => {
                return Err(CallError::Unavailable(
                    "the runtime is shutting down".into(),
                ));
            }
            Err(_elapsed) => {
                return Err(CallError::Unavailable(format!(
                    "all {} instance slots stayed busy for {} ms",
                    self.engine_total,
                    self.wait.as_millis()
                )));
            }
        };
        Ok(Admitted {
            _lane: lane_permit,
            _engine: engine_permit,
        })
    }
}

/// Counts a call in its lane's queue while it waits.
struct Queued<'a>(&'a AtomicU32);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
