//! The router-pair lab: a client, two directors on a shared LAN with the VIP
//! floating between them, and real servers; everything on two bridges in a
//! switch namespace.
//!
//! ```text
//!  ns sw: bridges pub (198.18.1.0/24) and priv (198.18.20.0/24), no addresses
//!
//!  pub  ── client   eth0 198.18.1.2   (VIP on-link: it ARPs for 198.18.0.10)
//!       ── d1       lan0 198.18.1.3
//!       ── d2       lan0 198.18.1.4
//!       ── DR rsN   eth0 198.18.1.1N  (VIP on lo: `lvsadm realserver setup`)
//!       ── outsider eth0 198.18.1.66  (on demand: a third party on the LAN)
//!  priv ── d1       priv0 198.18.20.3
//!       ── d2       priv0 198.18.20.4
//!       ── NAT rsN  eth0 198.18.20.1N, default via 198.18.20.1 (floating)
//! ```
//!
//! Both directors run `lvsd -i lan0 -i priv0` with the same services and an
//! `[ha]` section: heartbeats on both bridges, the VIP (and for NAT the real
//! servers' gateway 198.18.20.1) floating.
//!
//! `Pair::new6` is the same lab with an IPv6 client, VIP and real servers:
//! 2001:db8:1::/64 on pub (client ::2, directors ::3 and ::4, DR servers
//! ::1N), 2001:db8:20::/64 on priv (directors ::3, ::4, NAT servers ::1N
//! by the floating gateway 2001:db8:20::1), VIP 2001:db8::10. Heartbeats and
//! sync still travel over the directors' IPv4 links. Each lvsd run logs to its own
//! file in the lab's directory; `Pair::logs` shows them all. A test can add
//! further HTTP services (`Pair::add_service`, e.g. a persistent one) before
//! anything starts.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use lvs_ha::wire::Role;
use lvs_state::api::{HaView, Snapshot, Stats};

use crate::{
    bin, exec_in, run,
    topology::{Method, RealServer, VIP, VIP6},
    wait_for, Netns, Proc,
};

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
pub const OUTSIDER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 66);
/// The NAT real servers' default gateway, floating on the private side.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 20, 1);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
pub const GATEWAY6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 1);
/// The pair's shared HMAC key.
pub const KEY: &str = "a shared secret for the smoke test";
/// The HA port (IPVS's sync daemon port, lvsd's default).
pub const HA_PORT: u16 = 8848;
/// The service the long-lived streams use (a hold server, on the same
/// port on the real servers).
pub const HOLD_PORT: u16 = 7000;
/// The service new connections use.
pub const HTTP_PORT: u16 = 80;

/// A further TCP service of the pair (`Pair::add_service`): VIP:`port`
/// to port `port` of every real server, where `Pair::start_servers` runs
/// the lab's HTTP server (it answers with the server's name).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpService {
    pub port: u16,
    /// The scheduler's name in the config, e.g. `rr`.
    pub scheduler: String,
    /// `persistent = SECONDS` (the netmask stays /32), or no persistence.
    pub persistent: Option<u32>,
}

/// One router of the pair.
pub struct Director {
    /// "d1" or "d2".
    pub name: String,
    // Field order is drop order: the daemon, then its namespace.
    pub lvsd: Option<Proc>,
    pub ns: Netns,
    /// Its address on the public LAN: its node id in the election.
    pub lan: Ipv4Addr,
    pub private: Ipv4Addr,
    pub socket: PathBuf,
    pub config: PathBuf,
    /// How many times lvsd was started here (one log file per run).
    runs: u32,
    /// The namespace's id (its nsfs inode), which names lvsd's owner
    /// records in /run/lvs.
    netns_id: u64,
}

pub struct Pair {
    // Field order is drop order: daemons and servers, then namespaces.
    pub directors: Vec<Director>,
    pub reals: Vec<RealServer>,
    pub client: Netns,
    pub outsider: Option<Netns>,
    pub switch: Netns,
    pub method: Method,
    pub dir: PathBuf,
    /// What `add_service` added, beyond the hold and HTTP services.
    services: Vec<HttpService>,
    tag: String,
    /// Ids of the real servers' namespaces (their realserver records).
    real_ids: Vec<u64>,
    /// The client, VIP and real servers are IPv6 (`new6`).
    pub ipv6: bool,
    /// The routers run from keepalived.confs (`use_keepalived_conf`).
    keepalived: bool,
}

/// Director `i`'s addresses on the public and private LANs in IPv6.
fn lan6(i: u8) -> IpAddr {
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2 + u16::from(i)).into()
}
fn private6(i: u8) -> IpAddr {
    Ipv6Addr::new(0x2001, 0xdb8, 0x20, 0, 0, 0, 0, 2 + u16::from(i)).into()
}

/// The nsfs inode of namespace `name`: what `netconf::netns_id` reads
/// from inside it.
pub fn netns_id(name: &str) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = Path::new("/run/netns").join(name);
    Ok(std::fs::metadata(&path)
        .with_context(|| format!("stat {}", path.display()))?
        .ino())
}

/// A veth from `dev` in `ns` to port `port` of `bridge` in the switch,
/// both ends as `ip link add` makes them (GRO off, TX checksum offload on).
fn plug(switch: &str, bridge: &str, port: &str, ns: &str, dev: &str) -> Result<()> {
    run(
        "ip",
        &[
            "link", "add", port, "netns", switch, "type", "veth", "peer", "name", dev, "netns", ns,
        ],
    )?;
    exec_in(switch, &["ip", "link", "set", port, "master", bridge, "up"])?;
    exec_in(ns, &["ip", "link", "set", dev, "up"]).map(drop)
}

impl Pair {
    /// Build the namespaces, bridges and links, and write both routers'
    /// configs; nothing runs yet. `reals` real servers of `method` (NAT on
    /// the private bridge, DR on the public one). `tag` keeps labs apart.
    pub fn new(tag: &str, method: Method, reals: usize) -> Result<Pair> {
        Self::build(tag, method, reals, false)
    }

    /// `new` with an IPv6 client, VIP and real servers (see the module's
    /// comment).
    pub fn new6(tag: &str, method: Method, reals: usize) -> Result<Pair> {
        Self::build(tag, method, reals, true)
    }

    fn build(tag: &str, method: Method, reals: usize, ipv6: bool) -> Result<Pair> {
        if method == Method::Tunnel {
            bail!("the pair lab has NAT and DR real servers only");
        }
        let dir = crate::fresh_lab_dir(&format!("lvs-pair-{tag}"))?;
        let switch = Netns::new(format!("{tag}-sw"))?;
        let client = Netns::new(format!("{tag}-cli"))?;
        let mut pair = Pair {
            directors: Vec::new(),
            reals: Vec::new(),
            client,
            outsider: None,
            switch,
            method,
            dir,
            services: Vec::new(),
            tag: tag.to_string(),
            real_ids: Vec::new(),
            ipv6,
            keepalived: false,
        };
        let sw = pair.switch.name.clone();
        for bridge in ["pub", "priv"] {
            exec_in(&sw, &["ip", "link", "add", bridge, "type", "bridge"])?;
            exec_in(&sw, &["ip", "link", "set", bridge, "up"])?;
        }

        // IPv6 on before any interface comes: one made while it is off
        // keeps no route to its prefix.
        let prepare = |ns: &Netns| if ipv6 { ns.enable_ipv6() } else { Ok(()) };
        prepare(&pair.client)?;
        let cli = pair.client.name.clone();
        plug(&sw, "pub", "cli", &cli, "eth0")?;
        // The VIP is on-link: the client ARPs (solicits) for it, and the
        // gratuitous ARPs (advertisements) of a takeover move it.
        pair.host(&cli, "eth0", pair.client_addr(), 24)?;
        let vip = pair.vip();
        exec_in(
            &cli,
            &[
                "ip",
                "route",
                "add",
                &format!("{vip}/{}", pair.bits()),
                "dev",
                "eth0",
            ],
        )?;

        for i in 1..=2u8 {
            let name = format!("d{i}");
            let ns = Netns::new(format!("{tag}-{name}"))?;
            prepare(&ns)?;
            let (lan, private) = (
                Ipv4Addr::new(198, 18, 1, 2 + i),
                Ipv4Addr::new(198, 18, 20, 2 + i),
            );
            for (bridge, port, dev, addr) in [
                ("pub", format!("{name}pub"), "lan0", lan),
                ("priv", format!("{name}priv"), "priv0", private),
            ] {
                plug(&sw, bridge, &port, &ns.name, dev)?;
                ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            }
            ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
            if ipv6 {
                // NAT66 needs forwarding, as NAT does.
                pair.host(&ns.name, "lan0", lan6(i), 64)?;
                pair.host(&ns.name, "priv0", private6(i), 64)?;
                ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])?;
            }
            let netns_id = netns_id(&ns.name)?;
            pair.directors.push(Director {
                socket: pair.dir.join(format!("{name}.sock")),
                config: pair.dir.join(format!("{name}.toml")),
                name,
                lvsd: None,
                ns,
                lan,
                private,
                runs: 0,
                netns_id,
            });
        }

        for i in 1..=reals as u8 {
            let ns = Netns::new(format!("{tag}-rs{i}"))?;
            prepare(&ns)?;
            pair.real_ids.push(netns_id(&ns.name)?);
            // 198.18.20.1N or 2001:db8:20::1N; 198.18.1.1N or 2001:db8:1::1N.
            let (bridge, net4, net6) = match method {
                Method::Nat => ("priv", 20, 0x20),
                _ => ("pub", 1, 1),
            };
            let addr: IpAddr = if ipv6 {
                Ipv6Addr::new(0x2001, 0xdb8, net6, 0, 0, 0, 0, 0x10 + u16::from(i)).into()
            } else {
                Ipv4Addr::new(198, 18, net4, 10 + i).into()
            };
            plug(&sw, bridge, &format!("rs{i}"), &ns.name, "eth0")?;
            pair.host(&ns.name, "eth0", addr, 24)?;
            if method == Method::Nat {
                let gateway = pair.gateway().to_string();
                ns.exec(&["ip", "route", "add", "default", "via", &gateway])?;
            }
            let mut rs = RealServer {
                ns,
                addr,
                name: format!("rs{i}"),
                method,
                procs: Vec::new(),
                prepared: false,
            };
            if method == Method::Route {
                // DR replies come from the VIP straight to the client.
                rs.realserver(&["setup", "--vip", &pair.vip().to_string()])?;
                rs.prepared = true;
            }
            pair.reals.push(rs);
        }

        // The directors' bpffs, as systemd mounts one on a host: `ip netns
        // exec` hides the host's /sys/fs/bpf.
        run(
            "mount",
            &["-t", "bpf", "bpf", &pair.bpffs().display().to_string()],
        )?;
        pair.write_configs()?;
        Ok(pair)
    }

    /// Where the directors' lvsds pin what outlives them (`lvsd --bpffs`).
    fn bpffs(&self) -> PathBuf {
        self.dir.join("bpffs")
    }

    /// The VIP, the client's address and the NAT servers' gateway, in the
    /// lab's family.
    pub fn vip(&self) -> IpAddr {
        if self.ipv6 {
            VIP6.into()
        } else {
            VIP.into()
        }
    }
    pub fn client_addr(&self) -> IpAddr {
        if self.ipv6 {
            CLIENT6.into()
        } else {
            CLIENT.into()
        }
    }
    pub fn gateway(&self) -> IpAddr {
        if self.ipv6 {
            GATEWAY6.into()
        } else {
            GATEWAY.into()
        }
    }
    fn bits(&self) -> u8 {
        if self.ipv6 {
            128
        } else {
            32
        }
    }

    /// Address `dev` in `ns` (IPv4 /`prefix4`, IPv6 /64 without duplicate
    /// address detection) and bring it up.
    fn host(&self, ns: &str, dev: &str, addr: IpAddr, prefix4: u8) -> Result<()> {
        let cidr = match addr {
            IpAddr::V4(_) => format!("{addr}/{prefix4}"),
            IpAddr::V6(_) => format!("{addr}/64"),
        };
        let mut argv = vec!["ip", "addr", "add", &cidr, "dev", dev];
        if addr.is_ipv6() {
            argv.push("nodad");
        }
        exec_in(ns, &argv)?;
        exec_in(ns, &["ip", "link", "set", dev, "up"]).map(drop)
    }

    fn write_configs(&self) -> Result<()> {
        for d in 0..2 {
            let text = if self.keepalived {
                self.keepalived_conf(d)
            } else {
                self.config(d)
            };
            std::fs::write(&self.directors[d].config, text)?;
        }
        Ok(())
    }

    /// Run both routers from keepalived.confs (`keepalived_conf`) instead
    /// of our TOML: the same services and pair, as a keepalived site
    /// writes them.
    pub fn use_keepalived_conf(&mut self) -> Result<()> {
        self.keepalived = true;
        for dir in &mut self.directors {
            dir.config = dir.config.with_extension("keepalived.conf");
        }
        self.write_configs()
    }

    /// Director `d`'s keepalived.conf: `config(d)`'s services, and a
    /// unicast vrrp_instance on lan0 with both floating addresses. Adverts
    /// every 100 ms as our heartbeats (VRRP version 3: version 2 advertises
    /// in whole seconds); `nopreempt` (with `state BACKUP`, as keepalived
    /// wants it) as our `[ha]`'s default.
    pub fn keepalived_conf(&self, d: usize) -> String {
        let (me, peer) = (&self.directors[d], &self.directors[1 - d]);
        let kind = match self.method {
            Method::Nat => "NAT",
            _ => "DR",
        };
        let mut conf = format!(
            "vrrp_instance VI_LVS {{\n    state BACKUP\n    nopreempt\n    version 3\n    interface lan0\n    \
             virtual_router_id 51\n    priority 100\n    advert_int 0.1\n    unicast_src_ip {}\n    \
             unicast_peer {{\n        {}\n    }}\n    authentication {{\n        auth_type PASS\n        \
             auth_pass \"{KEY}\"\n    }}\n    virtual_ipaddress {{\n",
            me.lan, peer.lan
        );
        for (addr, prefix, iface) in self.floating() {
            conf += &format!("        {addr}/{prefix} dev {iface}\n");
        }
        conf += "    }\n}\n";
        for (port, real_port, scheduler, persistent) in self.service_list() {
            conf += &format!(
                "\nvirtual_server {} {port} {{\n    lb_algo {scheduler}\n    lb_kind {kind}\n    protocol TCP\n",
                self.vip()
            );
            if let Some(seconds) = persistent {
                conf += &format!("    persistence_timeout {seconds}\n");
            }
            for rs in &self.reals {
                conf += &format!(
                    "    real_server {} {real_port} {{\n        weight 1\n    }}\n",
                    rs.addr
                );
            }
            conf += "}\n";
        }
        conf
    }

    /// Add `service` to both routers' configs; `start_servers` then runs
    /// an HTTP server on its port on every real server. Only before
    /// anything starts: servers or lvsd.
    pub fn add_service(&mut self, service: HttpService) -> Result<()> {
        let started = self.directors.iter().any(|d| d.runs > 0)
            || self.reals.iter().any(|rs| !rs.procs.is_empty());
        if started {
            bail!("a service can be added only before the servers and lvsd start");
        }
        // The real servers' ports too: each added service's server listens
        // on its own port there.
        let mut taken = [HOLD_PORT, HTTP_PORT, self.real_http_port()]
            .into_iter()
            .chain(self.services.iter().map(|s| s.port));
        if taken.any(|p| p == service.port) {
            bail!("the pair already has a service on port {}", service.port);
        }
        self.services.push(service);
        self.write_configs()
    }

    /// The port the real servers' HTTP servers listen on: NAT maps VIP:80
    /// to 8080; DR cannot map ports.
    pub fn real_http_port(&self) -> u16 {
        match self.method {
            Method::Nat => 8080,
            _ => HTTP_PORT,
        }
    }

    /// The floating addresses and their interfaces.
    pub fn floating(&self) -> Vec<(IpAddr, u8, &'static str)> {
        let mut f = vec![(self.vip(), self.bits(), "lan0")];
        if self.method == Method::Nat {
            f.push((self.gateway(), if self.ipv6 { 64 } else { 24 }, "priv0"));
        }
        f
    }

    /// Every service of the pair: (port, real servers' port, scheduler,
    /// persistence), the hold and HTTP services first.
    fn service_list(&self) -> Vec<(u16, u16, &str, Option<u32>)> {
        let base = [(HOLD_PORT, HOLD_PORT), (HTTP_PORT, self.real_http_port())]
            .map(|(port, real_port)| (port, real_port, "rr", None));
        let added = self
            .services
            .iter()
            .map(|s| (s.port, s.port, s.scheduler.as_str(), s.persistent));
        base.into_iter().chain(added).collect()
    }

    /// Director `d`'s lvsd config: the services, and `[ha]` with both
    /// bridges as links.
    pub fn config(&self, d: usize) -> String {
        let (me, peer) = (&self.directors[d], &self.directors[1 - d]);
        let method = match self.method {
            Method::Nat => "nat",
            _ => "route",
        };
        let mut toml = String::new();
        for (port, real_port, scheduler, persistent) in self.service_list() {
            let vip = SocketAddr::new(self.vip(), port);
            toml += &format!(
                "[[service]]\nprotocol = \"tcp\"\naddress = \"{vip}\"\nscheduler = \"{scheduler}\"\n"
            );
            if let Some(seconds) = persistent {
                toml += &format!("persistent = {seconds}\n");
            }
            toml += "\n";
            for rs in &self.reals {
                toml += &format!(
                    "[[service.real]]\naddress = \"{}\"\nmethod = \"{method}\"\n\n",
                    SocketAddr::new(rs.addr, real_port)
                );
            }
        }
        toml += &format!("[ha]\nkey = \"{KEY}\"\n\n");
        for (iface, local, remote) in [
            ("lan0", me.lan, peer.lan),
            ("priv0", me.private, peer.private),
        ] {
            toml += &format!(
                "[[ha.link]]\niface = \"{iface}\"\nlocal = \"{local}\"\npeer = \"{remote}\"\n\n"
            );
        }
        for (addr, prefix, iface) in self.floating() {
            toml +=
                &format!("[[ha.address]]\naddress = \"{addr}/{prefix}\"\niface = \"{iface}\"\n\n");
        }
        toml
    }

    /// A hold server on `HOLD_PORT` and an HTTP server on
    /// `real_http_port` and on each added service's port on every real
    /// server; waits (bounded) until they answer.
    pub fn start_servers(&mut self) -> Result<()> {
        let http_port = self.real_http_port();
        for rs in &mut self.reals {
            rs.start_hold_server(HOLD_PORT)?;
            rs.start_http_server(http_port)?;
            for service in &self.services {
                rs.start_http_server(service.port)?;
            }
        }
        Ok(())
    }

    fn log_path(&self, d: usize, run: u32) -> PathBuf {
        self.dir
            .join(format!("{}-run{run}.log", self.directors[d].name))
    }

    /// Start lvsd on director `d` and wait (bounded) for its socket.
    pub fn start_lvsd(&mut self, d: usize) -> Result<()> {
        self.spawn_lvsd(d)?;
        self.wait_for_socket(d)
    }

    /// Start both lvsds at once, then wait for their sockets.
    pub fn start_lvsds(&mut self) -> Result<()> {
        self.spawn_lvsd(0)?;
        self.spawn_lvsd(1)?;
        self.wait_for_socket(0)?;
        self.wait_for_socket(1)
    }

    fn spawn_lvsd(&mut self, d: usize) -> Result<()> {
        if self.directors[d].lvsd.is_some() {
            bail!("lvsd already runs on {}", self.directors[d].name);
        }
        self.directors[d].runs += 1;
        let log = self.log_path(d, self.directors[d].runs);
        let bpffs = self.bpffs().display().to_string();
        let dir = &mut self.directors[d];
        let _ = std::fs::remove_file(&dir.socket);
        let lvsd = bin("lvsd").display().to_string();
        let (socket, config) = (
            dir.socket.display().to_string(),
            dir.config.display().to_string(),
        );
        let argv = [
            lvsd.as_str(),
            "-i",
            "lan0",
            "-i",
            "priv0",
            if self.keepalived {
                "--keepalived-conf"
            } else {
                "--config"
            },
            &config,
            "--socket",
            &socket,
            "--bpffs",
            &bpffs,
        ];
        dir.lvsd = Some(dir.ns.spawn(&argv, Some(&log))?);
        Ok(())
    }

    fn wait_for_socket(&mut self, d: usize) -> Result<()> {
        let socket = self.directors[d].socket.clone();
        let ready = wait_for(
            &format!("{}'s lvsd control socket", self.directors[d].name),
            Duration::from_secs(20),
            || socket.exists() && self.lvsadm(d, &["-L", "-n"]).is_ok(),
        );
        let running = self.directors[d]
            .lvsd
            .as_mut()
            .is_some_and(|p| p.is_running());
        if ready.is_err() || !running {
            bail!(
                "lvsd did not start on {}:\n{}",
                self.directors[d].name,
                self.logs()
            );
        }
        Ok(())
    }

    /// SIGKILL director `d`'s lvsd: no cleanup runs, its XDP program (and
    /// any floating address) stays.
    pub fn kill9(&mut self, d: usize) -> Result<()> {
        let mut proc = self.directors[d]
            .lvsd
            .take()
            .with_context(|| format!("no lvsd runs on {}", self.directors[d].name))?;
        match proc.kill9() {
            Some(_) => Ok(()),
            None => bail!("lvsd on {} did not die", self.directors[d].name),
        }
    }

    /// Run `lvsadm` against director `d`'s lvsd; stdout on success.
    pub fn lvsadm(&self, d: usize, args: &[&str]) -> Result<String> {
        crate::lvsadm_at(&self.directors[d].socket, args)
    }

    /// `lvsadm ha --json` of director `d`.
    pub fn ha(&self, d: usize) -> Result<HaView> {
        let json = self.lvsadm(d, &["ha", "--json"])?;
        serde_json::from_str(&json).with_context(|| {
            format!(
                "parsing `lvsadm ha --json` of {}: {json}",
                self.directors[d].name
            )
        })
    }

    /// Wait (bounded) until one router is active and the other backup, each
    /// hearing the other; `(active, backup)` indexes.
    pub fn wait_for_roles(&self, limit: Duration) -> Result<(usize, usize)> {
        let mut found = None;
        let settled = wait_for("one active and one backup router", limit, || {
            let (Ok(a), Ok(b)) = (self.ha(0), self.ha(1)) else {
                return false;
            };
            let alive = |v: &HaView| v.peer.as_ref().is_some_and(|p| p.alive);
            if !alive(&a) || !alive(&b) {
                return false;
            }
            found = match (a.role, b.role) {
                (Role::Active, Role::Backup) => Some((0, 1)),
                (Role::Backup, Role::Active) => Some((1, 0)),
                _ => None,
            };
            found.is_some()
        });
        if let Err(e) = settled {
            bail!("{e:#}\n{}", self.status());
        }
        found.context("no roles found")
    }

    /// The counters of director `d`'s service on the VIP's `port`.
    pub fn service_stats(&self, d: usize, port: u16) -> Result<Stats> {
        let json = self.lvsadm(d, &["-L", "-n", "--json"])?;
        let snapshot: Snapshot = serde_json::from_str(&json)
            .with_context(|| format!("parsing `lvsadm -L -n --json`: {json}"))?;
        snapshot
            .services
            .iter()
            .find(|s| s.spec.id.vip.addr == self.vip() && s.spec.id.vip.port == port)
            .map(|s| s.stats)
            .with_context(|| {
                let vip = SocketAddr::new(self.vip(), port);
                format!("no service {vip} on {}", self.directors[d].name)
            })
    }

    /// The addresses configured in director `d`'s namespace.
    pub fn addresses(&self, d: usize) -> Result<Vec<IpAddr>> {
        let out = self.directors[d].ns.exec(&["ip", "-j", "addr", "show"])?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(json
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
            .filter_map(|a| a["local"].as_str()?.parse().ok())
            .collect())
    }

    /// The floating addresses director `d` holds now.
    pub fn floating_held(&self, d: usize) -> Result<Vec<IpAddr>> {
        let have = self.addresses(d)?;
        Ok(self
            .floating()
            .into_iter()
            .map(|(a, _, _)| a)
            .filter(|a| have.contains(a))
            .collect())
    }

    /// Cut director `d` off from its peer (`cut`), or undo it: blackhole
    /// routes in `d`'s namespace to the peer's two link addresses (iproute2
    /// only), so that nothing `d` sends reaches the peer — heartbeats,
    /// sync — while `d` stays up and reachable for the client and the real
    /// servers. Both directors cut off is a split: neither hears the other.
    /// The routes live in `d`'s namespace and go with it on drop.
    pub fn cut_off(&self, d: usize, cut: bool) -> Result<()> {
        let peer = &self.directors[1 - d];
        let verb = if cut { "add" } else { "del" };
        for addr in [peer.lan, peer.private] {
            self.directors[d].ns.exec(&[
                "ip",
                "route",
                verb,
                "blackhole",
                &format!("{addr}/32"),
            ])?;
        }
        Ok(())
    }

    /// The MAC address of director `d`'s `dev`.
    pub fn mac(&self, d: usize, dev: &str) -> Result<[u8; 6]> {
        Ok(self.directors[d].ns.link_stats(dev)?.0)
    }

    /// The MAC address namespace `ns` has for `addr` in its neighbour
    /// table, if any.
    pub fn neighbour(ns: &Netns, addr: IpAddr) -> Result<Option<[u8; 6]>> {
        let out = ns.exec(&["ip", "-j", "neigh", "show", &addr.to_string()])?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(json
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["lladdr"].as_str())
            .find_map(|mac| {
                let bytes: Vec<u8> = mac
                    .split(':')
                    .map(|b| u8::from_str_radix(b, 16).ok())
                    .collect::<Option<_>>()?;
                bytes.try_into().ok()
            }))
    }

    /// A third party on the public LAN, at `OUTSIDER`.
    pub fn add_outsider(&mut self) -> Result<&Netns> {
        if self.outsider.is_none() {
            let ns = Netns::new(format!("{}-out", self.tag))?;
            plug(&self.switch.name, "pub", "out", &ns.name, "eth0")?;
            ns.exec(&[
                "ip",
                "addr",
                "add",
                &format!("{OUTSIDER}/24"),
                "dev",
                "eth0",
            ])?;
            self.outsider = Some(ns);
        }
        Ok(self.outsider.as_ref().expect("just set"))
    }

    /// Both routers' `lvsadm ha` and held floating addresses: what a
    /// failing assertion should show, with `logs`.
    pub fn status(&self) -> String {
        let mut out = String::new();
        for (d, dir) in self.directors.iter().enumerate() {
            let ha = self
                .lvsadm(d, &["ha", "--json"])
                .unwrap_or_else(|e| format!("{e:#}"));
            let held = self
                .floating_held(d)
                .map(|h| format!("{h:?}"))
                .unwrap_or_else(|e| format!("{e:#}"));
            out += &format!(
                "--- {} ({}): floating addresses held {held}\n{ha}\n",
                dir.name, dir.lan
            );
        }
        out
    }

    /// Every lvsd run's log, labelled.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (d, dir) in self.directors.iter().enumerate() {
            for run in 1..=dir.runs {
                let text = std::fs::read_to_string(self.log_path(d, run)).unwrap_or_default();
                out += &format!(
                    "--- lvsd log of {} ({}), run {run}:\n{text}\n",
                    dir.name, dir.lan
                );
            }
        }
        out
    }

    /// `status` and `logs`.
    pub fn report(&self) -> String {
        format!("\n{}\n{}", self.status(), self.logs())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        // The daemons first (a clean exit releases the floating addresses,
        // detaches and removes its owner record), then the real servers'
        // preparation (its undo record lives outside the namespace); then
        // whatever records a killed lvsd or a failed teardown left for
        // these namespaces, and the files. The fields then drop the
        // processes and the namespaces.
        for dir in &mut self.directors {
            if let Some(mut lvsd) = dir.lvsd.take() {
                lvsd.stop();
            }
        }
        for rs in self.reals.iter().filter(|rs| rs.prepared) {
            let _ = rs.realserver(&["teardown"]);
        }
        let directors: Vec<u64> = self.directors.iter().map(|d| d.netns_id).collect();
        let reals: Vec<String> = self
            .real_ids
            .iter()
            .map(|id| format!("realserver-{id}.json"))
            .collect();
        crate::remove_records(&directors, &reals);
        // And the program arrays a killed lvsd left pinned, with the bpffs.
        let _ = run("umount", &[&self.bpffs().display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
