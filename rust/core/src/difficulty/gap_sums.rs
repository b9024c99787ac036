//! VNS-Gap's block epilogue: `|D|` row sums and column sums of one product block
//! `D = W'_i W_j^T = S^v_ij - S^t_ij`, in ONE pass over `D`, added to int64 fixed-point totals.
//!
//! The caller (`python/gradatim/difficulty/vns_gap.py`) computes `D` with BLAS into a reused
//! float32 buffer; this kernel replaces the NumPy passes that followed (`abs`, row sum, float64
//! casts, a grouped column sum, `rint`). Each element of `D` is read once: its absolute value goes
//! to the running row partial and to the running column partial, both in registers / L1.
//!
//! Summation order (fixed by the shape alone, so the result never depends on the CPU's vector
//! width, the block order or the number of ranks):
//!
//! - **Rows**: each row is cut into chunks of [`ROW_CHUNK`] columns. Inside a chunk, [`LANES`]
//!   float32 lanes each add every `LANES`-th element in order (at most `ROW_CHUNK / LANES` = 4
//!   values per lane), the lanes are reduced by a pairwise tree (6 levels) and the chunk's sum is
//!   added to a float64 row total. Error bound per chunk about `(4 + 6) u` relative (u = 2^-24),
//!   then float64: tighter than NumPy's float32 pairwise row sum.
//! - **Columns**: float32 sums over groups of [`ROW_GROUP`] consecutive rows (rows added in order),
//!   then float64 over the groups in order: at most `31 u` relative per group (the order of the
//!   NumPy code this kernel replaced).
//! - Each float64 total `x` becomes `rint(x * scale)` (round half to even, NumPy's `rint`) and is
//!   added to the int64 accumulator; integer addition is associative, hence the bit-for-bit
//!   independence of order and ranks.
//!
//! The loops are written over fixed-size lane arrays, which LLVM vectorises; on x86-64 the same
//! code is also compiled with AVX2 and picked at run time. No FMA and no reassociation: every
//! path performs the same float operations in the same order, so all give identical bits.

use crate::error::{Error, Result};

/// Float32 lanes of a row partial (each lane sums every `LANES`-th element of a chunk).
pub const LANES: usize = 64;
/// Columns per float32 row partial; chunks are added to the row's float64 total.
pub const ROW_CHUNK: usize = 256;
/// Rows per float32 column partial; groups are added to the column's float64 total.
pub const ROW_GROUP: usize = 32;

/// `rint(x * scale)` as i64 (round half to even, as NumPy's `rint`).
#[inline]
pub fn to_fixed(x: f64, scale: f64) -> i64 {
    (x * scale).round_ties_even() as i64
}

/// Where the sums of one `rows x cols` block go in the fixed-point accumulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockTarget {
    /// Row `i` of the block adds its `|D|` row sum to `acc[row_start + i]`.
    pub row_start: usize,
    /// Column `j >= col_from` adds its `|D|` column sum to `acc[col_start + j]`.
    pub col_start: usize,
    /// First column whose sum is added (`cols` for none, e.g. a diagonal block: its row sums
    /// already count every pair once).
    pub col_from: usize,
}

/// Adds `rint(scale * sum_j |block[i, j]|)` to `acc[t.row_start + i]` for every row `i` and
/// `rint(scale * sum_i |block[i, j]|)` to `acc[t.col_start + j]` for every column
/// `j >= t.col_from` of the row-major `rows x cols` float32 `block`, reading the block once.
///
/// Errors: `block.len() != rows * cols`, a target range outside `acc`, `col_from > cols`, or a
/// `scale` that is not a finite positive number.
pub fn accumulate_abs_sums(
    block: &[f32],
    rows: usize,
    cols: usize,
    scale: f64,
    acc: &mut [i64],
    t: BlockTarget,
) -> Result<()> {
    let what = "vns_gap block sums";
    if rows.checked_mul(cols) != Some(block.len()) {
        return Err(Error::invalid(format!(
            "{what}: block has {} values, not rows x cols = {rows} x {cols}",
            block.len()
        )));
    }
    if !(scale.is_finite() && scale > 0.0) {
        return Err(Error::invalid(format!(
            "{what}: scale must be finite and positive, got {scale}"
        )));
    }
    if t.col_from > cols {
        return Err(Error::invalid(format!(
            "{what}: col_from {} is past the block's {cols} columns",
            t.col_from
        )));
    }
    let fits = |start: usize, len: usize| start.checked_add(len).is_some_and(|e| e <= acc.len());
    if !fits(t.row_start, rows) || (t.col_from < cols && !fits(t.col_start, cols)) {
        return Err(Error::invalid(format!(
            "{what}: rows [{}, {}) or columns [{}, {}) fall outside the accumulator of {}",
            t.row_start,
            t.row_start.saturating_add(rows),
            t.col_start.saturating_add(t.col_from),
            t.col_start.saturating_add(cols),
            acc.len()
        )));
    }
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    let mut row_tot = vec![0f64; rows];
    let mut col_tot = vec![0f64; cols];
    sums(block, cols, &mut row_tot, &mut col_tot);
    for (a, &x) in acc[t.row_start..t.row_start + rows]
        .iter_mut()
        .zip(&row_tot)
    {
        *a += to_fixed(x, scale);
    }
    if t.col_from < cols {
        let dst = &mut acc[t.col_start + t.col_from..t.col_start + cols];
        for (a, &x) in dst.iter_mut().zip(&col_tot[t.col_from..]) {
            *a += to_fixed(x, scale);
        }
    }
    Ok(())
}

/// float64 `|block|` row and column sums (see the module docs for the order), dispatched to the
/// widest vector code the CPU runs; every variant returns the same bits.
fn sums(block: &[f32], cols: usize, row_tot: &mut [f64], col_tot: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { sums_avx2(block, cols, row_tot, col_tot) };
            return;
        }
    }
    sums_generic(block, cols, row_tot, col_tot)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sums_avx2(block: &[f32], cols: usize, row_tot: &mut [f64], col_tot: &mut [f64]) {
    sums_generic(block, cols, row_tot, col_tot)
}

#[inline(always)]
fn sums_generic(block: &[f32], cols: usize, row_tot: &mut [f64], col_tot: &mut [f64]) {
    let mut col32 = vec![0f32; cols];
    for (g, group) in block.chunks(ROW_GROUP * cols).enumerate() {
        col32.fill(0.0);
        for (r, row) in group.chunks_exact(cols).enumerate() {
            row_tot[g * ROW_GROUP + r] = row_pass(row, &mut col32);
        }
        for (c, &p) in col_tot.iter_mut().zip(&col32) {
            *c += f64::from(p);
        }
    }
}

/// One row: returns its float64 `|.|` sum and adds `|x_j|` to `col32[j]`.
#[inline(always)]
fn row_pass(row: &[f32], col32: &mut [f32]) -> f64 {
    let mut total = 0f64;
    for (chunk, cchunk) in row.chunks(ROW_CHUNK).zip(col32.chunks_mut(ROW_CHUNK)) {
        let mut lanes = [0f32; LANES];
        let mut vecs = chunk.chunks_exact(LANES);
        let mut cvecs = cchunk.chunks_exact_mut(LANES);
        for (x, c) in (&mut vecs).zip(&mut cvecs) {
            let x: &[f32; LANES] = x.try_into().expect("LANES values");
            let c: &mut [f32; LANES] = c.try_into().expect("LANES values");
            for ((l, &x), c) in lanes.iter_mut().zip(x).zip(c.iter_mut()) {
                let a = x.abs();
                *l += a;
                *c += a;
            }
        }
        for ((l, &x), c) in lanes
            .iter_mut()
            .zip(vecs.remainder())
            .zip(cvecs.into_remainder())
        {
            let a = x.abs();
            *l += a;
            *c += a;
        }
        total += f64::from(tree(lanes));
    }
    total
}

/// Pairwise sum of the lanes: `LANES` -> 1 by halving, lane `l` with lane `l + half`.
#[inline(always)]
fn tree(mut v: [f32; LANES]) -> f32 {
    let mut half = LANES / 2;
    while half > 0 {
        let (lo, hi) = v.split_at_mut(half);
        for (a, &b) in lo.iter_mut().zip(hi.iter()) {
            *a += b;
        }
        half /= 2;
    }
    v[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1) (splitmix64).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = s;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn oracle(block: &[f32], rows: usize, cols: usize) -> (Vec<f64>, Vec<f64>) {
        let mut r = vec![0f64; rows];
        let mut c = vec![0f64; cols];
        for i in 0..rows {
            for j in 0..cols {
                let a = f64::from(block[i * cols + j].abs());
                r[i] += a;
                c[j] += a;
            }
        }
        (r, c)
    }

    #[test]
    fn sums_match_float64_oracle_on_odd_shapes() {
        for &(rows, cols) in &[
            (1, 1),
            (1, 300),
            (33, 7),
            (31, 64),
            (65, 257),
            (100, 1000),
            (1024, 513),
        ] {
            let b = values(rows * cols, (rows * 7919 + cols) as u64);
            let (want_r, want_c) = oracle(&b, rows, cols);
            let (mut r, mut c) = (vec![0f64; rows], vec![0f64; cols]);
            sums_generic(&b, cols, &mut r, &mut c);
            for (g, w) in r.iter().zip(&want_r) {
                assert!((g - w).abs() <= 1e-6 * w.max(1e-30), "row {g} vs {w}");
            }
            for (g, w) in c.iter().zip(&want_c) {
                assert!((g - w).abs() <= 1e-6 * w.max(1e-30), "col {g} vs {w}");
            }
        }
    }

    #[test]
    fn dispatched_and_generic_paths_give_the_same_bits() {
        let (rows, cols) = (77, 1029);
        let b = values(rows * cols, 3);
        let (mut r1, mut c1) = (vec![0f64; rows], vec![0f64; cols]);
        let (mut r2, mut c2) = (vec![0f64; rows], vec![0f64; cols]);
        sums(&b, cols, &mut r1, &mut c1);
        sums_generic(&b, cols, &mut r2, &mut c2);
        assert_eq!(r1, r2);
        assert_eq!(c1, c2);
    }

    #[test]
    fn accumulates_fixed_point_rows_and_selected_columns() {
        let (rows, cols) = (40, 50);
        let b = values(rows * cols, 11);
        let (want_r, want_c) = oracle(&b, rows, cols);
        let scale = 2f64.powi(32);
        let mut acc = vec![5i64; 100];
        let t = BlockTarget {
            row_start: 0,
            col_start: 45,
            col_from: 5,
        };
        accumulate_abs_sums(&b, rows, cols, scale, &mut acc, t).unwrap();
        for i in 0..rows {
            let got = (acc[i] - 5) as f64 / scale;
            assert!((got - want_r[i]).abs() < 1e-5, "row {i}");
        }
        for j in 5..cols {
            let got = (acc[45 + j] - 5) as f64 / scale;
            assert!((got - want_c[j]).abs() < 1e-5, "col {j}");
        }
        // columns before col_from and entries outside both ranges are untouched
        assert_eq!(&acc[40..50], &[5; 10]);
        assert_eq!(&acc[95..], &[5; 5]);
    }

    #[test]
    fn transposed_block_gives_swapped_sums_to_quantisation() {
        // column sums of B equal row sums of B^T (different float order, same value to ~1e-6)
        let (rows, cols) = (70, 90);
        let b = values(rows * cols, 5);
        let mut bt = vec![0f32; rows * cols];
        for i in 0..rows {
            for j in 0..cols {
                bt[j * rows + i] = b[i * cols + j];
            }
        }
        let scale = 2f64.powi(20);
        let mut a1 = vec![0i64; rows + cols];
        let mut a2 = vec![0i64; rows + cols];
        let t1 = BlockTarget {
            row_start: 0,
            col_start: rows,
            col_from: 0,
        };
        let t2 = BlockTarget {
            row_start: rows,
            col_start: 0,
            col_from: 0,
        };
        accumulate_abs_sums(&b, rows, cols, scale, &mut a1, t1).unwrap();
        accumulate_abs_sums(&bt, cols, rows, scale, &mut a2, t2).unwrap();
        for (x, y) in a1.iter().zip(&a2) {
            assert!((x - y).abs() as f64 <= 1e-6 * *x as f64, "{x} vs {y}");
        }
    }

    #[test]
    fn rounds_half_to_even_like_numpy_rint() {
        assert_eq!(to_fixed(0.5, 1.0), 0);
        assert_eq!(to_fixed(1.5, 1.0), 2);
        assert_eq!(to_fixed(2.5, 1.0), 2);
        assert_eq!(to_fixed(2.5000001, 1.0), 3);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let b = [1f32; 6];
        let mut acc = [0i64; 4];
        let t = BlockTarget {
            row_start: 0,
            col_start: 0,
            col_from: 3,
        };
        assert!(accumulate_abs_sums(&b, 2, 4, 1.0, &mut acc, t).is_err()); // 6 != 2 x 4
        assert!(accumulate_abs_sums(&b, 2, 3, f64::NAN, &mut acc, t).is_err());
        assert!(accumulate_abs_sums(&b, 2, 3, 0.0, &mut acc, t).is_err());
        let past = BlockTarget { col_from: 4, ..t };
        assert!(accumulate_abs_sums(&b, 2, 3, 1.0, &mut acc, past).is_err());
        let out = BlockTarget { row_start: 3, ..t };
        assert!(accumulate_abs_sums(&b, 2, 3, 1.0, &mut acc, out).is_err());
        let cols_out = BlockTarget {
            col_start: 2,
            col_from: 0,
            ..t
        };
        assert!(accumulate_abs_sums(&b, 2, 3, 1.0, &mut acc, cols_out).is_err());
        // no columns selected: col_start is not checked
        let none = BlockTarget {
            col_start: 99,
            col_from: 3,
            row_start: 2,
        };
        accumulate_abs_sums(&b, 2, 3, 1.0, &mut acc, none).unwrap();
        assert_eq!(acc, [0, 0, 3, 3]);
    }
}
