//! Python values <-> JSON values (`serde_json::Value`), so that dicts (a manifest record, the
//! augmentation, the templates) cross into the core as typed data rather than JSON text.
//!
//! Only what JSON can say is accepted: `None`, `bool`, `int`, finite `float`, `str`, lists and
//! tuples, and mappings with string keys (NumPy scalars and arrays as their Python values).
//! Anything else is refused with the path of the value (`boxes[0].box[2]`), so that a NaN cannot
//! silently become a null.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyMapping, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Why a Python value is not JSON: where in the value (`""`: the value itself) and why.
pub struct NotJson {
    pub path: String,
    pub reason: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "?".to_string(), |n| n.to_string())
}

/// Convert a Python value to JSON.
pub fn to_value(obj: &Bound<'_, PyAny>) -> Result<Value, NotJson> {
    convert(obj, "")
}

fn convert(obj: &Bound<'_, PyAny>, path: &str) -> Result<Value, NotJson> {
    let fail = |reason: String| NotJson {
        path: path.to_string(),
        reason,
    };
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_str().map_err(|e| fail(e.to_string()))?;
        return Ok(Value::String(s.to_string()));
    }
    if obj.cast::<PyInt>().is_ok() {
        if let Ok(i) = obj.extract::<i64>() {
            return Ok(Value::from(i));
        }
        if let Ok(u) = obj.extract::<u64>() {
            return Ok(Value::from(u));
        }
        // beyond 64 bits: a float, as a JSON parser reads such a number
        let x: f64 = obj.extract().map_err(|e: PyErr| fail(e.to_string()))?;
        return Number::from_f64(x)
            .map(Value::Number)
            .ok_or_else(|| fail(format!("must be a finite number, got {x}")));
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let x = f.value();
        return Number::from_f64(x).map(Value::Number).ok_or_else(|| {
            fail(format!(
                "must be a finite number, got {x} (a manifest is JSON, which has no NaN or \
                 infinity)"
            ))
        });
    }
    // a NumPy scalar or array (or anything else with a dtype and `tolist`): its Python values
    if obj.hasattr("dtype").unwrap_or(false) && obj.hasattr("tolist").unwrap_or(false) {
        let plain = obj
            .call_method0("tolist")
            .map_err(|e| fail(e.to_string()))?;
        if plain.hasattr("dtype").unwrap_or(false) {
            return Err(fail(format!(
                "must be a JSON value, got {}",
                type_name(obj)
            )));
        }
        return convert(&plain, path);
    }
    if let Ok(list) = obj.cast::<PyList>() {
        return list
            .iter()
            .enumerate()
            .map(|(i, v)| convert(&v, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Ok(tuple) = obj.cast::<PyTuple>() {
        return tuple
            .iter()
            .enumerate()
            .map(|(i, v)| convert(&v, &format!("{path}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    let items = if let Ok(d) = obj.cast::<PyDict>() {
        d.items()
    } else if let Ok(m) = obj.cast::<PyMapping>() {
        m.items().map_err(|e| fail(e.to_string()))?
    } else {
        return Err(fail(format!(
            "must be a JSON value (None, bool, int, float, str, list or dict), got {}",
            type_name(obj)
        )));
    };
    let mut map = Map::new();
    for item in items.iter() {
        let (k, v): (Bound<'_, PyAny>, Bound<'_, PyAny>) =
            item.extract().map_err(|e: PyErr| fail(e.to_string()))?;
        let key = match k.cast::<PyString>() {
            Ok(s) => s.to_str().map_err(|e| fail(e.to_string()))?.to_string(),
            Err(_) => return Err(fail(format!("keys must be strings, got {}", type_name(&k)))),
        };
        let value = convert(&v, &join(path, &key))?;
        map.insert(key, value);
    }
    Ok(Value::Object(map))
}

/// Convert a JSON value to Python (objects become dicts in their key order).
pub fn from_value<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_pyobject(py)?.into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(from_value(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(o) => {
            let d = PyDict::new(py);
            for (k, x) in o {
                d.set_item(k, from_value(py, x)?)?;
            }
            d.into_any()
        }
    })
}
