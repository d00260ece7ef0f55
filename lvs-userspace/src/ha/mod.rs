//! High availability: an active/backup pair of `lvsd`s that exchange
//! heartbeats, hand floating addresses over with gratuitous ARP, and sync
//! their connection tables so a takeover keeps established connections.
//!
//! * `wire`: the heartbeat, sync and resync-request datagrams (HMAC-SHA256
//!   authenticated);
//! * `arp`: the gratuitous ARP frames that move a floating address;
//! * `spec`: what is configured (links, floating addresses, timing, key);
//! * `election`: who is active (heartbeats, dead time, preemption, a
//!   healed split) and replay protection;
//! * `sync`: what the active router sends its backup each round;
//! * `runner`: lvsd's task that runs it all over UDP.

pub mod arp;
pub mod election;
pub mod runner;
pub mod spec;
pub mod sync;
pub mod wire;
