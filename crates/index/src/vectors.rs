//! A dense, row-major set of vectors with their item ids.

use std::sync::Arc;

use crate::distance::Metric;
use crate::error::{IndexError, Result};

/// One search hit: an item id and its distance to the query (the metric's
/// real distance: Euclidean for L2, `1 - cos` for cosine).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Neighbor {
    /// The item's id.
    pub id: u64,
    /// Distance to the query; smaller is closer.
    pub distance: f32,
}

/// Decides which item ids a search may return.
///
/// Rejected items are still walked through by the graph search (so that the
/// graph stays connected), they are only kept out of the answer.
///
/// A filter runs inside the search loop: it must be cheap and must not
/// itself search an index on the same thread.
pub trait IdFilter: Sync {
    /// True when `id` may appear in the results.
    fn allows(&self, id: u64) -> bool;
}

impl<F: Fn(u64) -> bool + Sync> IdFilter for F {
    fn allows(&self, id: u64) -> bool {
        self(id)
    }
}

/// Rows of `dim` floats stored contiguously, each with an item id.
///
/// Vectors are stored *prepared* (see [`Metric::prepare`]): finite, and unit
/// length for cosine. The floats are either owned or a read-only memory map
/// of a segment file (a quantized segment's full vectors, paged in by the
/// kernel only where rescoring or exact search reads them).
#[derive(Debug, Clone, Default)]
pub struct VectorSet {
    dim: usize,
    ids: Vec<u64>,
    data: Rows,
}

/// Where a set's floats live.
#[derive(Debug, Clone)]
enum Rows {
    Owned(Vec<f32>),
    Mapped(MappedRows),
}

impl Default for Rows {
    fn default() -> Self {
        Rows::Owned(Vec::new())
    }
}

/// `len` floats at byte `offset` of a shared read-only map.
#[derive(Debug, Clone)]
pub(crate) struct MappedRows {
    map: Arc<memmap2::Mmap>,
    offset: usize,
    len: usize,
}

impl MappedRows {
    /// `len` floats at byte `offset` of `map`; `None` when they do not fit
    /// or are not aligned for f32.
    pub(crate) fn new(map: Arc<memmap2::Mmap>, offset: usize, len: usize) -> Option<Self> {
        let end = len.checked_mul(4)?.checked_add(offset)?;
        let aligned = (map.as_ptr() as usize + offset).is_multiple_of(std::mem::align_of::<f32>());
        (end <= map.len() && aligned).then_some(MappedRows { map, offset, len })
    }

    /// Drops the pages of the map from this process's resident memory (the
    /// kernel reads them again from the file when next touched).
    pub(crate) fn release(&self) {
        // SAFETY: a read-only map of an immutable file: after MADV_DONTNEED
        // the next read sees the same bytes, read again from the file.
        // Only advice: failure leaves the pages resident, nothing else.
        let _ = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
    }

    fn floats(&self) -> &[f32] {
        bytemuck::cast_slice(&self.map[self.offset..self.offset + 4 * self.len])
    }
}

impl VectorSet {
    /// An empty set of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        VectorSet {
            dim,
            ids: Vec::new(),
            data: Rows::Owned(Vec::new()),
        }
    }

    /// An empty set with room for `rows` vectors.
    pub fn with_capacity(dim: usize, rows: usize) -> Self {
        VectorSet {
            dim,
            ids: Vec::with_capacity(rows),
            data: Rows::Owned(Vec::with_capacity(rows * dim)),
        }
    }

    /// Builds a set from ids and row-major data, preparing every vector for
    /// `metric`. Fails on a length mismatch or a bad vector.
    pub fn from_parts(
        dim: usize,
        ids: Vec<u64>,
        mut data: Vec<f32>,
        metric: Metric,
    ) -> Result<Self> {
        if dim == 0 {
            return Err(IndexError::InvalidParameter {
                name: "dim",
                reason: "dimension must be at least 1".into(),
            });
        }
        if !data.len().is_multiple_of(dim) {
            return Err(IndexError::WrongDimension {
                index: data.len() / dim,
                expected: dim,
                got: data.len() % dim,
            });
        }
        if ids.len() != data.len() / dim {
            return Err(IndexError::LengthMismatch {
                ids: ids.len(),
                vectors: data.len() / dim,
            });
        }
        for (i, row) in data.chunks_exact_mut(dim).enumerate() {
            metric.prepare(row, i)?;
        }
        Ok(VectorSet {
            dim,
            ids,
            data: Rows::Owned(data),
        })
    }

    /// Wraps already prepared data without checking it (used when loading
    /// from the store, which only ever holds prepared vectors).
    pub(crate) fn from_prepared(dim: usize, ids: Vec<u64>, data: Vec<f32>) -> Self {
        debug_assert_eq!(ids.len() * dim, data.len());
        VectorSet {
            dim,
            ids,
            data: Rows::Owned(data),
        }
    }

    /// Wraps already prepared, memory-mapped data (a segment file's vectors).
    pub(crate) fn from_mapped(dim: usize, ids: Vec<u64>, data: MappedRows) -> Self {
        debug_assert_eq!(ids.len() * dim, data.len);
        VectorSet {
            dim,
            ids,
            data: Rows::Mapped(data),
        }
    }

    /// The item ids, dropping the vectors.
    pub(crate) fn into_ids(self) -> Vec<u64> {
        self.ids
    }

    /// Drops a mapped set's pages from resident memory (no-op when owned).
    pub(crate) fn release_pages(&self) {
        if let Rows::Mapped(m) = &self.data {
            m.release();
        }
    }

    /// True when the floats are a memory map rather than heap memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.data, Rows::Mapped(_))
    }

    /// The floats as an owned, growable buffer (copying a mapped set once).
    fn owned(&mut self) -> &mut Vec<f32> {
        if let Rows::Mapped(m) = &self.data {
            self.data = Rows::Owned(m.floats().to_vec());
        }
        match &mut self.data {
            Rows::Owned(v) => v,
            Rows::Mapped(_) => unreachable!("converted just above"),
        }
    }

    /// Appends one already prepared vector.
    pub fn push_prepared(&mut self, id: u64, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dim);
        self.ids.push(id);
        self.owned().extend_from_slice(v);
    }

    /// Removes row `row` by moving the last row into its place; returns the id
    /// of the row that moved there, if any.
    pub fn swap_remove(&mut self, row: usize) -> Option<u64> {
        let last = self.ids.len() - 1;
        let dim = self.dim;
        let data = self.owned();
        if row != last {
            let (head, tail) = data.split_at_mut(last * dim);
            head[row * dim..(row + 1) * dim].copy_from_slice(&tail[..dim]);
        }
        data.truncate(last * dim);
        self.ids.swap_remove(row);
        (row != last).then(|| self.ids[row])
    }

    /// Dimension of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when the set holds no vector.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The vector in row `row`.
    #[inline]
    pub fn row(&self, row: usize) -> &[f32] {
        &self.data()[row * self.dim..(row + 1) * self.dim]
    }

    /// The item id of row `row`.
    #[inline]
    pub fn id(&self, row: usize) -> u64 {
        self.ids[row]
    }

    /// All item ids, in row order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// All vector data, row-major.
    #[inline]
    pub fn data(&self) -> &[f32] {
        match &self.data {
            Rows::Owned(v) => v,
            Rows::Mapped(m) => m.floats(),
        }
    }

    /// Bytes of heap memory used by ids and vectors (a mapped set's vectors
    /// are not heap memory: they count 0).
    pub fn heap_bytes(&self) -> usize {
        let data = match &self.data {
            Rows::Owned(v) => v.capacity() * 4,
            Rows::Mapped(_) => 0,
        };
        self.ids.capacity() * 8 + data
    }
}

/// Checks a query's dimension and prepares a copy of it for `metric`.
pub(crate) fn prepare_query(query: &[f32], dim: usize, metric: Metric) -> Result<Vec<f32>> {
    if query.len() != dim {
        return Err(IndexError::WrongDimension {
            index: 0,
            expected: dim,
            got: query.len(),
        });
    }
    let mut q = query.to_vec();
    metric.prepare(&mut q, 0)?;
    Ok(q)
}

/// Checks that `queries` holds whole rows of `dim` and prepares a copy of
/// them for `metric`; errors name the offending query.
pub(crate) fn prepare_queries(queries: &[f32], dim: usize, metric: Metric) -> Result<Vec<f32>> {
    if dim == 0 || !queries.len().is_multiple_of(dim) {
        return Err(IndexError::WrongDimension {
            index: queries.len() / dim.max(1),
            expected: dim,
            got: queries.len() % dim.max(1),
        });
    }
    let mut prepared = queries.to_vec();
    for (i, q) in prepared.chunks_exact_mut(dim).enumerate() {
        metric.prepare(q, i)?;
    }
    Ok(prepared)
}

/// A candidate during search: internal distance and row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub(crate) dist: f32,
    pub(crate) row: u32,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Cand {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.dist
            .total_cmp(&other.dist)
            .then(self.row.cmp(&other.row))
    }
}
