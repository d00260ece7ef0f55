//! What the active router sends its backup each sync round: only what
//! changed since the last round, and now and then what is still alive, so
//! that the backup's copy of a busy connection never expires.

use std::{collections::HashMap, net::SocketAddrV4};

use super::wire::Op;
use crate::conntable::SyncConn;

/// A connection still in use is sent again this long after it was last
/// sent (the shortest idle timeout that matters, CLOSE's, is 10 s).
pub const REFRESH_MS: u64 = 5_000;

type Flow = (u8, SocketAddrV4, SocketAddrV4);

fn flow(c: &SyncConn) -> Flow {
    (c.protocol, c.client, c.virtual_addr)
}

#[derive(Clone, Copy, Debug)]
struct Sent {
    real: SocketAddrV4,
    method: u8,
    state: u8,
    at_ms: u64,
}

#[derive(Debug, Default)]
pub struct Exporter {
    sent: HashMap<Flow, Sent>,
}

impl Exporter {
    /// The records for this round, given every live connection now:
    /// new ones, ones whose state or server changed, ones used since they
    /// were last sent more than `REFRESH_MS` ago, and removals of the ones
    /// that are gone.
    pub fn changes(&mut self, now_ms: u64, live: &[SyncConn]) -> Vec<(Op, SyncConn)> {
        let mut out = Vec::new();
        let mut seen = HashMap::with_capacity(live.len());
        for c in live {
            let last_packet_ms = now_ms.saturating_sub(u64::from(c.idle_ms));
            let send = match self.sent.get(&flow(c)) {
                None => true,
                Some(s) => {
                    (s.real, s.state) != (c.real, c.state)
                        || (now_ms.saturating_sub(s.at_ms) >= REFRESH_MS
                            && last_packet_ms > s.at_ms)
                }
            };
            let entry = match (send, self.sent.get(&flow(c))) {
                (false, Some(s)) => *s,
                _ => {
                    out.push((Op::Upsert, *c));
                    Sent {
                        real: c.real,
                        method: c.method,
                        state: c.state,
                        at_ms: now_ms,
                    }
                }
            };
            seen.insert(flow(c), entry);
        }
        for (f, s) in &self.sent {
            if !seen.contains_key(f) {
                let (protocol, client, virtual_addr) = *f;
                out.push((
                    Op::Remove,
                    SyncConn {
                        protocol,
                        client,
                        virtual_addr,
                        real: s.real,
                        method: s.method,
                        state: s.state,
                        idle_ms: 0,
                    },
                ));
            }
        }
        self.sent = seen;
        out
    }

    /// Everything, for a backup that asked for a full resync.
    pub fn full(&mut self, now_ms: u64, live: &[SyncConn]) -> Vec<SyncConn> {
        self.sent = live
            .iter()
            .map(|c| {
                (
                    flow(c),
                    Sent {
                        real: c.real,
                        method: c.method,
                        state: c.state,
                        at_ms: now_ms,
                    },
                )
            })
            .collect();
        live.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(client_port: u16, state: u8, idle_ms: u32) -> SyncConn {
        SyncConn {
            protocol: 6,
            client: SocketAddrV4::new([198, 18, 1, 2].into(), client_port),
            virtual_addr: SocketAddrV4::new([198, 18, 0, 10].into(), 80),
            real: SocketAddrV4::new([198, 18, 11, 2].into(), 8080),
            method: 2,
            state,
            idle_ms,
        }
    }
    fn ops(changes: &[(Op, SyncConn)]) -> Vec<(Op, u16, u8)> {
        changes
            .iter()
            .map(|(op, c)| (*op, c.client.port(), c.state))
            .collect()
    }

    #[test]
    fn only_changes_are_sent() {
        let mut e = Exporter::default();
        let first = e.changes(1000, &[conn(1, 1, 0), conn(2, 1, 0)]);
        assert_eq!(ops(&first), [(Op::Upsert, 1, 1), (Op::Upsert, 2, 1)]);
        // Nothing moved.
        assert!(e
            .changes(1200, &[conn(1, 1, 200), conn(2, 1, 200)])
            .is_empty());
        // 1 changed state; 2 is gone.
        let next = e.changes(1400, &[conn(1, 2, 0)]);
        assert_eq!(ops(&next), [(Op::Upsert, 1, 2), (Op::Remove, 2, 1)]);
        assert!(e.changes(1600, &[conn(1, 2, 200)]).is_empty());
    }

    #[test]
    fn a_busy_connection_is_refreshed_and_an_idle_one_is_not() {
        let mut e = Exporter::default();
        e.changes(0, &[conn(1, 1, 0), conn(2, 1, 0)]);
        let later = REFRESH_MS + 100;
        // 1 carried a packet 50 ms ago; 2 has been idle since it was sent.
        let round = e.changes(later, &[conn(1, 1, 50), conn(2, 1, later as u32)]);
        assert_eq!(ops(&round), [(Op::Upsert, 1, 1)]);
        assert!(
            e.changes(later + 200, &[conn(1, 1, 10)]).len() == 1,
            "2 is gone"
        );
    }

    #[test]
    fn a_full_resync_sends_everything_and_resets_the_rounds() {
        let mut e = Exporter::default();
        e.changes(0, &[conn(1, 1, 0)]);
        let all = e.full(100, &[conn(1, 1, 100), conn(3, 1, 0)]);
        assert_eq!(all.len(), 2);
        assert!(e
            .changes(200, &[conn(1, 1, 200), conn(3, 1, 200)])
            .is_empty());
    }
}
