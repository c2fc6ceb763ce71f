//! The host's own user commands: the vocabulary the keyword router
//! ([`crate::mo`]) answers before any module, and that service approval
//! ([`crate::services`]) keeps every keyword clear of. They are matched exactly on
//! the router's key ([`crate::text::route_key`]: width, case, spaces, invisible
//! characters and punctuation at the ends folded away), before anything reaches a
//! module, and no service keyword may be one of them.
//!
//! A stop or help word takes a service code spaced (`TD XZ`) or glued on (`TDXZ`,
//! `退订XZ`, `QXXZ`); a glued code counts only when it is a live service's code, so
//! a word that merely starts with `TD` is not a command. Nothing else is: a stop
//! word inside a longer sentence (`退订了吗`, `please stop`) does not stop.

/// Words that stop: `TD` (退订), `QX`, `R` (拒收), and the international ones.
pub const STOP: &[&str] = &[
    "TD",
    "退订",
    "QX",
    "取消",
    "R",
    "STOP",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
];
/// Words that end every subscription of the sender.
pub const STOP_ALL: &[&str] = &["00000", "STOPALL"];
/// The word that lists the sender's subscriptions.
pub const MENU: &[&str] = &["0000"];
/// Words that ask for help.
pub const HELP: &[&str] = &["HELP", "帮助", "INFO", "?"];
/// Replies that confirm a pending paid subscription (double confirmation).
pub const CONFIRM: &[&str] = &["Y", "YES", "是", "确认"];

/// A recognised host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop one service (`TD XZ`, `TDXZ`), or the one whose number received it (`TD`).
    Stop { code: Option<String> },
    /// Cancel every subscription (`00000`, `STOPALL`).
    StopAll,
    /// List subscriptions to cancel by number (`0000`).
    Menu,
    /// Help text, of one service or the platform.
    Help { code: Option<String> },
    /// A confirming reply (`Y`); a command only while a confirmation is pending.
    Confirm,
    /// A number: the choice in a `0000` menu, if one is open.
    Choice(u32),
}

/// Whether a folded word is reserved for the host.
pub fn is_host_command(word: &str) -> bool {
    [STOP, STOP_ALL, MENU, HELP, CONFIRM]
        .iter()
        .any(|list| list.contains(&word))
}

/// Recognise a message by its router key ([`crate::text::route_key`]); `codes` are
/// the live services' codes (a glued code must be one of them). `None` for anything
/// that is not a host command.
pub fn parse(key: &str, codes: &[&str]) -> Option<Command> {
    let words: Vec<&str> = key.split(' ').collect();
    match words.as_slice() {
        [w] if STOP.contains(w) => Some(Command::Stop { code: None }),
        [w] if STOP_ALL.contains(w) => Some(Command::StopAll),
        [w] if MENU.contains(w) => Some(Command::Menu),
        [w] if HELP.contains(w) => Some(Command::Help { code: None }),
        [w] if CONFIRM.contains(w) => Some(Command::Confirm),
        [w] if !w.is_empty() && w.len() <= 3 && w.chars().all(|c| c.is_ascii_digit()) => {
            w.parse().ok().map(Command::Choice)
        }
        [w] => glued(w, codes),
        [w, code] if STOP.contains(w) => Some(Command::Stop {
            code: Some(spaced_code(code)),
        }),
        [w, code] if HELP.contains(w) => Some(Command::Help {
            code: Some(spaced_code(code)),
        }),
        _ => None,
    }
}

/// A code typed after the word, without punctuation around it (`TD ,XZ`).
fn spaced_code(code: &str) -> String {
    let trimmed = crate::text::trim_punctuation(code);
    if trimmed.is_empty() { code } else { trimmed }.to_string()
}

/// `TDXZ`, `退订XZ`, `QX.XZ`, `帮助XZ`: a stop or help word with a live code glued on.
/// The longest word wins (`QX` before `Q…`), so `QXXZ` is `QX` + `XZ`.
fn glued(word: &str, codes: &[&str]) -> Option<Command> {
    let mut best: Option<(usize, Command)> = None;
    for (list, stop) in [(STOP, true), (HELP, false)] {
        for prefix in list {
            let Some(rest) = word.strip_prefix(prefix) else {
                continue;
            };
            let code = crate::text::trim_punctuation(rest);
            if code.is_empty() || !codes.contains(&code) {
                continue;
            }
            if best.as_ref().is_some_and(|(len, _)| *len >= prefix.len()) {
                continue;
            }
            let code = Some(code.to_string());
            let command = if stop {
                Command::Stop { code }
            } else {
                Command::Help { code }
            };
            best = Some((prefix.len(), command));
        }
    }
    best.map(|(_, command)| command)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::route_key;

    fn parse_text(text: &str) -> Option<Command> {
        parse(&route_key(text), &["XZ", "XH", "DT"])
    }

    fn stop(code: &str) -> Option<Command> {
        Some(Command::Stop {
            code: Some(code.into()),
        })
    }

    #[test]
    fn commands_match_exactly_after_folding() {
        assert_eq!(parse_text(" ｔｄ "), Some(Command::Stop { code: None }));
        assert_eq!(parse_text("td　xz"), stop("XZ"));
        assert_eq!(parse_text("退订"), Some(Command::Stop { code: None }));
        assert_eq!(parse_text("０００００"), Some(Command::StopAll));
        assert_eq!(parse_text("0000"), Some(Command::Menu));
        assert_eq!(parse_text("帮助"), Some(Command::Help { code: None }));
        assert_eq!(parse_text("？"), Some(Command::Help { code: None }));
        assert_eq!(parse_text("y"), Some(Command::Confirm));
        assert_eq!(parse_text("2"), Some(Command::Choice(2)));
        // Never fuzzy: near misses and longer sentences are not commands.
        for text in [
            "TDD",
            "T D",
            "please stop",
            "STOP NOW PLEASE",
            "退订了",
            "退订了吗？",
            "我不想退订",
            "",
            "TDXX",
        ] {
            assert_eq!(parse_text(text), None, "{text}");
        }
    }

    /// Issue 10 item 4: the platform's own instruction, and how users type it.
    #[test]
    fn item4_punctuation_and_glued_codes() {
        for text in ["Td。", "TD.", "退订！", "退订。", "td!", "【TD】", "“退订”"] {
            assert_eq!(
                parse_text(text),
                Some(Command::Stop { code: None }),
                "{text}"
            );
        }
        for text in [
            "TDXH", "tdxh", "TDXH。", "退订XH", "QXXH", "取消xh", "TD XH", "td，xh", "TD-XH",
            "STOPXH",
        ] {
            assert_eq!(parse_text(text), stop("XH"), "{text}");
        }
        assert_eq!(
            parse_text("帮助XZ"),
            Some(Command::Help {
                code: Some("XZ".into())
            })
        );
    }
}
