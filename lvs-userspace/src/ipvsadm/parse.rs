//! ipvsadm's command-line grammar (reference §7.1–7.2).

use crate::{
    model::{Command, Endpoint, Method, Protocol, RealSpec, ServiceId, ServiceSpec},
    sched::SchedulerName,
};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("{0}")]
    Usage(String),
    #[error("option `{0}` is not yet supported")]
    NotYetSupported(String),
    #[error("restore line {line}: {message}")]
    Restore { line: usize, message: String },
}

fn usage(msg: impl Into<String>) -> ParseError {
    ParseError::Usage(msg.into())
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListOptions {
    pub service: Option<ServiceId>,
    pub stats: bool,
    pub exact: bool,
    /// `--nosort` turns it off: services and servers in IPVS order.
    pub sort: bool,
}

impl Default for ListOptions {
    fn default() -> Self {
        Self {
            service: None,
            stats: false,
            exact: false,
            sort: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Apply(Vec<Command>),
    /// `-R`: rules come from standard input.
    Restore,
    List(ListOptions),
    Save,
    Zero(Option<ServiceId>),
    Help,
    Version,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invocation {
    pub action: Action,
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    AddService,
    EditService,
    DeleteService,
    Clear,
    Restore,
    Save,
    AddServer,
    EditServer,
    DeleteServer,
    List,
    Zero,
    Help,
    Version,
}

#[derive(Default)]
struct Opts {
    service: Option<(Protocol, String)>,
    scheduler: Option<String>,
    real: Option<String>,
    method: Option<Method>,
    weight: Option<String>,
    u_threshold: Option<String>,
    l_threshold: Option<String>,
    stats: bool,
    exact: bool,
    nosort: bool,
    json: bool,
    seen: Vec<&'static str>,
}

const COMMANDS: &[(&str, &str, Cmd)] = &[
    ("-A", "--add-service", Cmd::AddService),
    ("-E", "--edit-service", Cmd::EditService),
    ("-D", "--delete-service", Cmd::DeleteService),
    ("-C", "--clear", Cmd::Clear),
    ("-R", "--restore", Cmd::Restore),
    ("-S", "--save", Cmd::Save),
    ("-a", "--add-server", Cmd::AddServer),
    ("-e", "--edit-server", Cmd::EditServer),
    ("-d", "--delete-server", Cmd::DeleteServer),
    ("-L", "--list", Cmd::List),
    ("-l", "--list", Cmd::List),
    ("-Z", "--zero", Cmd::Zero),
    ("-h", "--help", Cmd::Help),
    ("-v", "--version", Cmd::Version),
];

/// Options that parse but belong to features that have not landed.
const NOT_YET: &[&str] = &[
    "-p",
    "--persistent",
    "-M",
    "--netmask",
    "-b",
    "--sched-flags",
    "-o",
    "--ops",
    "--pe",
    "-f",
    "--fwmark-service",
    "-6",
    "--sctp-service",
    "-c",
    "--connection",
    "--rate",
    "--thresholds",
    "--persistent-conn",
    "--timeout",
    "--daemon",
    "--set",
    "--start-daemon",
    "--stop-daemon",
    "--tun-type",
    "--tun-port",
    "--tun-nocsum",
    "--tun-csum",
    "--tun-remcsum",
    "--tun-info",
];

/// Short options that take a value; in a bundle the rest is the value.
const SHORT_WITH_VALUE: &str = "tusrwxyMbf";

/// popt's conveniences, as ipvsadm accepts them: `-Ln` is `-L -n`,
/// `-t1.2.3.4:80` is `-t 1.2.3.4:80`, `--weight=3` is `--weight 3`.
fn expand(args: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for arg in args {
        if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((name, value)) => out.extend([format!("--{name}"), value.to_string()]),
                None => out.push(arg.to_string()),
            }
        } else if let Some(bundle) = arg
            .strip_prefix('-')
            .filter(|b| b.len() > 1 && !b.starts_with(|c: char| c.is_ascii_digit()))
        {
            for (i, c) in bundle.char_indices() {
                out.push(format!("-{c}"));
                if SHORT_WITH_VALUE.contains(c) {
                    let rest = &bundle[i + c.len_utf8()..];
                    if !rest.is_empty() {
                        out.push(rest.to_string());
                    }
                    break;
                }
            }
        } else {
            out.push(arg.to_string());
        }
    }
    out
}

/// Parse one ipvsadm invocation (without the program name).
pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<Invocation, ParseError> {
    let raw: Vec<&str> = args.iter().map(|s| s.as_ref()).collect();
    let expanded = expand(&raw);
    let args: Vec<&str> = expanded.iter().map(String::as_str).collect();
    let mut cmd: Option<Cmd> = None;
    let mut o = Opts::default();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i];
        i += 1;
        let mut value = |name: &str| -> Result<String, ParseError> {
            let v = args
                .get(i)
                .ok_or_else(|| usage(format!("option `{name}` needs a value")))?;
            i += 1;
            Ok(v.to_string())
        };
        if let Some(&(_, _, c)) = COMMANDS.iter().find(|(s, l, _)| arg == *s || arg == *l) {
            if cmd.is_some_and(|prev| prev != c) || cmd == Some(c) {
                return Err(usage("only one command may be given"));
            }
            cmd = Some(c);
            continue;
        }
        if NOT_YET.contains(&arg) {
            return Err(ParseError::NotYetSupported(arg.to_string()));
        }
        let key: &'static str = match arg {
            "-t" | "--tcp-service" => {
                o.service = Some((Protocol::Tcp, value(arg)?));
                "service"
            }
            "-u" | "--udp-service" => {
                o.service = Some((Protocol::Udp, value(arg)?));
                "service"
            }
            "-s" | "--scheduler" => {
                o.scheduler = Some(value(arg)?);
                "scheduler"
            }
            "-r" | "--real-server" => {
                o.real = Some(value(arg)?);
                "real-server"
            }
            "-g" | "--gatewaying" => {
                o.method = Some(Method::Route);
                "method"
            }
            "-i" | "--ipip" => {
                o.method = Some(Method::Tunnel);
                "method"
            }
            "-m" | "--masquerading" => {
                o.method = Some(Method::Nat);
                "method"
            }
            "-w" | "--weight" => {
                o.weight = Some(value(arg)?);
                "weight"
            }
            "-x" | "--u-threshold" => {
                o.u_threshold = Some(value(arg)?);
                "u-threshold"
            }
            "-y" | "--l-threshold" => {
                o.l_threshold = Some(value(arg)?);
                "l-threshold"
            }
            "-n" | "--numeric" => "numeric",
            "--sort" => "sort",
            "--nosort" => {
                o.nosort = true;
                "nosort"
            }
            "--stats" => {
                o.stats = true;
                "stats"
            }
            "-X" | "--exact" => {
                o.exact = true;
                "exact"
            }
            "--json" => {
                o.json = true;
                "json"
            }
            other => return Err(usage(format!("unknown option `{other}`"))),
        };
        if o.seen.contains(&key) {
            return Err(usage(format!("multiple {key} options specified")));
        }
        o.seen.push(key);
    }
    let json = o.json;
    let action = build(cmd, o)?;
    Ok(Invocation { action, json })
}

fn allow(o: &Opts, cmd: &str, allowed: &[&str]) -> Result<(), ParseError> {
    match o
        .seen
        .iter()
        .find(|k| !allowed.contains(k) && **k != "json")
    {
        Some(k) => Err(usage(format!("illegal {k} option with {cmd}"))),
        None => Ok(()),
    }
}

fn number(v: &Option<String>, what: &str, default: u32) -> Result<u32, ParseError> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| usage(format!("illegal {what} specified: `{s}`"))),
    }
}

fn service(o: &Opts, required: bool) -> Result<Option<ServiceId>, ParseError> {
    match &o.service {
        None if required => Err(usage("a service (-t or -u) is required")),
        None => Ok(None),
        Some((protocol, text)) => {
            let (addr, port) =
                Endpoint::parse_optional_port(text).map_err(|e| usage(e.to_string()))?;
            Ok(Some(ServiceId {
                protocol: *protocol,
                vip: Endpoint {
                    addr,
                    port: port.unwrap_or(0),
                },
            }))
        }
    }
}

fn scheduler(o: &Opts) -> Result<SchedulerName, ParseError> {
    match &o.scheduler {
        None => Ok(SchedulerName::Wlc),
        Some(s) => s
            .parse()
            .map_err(|e: crate::sched::UnknownScheduler| usage(e.to_string())),
    }
}

fn real(o: &Opts, svc: &ServiceId) -> Result<RealSpec, ParseError> {
    let text = o
        .real
        .as_deref()
        .ok_or_else(|| usage("a real server (-r) is required"))?;
    let (addr, port) = Endpoint::parse_optional_port(text).map_err(|e| usage(e.to_string()))?;
    Ok(RealSpec {
        server: Endpoint {
            addr,
            port: port.unwrap_or(svc.vip.port),
        },
        method: o.method.unwrap_or(Method::Route),
        weight: number(&o.weight, "weight", 1)?,
        u_threshold: number(&o.u_threshold, "upper threshold", 0)?,
        l_threshold: number(&o.l_threshold, "lower threshold", 0)?,
    })
}

fn build(cmd: Option<Cmd>, o: Opts) -> Result<Action, ParseError> {
    const SERVER_OPTS: &[&str] = &[
        "service",
        "real-server",
        "method",
        "weight",
        "u-threshold",
        "l-threshold",
    ];
    Ok(match cmd {
        // No command at all lists everything, like ipvsadm.
        None | Some(Cmd::List) => {
            allow(
                &o,
                "-L",
                &["service", "numeric", "stats", "exact", "sort", "nosort"],
            )?;
            Action::List(ListOptions {
                service: service(&o, false)?,
                stats: o.stats,
                exact: o.exact,
                sort: !o.nosort,
            })
        }
        Some(Cmd::AddService) | Some(Cmd::EditService) => {
            allow(&o, "-A/-E", &["service", "scheduler"])?;
            let spec = ServiceSpec {
                id: service(&o, true)?.expect("required"),
                scheduler: scheduler(&o)?,
                flags: Default::default(),
                persistence: None,
            };
            Action::Apply(vec![if cmd == Some(Cmd::AddService) {
                Command::AddService(spec)
            } else {
                Command::EditService(spec)
            }])
        }
        Some(Cmd::DeleteService) => {
            allow(&o, "-D", &["service"])?;
            Action::Apply(vec![Command::DeleteService {
                service: service(&o, true)?.expect("required"),
            }])
        }
        Some(Cmd::AddServer) | Some(Cmd::EditServer) => {
            allow(&o, "-a/-e", SERVER_OPTS)?;
            let svc = service(&o, true)?.expect("required");
            let real = real(&o, &svc)?;
            Action::Apply(vec![if cmd == Some(Cmd::AddServer) {
                Command::AddReal { service: svc, real }
            } else {
                Command::EditReal { service: svc, real }
            }])
        }
        Some(Cmd::DeleteServer) => {
            allow(&o, "-d", &["service", "real-server"])?;
            let svc = service(&o, true)?.expect("required");
            let server = real(&o, &svc)?.server;
            Action::Apply(vec![Command::DeleteReal {
                service: svc,
                server,
            }])
        }
        Some(Cmd::Clear) => {
            allow(&o, "-C", &[])?;
            Action::Apply(vec![Command::Clear])
        }
        Some(Cmd::Zero) => {
            allow(&o, "-Z", &["service"])?;
            Action::Zero(service(&o, false)?)
        }
        Some(Cmd::Save) => {
            allow(&o, "-S", &["numeric"])?;
            Action::Save
        }
        Some(Cmd::Restore) => {
            allow(&o, "-R", &[])?;
            Action::Restore
        }
        Some(Cmd::Help) => Action::Help,
        Some(Cmd::Version) => Action::Version,
    })
}

/// `-R`: every line is one ipvsadm invocation that changes rules; together
/// they form one transaction. Blank lines and `#` comments are skipped.
pub fn parse_restore(text: &str) -> Result<Vec<Command>, ParseError> {
    let mut commands = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"ipvsadm") {
            words.remove(0);
        }
        let restore = |message: String| ParseError::Restore {
            line: n + 1,
            message,
        };
        match parse(&words).map_err(|e| restore(e.to_string()))?.action {
            Action::Apply(cmds) => commands.extend(cmds),
            _ => {
                return Err(restore(
                    "only rule-changing commands may be restored".into(),
                ))
            }
        }
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn p(line: &str) -> Result<Action, ParseError> {
        parse(&line.split_whitespace().collect::<Vec<_>>()).map(|i| i.action)
    }
    fn vip() -> ServiceId {
        ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: Ipv4Addr::new(198, 18, 0, 10),
                port: 80,
            },
        }
    }

    #[test]
    fn add_service_and_server() {
        assert_eq!(
            p("-A -t 198.18.0.10:80 -s rr").unwrap(),
            Action::Apply(vec![Command::AddService(ServiceSpec {
                id: vip(),
                scheduler: SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            })])
        );
        let Action::Apply(cmds) =
            p("-a -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 3 -x 100 -y 50").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            cmds,
            [Command::AddReal {
                service: vip(),
                real: RealSpec {
                    server: "198.18.11.2:8080".parse().unwrap(),
                    method: Method::Nat,
                    weight: 3,
                    u_threshold: 100,
                    l_threshold: 50
                }
            }]
        );
    }

    #[test]
    fn ipvsadm_defaults() {
        // wlc scheduler, DR method, weight 1, the service's port for the server.
        let Action::Apply(c) = p("--add-service --tcp-service 198.18.0.10:80").unwrap() else {
            panic!()
        };
        assert_eq!(
            c,
            [Command::AddService(ServiceSpec {
                id: vip(),
                scheduler: SchedulerName::Wlc,
                flags: Default::default(),
                persistence: None,
            })]
        );
        let Action::Apply(c) = p("-a -t 198.18.0.10:80 -r 198.18.11.2").unwrap() else {
            panic!()
        };
        let Command::AddReal { real, .. } = &c[0] else {
            panic!()
        };
        assert_eq!(
            (real.method, real.weight, real.server.port),
            (Method::Route, 1, 80)
        );
    }

    #[test]
    fn lists() {
        assert_eq!(p("-L -n").unwrap(), Action::List(ListOptions::default()));
        assert_eq!(p("").unwrap(), Action::List(ListOptions::default()));
        assert_eq!(
            p("-L -n --stats -t 198.18.0.10:80").unwrap(),
            Action::List(ListOptions {
                service: Some(vip()),
                stats: true,
                ..Default::default()
            })
        );
        assert_eq!(p("-S -n").unwrap(), Action::Save);
        assert_eq!(p("-Z").unwrap(), Action::Zero(None));
        assert!(parse(&["-L", "--json"]).unwrap().json);
    }

    #[test]
    fn bundled_and_attached_options_as_popt_allows() {
        assert_eq!(p("-Ln").unwrap(), Action::List(ListOptions::default()));
        assert_eq!(
            p("-Ln --stats -t198.18.0.10:80").unwrap(),
            Action::List(ListOptions {
                service: Some(vip()),
                stats: true,
                ..Default::default()
            })
        );
        assert_eq!(
            p("-L --nosort").unwrap(),
            Action::List(ListOptions {
                sort: false,
                ..Default::default()
            })
        );
        let Action::Apply(c) =
            p("-a --tcp-service=198.18.0.10:80 -r 198.18.11.2:8080 -mw 3").unwrap()
        else {
            panic!()
        };
        let Command::AddReal { real, .. } = &c[0] else {
            panic!()
        };
        assert_eq!((real.method, real.weight), (Method::Nat, 3));
        assert!(p("-Lq")
            .unwrap_err()
            .to_string()
            .contains("unknown option `-q`"));
    }

    #[test]
    fn refusals_are_clear() {
        assert_eq!(p("-A -t 198.18.0.10:80 -s fastest").unwrap_err().to_string(), "unknown scheduler `fastest` (expected one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq)");
        assert!(p("-A -t 198.18.0:80")
            .unwrap_err()
            .to_string()
            .contains("malformed address"));
        assert_eq!(
            p("-A -t 198.18.0.10:80 -p 60").unwrap_err(),
            ParseError::NotYetSupported("-p".into())
        );
        assert!(p("-A -L")
            .unwrap_err()
            .to_string()
            .contains("only one command"));
        assert!(p("-A -t 198.18.0.10:80 -w 3")
            .unwrap_err()
            .to_string()
            .contains("illegal weight option"));
        assert!(p("-a -t 198.18.0.10:80 -r 1.2.3.4 -w x")
            .unwrap_err()
            .to_string()
            .contains("illegal weight"));
        assert!(p("-A -t 198.18.0.10:80 -s rr -s wrr")
            .unwrap_err()
            .to_string()
            .contains("multiple scheduler"));
        assert!(p("-a -t 198.18.0.10:80")
            .unwrap_err()
            .to_string()
            .contains("-r"));
        assert!(p("--frobnicate")
            .unwrap_err()
            .to_string()
            .contains("unknown option"));
    }

    #[test]
    fn restore_reads_a_saved_rule_file() {
        let saved = "# saved\n-A -t 198.18.0.10:80 -s rr\nipvsadm -a -t 198.18.0.10:80 -r 198.18.11.2:8080 -m -w 1\n\n";
        let cmds = parse_restore(saved).unwrap();
        assert_eq!(cmds.len(), 2);
        let err = parse_restore("-A -t 198.18.0.10:80 -s rr\n-L -n\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "restore line 2: only rule-changing commands may be restored"
        );
    }
}
