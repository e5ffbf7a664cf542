//! The `imgsim` binary: installs the allocator and runs the command line.

use std::process::ExitCode;

/// HNSW construction in hnsw_rs makes many small allocations from every
/// thread (an `Arc` per link, a `HashMap` per search); mimalloc handles that
/// load better than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    imgsim::run()
}
