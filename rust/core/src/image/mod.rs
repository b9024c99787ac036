//! Per-image operations of the pipeline: decode, CLAHE, affine warp (with boxes), resize,
//! laterality-aware flip, box overlay and normalisation.
//!
//! Images are row-major with `channels` interleaved samples per pixel (HxW or HxWxC, as NumPy
//! holds them). Every kernel is single-threaded; the loader parallelises across images.

pub mod clahe;
pub mod cure;
pub mod decode;
pub mod dicom;
pub mod dicom_frame;
pub mod dicom_parse;
pub mod draw;
pub mod encode;
pub mod flip;
pub mod j2k;
pub mod jpeg;
pub mod normalize;
pub mod png;
pub mod resize;
pub mod warp;
pub mod warp_cubic;

use crate::error::{Error, Result};

/// A pixel sample type the kernels accept: 8- or 16-bit unsigned.
pub trait Sample: Copy + Default + Send + Sync + PartialOrd + 'static {
    /// Largest representable value, as f32 (255 or 65535).
    const MAX: f32;
    /// Number of distinct values (histogram size for CLAHE).
    const LEVELS: usize;
    fn to_f32(self) -> f32;
    fn to_usize(self) -> usize;
    /// Round half away from zero and saturate, as OpenCV's `saturate_cast`.
    fn from_f32(v: f32) -> Self;
    fn from_usize_sat(v: usize) -> Self;
    /// Round half to even and saturate: what `cv::saturate_cast<T>(float)` does on x86, where
    /// `cvRound` is the SSE2 conversion (ties to even). Branch- and libm-free, so loops using it
    /// auto-vectorise (clahe.rs, resize/ rely on this for bit-exact OpenCV results).
    fn from_f32_rne(v: f32) -> Self;
    /// `data` itself when the samples are bytes (`u8`), so 8-bit kernels can load several
    /// samples with one read (resize/bilinear.rs, sse2.rs); `None` for wider samples.
    fn as_bytes(data: &[Self]) -> Option<&[u8]> {
        let _ = data;
        None
    }
}

/// `v` rounded to the nearest integer, ties to even, for `0 <= v < 2**22`: adding 1.5 * 2**23
/// leaves no fraction bits, so the FPU's default rounding does the work and the integer sits in
/// the low mantissa bits (no float-to-int conversion, no `roundps`, which SSE2 lacks).
#[inline(always)]
fn round_ties_even_small(v: f32) -> u32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits())
}

impl Sample for u8 {
    const MAX: f32 = 255.0;
    const LEVELS: usize = 256;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_usize(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v.round().clamp(0.0, 255.0) as u8
    }
    #[inline(always)]
    fn from_usize_sat(v: usize) -> Self {
        v.min(255) as u8
    }
    #[inline(always)]
    fn from_f32_rne(v: f32) -> Self {
        round_ties_even_small(v.clamp(0.0, 255.0)) as u8
    }
    #[inline(always)]
    fn as_bytes(data: &[Self]) -> Option<&[u8]> {
        Some(data)
    }
}

impl Sample for u16 {
    const MAX: f32 = 65535.0;
    const LEVELS: usize = 65536;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
    #[inline(always)]
    fn to_usize(self) -> usize {
        self as usize
    }
    #[inline(always)]
    fn from_f32(v: f32) -> Self {
        v.round().clamp(0.0, 65535.0) as u16
    }
    #[inline(always)]
    fn from_usize_sat(v: usize) -> Self {
        v.min(65535) as u16
    }
    #[inline(always)]
    fn from_f32_rne(v: f32) -> Self {
        round_ties_even_small(v.clamp(0.0, 65535.0)) as u16
    }
}

/// An owned image.
#[derive(Clone, Debug, PartialEq)]
pub struct Image<T> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<T>,
}

/// A borrowed, contiguous image.
#[derive(Clone, Copy, Debug)]
pub struct ImageRef<'a, T> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: &'a [T],
}

impl<T: Copy + Default> Image<T> {
    pub fn new(width: usize, height: usize, channels: usize) -> Self {
        Image {
            width,
            height,
            channels,
            data: vec![T::default(); width * height * channels],
        }
    }

    pub fn view(&self) -> ImageRef<'_, T> {
        ImageRef {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: &self.data,
        }
    }
}

impl<'a, T> ImageRef<'a, T> {
    /// Checks that `data` holds exactly `height * width * channels` samples.
    pub fn new(width: usize, height: usize, channels: usize, data: &'a [T]) -> Result<Self> {
        if channels == 0
            || width
                .checked_mul(height)
                .and_then(|p| p.checked_mul(channels))
                != Some(data.len())
        {
            return Err(Error::invalid(format!(
                "image buffer of {} samples does not match {width}x{height}x{channels}",
                data.len()
            )));
        }
        Ok(ImageRef {
            width,
            height,
            channels,
            data,
        })
    }

    #[inline(always)]
    pub fn row(&self, y: usize) -> &'a [T] {
        let stride = self.width * self.channels;
        &self.data[y * stride..(y + 1) * stride]
    }
}

/// An axis-aligned box `[x1, y1, x2, y2]` in pixel coordinates (x2 > x1, y2 > y1 when valid).
pub type BoxXyxy = [f64; 4];
