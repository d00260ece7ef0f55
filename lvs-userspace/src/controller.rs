//! Applies commands to the desired state and keeps the datapath in step.
//!
//! A batch is validated whole against a copy of the state first, so a bad
//! request changes nothing. Then each command runs the scheduler hooks in
//! order (as IPVS would, one change at a time), and every touched service
//! publishes one fresh ring at the end.

use std::collections::{BTreeSet, HashMap};

use lvs_common::{
    ring_base, tcp_state::DEFAULT_TIMEOUTS, ConnState, Counters, Direction, Real,
    Service as ServiceValue, ServiceKey, Verdict, MAX_REALS, MAX_SERVICES, RING_SLOTS,
};

use crate::{
    api::{RealView, ServiceView, Snapshot, Stats},
    conntable::{self, Timeouts},
    datapath::{Datapath, DatapathError},
    model::{Command, Endpoint, ModelError, RealSpec, Service, ServiceId, State},
    publish,
    sched::{Dest, SchedFlags, Scheduler},
};

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Invalid(#[from] ModelError),
    #[error("too many {what} (the datapath holds {max})")]
    Capacity { what: &'static str, max: u32 },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
}

/// What the controller keeps per live service.
#[derive(Debug)]
struct Runtime {
    index: u32,
    /// Ring half the datapath reads now.
    half: u32,
    ring_len: u32,
    cursor_origin: u32,
    /// Scheduler state as of the last publication (plus hooks since).
    sched: Box<dyn Scheduler>,
    dests: Vec<Dest>,
    /// Whether this batch already caught the scheduler up with the datapath.
    synced: bool,
}

/// Active and inactive connections of one real server, from the last count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ConnCounts {
    active: u32,
    inactive: u32,
}

/// Index allocator: lowest free first.
#[derive(Debug)]
struct Slots {
    free: BTreeSet<u32>,
}

impl Slots {
    fn new(max: u32) -> Self {
        Self {
            free: (0..max).collect(),
        }
    }
    fn take(&mut self) -> Option<u32> {
        self.free.pop_first()
    }
    fn give(&mut self, i: u32) {
        self.free.insert(i);
    }
}

pub struct Controller<D> {
    state: State,
    datapath: D,
    runtimes: HashMap<ServiceId, Runtime>,
    real_index: HashMap<(ServiceId, Endpoint), u32>,
    service_slots: Slots,
    real_slots: Slots,
    /// `-Z` subtracts these snapshots, as the kernel does.
    service_baseline: HashMap<u32, Counters>,
    real_baseline: HashMap<u32, Counters>,
    timeouts: Timeouts,
    /// Per real index, from the last walk of the connection table.
    counts: HashMap<u32, ConnCounts>,
}

/// Same servers, weights and flags: connection counts alone are no reason
/// to run a scheduler's hooks.
fn same_servers(a: &[Dest], b: &[Dest]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x.id, x.weight, x.overloaded) == (y.id, y.weight, y.overloaded))
}

fn service_key(id: &ServiceId) -> ServiceKey {
    ServiceKey::new(id.vip.addr.octets(), id.vip.port, id.protocol.number())
}

fn datapath_real(r: &RealSpec) -> Real {
    Real::new(r.server.addr.octets(), r.server.port, r.method.datapath())
}

impl<D: Datapath> Controller<D> {
    pub fn new(datapath: D) -> Self {
        Self {
            state: State::default(),
            datapath,
            runtimes: HashMap::new(),
            real_index: HashMap::new(),
            service_slots: Slots::new(MAX_SERVICES),
            real_slots: Slots::new(MAX_REALS),
            service_baseline: HashMap::new(),
            real_baseline: HashMap::new(),
            timeouts: DEFAULT_TIMEOUTS,
            counts: HashMap::new(),
        }
    }

    /// Count every live connection per real server, as IPVS's ActiveConn and
    /// InActConn (§3.2), then refill the ring of every count-driven service
    /// (lc, wlc, sed, nq) whose servers' counts moved or whose ring is half
    /// used. Returns how many rings were refilled.
    pub fn recount(&mut self) -> Result<usize, ControlError> {
        let now = self.datapath.now_ns()?;
        let mut counts: HashMap<u32, ConnCounts> = HashMap::new();
        for (_, conn) in self.datapath.connections()? {
            if conn.direction != Direction::Inbound as u8
                || conntable::expired(&conn, now, &self.timeouts)
            {
                continue;
            }
            let c = counts.entry(conn.real_index).or_default();
            if ConnState::from_u8(conn.state).is_some_and(ConnState::is_active) {
                c.active += 1;
            } else {
                c.inactive += 1;
            }
        }
        self.counts = counts;
        let mut due = BTreeSet::new();
        for (id, rt) in &self.runtimes {
            let Some(svc) = self.state.service(id) else {
                continue;
            };
            if !svc.spec.scheduler.counts_connections() {
                continue;
            }
            let consumed = self
                .datapath
                .cursor(rt.index)?
                .wrapping_sub(rt.cursor_origin);
            let moved = rt.dests.iter().any(|d| {
                let c = self.counts.get(&d.id).copied().unwrap_or_default();
                (c.active, c.inactive) != (d.active, d.inactive)
            });
            if moved || consumed * 2 >= rt.ring_len.max(1) {
                due.insert(*id);
            }
        }
        for id in &due {
            let rt = self.runtimes.get_mut(id).expect("listed above");
            // Count-driven schedulers keep no state between picks: the new
            // ring starts from the live counts at the current cursor.
            rt.cursor_origin = self.datapath.cursor(rt.index)?;
            rt.synced = true;
            for d in &mut rt.dests {
                let c = self.counts.get(&d.id).copied().unwrap_or_default();
                (d.active, d.inactive) = (c.active, c.inactive);
            }
        }
        self.publish_touched(&due)?;
        Ok(due.len())
    }

    /// Idle timeouts per connection state, in seconds, for the datapath and
    /// the sweeper alike.
    pub fn set_timeouts(&mut self, timeouts: Timeouts) -> Result<(), ControlError> {
        self.datapath.set_timeouts(&timeouts)?;
        self.timeouts = timeouts;
        Ok(())
    }

    /// Remove connection entries that have expired (see `conntable`);
    /// returns how many went.
    pub fn sweep(&mut self) -> Result<usize, ControlError> {
        let listed = self.datapath.connections()?;
        let dead = conntable::dead_entries(&listed, self.datapath.now_ns()?, &self.timeouts);
        let mut removed = 0;
        for key in dead {
            // A packet may have revived or replaced the entry since the listing.
            let Some(conn) = self.datapath.connection(&key)? else {
                continue;
            };
            // A reply entry is judged by its inbound entry, read fresh too.
            let owner = if conn.direction == Direction::Outbound as u8 {
                self.datapath
                    .connection(&conntable::inbound_key(&key, &conn))?
            } else {
                None
            };
            let now = self.datapath.now_ns()?;
            if conntable::is_dead(&key, &conn, |_| owner, now, &self.timeouts) {
                self.datapath.remove_connection(&key)?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn datapath(&self) -> &D {
        &self.datapath
    }

    #[cfg(test)]
    pub fn datapath_mut(&mut self) -> &mut D {
        &mut self.datapath
    }

    /// Apply a batch: all of it, or (on a validation error) none of it.
    pub fn apply(&mut self, commands: &[Command]) -> Result<(), ControlError> {
        let mut target = self.state.clone();
        target.apply_all(commands)?;
        // Indexes of removed objects are only freed at the end of the batch,
        // so old and new objects count together, each once.
        let services: BTreeSet<ServiceId> = self
            .state
            .services
            .iter()
            .chain(&target.services)
            .map(|s| s.spec.id)
            .collect();
        if services.len() > MAX_SERVICES as usize {
            return Err(ControlError::Capacity {
                what: "services",
                max: MAX_SERVICES,
            });
        }
        let reals: BTreeSet<(ServiceId, Endpoint)> = self
            .state
            .services
            .iter()
            .chain(&target.services)
            .flat_map(|s| s.reals.iter().map(|r| (s.spec.id, r.server)))
            .collect();
        if reals.len() > MAX_REALS as usize {
            return Err(ControlError::Capacity {
                what: "real servers",
                max: MAX_REALS,
            });
        }

        // The batch is valid: replay it command by command, running the
        // scheduler hooks for the services each one changes, as IPVS would.
        let mut touched = BTreeSet::new();
        let mut step = self.state.clone();
        for command in commands {
            let before: Vec<(ServiceId, Option<Service>)> = step
                .affected(command)
                .into_iter()
                .map(|id| (id, step.service(&id).cloned()))
                .collect();
            step.apply(command)?;
            // IPVS runs the scheduler's update hook on every -a/-e/-d, even
            // one that changes nothing the scheduler reads (wrr resets then).
            let hooked = matches!(
                command,
                Command::AddReal { .. } | Command::EditReal { .. } | Command::DeleteReal { .. }
            );
            for (id, old) in before {
                self.run_hooks(id, old.as_ref(), step.service(&id), hooked, &mut touched)?;
            }
        }
        self.state = step;
        self.publish_touched(&touched)?;
        Ok(())
    }

    /// Scheduler hooks for one service's change by one command.
    fn run_hooks(
        &mut self,
        id: ServiceId,
        old: Option<&Service>,
        new: Option<&Service>,
        hooked: bool,
        touched: &mut BTreeSet<ServiceId>,
    ) -> Result<(), ControlError> {
        let Some(svc) = new else {
            // Deleted: unpublished at the end of the batch.
            touched.insert(id);
            return Ok(());
        };
        if old == Some(svc) && !hooked {
            return Ok(());
        }
        touched.insert(id);
        if !self.runtimes.contains_key(&id) {
            let index = self.service_slots.take().ok_or(ControlError::Capacity {
                what: "services",
                max: MAX_SERVICES,
            })?;
            self.datapath.reset_service_counters(index)?;
            self.service_baseline.remove(&index);
            let origin = self.datapath.cursor(index)?;
            self.runtimes.insert(
                id,
                Runtime {
                    index,
                    half: 1,
                    ring_len: 0,
                    cursor_origin: origin,
                    sched: svc.spec.scheduler.instantiate(&[], SchedFlags::default()),
                    dests: Vec::new(),
                    synced: true,
                },
            );
        }
        let dests = self.dests_for(svc, old)?;
        let rt = self.runtimes.get_mut(&id).expect("runtime created above");
        if !rt.synced {
            // Catch up with the picks the datapath made since publishing.
            // This cursor value becomes the new ring's origin: picks made
            // from the old ring until the flip stand in for the new ring's
            // first slots, so the sequence neither repeats nor skips.
            let now = self.datapath.cursor(rt.index)?;
            if !svc.spec.scheduler.counts_connections() {
                publish::advance(
                    rt.sched.as_mut(),
                    &rt.dests,
                    now.wrapping_sub(rt.cursor_origin),
                    rt.ring_len as usize,
                );
            }
            rt.cursor_origin = now;
            rt.synced = true;
        }
        if old.is_some_and(|o| o.spec.scheduler != svc.spec.scheduler) {
            rt.sched = svc
                .spec
                .scheduler
                .instantiate(&dests, SchedFlags::default());
        } else if !same_servers(&rt.dests, &dests) || hooked {
            rt.sched.update(&rt.dests, &dests);
        }
        rt.dests = dests;
        Ok(())
    }

    /// Real server indexes for a service's list (allocating new ones), in
    /// IPVS order, with their datapath entries written.
    fn dests_for(
        &mut self,
        svc: &Service,
        old: Option<&Service>,
    ) -> Result<Vec<Dest>, ControlError> {
        // Only new or changed servers are written: one command must not cost
        // a syscall per server of the service.
        let written: HashMap<Endpoint, Real> = old
            .map(|o| {
                o.reals
                    .iter()
                    .map(|r| (r.server, datapath_real(r)))
                    .collect()
            })
            .unwrap_or_default();
        let mut dests = Vec::with_capacity(svc.reals.len());
        for real in &svc.reals {
            let key = (svc.spec.id, real.server);
            let index = match self.real_index.get(&key) {
                Some(&i) => i,
                None => {
                    let i = self.real_slots.take().ok_or(ControlError::Capacity {
                        what: "real servers",
                        max: MAX_REALS,
                    })?;
                    self.datapath.reset_real_counters(i)?;
                    self.real_baseline.remove(&i);
                    self.real_index.insert(key, i);
                    i
                }
            };
            let entry = datapath_real(real);
            if written.get(&real.server) != Some(&entry) {
                self.datapath.set_real(index, entry)?;
            }
            let counts = self.counts.get(&index).copied().unwrap_or_default();
            dests.push(Dest {
                id: index,
                weight: real.weight,
                overloaded: false,
                active: counts.active,
                inactive: counts.inactive,
            });
        }
        Ok(dests)
    }

    fn publish_touched(&mut self, touched: &BTreeSet<ServiceId>) -> Result<(), ControlError> {
        for id in touched {
            let Some(svc) = self.state.service(id) else {
                // Deleted: unpublish, then free its indexes.
                if let Some(rt) = self.runtimes.remove(id) {
                    self.datapath.remove_service(service_key(id))?;
                    self.service_slots.give(rt.index);
                }
                self.release_reals(id, &[]);
                continue;
            };
            let live: Vec<Endpoint> = svc.reals.iter().map(|r| r.server).collect();
            let rt = self
                .runtimes
                .get_mut(id)
                .expect("touched services have runtimes");
            let ring = if svc.spec.scheduler.counts_connections() {
                publish::build_counting_ring(rt.sched.as_ref(), &rt.dests, RING_SLOTS as usize)
            } else {
                publish::build_ring(rt.sched.as_ref(), &rt.dests, RING_SLOTS as usize)
            };
            let half = 1 - rt.half;
            let base = ring_base(rt.index, half);
            self.datapath.write_ring(base, &ring.picks)?;
            let value = ServiceValue {
                index: rt.index,
                ring_base: base,
                ring_len: ring.picks.len() as u32,
                cursor_origin: rt.cursor_origin,
            };
            self.datapath.set_service(service_key(id), value)?;
            rt.half = half;
            rt.ring_len = value.ring_len;
            rt.synced = false;
            if !ring.exact {
                tracing::warn!(service = %id, "scheduling period longer than {RING_SLOTS} picks; the ring approximates it");
            }
            self.release_reals(id, &live);
        }
        Ok(())
    }

    fn release_reals(&mut self, id: &ServiceId, keep: &[Endpoint]) {
        let gone: Vec<_> = self
            .real_index
            .keys()
            .filter(|(s, e)| s == id && !keep.contains(e))
            .copied()
            .collect();
        for key in gone {
            if let Some(i) = self.real_index.remove(&key) {
                self.real_slots.give(i);
            }
        }
    }

    /// `-Z`: zero one service's counters (and its servers'), or all.
    pub fn zero(&mut self, service: Option<ServiceId>) -> Result<(), ControlError> {
        if let Some(id) = service {
            if self.state.service(&id).is_none() {
                return Err(ModelError::NoSuchService(id).into());
            }
        }
        let chosen: Vec<(u32, Vec<u32>)> = self
            .runtimes
            .iter()
            .filter(|(id, _)| service.is_none_or(|s| s == **id))
            .map(|(_, rt)| (rt.index, rt.dests.iter().map(|d| d.id).collect()))
            .collect();
        for (index, reals) in chosen {
            let c = self.datapath.service_counters(index)?;
            self.service_baseline.insert(index, c);
            for r in reals {
                let c = self.datapath.real_counters(r)?;
                self.real_baseline.insert(r, c);
            }
        }
        Ok(())
    }

    /// Everything `lvsadm -L` shows.
    pub fn snapshot(&self) -> Result<Snapshot, ControlError> {
        let mut services = Vec::new();
        for svc in &self.state.services {
            let rt = &self.runtimes[&svc.spec.id];
            let raw = self.datapath.service_counters(rt.index)?;
            let stats = Stats::since(raw, self.service_baseline.get(&rt.index));
            let mut reals = Vec::new();
            for real in &svc.reals {
                let index = self.real_index[&(svc.spec.id, real.server)];
                let raw = self.datapath.real_counters(index)?;
                let counts = self.counts.get(&index).copied().unwrap_or_default();
                reals.push(RealView {
                    spec: real.clone(),
                    active_conns: counts.active,
                    inactive_conns: counts.inactive,
                    stats: Stats::since(raw, self.real_baseline.get(&index)),
                });
            }
            services.push(ServiceView {
                spec: svc.spec.clone(),
                stats,
                reals,
            });
        }
        let verdicts = self
            .datapath
            .verdicts()?
            .into_iter()
            .map(|(v, n)| (Verdict::name(v).to_string(), n))
            .collect();
        Ok(Snapshot {
            conn_table_size: lvs_common::CONN_TABLE_SIZE,
            services,
            verdicts,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::{
        datapath::fake::FakeDatapath,
        model::{Method, Protocol, ServiceSpec},
        sched::SchedulerName,
    };

    fn svc() -> ServiceId {
        ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: Ipv4Addr::new(198, 18, 0, 10),
                port: 80,
            },
        }
    }
    fn real(last: u8, weight: u32) -> RealSpec {
        RealSpec {
            server: Endpoint {
                addr: Ipv4Addr::new(198, 18, 10 + last, 2),
                port: 8080,
            },
            method: Method::Nat,
            weight,
            u_threshold: 0,
            l_threshold: 0,
        }
    }
    fn add_real(last: u8, weight: u32) -> Command {
        Command::AddReal {
            service: svc(),
            real: real(last, weight),
        }
    }
    fn setup(sched: SchedulerName, weights: &[u32]) -> Controller<FakeDatapath> {
        let mut c = Controller::new(FakeDatapath::default());
        let mut cmds = vec![Command::AddService(ServiceSpec {
            id: svc(),
            scheduler: sched,
            flags: Default::default(),
            persistence: None,
        })];
        cmds.extend(
            weights
                .iter()
                .enumerate()
                .map(|(i, &w)| add_real(i as u8 + 1, w)),
        );
        c.apply(&cmds).unwrap();
        c
    }
    fn picks(c: &mut Controller<FakeDatapath>, n: usize) -> String {
        let key = service_key(&svc());
        (0..n)
            .map(|_| {
                c.datapath_mut()
                    .schedule(&key)
                    .map_or('-', |r| char::from(b'0' + r.addr()[2] - 10))
            })
            .collect()
    }

    #[test]
    fn rr_through_the_ring_follows_ipvs_order() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 7), "3213213");
    }

    #[test]
    fn wrr_three_two_one_splits_sixty_as_thirty_twenty_ten() {
        let mut c = setup(SchedulerName::Wrr, &[1, 2, 3]);
        let seq = picks(&mut c, 60);
        assert_eq!(
            [
                seq.matches('3').count(),
                seq.matches('2').count(),
                seq.matches('1').count()
            ],
            [30, 20, 10],
            "{seq}"
        );
    }

    #[test]
    fn republishing_continues_where_the_datapath_was() {
        let mut c = setup(SchedulerName::Rr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 2), "32");
        // Quiesce server 2 (weight 0): rotation carries on after it.
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(2, 0),
        }])
        .unwrap();
        assert_eq!(picks(&mut c, 4), "1313");
    }

    #[test]
    fn an_edit_that_changes_nothing_still_runs_the_wrr_hook() {
        // As in the kernel: -e resets wrr's cursor to the list head.
        let mut c = setup(SchedulerName::Wrr, &[1, 1, 1]);
        assert_eq!(picks(&mut c, 1), "3");
        c.apply(&[Command::EditReal {
            service: svc(),
            real: real(1, 1),
        }])
        .unwrap();
        assert_eq!(picks(&mut c, 3), "321");
    }

    #[test]
    fn capacity_counts_each_real_server_once() {
        // Over half the table in use (520 services x 8 servers), then one
        // more server: existing servers must not be counted twice.
        let mut c = Controller::new(FakeDatapath::default());
        let mut cmds = Vec::new();
        for n in 0..520u16 {
            let id = ServiceId {
                protocol: Protocol::Udp,
                vip: Endpoint {
                    addr: Ipv4Addr::new(198, 18, 0, 10),
                    port: 1000 + n,
                },
            };
            cmds.push(Command::AddService(ServiceSpec {
                id,
                scheduler: SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            }));
            for last in 1..=8 {
                cmds.push(Command::AddReal {
                    service: id,
                    real: real(last, 1),
                });
            }
        }
        c.apply(&cmds).unwrap();
        const { assert!(520 * 8 > MAX_REALS / 2) };
        c.apply(&[
            Command::AddService(ServiceSpec {
                id: svc(),
                scheduler: SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            }),
            add_real(1, 1),
        ])
        .unwrap();
        assert_eq!(c.state().services.len(), 521);
    }

    #[test]
    fn a_bad_batch_leaves_maps_untouched() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        let before = c.datapath_mut().services.clone();
        let err = c.apply(&[add_real(2, 1), add_real(2, 1)]).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        assert_eq!(c.datapath_mut().services, before);
        assert_eq!(c.state().services[0].reals.len(), 1);
    }

    #[test]
    fn deleting_a_service_unpublishes_and_frees_indexes() {
        let mut c = setup(SchedulerName::Rr, &[1, 1]);
        c.apply(&[Command::DeleteService { service: svc() }])
            .unwrap();
        assert!(c.datapath_mut().services.is_empty());
        assert!(c.real_index.is_empty());
        assert_eq!(c.service_slots.free.len(), MAX_SERVICES as usize);
    }

    #[test]
    fn zeroing_subtracts_a_snapshot() {
        let mut c = setup(SchedulerName::Rr, &[1]);
        picks(&mut c, 3);
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 3);
        c.zero(None).unwrap();
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 0);
        picks(&mut c, 1);
        assert_eq!(c.snapshot().unwrap().services[0].reals[0].stats.conns, 1);
    }
}
