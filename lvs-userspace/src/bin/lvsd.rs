//! `lvsd`: attach the director to the named interfaces, load the config,
//! serve the control socket, detach on SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use lvs::{api::DEFAULT_SOCKET, daemon};
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
    /// Outer source address of IP-in-IP packets (default: the address the
    /// route towards each real server selects).
    #[arg(long, value_name = "ADDR")]
    tunnel_source: Option<std::net::Ipv4Addr>,
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
    let Args {
        interfaces,
        config,
        socket,
        tunnel_source,
    } = Args::parse();
    let mut term = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    daemon::start(
        daemon::Options {
            interfaces,
            config,
            socket,
            tunnel_source,
        },
        shutdown,
    )
    .await
}
