//! What the active router sends its backup each sync round: only what
//! changed since the last round, and now and then what is still alive, so
//! that the backup's copy of a busy connection never expires.

use std::{collections::HashMap, net::SocketAddrV4};

use super::wire::Op;
use crate::conn::{SyncConn, SyncTemplate};

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

    /// A connection sent on its own as it was created, between rounds:
    /// the next round sends it again only if it changed.
    pub fn sent_now(&mut self, now_ms: u64, c: &SyncConn) {
        self.sent.insert(
            flow(c),
            Sent {
                real: c.real,
                method: c.method,
                state: c.state,
                at_ms: now_ms,
            },
        );
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

type TemplateId = (u8, std::net::Ipv4Addr, SocketAddrV4);

fn template_id(t: &SyncTemplate) -> TemplateId {
    (t.protocol, t.client_net, t.service)
}

/// The same for persistence templates: new ones, ones that point at
/// another server, ones whose expiry moved later by `REFRESH_MS` or more
/// (each new connection of the client network re-arms it), and removals.
#[derive(Debug, Default)]
pub struct TemplateExporter {
    /// What was sent, and the expiry it announced (sender's clock, ms).
    sent: HashMap<TemplateId, (SyncTemplate, u64)>,
}

impl TemplateExporter {
    pub fn changes(&mut self, now_ms: u64, live: &[SyncTemplate]) -> Vec<(Op, SyncTemplate)> {
        let mut out = Vec::new();
        let mut seen = HashMap::with_capacity(live.len());
        for t in live {
            let expires = now_ms + u64::from(t.remaining_ms);
            let entry = match self.sent.get(&template_id(t)) {
                Some((s, at)) if s.real == t.real && expires < at + REFRESH_MS => (*s, *at),
                _ => {
                    out.push((Op::TemplateUpsert, *t));
                    (*t, expires)
                }
            };
            seen.insert(template_id(t), entry);
        }
        for (id, (t, _)) in &self.sent {
            if !seen.contains_key(id) {
                out.push((Op::TemplateRemove, *t));
            }
        }
        self.sent = seen;
        out
    }

    pub fn full(&mut self, now_ms: u64, live: &[SyncTemplate]) -> Vec<SyncTemplate> {
        self.sent = live
            .iter()
            .map(|t| (template_id(t), (*t, now_ms + u64::from(t.remaining_ms))))
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

    fn template(net: u8, real: u8, remaining_ms: u32) -> SyncTemplate {
        SyncTemplate {
            protocol: 6,
            client_net: [10, 0, net, 0].into(),
            service: SocketAddrV4::new([198, 18, 0, 10].into(), 0),
            real: SocketAddrV4::new([198, 18, 11, real].into(), 0),
            method: 0,
            remaining_ms,
        }
    }

    #[test]
    fn templates_are_sent_when_new_moved_or_re_armed() {
        let mut e = TemplateExporter::default();
        let ops = |c: &[(Op, SyncTemplate)]| -> Vec<(Op, u8)> {
            c.iter()
                .map(|(op, t)| (*op, t.client_net.octets()[2]))
                .collect()
        };
        let first = e.changes(0, &[template(1, 2, 300_000), template(2, 2, 300_000)]);
        assert_eq!(
            ops(&first),
            [(Op::TemplateUpsert, 1), (Op::TemplateUpsert, 2)]
        );
        // Time passes, nothing re-armed: nothing to say.
        assert!(e
            .changes(1_000, &[template(1, 2, 299_000), template(2, 2, 299_000)])
            .is_empty());
        // Network 1 re-armed 6 s later (its expiry moved by 6 s); network 2
        // now points at another server.
        let next = e.changes(6_000, &[template(1, 2, 300_000), template(2, 3, 294_000)]);
        assert_eq!(
            ops(&next),
            [(Op::TemplateUpsert, 1), (Op::TemplateUpsert, 2)]
        );
        // Network 2 expired.
        let last = e.changes(7_000, &[template(1, 2, 299_000)]);
        assert_eq!(ops(&last), [(Op::TemplateRemove, 2)]);
        assert_eq!(e.full(8_000, &[template(1, 2, 298_000)]).len(), 1);
        assert!(e.changes(9_000, &[template(1, 2, 297_000)]).is_empty());
    }
}
