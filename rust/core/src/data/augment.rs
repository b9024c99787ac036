//! Augmentation as data (CURE's recipe: CLAHE, random resized crop, affine, optional flip) and
//! its per-sample plan.
//!
//! Every random choice of a sample is drawn from `key = derive_key(seed, [epoch, index])` with a
//! fixed counter per decision, so the result does not depend on thread count, scheduling or which
//! other samples were drawn, and adding a decision later does not shift the others.
//!
//! The work is done at the output size: the decoder has already shrunk by a power of two, the
//! crop and the resize to the output size come first (area averaging), then CLAHE and the affine
//! warp run on the small image. Boxes go through the same composed matrix once, with the box
//! rule of docs/image.md, "Oracle conventions" (clip to the output, drop below `min_visible` of the mapped area).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::image::resize::{resize, Interpolation};
use crate::image::warp::{warp_affine, warp_boxes, Affine};
use crate::image::{clahe::clahe, flip, BoxXyxy, Image, ImageRef, Sample};
use crate::rng;

fn default_p() -> f64 {
    1.0
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

/// Random affine about the image centre: rotation in +-`rotate` degrees, isotropic scale in
/// `scale`, translation in +-`translate` of the output size, shear in +-`shear` degrees.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AffineConfig {
    #[serde(default)]
    pub rotate: f64,
    #[serde(default = "AffineConfig::unit")]
    pub scale: (f64, f64),
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

/// CURE sends about 30 % of its training images through the evaluation pipeline: with
/// probability `p` a sample gets only `clahe` (CURE's evaluation CLAHE, clip 3.0) and no crop,
/// affine or flip.
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
                translate: 0.05,
                shear: 0.0,
                p: default_p(),
            }),
            crop: None,
            flip: None,
            eval: None,
            min_visible: AugmentConfig::min_visible(),
        }
    }
}

impl AugmentConfig {
    fn min_visible() -> f64 {
        0.25
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
}

/// The random decisions of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Crop region as fractions of the image: `[x0, y0, w, h]`.
    pub crop: Option<[f64; 4]>,
    pub clahe: Option<(f64, usize, usize)>,
    /// Affine at the output size (forward matrix).
    pub affine: Option<Affine>,
    pub flip: bool,
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
        if let Some(e) = self.eval.as_ref().filter(|e| happens(key, C_EVAL, e.p)) {
            let clahe = e.clahe.as_ref().map(|c| clahe_params(c, key));
            return Plan {
                crop: None,
                clahe,
                affine: None,
                flip: false,
            };
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
                let scale = uniform(key, C_AFFINE + 2, a.scale.0, a.scale.1);
                let tx = uniform(key, C_AFFINE + 3, -a.translate, a.translate) * width as f64;
                let ty = uniform(key, C_AFFINE + 4, -a.translate, a.translate) * height as f64;
                let shear = uniform(key, C_AFFINE + 5, -a.shear, a.shear);
                centred_affine(
                    angle,
                    scale,
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
        }
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
    let (s, c) = angle.to_radians().sin_cos();
    let k = shear.to_radians().tan();
    // R * Sh * S with R = [[c, s], [-s, c]] (y axis down), Sh = [[1, k], [0, 1]]
    let a = [
        [c * scale, (c * k + s) * scale],
        [-s * scale, (-s * k + c) * scale],
    ];
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

    #[test]
    fn bad_configs_are_refused() {
        assert!(AugmentConfig::from_json(r#"{"clahe": {"p": 1.5}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"affine": {"scale": [1.1, 0.9]}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"blur": {}}"#).is_err());
        assert!(AugmentConfig::from_json(r#"{"crop": {"scale": [0.5, 1.2]}}"#).is_err());
    }
}
