//! `[compliance]`: content policy, quiet hours, caps and detector thresholds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What content may leave and when.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ComplianceConfig {
    /// Words no MT may contain, matched after folding (width, case, spacing,
    /// punctuation, look-alike letters), so `赌 博` and `ＶＩＡＧＲＡ` are caught.
    pub prohibited_words: Vec<String>,
    /// Regular expressions matched against the folded text (lower case, no spaces
    /// or punctuation).
    pub prohibited_patterns: Vec<String>,
    /// Extra lists per operator name, on top of the common ones.
    pub operators: BTreeMap<String, OperatorPolicy>,
    /// Every partner MT carries the partner's signature `【display name】`:
    /// `append` adds it at the end when the text lacks it (the stored and hashed
    /// text is what is sent), `require` blocks a text without it as a violation,
    /// `off` checks nothing.
    pub signature: SignatureMode,
    /// Longest MT, in SMS segments.
    pub max_segments: u32,
    /// Whether MTs may carry links (URLs, `www.`, bare domains).
    pub allow_links: bool,
    /// Local time window (platform time zone) in which pushes wait, `HH:MM-HH:MM`
    /// (seconds allowed: `HH:MM:SS`); it may wrap midnight. Replies to a user's own
    /// MO still go. Empty: no quiet hours.
    pub quiet_hours: String,
    /// Most MTs one partner may queue per platform day; 0 = no cap.
    pub partner_daily_cap: i64,
    /// Most platform notices one number may receive per platform day that do not
    /// answer a message of its own (confirmation requests started through the
    /// API); 0 = no cap. Answers to the user's own messages are never capped.
    pub notice_daily_cap: i64,
    /// Control and invisible characters (C0/C1 controls but line breaks, ESC
    /// sequences, bidi overrides such as U+202E, zero-width characters: Unicode
    /// categories Cc and Cf) in a text about to be queued: `refuse` it with the
    /// rule `control-character` (default), or `strip` them and send the rest.
    pub control_characters: ControlMode,
    /// The highest imbalance fee per MT any operator may charge, in fen (the top of
    /// its configured range). A monthly service's per-subscriber cap is derived from
    /// it so imbalance fees never exceed the monthly price.
    pub max_imbalance_fee_fen: i64,
    pub detectors: DetectorConfig,
}

impl Default for ComplianceConfig {
    fn default() -> Self {
        Self {
            prohibited_words: ["赌博", "博彩", "六合彩", "代开发票", "办证", "枪支"]
                .map(String::from)
                .to_vec(),
            prohibited_patterns: Vec::new(),
            operators: BTreeMap::new(),
            signature: SignatureMode::Append,
            max_segments: 5,
            allow_links: false,
            quiet_hours: "21:00-08:00".into(),
            partner_daily_cap: 0,
            notice_daily_cap: 5,
            control_characters: ControlMode::Refuse,
            max_imbalance_fee_fen: 5,
            detectors: DetectorConfig::default(),
        }
    }
}

/// How the mandatory signature is enforced.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureMode {
    Append,
    Require,
    Off,
}

/// What the last gate does with control and invisible characters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ControlMode {
    Refuse,
    Strip,
}

/// Lists that apply to one operator's traffic only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorPolicy {
    pub prohibited_words: Vec<String>,
    pub prohibited_patterns: Vec<String>,
}

/// Thresholds of the detectors; each finding is a violation, and rules named
/// in `auto_suspend` also suspend the service at once.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorConfig {
    /// How often the detectors look, and how far back.
    pub interval_secs: u64,
    pub window_secs: u64,
    /// MTs refused for want of opt-in (bulk sending outside subscriptions) per
    /// partner within the window.
    pub opt_in_refusals: i64,
    /// Paid MTs with the same folded text to one user within the window (fee-only
    /// traffic, 纯代收费).
    pub fee_only_repeats: i64,
    /// Pushes refused by a monthly cap (sent over the approved count) per service
    /// within the window.
    pub over_count_attempts: i64,
    /// Fewest complaints (per service, or naming no service per partner) within
    /// `complaint_window_secs` before the rate is judged: a single complaint
    /// against a few MTs is no spike.
    pub complaints: i64,
    /// Complaints per 10,000 MTs within `complaint_window_secs` at which
    /// `complaint-spike` fires: the rate, not the count, is the input.
    pub complaint_rate_per_10k: i64,
    /// How far back complaints and MTs are counted for the rate, in seconds.
    pub complaint_window_secs: u64,
    /// Rules that suspend the service (or partner) when they fire: any of
    /// `bulk-outside-subscription`, `fee-only`, `monthly-over-count`, `complaint-spike`.
    pub auto_suspend: Vec<String>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            window_secs: 3600,
            opt_in_refusals: 20,
            fee_only_repeats: 3,
            over_count_attempts: 100,
            complaints: 10,
            complaint_rate_per_10k: 10,
            complaint_window_secs: 86_400,
            auto_suspend: vec!["fee-only".into(), "complaint-spike".into()],
        }
    }
}
