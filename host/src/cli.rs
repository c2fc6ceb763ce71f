//! The operator's CLI over the running server's API (issue 14 item 5, R-2.8):
//! `tongdao partner|service|module|run|statement get|messages …` send the same
//! requests as `curl` would, with the key of the caller, and print the answer as a
//! table (or, with `--json`, the answer itself). Nouns and verbs follow the API's
//! routes (`tongdao service approve 7` is `POST /v1/admin/services/7/approve`).
//!
//! - [`client`]: the HTTP client: base URL, key, API errors as `code: message`,
//!   lists in the `{items, next}` shape (or the named arrays of older answers).
//! - [`output`]: tables and key/value views for people, JSON for programs.
//! - one file per noun: [`partner`], [`service`], [`module`], [`run`],
//!   [`statement`], [`messages`].
//!
//! Nothing here touches the store: the offline commands (`module check|run`,
//! `statement --partner`, `send-test`) are the main binary's own.

pub mod client;
pub mod messages;
pub mod module;
pub mod output;
pub mod partner;
pub mod run;
pub mod service;
pub mod statement;

use clap::Args;

pub use client::{CliError, Client};

/// Options every API command takes (`tongdao --url … --key … --json NOUN VERB`).
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The running server's base URL.
    #[arg(
        long,
        global = true,
        env = "TONGDAO_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub url: String,
    /// The API key (admin or partner); default from the environment.
    #[arg(long, global = true, env = "TONGDAO_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Print the API's answer as JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

impl Global {
    /// A client for these options.
    ///
    /// # Errors
    /// [`CliError::Usage`] when the HTTP client cannot be built.
    pub fn client(&self) -> Result<Client, CliError> {
        Client::new(&self.url, self.key.clone())
    }
}

/// The verbs' `--limit`/`--after` for list routes: sent only when given, so a
/// route that pages differently is not sent parameters it refuses.
#[derive(Debug, Clone, Default, Args)]
pub struct PageArgs {
    /// At most this many items (the API's default otherwise).
    #[arg(long)]
    pub limit: Option<u32>,
    /// The `next` cursor of a previous answer.
    #[arg(long)]
    pub after: Option<String>,
}

impl PageArgs {
    fn push(&self, query: &mut Vec<(&'static str, String)>) {
        if let Some(limit) = self.limit {
            query.push(("limit", limit.to_string()));
        }
        if let Some(after) = &self.after {
            query.push(("after", after.clone()));
        }
    }
}
