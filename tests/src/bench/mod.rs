//! `cargo xtask bench`: every figure is measured side by side with its
//! baseline in the same run, and reported as a ratio to it.
//!
//! * `cost`: per-packet program cost through `BPF_PROG_TEST_RUN`, against
//!   the no-op XDP program, and the verifier's instruction counts;
//! * `rate`: packets per second through a namespace topology, frames made
//!   in the kernel by live-frames test_run, against a bare XDP redirect,
//!   kernel forwarding and nftables DNAT;
//! * `cps`: TCP connections per second, wrk against nginx, against plain
//!   routing, nftables DNAT and haproxy;
//! * `scale`: new-flow cost and publication time as pools and services
//!   grow, the connection table's memory and its largest size; with
//!   `daemon`, the same on the real lvsd and lvsadm processes: a restore
//!   and listing of 10,000 services, and a router pair's active with a
//!   million connections (its CPU with HA sync, a listing, refills);
//! * `health`: the controller's cost of checking 1,000 real servers a
//!   second;
//! * `flood`: a SYN flood from spoofed sources (twice the connection
//!   table's size quick, 5 M full) against a table holding 10,000
//!   established connections: how many of them survive, what the
//!   half-open quota evicted, and whether new connections still get in;
//! * `report`: the Markdown, JSON and SVG written under `target/bench/`.
//!
//! Nothing here runs in `cargo xtask test`, and nothing asserts a timing.

pub mod cost;
pub mod cps;
pub mod daemon;
pub mod flood;
pub mod health;
pub mod rate;
pub mod report;
pub mod scale;
pub mod testbed;

use std::time::Duration;

use serde::Serialize;

/// How long and how often to measure.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub quick: bool,
}

impl Plan {
    /// Seconds each throughput trial runs.
    pub fn trial(&self) -> Duration {
        Duration::from_secs(if self.quick { 3 } else { 10 })
    }

    /// Trials per throughput figure (the median is reported).
    pub fn trials(&self) -> usize {
        if self.quick {
            1
        } else {
            3
        }
    }
}

/// A throughput of one path, and its ratio to the section's subject.
#[derive(Clone, Debug, Serialize)]
pub struct Throughput {
    /// What was measured, e.g. "lvs (XDP NAT)" or "nftables DNAT".
    pub path: String,
    /// Median over the trials.
    pub per_second: f64,
    /// Every trial, in order.
    pub trials: Vec<f64>,
    /// What the figure includes and excludes, in one sentence.
    pub note: String,
}

/// `value / baseline`, or NaN when the baseline is zero.
pub fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline == 0.0 {
        f64::NAN
    } else {
        value / baseline
    }
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_and_ratio() {
        assert_eq!(super::median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(super::median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(super::median(&[]).is_nan());
        assert_eq!(super::ratio(3.0, 2.0), 1.5);
        assert!(super::ratio(1.0, 0.0).is_nan());
    }
}
