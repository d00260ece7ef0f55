//! keepalived.conf as a configuration source: its `virtual_server` blocks
//! (and `virtual_server_group`s) become our `[[service]]` tables, their
//! checkers our `[[service.real.check]]`s, and `vrrp_instance` our `[ha]`.
//! The result is our TOML, which `config` then reads as it reads any file:
//! one set of rules, and `lvsadm keepalived-import` prints it.
//!
//! Every statement is honoured, refused or, when it only tunes keepalived
//! itself (mail, SNMP, logging), ignored with a warning: a statement whose
//! loss would change what the director does is an error naming the file,
//! the line and what to do instead. Errors are collected, not stopped at,
//! so one run names them all; a `virtual_server` block with an error is
//! left out of the output whole.

mod syntax;

use std::{
    collections::HashMap,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
};

use syntax::Stmt;
pub use syntax::{At, SyntaxError};

use crate::model::Endpoint;

/// A statement refused or ignored, and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub at: At,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// A keepalived.conf read and translated: our TOML for what converts, and
/// what did not.
#[derive(Debug, Default)]
pub struct Import {
    pub toml: String,
    /// The keepalived statement each line of `toml` comes from.
    origins: Vec<Option<At>>,
    pub warnings: Vec<Diagnostic>,
    pub errors: Vec<Diagnostic>,
}

impl Import {
    /// The keepalived statement line `line` (from 1) of the TOML comes from.
    pub fn origin(&self, line: usize) -> Option<&At> {
        self.origins.get(line.checked_sub(1)?)?.as_ref()
    }
}

/// Read `path` (and what it includes) and translate it.
pub fn import(path: &Path) -> Import {
    let mut warnings = Vec::new();
    let stmts = syntax::read(path, &mut |at, message| {
        warnings.push(Diagnostic { at, message });
    });
    let mut t = Translator {
        warnings,
        ..Translator::default()
    };
    match stmts {
        Ok(stmts) => t.file(&stmts),
        Err(SyntaxError { at, message }) => t.errors.push(Diagnostic { at, message }),
    }
    t.finish(path)
}

/// One TOML table: its header, and each key with its value (a TOML
/// literal) and the statement that set it.
struct Table {
    header: &'static str,
    at: At,
    fields: Vec<(&'static str, String, At)>,
}

impl Table {
    fn new(header: &'static str, at: &At) -> Self {
        Self {
            header,
            at: at.clone(),
            fields: Vec::new(),
        }
    }

    fn set(&mut self, key: &'static str, literal: String, at: &At) {
        self.fields.retain(|(k, _, _)| *k != key);
        self.fields.push((key, literal, at.clone()));
    }
}

fn string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn seconds(s: f64) -> String {
    toml::Value::Float(s).to_string()
}

/// Settings a virtual server gives its real servers, and a real server its
/// checkers (keepalived's inheritance).
#[derive(Clone, Default)]
struct Inherited {
    delay_loop: Option<f64>,
    connect_timeout: Option<f64>,
    retry: Option<u32>,
    delay_before_retry: Option<f64>,
    alpha: Option<bool>,
    inhibit_on_failure: Option<bool>,
    virtualhost: Option<String>,
    method: Option<&'static str>,
    /// The virtual server's own `delay_loop` (MISC_CHECK's timeout default)
    /// and `virtualhost` (SSL_GET's SNI, which a real server's does not
    /// set).
    vs_delay_loop: Option<f64>,
    vs_virtualhost: Option<String>,
}

/// keepalived's `delay_loop` default.
const DEFAULT_DELAY_LOOP: f64 = 60.0;
/// keepalived's `connect_timeout` default.
const DEFAULT_CONNECT_TIMEOUT: f64 = 5.0;
/// IPVS's persistence timeout when `persistence_timeout` has no value.
const DEFAULT_PERSISTENCE: u32 = 360;
/// Addresses one `virtual_server_group` range may expand to.
const MAX_GROUP_RANGE: u32 = 4096;
/// keepalived's `advert_int` default (seconds).
const DEFAULT_ADVERT_INT: f64 = 1.0;
/// keepalived's VRRP priority default.
const DEFAULT_PRIORITY: u32 = 100;

#[derive(Clone)]
struct GroupMember {
    addr: IpAddr,
    port: u16,
}

struct TrackFile {
    path: String,
    weight: Option<(i64, bool)>,
}

/// The `[ha]` table the `vrrp_instance`s make, merged: lvs runs one
/// active/backup pair for every floating address.
struct Ha {
    name: String,
    at: At,
    /// VRRP's version: how the skew of the dead interval is computed.
    version: u8,
    priority: u32,
    preempt: bool,
    advert: f64,
    key: String,
    link: (String, Ipv4Addr, Ipv4Addr),
    addresses: Vec<(String, String, At)>,
    garp_repeat: Option<u32>,
}

#[derive(Default)]
struct Translator {
    tables: Vec<Table>,
    warnings: Vec<Diagnostic>,
    errors: Vec<Diagnostic>,
    groups: HashMap<String, Vec<GroupMember>>,
    /// global_defs' `vrrp_version` (keepalived's default is 2).
    vrrp_version: Option<u8>,
    track_files: HashMap<String, TrackFile>,
    ha: Option<Ha>,
}

/// keepalived's `<BOOL>`: a keyword alone is true.
fn boolean(stmt: &Stmt) -> Result<bool, String> {
    match stmt.args().first().map(String::as_str) {
        None | Some("on" | "true" | "yes") => Ok(true),
        Some("off" | "false" | "no") => Ok(false),
        Some(other) => Err(format!(
            "`{}` takes on|off|true|false|yes|no, not `{other}`",
            stmt.keyword()
        )),
    }
}

fn one_arg(stmt: &Stmt) -> Result<&str, String> {
    match stmt.args() {
        [a] => Ok(a),
        _ => Err(format!("`{}` takes one value", stmt.keyword())),
    }
}

fn number<T: std::str::FromStr>(stmt: &Stmt, what: &str) -> Result<T, String> {
    let a = one_arg(stmt)?;
    a.parse()
        .map_err(|_| format!("`{}`: `{a}` is not {what}", stmt.keyword()))
}

/// keepalived's `<TIMER>`: seconds, fractions allowed.
fn timer(stmt: &Stmt) -> Result<f64, String> {
    let s: f64 = number(stmt, "a time in seconds")?;
    if s.is_finite() && s > 0.0 {
        Ok(s)
    } else {
        Err(format!("`{}` must be above 0 seconds", stmt.keyword()))
    }
}

fn address(text: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not an IPv4 or IPv6 address"))
}

fn port(text: &str) -> Result<u16, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a port (0 to 65535)"))
}

fn endpoint(addr: IpAddr, port: u16) -> String {
    Endpoint { addr, port }.to_string()
}

/// `lvs_method`/`lb_kind`: NAT, DR or TUN (ipip).
fn method(stmt: &Stmt) -> Result<&'static str, String> {
    match stmt.args() {
        [m] if m.eq_ignore_ascii_case("nat") => Ok("nat"),
        [m] if m.eq_ignore_ascii_case("dr") => Ok("route"),
        [m] if m.eq_ignore_ascii_case("tun") => Ok("tunnel"),
        [m, t, kind] if m.eq_ignore_ascii_case("tun") && t == "type" && kind == "ipip" => {
            Ok("tunnel")
        }
        [m, ..] if m.eq_ignore_ascii_case("tun") => Err(
            "lvs tunnels with IP-in-IP only (`lvs_method TUN` or `TUN type ipip`); GUE and GRE tunnels are not supported".into(),
        ),
        _ => Err(format!(
            "`{}` takes NAT, DR or TUN, not `{}`",
            stmt.keyword(),
            stmt.args().join(" ")
        )),
    }
}

/// The words of a keepalived script line (`misc_path`): split at unquoted
/// spaces, single quotes keep a word's spaces (the syntax has removed the
/// double quotes around the whole).
fn script_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                word.get_or_insert_with(String::new);
            }
            c if c.is_whitespace() && !quoted => words.extend(word.take()),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// Keywords that only tune keepalived itself: ignored, with a warning.
fn tunes_keepalived(keyword: &str) -> bool {
    matches!(
        keyword,
        "smtp_alert"
            | "snmp_name"
            | "log_all_failures"
            | "ha_suspend"
            | "hashed"
            | "warmup"
            | "tls_compliant"
    )
}

impl Translator {
    fn error(&mut self, at: &At, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            at: at.clone(),
            message: message.into(),
        });
    }

    fn warn(&mut self, at: &At, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            at: at.clone(),
            message: message.into(),
        });
    }

    fn ignored(&mut self, stmt: &Stmt) {
        self.warn(
            &stmt.at,
            format!("`{}` tunes keepalived itself; ignored", stmt.keyword()),
        );
    }

    fn unknown(&mut self, stmt: &Stmt, inside: &str) {
        self.error(
            &stmt.at,
            format!("unknown keyword `{}` in {inside}", stmt.keyword()),
        );
    }

    fn file(&mut self, stmts: &[Stmt]) {
        // Definitions first: keepalived resolves names after reading all.
        for stmt in stmts {
            match stmt.keyword() {
                "virtual_server_group" => self.group(stmt),
                "track_file" | "vrrp_track_file" => self.track_file(stmt),
                "global_defs" => {
                    for s in stmt.block.iter().flatten() {
                        if s.keyword() == "vrrp_version" {
                            match number::<u8>(s, "2 or 3") {
                                Ok(v @ (2 | 3)) => self.vrrp_version = Some(v),
                                Ok(v) => {
                                    self.error(&s.at, format!("`vrrp_version` is 2 or 3, not {v}"))
                                }
                                Err(e) => self.error(&s.at, e),
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for stmt in stmts {
            match stmt.keyword() {
                "virtual_server_group" | "track_file" | "vrrp_track_file" => {}
                "global_defs" => self.global_defs(stmt),
                "virtual_server" => self.virtual_server(stmt),
                "vrrp_instance" => self.vrrp_instance(stmt),
                "vrrp_sync_group" => self.sync_group(stmt),
                // Used only through `track_script`, which is refused there.
                "vrrp_script" => {}
                "static_ipaddress" | "static_routes" | "static_rules" => self.error(
                    &stmt.at,
                    format!("`{}` is not supported: configure these with ip(8), systemd-networkd or ifupdown, as the router's own addresses, routes and rules", stmt.keyword()),
                ),
                "SSL" if stmt.block.as_ref().is_none_or(Vec::is_empty) => {}
                "SSL" => self.error(
                    &stmt.at,
                    "`SSL` (a CA, client certificate and key for SSL_GET) is not supported: lvs's TLS checks present no certificate and, as keepalived's without a CA, accept the server's",
                ),
                other => self.error(
                    &stmt.at,
                    format!("`{other}` is not supported (lvs takes global_defs, virtual_server, virtual_server_group, track_file, vrrp_instance and vrrp_sync_group)"),
                ),
            }
        }
    }

    fn global_defs(&mut self, stmt: &Stmt) {
        for s in stmt.block.iter().flatten() {
            match s.keyword() {
                "lvs_timeouts" => self.error(
                    &s.at,
                    "`lvs_timeouts` is not read from the file: set the timeouts with `lvsadm --set TCP TCPFIN UDP` after lvsd starts",
                ),
                "net_namespace" => self.error(
                    &s.at,
                    "`net_namespace` is not supported: start lvsd in the namespace (`ip netns exec NAME lvsd ...`)",
                ),
                "lvs_sync_daemon" => self.warn(
                    &s.at,
                    "`lvs_sync_daemon` ignored: an lvs pair always syncs its connections, over the links of its vrrp_instance",
                ),
                "script_user" | "enable_script_security" => self.error(
                    &s.at,
                    format!("`{}` is not supported: lvsd runs MISC_CHECK programs and quorum scripts as itself (root); wrap them (`runuser -u USER -- PROGRAM`)", s.keyword()),
                ),
                // Read in the first pass.
                "vrrp_version" => {}
                _ => self.ignored(s),
            }
        }
    }

    fn track_file(&mut self, stmt: &Stmt) {
        let Some(name) = stmt.args().first().cloned() else {
            return self.error(&stmt.at, "`track_file` needs a name");
        };
        let mut path = None;
        let mut weight = None;
        for s in stmt.block.iter().flatten() {
            match s.keyword() {
                "file" => match one_arg(s) {
                    Ok(p) => path = Some(p.to_string()),
                    Err(e) => self.error(&s.at, e),
                },
                "weight" => match file_weight(s) {
                    Ok(w) => weight = Some(w),
                    Err(e) => self.error(&s.at, e),
                },
                "init_file" => self.error(
                    &s.at,
                    "`init_file` is not supported: create the file (with its initial value) before lvsd starts",
                ),
                _ => self.unknown(s, "track_file"),
            }
        }
        match path {
            Some(path) => {
                self.track_files.insert(name, TrackFile { path, weight });
            }
            None => self.error(&stmt.at, format!("track_file {name} has no `file`")),
        }
    }

    /// `virtual_server_group NAME { ADDR[-RANGE|/LEN] [PORT] ... }`.
    fn group(&mut self, stmt: &Stmt) {
        let Some(name) = stmt.args().first().cloned() else {
            return self.error(&stmt.at, "`virtual_server_group` needs a name");
        };
        let mut members = Vec::new();
        for s in stmt.block.iter().flatten() {
            if s.keyword() == "fwmark" {
                self.error(&s.at, FWMARK);
                continue;
            }
            let port = match s.args() {
                [] => Ok(0),
                [p] => port(p),
                _ => Err("a group entry is an address or range and a port".to_string()),
            };
            match port.and_then(|port| expand_range(s.keyword()).map(|addrs| (addrs, port))) {
                Ok((addrs, port)) => {
                    members.extend(addrs.into_iter().map(|addr| GroupMember { addr, port }));
                }
                Err(e) => self.error(&s.at, e),
            }
        }
        self.groups.insert(name, members);
    }

    fn virtual_server(&mut self, stmt: &Stmt) {
        let errors_before = self.errors.len();
        let members = match stmt.args() {
            [kind, _] if kind == "fwmark" => return self.error(&stmt.at, FWMARK),
            [kind, name] if kind == "group" => match self.groups.get(name) {
                Some(m) => m.clone(),
                None => {
                    return self.error(&stmt.at, format!("no virtual_server_group named `{name}`"))
                }
            },
            [a, p] => match address(a).and_then(|addr| {
                Ok(GroupMember {
                    addr,
                    port: port(p)?,
                })
            }) {
                Ok(m) => vec![m],
                Err(e) => return self.error(&stmt.at, e),
            },
            [a] => match address(a) {
                Ok(addr) => vec![GroupMember { addr, port: 0 }],
                Err(e) => return self.error(&stmt.at, e),
            },
            _ => {
                return self.error(
                    &stmt.at,
                    "`virtual_server` takes ADDRESS [PORT], `group NAME` or `fwmark N`",
                )
            }
        };
        let mut service = Table::new("[[service]]", &stmt.at);
        let mut inherited = Inherited::default();
        let mut flags: Vec<(String, At)> = Vec::new();
        let mut protocol = "tcp";
        let mut sorry: Option<(IpAddr, Option<u16>, At)> = None;
        let mut sorry_method: Option<&'static str> = None;
        let mut reals: Vec<&Stmt> = Vec::new();
        for s in stmt.block.iter().flatten() {
            let result: Result<(), String> = match s.keyword() {
                "real_server" => {
                    reals.push(s);
                    Ok(())
                }
                "lvs_sched" | "lb_algo" => match one_arg(s) {
                    Ok(name @ ("rr" | "wrr" | "lc" | "wlc" | "lblc" | "lblcr" | "sh" | "dh"
                    | "sed" | "nq" | "mh")) => {
                        service.set("scheduler", string(name), &s.at);
                        Ok(())
                    }
                    Ok(name @ ("fo" | "ovf" | "twos")) => Err(format!(
                        "scheduler `{name}` is not supported yet: lvs has rr, wrr, lc, wlc, lblc, lblcr, sh, dh, sed, nq and mh"
                    )),
                    Ok(name) => Err(format!("unknown scheduler `{name}`")),
                    Err(e) => Err(e),
                },
                "flag-1" | "flag-2" | "flag-3" | "sh-port" | "sh-fallback" | "mh-port"
                | "mh-fallback" => {
                    flags.push((s.keyword().to_string(), s.at.clone()));
                    Ok(())
                }
                "ops" => Err("one-packet scheduling (`ops`, ipvsadm's -o) is not supported yet".into()),
                "lvs_method" | "lb_kind" => method(s).map(|m| inherited.method = Some(m)),
                "persistence_timeout" => match s.args() {
                    [] => {
                        service.set("persistent", DEFAULT_PERSISTENCE.to_string(), &s.at);
                        Ok(())
                    }
                    _ => number::<u32>(s, "a number of seconds").map(|t| {
                        service.set("persistent", t.to_string(), &s.at);
                    }),
                },
                "persistence_granularity" => one_arg(s).map(|m| {
                    service.set("netmask", string(m), &s.at);
                }),
                "persistence_engine" => Err("`persistence_engine` (IPVS's SIP persistence) is not supported".into()),
                "protocol" => match one_arg(s) {
                    Ok(p) if p.eq_ignore_ascii_case("tcp") => {
                        protocol = "tcp";
                        Ok(())
                    }
                    Ok(p) if p.eq_ignore_ascii_case("udp") => {
                        protocol = "udp";
                        Ok(())
                    }
                    Ok(p) if p.eq_ignore_ascii_case("sctp") => {
                        Err("SCTP services are not supported: lvs forwards TCP and UDP".into())
                    }
                    Ok(p) => Err(format!("unknown protocol `{p}` (TCP or UDP)")),
                    Err(e) => Err(e),
                },
                "sorry_server" => match s.args() {
                    [a] => address(a).map(|a| sorry = Some((a, None, s.at.clone()))),
                    [a, p] => address(a).and_then(|a| {
                        sorry = Some((a, Some(port(p)?), s.at.clone()));
                        Ok(())
                    }),
                    _ => Err("`sorry_server` takes ADDRESS [PORT]".into()),
                },
                "sorry_server_lvs_method" => method(s).map(|m| sorry_method = Some(m)),
                "sorry_server_inhibit" => Err("`sorry_server_inhibit` is not supported: the sorry server is not health checked".into()),
                "omega" => boolean(s).map(|b| {
                    if b {
                        service.set("omega", "true".into(), &s.at);
                    }
                }),
                "quorum" => number::<u32>(s, "a weight").map(|q| {
                    service.set("quorum", q.to_string(), &s.at);
                }),
                "hysteresis" => number::<u32>(s, "a weight").map(|h| {
                    service.set("hysteresis", h.to_string(), &s.at);
                }),
                "quorum_up" | "quorum_down" => match s.args() {
                    [command] => {
                        let key = if s.keyword() == "quorum_up" { "quorum_up" } else { "quorum_down" };
                        service.set(key, string(command), &s.at);
                        Ok(())
                    }
                    [_, ..] => Err(format!("`{}`: running the command as another user is not supported; wrap it (`runuser -u USER -- COMMAND`)", s.keyword())),
                    [] => Err(format!("`{}` needs a command", s.keyword())),
                },
                "ip_family" => {
                    self.warn(&s.at, "`ip_family` applies to fwmark services only; ignored");
                    Ok(())
                }
                _ => self.common(s, &mut inherited, "virtual_server"),
            };
            if let Err(e) = result {
                self.error(&s.at, e);
            }
        }
        inherited.vs_delay_loop = inherited.delay_loop;
        inherited.vs_virtualhost = inherited.virtualhost.clone();
        // keepalived makes a port-0 service, and one with a granularity,
        // persistent (360 s) when it is not already.
        let has = |key| service.fields.iter().any(|(k, _, _)| *k == key);
        if !has("persistent") && (members.iter().any(|m| m.port == 0) || has("netmask")) {
            service.set("persistent", DEFAULT_PERSISTENCE.to_string(), &stmt.at);
            self.warn(&stmt.at, format!("no `persistence_timeout`: keepalived makes this service persistent ({DEFAULT_PERSISTENCE} s), as IPVS needs for a port-0 service or a granularity"));
        }
        service.set("protocol", string(protocol), &stmt.at);
        if !flags.is_empty() {
            let list: Vec<String> = flags.iter().map(|(f, _)| string(f)).collect();
            service.set("sched_flags", format!("[{}]", list.join(", ")), &flags[0].1);
        }
        let vs_method = inherited.method.unwrap_or("nat");
        let mut real_tables = Vec::new();
        for member in &members {
            for r in &reals {
                real_tables.extend(self.real_server(r, member, &inherited, vs_method));
            }
        }
        if self.errors.len() > errors_before {
            return;
        }
        for member in &members {
            let mut table = Table {
                header: service.header,
                at: service.at.clone(),
                fields: service.fields.clone(),
            };
            table.set(
                "address",
                string(&endpoint(member.addr, member.port)),
                &stmt.at,
            );
            if let Some((addr, port, at)) = &sorry {
                table.set(
                    "sorry_server",
                    string(&endpoint(*addr, port.unwrap_or(member.port))),
                    at,
                );
                table.set(
                    "sorry_method",
                    string(sorry_method.unwrap_or(vs_method)),
                    at,
                );
            }
            // `address` and `protocol` first, as a reader expects them.
            table
                .fields
                .sort_by_key(|(k, _, _)| !matches!(*k, "protocol" | "address"));
            self.tables.push(table);
            for (m, tables) in &real_tables {
                if m.addr == member.addr && m.port == member.port {
                    self.tables.extend(tables.iter().map(|t| Table {
                        header: t.header,
                        at: t.at.clone(),
                        fields: t.fields.clone(),
                    }));
                }
            }
        }
    }

    /// A keyword every level takes (virtual server, real server, checker)
    /// into `inherited`; else one that only tunes keepalived (a warning), or
    /// an unknown one in block `inside`.
    fn common(&mut self, s: &Stmt, inherited: &mut Inherited, inside: &str) -> Result<(), String> {
        match s.keyword() {
            "delay_loop" => timer(s).map(|t| inherited.delay_loop = Some(t)),
            "connect_timeout" => timer(s).map(|t| inherited.connect_timeout = Some(t)),
            "retry" => number::<u32>(s, "a count").and_then(|r| {
                if r < 1_000 {
                    inherited.retry = Some(r);
                    Ok(())
                } else {
                    Err(format!("`retry {r}`: at most 999 (a server down after that many failures is never down)"))
                }
            }),
            "delay_before_retry" => timer(s).map(|t| inherited.delay_before_retry = Some(t)),
            "alpha" => boolean(s).map(|b| inherited.alpha = Some(b)),
            "inhibit_on_failure" => boolean(s).map(|b| inherited.inhibit_on_failure = Some(b)),
            "virtualhost" => one_arg(s).map(|h| inherited.virtualhost = Some(h.to_string())),
            keyword if tunes_keepalived(keyword) => {
                self.ignored(s);
                Ok(())
            }
            _ => {
                self.unknown(s, inside);
                Ok(())
            }
        }
    }

    /// One `real_server` block for one member of the virtual server: its
    /// table and its checkers' tables.
    fn real_server(
        &mut self,
        stmt: &Stmt,
        member: &GroupMember,
        vs: &Inherited,
        vs_method: &'static str,
    ) -> Option<(GroupMember, Vec<Table>)> {
        let (addr, port) = match stmt.args() {
            [a] => (address(a), Ok(member.port)),
            [a, p] => (address(a), port(p)),
            _ => {
                self.error(&stmt.at, "`real_server` takes ADDRESS [PORT]");
                return None;
            }
        };
        let (addr, port) = match (addr, port) {
            (Ok(a), Ok(p)) => (a, p),
            (Err(e), _) | (_, Err(e)) => {
                self.error(&stmt.at, e);
                return None;
            }
        };
        let mut real = Table::new("[[service.real]]", &stmt.at);
        real.set("address", string(&endpoint(addr, port)), &stmt.at);
        let mut inherited = vs.clone();
        inherited.method = None;
        let mut checkers: Vec<&Stmt> = Vec::new();
        for s in stmt.block.iter().flatten() {
            let result = match s.keyword() {
                "weight" => number::<u32>(s, "a weight").map(|w| {
                    real.set("weight", w.to_string(), &s.at);
                }),
                "lvs_method" | "lb_kind" => method(s).map(|m| inherited.method = Some(m)),
                "uthreshold" => number::<u32>(s, "a connection count").map(|n| {
                    real.set("u_threshold", n.to_string(), &s.at);
                }),
                "lthreshold" => number::<u32>(s, "a connection count").map(|n| {
                    real.set("l_threshold", n.to_string(), &s.at);
                }),
                "notify_up" | "notify_down" => Err(format!(
                    "`{}` is not supported: lvsd runs no per-server scripts; watch `lvsadm -L` (or use the service's quorum_up/quorum_down)",
                    s.keyword()
                )),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "SMTP_CHECK" | "DNS_CHECK"
                | "MISC_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" => {
                    checkers.push(s);
                    Ok(())
                }
                "BFD_CHECK" => Err("`BFD_CHECK` is not supported: use a TCP_CHECK or PING_CHECK".into()),
                _ => self.common(s, &mut inherited, "real_server"),
            };
            if let Err(e) = result {
                self.error(&s.at, e);
            }
        }
        real.set(
            "method",
            string(inherited.method.unwrap_or(vs_method)),
            &stmt.at,
        );
        if inherited.inhibit_on_failure == Some(true) {
            real.set("inhibit_on_failure", "true".into(), &stmt.at);
        }
        let mut tables = vec![real];
        let server = Endpoint { addr, port };
        for c in checkers {
            tables.extend(self.checker(c, server, &inherited));
        }
        Some((member.clone(), tables))
    }

    /// One checker block: a check table (HTTP_GET and SSL_GET one per
    /// `url`, SMTP_CHECK one per `host`).
    fn checker(&mut self, stmt: &Stmt, server: Endpoint, rs: &Inherited) -> Vec<Table> {
        let kind = stmt.keyword();
        let mut inherited = rs.clone();
        let mut base = Table::new("[[service.real.check]]", &stmt.at);
        let mut connect_ip: Option<IpAddr> = None;
        let mut connect_port: Option<u16> = None;
        let mut urls: Vec<&Stmt> = Vec::new();
        let mut hosts: Vec<&Stmt> = Vec::new();
        let mut file: Option<(String, At)> = None;
        let mut file_weight_set: Option<(i64, bool)> = None;
        let mut misc_timeout: Option<u32> = None;
        let mut reply_lengths: Vec<(&'static str, u32, At)> = Vec::new();
        let mut fast_recovery = false;
        let mut enable_sni = false;
        let mut checker_vhost: Option<String> = None;
        let mut sni_name: Option<(String, At)> = None;
        let type_name = match kind {
            "TCP_CHECK" => "tcp",
            "HTTP_GET" | "SSL_GET" => "http",
            "SMTP_CHECK" => "smtp",
            "DNS_CHECK" => "dns",
            "MISC_CHECK" => "exec",
            "UDP_CHECK" => "udp",
            "PING_CHECK" => "ping",
            _ => "file",
        };
        base.set("type", string(type_name), &stmt.at);
        if kind == "SSL_GET" {
            base.set("tls", "true".into(), &stmt.at);
        }
        for s in stmt.block.iter().flatten() {
            let k = s.keyword();
            let result = match (kind, k) {
                (_, "connect_ip") if kind != "MISC_CHECK" && kind != "FILE_CHECK" => {
                    one_arg(s).and_then(address).map(|a| connect_ip = Some(a))
                }
                (_, "connect_port") if kind != "MISC_CHECK" && kind != "FILE_CHECK" => {
                    one_arg(s).and_then(port).map(|p| connect_port = Some(p))
                }
                (_, "bindto") if kind != "MISC_CHECK" && kind != "FILE_CHECK" => {
                    one_arg(s).and_then(address).map(|a| base.set("bind", string(&a.to_string()), &s.at))
                }
                (_, "bind_port" | "bind_if" | "fwmark") => Err(format!(
                    "`{k}` is not supported for checkers: lvs binds a checker to an address only (`bindto`)"
                )),
                ("HTTP_GET" | "SSL_GET", "url") => {
                    urls.push(s);
                    Ok(())
                }
                ("HTTP_GET" | "SSL_GET", "http_protocol") => match one_arg(s) {
                    Ok(v @ ("1.0" | "1.0C" | "1.1")) => {
                        base.set("version", string(v), &s.at);
                        Ok(())
                    }
                    Ok(v) => Err(format!("`http_protocol` is 1.0, 1.0C or 1.1, not `{v}`")),
                    Err(e) => Err(e),
                },
                ("HTTP_GET" | "SSL_GET", "fast_recovery") => boolean(s).map(|b| fast_recovery = b),
                ("HTTP_GET" | "SSL_GET", "virtualhost") => one_arg(s).map(|h| {
                    inherited.virtualhost = Some(h.to_string());
                    checker_vhost = Some(h.to_string());
                }),
                (_, "virtualhost" | "inhibit_on_failure") => {
                    self.unknown(s, kind);
                    Ok(())
                }
                ("SSL_GET", "enable_sni") => boolean(s).map(|b| enable_sni = b),
                ("SSL_GET", "sni_name") => one_arg(s).map(|n| sni_name = Some((n.to_string(), s.at.clone()))),
                ("SMTP_CHECK", "helo_name") => one_arg(s).map(|n| base.set("helo", string(n), &s.at)),
                ("SMTP_CHECK", "host") => {
                    hosts.push(s);
                    Ok(())
                }
                ("DNS_CHECK", "type") => match one_arg(s) {
                    Ok(t) => {
                        let upper = t.to_ascii_uppercase();
                        if matches!(upper.as_str(), "A" | "NS" | "CNAME" | "SOA" | "MX" | "TXT" | "AAAA") {
                            base.set("query_type", string(&upper), &s.at);
                            Ok(())
                        } else {
                            Err(format!("DNS_CHECK `type` is A, NS, CNAME, SOA, MX, TXT or AAAA, not `{t}`"))
                        }
                    }
                    Err(e) => Err(e),
                },
                ("DNS_CHECK", "name") => one_arg(s).map(|n| base.set("name", string(n), &s.at)),
                ("MISC_CHECK", "misc_path") => one_arg(s).and_then(|p| {
                    let mut words = script_words(p).into_iter();
                    let program = words.next().ok_or("`misc_path` is empty")?;
                    base.set("program", string(&program), &s.at);
                    let args: Vec<String> = words.map(|w| string(&w)).collect();
                    if !args.is_empty() {
                        base.set("args", format!("[{}]", args.join(", ")), &s.at);
                    }
                    Ok(())
                }),
                // 0 is keepalived's "unset".
                ("MISC_CHECK", "misc_timeout") => number::<u32>(s, "a number of seconds")
                    .map(|t| misc_timeout = Some(t).filter(|t| *t > 0)),
                ("MISC_CHECK", "misc_dynamic") => boolean(s).map(|b| {
                    if b {
                        base.set("dynamic", "true".into(), &s.at);
                    }
                }),
                ("MISC_CHECK", "user") => Err("`user`: running the check as another user is not supported; wrap it (`runuser -u USER -- PROGRAM`)".into()),
                ("UDP_CHECK", "payload") => one_hex(s).map(|h| base.set("payload", string(&h), &s.at)),
                ("UDP_CHECK", "require_reply") => {
                    let value = if s.args().is_empty() { "true".to_string() } else { string(&s.args().join(" ")) };
                    base.set("require_reply", value, &s.at);
                    Ok(())
                }
                ("UDP_CHECK", "min_reply_length" | "max_reply_length") => {
                    number::<u32>(s, "a length").map(|n| {
                        let key = if k == "min_reply_length" { "min_reply_length" } else { "max_reply_length" };
                        reply_lengths.push((key, n, s.at.clone()));
                    })
                }
                ("FILE_CHECK", "track_file") => one_arg(s).map(|n| file = Some((n.to_string(), s.at.clone()))),
                ("FILE_CHECK", "weight") => file_weight(s).map(|w| file_weight_set = Some(w)),
                // Documented, but keepalived's parser never reads it: value
                // x weight applies whenever the weight is not 0.
                ("FILE_CHECK", "dynamic") => {
                    self.warn(&s.at, "`dynamic` ignored: keepalived itself applies value x weight whenever the weight is not 0");
                    Ok(())
                }
                (_, keyword) if tunes_keepalived(keyword) => {
                    self.ignored(s);
                    Ok(())
                }
                ("FILE_CHECK", _) => {
                    self.unknown(s, kind);
                    Ok(())
                }
                _ => self.common(s, &mut inherited, kind),
            };
            if let Err(e) = result {
                self.error(&s.at, e);
            }
        }
        if kind == "FILE_CHECK" {
            let Some((name, at)) = file else {
                self.error(&stmt.at, "FILE_CHECK needs `track_file NAME`");
                return Vec::new();
            };
            let Some(track) = self.track_files.get(&name) else {
                self.error(&at, format!("no track_file named `{name}`"));
                return Vec::new();
            };
            base.set("path", string(&track.path), &at);
            let (weight, reverse) = file_weight_set.or(track.weight).unwrap_or((1, false));
            base.set("weight", weight.to_string(), &at);
            if reverse {
                base.set("reverse", "true".into(), &at);
            }
            return vec![base];
        }
        // Timing, as keepalived's defaults for this checker.
        let delay_loop = inherited.delay_loop.unwrap_or(DEFAULT_DELAY_LOOP);
        let retry = inherited.retry.unwrap_or(match kind {
            "MISC_CHECK" => 0,
            "DNS_CHECK" => 3,
            _ => 1,
        });
        let delay_before_retry = inherited.delay_before_retry.unwrap_or(match kind {
            "HTTP_GET" | "SSL_GET" => 3.0,
            "DNS_CHECK" => delay_loop,
            _ => 1.0,
        });
        let timeout = match kind {
            // keepalived: the virtual server's delay_loop.
            "MISC_CHECK" => misc_timeout.map_or(
                inherited.vs_delay_loop.unwrap_or(DEFAULT_DELAY_LOOP),
                f64::from,
            ),
            _ => inherited.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        };
        base.set("interval", seconds(delay_loop), &stmt.at);
        base.set("timeout", seconds(timeout), &stmt.at);
        base.set("fall", (retry + 1).to_string(), &stmt.at);
        base.set("retry_interval", seconds(delay_before_retry), &stmt.at);
        if inherited.alpha == Some(true) {
            base.set("start", string("down"), &stmt.at);
        }
        let connect = |ip: Option<IpAddr>, port: Option<u16>| {
            (ip.is_some() || port.is_some())
                .then(|| endpoint(ip.unwrap_or(server.addr), port.unwrap_or(server.port)))
        };
        if let Some(c) = connect(connect_ip, connect_port) {
            base.set("connect", string(&c), &stmt.at);
        }
        // keepalived reads the lengths only against a reply pattern.
        let pattern = base
            .fields
            .iter()
            .any(|(k, v, _)| *k == "require_reply" && v != "true");
        for (key, n, at) in reply_lengths {
            if pattern {
                base.set(key, n.to_string(), &at);
            } else {
                self.warn(&at, format!("`{key}` ignored: keepalived checks reply lengths only against a `require_reply` pattern"));
            }
        }
        // After a failure keepalived's HTTP_GET and SSL_GET take a second
        // success, a loop later, to come back, unless `fast_recovery`.
        if matches!(kind, "HTTP_GET" | "SSL_GET") && !fast_recovery {
            base.set("rise", "2".into(), &stmt.at);
        }
        // SNI only with `enable_sni`: `sni_name`, else the url's virtual
        // host, the checker's, the virtual server's (not the real
        // server's), as keepalived's check_ssl.c chooses (in `url`).
        let sni = match (enable_sni, sni_name) {
            (false, Some((_, at))) => {
                self.warn(
                    &at,
                    "`sni_name` ignored without `enable_sni`, as keepalived ignores it",
                );
                None
            }
            (false, None) => None,
            (true, Some((name, at))) => {
                base.set("sni", string(&name), &at);
                Some(Some(name))
            }
            (true, None) => Some(checker_vhost.or_else(|| inherited.vs_virtualhost.clone())),
        };
        match kind {
            "HTTP_GET" | "SSL_GET" => {
                if urls.is_empty() {
                    self.error(&stmt.at, format!("{kind} needs at least one `url` block"));
                }
                urls.iter()
                    .filter_map(|u| {
                        self.url(u, &base, inherited.virtualhost.as_deref(), sni.as_ref())
                    })
                    .collect()
            }
            "SMTP_CHECK" if !hosts.is_empty() => {
                // keepalived (check_smtp.c): each host is a checker of its
                // own, with the server's timeout; the block's own checker
                // stays too when it sets connection options itself.
                let own = connect_ip.is_some()
                    || connect_port.is_some()
                    || base.fields.iter().any(|(k, _, _)| *k == "bind")
                    || inherited.connect_timeout != rs.connect_timeout;
                let mut host_base = Table {
                    header: base.header,
                    at: base.at.clone(),
                    fields: base.fields.clone(),
                };
                host_base
                    .fields
                    .retain(|(k, _, _)| !matches!(*k, "connect" | "bind"));
                let server_timeout = rs.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
                host_base.set("timeout", seconds(server_timeout), &stmt.at);
                let mut tables: Vec<Table> = hosts
                    .iter()
                    .filter_map(|h| self.smtp_host(h, &host_base, server))
                    .collect();
                if own {
                    tables.insert(0, base);
                }
                tables
            }
            _ => vec![base],
        }
    }

    /// One HTTP_GET/SSL_GET `url` block as a check of its own: keepalived
    /// needs every url to pass, as lvs needs every check to.
    /// `sni`: with `enable_sni`, the SNI the checker gives (its
    /// `sni_name`, or a virtual host), which the url's own virtual host
    /// replaces unless it is `sni_name`.
    fn url(
        &mut self,
        stmt: &Stmt,
        base: &Table,
        virtualhost: Option<&str>,
        sni: Option<&Option<String>>,
    ) -> Option<Table> {
        let mut t = Table {
            header: base.header,
            at: stmt.at.clone(),
            fields: base.fields.clone(),
        };
        let mut host = virtualhost.map(str::to_string);
        let mut url_vhost: Option<String> = None;
        let mut ok = true;
        for s in stmt.block.iter().flatten() {
            let result = match s.keyword() {
                "path" => one_arg(s).map(|p| t.set("path", string(p), &s.at)),
                "digest" => one_arg(s).map(|d| t.set("digest", string(&d.to_ascii_lowercase()), &s.at)),
                "status_code" if !s.args().is_empty() => {
                    let codes: Vec<String> = s
                        .args()
                        .iter()
                        .map(|c| match c.parse::<u16>() {
                            Ok(n) => n.to_string(),
                            Err(_) => string(c),
                        })
                        .collect();
                    t.set("status", format!("[{}]", codes.join(", ")), &s.at);
                    Ok(())
                }
                "status_code" => Err("`status_code` needs codes or ranges".into()),
                "virtualhost" => one_arg(s).map(|h| {
                    host = Some(h.to_string());
                    url_vhost = Some(h.to_string());
                }),
                "regex" => one_arg(s).map(|r| t.set("body_regex", string(r), &s.at)),
                "regex_no_match" | "regex_options" | "regex_stack" | "regex_min_offset"
                | "regex_max_offset" => Err(format!(
                    "`{}` is not supported: lvs matches `regex` (a Rust regex) anywhere in the body",
                    s.keyword()
                )),
                "tls_compliant" => {
                    self.ignored(s);
                    Ok(())
                }
                _ => {
                    self.unknown(s, "url");
                    Ok(())
                }
            };
            if let Err(e) = result {
                self.error(&s.at, e);
                ok = false;
            }
        }
        if let Some(h) = host {
            t.set("host", string(&h), &stmt.at);
        }
        let named = base.fields.iter().any(|(k, _, _)| *k == "sni");
        if let Some(chosen) = sni {
            if let Some(name) = if named {
                None
            } else {
                url_vhost.or_else(|| chosen.clone())
            } {
                t.set("sni", string(&name), &stmt.at);
            }
        }
        ok.then_some(t)
    }

    /// An SMTP_CHECK `host` block (keepalived's older syntax): a check
    /// of its own with its connect settings.
    fn smtp_host(&mut self, stmt: &Stmt, base: &Table, server: Endpoint) -> Option<Table> {
        let mut t = Table {
            header: base.header,
            at: stmt.at.clone(),
            fields: base.fields.clone(),
        };
        let (mut ip, mut port_) = (None, None);
        for s in stmt.block.iter().flatten() {
            let result = match s.keyword() {
                "connect_ip" => one_arg(s).and_then(address).map(|a| ip = Some(a)),
                "connect_port" => one_arg(s).and_then(port).map(|p| port_ = Some(p)),
                "bindto" => one_arg(s)
                    .and_then(address)
                    .map(|a| t.set("bind", string(&a.to_string()), &s.at)),
                _ => {
                    self.unknown(s, "SMTP_CHECK host");
                    Ok(())
                }
            };
            if let Err(e) = result {
                self.error(&s.at, e);
                return None;
            }
        }
        let c = endpoint(ip.unwrap_or(server.addr), port_.unwrap_or(server.port));
        t.set("connect", string(&c), &stmt.at);
        Some(t)
    }

    fn sync_group(&mut self, stmt: &Stmt) {
        for s in stmt.block.iter().flatten() {
            match s.keyword() {
                // Every instance is one pair here: grouping them changes nothing.
                "group" => {}
                k if k.starts_with("notify") => self.error(
                    &s.at,
                    format!("`{k}` is not supported: lvsd runs no scripts on HA transitions; watch `lvsadm ha`"),
                ),
                "smtp_alert" | "global_tracking" | "sync_group_tracking_weight" => self.ignored(s),
                // keepalived's older syntax: the instances' names directly.
                _ if s.args().is_empty() && s.block.is_none() => {}
                _ => self.unknown(s, "vrrp_sync_group"),
            }
        }
    }

    fn vrrp_instance(&mut self, stmt: &Stmt) {
        let name = stmt.args().first().cloned().unwrap_or_default();
        let errors_before = self.errors.len();
        let mut interface: Option<String> = None;
        let mut priority: Option<u32> = None;
        let mut master = false;
        let mut version = self.vrrp_version;
        let mut nopreempt_at: Option<At> = None;
        let mut preempt = true;
        let mut advert = DEFAULT_ADVERT_INT;
        let mut key: Option<String> = None;
        let mut local: Option<Ipv4Addr> = None;
        let mut peers: Vec<(Ipv4Addr, At)> = Vec::new();
        let mut vips: Vec<&Stmt> = Vec::new();
        let mut garp_repeat = None;
        for s in stmt.block.iter().flatten() {
            let k = s.keyword();
            let result: Result<(), String> = match k {
                "state" => match one_arg(s) {
                    Ok("MASTER") => {
                        master = true;
                        Ok(())
                    }
                    Ok("BACKUP") => Ok(()),
                    Ok(other) => Err(format!("`state` is MASTER or BACKUP, not `{other}`")),
                    Err(e) => Err(e),
                },
                "interface" => one_arg(s).map(|i| interface = Some(i.to_string())),
                "virtual_router_id" => number::<u8>(s, "a router id (1 to 255)").map(drop),
                "priority" => number::<u32>(s, "a priority").and_then(|p| {
                    if (1..=255).contains(&p) {
                        priority = Some(p);
                        Ok(())
                    } else {
                        Err(format!("`priority` is 1 to 255, not {p}"))
                    }
                }),
                "advert_int" => timer(s).map(|t| advert = t),
                "nopreempt" => {
                    preempt = false;
                    nopreempt_at = Some(s.at.clone());
                    Ok(())
                }
                "version" => match number::<u8>(s, "2 or 3") {
                    Ok(v @ (2 | 3)) => {
                        version = Some(v);
                        Ok(())
                    }
                    Ok(v) => Err(format!("`version` is 2 or 3, not {v}")),
                    Err(e) => Err(e),
                },
                "preempt" => {
                    preempt = true;
                    Ok(())
                }
                "preempt_delay" => Err("`preempt_delay` is not supported: an lvs router preempts at once (or never, with `nopreempt`)".into()),
                "authentication" => {
                    let mut pass = None;
                    for a in s.block.iter().flatten() {
                        match a.keyword() {
                            "auth_type" => match one_arg(a) {
                                Ok("PASS" | "AH") => {}
                                Ok(t) => self.error(&a.at, format!("`auth_type` is PASS or AH, not `{t}`")),
                                Err(e) => self.error(&a.at, e),
                            },
                            "auth_pass" => match one_arg(a) {
                                Ok(p) if p.len() >= crate::ha::MIN_KEY_LEN => pass = Some(p.to_string()),
                                Ok(p) => self.error(&a.at, format!(
                                    "`auth_pass` has {} bytes: an lvs pair signs every datagram with an HMAC whose key needs at least {}; make the password longer (keepalived uses only its first 8 characters, so keepalived peers still agree)",
                                    p.len(), crate::ha::MIN_KEY_LEN
                                )),
                                Err(e) => self.error(&a.at, e),
                            },
                            _ => self.unknown(a, "authentication"),
                        }
                    }
                    key = pass;
                    Ok(())
                }
                "unicast_src_ip" => one_arg(s).and_then(|a| {
                    a.parse::<Ipv4Addr>()
                        .map(|a| local = Some(a))
                        .map_err(|_| format!("`unicast_src_ip` `{a}`: an lvs pair talks over IPv4"))
                }),
                "unicast_peer" => {
                    for p in s.block.iter().flatten() {
                        match p.keyword().parse::<Ipv4Addr>() {
                            Ok(a) => peers.push((a, p.at.clone())),
                            Err(_) => self.error(&p.at, format!("unicast peer `{}`: an lvs pair talks over IPv4", p.keyword())),
                        }
                    }
                    Ok(())
                }
                "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                    vips.extend(s.block.iter().flatten());
                    Ok(())
                }
                "garp_master_repeat" => number::<u32>(s, "a count").map(|n| garp_repeat = Some(n)),
                "lvs_sync_daemon_interface" => {
                    self.warn(&s.at, "`lvs_sync_daemon_interface` ignored: an lvs pair syncs connections over its heartbeat link");
                    Ok(())
                }
                "track_interface" | "track_script" | "track_file" | "track_process"
                | "track_bfd" => Err(format!(
                    "`{k}` is not supported: an lvs router's priority does not follow trackers; it fails over when lvsd or the router stops"
                )),
                "virtual_routes" | "virtual_rules" => Err(format!(
                    "`{k}` is not supported: lvs floats addresses only; configure routes on both routers"
                )),
                "use_vmac" | "vmac_xmit_base" => Err(format!(
                    "`{k}` is not supported: lvs announces floating addresses from the interface's own MAC with gratuitous ARP"
                )),
                "mcast_src_ip" => Err("multicast VRRP is not supported: an lvs pair talks unicast; give `unicast_src_ip` and `unicast_peer`".into()),
                _ if k.starts_with("notify") => Err(format!(
                    "`{k}` is not supported: lvsd runs no scripts on HA transitions; watch `lvsadm ha`"
                )),
                "smtp_alert" | "garp_master_delay" | "garp_master_refresh"
                | "garp_master_refresh_repeat" | "garp_lower_prio_delay"
                | "garp_lower_prio_repeat" | "accept" | "no_accept"
                | "dont_track_primary" | "skip_check_adv_addr" | "strict_mode" | "debug"
                | "native_ipv6" | "check_unicast_src" | "lower_prio_no_advert"
                | "higher_prio_send_advert" | "kernel_rx_buf_size" => {
                    self.ignored(s);
                    Ok(())
                }
                _ => {
                    self.unknown(s, "vrrp_instance");
                    Ok(())
                }
            };
            if let Err(e) = result {
                self.error(&s.at, e);
            }
        }
        let Some(interface) = interface else {
            return self.error(&stmt.at, format!("vrrp_instance {name} has no `interface`"));
        };
        // keepalived: a MASTER without a priority owns its addresses (255),
        // and the owner, or a MASTER, preempts whatever `nopreempt` says.
        let priority = priority.unwrap_or(if master { 255 } else { DEFAULT_PRIORITY });
        if let Some(at) = nopreempt_at.filter(|_| master || priority == 255) {
            preempt = true;
            self.warn(&at, "`nopreempt` ignored with `state MASTER` or priority 255, as keepalived ignores it (use `state BACKUP`)");
        }
        // IPv6 addresses need VRRP version 3; version 2 (keepalived's
        // default) advertises in whole seconds.
        let v6 = vips.iter().any(|v| v.keyword().contains(':'));
        let version = if v6 { 3 } else { version.unwrap_or(2) };
        if version == 2 && advert.fract() != 0.0 {
            let rounded = advert.round().max(1.0);
            self.warn(&stmt.at, format!("advert_int {advert} is {rounded} s under VRRP version 2, as keepalived rounds it; `version 3` keeps fractions"));
            advert = rounded;
        }
        let (Some(local), [(peer, _)]) = (local, peers.as_slice()) else {
            return self.error(
                &stmt.at,
                format!("vrrp_instance {name}: an lvs pair talks unicast to its one peer; give `unicast_src_ip` and `unicast_peer {{ ADDRESS }}` with one address"),
            );
        };
        let Some(key) = key else {
            if self.errors.len() == errors_before {
                self.error(
                    &stmt.at,
                    format!("vrrp_instance {name} has no `authentication`: an lvs pair signs every datagram; add `authentication {{ auth_type PASS  auth_pass <16 characters or more> }}`"),
                );
            }
            return;
        };
        let mut addresses = Vec::new();
        for v in vips {
            let words = &v.words;
            let mut dev = interface.clone();
            let mut i = 1;
            while i < words.len() {
                match words[i].as_str() {
                    "dev" if i + 1 < words.len() => dev = words[i + 1].clone(),
                    "label" | "brd" | "broadcast" | "scope" | "peer" if i + 1 < words.len() => {}
                    other => {
                        self.error(&v.at, format!("virtual_ipaddress option `{other}` is not supported (lvs takes ADDRESS[/PREFIX] [dev IFACE])"));
                    }
                }
                i += 2;
            }
            let (a, prefix) = words[0]
                .split_once('/')
                .map_or((words[0].as_str(), None), |(a, p)| (a, Some(p)));
            if let Err(e) = address(a) {
                self.error(&v.at, e);
                continue;
            }
            let text = prefix.map_or(a.to_string(), |p| format!("{a}/{p}"));
            addresses.push((text, dev, v.at.clone()));
        }
        if self.errors.len() > errors_before {
            return;
        }
        let link = (interface, local, *peer);
        match &mut self.ha {
            None => {
                self.ha = Some(Ha {
                    name,
                    at: stmt.at.clone(),
                    version,
                    priority,
                    preempt,
                    advert,
                    key,
                    link,
                    addresses,
                    garp_repeat,
                });
            }
            Some(ha) => {
                let differs = if ha.priority != priority {
                    Some(format!(
                        "priority {priority}, where {} has {}",
                        ha.name, ha.priority
                    ))
                } else if ha.preempt != preempt {
                    Some(format!(
                        "preemption {}, where {} has it {}",
                        if preempt { "on" } else { "off" },
                        ha.name,
                        if ha.preempt { "on" } else { "off" }
                    ))
                } else if ha.link != link {
                    Some(format!("another interface or peer than {}", ha.name))
                } else if ha.advert != advert || ha.key != key {
                    Some(format!("another advert_int or password than {}", ha.name))
                } else {
                    None
                };
                match differs {
                    Some(why) => self.error(
                        &stmt.at,
                        format!("vrrp_instance {name} has {why}: lvs runs one active/backup pair for all floating addresses, so its instances must agree (an active/active split is not supported)"),
                    ),
                    None => ha.addresses.extend(addresses),
                }
            }
        }
    }

    /// The tables as TOML text, each line's origin beside it.
    fn finish(mut self, path: &Path) -> Import {
        let mut lines: Vec<(String, Option<At>)> = vec![(
            format!("# lvs configuration imported from {}", path.display()),
            None,
        )];
        for t in std::mem::take(&mut self.tables) {
            lines.push((String::new(), None));
            lines.push((format!("# {}", t.at), None));
            lines.push((t.header.to_string(), Some(t.at.clone())));
            for (key, value, at) in t.fields {
                lines.push((format!("{key} = {value}"), Some(at)));
            }
        }
        if let Some(ha) = self.ha.take() {
            let at = Some(ha.at.clone());
            // keepalived's Master_Down_Interval: three adverts and a skew
            // that makes the higher priority take over first: in units of
            // the advert under version 3, of a second under version 2.
            let unit = if ha.version == 3 { ha.advert } else { 1.0 };
            let skew = (256.0 - f64::from(ha.priority)) * unit / 256.0;
            let dead = 3.0 * ha.advert + skew;
            lines.push((String::new(), None));
            lines.push((format!("# {}: vrrp_instance {}", ha.at, ha.name), None));
            lines.push(("[ha]".into(), at.clone()));
            lines.push((format!("priority = {}", ha.priority), at.clone()));
            lines.push((format!("preempt = {}", ha.preempt), at.clone()));
            lines.push((format!("key = {}", string(&ha.key)), at.clone()));
            lines.push((format!("interval = {}", seconds(ha.advert)), at.clone()));
            lines.push((
                format!("dead = {}", seconds((dead * 1000.0).round() / 1000.0)),
                at.clone(),
            ));
            if let Some(n) = ha.garp_repeat {
                lines.push((format!("garp_repeat = {n}"), at.clone()));
            }
            let (iface, local, peer) = &ha.link;
            lines.push((String::new(), None));
            lines.push(("[[ha.link]]".into(), at.clone()));
            lines.push((format!("iface = {}", string(iface)), at.clone()));
            lines.push((
                format!("local = {}", string(&local.to_string())),
                at.clone(),
            ));
            lines.push((format!("peer = {}", string(&peer.to_string())), at.clone()));
            for (addr, dev, at) in ha.addresses {
                lines.push((String::new(), None));
                lines.push(("[[ha.address]]".into(), Some(at.clone())));
                lines.push((format!("address = {}", string(&addr)), Some(at.clone())));
                lines.push((format!("iface = {}", string(&dev)), Some(at)));
            }
        }
        let mut toml = String::new();
        let mut origins = Vec::new();
        for (line, at) in lines {
            toml += &line;
            toml.push('\n');
            origins.push(at);
        }
        Import {
            toml,
            origins,
            warnings: self.warnings,
            errors: self.errors,
        }
    }
}

const FWMARK: &str = "firewall-mark services cannot work here: netfilter marks a packet after XDP has already forwarded it. For persistence shared across ports, give the services one persistent port-0 service (`virtual_server ADDRESS` with no port and `persistence_timeout`), which takes every port of the address";

/// `weight N [reverse]` of a track_file or FILE_CHECK.
fn file_weight(stmt: &Stmt) -> Result<(i64, bool), String> {
    let (w, reverse) = match stmt.args() {
        [w] => (w, false),
        [w, r] if r == "reverse" => (w, true),
        _ => return Err("`weight` takes a number and optionally `reverse`".into()),
    };
    let w: i64 = w
        .parse()
        .ok()
        .filter(|w: &i64| w.abs() <= i64::from(i32::MAX))
        .ok_or_else(|| format!("`weight` `{w}` is not a number from -2147483647 to 2147483647"))?;
    Ok((w, reverse))
}

/// A hex string as keepalived writes it (free format), checked.
fn one_hex(stmt: &Stmt) -> Result<String, String> {
    let text = stmt.args().join(" ");
    if text
        .chars()
        .all(|c| c.is_ascii_hexdigit() || c.is_whitespace())
        && !text.trim().is_empty()
    {
        Ok(text)
    } else {
        Err(format!(
            "`{}` takes hex digits, not `{text}`",
            stmt.keyword()
        ))
    }
}

/// A group entry's addresses: `A`, `A-LAST` (the last part of the address:
/// an IPv4 octet, an IPv6 group), `A-B`, or `A/LEN`.
fn expand_range(text: &str) -> Result<Vec<IpAddr>, String> {
    let range = |first: IpAddr, last: IpAddr| -> Result<Vec<IpAddr>, String> {
        let (lo, hi) = match (first, last) {
            (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b)),
            _ => return Err(format!("`{text}` mixes IPv4 and IPv6")),
        };
        if hi < lo {
            return Err(format!("`{text}` ends before it starts"));
        }
        if hi - lo >= u128::from(MAX_GROUP_RANGE) {
            return Err(format!(
                "`{text}` holds more than {MAX_GROUP_RANGE} addresses"
            ));
        }
        Ok((lo..=hi)
            .map(|n| match first {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
            })
            .collect())
    };
    if let Some((a, len)) = text.split_once('/') {
        let first = address(a)?;
        let bits = if first.is_ipv4() { 32 } else { 128 };
        let len: u32 = len
            .parse()
            .ok()
            .filter(|l| *l <= bits)
            .ok_or_else(|| format!("bad prefix length in `{text}`"))?;
        let host_bits = bits - len;
        let mask = if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let (lo, hi) = match first {
            IpAddr::V4(a) => {
                let n = u128::from(u32::from(a)) & !mask;
                (
                    IpAddr::V4(Ipv4Addr::from(n as u32)),
                    IpAddr::V4(Ipv4Addr::from((n | mask) as u32)),
                )
            }
            IpAddr::V6(a) => {
                let n = u128::from(a) & !mask;
                (
                    IpAddr::V6(Ipv6Addr::from(n)),
                    IpAddr::V6(Ipv6Addr::from(n | mask)),
                )
            }
        };
        return range(lo, hi);
    }
    let Some((a, b)) = text.split_once('-') else {
        return address(text).map(|a| vec![a]);
    };
    let first = address(a)?;
    if let Ok(last) = b.parse::<IpAddr>() {
        return range(first, last);
    }
    let last = match first {
        IpAddr::V4(v4) => {
            let octet: u8 = b
                .parse()
                .map_err(|_| format!("bad range end in `{text}`"))?;
            let mut o = v4.octets();
            o[3] = octet;
            IpAddr::V4(Ipv4Addr::from(o))
        }
        IpAddr::V6(v6) => {
            let group =
                u16::from_str_radix(b, 16).map_err(|_| format!("bad range end in `{text}`"))?;
            let mut s = v6.segments();
            s[7] = group;
            IpAddr::V6(Ipv6Addr::from(s))
        }
    };
    range(first, last)
}

#[cfg(test)]
mod tests;
