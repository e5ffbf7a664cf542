//! The `imgsim` command line: it parses arguments, calls the library
//! crates (or, for `serve`, starts the service) and prints. `main.rs` only
//! calls [`run`].
//!
//! - [`cli`]: the command line's shape (clap);
//! - [`commands`]: one file per command, and the dispatch;
//! - [`config`]: settings (defaults < file < environment < flags);
//! - [`collections`]: which collection a command works on;
//! - [`output`]: progress bars, rates and tables;
//! - [`remote`]: the collection commands through a running server;
//! - [`exit`]: exit codes, derived from the error's kind in one place.
#![deny(missing_docs)]

pub mod cli;
pub mod collections;
pub mod commands;
pub mod config;
pub mod embedders;
pub mod exit;
pub mod output;
pub mod remote;

pub use commands::run;
