//! sh and dh (`ip_vs_sh.c`, `ip_vs_dh.c`; reference §2.9–2.10): 256-bucket
//! tables built from the server list, indexed by a hash of the packet's
//! source (sh) or destination (dh) address.

use lvs_common::hash::{dh_bucket, sh_bucket, HASH_BUCKETS};

use super::{Dest, Request, SchedFlags, Scheduler};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Source,
    Destination,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hashing {
    key: Key,
    flags: SchedFlags,
    /// Server id per bucket; `None` when the service has no servers.
    table: Vec<Option<u32>>,
}

impl Hashing {
    pub fn sh(dests: &[Dest], flags: SchedFlags) -> Self {
        Self {
            key: Key::Source,
            flags,
            table: sh_table(dests),
        }
    }

    pub fn dh(dests: &[Dest]) -> Self {
        Self {
            key: Key::Destination,
            flags: SchedFlags::default(),
            table: dh_table(dests),
        }
    }

    /// The bucket a request hashes to (an IPv6 address folded as IPVS
    /// folds it).
    pub fn bucket(&self, request: &Request) -> usize {
        match self.key {
            Key::Source => {
                let port = if self.flags.port {
                    request.client_port
                } else {
                    0
                };
                sh_bucket(folded(request.client), port) as usize
            }
            Key::Destination => dh_bucket(folded(request.destination)) as usize,
        }
    }

    /// The server a bucket resolves to, after sh-fallback probing, given
    /// the servers' current eligibility: what the datapath's table holds.
    pub fn resolve(&self, bucket: usize, dests: &[Dest]) -> Option<usize> {
        let usable = |b: usize| {
            let id = self.table[b]?;
            dests.iter().position(|d| d.id == id && d.eligible())
        };
        if let Some(i) = usable(bucket) {
            return Some(i);
        }
        if self.key == Key::Destination || !self.flags.fallback {
            return None;
        }
        // The kernel probes (2h + offset) mod 256, stopping at an empty bucket.
        for offset in 0..HASH_BUCKETS as usize {
            let probe = (2 * bucket + offset) % HASH_BUCKETS as usize;
            self.table[probe]?;
            if let Some(i) = usable(probe) {
                return Some(i);
            }
        }
        None
    }
}

/// sh: walk the list circularly; each server takes max(weight, 1)
/// consecutive buckets.
fn sh_table(dests: &[Dest]) -> Vec<Option<u32>> {
    if dests.is_empty() {
        return vec![None; HASH_BUCKETS as usize];
    }
    let mut table = Vec::with_capacity(HASH_BUCKETS as usize);
    let (mut i, mut taken) = (0, 0);
    while table.len() < HASH_BUCKETS as usize {
        table.push(Some(dests[i].id));
        taken += 1;
        if taken >= dests[i].weight.max(1) {
            i = (i + 1) % dests.len();
            taken = 0;
        }
    }
    table
}

/// dh: one bucket per server, round the list; weights play no part.
fn dh_table(dests: &[Dest]) -> Vec<Option<u32>> {
    (0..HASH_BUCKETS as usize)
        .map(|b| (!dests.is_empty()).then(|| dests[b % dests.len()].id))
        .collect()
}

fn ids(dests: &[Dest]) -> Vec<u32> {
    dests.iter().map(|d| d.id).collect()
}

impl Scheduler for Hashing {
    fn update(&mut self, old: &[Dest], new: &[Dest]) {
        match self.key {
            // sh rebuilds on add, delete and edit (a weight change remaps).
            Key::Source => self.table = sh_table(new),
            // dh has no update hook: only membership changes rebuild it.
            Key::Destination => {
                if ids(old) != ids(new) {
                    self.table = dh_table(new);
                }
            }
        }
    }

    fn pick(&mut self, dests: &[Dest], request: &Request) -> Option<usize> {
        self.resolve(self.bucket(request), dests)
    }

    fn buckets(&self, dests: &[Dest]) -> Option<Vec<Option<usize>>> {
        Some(
            (0..HASH_BUCKETS as usize)
                .map(|b| self.resolve(b, dests))
                .collect(),
        )
    }
}

/// The 32 bits of an address the bucket hashes take.
pub fn folded(addr: std::net::IpAddr) -> [u8; 4] {
    match addr {
        std::net::IpAddr::V4(a) => a.octets(),
        std::net::IpAddr::V6(a) => lvs_common::hash::fold_ipv6(a.octets()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{testing::*, Request, SchedFlags, SchedulerName};
    use super::*;

    fn from(addr: [u8; 4]) -> Request {
        Request {
            client: addr.into(),
            destination: addr.into(),
            ..Request::default()
        }
    }

    fn label(d: &[Dest], i: Option<usize>) -> char {
        i.map_or('-', |i| char::from_u32(d[i].id).unwrap())
    }

    #[test]
    fn sh_tables_follow_weights() {
        let d = dests(&[('A', 3, false), ('B', 1, false), ('C', 2, false)]);
        let t = sh_table(&d);
        let text: String = t[..6]
            .iter()
            .map(|id| char::from_u32(id.unwrap()).unwrap())
            .collect();
        assert_eq!(text, "AAABCC");
        let count = |c: char| t.iter().filter(|id| **id == Some(c as u32)).count();
        assert_eq!((count('A'), count('B'), count('C')), (129, 43, 84));
    }

    #[test]
    fn sh_reference_lookups_with_and_without_fallback() {
        let d = dests(&[('A', 1, false), ('B', 1, false), ('C', 1, false)]);
        let mut sh = configured(SchedulerName::Sh, &d);
        assert_eq!(label(&d, sh.pick(&d, &from([10, 0, 0, 1]))), 'A');
        assert_eq!(label(&d, sh.pick(&d, &from([10, 0, 0, 2]))), 'C');
        assert_eq!(label(&d, sh.pick(&d, &from([203, 0, 113, 7]))), 'B');
        // B edited to weight 0: the table keeps one bucket per lap for it.
        let quiesced = dests(&[('A', 1, false), ('B', 0, false), ('C', 1, false)]);
        sh.update(&d, &quiesced);
        assert_eq!(
            label(&quiesced, sh.pick(&quiesced, &from([203, 0, 113, 7]))),
            '-'
        );
        let flags = SchedFlags {
            fallback: true,
            port: false,
            ipvs_order: false,
        };
        let mut fallback = SchedulerName::Sh.instantiate(&quiesced, flags);
        assert_eq!(
            label(&quiesced, fallback.pick(&quiesced, &from([203, 0, 113, 7]))),
            'C'
        );
    }

    /// An IPv6 client hashes by the XOR of its four 32-bit words, as
    /// `ip_vs_sh_hashkey` and `ip_vs_dh_hashkey` fold it: `::a00:1` folds
    /// to 10.0.0.1's bucket, and 2001:db8::a00:1 to 0x2a010db9's
    /// (multiplied out here in 64 bits).
    #[test]
    fn ipv6_addresses_hash_by_their_folded_words() {
        let d = dests(&[('A', 1, false), ('B', 1, false), ('C', 1, false)]);
        let mut sh = configured(SchedulerName::Sh, &d);
        let v6 = |text: &str| Request {
            client: text.parse().unwrap(),
            destination: text.parse().unwrap(),
            ..Request::default()
        };
        assert_eq!(label(&d, sh.pick(&d, &v6("::a00:1"))), 'A');
        let bucket = ((0x2a01_0db9u64 * 0x61C8_8647u64) % (1 << 32)) >> 24;
        let sh = Hashing::sh(&d, SchedFlags::default());
        assert_eq!(sh.bucket(&v6("2001:db8::a00:1")), bucket as usize);
        assert_eq!(
            Hashing::dh(&d).bucket(&v6("2001:db8::a00:1")),
            bucket as usize
        );
    }

    #[test]
    fn sh_port_hashes_the_source_port() {
        let d = dests(&[('A', 1, false), ('B', 1, false), ('C', 1, false)]);
        let flags = SchedFlags {
            fallback: false,
            port: true,
            ipvs_order: false,
        };
        let sh = Hashing::sh(&d, flags);
        let request = Request {
            client: [10, 0, 0, 1].into(),
            client_port: 1234,
            ..Request::default()
        };
        assert_eq!(sh.bucket(&request), 128);
    }

    #[test]
    fn dh_reference_lookup_and_no_fallback() {
        let d = dests(&[('A', 5, false), ('B', 1, false), ('C', 1, false)]);
        let mut dh = configured(SchedulerName::Dh, &d);
        assert_eq!(label(&d, dh.pick(&d, &from([192, 168, 1, 10]))), 'C');
        let quiesced = dests(&[('A', 5, false), ('B', 1, false), ('C', 0, false)]);
        dh.update(&d, &quiesced);
        assert_eq!(
            label(&quiesced, dh.pick(&quiesced, &from([192, 168, 1, 10]))),
            '-'
        );
    }
}
