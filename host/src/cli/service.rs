//! `tongdao service list|show|create|submit|approve|reject|suspend|resume`:
//! `GET /v1/services`, `GET /v1/services/{id}`, `POST /v1/services`,
//! `POST /v1/services/{id}/submit`, `POST /v1/admin/services/{id}/{action}`.

use clap::Subcommand;
use serde_json::{Value, json};

use super::output::{self, Column};
use super::{CliError, Global, PageArgs};

/// Services: declare, submit, decide, suspend and resume.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// List services (a partner's own; the admin sees all).
    List {
        /// draft, submitted, approved, rejected or suspended.
        #[arg(long)]
        status: Option<String>,
        /// Admin: only this partner's.
        #[arg(long)]
        partner: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// One service with its live and pending terms.
    Show { id: i64 },
    /// Declare a service (a draft; `submit` it for approval).
    Create(NewService),
    /// Submit the draft terms for approval.
    Submit { id: i64 },
    /// Admin: approve the submitted terms.
    Approve(Decision),
    /// Admin: reject the submitted terms.
    Reject(Decision),
    /// Admin: suspend (queued MTs are held).
    Suspend(Decision),
    /// Admin: resume (held MTs are released).
    Resume(Decision),
}

/// An admin decision on a service.
#[derive(Debug, clap::Args)]
pub struct Decision {
    pub id: i64,
    /// Why (1-500 characters; kept in the audit).
    #[arg(long)]
    pub reason: String,
}

/// The terms of a new service, as `POST /v1/services` takes them.
#[derive(Debug, clap::Args)]
pub struct NewService {
    /// Service code (`XZ`).
    #[arg(long)]
    pub code: String,
    /// The partner's module that drives it.
    #[arg(long)]
    pub module: Option<String>,
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "")]
    pub description: String,
    /// A keyword users text to subscribe (repeatable).
    #[arg(long = "keyword", required = true)]
    pub keywords: Vec<String>,
    /// free, per-message or monthly.
    #[arg(long)]
    pub fee_type: String,
    /// Price in fen (integer).
    #[arg(long, default_value_t = 0)]
    pub price_fen: i64,
    /// An operator that carries it (repeatable).
    #[arg(long = "operator", required = true)]
    pub operators: Vec<String>,
    /// Declared maximum of MTs per month (monthly services).
    #[arg(long)]
    pub monthly_max_messages: Option<i64>,
    /// The two-digit extension of the short code (`01`).
    #[arg(long)]
    pub number_ext: String,
    /// Admin: declare it for this partner.
    #[arg(long)]
    pub partner: Option<String>,
}

const COLUMNS: &[Column] = &[
    ("ID", "id"),
    ("CODE", "code"),
    ("STATUS", "status"),
    ("NAME", "live.name"),
    ("FEE", "live.fee_type"),
    ("PRICE_FEN", "live.price_fen"),
    ("MODULE", "module"),
    ("PENDING", "pending.status"),
];

fn partner_query(partner: Option<String>) -> Vec<(&'static str, String)> {
    partner.map(|p| ("partner", p)).into_iter().collect()
}

/// Run one `service` command.
///
/// # Errors
/// The API's error, or no answer.
pub fn run(global: &Global, command: ServiceCommand) -> Result<(), CliError> {
    let client = global.client()?;
    let show = |answer: &Value| {
        if global.json {
            output::json(answer);
        } else {
            output::object(answer, None);
        }
    };
    match command {
        ServiceCommand::List {
            status,
            partner,
            page,
        } => {
            let mut query = partner_query(partner);
            if let Some(status) = status {
                query.push(("status", status));
            }
            page.push(&mut query);
            let listed = client.list("/v1/services", &query, "services")?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(&listed.items, listed.next.as_deref(), COLUMNS);
            }
        }
        ServiceCommand::Show { id } => show(&client.get(&format!("/v1/services/{id}"), &[])?),
        ServiceCommand::Create(new) => {
            let mut body = json!({
                "code": new.code,
                "name": new.name,
                "description": new.description,
                "keywords": new.keywords,
                "fee_type": new.fee_type,
                "price_fen": new.price_fen,
                "operators": new.operators,
                "number_ext": new.number_ext,
            });
            if let Some(module) = new.module {
                body["module"] = json!(module);
            }
            if let Some(max) = new.monthly_max_messages {
                body["monthly_max_messages"] = json!(max);
            }
            let path = match &new.partner {
                Some(p) => format!("/v1/services?partner={}", super::client::segment(p)),
                None => "/v1/services".to_string(),
            };
            show(&client.post(&path, Some(&body))?);
        }
        ServiceCommand::Submit { id } => {
            show(&client.post(&format!("/v1/services/{id}/submit"), None)?);
        }
        ServiceCommand::Approve(d) => show(&decide(global, "approve", &d)?),
        ServiceCommand::Reject(d) => show(&decide(global, "reject", &d)?),
        ServiceCommand::Suspend(d) => show(&decide(global, "suspend", &d)?),
        ServiceCommand::Resume(d) => show(&decide(global, "resume", &d)?),
    }
    Ok(())
}

fn decide(global: &Global, action: &str, d: &Decision) -> Result<Value, CliError> {
    global.client()?.post(
        &format!("/v1/admin/services/{}/{action}", d.id),
        Some(&json!({ "reason": d.reason })),
    )
}
