//! Every syscall lvs makes, and all of userspace's `unsafe`.
//!
//! * [`Datapath`]: what the controller asks of the director's maps. The
//!   kernel implementation (`kernel.rs`) loads, attaches and writes maps;
//!   the fake (`fake.rs`, feature `fake`) lets the controller's logic run
//!   without root.
//! * `standalone`: small XDP programs attached on their own (a real
//!   server's decapsulation, the bench's baselines);
//! * `netconf`: addresses, neighbours, routes, sysctls, gratuitous ARP;
//! * `realserver`: preparing a real server for DR and TUN.

mod announce;
mod family;
mod kernel;
mod limits;
mod mapped;
pub mod netconf;
pub mod previous;
pub mod process;
pub mod realserver;
mod standalone;

#[cfg(any(test, feature = "fake"))]
pub mod fake;

pub use family::Family;
pub use kernel::{
    clean, director_attached, handover_record, is_bpffs, Attachment, ConnChanges, DatapathChoice,
    KernelDatapath, Lifetime, Liveness, ProgramStats, TestRun,
};
pub use limits::Limits;
pub use standalone::{test_run_attached, StandaloneXdp, XdpAttachMode};

use std::net::IpAddr;

use lvs_common::{
    tcp_state::STATE_COUNT, Conn, ConnCounts, Counters, Event, FlowKey, IcmpCase, LocalityEntry,
    LocalityKey, NextHop, Real, ReplyKey, ReplyServices, Service, ServiceKey, Template,
    TemplateKey, Verdict,
};

#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    #[error("interface `{iface}` not found ({call}: {source})")]
    NoInterface {
        iface: String,
        call: &'static str,
        source: std::io::Error,
    },
    #[error("interface `{iface}` is in use by a running lvsd (pid {pid}, {record})")]
    InUse {
        iface: String,
        pid: i32,
        record: String,
    },
    #[error("{call} on `{path}` failed: {source}")]
    Record {
        call: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("attaching XDP to `{iface}` failed in native and generic mode: {source}")]
    Attach {
        iface: String,
        source: aya::programs::ProgramError,
    },
    #[error("attaching tc program `{program}` to `{iface}` ingress failed: {source}")]
    TcAttach {
        program: &'static str,
        iface: String,
        source: aya::programs::ProgramError,
    },
    #[error(
        "attaching the director to `{iface}` failed: an lvs director already runs on its tc \
         ingress (another lvsd?)"
    )]
    TcBusy { iface: String },
    #[error("{call} on `{iface}` failed: {source}")]
    Netlink {
        iface: String,
        call: &'static str,
        source: std::io::Error,
    },
    #[error("reading CLOCK_MONOTONIC failed (clock_gettime: {source})")]
    Clock { source: std::io::Error },
    #[error("loading the XDP object failed: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("loading program `{program}` failed: {source}")]
    Program {
        program: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("program `{program}` missing from the XDP object")]
    MissingProgram { program: &'static str },
    #[error("map `{map}` missing from the XDP object")]
    MissingMap { map: &'static str },
    #[error("{op} on map `{map}` failed: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        source: aya::maps::MapError,
    },
    #[error("adding `{iface}` to the egress devmap failed: {source}")]
    Egress {
        iface: String,
        source: aya::maps::xdp::XdpMapError,
    },
    #[error("{call} on map `{map}` failed: {source}")]
    Batch {
        call: &'static str,
        map: &'static str,
        source: std::io::Error,
    },
    #[error("reading the fdinfo of map `{map}` failed: {source}")]
    Fdinfo {
        map: &'static str,
        source: std::io::Error,
    },
    #[error("{0}")]
    Limits(#[from] limits::LimitsError),
    #[error("counting CPUs failed ({call}: {source})")]
    Cpus {
        call: &'static str,
        source: std::io::Error,
    },
}

/// Entries of a family's connection table, with their keys.
pub type ConnEntries<A> = Vec<(FlowKey<A>, Conn<A>)>;

/// A datapath notice (`EVENTS`, `EVENTS6`), its address of either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notice {
    /// `EventKind`.
    pub kind: u32,
    pub service_index: u32,
    pub addr: IpAddr,
    pub real_index: u32,
    /// `bpf_ktime_get_ns` when it happened.
    pub time_ns: u64,
}

impl<A: lvs_common::addr::Addr> From<Event<A>> for Notice {
    fn from(event: Event<A>) -> Self {
        Self {
            kind: event.kind,
            service_index: event.service_index,
            addr: event.addr().ip(),
            real_index: event.real_index,
            time_ns: event.time_ns,
        }
    }
}

/// The map operations the controller needs.
pub trait Datapath: Send {
    /// The table sizes the maps were created with.
    fn limits(&self) -> Limits;
    /// The settings the datapath was loaded with.
    fn settings(&self) -> lvs_common::Settings;
    fn set_service<A: Family>(
        &mut self,
        key: ServiceKey<A>,
        value: Service<A>,
    ) -> Result<(), DatapathError>;
    fn remove_service<A: Family>(&mut self, key: ServiceKey<A>) -> Result<(), DatapathError>;
    /// A real server's entry, in its family's array (the indexes are one
    /// space: an index is in one family's array at a time).
    fn set_real<A: Family>(&mut self, index: u32, real: Real<A>) -> Result<(), DatapathError>;
    /// Several real server entries at once, in order (a later entry for
    /// the same index wins).
    fn set_reals<A: Family>(&mut self, entries: &[(u32, Real<A>)]) -> Result<(), DatapathError> {
        for (index, real) in entries {
            self.set_real(*index, *real)?;
        }
        Ok(())
    }
    /// Write `picks` into consecutive ring slots from `base`.
    fn write_ring(&mut self, base: u32, picks: &[u32]) -> Result<(), DatapathError>;
    /// Write an sh/dh table into consecutive bucket slots from `base`.
    fn write_buckets(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError>;
    /// Hold exactly `vips` on the announcement device (`lvsd --announce`),
    /// for a routing daemon to announce; without one, nothing.
    fn announce(&mut self, vips: &std::collections::BTreeSet<IpAddr>) -> Result<(), DatapathError>;
    /// Write an mh table into consecutive `MAGLEV` slots from `base`.
    fn write_maglev(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError>;
    /// Every lblc/lblcr destination entry of family `A`.
    fn localities<A: Family>(&self) -> Result<Vec<(LocalityKey<A>, LocalityEntry)>, DatapathError>;
    fn set_locality<A: Family>(
        &mut self,
        key: LocalityKey<A>,
        entry: LocalityEntry,
    ) -> Result<(), DatapathError>;
    /// Remove an entry; one already gone is not an error.
    fn remove_locality<A: Family>(&mut self, key: &LocalityKey<A>) -> Result<(), DatapathError>;
    /// Every persistence template of family `A`.
    fn templates<A: Family>(&self) -> Result<Vec<(TemplateKey<A>, Template)>, DatapathError>;
    fn set_template<A: Family>(
        &mut self,
        key: TemplateKey<A>,
        template: Template,
    ) -> Result<(), DatapathError>;
    /// Remove a template; one already gone is not an error.
    fn remove_template<A: Family>(&mut self, key: &TemplateKey<A>) -> Result<(), DatapathError>;
    /// The notices the datapath queued since the last call, both
    /// families'.
    fn drain_events(&mut self) -> Result<Vec<Notice>, DatapathError>;
    /// How many picks the datapath has claimed from service `index`, ever.
    fn cursor(&self, index: u32) -> Result<u32, DatapathError>;
    /// The cursors of service indexes `0..count`, in one read.
    fn cursors_upto(&self, count: u32) -> Result<Vec<u32>, DatapathError> {
        (0..count).map(|i| self.cursor(i)).collect()
    }
    /// Counters summed over CPUs.
    fn service_counters(&self, index: u32) -> Result<Counters, DatapathError>;
    fn real_counters(&self, index: u32) -> Result<Counters, DatapathError>;
    /// The counters of indexes `0..count`, summed over CPUs, in one read.
    fn service_counters_upto(&self, count: u32) -> Result<Vec<Counters>, DatapathError> {
        (0..count).map(|i| self.service_counters(i)).collect()
    }
    fn real_counters_upto(&self, count: u32) -> Result<Vec<Counters>, DatapathError> {
        (0..count).map(|i| self.real_counters(i)).collect()
    }
    /// Zero the counters of a newly allocated service or real index.
    fn reset_service_counters(&mut self, index: u32) -> Result<(), DatapathError>;
    fn reset_real_counters(&mut self, index: u32) -> Result<(), DatapathError>;
    /// Start a newly allocated index's counters at `counters`: what the
    /// lvsd before this one counted for the same service or server.
    fn seed_service_counters(
        &mut self,
        index: u32,
        counters: Counters,
    ) -> Result<(), DatapathError>;
    fn seed_real_counters(&mut self, index: u32, counters: Counters) -> Result<(), DatapathError>;
    fn verdicts(&self) -> Result<Vec<(Verdict, u64)>, DatapathError>;
    /// Half-open entries evicted by newer SYNs (the SYN-flood defence).
    fn half_open_evicted(&self) -> Result<u64, DatapathError>;
    /// ICMP errors about TCP and UDP packets, by what became of them.
    fn icmp_errors(&self) -> Result<Vec<(IcmpCase, u64)>, DatapathError>;
    /// Every entry of a family's connection table (both directions of
    /// NAT flows): a walk of the whole table, for `-L -c`, a resync and
    /// tests.
    fn connections<A: Family>(&self) -> Result<ConnEntries<A>, DatapathError>;
    /// The next part of the table (at most about `max` entries) from
    /// `position`, which moves on, and starts over after the last part.
    fn connections_slice<A: Family>(
        &self,
        position: &mut TablePosition,
        max: usize,
    ) -> Result<ConnEntries<A>, DatapathError>;
    fn connection<A: Family>(&self, key: &FlowKey<A>) -> Result<Option<Conn<A>>, DatapathError>;
    /// Write an entry (connection sync from the peer router), in place of
    /// any with its key.
    fn set_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<(), DatapathError>;
    /// Add an entry unless its key is taken; whether it was added.
    fn add_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<bool, DatapathError>;
    /// Remove an entry and return it as it was at that instant.
    fn take_connection<A: Family>(
        &mut self,
        key: &FlowKey<A>,
    ) -> Result<Option<Conn<A>>, DatapathError>;
    /// Remove an entry; one already gone is not an error.
    fn remove_connection<A: Family>(&mut self, key: &FlowKey<A>) -> Result<(), DatapathError> {
        self.take_connection(key).map(drop)
    }
    /// Move `EGRESS_GENERATION` on: every cached way to a real server is
    /// looked up afresh by its next packet (routes or neighbours may have
    /// changed).
    fn renew_egress(&mut self) -> Result<(), DatapathError>;
    /// A NAT server's `REPLY_SERVICES` entry; `None` removes it.
    fn set_reply_services(
        &mut self,
        server: ReplyKey,
        services: Option<ReplyServices>,
    ) -> Result<(), DatapathError>;
    /// The `RELEVANT` bitmaps (lvs-common's `relevant_slot`), whole.
    fn set_relevant(&mut self, words: &[u32]) -> Result<(), DatapathError>;
    /// ActiveConn and InActConn of real indexes `0..count`, as the datapath
    /// keeps them: every change to the table moves them
    /// (`Conn::counted_as`), so this reads no entry.
    fn conn_counts_upto(&self, count: u32) -> Result<Vec<ConnCounts>, DatapathError>;
    /// Idle timeout in seconds for each `ConnState`.
    fn set_timeouts(&mut self, seconds: &[u32; STATE_COUNT as usize]) -> Result<(), DatapathError>;
    /// Now on the clock the datapath stamps entries with.
    fn now_ns(&self) -> Result<u64, DatapathError>;
    /// Whether `addr` is this director's own (loopback, or held by an
    /// interface in its network namespace): a real server there is local.
    fn is_local(&self, addr: IpAddr) -> bool;
    /// The next hop lvsd resolved towards a DR or TUN real server, for the
    /// datapath to use while the FIB refuses (forwarding off), in the map
    /// of the server's family.
    fn set_next_hop(&mut self, real: IpAddr, hop: ResolvedHop) -> Result<(), DatapathError>;
    /// Forget it; one already gone is not an error.
    fn remove_next_hop(&mut self, real: IpAddr) -> Result<(), DatapathError>;
}

/// A route lvsd resolved towards a real server: the interface, the gateway
/// (or the server itself, on-link) and the source the route selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedHop {
    pub ifindex: u32,
    pub gateway: IpAddr,
    pub source: Option<IpAddr>,
}

impl ResolvedHop {
    /// As `NEXT_HOPS` (or `NEXT_HOPS6`) holds it; `None` if the gateway is
    /// of another family than `A` (no such route is forwarded).
    pub fn entry<A: Family>(&self) -> Option<NextHop<A>> {
        Some(NextHop {
            ifindex: self.ifindex,
            gateway: A::of(self.gateway)?,
            source: self.source.and_then(A::of).unwrap_or(A::UNSPECIFIED),
        })
    }
}

/// Where a walk of the connection table in parts has got to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TablePosition(Option<u64>);

impl TablePosition {
    /// At the start of the table: the last part was just read.
    pub fn at_start(&self) -> bool {
        self.0.is_none()
    }
}

/// The director's own addresses, read at most once a second: `is_local` is
/// asked for every real server an apply writes.
#[derive(Default)]
pub struct LocalAddresses(std::sync::Mutex<AddressCache>);

#[derive(Default)]
pub struct AddressCache {
    read_at: Option<std::time::Instant>,
    addresses: std::collections::BTreeSet<IpAddr>,
}

impl LocalAddresses {
    pub fn contains(&self, addr: IpAddr) -> bool {
        if addr.is_loopback() {
            return true;
        }
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.contains(addr)
    }
}

impl AddressCache {
    fn contains(&mut self, addr: IpAddr) -> bool {
        let stale = self
            .read_at
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if stale {
            self.read_at = Some(std::time::Instant::now());
            match nix::ifaddrs::getifaddrs() {
                Ok(list) => {
                    self.addresses = list
                        .filter_map(|ifa| {
                            let address = ifa.address?;
                            match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                                (Some(v4), _) => Some(IpAddr::V4(v4.ip())),
                                (_, Some(v6)) => Some(IpAddr::V6(v6.ip())),
                                _ => None,
                            }
                        })
                        .collect();
                }
                Err(e) => tracing::warn!("getifaddrs: {e} (local real servers not recognised)"),
            }
        }
        self.addresses.contains(&addr)
    }
}
