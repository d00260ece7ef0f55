//! First packet of a flow: take the scheduler's published pick, record the
//! connection (both directions for NAT), then hand the packet to its
//! method's path.
//!
//! No algorithm runs here. The controller publishes the upcoming picks as a
//! ring; the datapath claims the next slot with one atomic add.

use aya_ebpf::programs::XdpContext;
use core::intrinsics::{atomic_xadd, AtomicOrdering};
use lvs_common::{Conn, Direction, FlowKey, Method, ServiceKey, Verdict};

use crate::{
    conntrack,
    headers::Packet,
    maps::{CONNS, CURSORS, REALS, RINGS, SERVICES},
    stats::{self, Way},
    to_real_server,
};

#[inline(always)]
pub fn new_flow(
    ctx: &XdpContext,
    packet: &Packet,
    flow: &FlowKey,
    now: u64,
) -> Result<Verdict, Verdict> {
    let service_key = ServiceKey::from_wire(flow.dst(), flow.dport().to_be_bytes(), packet.proto);
    // SAFETY: the value is copied out before any map update.
    let service = *unsafe { SERVICES.get(service_key) }.ok_or(Verdict::PassNoService)?;
    if !packet.may_schedule() {
        return Err(Verdict::PassNotSyn);
    }
    if service.ring_len == 0 {
        return Err(Verdict::DropNoDestination);
    }
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    let cursor = CURSORS
        .get_ptr_mut(service.index)
        .ok_or(Verdict::DropNoDestination)?;
    // SeqCst, not Relaxed: for a relaxed add LLVM 22's BPF backend emits a
    // plain locked add and the fetched ticket is lost (every flow got slot 1).
    // SAFETY: a 4-byte aligned u32 slot in an array map, live for the run.
    let ticket = unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(cursor, 1) };
    let slot = service.ring_base + ticket.wrapping_sub(service.cursor_origin) % service.ring_len;
    let real_index = *RINGS.get(slot).ok_or(Verdict::DropNoDestination)?;
    let real = *REALS.get(real_index).ok_or(Verdict::DropNoDestination)?;

    let mut inbound = Conn::new(
        real.addr(),
        real.port_wire(),
        Direction::Inbound,
        real.method,
        service.index,
        real_index,
        now,
    );
    inbound.state =
        conntrack::next_state(packet, conntrack::input_table(real.method), inbound.state);
    CONNS
        .insert(flow, inbound, 0)
        .map_err(|_| Verdict::DropTableFull)?;
    if real.method == Method::Nat as u8 {
        let reply = FlowKey::from_wire(
            real.addr(),
            flow.src(),
            real.port_wire(),
            flow.sport().to_be_bytes(),
            packet.proto,
        );
        let outbound = Conn::new(
            flow.dst(),
            flow.dport().to_be_bytes(),
            Direction::Outbound,
            real.method,
            service.index,
            real_index,
            now,
        );
        CONNS
            .insert(reply, outbound, 0)
            .map_err(|_| Verdict::DropTableFull)?;
    }

    stats::count_packet(service.index, real_index, Way::In, packet.ip_len(), true);
    to_real_server(ctx, packet, &inbound)
}
