//! The pre-decoded cache's build (`gradatim_core::data::cache`, `cache_remote`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use gradatim_core::data::cache_remote;
use pyo3::prelude::*;

use crate::data::Dataset;
use crate::error::to_py;
use crate::json::from_value;

/// Decode every record of `dataset` once into a cache in `dir` (a folder, or an object store URL:
/// built in `staging` and uploaded) on `threads` threads (the GIL released), resuming an
/// interrupted build or upload. `progress(done, total)` is called about every 0.2 s from this
/// thread; an exception it raises (KeyboardInterrupt) stops the build, resumably. Returns the
/// build report as a dict.
#[pyfunction]
#[pyo3(signature = (dataset, dir, threads, progress=None, staging=None))]
fn cache_build<'py>(
    py: Python<'py>,
    dataset: &Dataset,
    dir: PathBuf,
    threads: usize,
    progress: Option<Bound<'py, PyAny>>,
    staging: Option<PathBuf>,
) -> PyResult<Bound<'py, PyAny>> {
    let spec = dataset.spec.clone();
    let total = spec.manifest.len();
    let done = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let mut interrupted = None;
    let report = std::thread::scope(|s| {
        let worker = s.spawn(|| {
            cache_remote::build_at(&spec, &dir, staging.as_deref(), threads, &done, &stop)
        });
        while !worker.is_finished() {
            py.detach(|| std::thread::sleep(Duration::from_millis(200)));
            let signalled = py.check_signals();
            let called = match &progress {
                Some(cb) => cb.call1((done.load(Ordering::Relaxed), total)).map(drop),
                None => Ok(()),
            };
            if let Err(e) = signalled.and(called) {
                stop.store(true, Ordering::Relaxed);
                interrupted = Some(e);
                break;
            }
        }
        py.detach(|| worker.join())
    });
    if let Some(e) = interrupted {
        return Err(e);
    }
    let report = report
        .unwrap_or_else(|_| Err(gradatim_core::Error::invalid("the cache build panicked")))
        .map_err(to_py)?;
    if let Some(cb) = &progress {
        cb.call1((total, total))?;
    }
    let value = serde_json::to_value(&report).expect("a report serialises");
    from_value(py, &value)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cache_build, m)?)?;
    Ok(())
}
