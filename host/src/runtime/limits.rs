//! What bounds one call, and the typed error a call ends with when a module
//! breaks a bound, traps or returns a business error.

use serde::Serialize;
use wasmtime::ResourceLimiter;

/// Why a call into a module did not produce a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The call ran past its deadline (an endless loop, or simply too slow).
    #[error("ran past its {limit_ms} ms deadline")]
    CpuLimit { limit_ms: u64 },
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
}

impl CallError {
    /// A stable code for APIs and fault records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CpuLimit { .. } => "cpu-limit",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::OutputLimit { .. } => "output-limit",
            Self::HostCallQuota { .. } => "host-call-quota",
            Self::Trap(_) => "trap",
            Self::InvalidOutput(_) => "invalid-output",
            Self::Module { .. } => "module-error",
            Self::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the fault belongs to the module (and is recorded against it).
    pub fn is_module_fault(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
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
