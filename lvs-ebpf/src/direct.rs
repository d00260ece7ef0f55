//! Direct routing (`-g`): the IP packet goes unchanged (but for its TTL) to
//! the real server's MAC, found by a FIB lookup with the real server as the
//! destination, so the frame carries the real server's MAC and the VIP.

use aya_ebpf::{helpers::bpf_xdp_adjust_meta, programs::XdpContext};
use core::mem::size_of;
use lvs_common::{NeighMeta, Verdict};

use crate::{
    forward::{self, Lookup},
    headers::Packet,
};

/// Callers have checked `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, packet: &Packet, real: [u8; 4]) -> Result<Verdict, Verdict> {
    match forward::lookup(ctx, packet, real, 0, false) {
        Lookup::Ready(fib) => match forward::egress(ctx, &fib) {
            Ok(verdict) => {
                forward::set_macs(packet, &fib);
                packet.decrement_ttl();
                Ok(verdict)
            }
            // An interface outside the devmap: the neighbour layer can send there.
            Err(_) => via_neighbour_layer(ctx, packet, real, fib.ifindex),
        },
        Lookup::NoNeighbour(fib) => via_neighbour_layer(ctx, packet, real, fib.ifindex),
        // No MTU check was asked for; an unreachable real server is a drop, as
        // in IPVS: the kernel would deliver the VIP packet locally instead.
        Lookup::TooBig { .. } | Lookup::Unroutable => Err(Verdict::DropNoDestination),
    }
}

/// The kernel has not resolved the real server's MAC yet. Handing the frame
/// to the stack as it is would deliver it to the local VIP, so it carries a
/// note in its XDP metadata; the tc program `lvs_neigh` then gives it to
/// `bpf_redirect_neigh`, which resolves the neighbour and queues the packet.
#[inline(always)]
fn via_neighbour_layer(
    ctx: &XdpContext,
    packet: &Packet,
    real: [u8; 4],
    ifindex: u32,
) -> Result<Verdict, Verdict> {
    // Before the helper call: it invalidates every packet pointer.
    packet.decrement_ttl();
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
    // SAFETY: bounds checked just above.
    unsafe {
        *(meta as *mut NeighMeta) = NeighMeta {
            magic: NeighMeta::MAGIC,
            next_hop: real,
            ifindex,
        };
    }
    Ok(Verdict::PassResolveNeighbour)
}
