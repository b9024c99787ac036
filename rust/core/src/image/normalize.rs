//! Conversion to float32 with per-channel mean/std (docs/image.md), in the torchvision convention: `mean`/`std` are given on the
//! [0, 1] scale, `out = (v / MAX - mean[c]) / std[c]` with `MAX` = 255 or 65535 by sample type.
//!
//! Speed: the formula is folded into one multiply-add per sample, `v * scale[c] + offset[c]` with
//! `scale = 1 / (MAX * std)` and `offset = -mean / std` computed once in `f64`. The result differs
//! from the two-step formula by at most a couple of `f32` ulps. Several channels are processed as a
//! repeating pattern of 16 pixels so that the loop stays a plain vectorised multiply-add.

use super::{Image, ImageRef, Sample};
use crate::error::{Error, Result};

/// Pixels per pattern block for interleaved channels.
const BLOCK: usize = 16;

/// `out = (v / MAX - mean[c]) / std[c]`.
pub fn normalize<T: Sample>(img: ImageRef<T>, mean: &[f32], std: &[f32]) -> Result<Image<f32>> {
    let c = img.channels;
    if mean.len() != c || std.len() != c {
        return Err(Error::invalid(format!(
            "normalize: mean has {} and std has {} values for an image of {c} channels",
            mean.len(),
            std.len()
        )));
    }
    if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
        return Err(Error::invalid(format!(
            "normalize: mean must be finite, got {m} in {mean:?}"
        )));
    }
    if let Some(s) = std.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(Error::invalid(format!(
            "normalize: std must be finite and non-zero, got {s} in {std:?}"
        )));
    }
    let n = img.data.len();
    if img
        .width
        .checked_mul(img.height)
        .and_then(|p| p.checked_mul(c))
        != Some(n)
    {
        return Err(Error::invalid(format!(
            "normalize: image buffer of {n} samples does not match {}x{}x{c}",
            img.width, img.height
        )));
    }
    let scale: Vec<f32> = std
        .iter()
        .map(|&s| (1.0 / (f64::from(T::MAX) * f64::from(s))) as f32)
        .collect();
    let offset: Vec<f32> = mean
        .iter()
        .zip(std)
        .map(|(&m, &s)| (-f64::from(m) / f64::from(s)) as f32)
        .collect();
    if let Some(s) = scale.iter().chain(&offset).find(|v| !v.is_finite()) {
        // e.g. std = 1e-45: 1 / (255 * std) overflows f32.
        return Err(Error::invalid(format!(
            "normalize: mean/std {mean:?} / {std:?} give a non-finite scale ({s})"
        )));
    }

    let mut data = Vec::new();
    data.try_reserve_exact(n).map_err(|_| {
        Error::invalid(format!(
            "normalize: cannot allocate {n} float32 samples for a {}x{}x{c} image",
            img.width, img.height
        ))
    })?;
    if c == 1 {
        let (s, o) = (scale[0], offset[0]);
        data.extend(img.data.iter().map(|v| v.to_f32() * s + o));
    } else {
        let pat_s: Vec<f32> = (0..BLOCK * c).map(|i| scale[i % c]).collect();
        let pat_o: Vec<f32> = (0..BLOCK * c).map(|i| offset[i % c]).collect();
        let mut blocks = img.data.chunks_exact(BLOCK * c);
        for blk in &mut blocks {
            data.extend(
                blk.iter()
                    .zip(&pat_s)
                    .zip(&pat_o)
                    .map(|((v, s), o)| v.to_f32() * s + o),
            );
        }
        data.extend(
            blocks
                .remainder()
                .iter()
                .zip(&pat_s)
                .zip(&pat_o)
                .map(|((v, s), o)| v.to_f32() * s + o),
        );
    }
    Ok(Image {
        width: img.width,
        height: img.height,
        channels: c,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-6 * (1.0 + b.abs())
    }

    #[test]
    fn grey_u8_by_hand() {
        let data = [0u8, 51, 255];
        let img = ImageRef::new(3, 1, 1, &data).unwrap();
        let out = normalize(img, &[0.5], &[0.25]).unwrap();
        let want = [-2.0, (0.2 - 0.5) / 0.25, 2.0];
        for (o, w) in out.data.iter().zip(want) {
            assert!(close(*o, w), "{o} vs {w}");
        }
        assert_eq!((out.width, out.height, out.channels), (3, 1, 1));
    }

    #[test]
    fn per_channel_u16_with_a_partial_block() {
        // 19 pixels x 3 channels: one full 16-pixel block and a remainder.
        let (w, c) = (19usize, 3usize);
        let data: Vec<u16> = (0..w * c).map(|i| (i * 1151 % 65536) as u16).collect();
        let img = ImageRef::new(w, 1, c, &data).unwrap();
        let (mean, std) = ([0.485f32, 0.456, 0.406], [0.229f32, 0.224, 0.225]);
        let out = normalize(img, &mean, &std).unwrap();
        for (i, (&v, &o)) in data.iter().zip(&out.data).enumerate() {
            let k = i % c;
            let want = (f64::from(v) / 65535.0 - f64::from(mean[k])) / f64::from(std[k]);
            assert!(close(o, want), "sample {i}: {o} vs {want}");
        }
    }

    #[test]
    fn identity_parameters_scale_to_unit_range() {
        let data = [0u8, 255, 128, 1];
        let img = ImageRef::new(2, 1, 2, &data).unwrap();
        let out = normalize(img, &[0.0, 0.0], &[1.0, 1.0]).unwrap();
        assert_eq!(out.data[0], 0.0);
        assert_eq!(out.data[1], 1.0);
        assert!(close(out.data[2], 128.0 / 255.0));
    }

    #[test]
    fn invalid_parameters_are_errors() {
        let data = [0u8; 6];
        let img = ImageRef::new(2, 1, 3, &data).unwrap();
        assert!(normalize(img, &[0.5], &[0.2, 0.2, 0.2]).is_err());
        assert!(normalize(img, &[0.5; 3], &[0.2; 2]).is_err());
        assert!(normalize(img, &[0.5; 3], &[0.2, 0.0, 0.2]).is_err());
        assert!(normalize(img, &[0.5; 3], &[0.2, f32::NAN, 0.2]).is_err());
        assert!(normalize(img, &[0.5; 3], &[0.2, f32::INFINITY, 0.2]).is_err());
        assert!(normalize(img, &[f32::NAN, 0.5, 0.5], &[0.2; 3]).is_err());
        assert!(normalize(img, &[0.5; 3], &[1e-45; 3]).is_err());
        let msg = normalize(img, &[0.5; 3], &[0.2, 0.0, 0.2])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("std"), "{msg}");
    }
}
