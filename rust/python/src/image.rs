//! Bindings of `gradatim_core::image`: NumPy in, NumPy out, the GIL released around each kernel.

use std::path::PathBuf;

use gradatim_core::image::{
    self as core, decode, draw, flip, warp, BoxXyxy, Image, ImageRef, Sample,
};
use numpy::{
    Element, PyArray1, PyArrayDyn, PyArrayMethods, PyReadonlyArray2, PyReadonlyArrayDyn,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

use crate::error::{to_py, wrong_type};

/// Run `$body` with `$a` bound to the array as `PyReadonlyArrayDyn<u8>` or `<u16>`.
macro_rules! with_array {
    ($obj:expr, $what:expr, |$a:ident| $body:expr) => {
        if let Ok($a) = $obj.extract::<PyReadonlyArrayDyn<'_, u8>>() {
            $body
        } else if let Ok($a) = $obj.extract::<PyReadonlyArrayDyn<'_, u16>>() {
            $body
        } else {
            Err(wrong_type(
                $what,
                "a uint8 or uint16 numpy array of shape (H, W) or (H, W, C)",
            ))
        }
    };
}
pub(crate) use with_array;

/// Borrow an (H, W) or (H, W, C) C-contiguous array as an image.
pub(crate) fn view<'a, T: Element>(a: &'a PyReadonlyArrayDyn<'_, T>) -> PyResult<ImageRef<'a, T>> {
    let shape = a.shape();
    let (h, w, c) = match *shape {
        [h, w] => (h, w, 1),
        [h, w, c] => (h, w, c),
        _ => return Err(wrong_type("image", "a 2-D or 3-D array")),
    };
    let data = a
        .as_slice()
        .map_err(|_| wrong_type("image", "a C-contiguous array"))?;
    ImageRef::new(w, h, c, data).map_err(to_py)
}

/// Hand an owned image to NumPy without copying; 2-D when `flat` and single-channel.
pub(crate) fn to_numpy<T: Element>(
    py: Python<'_>,
    img: Image<T>,
    flat: bool,
) -> PyResult<Py<PyAny>> {
    let (h, w, c) = (img.height, img.width, img.channels);
    let arr = PyArray1::from_vec(py, img.data);
    let arr: Bound<'_, PyArrayDyn<T>> = if flat && c == 1 {
        arr.reshape(vec![h, w])?
    } else {
        arr.reshape(vec![h, w, c])?
    };
    Ok(arr.into_any().unbind())
}

pub(crate) fn boxes_from(a: Option<PyReadonlyArray2<'_, f64>>) -> PyResult<Vec<BoxXyxy>> {
    let Some(a) = a else { return Ok(Vec::new()) };
    if a.shape()[1] != 4 {
        return Err(wrong_type(
            "boxes",
            "an (N, 4) float64 array of [x1, y1, x2, y2]",
        ));
    }
    let s = a
        .as_slice()
        .map_err(|_| wrong_type("boxes", "a C-contiguous array"))?;
    Ok(s.chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect())
}

pub(crate) fn boxes_to(py: Python<'_>, boxes: Vec<BoxXyxy>) -> PyResult<Py<PyAny>> {
    let n = boxes.len();
    let flat: Vec<f64> = boxes.into_iter().flatten().collect();
    Ok(PyArray1::from_vec(py, flat)
        .reshape(vec![n, 4])?
        .into_any()
        .unbind())
}

fn decoded_to_numpy(py: Python<'_>, d: decode::Decoded) -> PyResult<Py<PyAny>> {
    match d {
        decode::Decoded::U8(i) => to_numpy(py, i, true),
        decode::Decoded::U16(i) => to_numpy(py, i, true),
    }
}

fn decode_options(
    reduce_to: Option<(usize, usize)>,
    mode: &str,
    max_pixels: u64,
    max_bytes: u64,
    full_range: bool,
) -> PyResult<decode::DecodeOptions> {
    let mode = match mode {
        "unchanged" => decode::ColorMode::Unchanged,
        "gray" | "grey" => decode::ColorMode::Gray,
        "rgb" => decode::ColorMode::Rgb,
        other => {
            return Err(to_py(gradatim_core::Error::invalid(format!(
                "mode must be 'unchanged', 'gray' or 'rgb', not {other:?}"
            ))))
        }
    };
    Ok(decode::DecodeOptions {
        reduce_to,
        mode,
        max_pixels,
        max_bytes,
        full_range,
    })
}

#[pyfunction]
#[pyo3(signature = (path, reduce_to=None, mode="unchanged", max_pixels=decode::DEFAULT_MAX_PIXELS, max_bytes=decode::DEFAULT_MAX_BYTES, full_range=false))]
fn decode_path(
    py: Python<'_>,
    path: PathBuf,
    reduce_to: Option<(usize, usize)>,
    mode: &str,
    max_pixels: u64,
    max_bytes: u64,
    full_range: bool,
) -> PyResult<Py<PyAny>> {
    let opts = decode_options(reduce_to, mode, max_pixels, max_bytes, full_range)?;
    let d = py
        .detach(|| decode::decode_file(&path, &opts))
        .map_err(to_py)?;
    decoded_to_numpy(py, d)
}

#[pyfunction]
#[pyo3(signature = (data, name="<bytes>", reduce_to=None, mode="unchanged", max_pixels=decode::DEFAULT_MAX_PIXELS, max_bytes=decode::DEFAULT_MAX_BYTES, full_range=false))]
#[allow(clippy::too_many_arguments)] // one per Python keyword argument
fn decode_bytes(
    py: Python<'_>,
    data: &[u8],
    name: &str,
    reduce_to: Option<(usize, usize)>,
    mode: &str,
    max_pixels: u64,
    max_bytes: u64,
    full_range: bool,
) -> PyResult<Py<PyAny>> {
    let opts = decode_options(reduce_to, mode, max_pixels, max_bytes, full_range)?;
    let d = py
        .detach(|| decode::decode(data, name, &opts))
        .map_err(to_py)?;
    decoded_to_numpy(py, d)
}

/// The DCT scale denominator (1, 2, 4 or 8) a JPEG of `width` x `height` is decoded at for
/// `reduce_to` (the core's rule, shared by the loader and the bench's OpenCV baseline).
#[pyfunction]
#[pyo3(signature = (width, height, reduce_to=None))]
fn reduction_denominator(width: usize, height: usize, reduce_to: Option<(usize, usize)>) -> usize {
    decode::reduction_denominator(width, height, reduce_to)
}

#[pyfunction]
fn clahe(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    clip_limit: f64,
    tiles_x: usize,
    tiles_y: usize,
) -> PyResult<Py<PyAny>> {
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        clip: f64,
        tx: usize,
        ty: usize,
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let out = py
            .detach(|| core::clahe::clahe(v, clip, tx, ty))
            .map_err(to_py)?;
        to_numpy(py, out, a.ndim() == 2)
    }
    with_array!(img, "clahe", |a| run(py, a, clip_limit, tiles_x, tiles_y))
}

#[pyfunction]
fn resize(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    width: usize,
    height: usize,
    interpolation: &str,
) -> PyResult<Py<PyAny>> {
    let interp = match interpolation {
        "area" => core::resize::Interpolation::Area,
        "bilinear" | "linear" => core::resize::Interpolation::Bilinear,
        "cubic" => core::resize::Interpolation::Cubic,
        other => {
            return Err(to_py(gradatim_core::Error::invalid(format!(
                "interpolation must be 'area', 'bilinear' or 'cubic', not {other:?}"
            ))))
        }
    };
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        w: usize,
        h: usize,
        i: core::resize::Interpolation,
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let out = py
            .detach(|| core::resize::resize(v, w, h, i))
            .map_err(to_py)?;
        to_numpy(py, out, a.ndim() == 2)
    }
    with_array!(img, "resize", |a| run(py, a, width, height, interp))
}

#[pyfunction]
#[pyo3(signature = (img, matrix, width, height, boxes=None, min_visible=0.25,
                    interpolation="bilinear"))]
#[allow(clippy::too_many_arguments)]
fn warp_affine(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    matrix: [[f64; 3]; 2],
    width: usize,
    height: usize,
    boxes: Option<PyReadonlyArray2<'_, f64>>,
    min_visible: f64,
    interpolation: &str,
) -> PyResult<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
    let cubic = match interpolation {
        "bilinear" | "linear" => false,
        "cubic" => true,
        other => {
            return Err(to_py(gradatim_core::Error::invalid(format!(
                "interpolation must be 'bilinear' or 'cubic', not {other:?}"
            ))))
        }
    };
    let boxes = boxes_from(boxes)?;
    let (kept, keep) =
        warp::warp_boxes(&boxes, &matrix, width, height, min_visible).map_err(to_py)?;
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        m: &warp::Affine,
        w: usize,
        h: usize,
        cubic: bool,
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let out = py
            .detach(|| {
                if cubic {
                    core::warp_cubic::warp_affine_cubic(v, m, w, h)
                } else {
                    warp::warp_affine(v, m, w, h)
                }
            })
            .map_err(to_py)?;
        to_numpy(py, out, a.ndim() == 2)
    }
    let out = with_array!(img, "warp_affine", |a| run(
        py, a, &matrix, width, height, cubic
    ))?;
    let keep = PyArray1::from_vec(py, keep).into_any().unbind();
    Ok((out, boxes_to(py, kept)?, keep))
}

#[pyfunction]
fn hflip(py: Python<'_>, img: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let out = py.detach(|| flip::hflip(v));
        to_numpy(py, out, a.ndim() == 2)
    }
    with_array!(img, "hflip", |a| run(py, a))
}

#[pyfunction]
fn hflip_boxes(
    py: Python<'_>,
    boxes: PyReadonlyArray2<'_, f64>,
    width: usize,
) -> PyResult<Py<PyAny>> {
    let boxes = boxes_from(Some(boxes))?;
    boxes_to(py, flip::hflip_boxes(&boxes, width))
}

#[pyfunction]
fn swap_laterality(text: &str) -> String {
    flip::swap_laterality(text)
}

#[pyfunction]
fn draw_boxes(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    boxes: PyReadonlyArray2<'_, f64>,
    thickness: usize,
    value: f64,
) -> PyResult<Py<PyAny>> {
    let boxes = boxes_from(Some(boxes))?;
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        boxes: &[BoxXyxy],
        t: usize,
        value: f64,
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let mut out = Image {
            width: v.width,
            height: v.height,
            channels: v.channels,
            data: v.data.to_vec(),
        };
        let colour = vec![T::from_f32(value as f32); v.channels];
        py.detach(|| draw::draw_boxes(&mut out, boxes, t, &colour));
        to_numpy(py, out, a.ndim() == 2)
    }
    with_array!(img, "draw_boxes", |a| run(py, a, &boxes, thickness, value))
}

#[pyfunction]
fn normalize(
    py: Python<'_>,
    img: &Bound<'_, PyAny>,
    mean: Vec<f32>,
    std: Vec<f32>,
) -> PyResult<Py<PyAny>> {
    fn run<T: Sample + Element>(
        py: Python<'_>,
        a: PyReadonlyArrayDyn<'_, T>,
        mean: &[f32],
        std: &[f32],
    ) -> PyResult<Py<PyAny>> {
        let v = view(&a)?;
        let out = py
            .detach(|| core::normalize::normalize(v, mean, std))
            .map_err(to_py)?;
        to_numpy(py, out, a.ndim() == 2)
    }
    with_array!(img, "normalize", |a| run(py, a, &mean, &std))
}

#[pyfunction]
#[pyo3(signature = (img, quality=92))]
fn encode_jpeg(
    py: Python<'_>,
    img: PyReadonlyArrayDyn<'_, u8>,
    quality: i32,
) -> PyResult<Py<PyAny>> {
    let v = view(&img)?;
    let bytes = py
        .detach(|| core::encode::encode_jpeg(v, quality))
        .map_err(to_py)?;
    Ok(pyo3::types::PyBytes::new(py, &bytes).into_any().unbind())
}

#[pyfunction]
fn encode_png(py: Python<'_>, img: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let bytes = if let Ok(a) = img.extract::<PyReadonlyArrayDyn<'_, u8>>() {
        let v = view(&a)?;
        py.detach(|| core::encode::encode_png_u8(v))
    } else if let Ok(a) = img.extract::<PyReadonlyArrayDyn<'_, u16>>() {
        let v = view(&a)?;
        py.detach(|| core::encode::encode_png_u16(v))
    } else {
        return Err(wrong_type("encode_png", "a uint8 or uint16 numpy array"));
    }
    .map_err(to_py)?;
    Ok(pyo3::types::PyBytes::new(py, &bytes).into_any().unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(encode_jpeg, m)?)?;
    m.add_function(wrap_pyfunction!(encode_png, m)?)?;
    m.add_function(wrap_pyfunction!(decode_path, m)?)?;
    m.add_function(wrap_pyfunction!(decode_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(reduction_denominator, m)?)?;
    m.add_function(wrap_pyfunction!(clahe, m)?)?;
    m.add_function(wrap_pyfunction!(resize, m)?)?;
    m.add_function(wrap_pyfunction!(warp_affine, m)?)?;
    m.add_function(wrap_pyfunction!(hflip, m)?)?;
    m.add_function(wrap_pyfunction!(hflip_boxes, m)?)?;
    m.add_function(wrap_pyfunction!(swap_laterality, m)?)?;
    m.add_function(wrap_pyfunction!(draw_boxes, m)?)?;
    m.add_function(wrap_pyfunction!(normalize, m)?)?;
    m.add("DEFAULT_MAX_PIXELS", decode::DEFAULT_MAX_PIXELS)?;
    m.add("DEFAULT_MAX_BYTES", decode::DEFAULT_MAX_BYTES)?;
    Ok(())
}
