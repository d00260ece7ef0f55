//! lc, wlc, sed and nq (`ip_vs_lc.c`, `ip_vs_wlc.c`, `ip_vs_sed.c`,
//! `ip_vs_nq.c`; reference §2.3–2.6): stateless choices over the servers'
//! connection counts, differing only in the cost and the first stage.

use super::{Dest, Request, Scheduler};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Smallest overhead; weights only gate eligibility.
    Lc,
    /// Smallest overhead / weight.
    Wlc,
    /// Smallest (active + 1) / weight.
    Sed,
    /// The first idle server, else as sed.
    Nq,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Least {
    rule: Rule,
}

impl Least {
    pub fn lc() -> Self {
        Self { rule: Rule::Lc }
    }
    pub fn wlc() -> Self {
        Self { rule: Rule::Wlc }
    }
    pub fn sed() -> Self {
        Self { rule: Rule::Sed }
    }
    pub fn nq() -> Self {
        Self { rule: Rule::Nq }
    }
}

/// The wlc two-stage walk with cost `cost`: the first eligible server, then
/// any later non-overloaded one whose cost per weight is strictly lower
/// (`loh * w(d) > oh(d) * w(least)`, so ties keep the earlier server and a
/// weight-0 server never wins). Shared with lblc and lblcr.
pub fn weighted_least(dests: &[Dest], cost: impl Fn(&Dest) -> u64) -> Option<usize> {
    let first = dests.iter().position(Dest::eligible)?;
    let mut least = first;
    let mut loh = cost(&dests[first]);
    for (i, d) in dests.iter().enumerate().skip(first + 1) {
        if d.overloaded {
            continue;
        }
        let oh = cost(d);
        if loh as u128 * d.weight as u128 > oh as u128 * dests[least].weight as u128 {
            least = i;
            loh = oh;
        }
    }
    Some(least)
}

/// wlc's choice, as lblc and lblcr use it for a new mapping.
pub fn wlc(dests: &[Dest]) -> Option<usize> {
    weighted_least(dests, Dest::overhead)
}

fn expected_delay(d: &Dest) -> u64 {
    d.active as u64 + 1
}

impl Scheduler for Least {
    fn update(&mut self, _old: &[Dest], _new: &[Dest]) {}

    fn pick(&mut self, dests: &[Dest], _request: &Request) -> Option<usize> {
        match self.rule {
            Rule::Lc => {
                let mut best: Option<usize> = None;
                for (i, d) in dests.iter().enumerate() {
                    if d.eligible() && best.is_none_or(|b| d.overhead() < dests[b].overhead()) {
                        best = Some(i);
                    }
                }
                best
            }
            Rule::Wlc => wlc(dests),
            Rule::Sed => weighted_least(dests, expected_delay),
            Rule::Nq => dests
                .iter()
                .position(|d| d.eligible() && d.active == 0)
                .or_else(|| weighted_least(dests, expected_delay)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{testing::*, Dest, Request, SchedulerName};

    fn counted(spec: &[(char, u32, u32, u32)]) -> Vec<Dest> {
        spec.iter()
            .map(|&(c, weight, active, inactive)| Dest {
                id: c as u32,
                weight,
                active,
                inactive,
                ..Dest::default()
            })
            .collect()
    }

    /// Idle servers with these weights, in list order.
    fn weighted(weights: &[(char, u32)]) -> Vec<Dest> {
        weights
            .iter()
            .map(|&(c, w)| Dest {
                id: c as u32,
                weight: w,
                ..Dest::default()
            })
            .collect()
    }

    fn pick(name: SchedulerName, d: &[Dest]) -> char {
        let mut s = configured(name, d);
        let i = s.pick(d, &Request::default()).unwrap();
        char::from_u32(d[i].id).unwrap()
    }

    #[test]
    fn lc_reference_examples() {
        let d = counted(&[('A', 1, 1, 0), ('B', 1, 0, 300), ('C', 1, 0, 10)]);
        assert_eq!(pick(SchedulerName::Lc, &d), 'C');
        let mut d = dests(&[('A', 1, false), ('B', 1, false)]);
        let mut s = configured(SchedulerName::Lc, &d);
        assert_eq!(run_counting(s.as_mut(), &mut d, 4), "ABAB");
    }

    #[test]
    fn wlc_reference_examples() {
        let d = counted(&[('A', 1, 1, 0), ('B', 2, 1, 100), ('C', 3, 2, 0)]);
        assert_eq!(pick(SchedulerName::Wlc, &d), 'C');
        let d = counted(&[('A', 0, 0, 0), ('B', 1, 3, 0), ('C', 2, 5, 0)]);
        assert_eq!(pick(SchedulerName::Wlc, &d), 'C');
        for (weights, expected) in [
            (&[('A', 1), ('B', 2)][..], "ABBABBABB"),
            (&[('A', 1), ('B', 3)][..], "ABBBABBB"),
            (&[('A', 1), ('B', 2), ('C', 3)][..], "ABCCBCABCCBC"),
        ] {
            let mut d = weighted(weights);
            let mut s = configured(SchedulerName::Wlc, &d);
            assert_eq!(run_counting(s.as_mut(), &mut d, expected.len()), expected);
        }
    }

    #[test]
    fn sed_and_nq_reference_examples() {
        for (name, weights, expected) in [
            (SchedulerName::Sed, &[('A', 1), ('B', 2)][..], "BABBABBAB"),
            (SchedulerName::Sed, &[('A', 1), ('B', 3)][..], "BBABBBAB"),
            (
                SchedulerName::Sed,
                &[('A', 1), ('B', 2), ('C', 3)][..],
                "CBCABCCBCABC",
            ),
            (
                SchedulerName::Nq,
                &[('A', 1), ('B', 2), ('C', 3)][..],
                "ABCCBCCBCABC",
            ),
            (SchedulerName::Nq, &[('A', 1), ('B', 3)][..], "ABBBBBAB"),
        ] {
            let mut d = weighted(weights);
            let mut s = configured(name, &d);
            assert_eq!(
                run_counting(s.as_mut(), &mut d, expected.len()),
                expected,
                "{name}"
            );
        }
    }

    /// Property: over pseudo-random counts, weights and overload flags, wlc
    /// picks a minimum of overhead/weight among eligible servers (the first
    /// such), lc a minimum overhead, and none ever picks weight 0 or OVERLOAD.
    #[test]
    fn choices_agree_with_a_direct_reading_of_the_rules() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for _ in 0..5000 {
            let n = 1 + next(6) as usize;
            let d: Vec<Dest> = (0..n)
                .map(|i| Dest {
                    id: i as u32,
                    weight: next(4) as u32,
                    overloaded: next(5) == 0,
                    active: next(4) as u32,
                    inactive: next(600) as u32,
                    ..Dest::default()
                })
                .collect();
            let eligible: Vec<usize> = (0..n).filter(|&i| d[i].eligible()).collect();
            for name in [
                SchedulerName::Lc,
                SchedulerName::Wlc,
                SchedulerName::Sed,
                SchedulerName::Nq,
            ] {
                let got = configured(name, &d).pick(&d, &Request::default());
                let Some(i) = got else {
                    assert!(eligible.is_empty(), "{name} found nothing in {d:?}");
                    continue;
                };
                assert!(d[i].eligible(), "{name} picked an ineligible server");
                // cost/weight as exact fractions: a/b < c/e  <=>  a*e < c*b
                let cost = |x: &Dest| match name {
                    SchedulerName::Lc => (x.overhead(), 1u64),
                    SchedulerName::Wlc => (x.overhead(), x.weight as u64),
                    _ => (x.active as u64 + 1, x.weight as u64),
                };
                let better = |a: (u64, u64), b: (u64, u64)| a.0 * b.1 < b.0 * a.1;
                if name == SchedulerName::Nq && d[i].active == 0 {
                    assert_eq!(eligible.iter().find(|&&j| d[j].active == 0), Some(&i));
                    continue;
                }
                for &j in &eligible {
                    assert!(
                        !better(cost(&d[j]), cost(&d[i])),
                        "{name}: {j} beats {i} in {d:?}"
                    );
                    if j < i {
                        assert!(
                            better(cost(&d[i]), cost(&d[j])),
                            "{name}: tie must keep {j} in {d:?}"
                        );
                    }
                }
            }
        }
    }
}
