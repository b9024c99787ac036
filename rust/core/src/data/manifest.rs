//! The manifest: one record per image-text sample (docs/manifest.md), read from JSON lines.
//!
//! Every record is validated as it is read; an error names the manifest, the line (1-based) and the
//! field, e.g. `train.jsonl line 12, field 'boxes[0].box': x2 (10) must be greater than x1 (30)`.
//! Parquet manifests are read by pyarrow on the Python side and handed over as JSON lines, so both
//! formats go through this one validator (Parquet "lines" are rows, 1-based).

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

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
    /// Resolved path of the image file.
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
    /// CheXpert-style labels: name -> 1 / 0 / -1 / None, in the manifest's order.
    pub labels: Vec<(String, Option<i8>)>,
    pub boxes: Vec<BoxAnnotation>,
    pub laterality_sensitive: bool,
    /// 1-based line (JSONL) or row (Parquet) in the manifest, for error messages.
    pub line: usize,
}

/// A parsed manifest.
#[derive(Clone, Debug)]
pub struct Manifest {
    /// Display name (path) used in error messages.
    pub name: String,
    pub root: PathBuf,
    pub records: Vec<Record>,
}

/// How paths are resolved.
#[derive(Clone, Debug)]
pub struct ManifestOptions {
    /// Relative image paths are joined to this folder.
    pub root: PathBuf,
    /// Allow absolute paths and relative paths that climb out of `root` (`..`).
    pub allow_outside_root: bool,
}

impl Manifest {
    /// Parse JSON lines (blank lines are skipped). `name` is how errors refer to the manifest.
    pub fn from_jsonl(text: &str, name: &str, opts: &ManifestOptions) -> Result<Manifest> {
        let mut records = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let at = Where {
                manifest: name,
                line: line_no,
            };
            let value: Value =
                serde_json::from_str(line).map_err(|e| at.err("", format!("invalid JSON: {e}")))?;
            let record = parse_record(&value, &at, opts)?;
            if let Some(first) = seen.insert(record.id.clone(), line_no) {
                return Err(at.err(
                    "id",
                    format!("duplicate id {:?} (first on line {first})", record.id),
                ));
            }
            records.push(record);
        }
        if records.is_empty() {
            return Err(Error::invalid(format!(
                "{name}: the manifest holds no records"
            )));
        }
        Ok(Manifest {
            name: name.to_string(),
            root: opts.root.clone(),
            records,
        })
    }
}

struct Where<'a> {
    manifest: &'a str,
    line: usize,
}

impl Where<'_> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> Error {
        if field.is_empty() {
            Error::invalid(format!("{} line {}: {msg}", self.manifest, self.line))
        } else {
            Error::invalid(format!(
                "{} line {}, field '{field}': {msg}",
                self.manifest, self.line
            ))
        }
    }
}

/// Every field a record may carry (the manifest schema, docs/manifest.md); anything else is an
/// error, so a misspelt field (`"lables"`) cannot train silently.
pub const FIELDS: [&str; 12] = [
    "id",
    "image",
    "source",
    "task",
    "split",
    "text",
    "prompt",
    "answer",
    "rationale",
    "labels",
    "boxes",
    "laterality_sensitive",
];

fn parse_record(value: &Value, at: &Where<'_>, opts: &ManifestOptions) -> Result<Record> {
    let obj = value
        .as_object()
        .ok_or_else(|| at.err("", "a record must be a JSON object"))?;
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(at.err(
            unknown,
            format!(
                "unknown field (the manifest's fields are {})",
                FIELDS.join(", ")
            ),
        ));
    }
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(at.err("id", "must be a non-empty string")),
        None => return Err(at.err("id", "is missing")),
    };
    let image = required_str(obj, "image", at)?;
    let task_name = required_str(obj, "task", at)?;
    let task = Task::parse(&task_name).ok_or_else(|| {
        let names: Vec<_> = Task::ALL.iter().map(|t| t.name()).collect();
        at.err(
            "task",
            format!("{task_name:?} is not one of {}", names.join(", ")),
        )
    })?;
    let answer = optional_str(obj, "answer", at)?;
    let rationale = optional_str(obj, "rationale", at)?;
    if rationale.is_some() && answer.is_none() {
        return Err(at.err("rationale", "a rationale needs an answer"));
    }
    Ok(Record {
        image: resolve(&image, opts).map_err(|m| at.err("image", m))?,
        source: optional_str(obj, "source", at)?.unwrap_or_else(|| "default".into()),
        split: optional_str(obj, "split", at)?.unwrap_or_else(|| "train".into()),
        text: optional_str(obj, "text", at)?.unwrap_or_default(),
        prompt: optional_str(obj, "prompt", at)?,
        answer,
        rationale,
        labels: parse_labels(obj.get("labels"), at)?,
        boxes: parse_boxes(obj.get("boxes"), at)?,
        laterality_sensitive: match obj.get("laterality_sensitive") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(at.err("laterality_sensitive", "must be true or false")),
        },
        id,
        task,
        line: at.line,
    })
}

fn required_str(obj: &Map<String, Value>, field: &str, at: &Where<'_>) -> Result<String> {
    optional_str(obj, field, at)?
        .filter(|s| !s.is_empty())
        .ok_or_else(|| at.err(field, "is missing or empty"))
}

fn optional_str(obj: &Map<String, Value>, field: &str, at: &Where<'_>) -> Result<Option<String>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(at.err(field, format!("must be a string, got {other}"))),
    }
}

fn parse_labels(v: Option<&Value>, at: &Where<'_>) -> Result<Vec<(String, Option<i8>)>> {
    let obj = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(at.err("labels", "must be an object of label -> 1 / 0 / -1 / null")),
    };
    obj.iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Null => None,
                Value::Number(n) => match n.as_f64() {
                    Some(x) if x == 1.0 || x == 0.0 || x == -1.0 => Some(x as i8),
                    Some(x) if x.is_nan() => None,
                    _ => {
                        return Err(at.err(
                            &format!("labels.{k}"),
                            format!("must be 1, 0, -1 or null, got {n}"),
                        ))
                    }
                },
                other => {
                    return Err(at.err(
                        &format!("labels.{k}"),
                        format!("must be 1, 0, -1 or null, got {other}"),
                    ))
                }
            };
            Ok((k.clone(), value))
        })
        .collect()
}

fn parse_boxes(v: Option<&Value>, at: &Where<'_>) -> Result<Vec<BoxAnnotation>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(at.err(
                "boxes",
                "must be a list of {\"box\": [x1, y1, x2, y2], \"phrase\": ...}",
            ))
        }
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |f: &str| format!("boxes[{i}].{f}");
            let obj = item
                .as_object()
                .ok_or_else(|| at.err(&format!("boxes[{i}]"), "must be an object"))?;
            let coords = obj
                .get("box")
                .and_then(Value::as_array)
                .filter(|a| a.len() == 4)
                .ok_or_else(|| {
                    at.err(
                        &field("box"),
                        "must be a list of 4 numbers [x1, y1, x2, y2]",
                    )
                })?;
            let mut rect = [0.0; 4];
            for (r, c) in rect.iter_mut().zip(coords) {
                *r = c.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                    at.err(
                        &field("box"),
                        format!("coordinates must be finite numbers, got {c}"),
                    )
                })?;
            }
            if rect[2] <= rect[0] || rect[3] <= rect[1] {
                return Err(at.err(
                    &field("box"),
                    format!("needs x2 > x1 and y2 > y1, got {:?}", rect),
                ));
            }
            let phrase = match obj.get("phrase") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(at.err(&field("phrase"), "must be a string")),
            };
            let anatomy = match obj.get("anatomy") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(at.err(&field("anatomy"), "must be a string or null")),
            };
            Ok(BoxAnnotation {
                rect,
                phrase,
                anatomy,
            })
        })
        .collect()
}

/// Resolve an image path under the root. Absolute paths and `..` that climb out of the root are
/// refused unless allowed: a manifest must not be able to read arbitrary files by default.
fn resolve(image: &str, opts: &ManifestOptions) -> std::result::Result<PathBuf, String> {
    let p = Path::new(image);
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

    fn opts() -> ManifestOptions {
        ManifestOptions {
            root: PathBuf::from("/data"),
            allow_outside_root: false,
        }
    }

    #[test]
    fn parses_a_full_record() {
        let line = r#"{"id": "a", "image": "x/1.jpg", "source": "mimic-cxr", "task": "phrase_grounding", "split": "train",
            "text": "Left effusion.", "labels": {"Pleural Effusion": 1, "Edema": null, "Atelectasis": -1.0},
            "boxes": [{"box": [1, 2, 30, 40], "phrase": "effusion", "anatomy": "left costophrenic angle"}],
            "laterality_sensitive": false}"#;
        let m = Manifest::from_jsonl(&line.replace('\n', " "), "m.jsonl", &opts()).unwrap();
        let r = &m.records[0];
        assert_eq!(r.image, PathBuf::from("/data/x/1.jpg"));
        assert_eq!(r.task, Task::PhraseGrounding);
        assert_eq!(r.labels[1], ("Edema".to_string(), None));
        assert_eq!(r.labels[2].1, Some(-1));
        assert_eq!(r.boxes[0].rect, [1.0, 2.0, 30.0, 40.0]);
        assert!(!r.laterality_sensitive);
    }

    #[test]
    fn errors_name_manifest_line_and_field() {
        let text = "{\"id\": \"a\", \"image\": \"1.jpg\", \"task\": \"report\"}\n\n{\"id\": \"b\", \"image\": \"2.jpg\", \"task\": \"report\", \"boxes\": [{\"box\": [30, 0, 10, 5]}]}";
        let e = Manifest::from_jsonl(text, "m.jsonl", &opts())
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("m.jsonl line 3, field 'boxes[0].box'"), "{e}");
        let e = Manifest::from_jsonl(
            "{\"id\": \"a\", \"image\": \"1.jpg\", \"task\": \"captioning\"}",
            "m",
            &opts(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("field 'task'") && e.contains("captioning"),
            "{e}"
        );
        let dup = "{\"id\": \"a\", \"image\": \"1.jpg\", \"task\": \"report\"}\n{\"id\": \"a\", \"image\": \"2.jpg\", \"task\": \"report\"}";
        let e = Manifest::from_jsonl(dup, "m", &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("first on line 1"), "{e}");
        let e = Manifest::from_jsonl("{not json", "m", &opts())
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("invalid JSON"), "{e}");
    }

    #[test]
    fn paths_stay_under_the_root_unless_allowed() {
        let rec =
            |img: &str| format!("{{\"id\": \"a\", \"image\": \"{img}\", \"task\": \"report\"}}");
        assert!(Manifest::from_jsonl(&rec("/etc/passwd"), "m", &opts()).is_err());
        assert!(Manifest::from_jsonl(&rec("../../x.jpg"), "m", &opts()).is_err());
        assert!(Manifest::from_jsonl(&rec("a/../b.jpg"), "m", &opts()).is_ok());
        let open = ManifestOptions {
            allow_outside_root: true,
            ..opts()
        };
        assert!(Manifest::from_jsonl(&rec("/abs/x.jpg"), "m", &open).is_ok());
    }
}
