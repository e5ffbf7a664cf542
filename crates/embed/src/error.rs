//! The crate's error type.

use std::path::PathBuf;

use imgsim_common::ErrorKind;

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
    /// Writing a file (a checkpoint) failed; nothing half-written is left
    /// under the file's name.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file or folder.
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
    /// A decoder run apart in a child process (HEIF, AVIF, JPEG XL, DNG:
    /// see `imgsim_embed::isolate`) crashed, ran past the time limit or out
    /// of its memory bound; only this file failed.
    #[error("{path}: the {format} decoder failed: {reason}")]
    DecoderFailed {
        /// The file.
        path: PathBuf,
        /// The format being decoded (`AVIF`, `JPEG XL`...).
        format: &'static str,
        /// What happened to the decoder process.
        reason: String,
    },
    /// A transform parameter is invalid.
    #[error("invalid transform: {0}")]
    InvalidTransform(String),
    /// A weights file could not be read or parsed as safetensors.
    #[error("{source_name}: cannot load weights: {reason}")]
    Weights {
        /// The file (or hub location) the weights came from.
        source_name: String,
        /// Why.
        reason: String,
    },
    /// A tensor the model needs is not in the weights.
    #[error("{source_name}: missing tensor `{name}` (is this a checkpoint of {model}?)")]
    MissingTensor {
        /// The weights' origin.
        source_name: String,
        /// The tensor's name.
        name: String,
        /// The model being built.
        model: &'static str,
    },
    /// A tensor has another shape than the model expects.
    #[error("{source_name}: tensor `{name}` has shape {found:?}, {model} expects {expected:?}")]
    TensorShape {
        /// The weights' origin.
        source_name: String,
        /// The tensor's name.
        name: String,
        /// The model being built.
        model: &'static str,
        /// The shape the model needs.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// Weights could not be fetched from the Hugging Face Hub.
    #[error(
        "cannot get `{file}` of `{repo}` from the Hugging Face Hub: {reason}. \
         Offline? Download the file elsewhere and pass it with --weights PATH \
         (a .safetensors file), or put it in the hub cache (HF_HOME)"
    )]
    Hub {
        /// Repository id.
        repo: String,
        /// File in the repository.
        file: String,
        /// Why.
        reason: String,
    },
    /// A model checkpoint (autoencoder) does not fit: other architecture,
    /// size, or a damaged config.
    #[error("{path}: unusable checkpoint: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Text was given to a model without a text tower.
    #[error(
        "`{embedder}` has no text tower: search by words needs CLIP \
         (index the photos with `--backbone clip-b32`)"
    )]
    NoTextTower {
        /// The embedder's architecture.
        embedder: String,
    },
    /// Input to a model has the wrong shape, or a configuration is invalid.
    #[error("invalid input: {0}")]
    Input(String),
    /// The model produced non-finite values.
    #[error("{model}: output contains NaN or infinity")]
    NonFinite {
        /// The model.
        model: String,
    },
    /// An error inside the tensor library (a bug, or out of memory).
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl EmbedError {
    /// The error's kind (see [`imgsim_common::ErrorKind`]); front ends derive
    /// exit codes and HTTP statuses from it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EmbedError::Io { source, .. } => read_kind(source),
            // Unlike reading, a failed write is the machine's (a full disk,
            // a read-only folder, a failing device): the I/O kind as it is.
            EmbedError::Write { source, .. } => ErrorKind::of_io(source),
            EmbedError::Empty { .. }
            | EmbedError::Decode { .. }
            | EmbedError::DecoderFailed { .. } => ErrorKind::Unprocessable,
            EmbedError::Unsupported { .. } => ErrorKind::Unsupported,
            EmbedError::TooLarge { .. } => ErrorKind::TooLarge,
            EmbedError::InvalidTransform(_)
            | EmbedError::Input(_)
            | EmbedError::NoTextTower { .. } => ErrorKind::Invalid,
            EmbedError::Weights { .. }
            | EmbedError::MissingTensor { .. }
            | EmbedError::TensorShape { .. }
            | EmbedError::Checkpoint { .. } => ErrorKind::Invalid,
            EmbedError::Hub { .. } => ErrorKind::NotFound,
            EmbedError::NonFinite { .. } | EmbedError::Candle(_) => ErrorKind::Internal,
        }
    }
}

/// The kind of a failure to read a file the caller named. A path that names
/// no readable file (a folder, a bad name) is the caller's to fix; a
/// missing file or a refused permission keeps its kind; anything else (EIO:
/// a failing disk) is the machine's.
fn read_kind(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::NotADirectory => ErrorKind::NotFound,
        K::IsADirectory | K::InvalidFilename | K::InvalidInput => ErrorKind::Unprocessable,
        _ => ErrorKind::of_io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(errno: i32) -> ErrorKind {
        EmbedError::Io {
            path: "x.jpg".into(),
            source: std::io::Error::from_raw_os_error(errno),
        }
        .kind()
    }

    #[test]
    fn io_errors_are_classified_by_whose_they_are() {
        // ENOENT, EACCES, EISDIR, ENOTDIR, ENAMETOOLONG, EIO.
        assert_eq!(read(2), ErrorKind::NotFound);
        assert_eq!(read(13), ErrorKind::PermissionDenied);
        assert_eq!(read(21), ErrorKind::Unprocessable);
        assert_eq!(read(20), ErrorKind::NotFound);
        assert_eq!(read(36), ErrorKind::Unprocessable);
        assert_eq!(read(5), ErrorKind::Internal);
        let write = |errno| EmbedError::Write {
            path: "model.safetensors".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        assert_eq!(write(28).kind(), ErrorKind::StorageFull);
        assert_eq!(write(30).kind(), ErrorKind::PermissionDenied);
        assert_eq!(write(5).kind(), ErrorKind::Internal);
    }
}
