//! Affine warp with bilinear interpolation and a constant 0 border, equal to
//! `cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR, borderMode=BORDER_CONSTANT, borderValue=0)`
//! of OpenCV 5.0 (docs/image.md, "Oracle conventions"), and the box rule of the same section.
//!
//! What OpenCV computes, and therefore what this file reproduces:
//!
//! * `cv::warpAffine` inverts the forward 2x3 matrix in `f64` (`D = 1 / (M0 M4 - M1 M3)`, or 0 for
//!   a singular matrix) and maps each destination pixel back into the source.
//! * 1, 3 and 4 channels, 8 and 16 bit (`warpAffineLinearInvoker_{8U,16U}C{1,3,4}` in
//!   `modules/imgproc/src/warp_kernels.simd.hpp`, the AVX2 dispatch that x86-64 wheels run): the
//!   inverse is cast to `f32`. Pixels are mapped in groups of 16; inside a group the source
//!   coordinate is `sx = fma(M0, x, float(y*M1) + M2)` (the row offset is *not* fused); the last
//!   `w % 16` columns of a row are a scalar tail, where GCC contracts `x*M0 + y*M1 + M2` into
//!   `fma(x, M0, y*M1) + M2`. Then `ix = floor(sx)`, `a = sx - ix` (same for y, `b`), the four taps
//!   read 0 outside the source, `r0 = fma(a, p01 - p00, p00)`, `r1 = fma(a, p11 - p10, p10)`,
//!   `r = fma(b, r1 - r0, r0)`, rounded half to even and saturated.
//! * Other channel counts fall back to OpenCV's older fixed-point remap (`WarpAffineInvoker` +
//!   `remapBilinear` in `imgwarp.cpp`): coordinates in 1/1024 (`AB_BITS = 10`) rounded to 1/32
//!   (`INTER_BITS = 5`), 8-bit samples weighted with 15-bit integer weights
//!   (`INTER_REMAP_COEF_BITS`), 16-bit samples with the same weights as `f32`.
//!
//! Checked against cv2 5.0 on random and real images: identical on every pixel for both paths
//! (see `tests/test_warp.py`). On CPUs without AVX2, OpenCV's own SSE4.1 dispatch multiplies and
//! adds without fusing and so differs from its AVX2 build in the last bit; gradatim computes the
//! AVX2 result on every CPU, so its output does not depend on the machine.
//!
//! Speed (the `f32` path): the output is processed in tiles of 128 x 32 pixels, so that the
//! source rows a rotated row walks through stay in L1 and the TLB, and each tile row in chunks of
//! 64 pixels: a vectorised pass maps coordinates (and counts pixels whose four taps are inside),
//! a scalar pass gathers the taps (grey: two adjacent samples as one load; no bounds checks when
//! the whole chunk is inside, see the SAFETY note), a vectorised pass interpolates and rounds.
//! The exact result needs a fused multiply-add: on x86-64 the kernel is compiled twice, with
//! AVX2 + FMA (picked at run time) and for the baseline target, where the fused operation is
//! computed in `f64` (exact product, one rounding of the sum, then the cast to `f32`: identical
//! to the hardware FMA except in an astronomically rare double-rounding tie, never seen in
//! testing; about 3x slower).

use super::{BoxXyxy, Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// A 2x3 forward affine matrix (source -> destination), as OpenCV takes it.
pub type Affine = [[f64; 3]; 2];

/// Largest source or destination side. Keeps every source coordinate that matters inside the
/// range where the `f32` floor trick below is exact (|v| < 2^22) and `x as f32` is exact.
pub(super) const MAX_SIDE: usize = 4_000_000;

/// Pixels per inner block: small enough for the per-block buffers to stay in L1.
const CHUNK: usize = 64;

/// OpenCV's unrolling factor: 2 x 8 `f32` lanes of its AVX2 kernel; the last `w % 16` columns of
/// each row go through the scalar tail with its own rounding.
const OPENCV_GROUP: usize = 16;

/// Warp `img` with the forward matrix `m` into a `width` x `height` output.
pub fn warp_affine<T: Sample>(
    img: ImageRef<T>,
    m: &Affine,
    width: usize,
    height: usize,
) -> Result<Image<T>> {
    check_matrix(m)?;
    if img.width == 0 || img.height == 0 || img.channels == 0 {
        return Err(Error::invalid(format!(
            "warp_affine: the source image is empty ({}x{}x{})",
            img.width, img.height, img.channels
        )));
    }
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "warp_affine: output size must be positive, got {width}x{height}"
        )));
    }
    if img.width.max(img.height).max(width).max(height) > MAX_SIDE {
        return Err(Error::invalid(format!(
            "warp_affine: sides above {MAX_SIDE} pixels are not supported \
             (source {}x{}, output {width}x{height})",
            img.width, img.height
        )));
    }
    if img.data.len() != img.width * img.height * img.channels {
        return Err(Error::invalid(format!(
            "warp_affine: image buffer of {} samples does not match {}x{}x{}",
            img.data.len(),
            img.width,
            img.height,
            img.channels
        )));
    }
    if std::mem::size_of::<T>() > 2 || T::MAX > 65535.0 {
        // The kernels pack two samples in a u32 and round through f32 mantissas.
        return Err(Error::invalid(
            "warp_affine: only 8- and 16-bit samples are supported",
        ));
    }
    let total = width
        .checked_mul(height)
        .and_then(|p| p.checked_mul(img.channels))
        .ok_or_else(|| Error::invalid("warp_affine: output size overflows"))?;
    let mut data = Vec::new();
    data.try_reserve_exact(total).map_err(|_| {
        Error::invalid(format!(
            "warp_affine: cannot allocate a {width}x{height}x{} output",
            img.channels
        ))
    })?;

    let inv = invert(m);
    match img.channels {
        1 => float_dispatch::<T, 1>(&img, &inv, width, height, &mut data),
        3 => float_dispatch::<T, 3>(&img, &inv, width, height, &mut data),
        4 => float_dispatch::<T, 4>(&img, &inv, width, height, &mut data),
        _ => fixed_point(&img, &inv, width, height, &mut data),
    }
    debug_assert_eq!(data.len(), total);
    Ok(Image {
        width,
        height,
        channels: img.channels,
        data,
    })
}

/// Map boxes through `m`: the 4 corners are mapped, the enclosing box is clipped to the output, and a
/// box whose clipped area is below `min_visible` of its mapped area is dropped. Returns the surviving
/// boxes and, per input box, whether it survived.
///
/// Coordinates are continuous pixel coordinates mapped exactly as OpenCV maps points
/// (`x' = m00 x + m01 y + m02`). A box whose corners are given in any order is the same box. A box
/// is also dropped when its mapped or clipped area is zero (a degenerate box, or one entirely
/// outside the output), so every returned box has `0 <= x1 < x2 <= width` and
/// `0 <= y1 < y2 <= height`.
pub fn warp_boxes(
    boxes: &[BoxXyxy],
    m: &Affine,
    width: usize,
    height: usize,
    min_visible: f64,
) -> Result<(Vec<BoxXyxy>, Vec<bool>)> {
    check_matrix(m)?;
    if !(0.0..=1.0).contains(&min_visible) {
        return Err(Error::invalid(format!(
            "warp_boxes: min_visible must be in [0, 1], got {min_visible}"
        )));
    }
    if let Some(i) = boxes.iter().position(|b| b.iter().any(|v| !v.is_finite())) {
        return Err(Error::invalid(format!(
            "warp_boxes: box {i} has a non-finite coordinate: {:?}",
            boxes[i]
        )));
    }
    let (w, h) = (width as f64, height as f64);
    let map = |x: f64, y: f64| {
        (
            m[0][0] * x + m[0][1] * y + m[0][2],
            m[1][0] * x + m[1][1] * y + m[1][2],
        )
    };
    let mut kept = Vec::with_capacity(boxes.len());
    let mut keep = Vec::with_capacity(boxes.len());
    for &[x1, y1, x2, y2] in boxes {
        let corners = [map(x1, y1), map(x2, y1), map(x1, y2), map(x2, y2)];
        let (mut bx1, mut by1) = (f64::INFINITY, f64::INFINITY);
        let (mut bx2, mut by2) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
        for (cx, cy) in corners {
            bx1 = bx1.min(cx);
            by1 = by1.min(cy);
            bx2 = bx2.max(cx);
            by2 = by2.max(cy);
        }
        let mapped_area = (bx2 - bx1) * (by2 - by1);
        let clipped = [
            bx1.clamp(0.0, w),
            by1.clamp(0.0, h),
            bx2.clamp(0.0, w),
            by2.clamp(0.0, h),
        ];
        let clipped_area = (clipped[2] - clipped[0]) * (clipped[3] - clipped[1]);
        // Written so that an overflow to infinity or NaN (a huge matrix) drops the box.
        let visible = mapped_area.is_finite()
            && mapped_area > 0.0
            && clipped_area > 0.0
            && clipped_area >= min_visible * mapped_area;
        keep.push(visible);
        if visible {
            kept.push(clipped);
        }
    }
    Ok((kept, keep))
}

pub(super) fn check_matrix(m: &Affine) -> Result<()> {
    if m.iter().flatten().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "warp_affine: the matrix must be finite, got {m:?}"
        )))
    }
}

/// The destination -> source matrix, computed as `cv::warpAffine` does (same operations, same order).
pub(super) fn invert(m: &Affine) -> [f64; 6] {
    let [[m0, m1, m2], [m3, m4, m5]] = *m;
    let d = m0 * m4 - m1 * m3;
    let d = if d != 0.0 { 1.0 / d } else { 0.0 };
    let (a11, a22) = (m4 * d, m0 * d);
    let (i0, i1, i3, i4) = (a11, m1 * -d, m3 * -d, a22);
    let b1 = -i0 * m2 - i1 * m5;
    let b2 = -i3 * m2 - i4 * m5;
    [i0, i1, b1, i3, i4, b2]
}

// ------------------------------------------------------------------------------------------------
// The f32 path (1, 3, 4 channels).

/// A fused multiply-add `a * b + c` with one rounding.
pub(super) trait MulAdd {
    fn fma(a: f32, b: f32, c: f32) -> f32;
}

/// The hardware instruction. Only used where it compiles to one (`mul_add` is a slow libm call
/// on targets without FMA).
#[cfg_attr(
    not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
pub(super) struct Fused;

impl MulAdd for Fused {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// `f64` emulation: the product of two `f32` is exact in `f64`, so the only roundings are the sum
/// (exact whenever it fits 53 bits, i.e. for every coordinate and pixel value met in practice) and
/// the final cast to `f32`.
#[cfg_attr(target_arch = "aarch64", allow(dead_code))]
pub(super) struct ViaF64;

impl MulAdd for ViaF64 {
    #[inline(always)]
    fn fma(a: f32, b: f32, c: f32) -> f32 {
        (f64::from(a) * f64::from(b) + f64::from(c)) as f32
    }
}

fn float_dispatch<T: Sample, const CN: usize>(
    img: &ImageRef<T>,
    inv: &[f64; 6],
    width: usize,
    height: usize,
    out: &mut Vec<T>,
) {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: `float_avx2` only requires the AVX2 and FMA instruction sets, which were
            // detected on this CPU just above. Measured (2048x2048 u8, one thread): 4.7-5.3 ms vs
            // 15-17 ms for the baseline x86-64 build of the same kernel.
            unsafe { float_avx2::<T, CN>(img, inv, width, height, out) };
            return;
        }
        float_rows::<T, ViaF64, CN>(img, inv, width, height, out);
    }
    #[cfg(target_arch = "aarch64")]
    float_rows::<T, Fused, CN>(img, inv, width, height, out);
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    float_rows::<T, ViaF64, CN>(img, inv, width, height, out);
}

/// The kernel compiled for AVX2 + FMA: `mul_add` becomes `vfmadd`, the passes use 8 lanes.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[target_feature(enable = "avx2,fma")]
fn float_avx2<T: Sample, const CN: usize>(
    img: &ImageRef<T>,
    inv: &[f64; 6],
    width: usize,
    height: usize,
    out: &mut Vec<T>,
) {
    float_rows::<T, Fused, CN>(img, inv, width, height, out);
}

/// `floor(v)` as an integer and the fraction `v - floor(v)`, branch-free and vectorisable on
/// SSE2 (no `roundps` there). `v` is first clamped to +-LIM (NaN goes to -LIM): every clamped
/// coordinate is outside a source of at most `MAX_SIDE` pixels, as OpenCV's `INT_MIN` is.
#[inline(always)]
pub(super) fn floor_frac(v: f32) -> (i32, f32) {
    const LIM: f32 = 4_194_000.0;
    // 1.5 * 2^23: adding it rounds |v| < 2^22 to the nearest integer, which then sits in the
    // low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let v = if v > -LIM { v } else { -LIM };
    let v = if v < LIM { v } else { LIM };
    let t = v + MAGIC;
    let n = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = t - MAGIC;
    let above = r > v;
    let floor = if above { r - 1.0 } else { r };
    (n - i32::from(above), v - floor)
}

/// Round half to even (OpenCV's `cvRound` / `v_round`) and saturate to `T`.
#[inline(always)]
pub(super) fn round_sat<T: Sample>(r: f32) -> T {
    let r = if r > 0.0 { r } else { 0.0 };
    let r = if r < T::MAX { r } else { T::MAX };
    // 2^23: adding it rounds 0 <= r < 2^23 to an integer (ties to even) held in the mantissa.
    let q = (r + 8_388_608.0).to_bits() - 0x4B00_0000;
    T::from_usize_sat(q as usize)
}

#[inline(always)]
fn float_rows<T: Sample, F: MulAdd, const CN: usize>(
    img: &ImageRef<T>,
    inv: &[f64; 6],
    width: usize,
    height: usize,
    out: &mut Vec<T>,
) {
    let m = inv.map(|v| v as f32);
    let (sw, sh) = (img.width, img.height);
    let stride = sw * CN;
    let src = img.data;
    let vec_end = width / OPENCV_GROUP * OPENCV_GROUP;
    // Sample offsets are computed in the vector pass as u32 when they fit (always, in practice:
    // 2^32 samples is a 64k x 64k image); otherwise the scalar pass computes them.
    let u32_offsets = src.len() + stride + 2 * CN < u32::MAX as usize;
    let (inner_w, inner_h) = ((sw - 1) as u32, (sh - 1) as u32);
    // Two horizontally adjacent grey samples are loaded as one word: `lo | hi << shift`.
    let shift = 8 * std::mem::size_of::<T>() as u32;
    let low_mask = (1u32 << shift) - 1;

    let mut iota = [0f32; CHUNK];
    for (i, v) in iota.iter_mut().enumerate() {
        *v = i as f32;
    }
    let mut ix = [0i32; CHUNK];
    let mut iy = [0i32; CHUNK];
    let mut ofs = [0u32; CHUNK];
    let mut fa = [0f32; CHUNK];
    let mut fb = [0f32; CHUNK];
    // Grey: the taps packed in pairs (top = p00 | p01 << shift, bottom = p10 | p11 << shift).
    let mut top = [0u32; CHUNK];
    let mut bot = [0u32; CHUNK];
    // Colour: per-sample copies of the fractions and the four taps, interleaved like the output.
    let mut ar = [0f32; CHUNK * 4];
    let mut br = [0f32; CHUNK * 4];
    let mut p00 = [T::default(); CHUNK * 4];
    let mut p01 = [T::default(); CHUNK * 4];
    let mut p10 = [T::default(); CHUNK * 4];
    let mut p11 = [T::default(); CHUNK * 4];

    let word = |s: &[T], i: usize| s[i].to_usize() as u32 | (s[i + CN].to_usize() as u32) << shift;

    // Output tiles keep the source footprint of a run of rows small (a rotated row walks
    // diagonally through hundreds of source rows and pages); results do not depend on the order.
    out.resize(width * height * CN, T::default());
    for (ty, tx) in tiles(width, height) {
        for y in ty.clone() {
            let fy = y as f32;
            let (ym1, ym4) = (fy * m[1], fy * m[4]);
            let (mx, my) = (ym1 + m[2], ym4 + m[5]);
            let mut x0 = tx.start;
            while x0 < tx.end {
                let n = CHUNK.min(tx.end - x0);
                let xb = x0 as f32;

                // Pass 1 (vectorised): source coordinates, floor, fractions, offsets, and how
                // many pixels have all four taps inside the source.
                let mut inside = 0u32;
                for i in 0..CHUNK {
                    let xf = xb + iota[i];
                    (ix[i], fa[i]) = floor_frac(F::fma(m[0], xf, mx));
                    (iy[i], fb[i]) = floor_frac(F::fma(m[3], xf, my));
                    ofs[i] = (iy[i] as u32)
                        .wrapping_mul(stride as u32)
                        .wrapping_add((ix[i] as u32).wrapping_mul(CN as u32));
                    inside += u32::from((ix[i] as u32) < inner_w && (iy[i] as u32) < inner_h);
                }
                let tail = x0 + n > vec_end;
                if tail {
                    for i in vec_end.saturating_sub(x0)..n {
                        let xf = xb + iota[i];
                        (ix[i], fa[i]) = floor_frac(F::fma(xf, m[0], ym1) + m[2]);
                        (iy[i], fb[i]) = floor_frac(F::fma(xf, m[3], ym4) + m[5]);
                        ofs[i] = (iy[i] as u32)
                            .wrapping_mul(stride as u32)
                            .wrapping_add((ix[i] as u32).wrapping_mul(CN as u32));
                    }
                }
                if tail || n < CHUNK {
                    inside = 0;
                    for i in 0..n {
                        inside += u32::from((ix[i] as u32) < inner_w && (iy[i] as u32) < inner_h);
                    }
                }
                let all_inside = inside as usize == n && u32_offsets;

                // Pass 2 (scalar): gather the four taps; 0 outside the source.
                if all_inside {
                    // Every lane has 0 <= ix <= sw - 2 and 0 <= iy <= sh - 2 (counted above), so
                    // `ofs = iy * stride + ix * CN` did not wrap (u32_offsets) and the highest
                    // sample read, ofs + stride + 2 * CN - 1 <= (sh - 1) * stride + sw * CN - 1,
                    // is inside `src`.
                    debug_assert!(
                        (0..n).all(|i| { ofs[i] as usize + stride + 2 * CN <= src.len() })
                    );
                    for i in 0..n {
                        let o = ofs[i] as usize;
                        let o1 = o + stride;
                        // SAFETY: `o + 2 * CN <= o1 + 2 * CN <= src.len()`, see above. Measured:
                        // checked slicing here costs 5 more instructions per pixel (cachegrind:
                        // 27 -> 19 for the whole kernel) and 25-40 % more time (2048x2048 u8:
                        // 6.6-8.1 ms vs 4.7-5.3 ms).
                        let (r0, r1) = unsafe {
                            (
                                src.get_unchecked(o..o + 2 * CN),
                                src.get_unchecked(o1..o1 + 2 * CN),
                            )
                        };
                        if CN == 1 {
                            top[i] = word(r0, 0);
                            bot[i] = word(r1, 0);
                        } else {
                            let c0 = i * CN;
                            p00[c0..c0 + CN].copy_from_slice(&r0[..CN]);
                            p01[c0..c0 + CN].copy_from_slice(&r0[CN..]);
                            p10[c0..c0 + CN].copy_from_slice(&r1[..CN]);
                            p11[c0..c0 + CN].copy_from_slice(&r1[CN..]);
                        }
                    }
                } else {
                    for i in 0..n {
                        let (x, yy) = (ix[i], iy[i]);
                        let o = i * CN;
                        let tap = |tx: i32, ty: i32, c: usize| {
                            if (tx as u32) < sw as u32 && (ty as u32) < sh as u32 {
                                src[ty as usize * stride + tx as usize * CN + c]
                            } else {
                                T::default()
                            }
                        };
                        if (x as u32) < inner_w && (yy as u32) < inner_h {
                            let base = yy as usize * stride + x as usize * CN;
                            let s = &src[base..base + stride + 2 * CN];
                            if CN == 1 {
                                top[i] = word(s, 0);
                                bot[i] = word(s, stride);
                            } else {
                                p00[o..o + CN].copy_from_slice(&s[..CN]);
                                p01[o..o + CN].copy_from_slice(&s[CN..2 * CN]);
                                p10[o..o + CN].copy_from_slice(&s[stride..stride + CN]);
                                p11[o..o + CN].copy_from_slice(&s[stride + CN..stride + 2 * CN]);
                            }
                        } else if x < -1 || x >= sw as i32 || yy < -1 || yy >= sh as i32 {
                            if CN == 1 {
                                (top[i], bot[i]) = (0, 0);
                            } else {
                                for p in [&mut p00, &mut p01, &mut p10, &mut p11] {
                                    p[o..o + CN].fill(T::default());
                                }
                            }
                        } else if CN == 1 {
                            let t = |tx, ty| tap(tx, ty, 0).to_usize() as u32;
                            top[i] = t(x, yy) | t(x + 1, yy) << shift;
                            bot[i] = t(x, yy + 1) | t(x + 1, yy + 1) << shift;
                        } else {
                            for c in 0..CN {
                                p00[o + c] = tap(x, yy, c);
                                p01[o + c] = tap(x + 1, yy, c);
                                p10[o + c] = tap(x, yy + 1, c);
                                p11[o + c] = tap(x + 1, yy + 1, c);
                            }
                        }
                    }
                }

                // Pass 3 (vectorised): interpolate, round, saturate.
                let len = n * CN;
                let o0 = (y * width + x0) * CN;
                let dst = &mut out[o0..o0 + len];
                if CN == 1 {
                    let (a, b, t, u) = (&fa[..len], &fb[..len], &top[..len], &bot[..len]);
                    for j in 0..len {
                        // Samples are < 2^16: the i32 route converts with one instruction.
                        let f00 = (t[j] & low_mask) as i32 as f32;
                        let f01 = (t[j] >> shift) as i32 as f32;
                        let f10 = (u[j] & low_mask) as i32 as f32;
                        let f11 = (u[j] >> shift) as i32 as f32;
                        let r0 = F::fma(a[j], f01 - f00, f00);
                        let r1 = F::fma(a[j], f11 - f10, f10);
                        dst[j] = round_sat(F::fma(b[j], r1 - r0, r0));
                    }
                } else {
                    for i in 0..n {
                        for c in 0..CN {
                            ar[i * CN + c] = fa[i];
                            br[i * CN + c] = fb[i];
                        }
                    }
                    let (a, b) = (&ar[..len], &br[..len]);
                    let (q00, q01, q10, q11) = (&p00[..len], &p01[..len], &p10[..len], &p11[..len]);
                    for j in 0..len {
                        let (f00, f01) = (q00[j].to_f32(), q01[j].to_f32());
                        let (f10, f11) = (q10[j].to_f32(), q11[j].to_f32());
                        let r0 = F::fma(a[j], f01 - f00, f00);
                        let r1 = F::fma(a[j], f11 - f10, f10);
                        dst[j] = round_sat(F::fma(b[j], r1 - r0, r0));
                    }
                }
                x0 += n;
            }
        }
    }
}

/// Output tiles, `TILE_H` rows by `TILE_W` columns, row-major.
pub(super) fn tiles(
    width: usize,
    height: usize,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> {
    const TILE_W: usize = 2 * CHUNK;
    const TILE_H: usize = 32;
    (0..height).step_by(TILE_H).flat_map(move |y| {
        (0..width)
            .step_by(TILE_W)
            .map(move |x| (y..(y + TILE_H).min(height), x..(x + TILE_W).min(width)))
    })
}

// ------------------------------------------------------------------------------------------------
// The fixed-point path (other channel counts), as OpenCV's `WarpAffineInvoker` + `remapBilinear`.

/// `saturate_cast<int>(double)` on x86: round half to even; out of range or NaN gives `INT_MIN`.
fn cv_round(v: f64) -> i32 {
    let r = v.round_ties_even();
    if (-2_147_483_648.0..=2_147_483_647.0).contains(&r) {
        r as i32
    } else {
        i32::MIN
    }
}

fn fixed_point<T: Sample>(
    img: &ImageRef<T>,
    inv: &[f64; 6],
    width: usize,
    height: usize,
    out: &mut Vec<T>,
) {
    const AB_SCALE: f64 = 1024.0; // 1 << AB_BITS
    const ROUND_DELTA: i32 = 16; // AB_SCALE / INTER_TAB_SIZE / 2
    let (sw, sh, cn) = (img.width as i64, img.height as i64, img.channels);
    let stride = img.width * cn;
    let src = img.data;
    let eight_bit = T::LEVELS <= 256;
    let adelta: Vec<i32> = (0..width)
        .map(|x| cv_round(inv[0] * x as f64 * AB_SCALE))
        .collect();
    let bdelta: Vec<i32> = (0..width)
        .map(|x| cv_round(inv[3] * x as f64 * AB_SCALE))
        .collect();
    let mut row = vec![T::default(); width * cn];
    for y in 0..height {
        let x0 = cv_round((inv[1] * y as f64 + inv[2]) * AB_SCALE).wrapping_add(ROUND_DELTA);
        let y0 = cv_round((inv[4] * y as f64 + inv[5]) * AB_SCALE).wrapping_add(ROUND_DELTA);
        for (x, px) in row.chunks_exact_mut(cn).enumerate() {
            let xx = x0.wrapping_add(adelta[x]) >> 5; // AB_BITS - INTER_BITS
            let yy = y0.wrapping_add(bdelta[x]) >> 5;
            // saturate_cast<short>: OpenCV stores the integer part in 16 bits.
            let ix = i64::from((xx >> 5).clamp(-32768, 32767));
            let iy = i64::from((yy >> 5).clamp(-32768, 32767));
            let (fx, fy) = (xx & 31, yy & 31);
            let tap = |tx: i64, ty: i64, c: usize| {
                if (0..sw).contains(&tx) && (0..sh).contains(&ty) {
                    src[ty as usize * stride + tx as usize * cn + c]
                } else {
                    T::default()
                }
            };
            if eight_bit {
                // BilinearTab_i: (1 - fy/32)(1 - fx/32) * 2^15 etc., exact integers summing to 2^15.
                let w00 = (32 - fy) * (32 - fx) * 32;
                let w01 = (32 - fy) * fx * 32;
                let w10 = fy * (32 - fx) * 32;
                let w11 = fy * fx * 32;
                for (c, d) in px.iter_mut().enumerate() {
                    let s = tap(ix, iy, c).to_usize() as i64 * i64::from(w00)
                        + tap(ix + 1, iy, c).to_usize() as i64 * i64::from(w01)
                        + tap(ix, iy + 1, c).to_usize() as i64 * i64::from(w10)
                        + tap(ix + 1, iy + 1, c).to_usize() as i64 * i64::from(w11);
                    *d = T::from_usize_sat(((s + (1 << 14)) >> 15) as usize);
                }
            } else {
                // BilinearTab_f: the same weights as f32 (exact), summed in f32 left to right.
                let (tx, ty) = (fx as f32 * (1.0 / 32.0), fy as f32 * (1.0 / 32.0));
                let (w00, w01) = ((1.0 - ty) * (1.0 - tx), (1.0 - ty) * tx);
                let (w10, w11) = (ty * (1.0 - tx), ty * tx);
                for (c, d) in px.iter_mut().enumerate() {
                    let s = tap(ix, iy, c).to_f32() * w00
                        + tap(ix + 1, iy, c).to_f32() * w01
                        + tap(ix, iy + 1, c).to_f32() * w10
                        + tap(ix + 1, iy + 1, c).to_f32() * w11;
                    *d = round_sat(s);
                }
            }
        }
        out.extend_from_slice(&row);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDENTITY: Affine = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]];

    /// A deterministic pseudo-random image (xorshift), no dependency needed.
    fn noise<T: Sample>(w: usize, h: usize, c: usize, seed: u64) -> Image<T> {
        let mut s = seed | 1;
        let data = (0..w * h * c)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                T::from_usize_sat((s >> 20) as usize % (T::MAX as usize + 1))
            })
            .collect();
        Image {
            width: w,
            height: h,
            channels: c,
            data,
        }
    }

    fn warp<T: Sample>(img: &Image<T>, m: &Affine, w: usize, h: usize) -> Image<T> {
        warp_affine(img.view(), m, w, h).unwrap()
    }

    #[test]
    fn identity_is_the_input() {
        for c in [1, 2, 3, 4, 5] {
            let img = noise::<u8>(37, 23, c, 7);
            assert_eq!(warp(&img, &IDENTITY, 37, 23), img, "u8, {c} channels");
            let img = noise::<u16>(19, 41, c, 9);
            assert_eq!(warp(&img, &IDENTITY, 19, 41), img, "u16, {c} channels");
        }
    }

    #[test]
    fn integer_translation_shifts_and_fills_with_zero() {
        let (tx, ty) = (3i64, -2i64);
        let m = [[1.0, 0.0, tx as f64], [0.0, 1.0, ty as f64]];
        for c in [1, 2, 3] {
            let img = noise::<u8>(40, 30, c, 3);
            let out = warp(&img, &m, 45, 33);
            for y in 0..33i64 {
                for x in 0..45i64 {
                    let (sx, sy) = (x - tx, y - ty);
                    for k in 0..c {
                        let want = if (0..40).contains(&sx) && (0..30).contains(&sy) {
                            img.data[(sy as usize * 40 + sx as usize) * c + k]
                        } else {
                            0
                        };
                        let got = out.data[(y as usize * 45 + x as usize) * c + k];
                        assert_eq!(got, want, "({x}, {y}) channel {k}, {c} channels");
                    }
                }
            }
        }
    }

    #[test]
    fn half_pixel_shift_rounds_half_to_even_and_blends_with_the_border() {
        // Source x = out x - 0.5: each output is the mean of two neighbours (out 0: half border).
        let img = Image {
            width: 5,
            height: 1,
            channels: 1,
            data: vec![1u8, 2, 3, 4, 255],
        };
        let out = warp(&img, &[[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]], 6, 1);
        // 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, 3.5 -> 4, 129.5 -> 130, 127.5 -> 128 (ties to even);
        // the single source row blends with the 0 row below it at fraction 0, so it is unchanged.
        assert_eq!(out.data, vec![0, 2, 2, 4, 130, 128]);
    }

    #[test]
    fn scaling_down_samples_the_mapped_centres() {
        // Pure scale 1/2 about the origin: output x reads source 2x exactly (fraction 0).
        let img = noise::<u16>(16, 8, 1, 5);
        let out = warp(&img, &[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]], 8, 4);
        for y in 0..4 {
            for x in 0..8 {
                assert_eq!(out.data[y * 8 + x], img.data[2 * y * 16 + 2 * x]);
            }
        }
    }

    #[test]
    fn singular_matrix_maps_everything_to_the_origin_pixel() {
        // OpenCV replaces 1/det by 0: the inverse is all zeros.
        let img = noise::<u8>(9, 9, 1, 11);
        let out = warp(&img, &[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]], 7, 5);
        assert!(out.data.iter().all(|&v| v == img.data[0]));
    }

    #[test]
    fn far_outside_and_huge_matrices_give_zeros_without_panicking() {
        let img = noise::<u8>(10, 10, 3, 13);
        let out = warp(&img, &[[1.0, 0.0, 1e7], [0.0, 1.0, -1e9]], 20, 20);
        assert!(out.data.iter().all(|&v| v == 0));
        // Inverse entries overflow f32: coordinates become inf/NaN, handled as outside.
        let out = warp(&img, &[[1e-300, 0.0, 0.0], [0.0, 1e-300, 0.0]], 8, 8);
        assert_eq!(out.data.len(), 8 * 8 * 3);
        let out = warp(&img, &[[1e300, 1e300, 1e300], [-1e300, 1e300, 0.0]], 8, 8);
        assert_eq!(out.data.len(), 8 * 8 * 3);
        // Tiny sources: one row, one column, one pixel.
        for (w, h) in [(1, 1), (1, 7), (7, 1)] {
            let img = noise::<u16>(w, h, 1, 17);
            let rot = [[0.8, -0.6, 2.0], [0.6, 0.8, -1.0]];
            assert_eq!(warp(&img, &rot, 5, 5).data.len(), 25);
        }
    }

    #[test]
    fn baseline_and_fma_builds_agree() {
        // The f64-emulated FMA must give the hardware result; compare both builds directly.
        let rot = [[0.93, -0.27, 11.3], [0.29, 0.97, -7.9]];
        for c in [1usize, 3, 4] {
            let img8 = noise::<u8>(131, 97, c, 21 + c as u64);
            let img16 = noise::<u16>(131, 97, c, 31 + c as u64);
            let inv = invert(&rot);
            let run8 = |fused: bool| {
                let mut out = Vec::new();
                match (c, fused) {
                    (1, false) => {
                        float_rows::<u8, ViaF64, 1>(&img8.view(), &inv, 123, 101, &mut out)
                    }
                    (3, false) => {
                        float_rows::<u8, ViaF64, 3>(&img8.view(), &inv, 123, 101, &mut out)
                    }
                    (4, false) => {
                        float_rows::<u8, ViaF64, 4>(&img8.view(), &inv, 123, 101, &mut out)
                    }
                    _ => out = warp(&img8, &rot, 123, 101).data,
                }
                out
            };
            let run16 = |fused: bool| {
                let mut out = Vec::new();
                match (c, fused) {
                    (1, false) => {
                        float_rows::<u16, ViaF64, 1>(&img16.view(), &inv, 123, 101, &mut out)
                    }
                    (3, false) => {
                        float_rows::<u16, ViaF64, 3>(&img16.view(), &inv, 123, 101, &mut out)
                    }
                    (4, false) => {
                        float_rows::<u16, ViaF64, 4>(&img16.view(), &inv, 123, 101, &mut out)
                    }
                    _ => out = warp(&img16, &rot, 123, 101).data,
                }
                out
            };
            assert_eq!(run8(false), run8(true), "u8, {c} channels");
            assert_eq!(run16(false), run16(true), "u16, {c} channels");
        }
    }

    /// The float model written plainly, one pixel at a time, with std's `floor` and
    /// `round_ties_even`: the optimised kernel (tiles, chunks, fast and slow gathers, tail
    /// columns, the unchecked loads) must give the same samples.
    fn naive<T: Sample>(img: &Image<T>, m: &Affine, w: usize, h: usize) -> Vec<T> {
        let mf = invert(m).map(|v| v as f32);
        let (sw, sh, cn) = (img.width as i64, img.height as i64, img.channels);
        let fma = ViaF64::fma;
        let mut out = Vec::with_capacity(w * h * cn);
        for y in 0..h {
            let fy = y as f32;
            for x in 0..w {
                let fx = x as f32;
                let (sx, sy) = if x < w / 16 * 16 {
                    (
                        fma(mf[0], fx, fy * mf[1] + mf[2]),
                        fma(mf[3], fx, fy * mf[4] + mf[5]),
                    )
                } else {
                    (
                        fma(fx, mf[0], fy * mf[1]) + mf[2],
                        fma(fx, mf[3], fy * mf[4]) + mf[5],
                    )
                };
                let ok = sx.abs() < 1e7 && sy.abs() < 1e7; // false for NaN and infinities
                let (flx, fly) = if ok {
                    (sx.floor(), sy.floor())
                } else {
                    (-9.0, -9.0)
                };
                let (a, b) = (sx - flx, sy - fly);
                let (ix, iy) = (flx as i64, fly as i64);
                for c in 0..cn {
                    let tap = |tx: i64, ty: i64| {
                        if (0..sw).contains(&tx) && (0..sh).contains(&ty) {
                            img.data[(ty * sw + tx) as usize * cn + c].to_f32()
                        } else {
                            0.0
                        }
                    };
                    let (p00, p01) = (tap(ix, iy), tap(ix + 1, iy));
                    let (p10, p11) = (tap(ix, iy + 1), tap(ix + 1, iy + 1));
                    let r0 = fma(a, p01 - p00, p00);
                    let r1 = fma(a, p11 - p10, p10);
                    let r = fma(b, r1 - r0, r0).round_ties_even().clamp(0.0, T::MAX);
                    out.push(T::from_usize_sat(if ok { r as usize } else { 0 }));
                }
            }
        }
        out
    }

    #[test]
    fn optimised_kernel_equals_the_plain_model_on_random_cases() {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move |lo: f64, hi: f64| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            lo + (hi - lo) * ((s >> 11) as f64 / (1u64 << 53) as f64)
        };
        for case in 0..150 {
            let (sw, sh) = (next(1.0, 90.0) as usize, next(1.0, 70.0) as usize);
            let (w, h) = (next(1.0, 200.0) as usize, next(1.0, 80.0) as usize);
            let cn = [1, 3, 4][case % 3];
            let (ang, sc) = (next(-3.2, 3.2), next(0.3, 3.0));
            let shear = next(-0.3, 0.3);
            let m = [
                [ang.cos() * sc, -ang.sin() * sc + shear, next(-40.0, 60.0)],
                [ang.sin() * sc, ang.cos() * sc, next(-40.0, 60.0)],
            ];
            let img8 = noise::<u8>(sw, sh, cn, case as u64 + 1);
            let img16 = noise::<u16>(sw, sh, cn, case as u64 + 7);
            let what = format!("case {case}: {sw}x{sh}x{cn} -> {w}x{h}, m = {m:?}");
            assert_eq!(
                warp(&img8, &m, w, h).data,
                naive(&img8, &m, w, h),
                "u8 {what}"
            );
            assert_eq!(
                warp(&img16, &m, w, h).data,
                naive(&img16, &m, w, h),
                "u16 {what}"
            );
        }
    }

    #[test]
    fn floor_frac_matches_floor() {
        for &v in &[
            0.0f32, -0.0, 0.25, -0.25, 1.0, -1.0, 2.5, -2.5, 1e-30, -1e-30, 4095.999, -4096.001,
            0.99999994,
        ] {
            let (n, f) = floor_frac(v);
            assert_eq!(n as f32, v.floor(), "{v}");
            assert_eq!(f, v - v.floor(), "{v}");
        }
        assert_eq!(floor_frac(f32::NAN).0, -4_194_000);
        assert_eq!(floor_frac(f32::INFINITY).0, 4_194_000);
        assert_eq!(floor_frac(f32::NEG_INFINITY).0, -4_194_000);
    }

    #[test]
    fn round_sat_is_half_to_even_and_saturating() {
        assert_eq!(round_sat::<u8>(0.5), 0);
        assert_eq!(round_sat::<u8>(1.5), 2);
        assert_eq!(round_sat::<u8>(2.5), 2);
        assert_eq!(round_sat::<u8>(2.4999998), 2);
        assert_eq!(round_sat::<u8>(254.5), 254);
        assert_eq!(round_sat::<u8>(300.0), 255);
        assert_eq!(round_sat::<u8>(-3.0), 0);
        assert_eq!(round_sat::<u8>(f32::NAN), 0);
        assert_eq!(round_sat::<u16>(65534.5), 65534);
        assert_eq!(round_sat::<u16>(1e9), 65535);
    }

    #[test]
    fn invalid_arguments_are_errors() {
        let img = noise::<u8>(4, 4, 1, 1);
        let v = img.view();
        assert!(warp_affine(v, &[[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0]], 4, 4).is_err());
        assert!(warp_affine(v, &[[1.0, 0.0, f64::INFINITY], [0.0, 1.0, 0.0]], 4, 4).is_err());
        assert!(warp_affine(v, &IDENTITY, 0, 4).is_err());
        assert!(warp_affine(v, &IDENTITY, 4, 0).is_err());
        assert!(warp_affine(v, &IDENTITY, MAX_SIDE + 1, 1).is_err());
        let empty = ImageRef::<u8>::new(0, 3, 1, &[]).unwrap();
        assert!(warp_affine(empty, &IDENTITY, 4, 4).is_err());
        let e = warp_boxes(&[[0.0, 0.0, f64::NAN, 1.0]], &IDENTITY, 4, 4, 0.25).unwrap_err();
        assert!(e.to_string().contains("box 0"), "{e}");
        assert!(warp_boxes(&[], &IDENTITY, 4, 4, 1.5).is_err());
        assert!(warp_boxes(&[], &IDENTITY, 4, 4, f64::NAN).is_err());
    }

    #[test]
    fn identity_keeps_boxes_exactly() {
        let boxes = [
            [1.25, 2.5, 30.75, 40.0],
            [0.0, 0.0, 64.0, 48.0],
            [10.0, 3.0, 11.0, 4.0],
        ];
        let (kept, keep) = warp_boxes(&boxes, &IDENTITY, 64, 48, 0.25).unwrap();
        assert_eq!(kept, boxes.to_vec());
        assert_eq!(keep, vec![true; 3]);
    }

    #[test]
    fn box_maths_by_hand() {
        // Translate by (+10, -5) into a 50 x 40 output.
        let m = [[1.0, 0.0, 10.0], [0.0, 1.0, -5.0]];
        let boxes = [
            [0.0, 10.0, 20.0, 30.0],  // -> [10, 5, 30, 25], inside
            [30.0, 0.0, 50.0, 10.0],  // -> [40, -5, 60, 5]: 10 x 5 visible of 20 x 10 = 0.25
            [35.0, 0.0, 55.0, 10.0],  // -> [45, -5, 65, 5]: 5 x 5 of 200 = 0.125 -> dropped
            [100.0, 0.0, 120.0, 5.0], // entirely outside -> dropped
            [5.0, 5.0, 5.0, 9.0],     // zero width -> dropped
            [20.0, 30.0, 0.0, 10.0],  // corners in the other order: the first box again
        ];
        let (kept, keep) = warp_boxes(&boxes, &m, 50, 40, 0.25).unwrap();
        assert_eq!(keep, vec![true, true, false, false, false, true]);
        assert_eq!(
            kept,
            vec![
                [10.0, 5.0, 30.0, 25.0],
                [40.0, 0.0, 50.0, 5.0],
                [10.0, 5.0, 30.0, 25.0]
            ]
        );
        // min_visible 0 keeps any box with some area inside; 1 only fully visible ones.
        let (_, keep0) = warp_boxes(&boxes, &m, 50, 40, 0.0).unwrap();
        assert_eq!(keep0, vec![true, true, true, false, false, true]);
        let (_, keep1) = warp_boxes(&boxes, &m, 50, 40, 1.0).unwrap();
        assert_eq!(keep1, vec![true, false, false, false, false, true]);
    }

    #[test]
    fn rotated_box_encloses_the_mapped_corners() {
        // 90 degrees about the origin, then shifted into view: (x, y) -> (-y + 20, x).
        let m = [[0.0, -1.0, 20.0], [1.0, 0.0, 0.0]];
        let (kept, keep) = warp_boxes(&[[2.0, 3.0, 6.0, 11.0]], &m, 30, 30, 0.25).unwrap();
        assert_eq!(keep, vec![true]);
        assert_eq!(kept, vec![[9.0, 2.0, 17.0, 6.0]]);
        // 45 degrees: a 2 x 2 square becomes a diamond whose enclosing box is 2*sqrt(2) wide.
        let (c, s) = (
            std::f64::consts::FRAC_1_SQRT_2,
            std::f64::consts::FRAC_1_SQRT_2,
        );
        let m = [[c, -s, 10.0], [s, c, 10.0]];
        let (kept, _) = warp_boxes(&[[0.0, 0.0, 2.0, 2.0]], &m, 30, 30, 0.25).unwrap();
        let b = kept[0];
        assert!((b[2] - b[0] - 2.0 * std::f64::consts::SQRT_2).abs() < 1e-12);
        assert!((b[3] - b[1] - 2.0 * std::f64::consts::SQRT_2).abs() < 1e-12);
    }

    #[test]
    fn huge_matrices_drop_boxes_instead_of_returning_nan() {
        let m = [[1e300, 1e300, 0.0], [1e300, -1e300, 0.0]];
        let (kept, keep) = warp_boxes(&[[1e10, 1e10, 1e12, 1e12]], &m, 10, 10, 0.0).unwrap();
        assert_eq!(keep, vec![false]);
        assert!(kept.is_empty());
    }
}
