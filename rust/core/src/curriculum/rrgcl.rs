//! RRGCL's class-level dynamic sample scheduler (paper 002, Section 3.3, Eq. 11-13, Algorithm 1).
//!
//! - class difficulty `difC(n)`: mean of the per-sample difficulty `dif` over the class's samples
//!   (a multi-label sample counts in every class it has), min-max scaled over classes to `[0, 1]`;
//!   a constant vector scales to 0.5 (no class is easier than another);
//! - Eq. 12: `gamma_n = 1 + (1 - difC(n)) * c`; the paper writes `gamma_n in [1, c + 1]` with `c` the
//!   number of classes, which is the default here;
//! - Eq. 13: `lambda_n(0) = gamma_n / sum_k gamma_k`;
//! - Eq. 11: `lambda_n(t) = min(1, (lambda_n(0)^gamma_n + (1 - lambda_n(0)^gamma_n) * t / T)^(1/gamma_n))`,
//!   exactly 1 from `t = T` on;
//! - epoch `t` trains on the union over classes of the `ceil(lambda_n(t) * |D_n|)` easiest samples of
//!   `D_n` (ascending `dif`, ties by sample index). Since `lambda_n(t) > 0`, every class contributes
//!   at least one sample to every epoch.
//!
//! Samples without any class are put in an extra class (`unlabeled`, the last id) so none is lost.

use crate::error::{Error, Result};

/// The class of samples without any class (so that no sample is lost).
pub const UNLABELED: &str = "unlabeled";

/// Min-max scaling over classes; a constant vector gives 0.5 everywhere.
pub fn scale_min_max(raw: &[f64]) -> Vec<f64> {
    let lo = raw.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = raw.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if hi - lo > 0.0 && (hi - lo).is_finite() {
        raw.iter().map(|&x| (x - lo) / (hi - lo)).collect()
    } else {
        vec![0.5; raw.len()]
    }
}

/// Eq. 12 for every class.
pub fn gammas(scaled: &[f64], c: f64) -> Vec<f64> {
    scaled.iter().map(|&d| 1.0 + (1.0 - d) * c).collect()
}

/// Eq. 13 for every class.
pub fn initial_rates(gamma: &[f64]) -> Vec<f64> {
    let sum: f64 = gamma.iter().sum();
    gamma.iter().map(|&g| g / sum).collect()
}

/// Eq. 11 for one class.
#[inline]
pub fn rate(lambda0: f64, gamma: f64, t: f64, epochs: f64) -> f64 {
    if t >= epochs {
        return 1.0;
    }
    let a = lambda0.powf(gamma);
    (a + (1.0 - a) * t / epochs).powf(1.0 / gamma).min(1.0)
}

fn check_time(t: f64, epochs: f64) -> Result<()> {
    if !(epochs.is_finite() && epochs > 0.0) {
        return Err(Error::invalid(format!(
            "epochs: T must be a positive number, got {epochs}"
        )));
    }
    if !(t.is_finite() && t >= 0.0) {
        return Err(Error::invalid(format!("t: must be >= 0, got {t}")));
    }
    Ok(())
}

fn resolve_c(c: Option<f64>, num_classes: usize) -> Result<f64> {
    let c = c.unwrap_or(num_classes as f64);
    if !(c.is_finite() && c >= 0.0) {
        return Err(Error::invalid(format!(
            "c: must be a finite number >= 0, got {c}"
        )));
    }
    Ok(c)
}

/// Eq. 11-13 from per-class difficulty (raw means; scaled here): `lambda_n(t)` for every class.
/// `c` defaults to the number of classes.
pub fn rrgcl_rates(
    class_difficulty: &[f64],
    t: f64,
    epochs: f64,
    c: Option<f64>,
) -> Result<Vec<f64>> {
    if class_difficulty.is_empty() {
        return Err(Error::invalid(
            "class_difficulty: at least one class is required",
        ));
    }
    if let Some(i) = class_difficulty.iter().position(|d| !d.is_finite()) {
        return Err(Error::invalid(format!(
            "class_difficulty: value {i} is not finite ({})",
            class_difficulty[i]
        )));
    }
    check_time(t, epochs)?;
    let c = resolve_c(c, class_difficulty.len())?;
    let gamma = gammas(&scale_min_max(class_difficulty), c);
    let l0 = initial_rates(&gamma);
    Ok(l0
        .iter()
        .zip(&gamma)
        .map(|(&l, &g)| rate(l, g, t, epochs))
        .collect())
}

/// The scheduler over a concrete training set.
#[derive(Clone, Debug)]
pub struct Rrgcl {
    n_samples: usize,
    epochs: f64,
    c: f64,
    /// CSR over classes: members of class `n` are `members[offsets[n]..offsets[n + 1]]`, easiest first.
    offsets: Vec<usize>,
    members: Vec<u64>,
    raw: Vec<f64>,
    scaled: Vec<f64>,
    gamma: Vec<f64>,
    lambda0: Vec<f64>,
    unlabeled: Option<usize>,
}

impl Rrgcl {
    /// `sample_offsets` (length `n + 1`) and `sample_classes` are the CSR of each sample's class ids
    /// (ids `< num_classes`; duplicates inside a sample are ignored). `difficulty[i]` is `dif(i)`.
    pub fn new(
        sample_offsets: &[u64],
        sample_classes: &[u64],
        num_classes: usize,
        difficulty: &[f64],
        epochs: f64,
        c: Option<f64>,
    ) -> Result<Self> {
        let n = difficulty.len();
        if n == 0 {
            return Err(Error::invalid("difficulty: the training set is empty"));
        }
        if sample_offsets.len() != n + 1 {
            return Err(Error::invalid(format!(
                "classes: expected class lists for {n} samples (one per difficulty value), got {}",
                sample_offsets.len().saturating_sub(1)
            )));
        }
        if sample_offsets[0] != 0
            || sample_offsets.windows(2).any(|w| w[0] > w[1])
            || sample_offsets[n] as usize != sample_classes.len()
        {
            return Err(Error::invalid("classes: malformed class lists (offsets)"));
        }
        if let Some(i) = difficulty.iter().position(|d| !d.is_finite()) {
            return Err(Error::invalid(format!(
                "difficulty: sample {i} has a non-finite difficulty ({})",
                difficulty[i]
            )));
        }
        if let Some(&bad) = sample_classes.iter().find(|&&k| k as usize >= num_classes) {
            return Err(Error::invalid(format!(
                "classes: class id {bad} is out of range (num_classes = {num_classes})"
            )));
        }
        check_time(0.0, epochs)?;

        let has_unlabeled = sample_offsets.windows(2).any(|w| w[0] == w[1]);
        let k = num_classes + usize::from(has_unlabeled);
        if k == 0 {
            return Err(Error::invalid("classes: no class at all"));
        }
        let unlabeled = has_unlabeled.then_some(num_classes);

        // Bucket samples per class (deduplicated within a sample).
        let mut lists: Vec<Vec<u64>> = vec![Vec::new(); k];
        let mut seen: Vec<u64> = Vec::new();
        for i in 0..n {
            let (a, b) = (sample_offsets[i] as usize, sample_offsets[i + 1] as usize);
            if a == b {
                lists[num_classes].push(i as u64);
                continue;
            }
            seen.clear();
            seen.extend_from_slice(&sample_classes[a..b]);
            seen.sort_unstable();
            seen.dedup();
            for &cls in &seen {
                lists[cls as usize].push(i as u64);
            }
        }
        if let Some(empty) = lists.iter().position(|l| l.is_empty()) {
            return Err(Error::invalid(format!(
                "classes: class {empty} has no samples; every class needs at least one \
                 (drop it from the class list or relabel)"
            )));
        }
        let mut offsets = Vec::with_capacity(k + 1);
        let mut members = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        let mut raw = Vec::with_capacity(k);
        offsets.push(0);
        for mut l in lists {
            let sum: f64 = l.iter().map(|&i| difficulty[i as usize]).sum();
            raw.push(sum / l.len() as f64);
            // Easiest first; ties by index (the list is already in index order, and the sort is stable).
            l.sort_by(|&a, &b| difficulty[a as usize].total_cmp(&difficulty[b as usize]));
            members.extend_from_slice(&l);
            offsets.push(members.len());
        }
        let c = resolve_c(c, k)?;
        let scaled = scale_min_max(&raw);
        let gamma = gammas(&scaled, c);
        let lambda0 = initial_rates(&gamma);
        Ok(Rrgcl {
            n_samples: n,
            epochs,
            c,
            offsets,
            members,
            raw,
            scaled,
            gamma,
            lambda0,
            unlabeled,
        })
    }

    pub fn num_samples(&self) -> usize {
        self.n_samples
    }
    pub fn num_classes(&self) -> usize {
        self.raw.len()
    }
    pub fn epochs(&self) -> f64 {
        self.epochs
    }
    pub fn c(&self) -> f64 {
        self.c
    }
    /// The id of the added `unlabeled` class, if some samples had no class.
    pub fn unlabeled(&self) -> Option<usize> {
        self.unlabeled
    }
    /// Mean `dif` per class, before scaling.
    pub fn raw_class_difficulty(&self) -> &[f64] {
        &self.raw
    }
    /// `difC(n)`, min-max scaled.
    pub fn class_difficulty(&self) -> &[f64] {
        &self.scaled
    }
    pub fn gamma(&self) -> &[f64] {
        &self.gamma
    }
    pub fn lambda0(&self) -> &[f64] {
        &self.lambda0
    }
    pub fn class_sizes(&self) -> Vec<u64> {
        self.offsets
            .windows(2)
            .map(|w| (w[1] - w[0]) as u64)
            .collect()
    }
    /// Class `n`'s samples, easiest first.
    pub fn class_members(&self, n: usize) -> &[u64] {
        &self.members[self.offsets[n]..self.offsets[n + 1]]
    }

    /// [`Rrgcl::class_members`] with the id checked.
    pub fn members(&self, n: usize) -> Result<&[u64]> {
        if n >= self.num_classes() {
            return Err(Error::invalid(format!(
                "class: id {n} is out of range ({} classes)",
                self.num_classes()
            )));
        }
        Ok(self.class_members(n))
    }

    /// `lambda_n(t)` for every class (Eq. 11).
    pub fn rates(&self, t: f64) -> Result<Vec<f64>> {
        check_time(t, self.epochs)?;
        Ok(self
            .lambda0
            .iter()
            .zip(&self.gamma)
            .map(|(&l, &g)| rate(l, g, t, self.epochs))
            .collect())
    }

    /// `ceil(lambda_n(t) * |D_n|)` for every class.
    pub fn counts(&self, t: f64) -> Result<Vec<u64>> {
        let rates = self.rates(t)?;
        Ok(rates
            .iter()
            .zip(self.class_sizes())
            .map(|(&r, size)| ((r * size as f64).ceil() as u64).clamp(1, size))
            .collect())
    }

    /// Epoch `t`'s training subset: sorted, distinct sample indices.
    pub fn epoch_indices(&self, t: f64) -> Result<Vec<i64>> {
        let counts = self.counts(t)?;
        let mut keep = vec![false; self.n_samples];
        for (cls, &k) in counts.iter().enumerate() {
            for &i in &self.class_members(cls)[..k as usize] {
                keep[i as usize] = true;
            }
        }
        let bound = counts.iter().sum::<u64>().min(self.n_samples as u64) as usize;
        let mut out = Vec::with_capacity(bound);
        for (i, &k) in keep.iter().enumerate() {
            if k {
                out.push(i as i64);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(lists: &[&[u64]]) -> (Vec<u64>, Vec<u64>) {
        let mut off = vec![0u64];
        let mut ids = Vec::new();
        for l in lists {
            ids.extend_from_slice(l);
            off.push(ids.len() as u64);
        }
        (off, ids)
    }

    #[test]
    fn hand_computed_rates() {
        // difC = [0, 1] (already scaled), c = 2: gamma = [3, 1], lambda0 = [0.75, 0.25]
        let r0 = rrgcl_rates(&[0.0, 1.0], 0.0, 10.0, None).unwrap();
        assert!((r0[0] - 0.75).abs() < 1e-15 && (r0[1] - 0.25).abs() < 1e-15);
        // t = 5: class 0: (0.75^3 + (1 - 0.75^3) / 2)^(1/3) = (0.421875 + 0.2890625)^(1/3)
        let r = rrgcl_rates(&[0.0, 1.0], 5.0, 10.0, None).unwrap();
        let e0 = (0.421875f64 + 0.578125 * 0.5).powf(1.0 / 3.0);
        assert!((r[0] - e0).abs() < 1e-15, "{} {}", r[0], e0);
        // class 1 (gamma 1) is linear: 0.25 + 0.75 * 0.5
        assert!((r[1] - 0.625).abs() < 1e-15);
        assert_eq!(
            rrgcl_rates(&[0.0, 1.0], 10.0, 10.0, None).unwrap(),
            vec![1.0, 1.0]
        );
        assert_eq!(
            rrgcl_rates(&[0.0, 1.0], 12.0, 10.0, None).unwrap(),
            vec![1.0, 1.0]
        );
    }

    #[test]
    fn constant_difficulty_scales_to_half() {
        assert_eq!(scale_min_max(&[3.0, 3.0, 3.0]), vec![0.5; 3]);
        let r = rrgcl_rates(&[2.0, 2.0], 0.0, 4.0, Some(1.0)).unwrap();
        assert_eq!(r, vec![0.5, 0.5]);
    }

    #[test]
    fn scheduler_subsets() {
        // 6 samples, 2 classes; sample 5 has no class -> unlabeled.
        let (off, ids) = csr(&[&[0], &[0, 1], &[1], &[1], &[0], &[]]);
        let dif = [0.1, 0.5, 0.9, 0.2, 0.3, 0.0];
        let s = Rrgcl::new(&off, &ids, 2, &dif, 3.0, None).unwrap();
        assert_eq!(s.num_classes(), 3);
        assert_eq!(s.unlabeled(), Some(2));
        assert_eq!(s.class_sizes(), vec![3, 3, 1]);
        assert_eq!(s.class_members(0), &[0, 4, 1]);
        assert_eq!(s.class_members(1), &[3, 1, 2]);
        // raw = [0.3, 1.6/3, 0.0]
        let raw = s.raw_class_difficulty();
        assert!((raw[0] - 0.3).abs() < 1e-12 && (raw[1] - 1.6 / 3.0).abs() < 1e-12);
        let t_all = s.epoch_indices(3.0).unwrap();
        assert_eq!(t_all, vec![0, 1, 2, 3, 4, 5]);
        let first = s.epoch_indices(0.0).unwrap();
        let counts = s.counts(0.0).unwrap();
        assert!(counts.iter().all(|&k| k >= 1));
        // every class present
        for cls in 0..3 {
            assert!(s
                .class_members(cls)
                .iter()
                .any(|i| first.contains(&(*i as i64))));
        }
    }

    #[test]
    fn errors() {
        let (off, ids) = csr(&[&[0], &[2]]);
        assert!(Rrgcl::new(&off, &ids, 2, &[0.0, 1.0], 3.0, None).is_err()); // id 2 out of range
        let (off, ids) = csr(&[&[0], &[0]]);
        assert!(Rrgcl::new(&off, &ids, 2, &[0.0, 1.0], 3.0, None).is_err()); // class 1 empty
        assert!(Rrgcl::new(&off, &ids, 1, &[0.0, f64::NAN], 3.0, None).is_err());
        assert!(Rrgcl::new(&off, &ids, 1, &[0.0, 1.0], 0.0, None).is_err());
        assert!(rrgcl_rates(&[], 0.0, 1.0, None).is_err());
        assert!(rrgcl_rates(&[1.0], -1.0, 1.0, None).is_err());
    }
}
