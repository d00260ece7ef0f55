//! One checker's rise/fall state machine.
//!
//! keepalived brings a checker up on one success and takes it down after
//! `retry + 1` consecutive failures; `rise` and `fall` generalise both. A
//! checker that starts up is unproven: as keepalived pre-exhausts its retry
//! budget at start-up, its first failure takes it down at once.

use lvs_state::health::StartState;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    up: bool,
    /// Consecutive results against the current state.
    streak: u32,
    /// Whether a success has been seen since start-up.
    proven: bool,
}

impl Tally {
    pub fn new(start: StartState) -> Self {
        Self {
            up: start == StartState::Up,
            streak: 0,
            proven: false,
        }
    }

    /// A checker whose first failure is retried like any other: keepalived's
    /// SMTP_CHECK resets its retry count at every round, the first too.
    pub fn retrying_from_start(start: StartState) -> Self {
        Self {
            proven: true,
            ..Self::new(start)
        }
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Record one attempt. Returns the new state when it changes.
    pub fn record(&mut self, success: bool, rise: u32, fall: u32) -> Option<bool> {
        if success {
            self.proven = true;
        }
        if success == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = match (self.up, self.proven) {
            (false, _) => rise,
            (true, true) => fall,
            (true, false) => 1,
        };
        if self.streak < needed.max(1) {
            return None;
        }
        self.up = success;
        self.streak = 0;
        Some(self.up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed a script of results ('+' success, '-' failure) and write the
    /// state after each: 'U' up, 'D' down.
    fn run(start: StartState, rise: u32, fall: u32, script: &str) -> String {
        let mut t = Tally::new(start);
        script
            .chars()
            .map(|c| {
                t.record(c == '+', rise, fall);
                if t.is_up() {
                    'U'
                } else {
                    'D'
                }
            })
            .collect()
    }

    #[test]
    fn fall_counts_consecutive_failures_once_proven() {
        assert_eq!(run(StartState::Up, 1, 2, "+-+--"), "UUUUD");
        assert_eq!(run(StartState::Up, 1, 3, "+--+---"), "UUUUUUD");
    }

    #[test]
    fn rise_counts_consecutive_successes() {
        assert_eq!(run(StartState::Down, 3, 2, "++-+++"), "DDDDDU");
        assert_eq!(run(StartState::Down, 1, 2, "-+"), "DU");
    }

    #[test]
    fn an_unproven_start_falls_at_the_first_failure() {
        // keepalived without alpha: alive at once, down at the first failure.
        assert_eq!(run(StartState::Up, 1, 2, "-"), "D");
        // Back up on one success, then proven: fall applies.
        assert_eq!(run(StartState::Up, 1, 2, "-+-"), "DUU");
    }

    #[test]
    fn smtp_retries_its_first_failure() {
        let mut t = Tally::retrying_from_start(StartState::Up);
        assert_eq!(t.record(false, 1, 2), None);
        assert_eq!(t.record(false, 1, 2), Some(false));
    }

    #[test]
    fn transitions_are_reported_once() {
        let mut t = Tally::new(StartState::Up);
        assert_eq!(t.record(true, 2, 2), None);
        assert_eq!(t.record(false, 2, 2), None);
        assert_eq!(t.record(false, 2, 2), Some(false));
        assert_eq!(t.record(false, 2, 2), None);
        assert_eq!(t.record(true, 2, 2), None);
        assert_eq!(t.record(true, 2, 2), Some(true));
    }
}
