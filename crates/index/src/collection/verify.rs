//! Checking that the index and sled agree ([`Collection::verify`]).

use std::collections::HashSet;

use crate::error::Result;

use super::keys::{id_of, ITEM};
use super::{Collection, Consistency, ItemMeta, Loc};

impl Collection {
    /// Checks that the index and sled agree: every live id (in a graph or
    /// the appendable segment) has its item record and every item record a
    /// live vector, every stored vector is finite, and every graph row is
    /// reachable from its entry point. With `self_search` > 0, up to that
    /// many live ids (evenly spread) are also searched with their own
    /// vector and must be found (or be tied, at the same distance, with k
    /// copies). Reads only; writes wait while the structure is checked.
    pub fn verify(&self, self_search: usize) -> Result<Consistency> {
        let mut report = Consistency::default();
        let writer = self.lock_writer();
        let (live, next_id, ef) = {
            let st = self.read_state();
            report.segments = st.segments.len();
            for seg in &st.segments {
                report.unreachable_rows += seg.unreachable_rows();
            }
            let mut live: Vec<u64> = st
                .locations
                .keys()
                .filter(|id| !st.tombstones.contains(id))
                .collect();
            live.sort_unstable();
            for &id in &live {
                let v = match st.locations.get(&id).copied().expect("listed by keys()") {
                    Loc::Sealed { seg, row } => st.segments[seg].vectors().row(row as usize),
                    Loc::Fresh { row } => st.fresh.row(row as usize),
                };
                if v.iter().any(|x| !x.is_finite()) {
                    report.non_finite.push(id);
                }
            }
            (
                live,
                st.manifest.next_id,
                st.manifest.spec.params.ef_search.max(64),
            )
        };
        report.live = live.len();
        let live_set: HashSet<u64> = live.iter().copied().collect();
        let mut with_meta = HashSet::with_capacity(live.len());
        for kv in self.db.scan_prefix([ITEM, b'/']) {
            let (k, v) = kv?;
            let id = id_of(&k)?;
            if id >= next_id {
                continue; // an insert in progress, not yet committed
            }
            report.item_records += 1;
            if !live_set.contains(&id) {
                report.orphan_metadata.push(id);
            } else if serde_json::from_slice::<ItemMeta>(&v).is_err() {
                report.unreadable_metadata.push(id);
            } else {
                with_meta.insert(id);
            }
        }
        report.missing_metadata = live
            .iter()
            .filter(|id| !with_meta.contains(id) && !report.unreadable_metadata.contains(id))
            .copied()
            .collect();
        drop(writer);
        if self_search > 0 && !live.is_empty() {
            let step = live.len().div_ceil(self_search).max(1);
            for &id in live.iter().step_by(step) {
                let Ok(v) = self.vector(id) else {
                    continue; // deleted meanwhile
                };
                if v.iter().any(|x| !x.is_finite()) {
                    continue; // reported above
                }
                report.self_searched += 1;
                let k = 10.min(live.len());
                let mut found = self.search(&v, k, Some(ef), None)?;
                if !found.iter().any(|h| h.id == id) {
                    // HNSW is approximate: a sound graph can miss a row at
                    // the default ef (about 1 in 10,000 rows). A second,
                    // deeper search tells that from a row no search reaches.
                    found = self.search(&v, k, Some(ef.saturating_mul(8).max(512)), None)?;
                }
                // k exact copies of the vector may all rank before it.
                let tied = found.len() == k
                    && found[0].distance.abs() <= 1e-4
                    && found
                        .last()
                        .is_some_and(|h| h.distance <= found[0].distance + 1e-6);
                if !found.iter().any(|h| h.id == id) && !tied && self.contains(id) {
                    report.not_found_by_own_vector.push(id);
                }
            }
        }
        Ok(report)
    }
}
