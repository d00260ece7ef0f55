//! Direct routing (`-g`): the IP packet goes unchanged (but for its TTL) to
//! the real server's MAC, found by a FIB lookup with the real server as the
//! destination, so the frame carries the real server's MAC and the VIP.

use lvs_common::Verdict;

use crate::{
    family::Family,
    forward::{self, Lookup, Route},
    frame::Frame,
    headers::Packet,
};

/// On the way `found` to `real` (`forward::way_to_real`). Callers have
/// checked `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    real: P::Addr,
    found: Lookup<P::Addr>,
) -> Result<Verdict, Verdict> {
    let egress = found.egress;
    match found.route {
        Route::Ready => {
            forward::set_macs(packet, &egress);
            packet.decrement_ttl();
            frame.send::<P>(egress.ifindex, egress.next_hop)
        }
        Route::NoNeighbour => {
            packet.decrement_ttl();
            frame.to_neighbour::<P>(egress.next_hop, egress.ifindex)
        }
        // IPVS's DR never needs forwarding.
        Route::ForwardingDisabled => match forward::resolved_by_lvsd::<P>(real) {
            Some(hop) => {
                packet.decrement_ttl();
                frame.to_neighbour::<P>(hop.gateway, hop.ifindex)
            }
            None => Err(Verdict::DropNoRoute),
        },
        // Larger than the egress MTU: IPVS answers ICMP fragmentation-needed
        // when DF is set and fragments otherwise; XDP cannot fragment, and
        // the kernel would deliver the VIP packet locally. As for TUN.
        Route::TooBig if packet.dont_fragment() => frame.too_big(packet, found.mtu),
        Route::TooBig => Err(Verdict::DropTooBig),
        // An unreachable real server is a drop, as in IPVS: the kernel
        // would deliver the VIP packet locally instead.
        Route::Unroutable => Err(Verdict::DropNoRoute),
    }
}
