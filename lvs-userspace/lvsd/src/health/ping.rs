//! keepalived's PING_CHECK (check_ping.c): an ICMP echo request (ICMPv6
//! for an IPv6 server) carrying 128 bytes of `keepalived check - ` over
//! and over, and success on its echo reply within the timeout.
//!
//! keepalived sends from an IPPROTO_ICMP datagram socket, which Linux
//! refuses to root by default (`net.ipv4.ping_group_range` is `1 0`, and
//! keepalived rewrites it to let root in). lvsd, which runs as root, does
//! not touch the sysctl: it uses a raw socket, picks the echo identifier
//! itself, and skips every ICMP packet that is not the reply it awaits
//! (replies to other pings, its own request looped back), where the kernel
//! does that filtering for keepalived's socket. Each attempt is one request
//! with sequence number 1 on a socket of its own.
//!
//! The raw socket is driven as a tokio `UdpSocket`: both are datagram
//! sockets read and written with recvfrom and sendto (the port of a raw
//! socket's addresses is 0), and this keeps lvsd free of `unsafe`.

use std::{
    io,
    net::{IpAddr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use nix::sys::socket::{
    bind as bind_to, socket, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrStorage,
};
use tokio::{net::UdpSocket, time::timeout};

use super::{
    probe::{random_u16, ProbeFailure},
    udp::filler,
};

/// keepalived's ICMP_BUFSIZE: the request's payload.
const PAYLOAD: usize = 128;
const ECHO_REQUEST: u8 = 8;
const ECHO_REPLY: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

pub async fn check(
    addr: IpAddr,
    bind: Option<IpAddr>,
    timeout_ms: u64,
) -> Result<(), ProbeFailure> {
    let socket = raw_socket(addr, bind)?;
    let (id, seq) = (random_u16(), 1);
    let failed = |source| ProbeFailure::Ping { addr, source };
    let exchange = async {
        socket
            .send_to(&echo_request(addr, id, seq), SocketAddr::new(addr, 0))
            .await
            .map_err(failed)?;
        let mut buf = [0; 1024];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.map_err(failed)?;
            if from.ip() == addr && is_reply(addr, &buf[..n], id, seq) {
                return Ok(());
            }
        }
    };
    timeout(Duration::from_millis(timeout_ms), exchange)
        .await
        .unwrap_or(Err(ProbeFailure::NoEcho { addr, timeout_ms }))
}

fn raw_socket(addr: IpAddr, bind: Option<IpAddr>) -> Result<UdpSocket, ProbeFailure> {
    let (family, protocol, name) = match addr {
        IpAddr::V4(_) => (AddressFamily::Inet, SockProtocol::Icmp, "ICMP"),
        IpAddr::V6(_) => (AddressFamily::Inet6, SockProtocol::IcmpV6, "ICMPv6"),
    };
    let fd = socket(
        family,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        protocol,
    )
    .map_err(|e| ProbeFailure::RawSocket {
        protocol: name,
        source: e.into(),
    })?;
    if let Some(bind) = bind {
        bind_to(
            fd.as_raw_fd(),
            &SockaddrStorage::from(SocketAddr::new(bind, 0)),
        )
        .map_err(|e| ProbeFailure::Ping {
            addr,
            source: io::Error::new(io::Error::from(e).kind(), format!("binding to {bind}: {e}")),
        })?;
    }
    UdpSocket::from_std(std::net::UdpSocket::from(fd)).map_err(|source| ProbeFailure::RawSocket {
        protocol: name,
        source,
    })
}

/// The request keepalived's `ping_it` and `ping6_it` build: type, code 0,
/// checksum, identifier, sequence, then the filler. The kernel sums an
/// ICMPv6 packet itself.
fn echo_request(addr: IpAddr, id: u16, seq: u16) -> Vec<u8> {
    let kind = match addr {
        IpAddr::V4(_) => ECHO_REQUEST,
        IpAddr::V6(_) => ECHO_REQUEST_V6,
    };
    let mut packet = vec![kind, 0, 0, 0];
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&seq.to_be_bytes());
    packet.extend_from_slice(&filler(PAYLOAD));
    if addr.is_ipv4() {
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Whether `packet` (with its IPv4 header: raw IPv4 sockets deliver it) is
/// the echo reply with `id` and `seq`.
fn is_reply(addr: IpAddr, packet: &[u8], id: u16, seq: u16) -> bool {
    let (icmp, reply) = match addr {
        IpAddr::V4(_) => {
            let header = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
            (packet.get(header..).unwrap_or_default(), ECHO_REPLY)
        }
        IpAddr::V6(_) => (packet, ECHO_REPLY_V6),
    };
    icmp.len() >= 8
        && icmp[0] == reply
        && icmp[4..6] == id.to_be_bytes()
        && icmp[6..8] == seq.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, Ipv6Addr},
        process::Command,
        time::Instant,
    };

    use super::*;
    use crate::health::probe::{probe, tests::target};
    use lvs_state::health::{Check, CheckKind};

    fn ping(timeout_ms: u64) -> Check {
        Check {
            timeout_ms,
            ..Check::new(CheckKind::Ping)
        }
    }

    #[test]
    fn requests_are_keepalived_s() {
        let request = echo_request(Ipv4Addr::LOCALHOST.into(), 0x1234, 1);
        assert_eq!(request.len(), 8 + 128);
        assert_eq!(request[..2], [8, 0]);
        assert_eq!(request[4..8], [0x12, 0x34, 0, 1]);
        assert!(request[8..].starts_with(b"keepalived check - keepalived check - "));
        // A packet with its checksum in place sums to zero.
        assert_eq!(checksum(&request), 0);
        let v6 = echo_request(Ipv6Addr::LOCALHOST.into(), 0x1234, 1);
        assert_eq!((v6[0], &v6[2..4]), (128, &[0, 0][..]));
    }

    #[test]
    fn only_the_awaited_reply_counts() {
        let v4: IpAddr = Ipv4Addr::LOCALHOST.into();
        // A 20-byte IPv4 header, then the ICMP message.
        let mut reply = vec![0x45; 20];
        reply.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert!(is_reply(v4, &reply, 0x1234, 1));
        assert!(!is_reply(v4, &reply, 0x1235, 1));
        assert!(!is_reply(v4, &reply, 0x1234, 2));
        reply[20] = ECHO_REQUEST;
        assert!(!is_reply(v4, &reply, 0x1234, 1), "our own request");
        assert!(!is_reply(v4, &reply[..24], 0x1234, 1), "too short");
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        assert!(is_reply(v6, &[129, 0, 0, 0, 0x12, 0x34, 0, 1], 0x1234, 1));
        assert!(!is_reply(v6, &[128, 0, 0, 0, 0x12, 0x34, 0, 1], 0x1234, 1));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn loopback_answers_over_both_families() {
        probe(&ping(1000), &target(80)).await.unwrap();
        let mut v6 = target(80);
        v6.real.addr = Ipv6Addr::LOCALHOST.into();
        probe(&ping(1000), &v6).await.unwrap();
        let mut bound = ping(1000);
        bound.bind = Some(Ipv4Addr::new(127, 0, 0, 2).into());
        probe(&bound, &target(80)).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_address_not_here_cannot_be_the_source() {
        let mut bound = ping(1000);
        bound.bind = Some(Ipv4Addr::new(192, 0, 2, 1).into());
        let err = probe(&bound, &target(80)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "ping 127.0.0.1: binding to 192.0.2.1: EADDRNOTAVAIL: Cannot assign requested address"
        );
    }

    /// In a network namespace of its own whose kernel ignores echo
    /// requests, the ping goes out and nothing comes back.
    #[test]
    fn no_reply_is_a_timeout() {
        std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
            let status = Command::new("sh")
                .args([
                    "-c",
                    "ip link set lo up && sysctl -qw net.ipv4.icmp_echo_ignore_all=1",
                ])
                .status()
                .unwrap();
            assert!(status.success());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let started = Instant::now();
                let err = probe(&ping(300), &target(80)).await.unwrap_err();
                assert!(started.elapsed() >= Duration::from_millis(300));
                assert_eq!(
                    err.to_string(),
                    "no echo reply from 127.0.0.1 within 300 ms"
                );
            });
        })
        .join()
        .unwrap();
    }
}
