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
use lvs_common::{client_egress_slot, CachedEgress, NextHop, Verdict, IPPROTO_ICMP};

use crate::{
    frame::{Frame, L4Patch},
    headers::Packet,
    maps::{CLIENT_EGRESS, EGRESS_CACHE, EGRESS_GENERATION, NEXT_HOPS},
};

const AF_INET: u8 = 2;

/// The way out: interface, MACs (unless unresolved), the next hop (the
/// gateway, or the destination when on-link) and the source address the
/// route selects (when asked for).
#[derive(Clone, Copy)]
pub struct Egress {
    pub ifindex: u32,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    pub next_hop: [u8; 4],
    pub source: [u8; 4],
}

impl Egress {
    #[inline(always)]
    fn of(fib: &FibParams) -> Self {
        // SAFETY: the IPv4 members are the ones in use for AF_INET.
        let (next_hop, source) = unsafe {
            (
                fib.__bindgen_anon_4.ipv4_dst.to_ne_bytes(),
                fib.__bindgen_anon_3.ipv4_src.to_ne_bytes(),
            )
        };
        Self {
            ifindex: fib.ifindex,
            smac: fib.smac,
            dmac: fib.dmac,
            next_hop,
            source,
        }
    }
}

/// What the FIB said about a destination.
pub enum Lookup {
    /// Next hop resolved, MACs included.
    Ready(Egress),
    /// Route found but the neighbour is not resolved (no MACs).
    NoNeighbour(Egress),
    /// The packet (of the length asked about) exceeds the route's MTU.
    TooBig { mtu: u16 },
    /// Forwarding is off on the ingress interface.
    ForwardingDisabled,
    /// No usable route (unreachable, blackhole, prohibit, ...).
    Unroutable,
}

/// Where a destination goes. `tot_len` 0 skips the MTU check; `want_source`
/// asks the kernel for the source address the route selects.
#[inline(always)]
pub fn lookup<F: Frame>(
    frame: &F,
    packet: &Packet,
    dst: [u8; 4],
    tot_len: u16,
    want_source: bool,
) -> Lookup {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&*packet.ip, &*packet.ports) };
    // SAFETY: every field the helper reads is set below; the rest is zeroed.
    let mut fib: FibParams = unsafe { MaybeUninit::zeroed().assume_init() };
    fib.family = AF_INET;
    fib.l4_protocol = packet.proto;
    if packet.proto != IPPROTO_ICMP {
        fib.sport = u16::from_ne_bytes(ports.src);
        fib.dport = u16::from_ne_bytes(ports.dst);
    }
    fib.__bindgen_anon_1.tot_len = tot_len;
    fib.ifindex = frame.ingress_ifindex();
    fib.__bindgen_anon_2.tos = ip.tos;
    if !want_source {
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    }
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
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
    match rc as u32 {
        BPF_FIB_LKUP_RET_SUCCESS => Lookup::Ready(Egress::of(&fib)),
        BPF_FIB_LKUP_RET_NO_NEIGH => Lookup::NoNeighbour(Egress::of(&fib)),
        // SAFETY: the helper wrote mtu_result for this return code.
        BPF_FIB_LKUP_RET_FRAG_NEEDED => Lookup::TooBig {
            mtu: unsafe { fib.__bindgen_anon_1.mtu_result },
        },
        BPF_FIB_LKUP_RET_FWD_DISABLED => Lookup::ForwardingDisabled,
        _ => Lookup::Unroutable,
    }
}

/// The next hop lvsd resolved towards a DR or TUN real server.
#[inline(always)]
pub fn resolved_by_lvsd(real: [u8; 4]) -> Option<NextHop> {
    // SAFETY: the value is copied out at once.
    unsafe { NEXT_HOPS.get(u32::from_ne_bytes(real)) }.copied()
}

/// The way to real server `real` (index `real_index`), through its cache.
#[inline(always)]
pub fn towards_real<F: Frame>(
    frame: &F,
    packet: &Packet,
    real_index: u32,
    real: [u8; 4],
    tot_len: u16,
    want_source: bool,
) -> Lookup {
    cached_way(
        frame,
        packet,
        &EGRESS_CACHE,
        real_index,
        real,
        tot_len,
        want_source,
    )
}

/// The way back to a NAT client, through its slot of `CLIENT_EGRESS` (two
/// clients sharing a slot take turns filling it). Like the way to a real
/// server, it is the FIB's answer for the destination alone, renewed within
/// a second.
#[inline(always)]
pub fn towards_client<F: Frame>(
    frame: &F,
    packet: &Packet,
    client: [u8; 4],
    tot_len: u16,
) -> Lookup {
    cached_way(
        frame,
        packet,
        &CLIENT_EGRESS,
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
fn cached_way<F: Frame>(
    frame: &F,
    packet: &Packet,
    cache: &Array<CachedEgress>,
    index: u32,
    dst: [u8; 4],
    tot_len: u16,
    want_source: bool,
) -> Lookup {
    let generation = EGRESS_GENERATION.get(0).copied().unwrap_or(0);
    if let Some(c) = cache.get(index) {
        if c.generation == generation && generation != 0 && c.addr == dst && tot_len <= c.mtu {
            return Lookup::Ready(Egress {
                ifindex: c.ifindex,
                smac: c.smac,
                dmac: c.dmac,
                next_hop: c.next_hop,
                source: c.source,
            });
        }
    }
    let found = lookup(frame, packet, dst, tot_len, want_source);
    if let Lookup::Ready(egress) = &found {
        if generation != 0 {
            let mtu = match lookup(frame, packet, dst, u16::MAX, false) {
                Lookup::TooBig { mtu } => mtu,
                _ => u16::MAX,
            };
            remember(cache, index, dst, egress, mtu, generation);
        }
    }
    found
}

#[inline(always)]
fn remember(
    cache: &Array<CachedEgress>,
    index: u32,
    dst: [u8; 4],
    e: &Egress,
    mtu: u16,
    generation: u32,
) {
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
pub fn set_macs(packet: &Packet, egress: &Egress) {
    // SAFETY: pointer validated by Packet::parse.
    let eth = unsafe { &mut *packet.eth };
    eth.dst = egress.dmac;
    eth.src = egress.smac;
}

/// NAT after the rewrite, whose transport checksum change is `patch`: the
/// destination is the real server `real_index` (inbound) or the client
/// (outbound, `None`), each through its cache. Callers have checked
/// `Packet::ttl_expiring`. NAT needs forwarding, as IPVS's does; a packet
/// the FIB cannot place goes to the kernel rewritten, which routes it or
/// fragments it. One too big for the way with DF set is `DropTooBig`, its
/// transport checksum not patched: the kernel's forwarding checks a
/// packet's size before IPVS translates it, so a caller may put the
/// packet back as it came and pass it instead (`nat::to_client`).
#[inline(always)]
pub fn route<F: Frame>(
    frame: &F,
    packet: &Packet,
    patch: L4Patch,
    real_index: Option<u32>,
) -> Result<Verdict, Verdict> {
    // SAFETY: pointer validated by Packet::parse.
    let dst = unsafe { (*packet.ip).dst };
    // A reply's GSO segments are checked (the kernel can tell the real
    // server); a client's packet's are not (`Frame::mtu_len`).
    let tot_len = match real_index {
        Some(_) => frame.mtu_len(packet, 0),
        None => frame.segment_len(packet),
    };
    let found = match real_index {
        Some(index) => towards_real(frame, packet, index, dst, tot_len, false),
        None => towards_client(frame, packet, dst, tot_len),
    };
    match found {
        Lookup::Ready(egress) => {
            set_macs(packet, &egress);
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.send(egress.ifindex, egress.next_hop)
        }
        // Not to the kernel's forwarding: it drops a reply whose source is a
        // VIP this router holds (a floating address) as a martian.
        Lookup::NoNeighbour(egress) => {
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.to_neighbour(egress.next_hop, egress.ifindex)
        }
        Lookup::TooBig { .. } if packet.dont_fragment() => Err(Verdict::DropTooBig),
        Lookup::TooBig { .. } => {
            frame.patch_l4(patch);
            Err(Verdict::PassTooBig)
        }
        Lookup::ForwardingDisabled => Err(Verdict::DropForwardingDisabled),
        Lookup::Unroutable => {
            frame.patch_l4(patch);
            Err(Verdict::PassNoRoute)
        }
    }
}
