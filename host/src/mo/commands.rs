//! The host's own user commands. They are matched exactly after folding
//! ([`crate::text::command`]), before anything reaches a module, and no service
//! keyword may equal one of them.

/// Words that stop: `TD` (退订), `QX`, `R` (拒收), and the international ones.
const STOP: &[&str] = &[
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
const STOP_ALL: &[&str] = &["00000", "STOPALL"];
const MENU: &[&str] = &["0000"];
const HELP: &[&str] = &["HELP", "帮助", "INFO", "?", "？"];
/// Replies that confirm a pending paid subscription (double confirmation).
pub const CONFIRM: &[&str] = &["Y", "YES", "是", "确认"];

/// A recognised host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Stop one service (`TD XZ`), or the one whose number received it (`TD`).
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

/// Recognise a folded MO text; `None` for anything that is not a host command.
pub fn parse(folded: &str) -> Option<Command> {
    let words: Vec<&str> = folded.split(' ').collect();
    match words.as_slice() {
        [w] if STOP.contains(w) => Some(Command::Stop { code: None }),
        [w] if STOP_ALL.contains(w) => Some(Command::StopAll),
        [w] if MENU.contains(w) => Some(Command::Menu),
        [w] if HELP.contains(w) => Some(Command::Help { code: None }),
        [w] if CONFIRM.contains(w) => Some(Command::Confirm),
        [w] if !w.is_empty() && w.len() <= 3 && w.chars().all(|c| c.is_ascii_digit()) => {
            w.parse().ok().map(Command::Choice)
        }
        [w, code] if STOP.contains(w) => Some(Command::Stop {
            code: Some((*code).to_string()),
        }),
        [w, code] if HELP.contains(w) => Some(Command::Help {
            code: Some((*code).to_string()),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::command;

    #[test]
    fn commands_match_exactly_after_folding() {
        assert_eq!(
            parse(&command(" ｔｄ ")),
            Some(Command::Stop { code: None })
        );
        assert_eq!(
            parse(&command("td　xz")),
            Some(Command::Stop {
                code: Some("XZ".into())
            })
        );
        assert_eq!(parse(&command("退订")), Some(Command::Stop { code: None }));
        assert_eq!(parse(&command("０００００")), Some(Command::StopAll));
        assert_eq!(parse(&command("0000")), Some(Command::Menu));
        assert_eq!(parse(&command("帮助")), Some(Command::Help { code: None }));
        assert_eq!(parse(&command("y")), Some(Command::Confirm));
        assert_eq!(parse(&command("2")), Some(Command::Choice(2)));
        // Never fuzzy: near misses and longer sentences are not commands.
        for text in ["TDD", "T D", "please stop", "STOP NOW PLEASE", "退订了", ""] {
            assert_eq!(parse(&command(text)), None, "{text}");
        }
    }
}
