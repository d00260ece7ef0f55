//! The director's XDP programs.
//!
//! `lvs_director` is the datapath: one entry point, one place (`verdict`)
//! that turns every outcome into an XDP action. Each packet path lives in its
//! own module: `nat_in` (client to real server), `nat_out` (real server back
//! to client), `schedule` (first packet of a flow), `forward` (egress choice).
//! `lvs_pass` is the no-op program: veth peers in tests and the bench floor.
#![no_std]
#![no_main]
// The BPF target has no core atomics; the cursor uses the intrinsic.
#![feature(core_intrinsics)]
#![allow(internal_features)]

mod forward;
mod headers;
mod maps;
mod nat;
mod schedule;
mod stats;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use lvs_common::Verdict;

#[xdp]
pub fn lvs_director(ctx: XdpContext) -> u32 {
    let verdict = match director(&ctx) {
        Ok(v) | Err(v) => v,
    };
    stats::count_verdict(verdict);
    action(verdict)
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
        Verdict::DropNoDestination | Verdict::DropTableFull => xdp_action::XDP_DROP,
        Verdict::PassNotIpv4
        | Verdict::PassNoService
        | Verdict::PassNotSyn
        | Verdict::PassUnsupported
        | Verdict::PassMalformed
        | Verdict::PassToKernel => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn director(ctx: &XdpContext) -> Result<Verdict, Verdict> {
    let packet = headers::Packet::parse(ctx)?;
    let flow = packet.flow_key();
    if let Some(conn) = maps::CONNS.get_ptr_mut(flow) {
        // SAFETY: the pointer comes from a successful map lookup.
        let conn = unsafe { &mut *conn };
        conn.last_seen_ns = stats::now();
        return nat::rewrite_tracked(ctx, &packet, conn);
    }
    schedule::new_flow(ctx, &packet, &flow)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
