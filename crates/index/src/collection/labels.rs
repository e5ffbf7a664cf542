//! Labels on items (zero-shot tags, or a caller's own): kept in each item's
//! metadata under [`LABELS_ATTR`], and found through an in-memory index of
//! label → ids, built by one scan on first use and dropped by every write
//! that may change metadata (once the write has landed; a scan that raced
//! a write is not kept, see [`LabelCache`]). Searches filter by label inside the graph walk
//! (an [`IdFilter`](crate::IdFilter)), not by trimming k results.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{IndexError, Result};

use super::{Collection, ItemMeta};

/// The metadata attribute holding an item's labels: a JSON array of
/// `{"label": …, "score": …}`, best first.
pub const LABELS_ATTR: &str = "labels";

/// A label with its score (for zero-shot tags: the probability among the
/// labels it was chosen from).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Label {
    /// The label.
    pub label: String,
    /// Its score.
    pub score: f32,
}

impl ItemMeta {
    /// The item's labels, best first (none when it has none or they are unreadable).
    pub fn labels(&self) -> Vec<Label> {
        self.attrs
            .get(LABELS_ATTR)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }

    /// Replaces the item's labels (removes the attribute when `labels` is empty).
    pub fn set_labels(&mut self, labels: &[Label]) {
        if labels.is_empty() {
            self.attrs.remove(LABELS_ATTR);
        } else {
            self.attrs.insert(
                LABELS_ATTR.to_string(),
                serde_json::to_value(labels).expect("labels serialise"),
            );
        }
    }
}

/// Live ids by label.
pub(crate) type LabelIndex = HashMap<String, Arc<HashSet<u64>>>;

/// The cached index and the number of metadata writes so far: a scan keeps
/// its result only if no write landed while it ran.
#[derive(Default)]
pub(crate) struct LabelCache {
    writes: u64,
    index: Option<Arc<LabelIndex>>,
}

impl Collection {
    fn label_cache(&self) -> std::sync::MutexGuard<'_, LabelCache> {
        self.labels.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn label_index(&self) -> Result<Arc<LabelIndex>> {
        let writes = {
            let cache = self.label_cache();
            if let Some(ix) = &cache.index {
                return Ok(ix.clone());
            }
            cache.writes
        };
        let mut by_label: HashMap<String, HashSet<u64>> = HashMap::new();
        for (id, meta) in self.items()? {
            for l in meta.labels() {
                by_label.entry(l.label).or_default().insert(id);
            }
        }
        let ix: Arc<LabelIndex> = Arc::new(
            by_label
                .into_iter()
                .map(|(k, v)| (k, Arc::new(v)))
                .collect(),
        );
        let mut cache = self.label_cache();
        if cache.writes == writes {
            cache.index = Some(ix.clone());
        }
        Ok(ix)
    }

    /// The ids carrying `label` (empty when none does). Deleted items may
    /// remain in the set; searches hide them anyway.
    pub fn ids_with_label(&self, label: &str) -> Result<Arc<HashSet<u64>>> {
        Ok(self.label_index()?.get(label).cloned().unwrap_or_default())
    }

    /// Every label in use with the number of live items carrying it, most
    /// frequent first.
    pub fn label_counts(&self) -> Result<Vec<(String, usize)>> {
        let ix = self.label_index()?;
        // One read of the state for every id, not a lock per id.
        let st = self.read_state();
        let live = |id: &u64| st.locations.contains_key(id) && !st.tombstones.contains(id);
        let mut v: Vec<(String, usize)> = ix
            .iter()
            .map(|(k, ids)| (k.clone(), ids.iter().filter(|id| live(id)).count()))
            .filter(|(_, n)| *n > 0)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(v)
    }

    /// Forgets the label index; called once a write that may change
    /// metadata has landed.
    pub(crate) fn forget_labels(&self) {
        let mut cache = self.label_cache();
        cache.writes += 1;
        cache.index = None;
    }
}

/// Checks a label given by a caller: non-empty, at most 100 bytes, no
/// control characters.
pub fn check_label(label: &str) -> Result<()> {
    if label.trim().is_empty() || label.len() > 100 || label.chars().any(char::is_control) {
        return Err(IndexError::InvalidParameter {
            name: "label",
            reason: format!(
                "`{}` is not a label: labels are 1 to 100 bytes of text without control characters",
                label.escape_debug()
            ),
        });
    }
    Ok(())
}
