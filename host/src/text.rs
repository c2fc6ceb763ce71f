//! Text normalisation shared by the keyword router and the content policy.
//!
//! Users type commands in full-width forms, mixed case and with stray spaces; people
//! who want to slip a banned word past a filter add spaces, punctuation, full-width
//! letters or look-alike letters from other scripts. Both problems are solved by
//! folding text to one canonical form before matching, never by fuzzy matching.

use std::sync::LazyLock;

use regex::Regex;
use unicode_normalization::UnicodeNormalization;

/// A command as typed, folded for exact matching: NFKC (full-width → ASCII), upper
/// case, runs of whitespace (including the ideographic space) collapsed to one space,
/// trimmed. `" ｔｄ　xz "` → `"TD XZ"`.
pub fn command(text: &str) -> String {
    // NFKC again after upper-casing: upper case can decompose (`ΐ` is `Ϊ́` as three
    // characters, which NFKC composes to two), and a fold must be its own fold (a
    // keyword stored folded must match when typed as stored; found by the `mo_route`
    // fuzz target, issue 18).
    let upper: String = text.nfkc().flat_map(char::to_uppercase).collect();
    let folded: String = upper.nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A user's message as the keyword router matches it (and as subscribe keywords and
/// service codes are stored): [`command`], invisible format characters (zero-width
/// space, bidi marks) dropped, and punctuation or symbols at either end trimmed, ASCII
/// or full-width, so `"Td。"`, `" TD. "`, `"退订！"` and `"【TD】"` all read `"TD"`.
/// Text made of nothing but punctuation is kept as it is (`"?"` asks for help).
/// Punctuation inside the text stays: `"退订了吗？"` is `"退订了吗"`, not a command.
pub fn route_key(text: &str) -> String {
    // Format characters go before spaces are folded: `"TD \u{200b} XZ"` is `"TD XZ"`,
    // not `"TD  XZ"` (two words with an empty one between, no command; found by the
    // `mo_route` fuzz target, issue 18).
    let visible: String = text.chars().filter(|c| !is_format(*c)).collect();
    let folded = command(&visible);
    let trimmed = trim_punctuation(&folded);
    if trimmed.is_empty() {
        folded.split_whitespace().collect()
    } else {
        trimmed.to_string()
    }
}

/// `text` without punctuation, symbols or spaces at either end.
pub fn trim_punctuation(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || is_punctuation(c))
}

/// Unicode punctuation or symbol (general categories P* and S*), ASCII and full-width.
pub fn is_punctuation(c: char) -> bool {
    static CLASS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[\p{P}\p{S}]$").expect("a valid character class"));
    c.is_ascii_punctuation() || (!c.is_ascii() && CLASS.is_match(c.encode_utf8(&mut [0; 4])))
}

/// A format character (general category Cf): zero-width space and joiners, bidi
/// marks and overrides, the byte-order mark, soft hyphen, tag characters.
pub fn is_format(c: char) -> bool {
    static CLASS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\p{Cf}$").expect("a valid character class"));
    !c.is_ascii() && CLASS.is_match(c.encode_utf8(&mut [0; 4]))
}

/// Control and invisible characters of `text`, in order: general categories Cc
/// (C0 controls such as NUL and ESC, DEL, C1 controls) and Cf (zero-width space,
/// non-joiner and joiner, bidi marks, embeddings, overrides such as U+202E and
/// isolates, the byte-order mark, soft hyphen, tag characters). A phone shows none
/// of them as what they are; they hide or reorder what a user reads. Kept: line
/// breaks (`\n`, `\r`) when `line_breaks`, and a zero-width joiner between two
/// pictographs (an emoji sequence such as 👨‍👩‍👧).
pub fn invisible_chars(text: &str, line_breaks: bool) -> Vec<char> {
    let chars: Vec<char> = text.chars().collect();
    let mut found = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        let invisible = c.is_control() || is_format(c);
        if !invisible || (line_breaks && (c == '\n' || c == '\r')) {
            continue;
        }
        if c == '\u{200d}' && joins_emoji(&chars, i) {
            continue;
        }
        found.push(c);
    }
    found
}

/// `text` without the characters [`invisible_chars`] finds.
pub fn strip_invisible(text: &str, line_breaks: bool) -> String {
    let found = invisible_chars(text, line_breaks);
    if found.is_empty() {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    for (i, &c) in chars.iter().enumerate() {
        let invisible = c.is_control() || is_format(c);
        let kept = !invisible
            || (line_breaks && (c == '\n' || c == '\r'))
            || (c == '\u{200d}' && joins_emoji(&chars, i));
        if kept {
            out.push(c);
        }
    }
    out
}

/// How a list of invisible characters reads in an error: `U+0000, U+202E`.
pub fn describe_chars(chars: &[char]) -> String {
    let mut seen: Vec<char> = Vec::new();
    for c in chars {
        if !seen.contains(c) {
            seen.push(*c);
        }
    }
    seen.iter()
        .map(|c| format!("U+{:04X}", u32::from(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A zero-width joiner at `i` with a pictograph before it (variation selector or
/// skin tone between allowed) and one after it.
fn joins_emoji(chars: &[char], i: usize) -> bool {
    static PICTO: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\p{Extended_Pictographic}$").expect("a valid character class")
    });
    let picto = |c: char| PICTO.is_match(c.encode_utf8(&mut [0; 4]));
    let modifier = |c: char| c == '\u{fe0f}' || ('\u{1f3fb}'..='\u{1f3ff}').contains(&c);
    let before = chars[..i].iter().rev().find(|c| !modifier(**c));
    let after = chars.get(i + 1);
    before.is_some_and(|c| picto(*c)) && after.is_some_and(|c| picto(*c))
}

/// Text squashed for policy matching: NFKC, lower case, look-alike letters of other
/// scripts mapped to Latin, and everything that is not a letter or digit removed, so
/// `"赌 博"`, `"赌.博"`, `"ＶＩＡＧＲＡ"` and `"viаgra"` (Cyrillic а) all match their
/// plain forms. Invisible format characters (zero-width space/joiner) go too.
pub fn squash(text: &str) -> String {
    text.nfkc()
        .flat_map(char::to_lowercase)
        .map(latin_lookalike)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Cyrillic and Greek letters that look like Latin ones, mapped to the Latin letter
/// (lower case; the input is already lower-cased).
fn latin_lookalike(c: char) -> char {
    match c {
        'а' => 'a',
        'в' => 'b',
        'с' => 'c',
        'е' | 'ё' => 'e',
        'һ' => 'h',
        'і' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'ѕ' => 's',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_fold_width_case_and_spaces() {
        assert_eq!(command(" ｔｄ　xz "), "TD XZ");
        assert_eq!(command("Td\t\txz"), "TD XZ");
        assert_eq!(command("退订"), "退订");
        assert_eq!(command("０００００"), "00000");
        assert_eq!(command("   "), "");
    }

    #[test]
    fn route_keys_trim_punctuation_at_the_ends_only() {
        for (typed, key) in [
            ("Td。", "TD"),
            ("TD.", "TD"),
            ("退订！", "退订"),
            ("退订。", "退订"),
            (" 【td】 ", "TD"),
            ("T\u{200b}D", "TD"),
            ("\u{202e}TD", "TD"),
            ("td xz!!", "TD XZ"),
            ("?", "?"),
            ("？", "?"),
            ("退订了吗？", "退订了吗"),
            ("A.B", "A.B"),
        ] {
            assert_eq!(route_key(typed), key, "{typed:?}");
        }
    }

    /// Found by the `mo_route` fuzz target (issue 18 item 3, R-3.2): a format character
    /// between two words left two spaces once dropped, so `TD <ZWSP> XZ` was no stop
    /// command and its key not its own key.
    #[test]
    fn regression_format_characters_between_words_leave_one_space() {
        for (typed, key) in [
            ("TD \u{200b} XZ", "TD XZ"),
            ("td\u{200b} \u{feff} xz", "TD XZ"),
            ("退订 \u{2060} XZ", "退订 XZ"),
        ] {
            assert_eq!(route_key(typed), key, "{typed:?}");
            assert_eq!(route_key(key), key, "{key:?}");
        }
        assert_eq!(
            crate::commands::parse(&route_key("TD \u{200b} XZ"), &["XZ"]),
            Some(crate::commands::Command::Stop {
                code: Some("XZ".into())
            })
        );
    }

    /// A keyword is stored folded; typed as stored it must still match (issue 18 item
    /// 3, R-3.2). `ΐ` upper-cases to three characters NFKC composes to two: found by
    /// the `mo_route` fuzz target (corpus `mo_route/regression-upper-case-decomposes`).
    #[test]
    fn regression_route_keys_are_their_own_keys() {
        assert_eq!(command("ΐ"), "\u{3aa}\u{301}");
        for typed in [
            " ｔｄ　xz ",
            "【td】",
            "T\u{200b}D",
            "? ?",
            "td xz!!",
            "退订了吗？",
            "ΐ",
            "ΰ xz",
            "ǰ",
        ] {
            let key = route_key(typed);
            assert_eq!(route_key(&key), key, "{typed:?}");
        }
    }

    #[test]
    fn invisible_characters_are_found_but_line_breaks_and_emoji_joins_kept() {
        let text = "a\0b\u{1b}[31mc\u{202e}d\u{200b}e\u{feff}f\u{85}g\u{7f}h\u{2066}i";
        assert_eq!(
            invisible_chars(text, true),
            [
                '\0', '\u{1b}', '\u{202e}', '\u{200b}', '\u{feff}', '\u{85}', '\u{7f}', '\u{2066}'
            ]
        );
        assert_eq!(strip_invisible(text, true), "ab[31mcdefghi");
        assert!(invisible_chars("第一行\n第二行\r\n", true).is_empty());
        assert_eq!(invisible_chars("a\nb", false), ['\n']);
        assert!(invisible_chars("家庭👨\u{200d}👩\u{200d}👧", true).is_empty());
        assert_eq!(invisible_chars("T\u{200d}D", true), ['\u{200d}']);
        assert_eq!(describe_chars(&['\0', '\u{202e}', '\0']), "U+0000, U+202E");
    }

    #[test]
    fn squash_defeats_spacing_width_and_lookalikes() {
        assert_eq!(squash("赌 博"), "赌博");
        assert_eq!(squash("赌.博！"), "赌博");
        assert_eq!(squash("ＶＩＡＧＲＡ"), "viagra");
        assert_eq!(squash("viаgra"), "viagra"); // Cyrillic а
        assert_eq!(squash("v\u{200b}i-a g r a"), "viagra");
        assert_eq!(squash("ΑΒΕ"), "abe"); // Greek capitals
    }
}
