//! Datapath → controller notices, through the `EVENTS` ring buffer. Only
//! rare packets send one (half a ring claimed, a destination never seen),
//! and a full buffer loses the notice, never the packet: the controller's
//! one-second maintenance catches up. And, on a router of a pair, each
//! connection's changes for the HA task (`CONN_CHANGES`).

use lvs_common::{Conn, ConnChange, Event, EventKind, FlowKey};

use crate::maps::{CONN_CHANGES, EVENTS, SETTINGS};

/// Stamped with the precise clock: lvsd measures refills from it.
#[inline(always)]
pub fn send(kind: EventKind, service_index: u32, addr: [u8; 4], real_index: u32) {
    let now = crate::stats::precise_now();
    let _ = EVENTS.output(Event::new(kind, service_index, addr, real_index, now), 0);
}

/// A new connection, or one whose state a packet moved, for lvsd to sync
/// at once when this router is one of a pair. A full buffer loses the
/// record, not the connection: the sweeper's pass sends it later.
#[inline(always)]
pub fn conn_changed(key: &FlowKey, conn: &Conn) {
    if SETTINGS.get(0).is_some_and(|s| s.syncs_changes()) {
        let _ = CONN_CHANGES.output(
            ConnChange {
                key: *key,
                conn: *conn,
            },
            0,
        );
    }
}
