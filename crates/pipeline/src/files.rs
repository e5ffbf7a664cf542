//! Finding image files: a recursive walk of folders, and recognising images
//! by their content (magic bytes) rather than their names.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use imgsim_embed::format::{detect, Detected};
use imgsim_embed::Format;
use serde::{Deserialize, Serialize};

/// Extensions that announce an image: a file with one of these that is not a
/// readable image is reported as failed; any other non-image is skipped
/// silently. (Whether a file is an image, and which format, is decided by
/// its content alone: see [`sniff`].)
pub const IMAGE_EXTENSIONS: [&str; 17] = [
    "jpg", "jpeg", "jpe", "jfif", "png", "webp", "gif", "bmp", "tif", "tiff", "heic", "heif",
    "avif", "jxl", "dng", "ico", "pnm",
];

/// Formats imgsim decodes.
pub use imgsim_embed::load::SUPPORTED_FORMATS;

/// A regular file found by the walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    /// Its path as walked (under a root given by the user, made absolute).
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (0 when unknown).
    pub mtime_ns: u64,
}

/// A file or folder the walk could not use, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The file or folder.
    pub path: PathBuf,
    /// Why, in words.
    pub error: String,
}

/// What the first bytes of a file say it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    /// An image format imgsim decodes.
    Image(Format),
    /// A recognised image format imgsim does not decode (ICO, PNM...), by name.
    Unsupported(String),
    /// Not an image: no known signature.
    NotImage,
    /// The file is empty.
    Empty,
}

/// Classifies content by its leading bytes
/// ([`imgsim_embed::format::SNIFF_BYTES`] tell every format apart, except
/// a DNG, which needs its first IFD and reads as a TIFF from fewer bytes;
/// fewer are fine for short files).
pub fn sniff(header: &[u8]) -> Sniffed {
    if header.is_empty() {
        return Sniffed::Empty;
    }
    match detect(header) {
        Detected::Image(f) => Sniffed::Image(f),
        Detected::Unsupported(f) => Sniffed::Unsupported(f),
        Detected::Unknown => Sniffed::NotImage,
    }
}

/// True when the file name has an image extension (case-insensitive).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Reads the first `n` bytes of a file (fewer if it is shorter).
pub fn read_header(path: &Path, n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(n);
    std::fs::File::open(path)?
        .take(n as u64)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Size and modification time from file metadata.
pub fn size_and_mtime(meta: &std::fs::Metadata) -> (u64, u64) {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    (meta.len(), mtime)
}

/// The result of walking some folders.
#[derive(Debug, Default)]
pub struct Walk {
    /// Regular files, sorted by path, each once.
    pub files: Vec<FoundFile>,
    /// Folders and files that could not be read (permissions, symlink loops,
    /// vanished entries).
    pub failures: Vec<Failure>,
}

/// What a walk leaves out.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    /// Include hidden files and folders (names starting with `.`, such as
    /// `.thumbnails`, `.git` or macOS's `._*` companions) and NAS metadata
    /// folders ([`SKIPPED_FOLDERS`]); they are left out by default.
    pub hidden: bool,
    /// Globs to leave out, in gitignore syntax (`*.png`, `screenshots/`,
    /// `**/tmp/**`), matched against paths under each root.
    pub exclude: Vec<String>,
}

/// Folders that hold a NAS's or a desktop's own thumbnails and metadata,
/// not photos: skipped unless [`WalkOptions::hidden`].
pub const SKIPPED_FOLDERS: [&str; 2] = ["@eaDir", "#recycle"];

/// The file in a folder whose lines (gitignore syntax) exclude paths under
/// that folder.
pub const IGNORE_FILE: &str = ".imgsimignore";

/// Walks `roots` with the default [`WalkOptions`] (see [`walk_with`]).
pub fn walk(roots: &[PathBuf]) -> Result<Walk, crate::PipelineError> {
    walk_with(roots, &WalkOptions::default())
}

/// Walks `roots` recursively (following symbolic links, with loop
/// detection), leaving out hidden entries unless asked, what `opts.exclude`
/// matches, and what [`IGNORE_FILE`]s list. Each root must exist; it may
/// also be a single file (taken even if hidden or excluded: it was named).
/// Unreadable entries are reported, never fatal.
pub fn walk_with(roots: &[PathBuf], opts: &WalkOptions) -> Result<Walk, crate::PipelineError> {
    let mut out = Walk::default();
    for root in roots {
        let abs = std::path::absolute(root).map_err(crate::error::io(root))?;
        let meta = std::fs::metadata(&abs).map_err(|e| crate::PipelineError::BadRoot {
            path: root.clone(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "no such file or folder".to_string(),
                _ => e.to_string(),
            },
        })?;
        if meta.is_file() {
            let (size, mtime_ns) = size_and_mtime(&meta);
            out.files.push(FoundFile {
                path: abs,
                size,
                mtime_ns,
            });
            continue;
        }
        let mut excludes = ignore::overrides::OverrideBuilder::new(&abs);
        for g in &opts.exclude {
            excludes
                .add(&format!("!{g}"))
                .map_err(|e| crate::PipelineError::Invalid(format!("--exclude `{g}`: {e}")))?;
        }
        let excludes = excludes
            .build()
            .map_err(|e| crate::PipelineError::Invalid(format!("--exclude: {e}")))?;
        let hidden = opts.hidden;
        let walker = ignore::WalkBuilder::new(&abs)
            .standard_filters(false)
            .hidden(!hidden)
            .follow_links(true)
            .add_custom_ignore_filename(IGNORE_FILE)
            .overrides(excludes)
            .filter_entry(move |e| {
                hidden
                    || e.depth() == 0
                    || !e.file_type().is_some_and(|t| t.is_dir())
                    || !SKIPPED_FOLDERS.contains(&e.file_name().to_string_lossy().as_ref())
            })
            .build();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => match e.metadata() {
                    Ok(m) => {
                        let (size, mtime_ns) = size_and_mtime(&m);
                        out.files.push(FoundFile {
                            path: e.into_path(),
                            size,
                            mtime_ns,
                        });
                    }
                    Err(err) => out.failures.push(walk_failure(&err, e.path())),
                },
                Ok(_) => {}
                Err(err) => {
                    let path = error_path(&err).unwrap_or(&abs).to_path_buf();
                    out.failures.push(walk_failure(&err, &path));
                }
            }
        }
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

/// The path an error of the walk is about, if it says.
fn error_path(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::WithPath { path, .. } => Some(path),
        ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
            error_path(err)
        }
        ignore::Error::Loop { child, .. } => Some(child),
        ignore::Error::Partial(_)
        | ignore::Error::Io(_)
        | ignore::Error::Glob { .. }
        | ignore::Error::UnrecognizedFileType(_)
        | ignore::Error::InvalidDefinition => None,
    }
}

/// The I/O error underneath a walk error, if any.
fn error_io(err: &ignore::Error) -> Option<&std::io::Error> {
    match err {
        ignore::Error::Io(e) => Some(e),
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => error_io(err),
        ignore::Error::Partial(_)
        | ignore::Error::Loop { .. }
        | ignore::Error::Glob { .. }
        | ignore::Error::UnrecognizedFileType(_)
        | ignore::Error::InvalidDefinition => None,
    }
}

/// The ancestor a symbolic-link loop points back to, if this is one.
fn error_loop(err: &ignore::Error) -> Option<&Path> {
    match err {
        ignore::Error::Loop { ancestor, .. } => Some(ancestor),
        ignore::Error::WithPath { err, .. }
        | ignore::Error::WithDepth { err, .. }
        | ignore::Error::WithLineNumber { err, .. } => error_loop(err),
        ignore::Error::Partial(_)
        | ignore::Error::Io(_)
        | ignore::Error::Glob { .. }
        | ignore::Error::UnrecognizedFileType(_)
        | ignore::Error::InvalidDefinition => None,
    }
}

fn walk_failure(err: &ignore::Error, path: &Path) -> Failure {
    let error = if let Some(ancestor) = error_loop(err) {
        format!(
            "symbolic link loop (points back to {}); not followed",
            ancestor.display()
        )
    } else if let Some(io) = error_io(err) {
        match io.kind() {
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::NotFound => {
                "vanished during the walk, or a dangling symbolic link".to_string()
            }
            _ => io.to_string(),
        }
    } else {
        err.to_string()
    };
    Failure {
        path: path.to_path_buf(),
        error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_uses_content_not_names() {
        assert_eq!(sniff(b""), Sniffed::Empty);
        assert_eq!(sniff(b"hello world"), Sniffed::NotImage);
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Sniffed::Image(Format::Png)
        );
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10]),
            Sniffed::Image(Format::Jpeg)
        );
        assert_eq!(
            sniff(b"\0\0\0\x1cftypheic\0\0\0\0mif1heicmiaf"),
            Sniffed::Image(Format::Heif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf"),
            Sniffed::Image(Format::Avif)
        );
        assert_eq!(
            sniff(&[0xFF, 0x0A, 0xFA, 0x7F]),
            Sniffed::Image(Format::JpegXl)
        );
        assert_eq!(
            sniff(&[0, 0, 1, 0, 1, 0, 16, 16]),
            Sniffed::Unsupported("Ico".into())
        );
        assert!(has_image_extension(Path::new("IMG_0001.HEIC")));
        assert!(has_image_extension(Path::new("raw/r.dng")));
        assert!(has_image_extension(Path::new("a/B.JPG")));
        assert!(!has_image_extension(Path::new("a/b.txt")));
        assert!(!has_image_extension(Path::new("a/jpg")));
    }

    #[cfg(unix)]
    #[test]
    fn walk_reports_symlink_loops_and_keeps_going() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("a.bin"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path(), sub.join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("gone"), sub.join("dangling")).unwrap();
        let w = walk(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(w.files.len(), 1);
        assert!(w.failures.iter().any(|f| f.error.contains("loop")));
        assert!(w.failures.iter().any(|f| f.error.contains("dangling")));
        assert!(matches!(
            walk(&[dir.path().join("nope")]),
            Err(crate::PipelineError::BadRoot { .. })
        ));
    }

    #[test]
    fn hidden_entries_nas_folders_and_exclusions_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for f in [
            "a.jpg",
            "._a.jpg",
            ".thumbnails/t.png",
            ".git/objects/x.jpg",
            "@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg",
            "shots/s.png",
            "keep/k.jpg",
            "keep/drop.tmp.jpg",
            "raw/r.jpg",
        ] {
            let p = d.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"x").unwrap();
        }
        std::fs::write(d.join("keep").join(IGNORE_FILE), "*.tmp.jpg\n").unwrap();
        let names = |w: &Walk| -> Vec<String> {
            w.files
                .iter()
                .map(|f| f.path.strip_prefix(d).unwrap().display().to_string())
                .collect()
        };
        let root = vec![d.to_path_buf()];
        let w = walk(&root).unwrap();
        assert_eq!(
            names(&w),
            ["a.jpg", "keep/k.jpg", "raw/r.jpg", "shots/s.png"],
            "hidden, @eaDir and .imgsimignore'd files are left out"
        );
        let opts = WalkOptions {
            hidden: false,
            exclude: vec!["shots/".into(), "*.jpg".into()],
        };
        assert!(names(&walk_with(&root, &opts).unwrap()).is_empty());
        let opts = WalkOptions {
            hidden: false,
            exclude: vec!["raw/**".into()],
        };
        assert_eq!(
            names(&walk_with(&root, &opts).unwrap()),
            ["a.jpg", "keep/k.jpg", "shots/s.png"]
        );
        let all = WalkOptions {
            hidden: true,
            exclude: vec![],
        };
        let n = names(&walk_with(&root, &all).unwrap());
        assert!(
            n.contains(&"._a.jpg".to_string())
                && n.contains(&"@eaDir/a.jpg/SYNOPHOTO_THUMB_XL.jpg".to_string())
        );
        // A file named on the command line is taken even if hidden.
        assert_eq!(walk(&[d.join("._a.jpg")]).unwrap().files.len(), 1);
        // A bad glob is a clear error.
        let bad = WalkOptions {
            hidden: false,
            exclude: vec!["a[".into()],
        };
        assert!(matches!(
            walk_with(&root, &bad),
            Err(crate::PipelineError::Invalid(m)) if m.contains("a[")
        ));
    }
}
