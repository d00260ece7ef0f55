//! Egress: FIB lookup for the rewritten destination, then a devmap redirect.
//! Anything the FIB cannot finish (unresolved neighbour, an interface we do
//! not own) goes to the kernel, which knows how to finish it.

use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::bpf_fib_lookup,
    programs::XdpContext,
};
use core::mem::{size_of, MaybeUninit};
use lvs_common::{checksum, Verdict};

use crate::{headers::Packet, maps::EGRESS};

const AF_INET: u8 = 2;

/// Callers have checked `Packet::ttl_expiring` before rewriting anything.
#[inline(always)]
pub fn route(ctx: &XdpContext, packet: &Packet) -> Result<Verdict, Verdict> {
    // SAFETY: pointers validated by Packet::parse.
    let ip = unsafe { &mut *packet.ip };
    // SAFETY: every field the helper reads is set below; the rest is zeroed.
    let mut fib: FibParams = unsafe { MaybeUninit::zeroed().assume_init() };
    fib.family = AF_INET;
    fib.l4_protocol = packet.proto;
    // SAFETY: pointers validated by Packet::parse.
    let ports = unsafe { &*packet.ports };
    fib.sport = u16::from_ne_bytes(ports.src);
    fib.dport = u16::from_ne_bytes(ports.dst);
    fib.__bindgen_anon_1.tot_len = u16::from_be_bytes(ip.total_len);
    fib.ifindex = ctx.ingress_ifindex() as u32;
    fib.__bindgen_anon_2.tos = ip.tos;
    fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(ip.src);
    fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(ip.dst);

    // SAFETY: fib is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib as *mut _ as *mut _,
            size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return Err(Verdict::PassToKernel);
    }
    // Commit to the redirect first: only then is the frame ours to finish.
    EGRESS
        .redirect(fib.ifindex, 0)
        .map_err(|_| Verdict::PassToKernel)?;
    // SAFETY: pointers validated by Packet::parse.
    let eth = unsafe { &mut *packet.eth };
    eth.dst = fib.dmac;
    eth.src = fib.smac;
    let old = u16::from_be_bytes([ip.ttl, ip.proto]);
    ip.ttl -= 1;
    let new = u16::from_be_bytes([ip.ttl, ip.proto]);
    ip.check = checksum::replace_u16(u16::from_be_bytes(ip.check), old, new).to_be_bytes();
    Ok(Verdict::Redirect)
}
