//! Text normalisation shared by the keyword router and the content policy.
//!
//! Users type commands in full-width forms, mixed case and with stray spaces; people
//! who want to slip a banned word past a filter add spaces, punctuation, full-width
//! letters or look-alike letters from other scripts. Both problems are solved by
//! folding text to one canonical form before matching, never by fuzzy matching.

use unicode_normalization::UnicodeNormalization;

/// A command as typed, folded for exact matching: NFKC (full-width → ASCII), upper
/// case, runs of whitespace (including the ideographic space) collapsed to one space,
/// trimmed. `" ｔｄ　xz "` → `"TD XZ"`.
pub fn command(text: &str) -> String {
    let folded: String = text.nfkc().flat_map(char::to_uppercase).collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
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
    fn squash_defeats_spacing_width_and_lookalikes() {
        assert_eq!(squash("赌 博"), "赌博");
        assert_eq!(squash("赌.博！"), "赌博");
        assert_eq!(squash("ＶＩＡＧＲＡ"), "viagra");
        assert_eq!(squash("viаgra"), "viagra"); // Cyrillic а
        assert_eq!(squash("v\u{200b}i-a g r a"), "viagra");
        assert_eq!(squash("ΑΒΕ"), "abe"); // Greek capitals
    }
}
