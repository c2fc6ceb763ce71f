//! Delivery receipts: the classic SMPP 3.4 Appendix B text and the `receipted_message_id`
//! (0x001E) / `message_state` (0x0427) TLVs, and message-id normalisation.
//!
//! When both are present the TLVs win (they are typed; the text is free-form).

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

    /// From the `message_state` TLV value.
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
    /// The SMSC message id, as the receipt wrote it (TLV preferred over text). Match it to
    /// submits with [`normalize_message_id`].
    pub message_id: String,
    /// Reported state.
    pub state: ReceiptState,
    /// `err:` from the text, else the `network_error_code` TLV's code.
    pub error_code: Option<String>,
    /// `submit date:` (`YYMMDDhhmm`, sometimes with seconds) as written.
    pub submit_date: Option<String>,
    /// `done date:` as written.
    pub done_date: Option<String>,
    /// The handset the original MT went to (`source_addr` of the receipt PDU).
    pub source_addr: String,
    /// The service number that sent the MT (`destination_addr` of the receipt PDU).
    pub destination_addr: String,
    /// The receipt text as received (lossily decoded), for keeping unmatched receipts.
    pub raw: String,
}

/// Fields of a receipt text; all optional because SMSCs omit some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiptText {
    /// `id:`
    pub id: Option<String>,
    /// `sub:`
    pub sub: Option<String>,
    /// `dlvrd:`
    pub dlvrd: Option<String>,
    /// `submit date:`
    pub submit_date: Option<String>,
    /// `done date:`
    pub done_date: Option<String>,
    /// `stat:`
    pub stat: Option<String>,
    /// `err:`
    pub err: Option<String>,
    /// `text:` (everything after it)
    pub text: Option<String>,
}

const KEYS: [&str; 10] = [
    "id",
    "sub",
    "dlvrd",
    "submit date",
    "submit_date",
    "done date",
    "done_date",
    "stat",
    "err",
    "text",
];

/// Parses the classic receipt text. Tolerant: keys in any case, extra spaces (also around
/// the colon), fields in any order or missing, `submit_date`/`done_date` spellings. Returns
/// `None` unless at least `id` or `stat` is present.
pub fn parse_receipt_text(text: &str) -> Option<ReceiptText> {
    // ASCII lowercasing keeps byte offsets, so positions map back into `text`.
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut found: Vec<(usize, usize, &str)> = Vec::new(); // (key start, value start, key)
    let mut i = 0;
    while i < bytes.len() {
        let at_boundary = i == 0 || bytes[i - 1].is_ascii_whitespace();
        if at_boundary && let Some((key, value_start)) = key_at(&lower, i) {
            found.push((i, value_start, key));
            if key == "text" {
                break; // text runs to the end, keys inside it are text
            }
            i = value_start;
            continue;
        }
        i += 1;
    }
    let mut out = ReceiptText::default();
    for (n, &(_, value_start, key)) in found.iter().enumerate() {
        let end = found.get(n + 1).map_or(text.len(), |f| f.0);
        let value = text.get(value_start..end).unwrap_or("").trim();
        let value = (!value.is_empty()).then(|| value.to_string());
        let slot = match key {
            "id" => &mut out.id,
            "sub" => &mut out.sub,
            "dlvrd" => &mut out.dlvrd,
            "submit date" | "submit_date" => &mut out.submit_date,
            "done date" | "done_date" => &mut out.done_date,
            "stat" => &mut out.stat,
            "err" => &mut out.err,
            _ => &mut out.text,
        };
        if slot.is_none() {
            *slot = value;
        }
    }
    (out.id.is_some() || out.stat.is_some()).then_some(out)
}

/// If a key (followed by optional spaces and ':') starts at `i`, returns it and where its
/// value starts.
fn key_at(lower: &str, i: usize) -> Option<(&'static str, usize)> {
    let rest = lower.get(i..)?;
    for key in KEYS {
        let Some(after) = rest.strip_prefix(key) else {
            continue;
        };
        let trimmed = after.trim_start_matches(' ');
        if let Some(v) = trimmed.strip_prefix(':') {
            let value_start = lower.len() - v.len();
            return Some((key, value_start));
        }
    }
    None
}

/// Builds a [`Receipt`] from what a `deliver_sm`/`data_sm` carried. Returns `None` when
/// there is neither a usable id TLV nor a parsable receipt text.
pub fn build_receipt(
    text: &str,
    receipted_message_id: Option<&str>,
    message_state: Option<u8>,
    network_error_code: Option<u16>,
    source_addr: &str,
    destination_addr: &str,
) -> Option<Receipt> {
    let parsed = parse_receipt_text(text);
    let tlv_id = receipted_message_id
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let message_id = tlv_id
        .map(str::to_string)
        .or_else(|| parsed.as_ref().and_then(|p| p.id.clone()))?;
    let state = match (
        message_state,
        parsed.as_ref().and_then(|p| p.stat.as_deref()),
    ) {
        (Some(v), _) => ReceiptState::from_message_state(v),
        (None, Some(stat)) => ReceiptState::from_stat(stat),
        (None, None) => ReceiptState::Unknown,
    };
    let error_code = parsed
        .as_ref()
        .and_then(|p| p.err.clone())
        .or_else(|| network_error_code.map(|c| format!("{c:03}")));
    Some(Receipt {
        message_id,
        state,
        error_code,
        submit_date: parsed.as_ref().and_then(|p| p.submit_date.clone()),
        done_date: parsed.as_ref().and_then(|p| p.done_date.clone()),
        source_addr: source_addr.to_string(),
        destination_addr: destination_addr.to_string(),
        raw: text.to_string(),
    })
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
    fn classic_text() {
        let t = "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:Hello id:x";
        let p = parse_receipt_text(t).expect("parse");
        assert_eq!(p.id.as_deref(), Some("0123456789"));
        assert_eq!(p.submit_date.as_deref(), Some("2401011200"));
        assert_eq!(p.done_date.as_deref(), Some("2401011201"));
        assert_eq!(p.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(p.err.as_deref(), Some("000"));
        assert_eq!(p.text.as_deref(), Some("Hello id:x"));
    }

    #[test]
    fn ids() {
        assert_eq!(normalize_message_id("1A2B"), vec!["1a2b", "6699"]);
        assert_eq!(normalize_message_id("6699")[..2], ["6699", "1a2b"]);
        assert_eq!(normalize_message_id("000123")[0], "123");
        assert_eq!(normalize_message_id("abc-DEF"), vec!["abc-def"]);
    }
}
