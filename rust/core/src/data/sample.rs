//! One sample, end to end, written straight into its slot of the batch buffer:
//! read -> decode (reduced) -> crop/resize -> CLAHE -> affine (+ boxes) -> flip -> stage overlay
//! -> normalise (planar CHW) -> box-aware prompt/target. The `cure` augmentation pipeline
//! decodes at full resolution and runs CURE's order instead (`augment::apply_cure`).

use super::augment::AugmentConfig;
use super::box_format::BoxFormat;
use super::box_mask::{box_mask, Cells, Empty, MaskSpec, Padding};
use super::cache::SharedCache;
use super::manifest::{Manifest, ManifestOptions};
use super::tasks::{answer_target, render, whole, Part, Templates};
use crate::error::{Error, Result};
use crate::image::decode::{
    decode_scaled, max_file_bytes, read_image_file, ColorMode, DecodeOptions, DecodedRef,
    DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS,
};
use crate::image::{draw::draw_boxes, flip::swap_laterality, BoxXyxy, Image, ImageRef, Sample};
use crate::rng;
use crate::storage::{self, Pending};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Stream tags of `derive_key(seed, [tag, epoch, index])`: augmentation, text choices, skips.
/// Text choices are keyed by the record's id instead of its index (`id_key`), so a record gets the
/// same prompt at the same `(seed, epoch)` in any data set that holds it (a validation subset, a
/// re-ordered manifest): evaluations pin their prompts by fixing the epoch and seed.
pub const TAG_AUGMENT: u64 = 0xA0;
pub const TAG_TEXT: u64 = 0xA1;
pub const TAG_SKIP: u64 = 0xA2;

/// MedCLM's stages, as carried in a batch (`-1`: no stage curriculum).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    None = -1,
    /// Box overlay drawn on the image.
    Easy = 0,
    /// No overlay; the batch carries the box mask for the attention KL term.
    Medium = 1,
    /// Answer only: neither overlay nor mask.
    Hard = 2,
}

impl Stage {
    /// The stages' names and codes, as the Python front and the batches use them.
    pub const NAMED: [(&'static str, i8); 3] = [("easy", 0), ("medium", 1), ("hard", 2)];

    pub fn from_code(code: i8) -> Result<Stage> {
        match code {
            -1 => Ok(Stage::None),
            0 => Ok(Stage::Easy),
            1 => Ok(Stage::Medium),
            2 => Ok(Stage::Hard),
            c => Err(Error::invalid(format!(
                "stage must be -1 (none), 0 (easy), 1 (medium) or 2 (hard), got {c}"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum OutputKind {
    /// `(v / max - mean) / std`, float32.
    Float32,
    /// Pixels as uint8 (16-bit inputs scaled to 0..255).
    Uint8,
}

named_enum!(OutputKind, "output", ["float32" => Float32, "uint8" => Uint8]);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum OnError {
    Raise,
    /// Replace the sample by a deterministic other one and count it.
    Skip,
}

named_enum!(OnError, "on_error", ["raise" => Raise, "skip" => Skip]);

/// How a data set turns records into samples: everything of a [`DatasetSpec`] but the manifest
/// and what is derived from it.
#[derive(Clone, Debug)]
pub struct DatasetConfig {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub output: OutputKind,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub augment: AugmentConfig,
    pub box_format: BoxFormat,
    pub templates: Templates,
    pub on_error: OnError,
    pub max_pixels: u64,
    /// Limit on one image's decoded bytes (`image::decode::DEFAULT_MAX_BYTES` by default).
    pub max_bytes: u64,
    /// The Medium-stage box mask (grid, blur, padding, cell rule).
    pub mask: MaskSpec,
    /// Outline width of the Easy-stage overlay, in output pixels.
    pub overlay_thickness: usize,
}

/// A value per channel: one for every channel, or one each.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged, expecting = "a number, or one number per channel")]
pub enum PerChannel {
    All(f32),
    Each(Vec<f32>),
}

impl PerChannel {
    /// One value per channel of `channels`; a count that is neither 1 nor `channels` is an error
    /// naming `option`.
    fn resolve(&self, option: &str, channels: usize) -> Result<Vec<f32>> {
        match self {
            PerChannel::All(v) => Ok(vec![*v; channels]),
            PerChannel::Each(v) if v.len() == 1 => Ok(vec![v[0]; channels]),
            PerChannel::Each(v) if v.len() == channels => Ok(v.clone()),
            PerChannel::Each(v) => Err(Error::invalid(format!(
                "{option} has {} values for {channels} channels",
                v.len()
            ))),
        }
    }
}

/// The prompt/target templates as an option: a preset's name, or overrides of a preset (key
/// `"preset"`, default `"cure"`): see [`Templates::from_value`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(
    untagged,
    expecting = "a preset name ('cure' or 'gradatim') or a mapping of template overrides"
)]
pub enum TemplatesOption {
    Preset(String),
    Overrides(serde_json::Map<String, serde_json::Value>),
}

/// A data set's options as a front end names them (Python's `ManifestDataset` keywords), with
/// their defaults: the one place either is written. Read from JSON (a Python dict crosses as one)
/// by [`DatasetOptions::from_value`]: a missing option takes its default, an unknown or ill-typed
/// one is an error naming it. [`DatasetOptions::resolve`] turns them into the manifest's options
/// and the [`DatasetConfig`].
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatasetOptions {
    /// The folder relative image paths resolve under (`None`: the current directory; a front end
    /// passes the manifest's folder).
    pub root: Option<PathBuf>,
    /// Allow absolute image paths and paths climbing out of `root`.
    pub allow_outside_root: bool,
    /// Output `(width, height)`.
    pub image_size: (usize, usize),
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    pub output: OutputKind,
    /// Per-channel normalisation on the [0, 1] scale (`None`: 0 and 1).
    pub mean: Option<PerChannel>,
    pub std: Option<PerChannel>,
    /// `None`: no augmentation (a part missing from the mapping is off too).
    pub augment: Option<AugmentConfig>,
    pub box_format: BoxFormat,
    /// `None`: the `"cure"` preset.
    pub templates: Option<TemplatesOption>,
    pub on_error: OnError,
    pub max_pixels: u64,
    pub max_bytes: u64,
    /// The Medium-stage box mask ([`MaskSpec`]): grid `(w, h)`, sigma in cells, kernel taps
    /// (`None`: `2 ceil(3 sigma) + 1`), padding, cell rule, rule for a sample without a box.
    pub mask_grid: (usize, usize),
    pub mask_sigma: f64,
    pub mask_kernel: Option<usize>,
    pub mask_padding: Padding,
    pub mask_cells: Cells,
    pub mask_empty: Empty,
    /// Outline width of the Easy-stage overlay, in output pixels.
    pub overlay_thickness: usize,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        let mask = MaskSpec::default();
        DatasetOptions {
            root: None,
            allow_outside_root: false,
            image_size: (512, 512),
            channels: 1,
            output: OutputKind::Float32,
            mean: None,
            std: None,
            augment: None,
            box_format: BoxFormat::Cure,
            templates: None,
            on_error: OnError::Raise,
            max_pixels: DEFAULT_MAX_PIXELS,
            max_bytes: DEFAULT_MAX_BYTES,
            mask_grid: mask.grid,
            mask_sigma: mask.sigma,
            mask_kernel: mask.kernel,
            mask_padding: mask.padding,
            mask_cells: mask.cells,
            mask_empty: mask.empty,
            overlay_thickness: 3,
        }
    }
}

impl DatasetOptions {
    /// Read the options from a JSON object; a missing option takes its default. An unknown
    /// option, or one of the wrong type, is an error naming it (`mask_grid[1]: invalid type:
    /// ...`).
    pub fn from_value(value: serde_json::Value) -> Result<DatasetOptions> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let reason = e.into_inner().to_string();
            if reason.starts_with(&path) {
                Error::invalid(reason) // names the option itself
            } else if path == "." || path == "?" {
                Error::invalid(format!("data set options: {reason}"))
            } else {
                Error::invalid(format!("{path}: {reason}"))
            }
        })
    }

    /// The options as a JSON object (the shape [`DatasetOptions::from_value`] reads).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("data set options always serialise")
    }

    /// How the manifest's image paths resolve.
    pub fn manifest_options(&self) -> ManifestOptions {
        ManifestOptions {
            root: self.root.clone().unwrap_or_else(|| PathBuf::from(".")),
            allow_outside_root: self.allow_outside_root,
        }
    }

    /// The manifest's options and the data set's configuration, validated.
    pub fn resolve(self) -> Result<(ManifestOptions, DatasetConfig)> {
        let opts = self.manifest_options();
        let channels = self.channels;
        let per_channel = |v: &Option<PerChannel>, option: &str, default: f32| match v {
            Some(v) => v.resolve(option, channels),
            None => Ok(vec![default; channels]),
        };
        let templates = match self.templates {
            None => Templates::default(),
            Some(TemplatesOption::Preset(name)) => Templates::preset(&name)?,
            Some(TemplatesOption::Overrides(m)) => {
                Templates::from_value(serde_json::Value::Object(m))?
            }
        };
        let config = DatasetConfig {
            width: self.image_size.0,
            height: self.image_size.1,
            channels,
            output: self.output,
            mean: per_channel(&self.mean, "mean", 0.0)?,
            std: per_channel(&self.std, "std", 1.0)?,
            augment: self.augment.unwrap_or_else(AugmentConfig::none),
            box_format: self.box_format,
            templates,
            on_error: self.on_error,
            max_pixels: self.max_pixels,
            max_bytes: self.max_bytes,
            mask: MaskSpec {
                grid: self.mask_grid,
                sigma: self.mask_sigma,
                kernel: self.mask_kernel,
                padding: self.mask_padding,
                cells: self.mask_cells,
                empty: self.mask_empty,
            },
            overlay_thickness: self.overlay_thickness,
        };
        config.validate()?;
        Ok((opts, config))
    }
}

/// Everything the workers need to turn an index into a sample: the manifest, its configuration
/// (read through `Deref`: `spec.width`, `spec.augment`, ...) and what is derived from the two.
/// Made only by [`DatasetSpec::new`], which validates the configuration, so a spec that exists is
/// valid.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    /// Shared with other data sets over the same opened manifest ([`DatasetSpec::shared`]).
    pub manifest: Arc<Manifest>,
    config: DatasetConfig,
    /// Box slots per sample in a batch: the largest box count of the manifest (at least 1).
    pub max_boxes: usize,
    /// Whether any image lies in an object store.
    remote: bool,
    /// Pre-decoded pixels to read instead of decoding ([`DatasetSpec::with_cache`]).
    pub cache: Option<SharedCache>,
    /// A record the cache does not hold: decode it (`true`) or fail.
    pub cache_fallback: bool,
    /// Per record, the index of its Hard-stage partner (`hard_id`) when this data set holds it;
    /// empty when no record names one.
    partners: Vec<Option<usize>>,
}

impl std::ops::Deref for DatasetSpec {
    type Target = DatasetConfig;
    fn deref(&self) -> &DatasetConfig {
        &self.config
    }
}

impl DatasetSpec {
    /// The spec of `manifest` read with `config`; an invalid configuration is an error.
    pub fn new(manifest: Manifest, config: DatasetConfig) -> Result<DatasetSpec> {
        DatasetSpec::shared(Arc::new(manifest), config)
    }

    /// [`DatasetSpec::new`] of a manifest shared with other data sets (no copy of its records).
    pub fn shared(manifest: Arc<Manifest>, config: DatasetConfig) -> Result<DatasetSpec> {
        config.validate()?;
        let max_boxes = manifest.max_boxes().max(1);
        let remote = manifest.any_remote();
        let partners = hard_partners(&manifest);
        Ok(DatasetSpec {
            manifest,
            config,
            max_boxes,
            remote,
            cache: None,
            cache_fallback: true,
            partners,
        })
    }

    /// The record a draw of sample `index` in `stage` reads: in the Hard stage, the record its
    /// `hard_id` names (MedCLM's released Hard stage: another image of the same domain, with its
    /// own question and answer); otherwise `index` itself. A `hard_id` that names no record of
    /// this data set is an error when a Hard-stage draw needs it.
    pub fn read_index(&self, index: usize, stage: Stage) -> Result<usize> {
        if stage != Stage::Hard || self.partners.is_empty() || index >= self.manifest.len() {
            return Ok(index);
        }
        match (self.manifest.hard_id(index), self.partners[index]) {
            (Some(_), Some(partner)) => Ok(partner),
            (Some(h), None) => {
                let (name, row_kind, line) = self.manifest.place(index);
                Err(Error::invalid(format!(
                    "sample {index} (id {:?}, {name} {row_kind} {line}): its hard_id {h:?} names \
                     no record of this data set (a Hard-stage draw reads that record's image, \
                     prompt and answer)",
                    self.manifest.id(index),
                )))
            }
            (None, _) => Ok(index),
        }
    }

    /// This spec reading pixels from `cache` (refused, saying why, when it was built from another
    /// manifest or with other decode settings); `fallback`: decode records it does not hold.
    pub fn with_cache(mut self, cache: SharedCache, fallback: bool) -> Result<DatasetSpec> {
        cache.check(&self)?;
        self.cache = Some(cache);
        self.cache_fallback = fallback;
        Ok(self)
    }

    /// How every image is decoded: no smaller than the smallest crop still has to deliver at the
    /// output size (the reduced JPEG / JPEG 2000 scale follows; at full resolution for the `cure`
    /// augmentation pipeline), grey or RGB as the output, the stored range stretched over the type
    /// so 12-bit DICOMs and 8-bit JPEGs share a scale. The pre-decoded cache decodes with the same
    /// options.
    pub fn decode_options(&self) -> DecodeOptions {
        let grow = 1.0 / self.augment.min_crop_scale().sqrt();
        DecodeOptions {
            reduce_to: (!self.augment.full_resolution()).then(|| {
                (
                    (self.width as f64 * grow).ceil() as usize,
                    (self.height as f64 * grow).ceil() as usize,
                )
            }),
            mode: if self.channels == 1 {
                ColorMode::Gray
            } else {
                ColorMode::Rgb
            },
            max_pixels: self.max_pixels,
            max_bytes: self.max_bytes,
            full_range: true,
        }
    }

    /// Start reading the images of `indices` (drawn in `stages`, codes, or empty: see
    /// [`DatasetSpec::read_index`]) that lie in an object store, or their pixels from a cache in a
    /// store (one entry per index, `None` for a local file, an image a local cache holds or an
    /// index out of range); empty when there is nothing remote to read.
    pub fn prefetch(&self, indices: &[usize], stages: &[i8]) -> Vec<Option<Pending>> {
        let remote_cache = self.cache.as_ref().is_some_and(|c| c.is_remote());
        if !self.remote && !remote_cache {
            return Vec::new();
        }
        let limit = max_file_bytes(self.max_bytes);
        indices
            .iter()
            .enumerate()
            .map(|(k, &i)| {
                let stage = stages
                    .get(k)
                    .and_then(|&s| Stage::from_code(s).ok())
                    .unwrap_or(Stage::None);
                let i = self.read_index(i, stage).ok()?;
                if let Some(cache) = self.cache.as_ref().filter(|c| c.holds(i)) {
                    return cache.prefetch(i);
                }
                let image = (i < self.manifest.len()).then(|| self.manifest.image(i))?;
                let url = image.to_str().filter(|u| storage::is_remote(u))?;
                storage::prefetch(url, limit).ok()
            })
            .collect()
    }
}

/// Per record, the index of the record its `hard_id` names, when the manifest holds it; empty
/// when no record names one.
fn hard_partners(m: &Manifest) -> Vec<Option<usize>> {
    if !(0..m.len()).any(|i| m.hard_id(i).is_some()) {
        return Vec::new();
    }
    let ids: std::collections::HashMap<&str, usize> = (0..m.len()).map(|i| (m.id(i), i)).collect();
    (0..m.len())
        .map(|i| m.hard_id(i).and_then(|h| ids.get(h).copied()))
        .collect()
}

impl DatasetConfig {
    fn validate(&self) -> Result<()> {
        if self.width == 0 || self.height == 0 {
            return Err(Error::invalid("image_size must be positive"));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(Error::invalid(format!(
                "channels must be 1 or 3, got {}",
                self.channels
            )));
        }
        if self.mean.len() != self.channels || self.std.len() != self.channels {
            return Err(Error::invalid("mean and std need one value per channel"));
        }
        if self.std.iter().any(|s| !s.is_finite() || *s == 0.0)
            || self.mean.iter().any(|m| !m.is_finite())
        {
            return Err(Error::invalid(
                "mean must be finite and std finite and non-zero",
            ));
        }
        self.mask.validate()?;
        self.augment.validate()
    }

    /// This configuration as the options that give it, every value explicit (`mean` and `std`
    /// per channel, the templates in full), without the manifest's (`root`,
    /// `allow_outside_root`): [`DatasetOptions::from_value`] of it gives this configuration.
    pub fn to_value(&self) -> serde_json::Value {
        let templates = match serde_json::to_value(&self.templates) {
            Ok(serde_json::Value::Object(m)) => Some(TemplatesOption::Overrides(m)),
            _ => None,
        };
        let options = DatasetOptions {
            image_size: (self.width, self.height),
            channels: self.channels,
            output: self.output,
            mean: Some(PerChannel::Each(self.mean.clone())),
            std: Some(PerChannel::Each(self.std.clone())),
            augment: Some(self.augment.clone()),
            box_format: self.box_format,
            templates,
            on_error: self.on_error,
            max_pixels: self.max_pixels,
            max_bytes: self.max_bytes,
            mask_grid: self.mask.grid,
            mask_sigma: self.mask.sigma,
            mask_kernel: self.mask.kernel,
            mask_padding: self.mask.padding,
            mask_cells: self.mask.cells,
            mask_empty: self.mask.empty,
            overlay_thickness: self.overlay_thickness,
            ..DatasetOptions::default()
        };
        let mut value = options.to_value();
        if let serde_json::Value::Object(m) = &mut value {
            m.remove("root");
            m.remove("allow_outside_root");
        }
        value
    }

    pub fn pixels_per_sample(&self) -> usize {
        self.width * self.height * self.channels
    }
}

/// What a sample contributes to a batch besides its pixels.
#[derive(Clone, Debug)]
pub struct SampleOut {
    /// The record read: the drawn index, or its Hard-stage partner ([`DatasetSpec::read_index`]).
    pub record: usize,
    /// Surviving boxes in output pixels.
    pub boxes: Vec<BoxXyxy>,
    pub text: String,
    pub prompt: String,
    pub target: String,
    /// Roles of the target's parts (rationale / answer), character spans.
    pub target_parts: Vec<Part>,
    pub box_mask: Option<Vec<f32>>,
    /// The boxes the target renders, normalised to the output image.
    pub target_boxes: Vec<[f64; 4]>,
    /// The phrase or region the prompt asks about (laterality swapped with the image).
    pub category: Option<String>,
    pub prompt_kind: Option<&'static str>,
}

/// FNV-1a of a record id: the text choices' key, independent of where the record sits.
pub fn id_key(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Load sample `index` into `pixels` (its slot, `pixels_per_sample` long, planar CHW); its bytes
/// come from `prefetched` when the read was started ahead (see [`DatasetSpec::prefetch`]). In the
/// Hard stage a record with a `hard_id` is read as its partner (image, prompt, answer); the
/// augmentation is still drawn from `index`.
pub fn load_sample<P: OutPixel>(
    spec: &DatasetSpec,
    index: usize,
    epoch: u64,
    seed: u64,
    stage: Stage,
    pixels: &mut [P],
    mut prefetched: Option<Pending>,
) -> Result<SampleOut> {
    let read = spec.read_index(index, stage)?;
    let rec = spec.manifest.record(read)?;
    let (name, row_kind, line) = spec.manifest.place(read);
    let wrap = |e: Error| Error::InSample {
        context: format!("sample {read} (id {:?}, {name} {row_kind} {line})", rec.id),
        source: Box::new(e),
    };
    let (w, h) = (spec.width, spec.height);
    let key = rng::derive_key(seed, &[TAG_AUGMENT, epoch, index as u64]);
    let plan = spec.augment.plan(key, w, h, rec.laterality_sensitive);
    let rects: Vec<BoxXyxy> = rec.boxes.iter().map(|b| b.rect).collect();
    let min_visible = spec.augment.min_visible;
    let cached = match &spec.cache {
        Some(cache) => cache
            .lookup(read, &rec, spec.cache_fallback, &mut prefetched)
            .map_err(wrap)?,
        None => None,
    };
    // pixels from the cache (in place, or fetched), or decoded (kept alive here for the borrow)
    let decoded;
    let (image, denom) = match &cached {
        Some(c) => (c.image(), c.denom),
        None => {
            let opts = spec.decode_options();
            let path = spec.manifest.image_path_at(read, &rec).map_err(wrap)?;
            let name = path.display().to_string();
            let limit = max_file_bytes(opts.max_bytes);
            let bytes = match prefetched {
                Some(pending) => pending.wait(),
                None => storage::read_bytes(path, limit, |p| read_image_file(p, &name, limit)),
            }
            .map_err(wrap)?;
            let denom;
            (decoded, denom) = decode_scaled(&bytes, &name, &opts).map_err(wrap)?;
            (decoded.view(), denom)
        }
    };
    let scale = 1.0 / denom as f64;
    let boxes = match image {
        DecodedRef::U8(img) => finish(spec, img, scale, &rects, &plan, min_visible, stage, pixels),
        DecodedRef::U16(img) => finish(spec, img, scale, &rects, &plan, min_visible, stage, pixels),
    }
    .map_err(wrap)?;
    let norm: Vec<Option<[f64; 4]>> = boxes
        .iter()
        .map(|b| {
            b.map(|b| {
                [
                    b[0] / w as f64,
                    b[1] / h as f64,
                    b[2] / w as f64,
                    b[3] / h as f64,
                ]
            })
        })
        .collect();
    let text_key = rng::derive_key(seed, &[TAG_TEXT, epoch, id_key(&rec.id)]);
    let mut r = render(&rec, &norm, spec.box_format, &spec.templates, text_key);
    let mut text = rec.text.clone();
    let swap = |s: &str| {
        if plan.flip {
            swap_laterality(s)
        } else {
            s.to_string()
        }
    };
    r.prompt = swap(&r.prompt);
    text = swap(&text);
    // a sample with an answer (MedCLM's VQA with rationale): the target by stage, the Hard stage
    // answer only; the parts are built from the swapped pieces so their spans stay exact
    let (target, target_parts) = match &rec.answer {
        Some(answer) => {
            let rationale = rec.rationale.as_deref().map(swap);
            answer_target(
                &spec.templates,
                &swap(answer),
                rationale.as_deref(),
                stage == Stage::Hard,
            )
        }
        None => {
            let t = swap(&r.target);
            let parts = whole(&t);
            (t, parts)
        }
    };
    let surviving: Vec<[f64; 4]> = norm.iter().flatten().copied().collect();
    let box_mask = (stage == Stage::Medium).then(|| box_mask(&surviving, &spec.mask));
    Ok(SampleOut {
        record: read,
        boxes: boxes.into_iter().flatten().collect(),
        text,
        prompt: r.prompt,
        target,
        target_parts,
        box_mask,
        target_boxes: r.target_boxes,
        category: r.category.as_deref().map(swap),
        prompt_kind: r.prompt_kind,
    })
}

#[allow(clippy::too_many_arguments)]
fn finish<T: Sample, P: OutPixel>(
    spec: &DatasetSpec,
    img: ImageRef<'_, T>,
    scale: f64,
    rects: &[BoxXyxy],
    plan: &super::augment::Plan,
    min_visible: f64,
    stage: Stage,
    pixels: &mut [P],
) -> Result<Vec<Option<BoxXyxy>>> {
    let (w, h, s) = (spec.width, spec.height, (scale, scale));
    if plan.cure.is_some() {
        let aug = super::augment::apply_cure(img, s, rects, plan, w, h, min_visible)?;
        return Ok(overlay_and_write(spec, aug, stage, pixels));
    }
    let aug = super::augment::apply(img, s, rects, plan, w, h, min_visible)?;
    Ok(overlay_and_write(spec, aug, stage, pixels))
}

/// The Easy stage's box overlay, then the image into its batch slot; returns the boxes.
fn overlay_and_write<T: Sample, P: OutPixel>(
    spec: &DatasetSpec,
    mut aug: super::augment::Augmented<T>,
    stage: Stage,
    pixels: &mut [P],
) -> Vec<Option<BoxXyxy>> {
    if stage == Stage::Easy {
        let kept: Vec<BoxXyxy> = aug.boxes.iter().flatten().copied().collect();
        let white = vec![T::from_f32(T::MAX); aug.image.channels];
        draw_boxes(&mut aug.image, &kept, spec.overlay_thickness, &white);
    }
    P::write_planar(&aug.image, &spec.mean, &spec.std, pixels);
    aug.boxes
}

/// A batch buffer element: float32 (normalised) or uint8.
pub trait OutPixel: Copy + Default + Send + Sync + 'static {
    /// Write `img` (HWC) into `out` (CHW).
    fn write_planar<T: Sample>(img: &Image<T>, mean: &[f32], std: &[f32], out: &mut [Self]);
}

impl OutPixel for f32 {
    fn write_planar<T: Sample>(img: &Image<T>, mean: &[f32], std: &[f32], out: &mut [f32]) {
        let (c, plane) = (img.channels, img.width * img.height);
        for ch in 0..c {
            // (v / max - mean) / std as one multiply-add
            let a = 1.0 / (T::MAX * std[ch]);
            let b = -mean[ch] / std[ch];
            let dst = &mut out[ch * plane..(ch + 1) * plane];
            if c == 1 {
                for (d, &v) in dst.iter_mut().zip(&img.data) {
                    *d = v.to_f32() * a + b;
                }
            } else {
                for (d, px) in dst.iter_mut().zip(img.data.chunks_exact(c)) {
                    *d = px[ch].to_f32() * a + b;
                }
            }
        }
    }
}

impl OutPixel for u8 {
    fn write_planar<T: Sample>(img: &Image<T>, _mean: &[f32], _std: &[f32], out: &mut [u8]) {
        let (c, plane) = (img.channels, img.width * img.height);
        let k = 255.0 / T::MAX;
        for ch in 0..c {
            let dst = &mut out[ch * plane..(ch + 1) * plane];
            for (d, px) in dst.iter_mut().zip(img.data.chunks_exact(c)) {
                *d = if T::MAX == 255.0 {
                    px[ch].to_usize() as u8
                } else {
                    (px[ch].to_f32() * k).round() as u8
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(value: serde_json::Value) -> String {
        DatasetOptions::from_value(value)
            .and_then(DatasetOptions::resolve)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn missing_options_take_their_defaults() {
        let read = DatasetOptions::from_value(json!({})).unwrap();
        assert_eq!(read, DatasetOptions::default());
        // the defaults written out by hand (Python's ManifestDataset keywords show them)
        let v = DatasetOptions::default().to_value();
        assert_eq!(v["image_size"], json!([512, 512]));
        assert_eq!(v["output"], json!("float32"));
        assert_eq!(v["box_format"], json!("cure"));
        assert_eq!(v["mask_grid"], json!([24, 24]));
        assert_eq!(v["mask_kernel"], json!(9));
        assert_eq!(v["mask_cells"], json!("truncate"));
        assert_eq!(v["max_pixels"], json!(1u64 << 28));
        assert_eq!(v["mean"], json!(null));
        // an explicit null is None, not the default (mask_kernel: computed from sigma)
        let o = DatasetOptions::from_value(json!({"mask_kernel": null})).unwrap();
        assert_eq!(o.mask_kernel, None);
        // the defaults read back as themselves
        assert_eq!(
            DatasetOptions::from_value(v).unwrap(),
            DatasetOptions::default()
        );
        let (opts, c) = DatasetOptions::default().resolve().unwrap();
        assert_eq!((c.width, c.height, c.channels), (512, 512, 1));
        assert_eq!((c.mean.clone(), c.std.clone()), (vec![0.0], vec![1.0]));
        assert_eq!(c.augment, AugmentConfig::none());
        assert_eq!(c.mask, MaskSpec::default());
        assert!(!opts.allow_outside_root);
    }

    #[test]
    fn an_unknown_or_ill_typed_option_is_named() {
        let m = message(json!({"overlay_thicknes": 3}));
        assert!(m.contains("unknown field `overlay_thicknes`"), "{m}");
        let m = message(json!({"overlay_thickness": "3"}));
        assert!(
            m.starts_with("overlay_thickness: invalid type: string"),
            "{m}"
        );
        let m = message(json!({"mask_grid": [4, -1]}));
        assert!(m.starts_with("mask_grid[1]: invalid value"), "{m}");
        let m = message(json!({"output": "float16"}));
        assert_eq!(m, "output must be 'float32' or 'uint8', not \"float16\"");
        let m = message(json!({"mask_cells": "half"}));
        assert!(m.contains("mask_cells must be 'truncate', 'whole' or 'fraction'"));
        let m = message(json!({"augment": {"clahe": {"p": "x"}}}));
        assert!(m.starts_with("augment.clahe.p: invalid type"), "{m}");
        let m = message(json!({"mean": "x"}));
        assert!(
            m.contains("mean: a number, or one number per channel"),
            "{m}"
        );
        let m = message(json!({"channels": 3, "mean": [0.1, 0.2]}));
        assert!(m.contains("mean has 2 values for 3 channels"), "{m}");
        for m in [
            &message(json!({"x": 1})),
            &message(json!({"image_size": "a"})),
        ] {
            assert!(!m.contains('\n'), "{m}");
        }
    }

    #[test]
    fn a_configuration_reads_back_from_its_value() {
        let given = json!({
            "image_size": [64, 48], "channels": 3, "output": "uint8", "mean": 0.5,
            "std": [0.2, 0.3, 0.4], "augment": {"flip": {}}, "box_format": "xyxy",
            "templates": "gradatim", "on_error": "skip", "mask_grid": [4, 6], "mask_sigma": 0,
            "mask_kernel": null, "mask_padding": "zero", "mask_cells": "whole",
            "mask_empty": "zeros", "overlay_thickness": 1, "max_pixels": 1000, "max_bytes": 5000,
        });
        let (_, c) = DatasetOptions::from_value(given)
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(c.mean, vec![0.5; 3]);
        assert_eq!(c.templates.grounded_style, "gradatim");
        assert_eq!(c.mask.kernel, None);
        let (_, again) = DatasetOptions::from_value(c.to_value())
            .unwrap()
            .resolve()
            .unwrap();
        assert_eq!(again.to_value(), c.to_value());
        assert_eq!(
            (again.width, again.height, again.output, again.on_error),
            (64, 48, OutputKind::Uint8, OnError::Skip)
        );
        assert_eq!(again.box_format, BoxFormat::Xyxy);
        assert_eq!((again.max_pixels, again.max_bytes), (1000, 5000));
        assert_eq!(again.mask, c.mask);
        assert_eq!(again.augment, c.augment);
    }
}
