//! One sample, end to end, written straight into its slot of the batch buffer:
//! read -> decode (reduced) -> crop/resize -> CLAHE -> affine (+ boxes) -> flip -> stage overlay
//! -> normalise (planar CHW) -> box-aware prompt/target. The `cure` augmentation pipeline
//! decodes at full resolution and runs CURE's order instead (`augment::apply_cure`).

use super::augment::AugmentConfig;
use super::box_format::BoxFormat;
use super::box_mask::{box_mask, MaskSpec};
use super::cache::SharedCache;
use super::manifest::Manifest;
use super::tasks::{answer_target, render, whole, Part, Templates};
use crate::error::{Error, Result};
use crate::image::decode::{
    decode_scaled, max_file_bytes, read_image_file, ColorMode, DecodeOptions, DecodedRef,
};
use crate::image::{draw::draw_boxes, flip::swap_laterality, BoxXyxy, Image, ImageRef, Sample};
use crate::rng;
use crate::storage::{self, Pending};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `(v / max - mean) / std`, float32.
    Float32,
    /// Pixels as uint8 (16-bit inputs scaled to 0..255).
    Uint8,
}

impl std::str::FromStr for OutputKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "float32" => Ok(OutputKind::Float32),
            "uint8" => Ok(OutputKind::Uint8),
            o => Err(Error::invalid(format!(
                "output must be 'float32' or 'uint8', not {o:?}"
            ))),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    Raise,
    /// Replace the sample by a deterministic other one and count it.
    Skip,
}

impl std::str::FromStr for OnError {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "raise" => Ok(OnError::Raise),
            "skip" => Ok(OnError::Skip),
            o => Err(Error::invalid(format!(
                "on_error must be 'raise' or 'skip', not {o:?}"
            ))),
        }
    }
}

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

/// Everything the workers need to turn an index into a sample: the manifest, its configuration
/// (read through `Deref`: `spec.width`, `spec.augment`, ...) and what is derived from the two.
/// Made only by [`DatasetSpec::new`], which validates the configuration, so a spec that exists is
/// valid.
#[derive(Clone, Debug)]
pub struct DatasetSpec {
    pub manifest: Manifest,
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
            (Some(h), None) => Err(Error::invalid(format!(
                "sample {index} (id {:?}, {} {} {}): its hard_id {h:?} names no record of this \
                 data set (a Hard-stage draw reads that record's image, prompt and answer)",
                self.manifest.id(index),
                self.manifest.name,
                self.manifest.row_kind,
                self.manifest.line(index),
            ))),
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
    let wrap = |e: Error| Error::InSample {
        context: format!(
            "sample {read} (id {:?}, {} {} {})",
            rec.id, spec.manifest.name, spec.manifest.row_kind, rec.line
        ),
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
            let path = spec.manifest.image_path(&rec).map_err(wrap)?;
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
