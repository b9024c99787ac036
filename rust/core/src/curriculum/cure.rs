//! CURE's error-aware inter-dataset curriculum weights (paper 000, as in CURE's public code).
//!
//! Per source (or category): `perf = alpha * IoU + (1 - alpha) * text` (the one metric alone when
//! only one exists), `err = 1 - perf`, replaced by `ERR_FLOOR` where `err <= 0`;
//! `p = err / sum(err)`, or uniform when `sum(err) < UNIFORM_BELOW`; then, as CURE's code does,
//! only `p <= 0` becomes `CLAMP_MIN` and `p > 1` becomes `CLAMP_MAX`: a nearly solved source keeps
//! its small weight. An optional `min_weight` also raises every weight below it (gradatim's former
//! default, now opt-in: it over-samples nearly solved sources by up to ~100x). No temperature, no
//! renormalisation after the clamp (samplers normalise).

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

/// The weights for `(iou, text)` pairs, in order; `min_weight` raises smaller weights to it.
pub fn cure_weights(
    metrics: &[(Option<f64>, Option<f64>)],
    alpha: f64,
    min_weight: Option<f64>,
) -> Result<Vec<f64>> {
    if let Some(m) = min_weight {
        if !(m.is_finite() && (0.0..=1.0).contains(&m)) {
            return Err(Error::invalid(format!(
                "min_weight: must be in [0, 1], got {m}"
            )));
        }
    }
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
            let p = if p <= 0.0 {
                CLAMP_MIN
            } else if p > 1.0 {
                CLAMP_MAX
            } else {
                p
            };
            min_weight.map_or(p, |m| p.max(m))
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
            None,
        )
        .unwrap();
        let s = 1.26;
        assert!((w[0] - 0.5 / s).abs() < 1e-15);
        assert!((w[1] - 0.75 / s).abs() < 1e-15);
        assert!((w[2] - 0.01 / s).abs() < 1e-15); // kept small, as CURE's code
                                                  // errors [1, 1, 0.01 (floored)]: p3 = 0.01 / 2.01 stays, or is raised by min_weight
        let m = [(Some(0.0), None), (Some(0.0), None), (Some(1.0), None)];
        assert!((cure_weights(&m, 0.8, None).unwrap()[2] - 0.01 / 2.01).abs() < 1e-15);
        assert_eq!(cure_weights(&m, 0.8, Some(0.01)).unwrap()[2], 0.01);
    }

    #[test]
    fn uniform_fallback_and_clamp() {
        // err tiny but positive -> sum < 1e-6 -> uniform
        let w = cure_weights(
            &[(Some(1.0 - 1e-8), None), (Some(1.0 - 2e-8), None)],
            0.8,
            None,
        );
        assert_eq!(w.unwrap(), vec![0.5, 0.5]);
        // 200 equal sources: uniform p = 0.005 stays 0.005 (CURE); the opt-in floor raises it
        let m = vec![(Some(0.5), None); 200];
        assert!(cure_weights(&m, 0.8, None)
            .unwrap()
            .iter()
            .all(|&x| x == 0.005));
        assert!(cure_weights(&m, 0.8, Some(0.01))
            .unwrap()
            .iter()
            .all(|&x| x == 0.01));
        // a single source gets weight 1
        assert_eq!(
            cure_weights(&[(Some(0.3), Some(0.9))], 0.8, None).unwrap(),
            vec![1.0]
        );
    }

    #[test]
    fn errors() {
        assert!(cure_weights(&[], 0.8, None).is_err());
        assert!(cure_weights(&[(None, None)], 0.8, None).is_err());
        assert!(cure_weights(&[(Some(f64::NAN), None)], 0.8, None).is_err());
        assert!(cure_weights(&[(Some(0.1), None)], 1.5, None).is_err());
        assert!(cure_weights(&[(Some(0.1), None)], 0.8, Some(2.0)).is_err());
    }
}
