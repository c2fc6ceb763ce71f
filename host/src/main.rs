//! The `tongdao` command: thin glue over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tongdao::cli;
use tongdao::config::Config;
use tongdao::runner::{self, Export, RunOptions};

#[derive(Parser)]
#[command(
    name = "tongdao",
    version,
    about = "A WebAssembly plug-in host for partner content services over SMS"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// `--url`, `--key`, `--json` of the commands that talk to a running server.
    #[command(flatten)]
    global: cli::Global,
}

#[derive(Subcommand)]
enum Command {
    /// Run the platform.
    Serve {
        /// Configuration file (every key optional; TONGDAO_SECTION__KEY overrides).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Register the example modules and content under the partner `demo`.
        #[arg(long)]
        demo: bool,
    },
    /// Apply database migrations and exit.
    Migrate {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Work with a module file locally, under the platform's sandbox.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Send a test MT (to a number in [relay] test_numbers) through the running
    /// platform's outbox and wait for its receipt; exit 0 only if delivered.
    SendTest {
        #[arg(long)]
        to: String,
        #[arg(long)]
        text: String,
        /// Send through this operator instead of the routed one.
        #[arg(long)]
        operator: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seconds to wait for the final status.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
    },
    /// A partner's monthly statement: `statement get` asks the
    /// running server; `statement --partner P --month M` reads the store offline.
    Statement(StatementArgs),
    /// Partners and their keys, on the running server (admin).
    #[command(subcommand)]
    Partner(cli::partner::PartnerCommand),
    /// Services on the running server: declare, submit, approve, suspend…
    #[command(subcommand)]
    Service(cli::service::ServiceCommand),
    /// Push runs on the running server: push now, follow, list, cancel.
    #[command(subcommand)]
    Run(cli::run::RunCommand),
    /// MTs on the running server, with their status history.
    #[command(subcommand)]
    Messages(cli::messages::MessagesCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run an operator gateway simulator on loopback for demos and tests: an SMSC
    /// (SMPP 3.4), an ISMG (CMPP 3.0/2.0) or an SMG (SGIP 1.2).
    SmscSim {
        /// smpp, cmpp3, cmpp2 (the ISMG speaks both CMPP versions) or sgip12.
        #[arg(long, default_value = "smpp", value_parser = parse_protocol)]
        protocol: tongdao::relay::settings::Protocol,
        #[arg(long, default_value = "127.0.0.1:2775")]
        listen: std::net::SocketAddr,
        /// SGIP: the SP's listener the SMG connects back to ([operators.sgip] listen).
        #[arg(long)]
        sp_address: Option<std::net::SocketAddr>,
        /// SGIP: the login the SMG presents to the SP ([operators.sgip] smg_login).
        #[arg(long, default_value = "")]
        sp_login: String,
        /// SGIP: its password ([operators.sgip] smg_password).
        #[arg(long, default_value = "")]
        sp_password: String,
        /// HTTP hook to send MOs (POST /mo) and read counters (GET /stats).
        #[arg(long)]
        http: Option<std::net::SocketAddr>,
        /// The login the gateway requires (SMPP system_id, CMPP Source_Addr / SP_Id,
        /// SGIP Login Name); with `--password`. Without them any login is accepted
        /// (CMPP then signs its answer with an empty secret).
        #[arg(long, requires = "password")]
        system_id: Option<String>,
        /// The password or CMPP shared secret that goes with `--system-id`.
        #[arg(long, requires = "system_id")]
        password: Option<String>,
        /// Delay before each delivery receipt, in milliseconds.
        #[arg(long, default_value_t = 100)]
        dlr_delay_ms: u64,
        /// Up to this many ms more per receipt, drawn uniformly (a realistic spread).
        #[arg(long, default_value_t = 0)]
        dlr_jitter_ms: u64,
        /// Message ids in hex in submit_sm_resp and in decimal in receipts (SMPP only).
        #[arg(long)]
        hex_ids: bool,
        /// Share of submits whose receipt says UNDELIV (0.0-1.0).
        #[arg(long, default_value_t = 0.0)]
        undeliverable: f64,
        /// Share of submits refused (SMPP ESME_RINVDSTADR, CMPP Result 13, SGIP Result 21).
        #[arg(long, default_value_t = 0.0)]
        reject: f64,
        /// Share of submits throttled (SMPP ESME_RTHROTTLED, CMPP Result 8, SGIP flow control).
        #[arg(long, default_value_t = 0.0)]
        throttle: f64,
        /// Share of submits on which the connection is dropped.
        #[arg(long, default_value_t = 0.0)]
        disconnect: f64,
        /// Accept every bind and drop the link this many ms later (a flapping SMSC; SMPP only); 0: off.
        #[arg(long, default_value_t = 0)]
        drop_after_bind_ms: u64,
        /// Share of receipts sent twice (SMPP only).
        #[arg(long, default_value_t = 0.0)]
        duplicate_receipt: f64,
        /// Share of submits followed by a receipt for an id the peer was never given (SMPP only).
        #[arg(long, default_value_t = 0.0)]
        unknown_receipt: f64,
    },
}

/// `statement get …` (API) or the offline flags.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct StatementArgs {
    #[command(subcommand)]
    api: Option<cli::statement::StatementCommand>,
    /// Offline: partner name; the statement is computed from the configured store.
    #[arg(long, required = true)]
    partner: Option<String>,
    /// Offline: billing month, YYYY-MM (platform time zone).
    #[arg(long, required = true)]
    month: Option<String>,
    /// Offline: json, csv or html.
    #[arg(long, default_value = "json")]
    format: String,
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain of the audit log; exit 0 if it is intact, 1 naming the
    /// first bad row (edited, deleted, or out of chain).
    Verify {
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ModuleCommand {
    /// Upload, list, show, activate or roll back on the running server.
    #[command(flatten)]
    Api(cli::module::ModuleApiCommand),
    /// Validate a component as an upload would, and print its description.
    Check {
        file: PathBuf,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Call one export and print the result (the partner's local runner).
    Run(RunArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("export").required(true).args(["bulletin", "mo", "subscribe", "unsubscribe"])))]
struct RunArgs {
    file: PathBuf,
    /// Call `bulletin`.
    #[arg(long)]
    bulletin: bool,
    /// Call `on-mo` with this text.
    #[arg(long, value_name = "TEXT")]
    mo: Option<String>,
    /// Call `on-subscribe`.
    #[arg(long)]
    subscribe: bool,
    /// Call `on-unsubscribe`.
    #[arg(long)]
    unsubscribe: bool,
    /// Service code (default: the first the module describes).
    #[arg(long)]
    service: Option<String>,
    /// Push date for `bulletin`, YYYY-MM-DD (default: today in Asia/Shanghai).
    #[arg(long)]
    date: Option<String>,
    /// The subscriber id the call is about.
    #[arg(long, default_value = "local-subscriber")]
    subscriber: String,
    /// Subscriber attribute, NAME=VALUE (repeatable).
    #[arg(long = "attr", value_name = "NAME=VALUE", value_parser = parse_pair)]
    attributes: Vec<(String, String)>,
    /// Content library collection from a JSON file, COLLECTION=FILE (repeatable).
    #[arg(long, value_name = "COLLECTION=FILE", value_parser = parse_pair)]
    content: Vec<(String, String)>,
    /// Keep the local store (key-value state) in this directory between runs.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Configuration file whose [runtime] limits apply.
    #[arg(long)]
    config: Option<PathBuf>,
}

/// `--protocol` of `smsc-sim`.
fn parse_protocol(s: &str) -> Result<tongdao::relay::settings::Protocol, String> {
    tongdao::relay::settings::Protocol::parse(s)
        .ok_or_else(|| format!("unknown protocol `{s}` (smpp, cmpp3, cmpp2, sgip12)"))
}

fn parse_pair(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

fn main() -> ExitCode {
    // Logging starts with the configuration (`load_config`: `[log] format`).
    let Cli { command, global } = Cli::parse();
    // Commands over the running server's API need no runtime of their own
    // (the blocking HTTP client brings one).
    let command = match api_command(&global, command) {
        Ok(result) => {
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Err(command) => *command,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run a command that talks to the running server, or give the command back.
fn api_command(
    global: &cli::Global,
    command: Command,
) -> Result<Result<(), cli::CliError>, Box<Command>> {
    Ok(match command {
        Command::Partner(c) => cli::partner::run(global, c),
        Command::Service(c) => cli::service::run(global, c),
        Command::Run(c) => cli::run::run(global, c),
        Command::Messages(c) => cli::messages::run(global, c),
        Command::Module(ModuleCommand::Api(c)) => cli::module::run(global, c),
        Command::Statement(StatementArgs { api: Some(c), .. }) => cli::statement::run(global, c),
        other => return Err(Box::new(other)),
    })
}

/// Read the configuration and fix the platform time zone (`[platform] time_zone`)
/// for everything the command does: months, days, schedules and module clocks.
/// Logging starts here, with the configuration's `[log] format`.
fn load_config(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    tongdao::telemetry::init_logging(&config.log);
    tongdao::clock::use_time_zone(&config.platform)?;
    Ok(config)
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve { config, demo } => {
            let config = load_config(config.as_deref())?;
            tongdao::server::serve(config, demo).await?;
        }
        Command::Migrate { config } => {
            let config = load_config(config.as_deref())?;
            tongdao::server::migrate(&config).await?;
        }
        Command::SendTest {
            to,
            text,
            operator,
            config,
            timeout,
        } => {
            let config = load_config(config.as_deref())?;
            let detail = tongdao::tools::send_test(
                &config,
                &to,
                &text,
                operator,
                std::time::Duration::from_secs(timeout),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&detail)?);
            return Ok(if detail.message.status == "delivered" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Statement(StatementArgs {
            partner: Some(partner),
            month: Some(month),
            format,
            config,
            ..
        }) => {
            let config = load_config(config.as_deref())?;
            print!("{}", statement(&config, &partner, &month, &format).await?);
        }
        Command::Statement(_) => {
            anyhow::bail!("`statement` needs `get --month M` or `--partner P --month M`")
        }
        Command::Partner(_)
        | Command::Service(_)
        | Command::Run(_)
        | Command::Messages(_)
        | Command::Module(ModuleCommand::Api(_)) => {
            anyhow::bail!("an API command reached the local runtime")
        }
        Command::Audit(AuditCommand::Verify { config }) => {
            let config = load_config(config.as_deref())?;
            return Ok(match tongdao::tools::audit_verify(&config).await? {
                tongdao::audit::Verdict::Intact { rows, last_hash } => {
                    println!("audit log intact: {rows} rows, last hash {last_hash}");
                    ExitCode::SUCCESS
                }
                tongdao::audit::Verdict::Broken { row, reason } => {
                    println!("audit log broken at row {row}: {reason}");
                    ExitCode::FAILURE
                }
            });
        }
        Command::SmscSim {
            protocol,
            listen,
            sp_address,
            sp_login,
            sp_password,
            http,
            system_id,
            password,
            dlr_delay_ms,
            dlr_jitter_ms,
            hex_ids,
            undeliverable,
            reject,
            throttle,
            disconnect,
            drop_after_bind_ms,
            duplicate_receipt,
            unknown_receipt,
        } => {
            tongdao::telemetry::init_logging(&tongdao::config::LogConfig::default());
            tongdao::tools::smsc_sim(tongdao::tools::SimOptions {
                protocol,
                listen,
                sp_address,
                sp_login,
                sp_password,
                http,
                credentials: system_id.zip(password),
                dlr_delay: std::time::Duration::from_millis(dlr_delay_ms),
                dlr_jitter: std::time::Duration::from_millis(dlr_jitter_ms),
                hex_ids,
                faults: tongdao_smpp::sim::Faults {
                    undeliverable,
                    reject,
                    throttle,
                    disconnect,
                    drop_after_bind: (drop_after_bind_ms > 0)
                        .then(|| std::time::Duration::from_millis(drop_after_bind_ms)),
                    duplicate_receipt,
                    unknown_receipt,
                },
            })
            .await?;
        }
        Command::Module(ModuleCommand::Check { file, config }) => {
            let config = load_config(config.as_deref())?;
            let report = runner::check(&file, config.runtime).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Module(ModuleCommand::Run(args)) => {
            let config = load_config(args.config.as_deref())?;
            let export = if args.bulletin {
                Export::Bulletin {
                    service: args.service,
                    // The host's own input: checked before the module is called.
                    date: args
                        .date
                        .map(|d| tongdao::clock::parse_date(&d))
                        .transpose()
                        .map_err(anyhow::Error::msg)?,
                }
            } else if let Some(text) = args.mo {
                Export::Mo {
                    text,
                    service: args.service,
                }
            } else if args.subscribe {
                Export::Subscribe {
                    service: args.service,
                }
            } else {
                Export::Unsubscribe {
                    service: args.service,
                }
            };
            let options = RunOptions {
                subscriber: args.subscriber,
                attributes: args.attributes,
                content: args
                    .content
                    .into_iter()
                    .map(|(collection, file)| (collection, PathBuf::from(file)))
                    .collect(),
                data_dir: args.data,
                limits: config.runtime,
            };
            let report = runner::run(&args.file, export, options)
                .await
                .with_context(|| format!("running {}", args.file.display()))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            return Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A statement rendered from the configured store.
async fn statement(
    config: &Config,
    partner: &str,
    month: &str,
    format: &str,
) -> anyhow::Result<String> {
    use tongdao::settlement::{render, statement};
    let format = render::Format::parse(format)
        .with_context(|| format!("`{format}` is not json, csv or html"))?;
    let month: tongdao::billing::calendar::Month = month.parse()?;
    let store = tongdao::store::Store::connect(&config.store.database_url(), 1).await?;
    store.migrate().await?;
    let partner = tongdao::partners::get(&store, partner).await?;
    let s = statement::generate(&store, partner.id, &partner.name, month).await?;
    store.close().await;
    Ok(render::render(&s, format))
}
