//! A whole batch built by one worker into one contiguous buffer (`[B, C, H, W]`), which becomes
//! a NumPy array and then a torch tensor without a copy.

use std::time::Instant;

use super::manifest::Task;
use super::sample::{load_sample, DatasetSpec, OnError, OutPixel, Stage, TAG_SKIP};
use crate::error::{Error, Result};
use crate::rng;
use crate::storage::Pending;

/// How many replacement draws a skipped sample gets before the batch fails.
pub const MAX_SKIP_ATTEMPTS: u64 = 16;

/// The pixel buffer of a batch.
#[derive(Debug)]
pub enum Pixels {
    F32(Vec<f32>),
    U8(Vec<u8>),
}

/// One batch, column-wise.
#[derive(Debug)]
pub struct Batch {
    pub pixels: Pixels,
    /// `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// Index actually loaded per slot (differs from the requested one when a sample was skipped,
    /// or read as its Hard-stage partner).
    pub indices: Vec<i64>,
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    pub prompts: Vec<String>,
    pub targets: Vec<String>,
    /// Per sample, `(role, start, end)` character spans of the target's parts.
    pub target_parts: Vec<Vec<(&'static str, usize, usize)>>,
    pub tasks: Vec<&'static str>,
    pub sources: Vec<String>,
    /// `[B, max_boxes, 4]` surviving boxes in output pixels, zero-padded; `box_counts[b]` valid.
    pub boxes: Vec<f32>,
    pub box_counts: Vec<i64>,
    /// `[B, max_boxes, 4]` the boxes each target renders, normalised, zero-padded;
    /// `target_box_counts[b]` valid.
    pub target_boxes: Vec<f32>,
    pub target_box_counts: Vec<i64>,
    /// The phrase / region each prompt asks about, and the anatomy prompt kind.
    pub categories: Vec<Option<String>>,
    pub prompt_kinds: Vec<Option<&'static str>>,
    pub max_boxes: usize,
    pub stages: Vec<i8>,
    /// `[B, grid_h, grid_w]` (zeros outside the Medium stage), present when any slot is Medium.
    pub box_mask: Option<Vec<f32>>,
    /// `(index, reason)` of each sample whose file failed (requested or drawn as a replacement),
    /// once per index, with that file's own error.
    pub skipped: Vec<(i64, String)>,
    /// Worker time spent building the batch.
    pub work_ns: u64,
}

/// Build the batch of `indices` (with per-sample `stages`, or all `None` when empty). Images in
/// object stores are all requested at once, before the first is decoded. A panic while building
/// it (a bug: bad inputs are errors) is an error, as in the loader's workers, so it never
/// reaches Python.
pub fn build_batch(
    spec: &DatasetSpec,
    indices: &[usize],
    stages: &[i8],
    epoch: u64,
    seed: u64,
) -> Result<Batch> {
    crate::image::decode::without_panics(|| {
        build_batch_prefetched(
            spec,
            indices,
            stages,
            epoch,
            seed,
            spec.prefetch(indices, stages),
        )
    })
    .unwrap_or_else(|what| {
        Err(Error::invalid(format!(
            "internal error while building a batch of samples {indices:?}: {what}"
        )))
    })
}

/// [`build_batch`] with the reads of remote images already started ([`DatasetSpec::prefetch`]
/// of the same `indices`, when the batch was submitted).
pub fn build_batch_prefetched(
    spec: &DatasetSpec,
    indices: &[usize],
    stages: &[i8],
    epoch: u64,
    seed: u64,
    mut prefetched: Vec<Option<Pending>>,
) -> Result<Batch> {
    let start = Instant::now();
    if !stages.is_empty() && stages.len() != indices.len() {
        return Err(Error::invalid(format!(
            "{} stages for {} samples",
            stages.len(),
            indices.len()
        )));
    }
    let stages: Vec<Stage> = if stages.is_empty() {
        vec![Stage::None; indices.len()]
    } else {
        stages
            .iter()
            .map(|&s| Stage::from_code(s))
            .collect::<Result<_>>()?
    };
    let n = indices.len();
    let per = spec.pixels_per_sample();
    let mut batch = match spec.output {
        super::sample::OutputKind::Float32 => fill(
            spec,
            indices,
            &stages,
            epoch,
            seed,
            &mut prefetched,
            vec![0f32; n * per],
        )?,
        super::sample::OutputKind::Uint8 => fill(
            spec,
            indices,
            &stages,
            epoch,
            seed,
            &mut prefetched,
            vec![0u8; n * per],
        )?,
    };
    batch.work_ns = start.elapsed().as_nanos() as u64;
    Ok(batch)
}

trait IntoPixels {
    fn into_pixels(self) -> Pixels;
}
impl IntoPixels for Vec<f32> {
    fn into_pixels(self) -> Pixels {
        Pixels::F32(self)
    }
}
impl IntoPixels for Vec<u8> {
    fn into_pixels(self) -> Pixels {
        Pixels::U8(self)
    }
}

fn fill<P: OutPixel>(
    spec: &DatasetSpec,
    indices: &[usize],
    stages: &[Stage],
    epoch: u64,
    seed: u64,
    prefetched: &mut [Option<Pending>],
    mut buf: Vec<P>,
) -> Result<Batch>
where
    Vec<P>: IntoPixels,
{
    let n = indices.len();
    let per = spec.pixels_per_sample();
    let (gw, gh) = spec.mask.grid;
    let any_medium = stages.contains(&Stage::Medium);
    let mut b = Batch {
        pixels: Pixels::U8(Vec::new()),
        shape: [n, spec.channels, spec.height, spec.width],
        indices: Vec::with_capacity(n),
        ids: Vec::with_capacity(n),
        texts: Vec::with_capacity(n),
        prompts: Vec::with_capacity(n),
        targets: Vec::with_capacity(n),
        target_parts: Vec::with_capacity(n),
        tasks: Vec::with_capacity(n),
        sources: Vec::with_capacity(n),
        boxes: vec![0.0; n * spec.max_boxes * 4],
        box_counts: Vec::with_capacity(n),
        target_boxes: vec![0.0; n * spec.max_boxes * 4],
        target_box_counts: Vec::with_capacity(n),
        categories: Vec::with_capacity(n),
        prompt_kinds: Vec::with_capacity(n),
        max_boxes: spec.max_boxes,
        stages: stages.iter().map(|&s| s as i8).collect(),
        box_mask: any_medium.then(|| vec![0.0; n * gw * gh]),
        skipped: Vec::new(),
        work_ns: 0,
    };
    let total = spec.manifest.len() as u64;
    for (slot, (&index, &stage)) in indices.iter().zip(stages).enumerate() {
        let pixels = &mut buf[slot * per..(slot + 1) * per];
        let mut loaded = index;
        let pending = prefetched.get_mut(slot).and_then(Option::take);
        let mut result = load_sample(spec, index, epoch, seed, stage, pixels, pending);
        if spec.on_error == OnError::Skip && result.is_err() {
            // each failing file is listed once, under its own index, with its own error
            let key = rng::derive_key(seed, &[TAG_SKIP, epoch, index as u64]);
            let mut first = None;
            let mut attempt = 0;
            while let Err(e) = result {
                if !b.skipped.iter().any(|(i, _)| *i == loaded as i64) {
                    b.skipped.push((loaded as i64, e.to_string()));
                }
                first.get_or_insert(e);
                if attempt == MAX_SKIP_ATTEMPTS {
                    return Err(Error::InSample {
                        context: format!(
                            "sample {index} could not be loaded, nor any of its \
                             {MAX_SKIP_ATTEMPTS} replacement draws (on_error=\"skip\"); the \
                             sample's own error"
                        ),
                        source: Box::new(first.expect("set above")),
                    });
                }
                loaded = rng::bounded(rng::at(key, attempt), total) as usize;
                result = load_sample(spec, loaded, epoch, seed, stage, pixels, None);
                attempt += 1;
            }
        }
        let out = result?;
        loaded = out.record; // a Hard-stage partner is the record loaded
        let m = &spec.manifest;
        b.indices.push(loaded as i64);
        b.ids.push(m.id(loaded).to_string());
        b.sources.push(m.source_name(loaded).to_string());
        b.tasks.push(Task::name(m.task(loaded)));
        b.texts.push(out.text);
        b.prompts.push(out.prompt);
        b.targets.push(out.target);
        b.target_parts.push(
            out.target_parts
                .iter()
                .map(|p| (p.role, p.start, p.end))
                .collect(),
        );
        let count = out.boxes.len().min(spec.max_boxes);
        for (k, bx) in out.boxes.iter().take(count).enumerate() {
            let at = (slot * spec.max_boxes + k) * 4;
            for (d, v) in b.boxes[at..at + 4].iter_mut().zip(bx) {
                *d = *v as f32;
            }
        }
        b.box_counts.push(count as i64);
        let count = out.target_boxes.len().min(spec.max_boxes);
        for (k, bx) in out.target_boxes.iter().take(count).enumerate() {
            let at = (slot * spec.max_boxes + k) * 4;
            for (d, v) in b.target_boxes[at..at + 4].iter_mut().zip(bx) {
                *d = *v as f32;
            }
        }
        b.target_box_counts.push(count as i64);
        b.categories.push(out.category);
        b.prompt_kinds.push(out.prompt_kind);
        if let (Some(mask), Some(m)) = (b.box_mask.as_mut(), out.box_mask) {
            mask[slot * gw * gh..(slot + 1) * gw * gh].copy_from_slice(&m);
        }
    }
    b.pixels = buf.into_pixels();
    Ok(b)
}
