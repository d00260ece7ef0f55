//! Before anything else: does this packet concern a service at all? Its
//! destination must be a virtual address, or its source a NAT real server
//! (a reply). The controller keeps both sets as bitmaps (`RELEVANT`); a
//! packet outside both passes untouched, with no connection lookup and no
//! clock read.

use lvs_common::{addr::Addr, relevant_slot, FlowKey};

use crate::maps::RELEVANT;

const VIRTUAL: u32 = 0;
const NAT_SOURCE: u32 = 1;

#[inline(always)]
fn set<A: Addr>(map: u32, addr: A) -> bool {
    let (word, mask) = relevant_slot(map, addr.last_word());
    RELEVANT.get(word).is_some_and(|w| w & mask != 0)
}

/// To a virtual address: a client's packet.
#[inline(always)]
pub fn to_virtual_address<A: Addr>(flow: &FlowKey<A>) -> bool {
    set(VIRTUAL, flow.dst())
}

/// From a NAT real server's address: perhaps a reply.
#[inline(always)]
pub fn from_nat_server<A: Addr>(flow: &FlowKey<A>) -> bool {
    set(NAT_SOURCE, flow.src())
}
