//! The frozen adjacency of an HNSW graph: flat arrays that the search walks,
//! that both builders fill, and that a segment file stores.

use crate::error::{IndexError, Result};

use super::MAX_LAYERS;

/// The frozen adjacency of an HNSW graph, as flat arrays.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Graph {
    /// Max links per node in upper layers.
    pub(crate) m: u32,
    /// Max links per node in layer 0 (= 2m).
    pub(crate) m0: u32,
    /// Layer of the entry point.
    pub(crate) max_level: u32,
    /// Entry point row (meaningless when empty).
    pub(crate) entry: u32,
    /// Layer 0: for each row, `[count, link_0, .., link_{m0-1}]`.
    pub(crate) links0: Vec<u32>,
    /// Level of each row (0 for most).
    pub(crate) levels: Vec<u8>,
    /// Per row, index into `upper` of its layer-1 block, or `u32::MAX` for level 0.
    pub(crate) upper_start: Vec<u32>,
    /// Upper layers: for a node of level L, L blocks of `[count, links ..m]`.
    pub(crate) upper: Vec<u32>,
}

impl Graph {
    #[inline]
    pub(crate) fn links0(&self, row: u32) -> &[u32] {
        let stride = self.m0 as usize + 1;
        let base = row as usize * stride;
        let count = self.links0[base] as usize;
        &self.links0[base + 1..base + 1 + count]
    }

    #[inline]
    pub(crate) fn links_upper(&self, row: u32, level: u32) -> &[u32] {
        if level == 0 || level > u32::from(self.levels[row as usize]) {
            return &[];
        }
        let stride = self.m as usize + 1;
        let base = self.upper_start[row as usize] as usize + (level as usize - 1) * stride;
        let count = self.upper[base] as usize;
        &self.upper[base + 1..base + 1 + count]
    }

    /// Serialises to little-endian bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
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

    pub(crate) fn decode(bytes: &[u8], rows: usize) -> Result<Graph> {
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
    pub(crate) fn check(&self, rows: usize) -> std::result::Result<(), String> {
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

    pub(crate) fn heap_bytes(&self) -> usize {
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
