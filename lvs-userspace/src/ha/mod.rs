//! High availability: an active/backup pair of `lvsd`s that exchange
//! heartbeats, hand floating addresses over with gratuitous ARP, and sync
//! their connection tables so a takeover keeps established connections.
//!
//! * `wire`: the heartbeat, sync and resync-request datagrams (HMAC-SHA256
//!   authenticated);
//! * `arp`: the gratuitous ARP frames that move a floating address.

pub mod arp;
pub mod wire;
