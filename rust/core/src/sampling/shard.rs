//! Distributed sharding with the semantics of `torch.utils.data.DistributedSampler`.
//!
//! A global sequence of `n` positions is padded (by repeating it from its start) up to a multiple of
//! `world_size`, or truncated down to one with `drop_last`; rank `r` takes positions
//! `r, r + world_size, r + 2 * world_size, ...`. Shards are disjoint in positions and together cover
//! the (padded or truncated) global sequence.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub rank: u64,
    pub world_size: u64,
    pub drop_last: bool,
}

impl Shard {
    pub fn new(rank: u64, world_size: u64, drop_last: bool) -> Result<Self> {
        if world_size == 0 {
            return Err(Error::invalid("world_size: must be at least 1"));
        }
        if rank >= world_size {
            return Err(Error::invalid(format!(
                "rank: must be in [0, world_size = {world_size}), got {rank}"
            )));
        }
        Ok(Shard {
            rank,
            world_size,
            drop_last,
        })
    }

    pub fn single() -> Self {
        Shard {
            rank: 0,
            world_size: 1,
            drop_last: false,
        }
    }

    /// Positions per rank: `ceil(n / W)`, or `floor(n / W)` with `drop_last`
    /// (DistributedSampler's `num_samples`).
    pub fn local_len(&self, n: u64) -> u64 {
        if self.drop_last {
            n / self.world_size
        } else {
            n.div_ceil(self.world_size)
        }
    }

    /// Padded or truncated global length (`total_size`).
    pub fn total(&self, n: u64) -> u64 {
        self.local_len(n) * self.world_size
    }

    /// The global position (before padding) that this rank's `local`-th element reads:
    /// `(local * W + rank) mod n`; padding repeats the sequence from its start.
    #[inline(always)]
    pub fn base_position(&self, n: u64, local: u64) -> u64 {
        let g = local * self.world_size + self.rank;
        if g < n {
            g
        } else {
            g % n
        }
    }

    /// Takes this rank's share of a whole global sequence (used for in-memory subsets).
    pub fn take<T: Copy>(&self, global: &[T]) -> Vec<T> {
        let n = global.len() as u64;
        if n == 0 {
            return Vec::new();
        }
        (0..self.local_len(n))
            .map(|p| global[self.base_position(n, p) as usize])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: DistributedSampler's list arithmetic, written the way torch writes it.
    fn torch_reference(n: usize, w: usize, r: usize, drop_last: bool) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..n).collect();
        let num = if drop_last && n % w != 0 {
            ((n as f64 - w as f64) / w as f64).ceil().max(0.0) as usize
        } else {
            n.div_ceil(w)
        };
        let total = num * w;
        if !drop_last {
            let pad = total - n;
            let mut k = 0;
            while idx.len() < total {
                idx.push(idx[k % n]);
                k += 1;
            }
            assert_eq!(idx.len(), n + pad);
        } else {
            idx.truncate(total);
        }
        idx.into_iter().skip(r).step_by(w).collect()
    }

    #[test]
    fn matches_distributed_sampler() {
        for n in 1..30usize {
            for w in 1..8usize {
                for drop_last in [false, true] {
                    for r in 0..w {
                        let s = Shard::new(r as u64, w as u64, drop_last).unwrap();
                        let ours: Vec<usize> = (0..s.local_len(n as u64))
                            .map(|p| s.base_position(n as u64, p) as usize)
                            .collect();
                        assert_eq!(
                            ours,
                            torch_reference(n, w, r, drop_last),
                            "n={n} w={w} r={r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rejects_bad_rank() {
        assert!(Shard::new(2, 2, false).is_err());
        assert!(Shard::new(0, 0, false).is_err());
    }
}
