//! Contrast Limited Adaptive Histogram Equalisation (CLAHE; K. Zuiderveld, "Contrast Limited
//! Adaptive Histogram Equalization", Graphics Gems IV, 1994), CURE's augmentation (clip 4.0 and
//! 8x8 tiles in training, clip 3.0 in evaluation). Bit-exact with OpenCV's
//! `cv2.createCLAHE(clipLimit, tileGridSize).apply(img)` for 8- and 16-bit grey images.
//!
//! OpenCV's conventions, reproduced here because users compare against it:
//! - tile size: `size / tiles` when both sides divide evenly. Otherwise the image is padded at
//!   the right and bottom with BORDER_REFLECT_101 by `tiles - size % tiles` on *both* axes (so a
//!   side that divides evenly still grows by one pixel per tile) and the tile is `padded / tiles`.
//!   Only the histograms see the padding; the output has the input's size.
//! - clip limit: `max(int(clip_limit * tile_area / levels), 1)` when `clip_limit > 0`, no clipping
//!   otherwise (`levels` = 256 or 65536). The excess is spread evenly over all bins, and what is
//!   left (the residual) one count per bin every `max(levels / residual, 1)` bins from bin 0.
//! - LUT: `saturate(round(cumulative_count * ((levels - 1) / tile_area)))` in f32.
//! - each pixel blends the LUTs of the four nearest tile centres bilinearly, with OpenCV's f32
//!   weights and evaluation order, and rounds half to even (`cvRound` on x86).
//!
//! Tile LUTs are built one tile row at a time and only two rows are kept, so 16-bit images with
//! many tiles do not need `tiles * 65536` LUT entries at once.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// Histogram bins processed over the whole grid (`tiles * levels`) above which the call is
/// refused: past it, building the LUTs alone takes seconds (16-bit with over 16384 tiles).
const MAX_GRID_BINS: usize = 1 << 30;

/// CLAHE with `tiles_x` x `tiles_y` tiles and OpenCV's clip-limit convention
/// (`clip_limit <= 0` disables clipping, i.e. plain tile-wise histogram equalisation).
pub fn clahe<T: Sample>(
    img: ImageRef<T>,
    clip_limit: f64,
    tiles_x: usize,
    tiles_y: usize,
) -> Result<Image<T>> {
    let (w, h) = (img.width, img.height);
    if img.channels != 1 {
        return Err(Error::invalid(format!(
            "clahe: expected a grey image (1 channel), got {} channels",
            img.channels
        )));
    }
    if w.checked_mul(h) != Some(img.data.len()) {
        return Err(Error::invalid(format!(
            "clahe: image buffer of {} samples does not match {w}x{h}",
            img.data.len()
        )));
    }
    if w == 0 || h == 0 {
        return Err(Error::invalid(format!("clahe: empty image ({w}x{h})")));
    }
    // Histogram counts are 32-bit (OpenCV's are `int`).
    if w * h > i32::MAX as usize {
        return Err(Error::invalid(format!(
            "clahe: {w}x{h} image has more than 2**31 - 1 pixels"
        )));
    }
    if tiles_x == 0 || tiles_y == 0 {
        return Err(Error::invalid(format!(
            "clahe: the tile grid must be at least 1x1, got {tiles_x}x{tiles_y}"
        )));
    }
    if tiles_x > w || tiles_y > h {
        return Err(Error::invalid(format!(
            "clahe: tile grid {tiles_x}x{tiles_y} is larger than the {w}x{h} image \
             (at most one tile per pixel along each side)"
        )));
    }
    if !clip_limit.is_finite() {
        return Err(Error::invalid(format!(
            "clahe: clip_limit must be finite, got {clip_limit}"
        )));
    }
    let levels = T::LEVELS;
    if tiles_x
        .checked_mul(tiles_y)
        .and_then(|t| t.checked_mul(levels))
        .is_none_or(|bins| bins > MAX_GRID_BINS)
    {
        return Err(Error::invalid(format!(
            "clahe: tile grid {tiles_x}x{tiles_y} is too fine for {levels}-level images \
             (at most {} tiles)",
            MAX_GRID_BINS / levels
        )));
    }

    let grid = Grid::new(w, h, tiles_x, tiles_y);
    let tile_area = grid.tile_w * grid.tile_h;
    // OpenCV: `static_cast<float>(histSize - 1) / tileSizeTotal` (the int converts to float).
    let lut_scale = (levels - 1) as f32 / tile_area as f32;
    let clip = if clip_limit > 0.0 {
        // f64 -> u32 `as` truncates toward zero like C's cast and saturates instead of UB.
        ((clip_limit * tile_area as f64 / levels as f64) as u32).max(1)
    } else {
        0
    };

    let mut out = Image::new(w, h, 1);
    let columns = ColumnWeights::new(w, grid.tile_w, tiles_x);
    let mut luts = BandLuts::<T>::new(tiles_x, levels);
    let mut hist = vec![0u32; levels * sub_histograms::<T>()];

    // 8-bit: the four LUTs a run of columns blends are packed into one u32 per grey level, so
    // each pixel costs one lookup instead of four (rebuilt only when the tile rows change).
    let packed_luts = levels <= 256;
    let quads_len = if packed_luts {
        columns.segments.len() * levels
    } else {
        0
    };
    let mut quads = vec![0u32; quads_len];
    let mut quads_for = (usize::MAX, usize::MAX);

    let inv_th = 1.0f32 / grid.tile_h as f32;
    let last_band = tiles_y as i64 - 1;
    for (y, dst_row) in out.data.chunks_exact_mut(w).enumerate() {
        let tyf = y as f32 * inv_th - 0.5;
        let ty1 = tyf.floor();
        let ya = tyf - ty1;
        let ya1 = 1.0 - ya;
        let b1 = (ty1 as i64).clamp(0, last_band) as usize;
        let b2 = (ty1 as i64 + 1).clamp(0, last_band) as usize;
        luts.ensure(b1, |lut| {
            band_luts(img, &grid, b1, clip, lut_scale, &mut hist, lut)
        });
        luts.ensure(b2, |lut| {
            band_luts(img, &grid, b2, clip, lut_scale, &mut hist, lut)
        });
        let (top, bottom) = (luts.band(b1), luts.band(b2));
        let src_row = img.row(y);
        if packed_luts {
            if quads_for != (b1, b2) {
                for (seg, q) in columns.segments.iter().zip(quads.chunks_exact_mut(levels)) {
                    pack_quad(
                        [
                            tile_lut(top, seg.tx1),
                            tile_lut(top, seg.tx2),
                            tile_lut(bottom, seg.tx1),
                            tile_lut(bottom, seg.tx2),
                        ],
                        q,
                    );
                }
                quads_for = (b1, b2);
            }
            for (seg, q) in columns.segments.iter().zip(quads.chunks_exact(levels)) {
                let (x0, x1) = (seg.x0, seg.x1);
                blend_packed(
                    &src_row[x0..x1],
                    &mut dst_row[x0..x1],
                    &columns.xa[x0..x1],
                    &columns.xa1[x0..x1],
                    q,
                    ya,
                    ya1,
                );
            }
            continue;
        }
        for seg in &columns.segments {
            let (x0, x1) = (seg.x0, seg.x1);
            blend(
                &src_row[x0..x1],
                &mut dst_row[x0..x1],
                &columns.xa[x0..x1],
                &columns.xa1[x0..x1],
                [
                    tile_lut(top, seg.tx1),
                    tile_lut(top, seg.tx2),
                    tile_lut(bottom, seg.tx1),
                    tile_lut(bottom, seg.tx2),
                ],
                ya,
                ya1,
            );
        }
    }
    Ok(out)
}

fn tile_lut<T: Sample>(band: &[T], tx: usize) -> &[T] {
    &band[tx * T::LEVELS..(tx + 1) * T::LEVELS]
}

/// Tile geometry, with OpenCV's padding rule (see the module docs).
struct Grid {
    width: usize,
    height: usize,
    tiles_x: usize,
    tile_w: usize,
    tile_h: usize,
}

impl Grid {
    fn new(width: usize, height: usize, tiles_x: usize, tiles_y: usize) -> Self {
        let (tile_w, tile_h) = if width % tiles_x == 0 && height % tiles_y == 0 {
            (width / tiles_x, height / tiles_y)
        } else {
            (
                (width + tiles_x - width % tiles_x) / tiles_x,
                (height + tiles_y - height % tiles_y) / tiles_y,
            )
        };
        Grid {
            width,
            height,
            tiles_x,
            tile_w,
            tile_h,
        }
    }
}

/// `cv::borderInterpolate(p, len, BORDER_REFLECT_101)` for `p >= 0` (padding is only added at
/// the right and bottom): `gfedcb|abcdefgh|gfedcba`, repeated when the padding is wider than
/// the image.
fn reflect_101(mut p: usize, len: usize) -> usize {
    if len == 1 {
        return 0;
    }
    let period = 2 * (len - 1);
    p %= period;
    if p >= len {
        period - p
    } else {
        p
    }
}

/// 8-bit histograms are split over four interleaved tables so that runs of equal pixels do not
/// serialise on one counter (store-to-load forwarding); 16-bit tables are too large for that.
fn sub_histograms<T: Sample>() -> usize {
    if T::LEVELS <= 256 {
        4
    } else {
        1
    }
}

/// The LUTs of two tile rows ("bands"): bilinear blending only ever needs rows `b` and `b + 1`,
/// and rows are visited in increasing order, so band `b` lives in slot `b % 2`.
struct BandLuts<T> {
    slots: [Vec<T>; 2],
    band_in_slot: [usize; 2],
}

impl<T: Sample> BandLuts<T> {
    fn new(tiles_x: usize, levels: usize) -> Self {
        BandLuts {
            slots: [
                vec![T::default(); tiles_x * levels],
                vec![T::default(); tiles_x * levels],
            ],
            band_in_slot: [usize::MAX; 2],
        }
    }

    fn ensure(&mut self, band: usize, build: impl FnOnce(&mut [T])) {
        let slot = band % 2;
        if self.band_in_slot[slot] != band {
            build(&mut self.slots[slot]);
            self.band_in_slot[slot] = band;
        }
    }

    fn band(&self, band: usize) -> &[T] {
        &self.slots[band % 2]
    }
}

/// Builds the LUTs of all tiles of tile row `band` into `out` (`tiles_x * levels` entries).
fn band_luts<T: Sample>(
    img: ImageRef<T>,
    grid: &Grid,
    band: usize,
    clip: u32,
    lut_scale: f32,
    hist: &mut [u32],
    out: &mut [T],
) {
    let levels = T::LEVELS;
    let (w, tw, th) = (grid.width, grid.tile_w, grid.tile_h);
    // `hist` arrives zeroed and is left zeroed (cheaper than clearing 65536 bins per tile).
    for (tx, lut) in out.chunks_exact_mut(levels).enumerate().take(grid.tiles_x) {
        let (x0, x1) = (tx * tw, (tx + 1) * tw);
        let inside = x0.min(w)..x1.min(w);
        for ey in band * th..(band + 1) * th {
            let row = img.row(reflect_101(ey, grid.height));
            count(&row[inside.clone()], hist);
            for ex in x0.max(w)..x1 {
                hist[row[reflect_101(ex, w)].to_usize()] += 1;
            }
        }
        let (main, rest) = hist.split_at_mut(levels);
        for sub in rest.chunks_exact_mut(levels) {
            for (m, s) in main.iter_mut().zip(sub.iter_mut()) {
                *m += *s;
                *s = 0;
            }
        }
        equalise(main, clip, lut_scale, lut);
    }
}

/// Adds the pixels of `row` to `hist` (`sub_histograms::<T>()` tables of `T::LEVELS` bins).
fn count<T: Sample>(row: &[T], hist: &mut [u32]) {
    let levels = T::LEVELS;
    if hist.len() >= 4 * levels {
        let (h0, rest) = hist.split_at_mut(levels);
        let (h1, rest) = rest.split_at_mut(levels);
        let (h2, h3) = rest.split_at_mut(levels);
        let h3 = &mut h3[..levels];
        let mut quads = row.chunks_exact(4);
        for q in &mut quads {
            h0[q[0].to_usize()] += 1;
            h1[q[1].to_usize()] += 1;
            h2[q[2].to_usize()] += 1;
            h3[q[3].to_usize()] += 1;
        }
        for v in quads.remainder() {
            h0[v.to_usize()] += 1;
        }
    } else {
        let h = &mut hist[..levels];
        for v in row {
            h[v.to_usize()] += 1;
        }
    }
}

/// The LUT of one tile from its histogram, which is left zeroed. OpenCV clips every bin at
/// `clip` (0: no clipping), adds the clipped excess evenly to all bins, then the residual one
/// count per bin every `levels / residual` bins from bin 0, and maps the cumulative count `c`
/// to `round(c * lut_scale)`. All passes but the prefix sum vectorise; the prefix sum runs as
/// four independent chains (one per quarter) so that it is not one long dependency chain
/// (65536 bins per tile at 16 bits).
fn equalise<T: Sample>(hist: &mut [u32], clip: u32, lut_scale: f32, lut: &mut [T]) {
    let levels = hist.len();
    if clip > 0 {
        let clipped: u64 = hist
            .iter()
            .map(|&b| u64::from(b.saturating_sub(clip)))
            .sum();
        let batch = (clipped / levels as u64) as u32;
        let residual = (clipped % levels as u64) as usize;
        for bin in hist.iter_mut() {
            *bin = (*bin).min(clip) + batch;
        }
        if let Some(step) = levels.checked_div(residual) {
            for bin in hist.iter_mut().step_by(step.max(1)).take(residual) {
                *bin += 1;
            }
        }
    }
    prefix_sum(hist);
    for (bin, out) in hist.iter_mut().zip(lut.iter_mut()) {
        // Counts stay below 2**31 (checked in `clahe`), so the signed conversion is exact.
        *out = T::from_f32_rne(*bin as i32 as f32 * lut_scale);
        *bin = 0;
    }
}

/// In-place inclusive prefix sum; the quarters' offsets come from vectorised totals.
fn prefix_sum(v: &mut [u32]) {
    if v.len() % 4 != 0 {
        let mut sum = 0u32;
        for x in v.iter_mut() {
            sum += *x;
            *x = sum;
        }
        return;
    }
    let q = v.len() / 4;
    let (a, rest) = v.split_at_mut(q);
    let (b, rest) = rest.split_at_mut(q);
    let (c, d) = rest.split_at_mut(q);
    let total = |s: &[u32]| s.iter().sum::<u32>();
    let mut sa = 0;
    let mut sb = total(a);
    let mut sc = sb + total(b);
    let mut sd = sc + total(c);
    for (((a, b), c), d) in a.iter_mut().zip(b).zip(c).zip(d) {
        sa += *a;
        sb += *b;
        sc += *c;
        sd += *d;
        (*a, *b, *c, *d) = (sa, sb, sc, sd);
    }
}

/// Per-column bilinear weights between tile centres, and the runs of columns that share the
/// same pair of tiles (so the blend loop indexes fixed LUT slices).
struct ColumnWeights {
    xa: Vec<f32>,
    xa1: Vec<f32>,
    segments: Vec<Segment>,
}

struct Segment {
    x0: usize,
    x1: usize,
    tx1: usize,
    tx2: usize,
}

impl ColumnWeights {
    fn new(width: usize, tile_w: usize, tiles_x: usize) -> Self {
        let inv_tw = 1.0f32 / tile_w as f32;
        let last = tiles_x as i64 - 1;
        let mut xa = Vec::with_capacity(width);
        let mut xa1 = Vec::with_capacity(width);
        let mut segments: Vec<Segment> = Vec::new();
        for x in 0..width {
            // Same f32 operations as OpenCV: `x * inv_tw - 0.5f`, `txf - floor(txf)`.
            let txf = x as f32 * inv_tw - 0.5;
            let tx1 = txf.floor();
            let a = txf - tx1;
            xa.push(a);
            xa1.push(1.0 - a);
            let t1 = (tx1 as i64).clamp(0, last) as usize;
            let t2 = (tx1 as i64 + 1).clamp(0, last) as usize;
            match segments.last_mut() {
                Some(s) if s.tx1 == t1 && s.tx2 == t2 => s.x1 = x + 1,
                _ => segments.push(Segment {
                    x0: x,
                    x1: x + 1,
                    tx1: t1,
                    tx2: t2,
                }),
            }
        }
        ColumnWeights { xa, xa1, segments }
    }
}

/// `(l11*xa1 + l12*xa)*ya1 + (l21*xa1 + l22*xa)*ya`, in OpenCV's order, rounded half to even.
/// Lookups go to small arrays first so that the arithmetic runs on whole vectors.
#[inline(always)]
fn blend<T: Sample>(
    src: &[T],
    dst: &mut [T],
    xa: &[f32],
    xa1: &[f32],
    luts: [&[T]; 4],
    ya: f32,
    ya1: f32,
) {
    const N: usize = 16;
    let levels = T::LEVELS;
    let [l11, l12, l21, l22] = luts.map(|l| &l[..levels]);
    let n = src.len();
    let (dst, xa, xa1) = (&mut dst[..n], &xa[..n], &xa1[..n]);
    let full = n - n % N;
    for i in (0..full).step_by(N) {
        let s = &src[i..i + N];
        let (a, a1) = (&xa[i..i + N], &xa1[i..i + N]);
        let (mut g11, mut g12, mut g21, mut g22) = ([0f32; N], [0f32; N], [0f32; N], [0f32; N]);
        for k in 0..N {
            let v = s[k].to_usize();
            g11[k] = l11[v].to_f32();
            g12[k] = l12[v].to_f32();
            g21[k] = l21[v].to_f32();
            g22[k] = l22[v].to_f32();
        }
        let d = &mut dst[i..i + N];
        for k in 0..N {
            let r = (g11[k] * a1[k] + g12[k] * a[k]) * ya1 + (g21[k] * a1[k] + g22[k] * a[k]) * ya;
            d[k] = T::from_f32_rne(r);
        }
    }
    for k in full..n {
        let v = src[k].to_usize();
        let r = (l11[v].to_f32() * xa1[k] + l12[v].to_f32() * xa[k]) * ya1
            + (l21[v].to_f32() * xa1[k] + l22[v].to_f32() * xa[k]) * ya;
        dst[k] = T::from_f32_rne(r);
    }
}

/// Packs four 8-bit LUTs into one word per level: byte k holds `luts[k][level]`.
fn pack_quad<T: Sample>(luts: [&[T]; 4], out: &mut [u32]) {
    let [a, b, c, d] = luts;
    for (i, q) in out.iter_mut().enumerate() {
        *q = (a[i].to_usize()
            | b[i].to_usize() << 8
            | c[i].to_usize() << 16
            | d[i].to_usize() << 24) as u32;
    }
}

/// [`blend`] for 8-bit images, reading the four LUT values from one packed word.
#[inline(always)]
fn blend_packed<T: Sample>(
    src: &[T],
    dst: &mut [T],
    xa: &[f32],
    xa1: &[f32],
    quad: &[u32],
    ya: f32,
    ya1: f32,
) {
    const N: usize = 16;
    let quad = &quad[..T::LEVELS];
    let n = src.len();
    let (dst, xa, xa1) = (&mut dst[..n], &xa[..n], &xa1[..n]);
    let full = n - n % N;
    let byte = |q: u32, k: u32| ((q >> (8 * k)) & 0xff) as f32;
    for i in (0..full).step_by(N) {
        let s = &src[i..i + N];
        let (a, a1) = (&xa[i..i + N], &xa1[i..i + N]);
        let mut q = [0u32; N];
        for k in 0..N {
            q[k] = quad[s[k].to_usize()];
        }
        let d = &mut dst[i..i + N];
        for k in 0..N {
            let (g11, g12, g21, g22) = (byte(q[k], 0), byte(q[k], 1), byte(q[k], 2), byte(q[k], 3));
            let r = (g11 * a1[k] + g12 * a[k]) * ya1 + (g21 * a1[k] + g22 * a[k]) * ya;
            d[k] = T::from_f32_rne(r);
        }
    }
    for k in full..n {
        let q = quad[src[k].to_usize()];
        let (g11, g12, g21, g22) = (byte(q, 0), byte(q, 1), byte(q, 2), byte(q, 3));
        let r = (g11 * xa1[k] + g12 * xa[k]) * ya1 + (g21 * xa1[k] + g22 * xa[k]) * ya;
        dst[k] = T::from_f32_rne(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<T: Sample>(w: usize, h: usize, data: &[T], clip: f64, tx: usize, ty: usize) -> Vec<T> {
        clahe(ImageRef::new(w, h, 1, data).unwrap(), clip, tx, ty)
            .unwrap()
            .data
    }

    #[test]
    fn constant_image_maps_every_pixel_to_its_cumulative_share() {
        // One value fills each tile: without clipping its LUT entry is 255 * area / area = 255.
        assert_eq!(run(16, 8, &[100u8; 128], 0.0, 2, 2), vec![255u8; 128]);
        // Clip 2 on 8x4 tiles: limit = max(int(2 * 32 / 256), 1) = 1, so 31 counts are spread as
        // residual, one every 256 / 31 = 8 bins from bin 0: bins 0, 8, ..., 96 (13 of them) sit
        // at or below 100, plus bin 100 itself (1): cumsum = 14, 14 * 255 / 32 = 111.56 -> 112.
        assert_eq!(run(16, 8, &[100u8; 128], 2.0, 2, 2), vec![112u8; 128]);
    }

    #[test]
    fn sixteen_bit_constant_image() {
        assert_eq!(run(4, 4, &[40_000u16; 16], 0.0, 1, 1), vec![65_535u16; 16]);
        assert_eq!(run(4, 4, &[0u16; 16], 0.0, 2, 2), vec![65_535u16; 16]);
    }

    #[test]
    fn single_tile_is_global_equalisation_with_ties_to_even() {
        // 2x1 image, values 0 and 255: cumsum 1 -> 1 * 255 / 2 = 127.5 rounds to 128 (even),
        // cumsum 2 -> 255. With one tile every weight lands on the same LUT.
        assert_eq!(run(2, 1, &[0u8, 255], 0.0, 1, 1), vec![128u8, 255]);
        // Values 0, 1, 2 in a 3x1 image: cumulative shares 1/3, 2/3, 1 of 255.
        assert_eq!(run(3, 1, &[0u8, 1, 2], 0.0, 1, 1), vec![85u8, 170, 255]);
    }

    #[test]
    fn padding_uses_reflect_101_and_grows_divisible_sides() {
        // 3x2 image, 2x1 tiles: 3 % 2 != 0, so width pads by 1 and height (2 % 1 == 0) by 1
        // too: tiles are 2x3. Rows 0, 1, 0 (reflect 101) and columns 0..4 -> 0, 1, 2, 1.
        let g = Grid::new(3, 2, 2, 1);
        assert_eq!((g.tile_w, g.tile_h), (2, 3));
        assert_eq!(
            (0..6).map(|p| reflect_101(p, 4)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 2, 1]
        );
        assert_eq!(reflect_101(7, 1), 0);
    }

    /// OpenCV's clipping written as plainly as OpenCV writes it.
    fn clip_reference(hist: &mut [u32], clip: u32) {
        if clip == 0 {
            return;
        }
        let mut clipped = 0;
        for bin in hist.iter_mut() {
            if *bin > clip {
                clipped += *bin - clip;
                *bin = clip;
            }
        }
        let levels = hist.len() as u32;
        let batch = clipped / levels;
        let mut residual = clipped - batch * levels;
        for bin in hist.iter_mut() {
            *bin += batch;
        }
        if let Some(step) = levels.checked_div(residual) {
            let step = step.max(1) as usize;
            let mut i = 0;
            while i < hist.len() && residual > 0 {
                hist[i] += 1;
                i += step;
                residual -= 1;
            }
        }
    }

    #[test]
    fn clipping_redistributes_excess_and_residual() {
        let mut h = vec![0u32; 256];
        h[5] = 300;
        clip_reference(&mut h, 10);
        // 290 clipped: batch 1 per bin, residual 34 every 256 / 34 = 7 bins from 0.
        assert_eq!(h.iter().sum::<u32>(), 300);
        assert_eq!(
            (h[5], h[0], h[7], h[1], h[7 * 33], h[7 * 34]),
            (11, 2, 2, 1, 2, 1)
        );
    }

    #[test]
    fn equalise_matches_clip_then_cumulative_sum() {
        let mut state = 12345u32;
        let mut rand = |m: u32| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (state >> 8) % m
        };
        for case in 0..200u32 {
            let levels = if case % 4 == 0 { 65_536 } else { 256 };
            let spike = 1 + rand(5000);
            let hist: Vec<u32> = (0..levels)
                .map(|_| if rand(10) == 0 { rand(spike) } else { rand(3) })
                .collect();
            let area: u32 = hist.iter().sum::<u32>().max(1);
            let clip = [0, 1, rand(50) + 1, rand(2000) + 1][(case % 4) as usize];
            let scale = (levels - 1) as f32 / area as f32;
            let mut expected = hist.clone();
            clip_reference(&mut expected, clip);
            let mut sum = 0u32;
            let expected: Vec<u16> = expected
                .iter()
                .map(|&b| {
                    sum += b;
                    (sum as f32 * scale).round_ties_even().clamp(0.0, 65535.0) as u16
                })
                .collect();
            let mut work = hist.clone();
            let mut lut = vec![0u16; levels as usize];
            equalise(&mut work, clip, scale, &mut lut);
            assert_eq!(lut, expected, "case {case}, clip {clip}");
            assert!(work.iter().all(|&b| b == 0), "histogram not left zeroed");
        }
    }

    #[test]
    fn rejects_bad_arguments_without_panicking() {
        let img = [0u8; 12];
        let r = |w, h, c, tx, ty, clip: f64| {
            clahe(
                ImageRef {
                    width: w,
                    height: h,
                    channels: c,
                    data: &img[..w * h * c],
                },
                clip,
                tx,
                ty,
            )
        };
        assert!(r(4, 3, 1, 0, 1, 2.0).is_err());
        assert!(r(4, 3, 1, 1, 0, 2.0).is_err());
        assert!(r(4, 3, 1, 5, 1, 2.0).is_err());
        assert!(r(4, 3, 1, 1, 4, 2.0).is_err());
        assert!(r(2, 2, 3, 1, 1, 2.0).is_err());
        assert!(r(0, 0, 1, 1, 1, 2.0).is_err());
        assert!(r(4, 3, 1, 1, 1, f64::NAN).is_err());
        assert!(r(4, 3, 1, 4, 3, -1.0).is_ok());
        let big = vec![0u16; 200 * 200];
        let too_fine = clahe(ImageRef::new(200, 200, 1, &big).unwrap(), 2.0, 200, 200);
        assert!(too_fine.is_err());
    }

    #[test]
    fn blend_matches_scalar_formula_on_all_lengths() {
        // The chunked loop and its remainder must agree with the plain expression.
        let lut: Vec<u8> = (0..=255u8).collect();
        let inv: Vec<u8> = (0..=255u8).rev().collect();
        for n in [1usize, 15, 16, 17, 40] {
            let src: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let xa: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1) % 1.0).collect();
            let xa1: Vec<f32> = xa.iter().map(|a| 1.0 - a).collect();
            let mut dst = vec![0u8; n];
            blend(
                &src,
                &mut dst,
                &xa,
                &xa1,
                [&lut, &inv, &inv, &lut],
                0.3,
                0.7,
            );
            for k in 0..n {
                let v = src[k] as usize;
                let r = (lut[v] as f32 * xa1[k] + inv[v] as f32 * xa[k]) * 0.7
                    + (inv[v] as f32 * xa1[k] + lut[v] as f32 * xa[k]) * 0.3;
                assert_eq!(
                    dst[k],
                    r.round_ties_even().clamp(0.0, 255.0) as u8,
                    "n={n} k={k}"
                );
            }
        }
    }
}
