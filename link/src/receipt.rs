//! Delivery receipts as every protocol reports them (SMPP `deliver_sm` receipts, CMPP
//! status reports, SGIP `Report`): the final state, the operator's message id, and
//! message-id normalisation for matching receipts to submits.

/// Final (or intermediate) state reported by a receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptState {
    /// `DELIVRD` / message_state 2.
    Delivered,
    /// `EXPIRED` / 3.
    Expired,
    /// `DELETED` / 4.
    Deleted,
    /// `UNDELIV` / 5.
    Undeliverable,
    /// `ACCEPTD` / 6.
    Accepted,
    /// `UNKNOWN` / 7, and anything unrecognised.
    Unknown,
    /// `REJECTD` / 8.
    Rejected,
    /// `ENROUTE` / 1 (and `SCHEDULED` 0): not final.
    Enroute,
}

impl ReceiptState {
    /// Parses a `stat:` value, tolerant of case and of the long spellings.
    pub fn from_stat(stat: &str) -> Self {
        let s = stat.trim().to_ascii_uppercase();
        match s.as_str() {
            "DELIVRD" | "DELIVERED" | "DELIV" => Self::Delivered,
            "EXPIRED" => Self::Expired,
            "DELETED" => Self::Deleted,
            "UNDELIV" | "UNDELIVERABLE" | "UNDELIVERED" | "FAILED" => Self::Undeliverable,
            "ACCEPTD" | "ACCEPTED" => Self::Accepted,
            "REJECTD" | "REJECTED" => Self::Rejected,
            "ENROUTE" | "SCHEDULED" => Self::Enroute,
            _ => Self::Unknown,
        }
    }

    /// From the SMPP `message_state` TLV value (SMPP 3.4 §5.2.28).
    pub fn from_message_state(v: u8) -> Self {
        match v {
            0 | 1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            8 => Self::Rejected,
            _ => Self::Unknown,
        }
    }

    /// The receipt `stat:` spelling.
    pub fn stat(self) -> &'static str {
        match self {
            Self::Delivered => "DELIVRD",
            Self::Expired => "EXPIRED",
            Self::Deleted => "DELETED",
            Self::Undeliverable => "UNDELIV",
            Self::Accepted => "ACCEPTD",
            Self::Unknown => "UNKNOWN",
            Self::Rejected => "REJECTD",
            Self::Enroute => "ENROUTE",
        }
    }

    /// The `message_state` TLV value.
    pub fn message_state(self) -> u8 {
        match self {
            Self::Enroute => 1,
            Self::Delivered => 2,
            Self::Expired => 3,
            Self::Deleted => 4,
            Self::Undeliverable => 5,
            Self::Accepted => 6,
            Self::Unknown => 7,
            Self::Rejected => 8,
        }
    }

    /// False only for `Enroute`: every other state ends the message's life at the SMSC.
    pub fn is_final(self) -> bool {
        self != Self::Enroute
    }

    /// Delivered (or accepted on the subscriber's behalf).
    pub fn is_success(self) -> bool {
        matches!(self, Self::Delivered | Self::Accepted)
    }
}

/// A parsed delivery receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The operator's message id, as the receipt wrote it (SMPP: TLV preferred over
    /// text; CMPP: the 64-bit `Msg_Id` in decimal). Match it to submits with
    /// [`normalize_message_id`].
    pub message_id: String,
    /// Reported state.
    pub state: ReceiptState,
    /// The operator's error code (SMPP: `err:` from the text, else the
    /// `network_error_code` TLV's code).
    pub error_code: Option<String>,
    /// Submit time (`YYMMDDhhmm`, sometimes with seconds) as written.
    pub submit_date: Option<String>,
    /// Done time as written.
    pub done_date: Option<String>,
    /// The handset the original MT went to (SMPP: `source_addr` of the receipt PDU).
    pub source_addr: String,
    /// The service number that sent the MT (SMPP: `destination_addr` of the receipt PDU).
    pub destination_addr: String,
    /// The receipt as received, as text (lossily decoded), for keeping unmatched receipts.
    pub raw: String,
}

/// The canonical form of an SMSC message id: trimmed (also of trailing NULs), lowercased,
/// and — for ids made only of hex digits — without leading zeros (`0000000136` → `136`,
/// `00AB` → `ab`). Store submitted ids and compare receipt ids in this form.
pub fn canonical_message_id(id: &str) -> String {
    let lower = id.trim().trim_end_matches('\0').to_ascii_lowercase();
    let is_hex = !lower.is_empty() && lower.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex {
        return lower;
    }
    let stripped = lower.trim_start_matches('0');
    if stripped.is_empty() {
        "0".to_string()
    } else {
        stripped.to_string()
    }
}

/// Candidate spellings of an SMSC message id, most specific first, so an id written in hex
/// in `submit_sm_resp` and in decimal in the receipt (or the other way round) still match.
///
/// The first candidate is the canonical form: trimmed, lowercased, and — for ids made only
/// of hex digits — without leading zeros. Then: a decimal-looking id read as decimal and
/// written in hex; a hex-looking id read as hex and written in decimal.
///
/// The candidates are readings, not a matching rule: trying them all against every
/// submitted id is ambiguous (receipt `136` read as hex is `310`, and `136` written in
/// hex is `88` — both may be ids of other messages). Match with one reading per SMSC,
/// known or learned from receipts that can only be read one way, and never take a
/// cross-base hit while the exact id may still be stored.
///
/// `"1A2B"` → `["1a2b", "6699"]`; `"6699"` → `["6699", "1a2b", "26265"]`.
pub fn normalize_message_id(id: &str) -> Vec<String> {
    let canonical = canonical_message_id(id);
    if !canonical.bytes().all(|b| b.is_ascii_hexdigit()) {
        return vec![canonical];
    }
    let canonical = canonical.as_str();
    let mut out = vec![canonical.to_string()];
    let mut add = |s: String| {
        if !out.contains(&s) {
            out.push(s);
        }
    };
    if canonical.bytes().all(|b| b.is_ascii_digit())
        && let Ok(v) = canonical.parse::<u128>()
    {
        add(format!("{v:x}"));
    }
    if let Ok(v) = u128::from_str_radix(canonical, 16) {
        add(v.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(normalize_message_id("1A2B"), vec!["1a2b", "6699"]);
        assert_eq!(normalize_message_id("6699")[..2], ["6699", "1a2b"]);
        assert_eq!(normalize_message_id("000123")[0], "123");
        assert_eq!(normalize_message_id("abc-DEF"), vec!["abc-def"]);
    }
}
