//! Seeded synthetic vectors: Gaussian clusters.
//!
//! Every row is generated from its own seed (`seed`, row number), so any range
//! of rows can be produced on its own, in any order or in parallel, and a
//! million vectors can be streamed in chunks without ever being held twice.
//! The generator is a self-contained SplitMix64, so the data are identical on
//! every platform and every version of this crate.

/// A synthetic data set: `clusters` Gaussian blobs in `dim` dimensions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clustered {
    /// Dimension.
    pub dim: usize,
    /// Number of cluster centres.
    pub clusters: usize,
    /// Standard deviation of the points around their centre (centres are
    /// uniform in `[-1, 1]^dim`).
    pub spread: f32,
    /// Seed; different seeds give different points around the same centres
    /// when `centre_seed` is the same.
    pub seed: u64,
    /// Seed of the cluster centres (shared by base and query sets).
    pub centre_seed: u64,
}

/// SplitMix64 step.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn uniform(state: &mut u64) -> f32 {
    ((splitmix(state) >> 40) as f32 + 0.5) / (1u64 << 24) as f32
}

/// Standard normal by Box–Muller.
fn gaussian(state: &mut u64) -> f32 {
    let u1 = uniform(state);
    let u2 = uniform(state);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

impl Clustered {
    /// A data set with sensible defaults: 100 clusters, spread 0.25.
    pub fn new(dim: usize, seed: u64) -> Self {
        Clustered {
            dim,
            clusters: 100,
            spread: 0.25,
            seed,
            centre_seed: 0xC0FFEE,
        }
    }

    fn centre(&self, c: usize, out: &mut [f32]) {
        let mut s = self.centre_seed ^ (c as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        for x in out.iter_mut() {
            *x = uniform(&mut s) * 2.0 - 1.0;
        }
    }

    /// Appends rows `start..start+count` to `out`.
    pub fn rows_into(&self, start: usize, count: usize, out: &mut Vec<f32>) {
        let mut centre = vec![0.0; self.dim];
        out.reserve(count * self.dim);
        for r in start..start + count {
            let mut s = self.seed ^ (r as u64).wrapping_mul(0xA24B_AED4_963E_E407);
            let c = (splitmix(&mut s) % self.clusters.max(1) as u64) as usize;
            self.centre(c, &mut centre);
            out.extend(centre.iter().map(|&m| m + self.spread * gaussian(&mut s)));
        }
    }

    /// Rows `start..start+count` as a new vector.
    pub fn rows(&self, start: usize, count: usize) -> Vec<f32> {
        let mut v = Vec::new();
        self.rows_into(start, count, &mut v);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_reproducible_and_addressable() {
        let g = Clustered::new(16, 5);
        let all = g.rows(0, 100);
        assert_eq!(all.len(), 1600);
        assert_eq!(&all[16 * 40..16 * 50], g.rows(40, 10).as_slice());
        assert_ne!(all, Clustered::new(16, 6).rows(0, 100));
        assert!(all.iter().all(|x| x.is_finite()));
        // Roughly centred noise: mean distance to 0 is bounded.
        let mean = all.iter().map(|x| x.abs()).sum::<f32>() / all.len() as f32;
        assert!(mean > 0.1 && mean < 1.5, "{mean}");
    }
}
