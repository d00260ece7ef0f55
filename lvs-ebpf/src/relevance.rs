//! Before anything else: does this packet concern a service at all? Its
//! destination must be a virtual address, or its source a NAT real server
//! (a reply). The controller keeps both sets as bitmaps (`RELEVANT`); a
//! packet outside both passes untouched, with no connection lookup and no
//! clock read.

use lvs_common::{relevant_slot, FlowKey};

use crate::maps::RELEVANT;

const VIRTUAL: u32 = 0;
const NAT_SOURCE: u32 = 1;

#[inline(always)]
fn set(map: u32, addr: [u8; 4]) -> bool {
    let (word, mask) = relevant_slot(map, addr);
    RELEVANT.get(word).is_some_and(|w| w & mask != 0)
}

#[inline(always)]
pub fn concerns_a_service(flow: &FlowKey) -> bool {
    set(VIRTUAL, flow.dst()) || set(NAT_SOURCE, flow.src())
}
