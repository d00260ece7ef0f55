//! The desired state: virtual services and their real servers, and the
//! commands that change it. Validation lives here so that the config file,
//! the control socket and the CLI all refuse the same things the same way.

use std::collections::HashSet;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use lvs_sched::{SchedFlags, SchedulerName};

use crate::health::{HealthError, RealHealth, ServiceHealth, SorryServer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// From an IP protocol number.
    pub const fn of(number: u8) -> Option<Self> {
        match number {
            lvs_common::IPPROTO_TCP => Some(Protocol::Tcp),
            lvs_common::IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => lvs_common::IPPROTO_TCP,
            Protocol::Udp => lvs_common::IPPROTO_UDP,
        }
    }
    /// As `ipvsadm -L` prints it.
    pub const fn label(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
    /// As `ipvsadm -S` writes it.
    pub const fn flag(self) -> &'static str {
        match self {
            Protocol::Tcp => "-t",
            Protocol::Udp => "-u",
        }
    }
}

/// Forwarding method of a real server: the one enum, from lvs-common.
pub use lvs_common::Method;

/// An `addr:port` endpoint, IPv4 or IPv6, parsed strictly. Written as
/// ipvsadm writes it: `a.b.c.d:port`, `[v6]:port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::net::SocketAddr::new(self.addr, self.port))
    }
}

impl Endpoint {
    /// `a.b.c.d[:port]`, `[v6][:port]`, or a bare IPv6 address (no port);
    /// a missing port is `None`.
    pub fn parse_optional_port(s: &str) -> Result<(IpAddr, Option<u16>), ModelError> {
        lvs_common::addr::split_host_port(s).ok_or_else(|| ModelError::BadAddress(s.to_string()))
    }

    pub const fn is_ipv6(&self) -> bool {
        self.addr.is_ipv6()
    }
}

impl FromStr for Endpoint {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match Endpoint::parse_optional_port(s)? {
            (addr, Some(port)) => Ok(Endpoint { addr, port }),
            (_, None) => Err(ModelError::BadAddress(s.to_string())),
        }
    }
}

/// A virtual service's identity: protocol, VIP and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ServiceId {
    pub protocol: Protocol,
    pub vip: Endpoint,
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.protocol.label(), self.vip)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub id: ServiceId,
    pub scheduler: SchedulerName,
    /// `-b`: scheduler flags (sh-fallback, sh-port).
    #[serde(default)]
    pub flags: SchedFlags,
    /// `-p [timeout] -M netmask`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<Persistence>,
}

/// A persistent service's templates: one per client network, kept
/// `timeout` seconds after its last new connection (§4.1). The network is
/// the client's address cut to `prefix` bits: ipvsadm's `-M` takes an IPv4
/// mask (contiguous) or an IPv6 prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persistence {
    pub timeout: u32,
    pub prefix: u8,
}

impl Persistence {
    /// ipvsadm's `-p` without a value.
    pub const DEFAULT_TIMEOUT: u32 = 360;

    /// `-p` alone: a template per client address (/32, or /128 for IPv6).
    pub const fn default_for(addr: IpAddr) -> Self {
        Self {
            timeout: Self::DEFAULT_TIMEOUT,
            prefix: max_prefix(addr),
        }
    }

    /// The client netmask of a service at `vip`: its family's mask of
    /// `prefix` bits.
    pub fn mask(&self, vip: IpAddr) -> IpAddr {
        match vip {
            IpAddr::V4(_) => self.ipv4_mask().into(),
            IpAddr::V6(_) => Ipv6Addr::from(
                u128::MAX
                    .checked_shl(128 - u32::from(self.prefix.min(128)))
                    .unwrap_or(0),
            )
            .into(),
        }
    }

    /// The IPv4 mask `-M` names (for an IPv4 service).
    pub fn ipv4_mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(
            u32::MAX
                .checked_shl(32 - u32::from(self.prefix.min(32)))
                .unwrap_or(0),
        )
    }
}

/// Bits in an address of `addr`'s family.
pub const fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `-M`'s text for a service at `vip`, as a prefix length: a dotted,
/// contiguous mask for IPv4; a prefix length 1..=128 (`64`, or `/64`) for
/// IPv6, as ipvsadm takes them. The CLI and the config read it alike.
pub fn netmask_prefix(text: &str, vip: IpAddr) -> Result<u8, ModelError> {
    let malformed = |ipv6| ModelError::MalformedNetmask {
        text: text.to_string(),
        ipv6,
    };
    match vip {
        IpAddr::V4(_) => {
            let mask: Ipv4Addr = text.parse().map_err(|_| malformed(false))?;
            ipv4_prefix(mask).ok_or(ModelError::BadNetmask(mask))
        }
        IpAddr::V6(_) => text
            .trim_start_matches('/')
            .parse::<u8>()
            .ok()
            .filter(|p| (1..=128).contains(p))
            .ok_or_else(|| malformed(true)),
    }
}

/// An IPv4 `-M` mask as a prefix length; `None` if not contiguous.
pub fn ipv4_prefix(mask: Ipv4Addr) -> Option<u8> {
    let m = u32::from(mask);
    (m.leading_ones() + m.trailing_zeros() == 32).then_some(m.leading_ones() as u8)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RealSpec {
    pub server: Endpoint,
    pub method: Method,
    pub weight: u32,
    pub u_threshold: u32,
    pub l_threshold: u32,
}

/// ipvsadm limits `-w` to this.
pub const MAX_WEIGHT: u32 = 65535;

/// One change to the desired state. A batch of them applies all or nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Command {
    AddService(ServiceSpec),
    EditService(ServiceSpec),
    DeleteService {
        service: ServiceId,
    },
    AddReal {
        service: ServiceId,
        real: RealSpec,
    },
    EditReal {
        service: ServiceId,
        real: RealSpec,
    },
    DeleteReal {
        service: ServiceId,
        server: Endpoint,
    },
    Clear,
    /// The sorry server and slow-start window (ipvsadm's `-E` leaves them).
    SetServiceHealth {
        service: ServiceId,
        health: ServiceHealth,
    },
    /// A real server's checkers and agent; `None` removes them, and the
    /// server is then always in service (ipvsadm's `-e` leaves them).
    SetRealHealth {
        service: ServiceId,
        server: Endpoint,
        health: Option<RealHealth>,
    },
}

/// One line of what a change does, as a reload reports it.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let method = |m: Method| match m {
            Method::Nat => "nat",
            Method::Route => "route",
            Method::Tunnel => "tunnel",
            Method::Local => "local",
        };
        match self {
            Command::AddService(spec) => {
                write!(f, "added service {} ({})", spec.id, spec.scheduler.as_str())
            }
            Command::EditService(spec) => write!(
                f,
                "changed service {} ({})",
                spec.id,
                spec.scheduler.as_str()
            ),
            Command::DeleteService { service } => {
                write!(f, "removed service {service}; its connections drain")
            }
            Command::AddReal { service, real } => write!(
                f,
                "added real server {} to {service} ({}, weight {})",
                real.server,
                method(real.method),
                real.weight
            ),
            Command::EditReal { service, real } => write!(
                f,
                "changed real server {} of {service} ({}, weight {})",
                real.server,
                method(real.method),
                real.weight
            ),
            Command::DeleteReal { service, server } => {
                write!(
                    f,
                    "removed real server {server} from {service}; its connections drain"
                )
            }
            Command::Clear => write!(f, "removed every service"),
            Command::SetServiceHealth { service, .. } => {
                write!(
                    f,
                    "changed the sorry server, quorum or slow start of {service}"
                )
            }
            Command::SetRealHealth {
                service, server, ..
            } => {
                write!(f, "changed the checks of real server {server} of {service}")
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("malformed address `{0}`: expected a.b.c.d:port or [IPv6]:port")]
    BadAddress(String),
    #[error("zero port specified for non-persistent service {0}")]
    ZeroPort(ServiceId),
    #[error("service {0} already exists")]
    DuplicateService(ServiceId),
    #[error("no such service {0}")]
    NoSuchService(ServiceId),
    #[error("real server {server} already exists in service {service}")]
    DuplicateReal {
        service: ServiceId,
        server: Endpoint,
    },
    #[error("no such real server {server} in service {service}")]
    NoSuchReal {
        service: ServiceId,
        server: Endpoint,
    },
    #[error("weight {0} out of range 0..=65535")]
    WeightRange(u32),
    #[error("lower threshold {lower} is above upper threshold {upper}")]
    ThresholdOrder { lower: u32, upper: u32 },
    #[error("real server {server} uses {} ({}), which cannot map ports: its port must be the service's port {port} (only -m, masquerading, rewrites ports)", .method.flag(), .method.label())]
    PortMapping {
        method: Method,
        server: Endpoint,
        port: u16,
    },
    #[error("port 0 is not a valid real server port for {0}")]
    ZeroRealPort(ServiceId),
    #[error("persistence timeout of {0} must be at least 1 second")]
    PersistenceTimeout(ServiceId),
    #[error("netmask {0} is not a contiguous mask like 255.255.255.0")]
    BadNetmask(Ipv4Addr),
    #[error("malformed netmask `{text}`: expected {}", if *.ipv6 { "an IPv6 prefix length like 64" } else { "a dotted mask like 255.255.255.0" })]
    MalformedNetmask { text: String, ipv6: bool },
    #[error("persistence prefix /{prefix} is longer than {service}'s addresses")]
    PrefixRange { service: ServiceId, prefix: u8 },
    #[error("real server {0} is not a unicast address")]
    NotUnicast(Endpoint),
    #[error("real server {server} is not of service {service}'s address family: only a tunnel (-i) may cross families")]
    MixedFamilies {
        service: ServiceId,
        server: Endpoint,
    },
    #[error("health of real server {server} in service {service}: {source}")]
    Health {
        service: ServiceId,
        server: Endpoint,
        source: HealthError,
    },
    #[error("sorry server {server} of service {service} is also one of its real servers")]
    SorryIsReal {
        service: ServiceId,
        server: Endpoint,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    pub spec: ServiceSpec,
    /// IPVS list order: a newly added server goes to the front.
    pub reals: Vec<RealSpec>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub health: ServiceHealth,
    /// Checkers and agents of real servers that have them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<(Endpoint, RealHealth)>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Service {
    pub fn new(spec: ServiceSpec) -> Self {
        Self {
            spec,
            reals: Vec::new(),
            health: ServiceHealth::default(),
            checks: Vec::new(),
        }
    }

    /// The health configuration of one real server, if it has any.
    pub fn checks_of(&self, server: &Endpoint) -> Option<&RealHealth> {
        self.checks
            .iter()
            .find(|(e, _)| e == server)
            .map(|(_, h)| h)
    }

    /// Every server that may hold this service's connections: its real
    /// servers and its sorry server.
    pub fn endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        self.reals
            .iter()
            .map(|r| r.server)
            .chain(self.health.sorry.map(|s| s.server))
    }
}

/// Every service, in the order they were added, found by key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    services: IndexMap<ServiceId, Service>,
}

/// What a batch changed, in order, to put back if a later command fails:
/// each service before the first command that touched it (with its
/// position), and the whole table at each `-C`. It holds only what the
/// batch touched.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Undo {
    steps: Vec<Step>,
    /// Services already logged since the last `-C`.
    seen: HashSet<ServiceId>,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Service(ServiceId, Option<(usize, Service)>),
    Cleared(IndexMap<ServiceId, Service>),
}

impl Undo {
    /// Each service the batch touched, as it was before the batch (`None`
    /// for one the batch added).
    pub fn touched(&self) -> Vec<(ServiceId, Option<&Service>)> {
        let mut first = HashSet::new();
        let mut out = Vec::new();
        for step in &self.steps {
            match step {
                Step::Service(id, old) => {
                    if first.insert(*id) {
                        out.push((*id, old.as_ref().map(|(_, s)| s)));
                    }
                }
                Step::Cleared(table) => {
                    for (id, svc) in table {
                        if first.insert(*id) {
                            out.push((*id, Some(svc)));
                        }
                    }
                }
            }
        }
        out
    }
}

impl State {
    pub fn service(&self, id: &ServiceId) -> Option<&Service> {
        self.services.get(id)
    }

    /// Every service, in the order they were added.
    pub fn services(&self) -> impl ExactSizeIterator<Item = &Service> + '_ {
        self.services.values()
    }

    /// The `i`th service in the order they were added.
    pub fn at(&self, i: usize) -> Option<&Service> {
        self.services.get_index(i).map(|(_, s)| s)
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    fn service_mut(&mut self, id: &ServiceId) -> Result<&mut Service, ModelError> {
        self.services
            .get_mut(id)
            .ok_or(ModelError::NoSuchService(*id))
    }

    /// Apply a whole batch, or nothing: on error `self` is unchanged. The
    /// undo log it returns puts the batch back (`rollback`).
    pub fn apply_all(&mut self, commands: &[Command]) -> Result<Undo, ModelError> {
        let mut undo = Undo::default();
        for c in commands {
            if let Err(e) = self.apply_logged(c, &mut undo) {
                self.rollback(undo);
                return Err(e);
            }
        }
        Ok(undo)
    }

    /// One command, recording in `undo` what it is about to change.
    pub fn apply_logged(&mut self, command: &Command, undo: &mut Undo) -> Result<(), ModelError> {
        if let Command::Clear = command {
            undo.steps
                .push(Step::Cleared(std::mem::take(&mut self.services)));
            undo.seen.clear();
            return Ok(());
        }
        for id in self.affected(command) {
            if undo.seen.insert(id) {
                let old = self.services.get_full(&id).map(|(i, _, s)| (i, s.clone()));
                undo.steps.push(Step::Service(id, old));
            }
        }
        self.apply(command)
    }

    /// Put back what a batch changed.
    pub fn rollback(&mut self, undo: Undo) {
        for step in undo.steps.into_iter().rev() {
            match step {
                Step::Service(id, old) => {
                    self.services.shift_remove(&id);
                    if let Some((i, svc)) = old {
                        let at = i.min(self.services.len());
                        self.services.shift_insert(at, id, svc);
                    }
                }
                Step::Cleared(table) => self.services = table,
            }
        }
    }

    /// Services a command can change: its own, or all of them for `-C`.
    pub fn affected(&self, command: &Command) -> Vec<ServiceId> {
        match command {
            Command::AddService(spec) | Command::EditService(spec) => vec![spec.id],
            Command::DeleteService { service }
            | Command::AddReal { service, .. }
            | Command::EditReal { service, .. }
            | Command::DeleteReal { service, .. }
            | Command::SetServiceHealth { service, .. }
            | Command::SetRealHealth { service, .. } => vec![*service],
            Command::Clear => self.services.keys().copied().collect(),
        }
    }

    /// One command, in place. On error `self` may be partly changed: callers
    /// that need all-or-nothing use `apply_all`.
    pub fn apply(&mut self, command: &Command) -> Result<(), ModelError> {
        match command {
            Command::AddService(spec) => {
                validate_service(spec)?;
                if self.service(&spec.id).is_some() {
                    return Err(ModelError::DuplicateService(spec.id));
                }
                self.services.insert(spec.id, Service::new(spec.clone()));
            }
            Command::EditService(spec) => {
                validate_service(spec)?;
                self.service_mut(&spec.id)?.spec = spec.clone();
            }
            Command::DeleteService { service } => {
                if self.services.shift_remove(service).is_none() {
                    return Err(ModelError::NoSuchService(*service));
                }
            }
            Command::AddReal { service, real } => {
                validate_real(service, real)?;
                let svc = self.service_mut(service)?;
                if svc.reals.iter().any(|r| r.server == real.server) {
                    return Err(ModelError::DuplicateReal {
                        service: *service,
                        server: real.server,
                    });
                }
                if svc.health.sorry.is_some_and(|s| s.server == real.server) {
                    return Err(ModelError::SorryIsReal {
                        service: *service,
                        server: real.server,
                    });
                }
                svc.reals.insert(0, real.clone());
            }
            Command::EditReal { service, real } => {
                validate_real(service, real)?;
                let svc = self.service_mut(service)?;
                let slot = svc
                    .reals
                    .iter_mut()
                    .find(|r| r.server == real.server)
                    .ok_or(ModelError::NoSuchReal {
                        service: *service,
                        server: real.server,
                    })?;
                *slot = real.clone();
            }
            Command::DeleteReal { service, server } => {
                let svc = self.service_mut(service)?;
                let before = svc.reals.len();
                svc.reals.retain(|r| r.server != *server);
                if svc.reals.len() == before {
                    return Err(ModelError::NoSuchReal {
                        service: *service,
                        server: *server,
                    });
                }
                svc.checks.retain(|(e, _)| e != server);
            }
            Command::Clear => self.services.clear(),
            Command::SetServiceHealth { service, health } => {
                let svc = self.service_mut(service)?;
                if let Some(sorry) = health.sorry {
                    if svc.reals.iter().any(|r| r.server == sorry.server) {
                        return Err(ModelError::SorryIsReal {
                            service: *service,
                            server: sorry.server,
                        });
                    }
                    validate_real(service, &sorry_spec(sorry))?;
                }
                svc.health = health.clone();
            }
            Command::SetRealHealth {
                service,
                server,
                health,
            } => {
                let svc = self.service_mut(service)?;
                if !svc.reals.iter().any(|r| r.server == *server) {
                    return Err(ModelError::NoSuchReal {
                        service: *service,
                        server: *server,
                    });
                }
                svc.checks.retain(|(e, _)| e != server);
                if let Some(health) = health {
                    health.validate().map_err(|source| ModelError::Health {
                        service: *service,
                        server: *server,
                        source,
                    })?;
                    svc.checks.push((*server, health.clone()));
                }
            }
        }
        Ok(())
    }
}

impl State {
    /// The commands that turn this state into `desired`, touching only
    /// what differs (a reload): removals first (so a server can become the
    /// sorry server, or the sorry server a server), then edits and
    /// additions. Health settings are set only where they changed, so
    /// checkers that did not change keep their state.
    pub fn changes_to(&self, desired: &State) -> Vec<Command> {
        let mut removals = Vec::new();
        let mut changes = Vec::new();
        for svc in self.services() {
            if desired.service(&svc.spec.id).is_none() {
                removals.push(Command::DeleteService {
                    service: svc.spec.id,
                });
            }
        }
        for want in desired.services() {
            let id = want.spec.id;
            let Some(have) = self.service(&id) else {
                changes.push(Command::AddService(want.spec.clone()));
                if want.health != ServiceHealth::default() {
                    changes.push(Command::SetServiceHealth {
                        service: id,
                        health: want.health.clone(),
                    });
                }
                // Added in reverse, each to the front: IPVS's list order
                // comes out as the desired state's.
                for real in want.reals.iter().rev() {
                    changes.push(Command::AddReal {
                        service: id,
                        real: real.clone(),
                    });
                }
                for (server, health) in &want.checks {
                    changes.push(Command::SetRealHealth {
                        service: id,
                        server: *server,
                        health: Some(health.clone()),
                    });
                }
                continue;
            };
            if have.spec != want.spec {
                changes.push(Command::EditService(want.spec.clone()));
            }
            for real in &have.reals {
                if !want.reals.iter().any(|r| r.server == real.server) {
                    removals.push(Command::DeleteReal {
                        service: id,
                        server: real.server,
                    });
                }
            }
            if have.health != want.health {
                changes.push(Command::SetServiceHealth {
                    service: id,
                    health: want.health.clone(),
                });
            }
            for real in want.reals.iter().rev() {
                match have.reals.iter().find(|r| r.server == real.server) {
                    None => changes.push(Command::AddReal {
                        service: id,
                        real: real.clone(),
                    }),
                    Some(old) if old != real => changes.push(Command::EditReal {
                        service: id,
                        real: real.clone(),
                    }),
                    Some(_) => {}
                }
            }
            for real in &want.reals {
                let (old, new) = (have.checks_of(&real.server), want.checks_of(&real.server));
                if old != new {
                    changes.push(Command::SetRealHealth {
                        service: id,
                        server: real.server,
                        health: new.cloned(),
                    });
                }
            }
        }
        removals.extend(changes);
        removals
    }
}

/// The sorry server as the scheduler sees it while it stands in.
pub fn sorry_spec(sorry: SorryServer) -> RealSpec {
    RealSpec {
        server: sorry.server,
        method: sorry.method,
        weight: 1,
        u_threshold: 0,
        l_threshold: 0,
    }
}

fn validate_service(spec: &ServiceSpec) -> Result<(), ModelError> {
    if spec.id.vip.port == 0 && spec.persistence.is_none() {
        return Err(ModelError::ZeroPort(spec.id));
    }
    if let Some(p) = spec.persistence {
        if p.timeout == 0 {
            return Err(ModelError::PersistenceTimeout(spec.id));
        }
        if p.prefix > max_prefix(spec.id.vip.addr) {
            return Err(ModelError::PrefixRange {
                service: spec.id,
                prefix: p.prefix,
            });
        }
    }
    Ok(())
}

fn validate_real(service: &ServiceId, real: &RealSpec) -> Result<(), ModelError> {
    if real.weight > MAX_WEIGHT {
        return Err(ModelError::WeightRange(real.weight));
    }
    if real.l_threshold > real.u_threshold {
        return Err(ModelError::ThresholdOrder {
            lower: real.l_threshold,
            upper: real.u_threshold,
        });
    }
    // As IPVS, a destination is a unicast address (the datapath reads an
    // unspecified one as a tunnel to the other family's entry).
    if real.server.addr.is_unspecified() || real.server.addr.is_multicast() {
        return Err(ModelError::NotUnicast(real.server));
    }
    // As IPVS: a tunnel may lead from one family to the other (IPv6 in
    // IPv4 or the reverse); the packet itself cannot change family.
    if real.server.is_ipv6() != service.vip.is_ipv6() && real.method != Method::Tunnel {
        return Err(ModelError::MixedFamilies {
            service: *service,
            server: real.server,
        });
    }
    if real.server.port == 0 && service.vip.port != 0 {
        return Err(ModelError::ZeroRealPort(*service));
    }
    // Only NAT rewrites the port; ipvsadm forces DR and TUN servers onto the
    // service's port, so a different one is a mistake worth naming.
    if real.method != Method::Nat && real.server.port != service.vip.port {
        return Err(ModelError::PortMapping {
            method: real.method,
            server: real.server,
            port: service.vip.port,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_three_methods_and_never_local() {
        for (name, method) in [
            ("route", Method::Route),
            ("tunnel", Method::Tunnel),
            ("nat", Method::Nat),
        ] {
            let quoted = format!("\"{name}\"");
            assert_eq!(serde_json::from_str::<Method>(&quoted).unwrap(), method);
            assert_eq!(serde_json::to_string(&method).unwrap(), quoted);
        }
        assert!(serde_json::from_str::<Method>("\"local\"").is_err());
    }

    fn svc(port: u16) -> ServiceId {
        ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: Ipv4Addr::new(198, 18, 0, 10).into(),
                port,
            },
        }
    }
    fn real(last: u8, weight: u32) -> RealSpec {
        RealSpec {
            server: Endpoint {
                addr: Ipv4Addr::new(198, 18, 11, last).into(),
                port: 8080,
            },
            method: Method::Nat,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
    /// A random configuration: services on ports 80..84 with random
    /// schedulers, servers (weights, methods), checks and sorry servers.
    fn random_state(seed: &mut u64) -> State {
        use crate::health::{Check, CheckKind};
        let mut next = |n: u64| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % n
        };
        let mut state = State::default();
        for port in 80..84 {
            if next(4) == 0 {
                continue;
            }
            let mut spec = match add(port) {
                Command::AddService(spec) => spec,
                _ => unreachable!(),
            };
            spec.scheduler = [SchedulerName::Rr, SchedulerName::Wlc][next(2) as usize];
            let mut commands = vec![Command::AddService(spec)];
            for last in 1..6 {
                if next(2) == 0 {
                    continue;
                }
                let mut r = real(last, next(3) as u32);
                r.method = [Method::Nat, Method::Route][next(2) as usize];
                r.server.port = if r.method == Method::Route {
                    port
                } else {
                    8080
                };
                commands.push(Command::AddReal {
                    service: svc(port),
                    real: r.clone(),
                });
                if next(2) == 0 {
                    let mut check = Check::new(CheckKind::Tcp);
                    check.interval_ms = 1000 * (1 + next(2));
                    commands.push(Command::SetRealHealth {
                        service: svc(port),
                        server: r.server,
                        health: Some(RealHealth {
                            checks: vec![check],
                            ..RealHealth::default()
                        }),
                    });
                }
            }
            if next(3) == 0 {
                commands.push(Command::SetServiceHealth {
                    service: svc(port),
                    health: ServiceHealth {
                        sorry: Some(SorryServer {
                            server: real(9, 1).server,
                            method: Method::Nat,
                        }),
                        ..ServiceHealth::default()
                    },
                });
            }
            state.apply_all(&commands).unwrap();
        }
        state
    }

    /// Services by key, servers and checks by address: what two states
    /// must agree on whatever order they were built in.
    fn normalized(state: &State) -> Vec<Service> {
        let mut services: Vec<Service> = state.services().cloned().collect();
        services.sort_by_key(|s| s.spec.id);
        for s in &mut services {
            s.reals.sort_by_key(|r| r.server);
            s.checks.sort_by_key(|(e, _)| *e);
        }
        services
    }

    #[test]
    fn a_reload_s_changes_turn_any_state_into_any_other_and_touch_nothing_else() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..500 {
            let from = random_state(&mut seed);
            let to = random_state(&mut seed);
            let changes = from.changes_to(&to);
            let mut reloaded = from.clone();
            reloaded
                .apply_all(&changes)
                .unwrap_or_else(|e| panic!("{e}: {changes:#?}"));
            assert_eq!(normalized(&reloaded), normalized(&to), "{changes:#?}");
            assert!(to.changes_to(&to).is_empty());
            // Only what differs is touched.
            for c in &changes {
                match c {
                    Command::EditReal { service, real } => {
                        let old = from
                            .service(service)
                            .unwrap()
                            .reals
                            .iter()
                            .find(|r| r.server == real.server);
                        assert_ne!(old, Some(real), "{c:?}");
                    }
                    Command::SetRealHealth {
                        service,
                        server,
                        health,
                    } => {
                        let old = from.service(service).and_then(|s| s.checks_of(server));
                        assert_ne!(old, health.as_ref(), "{c:?}");
                    }
                    Command::EditService(spec) => {
                        assert_ne!(&from.service(&spec.id).unwrap().spec, spec, "{c:?}");
                    }
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn a_server_can_become_the_sorry_server_and_back_in_one_reload() {
        let with = |as_real: bool| {
            let mut commands = vec![
                add(80),
                Command::AddReal {
                    service: svc(80),
                    real: real(1, 1),
                },
            ];
            let nine = real(9, 1);
            let sorry = SorryServer {
                server: nine.server,
                method: Method::Nat,
            };
            if as_real {
                commands.push(Command::AddReal {
                    service: svc(80),
                    real: nine,
                });
            } else {
                commands.push(Command::SetServiceHealth {
                    service: svc(80),
                    health: ServiceHealth {
                        sorry: Some(sorry),
                        ..ServiceHealth::default()
                    },
                });
            }
            let mut state = State::default();
            state.apply_all(&commands).unwrap();
            state
        };
        for (a, b) in [(with(true), with(false)), (with(false), with(true))] {
            let mut s = a.clone();
            s.apply_all(&a.changes_to(&b)).unwrap();
            assert_eq!(normalized(&s), normalized(&b));
        }
    }

    #[test]
    fn each_change_reads_as_a_line() {
        let lines: Vec<String> = [
            add(80),
            Command::AddReal {
                service: svc(80),
                real: real(2, 3),
            },
            Command::DeleteReal {
                service: svc(80),
                server: real(2, 3).server,
            },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            lines,
            [
                "added service TCP 198.18.0.10:80 (rr)",
                "added real server 198.18.11.2:8080 to TCP 198.18.0.10:80 (nat, weight 3)",
                "removed real server 198.18.11.2:8080 from TCP 198.18.0.10:80; its connections drain",
            ]
        );
    }

    fn add(port: u16) -> Command {
        Command::AddService(ServiceSpec {
            id: svc(port),
            scheduler: SchedulerName::Rr,
            flags: SchedFlags::default(),
            persistence: None,
        })
    }

    /// ipvsadm's address forms: `a.b.c.d[:port]`, `[v6][:port]`, and a
    /// bare IPv6 address (no port); written back the same way.
    #[test]
    fn endpoints_of_both_families_parse_and_print_as_ipvsadm() {
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        let v4: IpAddr = "198.18.0.10".parse().unwrap();
        for (text, parsed) in [
            ("198.18.0.10:80", Ok((v4, Some(80)))),
            ("198.18.0.10", Ok((v4, None))),
            ("[2001:db8::10]:80", Ok((v6, Some(80)))),
            ("[2001:db8::10]", Ok((v6, None))),
            ("2001:db8::10", Ok((v6, None))),
            ("[2001:db8::10]80", Err(())),
            ("[2001:db8::10:80", Err(())),
            ("[198.18.0.10]:80", Err(())),
            ("198.18.0:80", Err(())),
            ("[2001:db8::10]:65536", Err(())),
        ] {
            assert_eq!(
                Endpoint::parse_optional_port(text).map_err(|_| ()),
                parsed,
                "{text}"
            );
        }
        let e: Endpoint = "[2001:db8::10]:80".parse().unwrap();
        assert_eq!(e.to_string(), "[2001:db8::10]:80");
        assert!(e.is_ipv6());
    }

    #[test]
    fn persistence_prefixes_fit_the_family() {
        let v6 = ServiceId {
            protocol: Protocol::Tcp,
            vip: "[2001:db8::10]:80".parse().unwrap(),
        };
        let spec = |id: ServiceId, prefix| ServiceSpec {
            id,
            scheduler: SchedulerName::Rr,
            flags: SchedFlags::default(),
            persistence: Some(Persistence {
                timeout: 60,
                prefix,
            }),
        };
        let mut s = State::default();
        assert!(s.apply_all(&[Command::AddService(spec(v6, 64))]).is_ok());
        assert_eq!(
            s.apply_all(&[Command::AddService(spec(svc(81), 33))]),
            Err(ModelError::PrefixRange {
                service: svc(81),
                prefix: 33
            })
        );
        assert_eq!(Persistence::default_for(v6.vip.addr).prefix, 128);
        assert_eq!(Persistence::default_for(svc(80).vip.addr).prefix, 32);
        let p = Persistence {
            timeout: 1,
            prefix: 20,
        };
        assert_eq!(p.ipv4_mask(), Ipv4Addr::new(255, 255, 240, 0));
        assert_eq!(ipv4_prefix(Ipv4Addr::new(255, 255, 240, 0)), Some(20));
        assert_eq!(ipv4_prefix(Ipv4Addr::new(255, 0, 255, 0)), None);
        assert_eq!(
            Persistence {
                timeout: 1,
                prefix: 0
            }
            .ipv4_mask(),
            Ipv4Addr::UNSPECIFIED
        );
    }

    #[test]
    fn new_real_servers_go_to_the_front() {
        let mut s = State::default();
        s.apply_all(&[
            add(80),
            Command::AddReal {
                service: svc(80),
                real: real(1, 1),
            },
            Command::AddReal {
                service: svc(80),
                real: real(2, 1),
            },
            Command::AddReal {
                service: svc(80),
                real: real(3, 1),
            },
        ])
        .unwrap();
        let order: Vec<u8> = s
            .at(0)
            .unwrap()
            .reals
            .iter()
            .map(|r| match r.server.addr {
                IpAddr::V4(a) => a.octets()[3],
                IpAddr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(order, [3, 2, 1]);
    }

    #[test]
    fn a_failing_batch_changes_nothing() {
        let mut s = State::default();
        s.apply_all(&[add(80)]).unwrap();
        let before = s.clone();
        let err = s
            .apply_all(&[
                Command::AddReal {
                    service: svc(80),
                    real: real(1, 1),
                },
                add(80),
            ])
            .unwrap_err();
        assert_eq!(err, ModelError::DuplicateService(svc(80)));
        assert_eq!(s, before);
    }

    #[test]
    fn refusals() {
        let mut s = State::default();
        assert_eq!(
            s.apply_all(&[Command::AddReal {
                service: svc(80),
                real: real(1, 1)
            }]),
            Err(ModelError::NoSuchService(svc(80)))
        );
        assert_eq!(s.apply_all(&[add(0)]), Err(ModelError::ZeroPort(svc(0))));
        s.apply_all(&[add(80)]).unwrap();
        assert_eq!(
            s.apply_all(&[Command::AddReal {
                service: svc(80),
                real: real(1, 70000)
            }]),
            Err(ModelError::WeightRange(70000))
        );
        let mut dr = real(1, 1);
        dr.method = Method::Route;
        assert_eq!(
            s.apply_all(&[Command::AddReal {
                service: svc(80),
                real: dr.clone()
            }]),
            Err(ModelError::PortMapping {
                method: Method::Route,
                server: dr.server,
                port: 80
            })
        );
        assert!(ModelError::PortMapping {
            method: Method::Tunnel,
            server: dr.server,
            port: 80
        }
        .to_string()
        .contains("uses -i (Tunnel), which cannot map ports"));
        // On the service's own port, DR and TUN servers are welcome.
        for method in [Method::Route, Method::Tunnel] {
            let mut same_port = real(1, 1);
            same_port.server.port = 80;
            same_port.method = method;
            let mut t = s.clone();
            t.apply_all(&[Command::AddReal {
                service: svc(80),
                real: same_port,
            }])
            .unwrap();
        }
        let mut thresholds = real(1, 1);
        thresholds.l_threshold = 10;
        assert!(matches!(
            s.apply_all(&[Command::AddReal {
                service: svc(80),
                real: thresholds
            }]),
            Err(ModelError::ThresholdOrder { .. })
        ));
        // No destination that is not a unicast address.
        for addr in ["0.0.0.0", "224.0.0.1", "::", "ff02::1"] {
            let mut odd = real(1, 1);
            odd.server.addr = addr.parse().unwrap();
            odd.method = Method::Tunnel;
            assert!(
                matches!(
                    s.apply_all(&[Command::AddReal {
                        service: svc(80),
                        real: odd
                    }]),
                    Err(ModelError::NotUnicast(_))
                ),
                "{addr}"
            );
        }
    }

    #[test]
    fn endpoints_parse_strictly() {
        assert_eq!("1.2.3.4:80".parse::<Endpoint>().unwrap().port, 80);
        for bad in [
            "1.2.3:80",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "host:80",
            "1.2.3.4",
        ] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_batch_puts_back_exactly_what_it_touched() {
        let mut s = State::default();
        s.apply_all(&[add(80), add(81), add(82)]).unwrap();
        for port in [80, 81, 82] {
            s.apply_all(&[Command::AddReal {
                service: svc(port),
                real: real(port as u8 - 78, 1),
            }])
            .unwrap();
        }
        let before = s.clone();
        let batches = [
            vec![
                Command::AddReal {
                    service: svc(81),
                    real: real(9, 3),
                },
                Command::DeleteService { service: svc(80) },
                Command::Clear,
                add(81),
                add(83),
                Command::Clear,
                add(80),
            ],
            vec![
                Command::DeleteService { service: svc(81) },
                add(81),
                Command::EditReal {
                    service: svc(82),
                    real: real(4, 7),
                },
            ],
        ];
        for mut batch in batches {
            // The last command fails: nothing of the batch stays.
            batch.push(Command::DeleteService { service: svc(99) });
            assert_eq!(s.apply_all(&batch), Err(ModelError::NoSuchService(svc(99))));
            assert_eq!(s, before);
            let order: Vec<u16> = s.services().map(|x| x.spec.id.vip.port).collect();
            assert_eq!(order, [80, 81, 82]);
        }
        // A batch that succeeds reports each service it touched as it was.
        let undo = s
            .apply_all(&[Command::DeleteService { service: svc(81) }, add(84)])
            .unwrap();
        let touched: Vec<(u16, bool)> = undo
            .touched()
            .into_iter()
            .map(|(id, old)| (id.vip.port, old.is_some()))
            .collect();
        assert_eq!(touched, [(81, true), (84, false)]);
    }
}
