//! The login digests of `CMPP_CONNECT` (CMPP 3.0 §8.4.1.1–8.4.1.2; the same in 2.0 but
//! for the width of `Status`).
//!
//! * `AuthenticatorSource = MD5(Source_Addr + 9 × 0x00 + shared secret + timestamp)`,
//!   the timestamp as its 10 digits `MMDDHHMMSS`.
//! * `AuthenticatorISMG = MD5(Status + AuthenticatorSource + shared secret)`, `Status` as
//!   it is on the wire: 4 octets big-endian in 3.0, 1 octet in 2.0.

use md5::{Digest, Md5};

use crate::pdu::Version;
use crate::time::timestamp_digits;

/// `AuthenticatorSource` for `source_addr` (the SP_Id), `secret` and the connect
/// `timestamp` (MMDDHHMMSS as an integer).
pub fn authenticator_source(source_addr: &str, secret: &str, timestamp: u32) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(source_addr.as_bytes());
    h.update([0u8; 9]);
    h.update(secret.as_bytes());
    h.update(timestamp_digits(timestamp).as_bytes());
    h.finalize().into()
}

/// `AuthenticatorISMG` for a `status` answered to `authenticator_source`.
pub fn authenticator_ismg(
    status: u32,
    authenticator_source: &[u8; 16],
    secret: &str,
    version: Version,
) -> [u8; 16] {
    let mut h = Md5::new();
    match version {
        Version::V30 => h.update(status.to_be_bytes()),
        // A 2.0 status is one octet; larger values cannot be sent at all.
        Version::V20 => h.update([status.min(255) as u8]),
    }
    h.update(authenticator_source);
    h.update(secret.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_digest_covers_the_spec_concatenation() {
        // MD5("901234" + 9 NULs + "secret" + "0101075959"), computed independently with
        // Python's hashlib.
        let d = authenticator_source("901234", "secret", 101_075_959);
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, EXPECTED_SOURCE);
        assert_ne!(d, authenticator_source("901234", "secreT", 101_075_959));
        assert_ne!(d, authenticator_source("901234", "secret", 101_075_958));
    }

    const EXPECTED_SOURCE: &str = "dba0f3f6fa8295147b8346a7d14e51a5";
}
