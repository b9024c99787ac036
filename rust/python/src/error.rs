//! The one place where core errors become Python exceptions. The exception classes live in
//! `gradatim.errors` (plain Python, so they pickle and document like any other class):
//!
//! | core kind         | Python                                                   |
//! |-------------------|----------------------------------------------------------|
//! | InvalidArgument   | `gradatim.InvalidArgumentError` (a `ValueError`)         |
//! | Decode            | `gradatim.DecodeError` (a `ValueError`)                  |
//! | Unsupported       | `gradatim.UnsupportedFormatError` (`DecodeError`, `NotImplementedError`) |
//! | TooLarge, TooManyBytes | `gradatim.ImageTooLargeError` (a `DecodeError`)     |
//! | Manifest          | `gradatim.ManifestError` (a `ValueError`) with `reason`, `path`, `row`, `field`, `row_kind` |
//! | Io                | `OSError` with errno and filename (`FileNotFoundError` ...) |
//! | Remote            | `FileNotFoundError` (no such object) or `OSError` (EIO), the URL as filename |
//! | RemoteWrite       | `OSError` (EIO), the URL as filename                     |

use gradatim_core::Error;
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;

fn raise<'py>(py: Python<'py>, class: &str, args: impl pyo3::call::PyCallArgs<'py>) -> PyErr {
    match py.import("gradatim.errors").and_then(|m| m.getattr(class)) {
        Ok(cls) => match cls.call1(args) {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// Convert a core error into the matching Python exception. A sample-level wrapper
/// (`InSample`) keeps the class of its cause and prefixes the message with the sample.
pub fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    Python::attach(|py| match err.root() {
        Error::InvalidArgument(_) => raise(py, "InvalidArgumentError", (message,)),
        Error::Decode { .. } => raise(py, "DecodeError", (message,)),
        Error::Unsupported { .. } => raise(py, "UnsupportedFormatError", (message,)),
        Error::TooLarge { .. } | Error::TooManyBytes { .. } => {
            raise(py, "ImageTooLargeError", (message,))
        }
        Error::Manifest(i) => raise(
            py,
            "ManifestError",
            (
                i.reason.as_str(),
                i.manifest.as_deref(),
                i.row,
                i.field.as_deref(),
                i.row_kind.as_str(),
            ),
        ),
        Error::Io { name, source } => {
            let errno = source.raw_os_error().unwrap_or(0);
            PyOSError::new_err((errno, message, name.clone()))
        }
        Error::Remote { url, not_found, .. } => {
            let errno = if *not_found { 2 } else { 5 }; // ENOENT: FileNotFoundError; EIO
            PyOSError::new_err((errno, message, url.clone()))
        }
        Error::RemoteWrite { url, .. } => PyOSError::new_err((5, message, url.clone())),
        Error::InSample { .. } => raise(py, "GradatimError", (message,)), // root() unwraps these
    })
}

/// A Python argument of the wrong type (before the core is reached).
pub fn wrong_type(what: &str, expected: &str) -> PyErr {
    PyTypeError::new_err(format!("{what}: expected {expected}"))
}

/// An object holding worker threads was used in a forked child, where those threads do not exist.
pub fn used_after_fork(created_in: u32) -> PyErr {
    PyRuntimeError::new_err(format!(
        "this gradatim loader iterator was created in process {created_in} and cannot be used after \
         fork (in process {}): its worker threads do not exist here; create the iterator in the child",
        std::process::id()
    ))
}

/// torch's own message for a batch that took longer than `DataLoader(timeout=...)`.
pub fn timed_out(seconds: f64) -> PyErr {
    PyRuntimeError::new_err(format!("DataLoader timed out after {seconds} seconds"))
}
