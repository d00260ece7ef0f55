//! keepalived's DNS_CHECK (check_dns.c): one query over a connected UDP
//! socket, built as keepalived builds it: a random id, flags 0x0100 (only
//! RD, recursion desired), one question and no other record, the name as
//! labels (the root `.` is the single zero byte), the type, class IN.
//!
//! Replies shorter than a header, with another id, or without QR (not an
//! answer) are ignored, as keepalived ignores them, until the timeout. The
//! first answer decides: rcode 0 is success, any other a failure; what it
//! answers is not looked at. An error on the socket (an ICMP port
//! unreachable shows as "connection refused") is a failure at once.

use std::net::IpAddr;

use super::{
    probe::{random_u16, ProbeFailure},
    udp::connected,
};
use lvs_state::{
    health::{dns_name, DnsType},
    model::Endpoint,
};

/// keepalived's DNS_BUFFER_SIZE: a longer answer is cut, which does not
/// matter to a check of its header.
const BUFFER: usize = 768;
const HEADER: usize = 12;
const FLAG_QR: u16 = 0x8000;
const FLAG_RD: u16 = 0x0100;
const CLASS_IN: u16 = 1;

pub async fn check(
    addr: Endpoint,
    bind: Option<IpAddr>,
    query_type: DnsType,
    name: &str,
) -> Result<(), ProbeFailure> {
    let query = query(random_u16(), query_type, name)?;
    let socket = connected(addr, bind)?;
    socket
        .send(&query)
        .await
        .map_err(|source| ProbeFailure::Send { addr, source })?;
    let mut buf = [0; BUFFER];
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|source| ProbeFailure::Read { addr, source })?;
        let reply = &buf[..n];
        if n < HEADER || reply[..2] != query[..2] {
            continue;
        }
        let flags = u16::from_be_bytes([reply[2], reply[3]]);
        if flags & FLAG_QR == 0 {
            continue;
        }
        return match (flags & 0x000f) as u8 {
            0 => Ok(()),
            rcode => Err(ProbeFailure::DnsRcode { addr, rcode }),
        };
    }
}

/// The query keepalived's `dns_make_query` writes.
pub fn query(id: u16, query_type: DnsType, name: &str) -> Result<Vec<u8>, ProbeFailure> {
    let labels = dns_name(name).map_err(|e| ProbeFailure::Invalid(e.to_string()))?;
    let mut q = Vec::with_capacity(HEADER + name.len() + 6);
    for field in [id, FLAG_RD, 1, 0, 0, 0] {
        q.extend_from_slice(&field.to_be_bytes());
    }
    for label in labels {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&query_type.code().to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

/// RFC 1035 and 2136's names for an rcode.
pub fn rcode_name(rcode: u8) -> &'static str {
    match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => "unassigned",
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{Ipv4Addr, SocketAddr},
        time::Duration,
    };

    use tokio::{net::UdpSocket, task::JoinHandle};

    use super::*;
    use crate::health::probe::{probe, tests::target};
    use lvs_state::health::{Check, CheckKind, DEFAULT_DNS_NAME};

    #[test]
    fn queries_are_keepalived_s_bytes() {
        // The root: a single zero byte, whether named "." or not at all.
        let root = [
            0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1,
        ];
        assert_eq!(query(0x1234, DnsType::Soa, ".").unwrap(), root);
        assert_eq!(query(0x1234, DnsType::Soa, "").unwrap(), root);
        let mut named = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        named.extend_from_slice(b"\x07example\x03com\x00\x00\x1c\x00\x01");
        assert_eq!(query(0xabcd, DnsType::Aaaa, "example.com").unwrap(), named);
        assert_eq!(query(0xabcd, DnsType::Aaaa, "example.com.").unwrap(), named);
    }

    /// What a test server sends back for a datagram.
    type Answer = fn(&[u8]) -> Vec<u8>;

    /// keepalived's query for `SOA .`, after its random id.
    const SOA_ROOT: [u8; 15] = [0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1];

    /// A DNS server for one query: only if the query is keepalived's for
    /// `SOA .` does it send each of `replies`, built from the query.
    async fn server(replies: Vec<Answer>) -> (u16, JoinHandle<Vec<u8>>) {
        let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut buf = [0; 512];
            let (n, from): (usize, SocketAddr) = socket.recv_from(&mut buf).await.unwrap();
            let query = buf[..n].to_vec();
            if query.get(2..) == Some(&SOA_ROOT[..]) {
                for reply in replies {
                    socket.send_to(&reply(&query), from).await.unwrap();
                }
            }
            query
        });
        (port, task)
    }

    /// An answer to `query` with the given flags: the question echoed, no
    /// record.
    fn answer(query: &[u8], flags: u16) -> Vec<u8> {
        let mut a = query.to_vec();
        a[2..4].copy_from_slice(&flags.to_be_bytes());
        a
    }

    fn dns() -> Check {
        Check {
            timeout_ms: 300,
            ..Check::new(CheckKind::Dns {
                query_type: DnsType::DEFAULT,
                name: DEFAULT_DNS_NAME.into(),
            })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_with_rcode_0_succeeds() {
        let (port, asked) = server(vec![|q| answer(q, 0x8180)]).await;
        assert_eq!(probe(&dns(), &target(port)).await.unwrap(), None);
        let query = asked.await.unwrap();
        assert_eq!(query[2..], SOA_ROOT);
        // Another name and type: another query, which this server ignores.
        let (port, asked) = server(vec![|q| answer(q, 0x8180)]).await;
        let other = Check::new(CheckKind::Dns {
            query_type: DnsType::A,
            name: "www.example.com".into(),
        });
        let err = probe(
            &Check {
                timeout_ms: 300,
                ..other
            },
            &target(port),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ProbeFailure::Timeout { .. }), "{err}");
        let query = asked.await.unwrap();
        assert_eq!(query[2..12], SOA_ROOT[..10]);
        assert_eq!(
            &query[12..],
            b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn short_foreign_and_non_answers_are_skipped() {
        let (port, _server) = server(vec![
            |_| vec![0; 5],
            |q| {
                let mut other = answer(q, 0x8180);
                other[0] ^= 0xff;
                other
            },
            |q| answer(q, 0x0100),
            |q| answer(q, 0x8580),
        ])
        .await;
        probe(&dns(), &target(port)).await.unwrap();
        // Nothing but those: the timeout.
        let (port, _server) = server(vec![|_| vec![0; 5], |q| answer(q, 0x0100)]).await;
        let err = probe(&dns(), &target(port)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no answer from 127.0.0.1:{port} within 300 ms")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_error_rcode_fails() {
        let (port, _server) = server(vec![|q| answer(q, 0x8182)]).await;
        let err = probe(&dns(), &target(port)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "DNS answer from 127.0.0.1:{port} has rcode 2 (SERVFAIL), expected 0 (NOERROR)"
            )
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_closed_port_fails_at_once() {
        let closed = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let mut check = dns();
        check.timeout_ms = 5000;
        let started = std::time::Instant::now();
        let err = probe(&check, &target(port)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            format!("read from 127.0.0.1:{port}: Connection refused (os error 111)")
        );
    }
}
