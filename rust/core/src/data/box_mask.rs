//! MedCLM's Medium-stage supervision: a per-sample box mask on the model's patch grid,
//! Gaussian-blurred and normalised to sum 1, the target distribution of `KL(mask || attention)`.

/// The mask of `boxes` (normalised `[x1, y1, x2, y2]`) on a `grid_w` x `grid_h` patch grid,
/// row-major. Each cell holds the fraction of its area covered by the union-approximating sum of
/// boxes (capped at 1), blurred with a Gaussian of `sigma` cells (zero padding) and normalised to
/// sum 1. Without boxes the mask is all zeros: there is nothing to attend to, and the loss skips it.
pub fn box_mask(boxes: &[[f64; 4]], grid_w: usize, grid_h: usize, sigma: f64) -> Vec<f32> {
    let mut cells = vec![0.0f64; grid_w * grid_h];
    for b in boxes {
        for (gy, row) in cells.chunks_exact_mut(grid_w).enumerate() {
            let (cy0, cy1) = (gy as f64 / grid_h as f64, (gy + 1) as f64 / grid_h as f64);
            let oy = (b[3].min(cy1) - b[1].max(cy0)).max(0.0) * grid_h as f64;
            if oy == 0.0 {
                continue;
            }
            for (gx, cell) in row.iter_mut().enumerate() {
                let (cx0, cx1) = (gx as f64 / grid_w as f64, (gx + 1) as f64 / grid_w as f64);
                let ox = (b[2].min(cx1) - b[0].max(cx0)).max(0.0) * grid_w as f64;
                *cell = (*cell + ox * oy).min(1.0);
            }
        }
    }
    if sigma > 0.0 {
        cells = blur(&cells, grid_w, grid_h, sigma);
    }
    let total: f64 = cells.iter().sum();
    if total <= 0.0 {
        return vec![0.0; grid_w * grid_h];
    }
    cells.iter().map(|v| (v / total) as f32).collect()
}

/// Separable Gaussian blur, radius ceil(3 sigma), zero padding.
fn blur(cells: &[f64], w: usize, h: usize, sigma: f64) -> Vec<f64> {
    let r = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f64> = (-r..=r)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let pass = |src: &[f64], along_x: bool| -> Vec<f64> {
        let mut out = vec![0.0; w * h];
        for y in 0..h as isize {
            for x in 0..w as isize {
                let mut acc = 0.0;
                for (k, weight) in kernel.iter().enumerate() {
                    let d = k as isize - r;
                    let (sx, sy) = if along_x { (x + d, y) } else { (x, y + d) };
                    if (0..w as isize).contains(&sx) && (0..h as isize).contains(&sy) {
                        acc += weight * src[sy as usize * w + sx as usize];
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

    #[test]
    fn sums_to_one_and_peaks_inside_the_box() {
        let m = box_mask(&[[0.5, 0.5, 1.0, 1.0]], 4, 4, 0.0);
        let expect = [
            0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25, 0.25, 0.0, 0.0, 0.25, 0.25,
        ];
        assert_eq!(m, expect.map(|v| v as f32).to_vec());
        let blurred = box_mask(&[[0.5, 0.5, 1.0, 1.0]], 8, 8, 1.0);
        assert!((blurred.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!(blurred[6 * 8 + 6] > blurred[8 + 1]);
    }

    #[test]
    fn no_boxes_gives_zeros() {
        assert!(box_mask(&[], 3, 3, 1.0).iter().all(|&v| v == 0.0));
    }
}
