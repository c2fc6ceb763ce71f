//! One error type for every route: an HTTP status plus `{"error":{"code","message"}}`.
//! Server faults are logged in full and answered without internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::compliance::{Blocked, ComplianceError};
use crate::content::ContentError;
use crate::modules::RegistryError;
use crate::partners::PartnerError;
use crate::runtime::CallError;
use crate::services::ServiceError;
use crate::store::StoreError;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `Retry-After` in whole seconds, for answers that say when to come back.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same error with a `Retry-After` of `seconds` (at least 1).
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub(super) fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<PartnerError> for ApiError {
    fn from(e: PartnerError) -> Self {
        match e {
            PartnerError::InvalidName | PartnerError::InvalidDisplayName(_) => {
                Self::bad_request("invalid-partner", e.to_string())
            }
            PartnerError::Exists(_) => {
                Self::new(StatusCode::CONFLICT, "partner-exists", e.to_string())
            }
            PartnerError::NotFound(_) => Self::not_found(e.to_string()),
            PartnerError::Store(e) => e.into(),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        let message = e.to_string();
        match e {
            RegistryError::Invalid(v) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, v.code(), message)
            }
            RegistryError::NotFound(_) | RegistryError::NoSuchVersion { .. } => {
                Self::not_found(message)
            }
            RegistryError::NoActiveVersion(_) => {
                Self::new(StatusCode::CONFLICT, "no-active-version", message)
            }
            RegistryError::NothingToRollBack(_) => {
                Self::new(StatusCode::CONFLICT, "nothing-to-roll-back", message)
            }
            RegistryError::AlreadyActive { .. } => {
                Self::new(StatusCode::CONFLICT, "already-active", message)
            }
            RegistryError::VersionPruned { .. } => {
                Self::new(StatusCode::CONFLICT, "version-pruned", message)
            }
            RegistryError::UploadRate { .. } => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "upload-rate-limit", message)
            }
            RegistryError::VersionQuota { .. } => {
                Self::new(StatusCode::CONFLICT, "version-quota", message)
            }
            RegistryError::StorageQuota { .. } => {
                Self::new(StatusCode::CONFLICT, "storage-quota", message)
            }
            RegistryError::Call(CallError::ConcurrencyLimit(_)) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "concurrency-limit", message)
            }
            RegistryError::Call(c) if !c.is_module_fault() => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            RegistryError::Call(c) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, c.kind(), message)
            }
            RegistryError::AdmissionFailed { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "admission-failed",
                message,
            ),
            RegistryError::ApprovalRequired(_) => {
                Self::new(StatusCode::CONFLICT, "approval-required", message)
            }
            RegistryError::ActivationPending { .. } => {
                Self::new(StatusCode::CONFLICT, "activation-pending", message)
            }
            RegistryError::NoSuchRequest(_) | RegistryError::NoSuchCall(_) => {
                Self::not_found(message)
            }
            RegistryError::BadRecording(_) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "bad-recording", message)
            }
            RegistryError::RequestDecided { .. } => {
                Self::new(StatusCode::CONFLICT, "already-decided", message)
            }
            RegistryError::NoShadow(_) => Self::new(StatusCode::CONFLICT, "no-shadow", message),
            RegistryError::NoCanary(_) => Self::new(StatusCode::CONFLICT, "no-canary", message),
            RegistryError::CanaryRunning { .. } => {
                Self::new(StatusCode::CONFLICT, "canary-running", message)
            }
            RegistryError::CanaryNeedsApproval(_) => {
                Self::new(StatusCode::CONFLICT, "approval-required", message)
            }
            RegistryError::Policy(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
            RegistryError::Store(e) => e.into(),
        }
    }
}

impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        let message = e.to_string();
        match e {
            ContentError::InvalidCollection
            | ContentError::InvalidItem { .. }
            | ContentError::TooMany(_) => Self::bad_request("invalid-content", message),
            ContentError::Duplicate(_) => {
                Self::new(StatusCode::CONFLICT, "duplicate-item", message)
            }
            ContentError::Store(e) => e.into(),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Invalid { .. } => Self::bad_request("invalid-service", message),
            ServiceError::NotFound => Self::not_found(message),
            ServiceError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            ServiceError::WrongState(_) => Self::new(StatusCode::CONFLICT, "wrong-state", message),
            ServiceError::Unreachable(_) => {
                Self::new(StatusCode::CONFLICT, "unreachable-keyword", message)
            }
            ServiceError::Store(e) => e.into(),
        }
    }
}

impl From<Blocked> for ApiError {
    fn from(b: Blocked) -> Self {
        match b {
            Blocked::Store(e) => e.into(),
            Blocked::NoticeCap(_) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, b.code(), b.to_string())
            }
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                other.code(),
                other.to_string(),
            ),
        }
    }
}

impl From<ComplianceError> for ApiError {
    fn from(e: ComplianceError) -> Self {
        let message = e.to_string();
        match e {
            ComplianceError::NotFound => Self::not_found(message),
            ComplianceError::WrongState(_) => {
                Self::new(StatusCode::CONFLICT, "wrong-state", message)
            }
            ComplianceError::Store(e) => e.into(),
            ComplianceError::Policy(_) | ComplianceError::QuietHours(_) => Self::internal(&message),
        }
    }
}
