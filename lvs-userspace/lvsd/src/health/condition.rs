//! What health makes of a configured real server: whether it is in
//! scheduling, and with which effective weight (load feedback and slow
//! start). Pure functions; the controller applies them.

use std::collections::BTreeMap;

use lvs_sched::SchedulerName;
use lvs_state::health::{ServiceHealth, DEFAULT_SLOW_START_S};

/// The agent's availability words (see `agent`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentState {
    Up,
    /// Weight 0: no new connections, existing ones continue.
    Drain,
    /// Out of scheduling, as a failed checker.
    Down,
}

/// How an up checker moves its real server's weight (keepalived's
/// `cur_weight`, which its `update_svr_wgt` adds to the configured one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shift {
    /// A file check: value × weight.
    Add(i64),
    /// A dynamic exec check: the weight becomes this (status - 2), that
    /// is, it adds this minus the configured weight.
    To(u32),
}

impl Shift {
    /// What it adds to `configured`.
    pub fn adjustment(self, configured: u32) -> i64 {
        match self {
            Shift::Add(n) => n,
            Shift::To(weight) => i64::from(weight) - i64::from(configured),
        }
    }
}

/// keepalived's largest IPVS weight (`IPVS_WEIGHT_LIMIT`, INT32_MAX).
pub const MAX_SHIFTED_WEIGHT: u32 = i32::MAX as u32;

/// What the controller knows of one real server's health now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Condition {
    /// Checkers that are down, by their position in the server's list,
    /// with the failure that took each down.
    pub failing: BTreeMap<usize, String>,
    /// Up checkers that move the weight (dynamic exec, file), by position.
    pub shifts: BTreeMap<usize, Shift>,
    /// The agent's last weight, in percent of the configured weight,
    /// already clamped to the agent's bounds.
    pub agent_percent: Option<u32>,
    pub agent_state: Option<AgentState>,
    /// Slow start in progress since this time (datapath clock, ns).
    pub ramp_since_ns: Option<u64>,
}

impl Condition {
    /// Checkers all up and the agent not saying down.
    pub fn alive(&self) -> bool {
        self.failing.is_empty() && self.agent_state != Some(AgentState::Down)
    }

    /// Why the server is out of service, if it is.
    pub fn reason(&self) -> Option<String> {
        if let Some((index, why)) = self.failing.iter().next() {
            return Some(format!("check {}: {why}", index + 1));
        }
        match self.agent_state {
            Some(AgentState::Down) => Some("agent reports down".into()),
            Some(AgentState::Drain) => Some("agent reports drain".into()),
            Some(AgentState::Up) | None => None,
        }
    }

    /// keepalived's effective weight: the configured one plus every
    /// checker's adjustment, clamped as its `real_weight` clamps, to
    /// 0..=INT32_MAX. The agent and slow start then scale this.
    pub fn weight(&self, configured: u32) -> u32 {
        let moved: i64 = self.shifts.values().map(|s| s.adjustment(configured)).sum();
        (i64::from(configured) + moved).clamp(0, i64::from(MAX_SHIFTED_WEIGHT)) as u32
    }

    /// The weight checks set, while some checker moves it.
    pub fn dynamic_weight(&self, configured: u32) -> Option<u32> {
        (!self.shifts.is_empty()).then(|| self.weight(configured))
    }

    /// Percent of the configured weight the agent leaves (drain is 0).
    pub fn percent(&self) -> u32 {
        match self.agent_state {
            Some(AgentState::Drain) => 0,
            _ => self.agent_percent.unwrap_or(100),
        }
    }
}

/// Schedulers whose decisions depend only on the ratios of weights, so all
/// weights of a service can be multiplied by `SCALE` to express fractions
/// of a configured weight exactly enough (weight 1 at 37% is 37 of 100).
pub fn ratio_weighted(scheduler: SchedulerName) -> bool {
    matches!(
        scheduler,
        SchedulerName::Wrr | SchedulerName::Wlc | SchedulerName::Sed | SchedulerName::Nq
    )
}

/// Schedulers for which a weight is more than yes or no: slow start and
/// load feedback only mean something for them.
pub fn weighs(scheduler: SchedulerName) -> bool {
    ratio_weighted(scheduler) || matches!(scheduler, SchedulerName::Lblc | SchedulerName::Lblcr)
}

pub const SCALE: u64 = 100;

/// The service's slow-start window in seconds (0: off).
pub fn slow_start_window(scheduler: SchedulerName, health: &ServiceHealth) -> u32 {
    if !weighs(scheduler) {
        return 0;
    }
    let default = match scheduler {
        SchedulerName::Wlc | SchedulerName::Sed | SchedulerName::Nq => DEFAULT_SLOW_START_S,
        _ => 0,
    };
    health.slow_start.unwrap_or(default)
}

/// How far a ramp has gone, in thousandths; `None` once it is complete.
pub fn ramp_permille(since_ns: u64, now_ns: u64, window_s: u32) -> Option<u64> {
    let window_ns = u64::from(window_s) * 1_000_000_000;
    let elapsed = now_ns.saturating_sub(since_ns);
    (elapsed < window_ns).then(|| elapsed * 1000 / window_ns)
}

/// The weight the scheduler is given: the configured weight times the
/// agent's percentage times the ramp, in units of `scale` per configured
/// weight. Never rounds a live server down to 0, which would quiesce it.
pub fn effective_weight(weight: u32, percent: u32, ramp_permille: Option<u64>, scale: u64) -> u32 {
    let permille = ramp_permille.unwrap_or(1000);
    if weight == 0 || percent == 0 {
        return 0;
    }
    let exact = u64::from(weight) * scale * u64::from(percent) * permille;
    let rounded = (exact + 50_000) / 100_000;
    rounded.clamp(1, u64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_grows_to_the_configured_weight_and_ends() {
        let s = 1_000_000_000;
        assert_eq!(ramp_permille(0, 0, 10), Some(0));
        assert_eq!(ramp_permille(0, 2 * s, 10), Some(200));
        assert_eq!(ramp_permille(0, 9 * s + s / 2, 10), Some(950));
        assert_eq!(ramp_permille(0, 10 * s, 10), None);
        // Weight 1 ramped at SCALE: 1 (the floor), 20, 95, then 100.
        let w = |p| effective_weight(1, 100, p, SCALE);
        assert_eq!(
            [Some(0), Some(200), Some(950), None].map(w),
            [1, 20, 95, 100]
        );
        // Unscaled (lblc): the floor of 1 until the rounding reaches 2.
        assert_eq!(effective_weight(4, 100, Some(100), 1), 1);
        assert_eq!(effective_weight(4, 100, Some(500), 1), 2);
    }

    #[test]
    fn agent_percentages_scale_the_configured_weight() {
        assert_eq!(effective_weight(3, 50, None, SCALE), 150);
        assert_eq!(effective_weight(3, 200, None, SCALE), 600);
        assert_eq!(effective_weight(3, 0, None, SCALE), 0);
        assert_eq!(effective_weight(0, 100, None, SCALE), 0);
        // Both: half weight, a quarter of the way up the ramp.
        assert_eq!(effective_weight(4, 50, Some(250), SCALE), 50);
    }

    #[test]
    fn slow_start_defaults_to_the_wlc_family() {
        let none = ServiceHealth::default();
        assert_eq!(slow_start_window(SchedulerName::Wlc, &none), 10);
        assert_eq!(slow_start_window(SchedulerName::Wrr, &none), 0);
        assert_eq!(slow_start_window(SchedulerName::Rr, &none), 0);
        let off = ServiceHealth {
            slow_start: Some(0),
            ..Default::default()
        };
        assert_eq!(slow_start_window(SchedulerName::Sed, &off), 0);
        let set = ServiceHealth {
            slow_start: Some(30),
            ..Default::default()
        };
        assert_eq!(slow_start_window(SchedulerName::Wrr, &set), 30);
        // A weight that only says yes or no cannot ramp.
        assert_eq!(slow_start_window(SchedulerName::Rr, &set), 0);
    }

    /// keepalived's arithmetic: the configured weight plus each checker's
    /// `cur_weight`; a dynamic MISC_CHECK's is status - 2 - configured, so
    /// alone it sets the weight; the sum is clamped to 0..=INT32_MAX.
    #[test]
    fn shifts_add_to_the_configured_weight_as_keepalived_adds_them() {
        let mut c = Condition::default();
        assert_eq!((c.weight(3), c.dynamic_weight(3)), (3, None));
        c.shifts.insert(0, Shift::To(10));
        assert_eq!((c.weight(3), c.dynamic_weight(3)), (10, Some(10)));
        c.shifts.insert(1, Shift::Add(-4));
        assert_eq!(c.weight(3), 6);
        c.shifts.insert(1, Shift::Add(-40));
        assert_eq!(c.weight(3), 0);
        c.shifts.insert(1, Shift::Add(i64::from(i32::MAX)));
        assert_eq!(c.weight(3), MAX_SHIFTED_WEIGHT);
        c.shifts.remove(&0);
        c.shifts.insert(1, Shift::Add(2));
        assert_eq!(c.weight(3), 5);
    }

    #[test]
    fn reasons_name_the_deciding_check() {
        let mut c = Condition::default();
        assert!(c.alive() && c.reason().is_none());
        c.failing.insert(1, "HTTP status 503".into());
        assert!(!c.alive());
        assert_eq!(c.reason().unwrap(), "check 2: HTTP status 503");
        c.failing.clear();
        c.agent_state = Some(AgentState::Drain);
        assert!(c.alive());
        assert_eq!(c.percent(), 0);
        c.agent_state = Some(AgentState::Down);
        assert!(!c.alive());
    }
}
