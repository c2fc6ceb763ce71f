//! Why an MT (or a push) may not be queued: the refusal every rule of the gate
//! gives. A plain type, apart from the rules that
//! produce it, so the outbox's error can carry it without depending on them.

use crate::services::ServiceError;
use crate::store::StoreError;

/// Why an MT (or a push) may not be queued.
#[derive(Debug, thiserror::Error)]
pub enum Blocked {
    #[error("the partner is {0}; nothing of it may be sent")]
    PartnerNotActive(String),
    #[error("the service is {0}; only approved services send")]
    ServiceNotApproved(String),
    #[error("no such service")]
    UnknownService,
    #[error("content policy: {rule}: {detail}")]
    Policy { rule: &'static str, detail: String },
    #[error("no opt-in: {0}")]
    NoOptIn(String),
    #[error("the subscription reached this month's cap of {0} messages")]
    MonthlyCap(i64),
    #[error("the partner reached today's cap of {0} messages")]
    DailyCap(i64),
    #[error("the number received today's cap of {0} platform notices it did not ask for")]
    NoticeCap(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for Blocked {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(e.into())
    }
}

impl From<ServiceError> for Blocked {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Store(s) => Self::Store(s),
            ServiceError::NotFound => Self::UnknownService,
            other => Self::Store(StoreError::Corrupt(other.to_string())),
        }
    }
}

impl Blocked {
    /// A short machine-readable code for counters and API errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::PartnerNotActive(_) => "partner-suspended",
            Self::ServiceNotApproved(_) => "service-not-approved",
            Self::UnknownService => "unknown-service",
            Self::Policy { .. } => "policy-violation",
            Self::NoOptIn(_) => "no-opt-in",
            Self::MonthlyCap(_) => "monthly-cap",
            Self::DailyCap(_) => "daily-cap",
            Self::NoticeCap(_) => "notice-cap",
            Self::Store(_) => "store",
        }
    }
}
