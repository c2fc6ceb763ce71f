//! Webhook signatures and the address rule (R-2.7).
//!
//! A delivery carries `Tongdao-Timestamp: <Unix seconds>` and
//! `Tongdao-Signature: v1=<hex HMAC-SHA256(secret, timestamp + "." + body)>`, one
//! `v1=` per signing secret (two during a rotation, newest first, comma-separated).
//! A receiver accepts the delivery when any of them matches a secret it holds and
//! the timestamp is recent.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// `hex(HMAC-SHA256(secret, "{timestamp}.{body}"))`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The `Tongdao-Signature` header value for `secrets` (newest first).
pub fn header(secrets: &[String], timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| format!("v1={}", signature(s, timestamp, body)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Does `header` carry a `v1=` signature of `body` at `timestamp` made with
/// `secret`? (What a receiver runs; compared in constant time.)
pub fn verify(secret: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let Ok(mut mac) = HmacSha256::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    header
        .split(',')
        .filter_map(|part| part.trim().strip_prefix("v1="))
        .filter_map(|h| hex::decode(h).ok())
        .any(|given| {
            given.len() == expected.len()
                && given
                    .iter()
                    .zip(expected.iter())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0
        })
}

/// Is `ip` an address on the public internet? Loopback, private (RFC 1918, ULA),
/// link-local, shared (100.64/10), unspecified, broadcast, documentation,
/// benchmarking and multicast addresses are not; an IPv4-mapped IPv6 address is
/// judged as its IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (18..20).contains(&b))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// R-2.7: the signature is HMAC-SHA256 over `timestamp.body`; both secrets of a
    /// rotation verify, nothing else does.
    #[test]
    fn signatures_verify_with_each_signing_secret_only() {
        let body = br#"{"id":1}"#;
        let header = header(&["new".into(), "old".into()], 1_700_000_000, body);
        assert!(header.starts_with("v1=") && header.contains(",v1="));
        assert!(verify("new", 1_700_000_000, body, &header));
        assert!(verify("old", 1_700_000_000, body, &header));
        assert!(!verify("other", 1_700_000_000, body, &header));
        assert!(!verify("new", 1_700_000_001, body, &header));
        assert!(!verify("new", 1_700_000_000, b"{\"id\":2}", &header));
        assert_eq!(signature("k", 0, b"x"), signature("k", 0, b"x"));
        assert_eq!(signature("k", 0, b"x").len(), 64);
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(
                !is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
        for ip in ["8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1"] {
            assert!(
                is_public(ip.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
                "{ip}"
            );
        }
    }
}
