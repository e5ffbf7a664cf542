//! Searching: approximate and exact k-NN over every segment, with deleted
//! items and the caller's filter applied.

use std::collections::HashSet;

use crate::distance::Metric;
use crate::error::{IndexError, Result};
use crate::exact::{search_batch_sets, search_sets, TopK};
use crate::vectors::{prepare_queries, prepare_query, IdFilter, Neighbor, VectorSet};

use super::{Collection, State};

impl State {
    /// Every segment's vectors, sealed then appendable: what exact search scans.
    fn all_sets(&self) -> Vec<&VectorSet> {
        let mut sets: Vec<&VectorSet> = self.segments.iter().map(|s| s.vectors()).collect();
        sets.push(&self.fresh);
        sets
    }

    /// The filter a search needs: tombstones out, then the caller's filter.
    /// None when neither applies (the fast path).
    fn live_filter<'a>(&'a self, user: Option<&'a dyn IdFilter>) -> Option<LiveFilter<'a>> {
        (!self.tombstones.is_empty() || user.is_some()).then_some(LiveFilter {
            tombstones: &self.tombstones,
            user,
        })
    }
}

/// Hides deleted items and applies the caller's filter.
struct LiveFilter<'a> {
    tombstones: &'a HashSet<u64>,
    user: Option<&'a dyn IdFilter>,
}

impl IdFilter for LiveFilter<'_> {
    fn allows(&self, id: u64) -> bool {
        !self.tombstones.contains(&id) && self.user.is_none_or(|f| f.allows(id))
    }
}

impl Collection {
    /// Approximate k-NN: HNSW in every sealed segment, exact scan of the
    /// appendable one, merged. `ef` defaults to the collection's `ef_search`.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        ef: Option<usize>,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let q = prepare_query(query, spec.dim, spec.metric)?;
        let ef = ef.unwrap_or(spec.params.ef_search);
        let live = st.live_filter(filter);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        if st.segments.len() == 1 && st.fresh.is_empty() {
            return Ok(st.segments[0].search_prepared(&q, k, ef, f));
        }
        let mut top = TopK::new(k);
        let to_internal = |d: f32| match spec.metric {
            Metric::L2 => d * d,
            Metric::Cosine => d,
        };
        for seg in &st.segments {
            for h in seg.search_prepared(&q, k, ef, f) {
                top.push(to_internal(h.distance), h.id);
            }
        }
        if !st.fresh.is_empty() {
            for h in search_sets(&[&st.fresh], spec.metric, &q, k, f) {
                top.push(to_internal(h.distance), h.id);
            }
        }
        Ok(top.into_sorted(spec.metric))
    }

    /// Exact k-NN over every live item (ground truth for recall).
    pub fn search_exact(
        &self,
        query: &[f32],
        k: usize,
        filter: Option<&dyn IdFilter>,
    ) -> Result<Vec<Neighbor>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let q = prepare_query(query, spec.dim, spec.metric)?;
        let live = st.live_filter(filter);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        let sets = st.all_sets();
        Ok(search_sets(&sets, spec.metric, &q, k, f))
    }

    /// Exact k-NN for many queries (row-major), in parallel: benchmark
    /// ground truth computed from the stored vectors, without a second copy.
    pub fn search_exact_batch(&self, queries: &[f32], k: usize) -> Result<Vec<Vec<Neighbor>>> {
        if k == 0 {
            return Err(IndexError::ZeroK);
        }
        let st = self.read_state();
        let spec = &st.manifest.spec;
        let prepared = prepare_queries(queries, spec.dim, spec.metric)?;
        let live = st.live_filter(None);
        let f = live.as_ref().map(|l| l as &dyn IdFilter);
        let sets = st.all_sets();
        Ok(search_batch_sets(&sets, spec.metric, &prepared, k, f))
    }
}
