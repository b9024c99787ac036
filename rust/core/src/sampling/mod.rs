//! Sampling: which global indices a rank reads, in which order, deterministically.
//!
//! - [`alias`]: O(1) weighted draws;
//! - [`interleave`]: CURE's deterministic slot pattern;
//! - [`shard`]: `DistributedSampler` padding / `drop_last` arithmetic;
//! - [`multi_source`]: the weighted multi-source sampler with a logged weight schedule;
//! - [`quota`]: exact per-epoch quotas of positions per source, shuffled;
//! - [`subset`]: shuffling and sharding a curriculum's epoch subset.

pub mod alias;
pub mod interleave;
pub mod multi_source;
pub mod quota;
pub mod shard;
pub mod subset;
pub mod weights;

pub use interleave::interleave_pattern;
pub use multi_source::{Mode, MultiSource};
pub use shard::Shard;
