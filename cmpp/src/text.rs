//! `Msg_Fmt` ↔ the link's `data_coding`: what CMPP's message formats mean, and how they
//! map onto [`tongdao_link::encode`] (segmentation, UDH, reassembly live there, shared by
//! every protocol).
//!
//! * Outgoing: `data_coding` 0x08 (UCS-2) is `Msg_Fmt` 8 as it is; `data_coding` 0x01
//!   (IA5/ASCII, what [`ALPHABET`] makes for ASCII texts: at most 159 octets, CMPP 3.0
//!   §8.4.3.1 `Msg_Length`) is `Msg_Fmt` 0 as it is. `data_coding` 0x00 (GSM 7-bit,
//!   SMPP's default) has no CMPP equivalent: its text is re-written as `Msg_Fmt` 0
//!   (ASCII octets) when it is ASCII, else refused ([`to_msg_fmt`]). Other values (4
//!   binary, 15 GBK) pass through.
//! * Incoming: `Msg_Fmt` 8 passes through as `data_coding` 8. `Msg_Fmt` 0 (ASCII), 15
//!   (GBK, decoded as GB18030, its superset) and others are decoded here and re-written as
//!   UCS-2 with the UDH kept ([`to_ucs2`]), so the link's decoder and reassembler handle
//!   every MO the same way.

use tongdao_link::encode::{Alphabet, DC_ASCII, DC_UCS2, ESM_UDHI, decode_payload, split_udh};

/// How texts are encoded for CMPP (issue 16 item 3): ASCII as `Msg_Fmt` 0 when every
/// character is ASCII, below 160 octets a message (CMPP 3.0 §8.4.3.1 `Msg_Length`: "Msg_Fmt
/// 值为0时：<160个字节；其它<=140个字节"; 2.0's CMPP_SUBMIT the same), else UCS-2
/// (`Msg_Fmt` 8, 140 octets).
pub const ALPHABET: Alphabet = Alphabet::Ascii;

/// `Msg_Fmt` 0: ASCII.
pub const FMT_ASCII: u8 = 0;
/// `Msg_Fmt` 4: binary.
pub const FMT_BINARY: u8 = 4;
/// `Msg_Fmt` 8: UCS-2.
pub const FMT_UCS2: u8 = 8;
/// `Msg_Fmt` 15: GBK (含GB汉字).
pub const FMT_GBK: u8 = 15;

/// Decodes text octets (no UDH) in `msg_fmt`: 0 as ASCII (other octets U+FFFD), 8 as
/// UTF-16BE, 15 as GB18030, anything else as lossy UTF-8.
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
        FMT_UCS2 => decode_payload(DC_UCS2, body),
        FMT_GBK => encoding_rs::GB18030
            .decode_without_bom_handling(body)
            .0
            .into_owned(),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// (`Msg_Fmt`, `Msg_Content`) for a link segment's (`data_coding`, `esm_class`,
/// `short_message`).
///
/// # Errors
/// A description when GSM 7-bit text is not ASCII (CMPP cannot carry it as sent:
/// encode CMPP texts with [`ALPHABET`]).
pub fn to_msg_fmt(
    data_coding: u8,
    esm_class: u8,
    short_message: &[u8],
) -> Result<(u8, Vec<u8>), String> {
    if data_coding == DC_ASCII {
        return Ok((FMT_ASCII, short_message.to_vec()));
    }
    if data_coding != 0x00 {
        return Ok((data_coding, short_message.to_vec()));
    }
    let (_, payload) = split_udh(esm_class, short_message);
    let text = decode_payload(0x00, payload);
    if !text.is_ascii() {
        return Err(format!(
            "GSM 7-bit text {text:?} is not ASCII; CMPP has no GSM 7-bit (send UCS-2)"
        ));
    }
    let udh_len = short_message.len() - payload.len();
    let mut content = short_message[..udh_len].to_vec();
    content.extend_from_slice(text.as_bytes());
    Ok((FMT_ASCII, content))
}

/// (`data_coding`, `esm_class`, `short_message`) in the link's terms for a received
/// `Msg_Content`: UCS-2 as it is, other formats decoded and re-written as UCS-2 after
/// the same UDH.
pub fn to_ucs2(msg_fmt: u8, tp_udhi: u8, content: &[u8]) -> (u8, u8, Vec<u8>) {
    let esm_class = if tp_udhi & 1 == 1 { ESM_UDHI } else { 0 };
    if msg_fmt == FMT_UCS2 {
        return (DC_UCS2, esm_class, content.to_vec());
    }
    let (_, payload) = split_udh(esm_class, content);
    let udh_len = content.len() - payload.len();
    let mut out = content[..udh_len].to_vec();
    out.extend(
        decode(msg_fmt, payload)
            .encode_utf16()
            .flat_map(u16::to_be_bytes),
    );
    (DC_UCS2, esm_class, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_mo_becomes_ucs2_text() {
        let (gbk, _, _) = encoding_rs::GBK.encode("天气 TQ");
        let (dc, esm, sm) = to_ucs2(FMT_GBK, 0, &gbk);
        assert_eq!((dc, esm), (DC_UCS2, 0));
        assert_eq!(decode_payload(dc, &sm), "天气 TQ");
    }

    #[test]
    fn gsm7_ascii_becomes_msg_fmt_0_and_the_rest_is_refused() {
        // "$@" in GSM 7-bit unpacked is 0x02 0x00.
        assert_eq!(
            to_msg_fmt(0, 0, &[0x02, 0x00]),
            Ok((FMT_ASCII, b"$@".to_vec()))
        );
        // "é" (0x05) is not ASCII.
        assert!(to_msg_fmt(0, 0, &[0x05]).is_err());
        assert_eq!(to_msg_fmt(8, 0, &[0x4E, 0x2D]), Ok((8, vec![0x4E, 0x2D])));
        assert_eq!(to_msg_fmt(1, 0, b"$@"), Ok((FMT_ASCII, b"$@".to_vec())));
    }

    /// CMPP 3.0 §8.4.3.1 `Msg_Length`: below 160 octets for `Msg_Fmt` 0, at most 140
    /// for the others. What [`ALPHABET`] makes always fits, UDH included.
    #[test]
    fn msg_content_stays_within_the_spec_limits() {
        use tongdao_link::encode::{Concat, encode_in};
        for (text, fmt, limit) in [
            ("a".repeat(159), FMT_ASCII, 159),
            ("a".repeat(160), FMT_ASCII, 159),
            ("a".repeat(1000), FMT_ASCII, 159),
            ("短".repeat(70), FMT_UCS2, 140),
            ("短".repeat(300), FMT_UCS2, 140),
        ] {
            let segments = encode_in(&text, ALPHABET, Concat::Udh8(3)).expect("encode");
            for s in &segments {
                let (msg_fmt, content) =
                    to_msg_fmt(s.data_coding, s.esm_class, &s.short_message).expect("fmt");
                assert_eq!(msg_fmt, fmt);
                assert!(content.len() <= limit, "{} > {limit}", content.len());
            }
        }
        let one = encode_in(&"a".repeat(159), ALPHABET, Concat::Udh8(3)).expect("encode");
        assert_eq!(one.len(), 1, "159 ASCII octets are one message");
    }
}
