//! The partner's key-value store (`tongdao:partner/kv`). Keys are shared by all
//! modules of one partner and invisible to every other partner.

use super::tape::answer;
use super::{CallState, DryRun};
use crate::runtime::bindings::latest::tongdao::partner::kv::{Host, KvError};
use crate::store::now_ms;

const MAX_KEY_BYTES: usize = 256;
/// Compare-and-swap attempts of `incr` before giving up as unavailable.
const INCR_ATTEMPTS: usize = 32;

type KvResult<T> = wasmtime::Result<Result<T, KvError>>;

fn unavailable(e: impl std::fmt::Display) -> KvError {
    tracing::warn!(error = %e, "kv store failure");
    KvError::Unavailable("the key-value store is unavailable".into())
}

/// What a replayed call gets for a key-value question its recording has no
/// answer for (issue 17 item 7).
fn not_recorded<T>() -> Result<T, KvError> {
    Err(KvError::Unavailable("not in the recording".into()))
}

fn check_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(KvError::InvalidKey);
    }
    Ok(())
}

/// Where one call's key-value operations go.
#[derive(Clone)]
struct KvScope {
    pool: sqlx::AnyPool,
    partner: i64,
    max_keys: u64,
}

impl CallState {
    /// The scope of a data call, or the error a scopeless call gets. Taken out of
    /// `self` so no borrow of the call state lives across an await.
    fn kv_scope(&self) -> Result<KvScope, KvError> {
        self.scope
            .as_ref()
            .map(|s| KvScope {
                pool: s.store.pool().clone(),
                partner: s.partner_id,
                max_keys: self.max_kv_keys,
            })
            .ok_or_else(|| KvError::Unavailable("no key-value store in this context".into()))
    }
}

impl KvScope {
    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let row: Option<(Vec<u8>,)> =
            sqlx::query_as("SELECT value FROM kv_entries WHERE partner_id = $1 AND key = $2")
                .bind(self.partner)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row.map(|(v,)| v))
    }

    /// Insert a new key if the partner has room; false if the key appeared meanwhile.
    async fn insert_new(&self, key: &str, value: &[u8]) -> Result<bool, KvError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM kv_entries WHERE partner_id = $1")
                .bind(self.partner)
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        if u64::try_from(count).unwrap_or(u64::MAX) >= self.max_keys {
            return Err(KvError::Full);
        }
        let done = sqlx::query(
            "INSERT INTO kv_entries (partner_id, key, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (partner_id, key) DO NOTHING",
        )
        .bind(self.partner)
        .bind(key)
        .bind(value)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        // Update, else insert; if the insert loses a race the key exists: update again.
        for _ in 0..2 {
            let updated =
                sqlx::query("UPDATE kv_entries SET value = $3, updated_at = $4 WHERE partner_id = $1 AND key = $2")
                    .bind(self.partner)
                    .bind(key)
                    .bind(value)
                    .bind(now_ms())
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?;
            if updated.rows_affected() == 1 || self.insert_new(key, value).await? {
                return Ok(());
            }
        }
        Err(KvError::Unavailable(
            "too much contention on this key".into(),
        ))
    }

    /// Atomic add by compare-and-swap, so it needs no backend-specific locking.
    async fn add(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        for _ in 0..INCR_ATTEMPTS {
            let old = self.read(key).await?;
            let current = match &old {
                None => 0,
                Some(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .ok_or(KvError::WrongType)?,
            };
            let new = current.checked_add(delta).ok_or(KvError::WrongType)?;
            let new_bytes = new.to_string().into_bytes();
            let swapped = match old {
                None => self.insert_new(key, &new_bytes).await?,
                Some(old) => {
                    sqlx::query(
                        "UPDATE kv_entries SET value = $3, updated_at = $4
                         WHERE partner_id = $1 AND key = $2 AND value = $5",
                    )
                    .bind(self.partner)
                    .bind(key)
                    .bind(new_bytes)
                    .bind(now_ms())
                    .bind(old)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected()
                        == 1
                }
            };
            if swapped {
                return Ok(new);
            }
        }
        Err(KvError::Unavailable(
            "too much contention on this key".into(),
        ))
    }

    async fn delete(&self, key: &str) -> Result<bool, KvError> {
        sqlx::query("DELETE FROM kv_entries WHERE partner_id = $1 AND key = $2")
            .bind(self.partner)
            .bind(key)
            .execute(&self.pool)
            .await
            .map(|r| r.rows_affected() == 1)
            .map_err(unavailable)
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, KvError> {
        let limit = i64::from(limit.min(1000));
        // Prefix match by range (`key >= prefix AND key < prefix+U+10FFFF`) rather
        // than LIKE, so `%` and `_` in keys need no escaping.
        let upper = format!("{prefix}\u{10FFFF}");
        let lower = match after {
            Some(a) if a.as_str() > prefix => a,
            _ => String::new(),
        };
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT key FROM kv_entries
             WHERE partner_id = $1 AND key >= $2 AND key < $3 AND key > $4
             ORDER BY key LIMIT $5",
        )
        .bind(self.partner)
        .bind(prefix)
        .bind(&upper)
        .bind(&lower)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows.into_iter().map(|(k,)| k).collect())
    }
}

/// A few words on what a dry-run read returned.
fn describe_read(value: &Result<Option<Vec<u8>>, KvError>) -> String {
    match value {
        Ok(Some(v)) => format!("found {} bytes", v.len()),
        Ok(None) => "absent".into(),
        Err(e) => format!("error: {e:?}"),
    }
}

const NOT_STORED: &str = "kept in the dry run, not stored";

/// The key-value calls of a dry run: writes go to the overlay, reads see it first
/// and then (over the store) the stored value.
impl KvScope {
    async fn dry_read(&self, dry: &DryRun, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        match dry.kv_value(key) {
            Some(value) => Ok(value),
            None if dry.read_through() => self.read(key).await,
            None => Ok(None),
        }
    }

    async fn dry_add(&self, dry: &DryRun, key: &str, delta: i64) -> Result<i64, KvError> {
        let current = match self.dry_read(dry, key).await? {
            None => 0,
            Some(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or(KvError::WrongType)?,
        };
        let new = current.checked_add(delta).ok_or(KvError::WrongType)?;
        dry.kv_put(key, Some(new.to_string().into_bytes()));
        Ok(new)
    }
}

impl Host for CallState {
    async fn get(&mut self, key: String) -> KvResult<Option<Vec<u8>>> {
        self.spend_kv_op()?;
        let _host = self.cpu.host_call();
        let scope = self.kv_scope();
        let dry = self.dry();
        let tape = self.tape.clone();
        let args: &[&str] = &[&key];
        Ok(answer(tape.as_ref(), "kv.get", args, not_recorded, async {
            match (check_key(&key), scope, dry) {
                (Err(e), _, _) | (_, Err(e), _) => Err(e),
                (Ok(()), Ok(scope), None) => scope.read(&key).await,
                (Ok(()), Ok(scope), Some(dry)) => {
                    let value = scope.dry_read(&dry, &key).await;
                    dry.record("kv", "get", &key, describe_read(&value));
                    value
                }
            }
        })
        .await)
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> KvResult<()> {
        self.spend_kv_op()?;
        let _host = self.cpu.host_call();
        if value.len() > self.max_kv_value_bytes {
            let limit = u32::try_from(self.max_kv_value_bytes).unwrap_or(u32::MAX);
            return Ok(Err(KvError::ValueTooLarge(limit)));
        }
        let scope = self.kv_scope();
        let dry = self.dry();
        let tape = self.tape.clone();
        let args: &[&str] = &[&key];
        Ok(answer(tape.as_ref(), "kv.set", args, not_recorded, async {
            match (check_key(&key), scope, dry) {
                (Err(e), _, _) | (_, Err(e), _) => Err(e),
                (Ok(()), Ok(scope), None) => scope.set(&key, &value).await,
                (Ok(()), Ok(_), Some(dry)) => {
                    dry.record(
                        "kv",
                        "set",
                        &key,
                        format!("{} bytes {NOT_STORED}", value.len()),
                    );
                    dry.kv_put(&key, Some(value));
                    Ok(())
                }
            }
        })
        .await)
    }

    async fn delete(&mut self, key: String) -> KvResult<bool> {
        self.spend_kv_op()?;
        let _host = self.cpu.host_call();
        let scope = self.kv_scope();
        let dry = self.dry();
        let tape = self.tape.clone();
        let args: &[&str] = &[&key];
        Ok(
            answer(tape.as_ref(), "kv.delete", args, not_recorded, async {
                match (check_key(&key), scope, dry) {
                    (Err(e), _, _) | (_, Err(e), _) => Err(e),
                    (Ok(()), Ok(scope), None) => scope.delete(&key).await,
                    (Ok(()), Ok(scope), Some(dry)) => {
                        let existed = scope.dry_read(&dry, &key).await.map(|v| v.is_some());
                        if existed.is_ok() {
                            dry.kv_put(&key, None);
                        }
                        dry.record("kv", "delete", &key, format!("{existed:?}, {NOT_STORED}"));
                        existed
                    }
                }
            })
            .await,
        )
    }

    async fn incr(&mut self, key: String, delta: i64) -> KvResult<i64> {
        self.spend_kv_op()?;
        let _host = self.cpu.host_call();
        let scope = self.kv_scope();
        let dry = self.dry();
        let tape = self.tape.clone();
        let args: &[&str] = &[&key, &delta.to_string()];
        Ok(answer(tape.as_ref(), "kv.incr", args, not_recorded, async {
            match (check_key(&key), scope, dry) {
                (Err(e), _, _) | (_, Err(e), _) => Err(e),
                (Ok(()), Ok(scope), None) => scope.add(&key, delta).await,
                (Ok(()), Ok(scope), Some(dry)) => {
                    let new = scope.dry_add(&dry, &key, delta).await;
                    let outcome = match &new {
                        Ok(n) => format!("{delta:+} = {n}, {NOT_STORED}"),
                        Err(e) => format!("error: {e:?}"),
                    };
                    dry.record("kv", "incr", &key, outcome);
                    new
                }
            }
        })
        .await)
    }

    async fn list_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> KvResult<Vec<String>> {
        self.spend_kv_op()?;
        let _host = self.cpu.host_call();
        let scope = self.kv_scope();
        let dry = self.dry();
        let tape = self.tape.clone();
        let after_arg = after.clone().unwrap_or_default();
        let args: &[&str] = &[&prefix, &after_arg, &limit.to_string()];
        Ok(
            answer(tape.as_ref(), "kv.list-keys", args, not_recorded, async {
                match (scope, dry) {
                    (Err(e), _) => Err(e),
                    (Ok(scope), None) => scope.list(&prefix, after, limit).await,
                    (Ok(scope), Some(dry)) => {
                        let stored = if dry.read_through() {
                            scope.list(&prefix, after.clone(), limit).await
                        } else {
                            Ok(Vec::new())
                        };
                        let keys = stored.map(|stored| {
                            dry.kv_keys(stored, &prefix, after.as_deref(), limit.min(1000) as usize)
                        });
                        let outcome = match &keys {
                            Ok(k) => format!("{} keys", k.len()),
                            Err(e) => format!("error: {e:?}"),
                        };
                        dry.record("kv", "list-keys", &prefix, outcome);
                        keys
                    }
                }
            })
            .await,
        )
    }
}
