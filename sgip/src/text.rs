//! Text ↔ SGIP MessageContent: MessageCoding choice, segmentation with a UDH (TP_udhi 1),
//! MO decoding and reassembly.
//!
//! MessageCoding (SGIP 1.2 Submit table): 0 ASCII, 3 written to the SIM, 4 binary,
//! 8 UCS-2, 15 GBK. [`encode`] sends ASCII when every character is printable ASCII
//! (160 a message, 153 a part: the SMG packs them to GSM 7-bit), otherwise UCS-2
//! (UTF-16BE; 70 units a message, 67 a part, a surrogate pair never split). [`Coding::Gbk`]
//! is available for SMGs that want it (140 octets a message, 134 a part, a double-byte
//! character never split). Parts carry the 8-bit-reference concatenation IE
//! (`05 00 03 ref total seq`), the layout handsets and the SMPP crate use.

use tongdao_link::encode::{ConcatInfo, Reassembler, split_udh};

/// MessageCoding: ASCII.
pub const CODING_ASCII: u8 = 0;
/// MessageCoding: binary.
pub const CODING_BINARY: u8 = 4;
/// MessageCoding: UCS-2.
pub const CODING_UCS2: u8 = 8;
/// MessageCoding: GBK.
pub const CODING_GBK: u8 = 15;

/// The alphabet of an MT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// MessageCoding 0.
    Ascii,
    /// MessageCoding 8.
    Ucs2,
    /// MessageCoding 15.
    Gbk,
}

impl Coding {
    /// The MessageCoding octet.
    pub fn message_coding(self) -> u8 {
        match self {
            Coding::Ascii => CODING_ASCII,
            Coding::Ucs2 => CODING_UCS2,
            Coding::Gbk => CODING_GBK,
        }
    }
}

/// One Submit's worth of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// MessageCoding.
    pub message_coding: u8,
    /// TP_udhi: 1 when `content` starts with a UDH.
    pub tp_udhi: u8,
    /// MessageContent, UDH included.
    pub content: Vec<u8>,
    /// Part numbering when the text needed more than one Submit.
    pub concat: Option<ConcatInfo>,
}

/// Why a text cannot be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Empty text.
    #[error("empty message")]
    Empty,
    /// More than 255 parts.
    #[error("text needs {0} parts; at most 255")]
    TooLong(usize),
    /// A character GBK cannot represent (with [`Coding::Gbk`]), or non-ASCII with
    /// [`Coding::Ascii`].
    #[error("character {0:?} cannot be sent in {1:?}")]
    Unrepresentable(char, Coding),
}

/// The coding [`encode`] picks: ASCII if every character is printable ASCII (or CR/LF),
/// else UCS-2.
pub fn choose_coding(text: &str) -> Coding {
    if text
        .chars()
        .all(|c| c == '\n' || c == '\r' || (' '..='~').contains(&c))
    {
        Coding::Ascii
    } else {
        Coding::Ucs2
    }
}

/// Splits `text` into Submits in the [`choose_coding`] alphabet; parts share `reference`.
///
/// # Errors
/// [`TextError`] for an empty text or one longer than 255 parts.
pub fn encode(text: &str, reference: u8) -> Result<Vec<Segment>, TextError> {
    encode_as(text, choose_coding(text), reference)
}

/// Splits `text` into Submits in `coding`.
///
/// # Errors
/// [`TextError`] for an empty text, more than 255 parts, or a character `coding`
/// cannot carry.
pub fn encode_as(text: &str, coding: Coding, reference: u8) -> Result<Vec<Segment>, TextError> {
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    // Units: the encoded octets of each character (never split).
    let mut units: Vec<Vec<u8>> = Vec::with_capacity(text.len());
    for c in text.chars() {
        match coding {
            Coding::Ascii if c.is_ascii() => units.push(vec![c as u8]),
            Coding::Ascii => return Err(TextError::Unrepresentable(c, coding)),
            Coding::Ucs2 => {
                let mut buf = [0u16; 2];
                units.push(
                    c.encode_utf16(&mut buf)
                        .iter()
                        .flat_map(|u| u.to_be_bytes())
                        .collect(),
                );
            }
            Coding::Gbk => {
                let mut tmp = [0u8; 4];
                let (bytes, _, unmappable) = encoding_rs::GBK.encode(c.encode_utf8(&mut tmp));
                if unmappable {
                    return Err(TextError::Unrepresentable(c, coding));
                }
                units.push(bytes.into_owned());
            }
        }
    }
    let (single, part) = match coding {
        Coding::Ascii => (160, 153),
        Coding::Ucs2 => (140, 134),
        Coding::Gbk => (140, 134),
    };
    let total_len: usize = units.iter().map(Vec::len).sum();
    let message_coding = coding.message_coding();
    if total_len <= single {
        return Ok(vec![Segment {
            message_coding,
            tp_udhi: 0,
            content: units.concat(),
            concat: None,
        }]);
    }
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    for u in units {
        let last = parts.last_mut().map_or(0, |p| p.len());
        if last + u.len() > part {
            parts.push(Vec::new());
        }
        if let Some(p) = parts.last_mut() {
            p.extend_from_slice(&u);
        }
    }
    let total = parts.len();
    if total > 255 {
        return Err(TextError::TooLong(total));
    }
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let seq = (i + 1) as u8;
            let mut content = vec![0x05, 0x00, 0x03, reference, total as u8, seq];
            content.extend_from_slice(&body);
            Segment {
                message_coding,
                tp_udhi: 1,
                content,
                concat: Some(ConcatInfo {
                    reference: reference.into(),
                    total: total as u8,
                    seq,
                }),
            }
        })
        .collect())
}

/// Splits the UDH off `content` when `tp_udhi` is set: the concatenation IE if present,
/// and the payload.
pub fn split(tp_udhi: u8, content: &[u8]) -> (Option<ConcatInfo>, &[u8]) {
    // TP_udhi 1 means the same as SMPP's esm_class UDHI bit.
    split_udh(
        if tp_udhi != 0 {
            tongdao_link::encode::ESM_UDHI
        } else {
            0
        },
        content,
    )
}

/// Decodes a payload (no UDH) by MessageCoding: 0 ASCII (octets above 0x7F as
/// Latin-1), 8 UCS-2/UTF-16BE, 15 GBK (GB18030 decoder, a superset), anything else as
/// lossy UTF-8. Never fails: undecodable input yields U+FFFD.
pub fn decode(message_coding: u8, payload: &[u8]) -> String {
    match message_coding {
        CODING_ASCII => payload.iter().map(|&b| b as char).collect(),
        CODING_UCS2 => {
            let units: Vec<u16> = payload
                .chunks(2)
                .map(|c| match c {
                    [a, b] => u16::from_be_bytes([*a, *b]),
                    _ => 0xFFFD,
                })
                .collect();
            String::from_utf16_lossy(&units)
        }
        CODING_GBK => encoding_rs::GB18030
            .decode_without_bom_handling(payload)
            .0
            .into_owned(),
        _ => String::from_utf8_lossy(payload).into_owned(),
    }
}

/// Feeds one MO part (`tp_udhi`, `message_coding`, `content`) from `user` to
/// `reassembler`; returns the full text once every part is in (at once for a single
/// part). Each part is decoded first and handed over as UCS-2, so parts in any coding
/// (GBK included) reassemble.
pub fn reassemble(
    reassembler: &mut Reassembler,
    user: &str,
    tp_udhi: u8,
    message_coding: u8,
    content: &[u8],
) -> Option<String> {
    let (concat, payload) = split(tp_udhi, content);
    let ucs2: Vec<u8> = decode(message_coding, payload)
        .encode_utf16()
        .flat_map(u16::to_be_bytes)
        .collect();
    reassembler.push(user, 0x08, 0, &ucs2, concat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ascii_is_one_part() {
        let s = encode("hello", 1).unwrap_or_default();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].message_coding, CODING_ASCII);
        assert_eq!(s[0].content, b"hello");
        assert_eq!(s[0].tp_udhi, 0);
    }

    #[test]
    fn long_chinese_splits_into_udh_parts_and_reassembles() {
        let text = "通道短信平台测试".repeat(20); // 160 characters
        let parts = encode(&text, 9).unwrap_or_default();
        assert_eq!(parts.len(), 3); // 67 + 67 + 26
        let mut r = Reassembler::new();
        let mut done = None;
        for p in parts.iter().rev() {
            assert_eq!(p.tp_udhi, 1);
            assert!(p.content.len() <= 140);
            done = reassemble(
                &mut r,
                "8613000000000",
                p.tp_udhi,
                p.message_coding,
                &p.content,
            );
        }
        assert_eq!(done.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn gbk_round_trips_and_never_splits_a_character() {
        let text = "联通".repeat(80); // 320 octets in GBK
        let parts = encode_as(&text, Coding::Gbk, 3).unwrap_or_default();
        assert_eq!(parts.len(), 3);
        let mut r = Reassembler::new();
        let mut done = None;
        for p in &parts {
            assert_eq!((p.content.len() - 6) % 2, 0);
            done = reassemble(&mut r, "u", p.tp_udhi, p.message_coding, &p.content);
        }
        assert_eq!(done.as_deref(), Some(text.as_str()));
        assert!(matches!(
            encode_as("é", Coding::Ascii, 0),
            Err(TextError::Unrepresentable('é', Coding::Ascii))
        ));
    }
}
