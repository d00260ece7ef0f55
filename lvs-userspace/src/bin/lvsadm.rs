//! `lvsadm`: ipvsadm's command line, spoken to `lvsd` over its socket.

use std::{io::Read, path::PathBuf, process::ExitCode};

use lvs::{
    api::{self, Request, Response, DEFAULT_SOCKET},
    ipvsadm::{self, format, Action},
    realserver,
};

const USAGE: &str = "lvsadm: ipvsadm-compatible administration of lvsd
  lvsadm -A|E -t|u service-address [-s scheduler] [-p [timeout]] [-M netmask] [-b sched-flags]
  lvsadm -D -t|u service-address
  lvsadm -C
  lvsadm -R < rules
  lvsadm -S [-n]
  lvsadm -a|e -t|u service-address -r server-address [-g|i|m] [-w weight] [-x upper] [-y lower]
  lvsadm -d -t|u service-address -r server-address
  lvsadm -L|l [-n] [--stats|--rate|--thresholds|--persistent-conn] [--exact] [--nosort]
              [-t|u service-address]
  lvsadm -L|l --timeout
  lvsadm -L|l -c [-n] [-t|u service-address]   (connections and templates)
  lvsadm -Z [-t|u service-address]
  lvsadm --set tcp tcpfin udp      (seconds; 0 leaves a timeout unchanged)
  lvsadm realserver setup --vip VIP [--vip VIP...] [--decap xdp:IFACE|kernel]
  lvsadm realserver teardown | status
  lvsadm health -t|u service-address -r server-address [--check 'type=http path=/ ...']...
                [--agent 'port=N ...'] [--inhibit-on-failure] | --none
  lvsadm health -t|u service-address [--sorry-server ADDR[:PORT]|none]
                [--sorry-method nat|route|tunnel] [--slow-start SECONDS]
  lvsadm ha [--json]         (the router pair: role, peer, last transition, counters)
  lvsadm --simulate FILE|-   (run a scheduler offline; see README)
Extra: --json (machine-readable output), --socket PATH (or LVSADM_SOCKET).";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvsadm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "realserver") {
        return realserver(&args[1..]);
    }
    if args.first().is_some_and(|a| a == "--simulate") {
        let [_, file] = args.as_slice() else {
            anyhow::bail!("usage: lvsadm --simulate FILE (or - for standard input)");
        };
        let script = if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        } else {
            std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?
        };
        let out = lvs::simulate::run(&script).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        print!("{out}");
        return Ok(());
    }
    let mut socket = std::env::var_os("LVSADM_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    if let Some(pos) = args.iter().position(|a| a == "--socket") {
        let path = args
            .get(pos + 1)
            .ok_or_else(|| anyhow::anyhow!("option `--socket` needs a value"))?
            .clone();
        socket = path.into();
        args.drain(pos..pos + 2);
    }
    if args.first().is_some_and(|a| a == "health") {
        return health(&socket, &args[1..]);
    }
    if args.first().is_some_and(|a| a == "ha") {
        let json = match &args[1..] {
            [] => false,
            [flag] if flag == "--json" => true,
            _ => anyhow::bail!("usage: lvsadm ha [--json]"),
        };
        return match api::call(&socket, &Request::Ha)? {
            Response::Ha(view) if json => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(())
            }
            Response::Ha(view) => {
                print!("{}", format::ha(&view));
                Ok(())
            }
            Response::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from lvsd: {other:?}"),
        };
    }
    if args.first().is_some_and(|a| a == "datapath") {
        let json = match &args[1..] {
            [] => false,
            [flag] if flag == "--json" => true,
            _ => anyhow::bail!("usage: lvsadm datapath [--json]"),
        };
        return match api::call(&socket, &Request::Datapath)? {
            Response::Datapath(view) if json => {
                println!("{}", serde_json::to_string_pretty(&view)?);
                Ok(())
            }
            Response::Datapath(view) => {
                print!("{}", view.render());
                Ok(())
            }
            Response::Error { message } => anyhow::bail!("{message}"),
            other => anyhow::bail!("unexpected answer from lvsd: {other:?}"),
        };
    }
    let invocation = ipvsadm::parse(&args)?;
    let request = match &invocation.action {
        Action::Help => {
            println!("{USAGE}");
            return Ok(());
        }
        Action::Version => {
            println!(
                "lvsadm {} (ipvsadm v1.31 syntax)",
                env!("CARGO_PKG_VERSION")
            );
            return Ok(());
        }
        Action::Apply(commands) => Request::Apply {
            commands: commands.clone(),
        },
        Action::Restore => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            Request::Apply {
                commands: ipvsadm::parse_restore(&text)?,
            }
        }
        Action::Zero(service) => Request::Zero { service: *service },
        Action::SetTimeouts(timeouts) => Request::SetTimeouts(*timeouts),
        Action::Timeouts => Request::Timeouts,
        Action::Connections(_) => Request::Connections,
        Action::List(_) | Action::Save => Request::List,
    };
    match api::call(&socket, &request)? {
        Response::Error { message } => anyhow::bail!("{message}"),
        Response::Ok => Ok(()),
        Response::Timeouts(timeouts) => {
            if invocation.json {
                println!("{}", serde_json::to_string_pretty(&timeouts)?);
            } else {
                print!("{}", format::timeouts(&timeouts));
            }
            Ok(())
        }
        Response::Ha(_) | Response::Datapath(_) => {
            anyhow::bail!("lvsd answered a different request")
        }
        Response::Connections { mut rows } => {
            if let Action::Connections(Some(id)) = &invocation.action {
                let vip = std::net::SocketAddrV4::new(id.vip.addr, id.vip.port);
                // A port-0 service owns every port of its VIP.
                rows.retain(|r| {
                    r.protocol == id.protocol
                        && (r.virtual_addr == vip
                            || (id.vip.port == 0 && r.virtual_addr.ip() == vip.ip()))
                });
            }
            if invocation.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", format::connections(&rows));
            }
            Ok(())
        }
        Response::Snapshot(mut snapshot) => {
            if let Action::List(options) = &invocation.action {
                if let Some(id) = options.service {
                    if !snapshot.services.iter().any(|s| s.spec.id == id) {
                        anyhow::bail!("no such service {id}");
                    }
                    snapshot.services.retain(|s| s.spec.id == id);
                }
                if invocation.json {
                    println!("{}", serde_json::to_string_pretty(&snapshot)?);
                } else {
                    print!("{}", format::list(&snapshot, options));
                }
            } else if invocation.json {
                println!("{}", serde_json::to_string_pretty(&snapshot.services)?);
            } else {
                print!("{}", format::save(&snapshot));
            }
            Ok(())
        }
    }
}

/// `lvsadm health`: a real server's checkers and agent (the keys of the
/// config file's `[[service.real.check]]` and `[service.real.agent]`, as
/// `key=value` words), or a service's sorry server and slow start.
#[derive(clap::Parser)]
#[command(name = "lvsadm health")]
struct Health {
    #[arg(short = 't', long = "tcp-service", conflicts_with = "udp")]
    tcp: Option<String>,
    #[arg(short = 'u', long = "udp-service")]
    udp: Option<String>,
    #[arg(short = 'r', long = "real-server")]
    real: Option<String>,
    /// One checker, e.g. 'type=http path=/health interval=1' (repeatable;
    /// the server is alive while every checker is up).
    #[arg(long = "check", requires = "real")]
    checks: Vec<String>,
    #[arg(long, requires = "real")]
    agent: Option<String>,
    #[arg(long, requires = "real")]
    inhibit_on_failure: bool,
    /// Remove the server's checkers and agent: it is always in service.
    #[arg(long, requires = "real", conflicts_with_all = ["checks", "agent", "inhibit_on_failure"])]
    none: bool,
    /// `none` removes it.
    #[arg(long, conflicts_with = "real")]
    sorry_server: Option<String>,
    #[arg(long, conflicts_with = "real", value_parser = ["nat", "route", "tunnel"])]
    sorry_method: Option<String>,
    #[arg(long, conflicts_with = "real")]
    slow_start: Option<u32>,
}

fn health(socket: &std::path::Path, args: &[String]) -> anyhow::Result<()> {
    use clap::Parser;
    use lvs::{
        health::spec::{RealHealth, SorryServer},
        model::{Command, Endpoint, Method, Protocol, ServiceId},
    };
    let h = Health::try_parse_from(
        std::iter::once("lvsadm health".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| e.exit());
    let (protocol, vip) = match (&h.tcp, &h.udp) {
        (Some(vip), None) => (Protocol::Tcp, vip),
        (None, Some(vip)) => (Protocol::Udp, vip),
        _ => anyhow::bail!("lvsadm health needs a service: -t or -u service-address"),
    };
    let service = ServiceId {
        protocol,
        vip: vip.parse()?,
    };
    let with_port = |text: &str| -> anyhow::Result<Endpoint> {
        let (addr, port) = Endpoint::parse_optional_port(text)?;
        Ok(Endpoint {
            addr,
            port: port.unwrap_or(service.vip.port),
        })
    };
    let command = match &h.real {
        Some(real) => {
            let server = with_port(real)?;
            let health = (!h.none)
                .then(|| -> anyhow::Result<RealHealth> {
                    Ok(RealHealth {
                        checks: h
                            .checks
                            .iter()
                            .map(|w| lvs::config::check_from_words(w, server))
                            .collect::<Result<_, _>>()
                            .map_err(|e| anyhow::anyhow!("--check: {e}"))?,
                        agent: h
                            .agent
                            .as_deref()
                            .map(lvs::config::agent_from_words)
                            .transpose()
                            .map_err(|e| anyhow::anyhow!("--agent: {e}"))?,
                        inhibit_on_failure: h.inhibit_on_failure,
                    })
                })
                .transpose()?;
            Command::SetRealHealth {
                service,
                server,
                health,
            }
        }
        None => {
            // Options not given keep their current values.
            let Response::Snapshot(snapshot) = api::call(socket, &Request::List)? else {
                anyhow::bail!("lvsd did not answer the listing");
            };
            let mut health = snapshot
                .services
                .into_iter()
                .find(|s| s.spec.id == service)
                .ok_or_else(|| anyhow::anyhow!("no such service {service}"))?
                .health;
            let method = match h.sorry_method.as_deref() {
                Some("nat") => Some(Method::Nat),
                Some("tunnel") => Some(Method::Tunnel),
                Some(_) => Some(Method::Route),
                None => None,
            };
            match h.sorry_server.as_deref() {
                Some("none") => health.sorry = None,
                Some(text) => {
                    health.sorry = Some(SorryServer {
                        server: with_port(text)?,
                        method: method
                            .or(health.sorry.map(|s| s.method))
                            .unwrap_or(Method::Route),
                    })
                }
                None => {
                    if let (Some(sorry), Some(m)) = (&mut health.sorry, method) {
                        sorry.method = m;
                    }
                }
            }
            if h.slow_start.is_some() {
                health.slow_start = h.slow_start;
            }
            Command::SetServiceHealth { service, health }
        }
    };
    match api::call(
        socket,
        &Request::Apply {
            commands: vec![command],
        },
    )? {
        Response::Ok => Ok(()),
        Response::Error { message } => anyhow::bail!("{message}"),
        other => anyhow::bail!("unexpected answer from lvsd: {other:?}"),
    }
}

/// `lvsadm realserver`: prepare this host as a DR or TUN real server.
#[derive(clap::Parser)]
#[command(name = "lvsadm realserver")]
enum RealServer {
    /// Put the VIPs on `lo`, stop ARP replies for them, attach decapsulation.
    Setup {
        /// A virtual service address this server answers for (repeatable).
        #[arg(long = "vip", required = true)]
        vips: Vec<std::net::Ipv4Addr>,
        /// For TUN: `xdp:IFACE` attaches lvs_decap to IFACE; `kernel` uses
        /// the kernel's ipip module and tunl0.
        #[arg(long, value_parser = parse_decap)]
        decap: Option<realserver::Decap>,
    },
    /// Undo everything `setup` did in this network namespace.
    Teardown,
    /// Show what `setup` did in this network namespace.
    Status,
}

fn parse_decap(text: &str) -> Result<realserver::Decap, String> {
    match text.split_once(':') {
        Some(("xdp", iface)) if !iface.is_empty() => Ok(realserver::Decap::Xdp {
            iface: iface.to_string(),
        }),
        None if text == "kernel" => Ok(realserver::Decap::Kernel),
        _ => Err(format!("`{text}`: expected xdp:IFACE or kernel")),
    }
}

fn realserver(args: &[String]) -> anyhow::Result<()> {
    use clap::Parser;
    let command = RealServer::try_parse_from(
        std::iter::once("lvsadm realserver".to_string()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| e.exit());
    let (verb, steps) = match command {
        RealServer::Setup { vips, decap } => (
            "set up",
            realserver::setup(&realserver::Plan { vips, decap })?,
        ),
        RealServer::Teardown => ("undid", realserver::teardown()?),
        RealServer::Status => ("recorded", realserver::status()?),
    };
    if steps.is_empty() {
        println!("nothing {verb}");
    }
    for step in steps {
        println!("{verb}: {step}");
    }
    Ok(())
}
