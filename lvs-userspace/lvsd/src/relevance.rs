//! The datapath's first test (`RELEVANT`, see lvs-common's `relevant_bit`):
//! which addresses concern a service, as virtual addresses and as NAT real
//! servers whose replies come back. Kept by counting, so an apply costs
//! what it changes; a bit a removal clears stays set while connections of
//! removed servers may still be draining, since their packets must keep
//! reaching the connection table.

use std::{collections::HashMap, net::IpAddr};

use lvs_common::{
    addr::{Addr, In6},
    relevant_slot, Method, RELEVANT_WORDS,
};
use lvs_state::model::Service;

const VIRTUAL: u32 = 0;
const NAT_SOURCE: u32 = 1;

#[derive(Debug)]
pub struct Relevance {
    /// How many services and servers set each (word, mask) of each map.
    counts: HashMap<(u32, u32), u32>,
    words: Vec<u32>,
    /// A bit stayed set for draining connections.
    stale: bool,
    /// The words differ from what the datapath has.
    dirty: bool,
}

impl Default for Relevance {
    fn default() -> Self {
        Self {
            counts: HashMap::new(),
            words: vec![0; 2 * RELEVANT_WORDS as usize],
            stale: false,
            dirty: false,
        }
    }
}

/// The slots a service sets: its virtual address; its NAT real servers'
/// (and a NAT sorry server's) addresses.
fn slots(svc: &Service) -> impl Iterator<Item = (u32, u32)> + '_ {
    let nat = svc
        .reals
        .iter()
        .filter(|r| r.method == Method::Nat)
        .map(|r| r.server.addr)
        .chain(
            svc.health
                .sorry
                .filter(|s| s.method == Method::Nat)
                .map(|s| s.server.addr),
        );
    std::iter::once(relevant_slot(VIRTUAL, hashed(svc.spec.id.vip.addr)))
        .chain(nat.map(|addr| relevant_slot(NAT_SOURCE, hashed(addr))))
}

/// The part of an address the bitmaps hash, as the datapath takes it
/// (`Addr::last_word`).
fn hashed(addr: IpAddr) -> [u8; 4] {
    match addr {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => In6::from(a).last_word(),
    }
}

impl Relevance {
    /// A service was added (`old` none), changed or removed (`new` none).
    /// A bit it no longer needs stays set until `drained`.
    pub fn replace(&mut self, old: Option<&Service>, new: Option<&Service>) {
        for slot in new.into_iter().flat_map(slots) {
            let count = self.counts.entry(slot).or_default();
            *count += 1;
            if *count == 1 {
                self.set(slot, true);
            }
        }
        for slot in old.into_iter().flat_map(slots) {
            let Some(count) = self.counts.get_mut(&slot) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&slot);
                self.stale = true;
            }
        }
    }

    /// Counted afresh from `services` (after a failed write); every bit
    /// set before stays set until `drained`.
    pub fn rebuild<'a>(&mut self, services: impl Iterator<Item = &'a Service>) {
        let before = std::mem::take(&mut self.words);
        *self = Self::default();
        for svc in services {
            self.replace(None, Some(svc));
        }
        for (w, old) in self.words.iter_mut().zip(before) {
            *w |= old;
        }
        self.stale = true;
        self.dirty = true;
    }

    /// No connection of a removed server is left: clear what stayed set.
    pub fn drained(&mut self) {
        if !self.stale {
            return;
        }
        self.stale = false;
        let mut words = vec![0; self.words.len()];
        for (word, mask) in self.counts.keys() {
            words[*word as usize] |= mask;
        }
        if words != self.words {
            self.words = words;
            self.dirty = true;
        }
    }

    /// The words to write, once after each change.
    pub fn take_changed(&mut self) -> Option<&[u32]> {
        std::mem::take(&mut self.dirty).then_some(&self.words[..])
    }

    /// Write failed: try again next time.
    pub fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    fn set(&mut self, (word, mask): (u32, u32), on: bool) {
        let w = &mut self.words[word as usize];
        let before = *w;
        if on {
            *w |= mask;
        } else {
            *w &= !mask;
        }
        self.dirty |= *w != before;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_state::model::{Command, Endpoint, Protocol, RealSpec, ServiceId, ServiceSpec, State};

    fn service(vip: [u8; 4], port: u16, reals: &[([u8; 4], Method)]) -> Service {
        let id = ServiceId {
            protocol: Protocol::Tcp,
            vip: Endpoint {
                addr: vip.into(),
                port,
            },
        };
        let mut state = State::default();
        state
            .apply(&Command::AddService(ServiceSpec {
                id,
                scheduler: lvs_sched::SchedulerName::Rr,
                flags: Default::default(),
                persistence: None,
            }))
            .unwrap();
        for (addr, method) in reals {
            let real = RealSpec {
                server: Endpoint {
                    addr: (*addr).into(),
                    port: 80,
                },
                method: *method,
                weight: 1,
                u_threshold: 0,
                l_threshold: 0,
            };
            state
                .apply(&Command::AddReal { service: id, real })
                .unwrap();
        }
        state.service(&id).unwrap().clone()
    }

    fn on(r: &Relevance, map: u32, addr: [u8; 4]) -> bool {
        let (word, mask) = relevant_slot(map, addr);
        r.words[word as usize] & mask != 0
    }

    #[test]
    fn virtual_and_nat_addresses_are_let_through_until_drained() {
        let mut r = Relevance::default();
        let web = service(
            [198, 18, 0, 10],
            80,
            &[([10, 0, 0, 1], Method::Nat), ([10, 0, 0, 2], Method::Route)],
        );
        let dns = service([198, 18, 0, 10], 53, &[]);
        r.replace(None, Some(&web));
        r.replace(None, Some(&dns));
        assert!(r.take_changed().is_some());
        assert!(on(&r, VIRTUAL, [198, 18, 0, 10]));
        assert!(on(&r, NAT_SOURCE, [10, 0, 0, 1]));
        assert!(!on(&r, NAT_SOURCE, [10, 0, 0, 2]), "DR replies bypass us");
        assert!(!on(&r, VIRTUAL, [198, 18, 0, 11]));
        // The VIP stays for the other port's service; the NAT server's bit
        // stays until its connections have drained.
        r.replace(Some(&web), None);
        assert!(r.take_changed().is_none());
        assert!(on(&r, NAT_SOURCE, [10, 0, 0, 1]));
        r.drained();
        assert!(r.take_changed().is_some());
        assert!(!on(&r, NAT_SOURCE, [10, 0, 0, 1]));
        assert!(on(&r, VIRTUAL, [198, 18, 0, 10]));
    }
}
