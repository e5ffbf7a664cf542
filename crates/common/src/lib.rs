//! What every imgsim crate shares, and nothing else:
//!
//! - [`ErrorKind`]: the one classification of failures. Each crate's error
//!   type has a `kind()` that matches its own variants exhaustively; the CLI
//!   derives its exit code from the kind in one place, the server its HTTP
//!   status in one place.
//! - [`Storage`]: the one seam for durable file writes (write a temporary
//!   file, fsync it, rename it into place, fsync the folder), as tantivy's
//!   `Directory` is for its index files. [`LocalFs`] is the real one;
//!   [`FaultyFs`] fails a chosen operation, so that commit protocols and
//!   their recovery paths are tested without root, full disks or kills.
//!
//! - [`priority`]: background threads and pools at a lower CPU priority.
//!
//! This crate depends on nothing of imgsim's and on no ML, async or web crate.
#![deny(missing_docs)]

pub mod kind;
pub mod priority;
pub mod storage;

pub use kind::ErrorKind;
pub use storage::{local, FaultyFs, LocalFs, Op, Storage};
