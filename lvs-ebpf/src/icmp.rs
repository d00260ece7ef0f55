//! ICMP fragmentation-needed (ICMPv6 Packet Too Big), built in place from the
//! packet that was too big to send on (DR) or to tunnel, and sent back out
//! of the interface it came in on. XDP only: the tc datapath drops such
//! packets (see `Frame::too_big`).

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lvs_common::{addr::In6, checksum, Verdict, IPPROTO_ICMP};

use crate::{
    family::{IPPROTO_ICMPV6, V6},
    headers::{
        ptr_at, Ethernet, Ipv6, Packet, ETH_HEADER_LEN, ETH_P_IPV4, ETH_P_IPV6, ICMP_HEADER_LEN,
        IPV4_HEADER_LEN, IPV6_HEADER_LEN,
    },
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// Bytes of the offending packet's payload quoted after its IP header (RFC 792).
const QUOTED_PAYLOAD: usize = 8;
/// Largest ICMP body: header plus a 60-byte IP header plus 8 bytes, in words.
const MAX_ICMP_WORDS: usize = (ICMP_HEADER_LEN + 60 + QUOTED_PAYLOAD) / 2;

/// Make the frame an answer's shape: room in front for a new IP header of
/// `ip_len` bytes and the ICMP header, and cut after `icmp_len` bytes of
/// ICMP (header and quote), the quote being the packet's own head.
#[inline(always)]
fn reshape(ctx: &XdpContext, ip_len: usize, icmp_len: usize) -> Result<(), Verdict> {
    let prefix = (ip_len + ICMP_HEADER_LEN) as i32;
    // SAFETY: plain helper calls on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -prefix) } != 0 {
        return Err(Verdict::DropTooBig);
    }
    let frame_len = ETH_HEADER_LEN + ip_len + icmp_len;
    let trim = frame_len as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: as above; trim is never positive (the frame held the quote).
    if trim < 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, trim) } != 0 {
        return Err(Verdict::DropTooBig);
    }
    Ok(())
}

/// Tell the client the largest packet (`mtu`) that can be sent on. The
/// reply comes from the VIP it was talking to and goes back to the MAC the
/// packet came from.
#[inline(always)]
pub fn frag_needed(ctx: &XdpContext, packet: &Packet, mtu: u16) -> Result<Verdict, Verdict> {
    // Never an ICMP error about an ICMP error (RFC 1122, 3.2.2).
    if packet.proto == IPPROTO_ICMP {
        return Err(Verdict::DropTooBig);
    }
    // SAFETY: pointers validated by Packet::parse.
    let (eth, ip) = unsafe { (&*packet.eth, &*packet.ip) };
    let (client_mac, our_mac) = (eth.src, eth.dst);
    let (client, vip) = (ip.src, ip.dst);
    let quoted = packet.ip_header_len + QUOTED_PAYLOAD;

    // Room for a new IP and ICMP header in front of the original IP header,
    // which then sits exactly where the quote belongs.
    let icmp_len = ICMP_HEADER_LEN + quoted;
    reshape(ctx, IPV4_HEADER_LEN, icmp_len)?;

    let eth: *mut Ethernet = ptr_at(ctx, 0)?;
    let ip: *mut [u8; IPV4_HEADER_LEN] = ptr_at(ctx, ETH_HEADER_LEN)?;
    let icmp: *mut [u8; ICMP_HEADER_LEN] = ptr_at(ctx, ETH_HEADER_LEN + IPV4_HEADER_LEN)?;
    // SAFETY: all three bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst: client_mac,
            src: our_mac,
            ethertype: ETH_P_IPV4,
        };
        let total = ((IPV4_HEADER_LEN + icmp_len) as u16).to_be_bytes();
        let mut header = [
            0x45,
            0,
            total[0],
            total[1],
            0,
            0,
            0,
            0,
            64,
            IPPROTO_ICMP,
            0,
            0,
            vip[0],
            vip[1],
            vip[2],
            vip[3],
            client[0],
            client[1],
            client[2],
            client[3],
        ];
        let check = checksum::full(&header, 0).to_be_bytes();
        header[10] = check[0];
        header[11] = check[1];
        *ip = header;
        let mtu = mtu.to_be_bytes();
        *icmp = [
            ICMP_DEST_UNREACH,
            ICMP_FRAG_NEEDED,
            0,
            0,
            0,
            0,
            mtu[0],
            mtu[1],
        ];
    }
    let check = icmp_checksum(ctx, ETH_HEADER_LEN + IPV4_HEADER_LEN, icmp_len / 2, 0);
    let check = check.to_be_bytes();
    // SAFETY: bounds-checked above.
    unsafe {
        (*icmp)[2] = check[0];
        (*icmp)[3] = check[1];
    }
    Ok(Verdict::IcmpTooBig)
}

/// The checksum of `words` 16-bit words from `offset`, with `initial`
/// (a pseudo-header's sum) added.
#[inline(always)]
fn icmp_checksum(ctx: &XdpContext, offset: usize, words: usize, initial: u32) -> u16 {
    let mut sum: u32 = initial;
    for i in 0..MAX_ICMP_WORDS {
        if i >= words {
            break;
        }
        let Ok(word) = ptr_at::<[u8; 2]>(ctx, offset + i * 2) else {
            break;
        };
        // SAFETY: bounds-checked by ptr_at.
        sum += u16::from_be_bytes(unsafe { *word }) as u32;
    }
    !checksum::fold(sum)
}

/// The sum of an IPv6 address's eight 16-bit words.
#[inline(always)]
fn address_sum(addr: In6) -> u32 {
    let [w0, w1, w2, w3] = addr.words();
    half_sum(w0) + half_sum(w1) + half_sum(w2) + half_sum(w3)
}

/// The sum of a word's two 16-bit halves, as they lie in memory.
#[inline(always)]
fn half_sum(word: u32) -> u32 {
    let [a, b, c, d] = word.to_ne_bytes();
    u32::from(u16::from_be_bytes([a, b])) + u32::from(u16::from_be_bytes([c, d]))
}

/// ICMPv6 Packet Too Big (RFC 4443 §3.2).
const ICMPV6_PACKET_TOO_BIG: u8 = 2;
/// What an IPv6 Packet Too Big quotes: the packet's header and eight bytes
/// after it (the ports, and TCP's sequence number), as the IPv4 message
/// does; enough for the sender to find its connection.
const QUOTED6: usize = IPV6_HEADER_LEN + QUOTED_PAYLOAD;

/// `frag_needed` for IPv6: tell the client the largest packet (`mtu`) that
/// can be sent on, from the VIP, back to the MAC the packet came from. A
/// packet with extension headers is dropped and counted instead (the
/// quote would not reach its ports).
#[inline(always)]
pub fn packet_too_big(ctx: &XdpContext, packet: &Packet<V6>, mtu: u16) -> Result<Verdict, Verdict> {
    if packet.ip_header_len != IPV6_HEADER_LEN {
        return Err(Verdict::DropTooBig);
    }
    // SAFETY: pointers validated by Packet::parse.
    let (eth, ip) = unsafe { (&*packet.eth, &*packet.ip) };
    let (client_mac, our_mac) = (eth.src, eth.dst);
    let (client, vip) = (ip.src, ip.dst);

    let icmp_len = ICMP_HEADER_LEN + QUOTED6;
    reshape(ctx, IPV6_HEADER_LEN, icmp_len)?;

    let eth: *mut Ethernet = ptr_at(ctx, 0)?;
    let ip: *mut Ipv6 = ptr_at(ctx, ETH_HEADER_LEN)?;
    let icmp: *mut [u8; ICMP_HEADER_LEN] = ptr_at(ctx, ETH_HEADER_LEN + IPV6_HEADER_LEN)?;
    // The quote must be there in full for the checksum below.
    ptr_at::<[u8; QUOTED6]>(ctx, ETH_HEADER_LEN + IPV6_HEADER_LEN + ICMP_HEADER_LEN)?;
    let mtu = u32::from(mtu).to_be_bytes();
    // SAFETY: all three bounds-checked by ptr_at.
    unsafe {
        *eth = Ethernet {
            dst: client_mac,
            src: our_mac,
            ethertype: ETH_P_IPV6,
        };
        *ip = Ipv6 {
            version_class_flow: [0x60, 0, 0, 0],
            payload_len: (icmp_len as u16).to_be_bytes(),
            next_header: IPPROTO_ICMPV6,
            hop_limit: 64,
            src: vip,
            dst: client,
        };
        *icmp = [
            ICMPV6_PACKET_TOO_BIG,
            0,
            0,
            0,
            mtu[0],
            mtu[1],
            mtu[2],
            mtu[3],
        ];
    }
    // The pseudo-header: both addresses, the length, the next header.
    let pseudo =
        icmp_len as u32 + u32::from(IPPROTO_ICMPV6) + address_sum(vip) + address_sum(client);
    let check =
        icmp_checksum(ctx, ETH_HEADER_LEN + IPV6_HEADER_LEN, icmp_len / 2, pseudo).to_be_bytes();
    // SAFETY: bounds-checked above.
    unsafe {
        (*icmp)[2] = check[0];
        (*icmp)[3] = check[1];
    }
    Ok(Verdict::IcmpTooBig)
}
