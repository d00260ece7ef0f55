//! Who is active: the state machine of one router of the pair, fed with
//! the peer's authenticated heartbeats and the passing of time. It decides;
//! the caller takes or releases the floating addresses.
//!
//! * Both start as backup. A backup that hears no active peer for the dead
//!   time becomes active; when both are backups, only the higher-ranked one
//!   does (rank: priority, then address).
//! * Without preemption (the default) a backup stays backup while an active
//!   peer lives, whatever their priorities: a recovered router becomes the
//!   hot backup. With it, a higher-ranked backup takes over.
//! * Two actives (a split that healed) settle at once: the lower-ranked one
//!   steps down when it hears the other.

use std::net::Ipv4Addr;

use super::wire::Role;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub node: Ipv4Addr,
    pub priority: u8,
    pub preempt: bool,
    /// Silence after which the peer is presumed dead.
    pub dead_ns: u64,
}

/// The peer as its last heartbeat described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: Ipv4Addr,
    pub role: Role,
    pub priority: u8,
    pub boot: u64,
    pub heard_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub at_ns: u64,
    pub from: Role,
    pub to: Role,
    pub reason: String,
}

#[derive(Clone, Debug)]
pub struct Election {
    settings: Settings,
    role: Role,
    started_ns: u64,
    peer: Option<Peer>,
    last: Option<Transition>,
}

/// Priority first, then the higher address (VRRP's tie-break).
fn outranks(a: (u8, Ipv4Addr), b: (u8, Ipv4Addr)) -> bool {
    a > b
}

impl Election {
    pub fn new(settings: Settings, now_ns: u64) -> Self {
        Self {
            settings,
            role: Role::Backup,
            started_ns: now_ns,
            peer: None,
            last: None,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn peer(&self) -> Option<Peer> {
        self.peer
    }

    pub fn last_transition(&self) -> Option<&Transition> {
        self.last.as_ref()
    }

    fn rank(&self) -> (u8, Ipv4Addr) {
        (self.settings.priority, self.settings.node)
    }

    /// The peer, if it has been heard within the dead time.
    pub fn live_peer(&self, now_ns: u64) -> Option<Peer> {
        self.peer
            .filter(|p| now_ns.saturating_sub(p.heard_ns) < self.settings.dead_ns)
    }

    fn become_(&mut self, to: Role, now_ns: u64, reason: String) -> Option<Transition> {
        if self.role == to {
            return None;
        }
        let t = Transition {
            at_ns: now_ns,
            from: self.role,
            to,
            reason,
        };
        self.role = to;
        self.last = Some(t.clone());
        Some(t)
    }

    /// An authenticated, fresh heartbeat from the peer.
    pub fn on_heartbeat(&mut self, peer: Peer) -> Option<Transition> {
        let now = peer.heard_ns;
        self.peer = Some(peer);
        let theirs = (peer.priority, peer.node);
        match (self.role, peer.role) {
            (Role::Active, Role::Active) if outranks(theirs, self.rank()) => self.become_(
                Role::Backup,
                now,
                format!(
                    "peer {} is active too and outranks us (priority {} against {})",
                    peer.node, peer.priority, self.settings.priority
                ),
            ),
            (Role::Backup, Role::Active)
                if self.settings.preempt && outranks(self.rank(), theirs) =>
            {
                self.become_(
                    Role::Active,
                    now,
                    format!(
                        "preempting active peer {} (priority {} against our {})",
                        peer.node, peer.priority, self.settings.priority
                    ),
                )
            }
            _ => None,
        }
    }

    /// Time passed: a backup takes over when no active peer lives.
    pub fn on_tick(&mut self, now_ns: u64) -> Option<Transition> {
        if self.role == Role::Active {
            return None;
        }
        let waited = now_ns.saturating_sub(self.started_ns) >= self.settings.dead_ns;
        match self.live_peer(now_ns) {
            Some(p) if p.role == Role::Active => None,
            Some(p) if waited && outranks(self.rank(), (p.priority, p.node)) => self.become_(
                Role::Active,
                now_ns,
                format!(
                    "peer {} is a backup too and we outrank it (priority {} against {})",
                    p.node, self.settings.priority, p.priority
                ),
            ),
            Some(_) => None,
            None if waited => {
                let reason = match self.peer {
                    Some(p) => format!(
                        "no heartbeat from peer {} for {} ms",
                        p.node,
                        now_ns.saturating_sub(p.heard_ns) / 1_000_000
                    ),
                    None => format!(
                        "no peer heard in {} ms since start",
                        now_ns.saturating_sub(self.started_ns) / 1_000_000
                    ),
                };
                self.become_(Role::Active, now_ns, reason)
            }
            None => None,
        }
    }
}

/// Replay protection for one peer: a message is fresh when it comes from a
/// later boot, or from the same boot with a higher sequence number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Freshness {
    latest: Option<(u64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Fresh,
    /// Not newer than the latest, but recent: a copy from another link, or
    /// one overtaken on the way. Dropped without complaint.
    Late,
    /// From an earlier boot, or older than `WINDOW` messages: a replay.
    Stale,
}

/// How far behind the latest sequence number a message counts as late
/// rather than replayed (a few seconds of heartbeats).
pub const WINDOW: u64 = 64;

impl Freshness {
    /// Admit `(boot, seq)` (and remember it) or say why not.
    pub fn admit(&mut self, boot: u64, seq: u64) -> Admission {
        match self.latest {
            Some((b, _)) if boot < b => Admission::Stale,
            Some((b, s)) if boot == b && seq <= s => {
                if s - seq < WINDOW {
                    Admission::Late
                } else {
                    Admission::Stale
                }
            }
            _ => {
                self.latest = Some((boot, seq));
                Admission::Fresh
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 3);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 4);

    fn node(me: Ipv4Addr, priority: u8, preempt: bool) -> Election {
        Election::new(
            Settings {
                node: me,
                priority,
                preempt,
                dead_ns: 500 * MS,
            },
            0,
        )
    }
    fn hb(from: Ipv4Addr, role: Role, priority: u8, at_ms: u64) -> Peer {
        Peer {
            node: from,
            role,
            priority,
            boot: 1,
            heard_ns: at_ms * MS,
        }
    }

    #[test]
    fn a_lone_router_becomes_active_after_the_dead_time() {
        let mut e = node(A, 100, false);
        assert_eq!(e.on_tick(499 * MS), None);
        let t = e.on_tick(500 * MS).unwrap();
        assert_eq!((t.from, t.to), (Role::Backup, Role::Active));
        assert_eq!(t.reason, "no peer heard in 500 ms since start");
        assert_eq!(e.on_tick(10_000 * MS), None);
    }

    #[test]
    fn the_backup_takes_over_when_the_active_falls_silent() {
        let mut e = node(B, 100, false);
        for ms in (0..2000).step_by(100) {
            assert_eq!(e.on_heartbeat(hb(A, Role::Active, 100, ms)), None);
            assert_eq!(e.on_tick(ms * MS + 50 * MS), None, "at {ms} ms");
        }
        // The last heartbeat was at 1900 ms.
        assert_eq!(e.on_tick(2399 * MS), None);
        let t = e.on_tick(2400 * MS).unwrap();
        assert_eq!(t.to, Role::Active);
        assert_eq!(t.reason, "no heartbeat from peer 198.18.1.3 for 500 ms");
    }

    #[test]
    fn a_recovered_router_stays_backup_without_preemption() {
        // B restarts with a higher priority while A is active.
        let mut b = node(B, 200, false);
        b.on_heartbeat(hb(A, Role::Active, 100, 10));
        for ms in (100..3000).step_by(100) {
            b.on_heartbeat(hb(A, Role::Active, 100, ms));
            assert_eq!(b.on_tick(ms * MS), None);
        }
        assert_eq!(b.role(), Role::Backup);
        // With preemption it takes over at the first heartbeat it hears.
        let mut b = node(B, 200, true);
        let t = b.on_heartbeat(hb(A, Role::Active, 100, 10)).unwrap();
        assert_eq!(t.to, Role::Active);
        assert!(t.reason.starts_with("preempting active peer 198.18.1.3"));
        // And the old active steps down when it hears the new one.
        let mut a = node(A, 100, false);
        a.on_tick(600 * MS);
        assert_eq!(a.role(), Role::Active);
        let t = a.on_heartbeat(hb(B, Role::Active, 200, 700)).unwrap();
        assert_eq!(t.to, Role::Backup);
    }

    #[test]
    fn a_healed_split_keeps_the_higher_rank_active() {
        // Equal priorities: the higher address (B) wins.
        let mut a = node(A, 100, false);
        let mut b = node(B, 100, false);
        a.on_tick(600 * MS);
        b.on_tick(600 * MS);
        assert_eq!((a.role(), b.role()), (Role::Active, Role::Active));
        assert_eq!(b.on_heartbeat(hb(A, Role::Active, 100, 700)), None);
        let t = a.on_heartbeat(hb(B, Role::Active, 100, 700)).unwrap();
        assert_eq!(t.to, Role::Backup);
        assert!(t.reason.contains("outranks us"), "{}", t.reason);
        // Priority beats address.
        let mut a = node(A, 150, false);
        a.on_tick(600 * MS);
        assert_eq!(a.on_heartbeat(hb(B, Role::Active, 100, 700)), None);
        assert_eq!(a.role(), Role::Active);
    }

    #[test]
    fn two_backups_starting_together_elect_the_higher_rank() {
        let mut a = node(A, 100, false);
        let mut b = node(B, 100, false);
        for ms in (0..=600).step_by(100) {
            a.on_heartbeat(hb(B, b.role(), 100, ms));
            b.on_heartbeat(hb(A, a.role(), 100, ms));
            a.on_tick(ms * MS);
            b.on_tick(ms * MS);
        }
        assert_eq!((a.role(), b.role()), (Role::Backup, Role::Active));
    }

    #[test]
    fn stale_and_replayed_messages_are_refused() {
        let mut f = Freshness::default();
        assert_eq!(f.admit(5, 1), Admission::Fresh);
        assert_eq!(f.admit(5, 2), Admission::Fresh);
        assert_eq!(f.admit(5, 2), Admission::Late, "a copy from another link");
        assert_eq!(f.admit(5, 1), Admission::Late, "overtaken on the way");
        assert_eq!(f.admit(5, 100), Admission::Fresh);
        assert_eq!(f.admit(5, 1), Admission::Stale, "replayed long after");
        assert_eq!(f.admit(4, 99), Admission::Stale, "an earlier boot");
        assert_eq!(f.admit(6, 0), Admission::Fresh, "the peer restarted");
    }
}
