//! `tongdao module upload|list|show|activate|rollback|shadow|diffs|canary|calls|replay`
//! over the API: `POST /v1/modules` (`application/wasm`, with a progress bar in
//! bytes), `GET /v1/modules`, `GET /v1/modules/{name}`,
//! `POST /v1/modules/{name}/activate`, `POST /v1/modules/{name}/rollback`,
//! `PUT|DELETE /v1/modules/{name}/shadow`, `GET /v1/modules/{name}/shadow`,
//! `PUT|DELETE /v1/modules/{name}/canary`, `POST /v1/modules/{name}/canary/promote`,
//! `GET /v1/modules/{name}/calls`, `POST /v1/calls/{id}/replay`.
//! (`module check|run` work on a local file and are the main binary's.)

use std::path::PathBuf;

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::client::segment;
use super::output::{self, Column};
use super::{CliError, Global};

/// A partner's modules on the running server.
#[derive(Debug, Subcommand)]
pub enum ModuleApiCommand {
    /// Upload a component; the first version goes live, later ones wait for
    /// `activate`.
    Upload {
        file: PathBuf,
        /// Admin: upload for this partner.
        #[arg(long)]
        partner: Option<String>,
    },
    /// The partner's modules, versions and faults.
    List {
        /// Admin: this partner's.
        #[arg(long)]
        partner: Option<String>,
    },
    /// One module with its versions.
    Show {
        name: String,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Make a version live.
    Activate {
        name: String,
        #[arg(long)]
        version: i64,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Back to the version active before.
    Rollback {
        name: String,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Run a version as the shadow beside the active one (its output recorded and
    /// diffed on real pushes and MOs, never sent), or `--stop` it.
    Shadow {
        name: String,
        #[arg(long, required_unless_present = "stop", conflicts_with = "stop")]
        version: Option<i64>,
        #[arg(long)]
        stop: bool,
        #[arg(long)]
        partner: Option<String>,
    },
    /// The shadow runs, newest first, with what differed.
    Diffs {
        name: String,
        /// Only the runs whose output differed.
        #[arg(long)]
        differing: bool,
        /// How many (1-500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Make a version live for `--percent` of the subscribers (a stable cohort by
    /// subscription id), `--promote` it to everyone, or `--stop` it (the cohort goes
    /// back to the active version).
    Canary {
        name: String,
        #[arg(long, requires = "percent", conflicts_with_all = ["promote", "stop"])]
        version: Option<i64>,
        /// 1-99.
        #[arg(long, requires = "version")]
        percent: Option<i64>,
        #[arg(long, conflicts_with = "stop")]
        promote: bool,
        #[arg(long)]
        stop: bool,
        #[arg(long)]
        partner: Option<String>,
    },
    /// The module's recorded calls, newest first: their ids are what `replay` takes.
    Calls {
        name: String,
        /// How many (1-500).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        partner: Option<String>,
    },
    /// Run a recorded call again with the host's recorded answers, on the version
    /// that made it or on `--with-version`; shows both outputs and the differences.
    Replay {
        call_id: i64,
        /// Another version (number) of the same module.
        #[arg(long)]
        with_version: Option<i64>,
        #[arg(long)]
        partner: Option<String>,
    },
}

const COLUMNS: &[Column] = &[
    ("NAME", "name"),
    ("ACTIVE", "active_version"),
    ("VERSIONS", "versions"),
    ("FAULTS", "fault_count"),
    ("CREATED", "created_at"),
];

fn partner_query(partner: Option<&String>) -> Vec<(&'static str, String)> {
    partner
        .map(|p| ("partner", p.clone()))
        .into_iter()
        .collect()
}

fn with_partner(path: String, partner: Option<&String>) -> String {
    match partner {
        Some(p) => format!("{path}?partner={}", segment(p)),
        None => path,
    }
}

/// Run one API `module` command.
///
/// # Errors
/// An unreadable file, the API's error (a rejected module names its reason
/// code), or no answer.
pub fn run(global: &Global, command: ModuleApiCommand) -> Result<(), CliError> {
    let client = global.client()?;
    let show = |answer: &Value| {
        if global.json {
            output::json(answer);
        } else {
            output::object(answer, None);
        }
    };
    match command {
        ModuleApiCommand::Upload { file, partner } => {
            let opened = std::fs::File::open(&file)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            let len = opened
                .metadata()
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?
                .len();
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(format!("uploading {}", file.display()));
            let answer = client.upload(
                "/v1/modules",
                &partner_query(partner.as_ref()),
                "application/wasm",
                bar.wrap_read(opened),
                len,
            );
            bar.finish_and_clear();
            let answer = answer?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(
                    &answer,
                    Some(&[
                        "module",
                        "version",
                        "created",
                        "activated",
                        "sha256",
                        "wit_version",
                        "description.services",
                    ]),
                );
            }
        }
        ModuleApiCommand::List { partner } => {
            let listed = client.list("/v1/modules", &partner_query(partner.as_ref()), "modules")?;
            if global.json {
                output::json(&listed.raw);
            } else {
                // The versions column shows how many.
                let items: Vec<Value> = listed
                    .items
                    .iter()
                    .map(|m| {
                        let mut m = m.clone();
                        let n = m["versions"].as_array().map_or(0, Vec::len);
                        m["versions"] = json!(n);
                        m
                    })
                    .collect();
                output::list(&items, listed.next.as_deref(), COLUMNS);
            }
        }
        ModuleApiCommand::Show { name, partner } => {
            let answer = client.get(
                &format!("/v1/modules/{}", segment(&name)),
                &partner_query(partner.as_ref()),
            )?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(
                    &answer,
                    Some(&["name", "active_version", "fault_count", "created_at"]),
                );
                let versions = answer["versions"].as_array().cloned().unwrap_or_default();
                print!(
                    "{}",
                    output::table(
                        &versions,
                        &[
                            ("VERSION", "number"),
                            ("LABEL", "label"),
                            ("CONTRACT", "wit_version"),
                            ("ACTIVE", "active"),
                            ("SERVICES", "services"),
                            ("BYTES", "size_bytes"),
                            ("FAULTS", "fault_count"),
                            ("UPLOADED", "uploaded_at"),
                        ],
                    )
                );
            }
        }
        ModuleApiCommand::Activate {
            name,
            version,
            partner,
        } => show(&client.post(
            &with_partner(
                format!("/v1/modules/{}/activate", segment(&name)),
                partner.as_ref(),
            ),
            Some(&json!({ "version": version })),
        )?),
        ModuleApiCommand::Rollback { name, partner } => show(&client.post(
            &with_partner(
                format!("/v1/modules/{}/rollback", segment(&name)),
                partner.as_ref(),
            ),
            None,
        )?),
        ModuleApiCommand::Shadow {
            name,
            version,
            stop,
            partner,
        } => {
            let path = with_partner(
                format!("/v1/modules/{}/shadow", segment(&name)),
                partner.as_ref(),
            );
            match version {
                Some(version) if !stop => show(&client.put(&path, &json!({ "version": version }))?),
                _ => show(&client.delete(&path)?),
            }
        }
        ModuleApiCommand::Diffs {
            name,
            differing,
            limit,
            partner,
        } => {
            let mut query = partner_query(partner.as_ref());
            query.push(("limit", limit.to_string()));
            if differing {
                query.push(("differing", "true".to_string()));
            }
            let listed = client.list(
                &format!("/v1/modules/{}/shadow", segment(&name)),
                &query,
                "items",
            )?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(
                    &listed.items,
                    listed.next.as_deref(),
                    &[
                        ("RUN", "id"),
                        ("EXPORT", "export"),
                        ("ACTIVE", "active_version"),
                        ("CANDIDATE", "candidate_version"),
                        ("SAME", "same"),
                        ("AT", "at"),
                    ],
                );
            }
        }
        ModuleApiCommand::Canary {
            name,
            version,
            percent,
            promote,
            stop,
            partner,
        } => {
            let path = |tail: &str| {
                with_partner(
                    format!("/v1/modules/{}/canary{tail}", segment(&name)),
                    partner.as_ref(),
                )
            };
            let answer = match (version, percent) {
                (Some(version), Some(percent)) => client.put(
                    &path(""),
                    &json!({ "version": version, "percent": percent }),
                )?,
                _ if promote => client.post(&path("/promote"), None)?,
                _ if stop => client.delete(&path(""))?,
                _ => {
                    return Err(CliError::Usage(
                        "give --version and --percent, or --promote, or --stop".into(),
                    ));
                }
            };
            show(&answer);
        }
        ModuleApiCommand::Calls {
            name,
            limit,
            partner,
        } => {
            let mut query = partner_query(partner.as_ref());
            query.push(("limit", limit.to_string()));
            let listed = client.list(
                &format!("/v1/modules/{}/calls", segment(&name)),
                &query,
                "items",
            )?;
            if global.json {
                output::json(&listed.raw);
            } else {
                output::list(
                    &listed.items,
                    listed.next.as_deref(),
                    &[
                        ("CALL", "id"),
                        ("VERSION", "version"),
                        ("CONTRACT", "wit_version"),
                        ("EXPORT", "export"),
                        ("OUTPUT", "output"),
                        ("RECORDED", "recorded_at"),
                    ],
                );
            }
        }
        ModuleApiCommand::Replay {
            call_id,
            with_version,
            partner,
        } => {
            let mut query: Vec<String> = with_version
                .map(|v| format!("version={v}"))
                .into_iter()
                .collect();
            if let Some(p) = &partner {
                query.push(format!("partner={}", segment(p)));
            }
            let path = if query.is_empty() {
                format!("/v1/calls/{call_id}/replay")
            } else {
                format!("/v1/calls/{call_id}/replay?{}", query.join("&"))
            };
            let answer = client.post(&path, None)?;
            if global.json {
                output::json(&answer);
            } else {
                output::object(
                    &answer,
                    Some(&[
                        "call",
                        "module",
                        "export",
                        "recorded_version",
                        "recorded_wit_version",
                        "replayed_version",
                        "replayed_wit_version",
                        "recorded_output",
                        "replayed_output",
                        "identical",
                    ]),
                );
                for difference in answer["differences"].as_array().into_iter().flatten() {
                    println!(
                        "differs ({}): {}",
                        difference["what"].as_str().unwrap_or(""),
                        difference["detail"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}
