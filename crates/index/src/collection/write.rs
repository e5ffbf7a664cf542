//! Every mutating call: inserts, sealing, deletes, compaction and segment
//! merges, and the commit steps they share (see the commit protocol in the
//! module docs).

use std::sync::atomic::Ordering;

use crate::distance::Metric;
use crate::error::{IndexError, Result};
use crate::hnsw::AnnIndex;
use crate::segfile;
use crate::vectors::VectorSet;

use super::keys::{key, manifest_bytes, ITEM, MANIFEST_KEY, TOMBSTONE, VECTOR};
use super::{
    flush_through, Collection, ItemMeta, Loc, Manifest, NewItem, Phase, Progress, SegmentRef,
};

/// Items per sled batch when a bulk insert writes its metadata.
const METADATA_BATCH: usize = 512;

impl Collection {
    /// Adds items; returns their new ids. All-or-nothing: a bad vector
    /// anywhere refuses the whole call and writes nothing. Durable on return.
    pub fn insert(&self, items: Vec<NewItem>) -> Result<Vec<u64>> {
        let ids = self.insert_locked(items)?;
        self.after_write();
        Ok(ids)
    }

    fn insert_locked(&self, items: Vec<NewItem>) -> Result<Vec<u64>> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let spec = self.spec();
        let (mut vectors, metas): (Vec<Vec<f32>>, Vec<ItemMeta>) =
            items.into_iter().map(|it| (it.vector, it.meta)).unzip();
        self.prepare_all(spec.dim, spec.metric, &mut vectors)?;
        if vectors.is_empty() {
            return Ok(Vec::new());
        }
        let mut manifest = self.read_state().manifest.clone();
        let first = manifest.next_id;
        manifest.next_id += vectors.len() as u64;
        let mut batch = sled::Batch::default();
        for (i, (v, meta)) in vectors.iter().zip(&metas).enumerate() {
            let id = first + i as u64;
            batch.insert(
                &key(ITEM, id),
                serde_json::to_vec(meta).expect("meta serialises"),
            );
            batch.insert(&key(VECTOR, id), bytemuck::cast_slice::<f32, u8>(v));
        }
        batch.insert(MANIFEST_KEY, manifest_bytes(&manifest));
        self.commit_batch(batch)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.manifest = manifest;
            for (i, v) in vectors.iter().enumerate() {
                let id = first + i as u64;
                let row = st.fresh.len() as u32;
                st.fresh.push_prepared(id, v);
                st.locations.insert(id, Loc::Fresh { row });
            }
        }
        Ok((first..first + vectors.len() as u64).collect())
    }

    /// Adds many vectors at once (row-major `data`), building their graph
    /// directly as a new sealed segment. `meta(i)` gives row `i`'s metadata.
    /// Holds one copy of the vectors. Durable on return; a crash before the
    /// return leaves the collection as it was.
    pub fn bulk_insert(
        &self,
        data: Vec<f32>,
        meta: &(dyn Fn(usize) -> ItemMeta + Sync),
        progress: Progress,
    ) -> Result<Vec<u64>> {
        let ids = self.bulk_insert_locked(data, meta, progress)?;
        self.after_write();
        Ok(ids)
    }

    fn bulk_insert_locked(
        &self,
        data: Vec<f32>,
        meta: &(dyn Fn(usize) -> ItemMeta + Sync),
        progress: Progress,
    ) -> Result<Vec<u64>> {
        // Segment numbers are taken under the maintenance lock.
        let _m = self.lock_maintenance();
        let _w = self.lock_writer();
        self.check_writable()?;
        let spec = self.spec();
        let mut manifest = self.read_state().manifest.clone();
        let first = manifest.next_id;
        let rows = data.len() / spec.dim.max(1);
        let ids: Vec<u64> = (first..first + rows as u64).collect();
        let set = VectorSet::from_parts(spec.dim, ids.clone(), data, spec.metric)?;
        if rows == 0 {
            return Ok(Vec::new());
        }
        // Step 1: metadata under uncommitted ids, in sled batches of 512:
        // sled keeps the page versions a batch replaces until the batch
        // ends, and batches of 8,192 made it hold about 3 KB per item
        // (3 GiB for a million) where 512 hold a few MB in all.
        let t0 = std::time::Instant::now();
        let mut batch = sled::Batch::default();
        for i in 0..rows {
            batch.insert(
                &key(ITEM, first + i as u64),
                serde_json::to_vec(&meta(i)).expect("meta serialises"),
            );
            if (i + 1) % METADATA_BATCH == 0 || i + 1 == rows {
                self.db.apply_batch(std::mem::take(&mut batch))?;
                progress(Phase::Writing, i + 1, rows);
            }
        }
        let t1 = std::time::Instant::now();
        let idx = AnnIndex::build(spec.metric, spec.params, set, &|done| {
            progress(Phase::Building, done, rows)
        })?;
        let t2 = std::time::Instant::now();
        manifest.next_id += rows as u64;
        let committed = self.commit_segment(idx, manifest);
        // The new items' metadata is visible from here.
        self.forget_labels();
        committed?;
        tracing::info!(
            rows,
            metadata_s = (t1 - t0).as_secs_f64(),
            graph_s = (t2 - t1).as_secs_f64(),
            segment_and_commit_s = t2.elapsed().as_secs_f64(),
            "bulk insert committed"
        );
        Ok(ids)
    }

    /// Deletes items by id; returns how many existed. Deleted items disappear
    /// from searches at once (tombstones) and from the graph at the next
    /// compaction. Durable on return.
    pub fn delete(&self, ids: &[u64]) -> Result<usize> {
        let n = self.delete_locked(ids)?;
        if n > 0 {
            self.after_write();
        }
        Ok(n)
    }

    fn delete_locked(&self, ids: &[u64]) -> Result<usize> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let mut batch = sled::Batch::default();
        let mut sealed = Vec::new();
        let mut fresh = Vec::new();
        {
            let st = self.read_state();
            for &id in ids {
                if st.tombstones.contains(&id) {
                    continue;
                }
                match st.locations.get(&id) {
                    Some(Loc::Sealed { .. }) => {
                        batch.insert(&key(TOMBSTONE, id), &[]);
                        batch.remove(&key(ITEM, id));
                        sealed.push(id);
                    }
                    Some(Loc::Fresh { .. }) => {
                        batch.remove(&key(VECTOR, id));
                        batch.remove(&key(ITEM, id));
                        fresh.push(id);
                    }
                    None => {}
                }
            }
        }
        sealed.sort_unstable();
        sealed.dedup();
        fresh.sort_unstable();
        fresh.dedup();
        if sealed.is_empty() && fresh.is_empty() {
            return Ok(0);
        }
        self.commit_batch(batch)?;
        {
            let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
            st.tombstones.extend(sealed.iter().copied());
            for id in &fresh {
                if let Some(Loc::Fresh { row }) = st.locations.remove(id) {
                    if let Some(moved) = st.fresh.swap_remove(row as usize) {
                        st.locations.insert(moved, Loc::Fresh { row });
                    }
                }
            }
        }
        Ok(sealed.len() + fresh.len())
    }

    /// Sets an application property in the manifest (durable on return).
    pub fn set_property(&self, key_: &str, value: &str) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        let mut manifest = self.manifest();
        manifest
            .properties
            .insert(key_.to_string(), value.to_string());
        self.db.insert(MANIFEST_KEY, manifest_bytes(&manifest))?;
        self.flush_or_poison()?;
        self.state
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .manifest = manifest;
        Ok(())
    }

    /// Replaces the metadata of a live item (durable on return); the vector
    /// is unchanged.
    pub fn update_item(&self, id: u64, meta: &ItemMeta) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        if !self.contains(id) {
            return Err(IndexError::NotFound(id));
        }
        let mut batch = sled::Batch::default();
        batch.insert(
            &key(ITEM, id),
            serde_json::to_vec(meta).expect("meta serialises"),
        );
        self.commit_batch(batch)
    }

    /// Replaces the metadata of many live items in one commit (durable on
    /// return; all or nothing). Unknown or deleted ids are refused before
    /// anything is written.
    pub fn update_items(&self, updates: &[(u64, ItemMeta)]) -> Result<()> {
        let _w = self.lock_writer();
        self.check_writable()?;
        if let Some((id, _)) = updates.iter().find(|(id, _)| !self.contains(*id)) {
            return Err(IndexError::NotFound(*id));
        }
        let mut batch = sled::Batch::default();
        for (id, meta) in updates {
            batch.insert(
                &key(ITEM, *id),
                serde_json::to_vec(meta).expect("meta serialises"),
            );
        }
        self.commit_batch(batch)
    }

    /// Checks and prepares incoming vectors; errors name the item's position.
    fn prepare_all(&self, dim: usize, metric: Metric, vectors: &mut [Vec<f32>]) -> Result<()> {
        for (i, v) in vectors.iter_mut().enumerate() {
            if v.len() != dim {
                return Err(IndexError::WrongDimension {
                    index: i,
                    expected: dim,
                    got: v.len(),
                });
            }
            metric.prepare(v, i)?;
        }
        Ok(())
    }

    /// Commit protocol steps 1 and 2 for a bulk insert's new sealed
    /// segment: writes `idx`'s file, then switches to `manifest` plus the
    /// segment. Updates the in-memory state to match.
    fn commit_segment(&self, mut idx: AnnIndex, mut manifest: Manifest) -> Result<()> {
        let seg_id = manifest.next_segment;
        let written = segfile::write(&*self.storage, &self.seg_dir, seg_id, &mut idx)?;
        manifest.next_segment += 1;
        manifest.segments.push(SegmentRef {
            id: seg_id,
            rows: idx.len(),
            bytes: written.bytes,
            crc32: written.crc32,
        });
        if let Err(e) = self.db.insert(MANIFEST_KEY, manifest_bytes(&manifest)) {
            // Not applied: the file is garbage (open() would remove it too).
            let _ = self
                .storage
                .remove_file(&self.seg_dir.join(segfile::file_name(seg_id)));
            return Err(e.into());
        }
        // Applied: from here on the new manifest may reach the disk (sled also
        // flushes on its own), so the file must stay.
        self.flush_or_poison()?;
        let mut st = self.state.write().unwrap_or_else(|p| p.into_inner());
        st.push_segment(idx);
        st.manifest = manifest;
        Ok(())
    }

    /// Applies a small commit (step 2 alone) and makes it durable.
    fn commit_batch(&self, batch: sled::Batch) -> Result<()> {
        let applied = self.db.apply_batch(batch);
        // After the write, applied or not: a scan that raced it is dropped.
        self.forget_labels();
        applied?;
        self.flush_or_poison()
    }

    /// Makes an applied batch durable. If that fails, what reached the disk
    /// is unknown: the handle refuses further writes (reads go on) until the
    /// collection is reopened, which settles the state from what is on disk.
    pub(super) fn flush_or_poison(&self) -> Result<()> {
        flush_through(&*self.storage, &self.db).map_err(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            IndexError::NeedsReopen(format!("flushing a commit failed ({e})"))
        })
    }

    /// True once a commit's outcome is unknown (see [`IndexError::NeedsReopen`]).
    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Refuses writes on a handle whose last commit has an unknown outcome.
    pub(super) fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::SeqCst) {
            return Err(IndexError::NeedsReopen(
                "an earlier commit could not be confirmed on disk".into(),
            ));
        }
        Ok(())
    }

    /// Commit protocol step 3: deletes the files of replaced segments.
    pub(super) fn remove_segment_files(&self, ids: &[u64]) {
        for id in ids {
            let f = self.seg_dir.join(segfile::file_name(*id));
            if let Err(e) = self.storage.remove_file(&f) {
                tracing::warn!(file = %f.display(), error = %e, "could not remove an old segment file; it will be removed on next open");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use imgsim_common::{FaultyFs, Op};

    use super::*;
    use crate::distance::Metric;
    use crate::hnsw::HnswParams;
    use crate::CollectionSpec;

    fn items(n: usize, dim: usize) -> Vec<NewItem> {
        (0..n)
            .map(|i| NewItem {
                vector: (0..dim).map(|d| ((i * 7 + d * 3) % 11) as f32).collect(),
                meta: ItemMeta::new(i.to_string(), "t"),
            })
            .collect()
    }

    /// The commit protocol, as the storage sees it: the segment file is
    /// written, renamed into place and its folder fsynced before the flush
    /// that switches the manifest; replaced files are removed only after it.
    #[test]
    fn the_ops_log_follows_the_commit_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let fs = Arc::new(FaultyFs::new());
        let spec = CollectionSpec {
            dim: 4,
            metric: Metric::L2,
            params: HnswParams::default(),
        };
        let c = Collection::create_with(&p, spec, Default::default(), fs.clone()).unwrap();
        c.insert(items(10, 4)).unwrap();
        let from = fs.ops().len();
        c.seal(&|_, _, _| {}).unwrap();
        let seg = p.join("segments").join(segfile::file_name(0));
        let sealed: Vec<(Op, std::path::PathBuf)> = fs.ops()[from..].to_vec();
        assert_eq!(
            sealed,
            vec![
                (Op::Write, seg.clone()),
                (Op::Rename, seg.clone()),
                (Op::SyncDir, p.join("segments")),
                (Op::Barrier, "sled flush".into()),
            ]
        );
        let from = fs.ops().len();
        c.compact(&|_, _, _| {}).unwrap();
        let kinds: Vec<Op> = fs.ops()[from..].iter().map(|(op, _)| *op).collect();
        assert_eq!(
            kinds,
            vec![Op::Write, Op::Rename, Op::SyncDir, Op::Barrier, Op::Remove]
        );
        assert_eq!(
            fs.ops().last().unwrap().1,
            seg,
            "the replaced file goes last"
        );
        // A small insert is step 2 alone: one flush.
        let from = fs.ops().len();
        c.insert(items(1, 4)).unwrap();
        let kinds: Vec<Op> = fs.ops()[from..].iter().map(|(op, _)| *op).collect();
        assert_eq!(kinds, vec![Op::Barrier]);
    }
}
