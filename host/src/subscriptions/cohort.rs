//! The canary cohort of a subscription (issue 17 item 4): stable for the life of
//! the subscription and computable by anyone from its id alone. Subscription `id`
//! is in a canary of `p` percent when
//!
//! ```text
//! bucket(id) = ((id × 2654435761) mod 2³²) × 100 div 2³²      (0 ‥ 99)
//! in cohort  ⇔ bucket(id) < p
//! ```
//!
//! (Fibonacci hashing of the id: consecutive ids spread evenly over the buckets.)
//! The rule is written here twice, in Rust ([`bucket`], [`in_cohort`]) for calls
//! with one subscription and in SQL ([`cohort_sql`]) for the fan-out; the canary
//! test of `tests/tests/lifecycle.rs` holds them equal, MT by MT. Raising the
//! percentage only adds subscriptions to the cohort.

/// The multiplier of the hash (Knuth's 2³² / φ).
const MULTIPLIER: u64 = 2_654_435_761;

/// The bucket (0‥99) of subscription `id`.
pub fn bucket(subscription_id: i64) -> u32 {
    let id = u64::try_from(subscription_id).unwrap_or(0);
    let hashed = id.wrapping_mul(MULTIPLIER) & 0xffff_ffff;
    u32::try_from((hashed * 100) >> 32).unwrap_or(99)
}

/// Whether subscription `id` is in a canary of `percent` percent.
pub fn in_cohort(subscription_id: i64, percent: u32) -> bool {
    bucket(subscription_id) < percent
}

/// [`in_cohort`] as an SQL predicate on the integer expression `id` (both
/// backends; exact for ids below 3.4 × 10⁹, where the product fits 64 bits).
pub fn cohort_sql(id: &str, percent: u32) -> String {
    format!("((({id}) * {MULTIPLIER}) % 4294967296) * 100 / 4294967296 < {percent}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenth_of_consecutive_ids_and_growing_with_the_percentage() {
        let ten: Vec<i64> = (1..=1000).filter(|id| in_cohort(*id, 10)).collect();
        assert!((95..=105).contains(&ten.len()), "{}", ten.len());
        // Raising the percentage keeps every member.
        assert!(ten.iter().all(|id| in_cohort(*id, 25)));
        assert!((1..=1000).all(|id| !in_cohort(id, 0) && in_cohort(id, 100)));
    }
}
