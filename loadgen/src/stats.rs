//! Latency histograms (HdrHistogram, 3 significant digits, nanoseconds) and the summaries
//! taken from them.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::limits::{HISTOGRAM_SIGFIGS, MAX_LATENCY_NS};

/// Percentiles the report's table lists (and the plot draws).
pub const TABLE_PERCENTILES: [f64; 19] = [
    0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.995, 99.999,
    99.9995, 99.9999, 99.99995, 99.99999, 100.0,
];

/// A fresh latency histogram: 1 ns to one minute, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    // Invariant: the bounds are constants that satisfy hdrhistogram's rules (low >= 1,
    // high >= 2 * low, sigfig <= 5), so creation cannot fail.
    Histogram::new_with_bounds(1, MAX_LATENCY_NS, HISTOGRAM_SIGFIGS)
        .expect("constant histogram bounds are valid")
}

/// Adds `from` into `into`. Both come from [`new_histogram`], so they share bounds and
/// precision and the addition cannot fail; values are never dropped.
pub fn merge(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // Same bounds and auto-resize off: `add` only fails when a value does not fit, and every
    // value recorded through `saturating_record` fits.
    let _ = into.add(from);
}

/// The headline latency figures of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Latencies recorded.
    pub count: u64,
    /// Smallest.
    pub min_us: f64,
    /// Mean.
    pub mean_us: f64,
    /// Standard deviation.
    pub stdev_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p99_9_us: f64,
    /// 99.99th percentile.
    pub p99_99_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// One row of the percentile table.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PercentileRow {
    /// The percentile (0–100).
    pub percentile: f64,
    /// The latency at or below which that share of deliveries fell, in microseconds.
    pub latency_us: f64,
    /// Deliveries at or below that latency.
    pub count: u64,
}

/// Summarises a histogram in microseconds (all zero when it is empty).
pub fn summarise(h: &Histogram<u64>) -> LatencySummary {
    if h.is_empty() {
        return LatencySummary::default();
    }
    let us = |ns: u64| ns as f64 / 1000.0;
    LatencySummary {
        count: h.len(),
        min_us: us(h.min()),
        mean_us: h.mean() / 1000.0,
        stdev_us: h.stdev() / 1000.0,
        p50_us: us(h.value_at_quantile(0.50)),
        p90_us: us(h.value_at_quantile(0.90)),
        p99_us: us(h.value_at_quantile(0.99)),
        p99_9_us: us(h.value_at_quantile(0.999)),
        p99_99_us: us(h.value_at_quantile(0.9999)),
        max_us: us(h.max()),
    }
}

/// The percentile table of [`TABLE_PERCENTILES`] (empty when the histogram is).
pub fn percentile_table(h: &Histogram<u64>) -> Vec<PercentileRow> {
    if h.is_empty() {
        return Vec::new();
    }
    TABLE_PERCENTILES
        .iter()
        .map(|&p| {
            let ns = h.value_at_quantile(p / 100.0);
            PercentileRow {
                percentile: p,
                latency_us: ns as f64 / 1000.0,
                count: h.count_between(0, ns),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_every_value() {
        let mut a = new_histogram();
        let mut b = new_histogram();
        for v in 1..=1000u64 {
            a.saturating_record(v * 1000);
        }
        for v in 1001..=2000u64 {
            b.saturating_record(v * 1000);
        }
        let mut total = new_histogram();
        merge(&mut total, &a);
        merge(&mut total, &b);
        assert_eq!(total.len(), 2000);
        let s = summarise(&total);
        // 3 significant digits: within 0.1 %.
        assert!((s.p50_us - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_us - 2000.0).abs() <= 2.0, "{s:?}");
        assert!((s.min_us - 1.0).abs() <= 0.001, "{s:?}");
        // Merging is the same as recording everything in one histogram.
        let mut one = new_histogram();
        for v in 1..=2000u64 {
            one.saturating_record(v * 1000);
        }
        assert_eq!(summarise(&one), s);
    }

    #[test]
    fn out_of_range_values_saturate_instead_of_vanishing() {
        let mut h = new_histogram();
        h.saturating_record(MAX_LATENCY_NS * 10);
        h.saturating_record(0);
        assert_eq!(h.len(), 2);
        let mut total = new_histogram();
        merge(&mut total, &h);
        assert_eq!(total.len(), 2);
    }

    #[test]
    fn percentile_table_is_monotonic() {
        let mut h = new_histogram();
        for v in 0..10_000u64 {
            h.saturating_record(1000 + v * 37);
        }
        let table = percentile_table(&h);
        assert_eq!(table.len(), TABLE_PERCENTILES.len());
        for pair in table.windows(2) {
            assert!(pair[0].latency_us <= pair[1].latency_us);
        }
        assert_eq!(table.last().map(|r| r.count), Some(10_000));
        assert!(percentile_table(&new_histogram()).is_empty());
    }
}
