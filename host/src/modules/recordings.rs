//! Recorded calls (issue 17 item 7, R-2.4, R-6.2): what a live call was asked,
//! what the host answered it and what it returned, kept so that the call can be
//! replayed on the same or another version ([`crate::runtime::Runtime::replay`]).
//!
//! Which calls are kept:
//! * every call that wrote a text (a bulletin, a reply, a welcome or farewell),
//!   for `[modules] complaint_window_days`: any of its MTs may be complained
//!   about, and a complaint names the MT, whose provenance (module version and
//!   input hash, issue 17 item 6) leads to the recording;
//! * a sample of all calls (`record_permille` per thousand, silent calls and
//!   faults included), for `record_retention_days`;
//! * past those windows, a recording behind a complaint stays as long as the
//!   complaint does.
//!
//! The purge runs as recordings are written (a batch every [`PURGE_EVERY`]
//! recordings), as the fault windows' does.

use rand::Rng;
use serde::Serialize;
use serde_json::Value;

use super::{RegistryConfig, RegistryError};
use crate::runtime::CallRecording;
use crate::store::Store;

/// A purge batch runs after every this many recordings.
const PURGE_EVERY: i64 = 64;
/// Rows one purge batch deletes at most.
const PURGE_BATCH: i64 = 500;
const DAY_MS: i64 = 86_400_000;

/// One recording to keep.
pub(super) struct NewRecording<'a> {
    pub partner_id: i64,
    pub module_id: i64,
    pub version_id: i64,
    pub export: &'a str,
    pub request: Value,
    pub recording: &'a CallRecording,
    pub output: Value,
    pub input_sha256: &'a str,
    pub at: i64,
}

/// A recorded call as listed (`GET /v1/modules/{name}/calls`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecordedCall {
    /// The call's id: what `tongdao module replay` takes.
    pub id: i64,
    /// The version that ran (its number).
    pub version: i64,
    /// The contract version it was built against.
    pub wit_version: String,
    /// `bulletin`, `on-mo`, `on-subscribe`, `on-unsubscribe`.
    pub export: String,
    /// The request as the module got it.
    #[schema(value_type = Object)]
    pub request: Value,
    /// `{"ok": …}` or `{"error": {"kind", "message"}}`.
    #[schema(value_type = Object)]
    pub output: Value,
    /// SHA-256 of the inputs, as its MTs record it.
    pub input_sha256: String,
    /// Kept by the sample (else: because it wrote a text).
    pub sampled: bool,
    /// Host answers recorded.
    pub answers: usize,
    #[serde(serialize_with = "crate::api::time::ms")]
    pub recorded_at: i64,
}

/// A stored recording with everything a replay needs.
pub(super) struct Stored {
    pub call: RecordedCall,
    pub module_id: i64,
    pub module: String,
    pub recording: CallRecording,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    module_id: i64,
    module: String,
    seq: i64,
    wit_version: String,
    export: String,
    request: String,
    recording: String,
    output: String,
    input_sha256: String,
    sampled: i64,
    recorded_at: i64,
}

const SELECT: &str = "SELECT r.id, r.module_id, m.name AS module, v.seq, v.wit_version,
        r.export, r.request, r.recording, r.output, r.input_sha256, r.sampled, r.recorded_at
     FROM call_recordings r
     JOIN modules m ON m.id = r.module_id
     JOIN module_versions v ON v.id = r.version_id";

impl Row {
    fn into_stored(self) -> Result<Stored, RegistryError> {
        let corrupt = |what: &str, e: serde_json::Error| {
            RegistryError::Store(crate::store::StoreError::Corrupt(format!(
                "call recording {}: {what}: {e}",
                self.id
            )))
        };
        let recording: CallRecording =
            serde_json::from_str(&self.recording).map_err(|e| corrupt("recording", e))?;
        let request = serde_json::from_str(&self.request).map_err(|e| corrupt("request", e))?;
        let output = serde_json::from_str(&self.output).map_err(|e| corrupt("output", e))?;
        Ok(Stored {
            call: RecordedCall {
                id: self.id,
                version: self.seq,
                wit_version: self.wit_version,
                export: self.export,
                request,
                output,
                input_sha256: self.input_sha256,
                sampled: self.sampled != 0,
                answers: recording.answers.len(),
                recorded_at: self.recorded_at,
            },
            module_id: self.module_id,
            module: self.module,
            recording,
        })
    }
}

/// Whether a call's output wrote a text someone could complain about.
fn wrote_text(output: &Value) -> bool {
    !output.get("ok").is_none_or(Value::is_null)
}

/// Keep `new` if it wrote a text or the sample picks it; returns its id.
pub(super) async fn keep(
    store: &Store,
    config: &RegistryConfig,
    new: NewRecording<'_>,
) -> Result<Option<i64>, RegistryError> {
    let sampled = rand::rng().random_range(0..1000) < config.record_permille;
    if !sampled && !wrote_text(&new.output) {
        return Ok(None);
    }
    let recording = serde_json::to_string(new.recording)
        .map_err(|e| RegistryError::Store(crate::store::StoreError::Corrupt(e.to_string())))?;
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO call_recordings (partner_id, module_id, version_id, export, request,
            recording, output, input_sha256, sampled, recorded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(new.partner_id)
    .bind(new.module_id)
    .bind(new.version_id)
    .bind(new.export)
    .bind(new.request.to_string())
    .bind(recording)
    .bind(new.output.to_string())
    .bind(new.input_sha256)
    .bind(i64::from(sampled))
    .bind(new.at)
    .fetch_one(store.pool())
    .await?;
    if id % PURGE_EVERY == 0 {
        purge_batch(store, config, new.at, PURGE_BATCH).await?;
    }
    Ok(Some(id))
}

/// Up to `limit` recordings of module `module_id` with an id below `before`,
/// newest first.
pub(super) async fn list(
    store: &Store,
    module_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<RecordedCall>, RegistryError> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "{SELECT} WHERE r.module_id = $1 AND r.id < $2 ORDER BY r.id DESC LIMIT $3"
    ))
    .bind(module_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(store.pool())
    .await?;
    rows.into_iter()
        .map(|r| r.into_stored().map(|s| s.call))
        .collect()
}

/// Recording `id` of partner `partner_id`, if it has one.
pub(super) async fn get(
    store: &Store,
    partner_id: i64,
    id: i64,
) -> Result<Option<Stored>, RegistryError> {
    let row: Option<Row> =
        sqlx::query_as(&format!("{SELECT} WHERE r.id = $1 AND r.partner_id = $2"))
            .bind(id)
            .bind(partner_id)
            .fetch_optional(store.pool())
            .await?;
    row.map(Row::into_stored).transpose()
}

/// Delete up to `batch` recordings the rule no longer keeps at `now`: past the
/// complaint window and not sampled, or past the retention of samples; never one
/// whose MT a complaint names. Returns how many went.
pub async fn purge_batch(
    store: &Store,
    config: &RegistryConfig,
    now: i64,
    batch: i64,
) -> Result<u64, RegistryError> {
    let days = |d: u64| i64::try_from(d).unwrap_or(i64::MAX).saturating_mul(DAY_MS);
    let window = now.saturating_sub(days(config.complaint_window_days));
    let retention = now.saturating_sub(days(config.record_retention_days));
    let done = sqlx::query(
        "DELETE FROM call_recordings WHERE id IN (
            SELECT r.id FROM call_recordings r
            WHERE r.recorded_at < $1 AND (r.sampled = 0 OR r.recorded_at < $2)
              AND NOT EXISTS (
                SELECT 1 FROM complaints c JOIN messages m ON m.id = c.message_id
                WHERE m.module_version_id = r.version_id AND m.input_sha256 = r.input_sha256)
            ORDER BY r.id LIMIT $3)",
    )
    .bind(window)
    .bind(retention)
    .bind(batch)
    .execute(store.pool())
    .await?;
    Ok(done.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_is_an_ok_that_is_not_null() {
        assert!(wrote_text(&serde_json::json!({"ok": "hi"})));
        assert!(wrote_text(
            &serde_json::json!({"ok": {"kind": "single", "text": "hi"}})
        ));
        assert!(!wrote_text(&serde_json::json!({"ok": null})));
        assert!(!wrote_text(
            &serde_json::json!({"error": {"kind": "trap", "message": "x"}})
        ));
    }
}

/// What a replay did (`POST /v1/calls/{id}/replay`, `tongdao module replay`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReplayReport {
    /// The recorded call.
    pub call: i64,
    pub module: String,
    pub export: String,
    #[schema(value_type = Object)]
    pub request: Value,
    /// The version that made the call, and its contract version.
    pub recorded_version: i64,
    pub recorded_wit_version: String,
    /// The version replayed (the recorded one unless another was named).
    pub replayed_version: i64,
    pub replayed_wit_version: String,
    /// `{"ok": …}` or `{"error": {"kind", "message"}}`, as recorded and as replayed.
    #[schema(value_type = Object)]
    pub recorded_output: Value,
    #[schema(value_type = Object)]
    pub replayed_output: Value,
    /// The replay returned what the call returned and asked the host exactly
    /// what the call asked.
    pub identical: bool,
    /// Each way the replay differed, in order.
    pub differences: Vec<Difference>,
    /// What the replay logged.
    #[schema(value_type = Vec<Object>)]
    pub logs: Vec<crate::runtime::LogLine>,
    /// Always `false`: a replay reads nothing stored, writes nothing, sends nothing.
    pub sent: bool,
}

/// One way a replay differed from its recording.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Difference {
    /// `output`: another result; `unrecorded-call`: the replay asked the host
    /// something the call never asked (it got a neutral answer); `unused-answer`:
    /// the call asked something the replay did not.
    pub what: &'static str,
    /// One line for people.
    pub detail: String,
    /// The recorded side (`null` for an unrecorded call).
    #[schema(value_type = Object)]
    pub recorded: Value,
    /// The replayed side (`null` for an unused answer).
    #[schema(value_type = Object)]
    pub replayed: Value,
}

/// The differences between a recorded call and its replay.
pub(super) fn differences(
    recorded: &Value,
    replayed: &crate::runtime::Replayed,
) -> Vec<Difference> {
    let mut out = Vec::new();
    if *recorded != replayed.output {
        out.push(Difference {
            what: "output",
            detail: format!("recorded {recorded}, replayed {}", replayed.output),
            recorded: recorded.clone(),
            replayed: replayed.output.clone(),
        });
    }
    let question = |a: &crate::runtime::HostAnswer| format!("{}({})", a.call, a.args.join(", "));
    for asked in &replayed.unrecorded {
        out.push(Difference {
            what: "unrecorded-call",
            detail: format!(
                "the replay called {}, which the recorded call did not; it was answered {}",
                question(asked),
                asked.answer
            ),
            recorded: Value::Null,
            replayed: serde_json::to_value(asked).unwrap_or_default(),
        });
    }
    for unused in &replayed.unused {
        out.push(Difference {
            what: "unused-answer",
            detail: format!(
                "the recorded call called {} (answered {}); the replay did not",
                question(unused),
                unused.answer
            ),
            recorded: serde_json::to_value(unused).unwrap_or_default(),
            replayed: Value::Null,
        });
    }
    out
}
