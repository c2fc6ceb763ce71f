//! `[runtime]`: the limits applied to every call into a module.

use serde::{Deserialize, Serialize};

/// Limits applied to every call into a module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// CPU budget of one call, in milliseconds: time its code and its host calls
    /// run, measured at 2 ms epoch ticks; past it the call ends as `cpu-limit`.
    pub call_timeout_ms: u64,
    /// Wall-clock backstop of one call, in milliseconds: past it the call ends as
    /// `timeout`, whatever it was doing (at least `call_timeout_ms`).
    pub wall_timeout_ms: u64,
    /// Largest linear memory one call may grow to, in bytes.
    pub max_memory_bytes: usize,
    /// Largest total output of one call (all texts), in bytes.
    pub max_output_bytes: usize,
    /// Most variants a keyed bulletin may have.
    pub max_variants: usize,
    /// Most key-value operations one call may make.
    pub max_kv_ops: u32,
    /// Largest value in the key-value store, in bytes.
    pub max_kv_value_bytes: usize,
    /// Most keys one partner may store.
    pub max_kv_keys: u64,
    /// Most content-library and subscriber-attribute calls per call.
    pub max_data_ops: u32,
    /// Most log lines per call (the rest are counted and dropped).
    pub max_log_lines: u32,
    /// Calls that may run at once (pooling allocator slots).
    pub max_concurrent_calls: u32,
    /// Calls of one partner that may run at once (its share of the slots).
    pub partner_concurrent_calls: u32,
    /// Calls of one partner that may wait for one of its slots; more are refused
    /// at once with `concurrency-limit`.
    pub partner_queue: u32,
    /// How long a call waits for a slot before `concurrency-limit`, in milliseconds.
    pub queue_wait_ms: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            call_timeout_ms: 100,
            wall_timeout_ms: 1000,
            max_memory_bytes: 64 * 1024 * 1024,
            max_output_bytes: 64 * 1024,
            max_variants: 64,
            max_kv_ops: 100,
            max_kv_value_bytes: 64 * 1024,
            max_kv_keys: 100_000,
            max_data_ops: 200,
            max_log_lines: 50,
            max_concurrent_calls: 256,
            partner_concurrent_calls: 4,
            partner_queue: 64,
            queue_wait_ms: 1000,
        }
    }
}

impl RuntimeConfig {
    /// # Errors
    /// The key (`runtime…`) and why its value is refused.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive: [(&'static str, u64); 7] = [
            ("runtime.call_timeout_ms", self.call_timeout_ms),
            ("runtime.wall_timeout_ms", self.wall_timeout_ms),
            (
                "runtime.partner_concurrent_calls",
                u64::from(self.partner_concurrent_calls),
            ),
            ("runtime.max_memory_bytes", self.max_memory_bytes as u64),
            ("runtime.max_output_bytes", self.max_output_bytes as u64),
            ("runtime.max_variants", self.max_variants as u64),
            (
                "runtime.max_concurrent_calls",
                u64::from(self.max_concurrent_calls),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err((key, "must be greater than 0".into()));
        }
        if self.wall_timeout_ms < self.call_timeout_ms {
            return Err((
                "runtime.wall_timeout_ms",
                "must be at least runtime.call_timeout_ms".into(),
            ));
        }
        if self.max_memory_bytes < 1024 * 1024 {
            return Err(("runtime.max_memory_bytes", "must be at least 1 MiB".into()));
        }
        Ok(())
    }
}
