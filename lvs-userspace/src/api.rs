//! The control API: one JSON request per line on a root-only Unix socket,
//! one JSON response line back. `lvsadm` is its main client.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use lvs_common::Counters;
use serde::{Deserialize, Serialize};

use crate::model::{Command, RealSpec, ServiceId, ServiceSpec};

/// Where `lvsd` listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/lvs/lvsd.sock";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
pub enum Request {
    /// Apply commands as one transaction.
    Apply { commands: Vec<Command> },
    /// `-Z`: one service, or everything.
    Zero { service: Option<ServiceId> },
    /// Everything `-L` and `-S` print.
    List,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Response {
    Ok,
    Snapshot(Snapshot),
    Error { message: String },
}

/// `ipvsadm --stats` counters, after `-Z` baselines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub conns: u64,
    pub in_packets: u64,
    pub out_packets: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

impl Stats {
    pub fn since(raw: Counters, baseline: Option<&Counters>) -> Self {
        let Counters {
            conns,
            in_packets,
            out_packets,
            in_bytes,
            out_bytes,
        } = raw;
        let b = baseline.copied().unwrap_or_default();
        Self {
            conns: conns.saturating_sub(b.conns),
            in_packets: in_packets.saturating_sub(b.in_packets),
            out_packets: out_packets.saturating_sub(b.out_packets),
            in_bytes: in_bytes.saturating_sub(b.in_bytes),
            out_bytes: out_bytes.saturating_sub(b.out_bytes),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealView {
    #[serde(flatten)]
    pub spec: RealSpec,
    pub active_conns: u32,
    pub inactive_conns: u32,
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    #[serde(flatten)]
    pub spec: ServiceSpec,
    pub stats: Stats,
    /// In IPVS list order.
    pub reals: Vec<RealView>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub conn_table_size: u32,
    pub services: Vec<ServiceView>,
    /// Datapath verdict counters by name.
    pub verdicts: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot reach lvsd at {path}: {source} (is lvsd running? set --socket or LVSADM_SOCKET)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("talking to lvsd at {path} failed: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("lvsd sent a malformed response: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Send one request and wait for its response.
pub fn call(path: &Path, request: &Request) -> Result<Response, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
        path: path.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(io)?;
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply).map_err(io)?;
    Ok(serde_json::from_str(&reply)?)
}
