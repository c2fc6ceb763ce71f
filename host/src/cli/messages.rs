//! `tongdao messages list|show`: `GET /v1/messages`, `GET /v1/messages/{id}`
//! every MT with its status, segments and history).

use clap::Subcommand;

use super::output::{self, Column};
use super::{CliError, Global, PageArgs};

/// MTs, newest first (a partner's own; the admin sees all).
#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// List MTs.
    List {
        /// queued, submitted, delivered, failed, …
        #[arg(long)]
        status: Option<String>,
        /// Only MTs to this number.
        #[arg(long)]
        recipient: Option<String>,
        /// Admin: only this partner's.
        #[arg(long)]
        partner: Option<String>,
        /// Only ids below this one (the older paging of this route).
        #[arg(long)]
        before: Option<i64>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One MT with its segments, operator ids and status history.
    Show { id: i64 },
}

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("SERVICE", "service"),
    ("RECIPIENT", "recipient"),
    ("OPERATOR", "operator"),
    ("STATUS", "status"),
    ("SEGMENTS", "segments"),
    ("CREATED", "created_at"),
    ("TEXT", "text"),
];

/// Run one `messages` command.
///
/// # Errors
/// The API's error, or no answer.
pub fn run(global: &Global, command: MessagesCommand) -> Result<(), CliError> {
    let client = global.client()?;
    match command {
        MessagesCommand::List {
            status,
            recipient,
            partner,
            before,
            page,
        } => {
            let mut query: Vec<(&str, String)> = Vec::new();
            for (name, value) in [
                ("status", status),
                ("recipient", recipient),
                ("partner", partner),
                ("before", before.map(|b| b.to_string())),
            ] {
                if let Some(value) = value {
                    query.push((name, value));
                }
            }
            page.push(&mut query);
            let listed = client.list("/v1/messages", &query, "messages")?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(&listed.items, listed.next.as_deref(), COLUMNS);
            }
        }
        MessagesCommand::Show { id } => {
            let answer = client.get(&format!("/v1/messages/{id}"), &[])?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(
                    &answer,
                    Some(&[
                        "id",
                        "service",
                        "recipient",
                        "operator",
                        "status",
                        "segments",
                        "charge_plan",
                        "failure_reason",
                        "created_at",
                        "done_at",
                        "text",
                    ]),
                );
                let history = answer["history"].as_array().cloned().unwrap_or_default();
                print!(
                    "{}",
                    output::table(
                        &history,
                        &[("STATUS", "status"), ("AT", "at"), ("DETAIL", "detail")]
                    )
                );
            }
        }
    }
    Ok(())
}
