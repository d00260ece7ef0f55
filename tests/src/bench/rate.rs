//! Section 2: packets per second through a real topology. The client's
//! kernel makes 64-byte UDP frames with live-frames test_run (a program
//! that answers `XDP_TX`, so each run transmits the frame out of the
//! client's veth), the director forwards them one of four ways, and the
//! real servers count and drop them in XDP. Generator, director and sinks
//! share the machine's cores, so the figures are comparable only with
//! each other, side by side in one run.
//!
//! ```text
//!  client ── cli0 [director] srv1 ── real 1 (sink)
//!                            srv2 ── real 2 (sink)
//! ```

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use lvs_datapath::{StandaloneXdp, XdpAttachMode};

use super::{median, testbed::udp, Plan, Throughput};
use crate::{Lab, VIP};

const PORT: u16 = 9;
const FRAME_LEN: usize = 64;
/// Frames per test_run call: long enough to hide the syscall, short
/// enough to stop close to the trial's end.
const REPEAT: u32 = 1 << 17;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Path {
    Lvs,
    BareRedirect,
    Forwarding,
    NftDnat,
}

impl Path {
    const ALL: [Path; 4] = [
        Path::Lvs,
        Path::BareRedirect,
        Path::Forwarding,
        Path::NftDnat,
    ];

    fn name(self) -> &'static str {
        match self {
            Path::Lvs => "lvs (XDP NAT, established flow)",
            Path::BareRedirect => "bare XDP redirect (ceiling)",
            Path::Forwarding => "kernel IPv4 forwarding",
            Path::NftDnat => "nftables DNAT",
        }
    }

    fn note(self) -> &'static str {
        match self {
            Path::Lvs => "lvsd (--datapath xdp) on every director link; a UDP service DNATs the flow to real 1 (conntrack, rewrite, checksums, fib lookup, redirect)",
            Path::BareRedirect => "one XDP program on cli0 redirects every frame to srv1 without parsing it",
            Path::Forwarding => "the client sends to real 1's address; the no-op XDP program on cli0 only lets veth take XDP frames",
            Path::NftDnat => "an nftables prerouting DNAT of VIP:9 to real 1 (conntrack); the no-op XDP program on cli0 as for forwarding",
        }
    }

    fn destination(self) -> [u8; 4] {
        match self {
            Path::Forwarding => [198, 18, 11, 2],
            _ => VIP.octets(),
        }
    }
}

/// What a path left on the director, undone by `teardown`.
enum Installed {
    Xdp(XdpAttachMode),
    Lvsd,
}

fn install(lab: &mut Lab, path: Path) -> Result<Installed> {
    let attach = |program: fn() -> Result<StandaloneXdp, lvs_datapath::DatapathError>| {
        lab.director
            .run(|| Ok(program()?.attach_persistent("cli0")?))
            .map(Installed::Xdp)
    };
    match path {
        Path::Lvs => {
            let config = lab.dir.join("rate.toml");
            std::fs::write(
                &config,
                format!(
                    "[[service]]\nprotocol = \"udp\"\naddress = \"{VIP}:{PORT}\"\nscheduler = \"rr\"\n[[service.real]]\naddress = \"198.18.11.2:{PORT}\"\nmethod = \"nat\"\n"
                ),
            )?;
            // The XDP datapath, as on a NIC: this section measures XDP speed
            // (every receiving peer here runs an XDP program).
            lab.start_lvsd_with(Some(&config), &["--datapath", "xdp"])?;
            Ok(Installed::Lvsd)
        }
        Path::BareRedirect => attach(|| StandaloneXdp::bare_redirect("srv1")),
        Path::Forwarding => attach(StandaloneXdp::pass),
        Path::NftDnat => {
            lab.director.exec(&[
                "nft",
                &format!(
                    "add table ip lvsbench; add chain ip lvsbench pre {{ type nat hook prerouting priority dstnat; }}; add rule ip lvsbench pre ip daddr {VIP} udp dport {PORT} dnat to 198.18.11.2:{PORT}"
                ),
            ])?;
            attach(StandaloneXdp::pass)
        }
    }
}

fn teardown(lab: &mut Lab, path: Path, installed: Installed) -> Result<()> {
    match installed {
        Installed::Lvsd => {
            if let Some(mut lvsd) = lab.lvsd.take() {
                lvsd.stop();
            }
        }
        Installed::Xdp(mode) => lab
            .director
            .run(|| Ok(StandaloneXdp::detach_persistent("cli0", mode)?))?,
    }
    if path == Path::NftDnat {
        lab.director
            .exec(&["nft", "delete", "table", "ip", "lvsbench"])?;
    }
    Ok(())
}

fn delivered(lab: &Lab) -> Result<u64> {
    lab.reals
        .iter()
        .map(|rs| rs.ns.link_stats("eth0").map(|(_, packets)| packets))
        .sum()
}

/// Run the generator for `trial`: `(frames sent, time taken)`.
fn generate(lab: &Lab, frame: &[u8], trial: Duration) -> Result<(u64, Duration)> {
    lab.client.run(|| {
        let frame: &[u8; lvs_common::BENCH_FRAME_LEN] = frame
            .try_into()
            .context("the generator sends 64-byte frames")?;
        let mut generator = StandaloneXdp::generator(frame)?;
        let started = Instant::now();
        let mut sent = 0;
        while started.elapsed() < trial {
            generator.live_frames("eth0", frame, REPEAT)?;
            sent += u64::from(REPEAT);
        }
        Ok((sent, started.elapsed()))
    })
}

/// One trial of `path`: packets per second delivered, and the share of
/// generated frames that arrived.
fn trial(lab: &mut Lab, path: Path, frame: &[u8], length: Duration) -> Result<(f64, f64)> {
    let installed = install(lab, path)?;
    let result = (|| {
        // The first frames open the flow (and fill caches); not counted.
        generate(lab, frame, Duration::from_millis(200))?;
        let before = delivered(lab)?;
        let (sent, took) = generate(lab, frame, length)?;
        std::thread::sleep(Duration::from_millis(100));
        let got = delivered(lab)? - before;
        anyhow::Ok((got as f64 / took.as_secs_f64(), got as f64 / sent as f64))
    })();
    teardown(lab, path, installed)?;
    result.with_context(|| format!("measuring {}", path.name()))
}

/// lvs first, then the bare redirect, kernel forwarding and nftables DNAT.
pub fn run(plan: Plan) -> Result<Vec<Throughput>> {
    let mut lab = Lab::new("lvsrate", 2)?;
    for (i, rs) in (1u8..).zip(&lab.reals) {
        rs.ns
            .run(|| Ok(StandaloneXdp::sink()?.attach_persistent("eth0")?))?;
        // The sinks drop ARP too: the director must not need to ask.
        let (mac, _) = rs.ns.link_stats("eth0")?;
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        let addr = Ipv4Addr::new(198, 18, 10 + i, 2).to_string();
        let dev = format!("srv{i}");
        lab.director.exec(&[
            "ip",
            "neigh",
            "replace",
            &addr,
            "lladdr",
            &mac,
            "dev",
            &dev,
            "nud",
            "permanent",
        ])?;
    }
    let (client_mac, _) = lab.client.link_stats("eth0")?;
    let (director_mac, _) = lab.director.link_stats("cli0")?;
    let mut results: Vec<(Path, Vec<f64>, Vec<f64>)> =
        Path::ALL.iter().map(|&p| (p, vec![], vec![])).collect();
    for _ in 0..plan.trials() {
        for (path, rates, shares) in &mut results {
            let frame = udp(
                ([198, 18, 1, 2], 40_000),
                (path.destination(), PORT),
                client_mac,
                director_mac,
                FRAME_LEN,
            );
            let (rate, share) = trial(&mut lab, *path, &frame, plan.trial())?;
            rates.push(rate);
            shares.push(share);
        }
    }
    Ok(results
        .into_iter()
        .map(|(path, rates, shares)| Throughput {
            path: path.name().to_string(),
            per_second: median(&rates),
            trials: rates,
            note: format!(
                "{}; {:.0}% of generated frames arrived",
                path.note(),
                100.0 * median(&shares)
            ),
        })
        .collect())
}
