//! Packed manifests: the records as Arrow columns in an Arrow IPC file (docs/manifest.md,
//! "Packed manifests").
//!
//! A JSON-lines manifest is parsed into owned records when it is opened: at MIMIC-CXR's 377k
//! records that is seconds of parsing and most of a gigabyte per process, held again by every
//! rank on the node. [`write`] packs validated records once into an uncompressed Arrow IPC file;
//! [`open`] memory-maps it, checks every record with the manifest's own rules (the functions
//! shared with `data::manifest`), and keeps only the columns, which point into the map: the
//! pages are the page cache's, shared by every process that opens the file, and a [`Record`] is
//! built only when a sample asks for it ([`Columns::record`]).

use std::fs::File;
use std::io::BufWriter;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int8Array, LargeStringArray, ListArray,
    RecordBatch, StructArray,
};
use arrow_buffer::{Buffer, OffsetBuffer};
use arrow_ipc::convert::try_fb_to_schema;
use arrow_ipc::reader::{read_footer_length, FileDecoder};
use arrow_ipc::writer::FileWriter;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};

use crate::data::manifest::{
    check_anatomy, check_hard_id, check_label_name, check_rationale, check_rect, check_required,
    check_text, duplicate_id, label_value, parse_task, resolve, sort_labels, BoxAnnotation,
    FieldError, Manifest, ManifestOptions, Record, Records, Source, Task, REQUIRED,
};
use crate::error::{Error, Result};
use crate::storage;

/// The file's `format` metadata; `version` says which schema it holds: version 2 adds the
/// nullable `hard_id` column after `laterality_sensitive`; version 1 files (without it) are still
/// read, every `hard_id` null.
pub const FORMAT: &str = "gradatim-manifest";
pub const VERSION: &str = "2";
const VERSION_1: &str = "1";
/// Records per Arrow record batch in a written file.
const BATCH_ROWS: usize = 65_536;
/// The largest packed manifest read from an object store (read whole: it cannot be mapped).
const MAX_REMOTE_BYTES: u64 = 64 << 30;

/// The string columns, in schema order: the six required ones, then the optional ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Id,
    Image,
    Source,
    Task,
    Split,
    Text,
    Prompt,
    Answer,
    Rationale,
}

const STRINGS: [(&str, Column); 9] = [
    ("id", Column::Id),
    ("image", Column::Image),
    ("source", Column::Source),
    ("task", Column::Task),
    ("split", Column::Split),
    ("text", Column::Text),
    ("prompt", Column::Prompt),
    ("answer", Column::Answer),
    ("rationale", Column::Rationale),
];

fn label_fields() -> Fields {
    Fields::from(vec![
        Field::new("name", DataType::LargeUtf8, false),
        Field::new("value", DataType::Int8, true),
    ])
}

fn box_fields() -> Fields {
    Fields::from(vec![
        Field::new("x1", DataType::Float64, false),
        Field::new("y1", DataType::Float64, false),
        Field::new("x2", DataType::Float64, false),
        Field::new("y2", DataType::Float64, false),
        Field::new("phrase", DataType::LargeUtf8, false),
        Field::new("anatomy", DataType::LargeUtf8, true),
    ])
}

fn list_of(fields: Fields) -> DataType {
    DataType::List(Arc::new(Field::new(
        "item",
        DataType::Struct(fields),
        false,
    )))
}

/// The packed manifest's schema: one column per record field (docs/manifest.md).
pub fn schema() -> Schema {
    let mut fields: Vec<Field> = schema_v1().fields().iter().map(|f| (**f).clone()).collect();
    fields.push(Field::new("hard_id", DataType::LargeUtf8, true));
    Schema::new(fields).with_metadata(metadata(VERSION))
}

fn metadata(version: &str) -> std::collections::HashMap<String, String> {
    [("format", FORMAT), ("version", version)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Version 1's schema: the columns before `hard_id`.
fn schema_v1() -> Schema {
    let mut fields: Vec<Field> = STRINGS
        .iter()
        .map(|(name, _)| Field::new(*name, DataType::LargeUtf8, !REQUIRED.contains(name)))
        .collect();
    fields.push(Field::new("labels", list_of(label_fields()), false));
    fields.push(Field::new("boxes", list_of(box_fields()), false));
    fields.push(Field::new("laterality_sensitive", DataType::Boolean, false));
    Schema::new(fields).with_metadata(metadata(VERSION_1))
}

/// One Arrow record batch's columns, typed.
#[derive(Clone)]
struct Batch {
    strings: Vec<LargeStringArray>,
    labels: ListArray,
    label_names: LargeStringArray,
    label_values: Int8Array,
    boxes: ListArray,
    coords: [Float64Array; 4],
    phrases: LargeStringArray,
    anatomy: LargeStringArray,
    laterality: BooleanArray,
    /// `None` in a version 1 file.
    hard_ids: Option<LargeStringArray>,
}

/// A packed manifest's records: Arrow columns (pointing into the file's memory map), plus each
/// record's task.
#[derive(Clone)]
pub struct Columns {
    batches: Vec<Batch>,
    /// `starts[b]`: the index of batch `b`'s first record; one more entry: the record count.
    starts: Vec<usize>,
    tasks: Vec<Task>,
    max_boxes: usize,
}

impl std::fmt::Debug for Columns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Columns {{ records: {}, batches: {} }}",
            self.len(),
            self.batches.len()
        )
    }
}

fn opt_str(a: &LargeStringArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn range(list: &ListArray, i: usize) -> std::ops::Range<usize> {
    let o = list.value_offsets();
    o[i] as usize..o[i + 1] as usize
}

impl Columns {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// The batch holding record `index`, and the record's row in it.
    fn at(&self, index: usize) -> (&Batch, usize) {
        let b = self.starts.partition_point(|&s| s <= index) - 1;
        (&self.batches[b], index - self.starts[b])
    }

    /// A required string field of record `index` (`index < len()`).
    pub fn str_at(&self, column: Column, index: usize) -> &str {
        let (b, i) = self.at(index);
        b.strings[column as usize].value(i)
    }

    pub fn task(&self, index: usize) -> Task {
        self.tasks[index]
    }

    pub fn max_boxes(&self) -> usize {
        self.max_boxes
    }

    /// Record `index`'s Hard-stage partner id (`index < len()`).
    pub fn hard_id(&self, index: usize) -> Option<&str> {
        let (b, i) = self.at(index);
        b.hard_ids.as_ref().and_then(|h| opt_str(h, i))
    }

    /// Record `index`'s first box's phrase (`index < len()`); `None` without boxes.
    pub fn first_phrase(&self, index: usize) -> Option<&str> {
        let (b, i) = self.at(index);
        let boxes = range(&b.boxes, i);
        (!boxes.is_empty()).then(|| b.phrases.value(boxes.start))
    }

    /// Record `index`'s first box's anatomy (`index < len()`); `None` without boxes or anatomy.
    pub fn first_anatomy(&self, index: usize) -> Option<&str> {
        let (b, i) = self.at(index);
        let boxes = range(&b.boxes, i);
        if boxes.is_empty() {
            return None;
        }
        opt_str(&b.anatomy, boxes.start)
    }

    /// Record `index`'s box count (`index < len()`).
    pub fn box_count(&self, index: usize) -> usize {
        let (b, i) = self.at(index);
        range(&b.boxes, i).len()
    }

    /// An optional string field of record `index` (`index < len()`); `None` where absent.
    pub fn opt_str_at(&self, column: Column, index: usize) -> Option<&str> {
        let (b, i) = self.at(index);
        opt_str(&b.strings[column as usize], i)
    }

    /// Record `index` (`index < len()`), its image as written and `line` its 1-based row.
    pub fn record(&self, index: usize) -> Record {
        let (b, i) = self.at(index);
        let s = |c: Column| b.strings[c as usize].value(i).to_string();
        let o = |c: Column| opt_str(&b.strings[c as usize], i).map(str::to_string);
        let mut labels: Vec<(String, Option<i8>)> = range(&b.labels, i)
            .map(|j| {
                let v = &b.label_values;
                (
                    b.label_names.value(j).to_string(),
                    v.is_valid(j).then(|| v.value(j)),
                )
            })
            .collect();
        sort_labels(&mut labels);
        let boxes = range(&b.boxes, i)
            .map(|j| BoxAnnotation {
                rect: [0, 1, 2, 3].map(|k| b.coords[k].value(j)),
                phrase: b.phrases.value(j).to_string(),
                anatomy: opt_str(&b.anatomy, j).map(str::to_string),
            })
            .collect();
        Record {
            id: s(Column::Id),
            image: s(Column::Image).into(),
            source: s(Column::Source),
            task: self.tasks[index],
            split: s(Column::Split),
            text: s(Column::Text),
            prompt: o(Column::Prompt),
            answer: o(Column::Answer),
            rationale: o(Column::Rationale),
            hard_id: b
                .hard_ids
                .as_ref()
                .and_then(|h| opt_str(h, i))
                .map(str::to_string),
            labels,
            boxes,
            laterality_sensitive: b.laterality.value(i),
            line: index + 1,
        }
    }
}

/// Write validated `records` (images as written) as a packed manifest at `path` (through a
/// temporary file renamed into place, so a reader never sees half a file).
pub fn write(records: &[Record], path: &Path) -> Result<()> {
    write_batches(records, path, BATCH_ROWS)
}

/// Write through `<path>.arrow.tmp`, renamed into place; on any failure (a full disk, a file
/// size limit, a rename refused) the temporary file is removed, so nothing half-written is left.
fn write_batches(records: &[Record], path: &Path, batch_rows: usize) -> Result<()> {
    let tmp = path.with_extension("arrow.tmp");
    let written = write_tmp(records, path, &tmp, batch_rows);
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_tmp(records: &[Record], path: &Path, tmp: &Path, batch_rows: usize) -> Result<()> {
    let io = |source| Error::Io {
        name: path.display().to_string(),
        source,
    };
    let arrow =
        |e: arrow_schema::ArrowError| Error::invalid(format!("writing {}: {e}", path.display()));
    let schema = Arc::new(schema());
    let file = File::create(tmp).map_err(io)?;
    let mut writer = FileWriter::try_new(BufWriter::new(file), &schema).map_err(arrow)?;
    for chunk in records.chunks(batch_rows) {
        writer
            .write(&batch_of(chunk, &schema).map_err(arrow)?)
            .map_err(arrow)?;
    }
    writer.finish().map_err(arrow)?;
    let file = writer
        .into_inner()
        .map_err(arrow)?
        .into_inner()
        .map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(tmp, path).map_err(io)
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(LargeStringArray::from_iter(values))
}

fn list(fields: Fields, lengths: impl Iterator<Item = usize>, columns: Vec<ArrayRef>) -> ArrayRef {
    let values = StructArray::new(fields.clone(), columns, None);
    let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
    Arc::new(ListArray::new(
        item,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    ))
}

fn batch_of(
    records: &[Record],
    schema: &SchemaRef,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    let field = |r: &'_ Record, c: Column| -> Option<String> {
        match c {
            Column::Id => Some(r.id.clone()),
            Column::Image => Some(r.image.display().to_string()),
            Column::Source => Some(r.source.clone()),
            Column::Task => Some(r.task.name().to_string()),
            Column::Split => Some(r.split.clone()),
            Column::Text => Some(r.text.clone()),
            Column::Prompt => r.prompt.clone(),
            Column::Answer => r.answer.clone(),
            Column::Rationale => r.rationale.clone(),
        }
    };
    let mut columns: Vec<ArrayRef> = STRINGS
        .iter()
        .map(|&(_, c)| {
            let values: Vec<Option<String>> = records.iter().map(|r| field(r, c)).collect();
            strings(values.iter().map(Option::as_deref))
        })
        .collect();
    let labels = records.iter().flat_map(|r| &r.labels);
    columns.push(list(
        label_fields(),
        records.iter().map(|r| r.labels.len()),
        vec![
            strings(labels.clone().map(|(k, _)| Some(k.as_str()))),
            Arc::new(Int8Array::from_iter(labels.map(|(_, v)| *v))),
        ],
    ));
    let boxes = || records.iter().flat_map(|r| &r.boxes);
    let mut box_columns: Vec<ArrayRef> = (0..4)
        .map(|k| Arc::new(Float64Array::from_iter_values(boxes().map(|b| b.rect[k]))) as ArrayRef)
        .collect();
    box_columns.push(strings(boxes().map(|b| Some(b.phrase.as_str()))));
    box_columns.push(strings(boxes().map(|b| b.anatomy.as_deref())));
    columns.push(list(
        box_fields(),
        records.iter().map(|r| r.boxes.len()),
        box_columns,
    ));
    columns.push(Arc::new(BooleanArray::from_iter(
        records.iter().map(|r| Some(r.laterality_sensitive)),
    )));
    columns.push(strings(records.iter().map(|r| r.hard_id.as_deref())));
    RecordBatch::try_new(schema.clone(), columns)
}

/// Open the packed manifest at `location` (a path, or an object store URL: read whole), check
/// its schema and every record, and resolve its images under the root of `opts` as any
/// manifest's; errors name the file, and the row and field.
pub fn open(location: &str, opts: &ManifestOptions) -> Result<Manifest> {
    if storage::is_remote(location) {
        let bytes = storage::read_remote(location, MAX_REMOTE_BYTES)?;
        return from_buffer(Buffer::from_vec(bytes), location, opts, &|_| {});
    }
    let path = storage::local_path(location)?;
    let io = |source| Error::Io {
        name: location.to_string(),
        source,
    };
    // before the open: opening a FIFO blocks until a writer comes
    crate::data::manifest::check_regular_file(&path, location)?;
    let file = File::open(&path).map_err(io)?;
    // SAFETY: the map is read-only; a packed manifest is written once, to a temporary file
    // renamed into place, and never modified afterwards (a file truncated under a live map
    // is outside what gradatim can guard against, as for any memory-mapped reader)
    let map = Arc::new(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?);
    let buffer = Buffer::from(bytes::Bytes::from_owner(SharedMap(map.clone())));
    let manifest = from_buffer(buffer, location, opts, &|bytes| release_pages(&map, bytes))?;
    release_pages(&map, 0..map.len());
    Ok(manifest)
}

/// A memory map as the owner of an Arrow buffer (kept alive by the buffer and every slice of it).
struct SharedMap(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for SharedMap {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Unmap `bytes` of the file from this process (`MADV_DONTNEED`) once they are read and checked,
/// batch by batch and then the whole file: the check of every record leaves at most one record
/// batch's pages resident in the process at a time, and none after it. The pages stay in the
/// page cache, shared by every rank that maps the file; reading a record faults its pages back
/// in from there.
#[cfg(unix)]
fn release_pages(map: &memmap2::Mmap, bytes: Range<usize>) {
    // SAFETY: the map is a shared (MAP_SHARED), read-only mapping of a file that is never modified
    // while open (see `open`): after MADV_DONTNEED a read faults the same bytes back in from the
    // page cache or the file, so every slice into the map stays valid and reads the bytes the
    // check read. A failure (a range outside the map) only leaves the pages mapped.
    let _ = unsafe {
        map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, bytes.start, bytes.len())
    };
}

#[cfg(not(unix))]
fn release_pages(_map: &memmap2::Mmap, _bytes: Range<usize>) {}

/// [`open`] of a packed manifest's bytes; `name` names it in errors.
pub fn from_bytes(bytes: Vec<u8>, name: &str, opts: &ManifestOptions) -> Result<Manifest> {
    from_buffer(Buffer::from_vec(bytes), name, opts, &|_| {})
}

/// The bytes of a packed manifest are done with (read and checked): a memory map unmaps them
/// from this process ([`release_pages`]).
type Release<'a> = &'a dyn Fn(Range<usize>);

fn from_buffer(
    buffer: Buffer,
    name: &str,
    opts: &ManifestOptions,
    release: Release<'_>,
) -> Result<Manifest> {
    let source = Source {
        name: Some(name),
        row_kind: "row",
    };
    let not_packed = |why: String| {
        source.issue(
            None,
            None,
            format!(
                "not a packed gradatim manifest ({why}; write one with `gradatim manifest pack`)"
            ),
        )
    };
    let (batches, blocks) = crate::image::decode::without_panics(|| read_batches(&buffer, release))
        .unwrap_or_else(|why| Err(format!("malformed Arrow data: {why}")))
        .map_err(not_packed)?;
    let mut columns = columns_of(&batches).map_err(not_packed)?;
    (columns.tasks, columns.max_boxes) =
        check(&columns, source, opts, |b| release(blocks[b].clone()))?;
    Manifest::new(source, opts, Records::Columns(columns))
}

/// The record batches of an Arrow IPC file, with the packed schema, and the bytes each was read
/// from (released once it is read: its check reads them again).
#[allow(clippy::type_complexity)]
fn read_batches(
    buffer: &Buffer,
    release: Release<'_>,
) -> std::result::Result<(Vec<RecordBatch>, Vec<Range<usize>>), String> {
    let n = buffer.len();
    if n < 18 || &buffer[..6] != b"ARROW1" {
        return Err("no Arrow IPC file header".into());
    }
    let trailer: [u8; 10] = buffer[n - 10..].try_into().expect("10 bytes");
    let footer_len = read_footer_length(trailer).map_err(|e| e.to_string())?;
    if footer_len > n - 10 - 8 {
        return Err(format!("a footer of {footer_len} bytes in a file of {n}"));
    }
    let footer = arrow_ipc::root_as_footer(&buffer[n - 10 - footer_len..n - 10])
        .map_err(|e| format!("unreadable footer: {e}"))?;
    let schema = footer
        .schema()
        .ok_or("no schema")
        .map_err(str::to_string)
        .and_then(|s| try_fb_to_schema(s).map_err(|e| e.to_string()))?;
    if schema.metadata().get("format").map(String::as_str) != Some(FORMAT) {
        return Err("its schema has no gradatim-manifest format tag".into());
    }
    let expected = match schema.metadata().get("version").map(String::as_str) {
        Some(VERSION) => self::schema(),
        Some(VERSION_1) => schema_v1(),
        other => {
            return Err(format!(
                "version {other:?}, this gradatim reads versions {VERSION_1} and {VERSION}"
            ))
        }
    };
    if schema.fields() != expected.fields() {
        return Err("its columns are not the packed manifest's".into());
    }
    if footer.dictionaries().is_some_and(|d| !d.is_empty()) {
        return Err("dictionary-encoded columns".into());
    }
    let decoder = FileDecoder::new(Arc::new(schema), footer.version());
    let (mut batches, mut blocks) = (Vec::new(), Vec::new());
    for block in footer.recordBatches().iter().flatten() {
        let start = usize::try_from(block.offset()).ok();
        let len = usize::try_from(block.metaDataLength())
            .ok()
            .zip(usize::try_from(block.bodyLength()).ok())
            .and_then(|(a, b)| a.checked_add(b));
        let (start, len) = match (start, len) {
            (Some(s), Some(l)) if s.checked_add(l).is_some_and(|end| end <= n) => (s, l),
            _ => return Err("a record batch outside the file".into()),
        };
        let data = buffer.slice_with_length(start, len);
        if let Some(batch) = decoder
            .read_record_batch(block, &data)
            .map_err(|e| e.to_string())?
        {
            batches.push(batch);
            blocks.push(start..start + len);
        }
        release(start..start + len);
    }
    Ok((batches, blocks))
}

fn typed<T: 'static + Clone>(a: &ArrayRef, what: &str) -> std::result::Result<T, String> {
    a.as_any()
        .downcast_ref::<T>()
        .cloned()
        .ok_or_else(|| format!("column {what} has another type"))
}

/// The typed columns of the batches (their schema already checked), and each record's task.
fn columns_of(batches: &[RecordBatch]) -> std::result::Result<Columns, String> {
    let mut out = Columns {
        batches: Vec::with_capacity(batches.len()),
        starts: vec![0],
        tasks: Vec::new(),
        max_boxes: 0,
    };
    for rb in batches {
        let col = |i: usize| rb.column(i);
        let strings = (0..STRINGS.len())
            .map(|i| typed::<LargeStringArray>(col(i), STRINGS[i].0))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let labels = typed::<ListArray>(col(9), "labels")?;
        let boxes = typed::<ListArray>(col(10), "boxes")?;
        let label_values = labels
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .cloned();
        let box_values = boxes
            .values()
            .as_any()
            .downcast_ref::<StructArray>()
            .cloned();
        let (lv, bv) = label_values
            .zip(box_values)
            .ok_or("list items are not structs")?;
        let batch = Batch {
            strings,
            label_names: typed(lv.column(0), "labels.name")?,
            label_values: typed(lv.column(1), "labels.value")?,
            coords: [
                typed(bv.column(0), "boxes.x1")?,
                typed(bv.column(1), "boxes.y1")?,
                typed(bv.column(2), "boxes.x2")?,
                typed(bv.column(3), "boxes.y2")?,
            ],
            phrases: typed(bv.column(4), "boxes.phrase")?,
            anatomy: typed(bv.column(5), "boxes.anatomy")?,
            laterality: typed(col(11), "laterality_sensitive")?,
            hard_ids: (rb.num_columns() > 12)
                .then(|| typed(col(12), "hard_id"))
                .transpose()?,
            labels,
            boxes,
        };
        out.starts
            .push(out.starts.last().expect("starts at 0") + rb.num_rows());
        out.batches.push(batch);
    }
    Ok(out)
}

/// Check every record with the manifest's rules (those of `data::manifest`, in the same order
/// as for a JSON record), ids unique, images resolvable; each record's task and the most boxes a
/// record holds. `checked(b)`: batch `b` is checked.
fn check(
    columns: &Columns,
    source: Source<'_>,
    opts: &ManifestOptions,
    checked: impl Fn(usize),
) -> Result<(Vec<Task>, usize)> {
    let mut tasks = Vec::with_capacity(*columns.starts.last().unwrap_or(&0));
    // sized for every id up front: never rehashed, so the ids of batches already checked (and
    // released) are read again only to compare a colliding id
    let mut seen: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(tasks.capacity());
    let mut max_boxes = 0;
    for (b, batch) in columns.batches.iter().enumerate() {
        for i in 0..batch.laterality.len() {
            let row = columns.starts[b] + i + 1;
            let at = |e: FieldError| source.issue(Some(row), e.field.as_deref(), e.reason);
            let task = check_row(batch, i).map_err(at)?;
            let id = batch.strings[Column::Id as usize].value(i);
            if let Some(first) = seen.insert(id, row) {
                return Err(duplicate_id(source, row, id, first));
            }
            let image = Path::new(batch.strings[Column::Image as usize].value(i));
            resolve(image, opts)
                .map_err(|reason| source.issue(Some(row), Some("image"), reason))?;
            max_boxes = max_boxes.max(range(&batch.boxes, i).len());
            tasks.push(task);
        }
        checked(b);
    }
    Ok((tasks, max_boxes))
}

/// One row's fields by the shared rules; its task.
fn check_row(b: &Batch, i: usize) -> std::result::Result<Task, FieldError> {
    // (a null in a required column never gets here: Arrow refuses the batch, as its schema
    // declares those columns non-nullable)
    for (name, c) in STRINGS.iter().take(REQUIRED.len()) {
        check_required(name, b.strings[*c as usize].value(i))?;
    }
    let task = parse_task(b.strings[Column::Task as usize].value(i))?;
    check_text(task, b.strings[Column::Text as usize].value(i))?;
    let has = |c: Column| b.strings[c as usize].is_valid(i);
    check_rationale(has(Column::Answer), has(Column::Rationale))?;
    let hard_id = b.hard_ids.as_ref().and_then(|h| opt_str(h, i));
    check_hard_id(b.strings[Column::Id as usize].value(i), hard_id)?;
    for j in range(&b.labels, i) {
        let name = b.label_names.value(j);
        check_label_name(name)?;
        if b.label_values.is_valid(j) {
            let v = b.label_values.value(j);
            label_value(name, v as f64, v)?;
        }
    }
    for (k, j) in range(&b.boxes, i).enumerate() {
        check_rect(k, &[0, 1, 2, 3].map(|c| b.coords[c].value(j)))?;
        check_anatomy(k, opt_str(&b.anatomy, j))?;
    }
    Ok(task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::{jsonl_rows, read_records};

    fn opts() -> ManifestOptions {
        ManifestOptions {
            root: "/data".into(),
            allow_outside_root: false,
        }
    }

    fn records() -> Vec<Record> {
        let lines = [
            r#"{"id": "a", "image": "x/1.jpg", "source": "s1", "task": "phrase_grounding",
                "split": "train", "text": "Left effusion.",
                "labels": {"custom": 0, "Pleural Effusion": 1, "Edema": null},
                "boxes": [{"box": [1, 2, 30, 40], "phrase": "effusion", "anatomy": "left lung"},
                          {"box": [5.5, 6, 7, 8.25], "phrase": "", "anatomy": null}],
                "laterality_sensitive": false}"#,
            r#"{"id": "b", "image": "2.png", "source": "s2", "task": "report", "split": "val",
                "text": "No acute findings.", "prompt": "Describe."}"#,
            r#"{"id": "c", "image": "3.png", "source": "s2", "task": "vqa", "split": "train",
                "text": "yes", "answer": "yes", "rationale": "An opacity.", "hard_id": "a"}"#,
        ];
        let text: String = lines.iter().map(|l| l.replace('\n', " ") + "\n").collect();
        let source = Source {
            name: Some("m.jsonl"),
            row_kind: "line",
        };
        read_records(jsonl_rows(&text), source).unwrap()
    }

    #[test]
    fn packed_records_are_the_records_in_any_batch_size() {
        let dir = std::env::temp_dir().join(format!("gradatim-packed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let recs = records();
        for rows in [1, 2, 65_536] {
            let path = dir.join(format!("m{rows}.arrow"));
            write_batches(&recs, &path, rows).unwrap();
            let m = open(path.to_str().unwrap(), &opts()).unwrap();
            assert_eq!(m.len(), 3);
            assert_eq!(m.max_boxes(), 2);
            for (i, want) in recs.iter().enumerate() {
                let got = m.record(i).unwrap().into_owned();
                let mut want = want.clone();
                want.image = Path::new("/data").join(&want.image);
                want.line = i + 1;
                assert_eq!(got, want, "record {i} with {rows} rows per batch");
                assert_eq!(m.id(i), want.id);
                assert_eq!(m.task(i), want.task);
                assert_eq!(m.image(i), want.image);
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// This process's resident kB of its maps of `path` (`/proc/self/smaps`).
    #[cfg(target_os = "linux")]
    fn resident_kb(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_str().unwrap();
        let mut ours = false;
        let mut kb = 0;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if first.contains('-') && !first.ends_with(':') {
                ours = line.ends_with(name); // a mapping's header line: address range ... path
            } else if ours && first == "Rss:" {
                kb += line
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        kb
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_whole_file_check_leaves_no_page_resident() {
        let dir = std::env::temp_dir().join(format!("gradatim-packed-rss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let base = records();
        let recs: Vec<Record> = (0..60_000)
            .map(|i| {
                let mut r = base[i % 3].clone();
                r.id = format!("r{i}");
                r.hard_id = None;
                r.text = format!("{} {}", r.text, "x".repeat(300));
                r
            })
            .collect();
        let path = dir.join("big.arrow");
        write_batches(&recs, &path, 6_000).unwrap(); // ten record batches
        let size_kb = std::fs::metadata(&path).unwrap().len() / 1024;
        assert!(size_kb > 16_000, "{size_kb} kB");
        // while the records are checked, at most about one batch's pages are mapped (here: the
        // most seen just before a batch is released, over all of them)
        let map = Arc::new(unsafe { memmap2::Mmap::map(&File::open(&path).unwrap()) }.unwrap());
        let buffer = Buffer::from(bytes::Bytes::from_owner(SharedMap(map.clone())));
        let (peak, releases) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
        let checked = from_buffer(buffer, "big.arrow", &opts(), &|bytes| {
            peak.set(peak.get().max(resident_kb(&path)));
            releases.set(releases.get() + 1);
            release_pages(&map, bytes);
        })
        .unwrap();
        assert_eq!((checked.len(), releases.get()), (60_000, 20)); // read, then checked: per batch
        assert!(peak.get() < size_kb / 4, "{} of {size_kb} kB", peak.get());
        drop((checked, map));
        let m = open(path.to_str().unwrap(), &opts()).unwrap();
        // every record was checked (the whole file read) ...
        assert_eq!(m.len(), 60_000);
        // ... and none of its pages stay mapped in this process after the check
        assert_eq!(resident_kb(&path), 0);
        // a record read afterwards faults in its own pages only, and reads the checked bytes
        let got = m.record(12_345).unwrap().into_owned();
        assert_eq!(
            (got.id.as_str(), got.text.as_str()),
            ("r12345", recs[12_345].text.as_str())
        );
        let after = resident_kb(&path);
        assert!(after > 0 && after < size_kb / 2, "{after} of {size_kb} kB");
        drop(m);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn version_1_files_without_hard_id_are_read_with_it_null() {
        let dir = std::env::temp_dir().join(format!("gradatim-packed-v1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let recs = records();
        let v2 = batch_of(&recs, &Arc::new(schema())).unwrap();
        let v1_schema = Arc::new(schema_v1());
        let v1 = RecordBatch::try_new(v1_schema.clone(), v2.columns()[..12].to_vec()).unwrap();
        let path = dir.join("v1.arrow");
        let mut w = FileWriter::try_new(File::create(&path).unwrap(), &v1_schema).unwrap();
        w.write(&v1).unwrap();
        w.finish().unwrap();
        let m = open(path.to_str().unwrap(), &opts()).unwrap();
        for (i, want) in recs.iter().enumerate() {
            let got = m.record(i).unwrap().into_owned();
            assert_eq!(
                (got.id.as_str(), got.hard_id.as_deref()),
                (want.id.as_str(), None)
            );
            assert_eq!(got.answer, want.answer);
        }
        assert_eq!(recs[2].hard_id.as_deref(), Some("a"));
        assert_eq!(m.first_phrase(0), Some("effusion"));
        assert_eq!(m.first_phrase(1), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bytes_that_are_not_a_packed_manifest_are_refused_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("gradatim-packed-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.arrow");
        write(&records(), &path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let mut cases: Vec<Vec<u8>> = (0..good.len())
            .step_by(7)
            .map(|n| good[..n].to_vec())
            .collect();
        cases.push(b"{\"id\": \"a\"}\n".to_vec());
        for (k, bytes) in cases.into_iter().enumerate() {
            match from_bytes(bytes, "m.arrow", &opts()) {
                Err(Error::Manifest(issue)) => {
                    assert_eq!(issue.manifest.as_deref(), Some("m.arrow"));
                    assert!(
                        issue.reason.contains("not a packed gradatim manifest"),
                        "{k}: {}",
                        issue.reason
                    );
                }
                other => panic!("case {k}: expected a manifest error, got {other:?}"),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
