//! The two address families the maps come in. The datapath's methods for
//! services, real servers and connections are generic over `Family`
//! (`[u8; 4]` for IPv4, `In6` for IPv6); each implementation finds a
//! family's maps through its sealed part of the trait.

use lvs_common::addr::{Addr, In6};

/// An address family of the maps: its address type (`Addr::of` and
/// `Addr::ip` convert it).
pub trait Family: Addr + aya::Pod + crate::kernel::KernelFamily + FakeSupport {
    /// The family's map of the IPv4 map `ipv4` (its name, for errors).
    fn map_name(ipv4: &'static str, ipv6: &'static str) -> &'static str;
}

#[cfg(any(test, feature = "fake"))]
pub use crate::fake::FakeFamily as FakeSupport;

/// Without the fake datapath, nothing to support.
#[cfg(not(any(test, feature = "fake")))]
pub trait FakeSupport {}
#[cfg(not(any(test, feature = "fake")))]
impl<T> FakeSupport for T {}

impl Family for [u8; 4] {
    fn map_name(ipv4: &'static str, _ipv6: &'static str) -> &'static str {
        ipv4
    }
}

impl Family for In6 {
    fn map_name(_ipv4: &'static str, ipv6: &'static str) -> &'static str {
        ipv6
    }
}
