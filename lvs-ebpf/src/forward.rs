//! Egress: the way to a real server from `EGRESS_CACHE`, or back to a NAT
//! client from `CLIENT_EGRESS`, while its generation is current, else one
//! FIB lookup (which refills it); then out
//! through the frame's own way of sending (`Frame::send`), or to the
//! kernel's neighbour layer when the next hop's MAC is not known yet. DR and
//! TUN never depend on the forwarding sysctl: the FIB helper refuses every
//! lookup while it is off, so they take the next hop lvsd resolved for the
//! real server (`NEXT_HOPS`) instead.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC,
    },
    helpers::bpf_fib_lookup,
    maps::Array,
};
use core::mem::{size_of, MaybeUninit};
use lvs_common::{addr::Addr, client_egress_slot, CachedEgress, Method, NextHop, Verdict};

use crate::{
    decision::Decision,
    family::{Family, IpHeader},
    frame::{Frame, L4Patch},
    headers::Packet,
    maps::EGRESS_GENERATION,
};

/// The way out: interface, MACs (unless unresolved), the next hop (the
/// gateway, or the destination when on-link) and the source address the
/// route selects (when asked for).
#[derive(Clone, Copy)]
pub struct Egress<A: Addr> {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub next_hop: A,
    pub source: A,
}

/// The length the FIB checks against the route's MTU (0: none) and whether
/// it is to select the source address, in one word.
#[derive(Clone, Copy)]
struct Query(u32);

impl Query {
    #[inline(always)]
    fn new(tot_len: u16, want_source: bool) -> Self {
        Self(tot_len as u32 | (want_source as u32) << 16)
    }
    #[inline(always)]
    fn tot_len(self) -> u16 {
        self.0 as u16
    }
    #[inline(always)]
    fn want_source(self) -> bool {
        self.0 >> 16 != 0
    }
}

/// What the FIB said about a destination.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Next hop resolved, MACs included.
    Ready,
    /// Route found but the neighbour is not resolved (no MACs).
    NoNeighbour,
    /// The packet (of the length asked about) exceeds the route's MTU.
    TooBig,
    /// Forwarding is off on the ingress interface.
    ForwardingDisabled,
    /// No usable route (unreachable, blackhole, prohibit, ...).
    Unroutable,
}

/// The FIB's answer: the `route`, with the `egress` (`Ready`,
/// `NoNeighbour`) or the `mtu` (`TooBig`). Every field is always written
/// (an enum's unused payload would be undefined, and LLVM may spill an
/// undefined register, which the verifier refuses to read).
#[derive(Clone, Copy)]
pub struct Lookup<A: Addr> {
    pub route: Route,
    pub mtu: u16,
    pub egress: Egress<A>,
}

impl<A: Addr> Lookup<A> {
    #[inline(always)]
    fn ready(egress: Egress<A>) -> Self {
        Self {
            route: Route::Ready,
            mtu: 0,
            egress,
        }
    }
    #[inline(always)]
    fn none() -> Self {
        Self {
            route: Route::Unroutable,
            mtu: 0,
            egress: Egress {
                ifindex: 0,
                smac: [0; 6],
                dmac: [0; 6],
                next_hop: A::UNSPECIFIED,
                source: A::UNSPECIFIED,
            },
        }
    }
}

/// Where a destination goes. `tot_len` 0 skips the MTU check; `want_source`
/// asks the kernel for the source address the route selects (both in
/// `query`: a BPF function takes five arguments). The answer is written to
/// `found`. Out of line, so that the answer comes back in memory: inlined,
/// the answers without an egress left its fields undefined in registers,
/// which LLVM may spill and the verifier refuses to read. (Nor may a BPF
/// function return a pointer to the stack, as a returned struct would.)
///
/// The route is `O`'s, the packet's family or, for a tunnel across
/// families, the other.
#[inline(never)]
fn lookup<F: Frame, P: Family, O: Family>(
    frame: &F,
    packet: &Packet<P>,
    dst: &O::Addr,
    query: Query,
    found: &mut Lookup<O::Addr>,
) {
    let (dst, tot_len, want_source) = (*dst, query.tot_len(), query.want_source());
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&*packet.ip, &*packet.ports) };
    // SAFETY: every field the helper reads is set below; the rest is zeroed.
    let mut fib: FibParams = unsafe { MaybeUninit::zeroed().assume_init() };
    fib.family = O::AF;
    fib.l4_protocol = packet.proto;
    if packet.proto != P::ICMP {
        fib.sport = u16::from_ne_bytes(ports.src);
        fib.dport = u16::from_ne_bytes(ports.dst);
    }
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.ifindex = frame.ingress_ifindex();
    O::fib_addresses::<P>(&mut fib, ip, dst, want_source);
    let flags = if want_source { BPF_FIB_LOOKUP_SRC } else { 0 };

    // SAFETY: fib is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            frame.raw(),
            &mut fib as *mut _ as *mut _,
            size_of::<FibParams>() as i32,
            flags,
        )
    };
    let route = match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Route::Ready,
        BPF_FIB_LKUP_RET_NO_NEIGH => Route::NoNeighbour,
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Route::TooBig,
        BPF_FIB_LKUP_RET_FWD_DISABLED => Route::ForwardingDisabled,
        _ => Route::Unroutable,
    };
    // Field by field, straight from the parameter block: a whole answer
    // built first would take the stack of a function whose callers have
    // little left.
    let (next_hop, source) = O::fib_result(&fib);
    found.route = route;
    // SAFETY: a plain u16 either way (the helper writes `mtu_result` for
    // TooBig).
    found.mtu = unsafe { fib.__bindgen_anon_1.mtu_result };
    found.egress.ifindex = fib.ifindex;
    found.egress.smac = fib.smac;
    found.egress.dmac = fib.dmac;
    found.egress.next_hop = next_hop;
    found.egress.source = source;
}

/// The next hop lvsd resolved towards a DR or TUN real server.
#[inline(always)]
pub fn resolved_by_lvsd<O: Family>(real: O::Addr) -> Option<NextHop<O::Addr>> {
    // SAFETY: the value is copied out at once.
    unsafe { O::next_hops().get(real) }.copied()
}

/// The way back to a NAT client, through its slot of `CLIENT_EGRESS` (two
/// clients sharing a slot take turns filling it). Like the way to a real
/// server, it is the FIB's answer for the destination alone, renewed within
/// a second.
#[inline(always)]
pub fn towards_client<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    client: P::Addr,
    tot_len: u16,
) -> Lookup<P::Addr> {
    cached_way::<F, P, P>(
        frame,
        packet,
        P::client_egress(),
        client_egress_slot(client),
        client,
        tot_len,
        false,
    )
}

/// The way to `dst` from slot `index` of `cache` while its generation is
/// current, it was filled for `dst` and the packet fits its MTU, else from
/// the FIB, whose resolved answer then refills the slot (with the route's
/// MTU, from a second lookup that asks about the largest packet).
#[inline(always)]
fn cached_way<F: Frame, P: Family, O: Family>(
    frame: &F,
    packet: &Packet<P>,
    cache: &Array<CachedEgress<O::Addr>>,
    index: u32,
    dst: O::Addr,
    tot_len: u16,
    want_source: bool,
) -> Lookup<O::Addr> {
    let generation = EGRESS_GENERATION.get(0).copied().unwrap_or(0);
    if let Some(c) = cache.get(index) {
        if c.generation == generation && generation != 0 && c.addr == dst && tot_len <= c.mtu {
            return Lookup::ready(Egress {
                ifindex: c.ifindex,
                smac: c.smac,
                dmac: c.dmac,
                next_hop: c.next_hop,
                source: c.source,
            });
        }
    }
    let mut found = Lookup::none();
    lookup::<F, P, O>(
        frame,
        packet,
        &dst,
        Query::new(tot_len, want_source),
        &mut found,
    );
    if found.route == Route::Ready && generation != 0 {
        let mut largest = Lookup::none();
        lookup::<F, P, O>(
            frame,
            packet,
            &dst,
            Query::new(u16::MAX, false),
            &mut largest,
        );
        let mtu = match largest.route {
            Route::TooBig => largest.mtu,
            _ => u16::MAX,
        };
        remember(
            cache,
            index,
            &dst,
            &found.egress,
            (mtu as u64) << 32 | generation as u64,
        );
    }
    found
}

/// Fill the cache slot: `mtu_generation` holds the MTU (high word) and the
/// generation (five arguments at most, each a word). Out of line: inlined,
/// LLVM 22 spilled a register the helper call had clobbered, which the
/// verifier refuses.
#[inline(never)]
fn remember<A: Addr>(
    cache: &Array<CachedEgress<A>>,
    index: u32,
    dst: &A,
    e: &Egress<A>,
    mtu_generation: u64,
) {
    let (dst, mtu, generation) = (*dst, (mtu_generation >> 32) as u16, mtu_generation as u32);
    let Some(slot) = cache.get_ptr_mut(index) else {
        return;
    };
    // Two CPUs may fill one slot at once; both write what the FIB said.
    // SAFETY: an array slot, live for the program run.
    unsafe {
        *slot = CachedEgress {
            generation,
            addr: dst,
            ifindex: e.ifindex,
            mtu,
            _pad: [0; 2],
            smac: e.smac,
            dmac: e.dmac,
            next_hop: e.next_hop,
            source: e.source,
        };
    }
}

/// Address the frame to the resolved next hop.
#[inline(always)]
pub fn set_macs<P: Family>(packet: &Packet<P>, egress: &Egress<P::Addr>) {
    // SAFETY: pointer validated by Packet::parse.
    let eth = unsafe { &mut *packet.eth };
    eth.dst = egress.dmac;
    eth.src = egress.smac;
}

/// The way to a connection's real server, found once whatever the method
/// (each method's path holding its own lookup would not fit the stack): the
/// length the route's MTU must take is the packet's, with the outer header
/// for TUN, and TUN asks for the source the route selects unless one is
/// configured. (A client's GSO packet is not checked: `Frame::mtu_len`.)
#[inline(always)]
pub fn way_to_real<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    to: &Decision<P::Addr>,
) -> Lookup<P::Addr> {
    way_to::<F, P, P>(frame, packet, to)
}

/// `way_to_real` for a packet of family `P` to a real server of family
/// `O` (`P`, or the other family for a tunnel across families), through
/// `O`'s cache at the real server's index.
#[inline(always)]
pub fn way_to<F: Frame, P: Family, O: Family>(
    frame: &F,
    packet: &Packet<P>,
    to: &Decision<O::Addr>,
) -> Lookup<O::Addr> {
    let tunnel = to.method == Method::Tunnel as u8;
    let (overhead, want_source) = if tunnel {
        (
            O::TUNNEL_HEADER_LEN as u16,
            crate::tunnel::configured_source::<O>().is_none(),
        )
    } else {
        (0, false)
    };
    let tot_len = frame.mtu_len(packet, overhead);
    cached_way::<F, P, O>(
        frame,
        packet,
        O::egress_cache(),
        to.real_index,
        to.addr,
        tot_len,
        want_source,
    )
}

/// The way back to a NAT client (`dst`): a reply's GSO segments are checked
/// (the kernel can tell the real server).
#[inline(always)]
pub fn way_to_client<F: Frame, P: Family>(frame: &F, packet: &Packet<P>) -> Lookup<P::Addr> {
    // SAFETY: pointer validated by Packet::parse.
    let dst = unsafe { (*packet.ip).dst() };
    towards_client(frame, packet, dst, frame.segment_len(packet))
}

/// NAT after the rewrite, whose transport checksum change is `patch`, on
/// the way `found` (`way_to_real` inbound, `way_to_client` outbound).
/// Callers have checked `Packet::ttl_expiring`. NAT needs forwarding, as
/// IPVS's does; a packet the FIB cannot place goes to the kernel
/// rewritten, which routes it or fragments it. One too big for the way
/// with DF set is `DropTooBig`, its transport checksum not patched: the
/// kernel's forwarding checks a packet's size before IPVS translates it,
/// so a caller may put the packet back as it came and pass it instead
/// (`nat::to_client`).
#[inline(always)]
pub fn route<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    patch: L4Patch,
    found: Lookup<P::Addr>,
) -> Result<Verdict, Verdict> {
    let egress = found.egress;
    match found.route {
        Route::Ready => {
            set_macs(packet, &egress);
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.send::<P>(egress.ifindex, egress.next_hop)
        }
        // Not to the kernel's forwarding: it drops a reply whose source is a
        // VIP this router holds (a floating address) as a martian.
        Route::NoNeighbour => {
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.to_neighbour::<P>(egress.next_hop, egress.ifindex)
        }
        Route::TooBig if packet.dont_fragment() => Err(Verdict::DropTooBig),
        Route::TooBig => {
            frame.patch_l4(patch);
            Err(Verdict::PassTooBig)
        }
        Route::ForwardingDisabled => Err(Verdict::DropForwardingDisabled),
        Route::Unroutable => {
            frame.patch_l4(patch);
            Err(Verdict::PassNoRoute)
        }
    }
}
