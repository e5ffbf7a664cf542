//! Where a recall-versus-QPS benchmark's vectors come from: Fashion-MNIST,
//! seeded synthetic clusters, or the user's own .fvecs/.npy files.

use std::path::{Path, PathBuf};

use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_datasets::synthetic::Clustered;
use imgsim_index::Metric;

use crate::{BenchData, BenchError, Result};

/// A benchmark's data source.
#[derive(Debug, Clone)]
pub enum Source {
    /// ann-benchmarks' fashion-mnist-784-euclidean (the IDX files' folder).
    FashionMnist(PathBuf),
    /// Seeded clustered Gaussian vectors.
    Synthetic {
        /// Base vectors.
        n: usize,
        /// Dimension.
        dim: usize,
        /// Seed (queries use a derived one).
        seed: u64,
        /// Metric.
        metric: Metric,
    },
    /// The user's files (.fvecs or .npy), L2 unless told otherwise.
    Files {
        /// Base vectors.
        base: PathBuf,
        /// Query vectors.
        queries: PathBuf,
    },
}

/// Loads `source`, keeping the first `queries` queries when given
/// (synthetic data makes that many, default 1,000), with `metric`
/// overriding the source's.
pub fn load(source: &Source, queries: Option<usize>, metric: Option<Metric>) -> Result<BenchData> {
    if queries == Some(0) {
        return Err(BenchError::Invalid("--queries must be at least 1".into()));
    }
    let mut data = match source {
        Source::Files { base, queries } => {
            let b = imgsim_datasets::read_vectors(base)?;
            let q = imgsim_datasets::read_vectors(queries)?;
            if b.dim != q.dim {
                return Err(BenchError::Invalid(format!(
                    "base vectors are {}-d but queries are {}-d",
                    b.dim, q.dim
                )));
            }
            BenchData {
                name: stem(base),
                dim: b.dim,
                base: b.data,
                queries: q.data,
                metric: Metric::L2,
            }
        }
        Source::FashionMnist(dir) => {
            let fm = FashionMnist::load(dir)?;
            BenchData {
                name: "fashion-mnist-784-euclidean".into(),
                dim: fm.train.dim,
                base: fm.train.data,
                queries: fm.test.data,
                metric: Metric::L2,
            }
        }
        Source::Synthetic {
            n,
            dim,
            seed,
            metric,
        } => {
            if *n == 0 || *dim == 0 {
                return Err(BenchError::Invalid(
                    "--n and --dim must be at least 1".into(),
                ));
            }
            let nq = queries.unwrap_or(1000);
            BenchData {
                name: format!("synthetic-{n}x{dim}"),
                dim: *dim,
                base: Clustered::new(*dim, *seed).rows(0, *n),
                queries: Clustered::new(*dim, seed ^ 0x5EED).rows(0, nq),
                metric: *metric,
            }
        }
    };
    if let Some(m) = metric {
        data.metric = m;
    }
    if let Some(n) = queries {
        data.queries.truncate(n * data.dim);
    }
    Ok(data)
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("custom")
        .to_string()
}
