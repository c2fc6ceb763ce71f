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
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_module_bytes: 32 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
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
