//! A mergeable, log-bucketed quantile sketch (the DDSketch idea): values fall into buckets whose
//! bounds grow by a constant factor, so any quantile is known within a fixed *relative* error
//! whatever the range, the memory is set by the range (not by the sample count), and two sketches
//! merge exactly by adding their bucket counts.

use serde::{Deserialize, Serialize};

/// Bucket growth factor: bucket `i` holds values in `(GAMMA^(i-1), GAMMA^i]`.
const GAMMA: f64 = 1.02;

/// The relative error of any quantile the sketch returns: `(GAMMA - 1) / (GAMMA + 1)`, about 1%.
pub const RELATIVE_ACCURACY: f64 = (GAMMA - 1.0) / (GAMMA + 1.0);

/// Values below this are counted in the zero bucket (durations are nanoseconds, so this is "less
/// than a nanosecond").
const MIN_VALUE: f64 = 1.0;

/// A quantile sketch of non-negative values (augur stores durations in nanoseconds).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogSketch {
    /// Dense bucket counts; `counts[k]` is bucket `offset + k`.
    counts: Vec<u64>,
    offset: i32,
    zeros: u64,
    count: u64,
    /// Sum of the values rounded to integers (nanoseconds): exact, so merging in any order gives
    /// the same sketch bit for bit.
    sum: u64,
    min: f64,
    max: f64,
}

fn bucket_of(x: f64) -> i32 {
    // ceil(log_gamma(x)); x >= MIN_VALUE here, so the result is a small non-negative number.
    (x.ln() / GAMMA.ln()).ceil() as i32
}

/// The value reported for bucket `i`: the point whose relative distance to both bounds is equal.
fn value_of(i: i32) -> f64 {
    2.0 * GAMMA.powi(i) / (GAMMA + 1.0)
}

impl LogSketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of values added.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// True when no value was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The mean of the values added (each rounded to an integer), or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum as f64 / self.count as f64)
    }

    /// The busiest bucket: its representative value and how many values it holds (values under
    /// 1 count as 0). `None` when empty.
    pub fn mode(&self) -> Option<(f64, u64)> {
        let mut best = (self.zeros > 0).then_some((0.0, self.zeros));
        for (k, &c) in self.counts.iter().enumerate() {
            if c > best.map_or(0, |b| b.1) {
                best = Some((
                    value_of(self.offset + k as i32).clamp(self.min, self.max),
                    c,
                ));
            }
        }
        best
    }

    /// The buckets in ascending order: each bucket's upper bound and count (the zero bucket's
    /// bound is 1). Two sketches' buckets share bounds, so their empirical distribution functions
    /// can be compared bucket by bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let zeros = (self.zeros > 0).then_some((MIN_VALUE, self.zeros));
        zeros.into_iter().chain(
            self.counts
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(k, &c)| (GAMMA.powi(self.offset + k as i32), c)),
        )
    }

    /// The smallest value added (exact).
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The largest value added (exact).
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// Adds one value. Negative and non-finite values count as zero.
    pub fn add(&mut self, x: f64) {
        self.add_n(x, 1);
    }

    /// Adds `n` copies of a value.
    pub fn add_n(&mut self, x: f64, n: u64) {
        if n == 0 {
            return;
        }
        let x = if x.is_finite() && x > 0.0 { x } else { 0.0 };
        if self.count == 0 {
            self.min = x;
            self.max = x;
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count = self.count.saturating_add(n);
        self.sum = self
            .sum
            .saturating_add((x.round() as u64).saturating_mul(n));
        if x < MIN_VALUE {
            self.zeros = self.zeros.saturating_add(n);
            return;
        }
        let i = bucket_of(x);
        self.bump(i, n);
    }

    fn bump(&mut self, i: i32, n: u64) {
        if self.counts.is_empty() {
            self.offset = i;
            self.counts.push(n);
            return;
        }
        if i < self.offset {
            let grow = (self.offset - i) as usize;
            let mut v = vec![0u64; grow];
            v.append(&mut self.counts);
            self.counts = v;
            self.offset = i;
        }
        let k = (i - self.offset) as usize;
        if k >= self.counts.len() {
            self.counts.resize(k + 1, 0);
        }
        self.counts[k] = self.counts[k].saturating_add(n);
    }

    /// Adds every value of `other` (exact: the result is the sketch of both inputs together).
    pub fn merge(&mut self, other: &LogSketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count = self.count.saturating_add(other.count);
        self.sum = self.sum.saturating_add(other.sum);
        self.zeros = self.zeros.saturating_add(other.zeros);
        for (k, &c) in other.counts.iter().enumerate() {
            if c > 0 {
                self.bump(other.offset + k as i32, c);
            }
        }
    }

    /// The `q`-quantile (`q` in `[0, 1]`, clamped), within [`RELATIVE_ACCURACY`] of a value whose
    /// rank is `q * (count - 1)` rounded down; `None` when empty. The extremes are exact.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        if rank == 0 {
            return Some(self.min);
        }
        if rank >= self.count - 1 {
            return Some(self.max);
        }
        let mut seen = self.zeros;
        if rank < seen {
            return Some(0.0);
        }
        for (k, &c) in self.counts.iter().enumerate() {
            seen += c;
            if rank < seen {
                let v = value_of(self.offset + k as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

/// The serialised form: sparse buckets, so a sketch of few distinct values stays small.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SketchRepr {
    gamma: f64,
    count: u64,
    sum: u64,
    min: f64,
    max: f64,
    zeros: u64,
    /// `[bucket index, count]` pairs, ascending.
    bins: Vec<(i32, u64)>,
}

impl Serialize for LogSketch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bins = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(k, &c)| (self.offset + k as i32, c))
            .collect();
        SketchRepr {
            gamma: GAMMA,
            count: self.count,
            sum: self.sum,
            min: self.min,
            max: self.max,
            zeros: self.zeros,
            bins,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for LogSketch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let r = SketchRepr::deserialize(d)?;
        if (r.gamma - GAMMA).abs() > 1e-12 {
            return Err(D::Error::custom(format!(
                "sketch gamma {} is not this build's {GAMMA}",
                r.gamma
            )));
        }
        let mut s = LogSketch::new();
        let mut total = r.zeros;
        for &(i, c) in &r.bins {
            if !(-10_000..=10_000).contains(&i) {
                return Err(D::Error::custom(format!(
                    "sketch bucket {i} is out of range"
                )));
            }
            s.bump(i, c);
            total = total.saturating_add(c);
        }
        if total != r.count {
            return Err(D::Error::custom(format!(
                "sketch buckets hold {total} values but its count is {}",
                r.count
            )));
        }
        if r.count > crate::model::MAX_COUNT {
            return Err(D::Error::custom(format!(
                "sketch count {} is beyond any real model",
                r.count
            )));
        }
        if r.count > 0
            && !(r.min.is_finite() && r.max.is_finite() && 0.0 <= r.min && r.min <= r.max)
        {
            return Err(D::Error::custom(format!(
                "sketch bounds [{}, {}] are not a range of durations",
                r.min, r.max
            )));
        }
        s.zeros = r.zeros;
        s.count = r.count;
        s.sum = r.sum;
        s.min = r.min;
        s.max = r.max;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        let rank = (q * (sorted.len() - 1) as f64).floor() as usize;
        sorted[rank]
    }

    #[test]
    fn a_corrupt_sketch_is_refused() {
        let mut s = LogSketch::new();
        s.add(5.0);
        let text = serde_json::to_string(&s).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for (field, value) in [("min", 1e12), ("max", -1.0)] {
            let mut bad = v.clone();
            bad[field] = serde_json::json!(value);
            let err = serde_json::from_value::<LogSketch>(bad).unwrap_err();
            assert!(err.to_string().contains("not a range"), "{err}");
        }
    }

    #[test]
    fn empty_has_no_quantile() {
        assert_eq!(LogSketch::new().quantile(0.5), None);
    }

    #[test]
    fn serde_round_trip() {
        let mut s = LogSketch::new();
        for x in [0.0, 3.0, 1e6, 2.5e6, 7e9] {
            s.add(x);
        }
        let text = serde_json::to_string(&s).unwrap();
        let back: LogSketch = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn inconsistent_serialised_counts_are_rejected() {
        let text =
            r#"{"gamma":1.02,"count":5,"sum":1,"min":1.0,"max":1.0,"zeros":0,"bins":[[3,1]]}"#;
        assert!(serde_json::from_str::<LogSketch>(text).is_err());
    }

    proptest! {
        #[test]
        fn quantiles_within_relative_accuracy(
            mut xs in prop::collection::vec(0.0f64..1e10, 1..400),
            q in 0.0f64..=1.0,
        ) {
            let mut s = LogSketch::new();
            for &x in &xs { s.add(x); }
            xs.sort_by(f64::total_cmp);
            let want = exact_quantile(&xs, q);
            let got = s.quantile(q).unwrap();
            // Values under 1 ns go to the zero bucket and are reported as 0.
            let tolerance = want * RELATIVE_ACCURACY * 1.000_001 + 1.0;
            prop_assert!((got - want).abs() <= tolerance, "q={q} got={got} want={want}");
        }

        #[test]
        fn merge_equals_adding_everything(
            a in prop::collection::vec(0.0f64..1e9, 0..100),
            b in prop::collection::vec(0.0f64..1e9, 0..100),
            c in prop::collection::vec(0.0f64..1e9, 0..100),
        ) {
            let sketch = |xs: &[f64]| { let mut s = LogSketch::new(); for &x in xs { s.add(x); } s };
            let (sa, sb, sc) = (sketch(&a), sketch(&b), sketch(&c));
            // (a + b) + c == a + (b + c), and a + b == b + a, bucket for bucket.
            let mut left = sa.clone(); left.merge(&sb); left.merge(&sc);
            let mut bc = sb.clone(); bc.merge(&sc);
            let mut right = sa.clone(); right.merge(&bc);
            let mut ba = sb.clone(); ba.merge(&sa);
            let mut ab = sa.clone(); ab.merge(&sb);
            prop_assert_eq!(&left, &right);
            prop_assert_eq!(&ab, &ba);
            prop_assert_eq!(left.count(), (a.len() + b.len() + c.len()) as u64);
            // Identity.
            let mut id = sa.clone(); id.merge(&LogSketch::new());
            prop_assert_eq!(id, sa);
        }
    }
}
