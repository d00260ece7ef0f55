//! `lvs_neigh`, tc ingress: finishes frames the director could not address
//! because the next hop's MAC was unknown (see `Frame::to_neighbour`). It
//! only acts on packets the director noted in `NEIGH_NOTES`, each once.

use aya_ebpf::{
    bindings::{bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1, TC_ACT_UNSPEC},
    helpers::bpf_redirect_neigh,
    programs::TcContext,
};
use core::mem::size_of;
use lvs_common::{NeighKey, NEIGH_NOTE_TTL_NS};

use crate::{maps::NEIGH_NOTES, stats};

const AF_INET: u32 = 2;
const ETH_HEADER_LEN: usize = 14;
const IPV4_MIN_HEADER_LEN: usize = 20;

/// The note's key for the IPv4 packet behind the Ethernet header at `data`.
#[inline(always)]
pub fn key(data: usize, data_end: usize) -> Option<NeighKey> {
    let ip = data + ETH_HEADER_LEN;
    if ip + IPV4_MIN_HEADER_LEN > data_end {
        return None;
    }
    // SAFETY: the header's 20 bytes are within the packet (checked above).
    let header = unsafe { &*(ip as *const [u8; IPV4_MIN_HEADER_LEN]) };
    Some(NeighKey::of_ipv4_header(header))
}

#[inline(always)]
pub fn finish(ctx: &TcContext) -> i32 {
    let Some(key) = key(ctx.data(), ctx.data_end()) else {
        return TC_ACT_UNSPEC;
    };
    // SAFETY: the value is copied out before the entry is removed.
    let Some(note) = (unsafe { NEIGH_NOTES.get(key) }).copied() else {
        return TC_ACT_UNSPEC;
    };
    let _ = NEIGH_NOTES.remove(key);
    if stats::now().saturating_sub(note.noted_ns) > NEIGH_NOTE_TTL_NS {
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
