//! gradatim-core: the pure-Rust half of gradatim.
//!
//! Image operations (`image`), sampling (`sampling`), curricula (`curriculum`), the data pipeline
//! (`data`), learning-difficulty kernels (`difficulty`), reading from files and object stores
//! (`storage`) and the counter-based randomness they share (`rng`). Nothing here knows about
//! Python: the binding crate (`rust/python`) only converts arguments, releases the GIL and calls in.

pub mod curriculum;
pub mod data;
pub mod difficulty;
pub mod error;
pub mod image;
pub mod rng;
pub mod sampling;
pub mod storage;

pub use error::{Error, Result};
