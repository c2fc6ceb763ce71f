//! Request rate per API key (SECURITY.md, R-7.1: one partner's API calls never slow
//! or fail another's): a GCRA bucket per key, keyed by the key's SHA-256 (the
//! `governor` crate), refilled at `[http] rate_per_key_per_second` and holding up to
//! `[http] rate_burst` requests. Over it a request is answered 429 `rate-limited`
//! with `Retry-After` (whole seconds) and does nothing.
//!
//! A key is counted once per request, after it is known to be valid (the bearer
//! check in [`super::auth`]): an unknown key is 401 and leaves no state behind, so
//! the table holds at most one bucket per live key. Each key has its own bucket, so
//! one partner's burst never touches another partner's, nor the admin's.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::ApiError;
use axum::http::StatusCode;

/// The buckets of every key; `None` when `rate_per_key_per_second` is 0 (no limit).
#[derive(Debug)]
pub struct KeyRates {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
    /// Requests counted; every [`Self::SWEEP_EVERY`]th forgets idle keys.
    checks: AtomicU64,
}

/// Marks a request whose key was counted, so a second look at the caller (the
/// `Idempotency-Key` layer, then the handler) does not count it twice.
#[derive(Debug, Clone, Copy)]
pub(super) struct Counted;

impl KeyRates {
    /// How often the table of buckets is swept of idle keys, in requests.
    const SWEEP_EVERY: u64 = 10_000;

    /// `per_second` requests a second sustained, bursts up to `burst` (raised to
    /// `per_second` if lower); `per_second` 0 turns the limit off.
    pub fn new(per_second: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(per_second).map(|rate| {
            let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiter,
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }

    /// Count one request of the key with digest `key_hash`.
    ///
    /// # Errors
    /// 429 `rate-limited` with `Retry-After` when the key's bucket is empty.
    pub fn check(&self, key_hash: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % Self::SWEEP_EVERY == Self::SWEEP_EVERY - 1
        {
            self.forget_idle();
        }
        match limiter.check_key(&key_hash.to_string()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    format!(
                        "this API key is over its request rate ([http] rate_per_key_per_second); retry in {seconds} s"
                    ),
                )
                .retry_after(seconds))
            }
        }
    }

    /// Forget the buckets that are full again (idle keys), so revoked keys do not
    /// stay in the table.
    fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}
