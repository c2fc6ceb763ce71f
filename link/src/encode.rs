//! Text ↔ message octets: alphabet choice, segmentation with UDH, MO decoding and
//! reassembly, shared by every protocol (SMPP `esm_class` 0x40, CMPP/SGIP `TP_udhi` = 1
//! carry the same GSM 03.40 TP-UDHI concatenation header).
//!
//! The field names follow SMPP (`short_message`, `data_coding`, `esm_class`); a
//! protocol maps them onto its own (CMPP `Msg_Content`, `Msg_Fmt`, `TP_udhi`).
//! [`Alphabet::Auto`] is SMPP's choice (GSM 7-bit when the text fits, else UCS-2);
//! [`Alphabet::Ascii`] is CMPP's (ASCII `Msg_Fmt` 0, below 160 octets, else UCS-2);
//! [`Alphabet::Ucs2`] always sends UCS-2.
//!
//! * GSM 7-bit (`data_coding` 0x00) when every character is in the GSM 03.38 default
//!   alphabet or its extension table (an extension character costs two septets: escape
//!   0x1B + code). SMPP carries GSM 7-bit *unpacked*, one septet per octet; the SMSC packs.
//! * Otherwise UCS-2 (`data_coding` 0x08), big-endian UTF-16. Characters outside the BMP
//!   (emoji) are sent as surrogate pairs, i.e. really UTF-16: that is what UCS-2 SMSCs and
//!   handsets accept in practice; a strict UCS-2 peer shows two unknown characters.
//! * Long texts are split with a UDH concatenation IE (8-bit reference, IEI 0x00, `esm_class`
//!   0x40): 160 septets single / 153 per segment for GSM7, 70 / 67 UTF-16 units for UCS-2.
//!   A segment never ends inside an escape sequence or a surrogate pair. [`Concat::Sar`]
//!   uses the `sar_*` TLVs instead of a UDH, for SMSCs configured that way.
//!
//! rusmpp's `extra` multipart helpers are not used: they reject non-BMP characters, and
//! this is small.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `data_coding` for the SMSC default alphabet (GSM 03.38, unpacked).
pub const DC_GSM7: u8 = 0x00;
/// `data_coding` for UCS-2.
pub const DC_UCS2: u8 = 0x08;
/// `data_coding` for IA5/ASCII (SMPP 3.4 §5.2.19 value 1; CMPP `Msg_Fmt` 0, SGIP
/// MessageCoding 0): one octet per character.
pub const DC_ASCII: u8 = 0x01;
/// `esm_class` bit: `short_message` starts with a user data header.
pub const ESM_UDHI: u8 = 0x40;

const ESC: u8 = 0x1B;

/// GSM 03.38 default alphabet, indexed by septet. 0x1B (escape) is a placeholder.
const GSM7_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (code after escape, character).
const GSM7_EXT: [(u8, char); 10] = [
    (0x0A, '\u{0C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The septets for one character: `[code]` or `[ESC, code]`; `None` if not in GSM 03.38.
fn gsm7_char(c: char) -> Option<([u8; 2], usize)> {
    if c == '\u{1B}' {
        return None;
    }
    if let Some(i) = GSM7_BASIC.iter().position(|&g| g == c) {
        return Some(([i as u8, 0], 1));
    }
    GSM7_EXT
        .iter()
        .find(|&&(_, g)| g == c)
        .map(|&(code, _)| ([ESC, code], 2))
}

/// The alphabet a text is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 default alphabet (+ extension table), `data_coding` 0x00.
    Gsm7,
    /// IA5/ASCII, one octet per character, `data_coding` 0x01.
    Ascii,
    /// UCS-2 / UTF-16BE, `data_coding` 0x08.
    Ucs2,
}

impl Coding {
    /// The `data_coding` octet.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => DC_GSM7,
            Coding::Ascii => DC_ASCII,
            Coding::Ucs2 => DC_UCS2,
        }
    }
}

/// GSM 7-bit septet count of `text` (extension characters count two), or `None` if some
/// character is not in GSM 03.38.
pub fn gsm7_septets(text: &str) -> Option<usize> {
    text.chars().map(|c| gsm7_char(c).map(|(_, n)| n)).sum()
}

/// GSM 7-bit when every character fits, else UCS-2.
pub fn choose_coding(text: &str) -> Coding {
    if gsm7_septets(text).is_some() {
        Coding::Gsm7
    } else {
        Coding::Ucs2
    }
}

/// Concatenation information of one segment (from a UDH or `sar_*` TLVs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Reference shared by all parts of one message (8-bit IE: 0–255).
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// 1-based part number.
    pub seq: u8,
}

/// How long texts are concatenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concat {
    /// UDH with the 8-bit reference IE 0x00 (`esm_class` 0x40). The usual choice.
    Udh8(u8),
    /// `sar_msg_ref_num`/`sar_total_segments`/`sar_segment_seqnum` TLVs, no UDH.
    Sar(u16),
}

/// One `submit_sm` worth of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `short_message` octets (UDH included when `esm_class` has 0x40).
    pub short_message: Vec<u8>,
    /// `data_coding`.
    pub data_coding: u8,
    /// `esm_class` (0x00, or 0x40 with a UDH).
    pub esm_class: u8,
    /// Part numbering when the text needed more than one segment.
    pub concat: Option<ConcatInfo>,
    /// TLVs to send with this segment (the `sar_*` TLVs under [`Concat::Sar`]).
    pub tlvs: Vec<(u16, Vec<u8>)>,
}

/// Errors from [`encode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// More than 255 segments would be needed.
    #[error("text needs {0} segments; at most 255 are possible")]
    TooLong(usize),
}

/// Units of a text in its coding: septet groups (GSM7) or UTF-16 groups (UCS-2), each
/// group indivisible (an escape sequence, a surrogate pair).
fn units(text: &str, coding: Coding) -> Vec<([u8; 4], usize)> {
    match coding {
        Coding::Gsm7 => text
            .chars()
            .filter_map(gsm7_char)
            .map(|(s, n)| ([s[0], s[1], 0, 0], n))
            .collect(),
        Coding::Ascii => text.bytes().map(|b| ([b, 0, 0, 0], 1)).collect(),
        Coding::Ucs2 => text
            .chars()
            .map(|c| {
                let mut buf = [0u16; 2];
                let enc = c.encode_utf16(&mut buf);
                let mut out = [0u8; 4];
                for (i, u) in enc.iter().enumerate() {
                    out[2 * i..2 * i + 2].copy_from_slice(&u.to_be_bytes());
                }
                (out, enc.len())
            })
            .collect(),
    }
}

/// (single-message capacity, per-segment capacity) in septets / octets / UTF-16 units.
fn capacity(coding: Coding) -> (usize, usize) {
    match coding {
        Coding::Gsm7 => (160, 153),
        // CMPP 3.0 §8.4.3.1 (and 2.0's CMPP_SUBMIT): Msg_Length < 160 octets for
        // Msg_Fmt 0, so 159 in one message; a part is the 6-octet UDH + 153 ≤ 159.
        Coding::Ascii => (ASCII_SINGLE, ASCII_SINGLE - 6),
        Coding::Ucs2 => (70, 67),
    }
}

/// Octets of one ASCII (`Msg_Fmt` 0) message: CMPP's `Msg_Length` is below 160 for
/// `Msg_Fmt` 0 (CMPP 3.0 §8.4.3.1; ≤ 140 for every other format).
pub const ASCII_SINGLE: usize = 159;

/// Splits the units into chunks of at most `cap` weight without splitting a group.
fn chunk(units: &[([u8; 4], usize)], cap: usize, coding: Coding) -> Vec<Vec<u8>> {
    let octets_per_weight = match coding {
        Coding::Gsm7 | Coding::Ascii => 1,
        Coding::Ucs2 => 2,
    };
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut weight = 0;
    for (bytes, n) in units {
        if weight + n > cap {
            out.push(std::mem::take(&mut cur));
            weight = 0;
        }
        cur.extend_from_slice(&bytes[..n * octets_per_weight]);
        weight += n;
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out
}

/// Which alphabets a protocol may send a text in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Alphabet {
    /// GSM 7-bit (unpacked) when every character fits, else UCS-2: SMPP.
    #[default]
    Auto,
    /// Always UCS-2 (`data_coding`/`Msg_Fmt` 8).
    Ucs2,
    /// ASCII (`data_coding` 0x01, CMPP `Msg_Fmt` 0) when every character is ASCII,
    /// 159 octets a message and 153 a part; else UCS-2: CMPP, whose `Msg_Fmt` 0 is
    /// ASCII (not GSM 7-bit) and holds fewer than 160 octets (CMPP 3.0 §8.4.3.1).
    Ascii,
}

impl Alphabet {
    /// The coding `text` is sent in under this policy.
    pub fn coding(self, text: &str) -> Coding {
        match self {
            Alphabet::Auto => choose_coding(text),
            Alphabet::Ucs2 => Coding::Ucs2,
            Alphabet::Ascii if text.is_ascii() => Coding::Ascii,
            Alphabet::Ascii => Coding::Ucs2,
        }
    }
}

fn segments_of(text: &str, alphabet: Alphabet) -> (Coding, Vec<Vec<u8>>) {
    let coding = alphabet.coding(text);
    let units = units(text, coding);
    let (single, multi) = capacity(coding);
    let total: usize = units.iter().map(|(_, n)| n).sum();
    let cap = if total <= single { single } else { multi };
    (coding, chunk(&units, cap, coding))
}

/// Number of segments [`encode`] produces for `text` (the [`Alphabet::Auto`] rule).
pub fn segment_count(text: &str) -> usize {
    segment_count_in(text, Alphabet::Auto)
}

/// Number of segments [`encode_in`] produces for `text` under `alphabet`.
pub fn segment_count_in(text: &str, alphabet: Alphabet) -> usize {
    segments_of(text, alphabet).1.len()
}

/// Encodes `text` into one or more segments under [`Alphabet::Auto`] (see the module
/// docs). The decoded segments concatenate to exactly `text`.
///
/// # Errors
/// [`EncodeError::TooLong`] when more than 255 segments would be needed.
pub fn encode(text: &str, concat: Concat) -> Result<Vec<Segment>, EncodeError> {
    encode_in(text, Alphabet::Auto, concat)
}

/// Encodes `text` into one or more segments in the coding `alphabet` picks.
///
/// # Errors
/// [`EncodeError::TooLong`] when more than 255 segments would be needed.
pub fn encode_in(
    text: &str,
    alphabet: Alphabet,
    concat: Concat,
) -> Result<Vec<Segment>, EncodeError> {
    let (coding, bodies) = segments_of(text, alphabet);
    let total = bodies.len();
    if total > 255 {
        return Err(EncodeError::TooLong(total));
    }
    let dc = coding.data_coding();
    if total == 1 {
        let short_message = bodies.into_iter().next().unwrap_or_default();
        return Ok(vec![Segment {
            short_message,
            data_coding: dc,
            esm_class: 0x00,
            concat: None,
            tlvs: Vec::new(),
        }]);
    }
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let seq = (i + 1) as u8;
            match concat {
                Concat::Udh8(reference) => {
                    let mut sm = Vec::with_capacity(6 + body.len());
                    sm.extend_from_slice(&[0x05, 0x00, 0x03, reference, total as u8, seq]);
                    sm.extend_from_slice(&body);
                    Segment {
                        short_message: sm,
                        data_coding: dc,
                        esm_class: ESM_UDHI,
                        concat: Some(ConcatInfo {
                            reference: reference.into(),
                            total: total as u8,
                            seq,
                        }),
                        tlvs: Vec::new(),
                    }
                }
                Concat::Sar(reference) => Segment {
                    short_message: body,
                    data_coding: dc,
                    esm_class: 0x00,
                    concat: Some(ConcatInfo {
                        reference,
                        total: total as u8,
                        seq,
                    }),
                    tlvs: vec![
                        (0x020C, reference.to_be_bytes().to_vec()),
                        (0x020E, vec![total as u8]),
                        (0x020F, vec![seq]),
                    ],
                },
            }
        })
        .collect())
}

/// Splits a UDH off `short_message` when `esm_class` has the UDHI bit: returns the
/// concatenation IE (8-bit 0x00 or 16-bit 0x08) if present, and the payload.
pub fn split_udh(esm_class: u8, short_message: &[u8]) -> (Option<ConcatInfo>, &[u8]) {
    if esm_class & ESM_UDHI == 0 || short_message.is_empty() {
        return (None, short_message);
    }
    let udhl = short_message[0] as usize;
    if 1 + udhl > short_message.len() {
        return (None, short_message);
    }
    let udh = &short_message[1..1 + udhl];
    let payload = &short_message[1 + udhl..];
    let mut concat = None;
    let mut i = 0;
    while i + 2 <= udh.len() {
        let (iei, len) = (udh[i], udh[i + 1] as usize);
        let ie = match udh.get(i + 2..i + 2 + len) {
            Some(ie) => ie,
            None => break,
        };
        match (iei, ie) {
            (0x00, [r, t, s]) => {
                concat = Some(ConcatInfo {
                    reference: (*r).into(),
                    total: *t,
                    seq: *s,
                })
            }
            (0x08, [r1, r2, t, s]) => {
                concat = Some(ConcatInfo {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *t,
                    seq: *s,
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    (concat, payload)
}

/// Decodes a payload (no UDH) by `data_coding`: GSM 7-bit unpacked (0x00 and the GSM DCS
/// groups), IA5/ASCII (0x01), Latin-1 (0x03), UCS-2/UTF-16BE (0x08), 8-bit data (0x02,
/// 0x04) as lossy UTF-8. Never fails: undecodable input yields U+FFFD.
pub fn decode_payload(data_coding: u8, payload: &[u8]) -> String {
    match decoding(data_coding) {
        Decoding::Gsm7 => decode_gsm7(payload),
        Decoding::Ucs2 => {
            let units: Vec<u16> = payload
                .chunks(2)
                .map(|c| match c {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => 0xFFFD,
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        Decoding::Latin1 => payload.iter().map(|&b| b as char).collect(),
        Decoding::Octets => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Decodes a received `short_message`: the UDH concatenation info if any, and the text.
pub fn decode(
    data_coding: u8,
    esm_class: u8,
    short_message: &[u8],
) -> (Option<ConcatInfo>, String) {
    let (concat, payload) = split_udh(esm_class, short_message);
    (concat, decode_payload(data_coding, payload))
}

enum Decoding {
    Gsm7,
    Ucs2,
    Latin1,
    Octets,
}

fn decoding(dc: u8) -> Decoding {
    match dc {
        0x00 => Decoding::Gsm7,
        0x01 | 0x03 => Decoding::Latin1, // IA5 is a subset of Latin-1
        0x08 => Decoding::Ucs2,
        0x02 | 0x04 => Decoding::Octets,
        // GSM 03.38 general data coding groups: bits 3..2 give the alphabet.
        0x10..=0x3F => match (dc >> 2) & 0x03 {
            0 => Decoding::Gsm7,
            2 => Decoding::Ucs2,
            _ => Decoding::Octets,
        },
        0xC0..=0xDF => Decoding::Gsm7,
        0xE0..=0xEF => Decoding::Ucs2,
        0xF0..=0xFF if dc & 0x04 == 0 => Decoding::Gsm7,
        0xF0..=0xFF => Decoding::Octets,
        _ => Decoding::Octets,
    }
}

/// Unpacked GSM 7-bit (one septet per octet). Octets above 0x7F are not GSM 7-bit: some
/// SMSCs put Latin-1 under `data_coding` 0, so they are read as Latin-1.
fn decode_gsm7(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    let mut iter = payload.iter().copied();
    while let Some(b) = iter.next() {
        if b == ESC {
            // A trailing lone escape is dropped.
            if let Some(code) = iter.next() {
                match GSM7_EXT.iter().find(|&&(c, _)| c == code) {
                    Some(&(_, ch)) => out.push(ch),
                    // Unknown extension: the spec says show the basic character.
                    None => out.push(GSM7_BASIC.get(code as usize).copied().unwrap_or(' ')),
                }
            }
        } else if b < 0x80 {
            out.push(GSM7_BASIC[b as usize]);
        } else {
            out.push(b as char);
        }
    }
    out
}

/// In-memory reassembly of concatenated messages, keyed by (source, reference, total).
///
/// Parts are kept as raw payload octets and decoded once complete, so a character split
/// across parts by a foreign SMSC still decodes. Durability is the owner's job: store each
/// part before acknowledging it, and rebuild a `Reassembler` from storage after a restart.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<(String, u16, u8), Partial>,
}

#[derive(Debug)]
struct Partial {
    data_coding: u8,
    parts: Vec<Option<Vec<u8>>>,
    first_seen: Instant,
}

impl Reassembler {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one received `short_message`. Returns the full text when the message is
    /// complete (immediately for a message that is not concatenated), else `None`.
    /// A repeated part (redelivery) replaces the earlier copy.
    pub fn push(
        &mut self,
        source: &str,
        data_coding: u8,
        esm_class: u8,
        short_message: &[u8],
        sar: Option<ConcatInfo>,
    ) -> Option<String> {
        let (udh, payload) = split_udh(esm_class, short_message);
        let Some(info) = udh.or(sar) else {
            return Some(decode_payload(data_coding, payload));
        };
        if info.total <= 1 {
            return Some(decode_payload(data_coding, payload));
        }
        if info.seq == 0 || info.seq > info.total {
            // Unnumberable part: deliver it as it is rather than lose it.
            return Some(decode_payload(data_coding, payload));
        }
        let key = (source.to_string(), info.reference, info.total);
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Partial {
            data_coding,
            parts: vec![None; info.total as usize],
            first_seen: Instant::now(),
        });
        entry.parts[(info.seq - 1) as usize] = Some(payload.to_vec());
        if entry.parts.iter().all(Option::is_some) {
            let done = self.pending.remove(&key)?;
            let bytes: Vec<u8> = done.parts.into_iter().flatten().flatten().collect();
            return Some(decode_payload(done.data_coding, &bytes));
        }
        None
    }

    /// Number of incomplete messages held.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Drops incomplete messages first seen more than `max_age` ago and returns what they
    /// had, decoded with the missing parts left out, so the owner can keep them.
    pub fn evict_older_than(&mut self, max_age: Duration) -> Vec<(String, String)> {
        let now = Instant::now();
        let stale: Vec<_> = self
            .pending
            .iter()
            .filter(|(_, p)| now.duration_since(p.first_seen) > max_age)
            .map(|(k, _)| k.clone())
            .collect();
        stale
            .into_iter()
            .filter_map(|k| {
                let p = self.pending.remove(&k)?;
                let bytes: Vec<u8> = p.parts.into_iter().flatten().flatten().collect();
                Some((k.0, decode_payload(p.data_coding, &bytes)))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(text: &str) -> Vec<Segment> {
        let segs = encode(text, Concat::Udh8(42)).expect("encode");
        let mut r = Reassembler::new();
        let mut out = None;
        for s in &segs {
            out = r.push("src", s.data_coding, s.esm_class, &s.short_message, None);
        }
        assert_eq!(out.as_deref(), Some(text));
        segs
    }

    #[test]
    fn gsm7_single_and_extension() {
        assert_eq!(gsm7_septets("Hello €[]"), Some(12));
        let segs = roundtrip("Hello €[]");
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].data_coding, 0);
        assert_eq!(segs[0].short_message.len(), 12);
        // 160 septets fit one SMS, 161 do not.
        assert_eq!(segment_count(&"a".repeat(160)), 1);
        assert_eq!(segment_count(&"a".repeat(161)), 2);
        // 80 euro signs are 160 septets.
        assert_eq!(segment_count(&"€".repeat(80)), 1);
        assert_eq!(segment_count(&"€".repeat(81)), 2);
    }

    #[test]
    fn gsm7_never_splits_escape() {
        // 152 'a' then '€': the escape pair does not fit in segment 1 (153 septets).
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let segs = roundtrip(&text);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].short_message.len(), 6 + 152);
        assert_eq!(segs[0].esm_class, 0x40);
        assert_eq!(&segs[0].short_message[..6], &[5, 0, 3, 42, 2, 1]);
    }

    #[test]
    fn ucs2_chinese_and_emoji() {
        let text: String = "短信内容平台".chars().cycle().take(300).collect();
        let segs = roundtrip(&text);
        assert_eq!(segs.len(), 5);
        assert!(segs.iter().all(|s| s.data_coding == 8));
        assert_eq!(segs[0].short_message.len(), 6 + 134);
        assert_eq!(segs[4].short_message.len(), 6 + 2 * (300 - 4 * 67));
        assert_eq!(segment_count(&"中".repeat(70)), 1);
        assert_eq!(segment_count(&"中".repeat(71)), 2);
        // 66 BMP chars + an emoji: the pair does not fit in 67 units → next segment.
        let text = format!("{}😀{}", "中".repeat(66), "文".repeat(10));
        let segs = roundtrip(&text);
        assert_eq!(segs[0].short_message.len(), 6 + 132);
        assert_eq!(segs.len(), 2);
        roundtrip("hi 😀");
    }

    #[test]
    fn ucs2_alphabet_for_ascii_text() {
        let segs = encode_in(&"a".repeat(71), Alphabet::Ucs2, Concat::Udh8(9)).expect("encode");
        assert_eq!(segs.len(), 2);
        assert!(segs.iter().all(|s| s.data_coding == DC_UCS2));
        assert_eq!(&segs[0].short_message[..6], &[5, 0, 3, 9, 2, 1]);
        assert_eq!(segs[0].short_message.len(), 6 + 2 * 67);
        assert_eq!(segment_count_in(&"a".repeat(70), Alphabet::Ucs2), 1);
        assert_eq!(segment_count_in(&"a".repeat(70), Alphabet::Auto), 1);
        assert_eq!(segment_count_in(&"a".repeat(71), Alphabet::Ucs2), 2);
    }

    /// CMPP 3.0 §8.4.3.1 `Msg_Length`: below 160 octets for `Msg_Fmt` 0 (ASCII), at
    /// most 140 otherwise. 159 ASCII characters are one message, 160 are two parts of
    /// 6 + 153 octets and 6 + 7; a part never exceeds 159 octets, a UCS-2 part 140.
    #[test]
    fn ascii_alphabet_keeps_cmpp_msg_fmt_0_below_160_octets() {
        let one = encode_in(&"a".repeat(159), Alphabet::Ascii, Concat::Udh8(1)).expect("encode");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].data_coding, DC_ASCII);
        assert_eq!(one[0].short_message, "a".repeat(159).into_bytes());
        let two = encode_in(&"a".repeat(160), Alphabet::Ascii, Concat::Udh8(1)).expect("encode");
        assert_eq!(two.len(), 2);
        assert_eq!(two[0].short_message.len(), 6 + 153);
        assert_eq!(two[1].short_message.len(), 6 + 7);
        // SMPP's GSM 7-bit takes 160 in one message.
        assert_eq!(segment_count_in(&"a".repeat(160), Alphabet::Auto), 1);
        // ASCII a character is one octet, `{` included (two septets in GSM 7-bit).
        assert_eq!(segment_count_in(&"{".repeat(159), Alphabet::Ascii), 1);
        for len in [1, 158, 159, 160, 306, 307, 1000] {
            let text: String = "ab{`~".chars().cycle().take(len).collect();
            let segs = encode_in(&text, Alphabet::Ascii, Concat::Udh8(7)).expect("encode");
            assert!(
                segs.iter().all(|s| s.short_message.len() <= ASCII_SINGLE),
                "{len}"
            );
            let mut r = Reassembler::new();
            let out = segs
                .iter()
                .filter_map(|s| r.push("k", s.data_coding, s.esm_class, &s.short_message, None))
                .next_back();
            assert_eq!(out.as_deref(), Some(text.as_str()), "{len}");
        }
        // Not ASCII (é is GSM 7-bit, not ASCII): UCS-2, 70 a message.
        let latin = encode_in("café", Alphabet::Ascii, Concat::Udh8(1)).expect("encode");
        assert_eq!(latin[0].data_coding, DC_UCS2);
        assert_eq!(segment_count_in(&"é".repeat(71), Alphabet::Ascii), 2);
    }

    #[test]
    fn sar_segments() {
        let segs = encode(&"x".repeat(200), Concat::Sar(513)).expect("encode");
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].esm_class, 0);
        assert_eq!(segs[1].tlvs[0], (0x020C, vec![2, 1]));
    }

    #[test]
    fn decode_codings() {
        assert_eq!(decode_payload(0x03, &[0xE9, b'a']), "éa");
        assert_eq!(decode_payload(0x00, &[0x00, 0x1B, 0x65, 0x41]), "@€A");
        assert_eq!(decode_payload(0x08, &[0x4E, 0x2D]), "中");
        assert_eq!(decode_payload(0x04, &[0xFF, b'a']), "\u{FFFD}a");
        let (c, t) = decode(0x08, 0x40, &[6, 8, 4, 1, 2, 3, 1, 0, b'a']);
        assert_eq!(
            c,
            Some(ConcatInfo {
                reference: 0x0102,
                total: 3,
                seq: 1
            })
        );
        assert_eq!(t, "a");
    }
}
