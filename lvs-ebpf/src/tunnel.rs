//! IP-in-IP (`-i`): push an outer IPv4 header (protocol 4) from the director
//! to the real server, as IPVS's `ip_vs_tunnel_xmit` builds it: TOS and DF
//! copied from the inner header, TTL the inner one after its decrement.

use aya_ebpf::{
    bindings::bpf_fib_lookup as FibParams, helpers::bpf_xdp_adjust_head, programs::XdpContext,
};
use lvs_common::{checksum, Verdict, IPPROTO_IPIP};

use crate::{
    forward::{self, Lookup},
    headers::{ptr_at, Ethernet, Packet, ETH_HEADER_LEN, ETH_P_IPV4, IPV4_HEADER_LEN},
    icmp,
    maps::SETTINGS,
};

/// Callers have checked `Packet::ttl_expiring`.
#[inline(always)]
pub fn forward(ctx: &XdpContext, packet: &Packet, real: [u8; 4]) -> Result<Verdict, Verdict> {
    let configured = SETTINGS.get(0).map_or([0; 4], |s| s.tunnel_source);
    let auto_source = configured == [0; 4];
    let outer_len = (packet.ip_len() as u16)
        .checked_add(IPV4_HEADER_LEN as u16)
        .ok_or(Verdict::DropNoDestination)?;
    // SAFETY: pointer validated by Packet::parse.
    let dont_fragment = unsafe { (*packet.ip).dont_fragment() };

    let (fib, resolved) = match forward::lookup(ctx, packet, real, outer_len, auto_source) {
        Lookup::Ready(fib) => (fib, true),
        Lookup::NoNeighbour(fib) => (fib, false),
        Lookup::TooBig { mtu } if dont_fragment => {
            return icmp::frag_needed(ctx, packet, mtu.saturating_sub(IPV4_HEADER_LEN as u16));
        }
        // IPVS would fragment the outer packet; XDP cannot (see Verdict).
        Lookup::TooBig { .. } => return Err(Verdict::DropTooBig),
        Lookup::Unroutable => return Err(Verdict::DropNoDestination),
    };
    let source = if auto_source {
        forward::selected_source(&fib)
    } else {
        configured
    };
    // Decided before the frame changes.
    let way = if resolved {
        forward::egress(ctx, &fib).ok()
    } else {
        None
    };
    encapsulate(ctx, packet, source, real, way.map(|_| &fib))?;
    match way {
        Some(verdict) => Ok(verdict),
        None => forward::to_neighbour_layer(ctx, &fib),
    }
}

/// Push the outer header. With a `next_hop` the frame is addressed to it;
/// without one the neighbour layer will address it.
#[inline(always)]
fn encapsulate(
    ctx: &XdpContext,
    packet: &Packet,
    source: [u8; 4],
    real: [u8; 4],
    next_hop: Option<&FibParams>,
) -> Result<(), Verdict> {
    packet.decrement_ttl();
    // SAFETY: pointers validated by Packet::parse; read before they move.
    let (eth, inner) = unsafe { (&*packet.eth, &*packet.ip) };
    let (mut dst_mac, mut src_mac) = (eth.dst, eth.src);
    if let Some(fib) = next_hop {
        (dst_mac, src_mac) = (fib.dmac, fib.smac);
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

    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(IPV4_HEADER_LEN as i32)) } != 0 {
        return Err(Verdict::DropNoDestination);
    }
    let eth: *mut Ethernet = ptr_at(ctx, 0)?;
    let outer: *mut [u8; IPV4_HEADER_LEN] = ptr_at(ctx, ETH_HEADER_LEN)?;
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
