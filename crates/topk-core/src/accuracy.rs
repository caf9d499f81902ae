//! How close an approximate top list came to the exact one: the speed layer's audit
//! (DESIGN §6 task 3, `topk accuracy`).

use std::collections::HashMap;

/// Scores of one approximate top list against the exact counts of the same bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Accuracy {
    /// Share of the reported top 10 that belongs to the true top 10 (ties at the 10th
    /// count included).
    pub precision_at_10: f64,
    pub precision_at_100: f64,
    /// Largest and mean |estimate − true| / true over the true top 10; a product missing
    /// from the approximate list counts as estimate 0.
    pub max_relative_error: f64,
    pub mean_relative_error: f64,
    /// Share of reported rows whose true count lies inside `[count − error, count + error]`.
    pub bound_coverage: f64,
}

/// `exact`: every product's true count, largest first. `approx`: the reported rows as
/// (product, estimate, error bound), largest estimate first.
pub fn score<E: AsRef<str>, A: AsRef<str>>(exact: &[(E, i64)], approx: &[(A, i64, i64)]) -> Accuracy {
    let truth: HashMap<&str, i64> = exact.iter().map(|(p, c)| (p.as_ref(), *c)).collect();
    score_with(exact, |p| truth.get(p).copied(), approx)
}

/// [`score`] given only the true top 100 (`exact_top`, largest first; all products if
/// fewer) and a product's true count by `truth` (`None`: it did not sell): what a
/// bucket of a million products is scored with, without a map of all of them.
pub fn score_with<E: AsRef<str>, A: AsRef<str>>(
    exact_top: &[(E, i64)],
    truth: impl Fn(&str) -> Option<i64>,
    approx: &[(A, i64, i64)],
) -> Accuracy {
    let exact = exact_top;
    let precision = |k: usize| {
        let k = k.min(exact.len());
        if k == 0 {
            return 1.0;
        }
        // Products tied with the k-th count may fill the places the strictly larger leave.
        let floor = exact[k - 1].1;
        let above = exact.iter().take_while(|(_, c)| *c > floor).count();
        let true_counts = approx.iter().take(k).map(|(p, _, _)| truth(p.as_ref()).unwrap_or(i64::MIN));
        let (hits_above, hits_tied) =
            true_counts.fold((0, 0), |(a, t), c| (a + usize::from(c > floor), t + usize::from(c == floor)));
        (hits_above + hits_tied.min(k - above)) as f64 / k as f64
    };
    let reported: HashMap<&str, i64> = approx.iter().map(|(p, c, _)| (p.as_ref(), *c)).collect();
    let errors: Vec<f64> = exact
        .iter()
        .take(10)
        .filter(|(_, c)| *c > 0)
        .map(|(p, c)| (reported.get(p.as_ref()).copied().unwrap_or(0) - c).abs() as f64 / *c as f64)
        .collect();
    let inside = approx
        .iter()
        .filter(|(p, c, e)| {
            let t = truth(p.as_ref()).unwrap_or(0);
            c - e <= t && t <= c + e
        })
        .count();
    Accuracy {
        precision_at_10: precision(10),
        precision_at_100: precision(100),
        max_relative_error: errors.iter().copied().fold(0.0, f64::max),
        mean_relative_error: if errors.is_empty() { 0.0 } else { errors.iter().sum::<f64>() / errors.len() as f64 },
        bound_coverage: if approx.is_empty() { 1.0 } else { inside as f64 / approx.len() as f64 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(n: i64) -> Vec<(String, i64)> {
        (0..n).map(|i| (format!("p{i}"), 1000 - i)).collect()
    }

    #[test]
    fn perfect_list_scores_perfectly() {
        let e = exact(200);
        let a: Vec<_> = e.iter().map(|(p, c)| (p.clone(), *c, 0)).collect();
        let s = score(&e, &a);
        assert_eq!(
            (s.precision_at_10, s.precision_at_100, s.max_relative_error, s.bound_coverage),
            (1.0, 1.0, 0.0, 1.0)
        );
    }

    #[test]
    fn swapped_boundary_item_costs_one_hundredth() {
        let e = exact(200);
        let mut a: Vec<_> = e.iter().map(|(p, c)| (p.clone(), *c, 0)).collect();
        a.swap(99, 100);
        let s = score(&e, &a);
        assert_eq!(s.precision_at_100, 0.99);
        assert_eq!(s.precision_at_10, 1.0);
    }

    #[test]
    fn errors_and_bounds_are_measured() {
        let e = exact(20);
        // p0 overestimated by 100 (10 %) with an honest bound; p1 missing; p2 outside its bound.
        let mut a = vec![("p0".to_string(), 1100, 100), ("p2".to_string(), 980, 5)];
        a.extend(e.iter().skip(3).map(|(p, c)| (p.clone(), *c, 0)));
        let s = score(&e, &a);
        assert!((s.max_relative_error - 1.0).abs() < 1e-9, "p1 missing counts as error 1");
        assert_eq!(s.bound_coverage, (a.len() - 1) as f64 / a.len() as f64);
        assert_eq!(s.precision_at_10, 0.9);
    }

    #[test]
    fn the_true_top_100_and_a_lookup_score_as_every_product_does() {
        let e = exact(300);
        // Estimates off by a little, a few swapped and missing, some from beyond the top 100.
        let mut a: Vec<_> = e.iter().skip(3).map(|(p, c)| (p.clone(), c + 2, 1)).collect();
        a.swap(50, 150);
        a.truncate(200);
        let truth: HashMap<&str, i64> = e.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        let whole = score(&e, &a);
        assert_eq!(score_with(&e[..100], |p| truth.get(p).copied(), &a), whole);
        assert!(whole.precision_at_100 < 1.0 && whole.bound_coverage < 1.0, "{whole:?}");
    }

    #[test]
    fn ties_at_the_boundary_count_as_hits() {
        let e: Vec<(String, i64)> = (0..20).map(|i| (format!("p{i}"), if i < 5 { 100 } else { 50 })).collect();
        // Any five of the 50s complete the top 10.
        let a: Vec<_> = e.iter().rev().take(10).map(|(p, c)| (p.clone(), *c, 0)).collect();
        let s = score(&e, &a);
        assert_eq!(s.precision_at_10, 0.5);
    }
}
