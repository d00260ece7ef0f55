//! First packet of a flow: find its service, take the scheduler's
//! published pick (through a persistence template if the service has one),
//! record the connection (both directions for NAT), then hand the packet to
//! its method's path.

use lvs_common::{
    service_flags, Conn, ConnState, Direction, FlowKey, Method, Service, ServiceKey, Verdict,
};

use crate::{
    conntrack, events,
    family::Family,
    headers::Packet,
    liveness,
    maps::SETTINGS,
    persist, publication,
    stats::{self, Way},
};

/// The exact `<proto, vaddr, vport>` service, else the VIP's port-0
/// (persistent, any port) service, as IPVS looks them up. The flag says
/// whether the port-0 one matched.
#[inline(always)]
fn find_service<P: Family>(
    flow: &FlowKey<P::Addr>,
    proto: u8,
) -> Result<(Service<P::Addr>, bool), Verdict> {
    let services = P::services();
    let exact = ServiceKey::from_wire(flow.dst(), flow.dport().to_be_bytes(), proto);
    // SAFETY (both): the value is copied out before any map update.
    if let Some(service) = unsafe { services.get(exact) } {
        return Ok((*service, false));
    }
    let any_port = ServiceKey::from_wire(flow.dst(), [0; 2], proto);
    let service = unsafe { services.get(any_port) }.ok_or(Verdict::PassNoService)?;
    Ok((*service, true))
}

/// Whether the service `flow` is for keeps clients with persistence
/// templates (its connections are then theirs, as IPVS's controlled ones).
#[inline(always)]
pub fn persistent<P: Family>(flow: &FlowKey<P::Addr>) -> bool {
    find_service::<P>(flow, flow.proto())
        .is_ok_and(|(service, _)| service.flags & service_flags::PERSISTENT != 0)
}

/// `bpf_map_update_elem`'s flag, and the error that says the key is taken.
const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

/// The new flow's inbound entry, recorded (with its NAT reply entry) and
/// counted; the caller sends the packet on.
#[inline(always)]
pub fn new_flow<P: Family>(
    packet: &Packet<P>,
    flow: &FlowKey<P::Addr>,
    now: u64,
) -> Result<Conn<P::Addr>, Verdict> {
    let (mut inbound, one_entry) = decide(packet, flow, now)?;
    let half_open = if inbound.state == ConnState::SynRecv as u8 {
        conntrack::take_half_open_slot::<P>()
    } else {
        None
    };
    if let Some(index) = half_open {
        inbound.half_open_slot = index + 1;
    }
    let conns = P::conns();
    match conns.insert(flow, inbound, BPF_NOEXIST) {
        Ok(()) => {}
        Err(e) if e == -EEXIST => return Err(Verdict::DropConcurrentNewFlow),
        Err(_) => return Err(Verdict::DropTableFull),
    }
    conntrack::count(&inbound);
    if inbound.method == Method::Nat as u8 && !one_entry {
        let outbound = Conn::new(
            flow.dst(),
            flow.dport().to_be_bytes(),
            Direction::Outbound,
            inbound.method,
            inbound.service_index,
            inbound.real_index,
            now,
        );
        if conns.insert(flow.nat_reply(&inbound), outbound, 0).is_err() {
            // No half connections: the inbound entry goes too.
            if conns.remove(flow).is_ok() {
                conntrack::uncount(&inbound);
            }
            return Err(Verdict::DropTableFull);
        }
    }
    if let Some(index) = half_open {
        conntrack::hold_half_open_slot::<P>(index, flow);
    }
    events::conn_changed::<P>(flow, &inbound);

    stats::count_packet(
        inbound.service_index,
        inbound.real_index,
        Way::In,
        packet.ip_len(),
        true,
    );
    Ok(inbound)
}

/// Everything about a new flow before it is recorded: its service, the
/// scheduler's pick, the entry it gets, and whether a NAT flow's replies
/// find it without a reply entry of their own (`Real::ONE_ENTRY`).
#[inline(always)]
fn decide<P: Family>(
    packet: &Packet<P>,
    flow: &FlowKey<P::Addr>,
    now: u64,
) -> Result<(Conn<P::Addr>, bool), Verdict> {
    let (service, any_port) = find_service::<P>(flow, packet.proto)?;
    let sloppy = SETTINGS.get(0).is_some_and(|s| s.sloppy_tcp());
    if !packet.may_schedule(sloppy) {
        return Err(Verdict::PassNotSyn);
    }
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    if liveness::controller_gone(now) {
        return Err(Verdict::DropNoController);
    }
    let real_index = if service.has(service_flags::PERSISTENT) {
        persist::choose::<P>(&service, flow, now)?
    } else {
        publication::choose::<P>(&service, flow, now)?
    };
    let real = *P::reals()
        .get(real_index)
        .ok_or(Verdict::DropNoDestination)?;
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
    Ok((inbound, real.keeps_one_entry()))
}
