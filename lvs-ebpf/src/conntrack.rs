//! Connection state from the packets the director sees (ipvs-semantics §3.4):
//! NAT flows use the INPUT and OUTPUT tables, DR and TUN flows, whose replies
//! bypass the director, the INPUT-ONLY table. An entry idle for longer than
//! its state's timeout is dead, whether or not the sweeper has removed it.

use lvs_common::{
    tcp_state::{tcp_next, Table},
    Conn, ConnState, Method, IPPROTO_TCP,
};

use crate::{headers::Packet, maps::TIMEOUTS};

/// The table for a packet from the client on a connection using `method`.
#[inline(always)]
pub fn input_table(method: u8) -> Table {
    if method == Method::Nat as u8 {
        Table::Input
    } else {
        Table::InputOnly
    }
}

/// The state after `packet`, starting from `current`.
#[inline(always)]
pub fn next_state(packet: &Packet, table: Table, current: u8) -> u8 {
    if packet.proto == IPPROTO_TCP {
        tcp_next(table, current, packet.tcp_flags)
    } else {
        ConnState::Udp as u8
    }
}

/// Record a packet on a live entry.
#[inline(always)]
pub fn update(conn: &mut Conn, packet: &Packet, table: Table, now: u64) {
    conn.state = next_state(packet, table, conn.state);
    conn.last_seen_ns = now;
}

/// Idle for longer than its state allows.
#[inline(always)]
pub fn expired(conn: &Conn, now: u64) -> bool {
    let timeout = TIMEOUTS.get(conn.state as u32).copied().unwrap_or(0);
    conn.expired(now, timeout)
}
