//! `lvs_decap`, for real servers without an `ipip` (`ip6tnl`) device: strip
//! the outer header of an IPv4 or IPv6 packet in IPv4 or IPv6 (the mixed
//! pairs too, as IPVS sends for a real server of the other family) so the
//! stack sees the client's packet to the VIP. Like the kernel's fallback `tunl0`
//! (`ip6tnl0`), it takes tunnelled packets from any sender; everything else
//! passes untouched.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use lvs_common::{DecapVerdict, IPPROTO_IPIP};

use crate::headers::{
    ptr_at, Ethernet, Ipv4, Ipv6, ETH_HEADER_LEN, ETH_P_IPV4, ETH_P_IPV6, IPV4_HEADER_LEN,
    IPV6_HEADER_LEN,
};

/// Next header (protocol) of IPv6 inside a tunnel.
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
    let inside_ipv6 = outer.proto == IPPROTO_IPV6;
    if eth.ethertype != ETH_P_IPV4
        || outer.version_ihl >> 4 != 4
        || (outer.proto != IPPROTO_IPIP && !inside_ipv6)
    {
        return DecapVerdict::PassNotIpip;
    }
    let outer_len = outer.header_len();
    // A fragment cannot be decapsulated alone; the kernel may reassemble it.
    if outer_len < IPV4_HEADER_LEN || outer.is_fragment() {
        return DecapVerdict::PassMalformed;
    }
    let payload = (u16::from_be_bytes(outer.total_len) as usize).saturating_sub(outer_len);
    inner(ctx, eth, outer_len, payload, inside_ipv6)
}

/// IPv6 or IPv4 in IPv6, as the director's TUN builds it: no extension
/// header in the outer packet (one with any goes to the kernel's `ip6tnl`,
/// if set up).
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
    let inside_ipv6 = outer.next_header == IPPROTO_IPV6;
    if outer.version_class_flow[0] >> 4 != 6 || (outer.next_header != IPPROTO_IPIP && !inside_ipv6)
    {
        return DecapVerdict::PassNotIpip;
    }
    let payload = u16::from_be_bytes(outer.payload_len) as usize;
    inner(ctx, eth, IPV6_HEADER_LEN, payload, inside_ipv6)
}

/// The packet inside, after `outer_len` bytes of outer header that say
/// `payload` bytes follow: an IPv6 one (`inside_ipv6`) or an IPv4 one,
/// whose own length must be that; stripped of the outer header if so.
#[inline(always)]
fn inner(
    ctx: &XdpContext,
    eth: &Ethernet,
    outer_len: usize,
    payload: usize,
    inside_ipv6: bool,
) -> DecapVerdict {
    if inside_ipv6 {
        let Ok(inner) = ptr_at::<Ipv6>(ctx, ETH_HEADER_LEN + outer_len) else {
            return DecapVerdict::PassMalformed;
        };
        // SAFETY: bounds-checked by ptr_at.
        let inner = unsafe { &*inner };
        let inner_payload = u16::from_be_bytes(inner.payload_len) as usize;
        if inner.version_class_flow[0] >> 4 != 6 || inner_payload + IPV6_HEADER_LEN != payload {
            return DecapVerdict::PassMalformed;
        }
        return strip(ctx, eth, outer_len, ETH_P_IPV6);
    }
    let Ok(inner) = ptr_at::<Ipv4>(ctx, ETH_HEADER_LEN + outer_len) else {
        return DecapVerdict::PassMalformed;
    };
    // SAFETY: bounds-checked by ptr_at.
    let inner = unsafe { &*inner };
    if inner.version_ihl >> 4 != 4
        || inner.header_len() < IPV4_HEADER_LEN
        || u16::from_be_bytes(inner.total_len) as usize != payload
    {
        return DecapVerdict::PassMalformed;
    }
    strip(ctx, eth, outer_len, ETH_P_IPV4)
}

/// Remove the `outer_len` bytes of outer header after the Ethernet header
/// `eth`, which then moves up, carrying `ethertype`.
#[inline(always)]
fn strip(ctx: &XdpContext, eth: &Ethernet, outer_len: usize, ethertype: [u8; 2]) -> DecapVerdict {
    // Read now: a shared reference lets LLVM load them again after the
    // helper call, when the verifier no longer trusts the pointer.
    // SAFETY: plain reads of a valid reference.
    let (dst, src) = unsafe {
        (
            core::ptr::read_volatile(&eth.dst),
            core::ptr::read_volatile(&eth.src),
        )
    };
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
