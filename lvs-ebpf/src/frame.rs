//! The two ways a frame reaches the director, behind one trait so that every
//! packet path is written once:
//!
//! * an XDP buffer (`lvs_director`, native XDP): the fast path, on drivers
//!   that complete `XDP_TX` and redirects;
//! * a socket buffer (`lvs_director_tc`, tc ingress): on veth and other
//!   virtual devices, where an XDP frame sent on would be dropped by a peer
//!   without XDP, or lose the checksum state (`CHECKSUM_PARTIAL`) that a
//!   local sender left to offload.
//!
//! The differences are all here: how the transport checksum is finished, how
//! a frame leaves, and how room for an outer header is made.

use aya_ebpf::{
    bindings::{
        bpf_adj_room_mode::BPF_ADJ_ROOM_MAC, bpf_redir_neigh, BPF_F_MARK_MANGLED_0,
        BPF_F_PSEUDO_HDR,
    },
    cty::c_void,
    helpers::{bpf_l4_csum_replace, bpf_redirect, bpf_redirect_neigh, bpf_xdp_adjust_head},
    programs::{TcContext, XdpContext},
};
use core::mem::size_of;
use lvs_common::{checksum::Delta, NeighNote, Verdict};

use crate::{
    decision::Stage,
    family::Family,
    headers::Packet,
    maps::{DIRECTOR6_TC, DIRECTOR6_XDP, EGRESS, ICMP_ERROR_TC, ICMP_ERROR_XDP},
};

/// A transport checksum change not applied yet (see `checksum::Delta`).
#[derive(Clone, Copy)]
pub struct L4Patch {
    /// Offset of the checksum field in the frame.
    pub offset: usize,
    /// Address changes (the pseudo-header).
    pub pseudo: Delta,
    /// Port changes (bytes the checksum covers).
    pub covered: Delta,
    /// UDP: a zero checksum means none and stays zero.
    pub udp: bool,
}

pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
    /// Bytes in the whole frame, linear or not.
    fn frame_len(&self) -> usize;
    fn ingress_ifindex(&self) -> u32;
    /// The context, as the FIB helper takes it.
    fn raw(&self) -> *mut c_void;
    /// The length the FIB checks against the route's MTU: the packet's,
    /// plus `overhead` (a tunnel's outer header); 0, no check, for a GSO
    /// socket buffer. Its segments could be too big, but tc cannot answer
    /// for DR, TUN or a client's NAT packet, and a veth carries GSO whole
    /// (and encapsulation shrinks a tunnelled one's segments).
    fn mtu_len<P: Family>(&self, packet: &Packet<P>, overhead: u16) -> u16;
    /// The length of the packets that leave: a GSO socket buffer's
    /// segments' (headers and `gso_size` bytes), as the kernel's forwarding
    /// checks it. For a NAT reply, whose sender the kernel can answer.
    fn segment_len<P: Family>(&self, packet: &Packet<P>) -> u16;
    /// A DF packet too big for the egress (DR or TUN): tell the sender the
    /// largest that fits.
    fn too_big<P: Family>(&self, packet: &Packet<P>, mtu: u16) -> Result<Verdict, Verdict>;
    /// Apply a transport checksum change. On a socket buffer this goes
    /// through the kernel (which knows the checksum state) and invalidates
    /// every packet pointer: call it after the last direct write.
    fn patch_l4(&self, patch: L4Patch);
    /// Send the frame (addressed already) out of `ifindex` towards
    /// `next_hop`. The last thing done to a frame.
    fn send<P: Family>(&self, ifindex: u32, next_hop: P::Addr) -> Result<Verdict, Verdict>;
    /// Give the frame to the kernel's neighbour layer to address and send
    /// to `next_hop` on `ifindex`. The last thing done to a frame.
    fn to_neighbour<P: Family>(&self, next_hop: P::Addr, ifindex: u32) -> Result<Verdict, Verdict>;
    /// Make room for a tunnel's outer header of family `P` right after the
    /// Ethernet header. Invalidates every packet pointer.
    fn push_outer_header<P: Family>(&self) -> Result<(), Verdict>;
    /// Go on in this frame's ICMP error program (a tail call: it does not
    /// return unless the program is missing).
    fn to_icmp_error_program(&self);
    /// Go on in this frame's IPv6 program for `stage` (a tail call, as
    /// above).
    fn to_ipv6_stage(&self, stage: Stage);
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
    /// The director takes no multi-buffer frames: the buffer is the frame.
    #[inline(always)]
    fn frame_len(&self) -> usize {
        XdpContext::data_end(self) - XdpContext::data(self)
    }
    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        XdpContext::ingress_ifindex(self) as u32
    }
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.ctx as *mut c_void
    }
    #[inline(always)]
    fn mtu_len<P: Family>(&self, packet: &Packet<P>, overhead: u16) -> u16 {
        (packet.ip_len() as u16).saturating_add(overhead)
    }
    #[inline(always)]
    fn segment_len<P: Family>(&self, packet: &Packet<P>) -> u16 {
        packet.ip_len() as u16
    }
    #[inline(always)]
    fn too_big<P: Family>(&self, packet: &Packet<P>, mtu: u16) -> Result<Verdict, Verdict> {
        P::too_big_xdp(self, packet, mtu)
    }
    #[inline(always)]
    fn patch_l4(&self, patch: L4Patch) {
        let Ok(field) = crate::headers::ptr_at::<[u8; 2]>(self, patch.offset) else {
            return;
        };
        // SAFETY: bounds-checked by ptr_at.
        let field = unsafe { &mut *field };
        let original = u16::from_be_bytes(*field);
        let mut patched = patch.pseudo.and(patch.covered).apply(original);
        if patch.udp {
            patched = lvs_common::checksum::udp_fixup(original, patched);
        }
        *field = patched.to_be_bytes();
    }
    /// Out of the interface it came in on (`XDP_TX`), or through the devmap
    /// to another that takes XDP frames; anything else (an interface on the
    /// tc datapath, or not ours) through the neighbour layer.
    #[inline(always)]
    fn send<P: Family>(&self, ifindex: u32, next_hop: P::Addr) -> Result<Verdict, Verdict> {
        if ifindex == Frame::ingress_ifindex(self) {
            return Ok(Verdict::Transmit);
        }
        match EGRESS.redirect(ifindex, 0) {
            Ok(_) => Ok(Verdict::Redirect),
            Err(_) => self.to_neighbour::<P>(next_hop, ifindex),
        }
    }
    /// XDP cannot reach the neighbour layer: the packet goes up with a note
    /// (`NEIGH_NOTES`, keyed by its IP header), and `lvs_neigh` on tc
    /// ingress hands it to `bpf_redirect_neigh`. (Passed plainly, the kernel
    /// would deliver a DR packet to the local VIP and drop a TUN or NAT one
    /// as a martian.)
    #[inline(always)]
    fn to_neighbour<P: Family>(&self, next_hop: P::Addr, ifindex: u32) -> Result<Verdict, Verdict> {
        let key = P::neigh_key(self.data(), self.data_end()).ok_or(Verdict::DropNoRoute)?;
        let note = NeighNote::new(crate::stats::now(), next_hop, ifindex);
        P::neigh_notes()
            .insert(key, note, 0)
            .map_err(|_| Verdict::DropNoRoute)?;
        Ok(Verdict::PassResolveNeighbour)
    }
    #[inline(always)]
    fn to_icmp_error_program(&self) {
        // SAFETY: a tail call with our own context.
        unsafe { ICMP_ERROR_XDP.tail_call(self, 0) };
    }
    #[inline(always)]
    fn to_ipv6_stage(&self, stage: Stage) {
        // SAFETY: a tail call with our own context.
        unsafe { DIRECTOR6_XDP.tail_call(self, stage as u32) };
    }
    #[inline(always)]
    fn push_outer_header<P: Family>(&self) -> Result<(), Verdict> {
        // SAFETY: plain helper call on our own context. The old Ethernet
        // header now sits inside the new room; the caller rewrites it.
        if unsafe { bpf_xdp_adjust_head(self.ctx, -(P::TUNNEL_HEADER_LEN as i32)) } != 0 {
            return Err(Verdict::DropNoRoute);
        }
        Ok(())
    }
}

/// A `Delta` as the kernel's checksum helpers take it (`__wsum` over the
/// bytes in memory order).
#[inline(always)]
fn wire_order(delta: Delta) -> u64 {
    u16::from_be(delta.sum() as u16) as u64
}

/// A socket buffer's GSO segment size; 0 when it is one packet.
#[inline(always)]
fn gso_size(ctx: &TcContext) -> u16 {
    // SAFETY: the context pointer is valid for the program run.
    unsafe { (*ctx.skb.skb).gso_size as u16 }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
    #[inline(always)]
    fn frame_len(&self) -> usize {
        TcContext::len(self) as usize
    }
    #[inline(always)]
    fn ingress_ifindex(&self) -> u32 {
        // SAFETY: the context pointer is valid for the program run.
        unsafe { (*self.skb.skb).ingress_ifindex }
    }
    #[inline(always)]
    fn raw(&self) -> *mut c_void {
        self.skb.skb as *mut c_void
    }
    #[inline(always)]
    fn mtu_len<P: Family>(&self, packet: &Packet<P>, overhead: u16) -> u16 {
        if gso_size(self) == 0 {
            (packet.ip_len() as u16).saturating_add(overhead)
        } else {
            0
        }
    }
    #[inline(always)]
    fn segment_len<P: Family>(&self, packet: &Packet<P>) -> u16 {
        match gso_size(self) {
            0 => packet.ip_len() as u16,
            gso_size => (packet.ip_header_len as u16)
                .saturating_add(packet.l4_header_len(self))
                .saturating_add(gso_size),
        }
    }
    /// Building an ICMP error inside a socket buffer would have to undo its
    /// offload state; it is dropped and counted instead.
    #[inline(always)]
    fn too_big<P: Family>(&self, _packet: &Packet<P>, _mtu: u16) -> Result<Verdict, Verdict> {
        Err(Verdict::DropTooBig)
    }
    #[inline(always)]
    fn patch_l4(&self, patch: L4Patch) {
        let mangled = if patch.udp {
            BPF_F_MARK_MANGLED_0 as u64
        } else {
            0
        };
        // Size 0 in the flags: `to` is a precomputed difference, summed the
        // kernel's way over the bytes as they lie in memory (our `Delta`
        // sums big-endian words: the same sum, bytes swapped). The kernel
        // applies the pseudo-header's part whatever the checksum state, the
        // covered bytes' part only when the sum is not left to offload, and
        // keeps a receive-side `CHECKSUM_COMPLETE` sum in step.
        // SAFETY: plain helper calls on our own context.
        unsafe {
            bpf_l4_csum_replace(
                self.skb.skb,
                patch.offset as u32,
                0,
                wire_order(patch.pseudo),
                BPF_F_PSEUDO_HDR as u64 | mangled,
            );
            bpf_l4_csum_replace(
                self.skb.skb,
                patch.offset as u32,
                0,
                wire_order(patch.covered),
                mangled,
            );
        }
    }
    #[inline(always)]
    fn send<P: Family>(&self, ifindex: u32, _next_hop: P::Addr) -> Result<Verdict, Verdict> {
        // SAFETY: plain helper call. Flags 0: out of `ifindex`'s egress.
        unsafe { bpf_redirect(ifindex, 0) };
        if ifindex == Frame::ingress_ifindex(self) {
            Ok(Verdict::Transmit)
        } else {
            Ok(Verdict::Redirect)
        }
    }
    #[inline(always)]
    fn to_neighbour<P: Family>(&self, next_hop: P::Addr, ifindex: u32) -> Result<Verdict, Verdict> {
        let mut params = P::redirect_neighbour(next_hop);
        // SAFETY: params is a valid bpf_redir_neigh of the size passed.
        unsafe { bpf_redirect_neigh(ifindex, &mut params, size_of::<bpf_redir_neigh>() as i32, 0) };
        Ok(Verdict::PassResolveNeighbour)
    }
    #[inline(always)]
    fn to_icmp_error_program(&self) {
        // SAFETY: a tail call with our own context.
        unsafe { ICMP_ERROR_TC.tail_call(self, 0) };
    }
    #[inline(always)]
    fn to_ipv6_stage(&self, stage: Stage) {
        // SAFETY: a tail call with our own context.
        unsafe { DIRECTOR6_TC.tail_call(self, stage as u32) };
    }
    #[inline(always)]
    fn push_outer_header<P: Family>(&self) -> Result<(), Verdict> {
        // Room after the MAC header; the kernel marks the skb as carrying
        // a tunnel of the family so GSO segments it right (and shrinks
        // gso_size).
        self.adjust_room(P::TUNNEL_HEADER_LEN as i32, BPF_ADJ_ROOM_MAC, P::ENCAP_FLAG)
            .map_err(|_| Verdict::DropNoRoute)
    }
}
