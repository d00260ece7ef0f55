//! Datapath → controller notices, through the `EVENTS` ring buffer. Only
//! rare packets send one (half a ring claimed, a destination never seen),
//! and a full buffer loses the notice, never the packet: the controller's
//! one-second maintenance catches up. And, on a router of a pair, each
//! connection's changes for the HA task (`CONN_CHANGES`).

use core::ptr::addr_of_mut;

use lvs_common::{Conn, ConnChange, Event, EventKind, FlowKey};

use crate::{family::Family, maps::SETTINGS};

/// Stamped with the precise clock: lvsd measures refills from it.
#[inline(always)]
pub fn send<P: Family>(kind: EventKind, service_index: u32, addr: P::Addr, real_index: u32) {
    let now = crate::stats::precise_now();
    let event: Event<P::Addr> = Event::new(kind, service_index, addr, real_index, now);
    let _ = P::events().output(event, 0);
}

/// A new connection, or one whose state a packet moved, for lvsd to sync
/// at once when this router is one of a pair. A full buffer loses the
/// record, not the connection: the sweeper's pass sends it later.
#[inline(always)]
pub fn conn_changed<P: Family>(key: &FlowKey<P::Addr>, conn: &Conn<P::Addr>) {
    if !SETTINGS.get(0).is_some_and(|s| s.syncs_changes()) {
        return;
    }
    // Written in place: built on the stack, an IPv6 record would take 88
    // bytes of it.
    if let Some(mut record) = P::conn_changes().reserve::<ConnChange<P::Addr>>(0) {
        let record_ptr = record.as_mut_ptr();
        // SAFETY: a reserved record of this type; both fields are written
        // before it is submitted.
        unsafe {
            addr_of_mut!((*record_ptr).key).write(*key);
            addr_of_mut!((*record_ptr).conn).write(*conn);
        }
        record.submit(0);
    }
}
