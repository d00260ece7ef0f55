//! Connections and persistence templates as the router pair exchanges them:
//! by addresses, since service and real server indexes are each router's own.

use std::net::SocketAddr;

use lvs_common::{addr::Addr, Conn, Direction, FlowKey};

/// A connection as the router pair exchanges it: by addresses, since the
/// service and real server indexes are each router's own. Its three
/// addresses are of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    pub protocol: u8,
    pub client: SocketAddr,
    /// The address and port the client asked for.
    pub virtual_addr: SocketAddr,
    /// Where the datapath sends it (for NAT, after port mapping).
    pub real: SocketAddr,
    pub method: u8,
    pub state: u8,
    /// Time since its last packet.
    pub idle_ms: u32,
}

impl SyncConn {
    /// The inbound flow's key in family `A`'s table, if it is of that
    /// family.
    pub fn key<A: Addr>(&self) -> Option<FlowKey<A>> {
        Some(FlowKey::from_wire(
            A::of(self.client.ip())?,
            A::of(self.virtual_addr.ip())?,
            self.client.port().to_be_bytes(),
            self.virtual_addr.port().to_be_bytes(),
            self.protocol,
        ))
    }

    /// Read an inbound entry (`None` for a NAT reply entry, and for a
    /// tunnel across families, whose entry names its server only by index:
    /// not synced).
    pub fn of<A: Addr>(key: &FlowKey<A>, conn: &Conn<A>, now_ns: u64) -> Option<Self> {
        if conn.direction != Direction::Inbound as u8 || conn.addr() == A::UNSPECIFIED {
            return None;
        }
        let at = |a: A, p: u16| SocketAddr::new(a.ip(), p);
        let idle_ms = now_ns.saturating_sub(conn.last_seen_ns) / 1_000_000;
        Some(Self {
            protocol: key.proto(),
            client: at(key.src(), key.sport()),
            virtual_addr: at(key.dst(), key.dport()),
            real: at(conn.addr(), conn.port()),
            method: conn.method,
            state: conn.state,
            idle_ms: idle_ms.min(u32::MAX as u64) as u32,
        })
    }
}

/// A persistence template as the router pair exchanges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncTemplate {
    pub protocol: u8,
    /// The client address masked with the service's netmask.
    pub client_net: std::net::IpAddr,
    /// The service's address and port (port 0 for a port-0 service).
    pub service: SocketAddr,
    /// The real server, as configured.
    pub real: SocketAddr,
    pub method: u8,
    /// Time left before it expires.
    pub remaining_ms: u32,
}
