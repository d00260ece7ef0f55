//! `cargo xtask bench`: measure, then write the report under `--out`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Parser;
use lvs_lab::bench::{
    self,
    report::{Machine, Report, Skipped},
    Plan,
};

const SECTIONS: [&str; 6] = ["cost", "rate", "cps", "scale", "health", "flood"];

#[derive(Parser)]
#[command(about = "Side-by-side benchmarks of the lvs datapath and controller")]
struct Args {
    /// A short run (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these sections (cost, rate, cps, scale, health, flood); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> Result<()> {
    let Args { quick, out, only } = Args::parse();
    if let Some(bad) = only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        bail!("unknown section `{bad}` in --only (cost, rate, cps, scale, health, flood)");
    }
    let plan = Plan { quick };
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    let section = |name: &str, title: &str| {
        let on = wanted(name);
        if on {
            eprintln!("== {title}");
        }
        on
    };
    let mut skipped = Vec::new();
    let report = Report {
        machine: Machine::describe(quick),
        cost: section("cost", "1. per-packet cost (BPF_PROG_TEST_RUN)")
            .then(|| bench::cost::run_section(plan))
            .transpose()?,
        // Some kernels refuse live-frames test_run (EPERM): the rest of the
        // bench still runs, and the report says why this section is empty.
        rate: match section("rate", "2. forwarding rate (live frames)")
            .then(|| bench::rate::run(plan))
            .transpose()
        {
            Err(e) if refused(&e) => {
                eprintln!("   skipped: {e:#}");
                skipped.push(Skipped {
                    section: "rate".into(),
                    reason: format!("{e:#}"),
                });
                None
            }
            other => other?,
        },
        cps: section("cps", "3. connections per second (wrk, nginx)")
            .then(|| bench::cps::run(plan))
            .transpose()?,
        scale: section("scale", "4. scale")
            .then(|| bench::scale::run(plan))
            .transpose()?,
        health: section("health", "5. health checking")
            .then(|| bench::health::run(plan))
            .transpose()?,
        flood: section("flood", "6. SYN flood (BPF_PROG_TEST_RUN)")
            .then(|| bench::flood::run(plan))
            .transpose()?,
        skipped,
    };
    report.write(&out)?;
    eprintln!(
        "== report written to {0}/report.md, {0}/report.json and {0}/chart.svg",
        out.display()
    );
    Ok(())
}

/// The kernel refused an operation outright (not a failed measurement).
fn refused(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::EPERM))
            || cause.to_string().contains("Operation not permitted")
    })
}
