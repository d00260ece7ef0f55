//! An address as ipvsadm writes it: `a.b.c.d[:port]`, `[v6][:port]`, or a
//! bare IPv6 address (no port). Read by the CLI, the config and
//! `--simulate` alike. And the `Addr` trait the map types are generic over.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The address and, if given, the port; `None` if malformed.
pub fn split_host_port(text: &str) -> Option<(IpAddr, Option<u16>)> {
    let port = |p: &str| p.parse::<u16>().ok().map(Some);
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let addr: Ipv6Addr = host.parse().ok()?;
        let port = match after {
            "" => None,
            p => port(p.strip_prefix(':')?)?,
        };
        return Some((IpAddr::V6(addr), port));
    }
    if let Ok(addr) = text.parse::<Ipv6Addr>() {
        return Some((IpAddr::V6(addr), None));
    }
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) => (h, port(p)?),
        None => (text, None),
    };
    Some((IpAddr::V4(host.parse::<Ipv4Addr>().ok()?), port))
}

/// An address as the maps and headers hold it, in network order: IPv4's
/// four bytes or IPv6's sixteen. The map types are generic over it, the
/// IPv4 form being the default, so that each rule is written once for both
/// families. Sealed: the map types' layouts are checked for these two.
pub trait Addr: Copy + Eq + core::fmt::Debug + core::hash::Hash + sealed::Sealed + 'static {
    /// All zero: "none" where a map says so.
    const UNSPECIFIED: Self;
    /// Padding that keeps the 8-byte fields after an address aligned
    /// without implicit padding (`Conn`, `Event`).
    type Pad: Copy + Eq + core::fmt::Debug + core::hash::Hash + Default;
    /// The last four bytes: what the relevance bitmap and the client cache
    /// slot hash.
    fn last_word(&self) -> [u8; 4];
    /// The 32 bits IPVS's bucket hashes take: IPv6 folded (`hash::fold_ipv6`).
    fn folded(&self) -> [u8; 4];
    /// Each byte ANDed with `mask`'s (a persistence netmask).
    fn masked(&self, mask: &Self) -> Self;
    /// The checksum change (pseudo-header) when `self` becomes `new`.
    fn delta(&self, new: &Self) -> crate::checksum::Delta;
    /// `addr`, if it is of this family.
    fn of(addr: IpAddr) -> Option<Self>;
    fn ip(self) -> IpAddr;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for [u8; 4] {}
    impl Sealed for super::In6 {}
}

impl Addr for [u8; 4] {
    const UNSPECIFIED: Self = [0; 4];
    type Pad = [u8; 0];
    #[inline(always)]
    fn last_word(&self) -> [u8; 4] {
        *self
    }
    #[inline(always)]
    fn folded(&self) -> [u8; 4] {
        *self
    }
    #[inline(always)]
    fn masked(&self, mask: &Self) -> Self {
        [
            self[0] & mask[0],
            self[1] & mask[1],
            self[2] & mask[2],
            self[3] & mask[3],
        ]
    }
    #[inline(always)]
    fn delta(&self, new: &Self) -> crate::checksum::Delta {
        crate::checksum::Delta::NONE.addr(*self, *new)
    }
    fn of(addr: IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V4(a) => Some(a.octets()),
            IpAddr::V6(_) => None,
        }
    }
    fn ip(self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(self))
    }
}

/// An IPv6 address as the maps and the IPv6 header hold it: its sixteen
/// bytes in network order, aligned to four so that BPF moves and compares
/// it in words (an unaligned byte array is moved byte by byte, and the
/// verifier's stack does not hold the registers that takes).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct In6(pub [u8; 16]);

impl In6 {
    /// The four 32-bit words, as they lie in memory.
    #[inline(always)]
    pub fn words(self) -> [u32; 4] {
        // SAFETY: sixteen bytes either way, any bit pattern valid.
        unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(self.0) }
    }
    #[inline(always)]
    pub fn from_words(words: [u32; 4]) -> Self {
        // SAFETY: as above.
        Self(unsafe { core::mem::transmute::<[u32; 4], [u8; 16]>(words) })
    }
}

impl From<Ipv6Addr> for In6 {
    fn from(addr: Ipv6Addr) -> Self {
        Self(addr.octets())
    }
}

impl From<In6> for Ipv6Addr {
    fn from(addr: In6) -> Self {
        Ipv6Addr::from(addr.0)
    }
}

impl Addr for In6 {
    const UNSPECIFIED: Self = In6([0; 16]);
    type Pad = [u8; 4];
    #[inline(always)]
    fn last_word(&self) -> [u8; 4] {
        self.words()[3].to_ne_bytes()
    }
    /// XOR of the words, bytewise the same as `hash::fold_ipv6`.
    #[inline(always)]
    fn folded(&self) -> [u8; 4] {
        let w = self.words();
        (w[0] ^ w[1] ^ w[2] ^ w[3]).to_ne_bytes()
    }
    #[inline(always)]
    fn masked(&self, mask: &Self) -> Self {
        let (a, m) = (self.words(), mask.words());
        Self::from_words([a[0] & m[0], a[1] & m[1], a[2] & m[2], a[3] & m[3]])
    }
    #[inline(always)]
    fn delta(&self, new: &Self) -> crate::checksum::Delta {
        let (old, new) = (self.words(), new.words());
        let mut delta = crate::checksum::Delta::NONE;
        let mut i = 0;
        while i < 4 {
            delta = delta.addr(old[i].to_ne_bytes(), new[i].to_ne_bytes());
            i += 1;
        }
        delta
    }
    fn of(addr: IpAddr) -> Option<Self> {
        match addr {
            IpAddr::V6(a) => Some(a.into()),
            IpAddr::V4(_) => None,
        }
    }
    fn ip(self) -> IpAddr {
        IpAddr::V6(self.into())
    }
}
