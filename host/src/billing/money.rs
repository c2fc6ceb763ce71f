//! Exact money arithmetic: integer fen, rates in basis points, products in
//! `i128` so no intermediate overflows. One rounding rule everywhere: **round half
//! away from zero** (for the positive amounts of a statement, half a fen rounds up),
//! applied once per figure; where one amount is divided among several parties, the
//! parts are found by the **largest-remainder** method, so they add up to the whole
//! to the fen and no fen is created or lost.
//!
//! No figure ever wraps or saturates: every sum, difference, product and
//! percentage is checked, and a result outside `i64` fen is an [`Overflow`] naming
//! the figure, which callers turn into a clear error (`amount-out-of-range`).

/// Basis points in one whole (100.00 %).
pub const BP: i64 = 10_000;

/// A money figure would not fit in `i64` fen: `what` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the {what} is out of range: it does not fit in a 64-bit number of fen")]
pub struct Overflow {
    pub what: &'static str,
}

/// `Some(v)` or the named overflow: `checked("gross", a.checked_add(b))?`.
pub fn checked(what: &'static str, value: Option<i64>) -> Result<i64, Overflow> {
    value.ok_or(Overflow { what })
}

/// `a + b`, checked.
pub fn add(what: &'static str, a: i64, b: i64) -> Result<i64, Overflow> {
    checked(what, a.checked_add(b))
}

/// `a - b`, checked.
pub fn sub(what: &'static str, a: i64, b: i64) -> Result<i64, Overflow> {
    checked(what, a.checked_sub(b))
}

/// `a × b`, checked.
pub fn mul(what: &'static str, a: i64, b: i64) -> Result<i64, Overflow> {
    checked(what, a.checked_mul(b))
}

/// The sum of figures, checked.
pub fn sum(what: &'static str, values: impl IntoIterator<Item = i64>) -> Result<i64, Overflow> {
    values
        .into_iter()
        .try_fold(0i64, |acc, v| add(what, acc, v))
}

/// `n / den` of an `i128`, rounded half away from zero, back in `i64`.
fn round_div(what: &'static str, n: i128, den: i128) -> Result<i64, Overflow> {
    let den = den.max(1);
    let (q, r) = (n / den, n % den);
    let rounded = if 2 * r.abs() >= den {
        q + n.signum()
    } else {
        q
    };
    i64::try_from(rounded).map_err(|_| Overflow { what })
}

/// `amount × num / den`, rounded half away from zero. `den` must be positive.
pub fn mul_div_round(what: &'static str, amount: i64, num: i64, den: i64) -> Result<i64, Overflow> {
    round_div(
        what,
        i128::from(amount) * i128::from(num),
        i128::from(den.max(1)),
    )
}

/// `amount × bp / 10000`, rounded half away from zero.
pub fn apply_bp(what: &'static str, amount: i64, bp: i64) -> Result<i64, Overflow> {
    mul_div_round(what, amount, bp, BP)
}

/// The mean of two figures, rounded half away from zero.
pub fn mean(what: &'static str, a: i64, b: i64) -> Result<i64, Overflow> {
    round_div(what, i128::from(a) + i128::from(b), 2)
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
    let magnitude = i128::from(total).abs();
    let mut parts = vec![0i128; weights.len()];
    if sum == 0 {
        parts[0] = magnitude;
    } else {
        let mut remainders: Vec<(i128, usize)> = Vec::with_capacity(weights.len());
        let mut given: i128 = 0;
        for (i, w) in weights.iter().enumerate() {
            let exact = magnitude * i128::from((*w).max(0));
            parts[i] = exact / sum;
            given += parts[i];
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
    }
    // Every part is between 0 and |total| and carries total's sign, so it fits
    // in i64 (i64::MIN included).
    let sign = if total < 0 { -1 } else { 1 };
    parts
        .into_iter()
        .map(|p| i64::try_from(sign * p).unwrap_or(total))
        .collect()
}

/// Fen as yuan with two decimals (`-1234.05`), for documents a person reads.
pub fn yuan(fen: impl Into<i128>) -> String {
    let fen: i128 = fen.into();
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.abs();
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
        assert_eq!(mul_div_round("x", 5, 1, 2), Ok(3));
        assert_eq!(mul_div_round("x", -5, 1, 2), Ok(-3));
        assert_eq!(mul_div_round("x", 4, 1, 3), Ok(1));
        assert_eq!(apply_bp("x", 12_345, 600), Ok(741)); // 740.7
        assert_eq!(mean("x", 101, 102), Ok(102));
        assert_eq!(yuan(-123_405), "-1234.05");
        assert_eq!(percent(1250), "12.50%");
    }

    #[test]
    fn nothing_wraps_item2() {
        let over = Err(Overflow { what: "gross" });
        assert_eq!(add("gross", i64::MAX, 1), over);
        assert_eq!(sum("gross", [i64::MAX, i64::MAX]), over);
        assert_eq!(sub("gross", i64::MIN, 1), over);
        assert_eq!(mul("gross", i64::MAX / 2, 3), over);
        assert_eq!(apply_bp("gross", i64::MAX, 20_000), over);
        assert_eq!(mean("x", i64::MAX, i64::MAX), Ok(i64::MAX));
        assert_eq!(allocate(i64::MIN, &[1]), vec![i64::MIN]);
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
