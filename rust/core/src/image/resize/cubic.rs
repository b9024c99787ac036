//! `INTER_CUBIC` resize as OpenCV 5.0 computes it in its own code (`cv::hal::resize`,
//! `resizeGeneric_` with `HResizeCubic` / `VResizeCubic` in `modules/imgproc/src/resize.cpp`).
//!
//! * Source coordinate of output `d`: `f = float((d + 0.5) * scale - 0.5)` (`scale` = source /
//!   output size, in `f64`), taps `floor(f) - 1 ..= floor(f) + 2`, clamped to the image (edge
//!   pixels replicated), weights `interpolateCubic(f - floor(f))` (Keys, `A = -0.75`) in `f32`.
//! * 8 bit: the weights are `round(w * 2048)` (`INTER_RESIZE_COEF_BITS = 11`); rows are first
//!   resized horizontally into `i32` sums, then combined vertically. OpenCV's vertical pass
//!   treats each output row in groups of 8 samples (SSE, the baseline x86-64 wheels are built
//!   for) in `f32`: `S0 b0 + (S1 b1 + (S2 b2 + S3 b3))` with `bk = beta_k * 2^-22`, every product
//!   and sum rounded, then rounded half to even; the last `(width * channels) % 8` samples of a row
//!   in integers, `(sum + 2^21) >> 22`.
//! * 16 bit: `f32` weights and sums, `((p0 + p1) + p2) + p3` horizontally; vertically groups of 8
//!   as above, the remainder `((S0 b0 + S1 b1) + S2 b2) + S3 b3`; rounded half to even.
//!
//! `cv2.resize` itself hands `INTER_CUBIC` to Intel IPP when OpenCV was built with it (as the
//! PyPI wheels are: `ipp_resize` in resize.cpp refuses IPP only for nearest, "super" and 8-bit
//! linear), which computes in floating point with its own operation order: this file equals
//! `cv2.resize` with `cv2.ipp.setUseIPP(False)` on every sample and the IPP path within 1 level
//! (docs/image.md, "Oracle conventions").

use super::super::{Image, ImageRef, Sample};

/// OpenCV's `interpolateCubic(x)` in `f32`, operation by operation.
fn interpolate_cubic(x: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let x1 = x + 1.0;
    let c0 = ((A * x1 - 5.0 * A) * x1 + 8.0 * A) * x1 - 4.0 * A;
    let c1 = ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0;
    let y = 1.0 - x;
    let c2 = ((A + 2.0) * y - (A + 3.0)) * y * y + 1.0;
    let c3 = 1.0 - c0 - c1 - c2;
    [c0, c1, c2, c3]
}

/// Per output position along one axis: first tap (`floor - 1`, unclamped) and the weights.
struct Taps {
    first: Vec<i64>,
    weights: Vec<[f32; 4]>,
}

fn taps(src: usize, dst: usize) -> Taps {
    let scale = 1.0 / (dst as f64 / src as f64);
    let mut first = Vec::with_capacity(dst);
    let mut weights = Vec::with_capacity(dst);
    for d in 0..dst {
        let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let s = f.floor();
        let si = s as i64;
        first.push(si - 1);
        weights.push(interpolate_cubic(f - s));
    }
    Taps { first, weights }
}

/// `saturate_cast<short>(w * 2048)`.
fn fixed(w: [f32; 4]) -> [i32; 4] {
    w.map(|v| (v * 2048.0).round_ties_even().clamp(-32768.0, 32767.0) as i32)
}

/// Resize `img` into `out` (both checked by the caller; sizes differ).
pub(super) fn cubic<T: Sample>(img: ImageRef<T>, out: &mut Image<T>) {
    let (sw, sh, cn) = (img.width, img.height, img.channels);
    let (dw, dh) = (out.width, out.height);
    let xs = taps(sw, dw);
    let ys = taps(sh, dh);
    let width = dw * cn;
    let stride = sw * cn;
    // the four taps of each output column as sample offsets of channel 0, clamped to the row
    // (inside OpenCV's `[xmin, xmax)` the clamp changes nothing)
    let xidx: Vec<[usize; 4]> = xs
        .first
        .iter()
        .map(|&f| std::array::from_fn(|k| (f + k as i64).clamp(0, sw as i64 - 1) as usize * cn))
        .collect();
    let rows_of = |dy: usize| -> [usize; 4] {
        std::array::from_fn(|k| (ys.first[dy] + k as i64).clamp(0, sh as i64 - 1) as usize)
    };
    // the vertical pass's SIMD part: whole groups of 8 samples of the output row
    let vec_end = width / 8 * 8;
    if T::LEVELS <= 256 {
        let ialpha: Vec<[i32; 4]> = xs.weights.iter().map(|&w| fixed(w)).collect();
        let mut rows: Vec<Option<Vec<i32>>> = vec![None; sh];
        for dy in 0..dh {
            let r = rows_of(dy);
            for &k in &r {
                if rows[k].is_none() {
                    let src = &img.data[k * stride..(k + 1) * stride];
                    let mut h = vec![0i32; width];
                    for (dx, (idx, a)) in xidx.iter().zip(&ialpha).enumerate() {
                        for c in 0..cn {
                            let t = |j: usize| src[idx[j] + c].to_usize() as i32 * a[j];
                            h[dx * cn + c] = t(0) + t(1) + t(2) + t(3);
                        }
                    }
                    rows[k] = Some(h);
                }
            }
            let s: [&[i32]; 4] = std::array::from_fn(|k| rows[r[k]].as_deref().unwrap_or(&[]));
            let (s0, s1, s2, s3) = (
                &s[0][..width],
                &s[1][..width],
                &s[2][..width],
                &s[3][..width],
            );
            let ib = fixed(ys.weights[dy]);
            let b = ib.map(|v| v as f32 * (1.0 / 4_194_304.0));
            let dst = &mut out.data[dy * width..(dy + 1) * width];
            for x in 0..vec_end {
                let t = s2[x] as f32 * b[2] + s3[x] as f32 * b[3];
                let t = s1[x] as f32 * b[1] + t;
                dst[x] = T::from_f32_rne(s0[x] as f32 * b[0] + t);
            }
            for x in vec_end..width {
                let sum = i64::from(s0[x]) * i64::from(ib[0])
                    + i64::from(s1[x]) * i64::from(ib[1])
                    + i64::from(s2[x]) * i64::from(ib[2])
                    + i64::from(s3[x]) * i64::from(ib[3]);
                dst[x] = T::from_usize_sat(((sum + (1 << 21)) >> 22).clamp(0, 255) as usize);
            }
        }
    } else {
        let mut rows: Vec<Option<Vec<f32>>> = vec![None; sh];
        for dy in 0..dh {
            let r = rows_of(dy);
            for &k in &r {
                if rows[k].is_none() {
                    let src = &img.data[k * stride..(k + 1) * stride];
                    let mut h = vec![0f32; width];
                    for (dx, (idx, a)) in xidx.iter().zip(&xs.weights).enumerate() {
                        for c in 0..cn {
                            let t = |j: usize| src[idx[j] + c].to_f32() * a[j];
                            h[dx * cn + c] = ((t(0) + t(1)) + t(2)) + t(3);
                        }
                    }
                    rows[k] = Some(h);
                }
            }
            let s: [&[f32]; 4] = std::array::from_fn(|k| rows[r[k]].as_deref().unwrap_or(&[]));
            let (s0, s1, s2, s3) = (
                &s[0][..width],
                &s[1][..width],
                &s[2][..width],
                &s[3][..width],
            );
            let b = ys.weights[dy];
            let dst = &mut out.data[dy * width..(dy + 1) * width];
            for x in 0..vec_end {
                let t = s2[x] * b[2] + s3[x] * b[3];
                let t = s1[x] * b[1] + t;
                dst[x] = T::from_f32_rne(s0[x] * b[0] + t);
            }
            for x in vec_end..width {
                let v = ((s0[x] * b[0] + s1[x] * b[1]) + s2[x] * b[2]) + s3[x] * b[3];
                dst[x] = T::from_f32_rne(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_at_zero_and_half() {
        assert_eq!(interpolate_cubic(0.0), [0.0, 1.0, 0.0, 0.0]);
        let h = interpolate_cubic(0.5);
        assert_eq!(h, [-0.09375, 0.59375, 0.59375, -0.09375]);
        assert_eq!(fixed(h), [-192, 1216, 1216, -192]);
    }

    #[test]
    fn taps_of_a_shrink_and_an_enlargement() {
        // 4 -> 2: centres at 0.5 and 2.5, fraction 0.5; the first output reads tap -1 (clamped)
        let t = taps(4, 2);
        assert_eq!(t.first, vec![-1, 1]);
        // 2 -> 4: f = -0.25, 0.25, 0.75, 1.25
        let t = taps(2, 4);
        assert_eq!(t.first, vec![-2, -1, -1, 0]);
        assert_eq!(t.weights[1], interpolate_cubic(0.25));
    }
}
