//! lblc and lblcr (`ip_vs_lblc.c`, `ip_vs_lblcr.c`; reference §2.7–2.8):
//! a table keyed by the packet's destination address, remembering which
//! server (lblc) or set of servers (lblcr) serves it, with wlc choosing new
//! mappings, and a 60-second garbage-collection timer.

use std::{collections::BTreeMap, net::IpAddr};

use super::{least::wlc, Dest, Request, Scheduler};

/// `lblc_expiration` / `lblcr_expiration` default: 24 hours.
pub const DEFAULT_EXPIRATION: u64 = 86_400;
/// The GC timer period (`CHECK_EXPIRE_INTERVAL`).
const TICK: u64 = 60;
/// Every 30th tick is a full check.
const FULL_CHECK_EVERY: u64 = 30;
/// 1024 buckets × 16.
const MAX_SIZE: usize = 16_384;
/// Over-full GC removes entries idle this long (`ENTRY_TIMEOUT`).
const ENTRY_TIMEOUT: u64 = 6 * 60;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    /// lblc: one server; lblcr: the set, newest member first.
    servers: Vec<u32>,
    lastuse: u64,
    /// lblcr: when a member was last added or removed.
    lastmod: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Locality {
    replicate: bool,
    pub expiration: u64,
    table: BTreeMap<IpAddr, Entry>,
    /// Time of the next GC tick, and the kernel's tick counter (starts at 1).
    next_tick: u64,
    counter: u64,
}

impl Locality {
    pub fn lblc() -> Self {
        Self::new(false)
    }
    pub fn lblcr() -> Self {
        Self::new(true)
    }
    fn new(replicate: bool) -> Self {
        Self {
            replicate,
            expiration: DEFAULT_EXPIRATION,
            table: BTreeMap::new(),
            next_tick: TICK,
            counter: 1,
        }
    }

    /// Whether a GC tick is due by `now`.
    pub fn tick_due(&self, now: u64) -> bool {
        self.next_tick <= now
    }

    /// Whether the GC tick due by `now` needs every entry's `lastuse`
    /// (a full check, or an over-full table): the controller then reads
    /// the datapath's timestamps first.
    pub fn needs_lastuse(&self, now: u64) -> bool {
        self.next_tick <= now
            && (self.counter.is_multiple_of(FULL_CHECK_EVERY) || self.table.len() > MAX_SIZE)
    }

    /// A request for `addr` was seen at `lastuse` (by the datapath).
    pub fn touch(&mut self, addr: IpAddr, lastuse: u64) {
        if let Some(e) = self.table.get_mut(&addr) {
            e.lastuse = e.lastuse.max(lastuse);
        }
    }

    /// The datapath sent a new destination `addr` to server `id` (its
    /// fallback ring's wlc pick), as IPVS's step 2-3 would have.
    pub fn record(&mut self, addr: IpAddr, id: u32, now: u64) {
        match self.table.get_mut(&addr) {
            Some(e) if self.replicate => {
                if !e.servers.contains(&id) {
                    e.servers.insert(0, id);
                    e.lastmod = now;
                }
                e.lastuse = now;
            }
            _ => {
                self.table.insert(
                    addr,
                    Entry {
                        servers: vec![id],
                        lastuse: now,
                        lastmod: now,
                    },
                );
            }
        }
    }

    /// Every destination address in the table.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.table.keys().copied().collect()
    }

    /// When `addr` was last used, if it has an entry.
    pub fn lastuse(&self, addr: IpAddr) -> Option<u64> {
        self.table.get(&addr).map(|e| e.lastuse)
    }

    /// The server a request for `addr` would go to now, applying the
    /// overload, replication and shrink rules (but not touching `lastuse`):
    /// what the controller publishes for it.
    pub fn decide(&mut self, dests: &[Dest], addr: IpAddr, now: u64) -> Option<u32> {
        self.choose(dests, addr, now).map(|i| dests[i].id)
    }

    /// Run the GC ticks due by `now`.
    pub fn collect(&mut self, now: u64) {
        while self.next_tick <= now {
            let tick = self.next_tick;
            self.next_tick += TICK;
            if self.counter.is_multiple_of(FULL_CHECK_EVERY) {
                let expiration = self.expiration;
                self.table.retain(|_, e| tick < e.lastuse + expiration);
                self.counter = 1;
            } else if self.table.len() <= MAX_SIZE {
                self.counter += 1;
            } else {
                let goal = ((self.table.len() - MAX_SIZE) * 4 / 3).min(MAX_SIZE / 2);
                let stale: Vec<IpAddr> = self
                    .table
                    .iter()
                    .filter(|(_, e)| tick >= e.lastuse + ENTRY_TIMEOUT)
                    .map(|(k, _)| *k)
                    .take(goal)
                    .collect();
                for key in stale {
                    self.table.remove(&key);
                }
            }
        }
    }
}

/// `is_overloaded`: more active connections than its weight, while some
/// server of the service is under half its weight.
fn is_overloaded(d: &Dest, dests: &[Dest]) -> bool {
    d.active > d.weight
        && dests
            .iter()
            .any(|m| (m.active as u64) * 2 < m.weight as u64)
}

fn position(dests: &[Dest], id: u32) -> Option<usize> {
    dests.iter().position(|d| d.id == id)
}

/// lblcr's least-loaded member (deleted servers are not available).
fn set_min(set: &[u32], dests: &[Dest]) -> Option<usize> {
    let mut members = set.iter().filter_map(|id| position(dests, *id));
    let mut least = members.find(|&i| dests[i].eligible())?;
    for i in members {
        let d = &dests[i];
        if !d.overloaded
            && dests[least].overhead() * d.weight as u64 > d.overhead() * dests[least].weight as u64
        {
            least = i;
        }
    }
    Some(least)
}

/// lblcr's most-loaded member (OVERLOAD ignored).
fn set_max(set: &[u32], dests: &[Dest]) -> Option<usize> {
    let mut members = set.iter().filter_map(|id| position(dests, *id));
    let mut most = members.find(|&i| dests[i].weight > 0)?;
    for i in members {
        let d = &dests[i];
        if d.weight > 0
            && dests[most].overhead() * (d.weight as u64) < d.overhead() * dests[most].weight as u64
        {
            most = i;
        }
    }
    Some(most)
}

impl Scheduler for Locality {
    fn update(&mut self, _old: &[Dest], _new: &[Dest]) {}

    fn pick(&mut self, dests: &[Dest], request: &Request) -> Option<usize> {
        let now = request.now;
        self.collect(now);
        let key = request.destination;
        if let Some(entry) = self.table.get_mut(&key) {
            entry.lastuse = now;
        }
        self.choose(dests, key, now)
    }

    fn locality(&mut self) -> Option<&mut Locality> {
        Some(self)
    }
}

impl Locality {
    /// Selection steps 1-3 of §2.7 (lblc) and §2.8 (lblcr) for `key`.
    fn choose(&mut self, dests: &[Dest], key: IpAddr, now: u64) -> Option<usize> {
        let full = self.table.len() > MAX_SIZE;
        if let Some(entry) = self.table.get_mut(&key) {
            if !self.replicate {
                if let Some(i) = position(dests, entry.servers[0]) {
                    if dests[i].weight > 0 && !is_overloaded(&dests[i], dests) {
                        return Some(i);
                    }
                }
            } else {
                let least = set_min(&entry.servers, dests);
                if entry.servers.len() > 1 && now > entry.lastmod + self.expiration {
                    if let Some(most) = set_max(&entry.servers, dests) {
                        entry.servers.retain(|id| *id != dests[most].id);
                        entry.lastmod = now;
                    }
                }
                if let Some(i) = least.filter(|&i| !is_overloaded(&dests[i], dests)) {
                    return Some(i);
                }
                let i = wlc(dests)?;
                if !entry.servers.contains(&dests[i].id) {
                    entry.servers.insert(0, dests[i].id);
                    entry.lastmod = now;
                }
                return Some(i);
            }
        }
        let i = wlc(dests)?;
        // lblc replaces a stale mapping; neither caches into an over-full table.
        if !full || self.table.contains_key(&key) {
            self.table.insert(
                key,
                Entry {
                    servers: vec![dests[i].id],
                    lastuse: now,
                    lastmod: now,
                },
            );
        }
        Some(i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{testing::*, Dest, Request, Scheduler, SchedulerName};

    fn to(addr: [u8; 4], now: u64) -> Request {
        Request {
            destination: addr.into(),
            now,
            ..Request::default()
        }
    }

    fn pick(s: &mut dyn Scheduler, d: &mut [Dest], addr: [u8; 4]) -> char {
        let i = s.pick(d, &to(addr, 0)).unwrap();
        d[i].active += 1;
        char::from_u32(d[i].id).unwrap()
    }

    #[test]
    fn lblc_reference_table() {
        let (x, y) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let mut d = dests(&[('A', 1, false), ('B', 1, false)]);
        let mut s = configured(SchedulerName::Lblc, &d);
        assert_eq!(pick(s.as_mut(), &mut d, x), 'A');
        assert_eq!(pick(s.as_mut(), &mut d, y), 'B');
        assert_eq!(pick(s.as_mut(), &mut d, x), 'A');
        assert_eq!(pick(s.as_mut(), &mut d, x), 'A');
        d[1].active -= 1; // B's connection closes
        assert_eq!(pick(s.as_mut(), &mut d, x), 'B');
    }

    #[test]
    fn lblcr_reference_table() {
        let x = [10, 0, 0, 1];
        let mut d = dests(&[('A', 1, false), ('B', 1, false)]);
        let mut s = configured(SchedulerName::Lblcr, &d);
        let got: String = (0..5).map(|_| pick(s.as_mut(), &mut d, x)).collect();
        assert_eq!(got, "AABBB");
        assert_eq!((d[0].active, d[1].active), (2, 3));
    }

    #[test]
    fn lblc_entries_expire_at_the_full_check() {
        let x = [10, 0, 0, 1];
        let d = dests(&[('A', 1, false), ('B', 1, false)]);
        let mut s = super::Locality::lblc();
        s.expiration = 600;
        assert_eq!(s.pick(&d, &to(x, 0)), Some(0));
        assert_eq!(s.table.len(), 1);
        // Ticks at 60 s; the 30th (t = 1800 s) is a full check.
        s.collect(1799);
        assert_eq!(s.table.len(), 1);
        s.collect(1800);
        assert!(s.table.is_empty());
    }
}
