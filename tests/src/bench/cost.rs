//! Section 1: what one packet costs the program, through
//! `BPF_PROG_TEST_RUN`. Each sample is one call with repeat = 1, so the
//! kernel copies the frame afresh and a path that rewrites in place never
//! sees its own output. The no-op program is timed the same way, in the
//! same rounds, and every path is reported as a ratio to it. Paths take
//! turns in rounds, so a burst of noise on the machine hits them all.

use anyhow::{bail, Result};
use lvs::controller::Controller;
use lvs_datapath::{KernelDatapath, Limits, ProgramStats, StandaloneXdp, TestRun};
use serde::Serialize;

use std::net::Ipv6Addr;

use super::{
    testbed::{self, client, tcp, tcp6, CLIENT, CLIENT6, XDP_PASS, XDP_REDIRECT},
    Plan,
};

/// One path's cost, in nanoseconds per packet.
#[derive(Clone, Debug, Serialize)]
pub struct PathCost {
    pub path: String,
    pub median_ns: f64,
    pub p90_ns: f64,
    /// Median over the no-op program's median.
    pub ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct CostReport {
    /// Calls per path.
    pub samples: usize,
    pub floor: PathCost,
    pub paths: Vec<PathCost>,
    pub programs: Vec<ProgramStats>,
}

const VIP_NAT: [u8; 4] = [198, 18, 0, 10];
const VIP_DR: [u8; 4] = [198, 18, 0, 20];
const VIP_TUN: [u8; 4] = [198, 18, 0, 23];
const VIP_SH: [u8; 4] = [198, 18, 0, 30];
const VIP_LBLC: [u8; 4] = [198, 18, 0, 32];
const VIP_PERSIST: [u8; 4] = [198, 18, 0, 33];
const VIP_WLC: [u8; 4] = [198, 18, 0, 34];
const VIP_MH: [u8; 4] = [198, 18, 0, 35];
const VIP6_NAT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
const VIP6_DR: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);
const VIP6_TUN: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x23);
/// Payload that makes the established TCP frames 64 bytes long.
const PAYLOAD: &[u8] = b"0123456789";

/// A `[[service]]` on port 80 of `vip` with `reals` as `(address, method)`.
pub fn service(vip: [u8; 4], scheduler: &str, extra: &str, reals: &[(String, &str)]) -> String {
    let [a, b, c, d] = vip;
    let mut s = format!(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"{a}.{b}.{c}.{d}:80\"\nscheduler = \"{scheduler}\"\n{extra}\n"
    );
    for (addr, method) in reals {
        s += &format!("[[service.real]]\naddress = \"{addr}\"\nmethod = \"{method}\"\n");
    }
    s
}

fn nat_reals() -> Vec<(String, &'static str)> {
    (1..=3)
        .map(|i| (format!("198.18.1{i}.2:8080"), "nat"))
        .collect()
}

/// An IPv6 `[[service]]` on port 80 of `vip`.
fn service6(vip: Ipv6Addr, reals: &[(&str, &str)]) -> String {
    let mut s =
        format!("[[service]]\nprotocol = \"tcp\"\naddress = \"[{vip}]:80\"\nscheduler = \"rr\"\n");
    for (addr, method) in reals {
        s += &format!("[[service.real]]\naddress = \"{addr}\"\nmethod = \"{method}\"\n");
    }
    s
}

fn config() -> String {
    let nat = nat_reals();
    [
        service6(
            VIP6_NAT,
            &[
                ("[2001:db8:11::2]:8080", "nat"),
                ("[2001:db8:12::2]:8080", "nat"),
                ("[2001:db8:13::2]:8080", "nat"),
            ],
        ),
        service6(VIP6_DR, &[("[2001:db8:12::3]:80", "route")]),
        service6(VIP6_TUN, &[("[2001:db8:11::3]:80", "tunnel")]),
        service(VIP_NAT, "rr", "", &nat),
        service(VIP_DR, "rr", "", &[("198.18.12.3:80".into(), "route")]),
        service(VIP_TUN, "rr", "", &[("198.18.11.3:80".into(), "tunnel")]),
        service(VIP_SH, "sh", "", &nat),
        service(VIP_LBLC, "lblc", "", &nat),
        service(VIP_PERSIST, "rr", "persistent = 300", &nat),
        service(VIP_WLC, "wlc", "", &nat),
        // Servers of its own (another port), so that its connections keep
        // one entry, as sh's do: the row compares the lookups.
        service(
            VIP_MH,
            "mh",
            "",
            &(1..=3)
                .map(|i| (format!("198.18.1{i}.2:8081"), "nat"))
                .collect::<Vec<_>>(),
        ),
    ]
    .concat()
}

/// The frames one path is timed on.
enum Frames {
    /// The same frame every call (an established flow).
    Same(Vec<u8>),
    /// A new flow every call.
    Fresh(Vec<Vec<u8>>),
}

struct Case {
    path: &'static str,
    ingress: Option<u32>,
    frames: Frames,
    expect: u32,
    durations: Vec<f64>,
}

impl Case {
    fn frame(&self, call: usize) -> &[u8] {
        match &self.frames {
            Frames::Same(f) => f,
            Frames::Fresh(fs) => &fs[call],
        }
    }
}

fn ifindex(name: &str) -> Result<u32> {
    Ok(nix::net::if_::if_nametoindex(name)?)
}

pub(super) fn run(
    c: &Controller<KernelDatapath>,
    ingress: Option<u32>,
    frame: &[u8],
) -> Result<TestRun> {
    Ok(c.datapath().test_run_from(ingress, frame)?)
}

/// Open a TCP flow through `vip` and bring it to ESTABLISHED: the ACK
/// frame that then keeps it there, and the real server it reached.
fn establish(
    c: &Controller<KernelDatapath>,
    vip: [u8; 4],
    sport: u16,
) -> Result<(Vec<u8>, TestRun)> {
    let syn = run(c, None, &tcp((CLIENT, sport), (vip, 80), "S", b""))?;
    if syn.action != XDP_REDIRECT {
        bail!(
            "the SYN to {vip:?} was not forwarded (XDP action {})",
            syn.action
        );
    }
    let ack = tcp((CLIENT, sport), (vip, 80), "A", PAYLOAD);
    run(c, None, &ack)?;
    Ok((ack, syn))
}

/// `establish` in IPv6.
fn establish6(
    c: &Controller<KernelDatapath>,
    vip: Ipv6Addr,
    sport: u16,
) -> Result<(Vec<u8>, TestRun)> {
    let syn = run(c, None, &tcp6((CLIENT6, sport), (vip, 80), "S", b""))?;
    if syn.action != XDP_REDIRECT {
        bail!(
            "the SYN to {vip} was not forwarded (XDP action {})",
            syn.action
        );
    }
    let ack = tcp6((CLIENT6, sport), (vip, 80), "A", PAYLOAD);
    run(c, None, &ack)?;
    Ok((ack, syn))
}

/// New IPv6 flows to `vip`, from client ports `first` on (one address
/// per 60,000 ports).
fn syns6(vip: Ipv6Addr, first: u32, count: usize) -> Frames {
    Frames::Fresh(
        (first..first + count as u32)
            .map(|n| {
                let (host, port) = client(n);
                let mut src = CLIENT6.octets();
                src[12..].copy_from_slice(&host);
                tcp6((src.into(), port), (vip, 80), "S", b"")
            })
            .collect(),
    )
}

fn syns(vip: [u8; 4], first: u32, count: usize) -> Frames {
    Frames::Fresh(
        (first..first + count as u32)
            .map(|n| tcp(client(n), (vip, 80), "S", b""))
            .collect(),
    )
}

fn cases(c: &Controller<KernelDatapath>, samples: usize) -> Result<Vec<Case>> {
    let case = |path, ingress, frames, expect| Case {
        path,
        ingress,
        frames,
        expect,
        durations: Vec::with_capacity(samples),
    };
    // NAT: the client's SYN, the real server's SYN-ACK, the client's ACK.
    let (nat_in, syn) = establish(c, VIP_NAT, 40_000)?;
    let real = [syn.frame[30], syn.frame[31], syn.frame[32], syn.frame[33]];
    let link = ifindex(&format!("srv{}", real[2] - 10))?;
    run(
        c,
        Some(link),
        &tcp((real, 8080), (CLIENT, 40_000), "SA", b""),
    )?;
    let nat_out = tcp((real, 8080), (CLIENT, 40_000), "A", PAYLOAD);
    let (dr, _) = establish(c, VIP_DR, 40_001)?;
    let (tun, _) = establish(c, VIP_TUN, 40_002)?;
    // The same in IPv6.
    let (nat6_in, syn6) = establish6(c, VIP6_NAT, 40_000)?;
    let real6: [u8; 16] = syn6.frame[38..54].try_into()?;
    let real6 = Ipv6Addr::from(real6);
    let link6 = ifindex(&format!("srv{}", real6.segments()[2] - 0x10))?;
    run(
        c,
        Some(link6),
        &tcp6((real6, 8080), (CLIENT6, 40_000), "SA", b""),
    )?;
    let nat6_out = tcp6((real6, 8080), (CLIENT6, 40_000), "A", PAYLOAD);
    let (dr6, _) = establish6(c, VIP6_DR, 40_001)?;
    let (tun6, _) = establish6(c, VIP6_TUN, 40_002)?;
    let batch = samples as u32;
    Ok(vec![
        case(
            "not for a service (pass)",
            None,
            Frames::Same(tcp((CLIENT, 40_003), ([198, 18, 99, 1], 80), "A", PAYLOAD)),
            XDP_PASS,
        ),
        case(
            "NAT inbound, established",
            None,
            Frames::Same(nat_in),
            XDP_REDIRECT,
        ),
        case(
            "NAT outbound, established",
            Some(link),
            Frames::Same(nat_out),
            XDP_REDIRECT,
        ),
        case(
            "NAT SYN, new flow (rr ring)",
            None,
            syns(VIP_NAT, 0, samples),
            XDP_REDIRECT,
        ),
        case("DR established", None, Frames::Same(dr), XDP_REDIRECT),
        case(
            "DR SYN, new flow",
            None,
            syns(VIP_DR, batch, samples),
            XDP_REDIRECT,
        ),
        case("TUN established", None, Frames::Same(tun), XDP_REDIRECT),
        case(
            "TUN SYN, new flow",
            None,
            syns(VIP_TUN, 2 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "SYN, wlc forecast ring",
            None,
            syns(VIP_WLC, 3 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "SYN, sh buckets",
            None,
            syns(VIP_SH, 4 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "SYN, lblc locality",
            None,
            syns(VIP_LBLC, 5 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "SYN, mh table",
            None,
            syns(VIP_MH, 8 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "IPv6 NAT inbound, established",
            None,
            Frames::Same(nat6_in),
            XDP_REDIRECT,
        ),
        case(
            "IPv6 NAT outbound, established",
            Some(link6),
            Frames::Same(nat6_out),
            XDP_REDIRECT,
        ),
        case(
            "IPv6 NAT SYN, new flow (rr ring)",
            None,
            syns6(VIP6_NAT, 6 * batch, samples),
            XDP_REDIRECT,
        ),
        case("IPv6 DR established", None, Frames::Same(dr6), XDP_REDIRECT),
        case(
            "IPv6 DR SYN, new flow",
            None,
            syns6(VIP6_DR, 7 * batch, samples),
            XDP_REDIRECT,
        ),
        case(
            "IPv6 TUN established",
            None,
            Frames::Same(tun6),
            XDP_REDIRECT,
        ),
        // One client address, a new port each time: the template hits.
        case(
            "SYN, persistent (template)",
            None,
            Frames::Fresh(
                (0..samples)
                    .map(|n| tcp((CLIENT, 1024 + n as u16), (VIP_PERSIST, 80), "S", b""))
                    .collect(),
            ),
            XDP_REDIRECT,
        ),
    ])
}

/// Time one call per frame, each frame `expect`ing that XDP action.
pub(super) fn time_calls<'a>(
    c: &Controller<KernelDatapath>,
    path: &str,
    ingress: Option<u32>,
    frames: impl IntoIterator<Item = &'a [u8]>,
    expect: u32,
) -> Result<Vec<f64>> {
    frames
        .into_iter()
        .map(|frame| {
            let out = run(c, ingress, frame)?;
            if out.action != expect {
                bail!(
                    "`{path}` ended in XDP action {} instead of {expect}: the bench is not measuring that path",
                    out.action
                );
            }
            Ok(out.duration.as_nanos() as f64)
        })
        .collect()
}

/// The no-op program's median over `samples` calls on `frame`.
pub(super) fn floor(frame: &[u8], samples: usize) -> Result<f64> {
    let mut noop = StandaloneXdp::pass()?;
    let durations = (0..samples)
        .map(|_| Ok(noop.test_run(frame)?.duration.as_nanos() as f64))
        .collect::<Result<Vec<_>>>()?;
    Ok(super::median(&durations))
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summarise(path: &str, durations: &mut [f64], floor: f64) -> PathCost {
    durations.sort_by(f64::total_cmp);
    let median = percentile(durations, 0.5);
    PathCost {
        path: path.to_string(),
        median_ns: median,
        p90_ns: percentile(durations, 0.9),
        ratio: super::ratio(median, floor),
    }
}

pub fn run_section(plan: Plan) -> Result<CostReport> {
    let samples = if plan.quick { 4_000 } else { 30_000 };
    let rounds = 20;
    let per_round = samples / rounds;
    testbed::in_private_netns(|| {
        let limits = Limits {
            connections: 1 << 20,
            ..Limits::default()
        };
        let c = testbed::dual_stack_director(3, limits, &config())?;
        let mut cases = cases(&c, samples)?;
        let mut noop = StandaloneXdp::pass()?;
        let floor_frame = match &cases[0].frames {
            Frames::Same(f) => f.clone(),
            Frames::Fresh(_) => unreachable!("the pass case uses one frame"),
        };
        let mut floor = Vec::with_capacity(samples);
        for round in 0..rounds {
            for _ in 0..per_round {
                floor.push(noop.test_run(&floor_frame)?.duration.as_nanos() as f64);
            }
            for case in &mut cases {
                let frames = (0..per_round).map(|k| case.frame(round * per_round + k));
                let durations = time_calls(&c, case.path, case.ingress, frames, case.expect)?;
                case.durations.extend(durations);
            }
        }
        let floor = summarise("no-op XDP program (floor)", &mut floor, f64::NAN);
        let floor = PathCost {
            ratio: 1.0,
            ..floor
        };
        let paths = cases
            .iter_mut()
            .map(|case| summarise(case.path, &mut case.durations, floor.median_ns))
            .collect();
        let mut programs = c.datapath().program_stats()?;
        programs.push(StandaloneXdp::decap()?.program_stats()?);
        programs.push(noop.program_stats()?);
        Ok(CostReport {
            samples: rounds * per_round,
            floor,
            paths,
            programs,
        })
    })
}
