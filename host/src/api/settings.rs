//! `[http]` and `[admin]`: where the API listens, its body limits, and the admin key.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// `[http]`: the API's address and request size limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address the HTTP API listens on.
    pub listen: SocketAddr,
    /// Largest accepted module upload, in bytes.
    pub max_module_bytes: usize,
    /// Largest accepted JSON body, in bytes.
    pub max_json_bytes: usize,
    /// Requests a second each API key may make, sustained (0: no limit). Over it:
    /// 429 `rate-limited` with `Retry-After`.
    pub rate_per_key_per_second: u32,
    /// Requests a key may make at once before the sustained rate applies.
    pub rate_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_module_bytes: 32 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            rate_per_key_per_second: 50,
            rate_burst: 100,
        }
    }
}

/// `[admin]`: the admin API key.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin API key. Absent: one is generated and printed on first start.
    pub key: Option<String>,
}
