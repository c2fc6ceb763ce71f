//! The partner's local runner: `tongdao module check` and `tongdao module
//! run` go through the platform's own code path: `check` validates as an upload
//! does ([`modules::validate`]); `run` uploads the component to a registry over a
//! local SQLite store (the partner `local`), activates it, and calls it through
//! [`Registry`], exactly as the server's API does, with the same limits, verdicts
//! and fault records. Only the upload rate is off (one person on a laptop).

use anyhow::{Context, bail};
use serde::Serialize;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::content::{self, NewItem};
use crate::modules::{self, Registry, RegistryConfig, RegistryError};
use crate::partners::{self, Partner};
use crate::runtime::{
    BulletinRequest, CallOutcome, Lane, MoMessage, ModuleDescription, Runtime, RuntimeConfig,
    SubscriptionChange,
};
use crate::store::{Store, now_ms};

/// Which export `module run` calls.
#[derive(Debug, Clone)]
pub enum Export {
    Bulletin {
        service: Option<String>,
        date: Option<String>,
    },
    Mo {
        text: String,
        service: Option<String>,
    },
    Subscribe {
        service: Option<String>,
    },
    Unsubscribe {
        service: Option<String>,
    },
}

/// Everything `module run` needs besides the export.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub subscriber: String,
    /// `name=value` attributes set on the subscriber before the call.
    pub attributes: Vec<(String, String)>,
    /// `collection` ← file of items (a JSON array of strings or of `{id,text,tags}`).
    pub content: Vec<(String, PathBuf)>,
    /// Keep the local store here between runs (KV state); a temporary one otherwise.
    pub data_dir: Option<PathBuf>,
    pub limits: RuntimeConfig,
}

/// The result of `module check`.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub sha256: String,
    pub size_bytes: usize,
    pub wit_version: String,
    pub description: ModuleDescription,
}

/// Where the local runner keeps compiled components between runs (Python and JS
/// components take seconds to compile): the user's cache directory, never a shared
/// temporary one, because cached code is loaded without recompiling.
fn user_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let dir = base.join("tongdao").join("module-cache");
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir)
}

fn read_module(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Validate a component as an upload would, and describe it.
pub async fn check(path: &Path, limits: RuntimeConfig) -> anyhow::Result<CheckReport> {
    let wasm = read_module(path)?;
    let size_bytes = wasm.len();
    let runtime = Arc::new(Runtime::new(limits, user_cache_dir())?);
    let (module, description) = modules::validate(&runtime, wasm, Lane::Local).await?;
    Ok(CheckReport {
        sha256: module.sha256.clone(),
        size_bytes,
        wit_version: module.wit_version.clone(),
        description,
    })
}

/// What `module run` printed.
#[derive(Debug, Serialize)]
pub struct RunReport {
    pub module: String,
    pub export: &'static str,
    pub ok: bool,
    pub result: serde_json::Value,
    pub logs: Vec<crate::runtime::LogLine>,
}

/// Run one export of a component locally.
pub async fn run(path: &Path, export: Export, options: RunOptions) -> anyhow::Result<RunReport> {
    let wasm = read_module(path)?;
    let temp;
    let data_dir = match &options.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary store")?;
            temp.path().to_path_buf()
        }
    };
    let url = format!("sqlite://{}", data_dir.join("local-runner.db").display());
    let store = Store::connect(&url, 2).await?;
    store.migrate().await?;
    let partner = match partners::get(&store, "local").await {
        Ok(p) => p,
        Err(_) => partners::create(&store, "local", "Local runner").await?.0,
    };
    sqlx::query("INSERT INTO subscribers (id, partner_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
        .bind(&options.subscriber)
        .bind(partner.id)
        .bind(now_ms())
        .execute(store.pool())
        .await?;
    for (name, value) in &options.attributes {
        if !crate::runtime::host::valid_attribute_name(name) {
            bail!("attribute name `{name}` must be 1-64 characters of a-z, 0-9, '_' and '-'");
        }
        sqlx::query(
            "INSERT INTO subscriber_attributes (partner_id, subscriber_id, name, value, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (partner_id, subscriber_id, name) DO UPDATE SET value = excluded.value",
        )
        .bind(partner.id)
        .bind(&options.subscriber)
        .bind(name)
        .bind(value)
        .bind(now_ms())
        .execute(store.pool())
        .await?;
    }
    for (collection, file) in &options.content {
        let items = read_items(file)?;
        sqlx::query("DELETE FROM content_items WHERE partner_id = $1 AND collection = $2")
            .bind(partner.id)
            .bind(collection)
            .execute(store.pool())
            .await?;
        content::add(&store, partner.id, collection, items).await?;
    }

    let runtime = Arc::new(Runtime::new(options.limits, user_cache_dir())?);
    let registry = Registry::with_config(store.clone(), runtime, RegistryConfig::local());
    let report = upload_and_call(&registry, &partner, &wasm, &options.subscriber, export).await;
    store.close().await;
    report
}

/// Upload `wasm` as the local partner, make it the live version, and call it.
async fn upload_and_call(
    registry: &Registry,
    partner: &Partner,
    wasm: &[u8],
    subscriber: &str,
    export: Export,
) -> anyhow::Result<RunReport> {
    let uploaded = registry.upload(partner, wasm, "local").await?;
    let name = uploaded.module.clone();
    match registry
        .activate(partner, &name, uploaded.version, "local")
        .await
    {
        Ok(_) | Err(RegistryError::AlreadyActive { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let default_service = || {
        uploaded
            .description
            .services
            .first()
            .cloned()
            .unwrap_or_default()
    };
    let report = match export {
        Export::Bulletin { service, date } => {
            let request = BulletinRequest {
                service: service.unwrap_or_else(default_service),
                push_id: format!("local-{}", now_ms()),
                date: date.unwrap_or_else(crate::clock::today),
            };
            report(
                "bulletin",
                registry.bulletin(partner, &name, &request).await?,
            )
        }
        Export::Mo { text, service } => {
            let message = MoMessage {
                subscriber: subscriber.to_string(),
                service: service.unwrap_or_else(default_service),
                text,
                received_at_ms: now_ms(),
            };
            report("on-mo", registry.on_mo(partner, &name, &message).await?)
        }
        Export::Subscribe { service } => {
            let change = SubscriptionChange {
                subscriber: subscriber.to_string(),
                service: service.unwrap_or_else(default_service),
                joined: true,
            };
            let outcome = registry.on_subscription(partner, &name, &change).await?;
            report("on-subscribe", outcome)
        }
        Export::Unsubscribe { service } => {
            let change = SubscriptionChange {
                subscriber: subscriber.to_string(),
                service: service.unwrap_or_else(default_service),
                joined: false,
            };
            let outcome = registry.on_subscription(partner, &name, &change).await?;
            report("on-unsubscribe", outcome)
        }
    };
    Ok(RunReport {
        module: name,
        ..report
    })
}

fn report<T: Serialize>(export: &'static str, outcome: CallOutcome<T>) -> RunReport {
    let (ok, result) = match &outcome.result {
        Ok(value) => (true, serde_json::to_value(value).unwrap_or_default()),
        Err(error) => (
            false,
            serde_json::to_value(crate::runtime::limits::CallErrorBody::from(error))
                .unwrap_or_default(),
        ),
    };
    RunReport {
        module: String::new(),
        export,
        ok,
        result,
        logs: outcome.logs,
    }
}

/// Items from a JSON file: an array of strings or of `{ "id", "text", "tags" }`.
fn read_items(path: &Path) -> anyhow::Result<Vec<NewItem>> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Text(String),
        Item(NewItemFile),
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewItemFile {
        id: Option<String>,
        text: String,
        #[serde(default)]
        tags: Vec<String>,
    }
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let entries: Vec<Entry> = serde_json::from_str(&raw).with_context(|| {
        format!(
            "{}: expected a JSON array of texts or items",
            path.display()
        )
    })?;
    Ok(entries
        .into_iter()
        .map(|e| match e {
            Entry::Text(text) => NewItem {
                id: None,
                text,
                tags: Vec::new(),
            },
            Entry::Item(i) => NewItem {
                id: i.id,
                text: i.text,
                tags: i.tags,
            },
        })
        .collect())
}
