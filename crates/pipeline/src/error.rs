//! Errors of the pipeline.

use std::path::PathBuf;

use imgsim_common::ErrorKind;

/// What can go wrong indexing or querying a photo collection.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The collection (storage, search, parameters).
    #[error(transparent)]
    Index(#[from] imgsim_index::IndexError),
    /// Loading a model or an image.
    #[error(transparent)]
    Embed(#[from] imgsim_embed::EmbedError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The collection was made by another embedder than the one asked for.
    #[error(
        "collection {collection} was indexed with {stored}, not {requested}: its vectors \
         cannot be compared. Use the same embedder, or pass --reindex to re-embed every image \
         with the new one"
    )]
    EmbedderMismatch {
        /// The collection.
        collection: PathBuf,
        /// The stored embedder, described.
        stored: String,
        /// The requested one, described.
        requested: String,
    },
    /// The collection has no embedder record (made by `bench`, or by an older build).
    #[error("collection {0} holds vectors but records no image embedder; it cannot be queried by image (index photos into a new collection)")]
    NoEmbedder(PathBuf),
    /// The stored embedder could be loaded but its weights are not the ones indexed.
    #[error("the weights of {what} changed since the collection was indexed (digest {stored}, now {now}); re-index with --reindex")]
    WeightsChanged {
        /// The embedder.
        what: String,
        /// Digest recorded in the collection.
        stored: String,
        /// Digest of the weights found now.
        now: String,
    },
    /// A folder given to index is not usable.
    #[error("{path}: {reason}")]
    BadRoot {
        /// The folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No item with this id or path.
    #[error("no image {0} in the collection")]
    NotFound(String),
    /// Arguments that do not make sense together.
    #[error("{0}")]
    Invalid(String),
    /// The data directory is owned by a running `imgsim serve`.
    #[error("{data_dir} is served by imgsim serve (pid {pid}, {url}); stop it first, or work through it (--server {url})")]
    Served {
        /// The data directory.
        data_dir: PathBuf,
        /// The server's process id.
        pid: u32,
        /// Where it answers.
        url: String,
    },
    /// A path outside the folders a server may read (`[server] library_roots`).
    #[error("{path} is outside the folders this server may read ([server] library_roots: {roots}); add its folder to library_roots in the server's config, or index it with no server running")]
    OutsideRoots {
        /// The path, as given.
        path: PathBuf,
        /// The roots, listed.
        roots: String,
    },
    /// A labelled set has no label, or a single one: retrieval quality
    /// needs at least two.
    #[error("{source_path}: {}; a labelled set needs at least 2 labels (one sub-folder, or one CSV label, per class)", match label { Some(l) => format!("one label only: {l}"), None => "no labels found".to_string() })]
    TooFewLabels {
        /// The folder or CSV file.
        source_path: PathBuf,
        /// The one label found, if any.
        label: Option<String>,
    },
    /// A label folder of a labelled set holds no image.
    #[error("label `{label}` ({path}) holds no images")]
    EmptyLabel {
        /// The label.
        label: String,
        /// Its folder.
        path: PathBuf,
    },
    /// A line of a labels CSV file that does not parse.
    #[error("{file}:{line}: {reason}")]
    LabelsLine {
        /// The CSV file.
        file: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A file listed in a labels CSV file does not exist.
    #[error("{file}:{line}: {path} does not exist")]
    ListedFileMissing {
        /// The CSV file.
        file: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// The listed file, resolved.
        path: PathBuf,
    },
    /// After unreadable images were left out, a label has fewer than two.
    #[error("label `{label}` has {kept} readable image(s) ({failed} failed); every label needs at least 2")]
    TooFewImages {
        /// The label.
        label: String,
        /// Images embedded.
        kept: usize,
        /// Images that failed.
        failed: usize,
    },
}

impl PipelineError {
    /// True for errors caused by the user's input or arguments (exit code 2),
    /// false for failures of the machine (storage, computation).
    pub fn is_user_error(&self) -> bool {
        self.kind().is_user_error()
    }

    /// The error's kind (see [`imgsim_common::ErrorKind`]); front ends derive
    /// exit codes and HTTP statuses from it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PipelineError::Index(e) => e.kind(),
            PipelineError::Embed(e) => e.kind(),
            PipelineError::Io { source, .. } => ErrorKind::of_io(source),
            PipelineError::EmbedderMismatch { .. } => ErrorKind::Conflict,
            PipelineError::NoEmbedder(_) => ErrorKind::Invalid,
            PipelineError::WeightsChanged { .. } => ErrorKind::Conflict,
            PipelineError::BadRoot { .. } => ErrorKind::Invalid,
            PipelineError::NotFound(_) => ErrorKind::NotFound,
            PipelineError::Invalid(_) => ErrorKind::Invalid,
            PipelineError::Served { .. } => ErrorKind::Locked,
            PipelineError::OutsideRoots { .. } => ErrorKind::PermissionDenied,
            PipelineError::TooFewLabels { .. }
            | PipelineError::EmptyLabel { .. }
            | PipelineError::LabelsLine { .. }
            | PipelineError::TooFewImages { .. } => ErrorKind::Invalid,
            PipelineError::ListedFileMissing { .. } => ErrorKind::NotFound,
        }
    }
}

/// Result with [`PipelineError`].
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PipelineError {
    let path = path.into();
    move |source| PipelineError::Io { path, source }
}
