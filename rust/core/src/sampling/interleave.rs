//! CURE's deterministic interleave of sources (the inter-dataset curriculum's "balanced" order).
//!
//! Each source with a positive weight gets `max(int(20 * w / w_min), 1)` slots in a repeating
//! pattern (weights normalised first, as CURE's public code does). Slots are spread evenly: sources
//! are placed in order of decreasing slot count (ties by source index); a source with `f` slots,
//! facing `m` still-free slots, takes the free slots number `floor(j * m / f)` for `j = 0..f`. So the
//! most frequent source sits at a fixed stride and every later source is spread as evenly as the
//! remaining gaps allow. Sources with zero weight get no slot. When all positive weights are equal
//! the pattern is simply those sources in index order (the same pattern, 20 times shorter).

use super::weights::check_values;
use crate::error::{Error, Result};

/// Slots of the least-weighted source in one pattern period.
pub const BASE_SLOTS: f64 = 20.0;
/// Patterns longer than this are refused (weights spanning more than ~800 000:1).
pub const MAX_PATTERN: usize = 1 << 24;

/// Slot counts per source (0 for zero-weight sources).
pub fn slot_counts(weights: &[f64]) -> Result<Vec<u64>> {
    check_values(weights)?;
    let sum: f64 = weights.iter().sum();
    let ws: Vec<f64> = weights.iter().map(|&w| w / sum).collect();
    let positive: Vec<f64> = ws.iter().copied().filter(|&w| w > 0.0).collect();
    let first = positive[0];
    if positive.iter().all(|&w| w == first) {
        return Ok(ws.iter().map(|&w| u64::from(w > 0.0)).collect());
    }
    let w_min = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let mut total = 0f64;
    let counts: Vec<u64> = ws
        .iter()
        .map(|&w| {
            if w > 0.0 {
                let f = (BASE_SLOTS * w / w_min).floor().max(1.0);
                total += f;
                f as u64
            } else {
                0
            }
        })
        .collect();
    if total > MAX_PATTERN as f64 {
        return Err(Error::invalid(format!(
            "weights: the interleave pattern would need {total} slots (weights span {:.3e}:1); \
             use mode=\"random\" for such extreme weights",
            positive.iter().copied().fold(0.0, f64::max) / w_min
        )));
    }
    Ok(counts)
}

/// One period of the interleave pattern: source ids, each appearing `slot_counts[i]` times.
pub fn interleave_pattern(weights: &[f64]) -> Result<Vec<u32>> {
    let counts = slot_counts(weights)?;
    let total: usize = counts.iter().map(|&c| c as usize).sum();
    let mut order: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    // Stable: equal counts keep source order (CURE sorts with Python's stable sort).
    order.sort_by(|&a, &b| counts[b].cmp(&counts[a]));
    const FREE: u32 = u32::MAX;
    let mut slots = vec![FREE; total];
    let mut free: Vec<usize> = (0..total).collect();
    for &src in &order {
        let f = counts[src] as usize;
        let m = free.len();
        debug_assert!(m >= f);
        let step = m as f64 / f as f64;
        for j in 0..f {
            let jj = ((j as f64) * step) as usize;
            slots[free[jj]] = src as u32;
        }
        free.retain(|&s| slots[s] == FREE);
    }
    debug_assert!(slots.iter().all(|&s| s != FREE));
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_rule() {
        assert_eq!(slot_counts(&[0.5, 0.3, 0.2]).unwrap(), vec![50, 30, 20]);
        assert_eq!(slot_counts(&[1.0, 1.0, 0.0]).unwrap(), vec![1, 1, 0]);
        assert_eq!(slot_counts(&[2.0, 1.0]).unwrap(), vec![40, 20]);
        // int() truncates: 20 * 0.35/0.1 = 70 (up to rounding, floor)
        let c = slot_counts(&[0.1, 0.35]).unwrap();
        assert_eq!(c[0], 20);
        assert!(c[1] == 70 || c[1] == 69);
    }

    #[test]
    fn equal_weights_round_robin() {
        assert_eq!(interleave_pattern(&[1.0, 1.0, 1.0]).unwrap(), vec![0, 1, 2]);
        assert_eq!(interleave_pattern(&[0.0, 2.0, 2.0]).unwrap(), vec![1, 2]);
    }

    #[test]
    fn two_to_one_is_evenly_spread() {
        let p = interleave_pattern(&[2.0, 1.0]).unwrap();
        assert_eq!(p.len(), 60);
        // source 0 has 40 slots at floor(j * 60 / 40) = floor(1.5 j): 0,1,3,4,6,7,...
        let expected: Vec<u32> = (0..60).map(|i| if i % 3 == 2 { 1 } else { 0 }).collect();
        assert_eq!(p, expected);
    }

    #[test]
    fn counts_appear_in_pattern() {
        let w = [0.05, 0.5, 0.2, 0.0, 0.25];
        let p = interleave_pattern(&w).unwrap();
        let counts = slot_counts(&w).unwrap();
        for (s, &c) in counts.iter().enumerate() {
            assert_eq!(p.iter().filter(|&&x| x as usize == s).count() as u64, c);
        }
        // the largest source never waits more than ceil(len / count) + 1 slots
        let pos: Vec<usize> = (0..p.len()).filter(|&i| p[i] == 1).collect();
        let max_gap = pos.windows(2).map(|w| w[1] - w[0]).max().unwrap();
        assert!(max_gap <= p.len().div_ceil(counts[1] as usize) + 1);
    }

    #[test]
    fn refuses_extreme_ratios() {
        assert!(interleave_pattern(&[1e-9, 1.0]).is_err());
    }
}
