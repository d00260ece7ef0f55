//! Connection state from the packets the director sees (ipvs-semantics §3.4):
//! NAT flows use the INPUT and OUTPUT tables, DR and TUN flows, whose replies
//! bypass the director, the INPUT-ONLY table. An entry idle for longer than
//! its state's timeout is dead, whether or not the sweeper has removed it.
//!
//! Each inbound entry is counted in its real server's ActiveConn or
//! InActConn (`REAL_CONNS`). The state moves by compare-and-swap, so that
//! when two CPUs move one flow at once (its two directions), exactly one
//! move happens and the counts follow it.

use core::intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering};

use lvs_common::{
    tcp_state::{tcp_next, Table},
    Conn, ConnState, Direction, FlowKey, Method, CONN_STATE_OFFSET, IPPROTO_TCP, STATE_CLAIMED,
};

use crate::{
    events,
    headers::Packet,
    maps::{CONNS, REAL_CONNS, TIMEOUTS},
};

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

/// The aligned word whose low byte is the entry's state (the rest is zero).
#[inline(always)]
fn state_word(conn: *mut Conn) -> *mut u32 {
    // SAFETY: in bounds of the value; alignment asserted in lvs-common.
    unsafe { conn.cast::<u8>().add(CONN_STATE_OFFSET).cast::<u32>() }
}

/// Swap the state from `from` to `to` unless another CPU moved it first.
#[inline(always)]
fn swap_state(conn: *mut Conn, from: u8, to: u8) -> bool {
    // SAFETY: an aligned word of a live map value.
    unsafe {
        atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            state_word(conn),
            u32::from(from),
            u32::from(to),
        )
    }
    .1
}

#[inline(always)]
fn is_active(state: u8) -> bool {
    ConnState::from_u8(state).is_some_and(ConnState::is_active)
}

/// Add `delta` (wrapping: `u32::MAX` is minus one) to one count of a real.
#[inline(always)]
fn add(real_index: u32, active: bool, delta: u32) {
    let Some(counts) = REAL_CONNS.get_ptr_mut(real_index) else {
        return;
    };
    // SAFETY: aligned u32 fields of an array slot, live for the run.
    unsafe {
        let field = if active {
            core::ptr::addr_of_mut!((*counts).active)
        } else {
            core::ptr::addr_of_mut!((*counts).inactive)
        };
        atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(field, delta);
    }
}

/// An inbound entry joined the table.
#[inline(always)]
pub fn count(conn: &Conn) {
    if let Some((real, active)) = conn.counted_as() {
        add(real, active, 1);
    }
}

/// An inbound entry left the table.
#[inline(always)]
pub fn uncount(conn: &Conn) {
    if let Some((real, active)) = conn.counted_as() {
        add(real, active, u32::MAX);
    }
}

/// Record a packet on the live inbound entry of flow `key`.
#[inline(always)]
pub fn update(key: &FlowKey, conn: *mut Conn, packet: &Packet, table: Table, now: u64) {
    // SAFETY: a live map value; fields other than the state are plain.
    let entry = unsafe { &mut *conn };
    let current = entry.state;
    let next = next_state(packet, table, current);
    entry.last_seen_ns = now;
    if next != current && current & STATE_CLAIMED == 0 && swap_state(conn, current, next) {
        let (was, is) = (is_active(current), is_active(next));
        if entry.direction == Direction::Inbound as u8 && was != is {
            add(entry.real_index, was, u32::MAX);
            add(entry.real_index, is, 1);
        }
        events::conn_changed(key, entry);
    }
}

/// Free an expired inbound entry for a new flow with the same key. Of two
/// CPUs (or a CPU and the sweeper) that find it expired at once, the one
/// that marks it claimed removes it, and whoever removes it uncounts it.
#[inline(always)]
pub fn free_expired(key: &FlowKey, conn: *mut Conn) {
    // SAFETY: a live map value.
    let (state, real_index) = unsafe { ((*conn).state, (*conn).real_index) };
    if state & STATE_CLAIMED == 0
        && swap_state(conn, state, state | STATE_CLAIMED)
        && CONNS.remove(key).is_ok()
    {
        add(real_index, is_active(state), u32::MAX);
    }
}

/// Idle for longer than its state allows.
#[inline(always)]
pub fn expired(conn: &Conn, now: u64) -> bool {
    let timeout = TIMEOUTS.get(conn.state as u32).copied().unwrap_or(0);
    conn.expired(now, timeout)
}
