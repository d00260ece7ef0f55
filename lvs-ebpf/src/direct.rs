//! Direct routing (`-g`): the IP packet goes unchanged (but for its TTL) to
//! the real server's MAC, found by a FIB lookup with the real server as the
//! destination, so the frame carries the real server's MAC and the VIP.

use lvs_common::Verdict;

use crate::{
    forward::{self, Lookup},
    frame::Frame,
    headers::Packet,
};

/// Callers have checked `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward<F: Frame>(
    frame: &F,
    packet: &Packet,
    real_index: u32,
    real: [u8; 4],
) -> Result<Verdict, Verdict> {
    let tot_len = frame.mtu_len(packet, 0);
    match forward::towards_real(frame, packet, real_index, real, tot_len, false) {
        Lookup::Ready(egress) => {
            forward::set_macs(packet, &egress);
            packet.decrement_ttl();
            frame.send(egress.ifindex, egress.next_hop)
        }
        Lookup::NoNeighbour(egress) => {
            packet.decrement_ttl();
            frame.to_neighbour(egress.next_hop, egress.ifindex)
        }
        // IPVS's DR never needs forwarding.
        Lookup::ForwardingDisabled => match forward::resolved_by_lvsd(real) {
            Some(hop) => {
                packet.decrement_ttl();
                frame.to_neighbour(hop.gateway, hop.ifindex)
            }
            None => Err(Verdict::DropNoRoute),
        },
        // Larger than the egress MTU: IPVS answers ICMP fragmentation-needed
        // when DF is set and fragments otherwise; XDP cannot fragment, and
        // the kernel would deliver the VIP packet locally. As for TUN.
        Lookup::TooBig { mtu } if packet.dont_fragment() => frame.too_big(packet, mtu),
        Lookup::TooBig { .. } => Err(Verdict::DropTooBig),
        // An unreachable real server is a drop, as in IPVS: the kernel
        // would deliver the VIP packet locally instead.
        Lookup::Unroutable => Err(Verdict::DropNoRoute),
    }
}
