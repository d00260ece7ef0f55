//! The standard lab: a client, one director and N real servers, each real
//! server on its own link to the director (so no bridge is needed and every
//! director interface carries the XDP program).
//!
//! ```text
//!  client 198.18.1.2 ── cli0 [director] srv1 ── 198.18.11.2 real 1
//!                         198.18.1.1   srv2 ── 198.18.12.2 real 2
//!                                      srvN ── 198.18.1N.2 real N
//!  VIP 198.18.0.10 is routed by the client to the director.
//! ```

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context, Result};

use crate::{bin, exec_in, wait_for, Netns, Proc};

pub const VIP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);

pub struct RealServer {
    pub ns: Netns,
    pub addr: Ipv4Addr,
    /// The name its servers answer with.
    pub name: String,
    pub procs: Vec<Proc>,
}

pub struct Lab {
    // Field order is drop order: processes, then namespaces.
    pub lvsd: Option<Proc>,
    pub reals: Vec<RealServer>,
    pub client: Netns,
    pub director: Netns,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // lvsd first (it detaches and removes its socket), then the files;
        // the fields then drop the servers and the namespaces.
        if let Some(mut lvsd) = self.lvsd.take() {
            lvsd.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn director_ifaces(n: usize) -> Vec<String> {
    std::iter::once("cli0".to_string())
        .chain((1..=n).map(|i| format!("srv{i}")))
        .collect()
}

impl Lab {
    /// Build the namespaces and links. `tag` keeps parallel labs apart.
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
            socket: dir.join("lvsd.sock"),
            dir,
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
                addr: Ipv4Addr::new(198, 18, 10 + i as u8, 2),
                name: format!("rs{i}"),
                procs: Vec::new(),
            });
        }
        lab.director
            .exec(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
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
        exec_in(peer_ns, &["ip", "route", "add", "default", "via", gateway])?;
        // veth drops XDP-redirected frames unless the receiving peer runs XDP
        // or has GRO on; and TX checksum offload would leave partial sums.
        exec_in(
            peer_ns,
            &["ethtool", "-K", "eth0", "tx", "off", "gro", "on"],
        )
        .map(|_| ())
    }

    /// Start `lvsd` on every director interface, optionally with a config.
    pub fn start_lvsd(&mut self, config: Option<&Path>) -> Result<()> {
        let lvsd = bin("lvsd");
        let mut args: Vec<String> = vec![lvsd.display().to_string()];
        for iface in director_ifaces(self.reals.len()) {
            args.extend(["-i".into(), iface]);
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
        let ready = wait_for("lvsd's control socket", Duration::from_secs(20), || {
            socket.exists() && self.lvsadm(&["-L", "-n"]).is_ok()
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
            let tcp = format!("0.0.0.0:{tcp_port}");
            let udp = format!("0.0.0.0:{udp_port}");
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
            let probe = format!("{}:{tcp_port}", rs.addr);
            wait_for(
                &format!("{}'s HTTP server", rs.name),
                Duration::from_secs(10),
                || {
                    rs.ns
                        .exec(&[&lab_bin, "http-get", &probe, "--count", "1"])
                        .is_ok()
                },
            )?;
        }
        Ok(())
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
