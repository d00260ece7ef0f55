//! `lvs_decap`, for real servers without an `ipip` (`ip6tnl`) device: strip
//! the outer header of an IPv4-in-IPv4 or IPv6-in-IPv6 packet so the stack
//! sees the client's packet to the VIP. Like the kernel's fallback `tunl0`
//! (`ip6tnl0`), it takes tunnelled packets from any sender; everything else
//! passes untouched.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lvs_common::{DecapVerdict, IPPROTO_IPIP};

use crate::headers::{
    ptr_at, Ethernet, Ipv4, Ipv6, ETH_HEADER_LEN, ETH_P_IPV4, ETH_P_IPV6, IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
};

/// Next header of IPv6 inside IPv6.
const IPPROTO_IPV6: u8 = 41;

#[inline(always)]
pub fn decapsulate(ctx: &XdpContext) -> DecapVerdict {
    let Ok(eth) = ptr_at::<Ethernet>(ctx, 0) else {
        return DecapVerdict::PassNotIpip;
    };
    // SAFETY: bounds-checked by ptr_at.
    if unsafe { (*eth).ethertype } == ETH_P_IPV6 {
        return decapsulate6(ctx);
    }
    let Ok(outer) = ptr_at::<Ipv4>(ctx, ETH_HEADER_LEN) else {
        return DecapVerdict::PassNotIpip;
    };
    // SAFETY: bounds-checked by ptr_at.
    let (eth, outer) = unsafe { (&*eth, &*outer) };
    if eth.ethertype != ETH_P_IPV4 || outer.version_ihl >> 4 != 4 || outer.proto != IPPROTO_IPIP {
        return DecapVerdict::PassNotIpip;
    }
    let outer_len = outer.header_len();
    // A fragment cannot be decapsulated alone; the kernel may reassemble it.
    if outer_len < IPV4_HEADER_LEN || outer.is_fragment() {
        return DecapVerdict::PassMalformed;
    }
    let Ok(inner) = ptr_at::<Ipv4>(ctx, ETH_HEADER_LEN + outer_len) else {
        return DecapVerdict::PassMalformed;
    };
    // SAFETY: bounds-checked by ptr_at.
    let inner = unsafe { &*inner };
    let outer_total = u16::from_be_bytes(outer.total_len) as usize;
    let inner_total = u16::from_be_bytes(inner.total_len) as usize;
    if inner.version_ihl >> 4 != 4
        || inner.header_len() < IPV4_HEADER_LEN
        || inner_total + outer_len != outer_total
    {
        return DecapVerdict::PassMalformed;
    }
    strip(ctx, eth, outer_len, ETH_P_IPV4)
}

/// IPv6 in IPv6, as the director's TUN builds it: no extension header in
/// the outer packet (one with any goes to the kernel's `ip6tnl`, if set
/// up).
#[inline(always)]
fn decapsulate6(ctx: &XdpContext) -> DecapVerdict {
    let (Ok(eth), Ok(outer)) = (
        ptr_at::<Ethernet>(ctx, 0),
        ptr_at::<Ipv6>(ctx, ETH_HEADER_LEN),
    ) else {
        return DecapVerdict::PassNotIpip;
    };
    // SAFETY: bounds-checked by ptr_at.
    let (eth, outer) = unsafe { (&*eth, &*outer) };
    if outer.version_class_flow[0] >> 4 != 6 || outer.next_header != IPPROTO_IPV6 {
        return DecapVerdict::PassNotIpip;
    }
    let Ok(inner) = ptr_at::<Ipv6>(ctx, ETH_HEADER_LEN + IPV6_HEADER_LEN) else {
        return DecapVerdict::PassMalformed;
    };
    // SAFETY: bounds-checked by ptr_at.
    let inner = unsafe { &*inner };
    let outer_payload = u16::from_be_bytes(outer.payload_len) as usize;
    let inner_payload = u16::from_be_bytes(inner.payload_len) as usize;
    if inner.version_class_flow[0] >> 4 != 6 || inner_payload + IPV6_HEADER_LEN != outer_payload {
        return DecapVerdict::PassMalformed;
    }
    strip(ctx, eth, IPV6_HEADER_LEN, ETH_P_IPV6)
}

/// Remove the `outer_len` bytes of outer header after the Ethernet header
/// `eth`, which then moves up, carrying `ethertype`.
#[inline(always)]
fn strip(ctx: &XdpContext, eth: &Ethernet, outer_len: usize, ethertype: [u8; 2]) -> DecapVerdict {
    let (dst, src) = (eth.dst, eth.src);
    // SAFETY: plain helper call on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer_len as i32) } != 0 {
        return DecapVerdict::PassMalformed;
    }
    let Ok(eth) = ptr_at::<Ethernet>(ctx, 0) else {
        return DecapVerdict::PassMalformed;
    };
    // SAFETY: bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst,
            src,
            ethertype,
        }
    };
    DecapVerdict::Decapsulated
}
