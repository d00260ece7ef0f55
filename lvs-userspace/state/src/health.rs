//! What an operator configures for health: the checkers of each real
//! server, its load agent, what a failure does, the sorry server and slow
//! start. The same types come from the TOML config and the JSON API.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::model::{Endpoint, Method};

/// keepalived's `delay_loop` default.
pub const DEFAULT_INTERVAL_MS: u64 = 60_000;
/// keepalived's `connect_timeout` default.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// keepalived has no rise count: one success brings a checker up.
pub const DEFAULT_RISE: u32 = 1;
/// keepalived declares a checker down after `retry + 1` failures, with
/// `retry` 1 by default (MISC_CHECK: 0, so `fall` 1 for `exec`; DNS_CHECK:
/// 3, so `fall` 4 for `dns`).
pub const DEFAULT_FALL: u32 = 2;
pub const DEFAULT_EXEC_FALL: u32 = 1;
pub const DEFAULT_DNS_FALL: u32 = 4;
/// keepalived's `delay_before_retry` default: 1 s, 3 s for HTTP_GET and
/// SSL_GET (DNS_CHECK: its `delay_loop`).
pub const DEFAULT_RETRY_INTERVAL_MS: u64 = 1_000;
pub const DEFAULT_HTTP_RETRY_INTERVAL_MS: u64 = 3_000;
/// SMTP_CHECK's `helo_name` default.
pub const DEFAULT_SMTP_HELO: &str = "smtpchecker.keepalived.org";
/// UDP_CHECK's reply length bounds by default.
pub const DEFAULT_MIN_REPLY_LENGTH: u16 = 0;
pub const DEFAULT_MAX_REPLY_LENGTH: u16 = 255;
/// HAProxy's agent-check interval default is the check interval (2 s).
pub const DEFAULT_AGENT_INTERVAL_MS: u64 = 2_000;
/// Slow start for schedulers that weigh connection counts (wlc, sed, nq)
/// unless a service sets its own window.
pub const DEFAULT_SLOW_START_S: u32 = 10;

/// A real server's health configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RealHealth {
    /// The server is alive only while every checker is up (keepalived).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Check>,
    /// Load feedback: moves the effective weight within bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentCheck>,
    /// On failure set the weight to 0 (quiescent) instead of taking the
    /// server out of scheduling.
    #[serde(default)]
    pub inhibit_on_failure: bool,
}

/// One checker and its timing.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Check {
    #[serde(flatten)]
    pub kind: CheckKind,
    /// Address to probe instead of the real server's own (`connect_ip`,
    /// `connect_port`); a port of 0 keeps the server's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect: Option<Endpoint>,
    /// The source address of the probe's socket (keepalived's `bindto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bind: Option<IpAddr>,
    /// The next attempt comes this long after the previous one ended (a
    /// program's: after it started, as keepalived runs MISC_CHECK).
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// The state before the first result (keepalived's `alpha` is `down`).
    pub start: StartState,
    /// keepalived's `delay_before_retry`: once an up checker has failed,
    /// the attempts until `fall` is reached come this long apart instead of
    /// `interval_ms`; `None` is the kind's default (`retry_interval_ms()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_interval_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartState {
    /// Alive at once; the first failure takes it down (keepalived).
    Up,
    /// Out of scheduling until `rise` successes.
    Down,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum CheckKind {
    /// A TCP connect within the timeout (TCP_CHECK).
    Tcp,
    /// Connect, send `send`, and read until `expect` matches the reply.
    SendExpect { send: String, expect: Expect },
    /// An HTTP GET (HTTP_GET), or over TLS (SSL_GET).
    Http(HttpCheck),
    /// SMTP_CHECK: a `220` banner, `HELO helo`, a `250` reply, `QUIT`, and
    /// a line back.
    Smtp {
        #[serde(default = "default_helo")]
        helo: String,
    },
    /// DNS_CHECK: one query over UDP, answered with the same id, QR set
    /// and rcode 0.
    Dns { query_type: DnsType, name: String },
    /// UDP_CHECK: a datagram, and no ICMP destination unreachable back
    /// (or, when required, a matching reply).
    Udp(UdpCheck),
    /// PING_CHECK: an ICMP (ICMPv6) echo answered within the timeout.
    Ping,
    /// FILE_CHECK with its track_file: a number in a file, read whenever
    /// the file changes, moves the weight or takes the server out.
    File(FileCheck),
    /// An external program: exit status 0 means up (MISC_CHECK). It gets
    /// `LVS_REAL_ADDR`, `LVS_REAL_PORT`, `LVS_VIRTUAL_ADDR`,
    /// `LVS_VIRTUAL_PORT` and `LVS_PROTOCOL` in its environment.
    Exec {
        program: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// keepalived's `misc_dynamic`: exit 0 is up with the weight
        /// unchanged, 1 down, and 2 to 255 up with the real server's weight
        /// moved so that it becomes the status minus 2.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        dynamic: bool,
    },
}

fn default_helo() -> String {
    DEFAULT_SMTP_HELO.into()
}

/// DNS_CHECK's query types, as keepalived names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsType {
    A,
    Ns,
    Cname,
    Soa,
    Mx,
    Txt,
    Aaaa,
    Rrsig,
    Dnskey,
}

impl DnsType {
    /// keepalived's default.
    pub const DEFAULT: DnsType = DnsType::Soa;
    const ALL: [DnsType; 9] = [
        DnsType::A,
        DnsType::Ns,
        DnsType::Cname,
        DnsType::Soa,
        DnsType::Mx,
        DnsType::Txt,
        DnsType::Aaaa,
        DnsType::Rrsig,
        DnsType::Dnskey,
    ];

    /// The QTYPE on the wire.
    pub fn code(self) -> u16 {
        match self {
            DnsType::A => 1,
            DnsType::Ns => 2,
            DnsType::Cname => 5,
            DnsType::Soa => 6,
            DnsType::Mx => 15,
            DnsType::Txt => 16,
            DnsType::Aaaa => 28,
            DnsType::Rrsig => 46,
            DnsType::Dnskey => 48,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DnsType::A => "A",
            DnsType::Ns => "NS",
            DnsType::Cname => "CNAME",
            DnsType::Soa => "SOA",
            DnsType::Mx => "MX",
            DnsType::Txt => "TXT",
            DnsType::Aaaa => "AAAA",
            DnsType::Rrsig => "RRSIG",
            DnsType::Dnskey => "DNSKEY",
        }
    }

    /// A type by name, in any case (keepalived compares with strcasecmp).
    pub fn from_name(name: &str) -> Option<DnsType> {
        Self::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// The names, for an error message.
    pub fn names() -> String {
        Self::ALL.map(DnsType::name).join(", ")
    }
}

/// DNS_CHECK's default name: the root (keepalived sends the same query
/// for `.` and for no name).
pub const DEFAULT_DNS_NAME: &str = ".";

/// UDP_CHECK. Hex strings are read as keepalived reads them (`hex_bytes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UdpCheck {
    /// What to send, in hex; `None` sends keepalived's 32 bytes
    /// (`keepalived check - ` over and over).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// A reply must come back within the timeout (else silence is success).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_reply: bool,
    /// The reply must match this hex, `x` nibbles being wildcards, over the
    /// shorter of the two; it then must also be `min_reply_length` to
    /// `max_reply_length` bytes long. Implies `require_reply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    pub min_reply_length: u16,
    pub max_reply_length: u16,
}

/// FILE_CHECK: the number in `path` (0 when it is missing, empty or not a
/// number) decides. With `weight` 0, non-zero is down (`reverse`: zero
/// is); otherwise value × weight (× -1 with `reverse`) is added to the
/// real server's weight, and the server is down only at or below
/// -2147483648, as keepalived has it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileCheck {
    pub path: String,
    pub weight: i32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reverse: bool,
}

impl FileCheck {
    /// track_file's default weight.
    pub const DEFAULT_WEIGHT: i32 = 1;
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// The reply contains this text.
    Substring(String),
    /// The reply matches this regular expression.
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HttpCheck {
    pub path: String,
    /// Accepted status codes, as inclusive ranges (default 200-299).
    pub status: Vec<(u16, u16)>,
    /// The body must contain this text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The MD5 of the body, 32 hex digits (keepalived's `digest`, as
    /// `genhash` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The Host header; default the connect address and port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// SSL_GET: the same request over TLS. As keepalived's SSL_GET (which
    /// never asks OpenSSL to verify), any server certificate is accepted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// The server name sent in the TLS handshake (keepalived's
    /// `enable_sni`, `sni_name`); none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// keepalived's `http_protocol`: which request line and headers.
    #[serde(default, skip_serializing_if = "HttpVersion::is_default")]
    pub version: HttpVersion,
    /// The body must match this regular expression (keepalived's `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<String>,
}

impl HttpCheck {
    pub const DEFAULT_STATUS: (u16, u16) = (200, 299);

    /// A GET of `path` with keepalived's defaults.
    pub fn new(path: &str) -> Self {
        Self {
            path: path.into(),
            status: vec![Self::DEFAULT_STATUS],
            body: None,
            digest: None,
            host: None,
            tls: false,
            sni: None,
            version: HttpVersion::default(),
            body_regex: None,
        }
    }
}

/// keepalived's `http_protocol`: `1.0` (the default), `1.0C` (1.0 with
/// `Connection: close`) or `1.1` (with `Connection: close` too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpVersion {
    #[default]
    #[serde(rename = "1.0")]
    Http10,
    #[serde(rename = "1.0C")]
    Http10Close,
    #[serde(rename = "1.1")]
    Http11,
}

impl HttpVersion {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// As keepalived's parser takes it (`1.0c` too).
    pub fn from_name(name: &str) -> Option<HttpVersion> {
        match name {
            "1.0" => Some(HttpVersion::Http10),
            "1.0C" | "1.0c" => Some(HttpVersion::Http10Close),
            "1.1" => Some(HttpVersion::Http11),
            _ => None,
        }
    }
}

/// HAProxy-style agent check: connect to the agent, optionally send a
/// line, read one line back (see `agent::parse`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AgentCheck {
    pub port: u16,
    /// Default: the real server's address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Bounds on the effective weight, in percent of the configured one.
    pub min_percent: u32,
    pub max_percent: u32,
}

impl ServiceHealth {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// keepalived's `update_quorum_state`: whether the service is up when
    /// its live real servers weigh `live` of the `total` configured, given
    /// whether it was. As keepalived, a quorum above the total is lowered
    /// to it, and the hysteresis to quorum - 1; a service with no live
    /// weight is down.
    pub fn quorum_holds(&self, was_up: bool, live: u64, total: u64) -> bool {
        let quorum = u64::from(self.quorum.unwrap_or(1)).min(total).max(1);
        let hysteresis = u64::from(self.hysteresis.unwrap_or(0)).min(quorum - 1);
        if was_up {
            live > 0 && live >= quorum - hysteresis
        } else {
            live >= quorum + hysteresis
        }
    }
}

impl AgentCheck {
    pub const DEFAULT_MIN_PERCENT: u32 = 1;
    pub const DEFAULT_MAX_PERCENT: u32 = 100;
    /// HAProxy caps agent weights at 256%.
    pub const MAX_PERCENT: u32 = 256;
}

/// A service's health settings: when it is up (keepalived's quorum), what
/// takes new connections when it is not, and how fast a server returning
/// to service ramps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry: Option<SorryServer>,
    /// Slow-start window in seconds; `None` means the scheduler's default
    /// (`DEFAULT_SLOW_START_S` for wlc, sed and nq, else off); 0 is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<u32>,
    /// keepalived's `quorum`: the least total weight of live real servers
    /// with which the service is up (`None`: 1). While it is down the sorry
    /// server stands in and its VIP is not announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum: Option<u32>,
    /// keepalived's `hysteresis`: the service goes down below quorum minus
    /// this, and comes back up at quorum plus this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<u32>,
    /// keepalived's `quorum_up` and `quorum_down`: commands run (by
    /// `/bin/sh -c`) when the service comes up or goes down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_up: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_down: Option<String>,
    /// keepalived's `omega`: `quorum_down` also runs when lvsd stops (for
    /// a service that has its quorum then).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub omega: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SorryServer {
    pub server: Endpoint,
    pub method: Method,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HealthError {
    #[error("{field} must be at least 1, not {value}")]
    Zero { field: &'static str, value: u64 },
    #[error("timeout of {timeout_ms} ms is not below the interval of {interval_ms} ms")]
    TimeoutNotBelowInterval { timeout_ms: u64, interval_ms: u64 },
    #[error("bind address {bind} and the address probed, {connect}, are of different families")]
    BindFamily { bind: IpAddr, connect: IpAddr },
    #[error("`bind` does not apply to a `{0}` check: it opens no socket")]
    BindWithoutSocket(&'static str),
    #[error("SNI `{0}` is not a DNS name")]
    Sni(String),
    #[error("SNI `{0}` needs `tls = true`")]
    SniWithoutTls(String),
    #[error("DNS name `{name}`: {reason}")]
    DnsName { name: String, reason: &'static str },
    #[error("{field} `{text}` is not a hex string: {reason}")]
    Hex {
        field: &'static str,
        text: String,
        reason: String,
    },
    #[error("min_reply_length {min} is above max_reply_length {max}: every reply would fail")]
    ReplyLengths { min: u16, max: u16 },
    #[error("empty path for a file check")]
    FilePath,
    #[error("file check weight must be within -2147483647..=2147483647")]
    FileWeight,
    #[error("status range {0}-{1} is not within 100-599")]
    Status(u16, u16),
    #[error("digest `{0}` is not 32 hex digits (an MD5, as genhash prints it)")]
    Digest(String),
    #[error("invalid regular expression `{pattern}`: {message}")]
    Regex { pattern: String, message: String },
    #[error("HTTP path `{0}` must start with `/`")]
    Path(String),
    #[error("agent weight bounds {min}%..{max}% must satisfy 0 <= min <= max <= 256")]
    AgentBounds { min: u32, max: u32 },
    #[error("empty program for an exec check")]
    Program,
}

impl Check {
    /// A checker with keepalived's timing defaults for its kind. A file
    /// check is read at once, so it starts down only until that first read.
    pub fn new(kind: CheckKind) -> Self {
        let (fall, start) = match kind {
            CheckKind::Exec { .. } => (DEFAULT_EXEC_FALL, StartState::Up),
            CheckKind::Dns { .. } => (DEFAULT_DNS_FALL, StartState::Up),
            CheckKind::File(_) => (1, StartState::Down),
            _ => (DEFAULT_FALL, StartState::Up),
        };
        Self {
            kind,
            connect: None,
            bind: None,
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            rise: DEFAULT_RISE,
            fall,
            start,
            retry_interval_ms: None,
        }
    }

    /// keepalived's `delay_before_retry`, with its defaults for the kind.
    pub fn retry_interval_ms(&self) -> u64 {
        self.retry_interval_ms.unwrap_or(match self.kind {
            CheckKind::Dns { .. } => self.interval_ms,
            CheckKind::Http(_) => DEFAULT_HTTP_RETRY_INTERVAL_MS,
            _ => DEFAULT_RETRY_INTERVAL_MS,
        })
    }

    /// A timeout longer than the interval is allowed, as in keepalived:
    /// attempts never overlap, the next one waits for the previous to end.
    /// Which checker a report comes from: a report of a checker since
    /// replaced (a reload) is not taken for its successor's.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.hash(&mut h);
        h.finish()
    }

    pub fn validate(&self) -> Result<(), HealthError> {
        positive("interval", self.interval_ms)?;
        positive("timeout", self.timeout_ms)?;
        positive("rise", self.rise.into())?;
        positive("fall", self.fall.into())?;
        if let Some(bind) = self.bind {
            if !self.kind.opens_socket() {
                return Err(HealthError::BindWithoutSocket(self.kind.name()));
            }
            if let Some(connect) = self.connect {
                same_family(bind, connect.addr)?;
            }
        }
        match &self.kind {
            CheckKind::Tcp | CheckKind::Ping => Ok(()),
            CheckKind::SendExpect { expect, .. } => match expect {
                Expect::Substring(_) => Ok(()),
                Expect::Regex(pattern) => regex(pattern),
            },
            CheckKind::Http(http) => http.validate(),
            CheckKind::Smtp { .. } => Ok(()),
            CheckKind::Dns { name, .. } => dns_name(name).map(drop),
            CheckKind::Udp(udp) => udp.validate(),
            CheckKind::File(file) => {
                if file.path.is_empty() {
                    return Err(HealthError::FilePath);
                }
                if file.weight == i32::MIN {
                    return Err(HealthError::FileWeight);
                }
                Ok(())
            }
            CheckKind::Exec { program, .. } if program.trim().is_empty() => {
                Err(HealthError::Program)
            }
            CheckKind::Exec { .. } => Ok(()),
        }
    }
}

impl CheckKind {
    /// The `type` it is configured with.
    pub fn name(&self) -> &'static str {
        match self {
            CheckKind::Tcp => "tcp",
            CheckKind::SendExpect { .. } => "send_expect",
            CheckKind::Http(_) => "http",
            CheckKind::Smtp { .. } => "smtp",
            CheckKind::Dns { .. } => "dns",
            CheckKind::Udp(_) => "udp",
            CheckKind::Ping => "ping",
            CheckKind::File(_) => "file",
            CheckKind::Exec { .. } => "exec",
        }
    }

    /// Whether its probe has a socket that `bind` can set the source of.
    pub fn opens_socket(&self) -> bool {
        !matches!(self, CheckKind::File(_) | CheckKind::Exec { .. })
    }
}

/// `bind` and the address probed must be of one family.
pub fn same_family(bind: IpAddr, connect: IpAddr) -> Result<(), HealthError> {
    if bind.is_ipv4() != connect.is_ipv4() {
        return Err(HealthError::BindFamily { bind, connect });
    }
    Ok(())
}

fn regex(pattern: &str) -> Result<(), HealthError> {
    regex::Regex::new(pattern)
        .map(drop)
        .map_err(|e| HealthError::Regex {
            pattern: pattern.to_string(),
            message: e.to_string(),
        })
}

impl HttpCheck {
    fn validate(&self) -> Result<(), HealthError> {
        if !self.path.starts_with('/') {
            return Err(HealthError::Path(self.path.clone()));
        }
        for &(lo, hi) in &self.status {
            if lo < 100 || hi > 599 || lo > hi {
                return Err(HealthError::Status(lo, hi));
            }
        }
        if let Some(d) = &self.digest {
            if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(HealthError::Digest(d.clone()));
            }
        }
        if let Some(sni) = &self.sni {
            if !self.tls {
                return Err(HealthError::SniWithoutTls(sni.clone()));
            }
            // An address is not a name, and TLS sends no address as SNI.
            let labels_ok = dns_name(sni).is_ok_and(|labels| {
                !labels.is_empty()
                    && labels.iter().all(|l| {
                        l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                            && !l.starts_with('-')
                            && !l.ends_with('-')
                    })
            });
            if !labels_ok || sni.parse::<IpAddr>().is_ok() {
                return Err(HealthError::Sni(sni.clone()));
            }
        }
        self.body_regex.as_deref().map_or(Ok(()), regex)
    }
}

/// A DNS name's labels, as DNS_CHECK puts them in its query: a trailing
/// dot is optional, `.` alone is the root (no label). keepalived refuses
/// empty labels; a label of more than 63 bytes (or a name of more than 255
/// on the wire) would make a malformed query, so those are refused too.
pub fn dns_name(name: &str) -> Result<Vec<&str>, HealthError> {
    let invalid = |reason| HealthError::DnsName {
        name: name.to_string(),
        reason,
    };
    if name == "." || name.is_empty() {
        return Ok(Vec::new());
    }
    let labels: Vec<&str> = name.strip_suffix('.').unwrap_or(name).split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(invalid("it has an empty label"));
    }
    if labels.iter().any(|l| l.len() > 63) {
        return Err(invalid("a label is longer than 63 bytes"));
    }
    if labels.iter().map(|l| l.len() + 1).sum::<usize>() + 1 > 255 {
        return Err(invalid("it is longer than 255 bytes on the wire"));
    }
    Ok(labels)
}

/// A hex string as keepalived's `read_hex_str` reads it: spaces and tabs
/// between octets; two digits make an octet, and a single digit followed
/// by a space or the end makes one too (`Ab12f 3` is AB 12 0F 03). With
/// `wildcards`, an `x` stands for a nibble to ignore. Returns the octets
/// and, per octet, the mask of the nibbles that are wildcards.
pub fn hex_bytes(
    field: &'static str,
    text: &str,
    wildcards: bool,
) -> Result<(Vec<u8>, Vec<u8>), HealthError> {
    let invalid = |reason: String| HealthError::Hex {
        field,
        text: text.to_string(),
        reason,
    };
    // A nibble's value and wildcard mask.
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok((c - b'0', 0)),
        b'a'..=b'f' | b'A'..=b'F' => Ok(((c | 0x20) - b'a' + 10, 0)),
        b'x' | b'X' if wildcards => Ok((0, 0x0f)),
        _ => Err(invalid(format!("unexpected {:?}", char::from(c)))),
    };
    let bytes = text.as_bytes();
    let (mut data, mut mask) = (Vec::new(), Vec::new());
    let mut i = 0;
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
            i += 1;
        }
        let Some(&first) = bytes.get(i) else { break };
        i += 1;
        let (mut value, mut wild) = nibble(first)?;
        // keepalived only looks for a space here: a tab after a lone digit
        // is read as the second digit, and refused.
        if let Some(&second) = bytes.get(i).filter(|&&c| c != b' ') {
            i += 1;
            let (low, low_wild) = nibble(second)?;
            value = value << 4 | low;
            wild = wild << 4 | low_wild;
        }
        data.push(value);
        mask.push(wild);
    }
    if data.is_empty() {
        return Err(invalid("no octet".into()));
    }
    if data.len() > usize::from(u16::MAX) {
        return Err(invalid(format!("more than {} octets", u16::MAX)));
    }
    Ok((data, mask))
}

impl UdpCheck {
    fn validate(&self) -> Result<(), HealthError> {
        if let Some(payload) = &self.payload {
            hex_bytes("payload", payload, false)?;
        }
        if let Some(reply) = &self.reply {
            hex_bytes("require_reply", reply, true)?;
        }
        if self.min_reply_length > self.max_reply_length {
            return Err(HealthError::ReplyLengths {
                min: self.min_reply_length,
                max: self.max_reply_length,
            });
        }
        Ok(())
    }
}

impl AgentCheck {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            addr: None,
            send: None,
            interval_ms: DEFAULT_AGENT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS.min(DEFAULT_AGENT_INTERVAL_MS),
            min_percent: Self::DEFAULT_MIN_PERCENT,
            max_percent: Self::DEFAULT_MAX_PERCENT,
        }
    }

    pub fn validate(&self) -> Result<(), HealthError> {
        positive("agent port", self.port.into())?;
        positive("agent interval", self.interval_ms)?;
        positive("agent timeout", self.timeout_ms)?;
        if self.timeout_ms > self.interval_ms {
            return Err(HealthError::TimeoutNotBelowInterval {
                timeout_ms: self.timeout_ms,
                interval_ms: self.interval_ms,
            });
        }
        if self.min_percent > self.max_percent || self.max_percent > Self::MAX_PERCENT {
            return Err(HealthError::AgentBounds {
                min: self.min_percent,
                max: self.max_percent,
            });
        }
        Ok(())
    }
}

impl RealHealth {
    pub fn validate(&self) -> Result<(), HealthError> {
        for check in &self.checks {
            check.validate()?;
        }
        self.agent.as_ref().map_or(Ok(()), AgentCheck::validate)
    }
}

fn positive(field: &'static str, value: u64) -> Result<(), HealthError> {
    if value == 0 {
        return Err(HealthError::Zero { field, value });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// keepalived's rules: quorum 4, hysteresis 1 over five servers of
    /// weight 1: down below 3, up again from 5; defaults: down at none.
    #[test]
    fn quorum_follows_keepalived_with_its_hysteresis() {
        let health = ServiceHealth {
            quorum: Some(4),
            hysteresis: Some(1),
            ..ServiceHealth::default()
        };
        let mut up = true;
        let mut trace = String::new();
        for live in [5, 4, 3, 2, 3, 4, 5, 4, 3, 2] {
            up = health.quorum_holds(up, live, 5);
            trace.push(if up { 'U' } else { 'D' });
        }
        assert_eq!(trace, "UUUDDDUUUD");
        let plain = ServiceHealth::default();
        assert!(plain.quorum_holds(true, 1, 3) && !plain.quorum_holds(true, 0, 3));
        assert!(plain.quorum_holds(false, 1, 3));
        // Above the total weight, the quorum is the total (3); the
        // hysteresis at most quorum - 1 (2): up until none is live, and, as
        // in keepalived, never up again (3 + 2 is more than the total).
        let high = ServiceHealth {
            quorum: Some(10),
            hysteresis: Some(50),
            ..ServiceHealth::default()
        };
        assert!(high.quorum_holds(true, 1, 3));
        assert!(!high.quorum_holds(true, 0, 3));
        assert!(!high.quorum_holds(false, 3, 3));
        let no_hysteresis = ServiceHealth {
            quorum: Some(10),
            ..ServiceHealth::default()
        };
        assert!(no_hysteresis.quorum_holds(false, 3, 3));
    }

    #[test]
    fn defaults_follow_keepalived() {
        let tcp = Check::new(CheckKind::Tcp);
        assert_eq!((tcp.interval_ms, tcp.timeout_ms), (60_000, 5_000));
        assert_eq!((tcp.rise, tcp.fall, tcp.start), (1, 2, StartState::Up));
        let exec = Check::new(CheckKind::Exec {
            program: "/bin/true".into(),
            args: vec![],
            dynamic: false,
        });
        assert_eq!(exec.fall, 1);
    }

    #[test]
    fn defaults_follow_keepalived_per_kind() {
        let dns = Check::new(CheckKind::Dns {
            query_type: DnsType::DEFAULT,
            name: DEFAULT_DNS_NAME.into(),
        });
        // DNS_CHECK: retry 3, and delay_before_retry is its delay_loop.
        assert_eq!((dns.fall, dns.retry_interval_ms()), (4, 60_000));
        let mut http = Check::new(CheckKind::Http(HttpCheck::new("/")));
        assert_eq!(http.retry_interval_ms(), 3_000);
        http.retry_interval_ms = Some(0);
        assert_eq!(http.retry_interval_ms(), 0);
        assert_eq!(Check::new(CheckKind::Ping).retry_interval_ms(), 1_000);
        let file = Check::new(CheckKind::File(FileCheck {
            path: "/run/weight".into(),
            weight: 1,
            reverse: false,
        }));
        assert_eq!((file.fall, file.start), (1, StartState::Down));
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut c = Check::new(CheckKind::Http(HttpCheck::new("health")));
        assert_eq!(c.validate(), Err(HealthError::Path("health".into())));
        if let CheckKind::Http(h) = &mut c.kind {
            h.path = "/health".into();
            h.digest = Some("abc".into());
        }
        assert_eq!(c.validate(), Err(HealthError::Digest("abc".into())));
        // keepalived lets connect_timeout exceed delay_loop: the next
        // attempt waits for the previous one.
        let mut slow = Check::new(CheckKind::Tcp);
        slow.timeout_ms = 70_000;
        assert_eq!(slow.validate(), Ok(()));
        slow.bind = Some("::1".parse().unwrap());
        slow.connect = Some("198.18.0.1:80".parse().unwrap());
        assert!(matches!(
            slow.validate(),
            Err(HealthError::BindFamily { .. })
        ));
        let mut exec = Check::new(CheckKind::Exec {
            program: "/bin/true".into(),
            args: vec![],
            dynamic: false,
        });
        exec.bind = Some("127.0.0.1".parse().unwrap());
        assert_eq!(exec.validate(), Err(HealthError::BindWithoutSocket("exec")));
        let mut tls = HttpCheck::new("/");
        tls.sni = Some("www.example.com".into());
        assert_eq!(
            Check::new(CheckKind::Http(tls.clone())).validate(),
            Err(HealthError::SniWithoutTls("www.example.com".into()))
        );
        tls.tls = true;
        assert_eq!(Check::new(CheckKind::Http(tls.clone())).validate(), Ok(()));
        for bad in ["10.0.0.1", "a..b", "under_score.example"] {
            tls.sni = Some(bad.into());
            assert_eq!(
                Check::new(CheckKind::Http(tls.clone())).validate(),
                Err(HealthError::Sni(bad.into()))
            );
        }
        tls.sni = None;
        tls.body_regex = Some("(".into());
        assert!(matches!(
            Check::new(CheckKind::Http(tls)).validate(),
            Err(HealthError::Regex { .. })
        ));
        let re = Check::new(CheckKind::SendExpect {
            send: "PING\r\n".into(),
            expect: Expect::Regex("(".into()),
        });
        assert!(matches!(re.validate(), Err(HealthError::Regex { .. })));
        let mut agent = AgentCheck::new(9999);
        agent.min_percent = 50;
        agent.max_percent = 20;
        assert_eq!(
            agent.validate(),
            Err(HealthError::AgentBounds { min: 50, max: 20 })
        );
    }

    /// The manual's example, and wildcards only where a reply is matched.
    #[test]
    fn hex_strings_read_as_keepalived_reads_them() {
        let (data, mask) = hex_bytes("payload", "Ab12f 3 456 546443123", false).unwrap();
        assert_eq!(
            data,
            [0xAB, 0x12, 0x0F, 0x03, 0x45, 0x06, 0x54, 0x64, 0x43, 0x12, 0x03]
        );
        assert!(mask.iter().all(|&m| m == 0));
        let (data, mask) = hex_bytes("require_reply", "\t12 xA Bx", true).unwrap();
        assert_eq!((data, mask), (vec![0x12, 0x0A, 0xB0], vec![0, 0xF0, 0x0F]));
        for (text, wildcards, reason) in [
            ("12 xA", false, "unexpected 'x'"),
            ("1\t2", false, "unexpected '\\t'"),
            ("  ", false, "no octet"),
            ("12 g0", true, "unexpected 'g'"),
        ] {
            let err = hex_bytes("payload", text, wildcards).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("payload `{text}` is not a hex string: {reason}")
            );
        }
    }

    #[test]
    fn dns_names_are_labels_without_empty_ones() {
        assert_eq!(dns_name(".").unwrap(), Vec::<&str>::new());
        assert_eq!(dns_name("example.com.").unwrap(), ["example", "com"]);
        assert_eq!(dns_name("a.example").unwrap(), ["a", "example"]);
        for bad in [".example", "a..b", &format!("{}.com", "x".repeat(64))] {
            assert!(
                matches!(dns_name(bad), Err(HealthError::DnsName { .. })),
                "{bad}"
            );
        }
        let udp = UdpCheck {
            payload: None,
            require_reply: true,
            reply: Some("01 xx".into()),
            min_reply_length: 10,
            max_reply_length: 5,
        };
        assert_eq!(
            Check::new(CheckKind::Udp(udp)).validate(),
            Err(HealthError::ReplyLengths { min: 10, max: 5 })
        );
    }

    #[test]
    fn json_shape_is_flat_and_tagged() {
        let c = Check::new(CheckKind::Tcp);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["type"], "tcp");
        assert_eq!(json["interval_ms"], 60_000);
        let back: Check = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
        let mut tls = HttpCheck::new("/");
        tls.tls = true;
        tls.version = HttpVersion::Http10Close;
        let mut file = Check::new(CheckKind::File(FileCheck {
            path: "/run/w".into(),
            weight: -3,
            reverse: true,
        }));
        file.retry_interval_ms = Some(500);
        file.bind = Some("127.0.0.1".parse().unwrap());
        for c in [
            Check::new(CheckKind::Http(tls)),
            Check::new(CheckKind::Dns {
                query_type: DnsType::Aaaa,
                name: "example.com".into(),
            }),
            Check::new(CheckKind::Smtp {
                helo: DEFAULT_SMTP_HELO.into(),
            }),
            file,
        ] {
            let json = serde_json::to_value(&c).unwrap();
            let back: Check = serde_json::from_value(json.clone()).unwrap();
            assert_eq!(back, c, "{json}");
        }
        let json = serde_json::to_value(Check::new(CheckKind::Dns {
            query_type: DnsType::Aaaa,
            name: ".".into(),
        }))
        .unwrap();
        assert_eq!(
            (&json["type"], &json["query_type"]),
            (&"dns".into(), &"AAAA".into())
        );
    }
}
