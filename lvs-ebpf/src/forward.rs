//! Egress: one FIB lookup, then out through the frame's own way of sending
//! (`Frame::send`), or to the kernel's neighbour layer when the next hop's
//! MAC is not known yet. DR and TUN never depend on the forwarding sysctl:
//! the FIB helper refuses every lookup while it is off, so they take the
//! next hop lvsd resolved for the real server (`NEXT_HOPS`) instead.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_FWD_DISABLED,
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC,
    },
    helpers::bpf_fib_lookup,
};
use core::mem::{size_of, MaybeUninit};
use lvs_common::{NextHop, Verdict};

use crate::{
    frame::{Frame, L4Patch},
    headers::Packet,
    maps::NEXT_HOPS,
};

const AF_INET: u8 = 2;

/// What the FIB said about a destination.
pub enum Lookup {
    /// Next hop resolved: `params` holds the egress interface and both MACs.
    Ready(FibParams),
    /// Route found but the neighbour is not resolved; `params` holds the
    /// egress interface and, when asked for, the source address.
    NoNeighbour(FibParams),
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
    fib.sport = u16::from_ne_bytes(ports.src);
    fib.dport = u16::from_ne_bytes(ports.dst);
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
        BPF_FIB_LKUP_RET_SUCCESS => Lookup::Ready(fib),
        BPF_FIB_LKUP_RET_NO_NEIGH => Lookup::NoNeighbour(fib),
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

/// The outer source the FIB selected, as wire bytes.
#[inline(always)]
pub fn selected_source(fib: &FibParams) -> [u8; 4] {
    // SAFETY: ipv4_src is the member in use for AF_INET.
    unsafe { fib.__bindgen_anon_3.ipv4_src }.to_ne_bytes()
}

/// The next hop the FIB chose: the gateway, or the destination when on-link.
#[inline(always)]
pub fn next_hop(fib: &FibParams) -> [u8; 4] {
    // SAFETY: ipv4_dst is the member in use for AF_INET.
    unsafe { fib.__bindgen_anon_4.ipv4_dst }.to_ne_bytes()
}

/// Address the frame to the resolved next hop.
#[inline(always)]
pub fn set_macs(packet: &Packet, fib: &FibParams) {
    // SAFETY: pointer validated by Packet::parse.
    let eth = unsafe { &mut *packet.eth };
    eth.dst = fib.dmac;
    eth.src = fib.smac;
}

/// NAT after the rewrite, whose transport checksum change is `patch`: the
/// destination is the real server (inbound) or the client (outbound).
/// Callers have checked `Packet::ttl_expiring`. NAT needs forwarding, as
/// IPVS's does; a packet the FIB cannot place goes to the kernel rewritten,
/// which routes it, fragments it or answers the sender.
#[inline(always)]
pub fn route<F: Frame>(frame: &F, packet: &Packet, patch: L4Patch) -> Result<Verdict, Verdict> {
    // SAFETY: pointer validated by Packet::parse.
    let dst = unsafe { (*packet.ip).dst };
    let tot_len = frame.fib_tot_len(packet.ip_len() as u16);
    match lookup(frame, packet, dst, tot_len, false) {
        Lookup::Ready(fib) => {
            set_macs(packet, &fib);
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.send(fib.ifindex, next_hop(&fib))
        }
        // Not to the kernel's forwarding: it drops a reply whose source is a
        // VIP this router holds (a floating address) as a martian.
        Lookup::NoNeighbour(fib) => {
            packet.decrement_ttl();
            frame.patch_l4(patch);
            frame.to_neighbour(next_hop(&fib), fib.ifindex)
        }
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
