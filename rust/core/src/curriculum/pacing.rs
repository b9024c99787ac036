//! Baseline pacing functions of RRGCL's ablation (paper 002, Table 2), over difficulty-sorted data.
//!
//! With `c0` the starting fraction and `T` the number of epochs:
//! - Linear: `min(1, t (1 - c0) / T + c0)`;
//! - Root-p: `min(1, (t (1 - c0^p) / T + c0^p)^(1/p))` (p = 2 is Platanios' square root);
//! - Geometric: `min(1, c0^(1 - t / T))`;
//! - Baby Step (k buckets): stage `j` trains on buckets `1..=j`;
//! - One Pass (k buckets): stage `j` trains on bucket `j` only.
//!
//! Buckets split the difficulty-sorted data into `k` equal-count parts (bucket `j` holds sorted
//! positions `floor((j-1) N / k) .. floor(j N / k)`); stage `j(t) = min(k, floor(t k / T) + 1)`;
//! `t = T` is the last stage. Over `t = 1 ..= T` the stages are not equally long: stage `j < k`
//! gets `ceil(j T / k) - max(1, ceil((j - 1) T / k))` epochs, stage `k` gets
//! `T + 1 - max(1, ceil((k - 1) T / k))` (`T = 10, k = 5`: 1, 2, 2, 2, 3). A continuous schedule
//! trains on the `ceil(fraction * N)` easiest samples (at least one).
//!
//! The paper gives neither `c0` nor the bucket count `k`: gradatim's defaults (`c0 = 0.01`,
//! `k = 5`, set in the Python front) are its own choices.

use crate::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    Linear,
    Root { p: f64 },
    Geometric,
    BabyStep { buckets: usize },
    OnePass { buckets: usize },
}

impl Pacing {
    pub fn parse(name: &str, p: f64, buckets: usize) -> Result<Pacing> {
        let kind = match name {
            "linear" => Pacing::Linear,
            "root" => Pacing::Root { p },
            "geometric" => Pacing::Geometric,
            "baby_step" => Pacing::BabyStep { buckets },
            "one_pass" => Pacing::OnePass { buckets },
            other => {
                return Err(Error::invalid(format!(
                    "pacing: unknown schedule {other:?}; expected one of \"linear\", \"root\", \
                     \"geometric\", \"baby_step\", \"one_pass\""
                )))
            }
        };
        if let Pacing::Root { p } = kind {
            if !(p.is_finite() && p > 0.0) {
                return Err(Error::invalid(format!(
                    "p: must be a positive number, got {p}"
                )));
            }
        }
        if let Pacing::BabyStep { buckets } | Pacing::OnePass { buckets } = kind {
            if buckets == 0 {
                return Err(Error::invalid("buckets: must be at least 1"));
            }
        }
        Ok(kind)
    }

    pub fn is_bucketed(&self) -> bool {
        matches!(self, Pacing::BabyStep { .. } | Pacing::OnePass { .. })
    }
}

fn check(t: f64, epochs: f64, c0: f64) -> Result<()> {
    if !(epochs.is_finite() && epochs > 0.0) {
        return Err(Error::invalid(format!(
            "T: must be a positive number, got {epochs}"
        )));
    }
    if !(t.is_finite() && t >= 0.0) {
        return Err(Error::invalid(format!("t: must be >= 0, got {t}")));
    }
    if !(c0 > 0.0 && c0 <= 1.0) {
        return Err(Error::invalid(format!("c0: must be in (0, 1], got {c0}")));
    }
    Ok(())
}

/// The 1-based bucket stage at epoch `t`.
pub fn bucket_stage(t: f64, epochs: f64, buckets: usize) -> usize {
    let j = (t * buckets as f64 / epochs).floor();
    if j >= buckets as f64 {
        buckets
    } else {
        j as usize + 1
    }
}

/// [`bucket_stage`] with its arguments checked.
pub fn checked_bucket_stage(t: f64, epochs: f64, buckets: usize) -> Result<usize> {
    check(t, epochs, 1.0)?;
    if buckets == 0 {
        return Err(Error::invalid("buckets: must be at least 1"));
    }
    Ok(bucket_stage(t, epochs, buckets))
}

/// The fraction of the sorted data in use at epoch `t`: for bucket schedules, the upper end
/// `j / k` of the bucket range (One Pass starts at `(j - 1) / k`).
pub fn fraction(kind: Pacing, t: f64, epochs: f64, c0: f64) -> Result<f64> {
    check(t, epochs, c0)?;
    let x = t / epochs;
    Ok(match kind {
        Pacing::Linear => (x * (1.0 - c0) + c0).min(1.0),
        Pacing::Root { p } => {
            let c0p = c0.powf(p);
            (x * (1.0 - c0p) + c0p).powf(1.0 / p).min(1.0)
        }
        Pacing::Geometric => c0.powf(1.0 - x).min(1.0),
        Pacing::BabyStep { buckets } | Pacing::OnePass { buckets } => {
            bucket_stage(t, epochs, buckets) as f64 / buckets as f64
        }
    })
}

/// Sample indices sorted from easiest to hardest (ties by index).
pub fn difficulty_order(difficulty: &[f64]) -> Result<Vec<i64>> {
    if let Some(i) = difficulty.iter().position(|d| !d.is_finite()) {
        return Err(Error::invalid(format!(
            "difficulty: sample {i} has a non-finite difficulty ({})",
            difficulty[i]
        )));
    }
    let mut order: Vec<i64> = (0..difficulty.len() as i64).collect();
    order.sort_by(|&a, &b| difficulty[a as usize].total_cmp(&difficulty[b as usize]));
    Ok(order)
}

/// The `[lo, hi)` range of sorted positions trained on at epoch `t`, over `n` samples.
pub fn selected_range(
    kind: Pacing,
    t: f64,
    epochs: f64,
    c0: f64,
    n: usize,
) -> Result<(usize, usize)> {
    if n == 0 {
        return Err(Error::invalid("difficulty: the training set is empty"));
    }
    let f = fraction(kind, t, epochs, c0)?;
    match kind {
        Pacing::BabyStep { buckets } | Pacing::OnePass { buckets } => {
            if buckets > n {
                return Err(Error::invalid(format!(
                    "buckets: {buckets} buckets for {n} samples would leave empty buckets"
                )));
            }
            let j = bucket_stage(t, epochs, buckets);
            let edge = |b: usize| b * n / buckets;
            let lo = if matches!(kind, Pacing::OnePass { .. }) {
                edge(j - 1)
            } else {
                0
            };
            Ok((lo, edge(j)))
        }
        _ => Ok((0, ((f * n as f64).ceil() as usize).clamp(1, n))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed() {
        let c0 = 0.01;
        assert!(close(
            fraction(Pacing::Linear, 0.0, 10.0, c0).unwrap(),
            0.01
        ));
        assert!(close(
            fraction(Pacing::Linear, 5.0, 10.0, c0).unwrap(),
            0.505
        ));
        assert!(close(
            fraction(Pacing::Linear, 10.0, 10.0, c0).unwrap(),
            1.0
        ));
        // root p=2 at t=T/2: sqrt(0.5 * (1 - 1e-4) + 1e-4) = sqrt(0.50005)
        let r = fraction(Pacing::Root { p: 2.0 }, 5.0, 10.0, c0).unwrap();
        assert!(close(r, 0.50005f64.sqrt()));
        assert!(close(
            fraction(Pacing::Root { p: 2.0 }, 0.0, 10.0, c0).unwrap(),
            0.01
        ));
        // geometric at t=T/2: 0.01^0.5 = 0.1
        assert!(close(
            fraction(Pacing::Geometric, 5.0, 10.0, c0).unwrap(),
            0.1
        ));
        assert_eq!(fraction(Pacing::Geometric, 20.0, 10.0, c0).unwrap(), 1.0);
    }

    #[test]
    fn buckets() {
        let bs = Pacing::BabyStep { buckets: 5 };
        let op = Pacing::OnePass { buckets: 5 };
        let stages: Vec<usize> = (0..=10).map(|t| bucket_stage(t as f64, 10.0, 5)).collect();
        assert_eq!(stages, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 5]);
        assert_eq!(selected_range(bs, 0.0, 10.0, 0.01, 100).unwrap(), (0, 20));
        assert_eq!(selected_range(bs, 4.0, 10.0, 0.01, 100).unwrap(), (0, 60));
        assert_eq!(selected_range(op, 4.0, 10.0, 0.01, 100).unwrap(), (40, 60));
        assert_eq!(
            selected_range(op, 10.0, 10.0, 0.01, 103).unwrap(),
            (82, 103)
        );
        assert!(selected_range(op, 0.0, 10.0, 0.01, 3).is_err());
    }

    #[test]
    fn ceil_prefix() {
        assert_eq!(
            selected_range(Pacing::Linear, 0.0, 10.0, 0.01, 150).unwrap(),
            (0, 2)
        );
        assert_eq!(
            selected_range(Pacing::Linear, 0.0, 10.0, 0.01, 10).unwrap(),
            (0, 1)
        );
        assert_eq!(
            selected_range(Pacing::Linear, 10.0, 10.0, 0.01, 10).unwrap(),
            (0, 10)
        );
    }

    #[test]
    fn order_and_errors() {
        assert_eq!(
            difficulty_order(&[0.3, 0.1, 0.3, 0.0]).unwrap(),
            vec![3, 1, 0, 2]
        );
        assert!(difficulty_order(&[f64::NAN]).is_err());
        assert!(Pacing::parse("nope", 2.0, 5).is_err());
        assert!(Pacing::parse("root", 0.0, 5).is_err());
        assert!(fraction(Pacing::Linear, 0.0, 10.0, 0.0).is_err());
        assert!(fraction(Pacing::Linear, -1.0, 10.0, 0.5).is_err());
    }
}
