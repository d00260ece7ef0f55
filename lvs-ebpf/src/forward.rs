//! Egress: one FIB lookup, then out of the ingress interface (`XDP_TX`) or
//! through the devmap to another. Anything the FIB cannot finish (an
//! unresolved neighbour, an interface we do not own) goes back to the caller,
//! which knows whether the kernel can finish it.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS, BPF_FIB_LOOKUP_SRC,
    },
    helpers::{bpf_fib_lookup, bpf_xdp_adjust_meta},
    programs::XdpContext,
};
use core::mem::{size_of, MaybeUninit};
use lvs_common::{NeighMeta, Verdict};

use crate::{headers::Packet, maps::EGRESS};

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
    /// No usable route (unreachable, blackhole, forwarding disabled, ...).
    Unroutable,
}

/// Where a destination goes. `tot_len` 0 skips the MTU check; `want_source`
/// asks the kernel for the source address the route selects.
#[inline(always)]
pub fn lookup(
    ctx: &XdpContext,
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
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_2.tos = ip.tos;
    if !want_source {
        fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    }
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    let flags = if want_source { BPF_FIB_LOOKUP_SRC } else { 0 };

    // SAFETY: fib is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
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
        _ => Lookup::Unroutable,
    }
}

/// The outer source the FIB selected, as wire bytes.
#[inline(always)]
pub fn selected_source(fib: &FibParams) -> [u8; 4] {
    // SAFETY: ipv4_src is the member in use for AF_INET.
    unsafe { fib.__bindgen_anon_3.ipv4_src }.to_ne_bytes()
}

/// Choose the way out for a resolved next hop: `XDP_TX` when it is the
/// ingress interface, the devmap otherwise. Nothing in the frame has been
/// touched yet when this fails.
#[inline(always)]
pub fn egress(ctx: &XdpContext, fib: &FibParams) -> Result<Verdict, Verdict> {
    if fib.ifindex == ctx.ingress_ifindex() as u32 {
        return Ok(Verdict::Transmit);
    }
    EGRESS
        .redirect(fib.ifindex, 0)
        .map(|_| Verdict::Redirect)
        .map_err(|_| Verdict::PassToKernel)
}

/// The kernel has not resolved the next hop's MAC yet (or the egress is not
/// in the devmap). DR and TUN frames cannot simply go to the stack: it would
/// deliver a DR packet to the local VIP and drop a TUN packet, whose outer
/// source is our own address, as a martian. So the frame carries a note in
/// its XDP metadata, and the tc program `lvs_neigh` gives it to
/// `bpf_redirect_neigh`, which resolves the neighbour and queues the packet.
/// Finish the frame first: this invalidates every packet pointer.
#[inline(always)]
pub fn to_neighbour_layer(ctx: &XdpContext, fib: &FibParams) -> Result<Verdict, Verdict> {
    let len = size_of::<NeighMeta>();
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(len as i32)) } != 0 {
        // The driver keeps no metadata: nothing can carry the packet on.
        return Err(Verdict::DropNoDestination);
    }
    let meta = ctx.metadata();
    if meta + len > ctx.metadata_end() {
        return Err(Verdict::DropNoDestination);
    }
    // SAFETY: bounds checked just above; the FIB left the next hop (the
    // gateway, or the destination itself when on-link) in ipv4_dst.
    unsafe {
        *(meta as *mut NeighMeta) = NeighMeta {
            magic: NeighMeta::MAGIC,
            next_hop: fib.__bindgen_anon_4.ipv4_dst.to_ne_bytes(),
            ifindex: fib.ifindex,
        };
    }
    Ok(Verdict::PassResolveNeighbour)
}

/// Address the frame to the resolved next hop.
#[inline(always)]
pub fn set_macs(packet: &Packet, fib: &FibParams) {
    // SAFETY: pointer validated by Packet::parse.
    let eth = unsafe { &mut *packet.eth };
    eth.dst = fib.dmac;
    eth.src = fib.smac;
}

/// NAT after the rewrite: the destination is the real server (inbound) or
/// the client (outbound). Callers have checked `Packet::ttl_expiring`. An
/// unresolved neighbour goes to the neighbour layer: the kernel would drop
/// a reply whose source is a VIP this router holds (a floating address) as
/// a martian. Too big, the kernel forwards (or answers) it.
#[inline(always)]
pub fn route(ctx: &XdpContext, packet: &Packet) -> Result<Verdict, Verdict> {
    // SAFETY: pointer validated by Packet::parse.
    let dst = unsafe { (*packet.ip).dst };
    match lookup(ctx, packet, dst, packet.ip_len() as u16, false) {
        Lookup::Ready(fib) => {
            let verdict = egress(ctx, &fib)?;
            set_macs(packet, &fib);
            packet.decrement_ttl();
            Ok(verdict)
        }
        Lookup::NoNeighbour(fib) => {
            packet.decrement_ttl();
            to_neighbour_layer(ctx, &fib)
        }
        Lookup::TooBig { .. } | Lookup::Unroutable => Err(Verdict::PassToKernel),
    }
}
