//! Learning-difficulty kernels (RRGCL): the parts of `gradatim.difficulty` that run in Rust.
//!
//! - [`gap_sums`]: VNS-Gap's block epilogue, `|S^v - S^t|` row and column sums of a product block
//!   in one pass, accumulated as int64 fixed point.

pub mod gap_sums;

pub use gap_sums::{accumulate_abs_sums, BlockTarget};
