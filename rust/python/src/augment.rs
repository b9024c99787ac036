//! Bindings of `gradatim_core::data::augment`'s geometry: the centred affine matrix the
//! augmentation draws, one sample's plan as the core draws it, and one sample's augmentation
//! applied with given decisions (a plan), so that other pipelines (the bench's OpenCV baseline,
//! albumentations in the tests) can use and be checked against the core.

use gradatim_core::data::augment::{self, AugmentConfig, CureDraws, Plan};
use gradatim_core::data::sample::TAG_AUGMENT;
use gradatim_core::image::cure::{L_OF_GREY, RGB_OF_L};
use gradatim_core::image::{warp::Affine, Sample};
use gradatim_core::{rng, Error};
use numpy::{Element, PyArray1, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::error::{to_py, wrong_type};
use crate::image::{boxes_from, boxes_to, to_numpy, view, with_array};
use crate::json::{from_value, to_value};

fn json(what: &str, obj: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    to_value(obj).map_err(|e| {
        to_py(Error::invalid(format!(
            "{what}{}: {}",
            if e.path.is_empty() {
                String::new()
            } else {
                format!(".{}", e.path)
            },
            e.reason
        )))
    })
}

/// The plan the core draws for sample `index` in `epoch` under `seed` (what the loader applies),
/// as a dict: `crop`, `clahe`, `affine`, `flip`, `cure` (the `cure` pipeline's draws).
#[pyfunction]
#[pyo3(signature = (augment, seed, epoch, index, width, height, laterality_sensitive=false))]
#[allow(clippy::too_many_arguments)]
fn augment_plan<'py>(
    py: Python<'py>,
    augment: &Bound<'py, PyAny>,
    seed: u64,
    epoch: u64,
    index: u64,
    width: usize,
    height: usize,
    laterality_sensitive: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let cfg = AugmentConfig::from_value(json("augment", augment)?).map_err(to_py)?;
    let key = rng::derive_key(seed, &[TAG_AUGMENT, epoch, index]);
    let plan = cfg.plan(key, width, height, laterality_sensitive);
    let value = serde_json::to_value(&plan).map_err(|e| to_py(Error::invalid(e.to_string())))?;
    from_value(py, &value)
}

/// `augment::apply_cure` with the plan given (`plan`: a dict as `augment_plan` returns): returns
/// the 8-bit image, the kept boxes and the keep mask.
#[pyfunction]
#[pyo3(signature = (img, width, height, plan, boxes=None, *, decoded_scale=(1.0, 1.0),
                    min_visible=0.0))]
#[allow(clippy::too_many_arguments)]
fn apply_cure_plan(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    width: usize,
    height: usize,
    plan: &Bound<'_, PyAny>,
    boxes: Option<PyReadonlyArray2<'_, f64>>,
    decoded_scale: (f64, f64),
    min_visible: f64,
) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
    let boxes = boxes_from(boxes)?;
    let mut plan: Plan = serde_json::from_value(json("plan", plan)?)
        .map_err(|e| to_py(Error::invalid(format!("plan: {e}"))))?;
    plan.cure.get_or_insert_with(CureDraws::default);
    #[allow(clippy::type_complexity)]
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        args: (&Plan, &[[f64; 4]], (f64, f64), usize, usize, f64),
    ) -> PyResult<(Py<PyAny>, Vec<Option<[f64; 4]>>)> {
        let (plan, boxes, scale, w, h, min_visible) = args;
        let v = view(&a)?;
        let out = py
            .detach(|| augment::apply_cure(v, scale, boxes, plan, w, h, min_visible))
            .map_err(to_py)?;
        Ok((to_numpy(py, out.image, a.ndim() == 2)?, out.boxes))
    }
    let args = (&plan, &boxes[..], decoded_scale, width, height, min_visible);
    let (out, mapped) = with_array!(img, "apply_cure_plan", |a| run(py, a, args))?;
    let keep: Vec<bool> = mapped.iter().map(Option::is_some).collect();
    let kept = mapped.into_iter().flatten().collect();
    let keep = PyArray1::from_vec(py, keep).into_any().unbind();
    Ok((out, boxes_to(py, kept)?, keep))
}

/// `augment::centred_affine`: the forward 2x3 matrix about `(cx, cy)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn centred_affine(
    angle: f64,
    scale: f64,
    shear: f64,
    tx: f64,
    ty: f64,
    cx: f64,
    cy: f64,
) -> Affine {
    augment::centred_affine(angle, scale, shear, tx, ty, cx, cy)
}

/// `augment::apply` with the plan given: returns the image, the kept boxes and the keep mask.
#[pyfunction]
#[pyo3(signature = (img, width, height, boxes=None, *, decoded_scale=(1.0, 1.0), crop=None,
                    clahe=None, affine=None, flip=false, min_visible=0.25))]
#[allow(clippy::too_many_arguments)]
fn apply_augment_plan(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    width: usize,
    height: usize,
    boxes: Option<PyReadonlyArray2<'_, f64>>,
    decoded_scale: (f64, f64),
    crop: Option<[f64; 4]>,
    clahe: Option<(f64, usize, usize)>,
    affine: Option<Affine>,
    flip: bool,
    min_visible: f64,
) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
    let boxes = boxes_from(boxes)?;
    let plan = Plan {
        crop,
        clahe,
        affine,
        flip,
        cure: None,
    };
    #[allow(clippy::type_complexity)]
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        args: (&Plan, &[[f64; 4]], (f64, f64), usize, usize, f64),
    ) -> PyResult<(Py<PyAny>, Vec<Option<[f64; 4]>>)> {
        let (plan, boxes, scale, w, h, min_visible) = args;
        let v = view(&a)?;
        let out = py
            .detach(|| augment::apply(v, scale, boxes, plan, w, h, min_visible))
            .map_err(to_py)?;
        Ok((to_numpy(py, out.image, a.ndim() == 2)?, out.boxes))
    }
    let args = (&plan, &boxes[..], decoded_scale, width, height, min_visible);
    let (out, mapped) = with_array!(img, "apply_augment_plan", |a| run(py, a, args))?;
    let keep: Vec<bool> = mapped.iter().map(Option::is_some).collect();
    let kept = mapped.into_iter().flatten().collect();
    let keep = PyArray1::from_vec(py, keep).into_any().unbind();
    Ok((out, boxes_to(py, kept)?, keep))
}

/// The `cure` pipeline's CIELAB tables (`image::cure`): L of grey `v` (256 bytes) and the RGB of
/// `(L, 128, 128)` (256 x 3 bytes), for the tests to check against `cv2.cvtColor`.
#[pyfunction]
fn lab_grey_tables(py: Python<'_>) -> (Py<PyBytes>, Py<PyBytes>) {
    let rgb: Vec<u8> = RGB_OF_L.iter().flatten().copied().collect();
    (
        PyBytes::new(py, &L_OF_GREY).unbind(),
        PyBytes::new(py, &rgb).unbind(),
    )
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(centred_affine, m)?)?;
    m.add_function(wrap_pyfunction!(apply_augment_plan, m)?)?;
    m.add_function(wrap_pyfunction!(augment_plan, m)?)?;
    m.add_function(wrap_pyfunction!(apply_cure_plan, m)?)?;
    m.add_function(wrap_pyfunction!(lab_grey_tables, m)?)?;
    Ok(())
}
