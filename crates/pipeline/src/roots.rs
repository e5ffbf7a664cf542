//! Which folders a server may read on a client's behalf (`[server]
//! library_roots`): the check that a path lies inside one of them, made on
//! canonical paths (symlinks and `..` resolved), so that no spelling of a
//! path escapes it.

use std::path::{Component, Path, PathBuf};

use crate::error::{PipelineError, Result};

/// `path` made canonical: symlinks and `..` resolved. A path that does not
/// exist yet (a folder to create) is resolved through its nearest existing
/// ancestor; what follows it may not contain `..`.
pub fn canonical(path: &Path) -> Result<PathBuf> {
    if !path.is_absolute() {
        return Err(PipelineError::Invalid(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(c) => {
                let mut out = c;
                for part in rest.iter().rev() {
                    out.push(part);
                }
                return Ok(out);
            }
            Err(e) => {
                let name = match existing.components().next_back() {
                    Some(Component::Normal(n)) => n.to_os_string(),
                    _ => {
                        return Err(PipelineError::Io {
                            path: path.to_path_buf(),
                            source: e,
                        })
                    }
                };
                rest.push(name);
                if !existing.pop() {
                    return Err(PipelineError::Io {
                        path: path.to_path_buf(),
                        source: e,
                    });
                }
            }
        }
    }
}

/// Checks that `path` (absolute) lies inside one of `roots` once both are
/// canonical; returns its canonical form. Outside: a
/// [`PipelineError::OutsideRoots`] naming the path and the setting.
pub fn check_within(path: &Path, roots: &[PathBuf]) -> Result<PathBuf> {
    let c = canonical(path)?;
    let inside = roots
        .iter()
        .filter_map(|r| r.canonicalize().ok())
        .any(|r| c.starts_with(&r));
    if inside {
        return Ok(c);
    }
    let listed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(PipelineError::OutsideRoots {
        path: path.to_path_buf(),
        roots: if listed.is_empty() {
            "none".into()
        } else {
            listed.join(", ")
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_pass_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("photos");
        let outside = dir.path().join("private");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        let roots = vec![root.clone()];
        assert!(check_within(&root.join("a"), &roots).is_ok());
        // Not there yet: resolved through its existing ancestor.
        assert!(check_within(&root.join("a/new/deeper"), &roots).is_ok());
        // `..` out of the root.
        let e = check_within(&root.join("a/../../private"), &roots).unwrap_err();
        assert!(matches!(e, PipelineError::OutsideRoots { .. }), "{e}");
        assert!(e.to_string().contains("library_roots"), "{e}");
        // A symlink inside the root pointing out of it.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
            assert!(check_within(&root.join("link"), &roots).is_err());
        }
        assert!(check_within(Path::new("relative"), &roots).is_err());
    }
}
