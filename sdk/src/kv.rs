//! The partner's own key-value store: what a module remembers between calls.
//!
//! Keys are strings of 1–256 bytes, shared by all modules of one partner and
//! invisible to every other partner. Values are bytes; [`get_string`] and
//! [`set_string`] store text, and [`incr`] keeps decimal counters. Every function
//! returns a [`KvError`] when the store refuses, which converts to
//! [`ModuleError::HostFailure`](crate::ModuleError::HostFailure) with `?`.
//!
//! Prefix keys by what they hold (`score:`, `answered:2025-03-01:`…): [`list_keys`]
//! lists keys by prefix, in byte order.
//!
//! ```no_run
//! use tongdao_sdk::{kv, ModuleError};
//!
//! fn remember_name(subscriber: &str, name: &str) -> Result<(), ModuleError> {
//!     kv::set_string(&format!("name:{subscriber}"), name)?;
//!     let visits = kv::incr(&format!("visits:{subscriber}"), 1)?;
//!     assert!(visits >= 1);
//!     Ok(())
//! }
//! # let _ = remember_name;
//! ```

use crate::KvError;
use crate::bindings::tongdao::partner::kv as host;

/// The value under `key`, if any.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, KvError> {
    host::get(key)
}

/// Store `value` under `key`, replacing any old value.
pub fn set(key: &str, value: &[u8]) -> Result<(), KvError> {
    host::set(key, value)
}

/// Remove `key`; returns whether it existed.
pub fn delete(key: &str) -> Result<bool, KvError> {
    host::delete(key)
}

/// Add `delta` (may be negative) to the decimal integer stored under `key`, 0 if
/// absent, and return the new value. Atomic: two calls at once never lose an
/// update. [`KvError::WrongType`] if the value is not a decimal integer.
pub fn incr(key: &str, delta: i64) -> Result<i64, KvError> {
    host::incr(key, delta)
}

/// Up to `limit` keys starting with `prefix`, in byte order, starting after
/// `after` if given. To page, pass the last key of one page as `after` of the
/// next; [`list_all_keys`] does that for you.
pub fn list_keys(prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, KvError> {
    host::list_keys(prefix, after, limit)
}

/// All keys starting with `prefix`, in byte order, but at most `max` of them,
/// fetched page by page.
pub fn list_all_keys(prefix: &str, max: usize) -> Result<Vec<String>, KvError> {
    const PAGE: usize = 100;
    let mut keys: Vec<String> = Vec::new();
    while keys.len() < max {
        let want = (max - keys.len()).min(PAGE);
        let page = list_keys(prefix, keys.last().map(String::as_str), want as u32)?;
        let done = page.len() < want;
        keys.extend(page);
        if done {
            break;
        }
    }
    Ok(keys)
}

/// The text under `key`, if any. [`KvError::WrongType`] if the value is not
/// UTF-8.
pub fn get_string(key: &str) -> Result<Option<String>, KvError> {
    get(key)?
        .map(|bytes| String::from_utf8(bytes).map_err(|_| KvError::WrongType))
        .transpose()
}

/// Store the text `value` under `key`, replacing any old value.
pub fn set_string(key: &str, value: &str) -> Result<(), KvError> {
    set(key, value.as_bytes())
}

/// The integer under `key` (as kept by [`incr`]), if any. [`KvError::WrongType`]
/// if the value is not a decimal integer.
pub fn get_i64(key: &str) -> Result<Option<i64>, KvError> {
    get(key)?.map(|bytes| parse_i64(&bytes)).transpose()
}

fn parse_i64(bytes: &[u8]) -> Result<i64, KvError> {
    core::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or(KvError::WrongType)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters() {
        assert_eq!(parse_i64(b"42"), Ok(42));
        assert_eq!(parse_i64(b"-7"), Ok(-7));
        assert_eq!(parse_i64(b"x"), Err(KvError::WrongType));
        assert_eq!(parse_i64(&[0xff]), Err(KvError::WrongType));
    }
}
