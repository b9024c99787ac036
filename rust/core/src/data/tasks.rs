//! Task prompts and targets (CURE's templates, docs/loader.md "Box-aware text supervision").
//!
//! Targets are rendered from the boxes *after* augmentation: a box the augmentation dropped is
//! absent from its sentence. Templates are data (`Templates`, overridable from JSON); placeholders
//! are `{phrase}`, `{anatomy}`, `{boxes}` and `{text}`.
//!
//! Choices where the design is silent (documented in docs/loader.md):
//! - phrase grounding picks one of the record's phrases per (seed, epoch, sample) - every phrase
//!   is seen over epochs; a record without boxes grounds its `text` with an empty box list;
//! - a grounded report attaches each box group to the report sentence that contains its phrase
//!   (case-insensitive); phrases found in no sentence are appended as their own sentences;
//! - anatomy-grounded samples pick a region and one of locate / describe / both per sample; the
//!   region's description is the phrases of its boxes, or `no_finding` when there are none;
//! - an explicit `prompt` in the record replaces the template prompt (VQA questions live there).

use serde::{Deserialize, Serialize};

use super::box_format::{render_boxes, render_grounded, BoxFormat};
use super::manifest::{Record, Task};
use crate::rng;

/// The prompt/target templates. Every field can be overridden from JSON.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Templates {
    pub report_prompt: String,
    pub phrase_prompt: String,
    pub phrase_target: String,
    pub grounded_report_prompt: String,
    pub locate_prompt: String,
    pub locate_target: String,
    pub describe_prompt: String,
    pub describe_target: String,
    pub locate_describe_prompt: String,
    pub locate_describe_target: String,
    pub vqa_prompt: String,
    pub no_finding: String,
    /// Easy / Medium stages of a sample with an answer and a rationale (MedCLM's released
    /// `collate_fn`, ksyint/PROGRESSIVE commit a7cca74): `{rationale}` and `{answer}`.
    pub cot_target: String,
    /// The Hard stage (answer only), or a sample without a rationale.
    pub answer_target: String,
    /// Grounded reports: `"cure"` (each sentence without its final punctuation, then its boxes,
    /// sentences joined by `grounded_join`, then `grounded_end`: CURE's code) or `"gradatim"`
    /// (sentences as written, boxes after them, joined by a space).
    pub grounded_style: String,
    pub grounded_join: String,
    pub grounded_end: String,
}

impl Default for Templates {
    fn default() -> Self {
        Templates {
            report_prompt: "Generate a report.".into(),
            phrase_prompt: "Ground the phrase: {phrase}".into(),
            phrase_target: "{phrase}: {boxes}".into(),
            grounded_report_prompt: "Generate a grounded report.".into(),
            locate_prompt: "Locate the {anatomy}.".into(),
            locate_target: "Location of the {anatomy}: {boxes}".into(),
            describe_prompt: "Describe the {anatomy}.".into(),
            describe_target: "Description of the {anatomy}: {text}".into(),
            locate_describe_prompt: "Locate and describe the {anatomy}.".into(),
            locate_describe_target: "Location of the {anatomy}: {boxes}. Description: {text}"
                .into(),
            vqa_prompt: "{text}".into(),
            no_finding: "No acute findings.".into(),
            cot_target: "Reasoning: {rationale}\n\nAnswer: {answer}".into(),
            answer_target: "Answer: {answer}".into(),
            grounded_style: "cure".into(),
            grounded_join: ". ".into(),
            grounded_end: ".".into(),
        }
    }
}

impl Templates {
    /// A named preset: `"cure"` (the default: CURE's public code, PabloMessina/CURE
    /// `vlm_research_kit/data/datasets/*.py`) or `"gradatim"` (gradatim's earlier wording:
    /// `Location of the X: [b] Description of the X: ...`, grounded sentences as written).
    pub fn preset(name: &str) -> crate::error::Result<Templates> {
        match name {
            "cure" => Ok(Templates::default()),
            "gradatim" => Ok(Templates {
                locate_describe_target:
                    "Location of the {anatomy}: {boxes} Description of the {anatomy}: {text}".into(),
                grounded_style: "gradatim".into(),
                grounded_join: " ".into(),
                grounded_end: String::new(),
                ..Templates::default()
            }),
            o => Err(crate::error::Error::invalid(format!(
                "templates: preset must be 'cure' or 'gradatim', not {o:?}"
            ))),
        }
    }

    /// A preset (key `"preset"`, default `"cure"`) overridden by the other keys of a JSON
    /// object; unknown keys are an error.
    pub fn from_json(text: &str) -> crate::error::Result<Templates> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| crate::error::Error::invalid(format!("templates: {e}")))?;
        Templates::from_value(value)
    }

    /// [`Templates::from_json`] of an already parsed JSON value (a Python dict crosses as one).
    pub fn from_value(value: serde_json::Value) -> crate::error::Result<Templates> {
        let err = |e: serde_json::Error| crate::error::Error::invalid(format!("templates: {e}"));
        let mut obj = match value {
            serde_json::Value::Object(obj) => obj,
            other => {
                return Err(crate::error::Error::invalid(format!(
                    "templates: expected an object of template overrides, got {other}"
                )))
            }
        };
        let base = match obj.remove("preset") {
            None => Templates::default(),
            Some(serde_json::Value::String(name)) => Templates::preset(&name)?,
            Some(other) => {
                return Err(crate::error::Error::invalid(format!(
                    "templates: preset must be a string, got {other}"
                )))
            }
        };
        let mut merged = serde_json::to_value(&base).map_err(err)?;
        if let serde_json::Value::Object(m) = &mut merged {
            for (k, v) in obj {
                if !m.contains_key(&k) {
                    return Err(crate::error::Error::invalid(format!(
                        "templates: unknown field `{k}`"
                    )));
                }
                m.insert(k, v);
            }
        }
        let t: Templates = serde_json::from_value(merged).map_err(err)?;
        if !matches!(t.grounded_style.as_str(), "cure" | "gradatim") {
            return Err(crate::error::Error::invalid(format!(
                "templates: grounded_style must be 'cure' or 'gradatim', not {:?}",
                t.grounded_style
            )));
        }
        Ok(t)
    }
}

/// A part of a target with a role (`"rationale"`, `"answer"`, or `"target"` for a target
/// without parts), as character offsets `[start, end)` (Unicode scalar values, as Python
/// indexes strings): what the training loop turns into per-token loss weights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub role: &'static str,
    pub start: usize,
    pub end: usize,
}

/// The whole target as one part.
pub fn whole(target: &str) -> Vec<Part> {
    vec![Part {
        role: "target",
        start: 0,
        end: target.chars().count(),
    }]
}

/// The target of a sample with an answer: reasoning and answer for the Easy and Medium stages
/// (and without a stage), the answer alone for the Hard stage or without a rationale; with the
/// character span of each part.
pub fn answer_target(
    t: &Templates,
    answer: &str,
    rationale: Option<&str>,
    hard: bool,
) -> (String, Vec<Part>) {
    let template = match rationale {
        Some(_) if !hard => &t.cot_target,
        _ => &t.answer_target,
    };
    let mut out = String::new();
    let mut parts = Vec::new();
    let mut rest = template.as_str();
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').map(|c| open + c);
        let field = close.map(|c| &rest[open + 1..c]);
        let value = match field {
            Some("answer") => Some(("answer", answer)),
            Some("rationale") => rationale.map(|r| ("rationale", r)),
            _ => None,
        };
        match (value, close) {
            (Some((role, v)), Some(c)) => {
                out.push_str(&rest[..open]);
                let start = out.chars().count();
                out.push_str(v);
                parts.push(Part {
                    role,
                    start,
                    end: start + v.chars().count(),
                });
                rest = &rest[c + 1..];
            }
            _ => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    (out, parts)
}

/// Prompt and target of one sample, with what evaluation needs to know about them.
#[derive(Clone, Debug, PartialEq)]
pub struct Rendered {
    pub prompt: String,
    pub target: String,
    /// The boxes the target text renders (normalised, after augmentation; none when the target
    /// carries no boxes, e.g. a "describe" prompt).
    pub target_boxes: Vec<[f64; 4]>,
    /// The choice the prompt asks about: the phrase (phrase grounding) or the region (anatomy).
    pub category: Option<String>,
    /// Which anatomy prompt was drawn: "locate", "describe" or "locate_describe".
    pub prompt_kind: Option<&'static str>,
}

/// Substitute the template's own `{phrase}`, `{anatomy}`, `{boxes}` and `{text}` fields in one
/// pass over the template: a value is never scanned again, so a phrase that contains `{boxes}`
/// stays literal text (no template injection from manifest data).
fn fill(template: &str, phrase: &str, anatomy: &str, boxes: &str, text: &str) -> String {
    let mut out = String::with_capacity(template.len() + text.len() + boxes.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let value = rest[open..].find('}').and_then(|c| {
            let v = match &rest[open + 1..open + c] {
                "phrase" => phrase,
                "anatomy" => anatomy,
                "boxes" => boxes,
                "text" => text,
                _ => return None,
            };
            Some((v, open + c + 1))
        });
        match value {
            Some((v, after)) => {
                out.push_str(&rest[..open]);
                out.push_str(v);
                rest = &rest[after..];
            }
            None => {
                out.push_str(&rest[..=open]);
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out.truncate(out.trim_end().len());
    out
}

/// Distinct values in first-appearance order.
fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for s in items {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

/// Render the prompt and target of `record`. `boxes[i]` is the i-th annotation's normalised box
/// after augmentation, or `None` if the augmentation dropped it. `key` seeds this sample's choices.
pub fn render(
    record: &Record,
    boxes: &[Option<[f64; 4]>],
    format: BoxFormat,
    t: &Templates,
    key: u64,
) -> Rendered {
    let kept = |pred: &dyn Fn(usize) -> bool| -> Vec<[f64; 4]> {
        (0..record.boxes.len())
            .filter(|&i| pred(i))
            .filter_map(|i| boxes.get(i).copied().flatten())
            .collect()
    };
    let custom = record.prompt.clone();
    let mut target_boxes = Vec::new();
    let mut category = None;
    let mut prompt_kind = None;
    let (prompt, target) = match record.task {
        Task::Report => (t.report_prompt.clone(), record.text.clone()),
        Task::Vqa => (
            fill(&t.vqa_prompt, "", "", "", &record.text),
            record.text.clone(),
        ),
        Task::PhraseGrounding => {
            let phrases = distinct(record.boxes.iter().map(|b| b.phrase.as_str()));
            let phrase = if phrases.is_empty() {
                record.text.as_str()
            } else {
                phrases[rng::bounded(rng::at(key, 0), phrases.len() as u64) as usize]
            };
            let chosen = kept(&|i| record.boxes[i].phrase == phrase);
            let bx = render_boxes(format, &chosen);
            if t.phrase_target.contains("{boxes}") {
                target_boxes = chosen;
            }
            category = Some(phrase.to_string());
            (
                fill(&t.phrase_prompt, phrase, "", "", ""),
                fill(&t.phrase_target, phrase, "", &bx, ""),
            )
        }
        Task::GroundedReport => {
            target_boxes = kept(&|i| !record.boxes[i].phrase.is_empty());
            (
                t.grounded_report_prompt.clone(),
                grounded_report(record, &kept, format, t),
            )
        }
        Task::AnatomyGroundedReport => {
            let regions = distinct(record.boxes.iter().filter_map(|b| b.anatomy.as_deref()));
            if regions.is_empty() {
                (t.report_prompt.clone(), record.text.clone())
            } else {
                let region = regions[rng::bounded(rng::at(key, 0), regions.len() as u64) as usize];
                let in_region = |i: usize| record.boxes[i].anatomy.as_deref() == Some(region);
                let chosen = kept(&in_region);
                let bx = render_boxes(format, &chosen);
                let phrases = distinct(
                    (0..record.boxes.len())
                        .filter(|&i| in_region(i))
                        .map(|i| record.boxes[i].phrase.as_str()),
                );
                let described = phrases
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                let text = if described.is_empty() {
                    t.no_finding.as_str()
                } else {
                    described.as_str()
                };
                let (kind, p, tg) = match rng::bounded(rng::at(key, 1), 3) {
                    0 => ("locate", &t.locate_prompt, &t.locate_target),
                    1 => ("describe", &t.describe_prompt, &t.describe_target),
                    _ => (
                        "locate_describe",
                        &t.locate_describe_prompt,
                        &t.locate_describe_target,
                    ),
                };
                if tg.contains("{boxes}") {
                    target_boxes = chosen;
                }
                category = Some(region.to_string());
                prompt_kind = Some(kind);
                (fill(p, "", region, "", ""), fill(tg, "", region, &bx, text))
            }
        }
    };
    Rendered {
        prompt: custom.unwrap_or(prompt),
        target,
        target_boxes,
        category,
        prompt_kind,
    }
}

/// Boxes kept by the augmentation among the annotations selected by a predicate.
type KeptBoxes<'a> = dyn Fn(&dyn Fn(usize) -> bool) -> Vec<[f64; 4]> + 'a;

fn grounded_report(
    record: &Record,
    kept: &KeptBoxes<'_>,
    format: BoxFormat,
    t: &Templates,
) -> String {
    let phrases = distinct(
        record
            .boxes
            .iter()
            .map(|b| b.phrase.as_str())
            .filter(|p| !p.is_empty()),
    );
    let sentences = split_sentences(&record.text);
    let lower: Vec<String> = sentences.iter().map(|s| s.to_lowercase()).collect();
    let mut attached: Vec<Vec<[f64; 4]>> = vec![Vec::new(); sentences.len()];
    let mut extra = Vec::new();
    for phrase in phrases {
        let bx = kept(&|i| record.boxes[i].phrase == phrase);
        match lower
            .iter()
            .position(|s| s.contains(&phrase.to_lowercase()))
        {
            Some(k) => attached[k].extend(bx),
            None => extra.push(render_grounded(format, phrase, &bx)),
        }
    }
    if t.grounded_style == "gradatim" {
        return sentences
            .iter()
            .zip(&attached)
            .map(|(s, bx)| render_grounded(format, s, bx))
            .chain(extra)
            .collect::<Vec<_>>()
            .join(" ");
    }
    // CURE: each sentence without its final punctuation, its boxes, then `. ` between sentences
    // (boxes tied to sentences; unmatched phrases become their own sentences)
    let mut out = sentences
        .iter()
        .zip(&attached)
        .map(|(s, bx)| render_grounded(format, s.trim_end_matches(['.', '!', '?']), bx))
        .chain(extra)
        .collect::<Vec<_>>()
        .join(&t.grounded_join);
    if !out.is_empty() {
        out.push_str(&t.grounded_end);
    }
    out
}

/// Split on '.', '!' or '?' followed by whitespace or the end; the punctuation stays.
fn split_sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    for (i, &c) in bytes.iter().enumerate() {
        if matches!(c, b'.' | b'!' | b'?')
            && bytes.get(i + 1).is_none_or(|n| n.is_ascii_whitespace())
        {
            let s = text[start..=i].trim();
            if !s.is_empty() {
                out.push(s);
            }
            start = i + 1;
        }
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::manifest::BoxAnnotation;
    use std::path::PathBuf;

    fn record(task: Task, text: &str, boxes: &[(&str, Option<&str>)]) -> Record {
        Record {
            id: "a".into(),
            image: PathBuf::from("a.jpg"),
            source: "s".into(),
            task,
            split: "train".into(),
            text: text.into(),
            prompt: None,
            answer: None,
            rationale: None,
            hard_id: None,
            labels: vec![],
            boxes: boxes
                .iter()
                .map(|(p, a)| BoxAnnotation {
                    rect: [0.0, 0.0, 1.0, 1.0],
                    phrase: p.to_string(),
                    anatomy: a.map(String::from),
                })
                .collect(),
            laterality_sensitive: true,
            line: 1,
        }
    }

    const A: [f64; 4] = [0.1, 0.2, 0.3, 0.4];
    const B: [f64; 4] = [0.5, 0.5, 0.7, 0.9];

    #[test]
    fn phrase_grounding_drops_lost_boxes() {
        let r = record(
            Task::PhraseGrounding,
            "",
            &[("nodule", None), ("nodule", None)],
        );
        let t = Templates::default();
        let out = render(&r, &[Some(A), None], BoxFormat::Cure, &t, 7);
        assert_eq!(out.prompt, "Ground the phrase: nodule");
        assert_eq!(out.target, "nodule: [0.20,0.30,0.20,0.20]");
        let none = render(&r, &[None, None], BoxFormat::Cure, &t, 7);
        assert_eq!(none.target, "nodule:");
    }

    #[test]
    fn grounded_report_attaches_boxes_to_sentences() {
        let r = record(
            Task::GroundedReport,
            "Small left effusion. Heart size normal. No pneumothorax.",
            &[("left effusion", None), ("opacity", None)],
        );
        let out = render(
            &r,
            &[Some(A), Some(B)],
            BoxFormat::Cure,
            &Templates::default(),
            0,
        );
        assert_eq!(out.prompt, "Generate a grounded report.");
        // CURE's code: sentence, its boxes, ". " between sentences, a final "."
        assert_eq!(
            out.target,
            "Small left effusion [0.20,0.30,0.20,0.20]. Heart size normal. No pneumothorax. opacity [0.60,0.70,0.20,0.40]."
        );
        let old = render(
            &r,
            &[Some(A), Some(B)],
            BoxFormat::Cure,
            &Templates::preset("gradatim").unwrap(),
            0,
        );
        assert_eq!(
            old.target,
            "Small left effusion. [0.20,0.30,0.20,0.20] Heart size normal. No pneumothorax. opacity [0.60,0.70,0.20,0.40]"
        );
        let padchest = Templates::from_json(r#"{"grounded_end": ""}"#).unwrap();
        let pc = render(&r, &[Some(A), Some(B)], BoxFormat::Cure, &padchest, 0);
        assert!(pc.target.ends_with("[0.60,0.70,0.20,0.40]")); // PadChest-GR: no final period
        assert!(Templates::from_json(r#"{"preset": "other"}"#).is_err());
        assert!(Templates::from_json(r#"{"preset": "gradatim", "nope": 1}"#).is_err());
    }

    #[test]
    fn manifest_text_is_never_read_as_a_template() {
        let t = Templates::default();
        let r = record(
            Task::PhraseGrounding,
            "",
            &[("nodule {boxes} {text} {anatomy}", None)],
        );
        let out = render(&r, &[Some(A)], BoxFormat::Cure, &t, 0);
        assert_eq!(
            out.prompt,
            "Ground the phrase: nodule {boxes} {text} {anatomy}"
        );
        assert_eq!(
            out.target,
            "nodule {boxes} {text} {anatomy}: [0.20,0.30,0.20,0.20]"
        );
        assert_eq!(fill("{a} {phrase}{", "x", "", "", ""), "{a} x{");
    }

    #[test]
    fn target_boxes_and_category_follow_the_choice() {
        let t = Templates::default();
        // phrase grounding: only the chosen phrase's surviving boxes, the phrase as category
        let r = record(
            Task::PhraseGrounding,
            "",
            &[("nodule", None), ("effusion", None), ("nodule", None)],
        );
        let mut seen = std::collections::BTreeSet::new();
        for key in 0..32 {
            let out = render(&r, &[Some(A), Some(B), None], BoxFormat::Cure, &t, key);
            let phrase = out.category.clone().unwrap();
            let want: Vec<[f64; 4]> = if phrase == "nodule" { vec![A] } else { vec![B] };
            assert_eq!(out.target_boxes, want);
            assert!(out.prompt.ends_with(&phrase));
            assert_eq!(out.prompt_kind, None);
            seen.insert(phrase);
        }
        assert_eq!(seen.len(), 2);
        // grounded report: every surviving box with a phrase
        let g = record(
            Task::GroundedReport,
            "Left effusion.",
            &[("left effusion", None), ("", None), ("opacity", None)],
        );
        let out = render(&g, &[Some(A), Some(B), Some(B)], BoxFormat::Cure, &t, 0);
        assert_eq!(out.target_boxes, vec![A, B]);
        assert_eq!(out.category, None);
        // anatomy: the region's boxes when the target renders them; none for "describe"
        let a = record(
            Task::AnatomyGroundedReport,
            "",
            &[("", Some("left lung")), ("", Some("heart"))],
        );
        let mut kinds = std::collections::BTreeSet::new();
        for key in 0..64 {
            let out = render(&a, &[Some(A), Some(B)], BoxFormat::Cure, &t, key);
            let region = out.category.clone().unwrap();
            let kind = out.prompt_kind.unwrap();
            let boxes = if region == "left lung" {
                vec![A]
            } else {
                vec![B]
            };
            let want = if kind == "describe" { vec![] } else { boxes };
            assert_eq!(out.target_boxes, want, "{kind} {region}");
            assert!(out.prompt.contains(&region));
            kinds.insert(kind);
        }
        assert_eq!(kinds.len(), 3);
        // report: nothing
        let rep = render(&record(Task::Report, "x", &[]), &[], BoxFormat::Cure, &t, 0);
        assert!(rep.target_boxes.is_empty() && rep.category.is_none());
    }

    #[test]
    fn anatomy_grounding_uses_all_three_templates() {
        let r = record(
            Task::AnatomyGroundedReport,
            "",
            &[("", Some("left lung")), ("", Some("left lung"))],
        );
        let mut prompts = std::collections::BTreeSet::new();
        for key in 0..64 {
            let out = render(
                &r,
                &[Some(A), None],
                BoxFormat::Cure,
                &Templates::default(),
                key,
            );
            prompts.insert(out.prompt.clone());
            if out.prompt == "Describe the left lung." {
                assert_eq!(
                    out.target,
                    "Description of the left lung: No acute findings."
                );
            }
            if out.prompt == "Locate the left lung." {
                assert_eq!(
                    out.target,
                    "Location of the left lung: [0.20,0.30,0.20,0.20]"
                );
            }
        }
        assert_eq!(prompts.len(), 3);
    }

    #[test]
    fn templates_override_from_json() {
        let t: Templates =
            serde_json::from_str(r#"{"report_prompt": "Write the findings."}"#).unwrap();
        assert_eq!(t.report_prompt, "Write the findings.");
        assert_eq!(t.phrase_prompt, Templates::default().phrase_prompt);
        assert!(serde_json::from_str::<Templates>(r#"{"reprot_prompt": "x"}"#).is_err());
    }

    #[test]
    fn answer_targets_by_stage_with_spans() {
        let t = Templates::default();
        let (easy, parts) =
            answer_target(&t, "pneumonia", Some("an opacity in the left lung"), false);
        assert_eq!(
            easy,
            "Reasoning: an opacity in the left lung\n\nAnswer: pneumonia"
        );
        let chars: Vec<char> = easy.chars().collect();
        let text = |p: &Part| chars[p.start..p.end].iter().collect::<String>();
        assert_eq!(
            parts.iter().map(|p| (p.role, text(p))).collect::<Vec<_>>(),
            vec![
                ("rationale", "an opacity in the left lung".to_string()),
                ("answer", "pneumonia".to_string())
            ]
        );
        let (hard, parts) = answer_target(&t, "pneumonia", Some("an opacity"), true);
        assert_eq!(hard, "Answer: pneumonia");
        assert_eq!(
            parts,
            vec![Part {
                role: "answer",
                start: 8,
                end: 17
            }]
        );
        let (plain, _) = answer_target(&t, "ja, größer", None, false); // no rationale: answer only
        assert_eq!(plain, "Answer: ja, größer");
    }
}
