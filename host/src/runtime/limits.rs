//! What bounds one call, and the typed error a call ends with when a module
//! breaks a bound, traps or returns a business error.

use serde::Serialize;
use wasmtime::ResourceLimiter;

/// Why a call into a module did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call used more than its CPU budget (an endless loop, or simply too slow):
    /// time the module's code ran, plus its host calls, not time it waited for a
    /// worker thread.
    #[error("used more than its {limit_ms} ms CPU budget")]
    CpuLimit { limit_ms: u64 },
    /// The call was still not done when its wall-clock backstop ran out (a host
    /// call that blocked, or a machine too loaded to run it). Distinct from
    /// [`CallError::CpuLimit`]: the module may have used no CPU at all.
    #[error("still running after its {limit_ms} ms wall-clock limit")]
    Timeout { limit_ms: u64 },
    /// The module tried to grow its memory past the limit.
    #[error("tried to grow memory to {requested} bytes, over the {limit} byte limit")]
    MemoryLimit { limit: usize, requested: usize },
    /// The module returned more than the host accepts.
    #[error("output too large: {what} is {actual}, the limit is {limit}")]
    OutputLimit {
        what: &'static str,
        limit: usize,
        actual: usize,
    },
    /// The module called a host capability more often than one call may.
    #[error("made more than {limit} {what} calls in one call")]
    HostCallQuota { what: &'static str, limit: u32 },
    /// The module crashed (a panic, `unreachable`, an out-of-bounds access…).
    #[error("trapped: {0}")]
    Trap(String),
    /// The module returned something that breaks the contract (e.g. duplicate keys).
    #[error("invalid output: {0}")]
    InvalidOutput(String),
    /// The module returned a `module-error` on purpose.
    #[error("module error ({kind}): {message}")]
    Module { kind: &'static str, message: String },
    /// The host could not run the call (e.g. every instance slot busy). Not the
    /// module's fault, so it is not recorded against it.
    #[error("host unavailable: {0}")]
    Unavailable(String),
    /// The partner already runs as many calls as its share allows and this one
    /// could not wait for a slot (R-8.2: one partner never takes another's). Not
    /// recorded against the module.
    #[error("partner call limit: {0}")]
    ConcurrencyLimit(String),
}

impl CallError {
    /// A stable code for APIs and fault records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CpuLimit { .. } => "cpu-limit",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::OutputLimit { .. } => "output-limit",
            Self::HostCallQuota { .. } => "host-call-quota",
            Self::Trap(_) => "trap",
            Self::InvalidOutput(_) => "invalid-output",
            Self::Module { .. } => "module-error",
            Self::Unavailable(_) => "unavailable",
            Self::ConcurrencyLimit(_) => "concurrency-limit",
        }
    }

    /// Whether the fault belongs to the module (and is recorded against it).
    pub fn is_module_fault(&self) -> bool {
        !matches!(self, Self::Unavailable(_) | Self::ConcurrencyLimit(_))
    }

    /// Whether the same call may well succeed when tried again later: deadlines
    /// and a busy host are; a trap, a broken output limit or a `module-error` are
    /// not (the module would answer the same).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::CpuLimit { .. }
                | Self::Timeout { .. }
                | Self::Unavailable(_)
                | Self::ConcurrencyLimit(_)
        )
    }
}

/// A serialisable summary of a [`CallError`].
#[derive(Debug, Clone, Serialize)]
pub struct CallErrorBody {
    pub kind: &'static str,
    pub message: String,
}

impl From<&CallError> for CallErrorBody {
    fn from(e: &CallError) -> Self {
        Self {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Caps the memory and tables of one call's instance and remembers a refused
/// growth, so the resulting trap can be named precisely.
#[derive(Debug)]
pub struct CallLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    pub(crate) memory_refused: Option<usize>,
}

impl CallLimiter {
    pub fn new(max_memory_bytes: usize) -> Self {
        Self {
            max_memory_bytes,
            max_table_elements: 100_000,
            memory_refused: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.memory_refused = Some(desired);
            // An error (not `Ok(false)`) traps at once instead of letting the guest
            // see `memory.grow` fail and retry or limp on.
            return Err(wasmtime::format_err!(
                "memory limit: {desired} bytes requested, limit {}",
                self.max_memory_bytes
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }
}

/// Per-call quotas of host capabilities.
#[derive(Debug, Clone)]
pub struct Quota {
    pub kv_ops_limit: u32,
    pub data_ops_limit: u32,
    pub kv_ops_left: u32,
    pub data_ops_left: u32,
    pub log_lines_left: u32,
    pub logs_dropped: u32,
    /// Set when a quota was exceeded: the call then traps and this names why.
    pub exceeded: Option<CallError>,
}

/// CPU time of one call: the thread CPU time its own code used, read at
/// each epoch tick. A long call yields to the async executor once per tick, so
/// other partners' calls run between its slices on the same worker threads. What
/// counts is only the CPU its code and its lifting of values used: not the time it
/// waits to be resumed, not time the OS gave other processes, and not its data
/// calls waiting on the store (the wall-clock backstop bounds those, `timeout`).
#[derive(Debug)]
pub struct CpuMeter {
    limit_ns: u64,
    shared: std::sync::Arc<MeterState>,
    /// Wall time of the last yield.
    last_yield: std::time::Instant,
    pub(crate) exceeded: bool,
}

#[derive(Debug)]
struct MeterState {
    used_ns: std::sync::atomic::AtomicU64,
    /// Where counting last (re)started: the thread and its CPU clock then.
    mark: std::sync::Mutex<Mark>,
}

#[derive(Debug, Clone, Copy)]
struct Mark {
    thread: std::thread::ThreadId,
    cpu_ns: u64,
    wall: std::time::Instant,
}

impl Mark {
    fn now() -> Self {
        Self {
            thread: std::thread::current().id(),
            cpu_ns: thread_cpu_ns(),
            wall: std::time::Instant::now(),
        }
    }
}

/// This thread's CPU time, in nanoseconds.
#[allow(unsafe_code)]
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes one `timespec` through a valid pointer to a
    // local; CLOCK_THREAD_CPUTIME_ID is supported on every Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    u64::try_from(ts.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0))
}

impl MeterState {
    fn lock(&self) -> std::sync::MutexGuard<'_, Mark> {
        self.mark
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Count the CPU used since the mark and move the mark to now. A slice that
    /// moved threads without passing a mark is counted by the wall clock.
    fn checkpoint(&self) {
        let now = Mark::now();
        let mut mark = self.lock();
        let ns = if mark.thread == now.thread {
            now.cpu_ns.saturating_sub(mark.cpu_ns)
        } else {
            u64::try_from(now.wall.duration_since(mark.wall).as_nanos()).unwrap_or(u64::MAX)
        };
        *mark = now;
        drop(mark);
        self.used_ns
            .fetch_add(ns, std::sync::atomic::Ordering::Relaxed);
    }

    /// Start counting again from now (after a yield or a data call).
    fn restart(&self) {
        *self.lock() = Mark::now();
    }
}

impl CpuMeter {
    pub fn new(limit_ms: u64) -> Self {
        Self {
            limit_ns: limit_ms.saturating_mul(1_000_000),
            shared: std::sync::Arc::new(MeterState {
                used_ns: std::sync::atomic::AtomicU64::new(0),
                mark: std::sync::Mutex::new(Mark::now()),
            }),
            last_yield: std::time::Instant::now(),
            exceeded: false,
        }
    }

    /// CPU time used so far.
    pub fn used(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(
            self.shared
                .used_ns
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// CPU time used up to now, counting the slice since the last mark: what a
    /// finished call used.
    pub fn finish(&self) -> std::time::Duration {
        self.shared.checkpoint();
        self.used()
    }

    /// Mark a data call (the store): its time is not the module's CPU time. The
    /// guard holds no borrow of the call state, so it can live across awaits.
    pub fn host_call(&self) -> HostCall {
        self.shared.checkpoint();
        HostCall {
            shared: self.shared.clone(),
        }
    }

    /// Called at each epoch tick the call's code sees: count the CPU since the
    /// last mark, stop the call past its budget, otherwise yield once a tick's
    /// worth of wall time has passed since the last yield.
    pub fn on_tick(&mut self, tick: std::time::Duration) -> wasmtime::UpdateDeadline {
        self.shared.checkpoint();
        if self.used().as_nanos() > u128::from(self.limit_ns) {
            self.exceeded = true;
            return wasmtime::UpdateDeadline::Interrupt;
        }
        if self.last_yield.elapsed() < tick {
            return wasmtime::UpdateDeadline::Continue(1);
        }
        self.last_yield = std::time::Instant::now();
        let shared = self.shared.clone();
        wasmtime::UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                tokio::task::yield_now().await;
                shared.restart();
            }),
        )
    }
}

/// A data call in progress; see [`CpuMeter::host_call`].
#[derive(Debug)]
pub struct HostCall {
    shared: std::sync::Arc<MeterState>,
}

impl Drop for HostCall {
    fn drop(&mut self) {
        self.shared.restart();
    }
}
