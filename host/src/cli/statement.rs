//! `tongdao statement get --month YYYY-MM [--format json|csv|html]`:
//! `GET /v1/statements/{month}?format=`. CSV and HTML are printed
//! (or written with `--output`) byte for byte as the API answers them; JSON as a
//! `field  value` view, or as it is with `--json`.

use std::path::PathBuf;

use clap::Subcommand;

use super::client::segment;
use super::output;
use super::{CliError, Global};

/// A partner's monthly statement from the running server.
#[derive(Debug, Subcommand)]
pub enum StatementCommand {
    /// Fetch a statement (a partner's own; the admin names `--partner`).
    Get {
        /// Billing month, YYYY-MM (platform time zone).
        #[arg(long)]
        month: String,
        /// json, csv or html.
        #[arg(long, default_value = "json")]
        format: String,
        /// Admin: this partner's statement.
        #[arg(long)]
        partner: Option<String>,
        /// Write the document to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

/// Run one `statement` API command.
///
/// # Errors
/// The API's error (`invalid-month`, `invalid-format`, …), no answer, or an
/// unwritable `--output`.
pub fn run(global: &Global, command: StatementCommand) -> Result<(), CliError> {
    let client = global.client()?;
    let StatementCommand::Get {
        month,
        format,
        partner,
        output: file,
    } = command;
    let mut query = vec![("format", format.clone())];
    if let Some(p) = partner {
        query.push(("partner", p));
    }
    let document = client.document(&format!("/v1/statements/{}", segment(&month)), &query)?;
    if let Some(file) = file {
        std::fs::write(&file, &document.body)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        eprintln!(
            "statement {month} ({}) written to {} ({} bytes)",
            document.content_type,
            file.display(),
            document.body.len()
        );
        return Ok(());
    }
    let is_json = document.content_type.starts_with("application/json");
    if is_json && !global.json {
        let value: serde_json::Value = serde_json::from_slice(&document.body)
            .map_err(|e| CliError::Answer(format!("not JSON: {e}")))?;
        output::object(&value, None);
    } else {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&document.body)
            .and_then(|()| out.flush())
            .map_err(|e| CliError::Usage(format!("standard output: {e}")))?;
    }
    Ok(())
}
