//! Section 4: how costs grow. The new-flow cost (a SYN through
//! `BPF_PROG_TEST_RUN`, against the no-op floor) and the controller's
//! publication time as a pool grows to 1,000 real servers and as the
//! director grows to 10,000 services; the connection table's memory per
//! entry, the largest table that loads, and the packet costs once a
//! million flows fill it. Each point runs on a fresh director in its own
//! private namespace. `daemon` adds the figures of the real lvsd and
//! lvsadm processes: a 10,000-service restore and listing, and a router
//! pair's active holding a million connections.

use std::time::Instant;

use anyhow::{Context, Result};
use lvs::controller::Controller;
use lvs_common::Settings;
use lvs_datapath::{KernelDatapath, Limits};
use lvs_state::{config, model::Command};
use serde::Serialize;

use super::{
    cost::{floor, percentile, service, time_calls},
    daemon::{PairFigures, RestoreFigures},
    median,
    testbed::{self, client, tcp, XDP_REDIRECT},
    Plan,
};

#[derive(Clone, Debug, Serialize)]
pub struct PoolPoint {
    pub reals: u32,
    pub syn_median_ns: f64,
    pub syn_ratio: f64,
    /// Applying the service with its whole pool (first publication).
    pub apply_ms: f64,
    /// Changing one real server's weight (a republication).
    pub edit_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ServicesPoint {
    pub services: u32,
    pub reals_each: u32,
    pub syn_median_ns: f64,
    pub syn_ratio: f64,
    /// Applying every service from an empty director, in one batch.
    pub apply_ms: f64,
    /// Changing one real server's weight in one service.
    pub edit_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct FullTable {
    pub flows: u32,
    pub table_size: u32,
    pub fill_s: f64,
    /// An ACK of a random established flow, table nearly empty / full.
    pub established_empty_ns: f64,
    pub established_full_ns: f64,
    /// A SYN of a new flow, table nearly empty / full.
    pub syn_empty_ns: f64,
    pub syn_full_ns: f64,
    /// With the table full: the controller's once-a-second count of it,
    /// and one HA sync round's read of it (every live connection).
    pub recount_ms: f64,
    pub sync_export_ms: f64,
    /// The same million connections in a real lvsd pair's active
    /// (`controller_core_percent`, `list_ms`, `refill_p99_us`, ...).
    #[serde(flatten)]
    pub lvsd: PairFigures,
}

#[derive(Clone, Debug, Serialize)]
pub struct ScaleReport {
    pub floor_ns: f64,
    pub pool: Vec<PoolPoint>,
    pub services: Vec<ServicesPoint>,
    /// Kernel memory per connection-table entry (fdinfo memlock / size).
    pub conn_entry_bytes: f64,
    /// The largest connection table that loaded, and why the search stopped.
    pub largest_table: u32,
    pub largest_table_stop: String,
    pub full_table: FullTable,
    /// Real lvsd and lvsadm: `lvsadm -R` of 10,000 services and 100,000
    /// real servers, and `lvsadm -L -n` of them.
    #[serde(flatten)]
    pub restore: RestoreFigures,
}

const VIP: [u8; 4] = [198, 18, 0, 10];

/// Big enough for 10,000 services of 10 real servers.
fn big() -> Limits {
    Limits {
        services: 16_384,
        reals: 131_072,
        connections: 1 << 20,
        ..Limits::default()
    }
}

/// The `i`th real server: eight addresses on srv1, then more ports.
fn real(i: u32) -> String {
    format!("198.18.11.{}:{}", 2 + i % 8, 8000 + i / 8)
}

fn pool_config(reals: u32) -> String {
    let reals: Vec<(String, &str)> = (0..reals).map(|i| (real(i), "nat")).collect();
    service(VIP, "wlc", "", &reals)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Apply `text` to `c`, timed (parsing excluded).
fn apply(c: &mut Controller<KernelDatapath>, text: &str) -> Result<f64> {
    let commands = config::parse(text, "scale.toml")?;
    let started = Instant::now();
    c.apply(&commands).context("applying the scale config")?;
    Ok(ms(started))
}

/// Change the weight of the first real server of service `vip:port`.
fn edit(c: &mut Controller<KernelDatapath>, port: u16) -> Result<f64> {
    let line = format!(
        "-e -t {}.{}.{}.{}:{port} -r {} -m -w 5",
        VIP[0],
        VIP[1],
        VIP[2],
        VIP[3],
        c.state().at(0).unwrap().reals[0].server
    );
    let commands: Vec<Command> = lvs_cli::ipvsadm::parse_restore(&line)?;
    let started = Instant::now();
    c.apply(&commands).context("editing a weight")?;
    Ok(ms(started))
}

/// Median SYN cost over `samples` new flows, spread over `ports`.
fn syn_cost(c: &Controller<KernelDatapath>, ports: u16, samples: usize) -> Result<f64> {
    let frames: Vec<Vec<u8>> = (0..samples as u32)
        .map(|n| {
            tcp(
                client(n),
                (VIP, 1 + (n % u32::from(ports)) as u16),
                "S",
                b"",
            )
        })
        .collect();
    let mut d = time_calls(
        c,
        "scale SYN",
        None,
        frames.iter().map(Vec::as_slice),
        XDP_REDIRECT,
    )?;
    d.sort_by(f64::total_cmp);
    Ok(percentile(&d, 0.5))
}

fn pool_point(reals: u32, samples: usize, floor_ns: f64) -> Result<PoolPoint> {
    testbed::in_private_netns(|| {
        let mut c = testbed::director(1, big(), "")?;
        let apply_ms = apply(&mut c, &pool_config(reals).replace(":80\"", ":1\""))?;
        let edit_ms = edit(&mut c, 1)?;
        let syn = syn_cost(&c, 1, samples)?;
        Ok(PoolPoint {
            reals,
            syn_median_ns: syn,
            syn_ratio: super::ratio(syn, floor_ns),
            apply_ms,
            edit_ms,
        })
    })
}

fn services_config(services: u32) -> String {
    let reals: Vec<(String, &str)> = (0..10).map(|i| (real(i), "nat")).collect();
    (1..=services)
        .map(|port| service(VIP, "wlc", "", &reals).replace(":80\"", &format!(":{port}\"")))
        .collect()
}

fn services_point(services: u32, samples: usize, floor_ns: f64) -> Result<ServicesPoint> {
    let text = services_config(services);
    testbed::in_private_netns(|| {
        let mut c = testbed::director(1, big(), "")?;
        let apply_ms = apply(&mut c, &text)?;
        let edit_ms = edit(&mut c, 1)?;
        let syn = syn_cost(&c, services as u16, samples)?;
        Ok(ServicesPoint {
            services,
            reals_each: 10,
            syn_median_ns: syn,
            syn_ratio: super::ratio(syn, floor_ns),
            apply_ms,
            edit_ms,
        })
    })
}

/// `(bytes per entry, largest size that loaded, why the search stopped)`.
fn table_sizes(quick: bool) -> Result<(f64, u32, String)> {
    let load = |connections: u32| {
        KernelDatapath::attach(
            &[],
            Settings::default(),
            Limits {
                connections,
                ..Limits::default()
            },
        )
    };
    let probe = 1 << 20;
    let per_entry = load(probe)?.conn_table_memory()? as f64 / f64::from(probe);
    let available = mem_available()?;
    let last = if quick { 1 << 24 } else { 1 << 28 };
    let mut largest = probe;
    let mut size = probe * 2;
    let stop = loop {
        if size > last {
            break format!("stopped at the run's last size, {last} entries");
        }
        if per_entry * f64::from(size) > available as f64 / 2.0 {
            break format!(
                "the next size, {size} entries, would take over half of the {} MB available",
                available >> 20
            );
        }
        match load(size) {
            Ok(_) => largest = size,
            Err(e) => break format!("{size} entries failed to load: {e}"),
        }
        size *= 2;
    };
    Ok((per_entry, largest, stop))
}

fn mem_available() -> Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no MemAvailable in /proc/meminfo")
}

/// Fill a DR service's table with `flows` established flows (a SYN and an
/// ACK each), and time established and new flows before and after.
fn full_table(flows: u32, samples: usize) -> Result<FullTable> {
    let table_size = flows * 2;
    testbed::in_private_netns(|| {
        let limits = Limits {
            connections: table_size,
            ..Limits::default()
        };
        let config = service(VIP, "rr", "", &[("198.18.11.3:80".into(), "route")]);
        let c = testbed::director(1, limits, &config)?;
        let syn = |n: u32| tcp(client(n), (VIP, 80), "S", b"");
        let ack = |n: u32| tcp(client(n), (VIP, 80), "A", b"0123456789");
        let measure = |open: u32, fresh_from: u32| -> Result<(f64, f64)> {
            // Pseudo-random established flows: a stride coprime with `open`.
            let acks: Vec<Vec<u8>> = (0..samples as u32)
                .map(|k| ack((k as u64 * 7_919 % u64::from(open)) as u32))
                .collect();
            let syns: Vec<Vec<u8>> = (fresh_from..fresh_from + samples as u32).map(syn).collect();
            let est = time_calls(
                &c,
                "established",
                None,
                acks.iter().map(Vec::as_slice),
                XDP_REDIRECT,
            )?;
            let new = time_calls(
                &c,
                "new flow",
                None,
                syns.iter().map(Vec::as_slice),
                XDP_REDIRECT,
            )?;
            Ok((median(&est), median(&new)))
        };
        let few = 1_000;
        let frames: Vec<Vec<u8>> = (0..few).flat_map(|n| [syn(n), ack(n)]).collect();
        time_calls(
            &c,
            "fill",
            None,
            frames.iter().map(Vec::as_slice),
            XDP_REDIRECT,
        )?;
        let (established_empty_ns, syn_empty_ns) = measure(few, flows + 1_000_000)?;
        let started = Instant::now();
        for n in few..flows {
            for frame in [syn(n), ack(n)] {
                let out = c.datapath().test_run(&frame)?;
                anyhow::ensure!(
                    out.action == XDP_REDIRECT,
                    "filling: flow {n} was not forwarded"
                );
            }
        }
        let fill_s = started.elapsed().as_secs_f64();
        let (established_full_ns, syn_full_ns) = measure(flows, flows + 2_000_000)?;
        let mut c = c;
        let started = Instant::now();
        c.recount()?;
        let recount_ms = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let exported = c.export_connections()?.len();
        let sync_export_ms = started.elapsed().as_secs_f64() * 1e3;
        anyhow::ensure!(
            exported >= flows as usize,
            "the sync export read {exported} of {flows} connections"
        );
        Ok(FullTable {
            flows,
            table_size,
            fill_s,
            established_empty_ns,
            established_full_ns,
            syn_empty_ns,
            syn_full_ns,
            recount_ms,
            sync_export_ms,
            // Measured next, on the real programs.
            lvsd: PairFigures::default(),
        })
    })
}

pub fn run(plan: Plan) -> Result<ScaleReport> {
    let samples = if plan.quick { 2_000 } else { 10_000 };
    let floor_ns =
        testbed::in_private_netns(|| floor(&tcp(client(0), (VIP, 80), "S", b""), samples))?;
    let pool = [1, 10, 100, 1_000]
        .into_iter()
        .map(|n| pool_point(n, samples, floor_ns))
        .collect::<Result<_>>()?;
    let services = [1, 100, 1_000, 10_000]
        .into_iter()
        .map(|n| services_point(n, samples, floor_ns))
        .collect::<Result<_>>()?;
    let (conn_entry_bytes, largest_table, largest_table_stop) =
        testbed::in_private_netns(|| table_sizes(plan.quick))?;
    let mut full_table = full_table(1_000_000, samples)?;
    full_table.lvsd = super::daemon::pair(plan, full_table.flows)?;
    let restore = super::daemon::restore_and_list(plan)?;
    Ok(ScaleReport {
        floor_ns,
        pool,
        services,
        conn_entry_bytes,
        largest_table,
        largest_table_stop,
        full_table,
        restore,
    })
}
