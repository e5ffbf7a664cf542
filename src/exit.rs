//! Exit codes, derived in this one place from the kind of the error
//! (`imgsim_common::ErrorKind`), and the one-line error message.

use imgsim_common::ErrorKind;

/// Success.
pub const OK: u8 = 0;
/// A failure on the machine's side (storage, computation, a bug).
pub const FAILURE: u8 = 1;
/// Bad input or usage: the user can fix it.
pub const USAGE: u8 = 2;
/// `imgsim index` finished, but some files could not be indexed.
pub const SOME_FAILED: u8 = 3;
/// `imgsim check` found the collection inconsistent.
pub const INCONSISTENT: u8 = 4;
/// Interrupted (Ctrl-C), as shells report SIGINT.
pub const INTERRUPTED: u8 = 130;

/// A usage error found by the command line itself (arguments that do not
/// make sense together, a value out of range).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Something the user named does not exist (a collection).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Missing(pub String);

/// A [`Usage`] error as an `anyhow::Error`.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// The kind of the first typed error in `e`'s chain.
pub fn kind_of(e: &anyhow::Error) -> ErrorKind {
    for cause in e.chain() {
        if cause.downcast_ref::<Usage>().is_some()
            || cause.downcast_ref::<crate::config::ConfigError>().is_some()
        {
            return ErrorKind::Invalid;
        }
        if cause.downcast_ref::<Missing>().is_some() {
            return ErrorKind::NotFound;
        }
        if let Some(x) = cause.downcast_ref::<crate::remote::RemoteError>() {
            return x.kind;
        }
        if let Some(x) = cause.downcast_ref::<imgsim_index::IndexError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<imgsim_bench::BenchError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<imgsim_pipeline::PipelineError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<imgsim_embed::EmbedError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<imgsim_datasets::DatasetError>() {
            return x.kind();
        }
        if let Some(x) = cause.downcast_ref::<std::io::Error>() {
            return ErrorKind::of_io(x);
        }
    }
    ErrorKind::Internal
}

/// The exit code of an error of `kind`: [`USAGE`] for what the user can
/// fix, [`FAILURE`] for the machine's side.
pub fn code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid
        | ErrorKind::NotFound
        | ErrorKind::Conflict
        | ErrorKind::Unsupported
        | ErrorKind::Unprocessable
        | ErrorKind::TooLarge => USAGE,
        ErrorKind::Locked
        | ErrorKind::PermissionDenied
        | ErrorKind::StorageFull
        | ErrorKind::Corrupt
        | ErrorKind::Internal => FAILURE,
    }
}

/// The error and its causes on one line, joined with ": ", leaving out a
/// cause whose text the message already contains (typed errors often
/// quote their source).
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_kind() {
        assert_eq!(code(kind_of(&usage("-k must be at least 1"))), USAGE);
        let e = anyhow::Error::new(imgsim_index::IndexError::ZeroK).context("querying");
        assert_eq!(code(kind_of(&e)), USAGE);
        let e = anyhow::Error::new(imgsim_index::IndexError::Corrupt("x".into()));
        assert_eq!(code(kind_of(&e)), FAILURE);
        let full = std::io::Error::from_raw_os_error(28);
        assert_eq!(kind_of(&anyhow::Error::new(full)), ErrorKind::StorageFull);
        assert_eq!(code(kind_of(&anyhow::anyhow!("untyped"))), FAILURE);
    }
}
