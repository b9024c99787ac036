//! Order and shard an epoch's subset (RRGCL, pacing baselines): a seeded shuffle from
//! `(seed, epoch)`, then `DistributedSampler` padding / `drop_last` and rank striding.

use super::shard::Shard;
use crate::rng::{derive_key, shuffle};

const TAG_SUBSET: u64 = 0x5355_4253; // "SUBS"

/// This rank's share of `indices` for `epoch`, shuffled first when `shuffle_first`.
pub fn shard_subset(
    indices: &[i64],
    seed: u64,
    epoch: u64,
    shuffle_first: bool,
    shard: Shard,
) -> Vec<i64> {
    if shuffle_first {
        let mut order = indices.to_vec();
        shuffle(&mut order, derive_key(seed, &[TAG_SUBSET, epoch]));
        shard.take(&order)
    } else {
        shard.take(indices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_shuffled_subset() {
        let idx: Vec<i64> = (0..103).map(|i| i * 3).collect();
        let world = 4;
        let mut all = Vec::new();
        for r in 0..world {
            let s = Shard::new(r, world, false).unwrap();
            let mine = shard_subset(&idx, 9, 2, true, s);
            assert_eq!(mine.len(), 26);
            all.extend(mine);
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, idx);
        let a = shard_subset(&idx, 9, 2, true, Shard::single());
        assert_ne!(a, idx);
        assert_ne!(a, shard_subset(&idx, 9, 3, true, Shard::single()));
        assert_eq!(shard_subset(&idx, 9, 3, false, Shard::single()), idx);
    }
}
