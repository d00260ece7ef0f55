//! The control API: one JSON request per line on a root-only Unix socket,
//! one JSON response line back (for `ListPacked`, a header line and the
//! packed snapshot, `packed.rs`). `lvsadm` is its main client.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::Ipv4Addr,
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use lvs_common::{tcp_state::ConnState, Counters};
use serde::{Deserialize, Serialize};

use lvs_common::Timeouts;
use lvs_ha::wire::Role;

use crate::{
    health::ServiceHealth,
    model::{Command, RealSpec, ServiceId, ServiceSpec},
};

/// Where `lvsd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lvs/lvsd.sock";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
pub enum Request {
    /// Apply commands as one transaction.
    Apply { commands: Vec<Command> },
    /// `-Z`: one service, or everything.
    Zero { service: Option<ServiceId> },
    /// Everything `-L` and `-S` print.
    List,
    /// `List`, answered in the packed form (`packed.rs`): what lvsadm asks.
    /// Without `counters`, stats and rates are left at zero (unread): the
    /// plain listing does not show them.
    ListPacked { counters: bool },
    /// `--set tcp tcpfin udp`: a 0 leaves that timeout unchanged.
    SetTimeouts(IpvsTimeouts),
    /// `-L --timeout`.
    Timeouts,
    /// `lvsadm ha`: the router pair's state.
    Ha,
    /// `-L -c`: live connection entries and persistence templates.
    Connections,
    /// `lvsadm datapath`: each interface's director and every verdict count.
    Datapath,
    /// `lvsadm reload` (and SIGHUP): read the configuration file again and
    /// apply what changed, as one transaction.
    Reload,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Response {
    Ok,
    Snapshot(Snapshot),
    /// The header of a packed snapshot: `bytes` of it follow the line.
    PackedSnapshot {
        bytes: usize,
    },
    Timeouts(IpvsTimeouts),
    Ha(HaView),
    /// A struct variant: the tagged encoding cannot carry a bare list.
    Connections {
        rows: Vec<ConnView>,
    },
    Datapath(DatapathView),
    /// A reload applied: each change made, as a line (none when the file
    /// is what runs), and what the file has that was ignored.
    Reloaded {
        changes: Vec<String>,
        warnings: Vec<String>,
    },
    Error {
        message: String,
    },
}

/// What `lvsadm datapath` shows (ipvsadm has no such listing).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatapathView {
    /// Which director each interface runs, and why.
    pub interfaces: Vec<AttachmentView>,
    /// Every verdict counter by name, forwarded and not.
    pub verdicts: Vec<(String, u64)>,
    /// Half-open entries evicted by newer SYNs (the SYN-flood defence).
    #[serde(default)]
    pub half_open_evicted: u64,
    /// ICMP errors about TCP and UDP packets, by what became of them.
    #[serde(default)]
    pub icmp_errors: Vec<(String, u64)>,
    /// What keeps configured services from working (a sysctl, ...).
    pub warnings: Vec<String>,
    /// `lvsd --sloppy-tcp`: any TCP segment without an entry is scheduled.
    #[serde(default)]
    pub sloppy_tcp: bool,
}

impl DatapathView {
    /// The listing, aligned for reading.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from("Interface        Datapath Mode     Why\n");
        let sloppy = if self.sloppy_tcp { "on" } else { "off" };
        for a in &self.interfaces {
            let _ = writeln!(
                out,
                "{:<16} {:<8} {:<8} {}",
                a.iface, a.datapath, a.mode, a.reason
            );
        }
        out.push_str("Verdict                        Packets\n");
        for (name, count) in &self.verdicts {
            let _ = writeln!(out, "{name:<30} {count}");
        }
        let _ = writeln!(
            out,
            "Half-open entries evicted by newer SYNs: {}",
            self.half_open_evicted
        );
        out.push_str("ICMP error                     Packets\n");
        for (name, count) in &self.icmp_errors {
            let _ = writeln!(out, "{name:<30} {count}");
        }
        let _ = writeln!(
            out,
            "Sloppy TCP (mid-flow segments start connections): {sloppy}"
        );
        for w in &self.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
        out
    }
}

/// How the director is attached to one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub iface: String,
    pub ifindex: u32,
    /// "xdp" or "tc".
    pub datapath: String,
    /// "native" or "generic" for XDP; "tcx" or "netlink" for tc.
    pub mode: String,
    /// Why this datapath.
    pub reason: String,
}

/// Refill latency: from the datapath's low-water signal to the new ring
/// being live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefillStats {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Over the last `RECENT_REFILLS` refills.
    #[serde(default)]
    pub p99_ns: u64,
}

/// How many of the latest refills the percentile is taken over.
pub const RECENT_REFILLS: usize = 1024;

impl RefillStats {
    pub fn record(&mut self, latency_ns: u64) {
        self.count += 1;
        self.total_ns += latency_ns;
        self.max_ns = self.max_ns.max(latency_ns);
    }
}

/// One row of `ipvsadm -L -c`: a connection entry, or a persistence
/// template (source port 0, state `NONE`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnView {
    pub protocol: crate::model::Protocol,
    /// Seconds until it expires unless a packet (or, for a template, a new
    /// connection) renews it.
    pub expire_s: u64,
    pub state: String,
    pub source: std::net::SocketAddr,
    pub virtual_addr: std::net::SocketAddr,
    pub destination: std::net::SocketAddr,
}

/// One router of the pair, as `lvsadm ha` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaView {
    pub role: Role,
    pub node: Ipv4Addr,
    pub priority: u8,
    pub preempt: bool,
    /// The floating addresses, taken while active.
    pub addresses: Vec<String>,
    pub peer: Option<HaPeerView>,
    pub last_transition: Option<HaTransitionView>,
    pub counters: HaCounters,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaPeerView {
    pub node: Ipv4Addr,
    pub role: Role,
    pub priority: u8,
    pub heard_ms_ago: u64,
    /// Heard within the dead time.
    pub alive: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaTransitionView {
    pub from: Role,
    pub to: Role,
    pub reason: String,
    pub ms_ago: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaCounters {
    pub heartbeats_sent: u64,
    pub heartbeats_received: u64,
    /// Failed authentication (a wrong key, a forged or damaged message).
    pub rejected_auth: u64,
    /// Authentic but from an address that is not the peer's on that link.
    pub rejected_source: u64,
    /// Authentic but older than the latest from the peer (a replay).
    pub rejected_stale: u64,
    pub sync_records_sent: u64,
    pub sync_records_received: u64,
    /// Records written into the connection table (ones for services or
    /// servers this router lacks are skipped).
    pub sync_records_applied: u64,
    pub full_resyncs_sent: u64,
    pub takeovers: u64,
}

/// ipvsadm's bound on every timeout it takes (`MAX_TIMEOUT`, 31 days).
pub const MAX_TIMEOUT: u32 = 31 * 86400;

/// The three timeouts ipvsadm can see and set (reference §3.5): `tcp` is
/// ESTABLISHED, `tcpfin` FIN_WAIT and `udp` UDP's only state. The other
/// states keep their defaults, as in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpvsTimeouts {
    pub tcp: u32,
    #[serde(rename = "tcpfin")]
    pub tcp_fin: u32,
    pub udp: u32,
}

/// A `--set` value the kernel would refuse; nothing is changed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "invalid {field} timeout `{value}`: expected 0..={MAX_TIMEOUT} seconds (0 leaves it unchanged)"
)]
pub struct TimeoutError {
    /// `tcp`, `tcpfin` or `udp`, as ipvsadm names them.
    pub field: &'static str,
    pub value: String,
}

impl IpvsTimeouts {
    /// What `-L --timeout` shows of the per-state table.
    pub fn of(table: &Timeouts) -> Self {
        Self {
            tcp: table[ConnState::Established as usize],
            tcp_fin: table[ConnState::FinWait as usize],
            udp: table[ConnState::Udp as usize],
        }
    }

    /// One `--set` value, named by its field: a number of seconds in range.
    pub fn parse_value(field: &'static str, text: &str) -> Result<u32, TimeoutError> {
        let bad = || TimeoutError {
            field,
            value: text.to_string(),
        };
        let seconds: u32 = text.parse().map_err(|_| bad())?;
        if seconds > MAX_TIMEOUT {
            return Err(bad());
        }
        Ok(seconds)
    }

    /// `table` with this `--set` applied: each non-zero value replaces its
    /// state's timeout, a zero leaves it alone (`ip_vs_set_timeout`). Checked
    /// whole first, so a bad value changes nothing.
    pub fn applied_to(self, table: &Timeouts) -> Result<Timeouts, TimeoutError> {
        let Self { tcp, tcp_fin, udp } = self;
        let cells = [
            ("tcp", tcp, ConnState::Established),
            ("tcpfin", tcp_fin, ConnState::FinWait),
            ("udp", udp, ConnState::Udp),
        ];
        let mut next = *table;
        for (field, seconds, state) in cells {
            // Requests may come from clients other than lvsadm.
            if seconds > MAX_TIMEOUT {
                return Err(TimeoutError {
                    field,
                    value: seconds.to_string(),
                });
            }
            if seconds != 0 {
                next[state as usize] = seconds;
            }
        }
        Ok(next)
    }
}

/// `ipvsadm --stats` counters, after `-Z` baselines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Stats {
    pub fn since(raw: Counters, baseline: Option<&Counters>) -> Self {
        let Counters {
            conns,
            in_packets,
            out_packets,
            in_bytes,
            out_bytes,
        } = raw;
        let b = baseline.copied().unwrap_or_default();
        Self {
            conns: conns.saturating_sub(b.conns),
            in_packets: in_packets.saturating_sub(b.in_packets),
            out_packets: out_packets.saturating_sub(b.out_packets),
            in_bytes: in_bytes.saturating_sub(b.in_bytes),
            out_bytes: out_bytes.saturating_sub(b.out_bytes),
        }
    }
}

/// `ipvsadm --rate`: the rate estimator's per-second averages (see
/// `rate`). Absent from an older lvsd's answer, so they default to 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rates {
    /// Connections per second.
    pub cps: u64,
    pub in_pps: u64,
    pub out_pps: u64,
    /// Bytes (not bits) per second.
    pub in_bps: u64,
    pub out_bps: u64,
}

/// `RealView` as it arrives, its spec's fields listed rather than
/// `flatten`ed: serde buffers every flattened struct before reading it,
/// which made a 110,000-server listing cost lvsadm most of a second. The
/// shape is the same (`views_read_back_what_they_wrote` checks it).
#[derive(Deserialize)]
struct RealViewFields {
    server: crate::model::Endpoint,
    method: crate::model::Method,
    weight: u32,
    u_threshold: u32,
    l_threshold: u32,
    active_conns: u32,
    inactive_conns: u32,
    #[serde(default)]
    persistent_conns: u32,
    stats: Stats,
    #[serde(default)]
    rates: Rates,
    #[serde(default)]
    health: Option<HealthView>,
}

impl From<RealViewFields> for RealView {
    fn from(f: RealViewFields) -> Self {
        RealView {
            spec: RealSpec {
                server: f.server,
                method: f.method,
                weight: f.weight,
                u_threshold: f.u_threshold,
                l_threshold: f.l_threshold,
            },
            active_conns: f.active_conns,
            inactive_conns: f.inactive_conns,
            persistent_conns: f.persistent_conns,
            stats: f.stats,
            rates: f.rates,
            health: f.health,
        }
    }
}

/// `ServiceView` as it arrives (see `RealViewFields`).
#[derive(Deserialize)]
struct ServiceViewFields {
    id: ServiceId,
    scheduler: lvs_sched::SchedulerName,
    #[serde(default)]
    flags: lvs_sched::SchedFlags,
    #[serde(default)]
    persistence: Option<crate::model::Persistence>,
    stats: Stats,
    #[serde(default)]
    rates: Rates,
    reals: Vec<RealView>,
    #[serde(default)]
    health: ServiceHealth,
}

impl From<ServiceViewFields> for ServiceView {
    fn from(f: ServiceViewFields) -> Self {
        ServiceView {
            spec: ServiceSpec {
                id: f.id,
                scheduler: f.scheduler,
                flags: f.flags,
                persistence: f.persistence,
            },
            stats: f.stats,
            rates: f.rates,
            reals: f.reals,
            health: f.health,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RealViewFields")]
pub struct RealView {
    #[serde(flatten)]
    pub spec: RealSpec,
    pub active_conns: u32,
    pub inactive_conns: u32,
    /// Live persistence templates that lead here (IPVS's `persistconns`,
    /// `--persistent-conn`'s PersistConn); 0 in a non-persistent service.
    #[serde(default)]
    pub persistent_conns: u32,
    pub stats: Stats,
    #[serde(default)]
    pub rates: Rates,
    /// For servers with checkers or an agent, and the sorry server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
}

/// A real server's health as `-L` shows it. `weight` (the configured one)
/// stays in the `RealView`; this says what the scheduler is given.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthView {
    /// `up`, `down` (out of scheduling), `inhibited` (down, at weight 0),
    /// `drain` (the agent asked for weight 0), `standby` (alive, while the
    /// sorry server still stands in) or `sorry` (the sorry server, in
    /// service because every real server is down).
    pub state: String,
    /// The check (or agent) that took the server out, and its failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent's last weight, in percent of the configured weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_percent: Option<u32>,
    /// How far slow start has gone, while it lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_percent: Option<u32>,
    /// The weight checks set, while an `exec` (dynamic) or `file` check
    /// moves it: keepalived's effective weight, the configured one plus
    /// their adjustments, within 0..=2147483647. The agent's percentage and
    /// slow start then apply to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dynamic_weight: Option<u32>,
    /// The weight the scheduler is given (scaled by 100 while an agent or
    /// slow start adjusts a wrr/wlc/sed/nq service); `None` when out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_weight: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ServiceViewFields")]
pub struct ServiceView {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub stats: Stats,
    #[serde(default)]
    pub rates: Rates,
    /// In IPVS list order; the sorry server last, while it stands in.
    pub reals: Vec<RealView>,
    #[serde(default, skip_serializing_if = "ServiceHealth::is_default")]
    pub health: ServiceHealth,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub conn_table_size: u32,
    pub services: Vec<ServiceView>,
    /// Datapath verdict counters by name.
    pub verdicts: Vec<(String, u64)>,
    /// How fast low-water signals were answered.
    pub refills: RefillStats,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach lvsd at {path}: {source} (is lvsd running? set --socket or LVSADM_SOCKET)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to lvsd at {path} failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lvsd sent a malformed response: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Send one request and wait for its response.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reader = BufReader::new(stream);
    let mut reply = String::new();
    reader.read_line(&mut reply).map_err(io)?;
    match serde_json::from_str(&reply)? {
        Response::PackedSnapshot { bytes } => {
            let mut packed = vec![0; bytes];
            reader.read_exact(&mut packed).map_err(io)?;
            let snapshot = crate::packed::unpack(&packed).map_err(|e| ClientError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
            Ok(Response::Snapshot(snapshot))
        }
        response => Ok(response),
    }
}

#[cfg(test)]
mod tests {
    use lvs_common::tcp_state::DEFAULT_TIMEOUTS;

    use super::*;

    #[test]
    fn timeouts_show_the_three_ipvsadm_cells() {
        assert_eq!(
            IpvsTimeouts::of(&DEFAULT_TIMEOUTS),
            IpvsTimeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }
        );
    }

    #[test]
    fn set_timeouts_zero_leaves_a_cell_unchanged() {
        let set = IpvsTimeouts {
            tcp: 3600,
            tcp_fin: 0,
            udp: 60,
        };
        let next = set.applied_to(&DEFAULT_TIMEOUTS).unwrap();
        assert_eq!(
            IpvsTimeouts::of(&next),
            IpvsTimeouts {
                tcp: 3600,
                tcp_fin: 120,
                udp: 60
            }
        );
        // Only ESTABLISHED, FIN_WAIT and UDP move; TIME_WAIT keeps 120 s.
        let moved: Vec<usize> = (0..next.len())
            .filter(|&i| next[i] != DEFAULT_TIMEOUTS[i])
            .collect();
        assert_eq!(
            moved,
            [ConnState::Established as usize, ConnState::Udp as usize]
        );
        let none = IpvsTimeouts {
            tcp: 0,
            tcp_fin: 0,
            udp: 0,
        };
        assert_eq!(
            none.applied_to(&DEFAULT_TIMEOUTS).unwrap(),
            DEFAULT_TIMEOUTS
        );
    }

    #[test]
    fn bad_timeouts_name_their_field() {
        let too_long = IpvsTimeouts {
            tcp: 1,
            tcp_fin: MAX_TIMEOUT + 1,
            udp: 1,
        };
        assert_eq!(
            too_long.applied_to(&DEFAULT_TIMEOUTS).unwrap_err().to_string(),
            "invalid tcpfin timeout `2678401`: expected 0..=2678400 seconds (0 leaves it unchanged)"
        );
        for bad in ["-1", "x", "1.5", "", "2678401", "99999999999"] {
            let err = IpvsTimeouts::parse_value("udp", bad).unwrap_err();
            assert_eq!(
                err,
                TimeoutError {
                    field: "udp",
                    value: bad.to_string()
                }
            );
        }
        assert_eq!(IpvsTimeouts::parse_value("tcp", "2678400"), Ok(MAX_TIMEOUT));
        assert_eq!(IpvsTimeouts::parse_value("tcp", "0"), Ok(0));
    }

    #[test]
    fn json_views_carry_persistence_and_flags() {
        let view = ServiceView {
            spec: ServiceSpec {
                id: ServiceId {
                    protocol: crate::model::Protocol::Tcp,
                    vip: "198.18.0.10:0".parse().unwrap(),
                },
                scheduler: lvs_sched::SchedulerName::Rr,
                flags: lvs_sched::SchedFlags {
                    fallback: true,
                    port: false,
                    ipvs_order: false,
                },
                persistence: Some(crate::model::Persistence {
                    timeout: 360,
                    prefix: 24,
                }),
            },
            stats: Stats::default(),
            rates: Rates::default(),
            reals: vec![],
            health: ServiceHealth::default(),
        };
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(
            json["persistence"],
            serde_json::json!({"timeout": 360, "prefix": 24})
        );
        assert_eq!(
            json["flags"],
            serde_json::json!({"fallback": true, "port": false, "ipvs_order": false})
        );
        assert_eq!(serde_json::from_value::<ServiceView>(json).unwrap(), view);
    }

    #[test]
    fn views_from_an_lvsd_without_rates_still_read() {
        let real = RealView {
            spec: RealSpec {
                server: "198.18.11.2:8080".parse().unwrap(),
                method: crate::model::Method::Nat,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            },
            active_conns: 1,
            inactive_conns: 2,
            persistent_conns: 3,
            stats: Stats::default(),
            rates: Rates {
                cps: 4,
                ..Rates::default()
            },
            health: None,
        };
        let mut json = serde_json::to_value(&real).unwrap();
        assert_eq!(
            (
                json["persistent_conns"].as_u64(),
                json["rates"]["cps"].as_u64()
            ),
            (Some(3), Some(4))
        );
        let fields = json.as_object_mut().unwrap();
        fields.remove("rates");
        fields.remove("persistent_conns");
        let old: RealView = serde_json::from_value(json).unwrap();
        assert_eq!((old.rates, old.persistent_conns), (Rates::default(), 0));
        assert_eq!(old.active_conns, 1);
    }

    /// Every field of a listing, each set, reads back as it was written.
    #[test]
    fn views_read_back_what_they_wrote() {
        let stats = Stats {
            conns: 1,
            in_packets: 2,
            out_packets: 3,
            in_bytes: 4,
            out_bytes: 5,
        };
        let rates = Rates {
            cps: 6,
            in_pps: 7,
            out_pps: 8,
            in_bps: 9,
            out_bps: 10,
        };
        let real = RealView {
            spec: RealSpec {
                server: "198.18.11.2:8080".parse().unwrap(),
                method: crate::model::Method::Tunnel,
                weight: 3,
                u_threshold: 40,
                l_threshold: 20,
            },
            active_conns: 11,
            inactive_conns: 12,
            persistent_conns: 13,
            stats,
            rates,
            health: Some(HealthView {
                state: "down".into(),
                reason: Some("check 1: refused".into()),
                agent_percent: Some(50),
                slow_start_percent: Some(30),
                dynamic_weight: Some(5),
                scheduled_weight: Some(150),
            }),
        };
        let view = ServiceView {
            spec: ServiceSpec {
                id: ServiceId {
                    protocol: crate::model::Protocol::Udp,
                    vip: "198.18.0.10:53".parse().unwrap(),
                },
                scheduler: lvs_sched::SchedulerName::Sh,
                flags: lvs_sched::SchedFlags {
                    fallback: true,
                    port: true,
                    ipvs_order: false,
                },
                persistence: Some(crate::model::Persistence {
                    timeout: 360,
                    prefix: 24,
                }),
            },
            stats,
            rates,
            reals: vec![real],
            health: ServiceHealth {
                sorry: Some(crate::health::SorryServer {
                    server: "198.18.12.2:53".parse().unwrap(),
                    method: crate::model::Method::Route,
                }),
                slow_start: Some(30),
                quorum: Some(2),
                ..ServiceHealth::default()
            },
        };
        let text = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<ServiceView>(&text).unwrap(), view);
        // Flat, as lvsadm --json prints it.
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["scheduler"], "sh");
        assert_eq!(json["reals"][0]["u_threshold"], 40);
    }

    #[test]
    fn timeout_requests_have_a_stable_wire_form() {
        let set = Request::SetTimeouts(IpvsTimeouts {
            tcp: 900,
            tcp_fin: 0,
            udp: 300,
        });
        assert_eq!(
            serde_json::to_string(&set).unwrap(),
            r#"{"request":"set_timeouts","tcp":900,"tcpfin":0,"udp":300}"#
        );
        let back: Request = serde_json::from_str(r#"{"request":"timeouts"}"#).unwrap();
        assert!(matches!(back, Request::Timeouts));
    }
}
