//! Walker/Vose alias tables: O(1) weighted draws from one 64-bit word.
//!
//! The column is the high half of `x * n` (multiply-shift) and the coin is its low half, so one hash
//! per draw decides both. Thresholds are stored as 64-bit fixed point.

use super::weights::check_values;
use crate::error::Result;

#[derive(Clone, Debug)]
pub struct AliasTable {
    threshold: Vec<u64>,
    alias: Vec<u32>,
}

impl AliasTable {
    /// Builds the table for non-negative weights (not all zero). Zero-weight categories are never
    /// drawn, whatever the rounding.
    pub fn new(weights: &[f64]) -> Result<Self> {
        check_values(weights)?;
        let n = weights.len();
        let sum: f64 = weights.iter().sum();
        let mut p: Vec<f64> = weights.iter().map(|&w| w * n as f64 / sum).collect();
        let mut threshold = vec![0u64; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        let mut small: Vec<usize> = Vec::with_capacity(n);
        let mut large: Vec<usize> = Vec::with_capacity(n);
        for (i, &pi) in p.iter().enumerate() {
            if pi < 1.0 {
                small.push(i);
            } else {
                large.push(i);
            }
        }
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            threshold[s] = to_fixed(p[s]);
            alias[s] = l as u32;
            p[l] = (p[l] + p[s]) - 1.0;
            if p[l] < 1.0 {
                large.pop();
                small.push(l);
            }
        }
        // Leftovers have p ~= 1 up to rounding: they keep their own column, except a zero-weight
        // category (possible only through rounding), which is sent to the heaviest one.
        let heaviest = weights
            .iter()
            .enumerate()
            .fold(0, |b, (i, &w)| if w > weights[b] { i } else { b });
        for i in large.into_iter().chain(small) {
            if weights[i] > 0.0 {
                threshold[i] = u64::MAX;
                alias[i] = i as u32;
            } else {
                threshold[i] = 0;
                alias[i] = heaviest as u32;
            }
        }
        Ok(AliasTable { threshold, alias })
    }

    pub fn len(&self) -> usize {
        self.threshold.len()
    }

    pub fn is_empty(&self) -> bool {
        self.threshold.is_empty()
    }

    /// The category for one uniform 64-bit word.
    #[inline(always)]
    pub fn draw(&self, x: u64) -> usize {
        let m = x as u128 * self.threshold.len() as u128;
        let col = (m >> 64) as usize;
        let coin = m as u64;
        // SAFETY-free indexing: col < len by construction of multiply-shift.
        if coin < self.threshold[col] {
            col
        } else {
            self.alias[col] as usize
        }
    }
}

fn to_fixed(p: f64) -> u64 {
    if p >= 1.0 {
        u64::MAX
    } else if p <= 0.0 {
        0
    } else {
        (p * 18_446_744_073_709_551_616.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::at;

    #[test]
    fn frequencies_match_weights() {
        let w = [0.1, 0.0, 0.6, 0.3];
        let t = AliasTable::new(&w).unwrap();
        let mut c = [0u64; 4];
        let n = 400_000u64;
        for i in 0..n {
            c[t.draw(at(99, i))] += 1;
        }
        assert_eq!(c[1], 0);
        for (k, &wk) in w.iter().enumerate() {
            let f = c[k] as f64 / n as f64;
            assert!((f - wk).abs() < 0.005, "{c:?}");
        }
    }

    #[test]
    fn single_and_equal() {
        let t = AliasTable::new(&[3.0]).unwrap();
        assert_eq!(t.draw(u64::MAX), 0);
        let t = AliasTable::new(&[1.0, 1.0]).unwrap();
        assert_eq!(t.draw(0), 0);
        assert_eq!(t.draw(u64::MAX), 1);
    }

    #[test]
    fn zero_weight_is_never_drawn_even_when_tiny_neighbours() {
        let w = [1e-300, 0.0, 1.0, 1e-12];
        let t = AliasTable::new(&w).unwrap();
        for i in 0..100_000 {
            assert_ne!(t.draw(at(5, i)), 1);
        }
    }
}
