//! Scheduler → datapath publication: the ring of upcoming picks.
//!
//! rr and wrr are periodic, so the ring holds whole periods and the datapath
//! reproduces the kernel's sequence forever by cycling through it. When the
//! server list changes, the controller works out how far the datapath got
//! (its cursor), advances its own copy of the scheduler by as many picks,
//! applies the change, and publishes a fresh ring into the idle half.

use crate::sched::{Dest, Scheduler};

/// A ring ready to write: real server ids in pick order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    pub picks: Vec<u32>,
    /// True when `picks` repeats exactly (a whole number of periods); false
    /// when the period is longer than the ring and cycling approximates it.
    pub exact: bool,
}

/// The picks `sched` would make next, as a ring of at most `capacity`.
pub fn build_ring(sched: &dyn Scheduler, dests: &[Dest], capacity: usize) -> Ring {
    let mut s = sched.clone_box();
    let mut picks = Vec::with_capacity(2 * capacity);
    let mut states = vec![s.clone_box()];
    for _ in 0..2 * capacity {
        match s.pick(dests) {
            Some(i) => picks.push(dests[i].id),
            // With a fixed list a failed pick fails forever: nothing eligible.
            None => break,
        }
        states.push(s.clone_box());
    }
    if picks.len() < 2 * capacity {
        return Ring {
            picks: Vec::new(),
            exact: true,
        };
    }
    let period = (1..=capacity)
        .find(|&p| picks[..p] == picks[p..2 * p] && states[p].same_state(states[2 * p].as_ref()));
    match period {
        Some(p) => {
            picks.truncate(p * (capacity / p));
            Ring { picks, exact: true }
        }
        None => {
            picks.truncate(capacity);
            Ring {
                picks,
                exact: false,
            }
        }
    }
}

/// Move `sched` forward by the picks the datapath consumed from a ring of
/// `ring_len` since it was published.
pub fn advance(sched: &mut dyn Scheduler, dests: &[Dest], consumed: u32, ring_len: usize) {
    if ring_len == 0 {
        return;
    }
    for _ in 0..(consumed as usize % ring_len) {
        sched.pick(dests);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sched::{testing::*, SchedulerName};

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
                    let i = s.pick(&d).unwrap();
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
    fn long_periods_are_marked_approximate() {
        let d = dests(&[('A', 1000, false), ('B', 999, false)]);
        let s = configured(SchedulerName::Wrr, &d);
        let ring = build_ring(s.as_ref(), &d, 64);
        assert!(!ring.exact);
        assert_eq!(ring.picks.len(), 64);
    }

    #[test]
    fn nothing_eligible_publishes_an_empty_ring() {
        let d = dests(&[('A', 0, false)]);
        let s = configured(SchedulerName::Rr, &d);
        assert!(build_ring(s.as_ref(), &d, 8).picks.is_empty());
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
