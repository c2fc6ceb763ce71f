//! Operator tools of the `tongdao` command: `send-test` (a test MT through the
//! running platform's outbox, waiting for its receipt) and `smsc-sim` (the gateway
//! simulator of any operator protocol as a process, with a small HTTP hook to send MOs).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tongdao_smpp::sim::{Faults, Sim, SimConfig, SimHandle};

use crate::compliance::Compliance;
use crate::config::Config;
use crate::relay::messages::{self, MessageDetail};
use crate::relay::settings::Protocol;
use crate::relay::{Routes, outbox};
use crate::store::Store;

/// Queue a test MT in the store the running platform uses and wait for its final
/// status. The platform's relay sends it: `serve` must be running.
pub async fn send_test(
    config: &Config,
    to: &str,
    text: &str,
    operator: Option<String>,
    timeout: Duration,
) -> anyhow::Result<MessageDetail> {
    let store = Store::connect(&config.store.database_url(), 2).await?;
    store.migrate().await?;
    let routes = Routes::new(&config.operators);
    let compliance = Compliance::new(store.clone(), config.compliance.clone())?;
    let gate = outbox::Gate {
        routes: &routes,
        relay: &config.relay,
        compliance: &compliance,
    };
    let id = outbox::enqueue_test(&store, gate, to, text, operator).await?;
    eprintln!(
        "queued test message {id}; waiting up to {}s for its receipt",
        timeout.as_secs()
    );
    let started = Instant::now();
    loop {
        let detail = messages::get(&store, id, None)
            .await?
            .context("the test message vanished from the outbox")?;
        let status = detail.message.status.as_str();
        if matches!(status, "delivered" | "failed" | "expired") || started.elapsed() >= timeout {
            store.close().await;
            return Ok(detail);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Settings of `tongdao smsc-sim`.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The gateway to simulate: an SMSC (SMPP 3.4), an ISMG (CMPP 3.0 / 2.0) or an SMG
    /// (SGIP 1.2).
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    /// The login required from the SP (`None`: any).
    pub credentials: Option<(String, String)>,
    pub dlr_delay: Duration,
    /// Up to this much more per receipt, drawn uniformly (SMPP only).
    pub dlr_jitter: Duration,
    /// Hex ids in `submit_sm_resp`, decimal in receipts (SMPP only).
    pub hex_ids: bool,
    /// SGIP: where the SP listens for the SMG's Deliver and Report
    /// (`[operators.sgip] listen`), and the login the SMG presents there.
    pub sp_address: Option<SocketAddr>,
    pub sp_login: String,
    pub sp_password: String,
    /// Fault shares; `drop_after_bind` is SMPP only.
    pub faults: Faults,
}

/// A running simulator of any protocol.
enum AnySim {
    Smpp(SimHandle),
    Cmpp(tongdao_cmpp::sim::SimHandle),
    Sgip(tongdao_sgip::sim::SimHandle),
}

impl AnySim {
    fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Smpp(s) => s.local_addr(),
            Self::Cmpp(s) => s.local_addr(),
            Self::Sgip(s) => s.local_addr(),
        }
    }

    fn shutdown(&self) {
        match self {
            Self::Smpp(s) => s.shutdown(),
            Self::Cmpp(s) => s.shutdown(),
            Self::Sgip(s) => s.shutdown(),
        }
    }
}

/// Start the simulator of `options.protocol`.
///
/// # Errors
/// An option the protocol does not have (`--hex-ids` and `--drop-after-bind-ms` are
/// SMPP's; SGIP needs `--sp-address`), or the listener cannot be bound.
async fn start_sim(options: &SimOptions) -> anyhow::Result<AnySim> {
    let faults = &options.faults;
    let smpp_only = options.hex_ids
        || faults.drop_after_bind.is_some()
        || faults.duplicate_receipt > 0.0
        || faults.unknown_receipt > 0.0;
    if options.protocol != Protocol::Smpp && smpp_only {
        anyhow::bail!(
            "--hex-ids, --drop-after-bind-ms, --duplicate-receipt and --unknown-receipt apply to --protocol smpp only"
        );
    }
    Ok(match options.protocol {
        Protocol::Smpp => AnySim::Smpp(
            Sim::start(SimConfig {
                listen: options.listen,
                credentials: options.credentials.clone(),
                dlr_delay: options.dlr_delay,
                dlr_jitter: options.dlr_jitter,
                hex_ids: options.hex_ids,
                faults: *faults,
                ..SimConfig::default()
            })
            .await?,
        ),
        Protocol::Cmpp3 | Protocol::Cmpp2 => AnySim::Cmpp(
            tongdao_cmpp::sim::Sim::start(tongdao_cmpp::sim::SimConfig {
                listen: options.listen,
                credentials: options.credentials.clone(),
                report_delay: options.dlr_delay,
                report_failure: faults.undeliverable,
                faults: tongdao_cmpp::sim::Faults {
                    disconnect: faults.disconnect,
                    throttle: faults.throttle,
                    reject: faults.reject,
                    ..Default::default()
                },
                ..Default::default()
            })
            .await?,
        ),
        Protocol::Sgip12 => {
            let Some(sp_address) = options.sp_address else {
                anyhow::bail!(
                    "--protocol sgip12 needs --sp-address: the SMG connects back to the SP's listener ([operators.sgip] listen)"
                );
            };
            AnySim::Sgip(
                tongdao_sgip::sim::Sim::start(tongdao_sgip::sim::SimConfig {
                    listen: options.listen,
                    credentials: options.credentials.clone(),
                    sp_address: Some(sp_address),
                    sp_credentials: (options.sp_login.clone(), options.sp_password.clone()),
                    report_delay: options.dlr_delay,
                    failure_ratio: faults.undeliverable,
                    faults: tongdao_sgip::sim::Faults {
                        disconnect: faults.disconnect,
                        throttle: faults.throttle,
                        error: faults.reject,
                        ..Default::default()
                    },
                    ..Default::default()
                })
                .await?,
            )
        }
    })
}

/// Run the simulator until Ctrl-C.
///
/// # Errors
/// See [`start_sim`]; the MO hook's address cannot be bound.
pub async fn smsc_sim(options: SimOptions) -> anyhow::Result<()> {
    let sim = start_sim(&options).await?;
    let what = match options.protocol {
        Protocol::Smpp => "SMSC simulator (SMPP 3.4)",
        Protocol::Cmpp3 | Protocol::Cmpp2 => "ISMG simulator (CMPP 3.0 and 2.0)",
        Protocol::Sgip12 => "SMG simulator (SGIP 1.2)",
    };
    println!("{what} on {}", sim.local_addr());
    let sim = std::sync::Arc::new(sim);
    if let Some(http) = options.http {
        let listener = tokio::net::TcpListener::bind(http)
            .await
            .with_context(|| format!("binding {http}"))?;
        println!(
            "MO hook on http://{}: POST /mo {{\"from\",\"to\",\"text\",\"link_id\"?}}, GET /stats, \
             GET|POST /faults, GET /destinations",
            listener.local_addr()?
        );
        let app = Router::new()
            .route("/mo", post(send_mo))
            .route("/stats", get(stats))
            .route("/faults", get(get_faults).post(set_faults))
            .route("/destinations", get(destinations))
            .with_state(sim.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "MO hook stopped");
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}

#[derive(Deserialize)]
struct MoRequest {
    from: String,
    to: String,
    text: String,
    /// CMPP 3.0 `LinkID` of the MO (ignored by the other protocols).
    #[serde(default)]
    link_id: String,
}

async fn send_mo(
    State(sim): State<std::sync::Arc<AnySim>>,
    Json(mo): Json<MoRequest>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    let sent = match sim.as_ref() {
        AnySim::Smpp(s) => s
            .send_mo(&mo.from, &mo.to, &mo.text)
            .map_err(|e| e.to_string()),
        AnySim::Cmpp(s) => s
            .send_mo(&mo.from, &mo.to, "", &mo.text, &mo.link_id)
            .map_err(|e| e.to_string()),
        AnySim::Sgip(s) => s
            .send_mo(&mo.from, &mo.to, &mo.text)
            .map_err(|e| e.to_string()),
    };
    sent.map(|parts| Json(json!({ "parts": parts })))
        .map_err(|message| hook_error("invalid-mo", message))
}

/// The counters: an object for SMPP (what the fault-injection suite reads), the
/// counters' debug text for the other protocols.
async fn stats(State(sim): State<std::sync::Arc<AnySim>>) -> Json<Value> {
    Json(match sim.as_ref() {
        AnySim::Smpp(s) => {
            let c = s.stats();
            json!({
                "binds": c.binds,
                "bind_failures": c.bind_failures,
                "bound_sessions": c.bound_sessions,
                "submit_pdus": c.submit_pdus,
                "accepted": c.accepted,
                "throttled": c.throttled,
                "rejected": c.rejected,
                "disconnects": c.disconnects,
                "receipts_sent": c.receipts_sent,
                "receipts_acked": c.receipts_acked,
                "receipts_redelivered": c.receipts_redelivered,
                "receipts_duplicated": c.receipts_duplicated,
                "receipts_unknown": c.receipts_unknown,
                "stalls": c.stalls,
                "mos_sent": c.mos_sent,
                "mos_acked": c.mos_acked,
                "mos_redelivered": c.mos_redelivered,
                "mo_receipts_ahead_max": c.mo_receipts_ahead_max,
                "mo_wait_max_ms": c.mo_wait_max_ms,
                "enquire_links": c.enquire_links,
            })
        }
        AnySim::Cmpp(s) => json!(format!("{:?}", s.stats())),
        AnySim::Sgip(s) => json!(format!("{:?}", s.stats())),
    })
}

/// The SMPP simulator's faults at run time (`GET|POST /faults`): every share as in
/// the command-line flags (absent ones are 0), `drop_after_bind_ms` (0: off), and
/// `stall_ms`, which, when above 0, stalls the SMSC that long from now
/// ([`SimHandle::stall`]), and `disconnect_all`, which drops every open link now
/// (with `drop_after_bind_ms`, a link that starts flapping at once).
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
struct FaultsBody {
    undeliverable: f64,
    reject: f64,
    throttle: f64,
    disconnect: f64,
    drop_after_bind_ms: u64,
    duplicate_receipt: f64,
    unknown_receipt: f64,
    stall_ms: u64,
    disconnect_all: bool,
}

impl FaultsBody {
    fn of(f: Faults) -> Self {
        Self {
            undeliverable: f.undeliverable,
            reject: f.reject,
            throttle: f.throttle,
            disconnect: f.disconnect,
            drop_after_bind_ms: f
                .drop_after_bind
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            duplicate_receipt: f.duplicate_receipt,
            unknown_receipt: f.unknown_receipt,
            stall_ms: 0,
            disconnect_all: false,
        }
    }
}

type HookError = (axum::http::StatusCode, Json<Value>);

fn hook_error(code: &str, message: String) -> HookError {
    (
        axum::http::StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
}

fn smpp_only(sim: &AnySim) -> Result<&SimHandle, HookError> {
    match sim {
        AnySim::Smpp(s) => Ok(s),
        _ => Err(hook_error(
            "smpp-only",
            "faults can be changed at run time on the SMPP simulator only".into(),
        )),
    }
}

async fn get_faults(State(sim): State<std::sync::Arc<AnySim>>) -> Result<Json<Value>, HookError> {
    let s = smpp_only(&sim)?;
    Ok(Json(json!(FaultsBody::of(s.faults()))))
}

async fn set_faults(
    State(sim): State<std::sync::Arc<AnySim>>,
    Json(body): Json<FaultsBody>,
) -> Result<Json<Value>, HookError> {
    let s = smpp_only(&sim)?;
    let shares = [
        ("undeliverable", body.undeliverable),
        ("reject", body.reject),
        ("throttle", body.throttle),
        ("disconnect", body.disconnect),
        ("duplicate_receipt", body.duplicate_receipt),
        ("unknown_receipt", body.unknown_receipt),
    ];
    if let Some((name, value)) = shares.iter().find(|(_, v)| !(0.0..=1.0).contains(v)) {
        return Err(hook_error(
            "invalid-share",
            format!("{name} must be between 0.0 and 1.0, not {value}"),
        ));
    }
    if body.disconnect + body.throttle + body.reject > 1.0 {
        return Err(hook_error(
            "invalid-share",
            "disconnect + throttle + reject must not exceed 1.0".into(),
        ));
    }
    s.set_faults(Faults {
        undeliverable: body.undeliverable,
        reject: body.reject,
        throttle: body.throttle,
        disconnect: body.disconnect,
        drop_after_bind: (body.drop_after_bind_ms > 0)
            .then(|| Duration::from_millis(body.drop_after_bind_ms)),
        duplicate_receipt: body.duplicate_receipt,
        unknown_receipt: body.unknown_receipt,
    });
    if body.stall_ms > 0 {
        s.stall(Duration::from_millis(body.stall_ms));
    }
    if body.disconnect_all {
        s.disconnect_all();
    }
    Ok(Json(json!(FaultsBody::of(s.faults()))))
}

/// Accepted messages per destination number (`GET /destinations`; a long message
/// counts once, when its last part is in): what the fault-injection suite compares
/// with the outbox to count duplicates.
async fn destinations(State(sim): State<std::sync::Arc<AnySim>>) -> Json<Value> {
    let mut counts = std::collections::HashMap::<String, usize>::new();
    let mut count = |number: String| *counts.entry(number).or_default() += 1;
    match sim.as_ref() {
        AnySim::Smpp(s) => return Json(json!(s.per_destination())),
        AnySim::Cmpp(s) => s.messages().into_iter().for_each(|m| count(m.destination)),
        AnySim::Sgip(s) => s.messages().into_iter().for_each(|m| count(m.user_number)),
    }
    Json(json!(counts))
}

/// `tongdao audit verify`: walk the audit chain of the configured store.
/// Migrations are not applied: a store without the audit tables is an error.
///
/// # Errors
/// The store cannot be opened or read.
pub async fn audit_verify(config: &Config) -> anyhow::Result<crate::audit::Verdict> {
    let store = Store::connect(&config.store.database_url(), 1)
        .await
        .context("opening the store")?;
    let verdict = crate::audit::verify(&store)
        .await
        .context("reading the audit log")?;
    store.close().await;
    Ok(verdict)
}
