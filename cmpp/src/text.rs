//! Text ↔ `Msg_Content`: `Msg_Fmt` choice, segmentation with a user data header
//! (`TP_udhi` = 1), decoding and reassembly of long messages.
//!
//! * `Msg_Fmt` 0 (ASCII) when every character is printable ASCII and the text fits one
//!   message (< 160 octets, §8.4.3.1 `Msg_Length`). CMPP's ASCII is plain octets, not
//!   GSM 7-bit.
//! * Otherwise `Msg_Fmt` 8, UCS-2 (UTF-16BE; non-BMP characters as surrogate pairs):
//!   70 units in one message (140 octets), 67 per segment after a 6-octet UDH
//!   (`05 00 03 ref total seq`, GSM 03.40 §9.2.3.24.1), `Pk_total`/`Pk_number` set to
//!   the same numbers. A segment never ends inside a surrogate pair.
//! * [`Coding::Gbk`] sends `Msg_Fmt` 15 (GBK, via `encoding_rs`), 140 octets single, 134
//!   per segment, never splitting a two-octet character; for ISMGs configured that way.
//! * Decoding: 0 as ASCII (other octets replaced), 8 as UTF-16BE, 15 as GB18030 (a GBK
//!   superset), anything else (4 binary, 3 SIM data) as lossy UTF-8.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `Msg_Fmt` 0: ASCII.
pub const FMT_ASCII: u8 = 0;
/// `Msg_Fmt` 8: UCS-2.
pub const FMT_UCS2: u8 = 8;
/// `Msg_Fmt` 15: GBK (含GB汉字).
pub const FMT_GBK: u8 = 15;

/// Octets a `Msg_Content` may hold besides ASCII (§8.4.3.1).
const MAX_OCTETS: usize = 140;
/// ASCII single-message limit (< 160).
const MAX_ASCII: usize = 159;
const UDH_LEN: usize = 6;

/// How a text is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Coding {
    /// ASCII when it fits one message, else UCS-2.
    #[default]
    Auto,
    /// GBK (`Msg_Fmt` 15).
    Gbk,
}

/// Concatenation information of one segment (from its UDH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConcatInfo {
    /// Reference shared by the parts of one message.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// 1-based part number.
    pub seq: u8,
}

/// One `CMPP_SUBMIT` worth of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// `Msg_Content` (UDH included when `tp_udhi` is 1).
    pub content: Vec<u8>,
    /// `Msg_Fmt`.
    pub msg_fmt: u8,
    /// `TP_udhi`.
    pub tp_udhi: u8,
    /// `Pk_total`.
    pub pk_total: u8,
    /// `Pk_number`.
    pub pk_number: u8,
}

/// Errors from [`encode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// More than 255 segments would be needed.
    #[error("text needs {0} segments; at most 255 are possible")]
    TooLong(usize),
    /// A character has no GBK encoding.
    #[error("{0:?} cannot be written in GBK")]
    NotGbk(char),
}

/// Encodes `text` into one or more segments; long ones carry a UDH with `reference`.
/// The decoded segments concatenate to exactly `text`.
///
/// # Errors
/// [`TextError::TooLong`] past 255 segments; [`TextError::NotGbk`] for a character GBK
/// lacks under [`Coding::Gbk`].
pub fn encode(text: &str, coding: Coding, reference: u8) -> Result<Vec<Segment>, TextError> {
    let (fmt, units): (u8, Vec<Vec<u8>>) = match coding {
        Coding::Auto
            if text.len() <= MAX_ASCII
                && text
                    .bytes()
                    .all(|b| (0x20..0x7F).contains(&b) || b == b'\n' || b == b'\r') =>
        {
            return Ok(vec![Segment {
                content: text.as_bytes().to_vec(),
                msg_fmt: FMT_ASCII,
                tp_udhi: 0,
                pk_total: 1,
                pk_number: 1,
            }]);
        }
        Coding::Auto => (
            FMT_UCS2,
            text.chars()
                .map(|c| {
                    let mut buf = [0u16; 2];
                    c.encode_utf16(&mut buf)
                        .iter()
                        .flat_map(|u| u.to_be_bytes())
                        .collect()
                })
                .collect(),
        ),
        Coding::Gbk => {
            let mut units = Vec::new();
            for c in text.chars() {
                let mut s = [0u8; 4];
                let (bytes, _, unmappable) = encoding_rs::GBK.encode(c.encode_utf8(&mut s));
                if unmappable {
                    return Err(TextError::NotGbk(c));
                }
                units.push(bytes.into_owned());
            }
            (FMT_GBK, units)
        }
    };
    let total: usize = units.iter().map(Vec::len).sum();
    let cap = if total <= MAX_OCTETS {
        MAX_OCTETS
    } else {
        MAX_OCTETS - UDH_LEN
    };
    let mut bodies: Vec<Vec<u8>> = vec![Vec::new()];
    for u in units {
        let cur = bodies.last().map_or(0, Vec::len);
        if cur + u.len() > cap {
            bodies.push(Vec::new());
        }
        if let Some(b) = bodies.last_mut() {
            b.extend_from_slice(&u);
        }
    }
    let n = bodies.len();
    if n > 255 {
        return Err(TextError::TooLong(n));
    }
    if n == 1 {
        return Ok(vec![Segment {
            content: bodies.pop().unwrap_or_default(),
            msg_fmt: fmt,
            tp_udhi: 0,
            pk_total: 1,
            pk_number: 1,
        }]);
    }
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let seq = (i + 1) as u8;
            let mut content = vec![0x05, 0x00, 0x03, reference, n as u8, seq];
            content.extend_from_slice(&body);
            Segment {
                content,
                msg_fmt: fmt,
                tp_udhi: 1,
                pk_total: n as u8,
                pk_number: seq,
            }
        })
        .collect())
}

/// Splits a UDH off `content` when `tp_udhi` is set; returns the concatenation IE (8-bit
/// IEI 0x00 or 16-bit IEI 0x08) if any, and the text octets. A malformed UDH leaves the
/// content whole.
pub fn split_udh(tp_udhi: u8, content: &[u8]) -> (Option<ConcatInfo>, &[u8]) {
    if tp_udhi & 1 == 0 || content.is_empty() {
        return (None, content);
    }
    let udhl = usize::from(content[0]);
    let Some(udh) = content.get(1..1 + udhl) else {
        return (None, content);
    };
    let body = &content[1 + udhl..];
    let mut i = 0;
    let mut concat = None;
    while i + 2 <= udh.len() {
        let (iei, len) = (udh[i], usize::from(udh[i + 1]));
        let Some(v) = udh.get(i + 2..i + 2 + len) else {
            break;
        };
        match (iei, len) {
            (0x00, 3) => {
                concat = Some(ConcatInfo {
                    reference: v[0].into(),
                    total: v[1],
                    seq: v[2],
                })
            }
            (0x08, 4) => {
                concat = Some(ConcatInfo {
                    reference: u16::from_be_bytes([v[0], v[1]]),
                    total: v[2],
                    seq: v[3],
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    (concat, body)
}

/// Decodes text octets in `msg_fmt`.
pub fn decode(msg_fmt: u8, body: &[u8]) -> String {
    match msg_fmt {
        FMT_ASCII => body
            .iter()
            .map(|&b| {
                if b.is_ascii() {
                    char::from(b)
                } else {
                    '\u{FFFD}'
                }
            })
            .collect(),
        FMT_UCS2 => {
            let units: Vec<u16> = body
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units)
        }
        FMT_GBK => encoding_rs::GB18030
            .decode_without_bom_handling(body)
            .0
            .into_owned(),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Decodes a whole `Msg_Content` (UDH skipped): (concatenation info, text of this part).
pub fn decode_content(msg_fmt: u8, tp_udhi: u8, content: &[u8]) -> (Option<ConcatInfo>, String) {
    let (concat, body) = split_udh(tp_udhi, content);
    (concat, decode(msg_fmt, body))
}

/// Joins the parts of long messages. Parts are keyed by (`sender`, reference, total);
/// a message whose parts stop coming is dropped after [`Reassembler::TTL`]. A part seen
/// twice (a redelivery) is kept once.
#[derive(Debug, Default)]
pub struct Reassembler {
    pending: HashMap<(String, u16, u8), (Instant, Vec<Option<String>>)>,
}

impl Reassembler {
    /// How long an incomplete message waits for its other parts.
    pub const TTL: Duration = Duration::from_secs(600);

    /// An empty reassembler.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one part's text; returns the whole text once every part is in (at once
    /// when `concat` is `None` or says one part).
    pub fn push(
        &mut self,
        sender: &str,
        concat: Option<ConcatInfo>,
        text: String,
    ) -> Option<String> {
        let Some(c) = concat.filter(|c| c.total > 1 && c.seq >= 1 && c.seq <= c.total) else {
            return Some(text);
        };
        let now = Instant::now();
        self.pending
            .retain(|_, (at, _)| now.duration_since(*at) < Self::TTL);
        let key = (sender.to_string(), c.reference, c.total);
        let entry = self
            .pending
            .entry(key.clone())
            .or_insert_with(|| (now, vec![None; usize::from(c.total)]));
        entry.1[usize::from(c.seq - 1)] = Some(text);
        if entry.1.iter().all(Option::is_some) {
            let (_, parts) = self.pending.remove(&key)?;
            return Some(parts.into_iter().flatten().collect());
        }
        None
    }

    /// Messages waiting for parts.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_fits_one() {
        let s = encode("Hello 1066", Coding::Auto, 1).expect("encode");
        assert_eq!(s.len(), 1);
        assert_eq!((s[0].msg_fmt, s[0].tp_udhi), (FMT_ASCII, 0));
    }

    #[test]
    fn long_chinese_round_trips_through_segments() {
        let text = "您好，您订阅的天气预报：明天北京晴转多云，气温十二到二十五度，东南风三到四级。"
            .repeat(3)
            + "😀";
        let segs = encode(&text, Coding::Auto, 9).expect("encode");
        assert!(segs.len() > 1);
        let mut r = Reassembler::new();
        let mut out = None;
        for s in &segs {
            assert!(s.content.len() <= 140);
            assert_eq!((s.tp_udhi, s.pk_total), (1, segs.len() as u8));
            let (c, t) = decode_content(s.msg_fmt, s.tp_udhi, &s.content);
            out = r.push("13800138000", c, t);
        }
        assert_eq!(out.as_deref(), Some(text.as_str()));
    }

    #[test]
    fn gbk_round_trip() {
        let text = "中国移动梦网".repeat(20);
        let segs = encode(&text, Coding::Gbk, 3).expect("encode");
        assert_eq!(segs.len(), 2); // 240 octets → 134 + 106
        let joined: String = segs
            .iter()
            .map(|s| decode_content(s.msg_fmt, s.tp_udhi, &s.content).1)
            .collect();
        assert_eq!(joined, text);
        assert_eq!(encode("😀", Coding::Gbk, 0), Err(TextError::NotGbk('😀')));
    }
}
