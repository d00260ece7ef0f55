//! The fleet lab: directors side by side behind one router's ECMP, each
//! announcing the VIP over BGP with BIRD, as `docs/fleet` configures them,
//! and DR real servers behind them all.
//!
//! ```text
//!  client eth0 198.18.2.2 ── router eth-cli 198.18.2.1
//!                            router br0 198.18.1.1 (a bridge in its namespace;
//!                              BIRD: BGP and BFD to every director, one
//!                              multipath route to the VIP)
//!    ├── dN eth0 198.18.1.1N  lvsd --sloppy-tcp --announce lvs-vips; BIRD
//!    └── rsN eth0 198.18.1.2N the VIP on lo, default via 198.18.1.1: DR,
//!                             and the last one TUN (`lvs_decap` on eth0)
//! ```
//!
//! The router hashes the 5-tuple as a hardware router does
//! (`fib_multipath_hash_policy` 3 with the five fields): policy 1 would
//! reuse the hash the client's TCP socket stamped on the packet, which a
//! veth carries across and TCP re-rolls on a retransmission timeout. Every
//! director runs the same service: the hold port of every real server by
//! `mh` with `mh-port`, the servers listed in another order on each.

use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::{
    bin, exec_in, lvsadm_at, remove_records, run,
    topology::{Method, RealServer, VIP},
    wait_for, Held, Netns, Proc,
};

/// One round of a counter pattern on every connection: the indexes of
/// those that did not echo their line back, with why.
pub fn echo_all(held: &mut [Held], round: u32) -> Vec<(usize, String)> {
    held.iter_mut()
        .enumerate()
        .filter_map(|(i, h)| {
            let line = format!("{i}:{round}");
            match h.echo(&line) {
                Ok(back) if back == line => None,
                Ok(back) => Some((i, format!("echoed `{back}`"))),
                Err(e) => Some((i, format!("{e:#}"))),
            }
        })
        .collect()
}

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 2, 2);
pub const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 1);
/// The service every director balances (the real servers' hold servers).
pub const PORT: u16 = 7000;
/// The announcement device on every director.
pub const ANNOUNCE: &str = "lvs-vips";

/// How the router spreads flows over its next hops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Multipath {
    /// The kernel's default for a multipath route (hash-threshold): the
    /// hash space cut into one range per next hop, so removing one moves
    /// flows between the others too.
    HashThreshold,
    /// A resilient nexthop group (`ip nexthop ... type resilient`):
    /// removing a next hop moves only its own flows. BIRD 2 installs
    /// multipath routes, not nexthop objects, so BIRD's route goes to
    /// kernel table 100 and the lab mirrors it into the group, as a router
    /// with resilient hashing would hold it.
    Resilient,
}

/// BIRD's table when the lab mirrors its route into a resilient group.
const BIRD_TABLE: &str = "100";
/// The resilient group's id.
const GROUP: &str = "100";

/// Mirrors BIRD's next hops for the VIP into the resilient group, every
/// 10 ms, until dropped.
struct Mirror {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mirror {
    fn start(router: String) -> Self {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last: Vec<Ipv4Addr> = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                if let Ok(hops) = route_hops(&router, &["table", BIRD_TABLE]) {
                    if hops != last && Self::install(&router, &hops).is_ok() {
                        last = hops;
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        Mirror {
            stop,
            thread: Some(thread),
        }
    }

    /// The group holds `hops` (members keep their buckets), and the VIP's
    /// route uses it; no hops, no route.
    fn install(router: &str, hops: &[Ipv4Addr]) -> Result<()> {
        let vip = format!("{VIP}/32");
        if hops.is_empty() {
            let _ = exec_in(router, &["ip", "route", "del", &vip]);
            return Ok(());
        }
        let mut members = Vec::new();
        for hop in hops {
            let id = hop.octets()[3].to_string();
            let gw = hop.to_string();
            exec_in(
                router,
                &[
                    "ip", "nexthop", "replace", "id", &id, "via", &gw, "dev", "br0",
                ],
            )?;
            members.push(id);
        }
        let group = members.join("/");
        exec_in(
            router,
            &[
                "ip",
                "nexthop",
                "replace",
                "id",
                GROUP,
                "group",
                &group,
                "type",
                "resilient",
                "buckets",
                "128",
            ],
        )?;
        exec_in(router, &["ip", "route", "replace", &vip, "nhid", GROUP]).map(drop)
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The gateways of the VIP's route (in the table `table` names; none:
/// the main table); `ip` lists a nexthop group's members as the route's.
fn route_hops(router: &str, table: &[&str]) -> Result<Vec<Ipv4Addr>> {
    let vip = format!("{VIP}/32");
    let mut args = vec!["ip", "-j", "route", "show"];
    args.extend_from_slice(table);
    args.push(&vip);
    let out = exec_in(router, &args)?;
    let routes: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut hops = Vec::new();
    for route in routes.as_array().into_iter().flatten() {
        if let Some(gw) = route["gateway"].as_str() {
            hops.push(gw.parse()?);
        }
        for hop in route["nexthops"].as_array().into_iter().flatten() {
            if let Some(gw) = hop["gateway"].as_str() {
                hops.push(gw.parse()?);
            }
        }
    }
    hops.sort();
    Ok(hops)
}

pub struct FleetDirector {
    pub name: String,
    pub addr: Ipv4Addr,
    // Field order is drop order: the daemons, then the namespace.
    lvsd: Option<Proc>,
    bird: Option<Proc>,
    pub ns: Netns,
    socket: PathBuf,
    config: PathBuf,
    runs: u32,
    /// Names the owner records a killed lvsd leaves in /run/lvs.
    netns_id: u64,
}

pub struct Fleet {
    /// `lvsd --sloppy-tcp` on every director (from its next start).
    pub sloppy: bool,
    /// Stopped before the router's BIRD and namespace go.
    mirror: Option<Mirror>,
    multipath: Multipath,
    pub directors: Vec<FleetDirector>,
    pub reals: Vec<RealServer>,
    router_bird: Option<Proc>,
    pub router: Netns,
    pub client: Netns,
    dir: PathBuf,
}

/// The example configurations the README ships, with the lab's addresses.
fn bird_config(example: &str) -> String {
    example.replace("10.99.0.", "198.18.1.")
}

const DIRECTOR_EXAMPLE: &str = include_str!("../../docs/fleet/bird-director.conf");
const ROUTER_EXAMPLE: &str = include_str!("../../docs/fleet/bird-router.conf");

impl Fleet {
    /// Build the namespaces and links, and write every config; nothing
    /// runs yet. `tag` keeps labs apart.
    pub fn new(tag: &str, directors: usize, reals: usize, multipath: Multipath) -> Result<Fleet> {
        if directors > 3 {
            bail!("the router's example configuration has three directors");
        }
        let dir = crate::fresh_lab_dir(&format!("lvs-fleet-{tag}"))?;
        let bpffs = dir.join("bpffs");
        let router = Netns::new(format!("{tag}-rt"))?;
        let client = Netns::new(format!("{tag}-cli"))?;
        let mut fleet = Fleet {
            sloppy: true,
            mirror: None,
            multipath,
            directors: Vec::new(),
            reals: Vec::new(),
            router_bird: None,
            router,
            client,
            dir,
        };
        let rt = fleet.router.name.clone();
        exec_in(&rt, &["ip", "link", "add", "br0", "type", "bridge"])?;
        exec_in(&rt, &["ip", "link", "set", "br0", "up"])?;
        exec_in(
            &rt,
            &["ip", "addr", "add", &format!("{ROUTER}/24"), "dev", "br0"],
        )?;
        let cli = fleet.client.name.clone();
        veth(&rt, "eth-cli", &cli, "eth0")?;
        exec_in(
            &rt,
            &["ip", "addr", "add", "198.18.2.1/24", "dev", "eth-cli"],
        )?;
        exec_in(
            &cli,
            &["ip", "addr", "add", &format!("{CLIENT}/24"), "dev", "eth0"],
        )?;
        exec_in(
            &cli,
            &["ip", "route", "add", "default", "via", "198.18.2.1"],
        )?;
        // A router: it forwards, and hashes the 5-tuple of each packet.
        exec_in(
            &rt,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
                "net.ipv4.fib_multipath_hash_policy=3",
                // Source and destination address, protocol, both ports.
                "net.ipv4.fib_multipath_hash_fields=0x0037",
            ],
        )?;

        for i in 1..=directors as u8 {
            let name = format!("d{i}");
            let ns = Netns::new(format!("{tag}-{name}"))?;
            let addr = Ipv4Addr::new(198, 18, 1, 10 + i);
            veth(&rt, &format!("{name}-lan"), &ns.name, "eth0")?;
            exec_in(
                &rt,
                &["ip", "link", "set", &format!("{name}-lan"), "master", "br0"],
            )?;
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            ns.exec(&["ip", "route", "add", "default", "via", &ROUTER.to_string()])?;
            std::fs::write(
                fleet.dir.join(format!("{name}-bird.conf")),
                bird_config(DIRECTOR_EXAMPLE).replace("198.18.1.11", &addr.to_string()),
            )?;
            let netns_id = crate::pair::netns_id(&ns.name)?;
            fleet.directors.push(FleetDirector {
                netns_id,
                socket: fleet.dir.join(format!("{name}.sock")),
                config: fleet.dir.join(format!("{name}.toml")),
                name,
                addr,
                lvsd: None,
                bird: None,
                ns,
                runs: 0,
            });
        }
        let mut router_conf = bird_config(ROUTER_EXAMPLE);
        if multipath == Multipath::Resilient {
            router_conf = router_conf.replace(
                "merge paths on;",
                &format!("merge paths on;\n    kernel table {BIRD_TABLE};"),
            );
        }
        std::fs::write(fleet.dir.join("router-bird.conf"), router_conf)?;

        for i in 1..=reals as u8 {
            let ns = Netns::new(format!("{tag}-rs{i}"))?;
            let addr = Ipv4Addr::new(198, 18, 1, 20 + i);
            veth(&rt, &format!("rs{i}-lan"), &ns.name, "eth0")?;
            exec_in(
                &rt,
                &["ip", "link", "set", &format!("rs{i}-lan"), "master", "br0"],
            )?;
            ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
            // Replies from the VIP go straight back through the router.
            ns.exec(&["ip", "route", "add", "default", "via", &ROUTER.to_string()])?;
            // The last server is reached by IP-in-IP, the others by DR.
            let method = if i == reals as u8 && reals > 1 {
                Method::Tunnel
            } else {
                Method::Route
            };
            let mut rs = RealServer {
                ns,
                addr: addr.into(),
                name: format!("rs{i}"),
                method,
                procs: Vec::new(),
                prepared: false,
            };
            let vip = VIP.to_string();
            match method {
                Method::Tunnel => {
                    rs.realserver(&["setup", "--vip", &vip, "--decap", "xdp:eth0"])?
                }
                _ => rs.realserver(&["setup", "--vip", &vip])?,
            };
            rs.prepared = true;
            fleet.reals.push(rs);
        }
        // `ip netns exec` hides the host's /sys/fs/bpf: the directors pin
        // what outlives a killed lvsd in a bpffs of the lab's.
        run("mount", &["-t", "bpf", "bpf", &bpffs.display().to_string()])?;
        fleet.configure("", "")?;
        Ok(fleet)
    }

    /// Write every director's config (read at lvsd's next start): the same
    /// service everywhere, mh with mh-port (so that one client's
    /// connections spread over the servers, and every one of them shows
    /// whether the directors' tables agree) over every real server, listed
    /// in a different order on each director, with `service` lines added to
    /// the service and `real` lines to each real server.
    pub fn configure(&self, service: &str, real: &str) -> Result<()> {
        let s = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:{PORT}\"\nscheduler = \"mh\"\nsched_flags = [\"mh-port\"]\n{service}\n"
        );
        // Each director lists the servers in another order: mh builds one
        // table from them all the same.
        for (d, director) in self.directors.iter().enumerate() {
            let mut config = s.clone();
            for r in 0..self.reals.len() {
                let rs = &self.reals[(r + d) % self.reals.len()];
                let method = match rs.method {
                    Method::Tunnel => "tunnel",
                    _ => "route",
                };
                config += &format!(
                    "[[service.real]]\naddress = \"{}\"\nmethod = \"{method}\"\n{real}\n",
                    rs.at(PORT)
                );
            }
            std::fs::write(&director.config, config)?;
        }
        Ok(())
    }

    /// Stop real server `r`'s hold server (its port then refuses), or
    /// start it again.
    pub fn serve(&mut self, r: usize, serving: bool) -> Result<()> {
        let rs = &mut self.reals[r];
        if serving {
            return rs.start_hold_server(PORT);
        }
        let is_hold = |p: &Proc| p.name.contains(" hold-server ");
        for p in rs.procs.iter_mut().filter(|p| is_hold(p)) {
            p.stop();
        }
        rs.procs.retain(|p| !is_hold(p));
        Ok(())
    }

    /// Every real server's hold server.
    pub fn start_servers(&mut self) -> Result<()> {
        for rs in &mut self.reals {
            rs.start_hold_server(PORT)?;
        }
        Ok(())
    }

    /// BIRD on the router and on every director.
    pub fn start_birds(&mut self) -> Result<()> {
        let conf = self.dir.join("router-bird.conf");
        let ctl = self.dir.join("router-bird.ctl");
        self.router_bird = Some(spawn_bird(
            &self.router,
            &conf,
            &ctl,
            &self.dir.join("router-bird.log"),
        )?);
        if self.multipath == Multipath::Resilient {
            self.mirror = Some(Mirror::start(self.router.name.clone()));
        }
        for d in 0..self.directors.len() {
            self.start_bird(d)?;
        }
        Ok(())
    }

    pub fn start_bird(&mut self, d: usize) -> Result<()> {
        let name = self.directors[d].name.clone();
        let conf = self.dir.join(format!("{name}-bird.conf"));
        let ctl = self.dir.join(format!("{name}-bird.ctl"));
        let log = self.dir.join(format!("{name}-bird.log"));
        let bird = spawn_bird(&self.directors[d].ns, &conf, &ctl, &log)?;
        self.directors[d].bird = Some(bird);
        Ok(())
    }

    /// Start lvsd on director `d` and wait (bounded) for its socket.
    pub fn start_lvsd(&mut self, d: usize) -> Result<()> {
        let bpffs = self.dir.join("bpffs").display().to_string();
        let dir = &mut self.directors[d];
        if dir.lvsd.is_some() {
            bail!("lvsd already runs on {}", dir.name);
        }
        dir.runs += 1;
        let log = self.dir.join(format!("{}-run{}.log", dir.name, dir.runs));
        let _ = std::fs::remove_file(&dir.socket);
        let lvsd = bin("lvsd").display().to_string();
        let (socket, config) = (
            dir.socket.display().to_string(),
            dir.config.display().to_string(),
        );
        let mut argv = vec![
            lvsd.as_str(),
            "-i",
            "eth0",
            "--config",
            &config,
            "--socket",
            &socket,
            "--bpffs",
            &bpffs,
            "--announce",
            ANNOUNCE,
        ];
        if self.sloppy {
            argv.push("--sloppy-tcp");
        }
        dir.lvsd = Some(dir.ns.spawn(&argv, Some(&log))?);
        let socket = dir.socket.clone();
        let ready = wait_for(
            &format!("{}'s lvsd control socket", self.directors[d].name),
            Duration::from_secs(20),
            || socket.exists() && self.lvsadm(d, &["-L", "-n"]).is_ok(),
        );
        if ready.is_err() {
            bail!(
                "lvsd did not start on {}:\n{}",
                self.directors[d].name,
                self.logs()
            );
        }
        Ok(())
    }

    pub fn start_lvsds(&mut self) -> Result<()> {
        for d in 0..self.directors.len() {
            self.start_lvsd(d)?;
        }
        Ok(())
    }

    /// Stop director `d`'s lvsd cleanly (SIGTERM: it withdraws, drains,
    /// detaches), bounded: how long after the signal the router lost its
    /// route through `d`, and how long lvsd took to exit.
    pub fn stop_lvsd(&mut self, d: usize) -> Result<(Duration, Duration)> {
        let mut lvsd = self.directors[d]
            .lvsd
            .take()
            .with_context(|| format!("no lvsd runs on {}", self.directors[d].name))?;
        let pid = lvsd.pid().context("lvsd without a pid")?;
        let start = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let addr = self.directors[d].addr;
        wait_for("the route's withdrawal", Duration::from_secs(10), || {
            self.next_hops().is_ok_and(|hops| !hops.contains(&addr))
        })?;
        let withdrawn = start.elapsed();
        lvsd.stop().context("lvsd did not exit")?;
        Ok((withdrawn, start.elapsed()))
    }

    /// SIGKILL director `d`'s lvsd, as a crash would.
    pub fn kill9(&mut self, d: usize) -> Result<()> {
        let mut lvsd = self.directors[d]
            .lvsd
            .take()
            .with_context(|| format!("no lvsd runs on {}", self.directors[d].name))?;
        lvsd.kill9().context("lvsd did not die")?;
        Ok(())
    }

    /// SIGSTOP (or SIGCONT) every daemon of director `d`: a frozen machine,
    /// whose kernel still forwards.
    pub fn freeze(&mut self, d: usize, frozen: bool) -> Result<()> {
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        let dir = &self.directors[d];
        for proc in [&dir.lvsd, &dir.bird].into_iter().flatten() {
            let pid = proc.pid().context("a daemon without a pid")?;
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)?;
        }
        Ok(())
    }

    /// The router's next hops for the VIP, as its kernel forwards by them.
    pub fn next_hops(&self) -> Result<Vec<Ipv4Addr>> {
        route_hops(&self.router.name, &[])
    }

    /// Wait (bounded) until the router's next hops are exactly those of
    /// `directors`; how long that took.
    pub fn wait_for_next_hops(&self, directors: &[usize], limit: Duration) -> Result<Duration> {
        let mut want: Vec<Ipv4Addr> = directors.iter().map(|&d| self.directors[d].addr).collect();
        want.sort();
        let start = Instant::now();
        let mut seen = Vec::new();
        let done = wait_for("the router's next hops", limit, || {
            seen = self.next_hops().unwrap_or_default();
            seen == want
        });
        if done.is_err() {
            bail!(
                "the router's next hops stayed {seen:?}, not {want:?}:\n{}",
                self.status()
            );
        }
        Ok(start.elapsed())
    }

    /// `lvsadm ARGS` against director `d`'s lvsd.
    pub fn lvsadm(&self, d: usize, args: &[&str]) -> Result<String> {
        lvsadm_at(&self.directors[d].socket, args)
    }

    /// The packets director `d` forwarded for the service (`--stats`).
    pub fn in_packets(&self, d: usize) -> Result<u64> {
        let listing = self.lvsadm(d, &["-L", "-n", "--stats", "--exact"])?;
        let line = listing
            .lines()
            .find(|l| l.starts_with("TCP"))
            .context("no service in the listing")?;
        line.split_whitespace()
            .nth(3)
            .context("no InPkts column")?
            .parse()
            .context("InPkts")
    }

    /// The client ports of the connections director `d` holds.
    pub fn connections(&self, d: usize) -> Result<Vec<u16>> {
        let listing = self.lvsadm(d, &["-L", "-n", "-c"])?;
        let client = format!("{CLIENT}:");
        Ok(listing
            .lines()
            .filter_map(|l| l.split_whitespace().nth(3))
            .filter_map(|source| source.strip_prefix(&client))
            .filter_map(|port| port.parse().ok())
            .collect())
    }

    /// Open `count` connections from the client, each greeted by its real
    /// server; reads and writes time out after `timeout`.
    pub fn open(&self, count: usize, timeout: Duration) -> Result<Vec<Held>> {
        (0..count)
            .map(|i| {
                Held::open(&self.client, self.target(), timeout)
                    .with_context(|| format!("opening connection {i}"))
            })
            .collect()
    }

    /// The client ports of `held` that each of `directors` has in its
    /// connection table.
    pub fn spread(&self, held: &[Held], directors: &[usize]) -> Result<Vec<HashSet<u16>>> {
        let ours: HashSet<u16> = held.iter().map(Held::local_port).collect::<Result<_>>()?;
        directors
            .iter()
            .map(|&d| {
                Ok(self
                    .connections(d)?
                    .into_iter()
                    .filter(|p| ours.contains(p))
                    .collect())
            })
            .collect()
    }

    /// Where the VIP's service is: `VIP:PORT`.
    pub fn target(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(VIP), PORT)
    }

    /// Routes, BGP and BFD as BIRD and the kernel see them, for failures.
    pub fn status(&self) -> String {
        let mut out = String::new();
        if let Ok(o) = self.router.exec(&["ip", "route"]) {
            out += &String::from_utf8_lossy(&o.stdout);
        }
        let ctl = self.dir.join("router-bird.ctl").display().to_string();
        for what in [["show", "protocols"], ["show", "bfd"]] {
            if let Ok(o) = self.router.exec(&["birdc", "-s", &ctl, what[0], what[1]]) {
                out += &String::from_utf8_lossy(&o.stdout);
            }
        }
        out
    }

    /// Every lvsd log of the run.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
            {
                out += &format!("== {}\n", path.display());
                out += &std::fs::read_to_string(path).unwrap_or_default();
            }
        }
        out
    }
}

/// BIRD in the foreground, in `ns`, with its control socket at `ctl`.
fn spawn_bird(
    ns: &Netns,
    conf: &std::path::Path,
    ctl: &std::path::Path,
    log: &std::path::Path,
) -> Result<Proc> {
    let (conf, ctl) = (conf.display().to_string(), ctl.display().to_string());
    ns.spawn(&["bird", "-f", "-c", &conf, "-s", &ctl], Some(log))
}

/// A veth pair: `dev_a` in namespace `a`, `dev_b` in `b`, both up.
fn veth(a: &str, dev_a: &str, b: &str, dev_b: &str) -> Result<()> {
    exec_in(
        a,
        &[
            "ip", "link", "add", dev_a, "type", "veth", "peer", "name", dev_b, "netns", b,
        ],
    )?;
    exec_in(a, &["ip", "link", "set", dev_a, "up"])?;
    exec_in(b, &["ip", "link", "set", dev_b, "up"]).map(drop)
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // The daemons first (a frozen one is thawed, so it can exit), the
        // real servers' preparation, the bpffs; the fields then drop the
        // processes and the namespaces.
        self.mirror = None;
        for d in 0..self.directors.len() {
            let _ = self.freeze(d, false);
            if let Some(mut lvsd) = self.directors[d].lvsd.take() {
                lvsd.stop();
            }
        }
        for rs in self.reals.iter().filter(|rs| rs.prepared) {
            let _ = rs.realserver(&["teardown"]);
        }
        // The owner records of lvsds killed here.
        let ids: Vec<u64> = self.directors.iter().map(|d| d.netns_id).collect();
        remove_records(&ids, &[]);
        let _ = run("umount", &[&self.dir.join("bpffs").display().to_string()]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
