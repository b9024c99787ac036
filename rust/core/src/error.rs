//! The core's error kinds. The binding crate maps each kind to one Python exception
//! (`rust/python/src/error.rs`); nothing else in the project decides how errors look in Python.

use std::fmt;

/// Everything that can go wrong in the core. Each variant carries the name of the input
/// (a path, `<bytes>` or an argument name) so the message says *what* failed, not only why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An argument is out of its domain (wrong shape, negative size, NaN weight ...).
    #[error("{0}")]
    InvalidArgument(String),
    /// The input bytes are not a valid image of the detected format (truncated, corrupt, empty).
    #[error("cannot decode {name}: {reason}")]
    Decode { name: String, reason: String },
    /// The input is valid but uses a feature gradatim does not implement.
    #[error("cannot decode {name}: unsupported {what}")]
    Unsupported { name: String, what: String },
    /// The header declares more pixels than the configured limit; nothing was allocated.
    #[error("cannot decode {name}: {width}x{height} = {pixels} pixels exceeds the limit of {limit} (raise max_pixels to allow it)")]
    TooLarge {
        name: String,
        width: u64,
        height: u64,
        pixels: u64,
        limit: u64,
    },
    /// The image would decode to more bytes than the configured limit; nothing was allocated.
    #[error("cannot decode {name}: {width}x{height} with {channels} channel(s) of {bits} bits decodes to {bytes} bytes, more than the limit of {limit} (raise max_bytes to allow it)")]
    TooManyBytes {
        name: String,
        width: u64,
        height: u64,
        channels: u64,
        bits: u64,
        bytes: u64,
        limit: u64,
    },
    /// An error while loading one sample of a data set: `context` names the sample and its
    /// manifest line; the cause keeps its own kind (and so its Python exception class).
    #[error("{context}: {source}")]
    InSample {
        context: String,
        #[source]
        source: Box<Error>,
    },
    /// A manifest record (or the manifest as a whole) breaks the manifest schema
    /// (docs/manifest.md): the issue names the manifest, the line or row, the field and the reason
    /// separately, so that the Python exception carries each of them.
    #[error("{0}")]
    Manifest(ManifestIssue),
    /// Reading an object from a store (`s3://`, `gs://`, `az://`, `http(s)://`) failed after the
    /// client's retries; `not_found`: the store answered that there is no such object.
    #[error("cannot read {url}: {reason}")]
    Remote {
        url: String,
        reason: String,
        not_found: bool,
    },
    /// Writing an object to a store (a cache built for a store) failed after the client's
    /// retries.
    #[error("cannot write {url}: {reason}")]
    RemoteWrite { url: String, reason: String },
    /// Reading the input failed.
    #[error("cannot read {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a manifest breaks its schema, and why. Displayed as
/// `m.jsonl line 12, field 'boxes[0].box': <reason>` (`<records>` when the manifest has no name;
/// the line and the field are left out where unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestIssue {
    /// The manifest's name (its path), if any.
    pub manifest: Option<String>,
    /// The 1-based line (JSONL), row (Parquet) or record (in-memory records).
    pub row: Option<usize>,
    /// What `row` counts: "line", "row" or "record".
    pub row_kind: String,
    /// The offending field, e.g. `boxes[0].box` or `labels.Edema`.
    pub field: Option<String>,
    /// Why the field is invalid; never quotes report text.
    pub reason: String,
}

impl fmt::Display for ManifestIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.manifest.as_deref().unwrap_or("<records>"))?;
        if let Some(row) = self.row {
            write!(f, " {} {row}", self.row_kind)?;
        }
        if let Some(field) = &self.field {
            write!(f, ", field '{field}'")?;
        }
        write!(f, ": {}", self.reason)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::InvalidArgument(msg.to_string())
    }

    pub fn decode(name: &str, reason: impl fmt::Display) -> Self {
        Error::Decode {
            name: name.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The innermost error (for choosing the exception class of a wrapped error).
    pub fn root(&self) -> &Error {
        match self {
            Error::InSample { source, .. } => source.root(),
            other => other,
        }
    }

    pub fn unsupported(name: &str, what: impl fmt::Display) -> Self {
        Error::Unsupported {
            name: name.to_string(),
            what: what.to_string(),
        }
    }
}
