//! ARP for IPv4 over Ethernet (RFC 826): enough to announce that a floating
//! address has moved to this node (gratuitous ARP, RFC 5227 §2.3) and to read
//! the ARP traffic on the segment.
//!
//! Frame (42 bytes; all multi-byte fields big-endian):
//!
//! | offset | len | field     | value                                            |
//! |-------:|----:|-----------|--------------------------------------------------|
//! |      0 |   6 | dst MAC   | `ff:ff:ff:ff:ff:ff` for gratuitous ARP           |
//! |      6 |   6 | src MAC   | the sender's                                     |
//! |     12 |   2 | ethertype | `0x0806` ARP                                     |
//! |     14 |   2 | htype     | 1 Ethernet                                       |
//! |     16 |   2 | ptype     | `0x0800` IPv4                                    |
//! |     18 |   1 | hlen      | 6                                                |
//! |     19 |   1 | plen      | 4                                                |
//! |     20 |   2 | oper      | 1 request, 2 reply                               |
//! |     22 |   6 | sha       | sender hardware (MAC) address                    |
//! |     28 |   4 | spa       | sender protocol (IPv4) address                   |
//! |     32 |   6 | tha       | target hardware address                          |
//! |     38 |   4 | tpa       | target protocol address                          |
//!
//! [`Packet`] is the ARP part (offsets above minus 14). Ethernet's minimum
//! frame is 60 bytes before the FCS: a sender's driver or NIC pads the 42
//! bytes, so [`gratuitous`] does not, and [`parse_frame`] ignores whatever
//! follows the ARP packet (padding, FCS).
//!
//! A gratuitous ARP has sender address = target address = the address being
//! announced; every host and switch on the segment that hears it updates its
//! entry for that address to the sender's MAC, which is what moves traffic
//! for a floating address to the node that took it over.

use std::net::Ipv4Addr;

pub const ETHERNET_HEADER_LEN: usize = 14;
/// An ARP packet for Ethernet and IPv4.
pub const PACKET_LEN: usize = 28;
/// An Ethernet frame carrying an ARP packet, without padding or FCS.
pub const FRAME_LEN: usize = ETHERNET_HEADER_LEN + PACKET_LEN;

pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const HTYPE_ETHERNET: u16 = 1;
pub const BROADCAST: [u8; 6] = [0xff; 6];

/// What was wrong with a frame or ARP packet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ArpError {
    #[error("truncated frame: {len} bytes, an Ethernet frame carrying ARP needs {FRAME_LEN}")]
    TruncatedFrame { len: usize },
    #[error("truncated: {len} bytes, an ARP packet for Ethernet and IPv4 needs {PACKET_LEN}")]
    Truncated { len: usize },
    #[error("not ARP: ethertype {0:#06x}, ARP is 0x0806")]
    EtherType(u16),
    #[error("hardware type {0}, only Ethernet (1) is supported")]
    HardwareType(u16),
    #[error("protocol type {0:#06x}, only IPv4 (0x0800) is supported")]
    ProtocolType(u16),
    #[error("hardware address length {0}, Ethernet's is 6")]
    HardwareLen(u8),
    #[error("protocol address length {0}, IPv4's is 4")]
    ProtocolLen(u8),
    #[error("unknown operation {0} (1 request, 2 reply)")]
    Operation(u16),
}

/// The ARP operation (RFC 826 `ar$op`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
}

impl From<Operation> for u16 {
    fn from(operation: Operation) -> u16 {
        match operation {
            Operation::Request => 1,
            Operation::Reply => 2,
        }
    }
}

impl TryFrom<u16> for Operation {
    type Error = ArpError;
    fn try_from(value: u16) -> Result<Operation, ArpError> {
        match value {
            1 => Ok(Operation::Request),
            2 => Ok(Operation::Reply),
            other => Err(ArpError::Operation(other)),
        }
    }
}

mod field {
    use std::ops::Range;

    // Ethernet header.
    pub const DESTINATION: Range<usize> = 0..6;
    pub const SOURCE: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;

    // ARP packet.
    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

fn be_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes(bytes.try_into().expect("2-byte field"))
}

fn mac(bytes: &[u8]) -> [u8; 6] {
    bytes.try_into().expect("6-byte field")
}

fn ipv4(bytes: &[u8]) -> Ipv4Addr {
    let octets: [u8; 4] = bytes.try_into().expect("4-byte field");
    Ipv4Addr::from(octets)
}

/// A view of an ARP packet for Ethernet and IPv4 in a buffer.
///
/// Accessors panic if the buffer is shorter than [`PACKET_LEN`]; use
/// [`Packet::new_checked`] on untrusted input. The address fields are read at
/// the Ethernet/IPv4 offsets whatever `hlen` and `plen` say; [`Repr::parse`]
/// rejects other sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Packet<T>, ArpError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// At least [`PACKET_LEN`] bytes; more (Ethernet padding) is allowed.
    pub fn check_len(&self) -> Result<(), ArpError> {
        let len = self.buffer.as_ref().len();
        if len < PACKET_LEN {
            return Err(ArpError::Truncated { len });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn hardware_type(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::HTYPE])
    }

    pub fn protocol_type(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::PTYPE])
    }

    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The raw operation; [`Operation::try_from`] interprets it.
    pub fn operation(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::OPER])
    }

    pub fn source_hardware_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::SHA])
    }

    pub fn source_protocol_addr(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::SPA])
    }

    pub fn target_hardware_addr(&self) -> [u8; 6] {
        mac(&self.buffer.as_ref()[field::THA])
    }

    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4(&self.buffer.as_ref()[field::TPA])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_hardware_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_protocol_type(&mut self, value: u16) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    pub fn set_operation(&mut self, value: u16) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_source_hardware_addr(&mut self, value: [u8; 6]) {
        self.buffer.as_mut()[field::SHA].copy_from_slice(&value);
    }

    pub fn set_source_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::SPA].copy_from_slice(&value.octets());
    }

    pub fn set_target_hardware_addr(&mut self, value: [u8; 6]) {
        self.buffer.as_mut()[field::THA].copy_from_slice(&value);
    }

    pub fn set_target_protocol_addr(&mut self, value: Ipv4Addr) {
        self.buffer.as_mut()[field::TPA].copy_from_slice(&value.octets());
    }
}

/// An Ethernet/IPv4 ARP packet, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repr {
    pub operation: Operation,
    pub source_mac: [u8; 6],
    pub source_addr: Ipv4Addr,
    pub target_mac: [u8; 6],
    pub target_addr: Ipv4Addr,
}

impl Repr {
    /// Checks the length and the fixed fields (Ethernet, IPv4, 6, 4) and the
    /// operation, then reads the addresses.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, ArpError> {
        packet.check_len()?;
        if packet.hardware_type() != HTYPE_ETHERNET {
            return Err(ArpError::HardwareType(packet.hardware_type()));
        }
        if packet.protocol_type() != ETHERTYPE_IPV4 {
            return Err(ArpError::ProtocolType(packet.protocol_type()));
        }
        if packet.hardware_len() != 6 {
            return Err(ArpError::HardwareLen(packet.hardware_len()));
        }
        if packet.protocol_len() != 4 {
            return Err(ArpError::ProtocolLen(packet.protocol_len()));
        }
        Ok(Repr {
            operation: Operation::try_from(packet.operation())?,
            source_mac: packet.source_hardware_addr(),
            source_addr: packet.source_protocol_addr(),
            target_mac: packet.target_hardware_addr(),
            target_addr: packet.target_protocol_addr(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes every field, the fixed ones included.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let Repr {
            operation,
            source_mac,
            source_addr,
            target_mac,
            target_addr,
        } = *self;
        packet.set_hardware_type(HTYPE_ETHERNET);
        packet.set_protocol_type(ETHERTYPE_IPV4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(operation.into());
        packet.set_source_hardware_addr(source_mac);
        packet.set_source_protocol_addr(source_addr);
        packet.set_target_hardware_addr(target_mac);
        packet.set_target_protocol_addr(target_addr);
    }

    /// Whether this announces its sender's own address (sender address =
    /// target address), as gratuitous requests and replies do; a conflicting
    /// announcement of one of our floating addresses looks like this.
    pub fn is_gratuitous(&self) -> bool {
        self.source_addr == self.target_addr
    }
}

/// `repr` in an Ethernet frame to `destination`, from `repr.source_mac`.
/// 42 bytes: the driver pads to Ethernet's minimum.
pub fn frame(destination: [u8; 6], repr: &Repr) -> [u8; FRAME_LEN] {
    let mut frame = [0; FRAME_LEN];
    frame[field::DESTINATION].copy_from_slice(&destination);
    frame[field::SOURCE].copy_from_slice(&repr.source_mac);
    frame[field::ETHERTYPE].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    repr.emit(&mut Packet::new_unchecked(
        &mut frame[ETHERNET_HEADER_LEN..],
    ));
    frame
}

/// A gratuitous ARP frame announcing `addr` at `mac`, Ethernet header
/// included: 42 bytes, to the broadcast MAC from `mac`, with `mac` as sender
/// MAC and `addr` as both sender and target address. Not padded: the 60-byte
/// Ethernet minimum is the kernel's or driver's business when it is sent on
/// a packet socket.
///
/// `reply == false` gives a request with the target MAC all zeroes: byte for
/// byte the ARP Announcement of RFC 5227 §2.3, and what Linux itself sends
/// (`arp_notify`). `reply == true` gives an unsolicited reply with the
/// broadcast address as target MAC.
///
/// Other senders differ only in the target MAC, which receivers ignore
/// in a gratuitous ARP: keepalived and `arping -U` put the broadcast address
/// in their requests, and `arping -A` puts the sender's own MAC in its
/// replies. Some hosts update their caches from requests but not replies, or
/// the other way round, which is why takeover code usually sends both.
pub fn gratuitous(mac: [u8; 6], addr: Ipv4Addr, reply: bool) -> [u8; 42] {
    let (operation, target_mac) = if reply {
        (Operation::Reply, BROADCAST)
    } else {
        (Operation::Request, [0; 6])
    };
    frame(
        BROADCAST,
        &Repr {
            operation,
            source_mac: mac,
            source_addr: addr,
            target_mac,
            target_addr: addr,
        },
    )
}

/// The ARP packet in an Ethernet frame (as read from a packet socket):
/// checks the ethertype and the ARP fixed fields. Bytes after the ARP packet
/// (padding, FCS) are ignored; the Ethernet addresses are not returned (the
/// ARP packet carries the sender's MAC). VLAN-tagged frames are rejected
/// as not ARP: packet sockets receive them untagged.
pub fn parse_frame(frame: &[u8]) -> Result<Repr, ArpError> {
    let len = frame.len();
    if len < ETHERNET_HEADER_LEN {
        return Err(ArpError::TruncatedFrame { len });
    }
    let ethertype = be_u16(&frame[field::ETHERTYPE]);
    if ethertype != ETHERTYPE_ARP {
        return Err(ArpError::EtherType(ethertype));
    }
    if len < FRAME_LEN {
        return Err(ArpError::TruncatedFrame { len });
    }
    Repr::parse(&Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const ADDR: Ipv4Addr = Ipv4Addr::new(192, 168, 7, 10);

    // The captured frames were read from a packet socket on one end of a
    // veth pair (Linux 6.x, iputils arping 20221126) and checked field by
    // field against RFC 826's layout in the module doc.

    /// Captured: what Linux sends with `arp_notify` set when the interface's
    /// MAC changes: 192.168.7.10 announces itself at 52:54:00:12:34:56.
    #[rustfmt::skip]
    const KERNEL_ANNOUNCEMENT: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src 52:54:00:12:34:56
        0x08, 0x06,                         // ethertype ARP
        0x00, 0x01,                         // htype Ethernet
        0x08, 0x00,                         // ptype IPv4
        0x06,                               // hlen
        0x04,                               // plen
        0x00, 0x01,                         // oper request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sha
        0xc0, 0xa8, 0x07, 0x0a,             // spa 192.168.7.10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha zero
        0xc0, 0xa8, 0x07, 0x0a,             // tpa 192.168.7.10
    ];

    /// `gratuitous(MAC, ADDR, true)`: the unsolicited reply.
    #[rustfmt::skip]
    const GRATUITOUS_REPLY: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src 52:54:00:12:34:56
        0x08, 0x06,                         // ethertype ARP
        0x00, 0x01,                         // htype Ethernet
        0x08, 0x00,                         // ptype IPv4
        0x06,                               // hlen
        0x04,                               // plen
        0x00, 0x02,                         // oper reply
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sha
        0xc0, 0xa8, 0x07, 0x0a,             // spa 192.168.7.10
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // tha broadcast
        0xc0, 0xa8, 0x07, 0x0a,             // tpa 192.168.7.10
    ];

    /// Captured: `arping -U -I va 192.168.7.10` (tha broadcast).
    #[rustfmt::skip]
    const ARPING_U: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x07, 0x0a,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xa8, 0x07, 0x0a,
    ];

    /// Captured: `arping -A -I va 192.168.7.10` (a reply; tha = own MAC).
    #[rustfmt::skip]
    const ARPING_A: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02,
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x07, 0x0a,
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x07, 0x0a,
    ];

    /// Captured: Linux resolving a neighbour: who has 192.168.7.99? Tell
    /// 192.168.7.10.
    #[rustfmt::skip]
    const WHO_HAS: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // dst broadcast
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x08, 0x06,                         // ethertype ARP
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet, IPv4, 6, 4
        0x00, 0x01,                         // oper request
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // sha
        0xc0, 0xa8, 0x07, 0x0a,             // spa 192.168.7.10
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tha unknown
        0xc0, 0xa8, 0x07, 0x63,             // tpa 192.168.7.99
    ];

    fn announcement(operation: Operation, target_mac: [u8; 6]) -> Repr {
        Repr {
            operation,
            source_mac: MAC,
            source_addr: ADDR,
            target_mac,
            target_addr: ADDR,
        }
    }

    fn who_has() -> Repr {
        Repr {
            target_addr: Ipv4Addr::new(192, 168, 7, 99),
            ..announcement(Operation::Request, [0; 6])
        }
    }

    #[test]
    fn gratuitous_request_is_what_linux_sends() {
        assert_eq!(gratuitous(MAC, ADDR, false), KERNEL_ANNOUNCEMENT);
        assert_eq!(
            parse_frame(&KERNEL_ANNOUNCEMENT),
            Ok(announcement(Operation::Request, [0; 6]))
        );
    }

    #[test]
    fn gratuitous_reply_vector() {
        assert_eq!(gratuitous(MAC, ADDR, true), GRATUITOUS_REPLY);
        assert_eq!(
            parse_frame(&GRATUITOUS_REPLY),
            Ok(announcement(Operation::Reply, BROADCAST))
        );
    }

    #[test]
    fn arping_announcements_parse_as_gratuitous() {
        let request = parse_frame(&ARPING_U).unwrap();
        assert_eq!(request, announcement(Operation::Request, BROADCAST));
        assert!(request.is_gratuitous());
        let reply = parse_frame(&ARPING_A).unwrap();
        assert_eq!(reply, announcement(Operation::Reply, MAC));
        assert!(reply.is_gratuitous());
        // Our frames differ from arping's only in the target MAC.
        assert_eq!(gratuitous(MAC, ADDR, false)[..32], ARPING_U[..32]);
        assert_eq!(gratuitous(MAC, ADDR, false)[38..], ARPING_U[38..]);
        assert_eq!(gratuitous(MAC, ADDR, true)[..32], ARPING_A[..32]);
        assert_eq!(gratuitous(MAC, ADDR, true)[38..], ARPING_A[38..]);
    }

    #[test]
    fn request_for_another_address_parses() {
        let repr = parse_frame(&WHO_HAS).unwrap();
        assert_eq!(repr, who_has());
        assert!(!repr.is_gratuitous());
        assert_eq!(frame(BROADCAST, &who_has()), WHO_HAS);
    }

    #[test]
    fn padding_and_fcs_are_ignored() {
        let mut padded = WHO_HAS.to_vec();
        padded.resize(60, 0);
        assert_eq!(parse_frame(&padded), Ok(who_has()));
        padded.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(parse_frame(&padded), Ok(who_has()));
    }

    #[test]
    fn packet_view_reads_and_writes_fields() {
        let packet = Packet::new_checked(&WHO_HAS[ETHERNET_HEADER_LEN..]).unwrap();
        assert_eq!(packet.hardware_type(), 1);
        assert_eq!(packet.protocol_type(), 0x0800);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), 1);
        assert_eq!(packet.source_hardware_addr(), MAC);
        assert_eq!(packet.source_protocol_addr(), ADDR);
        assert_eq!(packet.target_hardware_addr(), [0; 6]);
        assert_eq!(
            packet.target_protocol_addr(),
            Ipv4Addr::new(192, 168, 7, 99)
        );
        assert_eq!(Repr::parse(&packet), Ok(who_has()));

        let mut buffer = [0xaau8; PACKET_LEN];
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        packet.set_hardware_type(1);
        packet.set_protocol_type(0x0800);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(1);
        packet.set_source_hardware_addr(MAC);
        packet.set_source_protocol_addr(ADDR);
        packet.set_target_hardware_addr([0; 6]);
        packet.set_target_protocol_addr(Ipv4Addr::new(192, 168, 7, 99));
        assert_eq!(buffer, WHO_HAS[ETHERNET_HEADER_LEN..]);

        let mut buffer = [0xaau8; PACKET_LEN];
        who_has().emit(&mut Packet::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, WHO_HAS[ETHERNET_HEADER_LEN..]);
        assert_eq!(who_has().buffer_len(), PACKET_LEN);
    }

    #[test]
    fn every_truncated_frame_fails_cleanly() {
        for vector in [&KERNEL_ANNOUNCEMENT, &GRATUITOUS_REPLY, &WHO_HAS] {
            for len in 0..FRAME_LEN {
                assert_eq!(
                    parse_frame(&vector[..len]),
                    Err(ArpError::TruncatedFrame { len }),
                    "cut to {len}"
                );
            }
        }
        for len in 0..PACKET_LEN {
            let arp = &WHO_HAS[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + len];
            assert_eq!(Packet::new_checked(arp), Err(ArpError::Truncated { len }));
            assert_eq!(
                Repr::parse(&Packet::new_unchecked(arp)),
                Err(ArpError::Truncated { len })
            );
        }
    }

    #[test]
    fn wrong_ethertype_fails() {
        for ethertype in [0x0800u16, 0x86dd, 0x8100, 0x8035, 0x0000] {
            let mut frame = WHO_HAS;
            frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
            assert_eq!(parse_frame(&frame), Err(ArpError::EtherType(ethertype)));
            // Short frames of another protocol are "not ARP", not "truncated".
            assert_eq!(
                parse_frame(&frame[..20]),
                Err(ArpError::EtherType(ethertype))
            );
        }
    }

    #[test]
    fn wrong_fixed_fields_fail() {
        let cases: [(usize, u8, ArpError); 7] = [
            (15, 6, ArpError::HardwareType(6)),      // IEEE 802
            (14, 1, ArpError::HardwareType(0x0101)), // high byte
            (16, 0x86, ArpError::ProtocolType(0x8600)),
            (17, 0xdd, ArpError::ProtocolType(0x08dd)),
            (18, 8, ArpError::HardwareLen(8)),
            (19, 16, ArpError::ProtocolLen(16)),
            (21, 3, ArpError::Operation(3)), // RARP request
        ];
        for (at, value, expected) in cases {
            let mut frame = WHO_HAS;
            frame[at] = value;
            assert_eq!(parse_frame(&frame), Err(expected), "byte {at} = {value}");
        }
        let mut frame = WHO_HAS;
        frame[21] = 0;
        assert_eq!(parse_frame(&frame), Err(ArpError::Operation(0)));
    }

    #[test]
    fn operations_round_trip() {
        for operation in [Operation::Request, Operation::Reply] {
            assert_eq!(Operation::try_from(u16::from(operation)), Ok(operation));
        }
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let cases = [
            (
                ArpError::TruncatedFrame { len: 20 },
                "truncated frame: 20 bytes, an Ethernet frame carrying ARP needs 42",
            ),
            (
                ArpError::Truncated { len: 8 },
                "truncated: 8 bytes, an ARP packet for Ethernet and IPv4 needs 28",
            ),
            (
                ArpError::EtherType(0x0800),
                "not ARP: ethertype 0x0800, ARP is 0x0806",
            ),
            (
                ArpError::HardwareType(6),
                "hardware type 6, only Ethernet (1) is supported",
            ),
            (
                ArpError::ProtocolType(0x86dd),
                "protocol type 0x86dd, only IPv4 (0x0800) is supported",
            ),
            (
                ArpError::HardwareLen(8),
                "hardware address length 8, Ethernet's is 6",
            ),
            (
                ArpError::ProtocolLen(16),
                "protocol address length 16, IPv4's is 4",
            ),
            (
                ArpError::Operation(3),
                "unknown operation 3 (1 request, 2 reply)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
