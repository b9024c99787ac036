//! Resize, bit-exact with OpenCV's `cv2.resize(img, (w, h), interpolation=...)` (the
//! `cv::hal::resize` CPU path) for 8- and 16-bit images with any number of channels:
//!
//! - [`Interpolation::Area`] (`INTER_AREA`): when shrinking along both axes by integers, a box
//!   average (`(sum + 2) >> 2` for 2x2 with 1, 3 or 4 channels, else `round(sum * (1/area))` in
//!   f32); when shrinking by non-integers, OpenCV's area-weighted coefficients
//!   (`computeResizeAreaTab`: each output pixel covers `scale` input pixels, partial pixels
//!   weighted by their covered fraction), accumulated in f32 row by row; when enlarging along
//!   either axis, OpenCV's bilinear variant whose weight is the fractional overlap of the output
//!   cell with the next input pixel.
//! - [`Interpolation::Bilinear`] (`INTER_LINEAR`): half-pixel-centre bilinear interpolation,
//!   edge pixels replicated. 8-bit uses OpenCV's fixed point (weights `round(w * 2048)`, i.e.
//!   `INTER_RESIZE_COEF_BITS = 11`; rows combined as `((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >>
//!   4)) >> 16) + 2) >> 2`), 16-bit uses f32 weights. An exact 2x shrink uses the 2x2 box
//!   average, as OpenCV does.
//!
//! Rounding is OpenCV's `saturate_cast` on x86: ties to even. Every f32 expression keeps
//! OpenCV's operand order, which is what makes the results equal rather than merely close.
//!
//! Known differences from `cv2.resize` on x86 builds:
//! - 16-bit `INTER_LINEAR` (1, 3 or 4 channels, source sides >= 2) is handed by OpenCV to Intel
//!   IPP, which computes `a + (b - a) * t` with fused multiply-adds and f64 coordinates; this
//!   file keeps OpenCV's own formula (what OpenCV computes without IPP), within 1 level of IPP.
//! - 8-bit box averages of more than 8.4 M pixels per output pixel: OpenCV's `int` sum
//!   overflows, these sums are 64-bit.
//!
//! Bilinear resizing is bound by gathering two source samples per output sample; on x86_64
//! those row kernels use SSE2 intrinsics (`sse2.rs`), elsewhere the scalar versions.
//!
//! - [`Interpolation::Cubic`] (`INTER_CUBIC`): OpenCV's four-tap Keys kernel (`A = -0.75`),
//!   fixed point for 8 bit, f32 for 16 bit, see `cubic.rs` (which also says how `cv2.resize`
//!   differs when it hands the work to Intel IPP).
//!
//! Layout: this file checks sizes and picks the kernel; `area.rs` holds the `INTER_AREA` shrink
//! kernels (integer box averages, fractional area taps), `bilinear.rs` the two-tap kernels
//! (`INTER_LINEAR`, and `INTER_AREA` when enlarging), `sse2.rs` their x86_64 row kernels,
//! `cubic.rs` the `INTER_CUBIC` kernel.

mod area;
mod bilinear;
mod cubic;
#[cfg(target_arch = "x86_64")]
mod sse2;

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};
use area::{area_fractional, area_integer};
use bilinear::{linear_fixed, linear_float, Axis};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `cv2.INTER_AREA`.
    Area,
    /// `cv2.INTER_LINEAR`.
    Bilinear,
    /// `cv2.INTER_CUBIC` as OpenCV's own code computes it (`cubic.rs`; `cv2.resize` in IPP
    /// builds differs by at most 1 level).
    Cubic,
}

/// Resize `img` to `width` x `height`.
pub fn resize<T: Sample>(
    img: ImageRef<T>,
    width: usize,
    height: usize,
    interpolation: Interpolation,
) -> Result<Image<T>> {
    let (sw, sh, cn) = (img.width, img.height, img.channels);
    if sw == 0 || sh == 0 || cn == 0 {
        return Err(Error::invalid(format!(
            "resize: empty input image ({sw}x{sh}x{cn})"
        )));
    }
    if sw.checked_mul(sh).and_then(|p| p.checked_mul(cn)) != Some(img.data.len()) {
        return Err(Error::invalid(format!(
            "resize: image buffer of {} samples does not match {sw}x{sh}x{cn}",
            img.data.len()
        )));
    }
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "resize: output size must be at least 1x1, got {width}x{height}"
        )));
    }
    // OpenCV sizes and row steps are C ints; staying below keeps every index computation
    // exact in f64/f32 and row indices within u32.
    if width.max(height).max(sw).max(sh) > i32::MAX as usize / 4
        || sw.max(width).saturating_mul(cn) > i32::MAX as usize
    {
        return Err(Error::invalid(format!(
            "resize: {sw}x{sh} -> {width}x{height} exceeds the supported side length"
        )));
    }
    let mut out = allocate::<T>(width, height, cn)?;
    if (width, height) == (sw, sh) {
        out.data.copy_from_slice(img.data);
        return Ok(out);
    }
    if interpolation == Interpolation::Cubic {
        cubic::cubic(img, &mut out);
        return Ok(out);
    }

    let inv_scale_x = width as f64 / sw as f64;
    let inv_scale_y = height as f64 / sh as f64;
    let scale_x = 1.0 / inv_scale_x;
    let scale_y = 1.0 / inv_scale_y;
    let iscale_x = scale_x.round_ties_even();
    let iscale_y = scale_y.round_ties_even();
    // OpenCV's test; it implies `sw == width * iscale_x` (checked again so slicing cannot fail).
    let integer_ratio = (scale_x - iscale_x).abs() < f64::EPSILON
        && (scale_y - iscale_y).abs() < f64::EPSILON
        && sw == width * iscale_x as usize
        && sh == height * iscale_y as usize;

    // OpenCV: an exact 2x shrink with INTER_LINEAR *is* the 2x2 box average, and takes that path.
    let area = interpolation == Interpolation::Area
        || (integer_ratio && iscale_x == 2.0 && iscale_y == 2.0);
    if area && scale_x >= 1.0 && scale_y >= 1.0 {
        if integer_ratio {
            area_integer(img, &mut out, iscale_x as usize, iscale_y as usize);
        } else {
            area_fractional(img, &mut out, scale_x, scale_y);
        }
        return Ok(out);
    }
    let area_mode = interpolation == Interpolation::Area;
    let xs = Axis::new(sw, width, scale_x, inv_scale_x, area_mode, true);
    let ys = Axis::new(sh, height, scale_y, inv_scale_y, area_mode, false);
    if T::LEVELS <= 256 {
        linear_fixed(img, &mut out, &xs, &ys);
    } else {
        linear_float(img, &mut out, &xs, &ys);
    }
    Ok(out)
}

/// The output buffer, refused with an error instead of aborting when it cannot be allocated.
fn allocate<T: Sample>(width: usize, height: usize, channels: usize) -> Result<Image<T>> {
    let too_large = || {
        Error::invalid(format!(
            "resize: output {width}x{height}x{channels} is too large to allocate"
        ))
    };
    let n = width
        .checked_mul(height)
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(too_large)?;
    let mut data = Vec::new();
    data.try_reserve_exact(n).map_err(|_| too_large())?;
    data.resize(n, T::default());
    Ok(Image {
        width,
        height,
        channels,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Sample>(
        w: usize,
        h: usize,
        c: usize,
        data: &[T],
        ow: usize,
        oh: usize,
        i: Interpolation,
    ) -> Vec<T> {
        resize(ImageRef::new(w, h, c, data).unwrap(), ow, oh, i)
            .unwrap()
            .data
    }

    #[test]
    fn two_by_two_to_one_is_the_rounded_mean() {
        // (1 + 2 + 3 + 5 + 2) >> 2 = 3 (11 / 4 = 2.75); both interpolations take the box path.
        for i in [Interpolation::Area, Interpolation::Bilinear] {
            assert_eq!(run(2, 2, 1, &[1u8, 2, 3, 5], 1, 1, i), vec![3]);
            // 10 / 4 = 2.5 rounds half up in the 2x2 integer kernel.
            assert_eq!(run(2, 2, 1, &[1u8, 2, 3, 4], 1, 1, i), vec![3]);
        }
        // RGB keeps channels apart.
        let rgb = [10u8, 0, 255, 20, 0, 255, 30, 0, 255, 40, 0, 255];
        assert_eq!(
            run(2, 2, 3, &rgb, 1, 1, Interpolation::Area),
            vec![25, 0, 255]
        );
    }

    #[test]
    fn integer_box_average_rounds_ties_to_even() {
        // 4x1 -> 1x1: sum * (1/4) in f32 then ties to even: 2 + 2 + 3 + 3 = 10 -> 2.5 -> 2,
        // and 3 + 3 + 4 + 4 = 14 -> 3.5 -> 4.
        assert_eq!(
            run(4, 1, 1, &[2u8, 2, 3, 3], 1, 1, Interpolation::Area),
            vec![2]
        );
        assert_eq!(
            run(4, 1, 1, &[3u8, 3, 4, 4], 1, 1, Interpolation::Area),
            vec![4]
        );
        assert_eq!(
            run(3, 1, 1, &[1000u16, 2000, 3001], 1, 1, Interpolation::Area),
            vec![2000]
        );
    }

    #[test]
    fn identity_and_constant_images() {
        let data: Vec<u16> = (0..35).map(|v| v * 1000).collect();
        for i in [Interpolation::Area, Interpolation::Bilinear] {
            assert_eq!(run(7, 5, 1, &data, 7, 5, i), data);
            // A constant stays constant through every path (shrink, enlarge, fractional).
            for (ow, oh) in [(3, 2), (14, 10), (5, 4), (9, 3), (1, 1), (20, 1)] {
                assert_eq!(run(7, 5, 1, &[77u8; 35], ow, oh, i), vec![77u8; ow * oh]);
                assert_eq!(
                    run(7, 5, 1, &[777u16; 35], ow, oh, i),
                    vec![777u16; ow * oh]
                );
            }
        }
    }

    #[test]
    fn fractional_area_weights_partial_pixels() {
        // 3x1 -> 2x1: scale 1.5; pixel 0 covers src 0 and half of src 1, pixel 1 the other half
        // of src 1 and src 2: (0 + 0.5 * 30) / 1.5 = 10, (0.5 * 30 + 90) / 1.5 = 70.
        assert_eq!(
            run(3, 1, 1, &[0u8, 30, 90], 2, 1, Interpolation::Area),
            vec![10, 70]
        );
    }

    #[test]
    fn bilinear_upscale_uses_half_pixel_centres() {
        // 2x1 -> 4x1: x' = (x + 0.5) / 2 - 0.5 -> -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
        // 8-bit: weights 1536/512 on 0 and 100 -> 25 and 75 after the fixed-point rounding.
        assert_eq!(
            run(2, 1, 1, &[0u8, 100], 4, 1, Interpolation::Bilinear),
            vec![0, 25, 75, 100]
        );
        assert_eq!(
            run(2, 1, 1, &[0u16, 1000], 4, 1, Interpolation::Bilinear),
            vec![0, 250, 750, 1000]
        );
    }

    #[test]
    fn area_upscale_replicates_then_blends_at_cell_edges() {
        // INTER_AREA enlarging 2x1 -> 4x1: fx = (dx + 1) - (sx + 1) * 2 clipped at 0, so pixels
        // stay pure copies except where an output cell straddles the source pixel boundary.
        assert_eq!(
            run(2, 1, 1, &[0u8, 100], 4, 1, Interpolation::Area),
            vec![0, 0, 100, 100]
        );
        assert_eq!(
            run(2, 1, 1, &[0u8, 100], 3, 1, Interpolation::Area),
            vec![0, 50, 100]
        );
    }

    #[test]
    fn rejects_bad_sizes_without_panicking() {
        let d = [0u8; 4];
        let img = ImageRef::new(2, 2, 1, &d).unwrap();
        assert!(resize(img, 0, 1, Interpolation::Area).is_err());
        assert!(resize(img, 1, 0, Interpolation::Bilinear).is_err());
        assert!(resize(img, usize::MAX, 2, Interpolation::Bilinear).is_err());
        let empty = ImageRef {
            width: 0,
            height: 2,
            channels: 1,
            data: &d[..0],
        };
        assert!(resize(empty, 1, 1, Interpolation::Area).is_err());
    }

    #[test]
    fn sixteen_bit_large_box_keeps_opencv_f32_order() {
        // 100x100 -> 1x1 of 65535: the f32 sum passes 2**24, so the ordered path runs.
        let data = vec![65_535u16; 100 * 100];
        assert_eq!(
            run(100, 100, 1, &data, 1, 1, Interpolation::Area),
            vec![65_535]
        );
        let ramp: Vec<u16> = (0..100 * 100).map(|v| (v * 6) as u16).collect();
        let mean = ramp.iter().map(|&v| v as f64).sum::<f64>() / ramp.len() as f64;
        let got = run(100, 100, 1, &ramp, 1, 1, Interpolation::Area)[0] as f64;
        assert!((got - mean).abs() <= 1.0, "{got} vs {mean}");
    }
}
