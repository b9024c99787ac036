//! MedCLM's Medium-stage supervision: a per-sample box mask on the model's patch grid,
//! Gaussian-blurred and normalised to sum 1, the target distribution of `KL(mask || attention)`.
//!
//! Defaults follow MedCLM's released code (github.com/ksyint/PROGRESSIVE, commit a7cca74): a 24 x 24
//! grid, every cell a box touches set to 1 (whole cells), a 9-tap Gaussian with sigma 3 and reflect
//! padding (mirror without repeating the edge, OpenCV's `BORDER_REFLECT_101`, torch's `"reflect"`).
//! gradatim's earlier mask (the covered *fraction* of each cell, a radius-`ceil(3 sigma)` kernel
//! with zero padding) stays available through [`MaskSpec`].

use std::str::FromStr;

use crate::error::{Error, Result};

/// How a box marks grid cells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cells {
    /// Every cell the box touches is 1 (MedCLM).
    Whole,
    /// Each cell holds the covered fraction of its area (capped at 1 over overlapping boxes).
    Fraction,
}

/// What lies beyond the grid for the blur.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Mirror without repeating the edge cell (`BORDER_REFLECT_101`).
    Reflect,
    /// Zeros.
    Zero,
}

impl FromStr for Cells {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "whole" => Ok(Cells::Whole),
            "fraction" => Ok(Cells::Fraction),
            o => Err(Error::invalid(format!(
                "mask_cells must be 'whole' or 'fraction', not {o:?}"
            ))),
        }
    }
}

impl FromStr for Padding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "reflect" => Ok(Padding::Reflect),
            "zero" => Ok(Padding::Zero),
            o => Err(Error::invalid(format!(
                "mask_padding must be 'reflect' or 'zero', not {o:?}"
            ))),
        }
    }
}

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
}

impl Default for MaskSpec {
    /// MedCLM's released defaults.
    fn default() -> Self {
        MaskSpec {
            grid: (24, 24),
            sigma: 3.0,
            kernel: Some(9),
            padding: Padding::Reflect,
            cells: Cells::Whole,
        }
    }
}

impl MaskSpec {
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

/// The mask of `boxes` (normalised `[x1, y1, x2, y2]`) on the grid, row-major, blurred and
/// normalised to sum 1. Without boxes the mask is all zeros: there is nothing to attend to, and
/// the loss skips it.
pub fn box_mask(boxes: &[[f64; 4]], spec: &MaskSpec) -> Vec<f32> {
    let (grid_w, grid_h) = spec.grid;
    let mut cells = vec![0.0f64; grid_w * grid_h];
    for b in boxes {
        match spec.cells {
            Cells::Whole => {
                let span = |lo: f64, hi: f64, n: usize| {
                    let a = ((lo.clamp(0.0, 1.0) * n as f64).floor() as usize).min(n);
                    let b = ((hi.clamp(0.0, 1.0) * n as f64).ceil() as usize).min(n);
                    (a, b.max(a))
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
        }
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
    fn whole_cells_mark_every_touched_cell() {
        let spec = MaskSpec {
            sigma: 0.0,
            grid: (4, 4),
            ..MaskSpec::default()
        };
        // x 0.30..0.55 touches columns 1 and 2; y 0.0..0.2 touches row 0 only
        let m = box_mask(&[[0.30, 0.0, 0.55, 0.2]], &spec);
        let marked: Vec<usize> = (0..16).filter(|&i| m[i] > 0.0).collect();
        assert_eq!(marked, vec![1, 2]);
        assert!(m.iter().all(|&v| v == 0.0 || v == 0.5));
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
        assert_eq!((d.padding, d.cells), (Padding::Reflect, Cells::Whole));
        assert!(MaskSpec {
            kernel: Some(8),
            ..d
        }
        .validate()
        .is_err());
    }

    #[test]
    fn no_boxes_gives_zeros() {
        assert!(box_mask(&[], &MaskSpec::default())
            .iter()
            .all(|&v| v == 0.0));
    }
}
