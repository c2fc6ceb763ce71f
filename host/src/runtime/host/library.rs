//! The partner's content library (`tongdao:partner/content`) and subscriber
//! attributes (`tongdao:partner/subscribers`), both scoped to the calling partner.

use super::tape::answer;
use super::{CallState, DryRun};
use crate::runtime::bindings::latest::tongdao::partner::content::{self, Item};
use crate::runtime::bindings::latest::tongdao::partner::subscribers::{self, AttributeError};
use crate::store::now_ms;

const MAX_ATTRIBUTE_NAME_BYTES: usize = 64;
const MAX_ATTRIBUTE_VALUE_BYTES: usize = 256;

/// Whether `name` is a valid attribute name (`a-z0-9_-`, 1-64 bytes).
pub fn valid_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_ATTRIBUTE_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// What a replayed call gets for an attribute question its recording has no
/// answer for (issue 17 item 7).
fn not_recorded<T>() -> Result<T, AttributeError> {
    Err(AttributeError::Unavailable("not in the recording".into()))
}

fn unavailable(e: impl std::fmt::Display) -> AttributeError {
    tracing::warn!(error = %e, "subscriber attribute store failure");
    AttributeError::Unavailable("the subscriber store is unavailable".into())
}

impl CallState {
    fn data_scope(&self) -> Option<(sqlx::AnyPool, i64)> {
        self.scope
            .as_ref()
            .map(|s| (s.store.pool().clone(), s.partner_id))
    }
}

/// Whether `subscriber` is one of the calling partner's subscribers.
async fn own_subscriber(
    pool: &sqlx::AnyPool,
    partner: i64,
    subscriber: &str,
) -> Result<bool, AttributeError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT partner_id FROM subscribers WHERE id = $1 AND partner_id = $2")
            .bind(subscriber)
            .bind(partner)
            .fetch_optional(pool)
            .await
            .map_err(unavailable)?;
    Ok(row.is_some())
}

/// The calling partner's store and id, if the call has a scope.
type Data = Option<(sqlx::AnyPool, i64)>;

// The live answers of the data calls (the store's, or a dry run's), from the
// call's data scope and dry run taken out of the call state (no borrow of it
// lives across an await).
async fn live_count(data: Data, dry: Option<DryRun>, collection: &str) -> u32 {
    let Some((pool, partner)) = data else {
        return 0;
    };
    let count: Result<(i64,), _> = sqlx::query_as(
        "SELECT COUNT(*) FROM content_items WHERE partner_id = $1 AND collection = $2",
    )
    .bind(partner)
    .bind(collection)
    .fetch_one(&pool)
    .await;
    let count = match count {
        Ok((n,)) => u32::try_from(n).unwrap_or(u32::MAX),
        Err(e) => {
            // The WIT gives `count` no error case; an outage reads as empty, and
            // the module's own no-content path takes over.
            tracing::warn!(error = %e, "content library failure");
            0
        }
    };
    if let Some(dry) = dry {
        dry.record("content", "count", collection, format!("{count} items"));
    }
    count
}

async fn live_item(data: Data, dry: Option<DryRun>, collection: &str, index: u32) -> Option<Item> {
    let (pool, partner) = data?;
    let row: Result<Option<(String, String, String)>, _> = sqlx::query_as(
        "SELECT item_key, text, tags FROM content_items
         WHERE partner_id = $1 AND collection = $2
         ORDER BY position LIMIT 1 OFFSET $3",
    )
    .bind(partner)
    .bind(collection)
    .bind(i64::from(index))
    .fetch_optional(&pool)
    .await;
    let item = match row {
        Ok(row) => row.map(|(id, text, tags)| Item {
            id,
            text,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "content library failure");
            None
        }
    };
    if let Some(dry) = dry {
        let outcome = item
            .as_ref()
            .map_or_else(|| "absent".to_string(), |i| format!("item `{}`", i.id));
        dry.record("content", "get", &format!("{collection}[{index}]"), outcome);
    }
    item
}

async fn live_get_attribute(
    data: Data,
    dry: Option<DryRun>,
    subscriber: &str,
    name: &str,
) -> Result<Option<String>, AttributeError> {
    if !valid_attribute_name(name) {
        return Err(AttributeError::InvalidName);
    }
    let Some((pool, partner)) = data else {
        return Err(AttributeError::Unavailable(
            "no subscriber store in this context".into(),
        ));
    };
    if let Some(dry) = dry {
        let value = dry_get_attribute(&dry, &pool, partner, subscriber, name).await;
        let outcome = match &value {
            Ok(Some(v)) => format!("`{v}`"),
            Ok(None) => "absent".into(),
            Err(e) => format!("error: {e:?}"),
        };
        dry.record(
            "subscribers",
            "get-attribute",
            &format!("{subscriber}.{name}"),
            outcome,
        );
        return value;
    }
    match own_subscriber(&pool, partner, subscriber).await {
        Ok(true) => {}
        Ok(false) => return Err(AttributeError::UnknownSubscriber),
        Err(e) => return Err(e),
    }
    let row: Result<Option<(String,)>, _> = sqlx::query_as(
        "SELECT value FROM subscriber_attributes WHERE partner_id = $1 AND subscriber_id = $2 AND name = $3",
    )
    .bind(partner)
    .bind(subscriber)
    .bind(name)
    .fetch_optional(&pool)
    .await;
    row.map(|r| r.map(|(v,)| v)).map_err(unavailable)
}

async fn live_set_attribute(
    data: Data,
    dry: Option<DryRun>,
    (subscriber, name, value): (&str, &str, &str),
) -> Result<(), AttributeError> {
    if !valid_attribute_name(name) {
        return Err(AttributeError::InvalidName);
    }
    if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
        return Err(AttributeError::ValueTooLarge);
    }
    let Some((pool, partner)) = data else {
        return Err(AttributeError::Unavailable(
            "no subscriber store in this context".into(),
        ));
    };
    if let Some(dry) = dry {
        let known = dry_knows(&dry, &pool, partner, subscriber).await;
        let result = match known {
            Ok(true) => {
                dry.set_attribute(subscriber, name, value);
                Ok(())
            }
            Ok(false) => Err(AttributeError::UnknownSubscriber),
            Err(e) => Err(e),
        };
        let outcome = match &result {
            Ok(()) => format!("`{value}` kept in the dry run, not stored"),
            Err(e) => format!("error: {e:?}"),
        };
        dry.record(
            "subscribers",
            "set-attribute",
            &format!("{subscriber}.{name}"),
            outcome,
        );
        return result;
    }
    match own_subscriber(&pool, partner, subscriber).await {
        Ok(true) => {}
        Ok(false) => return Err(AttributeError::UnknownSubscriber),
        Err(e) => return Err(e),
    }
    let done = sqlx::query(
        "INSERT INTO subscriber_attributes (partner_id, subscriber_id, name, value, updated_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (partner_id, subscriber_id, name)
         DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )
    .bind(partner)
    .bind(subscriber)
    .bind(name)
    .bind(value)
    .bind(now_ms())
    .execute(&pool)
    .await;
    done.map(|_| ()).map_err(unavailable)
}

impl content::Host for CallState {
    async fn count(&mut self, collection: String) -> wasmtime::Result<u32> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let tape = self.tape.clone();
        let args: &[&str] = &[&collection];
        Ok(answer(
            tape.as_ref(),
            "content.count",
            args,
            || 0,
            live_count(self.data_scope(), self.dry(), &collection),
        )
        .await)
    }

    async fn get(&mut self, collection: String, index: u32) -> wasmtime::Result<Option<Item>> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let tape = self.tape.clone();
        let args: &[&str] = &[&collection, &index.to_string()];
        Ok(answer(
            tape.as_ref(),
            "content.get",
            args,
            || None,
            live_item(self.data_scope(), self.dry(), &collection, index),
        )
        .await)
    }
}

impl subscribers::Host for CallState {
    async fn get_attribute(
        &mut self,
        subscriber: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, AttributeError>> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let tape = self.tape.clone();
        let args: &[&str] = &[&subscriber, &name];
        Ok(answer(
            tape.as_ref(),
            "subscribers.get-attribute",
            args,
            not_recorded,
            live_get_attribute(self.data_scope(), self.dry(), &subscriber, &name),
        )
        .await)
    }

    async fn set_attribute(
        &mut self,
        subscriber: String,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), AttributeError>> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let tape = self.tape.clone();
        let args: &[&str] = &[&subscriber, &name];
        Ok(answer(
            tape.as_ref(),
            "subscribers.set-attribute",
            args,
            not_recorded,
            live_set_attribute(self.data_scope(), self.dry(), (&subscriber, &name, &value)),
        )
        .await)
    }
}

/// Whether a dry run knows `subscriber`: added to it, or (over the store) one of
/// the partner's own.
async fn dry_knows(
    dry: &DryRun,
    pool: &sqlx::AnyPool,
    partner: i64,
    subscriber: &str,
) -> Result<bool, AttributeError> {
    if dry.knows(subscriber) {
        return Ok(true);
    }
    if dry.read_through() {
        return own_subscriber(pool, partner, subscriber).await;
    }
    Ok(false)
}

/// An attribute as a dry run sees it: its own value, else (over the store) the
/// stored one.
async fn dry_get_attribute(
    dry: &DryRun,
    pool: &sqlx::AnyPool,
    partner: i64,
    subscriber: &str,
    name: &str,
) -> Result<Option<String>, AttributeError> {
    if let Some(value) = dry.attribute(subscriber, name) {
        return Ok(Some(value));
    }
    if !dry_knows(dry, pool, partner, subscriber).await? {
        return Err(AttributeError::UnknownSubscriber);
    }
    if !dry.read_through()
        || (dry.knows(subscriber) && !own_subscriber(pool, partner, subscriber).await?)
    {
        return Ok(None);
    }
    let row: Option<(String,)> = sqlx::query_as(
        "SELECT value FROM subscriber_attributes WHERE partner_id = $1 AND subscriber_id = $2 AND name = $3",
    )
    .bind(partner)
    .bind(subscriber)
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(unavailable)?;
    Ok(row.map(|(v,)| v))
}
