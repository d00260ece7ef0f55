//! The bench's output: `report.json` (every figure), `report.md` (the
//! tables, the headline ratios and what each figure includes) and
//! `chart.svg` (per-path costs and throughputs), all under one directory.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{
    cost::CostReport, flood::FloodReport, health::HealthReport, ratio, scale::ScaleReport,
    Throughput,
};

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gb: f64,
    pub kernel: String,
    pub commit: String,
    pub date: String,
    pub quick: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub cost: Option<CostReport>,
    pub rate: Option<Vec<Throughput>>,
    pub cps: Option<Vec<Throughput>>,
    pub scale: Option<ScaleReport>,
    pub health: Option<HealthReport>,
    pub flood: Option<FloodReport>,
    /// Sections this machine could not run, and why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Serialize)]
pub struct Skipped {
    pub section: String,
    pub reason: String,
}

fn first_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Machine {
    pub fn describe(quick: bool) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
                .unwrap_or_default()
        };
        let mem_kb: f64 = field(&meminfo, "MemTotal")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap_or(0.0);
        Machine {
            cpu: field(&cpuinfo, "model name"),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gb: (mem_kb / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: first_line("uname", &["-r"]),
            commit: first_line("git", &["rev-parse", "--short", "HEAD"]),
            date: first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            quick,
        }
    }
}

/// The throughput of the first path (ours) over each of the others.
fn ours_over(rows: &[Throughput]) -> Vec<(String, f64)> {
    let Some((ours, others)) = rows.split_first() else {
        return Vec::new();
    };
    others
        .iter()
        .map(|o| (o.path.clone(), ratio(ours.per_second, o.per_second)))
        .collect()
}

fn cost_of<'a>(cost: &'a CostReport, path: &str) -> Option<&'a super::cost::PathCost> {
    cost.paths.iter().find(|p| p.path == path)
}

impl Report {
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let files = [
            ("report.json", serde_json::to_string_pretty(self)?),
            ("report.md", self.markdown()),
            ("chart.svg", self.chart()),
        ];
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    fn headlines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some(cost) = &self.cost {
            for path in ["NAT inbound, established", "NAT SYN, new flow (rr ring)"] {
                if let Some(p) = cost_of(cost, path) {
                    lines.push(format!(
                        "{path}: **{:.1}×** the no-op floor ({:.0} ns against {:.0} ns)",
                        p.ratio, p.median_ns, cost.floor.median_ns
                    ));
                }
            }
            for path in ["NAT inbound, established", "NAT SYN, new flow (rr ring)"] {
                let v6 = format!("IPv6 {path}");
                if let (Some(p4), Some(p6)) = (cost_of(cost, path), cost_of(cost, &v6)) {
                    lines.push(format!(
                        "{v6} / IPv4: **{:.2}** ({:.0} ns against {:.0} ns)",
                        p6.median_ns / p4.median_ns,
                        p6.median_ns,
                        p4.median_ns
                    ));
                }
            }
        }
        for (what, rows) in [
            ("Forwarding rate", &self.rate),
            ("Connections per second", &self.cps),
        ] {
            if let Some(rows) = rows {
                for (other, r) in ours_over(rows) {
                    lines.push(format!("{what}: lvs / {other} = **{r:.2}**"));
                }
            }
        }
        if let Some(f) = &self.flood {
            lines.push(format!(
                "SYN flood of {} spoofed SYNs against a table of {} entries: **{:.1}%** of {} established connections survived; **{:.1}%** of new connections got in after it",
                f.syns,
                f.table_size,
                f.established_survived_percent,
                f.established,
                f.new_after_flood_forwarded_percent
            ));
        }
        lines
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(s, "# lvs benchmark report\n");
        let _ = writeln!(
            s,
            "{} run of commit `{}` on {}: {} ({} cores), {} GB, kernel {}.\n",
            if m.quick { "A quick" } else { "A full" },
            m.commit,
            m.date,
            m.cpu,
            m.cores,
            m.memory_gb,
            m.kernel
        );
        let _ = writeln!(s, "Every ratio compares figures measured side by side in this run; absolute numbers on a shared machine mean little.\n");
        let _ = writeln!(s, "## Headlines\n");
        for line in self.headlines() {
            let _ = writeln!(s, "* {line}");
        }
        let _ = writeln!(s, "\n![per-path costs and throughputs](chart.svg)\n");
        for Skipped { section, reason } in &self.skipped {
            let _ = writeln!(
                s,
                "Section `{section}` could not run on this machine: {reason}.\n"
            );
        }
        if let Some(cost) = &self.cost {
            cost_section(&mut s, cost);
        }
        if let Some(rate) = &self.rate {
            throughput_section(
                &mut s,
                "2. Forwarding rate through a namespace topology",
                "64-byte UDP frames made in the client's kernel by live-frames `BPF_PROG_TEST_RUN` (a program that rewrites the frame and answers `XDP_TX`), one flow, through the director to real servers that count and drop them in XDP. Packets per second counted at the real servers' interfaces. Generator, director and sinks share the machine's cores, so every figure includes the generator's own cost.",
                "packets/s",
                rate,
            );
        }
        if let Some(cps) = &self.cps {
            throughput_section(
                &mut s,
                "3. Connections per second end to end",
                "wrk in a client namespace against nginx on two real servers, `Connection: close`, so each request is a new TCP connection through the director namespace. Client, director and servers share the machine's cores.",
                "connections/s",
                cps,
            );
        }
        if let Some(scale) = &self.scale {
            scale_section(&mut s, scale);
        }
        if let Some(health) = &self.health {
            health_section(&mut s, health);
        }
        if let Some(flood) = &self.flood {
            flood_section(&mut s, flood);
        }
        s
    }

    fn chart(&self) -> String {
        let mut panels: Vec<Panel> = Vec::new();
        if let Some(cost) = &self.cost {
            let mut bars = vec![(cost.floor.path.clone(), cost.floor.median_ns)];
            bars.extend(cost.paths.iter().map(|p| (p.path.clone(), p.median_ns)));
            panels.push(("Per-packet cost, median (ns)".into(), bars, "ns"));
        }
        for (title, rows, unit, scale) in [
            ("Forwarding rate (Mpps)", &self.rate, "Mpps", 1e6),
            ("Connections per second (thousands)", &self.cps, "k/s", 1e3),
        ] {
            if let Some(rows) = rows {
                let bars = rows
                    .iter()
                    .map(|t| (t.path.clone(), t.per_second / scale))
                    .collect();
                panels.push((title.into(), bars, unit));
            }
        }
        svg(&panels)
    }
}

fn cost_section(s: &mut String, cost: &CostReport) {
    let _ = writeln!(s, "## 1. Per-packet program cost\n");
    let _ = writeln!(s, "`BPF_PROG_TEST_RUN` with repeat = 1, one call per sample, so the kernel copies a fresh frame each time; {} calls per path, taken in 20 interleaved rounds. The figure is the kernel's own timing of the run, which includes its timer and set-up: the no-op program measured the same way is the floor, and the ratio is to it. SYN rows are a new flow every call (scheduling and the connection insert; a NAT connection keeps one entry, except in the wlc row: its servers are in four services configured before it, so it also inserts a reply entry).\n", cost.samples);
    let _ = writeln!(
        s,
        "| path | median ns | p90 ns | × floor | above floor ns |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for p in std::iter::once(&cost.floor).chain(&cost.paths) {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} |",
            p.path,
            p.median_ns,
            p.p90_ns,
            p.ratio,
            p.median_ns - cost.floor.median_ns
        );
    }
    let _ = writeln!(s, "\nWhat the verifier made of each program:\n");
    let _ = writeln!(
        s,
        "| program | instructions | instructions processed by the verifier | JIT bytes |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for p in &cost.programs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            p.name, p.instructions, p.verified_instructions, p.jited_bytes
        );
    }
    let _ = writeln!(s);
}

fn throughput_section(s: &mut String, title: &str, method: &str, unit: &str, rows: &[Throughput]) {
    let _ = writeln!(s, "## {title}\n\n{method}\n");
    let _ = writeln!(
        s,
        "| path | {unit} (median) | trials | lvs / path | what it includes |"
    );
    let _ = writeln!(s, "|---|---:|---|---:|---|");
    let ours = rows.first().map_or(f64::NAN, |r| r.per_second);
    for r in rows {
        let trials: Vec<String> = r.trials.iter().map(|t| format!("{t:.0}")).collect();
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {:.2} | {} |",
            r.path,
            r.per_second,
            trials.join(", "),
            ratio(ours, r.per_second),
            r.note
        );
    }
    let _ = writeln!(s);
}

fn health_section(s: &mut String, h: &HealthReport) {
    let _ = writeln!(s, "## 5. Health checking\n");
    let _ = writeln!(s, "{} real servers, each with one checker every {} s, run by lvsd's own supervisor (one tokio task per checker) on a single thread, against listeners on loopback in a private namespace; the listeners run on another thread. The controller figure is that thread's CPU time over wall time; the process figure includes the listeners and the kernel's loopback work charged to them.\n", h.servers, h.interval_s);
    let _ = writeln!(s, "| checker | seconds | probes answered | expected | controller thread, % of a core | whole process, % of a core |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for r in &h.rows {
        let _ = writeln!(
            s,
            "| {} | {:.1} | {} | {} | {:.1} | {:.1} |",
            r.kind,
            r.seconds,
            r.checks,
            r.expected,
            r.controller_core_percent,
            r.process_core_percent
        );
    }
    let _ = writeln!(s);
}

fn verdict_list(verdicts: &std::collections::BTreeMap<String, u64>) -> String {
    if verdicts.is_empty() {
        return "none".into();
    }
    let v: Vec<String> = verdicts.iter().map(|(k, n)| format!("`{k}` {n}")).collect();
    v.join(", ")
}

fn flood_section(s: &mut String, f: &FloodReport) {
    let pct = |n: u64, of: u64| ratio(100.0 * n as f64, of as f64);
    let _ = writeln!(
        s,
        "## 6. SYN flood
"
    );
    let _ = writeln!(s, "A DR service (rr, one real server) with a connection table of {} entries, on a director in a private namespace; every packet through the XDP program by `BPF_PROG_TEST_RUN`, one call each. First {} connections from distinct clients brought to ESTABLISHED (a SYN, then an ACK; {:.2} s), then {} SYNs from distinct spoofed sources (a deterministic xorshift) to the VIP. No controller runs in between, so nothing sweeps the table; a half-open (SYN_RECV) entry lives {} s before lvsd's sweeper may reclaim it, unless a newer SYN evicts it: the table holds at most {} half-open entries, the oldest giving way to the newest.
", f.table_size, f.established, f.establish_s, f.syns, f.half_open_timeout_s, f.half_open_slots);
    let _ = writeln!(s, "| | count | % |");
    let _ = writeln!(s, "|---|---:|---:|");
    let syns = u64::from(f.syns);
    let _ = writeln!(
        s,
        "| flood SYNs forwarded (each a half-open entry) | {} | {:.1} |",
        f.syns_forwarded,
        pct(f.syns_forwarded, syns)
    );
    let _ = writeln!(
        s,
        "| flood SYNs refused, table full (`drop_table_full`) | {} | {:.1} |",
        f.syns_refused_table_full,
        pct(f.syns_refused_table_full, syns)
    );
    let _ = writeln!(
        s,
        "| half-open entries evicted by newer flood SYNs | {} | {:.1} |",
        f.half_open_evicted,
        pct(f.half_open_evicted, syns)
    );
    let _ = writeln!(
        s,
        "| established connections still forwarded after the flood | {} of {} | **{:.1}** |",
        f.established_survived, f.established, f.established_survived_percent
    );
    let _ = writeln!(
        s,
        "| new connections forwarded after the flood | {} of {} | **{:.1}** |
",
        f.new_after_flood_forwarded, f.new_after_flood, f.new_after_flood_forwarded_percent
    );
    let _ = writeln!(
        s,
        "A flood SYN costs {:.0} ns in the program (median; the no-op floor {:.0} ns, {:.1}× it).
",
        f.flood_syn_median_ns,
        f.floor_ns,
        ratio(f.flood_syn_median_ns, f.floor_ns)
    );
    let _ = writeln!(s, "The flood took {:.2} s of program calls ({:.0} SYNs/s on one core, making the frames excluded) and left {} entries in the table. Its verdicts: {}. The established connections' ACKs: {}. The new connections' SYNs: {}.
", f.flood_s, f.flood_syns_per_s, f.entries_after_flood, verdict_list(&f.verdicts), verdict_list(&f.established_verdicts), verdict_list(&f.new_after_flood_verdicts));
}

fn scale_section(s: &mut String, scale: &ScaleReport) {
    let _ = writeln!(s, "## 4. Scale\n");
    let _ = writeln!(s, "Each point is a fresh director. SYN cost is the median of new flows through `BPF_PROG_TEST_RUN` (floor {:.0} ns); apply is the controller's `apply` of the whole configuration from empty (parsing excluded), edit is one weight change (a republication). Schedulers are wlc, real servers NAT.\n", scale.floor_ns);
    let _ = writeln!(
        s,
        "| real servers in the pool | SYN ns | × floor | apply ms | edit ms |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for p in &scale.pool {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} |",
            p.reals, p.syn_median_ns, p.syn_ratio, p.apply_ms, p.edit_ms
        );
    }
    let _ = writeln!(
        s,
        "\n| services (10 real servers each) | SYN ns | × floor | apply ms | edit ms |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|");
    for p in &scale.services {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.2} | {:.1} | {:.2} |",
            p.services, p.syn_median_ns, p.syn_ratio, p.apply_ms, p.edit_ms
        );
    }
    let t = &scale.full_table;
    let _ = writeln!(s, "\nConnection table: **{:.0} bytes of kernel memory per entry** (the map's fdinfo `memlock` over its size; a connection takes one entry, or two for NAT to a server in more than four services). The largest table that loaded: **{} entries** ({}).\n", scale.conn_entry_bytes, scale.largest_table, scale.largest_table_stop);
    let _ = writeln!(s, "Filled with {} DR flows (a table of {} entries; filling by a SYN and an ACK each through the program took {:.1} s):\n", t.flows, t.table_size, t.fill_s);
    let _ = writeln!(s, "| | nearly empty ns | 1 M flows ns |");
    let _ = writeln!(s, "|---|---:|---:|");
    let _ = writeln!(
        s,
        "| established (random flows) | {:.0} | {:.0} |",
        t.established_empty_ns, t.established_full_ns
    );
    let _ = writeln!(
        s,
        "| new flow (SYN) | {:.0} | {:.0} |\n",
        t.syn_empty_ns, t.syn_full_ns
    );
    let _ = writeln!(s, "With those {} flows, the controller's once-a-second count (ActiveConn/InActConn, read from the datapath's counters, no table walk) took **{:.2} ms**; a full export of every live connection, which only a backup's resync asks for (sync rounds send changes), **{:.0} ms**.\n", t.flows, t.recount_ms, t.sync_export_ms);
    let p = &t.lvsd;
    let _ = writeln!(s, "### The real programs\n");
    let _ = writeln!(s, "Release `lvsd` and `lvsadm` processes, each lvsd in a namespace of its own, timed from the outside (process start to exit for lvsadm).\n");
    let _ = writeln!(s, "* `lvsadm -R` of 10,000 services of 10 NAT real servers each (110,000 lines on stdin, parsing included) into a fresh lvsd: **{:.0} ms**; `lvsadm -L -n` of them: **{:.0} ms** (median of {}: {}).", scale.restore.restore_10k_ms, scale.restore.list_10k_ms, scale.restore.list_10k_samples_ms.len(), ms_list(&scale.restore.list_10k_samples_ms));
    let _ = writeln!(s, "* A router pair (two lvsds with `[ha]`, a veth between their namespaces), {} connections established in the active's table through `BPF_PROG_TEST_RUN` of the director it attached ({} counted on the backup, synced): the active lvsd took **{:.1}% of a core** over {:.0} s (utime + stime of every thread), and `lvsadm -L -n` against it **{:.0} ms** (median of {}: {}).", p.active_connections, p.backup_connections, p.controller_core_percent, p.controller_window_s, p.list_ms, p.list_samples_ms.len(), ms_list(&p.list_samples_ms));
    let _ = writeln!(s, "* Then 20,000 new flows into a wlc service of 10 real servers over 5 s: **{} refills**, latency from the datapath's low-water signal to the new ring live: p99 **{:.0} µs** (mean {:.0} µs, largest {:.0} µs).\n", p.refill_count, p.refill_p99_us, p.refill_mean_us, p.refill_max_us);
}

fn ms_list(samples: &[f64]) -> String {
    let v: Vec<String> = samples.iter().map(|m| format!("{m:.0}")).collect();
    v.join(", ") + " ms"
}

/// A chart panel: title, `(label, value)` bars, unit.
type Panel = (String, Vec<(String, f64)>, &'static str);

/// Horizontal bar panels, one above the other.
fn svg(panels: &[Panel]) -> String {
    const WIDTH: f64 = 760.0;
    const LABEL: f64 = 260.0;
    const BAR: f64 = 16.0;
    const GAP: f64 = 4.0;
    let mut body = String::new();
    let mut y = 10.0;
    for (title, bars, unit) in panels {
        let _ = writeln!(
            body,
            r#"<text x="0" y="{:.0}" font-weight="bold">{}</text>"#,
            y + 14.0,
            escape(title)
        );
        y += 24.0;
        let max = bars
            .iter()
            .map(|b| b.1)
            .fold(0.0, f64::max)
            .max(f64::MIN_POSITIVE);
        for (i, (label, value)) in bars.iter().enumerate() {
            let w = (WIDTH - LABEL - 90.0) * value / max;
            let fill = if i == 0 { "#4c72b0" } else { "#8da0cb" };
            let _ = writeln!(
                body,
                r#"<text x="{:.0}" y="{:.0}" text-anchor="end">{}</text><rect x="{LABEL}" y="{:.0}" width="{w:.1}" height="{BAR}" fill="{fill}"/><text x="{:.1}" y="{:.0}">{value:.2} {unit}</text>"#,
                LABEL - 6.0,
                y + 12.0,
                escape(label),
                y,
                LABEL + w + 4.0,
                y + 12.0
            );
            y += BAR + GAP;
        }
        y += 14.0;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y:.0}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"#
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, per_second: f64) -> Throughput {
        Throughput {
            path: path.into(),
            per_second,
            trials: vec![per_second],
            note: String::new(),
        }
    }

    #[test]
    fn headline_ratios_are_ours_over_each_baseline() {
        let rows = [row("lvs", 900.0), row("nft", 600.0), row("ceiling", 1800.0)];
        assert_eq!(
            ours_over(&rows),
            [("nft".to_string(), 1.5), ("ceiling".to_string(), 0.5)]
        );
        assert!(ours_over(&[]).is_empty());
    }

    #[test]
    fn the_chart_escapes_labels_and_scales_bars_to_the_largest() {
        let chart = svg(&[(
            "t".into(),
            vec![("a<b".into(), 2.0), ("c".into(), 1.0)],
            "ns",
        )]);
        assert!(chart.contains("a&lt;b"));
        assert!(chart.contains(r#"width="410.0""#) && chart.contains(r#"width="205.0""#));
    }
}
