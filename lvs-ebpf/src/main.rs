//! The XDP and tc programs.
//!
//! The director is one packet path (`director`) with two entry points:
//! `lvs_director` (XDP, where the driver completes XDP_TX and redirects)
//! and `lvs_director_tc` (tc ingress, on veth and other virtual devices; see
//! `frame`). Each has one place that turns every verdict into its action.
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
mod direct;
mod events;
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
use lvs_common::{Conn, Direction, Method, Verdict, IPPROTO_ICMP};

use crate::{frame::Frame, stats::Way};

#[xdp]
// Inlined into the entry point the macro makes: as a BPF subprogram, the
// kernel refuses its packet-resizing helpers.
#[inline(always)]
pub fn lvs_director(ctx: XdpContext) -> u32 {
    let verdict = match director(&ctx) {
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
    let verdict = match director(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    tc_action(verdict)
}

/// ICMP, from the director by a tail call: errors go to the host that owns
/// the connection they quote (`icmp_error`).
#[xdp]
#[inline(always)]
pub fn lvs_icmp_error(ctx: XdpContext) -> u32 {
    let verdict = match icmp_error::to_owner(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
}

#[classifier]
#[inline(always)]
pub fn lvs_icmp_error_tc(ctx: TcContext) -> i32 {
    let verdict = match icmp_error::to_owner(&ctx) {
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
fn director<F: Frame>(ctx: &F) -> Result<Verdict, Verdict> {
    let packet = match headers::Packet::parse(ctx) {
        Ok(packet) => packet,
        Err(Verdict::PassNotIpv4) => return liveness::not_ipv4(ctx),
        Err(verdict) => return Err(verdict),
    };
    if packet.proto == IPPROTO_ICMP {
        // Only returns if the program is missing (lvsd gone).
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
        if let Some((key, entry)) = nat::one_entry_of(&flow) {
            return nat::outbound(ctx, &packet, &key, entry, now);
        }
    }
    if let Some(entry) = maps::CONNS.get_ptr_mut(flow) {
        // SAFETY: the pointer comes from a successful map lookup.
        let conn = unsafe { &mut *entry };
        if conn.direction == Direction::Outbound as u8 {
            return nat::reply(ctx, &packet, &flow, conn, now);
        }
        // A SYN reopening a closed connection that no template holds
        // starts a new one (IPVS's `conn_reuse_mode`), as an expired entry.
        let reopened = conntrack::reopened_by(conn, &packet) && !schedule::persistent(&flow);
        if !reopened && !conntrack::expired(conn, now) {
            if packet.ttl_expiring() {
                return Err(Verdict::PassToKernel);
            }
            conntrack::update(
                &flow,
                entry,
                &packet,
                conntrack::input_table(conn.method),
                now,
            );
            let bytes = packet.ip_len();
            stats::count_packet(conn.service_index, conn.real_index, Way::In, bytes, false);
            return to_real_server(ctx, &packet, conn);
        }
        // Expired or reopened: IPVS would have freed it, so the packet
        // starts a new flow in its place. (A NAT reply entry left behind is
        // the sweeper's: no inbound entry leads to it any more.)
        conntrack::free_for_new_flow(&flow, entry);
    }
    schedule::new_flow(ctx, &packet, &flow, now)
}

/// A client packet of a live connection, on its connection's method.
#[inline(always)]
fn to_real_server<F: Frame>(
    ctx: &F,
    packet: &headers::Packet,
    conn: &Conn,
) -> Result<Verdict, Verdict> {
    match Method::from_u8(conn.method) {
        Some(Method::Nat) => nat::inbound(ctx, packet, conn),
        Some(Method::Route) => direct::forward(ctx, packet, conn.real_index, conn.addr()),
        Some(Method::Tunnel) => tunnel::forward(ctx, packet, conn.real_index, conn.addr()),
        // This director is the real server: the stack takes the packet as
        // the client sent it (to the VIP and the service's port).
        Some(Method::Local) => Err(Verdict::PassLocal),
        None => Err(Verdict::DropNoDestination),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
