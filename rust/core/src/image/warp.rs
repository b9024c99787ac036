//! Affine warp with bilinear interpolation, matching `cv2.warpAffine(img, M, (w, h),
//! flags=INTER_LINEAR, borderMode=BORDER_CONSTANT, borderValue=0)`, and the box rule of DESIGN.md.

use super::{BoxXyxy, Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// A 2x3 forward affine matrix (source -> destination), as OpenCV takes it.
pub type Affine = [[f64; 3]; 2];

/// Warp `img` with the forward matrix `m` into a `width` x `height` output.
pub fn warp_affine<T: Sample>(
    img: ImageRef<T>,
    m: &Affine,
    width: usize,
    height: usize,
) -> Result<Image<T>> {
    let _ = (img, m, width, height);
    Err(Error::invalid("warp_affine: not implemented yet"))
}

/// Map boxes through `m`: the 4 corners are mapped, the enclosing box is clipped to the output, and a
/// box whose clipped area is below `min_visible` of its mapped area is dropped. Returns the surviving
/// boxes and, per input box, whether it survived.
pub fn warp_boxes(
    boxes: &[BoxXyxy],
    m: &Affine,
    width: usize,
    height: usize,
    min_visible: f64,
) -> Result<(Vec<BoxXyxy>, Vec<bool>)> {
    let _ = (boxes, m, width, height, min_visible);
    Err(Error::invalid("warp_boxes: not implemented yet"))
}
