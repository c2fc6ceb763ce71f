//! The one timestamp format of the API (issue 14 item 1, R-2.8): RFC 3339 in UTC
//! with milliseconds and `Z`, e.g. `2026-11-30T03:12:00.123Z`. Calendar days are
//! `YYYY-MM-DD` and months `YYYY-MM` (see `crate::clock`).
//!
//! The store keeps Unix milliseconds; answers serialize them through this module:
//! `#[serde(serialize_with = "crate::api::time::ms")]` on an `i64` field,
//! `crate::api::time::opt_ms` on an `Option<i64>`. Inputs parse with [`parse`].

use jiff::Timestamp;
use serde::Serializer;

/// `ms` (Unix milliseconds) as `2026-11-30T03:12:00.123Z`.
pub fn format(ms: i64) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        // Out of jiff's range (years beyond ±9999): say so rather than invent.
        Err(_) => format!("invalid:{ms}"),
    }
}

/// An RFC 3339 timestamp with an offset (`Z` or `+08:00`) as Unix milliseconds.
///
/// # Errors
/// A sentence saying what is wrong, for the route's 400.
pub fn parse(s: &str) -> Result<i64, String> {
    let ts: Timestamp = s.trim().parse().map_err(|e| {
        format!("`{s}` is not an RFC 3339 time with an offset (e.g. 2026-11-30T03:12:00.000Z): {e}")
    })?;
    Ok(ts.as_millisecond())
}

/// Serialize Unix milliseconds as RFC 3339 (`serialize_with`).
///
/// # Errors
/// Those of the serializer.
#[allow(clippy::trivially_copy_pass_by_ref)]
pub fn ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format(*ms))
}

/// Serialize optional Unix milliseconds as RFC 3339 or `null` (`serialize_with`).
///
/// # Errors
/// Those of the serializer.
#[allow(clippy::ref_option)]
pub fn opt_ms<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format(*ms)),
        None => s.serialize_none(),
    }
}

/// Serialize as RFC 3339, read back either RFC 3339 or Unix milliseconds (for
/// documents stored before this format): `#[serde(with = "crate::api::time::rfc3339")]`.
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// # Errors
    /// Those of the serializer.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        super::ms(ms, s)
    }

    /// # Errors
    /// Neither a number nor an RFC 3339 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Ms(i64),
            Text(String),
        }
        match Either::deserialize(d)? {
            Either::Ms(ms) => Ok(ms),
            Either::Text(t) => super::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_format_with_milliseconds_and_z() {
        assert_eq!(format(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format(1_795_921_920_123), "2026-11-29T03:12:00.123Z");
        assert_eq!(
            parse("2026-11-29T11:12:00.123+08:00"),
            Ok(1_795_921_920_123)
        );
        assert_eq!(parse(&format(1_795_921_920_123)), Ok(1_795_921_920_123));
        assert!(parse("2026-11-29 08:32").is_err());
    }
}
