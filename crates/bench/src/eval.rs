//! Retrieval quality with class labels: precision@10 and mAP@100 of exact
//! k-nearest-neighbour search, for any embedding (raw pixels, PCA, an
//! autoencoder's bottleneck, a backbone, a colour histogram...). A
//! neighbour is relevant when it has the query's label.
//!
//! - precision@k: the fraction of the k nearest with the query's label,
//!   averaged over queries (of the `min(k, candidates)` nearest when fewer
//!   than k images can be returned).
//! - AP@k: `Σᵢ P@i · relᵢ / (relevant among the top k)` over `i ≤ k` (0 when
//!   none is relevant), the mAP@k of the deep-hashing literature; mAP@k is
//!   its mean over queries.
//! - chance: the expected precision of images drawn at random from the
//!   candidates, the level an embedding that knows nothing reaches.
//!
//! Two protocols: [`retrieval_quality`], queries against a separate base
//! set (Fashion-MNIST's test set against its training set), and
//! [`leave_one_out`], every image of one labelled set a query against all
//! the others (itself excluded), overall and per label.
//!
//! Also [`Pca`], the linear baseline an embedding has to beat.

use imgsim_index::{ExactIndex, Metric, VectorSet};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{BenchError, Result};

/// Quality figures of one embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The embedding's name (`raw`, `pca:64`, `autoencoder:PATH`).
    pub embedder: String,
    /// Vector size.
    pub dim: usize,
    /// Distance used for the search.
    pub metric: String,
    /// Base (database) size.
    pub base: usize,
    /// Queries.
    pub queries: usize,
    /// Mean precision@10.
    pub precision_at_10: f64,
    /// Mean average precision over the top 100.
    pub map_at_100: f64,
    /// precision@10 of a random ranking: the mean over queries of the share
    /// of the base with the query's label.
    #[serde(default)]
    pub chance_precision_at_10: f64,
    /// Seconds to embed base and queries.
    pub embed_seconds: f64,
    /// Seconds of exact search.
    pub search_seconds: f64,
}

/// precision@10 and mAP@100 of exact search of `queries` in `base`
/// (row-major, `dim` columns), with labels.
pub fn retrieval_quality(
    base: Vec<f32>,
    base_labels: &[u8],
    queries: &[f32],
    query_labels: &[u8],
    dim: usize,
    metric: Metric,
) -> Result<(f64, f64)> {
    let n = base.len() / dim.max(1);
    if n != base_labels.len() || queries.len() / dim.max(1) != query_labels.len() || n < 100 {
        return Err(BenchError::Invalid(format!(
            "evaluation needs labelled sets of at least 100 base vectors: {} base vectors with {} labels, {} queries with {} labels",
            n,
            base_labels.len(),
            queries.len() / dim.max(1),
            query_labels.len()
        )));
    }
    let set = VectorSet::from_parts(dim, (0..n as u64).collect(), base, metric)?;
    let index = ExactIndex::new(metric, set);
    let hits = index.search_batch(queries, 100)?;
    let per_query: Vec<(f64, f64)> = hits
        .par_iter()
        .zip(query_labels.par_iter())
        .map(|(nn, &label)| {
            let rel: Vec<bool> = nn
                .iter()
                .map(|h| base_labels[h.id as usize] == label)
                .collect();
            precision_and_ap(&rel)
        })
        .collect();
    let q = per_query.len() as f64;
    Ok((
        per_query.iter().map(|p| p.0).sum::<f64>() / q,
        per_query.iter().map(|p| p.1).sum::<f64>() / q,
    ))
}

/// Neighbours precision is measured on.
pub const PRECISION_K: usize = 10;
/// Neighbours average precision is measured on.
pub const MAP_K: usize = 100;

/// precision@[`PRECISION_K`] and AP@[`MAP_K`] of one query, from the
/// relevance of its nearest neighbours in order (at most [`MAP_K`] of
/// them). Precision divides by [`PRECISION_K`], or by the number of
/// neighbours when fewer were returned.
fn precision_and_ap(rel: &[bool]) -> (f64, f64) {
    let rel = &rel[..rel.len().min(MAP_K)];
    let top = rel.len().min(PRECISION_K);
    let p = if top == 0 {
        0.0
    } else {
        rel[..top].iter().filter(|r| **r).count() as f64 / top as f64
    };
    let mut found = 0usize;
    let mut sum = 0.0;
    for (i, r) in rel.iter().enumerate() {
        if *r {
            found += 1;
            sum += found as f64 / (i + 1) as f64;
        }
    }
    let ap = if found > 0 { sum / found as f64 } else { 0.0 };
    (p, ap)
}

/// The chance level of [`retrieval_quality`]: the mean over queries of the
/// share of `base_labels` equal to the query's label (0.1 for ten balanced
/// classes).
pub fn chance_precision(base_labels: &[u8], query_labels: &[u8]) -> f64 {
    if base_labels.is_empty() || query_labels.is_empty() {
        return 0.0;
    }
    let mut counts = [0usize; 256];
    for &l in base_labels {
        counts[usize::from(l)] += 1;
    }
    let sum: usize = query_labels.iter().map(|&l| counts[usize::from(l)]).sum();
    sum as f64 / (base_labels.len() as f64 * query_labels.len() as f64)
}

/// The figures of one label in [`leave_one_out`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelQuality {
    /// The label's name.
    pub label: String,
    /// Its images (each one a query).
    pub images: usize,
    /// Mean precision@10 of its queries.
    pub precision_at_10: f64,
    /// Mean AP@100 of its queries.
    pub map_at_100: f64,
    /// Chance precision of its queries: `(images − 1) / (N − 1)`, the share
    /// of the other images that carry the label.
    pub chance: f64,
}

/// Leave-one-out retrieval quality of a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaveOneOut {
    /// Images (N), each a query against the N − 1 others.
    pub images: usize,
    /// Labels.
    pub labels: usize,
    /// Mean precision@10 over all queries.
    pub precision_at_10: f64,
    /// Mean AP@100 over all queries.
    pub map_at_100: f64,
    /// Chance precision: the mean over queries of their label's chance.
    pub chance_precision_at_10: f64,
    /// The same per label, in label order.
    pub per_label: Vec<LabelQuality>,
}

/// Leave-one-out quality of `vectors` (row-major, `dim` columns) labelled
/// `labels` (indices into `names`): each row is a query against all the
/// other rows by exact search under `metric` (itself excluded, whatever
/// the ties), scored by precision@10 and AP@100, averaged over all queries
/// and per label, with the chance level beside them.
///
/// Every label must have at least 2 rows (a query needs a relevant
/// neighbour) and there must be at least 2 labels with rows.
pub fn leave_one_out(
    vectors: &[f32],
    dim: usize,
    labels: &[usize],
    names: &[String],
    metric: Metric,
) -> Result<LeaveOneOut> {
    if dim == 0 || !vectors.len().is_multiple_of(dim) || vectors.len() / dim != labels.len() {
        return Err(BenchError::Invalid(format!(
            "leave-one-out needs one label per {dim}-d vector: {} values, {} labels",
            vectors.len(),
            labels.len()
        )));
    }
    if let Some(&l) = labels.iter().find(|&&l| l >= names.len()) {
        return Err(BenchError::Invalid(format!(
            "label index {l} but only {} label names",
            names.len()
        )));
    }
    let n = labels.len();
    let mut counts = vec![0usize; names.len()];
    for &l in labels {
        counts[l] += 1;
    }
    if let Some((l, c)) = counts.iter().enumerate().find(|(_, &c)| c == 1) {
        return Err(BenchError::Invalid(format!(
            "label `{}` has {c} image; leave-one-out needs at least 2 per label",
            names[l]
        )));
    }
    if counts.iter().filter(|&&c| c > 0).count() < 2 {
        return Err(BenchError::Invalid(format!(
            "leave-one-out needs at least 2 labels with images, not {}",
            counts.iter().filter(|&&c| c > 0).count()
        )));
    }
    let set = VectorSet::from_parts(dim, (0..n as u64).collect(), vectors.to_vec(), metric)?;
    let index = ExactIndex::new(metric, set);
    // One more than needed: the query itself is among the nearest.
    let hits = index.search_batch(vectors, (MAP_K + 1).min(n))?;
    let per_query: Vec<(f64, f64)> = hits
        .par_iter()
        .enumerate()
        .map(|(q, nn)| {
            let rel: Vec<bool> = nn
                .iter()
                .filter(|h| h.id as usize != q)
                .take(MAP_K)
                .map(|h| labels[h.id as usize] == labels[q])
                .collect();
            precision_and_ap(&rel)
        })
        .collect();
    let chance_of = |l: usize| (counts[l] - 1) as f64 / (n - 1) as f64;
    let mut sums = vec![(0f64, 0f64); names.len()];
    for (&l, &(p, ap)) in labels.iter().zip(&per_query) {
        sums[l].0 += p;
        sums[l].1 += ap;
    }
    let per_label = names
        .iter()
        .enumerate()
        .filter(|(l, _)| counts[*l] > 0)
        .map(|(l, name)| LabelQuality {
            label: name.clone(),
            images: counts[l],
            precision_at_10: sums[l].0 / counts[l] as f64,
            map_at_100: sums[l].1 / counts[l] as f64,
            chance: chance_of(l),
        })
        .collect();
    let nf = n as f64;
    Ok(LeaveOneOut {
        images: n,
        labels: counts.iter().filter(|&&c| c > 0).count(),
        precision_at_10: per_query.iter().map(|p| p.0).sum::<f64>() / nf,
        map_at_100: per_query.iter().map(|p| p.1).sum::<f64>() / nf,
        chance_precision_at_10: labels.iter().map(|&l| chance_of(l)).sum::<f64>() / nf,
        per_label,
    })
}

/// Principal component analysis: the mean and the top components of a
/// data set, found by subspace iteration on the covariance matrix (with a
/// Jacobi eigen-solve of the small projected matrix).
#[derive(Debug, Clone)]
pub struct Pca {
    dim_in: usize,
    mean: Vec<f32>,
    /// `k` rows of `dim_in`: the components, by decreasing variance.
    components: Vec<f64>,
    k: usize,
    /// Variance along each component.
    pub variances: Vec<f64>,
}

impl Pca {
    /// Fits `k` components to `data` (row-major, `dim` columns).
    pub fn fit(data: &[f32], dim: usize, k: usize) -> Result<Pca> {
        let n = data.len() / dim.max(1);
        if k == 0 || k > dim || n < 2 {
            return Err(BenchError::Invalid(format!(
                "PCA to {k} components of {dim}-d data ({n} rows) is not possible"
            )));
        }
        let mut mean = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += f64::from(*v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        // Covariance, accumulated in parallel over blocks of rows.
        let cov = data
            .par_chunks(dim * 512)
            .map(|block| {
                let mut c = vec![0f64; dim * dim];
                let mut centred = vec![0f64; dim];
                for row in block.chunks_exact(dim) {
                    for (j, v) in row.iter().enumerate() {
                        centred[j] = f64::from(*v) - mean[j];
                    }
                    for i in 0..dim {
                        let ci = centred[i];
                        if ci == 0.0 {
                            continue;
                        }
                        let out = &mut c[i * dim..(i + 1) * dim];
                        for (o, cj) in out[i..].iter_mut().zip(&centred[i..]) {
                            *o += ci * cj;
                        }
                    }
                }
                c
            })
            .reduce(
                || vec![0f64; dim * dim],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                },
            );
        let mut cov = cov;
        for i in 0..dim {
            for j in 0..i {
                cov[i * dim + j] = cov[j * dim + i];
            }
        }
        cov.iter_mut().for_each(|c| *c /= (n - 1) as f64);
        // Subspace iteration with an oversampled block.
        let p = (k + 10).min(dim);
        let mut q: Vec<f64> = (0..p * dim)
            .map(|i| {
                let x = hash_unit(i as u64);
                x - 0.5
            })
            .collect();
        orthonormalise(&mut q, p, dim);
        for _ in 0..60 {
            let cov = &cov;
            let z: Vec<f64> = q
                .par_chunks(dim)
                .flat_map_iter(|v| {
                    (0..dim).map(move |i| {
                        let row = &cov[i * dim..(i + 1) * dim];
                        row.iter().zip(v).map(|(a, b)| a * b).sum::<f64>()
                    })
                })
                .collect();
            q = z;
            orthonormalise(&mut q, p, dim);
        }
        // Rayleigh–Ritz: T = Qᵀ C Q (p × p), eigen-decomposed by Jacobi.
        let cq: Vec<Vec<f64>> = q
            .chunks(dim)
            .map(|v| {
                (0..dim)
                    .map(|i| {
                        cov[i * dim..(i + 1) * dim]
                            .iter()
                            .zip(v)
                            .map(|(a, b)| a * b)
                            .sum()
                    })
                    .collect()
            })
            .collect();
        let mut t = vec![0f64; p * p];
        for a in 0..p {
            for b in 0..p {
                t[a * p + b] = q[a * dim..(a + 1) * dim]
                    .iter()
                    .zip(&cq[b])
                    .map(|(x, y)| x * y)
                    .sum();
            }
        }
        let (evals, evecs) = jacobi_eigen(&mut t, p);
        let mut order: Vec<usize> = (0..p).collect();
        order.sort_by(|&a, &b| evals[b].total_cmp(&evals[a]));
        let mut components = vec![0f64; k * dim];
        let mut variances = Vec::with_capacity(k);
        for (r, &e) in order.iter().take(k).enumerate() {
            variances.push(evals[e]);
            for a in 0..p {
                let w = evecs[a * p + e];
                for (c, qv) in components[r * dim..(r + 1) * dim]
                    .iter_mut()
                    .zip(&q[a * dim..(a + 1) * dim])
                {
                    *c += w * qv;
                }
            }
        }
        Ok(Pca {
            dim_in: dim,
            mean: mean.iter().map(|m| *m as f32).collect(),
            components,
            k,
            variances,
        })
    }

    /// Output size.
    pub fn dim(&self) -> usize {
        self.k
    }

    /// Projects rows of `data` onto the components.
    pub fn transform(&self, data: &[f32]) -> Vec<f32> {
        let d = self.dim_in;
        data.par_chunks(d)
            .flat_map_iter(|row| {
                let centred: Vec<f64> = row
                    .iter()
                    .zip(&self.mean)
                    .map(|(v, m)| f64::from(v - m))
                    .collect();
                self.components
                    .chunks(d)
                    .map(move |c| c.iter().zip(&centred).map(|(a, b)| a * b).sum::<f64>() as f32)
            })
            .collect()
    }
}

/// A deterministic value in `[0, 1)` from an index (splitmix64).
fn hash_unit(i: u64) -> f64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Modified Gram–Schmidt on `p` row vectors of length `dim`.
fn orthonormalise(q: &mut [f64], p: usize, dim: usize) {
    for a in 0..p {
        for b in 0..a {
            let (head, tail) = q.split_at_mut(a * dim);
            let vb = &head[b * dim..(b + 1) * dim];
            let va = &mut tail[..dim];
            let d: f64 = va.iter().zip(vb).map(|(x, y)| x * y).sum();
            va.iter_mut().zip(vb).for_each(|(x, y)| *x -= d * y);
        }
        let va = &mut q[a * dim..(a + 1) * dim];
        let n = va.iter().map(|x| x * x).sum::<f64>().sqrt();
        if n > 0.0 {
            va.iter_mut().for_each(|x| *x /= n);
        }
    }
}

/// Cyclic Jacobi eigen-decomposition of a symmetric `n × n` matrix (row-major,
/// destroyed). Returns eigenvalues and eigenvectors (as columns).
fn jacobi_eigen(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off < 1e-22 {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pca_finds_the_dominant_axes() {
        // Points spread 10x along (1,1,0,0)/√2, 3x along (0,0,1,0), tiny elsewhere.
        let mut data = Vec::new();
        for i in 0..2000u64 {
            let a = (hash_unit(i) - 0.5) * 20.0;
            let b = (hash_unit(i + 10_000) - 0.5) * 6.0;
            let e = (hash_unit(i + 20_000) - 0.5) * 0.1;
            let s = std::f64::consts::FRAC_1_SQRT_2;
            data.extend([a * s + e, a * s - e, b, e].map(|x| x as f32));
        }
        let pca = Pca::fit(&data, 4, 2).unwrap();
        let c0 = &pca.components[0..4];
        assert!(
            (c0[0].abs() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3,
            "{c0:?}"
        );
        assert!((c0[1].abs() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        assert!(pca.components[4 + 2].abs() > 0.999);
        assert!(pca.variances[0] > pca.variances[1]);
        let proj = pca.transform(&data[0..4]);
        assert_eq!(proj.len(), 2);
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn leave_one_out_on_a_line_by_hand() {
        // 1-d points 0, 1, 3, 10 labelled A, A, B, B. Others by distance:
        //   0 → 1 (A), 3, 10         rel T F F   P 1/3  AP 1
        //   1 → 0 (A), 3, 10         rel T F F   P 1/3  AP 1
        //   3 → 1, 0, 10 (B)         rel F F T   P 1/3  AP 1/3
        //  10 → 3 (B), 1, 0          rel T F F   P 1/3  AP 1
        // (Precision divides by the 3 neighbours there are.) Were the query
        // not excluded, it would be its own relevant nearest neighbour.
        let r = leave_one_out(
            &[0.0, 1.0, 3.0, 10.0],
            1,
            &[0, 0, 1, 1],
            &names(&["A", "B"]),
            Metric::L2,
        )
        .unwrap();
        assert_eq!((r.images, r.labels), (4, 2));
        assert!(close(r.precision_at_10, 1.0 / 3.0), "{r:?}");
        assert!(close(r.map_at_100, (3.0 + 1.0 / 3.0) / 4.0), "{r:?}");
        assert!(close(r.chance_precision_at_10, 1.0 / 3.0), "{r:?}");
        let (a, b) = (&r.per_label[0], &r.per_label[1]);
        assert_eq!((a.label.as_str(), a.images), ("A", 2));
        assert!(
            close(a.map_at_100, 1.0) && close(b.map_at_100, 2.0 / 3.0),
            "{r:?}"
        );
        assert!(close(b.chance, 1.0 / 3.0));
    }

    #[test]
    fn leave_one_out_weighs_queries_and_counts_ten_neighbours() {
        // 8 points of A at 0..8, 4 of B at 100..104 (N = 12). An A query's
        // 10 nearest: the 7 other As, then 3 Bs (P 0.7); a B query's: the 3
        // other Bs, then 7 As (P 0.3); every AP is 1 (relevant ones first).
        let mut v: Vec<f32> = (0..8).map(|i| i as f32).collect();
        v.extend((0..4).map(|i| 100.0 + i as f32));
        let labels = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
        let r = leave_one_out(&v, 1, &labels, &names(&["A", "B"]), Metric::L2).unwrap();
        assert!(close(r.per_label[0].precision_at_10, 0.7), "{r:?}");
        assert!(close(r.per_label[1].precision_at_10, 0.3), "{r:?}");
        // Overall: a mean over the 12 queries, not over the 2 labels.
        assert!(
            close(r.precision_at_10, (8.0 * 0.7 + 4.0 * 0.3) / 12.0),
            "{r:?}"
        );
        assert!(close(r.map_at_100, 1.0));
        // Chance: (n_l − 1)/(N − 1) per label, its mean over queries overall.
        assert!(close(r.per_label[0].chance, 7.0 / 11.0));
        assert!(close(r.per_label[1].chance, 3.0 / 11.0));
        assert!(close(
            r.chance_precision_at_10,
            (8.0 * 7.0 + 4.0 * 3.0) / 132.0
        ));
    }

    #[test]
    fn leave_one_out_follows_the_metric() {
        // a1 (1,0), a2 (10,0.5), b1 (1,2), b2 (0,1.2). By angle every
        // nearest neighbour has the query's label. By L2, a1's nearest are
        // b2 (d² 2.44) and b1 (4) before a2 (81.25): its AP is 1/3.
        let v = [1.0, 0.0, 10.0, 0.5, 1.0, 2.0, 0.0, 1.2];
        let labels = [0, 0, 1, 1];
        let n = names(&["a", "b"]);
        let cos = leave_one_out(&v, 2, &labels, &n, Metric::Cosine).unwrap();
        assert!(close(cos.map_at_100, 1.0), "{cos:?}");
        let l2 = leave_one_out(&v, 2, &labels, &n, Metric::L2).unwrap();
        assert!(
            close(l2.per_label[0].map_at_100, (1.0 / 3.0 + 1.0) / 2.0),
            "{l2:?}"
        );
        assert!(close(l2.per_label[1].map_at_100, 1.0), "{l2:?}");
    }

    #[test]
    fn leave_one_out_refuses_what_it_cannot_score() {
        let n = names(&["a", "b"]);
        let one_b = leave_one_out(&[0.0, 1.0, 2.0], 1, &[0, 0, 1], &n, Metric::L2);
        assert!(matches!(one_b, Err(BenchError::Invalid(m)) if m.contains("`b`")));
        let one_label = leave_one_out(&[0.0, 1.0], 1, &[0, 0], &n, Metric::L2);
        assert!(matches!(one_label, Err(BenchError::Invalid(_))));
        assert!(leave_one_out(&[0.0, 1.0], 1, &[0], &n, Metric::L2).is_err());
        assert!(leave_one_out(&[0.0, 1.0], 1, &[0, 2], &n, Metric::L2).is_err());
    }

    #[test]
    fn chance_is_the_share_of_the_query_label_in_the_base() {
        assert!(close(
            chance_precision(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9], &[3, 7]),
            0.1
        ));
        // Base 3 × label 0, 1 × label 1; queries 0 and 1: (3/4 + 1/4) / 2.
        assert!(close(chance_precision(&[0, 0, 0, 1], &[0, 1]), 0.5));
        assert!(close(chance_precision(&[0, 0, 0, 1], &[0, 0]), 0.75));
    }

    #[test]
    fn quality_of_a_perfectly_separated_set() {
        // Two far-apart clusters, labelled by cluster: everything retrieved is relevant.
        let mut base = Vec::new();
        let mut labels = Vec::new();
        for i in 0..200u64 {
            let l = (i % 2) as u8;
            base.extend([f32::from(l) * 100.0 + hash_unit(i) as f32, 0.0]);
            labels.push(l);
        }
        let queries = vec![0.5, 0.0, 100.5, 0.0];
        let (p, m) = retrieval_quality(base, &labels, &queries, &[0, 1], 2, Metric::L2).unwrap();
        assert_eq!((p, m), (1.0, 1.0));
        // Wrong labels: nothing relevant.
        let base: Vec<f32> = (0..200).flat_map(|i| [i as f32, 0.0]).collect();
        let (p, m) = retrieval_quality(base, &[1; 200], &[0.0, 0.0], &[0], 2, Metric::L2).unwrap();
        assert_eq!((p, m), (0.0, 0.0));
    }
}
