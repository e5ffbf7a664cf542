//! The crate's one error type.

use std::path::PathBuf;

use imgsim_common::ErrorKind;

/// Result alias used throughout `imgsim-index`.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;

/// Everything that can go wrong in the index crate.
///
/// The first group are *user* errors (bad input, wrong usage): the caller can
/// fix them. The second group are *environment/internal* errors (I/O, a
/// corrupt store, a lock held by someone else).
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A vector does not have the collection's dimension.
    #[error("vector {index} has dimension {got}, expected {expected}")]
    WrongDimension {
        /// Position of the offending vector in the caller's input.
        index: usize,
        /// The collection's dimension.
        expected: usize,
        /// What the vector had.
        got: usize,
    },
    /// A vector holds NaN or an infinite component.
    #[error("vector {index} has a non-finite component at position {component} ({value})")]
    NonFinite {
        /// Position of the offending vector in the caller's input.
        index: usize,
        /// Component index inside the vector.
        component: usize,
        /// The value found.
        value: f32,
    },
    /// A zero vector cannot be normalised for the cosine metric.
    #[error("vector {index} is all zeros and cannot be used with the cosine metric")]
    ZeroVector {
        /// Position of the offending vector in the caller's input.
        index: usize,
    },
    /// `k` must be at least 1.
    #[error("k must be at least 1")]
    ZeroK,
    /// An invalid parameter value.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// Which parameter.
        name: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// Ids and vectors given in different numbers.
    #[error("{ids} ids given for {vectors} vectors")]
    LengthMismatch {
        /// Number of ids.
        ids: usize,
        /// Number of vectors.
        vectors: usize,
    },
    /// The id is not in the collection (never added, or deleted).
    #[error("no item with id {0}")]
    NotFound(u64),
    /// The collection is already open in another process (sled holds a file lock).
    #[error("collection at {path} is locked by another process (only one process may open it at a time)")]
    Locked {
        /// The collection directory.
        path: PathBuf,
    },
    /// The collection's folder or files cannot be written (a read-only
    /// file system, or permissions).
    #[error("collection at {path} is read-only ({reason}): imgsim needs write access to a collection's folder, also to search it")]
    ReadOnly {
        /// The collection directory.
        path: PathBuf,
        /// What the system said.
        reason: String,
    },
    /// No collection exists at the path.
    #[error("no collection at {path}")]
    NoCollection {
        /// The directory that was expected to hold a collection.
        path: PathBuf,
    },
    /// A collection already exists where a new one was to be created.
    #[error("a collection already exists at {path}")]
    AlreadyExists {
        /// The directory.
        path: PathBuf,
    },
    /// The collection was written by an incompatible format version.
    #[error(
        "collection at {path} has format version {found}, this imgsim reads version {supported}; \
         re-create it with this version (or open it with the imgsim that wrote it)"
    )]
    IncompatibleVersion {
        /// The collection directory.
        path: PathBuf,
        /// Version found in the manifest.
        found: u32,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// The collection's settings conflict with what the caller asked for.
    #[error("collection settings mismatch: {0}")]
    SettingsMismatch(String),
    /// Stored data failed a consistency check.
    #[error("collection data is corrupt: {0}")]
    Corrupt(String),
    /// A commit was applied but could not be confirmed on disk (e.g. an I/O
    /// error while flushing): this handle refuses writes; reopen the
    /// collection to continue from what is on disk.
    #[error("collection must be reopened: {0}")]
    NeedsReopen(String),
    /// An error from the sled store.
    #[error("storage error: {0}")]
    Storage(#[from] sled::Error),
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl IndexError {
    /// The I/O error underneath, if this is one (storage or file).
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            IndexError::Io(e) | IndexError::Storage(sled::Error::Io(e)) => Some(e),
            IndexError::Storage(_)
            | IndexError::WrongDimension { .. }
            | IndexError::NonFinite { .. }
            | IndexError::ZeroVector { .. }
            | IndexError::ZeroK
            | IndexError::InvalidParameter { .. }
            | IndexError::LengthMismatch { .. }
            | IndexError::NotFound(_)
            | IndexError::Locked { .. }
            | IndexError::ReadOnly { .. }
            | IndexError::NoCollection { .. }
            | IndexError::AlreadyExists { .. }
            | IndexError::IncompatibleVersion { .. }
            | IndexError::SettingsMismatch(_)
            | IndexError::Corrupt(_)
            | IndexError::NeedsReopen(_) => None,
        }
    }

    /// True when the storage ran out of space (ENOSPC, EDQUOT).
    pub fn is_storage_full(&self) -> bool {
        self.io_error().is_some_and(is_storage_full)
    }

    /// True for errors caused by the caller's input rather than the environment.
    pub fn is_user_error(&self) -> bool {
        self.kind().is_user_error()
    }

    /// The error's kind (see [`imgsim_common::ErrorKind`]); front ends derive
    /// exit codes and HTTP statuses from it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            IndexError::WrongDimension { .. }
            | IndexError::NonFinite { .. }
            | IndexError::ZeroVector { .. }
            | IndexError::ZeroK
            | IndexError::InvalidParameter { .. }
            | IndexError::LengthMismatch { .. } => ErrorKind::Invalid,
            IndexError::NotFound(_) | IndexError::NoCollection { .. } => ErrorKind::NotFound,
            IndexError::AlreadyExists { .. } | IndexError::SettingsMismatch(_) => {
                ErrorKind::Conflict
            }
            IndexError::Locked { .. } => ErrorKind::Locked,
            IndexError::ReadOnly { .. } => ErrorKind::PermissionDenied,
            IndexError::IncompatibleVersion { .. } | IndexError::Corrupt(_) => ErrorKind::Corrupt,
            IndexError::NeedsReopen(_) => ErrorKind::Internal,
            // sled found its own files damaged.
            IndexError::Storage(sled::Error::Corruption { .. }) => ErrorKind::Corrupt,
            IndexError::Storage(_) | IndexError::Io(_) => match self.io_error() {
                Some(e) => ErrorKind::of_io(e),
                None => ErrorKind::Internal,
            },
        }
    }
}

pub use imgsim_common::kind::is_storage_full;

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    #[test]
    fn every_variant_has_its_kind() {
        let path = || PathBuf::from("/c");
        let cases = [
            (
                IndexError::WrongDimension {
                    index: 0,
                    expected: 2,
                    got: 3,
                },
                ErrorKind::Invalid,
            ),
            (
                IndexError::NonFinite {
                    index: 0,
                    component: 1,
                    value: f32::NAN,
                },
                ErrorKind::Invalid,
            ),
            (IndexError::ZeroVector { index: 0 }, ErrorKind::Invalid),
            (IndexError::ZeroK, ErrorKind::Invalid),
            (
                IndexError::InvalidParameter {
                    name: "m",
                    reason: "must be between 2 and 128, not 1".into(),
                },
                ErrorKind::Invalid,
            ),
            (
                IndexError::LengthMismatch { ids: 1, vectors: 2 },
                ErrorKind::Invalid,
            ),
            (IndexError::NotFound(7), ErrorKind::NotFound),
            (IndexError::Locked { path: path() }, ErrorKind::Locked),
            (
                IndexError::ReadOnly {
                    path: path(),
                    reason: "read-only file system".into(),
                },
                ErrorKind::PermissionDenied,
            ),
            (
                IndexError::NoCollection { path: path() },
                ErrorKind::NotFound,
            ),
            (
                IndexError::AlreadyExists { path: path() },
                ErrorKind::Conflict,
            ),
            (
                IndexError::IncompatibleVersion {
                    path: path(),
                    found: 9,
                    supported: 1,
                },
                ErrorKind::Corrupt,
            ),
            (
                IndexError::SettingsMismatch("dim".into()),
                ErrorKind::Conflict,
            ),
            (IndexError::Corrupt("bad".into()), ErrorKind::Corrupt),
            (
                IndexError::NeedsReopen("flush failed".into()),
                ErrorKind::Internal,
            ),
            (
                IndexError::Storage(sled::Error::Unsupported("x".into())),
                ErrorKind::Internal,
            ),
            (
                IndexError::Storage(sled::Error::Io(io::Error::from_raw_os_error(28))),
                ErrorKind::StorageFull,
            ),
            (
                IndexError::Io(io::Error::from(io::ErrorKind::PermissionDenied)),
                ErrorKind::PermissionDenied,
            ),
            (IndexError::Io(io::Error::other("eio")), ErrorKind::Internal),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.is_user_error(), kind.is_user_error(), "{e}");
        }
        let full = IndexError::Io(io::Error::from_raw_os_error(28));
        assert!(full.is_storage_full() && full.io_error().is_some());
        assert!(IndexError::ZeroK.io_error().is_none());
    }
}
