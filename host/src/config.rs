//! One typed configuration: `tongdao.toml` plus `TONGDAO_SECTION__KEY` environment
//! overrides. Every key is optional; the defaults run on one machine. Unknown keys and
//! bad values are refused at start with the key's name.
//!
//! Each section's type lives with the module that uses it (`[runtime]` in
//! [`crate::runtime`], `[schedule]` in [`crate::schedule`], …); this module only
//! composes them, reads file and environment, and runs every section's checks. Nothing
//! below the start-up code imports `config`.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

pub use crate::alerts::AlertsConfig;
pub use crate::api::{AdminConfig, HttpConfig};
pub use crate::clock::PlatformConfig;
pub use crate::complaints::ComplaintsConfig;
pub use crate::compliance::ComplianceConfig;
pub use crate::mo::DialogueConfig;
pub use crate::modules::RegistryConfig;
pub use crate::relay::settings::{
    ConcatMode, IncompleteMo, OperatorConfig, ReceiptIds, RelayConfig,
};
pub use crate::retention::RetentionConfig;
pub use crate::runtime::RuntimeConfig;
pub use crate::schedule::ScheduleConfig;
pub use crate::settlement::SettlementConfig;
pub use crate::store::StoreConfig;
pub use crate::telemetry::{LogConfig, LogFormat};
pub use crate::webhooks::WebhooksConfig;

/// The whole configuration, as read from file and environment.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The platform time zone (`time_zone`) that months, quiet hours, schedules,
    /// statements and the modules' clock share.
    pub platform: PlatformConfig,
    pub http: HttpConfig,
    pub store: StoreConfig,
    pub runtime: RuntimeConfig,
    /// Registry quotas, version retention and fault aggregation (`[modules]`).
    pub modules: RegistryConfig,
    pub admin: AdminConfig,
    pub relay: RelayConfig,
    pub schedule: ScheduleConfig,
    /// The host's replies to users: short code, confirmation window, help text.
    pub dialogue: DialogueConfig,
    /// Content policy, quiet hours, caps and detectors.
    pub compliance: ComplianceConfig,
    /// How far the partner's own figures are trusted.
    pub settlement: SettlementConfig,
    /// Log lines: `format = "text" | "json"` (issue 15).
    pub log: LogConfig,
    /// Anomaly alert thresholds.
    pub alerts: AlertsConfig,
    /// The partner event feed and webhook deliveries.
    pub webhooks: WebhooksConfig,
    /// The complaints register: due hours per cause, channels, the platform's
    /// contacts.
    pub complaints: ComplaintsConfig,
    /// How long the history of MTs and MOs is kept, and the purge's pace.
    pub retention: RetentionConfig,
    /// The operator links (SMPP 3.4 SMSCs). Empty: nothing is sent (with `serve
    /// --demo`, two operators on the built-in simulator).
    pub operators: Vec<OperatorConfig>,
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
        let invalid = |(key, reason): (&'static str, String)| ConfigError::Invalid { key, reason };
        self.platform
            .validate()
            .map_err(|reason| invalid(("platform.time_zone", reason)))?;
        self.runtime.validate().map_err(invalid)?;
        self.complaints.validate().map_err(invalid)?;
        self.retention.validate().map_err(invalid)?;
        self.schedule.validate().map_err(invalid)?;
        self.alerts.validate().map_err(invalid)?;
        self.webhooks.validate().map_err(invalid)?;
        for (key, value) in [
            (
                "store.max_connections",
                u64::from(self.store.max_connections),
            ),
            ("http.max_module_bytes", self.http.max_module_bytes as u64),
        ] {
            if value == 0 {
                return Err(invalid((key, "must be greater than 0".into())));
            }
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
            op.check_protocol().map_err(|reason| ConfigError::Invalid {
                key: "operators.protocol",
                reason,
            })?;
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

    /// Issue 15 items 5-6: `[complaints]` and `[retention]` are read and checked
    /// with the key named.
    #[test]
    fn complaints_and_retention_settings_are_checked() {
        Jail::expect_with(|jail| {
            let config = load_in(
                jail,
                "[retention]\nmonths = 12\nbatch = 100\n[complaints.due_hours]\ncontent = 12\nchannel = 2\nbilling = 24\nunsubscribe = 6\n",
            )
            .map_err(|e| e.to_string())?;
            assert_eq!((config.retention.months, config.retention.batch), (12, 100));
            assert_eq!(config.complaints.due_hours["channel"], 2);
            for (toml, key) in [
                ("[retention]\nmonths = 0\n", "retention.months"),
                ("[retention]\nbatch = 0\n", "retention.batch"),
                // Partial maps merge with the defaults; a zero or an unknown cause is refused.
                (
                    "[complaints.due_hours]\ncontent = 0\n",
                    "complaints.due_hours",
                ),
                (
                    "[complaints.due_hours]\nweather = 3\n",
                    "complaints.due_hours",
                ),
                ("[complaints]\nchannels = []\n", "complaints.channels"),
            ] {
                let error = load_in(jail, toml).unwrap_err().to_string();
                assert!(error.contains(key), "{toml}: {error}");
            }
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
            for (toml, key) in [
                ("[schedule]\nbatch = 0\n", "schedule"),
                ("[schedule]\ntick = 5\n", "tick"),
            ] {
                let error = load_in(jail, toml).unwrap_err().to_string();
                assert!(error.contains(key), "{toml}: {error}");
            }
            Ok(())
        });
    }

    #[test]
    fn one_platform_time_zone_and_the_old_key_is_refused_with_where_it_went() {
        Jail::expect_with(|jail| {
            let config = load_in(jail, "").map_err(|e| e.to_string())?;
            assert_eq!(config.platform.time_zone, "Asia/Shanghai");
            let config =
                load_in(jail, "[platform]\ntime_zone = \"UTC\"\n").map_err(|e| e.to_string())?;
            assert_eq!(config.platform.time_zone, "UTC");
            let error = load_in(jail, "[platform]\ntime_zone = \"Mars/Olympus\"\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("platform.time_zone"), "{error}");
            assert!(error.contains("Mars/Olympus"), "{error}");
            // The retired `[schedule] time_zone` moved only schedules; taking it as
            // the platform zone would silently move billing months, so it is refused
            // with the key to use instead.
            let error = load_in(jail, "[schedule]\ntime_zone = \"UTC\"\n")
                .unwrap_err()
                .to_string();
            assert!(error.contains("schedule.time_zone"), "{error}");
            assert!(error.contains("[platform] time_zone = \"UTC\""), "{error}");
            jail.set_env("TONGDAO_PLATFORM__TIME_ZONE", "Europe/Berlin");
            let config = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(config.platform.time_zone, "Europe/Berlin");
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
