//! `INTER_AREA` when shrinking along both axes: box averages for integer ratios (OpenCV's
//! `resizeAreaFast`) and area-weighted taps for the others (`computeResizeAreaTab` +
//! `ResizeArea_Invoker`). Enlarging with `INTER_AREA` is a two-tap kernel (`bilinear.rs`).

use crate::image::{Image, ImageRef, Sample};

// ---------------------------------------------------------------------------------------------
// INTER_AREA, integer shrink (OpenCV's resizeAreaFast)

pub(super) fn area_integer<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, ix: usize, iy: usize) {
    let cn = img.channels;
    let dw = out.width * cn;
    let src_stride = img.width * cn;
    // Only the columns that fall into output pixels are read (`sw == dw * ix` here anyway).
    let used = dw * ix;
    let area = ix * iy;

    if ix == 2 && iy == 2 && matches!(cn, 1 | 3 | 4) {
        // OpenCV's dedicated 2x2 kernel rounds half up with integers.
        for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
            let r0 = &img.data[2 * dy * src_stride..][..used];
            let r1 = &img.data[(2 * dy + 1) * src_stride..][..used];
            box2x2(r0, r1, drow, cn);
        }
        return;
    }

    let scale = 1.0f32 / area as f32;
    let top = T::LEVELS - 1;
    if T::LEVELS > 256 && area * top >= 1 << 24 {
        // OpenCV sums 16-bit boxes in f32, which is inexact past 2**24: keep its order.
        box_sums_ordered(img, out, ix, iy, scale, true);
    } else if area.checked_mul(top).is_none_or(|m| m > i32::MAX as usize) {
        // Boxes of more than 8.4 M 8-bit pixels: sums need 64 bits (OpenCV's int overflows).
        box_sums_ordered(img, out, ix, iy, scale, false);
    } else if iy * top <= u16::MAX as usize {
        // Column sums fit 16 bits: twice the lanes per vector add. Below 2**24 every f32 sum
        // is exact, so the order of additions does not matter.
        box_sums::<T, u16>(img, out, ix, iy, scale);
    } else {
        box_sums::<T, u32>(img, out, ix, iy, scale);
    }
}

/// Integer column-sum accumulator for the box average.
trait Acc: Copy + Default {
    fn add<T: Sample>(self, v: T) -> Self;
    fn widen(self) -> u32;
}

impl Acc for u16 {
    #[inline(always)]
    fn add<T: Sample>(self, v: T) -> Self {
        self.wrapping_add(v.to_usize() as u16)
    }
    #[inline(always)]
    fn widen(self) -> u32 {
        u32::from(self)
    }
}

impl Acc for u32 {
    #[inline(always)]
    fn add<T: Sample>(self, v: T) -> Self {
        self.wrapping_add(v.to_usize() as u32)
    }
    #[inline(always)]
    fn widen(self) -> u32 {
        self
    }
}

/// Box average with exact integer sums: `iy` rows summed per column, then `ix` columns per
/// output sample, then OpenCV's `round(sum * (1/area))` in f32.
fn box_sums<T: Sample, A: Acc>(
    img: ImageRef<T>,
    out: &mut Image<T>,
    ix: usize,
    iy: usize,
    scale: f32,
) {
    let cn = img.channels;
    let dw = out.width * cn;
    let src_stride = img.width * cn;
    let used = dw * ix;
    let mut acc = vec![A::default(); used];
    for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
        let block = &img.data[dy * iy * src_stride..(dy + 1) * iy * src_stride];
        acc.fill(A::default());
        for row in block.chunks_exact(src_stride) {
            for (a, s) in acc.iter_mut().zip(&row[..used]) {
                *a = a.add(*s);
            }
        }
        // Fixed cell widths let the compiler unroll and vectorise the horizontal sums.
        match ix {
            1 => cells::<T, A, 1>(&acc, drow, cn, scale),
            2 => cells::<T, A, 2>(&acc, drow, cn, scale),
            3 => cells::<T, A, 3>(&acc, drow, cn, scale),
            4 => cells::<T, A, 4>(&acc, drow, cn, scale),
            5 => cells::<T, A, 5>(&acc, drow, cn, scale),
            6 => cells::<T, A, 6>(&acc, drow, cn, scale),
            8 => cells::<T, A, 8>(&acc, drow, cn, scale),
            _ => {
                for (dpix, cell) in drow.chunks_exact_mut(cn).zip(acc.chunks_exact(ix * cn)) {
                    for (c, d) in dpix.iter_mut().enumerate() {
                        let sum: u32 = cell.iter().skip(c).step_by(cn).map(|a| a.widen()).sum();
                        *d = T::from_f32_rne(sum as i32 as f32 * scale);
                    }
                }
            }
        }
    }
}

#[inline(always)]
fn cells<T: Sample, A: Acc, const N: usize>(acc: &[A], drow: &mut [T], cn: usize, scale: f32) {
    if cn == 1 {
        for (d, cell) in drow.iter_mut().zip(acc.chunks_exact(N)) {
            let mut sum = 0u32;
            for a in cell {
                sum += a.widen();
            }
            *d = T::from_f32_rne(sum as i32 as f32 * scale);
        }
        return;
    }
    for (dpix, cell) in drow.chunks_exact_mut(cn).zip(acc.chunks_exact(N * cn)) {
        for (c, d) in dpix.iter_mut().enumerate() {
            let mut sum = 0u32;
            for k in 0..N {
                sum += cell[k * cn + c].widen();
            }
            *d = T::from_f32_rne(sum as i32 as f32 * scale);
        }
    }
}

fn box2x2<T: Sample>(r0: &[T], r1: &[T], drow: &mut [T], cn: usize) {
    let pairs = r0.chunks_exact(2 * cn).zip(r1.chunks_exact(2 * cn));
    for (dpix, (a, b)) in drow.chunks_exact_mut(cn).zip(pairs) {
        for c in 0..cn {
            let s = a[c].to_usize() + a[c + cn].to_usize() + b[c].to_usize() + b[c + cn].to_usize();
            dpix[c] = T::from_usize_sat((s + 2) >> 2);
        }
    }
}

/// Box averages with sums past what the fast paths hold. `opencv_f32` reproduces OpenCV's
/// 16-bit summation: the box's pixels in row-major order, four at a time added as an int to an
/// f32 sum, the last `area % 4` one by one. Otherwise sums are exact (u64).
fn box_sums_ordered<T: Sample>(
    img: ImageRef<T>,
    out: &mut Image<T>,
    ix: usize,
    iy: usize,
    scale: f32,
    opencv_f32: bool,
) {
    let cn = img.channels;
    let dw = out.width * cn;
    let stride = img.width * cn;
    let area = ix * iy;
    let grouped = area - area % 4;
    let mut sum = vec![0f32; dw];
    let mut group = vec![0u64; dw];
    for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
        sum.fill(0.0);
        group.fill(0);
        let block = &img.data[dy * iy * stride..(dy + 1) * iy * stride];
        // Every output sample visits its box in the same order, so `k` is shared.
        let mut k = 0;
        for row in block.chunks_exact(stride) {
            for sx in 0..ix {
                let samples = (0..dw).map(|i| row[((i / cn) * ix + sx) * cn + i % cn].to_usize());
                if opencv_f32 && k >= grouped {
                    for (s, v) in sum.iter_mut().zip(samples) {
                        *s += v as f32;
                    }
                } else {
                    for (g, v) in group.iter_mut().zip(samples) {
                        *g += v as u64;
                    }
                    if opencv_f32 && k % 4 == 3 {
                        for (s, g) in sum.iter_mut().zip(group.iter_mut()) {
                            *s += *g as f32;
                            *g = 0;
                        }
                    }
                }
                k += 1;
            }
        }
        if !opencv_f32 {
            for (s, g) in sum.iter_mut().zip(&group) {
                *s = *g as f32;
            }
        }
        for (d, s) in drow.iter_mut().zip(&sum) {
            *d = T::from_f32_rne(*s * scale);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// INTER_AREA, non-integer shrink (OpenCV's computeResizeAreaTab + ResizeArea_Invoker)

/// Area taps of one axis, padded to the same count per output pixel with zero weights (adding
/// `+0.0` to a non-negative f32 sum changes nothing, so padding keeps OpenCV's results).
struct AreaTaps {
    taps: usize,
    index: Vec<usize>,
    weight: Vec<f32>,
}

impl AreaTaps {
    fn new(ssize: usize, dsize: usize, scale: f64) -> Self {
        let mut per_pixel: Vec<Vec<(usize, f32)>> = Vec::with_capacity(dsize);
        let last = ssize as i64 - 1;
        for d in 0..dsize {
            let mut taps = Vec::new();
            let fs1 = d as f64 * scale;
            let fs2 = fs1 + scale;
            let cell = scale.min(ssize as f64 - fs1);
            let mut s2 = (fs2.floor() as i64).min(last);
            let s1 = (fs1.ceil() as i64).min(s2);
            s2 = s2.max(0);
            if s1 as f64 - fs1 > 1e-3 {
                taps.push(((s1 - 1).max(0) as usize, ((s1 as f64 - fs1) / cell) as f32));
            }
            for s in s1.max(0)..s2 {
                taps.push((s as usize, (1.0 / cell) as f32));
            }
            if fs2 - s2 as f64 > 1e-3 {
                let w = (fs2 - s2 as f64).min(1.0).min(cell) / cell;
                taps.push((s2 as usize, w as f32));
            }
            per_pixel.push(taps);
        }
        let taps = per_pixel.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut index = Vec::with_capacity(dsize * taps);
        let mut weight = Vec::with_capacity(dsize * taps);
        for list in &per_pixel {
            let pad = list.last().map_or(0, |&(s, _)| s);
            for j in 0..taps {
                let (s, w) = list.get(j).copied().unwrap_or((pad, 0.0));
                index.push(s);
                weight.push(w);
            }
        }
        AreaTaps {
            taps,
            index,
            weight,
        }
    }
}

pub(super) fn area_fractional<T: Sample>(
    img: ImageRef<T>,
    out: &mut Image<T>,
    scale_x: f64,
    scale_y: f64,
) {
    let cn = img.channels;
    let dw = out.width * cn;
    let xt = AreaTaps::new(img.width, out.width, scale_x);
    let yt = AreaTaps::new(img.height, out.height, scale_y);
    let mut buf = vec![0f32; dw];
    let mut buf_row = usize::MAX;
    let mut sum = vec![0f32; dw];
    for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
        let rows = &yt.index[dy * yt.taps..(dy + 1) * yt.taps];
        let betas = &yt.weight[dy * yt.taps..(dy + 1) * yt.taps];
        for (j, (&sy, &beta)) in rows.iter().zip(betas).enumerate() {
            if j > 0 && beta == 0.0 {
                break; // padding taps of this axis
            }
            if sy != buf_row {
                area_row(img.row(sy), &mut buf, &xt, cn);
                buf_row = sy;
            }
            if j == 0 {
                for (s, b) in sum.iter_mut().zip(&buf) {
                    *s = beta * *b;
                }
            } else {
                for (s, b) in sum.iter_mut().zip(&buf) {
                    *s += beta * *b;
                }
            }
        }
        for (d, s) in drow.iter_mut().zip(&sum) {
            *d = T::from_f32_rne(*s);
        }
    }
}

/// One source row through the horizontal area taps: `buf[dx] = sum_j src[x_j] * alpha_j`.
fn area_row<T: Sample>(src: &[T], buf: &mut [f32], xt: &AreaTaps, cn: usize) {
    let n = xt.taps;
    let taps = xt.index.chunks_exact(n).zip(xt.weight.chunks_exact(n));
    if cn == 1 {
        for (b, (idx, wts)) in buf.iter_mut().zip(taps) {
            let mut acc = 0f32;
            for (&i, &a) in idx.iter().zip(wts) {
                acc += src[i].to_f32() * a;
            }
            *b = acc;
        }
    } else {
        for (bpix, (idx, wts)) in buf.chunks_exact_mut(cn).zip(taps) {
            bpix.fill(0.0);
            for (&i, &a) in idx.iter().zip(wts) {
                for (c, b) in bpix.iter_mut().enumerate() {
                    *b += src[i * cn + c].to_f32() * a;
                }
            }
        }
    }
}
