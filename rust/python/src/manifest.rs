//! Bindings of `gradatim_core::data::manifest`: the one manifest validator, for Python's
//! `validate_record`, `read_manifest` and `write_manifest`. Records cross as dicts (converted to
//! JSON values field by field) and come back normalised; errors are `gradatim.ManifestError`.

use std::path::PathBuf;

use gradatim_core::data::manifest::{
    self, jsonl_rows, read_records, FieldError, ManifestOptions, Records, Row, Source,
    CHEXPERT_LABELS, FIELDS,
};
use gradatim_core::data::manifest_arrow;
use pyo3::prelude::*;
use pyo3::types::PyList;
use serde_json::Value;

use crate::error::to_py;
use crate::json::{from_value, to_value, NotJson};

/// A Python record as a manifest row: its JSON value, or where and why it is not JSON.
pub fn py_row(obj: &Bound<'_, PyAny>) -> Result<Value, FieldError> {
    to_value(obj).map_err(|NotJson { path, reason }| FieldError {
        field: (!path.is_empty()).then_some(path),
        reason,
    })
}

/// A manifest as it crosses: JSON lines, or rows (dicts) from Parquet or memory.
#[derive(FromPyObject)]
pub enum ManifestArg<'py> {
    Jsonl(String),
    Rows(Vec<Bound<'py, PyAny>>),
}

/// A [`ManifestArg`] converted (with the GIL held) for reading without it.
pub enum ManifestRows {
    Jsonl(String),
    Rows(Vec<Row>),
}

impl ManifestArg<'_> {
    pub fn convert(self) -> ManifestRows {
        match self {
            ManifestArg::Jsonl(text) => ManifestRows::Jsonl(text),
            ManifestArg::Rows(rows) => ManifestRows::Rows(py_rows(&rows)),
        }
    }
}

impl ManifestRows {
    /// `f` of the manifest's rows (JSON lines parsed one at a time as `f` reads them) and their
    /// source (`row_kind` says what rows are for `Rows`; JSON lines are lines).
    pub fn read<T>(
        self,
        name: Option<&str>,
        row_kind: &str,
        f: impl FnOnce(&mut dyn Iterator<Item = Row>, Source<'_>) -> T,
    ) -> T {
        match self {
            ManifestRows::Jsonl(text) => {
                let source = Source {
                    name,
                    row_kind: "line",
                };
                f(&mut jsonl_rows(&text), source)
            }
            ManifestRows::Rows(rows) => f(&mut rows.into_iter(), Source { name, row_kind }),
        }
    }
}

/// Python records as manifest rows numbered from 1.
pub fn py_rows(rows: &[Bound<'_, PyAny>]) -> Vec<Row> {
    rows.iter()
        .enumerate()
        .map(|(i, r)| (i + 1, py_row(r)))
        .collect()
}

fn records_to_list<'py>(
    py: Python<'py>,
    records: &[manifest::Record],
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for r in records {
        list.append(from_value(py, &r.to_value())?)?;
    }
    Ok(list)
}

/// Check one record against the schema; return it normalised (docs/manifest.md).
#[pyfunction]
#[pyo3(signature = (record, path=None, row=None, row_kind="line"))]
fn validate_record<'py>(
    py: Python<'py>,
    record: &Bound<'py, PyAny>,
    path: Option<&str>,
    row: Option<usize>,
    row_kind: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let source = Source {
        name: path,
        row_kind,
    };
    let value =
        py_row(record).map_err(|e| to_py(source.issue(row, e.field.as_deref(), e.reason)))?;
    let rec = manifest::validate_record(&value, source, row).map_err(to_py)?;
    from_value(py, &rec.to_value())
}

/// Read and validate a JSONL manifest's text: the normalised records (ids unique; blank lines
/// skipped; image paths as written).
#[pyfunction]
#[pyo3(signature = (text, path=None))]
fn read_manifest_jsonl<'py>(
    py: Python<'py>,
    text: &str,
    path: Option<&str>,
) -> PyResult<Bound<'py, PyList>> {
    let source = Source {
        name: path,
        row_kind: "line",
    };
    let records = py
        .detach(|| read_records(jsonl_rows(text), source))
        .map_err(to_py)?;
    records_to_list(py, &records)
}

/// Validate manifest rows (Parquet rows, in-memory records): the normalised records.
#[pyfunction]
#[pyo3(signature = (rows, path=None, row_kind="row"))]
fn read_manifest_rows<'py>(
    py: Python<'py>,
    rows: Vec<Bound<'py, PyAny>>,
    path: Option<&str>,
    row_kind: &str,
) -> PyResult<Bound<'py, PyList>> {
    let source = Source {
        name: path,
        row_kind,
    };
    let rows = py_rows(&rows);
    let records = py.detach(|| read_records(rows, source)).map_err(to_py)?;
    records_to_list(py, &records)
}

/// Validate a manifest (JSONL text or rows) and write it packed, as Arrow columns, to `out`.
#[pyfunction]
#[pyo3(signature = (manifest, path, row_kind, out))]
fn pack_manifest(
    py: Python<'_>,
    manifest: ManifestArg<'_>,
    path: Option<&str>,
    row_kind: &str,
    out: PathBuf,
) -> PyResult<usize> {
    let manifest = manifest.convert();
    py.detach(|| {
        let records = manifest.read(path, row_kind, |rows, source| read_records(rows, source))?;
        manifest_arrow::write(&records, &out)?;
        Ok(records.len())
    })
    .map_err(to_py)
}

/// Read and check a packed manifest: the normalised records (image paths as written).
#[pyfunction]
fn read_manifest_packed<'py>(py: Python<'py>, location: &str) -> PyResult<Bound<'py, PyList>> {
    let opts = ManifestOptions {
        root: PathBuf::new(),
        allow_outside_root: true,
    };
    let m = py
        .detach(|| manifest_arrow::open(location, &opts))
        .map_err(to_py)?;
    let Records::Columns(columns) = &m.records else {
        unreachable!("a packed manifest holds columns")
    };
    let records: Vec<_> = (0..columns.len()).map(|i| columns.record(i)).collect();
    records_to_list(py, &records)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("MANIFEST_FIELDS", FIELDS.to_vec())?;
    m.add(
        "TASKS",
        manifest::Task::ALL.map(manifest::Task::name).to_vec(),
    )?;
    m.add("CHEXPERT_LABELS", CHEXPERT_LABELS.to_vec())?;
    m.add_function(wrap_pyfunction!(validate_record, m)?)?;
    m.add_function(wrap_pyfunction!(read_manifest_jsonl, m)?)?;
    m.add_function(wrap_pyfunction!(read_manifest_rows, m)?)?;
    m.add_function(wrap_pyfunction!(pack_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(read_manifest_packed, m)?)?;
    Ok(())
}
