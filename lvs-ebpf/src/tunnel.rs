//! IP-in-IP (`-i`): push an outer header of the packet's family from the
//! director to the real server: IPv4 (protocol 4) as IPVS's
//! `ip_vs_tunnel_xmit` builds it, TOS and DF copied from the inner header;
//! IPv6 (next header 41) with the inner traffic class and flow label. The
//! outer TTL is the inner one's after its decrement.

use lvs_common::Verdict;

use crate::{
    family::Family,
    forward::{self, Lookup, Route},
    frame::Frame,
    headers::{ptr_at, Ethernet, Packet, ETH_HEADER_LEN},
    maps::SETTINGS,
};

/// The configured outer source (IPv4 only); none means the address the
/// route towards the real server selects, as IPVS does.
#[inline(always)]
pub fn configured_source<P: Family>() -> Option<P::Addr> {
    let configured = SETTINGS.get(0).map_or([0; 4], |s| s.tunnel_source);
    if configured == [0; 4] {
        return None;
    }
    P::ipv4(configured)
}

/// On the way `found` to `real` (`forward::way_to_real`, which asked for
/// the route's source unless one is configured). Callers have checked
/// `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    real: P::Addr,
    found: Lookup<P::Addr>,
) -> Result<Verdict, Verdict> {
    // No room for the outer header in an IP length.
    if packet.ip_len() + P::TUNNEL_HEADER_LEN as u64 > u16::MAX as u64 {
        return Err(Verdict::DropTooBig);
    }
    let dont_fragment = packet.dont_fragment();
    // The way out: interface, next hop, the route's source, and the MACs
    // when the neighbour is resolved.
    let e = found.egress;
    let (ifindex, next_hop, selected, macs) = match found.route {
        Route::Ready => (e.ifindex, e.next_hop, e.source, Some((e.dmac, e.smac))),
        Route::NoNeighbour => (e.ifindex, e.next_hop, e.source, None),
        Route::TooBig if dont_fragment => {
            let mtu = found.mtu.saturating_sub(P::TUNNEL_HEADER_LEN as u16);
            return frame.too_big(packet, mtu);
        }
        // IPVS would fragment the outer packet; XDP cannot (see Verdict).
        Route::TooBig => return Err(Verdict::DropTooBig),
        // IPVS's TUN never needs forwarding.
        Route::ForwardingDisabled => match forward::resolved_by_lvsd::<P>(real) {
            Some(hop) => (hop.ifindex, hop.gateway, hop.source, None),
            None => return Err(Verdict::DropNoRoute),
        },
        Route::Unroutable => return Err(Verdict::DropNoRoute),
    };
    let source = configured_source::<P>().unwrap_or(selected);
    encapsulate(frame, packet, source, real, macs)?;
    match macs {
        Some(_) => frame.send::<P>(ifindex, next_hop),
        None => frame.to_neighbour::<P>(next_hop, ifindex),
    }
}

/// Push the outer header. With the next hop's `macs` the frame is addressed
/// to it; without them the neighbour layer will address it.
#[inline(always)]
fn encapsulate<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    source: P::Addr,
    real: P::Addr,
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), Verdict> {
    packet.decrement_ttl();
    // SAFETY: pointers validated by Packet::parse; read before they move.
    let (eth, inner) = unsafe { (&*packet.eth, &*packet.ip) };
    let (mut dst_mac, mut src_mac) = (eth.dst, eth.src);
    if let Some(next_hop) = macs {
        (dst_mac, src_mac) = next_hop;
    }
    let header = P::tunnel_header(inner, source, real);

    frame.push_outer_header::<P>()?;
    let eth: *mut Ethernet = ptr_at(frame, 0)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst: dst_mac,
            src: src_mac,
            ethertype: P::ETHERTYPE,
        };
    }
    let outer: *mut P::Ip = ptr_at(frame, ETH_HEADER_LEN)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe { *outer = header };
    Ok(())
}
