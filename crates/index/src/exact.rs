//! Exact (brute-force) k-nearest-neighbour search: the ground truth for
//! recall, and the fallback for collections too small to need a graph.
//!
//! One query is scanned in parallel over blocks of rows with rayon, each block
//! keeping a bounded heap. A batch of queries (ground truth for a benchmark)
//! is processed in small query blocks, so that every vector row is read from
//! memory once per block instead of once per query: the scan becomes
//! compute-bound instead of memory-bound.

use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::distance::{DistFn, Metric};
use crate::error::{IndexError, Result};
use crate::vectors::{prepare_queries, prepare_query, IdFilter, Neighbor, VectorSet};

/// Rows per parallel task when scanning for one query.
const ROWS_PER_TASK: usize = 4096;
/// Queries scanned together in batch mode.
const QUERY_BLOCK: usize = 8;

/// A (distance, id) pair ordered by distance then id.
#[derive(Debug, Clone, Copy)]
struct Hit {
    dist: f32,
    id: u64,
}
impl PartialEq for Hit {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == std::cmp::Ordering::Equal
    }
}
impl Eq for Hit {}
impl PartialOrd for Hit {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Hit {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.dist.total_cmp(&o.dist).then(self.id.cmp(&o.id))
    }
}

/// The `k` smallest (distance, id) pairs seen so far.
#[derive(Debug, Clone)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Hit>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            // Grown as needed: k comes from callers and may be huge.
            heap: BinaryHeap::with_capacity(k.min(1024) + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, dist: f32, id: u64) {
        if self.heap.len() < self.k {
            self.heap.push(Hit { dist, id });
        } else if let Some(top) = self.heap.peek() {
            let h = Hit { dist, id };
            if h < *top {
                self.heap.pop();
                self.heap.push(h);
            }
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for h in other.heap {
            self.push(h.dist, h.id);
        }
        self
    }

    /// Sorted ascending, internal distances converted for users.
    pub(crate) fn into_sorted(self, metric: Metric) -> Vec<Neighbor> {
        let mut v = self.heap.into_vec();
        v.sort_unstable();
        v.into_iter()
            .map(|h| Neighbor {
                id: h.id,
                distance: metric.to_user(h.dist),
            })
            .collect()
    }
}

/// Scans `rows` of `set` for the prepared query `q`.
fn scan(
    set: &VectorSet,
    rows: std::ops::Range<usize>,
    q: &[f32],
    kernel: DistFn,
    k: usize,
    filter: Option<&dyn IdFilter>,
) -> TopK {
    let mut top = TopK::new(k);
    for r in rows {
        let id = set.id(r);
        if filter.is_some_and(|f| !f.allows(id)) {
            continue;
        }
        top.push(kernel(q, set.row(r)), id);
    }
    top
}

/// Exact k-NN over several vector sets at once (the segments of a
/// collection), in parallel. `q` must already be prepared for `metric`.
pub(crate) fn search_sets(
    sets: &[&VectorSet],
    metric: Metric,
    q: &[f32],
    k: usize,
    filter: Option<&dyn IdFilter>,
) -> Vec<Neighbor> {
    let kernel = metric.kernel();
    let tasks: Vec<(usize, std::ops::Range<usize>)> = sets
        .iter()
        .enumerate()
        .flat_map(|(s, set)| {
            (0..set.len())
                .step_by(ROWS_PER_TASK)
                .map(move |start| (s, start..(start + ROWS_PER_TASK).min(set.len())))
        })
        .collect();
    let top = if tasks.len() <= 1 {
        tasks
            .into_iter()
            .map(|(s, r)| scan(sets[s], r, q, kernel, k, filter))
            .fold(TopK::new(k), TopK::merge)
    } else {
        tasks
            .into_par_iter()
            .map(|(s, r)| scan(sets[s], r, q, kernel, k, filter))
            .reduce(|| TopK::new(k), TopK::merge)
    };
    top.into_sorted(metric)
}

/// Brute-force index over a [`VectorSet`].
#[derive(Debug, Clone)]
pub struct ExactIndex {
    metric: Metric,
    vectors: VectorSet,
}

impl ExactIndex {
    /// Wraps prepared vectors (see [`VectorSet::from_parts`]).
    pub fn new(metric: Metric, vectors: VectorSet) -> Self {
        ExactIndex { metric, vectors }
    }

    /// The vectors.
    pub fn vectors(&self) -> &VectorSet {
        &self.vectors
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The exact `k` nearest neighbours of `query` that pass `filter`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let q = prepare_query(query, self.vectors.dim(), self.metric)?;
        Ok(search_sets(&[&self.vectors], self.metric, &q, k, filter))
    }

    /// Exact k-NN for many queries (row-major in `queries`), in parallel.
    /// Used to compute benchmark ground truth.
    pub fn search_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let prepared = prepare_queries(queries, self.vectors.dim(), self.metric)?;
        Ok(search_batch_sets(
            &[&self.vectors],
            self.metric,
            &prepared,
            k,
            None,
        ))
    }
}

/// Exact k-NN for many prepared queries over several sets, in parallel over
/// blocks of queries (each vector row is read once per block).
pub(crate) fn search_batch_sets(
    sets: &[&VectorSet],
    metric: Metric,
    prepared: &[f32],
    k: usize,
    filter: Option<&dyn IdFilter>,
) -> Vec<Vec<Neighbor>> {
    let Some(dim) = sets.first().map(|s| s.dim()) else {
        return Vec::new();
    };
    let kernel = metric.kernel();
    prepared
        .par_chunks(dim * QUERY_BLOCK)
        .flat_map_iter(|block| {
            let qs: Vec<&[f32]> = block.chunks_exact(dim).collect();
            let mut tops: Vec<TopK> = qs.iter().map(|_| TopK::new(k)).collect();
            for set in sets {
                for r in 0..set.len() {
                    let id = set.id(r);
                    if filter.is_some_and(|f| !f.allows(id)) {
                        continue;
                    }
                    let row = set.row(r);
                    for (q, top) in qs.iter().zip(tops.iter_mut()) {
                        top.push(kernel(q, row), id);
                    }
                }
            }
            tops.into_iter().map(move |t| t.into_sorted(metric))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matches_naive_sort_and_batch_matches_single() {
        let dim = 5;
        let n = 9000; // more than one parallel task
        let data: Vec<f32> = (0..n * dim)
            .map(|i| ((i * 7919) % 1013) as f32 / 17.0)
            .collect();
        let set =
            VectorSet::from_parts(dim, (0..n as u64).collect(), data.clone(), Metric::L2).unwrap();
        let idx = ExactIndex::new(Metric::L2, set);
        let queries: Vec<f32> = (0..3 * dim).map(|i| (i % 11) as f32).collect();
        let batch = idx.search_batch(&queries, 7).unwrap();
        for (qi, q) in queries.chunks_exact(dim).enumerate() {
            let got = idx.search(q, 7, None).unwrap();
            let mut naive: Vec<(f32, u64)> = data
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, v)| {
                    (
                        v.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>(),
                        i as u64,
                    )
                })
                .collect();
            naive.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let want: Vec<u64> = naive[..7].iter().map(|x| x.1).collect();
            let got_ids: Vec<u64> = got.iter().map(|h| h.id).collect();
            assert_eq!(got_ids, want);
            assert_eq!(batch[qi], got);
        }
    }

    #[test]
    fn k_larger_than_collection_and_filters() {
        let set = VectorSet::from_parts(
            2,
            vec![10, 11, 12],
            vec![0., 0., 1., 1., 2., 2.],
            Metric::L2,
        )
        .unwrap();
        let idx = ExactIndex::new(Metric::L2, set);
        assert_eq!(idx.search(&[0., 0.], 100, None).unwrap().len(), 3);
        let odd = |id: u64| id % 2 == 1;
        let hits = idx.search(&[0., 0.], 100, Some(&odd)).unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), vec![11]);
        assert!((hits[0].distance - 2f32.sqrt()).abs() < 1e-6);
        assert!(matches!(
            idx.search(&[0., 0.], 0, None),
            Err(IndexError::ZeroK)
        ));
        assert!(matches!(
            idx.search(&[0.], 1, None),
            Err(IndexError::WrongDimension { .. })
        ));
        let empty = ExactIndex::new(Metric::L2, VectorSet::new(2));
        assert!(empty.search(&[0., 0.], 3, None).unwrap().is_empty());
    }
}
