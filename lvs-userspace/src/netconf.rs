//! Every change to the host's network configuration lvs makes: addresses,
//! managed neighbours, links, modules and sysctls. They go through iproute2
//! and /proc/sys, so each error quotes the exact command or file.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
};

#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    #[error("`{command}` failed: {detail}")]
    Command { command: String, detail: String },
    #[error("unexpected output from `{command}`: {detail}")]
    Output { command: String, detail: String },
    #[error("{op} {}: {source}", .path.display())]
    File {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn run(program: &str, args: &[&str]) -> Result<String, NetconfError> {
    let command = format!("{program} {}", args.join(" "));
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| NetconfError::Command {
            command: command.clone(),
            detail: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(NetconfError::Command {
            command,
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String, NetconfError> {
    run("ip", args)
}

/// Where the kernel sends packets for `addr`: the next hop (the address
/// itself when it is on-link) and the interface.
pub fn next_hop(addr: Ipv4Addr) -> Result<(Ipv4Addr, String), NetconfError> {
    let target = addr.to_string();
    let args = ["-j", "-4", "route", "get", target.as_str()];
    let out = ip(&args)?;
    let bad = |detail: &str| NetconfError::Output {
        command: format!("ip {}", args.join(" ")),
        detail: detail.to_string(),
    };
    let routes: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(&e.to_string()))?;
    let route = routes.get(0).ok_or_else(|| bad("no route"))?;
    let dev = route["dev"].as_str().ok_or_else(|| bad("no `dev`"))?;
    let hop = match route["gateway"].as_str() {
        Some(gw) => gw.parse().map_err(|_| bad("bad `gateway`"))?,
        None => addr,
    };
    Ok((hop, dev.to_string()))
}

/// Ask the kernel to resolve `addr` now and keep it resolved (a "managed"
/// neighbour, Linux 5.16+), so the XDP FIB lookup finds its MAC.
pub fn manage_neighbour(addr: Ipv4Addr, dev: &str) -> Result<(), NetconfError> {
    let addr = addr.to_string();
    ip(&["neigh", "replace", &addr, "dev", dev, "managed"]).map(drop)
}

pub fn forget_neighbour(addr: Ipv4Addr, dev: &str) -> Result<(), NetconfError> {
    let addr = addr.to_string();
    ip(&["neigh", "del", &addr, "dev", dev]).map(drop)
}

pub fn has_address(dev: &str, addr: Ipv4Addr) -> Result<bool, NetconfError> {
    let out = ip(&["-j", "-4", "addr", "show", "dev", dev])?;
    let links: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| NetconfError::Output {
            command: format!("ip -j -4 addr show dev {dev}"),
            detail: e.to_string(),
        })?;
    let wanted = addr.to_string();
    Ok(links
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|link| link["addr_info"].as_array().into_iter().flatten())
        .any(|info| info["local"].as_str() == Some(wanted.as_str())))
}

pub fn add_address(dev: &str, addr: Ipv4Addr) -> Result<(), NetconfError> {
    let cidr = format!("{addr}/32");
    ip(&["addr", "add", &cidr, "dev", dev]).map(drop)
}

pub fn remove_address(dev: &str, addr: Ipv4Addr) -> Result<(), NetconfError> {
    let cidr = format!("{addr}/32");
    ip(&["addr", "del", &cidr, "dev", dev]).map(drop)
}

pub fn link_up(dev: &str) -> Result<(), NetconfError> {
    ip(&["link", "set", dev, "up"]).map(drop)
}

pub fn link_is_up(dev: &str) -> Result<bool, NetconfError> {
    let path = Path::new("/sys/class/net").join(dev).join("flags");
    let flags = read_sysctl(&path)?;
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).map_err(|e| {
        NetconfError::Output {
            command: format!("cat {}", path.display()),
            detail: e.to_string(),
        }
    })?;
    const IFF_UP: u32 = 0x1;
    Ok(flags & IFF_UP != 0)
}

/// Whether the kernel holds a static (permanent or noarp) entry for `addr`:
/// one an operator set, which lvsd must neither replace nor delete.
pub fn static_neighbour(addr: Ipv4Addr, dev: &str) -> Result<bool, NetconfError> {
    let target = addr.to_string();
    let args = ["-j", "-4", "neigh", "show", target.as_str(), "dev", dev];
    let out = ip(&args)?;
    let entries: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| NetconfError::Output {
            command: format!("ip {}", args.join(" ")),
            detail: e.to_string(),
        })?;
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["state"].as_array().into_iter().flatten())
        .any(|s| matches!(s.as_str(), Some("PERMANENT" | "NOARP"))))
}

pub fn link_exists(dev: &str) -> bool {
    Path::new("/sys/class/net").join(dev).exists()
}

pub fn load_module(name: &str) -> Result<(), NetconfError> {
    run("modprobe", &[name]).map(drop)
}

/// `/proc/sys/net/ipv4/conf/<dev>/<key>`.
pub fn ipv4_conf(dev: &str, key: &str) -> PathBuf {
    Path::new("/proc/sys/net/ipv4/conf").join(dev).join(key)
}

pub fn read_sysctl(path: &Path) -> Result<String, NetconfError> {
    std::fs::read_to_string(path)
        .map(|v| v.trim().to_string())
        .map_err(|source| NetconfError::File {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })
}

pub fn write_sysctl(path: &Path, value: &str) -> Result<(), NetconfError> {
    std::fs::write(path, value).map_err(|source| NetconfError::File {
        op: "writing",
        path: path.to_path_buf(),
        source,
    })
}

/// Identifies this network namespace, so per-namespace state (pins, undo
/// records) of several real servers on one host never collide.
pub fn netns_id() -> Result<u64, NetconfError> {
    use std::os::unix::fs::MetadataExt;
    let path = Path::new("/proc/self/ns/net");
    std::fs::metadata(path)
        .map(|m| m.ino())
        .map_err(|source| NetconfError::File {
            op: "reading",
            path: path.to_path_buf(),
            source,
        })
}

pub fn link_down(dev: &str) -> Result<(), NetconfError> {
    ip(&["link", "set", dev, "down"]).map(drop)
}
