//! Building with hnsw_rs: row numbers are inserted (not vector copies), then
//! the adjacency is copied out into the frozen [`Graph`].

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;

use crate::distance::DistFn;
use crate::vectors::VectorSet;

use super::graph::Graph;
use super::{HnswParams, BUILD_CHUNK, MAX_LAYERS};

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

pub(crate) fn build(
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
