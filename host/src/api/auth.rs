//! Who is calling: the admin (platform operator) or a partner, from
//! `Authorization: Bearer <key>`. A partner's key reaches only its own data.

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;

use super::{ApiError, AppState};
use crate::partners::{self, Partner};

/// The authenticated caller.
#[derive(Debug, Clone)]
pub enum Caller {
    Admin,
    Partner(Partner),
}

impl Caller {
    /// Who did it, for audit records.
    pub fn actor(&self) -> String {
        match self {
            Self::Admin => "admin".into(),
            Self::Partner(p) => format!("partner:{}", p.name),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
}

/// Compare without an early exit, so timing does not tell how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing `Authorization: Bearer <key>` header"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <key>`"))?;
        let caller = authenticate(state, key).await?;
        super::request_id::record_caller(&caller.actor());
        if parts.extensions.get::<super::rate::Counted>().is_none() {
            parts.extensions.insert(super::rate::Counted);
            state.rates.check(&partners::hash_key(key))?;
        }
        Ok(caller)
    }
}

/// Who a presented key belongs to: the admin, or a partner with a valid key
/// . The API's bearer header and the console's login form both check keys
/// here, so they agree on every key.
///
/// # Errors
/// 401 `unauthorized` for an unknown or revoked key; a store error.
pub async fn authenticate(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let hash = partners::hash_key(key);
    if constant_time_eq(hash.as_bytes(), state.admin_key_hash.as_bytes()) {
        return Ok(Caller::Admin);
    }
    match partners::authenticate(&state.store, key).await? {
        Some(partner) => Ok(Caller::Partner(partner)),
        None => Err(unauthorized("unknown or revoked API key")),
    }
}

/// The caller must be the admin.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match Caller::from_request_parts(parts, state).await? {
            Caller::Admin => Ok(Self),
            Caller::Partner(_) => Err(ApiError::forbidden(
                "this route is for the platform admin only",
            )),
        }
    }
}

/// The partner whose data a request works on: the caller itself, or for the admin
/// the partner named by `?partner=`.
#[derive(Debug)]
pub struct PartnerContext {
    pub partner: Partner,
    pub caller: Caller,
}

#[derive(Deserialize)]
struct PartnerQuery {
    partner: Option<String>,
}

impl FromRequestParts<AppState> for PartnerContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let Query(query) = Query::<PartnerQuery>::from_request_parts(parts, state)
            .await
            .unwrap_or(Query(PartnerQuery { partner: None }));
        let partner = match (&caller, query.partner) {
            (Caller::Partner(p), None) => p.clone(),
            (Caller::Partner(p), Some(name)) if name == p.name => p.clone(),
            // Naming another partner with a partner key is refused, not ignored.
            (Caller::Partner(_), Some(_)) => {
                return Err(ApiError::forbidden(
                    "a partner key reaches only its own partner",
                ));
            }
            (Caller::Admin, Some(name)) => partners::get(&state.store, &name).await?,
            (Caller::Admin, None) => {
                return Err(ApiError::bad_request(
                    "partner-required",
                    "the admin must name the partner with ?partner=NAME",
                ));
            }
        };
        Ok(Self { partner, caller })
    }
}

/// The partner a request is limited to: a partner key its own (naming another
/// partner with `?partner=` is refused, not ignored); the admin the partner named
/// by `?partner=`, or everyone (`None`).
pub async fn scope(
    state: &AppState,
    caller: &Caller,
    partner: Option<&str>,
) -> Result<Option<i64>, ApiError> {
    match (caller, partner) {
        (Caller::Partner(p), None) => Ok(Some(p.id)),
        (Caller::Partner(p), Some(name)) if name == p.name => Ok(Some(p.id)),
        (Caller::Partner(_), Some(_)) => Err(ApiError::forbidden(
            "a partner key reaches only its own partner",
        )),
        (Caller::Admin, Some(name)) => Ok(Some(partners::get(&state.store, name).await?.id)),
        (Caller::Admin, None) => Ok(None),
    }
}
