//! Recall of an approximate answer against the exact one.

use std::collections::HashSet;

use crate::vectors::Neighbor;

/// Recall@k by id: the share of the exact top-`k` ids that the approximate
/// top-`k` contains. When the exact answer has fewer than `k` items (a small
/// collection), the denominator is its length; an empty exact answer gives 1.
pub fn recall_at_k(approx: &[Neighbor], exact: &[Neighbor], k: usize) -> f64 {
    let truth: HashSet<u64> = exact.iter().take(k).map(|n| n.id).collect();
    if truth.is_empty() {
        return 1.0;
    }
    let found = approx
        .iter()
        .take(k)
        .filter(|n| truth.contains(&n.id))
        .count();
    found as f64 / truth.len() as f64
}

/// ann-benchmarks' distance-based recall@k: an approximate hit counts when its
/// true distance is within `epsilon` of the exact k-th distance, so ties at the
/// boundary are not punished. `approx` distances must be exact distances.
pub fn recall_at_k_by_distance(
    approx: &[Neighbor],
    exact: &[Neighbor],
    k: usize,
    epsilon: f32,
) -> f64 {
    let k = k.min(exact.len());
    if k == 0 {
        return 1.0;
    }
    let threshold = exact[k - 1].distance + epsilon;
    let found = approx
        .iter()
        .take(k)
        .filter(|n| n.distance <= threshold)
        .count();
    found as f64 / k as f64
}

/// Mean of per-query recalls (0 for no query).
pub fn mean_recall(per_query: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = per_query
        .into_iter()
        .fold((0.0, 0usize), |(s, n), r| (s + r, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nn(ids: &[u64]) -> Vec<Neighbor> {
        ids.iter()
            .enumerate()
            .map(|(i, &id)| Neighbor {
                id,
                distance: i as f32,
            })
            .collect()
    }

    #[test]
    fn recall_counts_overlap() {
        assert_eq!(recall_at_k(&nn(&[1, 2, 3]), &nn(&[1, 2, 3]), 3), 1.0);
        assert_eq!(recall_at_k(&nn(&[1, 9, 8]), &nn(&[1, 2, 3]), 3), 1.0 / 3.0);
        assert_eq!(recall_at_k(&nn(&[]), &nn(&[1, 2]), 10), 0.0);
        assert_eq!(recall_at_k(&nn(&[2]), &nn(&[1, 2]), 10), 0.5);
        assert_eq!(recall_at_k(&nn(&[]), &nn(&[]), 10), 1.0);
        // Only the first k of each side count.
        assert_eq!(recall_at_k(&nn(&[5, 1]), &nn(&[1, 2]), 1), 0.0);
        assert_eq!(mean_recall([1.0, 0.5]), 0.75);
    }

    #[test]
    fn distance_recall_forgives_ties() {
        let exact = nn(&[1, 2]); // distances 0, 1
        let approx = vec![
            Neighbor {
                id: 1,
                distance: 0.0,
            },
            Neighbor {
                id: 7,
                distance: 1.0,
            },
        ];
        assert_eq!(recall_at_k_by_distance(&approx, &exact, 2, 1e-3), 1.0);
        assert_eq!(recall_at_k(&approx, &exact, 2), 0.5);
    }
}
