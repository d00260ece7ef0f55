//! The datagrams two `lvsd`s exchange over UDP: heartbeats, connection-sync
//! batches and resync requests.
//!
//! Every message is a 32-byte header, a body, and a 32-byte HMAC-SHA256 tag
//! over header and body under the pair's shared key. The tag is checked
//! before any field is believed, in constant time, so a forged or damaged
//! datagram is rejected as `authentication failed` whatever it contains.
//! All multi-byte fields are big-endian.
//!
//! Header:
//!
//! | offset | len | field    | meaning                                                  |
//! |-------:|----:|----------|----------------------------------------------------------|
//! |      0 |   4 | magic    | `b"LVS1"`                                                |
//! |      4 |   1 | version  | 1                                                        |
//! |      5 |   1 | kind     | 1 heartbeat, 2 sync, 3 resync request                    |
//! |      6 |   1 | role     | the sender's: 0 backup, 1 active                         |
//! |      7 |   1 | priority | the sender's, 1..=255                                    |
//! |      8 |   4 | node     | the sender's IPv4 address (breaks ties on priority)      |
//! |     12 |   8 | boot     | the sender's boot id: its start, ms since the Unix epoch |
//! |     20 |   8 | seq      | strictly increasing per sender within a boot, all kinds  |
//! |     28 |   2 | count    | sync records in the body (0 for other kinds)             |
//! |     30 |   2 | flags    | bit 0 FULL, bit 1 LAST, bit 2 IPV6 (sync only); others 0 |
//! |     32 |  .. | body     | `count` × 28-byte records, 64-byte with IPV6 (sync only) |
//! |     .. |  32 | tag      | HMAC-SHA256(key, header ‖ body)                          |
//!
//! FULL marks a sync batch that is part of a full resync (the answer to a
//! resync request); LAST marks the last batch of one, and implies FULL.
//! IPV6 says the batch's records are all IPv6 records; without it they are
//! all IPv4 records. One batch carries one family.
//!
//! Sync record (IPv4):
//!
//! | offset | len | field    | meaning                                                |
//! |-------:|----:|----------|--------------------------------------------------------|
//! |      0 |   1 | op       | 1 upsert, 2 remove; 3, 4 the same for a template       |
//! |      1 |   1 | protocol | IP protocol number: 6 TCP, 17 UDP                      |
//! |      2 |   1 | method   | 0 route (DR), 1 tunnel, 2 nat — *not* `maps::Method`'s |
//! |      3 |   1 | state    | IPVS connection state number (carried as is)           |
//! |      4 |   4 | client   | address                                                |
//! |      8 |   2 |          | port                                                   |
//! |     10 |   4 | virtual  | address                                                |
//! |     14 |   2 |          | port                                                   |
//! |     16 |   4 | real     | address                                                |
//! |     20 |   2 |          | port                                                   |
//! |     22 |   2 | reserved | must be 0                                              |
//! |     24 |   4 | idle_ms  | ms since the connection's last packet (sender's clock) |
//!
//! IPv6 sync record (in a batch with IPV6): the same fields, with 16-byte
//! addresses:
//!
//! | offset | len | field    | meaning                                                |
//! |-------:|----:|----------|--------------------------------------------------------|
//! |      0 |   1 | op       | as in the IPv4 record                                  |
//! |      1 |   1 | protocol |                                                        |
//! |      2 |   1 | method   |                                                        |
//! |      3 |   1 | state    |                                                        |
//! |      4 |  16 | client   | address                                                |
//! |     20 |   2 |          | port                                                   |
//! |     22 |  16 | virtual  | address                                                |
//! |     38 |   2 |          | port                                                   |
//! |     40 |  16 | real     | address                                                |
//! |     56 |   2 |          | port                                                   |
//! |     58 |   2 | reserved | must be 0                                              |
//! |     60 |   4 | idle_ms  | as in the IPv4 record                                  |
//!
//! A persistence template (ops 3 and 4) uses the same record: `client` is
//! the client network (port 0), `virtual` the service's address and port
//! (port 0 for a port-0 service), `real` the server as configured, `state`
//! 0, and `idle_ms` the time the template has left.
//!
//! A heartbeat and a resync request are 64 bytes; a sync message is
//! 64 + 28 × count bytes, at most [`MAX_RECORDS`] (50) records, or with IPV6
//! 64 + 64 × count bytes, at most [`MAX_RECORDS6`] (22) records, so that it
//! fits one unfragmented datagram on a 1500-byte MTU ([`MAX_DATAGRAM_LEN`]).
//! The version stays 1: a batch without IPV6 is byte for byte what routers
//! that know only IPv4 send and accept, and such a router refuses an IPv6
//! batch for its unknown flag bit.
//!
//! As in smoltcp, [`Packet`] and [`RecordPacket`] are views that read and
//! write fields in place, and [`Header`], [`Record`] and [`Message`] are the
//! parsed, validated forms. Whatever [`Message::parse`] accepts,
//! [`Message::emit`] writes back byte for byte, and whatever
//! [`Message::try_emit`] writes, `parse` accepts.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const HEADER_LEN: usize = 32;
pub const TAG_LEN: usize = 32;
/// An IPv4 sync record.
pub const RECORD_LEN: usize = 28;
/// An IPv6 sync record (in a batch with [`FLAG_IPV6`]).
pub const RECORD6_LEN: usize = 64;
/// Largest UDP payload that crosses a 1500-byte MTU unfragmented (minus the
/// 20-byte IPv4 and 8-byte UDP headers).
pub const MAX_DATAGRAM_LEN: usize = 1472;
/// Most records that fit one datagram of at most 1472 bytes (a 1500-byte MTU minus IPv4 and UDP headers).
pub const MAX_RECORDS: usize = (MAX_DATAGRAM_LEN - HEADER_LEN - TAG_LEN) / RECORD_LEN; // = 50
/// Most IPv6 records that fit one datagram of at most [`MAX_DATAGRAM_LEN`] bytes.
pub const MAX_RECORDS6: usize = (MAX_DATAGRAM_LEN - HEADER_LEN - TAG_LEN) / RECORD6_LEN; // = 22
/// The shortest message: a header and a tag (a heartbeat or resync request).
pub const MIN_LEN: usize = HEADER_LEN + TAG_LEN;

pub const MAGIC: [u8; 4] = *b"LVS1";
pub const VERSION: u8 = 1;

/// `flags` bit: this sync batch is part of a full resync.
pub const FLAG_FULL: u16 = 0x0001;
/// `flags` bit: the last batch of a full resync.
pub const FLAG_LAST: u16 = 0x0002;
/// `flags` bit: the batch's records are IPv6 records ([`RECORD6_LEN`] bytes).
pub const FLAG_IPV6: u16 = 0x0004;
const KNOWN_FLAGS: u16 = FLAG_FULL | FLAG_LAST | FLAG_IPV6;

/// The length of one record of the family: [`RECORD6_LEN`] for IPv6,
/// [`RECORD_LEN`] for IPv4.
pub const fn record_len(ipv6: bool) -> usize {
    if ipv6 {
        RECORD6_LEN
    } else {
        RECORD_LEN
    }
}

/// Most records of the family that fit one datagram: [`MAX_RECORDS6`] for
/// IPv6, [`MAX_RECORDS`] for IPv4.
pub const fn max_records(ipv6: bool) -> usize {
    if ipv6 {
        MAX_RECORDS6
    } else {
        MAX_RECORDS
    }
}

pub const PROTOCOL_TCP: u8 = 6;
pub const PROTOCOL_UDP: u8 = 17;

/// The record's `method` numbers. They differ from `lvs_common::maps::Method`
/// (the datapath's, IPVS's `IP_VS_CONN_F_*`); convert with [`method_to_wire`]
/// and [`method_from_wire`].
pub const METHOD_ROUTE: u8 = 0;
pub const METHOD_TUNNEL: u8 = 1;
pub const METHOD_NAT: u8 = 2;

/// The wire number of a datapath forwarding method; `None` for a local
/// real server, whose connections end with the router that holds them.
pub const fn method_to_wire(method: lvs_common::maps::Method) -> Option<u8> {
    use lvs_common::maps::Method;
    match method {
        Method::Route => Some(METHOD_ROUTE),
        Method::Tunnel => Some(METHOD_TUNNEL),
        Method::Nat => Some(METHOD_NAT),
        Method::Local => None,
    }
}

/// The datapath forwarding method of a wire number, `None` if it has none.
pub const fn method_from_wire(method: u8) -> Option<lvs_common::maps::Method> {
    use lvs_common::maps::Method;
    match method {
        METHOD_ROUTE => Some(Method::Route),
        METHOD_TUNNEL => Some(Method::Tunnel),
        METHOD_NAT => Some(Method::Nat),
        _ => None,
    }
}

/// What was wrong with a datagram (or with a message a caller asked to emit).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated: {len} bytes, even a heartbeat needs {MIN_LEN}")]
    Truncated { len: usize },
    #[error("truncated record: {len} bytes, an {} record needs {}", family(.ipv6), record_len(*.ipv6))]
    RecordTruncated { len: usize, ipv6: bool },
    /// `ipv6`: the family the IPV6 flag says the records are.
    #[error("length mismatch: {len} bytes, but count {count} makes {} with {} records", length_for(.count, .ipv6), family(.ipv6))]
    LengthMismatch { len: usize, count: u16, ipv6: bool },
    #[error("authentication failed")]
    AuthenticationFailed,
    #[error("bad magic {0:02x?}, expected \"LVS1\"")]
    BadMagic([u8; 4]),
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("unknown kind {0} (1 heartbeat, 2 sync, 3 resync request)")]
    UnknownKind(u8),
    #[error("unknown role {0} (0 backup, 1 active)")]
    UnknownRole(u8),
    #[error("priority 0 (priorities run from 1 to 255)")]
    ZeroPriority,
    #[error(
        "unknown flag bits {0:#06x} (only FULL 0x0001, LAST 0x0002 and IPV6 0x0004 are defined)"
    )]
    UnknownFlags(u16),
    #[error("flags {flags:#06x} on a {kind} (only sync messages carry FULL, LAST and IPV6)")]
    FlagsOnNonSync { kind: Kind, flags: u16 },
    #[error("LAST without FULL (LAST marks the last batch of a full resync)")]
    LastWithoutFull,
    #[error("a {kind} carries no records, but count is {count}")]
    RecordsOnNonSync { kind: Kind, count: usize },
    #[error("too many records: {count}, at most {} {} records fit one datagram", max_records(*.ipv6), family(.ipv6))]
    TooManyRecords { count: usize, ipv6: bool },
    #[error("record {index}: {error}")]
    Record { index: usize, error: Box<WireError> },
    #[error("unknown op {0} (1 upsert, 2 remove, 3 template upsert, 4 template remove)")]
    UnknownOp(u8),
    #[error("unsupported protocol {0} (6 TCP or 17 UDP)")]
    UnknownProtocol(u8),
    #[error("unknown method {0} (0 route, 1 tunnel, 2 nat)")]
    UnknownMethod(u8),
    #[error("reserved bytes are {0:#06x}, must be 0")]
    NonzeroReserved(u16),
    #[error("the client, virtual and real addresses are not all IPv4 or all IPv6")]
    MixedFamilies,
    /// `ipv6`: the record's family; the batch's (its first record's) is the
    /// other.
    #[error("an {} record in a batch of {} records (a message carries one family)", family(.ipv6), family(&!*.ipv6))]
    FamilyMismatch { ipv6: bool },
}

/// The datagram length of a message with `count` records of the family.
fn length_for(count: &u16, ipv6: &bool) -> usize {
    MIN_LEN + record_len(*ipv6) * usize::from(*count)
}

fn family(ipv6: &bool) -> &'static str {
    if *ipv6 {
        "IPv6"
    } else {
        "IPv4"
    }
}

impl WireError {
    fn in_record(self, index: usize) -> WireError {
        WireError::Record {
            index,
            error: Box::new(self),
        }
    }
}

/// A node's part in the pair. The active one owns the floating addresses and
/// sends sync; the backup listens and takes over when heartbeats stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Backup,
    Active,
}

impl From<Role> for u8 {
    fn from(role: Role) -> u8 {
        match role {
            Role::Backup => 0,
            Role::Active => 1,
        }
    }
}

impl TryFrom<u8> for Role {
    type Error = WireError;
    fn try_from(byte: u8) -> Result<Role, WireError> {
        match byte {
            0 => Ok(Role::Backup),
            1 => Ok(Role::Active),
            other => Err(WireError::UnknownRole(other)),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Backup => "backup",
            Role::Active => "active",
        })
    }
}

/// What a message is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// "I am alive, in this role, at this priority."
    Heartbeat,
    /// A batch of connection changes (or of a full resync, with FULL).
    Sync,
    /// "Send me your whole connection table": a backup that (re)started or
    /// lost sync asks the active node for a full resync.
    ResyncRequest,
}

impl From<Kind> for u8 {
    fn from(kind: Kind) -> u8 {
        match kind {
            Kind::Heartbeat => 1,
            Kind::Sync => 2,
            Kind::ResyncRequest => 3,
        }
    }
}

impl TryFrom<u8> for Kind {
    type Error = WireError;
    fn try_from(byte: u8) -> Result<Kind, WireError> {
        match byte {
            1 => Ok(Kind::Heartbeat),
            2 => Ok(Kind::Sync),
            3 => Ok(Kind::ResyncRequest),
            other => Err(WireError::UnknownKind(other)),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Heartbeat => "heartbeat",
            Kind::Sync => "sync",
            Kind::ResyncRequest => "resync request",
        })
    }
}

/// What a sync record does to the receiver's connection table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create the connection, or refresh its state and idle time.
    Upsert,
    /// The connection is gone on the sender: drop it.
    Remove,
    /// Create or refresh a persistence template (a client network's server).
    TemplateUpsert,
    /// The template expired on the sender.
    TemplateRemove,
}

impl From<Op> for u8 {
    fn from(op: Op) -> u8 {
        match op {
            Op::Upsert => 1,
            Op::Remove => 2,
            Op::TemplateUpsert => 3,
            Op::TemplateRemove => 4,
        }
    }
}

impl TryFrom<u8> for Op {
    type Error = WireError;
    fn try_from(byte: u8) -> Result<Op, WireError> {
        match byte {
            1 => Ok(Op::Upsert),
            2 => Ok(Op::Remove),
            3 => Ok(Op::TemplateUpsert),
            4 => Ok(Op::TemplateRemove),
            other => Err(WireError::UnknownOp(other)),
        }
    }
}

mod field {
    use std::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const KIND: usize = 5;
    pub const ROLE: usize = 6;
    pub const PRIORITY: usize = 7;
    pub const NODE: Range<usize> = 8..12;
    pub const BOOT: Range<usize> = 12..20;
    pub const SEQ: Range<usize> = 20..28;
    pub const COUNT: Range<usize> = 28..30;
    pub const FLAGS: Range<usize> = 30..32;

    // A record of either family.
    pub const OP: usize = 0;
    pub const PROTOCOL: usize = 1;
    pub const METHOD: usize = 2;
    pub const STATE: usize = 3;

    /// Where a record's fields after `state` are: the same fields in the
    /// same order in both families, each address followed by its port.
    pub struct Record {
        pub client: Range<usize>,
        pub virtual_addr: Range<usize>,
        pub real: Range<usize>,
        pub reserved: Range<usize>,
        pub idle_ms: Range<usize>,
    }

    pub const RECORD: Record = Record {
        client: 4..10,
        virtual_addr: 10..16,
        real: 16..22,
        reserved: 22..24,
        idle_ms: 24..28,
    };

    pub const RECORD6: Record = Record {
        client: 4..22,
        virtual_addr: 22..40,
        real: 40..58,
        reserved: 58..60,
        idle_ms: 60..64,
    };

    const _: () = assert!(RECORD.idle_ms.end == super::RECORD_LEN);
    const _: () = assert!(RECORD6.idle_ms.end == super::RECORD6_LEN);
}

fn be_u16(bytes: &[u8]) -> u16 {
    u16::from_be_bytes(bytes.try_into().expect("2-byte field"))
}

fn be_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(bytes.try_into().expect("4-byte field"))
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes.try_into().expect("8-byte field"))
}

/// An address and its port: 6 bytes for IPv4, 18 for IPv6.
fn socket_addr(bytes: &[u8]) -> SocketAddr {
    let (addr, port) = bytes.split_at(bytes.len() - 2);
    let addr = match <[u8; 4]>::try_from(addr) {
        Ok(v4) => IpAddr::from(v4),
        Err(_) => IpAddr::from(<[u8; 16]>::try_from(addr).expect("4- or 16-byte address")),
    };
    SocketAddr::new(addr, be_u16(port))
}

/// Writes `addr` where [`socket_addr`] reads it; the field's length must be
/// that of `addr`'s family.
fn put_socket_addr(bytes: &mut [u8], addr: SocketAddr) {
    let (field, port) = bytes.split_at_mut(bytes.len() - 2);
    match addr.ip() {
        IpAddr::V4(ip) => field.copy_from_slice(&ip.octets()),
        IpAddr::V6(ip) => field.copy_from_slice(&ip.octets()),
    }
    port.copy_from_slice(&addr.port().to_be_bytes());
}

fn hmac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// HMAC-SHA256 of `signed` under `key`: the tag that follows it.
pub fn compute_tag(signed: &[u8], key: &[u8]) -> [u8; TAG_LEN] {
    let mut mac = hmac(key);
    mac.update(signed);
    mac.finalize().into_bytes().into()
}

/// Whether `tag` is `signed`'s tag under `key`, compared in constant time so
/// that timing does not leak how much of a forged tag was right.
pub fn verify_tag(signed: &[u8], tag: &[u8], key: &[u8]) -> Result<(), WireError> {
    let mut mac = hmac(key);
    mac.update(signed);
    mac.verify_slice(tag)
        .map_err(|_| WireError::AuthenticationFailed)
}

/// A view of a message datagram (header, body, tag) in a buffer.
///
/// Field accessors panic if the buffer is shorter than the field's end; use
/// [`Packet::new_checked`] (or check the length first) on untrusted input.
/// Body and tag positions follow the `count` field and the IPV6 flag (which
/// says how long each record is).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking its length.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// The buffer holds a header and a tag, and exactly `count` records of
    /// the family the IPV6 flag says between them: every accessor is then in
    /// bounds.
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < MIN_LEN {
            return Err(WireError::Truncated { len });
        }
        let (count, ipv6) = (self.count(), self.ipv6());
        if len != length_for(&count, &ipv6) {
            return Err(WireError::LengthMismatch { len, count, ipv6 });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn magic(&self) -> [u8; 4] {
        self.buffer.as_ref()[field::MAGIC]
            .try_into()
            .expect("4-byte field")
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The raw kind byte; [`Kind::try_from`] interprets it.
    pub fn kind(&self) -> u8 {
        self.buffer.as_ref()[field::KIND]
    }

    /// The raw role byte; [`Role::try_from`] interprets it.
    pub fn role(&self) -> u8 {
        self.buffer.as_ref()[field::ROLE]
    }

    pub fn priority(&self) -> u8 {
        self.buffer.as_ref()[field::PRIORITY]
    }

    pub fn node(&self) -> Ipv4Addr {
        let octets: [u8; 4] = self.buffer.as_ref()[field::NODE]
            .try_into()
            .expect("4-byte field");
        Ipv4Addr::from(octets)
    }

    pub fn boot(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::BOOT])
    }

    pub fn seq(&self) -> u64 {
        be_u64(&self.buffer.as_ref()[field::SEQ])
    }

    pub fn count(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::COUNT])
    }

    pub fn flags(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[field::FLAGS])
    }

    /// Whether the IPV6 flag is set: the body's records are IPv6 records.
    pub fn ipv6(&self) -> bool {
        self.flags() & FLAG_IPV6 != 0
    }

    /// The length of each of the body's records ([`record_len`]).
    pub fn record_len(&self) -> usize {
        record_len(self.ipv6())
    }

    fn body_end(&self) -> usize {
        HEADER_LEN + self.record_len() * usize::from(self.count())
    }

    /// Header and body: the bytes the tag covers.
    pub fn signed(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.body_end()]
    }

    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.body_end()]
    }

    pub fn tag(&self) -> &[u8] {
        let start = self.body_end();
        &self.buffer.as_ref()[start..start + TAG_LEN]
    }

    /// Checks the tag under `key` (constant time).
    pub fn verify(&self, key: &[u8]) -> Result<(), WireError> {
        verify_tag(self.signed(), self.tag(), key)
    }

    /// Record `index` of the body, of the family the IPV6 flag says.
    /// Panics if `index >= count`.
    pub fn record(&self, index: usize) -> RecordPacket<&[u8]> {
        assert!(
            index < usize::from(self.count()),
            "record {index} of {}",
            self.count()
        );
        let (len, ipv6) = (self.record_len(), self.ipv6());
        RecordPacket::of_family(&self.body()[index * len..][..len], ipv6)
    }

    /// The body's records, in order, of the family the IPV6 flag says.
    pub fn records(&self) -> impl ExactSizeIterator<Item = RecordPacket<&[u8]>> {
        let ipv6 = self.ipv6();
        self.body()
            .chunks_exact(self.record_len())
            .map(move |record| RecordPacket::of_family(record, ipv6))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_magic(&mut self, magic: [u8; 4]) {
        self.buffer.as_mut()[field::MAGIC].copy_from_slice(&magic);
    }

    pub fn set_version(&mut self, version: u8) {
        self.buffer.as_mut()[field::VERSION] = version;
    }

    pub fn set_kind(&mut self, kind: u8) {
        self.buffer.as_mut()[field::KIND] = kind;
    }

    pub fn set_role(&mut self, role: u8) {
        self.buffer.as_mut()[field::ROLE] = role;
    }

    pub fn set_priority(&mut self, priority: u8) {
        self.buffer.as_mut()[field::PRIORITY] = priority;
    }

    pub fn set_node(&mut self, node: Ipv4Addr) {
        self.buffer.as_mut()[field::NODE].copy_from_slice(&node.octets());
    }

    pub fn set_boot(&mut self, boot: u64) {
        self.buffer.as_mut()[field::BOOT].copy_from_slice(&boot.to_be_bytes());
    }

    pub fn set_seq(&mut self, seq: u64) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the record count, which moves where body and tag end.
    pub fn set_count(&mut self, count: u16) {
        self.buffer.as_mut()[field::COUNT].copy_from_slice(&count.to_be_bytes());
    }

    pub fn set_flags(&mut self, flags: u16) {
        self.buffer.as_mut()[field::FLAGS].copy_from_slice(&flags.to_be_bytes());
    }

    /// Record `index` of the body, writable, of the family the IPV6 flag
    /// says. Panics if `index >= count`.
    pub fn record_mut(&mut self, index: usize) -> RecordPacket<&mut [u8]> {
        let count = usize::from(self.count());
        assert!(index < count, "record {index} of {count}");
        let (len, ipv6) = (self.record_len(), self.ipv6());
        let start = HEADER_LEN + index * len;
        RecordPacket::of_family(&mut self.buffer.as_mut()[start..start + len], ipv6)
    }

    /// Writes the tag of header and body under `key`: the last step of
    /// building a message.
    pub fn fill_tag(&mut self, key: &[u8]) {
        let tag = compute_tag(self.signed(), key);
        let start = self.body_end();
        self.buffer.as_mut()[start..start + TAG_LEN].copy_from_slice(&tag);
    }
}

/// A view of one sync record: a 28-byte IPv4 record or a 64-byte IPv6
/// record, as it was made with ([`RecordPacket::new_unchecked`],
/// [`RecordPacket::new6_unchecked`]) or as its packet's IPV6 flag says
/// ([`Packet::record`]).
///
/// The addresses are read as [`SocketAddr`]s of the view's family; the
/// address setters panic on an address of the other family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordPacket<T: AsRef<[u8]>> {
    buffer: T,
    ipv6: bool,
}

impl<T: AsRef<[u8]>> RecordPacket<T> {
    /// Views `buffer` as an IPv4 record, without checking its length.
    pub const fn new_unchecked(buffer: T) -> RecordPacket<T> {
        RecordPacket::of_family(buffer, false)
    }

    /// Views `buffer` as an IPv6 record, without checking its length.
    pub const fn new6_unchecked(buffer: T) -> RecordPacket<T> {
        RecordPacket::of_family(buffer, true)
    }

    const fn of_family(buffer: T, ipv6: bool) -> RecordPacket<T> {
        RecordPacket { buffer, ipv6 }
    }

    /// An IPv4 record after [`RecordPacket::check_len`].
    pub fn new_checked(buffer: T) -> Result<RecordPacket<T>, WireError> {
        RecordPacket::new_unchecked(buffer).checked()
    }

    /// An IPv6 record after [`RecordPacket::check_len`].
    pub fn new6_checked(buffer: T) -> Result<RecordPacket<T>, WireError> {
        RecordPacket::new6_unchecked(buffer).checked()
    }

    fn checked(self) -> Result<RecordPacket<T>, WireError> {
        self.check_len()?;
        Ok(self)
    }

    /// At least [`RECORD_LEN`] bytes, [`RECORD6_LEN`] for an IPv6 record
    /// (extra bytes are not looked at).
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < record_len(self.ipv6) {
            return Err(WireError::RecordTruncated {
                len,
                ipv6: self.ipv6,
            });
        }
        Ok(())
    }

    /// Whether this is an IPv6 record.
    pub const fn ipv6(&self) -> bool {
        self.ipv6
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    const fn fields(&self) -> &'static field::Record {
        if self.ipv6 {
            &field::RECORD6
        } else {
            &field::RECORD
        }
    }

    /// The raw op byte; [`Op::try_from`] interprets it.
    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    /// The wire method number (see [`METHOD_ROUTE`]).
    pub fn method(&self) -> u8 {
        self.buffer.as_ref()[field::METHOD]
    }

    pub fn state(&self) -> u8 {
        self.buffer.as_ref()[field::STATE]
    }

    pub fn client(&self) -> SocketAddr {
        socket_addr(&self.buffer.as_ref()[self.fields().client.clone()])
    }

    pub fn virtual_addr(&self) -> SocketAddr {
        socket_addr(&self.buffer.as_ref()[self.fields().virtual_addr.clone()])
    }

    pub fn real(&self) -> SocketAddr {
        socket_addr(&self.buffer.as_ref()[self.fields().real.clone()])
    }

    pub fn reserved(&self) -> u16 {
        be_u16(&self.buffer.as_ref()[self.fields().reserved.clone()])
    }

    pub fn idle_ms(&self) -> u32 {
        be_u32(&self.buffer.as_ref()[self.fields().idle_ms.clone()])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RecordPacket<T> {
    pub fn set_op(&mut self, op: u8) {
        self.buffer.as_mut()[field::OP] = op;
    }

    pub fn set_protocol(&mut self, protocol: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = protocol;
    }

    pub fn set_method(&mut self, method: u8) {
        self.buffer.as_mut()[field::METHOD] = method;
    }

    pub fn set_state(&mut self, state: u8) {
        self.buffer.as_mut()[field::STATE] = state;
    }

    /// Panics if `addr` is not of the record's family.
    pub fn set_client(&mut self, addr: SocketAddr) {
        self.set_socket_addr(self.fields().client.clone(), addr);
    }

    /// Panics if `addr` is not of the record's family.
    pub fn set_virtual_addr(&mut self, addr: SocketAddr) {
        self.set_socket_addr(self.fields().virtual_addr.clone(), addr);
    }

    /// Panics if `addr` is not of the record's family.
    pub fn set_real(&mut self, addr: SocketAddr) {
        self.set_socket_addr(self.fields().real.clone(), addr);
    }

    pub fn set_reserved(&mut self, reserved: u16) {
        let at = self.fields().reserved.clone();
        self.buffer.as_mut()[at].copy_from_slice(&reserved.to_be_bytes());
    }

    pub fn set_idle_ms(&mut self, idle_ms: u32) {
        let at = self.fields().idle_ms.clone();
        self.buffer.as_mut()[at].copy_from_slice(&idle_ms.to_be_bytes());
    }

    fn set_socket_addr(&mut self, at: std::ops::Range<usize>, addr: SocketAddr) {
        assert_eq!(
            addr.is_ipv6(),
            self.ipv6,
            "ha::wire: {addr} in an {} record",
            family(&self.ipv6)
        );
        put_socket_addr(&mut self.buffer.as_mut()[at], addr);
    }
}

fn flags(full: bool, last: bool, ipv6: bool) -> u16 {
    (if full { FLAG_FULL } else { 0 })
        | (if last { FLAG_LAST } else { 0 })
        | (if ipv6 { FLAG_IPV6 } else { 0 })
}

/// A message's header, validated. The record count is not here: it is the
/// length of [`Message::records`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub role: Role,
    pub priority: u8,
    pub node: Ipv4Addr,
    pub boot: u64,
    pub seq: u64,
    pub full: bool,
    pub last: bool,
    /// The IPV6 flag: the records are IPv6 records. [`Message::emit`] and
    /// [`Message::try_emit`] set it from the records' family, and keep this
    /// value only for a batch without records.
    pub ipv6: bool,
}

impl Header {
    /// Reads and validates the header fields, `count` against `kind`
    /// included, but not the length of the body (see [`Packet::check_len`]).
    /// Reads only the first [`HEADER_LEN`] bytes; does not check the tag.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Header, WireError> {
        let len = packet.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated { len });
        }
        if packet.magic() != MAGIC {
            return Err(WireError::BadMagic(packet.magic()));
        }
        if packet.version() != VERSION {
            return Err(WireError::UnsupportedVersion(packet.version()));
        }
        let kind = Kind::try_from(packet.kind())?;
        let role = Role::try_from(packet.role())?;
        let flags = packet.flags();
        if flags & !KNOWN_FLAGS != 0 {
            return Err(WireError::UnknownFlags(flags & !KNOWN_FLAGS));
        }
        let header = Header {
            kind,
            role,
            priority: packet.priority(),
            node: packet.node(),
            boot: packet.boot(),
            seq: packet.seq(),
            full: flags & FLAG_FULL != 0,
            last: flags & FLAG_LAST != 0,
            ipv6: flags & FLAG_IPV6 != 0,
        };
        header.check()?;
        header.check_count(usize::from(packet.count()))?;
        Ok(header)
    }

    /// The rules a header obeys beyond its types: priority 1..=255, FULL,
    /// LAST and IPV6 only on sync, LAST only with FULL.
    pub fn check(&self) -> Result<(), WireError> {
        if self.priority == 0 {
            return Err(WireError::ZeroPriority);
        }
        let flags = self.flags();
        if self.kind != Kind::Sync && flags != 0 {
            return Err(WireError::FlagsOnNonSync {
                kind: self.kind,
                flags,
            });
        }
        if self.last && !self.full {
            return Err(WireError::LastWithoutFull);
        }
        Ok(())
    }

    /// Whether this header's kind and family may carry `count` records.
    fn check_count(&self, count: usize) -> Result<(), WireError> {
        if self.kind != Kind::Sync && count != 0 {
            return Err(WireError::RecordsOnNonSync {
                kind: self.kind,
                count,
            });
        }
        if count > max_records(self.ipv6) {
            return Err(WireError::TooManyRecords {
                count,
                ipv6: self.ipv6,
            });
        }
        Ok(())
    }

    /// The flags field.
    pub fn flags(&self) -> u16 {
        flags(self.full, self.last, self.ipv6)
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes every header field except `count`, which belongs to the
    /// message (see [`Message::emit`]). Does not validate.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let Header {
            kind,
            role,
            priority,
            node,
            boot,
            seq,
            full,
            last,
            ipv6,
        } = *self;
        packet.set_magic(MAGIC);
        packet.set_version(VERSION);
        packet.set_kind(kind.into());
        packet.set_role(role.into());
        packet.set_priority(priority);
        packet.set_node(node);
        packet.set_boot(boot);
        packet.set_seq(seq);
        packet.set_flags(flags(full, last, ipv6));
    }
}

/// One connection in a sync batch, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub op: Op,
    /// 6 TCP or 17 UDP.
    pub protocol: u8,
    /// The wire numbering: [`METHOD_ROUTE`], [`METHOD_TUNNEL`], [`METHOD_NAT`].
    pub method: u8,
    /// The IPVS state number; carried as is, the receiver validates it.
    pub state: u8,
    /// The three addresses are of one family, which is the record's: it
    /// goes in a batch of IPv4 records or one of IPv6 records.
    pub client: SocketAddr,
    pub virtual_addr: SocketAddr,
    pub real: SocketAddr,
    pub idle_ms: u32,
}

impl Record {
    pub fn parse<T: AsRef<[u8]>>(record: &RecordPacket<T>) -> Result<Record, WireError> {
        record.check_len()?;
        let parsed = Record {
            op: Op::try_from(record.op())?,
            protocol: record.protocol(),
            method: record.method(),
            state: record.state(),
            client: record.client(),
            virtual_addr: record.virtual_addr(),
            real: record.real(),
            idle_ms: record.idle_ms(),
        };
        parsed.check()?;
        if record.reserved() != 0 {
            return Err(WireError::NonzeroReserved(record.reserved()));
        }
        Ok(parsed)
    }

    /// The rules a record obeys beyond its types: a known protocol and
    /// method, and addresses of one family. `state` is not checked here
    /// (its meaning depends on the protocol; the receiver validates it).
    pub fn check(&self) -> Result<(), WireError> {
        if !matches!(self.protocol, PROTOCOL_TCP | PROTOCOL_UDP) {
            return Err(WireError::UnknownProtocol(self.protocol));
        }
        if method_from_wire(self.method).is_none() {
            return Err(WireError::UnknownMethod(self.method));
        }
        self.check_family(self.ipv6())
    }

    /// Whether the record's addresses are all of the batch's family, IPv6
    /// or IPv4: the rule without which it has no wire form in the batch.
    fn check_family(&self, ipv6: bool) -> Result<(), WireError> {
        let families = [self.client, self.virtual_addr, self.real].map(|a| a.is_ipv6());
        if families.contains(&!families[0]) {
            return Err(WireError::MixedFamilies);
        }
        if families[0] != ipv6 {
            return Err(WireError::FamilyMismatch { ipv6: !ipv6 });
        }
        Ok(())
    }

    /// Whether this is an IPv6 record: the family of its client address
    /// (all three are of one family, see [`Record::check`]).
    pub fn ipv6(&self) -> bool {
        self.client.is_ipv6()
    }

    pub fn buffer_len(&self) -> usize {
        record_len(self.ipv6())
    }

    /// Writes every field, reserved bytes zeroed. Does not validate, but
    /// panics if an address is not of the view's family.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, record: &mut RecordPacket<T>) {
        let Record {
            op,
            protocol,
            method,
            state,
            client,
            virtual_addr,
            real,
            idle_ms,
        } = *self;
        record.set_op(op.into());
        record.set_protocol(protocol);
        record.set_method(method);
        record.set_state(state);
        record.set_client(client);
        record.set_virtual_addr(virtual_addr);
        record.set_real(real);
        record.set_reserved(0);
        record.set_idle_ms(idle_ms);
    }
}

/// A whole message: a header and, for sync, its records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub header: Header,
    pub records: Vec<Record>,
}

impl Message {
    /// Whether the message carries IPv6 records: its records' family (that
    /// of the first), or for a batch without records the header's `ipv6`.
    /// This is the IPV6 flag [`Message::emit`] writes.
    pub fn ipv6(&self) -> bool {
        self.records.first().map_or(self.header.ipv6, Record::ipv6)
    }

    /// The header as written: IPV6 as [`Message::ipv6`] says.
    fn wire_header(&self) -> Header {
        Header {
            ipv6: self.ipv6(),
            ..self.header
        }
    }

    /// The datagram's length, tag included.
    pub fn buffer_len(&self) -> usize {
        MIN_LEN + record_len(self.ipv6()) * self.records.len()
    }

    /// Whether this message can be emitted: the header's rules
    /// ([`Header::check`], with IPV6 as the records say), records only on
    /// sync and at most [`max_records`] of them for their family, each
    /// record's rules ([`Record::check`]), and all records of one family.
    pub fn check(&self) -> Result<(), WireError> {
        let header = self.wire_header();
        header.check()?;
        header.check_count(self.records.len())?;
        for (index, record) in self.records.iter().enumerate() {
            record
                .check()
                .and_then(|()| record.check_family(header.ipv6))
                .map_err(|e| e.in_record(index))?;
        }
        Ok(())
    }

    /// The rules without which the message has no wire form: at most
    /// [`max_records`] records, every address of the batch's family.
    fn check_writable(&self) -> Result<(), WireError> {
        let (count, ipv6) = (self.records.len(), self.ipv6());
        if count > max_records(ipv6) {
            return Err(WireError::TooManyRecords { count, ipv6 });
        }
        for (index, record) in self.records.iter().enumerate() {
            record.check_family(ipv6).map_err(|e| e.in_record(index))?;
        }
        Ok(())
    }

    /// The datagram, tag included, or why this message cannot be sent
    /// ([`Message::check`]).
    pub fn try_emit(&self, key: &[u8]) -> Result<Vec<u8>, WireError> {
        self.check()?;
        Ok(self.write(key))
    }

    /// The datagram, tag included, with the IPV6 flag of the records'
    /// family ([`Message::ipv6`]).
    ///
    /// # Panics
    ///
    /// If there are more records than [`max_records`] for their family, or
    /// records of both families, or a record whose addresses are of both
    /// (caller bugs: no datagram can carry them). Other broken rules of
    /// [`Message::check`] (priority 0, records or flags on a heartbeat or
    /// resync request, LAST without FULL, a record's unknown protocol or
    /// method) are written as given, and the receiver rejects the datagram,
    /// rather than take the director down; debug builds assert them so tests
    /// catch them. Use [`Message::try_emit`] to get them all as errors.
    pub fn emit(&self, key: &[u8]) -> Vec<u8> {
        if let Err(e) = self.check_writable() {
            panic!("ha::wire: {e}: no datagram can carry {self:?}");
        }
        debug_assert!(
            self.check().is_ok(),
            "ha::wire: the peer would reject this message ({}): {self:?}",
            self.check().unwrap_err()
        );
        self.write(key)
    }

    /// Writes the datagram without checking the rules (but with at most
    /// `u16::MAX` records, all of one family).
    fn write(&self, key: &[u8]) -> Vec<u8> {
        let records = &self.records;
        let count = u16::try_from(records.len()).expect("a u16 count of records");
        let mut buffer = vec![0; self.buffer_len()];
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        self.wire_header().emit(&mut packet);
        packet.set_count(count);
        for (index, record) in records.iter().enumerate() {
            record.emit(&mut packet.record_mut(index));
        }
        packet.fill_tag(key);
        buffer
    }

    /// Check the tag first (constant time), then the fields.
    ///
    /// A datagram shorter than [`MIN_LEN`] is `truncated`; otherwise its
    /// last [`TAG_LEN`] bytes must be the tag of the rest under `key`, then
    /// the header must be valid and the length exactly that of `count`
    /// records of the family the IPV6 flag says, each of them valid. The
    /// records are read as that family, so they agree with the flag and
    /// with one another.
    pub fn parse(datagram: &[u8], key: &[u8]) -> Result<Message, WireError> {
        if datagram.len() < MIN_LEN {
            return Err(WireError::Truncated {
                len: datagram.len(),
            });
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_LEN);
        verify_tag(signed, tag, key)?;
        let packet = Packet::new_unchecked(datagram);
        let header = Header::parse(&packet)?;
        packet.check_len()?;
        let records = packet
            .records()
            .enumerate()
            .map(|(index, record)| Record::parse(&record).map_err(|e| e.in_record(index)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Message { header, records })
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const KEY: &[u8] = b"correct horse battery staple";

    const BOOT: u64 = 1_717_171_717_171; // 0x0000_018f_cf69_0433

    // The vectors were written by an independent encoder (Python's `struct`
    // and `hmac` modules), checked field by field against the layout in the
    // module doc, and then against this module's emit: the tags are real
    // HMAC-SHA256 values, not this code's opinion of them.

    /// Heartbeat from the active node 192.168.7.10, priority 150, seq 42.
    #[rustfmt::skip]
    const HEARTBEAT: [u8; 64] = [
        0x4c, 0x56, 0x53, 0x31,                         // magic "LVS1"
        0x01,                                           // version 1
        0x01,                                           // kind 1 heartbeat
        0x01,                                           // role 1 active
        0x96,                                           // priority 150
        0xc0, 0xa8, 0x07, 0x0a,                         // node 192.168.7.10
        0x00, 0x00, 0x01, 0x8f, 0xcf, 0x69, 0x04, 0x33, // boot 1717171717171
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, // seq 42
        0x00, 0x00,                                     // count 0
        0x00, 0x00,                                     // flags none
        // tag
        0xe4, 0x31, 0xea, 0x81, 0xd1, 0x54, 0xd6, 0x3c, 0xd2, 0x57, 0xea, 0x2b, 0xb1, 0xa2, 0x8a, 0x19,
        0xca, 0xc1, 0x61, 0x95, 0x99, 0xc7, 0x2c, 0x30, 0x10, 0x57, 0xd7, 0x2e, 0x40, 0x3c, 0x88, 0xdd,
    ];

    /// The only batch of a full resync: two records, FULL | LAST.
    #[rustfmt::skip]
    const SYNC: [u8; 120] = [
        0x4c, 0x56, 0x53, 0x31,                         // magic "LVS1"
        0x01,                                           // version 1
        0x02,                                           // kind 2 sync
        0x01,                                           // role 1 active
        0x96,                                           // priority 150
        0xc0, 0xa8, 0x07, 0x0a,                         // node 192.168.7.10
        0x00, 0x00, 0x01, 0x8f, 0xcf, 0x69, 0x04, 0x33, // boot 1717171717171
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2b, // seq 43
        0x00, 0x02,                                     // count 2
        0x00, 0x03,                                     // flags FULL | LAST
        // record 0
        0x01,                                           // op 1 upsert
        0x06,                                           // protocol 6 TCP
        0x00,                                           // method 0 route
        0x01,                                           // state 1 (ESTABLISHED)
        0xcb, 0x00, 0x71, 0x05, 0xc8, 0x22,             // client 203.0.113.5:51234
        0xc6, 0x33, 0x64, 0x01, 0x00, 0x50,             // virtual 198.51.100.1:80
        0x0a, 0x00, 0x00, 0x0b, 0x00, 0x50,             // real 10.0.0.11:80
        0x00, 0x00,                                     // reserved
        0x00, 0x00, 0x05, 0xdc,                         // idle_ms 1500
        // record 1
        0x02,                                           // op 2 remove
        0x11,                                           // protocol 17 UDP
        0x02,                                           // method 2 nat
        0x0b,                                           // state 11 (UDP)
        0xcb, 0x00, 0x71, 0x4d, 0x14, 0xe9,             // client 203.0.113.77:5353
        0xc6, 0x33, 0x64, 0x01, 0x00, 0x35,             // virtual 198.51.100.1:53
        0x0a, 0x00, 0x00, 0x0c, 0x14, 0xb4,             // real 10.0.0.12:5300
        0x00, 0x00,                                     // reserved
        0x00, 0x04, 0x93, 0xe0,                         // idle_ms 300000
        // tag
        0xb4, 0x3b, 0xe0, 0x31, 0x9f, 0x0c, 0x9b, 0x5b, 0x93, 0xcb, 0xbb, 0x7d, 0x1e, 0x33, 0x8f, 0x29,
        0x4a, 0x95, 0x95, 0x78, 0xaa, 0x1d, 0x31, 0x74, 0x4a, 0x53, 0x0b, 0x2c, 0x07, 0xba, 0x45, 0x4f,
    ];

    /// A restarted backup (192.168.7.11, priority 100) asks for a resync.
    #[rustfmt::skip]
    const RESYNC_REQUEST: [u8; 64] = [
        0x4c, 0x56, 0x53, 0x31,                         // magic "LVS1"
        0x01,                                           // version 1
        0x03,                                           // kind 3 resync request
        0x00,                                           // role 0 backup
        0x64,                                           // priority 100
        0xc0, 0xa8, 0x07, 0x0b,                         // node 192.168.7.11
        0x00, 0x00, 0x01, 0x8f, 0xcf, 0x69, 0x17, 0xbb, // boot 1717171722171
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // seq 1
        0x00, 0x00,                                     // count 0
        0x00, 0x00,                                     // flags none
        // tag
        0xaf, 0xce, 0xee, 0xd8, 0x8a, 0xbb, 0x40, 0x11, 0x41, 0x6f, 0xff, 0x74, 0x7a, 0xf2, 0xd0, 0x8f,
        0xa4, 0xb2, 0x05, 0x51, 0x69, 0x54, 0x8b, 0x9a, 0xa1, 0x53, 0x7d, 0x6e, 0xad, 0x5b, 0xa4, 0x0b,
    ];

    /// An incremental IPv6 batch: a connection and a persistence template.
    #[rustfmt::skip]
    const SYNC6: [u8; 192] = [
        0x4c, 0x56, 0x53, 0x31,                         // magic "LVS1"
        0x01,                                           // version 1
        0x02,                                           // kind 2 sync
        0x01,                                           // role 1 active
        0x96,                                           // priority 150
        0xc0, 0xa8, 0x07, 0x0a,                         // node 192.168.7.10
        0x00, 0x00, 0x01, 0x8f, 0xcf, 0x69, 0x04, 0x33, // boot 1717171717171
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2c, // seq 44
        0x00, 0x02,                                     // count 2
        0x00, 0x04,                                     // flags IPV6
        // record 0
        0x01,                                           // op 1 upsert
        0x06,                                           // protocol 6 TCP
        0x01,                                           // method 1 tunnel
        0x01,                                           // state 1 (ESTABLISHED)
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, // client 2001:db8:1::5
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
        0xc8, 0x22,                                     //   port 51234
        0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x00, // virtual 2001:db8:100::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x01, 0xbb,                                     //   port 443
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0a, 0x00, 0x00, // real 2001:db8:a::b
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0b,
        0x01, 0xbb,                                     //   port 443
        0x00, 0x00,                                     // reserved
        0x00, 0x00, 0x05, 0xdc,                         // idle_ms 1500
        // record 1
        0x03,                                           // op 3 template upsert
        0x06,                                           // protocol 6 TCP
        0x00,                                           // method 0 route
        0x00,                                           // state 0
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, // client network 2001:db8:1::
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00,                                     //   port 0
        0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x00, // virtual 2001:db8:100::1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x01, 0xbb,                                     //   port 443
        0x20, 0x01, 0x0d, 0xb8, 0x00, 0x0a, 0x00, 0x00, // real 2001:db8:a::c
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x0c,
        0x01, 0xbb,                                     //   port 443
        0x00, 0x00,                                     // reserved
        0x00, 0x04, 0x8c, 0x10,                         // idle_ms 298000 (time left)
        // tag
        0xe2, 0xe2, 0x1f, 0xf1, 0xbe, 0xb9, 0x19, 0x1e, 0xd7, 0xe5, 0x4f, 0x2a, 0x48, 0x99, 0x87, 0x36,
        0x7a, 0x9e, 0x79, 0xab, 0xa1, 0xc9, 0x0d, 0x2c, 0x30, 0x24, 0x49, 0x87, 0xd2, 0x7b, 0x97, 0x7f,
    ];

    fn sock(addr: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::from(addr).into(), port)
    }

    fn sock6(addr: &str, port: u16) -> SocketAddr {
        SocketAddr::new(addr.parse::<Ipv6Addr>().unwrap().into(), port)
    }

    fn heartbeat() -> Message {
        Message {
            header: Header {
                kind: Kind::Heartbeat,
                role: Role::Active,
                priority: 150,
                node: Ipv4Addr::new(192, 168, 7, 10),
                boot: BOOT,
                seq: 42,
                full: false,
                last: false,
                ipv6: false,
            },
            records: vec![],
        }
    }

    fn upsert() -> Record {
        Record {
            op: Op::Upsert,
            protocol: PROTOCOL_TCP,
            method: METHOD_ROUTE,
            state: 1,
            client: sock([203, 0, 113, 5], 51234),
            virtual_addr: sock([198, 51, 100, 1], 80),
            real: sock([10, 0, 0, 11], 80),
            idle_ms: 1500,
        }
    }

    fn sync() -> Message {
        Message {
            header: Header {
                kind: Kind::Sync,
                seq: 43,
                full: true,
                last: true,
                ..heartbeat().header
            },
            records: vec![
                upsert(),
                Record {
                    op: Op::Remove,
                    protocol: PROTOCOL_UDP,
                    method: METHOD_NAT,
                    state: 11,
                    client: sock([203, 0, 113, 77], 5353),
                    virtual_addr: sock([198, 51, 100, 1], 53),
                    real: sock([10, 0, 0, 12], 5300),
                    idle_ms: 300_000,
                },
            ],
        }
    }

    fn resync_request() -> Message {
        Message {
            header: Header {
                kind: Kind::ResyncRequest,
                role: Role::Backup,
                priority: 100,
                node: Ipv4Addr::new(192, 168, 7, 11),
                boot: BOOT + 5000,
                seq: 1,
                full: false,
                last: false,
                ipv6: false,
            },
            records: vec![],
        }
    }

    fn upsert6() -> Record {
        Record {
            op: Op::Upsert,
            protocol: PROTOCOL_TCP,
            method: METHOD_TUNNEL,
            state: 1,
            client: sock6("2001:db8:1::5", 51234),
            virtual_addr: sock6("2001:db8:100::1", 443),
            real: sock6("2001:db8:a::b", 443),
            idle_ms: 1500,
        }
    }

    fn sync6() -> Message {
        Message {
            header: Header {
                kind: Kind::Sync,
                seq: 44,
                ipv6: true,
                ..heartbeat().header
            },
            records: vec![
                upsert6(),
                Record {
                    op: Op::TemplateUpsert,
                    protocol: PROTOCOL_TCP,
                    method: METHOD_ROUTE,
                    state: 0,
                    client: sock6("2001:db8:1::", 0),
                    virtual_addr: sock6("2001:db8:100::1", 443),
                    real: sock6("2001:db8:a::c", 443),
                    idle_ms: 298_000,
                },
            ],
        }
    }

    fn vectors() -> [(&'static str, &'static [u8], Message); 4] {
        [
            ("heartbeat", &HEARTBEAT, heartbeat()),
            ("sync", &SYNC, sync()),
            ("resync request", &RESYNC_REQUEST, resync_request()),
            ("IPv6 sync", &SYNC6, sync6()),
        ]
    }

    /// Recomputes the tag after a test edits a field, so that the field's
    /// own check is what fails.
    fn resign(datagram: &mut [u8]) {
        let split = datagram.len() - TAG_LEN;
        let tag = compute_tag(&datagram[..split], KEY);
        datagram[split..].copy_from_slice(&tag);
    }

    /// `datagram` with byte `at` set to `value`, re-signed.
    fn edited(datagram: &[u8], at: usize, value: u8) -> Vec<u8> {
        let mut bytes = datagram.to_vec();
        bytes[at] = value;
        resign(&mut bytes);
        bytes
    }

    #[test]
    fn vectors_parse_to_their_messages() {
        for (name, bytes, message) in vectors() {
            assert_eq!(Message::parse(bytes, KEY), Ok(message), "{name}");
        }
    }

    #[test]
    fn messages_emit_their_vectors() {
        for (name, bytes, message) in vectors() {
            assert_eq!(message.buffer_len(), bytes.len(), "{name}");
            assert_eq!(message.emit(KEY), bytes, "{name}");
            assert_eq!(message.try_emit(KEY).as_deref(), Ok(bytes), "{name}");
        }
    }

    #[test]
    fn packet_view_reads_the_sync_vector() {
        let packet = Packet::new_checked(&SYNC[..]).unwrap();
        assert_eq!(packet.magic(), *b"LVS1");
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.kind(), 2);
        assert_eq!(packet.role(), 1);
        assert_eq!(packet.priority(), 150);
        assert_eq!(packet.node(), Ipv4Addr::new(192, 168, 7, 10));
        assert_eq!(packet.boot(), BOOT);
        assert_eq!(packet.seq(), 43);
        assert_eq!(packet.count(), 2);
        assert_eq!(packet.flags(), FLAG_FULL | FLAG_LAST);
        assert_eq!(packet.signed(), &SYNC[..88]);
        assert_eq!(packet.body(), &SYNC[32..88]);
        assert_eq!(packet.tag(), &SYNC[88..]);
        assert_eq!(packet.verify(KEY), Ok(()));
        assert_eq!(
            packet.verify(b"another key"),
            Err(WireError::AuthenticationFailed)
        );
        assert_eq!(packet.records().len(), 2);

        let record = packet.record(1);
        assert_eq!(record.op(), 2);
        assert_eq!(record.protocol(), 17);
        assert_eq!(record.method(), METHOD_NAT);
        assert_eq!(record.state(), 11);
        assert_eq!(record.client(), sock([203, 0, 113, 77], 5353));
        assert_eq!(record.virtual_addr(), sock([198, 51, 100, 1], 53));
        assert_eq!(record.real(), sock([10, 0, 0, 12], 5300));
        assert_eq!(record.reserved(), 0);
        assert_eq!(record.idle_ms(), 300_000);
        assert_eq!(record, packet.records().nth(1).unwrap());
        assert_eq!(record.into_inner(), &SYNC[60..88]);
    }

    #[test]
    fn packet_setters_build_the_sync_vector() {
        let mut buffer = [0u8; 120];
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        packet.set_magic(*b"LVS1");
        packet.set_version(1);
        packet.set_kind(2);
        packet.set_role(1);
        packet.set_priority(150);
        packet.set_node(Ipv4Addr::new(192, 168, 7, 10));
        packet.set_boot(BOOT);
        packet.set_seq(43);
        packet.set_count(2);
        packet.set_flags(FLAG_FULL | FLAG_LAST);
        for (index, record) in sync().records.iter().enumerate() {
            let mut view = packet.record_mut(index);
            view.set_op(record.op.into());
            view.set_protocol(record.protocol);
            view.set_method(record.method);
            view.set_state(record.state);
            view.set_client(record.client);
            view.set_virtual_addr(record.virtual_addr);
            view.set_real(record.real);
            view.set_reserved(0);
            view.set_idle_ms(record.idle_ms);
        }
        packet.fill_tag(KEY);
        assert_eq!(buffer, SYNC);
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        for (name, bytes, message) in vectors() {
            let (count, ipv6) = (message.records.len() as u16, message.ipv6());
            for len in 0..bytes.len() {
                let expected = if len < MIN_LEN {
                    WireError::Truncated { len }
                } else {
                    // The tag is the last 32 bytes of what arrived: a cut
                    // datagram's tag is not the tag of the rest.
                    WireError::AuthenticationFailed
                };
                assert_eq!(
                    Message::parse(&bytes[..len], KEY),
                    Err(expected),
                    "{name} cut to {len}"
                );
                let expected = if len < MIN_LEN {
                    WireError::Truncated { len }
                } else {
                    WireError::LengthMismatch { len, count, ipv6 }
                };
                assert_eq!(
                    Packet::new_checked(&bytes[..len]),
                    Err(expected),
                    "{name} cut to {len}"
                );
            }
        }
    }

    #[test]
    fn every_truncation_under_a_good_tag_fails_cleanly() {
        // Header and body cut short and signed again, so that the length
        // check is what fails, not the tag.
        for (name, bytes, message) in vectors() {
            let (count, ipv6) = (message.records.len() as u16, message.ipv6());
            let signed = &bytes[..bytes.len() - TAG_LEN];
            for cut in 0..signed.len() {
                let mut datagram = signed[..cut].to_vec();
                datagram.extend_from_slice(&compute_tag(&datagram, KEY));
                let len = datagram.len();
                let expected = if len < MIN_LEN {
                    WireError::Truncated { len }
                } else {
                    WireError::LengthMismatch { len, count, ipv6 }
                };
                assert_eq!(
                    Message::parse(&datagram, KEY),
                    Err(expected),
                    "{name} cut to {cut} and signed"
                );
            }
        }
    }

    #[test]
    fn every_flipped_bit_fails_authentication() {
        for (name, bytes, _) in vectors() {
            for bit in 0..bytes.len() * 8 {
                let mut flipped = bytes.to_vec();
                flipped[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    Message::parse(&flipped, KEY),
                    Err(WireError::AuthenticationFailed),
                    "{name} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn wrong_key_fails_authentication() {
        for (name, bytes, message) in vectors() {
            for key in [
                &b""[..],
                b"correct horse battery stapler",
                b"Correct horse battery staple",
            ] {
                assert_eq!(
                    Message::parse(bytes, key),
                    Err(WireError::AuthenticationFailed),
                    "{name}"
                );
            }
            // The same message under another key parses only under that key.
            let other = message.emit(b"another key");
            assert_eq!(Message::parse(&other, b"another key"), Ok(message));
            assert_eq!(
                Message::parse(&other, KEY),
                Err(WireError::AuthenticationFailed)
            );
        }
    }

    #[test]
    fn appended_bytes_fail_authentication() {
        let mut long = HEARTBEAT.to_vec();
        long.push(0);
        assert_eq!(
            Message::parse(&long, KEY),
            Err(WireError::AuthenticationFailed)
        );
    }

    #[test]
    fn tag_is_checked_before_the_fields() {
        // Garbage of the right size with a wrong tag is an authentication
        // failure, not a complaint about its magic.
        let garbage = [0xa5u8; 64];
        assert_eq!(
            Message::parse(&garbage, KEY),
            Err(WireError::AuthenticationFailed)
        );
        let mut signed_garbage = garbage;
        resign(&mut signed_garbage);
        assert_eq!(
            Message::parse(&signed_garbage, KEY),
            Err(WireError::BadMagic([0xa5; 4]))
        );
    }

    #[test]
    fn wrong_magic_version_kind_role_priority_fail() {
        let cases = [
            (0, b'X', WireError::BadMagic(*b"XVS1")),
            (3, b'2', WireError::BadMagic(*b"LVS2")),
            (4, 2, WireError::UnsupportedVersion(2)),
            (4, 0, WireError::UnsupportedVersion(0)),
            (5, 0, WireError::UnknownKind(0)),
            (5, 4, WireError::UnknownKind(4)),
            (5, 0xff, WireError::UnknownKind(0xff)),
            (6, 2, WireError::UnknownRole(2)),
            (6, 0xff, WireError::UnknownRole(0xff)),
            (7, 0, WireError::ZeroPriority),
        ];
        for (at, value, expected) in cases {
            let bytes = edited(&HEARTBEAT, at, value);
            assert_eq!(
                Message::parse(&bytes, KEY),
                Err(expected.clone()),
                "byte {at} = {value}"
            );
            let bytes = edited(&SYNC, at, value);
            assert_eq!(
                Message::parse(&bytes, KEY),
                Err(expected),
                "byte {at} = {value}"
            );
        }
    }

    #[test]
    fn boundary_priorities_and_roles_parse() {
        for (role, priority) in [(Role::Backup, 1), (Role::Active, 255)] {
            let mut message = heartbeat();
            message.header.role = role;
            message.header.priority = priority;
            let bytes = message.emit(KEY);
            assert_eq!(bytes[6], u8::from(role));
            assert_eq!(bytes[7], priority);
            assert_eq!(Message::parse(&bytes, KEY), Ok(message));
        }
    }

    #[test]
    fn flags_are_checked() {
        // Unknown bits, on any kind.
        for flags in [0x0008u16, 0x8000, 0xffff] {
            let mut bytes = SYNC.to_vec();
            bytes[30..32].copy_from_slice(&flags.to_be_bytes());
            resign(&mut bytes);
            assert_eq!(
                Message::parse(&bytes, KEY),
                Err(WireError::UnknownFlags(flags & !7)),
                "flags {flags:#x}"
            );
        }
        // FULL or LAST on a heartbeat or resync request.
        for (base, kind) in [
            (&HEARTBEAT, Kind::Heartbeat),
            (&RESYNC_REQUEST, Kind::ResyncRequest),
        ] {
            for flags in [1u8, 2, 3] {
                assert_eq!(
                    Message::parse(&edited(base, 31, flags), KEY),
                    Err(WireError::FlagsOnNonSync {
                        kind,
                        flags: flags.into()
                    })
                );
            }
        }
        // LAST without FULL.
        assert_eq!(
            Message::parse(&edited(&SYNC, 31, 2), KEY),
            Err(WireError::LastWithoutFull)
        );
        // Every legal combination on a sync.
        for (flags, full, last) in [(0u8, false, false), (1, true, false), (3, true, true)] {
            let parsed = Message::parse(&edited(&SYNC, 31, flags), KEY).unwrap();
            assert_eq!((parsed.header.full, parsed.header.last), (full, last));
            assert_eq!(parsed.header.flags(), u16::from(flags));
        }
    }

    #[test]
    fn records_on_a_heartbeat_or_resync_request_fail() {
        // Count 2 and a 56-byte body: the length is right, the kind is not.
        for (kind_byte, kind) in [(1u8, Kind::Heartbeat), (3, Kind::ResyncRequest)] {
            let mut bytes = edited(&SYNC, 5, kind_byte);
            bytes[31] = 0; // no flags, so that the count is what fails
            resign(&mut bytes);
            assert_eq!(
                Message::parse(&bytes, KEY),
                Err(WireError::RecordsOnNonSync { kind, count: 2 })
            );
        }
        // Count 1 with no body at all.
        assert_eq!(
            Message::parse(&edited(&HEARTBEAT, 29, 1), KEY),
            Err(WireError::RecordsOnNonSync {
                kind: Kind::Heartbeat,
                count: 1
            })
        );
    }

    #[test]
    fn count_must_match_the_length() {
        for count in [0u16, 1, 3, 50, 0xffff] {
            let mut bytes = SYNC.to_vec();
            bytes[28..30].copy_from_slice(&count.to_be_bytes());
            resign(&mut bytes);
            let expected = if count as usize > MAX_RECORDS {
                WireError::TooManyRecords {
                    count: count.into(),
                    ipv6: false,
                }
            } else {
                WireError::LengthMismatch {
                    len: 120,
                    count,
                    ipv6: false,
                }
            };
            assert_eq!(Message::parse(&bytes, KEY), Err(expected), "count {count}");
            if count <= 50 {
                assert_eq!(
                    Packet::new_checked(&bytes[..]),
                    Err(WireError::LengthMismatch {
                        len: 120,
                        count,
                        ipv6: false
                    })
                );
            }
        }
        // A byte too many or too few for the count, properly signed.
        let mut long = SYNC[..88].to_vec();
        long.push(0);
        long.extend_from_slice(&[0; TAG_LEN]);
        resign(&mut long);
        assert_eq!(
            Message::parse(&long, KEY),
            Err(WireError::LengthMismatch {
                len: 121,
                count: 2,
                ipv6: false
            })
        );
        let mut short = SYNC[..87].to_vec();
        short.extend_from_slice(&[0; TAG_LEN]);
        resign(&mut short);
        assert_eq!(
            Message::parse(&short, KEY),
            Err(WireError::LengthMismatch {
                len: 119,
                count: 2,
                ipv6: false
            })
        );
    }

    #[test]
    fn more_than_max_records_fail_even_with_the_right_length() {
        let mut message = sync();
        message.records = vec![upsert(); MAX_RECORDS + 1];
        let too_many = WireError::TooManyRecords {
            count: 51,
            ipv6: false,
        };
        assert_eq!(message.try_emit(KEY), Err(too_many.clone()));
        // Build it by hand: the receiver rejects it too.
        let mut bytes = vec![0; MIN_LEN + RECORD_LEN * 51];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        message.header.emit(&mut packet);
        packet.set_count(51);
        for index in 0..51 {
            upsert().emit(&mut packet.record_mut(index));
        }
        packet.fill_tag(KEY);
        assert_eq!(Message::parse(&bytes, KEY), Err(too_many));
    }

    #[test]
    fn max_records_fit_one_datagram() {
        assert_eq!(MAX_RECORDS, 50);
        let mut message = sync();
        message.header.last = false;
        message.records = (0..MAX_RECORDS as u16)
            .map(|i| Record {
                client: sock([203, 0, 113, i as u8], 1024 + i),
                idle_ms: u32::from(i) * 1000,
                ..upsert()
            })
            .collect();
        let bytes = message.emit(KEY);
        assert_eq!(bytes.len(), message.buffer_len());
        assert_eq!(bytes.len(), 1464);
        assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        assert_eq!(Message::parse(&bytes, KEY), Ok(message));
    }

    #[test]
    fn empty_sync_is_a_valid_full_resync_of_an_empty_table() {
        let mut message = sync();
        message.records.clear();
        let bytes = message.emit(KEY);
        assert_eq!(bytes.len(), MIN_LEN);
        assert_eq!(Message::parse(&bytes, KEY), Ok(message));
    }

    #[test]
    fn record_fields_are_checked() {
        // Record 1 starts at byte 60.
        let cases = [
            (60, 0, WireError::UnknownOp(0)),
            (60, 5, WireError::UnknownOp(5)),
            (61, 1, WireError::UnknownProtocol(1)),
            (61, 0, WireError::UnknownProtocol(0)),
            (62, 3, WireError::UnknownMethod(3)),
            (62, 0xff, WireError::UnknownMethod(0xff)),
            (82, 1, WireError::NonzeroReserved(0x0100)),
            (83, 1, WireError::NonzeroReserved(0x0001)),
        ];
        for (at, value, expected) in cases {
            assert_eq!(
                Message::parse(&edited(&SYNC, at, value), KEY),
                Err(expected.in_record(1)),
                "byte {at} = {value}"
            );
        }
    }

    #[test]
    fn any_state_byte_is_carried() {
        for state in [0u8, 12, 0xff] {
            let bytes = edited(&SYNC, 35, state);
            let parsed = Message::parse(&bytes, KEY).unwrap();
            assert_eq!(parsed.records[0].state, state);
            assert_eq!(parsed.emit(KEY), bytes);
        }
    }

    #[test]
    fn try_emit_refuses_what_parse_would_reject() {
        let cases: [(Message, WireError); 7] = [
            (
                Message {
                    header: Header {
                        priority: 0,
                        ..heartbeat().header
                    },
                    records: vec![],
                },
                WireError::ZeroPriority,
            ),
            (
                Message {
                    records: vec![upsert()],
                    ..heartbeat()
                },
                WireError::RecordsOnNonSync {
                    kind: Kind::Heartbeat,
                    count: 1,
                },
            ),
            (
                Message {
                    header: Header {
                        full: true,
                        ..resync_request().header
                    },
                    records: vec![],
                },
                WireError::FlagsOnNonSync {
                    kind: Kind::ResyncRequest,
                    flags: FLAG_FULL,
                },
            ),
            (
                Message {
                    header: Header {
                        full: false,
                        ..sync().header
                    },
                    ..sync()
                },
                WireError::LastWithoutFull,
            ),
            (
                Message {
                    records: vec![upsert(); 51],
                    ..sync()
                },
                WireError::TooManyRecords {
                    count: 51,
                    ipv6: false,
                },
            ),
            (
                Message {
                    records: vec![Record {
                        protocol: 1,
                        ..upsert()
                    }],
                    ..sync()
                },
                WireError::UnknownProtocol(1).in_record(0),
            ),
            (
                Message {
                    records: vec![
                        upsert(),
                        Record {
                            method: 3,
                            ..upsert()
                        },
                    ],
                    ..sync()
                },
                WireError::UnknownMethod(3).in_record(1),
            ),
        ];
        for (message, expected) in cases {
            assert_eq!(message.check(), Err(expected.clone()));
            assert_eq!(message.try_emit(KEY), Err(expected));
        }
    }

    #[test]
    #[should_panic(expected = "too many records: 51")]
    fn emit_panics_on_too_many_records() {
        let message = Message {
            records: vec![upsert(); MAX_RECORDS + 1],
            ..sync()
        };
        message.emit(KEY);
    }

    #[test]
    fn unchecked_writes_are_rejected_by_the_receiver() {
        // What `emit` sends in a release build when a caller breaks a rule:
        // the fields as given, which the peer refuses.
        let cases = [
            (
                Message {
                    records: vec![Record {
                        method: lvs_common::maps::Method::Route as u8,
                        ..upsert()
                    }],
                    ..sync()
                },
                WireError::UnknownMethod(3).in_record(0),
            ),
            (
                Message {
                    records: vec![upsert()],
                    ..resync_request()
                },
                WireError::RecordsOnNonSync {
                    kind: Kind::ResyncRequest,
                    count: 1,
                },
            ),
            (
                Message {
                    header: Header {
                        priority: 0,
                        ..heartbeat().header
                    },
                    records: vec![],
                },
                WireError::ZeroPriority,
            ),
        ];
        for (message, expected) in cases {
            let datagram = message.write(KEY);
            assert_eq!(datagram.len(), message.buffer_len());
            assert_eq!(Message::parse(&datagram, KEY), Err(expected));
        }
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "unknown method 3")]
    fn emit_asserts_the_rules_in_debug_builds() {
        let message = Message {
            records: vec![Record {
                method: 3,
                ..upsert()
            }],
            ..sync()
        };
        message.emit(KEY);
    }

    #[test]
    fn record_view_needs_28_bytes() {
        for len in 0..RECORD_LEN {
            let bytes = [0u8; RECORD_LEN];
            assert_eq!(
                RecordPacket::new_checked(&bytes[..len]),
                Err(WireError::RecordTruncated { len, ipv6: false })
            );
            assert_eq!(
                Record::parse(&RecordPacket::new_unchecked(&bytes[..len])),
                Err(WireError::RecordTruncated { len, ipv6: false })
            );
        }
        let record = RecordPacket::new_checked(&SYNC[32..60]).unwrap();
        assert_eq!(Record::parse(&record), Ok(upsert()));
        let mut buffer = [0xffu8; RECORD_LEN];
        upsert().emit(&mut RecordPacket::new_unchecked(&mut buffer[..]));
        assert_eq!(buffer, SYNC[32..60]);
    }

    #[test]
    fn header_parse_of_a_short_buffer_does_not_panic() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Header::parse(&Packet::new_unchecked(&HEARTBEAT[..len])),
                Err(WireError::Truncated { len })
            );
        }
        assert_eq!(
            Header::parse(&Packet::new_unchecked(&HEARTBEAT[..HEADER_LEN])),
            Ok(heartbeat().header)
        );
    }

    #[test]
    fn method_numbers_map_to_the_datapath() {
        use lvs_common::maps::Method;
        for (method, wire) in [
            (Method::Route, METHOD_ROUTE),
            (Method::Tunnel, METHOD_TUNNEL),
            (Method::Nat, METHOD_NAT),
        ] {
            assert_eq!(method_to_wire(method), Some(wire));
            assert_eq!(method_from_wire(wire), Some(method));
        }
        assert_eq!(method_from_wire(3), None);
        assert_eq!(method_to_wire(Method::Local), None);
    }

    #[test]
    fn enums_round_trip_their_bytes() {
        for kind in [Kind::Heartbeat, Kind::Sync, Kind::ResyncRequest] {
            assert_eq!(Kind::try_from(u8::from(kind)), Ok(kind));
        }
        for role in [Role::Backup, Role::Active] {
            assert_eq!(Role::try_from(u8::from(role)), Ok(role));
        }
        for op in [
            Op::Upsert,
            Op::Remove,
            Op::TemplateUpsert,
            Op::TemplateRemove,
        ] {
            assert_eq!(Op::try_from(u8::from(op)), Ok(op));
        }
    }

    #[test]
    fn role_serializes_lowercase() {
        assert_eq!(serde_json::to_string(&Role::Active).unwrap(), "\"active\"");
        assert_eq!(serde_json::to_string(&Role::Backup).unwrap(), "\"backup\"");
        assert_eq!(
            serde_json::from_str::<Role>("\"backup\"").unwrap(),
            Role::Backup
        );
        assert!(serde_json::from_str::<Role>("\"Active\"").is_err());
        assert_eq!(Role::Active.to_string(), "active");
    }

    #[test]
    fn errors_say_what_was_wrong() {
        let cases = [
            (
                WireError::Truncated { len: 20 },
                "truncated: 20 bytes, even a heartbeat needs 64",
            ),
            (
                WireError::LengthMismatch {
                    len: 120,
                    count: 3,
                    ipv6: false,
                },
                "length mismatch: 120 bytes, but count 3 makes 148 with IPv4 records",
            ),
            (WireError::AuthenticationFailed, "authentication failed"),
            (
                WireError::BadMagic(*b"LVS2"),
                "bad magic [4c, 56, 53, 32], expected \"LVS1\"",
            ),
            (WireError::UnsupportedVersion(2), "unsupported version 2"),
            (
                WireError::RecordsOnNonSync {
                    kind: Kind::ResyncRequest,
                    count: 2,
                },
                "a resync request carries no records, but count is 2",
            ),
            (
                WireError::NonzeroReserved(1).in_record(7),
                "record 7: reserved bytes are 0x0001, must be 0",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn ipv6_sync_round_trips_byte_for_byte() {
        let parsed = Message::parse(&SYNC6, KEY).unwrap();
        assert_eq!(parsed, sync6());
        assert!(parsed.header.ipv6);
        assert!(parsed.ipv6());
        assert_eq!(parsed.header.flags(), FLAG_IPV6);
        assert_eq!(parsed.buffer_len(), 192);
        assert_eq!(parsed.emit(KEY), SYNC6);
        assert_eq!(parsed.try_emit(KEY).as_deref(), Ok(&SYNC6[..]));
        // With FULL and LAST too.
        let mut full = sync6();
        full.header.full = true;
        full.header.last = true;
        let bytes = full.emit(KEY);
        assert_eq!(bytes[30..32], [0x00, 0x07]);
        assert_eq!(Message::parse(&bytes, KEY), Ok(full));
    }

    #[test]
    fn ipv6_record_bytes_parse_to_their_record() {
        #[rustfmt::skip]
        let bytes: [u8; 64] = [
            0x02,                                           // op 2 remove
            0x11,                                           // protocol 17 UDP
            0x02,                                           // method 2 nat
            0x0b,                                           // state 11
            0x20, 0x01, 0x0d, 0xb8, 0xaa, 0xaa, 0xbb, 0xbb, // client 2001:db8:aaaa:bbbb:
            0xcc, 0xcc, 0xdd, 0xdd, 0xee, 0xee, 0xff, 0x01, //   cccc:dddd:eeee:ff01
            0x14, 0xe9,                                     //   port 5353
            0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 0x00, 0x00, // virtual 2001:db8:100::35
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x35,
            0x00, 0x35,                                     //   port 53
            0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // real fd00::1:2
            0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02,
            0x14, 0xb4,                                     //   port 5300
            0x00, 0x00,                                     // reserved
            0x00, 0x04, 0x93, 0xe0,                         // idle_ms 300000
        ];
        let expected = Record {
            op: Op::Remove,
            protocol: PROTOCOL_UDP,
            method: METHOD_NAT,
            state: 11,
            client: sock6("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ff01", 5353),
            virtual_addr: sock6("2001:db8:100::35", 53),
            real: sock6("fd00::1:2", 5300),
            idle_ms: 300_000,
        };
        let view = RecordPacket::new6_checked(&bytes[..]).unwrap();
        assert!(view.ipv6());
        assert_eq!(view.op(), 2);
        assert_eq!(view.protocol(), PROTOCOL_UDP);
        assert_eq!(view.method(), METHOD_NAT);
        assert_eq!(view.state(), 11);
        assert_eq!(view.client(), expected.client);
        assert_eq!(view.virtual_addr(), expected.virtual_addr);
        assert_eq!(view.real(), expected.real);
        assert_eq!(view.reserved(), 0);
        assert_eq!(view.idle_ms(), 300_000);
        assert_eq!(Record::parse(&view), Ok(expected));
        assert!(expected.ipv6());
        assert_eq!(expected.buffer_len(), RECORD6_LEN);
        let mut buffer = [0xffu8; RECORD6_LEN];
        expected.emit(&mut RecordPacket::new6_unchecked(&mut buffer[..]));
        assert_eq!(buffer, bytes);
    }

    #[test]
    fn packet_views_read_and_build_the_ipv6_vector() {
        let packet = Packet::new_checked(&SYNC6[..]).unwrap();
        assert_eq!(packet.flags(), FLAG_IPV6);
        assert!(packet.ipv6());
        assert_eq!(packet.record_len(), RECORD6_LEN);
        assert_eq!(packet.count(), 2);
        assert_eq!(packet.signed(), &SYNC6[..160]);
        assert_eq!(packet.body(), &SYNC6[32..160]);
        assert_eq!(packet.tag(), &SYNC6[160..]);
        assert_eq!(packet.verify(KEY), Ok(()));
        assert_eq!(packet.records().len(), 2);
        let record = packet.record(1);
        assert!(record.ipv6());
        assert_eq!(record.op(), 3);
        assert_eq!(record.client(), sock6("2001:db8:1::", 0));
        assert_eq!(record.virtual_addr(), sock6("2001:db8:100::1", 443));
        assert_eq!(record.real(), sock6("2001:db8:a::c", 443));
        assert_eq!(record.idle_ms(), 298_000);
        assert_eq!(record, packet.records().nth(1).unwrap());
        assert_eq!(record.into_inner(), &SYNC6[96..160]);

        let mut buffer = [0u8; 192];
        let mut packet = Packet::new_unchecked(&mut buffer[..]);
        sync6().header.emit(&mut packet);
        packet.set_count(2);
        for (index, record) in sync6().records.iter().enumerate() {
            let mut view = packet.record_mut(index);
            assert!(view.ipv6());
            view.set_op(record.op.into());
            view.set_protocol(record.protocol);
            view.set_method(record.method);
            view.set_state(record.state);
            view.set_client(record.client);
            view.set_virtual_addr(record.virtual_addr);
            view.set_real(record.real);
            view.set_reserved(0);
            view.set_idle_ms(record.idle_ms);
        }
        packet.fill_tag(KEY);
        assert_eq!(buffer, SYNC6);
    }

    #[test]
    fn record6_view_needs_64_bytes() {
        let bytes = [0u8; RECORD6_LEN];
        for len in 0..RECORD6_LEN {
            assert_eq!(
                RecordPacket::new6_checked(&bytes[..len]),
                Err(WireError::RecordTruncated { len, ipv6: true })
            );
            assert_eq!(
                Record::parse(&RecordPacket::new6_unchecked(&bytes[..len])),
                Err(WireError::RecordTruncated { len, ipv6: true })
            );
        }
        assert!(RecordPacket::new6_checked(&bytes[..]).is_ok());
    }

    #[test]
    #[should_panic(expected = "in an IPv4 record")]
    fn record_view_refuses_an_address_of_the_other_family() {
        let mut buffer = [0u8; RECORD_LEN];
        RecordPacket::new_unchecked(&mut buffer[..]).set_real(sock6("2001:db8::1", 80));
    }

    #[test]
    fn ipv6_record_fields_are_checked() {
        // Record 1 starts at byte 96; its reserved bytes are 154 and 155.
        let cases = [
            (96, 0, WireError::UnknownOp(0)),
            (97, 1, WireError::UnknownProtocol(1)),
            (98, 3, WireError::UnknownMethod(3)),
            (154, 1, WireError::NonzeroReserved(0x0100)),
            (155, 1, WireError::NonzeroReserved(0x0001)),
        ];
        for (at, value, expected) in cases {
            assert_eq!(
                Message::parse(&edited(&SYNC6, at, value), KEY),
                Err(expected.in_record(1)),
                "byte {at} = {value}"
            );
        }
    }

    #[test]
    fn a_message_mixing_families_is_refused() {
        let cases = [
            (vec![upsert(), upsert6()], true),
            (vec![upsert6(), upsert6(), upsert()], false),
        ];
        for (records, ipv6) in cases {
            let index = records.len() - 1;
            let message = Message { records, ..sync() };
            let expected = WireError::FamilyMismatch { ipv6 }.in_record(index);
            assert_eq!(message.check(), Err(expected.clone()));
            assert_eq!(message.try_emit(KEY), Err(expected));
        }
        assert_eq!(
            WireError::FamilyMismatch { ipv6: true }
                .in_record(1)
                .to_string(),
            "record 1: an IPv6 record in a batch of IPv4 records (a message carries one family)"
        );
    }

    #[test]
    #[should_panic(expected = "record 1: an IPv6 record in a batch of IPv4 records")]
    fn emit_panics_on_mixed_families() {
        let message = Message {
            records: vec![upsert(), upsert6()],
            ..sync()
        };
        message.emit(KEY);
    }

    #[test]
    fn a_record_mixing_families_is_refused() {
        let v4_client = Record {
            client: sock([203, 0, 113, 5], 51234),
            ..upsert6()
        };
        let v6_real = Record {
            real: sock6("2001:db8:a::b", 80),
            ..upsert()
        };
        for (record, index, records) in [
            (v6_real, 0, vec![v6_real]),
            (v4_client, 0, vec![v4_client]),
            (v4_client, 1, vec![upsert6(), v4_client]),
            (v6_real, 1, vec![upsert(), v6_real]),
        ] {
            assert_eq!(record.check(), Err(WireError::MixedFamilies));
            let message = Message { records, ..sync() };
            let expected = WireError::MixedFamilies.in_record(index);
            assert_eq!(message.check(), Err(expected.clone()));
            assert_eq!(message.try_emit(KEY), Err(expected));
        }
    }

    #[test]
    #[should_panic(
        expected = "record 0: the client, virtual and real addresses are not all IPv4 or all IPv6"
    )]
    fn emit_panics_on_a_record_mixing_families() {
        let message = Message {
            records: vec![Record {
                real: sock6("2001:db8:a::b", 80),
                ..upsert()
            }],
            ..sync()
        };
        message.emit(KEY);
    }

    #[test]
    fn ipv6_flag_on_a_heartbeat_or_resync_request_fails() {
        for (base, kind, message) in [
            (&HEARTBEAT, Kind::Heartbeat, heartbeat()),
            (&RESYNC_REQUEST, Kind::ResyncRequest, resync_request()),
        ] {
            for flags in [4u8, 5, 7] {
                assert_eq!(
                    Message::parse(&edited(base, 31, flags), KEY),
                    Err(WireError::FlagsOnNonSync {
                        kind,
                        flags: flags.into()
                    })
                );
            }
            let mut message = message;
            message.header.ipv6 = true;
            let expected = WireError::FlagsOnNonSync {
                kind,
                flags: FLAG_IPV6,
            };
            assert_eq!(message.header.check(), Err(expected.clone()));
            assert_eq!(message.try_emit(KEY), Err(expected.clone()));
            // What `emit` sends in a release build: the peer refuses it.
            assert_eq!(Message::parse(&message.write(KEY), KEY), Err(expected));
        }
    }

    #[test]
    fn ipv6_count_must_match_the_length() {
        for count in [0u16, 1, 3, 22, 23, 50, 0xffff] {
            let mut bytes = SYNC6.to_vec();
            bytes[28..30].copy_from_slice(&count.to_be_bytes());
            resign(&mut bytes);
            let expected = if usize::from(count) > MAX_RECORDS6 {
                WireError::TooManyRecords {
                    count: count.into(),
                    ipv6: true,
                }
            } else {
                WireError::LengthMismatch {
                    len: 192,
                    count,
                    ipv6: true,
                }
            };
            assert_eq!(Message::parse(&bytes, KEY), Err(expected), "count {count}");
        }
        let three = WireError::LengthMismatch {
            len: 192,
            count: 3,
            ipv6: true,
        };
        assert_eq!(
            three.to_string(),
            "length mismatch: 192 bytes, but count 3 makes 256 with IPv6 records"
        );
        // IPv4 records under the IPV6 flag, and IPv6 records without it.
        let v4_as_v6 = edited(&SYNC, 31, 0x07);
        let expected = WireError::LengthMismatch {
            len: 120,
            count: 2,
            ipv6: true,
        };
        assert_eq!(
            expected.to_string(),
            "length mismatch: 120 bytes, but count 2 makes 192 with IPv6 records"
        );
        assert_eq!(Message::parse(&v4_as_v6, KEY), Err(expected));
        let v6_as_v4 = edited(&SYNC6, 31, 0x00);
        let expected = WireError::LengthMismatch {
            len: 192,
            count: 2,
            ipv6: false,
        };
        assert_eq!(
            expected.to_string(),
            "length mismatch: 192 bytes, but count 2 makes 120 with IPv4 records"
        );
        assert_eq!(Message::parse(&v6_as_v4, KEY), Err(expected));
        // A byte too many or too few for the count, properly signed.
        let mut long = SYNC6[..160].to_vec();
        long.push(0);
        let mut short = SYNC6[..159].to_vec();
        for bytes in [&mut long, &mut short] {
            bytes.extend_from_slice(&[0; TAG_LEN]);
            resign(bytes);
            assert_eq!(
                Message::parse(bytes, KEY),
                Err(WireError::LengthMismatch {
                    len: bytes.len(),
                    count: 2,
                    ipv6: true
                })
            );
        }
    }

    #[test]
    fn more_than_max_ipv6_records_fail_even_with_the_right_length() {
        assert_eq!(MAX_RECORDS6, 22);
        assert_eq!(max_records(true), MAX_RECORDS6);
        assert_eq!(max_records(false), MAX_RECORDS);
        let message = Message {
            records: vec![upsert6(); MAX_RECORDS6 + 1],
            ..sync6()
        };
        let too_many = WireError::TooManyRecords {
            count: 23,
            ipv6: true,
        };
        assert_eq!(
            too_many.to_string(),
            "too many records: 23, at most 22 IPv6 records fit one datagram"
        );
        assert_eq!(message.check(), Err(too_many.clone()));
        assert_eq!(message.try_emit(KEY), Err(too_many.clone()));
        // Build it by hand: the receiver rejects it too.
        let mut bytes = vec![0; MIN_LEN + RECORD6_LEN * 23];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        message.header.emit(&mut packet);
        packet.set_count(23);
        for index in 0..23 {
            upsert6().emit(&mut packet.record_mut(index));
        }
        packet.fill_tag(KEY);
        assert_eq!(Message::parse(&bytes, KEY), Err(too_many));
    }

    #[test]
    #[should_panic(expected = "too many records: 23, at most 22 IPv6 records")]
    fn emit_panics_on_too_many_ipv6_records() {
        let message = Message {
            records: vec![upsert6(); MAX_RECORDS6 + 1],
            ..sync6()
        };
        message.emit(KEY);
    }

    #[test]
    fn max_ipv6_records_fit_one_datagram() {
        let mut message = sync6();
        message.header.full = true;
        message.records = (0..MAX_RECORDS6 as u16)
            .map(|i| Record {
                client: SocketAddr::new(
                    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i).into(),
                    1024 + i,
                ),
                idle_ms: u32::from(i) * 1000,
                ..upsert6()
            })
            .collect();
        let bytes = message.emit(KEY);
        assert_eq!(bytes.len(), message.buffer_len());
        assert_eq!(bytes.len(), 1472);
        assert!(bytes.len() <= MAX_DATAGRAM_LEN);
        assert_eq!(message.try_emit(KEY).as_ref(), Ok(&bytes));
        assert_eq!(Message::parse(&bytes, KEY), Ok(message));
    }

    #[test]
    fn empty_ipv6_sync_round_trips() {
        // No records to say the family: the header's flag is kept.
        let mut message = sync6();
        message.records.clear();
        message.header.full = true;
        message.header.last = true;
        let bytes = message.emit(KEY);
        assert_eq!(bytes.len(), MIN_LEN);
        assert_eq!(bytes[30..32], [0x00, 0x07]);
        assert_eq!(Message::parse(&bytes, KEY), Ok(message));
    }

    #[test]
    fn the_ipv6_flag_follows_the_records() {
        let mut v4 = sync();
        v4.header.ipv6 = true;
        assert!(!v4.ipv6());
        assert_eq!(v4.emit(KEY), SYNC);
        assert_eq!(v4.try_emit(KEY).as_deref(), Ok(&SYNC[..]));
        let mut v6 = sync6();
        v6.header.ipv6 = false;
        assert!(v6.ipv6());
        assert_eq!(v6.emit(KEY), SYNC6);
        assert_eq!(v6.try_emit(KEY).as_deref(), Ok(&SYNC6[..]));
    }

    #[test]
    fn new_errors_say_what_was_wrong() {
        let cases = [
            (
                WireError::RecordTruncated {
                    len: 30,
                    ipv6: true,
                },
                "truncated record: 30 bytes, an IPv6 record needs 64",
            ),
            (
                WireError::RecordTruncated {
                    len: 20,
                    ipv6: false,
                },
                "truncated record: 20 bytes, an IPv4 record needs 28",
            ),
            (
                WireError::TooManyRecords {
                    count: 51,
                    ipv6: false,
                },
                "too many records: 51, at most 50 IPv4 records fit one datagram",
            ),
            (
                WireError::MixedFamilies.in_record(3),
                "record 3: the client, virtual and real addresses are not all IPv4 or all IPv6",
            ),
            (
                WireError::FamilyMismatch { ipv6: false }.in_record(2),
                "record 2: an IPv4 record in a batch of IPv6 records (a message carries one family)",
            ),
            (
                WireError::UnknownFlags(0x0008),
                "unknown flag bits 0x0008 (only FULL 0x0001, LAST 0x0002 and IPV6 0x0004 are defined)",
            ),
            (
                WireError::FlagsOnNonSync {
                    kind: Kind::Heartbeat,
                    flags: FLAG_IPV6,
                },
                "flags 0x0004 on a heartbeat (only sync messages carry FULL, LAST and IPV6)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
