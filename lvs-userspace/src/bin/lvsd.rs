//! `lvsd`: attach the director to the named interfaces, load the config,
//! serve the control socket, detach on SIGINT/SIGTERM.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use anyhow::Context;
use clap::Parser;
use lvs::{api::DEFAULT_SOCKET, config, controller::Controller, daemon, datapath::KernelDatapath};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(version, about = "Linux Virtual Server director on XDP")]
struct Args {
    /// Interface to attach the director to (repeat for several).
    #[arg(short = 'i', long = "interface", required = true)]
    interfaces: Vec<String>,
    /// TOML file of virtual services and real servers.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();

    // Everything that can be checked before touching the kernel is checked first.
    let commands = match &args.config {
        Some(path) => config::load(path)?,
        None => Vec::new(),
    };
    let listener = daemon::bind(&args.socket)?;
    let datapath = match KernelDatapath::attach(&args.interfaces) {
        Ok(d) => d,
        Err(e) => {
            daemon::unbind(&args.socket);
            return Err(e.into());
        }
    };
    for a in &datapath.attachments {
        tracing::info!(iface = %a.iface, ifindex = a.ifindex, mode = a.mode, "attached XDP director");
    }
    // bpf_fib_lookup refuses to forward (and so does the kernel) without it.
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").is_ok_and(|v| v.trim() == "0") {
        tracing::warn!("net.ipv4.ip_forward is 0: NAT traffic will not be forwarded (sysctl -w net.ipv4.ip_forward=1)");
    }
    let mut controller = Controller::new(datapath);
    if let Err(e) = controller.apply(&commands) {
        daemon::unbind(&args.socket);
        return Err(e).context("applying the configuration");
    }
    tracing::info!(socket = %args.socket.display(), services = controller.state().services.len(), "lvsd ready");

    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    let shared = Arc::new(Mutex::new(controller));
    daemon::run(shared.clone(), listener, shutdown).await;
    daemon::unbind(&args.socket);
    drop(shared);
    tracing::info!("detached; bye");
    Ok(())
}
