//! ICMP errors about tracked connections, taken to the host that owns the
//! connection, as IPVS's `ip_vs_in_icmp` and `ip_vs_out_icmp` do. An error
//! quotes the head of the packet it is about, so the connection is found by
//! the quote's 5-tuple reversed, which is the flow the connection's own
//! packets in the other direction carry:
//!
//! * from the client's side (a router that could not take a reply on, to
//!   the VIP): the quote is a reply, VIP to client, and its reverse the
//!   connection's inbound entry. NAT translates the error to the real
//!   server (outer destination, quoted source address and port); DR and TUN
//!   send it on unchanged to the real server that owns the flow;
//! * from a NAT real server's side: the quote is the client's packet as the
//!   director DNATed it, and its reverse a reply: the error is translated
//!   back to the virtual service (outer source, quoted destination) and sent
//!   to the client.
//!
//! Every checksum stays right: the outer and quoted IPv4 headers', the
//! quoted transport checksum when the quote holds it, and the ICMP
//! checksum over all of them, each patched for what changed. An error that
//! quotes no live connection passes to the kernel. Each case is counted in
//! `ICMP_ERRORS`.

use lvs_common::{
    checksum::{self, Delta},
    Conn, Direction, FlowKey, IcmpCase, Method, Verdict, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    conntrack,
    decision::Decision,
    direct,
    family::V4,
    forward,
    frame::Frame,
    headers::{
        pinned_ptr_at, Ipv4, Packet, Ports, ICMP_HEADER_LEN, IPV4_HEADER_LEN, TCP_CHECK_OFFSET,
        UDP_CHECK_OFFSET,
    },
    maps::{CONNS, SETTINGS},
    nat, relevance,
    stats::{self, Way},
    tunnel,
};

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_SOURCE_QUENCH: u8 = 4;
const ICMP_TIME_EXCEEDED: u8 = 11;

/// The packet an ICMP error quotes: its IPv4 header, its ports, and its
/// transport checksum when the quote reaches that far.
struct Quote {
    ip: *mut Ipv4,
    ports: *mut Ports,
    l4_check: Option<*mut [u8; 2]>,
    udp: bool,
}

impl Quote {
    /// The quote of an ICMP error (`packet` is ICMP), if it is one the
    /// director may own: an error IPVS handles, quoting the head of a TCP
    /// or UDP packet. Anything else (another ICMP message, a quote cut
    /// before the ports) is not the director's: `PassUnsupported`.
    #[inline(always)]
    fn parse<F: Frame>(frame: &F, packet: &Packet) -> Result<Self, Verdict> {
        // SAFETY: validated by Packet::parse (for ICMP: type, code, checksum).
        let kind = unsafe { (*packet.ports).src[0] };
        if !matches!(
            kind,
            ICMP_DEST_UNREACH | ICMP_SOURCE_QUENCH | ICMP_TIME_EXCEEDED
        ) {
            return Err(Verdict::PassUnsupported);
        }
        // What the error's IPv4 length covers is the quote; beyond it is
        // the frame's padding.
        let end = packet.ip_end();
        let ip_at = packet.l4_offset() + ICMP_HEADER_LEN;
        if ip_at + IPV4_HEADER_LEN > end {
            return Err(Verdict::PassUnsupported);
        }
        let ip: *mut Ipv4 = pinned_ptr_at(frame, ip_at).map_err(|_| Verdict::PassUnsupported)?;
        // SAFETY: bounds-checked by pinned_ptr_at.
        let ipr = unsafe { &*ip };
        let ihl = ipr.header_len();
        if ipr.version_ihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
            return Err(Verdict::PassUnsupported);
        }
        let udp = match ipr.proto {
            IPPROTO_TCP => false,
            IPPROTO_UDP => true,
            _ => return Err(Verdict::PassUnsupported),
        };
        // Only a first fragment carries the ports.
        if (ipr.frag[0] & 0x1f) != 0 || ipr.frag[1] != 0 {
            return Err(Verdict::PassUnsupported);
        }
        let ports_at = ip_at + ihl;
        if ports_at + 4 > end {
            return Err(Verdict::PassUnsupported);
        }
        let ports: *mut Ports =
            pinned_ptr_at(frame, ports_at).map_err(|_| Verdict::PassUnsupported)?;
        let check_at = ports_at
            + if udp {
                UDP_CHECK_OFFSET
            } else {
                TCP_CHECK_OFFSET
            };
        let l4_check = if check_at + 2 <= end {
            pinned_ptr_at::<[u8; 2]>(frame, check_at).ok()
        } else {
            None
        };
        Ok(Self {
            ip,
            ports,
            l4_check,
            udp,
        })
    }

    /// The quoted 5-tuple reversed: the flow of the connection's packets
    /// that travel the other way.
    #[inline(always)]
    fn reversed(&self) -> FlowKey {
        // SAFETY: pointers validated by parse.
        let (ip, ports) = unsafe { (&*self.ip, &*self.ports) };
        FlowKey::from_wire(ip.dst, ip.src, ports.dst, ports.src, ip.proto)
    }
}

/// Which end of the quoted packet a translation rewrites.
#[derive(Clone, Copy)]
enum End {
    Source,
    Destination,
}

/// An ICMP packet: an error goes to the host that owns the connection it
/// quotes.
#[inline(always)]
pub fn to_owner<F: Frame>(frame: &F) -> Result<Verdict, Verdict> {
    let packet = &Packet::parse(frame)?;
    let quote = Quote::parse(frame, packet)?;
    let flow = quote.reversed();
    let from_nat_server = relevance::from_nat_server(&flow);
    if !from_nat_server && !relevance::to_virtual_address(&flow) {
        return Err(Verdict::PassNoService);
    }
    if !SETTINGS.get(0).is_some_and(|s| s.handles_icmp_errors()) {
        stats::count_icmp(IcmpCase::Ignored);
        return Err(Verdict::PassToKernel);
    }
    if from_nat_server {
        if let Some((key, entry)) = nat::one_entry_of::<V4>(&flow) {
            // SAFETY: a live map value, read once.
            let conn = unsafe { &*entry };
            let at = (key.dst(), key.dport().to_be_bytes());
            return to_client(frame, packet, &quote, at, conn);
        }
    }
    let Some(entry) = CONNS.get_ptr(flow) else {
        stats::count_icmp(IcmpCase::NoConnection);
        return Err(Verdict::PassNoService);
    };
    // SAFETY: the pointer comes from a successful map lookup.
    let conn = unsafe { &*entry };
    if conn.direction == Direction::Outbound as u8 {
        // A reply entry holds the virtual service's address and port.
        let at = (conn.addr(), conn.port_wire());
        return to_client(frame, packet, &quote, at, conn);
    }
    if conntrack::expired(conn, stats::now()) {
        stats::count_icmp(IcmpCase::NoConnection);
        return Err(Verdict::PassNoService);
    }
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    stats::count_packet(
        conn.service_index,
        conn.real_index,
        Way::In,
        packet.ip_len(),
        false,
    );
    let method = match Method::from_u8(conn.method) {
        // This director is the real server: its stack owns the flow.
        Some(Method::Local) => {
            stats::count_icmp(IcmpCase::ToRealServer);
            return Err(Verdict::PassLocal);
        }
        Some(method) => method,
        None => return Err(Verdict::DropNoDestination),
    };
    let found = forward::way_to_real(frame, packet, &Decision::to_real(conn));
    match method {
        Method::Nat => {
            stats::count_icmp(IcmpCase::NatToRealServer);
            let (real, port) = (conn.addr(), conn.port_wire());
            // SAFETY: pointer validated by Packet::parse.
            let outer = unsafe { &mut *packet.ip };
            let old = outer.dst;
            outer.dst = real;
            outer.patch_check(Delta::NONE.addr(old, real));
            let icmp = translate(&quote, End::Source, real, port);
            let patch = packet.l4_patch(Delta::NONE, icmp);
            forward::route(frame, packet, patch, found)
        }
        Method::Tunnel => {
            stats::count_icmp(IcmpCase::ToRealServer);
            tunnel::forward(frame, packet, conn.addr(), found)
        }
        _ => {
            stats::count_icmp(IcmpCase::ToRealServer);
            direct::forward(frame, packet, conn.addr(), found)
        }
    }
}

/// A NAT real server's error, about the client's packet as the director
/// DNATed it, back to the client from the virtual service at `at` (address
/// and port, wire), as IPVS does: the outer source too becomes the VIP.
/// `conn` is the entry the quote led to; its indexes count the packet.
#[inline(always)]
fn to_client<F: Frame>(
    frame: &F,
    packet: &Packet,
    quote: &Quote,
    at: ([u8; 4], [u8; 2]),
    conn: &Conn,
) -> Result<Verdict, Verdict> {
    if packet.ttl_expiring() {
        return Err(Verdict::PassToKernel);
    }
    stats::count_icmp(IcmpCase::NatToClient);
    stats::count_packet(
        conn.service_index,
        conn.real_index,
        Way::Out,
        packet.ip_len(),
        false,
    );
    let (vip, vport) = at;
    // SAFETY: pointer validated by Packet::parse.
    let outer = unsafe { &mut *packet.ip };
    let old = outer.src;
    outer.src = vip;
    outer.patch_check(Delta::NONE.addr(old, vip));
    let icmp = translate(quote, End::Destination, vip, vport);
    let patch = packet.l4_patch(Delta::NONE, icmp);
    let found = forward::way_to_client(frame, packet);
    forward::route(frame, packet, patch, found)
}

/// Rewrite one end (address and port) of the quoted packet, patching its
/// IPv4 checksum and its transport checksum (if quoted; a UDP checksum of
/// zero stays zero). Returns the ICMP checksum's change: every quoted word
/// that changed, checksums included.
#[inline(always)]
fn translate(quote: &Quote, end: End, addr: [u8; 4], port: [u8; 2]) -> Delta {
    // SAFETY: pointers validated by Quote::parse.
    let (ip, ports) = unsafe { (&mut *quote.ip, &mut *quote.ports) };
    let (old_addr, old_port) = match end {
        End::Source => {
            let old = (ip.src, ports.src);
            ip.src = addr;
            ports.src = port;
            old
        }
        End::Destination => {
            let old = (ip.dst, ports.dst);
            ip.dst = addr;
            ports.dst = port;
            old
        }
    };
    let address = Delta::NONE.addr(old_addr, addr);
    let port_change = Delta::NONE.word(u16::from_be_bytes(old_port), u16::from_be_bytes(port));
    let old_ip_check = u16::from_be_bytes(ip.check);
    ip.patch_check(address);
    let ip_check = u16::from_be_bytes(ip.check);
    let mut icmp = address.and(port_change).word(old_ip_check, ip_check);
    if let Some(field) = quote.l4_check {
        // SAFETY: bounds-checked by Quote::parse.
        let field = unsafe { &mut *field };
        let original = u16::from_be_bytes(*field);
        let mut patched = address.and(port_change).apply(original);
        if quote.udp {
            patched = checksum::udp_fixup(original, patched);
        }
        *field = patched.to_be_bytes();
        icmp = icmp.word(original, patched);
    }
    icmp
}
