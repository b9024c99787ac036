//! Validation of source weights: the one place that decides which weight vectors are usable, so
//! every entry point (constructor, `set_weights`, interleave patterns) refuses the same inputs with
//! the same message.

use crate::error::{Error, Result};

/// Checks `weights` against `sizes` (one weight per source): finite, non-negative, not all zero,
/// and no positive weight on an empty source. Returns the weights unchanged (they need not sum to 1).
pub fn validate_weights(weights: &[f64], sizes: &[u64]) -> Result<()> {
    if weights.len() != sizes.len() {
        return Err(Error::invalid(format!(
            "weights: expected {} weights (one per source), got {}",
            sizes.len(),
            weights.len()
        )));
    }
    check_values(weights)?;
    for (i, (&w, &n)) in weights.iter().zip(sizes).enumerate() {
        if w > 0.0 && n == 0 {
            return Err(Error::invalid(format!(
                "weights: source {i} is empty (size 0) but has weight {w}; give it weight 0"
            )));
        }
    }
    Ok(())
}

/// The size-independent part: finite, non-negative, not all zero, non-empty.
pub fn check_values(weights: &[f64]) -> Result<()> {
    if weights.is_empty() {
        return Err(Error::invalid("weights: at least one source is required"));
    }
    for (i, &w) in weights.iter().enumerate() {
        if w.is_nan() {
            return Err(Error::invalid(format!("weights: weight {i} is NaN")));
        }
        if w.is_infinite() {
            return Err(Error::invalid(format!(
                "weights: weight {i} is infinite ({w})"
            )));
        }
        if w < 0.0 {
            return Err(Error::invalid(format!(
                "weights: weight {i} is negative ({w})"
            )));
        }
    }
    if weights.iter().all(|&w| w == 0.0) {
        return Err(Error::invalid(
            "weights: all weights are zero; at least one source needs a positive weight",
        ));
    }
    let sum: f64 = weights.iter().sum();
    if !sum.is_finite() {
        return Err(Error::invalid("weights: the sum of the weights overflows"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(r: Result<()>) -> String {
        r.unwrap_err().to_string()
    }

    #[test]
    fn accepts_valid() {
        validate_weights(&[0.0, 2.0, 1.0], &[1, 2, 3]).unwrap();
        validate_weights(&[0.5, 0.0], &[4, 0]).unwrap();
    }

    #[test]
    fn names_the_problem() {
        assert!(msg(validate_weights(&[1.0], &[1, 2])).contains("expected 2 weights"));
        assert!(msg(validate_weights(&[1.0, -1.0], &[1, 2])).contains("negative"));
        assert!(msg(validate_weights(&[1.0, f64::NAN], &[1, 2])).contains("NaN"));
        assert!(msg(validate_weights(&[0.0, 0.0], &[1, 2])).contains("all weights are zero"));
        assert!(msg(validate_weights(&[1.0, f64::INFINITY], &[1, 2])).contains("infinite"));
        assert!(msg(validate_weights(&[1.0, 1.0], &[1, 0])).contains("source 1 is empty"));
        assert!(msg(validate_weights(&[], &[])).contains("at least one"));
    }
}
