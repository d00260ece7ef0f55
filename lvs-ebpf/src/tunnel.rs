//! IP-in-IP (`-i`): push an outer IPv4 header (protocol 4) from the director
//! to the real server, as IPVS's `ip_vs_tunnel_xmit` builds it: TOS and DF
//! copied from the inner header, TTL the inner one after its decrement.

use lvs_common::{checksum, Verdict, IPPROTO_IPIP};

use crate::{
    forward::{self, Lookup},
    frame::Frame,
    headers::{ptr_at, Ethernet, Packet, ETH_HEADER_LEN, ETH_P_IPV4, IPV4_HEADER_LEN},
    maps::SETTINGS,
};

/// Callers have checked `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward<F: Frame>(
    frame: &F,
    packet: &Packet,
    real_index: u32,
    real: [u8; 4],
) -> Result<Verdict, Verdict> {
    let configured = SETTINGS.get(0).map_or([0; 4], |s| s.tunnel_source);
    let auto_source = configured == [0; 4];
    // No room for the outer header in an IPv4 length.
    if packet.ip_len() + IPV4_HEADER_LEN as u64 > u16::MAX as u64 {
        return Err(Verdict::DropTooBig);
    }
    let dont_fragment = packet.dont_fragment();

    let tot_len = frame.mtu_len(packet, IPV4_HEADER_LEN as u16);
    // The way out: interface, next hop, the route's source, and the MACs
    // when the neighbour is resolved.
    let (ifindex, next_hop, selected, macs) =
        match forward::towards_real(frame, packet, real_index, real, tot_len, auto_source) {
            Lookup::Ready(e) => (e.ifindex, e.next_hop, e.source, Some((e.dmac, e.smac))),
            Lookup::NoNeighbour(e) => (e.ifindex, e.next_hop, e.source, None),
            Lookup::TooBig { mtu } if dont_fragment => {
                return frame.too_big(packet, mtu.saturating_sub(IPV4_HEADER_LEN as u16));
            }
            // IPVS would fragment the outer packet; XDP cannot (see Verdict).
            Lookup::TooBig { .. } => return Err(Verdict::DropTooBig),
            // IPVS's TUN never needs forwarding.
            Lookup::ForwardingDisabled => match forward::resolved_by_lvsd(real) {
                Some(hop) => (hop.ifindex, hop.gateway, hop.source, None),
                None => return Err(Verdict::DropNoRoute),
            },
            Lookup::Unroutable => return Err(Verdict::DropNoRoute),
        };
    let source = if auto_source { selected } else { configured };
    encapsulate(frame, packet, source, real, macs)?;
    match macs {
        Some(_) => frame.send(ifindex, next_hop),
        None => frame.to_neighbour(next_hop, ifindex),
    }
}

/// Push the outer header. With the next hop's `macs` the frame is addressed
/// to it; without them the neighbour layer will address it.
#[inline(always)]
fn encapsulate<F: Frame>(
    frame: &F,
    packet: &Packet,
    source: [u8; 4],
    real: [u8; 4],
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), Verdict> {
    packet.decrement_ttl();
    // SAFETY: pointers validated by Packet::parse; read before they move.
    let (eth, inner) = unsafe { (&*packet.eth, &*packet.ip) };
    let (mut dst_mac, mut src_mac) = (eth.dst, eth.src);
    if let Some(next_hop) = macs {
        (dst_mac, src_mac) = next_hop;
    }
    let total = (u16::from_be_bytes(inner.total_len) + IPV4_HEADER_LEN as u16).to_be_bytes();
    let df = inner.frag[0] & 0x40;
    let mut header = [
        0x45,
        inner.tos,
        total[0],
        total[1],
        inner.id[0],
        inner.id[1],
        df,
        0,
        inner.ttl,
        IPPROTO_IPIP,
        0,
        0,
        source[0],
        source[1],
        source[2],
        source[3],
        real[0],
        real[1],
        real[2],
        real[3],
    ];
    let check = checksum::full(&header, 0).to_be_bytes();
    header[10] = check[0];
    header[11] = check[1];

    frame.push_ipv4_header()?;
    let eth: *mut Ethernet = ptr_at(frame, 0)?;
    let outer: *mut [u8; IPV4_HEADER_LEN] = ptr_at(frame, ETH_HEADER_LEN)?;
    // SAFETY: bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst: dst_mac,
            src: src_mac,
            ethertype: ETH_P_IPV4,
        };
        *outer = header;
    }
    Ok(())
}
