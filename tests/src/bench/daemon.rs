//! Part of section 4 measured on the real programs: release `lvsd` and
//! `lvsadm` processes (`target/release`, or `LVS_BIN_DIR`) in namespaces of
//! their own, driven as an operator would.
//!
//! * `restore_and_list`: `lvsadm -R` of 10,000 services of 10 real servers
//!   (110,000 lines on stdin) into a fresh lvsd, then `lvsadm -L -n` of them;
//! * `pair`: two lvsds with an `[ha]` section in two namespaces joined by a
//!   veth. A million connections go into the active's table through
//!   `BPF_PROG_TEST_RUN` of the director it attached (same maps), then: the
//!   active's CPU with them and sync running to the backup, `lvsadm -L -n`
//!   against it, and the wlc refill latency as new flows arrive.
//!
//! ```text
//!  ns lvsbPID-a  ha0 198.18.30.1 ── veth ── ha0 198.18.30.2  ns lvsbPID-b
//!  DR reals 198.18.30.11 (rr, VIP 198.18.0.10 floating), .20-.29 (wlc,
//!  198.18.0.11): permanent neighbours only, nothing answers there
//! ```
//!
//! Everything (namespaces, processes, files under /tmp, lvsd's owner
//! records in /run/lvs) goes on drop, also when a step fails; a failure
//! carries the tail of each lvsd's log.

use std::{
    io::{Read, Write},
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use lvs_datapath::test_run_attached;
use lvs_ha::wire::Role;
use lvs_state::api::{HaView, Snapshot};
use serde::Serialize;

use super::{
    median,
    testbed::{client, tcp},
    Plan,
};
use crate::{bin, wait_for, Netns, Proc};

const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = super::testbed::XDP_REDIRECT;
/// The pair's DR service (rr, one real server) and the wlc one.
const VIP: [u8; 4] = [198, 18, 0, 10];
const VIP_WLC: [u8; 4] = [198, 18, 0, 11];
const DR_REAL: Ipv4Addr = Ipv4Addr::new(198, 18, 30, 11);
const KEY: &str = "the bench pair's shared secret";
const LINK: &str = "ha0";
/// Timed `lvsadm -L -n` runs per figure (the median is reported).
const LIST_RUNS: usize = 5;

/// `lvsadm -R` and `lvsadm -L -n` with 10,000 services.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreFigures {
    pub restore_10k_ms: f64,
    /// Median of `list_10k_samples_ms`.
    pub list_10k_ms: f64,
    pub list_10k_samples_ms: Vec<f64>,
}

/// The real pair with a million connections in the active's table.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PairFigures {
    /// The active lvsd's CPU (utime + stime of every thread), in % of one
    /// core, over `controller_window_s`.
    pub controller_core_percent: f64,
    pub controller_window_s: f64,
    /// Connections in the active's table (its ActiveConn) and in the
    /// backup's (synced), as the window started.
    pub active_connections: u64,
    pub backup_connections: u64,
    /// Median of `list_samples_ms`: `lvsadm -L -n` against the active.
    pub list_ms: f64,
    pub list_samples_ms: Vec<f64>,
    /// The snapshot's `refills` after new flows into a wlc service: its
    /// p99 (over the latest refills) in µs, and how many there were.
    pub refill_p99_us: f64,
    pub refill_count: u64,
    /// The same refills' mean and largest latency, in µs.
    pub refill_mean_us: f64,
    pub refill_max_us: f64,
}

/// A directory under /tmp, removed with what it holds on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("lvs-bench-{what}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One lvsd: its process, control socket and log.
struct Daemon {
    proc: Proc,
    socket: PathBuf,
    log: PathBuf,
    name: String,
}

/// The namespaces, lvsds and files of one measurement. Field order is drop
/// order after `drop` stops the daemons: namespaces, then the directory.
struct Bed {
    daemons: Vec<Daemon>,
    namespaces: Vec<Netns>,
    /// Each namespace's nsfs inode, which names lvsd's owner records.
    netns_ids: Vec<u64>,
    dir: TempDir,
}

impl Drop for Bed {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.proc.stop();
        }
        // A clean exit removes lvsd's owner records; a killed one leaves them.
        crate::remove_records(&self.netns_ids, &[]);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Bed {
    fn new(what: &str) -> Result<Bed> {
        Ok(Bed {
            daemons: Vec::new(),
            namespaces: Vec::new(),
            netns_ids: Vec::new(),
            dir: TempDir::new(what)?,
        })
    }

    /// A fresh namespace, loopback up, IPv4 forwarding on; its index.
    fn netns(&mut self, suffix: &str) -> Result<usize> {
        use std::os::unix::fs::MetadataExt;
        let name = format!("lvsb{}-{suffix}", std::process::id());
        let ns = Netns::new(name.clone())?;
        self.namespaces.push(ns);
        let id = std::fs::metadata(Path::new("/run/netns").join(&name))
            .with_context(|| format!("stat /run/netns/{name}"))?
            .ino();
        self.netns_ids.push(id);
        let ns = self.namespaces.last().expect("just pushed");
        ns.exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok(self.namespaces.len() - 1)
    }

    /// Start lvsd in namespace `ns` with `args` (interfaces, sizes, config)
    /// and wait (bounded) until its socket answers; its index.
    fn lvsd(&mut self, ns: usize, name: &str, args: &[&str]) -> Result<usize> {
        let lvsd = bin("lvsd");
        if !lvsd.exists() || !bin("lvsadm").exists() {
            bail!(
                "{} or lvsadm missing: build them first (`cargo build --release -p lvs-daemon -p lvs-cli`, which `cargo xtask bench` does)",
                lvsd.display()
            );
        }
        let socket = self.dir.0.join(format!("{name}.sock"));
        let log = self.dir.0.join(format!("{name}.log"));
        let (lvsd, socket_arg) = (lvsd.display().to_string(), socket.display().to_string());
        let mut argv = vec![lvsd.as_str(), "--socket", socket_arg.as_str()];
        argv.extend_from_slice(args);
        let proc = self.namespaces[ns].spawn(&argv, Some(&log))?;
        self.daemons.push(Daemon {
            proc,
            socket,
            log,
            name: name.to_string(),
        });
        let d = self.daemons.len() - 1;
        let ready = wait_for(
            &format!("lvsd {name}'s control socket"),
            Duration::from_secs(30),
            || {
                let d = &mut self.daemons[d];
                d.socket.exists() && crate::lvsadm_at(&d.socket, &["-L", "-n"]).is_ok()
                    || !d.proc.is_running()
            },
        );
        if ready.is_err() || !self.daemons[d].proc.is_running() {
            bail!("lvsd {name} did not start{}", self.logs());
        }
        Ok(d)
    }

    fn socket(&self, d: usize) -> &Path {
        &self.daemons[d].socket
    }

    /// The last lines of every lvsd's log, for an error.
    fn logs(&self) -> String {
        self.daemons
            .iter()
            .map(|d| {
                format!(
                    "\n--- last lines of lvsd {}'s log ({}):\n{}",
                    d.name,
                    d.log.display(),
                    tail(&d.log, 40)
                )
            })
            .collect()
    }

    /// `f`'s error, with the logs.
    fn check<T>(&self, result: Result<T>) -> Result<T> {
        result.map_err(|e| anyhow::anyhow!("{e:#}{}", self.logs()))
    }
}

/// `lvsadm -R` of `text`, timed from spawn to exit (parsing included).
fn restore(socket: &Path, text: &str) -> Result<f64> {
    let started = Instant::now();
    let mut child = Command::new(bin("lvsadm"))
        .arg("--socket")
        .arg(socket)
        .arg("-R")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning lvsadm -R")?;
    // lvsadm reads all of stdin before it writes anything.
    let written = child
        .stdin
        .take()
        .expect("piped")
        .write_all(text.as_bytes());
    let out = child.wait_with_output().context("waiting for lvsadm -R")?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() || written.is_err() {
        bail!(
            "`lvsadm -R` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(ms)
}

/// `lvsadm -L -n`, its output read whole through a pipe, timed from spawn
/// to exit; `(ms, lines that start a service)`.
fn list(socket: &Path) -> Result<(f64, usize)> {
    let started = Instant::now();
    let mut child = Command::new(bin("lvsadm"))
        .arg("--socket")
        .arg(socket)
        .args(["-L", "-n"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning lvsadm -L -n")?;
    let mut text = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut text)
        .context("reading lvsadm -L -n")?;
    let out = child
        .wait_with_output()
        .context("waiting for lvsadm -L -n")?;
    let ms = started.elapsed().as_secs_f64() * 1e3;
    if !out.status.success() {
        bail!(
            "`lvsadm -L -n` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok((ms, text.lines().filter(|l| l.starts_with("TCP ")).count()))
}

/// `LIST_RUNS` timed listings, each checked to show `services`.
fn list_runs(socket: &Path, services: usize) -> Result<Vec<f64>> {
    (0..LIST_RUNS)
        .map(|_| {
            let (ms, shown) = list(socket)?;
            if shown != services {
                bail!("`lvsadm -L -n` showed {shown} services, not {services}");
            }
            Ok(ms)
        })
        .collect()
}

fn dotted(a: [u8; 4]) -> String {
    Ipv4Addr::from(a).to_string()
}

/// The restore: `-A` then ten `-a` lines for each of `services` VIPs.
fn restore_text(services: u32) -> String {
    let mut text = String::with_capacity(services as usize * 11 * 56);
    for i in 0..services {
        let vip = format!("198.19.{}.{}:80", i / 250, 1 + i % 250);
        text += &format!("-A -t {vip} -s wlc\n");
        for j in 0..10 {
            text += &format!("-a -t {vip} -r 198.18.20.{}:8080 -m -w {}\n", 10 + j, 1 + j);
        }
    }
    text
}

/// `lvsadm -R` of 10,000 services of 10 NAT real servers each into a
/// fresh lvsd, then `LIST_RUNS` timed `lvsadm -L -n`.
pub fn restore_and_list(_plan: Plan) -> Result<RestoreFigures> {
    const SERVICES: u32 = 10_000;
    let text = restore_text(SERVICES);
    let mut bed = Bed::new("restore")?;
    let ns = bed.netns("r")?;
    bed.namespaces[ns].exec(&["sh", "-c", "ip link add eth0 type veth peer name eth0p && ip addr add 198.18.20.1/24 dev eth0 && ip link set eth0 up && ip link set eth0p up"])?;
    let d = bed.lvsd(
        ns,
        "restore",
        &[
            "-i",
            "eth0",
            "--max-services",
            "16384",
            "--max-reals",
            "131072",
        ],
    )?;
    let socket = bed.socket(d).to_path_buf();
    let restore_10k_ms = bed.check(restore(&socket, &text))?;
    eprintln!("   lvsadm -R of {SERVICES} services (110,000 lines): {restore_10k_ms:.0} ms");
    let samples = bed.check(list_runs(&socket, SERVICES as usize))?;
    let list_10k_ms = median(&samples);
    eprintln!(
        "   lvsadm -L -n of {SERVICES} services: {list_10k_ms:.0} ms (median of {LIST_RUNS})"
    );
    Ok(RestoreFigures {
        restore_10k_ms,
        list_10k_ms,
        list_10k_samples_ms: samples,
    })
}

/// The CPU time (utime + stime, all threads) of process `pid`.
fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The fields after the command's closing parenthesis: state is the
    // first of them (field 3), utime and stime fields 14 and 15.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("no command in {path}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("field {} of {path}", i + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks()))
}

/// USER_HZ, the unit of /proc/PID/stat's times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|&t: &f64| t > 0.0)
        .unwrap_or(100.0)
}

fn ha(socket: &Path) -> Result<HaView> {
    let json = crate::lvsadm_at(socket, &["ha", "--json"])?;
    serde_json::from_str(&json).with_context(|| format!("parsing `lvsadm ha --json`: {json}"))
}

/// Wait (bounded) until one lvsd of the pair is active and the other
/// backup, each hearing the other; `(active, backup)`.
fn wait_for_roles(bed: &Bed, limit: Duration) -> Result<(usize, usize)> {
    let mut found = None;
    let settled = wait_for("one active and one backup lvsd", limit, || {
        let (Ok(a), Ok(b)) = (ha(bed.socket(0)), ha(bed.socket(1))) else {
            return false;
        };
        let alive = |v: &HaView| v.peer.as_ref().is_some_and(|p| p.alive);
        found = match (a.role, b.role) {
            (Role::Active, Role::Backup) if alive(&a) && alive(&b) => Some((0, 1)),
            (Role::Backup, Role::Active) if alive(&a) && alive(&b) => Some((1, 0)),
            _ => None,
        };
        found.is_some()
    });
    if let Err(e) = settled {
        let roles: Vec<String> = (0..2)
            .map(|d| match crate::lvsadm_at(bed.socket(d), &["ha"]) {
                Ok(text) => text,
                Err(e) => format!("{e:#}"),
            })
            .collect();
        bail!("{e:#}\n{}", roles.join("\n"));
    }
    found.context("no roles found")
}

/// Fail unless `active` is still active with a live peer.
fn still_active(bed: &Bed, active: usize, when: &str) -> Result<()> {
    let view = ha(bed.socket(active))?;
    if view.role != Role::Active || !view.peer.as_ref().is_some_and(|p| p.alive) {
        bail!(
            "{when}, lvsd {} is no longer an active router with a live peer: {view:?}",
            bed.daemons[active].name
        );
    }
    Ok(())
}

/// ActiveConn summed over the real servers of service `vip:80`.
fn active_conns(socket: &Path, vip: [u8; 4]) -> Result<u64> {
    let json = crate::lvsadm_at(socket, &["-L", "-n", "--json"])?;
    let snapshot: Snapshot =
        serde_json::from_str(&json).context("parsing `lvsadm -L -n --json`")?;
    Ok(snapshot
        .services
        .iter()
        .filter(|s| s.spec.id.vip.addr == Ipv4Addr::from(vip) && s.spec.id.vip.port == 80)
        .flat_map(|s| &s.reals)
        .map(|r| u64::from(r.active_conns))
        .sum())
}

/// The snapshot's refill statistics.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Refills {
    count: u64,
    total_ns: u64,
    max_ns: u64,
    p99_ns: u64,
}

fn refills(socket: &Path) -> Result<Refills> {
    let json = crate::lvsadm_at(socket, &["-L", "-n", "--json"])?;
    let snapshot: serde_json::Value =
        serde_json::from_str(&json).context("parsing `lvsadm -L -n --json`")?;
    let refills = &snapshot["refills"];
    let field = |name: &str| {
        refills[name]
            .as_u64()
            .with_context(|| format!("no refills.{name} in `lvsadm -L -n --json`"))
    };
    Ok(Refills {
        count: field("count")?,
        total_ns: field("total_ns")?,
        max_ns: field("max_ns")?,
        // Absent from an lvsd without the percentile: reported as 0.
        p99_ns: refills["p99_ns"].as_u64().unwrap_or(0),
    })
}

/// Run `frames` through the director attached to `LINK` in namespace `ns`
/// (lazily, in one call); fail unless `min_forwarded` of them were sent on.
fn drive<I>(ns: &Netns, what: &str, frames: I, min_forwarded: f64) -> Result<usize>
where
    I: IntoIterator + Send,
    I::Item: AsRef<[u8]>,
{
    let actions = ns.run(|| {
        test_run_attached(LINK, frames).with_context(|| format!("{what}: BPF_PROG_TEST_RUN"))
    })?;
    let forwarded = actions
        .iter()
        .filter(|&&a| a == XDP_REDIRECT || a == XDP_TX)
        .count();
    if (forwarded as f64) < actions.len() as f64 * min_forwarded {
        let mut other: Vec<u32> = actions
            .iter()
            .copied()
            .filter(|&a| a != XDP_REDIRECT && a != XDP_TX)
            .collect();
        other.sort_unstable();
        other.dedup();
        bail!(
            "{what}: only {forwarded} of {} frames were forwarded (other XDP actions: {other:?})",
            actions.len()
        );
    }
    Ok(forwarded)
}

fn pair_config(me: Ipv4Addr, peer: Ipv4Addr) -> String {
    format!(
        r#"[[service]]
protocol = "tcp"
address = "{vip}:80"
scheduler = "rr"

[[service.real]]
address = "{DR_REAL}:80"
method = "route"

[ha]
key = "{KEY}"
# A fill of a million flows shares two cores with both routers: a longer
# dead time than the default keeps roles steady through it.
dead = 3.0

[[ha.link]]
iface = "{LINK}"
local = "{me}"
peer = "{peer}"

[[ha.address]]
address = "{vip}/32"
iface = "{LINK}"
"#,
        vip = dotted(VIP)
    )
}

/// The wlc service's ten DR real servers.
fn wlc_reals() -> impl Iterator<Item = Ipv4Addr> {
    (20..30).map(|h| Ipv4Addr::new(198, 18, 30, h))
}

/// The pair: a million connections in the active's table, its CPU with
/// HA sync to the backup, `lvsadm -L -n` against it, then the wlc refill
/// latency as new flows arrive.
pub fn pair(plan: Plan, flows: u32) -> Result<PairFigures> {
    let window = Duration::from_secs(if plan.quick { 5 } else { 10 });
    let mut bed = Bed::new("pair")?;
    let a = bed.netns("a")?;
    let b = bed.netns("b")?;
    let addrs = [Ipv4Addr::new(198, 18, 30, 1), Ipv4Addr::new(198, 18, 30, 2)];
    crate::run(
        "ip",
        &[
            "link",
            "add",
            LINK,
            "netns",
            &bed.namespaces[a].name,
            "type",
            "veth",
            "peer",
            "name",
            LINK,
            "netns",
            &bed.namespaces[b].name,
        ],
    )?;
    for (ns, addr) in [(a, addrs[0]), (b, addrs[1])] {
        let ns = &bed.namespaces[ns];
        ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", LINK])?;
        ns.exec(&["ip", "link", "set", LINK, "up"])?;
        // The real servers only as neighbours: the director's FIB lookups
        // resolve, and test_run never sends a frame anywhere.
        for real in std::iter::once(DR_REAL).chain(wlc_reals()) {
            let [_, _, _, h] = real.octets();
            ns.exec(&[
                "ip",
                "neigh",
                "replace",
                &real.to_string(),
                "lladdr",
                &format!("02:00:00:00:1e:{h:02x}"),
                "dev",
                LINK,
                "nud",
                "permanent",
            ])?;
        }
    }
    let table = (flows * 2).next_power_of_two().to_string();
    for (d, (ns, name)) in [(a, "a"), (b, "b")].into_iter().enumerate() {
        let config = bed.dir.0.join(format!("{name}.toml"));
        std::fs::write(&config, pair_config(addrs[d], addrs[1 - d]))?;
        let config = config.display().to_string();
        bed.lvsd(
            ns,
            name,
            &[
                "-i",
                LINK,
                "--config",
                &config,
                "--conn-table-size",
                &table,
                "--datapath",
                "xdp",
            ],
        )?;
    }
    let (active, backup) = bed.check(wait_for_roles(&bed, Duration::from_secs(30)))?;
    let ns = &bed.namespaces[[a, b][active]];
    eprintln!(
        "   pair up: lvsd {} active, {} backup; filling its table with {flows} connections",
        bed.daemons[active].name, bed.daemons[backup].name
    );

    // The backup asks for a full resync as it becomes backup: let that
    // pass (bounded) before the fill, so that the fill's connections reach
    // it as created.
    let resynced = wait_for(
        "the active's first full resync",
        Duration::from_secs(10),
        || ha(bed.socket(active)).is_ok_and(|v| v.counters.full_resyncs_sent > 0),
    );
    if resynced.is_err() {
        eprintln!("   note: the active sent no full resync to the backup");
    }

    // Each flow a SYN then its ACK: ESTABLISHED (900 s), not SYN_RECV
    // (60 s), and never more half-open than a client's handshake leaves
    // (the table holds a quarter of its size half-open).
    let started = Instant::now();
    let syn = |n: u32| tcp(client(n), (VIP, 80), "S", b"");
    let ack = |n: u32| tcp(client(n), (VIP, 80), "A", b"");
    let handshakes = (0..flows).flat_map(|n| [syn(n), ack(n)]);
    bed.check(drive(ns, "filling (SYN, ACK)", handshakes, 0.999))?;
    eprintln!("   filled in {:.1} s", started.elapsed().as_secs_f64());
    let want = u64::from(flows) * 99 / 100;
    let mut active_connections = 0;
    let counted = wait_for(
        "the active's ActiveConn to reach the flows",
        Duration::from_secs(30),
        || {
            active_connections = active_conns(bed.socket(active), VIP).unwrap_or(0);
            active_connections >= want
        },
    );
    bed.check(counted.with_context(|| {
        format!("the active counts {active_connections} of {flows} connections")
    }))?;
    // The backup's copies (sent as created, then as the sweeper finds
    // them used): wait (bounded) while the sync catches up, then measure
    // with whatever it holds.
    let mut backup_connections = 0;
    let mut unchanged = 0;
    let synced_by = Instant::now() + Duration::from_secs(60);
    while Instant::now() < synced_by && unchanged < 5 {
        std::thread::sleep(Duration::from_secs(1));
        let now = active_conns(bed.socket(backup), VIP).unwrap_or(0);
        unchanged = if now == backup_connections {
            unchanged + 1
        } else {
            0
        };
        backup_connections = now;
        if backup_connections >= want {
            break;
        }
    }
    if backup_connections < want {
        eprintln!("   note: the backup holds {backup_connections} of {flows} connections");
    }
    bed.check(still_active(&bed, active, "after the fill"))?;

    let pid = bed.daemons[active]
        .proc
        .pid()
        .context("the active lvsd has no pid")?;
    // `ip netns exec` execs lvsd: the child's pid is lvsd's.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "lvsd" {
        bail!("process {pid} is `{}`, not lvsd", comm.trim());
    }
    let (cpu0, t0) = (bed.check(cpu_time(pid))?, Instant::now());
    std::thread::sleep(window);
    let (cpu1, wall) = (bed.check(cpu_time(pid))?, t0.elapsed());
    let controller_core_percent = (cpu1 - cpu0).as_secs_f64() / wall.as_secs_f64() * 100.0;
    bed.check(still_active(&bed, active, "after the CPU window"))?;
    eprintln!(
        "   active lvsd with {active_connections} connections ({backup_connections} on the backup): {controller_core_percent:.1}% of a core over {:.1} s",
        wall.as_secs_f64()
    );

    let list_samples_ms = bed.check(list_runs(bed.socket(active), 1))?;
    let list_ms = median(&list_samples_ms);

    // The wlc service, on both routers (so the backup knows what it is
    // sent), then new flows into it on the active.
    let wlc = dotted(VIP_WLC);
    let mut lines = format!("-A -t {wlc}:80 -s wlc\n");
    for real in wlc_reals() {
        lines += &format!("-a -t {wlc}:80 -r {real}:80 -g -w 1\n");
    }
    for d in [active, backup] {
        bed.check(restore(bed.socket(d), &lines))?;
    }
    let count0 = bed.check(refills(bed.socket(active)))?.count;
    const NEW_FLOWS: u32 = 20_000;
    const BATCHES: u32 = 100;
    let spread = Duration::from_secs(5);
    let first = flows + 1_000_000;
    let t0 = Instant::now();
    for batch in 0..BATCHES {
        let per = NEW_FLOWS / BATCHES;
        let frames = (first + batch * per..first + (batch + 1) * per)
            .map(|n| tcp(client(n), (VIP_WLC, 80), "S", b""));
        bed.check(drive(ns, "new flows into wlc", frames, 0.999))?;
        let due = t0 + spread * (batch + 1) / BATCHES;
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
    }
    // The last low-water signals are answered within moments; wait
    // (bounded) until the count stops moving.
    let mut last = bed.check(refills(bed.socket(active)))?;
    let mut steady = 0;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = bed.check(refills(bed.socket(active)))?;
        steady = if now.count == last.count {
            steady + 1
        } else {
            0
        };
        last = now;
        if steady >= 2 {
            break;
        }
    }
    if last.count <= count0 {
        eprintln!("   note: no refill was recorded for {NEW_FLOWS} new flows into wlc");
    }
    let us = |ns: u64| ns as f64 / 1e3;
    eprintln!(
        "   lvsadm -L -n with {flows} connections: {list_ms:.0} ms; refills: {}, p99 {:.0} µs, max {:.0} µs",
        last.count,
        us(last.p99_ns),
        us(last.max_ns)
    );
    Ok(PairFigures {
        controller_core_percent,
        controller_window_s: wall.as_secs_f64(),
        active_connections,
        backup_connections,
        list_ms,
        list_samples_ms,
        refill_p99_us: us(last.p99_ns),
        refill_count: last.count,
        refill_mean_us: us(last.total_ns) / last.count.max(1) as f64,
        refill_max_us: us(last.max_ns),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_restore_has_a_service_line_and_ten_real_lines_per_service() {
        let text = super::restore_text(300);
        assert_eq!(text.lines().count(), 3_300);
        assert_eq!(text.lines().filter(|l| l.starts_with("-A ")).count(), 300);
        let commands = lvs_cli::ipvsadm::parse_restore(&text).expect("parses");
        assert_eq!(commands.len(), 3_300);
    }

    /// This part of the bench alone, as root, against release binaries:
    /// `cargo build --release -p lvs-daemon -p lvs-cli && LVS_BIN_DIR=$PWD/target/release
    /// cargo test --release -p lvs-tests --lib bench::daemon -- --ignored --nocapture`.
    #[test]
    #[ignore = "root, release lvsd and lvsadm, a minute or more"]
    fn real_programs_quick() {
        let plan = super::Plan { quick: true };
        let restore = super::restore_and_list(plan).expect("restore and list");
        let pair = super::pair(plan, 1_000_000).expect("the pair");
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&(restore, pair)).unwrap()
        );
    }

    #[test]
    fn cpu_time_reads_this_process() {
        assert!(super::cpu_time(std::process::id()).is_ok());
    }
}
