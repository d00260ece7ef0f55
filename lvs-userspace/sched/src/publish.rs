//! Scheduler → datapath publication: the ring of upcoming picks.
//!
//! rr and wrr are periodic, so the ring holds whole periods and the datapath
//! reproduces the kernel's sequence forever by cycling through it. When the
//! server list changes, the controller works out how far the datapath got
//! (its cursor), advances its own copy of the scheduler by as many picks,
//! applies the change, and publishes a fresh ring into the idle half.

use crate::{Dest, Request, Scheduler};

/// A ring ready to write: real server ids in pick order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    pub picks: Vec<u32>,
    /// True when `picks` repeats exactly (a whole number of periods); false
    /// when the period is longer than the ring and cycling approximates it.
    pub exact: bool,
}

/// The next `capacity` picks of a scheduler that chooses by connection
/// counts (lc, wlc, sed, nq), each pick counting as one more active
/// connection (and setting OVERLOAD at its upper threshold). Not periodic:
/// the controller refills it as counts change and at low water.
pub fn build_counting_ring(sched: &dyn Scheduler, dests: &[Dest], capacity: usize) -> Ring {
    let mut s = sched.clone_box();
    let mut live = dests.to_vec();
    let mut picks = Vec::with_capacity(capacity);
    while picks.len() < capacity {
        let Some(i) = s.pick(&live, &Request::default()) else {
            break;
        };
        let d = &mut live[i];
        d.active += 1;
        // The connection that reaches the upper threshold sets OVERLOAD (§1.1).
        if d.u_threshold != 0 && d.active + d.inactive >= d.u_threshold {
            d.overloaded = true;
        }
        picks.push(d.id);
    }
    Ring { picks, exact: true }
}

/// The picks `sched` would make next, as a ring of at most `capacity`.
pub fn build_ring(sched: &dyn Scheduler, dests: &[Dest], capacity: usize) -> Ring {
    let Some((picks, period)) = simulate(sched, dests, capacity) else {
        return Ring {
            picks: Vec::new(),
            exact: true,
        };
    };
    if let Some(p) = period {
        return Ring {
            picks: picks[..p * (capacity / p)].to_vec(),
            exact: true,
        };
    }
    // The period is longer than the ring: a prefix of it would favour the
    // servers a pass visits first (wrr 700:1 would never reach the 1). Keep
    // the proportions instead, with weights scaled to fit half the ring.
    let mut scaled_sched = sched.clone_box();
    let scaled = scaled_weights(dests, capacity / 2);
    scaled_sched.update(dests, &scaled);
    match simulate(scaled_sched.as_ref(), &scaled, capacity) {
        Some((scaled_picks, Some(p))) => Ring {
            picks: scaled_picks[..p * (capacity / p)].to_vec(),
            exact: false,
        },
        // More eligible servers than slots (rr over > capacity servers).
        _ => Ring {
            picks: picks[..capacity].to_vec(),
            exact: false,
        },
    }
}

/// Run a copy of `sched` for `2 * capacity` picks: the picks, and the
/// shortest period (at most `capacity`) after which picks and state repeat.
/// `None` when nothing can be picked (with a fixed list, a failed pick
/// fails forever).
fn simulate(
    sched: &dyn Scheduler,
    dests: &[Dest],
    capacity: usize,
) -> Option<(Vec<u32>, Option<usize>)> {
    let mut s = sched.clone_box();
    let mut picks = Vec::with_capacity(2 * capacity);
    let mut states = vec![s.clone_box()];
    for _ in 0..2 * capacity {
        picks.push(dests[s.pick(dests, &Request::default())?].id);
        states.push(s.clone_box());
    }
    let period = (1..=capacity)
        .find(|&p| picks[..p] == picks[p..2 * p] && states[p].same_state(states[2 * p].as_ref()));
    Some((picks, period))
}

fn scaled_weights(dests: &[Dest], target: usize) -> Vec<Dest> {
    let total: u64 = dests
        .iter()
        .filter(|d| d.eligible())
        .map(|d| d.weight as u64)
        .sum::<u64>()
        .max(1);
    dests
        .iter()
        .map(|d| Dest {
            weight: if d.weight == 0 {
                0
            } else {
                (d.weight as u64 * target as u64 / total).max(1) as u32
            },
            ..*d
        })
        .collect()
}

/// Move `sched` forward by the picks the datapath consumed from a ring of
/// `ring_len` since it was published.
pub fn advance(sched: &mut dyn Scheduler, dests: &[Dest], consumed: u32, ring_len: usize) {
    if ring_len == 0 {
        return;
    }
    let consumed = consumed as usize;
    // The state after whole periods is the end-of-period state, which can
    // differ from the state at publication (wrr starts at the list head).
    let steps = if consumed < ring_len {
        consumed
    } else {
        ring_len + consumed % ring_len
    };
    for _ in 0..steps {
        sched.pick(dests, &Request::default());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{testing::*, SchedulerName};

    fn labels(ids: &[u32]) -> String {
        ids.iter().map(|&id| char::from_u32(id).unwrap()).collect()
    }

    #[test]
    fn wrr_ring_is_whole_periods_of_the_reference_sequence() {
        let d = dests(&[('A', 4, false), ('B', 3, false), ('C', 2, false)]);
        let s = configured(SchedulerName::Wrr, &d);
        let ring = build_ring(s.as_ref(), &d, 512);
        assert!(ring.exact);
        assert_eq!(ring.picks.len(), 9 * (512 / 9));
        assert_eq!(labels(&ring.picks[..18]), "AABABCABC".repeat(2));
    }

    #[test]
    fn cycling_the_ring_equals_running_the_scheduler() {
        for spec in [
            vec![('A', 4, false), ('B', 3, false), ('C', 2, false)],
            vec![('A', 3, false), ('B', 6, false)],
            vec![
                ('A', 1, false),
                ('B', 0, false),
                ('C', 1, false),
                ('D', 1, true),
            ],
        ] {
            for name in [SchedulerName::Rr, SchedulerName::Wrr] {
                let d = dests(&spec);
                let mut s = configured(name, &d);
                let ring = build_ring(s.as_ref(), &d, 64);
                for k in 0..1000 {
                    let i = s.pick(&d, &Request::default()).unwrap();
                    assert_eq!(
                        ring.picks[k % ring.picks.len()],
                        d[i].id,
                        "{name} {spec:?} pick {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn long_periods_keep_their_proportions() {
        // Period 701 does not fit 64 slots: a prefix would be all A.
        let d = dests(&[('A', 700, false), ('B', 1, false)]);
        let s = configured(SchedulerName::Wrr, &d);
        let ring = build_ring(s.as_ref(), &d, 64);
        assert!(!ring.exact);
        let b = ring.picks.iter().filter(|&&id| id == 'B' as u32).count();
        assert!(
            b >= 1 && b * 20 <= ring.picks.len(),
            "{}",
            labels(&ring.picks)
        );
        let d = dests(&[('A', 1000, false), ('B', 999, false), ('C', 500, false)]);
        let ring = build_ring(configured(SchedulerName::Wrr, &d).as_ref(), &d, 64);
        let share = |c: char| {
            ring.picks.iter().filter(|&&id| id == c as u32).count() as f64 / ring.picks.len() as f64
        };
        assert!(
            (share('A') - 0.4).abs() < 0.05 && (share('C') - 0.2).abs() < 0.05,
            "{}",
            labels(&ring.picks)
        );
    }

    #[test]
    fn nothing_eligible_publishes_an_empty_ring() {
        let d = dests(&[('A', 0, false)]);
        let s = configured(SchedulerName::Rr, &d);
        assert!(build_ring(s.as_ref(), &d, 8).picks.is_empty());
    }

    #[test]
    fn advancing_whole_periods_reaches_the_end_of_period_state() {
        let d = dests(&[('A', 4, false), ('B', 3, false), ('C', 2, false)]);
        let start = configured(SchedulerName::Wrr, &d);
        let ring = build_ring(start.as_ref(), &d, 18);
        assert_eq!(ring.picks.len(), 18);
        for consumed in [9u32, 18, 27, 36] {
            let mut direct = start.clone();
            for _ in 0..consumed {
                direct.pick(&d, &Request::default());
            }
            let mut advanced = start.clone();
            advance(advanced.as_mut(), &d, consumed, ring.picks.len());
            assert!(
                advanced.same_state(direct.as_ref()),
                "after {consumed}: {advanced:?} vs {direct:?}"
            );
        }
    }

    #[test]
    fn advancing_then_republishing_continues_the_rotation() {
        let d = dests(&[('A', 1, false), ('B', 1, false), ('C', 1, false)]);
        let mut s = configured(SchedulerName::Rr, &d);
        let ring = build_ring(s.as_ref(), &d, 8);
        // The datapath took two picks (A, B) before C was deleted.
        advance(s.as_mut(), &d, 2, ring.picks.len());
        let without_c = dests(&[('A', 1, false), ('B', 1, false)]);
        s.update(&d, &without_c);
        assert_eq!(labels(&build_ring(s.as_ref(), &without_c, 4).picks), "ABAB");
    }
}
