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
/// `retry` 1 by default (MISC_CHECK: 0, so `fall` 1 for `exec`).
pub const DEFAULT_FALL: u32 = 2;
pub const DEFAULT_EXEC_FALL: u32 = 1;
/// HAProxy's agent-check interval default is the check interval (2 s).
pub const DEFAULT_AGENT_INTERVAL_MS: u64 = 2_000;
/// Slow start for schedulers that weigh connection counts (wlc, sed, nq)
/// unless a service sets its own window.
pub const DEFAULT_SLOW_START_S: u32 = 10;

/// A real server's health configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub rise: u32,
    pub fall: u32,
    /// The state before the first result (keepalived's `alpha` is `down`).
    pub start: StartState,
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
    /// HTTP/1.0 GET (HTTP_GET).
    Http(HttpCheck),
    /// An external program: exit status 0 means up (MISC_CHECK). It gets
    /// `LVS_REAL_ADDR`, `LVS_REAL_PORT`, `LVS_VIRTUAL_ADDR`,
    /// `LVS_VIRTUAL_PORT` and `LVS_PROTOCOL` in its environment.
    Exec {
        program: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
    },
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
}

impl HttpCheck {
    pub const DEFAULT_STATUS: (u16, u16) = (200, 299);
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
    /// A checker with keepalived's timing defaults for its kind.
    pub fn new(kind: CheckKind) -> Self {
        let fall = match kind {
            CheckKind::Exec { .. } => DEFAULT_EXEC_FALL,
            _ => DEFAULT_FALL,
        };
        Self {
            kind,
            connect: None,
            interval_ms: DEFAULT_INTERVAL_MS,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            rise: DEFAULT_RISE,
            fall,
            start: StartState::Up,
        }
    }

    pub fn validate(&self) -> Result<(), HealthError> {
        positive("interval", self.interval_ms)?;
        positive("timeout", self.timeout_ms)?;
        positive("rise", self.rise.into())?;
        positive("fall", self.fall.into())?;
        // A probe outliving its interval would overlap the next one.
        if self.timeout_ms > self.interval_ms {
            return Err(HealthError::TimeoutNotBelowInterval {
                timeout_ms: self.timeout_ms,
                interval_ms: self.interval_ms,
            });
        }
        match &self.kind {
            CheckKind::Tcp => Ok(()),
            CheckKind::SendExpect { expect, .. } => match expect {
                Expect::Substring(_) => Ok(()),
                Expect::Regex(pattern) => {
                    regex::Regex::new(pattern)
                        .map(drop)
                        .map_err(|e| HealthError::Regex {
                            pattern: pattern.clone(),
                            message: e.to_string(),
                        })
                }
            },
            CheckKind::Http(http) => {
                if !http.path.starts_with('/') {
                    return Err(HealthError::Path(http.path.clone()));
                }
                for &(lo, hi) in &http.status {
                    if lo < 100 || hi > 599 || lo > hi {
                        return Err(HealthError::Status(lo, hi));
                    }
                }
                match &http.digest {
                    Some(d) if d.len() != 32 || !d.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        Err(HealthError::Digest(d.clone()))
                    }
                    _ => Ok(()),
                }
            }
            CheckKind::Exec { program, .. } if program.trim().is_empty() => {
                Err(HealthError::Program)
            }
            CheckKind::Exec { .. } => Ok(()),
        }
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
        });
        assert_eq!(exec.fall, 1);
    }

    #[test]
    fn validation_names_what_is_wrong() {
        let mut c = Check::new(CheckKind::Http(HttpCheck {
            path: "health".into(),
            status: vec![HttpCheck::DEFAULT_STATUS],
            body: None,
            digest: None,
            host: None,
        }));
        assert_eq!(c.validate(), Err(HealthError::Path("health".into())));
        if let CheckKind::Http(h) = &mut c.kind {
            h.path = "/health".into();
            h.digest = Some("abc".into());
        }
        assert_eq!(c.validate(), Err(HealthError::Digest("abc".into())));
        c.timeout_ms = 70_000;
        assert!(matches!(
            c.validate(),
            Err(HealthError::TimeoutNotBelowInterval { .. })
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

    #[test]
    fn json_shape_is_flat_and_tagged() {
        let c = Check::new(CheckKind::Tcp);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["type"], "tcp");
        assert_eq!(json["interval_ms"], 60_000);
        let back: Check = serde_json::from_value(json).unwrap();
        assert_eq!(back, c);
    }
}
