//! gradatim._core: thin PyO3 bindings over gradatim-core. Files mirror the core's modules; each only
//! converts arguments, releases the GIL and calls the core. Errors go through `error::to_py`.

use pyo3::prelude::*;

mod augment;
mod cache;
mod curriculum;
mod data;
mod difficulty;
mod error;
mod image;
mod json;
mod manifest;
mod sampling;
mod storage;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    image::register(m)?;
    manifest::register(m)?;
    data::register(m)?;
    augment::register(m)?;
    sampling::register(m)?;
    curriculum::register(m)?;
    storage::register(m)?;
    cache::register(m)?;
    difficulty::register(m)?;
    Ok(())
}
