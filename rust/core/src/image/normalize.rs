//! Conversion to float32 with per-channel mean/std.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// `out = (v / MAX - mean[c]) / std[c]`.
pub fn normalize<T: Sample>(img: ImageRef<T>, mean: &[f32], std: &[f32]) -> Result<Image<f32>> {
    let _ = (img, mean, std);
    Err(Error::invalid("normalize: not implemented yet"))
}
