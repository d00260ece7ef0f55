//! High availability: an active/backup pair of `lvsd`s that exchange
//! heartbeats, hand floating addresses over with gratuitous ARP (unsolicited
//! Neighbor Advertisements for IPv6), and sync
//! their connection tables so a takeover keeps established connections.
//!
//! * `wire`: the heartbeat, sync and resync-request datagrams (HMAC-SHA256
//!   authenticated);
//! * `arp`: the gratuitous ARP frames that move a floating address;
//! * `ndp`: their IPv6 counterpart, unsolicited Neighbor Advertisements;
//! * `election`: who is active (heartbeats, dead time, preemption, a
//!   healed split) and replay protection;
//! * `sync`: what the active router sends its backup each round;
//! * `conn`: connections and templates as the pair names them.
//!
//! No I/O here: lvsd's `ha` module runs it over UDP, and what is configured
//! lives in `lvs_state::ha`.

#![forbid(unsafe_code)]

pub mod arp;
pub mod conn;
pub mod election;
pub mod ndp;
pub mod sync;
pub mod wire;
