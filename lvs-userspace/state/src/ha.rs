//! What an operator configures for the router pair: the links heartbeats
//! and sync travel, the floating addresses, and the timing.

use std::net::{IpAddr, Ipv4Addr};

/// IPVS's sync daemon port.
pub const DEFAULT_PORT: u16 = 8848;
pub const DEFAULT_PRIORITY: u8 = 100;
pub const DEFAULT_INTERVAL_MS: u64 = 100;
/// Five missed heartbeats: a takeover well under a second.
pub const DEFAULT_DEAD_MS: u64 = 500;
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 200;
/// Gratuitous ARPs per address on takeover, and the spacing between them
/// (keepalived sends 5 at once; spacing survives a busy switch better).
pub const DEFAULT_GARP_REPEAT: u32 = 5;
pub const DEFAULT_GARP_SPACING_MS: u64 = 100;
/// An HMAC key shorter than this is refused.
pub const MIN_KEY_LEN: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HaConfig {
    pub priority: u8,
    pub preempt: bool,
    pub key: Vec<u8>,
    pub port: u16,
    pub interval_ms: u64,
    pub dead_ms: u64,
    pub sync_interval_ms: u64,
    pub garp_repeat: u32,
    pub garp_spacing_ms: u64,
    /// Heartbeats go over every link; sync over the first that works.
    pub links: Vec<Link>,
    pub addresses: Vec<Floating>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub iface: String,
    pub local: Ipv4Addr,
    pub peer: Ipv4Addr,
}

/// An address that belongs to whichever router is active: a VIP, or the
/// private-side gateway of NAT real servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floating {
    pub addr: IpAddr,
    pub prefix: u8,
    pub iface: String,
}

impl std::fmt::Display for Floating {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} dev {}", self.addr, self.prefix, self.iface)
    }
}

impl HaConfig {
    /// This router's identity in the election: its first link's address.
    pub fn node(&self) -> Ipv4Addr {
        self.links[0].local
    }
}
