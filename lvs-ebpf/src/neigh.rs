//! `lvs_neigh`, tc ingress: finishes DR frames the director could not address
//! because the real server's MAC was unknown (see `direct.rs`). It only acts
//! on frames that carry the director's metadata note.

use aya_ebpf::{
    bindings::{bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1, TC_ACT_UNSPEC},
    helpers::bpf_redirect_neigh,
    programs::TcContext,
};
use core::mem::size_of;
use lvs_common::NeighMeta;

const AF_INET: u32 = 2;

#[inline(always)]
pub fn finish(ctx: &TcContext) -> i32 {
    // SAFETY: the context pointer is valid for the program run.
    let skb = unsafe { &*ctx.skb.skb };
    let meta = skb.data_meta as usize;
    if meta + size_of::<NeighMeta>() > skb.data as usize {
        return TC_ACT_UNSPEC;
    }
    // SAFETY: bounds checked just above.
    let note = unsafe { *(meta as *const NeighMeta) };
    if note.magic != NeighMeta::MAGIC {
        return TC_ACT_UNSPEC;
    }
    let mut params = bpf_redir_neigh {
        nh_family: AF_INET,
        __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 {
            ipv4_nh: u32::from_ne_bytes(note.next_hop),
        },
    };
    // SAFETY: params is a valid bpf_redir_neigh of the size passed.
    unsafe {
        bpf_redirect_neigh(
            note.ifindex,
            &mut params,
            size_of::<bpf_redir_neigh>() as i32,
            0,
        ) as i32
    }
}
