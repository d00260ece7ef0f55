//! The IPVS scheduling algorithms, run by the controller (never in XDP).
//!
//! Each scheduler sees its service's real servers in IPVS list order (newest
//! first) and keeps its own state between picks, exactly as the kernel's
//! `ip_vs_*_schedule` functions do. `publish` drives them to produce rings.

#![forbid(unsafe_code)]

mod hashing;
mod least;
pub mod locality;
mod maglev;
pub mod publish;
mod rr;
pub mod simulate;
mod wrr;

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// What a scheduler needs to know about one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dest {
    /// Stable identity (the datapath's real index), so state survives edits.
    pub id: u32,
    /// The server's address and port: what mh hashes, and its order.
    pub addr: std::net::IpAddr,
    pub port: u16,
    pub weight: u32,
    pub overloaded: bool,
    /// Connections in an active state (ActiveConn).
    pub active: u32,
    /// Connections in an inactive state (InActConn).
    pub inactive: u32,
    /// `-x`: the total at which a new connection sets OVERLOAD (0: none).
    pub u_threshold: u32,
    /// The kernel's `last_weight` (mh), when whoever lists the servers
    /// keeps it: the weight the server was added with, or its latest
    /// non-zero one. `None`: the scheduler follows it through its updates.
    pub last_weight: Option<u32>,
}

impl Default for Dest {
    fn default() -> Self {
        Self {
            id: 0,
            addr: std::net::Ipv4Addr::UNSPECIFIED.into(),
            port: 0,
            weight: 0,
            overloaded: false,
            active: 0,
            inactive: 0,
            u_threshold: 0,
            last_weight: None,
        }
    }
}

impl Dest {
    /// Not quiescent and not over its threshold.
    pub const fn eligible(&self) -> bool {
        self.weight > 0 && !self.overloaded
    }

    /// `ip_vs_dest_conn_overhead`: an active connection weighs 256 inactive ones.
    pub const fn overhead(&self) -> u64 {
        ((self.active as u64) << 8) + self.inactive as u64
    }
}

/// The packet a new connection starts with, as the hashing and locality
/// schedulers see it; `now` is in seconds, for lblc/lblcr's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub client: std::net::IpAddr,
    pub client_port: u16,
    pub destination: std::net::IpAddr,
    pub now: u64,
}

impl Default for Request {
    fn default() -> Self {
        Self {
            client: std::net::Ipv4Addr::UNSPECIFIED.into(),
            client_port: 0,
            destination: std::net::Ipv4Addr::UNSPECIFIED.into(),
            now: 0,
        }
    }
}

/// Service flags that change how sh and mh hash and fail (`-b`): the
/// kernel's `IP_VS_SVC_F_SCHED1..3`, which each scheduler names its own way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedFlags {
    /// `sh-fallback`, `mh-fallback` (`flag-1`): look further when the
    /// hashed server is unusable.
    #[serde(default, alias = "sh_fallback")]
    pub fallback: bool,
    /// `sh-port`, `mh-port` (`flag-2`): hash the source port too.
    #[serde(default, alias = "sh_port")]
    pub port: bool,
    /// `mh-ipvs-order` (`flag-3`, which the kernel's mh ignores): fill the
    /// mh table in the order servers were added, as the kernel does, for a
    /// fleet that mixes kernel IPVS directors in; by default servers take
    /// their turns in address order, so every director builds the same
    /// table from the same servers.
    #[serde(default)]
    pub ipvs_order: bool,
}

pub trait Scheduler: SchedulerState + Send + fmt::Debug {
    /// The server list changed (IPVS's add/del/upd_dest hooks); `old` is the
    /// list before the change.
    fn update(&mut self, old: &[Dest], new: &[Dest]);
    /// One scheduling decision: an index into `dests`, or `None`.
    fn pick(&mut self, dests: &[Dest], request: &Request) -> Option<usize>;
    /// sh and dh: the bucket table the datapath indexes, each bucket
    /// resolved for the servers' current eligibility.
    fn buckets(&self, _dests: &[Dest]) -> Option<Vec<Option<usize>>> {
        None
    }
    /// lblc and lblcr: the destination table the controller keeps in step
    /// with the datapath's.
    fn locality(&mut self) -> Option<&mut locality::Locality> {
        None
    }
}

/// Copying and comparing scheduler states behind `dyn Scheduler`; every
/// `Clone + PartialEq` scheduler gets it for free.
pub trait SchedulerState {
    fn clone_box(&self) -> Box<dyn Scheduler>;
    /// Equal states schedule identically from here on (used to find periods).
    fn same_state(&self, other: &dyn Scheduler) -> bool;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: Scheduler + Clone + PartialEq + 'static> SchedulerState for T {
    fn clone_box(&self) -> Box<dyn Scheduler> {
        Box::new(self.clone())
    }
    fn same_state(&self, other: &dyn Scheduler) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl Clone for Box<dyn Scheduler> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// The IPVS scheduler names `-s` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SchedulerName {
    Rr,
    Wrr,
    Lc,
    Wlc,
    Lblc,
    Lblcr,
    Dh,
    Sh,
    Sed,
    Nq,
    Mh,
}

impl SchedulerName {
    pub const ALL: [SchedulerName; 11] = [
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Lblc,
        Self::Lblcr,
        Self::Dh,
        Self::Sh,
        Self::Sed,
        Self::Nq,
        Self::Mh,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Lblc => "lblc",
            Self::Lblcr => "lblcr",
            Self::Dh => "dh",
            Self::Sh => "sh",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Mh => "mh",
        }
    }

    /// Whether picks depend on connection counts: the ring must then be
    /// refilled when counts change.
    pub const fn counts_connections(self) -> bool {
        matches!(self, Self::Lc | Self::Wlc | Self::Sed | Self::Nq)
    }

    /// The publication form the datapath reads this scheduler's decisions in.
    pub const fn form(self) -> lvs_common::Form {
        match self {
            Self::Rr | Self::Wrr | Self::Lc | Self::Wlc | Self::Sed | Self::Nq => {
                lvs_common::Form::Ring
            }
            Self::Sh | Self::Dh => lvs_common::Form::Buckets,
            Self::Mh => lvs_common::Form::Maglev,
            Self::Lblc | Self::Lblcr => lvs_common::Form::Locality,
        }
    }

    /// A fresh scheduler state (IPVS `init_service`).
    pub fn instantiate(self, dests: &[Dest], flags: SchedFlags) -> Box<dyn Scheduler> {
        match self {
            Self::Rr => Box::new(rr::Rr::default()),
            Self::Wrr => Box::new(wrr::Wrr::new(dests)),
            Self::Lc => Box::new(least::Least::lc()),
            Self::Wlc => Box::new(least::Least::wlc()),
            Self::Sed => Box::new(least::Least::sed()),
            Self::Nq => Box::new(least::Least::nq()),
            Self::Sh => Box::new(hashing::Hashing::sh(dests, flags)),
            Self::Dh => Box::new(hashing::Hashing::dh(dests)),
            Self::Mh => Box::new(maglev::Maglev::new(dests, flags)),
            Self::Lblc => Box::new(locality::Locality::lblc()),
            Self::Lblcr => Box::new(locality::Locality::lblcr()),
        }
    }
}

impl fmt::Display for SchedulerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown scheduler `{0}` (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh)"
)]
pub struct UnknownScheduler(pub String);

impl FromStr for SchedulerName {
    type Err = UnknownScheduler;
    fn from_str(s: &str) -> Result<Self, UnknownScheduler> {
        Self::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownScheduler(s.to_string()))
    }
}

impl TryFrom<String> for SchedulerName {
    type Error = UnknownScheduler;
    fn try_from(s: String) -> Result<Self, UnknownScheduler> {
        s.parse()
    }
}

impl From<SchedulerName> for String {
    fn from(n: SchedulerName) -> String {
        n.as_str().to_string()
    }
}

/// Walk order shared by rr and wrr: the position after `cursor` (`None` is
/// the list head, so the walk starts at the first element).
fn after(cursor: Option<u32>, dests: &[Dest]) -> usize {
    cursor
        .and_then(|id| dests.iter().position(|d| d.id == id))
        .map_or(0, |i| i + 1)
}

/// A `-b` flag ipvsadm would refuse (`parse_sched_flags`), or one with no
/// representation here.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    #[error("invalid scheduler flag `{0}` (expected sh-fallback, sh-port, mh-fallback, mh-port, mh-ipvs-order, flag-1, flag-2 or flag-3)")]
    Unknown(String),
    #[error("incompatible scheduler flag `{flag}`: only the {needs} scheduler takes it")]
    Incompatible { flag: String, needs: &'static str },
}

/// ipvsadm's `-b` list, in its order of checks. `flag-1..3` are the raw
/// bits sh and mh read under their own names (`IP_VS_SVC_F_SCHED1..3`), so
/// they are stored as those and accepted with any scheduler, as ipvsadm
/// does; the named flags need their scheduler (`mh-ipvs-order` is ours,
/// `flag-3` under mh). Empty items are skipped, as `strtok` skips them.
pub fn sched_flags<'a>(
    scheduler: SchedulerName,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<SchedFlags, FlagError> {
    let mut flags = SchedFlags::default();
    for name in names.into_iter().filter(|n| !n.is_empty()) {
        let needs = |wanted: SchedulerName| {
            if scheduler == wanted {
                Ok(())
            } else {
                Err(FlagError::Incompatible {
                    flag: name.to_string(),
                    needs: wanted.as_str(),
                })
            }
        };
        match name {
            "flag-1" => flags.fallback = true,
            "flag-2" => flags.port = true,
            "flag-3" => flags.ipvs_order = true,
            "sh-fallback" | "mh-fallback" => {
                needs(if name == "sh-fallback" {
                    SchedulerName::Sh
                } else {
                    SchedulerName::Mh
                })?;
                flags.fallback = true;
            }
            "sh-port" | "mh-port" => {
                needs(if name == "sh-port" {
                    SchedulerName::Sh
                } else {
                    SchedulerName::Mh
                })?;
                flags.port = true;
            }
            "mh-ipvs-order" => {
                needs(SchedulerName::Mh)?;
                flags.ipvs_order = true;
            }
            other => return Err(FlagError::Unknown(other.to_string())),
        }
    }
    Ok(flags)
}

/// Reference runs for tests, here and in lvsd's.
#[cfg(any(test, feature = "testing"))]
pub mod testing {
    use super::*;

    /// Build a list from `(label, weight, overloaded)` in IPVS order; ids are
    /// the label's letter, addresses 10.0.0.<letter>:80.
    pub fn dests(spec: &[(char, u32, bool)]) -> Vec<Dest> {
        spec.iter()
            .map(|&(c, weight, overloaded)| Dest {
                id: c as u32,
                addr: std::net::Ipv4Addr::new(10, 0, 0, c as u8).into(),
                port: 80,
                weight,
                overloaded,
                ..Dest::default()
            })
            .collect()
    }

    pub fn run(s: &mut dyn Scheduler, d: &[Dest], n: usize) -> String {
        (0..n)
            .map(|_| {
                s.pick(d, &Request::default())
                    .map_or('-', |i| char::from_u32(d[i].id).unwrap())
            })
            .collect()
    }

    /// Picks where every chosen server gains one active connection that
    /// never closes (the reference's "each pick adds one active connection").
    pub fn run_counting(s: &mut dyn Scheduler, d: &mut [Dest], n: usize) -> String {
        (0..n)
            .map(|_| match s.pick(d, &Request::default()) {
                Some(i) => {
                    d[i].active += 1;
                    char::from_u32(d[i].id).unwrap()
                }
                None => '-',
            })
            .collect()
    }

    /// A freshly configured service: the scheduler initialised with the
    /// whole list, as the reference's worked examples assume.
    pub fn configured(name: SchedulerName, list: &[Dest]) -> Box<dyn Scheduler> {
        name.instantiate(list, SchedFlags::default())
    }

    /// A service configured the way ipvsadm does it: created empty, then
    /// servers added one by one (each to the front), firing the hook.
    pub fn added_one_by_one(name: SchedulerName, list: &[Dest]) -> Box<dyn Scheduler> {
        let mut s = name.instantiate(&[], SchedFlags::default());
        let mut current: Vec<Dest> = Vec::new();
        for d in list.iter().rev() {
            let old = current.clone();
            current.insert(0, *d);
            s.update(&old, &current);
        }
        s
    }
}
