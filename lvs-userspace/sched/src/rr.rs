//! Round robin (`ip_vs_rr.c`, reference §2.1).

use super::{after, Dest, Request, Scheduler};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rr {
    /// The last chosen server; `None` is the list head.
    cursor: Option<u32>,
}

impl Scheduler for Rr {
    fn update(&mut self, old: &[Dest], new: &[Dest]) {
        // A deleted cursor moves to its predecessor, so the rotation carries
        // on with the deleted server's successor.
        let Some(id) = self.cursor else { return };
        if new.iter().any(|d| d.id == id) {
            return;
        }
        let pos = old.iter().position(|d| d.id == id).unwrap_or(0);
        self.cursor = old[..pos]
            .iter()
            .rev()
            .map(|d| d.id)
            .find(|p| new.iter().any(|d| d.id == *p));
    }

    fn pick(&mut self, dests: &[Dest], _request: &Request) -> Option<usize> {
        let n = dests.len();
        let start = after(self.cursor, dests);
        // One lap at most; from the head there is no second pass.
        let lap = if self.cursor.is_some() {
            n
        } else {
            n.saturating_sub(start)
        };
        let chosen = (0..lap)
            .map(|k| (start + k) % n.max(1))
            .find(|&i| dests[i].eligible())?;
        self.cursor = Some(dests[chosen].id);
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{testing::*, SchedulerName};

    #[test]
    fn reference_vector_skips_quiescent_and_overloaded() {
        // §2.1: list order A(w1), B(w0), C(w1), D(w1, OVERLOAD) picks A C A C ...
        let d = dests(&[
            ('A', 1, false),
            ('B', 0, false),
            ('C', 1, false),
            ('D', 1, true),
        ]);
        let mut s = configured(SchedulerName::Rr, &d);
        assert_eq!(run(s.as_mut(), &d, 6), "ACACAC");
    }

    #[test]
    fn follows_list_order_newest_first() {
        // Added R1, R2, R3: IPVS iterates R3, R2, R1.
        let d = dests(&[('3', 1, false), ('2', 1, false), ('1', 1, false)]);
        let mut s = configured(SchedulerName::Rr, &d);
        assert_eq!(run(s.as_mut(), &d, 7), "3213213");
    }

    #[test]
    fn deleting_the_cursor_continues_with_its_successor() {
        let d = dests(&[('A', 1, false), ('B', 1, false), ('C', 1, false)]);
        let mut s = configured(SchedulerName::Rr, &d);
        assert_eq!(run(s.as_mut(), &d, 2), "AB");
        let without_b = dests(&[('A', 1, false), ('C', 1, false)]);
        s.update(&d, &without_b);
        assert_eq!(run(s.as_mut(), &without_b, 3), "CAC");
    }

    #[test]
    fn an_added_server_is_reached_after_the_wrap() {
        let d = dests(&[('A', 1, false), ('B', 1, false)]);
        let mut s = configured(SchedulerName::Rr, &d);
        assert_eq!(run(s.as_mut(), &d, 1), "A");
        let with_n = dests(&[('N', 1, false), ('A', 1, false), ('B', 1, false)]);
        s.update(&d, &with_n);
        assert_eq!(run(s.as_mut(), &with_n, 4), "BNAB");
    }

    #[test]
    fn nothing_eligible_fails() {
        let d = dests(&[('A', 0, false), ('B', 1, true)]);
        let mut s = configured(SchedulerName::Rr, &d);
        assert_eq!(run(s.as_mut(), &d, 2), "--");
        assert_eq!(run(s.as_mut(), &[], 1), "-");
    }
}
