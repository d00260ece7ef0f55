//! Section 6: a SYN flood against a connection table holding established
//! connections. A DR service's table of N entries (N = 65,536 quick,
//! 1,048,576 full) first gets 10,000 connections brought to ESTABLISHED (a
//! SYN then an ACK each, from distinct clients); then SYNs from distinct
//! spoofed sources (a deterministic xorshift; 2 × N quick, 5,000,000 full)
//! hit the VIP. The figures: what the flood's SYNs came to (the datapath's
//! verdict counters and the half-open entries they evicted), what a flood
//! SYN costs, how many of the established connections still forward
//! afterwards (their entries survived), and how many of 1,000 new
//! legitimate connections get through right after the flood, while its
//! half-open entries still hold their quota of the table. Every packet goes
//! through the real XDP program by `BPF_PROG_TEST_RUN`, on a director in a
//! private namespace; no controller runs in between, so nothing sweeps the
//! table during the run.

use std::{
    collections::{BTreeMap, HashSet},
    time::Instant,
};

use anyhow::{ensure, Context, Result};
use lvs::controller::Controller;
use lvs_common::tcp_state::{ConnState, DEFAULT_TIMEOUTS};
use lvs_datapath::{Datapath, KernelDatapath, Limits};
use serde::Serialize;

use super::{
    cost::{floor, service},
    median,
    testbed::{self, client, tcp, XDP_REDIRECT},
    Plan,
};

#[derive(Clone, Debug, Serialize)]
pub struct FloodReport {
    /// Entries the connection table holds (`Limits::connections`).
    pub table_size: u32,
    /// Half-open entries the table may hold (`half_open_slots`).
    pub half_open_slots: u32,
    /// Connections brought to ESTABLISHED before the flood.
    pub established: u32,
    /// Seconds establishing them took (two packets each).
    pub establish_s: f64,
    /// Spoofed SYNs sent, each from a distinct source.
    pub syns: u32,
    /// Of those, forwarded (the `redirect` verdict), each now a half-open
    /// entry in the table.
    pub syns_forwarded: u64,
    /// Of those, refused because the table was full (`drop_table_full`).
    pub syns_refused_table_full: u64,
    /// Half-open entries the flood's SYNs evicted (the oldest first).
    pub half_open_evicted: u64,
    /// Median cost of a flood SYN in the program (`BPF_PROG_TEST_RUN`'s
    /// duration), and the no-op program's, measured alongside.
    pub flood_syn_median_ns: f64,
    pub floor_ns: f64,
    /// Every verdict counter the flood moved, by name.
    pub verdicts: BTreeMap<String, u64>,
    /// Wall time of the flood's `BPF_PROG_TEST_RUN` calls (making the
    /// frames excluded).
    pub flood_s: f64,
    /// SYNs per second through the program during the flood.
    pub flood_syns_per_s: f64,
    /// Inbound entries the controller counted in the table after the flood
    /// (ActiveConn + InActConn of the real server).
    pub entries_after_flood: u64,
    /// Established connections whose ACK (with a payload) was still
    /// forwarded after the flood.
    pub established_survived: u32,
    pub established_survived_percent: f64,
    /// Verdicts of those ACKs.
    pub established_verdicts: BTreeMap<String, u64>,
    /// New legitimate connections tried after the flood (a SYN each from a
    /// fresh client), and how many were forwarded.
    pub new_after_flood: u32,
    pub new_after_flood_forwarded: u32,
    pub new_after_flood_forwarded_percent: f64,
    /// Verdicts of those SYNs.
    pub new_after_flood_verdicts: BTreeMap<String, u64>,
    /// Seconds a half-open (SYN_RECV) entry lives before lvsd's sweeper may
    /// reclaim it, unless a newer SYN evicts it first.
    pub half_open_timeout_s: u32,
}

const VIP: [u8; 4] = [198, 18, 0, 10];
const NEW_AFTER_FLOOD: u32 = 1_000;
const ESTABLISHED: u32 = 10_000;
/// Frames made at a time, outside the timed calls.
const CHUNK: usize = 65_536;

/// xorshift64: deterministic, random-looking, cheap.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Distinct spoofed `(address, port)` sources: public-looking unicast
/// addresses, never in 198.18.0.0/15 (the bench's clients, VIPs and real
/// servers), nor 0/8, 10/8, 127/8 or 224/3.
struct Spoofer {
    rng: XorShift,
    seen: HashSet<u64>,
}

impl Spoofer {
    fn new() -> Self {
        Spoofer {
            rng: XorShift(0x9e37_79b9_7f4a_7c15),
            seen: HashSet::new(),
        }
    }

    fn source(&mut self) -> ([u8; 4], u16) {
        loop {
            let r = self.rng.next();
            let addr = (r >> 32) as u32;
            let port = (r >> 16) as u16;
            let [a, b, ..] = addr.to_be_bytes();
            let reserved = matches!(a, 0 | 10 | 127 | 224..) || (a == 198 && b & 0xfe == 18);
            if reserved || port < 1024 {
                continue;
            }
            if self.seen.insert(u64::from(addr) << 16 | u64::from(port)) {
                return (addr.to_be_bytes(), port);
            }
        }
    }
}

/// The datapath's verdict counters, by name.
fn verdicts(c: &Controller<KernelDatapath>) -> Result<BTreeMap<String, u64>> {
    Ok(c.snapshot()
        .context("reading the verdict counters")?
        .verdicts
        .into_iter()
        .collect())
}

/// The counters that moved from `before` to `after`.
fn moved(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| (name.clone(), n - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 0)
        .collect()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        f64::NAN
    } else {
        100.0 * part as f64 / whole as f64
    }
}

/// Run `frames` through the program: `(forwarded, seconds of calls)`, and
/// each call's duration in the program (ns) added to `durations`.
fn inject(
    c: &Controller<KernelDatapath>,
    frames: &[Vec<u8>],
    durations: &mut Vec<f64>,
) -> Result<(u32, f64)> {
    let mut forwarded = 0;
    let started = Instant::now();
    for frame in frames {
        let out = c.datapath().test_run(frame)?;
        durations.push(out.duration.as_nanos() as f64);
        if out.action == XDP_REDIRECT {
            forwarded += 1;
        }
    }
    Ok((forwarded, started.elapsed().as_secs_f64()))
}

fn flood(table_size: u32, syns: u32) -> Result<FloodReport> {
    let established = ESTABLISHED;
    let floor_ns =
        testbed::in_private_netns(|| floor(&tcp(client(0), (VIP, 80), "S", b""), 10_000))?;
    testbed::in_private_netns(|| {
        let limits = Limits {
            connections: table_size,
            ..Limits::default()
        };
        let config = service(VIP, "rr", "", &[("198.18.11.3:80".into(), "route")]);
        let mut c = testbed::director(1, limits, &config)?;
        let syn = |n: u32| tcp(client(n), (VIP, 80), "S", b"");
        let ack = |n: u32| tcp(client(n), (VIP, 80), "A", b"0123456789");

        let started = Instant::now();
        for n in 0..established {
            for (what, frame) in [("SYN", syn(n)), ("ACK", ack(n))] {
                let out = c.datapath().test_run(&frame)?;
                ensure!(
                    out.action == XDP_REDIRECT,
                    "establishing: the {what} of connection {n} ended in XDP action {}",
                    out.action
                );
            }
        }
        let establish_s = started.elapsed().as_secs_f64();
        eprintln!("   {established} connections established in a table of {table_size} entries ({establish_s:.2} s)");

        let before = verdicts(&c)?;
        let evicted_before = c.datapath().half_open_evicted()?;
        let mut spoofer = Spoofer::new();
        let (mut forwarded, mut flood_s) = (0u64, 0.0);
        let mut flood_durations = Vec::with_capacity(syns as usize);
        let mut sent = 0;
        while sent < syns {
            let count = (syns - sent).min(CHUNK as u32);
            let frames: Vec<Vec<u8>> = (0..count)
                .map(|_| tcp(spoofer.source(), (VIP, 80), "S", b""))
                .collect();
            let (f, s) = inject(&c, &frames, &mut flood_durations)?;
            forwarded += u64::from(f);
            flood_s += s;
            sent += count;
        }
        drop(spoofer);
        let half_open_evicted = c.datapath().half_open_evicted()? - evicted_before;
        let flood_syn_median_ns = median(&flood_durations);
        drop(flood_durations);
        let flood_verdicts = moved(&before, &verdicts(&c)?);
        let syns_forwarded = flood_verdicts.get("redirect").copied().unwrap_or(0);
        let syns_refused_table_full = flood_verdicts.get("drop_table_full").copied().unwrap_or(0);
        if syns_forwarded != forwarded {
            eprintln!("   note: the redirect counter moved by {syns_forwarded}, but {forwarded} calls ended in XDP_REDIRECT");
        }
        c.recount()?;
        let entries_after_flood = c
            .snapshot()?
            .services
            .iter()
            .flat_map(|s| &s.reals)
            .map(|r| u64::from(r.active_conns) + u64::from(r.inactive_conns))
            .sum();
        let flood_syns_per_s = f64::from(syns) / flood_s;
        eprintln!(
            "   flood: {syns} spoofed SYNs in {flood_s:.2} s ({:.0} k/s): {syns_forwarded} forwarded ({:.1}%), {syns_refused_table_full} refused as the table was full ({:.1}%)",
            flood_syns_per_s / 1e3,
            percent(syns_forwarded, u64::from(syns)),
            percent(syns_refused_table_full, u64::from(syns))
        );
        eprintln!("   flood verdicts: {flood_verdicts:?}; {half_open_evicted} half-open entries evicted; {entries_after_flood} entries in the table after it; a flood SYN {flood_syn_median_ns:.0} ns (floor {floor_ns:.0} ns)");

        let before = verdicts(&c)?;
        let acks: Vec<Vec<u8>> = (0..established).map(ack).collect();
        let (established_survived, _) = inject(&c, &acks, &mut Vec::new())?;
        drop(acks);
        let established_verdicts = moved(&before, &verdicts(&c)?);
        let established_survived_percent =
            percent(u64::from(established_survived), u64::from(established));
        eprintln!(
            "   established connections still forwarded after the flood: {established_survived} of {established} ({established_survived_percent:.1}%)"
        );

        let before = verdicts(&c)?;
        let fresh: Vec<Vec<u8>> = (established..established + NEW_AFTER_FLOOD)
            .map(syn)
            .collect();
        let (new_after_flood_forwarded, _) = inject(&c, &fresh, &mut Vec::new())?;
        let new_after_flood_verdicts = moved(&before, &verdicts(&c)?);
        let new_after_flood_forwarded_percent = percent(
            u64::from(new_after_flood_forwarded),
            u64::from(NEW_AFTER_FLOOD),
        );
        eprintln!(
            "   new connections after the flood: {new_after_flood_forwarded} of {NEW_AFTER_FLOOD} forwarded ({new_after_flood_forwarded_percent:.1}%), verdicts {new_after_flood_verdicts:?}"
        );

        Ok(FloodReport {
            table_size,
            half_open_slots: lvs_common::half_open_slots(table_size),
            established,
            establish_s,
            syns,
            syns_forwarded,
            syns_refused_table_full,
            half_open_evicted,
            flood_syn_median_ns,
            floor_ns,
            verdicts: flood_verdicts,
            flood_s,
            flood_syns_per_s,
            entries_after_flood,
            established_survived,
            established_survived_percent,
            established_verdicts,
            new_after_flood: NEW_AFTER_FLOOD,
            new_after_flood_forwarded,
            new_after_flood_forwarded_percent,
            new_after_flood_verdicts,
            half_open_timeout_s: DEFAULT_TIMEOUTS[ConnState::SynRecv as usize],
        })
    })
}

pub fn run(plan: Plan) -> Result<FloodReport> {
    if plan.quick {
        flood(1 << 16, 2 << 16)
    } else {
        flood(1 << 20, 5_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_sources_are_distinct_and_stay_out_of_the_bench_ranges() {
        let mut s = Spoofer::new();
        let sources: Vec<_> = (0..10_000).map(|_| s.source()).collect();
        let distinct: HashSet<_> = sources.iter().collect();
        assert_eq!(distinct.len(), sources.len());
        for ([a, b, ..], port) in sources {
            assert!(!(a == 198 && (b == 18 || b == 19)) && a != 0 && a < 224 && port >= 1024);
        }
    }

    #[test]
    fn moved_keeps_only_counters_that_changed() {
        let before = BTreeMap::from([("a".to_string(), 1), ("b".to_string(), 2)]);
        let after = BTreeMap::from([
            ("a".to_string(), 1),
            ("b".to_string(), 5),
            ("c".to_string(), 4),
        ]);
        assert_eq!(
            moved(&before, &after),
            BTreeMap::from([("b".to_string(), 3), ("c".to_string(), 4)])
        );
    }
}
