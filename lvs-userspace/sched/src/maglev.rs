//! mh (`ip_vs_mh.c`; Maglev, NSDI '16 §3.4): every server walks its own
//! permutation of a prime-sized table, taking free slots in turns (more
//! turns for more weight), and a client hashes to a slot.
//!
//! The kernel gives turns in list order, so two directors configured in a
//! different order build different tables. Here servers take their turns
//! in address order unless `mh-ipvs-order` (`flag-3`) asks for the
//! kernel's; nothing else differs, and the hashes use the kernel's fixed
//! keys, so every director given the same servers publishes the same table.

use std::collections::BTreeMap;

use lvs_common::hash::{hsiphash_u32, mh_key, mh_slot, MH_KEY_OFFSET, MH_KEY_SKIP, MH_TABLE_SIZE};

use super::{hashing::folded, Dest, Request, SchedFlags, Scheduler};

/// `IP_VS_MH_TAB_BITS`: weights over this many bits are shifted down.
const TABLE_BITS: u32 = 12 / 2;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maglev {
    flags: SchedFlags,
    /// Each server's `last_weight`: its latest non-zero weight, so a server
    /// quiesced to 0 keeps its slots (and its clients find it unusable).
    last_weight: BTreeMap<u32, u32>,
    /// Server id per slot; `None` when no server has a turn.
    table: Vec<Option<u32>>,
}

impl Maglev {
    pub fn new(dests: &[Dest], flags: SchedFlags) -> Self {
        let mut m = Self {
            flags,
            last_weight: BTreeMap::new(),
            table: Vec::new(),
        };
        m.update(&[], dests);
        m
    }

    /// The slot a request hashes to, and the hash key its probes use.
    fn slot(&self, request: &Request) -> (u32, u32) {
        let port = if self.flags.port {
            request.client_port
        } else {
            0
        };
        let key = mh_key(folded(request.client), port);
        (mh_slot(key, 0), key)
    }

    /// `ip_vs_mh_permutate` and `ip_vs_mh_populate`.
    fn populate(&mut self, dests: &[Dest]) {
        let mut order: Vec<(&Dest, u32)> = dests
            .iter()
            .map(|d| (d, self.last_weight.get(&d.id).copied().unwrap_or(0)))
            .collect();
        if !self.flags.ipvs_order {
            order.sort_by_key(|(d, _)| (d.addr, d.port));
        }
        let gcd = order
            .iter()
            .map(|&(_, w)| w)
            .filter(|&w| w > 0)
            .fold(0, |g, w| if g > 0 { gcd(g, w) } else { w });
        self.table = vec![None; MH_TABLE_SIZE as usize];
        if gcd < 1 {
            return;
        }
        let max = order.iter().map(|&(_, w)| w).max().unwrap_or(0) / gcd;
        let shift = (u32::BITS - max.leading_zeros()).saturating_sub(TABLE_BITS);
        struct Setup {
            id: u32,
            perm: u32,
            skip: u32,
            turns: u32,
        }
        let mut setup: Vec<Setup> = order
            .iter()
            .map(|&(d, last)| {
                let key = mh_key(folded(d.addr), d.port);
                let shifted = (last / gcd) >> shift;
                Setup {
                    id: d.id,
                    perm: hsiphash_u32(key, MH_KEY_OFFSET) % MH_TABLE_SIZE,
                    skip: hsiphash_u32(key, MH_KEY_SKIP) % (MH_TABLE_SIZE - 1) + 1,
                    turns: if shifted > 0 {
                        shifted
                    } else {
                        u32::from(last != 0)
                    },
                }
            })
            .collect();
        let mut filled = 0;
        // Every round gives each server its turns; some server has one.
        while filled < MH_TABLE_SIZE {
            for s in setup.iter_mut() {
                for _ in 0..s.turns {
                    while self.table[s.perm as usize].is_some() {
                        s.perm = (s.perm + s.skip) % MH_TABLE_SIZE;
                    }
                    self.table[s.perm as usize] = Some(s.id);
                    filled += 1;
                    if filled == MH_TABLE_SIZE {
                        return;
                    }
                }
            }
        }
    }

    /// The server a slot resolves to for the servers' current eligibility,
    /// without fallback: what the datapath's table holds.
    fn usable(&self, slot: u32, dests: &[Dest]) -> Option<usize> {
        let id = self.table[slot as usize]?;
        dests.iter().position(|d| d.id == id && d.eligible())
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Scheduler for Maglev {
    /// The kernel rebuilds on every add, delete and edit.
    fn update(&mut self, old: &[Dest], new: &[Dest]) {
        self.last_weight
            .retain(|id, _| new.iter().any(|d| d.id == *id));
        for d in new {
            let added = !old.iter().any(|o| o.id == d.id);
            match d.last_weight {
                Some(last) => {
                    self.last_weight.insert(d.id, last);
                }
                None if added || d.weight != 0 => {
                    self.last_weight.insert(d.id, d.weight);
                }
                None => {}
            }
        }
        self.populate(new);
    }

    fn pick(&mut self, dests: &[Dest], request: &Request) -> Option<usize> {
        let (slot, key) = self.slot(request);
        self.table[slot as usize]?;
        if let Some(i) = self.usable(slot, dests) {
            return Some(i);
        }
        if !self.flags.fallback {
            return None;
        }
        // `ip_vs_mh_get_fallback`: rehash with growing offsets.
        for offset in 0..MH_TABLE_SIZE {
            let probe = mh_slot(key, (offset + slot) % MH_TABLE_SIZE);
            self.table[probe as usize]?;
            if let Some(i) = self.usable(probe, dests) {
                return Some(i);
            }
        }
        None
    }

    /// The table with each slot resolved without fallback; the datapath
    /// probes on from a slot that resolves to none when the service has
    /// `mh-fallback` and the table names a server.
    fn buckets(&self, dests: &[Dest]) -> Option<Vec<Option<usize>>> {
        // Each server looked up once, not once per slot.
        let usable: BTreeMap<u32, usize> = dests
            .iter()
            .enumerate()
            .filter(|(_, d)| d.eligible())
            .map(|(i, d)| (d.id, i))
            .collect();
        Some(
            self.table
                .iter()
                .map(|id| id.and_then(|id| usable.get(&id).copied()))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    /// One scenario of `maglev-vectors.txt`, written by an independent
    /// model of the kernel's C (`model/ip_vs_mh.py`).
    struct Scenario {
        name: String,
        /// IPVS list order, with each server's weight and last weight.
        servers: Vec<(char, Dest, u32)>,
        table: String,
        /// Client, port, pick without and with mh-fallback.
        picks: Vec<(IpAddr, u16, char, char)>,
    }

    fn scenarios() -> Vec<Scenario> {
        let mut out = Vec::new();
        let mut current: Option<Scenario> = None;
        for line in include_str!("maglev-vectors.txt").lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let label = |s: &str| s.chars().next().unwrap();
            match w.as_slice() {
                ["scenario", name] => {
                    current = Some(Scenario {
                        name: name.to_string(),
                        servers: Vec::new(),
                        table: String::new(),
                        picks: Vec::new(),
                    })
                }
                ["server", l, addr, port, weight, last, rest @ ..] => {
                    let c = label(l);
                    let dest = Dest {
                        id: c as u32,
                        addr: addr.parse().unwrap(),
                        port: port.parse().unwrap(),
                        weight: weight.parse().unwrap(),
                        overloaded: rest == ["overloaded"],
                        ..Dest::default()
                    };
                    let s = current.as_mut().unwrap();
                    s.servers.push((c, dest, last.parse().unwrap()));
                }
                ["table", t] => current.as_mut().unwrap().table = t.to_string(),
                ["pick", client, port, plain, fallback] => current.as_mut().unwrap().picks.push((
                    client.parse().unwrap(),
                    port.parse().unwrap(),
                    label(plain),
                    label(fallback),
                )),
                ["end"] => out.push(current.take().unwrap()),
                _ => {}
            }
        }
        out
    }

    fn text(table: &[Option<u32>]) -> String {
        table
            .iter()
            .map(|id| id.map_or('-', |id| char::from_u32(id).unwrap()))
            .collect()
    }

    /// A scheduler holding the scenario's last weights, as the kernel's
    /// edits leave them: each server added at its last weight (oldest
    /// first), then edited to its weight.
    fn configured(s: &Scenario, flags: SchedFlags) -> Maglev {
        let mut m = Maglev::new(&[], flags);
        let mut list: Vec<Dest> = Vec::new();
        for (_, d, last) in s.servers.iter().rev() {
            let old = list.clone();
            list.insert(
                0,
                Dest {
                    weight: *last,
                    ..*d
                },
            );
            m.update(&old, &list);
        }
        let now: Vec<Dest> = s.servers.iter().map(|(_, d, _)| *d).collect();
        m.update(&list, &now);
        m
    }

    #[test]
    fn tables_and_lookups_agree_with_the_independent_model_of_the_kernel() {
        let all = scenarios();
        assert_eq!(all.len(), 8);
        for s in &all {
            let dests: Vec<Dest> = s.servers.iter().map(|(_, d, _)| *d).collect();
            for fallback in [false, true] {
                for port in [false, true] {
                    let flags = SchedFlags {
                        fallback,
                        port,
                        ipvs_order: true,
                    };
                    let mut m = configured(s, flags);
                    assert_eq!(text(&m.table), s.table, "{}", s.name);
                    for &(client, client_port, plain, with_fallback) in &s.picks {
                        if (client_port != 0) != port {
                            continue;
                        }
                        let request = Request {
                            client,
                            client_port,
                            ..Request::default()
                        };
                        let got = m
                            .pick(&dests, &request)
                            .map_or('-', |i| char::from_u32(dests[i].id).unwrap());
                        let want = if fallback { with_fallback } else { plain };
                        assert_eq!(got, want, "{} {client}:{client_port}", s.name);
                    }
                }
            }
        }
    }

    /// Three equal servers share the table about evenly; weights 3:2:1
    /// split it in proportion (the model's vectors, counted).
    #[test]
    fn slots_follow_weights() {
        let all = scenarios();
        let count = |t: &str, c: char| t.chars().filter(|&x| x == c).count();
        let weighted = all.iter().find(|s| s.name == "weighted").unwrap();
        let (a, b, c) = (
            count(&weighted.table, 'A'),
            count(&weighted.table, 'B'),
            count(&weighted.table, 'C'),
        );
        assert_eq!(a + b + c, MH_TABLE_SIZE as usize);
        assert!(
            (2040..=2055).contains(&a) && (1360..=1370).contains(&b),
            "{a} {b} {c}"
        );
    }

    /// Servers added in any order give one table (by address order); with
    /// `mh-ipvs-order` the order shows, as in the kernel.
    #[test]
    fn the_same_servers_in_any_order_give_the_same_table() {
        let server = |id: u32, last: u8, weight| Dest {
            id,
            addr: std::net::Ipv4Addr::new(192, 168, 10, last).into(),
            port: 80,
            weight,
            ..Dest::default()
        };
        let add_in = |order: &[Dest], flags| {
            let mut m = Maglev::new(&[], flags);
            let mut list: Vec<Dest> = Vec::new();
            for d in order {
                let old = list.clone();
                list.insert(0, *d);
                m.update(&old, &list);
            }
            m.table
        };
        // Ids differ between directors (each allocates its own indexes):
        // compare by address.
        let by_addr = |table: Vec<Option<u32>>, servers: &[Dest]| -> Vec<Option<IpAddr>> {
            table
                .iter()
                .map(|id| id.map(|id| servers.iter().find(|d| d.id == id).unwrap().addr))
                .collect()
        };
        let first = [
            server(1, 1, 1),
            server(2, 2, 2),
            server(3, 3, 1),
            server(4, 4, 3),
        ];
        let second = [
            server(7, 4, 3),
            server(5, 2, 2),
            server(9, 1, 1),
            server(8, 3, 1),
        ];
        let canonical = SchedFlags::default();
        assert_eq!(
            by_addr(add_in(&first, canonical), &first),
            by_addr(add_in(&second, canonical), &second)
        );
        let kernel = SchedFlags {
            ipvs_order: true,
            ..SchedFlags::default()
        };
        assert_ne!(
            by_addr(add_in(&first, kernel), &first),
            by_addr(add_in(&second, kernel), &second)
        );
    }

    /// The datapath's form: the table resolved per slot, an unusable
    /// server's slots naming none.
    #[test]
    fn buckets_resolve_each_slot_for_eligibility() {
        let s = scenarios()
            .into_iter()
            .find(|s| s.name == "quiesced")
            .unwrap();
        let dests: Vec<Dest> = s.servers.iter().map(|(_, d, _)| *d).collect();
        let m = configured(
            &s,
            SchedFlags {
                ipvs_order: true,
                ..SchedFlags::default()
            },
        );
        let buckets = m.buckets(&dests).unwrap();
        for (slot, label) in s.table.chars().enumerate() {
            let want =
                (label != 'B').then(|| dests.iter().position(|d| d.id == label as u32).unwrap());
            assert_eq!(buckets[slot], want, "slot {slot}");
        }
    }
}
