//! Connection state from the packets the director sees (ipvs-semantics §3.4):
//! NAT flows use the INPUT and OUTPUT tables, DR and TUN flows, whose replies
//! bypass the director, the INPUT-ONLY table. An entry idle for longer than
//! its state's timeout is dead, whether or not the sweeper has removed it.
//!
//! Each inbound entry is counted in its real server's ActiveConn or
//! InActConn (`REAL_CONNS`, a share per CPU). The state moves by compare-and-swap, so that
//! when two CPUs move one flow at once (its two directions), exactly one
//! move happens and the counts follow it.
//!
//! Entries a SYN made are held to a quota while they are half-open
//! (`HalfOpenSlot`): the oldest gives way to the newest (to within the
//! block of slots each CPU takes at a time), so a SYN flood
//! holds a bounded part of the table, evicts no connection that completed
//! its handshake, and cannot lock new clients out.

use core::{
    intrinsics::{atomic_cxchg, atomic_xadd, AtomicOrdering},
    ptr::addr_of_mut,
};

use lvs_common::{
    addr::Addr,
    tcp_state::{tcp_next, Table, TCP_SYN},
    Conn, ConnState, Direction, FlowKey, HalfOpenSlot, Method, HALF_OPEN_BLOCK_SLOTS, IPPROTO_TCP,
    STATE_CLAIMED,
};

use crate::{
    events,
    family::Family,
    headers::Packet,
    maps::{HALF_OPEN_BLOCK, HALF_OPEN_TURN, REAL_CONNS, TIMEOUTS},
    stats,
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
pub fn next_state<P: Family>(packet: &Packet<P>, table: Table, current: u8) -> u8 {
    if packet.proto == IPPROTO_TCP {
        tcp_next(table, current, packet.tcp_flags)
    } else {
        ConnState::Udp as u8
    }
}

/// The aligned word whose low byte is the entry's state (the rest is zero).
#[inline(always)]
fn state_word<P: Family>(conn: *mut Conn<P::Addr>) -> *mut u32 {
    // SAFETY: in bounds of the value; alignment asserted in lvs-common.
    unsafe { conn.cast::<u8>().add(P::CONN_STATE_OFFSET).cast::<u32>() }
}

/// Swap the state from `from` to `to` unless another CPU moved it first.
#[inline(always)]
fn swap_state<P: Family>(conn: *mut Conn<P::Addr>, from: u8, to: u8) -> bool {
    // SAFETY: an aligned word of a live map value.
    unsafe {
        atomic_cxchg::<u32, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            state_word::<P>(conn),
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
    // SAFETY: this CPU's share, which no other context touches while the
    // program runs (packet programs do not nest on a CPU).
    unsafe { (*counts).move_by(active, delta) };
}

/// An inbound entry joined the table.
#[inline(always)]
pub fn count<A: Addr>(conn: &Conn<A>) {
    if let Some((real, active)) = conn.counted_as() {
        add(real, active, 1);
    }
}

/// An inbound entry left the table.
#[inline(always)]
pub fn uncount<A: Addr>(conn: &Conn<A>) {
    if let Some((real, active)) = conn.counted_as() {
        add(real, active, u32::MAX);
    }
}

/// Record a packet on the live inbound entry of flow `key`.
#[inline(always)]
pub fn update<P: Family>(
    key: &FlowKey<P::Addr>,
    conn: *mut Conn<P::Addr>,
    packet: &Packet<P>,
    table: Table,
    now: u64,
) {
    // SAFETY: a live map value; fields other than the state are plain.
    let entry = unsafe { &mut *conn };
    let current = entry.state;
    let next = next_state(packet, table, current);
    entry.last_seen_ns = now;
    if next != current && current & STATE_CLAIMED == 0 && swap_state::<P>(conn, current, next) {
        if entry.half_open_slot != 0 {
            // Out of SYN_RECV (the handshake completed, or a reset).
            release_half_open_slot::<P>(key, entry.half_open_slot - 1);
            entry.half_open_slot = 0;
        }
        let (was, is) = (is_active(current), is_active(next));
        if entry.direction == Direction::Inbound as u8 && was != is {
            add(entry.real_index, was, u32::MAX);
            add(entry.real_index, is, 1);
        }
        events::conn_changed::<P>(key, entry);
    }
}

/// Free an inbound entry (expired, or closed and reopened by a SYN) for a
/// new flow with the same key. Of two CPUs (or a CPU and the sweeper) that
/// find it so at once, the one that marks it claimed removes it, and
/// whoever removes it uncounts it.
#[inline(always)]
pub fn free_for_new_flow<P: Family>(key: &FlowKey<P::Addr>, conn: *mut Conn<P::Addr>) {
    // SAFETY: a live map value.
    let (state, real_index) = unsafe { ((*conn).state, (*conn).real_index) };
    if state & STATE_CLAIMED == 0
        && swap_state::<P>(conn, state, state | STATE_CLAIMED)
        && P::conns().remove(key).is_ok()
    {
        add(real_index, is_active(state), u32::MAX);
    }
}

/// A SYN on a closed connection (TIME_WAIT or CLOSE): IPVS, with its
/// default `conn_reuse_mode` 1, expires such a connection and schedules
/// the SYN afresh, unless a persistence template holds it.
#[inline(always)]
pub fn reopened_by<P: Family>(conn: &Conn<P::Addr>, packet: &Packet<P>) -> bool {
    packet.proto == IPPROTO_TCP
        && packet.tcp_flags & TCP_SYN != 0
        && (conn.state == ConnState::TimeWait as u8 || conn.state == ConnState::Close as u8)
}

/// Idle for longer than its state allows.
#[inline(always)]
pub fn expired<A: Addr>(conn: &Conn<A>, now: u64) -> bool {
    let timeout = TIMEOUTS.get(conn.state as u32).copied().unwrap_or(0);
    conn.expired(now, timeout)
}

/// A SYN is about to make a half-open entry: the index of the quota's slot
/// it takes, once the entry that took that slot a lap earlier is evicted if
/// it is still half-open. None without a quota.
#[inline(always)]
pub fn take_half_open_slot<P: Family>() -> Option<u32> {
    let index = next_half_open_slot()?;
    let slot = P::half_open().get_ptr_mut(index)?;
    // SAFETY: an array slot, live for the run.
    let (held, key) = unsafe { ((*slot).held, (*slot).key) };
    if held != 0 {
        evict_half_open::<P>(&key, index);
    }
    Some(index)
}

/// The next slot in this CPU's block, taking a new block when that is used
/// up. (Out of line: inlined, LLVM 22 kept a value in R1 across a helper
/// call, which the verifier refuses.)
#[inline(never)]
fn next_half_open_slot() -> Option<u32> {
    let block = HALF_OPEN_BLOCK.get_ptr_mut(0)?;
    // SAFETY: this CPU's value, which no other context touches while the
    // program runs (packet programs do not nest on a CPU).
    let block = unsafe { &mut *block };
    if block.next == block.end {
        let turn = HALF_OPEN_TURN.get_ptr_mut(0)?;
        // SAFETY: an array slot, live for the run; `next` is an aligned u64.
        let (blocks, ticket) = unsafe {
            let blocks = (*turn).slots / HALF_OPEN_BLOCK_SLOTS;
            if blocks == 0 {
                return None;
            }
            let ticket =
                atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(addr_of_mut!((*turn).next), 1);
            (blocks, ticket)
        };
        block.next = (ticket % u64::from(blocks)) as u32 * HALF_OPEN_BLOCK_SLOTS;
        block.end = block.next + HALF_OPEN_BLOCK_SLOTS;
    }
    let index = block.next;
    block.next += 1;
    Some(index)
}

/// The entry of `key`, just made with `half_open_slot` = `index` + 1,
/// holds the slot.
#[inline(always)]
pub fn hold_half_open_slot<P: Family>(index: u32, key: &FlowKey<P::Addr>) {
    if let Some(slot) = P::half_open().get_ptr_mut(index) {
        // SAFETY: an array slot, live for the run.
        unsafe { *slot = HalfOpenSlot::held_by(*key) };
    }
}

/// The entry of `key` left SYN_RECV: its slot is free, unless a later SYN
/// already took it.
#[inline(always)]
fn release_half_open_slot<P: Family>(key: &FlowKey<P::Addr>, index: u32) {
    if let Some(slot) = P::half_open().get_ptr_mut(index) {
        // SAFETY: an array slot, live for the run.
        unsafe {
            if (*slot).key == *key {
                (*slot).held = 0;
            }
        }
    }
}

/// Evict the entry of `key` if it is still the half-open one that took
/// slot `index`, with its NAT reply entry; claimed first, as an expired
/// entry is, so that it is removed and uncounted once.
#[inline(always)]
fn evict_half_open<P: Family>(key: &FlowKey<P::Addr>, index: u32) {
    let conns = P::conns();
    let Some(entry) = conns.get_ptr_mut(key) else {
        return;
    };
    // SAFETY: a live map value, read before it is removed.
    let (state, holder, nat, real_index, addr, port) = unsafe {
        (
            (*entry).state,
            (*entry).half_open_slot,
            (*entry).method == Method::Nat as u8,
            (*entry).real_index,
            (*entry).addr(),
            (*entry).port_wire(),
        )
    };
    if state != ConnState::SynRecv as u8
        || holder != index + 1
        || !swap_state::<P>(entry, state, state | STATE_CLAIMED)
        || conns.remove(key).is_err()
    {
        return;
    }
    add(real_index, is_active(state), u32::MAX);
    if nat {
        let reply = key.nat_reply_from(addr, port);
        // SAFETY: fields copied out before the removal.
        let ours = unsafe { conns.get(reply) }.is_some_and(|r| {
            r.direction == Direction::Outbound as u8
                && r.addr() == key.dst()
                && r.port_wire() == key.dport().to_be_bytes()
        });
        if ours {
            let _ = conns.remove(reply);
        }
    }
    stats::count_half_open_evicted();
}
