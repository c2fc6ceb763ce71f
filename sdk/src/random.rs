//! Randomness from the host.
//!
//! Use it for things that may differ from call to call (a random joke on request).
//! A bulletin should usually be deterministic instead (derived from the push's
//! date), so that a push asked for twice gets the same text.
//!
//! ```no_run
//! use tongdao_sdk::random;
//!
//! let dice = random::below(6) + 1;
//! let greeting = random::choose(&["你好", "您好", "嗨"]).copied().unwrap_or("你好");
//! # let _ = (dice, greeting);
//! ```

use crate::bindings::tongdao::partner::random as host;

/// A uniformly random 64-bit number.
pub fn next_u64() -> u64 {
    host::next_u64()
}

/// A uniformly random number in `0..n` (no modulo bias). Returns 0 when `n` is 0.
pub fn below(n: u64) -> u64 {
    below_with(n, next_u64)
}

/// A uniformly chosen element of `items`, `None` if it is empty.
pub fn choose<T>(items: &[T]) -> Option<&T> {
    if items.is_empty() {
        return None;
    }
    items.get(below(items.len() as u64) as usize)
}

/// Lemire's multiply-and-reject method: `n * x >> 64` is in `0..n`, and rejecting
/// the few `x` whose low half falls below `2^64 mod n` makes it exactly uniform.
fn below_with(n: u64, mut next: impl FnMut() -> u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let threshold = n.wrapping_neg() % n; // 2^64 mod n
    loop {
        let product = u128::from(next()) * u128::from(n);
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::below_with;

    /// A small deterministic generator (SplitMix64) standing in for the host.
    fn splitmix(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn stays_in_range_and_covers_it() {
        let mut next = splitmix(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            let v = below_with(7, &mut next);
            assert!(v < 7);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
        assert_eq!(below_with(0, &mut next), 0);
        assert_eq!(below_with(1, &mut next), 0);
        assert!(below_with(u64::MAX, &mut next) < u64::MAX);
    }

    #[test]
    fn rejects_biased_draws() {
        // For n = 3, 2^64 mod 3 = 1: a draw of 0 is rejected, the next one is used.
        let mut draws = [0u64, u64::MAX].into_iter();
        assert_eq!(below_with(3, || draws.next().unwrap_or(0)), 2);
    }
}
