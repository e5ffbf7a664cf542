//! Labelled image sets — a folder of one sub-folder per label, or a CSV
//! file of `path,label` lines — and their embedding with any [`Embedder`],
//! for measuring retrieval quality and for training on labels.
//!
//! A [`LabelledSet`] lists image files and the label of each;
//! [`embed_labelled`] decodes them with the pipeline's loader (the one
//! `imgsim index` uses: content sniffing, limits, EXIF orientation, reduced
//! JPEG decoding), preprocesses them as the embedder asks and embeds them in
//! batches, reporting unreadable files instead of failing on them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use imgsim_embed::{load_rgb_reduced, Embedder, ImageLimits};
use rayon::prelude::*;

use crate::error::{PipelineError, Result};
use crate::files::{has_image_extension, read_header, sniff, Failure, Sniffed, SKIPPED_FOLDERS};

/// One image of a labelled set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    /// The file (absolute for a folder; as resolved for a CSV file).
    pub path: PathBuf,
    /// Index of its label in [`LabelledSet::labels`].
    pub label: usize,
}

/// Image files with a label each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelledSet {
    /// Label names, sorted; an image's label is an index into this list.
    pub labels: Vec<String>,
    /// The images, by label then by path.
    pub images: Vec<LabelledImage>,
    /// Files and folders the folder walk could not read (permissions,
    /// symbolic-link loops); [`embed_labelled`] reports them with its own
    /// failures.
    pub unreadable: Vec<Failure>,
}

/// Header names accepted for a CSV file's first line (case-insensitive):
/// a first line whose fields are one of these each is a header, not data.
const CSV_PATH_HEADERS: [&str; 4] = ["path", "file", "filename", "image"];
/// See [`CSV_PATH_HEADERS`].
const CSV_LABEL_HEADERS: [&str; 3] = ["label", "class", "category"];

impl LabelledSet {
    /// The set of folder `dir`: each immediate sub-folder is a label (its
    /// name), and the images anywhere below it belong to that label.
    ///
    /// Files are walked as `imgsim index` walks them (hidden files and
    /// folders, NAS metadata folders and what `.imgsimignore` lists are left
    /// out; symbolic links are followed) and recognised as images by their
    /// content; a file named like an image that is not one is kept, so that
    /// [`embed_labelled`] reports it. Files directly in `dir` have no label
    /// and are left out.
    ///
    /// Errors: `dir` missing or not a folder ([`PipelineError::BadRoot`]),
    /// fewer than two label folders ([`PipelineError::TooFewLabels`]), a
    /// label folder without images ([`PipelineError::EmptyLabel`]).
    pub fn from_folder(dir: &Path) -> Result<LabelledSet> {
        let meta = std::fs::metadata(dir).map_err(|e| PipelineError::BadRoot {
            path: dir.to_path_buf(),
            reason: match e.kind() {
                std::io::ErrorKind::NotFound => "no such folder".to_string(),
                _ => e.to_string(),
            },
        })?;
        if !meta.is_dir() {
            return Err(PipelineError::BadRoot {
                path: dir.to_path_buf(),
                reason: "not a folder (a labelled set is a folder of one sub-folder per label)"
                    .into(),
            });
        }
        let mut folders: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(crate::error::io(dir))? {
            let entry = entry.map_err(crate::error::io(dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || SKIPPED_FOLDERS.contains(&name.as_str()) {
                continue;
            }
            // Follows symbolic links: a linked folder is a label too.
            if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
                folders.push((name, entry.path()));
            }
        }
        folders.sort();
        if folders.len() < 2 {
            return Err(PipelineError::TooFewLabels {
                source_path: dir.to_path_buf(),
                label: folders.pop().map(|f| f.0),
            });
        }
        let mut set = LabelledSet::default();
        for (label, (name, path)) in folders.into_iter().enumerate() {
            let walk = crate::files::walk(std::slice::from_ref(&path))?;
            set.unreadable.extend(walk.failures);
            let files: Vec<PathBuf> = walk
                .files
                .into_par_iter()
                .map(|f| f.path)
                .filter(|p| looks_like_image(p))
                .collect();
            if files.is_empty() {
                return Err(PipelineError::EmptyLabel { label: name, path });
            }
            set.images
                .extend(files.into_iter().map(|path| LabelledImage { path, label }));
            set.labels.push(name);
        }
        Ok(set)
    }

    /// The set listed in CSV file `file`: one `path,label` line per image.
    ///
    /// A first line `path,label` (or `file`/`filename`/`image` and
    /// `class`/`category`, any case) is a header; blank lines and lines
    /// starting with `#` are left out. Fields may be double-quoted (`""`
    /// inside quotes is a quote), so paths and labels may hold commas;
    /// spaces around fields are trimmed. A relative path is relative to
    /// `root` when given, otherwise to the CSV file's folder. Labels are
    /// sorted by name.
    ///
    /// Errors name the file and line: a line that does not parse or lists a
    /// file twice ([`PipelineError::LabelsLine`]), a listed file that does
    /// not exist ([`PipelineError::ListedFileMissing`]); fewer than two
    /// labels is [`PipelineError::TooFewLabels`].
    pub fn from_csv(file: &Path, root: Option<&Path>) -> Result<LabelledSet> {
        let text = std::fs::read_to_string(file).map_err(crate::error::io(file))?;
        let base = match root {
            Some(r) => r.to_path_buf(),
            None => file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        };
        let line_error = |line: usize, reason: String| PipelineError::LabelsLine {
            file: file.to_path_buf(),
            line,
            reason,
        };
        let mut rows: Vec<(PathBuf, String)> = Vec::new();
        let mut seen: HashMap<PathBuf, usize> = HashMap::new();
        let mut first = true;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let fields = split_csv_line(trimmed).map_err(|r| line_error(line, r))?;
            let is_first = std::mem::replace(&mut first, false);
            if fields.len() != 2 {
                return Err(line_error(
                    line,
                    format!(
                        "expected 2 fields `path,label`, found {}: `{trimmed}`",
                        fields.len()
                    ),
                ));
            }
            let (p, label) = (&fields[0], &fields[1]);
            if is_first
                && CSV_PATH_HEADERS.contains(&p.to_ascii_lowercase().as_str())
                && CSV_LABEL_HEADERS.contains(&label.to_ascii_lowercase().as_str())
            {
                continue;
            }
            if p.is_empty() || label.is_empty() {
                return Err(line_error(
                    line,
                    format!("empty path or label: `{trimmed}`"),
                ));
            }
            let path = base.join(p);
            if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                return Err(PipelineError::ListedFileMissing {
                    file: file.to_path_buf(),
                    line,
                    path,
                });
            }
            if let Some(before) = seen.insert(path.clone(), line) {
                return Err(line_error(
                    line,
                    format!("{} is listed twice (line {before} too)", path.display()),
                ));
            }
            rows.push((path, label.clone()));
        }
        let mut by_label: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for (path, label) in rows {
            by_label.entry(label).or_default().push(path);
        }
        if by_label.len() < 2 {
            return Err(PipelineError::TooFewLabels {
                source_path: file.to_path_buf(),
                label: by_label.into_keys().next(),
            });
        }
        let mut set = LabelledSet::default();
        for (label, (name, mut paths)) in by_label.into_iter().enumerate() {
            paths.sort();
            set.images
                .extend(paths.into_iter().map(|path| LabelledImage { path, label }));
            set.labels.push(name);
        }
        Ok(set)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether the set has no image.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Images per label, indexed like [`LabelledSet::labels`].
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.labels.len()];
        for i in &self.images {
            c[i.label] += 1;
        }
        c
    }
}

/// Whether a walked file belongs in a labelled set: an image by content, or
/// a file named like one (so that a broken one is reported, as `imgsim
/// index` reports it).
fn looks_like_image(path: &Path) -> bool {
    match read_header(path, 64).map(|h| sniff(&h)) {
        Ok(Sniffed::Image(_)) | Ok(Sniffed::Unsupported(_)) => true,
        Ok(Sniffed::Empty) | Ok(Sniffed::NotImage) | Err(_) => has_image_extension(path),
    }
}

/// Splits one CSV line into trimmed fields; double-quoted fields may hold
/// commas and `""` for a quote.
fn split_csv_line(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        let mut field = String::new();
        if chars.next_if_eq(&'"').is_some() {
            loop {
                match chars.next() {
                    Some('"') if chars.next_if_eq(&'"').is_some() => field.push('"'),
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err(format!("unterminated quote in `{line}`")),
                }
            }
            while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(c) => return Err(format!("`{c}` after a closing quote in `{line}`")),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field.trim().to_string());
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field.trim().to_string());
        }
    }
}

/// The vectors of a labelled set's readable images.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelledVectors {
    /// One row of `dim` values per embedded image, row-major, in the set's
    /// order (failed images left out).
    pub vectors: Vec<f32>,
    /// Vector size.
    pub dim: usize,
    /// The label index of each row.
    pub labels: Vec<usize>,
    /// The file of each row.
    pub paths: Vec<PathBuf>,
    /// Label names (the set's [`LabelledSet::labels`]).
    pub label_names: Vec<String>,
    /// Files that could not be read, decoded or preprocessed, and why (the
    /// set's [`LabelledSet::unreadable`] first).
    pub failures: Vec<Failure>,
}

impl LabelledVectors {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.vectors[i * self.dim..(i + 1) * self.dim]
    }

    /// Rows per label, indexed like [`LabelledVectors::label_names`].
    pub fn counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.label_names.len()];
        for &l in &self.labels {
            c[l] += 1;
        }
        c
    }
}

/// Embeds every image of `set` with `embedder`: each file decoded within
/// `limits` by the pipeline's loader (JPEGs at a reduced scale that still
/// covers the preprocessing's resize), preprocessed as the embedder asks,
/// in parallel (rayon), and embedded `batch` images at a time.
/// `progress(done, total)` hears after each batch.
///
/// A file that cannot be read, decoded or preprocessed (a truncated JPEG,
/// a text file named `.png`) is left out and listed in
/// [`LabelledVectors::failures`]; it is not an error. But a label left
/// with fewer than two images is ([`PipelineError::TooFewImages`], naming
/// the label): every image must have at least one relevant neighbour. An
/// error of the model itself fails the call.
pub fn embed_labelled(
    set: &LabelledSet,
    embedder: &dyn Embedder,
    limits: &ImageLimits,
    batch: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<LabelledVectors> {
    let total = set.images.len();
    let dim = embedder.dim();
    let shorter = embedder.preprocessing().resize_shorter;
    let mut out = LabelledVectors {
        vectors: Vec::with_capacity(total * dim),
        dim,
        labels: Vec::with_capacity(total),
        paths: Vec::with_capacity(total),
        label_names: set.labels.clone(),
        failures: set.unreadable.clone(),
    };
    let mut done = 0;
    for chunk in set.images.chunks(batch.max(1)) {
        let prepared: Vec<std::result::Result<Vec<f32>, Failure>> = chunk
            .par_iter()
            .map(|img| {
                load_rgb_reduced(&img.path, limits, shorter)
                    .and_then(|rgb| embedder.preprocess(&rgb))
                    .map_err(|e| Failure {
                        path: img.path.clone(),
                        error: crate::indexer::reason_without_path(&e, &img.path),
                    })
            })
            .collect();
        let mut inputs = Vec::with_capacity(chunk.len());
        let mut kept = Vec::with_capacity(chunk.len());
        for (img, p) in chunk.iter().zip(prepared) {
            match p {
                Ok(x) => {
                    inputs.push(x);
                    kept.push(img);
                }
                Err(f) => out.failures.push(f),
            }
        }
        let vectors = embedder.embed_batch(&inputs)?;
        for (img, v) in kept.into_iter().zip(vectors) {
            if v.len() != dim {
                return Err(PipelineError::Embed(imgsim_embed::EmbedError::Input(
                    format!(
                        "{} gave a {}-d vector for {}, not {dim}-d",
                        embedder.name(),
                        v.len(),
                        img.path.display()
                    ),
                )));
            }
            out.vectors.extend(v);
            out.labels.push(img.label);
            out.paths.push(img.path.clone());
        }
        done += chunk.len();
        progress(done, total);
    }
    let set_counts = set.counts();
    for (label, (&kept, &listed)) in out.counts().iter().zip(&set_counts).enumerate() {
        if kept < 2 {
            return Err(PipelineError::TooFewImages {
                label: set.labels[label].clone(),
                kept,
                failed: listed - kept,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_split_with_quotes_and_spaces() {
        assert_eq!(split_csv_line("a.jpg,cat").unwrap(), ["a.jpg", "cat"]);
        assert_eq!(
            split_csv_line(" \"x, y.png\" , \"big \"\"dog\"\"\"").unwrap(),
            ["x, y.png", "big \"dog\""]
        );
        assert_eq!(split_csv_line("a,b,c").unwrap().len(), 3);
        assert_eq!(split_csv_line("a,").unwrap(), ["a", ""]);
        assert!(split_csv_line("\"a,b")
            .unwrap_err()
            .contains("unterminated"));
        assert!(split_csv_line("\"a\"x,b").is_err());
    }
}
