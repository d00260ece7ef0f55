//! An address as ipvsadm writes it: `a.b.c.d[:port]`, `[v6][:port]`, or a
//! bare IPv6 address (no port). Read by the CLI, the config and
//! `--simulate` alike.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address and, if given, the port; `None` if malformed.
pub fn split_host_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().map(Some);
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let addr: Ipv6Addr = host.parse().ok()?;
        let port = match after {
            "" => None,
            p => port(p.strip_prefix(':')?)?,
        };
        return Some((IpAddr::V6(addr), port));
    }
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(addr), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (text, None),
    };
    Some((IpAddr::V4(host.parse::<Ipv4Addr>().ok()?), port))
}
