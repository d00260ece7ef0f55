//! Host and service names for `-L`, `-S` and `-L -c` without `-n`.
//!
//! ipvsadm 1.31 (`ipvsadm.c`, `addrport_to_anyname` and friends) prints
//! `host:port` where host is `gethostbyaddr()`'s `h_name` (else the dotted
//! address) and port is `getservbyport(port, "tcp"|"udp")`'s `s_name` (else
//! the number), into a 60-byte buffer (so at most 59 bytes). `-L` then cuts a
//! service's `"%-4s %s"` to 33 bytes and a server's name to 28; `-S` and
//! `-L -c` do not cut further. With `-n` everything is numeric.
//!
//! The formatting takes a [`Names`], so that it can be tested without a
//! resolver; [`NameTable::system`] looks the names up the way ipvsadm does
//! (the system resolver, so `/etc/hosts`, DNS and `/etc/services` all count),
//! but in parallel and within a time budget: whatever is not answered in
//! time is printed as a number. lvsd never resolves anything.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use lvs_state::model::Protocol;

/// Where names come from.
pub trait Names {
    /// The host name of `addr`, if it has one.
    fn host(&self, addr: IpAddr) -> Option<String>;
    /// The service name of `port` for `protocol`, if it has one.
    fn service(&self, port: u16, protocol: Protocol) -> Option<String>;
}

/// `-n`: no names at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct Numeric;

impl Names for Numeric {
    fn host(&self, _: IpAddr) -> Option<String> {
        None
    }
    fn service(&self, _: u16, _: Protocol) -> Option<String> {
        None
    }
}

/// ipvsadm's `addrport_to_anyname`: `host:service` (an IPv6 host in
/// brackets), each falling back to its number, cut to the 59 bytes of
/// ipvsadm's buffer.
pub fn addrport(names: &dyn Names, addr: IpAddr, port: u16, protocol: Protocol) -> String {
    let host = names.host(addr).unwrap_or_else(|| addr.to_string());
    let service = names
        .service(port, protocol)
        .unwrap_or_else(|| port.to_string());
    let text = match addr {
        IpAddr::V4(_) => format!("{host}:{service}"),
        IpAddr::V6(_) => format!("[{host}]:{service}"),
    };
    cut(text, 59)
}

/// At most `max` bytes, as C's truncation of a `char` buffer (never
/// splitting a UTF-8 sequence).
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Names looked up beforehand (or given by a test).
#[derive(Clone, Debug, Default)]
pub struct NameTable {
    hosts: HashMap<IpAddr, String>,
    services: HashMap<(u16, Protocol), String>,
}

impl Names for NameTable {
    fn host(&self, addr: IpAddr) -> Option<String> {
        self.hosts.get(&addr).cloned()
    }
    fn service(&self, port: u16, protocol: Protocol) -> Option<String> {
        self.services.get(&(port, protocol)).cloned()
    }
}

/// Reverse lookups running at once, at most.
const WORKERS: usize = 16;

impl NameTable {
    pub fn with_host(mut self, addr: IpAddr, name: &str) -> Self {
        self.hosts.insert(addr, name.to_string());
        self
    }

    pub fn with_service(mut self, port: u16, protocol: Protocol, name: &str) -> Self {
        self.services.insert((port, protocol), name.to_string());
        self
    }

    /// The system's names for `hosts` and `ports`: reverse lookups through
    /// the resolver (`getnameinfo`, which reads `/etc/hosts` and DNS as
    /// nsswitch says, as ipvsadm's `gethostbyaddr`), service names from
    /// `/etc/services`. Lookups not answered within `budget` stay numbers.
    pub fn system(
        hosts: impl IntoIterator<Item = IpAddr>,
        ports: impl IntoIterator<Item = (u16, Protocol)>,
        budget: Duration,
    ) -> Self {
        let deadline = Instant::now() + budget;
        let ports: HashSet<(u16, Protocol)> = ports.into_iter().collect();
        let services = std::fs::read_to_string("/etc/services")
            .map(|text| services_in(&text, &ports))
            .unwrap_or_default();
        let hosts: Vec<IpAddr> = hosts
            .into_iter()
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        Self {
            hosts: reverse_all(hosts, deadline),
            services,
        }
    }
}

/// `getservbyport` over the `files` source: the first `name port/proto`
/// line for each wanted port wins.
fn services_in(text: &str, wanted: &HashSet<(u16, Protocol)>) -> HashMap<(u16, Protocol), String> {
    let mut found = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut words = line.split_whitespace();
        let (Some(name), Some(port_proto)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((port, proto)) = port_proto.split_once('/') else {
            continue;
        };
        let protocol = match proto {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => continue,
        };
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        if wanted.contains(&(port, protocol)) {
            found
                .entry((port, protocol))
                .or_insert_with(|| name.to_string());
        }
    }
    found
}

/// Reverse-resolve every address on a few threads; what has not answered
/// by `deadline` is left out (its threads are abandoned: lvsadm exits soon).
fn reverse_all(hosts: Vec<IpAddr>, deadline: Instant) -> HashMap<IpAddr, String> {
    let mut names = HashMap::new();
    let pending = hosts.len();
    if pending == 0 {
        return names;
    }
    let queue = Arc::new(Mutex::new(hosts));
    let (tx, rx) = mpsc::channel();
    for _ in 0..pending.min(WORKERS) {
        let queue = Arc::clone(&queue);
        let tx = tx.clone();
        let spawned = std::thread::Builder::new()
            .name("lvsadm-names".into())
            .spawn(move || loop {
                let next = queue.lock().unwrap_or_else(|p| p.into_inner()).pop();
                let Some(addr) = next else { break };
                if tx
                    .send((addr, lvs_datapath::netconf::reverse_name(addr)))
                    .is_err()
                {
                    break;
                }
            });
        if spawned.is_err() {
            break;
        }
    }
    drop(tx);
    for _ in 0..pending {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((addr, Some(name))) => {
                names.insert(addr, name);
            }
            Ok((_, None)) => {}
            Err(_) => break,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn addrport_falls_back_to_numbers_and_cuts_at_59_bytes() {
        let a = IpAddr::V4(Ipv4Addr::new(192, 168, 0, 100));
        assert_eq!(addrport(&Numeric, a, 80, Protocol::Tcp), "192.168.0.100:80");
        let names = NameTable::default()
            .with_host(a, "www.example.com")
            .with_service(80, Protocol::Tcp, "http");
        assert_eq!(
            addrport(&names, a, 80, Protocol::Tcp),
            "www.example.com:http"
        );
        // The service name is per protocol.
        assert_eq!(addrport(&names, a, 80, Protocol::Udp), "www.example.com:80");
        let long = "a".repeat(70);
        let names = NameTable::default().with_host(a, &long);
        assert_eq!(addrport(&names, a, 8080, Protocol::Tcp), "a".repeat(59));
    }

    /// ipvsadm writes an IPv6 host in brackets, named or not.
    #[test]
    fn an_ipv6_host_is_bracketed() {
        let a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
        assert_eq!(
            addrport(&Numeric, a, 80, Protocol::Tcp),
            "[2001:db8::10]:80"
        );
        let names = NameTable::default()
            .with_host(a, "v6.example.com")
            .with_service(80, Protocol::Tcp, "http");
        assert_eq!(
            addrport(&names, a, 80, Protocol::Tcp),
            "[v6.example.com]:http"
        );
    }

    #[test]
    fn etc_services_first_entry_wins_per_protocol() {
        let text = "# comment\nhttp\t\t80/tcp\t\twww\t# WorldWideWeb HTTP\nwww-alt 80/tcp\ndomain 53/udp\nsomething 53/sctp\nbad line\n";
        let wanted: HashSet<_> = [
            (80, Protocol::Tcp),
            (53, Protocol::Udp),
            (80, Protocol::Udp),
        ]
        .into_iter()
        .collect();
        let found = services_in(text, &wanted);
        assert_eq!(
            found.get(&(80, Protocol::Tcp)).map(String::as_str),
            Some("http")
        );
        assert_eq!(
            found.get(&(53, Protocol::Udp)).map(String::as_str),
            Some("domain")
        );
        assert_eq!(found.get(&(80, Protocol::Udp)), None);
    }

    /// The real resolver and `/etc/services`, where this machine has the
    /// well-known entries (skipped where it does not).
    #[test]
    fn the_system_knows_localhost_and_http() {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let names = NameTable::system(
            [lo, lo],
            [(80, Protocol::Tcp), (0, Protocol::Tcp)],
            Duration::from_secs(1),
        );
        let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
        if services
            .lines()
            .any(|l| l.starts_with("http") && l.contains("80/tcp"))
        {
            assert_eq!(names.service(80, Protocol::Tcp).as_deref(), Some("http"));
        }
        assert_eq!(names.service(0, Protocol::Tcp), None);
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let localhost = hosts.lines().any(|l| {
            let mut w = l.split_whitespace();
            w.next() == Some("127.0.0.1") && w.next() == Some("localhost")
        });
        if localhost {
            assert_eq!(names.host(lo).as_deref(), Some("localhost"));
        }
    }

    #[test]
    fn an_empty_lookup_returns_at_once() {
        let start = Instant::now();
        let names = NameTable::system([], [], Duration::from_secs(5));
        assert!(start.elapsed() < Duration::from_secs(1));
        assert_eq!(names.host(IpAddr::V4(Ipv4Addr::LOCALHOST)), None);
    }
}
