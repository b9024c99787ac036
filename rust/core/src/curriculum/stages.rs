//! MedCLM's stage curriculum (paper 001; the rules of MedCLM's released scheduler,
//! github.com/ksyint/PROGRESSIVE at commit a7cca74; the repository's later HEAD differs).
//!
//! Every sample of a domain is trained, per epoch, at one of three stages: Easy (box overlay drawn),
//! Medium (no overlay, attention-mask supervision), Hard (answer only). With `e` the epoch:
//! - `e < easy_warmup_epochs`: Easy;
//! - `e < hard_transition_epoch`: Medium with probability `p_med(d, e)`, else Easy;
//! - later: Hard with probability `lambda_H` (the hard budget), else as above.
//!
//! `p_med(d, e) = ramp(e) * sigmoid((gap_d - gamma) / tau)` with
//! `ramp(e) = 0` for `e <= easy_warmup_epochs`, else `min(1, (e - easy_warmup_epochs) / ramp_kappa)`,
//! and `gap_d = (m_easy_d - m_med_d) / (m_easy_d + 1e-8)` (0 when `m_easy_d < 1e-8`), from the per-domain
//! loss EMAs `m <- (1 - ema_rate) * m + ema_rate * loss` (the released code's convention: `ema_rate`
//! weights the *new* value).
//!
//! After each epoch ([`StageScheduler::update`]) the global loss EMA is appended to a history; the
//! hard budget grows by `hard_step_up` (up to `hard_budget_max`) when the loss has plateaued (the
//! last `plateau_patience` EMA values all differ by at most `epsilon_plat` from their predecessor)
//! and the median gap over domains is at least `gamma_h`; otherwise it shrinks by the factor
//! `1 - hard_step_down` when the last EMA rose by at least `delta_rise`.
//!
//! Stage draws are a pure function of `(seed, epoch, sample id)`, never of call order.

use crate::error::{Error, Result};
use crate::rng::{at, derive_key, unit_f64};

const TAG_HARD: u64 = 0x4841_5244; // "HARD"
const TAG_MEDIUM: u64 = 0x4D45_4449; // "MEDI"

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stage {
    Easy = 0,
    Medium = 1,
    Hard = 2,
}

/// Every constant of the scheduler; the defaults are those of MedCLM's released configuration
/// (commit a7cca74).
#[derive(Clone, Debug, PartialEq)]
pub struct StageParams {
    pub easy_warmup_epochs: u64,
    pub hard_transition_epoch: u64,
    pub ramp_kappa: f64,
    pub gamma: f64,
    pub tau: f64,
    pub gamma_h: f64,
    pub epsilon_plat: f64,
    pub plateau_patience: usize,
    pub delta_rise: f64,
    pub hard_step_up: f64,
    pub hard_step_down: f64,
    pub hard_budget_max: f64,
    pub hard_budget_init: f64,
    pub ema_rate: f64,
    pub ema_init_easy: f64,
    pub ema_init_medium: f64,
    pub ema_init_global: f64,
}

impl StageParams {
    /// Every parameter as `(name, value, is_integer)`, in declaration order (what the Python
    /// front takes its defaults from).
    pub fn named(&self) -> Vec<(&'static str, f64, bool)> {
        vec![
            ("easy_warmup_epochs", self.easy_warmup_epochs as f64, true),
            (
                "hard_transition_epoch",
                self.hard_transition_epoch as f64,
                true,
            ),
            ("ramp_kappa", self.ramp_kappa, false),
            ("gamma", self.gamma, false),
            ("tau", self.tau, false),
            ("gamma_h", self.gamma_h, false),
            ("epsilon_plat", self.epsilon_plat, false),
            ("plateau_patience", self.plateau_patience as f64, true),
            ("delta_rise", self.delta_rise, false),
            ("hard_step_up", self.hard_step_up, false),
            ("hard_step_down", self.hard_step_down, false),
            ("hard_budget_max", self.hard_budget_max, false),
            ("hard_budget_init", self.hard_budget_init, false),
            ("ema_rate", self.ema_rate, false),
            ("ema_init_easy", self.ema_init_easy, false),
            ("ema_init_medium", self.ema_init_medium, false),
            ("ema_init_global", self.ema_init_global, false),
        ]
    }
}

impl Default for StageParams {
    fn default() -> Self {
        StageParams {
            easy_warmup_epochs: 4,
            hard_transition_epoch: 19,
            ramp_kappa: 10.0,
            gamma: 0.5,
            tau: 0.1,
            gamma_h: 0.6,
            epsilon_plat: 0.01,
            plateau_patience: 5,
            delta_rise: 0.05,
            hard_step_up: 0.05,
            hard_step_down: 0.1,
            hard_budget_max: 0.3,
            hard_budget_init: 0.0,
            ema_rate: 0.9,
            ema_init_easy: 1e-3,
            ema_init_medium: 1e-3,
            ema_init_global: 1e-4,
        }
    }
}

impl StageParams {
    pub fn validate(&self) -> Result<()> {
        let finite = [
            ("ramp_kappa", self.ramp_kappa),
            ("gamma", self.gamma),
            ("tau", self.tau),
            ("epsilon_plat", self.epsilon_plat),
            ("delta_rise", self.delta_rise),
            ("hard_step_up", self.hard_step_up),
            ("hard_step_down", self.hard_step_down),
            ("hard_budget_max", self.hard_budget_max),
            ("hard_budget_init", self.hard_budget_init),
            ("ema_rate", self.ema_rate),
            ("ema_init_easy", self.ema_init_easy),
            ("ema_init_medium", self.ema_init_medium),
            ("ema_init_global", self.ema_init_global),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(Error::invalid(format!("{name}: must be finite, got {v}")));
            }
        }
        if self.gamma_h.is_nan() {
            return Err(Error::invalid("gamma_h: must not be NaN"));
        }
        if self.ramp_kappa <= 0.0 {
            return Err(Error::invalid("ramp_kappa: must be > 0"));
        }
        if self.tau <= 0.0 {
            return Err(Error::invalid("tau: must be > 0"));
        }
        if !(0.0..=1.0).contains(&self.ema_rate) {
            return Err(Error::invalid("ema_rate: must be in [0, 1]"));
        }
        if !(0.0..=1.0).contains(&self.hard_budget_max) {
            return Err(Error::invalid("hard_budget_max: must be in [0, 1]"));
        }
        if !(0.0..=self.hard_budget_max).contains(&self.hard_budget_init) {
            return Err(Error::invalid(
                "hard_budget_init: must be in [0, hard_budget_max]",
            ));
        }
        if !(0.0..=1.0).contains(&self.hard_step_down) || self.hard_step_up < 0.0 {
            return Err(Error::invalid(
                "hard_step_up must be >= 0 and hard_step_down in [0, 1]",
            ));
        }
        if self.plateau_patience < 2 {
            return Err(Error::invalid("plateau_patience: must be at least 2"));
        }
        if self.epsilon_plat < 0.0 {
            return Err(Error::invalid("epsilon_plat: must be >= 0"));
        }
        Ok(())
    }
}

/// Mutable state; everything here is part of `state_dict()`.
#[derive(Clone, Debug, PartialEq)]
pub struct StageState {
    pub epoch: u64,
    pub ema_easy: Vec<f64>,
    pub ema_medium: Vec<f64>,
    pub ema_global: f64,
    pub history: Vec<f64>,
    pub hard_budget: f64,
}

#[derive(Clone, Debug)]
pub struct StageScheduler {
    params: StageParams,
    seed: u64,
    state: StageState,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl StageScheduler {
    pub fn new(params: StageParams, num_domains: usize, seed: u64) -> Result<Self> {
        params.validate()?;
        let state = StageState {
            epoch: 0,
            ema_easy: vec![params.ema_init_easy; num_domains],
            ema_medium: vec![params.ema_init_medium; num_domains],
            ema_global: params.ema_init_global,
            history: Vec::new(),
            hard_budget: params.hard_budget_init,
        };
        Ok(StageScheduler {
            params,
            seed,
            state,
        })
    }

    pub fn params(&self) -> &StageParams {
        &self.params
    }
    pub fn seed(&self) -> u64 {
        self.seed
    }
    pub fn state(&self) -> &StageState {
        &self.state
    }
    pub fn num_domains(&self) -> usize {
        self.state.ema_easy.len()
    }

    /// Restores a state (as saved by `state()`); shapes are checked.
    pub fn set_state(&mut self, state: StageState) -> Result<()> {
        if state.ema_easy.len() != state.ema_medium.len() {
            return Err(Error::invalid(
                "state: ema_easy and ema_medium must have one value per domain",
            ));
        }
        let all = state
            .ema_easy
            .iter()
            .chain(&state.ema_medium)
            .chain(&state.history)
            .chain([&state.ema_global, &state.hard_budget]);
        if all.into_iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("state: values must be finite"));
        }
        self.state = state;
        Ok(())
    }

    /// Adds domains (initial EMAs) until there are `n`.
    pub fn ensure_domains(&mut self, n: usize) {
        let p = &self.params;
        if n > self.state.ema_easy.len() {
            self.state.ema_easy.resize(n, p.ema_init_easy);
            self.state.ema_medium.resize(n, p.ema_init_medium);
        }
    }

    fn check_domain(&self, d: usize) -> Result<()> {
        if d >= self.num_domains() {
            return Err(Error::invalid(format!(
                "domain: id {d} is out of range ({} domains)",
                self.num_domains()
            )));
        }
        Ok(())
    }

    pub fn ramp(&self, epoch: u64) -> f64 {
        let w = self.params.easy_warmup_epochs;
        if epoch <= w {
            0.0
        } else {
            ((epoch - w) as f64 / self.params.ramp_kappa).min(1.0)
        }
    }

    pub fn gap(&self, d: usize) -> Result<f64> {
        self.check_domain(d)?;
        let (e, m) = (self.state.ema_easy[d], self.state.ema_medium[d]);
        Ok(if e < 1e-8 { 0.0 } else { (e - m) / (e + 1e-8) })
    }

    pub fn medium_probability(&self, d: usize, epoch: u64) -> Result<f64> {
        let g = self.gap(d)?;
        Ok(self.ramp(epoch) * sigmoid((g - self.params.gamma) / self.params.tau))
    }

    pub fn median_gap(&self) -> f64 {
        let mut g: Vec<f64> = (0..self.num_domains())
            .map(|d| self.gap(d).expect("in range"))
            .collect();
        if g.is_empty() {
            return 0.0;
        }
        g.sort_by(f64::total_cmp);
        let n = g.len();
        if n % 2 == 1 {
            g[n / 2]
        } else {
            0.5 * (g[n / 2 - 1] + g[n / 2])
        }
    }

    /// Stages for samples `(id, domain)` at `epoch`.
    pub fn assign(&self, sample_ids: &[u64], domains: &[u64], epoch: u64) -> Result<Vec<Stage>> {
        if sample_ids.len() != domains.len() {
            return Err(Error::invalid(format!(
                "assign: {} sample ids but {} domains",
                sample_ids.len(),
                domains.len()
            )));
        }
        let p = &self.params;
        let nd = self.num_domains();
        if let Some(&d) = domains.iter().find(|&&d| d as usize >= nd) {
            return Err(Error::invalid(format!(
                "domain: id {d} is out of range ({nd} domains)"
            )));
        }
        if epoch < p.easy_warmup_epochs {
            return Ok(vec![Stage::Easy; sample_ids.len()]);
        }
        let p_med: Vec<f64> = (0..nd)
            .map(|d| self.medium_probability(d, epoch).expect("in range"))
            .collect();
        let hard_phase = epoch >= p.hard_transition_epoch;
        let kh = derive_key(self.seed, &[TAG_HARD, epoch]);
        let km = derive_key(self.seed, &[TAG_MEDIUM, epoch]);
        let budget = self.state.hard_budget;
        Ok(sample_ids
            .iter()
            .zip(domains)
            .map(|(&id, &d)| {
                if hard_phase && unit_f64(at(kh, id)) < budget {
                    Stage::Hard
                } else if unit_f64(at(km, id)) < p_med[d as usize] {
                    Stage::Medium
                } else {
                    Stage::Easy
                }
            })
            .collect())
    }

    pub fn plateau(&self) -> bool {
        let q = self.params.plateau_patience;
        let h = &self.state.history;
        if h.len() < q {
            return false;
        }
        h[h.len() - q..]
            .windows(2)
            .all(|w| (w[1] - w[0]).abs() <= self.params.epsilon_plat)
    }

    pub fn loss_rising(&self) -> bool {
        let h = &self.state.history;
        h.len() >= 2 && h[h.len() - 1] - h[h.len() - 2] >= self.params.delta_rise
    }

    /// End of epoch `epoch`: per-domain mean easy / medium losses (None where the domain had no
    /// sample of that stage) and the epoch's global loss (None: no update of the global EMA).
    pub fn update(
        &mut self,
        epoch: u64,
        easy: &[Option<f64>],
        medium: &[Option<f64>],
        global: Option<f64>,
    ) -> Result<()> {
        let nd = self.num_domains();
        if easy.len() != nd || medium.len() != nd {
            return Err(Error::invalid(format!(
                "update: expected losses for {nd} domains, got {} easy and {} medium",
                easy.len(),
                medium.len()
            )));
        }
        let values = easy.iter().chain(medium).flatten().chain(global.iter());
        if let Some(v) = values.into_iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(format!(
                "update: losses must be finite, got {v}"
            )));
        }
        let r = self.params.ema_rate;
        self.state.epoch = epoch;
        for d in 0..nd {
            if let Some(x) = easy[d] {
                self.state.ema_easy[d] = (1.0 - r) * self.state.ema_easy[d] + r * x;
            }
            if let Some(x) = medium[d] {
                self.state.ema_medium[d] = (1.0 - r) * self.state.ema_medium[d] + r * x;
            }
        }
        if let Some(x) = global {
            self.state.ema_global = (1.0 - r) * self.state.ema_global + r * x;
            self.state.history.push(self.state.ema_global);
        }
        let p = &self.params;
        if self.plateau() && self.median_gap() >= p.gamma_h {
            self.state.hard_budget =
                (self.state.hard_budget + p.hard_step_up).min(p.hard_budget_max);
        } else if self.loss_rising() {
            self.state.hard_budget = ((1.0 - p.hard_step_down) * self.state.hard_budget).max(0.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(n: usize) -> StageScheduler {
        StageScheduler::new(StageParams::default(), n, 7).unwrap()
    }

    #[test]
    fn warmup_is_easy_only() {
        let s = sched(2);
        let ids: Vec<u64> = (0..1000).collect();
        let d = vec![0u64; 1000];
        for e in 0..=4 {
            // e == warmup: ramp is 0, so still all easy
            assert!(s
                .assign(&ids, &d, e)
                .unwrap()
                .iter()
                .all(|&x| x == Stage::Easy));
        }
    }

    #[test]
    fn medium_probability_hand_computed() {
        let mut s = sched(1);
        // gap = (1 - 0.4) / (1 + 1e-8) after one update with ema_rate 1
        let p = StageParams {
            ema_rate: 1.0,
            ..Default::default()
        };
        s = StageScheduler { params: p, ..s };
        s.update(5, &[Some(1.0)], &[Some(0.4)], Some(1.0)).unwrap();
        let gap = 0.6 / (1.0 + 1e-8);
        assert!((s.gap(0).unwrap() - gap).abs() < 1e-15);
        // epoch 9: ramp = (9 - 4) / 10 = 0.5; sigmoid((gap - 0.5) / 0.1)
        let expect = 0.5 / (1.0 + (-(gap - 0.5) / 0.1f64).exp());
        assert!((s.medium_probability(0, 9).unwrap() - expect).abs() < 1e-15);
        // empirical fraction of Medium matches
        let ids: Vec<u64> = (0..40_000).collect();
        let st = s.assign(&ids, &vec![0; 40_000], 9).unwrap();
        let f = st.iter().filter(|&&x| x == Stage::Medium).count() as f64 / 40_000.0;
        assert!((f - expect).abs() < 0.01, "{f} {expect}");
        assert!(st.iter().all(|&x| x != Stage::Hard));
    }

    #[test]
    fn hard_budget_grows_on_plateau_and_shrinks_on_rise() {
        // ema_rate 1: the EMA is the last loss, so the history is the loss sequence
        let p = StageParams {
            ema_rate: 1.0,
            gamma_h: 0.1,
            ..Default::default()
        };
        let mut s = StageScheduler::new(p, 1, 0).unwrap();
        // big easy-medium gap: 0.5
        for e in 0..4 {
            s.update(e, &[Some(1.0)], &[Some(0.5)], Some(2.0)).unwrap();
            assert_eq!(s.state().hard_budget, 0.0, "not yet q = 5 values");
        }
        s.update(4, &[Some(1.0)], &[Some(0.5)], Some(2.005))
            .unwrap();
        assert!(s.plateau());
        assert!((s.state().hard_budget - 0.05).abs() < 1e-15);
        for e in 5..20 {
            s.update(e, &[Some(1.0)], &[Some(0.5)], Some(2.0)).unwrap();
        }
        assert!((s.state().hard_budget - 0.3).abs() < 1e-12, "capped at max");
        s.update(20, &[Some(1.0)], &[Some(0.5)], Some(2.1)).unwrap();
        assert!(s.loss_rising());
        assert!((s.state().hard_budget - 0.27).abs() < 1e-12);
        // in the hard phase, about 27 % of samples are Hard
        let ids: Vec<u64> = (0..20_000).collect();
        let st = s.assign(&ids, &vec![0; 20_000], 25).unwrap();
        let f = st.iter().filter(|&&x| x == Stage::Hard).count() as f64 / 20_000.0;
        assert!((f - 0.27).abs() < 0.015, "{f}");
    }

    #[test]
    fn deterministic_per_sample() {
        let mut s = sched(2);
        s.state.ema_easy = vec![1.0, 1.0];
        s.state.ema_medium = vec![0.2, 0.9];
        let a = s.assign(&[5, 9, 11], &[0, 1, 0], 12).unwrap();
        let b = s.assign(&[11, 5], &[0, 0], 12).unwrap();
        assert_eq!(a[0], b[1]);
        assert_eq!(a[2], b[0]);
    }

    #[test]
    fn errors() {
        let s = sched(1);
        assert!(s.assign(&[1], &[1], 9).is_err());
        assert!(s.assign(&[1, 2], &[0], 9).is_err());
        let p = StageParams {
            tau: 0.0,
            ..Default::default()
        };
        assert!(StageScheduler::new(p, 1, 0).is_err());
    }
}
