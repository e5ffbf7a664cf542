//! The crate's error type.

use std::path::PathBuf;

/// Result alias for this crate.
pub type Result<T, E = EmbedError> = std::result::Result<T, E>;

/// What can go wrong turning a file into pixels or a tensor. Every variant
/// names the file (or the label given for in-memory data).
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Reading the file failed.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is empty.
    #[error("{path}: empty file")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The content is not an image format we decode.
    #[error("{path}: not a supported image ({reason})")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// The image declares dimensions or a size above the limits (a
    /// decompression bomb, or simply too large).
    #[error("{path}: image too large: {reason}")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Which limit, and the declared size.
        reason: String,
    },
    /// The data are damaged (truncated, corrupt).
    #[error("{path}: cannot decode: {reason}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        reason: String,
    },
    /// A transform parameter is invalid.
    #[error("invalid transform: {0}")]
    InvalidTransform(String),
}
