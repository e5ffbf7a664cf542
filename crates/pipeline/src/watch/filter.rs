//! Whether a path a notification reports is one the folder walk would
//! take: not hidden (unless asked), not in a NAS metadata folder, not
//! matched by `--exclude` or by a `.imgsimignore` in a folder between the
//! watched root and the file (the rules of [`crate::files::walk_with`]).

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::overrides::{Override, OverrideBuilder};
use ignore::Match;

use crate::error::{PipelineError, Result};
use crate::files::{WalkOptions, IGNORE_FILE, SKIPPED_FOLDERS};

/// The walk's rules for single paths under the watched roots.
#[derive(Debug)]
pub(crate) struct PathFilter {
    roots: Vec<(PathBuf, Override)>,
    hidden: bool,
}

impl PathFilter {
    /// The rules for `roots` (absolute) under `opts`.
    pub(crate) fn new(roots: &[PathBuf], opts: &WalkOptions) -> Result<PathFilter> {
        let mut out = Vec::new();
        for r in roots {
            let mut b = OverrideBuilder::new(r);
            for g in &opts.exclude {
                b.add(&format!("!{g}"))
                    .map_err(|e| PipelineError::Invalid(format!("--exclude `{g}`: {e}")))?;
            }
            let ov = b
                .build()
                .map_err(|e| PipelineError::Invalid(format!("--exclude: {e}")))?;
            out.push((r.clone(), ov));
        }
        // The deepest root first, for nested roots.
        out.sort_by_key(|(r, _)| std::cmp::Reverse(r.components().count()));
        Ok(PathFilter {
            roots: out,
            hidden: opts.hidden,
        })
    }

    /// True when the walk would take the file at `path`.
    pub(crate) fn admits(&self, path: &Path) -> bool {
        let Some((root, ov)) = self.roots.iter().find(|(r, _)| path.starts_with(r)) else {
            return false;
        };
        let Ok(rel) = path.strip_prefix(root) else {
            return false;
        };
        if rel.as_os_str().is_empty() {
            return false;
        }
        let names: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if !self.hidden {
            let last = names.len() - 1;
            for (i, n) in names.iter().enumerate() {
                if n.starts_with('.') || (i < last && SKIPPED_FOLDERS.contains(&n.as_str())) {
                    return false;
                }
            }
        }
        // Each folder on the way down, then the file: the walk does not
        // enter an excluded folder.
        let mut entries = Vec::new();
        let mut cur = root.clone();
        for n in &names {
            cur.push(n);
            entries.push(cur.clone());
        }
        let mut ignores: Vec<Gitignore> = Vec::new();
        let mut dir = root.clone();
        for (i, entry) in entries.iter().enumerate() {
            // The ignore file of the folder holding this entry.
            if let Some(gi) = ignore_file(&dir) {
                ignores.push(gi);
            }
            let is_dir = i + 1 < entries.len();
            if ov.matched(entry, is_dir).is_ignore() {
                return false;
            }
            // The deepest ignore file that has a say decides.
            for gi in ignores.iter().rev() {
                match gi.matched(entry, is_dir) {
                    Match::Ignore(_) => return false,
                    Match::Whitelist(_) => break,
                    Match::None => {}
                }
            }
            dir = entry.clone();
        }
        true
    }
}

/// The `.imgsimignore` of folder `dir`, if it has one that parses.
fn ignore_file(dir: &Path) -> Option<Gitignore> {
    let file = dir.join(IGNORE_FILE);
    if !file.is_file() {
        return None;
    }
    let mut b = GitignoreBuilder::new(dir);
    if let Some(e) = b.add(&file) {
        tracing::debug!(file = %file.display(), error = %e, "part of an ignore file was not understood");
    }
    b.build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_s_rules_apply_to_single_paths() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        std::fs::create_dir_all(root.join("trip/raw")).unwrap();
        std::fs::write(root.join("trip").join(IGNORE_FILE), "raw/\n*.tmp.png\n").unwrap();
        let f = PathFilter::new(
            std::slice::from_ref(&root),
            &WalkOptions {
                hidden: false,
                exclude: vec!["screenshots/".into(), "*.bmp".into()],
            },
        )
        .unwrap();
        assert!(f.admits(&root.join("a.jpg")));
        assert!(f.admits(&root.join("trip/b.png")));
        assert!(!f.admits(&root.join(".hidden.jpg")));
        assert!(!f.admits(&root.join(".thumbnails/a.jpg")));
        assert!(!f.admits(&root.join("@eaDir/a.jpg")));
        assert!(!f.admits(&root.join("screenshots/a.jpg")));
        assert!(!f.admits(&root.join("x/y.bmp")));
        assert!(!f.admits(&root.join("trip/raw/c.jpg")));
        assert!(!f.admits(&root.join("trip/d.tmp.png")));
        assert!(f.admits(&root.join("d.tmp.png")), "only under trip/");
        assert!(!f.admits(&dir.path().join("elsewhere.jpg")));
        let all = PathFilter::new(
            std::slice::from_ref(&root),
            &WalkOptions {
                hidden: true,
                exclude: vec![],
            },
        )
        .unwrap();
        assert!(all.admits(&root.join(".thumbnails/a.jpg")));
    }
}
