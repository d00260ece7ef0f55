//! ICMP fragmentation-needed, built in place from the packet that was too big
//! to send on (DR) or to tunnel, and sent back out of the interface it came
//! in on. XDP only: the tc datapath drops such packets (see `Frame::too_big`).

use aya_ebpf::{
    helpers::{bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use lvs_common::{checksum, Verdict, IPPROTO_ICMP};

use crate::headers::{
    ptr_at, Ethernet, Packet, ETH_HEADER_LEN, ETH_P_IPV4, ICMP_HEADER_LEN, IPV4_HEADER_LEN,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
/// Bytes of the offending packet's payload quoted after its IP header (RFC 792).
const QUOTED_PAYLOAD: usize = 8;
/// Largest ICMP body: header plus a 60-byte IP header plus 8 bytes, in words.
const MAX_ICMP_WORDS: usize = (ICMP_HEADER_LEN + 60 + QUOTED_PAYLOAD) / 2;

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
    let prefix = (IPV4_HEADER_LEN + ICMP_HEADER_LEN) as i32;
    // SAFETY: plain helper calls on our own context.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -prefix) } != 0 {
        return Err(Verdict::DropTooBig);
    }
    let icmp_len = ICMP_HEADER_LEN + quoted;
    let frame_len = ETH_HEADER_LEN + IPV4_HEADER_LEN + icmp_len;
    let trim = frame_len as i32 - (ctx.data_end() - ctx.data()) as i32;
    // SAFETY: as above; trim is never positive (the frame held the quote).
    if trim < 0 && unsafe { bpf_xdp_adjust_tail(ctx.ctx, trim) } != 0 {
        return Err(Verdict::DropTooBig);
    }

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
    let check = icmp_checksum(ctx, ETH_HEADER_LEN + IPV4_HEADER_LEN, icmp_len / 2);
    let check = check.to_be_bytes();
    // SAFETY: bounds-checked above.
    unsafe {
        (*icmp)[2] = check[0];
        (*icmp)[3] = check[1];
    }
    Ok(Verdict::IcmpTooBig)
}

/// One's-complement sum over `words` 16-bit words from `offset`.
#[inline(always)]
fn icmp_checksum(ctx: &XdpContext, offset: usize, words: usize) -> u16 {
    let mut sum: u32 = 0;
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
