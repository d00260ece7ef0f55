//! NAT rewrites: DNAT towards the real server, SNAT back to the VIP.
//!
//! A connection to a server marked `Real::ONE_ENTRY` has only its inbound
//! entry: a reply (`reply_flow`, real server to client) finds it as the
//! inbound entry one of the server's `REPLY_SERVICES` would have made.
//! Others also have a reply entry keyed by the reply's 5-tuple.

use lvs_common::{
    addr::Addr, checksum::Delta, tcp_state::Table, Conn, Direction, FlowKey, Method, ReplyKey,
    Verdict, REPLY_CANDIDATES,
};

use crate::{
    conntrack,
    decision::Decision,
    family::{Family, IpHeader},
    forward,
    frame::{Frame, L4Patch},
    headers::Packet,
    stats::{self, Way},
};

/// An inbound entry of the connection table: its key and its value.
type InboundEntry<A> = (FlowKey<A>, *mut Conn<A>);

/// The inbound entry (key and entry) of the one-entry NAT connection
/// `reply_flow` belongs to, if any. Not inlined: its own stack frame keeps
/// the director's within the limit.
#[inline(never)]
pub fn one_entry_of<P: Family>(reply_flow: &FlowKey<P::Addr>) -> Option<InboundEntry<P::Addr>> {
    let services = P::reply_services().get_ptr(ReplyKey::of_reply(reply_flow))?;
    for i in 0..REPLY_CANDIDATES {
        // SAFETY: a live map value; each place is read once.
        let service = unsafe { (*services).services[i] };
        if service.is_unused() {
            break;
        }
        let key = reply_flow.nat_inbound_from(service.addr, service.port);
        if let Some(entry) = P::conns().get_ptr_mut(key) {
            // SAFETY: the pointer comes from a successful map lookup.
            let conn = unsafe { &*entry };
            if conn.direction == Direction::Inbound as u8
                && conn.method == Method::Nat as u8
                && conn.addr() == reply_flow.src()
                && conn.port() == reply_flow.sport()
            {
                return Some((key, entry));
            }
        }
    }
    None
}

/// A reply from the real server of the connection whose inbound entry is
/// `inbound` (key `key`): to be SNATed back to the VIP. It moves the flow's
/// state through the OUTPUT table, unless the connection has expired: a
/// late reply does not bring it back.
#[inline(always)]
pub fn outbound<P: Family>(
    packet: &Packet<P>,
    key: &FlowKey<P::Addr>,
    inbound: *mut Conn<P::Addr>,
    now: u64,
) -> Result<Decision<P::Addr>, Verdict> {
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    // SAFETY: a live map value; `update` moves its state atomically.
    let (expired, service_index, real_index) = unsafe {
        let conn = &*inbound;
        (
            conntrack::expired(conn, now),
            conn.service_index,
            conn.real_index,
        )
    };
    if !expired {
        conntrack::update(key, inbound, packet, Table::Output, now);
    }
    stats::count_packet(service_index, real_index, Way::Out, packet.ip_len(), false);
    Ok(Decision::to_client(key.dst(), key.dport().to_be_bytes()))
}

/// SNAT to the virtual service (`vip`, `vport`) and on to the client. A
/// reply too big for the way with DF set goes to the kernel as the real
/// server sent it, whose forwarding then tells the real server (quoting
/// what it sent), as it does before IPVS translates.
#[inline(always)]
pub fn to_client<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    vip: P::Addr,
    vport: [u8; 2],
) -> Result<Verdict, Verdict> {
    // SAFETY: pointers validated by Packet::parse.
    let (addr, port) = unsafe { ((*packet.ip).src(), (*packet.ports).src) };
    let found = forward::way_to_client(frame, packet);
    let patch = rewrite_source(packet, vip, vport);
    match forward::route(frame, packet, patch, found) {
        // Too big with DF: not patched (`forward::route`), so the packet's
        // pointers still hold on tc.
        Err(Verdict::DropTooBig) => {
            rewrite_source(packet, addr, port);
            Err(Verdict::PassTooBig)
        }
        sent => sent,
    }
}

/// A reply through its own entry, `reply` (a connection with two). Its
/// inbound entry, if still there, holds the state; without it the reply is
/// still rewritten, until the sweeper removes its entry.
#[inline(always)]
pub fn reply<P: Family>(
    packet: &Packet<P>,
    flow: &FlowKey<P::Addr>,
    reply: &mut Conn<P::Addr>,
    now: u64,
) -> Result<Decision<P::Addr>, Verdict> {
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    reply.last_seen_ns = now;
    let key = flow.nat_inbound(reply);
    if let Some(inbound) = P::conns().get_ptr_mut(key) {
        return outbound(packet, &key, inbound, now);
    }
    stats::count_packet(
        reply.service_index,
        reply.real_index,
        Way::Out,
        packet.ip_len(),
        false,
    );
    Ok(Decision::to_client(reply.addr(), reply.port_wire()))
}

/// Client to real server (the way there `found`): DNAT, then route. A packet too big for the way
/// with DF set is dropped and counted (`drop_too_big`): the kernel's
/// answer would quote the rewritten packet, which the client cannot match.
#[inline(always)]
pub fn inbound<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    to: &Decision<P::Addr>,
    found: forward::Lookup<P::Addr>,
) -> Result<Verdict, Verdict> {
    let patch = rewrite_destination(packet, to.addr, to.port);
    forward::route(frame, packet, patch, found)
}

/// DNAT: destination address and port become the real server's. The IP
/// checksum is patched here; the transport checksum's change is returned.
#[inline(always)]
pub fn rewrite_destination<P: Family>(packet: &Packet<P>, addr: P::Addr, port: [u8; 2]) -> L4Patch {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let (old_addr, old_port) = (ip.dst(), ports.dst);
    ip.set_dst(addr);
    ports.dst = port;
    patch(packet, old_addr, addr, old_port, port)
}

/// SNAT: source address and port become the virtual service's.
#[inline(always)]
pub fn rewrite_source<P: Family>(packet: &Packet<P>, addr: P::Addr, port: [u8; 2]) -> L4Patch {
    // SAFETY: pointers validated by Packet::parse.
    let (ip, ports) = unsafe { (&mut *packet.ip, &mut *packet.ports) };
    let (old_addr, old_port) = (ip.src(), ports.src);
    ip.set_src(addr);
    ports.src = port;
    patch(packet, old_addr, addr, old_port, port)
}

#[inline(always)]
fn patch<P: Family>(
    packet: &Packet<P>,
    old_addr: P::Addr,
    addr: P::Addr,
    old_port: [u8; 2],
    port: [u8; 2],
) -> L4Patch {
    let address = old_addr.delta(&addr);
    // SAFETY: pointer validated by Packet::parse.
    let ip = unsafe { &mut *packet.ip };
    ip.patch_check(address);
    // The transport checksum covers the pseudo-header's addresses and the port.
    let ports = Delta::NONE.word(u16::from_be_bytes(old_port), u16::from_be_bytes(port));
    packet.l4_patch(address, ports)
}
