//! Where each live id's vector is ([`IdMap`]): a dense table for the ids
//! the collection hands out in order, with a hash map for stragglers.

use std::collections::HashMap;

use super::Loc;

/// Ids below this always go to the dense table, whatever the count.
const DENSE_FLOOR: u64 = 4096;

/// A map from id to [`Loc`]. A collection numbers its items 0, 1, 2, …,
/// so a table indexed by id takes 16 bytes an id where a hash map took
/// about 50 (1M items: 16 MB against 52 MB, which is most of what a
/// quantized index's search holds besides the codes). An id far beyond
/// the count (more than twice the entries, plus [`DENSE_FLOOR`]) goes to a
/// hash map instead, so a damaged or hostile id cannot grow the table
/// without bound. Once the hash map holds anything the table stops
/// growing, so an id is never in both (a lookup tries the table first).
#[derive(Debug, Default)]
pub(super) struct IdMap {
    dense: Vec<Option<Loc>>,
    sparse: HashMap<u64, Loc>,
    len: usize,
}

impl IdMap {
    /// An empty map with room for ids `0..n` (capped like the table).
    pub fn with_capacity(n: usize) -> Self {
        IdMap {
            dense: Vec::with_capacity(n),
            ..Self::default()
        }
    }

    /// Number of ids present.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Where `id` is, if present.
    pub fn get(&self, id: &u64) -> Option<&Loc> {
        match usize::try_from(*id).ok().and_then(|i| self.dense.get(i)) {
            Some(slot) => slot.as_ref(),
            None => self.sparse.get(id),
        }
    }

    /// Whether `id` is present.
    pub fn contains_key(&self, id: &u64) -> bool {
        self.get(id).is_some()
    }

    /// Sets where `id` is; the previous place, if any.
    pub fn insert(&mut self, id: u64, loc: Loc) -> Option<Loc> {
        let limit = DENSE_FLOOR + 2 * self.len as u64;
        let old = if (id as usize) < self.dense.len() {
            self.dense[id as usize].replace(loc)
        } else if id < limit && self.sparse.is_empty() {
            self.dense.resize(id as usize + 1, None);
            self.dense[id as usize] = Some(loc);
            None
        } else {
            self.sparse.insert(id, loc)
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes `id`; where it was, if present.
    pub fn remove(&mut self, id: &u64) -> Option<Loc> {
        let old = match usize::try_from(*id)
            .ok()
            .and_then(|i| self.dense.get_mut(i))
        {
            Some(slot) => slot.take(),
            None => self.sparse.remove(id),
        };
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Keeps only the entries for which `keep` holds.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &Loc) -> bool) {
        for (id, slot) in self.dense.iter_mut().enumerate() {
            if slot.as_ref().is_some_and(|l| !keep(id as u64, l)) {
                *slot = None;
                self.len -= 1;
            }
        }
        let before = self.sparse.len();
        self.sparse.retain(|id, l| keep(*id, l));
        self.len -= before - self.sparse.len();
    }

    /// The ids present, dense ones in ascending order first.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.dense
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_some())
            .map(|(id, _)| id as u64)
            .chain(self.sparse.keys().copied())
    }

    /// Bytes the map's entries take (the table's slots, and the hash map's
    /// entries with their control bytes; spare capacity not counted, so
    /// the figure depends only on the contents).
    pub fn heap_bytes(&self) -> usize {
        self.dense.len() * std::mem::size_of::<Option<Loc>>()
            + self.sparse.len() * (std::mem::size_of::<(u64, Loc)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{IdMap, Loc, DENSE_FLOOR};

    fn row(r: u32) -> Loc {
        Loc::Fresh { row: r }
    }

    fn same(m: &IdMap, want: &HashMap<u64, u32>) {
        assert_eq!(m.len(), want.len());
        let mut keys: Vec<u64> = m.keys().collect();
        keys.sort_unstable();
        let mut wk: Vec<u64> = want.keys().copied().collect();
        wk.sort_unstable();
        assert_eq!(keys, wk);
        for (id, r) in want {
            assert!(
                matches!(m.get(id), Some(Loc::Fresh { row }) if row == r),
                "id {id}"
            );
        }
    }

    /// Against a plain hash map through inserts, overwrites, removals, a
    /// retain, in-order ids and far-away ones.
    #[test]
    fn behaves_like_a_hash_map() {
        let mut m = IdMap::with_capacity(8);
        let mut want = HashMap::new();
        for id in 0..1000u64 {
            assert!(m.insert(id, row(id as u32)).is_none());
            want.insert(id, id as u32);
        }
        for id in [u64::MAX, 1 << 40, DENSE_FLOOR * 100] {
            assert!(m.insert(id, row(7)).is_none());
            want.insert(id, 7);
        }
        assert!(matches!(m.insert(5, row(55)), Some(Loc::Fresh { row: 5 })));
        want.insert(5, 55);
        assert!(m.remove(&10).is_some() && m.remove(&10).is_none());
        want.remove(&10);
        assert!(m.remove(&u64::MAX).is_some());
        want.remove(&u64::MAX);
        assert!(!m.contains_key(&10) && m.contains_key(&11) && !m.contains_key(&5000));
        m.retain(|id, _| id % 3 != 0);
        want.retain(|id, _| id % 3 != 0);
        same(&m, &want);
        // Far ids do not grow the table.
        assert!(m.heap_bytes() < 64 * 1024, "{}", m.heap_bytes());
    }
}
