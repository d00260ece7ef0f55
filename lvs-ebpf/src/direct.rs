//! Direct routing (`-g`): the IP packet goes unchanged (but for its TTL) to
//! the real server's MAC, found by a FIB lookup with the real server as the
//! destination, so the frame carries the real server's MAC and the VIP.

use aya_ebpf::programs::XdpContext;
use lvs_common::Verdict;

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
            Err(_) => {
                packet.decrement_ttl();
                forward::to_neighbour_layer(ctx, &fib)
            }
        },
        Lookup::NoNeighbour(fib) => {
            packet.decrement_ttl();
            forward::to_neighbour_layer(ctx, &fib)
        }
        // No MTU check was asked for; an unreachable real server is a drop, as
        // in IPVS: the kernel would deliver the VIP packet locally instead.
        Lookup::TooBig { .. } | Lookup::Unroutable => Err(Verdict::DropNoDestination),
    }
}
