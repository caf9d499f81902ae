//! The count-min sketch (Cormode & Muthukrishnan), with linear and conservative updates;
//! width and depth follow from ε and δ.

use topk_core::bytes::Reader;

use super::SketchError;

/// A count-min sketch of `depth` rows of `width` 32-bit counters.
///
/// A cell saturates at `u32::MAX`; an estimate read from saturated cells is reported as
/// unbounded (`u64::MAX`), so the sketch still never underestimates. Heavy products are
/// counted exactly by [`TopSketch`], so only buckets of trillions of sales get there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountMin {
    width: u32,
    depth: u32,
    cells: Vec<u32>,
    total: u64,
}

impl CountMin {
    /// The smallest sketch whose estimates exceed the true count by more than ε·N with
    /// probability at most δ: width e/ε (rounded up to a power of two, at most 2^24),
    /// depth ln(1/δ).
    pub fn with_error(epsilon: f64, delta: f64) -> Result<CountMin, SketchError> {
        CountMin::shard_of(epsilon, delta, 1)
    }

    /// One of `shards` sketches that together keep ε and δ for the whole stream: each
    /// shard sees about 1/`shards` of it, so 1/`shards` of the columns keeps the same ε·N.
    pub fn shard_of(epsilon: f64, delta: f64, shards: u32) -> Result<CountMin, SketchError> {
        if !(epsilon > 0.0 && epsilon < 1.0 && delta > 0.0 && delta < 1.0) || shards == 0 {
            return Err(SketchError::Params(format!(
                "epsilon and delta must lie in (0, 1) and shards be positive, got epsilon={epsilon} delta={delta} shards={shards}"
            )));
        }
        let total = ((std::f64::consts::E / epsilon).ceil() as u64).next_power_of_two();
        let width = (total / u64::from(shards)).next_power_of_two().clamp(8, 1 << 24) as u32;
        let depth = (1.0 / delta).ln().ceil().clamp(1.0, 16.0) as u32;
        CountMin::new(width, depth)
    }

    pub fn new(width: u32, depth: u32) -> Result<CountMin, SketchError> {
        if !width.is_power_of_two() || !(8..=1 << 24).contains(&width) || !(1..=16).contains(&depth) {
            return Err(SketchError::Params(format!(
                "width must be a power of two in 8..=16777216 and depth in 1..=16, got {width}x{depth}"
            )));
        }
        Ok(CountMin { width, depth, cells: vec![0; (width * depth) as usize], total: 0 })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Sum of all increments.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// e / width.
    pub fn epsilon(&self) -> f64 {
        std::f64::consts::E / f64::from(self.width)
    }

    /// e^-depth.
    pub fn delta(&self) -> f64 {
        (-f64::from(self.depth)).exp()
    }

    /// Two hash functions from one 64-bit key (Kirsch–Mitzenmacher); odd `h2` visits
    /// every column of a power-of-two row.
    #[inline]
    fn slot(&self, key: u64, row: u32) -> usize {
        let (h1, h2) = (key as u32, ((key >> 32) as u32) | 1);
        (row * self.width + (h1.wrapping_add(row.wrapping_mul(h2)) & (self.width - 1))) as usize
    }

    /// Linear update: every row's cell grows by `c`. Sketches updated this way merge into
    /// exactly the sketch of the concatenated streams.
    pub fn add(&mut self, key: u64, c: u64) {
        let add = u32::try_from(c).unwrap_or(u32::MAX);
        for row in 0..self.depth {
            let s = self.slot(key, row);
            self.cells[s] = self.cells[s].saturating_add(add);
        }
        self.total = self.total.saturating_add(c);
    }

    /// Conservative update (Estan & Varghese): raise each cell only as far as the new
    /// estimate. Never underestimates, overestimates far less on skewed data; the price is
    /// that merged sketches are an upper bound of, not equal to, the concatenated stream's.
    /// Returns the new estimate.
    #[inline]
    pub fn add_conservative(&mut self, key: u64, c: u64) -> u64 {
        let mut slots = [0usize; 16];
        let mut min = u32::MAX;
        for row in 0..self.depth {
            let s = self.slot(key, row);
            slots[row as usize] = s;
            min = min.min(self.cells[s]);
        }
        let target = min.saturating_add(u32::try_from(c).unwrap_or(u32::MAX));
        for &s in &slots[..self.depth as usize] {
            if self.cells[s] < target {
                self.cells[s] = target;
            }
        }
        self.total = self.total.saturating_add(c);
        widen(target)
    }

    /// An upper bound of the key's count (`u64::MAX` if its cells saturated).
    #[inline]
    pub fn estimate(&self, key: u64) -> u64 {
        widen((0..self.depth).map(|row| self.cells[self.slot(key, row)]).min().unwrap_or(0))
    }

    pub fn merge(&mut self, other: &CountMin) -> Result<(), SketchError> {
        if (self.width, self.depth) != (other.width, other.depth) {
            return Err(SketchError::Shape(format!(
                "count-min {}x{} and {}x{}",
                self.width, self.depth, other.width, other.depth
            )));
        }
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            *a = a.saturating_add(*b);
        }
        self.total = self.total.saturating_add(other.total);
        Ok(())
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.cells.capacity() * 4
    }

    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.width.to_le_bytes());
        out.extend_from_slice(&self.depth.to_le_bytes());
        out.extend_from_slice(&self.total.to_le_bytes());
        for c in &self.cells {
            out.extend_from_slice(&c.to_le_bytes());
        }
    }

    pub(super) fn decode_from(r: &mut Reader<'_>) -> Result<CountMin, SketchError> {
        let (width, depth, total) = (r.u32()?, r.u32()?, r.u64()?);
        let mut cms = CountMin::new(width, depth).map_err(|e| SketchError::Decode(e.to_string()))?;
        cms.total = total;
        for c in cms.cells.iter_mut() {
            *c = r.u32()?;
        }
        Ok(cms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.cells.len() * 4);
        self.encode_into(&mut out);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<CountMin, SketchError> {
        let mut r = Reader::new(bytes);
        let cms = CountMin::decode_from(&mut r)?;
        r.end()?;
        Ok(cms)
    }
}

fn widen(cell: u32) -> u64 {
    if cell == u32::MAX {
        u64::MAX
    } else {
        u64::from(cell)
    }
}
