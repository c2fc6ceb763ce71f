//! Shadow runs (issue 17 item 3, R-8.1, R-8.2): a candidate version runs beside
//! the active one on real calls (a push's `bulletin`, a user's `on-mo`, a welcome
//! or farewell), on the same inputs, and its output is recorded beside the active
//! version's and diffed. Nothing the candidate writes leaves the call: it runs in a
//! [`DryRun::shadow`] overlay (reads see the partner's data, writes stay in the
//! overlay), its texts are judged by the content policy but never queued, charged
//! or counted as the partner's faults.
//!
//! It never slows or fails the live call: the candidate starts once the active
//! version has answered, in a task of its own that nobody awaits; it queues in the
//! partner's shadow lane (never in the lane of its live calls) and at most
//! `[modules] shadow_concurrency` run at once: a shadow run that finds no slot
//! free is skipped, not queued. Each run is one row of `module_shadow_runs`
//! (this file is its only writer); the newest `[modules] shadow_keep` per module
//! are kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::{Registry, RegistryError, active, load_version, loaded};
use crate::compliance::Compliance;
use crate::partners::Partner;
use crate::runtime::limits::CallErrorBody;
use crate::runtime::{
    BulletinContent, BulletinRequest, CallError, DryRun, MoMessage, PartnerScope, Runtime,
    SubscriptionChange,
};
use crate::store::{Store, now_ms};

/// Shadow runs skipped because every slot was taken (this process).
static SKIPPED: AtomicU64 = AtomicU64::new(0);

/// The shadow runs skipped so far because `[modules] shadow_concurrency` were
/// running.
pub fn skipped() -> u64 {
    SKIPPED.load(Ordering::Relaxed)
}

/// The call a shadow repeats.
#[derive(Debug, Clone)]
pub(super) enum ShadowCall {
    Bulletin(BulletinRequest),
    Mo(MoMessage),
    Subscription(SubscriptionChange),
}

impl ShadowCall {
    fn export(&self) -> &'static str {
        match self {
            Self::Bulletin(_) => "bulletin",
            Self::Mo(_) => "on-mo",
            Self::Subscription(c) if c.joined => "on-subscribe",
            Self::Subscription(_) => "on-unsubscribe",
        }
    }

    fn input(&self) -> Value {
        match self {
            Self::Bulletin(r) => json!(r),
            Self::Mo(m) => json!(m),
            Self::Subscription(c) => json!(c),
        }
    }
}

/// One text that differs between the active version and the candidate.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, ToSchema)]
pub struct DiffEntry {
    /// What the text is: `reply`, a variant key (an attribute value, or an
    /// operator of a per-operator bulletin), `*single`, `*fallback`, `*attribute`
    /// (a keyed bulletin's attribute), `*operator` (`per-operator`: the bulletin is
    /// worded per operator), `error` (the fault kind).
    pub key: String,
    /// The active version's (absent: it wrote none).
    pub active: Option<String>,
    /// The candidate's (absent: it wrote none).
    pub candidate: Option<String>,
}

/// A candidate text the content policy would refuse.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, ToSchema)]
pub struct PolicyHit {
    pub key: String,
    /// The rule (`prohibited-word`, `link`, …).
    pub rule: String,
    pub detail: String,
}

/// One shadow run as `GET /v1/modules/{name}/shadow` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ShadowRun {
    pub id: i64,
    /// `bulletin`, `on-mo`, `on-subscribe`, `on-unsubscribe`.
    pub export: String,
    /// The version numbers that ran.
    pub active_version: i64,
    pub candidate_version: i64,
    /// The call's inputs (the request, the MO, the subscription change) and their
    /// SHA-256, as MTs record it (`provenance.input_sha256`).
    #[schema(value_type = Object)]
    pub input: Value,
    pub input_sha256: String,
    /// `{"ok": …}` (the bulletin content, or the reply: a text or `null`) or
    /// `{"error": {"kind", "message"}}`.
    #[schema(value_type = Object)]
    pub active_output: Value,
    #[schema(value_type = Object)]
    pub candidate_output: Value,
    /// Both versions gave the same output.
    pub same: bool,
    /// The texts that differ, by key.
    pub diff: Vec<DiffEntry>,
    /// Candidate texts the content policy would refuse (they would not be sent).
    pub policy_hits: Vec<PolicyHit>,
    /// CPU time of the candidate's call, in µs.
    pub candidate_cpu_us: i64,
    #[serde(serialize_with = "crate::api::time::ms")]
    #[schema(value_type = String)]
    pub at: i64,
}

#[derive(sqlx::FromRow)]
struct ShadowRow {
    id: i64,
    export: String,
    active_seq: i64,
    candidate_seq: i64,
    input: String,
    input_sha256: String,
    active_output: String,
    candidate_output: String,
    same: i64,
    diff: String,
    policy_hits: String,
    candidate_cpu_us: i64,
    at: i64,
}

/// The output of a call as recorded: `{"ok": value}` or `{"error": {kind, message}}`.
fn output_json<T: Serialize>(result: &Result<T, CallError>) -> Value {
    match result {
        Ok(value) => json!({ "ok": value }),
        Err(error) => json!({ "error": CallErrorBody::from(error) }),
    }
}

/// The texts of an output by key (see [`DiffEntry::key`]).
fn texts(output: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(kind) = output["error"]["kind"].as_str() {
        out.insert("error".to_string(), kind.to_string());
        return out;
    }
    let ok = &output["ok"];
    if let Some(reply) = ok.as_str() {
        out.insert("reply".to_string(), reply.to_string());
    } else if ok.is_object()
        && let Ok(content) = serde_json::from_value::<BulletinContent>(ok.clone())
    {
        match content {
            BulletinContent::Single { text } => {
                out.insert("*single".to_string(), text);
            }
            BulletinContent::Keyed {
                attribute,
                variants,
                fallback,
            } => {
                out.insert("*attribute".to_string(), attribute);
                for (key, text) in variants {
                    out.entry(key).or_insert(text);
                }
                if let Some(text) = fallback {
                    out.insert("*fallback".to_string(), text);
                }
            }
            BulletinContent::PerOperator { variants, fallback } => {
                out.insert("*operator".to_string(), "per-operator".to_string());
                for (operator, text) in variants {
                    out.entry(operator).or_insert(text);
                }
                if let Some(text) = fallback {
                    out.insert("*fallback".to_string(), text);
                }
            }
        }
    }
    out
}

/// The texts that differ between two outputs, by key.
pub fn diff(active: &Value, candidate: &Value) -> Vec<DiffEntry> {
    let a = texts(active);
    let c = texts(candidate);
    let mut keys: Vec<&String> = a.keys().chain(c.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != c.get(*k))
        .map(|k| DiffEntry {
            key: k.clone(),
            active: a.get(k).cloned(),
            candidate: c.get(k).cloned(),
        })
        .collect()
}

/// Everything a shadow run's task needs, owned.
struct Shadow {
    store: Store,
    runtime: Arc<Runtime>,
    loaded: Arc<loaded::LoadedVersions>,
    compliance: Option<Compliance>,
    keep: u32,
    partner: Partner,
    module_id: i64,
    active_version_id: i64,
    candidate_version_id: i64,
    active_output: Value,
    input_sha256: String,
    call: ShadowCall,
}

impl Registry {
    /// Start the shadow candidate of `row` on `call`, if the module has one, in a
    /// task nobody awaits (see the module docs). `ran` is the version that
    /// answered the live call, `outcome` its answer.
    pub(super) fn shadow_after<T: Serialize>(
        &self,
        partner: &Partner,
        row: &active::Active,
        ran: i64,
        outcome: &crate::runtime::CallOutcome<T>,
        call: ShadowCall,
    ) {
        let Some(candidate) = row.shadow_version_id.filter(|c| *c != ran) else {
            return;
        };
        let Ok(permit) = self.shadow_slots.clone().try_acquire_owned() else {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(partner = %partner.name, "shadow run skipped: every shadow slot is taken");
            return;
        };
        let shadow = Shadow {
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            loaded: self.loaded.clone(),
            compliance: self.compliance.clone(),
            keep: self.config.shadow_keep,
            partner: partner.clone(),
            module_id: row.module_id,
            active_version_id: ran,
            candidate_version_id: candidate,
            active_output: output_json(&outcome.result),
            input_sha256: outcome.input_sha256.clone(),
            call,
        };
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = shadow.run().await {
                tracing::warn!(error = %e, "shadow run failed");
            }
        });
    }

    /// The shadow runs of module `name`, newest first, older than run `before`.
    ///
    /// # Errors
    /// [`RegistryError::NotFound`] for another partner's or no module; store
    /// failures.
    pub async fn shadow_runs(
        &self,
        partner: &Partner,
        name: &str,
        before: Option<i64>,
        only_differing: bool,
        limit: i64,
    ) -> Result<Vec<ShadowRun>, RegistryError> {
        let row = self.module_row(partner, name).await?;
        let filter = if only_differing {
            " AND r.same = 0"
        } else {
            ""
        };
        let rows: Vec<ShadowRow> = sqlx::query_as(&format!(
            "SELECT r.id, r.export, a.seq AS active_seq, c.seq AS candidate_seq, r.input,
                r.input_sha256, r.active_output, r.candidate_output, r.same, r.diff,
                r.policy_hits, r.candidate_cpu_us, r.at
             FROM module_shadow_runs r
             JOIN module_versions a ON a.id = r.active_version_id
             JOIN module_versions c ON c.id = r.candidate_version_id
             WHERE r.module_id = $1 AND r.id < $2{filter}
             ORDER BY r.id DESC LIMIT $3"
        ))
        .bind(row.id)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(self.store.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ShadowRun {
                id: r.id,
                export: r.export,
                active_version: r.active_seq,
                candidate_version: r.candidate_seq,
                input: serde_json::from_str(&r.input).unwrap_or(Value::Null),
                input_sha256: r.input_sha256,
                active_output: serde_json::from_str(&r.active_output).unwrap_or(Value::Null),
                candidate_output: serde_json::from_str(&r.candidate_output).unwrap_or(Value::Null),
                same: r.same != 0,
                diff: serde_json::from_str(&r.diff).unwrap_or_default(),
                policy_hits: serde_json::from_str(&r.policy_hits).unwrap_or_default(),
                candidate_cpu_us: r.candidate_cpu_us,
                at: r.at,
            })
            .collect())
    }
}

impl Shadow {
    async fn run(self) -> Result<(), RegistryError> {
        let module = load_version(
            &self.store,
            &self.runtime,
            &self.loaded,
            self.candidate_version_id,
        )
        .await?;
        let scope = PartnerScope {
            store: self.store.clone(),
            partner_id: self.partner.id,
            dry: Some(DryRun::shadow()),
        };
        let (output, cpu) = match &self.call {
            ShadowCall::Bulletin(request) => {
                let o = self.runtime.bulletin(&module, scope, request).await;
                (output_json(&o.result), o.cpu)
            }
            ShadowCall::Mo(message) => {
                let o = self.runtime.on_mo(&module, scope, message).await;
                (output_json(&o.result), o.cpu)
            }
            ShadowCall::Subscription(change) => {
                let o = self.runtime.on_subscription(&module, scope, change).await;
                (output_json(&o.result), o.cpu)
            }
        };
        let diff = diff(&self.active_output, &output);
        let same = self.active_output == output;
        let mut hits = Vec::new();
        if let Some(compliance) = &self.compliance {
            let operators: Vec<String> = compliance.config().operators.keys().cloned().collect();
            for (key, text) in texts(&output) {
                if key == "error" || key == "*attribute" {
                    continue;
                }
                if let Err(v) = compliance.judge_text(&text, &self.partner.display_name, &operators)
                {
                    hits.push(PolicyHit {
                        key,
                        rule: v.rule.to_string(),
                        detail: v.detail,
                    });
                }
            }
        }
        let corrupt = |e: serde_json::Error| {
            RegistryError::Store(crate::store::StoreError::Corrupt(e.to_string()))
        };
        let mut tx = self.store.begin_write().await?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO module_shadow_runs (partner_id, module_id, active_version_id,
                candidate_version_id, export, input, input_sha256, active_output,
                candidate_output, same, diff, policy_hits, candidate_cpu_us, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        )
        .bind(self.partner.id)
        .bind(self.module_id)
        .bind(self.active_version_id)
        .bind(self.candidate_version_id)
        .bind(self.call.export())
        .bind(self.call.input().to_string())
        .bind(&self.input_sha256)
        .bind(self.active_output.to_string())
        .bind(output.to_string())
        .bind(i64::from(same))
        .bind(serde_json::to_string(&diff).map_err(corrupt)?)
        .bind(serde_json::to_string(&hits).map_err(corrupt)?)
        .bind(i64::try_from(cpu.as_micros()).unwrap_or(i64::MAX))
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM module_shadow_runs WHERE module_id = $1 AND id <= $2")
            .bind(self.module_id)
            .bind(id - i64::from(self.keep))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_names_each_text_that_changed() {
        let a = json!({"ok": {"kind": "keyed", "attribute": "sign", "variants": [["aries", "A"], ["leo", "L"]], "fallback": null}});
        let c = json!({"ok": {"kind": "keyed", "attribute": "sign", "variants": [["aries", "A"], ["leo", "L2"]], "fallback": "F"}});
        let d = diff(&a, &c);
        assert_eq!(
            d,
            vec![
                DiffEntry {
                    key: "*fallback".into(),
                    active: None,
                    candidate: Some("F".into())
                },
                DiffEntry {
                    key: "leo".into(),
                    active: Some("L".into()),
                    candidate: Some("L2".into())
                },
            ]
        );
        let reply = json!({"ok": "hi"});
        let fault = json!({"error": {"kind": "trap", "message": "x"}});
        assert_eq!(diff(&reply, &reply), vec![]);
        assert_eq!(diff(&reply, &fault).len(), 2);
    }
}
