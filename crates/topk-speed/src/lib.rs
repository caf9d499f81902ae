pub mod sketch;

pub use topk_core::accuracy::{score, Accuracy};

/// Size of each open bucket's structures. The budget is per bucket and split over the
/// partitions: a partition holds about 1/P of the products and of the sales, so 1/P of
/// the counters keeps the same ε·N bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeedSizing {
    /// Rows written per bucket to `speed_table`.
    pub top_n: usize,
    /// Candidates per bucket as a multiple of `top_n` (slack for uneven partitions).
    pub candidates_per_row: f64,
    /// Count-min ε (relative error) and δ (probability of exceeding it), per bucket.
    pub epsilon: f64,
    pub delta: f64,
}

impl Default for SpeedSizing {
    fn default() -> Self {
        SpeedSizing { top_n: 1000, candidates_per_row: 1.0, epsilon: 0.02, delta: 0.05 }
    }
}

impl SpeedSizing {
    pub fn cms_width(&self, partitions: u32) -> u32 {
        let total = ((std::f64::consts::E / self.epsilon).ceil() as u64).next_power_of_two();
        u32::try_from((total / u64::from(partitions)).next_power_of_two()).unwrap_or(1 << 24).clamp(8, 1 << 24)
    }

    pub fn cms_depth(&self) -> u32 {
        (1.0 / self.delta).ln().ceil().clamp(1.0, 16.0) as u32
    }

    pub fn capacity(&self, partitions: u32) -> usize {
        ((self.top_n as f64 * self.candidates_per_row / f64::from(partitions)).ceil() as usize)
            .clamp(1, sketch::MAX_CAPACITY)
    }
}
