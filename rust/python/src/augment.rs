//! Bindings of `gradatim_core::data::augment`'s geometry: the centred affine matrix the
//! augmentation draws, and one sample's augmentation applied with given decisions (a plan), so
//! that other pipelines (the bench's OpenCV baseline) can use and be checked against the core.

use gradatim_core::data::augment::{self, Plan};
use gradatim_core::image::{warp::Affine, Sample};
use numpy::{Element, PyArray1, PyReadonlyArray2, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::error::{to_py, wrong_type};
use crate::image::{boxes_from, boxes_to, to_numpy, view, with_array};

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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(centred_affine, m)?)?;
    m.add_function(wrap_pyfunction!(apply_augment_plan, m)?)?;
    Ok(())
}
