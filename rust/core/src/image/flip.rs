//! Horizontal flip that keeps text and boxes consistent with the image.

use super::{BoxXyxy, Image, ImageRef};

/// Mirror the image left-right.
pub fn hflip<T: Copy + Default>(img: ImageRef<T>) -> Image<T> {
    let _ = img;
    unimplemented!()
}

/// Mirror boxes for an image of the given width.
pub fn hflip_boxes(boxes: &[BoxXyxy], width: usize) -> Vec<BoxXyxy> {
    let _ = (boxes, width);
    unimplemented!()
}

/// Swap the laterality words "left" and "right" (whole words, case kept).
pub fn swap_laterality(text: &str) -> String {
    text.to_string()
}
