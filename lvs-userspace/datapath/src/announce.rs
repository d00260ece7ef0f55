//! The announcement device (`lvsd --announce IFACE`): a TUN device lvsd
//! holds open, with each VIP it can serve on it as a host address, for a
//! routing daemon on the director (BIRD's `protocol direct`) to announce.
//! The kernel deletes a TUN device when the last descriptor on it closes,
//! so the addresses, and the routes announced from them, go when lvsd
//! goes, however it goes (a clean stop, a crash, SIGKILL).

use std::{
    collections::BTreeSet,
    net::IpAddr,
    os::fd::{FromRawFd, OwnedFd},
};

use crate::{netconf, DatapathError};

/// `TUNSETIFF`, `_IOW('T', 202, int)` (the asm-generic ioctl encoding).
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

pub struct Announcer {
    /// The device lives as long as this descriptor.
    _tun: OwnedFd,
    iface: String,
    held: BTreeSet<IpAddr>,
}

impl Announcer {
    /// Create the TUN device `iface` and bring it up. An existing
    /// interface of that name is refused (the kernel would attach to a
    /// persistent TUN device, which would not go with lvsd).
    pub fn open(iface: &str) -> Result<Self, DatapathError> {
        let fail = |call: &'static str, source: std::io::Error| DatapathError::Netlink {
            iface: iface.to_string(),
            call,
            source,
        };
        if netconf::link_exists(iface) {
            return Err(fail(
                "creating the announcement device",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "an interface of that name exists; lvsd creates its own",
                ),
            ));
        }
        let name = iface.as_bytes();
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(fail(
                "creating the announcement device",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an interface name"),
            ));
        }
        // SAFETY: a plain open(2); the descriptor is owned just below.
        let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(fail("open(/dev/net/tun)", std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just opened and nothing else owns it.
        let tun = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: an all-zero ifreq is valid; the name leaves a NUL.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in request.ifr_name.iter_mut().zip(name) {
            *dst = *src as libc::c_char;
        }
        request.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads (and writes back) one ifreq.
        let done = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&tun),
                TUNSETIFF as _,
                &mut request,
            )
        };
        if done < 0 {
            return Err(fail("ioctl(TUNSETIFF)", std::io::Error::last_os_error()));
        }
        netconf::link_up(iface).map_err(|e| fail("ip link set up", std::io::Error::other(e)))?;
        Ok(Self {
            _tun: tun,
            iface: iface.to_string(),
            held: BTreeSet::new(),
        })
    }

    /// Hold exactly `vips` (each as a /32 or /128).
    pub fn hold(&mut self, vips: &BTreeSet<IpAddr>) -> Result<(), DatapathError> {
        let host = |addr: &IpAddr| if addr.is_ipv4() { 32 } else { 128 };
        let fail = |call: &'static str, e: netconf::NetconfError| DatapathError::Netlink {
            iface: self.iface.clone(),
            call,
            source: std::io::Error::other(e),
        };
        for addr in vips.difference(&self.held) {
            netconf::add_address(&self.iface, *addr, host(addr))
                .map_err(|e| fail("ip addr replace", e))?;
        }
        for addr in self.held.difference(vips) {
            netconf::remove_address(&self.iface, *addr, host(addr))
                .map_err(|e| fail("ip addr del", e))?;
        }
        self.held = vips.clone();
        Ok(())
    }

    /// Give up every VIP at once (a clean stop, before the datapath goes).
    pub fn withdraw(&mut self) -> Result<(), DatapathError> {
        self.hold(&BTreeSet::new())
    }
}
