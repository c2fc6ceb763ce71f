//! `[dialogue]`: the host's side of the conversation with users.

use serde::{Deserialize, Serialize};

/// Texts and windows of the host's replies.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DialogueConfig {
    /// The platform's short code; a service's number is this plus its extension.
    pub short_code: String,
    /// How long a paid subscription waits for the user's confirming reply.
    pub confirm_window_secs: u64,
    /// A confirmation request asked for again through the API (the same number
    /// and service, still pending) is re-sent at most this often (issue 10 item 3).
    pub confirm_resend_secs: u64,
    /// How long a `0000` menu accepts a numbered reply.
    pub menu_window_secs: u64,
    /// Answer to anything that is neither a command, a keyword, nor a message
    /// within a subscription. Never silence.
    pub unknown_reply: String,
    /// How often the router looks for MOs when not woken, and how long a claim holds.
    pub poll_ms: u64,
    pub lease_secs: u64,
}

impl Default for DialogueConfig {
    fn default() -> Self {
        Self {
            short_code: "10661234".into(),
            confirm_window_secs: 24 * 3600,
            confirm_resend_secs: 3600,
            menu_window_secs: 24 * 3600,
            unknown_reply: super::notices::unknown(),
            poll_ms: 500,
            lease_secs: 60,
        }
    }
}
