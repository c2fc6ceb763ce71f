//! Helpers for reading what users type.
//!
//! Phones in China often send full-width Latin letters and digits (`ＴＯＰ`, `Ａ`,
//! `１`) and the ideographic space; [`keyword`] folds all of that so a module can
//! compare a message against its commands simply. No host call.
//!
//! ```
//! use tongdao_sdk::text;
//!
//! assert_eq!(text::keyword("  ｔｏｐ\u{3000}"), "TOP");
//! assert_eq!(text::keyword(" 再来 "), "再来");
//! assert_eq!(text::half_width("Ａ１！"), "A1!");
//! ```

/// `text` with full-width ASCII forms (U+FF01–U+FF5E) turned into their ASCII
/// counterparts and the ideographic space (U+3000) into a plain space. Other
/// characters, Chinese included, are unchanged.
pub fn half_width(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{3000}' => ' ',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// A message reduced to a keyword: [`half_width`], without surrounding
/// whitespace, ASCII letters upper-cased (`" ｍｏｒｅ "` → `"MORE"`).
pub fn keyword(text: &str) -> String {
    half_width(text).trim().to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_full_width() {
        assert_eq!(half_width("ＡＢＣａｂｃ０９～！"), "ABCabc09~!");
        assert_eq!(half_width("白羊座　Ａ"), "白羊座 A");
        assert_eq!(keyword("\u{3000}ｂ\u{3000}"), "B");
        assert_eq!(keyword("\t排行\n"), "排行");
        assert_eq!(keyword(""), "");
    }
}
