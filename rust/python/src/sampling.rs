//! Bindings of `gradatim_core::sampling`: the multi-source generator, CURE's interleave pattern and
//! subset sharding. Index arrays come back as int64 NumPy arrays, built with the GIL released.

use gradatim_core::sampling::{self as core, Mode, MultiSource, Shard};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;

use crate::error::{to_py, wrong_type};

/// Seeded, resumable index generator behind `gradatim.sampling.MultiSourceSampler`.
#[pyclass(name = "MultiSource", module = "gradatim._core")]
pub struct PyMultiSource {
    inner: MultiSource,
}

#[pymethods]
impl PyMultiSource {
    #[new]
    #[pyo3(signature = (sizes, weights, num_samples, seed, replacement, mode, rank, world_size, drop_last))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        sizes: Vec<u64>,
        weights: Vec<f64>,
        num_samples: Option<u64>,
        seed: u64,
        replacement: bool,
        mode: &str,
        rank: u64,
        world_size: u64,
        drop_last: bool,
    ) -> PyResult<Self> {
        let mode = Mode::parse(mode).map_err(to_py)?;
        let shard = Shard::new(rank, world_size, drop_last).map_err(to_py)?;
        let inner = MultiSource::new(sizes, weights, num_samples, seed, replacement, mode, shard)
            .map_err(to_py)?;
        Ok(PyMultiSource { inner })
    }

    /// Log `weights` as in force from `step` on.
    fn set_weights(&mut self, step: u64, weights: Vec<f64>) -> PyResult<()> {
        self.inner.set_weights(step, weights).map_err(to_py)
    }

    /// This rank's indices at local positions `start .. start + count` of `epoch`.
    fn chunk<'py>(
        &mut self,
        py: Python<'py>,
        epoch: u64,
        start: u64,
        count: u64,
    ) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let inner = &mut self.inner;
        let out = py
            .detach(|| inner.chunk(epoch, start, count))
            .map_err(to_py)?;
        Ok(out.into_pyarray(py))
    }

    /// `[(step, weights), ...]`, sorted by step.
    fn log(&self) -> Vec<(u64, Vec<f64>)> {
        self.inner.log()
    }

    fn weights_at(&self, step: u64) -> Vec<f64> {
        self.inner.weights_at(step).to_vec()
    }

    #[getter]
    fn local_len(&self) -> u64 {
        self.inner.local_len()
    }

    #[getter]
    fn num_samples(&self) -> u64 {
        self.inner.num_samples()
    }

    #[getter]
    fn offsets(&self) -> Vec<u64> {
        self.inner.offsets().to_vec()
    }
}

/// One period of CURE's interleave slot pattern (source ids).
#[pyfunction]
fn interleave_pattern<'py>(
    py: Python<'py>,
    weights: Vec<f64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let p = core::interleave_pattern(&weights).map_err(to_py)?;
    Ok(p.into_iter()
        .map(i64::from)
        .collect::<Vec<_>>()
        .into_pyarray(py))
}

/// Slot counts per source of the interleave pattern.
#[pyfunction]
fn interleave_slots(weights: Vec<f64>) -> PyResult<Vec<u64>> {
    core::interleave::slot_counts(&weights).map_err(to_py)
}

/// Shuffle (seeded by `(seed, epoch)`) and shard an epoch subset like DistributedSampler.
#[pyfunction]
#[pyo3(signature = (indices, seed, epoch, shuffle, rank, world_size, drop_last))]
#[allow(clippy::too_many_arguments)]
fn shard_subset<'py>(
    py: Python<'py>,
    indices: PyReadonlyArray1<'py, i64>,
    seed: u64,
    epoch: u64,
    shuffle: bool,
    rank: u64,
    world_size: u64,
    drop_last: bool,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let shard = Shard::new(rank, world_size, drop_last).map_err(to_py)?;
    let idx = indices
        .as_slice()
        .map_err(|_| wrong_type("indices", "a contiguous int64 array"))?;
    let out = py.detach(|| core::subset::shard_subset(idx, seed, epoch, shuffle, shard));
    Ok(out.into_pyarray(py))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyMultiSource>()?;
    m.add_function(wrap_pyfunction!(interleave_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(interleave_slots, m)?)?;
    m.add_function(wrap_pyfunction!(shard_subset, m)?)?;
    Ok(())
}
