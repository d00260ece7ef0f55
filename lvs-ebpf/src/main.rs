//! The XDP and tc programs.
//!
//! `lvs_director` is the datapath: one entry point, one place (`action`)
//! that turns every outcome into an XDP action. Each packet path lives in its
//! own module: `schedule` (first packet of a flow) with `publication` (the
//! scheduler's ring, buckets or locality entry), `persist` (templates) and
//! `events` (notices to the controller), `nat` (DNAT in, SNAT
//! out), `direct` (DR), `tunnel` (IP-in-IP) with `icmp` (too big to tunnel),
//! `forward` (egress choice) and `conntrack` (IPVS states and expiry).
//! `lvs_neigh` (tc) finishes DR frames whose next hop was unresolved.
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
mod headers;
mod icmp;
mod maps;
mod nat;
mod neigh;
mod persist;
mod publication;
mod schedule;
mod stats;
mod tunnel;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use lvs_common::{Conn, Direction, Method, Verdict};

use crate::stats::Way;

#[xdp]
pub fn lvs_director(ctx: XdpContext) -> u32 {
    let verdict = match director(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
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

/// The single mapping from a verdict to what happens to the frame.
#[inline(always)]
fn action(verdict: Verdict) -> u32 {
    match verdict {
        Verdict::Redirect => xdp_action::XDP_REDIRECT,
        Verdict::Transmit | Verdict::IcmpTooBig => xdp_action::XDP_TX,
        Verdict::DropNoDestination | Verdict::DropTableFull | Verdict::DropTooBig => {
            xdp_action::XDP_DROP
        }
        Verdict::PassNotIpv4
        | Verdict::PassNoService
        | Verdict::PassNotSyn
        | Verdict::PassUnsupported
        | Verdict::PassMalformed
        | Verdict::PassToKernel
        | Verdict::PassResolveNeighbour => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn director(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::parse(ctx)?;
    let flow = packet.flow_key();
    let now = stats::now();
    if let Some(conn) = maps::CONNS.get_ptr_mut(flow) {
        // SAFETY: the pointer comes from a successful map lookup.
        let conn = unsafe { &mut *conn };
        if conn.direction == Direction::Outbound as u8 {
            return nat::outbound(ctx, &packet, conn, now);
        }
        if !conntrack::expired(conn, now) {
            if packet.ttl_expiring() {
                return Err(Verdict::PassToKernel);
            }
            conntrack::update(conn, &packet, conntrack::input_table(conn.method), now);
            let bytes = packet.ip_len();
            stats::count_packet(conn.service_index, conn.real_index, Way::In, bytes, false);
            return to_real_server(ctx, &packet, conn);
        }
        // Expired: IPVS would have freed it, so the packet starts a new flow.
    }
    schedule::new_flow(ctx, &packet, &flow, now)
}

/// A client packet of a live connection, on its connection's method.
#[inline(always)]
fn to_real_server(
    ctx: &XdpContext,
    packet: &headers::Packet,
    conn: &Conn,
) -> Result<Verdict, Verdict> {
    match Method::from_u8(conn.method) {
        Some(Method::Nat) => nat::inbound(ctx, packet, conn),
        Some(Method::Route) => direct::forward(ctx, packet, conn.addr()),
        Some(Method::Tunnel) => tunnel::forward(ctx, packet, conn.addr()),
        None => Err(Verdict::DropNoDestination),
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
