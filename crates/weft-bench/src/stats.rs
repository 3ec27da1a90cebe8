//! Summaries of repeated measurements: min / median / max over runs, and
//! percentiles of latency samples.
//!
//! Why min/median/max and not mean ± stddev: on a shared 2-core machine the
//! noise is one-sided and bursty (another build steals a core for seconds),
//! so a mean is dragged by outliers while the median is not, and min/max
//! show the spread honestly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// min / median / max of a set of values in one unit, and how many
/// values there were (non-finite ones, failed measurements, left out).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    pub min: f64,
    pub median: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    /// `None` when there is no value (a measurement that never succeeded).
    pub fn of(values: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Summary {
            min: v[0],
            median: median_sorted(&v),
            max: v[v.len() - 1],
            n: v.len(),
        })
    }

    /// "min / median / max" with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!(
            "{:.d$} / {:.d$} / {:.d$}",
            self.min,
            self.median,
            self.max,
            d = digits
        )
    }
}

/// [`Summary::show`], or "n/a" when nothing was measured.
pub fn show(s: Option<Summary>, digits: usize) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| s.show(digits))
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The `p`-th percentile (0–100) by nearest rank; `None` for no samples.
/// Nearest rank, because with 20 samples p99 must be an observed value
/// (the worst), not an interpolation that looks better than any sample.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Per-run ratios `a[i] / b[i]`, for ratios measured pairwise in one run.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter(|(_, b)| **b != 0.0)
        .map(|(a, b)| a / b)
        .collect()
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// `Some(x)` for a finite `x`: a figure computed from others (a ratio, a
/// difference) is kept only when it is a number, since JSON has no NaN.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_percentiles() {
        let s = Summary::of(&[3.0, 1.0, 2.0, f64::NAN]).unwrap();
        assert_eq!((s.min, s.median, s.max, s.n), (1.0, 2.0, 3.0, 3));
        assert_eq!(Summary::of(&[1.0, 2.0]).unwrap().median, 1.5);
        assert!(Summary::of(&[]).is_none());
        assert_eq!(s.show(1), "1.0 / 2.0 / 3.0");
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(10.0));
        assert_eq!(percentile(&v, 99.0), Some(20.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(ratios(&[2.0, 3.0], &[1.0, 0.0]), vec![2.0]);
    }
}
