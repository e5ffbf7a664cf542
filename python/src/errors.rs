//! Library errors as Python exceptions: one exception class per
//! `imgsim_common::ErrorKind` (defined in `imgsim/_errors.py`), chosen by
//! one exhaustive match, carrying the message the CLI prints.

use imgsim_common::ErrorKind;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

/// The Python module that defines the exception classes.
const ERRORS_MODULE: &str = "imgsim._errors";

/// The exception class name of each kind, in `imgsim._errors`.
fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "InvalidError",
        ErrorKind::NotFound => "NotFoundError",
        ErrorKind::Conflict => "ConflictError",
        ErrorKind::Unsupported => "UnsupportedError",
        ErrorKind::Unprocessable => "UnprocessableError",
        ErrorKind::TooLarge => "TooLargeError",
        ErrorKind::Locked => "LockedError",
        ErrorKind::PermissionDenied => "PermissionDeniedError",
        ErrorKind::StorageFull => "StorageFullError",
        ErrorKind::Corrupt => "CorruptError",
        ErrorKind::Internal => "InternalError",
    }
}

/// Every kind, to look the classes up once.
const KINDS: [ErrorKind; 11] = [
    ErrorKind::Invalid,
    ErrorKind::NotFound,
    ErrorKind::Conflict,
    ErrorKind::Unsupported,
    ErrorKind::Unprocessable,
    ErrorKind::TooLarge,
    ErrorKind::Locked,
    ErrorKind::PermissionDenied,
    ErrorKind::StorageFull,
    ErrorKind::Corrupt,
    ErrorKind::Internal,
];

/// The classes, looked up on first use.
static CLASSES: PyOnceLock<Vec<(ErrorKind, Py<PyType>)>> = PyOnceLock::new();

/// The exception class for `kind`.
fn class(py: Python<'_>, kind: ErrorKind) -> PyResult<Bound<'_, PyType>> {
    let classes = CLASSES.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import(ERRORS_MODULE)?;
        KINDS
            .iter()
            .map(|&k| {
                Ok((
                    k,
                    module
                        .getattr(class_name(k))?
                        .cast_into::<PyType>()?
                        .unbind(),
                ))
            })
            .collect::<PyResult<Vec<_>>>()
    })?;
    let (_, cls) = classes
        .iter()
        .find(|(k, _)| *k == kind)
        .expect("every kind has a class");
    Ok(cls.bind(py).clone())
}

/// The error and its causes on one line, joined with ": ", leaving out a
/// cause whose text the message already contains: the rule of the CLI's
/// one-line message (`src/exit.rs`, `describe`).
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// A Python exception of the class for `kind`, with `message`.
pub fn exception(kind: ErrorKind, message: String) -> PyErr {
    Python::attach(|py| match class(py, kind) {
        Ok(cls) => PyErr::from_type(cls, message),
        // imgsim._errors missing: the package is broken; still say what failed.
        Err(lookup) => PyRuntimeError::new_err(format!("{message} (and {lookup})")),
    })
}

/// A library error that knows its kind.
pub trait Kinded: std::error::Error {
    /// Its kind.
    fn error_kind(&self) -> ErrorKind;
}

impl Kinded for imgsim_index::IndexError {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

impl Kinded for imgsim_embed::EmbedError {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

impl Kinded for imgsim_pipeline::PipelineError {
    fn error_kind(&self) -> ErrorKind {
        self.kind()
    }
}

/// Converts a library error into its Python exception.
pub fn to_py<E: Kinded>(e: E) -> PyErr {
    exception(e.error_kind(), describe(&e))
}

/// A bad argument found by the binding itself (as the CLI's usage errors).
pub fn invalid(message: impl Into<String>) -> PyErr {
    exception(ErrorKind::Invalid, message.into())
}

/// `Result` of a library call, mapped to Python.
pub trait IntoPy<T> {
    /// The value, or the error as its Python exception.
    fn py_err(self) -> PyResult<T>;
}

impl<T, E: Kinded> IntoPy<T> for Result<T, E> {
    fn py_err(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
