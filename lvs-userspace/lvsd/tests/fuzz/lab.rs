//! The router the fuzzer drives, and what it knows about it: its links,
//! neighbours and routes (to predict where a rewritten frame must go), and
//! its services (to know which real servers a flow may be given).
//!
//! A private network namespace on the test's thread: `cli0` towards the
//! clients, `srv1`..`srv3` towards the real servers. Every neighbour on
//! `srv3` is left unresolved, so each method also takes its
//! neighbour-layer path. Clients in 10.0.0.0/8 are behind a gateway on
//! `cli0`; clients in 172.16.0.0/12 have no route at all (a NAT reply to
//! them goes to the kernel). Forwarding is on, but for one phase.

use std::{collections::HashMap, net::Ipv4Addr, process::Command};

use lvs::controller::Controller;
use lvs_common::{Method, NextHop, Settings, IPPROTO_TCP, IPPROTO_UDP};
use lvs_datapath::{Datapath, KernelDatapath, Limits};
use lvs_state::config;

/// One of the router's links.
pub struct Link {
    pub name: &'static str,
    pub addr: [u8; 4],
    pub mac: [u8; 6],
}

pub const LINKS: [Link; 4] = [
    Link {
        name: "cli0",
        addr: [198, 18, 1, 1],
        mac: [2, 0, 0, 0, 1, 1],
    },
    Link {
        name: "srv1",
        addr: [198, 18, 11, 1],
        mac: [2, 0, 0, 0, 0x11, 1],
    },
    Link {
        name: "srv2",
        addr: [198, 18, 12, 1],
        mac: [2, 0, 0, 0, 0x12, 1],
    },
    Link {
        name: "srv3",
        addr: [198, 18, 13, 1],
        mac: [2, 0, 0, 0, 0x13, 1],
    },
];

/// Every link's MTU (the veth default).
pub const MTU: usize = 1500;

/// The client every generated frame comes from at layer 2, and the
/// gateway to 10.0.0.0/8.
pub const CLIENT: [u8; 4] = [198, 18, 1, 2];
/// Neighbours with a permanent entry; every other one is unresolved.
const RESOLVED: [[u8; 4]; 6] = [
    CLIENT,
    [198, 18, 1, 3],
    [198, 18, 11, 2],
    [198, 18, 11, 3],
    [198, 18, 12, 2],
    [198, 18, 12, 3],
];

/// A resolved neighbour's MAC: its address in the last two bytes.
pub fn neighbour_mac(ip: [u8; 4]) -> [u8; 6] {
    [2, 0, 0, 0, ip[2], ip[3]]
}

pub fn resolved(ip: [u8; 4]) -> Option<[u8; 6]> {
    RESOLVED.contains(&ip).then(|| neighbour_mac(ip))
}

/// Where the kernel's FIB sends a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Out of `LINKS[link]` towards `next_hop`.
    Via { link: usize, next_hop: [u8; 4] },
    /// No route (or a local or special address): the FIB helper places
    /// nothing.
    Unroutable,
}

pub fn route(dst: [u8; 4]) -> Route {
    let on_link = |link: usize| Route::Via {
        link,
        next_hop: dst,
    };
    match dst {
        // The links' own addresses and broadcasts are local (a subnet's
        // first address is not a broadcast on today's kernels).
        [198, 18, 1 | 11 | 12 | 13, 1 | 255] => Route::Unroutable,
        [198, 18, 1, _] => on_link(0),
        [198, 18, 11, _] => on_link(1),
        [198, 18, 12, _] => on_link(2),
        [198, 18, 13, _] => on_link(3),
        [10, ..] => Route::Via {
            link: 0,
            next_hop: CLIENT,
        },
        _ => Route::Unroutable,
    }
}

/// A real server as configured, and the method its connections get.
#[derive(Clone, Debug)]
pub struct RealSpec {
    pub addr: [u8; 4],
    /// 0 for a port-0 service's real servers (the client's port is kept).
    pub port: u16,
    pub method: Method,
    pub weight: u32,
}

#[derive(Clone, Debug)]
pub struct ServiceSpec {
    pub proto: u8,
    pub vip: [u8; 4],
    /// 0: any port (persistent).
    pub port: u16,
    pub scheduler: &'static str,
    pub persistent: bool,
    pub reals: Vec<RealSpec>,
}

impl ServiceSpec {
    /// Whether any real server can be scheduled at all.
    pub fn schedulable(&self) -> bool {
        self.reals.iter().any(|r| r.weight > 0)
    }
}

fn real(addr: [u8; 4], port: u16, method: Method) -> RealSpec {
    RealSpec {
        addr,
        port,
        method,
        weight: 1,
    }
}

/// The services under test: every method, both protocols, each way out
/// (another link, the ingress link, the neighbour layer), a persistent
/// port-0 service, every form of published decision (rr and wlc rings, sh
/// and dh buckets, lblc locality), a local real server and one that has
/// no eligible real server.
pub fn services() -> Vec<ServiceSpec> {
    use Method::*;
    let svc = |proto, vip, port, scheduler, reals| ServiceSpec {
        proto,
        vip,
        port,
        scheduler,
        persistent: false,
        reals,
    };
    let (tcp, udp) = (IPPROTO_TCP, IPPROTO_UDP);
    vec![
        svc(
            tcp,
            [198, 18, 0, 10],
            80,
            "rr",
            vec![
                real([198, 18, 11, 2], 8080, Nat),
                real([198, 18, 12, 2], 8080, Nat),
                real([198, 18, 13, 2], 8080, Nat),
            ],
        ),
        svc(
            udp,
            [198, 18, 0, 10],
            53,
            "rr",
            vec![
                real([198, 18, 11, 2], 5353, Nat),
                real([198, 18, 12, 2], 5353, Nat),
            ],
        ),
        svc(
            tcp,
            [198, 18, 0, 20],
            80,
            "rr",
            vec![
                real([198, 18, 1, 3], 80, Route),
                real([198, 18, 12, 3], 80, Route),
                real([198, 18, 13, 3], 80, Route),
            ],
        ),
        svc(
            udp,
            [198, 18, 0, 20],
            53,
            "rr",
            vec![real([198, 18, 12, 3], 53, Route)],
        ),
        svc(
            tcp,
            [198, 18, 0, 23],
            80,
            "rr",
            vec![
                real([198, 18, 11, 3], 80, Tunnel),
                real([198, 18, 13, 4], 80, Tunnel),
            ],
        ),
        svc(
            udp,
            [198, 18, 0, 23],
            53,
            "rr",
            vec![real([198, 18, 11, 3], 53, Tunnel)],
        ),
        ServiceSpec {
            persistent: true,
            ..svc(
                tcp,
                [198, 18, 0, 33],
                0,
                "rr",
                vec![
                    real([198, 18, 11, 2], 0, Nat),
                    real([198, 18, 12, 2], 0, Nat),
                ],
            )
        },
        svc(
            tcp,
            [198, 18, 0, 31],
            80,
            "sh",
            vec![
                real([198, 18, 11, 2], 8080, Nat),
                real([198, 18, 12, 2], 8080, Nat),
            ],
        ),
        svc(
            tcp,
            [198, 18, 0, 36],
            80,
            "wlc",
            vec![
                real([198, 18, 11, 2], 8080, Nat),
                RealSpec {
                    weight: 3,
                    ..real([198, 18, 12, 2], 8080, Nat)
                },
            ],
        ),
        svc(
            tcp,
            [198, 18, 0, 37],
            80,
            "lblc",
            vec![
                real([198, 18, 11, 2], 8080, Nat),
                real([198, 18, 12, 2], 8080, Nat),
            ],
        ),
        svc(
            udp,
            [198, 18, 0, 38],
            53,
            "dh",
            vec![
                real([198, 18, 1, 3], 53, Route),
                real([198, 18, 12, 3], 53, Route),
            ],
        ),
        svc(
            tcp,
            [198, 18, 0, 30],
            80,
            "rr",
            vec![real([127, 0, 0, 1], 80, Local)],
        ),
        svc(
            tcp,
            [198, 18, 0, 35],
            80,
            "rr",
            vec![RealSpec {
                weight: 0,
                ..real([198, 18, 11, 2], 8080, Nat)
            }],
        ),
    ]
}

/// The services as lvsd's TOML config.
fn config_toml(services: &[ServiceSpec]) -> String {
    let mut s = String::new();
    for svc in services {
        let proto = if svc.proto == IPPROTO_TCP {
            "tcp"
        } else {
            "udp"
        };
        s += &format!(
            "[[service]]\nprotocol = \"{proto}\"\naddress = \"{}:{}\"\nscheduler = \"{}\"\n",
            Ipv4Addr::from(svc.vip),
            svc.port,
            svc.scheduler
        );
        if svc.persistent {
            s += "persistent = 360\n";
        }
        for r in &svc.reals {
            let method = match r.method {
                Method::Nat => "nat",
                Method::Tunnel => "tunnel",
                // A local real server keeps the method it is given.
                Method::Route | Method::Local => "route",
            };
            s += &format!(
                "[[service.real]]\naddress = \"{}:{}\"\nmethod = \"{method}\"\nweight = {}\n",
                Ipv4Addr::from(r.addr),
                r.port,
                r.weight
            );
        }
        s += "\n";
    }
    s
}

pub fn sh(cmd: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .expect("spawn sh");
    assert!(status.success(), "`{cmd}` failed");
}

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub struct Lab {
    pub controller: Controller<KernelDatapath>,
    pub services: Vec<ServiceSpec>,
    /// `LINKS[i]`'s interface index.
    pub ifindex: [u32; 4],
    /// The next hops lvsd would have resolved (`NEXT_HOPS`), for DR and
    /// TUN with forwarding off; one TUN real server has none.
    pub next_hops: HashMap<[u8; 4], NextHop>,
}

/// Loopback's interface index: where a frame comes from when
/// `BPF_PROG_TEST_RUN` is given no context.
pub const LOOPBACK: u32 = 1;

impl Lab {
    /// Build the router in a new network namespace (this thread's) and load
    /// the director with the services.
    pub fn new() -> Self {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        // No IPv6: router solicitations would run the program too and move
        // the verdict counters the oracle reads after every frame.
        sh("ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
        for link in &LINKS {
            sh(&format!(
                "ip link add {0} address {1} type veth peer name {0}p && ip addr add {2}/24 dev {0} && ip link set {0} up && ip link set {0}p up",
                link.name,
                mac_str(link.mac),
                Ipv4Addr::from(link.addr),
            ));
        }
        for ip in RESOLVED {
            let Route::Via { link, .. } = route(ip) else {
                unreachable!("resolved neighbours are on a link")
            };
            sh(&format!(
                "ip neigh replace {} lladdr {} dev {} nud permanent",
                Ipv4Addr::from(ip),
                mac_str(neighbour_mac(ip)),
                LINKS[link].name
            ));
        }
        sh(&format!(
            "ip route add 10.0.0.0/8 via {} dev cli0",
            Ipv4Addr::from(CLIENT)
        ));
        let ifindex = LINKS.map(|l| nix::net::if_::if_nametoindex(l.name).expect("if_nametoindex"));
        let names: Vec<String> = LINKS.iter().map(|l| l.name.to_string()).collect();
        let mut controller = Controller::new(
            KernelDatapath::attach(&names, Settings::default(), Limits::default()).expect("attach"),
        );
        let services = services();
        controller
            .apply(&config::parse(&config_toml(&services), "fuzz.toml").expect("config"))
            .expect("apply config");
        let mut next_hops = HashMap::new();
        for real in [
            [198, 18, 1, 3],
            [198, 18, 12, 3],
            [198, 18, 13, 3],
            [198, 18, 11, 3],
        ] {
            let Route::Via { link, next_hop } = route(real) else {
                unreachable!("real servers are on a link")
            };
            let hop = NextHop {
                ifindex: ifindex[link],
                gateway: next_hop,
                source: LINKS[link].addr,
            };
            let resolved = lvs_datapath::ResolvedHop {
                ifindex: hop.ifindex,
                gateway: Ipv4Addr::from(hop.gateway).into(),
                source: Some(Ipv4Addr::from(hop.source).into()),
            };
            controller
                .datapath_mut()
                .set_next_hop(Ipv4Addr::from(real).into(), resolved)
                .expect("NEXT_HOPS");
            next_hops.insert(real, hop);
        }
        Self {
            controller,
            services,
            ifindex,
            next_hops,
        }
    }
}

/// The service IPVS would match: the exact port, else the VIP's port-0 one.
pub fn find_service(
    services: &[ServiceSpec],
    dst: [u8; 4],
    dport: u16,
    proto: u8,
) -> Option<&ServiceSpec> {
    let matching = |port: u16| {
        services
            .iter()
            .find(|s| s.vip == dst && s.port == port && s.proto == proto)
    };
    matching(dport).or_else(|| matching(0))
}
