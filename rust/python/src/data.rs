//! Bindings of `gradatim_core::data`: the data set spec, the threaded batch stream and the box
//! text formats. Batches cross into Python as one dict of NumPy arrays and lists per batch.

use std::path::PathBuf;
use std::sync::Arc;

use gradatim_core::data::augment::AugmentConfig;
use gradatim_core::data::batch::{build_batch, Batch, Pixels};
use gradatim_core::data::box_format::{
    parse_boxes as core_parse, render_boxes as core_render, BoxFormat,
};
use gradatim_core::data::box_mask::{box_mask as core_box_mask, MaskSpec};
use gradatim_core::data::cache::Cache;
use gradatim_core::data::manifest::{Manifest, ManifestOptions, Part, Selection, Task};
use gradatim_core::data::manifest_arrow;
use gradatim_core::data::sample::{DatasetConfig, DatasetOptions, DatasetSpec};
use gradatim_core::data::stream::{BatchJob, BatchStream, Next};
use gradatim_core::Error;
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use serde_json::Value;

use crate::error::to_py;
use crate::json::{from_value, to_value};
use crate::manifest::ManifestArg;

fn invalid(msg: impl std::fmt::Display) -> PyErr {
    to_py(Error::invalid(msg))
}

/// The data set's options, a dict read by the core ([`DatasetOptions`]: a missing option takes
/// the core's default; an unknown or ill-typed one is an `InvalidArgumentError` naming it).
fn dataset_options(config: &Bound<'_, PyAny>) -> PyResult<(ManifestOptions, DatasetConfig)> {
    let value = to_value(config).map_err(|e| {
        let at = if e.path.is_empty() { "config" } else { &e.path };
        invalid(format!("{at}: {}", e.reason))
    })?;
    DatasetOptions::from_value(value)
        .and_then(DatasetOptions::resolve)
        .map_err(to_py)
}

/// An opened manifest: validated once, its records parsed into the core (JSON lines, Parquet
/// rows) or memory-mapped (packed); data sets composed from it share it, never copy it.
#[pyclass(module = "gradatim._core", frozen, weakref, name = "Manifest")]
pub struct OpenManifest {
    manifest: Arc<Manifest>,
}

#[pymethods]
impl OpenManifest {
    /// `manifest`: JSONL text or rows, as for `Dataset`; relative images resolve under `root`.
    #[new]
    #[pyo3(signature = (manifest, name, row_kind, root, allow_outside_root=false))]
    fn new(
        py: Python<'_>,
        manifest: ManifestArg<'_>,
        name: Option<&str>,
        row_kind: &str,
        root: PathBuf,
        allow_outside_root: bool,
    ) -> PyResult<Self> {
        let opts = ManifestOptions {
            root,
            allow_outside_root,
        };
        let manifest = manifest.convert();
        let m = py
            .detach(|| {
                manifest.read(name, row_kind, |rows, source| {
                    Manifest::from_rows(rows, source, &opts)
                })
            })
            .map_err(to_py)?;
        Ok(OpenManifest {
            manifest: Arc::new(m),
        })
    }

    /// A packed manifest, memory-mapped (an object store URL: read whole).
    #[staticmethod]
    #[pyo3(signature = (location, root, allow_outside_root=false))]
    fn open_packed(
        py: Python<'_>,
        location: &str,
        root: PathBuf,
        allow_outside_root: bool,
    ) -> PyResult<Self> {
        let opts = ManifestOptions {
            root,
            allow_outside_root,
        };
        let m = py
            .detach(|| manifest_arrow::open(location, &opts))
            .map_err(to_py)?;
        Ok(OpenManifest {
            manifest: Arc::new(m),
        })
    }

    fn __len__(&self) -> usize {
        self.manifest.len()
    }

    /// The manifest's name in errors (its path).
    #[getter]
    fn name(&self) -> &str {
        &self.manifest.name
    }

    /// The indices (uint32, manifest order) of the records of `split`, whose `source` is
    /// `source` and whose task is one of `tasks` (`None`: any).
    #[pyo3(signature = (split=None, source=None, tasks=None))]
    fn select<'py>(
        &self,
        py: Python<'py>,
        split: Option<&str>,
        source: Option<&str>,
        tasks: Option<Vec<String>>,
    ) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let tasks = tasks
            .map(|names| {
                names
                    .iter()
                    .map(|t| {
                        Task::parse(t).ok_or_else(|| {
                            invalid(format!(
                                "tasks: unknown task {t:?} (one of {})",
                                Task::ALL.map(Task::name).join(", ")
                            ))
                        })
                    })
                    .collect::<PyResult<Vec<Task>>>()
            })
            .transpose()?;
        let what = Selection {
            split,
            source,
            tasks: tasks.as_deref(),
        };
        let m = &self.manifest;
        let picked = py.detach(|| m.select(&what)).map_err(to_py)?;
        Ok(PyArray1::from_vec(py, picked))
    }
}

/// A manifest plus everything needed to turn an index into a sample (immutable, shareable).
#[pyclass(module = "gradatim._core", frozen)]
pub struct Dataset {
    pub(crate) spec: Arc<DatasetSpec>,
}

#[pymethods]
impl Dataset {
    /// `manifest`: JSONL text (rows are lines) or a list of record dicts (rows are `row_kind`:
    /// "row" for Parquet, "record" for in-memory records); `name`: the manifest in errors.
    #[new]
    #[pyo3(signature = (manifest, name, row_kind, config))]
    fn new(
        py: Python<'_>,
        manifest: ManifestArg<'_>,
        name: Option<&str>,
        row_kind: &str,
        config: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let (opts, config) = dataset_options(config)?;
        let manifest = manifest.convert();
        let spec = py
            .detach(|| {
                let m = manifest.read(name, row_kind, |rows, source| {
                    Manifest::from_rows(rows, source, &opts)
                })?;
                DatasetSpec::new(m, config)
            })
            .map_err(to_py)?;
        Ok(Dataset {
            spec: Arc::new(spec),
        })
    }

    /// A packed manifest (`gradatim manifest pack`): a path, memory-mapped, or an object store
    /// URL, read whole.
    #[staticmethod]
    fn open_packed(py: Python<'_>, location: &str, config: &Bound<'_, PyAny>) -> PyResult<Self> {
        let (opts, config) = dataset_options(config)?;
        let spec = py
            .detach(|| DatasetSpec::new(manifest_arrow::open(location, &opts)?, config))
            .map_err(to_py)?;
        Ok(Dataset {
            spec: Arc::new(spec),
        })
    }

    /// One data set of chosen records of opened manifests, one part after the other: each part
    /// `(manifest, indices, source)` (`source`: the name its records take, `None`: their own),
    /// the manifests shared, not copied. Ids must be unique across the parts.
    #[staticmethod]
    fn compose(
        py: Python<'_>,
        parts: Vec<(
            PyRef<'_, OpenManifest>,
            PyReadonlyArray1<'_, u32>,
            Option<String>,
        )>,
        config: &Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let (_, config) = dataset_options(config)?;
        let parts = parts
            .into_iter()
            .map(|(m, indices, source)| {
                Ok(Part {
                    manifest: m.manifest.clone(),
                    indices: indices.as_slice().map_err(invalid)?.to_vec(),
                    source,
                })
            })
            .collect::<PyResult<Vec<Part>>>()?;
        let spec = py
            .detach(|| DatasetSpec::shared(Arc::new(Manifest::compose(parts)?), config))
            .map_err(to_py)?;
        Ok(Dataset {
            spec: Arc::new(spec),
        })
    }

    fn __len__(&self) -> usize {
        self.spec.manifest.len()
    }

    /// One manifest column as a list: "id", "image", "source", "task", "split", "text", "line",
    /// "hard_id", "prompt" (`None` where absent), "phrase", "anatomy" (the first box's, `None`
    /// without boxes or anatomy).
    fn column<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        let m = &self.spec.manifest;
        let all = 0..m.len();
        match name {
            "id" => PyList::new(py, all.map(|i| m.id(i))),
            "image" => PyList::new(py, all.map(|i| m.image(i).display().to_string())),
            "source" => PyList::new(py, all.map(|i| m.source_name(i))),
            "task" => PyList::new(py, all.map(|i| m.task(i).name())),
            "split" => PyList::new(py, all.map(|i| m.split(i))),
            "text" => PyList::new(py, all.map(|i| m.text(i))),
            "line" => PyList::new(py, all.map(|i| m.line(i))),
            "hard_id" => PyList::new(py, all.map(|i| m.hard_id(i))),
            "phrase" => PyList::new(py, all.map(|i| m.first_phrase(i))),
            "anatomy" => PyList::new(py, all.map(|i| m.first_anatomy(i))),
            "prompt" => PyList::new(py, all.map(|i| m.prompt(i))),
            other => Err(invalid(format!("unknown manifest column {other:?}"))),
        }
    }

    /// The record at `index`, normalised as the manifest validator returns it (the image path
    /// resolved), plus its `line`.
    fn record<'py>(&self, py: Python<'py>, index: usize) -> PyResult<Bound<'py, PyAny>> {
        if index >= self.__len__() {
            return Err(pyo3::exceptions::PyIndexError::new_err(format!(
                "index {index} out of range ({} records)",
                self.__len__()
            )));
        }
        let r = self.spec.manifest.record(index).map_err(to_py)?;
        let mut v = r.to_value();
        if let Value::Object(m) = &mut v {
            m.insert("line".into(), r.line.into());
        }
        from_value(py, &v)
    }

    /// Build one batch synchronously (the GIL released while it runs).
    #[pyo3(signature = (indices, epoch, seed, stages=Vec::new()))]
    fn batch(
        &self,
        py: Python<'_>,
        indices: Vec<usize>,
        epoch: u64,
        seed: u64,
        stages: Vec<i8>,
    ) -> PyResult<Py<PyAny>> {
        let spec = self.spec.clone();
        let b = py
            .detach(|| build_batch(&spec, &indices, &stages, epoch, seed))
            .map_err(to_py)?;
        batch_to_dict(py, b, &self.spec)
    }

    /// This data set reading pixels from the pre-decoded cache in `dir` (refused, saying what
    /// differs, when built from another manifest or with other decode settings, or naming the
    /// entry when its index is damaged); `fallback`: decode a record the cache does not hold, or
    /// whose pixels cannot be read or fail their checksum, rather than fail; `verify=False`
    /// skips the pixels' checksum (for measuring its cost only).
    #[pyo3(signature = (dir, fallback=true, verify=true))]
    fn with_cache(
        &self,
        py: Python<'_>,
        dir: PathBuf,
        fallback: bool,
        verify: bool,
    ) -> PyResult<Dataset> {
        let spec = py
            .detach(|| {
                let cache = Arc::new(Cache::open(&dir)?.verifying(verify));
                (*self.spec).clone().with_cache(cache, fallback)
            })
            .map_err(to_py)?;
        Ok(Dataset {
            spec: Arc::new(spec),
        })
    }

    /// The folder of the cache this data set reads, if any.
    #[getter]
    fn cache_dir(&self) -> Option<String> {
        self.spec
            .cache
            .as_ref()
            .map(|c| c.dir.display().to_string())
    }

    /// Cached reads that failed (a missing or short shard, an unreachable store, pixels failing
    /// their checksum) and were decoded instead, and the first failure's message: `(0, None)` without a cache.
    #[getter]
    fn cache_read_failures(&self) -> (u64, Option<String>) {
        self.spec.cache.as_ref().map_or((0, None), |c| {
            let (n, first) = c.read_failures();
            (n, first.map(str::to_string))
        })
    }

    #[getter]
    fn max_boxes(&self) -> usize {
        self.spec.max_boxes
    }

    /// The data set's configuration as the core read it: every option of
    /// `dataset_config_defaults()` but the manifest's (`root`, `allow_outside_root`), each
    /// explicit (`mean` and `std` per channel, the templates in full).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_value(py, &self.spec.to_value())
    }

    /// The augmentation as the core read it (the shape of `AUGMENT_DEFAULTS`).
    #[getter]
    fn augment<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        from_value(py, &self.spec.augment.to_value())
    }
}

/// Background workers building batches of a `Dataset` for one epoch.
#[pyclass(module = "gradatim._core")]
pub struct Stream {
    inner: Option<BatchStream>,
    spec: Arc<DatasetSpec>,
    pid: u32,
}

impl Stream {
    fn live(&self) -> PyResult<&BatchStream> {
        if std::process::id() != self.pid {
            return Err(crate::error::used_after_fork(self.pid));
        }
        self.inner
            .as_ref()
            .ok_or_else(|| invalid("the stream is closed"))
    }
}

#[pymethods]
impl Stream {
    #[new]
    fn new(dataset: &Dataset, epoch: u64, seed: u64, threads: usize) -> Self {
        Stream {
            inner: Some(BatchStream::new(dataset.spec.clone(), epoch, seed, threads)),
            spec: dataset.spec.clone(),
            pid: std::process::id(),
        }
    }

    #[pyo3(signature = (id, indices, stages=Vec::new()))]
    fn submit(&self, id: u64, indices: Vec<usize>, stages: Vec<i8>) -> PyResult<()> {
        self.live()?.submit(BatchJob {
            id,
            indices,
            stages,
        });
        Ok(())
    }

    /// `(id, batch)` of job `id` (or the first finished with `None`); `None` if nothing is pending.
    /// A positive `timeout` (seconds) raises torch's "DataLoader timed out" error.
    #[pyo3(signature = (id=None, timeout=0.0))]
    fn next(
        &self,
        py: Python<'_>,
        id: Option<u64>,
        timeout: f64,
    ) -> PyResult<Option<(u64, Py<PyAny>)>> {
        use std::time::{Duration, Instant};
        let stream = self.live()?;
        let deadline = (timeout > 0.0).then(|| Instant::now() + Duration::from_secs_f64(timeout));
        loop {
            // wait in short slices so Ctrl-C (and other signals) reach Python promptly
            let mut slice = SIGNAL_SLICE;
            if let Some(d) = deadline {
                slice = slice.min(d.saturating_duration_since(Instant::now()));
            }
            match py.detach(|| stream.next_within(id, Some(slice))) {
                Next::Empty => return Ok(None),
                Next::Ready(id, result) => {
                    let batch = batch_to_dict(py, (*result).map_err(to_py)?, &self.spec)?;
                    return Ok(Some((id, batch)));
                }
                Next::TimedOut => {
                    py.check_signals()?;
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Err(crate::error::timed_out(timeout));
                    }
                }
            }
        }
    }

    fn pending(&self) -> PyResult<usize> {
        Ok(self.live()?.pending())
    }

    /// Withdraw the jobs `ids` (queued, being built or finished); returns how many were pending.
    fn cancel(&self, py: Python<'_>, ids: Vec<u64>) -> PyResult<usize> {
        let stream = self.live()?;
        Ok(py.detach(|| stream.cancel(&ids)))
    }

    #[getter]
    fn threads(&self) -> usize {
        self.inner.as_ref().map_or(0, |s| s.threads())
    }

    /// Stop and join the workers (also done when the object is garbage-collected).
    fn close(&mut self, py: Python<'_>) {
        if let Some(s) = self.inner.take() {
            if std::process::id() == self.pid {
                py.detach(move || drop(s));
            } else {
                // after fork the workers exist only in the parent: nothing to stop or join here
                std::mem::forget(s);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if std::process::id() != self.pid {
            if let Some(s) = self.inner.take() {
                std::mem::forget(s);
            }
        }
    }
}

/// How often a waiting `Stream.next` checks for signals.
const SIGNAL_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

fn batch_to_dict(py: Python<'_>, b: Batch, spec: &DatasetSpec) -> PyResult<Py<PyAny>> {
    let d = PyDict::new(py);
    let shape = b.shape.to_vec();
    let pixels = match b.pixels {
        Pixels::F32(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
        Pixels::U8(v) => PyArray1::from_vec(py, v).reshape(shape)?.into_any(),
    };
    let n = b.shape[0];
    d.set_item("pixel_values", pixels)?;
    d.set_item(
        "boxes",
        PyArray1::from_vec(py, b.boxes).reshape(vec![n, b.max_boxes, 4])?,
    )?;
    d.set_item("box_count", PyArray1::from_vec(py, b.box_counts))?;
    d.set_item(
        "target_boxes",
        PyArray1::from_vec(py, b.target_boxes).reshape(vec![n, b.max_boxes, 4])?,
    )?;
    d.set_item(
        "target_box_count",
        PyArray1::from_vec(py, b.target_box_counts),
    )?;
    // "" where the prompt made no choice (torch's default_collate cannot stack None)
    let or_empty = |v: Option<String>| v.unwrap_or_default();
    d.set_item(
        "category",
        b.categories.into_iter().map(or_empty).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "prompt_kind",
        b.prompt_kinds
            .into_iter()
            .map(|k| k.unwrap_or(""))
            .collect::<Vec<_>>(),
    )?;
    d.set_item("index", PyArray1::from_vec(py, b.indices))?;
    d.set_item("stage", PyArray1::from_vec(py, b.stages))?;
    let (gw, gh) = spec.mask.grid;
    match b.box_mask {
        Some(m) => d.set_item(
            "box_mask",
            PyArray1::from_vec(py, m).reshape(vec![n, gh, gw])?,
        )?,
        None => d.set_item("box_mask", py.None())?,
    }
    d.set_item("id", b.ids)?;
    d.set_item("text", b.texts)?;
    d.set_item("prompt", b.prompts)?;
    d.set_item("target", b.targets)?;
    d.set_item("target_parts", b.target_parts)?;
    d.set_item("task", b.tasks)?;
    d.set_item("source", b.sources)?;
    d.set_item("skipped", b.skipped)?;
    d.set_item("work_ns", b.work_ns)?;
    Ok(d.into_any().unbind())
}

/// The data set's options with their defaults (a new dict each call): what `Dataset` takes, and
/// `ManifestDataset`'s keyword defaults.
#[pyfunction]
fn dataset_config_defaults(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    from_value(py, &DatasetOptions::default().to_value())
}

#[pyfunction]
fn render_boxes(format: &str, boxes: Vec<[f64; 4]>) -> PyResult<String> {
    Ok(core_render(
        format.parse::<BoxFormat>().map_err(to_py)?,
        &boxes,
    ))
}

/// The Medium-stage mask of `boxes` (normalised `[x1, y1, x2, y2]`), `grid_h * grid_w` values
/// row-major (the loader's `box_mask` of one sample).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn box_mask<'py>(
    py: Python<'py>,
    boxes: Vec<[f64; 4]>,
    grid: (usize, usize),
    sigma: f64,
    kernel: Option<usize>,
    padding: &str,
    cells: &str,
    empty: &str,
) -> PyResult<Bound<'py, PyArray1<f32>>> {
    let spec = MaskSpec {
        grid,
        sigma,
        kernel,
        padding: padding.parse().map_err(to_py)?,
        cells: cells.parse().map_err(to_py)?,
        empty: empty.parse().map_err(to_py)?,
    };
    spec.validate().map_err(to_py)?;
    Ok(PyArray1::from_vec(py, core_box_mask(&boxes, &spec)))
}

#[pyfunction]
fn parse_boxes(format: &str, text: &str) -> PyResult<Vec<[f64; 4]>> {
    Ok(core_parse(format.parse().map_err(to_py)?, text))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "AUGMENT_DEFAULTS",
        from_value(m.py(), &AugmentConfig::default().to_value())?,
    )?;
    m.add_function(wrap_pyfunction!(dataset_config_defaults, m)?)?;
    m.add_class::<OpenManifest>()?;
    m.add_class::<Dataset>()?;
    m.add_class::<Stream>()?;
    m.add_function(wrap_pyfunction!(render_boxes, m)?)?;
    m.add_function(wrap_pyfunction!(parse_boxes, m)?)?;
    m.add_function(wrap_pyfunction!(box_mask, m)?)?;
    Ok(())
}
