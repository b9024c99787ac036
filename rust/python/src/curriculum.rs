//! Bindings of `gradatim_core::curriculum`: RRGCL, pacing baselines, CURE weights, MedCLM stages.

use gradatim_core::curriculum::{
    cure, pacing, rrgcl, stages::StageState, Pacing, Rrgcl, StageParams, StageScheduler,
};
use gradatim_core::Error;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::error::{to_py, wrong_type};

fn slice<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| wrong_type(what, "a contiguous 1-D array"))
}

fn unsigned(v: &[i64], what: &str) -> PyResult<Vec<u64>> {
    v.iter()
        .map(|&x| {
            u64::try_from(x)
                .map_err(|_| to_py(Error::invalid(format!("{what}: negative value {x}"))))
        })
        .collect()
}

fn f64_array(py: Python<'_>, v: Vec<f64>) -> Bound<'_, PyArray1<f64>> {
    v.into_pyarray(py)
}

/// Eq. 11-13 from raw per-class difficulty.
#[pyfunction]
#[pyo3(signature = (class_difficulty, t, epochs, c=None))]
fn rrgcl_rates<'py>(
    py: Python<'py>,
    class_difficulty: Vec<f64>,
    t: f64,
    epochs: f64,
    c: Option<f64>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let r = rrgcl::rrgcl_rates(&class_difficulty, t, epochs, c).map_err(to_py)?;
    Ok(f64_array(py, r))
}

/// RRGCL's class-level scheduler over a training set.
#[pyclass(name = "RRGCL", module = "gradatim._core", frozen)]
pub struct PyRrgcl {
    inner: Rrgcl,
}

#[pymethods]
impl PyRrgcl {
    #[new]
    #[pyo3(signature = (sample_offsets, sample_classes, num_classes, difficulty, epochs, c=None))]
    fn new(
        py: Python<'_>,
        sample_offsets: PyReadonlyArray1<'_, i64>,
        sample_classes: PyReadonlyArray1<'_, i64>,
        num_classes: usize,
        difficulty: PyReadonlyArray1<'_, f64>,
        epochs: f64,
        c: Option<f64>,
    ) -> PyResult<Self> {
        let off = unsigned(slice(&sample_offsets, "sample_offsets")?, "sample_offsets")?;
        let cls = unsigned(slice(&sample_classes, "classes")?, "classes")?;
        let dif = slice(&difficulty, "difficulty")?;
        let inner = py
            .detach(|| Rrgcl::new(&off, &cls, num_classes, dif, epochs, c))
            .map_err(to_py)?;
        Ok(PyRrgcl { inner })
    }

    fn rates<'py>(&self, py: Python<'py>, t: f64) -> PyResult<Bound<'py, PyArray1<f64>>> {
        Ok(f64_array(py, self.inner.rates(t).map_err(to_py)?))
    }

    fn counts<'py>(&self, py: Python<'py>, t: f64) -> PyResult<Bound<'py, PyArray1<u64>>> {
        Ok(self.inner.counts(t).map_err(to_py)?.into_pyarray(py))
    }

    fn epoch_indices<'py>(&self, py: Python<'py>, t: f64) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let inner = &self.inner;
        let v = py.detach(|| inner.epoch_indices(t)).map_err(to_py)?;
        Ok(v.into_pyarray(py))
    }

    fn class_members<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyArray1<u64>>> {
        Ok(self
            .inner
            .members(n)
            .map_err(to_py)?
            .to_vec()
            .into_pyarray(py))
    }

    #[getter]
    fn raw_class_difficulty<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_array(py, self.inner.raw_class_difficulty().to_vec())
    }
    #[getter]
    fn class_difficulty<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_array(py, self.inner.class_difficulty().to_vec())
    }
    #[getter]
    fn gamma<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_array(py, self.inner.gamma().to_vec())
    }
    #[getter]
    fn lambda0<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        f64_array(py, self.inner.lambda0().to_vec())
    }
    #[getter]
    fn class_sizes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.inner.class_sizes().into_pyarray(py)
    }
    #[getter]
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    #[getter]
    fn num_samples(&self) -> usize {
        self.inner.num_samples()
    }
    #[getter]
    fn unlabeled(&self) -> Option<usize> {
        self.inner.unlabeled()
    }
    #[getter]
    fn c(&self) -> f64 {
        self.inner.c()
    }
    #[getter]
    fn epochs(&self) -> f64 {
        self.inner.epochs()
    }
}

fn parse_pacing(name: &str, p: f64, buckets: usize) -> PyResult<Pacing> {
    Pacing::parse(name, p, buckets).map_err(to_py)
}

/// The fraction of difficulty-sorted data in use at epoch `t`.
#[pyfunction]
#[pyo3(signature = (name, t, epochs, c0, p, buckets))]
fn pacing_fraction(
    name: &str,
    t: f64,
    epochs: f64,
    c0: f64,
    p: f64,
    buckets: usize,
) -> PyResult<f64> {
    pacing::fraction(parse_pacing(name, p, buckets)?, t, epochs, c0).map_err(to_py)
}

/// `[lo, hi)` positions of the difficulty-sorted data trained on at epoch `t`.
#[pyfunction]
#[pyo3(signature = (name, t, epochs, c0, p, buckets, n))]
fn pacing_range(
    name: &str,
    t: f64,
    epochs: f64,
    c0: f64,
    p: f64,
    buckets: usize,
    n: usize,
) -> PyResult<(usize, usize)> {
    pacing::selected_range(parse_pacing(name, p, buckets)?, t, epochs, c0, n).map_err(to_py)
}

#[pyfunction]
fn bucket_stage(t: f64, epochs: f64, buckets: usize) -> PyResult<usize> {
    pacing::checked_bucket_stage(t, epochs, buckets).map_err(to_py)
}

/// Sample indices from easiest to hardest (ties by index).
#[pyfunction]
fn difficulty_order<'py>(
    py: Python<'py>,
    difficulty: PyReadonlyArray1<'py, f64>,
) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let d = slice(&difficulty, "difficulty")?;
    let v = py.detach(|| pacing::difficulty_order(d)).map_err(to_py)?;
    Ok(v.into_pyarray(py))
}

/// CURE's weights for per-source `(iou, text)` (either may be None).
#[pyfunction]
#[pyo3(signature = (iou, text, alpha, min_weight=None))]
fn cure_weights(
    iou: Vec<Option<f64>>,
    text: Vec<Option<f64>>,
    alpha: f64,
    min_weight: Option<f64>,
) -> PyResult<Vec<f64>> {
    if iou.len() != text.len() {
        return Err(to_py(Error::invalid(
            "cure_weights: iou and text lengths differ",
        )));
    }
    let m: Vec<(Option<f64>, Option<f64>)> = iou.into_iter().zip(text).collect();
    cure::cure_weights(&m, alpha, min_weight).map_err(to_py)
}

/// MedCLM's Easy / Medium / Hard scheduler.
#[pyclass(name = "StageScheduler", module = "gradatim._core")]
pub struct PyStageScheduler {
    inner: StageScheduler,
}

/// The scheduler's learning state as it crosses: a dict with these keys.
#[derive(FromPyObject, IntoPyObject)]
#[pyo3(from_item_all)]
struct StateDict {
    epoch: u64,
    ema_easy: Vec<f64>,
    ema_medium: Vec<f64>,
    ema_global: f64,
    history: Vec<f64>,
    hard_budget: f64,
}

#[pymethods]
impl PyStageScheduler {
    #[new]
    #[pyo3(signature = (
        num_domains, seed, easy_warmup_epochs, hard_transition_epoch, ramp_kappa, gamma, tau,
        gamma_h, epsilon_plat, plateau_patience, delta_rise, hard_step_up, hard_step_down,
        hard_budget_max, hard_budget_init, ema_rate, ema_init_easy, ema_init_medium, ema_init_global
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        num_domains: usize,
        seed: u64,
        easy_warmup_epochs: u64,
        hard_transition_epoch: u64,
        ramp_kappa: f64,
        gamma: f64,
        tau: f64,
        gamma_h: f64,
        epsilon_plat: f64,
        plateau_patience: usize,
        delta_rise: f64,
        hard_step_up: f64,
        hard_step_down: f64,
        hard_budget_max: f64,
        hard_budget_init: f64,
        ema_rate: f64,
        ema_init_easy: f64,
        ema_init_medium: f64,
        ema_init_global: f64,
    ) -> PyResult<Self> {
        let params = StageParams {
            easy_warmup_epochs,
            hard_transition_epoch,
            ramp_kappa,
            gamma,
            tau,
            gamma_h,
            epsilon_plat,
            plateau_patience,
            delta_rise,
            hard_step_up,
            hard_step_down,
            hard_budget_max,
            hard_budget_init,
            ema_rate,
            ema_init_easy,
            ema_init_medium,
            ema_init_global,
        };
        let inner = StageScheduler::new(params, num_domains, seed).map_err(to_py)?;
        Ok(PyStageScheduler { inner })
    }

    /// Stage codes (0 easy, 1 medium, 2 hard) for samples `(id, domain)` at `epoch`.
    fn assign<'py>(
        &self,
        py: Python<'py>,
        sample_ids: PyReadonlyArray1<'py, i64>,
        domains: PyReadonlyArray1<'py, i64>,
        epoch: u64,
    ) -> PyResult<Bound<'py, PyArray1<u8>>> {
        let ids = unsigned(slice(&sample_ids, "sample_ids")?, "sample_ids")?;
        let dom = unsigned(slice(&domains, "domains")?, "domains")?;
        let inner = &self.inner;
        let st = py
            .detach(|| inner.assign(&ids, &dom, epoch))
            .map_err(to_py)?;
        Ok(st
            .into_iter()
            .map(|s| s as u8)
            .collect::<Vec<_>>()
            .into_pyarray(py))
    }

    fn update(
        &mut self,
        epoch: u64,
        easy: Vec<Option<f64>>,
        medium: Vec<Option<f64>>,
        global_loss: Option<f64>,
    ) -> PyResult<()> {
        self.inner
            .update(epoch, &easy, &medium, global_loss)
            .map_err(to_py)
    }

    fn ensure_domains(&mut self, n: usize) {
        self.inner.ensure_domains(n)
    }

    fn gap(&self, domain: usize) -> PyResult<f64> {
        self.inner.gap(domain).map_err(to_py)
    }

    fn medium_probability(&self, domain: usize, epoch: u64) -> PyResult<f64> {
        self.inner.medium_probability(domain, epoch).map_err(to_py)
    }

    fn ramp(&self, epoch: u64) -> f64 {
        self.inner.ramp(epoch)
    }

    fn median_gap(&self) -> f64 {
        self.inner.median_gap()
    }

    fn plateau(&self) -> bool {
        self.inner.plateau()
    }

    fn loss_rising(&self) -> bool {
        self.inner.loss_rising()
    }

    #[getter]
    fn num_domains(&self) -> usize {
        self.inner.num_domains()
    }

    /// `{"epoch", "ema_easy", "ema_medium", "ema_global", "history", "hard_budget"}`.
    fn get_state(&self) -> StateDict {
        let s = self.inner.state();
        StateDict {
            epoch: s.epoch,
            ema_easy: s.ema_easy.clone(),
            ema_medium: s.ema_medium.clone(),
            ema_global: s.ema_global,
            history: s.history.clone(),
            hard_budget: s.hard_budget,
        }
    }

    fn set_state(&mut self, state: StateDict) -> PyResult<()> {
        let StateDict {
            epoch,
            ema_easy,
            ema_medium,
            ema_global,
            history,
            hard_budget,
        } = state;
        self.inner
            .set_state(StageState {
                epoch,
                ema_easy,
                ema_medium,
                ema_global,
                history,
                hard_budget,
            })
            .map_err(to_py)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(rrgcl_rates, m)?)?;
    m.add_class::<PyRrgcl>()?;
    m.add_function(wrap_pyfunction!(pacing_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(pacing_range, m)?)?;
    m.add_function(wrap_pyfunction!(bucket_stage, m)?)?;
    m.add_function(wrap_pyfunction!(difficulty_order, m)?)?;
    m.add_function(wrap_pyfunction!(cure_weights, m)?)?;
    m.add_class::<PyStageScheduler>()?;
    m.add("UNLABELED", rrgcl::UNLABELED)?;
    let defaults = PyDict::new(m.py());
    for (name, value, integer) in StageParams::default().named() {
        if integer {
            defaults.set_item(name, value as u64)?;
        } else {
            defaults.set_item(name, value)?;
        }
    }
    m.add("STAGE_DEFAULTS", defaults)?;
    let codes = PyDict::new(m.py());
    for (name, code) in gradatim_core::data::sample::Stage::NAMED {
        codes.set_item(name, code)?;
    }
    m.add("STAGE_CODES", codes)?;
    Ok(())
}
