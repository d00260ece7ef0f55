//! Map keys, values and sizes: the contract between controller and datapath.
//!
//! Types that hold an address are generic over its family (`Addr`), IPv4
//! by default; the IPv6 maps (`CONNS6`, ...) hold the `In6` forms.

use crate::addr::{Addr, In6};

/// Services the datapath can hold at once.
pub const MAX_SERVICES: u32 = 1024;
/// Real servers over all services.
pub const MAX_REALS: u32 = 8192;
/// Slots in one half of a service's scheduling ring.
pub const RING_SLOTS: u32 = 512;
/// Entries in the connection table (both directions of a NAT flow count).
pub const CONN_TABLE_SIZE: u32 = 262_144;
/// Interfaces the datapath may redirect to.
pub const MAX_INTERFACES: u32 = 64;
/// lblc/lblcr destination entries over all services (IPVS caps one
/// service's table at 16384).
pub const LOCALITY_TABLE_SIZE: u32 = 65_536;
/// Persistence templates over all services.
pub const TEMPLATE_TABLE_SIZE: u32 = 65_536;
/// Bytes of the datapath → controller event ring buffer.
pub const EVENTS_BYTES: u32 = 64 * 1024;
/// A ring or bucket slot, or a locality entry, that names no real server.
pub const NO_REAL: u32 = u32::MAX;
/// An mh slot whose server is unusable, in a table with `mh-fallback`:
/// probe on as the kernel does (`ip_vs_mh_get_fallback`).
pub const MH_PROBE: u32 = u32::MAX - 1;
/// The bench generator's frame: the 64-byte frames of forwarding tests.
pub const BENCH_FRAME_LEN: usize = 64;

/// Index of the first ring slot of `half` (0 or 1) of service `index`.
/// The controller fills the idle half, then flips the service to it.
#[inline(always)]
pub const fn ring_base(service_index: u32, half: u32) -> u32 {
    (service_index * 2 + half) * RING_SLOTS
}

/// Index of the first slot of `half` (0 or 1) of service `index`'s sh/dh
/// table of `hash::HASH_BUCKETS` slots.
#[inline(always)]
pub const fn bucket_base(service_index: u32, half: u32) -> u32 {
    (service_index * 2 + half) * crate::hash::HASH_BUCKETS
}

/// Index of the first slot of `half` (0 or 1) of mh table `table` (an mh
/// service's slot in `MAGLEV`, which holds `hash::MH_TABLE_SIZE`-slot tables).
#[inline(always)]
pub const fn maglev_base(table: u32, half: u32) -> u32 {
    (table * 2 + half) * crate::hash::MH_TABLE_SIZE
}

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// How a connection reaches its real server (IPVS `IP_VS_CONN_F_FWD_MASK`):
/// the one method enum, for the datapath, the configuration (`-g`, `-i`,
/// `-m`; "route", "tunnel", "nat") and the API. The HA sync wire numbers
/// it as IPVS does, by conversion (`lvs-ha`'s `wire.rs`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "user",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Method {
    Nat = 0,
    Tunnel = 2,
    /// Direct routing, ipvsadm's default.
    Route = 3,
    /// IPVS's LOCALNODE: the real server is this director; the datapath
    /// hands the packet to the local stack. Only connection entries carry
    /// it: a real server keeps the method it was given (and `Real::LOCAL`),
    /// so no configuration names it. (Declared last: serde numbers the
    /// variants in order, and a skipped one must not shift the others.)
    #[cfg_attr(feature = "user", serde(skip))]
    Local = 1,
}

impl Method {
    /// The `Forward` column of `ipvsadm -L` (ipvsadm's `fwd_name`).
    pub const fn label(self) -> &'static str {
        match self {
            Method::Route => "Route",
            Method::Tunnel => "Tunnel",
            Method::Nat => "Masq",
            Method::Local => "Local",
        }
    }
    /// The `-a` switch (ipvsadm's `fwd_switch`: LOCALNODE saves as `-g`).
    pub const fn flag(self) -> &'static str {
        match self {
            Method::Route | Method::Local => "-g",
            Method::Tunnel => "-i",
            Method::Nat => "-m",
        }
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Nat),
            1 => Some(Self::Local),
            2 => Some(Self::Tunnel),
            3 => Some(Self::Route),
            _ => None,
        }
    }
}

/// `SERVICES` key: protocol, virtual address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey<A: Addr = [u8; 4]> {
    addr: A,
    port: [u8; 2],
    proto: u8,
    _pad: u8,
}

impl<A: Addr> ServiceKey<A> {
    pub const fn new(addr: A, port: u16, proto: u8) -> Self {
        Self {
            addr,
            port: port.to_be_bytes(),
            proto,
            _pad: 0,
        }
    }
    /// Built straight from header bytes, with no byte-order conversion.
    #[inline(always)]
    pub const fn from_wire(addr: A, port: [u8; 2], proto: u8) -> Self {
        Self {
            addr,
            port,
            proto,
            _pad: 0,
        }
    }
    pub const fn addr(&self) -> A {
        self.addr
    }
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
    pub const fn proto(&self) -> u8 {
        self.proto
    }
}

/// How the first packet of a flow finds its real server: the form the
/// service's scheduler publishes in (architecture brief, "Scheduling").
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// Claim the next slot of the ring (rr, wrr, lc, wlc, sed, nq).
    Ring = 0,
    /// Index a 256-bucket table by an address hash (sh, dh).
    Buckets = 1,
    /// Look the destination address up in `LOCALITY`; the ring serves
    /// addresses not seen yet (lblc, lblcr).
    Locality = 2,
    /// Index a `hash::MH_TABLE_SIZE`-slot table in `MAGLEV` by the
    /// source's mh hash (mh).
    Maglev = 3,
}

/// `Service::flags` bits.
pub mod service_flags {
    /// Buckets: hash the destination address (dh), not the source (sh).
    pub const HASH_DESTINATION: u8 = 1;
    /// Buckets, Maglev: hash the source port too (sh-port, mh-port).
    pub const HASH_PORT: u8 = 2;
    /// Persistent (`-p`): clients stick through `TEMPLATES`.
    pub const PERSISTENT: u8 = 4;
    /// The ring is a finite forecast the controller refills: say when half
    /// of it has been claimed.
    pub const SIGNAL_LOW_WATER: u8 = 8;
}

/// mh tables `MAGLEV` holds by default (`lvsd --max-mh-services`): each
/// takes two halves of `hash::MH_TABLE_SIZE` slots, 32 KiB.
pub const MAX_MH_SERVICES: u32 = 64;

/// `SERVICES` value: where the service's counters and published decisions
/// live.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Service<A: Addr = [u8; 4]> {
    /// Index into the per-service arrays (counters, cursor, ring halves).
    pub index: u32,
    /// First slot of the live ring (`ring_base(index, half)`).
    pub ring_base: u32,
    /// Live picks in the ring; 0 means no real server can be chosen.
    pub ring_len: u32,
    /// Cursor value at which this ring was published.
    pub cursor_origin: u32,
    /// `Form` as a byte.
    pub form: u8,
    /// `service_flags` bits.
    pub flags: u8,
    _pad: [u8; 2],
    /// First slot of the live bucket table (`bucket_base(index, half)`),
    /// or of the live mh table (`maglev_base(table, half)`).
    pub bucket_base: u32,
    /// Persistence: client addresses are masked with this (network order).
    persist_mask: A,
    /// Persistence: a template lives this long after its last connection.
    pub persist_timeout_s: u32,
}

impl<A: Addr> Service<A> {
    /// A ring-form service with no flags; the controller fills in the rest.
    pub const fn ring(index: u32, ring_base: u32, ring_len: u32, cursor_origin: u32) -> Self {
        Self {
            index,
            ring_base,
            ring_len,
            cursor_origin,
            form: Form::Ring as u8,
            flags: 0,
            _pad: [0; 2],
            bucket_base: 0,
            persist_mask: A::UNSPECIFIED,
            persist_timeout_s: 0,
        }
    }
    pub const fn with_form(mut self, form: Form, bucket_base: u32) -> Self {
        self.form = form as u8;
        self.bucket_base = bucket_base;
        self
    }
    pub const fn with_persistence(mut self, mask: A, timeout_s: u32) -> Self {
        self.flags |= service_flags::PERSISTENT;
        self.persist_mask = mask;
        self.persist_timeout_s = timeout_s;
        self
    }
    pub const fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
    pub const fn persist_mask(&self) -> A {
        self.persist_mask
    }
    /// The same entry in family `B`'s map, without persistence (its mask
    /// is of `A`'s family).
    pub fn in_family<B: Addr>(&self) -> Service<B> {
        Service {
            index: self.index,
            ring_base: self.ring_base,
            ring_len: self.ring_len,
            cursor_origin: self.cursor_origin,
            form: self.form,
            flags: self.flags & !service_flags::PERSISTENT,
            _pad: [0; 2],
            bucket_base: self.bucket_base,
            persist_mask: B::UNSPECIFIED,
            persist_timeout_s: 0,
        }
    }
}

/// `LOCALITY` key: a service and a destination address it has seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LocalityKey<A: Addr = [u8; 4]> {
    pub service_index: u32,
    addr: A,
}

impl<A: Addr> LocalityKey<A> {
    #[inline(always)]
    pub const fn new(service_index: u32, addr: A) -> Self {
        Self {
            service_index,
            addr,
        }
    }
    pub const fn addr(&self) -> A {
        self.addr
    }
}

/// `LOCALITY` value: the server this destination goes to (written by the
/// controller, first by XDP for a new address) and when it was last used
/// (XDP), for the controller's expiry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalityEntry {
    pub real_index: u32,
    _pad: u32,
    pub last_use_ns: u64,
}

impl LocalityEntry {
    #[inline(always)]
    pub const fn new(real_index: u32, last_use_ns: u64) -> Self {
        Self {
            real_index,
            _pad: 0,
            last_use_ns,
        }
    }
}

/// `TEMPLATES` key: a persistent service and a masked client address
/// (IPVS's template `<proto, snet, 0, vaddr, vport>`, with the service
/// index standing for protocol, address and port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TemplateKey<A: Addr = [u8; 4]> {
    pub service_index: u32,
    client_net: A,
}

impl<A: Addr> TemplateKey<A> {
    #[inline(always)]
    pub const fn new(service_index: u32, client_net: A) -> Self {
        Self {
            service_index,
            client_net,
        }
    }
    pub const fn client_net(&self) -> A {
        self.client_net
    }
}

/// `TEMPLATES` value: the server a client network sticks to, until
/// `expires_ns` (re-armed by every new connection; extended by the
/// controller while connections still depend on it).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Template {
    pub real_index: u32,
    _pad: u32,
    pub expires_ns: u64,
}

impl Template {
    #[inline(always)]
    pub const fn new(real_index: u32, expires_ns: u64) -> Self {
        Self {
            real_index,
            _pad: 0,
            expires_ns,
        }
    }
}

/// What an `EVENTS` record tells the controller.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Half of a refillable ring has been claimed.
    LowWater = 0,
    /// A locality service saw a destination address for the first time
    /// and sent it to `real_index`.
    NewDestination = 1,
}

/// One `EVENTS` ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<A: Addr = [u8; 4]> {
    pub kind: u32,
    pub service_index: u32,
    addr: A,
    pub real_index: u32,
    _pad: A::Pad,
    /// `bpf_ktime_get_ns` when it happened.
    pub time_ns: u64,
}

impl<A: Addr> Event<A> {
    #[inline(always)]
    pub fn new(
        kind: EventKind,
        service_index: u32,
        addr: A,
        real_index: u32,
        time_ns: u64,
    ) -> Self {
        Self {
            kind: kind as u32,
            service_index,
            addr,
            real_index,
            _pad: A::Pad::default(),
            time_ns,
        }
    }
    pub const fn addr(&self) -> A {
        self.addr
    }
}

/// `REALS` value, indexed by the controller-assigned real server index.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Real<A: Addr = [u8; 4]> {
    addr: A,
    port: [u8; 2],
    pub method: u8,
    /// `Real::LOCAL`, `Real::ONE_ENTRY`.
    pub flags: u8,
}

impl<A: Addr> Real<A> {
    /// The director holds this address: its connections go to the local
    /// stack, whatever the method (as IPVS decides from the route).
    pub const LOCAL: u8 = 1;
    /// A NAT server whose service is among its `REPLY_SERVICES`: its
    /// connections keep one entry, which its replies find through that
    /// index, instead of an inbound and a reply entry.
    pub const ONE_ENTRY: u8 = 2;

    pub const fn new(addr: A, port: u16, method: Method) -> Self {
        Self {
            addr,
            port: port.to_be_bytes(),
            method: method as u8,
            flags: 0,
        }
    }
    pub const fn local(mut self) -> Self {
        self.flags |= Self::LOCAL;
        self
    }
    pub const fn is_local(&self) -> bool {
        self.flags & Self::LOCAL != 0
    }
    pub const fn one_entry(mut self) -> Self {
        self.flags |= Self::ONE_ENTRY;
        self
    }
    pub const fn keeps_one_entry(&self) -> bool {
        self.flags & Self::ONE_ENTRY != 0
    }
    /// The method a new connection to this server takes in the datapath.
    pub const fn conn_method(&self) -> u8 {
        if self.is_local() {
            Method::Local as u8
        } else {
            self.method
        }
    }
    pub const fn addr(&self) -> A {
        self.addr
    }
    pub const fn port_wire(&self) -> [u8; 2] {
        self.port
    }
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }
}

/// `CONNS` key: a packet's 5-tuple as it is on the wire. Word-aligned, so
/// that BPF copies it in words rather than bytes.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey<A: Addr = [u8; 4]> {
    src: A,
    dst: A,
    sport: [u8; 2],
    dport: [u8; 2],
    proto: u8,
    // Padding as a byte and an aligned half-word: zeroing a 3-byte array at
    // an odd offset is a call to `memset` in BPF, on every packet.
    _pad_byte: u8,
    _pad_half: u16,
}

impl<A: Addr> FlowKey<A> {
    #[inline(always)]
    pub const fn from_wire(src: A, dst: A, sport: [u8; 2], dport: [u8; 2], proto: u8) -> Self {
        Self {
            src,
            dst,
            sport,
            dport,
            proto,
            _pad_byte: 0,
            _pad_half: 0,
        }
    }
    pub const fn src(&self) -> A {
        self.src
    }
    pub const fn dst(&self) -> A {
        self.dst
    }
    pub const fn sport(&self) -> u16 {
        u16::from_be_bytes(self.sport)
    }
    pub const fn dport(&self) -> u16 {
        u16::from_be_bytes(self.dport)
    }
    pub const fn proto(&self) -> u8 {
        self.proto
    }

    /// The NAT reply entry that goes with this inbound entry, whose
    /// connection leads to `conn`'s real server: real server to client.
    #[inline(always)]
    pub const fn nat_reply(&self, conn: &Conn<A>) -> FlowKey<A> {
        self.nat_reply_from(conn.addr, conn.port)
    }

    /// [`FlowKey::nat_reply`] for a real server's `addr` and `port` (wire).
    #[inline(always)]
    pub const fn nat_reply_from(&self, addr: A, port: [u8; 2]) -> FlowKey<A> {
        FlowKey::from_wire(addr, self.src, port, self.sport, self.proto)
    }

    /// The inbound entry that owns this NAT reply entry; `conn` is the reply
    /// entry's (its address and port are the virtual service's).
    #[inline(always)]
    pub const fn nat_inbound(&self, conn: &Conn<A>) -> FlowKey<A> {
        self.nat_inbound_from(conn.addr, conn.port)
    }

    /// The inbound entry of the NAT connection this reply (real server to
    /// client) belongs to, if it was made for the virtual service at
    /// `vaddr`, `vport` (wire).
    #[inline(always)]
    pub const fn nat_inbound_from(&self, vaddr: A, vport: [u8; 2]) -> FlowKey<A> {
        FlowKey::from_wire(self.dst, vaddr, self.dport, vport, self.proto)
    }
}

/// `REPLY_SERVICES` key: a NAT real server as its replies carry it
/// (source address, source port, protocol).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyKey<A: Addr = [u8; 4]> {
    addr: A,
    port: [u8; 2],
    proto: u8,
    _pad: u8,
}

impl<A: Addr> ReplyKey<A> {
    #[inline(always)]
    pub const fn from_wire(addr: A, port: [u8; 2], proto: u8) -> Self {
        Self {
            addr,
            port,
            proto,
            _pad: 0,
        }
    }
    /// The server a reply packet (`flow`) comes from.
    #[inline(always)]
    pub const fn of_reply(flow: &FlowKey<A>) -> Self {
        Self::from_wire(flow.src, flow.sport, flow.proto)
    }
}

/// A virtual service's address and port (wire), in `REPLY_SERVICES`; all
/// zero for an unused place.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VirtualAddr<A: Addr = [u8; 4]> {
    pub addr: A,
    pub port: [u8; 2],
    _pad: [u8; 2],
}

impl<A: Addr> VirtualAddr<A> {
    pub const fn from_wire(addr: A, port: [u8; 2]) -> Self {
        Self {
            addr,
            port,
            _pad: [0; 2],
        }
    }
    pub fn is_unused(&self) -> bool {
        self.addr == A::UNSPECIFIED
    }
}

/// Services one NAT server's replies may belong to, tried in turn.
pub const REPLY_CANDIDATES: usize = 4;

/// `REPLY_SERVICES` value: the virtual services whose connections to a NAT
/// server keep one entry (`Real::ONE_ENTRY`). A reply from the server is
/// looked up as the inbound entry each would have made, until one matches;
/// the connections of a fifth service to the same server keep two entries.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyServices<A: Addr = [u8; 4]> {
    pub services: [VirtualAddr<A>; REPLY_CANDIDATES],
}

/// Which way a `CONNS` entry rewrites.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Client to virtual service: rewrite the destination to the real server.
    Inbound = 0,
    /// Real server back to client (NAT only): rewrite the source to the VIP.
    Outbound = 1,
}

/// `CONNS` value. `addr`/`port` are what the packet's destination (inbound)
/// or source (outbound) becomes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conn<A: Addr = [u8; 4]> {
    addr: A,
    port: [u8; 2],
    pub direction: u8,
    pub method: u8,
    pub service_index: u32,
    pub real_index: u32,
    _pad_addr: A::Pad,
    /// `bpf_ktime_get_ns` of the last packet, for the controller's sweeper.
    pub last_seen_ns: u64,
    /// `ConnState` of the flow; a NAT flow keeps it on its inbound entry.
    pub state: u8,
    // As `FlowKey`'s: no `memset` call for each new entry.
    _pad_byte: u8,
    _pad_half: u16,
    /// The `HALF_OPEN` slot (plus one) this entry took when its SYN made
    /// it; 0 for none. It holds the slot while it is half-open.
    pub half_open_slot: u32,
}

impl<A: Addr> Conn<A> {
    #[inline(always)]
    pub fn new(
        addr: A,
        port: [u8; 2],
        direction: Direction,
        method: u8,
        service_index: u32,
        real_index: u32,
        now: u64,
    ) -> Self {
        Self {
            addr,
            port,
            direction: direction as u8,
            method,
            service_index,
            real_index,
            _pad_addr: A::Pad::default(),
            last_seen_ns: now,
            state: crate::ConnState::None as u8,
            _pad_byte: 0,
            _pad_half: 0,
            half_open_slot: 0,
        }
    }
    pub const fn addr(&self) -> A {
        self.addr
    }
    pub const fn port_wire(&self) -> [u8; 2] {
        self.port
    }
    pub const fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }

    /// Idle for longer than `timeout_seconds` at `now_ns`: the one expiry
    /// rule, for the datapath and the controller alike. Another CPU may
    /// stamp the entry after `now_ns` was read; such an entry is fresh, not
    /// idle for most of 2^64 ns.
    #[inline(always)]
    pub const fn expired(&self, now_ns: u64, timeout_seconds: u32) -> bool {
        now_ns.saturating_sub(self.last_seen_ns) > timeout_seconds as u64 * NS_PER_SEC
    }

    /// The count this entry is in, as its real server's ActiveConn or
    /// InActConn: the server's index and whether the entry is active. A NAT
    /// reply entry is in none. Whoever adds, moves or removes an inbound
    /// entry moves its count (the datapath, or lvsd's sweeper and sync),
    /// so the sum of `REAL_CONNS`'s shares always equals a recount of the
    /// table.
    pub fn counted_as(&self) -> Option<(u32, bool)> {
        if self.direction != Direction::Inbound as u8 {
            return None;
        }
        let state = crate::ConnState::from_u8(self.state & !STATE_CLAIMED);
        Some((
            self.real_index,
            state.is_some_and(crate::ConnState::is_active),
        ))
    }

    /// [`Conn::expired`] with the timeout of the entry's state.
    pub fn expired_under(&self, now_ns: u64, timeouts: &Timeouts) -> bool {
        let seconds = match timeouts.get(self.state as usize) {
            Some(seconds) => *seconds,
            None => 0,
        };
        self.expired(now_ns, seconds)
    }
}

/// Set on an expired entry's `state` by the CPU that is replacing it with
/// a new flow, so that of two CPUs (or a CPU and the sweeper) only one
/// takes it over. Whoever then removes the entry uncounts its state.
pub const STATE_CLAIMED: u8 = 0x80;

/// Byte offset of `Conn::state`: the low byte of an aligned 32-bit word
/// (the rest is padding, always zero) that the datapath compares and swaps.
pub const CONN_STATE_OFFSET: usize = core::mem::offset_of!(Conn, state);
const _: () = assert!(CONN_STATE_OFFSET.is_multiple_of(4));
/// The same for an IPv6 entry.
pub const CONN6_STATE_OFFSET: usize = core::mem::offset_of!(Conn<In6>, state);
const _: () = assert!(CONN6_STATE_OFFSET.is_multiple_of(4));

/// `REAL_CONNS` value (per CPU): a real server's live entries by IPVS class
/// (ActiveConn, InActConn). Each CPU's share moves by whatever that CPU
/// adds, changes or removes, so one share may wrap below zero; the sum over
/// the CPUs, plus lvsd's own share, is exact.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub active: u32,
    pub inactive: u32,
}

impl ConnCounts {
    pub const fn total(&self) -> u32 {
        self.active.wrapping_add(self.inactive)
    }

    /// Move ActiveConn (`active`) or InActConn by `delta`, wrapping:
    /// `u32::MAX` is minus one.
    #[inline(always)]
    pub fn move_by(&mut self, active: bool, delta: u32) {
        let field = if active {
            &mut self.active
        } else {
            &mut self.inactive
        };
        *field = field.wrapping_add(delta);
    }

    /// Add another share (wrapping, as shares may be below zero).
    pub fn add(&mut self, other: &ConnCounts) {
        self.active = self.active.wrapping_add(other.active);
        self.inactive = self.inactive.wrapping_add(other.inactive);
    }
}

/// Idle timeouts in seconds, indexed by [`crate::ConnState`].
pub type Timeouts = [u32; crate::tcp_state::STATE_COUNT as usize];

/// Nanoseconds in a second, for `bpf_ktime_get_ns` arithmetic on both sides.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// Per-CPU traffic counters, one per service and one per real server
/// (`ipvsadm --stats` columns).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Counters {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        let Counters {
            conns,
            in_packets,
            out_packets,
            in_bytes,
            out_bytes,
        } = *other;
        self.conns += conns;
        self.in_packets += in_packets;
        self.out_packets += out_packets;
        self.in_bytes += in_bytes;
        self.out_bytes += out_bytes;
    }
}

/// Why the datapath let a packet go the way it did; indexes `VERDICTS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not IPv4 (ARP, IPv6, VLAN-tagged, ...).
    PassNotIpv4 = 0,
    /// IPv4 but not for a virtual service or a tracked flow.
    PassNoService = 1,
    /// TCP segment for a service without SYN and without an entry (IPVS accepts it).
    PassNotSyn = 2,
    /// Fragment, or a protocol the director does not balance.
    PassUnsupported = 3,
    /// Headers cut short, or an IPv4 total length that disagrees with them
    /// or with the frame; left to the kernel (which drops it).
    PassMalformed = 4,
    /// Next hop not resolved yet (or TTL expiring): the kernel forwards it.
    PassToKernel = 5,
    /// No real server can be chosen (IPVS drops too).
    DropNoDestination = 6,
    /// Sent out through the devmap.
    Redirect = 7,
    /// Connection table insert failed.
    DropTableFull = 8,
    /// Sent back out of the interface it came in on (DR or TUN on a one-armed director).
    Transmit = 9,
    /// Too big for the egress (DR, or TUN with its outer header) with DF
    /// set: the client got ICMP fragmentation-needed.
    IcmpTooBig = 10,
    /// DR or TUN next hop not resolved (or outside the devmap): handed to the
    /// kernel's neighbour layer through tc, not lost.
    PassResolveNeighbour = 11,
    /// Too big for the egress (DR, or TUN with its outer header) without DF:
    /// XDP cannot fragment, and the kernel would deliver a DR packet to the
    /// local VIP and take a tunnelled one, from the director's own address,
    /// for a martian. (tc: DF or not.) A client's NAT packet with DF too
    /// big for the real server's link: the kernel's answer would quote the
    /// rewritten packet, which the client cannot match.
    DropTooBig = 12,
    /// NAT with forwarding off on the ingress interface
    /// (`net.ipv4.conf.IFACE.forwarding`); IPVS's NAT needs it too.
    DropForwardingDisabled = 13,
    /// DR or TUN real server without a route (or, with forwarding off,
    /// without a next hop lvsd resolved).
    DropNoRoute = 14,
    /// NAT destination without a route: the kernel answers the sender.
    PassNoRoute = 15,
    /// NAT packet larger than the egress MTU: without DF, rewritten for the
    /// kernel to fragment; a reply with DF, as the real server sent it, for
    /// the kernel to answer the real server (IPVS checks the size before
    /// it translates).
    PassTooBig = 16,
    /// For a real server that is this director: delivered to the local stack.
    PassLocal = 17,
    /// A new connection while lvsd, a router of a pair, has stopped
    /// refreshing its liveness stamp: no one would sync it, so the client's
    /// retransmission is left to reach the new active router.
    DropNoController = 18,
    /// An ARP request (IPv6: a neighbour solicitation) for a floating
    /// address while lvsd is gone: only the router that took the address
    /// over answers.
    DropArpNoController = 19,
    /// The first packet of a flow while another CPU was creating the same
    /// flow's entry: the client's retransmission finds that entry.
    DropConcurrentNewFlow = 20,
}

pub const VERDICT_COUNT: u32 = 21;

/// Most floating addresses of a router pair.
pub const MAX_FLOATING: u32 = 64;

impl Verdict {
    pub const ALL: [Verdict; VERDICT_COUNT as usize] = [
        Verdict::PassNotIpv4,
        Verdict::PassNoService,
        Verdict::PassNotSyn,
        Verdict::PassUnsupported,
        Verdict::PassMalformed,
        Verdict::PassToKernel,
        Verdict::DropNoDestination,
        Verdict::Redirect,
        Verdict::DropTableFull,
        Verdict::Transmit,
        Verdict::IcmpTooBig,
        Verdict::PassResolveNeighbour,
        Verdict::DropTooBig,
        Verdict::DropForwardingDisabled,
        Verdict::DropNoRoute,
        Verdict::PassNoRoute,
        Verdict::PassTooBig,
        Verdict::PassLocal,
        Verdict::DropNoController,
        Verdict::DropArpNoController,
        Verdict::DropConcurrentNewFlow,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            Verdict::PassNotIpv4 => "pass_not_ipv4",
            Verdict::PassNoService => "pass_no_service",
            Verdict::PassNotSyn => "pass_not_syn",
            Verdict::PassUnsupported => "pass_unsupported",
            Verdict::PassMalformed => "pass_malformed",
            Verdict::PassToKernel => "pass_to_kernel",
            Verdict::DropNoDestination => "drop_no_destination",
            Verdict::Redirect => "redirect",
            Verdict::DropTableFull => "drop_table_full",
            Verdict::Transmit => "transmit",
            Verdict::IcmpTooBig => "icmp_too_big",
            Verdict::PassResolveNeighbour => "pass_resolve_neighbour",
            Verdict::DropTooBig => "drop_too_big",
            Verdict::DropForwardingDisabled => "drop_forwarding_disabled",
            Verdict::DropNoRoute => "drop_no_route",
            Verdict::PassNoRoute => "pass_no_route",
            Verdict::PassTooBig => "pass_too_big",
            Verdict::PassLocal => "pass_local",
            Verdict::DropNoController => "drop_no_controller",
            Verdict::DropArpNoController => "drop_arp_no_controller",
            Verdict::DropConcurrentNewFlow => "drop_concurrent_new_flow",
        }
    }
}

/// `SETTINGS` value (one entry): datapath-wide knobs the controller sets.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// Outer source of tunnelled packets; all zero means "the address the
    /// route towards the real server selects" (as IPVS does).
    pub tunnel_source: [u8; 4],
    /// `Settings::SYNC_CHANGES`.
    pub flags: u32,
}

impl Settings {
    /// A router of a pair: each new connection and each change of a
    /// connection's state goes to `CONN_CHANGES`, for lvsd to sync at once
    /// (as IPVS's sync daemon sends state changes) rather than when its
    /// sweeper next passes it.
    pub const SYNC_CHANGES: u32 = 1;
    /// ICMP errors about tracked connections go to the kernel as they came,
    /// untranslated (`lvsd --icmp-errors kernel`): what a director without
    /// ICMP handling does, where path-MTU discovery through NAT fails.
    pub const ICMP_ERRORS_TO_KERNEL: u32 = 2;
    /// IPVS's `sloppy_tcp` (`lvsd --sloppy-tcp`): a TCP segment with no
    /// connection entry is scheduled whatever its flags (but RST), not only
    /// a SYN, so a flow that ECMP moves from another director carries on
    /// (with sh, dh or mh, on the server the other director chose).
    pub const SLOPPY_TCP: u32 = 4;

    #[inline(always)]
    pub const fn syncs_changes(&self) -> bool {
        self.flags & Self::SYNC_CHANGES != 0
    }
    #[inline(always)]
    pub const fn sloppy_tcp(&self) -> bool {
        self.flags & Self::SLOPPY_TCP != 0
    }
    #[inline(always)]
    pub const fn handles_icmp_errors(&self) -> bool {
        self.flags & Self::ICMP_ERRORS_TO_KERNEL == 0
    }
}

/// `HALF_OPEN` value: one slot of the half-open quota, and the flow whose
/// entry took it. A SYN that makes an entry takes the next slot in turn; if
/// the entry that took the slot a lap earlier is still half-open, it is
/// evicted first (the oldest half-open entry goes). So a flood of spoofed
/// SYNs holds at most the quota's slots of the table, and never evicts an
/// entry that completed its handshake.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfOpenSlot<A: Addr = [u8; 4]> {
    pub key: FlowKey<A>,
    /// Non-zero while the entry of `key` may hold this slot.
    pub held: u32,
    _pad: u32,
}

impl<A: Addr> HalfOpenSlot<A> {
    pub const fn held_by(key: FlowKey<A>) -> Self {
        Self {
            key,
            held: 1,
            _pad: 0,
        }
    }
}

/// `HALF_OPEN_TURN` value (one entry): the slot count, written at load, and
/// the next block's ticket (its slots start at `(ticket % blocks) *
/// HALF_OPEN_BLOCK_SLOTS`). Each CPU takes a block of slots at a time
/// (`HalfOpenBlock`), so a SYN takes its slot without a locked instruction
/// or a division, and the blocks still go round the quota in turn.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalfOpenTurn {
    pub next: u64,
    pub slots: u32,
    _pad: u32,
}

impl HalfOpenTurn {
    pub const fn with_slots(slots: u32) -> Self {
        Self {
            next: 0,
            slots,
            _pad: 0,
        }
    }
}

/// `HALF_OPEN_BLOCK` value (per CPU): the CPU's next slot and the end of
/// its block. Equal (as the kernel zeroes them), the CPU takes a new block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HalfOpenBlock {
    pub next: u32,
    pub end: u32,
}

/// Slots a CPU takes from the quota at a time.
pub const HALF_OPEN_BLOCK_SLOTS: u32 = 16;

/// Half-open entries a table of `connections` entries may hold: a quarter,
/// in whole blocks, and one block at least.
pub const fn half_open_slots(connections: u32) -> u32 {
    let quarter = connections / 4 / HALF_OPEN_BLOCK_SLOTS * HALF_OPEN_BLOCK_SLOTS;
    if quarter < HALF_OPEN_BLOCK_SLOTS {
        HALF_OPEN_BLOCK_SLOTS
    } else {
        quarter
    }
}

/// One `CONN_CHANGES` record: a connection as it was created, or as a
/// packet moved its state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnChange<A: Addr = [u8; 4]> {
    pub key: FlowKey<A>,
    pub conn: Conn<A>,
}

/// Bytes of the `CONN_CHANGES` ring buffer: 21,845 records, a burst of
/// changes far beyond what lvsd drains between two wake-ups.
pub const CONN_CHANGES_BYTES: u32 = 1024 * 1024;

/// `EGRESS_CACHE` value, per real server index (and `CLIENT_EGRESS`, per
/// client slot): the way to the real server (or client) as the FIB last said (egress interface, MACs, next hop, the source its
/// route selects, its MTU), valid while `generation` equals
/// `EGRESS_GENERATION`, which lvsd moves on whenever routes or neighbours
/// may have changed (each second at least). Established packets skip the
/// FIB lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CachedEgress<A: Addr = [u8; 4]> {
    pub generation: u32,
    /// The address it was resolved for (a real index can be reused; a
    /// client slot is shared).
    pub addr: A,
    pub ifindex: u32,
    pub mtu: u16,
    pub _pad: [u8; 2],
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub next_hop: A,
    pub source: A,
}

/// `CLIENT_EGRESS` slots: the way back to NAT clients, cached like the way
/// to real servers (`CachedEgress`), in the slot their address hashes to.
pub const CLIENT_EGRESS_BITS: u32 = 16;
pub const CLIENT_EGRESS_SLOTS: u32 = 1 << CLIENT_EGRESS_BITS;

/// The `CLIENT_EGRESS` slot of a client's address (a Fibonacci hash).
#[inline(always)]
pub fn client_egress_slot<A: Addr>(addr: A) -> u32 {
    u32::from_ne_bytes(addr.last_word()).wrapping_mul(0x9e37_79b1) >> (32 - CLIENT_EGRESS_BITS)
}

/// `RELEVANT`: two bitmaps of `RELEVANT_WORDS` u32 words each, first of
/// virtual addresses (by destination), then of NAT real servers' addresses
/// (by source, for their replies). A packet whose destination's bit and
/// source's bit are both clear concerns no service: the datapath passes it
/// before touching the connection table or the clock. A set bit may be
/// another address's (a false positive only costs the full lookup).
pub const RELEVANT_WORDS: u32 = 1024;

/// Which of `RELEVANT_WORDS * 32` bits stands for `addr`: its low 15 bits
/// (hosts of one /17 never collide).
#[inline(always)]
pub const fn relevant_bit(addr: [u8; 4]) -> (u32, u32) {
    let bit = ((addr[2] as u32 & 0x7f) << 8) | addr[3] as u32;
    (bit / 32, 1 << (bit % 32))
}

/// The word of `RELEVANT` for `addr` in bitmap `map` (0 virtual, 1 NAT
/// source), and the bit within it.
#[inline(always)]
pub const fn relevant_slot(map: u32, addr: [u8; 4]) -> (u32, u32) {
    let (word, mask) = relevant_bit(addr);
    (map * RELEVANT_WORDS + word, mask)
}

/// `NEIGH_NOTES` key: the IPv4 header fields that name one packet (source,
/// destination, identification, protocol), as the director passes it to
/// the stack and as `lvs_neigh` finds it on tc ingress.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NeighKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub id: [u8; 2],
    pub proto: u8,
    pub _pad: u8,
}

impl NeighKey {
    /// The key of the IPv4 header `ip` (its first 20 bytes).
    #[inline(always)]
    pub const fn of_ipv4_header(ip: &[u8; 20]) -> Self {
        Self {
            src: [ip[12], ip[13], ip[14], ip[15]],
            dst: [ip[16], ip[17], ip[18], ip[19]],
            id: [ip[4], ip[5]],
            proto: ip[9],
            _pad: 0,
        }
    }

    /// The key of the IPv6 header `ip` (its first 40 bytes): its
    /// addresses folded, its payload length and next header (IPv6 has no
    /// identification; two packets of one flow alike in these share a note,
    /// and either finds it).
    #[inline(always)]
    pub fn of_ipv6_header(ip: &[u8; 40]) -> Self {
        let mut src = [0; 16];
        let mut dst = [0; 16];
        src.copy_from_slice(&ip[8..24]);
        dst.copy_from_slice(&ip[24..40]);
        Self {
            src: crate::hash::fold_ipv6(src),
            dst: crate::hash::fold_ipv6(dst),
            id: [ip[4], ip[5]],
            proto: ip[6],
            _pad: 0,
        }
    }

    /// The key of the IPv4 or IPv6 packet after an Ethernet header in
    /// `frame`.
    pub fn of_frame(frame: &[u8]) -> Option<Self> {
        match frame.get(12..14)? {
            [0x86, 0xdd] => Some(Self::of_ipv6_header(frame.get(14..54)?.try_into().ok()?)),
            _ => Some(Self::of_ipv4_header(frame.get(14..34)?.try_into().ok()?)),
        }
    }
}

/// `NEIGH_NOTES` value: where the director would have sent a packet whose
/// next hop's MAC it does not know. XDP cannot reach the neighbour layer
/// (and cannot count on frame metadata: some kernels refuse
/// `bpf_xdp_adjust_meta`), so it passes the packet with this note and
/// `lvs_neigh` hands it to `bpf_redirect_neigh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NeighNote<A: Addr = [u8; 4]> {
    pub noted_ns: u64,
    pub ifindex: u32,
    pub next_hop: A,
    _pad: A::Pad,
}

impl<A: Addr> NeighNote<A> {
    #[inline(always)]
    pub fn new(noted_ns: u64, next_hop: A, ifindex: u32) -> Self {
        Self {
            noted_ns,
            ifindex,
            next_hop,
            _pad: A::Pad::default(),
        }
    }
}

/// A note older than this is stale: its packet never reached tc.
pub const NEIGH_NOTE_TTL_NS: u64 = NS_PER_SEC;
/// Notes in flight at once (a burst towards unresolved neighbours).
pub const NEIGH_NOTES_SIZE: u32 = 4096;

/// `NEXT_HOPS` value, keyed by a DR or TUN real server's address: the route
/// lvsd resolved towards it, for when the FIB helper will not answer (it
/// refuses every lookup while forwarding is off, and DR and TUN must work
/// without forwarding, as in IPVS).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NextHop<A: Addr = [u8; 4]> {
    pub ifindex: u32,
    /// The gateway, or the real server itself when on-link.
    pub gateway: A,
    /// The source address the route selects (the tunnel's outer source).
    pub source: A,
}

/// What the real server's decapsulation program did; indexes `DECAP_STATS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecapVerdict {
    /// The outer header (IPv4-in-IPv4, IPv6-in-IPv6) stripped; the inner
    /// packet goes up the stack.
    Decapsulated = 0,
    /// Not IPv4-in-IPv4 nor IPv6-in-IPv6: untouched.
    PassNotIpip = 1,
    /// Claims to be a tunnel but is truncated or not of its family inside:
    /// untouched.
    PassMalformed = 2,
}

pub const DECAP_VERDICT_COUNT: u32 = 3;

/// What became of an ICMP error (destination unreachable, source quench,
/// time exceeded) whose quoted packet is TCP or UDP; indexes `ICMP_ERRORS`.
/// The packet's own fate is its `Verdict`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpCase {
    /// From the client's side about a NAT connection: translated (outer
    /// destination, quoted source and port, every checksum) and sent to
    /// its real server.
    NatToRealServer = 0,
    /// From a NAT real server's side: translated back to the virtual
    /// service and sent to the client.
    NatToClient = 1,
    /// From the client's side about a DR, TUN or local connection: sent on
    /// unchanged (tunnelled for TUN) to the real server that owns it.
    ToRealServer = 2,
    /// Quotes no live connection: the kernel takes it.
    NoConnection = 3,
    /// Left to the kernel untranslated (`Settings::ICMP_ERRORS_TO_KERNEL`).
    Ignored = 4,
}

pub const ICMP_CASE_COUNT: u32 = 5;

impl IcmpCase {
    pub const ALL: [IcmpCase; ICMP_CASE_COUNT as usize] = [
        IcmpCase::NatToRealServer,
        IcmpCase::NatToClient,
        IcmpCase::ToRealServer,
        IcmpCase::NoConnection,
        IcmpCase::Ignored,
    ];
    pub const fn name(self) -> &'static str {
        match self {
            IcmpCase::NatToRealServer => "nat_to_real_server",
            IcmpCase::NatToClient => "nat_to_client",
            IcmpCase::ToRealServer => "to_real_server",
            IcmpCase::NoConnection => "no_connection",
            IcmpCase::Ignored => "ignored",
        }
    }
}

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;

const _: () = assert!(size_of::<ServiceKey>() == 8);
const _: () = assert!(size_of::<Settings>() == 8);
const _: () = assert!(size_of::<ConnChange>() == 48);
const _: () = assert!(size_of::<ConnCounts>() == 8);
const _: () = assert!(size_of::<CachedEgress>() == 36);
const _: () = assert!(size_of::<NeighKey>() == 12);
const _: () = assert!(size_of::<NeighNote>() == 16);
const _: () = assert!(size_of::<NextHop>() == 12);
const _: () = assert!(size_of::<Service>() == 32);
const _: () = assert!(size_of::<LocalityKey>() == 8);
const _: () = assert!(size_of::<LocalityEntry>() == 16);
const _: () = assert!(size_of::<TemplateKey>() == 8);
const _: () = assert!(size_of::<Template>() == 16);
const _: () = assert!(size_of::<Event>() == 24);
const _: () = assert!(size_of::<Real>() == 8);
const _: () = assert!(size_of::<FlowKey>() == 16);
const _: () = assert!(size_of::<Conn>() == 32);
const _: () = assert!(size_of::<ReplyKey>() == 8);
const _: () = assert!(size_of::<ReplyServices>() == 8 * REPLY_CANDIDATES);
const _: () = assert!(size_of::<HalfOpenSlot>() == 24);
const _: () = assert!(size_of::<HalfOpenTurn>() == 16);
const _: () = assert!(size_of::<HalfOpenBlock>() == 8);
const _: () = assert!(size_of::<Counters>() == 40);
const _: () = assert!(size_of::<ServiceKey<In6>>() == 20);
const _: () = assert!(size_of::<Service<In6>>() == 44);
const _: () = assert!(size_of::<Real<In6>>() == 20);
const _: () = assert!(size_of::<FlowKey<In6>>() == 40);
const _: () = assert!(size_of::<Conn<In6>>() == 48);
const _: () = assert!(size_of::<ConnChange<In6>>() == 88);
const _: () = assert!(size_of::<HalfOpenSlot<In6>>() == 48);
const _: () = assert!(size_of::<TemplateKey<In6>>() == 20);
const _: () = assert!(size_of::<LocalityKey<In6>>() == 20);
const _: () = assert!(size_of::<Event<In6>>() == 40);
const _: () = assert!(size_of::<ReplyKey<In6>>() == 20);
const _: () = assert!(size_of::<ReplyServices<In6>>() == 20 * REPLY_CANDIDATES);
const _: () = assert!(size_of::<CachedEgress<In6>>() == 72);
const _: () = assert!(size_of::<NextHop<In6>>() == 36);
const _: () = assert!(size_of::<NeighNote<In6>>() == 32);
const _: () = assert!(ring_base(MAX_SERVICES - 1, 1) + RING_SLOTS == MAX_SERVICES * 2 * RING_SLOTS);

#[cfg(feature = "user")]
mod pod {
    use super::In6;

    macro_rules! pod {
        ($($t:ident),*) => {$(
            // SAFETY: repr(C), Copy, and no implicit padding (checked by the
            // size assertions above), so any bytes are a valid value.
            unsafe impl aya::Pod for super::$t {}
        )*};
    }
    /// The same for the types generic over the address family (`Addr` is
    /// sealed: the assertions cover both its forms).
    macro_rules! pod_both {
        ($($t:ident),*) => {$(
            // SAFETY: as above, for each family's form.
            unsafe impl<A: super::Addr> aya::Pod for super::$t<A> {}
        )*};
    }
    // SAFETY: sixteen bytes, any value valid.
    unsafe impl aya::Pod for In6 {}
    pod!(
        Counters,
        Settings,
        LocalityEntry,
        Template,
        ConnCounts,
        NeighKey,
        HalfOpenTurn
    );
    pod_both!(
        ServiceKey,
        Service,
        Real,
        FlowKey,
        Conn,
        LocalityKey,
        TemplateKey,
        NextHop,
        ConnChange,
        HalfOpenSlot,
        ReplyKey,
        ReplyServices,
        Event,
        CachedEgress,
        NeighNote
    );
}
