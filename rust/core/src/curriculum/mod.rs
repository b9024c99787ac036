//! Curricula: which samples an epoch trains on, and how.
//!
//! - [`rrgcl`]: RRGCL's class-level scheduler (Eq. 11-13, Algorithm 1);
//! - [`pacing`]: the baseline pacing functions of RRGCL's ablation;
//! - [`cure`]: CURE's error-aware source weights;
//! - [`stages`]: MedCLM's Easy / Medium / Hard stage scheduler.

pub mod cure;
pub mod pacing;
pub mod rrgcl;
pub mod stages;

pub use cure::cure_weights;
pub use pacing::Pacing;
pub use rrgcl::{rrgcl_rates, Rrgcl};
pub use stages::{Stage, StageParams, StageScheduler};
