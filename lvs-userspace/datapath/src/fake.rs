//! An in-memory datapath for unit tests: same contract, no kernel.

use std::collections::HashMap;

use lvs_common::{
    addr::{Addr, In6},
    hash::{dh_bucket, mh_key, mh_slot, sh_bucket, HASH_BUCKETS, MH_TABLE_SIZE},
    service_flags,
    tcp_state::STATE_COUNT,
    Conn, ConnCounts, Counters, Event, EventKind, FlowKey, Form, IcmpCase, LocalityEntry,
    LocalityKey, Real, ReplyKey, ReplyServices, Service, ServiceKey, Template, TemplateKey,
    Verdict, MH_PROBE, NO_REAL, RING_SLOTS,
};

use crate::{ConnEntries, Datapath, DatapathError, Family, Limits, Notice};

#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub services: HashMap<ServiceKey, Service>,
    pub reals: HashMap<u32, Real>,
    pub rings: HashMap<u32, u32>,
    pub buckets: HashMap<u32, u32>,
    /// What `announce` was last given.
    pub announced: std::collections::BTreeSet<std::net::IpAddr>,
    /// `MAGLEV`'s slots as last written.
    pub maglev: HashMap<u32, u32>,
    pub locality: HashMap<LocalityKey, LocalityEntry>,
    pub templates: HashMap<TemplateKey, Template>,
    pub events: Vec<Event>,
    pub cursors: HashMap<u32, u32>,
    pub service_stats: HashMap<u32, Counters>,
    pub real_stats: HashMap<u32, Counters>,
    pub conns: HashMap<FlowKey, Conn>,
    pub services6: HashMap<ServiceKey<In6>, Service<In6>>,
    pub reals6: HashMap<u32, Real<In6>>,
    pub conns6: HashMap<FlowKey<In6>, Conn<In6>>,
    pub templates6: HashMap<TemplateKey<In6>, Template>,
    pub locality6: HashMap<LocalityKey<In6>, LocalityEntry>,
    /// The `RELEVANT` bitmaps as last written.
    pub relevant: Vec<u32>,
    pub reply_services: HashMap<ReplyKey, ReplyServices>,
    /// `EGRESS_GENERATION`.
    pub egress_generation: u32,
    pub timeouts: [u32; STATE_COUNT as usize],
    pub now_ns: u64,
    pub limits: Limits,
    pub settings: lvs_common::Settings,
    /// Addresses `is_local` says the director holds (besides loopback).
    pub local: std::collections::BTreeSet<std::net::IpAddr>,
    pub next_hops: HashMap<std::net::IpAddr, crate::ResolvedHop>,
    /// Fault injection: after this many more map writes succeed, the next
    /// one fails (or, with `panic_on_failure`, panics mid-write).
    pub fail_after_writes: Option<usize>,
    pub panic_on_failure: bool,
}

impl FakeDatapath {
    /// Count a map write against `fail_after_writes`.
    fn write(&mut self, map: &'static str) -> Result<(), DatapathError> {
        match self.fail_after_writes {
            Some(0) => {
                self.fail_after_writes = None;
                if self.panic_on_failure {
                    panic!("injected panic writing {map}");
                }
                Err(DatapathError::Record {
                    call: "injected failure",
                    path: map.into(),
                    source: std::io::Error::other("fault injection"),
                })
            }
            Some(n) => {
                self.fail_after_writes = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Play the datapath's part for one new flow to `key` from an
    /// unspecified client.
    pub fn schedule(&mut self, key: &ServiceKey) -> Option<Real> {
        self.schedule_from(key, [0; 4], 0)
    }

    /// As `lvs-ebpf/src/schedule.rs` does for a new flow from
    /// `client:client_port`: template, then the service's form.
    pub fn schedule_from(
        &mut self,
        key: &ServiceKey,
        client: [u8; 4],
        client_port: u16,
    ) -> Option<Real> {
        let svc = *self.services.get(key)?;
        let real_index = if svc.has(service_flags::PERSISTENT) {
            let mask = u32::from_be_bytes(svc.persist_mask());
            let net = (u32::from_be_bytes(client) & mask).to_be_bytes();
            let tkey = TemplateKey::new(svc.index, net);
            let expires = self.now_ns + svc.persist_timeout_s as u64 * 1_000_000_000;
            match self.templates.get_mut(&tkey) {
                Some(t) if self.now_ns < t.expires_ns => {
                    t.expires_ns = expires;
                    t.real_index
                }
                _ => {
                    let r = self.choose(&svc, key, client, client_port)?;
                    self.templates.insert(tkey, Template::new(r, expires));
                    r
                }
            }
        } else {
            self.choose(&svc, key, client, client_port)?
        };
        let counters = self.real_stats.entry(real_index).or_default();
        counters.conns += 1;
        self.reals.get(&real_index).copied()
    }

    fn choose(
        &mut self,
        svc: &Service,
        key: &ServiceKey,
        client: [u8; 4],
        client_port: u16,
    ) -> Option<u32> {
        let real = if svc.form == Form::Buckets as u8 {
            let b = if svc.has(service_flags::HASH_DESTINATION) {
                dh_bucket(key.addr())
            } else if svc.has(service_flags::HASH_PORT) {
                sh_bucket(client, client_port)
            } else {
                sh_bucket(client, 0)
            };
            self.buckets[&(svc.bucket_base + b)]
        } else if svc.form == Form::Maglev as u8 {
            let port = if svc.has(service_flags::HASH_PORT) {
                client_port
            } else {
                0
            };
            let key = mh_key(client, port);
            let slot = mh_slot(key, 0);
            let at = |slot: u32| self.maglev[&(svc.bucket_base + slot)];
            // mh-fallback's probe, as the datapath runs it.
            let mut real = at(slot);
            let mut offset = 0;
            while real == MH_PROBE && offset < MH_TABLE_SIZE {
                real = at(mh_slot(key, (offset + slot) % MH_TABLE_SIZE));
                offset += 1;
            }
            if real == MH_PROBE {
                NO_REAL
            } else {
                real
            }
        } else if svc.form == Form::Locality as u8 {
            let lkey = LocalityKey::new(svc.index, key.addr());
            if let Some(e) = self.locality.get_mut(&lkey) {
                e.last_use_ns = self.now_ns;
                e.real_index
            } else {
                let r = self.claim(svc)?;
                self.locality
                    .insert(lkey, LocalityEntry::new(r, self.now_ns));
                self.events.push(Event::new(
                    EventKind::NewDestination,
                    svc.index,
                    key.addr(),
                    r,
                    self.now_ns,
                ));
                r
            }
        } else {
            self.claim(svc)?
        };
        (real != NO_REAL).then_some(real)
    }

    fn claim(&mut self, svc: &Service) -> Option<u32> {
        if svc.ring_len == 0 {
            return None;
        }
        let cursor = self.cursors.entry(svc.index).or_default();
        let ticket = *cursor;
        *cursor = cursor.wrapping_add(1);
        let offset = ticket.wrapping_sub(svc.cursor_origin) % svc.ring_len;
        if svc.has(service_flags::SIGNAL_LOW_WATER) && offset == svc.ring_len / 2 {
            self.events.push(Event::new(
                EventKind::LowWater,
                svc.index,
                [0; 4],
                offset,
                self.now_ns,
            ));
        }
        Some(self.rings[&(svc.ring_base + offset)])
    }
}

impl Datapath for FakeDatapath {
    fn limits(&self) -> Limits {
        self.limits
    }
    fn settings(&self) -> lvs_common::Settings {
        self.settings
    }
    fn set_service<A: Family>(
        &mut self,
        key: ServiceKey<A>,
        value: Service<A>,
    ) -> Result<(), DatapathError> {
        self.write(A::map_name("SERVICES", "SERVICES6"))?;
        assert!(value.index < self.limits.services);
        A::fake_services(self).insert(key, value);
        Ok(())
    }
    fn remove_service<A: Family>(&mut self, key: ServiceKey<A>) -> Result<(), DatapathError> {
        self.write(A::map_name("SERVICES", "SERVICES6"))?;
        A::fake_services(self).remove(&key);
        Ok(())
    }
    fn set_real<A: Family>(&mut self, index: u32, real: Real<A>) -> Result<(), DatapathError> {
        self.write(A::map_name("REALS", "REALS6"))?;
        assert!(index < self.limits.reals);
        A::fake_reals(self).insert(index, real);
        Ok(())
    }
    fn write_ring(&mut self, base: u32, picks: &[u32]) -> Result<(), DatapathError> {
        self.write("RINGS")?;
        assert!(picks.len() <= RING_SLOTS as usize);
        for (i, p) in picks.iter().enumerate() {
            self.rings.insert(base + i as u32, *p);
        }
        Ok(())
    }
    fn write_buckets(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.write("BUCKETS")?;
        assert_eq!(table.len(), HASH_BUCKETS as usize);
        for (i, r) in table.iter().enumerate() {
            self.buckets.insert(base + i as u32, *r);
        }
        Ok(())
    }
    fn announce(
        &mut self,
        vips: &std::collections::BTreeSet<std::net::IpAddr>,
    ) -> Result<(), DatapathError> {
        self.write("announcement device")?;
        self.announced = vips.clone();
        Ok(())
    }
    fn write_maglev(&mut self, base: u32, table: &[u32]) -> Result<(), DatapathError> {
        self.write("MAGLEV")?;
        assert_eq!(table.len(), MH_TABLE_SIZE as usize);
        assert!(base + MH_TABLE_SIZE <= self.limits.mh_services * 2 * MH_TABLE_SIZE);
        for (i, r) in table.iter().enumerate() {
            self.maglev.insert(base + i as u32, *r);
        }
        Ok(())
    }
    fn localities<A: Family>(&self) -> Result<Vec<(LocalityKey<A>, LocalityEntry)>, DatapathError> {
        Ok(A::fake_locality(self)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect())
    }
    fn set_locality<A: Family>(
        &mut self,
        key: LocalityKey<A>,
        entry: LocalityEntry,
    ) -> Result<(), DatapathError> {
        A::fake_locality_mut(self).insert(key, entry);
        Ok(())
    }
    fn remove_locality<A: Family>(&mut self, key: &LocalityKey<A>) -> Result<(), DatapathError> {
        A::fake_locality_mut(self).remove(key);
        Ok(())
    }
    fn templates<A: Family>(&self) -> Result<Vec<(TemplateKey<A>, Template)>, DatapathError> {
        Ok(A::fake_templates(self)
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect())
    }
    fn set_template<A: Family>(
        &mut self,
        key: TemplateKey<A>,
        template: Template,
    ) -> Result<(), DatapathError> {
        A::fake_templates_mut(self).insert(key, template);
        Ok(())
    }
    fn remove_template<A: Family>(&mut self, key: &TemplateKey<A>) -> Result<(), DatapathError> {
        A::fake_templates_mut(self).remove(key);
        Ok(())
    }
    fn drain_events(&mut self) -> Result<Vec<Notice>, DatapathError> {
        Ok(std::mem::take(&mut self.events)
            .into_iter()
            .map(Notice::from)
            .collect())
    }
    fn cursor(&self, index: u32) -> Result<u32, DatapathError> {
        Ok(self.cursors.get(&index).copied().unwrap_or(0))
    }
    fn service_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        Ok(self.service_stats.get(&index).copied().unwrap_or_default())
    }
    fn real_counters(&self, index: u32) -> Result<Counters, DatapathError> {
        Ok(self.real_stats.get(&index).copied().unwrap_or_default())
    }
    fn reset_service_counters(&mut self, index: u32) -> Result<(), DatapathError> {
        self.service_stats.remove(&index);
        Ok(())
    }
    fn reset_real_counters(&mut self, index: u32) -> Result<(), DatapathError> {
        self.real_stats.remove(&index);
        Ok(())
    }
    fn seed_service_counters(
        &mut self,
        index: u32,
        counters: Counters,
    ) -> Result<(), DatapathError> {
        self.service_stats.insert(index, counters);
        Ok(())
    }
    fn seed_real_counters(&mut self, index: u32, counters: Counters) -> Result<(), DatapathError> {
        self.real_stats.insert(index, counters);
        Ok(())
    }
    fn verdicts(&self) -> Result<Vec<(Verdict, u64)>, DatapathError> {
        Ok(Verdict::ALL.iter().map(|v| (*v, 0)).collect())
    }
    fn half_open_evicted(&self) -> Result<u64, DatapathError> {
        Ok(0)
    }
    fn icmp_errors(&self) -> Result<Vec<(IcmpCase, u64)>, DatapathError> {
        Ok(IcmpCase::ALL.iter().map(|c| (*c, 0)).collect())
    }
    fn connections<A: Family>(&self) -> Result<ConnEntries<A>, DatapathError> {
        Ok(A::fake_conns(self).iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn connection<A: Family>(&self, key: &FlowKey<A>) -> Result<Option<Conn<A>>, DatapathError> {
        Ok(A::fake_conns(self).get(key).copied())
    }
    fn connections_slice<A: Family>(
        &self,
        position: &mut crate::TablePosition,
        _max: usize,
    ) -> Result<ConnEntries<A>, DatapathError> {
        // All of it in one part: the position stays at the start.
        *position = crate::TablePosition::default();
        self.connections()
    }
    fn set_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<(), DatapathError> {
        A::fake_conns_mut(self).insert(key, conn);
        Ok(())
    }
    fn add_connection<A: Family>(
        &mut self,
        key: FlowKey<A>,
        conn: Conn<A>,
    ) -> Result<bool, DatapathError> {
        Ok(match A::fake_conns_mut(self).entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(conn);
                true
            }
        })
    }
    fn take_connection<A: Family>(
        &mut self,
        key: &FlowKey<A>,
    ) -> Result<Option<Conn<A>>, DatapathError> {
        Ok(A::fake_conns_mut(self).remove(key))
    }
    fn renew_egress(&mut self) -> Result<(), DatapathError> {
        self.egress_generation += 1;
        Ok(())
    }
    fn set_reply_services(
        &mut self,
        server: ReplyKey,
        services: Option<ReplyServices>,
    ) -> Result<(), DatapathError> {
        match services {
            Some(s) => self.reply_services.insert(server, s),
            None => self.reply_services.remove(&server),
        };
        Ok(())
    }
    fn set_relevant(&mut self, words: &[u32]) -> Result<(), DatapathError> {
        self.relevant = words.to_vec();
        Ok(())
    }
    /// Counted from the entries, as the kernel's counts always equal.
    fn conn_counts_upto(&self, count: u32) -> Result<Vec<ConnCounts>, DatapathError> {
        let mut counts = vec![ConnCounts::default(); count as usize];
        for conn in self.conns.values() {
            if let Some((real, active)) = conn.counted_as() {
                if let Some(c) = counts.get_mut(real as usize) {
                    if active {
                        c.active += 1;
                    } else {
                        c.inactive += 1;
                    }
                }
            }
        }
        Ok(counts)
    }
    fn set_timeouts(&mut self, seconds: &[u32; STATE_COUNT as usize]) -> Result<(), DatapathError> {
        self.timeouts = *seconds;
        Ok(())
    }
    fn now_ns(&self) -> Result<u64, DatapathError> {
        Ok(self.now_ns)
    }
    fn is_local(&self, addr: std::net::IpAddr) -> bool {
        addr.is_loopback() || self.local.contains(&addr)
    }
    fn set_next_hop(
        &mut self,
        real: std::net::IpAddr,
        hop: crate::ResolvedHop,
    ) -> Result<(), DatapathError> {
        self.next_hops.insert(real, hop);
        Ok(())
    }
    fn remove_next_hop(&mut self, real: std::net::IpAddr) -> Result<(), DatapathError> {
        self.next_hops.remove(&real);
        Ok(())
    }
}

/// Which of the fake's tables are a family's (see `Family`).
pub trait FakeFamily: Addr {
    fn fake_services(d: &mut FakeDatapath) -> &mut HashMap<ServiceKey<Self>, Service<Self>>;
    fn fake_reals(d: &mut FakeDatapath) -> &mut HashMap<u32, Real<Self>>;
    fn fake_conns(d: &FakeDatapath) -> &HashMap<FlowKey<Self>, Conn<Self>>;
    fn fake_conns_mut(d: &mut FakeDatapath) -> &mut HashMap<FlowKey<Self>, Conn<Self>>;
    fn fake_templates(d: &FakeDatapath) -> &HashMap<TemplateKey<Self>, Template>;
    fn fake_templates_mut(d: &mut FakeDatapath) -> &mut HashMap<TemplateKey<Self>, Template>;
    fn fake_locality(d: &FakeDatapath) -> &HashMap<LocalityKey<Self>, LocalityEntry>;
    fn fake_locality_mut(d: &mut FakeDatapath) -> &mut HashMap<LocalityKey<Self>, LocalityEntry>;
}

impl FakeFamily for [u8; 4] {
    fn fake_services(d: &mut FakeDatapath) -> &mut HashMap<ServiceKey, Service> {
        &mut d.services
    }
    fn fake_reals(d: &mut FakeDatapath) -> &mut HashMap<u32, Real> {
        &mut d.reals
    }
    fn fake_conns(d: &FakeDatapath) -> &HashMap<FlowKey, Conn> {
        &d.conns
    }
    fn fake_conns_mut(d: &mut FakeDatapath) -> &mut HashMap<FlowKey, Conn> {
        &mut d.conns
    }
    fn fake_templates(d: &FakeDatapath) -> &HashMap<TemplateKey, Template> {
        &d.templates
    }
    fn fake_templates_mut(d: &mut FakeDatapath) -> &mut HashMap<TemplateKey, Template> {
        &mut d.templates
    }
    fn fake_locality(d: &FakeDatapath) -> &HashMap<LocalityKey, LocalityEntry> {
        &d.locality
    }
    fn fake_locality_mut(d: &mut FakeDatapath) -> &mut HashMap<LocalityKey, LocalityEntry> {
        &mut d.locality
    }
}

impl FakeFamily for In6 {
    fn fake_services(d: &mut FakeDatapath) -> &mut HashMap<ServiceKey<In6>, Service<In6>> {
        &mut d.services6
    }
    fn fake_reals(d: &mut FakeDatapath) -> &mut HashMap<u32, Real<In6>> {
        &mut d.reals6
    }
    fn fake_conns(d: &FakeDatapath) -> &HashMap<FlowKey<In6>, Conn<In6>> {
        &d.conns6
    }
    fn fake_conns_mut(d: &mut FakeDatapath) -> &mut HashMap<FlowKey<In6>, Conn<In6>> {
        &mut d.conns6
    }
    fn fake_templates(d: &FakeDatapath) -> &HashMap<TemplateKey<In6>, Template> {
        &d.templates6
    }
    fn fake_templates_mut(d: &mut FakeDatapath) -> &mut HashMap<TemplateKey<In6>, Template> {
        &mut d.templates6
    }
    fn fake_locality(d: &FakeDatapath) -> &HashMap<LocalityKey<In6>, LocalityEntry> {
        &d.locality6
    }
    fn fake_locality_mut(d: &mut FakeDatapath) -> &mut HashMap<LocalityKey<In6>, LocalityEntry> {
        &mut d.locality6
    }
}
