//! Resize matching `cv2.resize`: area averaging for down-scaling, bilinear otherwise.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `cv2.INTER_AREA`.
    Area,
    /// `cv2.INTER_LINEAR`.
    Bilinear,
}

/// Resize `img` to `width` x `height`.
pub fn resize<T: Sample>(
    img: ImageRef<T>,
    width: usize,
    height: usize,
    interpolation: Interpolation,
) -> Result<Image<T>> {
    let _ = (img, width, height, interpolation);
    Err(Error::invalid("resize: not implemented yet"))
}
