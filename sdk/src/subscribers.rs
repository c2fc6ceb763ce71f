//! Attributes the partner keeps per subscriber (e.g. `sign` = `aries`).
//!
//! An attribute remembers a user's choice, and a [`KeyedBulletin`](crate::KeyedBulletin)
//! picks each subscriber's text by one attribute. Names are 1–64 bytes of
//! `a-z0-9_-`; values up to 256 bytes. Failures are [`AttributeError`]s, which
//! convert to [`ModuleError::HostFailure`](crate::ModuleError::HostFailure) with `?`.
//!
//! ```no_run
//! use tongdao_sdk::{subscribers, Mo, ModuleError};
//!
//! fn on_mo(message: Mo) -> Result<Option<String>, ModuleError> {
//!     subscribers::set_attribute(&message.subscriber, "city", message.text.trim())?;
//!     let city = subscribers::get_attribute(&message.subscriber, "city")?;
//!     Ok(city.map(|c| format!("已记住您的城市：{c}")))
//! }
//! # let _ = on_mo;
//! ```

use crate::AttributeError;
use crate::bindings::tongdao::partner::subscribers as host;

/// The value of attribute `name` of `subscriber`, if set.
pub fn get_attribute(subscriber: &str, name: &str) -> Result<Option<String>, AttributeError> {
    host::get_attribute(subscriber, name)
}

/// Set attribute `name` of `subscriber` to `value`.
pub fn set_attribute(subscriber: &str, name: &str, value: &str) -> Result<(), AttributeError> {
    host::set_attribute(subscriber, name, value)
}
