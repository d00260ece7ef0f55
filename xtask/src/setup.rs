//! `cargo xtask setup`: idempotent, and quick when everything is present.
//!
//! * nightly's `rust-src` (the eBPF crate builds `core` for bpfel);
//! * bpf-linker built against the nightly's own LLVM major, with a lasting
//!   `libLLVM.so` symlink under `$CARGO_HOME` (its rpath points there);
//! * the Debian packages the tests and the demo use, and for the bench
//!   the traffic tools it compares against.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::{bail, Context, Result};

const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian package → a file it installs, to check without dpkg.
const PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "/usr/sbin/ip"),
    ("ethtool", "/usr/sbin/ethtool"),
    ("procps", "/usr/sbin/sysctl"),
    ("iputils-ping", "/usr/bin/ping"),
    // The kernel's IPVS selftest, rebuilt in tests/tests/deploy.rs, moves
    // its bytes with socat.
    ("socat", "/usr/bin/socat"),
    // taskset pins the expiry-race test's client and servers to two CPUs.
    ("util-linux", "/usr/bin/taskset"),
    // The path-MTU test downloads with a real HTTP client.
    ("curl", "/usr/bin/curl"),
    // The fleet's router and directors speak BGP and BFD with BIRD.
    ("bird2", "/usr/sbin/bird"),
];
/// What `cargo xtask bench` compares against (their services are never
/// started: the bench runs them inside its own namespaces).
const BENCH_PACKAGES: &[(&str, &str)] = &[
    ("wrk", "/usr/bin/wrk"),
    ("nginx-light", "/usr/sbin/nginx"),
    ("haproxy", "/usr/sbin/haproxy"),
    ("nftables", "/usr/sbin/nft"),
];

pub fn ensure() -> Result<()> {
    let started = Instant::now();
    ensure_nightly_components(&["rust-src"])?;
    ensure_bpf_linker()?;
    ensure_packages(PACKAGES)?;
    eprintln!(
        "setup: toolchain and packages present ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("spawning {program}"))?;
    if !out.status.success() {
        bail!("`{program} {}` failed ({})", args.join(" "), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn ensure_nightly_components(components: &[&str]) -> Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"])?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        eprintln!("setup: installing the nightly toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", "nightly", "--installed"],
    )?;
    let missing: Vec<&str> = components
        .iter()
        .copied()
        .filter(|c| {
            !installed
                .lines()
                .any(|l| l.starts_with(&format!("{c}-")) || l == *c)
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("setup: adding {} to nightly", missing.join(", "));
        run(Command::new("rustup")
            .args(["component", "add", "--toolchain", "nightly"])
            .args(&missing))?;
    }
    Ok(())
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        })
}

fn ensure_bpf_linker() -> Result<()> {
    let verbose = output("rustc", &["+nightly", "-vV"])?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("no `LLVM version:` in `rustc +nightly -vV`")?
        .to_string();
    let prefix = cargo_home().join(format!("lvs-llvm-{major}"));
    let stamp = prefix.join(format!("bpf-linker-{BPF_LINKER_VERSION}.stamp"));
    let works = Command::new("bpf-linker")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works && stamp.exists() {
        return Ok(());
    }
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (1 to 3 minutes)");
    let sysroot = output("rustc", &["+nightly", "--print", "sysroot"])?
        .trim()
        .to_string();
    let libdir = PathBuf::from(&sysroot).join("lib");
    let llvm = std::fs::read_dir(&libdir)
        .with_context(|| format!("reading {}", libdir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("libLLVM.so.") || (n.starts_with("libLLVM-") && n.ends_with(".so"))
            })
        })
        .with_context(|| format!("no libLLVM in {}", libdir.display()))?;
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    // bpf-linker links against `libLLVM.so` and loads it by its soname
    // through the rpath, so both names must be there.
    for name in [
        std::ffi::OsStr::new("libLLVM.so"),
        llvm.file_name().expect("a file"),
    ] {
        let link = lib.join(name);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("symlinking {}", link.display()))?;
    }
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--force",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix))?;
    std::fs::write(&stamp, format!("llvm {}\n", llvm.display()))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

pub fn ensure_bench_packages() -> Result<()> {
    ensure_packages(BENCH_PACKAGES)
}

fn ensure_packages(packages: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .filter(|(_, file)| !std::path::Path::new(file).exists())
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing Debian packages {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}
