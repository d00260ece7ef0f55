//! The TOML configuration `lvsd --config` loads: virtual services and their
//! real servers. Unknown keys are refused, and every error names the file,
//! the line and the field.
//!
//! ```toml
//! [[service]]
//! protocol = "tcp"            # tcp | udp
//! address = "198.18.0.10:80"  # VIP:port
//! scheduler = "rr"            # default wlc, as in ipvsadm
//!
//! [[service.real]]
//! address = "198.18.11.2:8080"
//! method = "nat"              # nat | route | tunnel (default route, as in ipvsadm)
//! weight = 1                  # default 1
//! ```

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::{
    model::{Command, Endpoint, Method, Protocol, RealSpec, ServiceId, ServiceSpec, State},
    sched::SchedulerName,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    service: Vec<ServiceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceEntry {
    protocol: Protocol,
    address: Spanned<String>,
    #[serde(default = "default_scheduler")]
    scheduler: SchedulerName,
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
    Parse { path: String, message: String },
    #[error("{path}:{line}: field `{field}`: {message}")]
    Invalid {
        path: String,
        line: usize,
        field: &'static str,
        message: String,
    },
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Read and check a config file; the result applies as one transaction.
pub fn load(path: &Path) -> Result<Vec<Command>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string())
}

pub fn parse(text: &str, path: &str) -> Result<Vec<Command>, ConfigError> {
    let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_string(),
        message: e.to_string().trim_end().to_string(),
    })?;
    let invalid = |span: std::ops::Range<usize>, field, message: String| ConfigError::Invalid {
        path: path.to_string(),
        line: line_of(text, span.start),
        field,
        message,
    };
    let mut commands = Vec::new();
    let mut state = State::default();
    for svc in file.service {
        let vip: Endpoint =
            svc.address
                .get_ref()
                .parse()
                .map_err(|e: crate::model::ModelError| {
                    invalid(svc.address.span(), "address", e.to_string())
                })?;
        let id = ServiceId {
            protocol: svc.protocol,
            vip,
        };
        let add = Command::AddService(ServiceSpec {
            id,
            scheduler: svc.scheduler,
            flags: Default::default(),
            persistence: None,
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
            let add = Command::AddReal {
                service: id,
                real: spec,
            };
            state.apply_all(std::slice::from_ref(&add)).map_err(|e| {
                let field = if matches!(e, crate::model::ModelError::WeightRange(_)) {
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

    #[test]
    fn a_good_file_becomes_commands() {
        let cmds = parse(GOOD, "lvs.toml").unwrap();
        assert_eq!(cmds.len(), 3);
        let mut s = State::default();
        s.apply_all(&cmds).unwrap();
        let reals = &s.services[0].reals;
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
}
