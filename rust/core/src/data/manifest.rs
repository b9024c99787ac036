//! The manifest: one record per image-text sample (docs/manifest.md, "Record schema").
//!
//! This module is the project's only manifest validator: the loader's reader (JSON lines, or the
//! rows of a Parquet manifest that pyarrow read on the Python side), Python's `validate_record`
//! (the converters, `write_manifest`, `read_manifest`) all call [`parse_record`]. An error is an
//! [`Error::Manifest`] naming the manifest, the line or row (1-based), the field and the reason,
//! e.g. `train.jsonl line 12, field 'boxes[0].box': needs x1 < x2 and y1 < y2, got [30.0, 0.0,
//! 10.0, 5.0]`; it never quotes report text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

pub use crate::data::manifest_arrow::{Column, Columns};
use crate::error::{Error, ManifestIssue, Result};
use crate::storage;

/// The manifest's tasks; each has its own prompt/target template (`data::tasks`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Task {
    Report,
    PhraseGrounding,
    GroundedReport,
    AnatomyGroundedReport,
    Vqa,
}

impl Task {
    pub const ALL: [Task; 5] = [
        Task::Report,
        Task::PhraseGrounding,
        Task::GroundedReport,
        Task::AnatomyGroundedReport,
        Task::Vqa,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Task::Report => "report",
            Task::PhraseGrounding => "phrase_grounding",
            Task::GroundedReport => "grounded_report",
            Task::AnatomyGroundedReport => "anatomy_grounded_report",
            Task::Vqa => "vqa",
        }
    }

    pub fn parse(s: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| t.name() == s)
    }
}

/// One annotated box, `[x1, y1, x2, y2]` in source-image pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct BoxAnnotation {
    pub rect: [f64; 4],
    pub phrase: String,
    pub anatomy: Option<String>,
}

/// One image-text sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    /// The image file: as the manifest wrote it after [`parse_record`], resolved under the root
    /// in a [`Manifest`].
    pub image: PathBuf,
    pub source: String,
    pub task: Task,
    pub split: String,
    pub text: String,
    pub prompt: Option<String>,
    /// VQA with a rationale (MedCLM): the answer, and the reasoning that leads to it. With an
    /// answer, the target is built from these two by stage (`data::tasks::answer_target`).
    pub answer: Option<String>,
    pub rationale: Option<String>,
    /// MedCLM's Hard stage on another image: the id of the record (in the same data set) whose
    /// image, prompt and answer a Hard-stage draw of this record uses (MedCLM's released
    /// `image_path3`, `question3`, `answer3`: another image of the same domain). Absent: the Hard
    /// stage uses this record's own image.
    pub hard_id: Option<String>,
    /// CheXpert-style labels: name -> 1 / 0 / -1 / None; the CheXpert labels first, in
    /// [`CHEXPERT_LABELS`] order, then the others in the manifest's order.
    pub labels: Vec<(String, Option<i8>)>,
    pub boxes: Vec<BoxAnnotation>,
    pub laterality_sensitive: bool,
    /// 1-based line (JSONL) or row (Parquet) in the manifest, for error messages.
    pub line: usize,
}

/// A manifest's records: parsed rows (JSON lines, Parquet rows, records from memory), the
/// Arrow columns of a packed manifest, from which a record is built when it is asked for, or
/// chosen records of other manifests ([`Manifest::compose`]).
#[derive(Clone, Debug)]
pub enum Records {
    Rows(Vec<Record>),
    Columns(Columns),
    Parts(Parts),
}

/// Chosen records of one opened manifest, shared (not copied): their indices in it
/// ([`Manifest::select`]) and the source name they take (`None`: their own).
#[derive(Clone, Debug)]
pub struct Part {
    pub manifest: Arc<Manifest>,
    pub indices: Vec<u32>,
    pub source: Option<String>,
}

/// The parts of a composed manifest, one after the other.
#[derive(Clone, Debug)]
pub struct Parts {
    parts: Vec<Part>,
    /// `starts[p]`: the index of part `p`'s first record; one more entry: the record count.
    starts: Vec<usize>,
}

impl Parts {
    fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// The part holding record `index` (`index < len()`) and the record's index in its manifest.
    fn at(&self, index: usize) -> (&Part, usize) {
        let p = self.starts.partition_point(|&s| s <= index) - 1;
        let part = &self.parts[p];
        (part, part.indices[index - self.starts[p]] as usize)
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }
}

/// What [`Manifest::select`] keeps: records of a split, of a source, of some tasks (`None`:
/// any).
#[derive(Clone, Debug, Default)]
pub struct Selection<'a> {
    pub split: Option<&'a str>,
    pub source: Option<&'a str>,
    pub tasks: Option<&'a [Task]>,
}

/// A validated manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Display name (path) used in error messages.
    pub name: String,
    /// What a record's `line` counts: "line" (JSONL), "row" (Parquet, Arrow) or "record".
    pub row_kind: String,
    pub root: PathBuf,
    pub records: Records,
    /// Whether images may lie outside `root` (absolute paths, `..`, symbolic links).
    pub allow_outside_root: bool,
    /// `root` with its symbolic links resolved, found on first use.
    real_root: std::sync::OnceLock<PathBuf>,
}

impl Manifest {
    /// A manifest of validated `records` whose images are already resolved under the root of
    /// `opts`.
    pub(crate) fn new(
        source: Source<'_>,
        opts: &ManifestOptions,
        records: Records,
    ) -> Result<Manifest> {
        let m = Manifest {
            name: source.name.unwrap_or("<records>").to_string(),
            row_kind: source.row_kind.to_string(),
            root: opts.root.clone(),
            allow_outside_root: opts.allow_outside_root,
            real_root: std::sync::OnceLock::new(),
            records,
        };
        if m.is_empty() {
            return Err(source.issue(None, None, "the manifest holds no records"));
        }
        Ok(m)
    }

    fn options(&self) -> ManifestOptions {
        ManifestOptions {
            root: self.root.clone(),
            allow_outside_root: self.allow_outside_root,
        }
    }

    pub fn len(&self) -> usize {
        match &self.records {
            Records::Rows(r) => r.len(),
            Records::Columns(c) => c.len(),
            Records::Parts(p) => p.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Record `index` (its image resolved under the root): borrowed from parsed rows, built from
    /// the columns of a packed manifest.
    pub fn record(&self, index: usize) -> Result<Cow<'_, Record>> {
        if index >= self.len() {
            return Err(Error::invalid(format!(
                "index {index} is out of range for a data set of {} samples",
                self.len()
            )));
        }
        Ok(match &self.records {
            Records::Rows(r) => Cow::Borrowed(&r[index]),
            Records::Columns(c) => {
                let mut r = c.record(index);
                r.image = resolve(&r.image, &self.options())
                    .map_err(|reason| self.source().issue(Some(r.line), Some("image"), reason))?;
                Cow::Owned(r)
            }
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                let r = part.manifest.record(j)?;
                match &part.source {
                    Some(name) if *name != r.source => {
                        let mut r = r.into_owned();
                        r.source = name.clone();
                        Cow::Owned(r)
                    }
                    _ => r,
                }
            }
        })
    }

    fn source(&self) -> Source<'_> {
        Source {
            name: Some(&self.name),
            row_kind: &self.row_kind,
        }
    }

    /// Record `index`'s id (`index < len()`).
    pub fn id(&self, index: usize) -> &str {
        match &self.records {
            Records::Rows(r) => &r[index].id,
            Records::Columns(c) => c.str_at(Column::Id, index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.id(j)
            }
        }
    }

    /// Record `index`'s source (`index < len()`).
    pub fn source_name(&self, index: usize) -> &str {
        match &self.records {
            Records::Rows(r) => &r[index].source,
            Records::Columns(c) => c.str_at(Column::Source, index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.source
                    .as_deref()
                    .unwrap_or_else(|| part.manifest.source_name(j))
            }
        }
    }

    /// Record `index`'s split (`index < len()`).
    pub fn split(&self, index: usize) -> &str {
        match &self.records {
            Records::Rows(r) => &r[index].split,
            Records::Columns(c) => c.str_at(Column::Split, index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.split(j)
            }
        }
    }

    /// Record `index`'s Hard-stage partner id (`index < len()`), see [`Record::hard_id`].
    pub fn hard_id(&self, index: usize) -> Option<&str> {
        match &self.records {
            Records::Rows(r) => r[index].hard_id.as_deref(),
            Records::Columns(c) => c.hard_id(index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.hard_id(j)
            }
        }
    }

    /// Record `index`'s first box's phrase (`index < len()`); `None` without boxes.
    pub fn first_phrase(&self, index: usize) -> Option<&str> {
        match &self.records {
            Records::Rows(r) => r[index].boxes.first().map(|b| b.phrase.as_str()),
            Records::Columns(c) => c.first_phrase(index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.first_phrase(j)
            }
        }
    }

    /// Record `index`'s text (`index < len()`).
    pub fn text(&self, index: usize) -> &str {
        match &self.records {
            Records::Rows(r) => &r[index].text,
            Records::Columns(c) => c.str_at(Column::Text, index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.text(j)
            }
        }
    }

    /// Record `index`'s task (`index < len()`).
    pub fn task(&self, index: usize) -> Task {
        match &self.records {
            Records::Rows(r) => r[index].task,
            Records::Columns(c) => c.task(index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.task(j)
            }
        }
    }

    /// Record `index`'s line (JSONL) or row, 1-based (`index < len()`).
    pub fn line(&self, index: usize) -> usize {
        match &self.records {
            Records::Rows(r) => r[index].line,
            Records::Columns(_) => index + 1,
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.line(j)
            }
        }
    }

    /// Record `index`'s image, resolved under the root (`index < len()`).
    pub fn image(&self, index: usize) -> Cow<'_, Path> {
        match &self.records {
            Records::Rows(r) => Cow::Borrowed(r[index].image.as_path()),
            Records::Columns(c) => {
                let written = Path::new(c.str_at(Column::Image, index));
                // the columns were resolved when the manifest was opened: this cannot fail
                Cow::Owned(
                    resolve(written, &self.options()).unwrap_or_else(|_| self.root.join(written)),
                )
            }
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.image(j)
            }
        }
    }

    /// The most boxes any record holds.
    pub fn max_boxes(&self) -> usize {
        match &self.records {
            Records::Rows(r) => r.iter().map(|r| r.boxes.len()).max().unwrap_or(0),
            Records::Columns(c) => c.max_boxes(),
            Records::Parts(_) => (0..self.len())
                .map(|i| self.box_count(i))
                .max()
                .unwrap_or(0),
        }
    }

    /// Whether any image lies in an object store.
    pub fn any_remote(&self) -> bool {
        let remote = |p: &Path| p.to_str().is_some_and(storage::is_remote);
        match &self.records {
            Records::Rows(r) => r.iter().any(|r| remote(&r.image)),
            // a relative path resolves under the root; anything else stays as written
            Records::Columns(c) => {
                remote(&self.root)
                    || (0..self.len()).any(|i| storage::is_remote(c.str_at(Column::Image, i)))
            }
            Records::Parts(p) => p.parts.iter().any(|part| part.manifest.any_remote()),
        }
    }

    /// The file to read for `record`: its path, after checking that the *real* path (symbolic
    /// links resolved) stays under the real root unless the manifest allows otherwise, as
    /// absolute paths and `..` are checked when the manifest is read.
    pub fn image_path<'a>(&self, record: &'a Record) -> Result<&'a Path> {
        if let Records::Parts(p) = &self.records {
            // the part whose root holds the image (the longest such root), else the first
            let holds = |part: &&Part| record.image.starts_with(&part.manifest.root);
            let part = p
                .parts
                .iter()
                .filter(holds)
                .max_by_key(|part| part.manifest.root.as_os_str().len())
                .unwrap_or(&p.parts[0]);
            return part.manifest.image_path(record);
        }
        if self.allow_outside_root || record.image.to_str().is_some_and(storage::is_remote) {
            return Ok(&record.image);
        }
        let name = record.image.display().to_string();
        let real = |p: &Path| {
            std::fs::canonicalize(p).map_err(|source| Error::Io {
                name: p.display().to_string(),
                source,
            })
        };
        let root = match self.real_root.get() {
            Some(root) => root,
            None => {
                let resolved = real(&self.root)?;
                self.real_root.get_or_init(|| resolved)
            }
        };
        let image = real(&record.image)?;
        if !image.starts_with(root) {
            return Err(Error::decode(
                &name,
                format!(
                    "the path resolves (through a symbolic link) to {}, outside the manifest \
                     root {} (pass allow_outside_root=True to allow it)",
                    image.display(),
                    root.display()
                ),
            ));
        }
        Ok(&record.image)
    }
}

impl Manifest {
    /// [`Manifest::image_path`] of record `index` (as [`Manifest::record`] returned it), checked
    /// against the root of the manifest it was read from.
    pub fn image_path_at<'a>(&self, index: usize, record: &'a Record) -> Result<&'a Path> {
        match &self.records {
            Records::Parts(p) if index < self.len() => p.at(index).0.manifest.image_path(record),
            _ => self.image_path(record),
        }
    }

    /// Where record `index` (`index < len()`) was read: its manifest's name, what its rows are
    /// and its 1-based line or row (in a composed manifest, those of the part's manifest).
    pub fn place(&self, index: usize) -> (&str, &str, usize) {
        match &self.records {
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.place(j)
            }
            _ => (&self.name, &self.row_kind, self.line(index)),
        }
    }

    /// Record `index`'s box count (`index < len()`).
    pub fn box_count(&self, index: usize) -> usize {
        match &self.records {
            Records::Rows(r) => r[index].boxes.len(),
            Records::Columns(c) => c.box_count(index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.box_count(j)
            }
        }
    }

    /// Record `index`'s first box's anatomy (`index < len()`); `None` without boxes or anatomy.
    pub fn first_anatomy(&self, index: usize) -> Option<&str> {
        match &self.records {
            Records::Rows(r) => r[index].boxes.first().and_then(|b| b.anatomy.as_deref()),
            Records::Columns(c) => c.first_anatomy(index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.first_anatomy(j)
            }
        }
    }

    /// Record `index`'s prompt (`index < len()`); `None` where absent.
    pub fn prompt(&self, index: usize) -> Option<&str> {
        match &self.records {
            Records::Rows(r) => r[index].prompt.as_deref(),
            Records::Columns(c) => c.opt_str_at(Column::Prompt, index),
            Records::Parts(p) => {
                let (part, j) = p.at(index);
                part.manifest.prompt(j)
            }
        }
    }

    /// The indices of the records `what` keeps, in manifest order: one pass over the fields it
    /// names (columns of a packed manifest are read from its memory map), no record is built.
    pub fn select(&self, what: &Selection<'_>) -> Result<Vec<u32>> {
        if u32::try_from(self.len()).is_err() {
            return Err(Error::invalid(format!(
                "{}: {} records are more than a selection indexes (2^32)",
                self.name,
                self.len()
            )));
        }
        let keep = |i: usize| {
            what.split.is_none_or(|s| self.split(i) == s)
                && what.source.is_none_or(|s| self.source_name(i) == s)
                && what.tasks.is_none_or(|t| t.contains(&self.task(i)))
        };
        Ok((0..self.len())
            .filter(|&i| keep(i))
            .map(|i| i as u32)
            .collect())
    }

    /// One manifest of `parts` one after the other (each part's records shared with its opened
    /// manifest, not copied, under the part's source name). Ids must stay unique across the
    /// parts (a repeated id is an error naming both places); no record at all is an error.
    pub fn compose(parts: Vec<Part>) -> Result<Manifest> {
        let mut starts = vec![0];
        for (k, part) in parts.iter().enumerate() {
            if let Some(&bad) = part
                .indices
                .iter()
                .find(|&&i| i as usize >= part.manifest.len())
            {
                return Err(Error::invalid(format!(
                    "part {k}: index {bad} is out of range for {} ({} records)",
                    part.manifest.name,
                    part.manifest.len()
                )));
            }
            starts.push(starts[k] + part.indices.len());
        }
        let Some(first) = parts.first() else {
            return Err(Error::invalid(
                "a composed manifest needs at least one part",
            ));
        };
        let mut names: Vec<&str> = Vec::new();
        for part in &parts {
            if !names.contains(&part.manifest.name.as_str()) {
                names.push(&part.manifest.name);
            }
        }
        let name = names.join(" + ");
        let row_kind = first.manifest.row_kind.clone();
        let opts = ManifestOptions {
            root: first.manifest.root.clone(),
            allow_outside_root: first.manifest.allow_outside_root,
        };
        let records = Records::Parts(Parts { parts, starts });
        let m = Manifest::new(
            Source {
                name: Some(&name),
                row_kind: &row_kind,
            },
            &opts,
            records,
        )?;
        m.check_unique_ids()?;
        Ok(m)
    }

    /// A composed manifest's ids are unique, as any manifest's: the first repeat is an error
    /// naming both records' manifests and lines.
    fn check_unique_ids(&self) -> Result<()> {
        let Records::Parts(p) = &self.records else {
            return Ok(());
        };
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.len());
        for i in 0..self.len() {
            let Some(first) = seen.insert(self.id(i), i) else {
                continue;
            };
            let place = |k: usize| {
                let (part, j) = p.at(k);
                let m = &part.manifest;
                (m, m.line(j))
            };
            let ((m, line), (m0, line0)) = (place(i), place(first));
            let source = Source {
                name: Some(&m.name),
                row_kind: &m.row_kind,
            };
            return Err(source.issue(
                Some(line),
                Some("id"),
                format!(
                    "duplicate id {:?} among the selected records (first on {} {} {line0})",
                    self.id(i),
                    m0.name,
                    m0.row_kind
                ),
            ));
        }
        Ok(())
    }
}

/// How paths are resolved.
#[derive(Clone, Debug)]
pub struct ManifestOptions {
    /// Relative image paths are joined to this folder.
    pub root: PathBuf,
    /// Allow absolute paths and relative paths that climb out of `root` (`..`).
    pub allow_outside_root: bool,
}

/// Where the rows of a manifest come from, for error messages.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The manifest's name (its path); `None` for in-memory records (`<records>`).
    pub name: Option<&'a str>,
    /// What a row number counts: "line" (JSONL), "row" (Parquet) or "record" (in memory).
    pub row_kind: &'a str,
}

impl Source<'_> {
    /// The error about `field` (`None`: the record as a whole) of row `row`.
    pub fn issue(
        &self,
        row: Option<usize>,
        field: Option<&str>,
        reason: impl Into<String>,
    ) -> Error {
        Error::Manifest(ManifestIssue {
            manifest: self.name.map(str::to_string),
            row,
            row_kind: self.row_kind.to_string(),
            field: field.map(str::to_string),
            reason: reason.into(),
        })
    }
}

/// One row of a manifest: its 1-based number, and its value or why it could not be read.
pub type Row = (usize, std::result::Result<Value, FieldError>);

/// Refuse a manifest file `path` (named `name` in the error) that is not a regular file: a FIFO
/// would block the open forever, a device such as `/dev/zero` would be read until memory runs
/// out. Checked before the file is opened, as for images.
pub fn check_regular_file(path: &Path, name: &str) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|source| Error::Io {
        name: name.to_string(),
        source,
    })?;
    if meta.is_file() {
        return Ok(());
    }
    let kind = if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file (a FIFO, socket or device)"
    };
    Err(Error::Manifest(ManifestIssue {
        manifest: Some(name.to_string()),
        row: None,
        row_kind: "line".into(),
        field: None,
        reason: format!("{kind}; only regular files are read"),
    }))
}

/// The bytes of the local manifest file `path` (named `name` in errors): only a regular file
/// ([`check_regular_file`]), at most `limit` bytes.
pub fn read_local_file(path: &Path, name: &str, limit: u64) -> Result<Vec<u8>> {
    check_regular_file(path, name)?;
    let io = |source| Error::Io {
        name: name.to_string(),
        source,
    };
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    let mut head = file.take(limit.saturating_add(1));
    head.read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(Error::Manifest(ManifestIssue {
            manifest: Some(name.to_string()),
            row: None,
            row_kind: "line".into(),
            field: None,
            reason: format!("the file has more than {limit} bytes, the most read for a manifest"),
        }));
    }
    Ok(bytes)
}

/// The JSON lines of a JSONL manifest as [`Row`]s, blank lines skipped.
pub fn jsonl_rows(text: &str) -> impl Iterator<Item = Row> + '_ {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            (
                i + 1,
                serde_json::from_str(line).map_err(|e| FieldError {
                    field: None,
                    reason: format!("invalid JSON: {e}"),
                }),
            )
        })
}

/// Validate rows: each against the schema, and ids unique across them. Image paths stay as written. An empty manifest is not an
/// error here (see [`Manifest::from_rows`]).
pub fn read_records(
    rows: impl IntoIterator<Item = Row>,
    source: Source<'_>,
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (row, value) in rows {
        let value = value.map_err(|e| source.issue(Some(row), e.field.as_deref(), e.reason))?;
        let mut record = validate_record(&value, source, Some(row))?;
        record.line = row;
        if let Some(first) = seen.insert(record.id.clone(), row) {
            return Err(duplicate_id(source, row, &record.id, first));
        }
        records.push(record);
    }
    Ok(records)
}

/// [`parse_record`] with its error placed at `row` of `source`.
pub fn validate_record(value: &Value, source: Source<'_>, row: Option<usize>) -> Result<Record> {
    parse_record(value).map_err(|e| source.issue(row, e.field.as_deref(), e.reason))
}

impl Manifest {
    /// Parse JSON lines (blank lines are skipped). `name` is how errors refer to the manifest.
    pub fn from_jsonl(text: &str, name: &str, opts: &ManifestOptions) -> Result<Manifest> {
        let source = Source {
            name: Some(name),
            row_kind: "line",
        };
        Manifest::from_rows(jsonl_rows(text), source, opts)
    }

    /// Validate rows (as [`read_records`]), resolve the image paths under the root and refuse an
    /// empty manifest.
    pub fn from_rows(
        rows: impl IntoIterator<Item = Row>,
        source: Source<'_>,
        opts: &ManifestOptions,
    ) -> Result<Manifest> {
        let mut records = read_records(rows, source)?;
        for r in &mut records {
            r.image = resolve(&r.image, opts)
                .map_err(|reason| source.issue(Some(r.line), Some("image"), reason))?;
        }
        Manifest::new(source, opts, Records::Rows(records))
    }
}

/// Every field a record may carry (the manifest schema, docs/manifest.md), in the order records
/// are written; anything else is an error, so a misspelt field (`"lables"`) cannot train silently.
pub const FIELDS: [&str; 13] = [
    "id",
    "image",
    "source",
    "task",
    "split",
    "text",
    "prompt",
    "answer",
    "rationale",
    "hard_id",
    "labels",
    "boxes",
    "laterality_sensitive",
];

/// The fields every record must carry (`text` may be empty, except in a `report` record).
pub const REQUIRED: [&str; 6] = ["id", "image", "source", "task", "split", "text"];

/// The fields of one `boxes` entry.
pub const BOX_FIELDS: [&str; 3] = ["box", "phrase", "anatomy"];

/// The 14 CheXpert observations, in the order of the CheXpert / MIMIC-CXR-JPG label files; a
/// record's labels are written in this order first.
pub const CHEXPERT_LABELS: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// Why a record breaks the schema: the field (`None`: the record as a whole) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: Option<String>,
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: Some(field.to_string()),
        reason: reason.into(),
    }
}

/// What a JSON value is, for messages (never the value itself: it could be report text).
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Check one record (a JSON value) against the schema and return it; `image` is left as
/// written and `line` is 0. The checks, in order: the record is an object; no unknown field;
/// the required fields; the optional ones (docs/manifest.md, "Record schema").
pub fn parse_record(value: &Value) -> std::result::Result<Record, FieldError> {
    let obj = value.as_object().ok_or_else(|| FieldError {
        field: None,
        reason: format!("a record must be a JSON object, got {}", kind(value)),
    })?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(bad(
            unknown,
            format!(
                "unknown field (the manifest's fields are {})",
                FIELDS.join(", ")
            ),
        ));
    }
    let mut required = REQUIRED.iter().map(|&f| required_str(obj, f));
    let mut next = || required.next().expect("one per required field");
    let (id, image, source, task_name, split, text) =
        (next()?, next()?, next()?, next()?, next()?, next()?);
    let task = parse_task(&task_name)?;
    check_text(task, &text)?;
    let prompt = optional_str(obj, "prompt")?;
    let answer = optional_str(obj, "answer")?;
    let rationale = optional_str(obj, "rationale")?;
    check_rationale(answer.is_some(), rationale.is_some())?;
    let hard_id = optional_str(obj, "hard_id")?;
    check_hard_id(&id, hard_id.as_deref())?;
    Ok(Record {
        id,
        image: PathBuf::from(image),
        source,
        task,
        split,
        text,
        prompt,
        answer,
        rationale,
        hard_id,
        labels: parse_labels(obj.get("labels"))?,
        boxes: parse_boxes(obj.get("boxes"))?,
        laterality_sensitive: match obj.get("laterality_sensitive") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(bad(
                    "laterality_sensitive",
                    format!("must be true or false, got {}", kind(other)),
                ))
            }
        },
        line: 0,
    })
}

/// A required string: present, a string, and (but for `text`) not blank.
fn required_str(obj: &Map<String, Value>, field: &str) -> std::result::Result<String, FieldError> {
    match obj.get(field) {
        None => Err(bad(field, "missing (a required field)")),
        Some(Value::String(s)) => check_required(field, s).map(|()| s.clone()),
        Some(other) => Err(bad(field, format!("must be a string, got {}", kind(other)))),
    }
}

// The rules on field values, shared by the JSON records above and the Arrow columns of a packed
// manifest (`data::manifest_arrow`), so both forms accept and refuse the same records.

/// A required string's value: not blank, but for `text` (checked by [`check_text`]).
pub(crate) fn check_required(field: &str, s: &str) -> std::result::Result<(), FieldError> {
    if field != "text" && s.trim().is_empty() {
        return Err(bad(field, "must not be empty"));
    }
    Ok(())
}

/// The task a `task` value names.
pub(crate) fn parse_task(name: &str) -> std::result::Result<Task, FieldError> {
    Task::parse(name).ok_or_else(|| {
        let names: Vec<_> = Task::ALL.iter().map(|t| t.name()).collect();
        bad(
            "task",
            format!(
                "unknown task {name:?} (expected one of {})",
                names.join(", ")
            ),
        )
    })
}

/// A report record needs its report.
pub(crate) fn check_text(task: Task, text: &str) -> std::result::Result<(), FieldError> {
    if task == Task::Report && text.trim().is_empty() {
        return Err(bad("text", "a report record needs a non-empty report text"));
    }
    Ok(())
}

/// A rationale comes with an answer.
pub(crate) fn check_rationale(
    answer: bool,
    rationale: bool,
) -> std::result::Result<(), FieldError> {
    if rationale && !answer {
        return Err(bad("rationale", "a rationale needs an answer"));
    }
    Ok(())
}

/// A Hard-stage partner names another record: not blank, not the record itself.
pub(crate) fn check_hard_id(
    id: &str,
    hard_id: Option<&str>,
) -> std::result::Result<(), FieldError> {
    match hard_id {
        Some(h) if h.trim().is_empty() => Err(bad("hard_id", "must be a non-empty string or null")),
        Some(h) if h == id => Err(bad(
            "hard_id",
            "names the record itself (leave it out to use the record's own image)",
        )),
        _ => Ok(()),
    }
}

/// A label's name.
pub(crate) fn check_label_name(name: &str) -> std::result::Result<(), FieldError> {
    if name.trim().is_empty() {
        return Err(bad("labels", "label names must not be empty"));
    }
    Ok(())
}

/// A label's value: 1, 0 or -1 (`shown`: the value as the manifest wrote it, for the message).
pub(crate) fn label_value(
    name: &str,
    x: f64,
    shown: impl std::fmt::Display,
) -> std::result::Result<i8, FieldError> {
    if x == 1.0 || x == 0.0 || x == -1.0 {
        return Ok(x as i8);
    }
    Err(bad(
        &format!("labels.{name}"),
        format!("must be 1, 0, -1 or null, got {shown}"),
    ))
}

/// Labels in the written order: CheXpert's first (in [`CHEXPERT_LABELS`] order), then the
/// others as given (stable, diff-friendly).
pub(crate) fn sort_labels(labels: &mut [(String, Option<i8>)]) {
    let rank = |name: &str| {
        CHEXPERT_LABELS
            .iter()
            .position(|c| *c == name)
            .unwrap_or(CHEXPERT_LABELS.len())
    };
    labels.sort_by_key(|(k, _)| rank(k));
}

/// Box `i`'s coordinates: finite, `x1 < x2` and `y1 < y2`.
pub(crate) fn check_rect(i: usize, rect: &[f64; 4]) -> std::result::Result<(), FieldError> {
    if rect.iter().any(|x| !x.is_finite()) {
        return Err(bad(
            &format!("boxes[{i}].box"),
            format!("coordinates must be finite numbers, got {rect:?}"),
        ));
    }
    if rect[2] <= rect[0] || rect[3] <= rect[1] {
        return Err(bad(
            &format!("boxes[{i}].box"),
            format!("needs x1 < x2 and y1 < y2, got {rect:?}"),
        ));
    }
    Ok(())
}

/// Box `i`'s anatomy: a name, or none (never blank).
pub(crate) fn check_anatomy(
    i: usize,
    anatomy: Option<&str>,
) -> std::result::Result<(), FieldError> {
    if anatomy.is_some_and(|a| a.trim().is_empty()) {
        return Err(bad(
            &format!("boxes[{i}].anatomy"),
            "must be a non-empty string or null, got a string",
        ));
    }
    Ok(())
}

/// The error for an id seen before, on `first`.
pub(crate) fn duplicate_id(source: Source<'_>, row: usize, id: &str, first: usize) -> Error {
    source.issue(
        Some(row),
        Some("id"),
        format!("duplicate id {id:?} (first on {} {first})", source.row_kind),
    )
}

fn optional_str(
    obj: &Map<String, Value>,
    field: &str,
) -> std::result::Result<Option<String>, FieldError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(bad(
            field,
            format!("must be a string or null, got {}", kind(other)),
        )),
    }
}

fn parse_labels(v: Option<&Value>) -> std::result::Result<Vec<(String, Option<i8>)>, FieldError> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(bad(
                "labels",
                format!(
                    "expected an object label -> 1 / 0 / -1 / null, got {}",
                    kind(other)
                ),
            ))
        }
    };
    let mut labels = obj
        .iter()
        .map(|(k, v)| {
            check_label_name(k)?;
            let value = match v {
                Value::Null => None,
                Value::Number(n) => Some(label_value(k, n.as_f64().unwrap_or(f64::NAN), n)?),
                other => {
                    return Err(bad(
                        &format!("labels.{k}"),
                        format!("must be 1, 0, -1 or null, got {}", kind(other)),
                    ))
                }
            };
            Ok((k.clone(), value))
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    sort_labels(&mut labels);
    Ok(labels)
}

fn parse_boxes(v: Option<&Value>) -> std::result::Result<Vec<BoxAnnotation>, FieldError> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(bad(
                "boxes",
                format!(
                    "must be a list of {{\"box\": [x1, y1, x2, y2], \"phrase\": ..., \
                     \"anatomy\": ...}}, got {}",
                    kind(other)
                ),
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |f: &str| format!("boxes[{i}].{f}");
            let obj = item.as_object().ok_or_else(|| {
                bad(
                    &format!("boxes[{i}]"),
                    format!("must be an object, got {}", kind(item)),
                )
            })?;
            if let Some(unknown) = obj.keys().find(|k| !BOX_FIELDS.contains(&k.as_str())) {
                return Err(bad(
                    &field(unknown),
                    format!(
                        "unknown field (a box's fields are {})",
                        BOX_FIELDS.join(", ")
                    ),
                ));
            }
            let coords = obj
                .get("box")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 4)
                .ok_or_else(|| bad(&field("box"), "must be [x1, y1, x2, y2] (4 numbers)"))?;
            let mut rect = [0.0; 4];
            for (r, c) in rect.iter_mut().zip(coords) {
                *r = c.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                    bad(
                        &field("box"),
                        format!("coordinates must be finite numbers, got {}", kind(c)),
                    )
                })?;
            }
            check_rect(i, &rect)?;
            let phrase = match obj.get("phrase") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => {
                    return Err(bad(
                        &field("phrase"),
                        format!("must be a string or null, got {}", kind(other)),
                    ))
                }
            };
            let anatomy = match obj.get("anatomy") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    check_anatomy(i, Some(s))?;
                    Some(s.clone())
                }
                Some(other) => {
                    return Err(bad(
                        &field("anatomy"),
                        format!("must be a non-empty string or null, got {}", kind(other)),
                    ))
                }
            };
            Ok(BoxAnnotation {
                rect,
                phrase,
                anatomy,
            })
        })
        .collect()
}

impl Record {
    /// The record normalised, as written to a manifest: the fields in [`FIELDS`] order, every
    /// optional field with its value or default (`prompt` null, `labels` {}, `boxes` [],
    /// `laterality_sensitive` true) but `answer`, `rationale` and `hard_id`, which appear only
    /// when set;
    /// label values as integers, box coordinates as floats.
    pub fn to_value(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), self.id.clone().into());
        m.insert("image".into(), self.image.display().to_string().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("task".into(), self.task.name().into());
        m.insert("split".into(), self.split.clone().into());
        m.insert("text".into(), self.text.clone().into());
        m.insert("prompt".into(), self.prompt.clone().into());
        if let Some(a) = &self.answer {
            m.insert("answer".into(), a.clone().into());
        }
        if let Some(r) = &self.rationale {
            m.insert("rationale".into(), r.clone().into());
        }
        if let Some(h) = &self.hard_id {
            m.insert("hard_id".into(), h.clone().into());
        }
        let labels: Map<String, Value> = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.map_or(Value::Null, Value::from)))
            .collect();
        m.insert("labels".into(), labels.into());
        let boxes: Vec<Value> = self
            .boxes
            .iter()
            .map(|b| {
                serde_json::json!({
                    "box": b.rect.to_vec(),
                    "phrase": b.phrase,
                    "anatomy": b.anatomy,
                })
            })
            .collect();
        m.insert("boxes".into(), boxes.into());
        m.insert(
            "laterality_sensitive".into(),
            self.laterality_sensitive.into(),
        );
        Value::Object(m)
    }
}

/// Resolve an image path under the root. Absolute paths and `..` that climb out of the root are
/// refused unless allowed: a manifest must not be able to read arbitrary files by default.
/// An image's location: a relative path joined to the root (a folder, or a store URL for a
/// manifest in a store) unless it climbs out of it; an absolute path, or a URL that does not
/// extend a URL root, only where the manifest allows images outside its root.
pub(crate) fn resolve(
    image: &Path,
    opts: &ManifestOptions,
) -> std::result::Result<PathBuf, String> {
    let p = image;
    if let Some(url) = p.to_str().filter(|s| storage::is_remote(s)) {
        // a URL is under the root only when the root is a URL it extends; any other (an
        // http:// address in a local manifest, another bucket) needs allow_outside_root
        let root = opts.root.to_str().unwrap_or_default().trim_end_matches('/');
        let under = storage::is_remote(root) && url.starts_with(&format!("{root}/"));
        return if under || opts.allow_outside_root {
            Ok(p.to_path_buf())
        } else {
            Err(format!(
                "URL {url:?} is outside the manifest root (pass allow_outside_root=True to allow \
                 it)"
            ))
        };
    }
    let local;
    let p = match p.to_str() {
        Some(s) if s.starts_with("file://") => {
            local = storage::local_path(s).map_err(|e| e.to_string())?;
            local.as_path()
        }
        _ => p,
    };
    if p.is_absolute() {
        return if opts.allow_outside_root {
            Ok(p.to_path_buf())
        } else {
            Err(format!("absolute path {image:?} is outside the manifest root (pass allow_outside_root=True to allow it)"))
        };
    }
    let mut depth: i64 = 0;
    for c in p.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 && !opts.allow_outside_root {
            return Err(format!("{image:?} climbs out of the manifest root (pass allow_outside_root=True to allow it)"));
        }
    }
    Ok(opts.root.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts() -> ManifestOptions {
        ManifestOptions {
            root: PathBuf::from("/data"),
            allow_outside_root: false,
        }
    }

    /// A minimal valid record, as one JSON line, with `extra` fields merged in.
    fn line(extra: Value) -> String {
        let mut r = json!({"id": "a", "image": "1.jpg", "source": "s", "task": "report",
                           "split": "train", "text": "No effusion."});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r.to_string()
    }

    fn issue(text: &str) -> ManifestIssue {
        match Manifest::from_jsonl(text, "m.jsonl", &opts()) {
            Err(Error::Manifest(i)) => i,
            other => panic!("expected a manifest error, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_full_record() {
        let line = r#"{"id": "a", "image": "x/1.jpg", "source": "mimic-cxr", "task": "phrase_grounding", "split": "train",
            "text": "Left effusion.", "labels": {"custom": 0, "Pleural Effusion": 1, "Edema": null, "Atelectasis": -1.0},
            "boxes": [{"box": [1, 2, 30, 40], "phrase": "effusion", "anatomy": "left costophrenic angle"}],
            "laterality_sensitive": false}"#;
        let m = Manifest::from_jsonl(&line.replace('\n', " "), "m.jsonl", &opts()).unwrap();
        let r = m.record(0).unwrap();
        assert_eq!(r.image, PathBuf::from("/data/x/1.jpg"));
        assert_eq!(r.task, Task::PhraseGrounding);
        // CheXpert order first (Edema 5, Atelectasis 8, Pleural Effusion 10), then the others
        let names: Vec<_> = r.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["Edema", "Atelectasis", "Pleural Effusion", "custom"]
        );
        assert_eq!(r.labels[0].1, None);
        assert_eq!(r.labels[1].1, Some(-1));
        assert_eq!(r.boxes[0].rect, [1.0, 2.0, 30.0, 40.0]);
        assert!(!r.laterality_sensitive);
        assert_eq!(r.line, 1);
    }

    #[test]
    fn normalised_records_carry_every_field_in_order() {
        let r = parse_record(&serde_json::from_str(&line(json!({}))).unwrap()).unwrap();
        let v = r.to_value();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        let expect: Vec<_> = FIELDS
            .iter()
            .filter(|f| !["answer", "rationale", "hard_id"].contains(f))
            .map(|f| f.to_string())
            .collect();
        assert_eq!(keys, expect);
        assert_eq!(v["prompt"], Value::Null);
        assert_eq!(v["labels"], json!({}));
        assert_eq!(v["boxes"], json!([]));
        assert_eq!(v["laterality_sensitive"], json!(true));
        let vqa = json!({"task": "vqa", "answer": "Yes.", "rationale": "Because.",
                         "hard_id": "other"});
        let r = parse_record(&serde_json::from_str(&line(vqa)).unwrap()).unwrap();
        let v = r.to_value();
        assert_eq!(
            (
                v["answer"].as_str(),
                v["rationale"].as_str(),
                v["hard_id"].as_str()
            ),
            (Some("Yes."), Some("Because."), Some("other"))
        );
        assert_eq!(parse_record(&v).unwrap(), r); // normalising twice changes nothing
    }

    #[test]
    fn errors_name_manifest_line_field_and_reason() {
        let bad_box = line(json!({"id": "b", "boxes": [{"box": [30, 0, 10, 5]}]}));
        let i = issue(&format!("{}\n\n{bad_box}", line(json!({}))));
        assert_eq!((i.row, i.row_kind.as_str()), (Some(3), "line"));
        assert_eq!(i.field.as_deref(), Some("boxes[0].box"));
        assert_eq!(
            i.reason,
            "needs x1 < x2 and y1 < y2, got [30.0, 0.0, 10.0, 5.0]"
        );
        assert_eq!(
            Error::Manifest(i).to_string(),
            "m.jsonl line 3, field 'boxes[0].box': needs x1 < x2 and y1 < y2, got [30.0, 0.0, 10.0, 5.0]"
        );
        let i = issue(&line(json!({"task": "captioning"})));
        assert_eq!(i.field.as_deref(), Some("task"));
        assert!(
            i.reason.starts_with("unknown task \"captioning\""),
            "{}",
            i.reason
        );
        let i = issue(&format!(
            "{}\n{}",
            line(json!({})),
            line(json!({"image": "2.jpg"}))
        ));
        assert_eq!((i.row, i.field.as_deref()), (Some(2), Some("id")));
        assert!(i.reason.contains("first on line 1"), "{}", i.reason);
        let i = issue("{not json");
        assert_eq!((i.row, i.field.as_deref()), (Some(1), None));
        assert!(i.reason.starts_with("invalid JSON"), "{}", i.reason);
        let i = issue("\n \n");
        assert_eq!(
            (i.row, i.reason.as_str()),
            (None, "the manifest holds no records")
        );
    }

    #[test]
    fn the_schema_decides_each_field() {
        let reject = |extra: Value, field: &str, reason: &str| {
            let i = issue(&line(extra.clone()));
            assert_eq!(i.field.as_deref(), Some(field), "{extra}");
            assert!(i.reason.contains(reason), "{extra}: {}", i.reason);
        };
        reject(json!({"id": 7}), "id", "must be a string, got a number");
        reject(json!({"id": " "}), "id", "must not be empty");
        reject(
            json!({"split": null}),
            "split",
            "must be a string, got null",
        );
        reject(json!({"text": ""}), "text", "non-empty report text");
        reject(json!({"lables": {}}), "lables", "unknown field");
        reject(json!({"prompt": 5}), "prompt", "string or null");
        reject(json!({"rationale": "r"}), "rationale", "needs an answer");
        reject(json!({"hard_id": 3}), "hard_id", "string or null");
        reject(json!({"hard_id": " "}), "hard_id", "non-empty");
        reject(
            json!({"id": "a", "hard_id": "a"}),
            "hard_id",
            "names the record itself",
        );
        reject(json!({"labels": {"Edema": 2}}), "labels.Edema", "got 2");
        reject(
            json!({"labels": {"Edema": true}}),
            "labels.Edema",
            "got a boolean",
        );
        reject(json!({"labels": {" ": 1}}), "labels", "must not be empty");
        reject(json!({"labels": ["Edema"]}), "labels", "expected an object");
        reject(json!({"boxes": {}}), "boxes", "must be a list");
        reject(json!({"boxes": [3]}), "boxes[0]", "must be an object");
        reject(
            json!({"boxes": [{"box": [0, 0, 1]}]}),
            "boxes[0].box",
            "[x1, y1, x2, y2]",
        );
        reject(
            json!({"boxes": [{"box": [0, 0, "1", 1]}]}),
            "boxes[0].box",
            "finite numbers, got a string",
        );
        reject(
            json!({"boxes": [{"box": [0, 0, 1, 1], "score": 1}]}),
            "boxes[0].score",
            "unknown field",
        );
        reject(
            json!({"boxes": [{"box": [0, 0, 1, 1], "phrase": 1}]}),
            "boxes[0].phrase",
            "string",
        );
        reject(
            json!({"boxes": [{"box": [0, 0, 1, 1], "anatomy": ""}]}),
            "boxes[0].anatomy",
            "non-empty",
        );
        reject(
            json!({"laterality_sensitive": "yes"}),
            "laterality_sensitive",
            "true or false",
        );
        let required = |field: &str| {
            let mut v: Value = serde_json::from_str(&line(json!({}))).unwrap();
            v.as_object_mut().unwrap().remove(field);
            let e = parse_record(&v).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field));
            assert!(e.reason.starts_with("missing"), "{}", e.reason);
        };
        REQUIRED.iter().for_each(|f| required(f));
        // accepted: empty text outside report records, null optional fields, null phrase
        let ok = json!({"task": "vqa", "text": "", "prompt": null, "labels": null, "boxes": null,
                        "laterality_sensitive": null});
        assert!(Manifest::from_jsonl(&line(ok), "m", &opts()).is_ok());
        let ok = json!({"boxes": [{"box": [0, 0, 1, 1], "phrase": null, "anatomy": null}]});
        assert!(Manifest::from_jsonl(&line(ok), "m", &opts()).is_ok());
    }

    #[test]
    fn paths_stay_under_the_root_unless_allowed() {
        let rec = |img: &str| line(json!({"image": img}));
        let i = issue(&rec("/etc/passwd"));
        assert_eq!(i.field.as_deref(), Some("image"));
        assert!(Manifest::from_jsonl(&rec("../../x.jpg"), "m", &opts()).is_err());
        assert!(Manifest::from_jsonl(&rec("a/../b.jpg"), "m", &opts()).is_ok());
        let open = ManifestOptions {
            allow_outside_root: true,
            ..opts()
        };
        assert!(Manifest::from_jsonl(&rec("/abs/x.jpg"), "m", &open).is_ok());
    }

    #[test]
    fn urls_resolve_under_a_url_root_only() {
        let local = opts();
        let err = resolve(Path::new("s3://b/m/x.jpg"), &local).unwrap_err();
        assert!(err.contains("outside the manifest root"), "{err}");
        let remote = ManifestOptions {
            root: PathBuf::from("s3://b/m"),
            allow_outside_root: false,
        };
        let ok = |p: &str| resolve(Path::new(p), &remote).map(|p| p.display().to_string());
        assert_eq!(ok("x/1.jpg").unwrap(), "s3://b/m/x/1.jpg");
        assert_eq!(ok("s3://b/m/2.jpg").unwrap(), "s3://b/m/2.jpg");
        assert!(ok("s3://b/mm/2.jpg").is_err()); // a sibling prefix is not under the root
        assert!(ok("https://internal/admin").is_err());
        assert!(ok("../x.jpg").is_err());
        let allowed = ManifestOptions {
            allow_outside_root: true,
            ..local
        };
        assert!(resolve(Path::new("https://h/x.png"), &allowed).is_ok());
    }

    /// Six records: ids r0..r5, source a/b alternating, split train except r4, task report
    /// except r3 (vqa).
    fn six() -> Arc<Manifest> {
        let lines: Vec<String> = (0..6)
            .map(|k| {
                let task = if k == 3 { "vqa" } else { "report" };
                let source = ["a", "b"][k % 2];
                let split = if k == 4 { "test" } else { "train" };
                line(
                    json!({"id": format!("r{k}"), "source": source, "task": task,
                            "split": split, "prompt": "q"}),
                )
            })
            .collect();
        Arc::new(Manifest::from_jsonl(&lines.join("\n"), "m.jsonl", &opts()).unwrap())
    }

    #[test]
    fn select_keeps_split_source_and_tasks_in_manifest_order() {
        let m = six();
        let sel = |split, source, tasks: Option<&[Task]>| {
            m.select(&Selection {
                split,
                source,
                tasks,
            })
            .unwrap()
        };
        assert_eq!(sel(None, None, None), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(sel(Some("train"), Some("a"), None), vec![0, 2]);
        assert_eq!(sel(Some("train"), Some("b"), None), vec![1, 3, 5]);
        assert_eq!(sel(None, None, Some(&[Task::Vqa])), vec![3]);
        assert!(sel(Some("validate"), None, None).is_empty());
    }

    #[test]
    fn compose_shares_renames_and_refuses_repeated_ids() {
        let m = six();
        let part = |indices: Vec<u32>, source: Option<&str>| Part {
            manifest: m.clone(),
            indices,
            source: source.map(str::to_string),
        };
        let c = Manifest::compose(vec![part(vec![5, 1], Some("B")), part(vec![0], None)]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            (0..3).map(|i| c.id(i)).collect::<Vec<_>>(),
            ["r5", "r1", "r0"]
        );
        assert_eq!(
            (0..3).map(|i| c.source_name(i)).collect::<Vec<_>>(),
            ["B", "B", "a"]
        );
        assert_eq!(c.record(1).unwrap().source, "B");
        assert_eq!(c.record(2).unwrap().source, "a");
        assert_eq!((c.line(0), c.place(0)), (6, ("m.jsonl", "line", 6)));
        assert_eq!(c.image(2), m.image(0));
        assert_eq!(Arc::strong_count(&m), 3); // shared by both parts, not copied
        let err = Manifest::compose(vec![part(vec![0, 2], None), part(vec![2], Some("x"))])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("m.jsonl line 3") && err.contains("duplicate id \"r2\""),
            "{err}"
        );
        let out = Manifest::compose(vec![part(vec![6], None)])
            .unwrap_err()
            .to_string();
        assert!(out.contains("index 6 is out of range"), "{out}");
    }
}
