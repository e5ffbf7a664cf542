//! The approximate index: an HNSW graph (Malkov & Yashunin, "Efficient and
//! robust approximate nearest neighbor search using Hierarchical Navigable
//! Small World graphs", 2016, arXiv:1603.09320).
//!
//! # Build with hnsw_rs, search on a frozen flat graph
//!
//! The graph is *built* by [`hnsw_rs`] (parallel insertion with rayon). Two
//! things are done differently from using hnsw_rs directly:
//!
//! 1. **No second copy of the vectors.** hnsw_rs copies every inserted vector
//!    into its own point structure. We insert *row numbers* (`u32`) instead and
//!    give hnsw_rs a distance (`RowDistance`) that looks the rows up in our
//!    one contiguous array, through our SIMD kernel.
//! 2. **Searching is ours.** Once built, the graph's adjacency is copied out of
//!    hnsw_rs into flat arrays (`Graph`): layer 0 as one `u32` table with a
//!    fixed stride, upper layers in a side table. hnsw_rs' own search allocates
//!    per visited node (a `HashMap` of visited points, an `Arc` per candidate,
//!    a lock per adjacency read), which made it several times slower than
//!    hnswlib; the flat search uses an epoch-tagged visited array, two heaps
//!    reused across queries, prefetching, and no locks. Its filter is exact,
//!    which sidesteps hnsw_rs' `search_filter` issue (#27). The frozen graph is
//!    also what the collection persists: plain arrays, reloaded without a rebuild.
//!
//! A frozen index is immutable; the collection adds new vectors in an
//! appendable segment and seals them into new graphs (see `collection`).

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use serde::{Deserialize, Serialize};

use crate::distance::{prefetch_vector, DistFn, Metric};
use crate::error::{IndexError, Result};
use crate::vectors::{prepare_query, Cand, IdFilter, Neighbor, VectorSet};

/// Most layers hnsw_rs will create.
const MAX_LAYERS: usize = 16;
/// Rows inserted into hnsw_rs per parallel call (progress granularity).
const BUILD_CHUNK: usize = 8192;
/// Smallest `m` accepted.
pub const MIN_M: usize = 2;
/// Largest `m` accepted: hnsw_rs stores up to `2m` links per node in layer 0 and
/// aborts the process above 256 connections.
pub const MAX_M: usize = 128;
/// Largest `ef_construction` accepted: far above any useful value (1,000
/// already makes a very slow build); larger ones are taken for mistakes.
pub const MAX_EF_CONSTRUCTION: usize = 10_000;

/// HNSW parameters. Usable directly as a configuration section: missing
/// keys take their defaults, unknown keys are refused, and
/// [`HnswParams::validate`] checks the ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HnswParams {
    /// Links per node in the upper layers; layer 0 keeps up to `2 * m`.
    /// [`MIN_M`]..=[`MAX_M`]; default 16.
    pub m: usize,
    /// Candidate list size while building; larger is slower and better.
    /// 1..=[`MAX_EF_CONSTRUCTION`]; default 200.
    pub ef_construction: usize,
    /// Default candidate list size while searching (overridable per query).
    /// At least 1; default 64.
    pub ef_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            m: 16,
            ef_construction: 200,
            ef_search: 64,
        }
    }
}

impl HnswParams {
    /// Checks the parameters are in range; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_M..=MAX_M).contains(&self.m) {
            return Err(IndexError::InvalidParameter {
                name: "m",
                reason: format!("must be between {MIN_M} and {MAX_M}, not {}", self.m),
            });
        }
        if !(1..=MAX_EF_CONSTRUCTION).contains(&self.ef_construction) {
            return Err(IndexError::InvalidParameter {
                name: "ef_construction",
                reason: format!(
                    "must be between 1 and {MAX_EF_CONSTRUCTION}, not {}",
                    self.ef_construction
                ),
            });
        }
        if self.ef_search == 0 {
            return Err(IndexError::InvalidParameter {
                name: "ef_search",
                reason: "must be at least 1, not 0".into(),
            });
        }
        Ok(())
    }
}

/// hnsw_rs distance over row numbers: each "point" hnsw_rs sees is a single
/// `u32`, the row of the vector in our array.
struct RowDistance<'a> {
    set: &'a VectorSet,
    kernel: DistFn,
}

impl Distance<u32> for RowDistance<'_> {
    fn eval(&self, va: &[u32], vb: &[u32]) -> f32 {
        (self.kernel)(self.set.row(va[0] as usize), self.set.row(vb[0] as usize)).max(0.0)
    }
}

/// The frozen adjacency of an HNSW graph, as flat arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Graph {
    /// Max links per node in upper layers.
    m: u32,
    /// Max links per node in layer 0 (= 2m).
    m0: u32,
    /// Layer of the entry point.
    max_level: u32,
    /// Entry point row (meaningless when empty).
    entry: u32,
    /// Layer 0: for each row, `[count, link_0, .., link_{m0-1}]`.
    links0: Vec<u32>,
    /// Level of each row (0 for most).
    levels: Vec<u8>,
    /// Per row, index into `upper` of its layer-1 block, or `u32::MAX` for level 0.
    upper_start: Vec<u32>,
    /// Upper layers: for a node of level L, L blocks of `[count, links ..m]`.
    upper: Vec<u32>,
}

impl Graph {
    #[inline]
    fn links0(&self, row: u32) -> &[u32] {
        let stride = self.m0 as usize + 1;
        let base = row as usize * stride;
        let count = self.links0[base] as usize;
        &self.links0[base + 1..base + 1 + count]
    }

    #[inline]
    fn links_upper(&self, row: u32, level: u32) -> &[u32] {
        if level == 0 || level > u32::from(self.levels[row as usize]) {
            return &[];
        }
        let stride = self.m as usize + 1;
        let base = self.upper_start[row as usize] as usize + (level as usize - 1) * stride;
        let count = self.upper[base] as usize;
        &self.upper[base + 1..base + 1 + count]
    }

    /// Serialises to little-endian bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self.levels.len()
                + 4 * (self.links0.len() + self.upper_start.len() + self.upper.len()),
        );
        out.extend_from_slice(GRAPH_MAGIC);
        for v in [self.m, self.m0, self.max_level, self.entry] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.levels.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.levels);
        for arr in [&self.links0, &self.upper_start, &self.upper] {
            out.extend_from_slice(&(arr.len() as u64).to_le_bytes());
            for v in arr.iter() {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8], rows: usize) -> Result<Graph> {
        let corrupt = |what: &str| IndexError::Corrupt(format!("HNSW graph: {what}"));
        let mut r = ByteReader { bytes, pos: 0 };
        if r.take(GRAPH_MAGIC.len())
            .ok_or_else(|| corrupt("truncated header"))?
            != GRAPH_MAGIC
        {
            return Err(corrupt("bad magic"));
        }
        let mut hdr = [0u32; 4];
        for h in hdr.iter_mut() {
            *h = r.u32().ok_or_else(|| corrupt("truncated header"))?;
        }
        let [m, m0, max_level, entry] = hdr;
        let nlev = r.u64().ok_or_else(|| corrupt("truncated levels"))? as usize;
        let levels = r
            .take(nlev)
            .ok_or_else(|| corrupt("truncated levels"))?
            .to_vec();
        let mut arrays: [Vec<u32>; 3] = Default::default();
        for a in arrays.iter_mut() {
            let len = r.u64().ok_or_else(|| corrupt("truncated array length"))? as usize;
            let raw = r
                .take(
                    len.checked_mul(4)
                        .ok_or_else(|| corrupt("array length overflow"))?,
                )
                .ok_or_else(|| corrupt("truncated array"))?;
            *a = raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
        }
        if r.pos != bytes.len() {
            return Err(corrupt("trailing bytes"));
        }
        let [links0, upper_start, upper] = arrays;
        let g = Graph {
            m,
            m0,
            max_level,
            entry,
            links0,
            levels,
            upper_start,
            upper,
        };
        g.check(rows).map_err(|e| corrupt(&e))?;
        Ok(g)
    }

    /// Structural checks so that a damaged graph is an error, not a panic.
    fn check(&self, rows: usize) -> std::result::Result<(), String> {
        let stride0 = self.m0 as usize + 1;
        let stride = self.m as usize + 1;
        if self.m.checked_mul(2) != Some(self.m0) {
            return Err("layer-0 width is not 2m".into());
        }
        if self.links0.len() != rows * stride0 {
            return Err(format!(
                "layer 0 has {} slots, expected {}",
                self.links0.len(),
                rows * stride0
            ));
        }
        if self.upper_start.len() != rows || self.levels.len() != rows {
            return Err("per-row tables have the wrong length".into());
        }
        if rows > 0
            && (self.entry as usize >= rows
                || u32::from(self.levels[self.entry as usize]) != self.max_level)
        {
            return Err("entry point out of range or not on the top layer".into());
        }
        if self.max_level as usize >= MAX_LAYERS {
            return Err("too many layers".into());
        }
        let in_range = |ls: &[u32]| ls.iter().all(|&l| (l as usize) < rows);
        for row in 0..rows {
            let base = row * stride0;
            let count = self.links0[base] as usize;
            if count > self.m0 as usize || !in_range(&self.links0[base + 1..base + 1 + count]) {
                return Err(format!("row {row} has damaged layer-0 links"));
            }
            let level = self.levels[row] as usize;
            if level > self.max_level as usize {
                return Err(format!("row {row} is above the top layer"));
            }
            if level == 0 {
                continue;
            }
            let start = self.upper_start[row] as usize;
            if self.upper_start[row] == u32::MAX || start + level * stride > self.upper.len() {
                return Err(format!("row {row} has a damaged upper-layer index"));
            }
            for l in 0..level {
                let b = start + l * stride;
                let count = self.upper[b] as usize;
                if count > self.m as usize || !in_range(&self.upper[b + 1..b + 1 + count]) {
                    return Err(format!("row {row} has damaged links in layer {}", l + 1));
                }
            }
        }
        Ok(())
    }

    fn heap_bytes(&self) -> usize {
        self.levels.capacity()
            + 4 * (self.links0.capacity() + self.upper_start.capacity() + self.upper.capacity())
    }
}

const GRAPH_MAGIC: &[u8; 8] = b"IMGSIMG1";

struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    }
}

/// Reusable per-thread search state.
struct Scratch {
    visited: Vec<u32>,
    epoch: u32,
    candidates: BinaryHeap<Reverse<Cand>>,
    results: BinaryHeap<Cand>,
}

impl Scratch {
    /// Starts a new search over `n` rows; returns the epoch that marks "visited".
    fn begin(&mut self, n: usize) -> u32 {
        if self.visited.len() < n {
            self.visited.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.visited.iter_mut().for_each(|v| *v = 0);
            self.epoch = 1;
        }
        self.candidates.clear();
        self.results.clear();
        self.epoch
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = const {
        RefCell::new(Scratch {
            visited: Vec::new(),
            epoch: 0,
            candidates: BinaryHeap::new(),
            results: BinaryHeap::new(),
        })
    };
}

/// An immutable HNSW index over a [`VectorSet`].
pub struct AnnIndex {
    metric: Metric,
    params: HnswParams,
    vectors: VectorSet,
    graph: Graph,
    kernel: DistFn,
}

impl std::fmt::Debug for AnnIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnnIndex")
            .field("metric", &self.metric)
            .field("params", &self.params)
            .field("len", &self.len())
            .field("dim", &self.dim())
            .finish()
    }
}

impl AnnIndex {
    /// Builds the graph over `vectors` (already prepared for `metric`) with
    /// hnsw_rs' parallel insertion on the current rayon pool. `progress` is
    /// called with the number of rows inserted so far.
    pub fn build(
        metric: Metric,
        params: HnswParams,
        vectors: VectorSet,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<AnnIndex> {
        params.validate()?;
        let n = vectors.len();
        if n > u32::MAX as usize - 1 {
            return Err(IndexError::InvalidParameter {
                name: "vectors",
                reason: format!("{n} vectors exceed the {} a segment can hold", u32::MAX - 1),
            });
        }
        let kernel = metric.kernel();
        let graph = if n == 0 {
            Graph {
                m: params.m as u32,
                m0: 2 * params.m as u32,
                ..Graph::default()
            }
        } else {
            build_graph(&vectors, params, kernel, progress)
        };
        Ok(AnnIndex {
            metric,
            params,
            vectors,
            graph,
            kernel,
        })
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The parameters the graph was built with.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.vectors.dim()
    }

    /// The vectors and ids this graph indexes.
    pub fn vectors(&self) -> &VectorSet {
        &self.vectors
    }

    /// Gives the vectors back, dropping the graph.
    pub fn into_vectors(self) -> VectorSet {
        self.vectors
    }

    /// Heap memory held by vectors and graph.
    pub fn heap_bytes(&self) -> usize {
        self.vectors.heap_bytes() + self.graph.heap_bytes()
    }

    /// Rows that a search cannot reach: not connected to the entry point
    /// through layer 0's links (0 for a sound graph). A consistency check;
    /// one breadth-first walk, O(rows × m).
    pub fn unreachable_rows(&self) -> usize {
        let n = self.vectors.len();
        if n == 0 {
            return 0;
        }
        let mut seen = vec![false; n];
        let mut queue = vec![self.graph.entry];
        seen[self.graph.entry as usize] = true;
        let mut reached = 1;
        while let Some(row) = queue.pop() {
            for &next in self.graph.links0(row) {
                if let Some(s) = seen.get_mut(next as usize) {
                    if !*s {
                        *s = true;
                        reached += 1;
                        queue.push(next);
                    }
                }
            }
        }
        n - reached
    }

    /// Number of levels above layer 0.
    pub fn max_level(&self) -> usize {
        self.graph.max_level as usize
    }

    /// The `k` approximate nearest neighbours of `query`, searching with a
    /// candidate list of `ef` (raised to `k` when smaller).
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> Result<Vec<Neighbor>> {
        self.search_filtered(query, k, ef, None)
    }

    /// Like [`search`](Self::search), returning only ids the filter allows.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = prepare_query(query, self.dim(), self.metric)?;
        Ok(self.search_prepared(&q, k, ef, filter))
    }

    /// Search with a query that is already checked and prepared.
    pub(crate) fn search_prepared(
        &self,
        q: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&dyn IdFilter>,
    ) -> Vec<Neighbor> {
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        let ef = ef.max(k);
        let g = &self.graph;
        let dist = |row: u32| (self.kernel)(q, self.vectors.row(row as usize));

        // Greedy descent through the upper layers.
        let mut cur = g.entry;
        let mut cur_d = dist(cur);
        for level in (1..=g.max_level).rev() {
            loop {
                let mut changed = false;
                for &nb in g.links_upper(cur, level) {
                    let d = dist(nb);
                    if d < cur_d {
                        cur_d = d;
                        cur = nb;
                        changed = true;
                    }
                }
                if !changed {
                    break;
                }
            }
        }

        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let epoch = s.begin(n);
            let Scratch {
                visited,
                candidates,
                results,
                ..
            } = &mut *s;
            let allowed = |row: u32| filter.is_none_or(|f| f.allows(self.vectors.id(row as usize)));
            visited[cur as usize] = epoch;
            candidates.push(Reverse(Cand {
                dist: cur_d,
                row: cur,
            }));
            if allowed(cur) {
                results.push(Cand {
                    dist: cur_d,
                    row: cur,
                });
            }
            let mut bound = if results.len() >= ef {
                results.peek().map_or(f32::INFINITY, |c| c.dist)
            } else {
                f32::INFINITY
            };
            while let Some(Reverse(c)) = candidates.pop() {
                if c.dist > bound {
                    break;
                }
                let links = g.links0(c.row);
                if let Some(&first) = links.first() {
                    prefetch_vector(self.vectors.row(first as usize));
                }
                for (i, &nb) in links.iter().enumerate() {
                    if let Some(&next) = links.get(i + 1) {
                        prefetch_vector(self.vectors.row(next as usize));
                    }
                    let v = &mut visited[nb as usize];
                    if *v == epoch {
                        continue;
                    }
                    *v = epoch;
                    let d = dist(nb);
                    if results.len() < ef || d < bound {
                        candidates.push(Reverse(Cand { dist: d, row: nb }));
                        if allowed(nb) {
                            results.push(Cand { dist: d, row: nb });
                            if results.len() > ef {
                                results.pop();
                            }
                            if results.len() >= ef {
                                bound = results.peek().map_or(f32::INFINITY, |c| c.dist);
                            }
                        }
                    }
                }
            }
            let mut out: Vec<Cand> = results.drain().collect();
            out.sort_unstable();
            out.truncate(k);
            out.into_iter()
                .map(|c| Neighbor {
                    id: self.vectors.id(c.row as usize),
                    distance: self.metric.to_user(c.dist),
                })
                .collect()
        })
    }

    /// Serialises the graph (not the vectors) to bytes.
    pub fn encode_graph(&self) -> Vec<u8> {
        self.graph.encode()
    }

    /// Rebuilds an index from stored vectors and an encoded graph, checking
    /// that they fit together. No graph construction happens.
    pub fn from_parts(
        metric: Metric,
        params: HnswParams,
        vectors: VectorSet,
        graph_bytes: &[u8],
    ) -> Result<AnnIndex> {
        params.validate()?;
        let graph = Graph::decode(graph_bytes, vectors.len())?;
        if graph.m as usize != params.m {
            return Err(IndexError::Corrupt(format!(
                "graph was built with m = {}, manifest says {}",
                graph.m, params.m
            )));
        }
        Ok(AnnIndex {
            metric,
            params,
            vectors,
            graph,
            kernel: metric.kernel(),
        })
    }
}

fn build_graph(
    vectors: &VectorSet,
    params: HnswParams,
    kernel: DistFn,
    progress: &(dyn Fn(usize) + Sync),
) -> Graph {
    let n = vectors.len();
    let rows: Vec<u32> = (0..n as u32).collect();
    let hnsw: Hnsw<u32, RowDistance> = Hnsw::new(
        params.m,
        n,
        MAX_LAYERS,
        params.ef_construction,
        RowDistance {
            set: vectors,
            kernel,
        },
    );
    // The first point becomes the entry point; insert it alone.
    hnsw.insert_slice((&rows[0..1], 0));
    progress(1);
    let mut done = 1;
    while done < n {
        let end = (done + BUILD_CHUNK).min(n);
        let batch: Vec<(&[u32], usize)> = (done..end).map(|r| (&rows[r..r + 1], r)).collect();
        hnsw.parallel_insert_slice(&batch);
        done = end;
        progress(done);
    }
    freeze(&hnsw, n, params.m)
}

/// Copies the adjacency out of hnsw_rs into flat arrays.
fn freeze(hnsw: &Hnsw<u32, RowDistance>, n: usize, m: usize) -> Graph {
    let m0 = 2 * m;
    let stride0 = m0 + 1;
    let stride = m + 1;
    let mut links0 = vec![0u32; n * stride0];
    let mut levels = vec![0u8; n];
    let mut upper_lists: Vec<(u32, Vec<Vec<u32>>)> = Vec::new();
    let pi = hnsw.get_point_indexation();
    for point in pi {
        let row = point.get_origin_id();
        let level = point.get_point_id().0 as usize;
        levels[row] = level as u8;
        let hood = point.get_neighborhood_id();
        let l0: Vec<u32> = hood
            .first()
            .map(|l| {
                l.iter()
                    .map(|nb| nb.get_origin_id() as u32)
                    .take(m0)
                    .collect()
            })
            .unwrap_or_default();
        let base = row * stride0;
        links0[base] = l0.len() as u32;
        links0[base + 1..base + 1 + l0.len()].copy_from_slice(&l0);
        if level > 0 {
            let ups = (1..=level)
                .map(|l| {
                    hood.get(l)
                        .map(|ls| {
                            ls.iter()
                                .map(|nb| nb.get_origin_id() as u32)
                                .take(m)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect();
            upper_lists.push((row as u32, ups));
        }
    }
    upper_lists.sort_by_key(|(row, _)| *row);
    let mut upper_start = vec![u32::MAX; n];
    let mut upper = Vec::new();
    for (row, layers) in upper_lists {
        upper_start[row as usize] = upper.len() as u32;
        for list in layers {
            let base = upper.len();
            upper.resize(base + stride, 0);
            upper[base] = list.len() as u32;
            upper[base + 1..base + 1 + list.len()].copy_from_slice(&list);
        }
    }
    let max_level = hnsw.get_max_level_observed() as u32;
    let entry = pi
        .get_layer_iterator(max_level as usize)
        .next()
        .map(|p| p.get_origin_id() as u32)
        .unwrap_or(0);
    Graph {
        m: m as u32,
        m0: m0 as u32,
        max_level,
        entry,
        links0,
        levels,
        upper_start,
        upper,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact::ExactIndex;
    use crate::recall::recall_at_k;

    #[test]
    fn params_are_a_config_section_and_ranges_are_checked() {
        let p: HnswParams = serde_json::from_str(r#"{"m": 8}"#).unwrap();
        assert_eq!(
            p,
            HnswParams {
                m: 8,
                ..HnswParams::default()
            }
        );
        let p: HnswParams = serde_json::from_str("{}").unwrap();
        assert_eq!(p, HnswParams::default());
        p.validate().unwrap();
        let e = serde_json::from_str::<HnswParams>(r#"{"m": 8, "ef": 3}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `ef`"), "{e}");

        let bad = |f: fn(&mut HnswParams)| {
            let mut p = HnswParams::default();
            f(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert_eq!(
            bad(|p| p.m = 1),
            "invalid parameter m: must be between 2 and 128, not 1"
        );
        assert_eq!(
            bad(|p| p.m = 129),
            "invalid parameter m: must be between 2 and 128, not 129"
        );
        assert_eq!(
            bad(|p| p.ef_construction = 0),
            "invalid parameter ef_construction: must be between 1 and 10000, not 0"
        );
        assert!(
            bad(|p| p.ef_construction = 10_001).starts_with("invalid parameter ef_construction")
        );
        assert_eq!(
            bad(|p| p.ef_search = 0),
            "invalid parameter ef_search: must be at least 1, not 0"
        );
        for ok in [
            HnswParams {
                m: MIN_M,
                ef_construction: 1,
                ef_search: 1,
            },
            HnswParams {
                m: MAX_M,
                ef_construction: MAX_EF_CONSTRUCTION,
                ef_search: 100_000,
            },
        ] {
            ok.validate().unwrap();
        }
    }

    /// Seeded clustered data: `n` points of dimension `dim`, 16 clusters, each
    /// spread along 8 random directions (intrinsic dimension 8, like real
    /// embeddings, rather than isotropic noise).
    pub(crate) fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f32 / (1u64 << 53) as f32
        };
        // Centres and directions come from a fixed stream so that queries
        // (other seeds) share the clusters.
        let mut fixed = {
            let mut t = 0x0123_4567_89AB_CDEF_u64;
            move || {
                t ^= t << 13;
                t ^= t >> 7;
                t ^= t << 17;
                (t >> 11) as f32 / (1u64 << 53) as f32
            }
        };
        let centers: Vec<f32> = (0..16 * dim).map(|_| fixed() * 10.0).collect();
        let dirs: Vec<f32> = (0..8 * dim).map(|_| fixed() - 0.5).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centers[(i % 16) * dim..(i % 16 + 1) * dim];
            let z: Vec<f32> = (0..8).map(|_| (next() - 0.5) * 4.0).collect();
            out.extend((0..dim).map(|d| {
                c[d] + (0..8).map(|j| z[j] * dirs[j * dim + d]).sum::<f32>() + (next() - 0.5) * 0.05
            }));
        }
        out
    }

    #[test]
    fn recall_above_095_at_ef_64_on_seeded_clusters() {
        let (n, dim) = (5000, 32);
        let data = clustered(n, dim, 42);
        let ids: Vec<u64> = (0..n as u64).collect();
        let set = VectorSet::from_parts(dim, ids, data, Metric::L2).unwrap();
        let exact = ExactIndex::new(Metric::L2, set.clone());
        let idx = AnnIndex::build(Metric::L2, HnswParams::default(), set, &|_| {}).unwrap();
        let queries = clustered(200, dim, 7);
        let mut total = 0.0;
        for q in queries.chunks_exact(dim) {
            let a = idx.search(q, 10, 64).unwrap();
            let e = exact.search(q, 10, None).unwrap();
            total += recall_at_k(&a, &e, 10);
        }
        let recall = total / 200.0;
        assert!(recall >= 0.95, "recall {recall}");
    }

    #[test]
    fn graph_round_trips_through_bytes() {
        let (n, dim) = (800, 8);
        let set = VectorSet::from_parts(
            dim,
            (0..n as u64).collect(),
            clustered(n, dim, 1),
            Metric::Cosine,
        )
        .unwrap();
        let idx =
            AnnIndex::build(Metric::Cosine, HnswParams::default(), set.clone(), &|_| {}).unwrap();
        let bytes = idx.encode_graph();
        let back = AnnIndex::from_parts(Metric::Cosine, idx.params(), set, &bytes).unwrap();
        assert_eq!(back.graph, idx.graph);
        let q = &clustered(1, dim, 9)[..];
        assert_eq!(
            idx.search(q, 5, 32).unwrap(),
            back.search(q, 5, 32).unwrap()
        );
        // Truncation and garbage are errors, not panics.
        for cut in [0, 7, 20, bytes.len() / 2, bytes.len() - 1] {
            let set = VectorSet::from_parts(
                dim,
                (0..n as u64).collect(),
                clustered(n, dim, 1),
                Metric::Cosine,
            )
            .unwrap();
            assert!(
                AnnIndex::from_parts(Metric::Cosine, idx.params(), set, &bytes[..cut]).is_err()
            );
        }
    }

    #[test]
    fn filter_is_honoured() {
        let (n, dim) = (2000, 16);
        let set = VectorSet::from_parts(
            dim,
            (0..n as u64).collect(),
            clustered(n, dim, 3),
            Metric::L2,
        )
        .unwrap();
        let idx = AnnIndex::build(Metric::L2, HnswParams::default(), set, &|_| {}).unwrap();
        let q = &clustered(1, dim, 5)[..];
        let even = |id: u64| id.is_multiple_of(2);
        let hits = idx.search_filtered(q, 20, 64, Some(&even)).unwrap();
        assert_eq!(hits.len(), 20);
        assert!(hits.iter().all(|h| h.id.is_multiple_of(2)));
        let none = |_: u64| false;
        assert!(idx
            .search_filtered(q, 5, 64, Some(&none))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_queries_are_typed_errors() {
        let set = VectorSet::from_parts(4, vec![1, 2], vec![0.0; 8], Metric::L2).unwrap();
        let idx = AnnIndex::build(Metric::L2, HnswParams::default(), set, &|_| {}).unwrap();
        assert!(matches!(
            idx.search(&[0.0; 3], 1, 10),
            Err(IndexError::WrongDimension { .. })
        ));
        assert!(matches!(
            idx.search(&[0.0; 4], 0, 10),
            Err(IndexError::ZeroK)
        ));
        assert!(matches!(
            idx.search(&[f32::NAN, 0.0, 0.0, 0.0], 1, 10),
            Err(IndexError::NonFinite { .. })
        ));
        // k larger than the index returns everything.
        assert_eq!(idx.search(&[0.0; 4], 10, 10).unwrap().len(), 2);
        let bad = HnswParams {
            m: 1000,
            ..HnswParams::default()
        };
        let set = VectorSet::from_parts(4, vec![1], vec![0.0; 4], Metric::L2).unwrap();
        assert!(AnnIndex::build(Metric::L2, bad, set, &|_| {}).is_err());
    }

    #[test]
    fn empty_and_single_point_indexes_work() {
        let idx = AnnIndex::build(
            Metric::L2,
            HnswParams::default(),
            VectorSet::new(3),
            &|_| {},
        )
        .unwrap();
        assert!(idx.search(&[0.0; 3], 1, 10).unwrap().is_empty());
        let set = VectorSet::from_parts(3, vec![9], vec![1.0, 2.0, 3.0], Metric::L2).unwrap();
        let idx = AnnIndex::build(Metric::L2, HnswParams::default(), set, &|_| {}).unwrap();
        let hit = idx.search(&[1.0, 2.0, 3.0], 1, 10).unwrap();
        assert_eq!(
            hit,
            vec![Neighbor {
                id: 9,
                distance: 0.0
            }]
        );
    }
}
