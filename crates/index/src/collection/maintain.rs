//! Sealing and compaction off the write path: a new graph is built from a
//! snapshot while writers keep appending and searches keep running; only
//! the final switch takes the writer lock, and it reconciles what changed
//! during the build.
//!
//! One maintenance runs at a time (the `maintenance` lock, always taken
//! before the writer lock). A maintenance:
//!
//! 1. **snapshots**, under the state's read lock only: the appendable rows
//!    (a seal), or every live row (a compaction), copied into one
//!    [`VectorSet`] — the one extra copy of the data being rebuilt that a
//!    maintenance holds, besides the graph it builds;
//! 2. **builds** the graph and writes its segment file under a number the
//!    manifest does not list (commit step 1: garbage if we crash here), with
//!    no lock that a reader or writer waits for;
//! 3. **switches**, under the writer lock, in one sled batch plus flush
//!    (commit step 2): the manifest gains the segment (and, for a
//!    compaction, drops the ones it replaces); rows of the snapshot still
//!    appendable leave sled's appendable vectors; rows deleted during the
//!    build get a tombstone, so the switch never resurrects a delete; rows
//!    added during the build stay appendable.
//!
//! A kill at any point before the flush leaves the old state (recovery on
//! open removes the unlisted file); after it, the new one.

use std::collections::HashSet;
use std::sync::MutexGuard;

use crate::error::Result;
use crate::hnsw::AnnIndex;
use crate::segfile;
use crate::vectors::VectorSet;

use super::keys::{key, manifest_bytes, MANIFEST_KEY, TOMBSTONE, VECTOR};
use super::{Collection, Loc, Phase, Progress, SegmentRef};

/// What a build starts from.
struct Snapshot {
    /// The rows to build a graph over.
    set: VectorSet,
    /// For a compaction: the segments it replaces (all of them, listed at
    /// the snapshot; none can change meanwhile, as only a maintenance
    /// changes the segment list) and their tombstones, which it drops.
    /// `None` for a seal.
    replaces: Option<(Vec<u64>, HashSet<u64>)>,
}

impl Collection {
    pub(super) fn lock_maintenance(&self) -> MutexGuard<'_, ()> {
        self.maintenance.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when the appendable segment has reached `seal_threshold`, or
    /// deleted items or sealed segments have piled up past their limits.
    pub fn maintenance_due(&self) -> bool {
        let st = self.read_state();
        st.fresh.len() >= self.options.seal_threshold || self.compaction_due(&st)
    }

    fn compaction_due(&self, st: &super::State) -> bool {
        let share = st.tombstones.len() as f64 / st.locations.len().max(1) as f64;
        (share > self.options.compact_tombstone_share && share > 0.0)
            || st.segments.len() > self.options.max_segments
    }

    /// Runs whatever maintenance is due (a seal, then a compaction);
    /// returns whether it did anything. Writers and searches go on
    /// meanwhile (see the module docs).
    pub fn maintain(&self, progress: Progress) -> Result<bool> {
        let _m = self.lock_maintenance();
        self.check_writable()?;
        let seal = self.read_state().fresh.len() >= self.options.seal_threshold;
        if seal {
            self.seal_now(progress)?;
        }
        let compact = self.compaction_due(&self.read_state());
        if compact {
            self.compact_now(progress)?;
        }
        Ok(seal || compact)
    }

    /// Builds a graph over the appendable vectors and turns them into a
    /// sealed segment (a no-op when there are none), then compacts if that
    /// is due.
    pub fn seal(&self, progress: Progress) -> Result<()> {
        let _m = self.lock_maintenance();
        self.check_writable()?;
        self.seal_now(progress)?;
        if self.compaction_due(&self.read_state()) {
            self.compact_now(progress)?;
        }
        Ok(())
    }

    /// Rebuilds everything live into one sealed segment, dropping deleted
    /// items from the graph and merging segments.
    pub fn compact(&self, progress: Progress) -> Result<()> {
        let _m = self.lock_maintenance();
        self.check_writable()?;
        self.compact_now(progress)
    }

    /// After a committed write: runs what became due in this thread, or,
    /// with deferred maintenance, wakes the maintainer. A failure here
    /// does not turn the committed write into an error: it is retried.
    pub(super) fn after_write(&self) {
        if !self.maintenance_due() {
            return;
        }
        if self.options.deferred_maintenance {
            self.wake_maintainer();
        } else if let Err(e) = self.maintain(&|_, _, _| {}) {
            tracing::warn!(error = %e, "maintenance after a committed write failed; will retry on the next write");
        }
    }

    fn seal_now(&self, progress: Progress) -> Result<()> {
        let set = self.read_state().fresh.clone();
        if set.is_empty() {
            return Ok(());
        }
        self.build_and_switch(
            Snapshot {
                set,
                replaces: None,
            },
            progress,
        )
    }

    fn compact_now(&self, progress: Progress) -> Result<()> {
        let snapshot = {
            let st = self.read_state();
            let mut set = VectorSet::with_capacity(st.manifest.spec.dim, st.live());
            for seg in &st.segments {
                let v = seg.vectors();
                for r in 0..v.len() {
                    if !st.tombstones.contains(&v.id(r)) {
                        set.push_prepared(v.id(r), v.row(r));
                    }
                }
            }
            for r in 0..st.fresh.len() {
                set.push_prepared(st.fresh.id(r), st.fresh.row(r));
            }
            let listed = st.manifest.segments.iter().map(|s| s.id).collect();
            Snapshot {
                set,
                replaces: Some((listed, st.tombstones.clone())),
            }
        };
        self.build_and_switch(snapshot, progress)
    }

    /// Steps 2 and 3 of a maintenance (the caller holds the maintenance
    /// lock), then the garbage step for replaced segments.
    fn build_and_switch(&self, snapshot: Snapshot, progress: Progress) -> Result<()> {
        let spec = self.spec();
        let rows = snapshot.set.len();
        let started = std::time::Instant::now();
        let mut idx = AnnIndex::build(spec.metric, spec.params, snapshot.set, &|d| {
            progress(Phase::Building, d, rows)
        })?;
        // Stable: only a maintenance (or a bulk insert, which also holds
        // the maintenance lock) takes segment numbers.
        let seg_id = self.read_state().manifest.next_segment;
        let written = segfile::write(&*self.storage, &self.seg_dir, seg_id, &mut idx)?;
        let built_s = started.elapsed().as_secs_f64();
        let seg = SegmentRef {
            id: seg_id,
            rows: idx.len(),
            bytes: written.bytes,
            crc32: written.crc32,
        };
        let replaced = {
            let _w = self.lock_writer();
            let switched = self
                .check_writable()
                .and_then(|()| self.switch(idx, seg, snapshot.replaces));
            if switched.is_err() && !self.is_poisoned() {
                // Not applied: the file is garbage (open() would remove it too).
                let _ = self
                    .storage
                    .remove_file(&self.seg_dir.join(segfile::file_name(seg_id)));
            }
            switched?
        };
        tracing::info!(
            rows,
            build_s = built_s,
            switch_s = started.elapsed().as_secs_f64() - built_s,
            replaced = replaced.len(),
            "maintenance committed a segment"
        );
        // Step 3: garbage; open() repeats this if we crash here.
        self.remove_segment_files(&replaced);
        Ok(())
    }

    /// Step 2 under the writer lock: one batch switches the manifest to the
    /// new segment, reconciled with the writes made during the build; then
    /// the in-memory state follows. Returns the replaced segments.
    fn switch(
        &self,
        idx: AnnIndex,
        seg: SegmentRef,
        replaces: Option<(Vec<u64>, HashSet<u64>)>,
    ) -> Result<Vec<u64>> {
        let mut batch = sled::Batch::default();
        let mut manifest = self.manifest();
        // Rows of the snapshot still appendable (they move into the
        // segment) and rows deleted during the build (they get tombstones).
        let mut moved: HashSet<u64> = HashSet::new();
        let mut deleted: Vec<u64> = Vec::new();
        {
            let st = self.read_state();
            for &id in idx.vectors().ids() {
                match st.locations.get(&id) {
                    Some(Loc::Fresh { .. }) => {
                        batch.remove(&key(VECTOR, id));
                        moved.insert(id);
                    }
                    // Live in a replaced segment, or deleted from it during
                    // the build: its tombstone key is already stored.
                    Some(Loc::Sealed { .. }) => {
                        if st.tombstones.contains(&id) {
                            deleted.push(id);
                        }
                    }
                    // Appendable at the snapshot, deleted since.
                    None => {
                        batch.insert(&key(TOMBSTONE, id), &[]);
                        deleted.push(id);
                    }
                }
            }
        }
        let replaced: Vec<u64> = match &replaces {
            Some((listed, dropped)) => {
                for &id in dropped {
                    batch.remove(&key(TOMBSTONE, id));
                }
                debug_assert!(manifest
                    .segments
                    .iter()
                    .map(|s| s.id)
                    .eq(listed.iter().copied()));
                std::mem::take(&mut manifest.segments)
                    .into_iter()
                    .map(|s| s.id)
                    .collect()
            }
            None => Vec::new(),
        };
        manifest.next_segment = seg.id + 1;
        manifest.segments.push(seg);
        batch.insert(MANIFEST_KEY, manifest_bytes(&manifest));
        self.db.apply_batch(batch)?;
        // Applied: from here on the new manifest may reach the disk (sled
        // also flushes on its own), so the file must stay.
        self.flush_or_poison()?;

        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        if replaces.is_some() {
            st.segments.clear();
            st.tombstones.clear();
            st.locations.retain(|_, l| matches!(l, Loc::Fresh { .. }));
        }
        st.push_segment(idx);
        st.tombstones.extend(deleted);
        if !moved.is_empty() {
            let dim = manifest.spec.dim;
            let old = std::mem::replace(&mut st.fresh, VectorSet::new(dim));
            let mut fresh = VectorSet::with_capacity(dim, old.len() - moved.len());
            for r in 0..old.len() {
                let id = old.id(r);
                if moved.contains(&id) {
                    continue;
                }
                st.locations.insert(
                    id,
                    Loc::Fresh {
                        row: fresh.len() as u32,
                    },
                );
                fresh.push_prepared(id, old.row(r));
            }
            st.fresh = fresh;
        }
        st.manifest = manifest;
        Ok(replaced)
    }
}
