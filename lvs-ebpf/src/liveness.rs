//! A router of a pair whose lvsd has died: its datapath keeps forwarding
//! established connections (their state was synced), but takes no new
//! ones (nobody would sync them, and the new active would reset them) and
//! stops answering ARP and IPv6 neighbour solicitations for the floating
//! addresses, so clients move to the new active router. lvsd proves it is alive by pushing a deadline
//! forward in `LIVENESS`.

use lvs_common::{addr::In6, Verdict};

use crate::{
    frame::Frame,
    headers::{ptr_at, ETH_HEADER_LEN, ETH_P_IPV6, IPV6_HEADER_LEN},
    maps::{FLOATING, FLOATING6, LIVENESS},
    stats,
};

/// `ETH_P_ARP`, as it appears on the wire.
const ETH_P_ARP: [u8; 2] = [0x08, 0x06];
/// An ARP request (`ARPOP_REQUEST`), on the wire.
const ARP_REQUEST: [u8; 2] = [0, 1];

/// Ethernet header then the IPv4-over-Ethernet ARP payload.
#[repr(C)]
struct EthernetArp {
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: [u8; 2],
    hardware: [u8; 2],
    protocol: [u8; 2],
    hardware_len: u8,
    protocol_len: u8,
    operation: [u8; 2],
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_mac: [u8; 6],
    target_ip: [u8; 4],
}

/// Whether lvsd stopped refreshing its deadline.
#[inline(always)]
pub fn controller_gone(now: u64) -> bool {
    match LIVENESS.get(0) {
        Some(&deadline) => deadline != 0 && now > deadline,
        None => false,
    }
}

/// A frame that is not IPv4: IPv6 goes on in the IPv6 director; an ARP
/// request for a floating address is dropped while lvsd is gone;
/// everything else goes on to the kernel.
#[inline(always)]
pub fn not_ipv4<F: Frame>(frame: &F) -> Result<Verdict, Verdict> {
    let ipv6 = ptr_at::<[u8; 2]>(frame, 12).is_ok_and(|ethertype| {
        // SAFETY: bounds-checked by ptr_at.
        unsafe { *ethertype == ETH_P_IPV6 }
    });
    if ipv6 {
        // Only returns if the program is missing (lvsd gone).
        frame.to_ipv6_stage(crate::decision::Stage::Director);
        return Err(Verdict::PassNotIpv4);
    }
    let Ok(arp) = ptr_at::<EthernetArp>(frame, 0) else {
        return Err(Verdict::PassNotIpv4);
    };
    // SAFETY: bounds checked by ptr_at.
    let arp = unsafe { &*arp };
    if arp.ethertype != ETH_P_ARP || arp.operation != ARP_REQUEST {
        return Err(Verdict::PassNotIpv4);
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { FLOATING.get(arp.target_ip) }.is_some() && controller_gone(stats::now()) {
        return Err(Verdict::DropArpNoController);
    }
    Err(Verdict::PassNotIpv4)
}

/// ICMPv6's neighbour solicitation.
const NEIGHBOUR_SOLICITATION: u8 = 135;

/// The head of an IPv6 neighbour solicitation (no extension headers: a
/// node sends none with one) up to its target address.
#[repr(C)]
struct Solicitation {
    next_header: u8,
    _hop_limit_and_addresses: [u8; 33],
    kind: u8,
    _code_checksum_reserved: [u8; 7],
    /// Not an `In6`: at an offset of 2 modulo 4.
    target: [u8; 16],
}

/// IPv6 (an ICMPv6 frame): a neighbour solicitation for a floating address
/// is dropped while lvsd is gone.
#[inline(always)]
pub fn neighbour_solicitation<F: Frame>(frame: &F) -> Result<(), Verdict> {
    // From the IPv6 header's next-header byte.
    let Ok(ns) = ptr_at::<Solicitation>(frame, ETH_HEADER_LEN + 6) else {
        return Ok(());
    };
    // SAFETY: bounds checked by ptr_at.
    let ns = unsafe { &*ns };
    const _: () = assert!(core::mem::offset_of!(Solicitation, kind) == IPV6_HEADER_LEN - 6);
    const _: () = assert!(core::mem::offset_of!(Solicitation, target) == IPV6_HEADER_LEN + 2);
    if ns.next_header != crate::family::IPPROTO_ICMPV6 || ns.kind != NEIGHBOUR_SOLICITATION {
        return Ok(());
    }
    // SAFETY: the value is only tested for presence.
    if unsafe { FLOATING6.get(In6(ns.target)) }.is_some() && controller_gone(stats::now()) {
        return Err(Verdict::DropArpNoController);
    }
    Ok(())
}
