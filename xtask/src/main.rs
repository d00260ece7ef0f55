//! `cargo xtask`: set-up, build, run, demo, test and lint for lvs.
//!
//! Every subcommand runs `setup` first, so a fresh machine needs nothing but
//! `cargo xtask demo` or `cargo xtask test` (as root).

mod setup;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test lvs")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, bpf-linker, Debian packages.
    Setup,
    /// Build the XDP object and every binary.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build (release) and start lvsd with ARGS, e.g. `-- -i eth0 --config lvs.toml`.
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A self-contained lab in network namespaces that shows balancing.
    Demo {
        /// Forwarding method of the three real servers: nat, dr, tun, or
        /// mixed (one of each in one service).
        #[arg(long, default_value = "nat", value_parser = ["nat", "dr", "tun", "mixed"])]
        method: String,
        /// A fleet instead: three directors behind a router's ECMP, BGP
        /// through BIRD, one director leaving and coming back.
        #[arg(long)]
        fleet: bool,
    },
    /// All three tiers: unit, datapath fixtures and a few seconds of
    /// fuzzing, end to end.
    Test,
    /// Hostile frames through the real XDP and tc directors, for longer
    /// than `test` does (tier 2's fuzz test).
    Fuzz {
        /// How long the random phase runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Replay a run: the seed a failure (or any run) printed.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// rustfmt and clippy on the userspace crates and the eBPF crate.
    Lint,
    /// Build (release) and install lvsd, lvsadm, the systemd unit and an
    /// example configuration; an existing configuration is kept.
    Install {
        /// Install under this directory instead of / (for packaging).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
    /// Side-by-side benchmarks; the report goes to target/bench/.
    Bench {
        /// A short run (a few minutes).
        #[arg(long)]
        quick: bool,
        /// Only these sections: cost, rate, cps, scale (comma-separated).
        #[arg(long)]
        only: Option<String>,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    let root = workspace_root();
    setup::ensure()?;
    match args.command {
        Cmd::Setup => Ok(()),
        Cmd::Build { release } => build(&root, release),
        Cmd::Install { root: dest } => install(&root, &dest),
        Cmd::Run { args } => {
            build(&root, true)?;
            let lvsd = root.join("target/release/lvsd");
            let err = exec(&lvsd, &args);
            bail!("exec {}: {err}", lvsd.display())
        }
        Cmd::Demo { method, fleet } => {
            require_root("the demo")?;
            build(&root, false)?;
            // Ctrl-C reaches the lab too; it cleans up and exits, we wait.
            ignore_interrupts();
            let mut args = vec![
                "run",
                "--quiet",
                "-p",
                "lvs-tests",
                "--bin",
                "lvs-lab",
                "--",
                "demo",
                "--method",
                &method,
            ];
            if fleet {
                args.push("--fleet");
            }
            cargo(&root, &[], &args)
        }
        Cmd::Test => test(&root),
        Cmd::Fuzz { seconds, seed } => {
            require_root("the fuzz test")?;
            fuzz(&root, seconds, seed)
        }
        Cmd::Lint => lint(&root),
        Cmd::Bench { quick, only } => bench(&root, quick, only.as_deref()),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} needs root (network namespaces, XDP, BPF_PROG_TEST_RUN): run it as root");
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ignore_interrupts() {
    // SAFETY: installing SIG_IGN for SIGINT is always sound.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
}

fn exec(program: &Path, args: &[String]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    Command::new(program).args(args).exec()
}

/// Run cargo (`toolchain` e.g. `["+nightly"]`) in `dir`; fail on failure.
fn cargo(dir: &Path, toolchain: &[&str], args: &[&str]) -> Result<()> {
    cargo_with_env(dir, toolchain, &[], args)
}

/// As `cargo`, with environment variables set.
fn cargo_with_env(
    dir: &Path,
    toolchain: &[&str],
    env: &[(&str, String)],
    args: &[&str],
) -> Result<()> {
    let status = Command::new("cargo")
        .args(toolchain)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(dir)
        .status()
        .with_context(|| format!("spawning cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "`cargo {} {}` failed ({status})",
            toolchain.join(" "),
            args.join(" ")
        );
    }
    Ok(())
}

/// Where `install` puts each file, from the workspace, with its mode; a
/// file marked `keep` is not replaced if it exists (the site's own).
const INSTALLED: [(&str, &str, u32, bool); 5] = [
    ("target/release/lvsd", "usr/local/sbin/lvsd", 0o755, false),
    (
        "target/release/lvsadm",
        "usr/local/sbin/lvsadm",
        0o755,
        false,
    ),
    (
        "docs/systemd/lvsd.service",
        "etc/systemd/system/lvsd.service",
        0o644,
        false,
    ),
    ("docs/systemd/lvsd.default", "etc/default/lvsd", 0o644, true),
    ("docs/systemd/lvs.toml", "etc/lvs/lvs.toml", 0o644, true),
];

fn install(root: &Path, dest: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    cargo(
        root,
        &[],
        &[
            "build",
            "--release",
            "-p",
            "lvs-daemon",
            "-p",
            "lvs-cli",
            "--bins",
        ],
    )?;
    for (from, to, mode, keep) in INSTALLED {
        let target = dest.join(to);
        if keep && target.exists() {
            println!("kept      {} (yours)", target.display());
            continue;
        }
        let dir = target.parent().expect("installed paths have a directory");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // Beside it, then renamed: a running lvsd's binary is replaced,
        // not written into.
        let staged = dir.join(format!(
            ".{}.new",
            target.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::copy(root.join(from), &staged)
            .with_context(|| format!("copying {from} to {}", staged.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&staged, &target)
            .with_context(|| format!("installing {}", target.display()))?;
        println!("installed {}", target.display());
    }
    if dest == Path::new("/") && Path::new("/run/systemd/system").exists() {
        let status = Command::new("systemctl").arg("daemon-reload").status()?;
        if !status.success() {
            bail!("`systemctl daemon-reload` failed ({status})");
        }
        println!("Next: set the interfaces and the configuration in /etc/default/lvsd, then `systemctl enable --now lvsd`; `systemctl reload lvsd` applies a changed configuration.");
    }
    Ok(())
}

fn build(root: &Path, release: bool) -> Result<()> {
    let mut args = vec!["build", "--workspace", "--bins"];
    if release {
        args.push("--release");
    }
    cargo(root, &[], &args)
}

fn test(root: &Path) -> Result<()> {
    println!("== tier 1: unit tests (schedulers, config, CLI, checksums)");
    cargo(
        root,
        &[],
        &[
            "test",
            "--workspace",
            "--lib",
            "--bins",
            "--test",
            "ipvsadm",
            "--test",
            "keepalived_samples",
            "--test",
            "examples",
        ],
    )?;
    require_root("the datapath and end-to-end tiers")?;
    println!("== tier 2: datapath fixtures through BPF_PROG_TEST_RUN");
    cargo(
        root,
        &[],
        &[
            "test",
            "-p",
            "lvs-daemon",
            "--test",
            "datapath",
            "--",
            "--include-ignored",
        ],
    )?;
    println!("== tier 2: hostile frames through both directors (a few seconds)");
    fuzz(root, 5, None)?;
    println!("== tier 3: end to end in network namespaces");
    build(root, false)?;
    cargo(
        root,
        &[],
        &[
            "test",
            "-p",
            "lvs-tests",
            "--test",
            "e2e",
            "--test",
            "health",
            "--test",
            "ha",
            "--test",
            "deploy",
            "--test",
            "fleet",
            "--test",
            "keepalived",
            "--test",
            "lifecycle",
            "--",
            "--include-ignored",
            "--test-threads=1",
        ],
    )
}

/// The fuzz test (`lvs-userspace/lvsd/tests/fuzz`): its sweeps, then random
/// frames for `seconds`, from `seed` or the clock (the test prints it).
fn fuzz(root: &Path, seconds: u64, seed: Option<u64>) -> Result<()> {
    let mut env = vec![("LVS_FUZZ_SECONDS", seconds.to_string())];
    if let Some(seed) = seed {
        env.push(("LVS_FUZZ_SEED", seed.to_string()));
    }
    cargo_with_env(
        root,
        &[],
        &env,
        &[
            "test",
            "-p",
            "lvs-daemon",
            "--test",
            "fuzz",
            "--",
            "--include-ignored",
            // The seed and what the run saw, in the log even when it passes.
            "--nocapture",
        ],
    )
}

fn bench(root: &Path, quick: bool, only: Option<&str>) -> Result<()> {
    require_root("the bench")?;
    setup::ensure_bench_packages()?;
    // Release builds: the controller's timings are part of the report.
    build(root, true)?;
    let out = root.join("target/bench");
    let mut args = vec!["--out".to_string(), out.display().to_string()];
    if quick {
        args.push("--quick".into());
    }
    if let Some(only) = only {
        args.extend(["--only".into(), only.into()]);
    }
    let bench = root.join("target/release/lvs-bench");
    let status = Command::new(&bench)
        .args(&args)
        .current_dir(root)
        .status()
        .with_context(|| format!("spawning {}", bench.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", bench.display());
    }
    Ok(())
}

fn lint(root: &Path) -> Result<()> {
    cargo(root, &[], &["fmt", "--all", "--", "--check"])?;
    cargo(
        root,
        &[],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let ebpf = root.join("lvs-ebpf");
    setup::ensure_nightly_components(&["rustfmt", "clippy"])?;
    cargo(&ebpf, &["+nightly"], &["fmt", "--", "--check"])?;
    cargo(
        &ebpf,
        &["+nightly"],
        &["clippy", "--release", "--", "-D", "warnings"],
    )
}
