//! Exact money arithmetic: integer fen, rates in basis points, products in
//! `i128` so nothing overflows. One rounding rule everywhere: **round half away from
//! zero** (for the positive amounts of a statement, half a fen rounds up), applied
//! once per figure; where one amount is divided among several parties, the parts
//! are found by the **largest-remainder** method, so they add up to the whole to
//! the fen and no fen is created or lost.

/// Basis points in one whole (100.00 %).
pub const BP: i64 = 10_000;

/// `amount × num / den`, rounded half away from zero. `den` must be positive.
pub fn mul_div_round(amount: i64, num: i64, den: i64) -> i64 {
    let product = i128::from(amount) * i128::from(num);
    let den = i128::from(den.max(1));
    let (q, r) = (product / den, product % den);
    let rounded = if 2 * r.abs() >= den {
        q + product.signum()
    } else {
        q
    };
    i64::try_from(rounded).unwrap_or(if rounded < 0 { i64::MIN } else { i64::MAX })
}

/// `amount × bp / 10000`, rounded half away from zero.
pub fn apply_bp(amount: i64, bp: i64) -> i64 {
    mul_div_round(amount, bp, BP)
}

/// The mean of two figures, rounded half away from zero.
pub fn mean(a: i64, b: i64) -> i64 {
    mul_div_round(a.saturating_add(b), 1, 2)
}

/// Whether `other` differs from `base` by more than `threshold_bp` of `base`
/// . With `base = 0` any difference is more.
pub fn differs_beyond(base: i64, other: i64, threshold_bp: i64) -> bool {
    let diff = (i128::from(other) - i128::from(base)).abs();
    diff * i128::from(BP) > i128::from(threshold_bp) * i128::from(base).abs()
}

/// The difference of `other` from `base` in basis points of `base`, rounded half
/// away from zero; `None` when `base` is 0 and they differ.
pub fn difference_bp(base: i64, other: i64) -> Option<i64> {
    if base == 0 {
        return (other == 0).then_some(0);
    }
    let diff = i128::from(other) - i128::from(base);
    let den = i128::from(base).abs();
    let product = diff * i128::from(BP);
    let (q, r) = (product / den, product % den);
    let rounded = if 2 * r.abs() >= den {
        q + product.signum()
    } else {
        q
    };
    i64::try_from(rounded).ok()
}

/// Divide `total` among parties in proportion to non-negative `weights` by the
/// largest-remainder method: the parts add up to `total` exactly; ties go to the
/// earlier party. All weights zero: everything goes to the first party.
pub fn allocate(total: i64, weights: &[i64]) -> Vec<i64> {
    if weights.is_empty() {
        return Vec::new();
    }
    let sum: i128 = weights.iter().map(|w| i128::from((*w).max(0))).sum();
    let mut parts = vec![0i64; weights.len()];
    if sum == 0 {
        parts[0] = total;
        return parts;
    }
    let magnitude = i128::from(total).abs();
    let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
    let mut given: i128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let exact = magnitude * i128::from((*w).max(0));
        let floor = exact / sum;
        parts[i] = i64::try_from(floor).unwrap_or(i64::MAX);
        given += floor;
        remainders.push((exact % sum, i));
    }
    // Largest remainder first; equal remainders in party order.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut left = magnitude - given;
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    if total < 0 {
        for p in &mut parts {
            *p = -*p;
        }
    }
    parts
}

/// Fen as yuan with two decimals (`-1234.05`), for documents a person reads.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = i128::from(fen).abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Basis points as a percentage with two decimals (`12.50%`).
pub fn percent(bp: i64) -> String {
    let sign = if bp < 0 { "-" } else { "" };
    let abs = i128::from(bp).abs();
    format!("{sign}{}.{:02}%", abs / 100, abs % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(mul_div_round(5, 1, 2), 3);
        assert_eq!(mul_div_round(-5, 1, 2), -3);
        assert_eq!(mul_div_round(4, 1, 3), 1);
        assert_eq!(apply_bp(12_345, 600), 741); // 740.7
        assert_eq!(mean(101, 102), 102);
        assert_eq!(yuan(-123_405), "-1234.05");
        assert_eq!(percent(1250), "12.50%");
    }

    #[test]
    fn thresholds_are_strict() {
        // 5.00 % of 10,000 is 500: 500 is not more, 501 is.
        assert!(!differs_beyond(10_000, 10_500, 500));
        assert!(differs_beyond(10_000, 10_501, 500));
        assert!(differs_beyond(0, 1, 500));
        assert_eq!(difference_bp(10_000, 10_501), Some(501));
    }

    #[test]
    fn allocation_adds_up() {
        assert_eq!(allocate(100, &[1, 1, 1]), vec![34, 33, 33]);
        assert_eq!(allocate(-100, &[1, 1, 1]), vec![-34, -33, -33]);
        assert_eq!(allocate(7, &[0, 0]), vec![7, 0]);
    }
}
