//! Bindings of `gradatim_core::difficulty`: VNS-Gap's one-pass block epilogue.

use gradatim_core::difficulty::{accumulate_abs_sums, BlockTarget};
use numpy::{PyReadonlyArray2, PyReadwriteArray1, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::error::{to_py, wrong_type};

/// Adds `rint(scale * sum_j |block[i, j]|)` to `acc[row_start + i]` and, for columns
/// `j >= col_from`, `rint(scale * sum_i |block[i, j]|)` to `acc[col_start + j]` (int64 fixed
/// point; `block` is read once). The GIL is released while it runs.
#[pyfunction]
#[pyo3(signature = (block, scale, acc, row_start, col_start, col_from))]
fn vns_gap_block_sums(
    py: Python<'_>,
    block: PyReadonlyArray2<'_, f32>,
    scale: f64,
    mut acc: PyReadwriteArray1<'_, i64>,
    row_start: usize,
    col_start: usize,
    col_from: usize,
) -> PyResult<()> {
    let (rows, cols) = (block.shape()[0], block.shape()[1]);
    let not_c = || wrong_type("block", "a C-contiguous 2-D float32 array");
    if !block.is_c_contiguous() {
        return Err(not_c()); // as_slice also accepts Fortran order, which would be read transposed
    }
    let b = block.as_slice().map_err(|_| not_c())?;
    let a = acc
        .as_slice_mut()
        .map_err(|_| wrong_type("acc", "a contiguous writable 1-D int64 array"))?;
    let target = BlockTarget {
        row_start,
        col_start,
        col_from,
    };
    py.detach(|| accumulate_abs_sums(b, rows, cols, scale, a, target))
        .map_err(to_py)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(vns_gap_block_sums, m)?)?;
    Ok(())
}
