//! The partner's content library (`tongdao:partner/content`) and subscriber
//! attributes (`tongdao:partner/subscribers`), both scoped to the calling partner.

use super::CallState;
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

impl content::Host for CallState {
    async fn count(&mut self, collection: String) -> wasmtime::Result<u32> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let Some((pool, partner)) = self.data_scope() else {
            return Ok(0);
        };
        let count: Result<(i64,), _> = sqlx::query_as(
            "SELECT COUNT(*) FROM content_items WHERE partner_id = $1 AND collection = $2",
        )
        .bind(partner)
        .bind(&collection)
        .fetch_one(&pool)
        .await;
        match count {
            Ok((n,)) => Ok(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => {
                // The WIT gives `count` no error case; an outage reads as empty, and
                // the module's own no-content path takes over.
                tracing::warn!(error = %e, "content library failure");
                Ok(0)
            }
        }
    }

    async fn get(&mut self, collection: String, index: u32) -> wasmtime::Result<Option<Item>> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        let Some((pool, partner)) = self.data_scope() else {
            return Ok(None);
        };
        let row: Result<Option<(String, String, String)>, _> = sqlx::query_as(
            "SELECT item_key, text, tags FROM content_items
             WHERE partner_id = $1 AND collection = $2
             ORDER BY position LIMIT 1 OFFSET $3",
        )
        .bind(partner)
        .bind(&collection)
        .bind(i64::from(index))
        .fetch_optional(&pool)
        .await;
        match row {
            Ok(row) => Ok(row.map(|(id, text, tags)| Item {
                id,
                text,
                tags: serde_json::from_str(&tags).unwrap_or_default(),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "content library failure");
                Ok(None)
            }
        }
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
        if !valid_attribute_name(&name) {
            return Ok(Err(AttributeError::InvalidName));
        }
        let Some((pool, partner)) = self.data_scope() else {
            return Ok(Err(AttributeError::Unavailable(
                "no subscriber store in this context".into(),
            )));
        };
        match own_subscriber(&pool, partner, &subscriber).await {
            Ok(true) => {}
            Ok(false) => return Ok(Err(AttributeError::UnknownSubscriber)),
            Err(e) => return Ok(Err(e)),
        }
        let row: Result<Option<(String,)>, _> = sqlx::query_as(
            "SELECT value FROM subscriber_attributes WHERE partner_id = $1 AND subscriber_id = $2 AND name = $3",
        )
        .bind(partner)
        .bind(&subscriber)
        .bind(&name)
        .fetch_optional(&pool)
        .await;
        Ok(row.map(|r| r.map(|(v,)| v)).map_err(unavailable))
    }

    async fn set_attribute(
        &mut self,
        subscriber: String,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), AttributeError>> {
        self.spend_data_op()?;
        let _host = self.cpu.host_call();
        if !valid_attribute_name(&name) {
            return Ok(Err(AttributeError::InvalidName));
        }
        if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
            return Ok(Err(AttributeError::ValueTooLarge));
        }
        let Some((pool, partner)) = self.data_scope() else {
            return Ok(Err(AttributeError::Unavailable(
                "no subscriber store in this context".into(),
            )));
        };
        match own_subscriber(&pool, partner, &subscriber).await {
            Ok(true) => {}
            Ok(false) => return Ok(Err(AttributeError::UnknownSubscriber)),
            Err(e) => return Ok(Err(e)),
        }
        let done = sqlx::query(
            "INSERT INTO subscriber_attributes (partner_id, subscriber_id, name, value, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (partner_id, subscriber_id, name)
             DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(partner)
        .bind(&subscriber)
        .bind(&name)
        .bind(&value)
        .bind(now_ms())
        .execute(&pool)
        .await;
        Ok(done.map(|_| ()).map_err(unavailable))
    }
}
