//! A director in a private network namespace for `BPF_PROG_TEST_RUN`: veth
//! links with permanent neighbours, so `bpf_fib_lookup` resolves as on a
//! router, and the real controller applying a TOML config. The namespace
//! belongs to one thread and vanishes with it, whatever happens.
//!
//! ```text
//!  cli0 198.18.1.1 ── client 198.18.1.2
//!  srvN 198.18.1N.1 ── NAT real 198.18.1N.2, DR/TUN reals 198.18.1N.3..
//! ```

use std::{net::Ipv4Addr, process::Command, thread};

use anyhow::{anyhow, bail, Context, Result};
use etherparse::PacketBuilder;
use lvs::controller::Controller;
use lvs_common::Settings;
use lvs_datapath::{KernelDatapath, Limits};
use lvs_state::config;

pub const CLIENT: [u8; 4] = [198, 18, 1, 2];
pub const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
pub const DIRECTOR_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
/// Real servers on each `srvN` link: .2 (NAT) and .3 to .9 (DR, TUN).
const HOSTS_PER_LINK: u8 = 8;

pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;

/// Run `f` on a thread of its own in a fresh network namespace.
pub fn in_private_netns<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .context("unshare(CLONE_NEWNET)")?;
            f()
        })
        .join()
        .map_err(|_| anyhow!("the bench thread panicked"))?
    })
}

fn sh(cmd: &str) -> Result<()> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .context("spawning sh")?;
    if !out.status.success() {
        bail!(
            "`{cmd}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn mac(m: [u8; 6]) -> String {
    m.map(|b| format!("{b:02x}")).join(":")
}

/// The director's links in the calling thread's namespace: `cli0` and
/// `links` real-server links, every neighbour permanent. Then the
/// director attached to all of them and `config` applied.
pub fn director(links: u8, limits: Limits, config: &str) -> Result<Controller<KernelDatapath>> {
    make_links(links)?;
    attach(links, limits, config)
}

/// `director`, with IPv6 on the same links too: 2001:db8:1::1/64 on
/// `cli0` (client 2001:db8:1::2), 2001:db8:1N::1/64 on `srvN` (hosts
/// 2001:db8:1N::2 and on), every neighbour permanent, forwarding on.
pub fn dual_stack_director(
    links: u8,
    limits: Limits,
    config: &str,
) -> Result<Controller<KernelDatapath>> {
    make_links(links)?;
    sh(&format!(
        "sysctl -qw net.ipv6.conf.all.forwarding=1 net.ipv6.conf.cli0.disable_ipv6=0 && ip addr add 2001:db8:1::1/64 dev cli0 nodad && ip -6 neigh replace {CLIENT6} lladdr {} dev cli0 nud permanent",
        mac(CLIENT_MAC)
    ))?;
    for i in 1..=links {
        let dev = format!("srv{i}");
        sh(&format!(
            "sysctl -qw net.ipv6.conf.{dev}.disable_ipv6=0 && ip addr add 2001:db8:{:x}::1/64 dev {dev} nodad",
            0x10 + u16::from(i)
        ))?;
        for host in 2..2 + HOSTS_PER_LINK {
            sh(&format!(
                "ip -6 neigh replace 2001:db8:{:x}::{host:x} lladdr {} dev {dev} nud permanent",
                0x10 + u16::from(i),
                mac([2, 6, 0, 0, 10 + i, host])
            ))?;
        }
    }
    attach(links, limits, config)
}

/// The client of the IPv6 links.
pub const CLIENT6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);

fn make_links(links: u8) -> Result<()> {
    sh("ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1")?;
    sh(&format!(
        "ip link add cli0 address {} type veth peer name cli0p && ip addr add 198.18.1.1/24 dev cli0 && ip link set cli0 up && ip link set cli0p up && ip neigh replace 198.18.1.2 lladdr {} dev cli0 nud permanent",
        mac(DIRECTOR_MAC),
        mac(CLIENT_MAC)
    ))?;
    for i in 1..=links {
        let dev = format!("srv{i}");
        sh(&format!(
            "ip link add {dev} type veth peer name {dev}p && ip addr add {}/24 dev {dev} && ip link set {dev} up && ip link set {dev}p up",
            Ipv4Addr::new(198, 18, 10 + i, 1)
        ))?;
        for host in 2..2 + HOSTS_PER_LINK {
            sh(&format!(
                "ip neigh replace {} lladdr {} dev {dev} nud permanent",
                Ipv4Addr::new(198, 18, 10 + i, host),
                mac([2, 0, 0, 0, 10 + i, host])
            ))?;
        }
    }
    Ok(())
}

fn attach(links: u8, limits: Limits, config: &str) -> Result<Controller<KernelDatapath>> {
    let ifaces: Vec<String> = std::iter::once("cli0".to_string())
        .chain((1..=links).map(|i| format!("srv{i}")))
        .collect();
    let datapath =
        KernelDatapath::attach(&ifaces, Settings::default(), limits).context("attaching")?;
    let mut controller = Controller::new(datapath);
    controller
        .apply(&config::parse(config, "bench.toml")?)
        .context("applying the bench config")?;
    Ok(controller)
}

/// A TCP frame from the client's link; `flags` holds `S` and/or `A`.
pub fn tcp(src: ([u8; 4], u16), dst: ([u8; 4], u16), flags: &str, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv4(src.0, dst.0, 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("writing to a Vec");
    v
}

/// `tcp` in IPv6.
pub fn tcp6(
    src: (std::net::Ipv6Addr, u16),
    dst: (std::net::Ipv6Addr, u16),
    flags: &str,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(CLIENT_MAC, DIRECTOR_MAC)
        .ipv6(src.0.octets(), dst.0.octets(), 64)
        .tcp(src.1, dst.1, 1000, 64240);
    let b = if flags.contains('S') { b.syn() } else { b };
    let b = if flags.contains('A') { b.ack(1) } else { b };
    let mut v = Vec::new();
    b.write(&mut v, payload).expect("writing to a Vec");
    v
}

/// A UDP frame of `len` bytes in all (Ethernet header included, no FCS).
pub fn udp(
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    smac: [u8; 6],
    dmac: [u8; 6],
    len: usize,
) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2(smac, dmac)
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut v, &vec![0x5a; len.saturating_sub(42)])
        .expect("writing to a Vec");
    v
}

/// The `n`th distinct client `(address, port)`: ports first, then addresses.
pub fn client(n: u32) -> ([u8; 4], u16) {
    let port = 1024 + (n % 60_000) as u16;
    let host = n / 60_000;
    ([198, 18, 100 + (host >> 8) as u8, host as u8], port)
}
