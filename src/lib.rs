//! The `imgsim` command line: argument parsing and composition of the
//! library crates. `main.rs` only calls [`run`].
#![deny(missing_docs)]

pub mod cli;
pub mod config;
pub mod library;
pub mod models;

pub use cli::run;
