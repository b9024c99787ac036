//! Augmentation as data (CURE's recipe: CLAHE, random resized crop, affine, optional flip) and
//! its per-sample plan.
//!
//! Every random choice of a sample is drawn from `key = derive_key(seed, [epoch, index])` with a
//! fixed counter per decision, so the result does not depend on thread count, scheduling or which
//! other samples were drawn, and adding a decision later does not shift the others.
//!
//! Two pipelines run the same recipe ([`Pipeline`]):
//!
//! * `fast` ([`apply`]): the work is done at the output size: the decoder has already shrunk by
//!   a power of two, the crop and the resize to the output size come first (area averaging), then
//!   CLAHE and a bilinear affine warp run on the small image. Boxes go through the same composed
//!   matrix once, with the box rule of docs/image.md, "Oracle conventions" (clip to the output,
//!   drop below `min_visible` of the mapped area).
//! * `cure` ([`apply_cure`]): albumentations 2.0.8 as CURE's code composes it (`CLAHE ->
//!   RandomResizedCrop -> Affine -> HorizontalFlip -> Resize`, every resampling `INTER_CUBIC`), on
//!   the full-resolution image: 16-bit images are first min-maxed to 8 bits as CURE's loader does,
//!   CLAHE runs on the L channel of CIELAB at full resolution, the crop is resized (cubic) to the
//!   output size, the affine (independent x and y scale, whole-pixel translation, albumentations'
//!   matrix) is warped (cubic) at the size the image has then, and a last cubic resize brings it
//!   to the output size. Boxes are clipped after every step as albumentations' `BboxParams` does.
//!   Pixels equal albumentations 2.0.8 run on OpenCV 5.0 without IPP (docs/image.md).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::cure::{clahe_lab, minmax_to_u8};
use crate::image::resize::{resize, Interpolation};
use crate::image::warp::{warp_affine, warp_boxes, Affine};
use crate::image::warp_cubic::warp_affine_cubic;
use crate::image::{clahe::clahe, flip, BoxXyxy, Image, ImageRef, Sample};
use crate::rng;

fn default_p() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// Where and with which kernels the augmentation runs (module docs).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Pipeline {
    /// At the output size: reduced decode, area/bilinear resize, CLAHE, bilinear warp.
    #[default]
    Fast,
    /// albumentations 2.0.8 as CURE composes it, at full resolution, cubic everywhere.
    Cure,
}

/// A CLAHE clip limit: fixed, or drawn uniformly from `[low, high]` per sample (CURE draws from
/// `[1, 4]`).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ClipLimit {
    Fixed(f64),
    Range(f64, f64),
}

impl ClipLimit {
    fn valid(&self) -> bool {
        match *self {
            ClipLimit::Fixed(c) => c.is_finite() && c >= 0.0,
            ClipLimit::Range(a, b) => a.is_finite() && b.is_finite() && 0.0 <= a && a <= b,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClaheConfig {
    #[serde(default = "ClaheConfig::clip")]
    pub clip_limit: ClipLimit,
    #[serde(default = "ClaheConfig::grid")]
    pub tile_grid: (usize, usize),
    #[serde(default = "default_p")]
    pub p: f64,
}

impl ClaheConfig {
    fn clip() -> ClipLimit {
        ClipLimit::Fixed(2.0)
    }
    fn grid() -> (usize, usize) {
        (8, 8)
    }
}

/// Random affine about the image centre: rotation in +-`rotate` degrees, scale in `scale`
/// (one draw for both axes when `keep_ratio`, else x and y drawn independently), translation in
/// +-`translate` of the size, shear in +-`shear` degrees.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffineConfig {
    #[serde(default)]
    pub rotate: f64,
    #[serde(default = "AffineConfig::unit")]
    pub scale: (f64, f64),
    #[serde(default = "yes")]
    pub keep_ratio: bool,
    #[serde(default)]
    pub translate: f64,
    #[serde(default)]
    pub shear: f64,
    #[serde(default = "default_p")]
    pub p: f64,
}

impl AffineConfig {
    fn unit() -> (f64, f64) {
        (1.0, 1.0)
    }
}

/// Random resized crop: a region of `scale` of the image area with aspect ratio (relative to the
/// image's) in `ratio`, resized to the output.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CropConfig {
    #[serde(default = "CropConfig::scale")]
    pub scale: (f64, f64),
    #[serde(default = "CropConfig::ratio")]
    pub ratio: (f64, f64),
    #[serde(default = "default_p")]
    pub p: f64,
}

impl CropConfig {
    fn scale() -> (f64, f64) {
        (0.9, 1.0)
    }
    fn ratio() -> (f64, f64) {
        (3.0 / 4.0, 4.0 / 3.0)
    }
}

/// Horizontal flip with probability `p`; never applied to laterality-sensitive samples.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FlipConfig {
    #[serde(default = "FlipConfig::half")]
    pub p: f64,
}

impl FlipConfig {
    fn half() -> f64 {
        0.5
    }
}

/// CURE sends about 30 % of its training images through its test pipeline: with probability `p`
/// a sample gets only `clahe` (in CURE's code the test pipeline's own CLAHE: clip drawn in
/// [1, 4], always) and no crop, affine or flip.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EvalConfig {
    #[serde(default = "EvalConfig::cure_p")]
    pub p: f64,
    #[serde(default)]
    pub clahe: Option<ClaheConfig>,
}

impl EvalConfig {
    fn cure_p() -> f64 {
        0.3
    }
}

/// The whole augmentation; `None` parts are off (a part missing from the JSON is off too).
///
/// [`AugmentConfig::default`] is the light training augmentation that Python's `Augment()`
/// stands for (exported as `_core.AUGMENT_DEFAULTS`): CLAHE clip 2.0 on 8x8 tiles, always; an
/// affine of +-10 degrees, scale 0.95-1.05 and +-5 % translation, always; no crop, flip or
/// evaluation branch; boxes dropped below 25 % visibility.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AugmentConfig {
    pub clahe: Option<ClaheConfig>,
    pub affine: Option<AffineConfig>,
    pub crop: Option<CropConfig>,
    pub flip: Option<FlipConfig>,
    #[serde(default)]
    pub eval: Option<EvalConfig>,
    #[serde(default = "AugmentConfig::min_visible")]
    pub min_visible: f64,
    #[serde(default)]
    pub pipeline: Pipeline,
}

impl Default for ClaheConfig {
    fn default() -> Self {
        ClaheConfig {
            clip_limit: ClaheConfig::clip(),
            tile_grid: ClaheConfig::grid(),
            p: default_p(),
        }
    }
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            clahe: Some(ClaheConfig::default()),
            affine: Some(AffineConfig {
                rotate: 10.0,
                scale: (0.95, 1.05),
                keep_ratio: true,
                translate: 0.05,
                shear: 0.0,
                p: default_p(),
            }),
            crop: None,
            flip: None,
            eval: None,
            min_visible: AugmentConfig::min_visible(),
            pipeline: Pipeline::Fast,
        }
    }
}

impl AugmentConfig {
    fn min_visible() -> f64 {
        0.25
    }

    /// No augmentation (decode, resize, normalise): every part off, as an empty mapping reads.
    pub fn none() -> AugmentConfig {
        AugmentConfig {
            clahe: None,
            affine: None,
            crop: None,
            flip: None,
            eval: None,
            min_visible: AugmentConfig::min_visible(),
            pipeline: Pipeline::default(),
        }
    }

    pub fn from_json(text: &str) -> Result<AugmentConfig> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| Error::invalid(format!("augment: {e}")))?;
        AugmentConfig::from_value(value)
    }

    /// Parse and validate an already parsed JSON value (a Python dict crosses as one).
    pub fn from_value(value: serde_json::Value) -> Result<AugmentConfig> {
        let cfg: AugmentConfig =
            serde_json::from_value(value).map_err(|e| Error::invalid(format!("augment: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as a JSON value (the shape [`AugmentConfig::from_value`] reads).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an augment config always serialises")
    }

    pub fn validate(&self) -> Result<()> {
        let prob = |name: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "augment.{name}.p must be in [0, 1], got {p}"
                )))
            }
        };
        let range = |name: &str, (a, b): (f64, f64), lo: f64| {
            if a.is_finite() && b.is_finite() && lo < a && a <= b {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "augment.{name} must be a range ({lo} < low <= high), got ({a}, {b})"
                )))
            }
        };
        let clahe = |name: &str, c: &ClaheConfig| {
            prob(name, c.p)?;
            if !c.clip_limit.valid() || c.tile_grid.0 == 0 || c.tile_grid.1 == 0 {
                return Err(Error::invalid(format!(
                    "augment.{name} needs clip_limit >= 0 (or a range 0 <= low <= high) and \
                     tile_grid >= (1, 1)"
                )));
            }
            Ok(())
        };
        if let Some(c) = &self.clahe {
            clahe("clahe", c)?;
        }
        if let Some(e) = &self.eval {
            prob("eval", e.p)?;
            if let Some(c) = &e.clahe {
                clahe("eval.clahe", c)?;
            }
        }
        if let Some(a) = &self.affine {
            prob("affine", a.p)?;
            range("affine.scale", a.scale, 0.0)?;
            let finite = [a.rotate, a.translate, a.shear]
                .iter()
                .all(|v| v.is_finite() && *v >= 0.0);
            if !finite || a.shear >= 89.0 {
                return Err(Error::invalid(
                    "augment.affine rotate/translate/shear must be finite, >= 0, shear < 89",
                ));
            }
        }
        if let Some(c) = &self.crop {
            prob("crop", c.p)?;
            range("crop.scale", c.scale, 0.0)?;
            range("crop.ratio", c.ratio, 0.0)?;
            if c.scale.1 > 1.0 {
                return Err(Error::invalid("augment.crop.scale must not exceed 1"));
            }
        }
        if let Some(f) = &self.flip {
            prob("flip", f.p)?;
        }
        if !(0.0..=1.0).contains(&self.min_visible) {
            return Err(Error::invalid("augment.min_visible must be in [0, 1]"));
        }
        Ok(())
    }

    /// The smallest area fraction a crop can keep, for choosing the reduced decode size.
    pub fn min_crop_scale(&self) -> f64 {
        self.crop.as_ref().map_or(1.0, |c| c.scale.0)
    }

    /// Whether images are decoded at full resolution (the `cure` pipeline).
    pub fn full_resolution(&self) -> bool {
        self.pipeline == Pipeline::Cure
    }
}

/// The random decisions of one sample.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct Plan {
    /// Crop region as fractions of the image: `[x0, y0, w, h]` (the `fast` pipeline).
    pub crop: Option<[f64; 4]>,
    pub clahe: Option<(f64, usize, usize)>,
    /// Affine at the output size (forward matrix; the `fast` pipeline).
    pub affine: Option<Affine>,
    pub flip: bool,
    /// The `cure` pipeline's draws (`crop` and `affine` above are then `None`).
    #[serde(default)]
    pub cure: Option<CureDraws>,
}

/// The `cure` pipeline's geometric draws of one sample, turned into pixels by [`apply_cure`]
/// from the size the image has when each step runs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct CureDraws {
    pub crop: Option<CropDraws>,
    pub affine: Option<AffineDraws>,
}

/// `RandomResizedCrop`'s draws: its `scale` and `ratio` (absolute aspect, as albumentations) and
/// ten tries of uniform draws in [0, 1) `(area, log-ratio, y start, x start)`; a try whose crop
/// does not fit uses only its first two, as albumentations draws.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct CropDraws {
    pub scale: (f64, f64),
    pub ratio: (f64, f64),
    pub tries: [[f64; 4]; 10],
}

/// `Affine`'s draws: scale per axis, rotation and shear in degrees (shear as drawn; albumentations
/// uses its negative), translation as a fraction of the size (albumentations truncates
/// `fraction * size` to whole pixels).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
pub struct AffineDraws {
    pub scale_x: f64,
    pub scale_y: f64,
    pub rotate: f64,
    pub translate_x: f64,
    pub translate_y: f64,
    pub shear_x: f64,
    pub shear_y: f64,
}

// Counters of the per-sample stream: one per decision, fixed forever.
const C_CROP: u64 = 0;
const C_CLAHE: u64 = 8;
const C_AFFINE: u64 = 16;
const C_FLIP: u64 = 24;
const C_EVAL: u64 = 32;

fn uniform(key: u64, counter: u64, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng::unit_f64(rng::at(key, counter))
}

fn happens(key: u64, counter: u64, p: f64) -> bool {
    p >= 1.0 || (p > 0.0 && rng::unit_f64(rng::at(key, counter)) < p)
}

impl AugmentConfig {
    /// Draw the plan of the sample whose stream is `key`, for an output of `width` x `height`.
    pub fn plan(&self, key: u64, width: usize, height: usize, laterality_sensitive: bool) -> Plan {
        let cure = self.pipeline == Pipeline::Cure;
        if let Some(e) = self.eval.as_ref().filter(|e| happens(key, C_EVAL, e.p)) {
            let clahe = e.clahe.as_ref().map(|c| clahe_params(c, key));
            return Plan {
                crop: None,
                clahe,
                affine: None,
                flip: false,
                cure: cure.then(CureDraws::default),
            };
        }
        if cure {
            return self.plan_cure(key, laterality_sensitive);
        }
        let crop = self
            .crop
            .as_ref()
            .filter(|c| happens(key, C_CROP, c.p))
            .and_then(|c| {
                // torchvision's RandomResizedCrop rule: up to 10 tries, else keep the whole image
                (0..10).find_map(|attempt| {
                    let k = C_CROP + 1 + attempt * 4;
                    let area = uniform(key, k, c.scale.0, c.scale.1);
                    let log_ratio = uniform(key, k + 1, c.ratio.0.ln(), c.ratio.1.ln()).exp();
                    let (w, h) = ((area * log_ratio).sqrt(), (area / log_ratio).sqrt());
                    (w <= 1.0 && h <= 1.0).then(|| {
                        [
                            uniform(key, k + 2, 0.0, 1.0 - w),
                            uniform(key, k + 3, 0.0, 1.0 - h),
                            w,
                            h,
                        ]
                    })
                })
            });
        let clahe = self
            .clahe
            .as_ref()
            .filter(|c| happens(key, C_CLAHE, c.p))
            .map(|c| clahe_params(c, key));
        let affine = self
            .affine
            .as_ref()
            .filter(|a| happens(key, C_AFFINE, a.p))
            .map(|a| {
                let angle = uniform(key, C_AFFINE + 1, -a.rotate, a.rotate);
                let (sx, sy) = scales(a, key);
                let tx = uniform(key, C_AFFINE + 3, -a.translate, a.translate) * width as f64;
                let ty = uniform(key, C_AFFINE + 4, -a.translate, a.translate) * height as f64;
                let shear = uniform(key, C_AFFINE + 5, -a.shear, a.shear);
                centred_affine_xy(
                    angle,
                    (sx, sy),
                    shear,
                    tx,
                    ty,
                    width as f64 / 2.0,
                    height as f64 / 2.0,
                )
            });
        let flip = !laterality_sensitive
            && self
                .flip
                .as_ref()
                .is_some_and(|f| happens(key, C_FLIP, f.p));
        Plan {
            crop,
            clahe,
            affine,
            flip,
            cure: None,
        }
    }

    /// The `cure` pipeline's plan: the same decisions, kept as draws.
    fn plan_cure(&self, key: u64, laterality_sensitive: bool) -> Plan {
        let crop = self
            .crop
            .as_ref()
            .filter(|c| happens(key, C_CROP, c.p))
            .map(|c| CropDraws {
                scale: c.scale,
                ratio: c.ratio,
                tries: std::array::from_fn(|t| {
                    std::array::from_fn(|j| {
                        uniform(key, C_CROP + 1 + 4 * t as u64 + j as u64, 0.0, 1.0)
                    })
                }),
            });
        let clahe = self
            .clahe
            .as_ref()
            .filter(|c| happens(key, C_CLAHE, c.p))
            .map(|c| clahe_params(c, key));
        let affine = self
            .affine
            .as_ref()
            .filter(|a| happens(key, C_AFFINE, a.p))
            .map(|a| {
                let (scale_x, scale_y) = scales(a, key);
                AffineDraws {
                    scale_x,
                    scale_y,
                    rotate: uniform(key, C_AFFINE + 1, -a.rotate, a.rotate),
                    translate_x: uniform(key, C_AFFINE + 3, -a.translate, a.translate),
                    translate_y: uniform(key, C_AFFINE + 4, -a.translate, a.translate),
                    shear_x: uniform(key, C_AFFINE + 5, -a.shear, a.shear),
                    shear_y: uniform(key, C_AFFINE + 7, -a.shear, a.shear),
                }
            });
        let flip = !laterality_sensitive
            && self
                .flip
                .as_ref()
                .is_some_and(|f| happens(key, C_FLIP, f.p));
        Plan {
            crop: None,
            clahe,
            affine: None,
            flip,
            cure: Some(CureDraws { crop, affine }),
        }
    }
}

/// The x and y scale of a sample: one draw for both, or an independent second for y.
fn scales(a: &AffineConfig, key: u64) -> (f64, f64) {
    let sx = uniform(key, C_AFFINE + 2, a.scale.0, a.scale.1);
    if a.keep_ratio {
        (sx, sx)
    } else {
        (sx, uniform(key, C_AFFINE + 6, a.scale.0, a.scale.1))
    }
}

/// `(clip limit, tiles x, tiles y)` of a sample: a range draws its clip uniformly.
fn clahe_params(c: &ClaheConfig, key: u64) -> (f64, usize, usize) {
    let clip = match c.clip_limit {
        ClipLimit::Fixed(v) => v,
        ClipLimit::Range(lo, hi) => uniform(key, C_CLAHE + 1, lo, hi),
    };
    (clip, c.tile_grid.0, c.tile_grid.1)
}

/// Forward matrix: about centre `(cx, cy)`, scale, shear (x by y), rotate `angle` degrees
/// counter-clockwise on screen (OpenCV's `getRotationMatrix2D` sense), then translate.
pub fn centred_affine(
    angle: f64,
    scale: f64,
    shear: f64,
    tx: f64,
    ty: f64,
    cx: f64,
    cy: f64,
) -> Affine {
    centred_affine_xy(angle, (scale, scale), shear, tx, ty, cx, cy)
}

/// [`centred_affine`] with its own scale per axis (`(x, y)`, applied first).
pub fn centred_affine_xy(
    angle: f64,
    (sx, sy): (f64, f64),
    shear: f64,
    tx: f64,
    ty: f64,
    cx: f64,
    cy: f64,
) -> Affine {
    let (s, c) = angle.to_radians().sin_cos();
    let k = shear.to_radians().tan();
    // R * Sh * S with R = [[c, s], [-s, c]] (y axis down), Sh = [[1, k], [0, 1]], S = diag(sx, sy)
    let a = [[c * sx, (c * k + s) * sy], [-s * sx, (-s * k + c) * sy]];
    [
        [a[0][0], a[0][1], cx + tx - a[0][0] * cx - a[0][1] * cy],
        [a[1][0], a[1][1], cy + ty - a[1][0] * cx - a[1][1] * cy],
    ]
}

/// `a` after `b` (apply `b` first).
fn compose(a: &Affine, b: &Affine) -> Affine {
    [
        [
            a[0][0] * b[0][0] + a[0][1] * b[1][0],
            a[0][0] * b[0][1] + a[0][1] * b[1][1],
            a[0][0] * b[0][2] + a[0][1] * b[1][2] + a[0][2],
        ],
        [
            a[1][0] * b[0][0] + a[1][1] * b[1][0],
            a[1][0] * b[0][1] + a[1][1] * b[1][1],
            a[1][0] * b[0][2] + a[1][1] * b[1][2] + a[1][2],
        ],
    ]
}

/// The image after augmentation, and each input box in output pixels (`None`: dropped).
pub struct Augmented<T> {
    pub image: Image<T>,
    pub boxes: Vec<Option<BoxXyxy>>,
}

/// Apply `plan` to a decoded image. `boxes` are in source-image pixels and `decoded_scale` is
/// decoded pixels per source pixel (1 / the DCT scale denominator) along x and y.
pub fn apply<T: Sample>(
    img: ImageRef<'_, T>,
    decoded_scale: (f64, f64),
    boxes: &[BoxXyxy],
    plan: &Plan,
    width: usize,
    height: usize,
    min_visible: f64,
) -> Result<Augmented<T>> {
    let (iw, ih) = (img.width, img.height);
    // 1. crop region in decoded pixels (whole pixels, at least 1x1)
    let (x0, y0, cw, ch) = match plan.crop {
        Some([fx, fy, fw, fh]) => {
            let cw = ((fw * iw as f64).round() as usize).clamp(1, iw);
            let ch = ((fh * ih as f64).round() as usize).clamp(1, ih);
            let x0 = ((fx * iw as f64).round() as usize).min(iw - cw);
            let y0 = ((fy * ih as f64).round() as usize).min(ih - ch);
            (x0, y0, cw, ch)
        }
        None => (0, 0, iw, ih),
    };
    // 2. crop + resize to the output size
    let mut out = if (x0, y0, cw, ch) == (0, 0, iw, ih) {
        if (iw, ih) == (width, height) {
            Image {
                width,
                height,
                channels: img.channels,
                data: img.data.to_vec(),
            }
        } else {
            resize(img, width, height, resize_mode(iw, ih, width, height))?
        }
    } else {
        let cropped = crop(img, x0, y0, cw, ch);
        resize(
            cropped.view(),
            width,
            height,
            resize_mode(cw, ch, width, height),
        )?
    };
    // source px -> decoded px -> crop -> output px
    let (sx, sy) = (width as f64 / cw as f64, height as f64 / ch as f64);
    let to_output: Affine = [
        [decoded_scale.0 * sx, 0.0, -(x0 as f64) * sx],
        [0.0, decoded_scale.1 * sy, -(y0 as f64) * sy],
    ];
    // 3. CLAHE and 4. affine, at the output size
    if let Some((clip, tx, ty)) = plan.clahe {
        if out.channels == 1 {
            out = clahe(out.view(), clip, tx, ty)?;
        }
    }
    let total = match &plan.affine {
        Some(m) => {
            out = warp_affine(out.view(), m, width, height)?;
            compose(m, &to_output)
        }
        None => to_output,
    };
    let (kept, keep) = warp_boxes(boxes, &total, width, height, min_visible)?;
    let mut kept = kept.into_iter();
    let mut mapped: Vec<Option<BoxXyxy>> = keep
        .iter()
        .map(|&k| if k { kept.next() } else { None })
        .collect();
    // 5. flip
    if plan.flip {
        out = flip::hflip(out.view());
        for b in mapped.iter_mut().flatten() {
            *b = [width as f64 - b[2], b[1], width as f64 - b[0], b[3]];
        }
    }
    Ok(Augmented {
        image: out,
        boxes: mapped,
    })
}

/// Apply the `cure` pipeline's `plan` (from [`AugmentConfig::plan`] with `pipeline: "cure"`) to a
/// decoded image: albumentations 2.0.8's `CLAHE -> RandomResizedCrop -> Affine -> HorizontalFlip
/// -> Resize` as CURE composes them (module docs), on 8 bits. `boxes` are in source-image pixels,
/// `decoded_scale` as for [`apply`]; the returned boxes are in output pixels. A box is kept as
/// albumentations keeps it with `BboxParams(min_visibility=min_visible)`: after every step it is
/// clipped to the image, and dropped when its area before clipping is below 1e-7 pixels or the
/// clipped part is below `min_visible` of that area.
pub fn apply_cure<T: Sample>(
    img: ImageRef<'_, T>,
    decoded_scale: (f64, f64),
    boxes: &[BoxXyxy],
    plan: &Plan,
    width: usize,
    height: usize,
    min_visible: f64,
) -> Result<Augmented<u8>> {
    if width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "augment: output size must be positive, got {width}x{height}"
        )));
    }
    if !(0.0..=1.0).contains(&min_visible) {
        return Err(Error::invalid("augment.min_visible must be in [0, 1]"));
    }
    if let Some(i) = boxes.iter().position(|b| b.iter().any(|v| !v.is_finite())) {
        return Err(Error::invalid(format!(
            "augment: box {i} has a non-finite coordinate: {:?}",
            boxes[i]
        )));
    }
    let draws = plan.cure.clone().unwrap_or_default();
    // CURE's loader: 16-bit images are min-maxed to 8 bits (8-bit ones are borrowed)
    let converted;
    let base: ImageRef<'_, u8> = match T::as_bytes(img.data) {
        Some(bytes) => ImageRef::new(img.width, img.height, img.channels, bytes)?,
        None => {
            converted = minmax_to_u8(img);
            converted.view()
        }
    };
    // the image after the last step that changed it
    let mut out: Option<Image<u8>> = None;
    // boxes as albumentations holds them: normalised to the current image
    let (iw, ih) = (base.width as f64, base.height as f64);
    let mut nb: Vec<Option<BoxXyxy>> = boxes
        .iter()
        .map(|b| {
            let (sx, sy) = (decoded_scale.0 / iw, decoded_scale.1 / ih);
            Some([b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
        })
        .collect();
    let filter = |nb: &mut Vec<Option<BoxXyxy>>, img: ImageRef<'_, u8>| {
        filter_boxes(nb, img.width as f64, img.height as f64, min_visible)
    };
    // 1. CLAHE at full resolution, on CIELAB L
    if let Some((clip, tx, ty)) = plan.clahe {
        out = Some(clahe_lab(current(&out, base), clip, tx, ty)?);
        filter(&mut nb, current(&out, base));
    }
    // 2. random resized crop: the crop resized (cubic) to the output size
    if let Some(c) = &draws.crop {
        let now = current(&out, base);
        let (w0, h0) = (now.width as f64, now.height as f64);
        let (x0, y0, cw, ch) = crop_coords(c, now.width, now.height);
        let region = crop(now, x0, y0, cw, ch);
        out = Some(resize(region.view(), width, height, Interpolation::Cubic)?);
        let (fx, fy, fw, fh) = (x0 as f64, y0 as f64, cw as f64, ch as f64);
        for b in nb.iter_mut().flatten() {
            *b = [
                (b[0] * w0 - fx) / fw,
                (b[1] * h0 - fy) / fh,
                (b[2] * w0 - fx) / fw,
                (b[3] * h0 - fy) / fh,
            ];
        }
        filter(&mut nb, current(&out, base));
    }
    // 3. affine (cubic) at the size the image has now
    if let Some(a) = &draws.affine {
        let (w, h) = (current(&out, base).width, current(&out, base).height);
        let (fw, fh) = (w as f64, h as f64);
        let image_m = cure_affine(a, w, h, (fw / 2.0 - 0.5, fh / 2.0 - 0.5));
        let box_m = cure_affine(a, w, h, (fw / 2.0, fh / 2.0));
        if !is_identity(&image_m) {
            out = Some(warp_affine_cubic(
                current(&out, base),
                &[image_m[0], image_m[1]],
                w,
                h,
            )?);
        }
        if !is_identity(&box_m) {
            let map = |x: f64, y: f64| {
                (
                    box_m[0][0] * x + box_m[0][1] * y + box_m[0][2],
                    box_m[1][0] * x + box_m[1][1] * y + box_m[1][2],
                )
            };
            for slot in nb.iter_mut() {
                let Some(b) = *slot else { continue };
                let (x1, y1, x2, y2) = (b[0] * fw, b[1] * fh, b[2] * fw, b[3] * fh);
                let corners = [map(x1, y1), map(x2, y1), map(x2, y2), map(x1, y2)];
                let lo_x = corners.iter().map(|c| c.0).fold(f64::INFINITY, f64::min);
                let hi_x = corners
                    .iter()
                    .map(|c| c.0)
                    .fold(f64::NEG_INFINITY, f64::max);
                let lo_y = corners.iter().map(|c| c.1).fold(f64::INFINITY, f64::min);
                let hi_y = corners
                    .iter()
                    .map(|c| c.1)
                    .fold(f64::NEG_INFINITY, f64::max);
                // albumentations' `validate_bboxes`: drop what lies entirely outside
                *slot = (hi_x > 0.0 && hi_y > 0.0 && lo_x < fw && lo_y < fh).then_some([
                    lo_x / fw,
                    lo_y / fh,
                    hi_x / fw,
                    hi_y / fh,
                ]);
            }
        }
        filter(&mut nb, current(&out, base));
    }
    // 4. horizontal flip
    if plan.flip {
        out = Some(flip::hflip(current(&out, base)));
        for b in nb.iter_mut().flatten() {
            *b = [1.0 - b[2], b[1], 1.0 - b[0], b[3]];
        }
        filter(&mut nb, current(&out, base));
    }
    // 5. resize (cubic) to the output size; then the final filter of `Compose`
    let out = resize(current(&out, base), width, height, Interpolation::Cubic)?;
    filter(&mut nb, out.view());
    filter(&mut nb, out.view());
    let (fw, fh) = (width as f64, height as f64);
    let boxes = nb
        .into_iter()
        .map(|b| b.map(|b| [b[0] * fw, b[1] * fh, b[2] * fw, b[3] * fh]))
        .collect();
    Ok(Augmented { image: out, boxes })
}

/// The image after the last step that changed it, or the source.
fn current<'a>(out: &'a Option<Image<u8>>, base: ImageRef<'a, u8>) -> ImageRef<'a, u8> {
    out.as_ref().map_or(base, Image::view)
}

/// albumentations' `filter_bboxes` with `min_area = min_width = min_height = 0`: clip each box
/// to the image (in pixels, then normalised back), drop it when its area before clipping is
/// below 1e-7 pixels or the clipped part is below `min_visible` of that area.
fn filter_boxes(nb: &mut [Option<BoxXyxy>], w: f64, h: f64, min_visible: f64) {
    const EPS: f64 = 1e-7;
    for slot in nb.iter_mut() {
        let Some(b) = *slot else { continue };
        let area = ((b[2] - b[0]) * w) * ((b[3] - b[1]) * h);
        let c = [
            (b[0] * w).clamp(0.0, w) / w,
            (b[1] * h).clamp(0.0, h) / h,
            (b[2] * w).clamp(0.0, w) / w,
            (b[3] * h).clamp(0.0, h) / h,
        ];
        let clipped = ((c[2] - c[0]) * w) * ((c[3] - c[1]) * h);
        let (cw, ch) = (c[2] * w - c[0] * w, c[3] * h - c[1] * h);
        let keep = area >= EPS
            && clipped >= -EPS
            && clipped / (area + EPS) >= min_visible
            && cw >= -EPS
            && ch >= -EPS;
        *slot = keep.then_some(c);
    }
}

/// `RandomResizedCrop.get_params_dependent_on_data` of albumentations 2.0.8 with the given
/// draws: `(x0, y0, width, height)` of the crop in an image of `w` x `h`.
fn crop_coords(c: &CropDraws, w: usize, h: usize) -> (usize, usize, usize, usize) {
    let area = (h * w) as f64;
    let (min_area, max_area) = (c.scale.0 * area, c.scale.1 * area);
    let (lo, hi) = (c.ratio.0.ln(), c.ratio.1.ln());
    for t in &c.tries {
        // Python's `random.uniform(a, b)` is `a + (b - a) * random()`
        let target = min_area + (max_area - min_area) * t[0];
        let aspect = (lo + (hi - lo) * t[1]).exp();
        let cw = (target * aspect).sqrt().round_ties_even();
        let ch = (target / aspect).sqrt().round_ties_even();
        if 0.0 < cw && cw <= w as f64 && 0.0 < ch && ch <= h as f64 {
            let (cw, ch) = (cw as usize, ch as usize);
            let y0 = ((h - ch + 1) as f64 * t[2]) as usize;
            let x0 = ((w - cw + 1) as f64 * t[3]) as usize;
            return (x0.min(w - cw), y0.min(h - ch), cw, ch);
        }
    }
    // central crop at the nearest allowed aspect
    let ratio = w as f64 / h as f64;
    let (cw, ch) = if ratio < c.ratio.0 {
        (w, (w as f64 / c.ratio.0).round_ties_even() as usize)
    } else if ratio > c.ratio.1 {
        ((h as f64 * c.ratio.1).round_ties_even() as usize, h)
    } else {
        (w, h)
    };
    let (cw, ch) = (cw.clamp(1, w), ch.clamp(1, h));
    ((w - cw) / 2, (h - ch) / 2, cw, ch)
}

type Mat3 = [[f64; 3]; 3];

fn mat3_mul(a: &Mat3, b: &Mat3) -> Mat3 {
    std::array::from_fn(|i| {
        std::array::from_fn(|j| a[i][0] * b[0][j] + a[i][1] * b[1][j] + a[i][2] * b[2][j])
    })
}

/// albumentations 2.0.8's `create_affine_transformation_matrix` for `Affine`'s draws on an image
/// of `w` x `h` about `shift` (`(w / 2 - 0.5, h / 2 - 0.5)` for the image, `(w / 2, h / 2)` for
/// boxes): `shift back @ translate @ shear @ rotate @ scale @ shift to the origin`, evaluated left
/// to right, with the translation truncated to whole pixels and the shear negated.
fn cure_affine(a: &AffineDraws, w: usize, h: usize, shift: (f64, f64)) -> Mat3 {
    let rotate = a.rotate.rem_euclid(360.0).to_radians();
    let (s, c) = (rotate.sin(), rotate.cos());
    let (kx, ky) = (
        (-a.shear_x).to_radians().tan(),
        (-a.shear_y).to_radians().tan(),
    );
    // Python's `int()`: towards zero
    let tx = (a.translate_x * w as f64).trunc();
    let ty = (a.translate_y * h as f64).trunc();
    let shift_back = [[1.0, 0.0, shift.0], [0.0, 1.0, shift.1], [0.0, 0.0, 1.0]];
    let translate = [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]];
    let shear = [[1.0, kx, 0.0], [ky, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let rot = [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]];
    let scale = [
        [a.scale_x, 0.0, 0.0],
        [0.0, a.scale_y, 0.0],
        [0.0, 0.0, 1.0],
    ];
    let to_origin = [[1.0, 0.0, -shift.0], [0.0, 1.0, -shift.1], [0.0, 0.0, 1.0]];
    let m = mat3_mul(&shift_back, &translate);
    let m = mat3_mul(&m, &shear);
    let m = mat3_mul(&m, &rot);
    let m = mat3_mul(&m, &scale);
    let mut m = mat3_mul(&m, &to_origin);
    m[2] = [0.0, 0.0, 1.0];
    m
}

/// `np.allclose(m, np.eye(3))`.
fn is_identity(m: &Mat3) -> bool {
    (0..3).all(|i| {
        (0..3).all(|j| {
            let e = if i == j { 1.0 } else { 0.0 };
            (m[i][j] - e).abs() <= 1e-8 + 1e-5 * e
        })
    })
}

fn resize_mode(w: usize, h: usize, out_w: usize, out_h: usize) -> Interpolation {
    if w >= out_w && h >= out_h {
        Interpolation::Area
    } else {
        Interpolation::Bilinear
    }
}

fn crop<T: Sample>(img: ImageRef<'_, T>, x0: usize, y0: usize, w: usize, h: usize) -> Image<T> {
    let c = img.channels;
    let mut data = Vec::with_capacity(w * h * c);
    for y in y0..y0 + h {
        data.extend_from_slice(&img.row(y)[x0 * c..(x0 + w) * c]);
    }
    Image {
        width: w,
        height: h,
        channels: c,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cure() -> AugmentConfig {
        AugmentConfig::from_json(
            r#"{"clahe": {"clip_limit": 4.0, "p": 0.5}, "crop": {"scale": [0.9, 1.0], "p": 0.3},
                "affine": {"rotate": 15, "scale": [0.9, 1.1], "translate": 0.1, "p": 0.5}}"#,
        )
        .unwrap()
    }

    #[test]
    fn plans_are_pure_functions_of_the_key() {
        let cfg = cure();
        for key in 0..50 {
            assert_eq!(cfg.plan(key, 512, 512, true), cfg.plan(key, 512, 512, true));
        }
        let plans: Vec<_> = (0..400)
            .map(|k| cfg.plan(rng::derive_key(1, &[0, k]), 512, 512, true))
            .collect();
        let frac = |f: &dyn Fn(&Plan) -> bool| {
            plans.iter().filter(|p| f(p)).count() as f64 / plans.len() as f64
        };
        assert!((frac(&|p| p.clahe.is_some()) - 0.5).abs() < 0.1);
        assert!((frac(&|p| p.crop.is_some()) - 0.3).abs() < 0.1);
        assert!((frac(&|p| p.affine.is_some()) - 0.5).abs() < 0.1);
        assert!(plans.iter().all(|p| !p.flip));
    }

    #[test]
    fn cure_clip_range_and_eval_fraction() {
        // CURE: clip uniform on [1, 4] (p 0.5), ~30 % of samples through the eval pipeline
        let cfg = AugmentConfig::from_json(
            r#"{"clahe": {"clip_limit": [1.0, 4.0], "p": 0.5},
                "affine": {"rotate": 15, "p": 0.5},
                "eval": {"p": 0.3, "clahe": {"clip_limit": 3.0}}}"#,
        )
        .unwrap();
        let n = 20_000;
        let plans: Vec<_> = (0..n)
            .map(|k| cfg.plan(rng::derive_key(7, &[0, k]), 64, 64, true))
            .collect();
        let eval: Vec<_> = plans
            .iter()
            .filter(|p| p.clahe.is_some_and(|c| c.0 == 3.0) && p.affine.is_none())
            .collect();
        let frac = eval.len() as f64 / n as f64;
        assert!(
            (frac - 0.3).abs() < 4.0 * (0.3f64 * 0.7 / n as f64).sqrt(),
            "{frac}"
        );
        let clips: Vec<f64> = plans
            .iter()
            .filter_map(|p| p.clahe.map(|c| c.0))
            .filter(|&c| c != 3.0)
            .collect();
        let mean = clips.iter().sum::<f64>() / clips.len() as f64;
        assert!(clips.iter().all(|&c| (1.0..=4.0).contains(&c)));
        assert!((mean - 2.5).abs() < 0.05, "{mean}"); // uniform [1, 4]: mean 2.5, sd 0.87
                                                      // among the training-pipeline samples, CLAHE is drawn with p 0.5
        let train = n as f64 - eval.len() as f64;
        assert!((clips.len() as f64 / train - 0.5).abs() < 0.02);
        assert!(AugmentConfig::from_json(r#"{"clahe": {"clip_limit": [4.0, 1.0]}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"eval": {"p": 2.0}}"#).is_err());
    }

    #[test]
    fn the_default_is_valid_and_round_trips_through_json() {
        let d = AugmentConfig::default();
        d.validate().unwrap();
        assert_eq!(AugmentConfig::from_value(d.to_value()).unwrap(), d);
        let v = d.to_value();
        assert_eq!(v["clahe"]["clip_limit"], serde_json::json!(2.0));
        assert_eq!(v["affine"]["scale"], serde_json::json!([0.95, 1.05]));
        assert!(v["crop"].is_null() && v["flip"].is_null() && v["eval"].is_null());
        // a part missing from the JSON is off, not defaulted
        let off = AugmentConfig::from_json("{}").unwrap();
        assert!(off.clahe.is_none() && off.affine.is_none() && off.min_visible == 0.25);
    }

    #[test]
    fn crops_stay_inside_the_image() {
        let cfg =
            AugmentConfig::from_json(r#"{"crop": {"scale": [0.08, 1.0], "p": 1.0}}"#).unwrap();
        for key in 0..500 {
            if let Some([x, y, w, h]) = cfg.plan(key, 64, 64, true).crop {
                assert!(x >= 0.0 && y >= 0.0 && x + w <= 1.0 + 1e-12 && y + h <= 1.0 + 1e-12);
            }
        }
    }

    #[test]
    fn rotation_matrix_matches_opencv_convention() {
        // cv2.getRotationMatrix2D((50, 40), 30, 1.0)
        let m = centred_affine(30.0, 1.0, 0.0, 0.0, 0.0, 50.0, 40.0);
        let expect = [[0.8660254, 0.5, -13.30127], [-0.5, 0.8660254, 30.358984]];
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - expect[r][c]).abs() < 1e-5, "{m:?}");
            }
        }
    }

    fn cure_cfg() -> AugmentConfig {
        AugmentConfig::from_json(
            r#"{"pipeline": "cure",
                "clahe": {"clip_limit": [1.0, 4.0], "p": 0.5},
                "crop": {"scale": [0.9, 1.0], "ratio": [0.75, 1.3333333333333333], "p": 0.3},
                "affine": {"rotate": 15, "scale": [0.9, 1.1], "keep_ratio": false,
                           "translate": 0.1, "p": 0.5},
                "eval": {"p": 0.3, "clahe": {"clip_limit": [1.0, 4.0], "p": 1.0}},
                "min_visible": 0.0}"#,
        )
        .unwrap()
    }

    #[test]
    fn cure_plans_keep_draws_and_their_shares() {
        let cfg = cure_cfg();
        assert!(cfg.full_resolution() && !AugmentConfig::default().full_resolution());
        let n = 4000;
        let plans: Vec<_> = (0..n)
            .map(|k| cfg.plan(rng::derive_key(3, &[0, k]), 64, 64, true))
            .collect();
        let count = |f: &dyn Fn(&Plan) -> bool| plans.iter().filter(|p| f(p)).count() as f64;
        assert!(plans
            .iter()
            .all(|p| p.cure.is_some() && p.crop.is_none() && p.affine.is_none()));
        let geometric = |p: &Plan| {
            let c = p.cure.as_ref().unwrap();
            c.crop.is_some() || c.affine.is_some()
        };
        // the test pipeline (30 %): CLAHE always, nothing geometric; the training pipeline: CLAHE
        // 0.5, crop 0.3, affine 0.5 - CLAHE alone looks the same: 0.3 + 0.7 * 0.5 * 0.7 * 0.5
        let n = n as f64;
        let clahe_only = count(&|p| p.clahe.is_some() && !geometric(p)) / n;
        let crop = count(&|p| p.cure.as_ref().unwrap().crop.is_some()) / n;
        let affine = count(&|p| p.cure.as_ref().unwrap().affine.is_some()) / n;
        assert!((clahe_only - 0.4225).abs() < 0.03, "{clahe_only}");
        assert!((crop - 0.7 * 0.3).abs() < 0.03, "{crop}");
        assert!((affine - 0.7 * 0.5).abs() < 0.03, "{affine}");
        for p in &plans {
            let c = p.cure.as_ref().unwrap();
            if let Some(a) = c.affine {
                assert!((0.9..=1.1).contains(&a.scale_x) && (0.9..=1.1).contains(&a.scale_y));
                assert!(a.scale_x != a.scale_y && a.shear_x == 0.0 && a.rotate.abs() <= 15.0);
            }
            if let Some(cr) = &c.crop {
                assert!(cr.tries.iter().flatten().all(|u| (0.0..1.0).contains(u)));
            }
            if let Some((clip, 8, 8)) = p.clahe {
                assert!((1.0..=4.0).contains(&clip));
            }
        }
        // the fast pipeline draws the same affine decisions as one matrix
        let mut fast = cfg.clone();
        fast.pipeline = Pipeline::Fast;
        let p = fast.plan(rng::derive_key(3, &[0, 7]), 64, 64, true);
        assert!(p.cure.is_none());
    }

    #[test]
    fn crop_coordinates_follow_albumentations() {
        let draws = |scale: (f64, f64), ratio: (f64, f64), u: [f64; 4]| CropDraws {
            scale,
            ratio,
            tries: [u; 10],
        };
        // area 8100 of 10000, aspect 1: 90 x 90; starts int(11 * 0.5) = 5, int(11 * 0.25) = 2
        let c = draws((0.81, 0.81), (1.0, 1.0), [0.3, 0.7, 0.5, 0.25]);
        assert_eq!(crop_coords(&c, 100, 100), (2, 5, 90, 90));
        // no try fits (115 > 100): the central crop at the nearest allowed aspect, 100 x 75
        let c = draws((1.0, 1.0), (4.0 / 3.0, 4.0 / 3.0), [0.5; 4]);
        assert_eq!(crop_coords(&c, 100, 100), (0, 12, 100, 75));
        // Python's round(): half to even (sqrt(110.25 * 1) = 10.5 -> 10)
        let c = draws((0.011025, 0.011025), (1.0, 1.0), [0.0; 4]);
        assert_eq!(crop_coords(&c, 100, 100), (0, 0, 10, 10));
    }

    #[test]
    fn cure_matrix_equals_albumentations() {
        // create_affine_transformation_matrix(translate={x: int(0.05 * 64), y: int(-0.07 * 48)},
        // shear={x: -2, y: -1}, scale={x: 1.1, y: 0.9}, rotate=-12.5, center((48, 64))),
        // albumentations 2.0.8 with NumPy
        let a = AffineDraws {
            scale_x: 1.1,
            scale_y: 0.9,
            rotate: -12.5,
            translate_x: 0.05,
            translate_y: -0.07,
            shear_x: 2.0,
            shear_y: 1.0,
        };
        let m = cure_affine(&a, 64, 48, (31.5, 23.5));
        let want = [
            [1.06561154617799, -0.2254793595826066, 6.23200124558457],
            [0.21933813411913136, 0.8820665771708351, -7.137715788267265],
        ];
        for r in 0..2 {
            for c in 0..3 {
                assert!((m[r][c] - want[r][c]).abs() < 1e-13, "{m:?}");
            }
        }
        assert!(!is_identity(&m));
        let still = AffineDraws {
            scale_x: 1.0,
            scale_y: 1.0,
            rotate: 0.0,
            translate_x: 0.001,
            translate_y: 0.0,
            shear_x: 0.0,
            shear_y: 0.0,
        };
        // a translation below one pixel truncates to 0: the identity, no warp
        assert!(is_identity(&cure_affine(&still, 64, 48, (31.5, 23.5))));
    }

    #[test]
    fn boxes_are_clipped_after_each_step() {
        let mut nb = vec![
            Some([0.1, 0.2, 0.5, 0.6]),
            Some([-0.5, 0.2, 0.25, 0.6]), // partly outside: clipped
            Some([1.2, 0.2, 1.5, 0.6]),   // outside: clipped to zero width, dropped next step
            Some([0.3, 0.3, 0.3, 0.4]),   // no area: dropped
        ];
        filter_boxes(&mut nb, 100.0, 50.0, 0.0);
        assert_eq!(nb[0], Some([0.1, 0.2, 0.5, 0.6]));
        assert_eq!(nb[1], Some([0.0, 0.2, 0.25, 0.6]));
        assert_eq!(nb[2], Some([1.0, 0.2, 1.0, 0.6]));
        assert_eq!(nb[3], None);
        filter_boxes(&mut nb, 100.0, 50.0, 0.0);
        assert!(nb[2].is_none() && nb[1].is_some());
        // min_visible: a third visible is dropped at 0.5
        let mut nb = vec![Some([-0.5, 0.0, 0.25, 1.0])];
        filter_boxes(&mut nb, 10.0, 10.0, 0.5);
        assert_eq!(nb, vec![None]);
    }

    #[test]
    fn cure_apply_is_eight_bit_and_grey_equals_green() {
        let cfg = cure_cfg();
        let (w, h) = (61, 47);
        let grey: Vec<u16> = (0..w * h)
            .map(|i| ((i * 7919) % 4096) as u16 * 16)
            .collect();
        let img16 = ImageRef::new(w, h, 1, &grey).unwrap();
        let img8 = minmax_to_u8(img16);
        let rgb: Vec<u8> = img8.data.iter().flat_map(|&v| [v; 3]).collect();
        let img3 = ImageRef::new(w, h, 3, &rgb).unwrap();
        let boxes = [[5.0, 4.0, 30.0, 40.0]];
        for k in 0..40 {
            let plan = cfg.plan(rng::derive_key(11, &[0, k]), 32, 24, true);
            let a = apply_cure(img16, (1.0, 1.0), &boxes, &plan, 32, 24, 0.0).unwrap();
            let b = apply_cure(img8.view(), (1.0, 1.0), &boxes, &plan, 32, 24, 0.0).unwrap();
            let c = apply_cure(img3, (1.0, 1.0), &boxes, &plan, 32, 24, 0.0).unwrap();
            assert_eq!(a.image, b.image);
            assert_eq!(
                (a.image.width, a.image.height, c.image.channels),
                (32, 24, 3)
            );
            let green: Vec<u8> = c.image.data.chunks_exact(3).map(|p| p[1]).collect();
            assert_eq!(b.image.data, green, "sample {k}");
            assert_eq!(a.boxes, c.boxes);
        }
        let plan = cfg.plan(1, 32, 24, true);
        assert!(apply_cure(
            img8.view(),
            (1.0, 1.0),
            &[[0.0, 0.0, f64::NAN, 1.0]],
            &plan,
            8,
            8,
            0.0
        )
        .is_err());
        assert!(apply_cure(img8.view(), (1.0, 1.0), &[], &plan, 0, 8, 0.0).is_err());
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(AugmentConfig::from_json(r#"{"clahe": {"p": 1.5}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"affine": {"scale": [1.1, 0.9]}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"blur": {}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"crop": {"scale": [0.5, 1.2]}}"#).is_err());
    }
}
