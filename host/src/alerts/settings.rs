//! `[alerts]`: when the anomaly alerts open.

use serde::{Deserialize, Serialize};

/// Thresholds of the anomaly alerts. An alert opens when its condition holds at
/// an evaluation and clears itself at the first evaluation where it does not.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often the evaluator looks, in ms.
    pub interval_ms: u64,
    /// The window rates and counts are measured over, in seconds.
    pub window_secs: u64,
    /// `delivery-rate`: delivered ÷ final MTs in the window, per operator and per
    /// partner, below this (basis points, 8000 = 80 %) …
    pub delivery_rate_min_bp: i64,
    /// … once at least this many MTs are final in the window.
    pub delivery_min_final: i64,
    /// `failure-reason`: one failure reason makes at least this share of an
    /// operator's final MTs (bp) …
    pub failure_reason_share_bp: i64,
    /// … and at least this many of them.
    pub failure_reason_min: i64,
    /// `bind-down`: no bind of an operator is bound for this long (seconds).
    pub bind_down_secs: u64,
    /// `bind-flapping`: an operator's binds were made this many times within the
    /// window and a bind is not stable now (it dropped soon after binding).
    pub flap_binds: u64,
    /// `queue-age`: an operator's oldest due queued MT waited this long (seconds).
    pub queue_age_secs: u64,
    /// `volume-spike`: a partner queued at least this percentage of its own
    /// average per window over the `baseline_hours` before the window …
    pub volume_spike_pct: i64,
    /// … and at least this many MTs in the window.
    pub volume_min: i64,
    /// How far back a partner's baseline goes (hours).
    pub baseline_hours: u64,
    /// `module-faults`: faults of one module within the window.
    pub module_faults: i64,
    /// `complaints`: complaints against one service within the window.
    pub complaints: i64,
    /// `unsubscribes`: subscriptions of one service cancelled within the window.
    pub unsubscribes: i64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            interval_ms: 15_000,
            window_secs: 900,
            delivery_rate_min_bp: 8000,
            delivery_min_final: 50,
            failure_reason_share_bp: 3000,
            failure_reason_min: 30,
            bind_down_secs: 60,
            flap_binds: 3,
            queue_age_secs: 600,
            volume_spike_pct: 500,
            volume_min: 1000,
            baseline_hours: 24,
            module_faults: 50,
            complaints: 5,
            unsubscribes: 100,
        }
    }
}

impl AlertsConfig {
    /// Check the values.
    ///
    /// # Errors
    /// The key and the reason for a value that cannot work.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.interval_ms == 0 {
            return Err(("alerts.interval_ms", "must be greater than 0".into()));
        }
        if self.window_secs == 0 {
            return Err(("alerts.window_secs", "must be greater than 0".into()));
        }
        if !(0..=10_000).contains(&self.delivery_rate_min_bp)
            || !(0..=10_000).contains(&self.failure_reason_share_bp)
        {
            return Err((
                "alerts.delivery_rate_min_bp",
                "rates are basis points, 0 to 10000".into(),
            ));
        }
        Ok(())
    }
}
