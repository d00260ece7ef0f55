//! The oracle: given a frame, what the program did with it (action,
//! verdict, frame out) and the connection table before and after, was that
//! right? Every frame must be passed unchanged, dropped, or rewritten into
//! the frame its connection entry and the lab's routes call for, with every
//! checksum right (or, if it came in wrong, exactly as wrong: a router must
//! not launder a corrupted packet). Pure: the unit tests below feed it
//! made-up observations.

use std::collections::HashMap;

use etherparse::{checksum::Sum16BitWords, Ipv4Slice};
use lvs_common::{
    tcp_state::{STATE_COUNT, TCP_RST, TCP_SYN},
    Conn, ConnState, Direction, FlowKey, Method, NextHop, ReplyKey, ReplyServices, Verdict,
    NS_PER_SEC,
};

use crate::{
    frames::{ip_residual, l4_region, l4_residual, residual, ETH_LEN, ICMP, TCP, UDP},
    lab::{find_service, resolved, route, Route, ServiceSpec, LINKS, MTU},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    Xdp,
    Tc,
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const XDP_REDIRECT: u32 = 4;
pub const TC_ACT_UNSPEC: u32 = -1i32 as u32;
pub const TC_ACT_SHOT: u32 = 2;
pub const TC_ACT_REDIRECT: u32 = 7;

/// What the program must return for `verdict` (written out here rather
/// than taken from lvs-ebpf, which the oracle checks).
pub fn expected_action(program: Program, verdict: Verdict) -> u32 {
    use Verdict::*;
    let drop = matches!(
        verdict,
        DropNoDestination | DropTableFull | DropTooBig | DropForwardingDisabled | DropNoRoute
    );
    match program {
        Program::Xdp => match verdict {
            Redirect => XDP_REDIRECT,
            Transmit | IcmpTooBig => XDP_TX,
            _ if drop => XDP_DROP,
            _ => XDP_PASS,
        },
        Program::Tc => match verdict {
            Redirect | Transmit | PassResolveNeighbour => TC_ACT_REDIRECT,
            IcmpTooBig => TC_ACT_SHOT,
            _ if drop => TC_ACT_SHOT,
            _ => TC_ACT_UNSPEC,
        },
    }
}

/// One run of the program.
#[derive(Debug)]
pub struct Observed {
    pub action: u32,
    pub verdict: Verdict,
    pub output: Vec<u8>,
    /// The note left for `lvs_neigh` about the output (next hop, egress).
    pub neighbour_note: Option<([u8; 4], u32)>,
}

/// Where the frame came in, and the lab around it.
pub struct Context<'a> {
    pub program: Program,
    pub services: &'a [ServiceSpec],
    pub ifindex: [u32; 4],
    pub ingress_ifindex: u32,
    /// CLOCK_MONOTONIC (the program's clock) just before and just after
    /// the run.
    pub now_ns: (u64, u64),
    /// The idle timeouts in force, per state.
    pub timeouts: [u32; STATE_COUNT as usize],
    /// `net.ipv4.ip_forward`: off, the FIB refuses every lookup and DR and
    /// TUN take lvsd's next hops.
    pub forwarding: bool,
    /// `NEXT_HOPS`, by real server address.
    pub next_hops: &'a HashMap<[u8; 4], NextHop>,
    /// `REPLY_SERVICES`: the services whose connections to a NAT server
    /// keep one entry.
    pub reply_services: &'a dyn Fn(&ReplyKey) -> Option<ReplyServices>,
}

/// For a reply from a NAT server (`reply`, its 5-tuple), the inbound entry
/// of the one-entry connection it belongs to, shown as the reply entry it
/// stands for (VIP and port to rewrite to, the same indexes): what the
/// program finds first for a packet from a NAT server.
pub fn one_entry_reply(
    reply: &FlowKey,
    lookup: &dyn Fn(&FlowKey) -> Option<Conn>,
    reply_services: &dyn Fn(&ReplyKey) -> Option<ReplyServices>,
) -> Option<Conn> {
    let services = reply_services(&ReplyKey::of_reply(reply))?;
    services
        .services
        .iter()
        .take_while(|s| !s.is_unused())
        .find_map(|s| {
            let inbound = lookup(&reply.nat_inbound_from(s.addr, s.port))?;
            (inbound.direction == Direction::Inbound as u8
                && inbound.method == Method::Nat as u8
                && inbound.addr() == reply.src()
                && inbound.port() == reply.sport())
            .then(|| {
                Conn::new(
                    s.addr,
                    s.port,
                    Direction::Outbound,
                    Method::Nat as u8,
                    inbound.service_index,
                    inbound.real_index,
                    inbound.last_seen_ns,
                )
            })
        })
}

/// The 5-tuple as the program reads it (lenient: no length checks beyond
/// the headers), to look the flow up before and after the run.
pub fn flow_key(f: &[u8]) -> Option<FlowKey> {
    if f.len() < ETH_LEN + 20 || f[12..14] != [0x08, 0x00] || f[ETH_LEN] >> 4 != 4 {
        return None;
    }
    let ihl = (f[ETH_LEN] & 0x0f) as usize * 4;
    let frag = u16::from_be_bytes([f[ETH_LEN + 6], f[ETH_LEN + 7]]);
    let proto = f[ETH_LEN + 9];
    let l4 = ETH_LEN + ihl;
    let header = match proto {
        TCP => 20,
        UDP => 8,
        _ => return None,
    };
    if ihl < 20 || frag & 0x3fff != 0 || f.len() < l4 + header {
        return None;
    }
    let ip = &f[ETH_LEN..];
    Some(FlowKey::from_wire(
        ip[12..16].try_into().unwrap(),
        ip[16..20].try_into().unwrap(),
        [f[l4], f[l4 + 1]],
        [f[l4 + 2], f[l4 + 3]],
        proto,
    ))
}

/// A frame a router may forward, per etherparse: IPv4 with a header and
/// total length that agree with each other and with the frame, not a
/// fragment, TCP or UDP with its whole fixed header inside the packet.
#[derive(Debug)]
pub struct Parsed {
    pub ihl: usize,
    pub total: usize,
    pub proto: u8,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub dont_fragment: bool,
}

pub fn well_formed(f: &[u8]) -> Result<Parsed, String> {
    if f.len() < ETH_LEN || f[12..14] != [0x08, 0x00] {
        return Err("not IPv4".into());
    }
    let ip = Ipv4Slice::from_slice(&f[ETH_LEN..]).map_err(|e| format!("IPv4: {e}"))?;
    let h = ip.header();
    if h.is_fragmenting_payload() {
        return Err("a fragment".into());
    }
    let payload = ip.payload().payload;
    let proto = h.protocol().0;
    let needed = match proto {
        TCP => 20,
        UDP => 8,
        p => return Err(format!("protocol {p}")),
    };
    if payload.len() < needed {
        return Err(format!(
            "{} bytes of transport header inside the total length",
            payload.len()
        ));
    }
    Ok(Parsed {
        ihl: h.slice().len(),
        total: h.total_len() as usize,
        proto,
        src: h.source(),
        dst: h.destination(),
        sport: u16::from_be_bytes([payload[0], payload[1]]),
        dport: u16::from_be_bytes([payload[2], payload[3]]),
        tcp_flags: if proto == TCP { payload[13] } else { 0 },
        ttl: h.ttl(),
        dont_fragment: h.dont_fragment(),
    })
}

/// Whether the program could judge the frame well-formed: the reasons it
/// may call it malformed (IPv4 header or transport header cut short,
/// lengths that disagree).
fn malformed(f: &[u8]) -> bool {
    if f.len() < ETH_LEN + 20 || f[ETH_LEN] >> 4 != 4 || f[ETH_LEN] & 0x0f < 5 {
        return true;
    }
    match well_formed(f) {
        Ok(_) => false,
        // ICMP's own header must be whole too.
        Err(e) if e == "protocol 1" => {
            Ipv4Slice::from_slice(&f[ETH_LEN..]).is_ok_and(|ip| ip.payload().payload.len() < 8)
        }
        Err(e) => !(e == "a fragment" || e.starts_with("protocol")),
    }
}

fn unsupported(f: &[u8]) -> bool {
    if f.len() < ETH_LEN + 20 {
        return false;
    }
    let ip = &f[ETH_LEN..];
    let frag = u16::from_be_bytes([ip[6], ip[7]]);
    frag & 0x3fff != 0 || !matches!(ip[9], TCP | UDP)
}

/// A TCP SYN on an entry in TIME_WAIT or CLOSE whose service keeps no
/// persistence templates (the frame's flow, as `flow_key` reads it).
fn reopened_by(conn: &Conn, f: &[u8], ctx: &Context<'_>) -> bool {
    let Some(key) = flow_key(f) else {
        return false;
    };
    let syn =
        key.proto() == TCP && f[ETH_LEN + (f[ETH_LEN] & 0x0f) as usize * 4 + 13] & TCP_SYN != 0;
    let closed = conn.state == ConnState::TimeWait as u8 || conn.state == ConnState::Close as u8;
    let persistent = find_service(ctx.services, key.dst(), key.dport(), key.proto())
        .is_some_and(|s| s.persistent);
    syn && closed && !persistent
}

/// Whether the program, whose clock read fell between `now_ns.0` and
/// `now_ns.1`, found the entry live; `None` when its deadline fell in
/// between.
pub fn live(conn: &Conn, ctx: &Context<'_>) -> Option<bool> {
    let timeout = ctx.timeouts.get(conn.state as usize).copied().unwrap_or(0) as u64 * NS_PER_SEC;
    // Dead once idle for longer than the timeout (`Conn::expired`).
    let deadline = conn.last_seen_ns.saturating_add(timeout);
    if ctx.now_ns.1 <= deadline {
        Some(true)
    } else if ctx.now_ns.0 > deadline {
        Some(false)
    } else {
        None
    }
}

/// What a packet must have added to its entry's service and real server
/// counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub enum Counted {
    /// Nothing: it did not go by the entry.
    #[default]
    No,
    /// One packet of `bytes`, and a connection if it opened one.
    Packet { bytes: u64, new_conn: bool },
    /// A packet, but whether it opened a connection depends on which side
    /// of its entry's expiry the program's clock fell.
    Unsure,
}

/// What the program did that is worth counting, beyond right or wrong.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Notes {
    /// A NAT reply rewritten by an entry whose inbound side is gone, dead
    /// or now points at another real server (the sweeper's job).
    pub stale_reply: bool,
    /// A NAT flow whose real-server side (client address and port, real
    /// server and port) another flow, to another service, took over.
    pub shared_reply: bool,
    /// What the counters of the frame's entry took.
    pub counted: Counted,
    /// The connection an ICMP error went to, whose counters took it (the
    /// error has no entry of its own).
    pub owner: Option<Conn>,
}

/// Judge one run. `before`/`after`: the frame's flow entry around the run;
/// `lookup` reads any other entry after the run.
pub fn check(
    ctx: &Context<'_>,
    input: &[u8],
    obs: &Observed,
    before: Option<Conn>,
    after: Option<Conn>,
    lookup: &dyn Fn(&FlowKey) -> Option<Conn>,
) -> Result<Notes, String> {
    use Verdict::*;
    let want = expected_action(ctx.program, obs.verdict);
    if obs.action != want {
        return Err(format!(
            "verdict {} but action {} (expected {want})",
            obs.verdict.name(),
            obs.action as i32
        ));
    }
    // An IPv6 frame: the lab has no IPv6 service, so whatever the IPv6
    // director makes of it, it passes untouched.
    if input.len() >= ETH_LEN && input[12..14] == [0x86, 0xdd] {
        if !matches!(obs.verdict, PassNoService | PassUnsupported | PassMalformed) {
            return Err(format!(
                "{} for an IPv6 frame, with no IPv6 service",
                obs.verdict.name()
            ));
        }
        if obs.output != input {
            return Err(format!(
                "an IPv6 frame changed: {}",
                first_difference(input, &obs.output)
            ));
        }
        return Ok(Notes::default());
    }
    if let Some(error) = IcmpError::parse(input) {
        return check_icmp_error(ctx, input, obs, &error, lookup);
    }
    let inbound_before = before.filter(|c| c.direction == Direction::Inbound as u8);
    // A SYN on a closed connection no template holds starts a new one,
    // as if the entry had expired (IPVS's conn_reuse_mode 1).
    let reopened = inbound_before.is_some_and(|c| reopened_by(&c, input, ctx));
    let live_before = inbound_before
        .and_then(|c| live(&c, ctx))
        .map(|live| live && !reopened);
    // A live entry keeps its real server, whatever the packet.
    if let (Some(b), Some(true)) = (inbound_before, live_before) {
        let a = after.ok_or("a live entry disappeared")?;
        if (a.addr(), a.port(), a.method, a.real_index, a.service_index)
            != (b.addr(), b.port(), b.method, b.real_index, b.service_index)
        {
            return Err(format!("a live entry changed: {b:?} -> {a:?}"));
        }
    }
    let unchanged = || {
        if obs.output != input {
            return Err(format!(
                "{} but the frame changed: {}",
                obs.verdict.name(),
                first_difference(input, &obs.output)
            ));
        }
        Ok(())
    };
    let nothing_created = || {
        if before.is_none() && after.is_some() {
            return Err(format!(
                "{} but an entry was created: {after:?}",
                obs.verdict.name()
            ));
        }
        Ok(())
    };
    // No entry, or a dead one: the packet was judged as a new flow.
    let new_flow = before.is_none() || live_before == Some(false);
    let may_be_new = before.is_none() || live_before != Some(true);
    let service =
        flow_key(input).and_then(|k| find_service(ctx.services, k.dst(), k.dport(), k.proto()));

    match obs.verdict {
        PassNotIpv4 => {
            if input.len() >= ETH_LEN && input[12..14] == [0x08, 0x00] {
                return Err("pass_not_ipv4 for an IPv4 frame".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        PassMalformed => {
            if !malformed(input) {
                return Err("pass_malformed for a well-formed frame".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        PassUnsupported => {
            if !unsupported(input) {
                return Err("pass_unsupported for a TCP or UDP packet, not a fragment".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        PassNoService => {
            if !may_be_new || before.is_some_and(|c| c.direction == Direction::Outbound as u8) {
                return Err(format!("pass_no_service with an entry: {before:?}"));
            }
            if service.is_some() {
                return Err("pass_no_service for a service's address and port".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        PassNotSyn => {
            let k = flow_key(input).ok_or("pass_not_syn for a frame without a flow")?;
            let flags = match k.proto() {
                TCP => input[ETH_LEN + (input[ETH_LEN] & 0x0f) as usize * 4 + 13],
                _ => TCP_SYN,
            };
            if !may_be_new || flags & (TCP_SYN | TCP_RST) == TCP_SYN {
                return Err(format!(
                    "pass_not_syn for flags {flags:#04x}, proto {}, entry {before:?}",
                    k.proto()
                ));
            }
            if service.is_none() {
                return Err("pass_not_syn without a service".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        PassToKernel => {
            if input.len() < ETH_LEN + 20 || input[ETH_LEN + 8] > 1 {
                return Err("pass_to_kernel with a TTL above 1".into());
            }
            unchanged()?;
            nothing_created()?;
        }
        DropNoDestination => {
            if !new_flow || service.is_none_or(|s| s.schedulable()) {
                return Err(format!(
                    "drop_no_destination for a flow of a schedulable service ({before:?})"
                ));
            }
            nothing_created()?;
        }
        // The lab's table never fills, it has no router pair (no liveness
        // stamp), and one run at a time races no other CPU.
        DropTableFull | DropNoController | DropArpNoController | DropConcurrentNewFlow => {
            return Err(format!("{} cannot happen in this lab", obs.verdict.name()))
        }
        // The rest follow from the flow's entry and the lab's routes.
        PassLocal
        | DropTooBig
        | DropNoRoute
        | DropForwardingDisabled
        | Redirect
        | Transmit
        | PassResolveNeighbour
        | IcmpTooBig
        | PassTooBig
        | PassNoRoute => {
            let p = well_formed(input)
                .map_err(|e| format!("{} for a malformed frame ({e})", obs.verdict.name()))?;
            let conn = after.ok_or_else(|| format!("{} with no entry", obs.verdict.name()))?;
            let mut notes = Notes {
                counted: if inbound_before.is_some() && live_before.is_none() {
                    Counted::Unsure
                } else {
                    Counted::Packet {
                        bytes: p.total as u64,
                        new_conn: new_flow,
                    }
                },
                ..Notes::default()
            };
            if new_flow {
                if p.proto == TCP && p.tcp_flags & (TCP_SYN | TCP_RST) != TCP_SYN {
                    return Err(format!(
                        "a new flow scheduled from TCP flags {:#04x}",
                        p.tcp_flags
                    ));
                }
                if p.ttl <= 1 {
                    return Err("a new flow scheduled with TTL 1".into());
                }
            }
            check_entry(ctx, &p, &conn, lookup, &mut notes)?;
            let predicted = predict(ctx, &p, &conn);
            if predicted != obs.verdict {
                return Err(format!(
                    "verdict {} but the entry and the routes call for {} (entry {conn:?})",
                    obs.verdict.name(),
                    predicted.name()
                ));
            }
            let outbound = conn.direction == Direction::Outbound as u8;
            match obs.verdict {
                PassLocal => unchanged()?,
                PassTooBig if p.dont_fragment && outbound => unchanged()?,
                DropTooBig | DropNoRoute | DropForwardingDisabled => {}
                IcmpTooBig => {
                    let (method, _) = way(&p, &conn).ok_or("unknown method")?;
                    check_icmp_too_big(input, &p, MTU - overhead(method), &obs.output)?
                }
                _ => check_rewrite(ctx, input, &p, &conn, obs)?,
            }
            return Ok(notes);
        }
    }
    Ok(Notes::default())
}

/// The entry belongs to the frame's service (a configured real server, by
/// the configured method) and the table holds both directions of a NAT flow.
fn check_entry(
    ctx: &Context<'_>,
    p: &Parsed,
    conn: &Conn,
    lookup: &dyn Fn(&FlowKey) -> Option<Conn>,
    notes: &mut Notes,
) -> Result<(), String> {
    let key = |src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16| {
        FlowKey::from_wire(src, dst, sport.to_be_bytes(), dport.to_be_bytes(), p.proto)
    };
    if conn.direction == Direction::Outbound as u8 {
        if conn.method != Method::Nat as u8 {
            return Err(format!("an outbound entry that is not NAT: {conn:?}"));
        }
        // The client's side of the flow, if it is still the one this
        // reply entry was made for.
        let inbound = lookup(&key(p.dst, conn.addr(), p.dport, conn.port()));
        let current = inbound.is_some_and(|i| {
            i.direction == Direction::Inbound as u8
                && i.addr() == p.src
                && i.port() == p.sport
                && live(&i, ctx) != Some(false)
        });
        notes.stale_reply = !current;
        return Ok(());
    }
    let service = find_service(ctx.services, p.dst, p.dport, p.proto)
        .ok_or_else(|| format!("an inbound entry for no service: {conn:?}"))?;
    let configured = service.reals.iter().any(|r| {
        r.addr == conn.addr()
            && r.method as u8 == conn.method
            && (r.port == conn.port() || (service.port == 0 && conn.port() == p.dport))
    });
    if !configured {
        return Err(format!(
            "the entry names no real server of {:?}:{}: {conn:?}",
            service.vip, service.port
        ));
    }
    if conn.method == Method::Nat as u8 {
        let Some(reply) = lookup(&key(conn.addr(), p.src, conn.port(), p.sport)) else {
            // One entry: the server's replies must find it.
            let server = ReplyKey::from_wire(conn.addr(), conn.port_wire(), p.proto);
            let listed = (ctx.reply_services)(&server).is_some_and(|s| {
                s.services
                    .iter()
                    .any(|v| v.addr == p.dst && v.port == p.dport.to_be_bytes())
            });
            return if listed {
                Ok(())
            } else {
                Err("a NAT flow with neither a reply entry nor its service among the server's REPLY_SERVICES".into())
            };
        };
        if reply.direction != Direction::Outbound as u8 {
            return Err(format!("the reply entry is not outbound: {reply:?}"));
        }
        if (reply.addr(), reply.port()) != (p.dst, p.dport) {
            // Another flow of this client port, to another service, went to
            // the same real server and port: on the real server's side the
            // two are one 4-tuple (as in IPVS), and the later one owns the
            // replies. Anything else is wrong.
            let other = lookup(&key(p.src, reply.addr(), p.sport, reply.port()));
            if !other.is_some_and(|o| {
                o.direction == Direction::Inbound as u8
                    && (o.addr(), o.port()) == (conn.addr(), conn.port())
            }) {
                return Err(format!(
                    "the reply entry does not lead back: {reply:?} (its flow: {other:?})"
                ));
            }
            notes.shared_reply = true;
        }
    }
    Ok(())
}

/// Where a packet for `towards` leaves: the FIB's way (the lab's routes),
/// or, with forwarding off, the next hop lvsd resolved (DR and TUN only).
#[derive(Debug)]
struct Egress {
    ifindex: u32,
    next_hop: [u8; 4],
    /// The address the route selects (a tunnel's outer source).
    source: [u8; 4],
    /// The next hop's MAC and ours, when the FIB resolved it.
    macs: Option<([u8; 6], [u8; 6])>,
    /// The FIB checked the packet against this MTU.
    mtu: Option<usize>,
}

fn egress(ctx: &Context<'_>, method: Method, towards: [u8; 4]) -> Result<Egress, Verdict> {
    if !ctx.forwarding {
        if method == Method::Nat {
            return Err(Verdict::DropForwardingDisabled);
        }
        let hop = ctx.next_hops.get(&towards).ok_or(Verdict::DropNoRoute)?;
        return Ok(Egress {
            ifindex: hop.ifindex,
            next_hop: hop.gateway,
            source: hop.source,
            macs: None,
            mtu: None,
        });
    }
    match route(towards) {
        Route::Unroutable if method == Method::Nat => Err(Verdict::PassNoRoute),
        Route::Unroutable => Err(Verdict::DropNoRoute),
        Route::Via { link, next_hop } => Ok(Egress {
            ifindex: ctx.ifindex[link],
            next_hop,
            source: LINKS[link].addr,
            macs: resolved(next_hop).map(|mac| (mac, LINKS[link].mac)),
            mtu: Some(MTU),
        }),
    }
}

/// Bytes a method adds to the packet on its way to the real server.
fn overhead(method: Method) -> usize {
    if method == Method::Tunnel {
        20
    } else {
        0
    }
}

/// The method and the address a packet on this entry is routed towards.
fn way(p: &Parsed, conn: &Conn) -> Option<(Method, [u8; 4])> {
    if conn.direction == Direction::Outbound as u8 {
        Some((Method::Nat, p.dst))
    } else {
        Some((Method::from_u8(conn.method)?, conn.addr()))
    }
}

/// The verdict the entry and the lab's routes call for.
fn predict(ctx: &Context<'_>, p: &Parsed, conn: &Conn) -> Verdict {
    use Verdict::*;
    if p.ttl <= 1 {
        return PassToKernel;
    }
    let Some((method, towards)) = way(p, conn) else {
        return DropNoDestination;
    };
    if method == Method::Local {
        return PassLocal;
    }
    let out = match egress(ctx, method, towards) {
        Ok(out) => out,
        Err(verdict) => return verdict,
    };
    if out.mtu.is_some_and(|mtu| p.total + overhead(method) > mtu) {
        return match method {
            // The kernel checks the size before IPVS translates: a reply
            // goes to it as the server sent it, to be answered there; the
            // kernel's answer to a client would quote the rewritten packet.
            Method::Nat if p.dont_fragment && conn.direction == Direction::Outbound as u8 => {
                PassTooBig
            }
            Method::Nat if p.dont_fragment => DropTooBig,
            Method::Nat => PassTooBig,
            _ if p.dont_fragment && ctx.program == Program::Xdp => IcmpTooBig,
            _ => DropTooBig,
        };
    }
    match out.macs {
        Some(_) if out.ifindex == ctx.ingress_ifindex => Transmit,
        Some(_) => Redirect,
        None => PassResolveNeighbour,
    }
}

/// A frame rewritten for its entry: NAT (either way), DR or TUN, sent,
/// handed to the neighbour layer, or passed rewritten (NAT that the FIB
/// could not place).
fn check_rewrite(
    ctx: &Context<'_>,
    input: &[u8],
    p: &Parsed,
    conn: &Conn,
    obs: &Observed,
) -> Result<(), String> {
    use Verdict::*;
    let (method, towards) = way(p, conn).ok_or("unknown method")?;
    let out = match egress(ctx, method, towards) {
        Ok(out) => out,
        // PassNoRoute: rewritten, nothing else.
        Err(_) => return check_packet(input, p, conn, false, &obs.output, None),
    };
    let frame = obs.output.as_slice();
    if obs.verdict == PassResolveNeighbour && ctx.program == Program::Xdp {
        // The note lvs_neigh reads, in NEIGH_NOTES.
        let expected = Some((out.next_hop, out.ifindex));
        if obs.neighbour_note != expected {
            return Err(format!(
                "neighbour note {:?}, expected {expected:?}",
                obs.neighbour_note
            ));
        }
    }
    let macs = match obs.verdict {
        Redirect | Transmit => out.macs,
        _ => None,
    };
    let forwarded = obs.verdict != PassTooBig;
    match method {
        Method::Nat | Method::Route => check_packet(input, p, conn, forwarded, frame, macs),
        Method::Tunnel => check_tunnel(input, p, conn, out.source, frame, macs),
        Method::Local => Err("a local real server's frame was rewritten".into()),
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> String {
    if a.len() != b.len() {
        return format!("length {} became {}", a.len(), b.len());
    }
    let at = a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0);
    format!("byte {at}: {:#04x} became {:#04x}", a[at], b[at])
}

/// `output` equals `expected` except at the checksum fields `masked`.
fn same_but_checksums(expected: &[u8], output: &[u8], masked: &[usize]) -> Result<(), String> {
    let mut e = expected.to_vec();
    if e.len() == output.len() {
        for &at in masked {
            e[at..at + 2].copy_from_slice(&output[at..at + 2]);
        }
    }
    if e != output {
        return Err(format!(
            "rewritten frame differs from the expected one: {}",
            first_difference(&e, output)
        ));
    }
    Ok(())
}

/// The checksums at IPv4 header `out_l3` of `output` are as right (or as
/// wrong) as those at `in_l3` of `input`; a UDP checksum of 0 (none)
/// stays 0, and no other becomes 0.
fn checksums_carried(
    input: &[u8],
    in_l3: usize,
    output: &[u8],
    out_l3: usize,
    what: &str,
) -> Result<(), String> {
    let (i, o) = (ip_residual(input, in_l3), ip_residual(output, out_l3));
    if i != o {
        return Err(format!(
            "{what}: IPv4 header checksum residual {i:?} became {o:?}"
        ));
    }
    let (i, o) = (l4_residual(input, in_l3), l4_residual(output, out_l3));
    let region = l4_region(output, out_l3).ok_or("no transport header out")?;
    let stored = &output[region.check_at..region.check_at + 2];
    let in_region = l4_region(input, in_l3).ok_or("no transport header in")?;
    let stored_in = &input[in_region.check_at..in_region.check_at + 2];
    if region.proto == UDP && (stored_in == [0, 0]) != (stored == [0, 0]) {
        return Err(format!(
            "{what}: UDP checksum {stored_in:02x?} became {stored:02x?}"
        ));
    }
    if i != o && !(region.proto == UDP && stored == [0, 0]) {
        return Err(format!(
            "{what}: transport checksum residual {i:?} became {o:?}"
        ));
    }
    Ok(())
}

/// The expected Ethernet header: new MACs when sent, else as it came.
fn ethernet(input: &[u8], macs: Option<([u8; 6], [u8; 6])>) -> Vec<u8> {
    let mut e = input[..ETH_LEN].to_vec();
    if let Some((dst, src)) = macs {
        e[..6].copy_from_slice(&dst);
        e[6..12].copy_from_slice(&src);
    }
    e
}

/// NAT or DR: the same frame with the entry's addresses and port, the TTL
/// one lower when forwarded, and the checksums carried.
fn check_packet(
    input: &[u8],
    p: &Parsed,
    conn: &Conn,
    forwarded: bool,
    output: &[u8],
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), String> {
    let outbound = conn.direction == Direction::Outbound as u8;
    let mut e = ethernet(input, macs);
    e.extend_from_slice(&input[ETH_LEN..]);
    let ip = ETH_LEN;
    let l4 = ip + p.ihl;
    if conn.method == Method::Nat as u8 {
        let (addr_at, port_at) = if outbound { (12, 0) } else { (16, 2) };
        e[ip + addr_at..ip + addr_at + 4].copy_from_slice(&conn.addr());
        e[l4 + port_at..l4 + port_at + 2].copy_from_slice(&conn.port_wire());
    }
    if forwarded {
        e[ip + 8] -= 1;
    }
    let check_at = l4 + if p.proto == TCP { 16 } else { 6 };
    same_but_checksums(&e, output, &[ip + 10, check_at])?;
    checksums_carried(input, ETH_LEN, output, ETH_LEN, "rewritten")
}

/// TUN: an outer header as IPVS builds it (TOS, ID and DF from the inner
/// header, TTL the inner one after its decrement, from the egress link's
/// address), over the packet as it came but for its TTL.
fn check_tunnel(
    input: &[u8],
    p: &Parsed,
    conn: &Conn,
    source: [u8; 4],
    output: &[u8],
    macs: Option<([u8; 6], [u8; 6])>,
) -> Result<(), String> {
    let inner_in = &input[ETH_LEN..];
    let mut e = ethernet(input, macs);
    let ttl = p.ttl - 1;
    let total = ((p.total + 20) as u16).to_be_bytes();
    e.extend_from_slice(&[0x45, inner_in[1], total[0], total[1]]);
    e.extend_from_slice(&inner_in[4..6]);
    e.extend_from_slice(&[inner_in[6] & 0x40, 0, ttl, 4, 0, 0]);
    e.extend_from_slice(&source);
    e.extend_from_slice(&conn.addr());
    let inner = e.len();
    e.extend_from_slice(inner_in);
    e[inner + 8] = ttl;
    // The outer checksum is checked below; the inner's transport header
    // and payload are untouched, byte for byte.
    same_but_checksums(&e, output, &[ETH_LEN + 10, inner + 10])?;
    if ip_residual(output, ETH_LEN) != Some(0) {
        return Err("outer IPv4 header checksum wrong".into());
    }
    let (i, o) = (ip_residual(input, ETH_LEN), ip_residual(output, inner));
    if i != o {
        return Err(format!(
            "inner IPv4 header checksum residual {i:?} became {o:?}"
        ));
    }
    Ok(())
}

/// An ICMP error the program takes to the owner of the connection it
/// quotes (destination unreachable, source quench, time exceeded, quoting
/// the head of a TCP or UDP packet up to its ports), in a well-formed
/// packet.
struct IcmpError {
    outer: Parsed,
    /// Where the quoted IPv4 header starts in the frame.
    quoted_at: usize,
    /// Where the quoted ports start.
    ports_at: usize,
    /// The quoted packet's 5-tuple reversed: its connection's other way.
    reversed: FlowKey,
}

impl IcmpError {
    fn parse(f: &[u8]) -> Option<Self> {
        if f.len() < ETH_LEN || f[12..14] != [0x08, 0x00] {
            return None;
        }
        let ip = Ipv4Slice::from_slice(&f[ETH_LEN..]).ok()?;
        let h = ip.header();
        if h.is_fragmenting_payload() || h.protocol().0 != ICMP {
            return None;
        }
        let icmp = ip.payload().payload;
        if icmp.len() < 8 + 20 || !matches!(icmp[0], 3 | 4 | 11) {
            return None;
        }
        let quoted = &icmp[8..];
        let qihl = (quoted[0] & 0x0f) as usize * 4;
        let frag = u16::from_be_bytes([quoted[6], quoted[7]]);
        if quoted[0] >> 4 != 4
            || qihl < 20
            || !matches!(quoted[9], TCP | UDP)
            || frag & 0x1fff != 0
            || quoted.len() < qihl + 4
        {
            return None;
        }
        let ihl = h.slice().len();
        let quoted_at = ETH_LEN + ihl + 8;
        let ports = &quoted[qihl..];
        Some(Self {
            outer: Parsed {
                ihl,
                total: h.total_len() as usize,
                proto: ICMP,
                src: h.source(),
                dst: h.destination(),
                sport: 0,
                dport: 0,
                tcp_flags: 0,
                ttl: h.ttl(),
                dont_fragment: h.dont_fragment(),
            },
            quoted_at,
            ports_at: quoted_at + qihl,
            reversed: FlowKey::from_wire(
                quoted[16..20].try_into().unwrap(),
                quoted[12..16].try_into().unwrap(),
                [ports[2], ports[3]],
                [ports[0], ports[1]],
                quoted[9],
            ),
        })
    }
}

/// An ICMP error: to the owner of the connection it quotes, translated for
/// NAT (outer and quoted addresses, quoted port, every checksum carried as
/// right as it came), unchanged for DR and TUN; passed when it quotes no
/// live connection. The program looks the connection up as a reply from a
/// NAT server first (one-entry connections), then in the table.
fn check_icmp_error(
    ctx: &Context<'_>,
    input: &[u8],
    obs: &Observed,
    error: &IcmpError,
    lookup: &dyn Fn(&FlowKey) -> Option<Conn>,
) -> Result<Notes, String> {
    use Verdict::*;
    let unchanged = |what: &str| {
        if obs.output != input {
            return Err(format!(
                "{what} but the frame changed: {}",
                first_difference(input, &obs.output)
            ));
        }
        Ok(Notes::default())
    };
    let owner = one_entry_reply(&error.reversed, lookup, ctx.reply_services)
        .or_else(|| lookup(&error.reversed));
    let Some(conn) = owner else {
        if obs.verdict != PassNoService {
            return Err(format!(
                "{} for an ICMP error that quotes no connection",
                obs.verdict.name()
            ));
        }
        return unchanged("an ICMP error about no connection");
    };
    let outbound = conn.direction == Direction::Outbound as u8;
    let counted = match if outbound {
        Some(true)
    } else {
        live(&conn, ctx)
    } {
        Some(true) => Counted::Packet {
            bytes: error.outer.total as u64,
            new_conn: false,
        },
        Some(false) if obs.verdict == PassNoService => {
            return unchanged("an ICMP error about an expired connection")
        }
        Some(false) => {
            return Err(format!(
                "{} for an ICMP error about an expired connection",
                obs.verdict.name()
            ))
        }
        None if obs.verdict == PassNoService => return unchanged("an ICMP error"),
        None => Counted::Unsure,
    };
    let p = &error.outer;
    let predicted = match predict(ctx, p, &conn) {
        // Never an ICMP error about an ICMP error, and never one put back
        // untranslated.
        IcmpTooBig => DropTooBig,
        PassTooBig if p.dont_fragment => DropTooBig,
        v => v,
    };
    if predicted != obs.verdict {
        return Err(format!(
            "verdict {} for an ICMP error but its connection and the routes call for {} ({conn:?})",
            obs.verdict.name(),
            predicted.name()
        ));
    }
    let notes = Notes {
        counted,
        owner: Some(conn),
        ..Notes::default()
    };
    let (method, towards) = way(p, &conn).ok_or("unknown method")?;
    match obs.verdict {
        PassToKernel => return unchanged("pass_to_kernel").map(|_| Notes::default()),
        PassLocal => return unchanged("pass_local").map(|_| notes),
        DropTooBig | DropNoRoute | DropForwardingDisabled => return Ok(notes),
        _ => {}
    }
    let out = egress(ctx, method, towards).ok();
    if let (Some(out), PassResolveNeighbour, Program::Xdp) = (&out, obs.verdict, ctx.program) {
        let expected = Some((out.next_hop, out.ifindex));
        if obs.neighbour_note != expected {
            return Err(format!(
                "neighbour note {:?}, expected {expected:?}",
                obs.neighbour_note
            ));
        }
    }
    let macs = match (obs.verdict, &out) {
        (Redirect | Transmit, Some(out)) => out.macs,
        _ => None,
    };
    let forwarded = !matches!(obs.verdict, PassTooBig | PassNoRoute);
    let output = obs.output.as_slice();
    if method == Method::Tunnel {
        let source = out.ok_or("tunnelled without a way out")?.source;
        check_tunnel(input, p, &conn, source, output, macs)?;
        return Ok(notes);
    }
    let mut e = ethernet(input, macs);
    e.extend_from_slice(&input[ETH_LEN..]);
    let ip = ETH_LEN;
    if forwarded {
        e[ip + 8] -= 1;
    }
    let mut masked = vec![ip + 10];
    let end = ETH_LEN + p.total;
    if method == Method::Nat {
        let (q, ports) = (error.quoted_at, error.ports_at);
        // Inbound: to the real server (outer destination, quoted source);
        // outbound: back from the virtual service (outer source, quoted
        // destination).
        let (outer_at, quoted_at, port_at) = if outbound { (12, 16, 2) } else { (16, 12, 0) };
        e[ip + outer_at..ip + outer_at + 4].copy_from_slice(&conn.addr());
        e[q + quoted_at..q + quoted_at + 4].copy_from_slice(&conn.addr());
        e[ports + port_at..ports + port_at + 2].copy_from_slice(&conn.port_wire());
        let l4_check = ports + if input[q + 9] == TCP { 16 } else { 6 };
        masked.extend([ETH_LEN + p.ihl + 2, q + 10]);
        if l4_check + 2 <= end {
            masked.push(l4_check);
        }
        same_but_checksums(&e, output, &masked)?;
        // Within the error's length, every checksum as right as it came:
        // the outer and quoted IPv4 headers', the quoted transport one
        // (over what is quoted: the change is the same), and ICMP's.
        let (i, o) = (&input[..end], &output[..end]);
        for (at, what) in [(ETH_LEN, "outer"), (q, "quoted")] {
            let (a, b) = (ip_residual(i, at), ip_residual(o, at));
            if a != b {
                return Err(format!("{what} IPv4 checksum residual {a:?} became {b:?}"));
            }
        }
        if l4_check + 2 <= end {
            let (a, b) = (l4_residual(i, q), l4_residual(o, q));
            let zero = |f: &[u8]| f[l4_check..l4_check + 2] == [0, 0];
            if input[q + 9] == UDP && zero(i) != zero(o) {
                return Err("quoted UDP checksum: none became some, or some none".into());
            }
            if a != b && !(input[q + 9] == UDP && zero(o)) {
                return Err(format!(
                    "quoted transport checksum residual {a:?} became {b:?}"
                ));
            }
        }
        let (a, b) = (l4_residual(i, ETH_LEN), l4_residual(o, ETH_LEN));
        if a != b {
            return Err(format!("ICMP checksum residual {a:?} became {b:?}"));
        }
    } else {
        same_but_checksums(&e, output, &masked)?;
        let (a, b) = (ip_residual(input, ETH_LEN), ip_residual(output, ETH_LEN));
        if a != b {
            return Err(format!("IPv4 checksum residual {a:?} became {b:?}"));
        }
    }
    Ok(notes)
}

/// ICMP fragmentation-needed back to the client, from the VIP, quoting
/// the header and 8 bytes, naming the MTU (less a tunnel's outer header).
fn check_icmp_too_big(input: &[u8], p: &Parsed, mtu: usize, output: &[u8]) -> Result<(), String> {
    let quoted = &input[ETH_LEN..ETH_LEN + p.ihl + 8];
    let total = ((20 + 8 + quoted.len()) as u16).to_be_bytes();
    let mut e = input[6..12].to_vec();
    e.extend_from_slice(&input[..6]);
    e.extend_from_slice(&[
        0x08, 0x00, 0x45, 0, total[0], total[1], 0, 0, 0, 0, 64, 1, 0, 0,
    ]);
    e.extend_from_slice(&p.dst);
    e.extend_from_slice(&p.src);
    let mtu = (mtu as u16).to_be_bytes();
    e.extend_from_slice(&[3, 4, 0, 0, 0, 0, mtu[0], mtu[1]]);
    e.extend_from_slice(quoted);
    same_but_checksums(&e, output, &[ETH_LEN + 10, ETH_LEN + 22])?;
    let icmp = &output[ETH_LEN + 20..];
    if ip_residual(output, ETH_LEN) != Some(0)
        || residual(Sum16BitWords::new().add_slice(icmp)) != 0
    {
        return Err("ICMP too-big with a wrong checksum".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        frames::{build, Spec},
        lab::services,
    };

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];

    fn syn() -> Vec<u8> {
        build(&Spec {
            src_mac: CLIENT_MAC,
            dst_mac: LINKS[0].mac,
            src: [198, 18, 1, 2],
            dst: [198, 18, 0, 10],
            proto: TCP,
            sport: 40000,
            dport: 80,
            tcp_flags: TCP_SYN,
            ttl: 64,
            tos: 0,
            id: 1,
            dont_fragment: false,
            payload: b"hello".to_vec(),
        })
    }

    /// The entries a NAT flow to 198.18.11.2:8080 leaves.
    fn nat_entries(f: &[u8]) -> (Conn, Conn, FlowKey) {
        let inbound = Conn::new(
            [198, 18, 11, 2],
            8080u16.to_be_bytes(),
            Direction::Inbound,
            Method::Nat as u8,
            0,
            0,
            1,
        );
        let outbound = Conn::new(
            [198, 18, 0, 10],
            80u16.to_be_bytes(),
            Direction::Outbound,
            Method::Nat as u8,
            0,
            0,
            1,
        );
        let k = flow_key(f).unwrap();
        let reply = FlowKey::from_wire(
            [198, 18, 11, 2],
            k.src(),
            8080u16.to_be_bytes(),
            k.sport().to_be_bytes(),
            TCP,
        );
        (inbound, outbound, reply)
    }

    /// The frame as the NAT path must leave it, built the slow way.
    fn dnat(f: &[u8]) -> Vec<u8> {
        let mut o = f.to_vec();
        o[..6].copy_from_slice(&crate::lab::neighbour_mac([198, 18, 11, 2]));
        o[6..12].copy_from_slice(&LINKS[1].mac);
        o[22] -= 1;
        o[30..34].copy_from_slice(&[198, 18, 11, 2]);
        o[36..38].copy_from_slice(&8080u16.to_be_bytes());
        crate::frames::fix_checksums(&mut o);
        o
    }

    fn judge(input: &[u8], output: Vec<u8>) -> Result<Notes, String> {
        let services = services();
        let next_hops = HashMap::new();
        let ctx = Context {
            program: Program::Xdp,
            services: &services,
            ifindex: [2, 3, 4, 5],
            ingress_ifindex: 1,
            now_ns: (10, 11),
            timeouts: lvs_common::tcp_state::DEFAULT_TIMEOUTS,
            forwarding: true,
            next_hops: &next_hops,
            reply_services: &|_| None,
        };
        let (inbound, outbound, reply) = nat_entries(input);
        let obs = Observed {
            action: XDP_REDIRECT,
            verdict: Verdict::Redirect,
            output,
            neighbour_note: None,
        };
        let lookup = move |k: &FlowKey| (*k == reply).then_some(outbound);
        check(&ctx, input, &obs, None, Some(inbound), &lookup)
    }

    #[test]
    fn a_right_rewrite_passes() {
        let f = syn();
        let notes = judge(&f, dnat(&f)).unwrap();
        // One packet of 45 bytes, opening a connection.
        assert_eq!(
            notes.counted,
            Counted::Packet {
                bytes: 45,
                new_conn: true
            }
        );
    }

    #[test]
    fn wrong_checksums_lengths_and_flows_are_caught() {
        let f = syn();
        let good = dnat(&f);
        let mut bad_ip = good.clone();
        bad_ip[24] ^= 1;
        let mut bad_tcp = good.clone();
        bad_tcp[50] ^= 1;
        let mut wrong_port = good.clone();
        wrong_port[37] ^= 1;
        let mut no_ttl = good.clone();
        no_ttl[22] += 1;
        crate::frames::fix_checksums(&mut no_ttl);
        let mut wrong_mac = good.clone();
        wrong_mac[0] ^= 1;
        let short = good[..good.len() - 1].to_vec();
        for (what, out) in [
            ("IP checksum", bad_ip),
            ("TCP checksum", bad_tcp),
            ("port", wrong_port),
            ("TTL", no_ttl),
            ("MAC", wrong_mac),
            ("length", short),
        ] {
            assert!(judge(&f, out).is_err(), "{what}");
        }
    }

    #[test]
    fn a_corrupted_checksum_must_stay_corrupted() {
        let mut f = syn();
        f[50] ^= 0x10;
        let mut laundered = dnat(&f);
        assert!(judge(&f, laundered.clone()).is_err(), "laundered");
        // Carried: the same error after the rewrite.
        laundered[50] ^= 0x10;
        assert!(judge(&f, laundered).is_ok());
    }

    /// The frame as TUN must leave it towards 198.18.11.3, built the slow
    /// way: the inner packet with its TTL one lower under a fresh header.
    fn encapsulated(f: &[u8]) -> Vec<u8> {
        let mut inner = f.to_vec();
        inner[ETH_LEN + 8] -= 1;
        crate::frames::fix_checksums(&mut inner);
        let mut o = crate::lab::neighbour_mac([198, 18, 11, 3]).to_vec();
        o.extend_from_slice(&LINKS[1].mac);
        o.extend_from_slice(&[0x08, 0x00, 0x45, f[15]]);
        o.extend_from_slice(&((f.len() - ETH_LEN + 20) as u16).to_be_bytes());
        o.extend_from_slice(&[f[18], f[19], f[20] & 0x40, 0, inner[22], 4, 0, 0]);
        o.extend_from_slice(&LINKS[1].addr);
        o.extend_from_slice(&[198, 18, 11, 3]);
        o.extend_from_slice(&inner[ETH_LEN..]);
        crate::frames::fix_checksums(&mut o);
        o
    }

    fn judge_tunnel(input: &[u8], output: Vec<u8>) -> Result<Notes, String> {
        let services = services();
        let next_hops = HashMap::new();
        let ctx = Context {
            program: Program::Tc,
            services: &services,
            ifindex: [2, 3, 4, 5],
            ingress_ifindex: 2,
            now_ns: (10, 11),
            timeouts: lvs_common::tcp_state::DEFAULT_TIMEOUTS,
            forwarding: true,
            next_hops: &next_hops,
            reply_services: &|_| None,
        };
        let conn = Conn::new(
            [198, 18, 11, 3],
            80u16.to_be_bytes(),
            Direction::Inbound,
            Method::Tunnel as u8,
            4,
            9,
            1,
        );
        let obs = Observed {
            action: TC_ACT_REDIRECT,
            verdict: Verdict::Redirect,
            output,
            neighbour_note: None,
        };
        check(&ctx, input, &obs, None, Some(conn), &|_| None)
    }

    #[test]
    fn a_tunnelled_frame_is_checked_inside_and_out() {
        let mut f = syn();
        f[30..34].copy_from_slice(&[198, 18, 0, 23]);
        f[20] = 0x40; // DF
        crate::frames::fix_checksums(&mut f);
        let good = encapsulated(&f);
        assert!(judge_tunnel(&f, good.clone()).is_ok());
        let mut outer_check = good.clone();
        outer_check[25] ^= 1;
        let mut outer_total = good.clone();
        outer_total[17] += 1;
        crate::frames::fix_checksums(&mut outer_total);
        let mut outer_source = good.clone();
        outer_source[29] = 9;
        crate::frames::fix_checksums(&mut outer_source);
        let mut no_df = good.clone();
        no_df[20] = 0;
        crate::frames::fix_checksums(&mut no_df);
        let mut inner_ttl = good.clone();
        inner_ttl[42] += 1;
        let mut inner_tcp = good.clone();
        inner_tcp[70] ^= 1;
        for (what, out) in [
            ("outer checksum", outer_check),
            ("outer total length", outer_total),
            ("outer source", outer_source),
            ("outer DF", no_df),
            ("inner TTL", inner_ttl),
            ("inner TCP", inner_tcp),
        ] {
            assert!(judge_tunnel(&f, out).is_err(), "{what}");
        }
    }

    #[test]
    fn a_frame_longer_than_its_total_length_is_well_formed_shorter_is_not() {
        let f = syn();
        let mut padded = f.clone();
        padded.extend_from_slice(&[0; 6]);
        assert!(well_formed(&padded).is_ok());
        assert!(well_formed(&f[..f.len() - 1]).is_err());
        let mut short_total = f.clone();
        short_total[16..18].copy_from_slice(&39u16.to_be_bytes());
        assert!(well_formed(&short_total).is_err());
    }
}
