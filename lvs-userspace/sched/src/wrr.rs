//! Interleaved weighted round robin (`ip_vs_wrr.c`, reference §2.2).

use super::{after, Dest, Request, Scheduler};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wrr {
    /// The last chosen server; `None` is the list head.
    cl: Option<u32>,
    /// Current weight threshold of the pass.
    cw: i64,
    /// Max weight, minus (gcd - 1).
    mw: i64,
    /// gcd of the positive weights.
    di: i64,
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn gcd_and_max(dests: &[Dest]) -> (i64, i64) {
    let di = dests
        .iter()
        .map(|d| d.weight as i64)
        .filter(|&w| w > 0)
        .fold(0, gcd);
    let di = if di == 0 { 1 } else { di };
    let max = dests.iter().map(|d| d.weight as i64).max().unwrap_or(0);
    (di, max - (di - 1))
}

impl Wrr {
    pub fn new(dests: &[Dest]) -> Self {
        let (di, mw) = gcd_and_max(dests);
        Self {
            cl: None,
            cw: mw,
            mw,
            di,
        }
    }
}

impl Scheduler for Wrr {
    fn update(&mut self, _old: &[Dest], new: &[Dest]) {
        self.cl = None;
        let (di, mw) = gcd_and_max(new);
        self.di = di;
        self.mw = mw;
        if self.cw > self.mw || self.cw == 0 {
            self.cw = self.mw;
        } else if self.di > 1 {
            self.cw = (self.cw / self.di) * self.di + 1;
        }
    }

    fn pick(&mut self, dests: &[Dest], _request: &Request) -> Option<usize> {
        if self.mw <= 0 {
            return None;
        }
        let last = self.cl;
        let mut stop: Option<usize> = None;
        let mut last_pass = false;
        let mut restarted = false;
        let mut pos = after(self.cl, dests);
        loop {
            for (i, d) in dests.iter().enumerate().skip(pos) {
                if !d.overloaded && d.weight as i64 >= self.cw {
                    self.cl = Some(d.id);
                    return Some(i);
                }
                if stop == Some(i) {
                    self.cl = Some(d.id);
                    return None;
                }
            }
            self.cw -= self.di;
            if self.cw <= 0 {
                self.cw = self.mw;
                if last_pass || last.is_none() {
                    self.cl = None;
                    return None;
                }
                restarted = true;
            }
            last_pass = self.cw <= self.di;
            if last_pass && restarted {
                stop = last.and_then(|id| dests.iter().position(|d| d.id == id));
            }
            pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{testing::*, SchedulerName};

    fn sequence(spec: &[(char, u32, bool)], n: usize) -> String {
        let d = dests(spec);
        let mut s = configured(SchedulerName::Wrr, &d);
        run(s.as_mut(), &d, n)
    }

    #[test]
    fn reference_vectors() {
        // §2.2, every row of the table.
        assert_eq!(
            sequence(&[('A', 4, false), ('B', 3, false), ('C', 2, false)], 18),
            "AABABCABC".repeat(2)
        );
        assert_eq!(sequence(&[('A', 4, false), ('B', 2, false)], 6), "AABAAB");
        assert_eq!(
            sequence(&[('A', 6, false), ('B', 4, false), ('C', 2, false)], 12),
            "AABABC".repeat(2)
        );
        assert_eq!(sequence(&[('A', 3, false), ('B', 6, false)], 6), "BABBAB");
        assert_eq!(
            sequence(&[('A', 5, false), ('B', 1, false), ('C', 1, false)], 14),
            "AAAAABC".repeat(2)
        );
        assert_eq!(
            sequence(&[('A', 2, false), ('B', 0, false), ('C', 1, false)], 6),
            "AACAAC"
        );
        assert_eq!(
            sequence(&[('A', 1, false), ('B', 1, false), ('C', 1, false)], 6),
            "ABCABC"
        );
        assert_eq!(
            sequence(&[('A', 4, false), ('B', 3, true), ('C', 2, false)], 12),
            "AAACAC".repeat(2)
        );
        assert_eq!(sequence(&[('A', 0, false), ('B', 0, false)], 3), "---");
    }

    #[test]
    fn servers_added_one_by_one_keep_the_hooks_current_weight() {
        // Added C(2), B(3), A(4): the first add leaves cw = mw = 1 (gcd 2),
        // later hooks keep it, so the first pass takes everyone once.
        let d = dests(&[('A', 4, false), ('B', 3, false), ('C', 2, false)]);
        let mut s = added_one_by_one(SchedulerName::Wrr, &d);
        assert_eq!(run(s.as_mut(), &d, 12), "ABCAABABCABC");
    }

    #[test]
    fn issue_weights_three_two_one() {
        // Servers added 1, 2, 3 with weights 1, 2, 3: list order 3, 2, 1.
        let d = dests(&[('3', 3, false), ('2', 2, false), ('1', 1, false)]);
        let seq = run(added_one_by_one(SchedulerName::Wrr, &d).as_mut(), &d, 60);
        for (c, n) in [('3', 30), ('2', 20), ('1', 10)] {
            assert_eq!(seq.chars().filter(|&x| x == c).count(), n, "{seq}");
        }
    }
}
