//! CURE's error-aware inter-dataset curriculum weights (paper 000, as in CURE's public code).
//!
//! Per source (or category): `perf = alpha * IoU + (1 - alpha) * text` (the one metric alone when
//! only one exists), `err = 1 - perf`, replaced by `ERR_FLOOR` where `err <= 0`;
//! `p = err / sum(err)`, or uniform when `sum(err) < UNIFORM_BELOW`; each weight then clamped to
//! `[CLAMP_MIN, CLAMP_MAX]`. No temperature, no renormalisation after the clamp (samplers normalise).

use crate::error::{Error, Result};

pub const ERR_FLOOR: f64 = 0.01;
pub const UNIFORM_BELOW: f64 = 1e-6;
pub const CLAMP_MIN: f64 = 0.01;
pub const CLAMP_MAX: f64 = 1.0;

/// `alpha * iou + (1 - alpha) * text`, or the one present.
pub fn performance(iou: Option<f64>, text: Option<f64>, alpha: f64) -> Option<f64> {
    match (iou, text) {
        (Some(i), Some(t)) => Some(alpha * i + (1.0 - alpha) * t),
        (Some(i), None) => Some(i),
        (None, Some(t)) => Some(t),
        (None, None) => None,
    }
}

/// The weights for `(iou, text)` pairs, in order.
pub fn cure_weights(metrics: &[(Option<f64>, Option<f64>)], alpha: f64) -> Result<Vec<f64>> {
    if metrics.is_empty() {
        return Err(Error::invalid("metrics: at least one source is required"));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(format!(
            "alpha: must be in [0, 1], got {alpha}"
        )));
    }
    let mut err = Vec::with_capacity(metrics.len());
    for (i, &(iou, text)) in metrics.iter().enumerate() {
        for (name, v) in [("iou", iou), ("text", text)] {
            if v.is_some_and(|x| !x.is_finite()) {
                return Err(Error::invalid(format!(
                    "metrics: entry {i} has a non-finite {name} ({})",
                    v.unwrap_or_default()
                )));
            }
        }
        let perf = performance(iou, text, alpha).ok_or_else(|| {
            Error::invalid(format!(
                "metrics: entry {i} has neither \"iou\" nor \"text\""
            ))
        })?;
        let e = 1.0 - perf;
        err.push(if e <= 0.0 { ERR_FLOOR } else { e });
    }
    let sum: f64 = err.iter().sum();
    let n = err.len() as f64;
    Ok(err
        .iter()
        .map(|&e| {
            let p = if sum < UNIFORM_BELOW {
                1.0 / n
            } else {
                e / sum
            };
            p.clamp(CLAMP_MIN, CLAMP_MAX)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed() {
        // perf = [0.8*0.5 + 0.2*0.5, 0.8*0.25 (iou only -> 0.25), 1.0 (text only)]
        //      = [0.5, 0.25, 1.0]; err = [0.5, 0.75, 0 -> 0.01]; sum = 1.26
        let w = cure_weights(
            &[
                (Some(0.5), Some(0.5)),
                (Some(0.25), None),
                (None, Some(1.0)),
            ],
            0.8,
        )
        .unwrap();
        let s = 1.26;
        assert!((w[0] - 0.5 / s).abs() < 1e-15);
        assert!((w[1] - 0.75 / s).abs() < 1e-15);
        assert!((w[2] - 0.01 / s).abs() > 1e-6); // clamped up
        assert_eq!(w[2], CLAMP_MIN);
    }

    #[test]
    fn uniform_fallback_and_clamp() {
        // err tiny but positive -> sum < 1e-6 -> uniform
        let w = cure_weights(&[(Some(1.0 - 1e-8), None), (Some(1.0 - 2e-8), None)], 0.8).unwrap();
        assert_eq!(w, vec![0.5, 0.5]);
        // 200 equal sources: uniform p = 0.005 is clamped to 0.01
        let m = vec![(Some(0.5), None); 200];
        assert!(cure_weights(&m, 0.8).unwrap().iter().all(|&x| x == 0.01));
        // a single source gets weight 1
        assert_eq!(
            cure_weights(&[(Some(0.3), Some(0.9))], 0.8).unwrap(),
            vec![1.0]
        );
    }

    #[test]
    fn errors() {
        assert!(cure_weights(&[], 0.8).is_err());
        assert!(cure_weights(&[(None, None)], 0.8).is_err());
        assert!(cure_weights(&[(Some(f64::NAN), None)], 0.8).is_err());
        assert!(cure_weights(&[(Some(0.1), None)], 1.5).is_err());
    }
}
