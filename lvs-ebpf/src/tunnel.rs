//! IP-in-IP (`-i`): push an outer header from the director to the real
//! server, of the real server's family (`O`), which IPVS lets differ from
//! the packet's (`P`): IPv4 as IPVS's `ip_vs_tunnel_xmit` builds it, TOS
//! and DF copied from the inner header; IPv6 with the inner traffic class
//! and flow label. The protocol says what is inside (4 IPv4, 41 IPv6); the
//! outer TTL is the inner one's after its decrement.

use lvs_common::{
    addr::{Addr, In6},
    Verdict,
};

use crate::{
    decision::{Decision, Stage},
    family::{Family, V6},
    forward::{self, Lookup, Route},
    frame::Frame,
    headers::{ptr_at, Ethernet, Packet, ETH_HEADER_LEN},
    maps::SETTINGS,
};

/// A packet of family `P` on to a real server of the other family, in a
/// stage of its own (`lvs_tunnel46`, `lvs_tunnel64`): the real server's
/// index waits in `DECIDED6`, where the stages keep their decisions; the
/// stage reads the server's address from the other family's `REALS`.
#[inline(always)]
pub fn across<F: Frame, P: Family>(frame: &F, to: &Decision<P::Addr>) -> Result<Verdict, Verdict> {
    V6::keep(&Decision::tunnel_to(
        In6::UNSPECIFIED,
        to.port,
        to.real_index,
    ));
    frame.to_ipv6_stage(if P::STAGED {
        Stage::TunnelAcross64
    } else {
        Stage::TunnelAcross46
    });
    // Back here only if lvsd's program array is gone.
    Err(Verdict::PassUnsupported)
}

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

/// On the way `found` to `real` (`forward::way_to`, which asked for the
/// route's source unless one is configured). Callers have checked
/// `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward<F: Frame, P: Family, O: Family>(
    frame: &F,
    packet: &Packet<P>,
    real: O::Addr,
    found: Lookup<O::Addr>,
) -> Result<Verdict, Verdict> {
    // No room for the outer header in an IP length.
    if packet.ip_len() + O::TUNNEL_HEADER_LEN as u64 > u16::MAX as u64 {
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
            let mtu = found.mtu.saturating_sub(O::TUNNEL_HEADER_LEN as u16);
            return frame.too_big(packet, mtu);
        }
        // IPVS would fragment the outer packet; XDP cannot (see Verdict).
        Route::TooBig => return Err(Verdict::DropTooBig),
        // IPVS's TUN never needs forwarding.
        Route::ForwardingDisabled => match forward::resolved_by_lvsd::<O>(real) {
            Some(hop) => (hop.ifindex, hop.gateway, hop.source, None),
            None => return Err(Verdict::DropNoRoute),
        },
        Route::Unroutable => return Err(Verdict::DropNoRoute),
    };
    let source = configured_source::<O>().unwrap_or(selected);
    encapsulate::<F, P, O>(frame, packet, source, real, macs)?;
    match macs {
        Some(_) => frame.send::<O>(ifindex, next_hop),
        None => frame.to_neighbour::<O>(next_hop, ifindex),
    }
}

/// Push the outer header. With the next hop's `macs` the frame is addressed
/// to it; without them the neighbour layer will address it.
#[inline(always)]
fn encapsulate<F: Frame, P: Family, O: Family>(
    frame: &F,
    packet: &Packet<P>,
    source: O::Addr,
    real: O::Addr,
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), Verdict> {
    packet.decrement_ttl();
    // SAFETY: pointers validated by Packet::parse; read before they move.
    let (eth, inner) = unsafe { (&*packet.eth, &*packet.ip) };
    let (mut dst_mac, mut src_mac) = (eth.dst, eth.src);
    if let Some(next_hop) = macs {
        (dst_mac, src_mac) = next_hop;
    }
    let header = O::tunnel_header::<P>(inner, source, real);

    frame.push_outer_header::<O>()?;
    let eth: *mut Ethernet = ptr_at(frame, 0)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst: dst_mac,
            src: src_mac,
            ethertype: O::ETHERTYPE,
        };
    }
    let outer: *mut O::Ip = ptr_at(frame, ETH_HEADER_LEN)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe { *outer = header };
    Ok(())
}
