//! `lvs_neigh`, tc ingress: finishes frames the director could not address
//! because the next hop's MAC was unknown (see `Frame::to_neighbour`). It
//! only acts on packets the director noted in `NEIGH_NOTES` (IPv6:
//! `NEIGH_NOTES6`), each once.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, helpers::bpf_redirect_neigh, programs::TcContext};
use core::mem::size_of;
use lvs_common::NEIGH_NOTE_TTL_NS;

use crate::{
    family::{Family, V4, V6},
    headers::{ptr_at, ETH_P_IPV6},
    stats,
};

#[inline(always)]
pub fn finish(ctx: &TcContext) -> i32 {
    let ipv6 = ptr_at::<[u8; 2]>(ctx, 12).is_ok_and(|ethertype| {
        // SAFETY: bounds-checked by ptr_at.
        unsafe { *ethertype == ETH_P_IPV6 }
    });
    if ipv6 {
        finish_family::<V6>(ctx)
    } else {
        finish_family::<V4>(ctx)
    }
}

#[inline(always)]
fn finish_family<P: Family>(ctx: &TcContext) -> i32 {
    let Some(key) = P::neigh_key(ctx.data(), ctx.data_end()) else {
        return TC_ACT_UNSPEC;
    };
    let notes = P::neigh_notes();
    // SAFETY: the value is copied out before the entry is removed.
    let Some(note) = (unsafe { notes.get(key) }).copied() else {
        return TC_ACT_UNSPEC;
    };
    let _ = notes.remove(key);
    if stats::now().saturating_sub(note.noted_ns) > NEIGH_NOTE_TTL_NS {
        return TC_ACT_UNSPEC;
    }
    let mut params = P::redirect_neighbour(note.next_hop);
    // SAFETY: params is a valid bpf_redir_neigh of the size passed.
    unsafe {
        bpf_redirect_neigh(
            note.ifindex,
            &mut params,
            size_of::<aya_ebpf::bindings::bpf_redir_neigh>() as i32,
            0,
        ) as i32
    }
}
