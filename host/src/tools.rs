//! Operator tools of the `tongdao` command: `send-test` (a test MT through the
//! running platform's outbox, waiting for its receipt) and `smsc-sim` (the SMSC
//! simulator as a process, with a small HTTP hook to send MOs).

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
    pub listen: SocketAddr,
    pub http: Option<SocketAddr>,
    pub dlr_delay: Duration,
    /// Up to this much more per receipt, drawn uniformly.
    pub dlr_jitter: Duration,
    pub hex_ids: bool,
    pub faults: Faults,
}

/// Run the simulator until Ctrl-C.
pub async fn smsc_sim(options: SimOptions) -> anyhow::Result<()> {
    let sim = Sim::start(SimConfig {
        listen: options.listen,
        dlr_delay: options.dlr_delay,
        dlr_jitter: options.dlr_jitter,
        hex_ids: options.hex_ids,
        faults: options.faults,
        ..SimConfig::default()
    })
    .await?;
    println!("SMSC simulator (SMPP 3.4) on {}", sim.local_addr());
    let sim = std::sync::Arc::new(sim);
    if let Some(http) = options.http {
        let listener = tokio::net::TcpListener::bind(http)
            .await
            .with_context(|| format!("binding {http}"))?;
        println!(
            "MO hook on http://{}: POST /mo {{\"from\",\"to\",\"text\"}}, GET /stats",
            listener.local_addr()?
        );
        let app = Router::new()
            .route("/mo", post(send_mo))
            .route("/stats", get(stats))
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
}

async fn send_mo(
    State(sim): State<std::sync::Arc<SimHandle>>,
    Json(mo): Json<MoRequest>,
) -> Result<Json<Value>, (axum::http::StatusCode, Json<Value>)> {
    sim.send_mo(&mo.from, &mo.to, &mo.text)
        .map(|parts| Json(json!({ "parts": parts })))
        .map_err(|e| {
            (
                axum::http::StatusCode::BAD_REQUEST,
                Json(json!({ "error": { "code": "invalid-mo", "message": e.to_string() } })),
            )
        })
}

async fn stats(State(sim): State<std::sync::Arc<SimHandle>>) -> Json<Value> {
    Json(json!(format!("{:?}", sim.stats())))
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
