//! First packet of a flow: find its service, take the scheduler's
//! published pick (through a persistence template if the service has one),
//! record the connection (both directions for NAT), then hand the packet to
//! its method's path.

use lvs_common::{service_flags, Conn, Direction, FlowKey, Method, Service, ServiceKey, Verdict};

use crate::{
    conntrack, events,
    frame::Frame,
    headers::Packet,
    liveness,
    maps::{CONNS, REALS, SERVICES},
    persist, publication,
    stats::{self, Way},
    to_real_server,
};

/// The exact `<proto, vaddr, vport>` service, else the VIP's port-0
/// (persistent, any port) service, as IPVS looks them up. The flag says
/// whether the port-0 one matched.
#[inline(always)]
fn find_service(flow: &FlowKey, proto: u8) -> Result<(Service, bool), Verdict> {
    let exact = ServiceKey::from_wire(flow.dst(), flow.dport().to_be_bytes(), proto);
    // SAFETY (both): the value is copied out before any map update.
    if let Some(service) = unsafe { SERVICES.get(exact) } {
        return Ok((*service, false));
    }
    let any_port = ServiceKey::from_wire(flow.dst(), [0; 2], proto);
    let service = unsafe { SERVICES.get(any_port) }.ok_or(Verdict::PassNoService)?;
    Ok((*service, true))
}

#[inline(always)]
pub fn new_flow<F: Frame>(
    frame: &F,
    packet: &Packet,
    flow: &FlowKey,
    now: u64,
) -> Result<Verdict, Verdict> {
    let (service, any_port) = find_service(flow, packet.proto)?;
    if !packet.may_schedule() {
        return Err(Verdict::PassNotSyn);
    }
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    if liveness::controller_gone(now) {
        return Err(Verdict::DropNoController);
    }
    let real_index = if service.has(service_flags::PERSISTENT) {
        persist::choose(&service, flow, now)?
    } else {
        publication::choose(&service, flow, now)?
    };
    let real = *REALS.get(real_index).ok_or(Verdict::DropNoDestination)?;
    // A port-0 service keeps the port the client asked for (§4.1 step 5).
    let port = if any_port {
        flow.dport().to_be_bytes()
    } else {
        real.port_wire()
    };

    let method = real.conn_method();
    let mut inbound = Conn::new(
        real.addr(),
        port,
        Direction::Inbound,
        method,
        service.index,
        real_index,
        now,
    );
    inbound.state = conntrack::next_state(packet, conntrack::input_table(method), inbound.state);
    CONNS
        .insert(flow, inbound, 0)
        .map_err(|_| Verdict::DropTableFull)?;
    events::new_flow(flow, &inbound);
    if method == Method::Nat as u8 {
        let reply = FlowKey::from_wire(
            real.addr(),
            flow.src(),
            port,
            flow.sport().to_be_bytes(),
            packet.proto,
        );
        let outbound = Conn::new(
            flow.dst(),
            flow.dport().to_be_bytes(),
            Direction::Outbound,
            method,
            service.index,
            real_index,
            now,
        );
        CONNS
            .insert(reply, outbound, 0)
            .map_err(|_| Verdict::DropTableFull)?;
    }

    stats::count_packet(service.index, real_index, Way::In, packet.ip_len(), true);
    to_real_server(frame, packet, &inbound)
}
