//! Applies commands to the desired state and keeps the datapath in step.
//!
//! A batch is validated whole against a copy of the state first, so a bad
//! request changes nothing. Then each command runs the scheduler hooks in
//! order (as IPVS would, one change at a time), and every touched service
//! publishes one fresh ring at the end.

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::{IpAddr, Ipv4Addr},
};

/// The controller's maps are keyed by indexes and addresses it chose
/// itself, so a fast hash is safe, and listing 100,000 servers does a
/// handful of lookups for each.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use lvs_common::{
    addr::In6, bucket_base, maglev_base, ring_base, service_flags, tcp_state::DEFAULT_TIMEOUTS,
    Conn, ConnCounts, ConnState, Counters, Direction, EventKind, FlowKey, Form, LocalityEntry,
    LocalityKey, Real, ReplyKey, Service as ServiceValue, ServiceKey, Template, TemplateKey,
    Verdict, VirtualAddr, MH_PROBE, NO_REAL, RING_SLOTS,
};

use lvs_common::Timeouts;
use lvs_datapath::{ConnEntries, Datapath, DatapathError, Family, Notice, TablePosition};
use lvs_ha::conn::{SyncConn, SyncTemplate};
use lvs_sched::{publish, Dest, Scheduler, SchedulerName};
use lvs_state::{
    api::{ConnView, HealthView, Rates, RealView, RefillStats, ServiceView, Snapshot, Stats},
    health::{RealHealth, StartState},
    model::{
        sorry_spec, Command, Endpoint, ModelError, Persistence, Protocol, RealSpec, Service,
        ServiceId, ServiceSpec, State, Undo,
    },
};

use crate::{
    conntable,
    health::condition::{self, AgentState, Condition, Shift},
    rate::{self, Estimator},
    relevance::Relevance,
    replies::ReplyIndex,
    threshold,
};

use lvs_common::NS_PER_SEC;

/// How long a persistence template that ran out is kept while connections
/// still depend on it (IPVS's generic 60 s re-check, §4.1).
const TEMPLATE_RECHECK_NS: u64 = 60 * NS_PER_SEC;

/// When the rate estimators are due again. Maintenance calls every
/// second, so a period counts as passed half a second early: a call that
/// comes a little early must not stretch the 2 s period to 3.
const ESTIMATE_DUE_NS: u64 = rate::PERIOD_NS - NS_PER_SEC / 2;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("too many {what} (the datapath holds {max})")]
    Capacity { what: &'static str, max: u32 },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error(
        "sorry server {sorry} of {service} is of the other address family: a sorry server \
         must be of its service's"
    )]
    SorryFamily { service: ServiceId, sorry: Endpoint },
    #[error(
        "real server {server} of {service} is this director's own address: its connections go \
         to the local stack on the service's port {vport}, so a different port \
         (masquerading to a local port) is not yet supported"
    )]
    LocalPortMapping {
        service: ServiceId,
        server: Endpoint,
        vport: u16,
    },
}

/// What the controller keeps per live service.
#[derive(Debug)]
struct Runtime {
    index: u32,
    /// Ring half the datapath reads now.
    half: u32,
    ring_len: u32,
    cursor_origin: u32,
    /// Scheduler state as of the last publication (plus hooks since).
    sched: Box<dyn Scheduler>,
    dests: Vec<Dest>,
    /// Whether this batch already caught the scheduler up with the datapath.
    synced: bool,
    /// The ring the datapath reads now, and the cursor it was published at.
    ring: Vec<u32>,
    published_origin: u32,
    /// Cursor when the connection table was last counted, and the picks the
    /// datapath made since (folded in at each publication), per real index:
    /// a forecast starts from counts plus these.
    counted_cursor: u32,
    pending: HashMap<u32, u32>,
    /// lblc/lblcr: what `LOCALITY` holds, destination address -> real index.
    localities: HashMap<IpAddr, u32>,
    /// Whether the datapath may hold templates (the service was persistent)
    /// or locality entries (it was lblc/lblcr) under this index: only then
    /// do deletions search those tables.
    had_templates: bool,
    had_localities: bool,
    /// mh: the service's table in `MAGLEV`.
    maglev: Option<u32>,
}

/// Whether a service's ring is a forecast of count-driven picks, refilled
/// as counts move and at low water (else it is periodic, or absent).
fn refills(spec: &ServiceSpec) -> bool {
    spec.scheduler.counts_connections() || spec.scheduler.form() == Form::Locality
}

/// Before a service changes, bring the controller's scheduler to where the
/// datapath is: periodic schedulers replay the picks it made. That cursor
/// becomes the next ring's origin; picks made from the old ring until the
/// flip stand in for the new ring's first slots, so the sequence neither
/// repeats nor skips.
fn catch_up<D: Datapath>(
    datapath: &D,
    rt: &mut Runtime,
    spec: &ServiceSpec,
) -> Result<(), DatapathError> {
    if rt.synced {
        return Ok(());
    }
    let now = datapath.cursor(rt.index)?;
    if spec.scheduler.form() == Form::Ring && !spec.scheduler.counts_connections() {
        publish::advance(
            rt.sched.as_mut(),
            &rt.dests,
            now.wrapping_sub(rt.cursor_origin),
            rt.ring_len as usize,
        );
    }
    rt.cursor_origin = now;
    rt.synced = true;
    Ok(())
}

/// Add to `pending` the slots of `ring` (published at `origin`) that
/// tickets `from..to` claimed; tickets before `origin` belong to an older
/// ring and are skipped.
fn fold_claimed(pending: &mut HashMap<u32, u32>, ring: &[u32], origin: u32, from: u32, to: u32) {
    if ring.is_empty() {
        return;
    }
    let total = to.wrapping_sub(origin);
    let skip = from.wrapping_sub(origin);
    let skip = if skip > total { 0 } else { skip };
    let claimed = (total - skip) as usize;
    if claimed == 0 {
        return;
    }
    let (laps, rest) = (claimed / ring.len(), claimed % ring.len());
    for (offset, real) in ring.iter().enumerate() {
        let after_skip = (offset + ring.len() - skip as usize % ring.len()) % ring.len();
        let n = laps + usize::from(after_skip < rest);
        if n > 0 {
            *pending.entry(*real).or_default() += n as u32;
        }
    }
}

/// lblc/lblcr: expire idle destinations, re-decide each one against the
/// forecast counts (overload, replication, shrink), and write what changed
/// into family `A`'s table (the service's).
fn sync_localities<D: Datapath, A: Family>(
    datapath: &mut D,
    rt: &mut Runtime,
    forecast: &[Dest],
    now_s: u64,
) -> Result<(), DatapathError> {
    let table = rt.sched.locality().expect("lblc and lblcr keep a table");
    if table.needs_lastuse(now_s) {
        for (key, entry) in datapath.localities::<A>()? {
            if key.service_index == rt.index {
                table.touch(key.addr().ip(), entry.last_use_ns / NS_PER_SEC);
            }
        }
    }
    table.collect(now_s);
    let mut wanted = HashMap::default();
    for addr in table.addresses() {
        if let Some(real) = table.decide(forecast, addr, now_s) {
            wanted.insert(addr, real);
        }
    }
    for addr in rt.localities.keys() {
        if !wanted.contains_key(addr) {
            remove_locality(datapath, rt.index, *addr)?;
        }
    }
    for (addr, real) in &wanted {
        if rt.localities.get(addr) != Some(real) {
            let Some(at) = A::of(*addr) else {
                continue;
            };
            let lastuse = table.lastuse(*addr).unwrap_or(now_s);
            datapath.set_locality(
                LocalityKey::new(rt.index, at),
                LocalityEntry::new(*real, lastuse * NS_PER_SEC),
            )?;
        }
    }
    rt.localities = wanted;
    Ok(())
}

/// Remove service `index`'s locality entry for `addr`, in its family's
/// table.
fn remove_locality<D: Datapath>(
    datapath: &mut D,
    index: u32,
    addr: IpAddr,
) -> Result<(), DatapathError> {
    match addr {
        IpAddr::V4(a) => datapath.remove_locality(&LocalityKey::new(index, a.octets())),
        IpAddr::V6(a) => datapath.remove_locality(&LocalityKey::new(index, In6::from(a))),
    }
}

/// The sweeper reads the connection table in parts, one per maintenance
/// tick: a whole table (at its configured size) in about this many ticks,
/// so that a million connections cost a few percent of a core, not a walk
/// a second. (The kernel reads a hash map bucket by bucket, locking each.)
/// A fuller table takes longer, an emptier one less.
const SWEEP_PASS_TICKS: usize = 30;
/// Smallest part: a small table is read whole every tick.
const SWEEP_MIN_PART: usize = 4096;
/// Entries read in one go, between which the owner answers other messages.
const SWEEP_STEP: usize = 256;
/// The sweeper judges entries by a clock this far behind: a packet that
/// found an entry live just before it expired has finished moving its
/// state (and counts) by then, so the entry the sweeper removes is the one
/// it counted. The datapath stamps with the coarse clock, which lags by up
/// to a tick (10 ms at HZ=100); one run of the program takes microseconds.
const SWEEP_GRACE_NS: u64 = 20_000_000;

/// What the sweeper made of a part of a table: how many entries went, the
/// live inbound entries and the inbound entries removed.
struct SweptPart<A: Family> {
    removed: usize,
    live: ConnEntries<A>,
    gone: ConnEntries<A>,
}

/// Where the sweeper's pass is, and what it learnt on the way.
#[derive(Debug, Default)]
struct SweepPass {
    position: TablePosition,
    /// Where the IPv6 table's walk is (a part of it each step).
    position6: TablePosition,
    /// Entries still to read this tick.
    budget: usize,
    /// The template table may hold entries (a service was persistent at
    /// the last sweep).
    templates_left: bool,
    /// When this pass and the one before began (datapath clock).
    started_ns: u64,
    previous_started_ns: u64,
    /// Client networks of persistent services with a live connection, seen
    /// so far by this pass and by the last whole one: templates they use
    /// are kept.
    depended: BTreeSet<(u32, IpAddr)>,
    previously_depended: BTreeSet<(u32, IpAddr)>,
    /// Connections for the backup router, once the HA task asks for them:
    /// ones used since the sweeper last passed them, and ones removed.
    exporting: bool,
    used: Vec<SyncConn>,
    removed: Vec<SyncConn>,
}

/// Index allocator: lowest free first.
#[derive(Debug)]
struct Slots {
    /// Indexes given back, all below `fresh`.
    free: BTreeSet<u32>,
    /// The lowest index never handed out: its map entries (counters,
    /// cursor) are still as the kernel created them, zero.
    fresh: u32,
    max: u32,
}

/// An index from `Slots::take`, and whether it was used before (its
/// counters and cursor then need resetting or reading).
struct Slot {
    index: u32,
    reused: bool,
}

impl Slots {
    fn new(max: u32) -> Self {
        Self {
            free: BTreeSet::new(),
            fresh: 0,
            max,
        }
    }
    fn take(&mut self) -> Option<Slot> {
        if let Some(index) = self.free.pop_first() {
            return Some(Slot {
                index,
                reused: true,
            });
        }
        (self.fresh < self.max).then(|| {
            self.fresh += 1;
            Slot {
                index: self.fresh - 1,
                reused: false,
            }
        })
    }
    fn give(&mut self, i: u32) {
        self.free.insert(i);
    }
}

pub struct Controller<D> {
    state: State,
    datapath: D,
    runtimes: HashMap<ServiceId, Runtime>,
    /// Which service a service index is (the datapath's notices name it).
    service_at: HashMap<u32, ServiceId>,
    /// Each service's real servers' datapath indexes.
    real_index: HashMap<ServiceId, HashMap<Endpoint, u32>>,
    service_slots: Slots,
    real_slots: Slots,
    maglev_slots: Slots,
    /// Freed real indexes that live connections still name, with when each
    /// was freed (datapath clock, for `Expirations::drain`): like IPVS's
    /// trash, they are reused only once the count finds none, so old flows
    /// never count (or pick) as a new server's.
    draining: BTreeMap<u32, u64>,
    /// `-Z` subtracts these snapshots, as the kernel does.
    service_baseline: HashMap<u32, Counters>,
    real_baseline: HashMap<u32, Counters>,
    /// `--rate`'s estimators, per service index and per real index.
    service_rates: HashMap<u32, Estimator>,
    real_rates: HashMap<u32, Estimator>,
    /// When the estimators last sampled (or were first asked to).
    estimated_ns: Option<u64>,
    timeouts: Timeouts,
    /// Per real index with connections, as the datapath last counted.
    counts: HashMap<u32, ConnCounts>,
    sweep: SweepPass,
    /// The addresses the datapath's first test lets through.
    relevance: Relevance,
    /// Which NAT connections keep one entry.
    replies: ReplyIndex,
    /// Real indexes whose OVERLOAD flag is set.
    overloaded: BTreeSet<u32>,
    /// Real and sorry servers configured over all services.
    endpoints: usize,
    /// The batch being written, to put back if the writing fails.
    in_flight: Option<Undo>,
    /// `REALS` entries to write, in one batch, before the next publication.
    unwritten_reals: Vec<(u32, Real)>,
    unwritten_reals6: Vec<(u32, Real<In6>)>,
    refills: RefillStats,
    /// The latest refill latencies, for the percentile.
    recent_refills: std::collections::VecDeque<u64>,
    expirations: Expirations,
    /// Health of configured real servers; absent means healthy.
    conditions: HashMap<(ServiceId, Endpoint), Condition>,
    /// Each service as last given to its scheduler: servers that health
    /// took out are missing, weights are effective, and the sorry server
    /// stands in while the service has lost its quorum.
    scheduled: HashMap<ServiceId, Service>,
    /// mh's `last_weight` of each server in its service's scheduled view:
    /// the weight it joined the view with, or its latest non-zero one. Kept
    /// here so that a rebuilt scheduler (new flags, a recovery) builds the
    /// same table.
    last_weights: HashMap<(ServiceId, Endpoint), u32>,
    /// Whether each service has its quorum (keepalived's `quorum_state`).
    quorum_up: HashMap<ServiceId, bool>,
    /// Quorum changes not yet taken by `take_quorum_changes`.
    quorum_changes: Vec<QuorumChange>,
    /// Both as they were before the batch in flight.
    quorum_before: Option<(HashMap<ServiceId, bool>, usize)>,
    /// The VIPs last given to `Datapath::announce`.
    announced: BTreeSet<IpAddr>,
}

/// A service that gained or lost its quorum, and the command its
/// configuration runs then (`quorum_up` or `quorum_down`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumChange {
    pub service: ServiceId,
    pub up: bool,
    pub command: Option<String>,
}

/// `lblc_expiration` and `lblcr_expiration`, in seconds (§2.7–2.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expirations {
    pub lblc: u64,
    pub lblcr: u64,
    /// Seconds a removed real server's connections may go on (`None`:
    /// until they end, IPVS's default); then the sweeper removes them.
    pub drain: Option<u64>,
}

impl Default for Expirations {
    fn default() -> Self {
        Self {
            lblc: lvs_sched::locality::DEFAULT_EXPIRATION,
            lblcr: lvs_sched::locality::DEFAULT_EXPIRATION,
            drain: None,
        }
    }
}

/// Same servers, weights and flags: connection counts alone are no reason
/// to run a scheduler's hooks.
fn same_servers(a: &[Dest], b: &[Dest]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.id, x.weight, x.overloaded) == (y.id, y.weight, y.overloaded))
}

/// How `endpoint` is reached: as one of `svc`'s real servers, or as its
/// sorry server.
fn method_of(svc: &Service, endpoint: &Endpoint) -> Option<lvs_state::model::Method> {
    svc.reals
        .iter()
        .find(|r| r.server == *endpoint)
        .map(|r| r.method)
        .or(svc
            .health
            .sorry
            .filter(|s| s.server == *endpoint)
            .map(|s| s.method))
}

/// An IPv4 address on its way into an IPv4-only part (HA sync, local
/// addresses, one-entry NAT replies, persistence and locality upkeep):
/// `check_families` keeps IPv6 services out of those.
pub fn ipv4(addr: IpAddr) -> Ipv4Addr {
    match addr {
        IpAddr::V4(a) => a,
        IpAddr::V6(a) => unreachable!("IPv6 address {a} in an IPv4-only part"),
    }
}

/// What the datapath does not do is refused whole, before anything reaches
/// it: a sorry server of the other family than its service's. (A real
/// server of the other family is reached through a tunnel, as IPVS allows
/// and the model checks.)
fn check_families(commands: &[Command]) -> Result<(), ControlError> {
    for command in commands {
        if let Command::SetServiceHealth { service, health } = command {
            if let Some(sorry) = health
                .sorry
                .filter(|s| s.server.is_ipv6() != service.vip.is_ipv6())
            {
                return Err(ControlError::SorryFamily {
                    service: *service,
                    sorry: sorry.server,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
fn service_key(id: &ServiceId) -> ServiceKey {
    family_key(id, ipv4(id.vip.addr).octets())
}

/// A service's key in its family's map.
fn family_key<A: Family>(id: &ServiceId, vip: A) -> ServiceKey<A> {
    ServiceKey::new(vip, id.vip.port, id.protocol.number())
}

/// Publish (`Some`) or unpublish a service's entry in its family's map.
fn write_service<D: Datapath>(
    datapath: &mut D,
    id: &ServiceId,
    value: Option<(ServiceValue, Option<Persistence>)>,
) -> Result<(), DatapathError> {
    match id.vip.addr {
        IpAddr::V4(vip) => write_family(datapath, family_key(id, vip.octets()), value),
        IpAddr::V6(vip) => write_family(datapath, family_key(id, In6::from(vip)), value),
    }
}

/// `write_service` in the service's family, with its persistence mask.
fn write_family<D: Datapath, A: Family>(
    datapath: &mut D,
    key: ServiceKey<A>,
    value: Option<(ServiceValue, Option<Persistence>)>,
) -> Result<(), DatapathError> {
    let Some((value, persistence)) = value else {
        return datapath.remove_service(key);
    };
    let mut value = value.in_family::<A>();
    if let Some(p) = persistence {
        let mask = A::of(p.mask(key.addr().ip())).unwrap_or(A::UNSPECIFIED);
        value = value.with_persistence(mask, p.timeout);
    }
    datapath.set_service(key, value)
}

/// A real server's datapath entry; `local` when the director holds its
/// address (the datapath then hands its connections to the local stack).
fn datapath_real<A: Family>(r: &RealSpec, addr: A, local: bool) -> Real<A> {
    let real = Real::new(addr, r.server.port, r.method);
    if local {
        real.local()
    } else {
        real
    }
}

impl<D: Datapath> Controller<D> {
    pub fn new(datapath: D) -> Self {
        let limits = datapath.limits();
        Self {
            state: State::default(),
            datapath,
            runtimes: HashMap::default(),
            service_at: HashMap::default(),
            real_index: HashMap::default(),
            service_slots: Slots::new(limits.services),
            real_slots: Slots::new(limits.reals),
            maglev_slots: Slots::new(limits.mh_services),
            draining: BTreeMap::new(),
            service_baseline: HashMap::default(),
            real_baseline: HashMap::default(),
            service_rates: HashMap::default(),
            real_rates: HashMap::default(),
            estimated_ns: None,
            timeouts: DEFAULT_TIMEOUTS,
            counts: HashMap::default(),
            sweep: SweepPass::default(),
            relevance: Relevance::default(),
            replies: ReplyIndex::default(),
            overloaded: BTreeSet::new(),
            endpoints: 0,
            in_flight: None,
            unwritten_reals: Vec::new(),
            unwritten_reals6: Vec::new(),
            refills: RefillStats::default(),
            recent_refills: std::collections::VecDeque::new(),
            expirations: Expirations::default(),
            conditions: HashMap::default(),
            scheduled: HashMap::default(),
            last_weights: HashMap::default(),
            quorum_up: HashMap::default(),
            quorum_changes: Vec::new(),
            quorum_before: None,
            announced: BTreeSet::new(),
        }
    }

    /// Take each real server's ActiveConn and InActConn (§3.2) from the
    /// datapath's counts, which every change to the table keeps exact (an
    /// expired entry counts until the sweeper or a new packet removes it),
    /// and set or clear OVERLOAD from the thresholds
    /// (§1.1). Then republish every service whose decisions depend on what
    /// changed: count-driven rings (lc, wlc, sed, nq and the locality
    /// fallback) whose counts moved or that are half used, and any service
    /// whose servers' OVERLOAD flags flipped. Returns how many were
    /// republished.
    pub fn recount(&mut self) -> Result<usize, ControlError> {
        // Cursors first: picks claimed after this may not be in the table
        // yet, so they stay pending until the next count.
        let all = self.datapath.cursors_upto(self.service_slots.fresh)?;
        let cursors: HashMap<ServiceId, u32> = self
            .runtimes
            .iter()
            .map(|(id, rt)| (*id, all[rt.index as usize]))
            .collect();
        let now = self.datapath.now_ns()?;
        let counts: HashMap<u32, ConnCounts> = self
            .datapath
            .conn_counts_upto(self.real_slots.fresh)?
            .into_iter()
            .zip(0u32..)
            .filter(|(c, _)| c.total() != 0)
            .map(|(c, i)| (i, c))
            .collect();
        self.counts = counts;
        let drained: Vec<u32> = self
            .draining
            .keys()
            .filter(|i| !self.counts.contains_key(i))
            .copied()
            .collect();
        for i in drained {
            self.draining.remove(&i);
            self.real_slots.give(i);
            self.replies.release(i);
        }
        self.write_replies()?;
        if self.draining.is_empty() {
            self.relevance.drained();
        }
        self.write_relevance()?;
        let mut due = BTreeSet::new();
        for svc in self.state.services() {
            let id = svc.spec.id;
            let (Some(rt), Some(scheduled)) = (self.runtimes.get_mut(&id), self.scheduled.get(&id))
            else {
                continue;
            };
            let mut fresh = rt.dests.clone();
            for (d, real) in fresh.iter_mut().zip(&scheduled.reals) {
                let c = self.counts.get(&d.id).copied().unwrap_or_default();
                (d.active, d.inactive) = (c.active, c.inactive);
                d.overloaded = threshold::overloaded(
                    self.overloaded.contains(&d.id),
                    c.active + c.inactive,
                    real,
                );
                if d.overloaded {
                    self.overloaded.insert(d.id);
                } else {
                    self.overloaded.remove(&d.id);
                }
            }
            let flags_moved = !same_servers(&rt.dests, &fresh);
            let forecast = refills(&svc.spec);
            // What the forecast assumed: the last counts plus every pick
            // claimed since, each one more active connection.
            let counts_moved = forecast && {
                let mut assumed = rt.pending.clone();
                fold_claimed(
                    &mut assumed,
                    &rt.ring,
                    rt.published_origin,
                    rt.counted_cursor,
                    cursors[&id],
                );
                fresh.iter().zip(&rt.dests).any(|(a, b)| {
                    let picked = assumed.get(&b.id).copied().unwrap_or(0);
                    (a.active, a.inactive) != (b.active + picked, b.inactive)
                })
            };
            let consumed = cursors[&id].wrapping_sub(rt.cursor_origin);
            // lblc/lblcr expire idle destinations on a 60 s tick.
            let gc_due = rt
                .sched
                .locality()
                .is_some_and(|t| t.tick_due(now / NS_PER_SEC));
            let refill = forecast && (counts_moved || gc_due || consumed * 2 >= rt.ring_len.max(1));
            if flags_moved || refill {
                catch_up(&self.datapath, rt, &svc.spec)?;
                if flags_moved {
                    rt.sched.update(&rt.dests, &fresh);
                }
                due.insert(id);
            }
            rt.dests = fresh;
            rt.counted_cursor = cursors[&id];
            rt.pending.clear();
        }
        self.publish_touched(&due)?;
        Ok(due.len())
    }

    /// Act on the datapath's notices: refill the rings that reached low
    /// water, and record (then re-decide) new locality destinations.
    /// Returns how many services were republished.
    pub fn handle_events(&mut self, events: &[Notice]) -> Result<usize, ControlError> {
        let mut due = BTreeSet::new();
        let mut signalled: HashMap<ServiceId, u64> = HashMap::default();
        for event in events {
            let Some(id) = self.service_at.get(&event.service_index) else {
                continue;
            };
            let rt = self.runtimes.get_mut(id).expect("indexed above");
            if event.kind == EventKind::LowWater as u32 {
                let t = signalled.entry(*id).or_insert(event.time_ns);
                *t = (*t).min(event.time_ns);
            } else if event.kind == EventKind::NewDestination as u32 {
                // A notice left from a service that had this index before,
                // of the other family, is not this one's.
                if event.addr.is_ipv6() != id.vip.addr.is_ipv6() {
                    continue;
                }
                if let Some(table) = rt.sched.locality() {
                    table.record(event.addr, event.real_index, event.time_ns / NS_PER_SEC);
                    rt.localities.insert(event.addr, event.real_index);
                }
            }
            due.insert(*id);
        }
        for id in &due {
            let spec = &self
                .state
                .service(id)
                .expect("runtimes match the state")
                .spec;
            catch_up(
                &self.datapath,
                self.runtimes.get_mut(id).expect("listed"),
                spec,
            )?;
        }
        self.publish_touched(&due)?;
        let done = self.datapath.now_ns()?;
        for since in signalled.into_values() {
            let latency = done.saturating_sub(since);
            self.refills.record(latency);
            if self.recent_refills.len() == lvs_state::api::RECENT_REFILLS {
                self.recent_refills.pop_front();
            }
            self.recent_refills.push_back(latency);
        }
        Ok(due.len())
    }

    /// lblc/lblcr lifetimes for services created or re-scheduled from now.
    pub fn set_expirations(&mut self, expirations: Expirations) {
        self.expirations = expirations;
    }

    /// A fresh scheduler for `spec`, with the configured lifetimes.
    fn instantiate(&self, spec: &ServiceSpec, dests: &[Dest]) -> Box<dyn Scheduler> {
        let mut sched = spec.scheduler.instantiate(dests, spec.flags);
        if let Some(table) = sched.locality() {
            table.expiration = match spec.scheduler {
                SchedulerName::Lblcr => self.expirations.lblcr,
                _ => self.expirations.lblc,
            };
        }
        sched
    }

    /// Drain the datapath's notices and act on them.
    pub fn process_events(&mut self) -> Result<usize, ControlError> {
        let events = self.datapath.drain_events()?;
        self.handle_events(&events)
    }

    /// How quickly low-water signals were answered.
    pub fn refill_stats(&self) -> RefillStats {
        let mut recent: Vec<u64> = self.recent_refills.iter().copied().collect();
        recent.sort_unstable();
        RefillStats {
            p99_ns: recent
                .get((recent.len() * 99).div_ceil(100).saturating_sub(1))
                .copied()
                .unwrap_or(0),
            ..self.refills
        }
    }

    /// Idle timeouts per connection state, in seconds, for the datapath and
    /// the sweeper alike.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<(), ControlError> {
        self.datapath.set_timeouts(&timeouts)?;
        self.timeouts = timeouts;
        Ok(())
    }

    /// The idle timeouts in force (`ipvsadm -L --timeout`).
    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// One tick's sweeping at once: `begin_sweep`, then every step. Returns
    /// how many entries went.
    pub fn sweep(&mut self) -> Result<usize, ControlError> {
        self.begin_sweep();
        let mut removed = 0;
        while self.sweep_pending() {
            removed += self.sweep_step()?;
        }
        Ok(removed)
    }

    /// A maintenance tick's share of the sweeping: the next part of the
    /// table (a whole table, at its configured size, in about
    /// `SWEEP_PASS_TICKS` ticks), read in `sweep_step`s between which the
    /// owner answers other messages; templates after the last step.
    pub fn begin_sweep(&mut self) {
        self.sweep.budget =
            (self.datapath.limits().connections as usize / SWEEP_PASS_TICKS).max(SWEEP_MIN_PART);
    }

    /// Whether this tick's sweeping is unfinished.
    pub fn sweep_pending(&self) -> bool {
        self.sweep.budget > 0
    }

    /// Read up to `SWEEP_STEP` entries of the connection table and remove
    /// those that expired (see `conntable`); returns how many went. One
    /// step takes well under a millisecond, so refills and requests wait no
    /// longer than that behind the sweeper.
    pub fn sweep_step(&mut self) -> Result<usize, ControlError> {
        let step = self.sweep.budget.min(SWEEP_STEP);
        self.sweep.budget -= step;
        let now = self.datapath.now_ns()?;
        let pass = &mut self.sweep;
        if pass.position.at_start() {
            pass.previous_started_ns = pass.started_ns;
            pass.started_ns = now;
        }
        let listed = self
            .datapath
            .connections_slice::<[u8; 4]>(&mut self.sweep.position, step)?;
        if self.sweep.position.at_start() {
            // The end of the table: nothing more this tick.
            self.sweep.budget = 0;
        }
        let masks = self.persistence_masks();
        let part = self.sweep_part(listed, now)?;
        self.note_depended(&part, &masks);
        self.note_for_sync(&part, now);
        let listed6 = self
            .datapath
            .connections_slice::<In6>(&mut self.sweep.position6, step)?;
        let part6 = self.sweep_part(listed6, now)?;
        self.note_depended(&part6, &masks);
        self.note_for_sync(&part6, now);
        let removed = part.removed + part6.removed;
        if self.sweep.position.at_start() {
            // A whole pass is done: what it saw is complete.
            self.sweep.previously_depended = std::mem::take(&mut self.sweep.depended);
        }
        if self.sweep.budget == 0 {
            // The tick's part is read: templates go by what it saw.
            self.sweep_templates(now)?;
        }
        Ok(removed)
    }

    /// The live inbound entries the sweeper passed: the templates of their
    /// client networks, if any, still have a connection depending on them.
    fn note_depended<A: Family>(&mut self, part: &SweptPart<A>, masks: &HashMap<u32, IpAddr>) {
        for (key, conn) in &part.live {
            if let Some(mask) = masks.get(&conn.service_index).and_then(|m| A::of(*m)) {
                let net = key.src().masked(&mask).ip();
                self.sweep.depended.insert((conn.service_index, net));
            }
        }
    }

    /// While the HA task collects: the part's connections used since the
    /// sweeper last came by (the backup's copies are renewed) and the
    /// ones it removed.
    fn note_for_sync<A: Family>(&mut self, part: &SweptPart<A>, now: u64) {
        let pass = &mut self.sweep;
        if !pass.exporting {
            return;
        }
        let since = pass.previous_started_ns;
        pass.used.extend(
            part.live
                .iter()
                .filter(|(_, conn)| conn.last_seen_ns >= since)
                .filter_map(|(key, conn)| SyncConn::of(key, conn, now)),
        );
        pass.removed.extend(
            part.gone
                .iter()
                .filter_map(|(key, conn)| SyncConn::of(key, conn, now)),
        );
    }

    /// Judge a part of a family's table by the expiry rule (`conntable`)
    /// and remove what died, an inbound entry with its NAT reply entry.
    fn sweep_part<A: Family>(
        &mut self,
        listed: ConnEntries<A>,
        now: u64,
    ) -> Result<SweptPart<A>, ControlError> {
        let judged_at = now.saturating_sub(SWEEP_GRACE_NS);
        // A reply entry idle this long is checked against its inbound entry
        // (one lookup); a busy one is not dead, whatever its owner.
        let longest = u64::from(self.timeouts.iter().copied().max().unwrap_or(0)) * NS_PER_SEC;
        let mut part = SweptPart {
            removed: 0,
            live: Vec::new(),
            gone: Vec::new(),
        };
        // Removed servers whose drain ran out (`Expirations::drain`).
        let overdue: HashSet<u32> = match self.expirations.drain {
            Some(s) => self
                .draining
                .iter()
                .filter(|(_, since)| now.saturating_sub(**since) >= s * NS_PER_SEC)
                .map(|(i, _)| *i)
                .collect(),
            None => HashSet::new(),
        };
        let ended = |conn: &Conn<A>, timeouts: &Timeouts| {
            conn.expired_under(judged_at, timeouts) || overdue.contains(&conn.real_index)
        };
        for (key, conn) in listed {
            let inbound = conn.direction == Direction::Inbound as u8;
            let dead = if inbound {
                ended(&conn, &self.timeouts)
            } else if now.saturating_sub(conn.last_seen_ns) > longest {
                let owner = self.datapath.connection(&key.nat_inbound(&conn))?;
                conntable::is_dead(&key, &conn, |_| owner, judged_at, &self.timeouts)
            } else {
                false
            };
            if !dead {
                if inbound {
                    part.live.push((key, conn));
                }
                continue;
            }
            // A packet may have replaced the entry since the listing: the
            // one removed is judged again, and put back if it lives.
            let Some(taken) = self.datapath.take_connection(&key)? else {
                continue;
            };
            if inbound && !ended(&taken, &self.timeouts) {
                self.datapath.add_connection(key, taken)?;
                continue;
            }
            part.removed += 1;
            if inbound {
                self.remove_reply_entry(&key, &taken)?;
                part.gone.push((key, taken));
            }
        }
        Ok(part)
    }

    /// An expired inbound entry the sweeper removed: its NAT reply entry
    /// goes with it.
    fn remove_reply_entry<A: Family>(
        &mut self,
        key: &FlowKey<A>,
        conn: &Conn<A>,
    ) -> Result<(), ControlError> {
        // A one-entry connection has no reply entry to look for.
        if conn.method == lvs_common::Method::Nat as u8 && !self.replies.holds(conn.real_index) {
            let reply = key.nat_reply(conn);
            if let Some(r) = self.datapath.connection(&reply)? {
                if r.direction == Direction::Outbound as u8
                    && (r.addr(), r.port_wire()) == (key.dst(), key.dport().to_be_bytes())
                {
                    self.datapath.remove_connection(&reply)?;
                }
            }
        }
        Ok(())
    }

    /// Service index → client netmask of every persistent service (of the
    /// service's family).
    fn persistence_masks(&self) -> HashMap<u32, IpAddr> {
        self.state
            .services()
            .filter_map(|s| {
                let p = s.spec.persistence?;
                Some((
                    self.runtimes.get(&s.spec.id)?.index,
                    p.mask(s.spec.id.vip.addr),
                ))
            })
            .collect()
    }

    /// Routes or neighbours may have changed (each second, a next hop lvsd
    /// resolved, an HA takeover): every cached way to a real server is
    /// looked up again by its next packet.
    pub fn renew_egress(&mut self) -> Result<(), ControlError> {
        Ok(self.datapath.renew_egress()?)
    }

    /// For the HA task: the connections used since the sweeper last
    /// passed them, and the ones it removed, since the last call. The
    /// first call starts the collecting.
    pub fn sync_changes(&mut self) -> (Vec<SyncConn>, Vec<SyncConn>) {
        self.sweep.exporting = true;
        (
            std::mem::take(&mut self.sweep.used),
            std::mem::take(&mut self.sweep.removed),
        )
    }

    /// Persistence templates that ran out go, unless a live connection of
    /// their client network still depends on them: then they get another
    /// 60 s, as IPVS re-checks them (§4.1). Templates of services that are
    /// gone or no longer persistent go too.
    fn sweep_templates(&mut self, now: u64) -> Result<(), ControlError> {
        let masks = self.persistence_masks();
        // Reading an empty template table still walks its buckets: only
        // while a service is persistent, and once after the last one.
        if masks.is_empty() && !self.sweep.templates_left {
            return Ok(());
        }
        self.sweep.templates_left = !masks.is_empty();
        self.sweep_templates_of::<[u8; 4]>(now, &masks)?;
        self.sweep_templates_of::<In6>(now, &masks)
    }

    fn sweep_templates_of<A: Family>(
        &mut self,
        now: u64,
        masks: &HashMap<u32, IpAddr>,
    ) -> Result<(), ControlError> {
        let templates = self.datapath.templates::<A>()?;
        if templates.is_empty() {
            return Ok(());
        }
        let pass = &self.sweep;
        let depended = |key: &(u32, IpAddr)| {
            pass.depended.contains(key) || pass.previously_depended.contains(key)
        };
        for (key, template) in templates {
            if !masks.contains_key(&key.service_index) {
                self.datapath.remove_template(&key)?;
            } else if now >= template.expires_ns {
                if depended(&(key.service_index, key.client_net().ip())) {
                    let extended = Template::new(template.real_index, now + TEMPLATE_RECHECK_NS);
                    self.datapath.set_template(key, extended)?;
                } else {
                    self.datapath.remove_template(&key)?;
                }
            }
        }
        Ok(())
    }

    /// Every live inbound connection, by addresses, for the backup router.
    pub fn export_connections(&self) -> Result<Vec<SyncConn>, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut conns = self.exported::<[u8; 4]>(now)?;
        conns.extend(self.exported::<In6>(now)?);
        Ok(conns)
    }

    fn exported<A: Family>(&self, now: u64) -> Result<Vec<SyncConn>, ControlError> {
        let listed = self.datapath.connections::<A>()?;
        Ok(listed
            .iter()
            .filter(|(_, c)| !c.expired_under(now, &self.timeouts))
            .filter_map(|(k, c)| SyncConn::of(k, c, now))
            .collect())
    }

    /// The service a flow to `vip` belongs to, as the datapath finds it:
    /// the exact port, else the VIP's port-0 service.
    fn service_for(&self, protocol: u8, vip: std::net::SocketAddr) -> Option<&Service> {
        let protocol = Protocol::of(protocol)?;
        let find = |port| {
            self.state.service(&ServiceId {
                protocol,
                vip: Endpoint {
                    addr: vip.ip(),
                    port,
                },
            })
        };
        find(vip.port()).or_else(|| find(0))
    }

    /// Write connections the active router reported into this router's
    /// table, with this router's indexes and methods, so its datapath
    /// forwards them exactly as the active did. Connections for services
    /// or servers this router does not have are skipped. Returns how many
    /// were written.
    pub fn import_connections(&mut self, conns: &[SyncConn]) -> Result<usize, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut written = 0;
        for sc in conns {
            let imported = if sc.real.is_ipv4() {
                self.import_connection::<[u8; 4]>(sc, now)?
            } else {
                self.import_connection::<In6>(sc, now)?
            };
            written += usize::from(imported);
        }
        Ok(written)
    }

    /// One connection into family `A`'s table; false if skipped.
    fn import_connection<A: Family>(
        &mut self,
        sc: &SyncConn,
        now: u64,
    ) -> Result<bool, ControlError> {
        let (Some(key), Some(real), Some(vip)) = (
            sc.key::<A>(),
            A::of(sc.real.ip()),
            A::of(sc.virtual_addr.ip()),
        ) else {
            return Ok(false);
        };
        let Some(svc) = self.service_for(sc.protocol, sc.virtual_addr) else {
            return Ok(false);
        };
        let id = svc.spec.id;
        // A port-0 service's servers are configured with port 0.
        let configured = |port| Endpoint {
            addr: sc.real.ip(),
            port,
        };
        let found = [sc.real.port(), 0].into_iter().find_map(|port| {
            let endpoint = configured(port);
            let index = self.real_index_of(&id, &endpoint)?;
            Some((index, method_of(svc, &endpoint)?))
        });
        let (Some((real_index, method)), Some(rt)) = (found, self.runtimes.get(&id)) else {
            return Ok(false);
        };
        if ConnState::from_u8(sc.state).is_none() {
            return Ok(false);
        }
        let method = method as u8;
        let seen = now.saturating_sub(u64::from(sc.idle_ms) * 1_000_000);
        let mut inbound = Conn::new(
            real,
            sc.real.port().to_be_bytes(),
            Direction::Inbound,
            method,
            rt.index,
            real_index,
            seen,
        );
        inbound.state = sc.state;
        self.datapath.set_connection(key, inbound)?;
        if method == lvs_common::Method::Nat as u8 && !self.replies.holds(real_index) {
            let reply = Conn::new(
                vip,
                sc.virtual_addr.port().to_be_bytes(),
                Direction::Outbound,
                method,
                rt.index,
                real_index,
                seen,
            );
            self.datapath
                .set_connection(key.nat_reply(&inbound), reply)?;
        }
        Ok(true)
    }

    /// What `-L -c` lists: every live inbound connection entry with the
    /// time its state's timeout leaves it, then every live template.
    pub fn connection_views(&self) -> Result<Vec<ConnView>, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut rows = self.live_connections::<[u8; 4]>(now)?;
        rows.extend(self.live_connections::<In6>(now)?);
        rows.sort_by_key(|r| (r.virtual_addr, r.source));
        let mut templates: Vec<ConnView> = self
            .export_templates()?
            .into_iter()
            .filter_map(|t| {
                Some(ConnView {
                    protocol: Protocol::of(t.protocol)?,
                    expire_s: u64::from(t.remaining_ms) / 1000,
                    state: ConnState::None.name().to_string(),
                    source: std::net::SocketAddr::new(t.client_net, 0),
                    virtual_addr: t.service,
                    destination: t.real,
                })
            })
            .collect();
        templates.sort_by_key(|r| (r.virtual_addr, r.source));
        rows.extend(templates);
        Ok(rows)
    }

    /// A family's live inbound connection entries, as `-L -c` lists them.
    fn live_connections<A: Family>(&self, now: u64) -> Result<Vec<ConnView>, ControlError> {
        let at = |a: A, p: u16| std::net::SocketAddr::new(a.ip(), p);
        // A tunnel across families names its server by its index.
        let servers: HashMap<u32, Endpoint> = self.real_indexes().map(|(_, e, i)| (i, e)).collect();
        let destination = |c: &Conn<A>| match servers.get(&c.real_index) {
            Some(e) if c.addr() == A::UNSPECIFIED => std::net::SocketAddr::new(e.addr, c.port()),
            _ => at(c.addr(), c.port()),
        };
        Ok(self
            .datapath
            .connections::<A>()?
            .iter()
            .filter(|(_, c)| {
                c.direction == Direction::Inbound as u8 && !c.expired_under(now, &self.timeouts)
            })
            .filter_map(|(k, c)| {
                let protocol = Protocol::of(k.proto())?;
                let state = ConnState::from_u8(c.state)?;
                let timeout = u64::from(self.timeouts[state as usize]) * NS_PER_SEC;
                let idle = now.saturating_sub(c.last_seen_ns);
                Some(ConnView {
                    protocol,
                    expire_s: timeout.saturating_sub(idle) / NS_PER_SEC,
                    state: state.name().to_string(),
                    source: at(k.src(), k.sport()),
                    virtual_addr: at(k.dst(), k.dport()),
                    destination: destination(c),
                })
            })
            .collect())
    }

    /// Every live persistence template, by addresses, for the backup.
    pub fn export_templates(&self) -> Result<Vec<SyncTemplate>, ControlError> {
        // No persistent service: no template to send (and none to read).
        if !self.state.services().any(|s| s.spec.persistence.is_some()) {
            return Ok(Vec::new());
        }
        let mut templates = self.exported_templates::<[u8; 4]>()?;
        templates.extend(self.exported_templates::<In6>()?);
        Ok(templates)
    }

    fn exported_templates<A: Family>(&self) -> Result<Vec<SyncTemplate>, ControlError> {
        let templates = self.datapath.templates::<A>()?;
        if templates.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.datapath.now_ns()?;
        let services: HashMap<u32, &Service> = self
            .state
            .services()
            .filter_map(|s| Some((self.runtimes.get(&s.spec.id)?.index, s)))
            .collect();
        let servers: HashMap<u32, Endpoint> = self.real_indexes().map(|(_, e, i)| (i, e)).collect();
        let at = |e: Endpoint| std::net::SocketAddr::new(e.addr, e.port);
        Ok(templates
            .into_iter()
            .filter(|(_, t)| t.expires_ns > now)
            .filter_map(|(key, t)| {
                let svc = services.get(&key.service_index)?;
                let real = *servers.get(&t.real_index)?;
                // A template for a server across families, as its
                // connections, is not synced (a record is of one family).
                if real.addr.is_ipv6() != svc.spec.id.vip.addr.is_ipv6() {
                    return None;
                }
                Some(SyncTemplate {
                    protocol: svc.spec.id.protocol.number(),
                    client_net: key.client_net().ip(),
                    service: at(svc.spec.id.vip),
                    real: at(real),
                    method: method_of(svc, &real)? as u8,
                    remaining_ms: ((t.expires_ns - now) / 1_000_000).min(u32::MAX as u64) as u32,
                })
            })
            .collect())
    }

    /// Where a synced template points: this router's service, its index
    /// and the real server's index.
    fn template_for(&self, st: &SyncTemplate) -> Option<(ServiceId, u32, u32)> {
        let svc = self.state.service(&ServiceId {
            protocol: Protocol::of(st.protocol)?,
            vip: Endpoint {
                addr: st.service.ip(),
                port: st.service.port(),
            },
        })?;
        let rt = self.runtimes.get(&svc.spec.id)?;
        let endpoint = Endpoint {
            addr: st.real.ip(),
            port: st.real.port(),
        };
        let real = self.real_index_of(&svc.spec.id, &endpoint)?;
        Some((svc.spec.id, rt.index, real))
    }

    /// Write the active router's persistence templates, so a client
    /// network keeps its server across a takeover. Returns how many.
    pub fn import_templates(&mut self, templates: &[SyncTemplate]) -> Result<usize, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut written = 0;
        for st in templates {
            let Some((id, index, real)) = self.template_for(st) else {
                continue;
            };
            let expires = now + u64::from(st.remaining_ms) * 1_000_000;
            if let Some(rt) = self.runtimes.get_mut(&id) {
                rt.had_templates = true;
            }
            let template = Template::new(real, expires);
            match st.client_net {
                IpAddr::V4(net) => self
                    .datapath
                    .set_template(TemplateKey::new(index, net.octets()), template)?,
                IpAddr::V6(net) => self
                    .datapath
                    .set_template(TemplateKey::new(index, In6::from(net)), template)?,
            }
            written += 1;
        }
        Ok(written)
    }

    pub fn forget_templates(&mut self, templates: &[SyncTemplate]) -> Result<(), ControlError> {
        for st in templates {
            if let Some((_, index, _)) = self.template_for(st) {
                match st.client_net {
                    IpAddr::V4(net) => self
                        .datapath
                        .remove_template(&TemplateKey::new(index, net.octets()))?,
                    IpAddr::V6(net) => self
                        .datapath
                        .remove_template(&TemplateKey::new(index, In6::from(net)))?,
                }
            }
        }
        Ok(())
    }

    /// Remove connections the active router no longer has (both entries
    /// of a NAT flow).
    pub fn forget_connections(&mut self, conns: &[SyncConn]) -> Result<(), ControlError> {
        for sc in conns {
            if sc.real.is_ipv4() {
                self.forget_connection::<[u8; 4]>(sc)?;
            } else {
                self.forget_connection::<In6>(sc)?;
            }
        }
        Ok(())
    }

    fn forget_connection<A: Family>(&mut self, sc: &SyncConn) -> Result<(), ControlError> {
        let Some(key) = sc.key::<A>() else {
            return Ok(());
        };
        if let Some(conn) = self.datapath.connection(&key)? {
            if conn.method == lvs_common::Method::Nat as u8 {
                self.datapath.remove_connection(&key.nat_reply(&conn))?;
            }
            self.datapath.remove_connection(&key)?;
        }
        Ok(())
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn datapath(&self) -> &D {
        &self.datapath
    }

    pub fn datapath_mut(&mut self) -> &mut D {
        &mut self.datapath
    }

    /// The datapath, for a stopping lvsd to leave forwarding.
    pub fn into_datapath(self) -> D {
        self.datapath
    }

    /// Apply a batch: all of it, or none of it. First the plan: the whole
    /// batch against the state (only the services it touches are copied, to
    /// be put back), local servers and capacity checked. Then the writes,
    /// command by command as IPVS runs its hooks; if one fails, the batch is
    /// put back and every service republished (`recover`), so the maps
    /// never stay half-written.
    pub fn apply(&mut self, commands: &[Command]) -> Result<(), ControlError> {
        let before = self.state.len();
        let undo = self.state.apply_all(commands)?;
        let planned = check_families(commands)
            .and_then(|()| self.check_local_reals(commands))
            .and_then(|()| self.check_capacity(before, &undo));
        self.state.rollback(undo);
        planned?;
        self.in_flight = Some(Undo::default());
        self.quorum_before = Some((self.quorum_up.clone(), self.quorum_changes.len()));
        match self.write(commands) {
            Ok(()) => {
                self.in_flight = None;
                self.quorum_before = None;
                Ok(())
            }
            Err(e) => {
                tracing::error!("writing a change failed, putting it back: {e}");
                if let Err(again) = self.recover() {
                    tracing::error!("republishing after the failure failed too: {again}");
                }
                Err(e)
            }
        }
    }

    /// Put back the change in flight, if a write failed or panicked in its
    /// middle, and republish every service from the desired state, each
    /// with a fresh scheduler (the old one may have seen half a change):
    /// afterwards the maps match the state again.
    pub fn recover(&mut self) -> Result<(), ControlError> {
        if let Some(undo) = self.in_flight.take() {
            self.state.rollback(undo);
        }
        // Nor did the batch move a quorum or owe a command.
        if let Some((quorum_up, changes)) = self.quorum_before.take() {
            self.quorum_up = quorum_up;
            self.quorum_changes.truncate(changes);
        }
        self.unwritten_reals.clear();
        self.unwritten_reals6.clear();
        self.replies.mark_all_dirty();
        self.endpoints = self.state.services().map(|s| s.endpoints().count()).sum();
        let now = self.datapath.now_ns()?;
        let ids: BTreeSet<ServiceId> = self
            .runtimes
            .keys()
            .copied()
            .chain(self.state.services().map(|s| s.spec.id))
            .collect();
        let mut touched = BTreeSet::new();
        for id in ids {
            let new = self.state.service(&id).cloned().map(|s| self.view(&s, now));
            if let Some(svc) = &new {
                let fresh = self.instantiate(&svc.spec, &[]);
                if let Some(rt) = self.runtimes.get_mut(&id) {
                    rt.sched = fresh;
                    rt.dests.clear();
                    rt.localities.clear();
                }
            }
            self.run_hooks(id, None, new.as_ref(), true, &mut touched)?;
            match new {
                Some(svc) => self.scheduled.insert(id, svc),
                None => self.scheduled.remove(&id),
            };
        }
        self.relevance.rebuild(self.state.services());
        self.publish_touched(&touched)?;
        self.write_relevance()
    }

    /// The writes of a planned batch.
    fn write(&mut self, commands: &[Command]) -> Result<(), ControlError> {
        // The batch is valid: replay it command by command, running the
        // scheduler hooks for the services each one changes, as IPVS would.
        // The scheduler sees each service through its servers' health.
        let now = self.datapath.now_ns()?;
        let mut touched = BTreeSet::new();
        for command in commands {
            let before: Vec<(ServiceId, Option<Service>, BTreeSet<Endpoint>)> = self
                .state
                .affected(command)
                .into_iter()
                .map(|id| {
                    let svc = self.state.service(&id);
                    let available = svc.map(|s| self.available(s)).unwrap_or_default();
                    (id, svc.map(|s| self.scheduled_view(s, now)), available)
                })
                .collect();
            let old_health = match command {
                Command::SetRealHealth {
                    service, server, ..
                } => self
                    .state
                    .service(service)
                    .and_then(|s| s.checks_of(server))
                    .cloned(),
                _ => None,
            };
            let undo = self.in_flight.as_mut().expect("set by apply");
            self.state.apply_logged(command, undo)?;
            if let Command::SetRealHealth {
                service,
                server,
                health,
            } = command
            {
                self.reset_condition(*service, *server, old_health.as_ref(), health.as_ref());
            }
            // IPVS runs the scheduler's update hook on every -a/-e/-d, even
            // one that changes nothing the scheduler reads (wrr resets then).
            let hooked = matches!(
                command,
                Command::AddReal { .. } | Command::EditReal { .. } | Command::DeleteReal { .. }
            );
            for (id, old, available) in before {
                let new = self.state.service(&id).cloned().map(|svc| {
                    self.start_ramps(&svc, &available, now);
                    self.scheduled_view(&svc, now)
                });
                self.run_hooks(id, old.as_ref(), new.as_ref(), hooked, &mut touched)?;
                match new {
                    Some(svc) => self.scheduled.insert(id, svc),
                    None => self.scheduled.remove(&id),
                };
            }
        }
        // The quorum is judged on the batch's outcome, not on the steps to
        // it; a move puts the sorry server in or out.
        let undo = self.in_flight.as_ref().expect("set by apply");
        let judged: Vec<ServiceId> = undo.touched().into_iter().map(|(id, _)| id).collect();
        for id in judged {
            let Some(svc) = self.state.service(&id).cloned() else {
                continue;
            };
            let was = self.quorum(&id);
            self.update_quorum(&svc);
            if self.quorum(&id) != was {
                let new = self.scheduled_view(&svc, now);
                let old = self.scheduled.get(&id).cloned();
                if old.as_ref() != Some(&new) {
                    self.run_hooks(id, old.as_ref(), Some(&new), false, &mut touched)?;
                    self.scheduled.insert(id, new);
                }
            }
        }
        let undo = self.in_flight.as_ref().expect("set by apply");
        for (id, old) in undo.touched() {
            let now = self.state.service(&id);
            // Health conditions of servers the batch removed go with them.
            for server in old.into_iter().flat_map(Service::endpoints) {
                if !now.is_some_and(|s| s.reals.iter().any(|r| r.server == server)) {
                    self.conditions.remove(&(id, server));
                }
            }
            self.endpoints += now.map_or(0, |s| s.endpoints().count());
            self.endpoints -= old.map_or(0, |s| s.endpoints().count());
            self.relevance.replace(old, now);
        }
        self.publish_touched(&touched)?;
        self.write_relevance()
    }

    /// The `REPLY_SERVICES` entries that changed.
    fn write_replies(&mut self) -> Result<(), ControlError> {
        for (server, services) in self.replies.changed() {
            self.datapath.set_reply_services(server, services)?;
        }
        self.replies.written();
        Ok(())
    }

    /// The `RELEVANT` bitmaps, if they changed.
    fn write_relevance(&mut self) -> Result<(), ControlError> {
        if let Some(words) = self.relevance.take_changed() {
            if let Err(e) = self.datapath.set_relevant(words) {
                self.relevance.mark_dirty();
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Indexes of removed objects are only freed at the end of a batch, so
    /// old and new objects count together, each once.
    fn check_capacity(&self, services_before: usize, undo: &Undo) -> Result<(), ControlError> {
        let (mut services, mut reals) = (services_before, self.endpoints);
        let mut mh = self
            .runtimes
            .values()
            .filter(|rt| rt.maglev.is_some())
            .count();
        for (id, old) in undo.touched() {
            let Some(new) = self.state.service(&id) else {
                continue;
            };
            services += usize::from(old.is_none());
            let holds_table = self.runtimes.get(&id).is_some_and(|rt| rt.maglev.is_some());
            mh += usize::from(new.spec.scheduler == SchedulerName::Mh && !holds_table);
            let had: HashSet<Endpoint> = old.into_iter().flat_map(Service::endpoints).collect();
            reals += new.endpoints().filter(|e| !had.contains(e)).count();
        }
        let limits = self.datapath.limits();
        if services > limits.services as usize {
            return Err(ControlError::Capacity {
                what: "services",
                max: limits.services,
            });
        }
        if reals > limits.reals as usize {
            return Err(ControlError::Capacity {
                what: "real servers",
                max: limits.reals,
            });
        }
        if mh > limits.mh_services as usize {
            return Err(ControlError::Capacity {
                what: "mh services",
                max: limits.mh_services,
            });
        }
        Ok(())
    }

    /// The service as its scheduler sees it now: real servers that health
    /// took out are left out (or kept at weight 0 with
    /// `inhibit_on_failure`), weights are what checkers set (dynamic exec,
    /// file) scaled by the agent and slow start, and the sorry server
    /// stands in while the service's quorum is lost.
    fn scheduled_view(&self, svc: &Service, now_ns: u64) -> Service {
        let id = svc.spec.id;
        let window = condition::slow_start_window(svc.spec.scheduler, &svc.health);
        let condition = |server: &Endpoint| self.conditions.get(&(id, *server));
        let ramp = |c: Option<&Condition>| {
            c.and_then(|c| c.ramp_since_ns)
                .and_then(|since| condition::ramp_permille(since, now_ns, window))
        };
        let adjusted = svc.reals.iter().any(|r| {
            let c = condition(&r.server);
            c.is_some_and(|c| c.percent() != 100) || ramp(c).is_some()
        });
        let scale = if adjusted && condition::ratio_weighted(svc.spec.scheduler) {
            condition::SCALE
        } else {
            1
        };
        let mut reals = Vec::with_capacity(svc.reals.len());
        for real in &svc.reals {
            let c = condition(&real.server);
            let alive = c.is_none_or(Condition::alive);
            let weight = if alive {
                let percent = c.map_or(100, Condition::percent);
                let moved = c.map_or(real.weight, |c| c.weight(real.weight));
                condition::effective_weight(moved, percent, ramp(c), scale)
            } else if svc
                .checks_of(&real.server)
                .is_some_and(|h| h.inhibit_on_failure)
            {
                0
            } else {
                continue;
            };
            reals.push(RealSpec {
                weight,
                ..real.clone()
            });
        }
        // A service without real servers is down (keepalived puts the sorry
        // server in); one not judged yet is up.
        let up = !svc.reals.is_empty() && self.quorum_up.get(&id).copied().unwrap_or(true);
        if let (false, Some(sorry)) = (up, svc.health.sorry) {
            reals = vec![sorry_spec(sorry)];
        }
        Service {
            reals,
            ..svc.clone()
        }
    }

    /// The service as its scheduler sees it from now on: its quorum moved
    /// first, for the sorry server.
    fn view(&mut self, svc: &Service, now_ns: u64) -> Service {
        self.update_quorum(svc);
        self.scheduled_view(svc, now_ns)
    }

    /// keepalived's `update_quorum_state`, run whenever a server's health
    /// or the configuration changes: the live weight is the weight (as
    /// checkers set it, like keepalived's effective weight) of the real
    /// servers health has not taken out; the quorum is held to the total
    /// configured weight. A service is first judged once it has real
    /// servers (keepalived ignores one without), and that first state is
    /// no change.
    fn update_quorum(&mut self, svc: &Service) {
        let id = svc.spec.id;
        if svc.reals.is_empty() {
            // Nothing to serve with: not announced, judged afresh later.
            self.quorum_up.remove(&id);
            return;
        }
        let total: u64 = svc.reals.iter().map(|r| u64::from(r.weight)).sum();
        let live: u64 = svc
            .reals
            .iter()
            .filter_map(|r| match self.conditions.get(&(id, r.server)) {
                None => Some(r.weight),
                Some(c) => c.alive().then(|| c.weight(r.weight)),
            })
            .map(u64::from)
            .sum();
        // The first judgement is keepalived's `set_quorum_states`: up only
        // at quorum + hysteresis.
        let judged = self.quorum_up.get(&id).copied();
        let was = judged.unwrap_or(false);
        let up = svc.health.quorum_holds(was, live, total);
        self.quorum_up.insert(id, up);
        if judged.is_some() && up != was {
            tracing::info!(service = %id, live, "{} quorum", if up { "gained" } else { "lost" });
            self.quorum_changes.push(QuorumChange {
                service: id,
                up,
                command: if up {
                    svc.health.quorum_up.clone()
                } else {
                    svc.health.quorum_down.clone()
                },
            });
        }
    }

    /// Quorum changes since the last call, oldest first (for their commands).
    pub fn take_quorum_changes(&mut self) -> Vec<QuorumChange> {
        std::mem::take(&mut self.quorum_changes)
    }

    /// keepalived's `omega`: the `quorum_down` commands due when lvsd
    /// stops, for services with `omega` that have their quorum.
    pub fn omega_commands(&self) -> Vec<String> {
        self.state
            .services()
            .filter(|s| s.health.omega && self.quorum(&s.spec.id))
            .filter_map(|s| s.health.quorum_down.clone())
            .collect()
    }

    /// Whether `id` has real servers and its quorum.
    pub fn quorum(&self, id: &ServiceId) -> bool {
        self.quorum_up.get(id) == Some(&true)
    }

    /// Announce the VIPs of services with their quorum, if that changed.
    /// A failure does not undo the batch that moved them (the maps are
    /// right): it is logged, and the next publication or maintenance tick
    /// tries again.
    pub fn announce(&mut self) {
        let vips: BTreeSet<IpAddr> = self
            .state
            .services()
            .filter(|s| self.quorum(&s.spec.id))
            .map(|s| s.spec.id.vip.addr)
            .collect();
        if vips == self.announced {
            return;
        }
        match self.datapath.announce(&vips) {
            Ok(()) => self.announced = vips,
            Err(e) => tracing::error!("announcing the VIPs {vips:?}: {e}"),
        }
    }

    /// Real servers that take new connections by health and weight alone.
    fn available(&self, svc: &Service) -> BTreeSet<Endpoint> {
        svc.reals
            .iter()
            .filter(|r| match self.conditions.get(&(svc.spec.id, r.server)) {
                None => r.weight > 0,
                Some(c) => c.weight(r.weight) > 0 && c.alive() && c.percent() > 0,
            })
            .map(|r| r.server)
            .collect()
    }

    /// Slow start for servers that just became available (new, recovered,
    /// or raised from weight 0) while the others carry connections: with
    /// none anywhere, there is no flood to prevent.
    fn start_ramps(&mut self, svc: &Service, before: &BTreeSet<Endpoint>, now_ns: u64) {
        let id = svc.spec.id;
        if condition::slow_start_window(svc.spec.scheduler, &svc.health) == 0 {
            return;
        }
        let (indexes, counts) = (self.real_index.get(&id), &self.counts);
        let loaded = |server: &Endpoint| {
            indexes
                .and_then(|m| m.get(server))
                .and_then(|i| counts.get(i))
                .is_some_and(|c| c.active + c.inactive > 0)
        };
        let risen: Vec<Endpoint> = self
            .available(svc)
            .into_iter()
            .filter(|e| !before.contains(e))
            .collect();
        for server in risen {
            if svc
                .reals
                .iter()
                .any(|r| r.server != server && loaded(&r.server))
            {
                self.conditions
                    .entry((id, server))
                    .or_default()
                    .ramp_since_ns = Some(now_ns);
            }
        }
    }

    /// A server's checkers were (re)configured (`old` before, `new` now).
    /// A checker that did not change (the same check at the same place)
    /// keeps what it reported, as its task keeps running (a reload with
    /// other changes must not put a dead server back in service); a new
    /// or changed one starts in its start state; the agent's word stays
    /// while the agent is the same.
    fn reset_condition(
        &mut self,
        id: ServiceId,
        server: Endpoint,
        old: Option<&RealHealth>,
        new: Option<&RealHealth>,
    ) {
        let before = self.conditions.remove(&(id, server)).unwrap_or_default();
        let mut condition = Condition {
            ramp_since_ns: before.ramp_since_ns,
            ..Condition::default()
        };
        let Some(new) = new else {
            self.conditions.insert((id, server), condition);
            return;
        };
        for (i, check) in new.checks.iter().enumerate() {
            let unchanged = old.and_then(|o| o.checks.get(i)) == Some(check);
            if unchanged {
                if let Some(why) = before.failing.get(&i) {
                    condition.failing.insert(i, why.clone());
                }
                if let Some(shift) = before.shifts.get(&i) {
                    condition.shifts.insert(i, *shift);
                }
            } else if check.start == StartState::Down {
                condition.failing.insert(i, "not checked yet".to_string());
            }
        }
        if new.agent.is_some() && old.and_then(|o| o.agent.as_ref()) == new.agent.as_ref() {
            condition.agent_percent = before.agent_percent;
            condition.agent_state = before.agent_state;
        }
        self.conditions.insert((id, server), condition);
    }

    /// Whether `server` has a load agent (a removed agent's task may report
    /// once more before it is stopped).
    pub fn has_agent(&self, id: ServiceId, server: Endpoint) -> bool {
        self.state
            .service(&id)
            .and_then(|s| s.checks_of(&server))
            .is_some_and(|h| h.agent.is_some())
    }

    /// Whether a checker's report comes from the checker configured at its
    /// place now, not from one a reload replaced (its task may report once
    /// more before it is stopped).
    pub fn is_current_checker(
        &self,
        id: ServiceId,
        server: Endpoint,
        index: usize,
        fingerprint: u64,
    ) -> bool {
        self.state
            .service(&id)
            .and_then(|s| s.checks_of(&server))
            .and_then(|h| h.checks.get(index))
            .is_some_and(|c| c.fingerprint() == fingerprint)
    }

    /// A checker's verdict changed: `failure` says why it is down, `None`
    /// that it is up, and `shift` how, up, it moves the server's weight.
    /// Reports for servers no longer configured are stale and ignored.
    /// Republishes the service if its scheduling changed.
    pub fn set_check(
        &mut self,
        id: ServiceId,
        server: Endpoint,
        check: usize,
        failure: Option<String>,
        shift: Option<Shift>,
    ) -> Result<(), ControlError> {
        self.update_condition(id, server, |c| {
            match failure {
                Some(why) => c.failing.insert(check, why),
                None => c.failing.remove(&check),
            };
            match shift {
                Some(shift) => c.shifts.insert(check, shift),
                None => c.shifts.remove(&check),
            };
        })
    }

    /// The agent's latest report: a weight percentage (already within its
    /// bounds) and an availability word, each kept until the next says
    /// otherwise.
    pub fn set_agent(
        &mut self,
        id: ServiceId,
        server: Endpoint,
        percent: Option<u32>,
        state: Option<AgentState>,
    ) -> Result<(), ControlError> {
        self.update_condition(id, server, |c| {
            if percent.is_some() {
                c.agent_percent = percent;
            }
            if state.is_some() {
                c.agent_state = state;
            }
        })
    }

    fn update_condition(
        &mut self,
        id: ServiceId,
        server: Endpoint,
        change: impl FnOnce(&mut Condition),
    ) -> Result<(), ControlError> {
        let Some(svc) = self
            .state
            .service(&id)
            .filter(|s| s.reals.iter().any(|r| r.server == server))
            .cloned()
        else {
            return Ok(());
        };
        let before = self.available(&svc);
        change(self.conditions.entry((id, server)).or_default());
        let now = self.datapath.now_ns()?;
        self.start_ramps(&svc, &before, now);
        self.refresh([id])
    }

    /// Move slow-start ramps on (and end those that are complete): called
    /// once a second. Returns how many services were republished.
    pub fn advance_ramps(&mut self) -> Result<usize, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut due = BTreeSet::new();
        for ((id, _), c) in &mut self.conditions {
            let Some(since) = c.ramp_since_ns else {
                continue;
            };
            let Some(svc) = self.state.service(id) else {
                continue;
            };
            let window = condition::slow_start_window(svc.spec.scheduler, &svc.health);
            if condition::ramp_permille(since, now, window).is_none() {
                c.ramp_since_ns = None;
            }
            due.insert(*id);
        }
        let n = due.len();
        self.refresh(due)?;
        Ok(n)
    }

    /// Republish services whose scheduled view changed since the last
    /// publication.
    fn refresh(&mut self, ids: impl IntoIterator<Item = ServiceId>) -> Result<(), ControlError> {
        let now = self.datapath.now_ns()?;
        let mut touched = BTreeSet::new();
        for id in ids {
            let Some(svc) = self.state.service(&id).cloned() else {
                continue;
            };
            let new = self.view(&svc, now);
            let old = self.scheduled.get(&id).cloned();
            if old.as_ref() == Some(&new) {
                continue;
            }
            self.run_hooks(id, old.as_ref(), Some(&new), false, &mut touched)?;
            self.scheduled.insert(id, new);
        }
        self.publish_touched(&touched)
    }

    /// Scheduler hooks for one service's change by one command.
    fn run_hooks(
        &mut self,
        id: ServiceId,
        old: Option<&Service>,
        new: Option<&Service>,
        hooked: bool,
        touched: &mut BTreeSet<ServiceId>,
    ) -> Result<(), ControlError> {
        let Some(svc) = new else {
            // Deleted: unpublished at the end of the batch.
            touched.insert(id);
            return Ok(());
        };
        if old == Some(svc) && !hooked {
            return Ok(());
        }
        touched.insert(id);
        if !self.runtimes.contains_key(&id) {
            let Slot { index, reused } =
                self.service_slots.take().ok_or(ControlError::Capacity {
                    what: "services",
                    max: self.datapath.limits().services,
                })?;
            let origin = if reused {
                self.datapath.reset_service_counters(index)?;
                self.datapath.cursor(index)?
            } else {
                0
            };
            self.service_baseline.remove(&index);
            self.service_rates.remove(&index);
            self.service_at.insert(index, id);
            self.runtimes.insert(
                id,
                Runtime {
                    index,
                    half: 1,
                    ring_len: 0,
                    cursor_origin: origin,
                    sched: self.instantiate(&svc.spec, &[]),
                    dests: Vec::new(),
                    synced: true,
                    ring: Vec::new(),
                    published_origin: origin,
                    counted_cursor: origin,
                    pending: HashMap::default(),
                    localities: HashMap::default(),
                    had_templates: false,
                    had_localities: false,
                    maglev: None,
                },
            );
        }
        let rt = self.runtimes.get_mut(&id).expect("runtime created above");
        if svc.spec.scheduler == SchedulerName::Mh && rt.maglev.is_none() {
            let slot = self.maglev_slots.take().ok_or(ControlError::Capacity {
                what: "mh services",
                max: self.datapath.limits().mh_services,
            })?;
            rt.maglev = Some(slot.index);
        }
        let dests = self.dests_for(svc, old)?;
        let fresh = self.instantiate(&svc.spec, &dests);
        let rt = self.runtimes.get_mut(&id).expect("runtime created above");
        catch_up(&self.datapath, rt, &svc.spec)?;
        if old.is_some_and(|o| {
            (o.spec.scheduler, o.spec.flags) != (svc.spec.scheduler, svc.spec.flags)
        }) {
            rt.sched = fresh;
            // A new scheduler starts with no destinations of its own.
            let stale = std::mem::take(&mut rt.localities);
            for addr in stale.into_keys() {
                remove_locality(&mut self.datapath, rt.index, addr)?;
            }
        } else if !same_servers(&rt.dests, &dests) || hooked {
            rt.sched.update(&rt.dests, &dests);
        }
        rt.dests = dests;
        Ok(())
    }

    /// A local real server is reached on the service's own port (the local
    /// stack sees the packet as the client sent it), so NAT to a local
    /// server on another port is refused before anything changes.
    fn check_local_reals(&self, commands: &[Command]) -> Result<(), ControlError> {
        for command in commands {
            let (Command::AddReal { service, real } | Command::EditReal { service, real }) =
                command
            else {
                continue;
            };
            let vport = service.vip.port;
            let local = self.datapath.is_local(real.server.addr);
            if vport != 0 && real.server.port != vport && local {
                return Err(ControlError::LocalPortMapping {
                    service: *service,
                    server: real.server,
                    vport,
                });
            }
        }
        Ok(())
    }

    /// Real server indexes for a service's list (allocating new ones), in
    /// IPVS order, with their datapath entries written.
    fn dests_for(
        &mut self,
        svc: &Service,
        old: Option<&Service>,
    ) -> Result<Vec<Dest>, ControlError> {
        // Only new servers, or ones whose method changed, are written (the
        // entry holds address, port and method): one command must not cost
        // a write per server of the service.
        let written: HashMap<Endpoint, lvs_state::model::Method> = old
            .map(|o| o.reals.iter().map(|r| (r.server, r.method)).collect())
            .unwrap_or_default();
        let mut dests = Vec::with_capacity(svc.reals.len());
        for real in &svc.reals {
            let index = match self.real_index_of(&svc.spec.id, &real.server) {
                Some(i) => i,
                None => {
                    let Slot { index: i, reused } =
                        self.real_slots.take().ok_or(ControlError::Capacity {
                            what: "real servers",
                            max: self.datapath.limits().reals,
                        })?;
                    if reused {
                        self.datapath.reset_real_counters(i)?;
                    }
                    self.real_baseline.remove(&i);
                    self.real_rates.remove(&i);
                    self.real_index
                        .entry(svc.spec.id)
                        .or_default()
                        .insert(real.server, i);
                    i
                }
            };
            if written.get(&real.server) != Some(&real.method) {
                match real.server.addr {
                    // An IPv6 server keeps no one-entry NAT connections.
                    IpAddr::V6(addr) => {
                        let local = self.datapath.is_local(addr.into());
                        self.unwritten_reals6
                            .push((index, datapath_real(real, In6::from(addr), local)));
                        // The tunnel of an IPv4 service: its IPv4 entry
                        // holds no address, so the IPv4 path takes the
                        // IPv6 one (`Decision::crosses_families`).
                        if svc.spec.id.vip.addr.is_ipv4() {
                            self.unwritten_reals
                                .push((index, datapath_real(real, [0; 4], false)));
                        }
                    }
                    // The tunnel of an IPv6 service, as above.
                    IpAddr::V4(addr) if svc.spec.id.vip.addr.is_ipv6() => {
                        self.unwritten_reals
                            .push((index, datapath_real(real, addr.octets(), false)));
                        self.unwritten_reals6
                            .push((index, datapath_real(real, In6::default(), false)));
                    }
                    IpAddr::V4(addr) => {
                        let local = self.datapath.is_local(addr.into());
                        let mut entry = datapath_real(real, addr.octets(), local);
                        // A port-0 service's server takes the client's
                        // port: its replies' source port names no service.
                        if real.method == lvs_state::model::Method::Nat
                            && !local
                            && real.server.port != 0
                            && self.replies.hold(
                                index,
                                ReplyKey::from_wire(
                                    addr.octets(),
                                    real.server.port.to_be_bytes(),
                                    svc.spec.id.protocol.number(),
                                ),
                                VirtualAddr::from_wire(
                                    ipv4(svc.spec.id.vip.addr).octets(),
                                    svc.spec.id.vip.port.to_be_bytes(),
                                ),
                            )
                        {
                            entry = entry.one_entry();
                        }
                        self.unwritten_reals.push((index, entry));
                    }
                }
            }
            // Editing a server clears OVERLOAD when its upper threshold is
            // removed or raised (§1.1).
            let previous = old.and_then(|o| o.reals.iter().find(|r| r.server == real.server));
            if previous.is_some_and(|p| threshold::edit_clears(p, real)) {
                self.overloaded.remove(&index);
            }
            let counts = self.counts.get(&index).copied().unwrap_or_default();
            let last = self
                .last_weights
                .entry((svc.spec.id, real.server))
                .or_insert(real.weight);
            if real.weight != 0 {
                *last = real.weight;
            }
            let last_weight = Some(*last);
            dests.push(Dest {
                last_weight,
                id: index,
                addr: real.server.addr,
                port: real.server.port,
                weight: real.weight,
                overloaded: self.overloaded.contains(&index),
                active: counts.active,
                inactive: counts.inactive,
                u_threshold: real.u_threshold,
            });
        }
        // A server that left the view joins it afresh (keepalived deletes
        // and re-adds it: the kernel takes its weight then).
        let id = svc.spec.id;
        self.last_weights.retain(|(service, server), _| {
            *service != id || svc.reals.iter().any(|r| r.server == *server)
        });
        Ok(dests)
    }

    /// Publish each touched service's decisions in its scheduler's form
    /// into the idle half, then flip the service to it; unpublish deleted
    /// services.
    fn publish_touched(&mut self, touched: &BTreeSet<ServiceId>) -> Result<(), ControlError> {
        // Real servers first: a ring published below may name them; and
        // before them the reply index their one-entry flag relies on.
        self.write_replies()?;
        if !self.unwritten_reals.is_empty() {
            let reals = std::mem::take(&mut self.unwritten_reals);
            self.datapath.set_reals(&reals)?;
        }
        if !self.unwritten_reals6.is_empty() {
            let reals = std::mem::take(&mut self.unwritten_reals6);
            self.datapath.set_reals(&reals)?;
        }
        let now_s = if touched.is_empty() {
            0
        } else {
            self.datapath.now_ns()? / NS_PER_SEC
        };
        for id in touched {
            let Some(svc) = self.state.service(id) else {
                // Deleted: unpublish, then free its indexes.
                if let Some(rt) = self.runtimes.remove(id) {
                    self.service_at.remove(&rt.index);
                    self.last_weights.retain(|(service, _), _| service != id);
                    write_service(&mut self.datapath, id, None)?;
                    self.purge(&rt)?;
                    self.service_slots.give(rt.index);
                    self.quorum_up.remove(id);
                    if let Some(slot) = rt.maglev {
                        self.maglev_slots.give(slot);
                    }
                }
                // `purge` removed the service's templates.
                self.release_reals(id, &[], false)?;
                continue;
            };
            // Servers health took out keep their indexes (and counters).
            let live: Vec<Endpoint> = svc.endpoints().collect();
            let rt = self
                .runtimes
                .get_mut(id)
                .expect("touched services have runtimes");
            let form = svc.spec.scheduler.form();
            let forecast = if refills(&svc.spec) {
                // The picks claimed from the old ring since the last count
                // are connections the counts do not show yet.
                fold_claimed(
                    &mut rt.pending,
                    &rt.ring,
                    rt.published_origin,
                    rt.counted_cursor,
                    rt.cursor_origin,
                );
                let mut d = rt.dests.clone();
                for x in &mut d {
                    x.active += rt.pending.get(&x.id).copied().unwrap_or(0);
                }
                d
            } else {
                rt.dests.clone()
            };
            let ring = match (form, svc.spec.scheduler.counts_connections()) {
                (Form::Ring, true) => {
                    publish::build_counting_ring(rt.sched.as_ref(), &forecast, RING_SLOTS as usize)
                }
                (Form::Ring, false) => {
                    publish::build_ring(rt.sched.as_ref(), &rt.dests, RING_SLOTS as usize)
                }
                // New destinations take wlc's choice, as IPVS's lblc does.
                (Form::Locality, _) => publish::build_counting_ring(
                    SchedulerName::Wlc.instantiate(&[], svc.spec.flags).as_ref(),
                    &forecast,
                    RING_SLOTS as usize,
                ),
                (Form::Buckets | Form::Maglev, _) => publish::Ring {
                    picks: Vec::new(),
                    exact: true,
                },
            };
            let half = 1 - rt.half;
            let base = ring_base(rt.index, half);
            self.datapath.write_ring(base, &ring.picks)?;
            let mut value =
                ServiceValue::ring(rt.index, base, ring.picks.len() as u32, rt.cursor_origin);
            if refills(&svc.spec) {
                value.flags |= service_flags::SIGNAL_LOW_WATER;
            }
            match form {
                Form::Ring => {}
                Form::Buckets => {
                    let resolved = rt.sched.buckets(&rt.dests).expect("sh and dh have buckets");
                    let table: Vec<u32> = resolved
                        .iter()
                        .map(|b| b.map_or(NO_REAL, |i| rt.dests[i].id))
                        .collect();
                    let buckets = bucket_base(rt.index, half);
                    self.datapath.write_buckets(buckets, &table)?;
                    value = value.with_form(Form::Buckets, buckets);
                    if svc.spec.scheduler == SchedulerName::Dh {
                        value.flags |= service_flags::HASH_DESTINATION;
                    } else if svc.spec.flags.port {
                        value.flags |= service_flags::HASH_PORT;
                    }
                }
                Form::Maglev => {
                    let resolved = rt.sched.buckets(&rt.dests).expect("mh has a table");
                    // With mh-fallback, an unusable server's slot says
                    // "probe on", unless no slot is usable (the kernel's
                    // probe would find none).
                    let probe = svc.spec.flags.fallback && resolved.iter().any(Option::is_some);
                    let table: Vec<u32> = resolved
                        .iter()
                        .map(|b| match b {
                            Some(i) => rt.dests[*i].id,
                            None if probe => MH_PROBE,
                            None => NO_REAL,
                        })
                        .collect();
                    let slot = rt.maglev.expect("an mh service holds a table");
                    let base = maglev_base(slot, half);
                    self.datapath.write_maglev(base, &table)?;
                    value = value.with_form(Form::Maglev, base);
                    if svc.spec.flags.port {
                        value.flags |= service_flags::HASH_PORT;
                    }
                }
                Form::Locality => {
                    value = value.with_form(Form::Locality, 0);
                    match id.vip.addr {
                        IpAddr::V4(_) => {
                            sync_localities::<_, [u8; 4]>(&mut self.datapath, rt, &forecast, now_s)?
                        }
                        IpAddr::V6(_) => {
                            sync_localities::<_, In6>(&mut self.datapath, rt, &forecast, now_s)?
                        }
                    }
                }
            }
            rt.had_templates |= svc.spec.persistence.is_some();
            rt.had_localities |= form == Form::Locality;
            write_service(&mut self.datapath, id, Some((value, svc.spec.persistence)))?;
            if form != Form::Maglev {
                if let Some(slot) = rt.maglev.take() {
                    self.maglev_slots.give(slot);
                }
            }
            rt.half = half;
            rt.ring_len = value.ring_len;
            rt.ring = ring.picks;
            rt.published_origin = rt.cursor_origin;
            rt.synced = false;
            if !ring.exact {
                tracing::warn!(service = %id, "scheduling period longer than {RING_SLOTS} picks; the ring approximates it");
            }
            let search_templates = rt.had_templates;
            self.release_reals(id, &live, search_templates)?;
        }
        self.announce();
        Ok(())
    }

    /// Free the real indexes of `id`'s servers not in `keep`, first
    /// removing the persistence templates that lead to them, so a reused
    /// index never inherits a client.
    fn release_reals(
        &mut self,
        id: &ServiceId,
        keep: &[Endpoint],
        search_templates: bool,
    ) -> Result<(), ControlError> {
        let Some(indexes) = self.real_index.get_mut(id) else {
            return Ok(());
        };
        let gone: Vec<(Endpoint, u32)> = indexes
            .iter()
            .filter(|(e, _)| !keep.contains(e))
            .map(|(e, i)| (*e, *i))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        for (e, _) in &gone {
            indexes.remove(e);
        }
        if indexes.is_empty() {
            self.real_index.remove(id);
        }
        if search_templates {
            let freed: BTreeSet<u32> = gone.iter().map(|(_, i)| *i).collect();
            let leads_to_freed = |_: &u32, t: &Template| freed.contains(&t.real_index);
            self.remove_templates::<[u8; 4]>(leads_to_freed)?;
            self.remove_templates::<In6>(leads_to_freed)?;
        }
        let now = self.datapath.now_ns()?;
        for (_, i) in gone {
            self.overloaded.remove(&i);
            self.draining.insert(i, now);
        }
        Ok(())
    }

    /// The datapath index of one of a service's real servers.
    fn real_index_of(&self, id: &ServiceId, server: &Endpoint) -> Option<u32> {
        self.real_index.get(id)?.get(server).copied()
    }

    /// Every real server index: (service, server, index).
    fn real_indexes(&self) -> impl Iterator<Item = (ServiceId, Endpoint, u32)> + '_ {
        self.real_index
            .iter()
            .flat_map(|(id, m)| m.iter().map(|(e, i)| (*id, *e, *i)))
    }

    /// Remove a service index's locality entries and templates.
    fn purge(&mut self, rt: &Runtime) -> Result<(), ControlError> {
        if rt.had_localities {
            self.remove_localities::<[u8; 4]>(rt.index)?;
            self.remove_localities::<In6>(rt.index)?;
        }
        if rt.had_templates {
            let of_service = |service: &u32, _: &Template| *service == rt.index;
            self.remove_templates::<[u8; 4]>(of_service)?;
            self.remove_templates::<In6>(of_service)?;
        }
        Ok(())
    }

    /// Remove service `index`'s locality entries in family `A`'s table.
    fn remove_localities<A: Family>(&mut self, index: u32) -> Result<(), ControlError> {
        for (key, _) in self.datapath.localities::<A>()? {
            if key.service_index == index {
                self.datapath.remove_locality(&key)?;
            }
        }
        Ok(())
    }

    /// Remove family `A`'s templates `which` picks (by service index and
    /// template).
    fn remove_templates<A: Family>(
        &mut self,
        which: impl Fn(&u32, &Template) -> bool,
    ) -> Result<(), ControlError> {
        for (key, template) in self.datapath.templates::<A>()? {
            if which(&key.service_index, &template) {
                self.datapath.remove_template(&key)?;
            }
        }
        Ok(())
    }

    /// Take over what the lvsd before this one left (see
    /// `lvs_datapath::previous`): its counters, so that `-L --stats` goes
    /// on from them, its persistence templates and its connections, each
    /// by address to this lvsd's indexes (as a backup router imports its
    /// peer's). What this configuration no longer has is left out. Returns
    /// how many connections were carried.
    pub fn adopt(
        &mut self,
        conns: &[SyncConn],
        templates: &[SyncTemplate],
        services: &[(ServiceId, Counters)],
        reals: &[(ServiceId, Endpoint, Counters)],
    ) -> Result<usize, ControlError> {
        for (id, counters) in services {
            if let Some(index) = self.runtimes.get(id).map(|rt| rt.index) {
                self.datapath.seed_service_counters(index, *counters)?;
                self.service_rates
                    .insert(index, Estimator::starting_at(*counters));
            }
        }
        for (id, server, counters) in reals {
            if let Some(index) = self.real_index_of(id, server) {
                self.datapath.seed_real_counters(index, *counters)?;
                self.real_rates
                    .insert(index, Estimator::starting_at(*counters));
            }
        }
        self.import_templates(templates)?;
        self.import_connections(conns)
    }

    /// The connections of `conns` this table does not hold: those the
    /// previous datapath made after `adopt` read it, before this one
    /// replaced it. Returns how many.
    pub fn adopt_missing(&mut self, conns: &[SyncConn]) -> Result<usize, ControlError> {
        let mut missing = Vec::new();
        for sc in conns {
            let held = match (sc.key::<[u8; 4]>(), sc.key::<In6>()) {
                (Some(key), _) => self.datapath.connection(&key)?.is_some(),
                (_, Some(key)) => self.datapath.connection(&key)?.is_some(),
                _ => true,
            };
            if !held {
                missing.push(*sc);
            }
        }
        self.import_connections(&missing)
    }

    /// Each service's datapath index, for the next lvsd to find its
    /// counters by (`adopt`).
    pub fn service_indexes(&self) -> Vec<(ServiceId, u32)> {
        self.runtimes
            .iter()
            .map(|(id, rt)| (*id, rt.index))
            .collect()
    }

    /// Each real server's datapath index, likewise.
    pub fn real_server_indexes(&self) -> Vec<(ServiceId, Endpoint, u32)> {
        self.real_indexes().collect()
    }

    /// `-Z`: zero one service's counters and rates (and its servers'), or
    /// all: every server with an index, also one health took out.
    pub fn zero(&mut self, service: Option<ServiceId>) -> Result<(), ControlError> {
        if let Some(id) = service {
            if self.state.service(&id).is_none() {
                return Err(ModelError::NoSuchService(id).into());
            }
        }
        let chosen = |id: &ServiceId| service.is_none_or(|s| s == *id);
        let services: Vec<u32> = self
            .runtimes
            .iter()
            .filter(|(id, _)| chosen(id))
            .map(|(_, rt)| rt.index)
            .collect();
        let reals: Vec<u32> = self
            .real_indexes()
            .filter(|(id, _, _)| chosen(id))
            .map(|(_, _, index)| index)
            .collect();
        for index in services {
            let c = self.datapath.service_counters(index)?;
            self.service_baseline.insert(index, c);
            self.service_rates.insert(index, Estimator::starting_at(c));
        }
        for index in reals {
            let c = self.datapath.real_counters(index)?;
            self.real_baseline.insert(index, c);
            self.real_rates.insert(index, Estimator::starting_at(c));
        }
        Ok(())
    }

    /// Sample every service's and real server's rate estimator, once
    /// `rate::PERIOD_NS` has passed since the last sample; maintenance
    /// calls this every second. Estimators of freed indexes go.
    pub fn estimate(&mut self) -> Result<(), ControlError> {
        let now = self.datapath.now_ns()?;
        match self.estimated_ns {
            Some(last) if now.saturating_sub(last) >= ESTIMATE_DUE_NS => {}
            Some(_) => return Ok(()),
            None => {
                // The first call only starts the clock.
                self.estimated_ns = Some(now);
                return Ok(());
            }
        }
        self.estimated_ns = Some(now);
        let (service_counters, real_counters) = self.all_counters()?;
        let mut service_rates =
            HashMap::with_capacity_and_hasher(self.runtimes.len(), Default::default());
        for rt in self.runtimes.values() {
            // A new index's counters were reset: its estimator starts at 0.
            let mut e = self
                .service_rates
                .get(&rt.index)
                .copied()
                .unwrap_or_default();
            e.sample(service_counters[rt.index as usize]);
            service_rates.insert(rt.index, e);
        }
        let mut real_rates =
            HashMap::with_capacity_and_hasher(self.real_rates.len(), Default::default());
        let indexes: Vec<u32> = self.real_indexes().map(|(_, _, i)| i).collect();
        for index in indexes {
            let mut e = self.real_rates.get(&index).copied().unwrap_or_default();
            e.sample(real_counters[index as usize]);
            real_rates.insert(index, e);
        }
        self.service_rates = service_rates;
        self.real_rates = real_rates;
        Ok(())
    }

    /// Every service's and real server's counters, by index, in two reads.
    fn all_counters(&self) -> Result<(Vec<Counters>, Vec<Counters>), ControlError> {
        Ok((
            self.datapath
                .service_counters_upto(self.service_slots.fresh)?,
            self.datapath.real_counters_upto(self.real_slots.fresh)?,
        ))
    }

    /// Live persistence templates per real index, counting only persistent
    /// services' (IPVS's `persistconns`).
    fn persistent_conns(&self) -> Result<HashMap<u32, u32>, ControlError> {
        let persistent: BTreeSet<u32> = self
            .state
            .services()
            .filter(|s| s.spec.persistence.is_some())
            .filter_map(|s| Some(self.runtimes.get(&s.spec.id)?.index))
            .collect();
        let mut per_real = HashMap::default();
        if persistent.is_empty() {
            return Ok(per_real);
        }
        let now = self.datapath.now_ns()?;
        let mut count = |service: u32, template: Template| {
            if persistent.contains(&service) && template.expires_ns > now {
                *per_real.entry(template.real_index).or_default() += 1;
            }
        };
        for (key, template) in self.datapath.templates::<[u8; 4]>()? {
            count(key.service_index, template);
        }
        for (key, template) in self.datapath.templates::<In6>()? {
            count(key.service_index, template);
        }
        Ok(per_real)
    }

    /// Everything `lvsadm -L` shows.
    pub fn snapshot(&self) -> Result<Snapshot, ControlError> {
        self.snapshot_with(true)
    }

    /// The snapshot; without `counters`, stats and rates stay zero and the
    /// datapath's counters are not read.
    pub fn snapshot_with(&self, counters: bool) -> Result<Snapshot, ControlError> {
        let templates = self.persistent_conns()?;
        let now = self.datapath.now_ns()?;
        let (service_counters, real_counters) = if counters {
            self.all_counters()?
        } else {
            (
                vec![Counters::default(); self.service_slots.fresh as usize],
                vec![Counters::default(); self.real_slots.fresh as usize],
            )
        };
        let rates_of = |estimators: &HashMap<u32, Estimator>, index| match counters {
            true => estimators
                .get(&index)
                .map(Estimator::rates)
                .unwrap_or_default(),
            false => Rates::default(),
        };
        let mut services = Vec::with_capacity(self.state.len());
        for svc in self.state.services() {
            let rt = &self.runtimes[&svc.spec.id];
            let raw = service_counters[rt.index as usize];
            let stats = Stats::since(raw, self.service_baseline.get(&rt.index));
            let scheduled = &self.scheduled[&svc.spec.id];
            let sorry = svc
                .health
                .sorry
                .filter(|s| scheduled.reals.iter().any(|r| r.server == s.server))
                .map(sorry_spec);
            let mut reals = Vec::with_capacity(svc.reals.len() + 1);
            let indexes = self.real_index.get(&svc.spec.id);
            for real in svc.reals.iter().chain(&sorry) {
                // A server health kept out from the start has no index yet.
                let (counts, persistent_conns, stats, rates) =
                    match indexes.and_then(|i| i.get(&real.server)).copied() {
                        Some(index) => (
                            self.counts.get(&index).copied().unwrap_or_default(),
                            templates.get(&index).copied().unwrap_or(0),
                            Stats::since(
                                real_counters[index as usize],
                                self.real_baseline.get(&index),
                            ),
                            rates_of(&self.real_rates, index),
                        ),
                        None => Default::default(),
                    };
                reals.push(RealView {
                    spec: real.clone(),
                    active_conns: counts.active,
                    inactive_conns: counts.inactive,
                    persistent_conns,
                    stats,
                    rates,
                    health: self.health_view(svc, scheduled, real, sorry.is_some(), now),
                });
            }
            services.push(ServiceView {
                spec: svc.spec.clone(),
                stats,
                rates: rates_of(&self.service_rates, rt.index),
                reals,
                health: svc.health.clone(),
            });
        }
        let verdicts = self
            .datapath
            .verdicts()?
            .into_iter()
            .map(|(v, n)| (Verdict::name(v).to_string(), n))
            .collect();
        Ok(Snapshot {
            conn_table_size: self.datapath.limits().connections,
            services,
            verdicts,
            refills: self.refill_stats(),
        })
    }

    /// What `-L` shows of a server's health; `None` for a server with no
    /// checkers, no agent and nothing to report.
    fn health_view(
        &self,
        svc: &Service,
        scheduled: &Service,
        real: &RealSpec,
        sorry_active: bool,
        now_ns: u64,
    ) -> Option<HealthView> {
        let is_sorry = svc.health.sorry.is_some_and(|s| s.server == real.server);
        let condition = self.conditions.get(&(svc.spec.id, real.server));
        let checked = svc.checks_of(&real.server).is_some();
        if !checked && !is_sorry && condition.is_none_or(|c| *c == Condition::default()) {
            return None;
        }
        let c = condition.cloned().unwrap_or_default();
        let in_view = scheduled.reals.iter().find(|r| r.server == real.server);
        let state = match (is_sorry, c.alive(), in_view) {
            (true, _, _) => "sorry",
            (false, true, _) if sorry_active => "standby",
            (false, true, _) if c.agent_state == Some(AgentState::Drain) => "drain",
            (false, true, _) => "up",
            (false, false, Some(_)) => "inhibited",
            (false, false, None) => "down",
        };
        let window = condition::slow_start_window(svc.spec.scheduler, &svc.health);
        let slow_start_percent = c
            .ramp_since_ns
            .and_then(|since| condition::ramp_permille(since, now_ns, window))
            .map(|p| (p / 10) as u32);
        Some(HealthView {
            state: state.to_string(),
            reason: c.reason(),
            agent_percent: c.agent_percent,
            slow_start_percent,
            dynamic_weight: c.dynamic_weight(real.weight),
            scheduled_weight: in_view.map(|r| r.weight),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use lvs_datapath::fake::FakeDatapath;
    use lvs_state::{
        health::ServiceHealth,
        model::{Method, Protocol, ServiceSpec},
    };

    fn svc() -> ServiceId {
        ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: Ipv4Addr::new(198, 18, 0, 10).into(),
                port: 80,
            },
        }
    }
    fn real(last: u8, weight: u32) -> RealSpec {
        RealSpec {
            server: Endpoint {
                addr: Ipv4Addr::new(198, 18, 10 + last, 2).into(),
                port: 8080,
            },
            method: Method::Nat,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
    fn add_real(last: u8, weight: u32) -> Command {
        Command::AddReal {
            service: svc(),
            real: real(last, weight),
        }
    }
    fn setup(sched: SchedulerName, weights: &[u32]) -> Controller<FakeDatapath> {
        setup_spec(spec(sched), weights)
    }
    fn picks(c: &mut Controller<FakeDatapath>, n: usize) -> String {
        let key = service_key(&svc());
        (0..n)
            .map(|_| {
                c.datapath_mut()
                    .schedule(&key)
                    .map_or('-', |r| char::from(b'0' + r.addr()[2] - 10))
            })
            .collect()
    }

    fn setup_spec(spec: ServiceSpec, weights: &[u32]) -> Controller<FakeDatapath> {
        let mut c = Controller::new(FakeDatapath::default());
        let mut cmds = vec![Command::AddService(spec)];
        cmds.extend(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| add_real(i as u8 + 1, w)),
        );
        c.apply(&cmds).unwrap();
        c
    }
    fn spec(scheduler: SchedulerName) -> ServiceSpec {
        ServiceSpec {
            id: svc(),
            scheduler,
            flags: Default::default(),
            persistence: None,
        }
    }
    /// Which server (1, 2, 3...) a new flow from `client:port` reaches.
    fn from(c: &mut Controller<FakeDatapath>, client: [u8; 4], port: u16) -> char {
        c.datapath_mut()
            .schedule_from(&service_key(&svc()), client, port)
            .map_or('-', |r| char::from(b'0' + r.addr()[2] - 10))
    }
    /// `n` live connections to server `last`, as the datapath records them.
    fn hold(c: &mut Controller<FakeDatapath>, last: u8, n: u16, state: ConnState) {
        let index = c.real_index_of(&svc(), &real(last, 1).server).unwrap();
        for k in 0..n {
            let key = FlowKey::from_wire(
                [10, last, (k >> 8) as u8, k as u8],
                [198, 18, 0, 10],
                [0, 1],
                [0, 80],
                6,
            );
            let mut conn = Conn::new(
                [198, 18, 10 + last, 2],
                [0x1f, 0x90],
                Direction::Inbound,
                0,
                0,
                index,
                0,
            );
            conn.state = state as u8;
            c.datapath_mut().conns.insert(key, conn);
        }
    }
    fn drain(c: &mut Controller<FakeDatapath>) {
        let events = c.datapath_mut().drain_events().unwrap();
        c.handle_events(&events).unwrap();
    }

    /// IPv6 services are published in the IPv6 tables, with persistence
    /// (an IPv6 netmask) and the locality form; a tunnel crosses families
    /// both ways, the server's address in its own family's entry.
    #[test]
    fn ipv6_services_are_published_with_every_feature_and_tunnels_cross_families() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        let v6: Endpoint = "[2001:db8::10]:80".parse().unwrap();
        let v6_id = ServiceId {
            protocol: Protocol::Tcp,
            vip: v6,
        };
        let v6_service = ServiceSpec {
            id: v6_id,
            ..spec(SchedulerName::Rr)
        };
        let mut v6_real = real(5, 1);
        v6_real.server = "[2001:db8::2]:8080".parse().unwrap();
        c.apply(&[
            Command::AddService(v6_service.clone()),
            Command::AddReal {
                service: v6_id,
                real: v6_real.clone(),
            },
        ])
        .unwrap();
        let key = ServiceKey::<In6>::new(
            "2001:db8::10".parse::<std::net::Ipv6Addr>().unwrap().into(),
            80,
            6,
        );
        let published = c.datapath().services6[&key];
        assert!(published.ring_len > 0);
        let index = c.datapath().rings[&published.ring_base];
        let entry = c.datapath().reals6[&index];
        assert_eq!(
            (std::net::Ipv6Addr::from(entry.addr()), entry.port()),
            ("2001:db8::2".parse().unwrap(), 8080)
        );

        // Persistence with a /64 netmask (`-M 64`): the datapath masks
        // clients with the IPv6 mask of 64 bits.
        let persistent = ServiceSpec {
            persistence: Some(Persistence {
                timeout: 300,
                prefix: 64,
            }),
            ..v6_service.clone()
        };
        c.apply(&[Command::EditService(persistent)]).unwrap();
        let published = c.datapath().services6[&key];
        assert!(published.has(service_flags::PERSISTENT));
        assert_eq!(
            (
                std::net::Ipv6Addr::from(published.persist_mask()),
                published.persist_timeout_s
            ),
            ("ffff:ffff:ffff:ffff::".parse().unwrap(), 300)
        );
        // lblc: published in the locality form.
        let lblc = ServiceSpec {
            scheduler: SchedulerName::Lblc,
            ..v6_service
        };
        c.apply(&[Command::EditService(lblc)]).unwrap();
        assert_eq!(c.datapath().services6[&key].form, Form::Locality as u8);
        // An IPv4 service's tunnel to an IPv6 server: its IPv6 entry holds
        // the address, its IPv4 entry (the one the IPv4 path reads) none.
        let mut other = real(6, 1);
        other.server = "[2001:db8::3]:80".parse().unwrap();
        other.method = Method::Tunnel;
        let server = other.server;
        c.apply(&[Command::AddReal {
            service: svc(),
            real: other,
        }])
        .unwrap();
        let index = c.real_index_of(&svc(), &server).unwrap();
        assert_eq!(
            std::net::Ipv6Addr::from(c.datapath().reals6[&index].addr()),
            "2001:db8::3".parse::<std::net::Ipv6Addr>().unwrap()
        );
        assert_eq!(c.datapath().reals[&index].addr(), [0; 4]);
        assert_eq!(c.datapath().reals[&index].method, Method::Tunnel as u8);
        // And the other way: an IPv6 service's tunnel to an IPv4 server.
        let mut v4_tunnel = real(7, 1);
        v4_tunnel.method = Method::Tunnel;
        v4_tunnel.server.port = 80;
        let server = v4_tunnel.server;
        c.apply(&[Command::AddReal {
            service: v6_id,
            real: v4_tunnel,
        }])
        .unwrap();
        let index = c.real_index_of(&v6_id, &server).unwrap();
        assert_eq!(c.datapath().reals[&index].addr(), [198, 18, 17, 2]);
        assert_eq!(c.datapath().reals6[&index].addr(), In6::default());
    }

    #[test]
    fn sh_buckets_hash_the_client_as_the_reference_does() {
        // List order 3, 2, 1; weight 1 each: bucket b holds server (b % 3).
        let mut c = setup(SchedulerName::Sh, &[1, 1, 1]);
        // §2.10: 10.0.0.1 -> bucket 39 (A), 10.0.0.2 -> 137 (C), 203.0.113.7 -> 124 (B).
        assert_eq!(from(&mut c, [10, 0, 0, 1], 1000), '3');
        assert_eq!(from(&mut c, [10, 0, 0, 2], 1000), '1');
        assert_eq!(from(&mut c, [203, 0, 113, 7], 1000), '2');
        for port in 1..50 {
            assert_eq!(from(&mut c, [10, 0, 0, 1], port), '3');
        }
        // Quiesced without sh-fallback: its clients fail, as in IPVS.
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(2, 0),
        }])
        .unwrap();
        assert_eq!(from(&mut c, [203, 0, 113, 7], 1000), '-');
    }

    #[test]
    fn sh_fallback_and_sh_port_reach_the_datapath() {
        let mut s = spec(SchedulerName::Sh);
        s.flags.fallback = true;
        let mut c = setup_spec(s.clone(), &[1, 0, 1]);
        // 203.0.113.7's bucket holds the quiesced server 2; the probe finds 1.
        assert_eq!(from(&mut c, [203, 0, 113, 7], 1000), '1');
        s.flags = lvs_sched::SchedFlags {
            fallback: false,
            port: true,
            ipvs_order: false,
        };
        c.apply(&[Command::EditService(s)]).unwrap();
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(2, 1),
        }])
        .unwrap();
        // 10.0.0.1:1234 hashes to bucket 128 (§2.10): 128 % 3 = 2 -> server 1.
        assert_eq!(from(&mut c, [10, 0, 0, 1], 1234), '1');
        assert_eq!(from(&mut c, [10, 0, 0, 1], 0), '3');
    }

    /// mh: a quiesced server's clients fail without mh-fallback and move
    /// with it (the datapath probes past its slots); never onto it.
    #[test]
    fn mh_fallback_reaches_the_datapath() {
        let clients = |c: &mut Controller<FakeDatapath>| -> String {
            (0..200u8).map(|i| from(c, [10, 1, i, 7], 0)).collect()
        };
        let mut s = spec(SchedulerName::Mh);
        let mut c = setup_spec(s.clone(), &[1, 1, 1]);
        // Edited to 0, server 2 keeps its slots (its last weight).
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(2, 0),
        }])
        .unwrap();
        let plain = clients(&mut c);
        s.flags.fallback = true;
        c.apply(&[Command::EditService(s)]).unwrap();
        let probed = clients(&mut c);
        // The flags' edit rebuilt the scheduler: server 2 kept its slots
        // (its last weight), which now say "probe on".
        let base = c.datapath().services[&service_key(&svc())].bucket_base;
        let live = base..base + lvs_common::hash::MH_TABLE_SIZE;
        assert!(live.clone().any(|i| c.datapath().maglev[&i] == MH_PROBE));
        assert!(plain.contains('-') && !plain.contains('2'), "{plain}");
        assert!(!probed.contains('-') && !probed.contains('2'), "{probed}");
        // Clients of the usable servers stay where they were.
        for (p, q) in plain.chars().zip(probed.chars()) {
            assert!(p == '-' || p == q);
        }
        // No server usable: every slot says none, no probing.
        for k in [1, 3] {
            c.apply(&[Command::EditReal {
                service: svc(),
                real: real(k, 0),
            }])
            .unwrap();
        }
        let base = c.datapath().services[&service_key(&svc())].bucket_base;
        let live = base..base + lvs_common::hash::MH_TABLE_SIZE;
        assert!(live.map(|i| c.datapath().maglev[&i]).all(|r| r == NO_REAL));
        assert_eq!(clients(&mut c), "-".repeat(200));
    }

    /// Each mh service holds a table of `MAGLEV`; a service beyond
    /// `--max-mh-services` is refused whole, and a service leaving mh
    /// gives its table back.
    #[test]
    fn mh_tables_are_counted_and_given_back() {
        let mut datapath = FakeDatapath::default();
        datapath.limits.mh_services = 1;
        let mut c = Controller::new(datapath);
        let other = ServiceId {
            vip: Endpoint {
                addr: Ipv4Addr::new(198, 18, 0, 11).into(),
                port: 80,
            },
            ..svc()
        };
        let second = ServiceSpec {
            id: other,
            ..spec(SchedulerName::Mh)
        };
        c.apply(&[Command::AddService(spec(SchedulerName::Mh)), add_real(1, 1)])
            .unwrap();
        let err = c.apply(&[Command::AddService(second.clone())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "too many mh services (the datapath holds 1)"
        );
        assert!(c.state().service(&other).is_none());
        c.apply(&[Command::EditService(spec(SchedulerName::Rr))])
            .unwrap();
        c.apply(&[
            Command::AddService(second),
            Command::AddReal {
                service: other,
                real: real(2, 1),
            },
        ])
        .unwrap();
        assert_eq!(
            c.datapath_mut()
                .schedule_from(&service_key(&other), [10, 0, 0, 1], 0)
                .map(|r| r.addr()[2]),
            Some(12)
        );
    }

    #[test]
    fn dh_hashes_the_destination() {
        let mut c = setup(SchedulerName::Dh, &[1, 1, 1]);
        let b = lvs_common::hash::dh_bucket([198, 18, 0, 10]) as usize;
        let expected = ['3', '2', '1'][b % 3];
        for client in 1..20 {
            assert_eq!(from(&mut c, [10, 0, 0, client], 1000), expected);
        }
    }

    #[test]
    fn lblc_caches_the_destination_and_moves_it_when_overloaded() {
        // §2.7: A(w1), B(w1) in list order; here server 2 is A, 1 is B.
        let mut c = setup(SchedulerName::Lblc, &[1, 1]);
        assert_eq!(from(&mut c, [10, 0, 0, 1], 1), '2');
        drain(&mut c);
        assert_eq!(picks(&mut c, 3), "222");
        // A holds 3 active, B none: A is overloaded, wlc moves the VIP to B.
        hold(&mut c, 2, 3, ConnState::Established);
        c.recount().unwrap();
        assert_eq!(picks(&mut c, 2), "11");
    }

    /// A removed server's connections go on until they end, or, with a
    /// drain limit, until it runs out; others are never touched by it.
    #[test]
    fn a_drain_limit_ends_a_removed_servers_connections() {
        for limit in [None, Some(5)] {
            let mut c = setup(SchedulerName::Rr, &[1, 1]);
            c.set_expirations(Expirations {
                drain: limit,
                ..Expirations::default()
            });
            hold(&mut c, 1, 3, ConnState::Established);
            hold(&mut c, 2, 2, ConnState::Established);
            c.apply(&[Command::DeleteReal {
                service: svc(),
                server: real(1, 1).server,
            }])
            .unwrap();
            let left =
                |c: &Controller<FakeDatapath>| c.datapath().connections::<[u8; 4]>().unwrap().len();
            c.datapath_mut().now_ns += 4 * NS_PER_SEC;
            c.sweep().unwrap();
            assert_eq!(left(&c), 5, "{limit:?}");
            c.datapath_mut().now_ns += 2 * NS_PER_SEC;
            c.sweep().unwrap();
            assert_eq!(left(&c), if limit.is_some() { 2 } else { 5 }, "{limit:?}");
        }
    }

    #[test]
    fn lblc_entries_expire_after_the_configured_time() {
        let mut c = Controller::new(FakeDatapath::default());
        c.set_expirations(Expirations {
            lblc: 600,
            lblcr: 600,
            drain: None,
        });
        c.apply(&[
            Command::AddService(spec(SchedulerName::Lblc)),
            add_real(1, 1),
            add_real(2, 1),
        ])
        .unwrap();
        assert_eq!(picks(&mut c, 1), "2");
        drain(&mut c);
        // Used at 0 s; the full check at the 30th 60 s tick removes it.
        c.datapath_mut().now_ns = 1799 * NS_PER_SEC;
        c.recount().unwrap();
        assert_eq!(c.datapath_mut().locality.len(), 1);
        c.datapath_mut().now_ns = 1800 * NS_PER_SEC;
        c.recount().unwrap();
        assert!(c.datapath_mut().locality.is_empty());
    }

    #[test]
    fn lblcr_adds_a_server_to_the_set_under_overload() {
        let mut c = setup(SchedulerName::Lblcr, &[1, 1]);
        assert_eq!(picks(&mut c, 1), "2");
        drain(&mut c);
        hold(&mut c, 2, 2, ConnState::Established);
        c.recount().unwrap();
        // {A} overloaded (2 > 1, B idle): B joins the set and serves.
        assert_eq!(picks(&mut c, 1), "1");
        let rt = &c.runtimes[&svc()];
        assert_eq!(rt.localities.len(), 1);
    }

    #[test]
    fn persistence_keeps_a_client_network_on_one_server() {
        let mut s = spec(SchedulerName::Rr);
        s.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let mut c = setup_spec(s, &[1, 1, 1]);
        let first = from(&mut c, [10, 0, 0, 1], 1000);
        for port in 1001..1010 {
            assert_eq!(from(&mut c, [10, 0, 0, 1], port), first);
        }
        // Same /24: same template; another network: the next rr pick.
        assert_eq!(from(&mut c, [10, 0, 0, 99], 1000), first);
        let other = from(&mut c, [10, 0, 1, 1], 1000);
        assert_ne!(other, first);
        // Re-armed by each connection; gone 300 s after the last one.
        c.datapath_mut().now_ns = 299 * NS_PER_SEC;
        assert_eq!(from(&mut c, [10, 0, 0, 1], 1), first);
        c.datapath_mut().now_ns = 600 * NS_PER_SEC;
        c.sweep().unwrap();
        assert_eq!(c.datapath_mut().templates.len(), 0);
        assert_ne!(from(&mut c, [10, 0, 0, 1], 1), first);
    }

    #[test]
    fn a_template_outlives_its_timeout_while_connections_depend_on_it() {
        let mut s = spec(SchedulerName::Rr);
        s.persistence = Some(Persistence::default_for(s.id.vip.addr));
        let mut c = setup_spec(s, &[1, 1]);
        from(&mut c, [10, 2, 0, 0], 1000);
        // `hold` uses client 10.2.0.0 for server 2's first connection.
        let index = c.real_index_of(&svc(), &real(2, 1).server).unwrap();
        let key = *c.datapath_mut().templates.keys().next().unwrap();
        c.datapath_mut()
            .templates
            .insert(key, Template::new(index, 0));
        hold(&mut c, 2, 1, ConnState::Established);
        c.datapath_mut().now_ns = 400 * NS_PER_SEC;
        for conn in c.datapath_mut().conns.values_mut() {
            conn.last_seen_ns = 400 * NS_PER_SEC;
        }
        c.sweep().unwrap();
        assert_eq!(
            c.datapath_mut().templates[&key].expires_ns,
            460 * NS_PER_SEC
        );
        c.datapath_mut().conns.clear();
        c.datapath_mut().now_ns = 460 * NS_PER_SEC;
        c.sweep().unwrap();
        assert!(c.datapath_mut().templates.is_empty());
    }

    #[test]
    fn deleting_a_server_drops_its_templates() {
        let mut s = spec(SchedulerName::Rr);
        s.persistence = Some(Persistence::default_for(s.id.vip.addr));
        let mut c = setup_spec(s, &[1, 1]);
        let first = from(&mut c, [10, 0, 0, 1], 1000);
        let last = first as u8 - b'0';
        c.apply(&[Command::DeleteReal {
            service: svc(),
            server: real(last, 1).server,
        }])
        .unwrap();
        assert!(c.datapath_mut().templates.is_empty());
        assert_ne!(from(&mut c, [10, 0, 0, 1], 1000), first);
    }

    #[test]
    fn upper_threshold_caps_a_forecast_and_clears_at_three_quarters() {
        // wlc, equal weights, server 1 capped at 2 connections (list order 2, 1).
        let mut c = Controller::new(FakeDatapath::default());
        let mut capped = real(1, 1);
        capped.u_threshold = 2;
        c.apply(&[
            Command::AddService(spec(SchedulerName::Wlc)),
            Command::AddReal {
                service: svc(),
                real: capped.clone(),
            },
            add_real(2, 1),
        ])
        .unwrap();
        assert_eq!(picks(&mut c, 6), "212122");
        // The datapath's table shows server 1 at 2: the flag is set.
        hold(&mut c, 1, 2, ConnState::Established);
        c.recount().unwrap();
        let index = c.real_index_of(&svc(), &capped.server).unwrap();
        assert!(c.overloaded.contains(&index));
        // One closes: 1 * 4 < 2 * 3 clears it.
        let gone = *c
            .datapath_mut()
            .conns
            .keys()
            .find(|k| k.src()[1] == 1)
            .unwrap();
        c.datapath_mut().conns.remove(&gone);
        c.recount().unwrap();
        assert!(!c.overloaded.contains(&index));
    }

    #[test]
    fn low_water_refills_continue_the_wlc_sequence_exactly() {
        // No recount in between: every refill must carry forward the picks
        // the datapath already made from the ring.
        let mut c = setup(SchedulerName::Wlc, &[1, 2, 3]);
        let mut got = String::new();
        for _ in 0..6 {
            got += &picks(&mut c, 300);
            drain(&mut c);
        }
        let mut d: Vec<Dest> = (1..=3u32)
            .rev()
            .map(|w| Dest {
                id: w,
                weight: w,
                ..Dest::default()
            })
            .collect();
        let mut wlc = SchedulerName::Wlc.instantiate(&d, Default::default());
        let want = lvs_sched::testing::run_counting(wlc.as_mut(), &mut d, 1800)
            .chars()
            .map(|c| char::from(b'0' + c as u8))
            .collect::<String>();
        assert_eq!(got, want);
        assert_eq!(c.refill_stats().count, 6);
    }

    /// Property: over random scripts of server changes, opens and closes,
    /// what the datapath reads from the published form is exactly what the
    /// scheduler run directly would pick (lblc/lblcr re-decide per count,
    /// not per request, so for them only the eligibility rule is checked),
    /// and a weight-0 server never gets a new connection.
    #[test]
    fn published_decisions_agree_with_running_the_scheduler_directly() {
        use lvs_sched::{Request, SchedFlags};
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |m: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % m
        };
        for name in SchedulerName::ALL {
            let exact = name.form() != Form::Locality;
            for round in 0..40 {
                let hashing = matches!(name, SchedulerName::Sh | SchedulerName::Mh);
                let flags = SchedFlags {
                    fallback: hashing && next(2) == 0,
                    port: hashing && next(2) == 0,
                    ipvs_order: name == SchedulerName::Mh && next(2) == 0,
                };
                let mut s = spec(name);
                s.flags = flags;
                let mut c = Controller::new(FakeDatapath::default());
                // Slow start deliberately departs from the bare scheduler.
                let no_ramp = Command::SetServiceHealth {
                    service: svc(),
                    health: ServiceHealth {
                        slow_start: Some(0),
                        ..Default::default()
                    },
                };
                c.apply(&[Command::AddService(s), no_ramp]).unwrap();
                let mut model = name.instantiate(&[], flags);
                // The model's ids are the servers' numbers (1..=5).
                let mut dests: Vec<Dest> = Vec::new();
                let mut open: Vec<(FlowKey, u32)> = Vec::new();
                for step in 0..80 {
                    let what = format!("{name} round {round} step {step}");
                    match next(12) {
                        0..=2 => {
                            let k = 1 + next(5) as u8;
                            let w = next(4) as u32;
                            let old = dests.clone();
                            let cmd = match dests.iter_mut().find(|d| d.id == k as u32) {
                                Some(d) => {
                                    d.weight = w;
                                    Command::EditReal {
                                        service: svc(),
                                        real: real(k, w),
                                    }
                                }
                                None => {
                                    let server = real(k, w).server;
                                    dests.insert(
                                        0,
                                        Dest {
                                            id: k as u32,
                                            addr: server.addr,
                                            port: server.port,
                                            weight: w,
                                            ..Dest::default()
                                        },
                                    );
                                    add_real(k, w)
                                }
                            };
                            c.apply(&[cmd]).unwrap();
                            model.update(&old, &dests);
                        }
                        3 if !dests.is_empty() => {
                            let k = dests[next(dests.len() as u64) as usize].id;
                            let old = dests.clone();
                            dests.retain(|d| d.id != k);
                            open.retain(|(_, s)| *s != k);
                            c.apply(&[Command::DeleteReal {
                                service: svc(),
                                server: real(k as u8, 1).server,
                            }])
                            .unwrap();
                            model.update(&old, &dests);
                        }
                        4 if !open.is_empty() => {
                            let (key, k) = open.swap_remove(next(open.len() as u64) as usize);
                            c.datapath_mut().conns.remove(&key);
                            if let Some(d) = dests.iter_mut().find(|d| d.id == k) {
                                d.active -= 1;
                            }
                            c.recount().unwrap();
                        }
                        _ => {
                            let client = [10, 0, next(4) as u8, next(250) as u8];
                            let port = 1024 + next(60000) as u16;
                            let got = c
                                .datapath_mut()
                                .schedule_from(&service_key(&svc()), client, port)
                                .map(|r| (r.addr()[2] - 10) as u32);
                            let want = model
                                .pick(
                                    &dests,
                                    &Request {
                                        client: client.into(),
                                        client_port: port,
                                        destination: svc().vip.addr,
                                        now: 0,
                                    },
                                )
                                .map(|i| dests[i].id);
                            if exact {
                                assert_eq!(got, want, "{what}: {dests:?}");
                            }
                            let Some(k) = got else { continue };
                            let d = dests.iter_mut().find(|d| d.id == k).expect("a live server");
                            assert!(d.weight > 0, "{what}: weight 0 got a new connection");
                            d.active += 1;
                            let index = c.real_index_of(&svc(), &real(k as u8, 1).server).unwrap();
                            let key = FlowKey::from_wire(
                                client,
                                [198, 18, 0, 10],
                                port.to_be_bytes(),
                                [0, 80],
                                6,
                            );
                            let mut conn =
                                Conn::new([0; 4], [0; 2], Direction::Inbound, 0, 0, index, 0);
                            conn.state = ConnState::Established as u8;
                            if c.datapath_mut().conns.insert(key, conn).is_none() {
                                open.push((key, k));
                            } else {
                                // Same 4-tuple again: the old entry is replaced.
                                let old = open.iter().position(|(o, _)| *o == key).unwrap();
                                let (_, was) = open.swap_remove(old);
                                if let Some(d) = dests.iter_mut().find(|d| d.id == was) {
                                    d.active -= 1;
                                }
                                open.push((key, k));
                            }
                            drain(&mut c);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rr_through_the_ring_follows_ipvs_order() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 7), "3213213");
    }

    #[test]
    fn wrr_three_two_one_splits_sixty_as_thirty_twenty_ten() {
        let mut c = setup(SchedulerName::Wrr, &[1, 2, 3]);
        let seq = picks(&mut c, 60);
        assert_eq!(
            [
                seq.matches('3').count(),
                seq.matches('2').count(),
                seq.matches('1').count()
            ],
            [30, 20, 10],
            "{seq}"
        );
    }

    #[test]
    fn republishing_continues_where_the_datapath_was() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 2), "32");
        // Quiesce server 2 (weight 0): rotation carries on after it.
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(2, 0),
        }])
        .unwrap();
        assert_eq!(picks(&mut c, 4), "1313");
    }

    #[test]
    fn an_edit_that_changes_nothing_still_runs_the_wrr_hook() {
        // As in the kernel: -e resets wrr's cursor to the list head.
        let mut c = setup(SchedulerName::Wrr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 1), "3");
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(1, 1),
        }])
        .unwrap();
        assert_eq!(picks(&mut c, 3), "321");
    }

    #[test]
    fn capacity_counts_each_real_server_once() {
        // Over half the table in use (520 services x 8 servers), then one
        // more server: existing servers must not be counted twice.
        let mut c = Controller::new(FakeDatapath::default());
        let mut cmds = Vec::new();
        for n in 0..520u16 {
            let id = ServiceId {
                protocol: Protocol::Udp,
                vip: Endpoint {
                    addr: Ipv4Addr::new(198, 18, 0, 10).into(),
                    port: 1000 + n,
                },
            };
            cmds.push(Command::AddService(ServiceSpec {
                id,
                scheduler: SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            }));
            for last in 1..=8 {
                cmds.push(Command::AddReal {
                    service: id,
                    real: real(last, 1),
                });
            }
        }
        c.apply(&cmds).unwrap();
        assert!(520 * 8 > c.datapath_mut().limits.reals / 2);
        c.apply(&[
            Command::AddService(ServiceSpec {
                id: svc(),
                scheduler: SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            }),
            add_real(1, 1),
        ])
        .unwrap();
        assert_eq!(c.state().len(), 521);
    }

    #[test]
    fn a_bad_batch_leaves_maps_untouched() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        let before = c.datapath_mut().services.clone();
        let err = c.apply(&[add_real(2, 1), add_real(2, 1)]).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(c.datapath_mut().services, before);
        assert_eq!(c.state().at(0).unwrap().reals.len(), 1);
    }

    /// Every published pick of every service leads to one of its
    /// configured servers, and the maps hold exactly the state's services.
    fn maps_match_state(c: &mut Controller<FakeDatapath>) {
        let published: BTreeSet<ServiceKey> = c.datapath_mut().services.keys().copied().collect();
        let wanted: BTreeSet<ServiceKey> = c
            .state()
            .services()
            .map(|s| service_key(&s.spec.id))
            .collect();
        assert_eq!(published, wanted);
        for svc in c.state().services().cloned().collect::<Vec<_>>() {
            let servers: BTreeSet<Endpoint> = svc.reals.iter().map(|r| r.server).collect();
            for _ in 0..10 {
                let real = c
                    .datapath_mut()
                    .schedule(&service_key(&svc.spec.id))
                    .unwrap();
                let at = Endpoint {
                    addr: real.addr().into(),
                    port: real.port(),
                };
                assert!(
                    servers.contains(&at),
                    "{at} is not a server of {}",
                    svc.spec.id
                );
            }
        }
    }

    #[test]
    fn a_failed_write_puts_the_batch_back_and_republishes() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        let before = c.state().clone();
        let other = ServiceId {
            protocol: Protocol::Udp,
            ..svc()
        };
        let batch = [
            Command::AddService(ServiceSpec {
                id: other,
                ..spec(SchedulerName::Wrr)
            }),
            Command::AddReal {
                service: other,
                real: real(5, 1),
            },
            add_real(3, 2),
            Command::DeleteReal {
                service: svc(),
                server: real(1, 1).server,
            },
        ];
        for fail_after in 0..6 {
            c.datapath_mut().fail_after_writes = Some(fail_after);
            let err = c.apply(&batch).unwrap_err();
            assert!(err.to_string().contains("injected failure"), "{err}");
            assert_eq!(c.state(), &before, "after failing write {fail_after}");
            maps_match_state(&mut c);
        }
        // The same batch goes through once the maps take writes again.
        c.apply(&batch).unwrap();
        assert_eq!(c.state().len(), 2);
        maps_match_state(&mut c);
    }

    #[test]
    fn a_panic_in_the_middle_of_a_write_is_recovered() {
        let mut c = setup(SchedulerName::Wlc, &[1, 2]);
        let before = c.state().clone();
        c.datapath_mut().fail_after_writes = Some(1);
        c.datapath_mut().panic_on_failure = true;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.apply(&[add_real(3, 1), add_real(4, 1)])
        }));
        assert!(panicked.is_err());
        c.recover().unwrap();
        assert_eq!(c.state(), &before);
        maps_match_state(&mut c);
    }

    #[test]
    fn deleting_a_service_unpublishes_and_frees_indexes() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        c.apply(&[Command::DeleteService { service: svc() }])
            .unwrap();
        assert!(c.datapath_mut().services.is_empty());
        assert!(c.real_index.is_empty());
        assert_eq!(c.service_slots.free.len(), c.service_slots.fresh as usize);
    }

    #[test]
    fn zeroing_subtracts_a_snapshot() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        picks(&mut c, 3);
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 3);
        c.zero(None).unwrap();
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 0);
        picks(&mut c, 1);
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 1);
    }

    /// The service's rates and each real server's, in server order.
    fn rates(c: &Controller<FakeDatapath>) -> (Rates, Vec<Rates>) {
        let snap = c.snapshot().unwrap();
        let svc = &snap.services[0];
        (svc.rates, svc.reals.iter().map(|r| r.rates).collect())
    }
    fn cps(n: u64) -> Rates {
        Rates {
            cps: n,
            ..Rates::default()
        }
    }

    #[test]
    fn rate_estimators_sample_every_two_seconds_and_zero_with_the_counters() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        let service = c.runtimes[&svc()].index;
        let first = c.real_index_of(&svc(), &real(1, 1).server).unwrap();
        let traffic = |c: &mut Controller<FakeDatapath>, conns: u64, at_ms: u64| {
            let dp = c.datapath_mut();
            dp.now_ns = at_ms * 1_000_000;
            let counters = Counters {
                conns,
                in_bytes: 1_000 * conns,
                ..Counters::default()
            };
            dp.service_stats.insert(service, counters);
            dp.real_stats.insert(first, counters);
            c.estimate().unwrap();
        };
        // The first call starts the clock.
        traffic(&mut c, 0, 10_000);
        // 200 connections in 2 s: the first sample is a quarter of 100/s.
        traffic(&mut c, 200, 11_000);
        assert_eq!(rates(&c).0, Rates::default(), "sampled after 1 s");
        traffic(&mut c, 200, 12_000);
        let sampled = Rates {
            cps: 25,
            in_bps: 25_000,
            ..Rates::default()
        };
        assert_eq!(rates(&c), (sampled, vec![Rates::default(), sampled]));
        // A call half a second early still counts as the next period.
        traffic(&mut c, 400, 13_500);
        assert_eq!(rates(&c).0.cps, 44);
        traffic(&mut c, 600, 14_000);
        assert_eq!(rates(&c).0.cps, 44, "sampled 0.5 s after the last");

        // -Z zeroes the rates and restarts them from the counters.
        c.zero(None).unwrap();
        assert_eq!(rates(&c), (Rates::default(), vec![Rates::default(); 2]));
        traffic(&mut c, 600, 15_500);
        assert_eq!(rates(&c).0, Rates::default());
        traffic(&mut c, 800, 17_500);
        assert_eq!(rates(&c), (sampled, vec![Rates::default(), sampled]));
        // -Z of another service changes nothing here.
        let other = ServiceId {
            protocol: Protocol::Udp,
            ..svc()
        };
        c.apply(&[Command::AddService(ServiceSpec {
            id: other,
            ..spec(SchedulerName::Rr)
        })])
        .unwrap();
        c.zero(Some(other)).unwrap();
        assert_eq!(rates(&c).0, sampled);
    }

    #[test]
    fn a_reused_index_starts_a_fresh_estimator() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        let index = c.real_index_of(&svc(), &real(1, 1).server).unwrap();
        c.estimate().unwrap();
        c.datapath_mut().real_stats.insert(
            index,
            Counters {
                conns: 2_000,
                ..Counters::default()
            },
        );
        c.datapath_mut().now_ns = 2 * NS_PER_SEC;
        c.estimate().unwrap();
        assert_eq!(rates(&c).1, [cps(250)]);
        // Deleted, freed by the next count (no connection names it), and
        // added again: the index comes back with its counters reset, and
        // no rate.
        c.apply(&[Command::DeleteReal {
            service: svc(),
            server: real(1, 1).server,
        }])
        .unwrap();
        c.recount().unwrap();
        c.apply(&[add_real(1, 1)]).unwrap();
        assert_eq!(c.real_index_of(&svc(), &real(1, 1).server).unwrap(), index);
        assert_eq!(rates(&c).1, [Rates::default()]);
        c.datapath_mut().now_ns = 4 * NS_PER_SEC;
        c.estimate().unwrap();
        assert_eq!(rates(&c).1, [Rates::default()]);
    }

    /// A reload that changes something else of a down server's health
    /// keeps its unchanged checker's verdict; a changed checker starts
    /// afresh, and a report of the checker it replaced is not taken.
    #[test]
    fn reconfiguring_a_down_server_keeps_its_unchanged_checkers_verdict() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        set_health(&mut c, 1, checked(false));
        fail(&mut c, 1, Some("timeout"));
        let state = |c: &Controller<FakeDatapath>| {
            let snap = c.snapshot().unwrap();
            let r = snap.services[0]
                .reals
                .iter()
                .find(|r| r.spec.server == real(1, 1).server)
                .unwrap()
                .clone();
            r.health.unwrap().state
        };
        assert_eq!(state(&c), "down");
        let mut more = checked(true);
        more.checks.push(lvs_state::health::Check::new(
            lvs_state::health::CheckKind::Ping,
        ));
        set_health(&mut c, 1, more.clone());
        // Still failing: now kept in at weight 0 (inhibit_on_failure), not back up.
        assert_eq!(
            state(&c),
            "inhibited",
            "the unchanged checker's verdict stays"
        );
        assert_eq!(picks(&mut c, 4), "2222");
        // The first checker replaced (another interval): a new verdict.
        let old = more.checks[0].fingerprint();
        more.checks[0].interval_ms = 2_000;
        set_health(&mut c, 1, more.clone());
        assert_eq!(state(&c), "up");
        let server = real(1, 1).server;
        assert!(!c.is_current_checker(svc(), server, 0, old));
        assert!(c.is_current_checker(svc(), server, 0, more.checks[0].fingerprint()));
        assert!(!c.is_current_checker(svc(), server, 2, old));
    }

    #[test]
    fn zeroing_reaches_a_server_health_took_out() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        set_health(&mut c, 1, checked(false));
        picks(&mut c, 4);
        fail(&mut c, 1, Some("timeout"));
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 2);
        c.zero(Some(svc())).unwrap();
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 0);
    }

    #[test]
    fn persistent_conns_count_each_servers_live_templates() {
        let mut s = spec(SchedulerName::Rr);
        s.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let mut c = setup_spec(s.clone(), &[1, 1, 1]);
        let shown = |c: &Controller<FakeDatapath>| -> Vec<u32> {
            let snap = c.snapshot().unwrap();
            snap.services[0]
                .reals
                .iter()
                .map(|r| r.persistent_conns)
                .collect()
        };
        assert_eq!(shown(&c), [0, 0, 0]);
        // Four client networks over rr (newest first): 3, 2, 1, then 3 again;
        // more connections from a network reuse its template.
        let reached: String = (0..4)
            .map(|net| from(&mut c, [10, 0, net, 1], 1000))
            .collect();
        assert_eq!(reached, "3213");
        assert_eq!(from(&mut c, [10, 0, 0, 2], 1001), '3');
        // Servers in IPVS order: 3, 2, 1.
        assert_eq!(shown(&c), [2, 1, 1]);
        // Expired templates no longer count, swept or not.
        c.datapath_mut().now_ns = 301 * NS_PER_SEC;
        assert_eq!(shown(&c), [0, 0, 0]);
        // A service that is no longer persistent shows none, even before
        // the sweep removes its templates.
        c.datapath_mut().now_ns = 0;
        assert_eq!(shown(&c), [2, 1, 1]);
        c.apply(&[Command::EditService(spec(SchedulerName::Rr))])
            .unwrap();
        assert!(!c.datapath_mut().templates.is_empty());
        assert_eq!(shown(&c), [0, 0, 0]);
    }

    fn checked(inhibit_on_failure: bool) -> RealHealth {
        RealHealth {
            checks: vec![lvs_state::health::Check::new(
                lvs_state::health::CheckKind::Tcp,
            )],
            agent: None,
            inhibit_on_failure,
        }
    }
    fn set_health(c: &mut Controller<FakeDatapath>, last: u8, health: RealHealth) {
        c.apply(&[Command::SetRealHealth {
            service: svc(),
            server: real(last, 1).server,
            health: Some(health),
        }])
        .unwrap();
    }
    fn fail(c: &mut Controller<FakeDatapath>, last: u8, why: Option<&str>) {
        c.set_check(
            svc(),
            real(last, 1).server,
            0,
            why.map(str::to_string),
            None,
        )
        .unwrap();
    }
    fn health_state(c: &Controller<FakeDatapath>, last: u8) -> Option<String> {
        let snap = c.snapshot().unwrap();
        let server = real(last, 1).server;
        snap.services[0]
            .reals
            .iter()
            .find(|r| r.spec.server == server)
            .and_then(|r| r.health.as_ref())
            .map(|h| h.state.clone())
    }

    #[test]
    fn a_failed_check_takes_a_server_out_and_its_recovery_brings_it_back() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        set_health(&mut c, 2, checked(false));
        assert_eq!(picks(&mut c, 6), "321321");
        fail(&mut c, 2, Some("connect to 198.18.12.2:8080: refused"));
        assert_eq!(picks(&mut c, 6), "313131");
        assert_eq!(health_state(&c, 2).as_deref(), Some("down"));
        let snap = c.snapshot().unwrap();
        let down = &snap.services[0].reals[1];
        assert_eq!(
            down.health.as_ref().unwrap().reason.as_deref(),
            Some("check 1: connect to 198.18.12.2:8080: refused")
        );
        // The configured weight stays visible; -S saves it unchanged.
        assert_eq!(down.spec.weight, 1);
        fail(&mut c, 2, None);
        assert_eq!(health_state(&c, 2).as_deref(), Some("up"));
        let six = picks(&mut c, 6);
        assert_eq!(six.matches('2').count(), 2, "{six}");
    }

    #[test]
    fn existing_connections_keep_their_server_when_it_goes_down() {
        let mut c = setup(SchedulerName::Wlc, &[1, 1]);
        set_health(&mut c, 1, checked(false));
        hold(&mut c, 1, 3, ConnState::Established);
        c.recount().unwrap();
        let index = c.real_index_of(&svc(), &real(1, 1).server).unwrap();
        fail(&mut c, 1, Some("timeout"));
        // The index, its REALS entry and its connections stay; only new
        // connections avoid it.
        assert_eq!(c.real_index_of(&svc(), &real(1, 1).server).unwrap(), index);
        assert!(c.datapath().reals.contains_key(&index));
        assert_eq!(c.datapath().conns.len(), 3);
        assert_eq!(picks(&mut c, 4), "2222");
        c.recount().unwrap();
        let snap = c.snapshot().unwrap();
        assert_eq!(snap.services[0].reals[1].active_conns, 3);
    }

    /// keepalived's quorum 3 with hysteresis 1 over five servers: lost
    /// below 2 live (the sorry server stands in, the VIP is withdrawn, the
    /// quorum_down command is due), and back only at 4, not at 2 or 3.
    #[test]
    fn quorum_with_hysteresis_moves_the_sorry_server_and_the_announcement() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1, 1, 1]);
        let vip: BTreeSet<IpAddr> = [svc().vip.addr].into();
        assert_eq!(c.datapath().announced, vip);
        c.apply(&[Command::SetServiceHealth {
            service: svc(),
            health: ServiceHealth {
                sorry: Some(lvs_state::health::SorryServer {
                    server: real(9, 1).server,
                    method: Method::Nat,
                }),
                quorum: Some(3),
                hysteresis: Some(1),
                quorum_up: Some("echo up".into()),
                quorum_down: Some("echo down".into()),
                slow_start: Some(0),
                omega: true,
            },
        }])
        .unwrap();
        for k in 1..=5 {
            set_health(&mut c, k, checked(false));
        }
        let mut trace = String::new();
        let mut step = |c: &mut Controller<FakeDatapath>, k: u8, up: bool| {
            fail(c, k, (!up).then_some("refused"));
            let sorry = picks(c, 1) == "9";
            let announced = !c.datapath().announced.is_empty();
            assert_eq!(sorry, !announced);
            trace.push(if announced { 'U' } else { 'D' });
        };
        for k in 1..=4 {
            step(&mut c, k, false);
        }
        for k in 1..=4 {
            step(&mut c, k, true);
        }
        assert_eq!(trace, "UUUDDDUU");
        let changes = c.take_quorum_changes();
        let commands: Vec<_> = changes
            .iter()
            .map(|q| (q.up, q.command.as_deref()))
            .collect();
        assert_eq!(
            commands,
            [(false, Some("echo down")), (true, Some("echo up"))]
        );
        assert!(c.take_quorum_changes().is_empty());
        // omega: quorum_down is due at a stop while the quorum holds.
        assert_eq!(c.omega_commands(), ["echo down"]);
        for k in 1..=4 {
            fail(&mut c, k, Some("refused"));
        }
        assert!(c.omega_commands().is_empty());
        // Deleting the service withdraws its VIP.
        c.apply(&[Command::DeleteService { service: svc() }])
            .unwrap();
        assert!(c.datapath().announced.is_empty());
    }

    /// The quorum is judged on a batch's outcome: a batch that raises the
    /// quorum above the live weight and lowers it again moves nothing; one
    /// that raises it but fails to write leaves the quorum, the sorry
    /// server, the announcement and the commands as they were.
    #[test]
    fn the_quorum_follows_a_batchs_outcome_and_a_failed_batch_moves_nothing() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        for k in 1..=3 {
            set_health(&mut c, k, checked(false));
        }
        fail(&mut c, 1, Some("refused"));
        let quorum = |q: u32| Command::SetServiceHealth {
            service: svc(),
            health: ServiceHealth {
                sorry: Some(lvs_state::health::SorryServer {
                    server: real(9, 1).server,
                    method: Method::Nat,
                }),
                quorum: Some(q),
                quorum_down: Some("echo down".into()),
                ..ServiceHealth::default()
            },
        };
        c.apply(&[quorum(3), quorum(1)]).unwrap();
        assert!(c.quorum(&svc()));
        assert!(c.take_quorum_changes().is_empty());
        c.datapath_mut().fail_after_writes = Some(0);
        assert!(c.apply(&[quorum(3)]).is_err());
        assert!(c.quorum(&svc()));
        assert!(c.take_quorum_changes().is_empty());
        assert!(!c.datapath().announced.is_empty());
        assert_ne!(picks(&mut c, 1), "9");
        // Written, it loses the quorum (2 live of 3).
        c.apply(&[quorum(3)]).unwrap();
        assert!(!c.quorum(&svc()));
        assert_eq!(c.take_quorum_changes().len(), 1);
        assert!(c.datapath().announced.is_empty());
        assert_eq!(picks(&mut c, 1), "9");
    }

    #[test]
    fn inhibit_on_failure_quiesces_instead() {
        let mut c = setup(SchedulerName::Wrr, &[2, 1]);
        set_health(&mut c, 1, checked(true));
        fail(&mut c, 1, Some("HTTP status 503"));
        assert_eq!(picks(&mut c, 4), "2222");
        assert_eq!(health_state(&c, 1).as_deref(), Some("inhibited"));
        let snap = c.snapshot().unwrap();
        let h = snap.services[0].reals[1].health.clone().unwrap();
        assert_eq!(h.scheduled_weight, Some(0));
    }

    #[test]
    fn a_checker_that_starts_down_waits_for_its_first_success() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        let mut h = checked(false);
        h.checks[0].start = StartState::Down;
        set_health(&mut c, 1, h);
        assert_eq!(picks(&mut c, 3), "222");
        assert_eq!(health_state(&c, 1).as_deref(), Some("down"));
        fail(&mut c, 1, None);
        let four = picks(&mut c, 4);
        assert_eq!(four.matches('1').count(), 2, "{four}");
    }

    #[test]
    fn the_sorry_server_stands_in_while_every_server_is_down() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        let sorry = lvs_state::health::SorryServer {
            server: "198.18.19.2:8080".parse().unwrap(),
            method: Method::Nat,
        };
        c.apply(&[Command::SetServiceHealth {
            service: svc(),
            health: ServiceHealth {
                sorry: Some(sorry),
                ..Default::default()
            },
        }])
        .unwrap();
        set_health(&mut c, 1, checked(false));
        set_health(&mut c, 2, checked(false));
        fail(&mut c, 1, Some("down"));
        assert_eq!(picks(&mut c, 2), "22");
        fail(&mut c, 2, Some("down"));
        assert_eq!(picks(&mut c, 2), "99", "the sorry server is 198.18.19.2");
        let snap = c.snapshot().unwrap();
        let reals = &snap.services[0].reals;
        assert_eq!(reals.len(), 3);
        assert_eq!(reals[2].health.as_ref().unwrap().state, "sorry");
        // -S saves real servers only.
        let saved = lvs_cli::ipvsadm::format::save(&snap);
        assert!(!saved.contains("198.18.19.2"), "{saved}");
        fail(&mut c, 1, None);
        assert_eq!(picks(&mut c, 2), "11");
        assert_eq!(c.snapshot().unwrap().services[0].reals.len(), 2);
        // A sorry server cannot also be a real server.
        let err = c
            .apply(&[Command::AddReal {
                service: svc(),
                real: RealSpec {
                    server: sorry.server,
                    ..real(9, 1)
                },
            }])
            .unwrap_err();
        assert!(err.to_string().contains("sorry server"), "{err}");
    }

    /// keepalived's misc_dynamic and FILE_CHECK weights: what checkers set
    /// is what the scheduler weighs (and what the quorum counts), the
    /// agent's percentage applying on top.
    #[test]
    fn a_dynamic_weight_changes_what_the_scheduler_sees() {
        use lvs_state::health::{Check, CheckKind, FileCheck};
        let mut c = setup(SchedulerName::Wrr, &[1, 1]);
        c.apply(&[Command::SetServiceHealth {
            service: svc(),
            health: ServiceHealth {
                quorum: Some(2),
                ..ServiceHealth::default()
            },
        }])
        .unwrap();
        let dynamic = Check::new(CheckKind::Exec {
            program: "/usr/local/bin/weigh".into(),
            args: vec![],
            dynamic: true,
        });
        let mut file = Check::new(CheckKind::File(FileCheck {
            path: "/run/lvs/weight".into(),
            weight: 1,
            reverse: false,
        }));
        file.start = StartState::Up;
        set_health(
            &mut c,
            1,
            RealHealth {
                checks: vec![dynamic, file],
                agent: None,
                inhibit_on_failure: false,
            },
        );
        let server = real(1, 1).server;
        let shown = |c: &Controller<FakeDatapath>| {
            let snap = c.snapshot().unwrap();
            let one = snap.services[0]
                .reals
                .iter()
                .find(|r| r.spec.server == server);
            let h = one.and_then(|r| r.health.clone()).unwrap();
            (h.state, h.dynamic_weight, h.scheduled_weight)
        };
        // Exit 5: the weight becomes 3.
        c.set_check(svc(), server, 0, None, Some(Shift::To(3)))
            .unwrap();
        let eight = picks(&mut c, 8);
        assert_eq!(eight.matches('1').count(), 6, "{eight}");
        assert_eq!(shown(&c), ("up".into(), Some(3), Some(3)));
        // The file adds -3: weight 0, in the table but quiesced, and the
        // quorum of 2 is lost (only server 2's weight 1 is live).
        c.set_check(svc(), server, 1, None, Some(Shift::Add(-3)))
            .unwrap();
        assert_eq!(picks(&mut c, 4), "2222");
        assert_eq!(shown(&c), ("up".into(), Some(0), Some(0)));
        assert!(!c.quorum(&svc()));
        // The agent's half of weight 4 (both checkers moving it).
        c.set_check(svc(), server, 1, None, Some(Shift::Add(1)))
            .unwrap();
        c.set_agent(svc(), server, Some(50), None).unwrap();
        assert_eq!(shown(&c), ("up".into(), Some(4), Some(200)));
        assert!(c.quorum(&svc()));
        // A checker down drops what it added; the weight is configured
        // again once no checker moves it.
        c.set_check(svc(), server, 0, Some("exit 1".into()), None)
            .unwrap();
        assert_eq!(shown(&c).0, "down");
        c.set_check(svc(), server, 0, None, None).unwrap();
        c.set_check(svc(), server, 1, None, None).unwrap();
        assert_eq!(shown(&c), ("up".into(), None, Some(50)));
    }

    #[test]
    fn an_agent_percentage_moves_the_effective_weight() {
        let mut c = setup(SchedulerName::Wlc, &[1, 1]);
        c.set_agent(svc(), real(1, 1).server, Some(50), None)
            .unwrap();
        let thirty = picks(&mut c, 30);
        assert_eq!(thirty.matches('1').count(), 10, "{thirty}");
        assert_eq!(thirty.matches('2').count(), 20, "{thirty}");
        let snap = c.snapshot().unwrap();
        let h = snap.services[0].reals[1].health.clone().unwrap();
        assert_eq!((h.agent_percent, h.scheduled_weight), (Some(50), Some(50)));
        assert_eq!(snap.services[0].reals[1].spec.weight, 1);
        // drain quiesces; up restores the last percentage.
        c.set_agent(svc(), real(1, 1).server, None, Some(AgentState::Drain))
            .unwrap();
        assert_eq!(picks(&mut c, 4), "2222");
        assert_eq!(health_state(&c, 1).as_deref(), Some("drain"));
        c.set_agent(svc(), real(1, 1).server, Some(100), Some(AgentState::Up))
            .unwrap();
        assert_eq!(health_state(&c, 1).as_deref(), Some("up"));
    }

    #[test]
    fn slow_start_ramps_a_server_that_joins_a_loaded_service() {
        const S: u64 = 1_000_000_000;
        let mut c = setup(SchedulerName::Wlc, &[1]);
        hold(&mut c, 1, 30, ConnState::Established);
        c.recount().unwrap();
        // Joining at full weight, server 2 would take the next 30 picks.
        c.apply(&[add_real(2, 1)]).unwrap();
        let first = picks(&mut c, 10);
        assert!(first.matches('2').count() <= 2, "{first}");
        assert_eq!(health_state(&c, 2).as_deref(), Some("up"));
        c.datapath_mut().now_ns = 5 * S;
        c.advance_ramps().unwrap();
        let snap = c.snapshot().unwrap();
        let h = snap.services[0].reals[0].health.clone().unwrap();
        assert_eq!(h.slow_start_percent, Some(50));
        assert_eq!(h.scheduled_weight, Some(50));
        c.datapath_mut().now_ns = 10 * S;
        c.advance_ramps().unwrap();
        assert_eq!(health_state(&c, 2), None, "the ramp is over");
        // With the window at 0 there is no ramp.
        let mut c = setup(SchedulerName::Wlc, &[1]);
        c.apply(&[Command::SetServiceHealth {
            service: svc(),
            health: ServiceHealth {
                slow_start: Some(0),
                ..Default::default()
            },
        }])
        .unwrap();
        hold(&mut c, 1, 30, ConnState::Established);
        c.recount().unwrap();
        c.apply(&[add_real(2, 1)]).unwrap();
        assert_eq!(picks(&mut c, 10), "2222222222");
    }

    #[test]
    fn a_recovered_server_ramps_and_an_idle_service_does_not() {
        const S: u64 = 1_000_000_000;
        let mut c = setup(SchedulerName::Wlc, &[1, 1]);
        set_health(&mut c, 2, checked(false));
        fail(&mut c, 2, Some("down"));
        fail(&mut c, 2, None);
        assert_eq!(
            health_state(&c, 2).as_deref(),
            Some("up"),
            "no load, no ramp"
        );
        fail(&mut c, 2, Some("down"));
        hold(&mut c, 1, 20, ConnState::Established);
        c.recount().unwrap();
        c.datapath_mut().now_ns = 3 * S;
        fail(&mut c, 2, None);
        let snap = c.snapshot().unwrap();
        let h = snap.services[0].reals[0].health.clone().unwrap();
        assert_eq!(h.slow_start_percent, Some(0));
        let first = picks(&mut c, 10);
        assert!(first.matches('2').count() <= 2, "{first}");
    }

    #[test]
    fn the_sweeper_gives_the_backup_used_and_removed_connections() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        assert_eq!(c.sync_changes(), (vec![], vec![]), "collecting starts");
        hold(&mut c, 1, 2, ConnState::Established);
        let ports = |v: &[SyncConn]| -> Vec<u8> {
            let last = |c: &SyncConn| match c.client.ip() {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(a) => a.octets()[15],
            };
            let mut p: Vec<u8> = v.iter().map(last).collect();
            p.sort();
            p
        };
        c.datapath_mut().now_ns = 10 * NS_PER_SEC;
        c.sweep().unwrap();
        let (used, removed) = c.sync_changes();
        assert_eq!((ports(&used), removed.len()), (vec![0, 1], 0));
        // Client ...1 carries a packet; ...0 stays idle: only 1 is renewed.
        for (key, conn) in c.datapath_mut().conns.iter_mut() {
            if key.src()[3] == 1 {
                conn.last_seen_ns = 15 * NS_PER_SEC;
            }
        }
        c.datapath_mut().now_ns = 20 * NS_PER_SEC;
        c.sweep().unwrap();
        let (used, removed) = c.sync_changes();
        assert_eq!((ports(&used), removed.len()), (vec![1], 0));
        // ESTABLISHED times out after 900 s: 0 goes, then 1.
        c.datapath_mut().now_ns = 905 * NS_PER_SEC;
        assert_eq!(c.sweep().unwrap(), 1);
        let (used, removed) = c.sync_changes();
        assert_eq!((ports(&used), ports(&removed)), (vec![], vec![0]));
        c.datapath_mut().now_ns = 916 * NS_PER_SEC;
        assert_eq!(c.sweep().unwrap(), 1);
        assert_eq!(ports(&c.sync_changes().1), vec![1]);
    }

    #[test]
    fn synced_connections_take_the_backups_own_indexes() {
        // The active added rs1 then rs2; the backup the other way round, and
        // an extra service first, so every index differs.
        let mut active = setup(SchedulerName::Rr, &[1, 1]);
        let mut backup = Controller::new(FakeDatapath::default());
        let other = ServiceSpec {
            id: ServiceId {
                protocol: Protocol::Udp,
                vip: "198.18.0.99:53".parse().unwrap(),
            },
            ..spec(SchedulerName::Rr)
        };
        backup
            .apply(&[
                Command::AddService(other),
                Command::AddService(spec(SchedulerName::Rr)),
                add_real(2, 1),
                add_real(1, 1),
            ])
            .unwrap();
        // A NAT flow on the active, to rs1: as the datapath records it.
        hold(&mut active, 1, 1, ConnState::Established);
        active.datapath_mut().now_ns = 5_000_000_000;
        let exported = active.export_connections().unwrap();
        assert_eq!(exported.len(), 1);
        let sc = exported[0];
        assert_eq!(sc.real.to_string(), "198.18.11.2:8080");
        assert_eq!(sc.idle_ms, 5_000);
        backup.datapath_mut().now_ns = 100_000_000_000;
        assert_eq!(backup.import_connections(&exported).unwrap(), 1);
        let inbound = backup.datapath().conns[&sc.key().unwrap()];
        assert_eq!(
            inbound.real_index,
            backup.real_index_of(&svc(), &real(1, 1).server).unwrap()
        );
        assert_ne!(
            inbound.real_index,
            active.real_index_of(&svc(), &real(1, 1).server).unwrap()
        );
        assert_eq!(inbound.service_index, backup.runtimes[&svc()].index);
        assert_eq!(inbound.state, ConnState::Established as u8);
        assert_eq!(inbound.last_seen_ns, 95_000_000_000);
        // NAT to a server of one service: one entry, which its replies find
        // through the server's REPLY_SERVICES, as the backup's REALS say.
        assert!(backup.datapath().reals[&inbound.real_index].keeps_one_entry());
        let services = backup.datapath().reply_services
            [&ReplyKey::from_wire([198, 18, 11, 2], 8080u16.to_be_bytes(), 6)];
        assert_eq!(services.services[0].addr, [198, 18, 0, 10]);
        assert_eq!(backup.datapath().conns.len(), 1);
        // The backup counts it: wlc after a takeover sees the real load.
        backup.recount().unwrap();
        // rs1 was added last, so it heads the list.
        assert_eq!(
            backup.snapshot().unwrap().services[1].reals[0].active_conns,
            1
        );
        // A removal takes both entries; unknown services are skipped.
        backup.forget_connections(&exported).unwrap();
        assert!(backup.datapath().conns.is_empty());
        let mut stray = sc;
        stray.virtual_addr = "198.18.0.77:80".parse().unwrap();
        assert_eq!(backup.import_connections(&[stray]).unwrap(), 0);
    }

    #[test]
    fn synced_templates_keep_a_client_network_on_its_server() {
        let persistent = || {
            let mut s = spec(SchedulerName::Rr);
            s.persistence = Some(Persistence {
                timeout: 300,
                prefix: 24,
            });
            s
        };
        let mut active = setup_spec(persistent(), &[1, 1, 1]);
        let first = from(&mut active, [10, 0, 7, 1], 1000);
        active.datapath_mut().now_ns = 100_000_000_000;
        let exported = active.export_templates().unwrap();
        assert_eq!(exported.len(), 1);
        assert_eq!(exported[0].client_net.to_string(), "10.0.7.0");
        assert_eq!(exported[0].remaining_ms, 200_000);
        // The backup numbers its servers the other way round.
        let mut backup = Controller::new(FakeDatapath::default());
        backup
            .apply(&[
                Command::AddService(persistent()),
                add_real(3, 1),
                add_real(2, 1),
                add_real(1, 1),
            ])
            .unwrap();
        assert_eq!(backup.import_templates(&exported).unwrap(), 1);
        let (_, t) = backup.datapath().templates::<[u8; 4]>().unwrap()[0];
        assert_eq!(t.expires_ns, 200_000_000_000, "the time it had left");
        // Another client of the same network reaches the same server there.
        assert_eq!(from(&mut backup, [10, 0, 7, 99], 2000), first);
        backup.forget_templates(&exported).unwrap();
        assert!(backup.datapath().templates::<[u8; 4]>().unwrap().is_empty());
    }

    #[test]
    fn connection_views_list_live_entries_then_templates() {
        let mut persistent = spec(SchedulerName::Rr);
        persistent.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        let mut c = setup_spec(persistent, &[1, 1]);
        from(&mut c, [10, 0, 7, 1], 1000);
        hold(&mut c, 2, 2, ConnState::Established);
        c.datapath_mut().now_ns = 100 * NS_PER_SEC;
        // One established entry seen 100 s ago: 800 s of its 900 left.
        for conn in c.datapath_mut().conns.values_mut() {
            conn.last_seen_ns = 0;
        }
        let rows = c.connection_views().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].state.as_str(), rows[0].expire_s),
            ("ESTABLISHED", 800)
        );
        assert_eq!(rows[0].destination.to_string(), "198.18.12.2:8080");
        assert_eq!(rows[0].virtual_addr.to_string(), "198.18.0.10:80");
        let template = &rows[2];
        assert_eq!((template.state.as_str(), template.expire_s), ("NONE", 200));
        assert_eq!(template.source.to_string(), "10.0.7.0:0");
        // Expired entries are not listed.
        c.datapath_mut().now_ns = 1_000 * NS_PER_SEC;
        assert!(c.connection_views().unwrap().is_empty());
    }
}
