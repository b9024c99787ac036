//! Exact per-epoch quotas: source `i` gets `largest_remainder(w_i / sum(w) * n)` of the epoch's
//! `n` positions, and the positions are shuffled per epoch. With weights proportional to the
//! source sizes, `n` = their total and draws without replacement, an epoch is a permutation of
//! every sample exactly once (what `DistributedSampler` over a `ConcatDataset` gives).
//!
//! The shuffle is a keyed bijection of `0..n` evaluated per position (a 4-round Feistel network
//! with cycle walking), so any position of any epoch is found in O(1) without materialising the
//! epoch, which keeps chunked generation, resume and sharding as cheap as in the other modes.

use crate::rng::mix64;

/// Largest-remainder apportionment of `n` positions by `weights` (zero weights get none; ties
/// in the remainder go to the lower index).
pub fn quotas(weights: &[f64], n: u64) -> Vec<u64> {
    let total: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut counts: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let assigned: u64 = counts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).filter(|&i| weights[i] > 0.0).collect();
    order.sort_by(|&a, &b| {
        let (ra, rb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        rb.partial_cmp(&ra)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    for &i in order
        .iter()
        .cycle()
        .take(n.saturating_sub(assigned) as usize)
    {
        counts[i] += 1;
    }
    counts
}

/// Cumulative quotas: source `s` owns shuffled positions `cum[s - 1] .. cum[s]`.
pub fn cumulative(counts: &[u64]) -> Vec<u64> {
    counts
        .iter()
        .scan(0u64, |acc, &c| {
            *acc += c;
            Some(*acc)
        })
        .collect()
}

/// A keyed permutation of `0..n`: `permute(i, n, key)` for `i < n`.
pub fn permute(i: u64, n: u64, key: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2).max(1);
    let mask = (1u64 << half) - 1;
    let round = |x: u64| -> u64 {
        let (mut l, mut r) = (x >> half, x & mask);
        for k in 0..4u64 {
            let f = mix64(key ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ r) & mask;
            (l, r) = (r, l ^ f);
        }
        (l << half) | r
    };
    let mut y = round(i);
    while y >= n {
        y = round(y); // cycle walking: the Feistel network permutes 0..2^(2 half)
    }
    y
}

/// The source at shuffled position `i` of an epoch of `n` positions.
pub fn source_at(cum: &[u64], i: u64, key: u64) -> usize {
    let n = *cum.last().unwrap_or(&0);
    let j = permute(i % n.max(1), n, key);
    cum.partition_point(|&c| c <= j)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_remainder_by_hand() {
        // 10 x [0.5, 0.3, 0.2] = [5, 3, 2] exactly
        assert_eq!(quotas(&[0.5, 0.3, 0.2], 10), vec![5, 3, 2]);
        // 7 x [1/3, 1/3, 1/3] = 2.33 each: floors 2, 2, 2; the one left goes to index 0
        assert_eq!(quotas(&[1.0, 1.0, 1.0], 7), vec![3, 2, 2]);
        // 11 x [0.62, 0.38, 0] = 6.82, 4.18: floors 6, 4; remainder to the larger fraction
        assert_eq!(quotas(&[0.62, 0.38, 0.0], 11), vec![7, 4, 0]);
        // proportional to sizes over their total: the sizes themselves
        assert_eq!(quotas(&[17.0, 5.0, 9.0], 31), vec![17, 5, 9]);
    }

    #[test]
    fn permute_is_a_bijection_for_any_n() {
        for n in [1u64, 2, 3, 5, 16, 17, 1000, 4097] {
            for key in [0u64, 7, 1 << 40] {
                let mut seen: Vec<u64> = (0..n).map(|i| permute(i, n, key)).collect();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n={n}");
            }
        }
        let a: Vec<u64> = (0..100).map(|i| permute(i, 100, 1)).collect();
        let b: Vec<u64> = (0..100).map(|i| permute(i, 100, 2)).collect();
        assert_ne!(a, b);
    }

    #[test]
    fn sources_fill_their_quotas() {
        let cum = cumulative(&quotas(&[0.5, 0.3, 0.2], 1000));
        let mut counts = [0u64; 3];
        for i in 0..1000 {
            counts[source_at(&cum, i, 42)] += 1;
        }
        assert_eq!(counts, [500, 300, 200]);
    }
}
