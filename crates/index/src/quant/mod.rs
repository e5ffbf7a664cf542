//! Quantized copies of a segment's vectors: what the graph is searched on
//! when `[index] quantization` is `sq8` or `binary`.
//!
//! # The two codes
//!
//! - **sq8**: every dimension is mapped linearly from the segment's own
//!   `[min, max]` of that dimension onto `0..=255` (one byte per dimension,
//!   a quarter of f32). Distances are *asymmetric*: the query stays f32 and
//!   is compared with the decoded code, `min + scale * code`, without ever
//!   materialising it (see [`QueryCode`]).
//! - **binary**: one bit per dimension, set when the component is above the
//!   segment's mean of that dimension (1/32 of f32). The query is coded the
//!   same way and ranked by Hamming distance. Meant for high-dimensional
//!   embeddings, where many bits still tell neighbours apart.
//!
//! A code only *ranks candidates* during the graph walk; the `ef` best are
//! then rescored with the full-precision vectors, read from the segment file
//! through a memory map (`segfile`), so that the full vectors need not be
//! resident. Codes are derived from the full vectors when a segment is built
//! or opened, never stored: the segment file format is the same for every
//! quantization, and a collection's quantization is recorded in its manifest
//! (as part of [`HnswParams`](crate::HnswParams)).

mod kernels;

use serde::{Deserialize, Serialize};

use crate::distance::Metric;
use crate::error::{IndexError, Result};

pub use kernels::kernel_name;

/// How the graph of a segment is searched (`[index] quantization`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    /// Full f32 vectors in memory (the default).
    #[default]
    None,
    /// 8-bit scalar quantization per dimension, rescored with f32.
    Sq8,
    /// 1 bit per dimension (Hamming distance), rescored with f32.
    Binary,
}

impl Quantization {
    /// The configuration spelling: `none`, `sq8` or `binary`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
            Quantization::Binary => "binary",
        }
    }

    /// Parses the configuration spelling; the error names every choice.
    pub fn parse(s: &str) -> Result<Quantization> {
        match s {
            "none" => Ok(Quantization::None),
            "sq8" => Ok(Quantization::Sq8),
            "binary" => Ok(Quantization::Binary),
            other => Err(IndexError::InvalidParameter {
                name: "quantization",
                reason: format!("must be \"none\", \"sq8\" or \"binary\", not {other:?}"),
            }),
        }
    }

    /// Bytes of code per vector of `dim` dimensions (0 for `none`).
    pub fn code_bytes(self, dim: usize) -> usize {
        match self {
            Quantization::None => 0,
            Quantization::Sq8 => dim,
            Quantization::Binary => dim.div_ceil(64) * 8,
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The per-segment parameters of a code.
#[derive(Debug, Clone)]
enum Coder {
    /// Per dimension: the minimum and the step between two codes.
    Sq8 { min: Vec<f32>, scale: Vec<f32> },
    /// Per dimension: the threshold above which the bit is set.
    Binary { mean: Vec<f32> },
}

/// The codes of every row of one segment, and how they were made.
#[derive(Debug, Clone)]
pub(crate) struct Codes {
    dim: usize,
    metric: Metric,
    coder: Coder,
    /// Row-major: `dim` bytes per row (sq8).
    bytes: Vec<u8>,
    /// Row-major: `dim / 64` rounded up words per row (binary).
    words: Vec<u64>,
}

/// A query, prepared once for the code of one segment.
pub(crate) enum QueryCode {
    /// sq8, L2: `q - min` per dimension and the coder's step; distance
    /// `Σ (a - scale·c)²`.
    Sq8L2 { a: Vec<f32>, scale: Vec<f32> },
    /// sq8, cosine: `q · scale` per dimension and `Σ q·min`; distance
    /// `1 - (offset + Σ w·c)`.
    Sq8Dot { w: Vec<f32>, offset: f32 },
    /// binary: the query's own bits.
    Binary { bits: Vec<u64> },
}

impl Codes {
    /// Codes the rows of `data` (row-major, `dim` wide, already prepared
    /// for `metric`) with `kind`, fitting the coder on these rows. `None`
    /// for [`Quantization::None`]. `data` is read in two passes (fit, then
    /// code) and never copied, so that a memory-mapped segment stays unpinned.
    pub(crate) fn encode(
        kind: Quantization,
        metric: Metric,
        dim: usize,
        data: &[f32],
    ) -> Option<Codes> {
        let rows = || data.chunks_exact(dim.max(1));
        let coder = match kind {
            Quantization::None => return None,
            Quantization::Sq8 => {
                let mut min = vec![f32::INFINITY; dim];
                let mut max = vec![f32::NEG_INFINITY; dim];
                for r in rows() {
                    for ((lo, hi), &x) in min.iter_mut().zip(&mut max).zip(r) {
                        *lo = lo.min(x);
                        *hi = hi.max(x);
                    }
                }
                let scale = min
                    .iter_mut()
                    .zip(&max)
                    .map(|(lo, &hi)| {
                        if !lo.is_finite() {
                            // No rows: any coder will do.
                            *lo = 0.0;
                            return 0.0;
                        }
                        (hi - *lo) / 255.0
                    })
                    .collect();
                Coder::Sq8 { min, scale }
            }
            Quantization::Binary => {
                let mut sum = vec![0f64; dim];
                let mut n = 0u64;
                for r in rows() {
                    n += 1;
                    for (s, &x) in sum.iter_mut().zip(r) {
                        *s += x as f64;
                    }
                }
                let mean = sum.iter().map(|s| (s / n.max(1) as f64) as f32).collect();
                Coder::Binary { mean }
            }
        };
        // Sized exactly up front: growing by doubling would leave the
        // allocator holding up to twice the codes' memory.
        let n = data.len() / dim.max(1);
        let (bytes, words) = match kind {
            Quantization::Sq8 => (n * dim, 0),
            _ => (0, n * dim.div_ceil(64)),
        };
        let mut codes = Codes {
            dim,
            metric,
            coder,
            bytes: Vec::with_capacity(bytes),
            words: Vec::with_capacity(words),
        };
        for r in rows() {
            codes.push(r);
        }
        Some(codes)
    }

    /// Appends the code of one row.
    fn push(&mut self, r: &[f32]) {
        match &self.coder {
            Coder::Sq8 { min, scale } => {
                self.bytes
                    .extend(r.iter().zip(min).zip(scale).map(|((&x, &lo), &s)| {
                        if s > 0.0 {
                            ((x - lo) / s).round().clamp(0.0, 255.0) as u8
                        } else {
                            0
                        }
                    }));
            }
            Coder::Binary { mean } => {
                let start = self.words.len();
                self.words.resize(start + r.len().div_ceil(64), 0);
                binarize_into(r, mean, &mut self.words[start..]);
            }
        }
    }

    /// The quantization these codes are.
    pub(crate) fn kind(&self) -> Quantization {
        match self.coder {
            Coder::Sq8 { .. } => Quantization::Sq8,
            Coder::Binary { .. } => Quantization::Binary,
        }
    }

    /// Prepares a query (already prepared for the metric) for this code.
    pub(crate) fn prepare(&self, q: &[f32]) -> QueryCode {
        match (&self.coder, self.metric) {
            (Coder::Sq8 { min, scale }, Metric::L2) => QueryCode::Sq8L2 {
                a: q.iter().zip(min).map(|(x, lo)| x - lo).collect(),
                scale: scale.clone(),
            },
            (Coder::Sq8 { min, scale }, Metric::Cosine) => QueryCode::Sq8Dot {
                w: q.iter().zip(scale).map(|(x, s)| x * s).collect(),
                offset: q.iter().zip(min).map(|(x, lo)| x * lo).sum(),
            },
            (Coder::Binary { mean }, _) => {
                let mut bits = vec![0u64; q.len().div_ceil(64)];
                binarize_into(q, mean, &mut bits);
                QueryCode::Binary { bits }
            }
        }
    }

    /// The coded distance of `row` to a prepared query: the metric's ranking
    /// distance for sq8 (approximately), the Hamming distance for binary.
    #[inline]
    pub(crate) fn distance(&self, q: &QueryCode, row: u32) -> f32 {
        let k = kernels::kernels();
        match q {
            QueryCode::Sq8L2 { a, scale } => (k.sq8_l2)(a, scale, self.sq8_row(row)),
            QueryCode::Sq8Dot { w, offset } => 1.0 - (offset + (k.sq8_dot)(w, self.sq8_row(row))),
            QueryCode::Binary { bits } => (k.hamming)(bits, self.binary_row(row)) as f32,
        }
    }

    /// Hints the CPU to fetch the code of `row`.
    #[inline(always)]
    pub(crate) fn prefetch(&self, row: u32) {
        let p = match self.coder {
            Coder::Sq8 { .. } => self.sq8_row(row).as_ptr(),
            Coder::Binary { .. } => self.binary_row(row).as_ptr() as *const u8,
        };
        crate::distance::prefetch_bytes(p);
    }

    #[inline(always)]
    fn sq8_row(&self, row: u32) -> &[u8] {
        let d = self.dim;
        &self.bytes[row as usize * d..(row as usize + 1) * d]
    }

    #[inline(always)]
    fn binary_row(&self, row: u32) -> &[u64] {
        let w = self.dim.div_ceil(64);
        &self.words[row as usize * w..(row as usize + 1) * w]
    }

    /// Heap bytes of the codes and the coder.
    pub(crate) fn heap_bytes(&self) -> usize {
        let coder = match &self.coder {
            Coder::Sq8 { min, scale } => (min.capacity() + scale.capacity()) * 4,
            Coder::Binary { mean } => mean.capacity() * 4,
        };
        self.bytes.capacity() + self.words.capacity() * 8 + coder
    }
}

/// One bit per dimension into zeroed `words`: set when the component is
/// above the threshold.
fn binarize_into(v: &[f32], threshold: &[f32], words: &mut [u64]) {
    for (d, (&x, &t)) in v.iter().zip(threshold).enumerate() {
        if x > t {
            words[d / 64] |= 1 << (d % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn spellings_round_trip_and_bad_ones_name_the_choices() {
        for q in [Quantization::None, Quantization::Sq8, Quantization::Binary] {
            assert_eq!(Quantization::parse(q.as_str()).unwrap(), q);
            let json = serde_json::to_string(&q).unwrap();
            assert_eq!(json, format!("\"{q}\""));
        }
        let e = Quantization::parse("pq").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid parameter quantization: must be \"none\", \"sq8\" or \"binary\", not \"pq\""
        );
        assert_eq!(Quantization::Sq8.code_bytes(784), 784);
        assert_eq!(Quantization::Binary.code_bytes(512), 64);
        assert_eq!(Quantization::Binary.code_bytes(65), 16);
    }

    #[test]
    fn sq8_distances_track_the_exact_ones() {
        let mut s = 3u64;
        for dim in [1, 7, 16, 33, 100, 784] {
            let data: Vec<f32> = (0..50 * dim).map(|_| lcg(&mut s) * 4.0).collect();
            let codes =
                Codes::encode(Quantization::Sq8, Metric::L2, dim, &data).expect("sq8 codes");
            let q: Vec<f32> = (0..dim).map(|_| lcg(&mut s) * 4.0).collect();
            let qc = codes.prepare(&q);
            for (row, v) in data.chunks_exact(dim).enumerate() {
                let exact = crate::distance::l2_sq(&q, v);
                let coded = codes.distance(&qc, row as u32);
                // Each component is off by at most half a step (4/255/2).
                let tol = 1e-3 + exact.sqrt() * 2.0 * (dim as f32).sqrt() * (4.0 / 510.0) + 1e-2;
                assert!(
                    (exact - coded).abs() <= tol,
                    "dim {dim} row {row}: {exact} vs {coded}"
                );
            }
        }
    }

    #[test]
    fn sq8_cosine_and_constant_dimensions() {
        let dim = 40;
        let mut s = 9u64;
        let mut data: Vec<f32> = (0..30 * dim).map(|_| lcg(&mut s)).collect();
        // Dimension 0 constant everywhere: scale 0, decoded exactly.
        for r in data.chunks_exact_mut(dim) {
            r[0] = 0.25;
            Metric::Cosine.prepare(r, 0).unwrap();
        }
        let codes = Codes::encode(Quantization::Sq8, Metric::Cosine, dim, &data).expect("codes");
        let mut q: Vec<f32> = (0..dim).map(|_| lcg(&mut s)).collect();
        Metric::Cosine.prepare(&mut q, 0).unwrap();
        let qc = codes.prepare(&q);
        for (row, v) in data.chunks_exact(dim).enumerate() {
            let exact = 1.0 - crate::distance::dot(&q, v);
            let coded = codes.distance(&qc, row as u32);
            assert!(
                (exact - coded).abs() < 0.02,
                "row {row}: {exact} vs {coded}"
            );
        }
    }

    #[test]
    fn binary_codes_are_hamming_distances_around_the_mean() {
        let dim = 70;
        let mut s = 5u64;
        let data: Vec<f32> = (0..20 * dim).map(|_| lcg(&mut s)).collect();
        let codes = Codes::encode(Quantization::Binary, Metric::L2, dim, &data).expect("codes");
        assert_eq!(codes.words.len(), 20 * 2);
        let q = data[..dim].to_vec();
        let qc = codes.prepare(&q);
        assert_eq!(
            codes.distance(&qc, 0),
            0.0,
            "a row is at Hamming 0 from itself"
        );
        let Coder::Binary { mean } = &codes.coder else {
            panic!("binary coder")
        };
        for (row, v) in data.chunks_exact(dim).enumerate() {
            let differ = v
                .iter()
                .zip(&q)
                .zip(mean)
                .filter(|((a, b), m)| (*a > *m) != (*b > *m))
                .count();
            assert_eq!(codes.distance(&qc, row as u32), differ as f32);
        }
    }

    #[test]
    fn no_codes_for_none_and_empty_segments_code_nothing() {
        assert!(Codes::encode(Quantization::None, Metric::L2, 4, &[]).is_none());
        let c = Codes::encode(Quantization::Sq8, Metric::L2, 4, &[]).unwrap();
        assert_eq!(c.heap_bytes(), 32);
        assert_eq!(c.kind(), Quantization::Sq8);
    }
}
