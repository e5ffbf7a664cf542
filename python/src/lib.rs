//! imgsim's Python extension (`imgsim._imgsim`): the library's embedders
//! and collections as Python classes. It only translates — numpy arrays
//! to slices and back, library errors to exceptions, the GIL released
//! around every call into the library — as the CLI (`src/`) and the
//! service (`crates/server`) do; what it computes is computed by
//! `imgsim-embed`, `imgsim-index` and `imgsim-pipeline`.
#![deny(missing_docs)]

mod arrays;
mod collection;
mod embedder;
mod errors;

use pyo3::prelude::*;

/// The allocator of the `imgsim` binary (`src/main.rs`), for the Rust side
/// of the extension (Python's own objects keep Python's): searches and
/// graph builds allocate from every thread of the pool, which mimalloc
/// serves faster than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The module: the classes, and `NO_ID`, the id padding search results.
#[pymodule]
fn _imgsim(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<collection::Collection>()?;
    m.add_class::<embedder::Embedder>()?;
    m.add("NO_ID", collection::NO_ID)?;
    m.add("RECALL_EPSILON", imgsim_pipeline::search::RECALL_EPSILON)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
