//! Two labs.
//!
//! `Lab::new`, the NAT lab: a client, one director and N real servers, each
//! real server on its own link to the director (so no bridge is needed and
//! every director interface carries the XDP program).
//!
//! ```text
//!  client 198.18.1.2 ── cli0 [director] srv1 ── 198.18.11.2 real 1
//!                         198.18.1.1   srv2 ── 198.18.12.2 real 2
//!                                      srvN ── 198.18.1N.2 real N
//!  VIP 198.18.0.10 is routed by the client to the director.
//! ```
//!
//! `Lab::forwarding`, for any mix of DR, TUN and NAT real servers: replies
//! from DR and TUN servers must reach the client without the director, so a
//! router stands between the client and everything else.
//!
//! ```text
//!  client 198.18.1.2 ── [router] ── br0 198.18.2.1/24 (one LAN, a bridge in the router)
//!                          │          ├── lan0 198.18.2.2 [director] natN ── 198.18.4N.2 NAT real N
//!                          │          └── 198.18.2.1N  DR real N
//!                          └── tunN ── 198.18.3N.2  TUN real N
//!  The router sends VIP 198.18.0.10 to the director; DR and TUN reals
//!  reply through the router, NAT reals through the director.
//! ```
//!
//! `Lab::forwarding6` is the same lab in IPv6: 2001:db8:1::/64 for the
//! client, 2001:db8:2::/64 the LAN (DR real N at 2001:db8:2::1N),
//! 2001:db8:3N::/64 and 2001:db8:4N::/64 the TUN and NAT links, VIP
//! 2001:db8::10.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{bin, exec_in, wait_for, Held, Netns, Proc};

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const VIP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

/// How the director reaches a real server (ipvsadm's `-m`, `-g`, `-i`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Nat,
    Route,
    Tunnel,
}

impl Method {
    pub fn flag(self) -> &'static str {
        match self {
            Method::Nat => "-m",
            Method::Route => "-g",
            Method::Tunnel => "-i",
        }
    }
}

pub struct RealServer {
    pub ns: Netns,
    pub addr: IpAddr,
    /// The name its servers answer with.
    pub name: String,
    pub method: Method,
    pub procs: Vec<Proc>,
    /// `lvsadm realserver setup` ran here; the lab undoes it on drop.
    pub prepared: bool,
}

impl RealServer {
    /// DR and TUN servers must answer UDP from the VIP itself.
    /// `addr:port` for this server's family (IPv6 in brackets).
    pub fn at(&self, port: u16) -> String {
        SocketAddr::new(self.addr, port).to_string()
    }

    /// The unspecified address of this server's family, with `port`.
    fn any(&self, port: u16) -> String {
        match self.addr {
            IpAddr::V4(_) => format!("0.0.0.0:{port}"),
            IpAddr::V6(_) => format!("[::]:{port}"),
        }
    }

    fn udp_bind(&self, port: u16) -> String {
        match (self.method, self.addr) {
            (Method::Nat, _) => self.any(port),
            (Method::Route | Method::Tunnel, IpAddr::V4(_)) => format!("{VIP}:{port}"),
            (Method::Route | Method::Tunnel, IpAddr::V6(_)) => format!("[{VIP6}]:{port}"),
        }
    }

    /// Stop this server's `lvs-lab http-server` (the one
    /// `Lab::start_servers` or `start_http_server` started), leaving its
    /// other servers running: the port then refuses connections. `false`
    /// if none was running.
    pub fn stop_http_server(&mut self) -> bool {
        let is_http = |p: &Proc| p.name.contains(" http-server ");
        let mut stopped = false;
        for p in self.procs.iter_mut().filter(|p| is_http(p)) {
            stopped |= p.is_running();
            p.stop();
        }
        self.procs.retain(|p| !is_http(p));
        stopped
    }

    /// Start an `lvs-lab http-server` on `port` (answering with this
    /// server's name) and wait, bounded, until it answers.
    pub fn start_http_server(&mut self, port: u16) -> Result<()> {
        self.start_large_http_server(port, 0)
    }

    /// As `start_http_server`, with `body_bytes` more bytes in each answer.
    pub fn start_large_http_server(&mut self, port: u16, body_bytes: usize) -> Result<()> {
        let lab_bin = bin("lvs-lab").display().to_string();
        let tcp = self.any(port);
        let body = body_bytes.to_string();
        self.procs.push(self.ns.spawn(
            &[
                &lab_bin,
                "http-server",
                &tcp,
                &self.name,
                "--body-bytes",
                &body,
            ],
            None,
        )?);
        self.wait_for_http(port)
    }

    /// Start an `lvs-lab hold-server` on `port` (greets with this server's
    /// name, then echoes lines); `wait_for_hold` says when it answers.
    fn spawn_hold_server(&mut self, port: u16) -> Result<()> {
        let lab_bin = bin("lvs-lab").display().to_string();
        let listen = self.any(port);
        self.procs.push(
            self.ns
                .spawn(&[&lab_bin, "hold-server", &listen, &self.name], None)?,
        );
        Ok(())
    }

    /// Wait (bounded) until this server's hold server on `port` greets a
    /// connection made straight to it, not through the director: the
    /// probe must not count as a connection there.
    fn wait_for_hold(&self, port: u16) -> Result<()> {
        let probe = SocketAddr::from((self.addr, port));
        wait_for(
            &format!("{}'s hold server", self.name),
            Duration::from_secs(10),
            || Held::open(&self.ns, probe, Duration::from_secs(1)).is_ok(),
        )
    }

    /// A hold server on `port`, answering before this returns.
    pub fn start_hold_server(&mut self, port: u16) -> Result<()> {
        self.spawn_hold_server(port)?;
        self.wait_for_hold(port)
    }

    /// Wait (bounded) until this server's HTTP server on `port` answers a
    /// request made inside its own namespace.
    fn wait_for_http(&self, port: u16) -> Result<()> {
        let lab_bin = bin("lvs-lab").display().to_string();
        let probe = self.at(port);
        wait_for(
            &format!("{}'s HTTP server", self.name),
            Duration::from_secs(10),
            || {
                self.ns
                    .exec(&[&lab_bin, "http-get", &probe, "--count", "1"])
                    .is_ok()
            },
        )
    }

    /// `lvsadm realserver ARGS` inside this server's namespace.
    pub fn realserver(&self, args: &[&str]) -> Result<String> {
        let lvsadm = bin("lvsadm").display().to_string();
        let mut argv = vec![lvsadm.as_str(), "realserver"];
        argv.extend_from_slice(args);
        let out = self.ns.exec(&argv)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

pub struct Lab {
    // Field order is drop order: processes, then namespaces.
    pub lvsd: Option<Proc>,
    pub reals: Vec<RealServer>,
    pub client: Netns,
    pub director: Netns,
    pub router: Option<Netns>,
    /// Between the client and the router, over a narrow link
    /// (`Lab::forwarding_narrow`).
    pub edge: Option<Netns>,
    /// Where lvsd attaches.
    pub ifaces: Vec<String>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// A bpffs of the lab's, for lvsd's `--bpffs` (`mount_bpffs`).
    pub bpffs: Option<PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // lvsd first (it detaches, or hands its datapath over, and removes
        // its socket), then the real servers' preparation (its undo record
        // lives outside the namespace), then what a handed-over datapath
        // left (its pins with the lab's bpffs, its records), then the
        // files; the fields then drop the servers and the namespaces.
        if let Some(mut lvsd) = self.lvsd.take() {
            lvsd.stop();
        }
        for rs in self.reals.iter().filter(|rs| rs.prepared) {
            let _ = rs.realserver(&["teardown"]);
        }
        if let Some(bpffs) = &self.bpffs {
            let _ = crate::run("umount", &[&bpffs.display().to_string()]);
        }
        if let Ok(id) = crate::pair::netns_id(&self.director.name) {
            crate::remove_records(&[id], &[]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A veth pair from `a_dev` in `a_ns` to `b_dev` in `b_ns`.
fn veth(a_ns: &str, a_dev: &str, b_ns: &str, b_dev: &str) -> Result<()> {
    crate::run(
        "ip",
        &[
            "link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev, "netns",
            b_ns,
        ],
    )
    .map(drop)
}

/// The router lab's address plan in either family: network `n` is
/// 198.18.n.0/24 or 2001:db8:n::/64, host `h` on it 198.18.n.h or
/// 2001:db8:n::h (the same digits, read as hex).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn host(self, n: u16, h: u16) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(198, 18, n as u8, h as u8).into(),
            Family::V6 => {
                let hex = |d: u16| u16::from_str_radix(&d.to_string(), 16).expect("digits");
                Ipv6Addr::new(0x2001, 0xdb8, hex(n), 0, 0, 0, 0, hex(h)).into()
            }
        }
    }
    fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
    fn prefix(self) -> u8 {
        match self {
            Family::V4 => 24,
            Family::V6 => 64,
        }
    }
    fn network(self, n: u16) -> String {
        format!("{}/{}", self.host(n, 0), self.prefix())
    }
    fn vip(self) -> IpAddr {
        match self {
            Family::V4 => VIP.into(),
            Family::V6 => VIP6.into(),
        }
    }
    /// `ip`'s family option for routes.
    fn ip(self) -> &'static str {
        match self {
            Family::V4 => "-4",
            Family::V6 => "-6",
        }
    }
    /// IPv6 is off in a new namespace of this machine's test runner.
    fn prepare(self, ns: &str) -> Result<()> {
        match self {
            Family::V4 => Ok(()),
            Family::V6 => exec_in(
                ns,
                &[
                    "sysctl",
                    "-qw",
                    "net.ipv6.conf.all.disable_ipv6=0",
                    "net.ipv6.conf.default.disable_ipv6=0",
                    "net.ipv6.conf.lo.disable_ipv6=0",
                ],
            )
            .map(drop),
        }
    }
    /// Forwarding on.
    fn enable_forwarding(self, ns: &str) -> Result<()> {
        self.prepare(ns)?;
        let setting = match self {
            Family::V4 => "net.ipv4.ip_forward=1",
            Family::V6 => "net.ipv6.conf.all.forwarding=1",
        };
        exec_in(ns, &["sysctl", "-qw", setting]).map(drop)
    }
    /// Address `dev` in `ns` as host `h` of network `n`, bring it up, and
    /// route by default through `gateway`; returns the address.
    fn endpoint(
        self,
        ns: &str,
        dev: &str,
        n: u16,
        h: u16,
        gateway: Option<IpAddr>,
    ) -> Result<IpAddr> {
        let addr = self.host(n, h);
        let cidr = format!("{addr}/{}", self.prefix());
        let mut argv = vec!["ip", "addr", "add", &cidr, "dev", dev];
        if self == Family::V6 {
            argv.push("nodad");
        }
        exec_in(ns, &argv)?;
        exec_in(ns, &["ip", "link", "set", dev, "up"])?;
        if let Some(gw) = gateway {
            let gw = gw.to_string();
            exec_in(
                ns,
                &["ip", self.ip(), "route", "add", "default", "via", &gw],
            )?;
        }
        Ok(addr)
    }
}

impl Lab {
    /// Build the namespaces and links. `tag` keeps parallel labs apart.
    /// Every veth stays as `ip link add` makes it (GRO off, TX checksum
    /// offload on), as users' veths are.
    pub fn new(tag: &str, reals: usize) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("lvs-lab-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let director = Netns::new(format!("{tag}-dir"))?;
        let client = Netns::new(format!("{tag}-cli"))?;
        let mut lab = Lab {
            lvsd: None,
            reals: Vec::new(),
            client,
            director,
            router: None,
            edge: None,
            ifaces: vec!["cli0".to_string()],
            socket: dir.join("lvsd.sock"),
            dir,
            bpffs: None,
        };

        lab.link(
            "cli0",
            "198.18.1.1/24",
            &lab.client.name.clone(),
            "198.18.1.2/24",
            "198.18.1.1",
        )?;
        for i in 1..=reals {
            let ns = Netns::new(format!("{tag}-rs{i}"))?;
            let gw = format!("198.18.{}.1", 10 + i);
            lab.link(
                &format!("srv{i}"),
                &format!("{gw}/24"),
                &ns.name,
                &format!("198.18.{}.2/24", 10 + i),
                &gw,
            )?;
            lab.reals.push(RealServer {
                ns,
                addr: Ipv4Addr::new(198, 18, 10 + i as u8, 2).into(),
                name: format!("rs{i}"),
                method: Method::Nat,
                procs: Vec::new(),
                prepared: false,
            });
            lab.ifaces.push(format!("srv{i}"));
        }
        lab.director
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(lab)
    }

    /// The router lab, with one real server per entry of `methods`, named
    /// rs1, rs2, ... in that order. DR and TUN servers are prepared with
    /// `lvsadm realserver setup` (TUN with XDP decapsulation on eth0).
    pub fn forwarding(tag: &str, methods: &[Method]) -> Result<Self> {
        Self::router_lab(tag, methods, None, Family::V4)
    }

    /// `forwarding` in IPv6 (see the module's comment).
    pub fn forwarding6(tag: &str, methods: &[Method]) -> Result<Self> {
        Self::router_lab(tag, methods, None, Family::V6)
    }

    /// The router lab with the client one hop further away: behind an edge
    /// router whose link to the router has MTU `mtu` (a tunnel, PPPoE, ...)
    /// while the client's own link has the default 1500, so the client's
    /// MSS promises more than the path carries.
    ///
    /// ```text
    ///  client 198.18.1.2 ── [edge] ══ mtu ══ 198.18.5.1 [router] ── ...
    ///                     198.18.1.1  198.18.5.2
    /// ```
    pub fn forwarding_narrow(tag: &str, methods: &[Method], mtu: u32, v6: bool) -> Result<Self> {
        let family = if v6 { Family::V6 } else { Family::V4 };
        Self::router_lab(tag, methods, Some(mtu), family)
    }

    /// Every interface as `ip` makes it; forwarding on in the routers and
    /// the director (NAT needs it, as IPVS's does). IPv6 addresses without
    /// DAD, usable at once.
    fn router_lab(
        tag: &str,
        methods: &[Method],
        narrow: Option<u32>,
        family: Family,
    ) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("lvs-lab-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut lab = Lab {
            lvsd: None,
            reals: Vec::new(),
            client: Netns::new(format!("{tag}-cli"))?,
            director: Netns::new(format!("{tag}-dir"))?,
            router: Some(Netns::new(format!("{tag}-rtr"))?),
            edge: None,
            ifaces: vec!["lan0".to_string()],
            socket: dir.join("lvsd.sock"),
            dir,
            bpffs: None,
        };
        let router = lab.router.as_ref().expect("just set").name.clone();
        let (cli, dir_ns) = (lab.client.name.clone(), lab.director.name.clone());
        family.enable_forwarding(&router)?;
        family.enable_forwarding(&dir_ns)?;
        family.prepare(&cli)?;
        // The router's replies take other ways than their requests.
        exec_in(
            &router,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ],
        )?;
        exec_in(&router, &["ip", "link", "add", "br0", "type", "bridge"])?;
        family.endpoint(&router, "br0", 2, 1, None)?;
        let bridge_port = |port: &str| -> Result<()> {
            exec_in(&router, &["ip", "link", "set", port, "master", "br0", "up"]).map(drop)
        };

        match narrow {
            None => {
                veth(&router, "rcli", &cli, "eth0")?;
                family.endpoint(&router, "rcli", 1, 1, None)?;
            }
            Some(mtu) => {
                let edge = Netns::new(format!("{tag}-edge"))?;
                family.enable_forwarding(&edge.name)?;
                let mtu = mtu.to_string();
                veth(&router, "rcli", &edge.name, "up0")?;
                exec_in(&router, &["ip", "link", "set", "rcli", "mtu", &mtu])?;
                edge.exec(&["ip", "link", "set", "up0", "mtu", &mtu])?;
                family.endpoint(&router, "rcli", 5, 1, None)?;
                family.endpoint(&edge.name, "up0", 5, 2, Some(family.host(5, 1)))?;
                let client_net = family.network(1);
                let via = family.host(5, 2).to_string();
                exec_in(
                    &router,
                    &["ip", family.ip(), "route", "add", &client_net, "via", &via],
                )?;
                veth(&edge.name, "ecli", &cli, "eth0")?;
                family.endpoint(&edge.name, "ecli", 1, 1, None)?;
                lab.edge = Some(edge);
            }
        }
        family.endpoint(&cli, "eth0", 1, 2, Some(family.host(1, 1)))?;

        veth(&router, "pdir", &dir_ns, "lan0")?;
        bridge_port("pdir")?;
        family.endpoint(&dir_ns, "lan0", 2, 2, Some(family.host(2, 1)))?;
        let vip = family.vip();
        let (vip_route, director) = (format!("{vip}/{}", family.bits()), family.host(2, 2));
        exec_in(
            &router,
            &[
                "ip",
                family.ip(),
                "route",
                "add",
                &vip_route,
                "via",
                &director.to_string(),
            ],
        )?;

        for (i, method) in (1u16..).zip(methods) {
            let ns = Netns::new(format!("{tag}-rs{i}"))?;
            family.prepare(&ns.name)?;
            let addr = match method {
                Method::Route => {
                    let port = format!("p{i}");
                    veth(&router, &port, &ns.name, "eth0")?;
                    bridge_port(&port)?;
                    family.endpoint(&ns.name, "eth0", 2, 10 + i, Some(family.host(2, 1)))?
                }
                Method::Tunnel => {
                    let dev = format!("tun{i}");
                    veth(&router, &dev, &ns.name, "eth0")?;
                    let gateway = family.endpoint(&router, &dev, 30 + i, 1, None)?;
                    family.endpoint(&ns.name, "eth0", 30 + i, 2, Some(gateway))?
                }
                Method::Nat => {
                    let dev = format!("nat{i}");
                    veth(&dir_ns, &dev, &ns.name, "eth0")?;
                    let gateway = family.endpoint(&dir_ns, &dev, 40 + i, 1, None)?;
                    lab.ifaces.push(dev);
                    family.endpoint(&ns.name, "eth0", 40 + i, 2, Some(gateway))?
                }
            };
            let mut rs = RealServer {
                ns,
                addr,
                name: format!("rs{i}"),
                method: *method,
                procs: Vec::new(),
                prepared: false,
            };
            let vip = vip.to_string();
            match method {
                Method::Nat => {}
                Method::Route => {
                    rs.realserver(&["setup", "--vip", &vip])?;
                    rs.prepared = true;
                }
                Method::Tunnel => {
                    rs.realserver(&["setup", "--vip", &vip, "--decap", "xdp:eth0"])?;
                    rs.prepared = true;
                }
            }
            lab.reals.push(rs);
        }
        Ok(lab)
    }

    /// A veth from the director (`dev`, `addr`) to `eth0` in `peer_ns`,
    /// whose default route goes back through `gateway`.
    fn link(
        &self,
        dev: &str,
        addr: &str,
        peer_ns: &str,
        peer_addr: &str,
        gateway: &str,
    ) -> Result<()> {
        crate::run(
            "ip",
            &[
                "link",
                "add",
                dev,
                "netns",
                &self.director.name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                peer_ns,
            ],
        )?;
        self.director
            .exec(&["ip", "addr", "add", addr, "dev", dev])?;
        self.director.exec(&["ip", "link", "set", dev, "up"])?;
        exec_in(peer_ns, &["ip", "addr", "add", peer_addr, "dev", "eth0"])?;
        exec_in(peer_ns, &["ip", "link", "set", "eth0", "up"])?;
        exec_in(peer_ns, &["ip", "route", "add", "default", "via", gateway]).map(drop)
    }

    /// What a failing assertion should show: the listing and lvsd's log.
    pub fn context(&self) -> String {
        format!(
            "\n-L -n:\n{}\nlvsd log:\n{}",
            self.lvsadm(&["-L", "-n"])
                .unwrap_or_else(|e| format!("{e:#}")),
            self.lvsd_log()
        )
    }

    /// The health state `-L -n` shows at the end of `server`'s line
    /// (`addr:port`), if it is listed with one.
    pub fn health_state(&self, server: &str) -> Option<String> {
        let listing = self.lvsadm(&["-L", "-n"]).ok()?;
        let prefix = format!("  -> {server} ");
        let line = listing.lines().find(|l| l.starts_with(&prefix))?;
        line.split_whitespace().nth(6).map(str::to_string)
    }

    /// `count` more connections to `target`, one at a time, kept in
    /// `held`; how many each server took.
    pub fn hold_counted(
        &self,
        target: &str,
        held: &mut Vec<Held>,
        count: usize,
    ) -> BTreeMap<String, usize> {
        let mut names = BTreeMap::new();
        for _ in 0..count {
            let conn = self
                .hold(target)
                .unwrap_or_else(|e| panic!("{e:#}{}", self.context()));
            *names.entry(conn.server.clone()).or_default() += 1;
            held.push(conn);
        }
        names
    }

    /// Mount a bpffs of the lab's (`ip netns exec` hides the host's), for
    /// lvsd's `--bpffs`: its datapath then outlives it, for the next lvsd
    /// to take over. Unmounted when the lab drops.
    pub fn mount_bpffs(&mut self) -> Result<PathBuf> {
        let bpffs = self.dir.join("bpffs");
        std::fs::create_dir_all(&bpffs)?;
        crate::run("mount", &["-t", "bpf", "bpf", &bpffs.display().to_string()])?;
        self.bpffs = Some(bpffs.clone());
        Ok(bpffs)
    }

    /// Start `lvsd` on every director interface, optionally with a config.
    pub fn start_lvsd(&mut self, config: Option<&Path>) -> Result<()> {
        self.start_lvsd_with(config, &[])
    }

    /// As `start_lvsd`, with more of lvsd's flags (`--datapath xdp`).
    pub fn start_lvsd_with(&mut self, config: Option<&Path>, extra: &[&str]) -> Result<()> {
        self.start_lvsd_env(config, extra, &[])
    }

    /// As `start_lvsd_with`, with variables in lvsd's environment
    /// (`NOTIFY_SOCKET`, as systemd sets it).
    pub fn start_lvsd_env(
        &mut self,
        config: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<()> {
        let lvsd = bin("lvsd");
        let mut args: Vec<String> = Vec::new();
        if !env.is_empty() {
            args.push("env".into());
            args.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        }
        args.push(lvsd.display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        for iface in &self.ifaces {
            args.extend(["-i".into(), iface.clone()]);
        }
        args.extend(["--socket".into(), self.socket.display().to_string()]);
        if let Some(c) = config {
            args.extend(["--config".into(), c.display().to_string()]);
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut proc = self
            .director
            .spawn(&argv, Some(&self.dir.join("lvsd.log")))?;
        let socket = self.socket.clone();
        // An lvsd that refused its configuration is not waited for.
        let ready = wait_for("lvsd's control socket", Duration::from_secs(20), || {
            (socket.exists() && self.lvsadm(&["-L", "-n"]).is_ok()) || !proc.is_running()
        });
        if ready.is_err() || !proc.is_running() {
            bail!("lvsd did not start:\n{}", self.lvsd_log());
        }
        self.lvsd = Some(proc);
        Ok(())
    }

    pub fn lvsd_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("lvsd.log")).unwrap_or_default()
    }

    /// Run `lvsadm` against this lab's daemon; stdout on success.
    pub fn lvsadm(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(bin("lvsadm"))
            .args(["--socket", &self.socket.display().to_string()])
            .args(args)
            .output()
            .context("spawning lvsadm")?;
        if !out.status.success() {
            bail!(
                "lvsadm {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Start the lab's TCP (HTTP) and UDP servers on every real server.
    pub fn start_servers(&mut self, tcp_port: u16, udp_port: u16) -> Result<()> {
        let lab_bin = bin("lvs-lab").display().to_string();
        for rs in &mut self.reals {
            let tcp = rs.any(tcp_port);
            let udp = rs.udp_bind(udp_port);
            rs.procs.push(
                rs.ns
                    .spawn(&[&lab_bin, "http-server", &tcp, &rs.name], None)?,
            );
            rs.procs.push(
                rs.ns
                    .spawn(&[&lab_bin, "udp-server", &udp, &rs.name], None)?,
            );
        }
        for rs in &self.reals {
            rs.wait_for_http(tcp_port)?;
        }
        Ok(())
    }

    /// A hold server (greets with its name, then echoes lines) on `port` of
    /// every real server.
    pub fn start_hold_servers(&mut self, port: u16) -> Result<()> {
        // All start first, then each is awaited: they come up together.
        for rs in &mut self.reals {
            rs.spawn_hold_server(port)?;
        }
        for rs in &self.reals {
            rs.wait_for_hold(port)?;
        }
        Ok(())
    }

    /// A connection from the client to `target`, kept open until dropped.
    pub fn hold(&self, target: &str) -> Result<Held> {
        let target = target
            .parse()
            .with_context(|| format!("bad target `{target}`"))?;
        Held::open(&self.client, target, Duration::from_secs(3))
    }

    /// `count` sequential HTTP requests from the client; the answering
    /// server names in order.
    pub fn http_gets(&self, target: &str, count: usize) -> Result<Vec<String>> {
        let lab_bin = bin("lvs-lab").display().to_string();
        let out =
            self.client
                .exec(&[&lab_bin, "http-get", target, "--count", &count.to_string()])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect())
    }

    /// One UDP request from the client: `(answering name, reply source)`.
    pub fn udp_query(&self, target: &str) -> Result<(String, String)> {
        let lab_bin = bin("lvs-lab").display().to_string();
        let out = self.client.exec(&[&lab_bin, "udp-query", target])?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut words = text.split_whitespace();
        match (words.next(), words.next()) {
            (Some(name), Some(from)) => Ok((name.to_string(), from.to_string())),
            _ => bail!("unexpected udp-query output `{text}`"),
        }
    }
}
