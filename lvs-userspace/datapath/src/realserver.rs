//! Preparing a real server for DR and TUN (`lvsadm realserver`): the VIPs on
//! the loopback device, the ARP sysctls that stop it answering for them, and
//! for TUN a decapsulator (`lvs_decap` in XDP, or the kernel's `tunl0`).
//!
//! An IPv6 VIP needs no such sysctl: Linux answers a neighbour solicitation
//! only for an address of the interface it arrived on (`ndisc_recv_ns`
//! looks the target up with `ipv6_get_ifaddr(.., dev, strict)`), and
//! solicits from an address of the outgoing interface unless the packet's
//! own source is one (`ndisc_solicit`), so a VIP on `lo` is never answered
//! for nor announced. It needs IPv6 on `lo`, which setup turns on if off.
//!
//! Every change is recorded in an undo file, so `teardown` removes exactly
//! what `setup` added, and a setup that fails undoes its own steps first.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{
    netconf::{self, NetconfError},
    DatapathError, StandaloneXdp, XdpAttachMode,
};

/// How tunnelled packets are opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decap {
    /// `lvs_decap` attached to this interface and pinned in bpffs.
    Xdp { iface: String },
    /// The kernel's `ipip` module and its fallback device `tunl0`.
    Kernel,
}

/// What `setup` is asked for.
#[derive(Clone, Debug)]
pub struct Plan {
    pub vips: Vec<IpAddr>,
    pub decap: Option<Decap>,
}

/// One change made, with what undoes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    Address { dev: String, addr: IpAddr },
    Sysctl { path: PathBuf, previous: String },
    XdpDecap { iface: String, mode: XdpAttachMode },
    LinkUp { dev: String },
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Address { dev, addr } => {
                write!(f, "address {addr}/{} on {dev}", host_prefix(*addr))
            }
            Step::Sysctl { path, previous } => {
                write!(f, "sysctl {} (was {previous})", path.display())
            }
            Step::XdpDecap { iface, mode } => write!(f, "lvs_decap on {iface} ({mode:?} XDP)"),
            Step::LinkUp { dev } => write!(f, "link {dev} up"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RealServerError {
    #[error(transparent)]
    Netconf(#[from] NetconfError),
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("{op} the undo record {}: {detail}", .path.display())]
    Record {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("interface `{0}` does not exist")]
    NoInterface(String),
    #[error("the kernel has no `ipip` module here ({0}); use --decap xdp:IFACE instead")]
    NoIpip(NetconfError),
    #[error("nothing to undo: no record at {}", .0.display())]
    NothingToUndo(PathBuf),
    #[error("setup failed: {cause}; undoing its steps also failed: {undo}")]
    RollbackFailed {
        cause: Box<RealServerError>,
        undo: String,
    },
}

const RECORD_DIR: &str = "/run/lvs";

fn record_path(netns: u64) -> PathBuf {
    Path::new(RECORD_DIR).join(format!("realserver-{netns}.json"))
}

fn load_record(path: &Path) -> Result<Vec<Step>, RealServerError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RealServerError::Record {
                op: "reading",
                path: path.to_path_buf(),
                detail: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text).map_err(|e| RealServerError::Record {
        op: "parsing",
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

fn save_record(path: &Path, steps: &[Step]) -> Result<(), RealServerError> {
    let err = |op, detail: String| RealServerError::Record {
        op,
        path: path.to_path_buf(),
        detail,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| err("creating the directory of", e.to_string()))?;
    }
    let text = serde_json::to_string_pretty(steps).map_err(|e| err("encoding", e.to_string()))?;
    std::fs::write(path, text).map_err(|e| err("writing", e.to_string()))
}

/// Apply `plan`; returns the steps it took (already-present settings are
/// left alone and not recorded).
pub fn setup(plan: &Plan) -> Result<Vec<Step>, RealServerError> {
    let netns = netconf::netns_id()?;
    let path = record_path(netns);
    let mut recorded = load_record(&path)?;
    let mut taken = Vec::new();
    match take_steps(plan, &recorded, &mut taken) {
        Ok(()) => {
            recorded.extend(taken.iter().cloned());
            if let Err(e) = save_record(&path, &recorded) {
                return Err(roll_back(e, &taken));
            }
            Ok(taken)
        }
        Err(e) => Err(roll_back(e, &taken)),
    }
}

fn roll_back(cause: RealServerError, taken: &[Step]) -> RealServerError {
    let failures = undo_all(taken);
    if failures.is_empty() {
        cause
    } else {
        RealServerError::RollbackFailed {
            cause: Box::new(cause),
            undo: failures.join("; "),
        }
    }
}

fn take_steps(
    plan: &Plan,
    recorded: &[Step],
    taken: &mut Vec<Step>,
) -> Result<(), RealServerError> {
    // The classic LVS-DR/TUN recipe: answer ARP only for addresses on the
    // receiving interface, and never announce the VIP as a source. Set
    // before the VIPs exist (and restored after they are gone), so that the
    // server never answers ARP for a VIP. IPv6 behaves so already (above).
    if plan.vips.iter().any(IpAddr::is_ipv4) {
        for dev in ["all", "lo"] {
            set_sysctl(&netconf::ipv4_conf(dev, "arp_ignore"), "1", taken)?;
            set_sysctl(&netconf::ipv4_conf(dev, "arp_announce"), "2", taken)?;
        }
    }
    if plan.vips.iter().any(IpAddr::is_ipv6) {
        set_sysctl(&netconf::ipv6_conf("lo", "disable_ipv6"), "0", taken)?;
    }
    for vip in &plan.vips {
        if !netconf::has_address("lo", *vip)? {
            netconf::add_address("lo", *vip, host_prefix(*vip))?;
            taken.push(Step::Address {
                dev: "lo".into(),
                addr: *vip,
            });
        }
    }
    match &plan.decap {
        None => {}
        Some(Decap::Xdp { iface }) => {
            if !netconf::link_exists(iface) {
                return Err(RealServerError::NoInterface(iface.clone()));
            }
            let attached = recorded
                .iter()
                .chain(taken.iter())
                .any(|step| matches!(step, Step::XdpDecap { iface: done, .. } if done == iface));
            if !attached {
                let mode = StandaloneXdp::decap()?.attach_persistent(iface)?;
                taken.push(Step::XdpDecap {
                    iface: iface.clone(),
                    mode,
                });
            }
            relax_reverse_path(iface, taken)?;
        }
        Some(Decap::Kernel) => {
            netconf::load_module("ipip").map_err(RealServerError::NoIpip)?;
            if !netconf::link_is_up("tunl0")? {
                netconf::link_up("tunl0")?;
                taken.push(Step::LinkUp {
                    dev: "tunl0".into(),
                });
            }
            relax_reverse_path("tunl0", taken)?;
        }
    }
    Ok(())
}

/// The decapsulated packet comes from the client but arrives on the tunnel
/// device; strict reverse-path filtering would drop it. The effective
/// setting is the larger of `all` and the device's.
fn relax_reverse_path(dev: &str, taken: &mut Vec<Step>) -> Result<(), RealServerError> {
    set_sysctl(&netconf::ipv4_conf(dev, "rp_filter"), "0", taken)?;
    set_sysctl(&netconf::ipv4_conf("all", "rp_filter"), "0", taken)
}

fn set_sysctl(path: &Path, value: &str, taken: &mut Vec<Step>) -> Result<(), RealServerError> {
    let previous = netconf::read_sysctl(path)?;
    if previous != value {
        netconf::write_sysctl(path, value)?;
        taken.push(Step::Sysctl {
            path: path.to_path_buf(),
            previous,
        });
    }
    Ok(())
}

/// A single address: /32, or /128 for IPv6.
fn host_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv6() {
        128
    } else {
        32
    }
}

/// Undo everything `setup` recorded in this network namespace.
pub fn teardown() -> Result<Vec<Step>, RealServerError> {
    let path = record_path(netconf::netns_id()?);
    if !path.exists() {
        return Err(RealServerError::NothingToUndo(path));
    }
    let steps = load_record(&path)?;
    let failed: Vec<(Step, String)> = steps
        .iter()
        .rev()
        .filter_map(|step| {
            undo(step)
                .err()
                .map(|e| (step.clone(), format!("{step}: {e}")))
        })
        .collect();
    if !failed.is_empty() {
        // Keep only what is still to undo, so a second teardown can finish.
        let mut left: Vec<Step> = failed.iter().map(|(step, _)| step.clone()).collect();
        left.reverse();
        save_record(&path, &left)?;
        let detail: Vec<String> = failed.into_iter().map(|(_, why)| why).collect();
        return Err(RealServerError::Record {
            op: "undoing",
            path,
            detail: detail.join("; "),
        });
    }
    std::fs::remove_file(&path).map_err(|e| RealServerError::Record {
        op: "removing",
        path: path.clone(),
        detail: e.to_string(),
    })?;
    Ok(steps)
}

/// What `setup` has recorded in this network namespace.
pub fn status() -> Result<Vec<Step>, RealServerError> {
    load_record(&record_path(netconf::netns_id()?))
}

/// Undo in reverse order; returns what could not be undone.
fn undo_all(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .rev()
        .filter_map(|step| undo(step).err().map(|e| format!("{step}: {e}")))
        .collect()
}

fn undo(step: &Step) -> Result<(), RealServerError> {
    match step {
        Step::Address { dev, addr } => netconf::remove_address(dev, *addr, host_prefix(*addr))?,
        Step::Sysctl { path, previous } => netconf::write_sysctl(path, previous)?,
        Step::XdpDecap { iface, mode } => StandaloneXdp::detach_persistent(iface, *mode)?,
        Step::LinkUp { dev } => netconf::link_down(dev)?,
    }
    Ok(())
}
