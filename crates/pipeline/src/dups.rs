//! Acting on groups of near-duplicates: which member of each group to keep
//! (the largest or the oldest file), and moving the others to a folder or
//! deleting them, together with their entries in the collection.

use std::path::{Path, PathBuf};

use imgsim_common::Storage;
use imgsim_index::Collection;
use serde::{Deserialize, Serialize};

use crate::error::{io, PipelineError, Result};
use crate::indexer::SOURCE_FILE;
use crate::search::{default_dup_threshold, duplicate_groups, DupGroup};

/// Which member of a group is the original to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The largest file (bytes); ties: the lowest id.
    Largest,
    /// The oldest file (modification time); ties: the lowest id.
    Oldest,
}

/// What to do with the copies that are not kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DupAction {
    /// Move them into this folder (names made unique there).
    MoveTo(PathBuf),
    /// Delete them.
    Delete,
}

/// The decision for one group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupPlan {
    /// The member kept: (id, path).
    pub keep: (u64, String),
    /// The members to move or delete: (id, path).
    pub extras: Vec<(u64, String)>,
    /// Members left alone because they are not files on disk (uploads) or
    /// their file is gone: (id, path, why).
    pub untouched: Vec<(u64, String, String)>,
}

/// One file moved or deleted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Done {
    /// The item (removed from the collection).
    pub id: u64,
    /// Its file.
    pub from: String,
    /// Where it went (None: deleted).
    pub to: Option<PathBuf>,
}

/// Decides, for each group, which member to keep and which to act on.
/// Only file items whose file still exists are candidates.
pub fn plan(collection: &Collection, groups: &[DupGroup], keep: Keep) -> Result<Vec<GroupPlan>> {
    let mut out = Vec::new();
    for g in groups {
        let mut files = Vec::new();
        let mut untouched = Vec::new();
        for m in &g.items {
            let meta = collection.item(m.id)?;
            if meta.source != SOURCE_FILE {
                untouched.push((m.id, m.path.clone(), "not a file (an upload)".into()));
                continue;
            }
            match std::fs::metadata(&m.path) {
                Ok(md) => {
                    let mtime = md.modified().ok();
                    files.push((m.id, m.path.clone(), md.len(), mtime));
                }
                Err(e) => untouched.push((m.id, m.path.clone(), format!("cannot read: {e}"))),
            }
        }
        if files.len() < 2 {
            continue;
        }
        files.sort_by(|a, b| match keep {
            Keep::Largest => b.2.cmp(&a.2).then(a.0.cmp(&b.0)),
            Keep::Oldest => a.3.cmp(&b.3).then(a.0.cmp(&b.0)),
        });
        let (id, path, _, _) = files.remove(0);
        out.push(GroupPlan {
            keep: (id, path),
            extras: files.into_iter().map(|(id, p, _, _)| (id, p)).collect(),
            untouched,
        });
    }
    Ok(out)
}

/// A name in `dir` for `file` that is not taken: its file name, or
/// `stem-N.ext`.
fn free_name(dir: &Path, file: &Path) -> PathBuf {
    let name = file.file_name().map(PathBuf::from).unwrap_or_default();
    let first = dir.join(&name);
    if !first.exists() {
        return first;
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = file
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (1..)
        .map(|n| dir.join(format!("{stem}-{n}{ext}")))
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// Carries out `plans`: each extra file is moved into the folder (or
/// deleted), then its item is removed from the collection, one at a time,
/// so that an interruption leaves every file either in place and indexed
/// or acted on (at most one item whose file is gone, which `imgsim index
/// --prune` removes).
pub fn apply(
    collection: &Collection,
    plans: &[GroupPlan],
    action: &DupAction,
    storage: &dyn Storage,
) -> Result<Vec<Done>> {
    if let DupAction::MoveTo(dir) = action {
        storage.create_dir_all(dir).map_err(io(dir))?;
    }
    let mut done = Vec::new();
    for p in plans {
        for (id, path) in &p.extras {
            let from = Path::new(path);
            let to = match action {
                DupAction::MoveTo(dir) => {
                    let to = free_name(dir, from);
                    if let Err(e) = storage.rename(from, &to) {
                        // Another file system: copy, then remove.
                        if e.raw_os_error() != Some(18) {
                            return Err(io(from)(e));
                        }
                        storage.copy(from, &to).map_err(io(&to))?;
                        storage.remove_file(from).map_err(io(from))?;
                    }
                    Some(to)
                }
                DupAction::Delete => {
                    storage.remove_file(from).map_err(io(from))?;
                    None
                }
            };
            collection.delete(&[*id]).map_err(PipelineError::from)?;
            done.push(Done {
                id: *id,
                from: path.clone(),
                to,
            });
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use imgsim_index::{ItemMeta, NewItem};

    use super::*;
    use crate::search::DupMember;

    fn setup(dir: &Path) -> (Collection, Vec<u64>, Vec<PathBuf>) {
        let photos = dir.join("photos");
        std::fs::create_dir_all(&photos).unwrap();
        let mut paths = Vec::new();
        // Sizes 10, 30, 20 bytes; modification times in that order.
        for (i, size) in [10usize, 30, 20].iter().enumerate() {
            let p = photos.join(format!("p{i}.jpg"));
            std::fs::write(&p, vec![b'x'; *size]).unwrap();
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
            paths.push(p);
        }
        let c = crate::testing::collection_2d(&dir.join("c"));
        let mut items: Vec<NewItem> = paths
            .iter()
            .map(|p| NewItem {
                vector: vec![1.0, 1.0],
                meta: ItemMeta::new(p.display().to_string(), SOURCE_FILE),
            })
            .collect();
        items.push(NewItem {
            vector: vec![1.0, 1.0],
            meta: ItemMeta::new("upload:x.jpg", "upload"),
        });
        let ids = c.insert(items).unwrap();
        (c, ids, paths)
    }

    fn group(ids: &[u64], c: &Collection) -> DupGroup {
        DupGroup {
            items: ids
                .iter()
                .map(|&id| DupMember {
                    id,
                    path: c.item(id).unwrap().external_id,
                    score: 0.0,
                })
                .collect(),
        }
    }

    #[test]
    fn keeps_the_largest_or_the_oldest_and_moves_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let (c, ids, paths) = setup(dir.path());
        let g = vec![group(&ids, &c)];
        let largest = plan(&c, &g, Keep::Largest).unwrap();
        assert_eq!(largest[0].keep.0, ids[1], "the 30-byte file");
        assert_eq!(largest[0].untouched.len(), 1, "the upload is left alone");
        let oldest = plan(&c, &g, Keep::Oldest).unwrap();
        assert_eq!(oldest[0].keep.0, ids[0]);
        // A file of the same name already in the target folder is not overwritten.
        let target = dir.path().join("dups");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("p0.jpg"), b"other").unwrap();
        let done = apply(
            &c,
            &largest,
            &DupAction::MoveTo(target.clone()),
            &imgsim_common::LocalFs,
        )
        .unwrap();
        assert_eq!(done.len(), 2);
        assert!(!paths[0].exists() && !paths[2].exists() && paths[1].exists());
        assert_eq!(std::fs::read(target.join("p0.jpg")).unwrap(), b"other");
        assert_eq!(std::fs::read(target.join("p0-1.jpg")).unwrap().len(), 10);
        assert_eq!(std::fs::read(target.join("p2.jpg")).unwrap().len(), 20);
        assert!(!c.contains(ids[0]) && !c.contains(ids[2]) && c.contains(ids[1]));
        assert!(c.contains(ids[3]), "the upload stays");
    }

    #[test]
    fn delete_removes_files_and_items() {
        let dir = tempfile::tempdir().unwrap();
        let (c, ids, paths) = setup(dir.path());
        let plans = plan(&c, &[group(&ids[..3], &c)], Keep::Oldest).unwrap();
        apply(&c, &plans, &DupAction::Delete, &imgsim_common::LocalFs).unwrap();
        assert!(paths[0].exists() && !paths[1].exists() && !paths[2].exists());
        assert_eq!(c.len(), 2);
    }
}

/// What `dups` is asked: find groups, and optionally act on them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DupsRequest {
    /// Cosine: least similarity; L2: largest distance (None: the default
    /// for the metric, see [`default_dup_threshold`]).
    pub threshold: Option<f32>,
    /// Neighbours examined per image.
    pub neighbours: usize,
    /// What to do with the copies that are not kept (None: only find).
    pub action: Option<DupAction>,
    /// Which copy is the original.
    pub keep: Keep,
    /// Really act (false: a plan only).
    pub apply: bool,
}

/// What `dups` found and did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DupsReport {
    /// The threshold used.
    pub threshold: f32,
    /// The collection's metric.
    pub metric: imgsim_index::Metric,
    /// The groups.
    pub groups: Vec<DupGroup>,
    /// The decisions, when an action was asked for.
    pub plan: Vec<GroupPlan>,
    /// Whether the action was applied.
    pub applied: bool,
    /// Files moved or deleted.
    pub done: Vec<Done>,
    /// Live images in the collection when the groups were found.
    pub images: usize,
}

/// Finds the groups of near-duplicates of `collection` and, as `request`
/// asks, plans and applies an action on them (writing through `storage`).
pub fn find_and_act(
    collection: &Collection,
    request: &DupsRequest,
    storage: &dyn Storage,
) -> Result<DupsReport> {
    let threshold = match request.threshold {
        Some(t) => t,
        None => default_dup_threshold(collection, None)?,
    };
    let images = collection.len();
    let groups = duplicate_groups(collection, threshold, request.neighbours.max(1), None)?;
    let plans = match &request.action {
        Some(_) => plan(collection, &groups, request.keep)?,
        None => Vec::new(),
    };
    let done = match &request.action {
        Some(a) if request.apply => apply(collection, &plans, a, storage)?,
        _ => Vec::new(),
    };
    Ok(DupsReport {
        threshold,
        metric: collection.spec().metric,
        groups,
        plan: plans,
        applied: request.apply,
        done,
        images,
    })
}
