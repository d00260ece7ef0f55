//! Compiles `lvs-ebpf` for the BPF target with the nightly toolchain and
//! hands the object to the crate as `LVS_EBPF_OBJECT`. (`cargo xtask setup`
//! installs nightly rust-src and bpf-linker first.)

use std::{env, path::PathBuf, process::Command};

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().and_then(|p| p.parent()).unwrap();
    let ebpf = root.join("lvs-ebpf");
    for watched in [
        "lvs-ebpf/src",
        "lvs-ebpf/Cargo.toml",
        "lvs-ebpf/.cargo/config.toml",
        "lvs-common/src",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = PathBuf::from(env::var_os("OUT_DIR").unwrap()).join("ebpf-target");

    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "--release",
        "--target-dir",
    ])
    .arg(&target_dir)
    .current_dir(&ebpf);
    // The outer build's toolchain and flags must not leak into the BPF build.
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running `rustup run nightly cargo build` for lvs-ebpf");
    if !status.success() {
        panic!("building lvs-ebpf failed ({status}); run `cargo xtask setup` to install nightly rust-src and bpf-linker");
    }
    let object = target_dir.join("bpfel-unknown-none/release/lvs-ebpf");
    println!("cargo:rustc-env=LVS_EBPF_OBJECT={}", object.display());
}
