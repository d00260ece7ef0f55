//! Every change to the host's network configuration lvs makes: addresses,
//! managed neighbours, links, modules and sysctls. They go through iproute2
//! and /proc/sys, so each error quotes the exact command or file.

use std::{
    net::IpAddr,
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
    #[error("{call} for a gratuitous ARP on `{dev}` failed: {source}")]
    Packet {
        call: &'static str,
        dev: String,
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

/// Where the kernel sends packets for `addr`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The gateway, or the address itself when it is on-link.
    pub next_hop: IpAddr,
    pub dev: String,
    /// The source address the route selects.
    pub source: Option<IpAddr>,
}

/// `ip`'s flag for `addr`'s family.
fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv6() {
        "-6"
    } else {
        "-4"
    }
}

/// Where the kernel sends packets for `addr` (`ip route get`).
pub fn route_to(addr: IpAddr) -> Result<Route, NetconfError> {
    let target = addr.to_string();
    let args = ["-j", family(addr), "route", "get", target.as_str()];
    let out = ip(&args)?;
    let bad = |detail: &str| NetconfError::Output {
        command: format!("ip {}", args.join(" ")),
        detail: detail.to_string(),
    };
    let routes: serde_json::Value = serde_json::from_str(&out).map_err(|e| bad(&e.to_string()))?;
    let route = routes.get(0).ok_or_else(|| bad("no route"))?;
    let dev = route["dev"].as_str().ok_or_else(|| bad("no `dev`"))?;
    let next_hop = match route["gateway"].as_str() {
        Some(gw) => gw.parse().map_err(|_| bad("bad `gateway`"))?,
        None => addr,
    };
    let source = route["prefsrc"].as_str().and_then(|s| s.parse().ok());
    Ok(Route {
        next_hop,
        dev: dev.to_string(),
        source,
    })
}

/// Ask the kernel to resolve `addr` now and keep it resolved (a "managed"
/// neighbour, Linux 5.16+), so the XDP FIB lookup finds its MAC.
pub fn manage_neighbour(addr: IpAddr, dev: &str) -> Result<(), NetconfError> {
    let addr = addr.to_string();
    ip(&["neigh", "replace", &addr, "dev", dev, "managed"]).map(drop)
}

pub fn forget_neighbour(addr: IpAddr, dev: &str) -> Result<(), NetconfError> {
    let addr = addr.to_string();
    ip(&["neigh", "del", &addr, "dev", dev]).map(drop)
}

pub fn has_address(dev: &str, addr: impl Into<IpAddr>) -> Result<bool, NetconfError> {
    let addr = addr.into();
    let family = if addr.is_ipv6() { "-6" } else { "-4" };
    let out = ip(&["-j", family, "addr", "show", "dev", dev])?;
    let links: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| NetconfError::Output {
            command: format!("ip -j {family} addr show dev {dev}"),
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

/// Put `addr/prefix` on `dev` (a VIP on a real server's `lo`, or a
/// floating address); one already there is kept. An IPv6 address skips
/// duplicate address detection: it is usable at once.
pub fn add_address(dev: &str, addr: impl Into<IpAddr>, prefix: u8) -> Result<(), NetconfError> {
    let addr = addr.into();
    let cidr = format!("{addr}/{prefix}");
    let mut args = vec!["addr", "replace", &cidr, "dev", dev];
    if addr.is_ipv6() {
        args.push("nodad");
    }
    ip(&args).map(drop)
}

pub fn remove_address(dev: &str, addr: impl Into<IpAddr>, prefix: u8) -> Result<(), NetconfError> {
    let addr = addr.into();
    let cidr = format!("{addr}/{prefix}");
    ip(&["addr", "del", &cidr, "dev", dev]).map(drop)
}

/// Announce each `(dev, addr)` at `dev`'s MAC, so neighbours (clients,
/// routers, real servers) move their entries to this router: a broadcast
/// gratuitous ARP request for IPv4, an unsolicited Neighbor Advertisement
/// to all nodes for IPv6 (its Router flag set when `dev` forwards IPv6).
/// All go out from one socket, back to back: a NAT client and its real
/// servers must switch together, or a reply slips to the old router in
/// between.
pub fn announce_addresses(announcements: &[(&str, IpAddr)]) -> Result<(), NetconfError> {
    let failed = |call, dev: &str, source| NetconfError::Packet {
        call,
        dev: dev.to_string(),
        source,
    };
    let mut frames = Vec::with_capacity(announcements.len());
    for &(dev, addr) in announcements {
        let ifindex = nix::net::if_::if_nametoindex(dev)
            .map_err(|e| failed("if_nametoindex", dev, e.into()))?;
        let mac = mac_of(dev)?;
        let frame = match addr {
            IpAddr::V4(addr) => lvs_ha::arp::gratuitous(mac, addr, false).to_vec(),
            IpAddr::V6(addr) => {
                // Unreadable: announced as a host, rather than not at all.
                let router = read_sysctl(&ipv6_conf(dev, "forwarding")).is_ok_and(|v| v == "1");
                lvs_ha::ndp::unsolicited(mac, addr, router).to_vec()
            }
        };
        frames.push((dev, ifindex, frame));
    }
    // Protocol 0: this socket only sends, so it queues nothing it receives.
    // SAFETY: plain socket(2); the descriptor is owned right below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
    if fd < 0 {
        let dev = announcements.first().map_or("", |a| a.0);
        return Err(failed(
            "socket(AF_PACKET)",
            dev,
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: fd was just returned by socket(2) and is not used elsewhere.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    for (dev, ifindex, frame) in frames {
        // The frame's own ethertype and destination MAC.
        // SAFETY: sockaddr_ll is plain old data; zero is a valid start.
        let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = u16::from_ne_bytes([frame[12], frame[13]]);
        to.sll_ifindex = ifindex as i32;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: the frame and the address outlive the call; lengths match.
        let sent = unsafe {
            libc::sendto(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(to).cast(),
                size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if sent < 0 {
            return Err(failed("sendto", dev, std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// `dev`'s MAC address, from sysfs.
fn mac_of(dev: &str) -> Result<[u8; 6], NetconfError> {
    let path = Path::new("/sys/class/net").join(dev).join("address");
    let text = read_sysctl(&path)?;
    let bytes: Option<Vec<u8>> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect();
    bytes
        .and_then(|b| <[u8; 6]>::try_from(b).ok())
        .ok_or_else(|| NetconfError::Output {
            command: format!("cat {}", path.display()),
            detail: format!("`{text}` is not a MAC address"),
        })
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
pub fn static_neighbour(addr: IpAddr, dev: &str) -> Result<bool, NetconfError> {
    let target = addr.to_string();
    let args = [
        "-j",
        family(addr),
        "neigh",
        "show",
        target.as_str(),
        "dev",
        dev,
    ];
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

pub fn ipv6_conf(dev: &str, key: &str) -> PathBuf {
    Path::new("/proc/sys/net/ipv6/conf").join(dev).join(key)
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

/// `getnameinfo(NI_NAMEREQD)`: the name the resolver has for `addr`.
pub fn reverse_name(addr: IpAddr) -> Option<String> {
    // SAFETY: all-zero is a valid sockaddr_storage; the family's fields
    // are filled below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        IpAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(a).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for
            // sockaddr_in.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin) };
            size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: 0,
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: a.octets(),
                },
                sin6_scope_id: 0,
            };
            // SAFETY: as above, for sockaddr_in6.
            unsafe { std::ptr::write(std::ptr::addr_of_mut!(storage).cast(), sin6) };
            size_of::<libc::sockaddr_in6>()
        }
    };
    let mut host = [0 as libc::c_char; 1025];
    // SAFETY: `storage` holds a valid socket address of the length given;
    // `host` is a writable buffer of the length given, NUL-terminated by
    // getnameinfo on success; no service buffer is asked for.
    let rc = unsafe {
        libc::getnameinfo(
            std::ptr::addr_of!(storage).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            std::ptr::null_mut(),
            0,
            libc::NI_NAMEREQD,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: on success `host` holds a NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(host.as_ptr()) };
    name.to_str().ok().map(str::to_string)
}
