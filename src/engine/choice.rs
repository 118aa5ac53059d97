//! A draw by weight: which scenario, operation or query comes next. One implementation for
//! flows, the Redis mix and the SQL mix.

/// Picks an index with probability proportional to its weight, from a uniform draw.
#[derive(Debug, Clone)]
pub struct WeightedChoice {
    /// Running sums of the weights; the last is the total.
    cumulative: Vec<u64>,
}

impl WeightedChoice {
    /// `None` when every weight is zero (nothing could ever be picked).
    pub fn new(weights: &[u64]) -> Option<Self> {
        let mut sum = 0u64;
        let cumulative: Vec<u64> = weights
            .iter()
            .map(|w| {
                sum += w;
                sum
            })
            .collect();
        (sum > 0).then_some(WeightedChoice { cumulative })
    }

    /// The index whose slice of `0..total` holds `draw`; `draw` must be below the total.
    pub fn pick_at(&self, draw: u64) -> usize {
        // Few entries (three operations, a handful of queries): a scan beats a search.
        self.cumulative
            .iter()
            .position(|c| draw < *c)
            .unwrap_or(self.cumulative.len() - 1)
    }

    /// A random index by weight.
    pub fn pick(&self, rng: &mut fastrand::Rng) -> usize {
        let total = *self.cumulative.last().expect("at least one weight");
        self.pick_at(rng.u64(0..total))
    }
}

impl WeightedChoice {
    /// A random index by weight, from the thread's own generator.
    pub fn pick_global(&self) -> usize {
        let total = *self.cumulative.last().expect("at least one weight");
        self.pick_at(fastrand::u64(0..total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_index_owns_its_range() {
        let c = WeightedChoice::new(&[3, 1, 0, 2]).unwrap();
        let picks: Vec<usize> = (0..6).map(|r| c.pick_at(r)).collect();
        assert_eq!(picks, [0, 0, 0, 1, 3, 3]);
        assert!(WeightedChoice::new(&[0, 0]).is_none());
    }
}
