//! What the lvsd before this one left: a datapath that outlived it
//! (`Lifetime::Kernel`) pins its tables beside its program arrays
//! (`kernel::HANDED_OVER`), and the next lvsd reads its connections,
//! persistence templates and counters from them, by address, before it
//! replaces that datapath with its own. Read by address, not by index, so
//! the new lvsd's indexes need not be the old one's (the table moves as the
//! HA backup's import moves a peer's).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use lvs_common::{
    addr::{Addr, In6},
    Conn, Counters, FlowKey, Real, Service, ServiceKey, Template, TemplateKey,
};
use lvs_ha::conn::{SyncConn, SyncTemplate};

use crate::{kernel::entries, DatapathError};

/// The tables a gone lvsd pinned, open.
pub struct Previous {
    dir: PathBuf,
    conns: HashMap<MapData, FlowKey, Conn>,
    conns6: HashMap<MapData, FlowKey<In6>, Conn<In6>>,
    templates: HashMap<MapData, TemplateKey, Template>,
    templates6: HashMap<MapData, TemplateKey<In6>, Template>,
    services: HashMap<MapData, ServiceKey, Service>,
    services6: HashMap<MapData, ServiceKey<In6>, Service<In6>>,
    reals: Array<MapData, Real>,
    reals6: Array<MapData, Real<In6>>,
    service_stats: PerCpuArray<MapData, Counters>,
    real_stats: PerCpuArray<MapData, Counters>,
}

fn open<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    dir: &Path,
    name: &'static str,
) -> Result<T, DatapathError> {
    let failed = |op| {
        move |source| DatapathError::Map {
            op,
            map: name,
            source,
        }
    };
    let data = MapData::from_pin(dir.join(name)).map_err(failed("BPF_OBJ_GET"))?;
    let map = aya::maps::Map::from_map_data(data).map_err(failed("open"))?;
    T::try_from(map).map_err(failed("open"))
}

/// A service as the old tables name it: protocol and address.
type ServiceAt = (u8, SocketAddr);

impl Previous {
    /// Open the tables pinned in `dir` (a gone lvsd's pin directory).
    pub fn open(dir: &Path) -> Result<Self, DatapathError> {
        Ok(Self {
            dir: dir.to_path_buf(),
            conns: open(dir, "CONNS")?,
            conns6: open(dir, "CONNS6")?,
            templates: open(dir, "TEMPLATES")?,
            templates6: open(dir, "TEMPLATES6")?,
            services: open(dir, "SERVICES")?,
            services6: open(dir, "SERVICES6")?,
            reals: open(dir, "REALS")?,
            reals6: open(dir, "REALS6")?,
            service_stats: open(dir, "SERVICE_STATS")?,
            real_stats: open(dir, "REAL_STATS")?,
        })
    }

    /// The pin directory it was read from (its lvsd's pid ends the name).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every inbound connection entry, as the HA sync carries it (a NAT
    /// reply entry is made again from its inbound one; a tunnel across
    /// families names its server by index only, and is not carried).
    pub fn connections(&self, now_ns: u64) -> Result<Vec<SyncConn>, DatapathError> {
        let mut out: Vec<SyncConn> = entries(&self.conns, "CONNS")?
            .iter()
            .filter_map(|(k, c)| SyncConn::of(k, c, now_ns))
            .collect();
        out.extend(
            entries(&self.conns6, "CONNS6")?
                .iter()
                .filter_map(|(k, c)| SyncConn::of(k, c, now_ns)),
        );
        Ok(out)
    }

    /// Every service's index, by protocol and address.
    pub fn services(&self) -> Result<Vec<(ServiceAt, u32)>, DatapathError> {
        fn of<A: Addr>(key: &ServiceKey<A>) -> ServiceAt {
            (key.proto(), SocketAddr::new(key.addr().ip(), key.port()))
        }
        let mut out: Vec<(ServiceAt, u32)> = entries(&self.services, "SERVICES")?
            .iter()
            .map(|(k, s)| (of(k), s.index))
            .collect();
        out.extend(
            entries(&self.services6, "SERVICES6")?
                .iter()
                .map(|(k, s)| (of(k), s.index)),
        );
        Ok(out)
    }

    /// The address, port and method of real index `index` (it is in one
    /// family's array at a time).
    fn real(&self, index: u32) -> Option<(SocketAddr, u8)> {
        let v4 = self.reals.get(&index, 0).ok();
        let v6 = self.reals6.get(&index, 0).ok();
        v4.filter(|r| r.addr() != <[u8; 4]>::UNSPECIFIED)
            .map(|r| (SocketAddr::new(r.addr().ip(), r.port()), r.method))
            .or_else(|| {
                v6.filter(|r| r.addr() != In6::UNSPECIFIED)
                    .map(|r| (SocketAddr::new(r.addr().ip(), r.port()), r.method))
            })
    }

    /// Every live persistence template, as the HA sync carries it.
    pub fn templates(&self, now_ns: u64) -> Result<Vec<SyncTemplate>, DatapathError> {
        let services: std::collections::HashMap<u32, ServiceAt> = self
            .services()?
            .into_iter()
            .map(|(at, i)| (i, at))
            .collect();
        let mut out = Vec::new();
        let mut carry = |service_index: u32, client_net: std::net::IpAddr, t: &Template| {
            let (Some(&(protocol, service)), Some((real, method))) =
                (services.get(&service_index), self.real(t.real_index))
            else {
                return;
            };
            if t.expires_ns <= now_ns || real.is_ipv6() != service.is_ipv6() {
                return;
            }
            out.push(SyncTemplate {
                protocol,
                client_net,
                service,
                real,
                method,
                remaining_ms: ((t.expires_ns - now_ns) / 1_000_000).min(u64::from(u32::MAX)) as u32,
            });
        };
        for (k, t) in entries(&self.templates, "TEMPLATES")? {
            carry(k.service_index, k.client_net().ip(), &t);
        }
        for (k, t) in entries(&self.templates6, "TEMPLATES6")? {
            carry(k.service_index, k.client_net().ip(), &t);
        }
        Ok(out)
    }

    /// Service index `index`'s counters, summed over CPUs.
    pub fn service_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        sum(&self.service_stats, index, "SERVICE_STATS")
    }

    /// Real index `index`'s counters, summed over CPUs.
    pub fn real_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        sum(&self.real_stats, index, "REAL_STATS")
    }
}

fn sum(
    map: &PerCpuArray<MapData, Counters>,
    index: u32,
    name: &'static str,
) -> Result<Counters, DatapathError> {
    crate::kernel::sum(
        map.get(&index, 0)
            .map_err(crate::kernel::map_err("bpf_map_lookup_elem", name))?,
    )
}
