//! `lvsd`: attach the director to the named interfaces, load the config,
//! serve the control socket, detach on SIGINT/SIGTERM.

use std::path::PathBuf;

use clap::Parser;
use lvs::daemon;
use lvs_state::{api::DEFAULT_SOCKET, config::Source};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Parser)]
#[command(version, about = "Linux Virtual Server director on XDP")]
struct Args {
    /// Interface to attach the director to (repeat for several).
    #[arg(short = 'i', long = "interface", required_unless_present = "clean")]
    interfaces: Vec<String>,
    /// Remove what stopped lvsds of this network namespace left forwarding
    /// (their director on each interface, the tables pinned under
    /// --bpffs, their records), then exit. A clean stop leaves the
    /// datapath forwarding for the next lvsd to take over; this is how to
    /// remove it instead.
    #[arg(long)]
    clean: bool,
    /// TOML file of virtual services and real servers.
    #[arg(long, conflicts_with = "keepalived_conf")]
    config: Option<PathBuf>,
    /// keepalived.conf instead: its virtual_server blocks, checkers and
    /// vrrp_instance (see `lvsadm keepalived-import`).
    #[arg(long, value_name = "FILE")]
    keepalived_conf: Option<PathBuf>,
    /// Control socket path.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Outer source address of IP-in-IP packets (default: the address the
    /// route towards each real server selects).
    #[arg(long, value_name = "ADDR")]
    tunnel_source: Option<std::net::Ipv4Addr>,
    /// Seconds an lblc destination may stay unused before its entry expires
    /// (the `lblc_expiration` sysctl).
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    lblc_expiration: u64,
    /// As `--lblc-expiration`, for lblcr; also how long a set may go
    /// unchanged before its busiest member is dropped.
    #[arg(long, value_name = "SECONDS", default_value_t = 86_400)]
    lblcr_expiration: u64,
    /// How long a removed real server's open connections go on (a reload,
    /// `lvsadm -d`); then they are removed, and their next packets are
    /// the kernel's. 0 (the default): until they end, as IPVS's
    /// `expire_nodest_conn=0`.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    drain_limit: u64,
    /// Most virtual services the maps hold.
    #[arg(long, value_name = "N", default_value_t = lvs_common::MAX_SERVICES)]
    max_services: u32,
    /// Most real servers, over all services.
    #[arg(long, value_name = "N", default_value_t = lvs_common::MAX_REALS)]
    max_reals: u32,
    /// Connection table entries (each NAT connection takes two); the
    /// least recently used entry makes room when it is full.
    #[arg(long, value_name = "N", default_value_t = lvs_common::CONN_TABLE_SIZE)]
    conn_table_size: u32,
    /// Most services using the mh scheduler at once (each table takes 32 KiB).
    #[arg(long, value_name = "N", default_value_t = lvs_common::MAX_MH_SERVICES)]
    max_mh_services: u32,
    /// Which director each interface gets: `auto` runs native XDP on NIC
    /// drivers and the tc director on virtual devices (veth, bridge, ...),
    /// where XDP would lose frames or checksums; `xdp` or `tc` force one.
    #[arg(long, value_enum, default_value_t = lvs_datapath::DatapathChoice::Auto)]
    datapath: lvs_datapath::DatapathChoice,
    /// What happens to an ICMP error (unreachable, fragmentation needed,
    /// time exceeded) that quotes a connection: `translate` sends it to the
    /// host that owns the connection, as IPVS does; `kernel` leaves it to
    /// the kernel untouched, so path-MTU discovery through NAT fails (for
    /// comparison only).
    #[arg(long, value_enum, default_value_t = daemon::IcmpErrors::Translate)]
    icmp_errors: daemon::IcmpErrors,
    /// Schedule a TCP segment that has no connection entry whatever its
    /// flags (but RST), as IPVS's `net.ipv4.vs.sloppy_tcp=1`: a director of
    /// a fleet then carries on a flow that ECMP moved to it from another
    /// (with sh, dh or mh, to the same real server). Off: only a SYN starts
    /// a connection, and the kernel answers other segments for a VIP it
    /// holds with a reset.
    #[arg(long)]
    sloppy_tcp: bool,
    /// Route health injection: create the TUN device IFACE and hold on it,
    /// as a /32 or /128, each VIP that has a service with its quorum, for
    /// the routing daemon to announce (BIRD: `protocol direct { interface
    /// "IFACE"; }`). The device, and so the routes, go with lvsd, however
    /// it stops.
    #[arg(long, value_name = "IFACE")]
    announce: Option<String>,
    /// With --announce, on a clean stop: seconds the datapath keeps
    /// forwarding after the VIPs are withdrawn, while routers converge.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    announce_drain: u64,
    /// A bpffs mount: a router of a pair pins its program arrays there, so
    /// that its datapath keeps forwarding IPv6 and ICMP errors if lvsd is
    /// killed. `ip netns exec` hides the host's /sys/fs/bpf: give lvsd run
    /// that way a bpffs mounted elsewhere.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf")]
    bpffs: PathBuf,
}

fn main() -> anyhow::Result<()> {
    // Before any thread starts, so that every one inherits it: refills,
    // the liveness stamp and heartbeats must not wait behind the busy
    // machine's other work (keepalived's `process_priority`, raised).
    let favoured = lvs_datapath::process::favour_this_thread();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(favoured))
}

async fn run(favoured: std::io::Result<()>) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = favoured {
        tracing::warn!("lvsd runs at its normal priority (setpriority: {e})");
    }
    let Args {
        interfaces,
        clean,
        config,
        keepalived_conf,
        socket,
        tunnel_source,
        lblc_expiration,
        lblcr_expiration,
        drain_limit,
        max_services,
        max_reals,
        conn_table_size,
        max_mh_services,
        datapath,
        icmp_errors,
        sloppy_tcp,
        announce,
        announce_drain,
        bpffs,
    } = Args::parse();
    if clean {
        let removed = lvs_datapath::clean(&bpffs)?;
        if removed.is_empty() {
            println!(
                "nothing to remove: no stopped lvsd left a datapath in this network namespace"
            );
        }
        for line in removed {
            println!("{line}");
        }
        return Ok(());
    }
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
            config: config
                .map(Source::Toml)
                .or(keepalived_conf.map(Source::Keepalived)),
            socket,
            tunnel_source,
            expirations: lvs::controller::Expirations {
                lblc: lblc_expiration,
                lblcr: lblcr_expiration,
                drain: (drain_limit > 0).then_some(drain_limit),
            },
            limits: lvs_datapath::Limits {
                services: max_services,
                reals: max_reals,
                connections: conn_table_size,
                mh_services: max_mh_services,
            },
            datapath,
            icmp_errors,
            sloppy_tcp,
            announce,
            announce_drain: std::time::Duration::from_secs(announce_drain),
            bpffs,
        },
        shutdown,
    )
    .await
}
