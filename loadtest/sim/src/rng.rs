//! A small seeded generator (SplitMix64): reproducible, no dependency.

/// SplitMix64: good enough to pick which messages fail, and seedable.
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// A generator that always yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        SeededRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p` (0.0 never draws true, 1.0 always does).
    pub fn chance(&mut self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_draws_and_rate_is_roughly_right() {
        let draws = |seed| {
            let mut r = SeededRng::new(seed);
            (0..10_000).filter(|_| r.chance(0.25)).count()
        };
        assert_eq!(draws(7), draws(7));
        let hits = draws(7);
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let mut r = SeededRng::new(1);
        assert!((0..100).all(|_| !r.chance(0.0)) && (0..100).all(|_| r.chance(1.0)));
    }
}
