//! Deterministic randomness without shared state.
//!
//! Every random decision of the crate (samplers, curricula, augmentation, text choices) is a pure
//! function of `(seed, epoch, position)`: a counter-based generator (the SplitMix64 output function applied to a Weyl sequence, i.e. the
//! `n`-th SplitMix64 output for a given key) instead of one RNG advanced in order. This is what makes
//! resuming at any position, sharding across ranks and prefetching unable to change the sequence.
//! Where an algorithm needs a stream (Fisher-Yates shuffles), a [`SplitMix64`] is seeded from such a
//! derived key.

/// The 64-bit golden-ratio increment of SplitMix64 (Weyl sequence step).
pub const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's "Mix13"): a bijective avalanche of 64 bits.
#[inline(always)]
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A key for one independent stream, derived from a seed and a path of integers
/// (e.g. `[TAG, epoch, source]`). Different paths give unrelated keys.
pub fn derive_key(seed: u64, path: &[u64]) -> u64 {
    let mut k = mix64(seed ^ 0x6A09_E667_F3BC_C908);
    for &p in path {
        k = mix64(k ^ mix64(p.wrapping_add(GOLDEN)));
    }
    k
}

/// The `counter`-th output of the stream `key`: random access, no state.
#[inline(always)]
pub fn at(key: u64, counter: u64) -> u64 {
    mix64(key.wrapping_add(counter.wrapping_mul(GOLDEN)))
}

/// Maps a uniform 64-bit word to `[0, n)` by multiply-shift (Lemire). The bias is below
/// `n / 2^64`, far under anything a chi-square test (or a training run) can see.
#[inline(always)]
pub fn bounded(x: u64, n: u64) -> u64 {
    ((x as u128 * n as u128) >> 64) as u64
}

/// A uniform double in `[0, 1)` from the top 53 bits.
#[inline(always)]
pub fn unit_f64(x: u64) -> f64 {
    (x >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Sequential SplitMix64, for algorithms that consume a stream (shuffles).
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(key: u64) -> Self {
        SplitMix64 { state: key }
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Exactly uniform in `[0, n)` (Lemire's nearly divisionless rejection); `n > 0`.
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = self.next_u64() as u128 * n as u128;
        let mut lo = m as u64;
        if lo < n {
            let threshold = n.wrapping_neg() % n;
            while lo < threshold {
                m = self.next_u64() as u128 * n as u128;
                lo = m as u64;
            }
        }
        (m >> 64) as u64
    }
}

/// Fisher-Yates shuffle driven by a stream seeded from `key`.
pub fn shuffle<T>(items: &mut [T], key: u64) {
    let mut rng = SplitMix64::new(key);
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_stream_equals_sequential_stream() {
        let key = derive_key(7, &[1, 2]);
        let mut seq = SplitMix64::new(key);
        for i in 1..100u64 {
            assert_eq!(at(key, i), seq.next_u64());
        }
    }

    #[test]
    fn derived_keys_differ() {
        let a = derive_key(0, &[0, 1]);
        let b = derive_key(0, &[1, 0]);
        let c = derive_key(1, &[0, 1]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, derive_key(0, &[0, 1]));
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut rng = SplitMix64::new(3);
        let mut counts = [0u32; 7];
        for _ in 0..70_000 {
            counts[rng.below(7) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn shuffle_is_a_permutation_and_deterministic() {
        let mut a: Vec<u32> = (0..1000).collect();
        let mut b = a.clone();
        shuffle(&mut a, 11);
        shuffle(&mut b, 11);
        assert_eq!(a, b);
        assert_ne!(a, (0..1000).collect::<Vec<_>>());
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn bounded_and_unit() {
        assert_eq!(bounded(0, 10), 0);
        assert_eq!(bounded(u64::MAX, 10), 9);
        assert!(unit_f64(u64::MAX) < 1.0);
        assert_eq!(unit_f64(0), 0.0);
    }
}
