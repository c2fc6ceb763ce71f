//! The relay's settings: `[relay]` (outbox, retries, shutdown, MO intake) and
//! `[[operators]]` (one SMSC each, its binds, back-off and receipt id format).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tongdao_smpp::Backoff;

/// One operator: an SMSC reached over SMPP 3.4, and the number prefixes it serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Used in routing, billing and settlement.
    pub name: String,
    /// `host:port` of the SMSC.
    pub address: String,
    pub system_id: String,
    pub password: String,
    #[serde(default)]
    pub system_type: String,
    /// Transceiver binds kept open.
    #[serde(default = "default_binds")]
    pub binds: u32,
    /// Outstanding submits per bind.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Submits per second per bind (0: unlimited).
    #[serde(default)]
    pub tps: u32,
    /// National number prefixes this operator serves (longest match wins).
    pub prefixes: Vec<String>,
    /// The service number MTs come from.
    pub source_addr: String,
    /// How long texts are concatenated: `udh` (user data header, the usual) or
    /// `sar` (`sar_*` TLVs, for SMSCs that want them).
    #[serde(default)]
    pub concat: ConcatMode,
    /// How this SMSC writes the message id of a receipt relative to the one in its
    /// `submit_sm_resp` (see [`ReceiptIds`]); `auto` learns it.
    #[serde(default)]
    pub receipt_ids: ReceiptIds,
    /// First pause before binding again after a failed bind or a dropped link, in ms;
    /// doubles per attempt (with jitter) up to `reconnect_max_ms`.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Largest pause between bind attempts, in ms.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// A link must stay up this long, in seconds, before the attempt count resets;
    /// a link that drops sooner is flapping and the back-off keeps growing.
    #[serde(default = "default_reconnect_stable_secs")]
    pub reconnect_stable_secs: u64,
}

impl OperatorConfig {
    /// The reconnect back-off of this operator's binds.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(self.reconnect_initial_ms.max(1)),
            max: Duration::from_millis(self.reconnect_max_ms.max(self.reconnect_initial_ms)),
            stable_after: Duration::from_secs(self.reconnect_stable_secs),
        }
    }
}

/// Empty names and addresses with every optional setting at its default: a base
/// for struct-update syntax in code (a configuration file must name them all).
impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            address: String::new(),
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            binds: default_binds(),
            window: default_window(),
            tps: 0,
            prefixes: Vec::new(),
            source_addr: String::new(),
            concat: ConcatMode::default(),
            receipt_ids: ReceiptIds::default(),
            reconnect_initial_ms: default_reconnect_initial_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            reconnect_stable_secs: default_reconnect_stable_secs(),
        }
    }
}

/// Concatenation of long MTs.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ConcatMode {
    #[default]
    Udh,
    Sar,
}

/// How an SMSC's receipt ids relate to its `submit_sm_resp` ids. Ids compare without
/// case and leading zeros (`0000000136` is `136`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum ReceiptIds {
    /// Not configured: learned from the first receipts that can only be read one way
    /// (see `relay::receipts`).
    #[default]
    Auto,
    /// The same id in both.
    Same,
    /// Hex in `submit_sm_resp`, decimal in the receipt.
    HexToDecimal,
    /// Decimal in `submit_sm_resp`, hex in the receipt.
    DecimalToHex,
}

impl ReceiptIds {
    /// `auto`, `same`, `hex-to-decimal`, `decimal-to-hex`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Same => "same",
            Self::HexToDecimal => "hex-to-decimal",
            Self::DecimalToHex => "decimal-to-hex",
        }
    }

    /// Parses [`ReceiptIds::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Auto,
            Self::Same,
            Self::HexToDecimal,
            Self::DecimalToHex,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

fn default_binds() -> u32 {
    1
}

fn default_window() -> u32 {
    10
}

fn default_reconnect_initial_ms() -> u64 {
    500
}

fn default_reconnect_max_ms() -> u64 {
    30_000
}

fn default_reconnect_stable_secs() -> u64 {
    10
}

/// What becomes of a long MO whose parts did not all arrive within
/// `mo_part_window_secs`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum IncompleteMo {
    /// Stored with the parts that arrived, in order, marked incomplete, and routed
    /// like any MO (a keyword in the first part still reaches its service).
    #[default]
    Route,
    /// Stored with the parts that arrived, status `incomplete`, never routed.
    Record,
}

/// The outbox, its retry policy, clean shutdown and MO intake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// How long an MT may wait for a successful submit before it expires.
    pub validity_secs: u64,
    /// First retry pause after a temporary failure; doubles up to `retry_max_ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// MTs one worker claims at a time.
    pub batch: u32,
    /// How long a claim holds before another worker may take the MT over.
    pub lease_secs: u64,
    /// Numbers test sends may go to (agreement 7.3).
    pub test_numbers: Vec<String>,
    /// On shutdown, how long to wait for the `submit_sm_resp`s of submits already
    /// sent before unbinding, in ms. Claimed MTs not yet sent are released at once.
    pub shutdown_grace_ms: u64,
    /// A `deliver_sm` MO (or MO part) with the same operator, sender, number, bytes
    /// and concatenation reference as one received this recently (seconds) is a
    /// redelivery: answered, not stored or routed again.
    pub mo_dedup_window_secs: u64,
    /// The parts of one long MO must all arrive within this many seconds of its
    /// first part; then the partial message is handled by `incomplete_mo`.
    pub mo_part_window_secs: u64,
    /// What becomes of a long MO whose parts did not all arrive in time.
    pub incomplete_mo: IncompleteMo,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            validity_secs: 10 * 3600,
            retry_initial_ms: 1000,
            retry_max_ms: 5 * 60 * 1000,
            batch: 256,
            lease_secs: 60,
            test_numbers: Vec::new(),
            shutdown_grace_ms: 10_000,
            mo_dedup_window_secs: 120,
            mo_part_window_secs: 120,
            incomplete_mo: IncompleteMo::Route,
        }
    }
}

impl RelayConfig {
    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}
