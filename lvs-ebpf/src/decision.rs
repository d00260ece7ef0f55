//! The seam between deciding where a packet goes (its connection, or the
//! scheduler's pick for a new flow) and sending it there. An IPv4 packet
//! crosses it within one program (but for a tunnel across families,
//! `lvs_tunnel46`). An IPv6 one's keys and entries are too
//! large for one program's 512-byte stack, so its path runs in stages
//! (`Stage`), programs joined by tail calls: the decision waits in this CPU's
//! `DECIDED6` slot for the program that sends.

use lvs_common::{addr::Addr, Conn, Method};

/// Where to send a packet.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Decision<A: Addr> {
    /// To a real server: its address and port (a NAT packet's new
    /// destination). Back to a NAT client: the virtual service's (the
    /// reply's new source).
    pub addr: A,
    pub port: [u8; 2],
    /// `Method` of the connection (to a real server).
    pub method: u8,
    /// Non-zero: a NAT reply, back to the client.
    pub to_client: u8,
    pub real_index: u32,
    /// A packet too big for the way out: the route's MTU, for `TooBig`.
    pub mtu: u16,
}

impl<A: Addr> Decision<A> {
    /// To the real server of connection `conn` (its inbound entry).
    #[inline(always)]
    pub fn to_real(conn: &Conn<A>) -> Self {
        Self {
            addr: conn.addr(),
            port: conn.port_wire(),
            method: conn.method,
            to_client: 0,
            real_index: conn.real_index,
            mtu: 0,
        }
    }

    /// Through a tunnel to `addr` (a real server of the other family than
    /// the packet's), at `real_index`.
    #[inline(always)]
    pub fn tunnel_to(addr: A, port: [u8; 2], real_index: u32) -> Self {
        Self {
            addr,
            port,
            method: Method::Tunnel as u8,
            to_client: 0,
            real_index,
            mtu: 0,
        }
    }

    /// A tunnel to a real server of the other family: the connection (and
    /// the real server's entry in the packet's family) holds no address,
    /// the other family's `REALS` entry at the same index does.
    #[inline(always)]
    pub fn crosses_families(&self) -> bool {
        self.method == Method::Tunnel as u8 && self.addr == A::UNSPECIFIED
    }

    /// A NAT reply, back to the client from the virtual service at `vip`,
    /// `vport` (wire).
    #[inline(always)]
    pub fn to_client(vip: A, vport: [u8; 2]) -> Self {
        Self {
            addr: vip,
            port: vport,
            method: Method::Nat as u8,
            to_client: 1,
            real_index: 0,
            mtu: 0,
        }
    }
}

/// The IPv6 path's programs, by their slot in `DIRECTOR6_XDP` and
/// `DIRECTOR6_TC`.
#[derive(Clone, Copy)]
pub enum Stage {
    /// `lvs_director6`: parse, and decide for a live connection or reply.
    Director = 0,
    /// `lvs_new_flow6`: the first packet of a flow.
    NewFlow = 1,
    /// `lvs_send6`: on to the real server by NAT or DR, as decided.
    ToReal = 2,
    /// `lvs_reply6`: a NAT reply back to its client, as decided.
    ToClient = 3,
    /// `lvs_tunnel6`: on to the real server through a tunnel, as decided.
    Tunnel = 4,
    /// `lvs_too_big6` (XDP only): a DR or TUN packet too big for the way
    /// out; the sender is told (`icmp::packet_too_big`).
    TooBig = 5,
    /// `lvs_icmp_error6`: ICMPv6; an error goes to the host that owns the
    /// connection it quotes (`icmp_error`).
    IcmpError = 6,
    /// `lvs_icmp_translate6`: an ICMPv6 error about a NAT connection,
    /// translated and sent as the stage before decided.
    IcmpTranslate = 7,
    /// `lvs_tunnel46`: an IPv4 packet on to a real server through an IPv6
    /// tunnel (`tunnel::across`).
    TunnelAcross46 = 8,
    /// `lvs_tunnel64`: an IPv6 packet through an IPv4 tunnel.
    TunnelAcross64 = 9,
}

impl Stage {
    /// The stage that sends as `decision` says.
    #[inline(always)]
    pub fn sending<A: Addr>(decision: &Decision<A>) -> Self {
        if decision.to_client != 0 {
            Stage::ToClient
        } else if decision.method == Method::Tunnel as u8 {
            Stage::Tunnel
        } else {
            Stage::ToReal
        }
    }
}
