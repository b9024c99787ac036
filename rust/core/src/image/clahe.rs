//! Contrast Limited Adaptive Histogram Equalisation (CURE's augmentation), matching
//! `cv2.createCLAHE(clipLimit, tileGridSize).apply(img)` for 8- and 16-bit grey images.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// CLAHE with `tiles_x` x `tiles_y` tiles and OpenCV's clip-limit convention.
pub fn clahe<T: Sample>(
    img: ImageRef<T>,
    clip_limit: f64,
    tiles_x: usize,
    tiles_y: usize,
) -> Result<Image<T>> {
    let _ = (img, clip_limit, tiles_x, tiles_y);
    Err(Error::invalid("clahe: not implemented yet"))
}
