//! `-L`'s snapshot as it crosses the control socket: postcard, after a
//! `{"result":"packed_snapshot","bytes":N}` line. The JSON form (what
//! `--json` prints) flattens specs into views and omits empty fields, which
//! a compact binary format cannot carry, so the listing travels in this
//! layout instead: with 100,000 real servers it is a tenth of the JSON's
//! size and is read without serde's buffering. Every view is taken apart
//! field by field, so a new field fails to compile here until it is sent.

use std::fmt;

use lvs_sched::{SchedFlags, SchedulerName};
use serde::{
    de::{SeqAccess, Visitor},
    Deserialize, Deserializer, Serialize, Serializer,
};

use crate::{
    api::{HealthView, Rates, RealView, RefillStats, ServiceView, Snapshot, Stats},
    health::{ServiceHealth, SorryServer},
    model::{Persistence, RealSpec, ServiceId, ServiceSpec},
};

// The layout, written from borrowed views (`*Out`) and read straight into
// views (`*In`): neither side copies the listing into an intermediate form.
// The same fields in the same order on both sides (the round trip below
// checks it).

#[derive(Serialize)]
struct SnapshotOut<'a> {
    conn_table_size: u32,
    services: ServicesOut<'a>,
    verdicts: &'a [(String, u64)],
    refills: RefillStats,
}

#[derive(Deserialize)]
struct SnapshotIn {
    conn_table_size: u32,
    services: ServicesIn,
    verdicts: Vec<(String, u64)>,
    refills: RefillStats,
}

#[derive(Serialize)]
struct ServiceOut<'a> {
    id: &'a ServiceId,
    scheduler: &'a SchedulerName,
    flags: &'a SchedFlags,
    persistence: &'a Option<Persistence>,
    stats: &'a Stats,
    rates: &'a Rates,
    reals: RealsOut<'a>,
    sorry: &'a Option<SorryServer>,
    slow_start: &'a Option<u32>,
    quorum: &'a Option<u32>,
    hysteresis: &'a Option<u32>,
    quorum_up: &'a Option<String>,
    quorum_down: &'a Option<String>,
    omega: bool,
}

#[derive(Deserialize)]
struct ServiceIn {
    id: ServiceId,
    scheduler: SchedulerName,
    flags: SchedFlags,
    persistence: Option<Persistence>,
    stats: Stats,
    rates: Rates,
    reals: RealsIn,
    sorry: Option<SorryServer>,
    slow_start: Option<u32>,
    quorum: Option<u32>,
    hysteresis: Option<u32>,
    quorum_up: Option<String>,
    quorum_down: Option<String>,
    omega: bool,
}

#[derive(Serialize)]
struct RealOut<'a> {
    spec: &'a RealSpec,
    active_conns: u32,
    inactive_conns: u32,
    persistent_conns: u32,
    stats: &'a Stats,
    rates: &'a Rates,
    health: Option<HealthOut<'a>>,
}

#[derive(Deserialize)]
struct RealIn {
    spec: RealSpec,
    active_conns: u32,
    inactive_conns: u32,
    persistent_conns: u32,
    stats: Stats,
    rates: Rates,
    health: Option<HealthIn>,
}

#[derive(Serialize)]
struct HealthOut<'a> {
    state: &'a str,
    reason: &'a Option<String>,
    agent_percent: &'a Option<u32>,
    slow_start_percent: &'a Option<u32>,
    dynamic_weight: &'a Option<u32>,
    scheduled_weight: &'a Option<u32>,
}

#[derive(Deserialize)]
struct HealthIn {
    state: String,
    reason: Option<String>,
    agent_percent: Option<u32>,
    slow_start_percent: Option<u32>,
    dynamic_weight: Option<u32>,
    scheduled_weight: Option<u32>,
}

struct ServicesOut<'a>(&'a [ServiceView]);
struct RealsOut<'a>(&'a [RealView]);

impl Serialize for ServicesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(service_out))
    }
}

impl Serialize for RealsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(real_out))
    }
}

fn service_out(v: &ServiceView) -> ServiceOut<'_> {
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
    let ServiceHealth {
        sorry,
        slow_start,
        quorum,
        hysteresis,
        quorum_up,
        quorum_down,
        omega,
    } = health;
    ServiceOut {
        id,
        scheduler,
        flags,
        persistence,
        stats,
        rates,
        reals: RealsOut(reals),
        sorry,
        slow_start,
        quorum,
        hysteresis,
        quorum_up,
        quorum_down,
        omega: *omega,
    }
}

fn real_out(v: &RealView) -> RealOut<'_> {
    let RealView {
        spec,
        active_conns,
        inactive_conns,
        persistent_conns,
        stats,
        rates,
        health,
    } = v;
    RealOut {
        spec,
        active_conns: *active_conns,
        inactive_conns: *inactive_conns,
        persistent_conns: *persistent_conns,
        stats,
        rates,
        health: health.as_ref().map(|h| {
            let HealthView {
                state,
                reason,
                agent_percent,
                slow_start_percent,
                dynamic_weight,
                scheduled_weight,
            } = h;
            HealthOut {
                state,
                reason,
                agent_percent,
                slow_start_percent,
                dynamic_weight,
                scheduled_weight,
            }
        }),
    }
}

/// A sequence read element by element into `T`s, each converted from its
/// packed form `P` as it arrives.
struct Converted<P, T>(Vec<T>, std::marker::PhantomData<P>);

impl<'de, P: Deserialize<'de>, T: From<P>> Deserialize<'de> for Converted<P, T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Elements<P, T>(std::marker::PhantomData<(P, T)>);
        impl<'de, P: Deserialize<'de>, T: From<P>> Visitor<'de> for Elements<P, T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(packed) = seq.next_element::<P>()? {
                    out.push(T::from(packed));
                }
                Ok(out)
            }
        }
        deserializer
            .deserialize_seq(Elements::<P, T>(std::marker::PhantomData))
            .map(|v| Converted(v, std::marker::PhantomData))
    }
}

type ServicesIn = Converted<ServiceIn, ServiceView>;
type RealsIn = Converted<RealIn, RealView>;

impl From<ServiceIn> for ServiceView {
    fn from(p: ServiceIn) -> Self {
        ServiceView {
            spec: ServiceSpec {
                id: p.id,
                scheduler: p.scheduler,
                flags: p.flags,
                persistence: p.persistence,
            },
            stats: p.stats,
            rates: p.rates,
            reals: p.reals.0,
            health: ServiceHealth {
                sorry: p.sorry,
                slow_start: p.slow_start,
                quorum: p.quorum,
                hysteresis: p.hysteresis,
                quorum_up: p.quorum_up,
                quorum_down: p.quorum_down,
                omega: p.omega,
            },
        }
    }
}

impl From<RealIn> for RealView {
    fn from(p: RealIn) -> Self {
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
                dynamic_weight: h.dynamic_weight,
                scheduled_weight: h.scheduled_weight,
            }),
        }
    }
}

/// The snapshot in its socket form.
pub fn pack(snapshot: &Snapshot) -> Vec<u8> {
    let Snapshot {
        conn_table_size,
        services,
        verdicts,
        refills,
    } = snapshot;
    // About 26 bytes a server: reserved, not grown by doubling.
    let servers: usize = services.iter().map(|s| s.reals.len() + 1).sum();
    let room = Vec::with_capacity(servers * 32 + 1024);
    let out = SnapshotOut {
        conn_table_size: *conn_table_size,
        services: ServicesOut(services),
        verdicts,
        refills: *refills,
    };
    postcard::to_extend(&out, room).expect("snapshots serialize")
}

/// Back from the socket form.
pub fn unpack(bytes: &[u8]) -> Result<Snapshot, postcard::Error> {
    let p: SnapshotIn = postcard::from_bytes(bytes)?;
    Ok(Snapshot {
        conn_table_size: p.conn_table_size,
        services: p.services.0,
        verdicts: p.verdicts,
        refills: p.refills,
    })
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
                        fallback: true,
                        port: false,
                        ipvs_order: false,
                    },
                    persistence: Some(Persistence {
                        timeout: 300,
                        prefix: 24,
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
                            dynamic_weight: Some(7),
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
                    quorum: Some(2),
                    hysteresis: Some(1),
                    quorum_up: Some("echo up".into()),
                    quorum_down: None,
                    omega: true,
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
