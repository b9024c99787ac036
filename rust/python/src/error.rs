//! The one place where core errors become Python exceptions. The exception classes live in
//! `gradatim.errors` (plain Python, so they pickle and document like any other class):
//!
//! | core kind         | Python                                                   |
//! |-------------------|----------------------------------------------------------|
//! | InvalidArgument   | `gradatim.InvalidArgumentError` (a `ValueError`)         |
//! | Decode            | `gradatim.DecodeError` (a `ValueError`)                  |
//! | Unsupported       | `gradatim.UnsupportedFormatError` (`DecodeError`, `NotImplementedError`) |
//! | TooLarge          | `gradatim.ImageTooLargeError` (a `DecodeError`)          |
//! | Io                | `OSError` with errno and filename (`FileNotFoundError` ...) |

use gradatim_core::Error;
use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;

fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    match py.import("gradatim.errors").and_then(|m| m.getattr(class)) {
        Ok(cls) => match cls.call1((message,)) {
            Ok(exc) => PyErr::from_value(exc),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

/// Convert a core error into the matching Python exception.
pub fn to_py(err: Error) -> PyErr {
    Python::attach(|py| match err {
        Error::InvalidArgument(_) => raise(py, "InvalidArgumentError", err.to_string()),
        Error::Decode { .. } => raise(py, "DecodeError", err.to_string()),
        Error::Unsupported { .. } => raise(py, "UnsupportedFormatError", err.to_string()),
        Error::TooLarge { .. } => raise(py, "ImageTooLargeError", err.to_string()),
        Error::Io {
            ref name,
            ref source,
        } => {
            let errno = source.raw_os_error().unwrap_or(0);
            PyOSError::new_err((errno, source.to_string(), name.clone()))
        }
    })
}

/// A Python argument of the wrong type (before the core is reached).
pub fn wrong_type(what: &str, expected: &str) -> PyErr {
    PyTypeError::new_err(format!("{what}: expected {expected}"))
}
