//! One typed configuration: `tongdao.toml` plus `TONGDAO_SECTION__KEY` environment
//! overrides. Every key is optional; the defaults run on one machine. Unknown keys and
//! bad values are refused at start with the key's name.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole configuration, as read from file and environment.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub runtime: RuntimeConfig,
    /// Registry quotas, version retention and fault aggregation (`[modules]`).
    pub modules: crate::modules::RegistryConfig,
    pub admin: AdminConfig,
    pub relay: RelayConfig,
    pub schedule: ScheduleConfig,
    /// The host's replies to users: short code, confirmation window, help text.
    pub dialogue: crate::mo::DialogueConfig,
    /// Content policy, quiet hours, caps and detectors.
    pub compliance: crate::compliance::ComplianceConfig,
    /// How far the partner's own figures are trusted.
    pub settlement: crate::settlement::SettlementConfig,
    /// The operator links (SMPP 3.4 SMSCs). Empty: nothing is sent (with `serve
    /// --demo`, two operators on the built-in simulator).
    pub operators: Vec<OperatorConfig>,
}

pub use crate::relay::settings::{
    ConcatMode, IncompleteMo, OperatorConfig, ReceiptIds, RelayConfig,
};

/// The push scheduler: firing schedules and fanning runs out.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Run the scheduler in this process (every replica may; firings and runs are
    /// claimed, so none is done twice).
    pub enabled: bool,
    /// How often due schedules and claimable runs are looked for.
    pub tick_ms: u64,
    /// Subscriptions fanned out per transaction. Large on purpose: on SQLite every
    /// transaction queues for the one write lock behind the relay's, and SQLite's
    /// busy handler waits in growing sleeps, so fewer, larger batches go faster.
    pub batch: u32,
    /// How long a run's claim holds without progress before another replica resumes it.
    pub lease_secs: u64,
    /// A firing noticed later than this after its time counts as missed (downtime),
    /// and the schedule's missed-run policy applies.
    pub grace_secs: u64,
    /// A paused run (partner or service suspended) resumes from its cursor only this
    /// long after its firing; later it ends as `expired` (yesterday's bulletin stays unsent).
    pub resume_within_secs: u64,
    /// How often a paused run checks whether it may go on.
    pub paused_recheck_secs: u64,
    /// Runs one process fans out at once.
    pub concurrent_runs: u32,
    /// Time zone of cron expressions and push dates (the platform time zone, R-4.5).
    pub time_zone: String,
    /// Most "push now" runs per service per platform day (issue 10 item 3); 0 = no
    /// limit. Scheduled firings do not count.
    pub push_now_daily_limit: u32,
    /// Bulletin calls a run makes before it gives up on a transient fault
    /// (`cpu-limit`, `timeout`, `unavailable`, `concurrency-limit`).
    pub bulletin_attempts: u32,
    /// Pause before the second attempt; it doubles up to `bulletin_retry_max_ms`.
    pub bulletin_retry_initial_ms: u64,
    pub bulletin_retry_max_ms: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_ms: 1000,
            batch: 10_000,
            lease_secs: 30,
            grace_secs: 300,
            resume_within_secs: 6 * 3600,
            paused_recheck_secs: 30,
            concurrent_runs: 2,
            time_zone: "Asia/Shanghai".into(),
            push_now_daily_limit: 10,
            bulletin_attempts: 5,
            bulletin_retry_initial_ms: 1000,
            bulletin_retry_max_ms: 60_000,
        }
    }
}

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

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The admin API key. Absent: one is generated and printed on first start.
    pub key: Option<String>,
}

/// A configuration that could not be read or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Parse(#[from] Box<figment::Error>),
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
}

impl Config {
    /// Read `path` (if given; it must exist) and the `TONGDAO_SECTION__KEY` variables.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::Missing(path.to_path_buf()));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        // Only `TONGDAO_<SECTION>__<KEY>` variables are configuration; others with the
        // prefix (e.g. TONGDAO_TEST_DATABASE_URL) belong to tools and tests.
        let env = Env::prefixed("TONGDAO_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        let config: Config = figment.merge(env).extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let r = &self.runtime;
        let positive: [(&'static str, u64); 9] = [
            ("runtime.call_timeout_ms", r.call_timeout_ms),
            ("runtime.wall_timeout_ms", r.wall_timeout_ms),
            (
                "runtime.partner_concurrent_calls",
                u64::from(r.partner_concurrent_calls),
            ),
            ("runtime.max_memory_bytes", r.max_memory_bytes as u64),
            ("runtime.max_output_bytes", r.max_output_bytes as u64),
            ("runtime.max_variants", r.max_variants as u64),
            (
                "runtime.max_concurrent_calls",
                u64::from(r.max_concurrent_calls),
            ),
            (
                "store.max_connections",
                u64::from(self.store.max_connections),
            ),
            ("http.max_module_bytes", self.http.max_module_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be greater than 0".into(),
                });
            }
        }
        if r.wall_timeout_ms < r.call_timeout_ms {
            return Err(ConfigError::Invalid {
                key: "runtime.wall_timeout_ms",
                reason: "must be at least runtime.call_timeout_ms".into(),
            });
        }
        if r.max_memory_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "runtime.max_memory_bytes",
                reason: "must be at least 1 MiB".into(),
            });
        }
        if let Some((key, reason)) = self.modules.invalid() {
            return Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            });
        }
        let url = self.store.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "store.url",
                reason: format!("`{url}` is neither sqlite:// nor postgres://"),
            });
        }
        self.settlement
            .validate()
            .map_err(|reason| ConfigError::Invalid {
                key: "settlement.hold_above_bp",
                reason,
            })?;
        let mut names = std::collections::HashSet::new();
        for op in &self.operators {
            if op.name.is_empty() || !names.insert(op.name.as_str()) {
                return Err(ConfigError::Invalid {
                    key: "operators.name",
                    reason: format!("`{}` is empty or used twice", op.name),
                });
            }
            if op.binds == 0 || op.window == 0 {
                return Err(ConfigError::Invalid {
                    key: "operators.binds",
                    reason: format!(
                        "operator `{}`: binds and window must be at least 1",
                        op.name
                    ),
                });
            }
            if op.prefixes.is_empty()
                || op
                    .prefixes
                    .iter()
                    .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(ConfigError::Invalid {
                    key: "operators.prefixes",
                    reason: format!(
                        "operator `{}`: prefixes must be non-empty digit strings",
                        op.name
                    ),
                });
            }
        }
        if self.relay.batch == 0 || self.relay.lease_secs == 0 || self.relay.validity_secs == 0 {
            return Err(ConfigError::Invalid {
                key: "relay",
                reason: "batch, lease_secs and validity_secs must be greater than 0".into(),
            });
        }
        let s = &self.schedule;
        if s.tick_ms == 0
            || s.batch == 0
            || s.lease_secs == 0
            || s.concurrent_runs == 0
            || s.bulletin_attempts == 0
        {
            return Err(ConfigError::Invalid {
                key: "schedule",
                reason: "tick_ms, batch, lease_secs, concurrent_runs and bulletin_attempts must be greater than 0"
                    .into(),
            });
        }
        if s.batch > 50_000 {
            return Err(ConfigError::Invalid {
                key: "schedule.batch",
                reason: "at most 50000 subscriptions per transaction".into(),
            });
        }
        if crate::schedule::cron::time_zone(&s.time_zone).is_err() {
            return Err(ConfigError::Invalid {
                key: "schedule.time_zone",
                reason: format!("`{}` is not a known time zone", s.time_zone),
            });
        }
        if let Some(key) = &self.admin.key
            && key.len() < 16
        {
            return Err(ConfigError::Invalid {
                key: "admin.key",
                reason: "must be at least 16 characters".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's `Jail` closures return its own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn load_in(jail: &mut Jail, toml: &str) -> Result<Config, ConfigError> {
        jail.create_file("tongdao.toml", toml)
            .map_err(|e| ConfigError::Invalid {
                key: "test",
                reason: e.to_string(),
            })?;
        Config::load(Some(Path::new("tongdao.toml")))
    }

    #[test]
    fn defaults_run_on_one_machine() {
        Jail::expect_with(|_jail| {
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
            assert_eq!(
                config.store.database_url(),
                "sqlite://tongdao-data/tongdao.db"
            );
            assert_eq!(config.runtime, RuntimeConfig::default());
            assert!(config.admin.key.is_none());
            Ok(())
        });
    }

    #[test]
    fn file_and_environment_override_defaults() {
        Jail::expect_with(|jail| {
            jail.set_env("TONGDAO_RUNTIME__CALL_TIMEOUT_MS", "250");
            jail.set_env("TONGDAO_HTTP__LISTEN", "0.0.0.0:9000");
            // Variables without a section belong to tools, not to the configuration.
            jail.set_env("TONGDAO_TEST_DATABASE_URL", "postgres://x/y");
            let config = load_in(jail, "[runtime]\ncall_timeout_ms = 80\nmax_kv_ops = 7\n")
                .map_err(|e| e.to_string())?;
            assert_eq!(
                config.runtime.call_timeout_ms, 250,
                "environment beats the file"
            );
            assert_eq!(config.runtime.max_kv_ops, 7);
            assert_eq!(config.http.listen.to_string(), "0.0.0.0:9000");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key() {
        Jail::expect_with(|jail| {
            let error = load_in(jail, "[http]\nlistn = \"1.2.3.4:1\"\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("listn"), "{error}");
            let error = load_in(jail, "[runtime]\ncall_timeout_ms = \"soon\"\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("call_timeout_ms"), "{error}");
            let error = load_in(jail, "[runtime]\ncall_timeout_ms = 0\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("runtime.call_timeout_ms"), "{error}");
            let error = load_in(jail, "[store]\nurl = \"mysql://x\"\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("store.url"), "{error}");
            let error = load_in(jail, "[nonsense]\nx = 1\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("nonsense"), "{error}");
            jail.set_env("TONGDAO_HTTP__LISTN", "1");
            let error = Config::load(None).unwrap_err().to_string();
            assert!(error.contains("listn"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn schedule_settings_are_checked() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, "[schedule]\nbatch = 500\nlease_secs = 10\n")
                .map_err(|e| e.to_string())?;
            assert_eq!(
                (config.schedule.batch, config.schedule.lease_secs),
                (500, 10)
            );
            assert_eq!(config.schedule.time_zone, "Asia/Shanghai");
            for (toml, key) in [
                ("[schedule]\nbatch = 0\n", "schedule"),
                (
                    "[schedule]\ntime_zone = \"Mars/Olympus\"\n",
                    "schedule.time_zone",
                ),
                ("[schedule]\ntick = 5\n", "tick"),
            ] {
                let error = load_in(jail, toml).unwrap_err().to_string();
                assert!(error.contains(key), "{toml}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        Jail::expect_with(|_jail| {
            assert!(matches!(
                Config::load(Some(Path::new("nope.toml"))),
                Err(ConfigError::Missing(_))
            ));
            Ok(())
        });
    }
}
