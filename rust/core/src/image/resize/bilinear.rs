//! Two-tap kernels, OpenCV's `resizeGeneric_` with ksize 2: `INTER_LINEAR` (half-pixel
//! centres, edge pixels replicated) and `INTER_AREA` when enlarging (the weight is the output
//! cell's overlap with the next source pixel). 8-bit in OpenCV's fixed point, 16-bit in f32; the
//! row kernels have SSE2 versions on x86_64 (`sse2.rs`), checked equal to the scalar ones here.

#[cfg(target_arch = "x86_64")]
use super::sse2;
use crate::image::{Image, ImageRef, Sample};

/// Fixed-point weight scale of OpenCV's 8-bit bilinear resize (`INTER_RESIZE_COEF_SCALE`).
const COEF_SCALE: f32 = 2048.0;

// ---------------------------------------------------------------------------------------------
// INTER_LINEAR, and INTER_AREA when enlarging (OpenCV's resizeGeneric_ with ksize 2)

/// Source index and weight of the next sample for each output coordinate of one axis.
pub(super) struct Axis {
    /// First source index (clamped to the image for x; raw for y, OpenCV clamps rows later).
    offset: Vec<i64>,
    frac: Vec<f32>,
    /// Output coordinates from here on read a single source sample (right edge).
    single_from: usize,
}

impl Axis {
    pub(super) fn new(
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
pub(super) fn linear_fixed<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, xs: &Axis, ys: &Axis) {
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
pub(super) fn linear_float<T: Sample>(img: ImageRef<T>, out: &mut Image<T>, xs: &Axis, ys: &Axis) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
