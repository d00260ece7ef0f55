//! Expiry of connection entries. The datapath ignores an entry idle for
//! longer than its state's timeout; the controller's sweeper removes such
//! entries, which no packet may ever revisit, by the same rule.

use lvs_common::{addr::Addr, Conn, Direction, FlowKey, Method, Timeouts};

fn is_inbound<A: Addr>(conn: &Conn<A>) -> bool {
    conn.direction == Direction::Inbound as u8
}

/// Whether `key` is dead given a view of the table: an inbound entry when it
/// has expired, a reply entry when its inbound entry is dead, gone, or now
/// leads to another real server.
pub fn is_dead<A: Addr>(
    key: &FlowKey<A>,
    conn: &Conn<A>,
    lookup: impl Fn(&FlowKey<A>) -> Option<Conn<A>>,
    now_ns: u64,
    timeouts: &Timeouts,
) -> bool {
    if is_inbound(conn) {
        return conn.expired_under(now_ns, timeouts);
    }
    match lookup(&key.nat_inbound(conn)) {
        Some(owner) => {
            !is_inbound(&owner)
                || owner.method != Method::Nat as u8
                || owner.addr() != key.src()
                || owner.port_wire() != key.sport().to_be_bytes()
                || owner.expired_under(now_ns, timeouts)
        }
        None => true,
    }
}

/// Every dead entry of a table listing (the rule over a whole table, as
/// the tests state it; the sweeper applies `is_dead` part by part).
#[cfg(test)]
fn dead_entries(entries: &[(FlowKey, Conn)], now_ns: u64, timeouts: &Timeouts) -> Vec<FlowKey> {
    let table: std::collections::HashMap<FlowKey, Conn> = entries.iter().copied().collect();
    entries
        .iter()
        .filter(|(key, conn)| is_dead(key, conn, |k| table.get(k).copied(), now_ns, timeouts))
        .map(|(key, _)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_common::{
        tcp_state::{tcp_next, Table},
        tcp_state::{DEFAULT_TIMEOUTS, TCP_ACK, TCP_FIN, TCP_SYN},
        ConnState, NS_PER_SEC,
    };

    const S: u64 = NS_PER_SEC;
    const CLIENT: [u8; 4] = [198, 18, 1, 2];
    const VIP: [u8; 4] = [198, 18, 0, 10];
    const REAL: [u8; 4] = [198, 18, 11, 2];

    fn inbound(method: Method, state: ConnState, last_seen: u64) -> (FlowKey, Conn) {
        let key = FlowKey::from_wire(CLIENT, VIP, 40000u16.to_be_bytes(), 80u16.to_be_bytes(), 6);
        let mut conn = Conn::new(
            REAL,
            8080u16.to_be_bytes(),
            Direction::Inbound,
            method as u8,
            0,
            0,
            last_seen,
        );
        conn.state = state as u8;
        (key, conn)
    }

    fn reply_of(entry: &(FlowKey, Conn)) -> (FlowKey, Conn) {
        let (key, conn) = entry;
        let reply = Conn::new(
            VIP,
            80u16.to_be_bytes(),
            Direction::Outbound,
            conn.method,
            0,
            0,
            conn.last_seen_ns,
        );
        (key.nat_reply(conn), reply)
    }

    #[test]
    fn dr_connection_lives_by_the_input_only_table() {
        // SYN, ACK, FIN from the client: SYN_RECV 60 s, ESTABLISHED 900 s, FIN_WAIT 120 s.
        let mut state = ConnState::None as u8;
        let mut expiries = Vec::new();
        for flags in [TCP_SYN, TCP_ACK, TCP_FIN | TCP_ACK] {
            state = tcp_next(Table::InputOnly, state, flags);
            expiries.push(DEFAULT_TIMEOUTS[state as usize]);
        }
        assert_eq!(expiries, [60, 900, 120]);
        let entry = inbound(Method::Route, ConnState::FinWait, 1_000 * S);
        let at = |t: u64| dead_entries(&[entry], t, &DEFAULT_TIMEOUTS);
        assert!(at(1_000 * S + 120 * S).is_empty(), "alive at exactly 120 s");
        assert_eq!(at(1_000 * S + 120 * S + 1), [entry.0]);
    }

    #[test]
    fn nat_pair_goes_together() {
        let forward = inbound(Method::Nat, ConnState::Established, 0);
        let reply = reply_of(&forward);
        let table = [forward, reply];
        assert!(dead_entries(&table, 900 * S, &DEFAULT_TIMEOUTS).is_empty());
        let mut dead = dead_entries(&table, 901 * S, &DEFAULT_TIMEOUTS);
        dead.sort_by_key(|k| k.src());
        let mut expected = vec![forward.0, reply.0];
        expected.sort_by_key(|k| k.src());
        assert_eq!(dead, expected);
    }

    #[test]
    fn orphaned_or_stale_reply_entries_go() {
        let forward = inbound(Method::Nat, ConnState::Established, 0);
        let reply = reply_of(&forward);
        // Alone: its connection is gone.
        assert_eq!(dead_entries(&[reply], 0, &DEFAULT_TIMEOUTS), [reply.0]);
        // The client port was reused towards another real server.
        let mut moved = forward;
        moved.1 = Conn::new(
            [198, 18, 12, 2],
            8080u16.to_be_bytes(),
            Direction::Inbound,
            Method::Nat as u8,
            0,
            1,
            0,
        );
        moved.1.state = ConnState::SynRecv as u8;
        assert_eq!(
            dead_entries(&[moved, reply], 0, &DEFAULT_TIMEOUTS),
            [reply.0]
        );
    }

    #[test]
    fn udp_uses_its_own_timeout() {
        let entry = inbound(Method::Tunnel, ConnState::Udp, 0);
        assert!(!entry.1.expired_under(300 * S, &DEFAULT_TIMEOUTS));
        assert!(entry.1.expired_under(300 * S + 1, &DEFAULT_TIMEOUTS));
    }

    #[test]
    fn an_entry_stamped_after_now_was_read_is_fresh() {
        // A packet can arrive between reading the clock and listing the
        // table; the entry was then seen "in the future", not 2^64 ns ago.
        let (_, conn) = inbound(Method::Route, ConnState::Established, 10 * S + 1);
        assert!(!conn.expired_under(10 * S, &DEFAULT_TIMEOUTS));
    }
}
