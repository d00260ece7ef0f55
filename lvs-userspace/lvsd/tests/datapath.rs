//! Tier 2: the real XDP object through `BPF_PROG_TEST_RUN`, byte for byte.
//!
//! Each test runs in a private network namespace (its own thread) with veth
//! interfaces and permanent neighbours, so `bpf_fib_lookup` resolves exactly
//! as on a router. Maps are seeded by the real controller from a config.
//! Expected frames come from an oracle that rewrites the same fields and
//! recomputes every checksum from scratch.
//!
//! Needs root: `cargo xtask test` runs these (they are `#[ignore]`d for a
//! plain `cargo test`).

use std::{net::Ipv4Addr, process::Command};

use etherparse::PacketBuilder;
use lvs::controller::Controller;
use lvs_common::{checksum, ConnState, Settings};
use lvs_datapath::{KernelDatapath, Limits, TestRun};
use lvs_state::{api::Snapshot, config};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const CLIENT: [u8; 4] = [198, 18, 1, 2];
const VIP: [u8; 4] = [198, 18, 0, 10];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
const DIRECTOR_CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];

/// The note `lvs_neigh` reads for the packet the director passed:
/// next hop and egress ifindex.
fn noted(c: &Controller<KernelDatapath>, frame: &[u8]) -> ([u8; 4], u32) {
    let note = c
        .datapath()
        .neighbour_note(frame)
        .expect("a neighbour note for the passed packet");
    (note.next_hop, note.ifindex)
}

/// `frame` with its IPv4 TTL one lower and the header checksum redone.
fn ttl_decremented(mut frame: Vec<u8>) -> Vec<u8> {
    frame[22] -= 1;
    frame[24..26].copy_from_slice(&[0, 0]);
    let check = checksum::full(&frame[14..34], 0);
    frame[24..26].copy_from_slice(&check.to_be_bytes());
    frame
}

fn real_ip(i: u8) -> [u8; 4] {
    [198, 18, 10 + i, 2]
}
fn real_mac(i: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0x10 + i, 2]
}
fn director_mac(i: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0x10 + i, 1]
}
fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sh(cmd: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .expect("spawn sh");
    assert!(status.success(), "`{cmd}` failed");
}

const CONFIG: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.10:80"
scheduler = "rr"
[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
[[service.real]]
address = "198.18.12.2:8080"
method = "nat"
[[service.real]]
address = "198.18.13.2:8080"
method = "nat"

[[service]]
protocol = "udp"
address = "198.18.0.10:53"
scheduler = "rr"
[[service.real]]
address = "198.18.11.2:5353"
method = "nat"

# DR to a real server on the client's LAN (cli0): out the way it came.
[[service]]
protocol = "tcp"
address = "198.18.0.20:80"
scheduler = "rr"
[[service.real]]
address = "198.18.1.3:80"
method = "route"

# DR to a real server on another LAN (srv2).
[[service]]
protocol = "tcp"
address = "198.18.0.21:80"
scheduler = "rr"
[[service.real]]
address = "198.18.12.3:80"
method = "route"

# DR to a real server whose MAC the kernel has not resolved.
[[service]]
protocol = "tcp"
address = "198.18.0.22:80"
scheduler = "rr"
[[service.real]]
address = "198.18.13.3:80"
method = "route"

# IP-in-IP to a real server behind srv1.
[[service]]
protocol = "tcp"
address = "198.18.0.23:80"
scheduler = "rr"
[[service.real]]
address = "198.18.11.3:80"
method = "tunnel"

[[service]]
protocol = "udp"
address = "198.18.0.23:53"
scheduler = "rr"
[[service.real]]
address = "198.18.11.3:53"
method = "tunnel"

# IP-in-IP to a real server whose next hop (on srv3) is not resolved.
[[service]]
protocol = "tcp"
address = "198.18.0.24:80"
scheduler = "rr"
[[service.real]]
address = "198.18.13.4:80"
method = "tunnel"

# Two DR servers, for expiry and rescheduling.
[[service]]
protocol = "tcp"
address = "198.18.0.25:80"
scheduler = "rr"
[[service.real]]
address = "198.18.1.3:80"
method = "route"
[[service.real]]
address = "198.18.12.3:80"
method = "route"
"#;

/// DR and TUN real servers the fixtures resolve (198.18.13.3 stays unresolved).
const FORWARDED_REALS: [(&str, [u8; 4]); 3] = [
    ("cli0", [198, 18, 1, 3]),
    ("srv2", [198, 18, 12, 3]),
    ("srv1", [198, 18, 11, 3]),
];

fn forwarded_mac(ip: [u8; 4]) -> [u8; 6] {
    [2, 0, 0, 0, ip[2], ip[3]]
}

/// A router in a private namespace: `cli0` towards the client, `srvN`
/// towards real server N. Real server 3's neighbour is left unresolved when
/// `resolve_all` is false.
fn router(resolve_all: bool) -> Controller<KernelDatapath> {
    router_with(resolve_all, Limits::default(), CONFIG)
}

fn router_with(resolve_all: bool, limits: Limits, config: &str) -> Controller<KernelDatapath> {
    router_with_settings(resolve_all, limits, config, Settings::default())
}

fn router_with_settings(
    resolve_all: bool,
    limits: Limits,
    config: &str,
    settings: Settings,
) -> Controller<KernelDatapath> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    // No IPv6: router solicitations on the new links would hit the program
    // and move the verdict counters the tests read.
    sh("ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    let mut links = vec![(
        "cli0".to_string(),
        "198.18.1.1",
        DIRECTOR_CLIENT_MAC,
        "198.18.1.2".to_string(),
        CLIENT_MAC,
    )];
    for i in 1..=3u8 {
        links.push((
            format!("srv{i}"),
            ["198.18.11.1", "198.18.12.1", "198.18.13.1"][i as usize - 1],
            director_mac(i),
            Ipv4Addr::from(real_ip(i)).to_string(),
            real_mac(i),
        ));
    }
    for (name, addr, mac, peer, peer_mac) in &links {
        sh(&format!(
            "ip link add {name} address {} type veth peer name {name}p && ip addr add {addr}/24 dev {name} && ip link set {name} up && ip link set {name}p up",
            mac_str(*mac)
        ));
        if resolve_all || name != "srv3" {
            sh(&format!(
                "ip neigh replace {peer} lladdr {} dev {name} nud permanent",
                mac_str(*peer_mac)
            ));
        }
    }
    for (dev, ip) in FORWARDED_REALS {
        sh(&format!(
            "ip neigh replace {} lladdr {} dev {dev} nud permanent",
            Ipv4Addr::from(ip),
            mac_str(forwarded_mac(ip))
        ));
    }
    let ifaces: Vec<String> = links.iter().map(|l| l.0.clone()).collect();
    let mut controller =
        Controller::new(KernelDatapath::attach(&ifaces, settings, limits).expect("attach"));
    controller
        .apply(&config::parse(config, "fixture.toml").unwrap())
        .expect("apply config");
    controller
}

fn run(c: &Controller<KernelDatapath>, frame: &[u8]) -> TestRun {
    c.datapath().test_run(frame).expect("BPF_PROG_TEST_RUN")
}

/// As if the frame arrived on interface `ingress`.
fn run_on(c: &Controller<KernelDatapath>, ingress: &str, frame: &[u8]) -> TestRun {
    c.datapath()
        .test_run_from(Some(ifindex(ingress)), frame)
        .expect("BPF_PROG_TEST_RUN")
}

fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: &str, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let b = if flags.contains('R') { b.rst() } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// Rewrite the frame the slow, obvious way: set the fields, then recompute
/// the IPv4 and transport checksums over the whole header and segment.
fn oracle(
    frame: &[u8],
    src: Option<([u8; 4], u16)>,
    dst: Option<([u8; 4], u16)>,
    macs: Option<([u8; 6], [u8; 6])>,
) -> Vec<u8> {
    let mut f = frame.to_vec();
    let ihl = (f[14] & 0x0f) as usize * 4;
    let l4 = 14 + ihl;
    if let Some((smac, dmac)) = macs {
        f[0..6].copy_from_slice(&dmac);
        f[6..12].copy_from_slice(&smac);
        f[22] -= 1;
    }
    if let Some((ip, port)) = src {
        f[26..30].copy_from_slice(&ip);
        f[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
    }
    if let Some((ip, port)) = dst {
        f[30..34].copy_from_slice(&ip);
        f[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
    }
    f[24..26].copy_from_slice(&[0, 0]);
    let ip_check = checksum::full(&f[14..l4], 0);
    f[24..26].copy_from_slice(&ip_check.to_be_bytes());
    let proto = f[23];
    if proto != 6 && proto != 17 {
        return f;
    }
    let check_at = l4 + if proto == 6 { 16 } else { 6 };
    f[check_at..check_at + 2].copy_from_slice(&[0, 0]);
    let seg_len = f.len() - l4;
    let mut pseudo = 0u32;
    for w in f[26..34].chunks(2) {
        pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    pseudo += proto as u32 + seg_len as u32;
    let mut c = checksum::full(&f[l4..], pseudo);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

fn snapshot(c: &Controller<KernelDatapath>) -> Snapshot {
    c.snapshot().unwrap()
}

fn verdict(c: &Controller<KernelDatapath>, name: &str) -> u64 {
    snapshot(c)
        .verdicts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| *v)
        .unwrap()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_tcp_inbound_and_reply_are_rewritten_exactly() {
    let c = router(true);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_REDIRECT);
    // rr over list order (newest first): 198.18.13.2 was added last.
    assert_eq!(
        out.frame,
        oracle(
            &syn,
            None,
            Some((real_ip(3), 8080)),
            Some((director_mac(3), real_mac(3)))
        )
    );

    // The same flow keeps its server, with data.
    let data = tcp((CLIENT, 40000), (VIP, 80), "A", b"GET / HTTP/1.0\r\n\r\n");
    let out = run(&c, &data);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &data,
            None,
            Some((real_ip(3), 8080)),
            Some((director_mac(3), real_mac(3)))
        )
    );

    // The reply is SNATed back to VIP:80 and routed to the client.
    let reply = tcp((real_ip(3), 8080), (CLIENT, 40000), "SA", b"hello");
    let out = run(&c, &reply);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &reply,
            Some((VIP, 80)),
            None,
            Some((DIRECTOR_CLIENT_MAC, CLIENT_MAC))
        )
    );

    let snap = snapshot(&c);
    let svc = &snap.services[0];
    assert_eq!(
        (svc.stats.conns, svc.stats.in_packets, svc.stats.out_packets),
        (1, 2, 1)
    );
    assert_eq!(
        svc.stats.in_bytes,
        (syn.len() - 14 + data.len() - 14) as u64
    );
    assert_eq!(svc.stats.out_bytes, (reply.len() - 14) as u64);
    let r3 = svc
        .reals
        .iter()
        .find(|r| r.spec.server.addr == std::net::IpAddr::from(real_ip(3)))
        .unwrap();
    assert_eq!(
        (r3.stats.conns, r3.stats.in_packets, r3.stats.out_packets),
        (1, 2, 1)
    );
    assert_eq!(verdict(&c, "redirect"), 3);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_udp_inbound_and_reply_are_rewritten_exactly() {
    let c = router(true);
    let q = udp((CLIENT, 5000), (VIP, 53), b"query");
    let out = run(&c, &q);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &q,
            None,
            Some((real_ip(1), 5353)),
            Some((director_mac(1), real_mac(1)))
        )
    );
    let a = udp((real_ip(1), 5353), (CLIENT, 5000), b"answer!");
    let out = run(&c, &a);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &a,
            Some((VIP, 53)),
            None,
            Some((DIRECTOR_CLIENT_MAC, CLIENT_MAC))
        )
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_udp_datagram_without_checksum_keeps_none() {
    let c = router(true);
    let mut q = udp((CLIENT, 5001), (VIP, 53), b"no checksum");
    q[40..42].copy_from_slice(&[0, 0]);
    let out = run(&c, &q);
    assert_eq!(out.action, XDP_REDIRECT);
    // Addresses, port, MACs and TTL change; the UDP checksum stays 0 (RFC 768).
    let mut expected = oracle(
        &q,
        None,
        Some((real_ip(1), 5353)),
        Some((director_mac(1), real_mac(1))),
    );
    expected[40..42].copy_from_slice(&[0, 0]);
    assert_eq!(out.frame, expected);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn new_flows_follow_the_published_rr_ring() {
    let c = router(true);
    let picked: Vec<[u8; 4]> = (0..6)
        .map(|i| {
            let out = run(&c, &tcp((CLIENT, 41000 + i), (VIP, 80), "S", b""));
            assert_eq!(out.action, XDP_REDIRECT);
            out.frame[30..34].try_into().unwrap()
        })
        .collect();
    let order = [real_ip(3), real_ip(2), real_ip(1)];
    assert_eq!(picked, [order, order].concat());
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn traffic_not_for_a_service_passes_untouched() {
    let c = router(true);
    let other = tcp((CLIENT, 40000), ([198, 18, 0, 99], 80), "S", b"");
    let wrong_port = tcp((CLIENT, 40000), (VIP, 81), "S", b"");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[198, 18, 1, 1]);
    for frame in [&other, &wrong_port, &arp] {
        let out = run(&c, frame);
        assert_eq!((out.action, &out.frame), (XDP_PASS, frame));
    }
    assert_eq!(verdict(&c, "pass_no_service"), 2);
    assert_eq!(verdict(&c, "pass_not_ipv4"), 1);
    // A mid-flow segment for the VIP with no entry goes to the kernel, as in IPVS.
    let ack = tcp((CLIENT, 40001), (VIP, 80), "A", b"x");
    let out = run(&c, &ack);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &ack));
    assert_eq!(verdict(&c, "pass_not_syn"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn traffic_for_no_service_passes_before_the_connection_table() {
    use lvs_common::{Conn, Direction, FlowKey, Method};
    use lvs_datapath::Datapath;
    let mut c = router(true);
    // An entry for a flow to an address no service has: it is never
    // looked at, the packet passes as not for a service.
    let other = ([198, 18, 0, 99], 80);
    let key = FlowKey::from_wire(CLIENT, other.0, 40000u16.to_be_bytes(), [0, 80], 6);
    let now = c.datapath().now_ns().unwrap();
    let conn = Conn::new(
        real_ip(1),
        8080u16.to_be_bytes(),
        Direction::Inbound,
        Method::Nat as u8,
        0,
        0,
        now,
    );
    c.datapath_mut().set_connection(key, conn).unwrap();
    let frame = tcp((CLIENT, 40000), other, "A", b"x");
    let out = run(&c, &frame);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &frame));
    assert_eq!(verdict(&c, "pass_no_service"), 1);
    // A reply from a NAT real server is let through to its entry.
    let syn = tcp((CLIENT, 40001), (VIP, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    let real = c
        .datapath()
        .connections::<[u8; 4]>()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.sport() == 40001)
        .map(|(_, conn)| conn.addr())
        .unwrap();
    let reply = tcp((real, 8080), (CLIENT, 40001), "SA", b"");
    assert_eq!(run(&c, &reply).action, XDP_REDIRECT);
    assert_eq!(verdict(&c, "pass_no_service"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn truncated_headers_pass_uncorrupted_and_are_counted() {
    let c = router(true);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    for cut in [14 + 10, 14 + 20 + 12] {
        let frame = &syn[..cut];
        let out = run(&c, frame);
        assert_eq!(
            (out.action, out.frame.as_slice()),
            (XDP_PASS, frame),
            "cut at {cut}"
        );
    }
    assert_eq!(verdict(&c, "pass_malformed"), 2);
    // Nothing was scheduled.
    assert_eq!(snapshot(&c).services[0].stats.conns, 0);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv4_options_are_forwarded_correctly() {
    let c = router(true);
    let plain = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    // Insert four NOP option bytes: IHL 6, total length + 4.
    let mut f = plain[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 1]);
    f.extend_from_slice(&plain[34..]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f[24..26].copy_from_slice(&[0, 0]);
    let c0 = checksum::full(&f[14..38], 0);
    f[24..26].copy_from_slice(&c0.to_be_bytes());
    let out = run(&c, &f);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &f,
            None,
            Some((real_ip(3), 8080)),
            Some((director_mac(3), real_mac(3)))
        )
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_unresolved_neighbour_hands_the_rewritten_packet_to_the_neighbour_layer() {
    let c = router(false);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let out = run(&c, &syn);
    // DNATed for real server 3 and its TTL decremented, with the note
    // lvs_neigh reads (not the kernel's forwarding, which drops a reply
    // from a VIP this router holds as a martian).
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(noted(&c, &out.frame), (real_ip(3), ifindex("srv3")));
    let expected = ttl_decremented(oracle(&syn, None, Some((real_ip(3), 8080)), None));
    assert_eq!(&out.frame[..], expected.as_slice());
    assert_eq!(verdict(&c, "pass_resolve_neighbour"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_expiring_ttl_goes_to_the_kernel_unrewritten() {
    let c = router(true);
    // The kernel's ICMP time-exceeded must quote what the client sent.
    let mut syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    syn[22] = 1;
    syn[24..26].copy_from_slice(&[0, 0]);
    let check = checksum::full(&syn[14..34], 0);
    syn[24..26].copy_from_slice(&check.to_be_bytes());
    let out = run(&c, &syn);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &syn));
    assert_eq!(verdict(&c, "pass_to_kernel"), 1);
    assert_eq!(snapshot(&c).services[0].stats.conns, 0);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_service_with_no_eligible_server_drops_new_flows() {
    let mut c = router(true);
    let cmds = lvs_cli::ipvsadm::parse_restore(
        "-e -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 0\n-e -t 198.18.0.10:80 -r 198.18.12.2:8080 -m -w 0\n-e -t 198.18.0.10:80 -r 198.18.13.2:8080 -m -w 0\n",
    )
    .unwrap();
    c.apply(&cmds).unwrap();
    let out = run(&c, &tcp((CLIENT, 40000), (VIP, 80), "S", b""));
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_no_destination"), 1);
}

fn ifindex(name: &str) -> u32 {
    nix::net::if_::if_nametoindex(name).unwrap()
}

/// The frame as DR sends it: new MACs and TTL - 1, nothing else.
fn routed(frame: &[u8], smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    oracle(frame, None, None, Some((smac, dmac)))
}

/// The frame as TUN sends it: the inner packet with TTL - 1, under an outer
/// header built field by field as IPVS's ip_vs_tunnel_xmit does.
fn encapsulated(frame: &[u8], src: [u8; 4], dst: [u8; 4], smac: [u8; 6], dmac: [u8; 6]) -> Vec<u8> {
    let inner = routed(frame, smac, dmac)[14..].to_vec();
    let total = (inner.len() + 20) as u16;
    let mut outer = vec![0x45, inner[1]];
    outer.extend_from_slice(&total.to_be_bytes());
    outer.extend_from_slice(&inner[4..6]);
    outer.extend_from_slice(&[inner[6] & 0x40, 0, inner[8], 4, 0, 0]);
    outer.extend_from_slice(&src);
    outer.extend_from_slice(&dst);
    framed((smac, dmac), outer, &inner)
}

/// An Ethernet frame (`smac`, `dmac`) around the IPv4 header `header`, its
/// checksum summed here in full, and `payload`.
fn framed((smac, dmac): ([u8; 6], [u8; 6]), mut header: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    let check = checksum::full(&header, 0);
    header[10..12].copy_from_slice(&check.to_be_bytes());
    let mut f = dmac.to_vec();
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&header);
    f.extend_from_slice(payload);
    f
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_on_the_ingress_lan_goes_back_out_with_xdp_tx() {
    let c = router(true);
    let real = [198, 18, 1, 3];
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 20], 80), "S", b"");
    let out = run_on(&c, "cli0", &syn);
    assert_eq!(out.action, XDP_TX);
    assert_eq!(
        out.frame,
        routed(&syn, DIRECTOR_CLIENT_MAC, forwarded_mac(real))
    );
    let data = tcp((CLIENT, 40000), ([198, 18, 0, 20], 80), "A", b"payload");
    let out = run_on(&c, "cli0", &data);
    assert_eq!(
        (out.action, out.frame),
        (
            XDP_TX,
            routed(&data, DIRECTOR_CLIENT_MAC, forwarded_mac(real))
        )
    );
    assert_eq!(verdict(&c, "transmit"), 2);
    let snap = snapshot(&c);
    let svc = snap
        .services
        .iter()
        .find(|s| s.spec.id.vip.addr == std::net::IpAddr::from([198, 18, 0, 20]))
        .unwrap();
    assert_eq!(
        (svc.stats.conns, svc.stats.in_packets, svc.stats.out_packets),
        (1, 2, 0)
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_to_another_lan_is_redirected() {
    let c = router(true);
    let real = [198, 18, 12, 3];
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 21], 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        routed(&syn, director_mac(2), forwarded_mac(real))
    );
    assert_eq!(verdict(&c, "redirect"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_with_an_unresolved_neighbour_is_handed_to_the_neighbour_layer() {
    let c = router(true);
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 22], 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_PASS);
    // The note lvs_neigh reads: next hop and egress.
    assert_eq!(noted(&c, &out.frame), ([198, 18, 13, 3], ifindex("srv3")));
    // The frame itself: TTL already decremented, MACs left to the kernel.
    let expected = ttl_decremented(oracle(&syn, None, None, None));
    assert_eq!(&out.frame[..], expected.as_slice());
    assert_eq!(verdict(&c, "pass_resolve_neighbour"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn tun_tcp_and_udp_are_encapsulated_exactly() {
    let c = router(true);
    let real = [198, 18, 11, 3];
    let director_srv1 = [198, 18, 11, 1];
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 23], 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        encapsulated(
            &syn,
            director_srv1,
            real,
            director_mac(1),
            forwarded_mac(real)
        )
    );
    let data = tcp(
        (CLIENT, 40000),
        ([198, 18, 0, 23], 80),
        "A",
        b"GET / HTTP/1.0\r\n\r\n",
    );
    let out = run(&c, &data);
    assert_eq!(
        out.frame,
        encapsulated(
            &data,
            director_srv1,
            real,
            director_mac(1),
            forwarded_mac(real)
        )
    );
    let q = udp((CLIENT, 5000), ([198, 18, 0, 23], 53), b"query");
    let out = run(&c, &q);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        encapsulated(
            &q,
            director_srv1,
            real,
            director_mac(1),
            forwarded_mac(real)
        )
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn tun_uses_a_configured_outer_source() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
    sh(&format!("ip link add srv1 address {} type veth peer name srv1p && ip addr add 198.18.11.1/24 dev srv1 && ip link set srv1 up && ip link set srv1p up && ip neigh replace 198.18.11.3 lladdr {} dev srv1 nud permanent", mac_str(director_mac(1)), mac_str(forwarded_mac([198, 18, 11, 3]))));
    let settings = Settings {
        tunnel_source: [198, 18, 0, 1],
        ..Settings::default()
    };
    let mut c = Controller::new(
        KernelDatapath::attach(&["srv1".to_string()], settings, Limits::default()).unwrap(),
    );
    c.apply(
        &lvs_cli::ipvsadm::parse_restore(
            "-A -t 198.18.0.23:80 -s rr\n-a -t 198.18.0.23:80 -r 198.18.11.3 -i\n",
        )
        .unwrap(),
    )
    .unwrap();
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 23], 80), "S", b"");
    let out = run_on(&c, "srv1", &syn);
    assert_eq!(out.action, XDP_TX);
    assert_eq!(
        out.frame,
        encapsulated(
            &syn,
            [198, 18, 0, 1],
            [198, 18, 11, 3],
            director_mac(1),
            forwarded_mac([198, 18, 11, 3])
        )
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn tun_too_big_with_df_answers_icmp_fragmentation_needed() {
    let c = router(true);
    sh("ip link set srv1 mtu 1000");
    let mut big = tcp(
        (CLIENT, 40000),
        ([198, 18, 0, 23], 80),
        "S",
        &[0x5a; 1000 - 40],
    );
    assert_eq!(big.len(), 14 + 1000);
    big[20] |= 0x40; // DF
    big[24..26].copy_from_slice(&[0, 0]);
    let check = checksum::full(&big[14..34], 0);
    big[24..26].copy_from_slice(&check.to_be_bytes());
    let out = run(&c, &big);
    assert_eq!(out.action, XDP_TX);

    // From the VIP to the client, quoting the IP header and
    // 8 bytes, naming the MTU that leaves room for the outer header.
    let mtu = 980u16.to_be_bytes();
    let expected = icmp_error(
        ([198, 18, 0, 23], CLIENT),
        (3, 4, [0, 0, mtu[0], mtu[1]]),
        &big,
        28,
        (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
        64,
    );
    assert_eq!(out.frame, expected);
    assert_eq!(verdict(&c, "icmp_too_big"), 1);

    // Without DF, IPVS would fragment the outer packet; XDP cannot, and the
    // kernel would drop our own outer source as a martian: dropped, counted.
    let mut loose = big.clone();
    loose[20] &= !0x40;
    loose[35] ^= 1; // another client port: a new flow
    let loose = oracle(&loose, None, None, None);
    let out = run(&c, &loose);
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_too_big"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn input_only_states_expire_and_the_flow_is_scheduled_afresh() {
    let mut c = router(true);
    let vip = ([198, 18, 0, 25], 80);
    let first = |f: &TestRun| -> [u8; 6] { f.frame[0..6].try_into().unwrap() };
    let syn = tcp((CLIENT, 40000), vip, "S", b"");
    let out = run(&c, &syn);
    // Newest first: 198.18.12.3 (redirect to srv2).
    assert_eq!(first(&out), forwarded_mac([198, 18, 12, 3]));
    let state = |c: &Controller<KernelDatapath>| {
        use lvs_datapath::Datapath;
        let conns = c.datapath().connections::<[u8; 4]>().unwrap();
        let (_, conn) = conns
            .iter()
            .find(|(k, _)| k.dst() == vip.0)
            .copied()
            .unwrap();
        ConnState::from_u8(conn.state).unwrap()
    };
    assert_eq!(state(&c), ConnState::SynRecv);
    run(&c, &tcp((CLIENT, 40000), vip, "A", b""));
    assert_eq!(state(&c), ConnState::Established);
    let mut fin = tcp((CLIENT, 40000), vip, "A", b"");
    fin[47] |= 0x01;
    let fin = oracle(&fin, None, None, None);
    run(&c, &fin);
    // INPUT-ONLY: FIN in ESTABLISHED goes to FIN_WAIT, not CLOSE_WAIT.
    assert_eq!(state(&c), ConnState::FinWait);

    // With every timeout at 0 the entry is dead: a new SYN on the same
    // tuple is scheduled again (the next rr pick), and the sweeper frees it.
    let defaults = lvs_common::tcp_state::DEFAULT_TIMEOUTS;
    c.set_timeouts([0; 12]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let out = run(&c, &syn);
    assert_eq!(first(&out), forwarded_mac([198, 18, 1, 3]));
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(c.sweep().unwrap(), 1);
    {
        use lvs_datapath::Datapath;
        assert!(c
            .datapath()
            .connections::<[u8; 4]>()
            .unwrap()
            .iter()
            .all(|(k, _)| k.dst() != vip.0));
    }
    c.set_timeouts(defaults).unwrap();
    // A live entry survives the sweep.
    run(&c, &syn);
    assert_eq!(c.sweep().unwrap(), 0);
    assert_eq!(state(&c), ConnState::SynRecv);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn decapsulation_strips_valid_ipip_and_leaves_the_rest_untouched() {
    let mut decap = lvs_datapath::StandaloneXdp::decap().expect("load lvs_decap");
    let inner = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let outer = encapsulated(
        &inner,
        [198, 18, 11, 1],
        [198, 18, 11, 3],
        director_mac(1),
        forwarded_mac([198, 18, 11, 3]),
    );
    let out = decap.test_run(&outer).unwrap();
    assert_eq!(out.action, XDP_PASS);
    let mut expected = outer[..14].to_vec();
    expected.extend_from_slice(&outer[34..]);
    assert_eq!(out.frame, expected);

    // Truncated inside, lying about its length, or plain TCP: untouched.
    let truncated = outer[..34 + 12].to_vec();
    let mut lying = outer.clone();
    lying[17] += 4;
    for frame in [&truncated, &lying, &inner] {
        let out = decap.test_run(frame).unwrap();
        assert_eq!((out.action, &out.frame), (XDP_PASS, frame));
    }
    assert_eq!(decap.counters().unwrap(), [1, 1, 2]);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn tun_with_an_unresolved_next_hop_is_encapsulated_then_handed_to_the_neighbour_layer() {
    let c = router(true);
    let real = [198, 18, 13, 4];
    let syn = tcp((CLIENT, 40000), ([198, 18, 0, 24], 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(noted(&c, &out.frame), (real, ifindex("srv3")));
    // Encapsulated from the director's srv3 address; the Ethernet header is
    // left as it came, for bpf_redirect_neigh to rewrite.
    let expected = encapsulated(
        &syn,
        [198, 18, 13, 1],
        real,
        CLIENT_MAC,
        DIRECTOR_CLIENT_MAC,
    );
    assert_eq!(&out.frame[..], expected.as_slice());
    assert_eq!(verdict(&c, "pass_resolve_neighbour"), 1);
}

/// The flow's state and its server's (ActiveConn, InActConn) after a recount.
fn state_and_counts(
    c: &mut Controller<KernelDatapath>,
    vip: [u8; 4],
    real: [u8; 4],
) -> (ConnState, u32, u32) {
    use lvs_datapath::Datapath;
    c.recount().unwrap();
    let conns = c.datapath().connections::<[u8; 4]>().unwrap();
    let (_, conn) = conns
        .iter()
        .find(|(k, conn)| k.dst() == vip && conn.direction == 0)
        .copied()
        .unwrap();
    let snap = c.snapshot().unwrap();
    let r = snap
        .services
        .iter()
        .flat_map(|s| &s.reals)
        .find(|r| r.spec.server.addr == std::net::IpAddr::from(real) && r.stats.conns > 0)
        .unwrap();
    (
        ConnState::from_u8(conn.state).unwrap(),
        r.active_conns,
        r.inactive_conns,
    )
}

fn with_flags(frame: Vec<u8>, flags: u8) -> Vec<u8> {
    let mut f = frame;
    f[47] = flags;
    oracle(&f, None, None, None)
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_states_follow_both_directions_and_the_counts_follow_the_states() {
    use ConnState::*;
    let mut c = router(true);
    let real = real_ip(3);
    let inbound = |flags: u8| with_flags(tcp((CLIENT, 40000), (VIP, 80), "", b""), flags);
    let outbound = |flags: u8| with_flags(tcp((real, 8080), (CLIENT, 40000), "", b""), flags);
    let (syn, fin, ack, rst) = (0x02, 0x01, 0x10, 0x04);
    let steps: [(Vec<u8>, (ConnState, u32, u32)); 7] = [
        (inbound(syn), (SynRecv, 1, 0)),
        (outbound(syn | ack), (SynRecv, 1, 0)),
        (inbound(ack), (Established, 1, 0)),
        (inbound(fin | ack), (CloseWait, 0, 1)),
        (outbound(ack), (CloseWait, 0, 1)),
        (outbound(fin | ack), (TimeWait, 0, 1)),
        (inbound(rst), (Close, 0, 1)),
    ];
    for (i, (frame, expected)) in steps.into_iter().enumerate() {
        run(&c, &frame);
        assert_eq!(state_and_counts(&mut c, VIP, real), expected, "step {i}");
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_states_follow_the_input_only_table_and_the_counts_follow_the_states() {
    use ConnState::*;
    let mut c = router(true);
    let (vip, real) = ([198, 18, 0, 21], [198, 18, 12, 3]);
    let inbound = |flags: u8| with_flags(tcp((CLIENT, 40000), (vip, 80), "", b""), flags);
    let (syn, fin, ack, rst) = (0x02, 0x01, 0x10, 0x04);
    for (i, (flags, expected)) in [
        (syn, (SynRecv, 1, 0)),
        (ack, (Established, 1, 0)),
        (fin | ack, (FinWait, 0, 1)),
        (ack, (FinWait, 0, 1)),
        (rst, (Close, 0, 1)),
    ]
    .into_iter()
    .enumerate()
    {
        run(&c, &inbound(flags));
        assert_eq!(state_and_counts(&mut c, vip, real), expected, "step {i}");
    }
}

/// The scheduler forms beyond the plain ring: sh and dh buckets, an lblc
/// locality service, a persistent port-0 service and a wlc service with
/// weights, all NAT to the three real servers.
const FORMS: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.30:80"
scheduler = "sh"
[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
[[service.real]]
address = "198.18.12.2:8080"
method = "nat"
[[service.real]]
address = "198.18.13.2:8080"
method = "nat"

[[service]]
protocol = "tcp"
address = "198.18.0.31:80"
scheduler = "dh"
[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
[[service.real]]
address = "198.18.12.2:8080"
method = "nat"
[[service.real]]
address = "198.18.13.2:8080"
method = "nat"

[[service]]
protocol = "tcp"
address = "198.18.0.32:80"
scheduler = "lblc"
[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
[[service.real]]
address = "198.18.12.2:8080"
method = "nat"

[[service]]
protocol = "tcp"
address = "198.18.0.33:0"
scheduler = "rr"
persistent = 360
[[service.real]]
address = "198.18.11.2:0"
method = "nat"
[[service.real]]
address = "198.18.12.2:0"
method = "nat"
[[service.real]]
address = "198.18.13.2:0"
method = "nat"

[[service]]
protocol = "tcp"
address = "198.18.0.34:80"
scheduler = "wlc"
[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
weight = 1
[[service.real]]
address = "198.18.12.2:8080"
method = "nat"
weight = 2
[[service.real]]
address = "198.18.13.2:8080"
method = "nat"
weight = 3
"#;

fn with_forms() -> Controller<KernelDatapath> {
    let mut c = router(true);
    c.apply(&config::parse(FORMS, "forms.toml").unwrap())
        .expect("apply forms");
    c
}

/// A SYN from `client` to `vip:port`, which must be DNATed exactly: the
/// real server it went to.
fn syn_reaches(c: &Controller<KernelDatapath>, client: ([u8; 4], u16), vip: ([u8; 4], u16)) -> u8 {
    let frame = tcp(client, vip, "S", b"");
    let out = run(c, &frame);
    assert_eq!(out.action, XDP_REDIRECT, "{client:?} -> {vip:?}");
    let i = out.frame[32] - 10;
    let port = if vip.1 == 80 { 8080 } else { vip.1 };
    assert_eq!(
        out.frame,
        oracle(
            &frame,
            None,
            Some((real_ip(i), port)),
            Some((director_mac(i), real_mac(i)))
        ),
        "{client:?} -> {vip:?}"
    );
    i
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn sh_and_dh_index_the_published_buckets() {
    let c = with_forms();
    let sh = ([198, 18, 0, 30], 80);
    // §2.10's buckets 39, 137 and 124 over the list 3, 2, 1 (weight 1 each).
    for sport in [1000, 2000, 3000] {
        assert_eq!(syn_reaches(&c, ([10, 0, 0, 1], sport), sh), 3);
        assert_eq!(syn_reaches(&c, ([10, 0, 0, 2], sport), sh), 1);
        assert_eq!(syn_reaches(&c, ([203, 0, 113, 7], sport), sh), 2);
    }
    // dh hashes the VIP: every client lands in the same bucket.
    let dh = ([198, 18, 0, 31], 80);
    let expected = [3, 2, 1][lvs_common::hash::dh_bucket(dh.0) as usize % 3];
    for client in 1..=5 {
        assert_eq!(syn_reaches(&c, ([10, 0, 0, client], 1000), dh), expected);
    }
}

/// An mh service over the three NAT servers, with the given `-b` flags.
fn mh_router(flags: &str) -> Controller<KernelDatapath> {
    router_with(true, Limits::default(), &mh_config(flags))
}

fn mh_config(flags: &str) -> String {
    format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.40:80\"\nscheduler = \"mh\"\nsched_flags = [{flags}]\n{}",
        (1..=3)
            .map(|i| format!(
                "[[service.real]]\naddress = \"198.18.1{i}.2:8080\"\nmethod = \"nat\"\nweight = {i}\n"
            ))
            .collect::<String>()
    )
}

/// The servers as lvs-sched sees them, ids 1..3, weight 0 for `quiesced`.
fn mh_dests(quiesced: Option<u8>) -> Vec<lvs_sched::Dest> {
    (1..=3u8)
        .map(|i| lvs_sched::Dest {
            id: i as u32,
            addr: Ipv4Addr::from(real_ip(i)).into(),
            port: 8080,
            weight: if quiesced == Some(i) { 0 } else { i as u32 },
            ..lvs_sched::Dest::default()
        })
        .collect()
}

/// mh in the datapath: each client's SYN goes where the scheduler run
/// directly sends it (the source's hash, with its port for mh-port); a
/// quiesced server's clients are dropped, or with mh-fallback probed on
/// to the server the kernel's probe finds (a bounded loop in the datapath).
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn mh_indexes_its_table_and_probes_past_an_unusable_server() {
    use lvs_sched::{Request, SchedFlags, SchedulerName};
    let vip = ([198, 18, 0, 40], 80);
    for (flags, sched) in [
        ("", SchedFlags::default()),
        (
            "\"mh-port\", \"mh-fallback\"",
            SchedFlags {
                port: true,
                fallback: true,
                ipvs_order: false,
            },
        ),
    ] {
        let mut c = mh_router(flags);
        let mut model = SchedulerName::Mh.instantiate(&mh_dests(None), sched);
        let clients: Vec<([u8; 4], u16)> = (0..60u16)
            .map(|n| ([10, 0, (n / 7) as u8, (n * 37 % 251) as u8], 1024 + n * 13))
            .collect();
        let want = |model: &mut Box<dyn lvs_sched::Scheduler>,
                    dests: &[lvs_sched::Dest],
                    client: ([u8; 4], u16)| {
            model
                .pick(
                    dests,
                    &Request {
                        client: Ipv4Addr::from(client.0).into(),
                        client_port: client.1,
                        ..Request::default()
                    },
                )
                .map(|i| dests[i].id as u8)
        };
        let mut seen = [0; 4];
        for &client in &clients {
            let i = syn_reaches(&c, client, vip);
            assert_eq!(
                Some(i),
                want(&mut model, &mh_dests(None), client),
                "{client:?}"
            );
            seen[i as usize] += 1;
        }
        assert!(seen[1] > 0 && seen[2] > 0 && seen[3] > 0, "{seen:?}");
        // Server 2 quiesced: it keeps its slots; its clients fail or move.
        use lvs_state::model::{Command, Endpoint, Method, Protocol, RealSpec, ServiceId};
        let service = ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: Ipv4Addr::from(vip.0).into(),
                port: vip.1,
            },
        };
        let real = RealSpec {
            server: Endpoint {
                addr: Ipv4Addr::from(real_ip(2)).into(),
                port: 8080,
            },
            method: Method::Nat,
            weight: 0,
            u_threshold: 0,
            l_threshold: 0,
        };
        c.apply(&[Command::EditReal { service, real }]).unwrap();
        let old = mh_dests(None);
        let quiesced = mh_dests(Some(2));
        model.update(&old, &quiesced);
        let (mut dropped, mut moved) = (0, 0);
        for (n, &client) in clients.iter().enumerate() {
            // A new source port: the first SYN's entry still stands.
            let client = (client.0, client.1 + 7);
            let expected = want(&mut model, &quiesced, client);
            let frame = tcp(client, vip, "S", b"");
            match expected {
                Some(i) => {
                    assert_ne!(i, 2);
                    assert_eq!(syn_reaches(&c, client, vip), i, "{n}: {client:?}");
                    moved += 1;
                }
                None => {
                    assert_eq!(run(&c, &frame).action, XDP_DROP, "{client:?}");
                    dropped += 1;
                }
            }
        }
        if sched.fallback {
            assert_eq!(dropped, 0);
        } else {
            assert!(dropped > 0, "some clients hash to server 2's slots");
            assert_eq!(verdict(&c, "drop_no_destination"), dropped);
        }
        assert!(moved > 0);
    }
}

/// IPVS's sloppy_tcp: a mid-flow segment with no entry (a flow ECMP moved
/// here from another director) is scheduled, to the server mh gives its
/// client, and its entry starts ESTABLISHED; without it the segment goes
/// to the kernel, as does a RST either way.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn sloppy_tcp_schedules_a_mid_flow_segment() {
    use lvs_sched::{Request, SchedFlags, SchedulerName};
    let vip = ([198, 18, 0, 40], 80);
    let client = ([10, 0, 3, 33], 40_000);
    let strict = mh_router("");
    let ack = tcp(client, vip, "A", b"mid-flow");
    let out = run(&strict, &ack);
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(out.frame, ack);
    assert_eq!(verdict(&strict, "pass_not_syn"), 1);
    drop(strict);

    let sloppy = Settings {
        flags: Settings::SLOPPY_TCP,
        ..Settings::default()
    };
    let c = router_with_settings(true, Limits::default(), &mh_config(""), sloppy);
    let mut model = SchedulerName::Mh.instantiate(&mh_dests(None), SchedFlags::default());
    let dests = mh_dests(None);
    let want = model
        .pick(
            &dests,
            &Request {
                client: Ipv4Addr::from(client.0).into(),
                ..Request::default()
            },
        )
        .map(|i| dests[i].id as u8)
        .unwrap();
    let out = run(&c, &ack);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &ack,
            None,
            Some((real_ip(want), 8080)),
            Some((director_mac(want), real_mac(want)))
        )
    );
    let rows = c.connection_views().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].state, "ESTABLISHED");
    // A reset never starts a connection.
    let rst = tcp(([10, 0, 3, 34], 40_001), vip, "R", b"");
    assert_eq!(run(&c, &rst).action, XDP_PASS);
    assert_eq!(verdict(&c, "pass_not_syn"), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn lblc_reports_a_new_destination_and_follows_the_controller() {
    use lvs_datapath::Datapath;
    let mut c = with_forms();
    let vip = ([198, 18, 0, 32], 80);
    // First sight of the VIP: the ring's wlc pick (list order 2, 1).
    assert_eq!(syn_reaches(&c, (CLIENT, 5000), vip), 2);
    assert_eq!(c.process_events().unwrap(), 1);
    let entries = c.datapath().localities::<[u8; 4]>().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0.addr(), vip.0);
    for sport in 5001..5003 {
        assert_eq!(syn_reaches(&c, (CLIENT, sport), vip), 2);
    }
    // Server 2 established 3 connections while server 1 has none: 3 > 1
    // and 0 < 1/2, so it is overloaded (§2.7) and wlc moves the VIP.
    for sport in 5000..5003 {
        run(&c, &tcp((CLIENT, sport), vip, "A", b""));
    }
    c.recount().unwrap();
    assert_eq!(syn_reaches(&c, (CLIENT, 5003), vip), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_persistent_port_zero_service_keeps_a_client_across_ports() {
    let c = with_forms();
    let vip = [198, 18, 0, 33];
    let first = syn_reaches(&c, (CLIENT, 6000), (vip, 443));
    for (sport, port) in [(6001, 8443), (6002, 443), (6003, 22)] {
        assert_eq!(syn_reaches(&c, (CLIENT, sport), (vip, port)), first);
    }
    // Another client address is another template: the next rr pick.
    let other = syn_reaches(&c, ([198, 18, 1, 99], 6000), (vip, 443));
    assert_ne!(other, first);
    assert_eq!(
        syn_reaches(&c, ([198, 18, 1, 99], 6001), (vip, 8443)),
        other
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn wlc_bursts_stay_proportional_with_and_without_refills() {
    let mut c = with_forms();
    let vip = ([198, 18, 0, 34], 80);
    let burst = |c: &mut Controller<KernelDatapath>, base: u32, refill: bool| {
        let mut got = [0u32; 4];
        for k in 0..3000u32 {
            let n = base + k;
            let client = [10, 1, (n >> 8) as u8, n as u8];
            got[syn_reaches(c, (client, 7000), vip) as usize] += 1;
            if refill {
                c.process_events().unwrap();
            }
        }
        [got[3], got[2], got[1]]
    };
    // Answered at once: every refill continues the exact wlc sequence
    // (each pick one more active connection), so the split is exactly 3:2:1.
    let refilled = burst(&mut c, 0, true);
    let stats = c.refill_stats();
    assert_eq!(refilled, [1500, 1000, 500]);
    // 3000 picks from 512-slot rings refilled at half: one signal per 256.
    assert!(stats.count >= 10, "{stats:?}");
    // Nobody answers: the forecast wraps, and the split stays near 3:2:1.
    let wrapped = burst(&mut c, 3000, false);
    let share = |n: u32| n as f64 / 3000.0;
    assert!(
        (share(wrapped[0]) - 0.5).abs() < 0.03
            && (share(wrapped[1]) - 1.0 / 3.0).abs() < 0.03
            && (share(wrapped[2]) - 1.0 / 6.0).abs() < 0.03,
        "{wrapped:?}"
    );
    assert!(c.process_events().unwrap() >= 1, "low water was signalled");
    eprintln!(
        "burst of 3000 with refills: {refilled:?} ({} refills, mean {} us, max {} us); without: {wrapped:?}",
        stats.count,
        stats.total_ns / stats.count.max(1) / 1000,
        stats.max_ns / 1000
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn table_sizes_chosen_at_load_bound_what_the_controller_accepts() {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    let limits = Limits {
        services: 2,
        reals: 3,
        connections: 1000,
        mh_services: 1,
    };
    let mut c = Controller::new(KernelDatapath::attach(&[], Settings::default(), limits).unwrap());
    assert_eq!(snapshot(&c).conn_table_size, 1000);
    let service = |port: u16, reals: &[&str]| {
        let mut s = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:{port}\"\nscheduler = \"rr\"\n"
        );
        for r in reals {
            s += &format!("[[service.real]]\naddress = \"{r}\"\nmethod = \"nat\"\n");
        }
        s
    };
    let three = [80, 81, 82].map(|p| service(p, &[])).concat();
    let err = c
        .apply(&config::parse(&three, "three.toml").unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("services") && err.to_string().contains('2'),
        "{err}"
    );
    let four_reals = service(80, &["198.18.11.2:80", "198.18.12.2:80"])
        + &service(81, &["198.18.11.2:80", "198.18.12.2:80"]);
    let err = c
        .apply(&config::parse(&four_reals, "four.toml").unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("real servers") && err.to_string().contains('3'),
        "{err}"
    );
    assert!(
        snapshot(&c).services.is_empty(),
        "a refused batch changes nothing"
    );
    // Within the limits, the same director takes it.
    c.apply(&config::parse(&service(80, &["198.18.11.2:80"]), "one.toml").unwrap())
        .unwrap();
    assert_eq!(snapshot(&c).services.len(), 1);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn the_bench_generator_writes_its_whole_frame_every_run() {
    use lvs_datapath::StandaloneXdp;
    // Live-frames test_run recycles pages that others rewrote: the
    // generator must not depend on what the page held.
    let frame: [u8; lvs_common::BENCH_FRAME_LEN] = std::array::from_fn(|i| i as u8);
    let mut generator = StandaloneXdp::generator(&frame).unwrap();
    let out = generator
        .test_run(&[0xee; lvs_common::BENCH_FRAME_LEN])
        .unwrap();
    assert_eq!(out.action, XDP_TX);
    assert_eq!(out.frame, frame);
    let out = StandaloneXdp::sink().unwrap().test_run(&frame).unwrap();
    assert_eq!(out.action, XDP_DROP);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn the_table_listing_reads_every_entry_across_batches() {
    use lvs_datapath::Datapath;
    let c = router(true);
    // DR: one entry per flow; more flows than one batch holds.
    let flows = 10_000u32;
    for n in 0..flows {
        let client = [10, 2, (n >> 8) as u8, n as u8];
        let out = run(&c, &tcp((client, 7000), ([198, 18, 0, 20], 80), "S", b""));
        assert_eq!(out.action, XDP_REDIRECT);
    }
    let listed = c.datapath().connections::<[u8; 4]>().unwrap();
    assert_eq!(listed.len(), flows as usize);
    let mut clients: Vec<[u8; 4]> = listed.iter().map(|(k, _)| k.src()).collect();
    clients.sort();
    clients.dedup();
    assert_eq!(clients.len(), flows as usize, "no entry listed twice");
}

/// The expiry race: the reply direction, on another CPU, stamps an entry
/// after this packet's CPU read its clock. The entry is fresh, not idle for
/// most of 2^64 ns; with a wrapping difference the client's next segment
/// was passed to the kernel (`pass_not_syn`), which reset the connection.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_entry_stamped_after_the_packets_clock_is_live() {
    use lvs_datapath::Datapath;
    let mut c = router(true);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    let key =
        lvs_common::FlowKey::from_wire(CLIENT, VIP, 40000u16.to_be_bytes(), 80u16.to_be_bytes(), 6);
    let mut conn = c.datapath().connection(&key).unwrap().expect("entry");
    // Stamped 50 ms ahead of any clock this packet's CPU will read.
    conn.last_seen_ns = c.datapath().now_ns().unwrap() + 50_000_000;
    c.datapath_mut().set_connection(key, conn).unwrap();
    let data = tcp((CLIENT, 40000), (VIP, 80), "A", b"data");
    let out = run(&c, &data);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(verdict(&c, "pass_not_syn"), 0);
}

/// DR and TUN never need the forwarding sysctl (IPVS's never do): with it
/// off the FIB refuses every lookup, and the datapath takes the next hop
/// lvsd resolved. NAT needs it, as IPVS's does, and says so.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn with_forwarding_off_dr_and_tun_take_lvsds_next_hop_and_nat_is_counted() {
    use lvs_datapath::Datapath;
    let mut c = router(true);
    sh("sysctl -qw net.ipv4.ip_forward=0");
    // Before lvsd resolved a next hop: nothing to send it to.
    let dr = tcp((CLIENT, 40000), ([198, 18, 0, 21], 80), "S", b"");
    assert_eq!(run(&c, &dr).action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_no_route"), 1);

    let real = Ipv4Addr::new(198, 18, 12, 3);
    let hop = lvs_datapath::ResolvedHop {
        ifindex: ifindex("srv2"),
        gateway: real.into(),
        source: Some(Ipv4Addr::new(198, 18, 12, 1).into()),
    };
    c.datapath_mut().set_next_hop(real.into(), hop).unwrap();
    let dr = tcp((CLIENT, 40001), ([198, 18, 0, 21], 80), "S", b"");
    let out = run(&c, &dr);
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(noted(&c, &out.frame), (real.octets(), ifindex("srv2")));
    assert_eq!(
        &out.frame[..],
        ttl_decremented(oracle(&dr, None, None, None)).as_slice()
    );
    assert_eq!(verdict(&c, "pass_resolve_neighbour"), 1);

    let tun_real = Ipv4Addr::new(198, 18, 11, 3);
    let hop = lvs_datapath::ResolvedHop {
        ifindex: ifindex("srv1"),
        gateway: tun_real.into(),
        source: Some(Ipv4Addr::new(198, 18, 11, 1).into()),
    };
    c.datapath_mut().set_next_hop(tun_real.into(), hop).unwrap();
    let tun = tcp((CLIENT, 40002), ([198, 18, 0, 23], 80), "S", b"");
    let out = run(&c, &tun);
    assert_eq!(out.action, XDP_PASS);
    assert_eq!(noted(&c, &out.frame), (tun_real.octets(), ifindex("srv1")));
    // The outer header comes from lvsd's route: its source address.
    assert_eq!(&out.frame[26..30], &[198, 18, 11, 1]);
    assert_eq!(&out.frame[30..34], &tun_real.octets());

    let nat = tcp((CLIENT, 40003), (VIP, 80), "S", b"");
    assert_eq!(run(&c, &nat).action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_forwarding_disabled"), 1);
}

/// A real server at an address the director holds takes its connections
/// through the local stack, as the client sent them, whatever the method.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_local_real_server_gets_the_packet_unchanged() {
    let mut c = router(true);
    c.apply(
        &config::parse(
            r#"
[[service]]
protocol = "tcp"
address = "198.18.0.30:80"
scheduler = "rr"
[[service.real]]
address = "127.0.0.1:80"
method = "route"
[[service]]
protocol = "tcp"
address = "198.18.0.31:80"
scheduler = "rr"
[[service.real]]
address = "198.18.11.1:80"
method = "nat"
"#,
            "local.toml",
        )
        .unwrap(),
    )
    .unwrap();
    for (vip, port) in [([198, 18, 0, 30], 41000), ([198, 18, 0, 31], 41001)] {
        let syn = tcp((CLIENT, port), (vip, 80), "S", b"");
        let out = run(&c, &syn);
        assert_eq!((out.action, out.frame), (XDP_PASS, syn.clone()));
        let data = tcp((CLIENT, port), (vip, 80), "A", b"data");
        let out = run(&c, &data);
        assert_eq!((out.action, out.frame), (XDP_PASS, data));
    }
    assert_eq!(verdict(&c, "pass_local"), 4);
    // Masquerading to another port of a local server is refused whole.
    let err = c
        .apply(
            &config::parse(
                r#"
[[service]]
protocol = "tcp"
address = "198.18.0.32:80"
scheduler = "rr"
[[service.real]]
address = "198.18.11.1:8080"
method = "nat"
"#,
                "local.toml",
            )
            .unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("not yet supported"), "{err}");
    assert!(c
        .state()
        .services()
        .all(|s| s.spec.id.vip.addr != Ipv4Addr::new(198, 18, 0, 32)));
}

const TC_ACT_REDIRECT: u32 = 7;

/// The tc director (veth and other virtual devices) rewrites exactly as the
/// XDP one: NAT both ways, checksums recomputed in full by the oracle.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn the_tc_director_rewrites_nat_exactly() {
    let c = router(true);
    let real = real_ip(3);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let out = c.datapath().test_run_tc(ifindex("cli0"), &syn).unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &syn,
            None,
            Some((real, 8080)),
            Some((director_mac(3), real_mac(3)))
        )
    );
    let reply = tcp((real, 8080), (CLIENT, 40000), "SA", b"hello");
    let out = c.datapath().test_run_tc(ifindex("srv3"), &reply).unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(
        out.frame,
        oracle(
            &reply,
            Some((VIP, 80)),
            None,
            Some((DIRECTOR_CLIENT_MAC, CLIENT_MAC))
        )
    );
    assert_eq!(verdict(&c, "redirect"), 2);
}

/// Found by the fuzzer (tests/fuzz): a packet whose IPv4 total length runs
/// past the frame, or stops short of its headers, is one the kernel drops;
/// the director rewrote and forwarded it (and counted its claimed length).
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_total_length_that_disagrees_with_the_frame_passes_untouched() {
    let c = router(true);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"0123456789");
    let with_total = |total: u16| {
        let mut f = syn.clone();
        f[16..18].copy_from_slice(&total.to_be_bytes());
        oracle(&f, None, None, None)
    };
    let cut = syn[..syn.len() - 4].to_vec();
    for frame in [cut, with_total(20 + 19), with_total(0)] {
        let out = run(&c, &frame);
        assert_eq!((out.action, &out.frame), (XDP_PASS, &frame));
        let out = c.datapath().test_run_tc(ifindex("cli0"), &frame).unwrap();
        assert_eq!((out.action, &out.frame), (TC_ACT_UNSPEC, &frame));
    }
    assert_eq!(verdict(&c, "pass_malformed"), 6);
    assert_eq!(snapshot(&c).services[0].stats.conns, 0);
    // Ethernet padding after the packet is fine.
    let mut padded = syn.clone();
    padded.extend_from_slice(&[0; 6]);
    assert_eq!(run(&c, &padded).action, XDP_REDIRECT);
}

const TC_ACT_UNSPEC: u32 = -1i32 as u32;

/// Found by the fuzzer: a DR packet larger than the egress MTU was
/// dropped as `drop_no_route` on tc (the kernel's FIB helper checks a
/// socket buffer's length) and sent into the driver's drop on XDP. Now as
/// for TUN: ICMP fragmentation-needed with DF (XDP), else `drop_too_big`.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_too_big_for_the_egress_mtu_answers_or_is_counted() {
    let c = router(true);
    sh("ip link set srv2 mtu 1000");
    let vip = [198, 18, 0, 21];
    let mut big = tcp((CLIENT, 40000), (vip, 80), "S", &[0x5a; 1001 - 40]);
    big[20] |= 0x40; // DF
    let big = oracle(&big, None, None, None);
    let out = run(&c, &big);
    assert_eq!(out.action, XDP_TX);
    let mtu = 1000u16.to_be_bytes();
    let expected = icmp_error(
        (vip, CLIENT),
        (3, 4, [0, 0, mtu[0], mtu[1]]),
        &big,
        28,
        (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
        64,
    );
    assert_eq!(out.frame, expected);
    assert_eq!(verdict(&c, "icmp_too_big"), 1);

    let mut loose = big.clone();
    loose[20] &= !0x40;
    let loose = oracle(&loose, None, None, None);
    assert_eq!(run(&c, &loose).action, XDP_DROP);
    for frame in [&big, &loose] {
        let out = c.datapath().test_run_tc(ifindex("cli0"), frame).unwrap();
        assert_eq!(out.action, 2, "TC_ACT_SHOT");
    }
    assert_eq!(verdict(&c, "drop_too_big"), 3);
    assert_eq!(verdict(&c, "drop_no_route"), 0);
    // Within the MTU it goes as before.
    let fits = tcp((CLIENT, 40001), (vip, 80), "S", &[0x5a; 1000 - 40]);
    assert_eq!(run(&c, &fits).action, XDP_REDIRECT);
}

/// An ARP request (who has `target`, tell the client) as a client sends it.
fn arp_request(target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 1, 2]);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 1, 2]);
    f.extend_from_slice(&CLIENT);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f.resize(60, 0);
    f
}

/// A router of a pair whose lvsd stopped stamping its liveness: established
/// flows keep forwarding, new ones are dropped (for the client to retry on
/// the new active), and ARP for the floating addresses goes unanswered.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_datapath_whose_lvsd_died_keeps_flows_but_takes_no_new_ones() {
    let mut c = router(true);
    let vip = [198, 18, 0, 20];
    c.datapath_mut()
        .set_floating(&[Ipv4Addr::from(vip).into()])
        .unwrap();
    let mut liveness = c.datapath_mut().liveness().unwrap();
    let syn = |port| tcp((CLIENT, port), (vip, 80), "S", b"");
    let ack = tcp((CLIENT, 40000), (vip, 80), "A", b"payload");
    // Alive: the pair's router works as any director.
    liveness
        .refresh(std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(run_on(&c, "cli0", &syn(40000)).action, XDP_TX);
    assert_eq!(run_on(&c, "cli0", &arp_request(vip)).action, XDP_PASS);
    // Gone: the deadline has passed.
    liveness.refresh(std::time::Duration::ZERO).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let out = run_on(&c, "cli0", &syn(40001));
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_no_controller"), 1);
    let out = run_on(&c, "cli0", &ack);
    assert_eq!(
        (out.action, out.frame),
        (
            XDP_TX,
            routed(&ack, DIRECTOR_CLIENT_MAC, forwarded_mac([198, 18, 1, 3]))
        )
    );
    assert_eq!(run_on(&c, "cli0", &arp_request(vip)).action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_arp_no_controller"), 1);
    // ARP for an address that does not float is the kernel's business.
    let other = arp_request([198, 18, 1, 1]);
    let out = run_on(&c, "cli0", &other);
    assert_eq!((out.action, out.frame), (XDP_PASS, other));
    // Back: new flows again.
    liveness
        .refresh(std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(run_on(&c, "cli0", &syn(40002)).action, XDP_TX);
}

/// What the datapath counts per real server, against a recount of the
/// entries in the table (expired ones included: they count until removed).
fn counts_match_a_recount(c: &Controller<KernelDatapath>, when: &str) -> usize {
    use lvs_common::ConnCounts;
    use lvs_datapath::Datapath;
    let reals = Limits::default().reals;
    let kept = c.datapath().conn_counts_upto(reals).unwrap();
    let mut recounted = vec![ConnCounts::default(); reals as usize];
    let conns = c.datapath().connections::<[u8; 4]>().unwrap();
    for (_, conn) in &conns {
        if let Some((real, active)) = conn.counted_as() {
            let count = &mut recounted[real as usize];
            if active {
                count.active += 1;
            } else {
                count.inactive += 1;
            }
        }
    }
    assert_eq!(kept, recounted, "{when}");
    conns.len()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn the_datapaths_counts_equal_a_recount_after_a_random_mix() {
    use lvs_datapath::Datapath;
    let mut c = router(true);
    let defaults = lvs_common::tcp_state::DEFAULT_TIMEOUTS;
    // NAT (both directions move the state), DR and UDP, on a few client
    // ports each, so that flows open, move, close, expire and come back.
    let services: [(([u8; 4], u16), bool); 2] =
        [((VIP, 80), true), (([198, 18, 0, 25], 80), false)];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let (syn, fin, ack, rst) = (0x02u8, 0x01u8, 0x10u8, 0x04u8);
    // Each packet on the next CPU in turn: a flow opens on one and moves or
    // closes on another, so each CPU's share of the counts wraps below zero
    // and only their sum is right.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut step = 0usize;
    let mut next_cpu = move || {
        let mut set = nix::sched::CpuSet::new();
        set.set(step % cpus).unwrap();
        step += 1;
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
    };
    let mut most = 0;
    for round in 0..30 {
        for _ in 0..200 {
            next_cpu();
            let (vip, nat) = services[next(2) as usize];
            let port = 40000 + next(24) as u16;
            let flags = [syn, ack, fin | ack, rst, syn | ack][next(5) as usize];
            let udp_flow = next(8) == 0;
            if udp_flow {
                run(&c, &udp((CLIENT, port), (VIP, 53), b"q"));
                continue;
            }
            let key = lvs_common::FlowKey::from_wire(
                CLIENT,
                vip.0,
                port.to_be_bytes(),
                vip.1.to_be_bytes(),
                6,
            );
            let reply = nat && next(2) == 0;
            match c.datapath().connection(&key).unwrap() {
                Some(conn) if reply => {
                    let from = (conn.addr(), u16::from_be_bytes(conn.port_wire()));
                    run(&c, &with_flags(tcp(from, (CLIENT, port), "", b""), flags));
                }
                _ => {
                    run(&c, &with_flags(tcp((CLIENT, port), vip, "", b""), flags));
                }
            }
        }
        most = most.max(counts_match_a_recount(
            &c,
            &format!("round {round}, after packets"),
        ));
        // Every third round everything expires: some flows are taken over
        // by their next packet, the sweeper removes the rest.
        if round % 3 == 2 {
            c.set_timeouts([0; 12]).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(30));
            for port in 40000..40008u16 {
                run(&c, &tcp((CLIENT, port), (VIP, 80), "S", b""));
                run(&c, &tcp((CLIENT, port + 8), (VIP, 80), "A", b""));
            }
            counts_match_a_recount(&c, &format!("round {round}, packets on expired entries"));
            std::thread::sleep(std::time::Duration::from_millis(30));
            c.sweep().unwrap();
            c.set_timeouts(defaults).unwrap();
            let left = counts_match_a_recount(&c, &format!("round {round}, after the sweep"));
            assert_eq!(left, 0, "round {round}: every expired entry was removed");
        }
    }
    assert!(
        most > 20,
        "the mix kept flows open ({most} entries at most)"
    );
    // And the controller's ActiveConn/InActConn are the datapath's.
    for port in 40000..40010u16 {
        run(&c, &tcp((CLIENT, port), (VIP, 80), "S", b""));
    }
    c.recount().unwrap();
    let active: u32 = c
        .snapshot()
        .unwrap()
        .services
        .iter()
        .flat_map(|s| &s.reals)
        .map(|r| r.active_conns)
        .sum();
    assert_eq!(active, 10);
}

/// The MACs an output frame was addressed with: (destination, source).
fn macs_of(frame: &[u8]) -> ([u8; 6], [u8; 6]) {
    (
        frame[0..6].try_into().unwrap(),
        frame[6..12].try_into().unwrap(),
    )
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn established_flows_take_a_new_neighbour_once_the_egress_is_renewed() {
    let mut c = router(true);
    let (vip, real) = (([198, 18, 0, 21], 80), [198, 18, 12, 3]);
    let syn = tcp((CLIENT, 40000), vip, "S", b"");
    let ack = tcp((CLIENT, 40000), vip, "A", b"x");
    assert_eq!(macs_of(&run(&c, &syn).frame).0, forwarded_mac(real));
    // The real server's MAC changes (a replaced NIC, a VRRP pair of real
    // servers): established packets keep the cached way until it is renewed
    // (each second, by lvsd's maintenance), then take the new one.
    let moved = [2, 0, 0, 0, 0x99, 1];
    sh(&format!(
        "ip neigh replace {} lladdr {} dev srv2 nud permanent",
        Ipv4Addr::from(real),
        mac_str(moved)
    ));
    assert_eq!(macs_of(&run(&c, &ack).frame).0, forwarded_mac(real));
    c.renew_egress().unwrap();
    assert_eq!(macs_of(&run(&c, &ack).frame).0, moved);
    assert_eq!(macs_of(&run(&c, &ack).frame).0, moved);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn established_flows_follow_a_route_change_once_the_egress_is_renewed() {
    let mut c = router(true);
    // NAT to real server 1 (srv1), then its route moves behind real server
    // 2's LAN (srv2, through 198.18.12.2): the real server moved.
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let out = run(&c, &syn);
    let first = macs_of(&out.frame);
    let ack = tcp((CLIENT, 40000), (VIP, 80), "A", b"x");
    let real = {
        use lvs_datapath::Datapath;
        c.datapath()
            .connections::<[u8; 4]>()
            .unwrap()
            .into_iter()
            .find(|(k, conn)| k.sport() == 40000 && conn.direction == 0)
            .map(|(_, conn)| conn.addr())
            .unwrap()
    };
    let (via, dev) = if real == real_ip(2) {
        (real_ip(1), "srv1")
    } else {
        (real_ip(2), "srv2")
    };
    let i = if dev == "srv1" { 1 } else { 2 };
    sh(&format!(
        "ip route replace {}/32 via {} dev {dev}",
        Ipv4Addr::from(real),
        Ipv4Addr::from(via)
    ));
    assert_eq!(macs_of(&run(&c, &ack).frame), first, "cached until renewed");
    c.renew_egress().unwrap();
    assert_eq!(
        macs_of(&run(&c, &ack).frame),
        (real_mac(i), director_mac(i)),
        "after the renewal, out of {dev} to {}",
        Ipv4Addr::from(via)
    );
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_syn_flood_evicts_the_oldest_half_open_entries_and_nothing_established() {
    use lvs_common::Direction;
    use lvs_datapath::Datapath;
    // 64 entries: 16 may be half-open (a quarter).
    let limits = Limits {
        connections: 64,
        ..Limits::default()
    };
    let mut c = router_with(true, limits, CONFIG);
    let dr_vip = [198, 18, 0, 21];
    let forwarded = |out: &TestRun| out.action == XDP_TX || out.action == XDP_REDIRECT;
    let client = |port: u16| (CLIENT, port);
    let spoofed = |n: u16| ([203, 0, (n >> 8) as u8, n as u8], 1024 + n);
    for port in 1000..1008 {
        assert!(forwarded(&run(
            &c,
            &tcp(client(port), (dr_vip, 80), "S", b"")
        )));
        assert!(forwarded(&run(
            &c,
            &tcp(client(port), (dr_vip, 80), "A", b"x")
        )));
    }
    // DR flood: every SYN gets in; beyond the quota each evicts the oldest
    // half-open entry (the established ones gave their slots back).
    for n in 0..200 {
        let out = run(&c, &tcp(spoofed(n), (dr_vip, 80), "S", b""));
        assert!(forwarded(&out), "flood SYN {n}: action {}", out.action);
    }
    assert_eq!(c.datapath().half_open_evicted().unwrap(), 200 - 16);
    // NAT flood (one entry per connection: see below for two).
    for n in 200..240 {
        let out = run(&c, &tcp(spoofed(n), (VIP, 80), "S", b""));
        assert!(forwarded(&out), "NAT flood SYN {n}: action {}", out.action);
    }
    assert_eq!(c.datapath().half_open_evicted().unwrap(), 240 - 16);
    let entries = counts_match_a_recount(&c, "after the floods");
    let conns = c.datapath().connections::<[u8; 4]>().unwrap();
    let state_of = |port: u16| {
        conns
            .iter()
            .find(|(k, _)| k.src() == CLIENT && k.sport() == port && k.dst() == dr_vip)
            .map(|(_, conn)| ConnState::from_u8(conn.state))
    };
    for port in 1000..1008 {
        assert_eq!(
            state_of(port),
            Some(Some(ConnState::Established)),
            "port {port}"
        );
    }
    let half_open = conns
        .iter()
        .filter(|(_, conn)| conn.state == ConnState::SynRecv as u8)
        .count();
    let replies = conns
        .iter()
        .filter(|(_, conn)| conn.direction == Direction::Outbound as u8)
        .count();
    assert_eq!(half_open, 16, "the quota holds the flood");
    assert_eq!(replies, 0);
    assert_eq!(entries, 8 + 16);
    // The established connections still forward; a new client gets in and
    // its handshake gives its slot back.
    for port in 1000..1008 {
        assert!(forwarded(&run(
            &c,
            &tcp(client(port), (dr_vip, 80), "A", b"y")
        )));
    }
    assert!(forwarded(&run(
        &c,
        &tcp(client(2000), (dr_vip, 80), "S", b"")
    )));
    assert!(forwarded(&run(
        &c,
        &tcp(client(2000), (dr_vip, 80), "A", b"z")
    )));
    let promoted = c.datapath().connections::<[u8; 4]>().unwrap();
    assert!(promoted.iter().any(|(k, conn)| k.sport() == 2000
        && conn.state == ConnState::Established as u8
        && conn.half_open_slot == 0));
    assert_eq!(c.datapath().half_open_evicted().unwrap(), 241 - 16);
    c.recount().unwrap();
    counts_match_a_recount(&c, "after the promotion");
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_replies_take_a_new_client_neighbour_once_the_egress_is_renewed() {
    let mut c = router(true);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    let rewritten = run(&c, &syn).frame;
    let real = [rewritten[30], rewritten[31], rewritten[32], rewritten[33]];
    let dev = format!("srv{}", real[2] - 10);
    let reply = tcp((real, 8080), (CLIENT, 40000), "A", b"r");
    assert_eq!(macs_of(&run_on(&c, &dev, &reply).frame).0, CLIENT_MAC);
    // The client's MAC changes (its router failed over): replies keep the
    // cached way back until it is renewed, then take the new one.
    let moved = [2, 0, 0, 0, 0x99, 2];
    sh(&format!(
        "ip neigh replace {} lladdr {} dev cli0 nud permanent",
        Ipv4Addr::from(CLIENT),
        mac_str(moved)
    ));
    assert_eq!(macs_of(&run_on(&c, &dev, &reply).frame).0, CLIENT_MAC);
    c.renew_egress().unwrap();
    assert_eq!(macs_of(&run_on(&c, &dev, &reply).frame).0, moved);
    assert_eq!(macs_of(&run_on(&c, &dev, &reply).frame).0, moved);
}

/// Five NAT services to one real server: the first four's connections keep
/// one entry, which replies find through the server's services; the
/// fifth's keep a reply entry.
fn five_services_to_one_server() -> String {
    (40..45)
        .map(|last| {
            format!(
                "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.{last}:80\"\nscheduler = \"rr\"\n[[service.real]]\naddress = \"198.18.11.2:8080\"\nmethod = \"nat\"\n"
            )
        })
        .collect()
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_replies_find_one_entry_connections_and_a_fifth_service_keeps_two() {
    use lvs_common::Direction;
    use lvs_datapath::Datapath;
    let limits = Limits {
        connections: 64,
        ..Limits::default()
    };
    let mut c = router_with(true, limits, &five_services_to_one_server());
    let real = real_ip(1);
    for (n, last) in (40..45u8).enumerate() {
        let vip = [198, 18, 0, last];
        let port = 41000 + n as u16;
        let syn = tcp((CLIENT, port), (vip, 80), "S", b"");
        let out = run(&c, &syn);
        assert_eq!(
            out.frame,
            oracle(
                &syn,
                None,
                Some((real, 8080)),
                Some((director_mac(1), real_mac(1)))
            ),
            "service {last}: DNAT"
        );
        let entries = c
            .datapath()
            .connections::<[u8; 4]>()
            .unwrap()
            .into_iter()
            .filter(|(k, conn)| {
                (k.dst() == vip && k.sport() == port)
                    || (conn.direction == Direction::Outbound as u8 && k.dport() == port)
            })
            .count();
        assert_eq!(entries, if last < 44 { 1 } else { 2 }, "service {last}");
        // The reply goes back from its own VIP, whichever place it has.
        let reply = tcp((real, 8080), (CLIENT, port), "SA", b"");
        let out = run_on(&c, "srv1", &reply);
        assert_eq!(
            out.frame,
            oracle(
                &reply,
                Some((vip, 80)),
                None,
                Some((DIRECTOR_CLIENT_MAC, CLIENT_MAC))
            ),
            "service {last}: SNAT"
        );
    }
    // A flood on the fifth service: an evicted half-open connection's reply
    // entry goes with it.
    for n in 0..40u16 {
        let spoofed = ([203, 0, 113, n as u8], 2000 + n);
        assert_eq!(
            run(&c, &tcp(spoofed, ([198, 18, 0, 44], 80), "S", b"")).action,
            XDP_REDIRECT
        );
    }
    let conns = c.datapath().connections::<[u8; 4]>().unwrap();
    let half_open = conns
        .iter()
        .filter(|(_, conn)| conn.state == ConnState::SynRecv as u8)
        .count();
    let replies = conns
        .iter()
        .filter(|(_, conn)| conn.direction == Direction::Outbound as u8)
        .count();
    assert_eq!((half_open, replies), (16, 16));
    c.recount().unwrap();
    counts_match_a_recount(&c, "after the flood");
}

const ICMP_FRAG_NEEDED: (u8, u8, [u8; 4]) = (3, 4, [0, 0, 0x05, 0x78]); // next-hop MTU 1400
const ICMP_PORT_UNREACHABLE: (u8, u8, [u8; 4]) = (3, 3, [0; 4]);
/// A router on the client's LAN, between the client and the director.
const CLIENT_SIDE_ROUTER: [u8; 4] = [198, 18, 1, 254];

/// An ICMP error from `from` to `to` (Ethernet `macs`: source, destination)
/// quoting the first `quote` bytes of the IPv4 packet in the frame
/// `quoted`, every checksum computed in full.
fn icmp_error(
    (from, to): ([u8; 4], [u8; 4]),
    (kind, code, rest): (u8, u8, [u8; 4]),
    quoted: &[u8],
    quote: usize,
    (smac, dmac): ([u8; 6], [u8; 6]),
    ttl: u8,
) -> Vec<u8> {
    let quoted = &quoted[14..(14 + quote).min(quoted.len())];
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let check = checksum::full(&icmp, 0);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let total = (20 + icmp.len()) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0, 0, ttl, 1, 0, 0]);
    ip.extend_from_slice(&from);
    ip.extend_from_slice(&to);
    framed((smac, dmac), ip, &icmp)
}

fn icmp_count(c: &Controller<KernelDatapath>, case: lvs_common::IcmpCase) -> u64 {
    use lvs_datapath::Datapath;
    c.datapath()
        .icmp_errors()
        .unwrap()
        .into_iter()
        .find(|(k, _)| *k == case)
        .map(|(_, n)| n)
        .unwrap()
}

/// The path-MTU black hole, both ways: a router on the client's side tells
/// the VIP that a NAT reply was too big, and the error reaches the real
/// server translated (outer destination, quoted source and port, and every
/// checksum: the outer and quoted IPv4 headers', the quoted TCP checksum
/// when the quote holds it, the ICMP checksum); an error from the real
/// server about the client's packet goes back translated to the VIP. The
/// oracle builds each expected error from the packet translated the slow
/// way and sums every checksum in full. Both directors, XDP and tc.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn icmp_errors_about_nat_connections_reach_their_owner_translated() {
    use lvs_common::IcmpCase;
    let c = router(true);
    let real = real_ip(3);
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    // A full-sized reply as the director sent it, and as the real server did.
    let body = vec![0x5a; 1400];
    let sent = tcp((VIP, 80), (CLIENT, 40000), "A", &body);
    let as_server_sent = oracle(&sent, Some((real, 8080)), None, None);
    // Linux quotes up to 576 bytes in all; RFC 792 asks only for 8 past
    // the IPv4 header, which leaves out the TCP checksum.
    for (quote, tc) in [(548, false), (28, false), (548, true)] {
        let error = icmp_error(
            (CLIENT_SIDE_ROUTER, VIP),
            ICMP_FRAG_NEEDED,
            &sent,
            quote,
            ([2, 0, 0, 0, 1, 254], DIRECTOR_CLIENT_MAC),
            64,
        );
        let out = if tc {
            c.datapath().test_run_tc(ifindex("cli0"), &error).unwrap()
        } else {
            run_on(&c, "cli0", &error)
        };
        let expected = icmp_error(
            (CLIENT_SIDE_ROUTER, real),
            ICMP_FRAG_NEEDED,
            &as_server_sent,
            quote,
            (director_mac(3), real_mac(3)),
            63,
        );
        assert_eq!(out.frame, expected, "quote of {quote} bytes, tc {tc}");
        assert_eq!(out.action, if tc { TC_ACT_REDIRECT } else { XDP_REDIRECT });
    }
    assert_eq!(icmp_count(&c, IcmpCase::NatToRealServer), 3);

    // The real server's error about the client's packet (as DNATed).
    let dnated = oracle(
        &tcp((CLIENT, 40000), (VIP, 80), "A", &body),
        None,
        Some((real, 8080)),
        None,
    );
    let error = icmp_error(
        (real, CLIENT),
        ICMP_FRAG_NEEDED,
        &dnated,
        548,
        (real_mac(3), director_mac(3)),
        64,
    );
    let out = run_on(&c, "srv3", &error);
    assert_eq!(out.action, XDP_REDIRECT);
    let as_client_sent = tcp((CLIENT, 40000), (VIP, 80), "A", &body);
    assert_eq!(
        out.frame,
        icmp_error(
            (VIP, CLIENT),
            ICMP_FRAG_NEEDED,
            &as_client_sent,
            548,
            (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
            63,
        )
    );
    assert_eq!(icmp_count(&c, IcmpCase::NatToClient), 1);

    // UDP: the real server's port unreachable, with a checksum and without.
    let q = udp((CLIENT, 5000), (VIP, 53), b"query");
    assert_eq!(run(&c, &q).action, XDP_REDIRECT);
    let udp_real = real_ip(1);
    let dnated = oracle(&q, None, Some((udp_real, 5353)), None);
    let mut no_sum = dnated.clone();
    no_sum[40..42].copy_from_slice(&[0, 0]);
    let mut client_no_sum = q.clone();
    client_no_sum[40..42].copy_from_slice(&[0, 0]);
    for (quoted, as_client) in [(&dnated, &q), (&no_sum, &client_no_sum)] {
        let error = icmp_error(
            (udp_real, CLIENT),
            ICMP_PORT_UNREACHABLE,
            quoted,
            548,
            (real_mac(1), director_mac(1)),
            64,
        );
        let out = run_on(&c, "srv1", &error);
        assert_eq!(
            out.frame,
            icmp_error(
                (VIP, CLIENT),
                ICMP_PORT_UNREACHABLE,
                as_client,
                548,
                (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
                63,
            )
        );
    }
    assert_eq!(icmp_count(&c, IcmpCase::NatToClient), 3);

    // An error about no connection passes untouched, counted.
    let stray = tcp((VIP, 80), (CLIENT, 40001), "A", b"x");
    let error = icmp_error(
        (CLIENT_SIDE_ROUTER, VIP),
        ICMP_FRAG_NEEDED,
        &stray,
        548,
        ([2, 0, 0, 0, 1, 254], DIRECTOR_CLIENT_MAC),
        64,
    );
    let out = run_on(&c, "cli0", &error);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &error));
    assert_eq!(icmp_count(&c, IcmpCase::NoConnection), 1);
    // Traffic counters: the errors counted with their connections.
    let snap = snapshot(&c);
    assert_eq!(
        (
            snap.services[0].stats.in_packets,
            snap.services[0].stats.out_packets
        ),
        (1 + 3, 1)
    );
}

/// A NAT connection with two entries (its server is in a fifth service)
/// finds the real server's error through its reply entry.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_icmp_error_finds_a_two_entry_nat_connection() {
    let limits = Limits {
        connections: 64,
        ..Limits::default()
    };
    let c = router_with(true, limits, &five_services_to_one_server());
    let (real, vip) = (real_ip(1), [198, 18, 0, 44]);
    let syn = tcp((CLIENT, 41004), (vip, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    let dnated = oracle(&syn, None, Some((real, 8080)), None);
    let error = icmp_error(
        (real, CLIENT),
        ICMP_PORT_UNREACHABLE,
        &dnated,
        548,
        (real_mac(1), director_mac(1)),
        64,
    );
    let out = run_on(&c, "srv1", &error);
    assert_eq!(
        out.frame,
        icmp_error(
            (vip, CLIENT),
            ICMP_PORT_UNREACHABLE,
            &syn,
            548,
            (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
            63,
        )
    );
    assert_eq!(icmp_count(&c, lvs_common::IcmpCase::NatToClient), 1);
}

/// DR and TUN: the client side's error goes, unchanged, to the real server
/// that owns the flow (whose stack holds the VIP): MACs for DR, an outer
/// header for TUN.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn icmp_errors_about_dr_and_tun_connections_go_to_their_real_server() {
    let c = router(true);
    let router_mac = [2, 0, 0, 0, 1, 254];
    for (vip, real, egress, tunnel) in [
        ([198, 18, 0, 21], [198, 18, 12, 3], 2, false),
        ([198, 18, 0, 23], [198, 18, 11, 3], 1, true),
    ] {
        let syn = tcp((CLIENT, 40000), (vip, 80), "S", b"");
        assert_eq!(run_on(&c, "cli0", &syn).action, XDP_REDIRECT);
        let reply = tcp((vip, 80), (CLIENT, 40000), "A", &[7; 1400]);
        let error = icmp_error(
            (CLIENT_SIDE_ROUTER, vip),
            ICMP_FRAG_NEEDED,
            &reply,
            548,
            (router_mac, DIRECTOR_CLIENT_MAC),
            64,
        );
        let out = run_on(&c, "cli0", &error);
        assert_eq!(out.action, XDP_REDIRECT, "srv{egress}");
        let smac = director_mac(egress);
        let expected = if tunnel {
            encapsulated(&error, [198, 18, 11, 1], real, smac, forwarded_mac(real))
        } else {
            routed(&error, smac, forwarded_mac(real))
        };
        assert_eq!(out.frame, expected, "srv{egress}");
    }
    assert_eq!(icmp_count(&c, lvs_common::IcmpCase::ToRealServer), 2);
}

/// NAT and an egress too small for a DF packet, as IPVS behaves, whose
/// MTU check comes before the translation. A reply goes to the kernel as
/// the real server sent it (its forwarding then tells the real server,
/// quoting what it sent); without DF, rewritten, for the kernel to
/// fragment. A client's packet too big for the real server's link is
/// dropped and counted: the kernel's answer would quote the rewritten
/// packet, which the client cannot match.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_too_big_for_the_egress_goes_back_as_it_was_sent() {
    let c = router(true);
    let real = real_ip(3);
    // Before the first packet fills the ways' caches (renewed each second).
    sh("ip link set cli0 mtu 1000 && ip link set srv3 mtu 1000");
    let syn = tcp((CLIENT, 40000), (VIP, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    let with_df = |mut f: Vec<u8>| {
        f[20] |= 0x40;
        oracle(&f, None, None, None)
    };
    let reply = with_df(tcp((real, 8080), (CLIENT, 40000), "A", &[7; 1001 - 40]));
    for tc in [false, true] {
        let out = if tc {
            c.datapath().test_run_tc(ifindex("srv3"), &reply).unwrap()
        } else {
            run_on(&c, "srv3", &reply)
        };
        assert_eq!(
            out.frame, reply,
            "tc {tc}: passed as the real server sent it"
        );
        assert_eq!(out.action, if tc { TC_ACT_UNSPEC } else { XDP_PASS });
    }
    assert_eq!(verdict(&c, "pass_too_big"), 2);
    let mut loose = reply.clone();
    loose[20] &= !0x40;
    let loose = oracle(&loose, None, None, None);
    let out = run_on(&c, "srv3", &loose);
    assert_eq!(out.frame, oracle(&loose, Some((VIP, 80)), None, None));
    assert_eq!(verdict(&c, "pass_too_big"), 3);

    let upload = with_df(tcp((CLIENT, 40000), (VIP, 80), "A", &[7; 1001 - 40]));
    let out = run_on(&c, "cli0", &upload);
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_too_big"), 1);
}

/// IPVS's `conn_reuse_mode` (1, its default): a client's SYN on a closed
/// connection (here CLOSE, after the client's RST) starts a new
/// connection, scheduled afresh and counted, unless a persistence
/// template holds the connection, which then goes on as it was.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_syn_on_a_closed_connection_starts_a_new_one_unless_a_template_holds_it() {
    use lvs_common::tcp_state::TCP_RST;
    use lvs_datapath::Datapath;
    let conns = |c: &Controller<KernelDatapath>, vip: [u8; 4]| {
        snapshot(c)
            .services
            .iter()
            .find(|s| s.spec.id.vip.addr == std::net::IpAddr::from(vip))
            .unwrap()
            .stats
            .conns
    };
    // Established by the client's ACK, then closed by its RST (a RST in
    // SYN_RECV leaves the state as it is, as in IPVS).
    let close = |c: &Controller<KernelDatapath>, client, vip| {
        run(c, &tcp(client, vip, "A", b""));
        let rst = with_flags(tcp(client, vip, "A", b""), TCP_RST);
        run(c, &rst);
        let key = lvs_common::FlowKey::from_wire(
            client.0,
            vip.0,
            client.1.to_be_bytes(),
            vip.1.to_be_bytes(),
            6,
        );
        let entry = c.datapath().connection(&key).unwrap().unwrap();
        assert_eq!(entry.state, ConnState::Close as u8);
    };
    let c = router(true);
    let client = (CLIENT, 40000);
    let first = syn_reaches(&c, client, (VIP, 80));
    // A SYN retransmitted on the open connection is that connection's.
    assert_eq!(syn_reaches(&c, client, (VIP, 80)), first);
    close(&c, client, (VIP, 80));
    let again = syn_reaches(&c, client, (VIP, 80));
    assert_ne!(again, first, "rr's next pick");
    assert_eq!(conns(&c, VIP), 2);
    counts_match_a_recount(&c, "after the reopening");

    let c = with_forms();
    let vip = [198, 18, 0, 33];
    let first = syn_reaches(&c, client, (vip, 443));
    close(&c, client, (vip, 443));
    assert_eq!(syn_reaches(&c, client, (vip, 443)), first);
    assert_eq!(conns(&c, vip), 1);
}

// IPv6: NAT66, DR and IPv6-in-IPv6 through the IPv6 director's stages,
// byte for byte against an oracle that recomputes every checksum.

const CONFIG6: &str = r#"
[[service]]
protocol = "tcp"
address = "[2001:db8::10]:80"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:11::2]:8080"
method = "nat"

[[service]]
protocol = "udp"
address = "[2001:db8::10]:53"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:11::2]:5353"
method = "nat"

[[service]]
protocol = "tcp"
address = "[2001:db8::20]:80"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:12::3]:80"
method = "route"

[[service]]
protocol = "tcp"
address = "[2001:db8::23]:80"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:11::3]:80"
method = "tunnel"
"#;

fn v6(text: &str) -> [u8; 16] {
    text.parse::<std::net::Ipv6Addr>().unwrap().octets()
}

fn mac6(addr: [u8; 16]) -> [u8; 6] {
    [2, 6, 0, 0, addr[5], addr[15]]
}

/// The router of `router`, in IPv6: `cli0` towards the client, `srv1` and
/// `srv2` towards real servers, every neighbour resolved. The peers' ends
/// take no IPv6 (their router solicitations would reach the director).
fn router6() -> Controller<KernelDatapath> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
    sh("ip link set lo up && sysctl -qw net.ipv6.conf.all.forwarding=1");
    let links = [
        (
            "cli0",
            "2001:db8:1::1",
            DIRECTOR_CLIENT_MAC,
            vec!["2001:db8:1::2"],
        ),
        (
            "srv1",
            "2001:db8:11::1",
            director_mac(1),
            vec!["2001:db8:11::2", "2001:db8:11::3"],
        ),
        (
            "srv2",
            "2001:db8:12::1",
            director_mac(2),
            vec!["2001:db8:12::3"],
        ),
    ];
    for (name, addr, mac, neighbours) in &links {
        sh(&format!(
            "ip link add {name} address {} type veth peer name {name}p && sysctl -qw net.ipv6.conf.{name}p.disable_ipv6=1 && ip addr add {addr}/64 dev {name} nodad && ip link set {name} up && ip link set {name}p up",
            mac_str(*mac)
        ));
        for n in neighbours {
            let lladdr = if *n == "2001:db8:1::2" {
                CLIENT_MAC
            } else {
                mac6(v6(n))
            };
            sh(&format!(
                "ip -6 neigh replace {n} lladdr {} dev {name} nud permanent",
                mac_str(lladdr)
            ));
        }
    }
    let ifaces: Vec<String> = links.iter().map(|l| l.0.to_string()).collect();
    let mut controller = Controller::new(
        KernelDatapath::attach(&ifaces, Settings::default(), Limits::default()).expect("attach"),
    );
    controller
        .apply(&config::parse(CONFIG6, "fixture6.toml").unwrap())
        .expect("apply config");
    controller
}

fn tcp6(src: ([u8; 16], u16), dst: ([u8; 16], u16), flags: &str, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv6(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

fn udp6(src: ([u8; 16], u16), dst: ([u8; 16], u16), payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv6(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// `oracle` for IPv6: set the fields, take one from the hop limit when
/// routed, and recompute a TCP or UDP checksum over the IPv6 pseudo-header
/// and the whole segment.
fn oracle6(
    frame: &[u8],
    src: Option<([u8; 16], u16)>,
    dst: Option<([u8; 16], u16)>,
    macs: Option<([u8; 6], [u8; 6])>,
) -> Vec<u8> {
    let mut f = frame.to_vec();
    let l4 = 14 + 40;
    if let Some((smac, dmac)) = macs {
        f[0..6].copy_from_slice(&dmac);
        f[6..12].copy_from_slice(&smac);
        f[21] -= 1;
    }
    if let Some((ip, port)) = src {
        f[22..38].copy_from_slice(&ip);
        f[l4..l4 + 2].copy_from_slice(&port.to_be_bytes());
    }
    if let Some((ip, port)) = dst {
        f[38..54].copy_from_slice(&ip);
        f[l4 + 2..l4 + 4].copy_from_slice(&port.to_be_bytes());
    }
    let proto = f[20];
    if proto != 6 && proto != 17 {
        // Routed as it is (an ICMPv6 error to a DR or TUN server).
        return f;
    }
    let check_at = l4 + if proto == 6 { 16 } else { 6 };
    f[check_at..check_at + 2].copy_from_slice(&[0, 0]);
    let seg_len = f.len() - l4;
    let mut pseudo = 0u32;
    for w in f[22..54].chunks(2) {
        pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    pseudo += proto as u32 + seg_len as u32;
    let mut c = checksum::full(&f[l4..], pseudo);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    f[check_at..check_at + 2].copy_from_slice(&c.to_be_bytes());
    f
}

/// The frame as IPv6 TUN sends it: the inner packet with its hop limit
/// taken down, under an outer header with the inner traffic class and flow
/// label, next header 41 and the inner (decremented) hop limit.
fn encapsulated6(
    frame: &[u8],
    src: [u8; 16],
    dst: [u8; 16],
    smac: [u8; 6],
    dmac: [u8; 6],
) -> Vec<u8> {
    let inner = oracle6(frame, None, None, Some((smac, dmac)))[14..].to_vec();
    let mut f = dmac.to_vec();
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd]);
    f.extend_from_slice(&inner[0..4]);
    f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
    f.extend_from_slice(&[41, inner[7]]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&inner);
    f
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_nat_is_rewritten_exactly_both_ways_on_xdp_and_tc() {
    let c = router6();
    let (client, vip, real) = (
        v6("2001:db8:1::2"),
        v6("2001:db8::10"),
        v6("2001:db8:11::2"),
    );
    let to_real = Some((director_mac(1), mac6(real)));
    let to_client = Some((DIRECTOR_CLIENT_MAC, CLIENT_MAC));

    let syn = tcp6((client, 40000), (vip, 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(out.frame, oracle6(&syn, None, Some((real, 8080)), to_real));
    let data = tcp6((client, 40000), (vip, 80), "A", b"GET / HTTP/1.0\r\n\r\n");
    let out = c.datapath().test_run_tc(ifindex("cli0"), &data).unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(out.frame, oracle6(&data, None, Some((real, 8080)), to_real));

    let reply = tcp6((real, 8080), (client, 40000), "SA", b"hello");
    let out = run_on(&c, "srv1", &reply);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(out.frame, oracle6(&reply, Some((vip, 80)), None, to_client));
    let out = c.datapath().test_run_tc(ifindex("srv1"), &reply).unwrap();
    assert_eq!(out.action, TC_ACT_REDIRECT);
    assert_eq!(out.frame, oracle6(&reply, Some((vip, 80)), None, to_client));

    let query = udp6((client, 5000), (vip, 53), b"query");
    let out = run(&c, &query);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle6(&query, None, Some((real, 5353)), to_real)
    );
    let answer = udp6((real, 5353), (client, 5000), b"answer");
    let out = run_on(&c, "srv1", &answer);
    assert_eq!(
        out.frame,
        oracle6(&answer, Some((vip, 53)), None, to_client)
    );

    let snap = snapshot(&c);
    let tcp_service = snap
        .services
        .iter()
        .find(|s| s.spec.id.vip.addr.is_ipv6() && s.spec.id.vip.port == 80)
        .unwrap();
    assert_eq!(
        (
            tcp_service.stats.conns,
            tcp_service.stats.in_packets,
            tcp_service.stats.out_packets
        ),
        (1, 2, 2)
    );
    // The connection is listed (`-L -c`) with its IPv6 addresses.
    let rows = c.connection_views().unwrap();
    assert!(rows.iter().any(|r| r.source
        == std::net::SocketAddr::new(std::net::Ipv6Addr::from(client).into(), 40000)
        && r.destination
            == std::net::SocketAddr::new(std::net::Ipv6Addr::from(real).into(), 8080)));
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_dr_and_tun_are_forwarded_exactly() {
    let c = router6();
    let client = v6("2001:db8:1::2");
    let dr_real = v6("2001:db8:12::3");
    let syn = tcp6((client, 40000), (v6("2001:db8::20"), 80), "S", b"");
    let out = run(&c, &syn);
    assert_eq!(out.action, XDP_REDIRECT);
    assert_eq!(
        out.frame,
        oracle6(&syn, None, None, Some((director_mac(2), mac6(dr_real))))
    );

    let tun_real = v6("2001:db8:11::3");
    let director_srv1 = v6("2001:db8:11::1");
    for frame in [
        tcp6((client, 40001), (v6("2001:db8::23"), 80), "S", b""),
        tcp6(
            (client, 40001),
            (v6("2001:db8::23"), 80),
            "A",
            b"GET / HTTP/1.0\r\n\r\n",
        ),
    ] {
        let expected = encapsulated6(
            &frame,
            director_srv1,
            tun_real,
            director_mac(1),
            mac6(tun_real),
        );
        let out = run(&c, &frame);
        assert_eq!(out.action, XDP_REDIRECT);
        assert_eq!(out.frame, expected);
        let out = c.datapath().test_run_tc(ifindex("cli0"), &frame).unwrap();
        assert_eq!(out.action, TC_ACT_REDIRECT);
        assert_eq!(out.frame, expected);
    }
    // A fragment, and ICMPv6 (neighbour discovery among it), are the
    // kernel's, untouched.
    let mut fragment = syn.clone();
    fragment[20] = 44;
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv6(client, v6("2001:db8::20"), 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut echo, b"ping")
        .unwrap();
    for frame in [fragment, echo] {
        let out = run(&c, &frame);
        assert_eq!((out.action, &out.frame), (XDP_PASS, &frame));
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn decapsulation_strips_valid_ipv6_in_ipv6_and_leaves_the_rest_untouched() {
    let mut decap = lvs_datapath::StandaloneXdp::decap().expect("load lvs_decap");
    let (client, vip, real) = (
        v6("2001:db8:1::2"),
        v6("2001:db8::23"),
        v6("2001:db8:11::3"),
    );
    let inner = tcp6((client, 40000), (vip, 80), "S", b"");
    let outer = encapsulated6(
        &inner,
        v6("2001:db8:11::1"),
        real,
        director_mac(1),
        mac6(real),
    );
    let out = decap.test_run(&outer).unwrap();
    assert_eq!(out.action, XDP_PASS);
    let mut expected = outer[..14].to_vec();
    expected.extend_from_slice(&outer[54..]);
    assert_eq!(out.frame, expected);

    // Truncated inside, lying about its length, or plain TCP: untouched.
    let truncated = outer[..54 + 20].to_vec();
    let mut lying = outer.clone();
    lying[19] += 8;
    for frame in [&truncated, &lying, &inner] {
        let out = decap.test_run(frame).unwrap();
        assert_eq!((out.action, &out.frame), (XDP_PASS, frame));
    }
    assert_eq!(decap.counters().unwrap(), [1, 1, 2]);
}

/// IPv6 DR and TUN packets too big for the way out: XDP answers ICMPv6
/// Packet Too Big from the VIP, quoting the packet's header and eight
/// bytes; tc drops and counts them.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_too_big_for_dr_and_tun_answers_packet_too_big() {
    let c = router6();
    sh("ip link set srv2 mtu 1280 && ip link set srv1 mtu 1300");
    let client = v6("2001:db8:1::2");
    for (vip, mtu) in [
        (v6("2001:db8::20"), 1280u32),
        (v6("2001:db8::23"), 1300 - 40),
    ] {
        let syn = tcp6((client, 40000), (vip, 80), "S", b"");
        assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
        let big = tcp6((client, 40000), (vip, 80), "A", &[0x5a; 1300]);
        let out = run(&c, &big);
        assert_eq!(out.action, XDP_TX);
        let expected = icmp6_error(
            (vip, client),
            (2, 0, mtu.to_be_bytes()),
            &big,
            48,
            (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
            64,
        );
        assert_eq!(out.frame, expected);
        let out = c.datapath().test_run_tc(ifindex("cli0"), &big).unwrap();
        assert_eq!(out.action, 2, "TC_ACT_SHOT");
    }
    assert_eq!(verdict(&c, "icmp_too_big"), 2);
    assert_eq!(verdict(&c, "drop_too_big"), 2);
}

/// An ICMPv6 error from `from` to `to` (Ethernet `macs`: source,
/// destination) quoting the first `quote` bytes of the IPv6 packet in the
/// frame `quoted`, its checksum summed in full over the pseudo-header.
fn icmp6_error(
    (from, to): ([u8; 16], [u8; 16]),
    (kind, code, rest): (u8, u8, [u8; 4]),
    quoted: &[u8],
    quote: usize,
    (smac, dmac): ([u8; 6], [u8; 6]),
    hop_limit: u8,
) -> Vec<u8> {
    let quoted = &quoted[14..(14 + quote).min(quoted.len())];
    let mut icmp = vec![kind, code, 0, 0];
    icmp.extend_from_slice(&rest);
    icmp.extend_from_slice(quoted);
    let mut pseudo = 0u32;
    for w in from.chunks(2).chain(to.chunks(2)) {
        pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    pseudo += icmp.len() as u32 + 58;
    let check = checksum::full(&icmp, pseudo);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let mut f = dmac.to_vec();
    f.extend_from_slice(&smac);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop_limit]);
    f.extend_from_slice(&from);
    f.extend_from_slice(&to);
    f.extend_from_slice(&icmp);
    f
}

const ICMP6_TOO_BIG: (u8, u8, [u8; 4]) = (2, 0, [0, 0, 0x05, 0x00]); // MTU 1280
const ICMP6_PORT_UNREACHABLE: (u8, u8, [u8; 4]) = (1, 4, [0; 4]);

/// ICMPv6 errors about IPv6 connections reach their owner, as for IPv4
/// (`icmp_errors_about_nat_connections_reach_their_owner_translated`):
/// NAT66 both ways, translated (outer address, quoted address and port,
/// the quoted transport checksum when quoted, the ICMPv6 checksum over its
/// new pseudo-header), on XDP and tc; DR's and TUN's sent on unchanged to
/// the real server; an error about no connection, and an informational
/// message, passed untouched.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn icmpv6_errors_reach_their_owner_translated() {
    use lvs_common::IcmpCase;
    let c = router6();
    let (client, vip, real) = (
        v6("2001:db8:1::2"),
        v6("2001:db8::10"),
        v6("2001:db8:11::2"),
    );
    let client_side_router = v6("2001:db8:1::fe");
    let router_mac = [2, 0, 0, 0, 1, 254];
    let syn = tcp6((client, 40000), (vip, 80), "S", b"");
    assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
    let body = vec![0x5a; 1400];
    let sent = tcp6((vip, 80), (client, 40000), "A", &body);
    let as_server_sent = oracle6(&sent, Some((real, 8080)), None, None);
    // Linux quotes as much as fits in 1280 bytes; a quote of the IPv6
    // header and eight bytes leaves out the TCP checksum.
    for (quote, tc) in [(1232, false), (48, false), (1232, true)] {
        let error = icmp6_error(
            (client_side_router, vip),
            ICMP6_TOO_BIG,
            &sent,
            quote,
            (router_mac, DIRECTOR_CLIENT_MAC),
            64,
        );
        let out = if tc {
            c.datapath().test_run_tc(ifindex("cli0"), &error).unwrap()
        } else {
            run_on(&c, "cli0", &error)
        };
        let expected = icmp6_error(
            (client_side_router, real),
            ICMP6_TOO_BIG,
            &as_server_sent,
            quote,
            (director_mac(1), mac6(real)),
            63,
        );
        assert_eq!(out.frame, expected, "quote of {quote} bytes, tc {tc}");
        assert_eq!(out.action, if tc { TC_ACT_REDIRECT } else { XDP_REDIRECT });
    }
    assert_eq!(icmp_count(&c, IcmpCase::NatToRealServer), 3);

    // The real server's error about the client's packet (as DNATed).
    let as_client_sent = tcp6((client, 40000), (vip, 80), "A", &body);
    let dnated = oracle6(&as_client_sent, None, Some((real, 8080)), None);
    let error = icmp6_error(
        (real, client),
        ICMP6_TOO_BIG,
        &dnated,
        1232,
        (mac6(real), director_mac(1)),
        64,
    );
    let expected = icmp6_error(
        (vip, client),
        ICMP6_TOO_BIG,
        &as_client_sent,
        1232,
        (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
        63,
    );
    let out = run_on(&c, "srv1", &error);
    assert_eq!((out.action, &out.frame), (XDP_REDIRECT, &expected));
    let out = c.datapath().test_run_tc(ifindex("srv1"), &error).unwrap();
    assert_eq!((out.action, &out.frame), (TC_ACT_REDIRECT, &expected));
    // UDP: the real server's port unreachable.
    let query = udp6((client, 5000), (vip, 53), b"query");
    assert_eq!(run(&c, &query).action, XDP_REDIRECT);
    let dnated = oracle6(&query, None, Some((real, 5353)), None);
    let error = icmp6_error(
        (real, client),
        ICMP6_PORT_UNREACHABLE,
        &dnated,
        1232,
        (mac6(real), director_mac(1)),
        64,
    );
    let out = run_on(&c, "srv1", &error);
    assert_eq!(
        out.frame,
        icmp6_error(
            (vip, client),
            ICMP6_PORT_UNREACHABLE,
            &query,
            1232,
            (DIRECTOR_CLIENT_MAC, CLIENT_MAC),
            63,
        )
    );
    assert_eq!(icmp_count(&c, IcmpCase::NatToClient), 3);

    // DR and TUN: the client side's error goes on unchanged.
    let tun_real = v6("2001:db8:11::3");
    for (vip, real, egress, tunnel) in [
        (v6("2001:db8::20"), v6("2001:db8:12::3"), 2, false),
        (v6("2001:db8::23"), tun_real, 1, true),
    ] {
        let syn = tcp6((client, 40000), (vip, 80), "S", b"");
        assert_eq!(run(&c, &syn).action, XDP_REDIRECT);
        let reply = tcp6((vip, 80), (client, 40000), "A", &body);
        let error = icmp6_error(
            (client_side_router, vip),
            ICMP6_TOO_BIG,
            &reply,
            1232,
            (router_mac, DIRECTOR_CLIENT_MAC),
            64,
        );
        let smac = director_mac(egress);
        let expected = if tunnel {
            encapsulated6(&error, v6("2001:db8:11::1"), real, smac, mac6(real))
        } else {
            oracle6(&error, None, None, Some((smac, mac6(real))))
        };
        let out = run_on(&c, "cli0", &error);
        assert_eq!((out.action, &out.frame), (XDP_REDIRECT, &expected));
        let out = c.datapath().test_run_tc(ifindex("cli0"), &error).unwrap();
        assert_eq!((out.action, &out.frame), (TC_ACT_REDIRECT, &expected));
    }
    assert_eq!(icmp_count(&c, IcmpCase::ToRealServer), 4);

    // About no connection, or not an error: the kernel's, untouched.
    let stray = tcp6((vip, 80), (client, 40001), "A", b"x");
    let error = icmp6_error(
        (client_side_router, vip),
        ICMP6_TOO_BIG,
        &stray,
        1232,
        (router_mac, DIRECTOR_CLIENT_MAC),
        64,
    );
    let mut echo = Vec::new();
    PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_CLIENT_MAC)
        .ipv6(client, vip, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut echo, b"ping")
        .unwrap();
    for frame in [error, echo] {
        let out = run_on(&c, "cli0", &frame);
        assert_eq!((out.action, &out.frame), (XDP_PASS, &frame));
    }
    assert_eq!(icmp_count(&c, IcmpCase::NoConnection), 1);
}

/// A neighbour solicitation for `target` as the client sends it: to the
/// target's solicited-node multicast address, with its link-layer address.
fn neighbour_solicitation(client: [u8; 16], target: [u8; 16]) -> Vec<u8> {
    let mut group = v6("ff02::1:ff00:0");
    group[13..].copy_from_slice(&target[13..]);
    let mut icmp = vec![135, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&target);
    icmp.extend_from_slice(&[1, 1]);
    icmp.extend_from_slice(&CLIENT_MAC);
    let mut pseudo = 0u32;
    for w in client.chunks(2).chain(group.chunks(2)) {
        pseudo += u16::from_be_bytes([w[0], w[1]]) as u32;
    }
    pseudo += icmp.len() as u32 + 58;
    let check = checksum::full(&icmp, pseudo);
    icmp[2..4].copy_from_slice(&check.to_be_bytes());
    let mut f = vec![0x33, 0x33, 0xff, target[13], target[14], target[15]];
    f.extend_from_slice(&CLIENT_MAC);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, 255]);
    f.extend_from_slice(&client);
    f.extend_from_slice(&group);
    f.extend_from_slice(&icmp);
    f
}

/// `a_datapath_whose_lvsd_died_keeps_flows_but_takes_no_new_ones` in IPv6:
/// established flows forward, new ones drop, and neighbour solicitations
/// for a floating IPv6 address go unanswered (the kernel would answer them
/// while the peer announces the address).
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipv6_datapath_whose_lvsd_died_keeps_flows_and_leaves_the_floating_address() {
    let mut c = router6();
    let (client, vip, real) = (
        v6("2001:db8:1::2"),
        v6("2001:db8::20"),
        v6("2001:db8:12::3"),
    );
    c.datapath_mut()
        .set_floating(&[std::net::Ipv6Addr::from(vip).into()])
        .unwrap();
    let mut liveness = c.datapath_mut().liveness().unwrap();
    let syn = |port| tcp6((client, port), (vip, 80), "S", b"");
    let ack = tcp6((client, 40000), (vip, 80), "A", b"payload");
    let solicitation = neighbour_solicitation(client, vip);
    liveness
        .refresh(std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(run(&c, &syn(40000)).action, XDP_REDIRECT);
    assert_eq!(run(&c, &solicitation).action, XDP_PASS);
    liveness.refresh(std::time::Duration::ZERO).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(run(&c, &syn(40001)).action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_no_controller"), 1);
    let out = run(&c, &ack);
    assert_eq!(
        (out.action, out.frame),
        (
            XDP_REDIRECT,
            oracle6(&ack, None, None, Some((director_mac(2), mac6(real))))
        )
    );
    let out = run(&c, &solicitation);
    assert_eq!(out.action, XDP_DROP);
    assert_eq!(verdict(&c, "drop_arp_no_controller"), 1);
    // For an address that does not float: the kernel's.
    let other = neighbour_solicitation(client, v6("2001:db8:1::1"));
    let out = run(&c, &other);
    assert_eq!((out.action, out.frame), (XDP_PASS, other));
    liveness
        .refresh(std::time::Duration::from_secs(60))
        .unwrap();
    assert_eq!(run(&c, &syn(40002)).action, XDP_REDIRECT);
}

/// Which of `two_dr6`'s servers a SYN from `client` to `vip`:80 went to.
fn dr6_server_of(
    c: &Controller<KernelDatapath>,
    client: ([u8; 16], u16),
    vip: [u8; 16],
) -> [u8; 16] {
    let out = run(c, &tcp6(client, (vip, 80), "S", b""));
    assert_eq!(out.action, XDP_REDIRECT, "{client:?}");
    [v6("2001:db8:11::2"), v6("2001:db8:12::3")]
        .into_iter()
        .find(|real| out.frame[0..6] == mac6(*real))
        .unwrap_or_else(|| panic!("{client:?}: sent to no server"))
}

/// A TCP service `[vip]:80` with `options` (scheduler and more) over the
/// two DR servers `dr6_server_of` tells apart.
fn two_dr6(vip: &str, options: &str) -> String {
    format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"[{vip}]:80\"\n{options}\n\
         [[service.real]]\naddress = \"[2001:db8:11::2]:80\"\nmethod = \"route\"\n\
         [[service.real]]\naddress = \"[2001:db8:12::3]:80\"\nmethod = \"route\"\n"
    )
}

/// An IPv6 persistent service with `-M 64`: every client of one /64 keeps
/// the server its first connection got, whatever its address and port; a
/// client of another /64 is scheduled afresh (rr: the other server). The
/// template is listed by its client network.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_persistence_keeps_a_clients_64_on_its_server() {
    let mut c = router6();
    let persistent = two_dr6(
        "2001:db8::30",
        "scheduler = \"rr\"\npersistent = 300\nnetmask = \"64\"",
    );
    c.apply(&config::parse(&persistent, "persistent6.toml").unwrap())
        .unwrap();
    let vip = v6("2001:db8::30");
    let server_of = |c: &Controller<KernelDatapath>, client: &str, port: u16| {
        dr6_server_of(c, (v6(client), port), vip)
    };
    let first = server_of(&c, "2001:db8:1::2", 40000);
    for (client, port) in [
        ("2001:db8:1::2", 40001),
        ("2001:db8:1::99", 40000),
        ("2001:db8:1:0:ffff::1", 50000),
    ] {
        assert_eq!(server_of(&c, client, port), first, "{client}:{port}");
    }
    let other = server_of(&c, "2001:db8:7::5", 40000);
    assert_ne!(other, first, "another /64 is scheduled afresh");
    assert_eq!(server_of(&c, "2001:db8:7::6", 40000), other);
    let rows = c.connection_views().unwrap();
    for net in ["2001:db8:1::", "2001:db8:7::"] {
        let source = std::net::SocketAddr::new(net.parse().unwrap(), 0);
        assert!(
            rows.iter().any(|r| r.source == source && r.state == "NONE"),
            "no template for {net}/64 in {rows:?}"
        );
    }
}

const ACROSS: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.50:80"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:11::3]:80"
method = "tunnel"

[[service]]
protocol = "tcp"
address = "[2001:db8::50]:80"
scheduler = "rr"
[[service.real]]
address = "198.18.11.3:80"
method = "tunnel"
"#;

/// Tunnels across families, as IPVS allows: an IPv4 service's IPv6 server
/// gets the IPv4 packet inside an IPv6 header (next header 4, the inner TOS
/// as the traffic class, the inner TTL after its decrement as the hop
/// limit) from the source the IPv6 route selects, and an IPv6 service's
/// IPv4 server the IPv6 packet inside IPv4 (protocol 41), on XDP and tc;
/// `lvs_decap` on the real server takes either out. `-L -c` names the IPv6
/// server.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn tunnels_cross_families_both_ways() {
    let mut c = router6();
    c.apply(&config::parse(ACROSS, "across.toml").unwrap())
        .unwrap();
    let (vip, real) = ([198, 18, 0, 50], v6("2001:db8:11::3"));
    let mut expected = Vec::new();
    for (port, flags) in [(40000, "S"), (40000, "A")] {
        let mut frame = tcp((CLIENT, port), (vip, 80), flags, b"GET / HTTP/1.0\r\n\r\n");
        frame[15] = 0xb8; // TOS: DSCP EF
        let checksum = checksum::full(
            &{
                let mut h = frame[14..34].to_vec();
                h[10..12].copy_from_slice(&[0, 0]);
                h
            },
            0,
        );
        frame[24..26].copy_from_slice(&checksum.to_be_bytes());
        let inner = oracle(&frame, None, None, Some((director_mac(1), mac6(real))))[14..].to_vec();
        let mut f = mac6(real).to_vec();
        f.extend_from_slice(&director_mac(1));
        f.extend_from_slice(&[0x86, 0xdd, 0x6b, 0x80, 0, 0]);
        f.extend_from_slice(&(inner.len() as u16).to_be_bytes());
        f.extend_from_slice(&[4, inner[8]]);
        f.extend_from_slice(&v6("2001:db8:11::1"));
        f.extend_from_slice(&real);
        f.extend_from_slice(&inner);
        let out = run(&c, &frame);
        assert_eq!(
            (out.action, &out.frame),
            (XDP_REDIRECT, &f),
            "{flags} on XDP"
        );
        let out = c.datapath().test_run_tc(ifindex("cli0"), &frame).unwrap();
        assert_eq!(
            (out.action, &out.frame),
            (TC_ACT_REDIRECT, &f),
            "{flags} on tc"
        );
        expected = f;
    }
    let rows = c.connection_views().unwrap();
    assert!(
        rows.iter().any(|r| r.destination
            == std::net::SocketAddr::new(std::net::Ipv6Addr::from(real).into(), 80)),
        "{rows:?}"
    );

    // The other way: an IPv6 service's IPv4 server, by IPv6 inside IPv4
    // (protocol 41, DF, the traffic class as TOS).
    sh("sysctl -qw net.ipv4.ip_forward=1 && ip addr add 198.18.11.1/24 dev srv1 && ip neigh replace 198.18.11.3 lladdr 02:04:00:00:11:03 dev srv1 nud permanent");
    let frame = tcp6(
        (v6("2001:db8:1::2"), 40000),
        (v6("2001:db8::50"), 80),
        "S",
        b"",
    );
    let inner = oracle6(&frame, None, None, Some((director_mac(1), [0; 6])))[14..].to_vec();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&((20 + inner.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[
        0, 0, 0x40, 0, inner[7], 41, 0, 0, 198, 18, 11, 1, 198, 18, 11, 3,
    ]);
    let check = checksum::full(&ip, 0);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    let mut f = vec![2, 4, 0, 0, 0x11, 3];
    f.extend_from_slice(&director_mac(1));
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&ip);
    f.extend_from_slice(&inner);
    let out = run(&c, &frame);
    assert_eq!((out.action, &out.frame), (XDP_REDIRECT, &f), "6in4 on XDP");
    let out = c.datapath().test_run_tc(ifindex("cli0"), &frame).unwrap();
    assert_eq!(
        (out.action, &out.frame),
        (TC_ACT_REDIRECT, &f),
        "6in4 on tc"
    );

    // On the real server: the IPv4 packet, under the same Ethernet header
    // with IPv4's ethertype.
    let mut decap = lvs_datapath::StandaloneXdp::decap().expect("load lvs_decap");
    let out = decap.test_run(&expected).unwrap();
    let mut stripped = expected[..12].to_vec();
    stripped.extend_from_slice(&[0x08, 0x00]);
    stripped.extend_from_slice(&expected[54..]);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &stripped));
    // An IPv6 packet inside IPv4 (protocol 41) comes out as IPv6.
    let inner6 = tcp6(
        (v6("2001:db8:1::2"), 40000),
        (v6("2001:db8::23"), 80),
        "S",
        b"",
    );
    let mut outer4 = inner6[..12].to_vec();
    let total = (20 + inner6.len() - 14) as u16;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 41, 0, 0, 198, 18, 11, 1, 198, 18, 11, 3]);
    let check = checksum::full(&ip, 0);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    outer4.extend_from_slice(&[0x08, 0x00]);
    outer4.extend_from_slice(&ip);
    outer4.extend_from_slice(&inner6[14..]);
    let out = decap.test_run(&outer4).unwrap();
    let mut stripped6 = inner6[..12].to_vec();
    stripped6.extend_from_slice(&[0x86, 0xdd]);
    stripped6.extend_from_slice(&inner6[14..]);
    assert_eq!((out.action, &out.frame), (XDP_PASS, &stripped6));
    assert_eq!(decap.counters().unwrap()[0], 2);
}

/// lblc for an IPv6 service: the first packet to the VIP takes the ring's
/// pick and reports the new destination through `EVENTS6`; lvsd records it
/// in `LOCALITY6`, and every client's next flow to that address goes to the
/// same server.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_lblc_reports_a_new_destination_and_keeps_it() {
    use lvs_datapath::Datapath;
    let mut c = router6();
    let lblc = two_dr6("2001:db8::60", "scheduler = \"lblc\"");
    c.apply(&config::parse(&lblc, "lblc6.toml").unwrap())
        .unwrap();
    let vip = v6("2001:db8::60");
    let server_of = |c: &Controller<KernelDatapath>, client: &str, port: u16| {
        dr6_server_of(c, (v6(client), port), vip)
    };
    let first = server_of(&c, "2001:db8:1::2", 5000);
    assert_eq!(c.process_events().unwrap(), 1);
    let entries = c.datapath().localities::<lvs_common::addr::In6>().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0.addr().0, vip);
    for (client, port) in [("2001:db8:1::2", 5001), ("2001:db8:1::7", 5000)] {
        assert_eq!(server_of(&c, client, port), first, "{client}:{port}");
    }
}

/// IPv6 LOCALNODE: a real server at one of the director's own IPv6
/// addresses (or `::1`) gets the client's packet unchanged through the
/// local stack, as IPVS's LOCALNODE does.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn an_ipv6_local_real_server_gets_the_packet_unchanged() {
    let mut c = router6();
    c.apply(
        &config::parse(
            r#"
[[service]]
protocol = "tcp"
address = "[2001:db8::70]:80"
scheduler = "rr"
[[service.real]]
address = "[::1]:80"
method = "route"
[[service]]
protocol = "tcp"
address = "[2001:db8::71]:80"
scheduler = "rr"
[[service.real]]
address = "[2001:db8:11::1]:80"
method = "nat"
"#,
            "local6.toml",
        )
        .unwrap(),
    )
    .unwrap();
    let client = v6("2001:db8:1::2");
    for (vip, port) in [(v6("2001:db8::70"), 41000), (v6("2001:db8::71"), 41001)] {
        for flags in ["S", "A"] {
            let frame = tcp6((client, port), (vip, 80), flags, b"");
            let out = run(&c, &frame);
            assert_eq!((out.action, out.frame), (XDP_PASS, frame));
        }
    }
    assert_eq!(verdict(&c, "pass_local"), 4);
}
