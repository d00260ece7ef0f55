//! Section 3: TCP connections per second end to end. wrk in the client
//! namespace asks nginx on two real servers for a tiny page, one TCP
//! connection per request (`Connection: close`), through the director
//! namespace configured four ways in turn: lvsd's XDP NAT, plain kernel
//! routing, nftables DNAT and haproxy in TCP mode. One lab serves all four;
//! the director is put back to bare routing between them.

use std::{
    fs,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use super::{median, Plan, Throughput};
use crate::{wait_for, Lab, Netns, Proc, VIP};

const TAG: &str = "lvsbench-cps";
/// The director's nftables table for the DNAT path.
const NFT_TABLE: &str = "lvsbench";
/// Two servers: the machine has two cores, and the figure is the director
/// path's cost, not the server farm's capacity.
const REALS: usize = 2;
/// wrk's connections, all on one thread. On two cores 16 left a fifth of
/// the CPU idle (wrk waiting on round trips); 32 to 128 measured alike,
/// both cores busy (wrk's thread, with the softirq work its sends carry,
/// fills one), so more only lengthen queues.
const CONNECTIONS: usize = 64;
/// Not recorded: fills ARP caches, connection tables and page caches.
const WARM_UP: Duration = Duration::from_secs(1);
/// How long each server, proxy or the daemon gets to answer its first probe.
const READY: Duration = Duration::from_secs(10);

/// lvs first, then plain routing, nftables DNAT and haproxy.
pub fn run(plan: Plan) -> Result<Vec<Throughput>> {
    let mut lab = Lab::new(TAG, REALS).context("building the cps lab")?;
    tune_sysctls(&lab)?;
    start_nginx(&mut lab)?;
    // nftables last: its conntrack must not linger under the other paths.
    let lvs = measure_lvs(&mut lab, plan)?;
    let routed = measure_routing(&lab, plan)?;
    let haproxy = measure_haproxy(&lab, plan)?;
    let nft = measure_nft_dnat(&lab, plan)?;
    Ok(vec![lvs, routed, nft, haproxy])
}

/// What every path's note ends with.
fn load_note() -> String {
    format!(
        "wrk (1 thread, {CONNECTIONS} connections) opens a new TCP connection per request \
         (Connection: close) from the client namespace to nginx on {REALS} real servers, \
         all sharing the machine's cores"
    )
}

fn sysctl(ns: &Netns, settings: &[&str]) -> Result<()> {
    let mut argv = vec!["sysctl", "-qw"];
    argv.extend_from_slice(settings);
    ns.exec(&argv)
        .map(drop)
        .with_context(|| format!("sysctl in {}", ns.name))
}

/// Tens of thousands of connections a second would run out of ephemeral
/// ports within seconds with the default range and TIME_WAIT handling; the
/// director needs the same for haproxy's connections to the servers.
fn tune_sysctls(lab: &Lab) -> Result<()> {
    let connecting = [
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.ipv4.tcp_tw_reuse=1",
    ];
    sysctl(&lab.client, &connecting)?;
    sysctl(&lab.director, &connecting)?;
    for rs in &lab.reals {
        // The default since Linux 5.4; older kernels have 128.
        sysctl(&rs.ns, &["net.core.somaxconn=4096"])?;
    }
    Ok(())
}

/// One nginx process per real server, every file it writes in its own
/// directory under the lab's (nginx-light's defaults are shared paths in
/// /run and /var/lib/nginx).
fn start_nginx(lab: &mut Lab) -> Result<()> {
    for rs in &mut lab.reals {
        let dir = lab.dir.join(format!("nginx-{}", rs.name));
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let conf = dir.join("nginx.conf");
        fs::write(&conf, nginx_config(&dir))
            .with_context(|| format!("writing {}", conf.display()))?;
        let (conf, error_log) = (path_arg(&conf), path_arg(&dir.join("error.log")));
        // -e: nginx opens its error log before reading the config.
        let proc = rs.ns.spawn(
            &["nginx", "-e", &error_log, "-c", &conf],
            Some(&dir.join("stdout.log")),
        )?;
        rs.procs.push(proc);
    }
    for rs in &lab.reals {
        let target = SocketAddr::from((rs.addr, 80));
        wait_for(&format!("nginx on {}", rs.name), READY, || {
            answers(&rs.ns, target)
        })
        .with_context(|| nginx_log(&lab.dir, &rs.name))?;
    }
    Ok(())
}

fn nginx_config(dir: &Path) -> String {
    let dir = dir.display();
    // master_process off: one process serves, as one worker would.
    format!(
        "daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_timeout 0;
    server {{
        listen 80 backlog=4096;
        location / {{ return 200 \"ok\\n\"; }}
    }}
}}
"
    )
}

fn nginx_log(lab_dir: &Path, name: &str) -> String {
    let log = lab_dir.join(format!("nginx-{name}")).join("error.log");
    format!(
        "nginx's error log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    )
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// One HTTP/1.0 request from `ns` to `target` gets a 200.
fn answers(ns: &Netns, target: SocketAddr) -> bool {
    let exchange = || -> Result<bool> {
        let mut stream = ns.connect(target, Duration::from_secs(1))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply.starts_with("HTTP/1.1 200"))
    };
    exchange().unwrap_or(false)
}

/// Wait for the VIP to answer through the path just set up.
fn wait_for_vip(lab: &Lab, path: &str) -> Result<()> {
    let target = SocketAddr::from((VIP, 80));
    wait_for(&format!("{VIP}:80 through {path}"), READY, || {
        answers(&lab.client, target)
    })
}

fn measure_lvs(lab: &mut Lab, plan: Plan) -> Result<Throughput> {
    let config = lab.dir.join("lvs.toml");
    fs::write(&config, lvs_config(&real_addrs(lab)))
        .with_context(|| format!("writing {}", config.display()))?;
    lab.start_lvsd(Some(&config))?;
    wait_for_vip(lab, "lvs").with_context(|| format!("lvsd's log:\n{}", lab.lvsd_log()))?;
    let note = format!(
        "lvsd's XDP NAT (rr) in the director, lvsd's own upkeep included; {}",
        load_note()
    );
    let figure = measure(lab, plan, "lvs (XDP NAT)", note)?;
    stop_lvsd(lab)?;
    Ok(figure)
}

fn lvs_config(reals: &[Ipv4Addr]) -> String {
    let mut toml =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"{VIP}:80\"\nscheduler = \"rr\"\n");
    for addr in reals {
        toml += &format!("\n[[service.real]]\naddress = \"{addr}:80\"\nmethod = \"nat\"\n");
    }
    toml
}

/// SIGTERM, a clean exit, and no XDP program left on the director's links
/// for the paths measured after it.
fn stop_lvsd(lab: &mut Lab) -> Result<()> {
    let status = lab.lvsd.take().and_then(|mut lvsd| lvsd.stop());
    if !status.is_some_and(|s| s.success()) {
        bail!("lvsd exited with {status:?}:\n{}", lab.lvsd_log());
    }
    let links = lab.director.exec(&["ip", "-o", "link", "show"])?;
    let links = String::from_utf8_lossy(&links.stdout);
    if let Some(link) = links.lines().find(|l| l.contains(" xdp")) {
        bail!("lvsd left XDP attached: {link}");
    }
    Ok(())
}

/// The kernel routes the VIP in the director as a multipath route over
/// both real servers (hashing the ports, so each connection keeps its
/// server), which answer for the VIP on `lo`: the same address and the same
/// load split as the other paths, with nothing but forwarding in between.
fn measure_routing(lab: &Lab, plan: Plan) -> Result<Throughput> {
    let vip = format!("{VIP}/32");
    for rs in &lab.reals {
        rs.ns.exec(&["ip", "addr", "add", &vip, "dev", "lo"])?;
    }
    sysctl(&lab.director, &["net.ipv4.fib_multipath_hash_policy=1"])?;
    let mut route = vec!["ip", "route", "add", vip.as_str()];
    let gateways: Vec<String> = real_addrs(lab).iter().map(|a| a.to_string()).collect();
    for gw in &gateways {
        route.extend(["nexthop", "via", gw.as_str()]);
    }
    lab.director.exec(&route)?;
    wait_for_vip(lab, "plain routing")?;
    let note = format!(
        "Kernel forwarding in the director (a multipath route to the VIP on both real \
         servers' lo, hashed on the ports); {}",
        load_note()
    );
    let figure = measure(lab, plan, "plain routing", note)?;
    lab.director.exec(&["ip", "route", "del", &vip])?;
    for rs in &lab.reals {
        rs.ns.exec(&["ip", "addr", "del", &vip, "dev", "lo"])?;
    }
    Ok(figure)
}

fn measure_nft_dnat(lab: &Lab, plan: Plan) -> Result<Throughput> {
    let rules = lab.dir.join("dnat.nft");
    fs::write(&rules, nft_ruleset(&real_addrs(lab)))
        .with_context(|| format!("writing {}", rules.display()))?;
    lab.director.exec(&["nft", "-f", &path_arg(&rules)])?;
    wait_for_vip(lab, "nftables DNAT")?;
    let note = format!(
        "nftables DNAT in the director (numgen round robin, with conntrack); {}",
        load_note()
    );
    let figure = measure(lab, plan, "nftables DNAT", note)?;
    lab.director
        .exec(&["nft", "delete", "table", "ip", NFT_TABLE])?;
    Ok(figure)
}

/// The real servers reply through the director, so DNAT alone suffices.
fn nft_ruleset(reals: &[Ipv4Addr]) -> String {
    let map: Vec<String> = reals
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("{i} : {addr}"))
        .collect();
    format!(
        "table ip {NFT_TABLE} {{
    chain prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr {VIP} tcp dport 80 dnat to numgen inc mod {} map {{ {} }}
    }}
}}
",
        reals.len(),
        map.join(", ")
    )
}

fn measure_haproxy(lab: &Lab, plan: Plan) -> Result<Throughput> {
    let vip = format!("{VIP}/32");
    lab.director
        .exec(&["ip", "addr", "add", &vip, "dev", "lo"])?;
    let config = lab.dir.join("haproxy.cfg");
    fs::write(&config, haproxy_config(&real_addrs(lab)))
        .with_context(|| format!("writing {}", config.display()))?;
    let log = lab.dir.join("haproxy.log");
    // -db: stay in the foreground, so the guard can stop it.
    let mut haproxy = lab
        .director
        .spawn(&["haproxy", "-db", "-f", &path_arg(&config)], Some(&log))?;
    // Gone early (a refused config) fails at once rather than at READY.
    let target = SocketAddr::from((VIP, 80));
    let ready = wait_for("haproxy", READY, || {
        !haproxy.is_running() || answers(&lab.client, target)
    });
    if ready.is_err() || !haproxy.is_running() {
        bail!(
            "haproxy did not start:\n{}",
            fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let note = format!(
        "haproxy 1 thread, TCP mode, round robin, in the director (two TCP connections \
         per request); {}",
        load_note()
    );
    let figure = measure(lab, plan, "haproxy (TCP mode)", note)?;
    stop(&mut haproxy)?;
    lab.director
        .exec(&["ip", "addr", "del", &vip, "dev", "lo"])?;
    Ok(figure)
}

/// One thread, like the single nginx process on each server: the two
/// cores are already shared by wrk, both servers and the forwarding.
/// maxconn is far above wrk's connections and low enough for common file
/// limits: haproxy wants two descriptors a connection and refuses to start
/// without them.
fn haproxy_config(reals: &[Ipv4Addr]) -> String {
    let servers: String = reals
        .iter()
        .enumerate()
        .map(|(i, addr)| format!("    server rs{} {addr}:80\n", i + 1))
        .collect();
    format!(
        "global
    nbthread 1
    maxconn 1000
defaults
    mode tcp
    maxconn 1000
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend vip
    bind {VIP}:80 backlog 4096
    default_backend reals
backend reals
    balance roundrobin
{servers}"
    )
}

fn stop(proc: &mut Proc) -> Result<()> {
    match proc.stop() {
        Some(_) => Ok(()),
        None => bail!("{} had already gone", proc.name),
    }
}

/// A warm-up, then `plan.trials()` recorded wrk runs against the VIP.
fn measure(lab: &Lab, plan: Plan, path: &str, note: String) -> Result<Throughput> {
    wrk(&lab.client, WARM_UP).with_context(|| format!("warming up {path}"))?;
    let mut trials = Vec::new();
    let mut problems = Vec::new();
    for trial in 1..=plan.trials() {
        let run = wrk(&lab.client, plan.trial()).with_context(|| format!("measuring {path}"))?;
        if let Some(problem) = run.problems() {
            problems.push(format!("trial {trial}: {problem}"));
        }
        trials.push(run.per_second);
    }
    let note = if problems.is_empty() {
        format!("{note}.")
    } else {
        format!("{note}; wrk reported {}.", problems.join("; "))
    };
    Ok(Throughput {
        path: path.to_string(),
        per_second: median(&trials),
        trials,
        note,
    })
}

/// One wrk run from `client` to the VIP; refused when most requests failed.
fn wrk(client: &Netns, duration: Duration) -> Result<WrkRun> {
    let (connections, seconds) = (
        format!("-c{CONNECTIONS}"),
        format!("-d{}s", duration.as_secs()),
    );
    let url = format!("http://{VIP}/");
    let out = client.exec(&[
        "wrk",
        "-t1",
        &connections,
        &seconds,
        "--timeout",
        "2s",
        "-H",
        "Connection: close",
        &url,
    ])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let run = WrkRun::parse(&text).with_context(|| format!("wrk's output:\n{text}"))?;
    if run.requests == 0 || run.failures() * 2 > run.requests {
        bail!("most requests failed:\n{text}");
    }
    Ok(run)
}

/// What wrk's summary says.
#[derive(Debug, PartialEq)]
struct WrkRun {
    per_second: f64,
    requests: u64,
    /// "connect 0, read 3, write 0, timeout 0", when wrk prints the line.
    socket_errors: Option<String>,
    socket_error_count: u64,
    non_2xx: u64,
}

impl WrkRun {
    fn parse(text: &str) -> Result<Self> {
        let mut run = WrkRun {
            per_second: f64::NAN,
            requests: 0,
            socket_errors: None,
            socket_error_count: 0,
            non_2xx: 0,
        };
        for line in text.lines().map(str::trim) {
            if let Some(rate) = line.strip_prefix("Requests/sec:") {
                run.per_second = rate.trim().parse().context("Requests/sec")?;
            } else if let Some((count, _)) = line.split_once(" requests in ") {
                run.requests = count.parse().context("the request count")?;
            } else if let Some(errors) = line.strip_prefix("Socket errors:") {
                run.socket_error_count = numbers(errors)?.iter().sum();
                run.socket_errors = Some(errors.trim().to_string());
            } else if let Some(count) = line.strip_prefix("Non-2xx or 3xx responses:") {
                run.non_2xx = count.trim().parse().context("the non-2xx count")?;
            }
        }
        if run.per_second.is_nan() {
            bail!("no Requests/sec line");
        }
        Ok(run)
    }

    fn failures(&self) -> u64 {
        self.socket_error_count + self.non_2xx
    }

    /// The errors in a few words, if there were any.
    fn problems(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(errors) = self
            .socket_errors
            .as_ref()
            .filter(|_| self.socket_error_count > 0)
        {
            parts.push(format!("socket errors ({errors})"));
        }
        if self.non_2xx > 0 {
            parts.push(format!("{} non-2xx responses", self.non_2xx));
        }
        (!parts.is_empty())
            .then(|| format!("{} of {} requests", parts.join(" and "), self.requests))
    }
}

fn numbers(text: &str) -> Result<Vec<u64>> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().with_context(|| format!("`{n}` in `{text}`")))
        .collect()
}

fn real_addrs(lab: &Lab) -> Vec<Ipv4Addr> {
    lab.reals
        .iter()
        .filter_map(|rs| match rs.addr {
            std::net::IpAddr::V4(addr) => Some(addr),
            std::net::IpAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLEAN: &str = "Running 3s test @ http://198.18.0.10/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.98ms    1.02ms  21.90ms   88.12%
    Req/Sec    16.01k   512.20    16.80k    73.33%
  47811 requests in 3.00s, 6.70MB read
Requests/sec:  15931.41
Transfer/sec:      2.23MB
";

    #[test]
    fn a_clean_run_has_no_problems() {
        let run = WrkRun::parse(CLEAN).unwrap();
        assert_eq!(run.per_second, 15931.41);
        assert_eq!(run.requests, 47811);
        assert_eq!(run.problems(), None);
    }

    #[test]
    fn errors_are_counted_and_named() {
        let text = CLEAN.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 2\n  \
             Non-2xx or 3xx responses: 5\nRequests/sec",
        );
        let run = WrkRun::parse(&text).unwrap();
        assert_eq!(run.failures(), 10);
        assert_eq!(
            run.problems().unwrap(),
            "socket errors (connect 0, read 3, write 0, timeout 2) and 5 non-2xx responses \
             of 47811 requests"
        );
    }

    #[test]
    fn output_without_a_rate_is_refused() {
        assert!(WrkRun::parse("unable to connect to 198.18.0.10:80").is_err());
    }
}
