//! Deterministic random numbers for generated data and experiments: the same seed gives
//! the same stream on every machine and release.

/// SplitMix64: one word of state, fast, good enough statistically, and ours
/// (so output never changes with a dependency upgrade).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, n) (multiply-shift; bias is negligible for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Inverse-CDF sampler: built once, then one short binary search per draw.
///
/// A plain binary search over the whole table (800 KB for 100k products) costs
/// ~10 cache misses per draw and dominated generation time, so a guide table
/// first narrows the search to the few entries of one equal-probability bucket.
pub struct Zipf {
    cdf: Vec<f64>,
    /// guide[j] = first index whose cumulative weight exceeds j * total / buckets.
    guide: Vec<usize>,
    /// buckets / total, to map a draw in [0, total) to its bucket.
    scale: f64,
}

impl Zipf {
    pub fn new(products: u64, s: f64) -> Self {
        let mut acc = 0.0;
        let cdf: Vec<f64> = (1..=products)
            .map(|k| {
                acc += (k as f64).powf(-s);
                acc
            })
            .collect();
        let total = acc;
        let buckets = cdf.len();
        let mut guide = Vec::with_capacity(buckets + 1);
        let mut idx = 0;
        for j in 0..buckets {
            let threshold = j as f64 * total / buckets as f64;
            while idx < cdf.len() && cdf[idx] <= threshold {
                idx += 1;
            }
            guide.push(idx);
        }
        guide.push(cdf.len());
        Zipf { cdf, guide, scale: buckets as f64 / total }
    }

    /// Rank in 1..=products; rank 1 is the most likely.
    ///
    /// Same result as `cdf.partition_point(|&c| c <= u)`: the bucket bounds are
    /// only a hint and are widened if float rounding put them off by one.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let n = self.cdf.len();
        let u = rng.f64() * self.cdf[n - 1];
        let j = ((u * self.scale) as usize).min(n - 1);
        let (mut lo, mut hi) = (self.guide[j], self.guide[j + 1]);
        while lo > 0 && self.cdf[lo - 1] > u {
            lo -= 1;
        }
        while hi < n && self.cdf[hi] <= u {
            hi += 1;
        }
        let idx = lo + self.cdf[lo..hi].partition_point(|&c| c <= u);
        idx.min(n - 1) as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_guide_matches_plain_binary_search() {
        for (n, s) in [(1, 1.1), (2, 0.0), (7, 3.0), (1_000, 1.1), (100_000, 0.8)] {
            let z = Zipf::new(n, s);
            let (mut a, mut b) = (Rng::new(n), Rng::new(n));
            for _ in 0..100_000 {
                let got = z.sample(&mut a);
                let u = b.f64() * z.cdf[z.cdf.len() - 1];
                let want = z.cdf.partition_point(|&c| c <= u).min(z.cdf.len() - 1) as u64 + 1;
                assert_eq!(got, want, "n={n} s={s} u={u}");
                assert!((1..=n).contains(&got));
            }
        }
    }
}
