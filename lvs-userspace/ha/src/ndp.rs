//! IPv6's gratuitous ARP: the unsolicited Neighbor Advertisement (RFC 4861
//! §7.2.6) that tells every node on the link that a floating IPv6 address
//! now answers at this router's MAC, as keepalived sends on a VRRP
//! takeover.
//!
//! Frame (86 bytes; all multi-byte fields big-endian):
//!
//! | offset | len | field          | value                                          |
//! |-------:|----:|----------------|------------------------------------------------|
//! |      0 |   6 | dst MAC        | `33:33:00:00:00:01`, all-nodes multicast       |
//! |      6 |   6 | src MAC        | the sender's                                   |
//! |     12 |   2 | ethertype      | `0x86dd` IPv6                                  |
//! |     14 |   4 | version, class, flow | `0x60000000`                             |
//! |     18 |   2 | payload length | 32                                             |
//! |     20 |   1 | next header    | 58 ICMPv6                                      |
//! |     21 |   1 | hop limit      | 255 (receivers drop anything else)             |
//! |     22 |  16 | source         | the announced address                          |
//! |     38 |  16 | destination    | `ff02::1`, all nodes                           |
//! |     54 |   1 | type           | 136 Neighbor Advertisement                     |
//! |     55 |   1 | code           | 0                                              |
//! |     56 |   2 | checksum       | over the IPv6 pseudo-header and the message    |
//! |     58 |   4 | flags          | R (router) `0x80`, S (solicited) `0x40` = 0, O (override) `0x20` = 1 |
//! |     62 |  16 | target         | the announced address                          |
//! |     78 |   1 | option type    | 2, target link-layer address                   |
//! |     79 |   1 | option length  | 1 (units of 8 bytes)                           |
//! |     80 |   6 | link-layer     | the sender's MAC                               |
//!
//! Override makes every receiver replace the MAC it had for the target;
//! Solicited stays clear, so the entry becomes STALE and is confirmed
//! before long. The Router flag must say what the sender is: a host that
//! sees it drop for a router's address removes that router (§7.2.5).

use std::net::Ipv6Addr;

pub const FRAME_LEN: usize = 86;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ICMPV6: u8 = 58;
const NEIGHBOR_ADVERTISEMENT: u8 = 136;
const TARGET_LINK_LAYER_ADDRESS: u8 = 2;
const FLAG_ROUTER: u8 = 0x80;
const FLAG_SOLICITED: u8 = 0x40;
const FLAG_OVERRIDE: u8 = 0x20;
/// The ICMPv6 message: header, flags, target and the one option.
const MESSAGE_LEN: usize = 32;
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The Ethernet multicast address of `ff02::1` (RFC 2464 §7).
pub const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// What was wrong with a frame that should hold a Neighbor Advertisement.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NdpError {
    #[error(
        "truncated: {len} bytes, a Neighbor Advertisement frame with its option needs {FRAME_LEN}"
    )]
    Truncated { len: usize },
    #[error("not an IPv6 Neighbor Advertisement: {0}")]
    NotAdvertisement(&'static str),
    #[error("hop limit {0}: neighbour discovery comes only from the link (255)")]
    HopLimit(u8),
    #[error("ICMPv6 checksum {found:#06x}, expected {expected:#06x}")]
    Checksum { found: u16, expected: u16 },
}

/// An advertisement's meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advertisement {
    pub source: Ipv6Addr,
    pub destination: Ipv6Addr,
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
    pub target: Ipv6Addr,
    /// The target link-layer address option's MAC.
    pub mac: [u8; 6],
}

/// The unsolicited advertisement of `addr` at `mac`, from `addr` to all
/// nodes (keepalived's choice of source; a node that holds the address may
/// send from it). `router`: whether this router forwards IPv6 on the link.
pub fn unsolicited(mac: [u8; 6], addr: Ipv6Addr, router: bool) -> [u8; FRAME_LEN] {
    let mut frame = [0; FRAME_LEN];
    frame[0..6].copy_from_slice(&ALL_NODES_MAC);
    frame[6..12].copy_from_slice(&mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    frame[14] = 0x60;
    frame[18..20].copy_from_slice(&(MESSAGE_LEN as u16).to_be_bytes());
    frame[20] = ICMPV6;
    frame[21] = 255;
    frame[22..38].copy_from_slice(&addr.octets());
    frame[38..54].copy_from_slice(&ALL_NODES.octets());
    frame[54] = NEIGHBOR_ADVERTISEMENT;
    frame[58] = FLAG_OVERRIDE | if router { FLAG_ROUTER } else { 0 };
    frame[62..78].copy_from_slice(&addr.octets());
    frame[78] = TARGET_LINK_LAYER_ADDRESS;
    frame[79] = 1;
    frame[80..86].copy_from_slice(&mac);
    let check = checksum(addr, ALL_NODES, &frame[54..]);
    frame[56..58].copy_from_slice(&check.to_be_bytes());
    frame
}

/// The ICMPv6 checksum of `message` (its checksum field zero or not: it is
/// left out) from `source` to `destination`: over the IPv6 pseudo-header
/// and the message.
fn checksum(source: Ipv6Addr, destination: Ipv6Addr, message: &[u8]) -> u16 {
    let mut summed = Vec::with_capacity(40 + message.len());
    summed.extend_from_slice(&source.octets());
    summed.extend_from_slice(&destination.octets());
    summed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    summed.extend_from_slice(&[0, 0, 0, ICMPV6]);
    summed.extend_from_slice(&message[..2]);
    summed.extend_from_slice(&[0, 0]);
    summed.extend_from_slice(&message[4..]);
    lvs_common::checksum::full(&summed, 0)
}

/// The advertisement in an Ethernet frame with its target link-layer
/// address option first, checksum verified. Bytes after it are ignored.
pub fn parse_frame(frame: &[u8]) -> Result<Advertisement, NdpError> {
    if frame.len() < FRAME_LEN {
        return Err(NdpError::Truncated { len: frame.len() });
    }
    let not = NdpError::NotAdvertisement;
    if frame[12..14] != ETHERTYPE_IPV6.to_be_bytes() {
        return Err(not("ethertype is not IPv6"));
    }
    if frame[14] >> 4 != 6 || frame[20] != ICMPV6 {
        return Err(not("not ICMPv6 in IPv6"));
    }
    if frame[54] != NEIGHBOR_ADVERTISEMENT || frame[55] != 0 {
        return Err(not("ICMPv6 type is not 136 code 0"));
    }
    if frame[21] != 255 {
        return Err(NdpError::HopLimit(frame[21]));
    }
    let length = usize::from(u16::from_be_bytes([frame[18], frame[19]]));
    if length < MESSAGE_LEN || frame.len() < 54 + length {
        return Err(not("payload too short for the link-layer option"));
    }
    if frame[78] != TARGET_LINK_LAYER_ADDRESS || frame[79] != 1 {
        return Err(not("no target link-layer address option first"));
    }
    let addr = |at: usize| -> Ipv6Addr {
        let octets: [u8; 16] = frame[at..at + 16].try_into().expect("16 bytes");
        octets.into()
    };
    let (source, destination) = (addr(22), addr(38));
    let found = u16::from_be_bytes([frame[56], frame[57]]);
    let expected = checksum(source, destination, &frame[54..54 + length]);
    if found != expected {
        return Err(NdpError::Checksum { found, expected });
    }
    Ok(Advertisement {
        source,
        destination,
        router: frame[58] & FLAG_ROUTER != 0,
        solicited: frame[58] & FLAG_SOLICITED != 0,
        override_: frame[58] & FLAG_OVERRIDE != 0,
        target: addr(62),
        mac: frame[80..86].try_into().expect("6 bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x00, 0x01];

    /// The advertisement byte for byte, its checksum worked out by hand:
    /// the pseudo-header's and the message's 16-bit words summed, the
    /// carries folded, the sum complemented.
    #[test]
    fn unsolicited_advertisement_vector() {
        let addr: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let frame = unsolicited(MAC, addr, false);
        #[rustfmt::skip]
        let expected: [u8; FRAME_LEN] = [
            0x33, 0x33, 0, 0, 0, 1, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01, 0x86, 0xdd,
            0x60, 0, 0, 0, 0, 32, 58, 255,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
            136, 0, 0x9a, 0xfc, 0x20, 0, 0, 0,
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
            2, 1, 0x02, 0x00, 0x5e, 0x10, 0x00, 0x01,
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn what_is_sent_parses_back() {
        let addr: Ipv6Addr = "2001:db8:41::1".parse().unwrap();
        for router in [false, true] {
            let parsed = parse_frame(&unsolicited(MAC, addr, router)).unwrap();
            assert_eq!(
                parsed,
                Advertisement {
                    source: addr,
                    destination: ALL_NODES,
                    router,
                    solicited: false,
                    override_: true,
                    target: addr,
                    mac: MAC,
                }
            );
        }
    }

    #[test]
    fn damage_is_refused() {
        let addr: Ipv6Addr = "2001:db8::10".parse().unwrap();
        let frame = unsolicited(MAC, addr, true);
        for len in 0..FRAME_LEN {
            assert!(parse_frame(&frame[..len]).is_err(), "{len} bytes");
        }
        let mut flipped = frame;
        flipped[70] ^= 1;
        assert!(matches!(
            parse_frame(&flipped),
            Err(NdpError::Checksum { .. })
        ));
        let mut forwarded = frame;
        forwarded[21] = 254;
        assert_eq!(parse_frame(&forwarded), Err(NdpError::HopLimit(254)));
        let mut solicitation = frame;
        solicitation[54] = 135;
        assert!(matches!(
            parse_frame(&solicitation),
            Err(NdpError::NotAdvertisement(_))
        ));
    }
}
