//! splitmix64: enough randomness for fault dice and reconnect jitter, no dependency.

/// A small deterministic generator of uniform `f64`s in `[0, 1)` (splitmix64). Shared by
/// the reconnect jitter and the protocol simulators' fault dice, so a seeded run is
/// reproducible.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// A generator started at `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value, uniform in `[0, 1)`.
    // An endless source of rolls, not an iterator: `Option` would only add unwraps.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}
