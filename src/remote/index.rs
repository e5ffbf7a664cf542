//! A remote `imgsim index`: the request, and the NDJSON lines the server
//! streams back (the walk, the collection, progress per batch, then the
//! summary or an error), turned into events and the library's
//! [`Summary`].

use std::io::BufRead;
use std::path::PathBuf;

use imgsim_pipeline::{IndexProgress, Summary};
use serde::{Deserialize, Serialize};

use super::{Remote, RemoteError};

/// What the server is asked to index (see `POST /collections/{c}/index`).
#[derive(Debug, Serialize)]
pub struct IndexRequest {
    /// Absolute folders and files.
    pub paths: Vec<PathBuf>,
    /// Globs left out.
    pub exclude: Vec<String>,
    /// Hidden files too.
    pub hidden: bool,
    /// Remove entries whose files are gone.
    pub prune: bool,
    /// Images per model call and per commit.
    pub batch_size: usize,
    /// Decoding threads (0: one per core).
    pub decode_threads: usize,
}

/// The folders walked.
#[derive(Debug, Deserialize)]
pub struct Walked {
    /// Files found.
    pub files: usize,
    /// Entries that could not be read.
    pub failures: usize,
    /// Seconds the walk took.
    pub seconds: f64,
}

/// The collection indexed into.
#[derive(Debug, Deserialize)]
pub struct Ready {
    /// Its name.
    pub name: String,
    /// Its folder.
    pub path: PathBuf,
    /// Its images before this run.
    pub count: usize,
    /// Its embedder, described.
    pub embedder: Option<String>,
}

/// One line of the stream.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Line {
    Walked(Walked),
    Ready(Ready),
    Progress(IndexProgress),
    Summary(Box<Summary>),
    Error { status: u16, message: String },
}

/// What happened so far, as the stream says it.
pub enum Event<'a> {
    /// The walk is done.
    Walked(&'a Walked),
    /// The collection is ready.
    Ready(&'a Ready),
    /// A batch was committed.
    Progress(&'a IndexProgress),
}

/// Runs `request` on collection `name` of `remote`, calling `on` for each
/// event; returns the summary.
pub fn run(
    remote: &Remote,
    name: &str,
    request: &IndexRequest,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<Summary, RemoteError> {
    let reader = remote.post_lines(&format!("/collections/{name}/index"), request)?;
    let broken = |why: String| RemoteError {
        kind: imgsim_common::ErrorKind::Internal,
        message: format!(
            "imgsim serve at {}: the indexing stream broke off ({why}); every batch committed \
             before stays: run the same command again to resume",
            remote.url
        ),
    };
    for text in reader.lines() {
        let text = text.map_err(|e| broken(e.to_string()))?;
        if text.trim().is_empty() {
            continue;
        }
        let line: Line =
            serde_json::from_str(&text).map_err(|e| broken(format!("unreadable line: {e}")))?;
        match line {
            Line::Walked(w) => on(Event::Walked(&w)),
            Line::Ready(r) => on(Event::Ready(&r)),
            Line::Progress(p) => on(Event::Progress(&p)),
            Line::Summary(s) => return Ok(*s),
            Line::Error { status, message } => {
                return Err(RemoteError::answered(&remote.url, status, &message))
            }
        }
    }
    Err(broken("it ended without a summary".into()))
}
