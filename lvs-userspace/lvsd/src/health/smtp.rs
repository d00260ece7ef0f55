//! keepalived's SMTP_CHECK conversation (check_smtp.c): read the greeting
//! line and require status 220, send `HELO <helo>\r\n`, read a line and
//! require 250, send `QUIT\r\n`, and read one more line, whatever it says.
//!
//! A line is what arrives up to its `\n`; the `\r` before it stays, and
//! anything after it is dropped. Its status is keepalived's reading: three
//! digits at its start, followed by a space or nothing, so `220 ready\r`
//! is 220 while `220\r` and a multi-line `220-...` greeting are not (as in
//! keepalived). A line that fills keepalived's 512-byte buffer without a
//! `\n` is dropped and reading goes on, as keepalived wraps its buffer.

use std::net::IpAddr;

use tokio::{io::AsyncReadExt, net::TcpStream};

use super::probe::{connect, excerpt, send, ProbeFailure};
use lvs_state::model::Endpoint;

/// keepalived's SMTP_BUFF_MAX, less its terminating NUL.
const LINE_ROOM: usize = 511;

pub async fn check(addr: Endpoint, bind: Option<IpAddr>, helo: &str) -> Result<(), ProbeFailure> {
    let mut stream = connect(addr, bind).await?;
    expect(&mut stream, addr, "greeting", 220).await?;
    send(&mut stream, addr, format!("HELO {helo}\r\n").as_bytes()).await?;
    expect(&mut stream, addr, "reply to HELO", 250).await?;
    send(&mut stream, addr, b"QUIT\r\n").await?;
    line(&mut stream, addr, "reply to QUIT").await.map(drop)
}

/// Read a line and require `status` at its start.
async fn expect(
    stream: &mut TcpStream,
    addr: Endpoint,
    after: &'static str,
    status: u16,
) -> Result<(), ProbeFailure> {
    let text = line(stream, addr, after).await?;
    if self::status(&text) == Some(status) {
        return Ok(());
    }
    Err(ProbeFailure::SmtpReply {
        addr,
        after,
        expected: status,
        got: excerpt(&String::from_utf8_lossy(&text)),
    })
}

/// The next line, without its `\n`.
async fn line(
    stream: &mut TcpStream,
    addr: Endpoint,
    awaited: &'static str,
) -> Result<Vec<u8>, ProbeFailure> {
    let mut buf = Vec::with_capacity(LINE_ROOM);
    let mut chunk = [0; LINE_ROOM];
    loop {
        if buf.len() >= LINE_ROOM {
            buf.clear();
        }
        let room = LINE_ROOM - buf.len();
        let n = stream
            .read(&mut chunk[..room])
            .await
            .map_err(|source| ProbeFailure::Read { addr, source })?;
        if n == 0 {
            return Err(ProbeFailure::SmtpClosed { addr, awaited });
        }
        buf.extend_from_slice(&chunk[..n]);
        // keepalived's strchr: a NUL ends the text it searches.
        let text = buf.split(|&b| b == 0).next().unwrap_or_default();
        if let Some(end) = text.iter().position(|&b| b == b'\n') {
            buf.truncate(end);
            return Ok(buf);
        }
    }
}

/// keepalived's `smtp_get_status`: strtoul must stop after exactly three
/// characters, at the end of the line or a space.
fn status(line: &[u8]) -> Option<u16> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || line.get(3).is_some_and(|&b| b != b' ') {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, time::Duration};

    use tokio::{
        io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
        net::TcpListener,
        task::JoinHandle,
    };

    use super::*;
    use crate::health::probe::{probe, tests::target};
    use lvs_state::health::{Check, CheckKind, DEFAULT_SMTP_HELO};

    #[test]
    fn status_is_three_digits_then_a_space_or_nothing() {
        assert_eq!(status(b"220 mail.example.com ESMTP\r"), Some(220));
        assert_eq!(status(b"250"), Some(250));
        assert_eq!(status(b"220\r"), None);
        assert_eq!(status(b"220-first of several"), None);
        assert_eq!(status(b"2200 x"), None);
        assert_eq!(status(b" 220 x"), None);
        assert_eq!(status(b"22"), None);
    }

    /// An SMTP server for one conversation: greets with `banner` (none:
    /// it closes at once), answers the HELO line with `helo_reply` and QUIT
    /// with `quit_reply`, and returns the lines it read.
    async fn server(
        banner: &'static str,
        helo_reply: &'static str,
        quit_reply: &'static str,
    ) -> (u16, JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read);
            let mut seen = Vec::new();
            if banner.is_empty() {
                return seen;
            }
            write.write_all(banner.as_bytes()).await.unwrap();
            for reply in [helo_reply, quit_reply] {
                let mut line = String::new();
                if lines.read_line(&mut line).await.unwrap() == 0 {
                    break;
                }
                seen.push(line);
                write.write_all(reply.as_bytes()).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    fn smtp(helo: &str) -> Check {
        Check {
            timeout_ms: 1000,
            ..Check::new(CheckKind::Smtp { helo: helo.into() })
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_conversation_as_keepalived_holds_it() {
        let (port, seen) = server(
            "220 mail.example.com ESMTP\r\n",
            "250 mail.example.com\r\n",
            "221 2.0.0 Bye\r\n",
        )
        .await;
        let result = probe(&smtp(DEFAULT_SMTP_HELO), &target(port)).await;
        assert_eq!(result.unwrap(), None);
        assert_eq!(
            seen.await.unwrap(),
            ["HELO smtpchecker.keepalived.org\r\n", "QUIT\r\n"]
        );
        // The reply to QUIT is not judged.
        let (port, seen) = server("220 ready\r\n", "250 ok\r\n", "500 what\r\n").await;
        probe(&smtp("lb1.example.com"), &target(port))
            .await
            .unwrap();
        assert_eq!(seen.await.unwrap()[0], "HELO lb1.example.com\r\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn each_failure_names_the_step() {
        for (banner, helo_reply, quit_reply, expected) in [
            (
                "554 no service\r\n",
                "",
                "",
                "SMTP greeting from 127.0.0.1:PORT is not 220; got \"554 no service\\r\"",
            ),
            (
                "220-first line\r\n220 second\r\n",
                "",
                "",
                "SMTP greeting from 127.0.0.1:PORT is not 220; got \"220-first line\\r\"",
            ),
            (
                "220 ready\r\n",
                "501 bad HELO\r\n",
                "",
                "SMTP reply to HELO from 127.0.0.1:PORT is not 250; got \"501 bad HELO\\r\"",
            ),
            (
                "220 ready\r\n",
                "250 ok\r\n",
                "",
                "127.0.0.1:PORT closed the connection before the SMTP reply to QUIT",
            ),
            (
                "",
                "",
                "",
                "127.0.0.1:PORT closed the connection before the SMTP greeting",
            ),
        ] {
            let (port, _server) = server(banner, helo_reply, quit_reply).await;
            let err = probe(&smtp(DEFAULT_SMTP_HELO), &target(port))
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), expected.replace("PORT", &port.to_string()));
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_silent_server_times_out_and_a_closed_port_refuses() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut check = smtp(DEFAULT_SMTP_HELO);
        check.timeout_ms = 200;
        let err = probe(&check, &target(port)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no answer from 127.0.0.1:{port} within 200 ms")
        );
        drop(listener);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let err = probe(&check, &target(port)).await.unwrap_err();
        assert!(
            matches!(&err, ProbeFailure::Connect { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused),
            "{err}"
        );
    }
}
