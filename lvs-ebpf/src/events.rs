//! Datapath → controller notices, through the `EVENTS` ring buffer. Only
//! rare packets send one (half a ring claimed, a destination never seen),
//! and a full buffer loses the notice, never the packet: the controller's
//! one-second maintenance catches up.

use lvs_common::{Conn, Event, EventKind, FlowKey, NewFlow};

use crate::maps::{EVENTS, NEW_FLOWS, SETTINGS};

/// Stamped with the precise clock: lvsd measures refills from it.
#[inline(always)]
pub fn send(kind: EventKind, service_index: u32, addr: [u8; 4], real_index: u32) {
    let now = crate::stats::precise_now();
    let _ = EVENTS.output(Event::new(kind, service_index, addr, real_index, now), 0);
}

/// A new connection, for lvsd to sync at once when this router is one of a
/// pair. A full buffer loses the record, not the connection: the next sync
/// round sends it.
#[inline(always)]
pub fn new_flow(key: &FlowKey, conn: &Conn) {
    if SETTINGS.get(0).is_some_and(|s| s.syncs_new_flows()) {
        let _ = NEW_FLOWS.output(
            NewFlow {
                key: *key,
                conn: *conn,
            },
            0,
        );
    }
}
