//! Every map the datapath shares with the controller. Names are the ones the
//! controller opens (`lvs-userspace/src/datapath`).

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMapHash, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use lvs_common::{
    hash::{HASH_BUCKETS, MH_TABLE_SIZE},
    tcp_state::STATE_COUNT,
    CachedEgress, Conn, ConnCounts, Counters, FlowKey, HalfOpenBlock, HalfOpenSlot, HalfOpenTurn,
    LocalityEntry, LocalityKey, NeighKey, NeighNote, NextHop, Real, ReplyKey, ReplyServices,
    Service, ServiceKey, Settings, Template, TemplateKey, CLIENT_EGRESS_SLOTS, CONN_CHANGES_BYTES,
    CONN_TABLE_SIZE, DECAP_VERDICT_COUNT, EVENTS_BYTES, ICMP_CASE_COUNT, LOCALITY_TABLE_SIZE,
    MAX_FLOATING, MAX_INTERFACES, MAX_MH_SERVICES, MAX_REALS, MAX_SERVICES, NEIGH_NOTES_SIZE,
    RELEVANT_WORDS, RING_SLOTS, TEMPLATE_TABLE_SIZE, VERDICT_COUNT,
};

/// `BPF_F_MMAPABLE`: lvsd maps the array into its memory and writes a
/// whole ring with stores instead of a syscall per slot.
const BPF_F_MMAPABLE: u32 = 1 << 10;

use lvs_common::addr::In6;

use crate::decision::Decision;

#[map]
pub static SERVICES: HashMap<ServiceKey, Service> = HashMap::with_max_entries(MAX_SERVICES, 0);

/// Both halves of every service's published ring of real server indexes.
#[map]
pub static RINGS: Array<u32> =
    Array::with_max_entries(MAX_SERVICES * 2 * RING_SLOTS, BPF_F_MMAPABLE);

/// Per-service pick counter, advanced atomically by every CPU.
#[map]
pub static CURSORS: Array<u32> = Array::with_max_entries(MAX_SERVICES, BPF_F_MMAPABLE);

/// Both halves of every sh/dh service's bucket table of real server
/// indexes (`NO_REAL` where nothing may be chosen).
#[map]
pub static BUCKETS: Array<u32> =
    Array::with_max_entries(MAX_SERVICES * 2 * HASH_BUCKETS, BPF_F_MMAPABLE);

/// Both halves of every mh service's table of real server indexes
/// (`NO_REAL` where nothing may be chosen, `MH_PROBE` to probe on).
#[map]
pub static MAGLEV: Array<u32> =
    Array::with_max_entries(MAX_MH_SERVICES * 2 * MH_TABLE_SIZE, BPF_F_MMAPABLE);

/// lblc/lblcr: which real server each destination address goes to.
#[map]
pub static LOCALITY: LruHashMap<LocalityKey, LocalityEntry> =
    LruHashMap::with_max_entries(LOCALITY_TABLE_SIZE, 0);

/// Persistence templates: a client network's real server, per service.
#[map]
pub static TEMPLATES: LruHashMap<TemplateKey, Template> =
    LruHashMap::with_max_entries(TEMPLATE_TABLE_SIZE, 0);

/// Low-water signals and new locality destinations, for the controller.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

#[map]
pub static REALS: Array<Real> = Array::with_max_entries(MAX_REALS, 0);

/// The connection table. A plain hash, not an LRU: an entry leaves only
/// when it has expired (the sweeper, or a new flow reusing its key), so no
/// live connection is evicted silently and `REAL_CONNS` stays exact. A full
/// table refuses new flows (`drop_table_full`).
#[map]
pub static CONNS: HashMap<FlowKey, Conn> = HashMap::with_max_entries(CONN_TABLE_SIZE, 0);

/// The services each NAT server's replies may belong to, for connections
/// that keep one entry (`ReplyServices`); lvsd writes it.
#[map]
pub static REPLY_SERVICES: HashMap<ReplyKey, ReplyServices> =
    HashMap::with_max_entries(MAX_REALS, 0);

/// The half-open quota's slots (`HalfOpenSlot`); lvsd sizes it with the
/// table (`half_open_slots`).
#[map]
pub static HALF_OPEN: Array<HalfOpenSlot> =
    Array::with_max_entries(lvs_common::half_open_slots(CONN_TABLE_SIZE), 0);

/// Entry 0: whose turn it is in `HALF_OPEN` (`HalfOpenTurn`).
#[map]
pub static HALF_OPEN_TURN: Array<HalfOpenTurn> = Array::with_max_entries(1, 0);

/// Each CPU's block of `HALF_OPEN` slots (`HalfOpenBlock`).
#[map]
pub static HALF_OPEN_BLOCK: PerCpuArray<HalfOpenBlock> = PerCpuArray::with_max_entries(1, 0);

/// Half-open entries evicted to make room for a newer SYN, per CPU.
#[map]
pub static HALF_OPEN_EVICTED: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Each real server's ActiveConn and InActConn, this CPU's share: moved
/// by whatever this CPU adds, changes or removes (`Conn::counted_as`), with
/// no locked instruction; lvsd sums the shares without walking the table.
#[map]
pub static REAL_CONNS: PerCpuArray<ConnCounts> = PerCpuArray::with_max_entries(MAX_REALS, 0);

/// DR and TUN real servers' next hops as lvsd resolved them, keyed by the
/// real server's address.
#[map]
pub static NEXT_HOPS: HashMap<[u8; 4], NextHop> = HashMap::with_max_entries(MAX_REALS, 0);

/// Interfaces on the XDP datapath, keyed by ifindex: the only ones an XDP
/// frame may be redirected to.
#[map]
pub static EGRESS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

#[map]
pub static SERVICE_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_SERVICES, 0);

#[map]
pub static REAL_STATS: PerCpuArray<Counters> = PerCpuArray::with_max_entries(MAX_REALS, 0);

#[map]
pub static VERDICTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(VERDICT_COUNT, 0);

/// The ICMP error program the director hands ICMP to by a tail call (so
/// that it has a stack of its own): `lvs_icmp_error`, and on tc
/// `lvs_icmp_error_tc` (a program array holds programs of one type). lvsd
/// fills them.
#[map]
pub static ICMP_ERROR_XDP: ProgramArray = ProgramArray::with_max_entries(1, 0);
#[map]
pub static ICMP_ERROR_TC: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// ICMP errors about TCP or UDP packets, by `IcmpCase`.
#[map]
pub static ICMP_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ICMP_CASE_COUNT, 0);

/// Seconds a connection may idle in each `ConnState`.
#[map]
pub static TIMEOUTS: Array<u32> = Array::with_max_entries(STATE_COUNT, 0);

#[map]
pub static SETTINGS: Array<Settings> = Array::with_max_entries(1, 0);

/// The real server's decapsulation program counts here, not in `VERDICTS`.
#[map]
pub static DECAP_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DECAP_VERDICT_COUNT, 0);

/// lvsd's liveness, on a router of a pair: entry 0 is the deadline
/// (`bpf_ktime_get_ns`) that lvsd keeps pushing forward; 0 means no pair,
/// nothing enforced.
#[map]
pub static LIVENESS: Array<u64> = Array::with_max_entries(1, 0);

/// The way to each real server, per real index (`CachedEgress`).
#[map]
pub static EGRESS_CACHE: Array<CachedEgress> = Array::with_max_entries(MAX_REALS, 0);

/// The way back to NAT clients, in the slot each address hashes to
/// (`client_egress_slot`); valid under the same generation.
#[map]
pub static CLIENT_EGRESS: Array<CachedEgress> = Array::with_max_entries(CLIENT_EGRESS_SLOTS, 0);

/// Entry 0: the generation `EGRESS_CACHE` and `CLIENT_EGRESS` entries must
/// carry to be used.
#[map]
pub static EGRESS_GENERATION: Array<u32> = Array::with_max_entries(1, 0);

/// Which addresses concern a service (`relevance.rs`); lvsd maps it.
#[map]
pub static RELEVANT: Array<u32> = Array::with_max_entries(2 * RELEVANT_WORDS, BPF_F_MMAPABLE);

/// Packets passed to the stack for `lvs_neigh` to send on (`NeighNote`).
#[map]
pub static NEIGH_NOTES: LruHashMap<NeighKey, NeighNote> =
    LruHashMap::with_max_entries(NEIGH_NOTES_SIZE, 0);

/// The pair's floating addresses (network order, as in an ARP header), and
/// the IPv6 ones (as in a neighbour solicitation).
#[map]
pub static FLOATING: HashMap<[u8; 4], u8> = HashMap::with_max_entries(MAX_FLOATING, 0);
#[map]
pub static FLOATING6: HashMap<In6, u8> = HashMap::with_max_entries(MAX_FLOATING, 0);

/// Each new connection and state change, on a router of a pair
/// (`Settings::SYNC_CHANGES`), for lvsd to send its peer at once.
#[map]
pub static CONN_CHANGES: RingBuf = RingBuf::with_byte_size(CONN_CHANGES_BYTES, 0);

// The IPv6 forms of the maps keyed by address, and the IPv6 director (see
// `family`). Everything indexed by service or real server (rings, buckets,
// counters, `REAL_CONNS`, the half-open quota's turn) is shared.

/// The IPv6 path's programs by `decision::Stage` (`lvs_director6`,
/// `lvs_new_flow6`, `lvs_send6`, `lvs_reply6`, `lvs_tunnel6`, on XDP
/// `lvs_too_big6`, `lvs_icmp_error6`, `lvs_icmp_translate6`, `lvs_tunnel46`, `lvs_tunnel64`, and on tc their `_tc` forms; tc has
/// no `TooBig`), which the director and
/// each other tail-call; lvsd fills them.
#[map]
pub static DIRECTOR6_XDP: ProgramArray = ProgramArray::with_max_entries(10, 0);
#[map]
pub static DIRECTOR6_TC: ProgramArray = ProgramArray::with_max_entries(10, 0);

/// This CPU's IPv6 decision, from the program that decided to the one that
/// sends (`decision`).
#[map]
pub static DECIDED6: PerCpuArray<Decision<In6>> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static SERVICES6: HashMap<ServiceKey<In6>, Service<In6>> =
    HashMap::with_max_entries(MAX_SERVICES, 0);

/// IPv6 real servers, by the same index as `REALS` (a real server is in
/// one or the other).
#[map]
pub static REALS6: Array<Real<In6>> = Array::with_max_entries(MAX_REALS, 0);

/// `BPF_F_NO_PREALLOC`: the IPv6 table takes memory as it fills, not all
/// of it at load beside the IPv4 one.
const BPF_F_NO_PREALLOC: u32 = 1;

#[map]
pub static CONNS6: HashMap<FlowKey<In6>, Conn<In6>> =
    HashMap::with_max_entries(CONN_TABLE_SIZE, BPF_F_NO_PREALLOC);

#[map]
pub static TEMPLATES6: LruHashMap<TemplateKey<In6>, Template> =
    LruHashMap::with_max_entries(TEMPLATE_TABLE_SIZE, 0);

#[map]
pub static LOCALITY6: LruHashMap<LocalityKey<In6>, LocalityEntry> =
    LruHashMap::with_max_entries(LOCALITY_TABLE_SIZE, 0);

#[map]
pub static REPLY_SERVICES6: HashMap<ReplyKey<In6>, ReplyServices<In6>> =
    HashMap::with_max_entries(MAX_REALS, 0);

/// The half-open quota's slots for IPv6 entries: the same slot indexes as
/// `HALF_OPEN` (one turn for both), so each family holds at most a quota.
#[map]
pub static HALF_OPEN6: Array<HalfOpenSlot<In6>> =
    Array::with_max_entries(lvs_common::half_open_slots(CONN_TABLE_SIZE), 0);

#[map]
pub static NEXT_HOPS6: HashMap<In6, NextHop<In6>> = HashMap::with_max_entries(MAX_REALS, 0);

#[map]
pub static EGRESS_CACHE6: Array<CachedEgress<In6>> = Array::with_max_entries(MAX_REALS, 0);

#[map]
pub static CLIENT_EGRESS6: Array<CachedEgress<In6>> =
    Array::with_max_entries(CLIENT_EGRESS_SLOTS, 0);

/// As `EVENTS`, with IPv6 addresses (`Event<In6>`).
#[map]
pub static EVENTS6: RingBuf = RingBuf::with_byte_size(EVENTS_BYTES, 0);

/// As `CONN_CHANGES`, for IPv6 connections (`ConnChange<In6>`).
#[map]
pub static CONN_CHANGES6: RingBuf = RingBuf::with_byte_size(CONN_CHANGES_BYTES, 0);

/// As `NEIGH_NOTES`, for IPv6 packets (`NeighKey::of_ipv6_header`).
#[map]
pub static NEIGH_NOTES6: LruHashMap<NeighKey, NeighNote<In6>> =
    LruHashMap::with_max_entries(NEIGH_NOTES_SIZE, 0);
