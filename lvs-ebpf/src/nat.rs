//! NAT rewrites: DNAT towards the real server, SNAT back to the VIP.

use aya_ebpf::programs::XdpContext;
use lvs_common::{checksum, tcp_state::Table, Conn, FlowKey, Verdict, IPPROTO_UDP};

use crate::{
    conntrack, forward,
    headers::Packet,
    maps::CONNS,
    stats::{self, Way},
};

/// A reply from the real server: SNAT back to the VIP. The flow's state
/// lives on its inbound entry, which the reply moves through the OUTPUT table.
#[inline(always)]
pub fn outbound(
    ctx: &XdpContext,
    packet: &Packet,
    conn: &mut Conn,
    now: u64,
) -> Result<Verdict, Verdict> {
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    conn.last_seen_ns = now;
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&*packet.ip, &*packet.ports) };
    let inbound = FlowKey::from_wire(
        ip.dst,
        conn.addr(),
        ports.dst,
        conn.port_wire(),
        packet.proto,
    );
    if let Some(forward) = CONNS.get_ptr_mut(inbound) {
        // SAFETY: the pointer comes from a successful map lookup.
        let forward = unsafe { &mut *forward };
        // A late reply does not bring a dead connection back.
        if !conntrack::expired(forward, now) {
            conntrack::update(forward, packet, Table::Output, now);
        }
    }
    stats::count_packet(
        conn.service_index,
        conn.real_index,
        Way::Out,
        packet.ip_len(),
        false,
    );
    rewrite_source(packet, conn.addr(), conn.port_wire());
    forward::route(ctx, packet)
}

/// Client to real server: DNAT, then route.
#[inline(always)]
pub fn inbound(ctx: &XdpContext, packet: &Packet, conn: &Conn) -> Result<Verdict, Verdict> {
    rewrite_destination(packet, conn.addr(), conn.port_wire());
    forward::route(ctx, packet)
}

/// DNAT: destination address and port become the real server's.
#[inline(always)]
pub fn rewrite_destination(packet: &Packet, addr: [u8; 4], port: [u8; 2]) {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let old_addr = ip.dst;
    let old_port = ports.dst;
    ip.dst = addr;
    ports.dst = port;
    patch_checksums(packet, old_addr, addr, old_port, port);
}

/// SNAT: source address and port become the virtual service's.
#[inline(always)]
pub fn rewrite_source(packet: &Packet, addr: [u8; 4], port: [u8; 2]) {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let old_addr = ip.src;
    let old_port = ports.src;
    ip.src = addr;
    ports.src = port;
    patch_checksums(packet, old_addr, addr, old_port, port);
}

#[inline(always)]
fn patch_checksums(
    packet: &Packet,
    old_addr: [u8; 4],
    addr: [u8; 4],
    old_port: [u8; 2],
    port: [u8; 2],
) {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, l4_check) = unsafe { (&mut *packet.ip, &mut *packet.l4_check) };
    ip.check = checksum::replace_addr(u16::from_be_bytes(ip.check), old_addr, addr).to_be_bytes();
    let original = u16::from_be_bytes(*l4_check);
    // The transport checksum covers the pseudo-header's addresses and the port.
    let mut patched = checksum::replace_addr(original, old_addr, addr);
    patched = checksum::replace_u16(
        patched,
        u16::from_be_bytes(old_port),
        u16::from_be_bytes(port),
    );
    if packet.proto == IPPROTO_UDP {
        patched = checksum::udp_fixup(original, patched);
    }
    *l4_check = patched.to_be_bytes();
}
