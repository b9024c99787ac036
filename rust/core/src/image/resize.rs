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
//! those row kernels use SSE2 intrinsics (see `mod sse2`), elsewhere the scalar versions.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// `cv2.INTER_AREA`.
    Area,
    /// `cv2.INTER_LINEAR`.
    Bilinear,
}

/// Fixed-point weight scale of OpenCV's 8-bit bilinear resize (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

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

// ---------------------------------------------------------------------------------------------
// INTER_AREA, integer shrink (OpenCV's resizeAreaFast)

fn area_integer<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, ix: usize, iy: usize) {
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

fn area_fractional<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, scale_x: f64, scale_y: f64) {
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

// ---------------------------------------------------------------------------------------------
// INTER_LINEAR, and INTER_AREA when enlarging (OpenCV's resizeGeneric_ with ksize 2)

/// Source index and weight of the next sample for each output coordinate of one axis.
struct Axis {
    /// First source index (clamped to the image for x; raw for y, OpenCV clamps rows later).
    offset: Vec<i64>,
    frac: Vec<f32>,
    /// Output coordinates from here on read a single source sample (right edge).
    single_from: usize,
}

impl Axis {
    fn new(
        ssize: usize,
        dsize: usize,
        scale: f64,
        inv_scale: f64,
        area: bool,
        clamp: bool,
    ) -> Self {
        let mut offset = Vec::with_capacity(dsize);
        let mut frac = Vec::with_capacity(dsize);
        let mut single_from = dsize;
        let last = ssize as i64 - 1;
        for d in 0..dsize {
            let (mut s, mut f) = if area {
                let s = (d as f64 * scale).floor() as i64;
                let f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
                (s, if f <= 0.0 { 0.0 } else { f - f.floor() })
            } else {
                let f = ((d as f64 + 0.5) * scale - 0.5) as f32;
                let s = f.floor();
                (s as i64, f - s)
            };
            if clamp {
                if s < 0 {
                    (s, f) = (0, 0.0);
                }
                if s + 1 > last {
                    single_from = single_from.min(d);
                    if s >= last {
                        (s, f) = (last, 0.0);
                    }
                }
            }
            offset.push(s);
            frac.push(f);
        }
        Axis {
            offset,
            frac,
            single_from,
        }
    }

    /// OpenCV's `clip(sy, 0, height)` of the two rows blended for output row `d`.
    fn rows(&self, d: usize, ssize: usize) -> [usize; 2] {
        let last = ssize as i64 - 1;
        let s = self.offset[d];
        [s.clamp(0, last) as usize, (s + 1).clamp(0, last) as usize]
    }
}

/// Two cached horizontally-resized rows, reused when consecutive output rows share a source row.
struct RowCache<W> {
    rows: [Vec<W>; 2],
    source: [usize; 2],
}

impl<W: Copy + Default> RowCache<W> {
    fn new(len: usize) -> Self {
        RowCache {
            rows: [vec![W::default(); len], vec![W::default(); len]],
            source: [usize::MAX; 2],
        }
    }

    /// Makes both source rows `want` available, computing missing ones with `fill`.
    fn load(&mut self, want: [usize; 2], mut fill: impl FnMut(usize, &mut [W])) -> [&[W]; 2] {
        for k in 0..2 {
            let w = want[k];
            if self.source.contains(&w) {
                continue;
            }
            // Overwrite the slot that does not hold the other wanted row.
            let other = want[1 - k];
            let slot = if self.source[0] == other { 1 } else { 0 };
            fill(w, &mut self.rows[slot]);
            self.source[slot] = w;
        }
        let pick = |w: usize| if self.source[0] == w { 0 } else { 1 };
        [&self.rows[pick(want[0])], &self.rows[pick(want[1])]]
    }
}

/// The horizontal pass of one image: for each output sample (pixel x channel) the index of its
/// first source sample in a row; samples before `split` blend it with the sample `cn` further
/// on, the others (right edge) copy it. Built once per image and checked against the row
/// length, which is what lets the SSE2 kernels read rows without bounds checks.
struct Plan {
    index: Vec<u32>,
    split: usize,
    cn: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    row_len: usize,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    in_bounds: bool,
}

impl Plan {
    fn new(xs: &Axis, cn: usize, src_width: usize) -> Self {
        let row_len = src_width * cn;
        let mut index = Vec::with_capacity(xs.offset.len() * cn);
        for &s in &xs.offset {
            for c in 0..cn {
                index.push((s.max(0) as usize * cn + c) as u32);
            }
        }
        let split = xs.single_from * cn;
        // `Axis` clamps guarantee this; checking it keeps the unchecked reads sound regardless.
        let in_bounds = index[..split].iter().all(|&j| j as usize + cn < row_len)
            && index[split..].iter().all(|&j| (j as usize) < row_len);
        Plan {
            index,
            split,
            cn,
            row_len,
            in_bounds,
        }
    }

    /// Whether the SSE2 kernels may read `src` with this plan's indices unchecked.
    #[cfg(target_arch = "x86_64")]
    fn unchecked_ok<T>(&self, src: &[T]) -> bool {
        self.in_bounds && src.len() == self.row_len
    }
}

/// 8-bit: OpenCV's fixed-point path (`HResizeLinear<uchar, int, short, 2048>` then
/// `VResizeLinear<uchar, int, short, FixedPtCast<int, uchar, 22>>`, whose SIMD and scalar code
/// both compute `((b0 * (r0 >> 4)) >> 16) + ((b1 * (r1 >> 4)) >> 16) + 2) >> 2`).
fn linear_fixed<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, xs: &Axis, ys: &Axis) {
    let cn = img.channels;
    let dw = out.width * cn;
    let coef = |f: f32| -> [i16; 2] {
        [
            ((1.0 - f) * COEF_SCALE).round_ties_even() as i16,
            (f * COEF_SCALE).round_ties_even() as i16,
        ]
    };
    let plan = Plan::new(xs, cn, img.width);
    let alpha: Vec<[i16; 2]> = xs
        .frac
        .iter()
        .flat_map(|&f| std::iter::repeat_n(coef(f), cn))
        .collect();
    let mut cache = RowCache::<i32>::new(dw);
    for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
        let beta = coef(ys.frac[dy]);
        let [r0, r1] = cache.load(ys.rows(dy, img.height), |sy, buf| {
            hline_fixed(img.row(sy), &plan, &alpha, buf);
        });
        vline_fixed(r0, r1, beta, drow);
    }
}

fn hline_fixed<T: Sample>(src: &[T], plan: &Plan, alpha: &[[i16; 2]], out: &mut [i32]) {
    let (split, cn) = (plan.split, plan.cn);
    let (two, one) = out.split_at_mut(split);
    for (d, &j) in one.iter_mut().zip(&plan.index[split..]) {
        *d = src[j as usize].to_usize() as i32 * COEF_SCALE as i32;
    }
    #[cfg(target_arch = "x86_64")]
    if plan.unchecked_ok(src) {
        let (index, alpha) = (&plan.index[..split], &alpha[..split]);
        // SAFETY: `unchecked_ok` means every index before `split` satisfies
        // `j + cn < src.len()`, which is all the kernels read; SSE2 is part of the x86_64
        // baseline.
        match T::as_bytes(src) {
            Some(bytes) if cn == 1 => unsafe { sse2::hline_fixed_gray8(bytes, index, alpha, two) },
            Some(bytes) if cn == 3 || cn == 4 => unsafe {
                sse2::hline_fixed_color8(bytes, index, alpha, cn, two)
            },
            _ => unsafe { sse2::hline_fixed(src, index, alpha, cn, two) },
        }
        return;
    }
    hline_fixed_scalar(src, &plan.index[..split], &alpha[..split], cn, two);
}

fn hline_fixed_scalar<T: Sample>(
    src: &[T],
    index: &[u32],
    alpha: &[[i16; 2]],
    cn: usize,
    out: &mut [i32],
) {
    for ((d, &j), a) in out.iter_mut().zip(index).zip(alpha) {
        let j = j as usize;
        *d = src[j].to_usize() as i32 * i32::from(a[0])
            + src[j + cn].to_usize() as i32 * i32::from(a[1]);
    }
}

fn vline_fixed<T: Sample>(r0: &[i32], r1: &[i32], beta: [i16; 2], dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the kernel reads and writes only below `min(r0, r1, dst)` lengths; SSE2 is
        // part of the x86_64 baseline.
        let done = unsafe { sse2::vline_fixed(r0, r1, beta, dst) };
        vline_fixed_scalar(&r0[done..], &r1[done..], beta, &mut dst[done..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    vline_fixed_scalar(r0, r1, beta, dst);
}

fn vline_fixed_scalar<T: Sample>(r0: &[i32], r1: &[i32], beta: [i16; 2], dst: &mut [T]) {
    let [b0, b1] = beta.map(i32::from);
    for ((d, &s0), &s1) in dst.iter_mut().zip(r0).zip(r1) {
        let v = (((b0 * (s0 >> 4)) >> 16) + ((b1 * (s1 >> 4)) >> 16) + 2) >> 2;
        *d = T::from_usize_sat(v.clamp(0, 255) as usize);
    }
}

/// 16-bit: f32 weights (`HResizeLinear<ushort, float, float, 1>`, `VResizeLinear<..., Cast>`).
fn linear_float<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, xs: &Axis, ys: &Axis) {
    let cn = img.channels;
    let dw = out.width * cn;
    let plan = Plan::new(xs, cn, img.width);
    let repeat = |f: f32| std::iter::repeat_n(f, cn);
    let a0: Vec<f32> = xs.frac.iter().flat_map(|&f| repeat(1.0 - f)).collect();
    let a1: Vec<f32> = xs.frac.iter().flat_map(|&f| repeat(f)).collect();
    let mut cache = RowCache::<f32>::new(dw);
    for (dy, drow) in out.data.chunks_exact_mut(dw).enumerate() {
        let f = ys.frac[dy];
        let (b0, b1) = (1.0 - f, f);
        let [r0, r1] = cache.load(ys.rows(dy, img.height), |sy, buf| {
            hline_float(img.row(sy), &plan, [&a0, &a1], buf);
        });
        vline_float(r0, r1, [b0, b1], drow);
    }
}

fn vline_float<T: Sample>(r0: &[f32], r1: &[f32], beta: [f32; 2], dst: &mut [T]) {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the kernel reads and writes only below `min(r0, r1, dst)` lengths; SSE2 is
        // part of the x86_64 baseline.
        let done = unsafe { sse2::vline_float(r0, r1, beta, dst) };
        vline_float_scalar(&r0[done..], &r1[done..], beta, &mut dst[done..]);
    }
    #[cfg(not(target_arch = "x86_64"))]
    vline_float_scalar(r0, r1, beta, dst);
}

fn vline_float_scalar<T: Sample>(r0: &[f32], r1: &[f32], beta: [f32; 2], dst: &mut [T]) {
    for ((d, &s0), &s1) in dst.iter_mut().zip(r0).zip(r1) {
        *d = T::from_f32_rne(s0 * beta[0] + s1 * beta[1]);
    }
}

fn hline_float<T: Sample>(src: &[T], plan: &Plan, alpha: [&[f32]; 2], out: &mut [f32]) {
    let (split, cn) = (plan.split, plan.cn);
    let (two, one) = out.split_at_mut(split);
    for (d, &j) in one.iter_mut().zip(&plan.index[split..]) {
        *d = src[j as usize].to_f32();
    }
    let alpha = alpha.map(|a| &a[..split]);
    #[cfg(target_arch = "x86_64")]
    if plan.unchecked_ok(src) {
        // SAFETY: as in `hline_fixed`.
        unsafe { sse2::hline_float(src, &plan.index[..split], alpha, cn, two) };
        return;
    }
    hline_float_scalar(src, &plan.index[..split], alpha, cn, two);
}

fn hline_float_scalar<T: Sample>(
    src: &[T],
    index: &[u32],
    alpha: [&[f32]; 2],
    cn: usize,
    out: &mut [f32],
) {
    let weights = alpha[0].iter().zip(alpha[1]);
    for ((d, &j), (a0, a1)) in out.iter_mut().zip(index).zip(weights) {
        let j = j as usize;
        *d = src[j].to_f32() * a0 + src[j + cn].to_f32() * a1;
    }
}

/// SSE2 versions of the bilinear row kernels (SSE2 is always present on x86_64, so there is
/// no runtime detection). Bilinear resizing is gather-bound: per output sample two source
/// reads at computed offsets. Safe Rust kept a bounds check and a spill per read and left the
/// 16-bit multiplies scalar, 3-5x slower than OpenCV; here the reads are unchecked (indices
/// validated once per image by `Plan`) and the arithmetic is OpenCV's own (`pmaddwd`,
/// `pmulhw`), so results are identical to the scalar versions (tested below).
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::Sample;
    use std::arch::x86_64::*;

    /// `out[k] = src[index[k]] * alpha[k][0] + src[index[k] + cn] * alpha[k][1]`.
    ///
    /// Safety: `index[k] + cn < src.len()` for every `k < out.len()`; samples are at most 255.
    pub(super) unsafe fn hline_fixed<T: Sample>(
        src: &[T],
        index: &[u32],
        alpha: &[[i16; 2]],
        cn: usize,
        out: &mut [i32],
    ) {
        let n = out.len().min(index.len()).min(alpha.len());
        // Both samples of a pair in one i32 lane (low, high 16 bits), as `pmaddwd` wants them.
        let pair = |k: usize| -> i32 {
            let j = *index.get_unchecked(k) as usize;
            (src.get_unchecked(j).to_usize() | src.get_unchecked(j + cn).to_usize() << 16) as i32
        };
        let mut k = 0;
        while k + 8 <= n {
            let lo = _mm_set_epi32(pair(k + 3), pair(k + 2), pair(k + 1), pair(k));
            let hi = _mm_set_epi32(pair(k + 7), pair(k + 6), pair(k + 5), pair(k + 4));
            let a = alpha.as_ptr().add(k) as *const __m128i;
            let o = out.as_mut_ptr().add(k) as *mut __m128i;
            _mm_storeu_si128(o, _mm_madd_epi16(lo, _mm_loadu_si128(a)));
            _mm_storeu_si128(o.add(1), _mm_madd_epi16(hi, _mm_loadu_si128(a.add(1))));
            k += 8;
        }
        while k < n {
            let j = *index.get_unchecked(k) as usize;
            let a = alpha.get_unchecked(k);
            *out.get_unchecked_mut(k) = src.get_unchecked(j).to_usize() as i32 * i32::from(a[0])
                + src.get_unchecked(j + cn).to_usize() as i32 * i32::from(a[1]);
            k += 1;
        }
    }

    /// [`hline_fixed`] for one 8-bit channel, where a pair is two adjacent bytes: one 16-bit
    /// read each (OpenCV's `v_lut_pairs`), widened to 16-bit lanes.
    ///
    /// Safety: `index[k] + 1 < src.len()` for every `k < out.len()`.
    pub(super) unsafe fn hline_fixed_gray8(
        src: &[u8],
        index: &[u32],
        alpha: &[[i16; 2]],
        out: &mut [i32],
    ) {
        let n = out.len().min(index.len()).min(alpha.len());
        let pair = |k: usize| -> i16 {
            let j = *index.get_unchecked(k) as usize;
            (src.as_ptr().add(j) as *const i16).read_unaligned()
        };
        let zero = _mm_setzero_si128();
        let mut k = 0;
        while k + 8 <= n {
            let v = _mm_set_epi16(
                pair(k + 7),
                pair(k + 6),
                pair(k + 5),
                pair(k + 4),
                pair(k + 3),
                pair(k + 2),
                pair(k + 1),
                pair(k),
            );
            let a = alpha.as_ptr().add(k) as *const __m128i;
            let o = out.as_mut_ptr().add(k) as *mut __m128i;
            let lo = _mm_unpacklo_epi8(v, zero);
            let hi = _mm_unpackhi_epi8(v, zero);
            _mm_storeu_si128(o, _mm_madd_epi16(lo, _mm_loadu_si128(a)));
            _mm_storeu_si128(o.add(1), _mm_madd_epi16(hi, _mm_loadu_si128(a.add(1))));
            k += 8;
        }
        while k < n {
            let j = *index.get_unchecked(k) as usize;
            let a = alpha.get_unchecked(k);
            *out.get_unchecked_mut(k) = i32::from(*src.get_unchecked(j)) * i32::from(a[0])
                + i32::from(*src.get_unchecked(j + 1)) * i32::from(a[1]);
            k += 1;
        }
    }

    /// [`hline_fixed`] for 3- or 4-channel 8-bit pixels: one 32-bit read per source pixel
    /// brings all its channels (OpenCV's `v_load_expand_q`), so each output pixel is one
    /// `pmaddwd`. With 3 channels the read and the write each cover one sample of the next
    /// pixel; the write is overwritten by that pixel, and the last pixels go the scalar way.
    /// Equal to the scalar kernel for plans built by `linear_fixed`, where the channels of a
    /// pixel share one weight pair and have consecutive indices.
    ///
    /// Safety: `index[k] + cn < src.len()` for every `k < out.len()` (the 32-bit reads are
    /// checked against the row end).
    pub(super) unsafe fn hline_fixed_color8(
        src: &[u8],
        index: &[u32],
        alpha: &[[i16; 2]],
        cn: usize,
        out: &mut [i32],
    ) {
        let n = out.len().min(index.len()).min(alpha.len());
        let zero = _mm_setzero_si128();
        let read =
            |j: usize| _mm_cvtsi32_si128((src.as_ptr().add(j) as *const i32).read_unaligned());
        let weights =
            |k: usize| _mm_set1_epi32((alpha.as_ptr().add(k) as *const i32).read_unaligned());
        let mut k = 0;
        // Two pixels per step: their byte pairs fill one register.
        while k + cn + 4 <= n {
            let (j0, j1) = (
                *index.get_unchecked(k) as usize,
                *index.get_unchecked(k + cn) as usize,
            );
            if j0.max(j1) + cn + 4 > src.len() {
                break;
            }
            let p0 = _mm_unpacklo_epi8(read(j0), read(j0 + cn));
            let p1 = _mm_unpacklo_epi8(read(j1), read(j1 + cn));
            let both = _mm_unpacklo_epi64(p0, p1);
            let r0 = _mm_madd_epi16(_mm_unpacklo_epi8(both, zero), weights(k));
            let r1 = _mm_madd_epi16(_mm_unpackhi_epi8(both, zero), weights(k + cn));
            _mm_storeu_si128(out.as_mut_ptr().add(k) as *mut __m128i, r0);
            _mm_storeu_si128(out.as_mut_ptr().add(k + cn) as *mut __m128i, r1);
            k += 2 * cn;
        }
        while k < n {
            let j = *index.get_unchecked(k) as usize;
            let a = alpha.get_unchecked(k);
            *out.get_unchecked_mut(k) = i32::from(*src.get_unchecked(j)) * i32::from(a[0])
                + i32::from(*src.get_unchecked(j + cn)) * i32::from(a[1]);
            k += 1;
        }
    }

    /// OpenCV's `VResizeLinearVec_32s8u`; returns how many leading samples it wrote (a multiple
    /// of 8), the caller finishes the rest.
    ///
    /// Safety: none beyond SSE2 (all accesses are below the three slices' common length).
    pub(super) unsafe fn vline_fixed<T: Sample>(
        r0: &[i32],
        r1: &[i32],
        beta: [i16; 2],
        dst: &mut [T],
    ) -> usize {
        let n = dst.len().min(r0.len()).min(r1.len());
        let (b0, b1) = (_mm_set1_epi16(beta[0]), _mm_set1_epi16(beta[1]));
        let two = _mm_set1_epi16(2);
        let mut x = 0;
        while x + 8 <= n {
            let p0 = r0.as_ptr().add(x) as *const __m128i;
            let p1 = r1.as_ptr().add(x) as *const __m128i;
            let s0 = _mm_packs_epi32(
                _mm_srai_epi32(_mm_loadu_si128(p0), 4),
                _mm_srai_epi32(_mm_loadu_si128(p0.add(1)), 4),
            );
            let s1 = _mm_packs_epi32(
                _mm_srai_epi32(_mm_loadu_si128(p1), 4),
                _mm_srai_epi32(_mm_loadu_si128(p1.add(1)), 4),
            );
            let t = _mm_adds_epi16(_mm_mulhi_epi16(s0, b0), _mm_mulhi_epi16(s1, b1));
            let t = _mm_srai_epi16(_mm_adds_epi16(t, two), 2);
            let mut bytes = [0u8; 16];
            _mm_storeu_si128(bytes.as_mut_ptr() as *mut __m128i, _mm_packus_epi16(t, t));
            for (d, &b) in dst.get_unchecked_mut(x..x + 8).iter_mut().zip(&bytes) {
                *d = T::from_usize_sat(usize::from(b));
            }
            x += 8;
        }
        x
    }

    /// OpenCV's `VResizeLinearVec_32f16u`: `saturate(round(r0 * b0 + r1 * b1))` (ties to even,
    /// the default MXCSR mode); returns how many leading samples it wrote (a multiple of 8).
    ///
    /// Safety: none beyond SSE2 (all accesses are below the three slices' common length).
    pub(super) unsafe fn vline_float<T: Sample>(
        r0: &[f32],
        r1: &[f32],
        beta: [f32; 2],
        dst: &mut [T],
    ) -> usize {
        let n = dst.len().min(r0.len()).min(r1.len());
        let (b0, b1) = (_mm_set1_ps(beta[0]), _mm_set1_ps(beta[1]));
        // SSE2 has no unsigned 32->16 pack: shift into the signed range, pack with signed
        // saturation, shift back.
        let bias32 = _mm_set1_epi32(32768);
        let bias16 = _mm_set1_epi16(-32768);
        let round = |p0: *const f32, p1: *const f32| {
            let r = _mm_add_ps(
                _mm_mul_ps(_mm_loadu_ps(p0), b0),
                _mm_mul_ps(_mm_loadu_ps(p1), b1),
            );
            _mm_sub_epi32(_mm_cvtps_epi32(r), bias32)
        };
        let mut x = 0;
        while x + 8 <= n {
            let (p0, p1) = (r0.as_ptr().add(x), r1.as_ptr().add(x));
            let lo = round(p0, p1);
            let hi = round(p0.add(4), p1.add(4));
            let words = _mm_xor_si128(_mm_packs_epi32(lo, hi), bias16);
            let mut out = [0u16; 8];
            _mm_storeu_si128(out.as_mut_ptr() as *mut __m128i, words);
            for (d, &w) in dst.get_unchecked_mut(x..x + 8).iter_mut().zip(&out) {
                *d = T::from_usize_sat(usize::from(w));
            }
            x += 8;
        }
        x
    }

    /// `out[k] = src[index[k]] * alpha[0][k] + src[index[k] + cn] * alpha[1][k]` in f32.
    ///
    /// Safety: `index[k] + cn < src.len()` for every `k < out.len()`.
    pub(super) unsafe fn hline_float<T: Sample>(
        src: &[T],
        index: &[u32],
        alpha: [&[f32]; 2],
        cn: usize,
        out: &mut [f32],
    ) {
        let n = out
            .len()
            .min(index.len())
            .min(alpha[0].len())
            .min(alpha[1].len());
        let at = |k: usize, off: usize| -> i32 {
            let j = *index.get_unchecked(k) as usize;
            src.get_unchecked(j + off).to_usize() as i32
        };
        let mut k = 0;
        while k + 4 <= n {
            let v0 = _mm_cvtepi32_ps(_mm_set_epi32(
                at(k + 3, 0),
                at(k + 2, 0),
                at(k + 1, 0),
                at(k, 0),
            ));
            let v1 = _mm_cvtepi32_ps(_mm_set_epi32(
                at(k + 3, cn),
                at(k + 2, cn),
                at(k + 1, cn),
                at(k, cn),
            ));
            let a0 = _mm_loadu_ps(alpha[0].as_ptr().add(k));
            let a1 = _mm_loadu_ps(alpha[1].as_ptr().add(k));
            let r = _mm_add_ps(_mm_mul_ps(v0, a0), _mm_mul_ps(v1, a1));
            _mm_storeu_ps(out.as_mut_ptr().add(k), r);
            k += 4;
        }
        while k < n {
            *out.get_unchecked_mut(k) = at(k, 0) as f32 * *alpha[0].get_unchecked(k)
                + at(k, cn) as f32 * *alpha[1].get_unchecked(k);
            k += 1;
        }
    }
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

    /// A small deterministic generator, so the kernel tests need no crates.
    fn noise(n: usize, seed: u64, max: u32) -> Vec<u32> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % (u64::from(max) + 1)) as u32
            })
            .collect()
    }

    #[test]
    fn sse2_kernels_equal_the_scalar_ones() {
        for (sw, dw, cn) in [
            (50usize, 173usize, 1usize),
            (97, 31, 1),
            (40, 77, 3),
            (33, 19, 4),
            (9, 50, 2),
        ] {
            let row8: Vec<u8> = noise(sw * cn, 1, 255).iter().map(|&v| v as u8).collect();
            let row16: Vec<u16> = noise(sw * cn, 2, 65535).iter().map(|&v| v as u16).collect();
            let xs = Axis::new(
                sw,
                dw,
                sw as f64 / dw as f64,
                dw as f64 / sw as f64,
                false,
                true,
            );
            let plan = Plan::new(&xs, cn, sw);
            assert!(plan.in_bounds);
            // One weight pair per output pixel, repeated per channel, as `linear_fixed` builds.
            let alpha: Vec<[i16; 2]> = (0..dw * cn)
                .map(|k| {
                    let a = noise(1, (k / cn) as u64, 2048)[0] as i16;
                    [2048 - a, a]
                })
                .collect();
            let (mut fast, mut slow) = (vec![0i32; dw * cn], vec![0i32; dw * cn]);
            hline_fixed(&row8, &plan, &alpha, &mut fast);
            let split = plan.split;
            hline_fixed_scalar(
                &row8,
                &plan.index[..split],
                &alpha[..split],
                cn,
                &mut slow[..split],
            );
            for (d, &j) in slow[split..].iter_mut().zip(&plan.index[split..]) {
                *d = i32::from(row8[j as usize]) * 2048;
            }
            assert_eq!(fast, slow, "hline_fixed {sw}->{dw}x{cn}");

            let a0: Vec<f32> = noise(dw * cn, 3, 1 << 20)
                .iter()
                .map(|&v| v as f32 / (1 << 20) as f32)
                .collect();
            let a1: Vec<f32> = a0.iter().map(|a| 1.0 - a).collect();
            let (mut fast, mut slow) = (vec![0f32; dw * cn], vec![0f32; dw * cn]);
            hline_float(&row16, &plan, [&a0, &a1], &mut fast);
            hline_float_scalar(
                &row16,
                &plan.index[..split],
                [&a0[..split], &a1[..split]],
                cn,
                &mut slow[..split],
            );
            for (d, &j) in slow[split..].iter_mut().zip(&plan.index[split..]) {
                *d = f32::from(row16[j as usize]);
            }
            assert_eq!(fast, slow, "hline_float {sw}->{dw}x{cn}");
        }
        for n in [0usize, 7, 8, 9, 61] {
            let r0: Vec<i32> = noise(n, 4, 255 * 2048).iter().map(|&v| v as i32).collect();
            let r1: Vec<i32> = noise(n, 5, 255 * 2048).iter().map(|&v| v as i32).collect();
            for beta in [
                [2048i16, 0],
                [0, 2048],
                [1536, 512],
                [1, 2047],
                [1025, 1024],
            ] {
                let (mut fast, mut slow) = (vec![0u8; n], vec![0u8; n]);
                vline_fixed(&r0, &r1, beta, &mut fast);
                vline_fixed_scalar(&r0, &r1, beta, &mut slow);
                assert_eq!(fast, slow, "vline_fixed n={n} beta={beta:?}");
            }
            let f0: Vec<f32> = noise(n, 6, 65535).iter().map(|&v| v as f32 + 0.5).collect();
            let f1: Vec<f32> = noise(n, 7, 70000)
                .iter()
                .map(|&v| v as f32 - 1000.25)
                .collect();
            for beta in [[1.0f32, 0.0], [0.25, 0.75], [0.3, 0.7], [1.5, 0.0]] {
                let (mut fast, mut slow) = (vec![0u16; n], vec![0u16; n]);
                vline_float(&f0, &f1, beta, &mut fast);
                vline_float_scalar(&f0, &f1, beta, &mut slow);
                assert_eq!(fast, slow, "vline_float n={n} beta={beta:?}");
                let (mut fast8, mut slow8) = (vec![0u8; n], vec![0u8; n]);
                vline_float(&f0, &f1, beta, &mut fast8);
                vline_float_scalar(&f0, &f1, beta, &mut slow8);
                assert_eq!(fast8, slow8, "vline_float u8 n={n} beta={beta:?}");
            }
        }
    }
}
