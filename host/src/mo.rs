//! Inbound user messages (MOs) after the relay stored them: the host's commands,
//! subscription dialogues, and the hand-over to modules.
//!
//! - [`commands`]: the reserved words (`TD`, `0000`, `00000`, `HELP`, `Y`…), kept
//!   in [`crate::commands`] because service approval checks keywords against them too.
//! - [`router`]: claims each stored MO once and hands it to its dialogue.
//! - `dialogue`: the answers to one MO (commands, subscribe, confirm, modules).
//! - [`notices`]: every text the platform itself sends users.
//! - [`settings`]: the `[dialogue]` section.

mod dialogue;
pub mod notices;
pub mod retention;
pub mod router;
pub mod settings;

pub use crate::commands;
pub use settings::DialogueConfig;
