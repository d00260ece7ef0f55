//! ipvsadm's output formats, byte for byte (reference §7.3–§7.8).

use std::{fmt::Write, net::IpAddr};

use lvs_ha::wire::Role;
use lvs_sched::{SchedFlags, SchedulerName};
use lvs_state::{
    api::{
        ConnView, HaCounters, HaView, HealthView, IpvsTimeouts, Rates, RealView, ServiceView,
        Snapshot, Stats,
    },
    model::{max_prefix, Endpoint, Method, Persistence, Protocol, ServiceSpec},
};

use super::{
    names::{addrport, cut, Names, Numeric},
    ListFormat, ListOptions,
};

fn header(out: &mut String, size: u32) {
    let _ = writeln!(out, "IP Virtual Server version 1.2.1 (size={size})");
}

/// ipvsadm's default sort: services by family (IPv4 first), protocol,
/// address, port; servers by address, port. Without `sort`, IPVS order (servers newest first).
///
/// ipvsadm compares addresses by subtracting them into an `int`, which sorts
/// addresses 2^31 or more apart "backwards"; that comparator is not a total
/// order, so the natural numeric order is used here instead.
fn sorted<'a>(
    snapshot: &'a Snapshot,
    only: Option<&lvs_state::model::ServiceId>,
    sort: bool,
) -> Vec<(&'a ServiceView, Vec<&'a RealView>)> {
    let mut services: Vec<&ServiceView> = snapshot
        .services
        .iter()
        .filter(|s| only.is_none_or(|id| s.spec.id == *id))
        .collect();
    let order = |s: &&ServiceView| {
        (
            s.spec.id.vip.is_ipv6(),
            s.spec.id.protocol.number(),
            s.spec.id.vip.addr,
            s.spec.id.vip.port,
        )
    };
    // Configurations are often written in order already.
    if sort && !services.is_sorted_by_key(order) {
        services.sort_by_key(order);
    }
    services
        .into_iter()
        .map(|s| {
            let mut reals: Vec<&RealView> = s.reals.iter().collect();
            if sort {
                reals.sort_by_key(|r| (r.spec.server.addr, r.spec.server.port));
            }
            (s, reals)
        })
        .collect()
}

/// `-L`'s `"%-4s %s"` of protocol and `host:port`, cut to 33 bytes (an
/// IPv6 one is not cut, as ipvsadm's).
fn service_name(s: &ServiceView, names: &dyn Names) -> String {
    let id = s.spec.id;
    let vip = addrport(names, id.vip.addr, id.vip.port, id.protocol);
    let name = format!("{:<4} {vip}", id.protocol.label());
    if id.vip.is_ipv6() {
        name
    } else {
        cut(name, 33)
    }
}

/// `-M`'s granularity as ipvsadm prints it: an IPv4 mask unless /32, an
/// IPv6 prefix length unless /128.
fn netmask(spec: &ServiceSpec, p: Persistence) -> Option<String> {
    if p.prefix == max_prefix(spec.id.vip.addr) {
        None
    } else if spec.id.vip.is_ipv6() {
        Some(p.prefix.to_string())
    } else {
        Some(p.ipv4_mask().to_string())
    }
}

/// ipvsadm's names for a service's `-b` flags (`print_sched_flags`): sh's
/// and mh's own names under them (`flag-3` under mh is our mh-ipvs-order,
/// printed as ipvsadm prints it so that `-S` restores anywhere), the raw
/// bits `flag-1..3` under any other scheduler.
pub fn sched_flag_names(spec: &ServiceSpec) -> Vec<&'static str> {
    let SchedFlags {
        fallback,
        port,
        ipvs_order,
    } = spec.flags;
    let names = match spec.scheduler {
        SchedulerName::Sh => ["sh-fallback", "sh-port", "flag-3"],
        SchedulerName::Mh => ["mh-fallback", "mh-port", "flag-3"],
        _ => ["flag-1", "flag-2", "flag-3"],
    };
    [fallback, port, ipvs_order]
        .into_iter()
        .zip(names)
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
}

/// `-L`'s service line: scheduler, `(flags)`, `persistent N`, and `mask M`
/// unless the mask is /32 (/128).
fn service_line(svc: &ServiceView, names: &dyn Names) -> String {
    let mut line = format!("{} {}", service_name(svc, names), svc.spec.scheduler);
    let flags = sched_flag_names(&svc.spec);
    if !flags.is_empty() {
        let _ = write!(line, " ({})", flags.join(","));
    }
    if let Some(p) = svc.spec.persistence {
        let _ = write!(line, " persistent {}", p.timeout);
        if let Some(mask) = netmask(&svc.spec, p) {
            let _ = write!(line, " mask {mask}");
        }
    }
    line
}

/// `largenum`: fit a counter in 8 or 9 columns, as ipvsadm does.
fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() > 8 {
            digits.len() + 1
        } else {
            9
        };
        return format!("{digits:>width$}");
    }
    match n {
        n if n < 100_000_000 => format!("{n:>9}"),
        n if n < 1_000_000_000 => format!("{:>8}K", n / 1_000),
        n if n < 100_000_000_000 => format!("{:>8}M", n / 1_000_000),
        n if n < 100_000_000_000_000 => format!("{:>8}G", n / 1_000_000_000),
        n => format!("{:>8}T", n / 1_000_000_000_000),
    }
}

fn stats_columns(s: &Stats, exact: bool) -> String {
    let Stats {
        conns,
        in_packets,
        out_packets,
        in_bytes,
        out_bytes,
    } = *s;
    [conns, in_packets, out_packets, in_bytes, out_bytes]
        .into_iter()
        .map(|n| largenum(n, exact))
        .collect()
}

/// `--rate`'s five rates, each as `largenum` (a service's line).
fn rate_columns(r: &Rates, exact: bool) -> String {
    let Rates {
        cps,
        in_pps,
        out_pps,
        in_bps,
        out_bps,
    } = *r;
    [cps, in_pps, out_pps, in_bps, out_bps]
        .into_iter()
        .map(|n| largenum(n, exact))
        .collect()
}

/// The column titles of each format.
fn title(format: ListFormat) -> String {
    const SERVICE: &str = "Prot LocalAddress:Port";
    const SERVER: &str = "  -> RemoteAddress:Port";
    let numbers = |[a, b, c, d, e]: [&str; 5]| {
        format!("{SERVICE:<33} {a:>8} {b:>8} {c:>8} {d:>8} {e:>8}\n{SERVER}\n")
    };
    match format {
        ListFormat::Plain => format!(
            "{SERVICE} Scheduler Flags\n{SERVER}           Forward Weight ActiveConn InActConn\n"
        ),
        ListFormat::Stats => numbers(["Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"]),
        ListFormat::Rate => numbers(["CPS", "InPPS", "OutPPS", "InBPS", "OutBPS"]),
        ListFormat::Thresholds => format!(
            "{SERVICE:<33} {:<10} {:<10} {:<10} {:<10}\n{SERVER}\n",
            "Uthreshold", "Lthreshold", "ActiveConn", "InActConn"
        ),
        ListFormat::PersistentConn => format!(
            "{SERVICE:<33} {:<9} {:<11} {:<10} {:<10}\n{SERVER}\n",
            "Weight", "PersistConn", "ActiveConn", "InActConn"
        ),
    }
}

/// A service's line: counters or rates after the name, else `-L`'s line.
fn service_row(svc: &ServiceView, format: ListFormat, exact: bool, names: &dyn Names) -> String {
    match format {
        ListFormat::Stats => format!(
            "{:<33}{}",
            service_name(svc, names),
            stats_columns(&svc.stats, exact)
        ),
        ListFormat::Rate => format!(
            "{:<33}{}",
            service_name(svc, names),
            rate_columns(&svc.rates, exact)
        ),
        ListFormat::Plain | ListFormat::Thresholds | ListFormat::PersistentConn => {
            service_line(svc, names)
        }
    }
}

/// A real server's line in `format`; its name cut to 28 bytes, as ipvsadm
/// cuts it (port names are the service's protocol's).
fn server_row(
    out: &mut String,
    r: &RealView,
    protocol: Protocol,
    format: ListFormat,
    exact: bool,
    names: &dyn Names,
) {
    if format == ListFormat::Plain {
        // The common listing, written cell by cell: a 100,000-server
        // listing is formatted in milliseconds, not a tenth of a second.
        out.push_str("  -> ");
        let start = out.len();
        write_addrport(out, names, r.spec.server, protocol);
        // ipvsadm cuts an IPv4 server's name, not an IPv6 one's.
        if !r.spec.server.is_ipv6() {
            truncate_from(out, start, 28);
        }
        pad_from(out, start, 28);
        out.push(' ');
        cell(out, r.spec.method.label(), 7);
        out.push(' ');
        number_cell(out, r.spec.weight, 6);
        out.push(' ');
        number_cell(out, r.active_conns, 10);
        out.push(' ');
        number_cell(out, r.inactive_conns, 10);
        if let Some(h) = &r.health {
            out.push(' ');
            out.push_str(&health_note(h));
        }
        return;
    }
    let server = r.spec.server;
    let name = addrport(names, server.addr, server.port, protocol);
    let server = if server.is_ipv6() {
        name
    } else {
        cut(name, 28)
    };
    let _ = match format {
        ListFormat::Plain => unreachable!("written above"),
        ListFormat::Stats => write!(out, "  -> {server:<28}{}", stats_columns(&r.stats, exact)),
        // ipvsadm prints a server's packet rates with a plain `%8llu`,
        // its byte rates with largenum.
        ListFormat::Rate => write!(
            out,
            "  -> {server:<28} {:>8} {:>8} {:>8}{}{}",
            r.rates.cps,
            r.rates.in_pps,
            r.rates.out_pps,
            largenum(r.rates.in_bps, exact),
            largenum(r.rates.out_bps, exact)
        ),
        ListFormat::Thresholds => write!(
            out,
            "  -> {server:<28} {:<10} {:<10} {:<10} {:<10}",
            r.spec.u_threshold, r.spec.l_threshold, r.active_conns, r.inactive_conns
        ),
        ListFormat::PersistentConn => write!(
            out,
            "  -> {server:<28} {:<9} {:<11} {:<10} {:<10}",
            r.spec.weight, r.persistent_conns, r.active_conns, r.inactive_conns
        ),
    };
}

/// `value` left-aligned in `width` columns, as `{:<width}` writes it.
fn cell(out: &mut String, value: &str, width: usize) {
    let start = out.len();
    out.push_str(value);
    pad_from(out, start, width);
}

/// A number left-aligned in `width` columns.
fn number_cell(out: &mut String, value: u32, width: usize) {
    let start = out.len();
    push_decimal(out, value);
    pad_from(out, start, width);
}

/// `value` in decimal, without the formatter's machinery (a listing writes
/// half a million numbers).
fn push_decimal(out: &mut String, mut value: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
}

/// Spaces after what was written since `start`, up to `width` bytes.
fn pad_from(out: &mut String, start: usize, width: usize) {
    const SPACES: &str = "                                                                ";
    let written = out.len() - start;
    if written < width {
        out.push_str(&SPACES[..(width - written).min(SPACES.len())]);
    }
}

/// Cut what was written since `start` to `max` bytes, as `cut` does.
fn truncate_from(out: &mut String, start: usize, max: usize) {
    if out.len() - start > max {
        let mut end = start + max;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
}

/// `addrport`, written in place (no allocation for numeric IPv4 output).
fn write_addrport(out: &mut String, names: &dyn Names, at: Endpoint, protocol: Protocol) {
    let start = out.len();
    match (names.host(at.addr), at.addr) {
        (Some(host), IpAddr::V4(_)) => out.push_str(&host),
        (Some(host), IpAddr::V6(_)) => {
            let _ = write!(out, "[{host}]");
        }
        (None, IpAddr::V4(a)) => {
            for (i, octet) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(out, u32::from(octet));
            }
        }
        (None, IpAddr::V6(a)) => {
            let _ = write!(out, "[{a}]");
        }
    }
    out.push(':');
    match names.service(at.port, protocol) {
        Some(service) => out.push_str(&service),
        None => push_decimal(out, u32::from(at.port)),
    }
    truncate_from(out, start, 59);
}

/// `ipvsadm -L -n` in any of its formats.
pub fn list(snapshot: &Snapshot, options: &ListOptions) -> String {
    list_named(snapshot, options, &Numeric)
}

/// `ipvsadm -L` in any of its formats, names from `names`.
pub fn list_named(snapshot: &Snapshot, options: &ListOptions, names: &dyn Names) -> String {
    let ListOptions {
        service,
        format,
        exact,
        sort,
    } = options;
    let servers: usize = snapshot.services.iter().map(|s| s.reals.len() + 1).sum();
    let mut out = String::with_capacity(servers * 72 + 256);
    header(&mut out, snapshot.conn_table_size);
    out.push_str(&title(*format));
    for (svc, reals) in sorted(snapshot, service.as_ref(), *sort) {
        out.push_str(&service_row(svc, *format, *exact, names));
        out.push('\n');
        let protocol = svc.spec.id.protocol;
        for r in reals {
            server_row(&mut out, r, protocol, *format, *exact, names);
            out.push('\n');
        }
    }
    out
}

/// lvs's addition to a `-L` server line, after ipvsadm's columns (so
/// scripts that split the columns still read them): the health state, why,
/// and what adjusts the weight.
fn health_note(h: &HealthView) -> String {
    let HealthView {
        state,
        reason,
        agent_percent,
        slow_start_percent,
        dynamic_weight,
        scheduled_weight: _,
    } = h;
    let mut note = state.clone();
    if let Some(w) = dynamic_weight {
        let _ = write!(note, " weight {w}");
    }
    if let Some(p) = agent_percent {
        let _ = write!(note, " agent {p}%");
    }
    if let Some(p) = slow_start_percent {
        let _ = write!(note, " slow-start {p}%");
    }
    if let Some(r) = reason {
        let _ = write!(note, " ({r})");
    }
    note
}

/// `ipvsadm -S -n`: rules in `-R` format (thresholds are not saved; nor is
/// the sorry server, which is health configuration, not a real server).
pub fn save(snapshot: &Snapshot) -> String {
    save_named(snapshot, &Numeric)
}

/// `ipvsadm -S`, names from `names` (not cut, unlike `-L`).
///
/// As ipvsadm v1.31 writes it (ipvsadm.c `print_service_entry` with
/// `FMT_RULE`, and `print_tunnel_rule` for `-i` servers: `"-a %s -r %s %s
/// -w %d --tun-type %s\n"` for `IP_VS_CONN_F_TUNNEL_TYPE_IPIP`); source:
/// git.kernel.org/pub/scm/utils/kernel/ipvsadm tag v1.31 (commit a0e3834),
/// mirrored at github.com/cezarsa/ipvsadm. Every tunnel here is ipip, so
/// every `-i` server gets `--tun-type ipip`.
pub fn save_named(snapshot: &Snapshot, names: &dyn Names) -> String {
    let mut out = String::new();
    for (svc, reals) in sorted(snapshot, None, true) {
        let id = svc.spec.id;
        let spec = format!(
            "{} {}",
            id.protocol.flag(),
            addrport(names, id.vip.addr, id.vip.port, id.protocol)
        );
        let mut line = format!("-A {spec} -s {}", svc.spec.scheduler);
        // ipvsadm's order: -p, -M (unless /32 or /128), then -b.
        if let Some(p) = svc.spec.persistence {
            let _ = write!(line, " -p {}", p.timeout);
            if let Some(mask) = netmask(&svc.spec, p) {
                let _ = write!(line, " -M {mask}");
            }
        }
        let flags = sched_flag_names(&svc.spec);
        if !flags.is_empty() {
            let _ = write!(line, " -b {}", flags.join(","));
        }
        let _ = writeln!(out, "{line}");
        let is_sorry = |r: &&&RealView| r.health.as_ref().is_some_and(|h| h.state == "sorry");
        for r in reals.iter().filter(|r| !is_sorry(r)) {
            let server = r.spec.server;
            let _ = write!(
                out,
                "-a {spec} -r {} {} -w {}",
                addrport(names, server.addr, server.port, id.protocol),
                r.spec.method.flag(),
                r.spec.weight
            );
            if r.spec.method == Method::Tunnel {
                out.push_str(" --tun-type ipip");
            }
            out.push('\n');
        }
    }
    out
}

/// `lvsadm ha`: this router's role, its peer, the last transition and the
/// counters (not an ipvsadm format; keepalived has none either).
pub fn ha(view: &HaView) -> String {
    let HaView {
        role,
        node,
        priority,
        preempt,
        addresses,
        peer,
        last_transition,
        counters,
    } = view;
    let role_name = |r: &Role| match r {
        Role::Active => "active",
        Role::Backup => "backup",
    };
    let mut out = format!("Role: {}", role_name(role));
    if let Some(t) = last_transition {
        let _ = write!(
            out,
            " (since {:.1} s, was {}: {})",
            t.ms_ago as f64 / 1000.0,
            role_name(&t.from),
            t.reason
        );
    }
    let _ = writeln!(
        out,
        "\nNode: {node} priority {priority} preempt {}",
        if *preempt { "on" } else { "off" }
    );
    match peer {
        Some(p) => {
            let _ = writeln!(
                out,
                "Peer: {} {} priority {}, heard {} ms ago{}",
                p.node,
                role_name(&p.role),
                p.priority,
                p.heard_ms_ago,
                if p.alive { "" } else { " (presumed dead)" }
            );
        }
        None => out.push_str("Peer: not heard yet\n"),
    }
    let _ = writeln!(out, "Floating addresses: {}", addresses.join(", "));
    let HaCounters {
        heartbeats_sent,
        heartbeats_received,
        rejected_auth,
        rejected_source,
        rejected_stale,
        sync_records_sent,
        sync_records_received,
        sync_records_applied,
        full_resyncs_sent,
        takeovers,
    } = counters;
    let _ = writeln!(out, "Heartbeats: sent {heartbeats_sent} received {heartbeats_received}; rejected: forged {rejected_auth} wrong source {rejected_source} stale {rejected_stale}");
    let _ = writeln!(out, "Sync: records sent {sync_records_sent} received {sync_records_received} applied {sync_records_applied}; full resyncs sent {full_resyncs_sent}; takeovers {takeovers}");
    out
}

/// `ipvsadm -L -c`: the header, then a row per entry, expiry as `MM:SS`
/// (minutes not wrapped at 60), as ipvsadm prints `/proc/net/ip_vs_conn`.
pub fn connections(rows: &[ConnView]) -> String {
    connections_named(rows, &Numeric)
}

/// `ipvsadm -L -c`, names from `names` (not cut: ipvsadm pads them to 18
/// and lets longer ones push the columns).
pub fn connections_named(rows: &[ConnView], names: &dyn Names) -> String {
    let name = |a: &std::net::SocketAddr, p| addrport(names, a.ip(), a.port(), p);
    let mut out = String::from(
        "IPVS connection entries\npro expire state       source             virtual            destination\n",
    );
    for r in rows {
        let expire = format!("{:02}:{:02}", r.expire_s / 60, r.expire_s % 60);
        let _ = writeln!(
            out,
            "{:<3} {:<6} {:<11} {:<18} {:<18} {}",
            r.protocol.label(),
            expire,
            r.state,
            name(&r.source, r.protocol),
            name(&r.virtual_addr, r.protocol),
            name(&r.destination, r.protocol)
        );
    }
    out
}

/// `ipvsadm -L --timeout`.
pub fn timeouts(t: &IpvsTimeouts) -> String {
    let IpvsTimeouts { tcp, tcp_fin, udp } = *t;
    format!("Timeout (tcp tcpfin udp): {tcp} {tcp_fin} {udp}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_state::model::{Command, Endpoint, Method, Protocol, RealSpec, ServiceId, State};

    fn real(
        addr: &str,
        method: Method,
        weight: u32,
        active: u32,
        inactive: u32,
        stats: Stats,
    ) -> RealView {
        RealView {
            spec: RealSpec {
                server: addr.parse().unwrap(),
                method,
                weight,
                u_threshold: 0,
                l_threshold: 0,
            },
            active_conns: active,
            inactive_conns: inactive,
            persistent_conns: 0,
            stats,
            rates: Rates::default(),
            health: None,
        }
    }

    fn snapshot() -> Snapshot {
        let svc = |proto, addr: &str, sched, reals| ServiceView {
            spec: ServiceSpec {
                id: ServiceId {
                    protocol: proto,
                    vip: addr.parse::<Endpoint>().unwrap(),
                },
                scheduler: sched,
                flags: Default::default(),
                persistence: None,
            },
            stats: Stats::default(),
            rates: Rates::default(),
            reals,
            health: Default::default(),
        };
        let z = Stats::default();
        Snapshot {
            conn_table_size: 4096,
            services: vec![
                svc(
                    Protocol::Udp,
                    "192.168.0.100:53",
                    SchedulerName::Rr,
                    vec![real("10.0.0.1:53", Method::Tunnel, 1, 0, 87, z)],
                ),
                svc(
                    Protocol::Tcp,
                    "192.168.0.100:80",
                    SchedulerName::Wlc,
                    // IPVS order is newest first; the listing sorts by address.
                    vec![
                        real("10.0.0.2:80", Method::Route, 3, 40, 411, z),
                        real("10.0.0.1:80", Method::Route, 1, 12, 150, z),
                    ],
                ),
                svc(
                    Protocol::Tcp,
                    "192.168.0.100:443",
                    SchedulerName::Rr,
                    vec![real("10.0.0.1:443", Method::Nat, 1, 5, 9, z)],
                ),
            ],
            verdicts: vec![],
            refills: Default::default(),
        }
    }

    #[test]
    fn list_matches_ipvsadm_byte_for_byte() {
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  192.168.0.100:80 wlc\n",
            "  -> 10.0.0.1:80                  Route   1      12         150       \n",
            "  -> 10.0.0.2:80                  Route   3      40         411       \n",
            "TCP  192.168.0.100:443 rr\n",
            "  -> 10.0.0.1:443                 Masq    1      5          9         \n",
            "UDP  192.168.0.100:53 rr\n",
            "  -> 10.0.0.1:53                  Tunnel  1      0          87        \n",
        );
        assert_eq!(list(&snapshot(), &ListOptions::default()), expected);
    }

    #[test]
    fn stats_match_the_reference_layout() {
        let mut snap = snapshot();
        snap.services.truncate(2);
        snap.services.remove(0);
        snap.services[0].stats = Stats {
            conns: 1843,
            in_packets: 52011,
            out_packets: 48810,
            in_bytes: 3120765,
            out_bytes: 71230877,
        };
        snap.services[0].reals[1].stats = Stats {
            conns: 600,
            in_packets: 17001,
            out_packets: 16000,
            in_bytes: 1020061,
            out_bytes: 23000000,
        };
        snap.services[0].reals[0].stats = Stats {
            conns: 1243,
            in_packets: 35010,
            out_packets: 32810,
            in_bytes: 2100704,
            out_bytes: 48230877,
        };
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n",
            "  -> RemoteAddress:Port\n",
            "TCP  192.168.0.100:80                 1843    52011    48810  3120765 71230877\n",
            "  -> 10.0.0.1:80                       600    17001    16000  1020061 23000000\n",
            "  -> 10.0.0.2:80                      1243    35010    32810  2100704 48230877\n",
        );
        assert_eq!(
            list(
                &snap,
                &ListOptions {
                    format: ListFormat::Stats,
                    ..Default::default()
                }
            ),
            expected
        );
    }

    /// §7.4's `--rate` example.
    #[test]
    fn rates_match_the_reference_byte_for_byte() {
        let mut snap = snapshot();
        let rates = |cps, in_pps, out_pps, in_bps, out_bps| Rates {
            cps,
            in_pps,
            out_pps,
            in_bps,
            out_bps,
        };
        let web = &mut snap.services[1];
        web.rates = rates(12, 340, 318, 20402, 466000);
        web.reals[1].rates = rates(4, 110, 103, 6600, 150000);
        web.reals[0].rates = rates(8, 230, 215, 13802, 316000);
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n",
            "  -> RemoteAddress:Port\n",
            "TCP  192.168.0.100:80                   12      340      318    20402   466000\n",
            "  -> 10.0.0.1:80                         4      110      103     6600   150000\n",
            "  -> 10.0.0.2:80                         8      230      215    13802   316000\n",
        );
        let only_web = ListOptions {
            service: Some(snap.services[1].spec.id),
            format: ListFormat::Rate,
            ..Default::default()
        };
        assert_eq!(list(&snap, &only_web), expected);

        // A server's packet rates are plain numbers, its byte rates (and
        // every service rate) largenum.
        let web = &mut snap.services[1];
        web.rates = rates(123_456_789, 0, 0, 123_456_789, 0);
        web.reals[1].rates = rates(123_456_789, 0, 0, 123_456_789, 0);
        let out = list(&snap, &only_web);
        assert!(
            out.contains("\nTCP  192.168.0.100:80              123456K        0        0  123456K        0\n"),
            "{out}"
        );
        assert!(
            out.contains("\n  -> 10.0.0.1:80                  123456789        0        0  123456K        0\n"),
            "{out}"
        );
        let exact = list(
            &snap,
            &ListOptions {
                exact: true,
                ..only_web
            },
        );
        assert!(
            exact.contains("\n  -> 10.0.0.1:80                  123456789        0        0 123456789        0\n"),
            "{exact}"
        );
    }

    /// §7.5's `--thresholds` example.
    #[test]
    fn thresholds_match_the_reference_byte_for_byte() {
        let mut snap = snapshot();
        let web = &mut snap.services[1];
        web.reals.remove(0);
        web.reals[0].spec.u_threshold = 100;
        web.reals[0].spec.l_threshold = 50;
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n",
            "  -> RemoteAddress:Port\n",
            "TCP  192.168.0.100:80 wlc\n",
            "  -> 10.0.0.1:80                  100        50         12         150       \n",
        );
        let options = ListOptions {
            service: Some(snap.services[1].spec.id),
            format: ListFormat::Thresholds,
            ..Default::default()
        };
        assert_eq!(list(&snap, &options), expected);
    }

    /// §7.5's `--persistent-conn` example.
    #[test]
    fn persistent_conns_match_the_reference_byte_for_byte() {
        let mut snap = reference_snapshot();
        let tls = &mut snap.services[2];
        tls.reals.remove(0);
        tls.reals[0].persistent_conns = 3;
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n",
            "  -> RemoteAddress:Port\n",
            "TCP  192.168.0.100:443 rr persistent 360\n",
            "  -> 10.0.0.1:443                 1         3           5          9         \n",
        );
        let options = ListOptions {
            service: Some(snap.services[2].spec.id),
            format: ListFormat::PersistentConn,
            ..Default::default()
        };
        assert_eq!(list(&snap, &options), expected);
    }

    #[test]
    fn only_the_plain_listing_carries_the_health_note() {
        let mut snap = snapshot();
        snap.services[1].reals[0].health = Some(HealthView {
            state: "down".into(),
            reason: Some("tcp: connection refused".into()),
            agent_percent: None,
            slow_start_percent: None,
            dynamic_weight: None,
            scheduled_weight: None,
        });
        let shown = |format| {
            list(
                &snap,
                &ListOptions {
                    format,
                    ..Default::default()
                },
            )
        };
        assert!(shown(ListFormat::Plain).contains(" down (tcp: connection refused)\n"));
        for format in [
            ListFormat::Stats,
            ListFormat::Rate,
            ListFormat::Thresholds,
            ListFormat::PersistentConn,
        ] {
            let out = shown(format);
            assert!(!out.contains("down"), "{format:?}: {out}");
        }
        // A weight that checks set shows beside the configured column.
        snap.services[1].reals[0].health = Some(HealthView {
            state: "up".into(),
            reason: None,
            agent_percent: Some(50),
            slow_start_percent: None,
            dynamic_weight: Some(5),
            scheduled_weight: Some(250),
        });
        let plain = list(&snap, &ListOptions::default());
        assert!(plain.contains(" up weight 5 agent 50%\n"), "{plain}");
    }

    #[test]
    fn nosort_keeps_ipvs_order() {
        let out = list(
            &snapshot(),
            &ListOptions {
                sort: false,
                ..Default::default()
            },
        );
        let order: Vec<&str> = out
            .lines()
            .filter(|l| l.starts_with("  -> 10.") || l.starts_with("TCP") || l.starts_with("UDP"))
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(
            order,
            [
                "192.168.0.100:53",
                "10.0.0.1:53",
                "192.168.0.100:80",
                "10.0.0.2:80",
                "10.0.0.1:80",
                "192.168.0.100:443",
                "10.0.0.1:443"
            ]
        );
    }

    #[test]
    fn largenum_scales() {
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(123_456_789, false), "  123456K");
        assert_eq!(largenum(12_345_678_901, false), "   12345M");
        assert_eq!(largenum(123_456_789, true), " 123456789");
    }

    /// The reference's §7.3 example: persistence and sh's flags included.
    fn reference_snapshot() -> Snapshot {
        let mut snap = snapshot();
        let z = Stats::default();
        snap.services[0].spec.scheduler = SchedulerName::Sh;
        snap.services[0].spec.flags = SchedFlags {
            fallback: true,
            port: true,
            ipvs_order: false,
        };
        snap.services[0]
            .reals
            .insert(0, real("10.0.0.2:53", Method::Tunnel, 1, 0, 91, z));
        snap.services[2].spec.persistence = Some(Persistence::default_for(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ));
        snap.services[2]
            .reals
            .insert(0, real("10.0.0.2:443", Method::Nat, 0, 2, 30, z));
        snap
    }

    #[test]
    fn list_shows_persistence_and_flags_as_the_reference() {
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  192.168.0.100:80 wlc\n",
            "  -> 10.0.0.1:80                  Route   1      12         150       \n",
            "  -> 10.0.0.2:80                  Route   3      40         411       \n",
            "TCP  192.168.0.100:443 rr persistent 360\n",
            "  -> 10.0.0.1:443                 Masq    1      5          9         \n",
            "  -> 10.0.0.2:443                 Masq    0      2          30        \n",
            "UDP  192.168.0.100:53 sh (sh-fallback,sh-port)\n",
            "  -> 10.0.0.1:53                  Tunnel  1      0          87        \n",
            "  -> 10.0.0.2:53                  Tunnel  1      0          91        \n",
        );
        assert_eq!(
            list(&reference_snapshot(), &ListOptions::default()),
            expected
        );
    }

    #[test]
    fn service_line_variants() {
        let mut svc = snapshot().services.remove(1);
        let line = |svc: &ServiceView| service_line(svc, &Numeric);
        svc.spec.persistence = Some(Persistence {
            timeout: 300,
            prefix: 24,
        });
        assert_eq!(
            line(&svc),
            "TCP  192.168.0.100:80 wlc persistent 300 mask 255.255.255.0"
        );
        // Other schedulers show the raw bits, before persistence.
        svc.spec.flags.port = true;
        assert_eq!(
            line(&svc),
            "TCP  192.168.0.100:80 wlc (flag-2) persistent 300 mask 255.255.255.0"
        );
        svc.spec.flags.fallback = true;
        svc.spec.persistence = None;
        assert_eq!(line(&svc), "TCP  192.168.0.100:80 wlc (flag-1,flag-2)");
        svc.spec.scheduler = SchedulerName::Sh;
        svc.spec.flags.port = false;
        assert_eq!(line(&svc), "TCP  192.168.0.100:80 sh (sh-fallback)");
        // mh names the same bits its own way; our mh-ipvs-order is flag-3,
        // as ipvsadm prints it, so that -S restores anywhere.
        svc.spec.scheduler = SchedulerName::Mh;
        svc.spec.flags.port = true;
        svc.spec.flags.ipvs_order = true;
        assert_eq!(
            line(&svc),
            "TCP  192.168.0.100:80 mh (mh-fallback,mh-port,flag-3)"
        );
        svc.spec.flags.ipvs_order = false;
        svc.spec.scheduler = SchedulerName::Sh;
        svc.spec.flags.port = false;
        // --stats shows neither.
        svc.spec.persistence = Some(Persistence::default_for(
            std::net::Ipv4Addr::UNSPECIFIED.into(),
        ));
        let mut snap = snapshot();
        snap.services[1] = svc;
        let stats = list(
            &snap,
            &ListOptions {
                format: ListFormat::Stats,
                ..Default::default()
            },
        );
        assert!(
            stats.contains("\nTCP  192.168.0.100:80  ")
                && !stats.contains("sh-fallback")
                && !stats.contains("persistent"),
            "{stats}"
        );
    }

    #[test]
    fn save_writes_persistence_and_flags_as_the_reference() {
        // §7.7: `--tun-type ipip` after every -i server, as ipvsadm 1.31.
        let expected = concat!(
            "-A -t 192.168.0.100:80 -s wlc\n",
            "-a -t 192.168.0.100:80 -r 10.0.0.1:80 -g -w 1\n",
            "-a -t 192.168.0.100:80 -r 10.0.0.2:80 -g -w 3\n",
            "-A -t 192.168.0.100:443 -s rr -p 360\n",
            "-a -t 192.168.0.100:443 -r 10.0.0.1:443 -m -w 1\n",
            "-a -t 192.168.0.100:443 -r 10.0.0.2:443 -m -w 0\n",
            "-A -u 192.168.0.100:53 -s sh -b sh-fallback,sh-port\n",
            "-a -u 192.168.0.100:53 -r 10.0.0.1:53 -i -w 1 --tun-type ipip\n",
            "-a -u 192.168.0.100:53 -r 10.0.0.2:53 -i -w 1 --tun-type ipip\n",
        );
        let snap = reference_snapshot();
        assert_eq!(save(&snap), expected);
        // Read back, every service spec is the one saved.
        let specs: Vec<ServiceSpec> = super::super::parse_restore(expected)
            .unwrap()
            .into_iter()
            .filter_map(|c| match c {
                Command::AddService(spec) => Some(spec),
                _ => None,
            })
            .collect();
        let saved: Vec<ServiceSpec> = sorted(&snap, None, true)
            .into_iter()
            .map(|(s, _)| s.spec.clone())
            .collect();
        assert_eq!(specs, saved);
    }

    fn view(state: &State) -> Snapshot {
        Snapshot {
            conn_table_size: 4096,
            services: state
                .services()
                .map(|s| ServiceView {
                    spec: s.spec.clone(),
                    stats: Stats::default(),
                    rates: Rates::default(),
                    reals: s
                        .reals
                        .iter()
                        .map(|r| RealView {
                            spec: r.clone(),
                            active_conns: 0,
                            inactive_conns: 0,
                            persistent_conns: 0,
                            stats: Stats::default(),
                            rates: Rates::default(),
                            health: None,
                        })
                        .collect(),
                    health: Default::default(),
                })
                .collect(),
            verdicts: vec![],
            refills: Default::default(),
        }
    }

    /// The state `rules` restore into.
    fn restored(rules: &str) -> State {
        let mut state = State::default();
        state
            .apply_all(&super::super::parse_restore(rules).unwrap())
            .unwrap();
        state
    }

    #[test]
    fn save_then_restore_reproduces_the_state() {
        let rules = concat!(
            "-A -t 198.18.0.10:0 -s rr -p 360\n",
            "-a -t 198.18.0.10:0 -r 198.18.11.2:0 -g -w 1\n",
            "-A -t 198.18.0.10:80 -s wrr -p 1800 -M 255.255.255.0 -b flag-1,flag-2\n",
            "-a -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 3\n",
            "-a -t 198.18.0.10:80 -r 198.18.12.2:8080 -m -w 1\n",
            "-A -u 198.18.0.10:53 -s wlc\n",
            "-a -u 198.18.0.10:53 -r 198.18.11.2:53 -i -w 2 --tun-type ipip\n",
        );
        let state = restored(rules);
        let web = &state.at(1).unwrap().spec;
        assert_eq!(
            (web.flags, web.persistence),
            (
                SchedFlags {
                    fallback: true,
                    port: true,
                    ipvs_order: false,
                },
                Some(Persistence {
                    timeout: 1800,
                    prefix: 24
                })
            )
        );
        let saved = save(&view(&state));
        assert_eq!(saved, rules);
        assert_eq!(restored(&saved), state);
    }

    /// A mixed IPv4/IPv6 configuration, as `ipvsadm -S` writes it: IPv4
    /// services first (ipvsadm sorts by family; servers of both families in
    /// one service, IPv4 first here too), IPv6 addresses in
    /// brackets, an IPv6 `-M` as a prefix length, and a tunnel across
    /// families (the one method IPVS lets cross). Restored, it saves the
    /// same again.
    #[test]
    fn a_mixed_ipv4_and_ipv6_save_restores_to_the_same_save() {
        let rules = concat!(
            "-A -t 198.18.0.10:80 -s rr\n",
            "-a -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 1\n",
            "-a -t 198.18.0.10:80 -r [2001:db8:1::2]:80 -i -w 1 --tun-type ipip\n",
            "-A -t [2001:db8::10]:80 -s sh -p 600 -M 64 -b sh-port\n",
            "-a -t [2001:db8::10]:80 -r [2001:db8:1::1]:8080 -m -w 2\n",
            "-a -t [2001:db8::10]:80 -r [2001:db8:1::3]:80 -g -w 1\n",
            "-A -u [2001:db8::10]:53 -s rr\n",
            "-a -u [2001:db8::10]:53 -r 198.18.11.2:53 -i -w 1 --tun-type ipip\n",
        );
        let state = restored(rules);
        let v6 = &state.at(1).unwrap().spec;
        assert!(v6.id.vip.is_ipv6());
        assert_eq!(
            v6.persistence,
            Some(Persistence {
                timeout: 600,
                prefix: 64
            })
        );
        let saved = save(&view(&state));
        assert_eq!(saved, rules);
        let again = restored(&saved);
        assert_eq!(again, state);
        assert_eq!(save(&view(&again)), saved);

        // `-L -n`: IPv6 names are not cut at 33 (service) or 28 (server)
        // bytes, as ipvsadm cuts only IPv4 ones; mask as a prefix length.
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  198.18.0.10:80 rr\n",
            "  -> 198.18.11.2:8080             Masq    1      0          0         \n",
            "  -> [2001:db8:1::2]:80           Tunnel  1      0          0         \n",
            "TCP  [2001:db8::10]:80 sh (sh-port) persistent 600 mask 64\n",
            "  -> [2001:db8:1::1]:8080         Masq    2      0          0         \n",
            "  -> [2001:db8:1::3]:80           Route   1      0          0         \n",
            "UDP  [2001:db8::10]:53 rr\n",
            "  -> 198.18.11.2:53               Tunnel  1      0          0         \n",
        );
        assert_eq!(list(&view(&state), &ListOptions::default()), expected);
        let long = "TCP  [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 rr";
        let mut wide = State::default();
        wide.apply_all(
            &super::super::parse_restore(concat!(
                "-A -t [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 -s rr\n",
                "-a -t [2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:65535 -r [2001:db8:ffff:ffff:ffff:ffff:ffff:fffe]:80 -m\n",
            ))
            .unwrap(),
        )
        .unwrap();
        let listing = list(&view(&wide), &ListOptions::default());
        assert!(listing.contains(&format!("{long}\n")), "{listing}");
        assert!(
            listing.contains("  -> [2001:db8:ffff:ffff:ffff:ffff:ffff:fffe]:80 Masq    1"),
            "{listing}"
        );
    }

    /// Families cross only through a tunnel, as in IPVS.
    #[test]
    fn a_real_server_of_the_other_family_needs_a_tunnel() {
        let mut state = State::default();
        for (method, ok) in [("-m", false), ("-g", false), ("-i", true)] {
            let rules = format!(
                "-A -t [2001:db8::10]:80 -s rr\n-a -t [2001:db8::10]:80 -r 198.18.11.2:80 {method}\n"
            );
            let result = state.apply_all(&super::super::parse_restore(&rules).unwrap());
            assert_eq!(result.is_ok(), ok, "{method}: {result:?}");
            state = State::default();
        }
    }

    #[test]
    fn timeouts_line() {
        assert_eq!(
            timeouts(&IpvsTimeouts {
                tcp: 900,
                tcp_fin: 120,
                udp: 300
            }),
            "Timeout (tcp tcpfin udp): 900 120 300\n"
        );
    }

    #[test]
    fn save_writes_restorable_rules() {
        let text = save(&snapshot());
        assert_eq!(
            text,
            "-A -t 192.168.0.100:80 -s wlc\n-a -t 192.168.0.100:80 -r 10.0.0.1:80 -g -w 1\n-a -t 192.168.0.100:80 -r 10.0.0.2:80 -g -w 3\n\
-A -t 192.168.0.100:443 -s rr\n-a -t 192.168.0.100:443 -r 10.0.0.1:443 -m -w 1\n\
-A -u 192.168.0.100:53 -s rr\n-a -u 192.168.0.100:53 -r 10.0.0.1:53 -i -w 1 --tun-type ipip\n"
        );
        assert_eq!(super::super::parse_restore(&text).unwrap().len(), 7);
    }

    #[test]
    fn connection_list_matches_the_reference_byte_for_byte() {
        let row = |protocol, expire_s, state: &str, src: &str, vip: &str, dst: &str| ConnView {
            protocol,
            expire_s,
            state: state.to_string(),
            source: src.parse().unwrap(),
            virtual_addr: vip.parse().unwrap(),
            destination: dst.parse().unwrap(),
        };
        let rows = [
            row(
                Protocol::Tcp,
                898,
                "ESTABLISHED",
                "203.0.113.7:51514",
                "192.168.0.100:80",
                "10.0.0.2:80",
            ),
            row(
                Protocol::Tcp,
                112,
                "FIN_WAIT",
                "203.0.113.9:40022",
                "192.168.0.100:80",
                "10.0.0.1:80",
            ),
            row(
                Protocol::Udp,
                281,
                "UDP",
                "198.51.100.4:33001",
                "192.168.0.100:53",
                "10.0.0.1:53",
            ),
            row(
                Protocol::Tcp,
                359,
                "NONE",
                "203.0.113.7:0",
                "192.168.0.100:443",
                "10.0.0.1:443",
            ),
        ];
        // §7.6, as ipvsadm prints it.
        let expected = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 14:58  ESTABLISHED 203.0.113.7:51514  192.168.0.100:80   10.0.0.2:80
TCP 01:52  FIN_WAIT    203.0.113.9:40022  192.168.0.100:80   10.0.0.1:80
UDP 04:41  UDP         198.51.100.4:33001 192.168.0.100:53   10.0.0.1:53
TCP 05:59  NONE        203.0.113.7:0      192.168.0.100:443  10.0.0.1:443
";
        assert_eq!(connections(&rows), expected);
        // Minutes do not wrap at 60.
        let long = [row(
            Protocol::Tcp,
            7_200,
            "ESTABLISHED",
            "1.2.3.4:5",
            "6.7.8.9:80",
            "10.0.0.1:80",
        )];
        assert!(connections(&long).contains("TCP 120:00 ESTABLISHED"));
    }

    fn names() -> crate::ipvsadm::names::NameTable {
        use crate::ipvsadm::names::NameTable;
        NameTable::default()
            .with_host("192.168.0.100".parse().unwrap(), "www.example.com")
            .with_host(
                "10.0.0.1".parse().unwrap(),
                "a-rather-long-host-name.backends.example.com",
            )
            .with_service(80, Protocol::Tcp, "http")
            .with_service(443, Protocol::Tcp, "https")
            .with_service(53, Protocol::Udp, "domain")
    }

    /// ipvsadm's cuts: a service's "%-4s %s" at 33 bytes, a server's name
    /// at 28; numbers where there is no name.
    #[test]
    fn list_prints_names_cut_as_ipvsadm_cuts_them() {
        let expected = concat!(
            "IP Virtual Server version 1.2.1 (size=4096)\n",
            "Prot LocalAddress:Port Scheduler Flags\n",
            "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n",
            "TCP  www.example.com:http wlc\n",
            "  -> a-rather-long-host-name.back Route   1      12         150       \n",
            "  -> 10.0.0.2:http                Route   3      40         411       \n",
            "TCP  www.example.com:https rr\n",
            "  -> a-rather-long-host-name.back Masq    1      5          9         \n",
            "UDP  www.example.com:domain rr\n",
            "  -> a-rather-long-host-name.back Tunnel  1      0          87        \n",
        );
        assert_eq!(
            list_named(&snapshot(), &ListOptions::default(), &names()),
            expected
        );
        // A long service name is cut at 33 bytes, scheduler after it.
        let long = names().with_host(
            "192.168.0.100".parse().unwrap(),
            "virtual-service.frontends.example.com",
        );
        let out = list_named(&snapshot(), &ListOptions::default(), &long);
        assert!(
            out.contains("\nTCP  virtual-service.frontends.ex wlc\n"),
            "{out}"
        );
        let stats = list_named(
            &snapshot(),
            &ListOptions {
                format: ListFormat::Stats,
                ..Default::default()
            },
            &long,
        );
        assert!(
            stats.contains("\nTCP  virtual-service.frontends.ex        0"),
            "{stats}"
        );
    }

    #[test]
    fn save_writes_names_whole() {
        let saved = save_named(&snapshot(), &names());
        assert_eq!(
            saved,
            concat!(
                "-A -t www.example.com:http -s wlc\n",
                "-a -t www.example.com:http -r a-rather-long-host-name.backends.example.com:http -g -w 1\n",
                "-a -t www.example.com:http -r 10.0.0.2:http -g -w 3\n",
                "-A -t www.example.com:https -s rr\n",
                "-a -t www.example.com:https -r a-rather-long-host-name.backends.example.com:https -m -w 1\n",
                "-A -u www.example.com:domain -s rr\n",
                "-a -u www.example.com:domain -r a-rather-long-host-name.backends.example.com:domain -i -w 1 --tun-type ipip\n",
            )
        );
        // Numeric names are -S -n.
        assert_eq!(save_named(&snapshot(), &Numeric), save(&snapshot()));
    }

    #[test]
    fn connections_print_names_uncut() {
        let rows = [ConnView {
            protocol: Protocol::Tcp,
            expire_s: 898,
            state: "ESTABLISHED".into(),
            source: "203.0.113.7:51514".parse().unwrap(),
            virtual_addr: "192.168.0.100:80".parse().unwrap(),
            destination: "10.0.0.1:80".parse().unwrap(),
        }];
        assert_eq!(
            connections_named(&rows, &names()),
            concat!(
                "IPVS connection entries\n",
                "pro expire state       source             virtual            destination\n",
                "TCP 14:58  ESTABLISHED 203.0.113.7:51514  www.example.com:http a-rather-long-host-name.backends.example.com:http\n",
            )
        );
    }
}
