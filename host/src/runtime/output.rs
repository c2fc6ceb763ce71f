//! The host's own types for what goes into and comes out of a module, converted
//! from the WIT types of the version the module was built against (see
//! [`super::contract`]), and checked against the output limits.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::limits::CallError;
use crate::runtime::RuntimeConfig;

/// What a module says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleDescription {
    pub name: String,
    pub version: String,
    pub description: String,
    pub services: Vec<String>,
}

impl ModuleDescription {
    /// The rules the WIT states for `module-info`.
    pub fn check(&self) -> Result<(), String> {
        let name_ok = (1..=64).contains(&self.name.len())
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(format!(
                "name `{}` must be 1-64 characters of a-z, 0-9 and '-'",
                self.name
            ));
        }
        if self.version.is_empty() || self.version.len() > 32 {
            return Err("version must be 1-32 bytes".into());
        }
        if self.description.len() > 512 {
            return Err("description must be at most 512 bytes".into());
        }
        if self.services.len() > 32 || self.services.iter().any(|s| s.is_empty() || s.len() > 21) {
            return Err("services must be at most 32 codes of 1-21 bytes".into());
        }
        Ok(())
    }
}

/// Why the host asks for a bulletin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BulletinRequest {
    pub service: String,
    pub push_id: String,
    /// Local date in the platform time zone, `YYYY-MM-DD`.
    pub date: String,
}

/// The content of one push, checked against the output limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BulletinContent {
    /// The same text for everyone.
    Single { text: String },
    /// One text per value of `attribute`.
    Keyed {
        attribute: String,
        variants: Vec<(String, String)>,
        fallback: Option<String>,
    },
    /// One text per operator (`tongdao:partner@1.1.0`): `variants` are (operator,
    /// text) with the operator as [`crate::relay::numbering`] names it
    /// (`china-mobile`, `china-unicom`, `china-telecom`); a subscriber's operator
    /// is the one its number block belongs to.
    PerOperator {
        variants: Vec<(String, String)>,
        fallback: Option<String>,
    },
}

impl BulletinContent {
    /// `self` if it keeps the output limits and the WIT's rules.
    pub(super) fn checked(self, limits: &RuntimeConfig) -> Result<Self, CallError> {
        self.check(limits)?;
        Ok(self)
    }

    fn check(&self, limits: &RuntimeConfig) -> Result<(), CallError> {
        let total = self.texts().map(str::len).sum::<usize>();
        if total > limits.max_output_bytes {
            return Err(CallError::OutputLimit {
                what: "bulletin text (bytes)",
                limit: limits.max_output_bytes,
                actual: total,
            });
        }
        if self.texts().any(|t| t.trim().is_empty()) {
            return Err(CallError::InvalidOutput("a bulletin text is empty".into()));
        }
        if let Self::Keyed {
            attribute,
            variants,
            ..
        } = self
        {
            if variants.len() > limits.max_variants {
                return Err(CallError::OutputLimit {
                    what: "number of variants",
                    limit: limits.max_variants,
                    actual: variants.len(),
                });
            }
            if !super::host::valid_attribute_name(attribute) {
                return Err(CallError::InvalidOutput(format!(
                    "`{attribute}` is not a valid attribute name"
                )));
            }
        }
        if let Self::Keyed { variants, .. } | Self::PerOperator { variants, .. } = self {
            let mut seen = HashSet::new();
            if let Some((key, _)) = variants.iter().find(|(key, _)| !seen.insert(key.as_str())) {
                return Err(CallError::InvalidOutput(format!(
                    "variant key `{key}` appears twice"
                )));
            }
        }
        Ok(())
    }

    /// Every text in the bulletin.
    pub fn texts(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        match self {
            Self::Single { text } => Box::new(std::iter::once(text.as_str())),
            Self::Keyed {
                variants, fallback, ..
            }
            | Self::PerOperator { variants, fallback } => Box::new(
                variants
                    .iter()
                    .map(|(_, t)| t.as_str())
                    .chain(fallback.as_deref()),
            ),
        }
    }

    /// The text for a subscriber whose attribute (per-operator: operator) has
    /// `value` (None: not set).
    pub fn text_for(&self, value: Option<&str>) -> Option<&str> {
        match self {
            Self::Single { text } => Some(text),
            Self::Keyed {
                variants, fallback, ..
            }
            | Self::PerOperator { variants, fallback } => value
                .and_then(|v| {
                    variants
                        .iter()
                        .find(|(k, _)| k == v)
                        .map(|(_, t)| t.as_str())
                })
                .or(fallback.as_deref()),
        }
    }
}

/// Check a reply (on-mo, on-subscribe, on-unsubscribe) against the output limit.
pub(super) fn checked_reply(
    reply: Option<String>,
    limits: &RuntimeConfig,
) -> Result<Option<String>, CallError> {
    match reply {
        Some(text) if text.len() > limits.max_output_bytes => Err(CallError::OutputLimit {
            what: "reply text (bytes)",
            limit: limits.max_output_bytes,
            actual: text.len(),
        }),
        Some(text) if text.trim().is_empty() => Ok(None),
        other => Ok(other),
    }
}

/// A user's message routed to a module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MoMessage {
    pub subscriber: String,
    pub service: String,
    pub text: String,
    pub received_at_ms: i64,
}

/// A user joined (`joined`) or left a service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubscriptionChange {
    pub subscriber: String,
    pub service: String,
    pub joined: bool,
}

impl SubscriptionChange {
    /// The export it calls: `on-subscribe` or `on-unsubscribe`.
    pub fn export(&self) -> &'static str {
        if self.joined {
            "on-subscribe"
        } else {
            "on-unsubscribe"
        }
    }
}
