//! Connections and persistence templates as the router pair exchanges them:
//! by addresses, since service and real server indexes are each router's own.

use std::net::SocketAddrV4;

use lvs_common::{Conn, Direction, FlowKey};

/// A connection as the router pair exchanges it: by addresses, since the
/// service and real server indexes are each router's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SyncConn {
    pub protocol: u8,
    pub client: SocketAddrV4,
    /// The address and port the client asked for.
    pub virtual_addr: SocketAddrV4,
    /// Where the datapath sends it (for NAT, after port mapping).
    pub real: SocketAddrV4,
    pub method: u8,
    pub state: u8,
    /// Time since its last packet.
    pub idle_ms: u32,
}

impl SyncConn {
    /// The inbound flow's key.
    pub fn key(&self) -> FlowKey {
        FlowKey::from_wire(
            self.client.ip().octets(),
            self.virtual_addr.ip().octets(),
            self.client.port().to_be_bytes(),
            self.virtual_addr.port().to_be_bytes(),
            self.protocol,
        )
    }

    /// Read an inbound entry (`None` for a NAT reply entry).
    pub fn of(key: &FlowKey, conn: &Conn, now_ns: u64) -> Option<Self> {
        if conn.direction != Direction::Inbound as u8 {
            return None;
        }
        let v4 = |a: [u8; 4], p: u16| SocketAddrV4::new(a.into(), p);
        let idle_ms = now_ns.saturating_sub(conn.last_seen_ns) / 1_000_000;
        Some(Self {
            protocol: key.proto(),
            client: v4(key.src(), key.sport()),
            virtual_addr: v4(key.dst(), key.dport()),
            real: v4(conn.addr(), conn.port()),
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
    pub client_net: std::net::Ipv4Addr,
    /// The service's address and port (port 0 for a port-0 service).
    pub service: SocketAddrV4,
    /// The real server, as configured.
    pub real: SocketAddrV4,
    pub method: u8,
    /// Time left before it expires.
    pub remaining_ms: u32,
}
