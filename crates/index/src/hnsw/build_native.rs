//! imgsim's own HNSW builder: parallel insertion written straight into the
//! frozen graph's flat arrays.
//!
//! # Why a second builder
//!
//! hnsw_rs (0.3) keeps every node's neighbours in `Arc`-linked structures
//! behind an `RwLock` per layer and per node, and when a neighbour's list
//! overflows during the reverse-link update it sorts the list and drops the
//! farthest link instead of re-running the diversity heuristic. On 200k
//! clustered vectors that gave a graph with lower recall at equal `ef`
//! than hnswlib's, built in 3.5x its time (docs/BENCHMARKS.md). This
//! builder follows the algorithm as the paper and hnswlib run it:
//!
//! - levels drawn up front (seeded, so they are the same on every run), which
//!   lets the upper-layer table be laid out before the first insertion;
//! - per insertion: greedy descent to the node's top level, then on each of
//!   its layers a best-first search with `ef_construction` candidates, the
//!   neighbour heuristic (keep a candidate only if it is closer to the new
//!   node than to every neighbour kept so far) to choose `m` links, and
//!   reverse links that, on overflow, re-run the heuristic over the old
//!   links plus the new node; lists are then topped up with the nearest
//!   candidates the heuristic dropped, so they stay full;
//! - the adjacency lives in the final layout from the start (`[count,
//!   links..]` per node, `2m` wide in layer 0, `m` above), as `AtomicU32`s:
//!   writers hold the node's mutex, readers copy a list without locking.
//!   Every slot always holds a valid row number, so a list read while it is
//!   rewritten is at worst slightly stale, never out of bounds.
//!
//! Memory of a build: the vectors, the final graph, one mutex per node, and
//! per worker thread one visited-array of `u32` per row.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rayon::prelude::*;

use crate::distance::{prefetch_vector, DistFn};
use crate::vectors::{Cand, VectorSet};

use super::graph::Graph;
use super::visited::Visited;
use super::{HnswParams, BUILD_CHUNK, MAX_LAYERS};

/// Most walks of layer 0 that look for unreached rows and relink them.
const RECONNECT_ROUNDS: usize = 16;

/// Seed of the level draw: fixed, so that a rebuild draws the same levels.
const LEVEL_SEED: u64 = 0x1A2B_3C4D_5E6F_7081;

/// Builds the graph over `vectors` on the current rayon pool. `progress` is
/// called with the number of rows inserted so far. `vectors` is not empty.
pub(crate) fn build(
    vectors: &VectorSet,
    params: HnswParams,
    kernel: DistFn,
    progress: &(dyn Fn(usize) + Sync),
) -> Graph {
    let n = vectors.len();
    let b = Builder::new(vectors, params, kernel);
    progress(1);
    let pool = Mutex::new(Vec::new());
    let mut done = 1;
    while done < n {
        let end = (done + BUILD_CHUNK).min(n);
        (done as u32..end as u32).into_par_iter().for_each_init(
            || Pooled::take(&pool),
            |scratch, row| b.insert(row, scratch),
        );
        done = end;
        progress(done);
    }
    b.reconnect(&mut Pooled::take(&pool));
    b.into_graph()
}

/// The level of `row`: `floor(-ln(u) / ln(m))` for a uniform `u` in (0, 1]
/// drawn from a hash of the row, capped below [`MAX_LAYERS`].
fn draw_level(row: u64, m: usize) -> u8 {
    let mut z = row
        .wrapping_add(LEVEL_SEED)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // 53 random bits mapped to (0, 1].
    let u = ((z >> 11) + 1) as f64 / (1u64 << 53) as f64;
    let level = (-u.ln() / (m as f64).ln()).floor();
    level.min((MAX_LAYERS - 1) as f64) as u8
}

/// Shared state of one build.
struct Builder<'a> {
    set: &'a VectorSet,
    kernel: DistFn,
    m: usize,
    m0: usize,
    ef_construction: usize,
    levels: Vec<u8>,
    upper_start: Vec<u32>,
    /// Layer 0, `[count, links ..m0]` per row.
    links0: Vec<AtomicU32>,
    /// Upper layers, `level` blocks of `[count, links ..m]` per row.
    upper: Vec<AtomicU32>,
    /// Held while a node's lists are written.
    locks: Vec<Mutex<()>>,
    /// Entry point and its level. Held for a whole insertion by a node that
    /// raises the top level, so that no insertion starts from a half-linked
    /// entry point.
    top: Mutex<(u32, u32)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing inside a poisoned lock is left half-written (lists are written
    // slot by slot, each slot always valid), so poisoning is ignored.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn atomics(len: usize) -> Vec<AtomicU32> {
    (0..len).map(|_| AtomicU32::new(0)).collect()
}

impl<'a> Builder<'a> {
    fn new(set: &'a VectorSet, params: HnswParams, kernel: DistFn) -> Builder<'a> {
        let n = set.len();
        let m = params.m;
        let levels: Vec<u8> = (0..n as u64).map(|r| draw_level(r, m)).collect();
        let mut upper_start = vec![u32::MAX; n];
        let mut upper_len = 0usize;
        for (row, &l) in levels.iter().enumerate() {
            if l > 0 {
                upper_start[row] = upper_len as u32;
                upper_len += l as usize * (m + 1);
            }
        }
        Builder {
            set,
            kernel,
            m,
            m0: 2 * m,
            ef_construction: params.ef_construction,
            top: Mutex::new((0, u32::from(levels[0]))),
            levels,
            upper_start,
            links0: atomics(n * (2 * m + 1)),
            upper: atomics(upper_len),
            locks: (0..n).map(|_| Mutex::new(())).collect(),
        }
    }

    /// The `[count, links..]` block of `row` in `level`.
    #[inline]
    fn block(&self, row: u32, level: u32) -> &[AtomicU32] {
        if level == 0 {
            let stride = self.m0 + 1;
            let base = row as usize * stride;
            &self.links0[base..base + stride]
        } else {
            let stride = self.m + 1;
            let base = self.upper_start[row as usize] as usize + (level as usize - 1) * stride;
            &self.upper[base..base + stride]
        }
    }

    /// Copies the links of `row` in `level` into `out`.
    #[inline]
    fn read_links(&self, row: u32, level: u32, out: &mut Vec<u32>) {
        let block = self.block(row, level);
        let count = (block[0].load(Relaxed) as usize).min(block.len() - 1);
        out.clear();
        out.extend(block[1..1 + count].iter().map(|a| a.load(Relaxed)));
    }

    /// Replaces the links of a block (the caller holds the node's lock).
    fn write_links(block: &[AtomicU32], links: impl ExactSizeIterator<Item = u32>) {
        let count = links.len();
        for (slot, row) in block[1..].iter().zip(links) {
            slot.store(row, Relaxed);
        }
        block[0].store(count as u32, Relaxed);
    }

    #[inline]
    fn vector(&self, row: u32) -> &[f32] {
        self.set.row(row as usize)
    }

    #[inline]
    fn dist(&self, a: u32, b: u32) -> f32 {
        (self.kernel)(self.vector(a), self.vector(b))
    }

    /// Inserts `row` (not row 0, which starts as the entry point).
    fn insert(&self, row: u32, s: &mut Scratch) {
        let level = u32::from(self.levels[row as usize]);
        let q = self.vector(row);
        let top = lock(&self.top);
        let (entry, max_level) = *top;
        let raises_top = level > max_level;
        let top = raises_top.then_some(top);

        let mut cur = Cand {
            dist: (self.kernel)(q, self.vector(entry)),
            row: entry,
        };
        for l in (level + 1..=max_level).rev() {
            cur = self.greedy(q, cur, l, &mut s.links);
        }
        for l in (0..=level.min(max_level)).rev() {
            self.search_layer(q, cur, l, s);
            // `found` is sorted nearest first and is never empty (it holds
            // at least the entry).
            cur = s.found[0];
            let found = std::mem::take(&mut s.found);
            self.select(&found, self.m, &mut s.selected);
            fill_with_pruned(&found, self.m, &mut s.selected);
            s.found = found;
            let cap = if l == 0 { self.m0 } else { self.m };
            self.write_own(row, l, cap, s);
            for i in 0..s.selected.len() {
                let nb = s.selected[i];
                self.link_back(nb.row, row, nb.dist, l, cap, s);
            }
        }
        if let Some(mut top) = top {
            *top = (row, level);
        }
    }

    /// Writes the links `row` chose in `level`. Another insertion may have
    /// linked to `row` already (it found `row` as the entry of this layer,
    /// coming down from the layers above), and its link must not be lost:
    /// those links are kept beside the chosen ones, and past `cap` the
    /// heuristic chooses among all of them.
    fn write_own(&self, row: u32, level: u32, cap: usize, s: &mut Scratch) {
        let _g = lock(&self.locks[row as usize]);
        let block = self.block(row, level);
        let count = block[0].load(Relaxed) as usize;
        if count == 0 {
            Self::write_links(block, s.selected.iter().map(|c| c.row));
            return;
        }
        let selected = std::mem::take(&mut s.selected);
        self.merge_links(row, block, &selected, cap, s);
        s.selected = selected;
    }

    /// Adds `row` (at distance `d`) to the links of `nb` in `level`; when the
    /// list is full, re-chooses `cap` links among the old ones and `row`
    /// with the heuristic.
    fn link_back(&self, nb: u32, row: u32, d: f32, level: u32, cap: usize, s: &mut Scratch) {
        let _g = lock(&self.locks[nb as usize]);
        let block = self.block(nb, level);
        let count = block[0].load(Relaxed) as usize;
        if count < cap {
            block[1 + count].store(row, Relaxed);
            block[0].store(count as u32 + 1, Relaxed);
            return;
        }
        self.merge_links(nb, block, &[Cand { dist: d, row }], cap, s);
    }

    /// Re-chooses the links of `owner`'s `block` (its lock held) among its
    /// current links and `new` (their distances to `owner` given): the
    /// heuristic, then the nearest of the rest, up to `cap`.
    fn merge_links(
        &self,
        owner: u32,
        block: &[AtomicU32],
        new: &[Cand],
        cap: usize,
        s: &mut Scratch,
    ) {
        let count = block[0].load(Relaxed) as usize;
        s.pool.clear();
        s.pool.extend_from_slice(new);
        for slot in &block[1..1 + count] {
            let other = slot.load(Relaxed);
            if s.pool.iter().all(|c| c.row != other) {
                s.pool.push(Cand {
                    dist: self.dist(owner, other),
                    row: other,
                });
            }
        }
        s.pool.sort_unstable();
        let pool = std::mem::take(&mut s.pool);
        let mut kept = std::mem::take(&mut s.kept);
        self.select(&pool, cap, &mut kept);
        fill_with_pruned(&pool, cap, &mut kept);
        Self::write_links(block, kept.iter().map(|c| c.row));
        s.pool = pool;
        s.kept = kept;
    }

    /// The neighbour heuristic (Malkov & Yashunin, algorithm 4, without
    /// extending or keeping pruned candidates): walking `sorted` nearest
    /// first, keeps a candidate only if it is nearer to the base than to
    /// every candidate kept so far, until `cap` are kept.
    fn select(&self, sorted: &[Cand], cap: usize, out: &mut Vec<Cand>) {
        out.clear();
        if sorted.len() <= cap {
            out.extend_from_slice(sorted);
            return;
        }
        for c in sorted {
            if out.len() >= cap {
                break;
            }
            let v = self.vector(c.row);
            if out
                .iter()
                .all(|k| (self.kernel)(v, self.vector(k.row)) >= c.dist)
            {
                out.push(*c);
            }
        }
    }

    /// Greedy walk in `level` from `cur` to a local minimum.
    fn greedy(&self, q: &[f32], mut cur: Cand, level: u32, links: &mut Vec<u32>) -> Cand {
        loop {
            let mut changed = false;
            self.read_links(cur.row, level, links);
            for &nb in links.iter() {
                let d = (self.kernel)(q, self.vector(nb));
                if d < cur.dist {
                    cur = Cand { dist: d, row: nb };
                    changed = true;
                }
            }
            if !changed {
                return cur;
            }
        }
    }

    /// Best-first search of `level` from `entry` with `ef_construction`
    /// candidates; leaves them in `s.found`, nearest first.
    fn search_layer(&self, q: &[f32], entry: Cand, level: u32, s: &mut Scratch) {
        let ef = self.ef_construction;
        s.begin(self.levels.len());
        s.visited.first_visit(entry.row);
        s.candidates.push(Reverse(entry));
        s.results.push(entry);
        while let Some(Reverse(c)) = s.candidates.pop() {
            let worst = s.results.peek().map_or(f32::INFINITY, |w| w.dist);
            if c.dist > worst && s.results.len() >= ef {
                break;
            }
            self.read_links(c.row, level, &mut s.links);
            if let Some(&first) = s.links.first() {
                prefetch_vector(self.vector(first));
            }
            for i in 0..s.links.len() {
                let nb = s.links[i];
                if let Some(&next) = s.links.get(i + 1) {
                    prefetch_vector(self.vector(next));
                }
                if !s.visited.first_visit(nb) {
                    continue;
                }
                let d = (self.kernel)(q, self.vector(nb));
                let full = s.results.len() >= ef;
                if !full || d < s.results.peek().map_or(f32::INFINITY, |w| w.dist) {
                    s.candidates.push(Reverse(Cand { dist: d, row: nb }));
                    s.results.push(Cand { dist: d, row: nb });
                    if s.results.len() > ef {
                        s.results.pop();
                    }
                }
            }
        }
        s.candidates.clear();
        s.found.clear();
        s.found.extend(s.results.drain());
        s.found.sort_unstable();
    }

    /// Rows of layer 0 that a search from the entry point reaches.
    fn reached(&self) -> Vec<bool> {
        let n = self.set.len();
        let (entry, _) = *lock(&self.top);
        let mut seen = vec![false; n];
        seen[entry as usize] = true;
        let mut stack = vec![entry];
        let mut links = Vec::new();
        while let Some(row) = stack.pop() {
            self.read_links(row, 0, &mut links);
            for &nb in &links {
                if !seen[nb as usize] {
                    seen[nb as usize] = true;
                    stack.push(nb);
                }
            }
        }
        seen
    }

    /// Links back every row that no layer-0 walk from the entry point
    /// reaches. Pruning a full list can drop a row's last incoming link
    /// (rare at m = 16, a whole cluster at times at m = 4): such a row is
    /// searched for among the reached rows, and linked from the nearest one
    /// with room in its list, or else put in place of a link whose target
    /// has other incoming links. Rounds until a walk reaches every row.
    fn reconnect(&self, s: &mut Scratch) {
        let n = self.set.len();
        for _round in 0..RECONNECT_ROUNDS {
            let reached = self.reached();
            let lost: Vec<u32> = (0..n as u32).filter(|&r| !reached[r as usize]).collect();
            if lost.is_empty() {
                return;
            }
            let mut in_degree = vec![0u32; n];
            let mut links = Vec::new();
            for row in (0..n as u32).filter(|&r| reached[r as usize]) {
                self.read_links(row, 0, &mut links);
                for &nb in &links {
                    in_degree[nb as usize] += 1;
                }
            }
            for &row in &lost {
                self.relink(row, &reached, &mut in_degree, s);
            }
        }
    }

    /// Gives `row` an incoming layer-0 link from a reached row near it.
    /// The search stays in layer 0 from the entry point: the upper layers
    /// could lead into the unreached part, whose rows cannot help.
    fn relink(&self, row: u32, reached: &[bool], in_degree: &mut [u32], s: &mut Scratch) {
        let q = self.vector(row);
        let (entry, _) = *lock(&self.top);
        let start = Cand {
            dist: (self.kernel)(q, self.vector(entry)),
            row: entry,
        };
        self.search_layer(q, start, 0, s);
        let near: Vec<u32> = s
            .found
            .iter()
            .map(|c| c.row)
            .filter(|&r| r != row && reached[r as usize])
            .collect();
        // An earlier relink of this round may have reached `row` already
        // (through a row it links to).
        let links_to_row = |v: u32| {
            let block = self.block(v, 0);
            let count = block[0].load(Relaxed) as usize;
            block[1..=count].iter().any(|w| w.load(Relaxed) == row)
        };
        if near.iter().any(|&v| links_to_row(v)) {
            return;
        }
        for &v in &near {
            let block = self.block(v, 0);
            let count = block[0].load(Relaxed) as usize;
            if count < self.m0 {
                block[1 + count].store(row, Relaxed);
                block[0].store(count as u32 + 1, Relaxed);
                in_degree[row as usize] += 1;
                return;
            }
        }
        for &v in &near {
            let block = self.block(v, 0);
            let count = block[0].load(Relaxed) as usize;
            // The link whose target has the most other incoming links
            // (the farthest of those on a tie), if it has at least one.
            let far = (1..=count)
                .map(|i| (i, block[i].load(Relaxed)))
                .filter(|&(_, w)| in_degree[w as usize] >= 2 && w != row)
                .max_by(|a, b| {
                    in_degree[a.1 as usize]
                        .cmp(&in_degree[b.1 as usize])
                        .then(self.dist(v, a.1).total_cmp(&self.dist(v, b.1)))
                });
            if let Some((slot, w)) = far {
                block[slot].store(row, Relaxed);
                in_degree[w as usize] -= 1;
                in_degree[row as usize] += 1;
                return;
            }
        }
    }

    fn into_graph(self) -> Graph {
        let (entry, max_level) = self
            .top
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        Graph {
            m: self.m as u32,
            m0: self.m0 as u32,
            max_level,
            entry,
            links0: self.links0.into_iter().map(AtomicU32::into_inner).collect(),
            levels: self.levels,
            upper_start: self.upper_start,
            upper: self.upper.into_iter().map(AtomicU32::into_inner).collect(),
        }
    }
}

/// Tops `kept` up to `cap` with the nearest candidates the heuristic
/// dropped ("keep pruned connections", Malkov & Yashunin algorithm 4). Used
/// when a full list takes a reverse link: the list stays full, so a row
/// keeps more of its incoming links, and a row that is reachable is also
/// found by a search for its own vector. Without it, about 1 row in
/// 10,000 of a 2,000-row graph was not.
fn fill_with_pruned(sorted: &[Cand], cap: usize, kept: &mut Vec<Cand>) {
    for c in sorted {
        if kept.len() >= cap {
            break;
        }
        if kept.iter().all(|k| k.row != c.row) {
            kept.push(*c);
        }
    }
}

/// Per-worker search state, reused across insertions.
#[derive(Default)]
struct Scratch {
    visited: Visited,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
    found: Vec<Cand>,
    selected: Vec<Cand>,
    links: Vec<u32>,
    pool: Vec<Cand>,
    kept: Vec<Cand>,
}

impl Scratch {
    /// Starts a search over rows `0..n`.
    fn begin(&mut self, n: usize) {
        self.visited.begin(n);
        self.candidates.clear();
        self.results.clear();
    }
}

/// A scratch lent by the pool for one rayon job and given back on drop, so
/// that the visited arrays are allocated once per thread, not per job.
struct Pooled<'p> {
    pool: &'p Mutex<Vec<Scratch>>,
    scratch: Option<Scratch>,
}

impl<'p> Pooled<'p> {
    fn take(pool: &'p Mutex<Vec<Scratch>>) -> Pooled<'p> {
        let scratch = lock(pool).pop().unwrap_or_default();
        Pooled {
            pool,
            scratch: Some(scratch),
        }
    }
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Scratch;
    fn deref(&self) -> &Scratch {
        self.scratch.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Scratch {
        self.scratch.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            lock(self.pool).push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_seeded_and_geometric() {
        let a: Vec<u8> = (0..100_000).map(|r| draw_level(r, 16)).collect();
        let b: Vec<u8> = (0..100_000).map(|r| draw_level(r, 16)).collect();
        assert_eq!(a, b);
        // P(level >= 1) = 1/m.
        let above = a.iter().filter(|&&l| l >= 1).count() as f64 / a.len() as f64;
        assert!((above - 1.0 / 16.0).abs() < 0.005, "{above}");
        let above2 = a.iter().filter(|&&l| l >= 2).count() as f64 / a.len() as f64;
        assert!((above2 - 1.0 / 256.0).abs() < 0.001, "{above2}");
        assert!(a.iter().all(|&l| (l as usize) < MAX_LAYERS));
    }
}
