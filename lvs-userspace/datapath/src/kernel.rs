//! The real datapath: the embedded XDP object, attached to interfaces, and
//! its maps. Each error names the map or interface and the failing call.

use std::marker::PhantomData;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use aya::{
    maps::{
        xdp::DevMapHash, Array, HashMap, MapData, MapError, PerCpuArray, PerCpuValues,
        ProgramArray, RingBuf,
    },
    programs::{
        tc::{
            qdisc_add_clsact, qdisc_detach_program, NlOptions, SchedClassifierLink, TcAttachOptions,
        },
        SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf, EbpfLoader,
};
use lvs_common::{
    addr::{Addr, In6},
    tcp_state::STATE_COUNT,
    Conn, ConnChange, ConnCounts, Counters, Event, FlowKey, HalfOpenTurn, IcmpCase, LocalityEntry,
    LocalityKey, NeighKey, NeighNote, NextHop, Real, ReplyKey, ReplyServices, Service, ServiceKey,
    Settings, Template, TemplateKey, Verdict,
};
use serde::{Deserialize, Serialize};
use tokio::io::{unix::AsyncFd, Interest};

use crate::mapped::MappedArray;

use crate::{
    family::Family,
    standalone::{attach_by_netlink, netlink},
    ConnEntries, Datapath, DatapathError, Limits, LocalAddresses, Notice, ResolvedHop,
    TablePosition, XdpAttachMode,
};

/// The compiled `lvs-ebpf` object (built by this crate's build script).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("LVS_EBPF_OBJECT"));

const DIRECTOR: &str = "lvs_director";
const DIRECTOR_TC: &str = "lvs_director_tc";
const NEIGH: &str = "lvs_neigh";

/// The programs the directors tail-call, each in its program array's slot
/// (`(array, slot, program, xdp)`; one array holds programs of one type):
/// ICMP errors, and the IPv6 path's stages (lvs-ebpf's `decision::Stage`).
const TAIL_CALLED: [(&str, u32, &str, bool); 21] = [
    ("ICMP_ERROR_XDP", 0, "lvs_icmp_error", true),
    ("ICMP_ERROR_TC", 0, "lvs_icmp_error_tc", false),
    ("DIRECTOR6_XDP", 0, "lvs_director6", true),
    ("DIRECTOR6_XDP", 1, "lvs_new_flow6", true),
    ("DIRECTOR6_XDP", 2, "lvs_send6", true),
    ("DIRECTOR6_XDP", 3, "lvs_reply6", true),
    ("DIRECTOR6_XDP", 4, "lvs_tunnel6", true),
    ("DIRECTOR6_XDP", 5, "lvs_too_big6", true),
    ("DIRECTOR6_XDP", 6, "lvs_icmp_error6", true),
    ("DIRECTOR6_XDP", 7, "lvs_icmp_translate6", true),
    ("DIRECTOR6_XDP", 8, "lvs_tunnel46", true),
    ("DIRECTOR6_XDP", 9, "lvs_tunnel64", true),
    ("DIRECTOR6_TC", 0, "lvs_director6_tc", false),
    ("DIRECTOR6_TC", 1, "lvs_new_flow6_tc", false),
    ("DIRECTOR6_TC", 2, "lvs_send6_tc", false),
    ("DIRECTOR6_TC", 3, "lvs_reply6_tc", false),
    ("DIRECTOR6_TC", 4, "lvs_tunnel6_tc", false),
    ("DIRECTOR6_TC", 6, "lvs_icmp_error6_tc", false),
    ("DIRECTOR6_TC", 7, "lvs_icmp_translate6_tc", false),
    ("DIRECTOR6_TC", 8, "lvs_tunnel46_tc", false),
    ("DIRECTOR6_TC", 9, "lvs_tunnel64_tc", false),
];

/// Which of the datapath's maps are a family's (see `Family`).
pub trait KernelFamily: Addr {
    fn services(d: &mut KernelDatapath) -> &mut HashMap<MapData, ServiceKey<Self>, Service<Self>>;
    fn reals(d: &mut KernelDatapath) -> &mut Array<MapData, Real<Self>>;
    fn conns(d: &KernelDatapath) -> &HashMap<MapData, FlowKey<Self>, Conn<Self>>;
    fn conns_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, FlowKey<Self>, Conn<Self>>;
    fn templates(d: &KernelDatapath) -> &HashMap<MapData, TemplateKey<Self>, Template>;
    fn locality(d: &KernelDatapath) -> &HashMap<MapData, LocalityKey<Self>, LocalityEntry>;
    fn locality_mut(
        d: &mut KernelDatapath,
    ) -> &mut HashMap<MapData, LocalityKey<Self>, LocalityEntry>;
    fn templates_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, TemplateKey<Self>, Template>;
}

impl KernelFamily for [u8; 4] {
    fn services(d: &mut KernelDatapath) -> &mut HashMap<MapData, ServiceKey, Service> {
        &mut d.services
    }
    fn reals(d: &mut KernelDatapath) -> &mut Array<MapData, Real> {
        &mut d.reals
    }
    fn conns(d: &KernelDatapath) -> &HashMap<MapData, FlowKey, Conn> {
        &d.conns
    }
    fn conns_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, FlowKey, Conn> {
        &mut d.conns
    }
    fn templates(d: &KernelDatapath) -> &HashMap<MapData, TemplateKey, Template> {
        &d.templates
    }
    fn locality(d: &KernelDatapath) -> &HashMap<MapData, LocalityKey, LocalityEntry> {
        &d.locality
    }
    fn locality_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, LocalityKey, LocalityEntry> {
        &mut d.locality
    }
    fn templates_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, TemplateKey, Template> {
        &mut d.templates
    }
}

impl KernelFamily for In6 {
    fn services(d: &mut KernelDatapath) -> &mut HashMap<MapData, ServiceKey<In6>, Service<In6>> {
        &mut d.services6
    }
    fn reals(d: &mut KernelDatapath) -> &mut Array<MapData, Real<In6>> {
        &mut d.reals6
    }
    fn conns(d: &KernelDatapath) -> &HashMap<MapData, FlowKey<In6>, Conn<In6>> {
        &d.conns6
    }
    fn conns_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, FlowKey<In6>, Conn<In6>> {
        &mut d.conns6
    }
    fn templates(d: &KernelDatapath) -> &HashMap<MapData, TemplateKey<In6>, Template> {
        &d.templates6
    }
    fn locality(d: &KernelDatapath) -> &HashMap<MapData, LocalityKey<In6>, LocalityEntry> {
        &d.locality6
    }
    fn locality_mut(
        d: &mut KernelDatapath,
    ) -> &mut HashMap<MapData, LocalityKey<In6>, LocalityEntry> {
        &mut d.locality6
    }
    fn templates_mut(d: &mut KernelDatapath) -> &mut HashMap<MapData, TemplateKey<In6>, Template> {
        &mut d.templates6
    }
}

/// One `BPF_PROG_TEST_RUN` outcome.
#[derive(Debug)]
pub struct TestRun {
    pub action: u32,
    pub frame: Vec<u8>,
    pub duration: std::time::Duration,
}

/// What the verifier made of one loaded program.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramStats {
    pub name: &'static str,
    /// Instructions after verification (the translated program's length).
    pub instructions: u32,
    /// Instructions the verifier processed while exploring every path.
    pub verified_instructions: u32,
    /// Size of the JIT-compiled program.
    pub jited_bytes: u32,
}

pub(super) fn program_stats(
    name: &'static str,
    info: Result<aya::programs::ProgramInfo, aya::programs::ProgramError>,
) -> Result<ProgramStats, DatapathError> {
    let info = info.map_err(|source| DatapathError::Program {
        program: name,
        source,
    })?;
    Ok(ProgramStats {
        name,
        instructions: info.size_translated().unwrap_or(0) / 8,
        verified_instructions: info.verified_instruction_count().unwrap_or(0),
        jited_bytes: info.size_jitted(),
    })
}

/// Which director an interface gets (`lvsd --datapath`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DatapathChoice {
    /// Native XDP where the driver has it, tc on virtual devices.
    #[default]
    Auto,
    /// XDP everywhere (native, else generic), as on a tuned lab or bench.
    Xdp,
    /// tc everywhere.
    Tc,
}

/// How the director ended up attached to one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    /// "xdp" or "tc".
    pub datapath: String,
    /// "native" or "generic" for XDP; "tcx" or "netlink" for tc.
    pub mode: String,
    /// Why this datapath.
    pub reason: String,
}

/// The director an interface gets, and why, before anything is attached.
fn choose(iface: &str, choice: DatapathChoice) -> (bool, String) {
    match choice {
        DatapathChoice::Xdp => (true, "--datapath xdp".into()),
        DatapathChoice::Tc => (false, "--datapath tc".into()),
        DatapathChoice::Auto => {
            let device = Path::new("/sys/class/net").join(iface).join("device");
            if device.exists() {
                (true, "a NIC driver: native XDP".into())
            } else {
                (
                    false,
                    "a virtual device (veth, bridge, ...): a frame sent on from XDP would be \
                     dropped by a peer without XDP, or lose a checksum left to offload"
                        .into(),
                )
            }
        }
    }
}

/// How long the director stays attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// As long as lvsd runs, however it ends (a bpf_link).
    Lvsd,
    /// Until lvsd detaches it on a clean exit: a killed lvsd leaves its
    /// datapath forwarding the connections it knows, as IPVS outlives a
    /// killed keepalived. The next lvsd replaces it. For routers of a pair,
    /// whose peer takes over without resetting what still reaches this one.
    Kernel,
}

/// Where an lvsd that attached for `Lifetime::Kernel` records its pid, per
/// network namespace and interface, so the next one can tell a leftover
/// from a live owner.
fn owner_record(ifindex: u32) -> Result<PathBuf, DatapathError> {
    let netns = crate::netconf::netns_id().map_err(|e| DatapathError::Record {
        call: "stat /proc/self/ns/net",
        path: "/proc/self/ns/net".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(Path::new("/run/lvs").join(format!("director-{netns}-{ifindex}.pid")))
}

/// The pid recorded for `ifindex`, if that process still runs.
fn live_owner(path: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
    (alive && pid != std::process::id() as i32).then_some(pid)
}

/// Attach the director by netlink, outliving lvsd. A program left by an
/// lvsd that died (its record names a dead pid) is replaced; any other
/// program, or a live owner, is refused.
fn attach_kept(program: &Xdp, iface: &str, ifindex: u32) -> Result<XdpAttachMode, DatapathError> {
    use std::os::fd::{AsFd, AsRawFd};
    let record = owner_record(ifindex)?;
    if let Some(pid) = live_owner(&record) {
        return Err(DatapathError::InUse {
            iface: iface.to_string(),
            pid,
            record: record.display().to_string(),
        });
    }
    let leftover = record.exists();
    let fd = program
        .fd()
        .map_err(|source| DatapathError::Program {
            program: DIRECTOR,
            source,
        })?
        .as_fd()
        .as_raw_fd();
    let mode = attach_by_netlink(iface, ifindex, fd, leftover)?;
    write_owner_record(&record)?;
    Ok(mode)
}

fn classifier<'a>(
    ebpf: &'a mut Ebpf,
    program: &'static str,
) -> Result<&'a mut SchedClassifier, DatapathError> {
    ebpf.program_mut(program)
        .ok_or(DatapathError::MissingProgram { program })?
        .try_into()
        .map_err(|source| DatapathError::Program { program, source })
}

/// Attach the XDP director; `None` when `--datapath auto` finds no native
/// XDP (the interface then gets the tc director, not generic XDP, which
/// would have the same faults on a virtual device).
fn attach_xdp(
    program: &mut Xdp,
    iface: &str,
    ifindex: u32,
    lifetime: Lifetime,
    choice: DatapathChoice,
    kept: &mut Vec<(u32, XdpAttachMode)>,
) -> Result<Option<&'static str>, DatapathError> {
    if lifetime == Lifetime::Kernel {
        let mode = attach_kept(program, iface, ifindex)?;
        kept.push((ifindex, mode));
        return Ok(match mode {
            XdpAttachMode::Native => Some("native"),
            XdpAttachMode::Generic if choice == DatapathChoice::Auto => {
                detach_kept(&mut vec![kept.pop().expect("pushed above")]);
                None
            }
            XdpAttachMode::Generic => Some("generic"),
        });
    }
    if program.attach(iface, XdpMode::Driver).is_ok() {
        return Ok(Some("native"));
    }
    if choice == DatapathChoice::Auto {
        return Ok(None);
    }
    program
        .attach(iface, XdpMode::Skb)
        .map_err(|source| DatapathError::Attach {
            iface: iface.to_string(),
            source,
        })?;
    Ok(Some("generic"))
}

/// A tc director attached by netlink for `Lifetime::Kernel`: it outlives a
/// killed lvsd; dropping this (a clean exit) detaches it and its record.
pub struct KeptTc {
    link: Option<SchedClassifierLink>,
    ifindex: u32,
}

impl Drop for KeptTc {
    fn drop(&mut self) {
        drop(self.link.take());
        if let Ok(record) = owner_record(self.ifindex) {
            let _ = std::fs::remove_file(record);
        }
    }
}

/// Attach the tc director on ingress: a tcx link that lives as long as
/// lvsd, or for `Lifetime::Kernel` a netlink filter that outlives it,
/// replacing one a dead lvsd left.
fn attach_tc(
    ebpf: &mut Ebpf,
    iface: &str,
    ifindex: u32,
    lifetime: Lifetime,
) -> Result<(Option<KeptTc>, &'static str), DatapathError> {
    let tc_err = |source| DatapathError::TcAttach {
        program: DIRECTOR_TC,
        iface: iface.to_string(),
        source,
    };
    if tc_director_on(iface) {
        return Err(DatapathError::TcBusy {
            iface: iface.to_string(),
        });
    }
    let program = classifier(ebpf, DIRECTOR_TC)?;
    if lifetime == Lifetime::Lvsd {
        program
            .attach(iface, TcAttachType::Ingress)
            .map_err(tc_err)?;
        return Ok((None, "tcx"));
    }
    let record = owner_record(ifindex)?;
    if let Some(pid) = live_owner(&record) {
        return Err(DatapathError::InUse {
            iface: iface.to_string(),
            pid,
            record: record.display().to_string(),
        });
    }
    // A director an lvsd that is gone left: ours goes in first, at a
    // lower priority number (so it runs first), then that one is removed:
    // no packet meets no director.
    let leftover = if record.exists() {
        director_tc_prefs(iface)
    } else {
        Vec::new()
    };
    let priority = leftover
        .iter()
        .min()
        .map_or(0, |p| p.saturating_sub(1).max(1));
    // Already there is fine.
    let _ = qdisc_add_clsact(iface);
    let id = program
        .attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::Netlink(NlOptions {
                priority,
                ..NlOptions::default()
            }),
        )
        .map_err(tc_err)?;
    let link = program.take_link(id).map_err(tc_err)?;
    for pref in leftover {
        let removed = std::process::Command::new("tc")
            .args([
                "filter",
                "del",
                "dev",
                iface,
                "ingress",
                "pref",
                &pref.to_string(),
            ])
            .status();
        if !removed.is_ok_and(|s| s.success()) {
            tracing::warn!(%iface, pref, "removing the tc director an earlier lvsd left: `tc filter del` failed");
        }
    }
    let kept = KeptTc {
        link: Some(link),
        ifindex,
    };
    write_owner_record(&record)?;
    Ok((Some(kept), "netlink"))
}

/// The priorities of the netlink tc filters running the director on
/// `iface`'s ingress (`tc -j filter show`).
fn director_tc_prefs(iface: &str) -> Vec<u16> {
    let Ok(out) = std::process::Command::new("tc")
        .args(["-j", "filter", "show", "dev", iface, "ingress"])
        .output()
    else {
        return Vec::new();
    };
    let filters: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let mut prefs: Vec<u16> = filters
        .iter()
        .filter(|f| f["options"]["bpf_name"].as_str() == Some(DIRECTOR_TC))
        .filter_map(|f| u16::try_from(f["pref"].as_u64()?).ok())
        .collect();
    prefs.dedup();
    prefs
}

/// Whether an lvs tc director runs on `iface`'s ingress already (tcx):
/// unlike native XDP, tcx would let a second one in beside it.
fn tc_director_on(iface: &str) -> bool {
    SchedClassifier::query_tcx(iface, TcAttachType::Ingress).is_ok_and(|(_, programs)| {
        programs
            .iter()
            .any(|p| p.name_as_str() == Some(DIRECTOR_TC))
    })
}

/// Whether an lvs director (XDP, or tc ingress) runs on `iface`.
pub fn director_attached(iface: &str) -> Result<bool, DatapathError> {
    let shown = std::process::Command::new("ip")
        .args(["-o", "link", "show", "dev", iface])
        .output()
        .map_err(|source| DatapathError::Netlink {
            iface: iface.to_string(),
            call: "ip link show",
            source,
        })?;
    if !shown.status.success() {
        return Err(DatapathError::NoInterface {
            iface: iface.to_string(),
            call: "ip link show",
            source: std::io::Error::other(
                String::from_utf8_lossy(&shown.stderr).trim().to_string(),
            ),
        });
    }
    let xdp = String::from_utf8_lossy(&shown.stdout).contains(" xdp");
    Ok(xdp || tc_director_on(iface))
}

/// Where a stopping lvsd records, beside the tables pinned in `pins`,
/// what the next one needs to take them over:
/// `/run/lvs/handover-<pin directory's name>.json`.
pub fn handover_record(pins: &Path) -> PathBuf {
    let name = pins
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Path::new("/run/lvs").join(format!("handover-{name}.json"))
}

/// `lvsd --clean`: remove what lvsds of this network namespace left
/// forwarding (a clean stop hands the datapath over; a killed lvsd leaves
/// it): the director on each interface they recorded, their pins and
/// records. Refused while an lvsd runs here. Returns what it removed, a
/// line each.
pub fn clean(bpffs: &Path) -> Result<Vec<String>, DatapathError> {
    let netns = crate::netconf::netns_id().map_err(|e| DatapathError::Record {
        call: "stat /proc/self/ns/net",
        path: "/proc/self/ns/net".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let run = Path::new("/run/lvs");
    let ours = |name: &str, prefix: &str, suffix: &str| -> Option<String> {
        name.strip_prefix(&format!("{prefix}-{netns}-"))?
            .strip_suffix(suffix)
            .map(str::to_string)
    };
    let listed = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let records: Vec<(PathBuf, u32)> = listed(run)
        .into_iter()
        .filter_map(|name| {
            let ifindex = ours(&name, "director", ".pid")?.parse().ok()?;
            Some((run.join(name), ifindex))
        })
        .collect();
    for (record, ifindex) in &records {
        if let Some(pid) = live_owner(record) {
            return Err(DatapathError::InUse {
                iface: nix::net::if_::if_indextoname(*ifindex)
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|_| ifindex.to_string()),
                pid,
                record: record.display().to_string(),
            });
        }
    }
    let mut done = Vec::new();
    for (record, ifindex) in records {
        if let Ok(name) = nix::net::if_::if_indextoname(ifindex) {
            let iface = name.to_string_lossy().into_owned();
            let xdp = [XdpAttachMode::Native, XdpAttachMode::Generic]
                .into_iter()
                .any(|mode| netlink::set_xdp(ifindex, -1, mode).is_ok());
            let tc = qdisc_detach_program(&iface, TcAttachType::Ingress, DIRECTOR_TC).is_ok();
            if xdp || tc {
                done.push(format!("detached the director from {iface}"));
            }
        }
        let _ = std::fs::remove_file(&record);
    }
    for dir in dead_pin_dirs_under(&bpffs.join("lvs"), &format!("director-{netns}")) {
        unpin(&dir);
        let _ = std::fs::remove_file(handover_record(&dir));
        done.push(format!("removed the tables pinned in {}", dir.display()));
    }
    Ok(done)
}

fn write_owner_record(record: &Path) -> Result<(), DatapathError> {
    let write = || -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create("/run/lvs")?;
        std::fs::write(record, std::process::id().to_string())
    };
    write().map_err(|source| DatapathError::Record {
        call: "write",
        path: record.display().to_string(),
        source,
    })
}

/// An interface `load_for` planned and `attach_interfaces` attaches.
struct Pending {
    iface: String,
    ifindex: u32,
    /// XDP, or the tc director.
    xdp: bool,
    reason: String,
}

pub struct KernelDatapath {
    /// Owns the program and its links: dropping it detaches everywhere.
    ebpf: Ebpf,
    /// Netlink attachments (`Lifetime::Kernel`), detached on drop.
    kept: Vec<(u32, XdpAttachMode)>,
    /// tc attachments taken out of aya's keeping (`Lifetime::Kernel`):
    /// dropped (detached) with the datapath, left behind by a killed lvsd.
    _tc_kept: Vec<KeptTc>,
    /// `EGRESS`: the XDP interfaces a frame may leave by.
    egress: DevMapHash<MapData>,
    /// Interfaces loaded for but not attached yet (`attach_interfaces`).
    pending: Vec<Pending>,
    lifetime: Lifetime,
    choice: DatapathChoice,
    next_hops: HashMap<MapData, [u8; 4], NextHop>,
    next_hops6: HashMap<MapData, In6, NextHop<In6>>,
    reply_services: HashMap<MapData, ReplyKey, ReplyServices>,
    local: LocalAddresses,
    services: HashMap<MapData, ServiceKey, Service>,
    services6: HashMap<MapData, ServiceKey<In6>, Service<In6>>,
    rings: MappedArray,
    buckets: MappedArray,
    maglev: MappedArray,
    locality: HashMap<MapData, LocalityKey, LocalityEntry>,
    locality6: HashMap<MapData, LocalityKey<In6>, LocalityEntry>,
    templates: HashMap<MapData, TemplateKey, Template>,
    templates6: HashMap<MapData, TemplateKey<In6>, Template>,
    events: RingBuf<MapData>,
    events6: RingBuf<MapData>,
    cursors: MappedArray,
    reals: Array<MapData, Real>,
    reals6: Array<MapData, Real<In6>>,
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
    verdicts: PerCpuArray<MapData, u64>,
    half_open_evicted: PerCpuArray<MapData, u64>,
    icmp_errors: PerCpuArray<MapData, u64>,
    /// Held so that their entries stay: the kernel empties a program
    /// array once no process holds it.
    _tail_called: TailCalled,
    conns: HashMap<MapData, FlowKey, Conn>,
    conns6: HashMap<MapData, FlowKey<In6>, Conn<In6>>,
    real_conns: PerCpuArray<MapData, ConnCounts>,
    /// lvsd's own share of `REAL_CONNS`: the counts of the entries it
    /// added or removed (sync, the sweeper), by real index.
    own_counts: Vec<ConnCounts>,
    relevant: MappedArray,
    egress_generation: Array<MapData, u32>,
    neigh_notes: HashMap<MapData, NeighKey, NeighNote>,
    timeouts: Array<MapData, u32>,
    floating: HashMap<MapData, [u8; 4], u8>,
    floating6: HashMap<MapData, In6, u8>,
    /// Until handed to the task that refreshes it (`liveness`).
    liveness: Option<Array<MapData, u64>>,
    /// Until handed to the task that syncs them (`conn_changes`).
    conn_changes: Option<RingBuf<MapData>>,
    conn_changes6: Option<RingBuf<MapData>>,
    cpus: usize,
    limits: Limits,
    settings: Settings,
    /// `lvsd --announce`: the device holding the VIPs to announce.
    announcer: Option<crate::announce::Announcer>,
    pub attachments: Vec<Attachment>,
}

/// Every notice waiting in a family's `EVENTS` ring.
fn drained<A: Family>(ring: &mut RingBuf<MapData>) -> Vec<Notice> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<Event<A>>() {
            // SAFETY: the datapath writes whole `Event`s; read unaligned.
            let event = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event<A>>()) };
            events.push(event.into());
        }
    }
    events
}

/// The datapath's record of each new connection of family `A`
/// (`CONN_CHANGES`, `CONN_CHANGES6`).
pub struct ConnChanges<A: Family = [u8; 4]>(AsyncFd<RingBuf<MapData>>, PhantomData<A>);

impl<A: Family> ConnChanges<A> {
    /// Wait for records, then take every one waiting: (inbound key, entry).
    pub async fn next(&mut self) -> std::io::Result<ConnEntries<A>> {
        loop {
            let mut ready = self.0.readable_mut().await?;
            // Cleared before draining: a record queued meanwhile wakes us.
            ready.clear_ready();
            let ring = ready.get_inner_mut();
            let mut flows = Vec::new();
            while let Some(item) = ring.next() {
                if item.len() >= size_of::<ConnChange<A>>() {
                    // SAFETY: the datapath writes whole `ConnChange`s; read unaligned.
                    let flow =
                        unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<ConnChange<A>>()) };
                    flows.push((flow.key, flow.conn));
                }
            }
            if !flows.is_empty() {
                return Ok(flows);
            }
        }
    }
}

/// lvsd's liveness stamp for the datapath (a router of a pair): a deadline
/// that lvsd keeps pushing forward. Once it passes, the datapath takes no
/// new connections and lets ARP for the floating addresses go unanswered.
pub struct Liveness(Array<MapData, u64>);

impl Liveness {
    /// Alive for `grace` from now.
    pub fn refresh(&mut self, grace: std::time::Duration) -> Result<(), DatapathError> {
        let deadline = monotonic_ns()? + grace.as_nanos() as u64;
        self.0
            .set(0, deadline, 0)
            .map_err(map_err("bpf_map_update_elem", "LIVENESS"))
    }
}

fn take(ebpf: &mut Ebpf, map: &'static str) -> Result<aya::maps::Map, DatapathError> {
    ebpf.take_map(map).ok_or(DatapathError::MissingMap { map })
}

macro_rules! typed {
    ($ebpf:expr, $ty:ty, $name:expr) => {
        <$ty>::try_from(take($ebpf, $name)?).map_err(|source| DatapathError::Map {
            op: "open",
            map: $name,
            source,
        })?
    };
}

/// Load the programs the directors tail-call and put each in its slot,
/// pinning the arrays beside the maps `kept` pinned.
fn tail_called(ebpf: &mut Ebpf, mut kept: TailCalled) -> Result<TailCalled, DatapathError> {
    for (_, _, program, xdp) in TAIL_CALLED {
        if xdp {
            let loaded: &mut Xdp = ebpf
                .program_mut(program)
                .ok_or(DatapathError::MissingProgram { program })?
                .try_into()
                .map_err(|source| DatapathError::Program { program, source })?;
            loaded.load()
        } else {
            classifier(ebpf, program)?.load()
        }
        .map_err(|source| DatapathError::Program { program, source })?;
    }
    for (name, slot, program, _) in TAIL_CALLED {
        if !kept.arrays.iter().any(|(taken, _)| *taken == name) {
            let map = take(ebpf, name)?;
            kept.pin(name, &map);
            let array = ProgramArray::try_from(map).map_err(|source| DatapathError::Map {
                op: "open",
                map: name,
                source,
            })?;
            kept.arrays.push((name, array));
        }
        let array = kept
            .arrays
            .iter_mut()
            .find_map(|(taken, array)| (*taken == name).then_some(array))
            .expect("taken above");
        let fd = ebpf
            .program(program)
            .ok_or(DatapathError::MissingProgram { program })?
            .fd()
            .map_err(|source| DatapathError::Program { program, source })?;
        array
            .set(slot, fd, 0)
            .map_err(map_err("bpf_map_update_elem", name))?;
    }
    Ok(kept)
}

/// The program arrays of `TAIL_CALLED`, kept: the kernel empties one when
/// the last reference from user space goes, and the IPv6 path and ICMP
/// errors would stop. lvsd holds them; a datapath that outlives lvsd
/// (`Lifetime::Kernel`) also pins them in bpffs, in a directory of this
/// lvsd's own (`pin_dir`), unpinned on a clean exit. The next lvsd removes
/// what a killed one left, once it has replaced its datapath.
/// (`ip netns exec` mounts a fresh /sys, without the host's bpffs: lvsd run
/// that way needs `--bpffs` pointing at a bpffs mounted elsewhere.)
struct TailCalled {
    arrays: Vec<(&'static str, ProgramArray<MapData>)>,
    pinned: Option<PathBuf>,
}

impl TailCalled {
    /// Nothing held yet; pins go under the bpffs `pins`, if given (and a
    /// bpffs).
    fn pinned_under(pins: Option<&Path>) -> Result<Self, DatapathError> {
        Ok(Self {
            arrays: Vec::new(),
            pinned: match pins.map(|bpffs| (is_bpffs(bpffs), bpffs)) {
                Some((Ok(()), bpffs)) => Some(pin_dir(bpffs)?),
                Some((Err(e), _)) => {
                    tracing::warn!("{e}: {UNPINNED}");
                    None
                }
                None => None,
            },
        })
    }

    /// Pin `map` as `name`; if that fails, nothing stays pinned (a warning
    /// says what it costs).
    fn pin(&mut self, name: &str, map: &aya::maps::Map) {
        let Some(dir) = &self.pinned else {
            return;
        };
        let pinned = std::fs::create_dir_all(dir)
            .map_err(|e| e.to_string())
            .and_then(|()| map.pin(dir.join(name)).map_err(|e| e.to_string()));
        if let Err(e) = pinned {
            tracing::warn!(dir = %dir.display(), "pinning {name}: {e}: {UNPINNED}");
            unpin(dir);
            self.pinned = None;
        }
    }
}

impl Drop for TailCalled {
    fn drop(&mut self) {
        if let Some(dir) = &self.pinned {
            unpin(dir);
        }
    }
}

const UNPINNED: &str = "if lvsd dies, its datapath stops forwarding IPv6 and ICMP errors, \
     and its kernel goes on answering neighbour solicitations for the floating IPv6 addresses \
     (see lvsd --bpffs)";

/// Whether `path` is a bpffs mount.
pub fn is_bpffs(path: &Path) -> Result<(), String> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let fs =
        nix::sys::statfs::statfs(path).map_err(|e| format!("statfs {}: {e}", path.display()))?;
    if fs.filesystem_type().0 as i64 != BPF_FS_MAGIC {
        return Err(format!(
            "{} is not a bpffs (mount -t bpf bpf {})",
            path.display(),
            path.display()
        ));
    }
    Ok(())
}

/// This lvsd's pins under the bpffs `bpffs`:
/// `<bpffs>/lvs/director-<netns>-<pid>`.
fn pin_dir(bpffs: &Path) -> Result<PathBuf, DatapathError> {
    let netns = crate::netconf::netns_id().map_err(|e| DatapathError::Record {
        call: "stat /proc/self/ns/net",
        path: "/proc/self/ns/net".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(bpffs
        .join("lvs")
        .join(format!("director-{netns}-{}", std::process::id())))
}

fn unpin(dir: &Path) {
    for (name, ..) in TAIL_CALLED {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for name in HANDED_OVER {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

/// The maps a datapath that outlives lvsd pins beside its program arrays,
/// for the next lvsd to take its connections, templates and counters
/// from (`Previous`).
const HANDED_OVER: [&str; 10] = [
    "CONNS",
    "CONNS6",
    "TEMPLATES",
    "TEMPLATES6",
    "SERVICES",
    "SERVICES6",
    "REALS",
    "REALS6",
    "SERVICE_STATS",
    "REAL_STATS",
];

/// The pin directories of lvsds of this namespace that are gone, beside
/// `own` (this lvsd's).
fn dead_pin_dirs(own: &Path) -> Vec<PathBuf> {
    let (Some(root), Some(name)) = (own.parent(), own.file_name()) else {
        return Vec::new();
    };
    let name = name.to_string_lossy();
    let Some((prefix, _)) = name.rsplit_once('-') else {
        return Vec::new();
    };
    dead_pin_dirs_under(root, prefix)
}

/// The directories `<prefix>-<pid>` under `root` whose lvsd is gone.
fn dead_pin_dirs_under(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&format!("{prefix}-"))
                .and_then(|pid| pid.parse::<i32>().ok())
                .is_some_and(|pid| {
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                        == Err(nix::errno::Errno::ESRCH)
                })
        })
        .map(|entry| entry.path())
        .collect()
}

/// An mmapable array of the object, mapped (see `mapped.rs`).
fn mapped(ebpf: &mut Ebpf, name: &'static str) -> Result<MappedArray, DatapathError> {
    let data = match take(ebpf, name)? {
        aya::maps::Map::Array(data) => data,
        _ => return Err(DatapathError::MissingMap { map: name }),
    };
    let entries = data
        .info()
        .map_err(|source| DatapathError::Map {
            op: "BPF_OBJ_GET_INFO_BY_FD",
            map: name,
            source,
        })?
        .max_entries();
    MappedArray::new(data, entries, name)
}

impl KernelDatapath {
    /// Load the object and attach the XDP director to every interface,
    /// native mode first, generic as the fallback, with `lvs_neigh` on tc
    /// ingress beside it, the tables sized by `limits`. Nothing stays
    /// attached on error. (Fixtures and the bench; lvsd uses `attach_for`.)
    pub fn attach(
        ifaces: &[String],
        settings: Settings,
        limits: Limits,
    ) -> Result<Self, DatapathError> {
        Self::attach_for(
            ifaces,
            settings,
            limits,
            Lifetime::Lvsd,
            DatapathChoice::Xdp,
            None,
        )
    }

    /// As `attach`, choosing how long the director stays attached and which
    /// director each interface gets: XDP (with `lvs_neigh` beside it) or the
    /// same director on tc ingress (`lvs_director_tc`). A director that
    /// outlives lvsd pins its program arrays under the bpffs `pins`.
    pub fn attach_for(
        ifaces: &[String],
        settings: Settings,
        limits: Limits,
        lifetime: Lifetime,
        choice: DatapathChoice,
        pins: Option<&Path>,
    ) -> Result<Self, DatapathError> {
        let mut datapath = Self::load_for(ifaces, settings, limits, lifetime, choice, pins)?;
        datapath.attach_interfaces()?;
        datapath.forget_the_dead();
        Ok(datapath)
    }

    /// The first half of `attach_for`: the object loaded, its maps ready
    /// to be written, nothing attached yet (a restarting lvsd fills the
    /// maps with what the previous one left before it takes over).
    pub fn load_for(
        ifaces: &[String],
        settings: Settings,
        limits: Limits,
        lifetime: Lifetime,
        choice: DatapathChoice,
        pins: Option<&Path>,
    ) -> Result<Self, DatapathError> {
        let limits = limits.check()?;
        let ifindexes = ifaces
            .iter()
            .map(|iface| {
                nix::net::if_::if_nametoindex(iface.as_str()).map_err(|e| {
                    DatapathError::NoInterface {
                        iface: iface.clone(),
                        call: "if_nametoindex",
                        source: e.into(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cpus =
            aya::util::nr_cpus().map_err(|(call, source)| DatapathError::Cpus { call, source })?;
        let mut loader = EbpfLoader::new();
        for (map, entries) in limits.map_sizes() {
            loader.map_max_entries(map, entries);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        let pins = match (lifetime, pins) {
            (Lifetime::Kernel, Some(bpffs)) => Some(bpffs),
            _ => None,
        };
        let mut kept_maps = TailCalled::pinned_under(pins)?;
        for name in HANDED_OVER {
            let map = ebpf
                .map(name)
                .ok_or(DatapathError::MissingMap { map: name })?;
            kept_maps.pin(name, map);
        }
        let egress: DevMapHash<MapData> = typed!(&mut ebpf, DevMapHash<MapData>, "EGRESS");
        let plan: Vec<(bool, String)> = ifaces.iter().map(|i| choose(i, choice)).collect();
        let services = typed!(&mut ebpf, HashMap<MapData, ServiceKey, Service>, "SERVICES");
        let services6 =
            typed!(&mut ebpf, HashMap<MapData, ServiceKey<In6>, Service<In6>>, "SERVICES6");
        let rings = mapped(&mut ebpf, "RINGS")?;
        let buckets = mapped(&mut ebpf, "BUCKETS")?;
        let maglev = mapped(&mut ebpf, "MAGLEV")?;
        let locality = typed!(&mut ebpf, HashMap<MapData, LocalityKey, LocalityEntry>, "LOCALITY");
        let locality6 =
            typed!(&mut ebpf, HashMap<MapData, LocalityKey<In6>, LocalityEntry>, "LOCALITY6");
        let templates = typed!(&mut ebpf, HashMap<MapData, TemplateKey, Template>, "TEMPLATES");
        let templates6 =
            typed!(&mut ebpf, HashMap<MapData, TemplateKey<In6>, Template>, "TEMPLATES6");
        let events = typed!(&mut ebpf, RingBuf<MapData>, "EVENTS");
        let events6 = typed!(&mut ebpf, RingBuf<MapData>, "EVENTS6");
        let cursors = mapped(&mut ebpf, "CURSORS")?;
        let reals = typed!(&mut ebpf, Array<MapData, Real>, "REALS");
        let reals6 = typed!(&mut ebpf, Array<MapData, Real<In6>>, "REALS6");
        let service_stats = typed!(&mut ebpf, PerCpuArray<MapData, Counters>, "SERVICE_STATS");
        let real_stats = typed!(&mut ebpf, PerCpuArray<MapData, Counters>, "REAL_STATS");
        let verdicts = typed!(&mut ebpf, PerCpuArray<MapData, u64>, "VERDICTS");
        let half_open_evicted = typed!(&mut ebpf, PerCpuArray<MapData, u64>, "HALF_OPEN_EVICTED");
        let icmp_errors = typed!(&mut ebpf, PerCpuArray<MapData, u64>, "ICMP_ERRORS");
        let mut half_open_turn = typed!(&mut ebpf, Array<MapData, HalfOpenTurn>, "HALF_OPEN_TURN");
        half_open_turn
            .set(
                0,
                HalfOpenTurn::with_slots(lvs_common::half_open_slots(limits.connections)),
                0,
            )
            .map_err(map_err("bpf_map_update_elem", "HALF_OPEN_TURN"))?;
        let conns = typed!(&mut ebpf, HashMap<MapData, FlowKey, Conn>, "CONNS");
        let conns6 = typed!(&mut ebpf, HashMap<MapData, FlowKey<In6>, Conn<In6>>, "CONNS6");
        let real_conns = typed!(&mut ebpf, PerCpuArray<MapData, ConnCounts>, "REAL_CONNS");
        let relevant = mapped(&mut ebpf, "RELEVANT")?;
        let mut egress_generation = typed!(&mut ebpf, Array<MapData, u32>, "EGRESS_GENERATION");
        // From the first packet on, the way to each real server is cached.
        egress_generation
            .set(0, 1, 0)
            .map_err(map_err("bpf_map_update_elem", "EGRESS_GENERATION"))?;
        let neigh_notes = typed!(&mut ebpf, HashMap<MapData, NeighKey, NeighNote>, "NEIGH_NOTES");
        let mut timeouts = typed!(&mut ebpf, Array<MapData, u32>, "TIMEOUTS");
        // Written before anything is attached: a zero timeout kills every entry.
        for (state, seconds) in lvs_common::tcp_state::DEFAULT_TIMEOUTS.iter().enumerate() {
            timeouts
                .set(state as u32, seconds, 0)
                .map_err(map_err("bpf_map_update_elem", "TIMEOUTS"))?;
        }
        let mut settings_map = typed!(&mut ebpf, Array<MapData, Settings>, "SETTINGS");
        settings_map
            .set(0, settings, 0)
            .map_err(map_err("bpf_map_update_elem", "SETTINGS"))?;

        for program in [NEIGH, DIRECTOR_TC] {
            classifier(&mut ebpf, program)?
                .load()
                .map_err(|source| DatapathError::Program { program, source })?;
        }
        let tail_called = tail_called(&mut ebpf, kept_maps)?;
        let program: &mut Xdp = ebpf
            .program_mut(DIRECTOR)
            .ok_or(DatapathError::MissingProgram { program: DIRECTOR })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                program: DIRECTOR,
                source,
            })?;
        program.load().map_err(|source| DatapathError::Program {
            program: DIRECTOR,
            source,
        })?;

        let pending = ifaces
            .iter()
            .zip(&ifindexes)
            .zip(plan)
            .map(|((iface, &ifindex), (xdp, reason))| Pending {
                iface: iface.clone(),
                ifindex,
                xdp,
                reason,
            })
            .collect();
        // Taken maps must outlive the program loads that refer to them.
        drop(settings_map);
        let next_hops = typed!(&mut ebpf, HashMap<MapData, [u8; 4], NextHop>, "NEXT_HOPS");
        let next_hops6 = typed!(&mut ebpf, HashMap<MapData, In6, NextHop<In6>>, "NEXT_HOPS6");
        let reply_services =
            typed!(&mut ebpf, HashMap<MapData, ReplyKey, ReplyServices>, "REPLY_SERVICES");
        let floating = typed!(&mut ebpf, HashMap<MapData, [u8; 4], u8>, "FLOATING");
        let floating6 = typed!(&mut ebpf, HashMap<MapData, In6, u8>, "FLOATING6");
        let liveness = Some(typed!(&mut ebpf, Array<MapData, u64>, "LIVENESS"));
        let conn_changes = Some(typed!(&mut ebpf, RingBuf<MapData>, "CONN_CHANGES"));
        let conn_changes6 = Some(typed!(&mut ebpf, RingBuf<MapData>, "CONN_CHANGES6"));
        Ok(Self {
            ebpf,
            kept: Vec::new(),
            _tc_kept: Vec::new(),
            egress,
            pending,
            lifetime,
            choice,
            next_hops,
            next_hops6,
            reply_services,
            local: LocalAddresses::default(),
            services,
            services6,
            rings,
            buckets,
            maglev,
            locality,
            locality6,
            templates,
            templates6,
            events,
            events6,
            cursors,
            reals,
            reals6,
            service_stats,
            real_stats,
            verdicts,
            half_open_evicted,
            icmp_errors,
            _tail_called: tail_called,
            conns,
            conns6,
            real_conns,
            own_counts: Vec::new(),
            relevant,
            egress_generation,
            neigh_notes,
            timeouts,
            floating,
            floating6,
            liveness,
            conn_changes,
            conn_changes6,
            cpus,
            limits,
            settings,
            announcer: None,
            attachments: Vec::new(),
        })
    }

    /// The second half of `attach_for`: the director on every interface
    /// (replacing what an lvsd that is gone left there). An error leaves
    /// attached what was, for the datapath's drop to detach.
    pub fn attach_interfaces(&mut self) -> Result<(), DatapathError> {
        let (lifetime, choice) = (self.lifetime, self.choice);
        for Pending {
            iface,
            ifindex,
            mut xdp,
            mut reason,
        } in std::mem::take(&mut self.pending)
        {
            let iface = &iface;
            let ebpf = &mut self.ebpf;
            let mut mode = String::new();
            if xdp {
                let program: &mut Xdp = ebpf
                    .program_mut(DIRECTOR)
                    .expect("loaded above")
                    .try_into()
                    .expect("an XDP program");
                match attach_xdp(program, iface, ifindex, lifetime, choice, &mut self.kept)? {
                    Some(m) => mode = m.into(),
                    None => {
                        xdp = false;
                        reason = "no native XDP in its driver".into();
                    }
                }
            }
            if xdp {
                self.egress
                    .insert(ifindex, ifindex, None, 0)
                    .map_err(|source| DatapathError::Egress {
                        iface: iface.clone(),
                        source,
                    })?;
                // Frames XDP could not address go on through lvs_neigh.
                classifier(ebpf, NEIGH)?
                    .attach(iface, TcAttachType::Ingress)
                    .map_err(|source| DatapathError::TcAttach {
                        program: NEIGH,
                        iface: iface.clone(),
                        source,
                    })?;
            } else {
                let (link, how) = attach_tc(ebpf, iface, ifindex, lifetime)?;
                mode = how.into();
                if let Some(link) = link {
                    self._tc_kept.push(link);
                }
            }
            let datapath = if xdp { "xdp" } else { "tc" };
            tracing::info!(%iface, datapath, %mode, "director attached: {reason}");
            self.attachments.push(Attachment {
                iface: iface.clone(),
                ifindex,
                datapath: datapath.into(),
                mode,
                reason,
            });
        }
        Ok(())
    }

    /// Remove what lvsds of this namespace that are gone left pinned:
    /// their datapath was replaced by this one.
    pub fn forget_the_dead(&self) {
        if let Some(own) = &self._tail_called.pinned {
            for dir in dead_pin_dirs(own) {
                tracing::info!(dir = %dir.display(), "removing what an lvsd that is gone pinned");
                unpin(&dir);
            }
        }
    }

    /// The tables the last lvsd of this namespace that is gone left pinned
    /// (after a clean stop, or killed), if its datapath outlived it; read
    /// them before `attach_interfaces` replaces that datapath.
    ///
    /// Tables that cannot be read (another layout) are an error: the
    /// caller must not replace a datapath whose connections it cannot
    /// carry.
    pub fn previous(&self) -> Result<Option<crate::previous::Previous>, DatapathError> {
        let Some(own) = self._tail_called.pinned.as_ref() else {
            return Ok(None);
        };
        // The newest: the one whose datapath is attached now.
        let newest = dead_pin_dirs(own)
            .into_iter()
            .max_by_key(|d| std::fs::metadata(d).and_then(|m| m.modified()).ok());
        match newest {
            // An lvsd from before the tables were pinned left only its
            // program arrays: nothing to carry.
            Some(dir) if dir.join("CONNS").exists() => {
                crate::previous::Previous::open(&dir).map(Some)
            }
            _ => Ok(None),
        }
    }

    /// Where this datapath's tables are pinned, if they are.
    pub fn pin_dir(&self) -> Option<&Path> {
        self._tail_called.pinned.as_deref()
    }

    /// Whether this datapath can outlive lvsd and be taken over by the
    /// next: attached by netlink, its tables and program arrays pinned.
    pub fn can_hand_over(&self) -> bool {
        self.lifetime == Lifetime::Kernel && self._tail_called.pinned.is_some()
    }

    /// Leave the datapath forwarding when lvsd exits (as IPVS outlives
    /// ipvsadm): attachments, pins and owner records stay, for the next
    /// lvsd to take over (`previous`) or `lvsd --clean` to remove.
    pub fn hand_over(self) {
        std::mem::forget(self);
    }

    /// The liveness stamp, for the one task that refreshes it (once: later
    /// calls get `None`). Until its first refresh nothing is enforced.
    pub fn liveness(&mut self) -> Option<Liveness> {
        self.liveness.take().map(Liveness)
    }

    /// The new connections the datapath reports (with
    /// `Settings::SYNC_CHANGES`), IPv4's and IPv6's, for the one task that
    /// syncs them: registered with the calling task's tokio reactor. Once;
    /// later calls get `None`.
    pub fn conn_changes(&mut self) -> Option<std::io::Result<(ConnChanges, ConnChanges<In6>)>> {
        let (ring, ring6) = (self.conn_changes.take()?, self.conn_changes6.take()?);
        let register = |ring| -> std::io::Result<AsyncFd<RingBuf<MapData>>> {
            // SAFETY: the ring buffer's descriptor is owned by the AsyncFd
            // with it, and stays open and the same for the AsyncFd's
            // lifetime.
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(Into::into)
        };
        Some(register(ring).and_then(|v4| {
            Ok((
                ConnChanges(v4, PhantomData),
                ConnChanges(register(ring6)?, PhantomData),
            ))
        }))
    }

    /// The router pair's floating addresses, whose ARP requests (IPv6:
    /// neighbour solicitations) go unanswered once lvsd's liveness stamp
    /// runs out.
    pub fn set_floating(&mut self, addresses: &[IpAddr]) -> Result<(), DatapathError> {
        for a in addresses {
            match a {
                IpAddr::V4(a) => self
                    .floating
                    .insert(a.octets(), 1, 0)
                    .map_err(map_err("bpf_map_update_elem", "FLOATING"))?,
                IpAddr::V6(a) => self
                    .floating6
                    .insert(In6::from(*a), 1, 0)
                    .map_err(map_err("bpf_map_update_elem", "FLOATING6"))?,
            }
        }
        Ok(())
    }

    /// Run the director once on `frame` with `BPF_PROG_TEST_RUN`: the XDP
    /// action and the frame as the program left it. For fixtures and bench.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRun, DatapathError> {
        self.test_run_from(None, frame)
    }

    /// As `test_run`, as if the frame arrived on interface `ingress`
    /// (loopback when `None`).
    pub fn test_run_from(
        &self,
        ingress: Option<u32>,
        frame: &[u8],
    ) -> Result<TestRun, DatapathError> {
        let program: &Xdp = self
            .ebpf
            .program(DIRECTOR)
            .ok_or(DatapathError::MissingProgram { program: DIRECTOR })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                program: DIRECTOR,
                source,
            })?;
        test_run_xdp(program, ingress, frame)
    }

    /// As `test_run_from`, through the tc director (`lvs_director_tc`): the
    /// tc action and the packet as it left. The socket buffer arrives with
    /// its checksum unverified (`CHECKSUM_NONE`).
    pub fn test_run_tc(&self, ingress: u32, frame: &[u8]) -> Result<TestRun, DatapathError> {
        let program: &SchedClassifier = self
            .ebpf
            .program(DIRECTOR_TC)
            .ok_or(DatapathError::MissingProgram {
                program: DIRECTOR_TC,
            })?
            .try_into()
            .map_err(|source| DatapathError::Program {
                program: DIRECTOR_TC,
                source,
            })?;
        // struct __sk_buff (192 bytes): ingress_ifindex at 36, ifindex at 40.
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress.to_ne_bytes());
        ctx[40..44].copy_from_slice(&ingress.to_ne_bytes());
        test_run(program, Some(&ctx), frame)
    }

    /// Kernel memory charged for the connection table, in bytes: the
    /// `memlock` line of the map's `/proc/self/fdinfo` entry.
    pub fn conn_table_memory(&self) -> Result<u64, DatapathError> {
        use aya::maps::IterableMap;
        use std::os::fd::{AsFd, AsRawFd};
        let fd = self.conns.map().fd().as_fd().as_raw_fd();
        let path = format!("/proc/self/fdinfo/{fd}");
        let fdinfo = |source| DatapathError::Fdinfo {
            map: "CONNS",
            source,
        };
        let text = std::fs::read_to_string(&path).map_err(fdinfo)?;
        text.lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| fdinfo(std::io::Error::other(format!("no memlock line in {path}"))))
    }

    /// What the verifier made of the directors, the programs they
    /// tail-call and the tc program.
    pub fn program_stats(&self) -> Result<Vec<ProgramStats>, DatapathError> {
        [DIRECTOR, DIRECTOR_TC, NEIGH]
            .into_iter()
            .chain(TAIL_CALLED.iter().map(|(_, _, program, _)| *program))
            .map(|name| {
                let program = self
                    .ebpf
                    .program(name)
                    .ok_or(DatapathError::MissingProgram { program: name })?;
                program_stats(name, program.info())
            })
            .collect()
    }

    /// The `EVENTS` and `EVENTS6` ring buffers, registered with the tokio
    /// reactor of the calling task: readable when notices wait, for the
    /// daemon's event loop.
    pub fn watch_events(&self) -> std::io::Result<[AsyncFd<std::os::fd::OwnedFd>; 2]> {
        use std::os::fd::AsFd;
        let watch = |ring: &RingBuf<MapData>| -> std::io::Result<AsyncFd<std::os::fd::OwnedFd>> {
            let events = ring.as_fd().try_clone_to_owned()?;
            // SAFETY: the descriptor is a fresh dup that the AsyncFd owns; it
            // stays open, and refers to the same ring buffer, for its
            // lifetime.
            unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
                .map_err(Into::into)
        };
        Ok([watch(&self.events)?, watch(&self.events6)?])
    }

    fn zeroed<T: aya::Pod + Default>(&self) -> PerCpuValues<T> {
        PerCpuValues::try_from(vec![T::default(); self.cpus]).expect("one value per CPU")
    }

    /// `counters` on the first CPU, zero on the others: the sum is it.
    fn seeded(&self, counters: Counters) -> PerCpuValues<Counters> {
        let mut values = vec![Counters::default(); self.cpus];
        values[0] = counters;
        PerCpuValues::try_from(values).expect("one value per CPU")
    }
}

/// `BPF_PROG_TEST_RUN` of an XDP program. The output starts at the frame's
/// XDP metadata, if the program left any.
pub(super) fn test_run_xdp(
    program: &Xdp,
    ingress: Option<u32>,
    frame: &[u8],
) -> Result<TestRun, DatapathError> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex.
    let ctx: Option<Vec<u8>> = ingress.map(|ifindex| {
        [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    });
    test_run(program, ctx.as_deref(), frame)
}

/// One `BPF_PROG_TEST_RUN` with an optional context, with room in the output
/// for encapsulation growth.
fn test_run<P>(program: &P, ctx_in: Option<&[u8]>, frame: &[u8]) -> Result<TestRun, DatapathError>
where
    P: for<'a> aya::programs::TestRun<
        Opts<'a> = aya::programs::TestRunOptions<'a>,
        Result = aya::programs::TestRunResult,
    >,
{
    use aya::programs::TestRunOptions;
    let mut out = vec![0u8; frame.len() + 256];
    let result = program
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in,
            ..Default::default()
        })
        .map_err(|source| DatapathError::Program {
            program: "BPF_PROG_TEST_RUN",
            source,
        })?;
    out.truncate(result.data_size_out as usize);
    Ok(TestRun {
        action: result.return_value,
        frame: out,
        duration: result.duration,
    })
}

/// `union bpf_attr`'s `batch` member.
#[repr(C)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// One batch command (which aya does not wrap) on `attr`; `Ok(true)` when a
/// lookup reached the end of the map (`ENOENT`).
///
/// # Safety
/// `attr` must point at live buffers of `attr.count` keys and values of the
/// map's own types (`count` x CPUs values for a per-CPU map), and at live
/// position tokens.
unsafe fn batch(
    command: libc::c_long,
    attr: &mut BatchAttr,
    call: &'static str,
    map: &'static str,
) -> Result<bool, DatapathError> {
    // SAFETY: as the caller promises.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            attr as *mut BatchAttr,
            size_of::<BatchAttr>(),
        )
    };
    match rc {
        0 => Ok(false),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
            source => Err(DatapathError::Batch { call, map, source }),
        },
    }
}

/// Every entry of a hash map; an entry deleted while the walk passes it
/// is skipped, not an error.
pub(crate) fn entries<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
) -> Result<Vec<(K, V)>, DatapathError> {
    const CHUNK: usize = 4096;
    let mut position = TablePosition::default();
    let mut out = Vec::new();
    loop {
        out.extend(slice(map, name, &mut position, CHUNK)?);
        if position.at_start() {
            return Ok(out);
        }
    }
}

/// One `BPF_MAP_LOOKUP_BATCH` (which aya does not wrap) of up to `max`
/// entries from `position` (a bucket index, for hash maps): one syscall
/// per few thousand entries instead of two per entry. After the last
/// part, `position` is back at the start.
fn slice<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    name: &'static str,
    position: &mut TablePosition,
    max: usize,
) -> Result<Vec<(K, V)>, DatapathError> {
    use aya::maps::IterableMap;
    use std::os::fd::{AsFd, AsRawFd};
    let fd = map.map().fd().as_fd().as_raw_fd();
    // SAFETY: Pod types are valid for any bit pattern, zeroes included.
    let mut keys: Vec<K> = vec![unsafe { std::mem::zeroed() }; max];
    // SAFETY: as for the keys.
    let mut values: Vec<V> = vec![unsafe { std::mem::zeroed() }; max];
    let from = position.0;
    let mut next = 0u64;
    let mut attr = BatchAttr {
        in_batch: from.as_ref().map_or(0, |p| p as *const u64 as u64),
        out_batch: &mut next as *mut u64 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: max as u32,
        map_fd: fd as u32,
        elem_flags: 0,
        flags: 0,
    };
    // SAFETY: the attribute points at live buffers of `count` keys and
    // values of the map's own key and value types, and at the tokens.
    let last = unsafe {
        batch(
            BPF_MAP_LOOKUP_BATCH,
            &mut attr,
            "BPF_MAP_LOOKUP_BATCH",
            name,
        )?
    };
    *position = TablePosition(if last { None } else { Some(next) });
    let n = attr.count as usize;
    Ok(keys[..n]
        .iter()
        .copied()
        .zip(values[..n].iter().copied())
        .collect())
}

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (which aya's hash map does not wrap):
/// the entry as it was when it left, so that its count leaves with it.
fn take_entry<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<Option<V>, DatapathError> {
    use aya::maps::IterableMap;
    use std::os::fd::{AsFd, AsRawFd};
    const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
    /// `union bpf_attr`'s element member.
    #[repr(C)]
    struct ElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    // SAFETY: Pod types are valid for any bit pattern.
    let mut value: V = unsafe { std::mem::zeroed() };
    let mut attr = ElemAttr {
        map_fd: map.map().fd().as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: &mut value as *mut V as u64,
        flags: 0,
    };
    // SAFETY: the attribute points at a key and a value of the map's types.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            &mut attr as *mut ElemAttr,
            size_of::<ElemAttr>(),
        )
    };
    match rc {
        0 => Ok(Some(value)),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            source => Err(DatapathError::Batch {
                call: "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
                map: name,
                source,
            }),
        },
    }
}

/// Write `values` at `indexes` of an array map, in order, in one
/// `BPF_MAP_UPDATE_BATCH` (which aya does not wrap) rather than a syscall
/// per slot: a ring is 512 slots, and a 10,000-service apply writes 10,000.
fn update_batch<V: aya::Pod>(
    map: &MapData,
    indexes: &[u32],
    values: &[V],
    name: &'static str,
) -> Result<(), DatapathError> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = map.fd().as_fd().as_raw_fd();
    assert_eq!(indexes.len(), values.len(), "one index per value");
    let keys = indexes;
    let mut done = 0;
    while done < values.len() {
        let mut attr = BatchAttr {
            in_batch: 0,
            out_batch: 0,
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: (values.len() - done) as u32,
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the attribute points at live buffers of `count` keys (the
        // array's u32 index) and values of the map's value type.
        let ended = unsafe {
            batch(
                BPF_MAP_UPDATE_BATCH,
                &mut attr,
                "BPF_MAP_UPDATE_BATCH",
                name,
            )?
        };
        // The kernel reports how many it wrote; a short write goes on.
        match (ended, attr.count) {
            (false, written) if written > 0 => done += written as usize,
            (ended, _) => {
                let source = match ended {
                    true => std::io::Error::from_raw_os_error(libc::ENOENT),
                    false => std::io::Error::other("the kernel wrote no entry"),
                };
                return Err(DatapathError::Batch {
                    call: "BPF_MAP_UPDATE_BATCH",
                    map: name,
                    source,
                });
            }
        }
    }
    Ok(())
}

/// Delete a hash map entry; one already gone is not an error.
fn remove<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), DatapathError> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(e) => Err(map_err("bpf_map_delete_elem", name)(e)),
    }
}

pub(crate) fn map_err(
    op: &'static str,
    map: &'static str,
) -> impl FnOnce(MapError) -> DatapathError {
    move |source| DatapathError::Map { op, map, source }
}

impl KernelDatapath {
    /// Create the announcement device `iface` (`lvsd --announce`): from
    /// now on `announce` holds the servable VIPs on it.
    pub fn announce_on(&mut self, iface: &str) -> Result<(), DatapathError> {
        self.announcer = Some(crate::announce::Announcer::open(iface)?);
        Ok(())
    }

    /// Withdraw every announced VIP at once (a clean stop).
    pub fn withdraw_announcements(&mut self) -> Result<(), DatapathError> {
        self.announcer.as_mut().map_or(Ok(()), |a| a.withdraw())
    }

    /// The note the director left for `lvs_neigh` about the packet in
    /// `frame` (as the director passed it), if any.
    pub fn neighbour_note(&self, frame: &[u8]) -> Option<NeighNote> {
        self.neigh_notes.get(&NeighKey::of_frame(frame)?, 0).ok()
    }

    /// A NAT server's `REPLY_SERVICES` entry, if it has one.
    pub fn reply_services(&self, server: &ReplyKey) -> Option<ReplyServices> {
        self.reply_services.get(server, 0).ok()
    }

    /// Move the count an entry is in by `delta` (wrapping: `u32::MAX` is
    /// minus one) in lvsd's own share, as the datapath does in its CPU's
    /// share for the entries it adds.
    fn count<A: Addr>(&mut self, conn: &Conn<A>, delta: u32) {
        let Some((real, active)) = conn.counted_as() else {
            return;
        };
        let index = real as usize;
        if self.own_counts.len() <= index {
            self.own_counts.resize(index + 1, ConnCounts::default());
        }
        self.own_counts[index].move_by(active, delta);
    }
}

impl Datapath for KernelDatapath {
    fn limits(&self) -> Limits {
        self.limits
    }
    fn settings(&self) -> Settings {
        self.settings
    }
    fn set_service<A: Family>(
        &mut self,
        key: ServiceKey<A>,
        value: Service<A>,
    ) -> Result<(), DatapathError> {
        A::services(self).insert(key, value, 0).map_err(map_err(
            "bpf_map_update_elem",
            A::map_name("SERVICES", "SERVICES6"),
        ))
    }
    fn remove_service<A: Family>(&mut self, key: ServiceKey<A>) -> Result<(), DatapathError> {
        A::services(self).remove(&key).map_err(map_err(
            "bpf_map_delete_elem",
            A::map_name("SERVICES", "SERVICES6"),
        ))
    }
    fn set_real<A: Family>(&mut self, index: u32, real: Real<A>) -> Result<(), DatapathError> {
        A::reals(self).set(index, real, 0).map_err(map_err(
            "bpf_map_update_elem",
            A::map_name("REALS", "REALS6"),
        ))
    }
    fn set_reals<A: Family>(&mut self, entries: &[(u32, Real<A>)]) -> Result<(), DatapathError> {
        use aya::maps::IterableMap;
        let (indexes, reals): (Vec<u32>, Vec<Real<A>>) = entries.iter().copied().unzip();
        let name = A::map_name("REALS", "REALS6");
        update_batch(A::reals(self).map(), &indexes, &reals, name)
    }
    fn write_ring(&mut self, base: u32, picks: &[u32]) -> Result<(), DatapathError> {
        self.rings.write(base, picks)
    }
    fn write_buckets(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.buckets.write(base, table)
    }
    fn announce(&mut self, vips: &std::collections::BTreeSet<IpAddr>) -> Result<(), DatapathError> {
        match &mut self.announcer {
            Some(a) => a.hold(vips),
            None => Ok(()),
        }
    }
    fn write_maglev(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.maglev.write(base, table)
    }
    fn localities<A: Family>(&self) -> Result<Vec<(LocalityKey<A>, LocalityEntry)>, DatapathError> {
        entries(A::locality(self), A::map_name("LOCALITY", "LOCALITY6"))
    }
    fn set_locality<A: Family>(
        &mut self,
        key: LocalityKey<A>,
        entry: LocalityEntry,
    ) -> Result<(), DatapathError> {
        let name = A::map_name("LOCALITY", "LOCALITY6");
        A::locality_mut(self)
            .insert(key, entry, 0)
            .map_err(map_err("bpf_map_update_elem", name))
    }
    fn remove_locality<A: Family>(&mut self, key: &LocalityKey<A>) -> Result<(), DatapathError> {
        let name = A::map_name("LOCALITY", "LOCALITY6");
        remove(A::locality_mut(self), key, name)
    }
    fn templates<A: Family>(&self) -> Result<Vec<(TemplateKey<A>, Template)>, DatapathError> {
        entries(A::templates(self), A::map_name("TEMPLATES", "TEMPLATES6"))
    }
    fn set_template<A: Family>(
        &mut self,
        key: TemplateKey<A>,
        template: Template,
    ) -> Result<(), DatapathError> {
        let name = A::map_name("TEMPLATES", "TEMPLATES6");
        A::templates_mut(self)
            .insert(key, template, 0)
            .map_err(map_err("bpf_map_update_elem", name))
    }
    fn remove_template<A: Family>(&mut self, key: &TemplateKey<A>) -> Result<(), DatapathError> {
        let name = A::map_name("TEMPLATES", "TEMPLATES6");
        remove(A::templates_mut(self), key, name)
    }
    fn drain_events(&mut self) -> Result<Vec<Notice>, DatapathError> {
        let mut events = drained::<[u8; 4]>(&mut self.events);
        events.extend(drained::<In6>(&mut self.events6));
        Ok(events)
    }
    fn cursor(&self, index: u32) -> Result<u32, DatapathError> {
        Ok(self.cursors.read(index, 1)?[0])
    }
    fn cursors_upto(&self, count: u32) -> Result<Vec<u32>, DatapathError> {
        self.cursors.read(0, count)
    }
    fn service_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        sum(self
            .service_stats
            .get(&index, 0)
            .map_err(map_err("bpf_map_lookup_elem", "SERVICE_STATS"))?)
    }
    fn real_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        sum(self
            .real_stats
            .get(&index, 0)
            .map_err(map_err("bpf_map_lookup_elem", "REAL_STATS"))?)
    }
    fn service_counters_upto(&self, count: u32) -> Result<Vec<Counters>, DatapathError> {
        use aya::maps::IterableMap;
        summed_batch(
            self.service_stats.map(),
            count,
            self.cpus,
            "SERVICE_STATS",
            Counters::add,
        )
    }
    fn real_counters_upto(&self, count: u32) -> Result<Vec<Counters>, DatapathError> {
        use aya::maps::IterableMap;
        summed_batch(
            self.real_stats.map(),
            count,
            self.cpus,
            "REAL_STATS",
            Counters::add,
        )
    }
    fn reset_service_counters(&mut self, index: u32) -> Result<(), DatapathError> {
        let zero = self.zeroed();
        self.service_stats
            .set(index, zero, 0)
            .map_err(map_err("bpf_map_update_elem", "SERVICE_STATS"))
    }
    fn reset_real_counters(&mut self, index: u32) -> Result<(), DatapathError> {
        let zero = self.zeroed();
        self.real_stats
            .set(index, zero, 0)
            .map_err(map_err("bpf_map_update_elem", "REAL_STATS"))
    }
    fn seed_service_counters(
        &mut self,
        index: u32,
        counters: Counters,
    ) -> Result<(), DatapathError> {
        let seeded = self.seeded(counters);
        self.service_stats
            .set(index, seeded, 0)
            .map_err(map_err("bpf_map_update_elem", "SERVICE_STATS"))
    }
    fn seed_real_counters(&mut self, index: u32, counters: Counters) -> Result<(), DatapathError> {
        let seeded = self.seeded(counters);
        self.real_stats
            .set(index, seeded, 0)
            .map_err(map_err("bpf_map_update_elem", "REAL_STATS"))
    }
    fn connections<A: Family>(&self) -> Result<ConnEntries<A>, DatapathError> {
        entries(A::conns(self), A::map_name("CONNS", "CONNS6"))
    }
    fn connection<A: Family>(&self, key: &FlowKey<A>) -> Result<Option<Conn<A>>, DatapathError> {
        match A::conns(self).get(key, 0) {
            Ok(conn) => Ok(Some(conn)),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(map_err(
                "bpf_map_lookup_elem",
                A::map_name("CONNS", "CONNS6"),
            )(e)),
        }
    }
    fn connections_slice<A: Family>(
        &self,
        position: &mut TablePosition,
        max: usize,
    ) -> Result<ConnEntries<A>, DatapathError> {
        slice(
            A::conns(self),
            A::map_name("CONNS", "CONNS6"),
            position,
            max,
        )
    }
    fn set_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<(), DatapathError> {
        // A packet may recreate the key between the two steps; twice is
        // enough unless the flow is that busy on the backup.
        for _ in 0..3 {
            self.take_connection(&key)?;
            if self.add_connection(key, conn)? {
                return Ok(());
            }
        }
        Err(DatapathError::Batch {
            call: "bpf_map_update_elem (BPF_NOEXIST)",
            map: A::map_name("CONNS", "CONNS6"),
            source: std::io::Error::from_raw_os_error(libc::EEXIST),
        })
    }
    fn add_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<bool, DatapathError> {
        const BPF_NOEXIST: u64 = 1;
        match A::conns_mut(self).insert(key, conn, BPF_NOEXIST) {
            Ok(()) => {
                self.count(&conn, 1);
                Ok(true)
            }
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(false)
            }
            Err(e) => Err(map_err(
                "bpf_map_update_elem",
                A::map_name("CONNS", "CONNS6"),
            )(e)),
        }
    }
    fn take_connection<A: Family>(
        &mut self,
        key: &FlowKey<A>,
    ) -> Result<Option<Conn<A>>, DatapathError> {
        let taken = take_entry(A::conns(self), key, A::map_name("CONNS", "CONNS6"))?;
        if let Some(conn) = &taken {
            // Whoever removes an entry uncounts it, claimed or not.
            self.count(conn, u32::MAX);
        }
        Ok(taken)
    }
    fn set_relevant(&mut self, words: &[u32]) -> Result<(), DatapathError> {
        self.relevant.write(0, words)
    }
    fn set_reply_services(
        &mut self,
        server: ReplyKey,
        services: Option<ReplyServices>,
    ) -> Result<(), DatapathError> {
        match services {
            Some(s) => self
                .reply_services
                .insert(server, s, 0)
                .map_err(map_err("bpf_map_update_elem", "REPLY_SERVICES")),
            None => remove(&mut self.reply_services, &server, "REPLY_SERVICES"),
        }
    }
    fn renew_egress(&mut self) -> Result<(), DatapathError> {
        let now = self
            .egress_generation
            .get(&0, 0)
            .map_err(map_err("bpf_map_lookup_elem", "EGRESS_GENERATION"))?;
        // Never 0, which leaves the cache unused.
        let next = now.wrapping_add(1).max(1);
        self.egress_generation
            .set(0, next, 0)
            .map_err(map_err("bpf_map_update_elem", "EGRESS_GENERATION"))
    }
    fn conn_counts_upto(&self, count: u32) -> Result<Vec<ConnCounts>, DatapathError> {
        use aya::maps::IterableMap;
        let mut counts = summed_batch(
            self.real_conns.map(),
            count,
            self.cpus,
            "REAL_CONNS",
            ConnCounts::add,
        )?;
        for (total, own) in counts.iter_mut().zip(&self.own_counts) {
            total.add(own);
        }
        Ok(counts)
    }
    fn set_timeouts(&mut self, seconds: &[u32; STATE_COUNT as usize]) -> Result<(), DatapathError> {
        for (state, value) in seconds.iter().enumerate() {
            self.timeouts
                .set(state as u32, value, 0)
                .map_err(map_err("bpf_map_update_elem", "TIMEOUTS"))?;
        }
        Ok(())
    }
    fn now_ns(&self) -> Result<u64, DatapathError> {
        monotonic_ns()
    }
    fn is_local(&self, addr: IpAddr) -> bool {
        self.local.contains(addr)
    }
    fn set_next_hop(&mut self, real: IpAddr, hop: ResolvedHop) -> Result<(), DatapathError> {
        let refused = |map| DatapathError::Batch {
            call: "a next hop of another family",
            map,
            source: std::io::Error::from_raw_os_error(libc::EAFNOSUPPORT),
        };
        match real {
            IpAddr::V4(real) => {
                let hop = hop.entry().ok_or(refused("NEXT_HOPS"))?;
                self.next_hops
                    .insert(real.octets(), hop, 0)
                    .map_err(map_err("bpf_map_update_elem", "NEXT_HOPS"))
            }
            IpAddr::V6(real) => {
                let hop = hop.entry().ok_or(refused("NEXT_HOPS6"))?;
                self.next_hops6
                    .insert(In6::from(real), hop, 0)
                    .map_err(map_err("bpf_map_update_elem", "NEXT_HOPS6"))
            }
        }
    }
    fn remove_next_hop(&mut self, real: IpAddr) -> Result<(), DatapathError> {
        match real {
            IpAddr::V4(real) => remove(&mut self.next_hops, &real.octets(), "NEXT_HOPS"),
            IpAddr::V6(real) => remove(&mut self.next_hops6, &In6::from(real), "NEXT_HOPS6"),
        }
    }
    fn half_open_evicted(&self) -> Result<u64, DatapathError> {
        let per_cpu = self
            .half_open_evicted
            .get(&0, 0)
            .map_err(map_err("bpf_map_lookup_elem", "HALF_OPEN_EVICTED"))?;
        Ok(per_cpu.iter().sum())
    }
    fn icmp_errors(&self) -> Result<Vec<(IcmpCase, u64)>, DatapathError> {
        counted(
            &self.icmp_errors,
            &IcmpCase::ALL,
            |c| c as u32,
            "ICMP_ERRORS",
        )
    }
    fn verdicts(&self) -> Result<Vec<(Verdict, u64)>, DatapathError> {
        counted(&self.verdicts, &Verdict::ALL, |v| v as u32, "VERDICTS")
    }
}

/// A per-CPU array of counters read for each of `keys` (at `index(key)`),
/// each summed over the CPUs.
fn counted<K: Copy>(
    map: &PerCpuArray<MapData, u64>,
    keys: &[K],
    index: fn(K) -> u32,
    name: &'static str,
) -> Result<Vec<(K, u64)>, DatapathError> {
    keys.iter()
        .map(|&key| {
            let per_cpu = map
                .get(&index(key), 0)
                .map_err(map_err("bpf_map_lookup_elem", name))?;
            Ok((key, per_cpu.iter().sum()))
        })
        .collect()
}

/// Entries `0..count` of a per-CPU array of counters, each summed over the
/// CPUs with `add`, in `BPF_MAP_LOOKUP_BATCH` calls rather than one syscall
/// per index: a listing of 10,000 services reads 110,000 servers' counters.
fn summed_batch<T: aya::Pod + Default>(
    map: &MapData,
    count: u32,
    cpus: usize,
    name: &'static str,
    add: fn(&mut T, &T),
) -> Result<Vec<T>, DatapathError> {
    use std::os::fd::{AsFd, AsRawFd};
    const CHUNK: u32 = 4096;
    // A multiple of 8 bytes: the kernel packs the per-CPU values.
    const { assert!(size_of::<T>().is_multiple_of(8)) };
    let fd = map.fd().as_fd().as_raw_fd();
    let mut keys = vec![0u32; CHUNK as usize];
    let mut values = vec![T::default(); CHUNK as usize * cpus];
    let mut out = Vec::with_capacity(count as usize);
    // For arrays the position token is the next index.
    let (mut position, mut next) = (0u64, 0u64);
    while (out.len() as u32) < count {
        let mut attr = BatchAttr {
            in_batch: if out.is_empty() {
                0
            } else {
                &position as *const u64 as u64
            },
            out_batch: &mut next as *mut u64 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: CHUNK.min(count - out.len() as u32),
            map_fd: fd as u32,
            elem_flags: 0,
            flags: 0,
        };
        // SAFETY: the attribute points at live buffers for `count` keys and
        // `count` x CPUs values of the map's value type, and at the tokens.
        let last = unsafe {
            batch(
                BPF_MAP_LOOKUP_BATCH,
                &mut attr,
                "BPF_MAP_LOOKUP_BATCH",
                name,
            )?
        };
        for per_cpu in values[..attr.count as usize * cpus].chunks(cpus) {
            let mut total = T::default();
            for c in per_cpu {
                add(&mut total, c);
            }
            out.push(total);
        }
        if last || attr.count == 0 {
            break;
        }
        position = next;
    }
    out.resize(count as usize, T::default());
    Ok(out)
}

pub(crate) fn sum(per_cpu: PerCpuValues<Counters>) -> Result<Counters, DatapathError> {
    let mut total = Counters::default();
    for c in per_cpu.iter() {
        total.add(c);
    }
    Ok(total)
}

/// `CLOCK_MONOTONIC`, the clock `bpf_ktime_get_ns` reads.
pub(super) fn monotonic_ns() -> Result<u64, DatapathError> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map_err(|e| DatapathError::Clock { source: e.into() })?;
    Ok(now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64)
}

fn detach_kept(kept: &mut Vec<(u32, XdpAttachMode)>) {
    for (ifindex, mode) in kept.drain(..) {
        if let Err(e) = netlink::set_xdp(ifindex, -1, mode) {
            tracing::warn!(ifindex, "detaching the director: {e}");
        }
        if let Ok(record) = owner_record(ifindex) {
            let _ = std::fs::remove_file(record);
        }
    }
}

impl Drop for KernelDatapath {
    fn drop(&mut self) {
        detach_kept(&mut self.kept);
    }
}
