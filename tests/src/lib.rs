//! The lab: network namespaces wired with veth pairs, real programs in
//! them, and guards that remove every namespace and process on drop — also
//! when a test panics. Shared by the end-to-end tests and `cargo xtask demo`.
//!
//! Addresses are all inside 198.18.0.0/15 (the benchmarking range) and only
//! ever live inside namespaces this lab creates.

use std::{
    fs::File,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{anyhow, bail, Context, Result};

pub mod bench;
pub mod bulk;
pub mod demo;
pub mod deploy;
pub mod fleet;
pub mod pair;
pub mod topology;
pub use pair::Pair;
pub use topology::{Lab, Method, RealServer, VIP, VIP6};

/// One HTTP/1.0 GET on `stream` (connected to `target`), each step
/// bounded by `timeout`: the name the lab's HTTP server answered with.
pub fn http_request(
    mut stream: TcpStream,
    target: SocketAddr,
    timeout: Duration,
) -> Result<String> {
    use std::io::Read;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET / HTTP/1.0\r\nHost: {target}\r\n\r\n").as_bytes())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .context("reading the response")?;
    if !response.starts_with("HTTP/1.0 200") {
        bail!("unexpected response `{response}`");
    }
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .context("response without a body")?;
    let name = body.split_whitespace().next().context("empty body")?;
    Ok(name.to_string())
}

/// Run a command to completion; fail with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// Run a command to completion inside the namespace called `ns`.
pub fn exec_in(ns: &str, args: &[&str]) -> Result<Output> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// A named network namespace, deleted (with everything in it) on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(name: String) -> Result<Self> {
        // A namespace left by a killed run with the same name goes first.
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        // IPv4 only: keeps IPv6 neighbour discovery out of the counters.
        ns.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        ])?;
        Ok(ns)
    }

    /// Give the namespace IPv6 back (`new` takes it away), for its
    /// loopback and the links made after this.
    pub fn enable_ipv6(&self) -> Result<()> {
        self.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.default.disable_ipv6=0",
            "net.ipv6.conf.lo.disable_ipv6=0",
        ])
        .map(drop)
    }

    /// Run a command inside the namespace to completion.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        exec_in(&self.name, args)
    }

    /// Start a long-running command inside the namespace.
    pub fn spawn(&self, args: &[&str], log: Option<&Path>) -> Result<Proc> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .args(args)
            .stdin(Stdio::null());
        match log {
            Some(path) => {
                let f =
                    File::create(path).with_context(|| format!("creating {}", path.display()))?;
                cmd.stdout(f.try_clone()?).stderr(f);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {} in {}", args.join(" "), self.name))?;
        Ok(Proc {
            child: Some(child),
            name: args.join(" "),
        })
    }

    /// A TCP connection made from inside the namespace, with `timeout` on
    /// the connect and on every read and write. `setns` moves only the
    /// calling thread, so a short-lived thread enters the namespace; the
    /// socket stays in the namespace it was created in.
    pub fn connect(&self, target: SocketAddr, timeout: Duration) -> Result<TcpStream> {
        let stream = self.run(|| {
            TcpStream::connect_timeout(&target, timeout)
                .with_context(|| format!("connect {target} from {}", self.name))
        })?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(stream)
    }
}

impl Netns {
    /// Run `f` inside the namespace, on a short-lived thread: `setns`
    /// moves only the calling thread. What `f` creates (sockets, XDP
    /// attachments) stays in the namespace.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
        let path = Path::new("/run/netns").join(&self.name);
        let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {}", self.name))?;
                f()
            })
            .join()
            .map_err(|_| anyhow!("a thread in {} panicked", self.name))?
        })
    }

    /// Run `f` on a new thread inside the namespace, in the background.
    /// What it creates (sockets) stays in the namespace.
    pub fn thread<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<thread::JoinHandle<Result<T>>> {
        let path = Path::new("/run/netns").join(&self.name);
        let ns = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let name = self.name.clone();
        thread::Builder::new()
            .name(format!("in-{name}"))
            .spawn(move || {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering {name}"))?;
                Ok(f())
            })
            .context("spawning a thread")
    }

    /// `(MAC address, received packets)` of interface `dev`.
    pub fn link_stats(&self, dev: &str) -> Result<([u8; 6], u64)> {
        let out = self.exec(&["ip", "-j", "-s", "link", "show", "dev", dev])?;
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("parsing `ip -j -s link show dev {dev}` in {}", self.name))?;
        let link = &json[0];
        let mac = link["address"]
            .as_str()
            .and_then(|a| {
                let bytes: Vec<u8> = a
                    .split(':')
                    .map(|b| u8::from_str_radix(b, 16).ok())
                    .collect::<Option<_>>()?;
                bytes.try_into().ok()
            })
            .with_context(|| format!("no MAC address for {dev} in {}", self.name))?;
        let packets = link["stats64"]["rx"]["packets"]
            .as_u64()
            .with_context(|| format!("no receive counter for {dev} in {}", self.name))?;
        Ok((mac, packets))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill whatever still runs inside, then remove the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// An open connection to a `lvs-lab hold-server`, closed on drop.
pub struct Held {
    /// The name the accepting server greeted with.
    pub server: String,
    /// When it was connected.
    pub opened: Instant,
    stream: BufReader<TcpStream>,
}

impl Held {
    /// The client's port, as the director's connection table keys it.
    pub fn local_port(&self) -> Result<u16> {
        Ok(self.stream.get_ref().local_addr()?.port())
    }

    /// Connect from `ns` and read the greeting.
    pub fn open(ns: &Netns, target: SocketAddr, timeout: Duration) -> Result<Self> {
        let mut held = Held {
            server: String::new(),
            opened: Instant::now(),
            stream: BufReader::new(ns.connect(target, timeout)?),
        };
        held.server = held.line().context("reading the greeting")?;
        Ok(held)
    }

    /// Send `line`; the server's echo of it.
    pub fn echo(&mut self, line: &str) -> Result<String> {
        // One write: `writeln!` writes the newline separately, and Nagle
        // then holds it for the server's delayed ACK (40 ms an echo).
        self.stream
            .get_mut()
            .write_all(format!("{line}\n").as_bytes())?;
        self.line().context("reading the echo")
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stream.read_line(&mut line)? == 0 {
            bail!("connection closed");
        }
        Ok(line.trim_end().to_string())
    }
}

/// A background process, stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    child: Option<Child>,
    pub name: String,
}

impl Proc {
    /// Ask it to stop and wait (bounded) for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait().ok()
    }

    /// SIGKILL, as a crash would: no cleanup runs. Waits (bounded) for
    /// the exit.
    pub fn kill9(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// Its process id, while it is ours to stop.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A lab's directory under the temporary directory, emptied of what a
/// killed run left (its bpffs unmounted), with an empty `bpffs` in it for
/// the lab to mount: `ip netns exec` hides the host's /sys/fs/bpf.
pub fn fresh_lab_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(name);
    let bpffs = dir.join("bpffs");
    let _ = run("umount", &[&bpffs.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&bpffs)?;
    Ok(dir)
}

/// `lvsadm ARGS` against the lvsd listening on `socket`: its stdout, or
/// its stderr as the error.
pub fn lvsadm_at(socket: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(bin("lvsadm"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("spawning lvsadm")?;
    if !out.status.success() {
        bail!(
            "`lvsadm {}` against {} failed ({}): {}",
            args.join(" "),
            socket.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Remove the owner records (`/run/lvs/director-<netns>-<pid>.pid`) and
/// handover records (`handover-director-<netns>-<pid>.json`) that lvsds
/// killed or stopped in the namespaces `netns_ids` left, and the files in
/// `also` there (e.g. a real server's preparation record).
pub fn remove_records(netns_ids: &[u64], also: &[String]) {
    let ours: Vec<String> = netns_ids
        .iter()
        .flat_map(|id| {
            [
                format!("director-{id}-"),
                format!("handover-director-{id}-"),
            ]
        })
        .collect();
    let Ok(entries) = std::fs::read_dir("/run/lvs") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let owner = (name.ends_with(".pid") || name.ends_with(".json"))
            && ours.iter().any(|p| name.starts_with(p.as_str()));
        if owner || also.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `[("rs1", 2), ...]` as the map of names to counts the labs' spreads are.
pub fn by_name(pairs: &[(&str, usize)]) -> std::collections::BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

/// Poll `check` every 50 ms until it holds or `limit` passes.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!("timed out after {limit:?} waiting for {what}")
}

/// Where the lab finds `lvsd`, `lvsadm` and `lvs-lab`: `LVS_BIN_DIR`, or
/// the directory of the running executable's target profile.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("LVS_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
