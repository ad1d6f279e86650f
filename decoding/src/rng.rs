//! A seeded random stream for one session.
//!
//! Reproducibility is a feature of Tandem: the same config and seed must give the same
//! tokens on every machine and in every future version. So the generator is written out
//! here instead of borrowed from a crate whose stream may change between releases:
//! xoshiro256++ (Blackman & Vigna 2019), seeded through SplitMix64.
//!
//! Each party that draws randomness for a session gets its own stream derived from the
//! session seed (for example the draft node's sampler and the verifier's acceptance
//! test), so that neither consumes the other's numbers.

/// Well-known stream ids derived from a session seed.
pub mod stream {
    /// The draft node's sampler.
    pub const DRAFT: u64 = 1;
    /// The verifier's acceptance tests and correction/bonus samples.
    pub const VERIFY: u64 = 2;
    /// Plain (cloud-only or edge-only) generation.
    pub const GENERATE: u64 = 3;
}

/// xoshiro256++ with SplitMix64 seeding: fast, 2²⁵⁶−1 period, stable forever.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRng {
    s: [u64; 4],
}

/// One step of SplitMix64 (Steele, Lea & Flood 2014): the recommended seeder for xoshiro.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SessionRng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let s = [
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
            splitmix64(&mut sm),
        ];
        // SplitMix64 never yields four zeros in a row, so the all-zero state is impossible.
        Self { s }
    }

    /// An independent stream `stream` of the session with seed `seed` (see [`stream`]).
    pub fn for_stream(seed: u64, stream: u64) -> Self {
        let mut sm = stream ^ 0xD1B5_4A32_D192_ED03;
        Self::new(seed ^ splitmix64(&mut sm))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform number in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_matches_reference_vector() {
        // First outputs of SplitMix64 from state 0, as published with the reference C
        // implementation (prng.di.unimi.it/splitmix64.c) and quoted by many ports.
        let mut state = 0u64;
        assert_eq!(splitmix64(&mut state), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(&mut state), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_stream_different_seed_different_stream() {
        let a: Vec<u64> = (0..8)
            .scan(SessionRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..8)
            .scan(SessionRng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let c: Vec<u64> = (0..8)
            .scan(SessionRng::new(8), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let d = SessionRng::for_stream(7, stream::DRAFT).next_u64();
        let e = SessionRng::for_stream(7, stream::VERIFY).next_u64();
        assert_ne!(d, e);
    }

    #[test]
    fn uniform_is_uniform_on_sixteen_bins() {
        // Chi-square with 15 degrees of freedom; 37.70 is the 0.999 quantile.
        let mut rng = SessionRng::new(42);
        let n = 160_000;
        let mut bins = [0u32; 16];
        for _ in 0..n {
            let u = rng.uniform();
            assert!((0.0..1.0).contains(&u));
            bins[(u * 16.0) as usize] += 1;
        }
        let expected = n as f64 / 16.0;
        let chi2: f64 = bins
            .iter()
            .map(|&o| (o as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 37.70, "chi2 = {chi2}");
    }
}
