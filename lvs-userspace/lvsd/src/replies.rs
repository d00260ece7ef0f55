//! `REPLY_SERVICES`: for each NAT real server (address, port, protocol) the
//! virtual services whose connections to it keep one entry, which the
//! server's replies find as the inbound entry each service would have made
//! (`Real::ONE_ENTRY`). A real index takes a place when its entry is
//! written and keeps it until the index is freed, after its connections
//! drained: a reply always finds the service its connection was made for.
//! Up to `REPLY_CANDIDATES` services share a server; the connections of
//! any more keep a reply entry, as before.

use std::collections::{BTreeSet, HashMap};

use lvs_common::{ReplyKey, ReplyServices, VirtualAddr, REPLY_CANDIDATES};

#[derive(Debug, Default)]
pub struct ReplyIndex {
    /// Each server's services, in the order they took their place, with
    /// how many real indexes hold each.
    places: HashMap<ReplyKey, Vec<(VirtualAddr, u32)>>,
    /// The place each real index holds.
    held: HashMap<u32, (ReplyKey, VirtualAddr)>,
    /// Servers whose entry the datapath does not have yet.
    dirty: BTreeSet<ReplyKey>,
}

impl ReplyIndex {
    /// Real index `index`, a NAT server `server` of the virtual service
    /// `service`, is being written: whether its connections keep one entry.
    pub fn hold(&mut self, index: u32, server: ReplyKey, service: VirtualAddr) -> bool {
        match self.held.get(&index) {
            Some(&place) if place == (server, service) => return true,
            Some(_) => self.release(index),
            None => {}
        }
        let places = self.places.entry(server).or_default();
        if let Some(place) = places.iter_mut().find(|(s, _)| *s == service) {
            place.1 += 1;
        } else if places.len() < REPLY_CANDIDATES {
            places.push((service, 1));
            self.dirty.insert(server);
        } else {
            return false;
        }
        self.held.insert(index, (server, service));
        true
    }

    /// Real index `index` was freed: its connections are gone.
    pub fn release(&mut self, index: u32) {
        let Some((server, service)) = self.held.remove(&index) else {
            return;
        };
        let Some(places) = self.places.get_mut(&server) else {
            return;
        };
        if let Some(at) = places.iter().position(|(s, _)| *s == service) {
            places[at].1 -= 1;
            if places[at].1 == 0 {
                places.remove(at);
                self.dirty.insert(server);
            }
        }
        if places.is_empty() {
            self.places.remove(&server);
        }
    }

    /// Whether real index `index` holds a place (its connections keep one
    /// entry).
    pub fn holds(&self, index: u32) -> bool {
        self.held.contains_key(&index)
    }

    /// The entries to write (`None`: remove), once after each change; call
    /// `written` when they are.
    pub fn changed(&self) -> Vec<(ReplyKey, Option<ReplyServices>)> {
        self.dirty
            .iter()
            .map(|server| {
                let entry = self.places.get(server).map(|places| {
                    let mut entry = ReplyServices::default();
                    for (slot, (service, _)) in entry.services.iter_mut().zip(places) {
                        *slot = *service;
                    }
                    entry
                });
                (*server, entry)
            })
            .collect()
    }

    pub fn written(&mut self) {
        self.dirty.clear();
    }

    /// Write every entry again (after a failed write).
    pub fn mark_all_dirty(&mut self) {
        self.dirty.extend(self.places.keys().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(last: u8) -> ReplyKey {
        ReplyKey::from_wire([198, 18, 11, last], 8080u16.to_be_bytes(), 6)
    }

    fn service(last: u8) -> VirtualAddr {
        VirtualAddr::from_wire([198, 18, 0, last], 80u16.to_be_bytes())
    }

    #[test]
    fn places_are_held_per_index_until_freed_and_a_fifth_service_keeps_two_entries() {
        let mut r = ReplyIndex::default();
        for i in 0..4 {
            assert!(r.hold(i, server(2), service(10 + i as u8)));
        }
        assert!(!r.hold(4, server(2), service(14)), "no fifth place");
        assert!(!r.holds(4));
        let written = r.changed();
        assert_eq!(written.len(), 1);
        let entry = written[0].1.unwrap();
        assert_eq!(entry.services.map(|s| s.addr[3]), [10, 11, 12, 13]);
        r.written();
        assert!(r.changed().is_empty());

        // The same server and service again (re-added before the old index
        // drained): one place, held twice.
        assert!(r.hold(5, server(2), service(11)));
        assert!(r.changed().is_empty());
        r.release(1);
        assert!(r.changed().is_empty(), "index 5 still holds it");
        r.release(5);
        let entry = r.changed()[0].1.unwrap();
        assert_eq!(entry.services.map(|s| s.addr[3]), [10, 12, 13, 0]);
        r.written();
        // Holding again is idempotent per index.
        assert!(r.hold(0, server(2), service(10)));
        assert!(r.changed().is_empty());
        for i in [0, 2, 3] {
            r.release(i);
        }
        assert_eq!(r.changed(), vec![(server(2), None)]);
    }
}
