//! Vector data sets for imgsim's benchmarks and tests.
//!
//! - [`fashion_mnist`]: the IDX files of Fashion-MNIST (Xiao, Rasul & Vollgraf
//!   2017), as Debian's `dataset-fashion-mnist` installs them — the source of
//!   ann-benchmarks' `fashion-mnist-784-euclidean`.
//! - [`fvecs`] and [`npy`]: the two formats users keep their own vectors in
//!   (the TEXMEX `.fvecs`/`.ivecs` of SIFT1M, and NumPy's `.npy`).
//! - [`synthetic`]: seeded clustered Gaussian vectors, addressable by row so
//!   that a million vectors can be streamed without holding them twice.
//!
//! Every reader checks sizes against the file length before allocating, so a
//! truncated or corrupt file is a [`DatasetError`] naming the file, never a
//! panic or a huge allocation.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};

pub mod fashion_mnist;
pub mod fvecs;
pub mod idx;
pub mod npy;
pub mod synthetic;

/// Result alias for this crate.
pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

/// Errors reading data sets.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// A data-set file is not there.
    #[error("{path} not found; {hint}")]
    Missing {
        /// The file looked for.
        path: PathBuf,
        /// How to get it.
        hint: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file's contents are not what its format requires.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl DatasetError {
    /// The error's kind (see [`imgsim_common::ErrorKind`]).
    pub fn kind(&self) -> imgsim_common::ErrorKind {
        use imgsim_common::ErrorKind;
        match self {
            DatasetError::Missing { .. } => ErrorKind::NotFound,
            DatasetError::Io { source, .. } => match ErrorKind::of_io(source) {
                ErrorKind::Internal => ErrorKind::Invalid,
                other => other,
            },
            DatasetError::Format { .. } => ErrorKind::Invalid,
        }
    }

    pub(crate) fn format(path: &Path, reason: impl Into<String>) -> Self {
        DatasetError::Format {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return DatasetError::Missing {
                path: path.to_path_buf(),
                hint: "check the path".into(),
            };
        }
        DatasetError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A dense matrix of `f32` vectors, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// Dimension (columns).
    pub dim: usize,
    /// Row-major data, `rows * dim` long.
    pub data: Vec<f32>,
}

impl Dense {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.data.len().checked_div(self.dim).unwrap_or(0)
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Keeps only the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        self.data.truncate(n.min(self.rows()) * self.dim);
    }
}

/// Reads vectors from `.fvecs` or `.npy`, chosen by extension.
pub fn read_vectors(path: &Path) -> Result<Dense> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| e.to_ascii_lowercase())
    {
        Some(e) if e == "fvecs" => fvecs::read_fvecs(path),
        Some(e) if e == "npy" => npy::read_npy(path),
        _ => Err(DatasetError::format(
            path,
            "unknown vector file type (expected .fvecs or .npy)",
        )),
    }
}
