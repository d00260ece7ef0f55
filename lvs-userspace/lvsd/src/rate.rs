//! IPVS's rate estimator (reference §7.4, the kernel's `ip_vs_est.c`):
//! every 2 s each counter's change becomes a scaled rate, folded into a
//! moving average that `ipvsadm --rate` reads as per-second values.

use lvs_common::Counters;

use lvs_state::api::Rates;

/// How often a sample is taken; the scaling below assumes exactly this.
pub const PERIOD_NS: u64 = 2_000_000_000;

/// One stats object's estimator (a service's or a real server's): the
/// counters at the last sample, and the averages, per second scaled by
/// 2^10 for connections and packets and by 2^5 for bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Estimator {
    last: Counters,
    cps: u64,
    in_pps: u64,
    out_pps: u64,
    in_bps: u64,
    out_bps: u64,
}

impl Estimator {
    /// At rest, counting from `counters`: how `-Z` leaves an estimator
    /// (`ip_vs_zero_estimator`). A fresh one (`default`) counts from zero,
    /// as a new stats object's counters start there.
    pub fn starting_at(counters: Counters) -> Self {
        Self {
            last: counters,
            ..Self::default()
        }
    }

    /// One sample, `PERIOD_NS` after the last: a change over 2 s shifted
    /// left by 9 is per second × 2^10; by 4, per second × 2^5.
    pub fn sample(&mut self, now: Counters) {
        let Counters {
            conns,
            in_packets,
            out_packets,
            in_bytes,
            out_bytes,
        } = now;
        // Saturating: a counter that went back (a reset) is no burst.
        let change = |now: u64, last: u64| now.saturating_sub(last);
        let last = self.last;
        average(&mut self.cps, change(conns, last.conns) << 9);
        average(&mut self.in_pps, change(in_packets, last.in_packets) << 9);
        average(
            &mut self.out_pps,
            change(out_packets, last.out_packets) << 9,
        );
        average(&mut self.in_bps, change(in_bytes, last.in_bytes) << 4);
        average(&mut self.out_bps, change(out_bytes, last.out_bytes) << 4);
        self.last = now;
    }

    /// The averages per second, rounded as `ip_vs_read_estimator` does.
    pub fn rates(&self) -> Rates {
        let per_second = |scaled: u64| (scaled + 0x1FF) >> 10;
        let bytes_per_second = |scaled: u64| (scaled + 0xF) >> 5;
        Rates {
            cps: per_second(self.cps),
            in_pps: per_second(self.in_pps),
            out_pps: per_second(self.out_pps),
            in_bps: bytes_per_second(self.in_bps),
            out_bps: bytes_per_second(self.out_bps),
        }
    }
}

/// `avg += (rate − avg) >> 2`, in the kernel's signed arithmetic: a
/// falling rate's negative difference shifts toward minus infinity, so an
/// average that lost its input reaches 0 instead of sticking at 1–3.
fn average(avg: &mut u64, rate: u64) {
    let step = (rate as i64).wrapping_sub(*avg as i64) >> 2;
    *avg = avg.wrapping_add_signed(step);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conns(n: u64) -> Counters {
        Counters {
            conns: n,
            ..Counters::default()
        }
    }

    #[test]
    fn the_first_sample_moves_a_quarter_of_the_way() {
        let mut e = Estimator::default();
        e.sample(Counters {
            conns: 200,
            in_packets: 2_000,
            out_packets: 1_000,
            in_bytes: 200_000,
            out_bytes: 1_000_000,
        });
        // conns: 200 << 9 = 102400, a quarter is 25600 → (25600 + 511) >> 10.
        // bytes: 200000 << 4 = 3200000 → 800000 → (800000 + 15) >> 5.
        assert_eq!(
            e.rates(),
            Rates {
                cps: 25,
                in_pps: 250,
                out_pps: 125,
                in_bps: 25_000,
                out_bps: 125_000,
            }
        );
    }

    #[test]
    fn the_integer_arithmetic_is_the_kernels() {
        let mut e = Estimator::default();
        // 7 connections in 2 s: rate 3584; the average goes 896, 1568, 2072.
        e.sample(conns(7));
        assert_eq!(e.cps, 896);
        // (896 + 511) >> 10 = 1: 0.875/s rounds up.
        assert_eq!(e.rates().cps, 1);
        e.sample(conns(14));
        assert_eq!(e.cps, 1568);
        e.sample(conns(21));
        assert_eq!(e.cps, 2072);
        assert_eq!(e.rates().cps, 2);
        // Bytes: 1000 in 2 s is rate 16000; average 4000, (4000 + 15) >> 5 = 125.
        let mut e = Estimator::default();
        e.sample(Counters {
            in_bytes: 1_000,
            ..Counters::default()
        });
        assert_eq!((e.in_bps, e.rates().in_bps), (4_000, 125));
        // 500 bytes/s scaled by 2^5 is 16000: an average already there stays.
        e.in_bps = 16_000;
        e.sample(Counters {
            in_bytes: 2_000,
            ..Counters::default()
        });
        assert_eq!(e.rates().in_bps, 500);
    }

    #[test]
    fn a_steady_hundred_per_second_converges_to_a_hundred() {
        let mut e = Estimator::default();
        let mut shown = Vec::new();
        for n in 1..=40 {
            e.sample(conns(200 * n));
            shown.push(e.rates().cps);
        }
        assert_eq!(&shown[..4], [25, 44, 58, 68]);
        assert!(shown.windows(2).all(|w| w[0] <= w[1]), "{shown:?}");
        assert_eq!(*shown.last().unwrap(), 100);
        // From below, the shift stops 1–3 short of 100 << 10; the rounding
        // in `rates` covers that.
        assert!(((100 << 10) - 3..100 << 10).contains(&e.cps), "{}", e.cps);
    }

    #[test]
    fn a_counter_that_stops_decays_to_zero() {
        let mut e = Estimator::default();
        for n in 1..=40 {
            e.sample(conns(200 * n));
        }
        let mut shown = Vec::new();
        for _ in 0..40 {
            e.sample(conns(8_000));
            shown.push(e.rates().cps);
        }
        assert_eq!(&shown[..3], [75, 56, 42]);
        assert!(shown.windows(2).all(|w| w[0] >= w[1]), "{shown:?}");
        // The signed shift takes the last units away too.
        assert_eq!(e.cps, 0);
        assert_eq!(*shown.last().unwrap(), 0);
    }

    #[test]
    fn starting_at_counts_from_the_given_counters() {
        let mut e = Estimator::starting_at(conns(1_000_000));
        assert_eq!(e.rates(), Rates::default());
        e.sample(conns(1_000_200));
        assert_eq!(e.rates().cps, 25);
        // A counter that went back (reset) reads as no change.
        e.sample(conns(0));
        assert!(e.rates().cps < 25);
    }
}
