//! `[webhooks]`: the partner event feed and signed webhook deliveries.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// How events are fed, signed, sent and retried.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Allow endpoint URLs on loopback, private, link-local and other non-public
    /// addresses (tests and demos). Off by default: a partner could otherwise make
    /// the platform call into its own network (SSRF).
    pub allow_private: bool,
    /// How often the feeder reads the source records, and the sender looks for due
    /// deliveries, in ms.
    pub poll_ms: u64,
    /// On PostgreSQL a source row is fed once it is this old (ms): ids are taken
    /// before commit, so a younger row may still have an uncommitted, lower-id
    /// neighbour. Sources read by time (runs, statements) wait this long on
    /// SQLite too.
    pub feed_lag_ms: u64,
    /// Timeout of one POST, in ms.
    pub timeout_ms: u64,
    /// First retry after this many ms; doubles per attempt up to `retry_max_ms`,
    /// with jitter (each pause is uniformly between half of it and all of it).
    pub retry_initial_ms: u64,
    /// The longest pause between attempts (default 1 h).
    pub retry_max_ms: u64,
    /// A delivery still failing this long after its event is marked `failed`
    /// (default 24 h); it can still be replayed.
    pub give_up_secs: u64,
    /// After a rotation the previous secret keeps signing beside the new one this
    /// long (default 24 h): both signatures are sent, so the partner switches at
    /// any time within it.
    pub rotation_grace_secs: u64,
    /// Deliveries sent at once by one process.
    pub concurrency: usize,
    /// A PEM file of extra CA certificates trusted for `https` endpoints, beside
    /// the built-in web PKI roots (a private deployment's CA, tests). `None`: the
    /// web PKI roots only.
    pub ca_file: Option<PathBuf>,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            allow_private: false,
            poll_ms: 500,
            feed_lag_ms: 2000,
            timeout_ms: 10_000,
            retry_initial_ms: 10_000,
            retry_max_ms: 3_600_000,
            give_up_secs: 86_400,
            rotation_grace_secs: 86_400,
            concurrency: 16,
            ca_file: None,
        }
    }
}

impl WebhooksConfig {
    /// Check the values.
    ///
    /// # Errors
    /// The key and the reason for a value that cannot work.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("webhooks.poll_ms", self.poll_ms),
            ("webhooks.timeout_ms", self.timeout_ms),
            ("webhooks.retry_initial_ms", self.retry_initial_ms),
            ("webhooks.concurrency", self.concurrency as u64),
        ] {
            if value == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err((
                "webhooks.retry_max_ms",
                "must be at least retry_initial_ms".into(),
            ));
        }
        self.ca_certificates()
            .map_err(|reason| ("webhooks.ca_file", reason))?;
        Ok(())
    }

    /// The certificates of `ca_file` (none without one).
    ///
    /// # Errors
    /// Why the file cannot be used: unreadable, not PEM, or no certificate in it.
    pub fn ca_certificates(&self) -> Result<Vec<reqwest::Certificate>, String> {
        let Some(path) = &self.ca_file else {
            return Ok(Vec::new());
        };
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not a PEM certificate bundle: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{}: holds no certificate", path.display()));
        }
        Ok(certificates)
    }
}
