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

/// `TUNSETIFF`, `_IOW('T', 202, int)` in the asm-generic ioctl encoding
/// (x86, arm, riscv; not powerpc, mips or sparc).
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
        let name = iface.as_bytes();
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(&b'/') {
            return Err(fail(
                "creating the announcement device",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an interface name"),
            ));
        }
        if netconf::link_exists(iface) {
            return Err(fail(
                "creating the announcement device",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "an interface of that name exists; lvsd creates its own",
                ),
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
        // IFF_TUN_EXCL: never attach to a device made meanwhile by another.
        request.ifr_ifru.ifru_flags =
            (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_TUN_EXCL) as libc::c_short;
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

    /// Hold exactly `vips` (each as a /32 or /128). What is held is
    /// tracked address by address, so a failure part way leaves nothing
    /// forgotten: the next call finishes the job.
    pub fn hold(&mut self, vips: &BTreeSet<IpAddr>) -> Result<(), DatapathError> {
        let host = |addr: &IpAddr| if addr.is_ipv4() { 32 } else { 128 };
        let iface = self.iface.clone();
        let fail = |call: &'static str, e: netconf::NetconfError| DatapathError::Netlink {
            iface: iface.clone(),
            call,
            source: std::io::Error::other(e),
        };
        let adding: Vec<IpAddr> = vips.difference(&self.held).copied().collect();
        for addr in adding {
            netconf::add_address(&self.iface, addr, host(&addr))
                .map_err(|e| fail("ip addr replace", e))?;
            self.held.insert(addr);
        }
        let removing: Vec<IpAddr> = self.held.difference(vips).copied().collect();
        for addr in removing {
            // Already gone (removed by hand) is as good as removed.
            if let Err(e) = netconf::remove_address(&self.iface, addr, host(&addr)) {
                if netconf::has_address(&self.iface, addr).unwrap_or(true) {
                    return Err(fail("ip addr del", e));
                }
            }
            self.held.remove(&addr);
        }
        Ok(())
    }

    /// Give up every VIP at once (a clean stop, before the datapath goes).
    pub fn withdraw(&mut self) -> Result<(), DatapathError> {
        self.hold(&BTreeSet::new())
    }
}
