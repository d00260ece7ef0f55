//! Programs for `cargo xtask bench` only; lvsd never attaches them.
//! `lvs_bench_tx` is the frame generator (live-frames test_run transmits
//! what it returns `XDP_TX` for), `lvs_bench_drop` the real servers' sink,
//! and `lvs_bench_redirect` the ceiling: a redirect with no parsing at all.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::{Array, DevMap},
    programs::XdpContext,
};
use lvs_common::BENCH_FRAME_LEN;

/// The frame the generator sends. Live-frames test_run recycles its pages
/// without resetting them, and the director rewrites frames in place, so
/// the generator writes the whole frame again on every run.
#[map]
static BENCH_FRAME: Array<[u64; BENCH_FRAME_LEN / 8]> = Array::with_max_entries(1, 0);

/// Slot 0: the interface `lvs_bench_redirect` sends everything to.
#[map]
static BENCH_PORT: DevMap = DevMap::with_max_entries(1, 0);

#[xdp]
pub fn lvs_bench_tx(ctx: XdpContext) -> u32 {
    let (start, end) = (ctx.data(), ctx.data_end());
    let Some(template) = BENCH_FRAME.get(0) else {
        return xdp_action::XDP_ABORTED;
    };
    if start + BENCH_FRAME_LEN > end {
        return xdp_action::XDP_ABORTED;
    }
    let words = start as *mut u64;
    for (i, word) in template.iter().enumerate() {
        // SAFETY: BENCH_FRAME_LEN bytes from `start` are inside the frame
        // (checked above); XDP frame data is 8-byte aligned.
        unsafe { words.add(i).write_unaligned(*word) };
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn lvs_bench_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[xdp]
pub fn lvs_bench_redirect(_ctx: XdpContext) -> u32 {
    BENCH_PORT.redirect(0, 0).unwrap_or(xdp_action::XDP_ABORTED)
}
