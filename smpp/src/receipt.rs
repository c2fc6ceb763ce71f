//! SMPP delivery receipts: the classic SMPP 3.4 Appendix B text and the
//! `receipted_message_id` (0x001E) / `message_state` (0x0427) TLVs.
//!
//! When both are present the TLVs win (they are typed; the text is free-form). The
//! protocol-neutral [`Receipt`], [`ReceiptState`] and message-id normalisation live in
//! `tongdao-link` and are re-exported here.

pub use tongdao_link::receipt::{
    Receipt, ReceiptState, canonical_message_id, normalize_message_id,
};

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
}
