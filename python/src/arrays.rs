//! numpy in and out: query and vector arrays read in place when they are
//! C-contiguous float32 (converted once by numpy otherwise), results moved
//! into numpy without a copy.

use numpy::ndarray::Array2;
use numpy::{
    Element, IntoPyArray, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use imgsim_common::ErrorKind;

use crate::errors::{exception, invalid};

/// `obj` as rows of float32 vectors: a C-contiguous float32 2-D array is
/// borrowed as it is; anything else (another dtype, a strided view, a list
/// of lists, one 1-D vector) is converted by `numpy.ascontiguousarray`,
/// a 1-D vector becoming one row. `what` names the argument in errors.
pub fn rows_f32<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<PyReadonlyArray2<'py, f32>> {
    if let Ok(a) = obj.cast::<PyArray2<f32>>() {
        if a.is_c_contiguous() {
            return Ok(a.readonly());
        }
    }
    let py = obj.py();
    let np = py.import("numpy")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", np.getattr("float32")?)?;
    let mut converted = np
        .getattr("ascontiguousarray")?
        .call((obj,), Some(&kwargs))?;
    let ndim: usize = converted.getattr("ndim")?.extract()?;
    if ndim == 1 {
        converted = converted.call_method1("reshape", (1, -1))?;
    } else if ndim != 2 {
        return Err(invalid(format!(
            "{what} must be one vector or a 2-D array of vectors (one per row), not a {ndim}-D array"
        )));
    }
    Ok(converted.cast_into::<PyArray2<f32>>()?.readonly())
}

/// A `rows × cols` numpy array that takes over `data` (row-major) without
/// copying it.
pub fn matrix<T: Element>(
    py: Python<'_>,
    data: Vec<T>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let a = Array2::from_shape_vec((rows, cols), data)
        .map_err(|e| exception(ErrorKind::Internal, format!("result shape: {e}")))?;
    Ok(a.into_pyarray(py))
}
