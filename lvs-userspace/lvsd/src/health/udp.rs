//! keepalived's UDP_CHECK (check_udp.c, and layer4.c's `udp_bind_connect`
//! and `udp_socket_error`): a connected UDP socket with IP_RECVERR sends
//! the payload (by default keepalived's 32 bytes, `keepalived check - `
//! over and over), then waits for the timeout:
//!
//! * silence is success, unless a reply is required;
//! * an ICMP destination unreachable (port, host, network...) is a
//!   failure; another ICMP error (time exceeded...) is success, as
//!   keepalived only looks for unreachables;
//! * a reply is success; with a `reply` pattern, its length must be within
//!   `min_reply_length..=max_reply_length` and it must match the pattern
//!   over the shorter of the two, `x` nibbles matching anything.

use std::{
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    time::Duration,
};

use nix::{
    libc,
    sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage},
};
use tokio::{net::UdpSocket, time::timeout};

use super::probe::ProbeFailure;
use lvs_state::{
    health::{hex_bytes, UdpCheck},
    model::Endpoint,
};

/// keepalived's UDP_BUFSIZE: the size of its default payload.
const DEFAULT_PAYLOAD: usize = 32;
/// How much of a reply a failure shows.
const EXCERPT_BYTES: usize = 32;

/// keepalived's `set_buf`: what it sends when nothing is configured.
pub(super) fn filler(len: usize) -> Vec<u8> {
    b"keepalived check - "
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// A UDP socket connected to `addr`, from `bind` if given.
pub(super) fn connected(addr: Endpoint, bind: Option<IpAddr>) -> Result<UdpSocket, ProbeFailure> {
    socket(addr, bind, false)
}

/// With `recverr`, ICMP errors are queued for `icmp_verdict` to read.
fn socket(addr: Endpoint, bind: Option<IpAddr>, recverr: bool) -> Result<UdpSocket, ProbeFailure> {
    let local = bind.unwrap_or(match addr.addr {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    });
    let socket = std::net::UdpSocket::bind((local, 0)).map_err(|source| match bind {
        Some(bind) => ProbeFailure::Bind { addr, bind, source },
        None => ProbeFailure::Connect { addr, source },
    })?;
    let failed = |source| ProbeFailure::Connect { addr, source };
    if recverr {
        match addr.addr {
            IpAddr::V4(_) => setsockopt(&socket, sockopt::Ipv4RecvErr, &true),
            IpAddr::V6(_) => setsockopt(&socket, sockopt::Ipv6RecvErr, &true),
        }
        .map_err(|e| failed(e.into()))?;
    }
    socket
        .connect(SocketAddr::new(addr.addr, addr.port))
        .map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    UdpSocket::from_std(socket).map_err(failed)
}

pub async fn check(
    addr: Endpoint,
    bind: Option<IpAddr>,
    spec: &UdpCheck,
    timeout_ms: u64,
) -> Result<(), ProbeFailure> {
    let invalid = |e: lvs_state::health::HealthError| ProbeFailure::Invalid(e.to_string());
    let payload = match &spec.payload {
        Some(hex) => hex_bytes("payload", hex, false).map_err(invalid)?.0,
        None => filler(DEFAULT_PAYLOAD),
    };
    let pattern = match &spec.reply {
        Some(hex) => Some(hex_bytes("require_reply", hex, true).map_err(invalid)?),
        None => None,
    };
    let socket = socket(addr, bind, true)?;
    socket
        .send(&payload)
        .await
        .map_err(|source| ProbeFailure::Send { addr, source })?;
    // One byte more than the longest reply allowed, to see one longer.
    let mut buf = vec![0; usize::from(spec.max_reply_length) + 1];
    match timeout(Duration::from_millis(timeout_ms), socket.recv(&mut buf)).await {
        Err(_) if spec.require_reply || pattern.is_some() => {
            Err(ProbeFailure::NoReply { addr, timeout_ms })
        }
        Err(_) => Ok(()),
        Ok(Err(error)) => icmp_verdict(&socket, addr, error),
        Ok(Ok(n)) => match pattern {
            Some((data, mask)) => judge(addr, spec, &buf[..n], &data, &mask),
            None => Ok(()),
        },
    }
}

/// keepalived's `check_udp_reply`.
fn judge(
    addr: Endpoint,
    spec: &UdpCheck,
    reply: &[u8],
    data: &[u8],
    mask: &[u8],
) -> Result<(), ProbeFailure> {
    let (min, max) = (spec.min_reply_length, spec.max_reply_length);
    let failed = |reason| ProbeFailure::UdpReply {
        addr,
        reason,
        got: hex(reply),
    };
    if reply.len() < usize::from(min) || reply.len() > usize::from(max) {
        return Err(failed(format!(
            "has length {}, not {min} to {max}",
            reply.len()
        )));
    }
    let matches = reply
        .iter()
        .zip(data.iter().zip(mask))
        .all(|(got, (want, wild))| (got ^ want) & !wild == 0);
    if !matches {
        let pattern = spec.reply.as_deref().unwrap_or_default();
        return Err(failed(format!("does not match {pattern:?}")));
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes
        .iter()
        .take(EXCERPT_BYTES)
        .map(|b| format!("{b:02x}"))
        .collect();
    let more = if bytes.len() > EXCERPT_BYTES {
        " ..."
    } else {
        ""
    };
    format!("{}{more}", shown.join(" "))
}

/// The socket reported an error: an ICMP error, if its queue holds one
/// (keepalived's `udp_socket_error`), else the error itself.
fn icmp_verdict(socket: &UdpSocket, addr: Endpoint, error: io::Error) -> Result<(), ProbeFailure> {
    let mut data = [0; 64];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut space = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let queued = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    );
    let Ok(queued) = queued else {
        return Err(ProbeFailure::Read {
            addr,
            source: error,
        });
    };
    for message in queued.cmsgs().into_iter().flatten() {
        let unreachable = match message {
            ControlMessageOwned::Ipv4RecvErr(e, _) if e.ee_origin == libc::SO_EE_ORIGIN_ICMP => {
                (e.ee_type == ICMP_DEST_UNREACH).then(|| icmp4_unreachable(e.ee_code))
            }
            ControlMessageOwned::Ipv6RecvErr(e, _) if e.ee_origin == libc::SO_EE_ORIGIN_ICMP6 => {
                (e.ee_type == ICMPV6_DEST_UNREACH).then(|| icmp6_unreachable(e.ee_code))
            }
            _ => continue,
        };
        return match unreachable {
            Some(what) => Err(ProbeFailure::Unreachable { addr, what }),
            // Not an unreachable: keepalived counts the check a success.
            None => Ok(()),
        };
    }
    Err(ProbeFailure::Read {
        addr,
        source: error,
    })
}

const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;

fn icmp4_unreachable(code: u8) -> String {
    match code {
        0 => "network unreachable".into(),
        1 => "host unreachable".into(),
        2 => "protocol unreachable".into(),
        3 => "port unreachable".into(),
        4 => "fragmentation needed".into(),
        13 => "communication administratively prohibited".into(),
        code => format!("destination unreachable (code {code})"),
    }
}

fn icmp6_unreachable(code: u8) -> String {
    match code {
        0 => "no route to destination".into(),
        1 => "communication administratively prohibited".into(),
        3 => "address unreachable".into(),
        4 => "port unreachable".into(),
        code => format!("destination unreachable (code {code})"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::task::JoinHandle;

    use super::*;
    use crate::health::probe::{probe, tests::target};
    use lvs_state::health::{Check, CheckKind, DEFAULT_MAX_REPLY_LENGTH, DEFAULT_MIN_REPLY_LENGTH};

    fn udp(require_reply: bool, reply: Option<&str>) -> UdpCheck {
        UdpCheck {
            payload: None,
            require_reply,
            reply: reply.map(String::from),
            min_reply_length: DEFAULT_MIN_REPLY_LENGTH,
            max_reply_length: DEFAULT_MAX_REPLY_LENGTH,
        }
    }

    fn check(spec: UdpCheck) -> Check {
        Check {
            timeout_ms: 300,
            ..Check::new(CheckKind::Udp(spec))
        }
    }

    /// What a test server sends back for a datagram.
    type Answer = fn(&[u8]) -> Vec<u8>;

    /// A UDP server for one datagram: returns it, after sending `answer`
    /// of it back if there is one.
    async fn server(answer: Option<Answer>) -> (u16, JoinHandle<Vec<u8>>) {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut buf = [0; 2048];
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            if let Some(answer) = answer {
                socket.send_to(&answer(&buf[..n]), from).await.unwrap();
            }
            buf[..n].to_vec()
        });
        (port, task)
    }

    async fn closed_port() -> u16 {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        socket.local_addr().unwrap().port()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keepalived_s_payload_and_silence_is_success() {
        let (port, sent) = server(None).await;
        probe(&check(udp(false, None)), &target(port))
            .await
            .unwrap();
        assert_eq!(sent.await.unwrap(), b"keepalived check - keepalived ch");
        // An echo is success too, and a configured payload is sent as is.
        let (port, sent) = server(Some(<[u8]>::to_vec)).await;
        let mut spec = udp(true, None);
        spec.payload = Some("Ab12f 3".into());
        probe(&check(spec), &target(port)).await.unwrap();
        assert_eq!(sent.await.unwrap(), [0xAB, 0x12, 0x0F, 0x03]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_is_an_icmp_port_unreachable() {
        let port = closed_port().await;
        let mut c = check(udp(false, None));
        c.timeout_ms = 5000;
        let started = Instant::now();
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            format!("ICMP port unreachable for 127.0.0.1:{port}")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_required_reply_must_come() {
        let (port, _server) = server(None).await;
        let err = probe(&check(udp(true, None)), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no reply from 127.0.0.1:{port} within 300 ms (require_reply)")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_matches_its_pattern_over_the_shorter_length() {
        // x nibbles match anything; a reply shorter than the pattern is
        // compared as far as it goes, as keepalived does.
        let pattern = "6b 6x 7x";
        for answer in [
            (|_: &[u8]| b"kepler".to_vec()) as Answer,
            |_| b"kex".to_vec(),
            |_| b"k".to_vec(),
        ] {
            let (port, _server) = server(Some(answer)).await;
            probe(&check(udp(true, Some(pattern))), &target(port))
                .await
                .unwrap();
        }
        let (port, _server) = server(Some(|_| b"kA".to_vec())).await;
        let err = probe(&check(udp(true, Some(pattern))), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("reply from 127.0.0.1:{port} does not match \"6b 6x 7x\"; got 6b 41")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_must_have_a_length_within_bounds() {
        let mut spec = udp(true, Some("6b"));
        spec.min_reply_length = 2;
        spec.max_reply_length = 4;
        let (port, _server) = server(Some(|_| b"k".to_vec())).await;
        let err = probe(&check(spec.clone()), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("reply from 127.0.0.1:{port} has length 1, not 2 to 4; got 6b")
        );
        // A longer one is cut at max + 1 bytes, and refused.
        let (port, _server) = server(Some(|_| vec![0x6b; 40])).await;
        let err = probe(&check(spec.clone()), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("reply from 127.0.0.1:{port} has length 5, not 2 to 4; got 6b 6b 6b 6b 6b")
        );
        let (port, _server) = server(Some(|_| b"kk".to_vec())).await;
        probe(&check(spec), &target(port)).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bind_sets_the_source_address() {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let mut c = check(udp(false, None));
        c.bind = Some(Ipv4Addr::new(127, 0, 0, 2).into());
        probe(&c, &target(port)).await.unwrap();
        let mut buf = [0; 64];
        let (_, from) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!(from.ip(), Ipv4Addr::new(127, 0, 0, 2));
        // An address not on this host cannot be bound.
        c.bind = Some(Ipv4Addr::new(192, 0, 2, 1).into());
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert!(
            err.to_string().starts_with(&format!(
                "binding the probe of 127.0.0.1:{port} to 192.0.2.1: "
            )),
            "{err}"
        );
    }
}
