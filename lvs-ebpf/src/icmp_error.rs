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
//! checksum over all of them (ICMPv6's over the outer pseudo-header too),
//! each patched for what changed. An error that quotes no live connection
//! passes to the kernel. Each case is counted in `ICMP_ERRORS`. Both
//! families: IPv4 in `lvs_icmp_error`, IPv6 in `lvs_icmp_error6` (a stage
//! of the IPv6 path, `decision::Stage::IcmpError`).

use lvs_common::{
    addr::Addr,
    checksum::{self, Delta},
    Conn, Direction, FlowKey, IcmpCase, Method, Verdict, IPPROTO_TCP, IPPROTO_UDP,
};

use crate::{
    conntrack,
    decision::{Decision, Stage},
    direct,
    family::{Family, IpHeader},
    forward,
    frame::Frame,
    headers::{pinned_ptr_at, Packet, Ports, ICMP_HEADER_LEN, TCP_CHECK_OFFSET, UDP_CHECK_OFFSET},
    maps::SETTINGS,
    nat, relevance,
    stats::{self, Way},
    tunnel,
};

/// The packet an ICMP error quotes: its IP header, its ports, and its
/// transport checksum when the quote reaches that far.
struct Quote<P: Family> {
    ip: *mut P::Ip,
    ports: *mut Ports,
    /// Null when the quote stops short of it (an `Option` would take twice
    /// the stack).
    l4_check: *mut [u8; 2],
    udp: bool,
}

impl<P: Family> Quote<P> {
    /// The quote of an ICMP error (`packet` is ICMP), if it is one the
    /// director may own: an error IPVS handles, quoting the head of a TCP
    /// or UDP packet. Anything else (another ICMP message, a quote cut
    /// before the ports) is not the director's: `PassUnsupported`.
    #[inline(always)]
    fn parse<F: Frame>(frame: &F, packet: &Packet<P>) -> Result<Self, Verdict> {
        // SAFETY: validated by Packet::parse (for ICMP: type, code, checksum).
        let kind = unsafe { (*packet.ports).src[0] };
        if !P::ICMP_ERRORS.contains(&kind) {
            return Err(Verdict::PassUnsupported);
        }
        // What the error's IP length covers is the quote; beyond it is the
        // frame's padding.
        let end = packet.ip_end();
        let ip_at = packet.l4_offset() + ICMP_HEADER_LEN;
        let (ip, header_len, proto) = P::parse_quote(frame, ip_at, end)?;
        let udp = match proto {
            IPPROTO_TCP => false,
            IPPROTO_UDP => true,
            _ => return Err(Verdict::PassUnsupported),
        };
        let ports_at = ip_at + header_len;
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
            pinned_ptr_at::<[u8; 2]>(frame, check_at).unwrap_or(core::ptr::null_mut())
        } else {
            core::ptr::null_mut()
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
    fn reversed(&self) -> FlowKey<P::Addr> {
        // SAFETY: pointers validated by parse.
        let (ip, ports) = unsafe { (&*self.ip, &*self.ports) };
        let proto = if self.udp { IPPROTO_UDP } else { IPPROTO_TCP };
        FlowKey::from_wire(ip.dst(), ip.src(), ports.dst, ports.src, proto)
    }
}

/// Which end of the quoted packet a translation rewrites.
#[derive(Clone, Copy)]
enum End {
    Source,
    Destination,
}

/// An ICMP packet: an error goes to the host that owns the connection it
/// quotes. IPv6 sends in the stage the decision names (its stack would not
/// hold both).
#[inline(always)]
pub fn to_owner<F: Frame, P: Family>(frame: &F) -> Result<Verdict, Verdict> {
    let packet = &Packet::<P>::parse(frame)?;
    let quote = Quote::parse(frame, packet)?;
    let to = owner(packet, &quote)?;
    if P::STAGED {
        if to.crosses_families() {
            return tunnel::across::<_, P>(frame, &to);
        }
        P::keep(&to);
        let stage = match Method::from_u8(to.method) {
            Some(Method::Nat) => Stage::IcmpTranslate,
            _ => Stage::sending(&to),
        };
        frame.to_ipv6_stage(stage);
        return Err(Verdict::PassUnsupported);
    }
    send(frame, packet, &quote, &to)
}

/// IPv6: an error about a NAT connection, as `to_owner` decided,
/// translated and sent.
#[inline(always)]
pub fn translated<F: Frame, P: Family>(frame: &F) -> Result<Verdict, Verdict> {
    let packet = &Packet::<P>::parse(frame)?;
    let quote = Quote::parse(frame, packet)?;
    let to = P::kept().ok_or(Verdict::PassUnsupported)?;
    nat_translated(frame, packet, &quote, &to)
}

/// Where the error goes, counted: a NAT connection's client (from the
/// virtual service) or the real server of the connection (on its method).
#[inline(always)]
fn owner<P: Family>(packet: &Packet<P>, quote: &Quote<P>) -> Result<Decision<P::Addr>, Verdict> {
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
        if let Some((key, entry)) = nat::one_entry_of::<P>(&flow) {
            // SAFETY: a live map value, read once.
            let conn = unsafe { &*entry };
            to_client(packet, conn)?;
            return Ok(Decision::to_client(key.dst(), key.dport().to_be_bytes()));
        }
    }
    let Some(entry) = P::conns().get_ptr(flow) else {
        stats::count_icmp(IcmpCase::NoConnection);
        return Err(Verdict::PassNoService);
    };
    // SAFETY: the pointer comes from a successful map lookup.
    let conn = unsafe { &*entry };
    if conn.direction == Direction::Outbound as u8 {
        to_client(packet, conn)?;
        // A reply entry holds the virtual service's address and port.
        return Ok(Decision::to_client(conn.addr(), conn.port_wire()));
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
    stats::count_icmp(if conn.method == Method::Nat as u8 {
        IcmpCase::NatToRealServer
    } else {
        IcmpCase::ToRealServer
    });
    Ok(Decision::to_real(conn))
}

/// A NAT real server's error, about the client's packet as the director
/// DNATed it, goes back to the client, counted with the connection of
/// `conn`, the entry the quote led to.
#[inline(always)]
fn to_client<P: Family>(packet: &Packet<P>, conn: &Conn<P::Addr>) -> Result<(), Verdict> {
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
    Ok(())
}

/// Send the error as decided: NAT's translated (`nat_translated`), DR's
/// and TUN's as it came.
#[inline(always)]
fn send<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    quote: &Quote<P>,
    to: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    match Method::from_u8(to.method) {
        Some(Method::Nat) => nat_translated(frame, packet, quote, to),
        Some(Method::Tunnel) if to.crosses_families() => tunnel::across::<_, P>(frame, to),
        Some(Method::Tunnel) => {
            let found = forward::way_to_real(frame, packet, to);
            tunnel::forward::<_, P, P>(frame, packet, to.addr, found)
        }
        Some(Method::Route) => {
            let found = forward::way_to_real(frame, packet, to);
            direct::forward(frame, packet, to.addr, found)
        }
        // This director is the real server: its stack owns the flow.
        Some(Method::Local) => Err(Verdict::PassLocal),
        None => Err(Verdict::DropNoDestination),
    }
}

/// A NAT connection's error, translated as IPVS does: towards the real
/// server, the outer destination and the quote's source become the real
/// server's; back to the client, the outer source and the quote's
/// destination become the virtual service's.
#[inline(always)]
fn nat_translated<F: Frame, P: Family>(
    frame: &F,
    packet: &Packet<P>,
    quote: &Quote<P>,
    to: &Decision<P::Addr>,
) -> Result<Verdict, Verdict> {
    let (found, end) = if to.to_client != 0 {
        (forward::way_to_client(frame, packet), End::Destination)
    } else {
        (forward::way_to_real(frame, packet, to), End::Source)
    };
    // SAFETY: pointer validated by Packet::parse.
    let outer = unsafe { &mut *packet.ip };
    // The outer header's other end: the quote's source is its destination.
    let old = match end {
        End::Source => outer.dst(),
        End::Destination => outer.src(),
    };
    match end {
        End::Source => outer.set_dst(to.addr),
        End::Destination => outer.set_src(to.addr),
    }
    let change = old.delta(&to.addr);
    outer.patch_check(change);
    let rewrite = Rewrite::new(end, to.port, quote.udp);
    let icmp = translate::<P>(quote.ip, quote.ports, quote.l4_check, &to.addr, rewrite);
    let patch = packet.l4_patch(pseudo_header::<P>(change), icmp);
    forward::route(frame, packet, patch, found)
}

/// The ICMP checksum's share of a change to the outer header's addresses:
/// ICMPv6 sums the pseudo-header, ICMP does not.
#[inline(always)]
fn pseudo_header<P: Family>(change: Delta) -> Delta {
    if P::ICMP_PSEUDO_HEADER {
        change
    } else {
        Delta::NONE
    }
}

/// What `translate` writes besides the address, in one word (a BPF
/// function takes five arguments, each a word): the port, which end, and
/// whether the quote is UDP.
#[derive(Clone, Copy)]
struct Rewrite(u32);

impl Rewrite {
    #[inline(always)]
    fn new(end: End, port: [u8; 2], udp: bool) -> Self {
        let end = match end {
            End::Source => 0,
            End::Destination => 1,
        };
        Self(u16::from_be_bytes(port) as u32 | end << 16 | (udp as u32) << 17)
    }
    #[inline(always)]
    fn end(self) -> End {
        if self.0 >> 16 & 1 == 0 {
            End::Source
        } else {
            End::Destination
        }
    }
    #[inline(always)]
    fn port(self) -> [u8; 2] {
        (self.0 as u16).to_be_bytes()
    }
    #[inline(always)]
    fn udp(self) -> bool {
        self.0 >> 17 != 0
    }
}

/// Rewrite one end (address and port) of the quoted packet (`quote`'s
/// pointers), patching its IPv4 checksum and its transport checksum (if
/// quoted; a UDP checksum of zero stays zero). Returns the ICMP checksum's
/// change: every quoted word that changed, checksums included. Out of
/// line, its frame apart from the FIB lookup's: IPv6's stack would not
/// hold both. (Given the quote's fields one by one: LLVM stored a quote
/// passed whole in pieces the verifier refuses for packet pointers.)
#[inline(never)]
fn translate<P: Family>(
    ip: *mut P::Ip,
    ports: *mut Ports,
    l4_check: *mut [u8; 2],
    addr: &P::Addr,
    rewrite: Rewrite,
) -> Delta {
    let (addr, port) = (*addr, rewrite.port());
    // SAFETY: pointers validated by Quote::parse.
    let (ip, ports) = unsafe { (&mut *ip, &mut *ports) };
    let (old_addr, old_port) = match rewrite.end() {
        End::Source => {
            let old = (ip.src(), ports.src);
            ip.set_src(addr);
            ports.src = port;
            old
        }
        End::Destination => {
            let old = (ip.dst(), ports.dst);
            ip.set_dst(addr);
            ports.dst = port;
            old
        }
    };
    let address = old_addr.delta(&addr);
    let port_change = Delta::NONE.word(u16::from_be_bytes(old_port), u16::from_be_bytes(port));
    let header_check = ip.patch_check_seen(address);
    let mut icmp = address.and(port_change).and(header_check);
    if !l4_check.is_null() {
        // SAFETY: bounds-checked by Quote::parse.
        let field = unsafe { &mut *l4_check };
        let original = u16::from_be_bytes(*field);
        let mut patched = address.and(port_change).apply(original);
        if rewrite.udp() {
            patched = checksum::udp_fixup(original, patched);
        }
        *field = patched.to_be_bytes();
        icmp = icmp.word(original, patched);
    }
    icmp
}
