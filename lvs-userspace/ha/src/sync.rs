//! What the active router sends its backup of its persistence templates
//! each sync round: only what changed since the last round. (Connections
//! go as the datapath creates them, and as lvsd's sweeper finds them used
//! or removes them.)

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
};

use super::wire::Op;
use crate::conn::SyncTemplate;

/// A template re-armed by this much or more is sent again.
pub const REFRESH_MS: u64 = 5_000;

type TemplateId = (u8, IpAddr, SocketAddr);

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

    fn template(net: u8, real: u8, remaining_ms: u32) -> SyncTemplate {
        SyncTemplate {
            protocol: 6,
            client_net: [10, 0, net, 0].into(),
            service: SocketAddr::from(([198, 18, 0, 10], 0)),
            real: SocketAddr::from(([198, 18, 11, real], 0)),
            method: 0,
            remaining_ms,
        }
    }

    #[test]
    fn templates_are_sent_when_new_moved_or_re_armed() {
        let mut e = TemplateExporter::default();
        let ops = |c: &[(Op, SyncTemplate)]| -> Vec<(Op, u8)> {
            c.iter()
                .map(|(op, t)| match t.client_net {
                    IpAddr::V4(net) => (*op, net.octets()[2]),
                    IpAddr::V6(_) => unreachable!("IPv4 templates only here"),
                })
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
