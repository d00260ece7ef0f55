//! Datapath → controller notices, through the `EVENTS` ring buffer. Only
//! rare packets send one (half a ring claimed, a destination never seen),
//! and a full buffer loses the notice, never the packet: the controller's
//! one-second maintenance catches up.

use lvs_common::{Event, EventKind};

use crate::maps::EVENTS;

#[inline(always)]
pub fn send(kind: EventKind, service_index: u32, addr: [u8; 4], real_index: u32, now: u64) {
    let _ = EVENTS.output(Event::new(kind, service_index, addr, real_index, now), 0);
}
