//! An in-memory datapath for unit tests: same contract, no kernel.

use std::collections::HashMap;

use lvs_common::{
    tcp_state::STATE_COUNT, Conn, Counters, FlowKey, Real, Service, ServiceKey, Verdict, MAX_REALS,
    MAX_SERVICES, RING_SLOTS,
};

use super::{Datapath, DatapathError};

#[derive(Debug, Default)]
pub struct FakeDatapath {
    pub services: HashMap<ServiceKey, Service>,
    pub reals: HashMap<u32, Real>,
    pub rings: HashMap<u32, u32>,
    pub cursors: HashMap<u32, u32>,
    pub service_stats: HashMap<u32, Counters>,
    pub real_stats: HashMap<u32, Counters>,
    pub conns: HashMap<FlowKey, Conn>,
    pub timeouts: [u32; STATE_COUNT as usize],
    pub now_ns: u64,
}

impl FakeDatapath {
    /// Play the datapath's part for one new flow: claim the next ring slot.
    pub fn schedule(&mut self, key: &ServiceKey) -> Option<Real> {
        let svc = *self.services.get(key)?;
        if svc.ring_len == 0 {
            return None;
        }
        let cursor = self.cursors.entry(svc.index).or_default();
        let ticket = *cursor;
        *cursor = cursor.wrapping_add(1);
        let slot = svc.ring_base + ticket.wrapping_sub(svc.cursor_origin) % svc.ring_len;
        let real_index = self.rings[&slot];
        let counters = self.real_stats.entry(real_index).or_default();
        counters.conns += 1;
        self.reals.get(&real_index).copied()
    }
}

impl Datapath for FakeDatapath {
    fn set_service(&mut self, key: ServiceKey, value: Service) -> Result<(), DatapathError> {
        assert!(value.index < MAX_SERVICES);
        self.services.insert(key, value);
        Ok(())
    }
    fn remove_service(&mut self, key: ServiceKey) -> Result<(), DatapathError> {
        self.services.remove(&key);
        Ok(())
    }
    fn set_real(&mut self, index: u32, real: Real) -> Result<(), DatapathError> {
        assert!(index < MAX_REALS);
        self.reals.insert(index, real);
        Ok(())
    }
    fn write_ring(&mut self, base: u32, picks: &[u32]) -> Result<(), DatapathError> {
        assert!(picks.len() <= RING_SLOTS as usize);
        for (i, p) in picks.iter().enumerate() {
            self.rings.insert(base + i as u32, *p);
        }
        Ok(())
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
    fn verdicts(&self) -> Result<Vec<(Verdict, u64)>, DatapathError> {
        Ok(Verdict::ALL.iter().map(|v| (*v, 0)).collect())
    }
    fn connections(&self) -> Result<Vec<(FlowKey, Conn)>, DatapathError> {
        Ok(self.conns.iter().map(|(k, v)| (*k, *v)).collect())
    }
    fn connection(&self, key: &FlowKey) -> Result<Option<Conn>, DatapathError> {
        Ok(self.conns.get(key).copied())
    }
    fn remove_connection(&mut self, key: &FlowKey) -> Result<(), DatapathError> {
        self.conns.remove(key);
        Ok(())
    }
    fn set_timeouts(&mut self, seconds: &[u32; STATE_COUNT as usize]) -> Result<(), DatapathError> {
        self.timeouts = *seconds;
        Ok(())
    }
    fn now_ns(&self) -> Result<u64, DatapathError> {
        Ok(self.now_ns)
    }
}
