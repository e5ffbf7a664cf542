//! The classification of failures shared by every crate (see [`ErrorKind`]).

/// What kind of failure an error is: whose fault, and what can be done.
///
/// Every crate's error type maps each of its variants to one kind with an
/// exhaustive match (`kind()`); front ends then derive what they show from
/// the kind alone, each in exactly one place: the CLI's exit code
/// ([`ErrorKind::is_user_error`]: 2 for the user's, 1 for the machine's),
/// the server's HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The caller's input or arguments are wrong: a malformed value, a wrong
    /// dimension, NaN, an out-of-range parameter.
    Invalid,
    /// What was named does not exist: a collection, an item, a file.
    NotFound,
    /// The request conflicts with what is stored: a collection that already
    /// exists, a collection indexed with another embedder.
    Conflict,
    /// Input in a format imgsim does not read.
    Unsupported,
    /// Input in a known format that cannot be used: damaged, empty.
    Unprocessable,
    /// Input over a configured limit (file size, pixels, decoded bytes).
    TooLarge,
    /// The resource is held by another process.
    Locked,
    /// The file system refuses: read-only, or no permission.
    PermissionDenied,
    /// The disk (or quota) is full: nothing was stored.
    StorageFull,
    /// Stored data is damaged, or written by an incompatible version.
    Corrupt,
    /// Something failed on the machine's side: I/O, computation, a bug.
    Internal,
}

impl ErrorKind {
    /// True when the user can fix it by changing their input or arguments;
    /// false when the machine or the stored data must be looked at.
    pub fn is_user_error(self) -> bool {
        match self {
            ErrorKind::Invalid
            | ErrorKind::NotFound
            | ErrorKind::Conflict
            | ErrorKind::Unsupported
            | ErrorKind::Unprocessable
            | ErrorKind::TooLarge => true,
            ErrorKind::Locked
            | ErrorKind::PermissionDenied
            | ErrorKind::StorageFull
            | ErrorKind::Corrupt
            | ErrorKind::Internal => false,
        }
    }

    /// The kind of an I/O error: full disk, permission, missing file, or
    /// internal.
    pub fn of_io(e: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        if is_storage_full(e) {
            return ErrorKind::StorageFull;
        }
        match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied | K::ReadOnlyFilesystem => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        }
    }
}

/// True when `e` says the disk (or quota) is full (ENOSPC, EDQUOT).
pub fn is_storage_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_are_classified() {
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(ErrorKind::of_io(&full), ErrorKind::StorageFull);
        let gone = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert_eq!(ErrorKind::of_io(&gone), ErrorKind::NotFound);
        let ro = std::io::Error::from_raw_os_error(30); // EROFS
        assert_eq!(ErrorKind::of_io(&ro), ErrorKind::PermissionDenied);
        assert!(!ErrorKind::StorageFull.is_user_error());
        assert!(ErrorKind::Invalid.is_user_error());
    }
}
