//! Reading from files and object stores (`gradatim_core::storage`).

use std::path::Path;

use gradatim_core::data::manifest::read_local_file;
use gradatim_core::image::decode::{max_file_bytes, DEFAULT_MAX_BYTES};
use gradatim_core::storage;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::to_py;

/// Whether `location` is an object store URL (`s3://`, `gs://`, `az://`, `http(s)://`).
#[pyfunction]
fn is_remote(location: &str) -> bool {
    storage::is_remote(location)
}

/// The bytes at `location`: an object store URL, a `file://` URL or a path (a regular file only).
#[pyfunction]
#[pyo3(signature = (location, max_bytes=DEFAULT_MAX_BYTES))]
fn read_bytes<'py>(
    py: Python<'py>,
    location: &str,
    max_bytes: u64,
) -> PyResult<Bound<'py, PyBytes>> {
    let limit = max_file_bytes(max_bytes);
    let data = py
        .detach(|| {
            storage::read_bytes(Path::new(location), limit, |p| {
                read_local_file(p, &p.display().to_string(), limit)
            })
        })
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &data))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(is_remote, m)?)?;
    m.add_function(wrap_pyfunction!(read_bytes, m)?)?;
    Ok(())
}
