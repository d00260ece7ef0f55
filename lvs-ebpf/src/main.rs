//! The XDP and tc programs.
//!
//! The director is one packet path (`director`) with two entry points:
//! `lvs_director` (XDP, where the driver completes XDP_TX and redirects)
//! and `lvs_director_tc` (tc ingress, on veth and other virtual devices; see
//! `frame`). Each has one place that turns every verdict into its action.
//! The path is generic over the address family (`family`): an IPv6 frame
//! goes on by a tail call in `lvs_director6` (`lvs_director6_tc`), the same
//! path for `V6`.
//! The path, in the order a packet meets it: `headers` (parse),
//! `relevance` (not for any service: pass at once), a NAT server's reply
//! found through its services (`nat`), the connection table with
//! `conntrack` (IPVS states and expiry), `schedule`
//! (first packet of a flow) with `publication` (the scheduler's ring,
//! buckets or locality entry), `persist` (templates) and `events` (notices
//! to the controller), then the method: `nat` (DNAT in, SNAT out), `direct`
//! (DR), `tunnel` (IP-in-IP) with `icmp` (too big to tunnel), or the local
//! stack for a real server that is this director; `icmp_error` takes an
//! ICMP error to the host that owns the connection it quotes; `forward` chooses the way
//! out. `liveness`: a router of a pair whose lvsd died takes no new
//! connections and gives up ARP for the floating addresses. `lvs_neigh` (tc) finishes XDP frames whose next hop was unresolved.
//! `lvs_decap` runs on real servers; `lvs_pass` is the no-op program, for
//! veth peers and the bench floor; `bench` holds the bench's generator,
//! sink and bare-redirect ceiling.
#![no_std]
#![no_main]
// The BPF target has no core atomics; the cursor uses the intrinsic.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod bench;
mod conntrack;
mod decap;
mod decision;
mod direct;
mod events;
mod family;
mod forward;
mod frame;
mod headers;
mod icmp;
mod icmp_error;
mod liveness;
mod maps;
mod nat;
mod neigh;
mod persist;
mod publication;
mod relevance;
mod schedule;
mod stats;
mod tunnel;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_REDIRECT, TC_ACT_SHOT, TC_ACT_UNSPEC},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lvs_common::{Conn, Direction, FlowKey, Method, Verdict};

use crate::{
    decision::{Decision, Stage},
    family::{Family, V4, V6},
    frame::Frame,
    stats::Way,
};

#[xdp]
// Inlined into the entry point the macro makes: as a BPF subprogram, the
// kernel refuses its packet-resizing helpers.
#[inline(always)]
pub fn lvs_director(ctx: XdpContext) -> u32 {
    let verdict = match director::<_, V4>(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
}

#[classifier]
#[inline(always)]
pub fn lvs_director_tc(ctx: TcContext) -> i32 {
    // Headers may start outside the linear part of a socket buffer.
    let wanted = headers::wanted_linear(&ctx);
    if ctx.data() + wanted > ctx.data_end() {
        let _ = ctx.pull_data(ctx.len().min(wanted as u32));
    }
    let verdict = match director::<_, V4>(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    tc_action(verdict)
}

/// The IPv6 path's stages (`decision`), programs the director tail-calls
/// (and the stage that tunnels an IPv4 packet in IPv6: its path for `V4`).
/// A stage that hands the packet on counts no verdict: the last one does.
macro_rules! ipv6_stage {
    ($xdp:ident, $tc:ident, $path:ident) => {
        ipv6_stage!($xdp, $tc, $path, V6);
    };
    ($xdp:ident, $tc:ident, $path:ident, $family:ident) => {
        #[xdp]
        #[inline(always)]
        pub fn $xdp(ctx: XdpContext) -> u32 {
            let verdict = match $path::<_, $family>(&ctx) {
                Ok(v) | Err(v) => v,
            };
            stats::count_verdict(verdict);
            action(verdict)
        }

        #[classifier]
        #[inline(always)]
        pub fn $tc(ctx: TcContext) -> i32 {
            let verdict = match $path::<_, $family>(&ctx) {
                Ok(v) | Err(v) => v,
            };
            stats::count_verdict(verdict);
            tc_action(verdict)
        }
    };
}
ipv6_stage!(lvs_director6, lvs_director6_tc, director);
ipv6_stage!(lvs_new_flow6, lvs_new_flow6_tc, new_flow_stage);
ipv6_stage!(lvs_send6, lvs_send6_tc, to_real_stage);
ipv6_stage!(lvs_reply6, lvs_reply6_tc, to_client_stage);
ipv6_stage!(lvs_tunnel6, lvs_tunnel6_tc, tunnel_stage);
ipv6_stage!(lvs_icmp_error6, lvs_icmp_error6_tc, icmp_error_stage);
ipv6_stage!(
    lvs_icmp_translate6,
    lvs_icmp_translate6_tc,
    icmp_translate_stage
);
ipv6_stage!(lvs_tunnel46, lvs_tunnel46_tc, across_stage, V4);
ipv6_stage!(lvs_tunnel64, lvs_tunnel64_tc, across_stage, V6);

/// IPv6, a DR or TUN packet too big for the way out (XDP only).
#[xdp]
#[inline(always)]
pub fn lvs_too_big6(ctx: XdpContext) -> u32 {
    let verdict = match too_big_stage(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
}

#[inline(always)]
fn too_big_stage(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<V6>::parse(ctx)?;
    let decision = V6::kept().ok_or(Verdict::DropTooBig)?;
    icmp::packet_too_big(ctx, &packet, decision.mtu)
}

/// ICMP, from the director by a tail call: errors go to the host that owns
/// the connection they quote (`icmp_error`).
#[xdp]
#[inline(always)]
pub fn lvs_icmp_error(ctx: XdpContext) -> u32 {
    let verdict = match icmp_error::to_owner::<_, V4>(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
}

#[classifier]
#[inline(always)]
pub fn lvs_icmp_error_tc(ctx: TcContext) -> i32 {
    let verdict = match icmp_error::to_owner::<_, V4>(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    tc_action(verdict)
}

#[xdp]
pub fn lvs_decap(ctx: XdpContext) -> u32 {
    stats::count_decap(decap::decapsulate(&ctx));
    // Decapsulated or not, the stack takes it from here.
    xdp_action::XDP_PASS
}

#[classifier]
pub fn lvs_neigh(ctx: TcContext) -> i32 {
    neigh::finish(&ctx)
}

#[xdp]
pub fn lvs_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The single mapping from a verdict to what happens to an XDP frame.
#[inline(always)]
fn action(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Redirect => xdp_action::XDP_REDIRECT,
        Verdict::Transmit | Verdict::IcmpTooBig => xdp_action::XDP_TX,
        Verdict::DropNoDestination
        | Verdict::DropTableFull
        | Verdict::DropTooBig
        | Verdict::DropForwardingDisabled
        | Verdict::DropNoRoute
        | Verdict::DropNoController
        | Verdict::DropArpNoController
        | Verdict::DropConcurrentNewFlow => xdp_action::XDP_DROP,
        Verdict::PassNotIpv4
        | Verdict::PassNoService
        | Verdict::PassNotSyn
        | Verdict::PassUnsupported
        | Verdict::PassMalformed
        | Verdict::PassToKernel
        | Verdict::PassNoRoute
        | Verdict::PassTooBig
        | Verdict::PassLocal
        // lvs_neigh, on tc ingress, takes it from there.
        | Verdict::PassResolveNeighbour => xdp_action::XDP_PASS,
    }
}

/// The single mapping from a verdict to what happens to a socket buffer.
/// Whatever leaves was handed to `bpf_redirect` or `bpf_redirect_neigh`.
#[inline(always)]
fn tc_action(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Redirect | Verdict::Transmit | Verdict::PassResolveNeighbour => {
            TC_ACT_REDIRECT
        }
        Verdict::DropNoDestination
        | Verdict::DropTableFull
        | Verdict::DropTooBig
        | Verdict::DropForwardingDisabled
        | Verdict::DropNoRoute
        | Verdict::DropNoController
        | Verdict::DropArpNoController
        | Verdict::DropConcurrentNewFlow
        // Never built on this path (`Frame::too_big`).
        | Verdict::IcmpTooBig => TC_ACT_SHOT,
        // On to the next tc program, if any, then the stack.
        Verdict::PassNotIpv4
        | Verdict::PassNoService
        | Verdict::PassNotSyn
        | Verdict::PassUnsupported
        | Verdict::PassMalformed
        | Verdict::PassToKernel
        | Verdict::PassNoRoute
        | Verdict::PassTooBig
        | Verdict::PassLocal => TC_ACT_UNSPEC,
    }
}

#[inline(always)]
fn director<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = match headers::Packet::<P>::parse(ctx) {
        Ok(packet) => packet,
        Err(Verdict::PassNotIpv4) => return liveness::not_ipv4(ctx),
        Err(verdict) => return Err(verdict),
    };
    if packet.proto == P::ICMP {
        // To the ICMP error program; back here only if it is missing (lvsd
        // gone), and then the kernel takes the packet.
        if P::STAGED {
            return next_stage(ctx, Stage::IcmpError);
        }
        ctx.to_icmp_error_program();
        return Err(Verdict::PassUnsupported);
    }
    let flow = packet.flow_key();
    // Either bit may be another address's (they are hashed): a client that
    // shares a VIP's bit still gets its replies.
    let from_nat_server = relevance::from_nat_server(&flow);
    if !from_nat_server && !relevance::to_virtual_address(&flow) {
        return Err(Verdict::PassNoService);
    }
    let now = stats::now();
    if from_nat_server {
        if let Some((key, entry)) = nat::one_entry_of::<P>(&flow) {
            let decision = nat::outbound(&packet, &key, entry, now)?;
            return send_decided(ctx, &packet, &decision);
        }
    }
    let mut live = None;
    if let Some(entry) = P::conns().get_ptr_mut(flow) {
        // SAFETY: the pointer comes from a successful map lookup.
        let conn = unsafe { &mut *entry };
        if conn.direction == Direction::Outbound as u8 {
            let decision = nat::reply(&packet, &flow, conn, now)?;
            return send_decided(ctx, &packet, &decision);
        }
        live = established(&packet, &flow, entry, now)?;
    }
    let decision = match live {
        Some(conn) => Decision::to_real(&conn),
        None if P::STAGED => return next_stage(ctx, Stage::NewFlow),
        None => Decision::to_real(&schedule::new_flow(&packet, &flow, now)?),
    };
    send_decided(ctx, &packet, &decision)
}

/// IPv6: an ICMPv6 packet; errors go to the host that owns the connection
/// they quote (`icmp_error`), and a neighbour solicitation for a floating
/// address goes unanswered while lvsd is gone (`liveness`).
#[inline(always)]
fn icmp_error_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    liveness::neighbour_solicitation(ctx)?;
    icmp_error::to_owner::<F, P>(ctx)
}

/// IPv6: an ICMPv6 error about a NAT connection, translated and sent.
#[inline(always)]
fn icmp_translate_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    icmp_error::translated::<F, P>(ctx)
}

/// A packet of family `P` on through a tunnel of the other family to its
/// real server (`tunnel::across`), whose address is the other family's
/// `REALS` entry at the index the stage before kept.
#[inline(always)]
fn across_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<P>::parse(ctx)?;
    let kept = V6::kept().ok_or(Verdict::PassUnsupported)?;
    let real = <P::Other as Family>::reals()
        .get(kept.real_index)
        .ok_or(Verdict::DropNoDestination)?;
    let to = Decision::tunnel_to(real.addr(), real.port_wire(), kept.real_index);
    let found = forward::way_to::<F, P, P::Other>(ctx, &packet, &to);
    tunnel::forward::<F, P, P::Other>(ctx, &packet, to.addr, found)
}

/// IPv6, stage two: the first packet of a flow.
#[inline(always)]
fn new_flow_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<P>::parse(ctx)?;
    let flow = packet.flow_key();
    let conn = schedule::new_flow(&packet, &flow, stats::now())?;
    send_decided(ctx, &packet, &Decision::to_real(&conn))
}

/// IPv6, the last stage: on to the real server by NAT or DR as the stage
/// before decided.
#[inline(always)]
fn to_real_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<P>::parse(ctx)?;
    let decision = P::kept().ok_or(Verdict::PassUnsupported)?;
    by_nat_or_route(ctx, &packet, &decision)
}

/// IPv6, the last stage for TUN.
#[inline(always)]
fn tunnel_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<P>::parse(ctx)?;
    let decision = P::kept().ok_or(Verdict::PassUnsupported)?;
    through_tunnel(ctx, &packet, &decision)
}

/// IPv6, the last stage for a NAT reply: back to its client.
#[inline(always)]
fn to_client_stage<F: Frame, P: Family>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::<P>::parse(ctx)?;
    let decision = P::kept().ok_or(Verdict::PassUnsupported)?;
    nat::to_client(ctx, &packet, decision.addr, decision.port)
}

/// Send now, or keep the decision for the stage that sends.
#[inline(always)]
fn send_decided<F: Frame, P: Family>(
    ctx: &F,
    packet: &headers::Packet<P>,
    decision: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    if decision.crosses_families() {
        return tunnel::across::<_, P>(ctx, decision);
    }
    if P::STAGED {
        P::keep(decision);
        return next_stage(ctx, Stage::sending(decision));
    }
    if decision.to_client != 0 {
        return nat::to_client(ctx, packet, decision.addr, decision.port);
    }
    to_real_server(ctx, packet, decision)
}

/// Go on in the IPv6 program for `stage`; back here only if lvsd's
/// program array is gone, and then the kernel takes the packet.
#[inline(always)]
fn next_stage<F: Frame>(ctx: &F, stage: Stage) -> Result<Verdict, Verdict> {
    ctx.to_ipv6_stage(stage);
    Err(Verdict::PassUnsupported)
}

/// A client's packet on its flow's inbound entry: the entry, updated by
/// it, while it lives; none if it has expired or the packet reopens it
/// (it is then freed for a new flow).
#[inline(always)]
fn established<P: Family>(
    packet: &headers::Packet<P>,
    flow: &FlowKey<P::Addr>,
    entry: *mut Conn<P::Addr>,
    now: u64,
) -> Result<Option<Conn<P::Addr>>, Verdict> {
    // SAFETY: a live map value.
    let conn = unsafe { &*entry };
    // A SYN reopening a closed connection that no template holds
    // starts a new one (IPVS's `conn_reuse_mode`), as an expired entry.
    let reopened = conntrack::reopened_by(conn, packet) && !schedule::persistent::<P>(flow);
    if !reopened && !conntrack::expired(conn, now) {
        if packet.ttl_expiring() {
            return Err(Verdict::PassToKernel);
        }
        conntrack::update(
            flow,
            entry,
            packet,
            conntrack::input_table(conn.method),
            now,
        );
        let bytes = packet.ip_len();
        stats::count_packet(conn.service_index, conn.real_index, Way::In, bytes, false);
        return Ok(Some(*conn));
    }
    // Expired or reopened: IPVS would have freed it, so the packet
    // starts a new flow in its place. (A NAT reply entry left behind is
    // the sweeper's: no inbound entry leads to it any more.)
    conntrack::free_for_new_flow::<P>(flow, entry);
    Ok(None)
}

/// A client's packet on to its real server, on the connection's method.
#[inline(always)]
fn to_real_server<F: Frame, P: Family>(
    ctx: &F,
    packet: &headers::Packet<P>,
    to: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    if to.method == Method::Tunnel as u8 {
        return through_tunnel(ctx, packet, to);
    }
    by_nat_or_route(ctx, packet, to)
}

/// NAT or DR (or the local stack, for a real server that is this director).
#[inline(always)]
fn by_nat_or_route<F: Frame, P: Family>(
    ctx: &F,
    packet: &headers::Packet<P>,
    to: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    match Method::from_u8(to.method) {
        Some(Method::Nat) => {
            let found = forward::way_to_real(ctx, packet, to);
            nat::inbound(ctx, packet, to, found)
        }
        Some(Method::Route) => {
            let found = forward::way_to_real(ctx, packet, to);
            direct::forward(ctx, packet, to.addr, found)
        }
        // This director is the real server: the stack takes the packet as
        // the client sent it (to the VIP and the service's port).
        Some(Method::Local) => Err(Verdict::PassLocal),
        _ => Err(Verdict::DropNoDestination),
    }
}

#[inline(always)]
fn through_tunnel<F: Frame, P: Family>(
    ctx: &F,
    packet: &headers::Packet<P>,
    to: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    let found = forward::way_to_real(ctx, packet, to);
    tunnel::forward::<_, P, P>(ctx, packet, to.addr, found)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
