//! Labs shaped as LVS administrators deploy a director (issue 14), with
//! every veth left as `ip link add` makes it (GRO off, TX checksum offload
//! on) and no sysctl beyond what the scenario itself sets.
//!
//! `selftest`: the topology of the kernel's own IPVS selftest
//! (tools/testing/selftests/net/netfilter/ipvs.sh), rebuilt from its
//! description, with lvsd and lvsadm in place of IPVS and ipvsadm, and the
//! lab's addresses:
//!
//! ```text
//!        client (ns0)                 director (ns1)
//!   br0 198.18.1.2 ─ veth01 ────── veth10 198.18.1.1
//!    │                                veth12 198.18.2.1
//!    └ veth02                            │
//!        │                               │
//!      veth20 198.18.1.3 ───────── veth21 198.18.2.2
//!                 real server (ns2)
//! ```
//!
//! The client routes the VIP to the director; DR and TUN replies go from
//! the real server straight back over veth20 (NAT deletes veth20 and
//! routes the real server through the director). 32 random bytes cross
//! with socat, as in the selftest.
//!
//! `one_lan_dr`: one LAN (a bridge in a switch namespace) holding the
//! client, a one-armed director with the VIP on its only interface, and the
//! DR real servers: the textbook LVS-DR setup.

use std::{io::Read, net::Ipv4Addr, path::Path, process::Command, time::Duration};

use anyhow::{bail, Context, Result};

use crate::{
    bin, exec_in, run,
    topology::{Method, RealServer, VIP},
    wait_for, Lab, Netns,
};

/// The selftest's port.
pub const SELFTEST_PORT: u16 = 8080;
/// The selftest's data length.
pub const SELFTEST_BYTES: usize = 32;

/// `socat`, as the selftest uses it: installed from Debian's packages if
/// missing (`cargo xtask setup` installs it too).
pub fn ensure_socat() -> Result<()> {
    if Path::new("/usr/bin/socat").exists() {
        return Ok(());
    }
    run(
        "timeout",
        &["300", "apt-get", "install", "-y", "-q", "socat"],
    )
    .context("installing socat")
    .map(drop)
}

fn veth(a_ns: &str, a_dev: &str, b_ns: &str, b_dev: &str) -> Result<()> {
    run(
        "ip",
        &[
            "link", "add", a_dev, "netns", a_ns, "type", "veth", "peer", "name", b_dev, "netns",
            b_ns,
        ],
    )
    .map(drop)
}

fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    let mut argv = vec!["sysctl", "-qw"];
    argv.extend_from_slice(settings);
    exec_in(ns, &argv).map(drop)
}

fn lab_dir(tag: &str) -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("lvs-lab-{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// The selftest's three forwarding methods.
pub fn selftest_lab(tag: &str, method: Method) -> Result<Lab> {
    let dir = lab_dir(tag)?;
    let ns0 = Netns::new(format!("{tag}-ns0"))?;
    let ns1 = Netns::new(format!("{tag}-ns1"))?;
    let ns2 = Netns::new(format!("{tag}-ns2"))?;
    let (n0, n1, n2) = (ns0.name.clone(), ns1.name.clone(), ns2.name.clone());
    let rip = Ipv4Addr::new(198, 18, 2, 2);
    let mut lab = Lab {
        lvsd: None,
        reals: vec![RealServer {
            ns: ns2,
            addr: rip.into(),
            name: "rs1".into(),
            method,
            procs: Vec::new(),
            prepared: false,
        }],
        client: ns0,
        director: ns1,
        router: None,
        edge: None,
        ifaces: vec!["veth10".into(), "veth12".into()],
        socket: dir.join("lvsd.sock"),
        bpffs: None,
        dir,
    };

    // setup()
    veth(&n0, "veth01", &n1, "veth10")?;
    veth(&n0, "veth02", &n2, "veth20")?;
    veth(&n1, "veth12", &n2, "veth21")?;
    exec_in(&n0, &["ip", "link", "set", "veth01", "up"])?;
    exec_in(&n0, &["ip", "link", "set", "veth02", "up"])?;
    exec_in(&n0, &["ip", "link", "add", "br0", "type", "bridge"])?;
    exec_in(&n0, &["ip", "link", "set", "veth01", "master", "br0"])?;
    exec_in(&n0, &["ip", "link", "set", "veth02", "master", "br0"])?;
    exec_in(&n0, &["ip", "link", "set", "br0", "up"])?;
    exec_in(&n0, &["ip", "addr", "add", "198.18.1.2/24", "dev", "br0"])?;
    for (dev, addr) in [("veth10", "198.18.1.1/24"), ("veth12", "198.18.2.1/24")] {
        exec_in(&n1, &["ip", "link", "set", dev, "up"])?;
        exec_in(&n1, &["ip", "addr", "add", addr, "dev", dev])?;
    }
    for (dev, addr) in [("veth21", "198.18.2.2/24"), ("veth20", "198.18.1.3/24")] {
        exec_in(&n2, &["ip", "link", "set", dev, "up"])?;
        exec_in(&n2, &["ip", "addr", "add", addr, "dev", dev])?;
    }
    std::thread::sleep(Duration::from_secs(1));

    // test_dr(), test_nat(), test_tun(): the client's route to the VIP,
    // the director's sysctls and its VIP on lo, the real server's side.
    let vip = VIP.to_string();
    let vip32 = format!("{VIP}/32");
    exec_in(
        &n0,
        &[
            "ip",
            "route",
            "add",
            &vip,
            "via",
            "198.18.1.1",
            "dev",
            "br0",
        ],
    )?;
    match method {
        Method::Route | Method::Nat => sysctl(&n1, &["net.ipv4.ip_forward=1"])?,
        Method::Tunnel => sysctl(
            &n1,
            &[
                "net.ipv4.ip_forward=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
            ],
        )?,
    }
    exec_in(&n1, &["ip", "addr", "add", &vip32, "dev", "lo"])?;
    let rs = &mut lab.reals[0];
    match method {
        Method::Route => {
            // arp_ignore, arp_announce and the VIP on lo: what
            // `lvsadm realserver setup` does; rp_filter as the selftest.
            sysctl(
                &n2,
                &[
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.veth21.rp_filter=0",
                ],
            )?;
            rs.realserver(&["setup", "--vip", &vip])?;
            rs.prepared = true;
        }
        Method::Nat => {
            exec_in(&n2, &["ip", "link", "del", "veth20"])?;
            exec_in(
                &n2,
                &[
                    "ip",
                    "route",
                    "add",
                    "default",
                    "via",
                    "198.18.2.1",
                    "dev",
                    "veth21",
                ],
            )?;
        }
        Method::Tunnel => {
            // No ipip module here: lvs_decap on veth21 instead of tunl0.
            sysctl(
                &n2,
                &[
                    "net.ipv4.conf.all.rp_filter=0",
                    "net.ipv4.conf.veth21.rp_filter=0",
                ],
            )?;
            rs.realserver(&["setup", "--vip", &vip, "--decap", "xdp:veth21"])?;
            rs.prepared = true;
        }
    }
    Ok(lab)
}

/// The selftest's rules: `-A -t VIP:8080 -s rr` and its one real server,
/// with the method flag as the selftest writes it (none for DR: the
/// default).
pub fn selftest_rules(method: Method) -> String {
    let flag = match method {
        Method::Route => "",
        Method::Nat => " -m",
        Method::Tunnel => " -i",
    };
    format!(
        "-A -t {VIP}:{SELFTEST_PORT} -s rr\n-a -t {VIP}:{SELFTEST_PORT} -r 198.18.2.2:{SELFTEST_PORT}{flag}\n"
    )
}

/// The selftest's `test_service`: a socat server on the real server
/// writes what it receives to a file (`timeout 5`), a socat client sends
/// 32 random bytes to VIP:8080 (`timeout 2`), and the file must hold
/// exactly those bytes.
pub fn selftest_transfer(lab: &Lab, run_no: usize) -> Result<()> {
    let rs = &lab.reals[0];
    let infile = lab.dir.join(format!("in{run_no}"));
    let outfile = lab.dir.join(format!("out{run_no}"));
    let errfile = lab.dir.join(format!("server{run_no}.err"));
    let mut data = [0u8; SELFTEST_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut data)?;
    std::fs::write(&infile, data)?;

    // server_listen
    let script = format!(
        "exec timeout 5 socat -u -4 TCP-LISTEN:{SELFTEST_PORT},reuseaddr STDOUT > {} 2> {}",
        outfile.display(),
        errfile.display()
    );
    let mut server = rs.ns.spawn(&["sh", "-c", &script], None)?;
    wait_for_listener(&rs.ns, SELFTEST_PORT)?;

    // client_connect
    let script = format!(
        "exec timeout 2 socat -u -4 STDIN TCP:{VIP}:{SELFTEST_PORT} < {}",
        infile.display()
    );
    let client = Command::new("ip")
        .args(["netns", "exec", &lab.client.name, "sh", "-c", &script])
        .output()
        .context("running the socat client")?;

    // verify_data: the server ends by itself once the client closes, or
    // at its own 5 s timeout.
    wait_for("the socat server to exit", Duration::from_secs(7), || {
        !server.is_running()
    })?;
    let _ = server.stop();
    let got = std::fs::read(&outfile).unwrap_or_default();
    if got != data {
        bail!(
            "the real server received {} of {SELFTEST_BYTES} bytes{} (client: {}{}; server: {})",
            got.len(),
            if got.len() == SELFTEST_BYTES {
                ", different ones"
            } else {
                ""
            },
            client.status,
            match String::from_utf8_lossy(&client.stderr).trim() {
                "" => String::new(),
                e => format!(", `{e}`"),
            },
            std::fs::read_to_string(&errfile).unwrap_or_default().trim()
        );
    }
    if !client.status.success() {
        bail!(
            "the data arrived, but the socat client failed ({}): {}",
            client.status,
            String::from_utf8_lossy(&client.stderr).trim()
        );
    }
    Ok(())
}

/// A veth from `dev` in `ns` to `port` of bridge `br0` in `switch`, both
/// ends as `ip link add` makes them.
fn plug(switch: &str, port: &str, ns: &str, dev: &str) -> Result<()> {
    veth(switch, port, ns, dev)?;
    exec_in(switch, &["ip", "link", "set", port, "master", "br0", "up"])?;
    exec_in(ns, &["ip", "link", "set", dev, "up"]).map(drop)
}

/// One LAN, 198.18.1.0/24, a bridge in the switch namespace (the lab's
/// `router` field, which holds no address):
///
/// ```text
///  client   eth0 198.18.1.2   (VIP on-link: it ARPs for 198.18.0.10)
///  director lan0 198.18.1.1 + VIP 198.18.0.10/32, ip_forward=0, lvsd -i lan0
///  rsN      eth0 198.18.1.1N  (`lvsadm realserver setup --vip`), N = 1..reals
/// ```
pub fn one_lan_dr(tag: &str, reals: u8) -> Result<Lab> {
    let dir = lab_dir(tag)?;
    let mut lab = Lab {
        lvsd: None,
        reals: Vec::new(),
        client: Netns::new(format!("{tag}-cli"))?,
        director: Netns::new(format!("{tag}-dir"))?,
        router: Some(Netns::new(format!("{tag}-sw"))?),
        edge: None,
        ifaces: vec!["lan0".into()],
        socket: dir.join("lvsd.sock"),
        bpffs: None,
        dir,
    };
    let sw = lab.router.as_ref().expect("just set").name.clone();
    let (cli, dir_ns) = (lab.client.name.clone(), lab.director.name.clone());
    let vip32 = format!("{VIP}/32");
    exec_in(&sw, &["ip", "link", "add", "br0", "type", "bridge"])?;
    exec_in(&sw, &["ip", "link", "set", "br0", "up"])?;

    plug(&sw, "pcli", &cli, "eth0")?;
    exec_in(&cli, &["ip", "addr", "add", "198.18.1.2/24", "dev", "eth0"])?;
    exec_in(&cli, &["ip", "route", "add", &vip32, "dev", "eth0"])?;

    plug(&sw, "pdir", &dir_ns, "lan0")?;
    exec_in(
        &dir_ns,
        &["ip", "addr", "add", "198.18.1.1/24", "dev", "lan0"],
    )?;
    exec_in(&dir_ns, &["ip", "addr", "add", &vip32, "dev", "lan0"])?;
    sysctl(&dir_ns, &["net.ipv4.ip_forward=0"])?;

    let vip = VIP.to_string();
    for i in 1..=reals {
        let ns = Netns::new(format!("{tag}-rs{i}"))?;
        plug(&sw, &format!("p{i}"), &ns.name, "eth0")?;
        let addr = Ipv4Addr::new(198, 18, 1, 10 + i);
        ns.exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
        let mut rs = RealServer {
            ns,
            addr: addr.into(),
            name: format!("rs{i}"),
            method: Method::Route,
            procs: Vec::new(),
            prepared: false,
        };
        rs.realserver(&["setup", "--vip", &vip])?;
        rs.prepared = true;
        lab.reals.push(rs);
    }
    Ok(lab)
}

/// Apply `rules` as one `lvsadm -R`; its stderr on failure.
pub fn restore(lab: &Lab, rules: &str) -> Result<()> {
    let file = lab.dir.join("rules");
    std::fs::write(&file, rules)?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} -R < {}",
            bin("lvsadm").display(),
            lab.socket.display(),
            file.display()
        ))
        .output()
        .context("running lvsadm -R")?;
    if !out.status.success() {
        bail!(
            "lvsadm -R refused the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Every verdict counter of the datapath, as `lvsadm -L -n --json` lists
/// them.
pub fn verdicts(lab: &Lab) -> Result<Vec<(String, u64)>> {
    let json = lab.lvsadm(&["-L", "-n", "--json"])?;
    let snapshot: serde_json::Value = serde_json::from_str(&json).context("lvsadm --json")?;
    snapshot["verdicts"]
        .as_array()
        .context("no verdicts in lvsadm --json")?
        .iter()
        .map(|pair| Some((pair[0].as_str()?.to_string(), pair[1].as_u64()?)))
        .collect::<Option<Vec<_>>>()
        .context("malformed verdicts in lvsadm --json")
}

/// One verdict counter; 0 for a name the datapath does not have (yet).
pub fn verdict(lab: &Lab, name: &str) -> u64 {
    verdicts(lab)
        .unwrap_or_default()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, v)| v)
}

/// The non-zero verdict counters, `name=value` on one line.
pub fn nonzero_verdicts(lab: &Lab) -> String {
    match verdicts(lab) {
        Ok(v) => v
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect::<Vec<_>>()
            .join(" "),
        Err(e) => format!("(no verdicts: {e:#})"),
    }
}

/// What to show when a deployment test fails: the verdicts, the stats
/// and lvsd's log.
pub fn report(lab: &Lab) -> String {
    format!(
        "verdicts: {}\n{}lvsd log:\n{}",
        nonzero_verdicts(lab),
        lab.lvsadm(&["-L", "-n", "--stats"]).unwrap_or_default(),
        lab.lvsd_log()
    )
}

/// The `--stats` columns (Conns InPkts OutPkts InBytes OutBytes) of the
/// line starting with `prefix`.
pub fn stats_line(stats: &str, prefix: &str) -> Option<Vec<u64>> {
    let l = stats.lines().find(|l| l.starts_with(prefix))?;
    l[prefix.len()..]
        .split_whitespace()
        .map(|n| n.parse().ok())
        .collect()
}

/// Wait (bounded) until a TCP listener on `port` shows in `ns`.
pub fn wait_for_listener(ns: &Netns, port: u16) -> Result<()> {
    let sport = format!("sport = :{port}");
    wait_for(
        &format!("a listener on :{port} in {}", ns.name),
        Duration::from_secs(10),
        || {
            ns.exec(&["ss", "-Hltn", &sport])
                .is_ok_and(|o| !o.stdout.is_empty())
        },
    )
}
