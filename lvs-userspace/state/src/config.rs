//! The TOML configuration `lvsd --config` loads: virtual services and their
//! real servers. Unknown keys are refused, and every error names the file,
//! the line and the field.
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"            # tcp | udp
//! address = "198.18.0.10:80"  # VIP:port
//! scheduler = "rr"            # default wlc, as in ipvsadm
//! persistent = 360            # -p: seconds, `true` (360 s, a bare -p), or
//!                             # a table { timeout = 360, netmask = "..." }
//! netmask = "255.255.255.0"   # -M: the persistence granularity (default /32;
//!                             # for an IPv6 service a prefix length, "64")
//! sched_flags = ["sh-port"]   # -b: sh-/mh-fallback, sh-/mh-port, mh-ipvs-order, flag-1..3
//!
//! sorry_server = "198.18.11.9:8080"  # takes new connections while the
//! sorry_method = "nat"        # quorum is lost (method default route)
//! slow_start = 10             # seconds; default 10 for wlc, sed, nq; 0 is off
//! quorum = 2                  # keepalived's: the least live weight for the
//! hysteresis = 1              # service to be up (default 1); below it the
//! quorum_up = "logger up"     # sorry server stands in and the VIP is not
//! quorum_down = "logger down" # announced (`lvsd --announce`)
//! alpha = true                # every check starts down (default up)
//! omega = true                # quorum_down also runs when lvsd stops
//!
//! [[service.real]]
//! address = "198.18.11.2:8080"
//! method = "nat"              # nat | route | tunnel (default route, as in ipvsadm)
//! weight = 1                  # default 1
//! inhibit_on_failure = false  # on failure: weight 0 instead of out
//!
//! [[service.real.check]]      # alive while every check is up
//! type = "http"               # tcp | send_expect | http | smtp | dns | udp
//!                             # | ping | file | exec (keepalived's checkers)
//! path = "/health"            # http: path, status, body, digest, host,
//!                             # body_regex, version ("1.0", "1.0C", "1.1"),
//!                             # tls (SSL_GET; any certificate), sni
//! interval = 1.0              # seconds from the end of one attempt to the
//! fall = 2                    # next (default 60), timeout (5), rise (1),
//!                             # fall (2; exec 1, dns 4), start ("up"),
//!                             # retry_interval (after a failure while up:
//!                             # 1; http 3; dns the interval), connect, bind
//!                             # (the probe's source address)
//! # smtp: helo; dns: query_type (SOA), name ("."); udp: payload (hex),
//! # require_reply (true, or hex with x wildcards), min_reply_length (0),
//! # max_reply_length (255); ping; exec: program, args, dynamic (exit
//! # 2..255 sets the weight to status - 2); file: path, weight (1), reverse,
//! # dynamic (no timing keys: read whenever it changes)
//!
//! [service.real.agent]        # load feedback (see health::agent)
//! port = 9999                 # address, send, interval, timeout,
//!                             # min_percent, max_percent
//! ```

use std::{
    net::{IpAddr, Ipv4Addr},
    ops::Range,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    api::MAX_TIMEOUT,
    ha::{self as ha_spec, HaConfig},
    health::{
        self, AgentCheck, Check, CheckKind, DnsType, Expect, FileCheck, HttpCheck, HttpVersion,
        RealHealth, ServiceHealth, SorryServer, StartState, UdpCheck, DEFAULT_DNS_NAME,
        DEFAULT_MAX_REPLY_LENGTH, DEFAULT_MIN_REPLY_LENGTH, DEFAULT_SMTP_HELO,
    },
    model::{
        max_prefix, netmask_prefix, Command, Endpoint, Method, ModelError, Persistence, Protocol,
        RealSpec, ServiceId, ServiceSpec, State,
    },
};
use lvs_sched::{SchedFlags, SchedulerName};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Vec<ServiceEntry>,
    ha: Option<Spanned<HaEntry>>,
}

/// `[ha]`: the router pair (see `ha::spec` for the defaults).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HaEntry {
    priority: Option<Spanned<u8>>,
    #[serde(default)]
    preempt: bool,
    key: Option<Spanned<String>>,
    key_file: Option<Spanned<String>>,
    port: Option<u16>,
    interval: Option<Spanned<f64>>,
    dead: Option<Spanned<f64>>,
    sync_interval: Option<Spanned<f64>>,
    garp_repeat: Option<u32>,
    garp_spacing: Option<Spanned<f64>>,
    #[serde(default)]
    link: Vec<Spanned<LinkEntry>>,
    #[serde(default)]
    address: Vec<Spanned<AddressEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkEntry {
    iface: String,
    local: String,
    peer: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressEntry {
    address: String,
    iface: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    protocol: Protocol,
    address: Spanned<String>,
    #[serde(default = "default_scheduler")]
    scheduler: SchedulerName,
    /// A number, a boolean or a table: read by `persistence`, which can
    /// name what is wrong better than an untagged enum.
    persistent: Option<Spanned<toml::Value>>,
    netmask: Option<Spanned<String>>,
    sched_flags: Option<Spanned<Vec<String>>>,
    sorry_server: Option<Spanned<String>>,
    sorry_method: Option<Method>,
    slow_start: Option<u32>,
    quorum: Option<u32>,
    hysteresis: Option<u32>,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    /// keepalived's `alpha`: every check of the service starts down.
    #[serde(default)]
    alpha: bool,
    /// keepalived's `omega`: `quorum_down` runs when lvsd stops.
    #[serde(default)]
    omega: bool,
    #[serde(default)]
    real: Vec<RealEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RealEntry {
    address: Spanned<String>,
    #[serde(default = "default_method")]
    method: Method,
    #[serde(default = "default_weight")]
    weight: Spanned<u32>,
    #[serde(default)]
    u_threshold: u32,
    #[serde(default)]
    l_threshold: u32,
    #[serde(default)]
    inhibit_on_failure: bool,
    #[serde(default)]
    check: Vec<Spanned<CheckEntry>>,
    agent: Option<Spanned<AgentEntry>>,
}

/// One `[[service.real.check]]`: `type` says which other keys apply.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckEntry {
    #[serde(rename = "type")]
    kind: String,
    connect: Option<String>,
    interval: Option<f64>,
    timeout: Option<f64>,
    rise: Option<u32>,
    fall: Option<u32>,
    start: Option<StartState>,
    send: Option<String>,
    expect: Option<String>,
    expect_regex: Option<String>,
    path: Option<String>,
    status: Option<Vec<toml::Value>>,
    body: Option<String>,
    digest: Option<String>,
    host: Option<String>,
    program: Option<String>,
    args: Option<Vec<String>>,
    retry_interval: Option<f64>,
    bind: Option<String>,
    tls: Option<bool>,
    sni: Option<String>,
    /// A string, or a number as `lvsadm` words give `version=1.1`.
    version: Option<toml::Value>,
    body_regex: Option<String>,
    helo: Option<String>,
    query_type: Option<String>,
    name: Option<String>,
    payload: Option<String>,
    /// `true`, or the hex a reply must match.
    require_reply: Option<toml::Value>,
    min_reply_length: Option<u16>,
    max_reply_length: Option<u16>,
    weight: Option<i64>,
    reverse: Option<bool>,
    dynamic: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentEntry {
    port: u16,
    address: Option<String>,
    send: Option<String>,
    interval: Option<f64>,
    timeout: Option<f64>,
    min_percent: Option<u32>,
    max_percent: Option<u32>,
}

fn default_scheduler() -> SchedulerName {
    SchedulerName::Wlc
}
fn default_method() -> Method {
    Method::Route
}
fn default_weight() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse {
        path: String,
        message: String,
        /// Where in the text, if the parser says.
        line: Option<usize>,
    },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: &'static str,
        message: String,
    },
    /// What keepalived.conf has that lvs cannot honour, every statement.
    #[error("{}", errors.join("\n"))]
    Keepalived { errors: Vec<String> },
}

/// Where lvsd's configuration comes from: our TOML, or keepalived's file
/// (translated to our TOML, then read as any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Toml(PathBuf),
    Keepalived(PathBuf),
}

/// A configuration read whole: the commands that build its services (one
/// transaction), the router pair if it has one, and what was ignored.
#[derive(Debug)]
pub struct Loaded {
    pub commands: Vec<Command>,
    pub ha: Option<HaConfig>,
    pub warnings: Vec<String>,
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Self::Toml(path) | Self::Keepalived(path) => path,
        }
    }

    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let path = self.path();
        let name = path.display().to_string();
        match self {
            Self::Toml(_) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: name.clone(),
                    source,
                })?;
                Ok(Loaded {
                    commands: parse(&text, &name)?,
                    ha: parse_ha(&text, &name)?,
                    warnings: Vec::new(),
                })
            }
            Self::Keepalived(_) => {
                let import = crate::keepalived::import(path);
                if !import.errors.is_empty() {
                    return Err(ConfigError::Keepalived {
                        errors: import.errors.iter().map(ToString::to_string).collect(),
                    });
                }
                // A rule our TOML enforces names the keepalived statement
                // the value came from.
                let at_origin = |e: ConfigError| match e {
                    ConfigError::Invalid {
                        line,
                        field,
                        message,
                        ..
                    } => match import.origin(line) {
                        Some(at) => ConfigError::Keepalived {
                            errors: vec![format!("{at}: {message} (lvs's `{field}`)")],
                        },
                        None => ConfigError::Keepalived {
                            errors: vec![format!("{name}: {message} (lvs's `{field}`)")],
                        },
                    },
                    // A value of the wrong type: the TOML names its line.
                    ConfigError::Parse { message, line, .. } => {
                        let at = line
                            .and_then(|l| import.origin(l))
                            .map_or(name.clone(), |at| at.to_string());
                        let first = message
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        ConfigError::Keepalived {
                            errors: vec![format!("{at}: {first}")],
                        }
                    }
                    other => other,
                };
                Ok(Loaded {
                    commands: parse(&import.toml, &name).map_err(at_origin)?,
                    ha: parse_ha(&import.toml, &name).map_err(at_origin)?,
                    warnings: import.warnings.iter().map(ToString::to_string).collect(),
                })
            }
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A field that failed, where, and why; `parse` adds the file and line.
type FieldError = (Range<usize>, &'static str, String);

/// `persistent` and `netmask` as one `Persistence`: `-p [timeout] -M mask`.
/// Unlike ipvsadm's `-M` alone, a netmask without persistence is refused:
/// it would have no effect, so it is most likely a mistake.
/// The netmask is a dotted IPv4 mask for an IPv4 service, a prefix length
/// (`64` or `/64`) for an IPv6 one, as ipvsadm's `-M` takes them.
fn persistence(svc: &ServiceEntry, vip: IpAddr) -> Result<Option<Persistence>, FieldError> {
    let timeout_range = format!("1..={MAX_TIMEOUT} seconds");
    let seconds = |value: &toml::Value, span: Range<usize>, field: &'static str| match value {
        toml::Value::Integer(n) => u32::try_from(*n)
            .ok()
            .filter(|t| (1..=MAX_TIMEOUT).contains(t))
            .ok_or_else(|| {
                (
                    span,
                    field,
                    format!("timeout {n} out of range {timeout_range}"),
                )
            }),
        other => Err((
            span,
            field,
            format!("expected a timeout in seconds, found {}", other.type_str()),
        )),
    };
    let mask = |text: &str, span: Range<usize>, field: &'static str| {
        netmask_prefix(text, vip).map_err(|e| (span, field, e.to_string()))
    };
    let outer_mask = svc
        .netmask
        .as_ref()
        .map(|m| mask(m.get_ref(), m.span(), "netmask"))
        .transpose()?;
    let Some(persistent) = &svc.persistent else {
        return match &svc.netmask {
            Some(m) => Err((
                m.span(),
                "netmask",
                "a netmask needs `persistent` (it is the persistence granularity)".into(),
            )),
            None => Ok(None),
        };
    };
    let span = persistent.span();
    let (timeout, inner_mask) = match persistent.get_ref() {
        toml::Value::Boolean(false) => {
            return match &svc.netmask {
                Some(m) => Err((
                    m.span(),
                    "netmask",
                    "a netmask needs persistence, but `persistent = false`".into(),
                )),
                None => Ok(None),
            }
        }
        // A bare `-p`.
        toml::Value::Boolean(true) => (Persistence::DEFAULT_TIMEOUT, None),
        toml::Value::Table(table) => {
            let mut timeout = Persistence::DEFAULT_TIMEOUT;
            let mut netmask = None;
            for (key, value) in table {
                match key.as_str() {
                    "timeout" => timeout = seconds(value, span.clone(), "persistent.timeout")?,
                    "netmask" => {
                        let text = value.as_str().ok_or_else(|| {
                            (
                                span.clone(),
                                "persistent.netmask",
                                format!("expected a string, found {}", value.type_str()),
                            )
                        })?;
                        netmask = Some(mask(text, span.clone(), "persistent.netmask")?);
                    }
                    other => {
                        return Err((
                            span,
                            "persistent",
                            format!("unknown key `{other}`, expected `timeout` or `netmask`"),
                        ))
                    }
                }
            }
            (timeout, netmask)
        }
        value => (seconds(value, span.clone(), "persistent")?, None),
    };
    if let (Some(_), Some(outer)) = (inner_mask, &svc.netmask) {
        return Err((
            outer.span(),
            "netmask",
            "given twice: here and in the `persistent` table".into(),
        ));
    }
    Ok(Some(Persistence {
        timeout,
        prefix: inner_mask.or(outer_mask).unwrap_or(max_prefix(vip)),
    }))
}

/// `sched_flags`: ipvsadm's `-b` names, checked as ipvsadm checks them.
fn sched_flags(svc: &ServiceEntry) -> Result<SchedFlags, FieldError> {
    match &svc.sched_flags {
        None => Ok(SchedFlags::default()),
        Some(list) => {
            lvs_sched::sched_flags(svc.scheduler, list.get_ref().iter().map(String::as_str))
                .map_err(|e| (list.span(), "sched_flags", e.to_string()))
        }
    }
}

/// Seconds (a TOML integer or float) as milliseconds.
fn millis(seconds: Option<f64>, field: &'static str, default: u64) -> Result<u64, String> {
    match seconds {
        None => Ok(default),
        Some(s) if s.is_finite() && s > 0.0 && s <= f64::from(MAX_TIMEOUT) => {
            Ok((s * 1000.0).round() as u64)
        }
        Some(s) => Err(format!(
            "{field} {s} out of range: expected seconds above 0 and at most {MAX_TIMEOUT}"
        )),
    }
}

/// `status`: codes (200) and ranges ("200-299").
fn status_ranges(values: &[toml::Value]) -> Result<Vec<(u16, u16)>, String> {
    let code = |text: &str| text.trim().parse::<u16>().ok();
    values
        .iter()
        .map(|v| {
            let range = match v {
                toml::Value::Integer(n) => u16::try_from(*n).ok().map(|c| (c, c)),
                toml::Value::String(text) => match text.split_once('-') {
                    Some((lo, hi)) => code(lo).zip(code(hi)),
                    None => code(text).map(|c| (c, c)),
                },
                _ => None,
            };
            range.ok_or_else(|| {
                format!("expected a status code or a range like \"200-299\", found {v}")
            })
        })
        .collect()
}

/// `retry_interval`: like `millis`, but 0 (retry at once) is allowed, as
/// keepalived's `delay_before_retry 0`.
fn retry_millis(seconds: Option<f64>) -> Result<Option<u64>, String> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 && s <= f64::from(MAX_TIMEOUT) => {
            Ok(Some((s * 1000.0).round() as u64))
        }
        Some(s) => Err(format!(
            "retry_interval {s} out of range: expected seconds from 0 to {MAX_TIMEOUT}"
        )),
    }
}

/// `version`: keepalived's `http_protocol`.
fn http_version(value: &toml::Value) -> Result<HttpVersion, String> {
    let text = match value {
        toml::Value::String(text) => text.clone(),
        // `version = 1.1` unquoted, as `lvsadm` words also read it.
        toml::Value::Float(f) => format!("{f:?}"),
        other => other.to_string(),
    };
    HttpVersion::from_name(&text).ok_or_else(|| {
        format!("unknown HTTP version {value}: expected \"1.0\", \"1.0C\" or \"1.1\"")
    })
}

/// A `[[service.real.check]]` table as a `Check`; keys that do not belong
/// to its `type` are refused rather than ignored.
/// `alpha`: the service's (keepalived's virtual server `alpha`), the
/// default `start` of its checks.
fn check(entry: &CheckEntry, real: Endpoint, alpha: bool) -> Result<Check, (&'static str, String)> {
    let CheckEntry {
        kind,
        connect,
        interval,
        timeout,
        rise,
        fall,
        start,
        send,
        expect,
        expect_regex,
        path,
        status,
        body,
        digest,
        host,
        program,
        args,
        retry_interval,
        bind,
        tls,
        sni,
        version,
        body_regex,
        helo,
        query_type,
        name,
        payload,
        require_reply,
        min_reply_length,
        max_reply_length,
        weight,
        reverse,
        dynamic,
    } = entry;
    let stray = |allowed: &[&str]| -> Result<(), (&'static str, String)> {
        let given = [
            ("bind", bind.is_some()),
            ("send", send.is_some()),
            ("expect", expect.is_some()),
            ("expect_regex", expect_regex.is_some()),
            ("path", path.is_some()),
            ("status", status.is_some()),
            ("body", body.is_some()),
            ("digest", digest.is_some()),
            ("host", host.is_some()),
            ("tls", tls.is_some()),
            ("sni", sni.is_some()),
            ("version", version.is_some()),
            ("body_regex", body_regex.is_some()),
            ("helo", helo.is_some()),
            ("query_type", query_type.is_some()),
            ("name", name.is_some()),
            ("payload", payload.is_some()),
            ("require_reply", require_reply.is_some()),
            ("min_reply_length", min_reply_length.is_some()),
            ("max_reply_length", max_reply_length.is_some()),
            ("weight", weight.is_some()),
            ("reverse", reverse.is_some()),
            ("dynamic", dynamic.is_some()),
            ("program", program.is_some()),
            ("args", args.is_some()),
        ];
        match given
            .iter()
            .find(|(key, set)| *set && !allowed.contains(key))
        {
            Some((key, _)) => Err((
                "check.type",
                format!("`{key}` does not apply to a `{kind}` check"),
            )),
            None => Ok(()),
        }
    };
    let kind = match kind.as_str() {
        "tcp" => {
            stray(&["bind"])?;
            CheckKind::Tcp
        }
        "send_expect" => {
            stray(&["bind", "send", "expect", "expect_regex"])?;
            let expect = match (expect, expect_regex) {
                (Some(text), None) => Expect::Substring(text.clone()),
                (None, Some(pattern)) => Expect::Regex(pattern.clone()),
                _ => {
                    return Err((
                        "check.expect",
                        "a send_expect check needs exactly one of `expect` and `expect_regex`"
                            .into(),
                    ))
                }
            };
            CheckKind::SendExpect {
                send: send.clone().unwrap_or_default(),
                expect,
            }
        }
        "http" => {
            stray(&[
                "bind",
                "path",
                "status",
                "body",
                "digest",
                "host",
                "tls",
                "sni",
                "version",
                "body_regex",
            ])?;
            let status = match status {
                Some(values) => status_ranges(values).map_err(|e| ("check.status", e))?,
                None => vec![HttpCheck::DEFAULT_STATUS],
            };
            CheckKind::Http(HttpCheck {
                path: path.clone().unwrap_or_else(|| "/".into()),
                status,
                body: body.clone(),
                digest: digest.clone(),
                host: host.clone(),
                tls: tls.unwrap_or(false),
                sni: sni.clone(),
                version: match version {
                    Some(v) => http_version(v).map_err(|e| ("check.version", e))?,
                    None => HttpVersion::default(),
                },
                body_regex: body_regex.clone(),
            })
        }
        "smtp" => {
            stray(&["bind", "helo"])?;
            CheckKind::Smtp {
                helo: helo.clone().unwrap_or_else(|| DEFAULT_SMTP_HELO.into()),
            }
        }
        "dns" => {
            stray(&["bind", "query_type", "name"])?;
            let query_type = match query_type {
                Some(text) => DnsType::from_name(text).ok_or_else(|| {
                    (
                        "check.query_type",
                        format!(
                            "unknown DNS query type `{text}`: expected {}",
                            DnsType::names()
                        ),
                    )
                })?,
                None => DnsType::DEFAULT,
            };
            CheckKind::Dns {
                query_type,
                name: name.clone().unwrap_or_else(|| DEFAULT_DNS_NAME.into()),
            }
        }
        "udp" => {
            stray(&[
                "bind",
                "payload",
                "require_reply",
                "min_reply_length",
                "max_reply_length",
            ])?;
            let (require_reply, reply) = match require_reply {
                None | Some(toml::Value::Boolean(false)) => (false, None),
                Some(toml::Value::Boolean(true)) => (true, None),
                Some(toml::Value::String(hex)) => (true, Some(hex.clone())),
                Some(other) => {
                    return Err((
                        "check.require_reply",
                        format!("expected true or the hex a reply must match, found {other}"),
                    ))
                }
            };
            // keepalived looks at a reply's length only when it matches the
            // reply against a pattern: without one, the bounds would be
            // silently ignored.
            if reply.is_none() {
                for (key, set) in [
                    ("min_reply_length", min_reply_length.is_some()),
                    ("max_reply_length", max_reply_length.is_some()),
                ] {
                    if set {
                        return Err((
                            "check.require_reply",
                            format!("`{key}` applies only with require_reply = \"<hex>\" (keepalived checks the length of a reply it matches)"),
                        ));
                    }
                }
            }
            CheckKind::Udp(UdpCheck {
                payload: payload.clone(),
                require_reply,
                reply,
                min_reply_length: min_reply_length.unwrap_or(DEFAULT_MIN_REPLY_LENGTH),
                max_reply_length: max_reply_length.unwrap_or(DEFAULT_MAX_REPLY_LENGTH),
            })
        }
        "ping" => {
            stray(&["bind"])?;
            CheckKind::Ping
        }
        "file" => {
            stray(&["path", "weight", "reverse", "dynamic"])?;
            file_check(entry)?
        }
        "exec" => {
            stray(&["program", "args", "dynamic"])?;
            CheckKind::Exec {
                program: program
                    .clone()
                    .ok_or(("check.program", "an exec check needs `program`".to_string()))?,
                args: args.clone().unwrap_or_default(),
                dynamic: dynamic.unwrap_or(false),
            }
        }
        other => {
            return Err((
                "check.type",
                format!("unknown check type `{other}`: expected tcp, send_expect, http, smtp, dns, udp, ping, file or exec"),
            ))
        }
    };
    let mut c = Check::new(kind);
    if let Some(text) = connect {
        let (addr, port) =
            Endpoint::parse_optional_port(text).map_err(|e| ("check.connect", e.to_string()))?;
        c.connect = Some(Endpoint {
            addr,
            port: port.unwrap_or(real.port),
        });
    }
    if let Some(text) = bind {
        let addr: IpAddr = text.parse().map_err(|_| {
            (
                "check.bind",
                format!("malformed address `{text}`: expected an IPv4 or IPv6 address"),
            )
        })?;
        let probed = c.connect.map_or(real.addr, |e| e.addr);
        health::same_family(addr, probed).map_err(|e| ("check.bind", e.to_string()))?;
        c.bind = Some(addr);
    }
    c.interval_ms =
        millis(*interval, "interval", c.interval_ms).map_err(|e| ("check.interval", e))?;
    c.timeout_ms = millis(*timeout, "timeout", c.timeout_ms).map_err(|e| ("check.timeout", e))?;
    c.retry_interval_ms = retry_millis(*retry_interval).map_err(|e| ("check.retry_interval", e))?;
    c.rise = rise.unwrap_or(c.rise);
    c.fall = fall.unwrap_or(c.fall);
    c.start = start.unwrap_or(if alpha { StartState::Down } else { c.start });
    c.validate().map_err(|e| ("check", e.to_string()))?;
    Ok(c)
}

/// A file check's keys. keepalived's FILE_CHECK takes none of the timing
/// or connection keys: the file is read whenever it changes, and its value
/// decides at once. `dynamic` is the manual's word for a non-zero weight
/// (keepalived's code adds value × weight whenever the weight is not 0):
/// `dynamic = false` makes the default weight 0, and a contradiction
/// between the two is refused.
fn file_check(entry: &CheckEntry) -> Result<CheckKind, (&'static str, String)> {
    let general = [
        ("connect", entry.connect.is_some()),
        ("bind", entry.bind.is_some()),
        ("interval", entry.interval.is_some()),
        ("timeout", entry.timeout.is_some()),
        ("retry_interval", entry.retry_interval.is_some()),
        ("rise", entry.rise.is_some()),
        ("fall", entry.fall.is_some()),
        ("start", entry.start.is_some()),
    ];
    if let Some((key, _)) = general.iter().find(|(_, set)| *set) {
        return Err((
            "check.type",
            format!(
                "`{key}` does not apply to a `file` check: the file is read whenever it changes"
            ),
        ));
    }
    let path = entry
        .path
        .clone()
        .ok_or(("check.path", "a file check needs `path`".to_string()))?;
    let default = match entry.dynamic {
        Some(false) => 0,
        _ => i64::from(FileCheck::DEFAULT_WEIGHT),
    };
    let weight = entry.weight.unwrap_or(default);
    let weight = i32::try_from(weight)
        .ok()
        .filter(|w| *w != i32::MIN)
        .ok_or((
            "check.weight",
            format!("weight {weight} out of range -2147483647..=2147483647"),
        ))?;
    match (entry.dynamic, weight) {
        (Some(true), 0) => Err((
            "check.dynamic",
            "a dynamic file check needs a non-zero weight (with weight 0 the value only says up, 0, or down)".into(),
        )),
        (Some(false), w) if w != 0 => Err((
            "check.dynamic",
            format!("with weight {w} the value moves the server's weight: that is `dynamic`; for an up/down file use weight 0"),
        )),
        _ => Ok(CheckKind::File(FileCheck {
            path,
            weight,
            reverse: entry.reverse.unwrap_or(false),
        })),
    }
}

fn agent(entry: &AgentEntry) -> Result<AgentCheck, (&'static str, String)> {
    let AgentEntry {
        port,
        address,
        send,
        interval,
        timeout,
        min_percent,
        max_percent,
    } = entry;
    let mut a = AgentCheck::new(*port);
    if let Some(text) = address {
        a.addr = Some(text.parse().map_err(|_| {
            (
                "agent.address",
                format!("malformed address `{text}`: expected an IPv4 or IPv6 address"),
            )
        })?);
    }
    a.send = send.clone();
    a.interval_ms =
        millis(*interval, "interval", a.interval_ms).map_err(|e| ("agent.interval", e))?;
    a.timeout_ms = millis(*timeout, "timeout", a.timeout_ms.min(a.interval_ms))
        .map_err(|e| ("agent.timeout", e))?;
    a.min_percent = min_percent.unwrap_or(a.min_percent);
    a.max_percent = max_percent.unwrap_or(a.max_percent);
    a.validate().map_err(|e| ("agent", e.to_string()))?;
    Ok(a)
}

/// `key=value` words (as `lvsadm health --check` takes them) as the TOML
/// table the config file would hold: numbers, booleans, arrays and quoted
/// strings as written, anything else as a string.
fn words_to_table<T: serde::de::DeserializeOwned>(words: &str) -> Result<T, String> {
    let mut text = String::new();
    for word in words.split_whitespace() {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("`{word}`: expected key=value"))?;
        let literal = value.parse::<toml::Value>().is_ok()
            && (value.parse::<f64>().is_ok()
                || matches!(value, "true" | "false")
                || value.starts_with(['[', '"', '\'']));
        let value = if literal {
            value.to_string()
        } else {
            toml::Value::String(value.to_string()).to_string()
        };
        text += &format!("{key} = {value}\n");
    }
    toml::from_str(&text).map_err(|e| e.message().to_string())
}

/// `lvsadm health --check 'type=http path=/health interval=1'`.
pub fn check_from_words(words: &str, real: Endpoint) -> Result<Check, String> {
    let entry: CheckEntry = words_to_table(words)?;
    check(&entry, real, false).map_err(|(field, message)| format!("`{field}`: {message}"))
}

/// `lvsadm health --agent 'port=9999 interval=2'`.
pub fn agent_from_words(words: &str) -> Result<AgentCheck, String> {
    let entry: AgentEntry = words_to_table(words)?;
    agent(&entry).map_err(|(field, message)| format!("`{field}`: {message}"))
}

/// The `[ha]` table of a config file, if it has one.
pub fn parse_ha(text: &str, path: &str) -> Result<Option<HaConfig>, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string().trim_end().to_string(),
        line: e.span().map(|span| line_of(text, span.start)),
    })?;
    let Some(spanned) = file.ha else {
        return Ok(None);
    };
    // Errors about a missing key point at the `[ha]` table itself.
    let whole = spanned.span();
    let ha = spanned.into_inner();
    let invalid = |span: Range<usize>, field, message: String| ConfigError::Invalid {
        path: path.to_string(),
        line: line_of(text, span.start),
        field,
        message,
    };
    let ms = |value: &Option<Spanned<f64>>, field: &'static str, default: u64| {
        millis(value.as_ref().map(|v| *v.get_ref()), field, default)
            .map_err(|e| invalid(value.as_ref().map_or(whole.clone(), |v| v.span()), field, e))
    };
    let interval_ms = ms(&ha.interval, "ha.interval", ha_spec::DEFAULT_INTERVAL_MS)?;
    let dead_ms = ms(&ha.dead, "ha.dead", ha_spec::DEFAULT_DEAD_MS)?;
    if dead_ms <= interval_ms {
        let span = ha.dead.as_ref().map_or(whole.clone(), |d| d.span());
        return Err(invalid(
            span,
            "ha.dead",
            format!("the dead time ({dead_ms} ms) must be longer than the heartbeat interval ({interval_ms} ms)"),
        ));
    }
    let key =
        match (&ha.key, &ha.key_file) {
            (Some(k), None) => (k.span(), k.get_ref().as_bytes().to_vec()),
            (None, Some(f)) => (
                f.span(),
                std::fs::read(f.get_ref()).map_err(|e| {
                    invalid(
                        f.span(),
                        "ha.key_file",
                        format!("reading {}: {e}", f.get_ref()),
                    )
                })?,
            ),
            (Some(k), Some(_)) => {
                return Err(invalid(
                    k.span(),
                    "ha.key",
                    "give `key` or `key_file`, not both".into(),
                ))
            }
            (None, None) => return Err(invalid(
                whole,
                "ha.key",
                "a shared `key` (or `key_file`) authenticates heartbeats and sync; it is required"
                    .into(),
            )),
        };
    if key.1.len() < ha_spec::MIN_KEY_LEN {
        return Err(invalid(
            key.0,
            "ha.key",
            format!(
                "the key has {} bytes; use at least {}",
                key.1.len(),
                ha_spec::MIN_KEY_LEN
            ),
        ));
    }
    let priority = match &ha.priority {
        Some(p) if *p.get_ref() == 0 => {
            return Err(invalid(
                p.span(),
                "ha.priority",
                "priority must be 1..=255".into(),
            ))
        }
        Some(p) => *p.get_ref(),
        None => ha_spec::DEFAULT_PRIORITY,
    };
    let v4 = |text: &str, span: Range<usize>, field| {
        text.parse::<Ipv4Addr>().map_err(|_| {
            invalid(
                span,
                field,
                format!("malformed address `{text}`: expected IPv4 a.b.c.d"),
            )
        })
    };
    let mut links = Vec::new();
    for l in &ha.link {
        let LinkEntry { iface, local, peer } = l.get_ref();
        links.push(ha_spec::Link {
            iface: iface.clone(),
            local: v4(local, l.span(), "ha.link.local")?,
            peer: v4(peer, l.span(), "ha.link.peer")?,
        });
    }
    if links.is_empty() {
        return Err(invalid(whole, "ha.link", "at least one [[ha.link]] (iface, local, peer) is required; two keep heartbeats flowing when one link fails".into()));
    }
    let mut addresses = Vec::new();
    for a in &ha.address {
        let AddressEntry { address, iface } = a.get_ref();
        let (text, prefix) = match address.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (address.as_str(), None),
        };
        let addr: IpAddr = text.parse().map_err(|_| {
            invalid(
                a.span(),
                "ha.address.address",
                format!("`{text}` is not an IPv4 or IPv6 address"),
            )
        })?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| {
                    invalid(
                        a.span(),
                        "ha.address.address",
                        format!("bad prefix length in `{address}` (0 to {bits})"),
                    )
                })?,
        };
        addresses.push(ha_spec::Floating {
            addr,
            prefix,
            iface: iface.clone(),
        });
    }
    Ok(Some(HaConfig {
        priority,
        preempt: ha.preempt,
        key: key.1,
        port: ha.port.unwrap_or(ha_spec::DEFAULT_PORT),
        interval_ms,
        dead_ms,
        sync_interval_ms: ms(
            &ha.sync_interval,
            "ha.sync_interval",
            ha_spec::DEFAULT_SYNC_INTERVAL_MS,
        )?,
        garp_repeat: ha.garp_repeat.unwrap_or(ha_spec::DEFAULT_GARP_REPEAT),
        garp_spacing_ms: ms(
            &ha.garp_spacing,
            "ha.garp_spacing",
            ha_spec::DEFAULT_GARP_SPACING_MS,
        )?,
        links,
        addresses,
    }))
}

/// Check a config file's services; the result applies as one transaction.
pub fn parse(text: &str, path: &str) -> Result<Vec<Command>, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string().trim_end().to_string(),
        line: e.span().map(|span| line_of(text, span.start)),
    })?;
    let invalid = |span: Range<usize>, field, message: String| ConfigError::Invalid {
        path: path.to_string(),
        line: line_of(text, span.start),
        field,
        message,
    };
    let mut commands = Vec::new();
    let mut state = State::default();
    for svc in file.service {
        let vip: Endpoint = svc
            .address
            .get_ref()
            .parse()
            .map_err(|e: ModelError| invalid(svc.address.span(), "address", e.to_string()))?;
        let id = ServiceId {
            protocol: svc.protocol,
            vip,
        };
        let at = |(span, field, message): FieldError| invalid(span, field, message);
        let add = Command::AddService(ServiceSpec {
            id,
            scheduler: svc.scheduler,
            flags: sched_flags(&svc).map_err(at)?,
            persistence: persistence(&svc, vip.addr).map_err(at)?,
        });
        state
            .apply_all(std::slice::from_ref(&add))
            .map_err(|e| invalid(svc.address.span(), "address", e.to_string()))?;
        commands.push(add);
        for real in svc.real {
            let (addr, port) = Endpoint::parse_optional_port(real.address.get_ref())
                .map_err(|e| invalid(real.address.span(), "address", e.to_string()))?;
            let spec = RealSpec {
                server: Endpoint {
                    addr,
                    port: port.unwrap_or(vip.port),
                },
                method: real.method,
                weight: *real.weight.get_ref(),
                u_threshold: real.u_threshold,
                l_threshold: real.l_threshold,
            };
            let server = spec.server;
            let add = Command::AddReal {
                service: id,
                real: spec,
            };
            state.apply_all(std::slice::from_ref(&add)).map_err(|e| {
                let field = if matches!(e, ModelError::WeightRange(_)) {
                    "weight"
                } else {
                    "address"
                };
                let span = if field == "weight" {
                    real.weight.span()
                } else {
                    real.address.span()
                };
                invalid(span, field, e.to_string())
            })?;
            commands.push(add);
            let mut health = RealHealth {
                inhibit_on_failure: real.inhibit_on_failure,
                ..RealHealth::default()
            };
            for entry in &real.check {
                let c = check(entry.get_ref(), server, svc.alpha)
                    .map_err(|(field, message)| invalid(entry.span(), field, message))?;
                health.checks.push(c);
            }
            if let Some(entry) = &real.agent {
                health.agent = Some(
                    agent(entry.get_ref())
                        .map_err(|(field, message)| invalid(entry.span(), field, message))?,
                );
            }
            if health != RealHealth::default() {
                commands.push(Command::SetRealHealth {
                    service: id,
                    server,
                    health: Some(health),
                });
            }
        }
        let sorry = match &svc.sorry_server {
            Some(text) => {
                let (addr, port) = Endpoint::parse_optional_port(text.get_ref())
                    .map_err(|e| invalid(text.span(), "sorry_server", e.to_string()))?;
                Some(SorryServer {
                    server: Endpoint {
                        addr,
                        port: port.unwrap_or(vip.port),
                    },
                    method: svc.sorry_method.unwrap_or(Method::Route),
                })
            }
            None => None,
        };
        let health = ServiceHealth {
            sorry,
            slow_start: svc.slow_start,
            quorum: svc.quorum,
            hysteresis: svc.hysteresis,
            quorum_up: svc.quorum_up.clone(),
            quorum_down: svc.quorum_down.clone(),
            omega: svc.omega,
        };
        if health != ServiceHealth::default() {
            let set = Command::SetServiceHealth {
                service: id,
                health,
            };
            state.apply_all(std::slice::from_ref(&set)).map_err(|e| {
                let span = svc
                    .sorry_server
                    .as_ref()
                    .map_or(svc.address.span(), |s| s.span());
                invalid(span, "sorry_server", e.to_string())
            })?;
            commands.push(set);
        }
    }
    Ok(commands)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.10:80"
scheduler = "rr"

[[service.real]]
address = "198.18.11.2:8080"
method = "nat"

[[service.real]]
address = "198.18.12.2"
method = "nat"
weight = 3
"#;

    /// One rr service on line 2 (address on line 4), its extra keys from
    /// line 6 on.
    fn service_with(address: &str, extra: &str) -> Result<ServiceSpec, ConfigError> {
        let text = format!(
            "\n[[service]]\nprotocol = \"tcp\"\naddress = \"{address}\"\nscheduler = \"rr\"\n{extra}\n"
        );
        let cmds = parse(&text, "lvs.toml")?;
        match cmds.as_slice() {
            [Command::AddService(spec)] => Ok(spec.clone()),
            other => panic!("{other:?}"),
        }
    }
    fn persistent(timeout: u32, netmask: [u8; 4]) -> Option<Persistence> {
        Some(Persistence {
            timeout,
            prefix: crate::model::ipv4_prefix(netmask.into()).unwrap(),
        })
    }

    #[test]
    fn persistence_forms() {
        let vip = "198.18.0.10:80";
        for (extra, expected) in [
            ("persistent = 600", persistent(600, [255; 4])),
            ("persistent = true", persistent(360, [255; 4])),
            (
                "persistent = true\nnetmask = \"255.255.255.0\"",
                persistent(360, [255, 255, 255, 0]),
            ),
            (
                "persistent = 90\nnetmask = \"255.255.0.0\"",
                persistent(90, [255, 255, 0, 0]),
            ),
            (
                "persistent = { timeout = 90, netmask = \"255.255.255.0\" }",
                persistent(90, [255, 255, 255, 0]),
            ),
            (
                "persistent = { netmask = \"255.255.255.0\" }",
                persistent(360, [255, 255, 255, 0]),
            ),
            (
                "[service.persistent]\ntimeout = 1800",
                persistent(1800, [255; 4]),
            ),
            ("persistent = false", None),
            ("", None),
        ] {
            let spec = service_with(vip, extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert_eq!(spec.persistence, expected, "{extra}");
        }
        // Port 0 is a persistent service's privilege, as in ipvsadm.
        let spec = service_with("198.18.0.10:0", "persistent = true").unwrap();
        assert_eq!(spec.id.vip.port, 0);
        let err = service_with("198.18.0.10:0", "").unwrap_err().to_string();
        assert_eq!(
            err,
            "lvs.toml:4: field `address`: zero port specified for non-persistent service TCP 198.18.0.10:0"
        );
    }

    /// An IPv6 service: `[v6]:port` addresses, and a netmask that is a
    /// prefix length, as ipvsadm's `-M` takes it for IPv6.
    #[test]
    fn an_ipv6_service_takes_a_prefix_length() {
        let vip = "[2001:db8::10]:80";
        let p = |timeout, prefix| Some(Persistence { timeout, prefix });
        for (extra, expected) in [
            ("persistent = 60", p(60, 128)),
            ("persistent = 60\nnetmask = \"64\"", p(60, 64)),
            (
                "persistent = { timeout = 60, netmask = \"/48\" }",
                p(60, 48),
            ),
        ] {
            let spec = service_with(vip, extra).unwrap_or_else(|e| panic!("{extra}: {e}"));
            assert!(spec.id.vip.is_ipv6());
            assert_eq!(spec.persistence, expected, "{extra}");
        }
        for (extra, expected) in [
            (
                "persistent = 60\nnetmask = \"255.255.255.0\"",
                "lvs.toml:7: field `netmask`: malformed netmask `255.255.255.0`: expected an IPv6 prefix length like 64",
            ),
            (
                "persistent = 60\nnetmask = \"129\"",
                "lvs.toml:7: field `netmask`: malformed netmask `129`: expected an IPv6 prefix length like 64",
            ),
        ] {
            let err = service_with(vip, extra).unwrap_err().to_string();
            assert_eq!(err, expected, "{extra}");
        }
        let text = "[[service]]\nprotocol = \"udp\"\naddress = \"[2001:db8::10]:53\"\n[[service.real]]\naddress = \"[2001:db8:1::1]\"\nmethod = \"nat\"\n[[service.real]]\naddress = \"198.18.11.2\"\nmethod = \"route\"\n";
        let err = parse(text, "lvs.toml").unwrap_err().to_string();
        assert_eq!(
            err,
            "lvs.toml:8: field `address`: real server 198.18.11.2:53 is not of service UDP [2001:db8::10]:53's address family: only a tunnel (-i) may cross families"
        );
    }

    #[test]
    fn sched_flags_are_read_as_ipvsadm_reads_b() {
        let spec =
            service_with("198.18.0.10:80", "sched_flags = [\"flag-1\", \"flag-2\"]").unwrap();
        assert_eq!(
            spec.flags,
            SchedFlags {
                fallback: true,
                port: true,
                ipvs_order: false,
            }
        );
        assert_eq!(
            service_with("198.18.0.10:80", "sched_flags = []")
                .unwrap()
                .flags,
            SchedFlags::default()
        );
    }

    #[test]
    fn persistence_and_flag_errors_name_line_and_field() {
        let vip = "198.18.0.10:80";
        for (extra, expected) in [
            (
                "persistent = 0",
                "lvs.toml:6: field `persistent`: timeout 0 out of range 1..=2678400 seconds",
            ),
            (
                "persistent = 2678401",
                "lvs.toml:6: field `persistent`: timeout 2678401 out of range 1..=2678400 seconds",
            ),
            (
                "persistent = \"long\"",
                "lvs.toml:6: field `persistent`: expected a timeout in seconds, found string",
            ),
            (
                "persistent = { timeout = -5 }",
                "lvs.toml:6: field `persistent.timeout`: timeout -5 out of range 1..=2678400 seconds",
            ),
            (
                "persistent = { timeout = 60, granularity = 24 }",
                "lvs.toml:6: field `persistent`: unknown key `granularity`, expected `timeout` or `netmask`",
            ),
            (
                "persistent = { netmask = 24 }",
                "lvs.toml:6: field `persistent.netmask`: expected a string, found integer",
            ),
            (
                "\nnetmask = \"255.255.255.0\"",
                "lvs.toml:7: field `netmask`: a netmask needs `persistent` (it is the persistence granularity)",
            ),
            (
                "persistent = false\nnetmask = \"255.255.255.0\"",
                "lvs.toml:7: field `netmask`: a netmask needs persistence, but `persistent = false`",
            ),
            (
                "persistent = 60\nnetmask = \"/24\"",
                "lvs.toml:7: field `netmask`: malformed netmask `/24`: expected a dotted mask like 255.255.255.0",
            ),
            (
                "persistent = 60\nnetmask = \"255.0.255.0\"",
                "lvs.toml:7: field `netmask`: netmask 255.0.255.0 is not a contiguous mask like 255.255.255.0",
            ),
            (
                "netmask = \"255.255.255.0\"\npersistent = { netmask = \"255.255.0.0\" }",
                "lvs.toml:6: field `netmask`: given twice: here and in the `persistent` table",
            ),
            (
                "\n\nsched_flags = [\"sh-port\"]",
                "lvs.toml:8: field `sched_flags`: incompatible scheduler flag `sh-port`: only the sh scheduler takes it",
            ),
            (
                "sched_flags = [\"flag-1\", \"fast\"]",
                "lvs.toml:6: field `sched_flags`: invalid scheduler flag `fast` (expected sh-fallback, sh-port, mh-fallback, mh-port, mh-ipvs-order, flag-1, flag-2 or flag-3)",
            ),
        ] {
            let err = service_with(vip, extra).unwrap_err().to_string();
            assert_eq!(err, expected, "{extra}");
        }
        // A wrong type is serde's to report, with the line.
        let err = service_with(vip, "sched_flags = \"sh-port\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 6") && err.contains("sched_flags"),
            "{err}"
        );
    }

    #[test]
    fn a_good_file_becomes_commands() {
        let cmds = parse(GOOD, "lvs.toml").unwrap();
        assert_eq!(cmds.len(), 3);
        let mut s = State::default();
        s.apply_all(&cmds).unwrap();
        let reals = &s.at(0).unwrap().reals;
        assert_eq!(reals[0].server.to_string(), "198.18.12.2:80");
        assert_eq!(reals[0].weight, 3);
        assert_eq!(reals[1].weight, 1);
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = GOOD.replace("weight = 3", "wieght = 3");
        let err = parse(&text, "lvs.toml").unwrap_err().to_string();
        assert!(err.starts_with("lvs.toml: "), "{err}");
        assert!(err.contains("line 14") && err.contains("wieght"), "{err}");
    }

    #[test]
    fn semantic_errors_name_line_and_field() {
        let text = GOOD.replace("198.18.11.2:8080", "198.18.11:8080");
        let err = parse(&text, "lvs.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("lvs.toml:8: field `address`: malformed address"),
            "{err}"
        );
        let text = format!("{GOOD}\n[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\nscheduler = \"rr\"\n");
        let err = parse(&text, "lvs.toml").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "lvs.toml:18: field `address`: service TCP 198.18.0.10:80 already exists"
            ),
            "{err}"
        );
        let text = GOOD.replace("scheduler = \"rr\"", "scheduler = \"fastest\"");
        let err = parse(&text, "lvs.toml").unwrap_err().to_string();
        assert!(
            err.contains("line 5") && err.contains("unknown scheduler `fastest`"),
            "{err}"
        );
    }

    const CHECKED: &str = r#"
[[service]]
protocol = "tcp"
address = "198.18.0.10:80"
scheduler = "wlc"
sorry_server = "198.18.19.2:8080"
sorry_method = "nat"
slow_start = 30

[[service.real]]
address = "198.18.11.2:8080"
method = "nat"
inhibit_on_failure = true

[[service.real.check]]
type = "http"
path = "/health"
status = [200, "300-302"]
body = "OK"
interval = 0.5
timeout = 0.25
fall = 3

[[service.real.check]]
type = "exec"
program = "/usr/local/bin/check-db"
args = ["--quick"]

[service.real.agent]
port = 9999
interval = 1
min_percent = 10
"#;

    #[test]
    fn health_configuration_becomes_commands() {
        let cmds = parse(CHECKED, "lvs.toml").unwrap();
        let mut s = State::default();
        s.apply_all(&cmds).unwrap();
        let svc = &s.at(0).unwrap();
        let sorry = svc.health.sorry.unwrap();
        assert_eq!(sorry.server.to_string(), "198.18.19.2:8080");
        assert_eq!(sorry.method, Method::Nat);
        assert_eq!(svc.health.slow_start, Some(30));
        let health = svc.checks_of(&svc.reals[0].server).unwrap();
        assert!(health.inhibit_on_failure);
        let [http, exec] = health.checks.as_slice() else {
            panic!("{health:?}")
        };
        let CheckKind::Http(h) = &http.kind else {
            panic!()
        };
        assert_eq!(h.status, [(200, 200), (300, 302)]);
        assert_eq!(h.body.as_deref(), Some("OK"));
        assert_eq!(
            (http.interval_ms, http.timeout_ms, http.rise, http.fall),
            (500, 250, 1, 3)
        );
        // keepalived's defaults: MISC_CHECK has no retry, so fall 1.
        assert_eq!(
            (exec.interval_ms, exec.timeout_ms, exec.fall),
            (60_000, 5_000, 1)
        );
        let agent = health.agent.as_ref().unwrap();
        assert_eq!(
            (
                agent.port,
                agent.interval_ms,
                agent.min_percent,
                agent.max_percent
            ),
            (9999, 1000, 10, 100)
        );
        assert_eq!(http.start, StartState::Up);
    }

    /// keepalived's virtual-server keys: quorum, hysteresis, the commands,
    /// omega, and alpha (every check starts down unless it says).
    #[test]
    fn quorum_alpha_and_omega_are_read() {
        let text = CHECKED.replace(
            "slow_start = 30",
            "slow_start = 30\nquorum = 2\nhysteresis = 1\nquorum_up = \"echo up\"\n\
             quorum_down = \"echo down\"\nalpha = true\nomega = true",
        );
        let text = text.replace("fall = 3", "fall = 3\nstart = \"up\"");
        let mut s = State::default();
        s.apply_all(&parse(&text, "lvs.toml").unwrap()).unwrap();
        let svc = &s.at(0).unwrap();
        let h = &svc.health;
        assert_eq!((h.quorum, h.hysteresis, h.omega), (Some(2), Some(1), true));
        assert_eq!(
            (h.quorum_up.as_deref(), h.quorum_down.as_deref()),
            (Some("echo up"), Some("echo down"))
        );
        let checks = &svc.checks_of(&svc.reals[0].server).unwrap().checks;
        // The check that says `start` keeps it; the other starts down.
        assert_eq!(
            (checks[0].start, checks[1].start),
            (StartState::Up, StartState::Down)
        );
    }

    #[test]
    fn health_errors_name_line_and_field() {
        for (from, to, expected) in [
            (
                "type = \"http\"",
                "type = \"ftp\"",
                "lvs.toml:15: field `check.type`: unknown check type `ftp`: expected tcp, send_expect, http, smtp, dns, udp, ping, file or exec",
            ),
            (
                "path = \"/health\"",
                "program = \"/bin/true\"",
                "lvs.toml:15: field `check.type`: `program` does not apply to a `http` check",
            ),
            (
                "status = [200, \"300-302\"]",
                "status = [\"2xx\"]",
                "lvs.toml:15: field `check.status`: expected a status code or a range like \"200-299\", found \"2xx\"",
            ),
            (
                "interval = 0.5",
                "interval = -1",
                "lvs.toml:15: field `check.interval`: interval -1 out of range: expected seconds above 0 and at most 2678400",
            ),
            (
                "timeout = 0.25",
                "retry_interval = -1",
                "lvs.toml:15: field `check.retry_interval`: retry_interval -1 out of range: expected seconds from 0 to 2678400",
            ),
            (
                "path = \"/health\"",
                "path = \"/health\"\nversion = \"2\"",
                "lvs.toml:15: field `check.version`: unknown HTTP version \"2\": expected \"1.0\", \"1.0C\" or \"1.1\"",
            ),
            (
                "path = \"/health\"",
                "path = \"/health\"\nbind = \"::1\"",
                "lvs.toml:15: field `check.bind`: bind address ::1 and the address probed, 198.18.11.2, are of different families",
            ),
            (
                "path = \"/health\"",
                "path = \"/health\"\nhelo = \"lb\"",
                "lvs.toml:15: field `check.type`: `helo` does not apply to a `http` check",
            ),
            (
                "min_percent = 10",
                "min_percent = 300",
                "lvs.toml:29: field `agent`: agent weight bounds 300%..100% must satisfy 0 <= min <= max <= 256",
            ),
            (
                "sorry_server = \"198.18.19.2:8080\"",
                "sorry_server = \"198.18.11.2:8080\"",
                "lvs.toml:6: field `sorry_server`: sorry server 198.18.11.2:8080 of service TCP 198.18.0.10:80 is also one of its real servers",
            ),
        ] {
            let text = CHECKED.replace(from, to);
            assert_ne!(text, CHECKED, "{from}");
            let err = parse(&text, "lvs.toml").unwrap_err().to_string();
            assert_eq!(err, expected, "{to}");
        }
        let text = CHECKED.replace("fall = 3", "fall = 3\nretries = 2");
        let err = parse(&text, "lvs.toml").unwrap_err().to_string();
        assert!(err.contains("retries") && err.contains("line 23"), "{err}");
    }

    #[test]
    fn lvsadm_words_read_as_the_config_file_does() {
        let real: Endpoint = "198.18.11.2:8080".parse().unwrap();
        let c = check_from_words(
            "type=http path=/health status=[200,\"300-302\"] interval=0.5 timeout=0.25 fall=3",
            real,
        )
        .unwrap();
        assert_eq!((c.interval_ms, c.timeout_ms, c.fall), (500, 250, 3));
        let CheckKind::Http(h) = &c.kind else {
            panic!()
        };
        assert_eq!(
            (h.path.as_str(), h.status.as_slice()),
            ("/health", &[(200, 200), (300, 302)][..])
        );
        let c = check_from_words(
            "type=send_expect send=\"PING\\r\\n\" expect=PONG connect=10.0.0.1",
            real,
        )
        .unwrap();
        assert_eq!(c.connect.unwrap().to_string(), "10.0.0.1:8080");
        let CheckKind::SendExpect { send, expect } = &c.kind else {
            panic!()
        };
        assert_eq!(send, "PING\r\n");
        assert_eq!(*expect, Expect::Substring("PONG".into()));
        let a = agent_from_words("port=9999 interval=2 max_percent=200").unwrap();
        assert_eq!((a.port, a.interval_ms, a.max_percent), (9999, 2000, 200));
        for (words, expected) in [
            ("type=http interval", "`interval`: expected key=value"),
            (
                "type=ftp",
                "`check.type`: unknown check type `ftp`: expected tcp, send_expect, http, smtp, dns, udp, ping, file or exec",
            ),
            ("type=tcp retries=2", "unknown field `retries`"),
            (
                "type=exec program=/bin/true bind=127.0.0.1",
                "`check.type`: `bind` does not apply to a `exec` check",
            ),
        ] {
            let err = check_from_words(words, real).unwrap_err();
            assert!(err.starts_with(expected), "{words}: {err}");
        }
    }

    /// One check table on a real server at 198.18.11.2:8080 (the table
    /// starts on line 7).
    fn one_check(keys: &str) -> Result<Check, ConfigError> {
        let text = format!(
            "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\n[[service.real]]\naddress = \"198.18.11.2:8080\"\nmethod = \"nat\"\n[[service.real.check]]\n{keys}\n"
        );
        let mut s = State::default();
        s.apply_all(&parse(&text, "lvs.toml")?).unwrap();
        let svc = s.at(0).unwrap();
        let health = svc.checks_of(&svc.reals[0].server).unwrap();
        Ok(health.checks[0].clone())
    }

    #[test]
    fn keepalived_timing_keys_are_read() {
        let c = one_check("type = \"tcp\"\ninterval = 1\ntimeout = 3\nretry_interval = 0.25\nbind = \"198.18.1.3\"").unwrap();
        // A timeout above the interval is keepalived's right too.
        assert_eq!((c.interval_ms, c.timeout_ms), (1000, 3000));
        assert_eq!(c.retry_interval_ms, Some(250));
        assert_eq!(c.bind, Some("198.18.1.3".parse().unwrap()));
        let c = one_check("type = \"tcp\"\nretry_interval = 0").unwrap();
        assert_eq!(c.retry_interval_ms(), 0);
        let c = one_check("type = \"dns\"\ninterval = 7").unwrap();
        assert_eq!(
            (c.fall, c.retry_interval_ms(), c.timeout_ms),
            (4, 7000, 5000)
        );
        let c = one_check("type = \"ping\"\nconnect = \"2001:db8::1\"\nbind = \"2001:db8::2\"")
            .unwrap();
        assert_eq!(c.kind, CheckKind::Ping);
        assert_eq!(c.connect.unwrap().to_string(), "[2001:db8::1]:8080");
    }

    #[test]
    fn http_gains_tls_sni_version_and_body_regex() {
        let c = one_check("type = \"http\"\ntls = true\nsni = \"www.example.com\"\nversion = \"1.0C\"\nbody_regex = \"^OK\"").unwrap();
        let CheckKind::Http(h) = &c.kind else {
            panic!()
        };
        assert!(h.tls);
        assert_eq!(h.sni.as_deref(), Some("www.example.com"));
        assert_eq!(h.version, HttpVersion::Http10Close);
        assert_eq!(h.body_regex.as_deref(), Some("^OK"));
        assert_eq!(h.path, "/");
        // keepalived's retry default for HTTP_GET and SSL_GET.
        assert_eq!(c.retry_interval_ms(), 3000);
        let c = one_check("type = \"http\"\nversion = 1.1").unwrap();
        let CheckKind::Http(h) = &c.kind else {
            panic!()
        };
        assert_eq!((h.version, h.tls), (HttpVersion::Http11, false));
        for (keys, expected) in [
            (
                "type = \"http\"\nsni = \"www.example.com\"",
                "lvs.toml:7: field `check`: SNI `www.example.com` needs `tls = true`",
            ),
            (
                "type = \"http\"\ntls = true\nsni = \"198.18.11.2\"",
                "lvs.toml:7: field `check`: SNI `198.18.11.2` is not a DNS name",
            ),
            (
                "type = \"http\"\nbody_regex = \"(\"",
                "lvs.toml:7: field `check`: invalid regular expression `(`",
            ),
            (
                "type = \"tcp\"\ntls = true",
                "lvs.toml:7: field `check.type`: `tls` does not apply to a `tcp` check",
            ),
        ] {
            let err = one_check(keys).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{keys}: {err}");
        }
    }

    #[test]
    fn smtp_dns_udp_and_ping_checks_are_read() {
        let c = one_check("type = \"smtp\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Smtp {
                helo: "smtpchecker.keepalived.org".into()
            }
        );
        let c =
            one_check("type = \"smtp\"\nhelo = \"lb1.example.com\"\nconnect = \"198.18.11.2:25\"")
                .unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Smtp {
                helo: "lb1.example.com".into()
            }
        );
        let c = one_check("type = \"dns\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Dns {
                query_type: DnsType::Soa,
                name: ".".into()
            }
        );
        let c = one_check("type = \"dns\"\nquery_type = \"aaaa\"\nname = \"example.com\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Dns {
                query_type: DnsType::Aaaa,
                name: "example.com".into()
            }
        );
        let c = one_check("type = \"udp\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Udp(UdpCheck {
                payload: None,
                require_reply: false,
                reply: None,
                min_reply_length: 0,
                max_reply_length: 255,
            })
        );
        let c = one_check("type = \"udp\"\npayload = \"0a 0b\"\nrequire_reply = true").unwrap();
        let CheckKind::Udp(u) = &c.kind else { panic!() };
        assert_eq!(
            (u.payload.as_deref(), u.require_reply, u.reply.as_deref()),
            (Some("0a 0b"), true, None)
        );
        let c = one_check(
            "type = \"udp\"\nrequire_reply = \"0a xx\"\nmin_reply_length = 2\nmax_reply_length = 8",
        )
        .unwrap();
        let CheckKind::Udp(u) = &c.kind else { panic!() };
        assert_eq!(
            (
                u.require_reply,
                u.reply.as_deref(),
                u.min_reply_length,
                u.max_reply_length
            ),
            (true, Some("0a xx"), 2, 8)
        );
        for (keys, expected) in [
            (
                "type = \"dns\"\nquery_type = \"PTR\"",
                "lvs.toml:7: field `check.query_type`: unknown DNS query type `PTR`: expected A, NS, CNAME, SOA, MX, TXT, AAAA, RRSIG, DNSKEY",
            ),
            (
                "type = \"dns\"\nname = \"a..b\"",
                "lvs.toml:7: field `check`: DNS name `a..b`: it has an empty label",
            ),
            (
                "type = \"udp\"\npayload = \"zz\"",
                "lvs.toml:7: field `check`: payload `zz` is not a hex string: unexpected 'z'",
            ),
            (
                "type = \"udp\"\nrequire_reply = 5",
                "lvs.toml:7: field `check.require_reply`: expected true or the hex a reply must match, found 5",
            ),
            (
                "type = \"udp\"\nrequire_reply = true\nmax_reply_length = 8",
                "lvs.toml:7: field `check.require_reply`: `max_reply_length` applies only with require_reply = \"<hex>\"",
            ),
            (
                "type = \"udp\"\nrequire_reply = \"01\"\nmin_reply_length = 9\nmax_reply_length = 8",
                "lvs.toml:7: field `check`: min_reply_length 9 is above max_reply_length 8",
            ),
            (
                "type = \"ping\"\nname = \"x\"",
                "lvs.toml:7: field `check.type`: `name` does not apply to a `ping` check",
            ),
            (
                "type = \"smtp\"\npayload = \"01\"",
                "lvs.toml:7: field `check.type`: `payload` does not apply to a `smtp` check",
            ),
        ] {
            let err = one_check(keys).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{keys}: {err}");
        }
    }

    #[test]
    fn file_and_dynamic_exec_checks_are_read() {
        let c = one_check("type = \"file\"\npath = \"/run/lvs/weight\"").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::File(FileCheck {
                path: "/run/lvs/weight".into(),
                weight: 1,
                reverse: false
            })
        );
        // Known at once: it starts down only until it is read.
        assert_eq!((c.start, c.rise, c.fall), (StartState::Down, 1, 1));
        let c = one_check(
            "type = \"file\"\npath = \"/run/w\"\nweight = -20\nreverse = true\ndynamic = true",
        )
        .unwrap();
        assert_eq!(
            c.kind,
            CheckKind::File(FileCheck {
                path: "/run/w".into(),
                weight: -20,
                reverse: true
            })
        );
        let c = one_check("type = \"file\"\npath = \"/run/w\"\ndynamic = false").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::File(FileCheck {
                path: "/run/w".into(),
                weight: 0,
                reverse: false
            })
        );
        let c = one_check("type = \"exec\"\nprogram = \"/bin/true\"\ndynamic = true").unwrap();
        assert_eq!(
            c.kind,
            CheckKind::Exec {
                program: "/bin/true".into(),
                args: vec![],
                dynamic: true
            }
        );
        for (keys, expected) in [
            (
                "type = \"file\"",
                "lvs.toml:7: field `check.path`: a file check needs `path`",
            ),
            (
                "type = \"file\"\npath = \"/run/w\"\ninterval = 1",
                "lvs.toml:7: field `check.type`: `interval` does not apply to a `file` check: the file is read whenever it changes",
            ),
            (
                "type = \"file\"\npath = \"/run/w\"\nbind = \"127.0.0.1\"",
                "lvs.toml:7: field `check.type`: `bind` does not apply to a `file` check",
            ),
            (
                "type = \"file\"\npath = \"/run/w\"\nweight = 2147483648",
                "lvs.toml:7: field `check.weight`: weight 2147483648 out of range -2147483647..=2147483647",
            ),
            (
                "type = \"file\"\npath = \"/run/w\"\nweight = 0\ndynamic = true",
                "lvs.toml:7: field `check.dynamic`: a dynamic file check needs a non-zero weight",
            ),
            (
                "type = \"file\"\npath = \"/run/w\"\nweight = 3\ndynamic = false",
                "lvs.toml:7: field `check.dynamic`: with weight 3 the value moves the server's weight",
            ),
            (
                "type = \"tcp\"\nweight = 3",
                "lvs.toml:7: field `check.type`: `weight` does not apply to a `tcp` check",
            ),
            (
                "type = \"http\"\ndynamic = true",
                "lvs.toml:7: field `check.type`: `dynamic` does not apply to a `http` check",
            ),
        ] {
            let err = one_check(keys).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{keys}: {err}");
        }
    }

    const PAIR: &str = r#"
[ha]
priority = 150
key = "a shared secret, 16+ bytes"
interval = 0.2
dead = 0.8

[[ha.link]]
iface = "lan0"
local = "198.18.1.3"
peer = "198.18.1.4"

[[ha.link]]
iface = "priv0"
local = "198.18.20.3"
peer = "198.18.20.4"

[[ha.address]]
address = "198.18.0.10"
iface = "lan0"

[[ha.address]]
address = "198.18.20.1/24"
iface = "priv0"

[[ha.address]]
address = "2001:db8::10"
iface = "lan0"

[[ha.address]]
address = "2001:db8:41::1/64"
iface = "priv0"
"#;

    #[test]
    fn the_ha_table_is_read_with_its_defaults() {
        assert_eq!(parse_ha(GOOD, "lvs.toml").unwrap(), None);
        let ha = parse_ha(PAIR, "lvs.toml").unwrap().unwrap();
        assert_eq!((ha.priority, ha.preempt, ha.port), (150, false, 8848));
        assert_eq!(
            (ha.interval_ms, ha.dead_ms, ha.sync_interval_ms),
            (200, 800, 200)
        );
        assert_eq!(ha.node().to_string(), "198.18.1.3");
        assert_eq!(ha.links.len(), 2);
        let floating: Vec<String> = ha.addresses.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            floating,
            [
                "198.18.0.10/32 dev lan0",
                "198.18.20.1/24 dev priv0",
                "2001:db8::10/128 dev lan0",
                "2001:db8:41::1/64 dev priv0"
            ]
        );
        // The services part of the same file still parses alone.
        assert!(parse(&format!("{GOOD}{PAIR}"), "lvs.toml").is_ok());
    }

    #[test]
    fn ha_errors_name_line_and_field() {
        for (from, to, expected) in [
            (
                "key = \"a shared secret, 16+ bytes\"",
                "key = \"short\"",
                "lvs.toml:4: field `ha.key`: the key has 5 bytes; use at least 16",
            ),
            (
                "dead = 0.8",
                "dead = 0.1",
                "lvs.toml:6: field `ha.dead`: the dead time (100 ms) must be longer than the heartbeat interval (200 ms)",
            ),
            (
                "priority = 150",
                "priority = 0",
                "lvs.toml:3: field `ha.priority`: priority must be 1..=255",
            ),
            (
                "peer = \"198.18.1.4\"",
                "peer = \"198.18.1\"",
                "lvs.toml:8: field `ha.link.peer`: malformed address `198.18.1`: expected IPv4 a.b.c.d",
            ),
            (
                "address = \"198.18.20.1/24\"",
                "address = \"198.18.20.1/33\"",
                "lvs.toml:22: field `ha.address.address`: bad prefix length in `198.18.20.1/33` (0 to 32)",
            ),
            (
                "address = \"2001:db8:41::1/64\"",
                "address = \"2001:db8:41::1/129\"",
                "lvs.toml:30: field `ha.address.address`: bad prefix length in `2001:db8:41::1/129` (0 to 128)",
            ),
            (
                "address = \"2001:db8::10\"",
                "address = \"2001:db8::1O\"",
                "lvs.toml:26: field `ha.address.address`: `2001:db8::1O` is not an IPv4 or IPv6 address",
            ),
        ] {
            let text = PAIR.replace(from, to);
            assert_ne!(text, PAIR, "{from}");
            let err = parse_ha(&text, "lvs.toml").unwrap_err().to_string();
            assert_eq!(err, expected, "{to}");
        }
        let no_key = PAIR.replace("key = \"a shared secret, 16+ bytes\"\n", "");
        let err = parse_ha(&no_key, "lvs.toml").unwrap_err().to_string();
        assert!(
            err.starts_with("lvs.toml:2: field `ha.key`") && err.contains("required"),
            "{err}"
        );
    }
}
