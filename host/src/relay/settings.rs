//! The relay's settings: `[relay]` (outbox, retries, shutdown, MO intake) and
//! `[[operators]]` (one SMSC each, its binds, back-off and receipt id format).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tongdao_link::Backoff;

/// One operator: its gateway (an SMSC over SMPP 3.4, an ISMG over CMPP, an SMG over
/// SGIP), and the number prefixes it serves.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OperatorConfig {
    /// Used in routing, billing and settlement.
    pub name: String,
    /// The protocol its gateway speaks (issue 16 item 1): `smpp` (the default),
    /// `cmpp3`, `cmpp2` or `sgip12`.
    #[serde(default)]
    pub protocol: Protocol,
    /// `host:port` of the gateway.
    pub address: String,
    /// The login name: SMPP `system_id`; CMPP `Source_Addr` (the SP_Id); SGIP
    /// `Login Name`.
    pub system_id: String,
    /// SMPP `password`; the CMPP shared secret (MD5 authenticator); SGIP
    /// `Login Password`.
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
    /// `[operators.cmpp]`: settings only a CMPP operator has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmpp: Option<CmppSettings>,
    /// `[operators.sgip]`: settings only an SGIP operator has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sgip: Option<SgipSettings>,
}

/// The protocol an operator's gateway speaks.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// SMPP 3.4 (an SMSC).
    #[default]
    Smpp,
    /// CMPP 3.0 (China Mobile's ISMG).
    Cmpp3,
    /// CMPP 2.0 (older ISMGs; differs in field widths).
    Cmpp2,
    /// SGIP 1.2 (China Unicom's SMG; the SMG connects back for MOs and reports).
    Sgip12,
}

impl Protocol {
    /// `smpp`, `cmpp3`, `cmpp2`, `sgip12`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Smpp => "smpp",
            Self::Cmpp3 => "cmpp3",
            Self::Cmpp2 => "cmpp2",
            Self::Sgip12 => "sgip12",
        }
    }

    /// Parses [`Protocol::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Smpp, Self::Cmpp3, Self::Cmpp2, Self::Sgip12]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    /// Whether submits carry the operator fee fields (代计费, issue 16 item 4): CMPP and
    /// SGIP do; SMPP 3.4 has no such fields.
    pub fn carries_fees(self) -> bool {
        !matches!(self, Self::Smpp)
    }

    /// How texts are encoded and segmented for this protocol (issue 16 item 3):
    /// SMPP and SGIP as GSM 7-bit when it fits (160 septets; SGIP's client writes it as
    /// MessageCoding 0), CMPP as ASCII `Msg_Fmt` 0 below 160 octets
    /// ([`tongdao_cmpp::text::ALPHABET`], CMPP 3.0 §8.4.3.1); UCS-2 otherwise.
    pub fn alphabet(self) -> tongdao_link::Alphabet {
        match self {
            Self::Cmpp3 | Self::Cmpp2 => tongdao_cmpp::text::ALPHABET,
            Self::Smpp | Self::Sgip12 => tongdao_link::Alphabet::Auto,
        }
    }

    /// Whether the protocol has a 包月 billing record the operator bills from but
    /// never delivers (issue 16 item 4, `relay::outbox::records`): CMPP 2.0
    /// (`Registered_Delivery` 2, "产生SMC话单") and SGIP 1.2 (`ReportFlag` 3) do; CMPP
    /// 3.0 (`Registered_Delivery` 0 or 1 only, §8.4.3.1) and SMPP 3.4 do not.
    pub fn has_fee_records(self) -> bool {
        matches!(self, Self::Cmpp2 | Self::Sgip12)
    }

    /// Whether the gateway sends a status report for a billing record: SGIP 1.2 does
    /// (`ReportFlag` 3 "要返回状态报告"); CMPP 2.0's `Registered_Delivery` 2 asks for
    /// none, so such a record is final once accepted.
    pub fn reports_fee_records(self) -> bool {
        matches!(self, Self::Sgip12)
    }
}

/// `[operators.cmpp]`: what a CMPP 3.0/2.0 operator needs beyond the login
/// (`system_id` is the SP_Id, `password` the shared secret).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CmppSettings {
    /// `Msg_src` of every submit: the SP_Id of the login; empty or equal to `system_id`
    /// (anything else is refused: the session writes the login's SP_Id).
    pub msg_src: String,
    /// `Service_Id` for MTs without a service of their own (notices, tests), ≤ 10
    /// chars; a service's MTs carry its code.
    pub service_id: String,
    /// The ISMG's gateway code, as it appears in the `Msg_Id` (for logs and checks).
    pub gateway: String,
    /// `CMPP_ACTIVE_TEST` interval when idle, in seconds (0: the session's default).
    pub active_test_secs: u64,
}

/// `[operators.sgip]`: what an SGIP 1.2 operator needs beyond the login. The SMG
/// also connects back to Tongdao (Bind, Deliver, Report), so Tongdao listens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SgipSettings {
    /// The SP's node id (`3AAAAQQQQQ`), the first part of every sequence number.
    pub node_id: u32,
    /// The SP's corporate code (企业代码, 5 digits, `CorpId`).
    pub corp_id: String,
    /// `ServiceType` for MTs without a service of their own, ≤ 10 chars.
    pub service_type: String,
    /// `host:port` Tongdao listens on for the SMG's own connections.
    pub listen: String,
    /// The login the SMG must present when it binds to Tongdao.
    pub smg_login: String,
    /// Its password.
    pub smg_password: String,
    /// A connection to the listener that has not logged in this many seconds after
    /// it was accepted is closed (a hostile or broken peer cannot hold it).
    pub login_timeout_secs: u64,
    /// Connections waiting for their Bind at once; a new one beyond this closes the
    /// oldest waiting one.
    pub max_pending_logins: usize,
}

impl Default for SgipSettings {
    /// Empty addresses and logins; the listener's limits as the SGIP crate's
    /// defaults (`tongdao_sgip::ServerConfig::new`).
    fn default() -> Self {
        let listener = tongdao_sgip::ServerConfig::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            "",
            "",
        );
        Self {
            node_id: 0,
            corp_id: String::new(),
            service_type: String::new(),
            listen: String::new(),
            smg_login: String::new(),
            smg_password: String::new(),
            login_timeout_secs: listener.login_timeout.as_secs(),
            max_pending_logins: listener.max_pending_logins,
        }
    }
}

impl OperatorConfig {
    /// Checks the protocol against its per-protocol table: `[operators.cmpp]` only on a
    /// CMPP operator, `[operators.sgip]` (with its `listen` address) only on an SGIP
    /// one, and the protocol built into this binary.
    ///
    /// # Errors
    /// A reason naming the operator and what to change.
    pub fn check_protocol(&self) -> Result<(), String> {
        let name = &self.name;
        let protocol = self.protocol.as_str();
        let cmpp = matches!(self.protocol, Protocol::Cmpp3 | Protocol::Cmpp2);
        if self.cmpp.is_some() && !cmpp {
            return Err(format!(
                "operator `{name}`: [operators.cmpp] is for protocol cmpp3 or cmpp2, not {protocol}"
            ));
        }
        if let Some(c) = &self.cmpp
            && !c.msg_src.is_empty()
            && c.msg_src != self.system_id
        {
            return Err(format!(
                "operator `{name}`: [operators.cmpp] msg_src `{}` differs from system_id: the CMPP session writes the login's SP_Id as Msg_src (leave msg_src empty)",
                c.msg_src
            ));
        }
        if self.sgip.is_some() && self.protocol != Protocol::Sgip12 {
            return Err(format!(
                "operator `{name}`: [operators.sgip] is for protocol sgip12, not {protocol}"
            ));
        }
        if self.protocol == Protocol::Sgip12
            && self.sgip.as_ref().is_none_or(|s| s.listen.is_empty())
        {
            return Err(format!(
                "operator `{name}`: protocol sgip12 needs [operators.sgip] listen (the SMG connects back to it)"
            ));
        }
        if self.protocol == Protocol::Sgip12 && self.binds > 1 {
            return Err(format!(
                "operator `{name}`: protocol sgip12 runs one session per operator (its links open on demand and the SMG's Reports come to one listener); set binds = 1 and use window for concurrency"
            ));
        }
        if !super::connector::SUPPORTED.contains(&self.protocol) {
            return Err(format!(
                "operator `{name}`: protocol {protocol} is not built into this binary (supported: {})",
                super::connector::SUPPORTED
                    .iter()
                    .map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    /// `Service_Id` / `ServiceType` for MTs without a service (notices, tests): the
    /// per-protocol table's default, else empty.
    pub fn default_service_id(&self) -> &str {
        match (&self.cmpp, &self.sgip) {
            (Some(c), _) => &c.service_id,
            (None, Some(s)) => &s.service_type,
            (None, None) => "",
        }
    }

    /// How this operator's receipt ids relate to its submit ids. CMPP writes the
    /// `Msg_Id` of the submit response in its status report, and SGIP names the MT by
    /// the Submit's sequence number in its Report, both spelled the same by their
    /// sessions, so `auto` is `same` for them; SMPP's is the configured or learned one.
    pub fn receipt_format(&self) -> ReceiptIds {
        match (self.protocol, self.receipt_ids) {
            (Protocol::Smpp, format)
            | (
                _,
                format @ (ReceiptIds::Same | ReceiptIds::HexToDecimal | ReceiptIds::DecimalToHex),
            ) => format,
            (_, ReceiptIds::Auto) => ReceiptIds::Same,
        }
    }

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
            protocol: Protocol::default(),
            cmpp: None,
            sgip: None,
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
    /// Flow control (issue 18): most segments per operator whose receipts this
    /// process awaits before its binds claim more, so MOs never queue at the SMSC
    /// behind more receipts than this (see `relay::flow`). 0: no bound.
    pub max_awaited_receipts: u64,
    /// How long (seconds) an accepted segment's receipt counts as awaited; a later
    /// one comes from a handset that was off, not from the SMSC's queue.
    pub receipt_wait_secs: u64,
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
            max_awaited_receipts: 2_000,
            receipt_wait_secs: 10,
        }
    }
}

impl RelayConfig {
    pub(crate) fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator(protocol: Protocol) -> OperatorConfig {
        OperatorConfig {
            name: "mobile".into(),
            protocol,
            ..OperatorConfig::default()
        }
    }

    /// Issue 16 item 1: SMPP stays the default; each per-protocol table belongs to its
    /// protocol; a protocol this binary lacks is refused with a clear reason.
    #[test]
    fn protocol_and_its_table() {
        assert_eq!(OperatorConfig::default().protocol, Protocol::Smpp);
        assert_eq!(operator(Protocol::Smpp).check_protocol(), Ok(()));
        let mut smpp_with_cmpp = operator(Protocol::Smpp);
        smpp_with_cmpp.cmpp = Some(CmppSettings::default());
        let reason = smpp_with_cmpp.check_protocol().expect_err("refused");
        assert!(reason.contains("[operators.cmpp]"), "{reason}");
        let sgip = operator(Protocol::Sgip12);
        let reason = sgip.check_protocol().expect_err("refused");
        assert!(reason.contains("listen"), "{reason}");
        for protocol in [Protocol::Cmpp3, Protocol::Cmpp2, Protocol::Sgip12] {
            let mut op = operator(protocol);
            op.sgip = (protocol == Protocol::Sgip12).then(|| SgipSettings {
                listen: "127.0.0.1:8801".into(),
                ..SgipSettings::default()
            });
            let supported = super::super::connector::SUPPORTED.contains(&protocol);
            assert_eq!(op.check_protocol().is_ok(), supported, "{protocol:?}");
        }
        assert!(Protocol::Cmpp3.carries_fees() && !Protocol::Smpp.carries_fees());
    }

    /// Issue 16 part D: every protocol is built in; an SGIP operator runs one session
    /// (its SMG reports to one listener); a CMPP `msg_src` the session would not write
    /// is refused; CMPP and SGIP receipts are read as spelled unless configured.
    #[test]
    fn wired_protocols_and_their_limits() {
        for protocol in ["smpp", "cmpp3", "cmpp2", "sgip12"] {
            let p = Protocol::parse(protocol).expect("known");
            assert_eq!(p.as_str(), protocol);
            assert!(
                super::super::connector::SUPPORTED.contains(&p),
                "{protocol}"
            );
        }
        assert_eq!(Protocol::parse("cmpp4"), None);
        let mut sgip = operator(Protocol::Sgip12);
        sgip.sgip = Some(SgipSettings {
            listen: "127.0.0.1:8801".into(),
            ..SgipSettings::default()
        });
        assert_eq!(sgip.check_protocol(), Ok(()));
        sgip.binds = 2;
        let reason = sgip.check_protocol().expect_err("refused");
        assert!(reason.contains("binds = 1"), "{reason}");
        let mut cmpp = operator(Protocol::Cmpp3);
        cmpp.system_id = "901234".into();
        cmpp.cmpp = Some(CmppSettings {
            msg_src: "901234".into(),
            ..CmppSettings::default()
        });
        assert_eq!(cmpp.check_protocol(), Ok(()));
        cmpp.cmpp = Some(CmppSettings {
            msg_src: "999999".into(),
            ..CmppSettings::default()
        });
        let reason = cmpp.check_protocol().expect_err("refused");
        assert!(reason.contains("msg_src"), "{reason}");
        assert_eq!(cmpp.receipt_format(), ReceiptIds::Same);
        assert_eq!(operator(Protocol::Smpp).receipt_format(), ReceiptIds::Auto);
        cmpp.receipt_ids = ReceiptIds::HexToDecimal;
        assert_eq!(cmpp.receipt_format(), ReceiptIds::HexToDecimal);
    }

    #[test]
    fn the_default_service_id_comes_from_the_protocol_table() {
        let mut op = operator(Protocol::Cmpp3);
        assert_eq!(op.default_service_id(), "");
        op.cmpp = Some(CmppSettings {
            service_id: "HELP".into(),
            ..CmppSettings::default()
        });
        assert_eq!(op.default_service_id(), "HELP");
    }
}
