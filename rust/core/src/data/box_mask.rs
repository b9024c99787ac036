//! MedCLM's Medium-stage supervision: a per-sample box mask on the model's patch grid,
//! Gaussian-blurred and normalised to sum 1, the target distribution of `KL(mask || attention)`.
//!
//! Defaults follow MedCLM's released code (github.com/ksyint/PROGRESSIVE, commit a7cca74,
//! `integrated_cot/src/training/attn_loss.py`, `_create_soft_mask`): a 24 x 24 grid; the cells
//! `floor(x1 n) .. trunc(x2 n)` (start clamped to `0..=n-1`, end to `1..=n`, in float32 as torch
//! computes them), so the box's end edge is truncated and a box inside one cell (away from the
//! first row and column) marks no cell at all; a sample without a box gets the whole image
//! (`_parse_bbox_string` turns an empty box into `[0, 0, 1, 1]`); a 9-tap Gaussian with sigma 3 and
//! reflect padding (mirror without repeating the edge, OpenCV's `BORDER_REFLECT_101`, torch's
//! `"reflect"`, which torchvision's `GaussianBlur` uses); normalised to sum 1 (an all-zero mask
//! stays zero). The released code takes one box per sample; here every box of the sample is marked
//! (their union).
//!
//! gradatim's own rules stay available through [`MaskSpec`]: [`Cells::Whole`] (every cell the box
//! touches: the end edge rounded up, a box inside one cell gives that cell), [`Empty::Zeros`] (no
//! box: all zeros, which the loss skips), and the earlier mask (the covered *fraction* of each
//! cell, a radius-`ceil(3 sigma)` kernel with zero padding).

use crate::error::{Error, Result};

/// How a box marks grid cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Cells {
    /// MedCLM's released rule: cells `floor(x1 n) ..< trunc(x2 n)`, the start clamped to
    /// `[0, n - 1]` and the end to `[1, n]` (float32, as torch): the end edge is truncated.
    Truncate,
    /// Every cell the box touches is 1 (gradatim's rule: the end edge rounded up).
    Whole,
    /// Each cell holds the covered fraction of its area (capped at 1 over overlapping boxes).
    Fraction,
}

/// The mask of a sample without a (surviving) box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Empty {
    /// The whole image, as the box `[0, 0, 1, 1]` (MedCLM's released `_parse_bbox_string`).
    Image,
    /// All zeros: nothing to attend to, and the loss skips the sample (gradatim's rule).
    Zeros,
}

/// What lies beyond the grid for the blur.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum Padding {
    /// Mirror without repeating the edge cell (`BORDER_REFLECT_101`).
    Reflect,
    /// Zeros.
    Zero,
}

named_enum!(Cells, "mask_cells", [
    "truncate" => Truncate,
    "whole" => Whole,
    "fraction" => Fraction,
]);
named_enum!(Empty, "mask_empty", ["image" => Image, "zeros" => Zeros]);
named_enum!(Padding, "mask_padding", ["reflect" => Reflect, "zero" => Zero]);

/// The Medium-stage mask's configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct MaskSpec {
    /// Patch grid `(w, h)`.
    pub grid: (usize, usize),
    /// Gaussian sigma in cells (0: no blur).
    pub sigma: f64,
    /// Kernel size in taps (odd); `None`: `2 ceil(3 sigma) + 1`.
    pub kernel: Option<usize>,
    pub padding: Padding,
    pub cells: Cells,
    pub empty: Empty,
}

impl Default for MaskSpec {
    /// MedCLM's released defaults.
    fn default() -> Self {
        MaskSpec {
            grid: (24, 24),
            sigma: 3.0,
            kernel: Some(9),
            padding: Padding::Reflect,
            cells: Cells::Truncate,
            empty: Empty::Image,
        }
    }
}

impl MaskSpec {
    /// This spec on an `n x n` grid.
    pub fn with_grid(self, n: usize) -> MaskSpec {
        MaskSpec {
            grid: (n, n),
            ..self
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.grid.0 == 0 || self.grid.1 == 0 || self.sigma.is_nan() || self.sigma < 0.0 {
            return Err(Error::invalid(
                "mask_grid must be positive and mask_sigma >= 0",
            ));
        }
        if self.kernel.is_some_and(|k| k % 2 == 0 || k == 0) {
            return Err(Error::invalid("mask_kernel must be a positive odd number"));
        }
        Ok(())
    }
}

/// The released rule's cells of one axis: `[x1 n]` clamped to `[0, n - 1]` and `[x2 n]` clamped
/// to `[1, n]`, each truncated toward zero (`.clamp(..).long()` on float32 tensors).
fn truncated_span(lo: f64, hi: f64, n: usize) -> (usize, usize) {
    let nf = n as f32;
    let a = ((lo as f32) * nf).clamp(0.0, nf - 1.0) as usize;
    let b = ((hi as f32) * nf).clamp(1.0, nf) as usize;
    (a, b.max(a))
}

/// Every cell the box touches: `floor(x1 n) ..< ceil(x2 n)` within the grid.
fn touched_span(lo: f64, hi: f64, n: usize) -> (usize, usize) {
    let a = ((lo.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n);
    let b = ((hi.clamp(0.0, 1.0) * n as f64).ceil() as usize).min(n);
    (a, b.max(a))
}

/// The mask of `boxes` (normalised `[x1, y1, x2, y2]`) on the grid, row-major, blurred and
/// normalised to sum 1. Without boxes: the whole image ([`Empty::Image`]) or all zeros
/// ([`Empty::Zeros`]); a mask whose cells are all zero (a box that marks no cell) stays zero, and
/// the loss skips it.
pub fn box_mask(boxes: &[[f64; 4]], spec: &MaskSpec) -> Vec<f32> {
    let (grid_w, grid_h) = spec.grid;
    let whole_image = [[0.0, 0.0, 1.0, 1.0]];
    let boxes = match (boxes.is_empty(), spec.empty) {
        (true, Empty::Image) => &whole_image[..],
        _ => boxes,
    };
    let mut cells = vec![0.0f64; grid_w * grid_h];
    for b in boxes {
        match spec.cells {
            Cells::Truncate | Cells::Whole => {
                let span = if spec.cells == Cells::Truncate {
                    truncated_span
                } else {
                    touched_span
                };
                let (x0, x1) = span(b[0], b[2], grid_w);
                let (y0, y1) = span(b[1], b[3], grid_h);
                for y in y0..y1 {
                    cells[y * grid_w + x0..y * grid_w + x1].fill(1.0);
                }
            }
            Cells::Fraction => {
                for (gy, row) in cells.chunks_exact_mut(grid_w).enumerate() {
                    let (cy0, cy1) = (gy as f64 / grid_h as f64, (gy + 1) as f64 / grid_h as f64);
                    let oy = (b[3].min(cy1) - b[1].max(cy0)).max(0.0) * grid_h as f64;
                    if oy == 0.0 {
                        continue;
                    }
                    for (gx, cell) in row.iter_mut().enumerate() {
                        let (cx0, cx1) =
                            (gx as f64 / grid_w as f64, (gx + 1) as f64 / grid_w as f64);
                        let ox = (b[2].min(cx1) - b[0].max(cx0)).max(0.0) * grid_w as f64;
                        *cell = (*cell + ox * oy).min(1.0);
                    }
                }
            }
        }
    }
    if spec.sigma > 0.0 {
        cells = blur(&cells, grid_w, grid_h, spec);
    }
    let total: f64 = cells.iter().sum();
    if total <= 0.0 {
        return vec![0.0; grid_w * grid_h];
    }
    cells.iter().map(|v| (v / total) as f32).collect()
}

/// `i` reflected into `0..n` without repeating the edge (`BORDER_REFLECT_101`); `None` outside
/// for zero padding.
fn source(i: isize, n: usize, padding: Padding) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match padding {
        Padding::Zero => None,
        Padding::Reflect if n == 1 => Some(0),
        Padding::Reflect => {
            let period = 2 * (n - 1);
            let m = i.rem_euclid(period);
            Some(if m < n { m } else { period - m } as usize)
        }
    }
}

/// Separable Gaussian blur, normalised taps (as `cv2.getGaussianKernel`).
fn blur(cells: &[f64], w: usize, h: usize, spec: &MaskSpec) -> Vec<f64> {
    let sigma = spec.sigma;
    let r = spec
        .kernel
        .map_or((3.0 * sigma).ceil() as isize, |k| (k / 2) as isize);
    let mut kernel: Vec<f64> = (-r..=r)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let sum: f64 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= sum);
    let pass = |src: &[f64], along_x: bool| -> Vec<f64> {
        let mut out = vec![0.0; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut acc = 0.0;
                for (k, weight) in kernel.iter().enumerate() {
                    let d = k as isize - r;
                    let at = if along_x {
                        source(x + d, w, spec.padding).map(|sx| y as usize * w + sx)
                    } else {
                        source(y + d, h, spec.padding).map(|sy| sy * w + x as usize)
                    };
                    if let Some(i) = at {
                        acc += weight * src[i];
                    }
                }
                out[y as usize * w + x as usize] = acc;
            }
        }
        out
    };
    pass(&pass(cells, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(grid: usize, sigma: f64) -> MaskSpec {
        MaskSpec {
            grid: (grid, grid),
            sigma,
            kernel: None,
            padding: Padding::Zero,
            cells: Cells::Fraction,
            empty: Empty::Zeros,
        }
    }

    /// No blur, so the marked cells can be read off.
    fn unblurred(grid: usize, cells: Cells) -> MaskSpec {
        MaskSpec {
            sigma: 0.0,
            grid: (grid, grid),
            cells,
            ..MaskSpec::default()
        }
    }

    fn marked(m: &[f32]) -> Vec<usize> {
        (0..m.len()).filter(|&i| m[i] > 0.0).collect()
    }

    /// `_create_soft_mask` of ksyint/PROGRESSIVE a7cca74, written out for one box on an
    /// `n x n` grid: `x1 = (b[0] * n).clamp(0, n - 1).long()`, `x2 = (b[2] * n).clamp(1,
    /// n).long()` (float32 tensors), likewise for y, then `masks[y1:y2, x1:x2] = 1`.
    fn released_cells(b: [f32; 4], n: usize) -> Vec<usize> {
        let nf = n as f32;
        let lo = |v: f32| (v * nf).clamp(0.0, nf - 1.0).trunc() as usize;
        let hi = |v: f32| (v * nf).clamp(1.0, nf).trunc() as usize;
        let (x1, y1, x2, y2) = (lo(b[0]), lo(b[1]), hi(b[2]), hi(b[3]));
        let mut out = Vec::new();
        for y in y1..y2.max(y1) {
            for x in x1..x2.max(x1) {
                out.push(y * n + x);
            }
        }
        out
    }

    #[test]
    fn fraction_cells_sum_to_one_and_peak_inside_the_box() {
        let m = box_mask(&[[0.5, 0.5, 1.0, 1.0]], &legacy(4, 0.0));
        let expect = [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.0, 0.0, 0.25, 0.25,
        ];
        assert_eq!(m, expect.map(|v| v as f32).to_vec());
        let blurred = box_mask(&[[0.5, 0.5, 1.0, 1.0]], &legacy(8, 1.0));
        assert!((blurred.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(blurred[6 * 8 + 6] > blurred[8 + 1]);
    }

    #[test]
    fn released_cells_truncate_the_end_edge() {
        // x 0.30..0.55 on 4 cells: 1.2..2.2 -> column 1 only (gradatim's rule: 1 and 2);
        // y 0.0..0.2: 0..0.8, the end clamped up to 1 -> row 0
        let b = [0.30, 0.0, 0.55, 0.2];
        let m = box_mask(&[b], &unblurred(4, Cells::Truncate));
        assert_eq!(marked(&m), vec![1]);
        assert_eq!(marked(&m), released_cells(b.map(|v| v as f32), 4));
        let m = box_mask(&[b], &unblurred(4, Cells::Whole));
        assert_eq!(marked(&m), vec![1, 2]);
        assert!(m.iter().all(|&v| v == 0.0 || v == 0.5));
    }

    #[test]
    fn a_box_inside_one_cell_marks_nothing_as_released_but_its_cell_as_gradatim() {
        let inner = [0.30, 0.30, 0.45, 0.45]; // 1.2..1.8 on 4 cells: x1 = x2 = 1
        let m = box_mask(&[inner], &MaskSpec::default().with_grid(4));
        assert!(
            m.iter().all(|&v| v == 0.0),
            "blurred or not, nothing is marked"
        );
        assert!(released_cells(inner.map(|v| v as f32), 4).is_empty());
        assert_eq!(
            marked(&box_mask(&[inner], &unblurred(4, Cells::Whole))),
            vec![5]
        );
        // in the first row and column the end's clamp to >= 1 keeps the cell, as released
        let corner = [0.05, 0.05, 0.2, 0.2];
        let m = box_mask(&[corner], &unblurred(4, Cells::Truncate));
        assert_eq!(marked(&m), vec![0]);
        assert_eq!(marked(&m), released_cells(corner.map(|v| v as f32), 4));
        // at the far edge the start's clamp to <= n - 1 keeps the last cell
        let far = [0.9, 0.9, 1.0, 1.0];
        let m = box_mask(&[far], &unblurred(4, Cells::Truncate));
        assert_eq!(marked(&m), vec![15]);
        assert_eq!(marked(&m), released_cells(far.map(|v| v as f32), 4));
    }

    #[test]
    fn released_cells_are_computed_in_float32_as_torch_does() {
        // 0.29 * 100 is 28.999999999999996 in f64 but 29.0 in f32: the released end is 29
        let b = [0.0, 0.0, 0.29, 0.01];
        let m = box_mask(&[b], &unblurred(100, Cells::Truncate));
        let want = released_cells(b.map(|v| v as f32), 100);
        assert_eq!(want.len(), 29);
        assert_eq!(marked(&m), want);
    }

    #[test]
    fn released_cells_match_the_transcription_on_a_sweep_of_boxes() {
        // edges on a 1/50 lattice over grids that do and do not divide it
        for n in [3usize, 4, 7, 24] {
            let spec = unblurred(n, Cells::Truncate);
            for i in 0..50 {
                for j in (i + 1)..=50 {
                    let (lo, hi) = (i as f64 / 50.0, j as f64 / 50.0);
                    let b = [lo, hi / 2.0, hi, (hi + 1.0) / 2.0];
                    let b = [b[0], b[1].min(b[3] - 0.01), b[2], b[3]];
                    let got = marked(&box_mask(&[b], &spec));
                    assert_eq!(got, released_cells(b.map(|v| v as f32), n), "{b:?} on {n}");
                }
            }
        }
    }

    #[test]
    fn reflect_101_indices() {
        let got: Vec<usize> = (-3..7)
            .map(|i| source(i, 4, Padding::Reflect).unwrap())
            .collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(source(-1, 4, Padding::Zero), None);
    }

    #[test]
    fn defaults_are_medclms() {
        let d = MaskSpec::default();
        assert_eq!((d.grid, d.sigma, d.kernel), ((24, 24), 3.0, Some(9)));
        assert_eq!(
            (d.padding, d.cells, d.empty),
            (Padding::Reflect, Cells::Truncate, Empty::Image)
        );
        assert!(MaskSpec {
            kernel: Some(8),
            ..d
        }
        .validate()
        .is_err());
        assert!("half".parse::<Cells>().is_err() && "none".parse::<Empty>().is_err());
    }

    #[test]
    fn no_boxes_give_the_whole_image_as_released_or_zeros_as_gradatim() {
        let m = box_mask(&[], &MaskSpec::default());
        // a constant grid stays constant under a reflect-padded blur: uniform over 24 x 24
        assert!(
            m.iter().all(|&v| (v - 1.0 / 576.0).abs() < 1e-9),
            "{:?}",
            &m[..4]
        );
        let zeros = MaskSpec {
            empty: Empty::Zeros,
            ..MaskSpec::default()
        };
        assert!(box_mask(&[], &zeros).iter().all(|&v| v == 0.0));
    }
}
