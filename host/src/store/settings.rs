//! `[store]`: where the data lives (SQLite file or PostgreSQL) and the pool size.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[store]`: the database and the data directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory for the SQLite file and the compiled-module cache.
    pub data_dir: PathBuf,
    /// `sqlite://path` or `postgres://…`; empty means `sqlite://<data_dir>/tongdao.db`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("tongdao-data"),
            url: String::new(),
            max_connections: 8,
        }
    }
}

impl StoreConfig {
    /// The database URL to connect to.
    pub fn database_url(&self) -> String {
        if self.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("tongdao.db").display())
        } else {
            self.url.clone()
        }
    }

    /// Where compiled components are cached.
    pub fn cache_dir(&self) -> PathBuf {
        self.data_dir.join("module-cache")
    }
}
