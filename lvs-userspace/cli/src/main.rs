//! `lvsadm`: ipvsadm's command line, spoken to `lvsd` over its socket.

use std::{io::Read, path::PathBuf, process::ExitCode, time::Duration};

use lvs_cli::ipvsadm::{
    self, format,
    names::{NameTable, Names, Numeric},
    Action, ParseError,
};
use lvs_datapath::realserver;
use lvs_state::{
    api::{self, ClientError, Request, Response, Snapshot, DEFAULT_SOCKET},
    config,
    model::Protocol,
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
  lvsadm reload             (lvsd reads its configuration file again, applies what changed)
  lvsadm keepalived-import FILE  (keepalived.conf as lvsd's TOML, on standard output)
Extra: --json (machine-readable output), --socket PATH (or LVSADM_SOCKET).";

/// Exit codes, as ipvsadm 1.31's (ipvsadm.c: `fail(2, ...)`, `exit(1)` in
/// the list functions, `tryhelp_exit(argv[0], -1)` and `main` returning
/// `process_options`' -1):
/// * 0: done (also `-h`, `-v`);
/// * 1: a listing failed (`-L`, `-S`, `-L -c`, `--timeout`: lvsd answered
///   an error, e.g. `-L -t` of a service that does not exist), as ipvsadm's
///   `exit(1)` when `ipvs_get_*` fails; also lvsadm's own subcommands
///   (`health`, `ha`, `realserver`, `--simulate`) that fail;
/// * 2: the command line (or a `-R` line) is wrong or names something not
///   supported, or lvsd cannot be reached: ipvsadm's `fail(2, ...)`, which
///   covers every option check and "Can't initialize ipvs";
/// * 255: an unknown option (popt's bad option: ipvsadm prints it and
///   returns -1), or lvsd refused a change (`-A/-E/-D/-a/-e/-d/-C/-R/-Z/
///   --set`): ipvsadm prints `ipvs_strerror` and `main` returns -1.
mod exit {
    pub const LISTING: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const REFUSED: u8 = 255;
}

/// A failure and the exit code it gets.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

/// Anything not classified is a failed listing's 1.
macro_rules! listing_failure {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(error: $t) -> Self {
                with_code(exit::LISTING)(error)
            }
        }
    )*};
}
listing_failure!(anyhow::Error, std::io::Error, serde_json::Error);

fn with_code<E: Into<anyhow::Error>>(code: u8) -> impl FnOnce(E) -> Failure {
    move |error| Failure {
        code,
        error: error.into(),
    }
}

/// A parse error's code: popt's bad option 255, everything else 2.
fn parse_failure(e: ParseError) -> Failure {
    let code = match &e {
        ParseError::UnknownOption(_) => exit::REFUSED,
        _ => exit::USAGE,
    };
    with_code(code)(e)
}

/// lvsd unreachable is ipvsadm's "Can't initialize ipvs" (2); a broken
/// conversation with it is a failure of whatever was asked (`code`).
/// A view as `--json` prints it (every response serializes: api's tests).
fn pretty(view: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(view).expect("views serialize")
}

/// One of lvsadm's own listings (`lvsadm NAME [--json]`): `view` turns
/// lvsd's answer into its JSON and its text, if it is the one asked for.
fn show(
    socket: &std::path::Path,
    name: &str,
    args: &[String],
    request: &Request,
    view: impl FnOnce(&Response) -> Option<(String, String)>,
) -> Result<(), Failure> {
    let json = match args {
        [] => false,
        [flag] if flag == "--json" => true,
        _ => {
            return Err(with_code(exit::USAGE)(anyhow::anyhow!(
                "usage: lvsadm {name} [--json]"
            )))
        }
    };
    let response = call(socket, request, exit::LISTING)?;
    match (view(&response), response) {
        (Some((json_text, _)), _) if json => {
            println!("{json_text}");
            Ok(())
        }
        (Some((_, text)), _) => {
            print!("{text}");
            Ok(())
        }
        (None, Response::Error { message }) => Err(anyhow::anyhow!("{message}").into()),
        (None, other) => Err(anyhow::anyhow!("unexpected answer from lvsd: {other:?}").into()),
    }
}

fn call(socket: &std::path::Path, request: &Request, code: u8) -> Result<Response, Failure> {
    api::call(socket, request).map_err(|e| match e {
        ClientError::Connect { .. } => with_code(exit::USAGE)(e),
        _ => with_code(code)(e),
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { code, error }) => {
            eprintln!("lvsadm: {error}");
            ExitCode::from(code)
        }
    }
}

/// How long `-L`, `-S` and `-L -c` wait for names before printing numbers.
const NAME_BUDGET: Duration = Duration::from_secs(1);

/// The names for a listing: none with `-n`, else the system's for every
/// address and port it shows.
fn names_for(
    numeric: bool,
    endpoints: impl IntoIterator<Item = (std::net::IpAddr, u16, Protocol)>,
) -> Box<dyn Names> {
    if numeric {
        return Box::new(Numeric);
    }
    let endpoints: Vec<_> = endpoints.into_iter().collect();
    Box::new(NameTable::system(
        endpoints.iter().map(|(a, _, _)| *a),
        endpoints.iter().map(|(_, p, proto)| (*p, *proto)),
        NAME_BUDGET,
    ))
}

fn snapshot_endpoints(
    snapshot: &Snapshot,
) -> impl Iterator<Item = (std::net::IpAddr, u16, Protocol)> + '_ {
    snapshot.services.iter().flat_map(|s| {
        let id = s.spec.id;
        std::iter::once((id.vip.addr, id.vip.port, id.protocol)).chain(
            s.reals
                .iter()
                .map(move |r| (r.spec.server.addr, r.spec.server.port, id.protocol)),
        )
    })
}

fn run(mut args: Vec<String>) -> Result<(), Failure> {
    if args.first().is_some_and(|a| a == "realserver") {
        return Ok(realserver(&args[1..])?);
    }
    if args.first().is_some_and(|a| a == "keepalived-import") {
        let [_, file] = args.as_slice() else {
            return Err(with_code(exit::USAGE)(anyhow::anyhow!(
                "usage: lvsadm keepalived-import FILE"
            )));
        };
        return keepalived_import(std::path::Path::new(file));
    }
    if args.first().is_some_and(|a| a == "--simulate") {
        let [_, file] = args.as_slice() else {
            return Err(with_code(exit::USAGE)(anyhow::anyhow!(
                "usage: lvsadm --simulate FILE (or - for standard input)"
            )));
        };
        let script = if file == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        } else {
            std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {file}: {e}"))?
        };
        let out = lvs_sched::simulate::run(&script).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        print!("{out}");
        return Ok(());
    }
    let mut socket = std::env::var_os("LVSADM_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| DEFAULT_SOCKET.into());
    if let Some(pos) = args.iter().position(|a| a == "--socket") {
        let path = args
            .get(pos + 1)
            .ok_or_else(|| anyhow::anyhow!("option `--socket` needs a value"))
            .map_err(with_code(exit::USAGE))?
            .clone();
        socket = path.into();
        args.drain(pos..pos + 2);
    }
    if args.first().is_some_and(|a| a == "health") {
        return Ok(health(&socket, &args[1..])?);
    }
    if args.first().is_some_and(|a| a == "ha") {
        return show(&socket, "ha", &args[1..], &Request::Ha, |r| match r {
            Response::Ha(view) => Some((pretty(view), format::ha(view))),
            _ => None,
        });
    }
    if args.first().is_some_and(|a| a == "reload") {
        return reload(&socket, &args[1..]);
    }
    if args.first().is_some_and(|a| a == "datapath") {
        return show(
            &socket,
            "datapath",
            &args[1..],
            &Request::Datapath,
            |r| match r {
                Response::Datapath(view) => Some((pretty(view), view.render())),
                _ => None,
            },
        );
    }
    let invocation = ipvsadm::parse(&args).map_err(parse_failure)?;
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
            // Every line is parsed before anything is sent, and lvsd
            // applies the lot as one batch: a bad line changes nothing.
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(with_code(exit::USAGE))?;
            Request::Apply {
                commands: ipvsadm::parse_restore(&text).map_err(parse_failure)?,
            }
        }
        Action::Zero(service) => Request::Zero { service: *service },
        Action::SetTimeouts(timeouts) => Request::SetTimeouts(*timeouts),
        Action::Timeouts => Request::Timeouts,
        Action::Connections(_) => Request::Connections,
        // Stats and rates only where they are printed.
        Action::List(options) => Request::ListPacked {
            counters: invocation.json
                || matches!(
                    options.format,
                    ipvsadm::ListFormat::Stats | ipvsadm::ListFormat::Rate
                ),
        },
        Action::Save => Request::ListPacked { counters: false },
    };
    // A change lvsd refuses is ipvsadm's -1 (255); a listing it cannot
    // give, ipvsadm's exit(1).
    let changes = matches!(
        request,
        Request::Apply { .. } | Request::Zero { .. } | Request::SetTimeouts(_)
    );
    let code = if changes {
        exit::REFUSED
    } else {
        exit::LISTING
    };
    match call(&socket, &request, code)? {
        Response::Error { message } => Err(with_code(code)(anyhow::anyhow!("{message}"))),
        Response::Ok => Ok(()),
        Response::Timeouts(timeouts) => {
            if invocation.json {
                println!("{}", serde_json::to_string_pretty(&timeouts)?);
            } else {
                print!("{}", format::timeouts(&timeouts));
            }
            Ok(())
        }
        Response::Ha(_)
        | Response::Datapath(_)
        | Response::PackedSnapshot { .. }
        | Response::Reloaded { .. } => {
            Err(anyhow::anyhow!("lvsd answered a different request").into())
        }
        Response::Connections { mut rows } => {
            if let Action::Connections(Some(id)) = &invocation.action {
                let vip = std::net::SocketAddr::new(id.vip.addr, id.vip.port);
                // A port-0 service owns every port of its VIP.
                rows.retain(|r| {
                    let at = r.virtual_addr;
                    r.protocol == id.protocol
                        && (at == vip || (id.vip.port == 0 && at.ip() == vip.ip()))
                });
            }
            if invocation.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let names = names_for(
                    invocation.numeric,
                    rows.iter().flat_map(|r| {
                        [r.source, r.virtual_addr, r.destination]
                            .map(|a| (a.ip(), a.port(), r.protocol))
                    }),
                );
                print!("{}", format::connections_named(&rows, names.as_ref()));
            }
            Ok(())
        }
        Response::Snapshot(mut snapshot) => {
            if let Action::List(options) = &invocation.action {
                if let Some(id) = options.service {
                    if !snapshot.services.iter().any(|s| s.spec.id == id) {
                        return Err(anyhow::anyhow!("no such service {id}").into());
                    }
                    snapshot.services.retain(|s| s.spec.id == id);
                }
                if invocation.json {
                    println!("{}", serde_json::to_string_pretty(&snapshot)?);
                } else {
                    let names = names_for(invocation.numeric, snapshot_endpoints(&snapshot));
                    print!("{}", format::list_named(&snapshot, options, names.as_ref()));
                }
            } else if invocation.json {
                println!("{}", serde_json::to_string_pretty(&snapshot.services)?);
            } else {
                let names = names_for(invocation.numeric, snapshot_endpoints(&snapshot));
                print!("{}", format::save_named(&snapshot, names.as_ref()));
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
    use lvs_state::{
        health::{RealHealth, SorryServer},
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
                            .map(|w| config::check_from_words(w, server))
                            .collect::<Result<_, _>>()
                            .map_err(|e| anyhow::anyhow!("--check: {e}"))?,
                        agent: h
                            .agent
                            .as_deref()
                            .map(config::agent_from_words)
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
            let request = Request::ListPacked { counters: false };
            let Response::Snapshot(snapshot) = api::call(socket, &request)? else {
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

/// `lvsadm reload`: lvsd reads its configuration file again and applies
/// what changed (as SIGHUP does); each change is printed, what the file has
/// that lvsd ignores goes to standard error. A refused reload exits 255,
/// as a refused change does.
fn reload(socket: &std::path::Path, args: &[String]) -> Result<(), Failure> {
    if !args.is_empty() {
        return Err(with_code(exit::USAGE)(anyhow::anyhow!(
            "usage: lvsadm reload"
        )));
    }
    match call(socket, &Request::Reload, exit::REFUSED)? {
        Response::Reloaded { changes, warnings } => {
            for w in &warnings {
                eprintln!("lvsadm: warning: {w}");
            }
            if changes.is_empty() {
                println!("nothing to change: lvsd runs what the file says");
            }
            for c in &changes {
                println!("{c}");
            }
            Ok(())
        }
        Response::Error { message } => Err(with_code(exit::REFUSED)(anyhow::anyhow!("{message}"))),
        other => Err(anyhow::anyhow!("unexpected answer from lvsd: {other:?}").into()),
    }
}

/// `lvsadm keepalived-import FILE`: the TOML lvsd would run from
/// keepalived.conf, on standard output; what it ignores and what it cannot
/// honour, with file and line, on standard error (and exit 1 for the latter).
fn keepalived_import(path: &std::path::Path) -> Result<(), Failure> {
    let import = lvs_state::keepalived::import(path);
    print!("{}", import.toml);
    for warning in &import.warnings {
        eprintln!("lvsadm: warning: {warning}");
    }
    let mut errors: Vec<String> = import.errors.iter().map(ToString::to_string).collect();
    if errors.is_empty() {
        // The rules our TOML enforces (a real server given twice, a
        // netmask that does not fit, ...), named at keepalived's line.
        if let Err(e) = config::Source::Keepalived(path.into()).load() {
            errors.push(e.to_string());
        }
    }
    for error in &errors {
        eprintln!("lvsadm: error: {error}");
    }
    match errors.len() {
        0 => Ok(()),
        n => Err(with_code(exit::LISTING)(anyhow::anyhow!(
            "{} cannot be imported whole ({n} error(s) above), and lvsd refuses it; the TOML printed leaves out the blocks the import itself could not convert",
            path.display()
        ))),
    }
}

/// `lvsadm realserver`: prepare this host as a DR or TUN real server.
#[derive(clap::Parser)]
#[command(name = "lvsadm realserver")]
enum RealServer {
    /// Put the VIPs on `lo`, stop ARP replies for them, attach decapsulation.
    Setup {
        /// A virtual service address, IPv4 or IPv6, this server answers for
        /// (repeatable).
        #[arg(long = "vip", required = true)]
        vips: Vec<std::net::IpAddr>,
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

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Write},
        os::unix::net::UnixListener,
    };

    use super::*;

    fn code(args: &[&str]) -> u8 {
        match run(args.iter().map(|a| a.to_string()).collect()) {
            Ok(()) => 0,
            Err(f) => f.code,
        }
    }

    /// An lvsd that answers every request with `answer`.
    fn fake_lvsd(answer: Response) -> (tempdir::Dir, String) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("lvsd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut line = String::new();
                let _ = BufReader::new(&stream).read_line(&mut line);
                let mut reply = serde_json::to_string(&answer).unwrap();
                reply.push('\n');
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        let socket = path.to_str().unwrap().to_string();
        (dir, socket)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicU32, Ordering};
                static N: AtomicU32 = AtomicU32::new(0);
                let path = std::env::temp_dir().join(format!(
                    "lvsadm-test-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn exit_codes_follow_ipvsadm() {
        assert_eq!(code(&["-h"]), 0);
        assert_eq!(code(&["-v"]), 0);
        // fail(2, ...): the option checks.
        assert_eq!(code(&["-A", "-t", "198.18.0.10:80", "-s", "fastest"]), 2);
        assert_eq!(code(&["-A", "-L"]), 2);
        assert_eq!(
            code(&[
                "-a",
                "-t",
                "198.18.0.10:80",
                "-r",
                "198.18.11.2",
                "-i",
                "--tun-type",
                "gue"
            ]),
            2
        );
        // popt's bad option: -1.
        assert_eq!(code(&["-L", "--frobnicate"]), 255);
        // "Can't initialize ipvs" is fail(2).
        assert_eq!(code(&["--socket", "/nonexistent/lvsd.sock", "-L", "-n"]), 2);
        assert_eq!(code(&["--socket", "/nonexistent/lvsd.sock", "-C"]), 2);
    }

    #[test]
    fn refused_changes_exit_255_and_failed_listings_1() {
        let (_dir, socket) = fake_lvsd(Response::Error {
            message: "no such service".into(),
        });
        let with = |args: &[&str]| {
            let mut all = vec!["--socket", socket.as_str()];
            all.extend_from_slice(args);
            code(&all)
        };
        assert_eq!(with(&["-D", "-t", "198.18.0.10:80"]), 255);
        assert_eq!(with(&["-Z"]), 255);
        assert_eq!(with(&["--set", "0", "0", "0"]), 255);
        assert_eq!(with(&["-L", "-n"]), 1);
        assert_eq!(with(&["-S", "-n"]), 1);
        assert_eq!(with(&["-L", "--timeout"]), 1);
        let (_dir, socket) = fake_lvsd(Response::Ok);
        assert_eq!(code(&["--socket", &socket, "-C"]), 0);
    }

    #[test]
    fn listing_a_service_that_does_not_exist_exits_1() {
        let (_dir, socket) = fake_lvsd(Response::Snapshot(Snapshot {
            conn_table_size: 4096,
            services: vec![],
            verdicts: vec![],
            refills: Default::default(),
        }));
        assert_eq!(
            code(&["--socket", &socket, "-L", "-n", "-t", "198.18.0.10:80"]),
            1
        );
        assert_eq!(code(&["--socket", &socket, "-L", "-n"]), 0);
    }
}
