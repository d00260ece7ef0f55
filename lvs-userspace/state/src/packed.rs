//! `-L`'s snapshot as it crosses the control socket: postcard, after a
//! `{"result":"packed_snapshot","bytes":N}` line. The JSON form (what
//! `--json` prints) flattens specs into views and omits empty fields, which
//! a compact binary format cannot carry, so the listing travels in this
//! layout instead: with 100,000 real servers it is a tenth of the JSON's
//! size and is read without serde's buffering. Every view is taken apart
//! field by field, so a new field fails to compile here until it is sent.

use lvs_sched::{SchedFlags, SchedulerName};
use serde::{Deserialize, Serialize};

use crate::{
    api::{HealthView, Rates, RealView, RefillStats, ServiceView, Snapshot, Stats},
    health::{ServiceHealth, SorryServer},
    model::{Persistence, RealSpec, ServiceId, ServiceSpec},
};

#[derive(Serialize, Deserialize)]
struct PackedSnapshot {
    conn_table_size: u32,
    services: Vec<PackedService>,
    verdicts: Vec<(String, u64)>,
    refills: RefillStats,
}

#[derive(Serialize, Deserialize)]
struct PackedService {
    id: ServiceId,
    scheduler: SchedulerName,
    flags: SchedFlags,
    persistence: Option<Persistence>,
    stats: Stats,
    rates: Rates,
    reals: Vec<PackedReal>,
    sorry: Option<SorryServer>,
    slow_start: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct PackedReal {
    spec: RealSpec,
    active_conns: u32,
    inactive_conns: u32,
    persistent_conns: u32,
    stats: Stats,
    rates: Rates,
    health: Option<PackedHealth>,
}

#[derive(Serialize, Deserialize)]
struct PackedHealth {
    state: String,
    reason: Option<String>,
    agent_percent: Option<u32>,
    slow_start_percent: Option<u32>,
    scheduled_weight: Option<u32>,
}

impl From<&Snapshot> for PackedSnapshot {
    fn from(s: &Snapshot) -> Self {
        let Snapshot {
            conn_table_size,
            services,
            verdicts,
            refills,
        } = s;
        Self {
            conn_table_size: *conn_table_size,
            services: services.iter().map(PackedService::from).collect(),
            verdicts: verdicts.clone(),
            refills: *refills,
        }
    }
}

impl From<&ServiceView> for PackedService {
    fn from(v: &ServiceView) -> Self {
        let ServiceView {
            spec,
            stats,
            rates,
            reals,
            health,
        } = v;
        let ServiceSpec {
            id,
            scheduler,
            flags,
            persistence,
        } = spec;
        let ServiceHealth { sorry, slow_start } = health;
        Self {
            id: *id,
            scheduler: *scheduler,
            flags: *flags,
            persistence: *persistence,
            stats: *stats,
            rates: *rates,
            reals: reals.iter().map(PackedReal::from).collect(),
            sorry: *sorry,
            slow_start: *slow_start,
        }
    }
}

impl From<&RealView> for PackedReal {
    fn from(v: &RealView) -> Self {
        let RealView {
            spec,
            active_conns,
            inactive_conns,
            persistent_conns,
            stats,
            rates,
            health,
        } = v;
        Self {
            spec: spec.clone(),
            active_conns: *active_conns,
            inactive_conns: *inactive_conns,
            persistent_conns: *persistent_conns,
            stats: *stats,
            rates: *rates,
            health: health.as_ref().map(|h| {
                let HealthView {
                    state,
                    reason,
                    agent_percent,
                    slow_start_percent,
                    scheduled_weight,
                } = h.clone();
                PackedHealth {
                    state,
                    reason,
                    agent_percent,
                    slow_start_percent,
                    scheduled_weight,
                }
            }),
        }
    }
}

impl From<PackedSnapshot> for Snapshot {
    fn from(p: PackedSnapshot) -> Self {
        Snapshot {
            conn_table_size: p.conn_table_size,
            services: p.services.into_iter().map(ServiceView::from).collect(),
            verdicts: p.verdicts,
            refills: p.refills,
        }
    }
}

impl From<PackedService> for ServiceView {
    fn from(p: PackedService) -> Self {
        ServiceView {
            spec: ServiceSpec {
                id: p.id,
                scheduler: p.scheduler,
                flags: p.flags,
                persistence: p.persistence,
            },
            stats: p.stats,
            rates: p.rates,
            reals: p.reals.into_iter().map(RealView::from).collect(),
            health: ServiceHealth {
                sorry: p.sorry,
                slow_start: p.slow_start,
            },
        }
    }
}

impl From<PackedReal> for RealView {
    fn from(p: PackedReal) -> Self {
        RealView {
            spec: p.spec,
            active_conns: p.active_conns,
            inactive_conns: p.inactive_conns,
            persistent_conns: p.persistent_conns,
            stats: p.stats,
            rates: p.rates,
            health: p.health.map(|h| HealthView {
                state: h.state,
                reason: h.reason,
                agent_percent: h.agent_percent,
                slow_start_percent: h.slow_start_percent,
                scheduled_weight: h.scheduled_weight,
            }),
        }
    }
}

/// The snapshot in its socket form.
pub fn pack(snapshot: &Snapshot) -> Vec<u8> {
    // About 26 bytes a server: reserved, not grown by doubling.
    let servers: usize = snapshot.services.iter().map(|s| s.reals.len() + 1).sum();
    let room = Vec::with_capacity(servers * 32 + 1024);
    postcard::to_extend(&PackedSnapshot::from(snapshot), room).expect("snapshots serialize")
}

/// Back from the socket form.
pub fn unpack(bytes: &[u8]) -> Result<Snapshot, postcard::Error> {
    postcard::from_bytes::<PackedSnapshot>(bytes).map(Snapshot::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        api::{HealthView, RealView},
        health::SorryServer,
        model::{Endpoint, Method, Protocol},
    };

    #[test]
    fn a_snapshot_comes_back_field_for_field() {
        let endpoint = |last: u8, port| Endpoint {
            addr: [198, 18, 0, last].into(),
            port,
        };
        let stats = |n: u64| Stats {
            conns: n,
            in_packets: n + 1,
            out_packets: n + 2,
            in_bytes: n + 3,
            out_bytes: n + 4,
        };
        let rates = |n: u64| Rates {
            cps: n,
            in_pps: n + 1,
            out_pps: n + 2,
            in_bps: n + 3,
            out_bps: n + 4,
        };
        let real = |last: u8, health: Option<HealthView>| RealView {
            spec: RealSpec {
                server: endpoint(last, 8080),
                method: Method::Route,
                weight: 3,
                u_threshold: 7,
                l_threshold: 2,
            },
            active_conns: 11,
            inactive_conns: 12,
            persistent_conns: 13,
            stats: stats(100),
            rates: rates(200),
            health,
        };
        let snapshot = Snapshot {
            conn_table_size: 262_144,
            services: vec![ServiceView {
                spec: ServiceSpec {
                    id: ServiceId {
                        protocol: Protocol::Udp,
                        vip: endpoint(10, 53),
                    },
                    scheduler: SchedulerName::Sh,
                    flags: SchedFlags {
                        sh_fallback: true,
                        sh_port: false,
                    },
                    persistence: Some(Persistence {
                        timeout: 300,
                        netmask: [255, 255, 255, 0].into(),
                    }),
                },
                stats: stats(1),
                rates: rates(2),
                reals: vec![
                    real(11, None),
                    real(
                        12,
                        Some(HealthView {
                            state: "down".into(),
                            reason: Some("tcp: refused".into()),
                            agent_percent: Some(50),
                            slow_start_percent: None,
                            scheduled_weight: Some(150),
                        }),
                    ),
                ],
                health: ServiceHealth {
                    sorry: Some(SorryServer {
                        server: endpoint(99, 80),
                        method: Method::Nat,
                    }),
                    slow_start: Some(30),
                },
            }],
            verdicts: vec![("redirect".into(), 5)],
            refills: RefillStats {
                count: 4,
                total_ns: 5,
                max_ns: 6,
                p99_ns: 7,
            },
        };
        assert_eq!(unpack(&pack(&snapshot)).unwrap(), snapshot);
    }
}
