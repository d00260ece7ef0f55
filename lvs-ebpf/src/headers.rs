//! Header views over the frame. Fields stay in network order as byte arrays;
//! `Packet::parse` (with `parse_ipv4` or `parse_ipv6`) is the only place
//! that checks bounds.

use core::mem::size_of;
use lvs_common::{
    checksum::Delta,
    tcp_state::{TCP_RST, TCP_SYN},
    FlowKey, Verdict, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP,
};

use lvs_common::addr::In6;

use crate::{
    family::{Family, IpHeader, V4},
    frame::{Frame, L4Patch},
};

pub const ETH_P_IPV4: [u8; 2] = [0x08, 0x00];
pub const ETH_P_IPV6: [u8; 2] = [0x86, 0xdd];

#[repr(C)]
pub struct Ethernet {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: [u8; 2],
}

#[repr(C)]
pub struct Ipv4 {
    pub version_ihl: u8,
    pub tos: u8,
    pub total_len: [u8; 2],
    pub id: [u8; 2],
    pub frag: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

impl Ipv4 {
    /// More-fragments set or a non-zero offset: ports are not in this packet.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        (self.frag[0] & 0x3f) != 0 || self.frag[1] != 0
    }
    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        self.frag[0] & 0x40 != 0
    }
    /// Header length in bytes.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        (self.version_ihl & 0x0f) as usize * 4
    }
    /// Patch the header checksum for a change made to the header.
    #[inline(always)]
    pub fn patch_check(&mut self, change: Delta) {
        self.check = change.apply(u16::from_be_bytes(self.check)).to_be_bytes();
    }
}

#[repr(C)]
pub struct Ipv6 {
    /// Version, traffic class and flow label.
    pub version_class_flow: [u8; 4],
    pub payload_len: [u8; 2],
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: In6,
    pub dst: In6,
}

pub const ETH_HEADER_LEN: usize = size_of::<Ethernet>();
pub const IPV4_HEADER_LEN: usize = size_of::<Ipv4>();
pub const IPV6_HEADER_LEN: usize = size_of::<Ipv6>();

/// IPv6 extension headers a router passes over (RFC 8200 §4.1): hop-by-hop
/// and destination options, and a routing header with no segment left.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DESTINATION_OPTIONS: u8 = 60;
/// Extension headers looked through before the transport header; a packet
/// with more is passed to the kernel (`pass_unsupported`).
const IPV6_EXTENSION_HEADERS_MAX: usize = 3;
/// What the director reads of an IPv6 frame before it decides: up to 64
/// bytes of extension headers.
pub const IPV6_HEADERS_MAX_LEN: usize = ETH_HEADER_LEN + IPV6_HEADER_LEN + 64 + TCP_HEADER_LEN;

/// The first eight bytes of TCP and UDP: ports, then fields we do not touch.
#[repr(C)]
pub struct Ports {
    pub src: [u8; 2],
    pub dst: [u8; 2],
}

pub const TCP_HEADER_LEN: usize = 20;
/// Ethernet, the longest IPv4 header and a TCP header: what the director
/// reads before it decides.
pub const HEADERS_MAX_LEN: usize = ETH_HEADER_LEN + 60 + TCP_HEADER_LEN;
pub const UDP_HEADER_LEN: usize = 8;
pub const ICMP_HEADER_LEN: usize = 8;
/// What an ICMP error's handling reads: its headers, then the quoted
/// packet's IPv4 header and as much of its TCP header as holds the checksum.
pub const ICMP_ERROR_HEADERS_MAX_LEN: usize =
    ETH_HEADER_LEN + 60 + ICMP_HEADER_LEN + 60 + TCP_CHECK_OFFSET + 2;
/// The same for ICMPv6: the IPv6 header with up to 64 bytes of extension
/// headers, then the quoted IPv6 header and TCP header.
pub const ICMP6_ERROR_HEADERS_MAX_LEN: usize = ETH_HEADER_LEN
    + IPV6_HEADER_LEN
    + 64
    + ICMP_HEADER_LEN
    + IPV6_HEADER_LEN
    + TCP_CHECK_OFFSET
    + 2;
/// Checksum offsets within the transport header.
pub const TCP_CHECK_OFFSET: usize = 16;
pub const UDP_CHECK_OFFSET: usize = 6;
const ICMP_CHECK_OFFSET: usize = 2;
const TCP_FLAGS_OFFSET: usize = 13;

/// A parsed TCP, UDP or ICMP frame of family `P`: pointers are valid for
/// the program run.
pub struct Packet<P: Family = V4> {
    pub eth: *mut Ethernet,
    pub ip: *mut P::Ip,
    /// TCP and UDP: the ports. ICMP (read only by `icmp_error`, which
    /// parses what it quotes): type, code and checksum.
    pub ports: *mut Ports,
    /// Offset of the transport checksum in the frame (bounds-checked).
    pub l4_check_offset: usize,
    pub proto: u8,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// IP header length in bytes: IPv4's 20 to 60; IPv6's 40 and its
    /// extension headers.
    pub ip_header_len: usize,
}

/// How much of a socket buffer the director needs in its linear part: an
/// ICMP error's quoted headers too.
#[inline(always)]
pub fn wanted_linear(frame: &impl Frame) -> usize {
    let (Ok(ethertype), Ok(proto)) = (
        ptr_at::<[u8; 2]>(frame, 12),
        ptr_at::<u8>(frame, ETH_HEADER_LEN + 9),
    ) else {
        return HEADERS_MAX_LEN;
    };
    // SAFETY: both bounds-checked by ptr_at.
    if unsafe { *ethertype == ETH_P_IPV4 && *proto == IPPROTO_ICMP } {
        ICMP_ERROR_HEADERS_MAX_LEN
    } else if unsafe { *ethertype == ETH_P_IPV6 } {
        // An ICMPv6 error (its next header, at byte 6 of the IPv6 header,
        // straight after it: extension headers in front are rare).
        match ptr_at::<u8>(frame, ETH_HEADER_LEN + 6) {
            // SAFETY: bounds-checked by ptr_at.
            Ok(next) if unsafe { *next } == crate::family::IPPROTO_ICMPV6 => {
                ICMP6_ERROR_HEADERS_MAX_LEN
            }
            _ => IPV6_HEADERS_MAX_LEN,
        }
    } else {
        HEADERS_MAX_LEN
    }
}

/// The IPv4 header: its pointer, length and protocol. Fragments carry no
/// ports to look up: the kernel gets them as they are (a fragmented reply
/// is therefore not SNATed: see README).
#[inline(always)]
pub fn parse_ipv4(ctx: &impl Frame) -> Result<(*mut Ipv4, usize, u8), Verdict> {
    let ip: *mut Ipv4 = ptr_at(ctx, ETH_HEADER_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let ipr = unsafe { &*ip };
    let ihl = ipr.header_len();
    if ipr.version_ihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
        return Err(Verdict::PassMalformed);
    }
    if ipr.is_fragment() {
        return Err(Verdict::PassUnsupported);
    }
    Ok((ip, ihl, ipr.proto))
}

/// The IPv6 header and the extension headers a router passes over: their
/// pointer, length and the protocol after them. A fragment, or a routing
/// header with segments left (the packet is not for its destination yet),
/// goes to the kernel as it is.
#[inline(always)]
pub fn parse_ipv6(ctx: &impl Frame) -> Result<(*mut Ipv6, usize, u8), Verdict> {
    let ip: *mut Ipv6 = ptr_at(ctx, ETH_HEADER_LEN)?;
    // SAFETY: bounds checked by ptr_at.
    let ipr = unsafe { &*ip };
    if ipr.version_class_flow[0] >> 4 != 6 {
        return Err(Verdict::PassMalformed);
    }
    let mut next = ipr.next_header;
    let mut len = IPV6_HEADER_LEN;
    for _ in 0..IPV6_EXTENSION_HEADERS_MAX {
        if next == IPV6_FRAGMENT {
            return Err(Verdict::PassUnsupported);
        }
        if next != IPV6_HOP_BY_HOP && next != IPV6_ROUTING && next != IPV6_DESTINATION_OPTIONS {
            break;
        }
        // Next header, length in 8-byte units after the first 8, and for a
        // routing header its type and the segments left.
        let ext: *const [u8; 4] = ptr_at(ctx, ETH_HEADER_LEN + len)?;
        // SAFETY: bounds checked by ptr_at.
        let ext = unsafe { *ext };
        if next == IPV6_ROUTING && ext[3] != 0 {
            return Err(Verdict::PassUnsupported);
        }
        next = ext[0];
        len += (ext[1] as usize + 1) * 8;
    }
    Ok((ip, len, next))
}

/// As `ptr_at`, for a pointer kept a while at a variable offset. LLVM may
/// compute such a pointer again from the frame's start rather than keep the
/// checked one, and the verifier does not know the new one to be in
/// bounds; read back through a volatile load, the checked pointer is the
/// only one LLVM has.
#[inline(always)]
pub fn pinned_ptr_at<T>(frame: &impl Frame, offset: usize) -> Result<*mut T, Verdict> {
    let at = frame.data() + offset;
    // SAFETY: a volatile read of a local.
    let at = unsafe { core::ptr::read_volatile(&at) };
    if at + size_of::<T>() > frame.data_end() {
        return Err(Verdict::PassMalformed);
    }
    Ok(at as *mut T)
}

#[inline(always)]
pub fn ptr_at<T>(frame: &impl Frame, offset: usize) -> Result<*mut T, Verdict> {
    let start = frame.data();
    if start + offset + size_of::<T>() > frame.data_end() {
        return Err(Verdict::PassMalformed);
    }
    Ok((start + offset) as *mut T)
}

impl<P: Family> Packet<P> {
    #[inline(always)]
    pub fn parse(ctx: &impl Frame) -> Result<Self, Verdict> {
        let eth: *mut Ethernet = ptr_at(ctx, 0).map_err(|_| Verdict::PassNotIpv4)?;
        // SAFETY: bounds checked by ptr_at.
        if unsafe { (*eth).ethertype } != P::ETHERTYPE {
            return Err(Verdict::PassNotIpv4);
        }
        let (ip, ihl, proto) = P::parse_ip(ctx)?;
        // SAFETY: bounds checked by parse_ip.
        let ipr = unsafe { &*ip };
        let l4 = size_of::<Ethernet>() + ihl;
        let (check_offset, header_len) = match proto {
            IPPROTO_TCP => (TCP_CHECK_OFFSET, TCP_HEADER_LEN),
            IPPROTO_UDP => (UDP_CHECK_OFFSET, UDP_HEADER_LEN),
            p if p == P::ICMP => (ICMP_CHECK_OFFSET, ICMP_HEADER_LEN),
            _ => return Err(Verdict::PassUnsupported),
        };
        // The total length must cover both headers and end within the
        // frame, or the kernel drops the packet (ip_rcv): the rewrite, the
        // counters, the MTU check and a tunnel's outer header all go by it.
        let total = ipr.packet_len() as usize;
        if total < ihl + header_len || size_of::<Ethernet>() + total > ctx.frame_len() {
            return Err(Verdict::PassMalformed);
        }
        // The whole fixed transport header must be present.
        ptr_at::<u8>(ctx, l4 + header_len - 1)?;
        let ports: *mut Ports = ptr_at(ctx, l4)?;
        ptr_at::<[u8; 2]>(ctx, l4 + check_offset)?;
        let tcp_flags = if proto == IPPROTO_TCP {
            // SAFETY: inside the header checked above.
            unsafe { *ptr_at::<u8>(ctx, l4 + TCP_FLAGS_OFFSET)? }
        } else {
            0
        };
        Ok(Self {
            eth,
            ip,
            ports,
            l4_check_offset: l4 + check_offset,
            proto,
            tcp_flags,
            ip_header_len: ihl,
        })
    }

    /// The transport header's length: TCP's data offset (options
    /// included), else the fixed header.
    #[inline(always)]
    pub fn l4_header_len(&self, frame: &impl Frame) -> u16 {
        if self.proto != IPPROTO_TCP {
            return UDP_HEADER_LEN as u16;
        }
        match ptr_at::<u8>(frame, self.l4_offset() + 12) {
            // SAFETY: bounds-checked by ptr_at.
            Ok(offset) => ((unsafe { *offset } >> 4) as u16) * 4,
            Err(_) => TCP_HEADER_LEN as u16,
        }
    }

    /// Offset of the transport header (an ICMP error's quote follows its
    /// eight bytes).
    #[inline(always)]
    pub fn l4_offset(&self) -> usize {
        ETH_HEADER_LEN + self.ip_header_len
    }

    /// Where the IP packet ends in the frame (padding may follow).
    #[inline(always)]
    pub fn ip_end(&self) -> usize {
        ETH_HEADER_LEN + self.ip_len() as usize
    }

    /// TCP or UDP; ICMP's flow key is its quote's (`icmp_error`).
    #[inline(always)]
    pub fn flow_key(&self) -> FlowKey<P::Addr> {
        // SAFETY: pointers validated by parse.
        let (ip, ports) = unsafe { (&*self.ip, &*self.ports) };
        FlowKey::from_wire(ip.src(), ip.dst(), ports.src, ports.dst, self.proto)
    }

    /// IPVS schedules TCP only on SYN without RST (any segment but RST
    /// when `sloppy`); UDP always.
    #[inline(always)]
    pub fn may_schedule(&self, sloppy: bool) -> bool {
        self.proto != IPPROTO_TCP
            || self.tcp_flags & TCP_RST == 0 && (sloppy || self.tcp_flags & TCP_SYN != 0)
    }

    #[inline(always)]
    pub fn dont_fragment(&self) -> bool {
        // SAFETY: validated by parse.
        unsafe { (*self.ip).dont_fragment() }
    }

    /// Forwarding would take the TTL (hop limit) to 0: the kernel must
    /// answer with ICMP time-exceeded, quoting the packet as the client
    /// sent it.
    #[inline(always)]
    pub fn ttl_expiring(&self) -> bool {
        // SAFETY: validated by parse.
        unsafe { (*self.ip).hop_limit() <= 1 }
    }

    /// Decrement the TTL (patching IPv4's header checksum); callers have
    /// checked `ttl_expiring`.
    #[inline(always)]
    pub fn decrement_ttl(&self) {
        // SAFETY: validated by parse.
        unsafe { (*self.ip).decrement_hop_limit() };
    }

    /// A transport checksum change for this packet, to apply with
    /// `Frame::patch_l4` once the direct writes are done.
    #[inline(always)]
    pub fn l4_patch(&self, pseudo: Delta, covered: Delta) -> L4Patch {
        L4Patch {
            offset: self.l4_check_offset,
            pseudo,
            covered,
            udp: self.proto == IPPROTO_UDP,
        }
    }

    #[inline(always)]
    pub fn ip_len(&self) -> u64 {
        // SAFETY: validated by parse.
        unsafe { (*self.ip).packet_len() as u64 }
    }
}
