//! NAT rewrites: DNAT towards the real server, SNAT back to the VIP.

use lvs_common::{checksum::Delta, tcp_state::Table, Conn, FlowKey, Verdict};

use crate::{
    conntrack, forward,
    frame::{Frame, L4Patch},
    headers::Packet,
    maps::CONNS,
    stats::{self, Way},
};

/// A reply from the real server: SNAT back to the VIP. The flow's state
/// lives on its inbound entry, which the reply moves through the OUTPUT table.
#[inline(always)]
pub fn outbound<F: Frame>(
    frame: &F,
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
        // A late reply does not bring a dead connection back.
        // SAFETY: the pointer comes from a successful map lookup.
        if !conntrack::expired(unsafe { &*forward }, now) {
            conntrack::update(&inbound, forward, packet, Table::Output, now);
        }
    }
    stats::count_packet(
        conn.service_index,
        conn.real_index,
        Way::Out,
        packet.ip_len(),
        false,
    );
    let patch = rewrite_source(packet, conn.addr(), conn.port_wire());
    forward::route(frame, packet, patch, None)
}

/// Client to real server: DNAT, then route.
#[inline(always)]
pub fn inbound<F: Frame>(frame: &F, packet: &Packet, conn: &Conn) -> Result<Verdict, Verdict> {
    let patch = rewrite_destination(packet, conn.addr(), conn.port_wire());
    forward::route(frame, packet, patch, Some(conn.real_index))
}

/// DNAT: destination address and port become the real server's. The IP
/// checksum is patched here; the transport checksum's change is returned.
#[inline(always)]
pub fn rewrite_destination(packet: &Packet, addr: [u8; 4], port: [u8; 2]) -> L4Patch {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let (old_addr, old_port) = (ip.dst, ports.dst);
    ip.dst = addr;
    ports.dst = port;
    patch(packet, old_addr, addr, old_port, port)
}

/// SNAT: source address and port become the virtual service's.
#[inline(always)]
pub fn rewrite_source(packet: &Packet, addr: [u8; 4], port: [u8; 2]) -> L4Patch {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let (old_addr, old_port) = (ip.src, ports.src);
    ip.src = addr;
    ports.src = port;
    patch(packet, old_addr, addr, old_port, port)
}

#[inline(always)]
fn patch(
    packet: &Packet,
    old_addr: [u8; 4],
    addr: [u8; 4],
    old_port: [u8; 2],
    port: [u8; 2],
) -> L4Patch {
    let address = Delta::NONE.addr(old_addr, addr);
    // SAFETY: pointer validated by Packet::parse.
    let ip = unsafe { &mut *packet.ip };
    ip.check = address.apply(u16::from_be_bytes(ip.check)).to_be_bytes();
    // The transport checksum covers the pseudo-header's addresses and the port.
    let ports = Delta::NONE.word(u16::from_be_bytes(old_port), u16::from_be_bytes(port));
    packet.l4_patch(address, ports)
}
