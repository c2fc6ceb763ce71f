//! `tongdao partner create|list|key` (admin key): `POST /v1/partners`,
//! `GET /v1/partners`, `POST /v1/partners/{name}/keys`.

use clap::Subcommand;
use serde_json::json;

use super::client::segment;
use super::output::{self, Column};
use super::{CliError, Global, PageArgs};

/// Partners and their keys (admin).
#[derive(Debug, Subcommand)]
pub enum PartnerCommand {
    /// Create a partner; its API key is printed once.
    Create {
        /// Login name: 2-32 of a-z, 0-9 and '-', starting with a letter.
        name: String,
        /// The name people read (乐游).
        #[arg(long)]
        display_name: String,
    },
    /// List partners.
    List {
        #[command(flatten)]
        page: PageArgs,
    },
    /// Issue a new API key for a partner (printed once).
    Key {
        name: String,
        /// Revoke every other key of the partner.
        #[arg(long)]
        revoke_others: bool,
    },
}

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("NAME", "name"),
    ("DISPLAY NAME", "display_name"),
    ("STATUS", "status"),
    ("CREATED", "created_at"),
];

/// Run one `partner` command.
///
/// # Errors
/// The API's error, or no answer.
pub fn run(global: &Global, command: PartnerCommand) -> Result<(), CliError> {
    let client = global.client()?;
    match command {
        PartnerCommand::Create { name, display_name } => {
            let answer = client.post(
                "/v1/partners",
                Some(&json!({ "name": name, "display_name": display_name })),
            )?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(
                    &answer,
                    Some(&[
                        "partner.id",
                        "partner.name",
                        "partner.display_name",
                        "api_key",
                    ]),
                );
                println!("the key is shown once: store it now");
            }
        }
        PartnerCommand::List { page } => {
            let mut query = Vec::new();
            page.push(&mut query);
            let listed = client.list("/v1/partners", &query, "partners")?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(&listed.items, listed.next.as_deref(), COLUMNS);
            }
        }
        PartnerCommand::Key {
            name,
            revoke_others,
        } => {
            let answer = client.post(
                &format!("/v1/partners/{}/keys", segment(&name)),
                Some(&json!({ "revoke_others": revoke_others })),
            )?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(&answer, Some(&["api_key", "prefix", "revoked_others"]));
                println!("the key is shown once: store it now");
            }
        }
    }
    Ok(())
}
