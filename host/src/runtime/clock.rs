//! The call clock: the only time a module sees. Tongdao's `clock` import
//! and WASI's wall and monotonic clocks all answer from it, and WASI's sleeps
//! (`subscribe-duration`, `subscribe-instant`, what `std::thread::sleep` and
//! `poll` use) advance it instead of blocking: a sleeping module returns at once
//! and sees the time it asked for pass, so a sleep can never hold an instance slot
//! or outlast the call's limits.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::Resource;
use wasmtime_wasi::clocks::{HostMonotonicClock, HostWallClock, WasiClocksView};
use wasmtime_wasi::p2::DynPollable;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;

use super::host::CallState;

/// One call's clock: the host's time when the call began, plus the time that has
/// run since, plus the time the module slept. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct CallClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Unix time of the call's start, in milliseconds (the host's clock).
    start_ms: i64,
    started: Instant,
    slept_ns: AtomicU64,
}

impl CallClock {
    /// A clock starting at the host's time `start_ms` (Unix milliseconds).
    pub fn new(start_ms: i64) -> Self {
        Self {
            inner: Arc::new(Inner {
                start_ms,
                started: Instant::now(),
                slept_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Nanoseconds since the call began, sleeps included.
    pub fn elapsed_ns(&self) -> u64 {
        let ran = u64::try_from(self.inner.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        ran.saturating_add(self.inner.slept_ns.load(Ordering::Relaxed))
    }

    /// Unix milliseconds on this clock.
    pub fn now_ms(&self) -> i64 {
        let elapsed_ms = i64::try_from(self.elapsed_ns() / 1_000_000).unwrap_or(i64::MAX);
        self.inner.start_ms.saturating_add(elapsed_ms)
    }

    /// Let `ns` nanoseconds pass for the module, without waiting.
    fn sleep(&self, ns: u64) {
        // Saturating: a module asking to sleep "forever" just sees time run out.
        let _ = self
            .inner
            .slept_ns
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(ns))
            });
    }
}

impl HostWallClock for CallClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.now_ms()).unwrap_or(0))
    }
}

impl HostMonotonicClock for CallClock {
    fn resolution(&self) -> u64 {
        1_000
    }

    fn now(&self) -> u64 {
        self.elapsed_ns()
    }
}

/// WASI's monotonic clock, linked over the one `wasmtime-wasi` provides: the same
/// readings, but a subscription is ready at once and moves the call clock forward
/// by the time asked for.
impl monotonic_clock::Host for CallState {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.clock.elapsed_ns())
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(HostMonotonicClock::resolution(&self.clock))
    }

    fn subscribe_instant(
        &mut self,
        when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        let now = self.clock.elapsed_ns();
        self.clock.sleep(when.saturating_sub(now));
        ready_pollable(self)
    }

    fn subscribe_duration(
        &mut self,
        duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        self.clock.sleep(duration);
        ready_pollable(self)
    }
}

/// A pollable that is ready at once (it yields to the executor once, as WASI's
/// zero-length sleep does).
fn ready_pollable(state: &mut CallState) -> wasmtime::Result<Resource<DynPollable>> {
    monotonic_clock::Host::subscribe_duration(&mut WasiClocksView::clocks(state), 0)
}
