//! One attempt of a checker, bounded by its timeout. Whether a run of
//! results takes a server up or down is decided elsewhere; this module only
//! says whether one attempt succeeded and, if not, what went wrong in a line
//! an operator can act on.
//!
//! * `tcp`: a connect within the timeout (keepalived's TCP_CHECK).
//! * `send_expect`: connect, write `send` as it is configured (in TOML, a
//!   basic string's escapes such as `"PING\r\n"` are how to get CRLF), then
//!   read until the reply contains the substring or matches the regex. The
//!   reply is read as lossy UTF-8, up to 64 KiB.
//! * `http`: keepalived's HTTP_GET request, byte for byte, with HTTP/1.0 so
//!   that the server closes the connection and sends no chunked body (which
//!   is therefore not decoded). The response is read to EOF, up to 1 MiB.
//! * `exec`: keepalived's MISC_CHECK: a program in its own process group,
//!   told who is being checked in its environment; on timeout the group gets
//!   SIGTERM, then SIGKILL 2 s later.

use std::{
    future::Future,
    io,
    os::unix::process::ExitStatusExt,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use md5::{Digest, Md5};
use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use regex::Regex;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
    time::timeout,
};

use lvs_state::health::{Check, CheckKind, Expect, HttpCheck};
use lvs_state::model::{Endpoint, Protocol, ServiceId};

/// A send/expect reply is read no further than this.
const MAX_REPLY: usize = 64 * 1024;
/// An HTTP response longer than this fails: a health page is small.
const MAX_RESPONSE: usize = 1024 * 1024;
/// How much of a reply a failure quotes.
const EXCERPT_CHARS: usize = 80;
/// keepalived's grace between SIGTERM and SIGKILL for a timed-out script.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Who is being checked: passed to exec checkers in the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub service: ServiceId,
    pub real: Endpoint,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeFailure {
    #[error("connect to {addr}: {source}")]
    Connect { addr: Endpoint, source: io::Error },
    #[error("send to {addr}: {source}")]
    Send { addr: Endpoint, source: io::Error },
    #[error("read from {addr}: {source}")]
    Read { addr: Endpoint, source: io::Error },
    #[error("no answer from {addr} within {timeout_ms} ms")]
    Timeout { addr: Endpoint, timeout_ms: u64 },
    #[error("reply from {addr} lacks {needle:?}; got {got}")]
    ReplyLacks {
        addr: Endpoint,
        needle: String,
        got: String,
    },
    #[error("reply from {addr} did not match regex {pattern:?}; got {got}")]
    ReplyMismatch {
        addr: Endpoint,
        pattern: String,
        got: String,
    },
    /// Validation refuses such a pattern; a check that skipped it lands here.
    #[error("invalid regex {pattern:?}: {message}")]
    Regex { pattern: String, message: String },
    #[error("HTTP response from {addr} exceeds {MAX_RESPONSE} bytes")]
    TooLarge { addr: Endpoint },
    #[error("malformed HTTP response from {addr}: {reason}")]
    Malformed { addr: Endpoint, reason: String },
    #[error("HTTP status {status} from {addr}, expected {expected}")]
    Status {
        addr: Endpoint,
        status: u16,
        expected: String,
    },
    #[error("body from {addr} lacks {needle:?}")]
    BodyLacks { addr: Endpoint, needle: String },
    #[error("body digest {digest} from {addr}, expected {expected}")]
    Digest {
        addr: Endpoint,
        digest: String,
        expected: String,
    },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("waiting for {program}: {source}")]
    Wait { program: String, source: io::Error },
    #[error("{program} exited with status {code}")]
    Exit { program: String, code: i32 },
    #[error("{program} killed by {signal}")]
    Signalled { program: String, signal: String },
    #[error("{program} killed by {signal} after the {timeout_ms} ms timeout")]
    ExecTimeout {
        program: String,
        signal: Signal,
        timeout_ms: u64,
    },
}

/// One attempt of `check` against `target`.
pub async fn probe(check: &Check, target: &Target) -> Result<(), ProbeFailure> {
    let addr = match check.connect {
        Some(Endpoint { addr, port: 0 }) => Endpoint {
            addr,
            port: target.real.port,
        },
        Some(connect) => connect,
        None => target.real,
    };
    let ms = check.timeout_ms;
    match &check.kind {
        CheckKind::Tcp => within(addr, ms, connect(addr)).await.map(drop),
        CheckKind::SendExpect { send, expect } => {
            within(addr, ms, send_expect(addr, send, expect)).await
        }
        CheckKind::Http(http) => within(addr, ms, http_get(addr, http)).await,
        // A program is not simply dropped on timeout: it is signalled.
        CheckKind::Exec { program, args } => exec(program, args, target, ms).await,
    }
}

async fn within<T>(
    addr: Endpoint,
    timeout_ms: u64,
    attempt: impl Future<Output = Result<T, ProbeFailure>>,
) -> Result<T, ProbeFailure> {
    timeout(Duration::from_millis(timeout_ms), attempt)
        .await
        .unwrap_or(Err(ProbeFailure::Timeout { addr, timeout_ms }))
}

async fn connect(addr: Endpoint) -> Result<TcpStream, ProbeFailure> {
    TcpStream::connect((addr.addr, addr.port))
        .await
        .map_err(|source| ProbeFailure::Connect { addr, source })
}

async fn send(stream: &mut TcpStream, addr: Endpoint, bytes: &[u8]) -> Result<(), ProbeFailure> {
    stream
        .write_all(bytes)
        .await
        .map_err(|source| ProbeFailure::Send { addr, source })
}

async fn send_expect(addr: Endpoint, payload: &str, expect: &Expect) -> Result<(), ProbeFailure> {
    // A substring is an escaped regex: one matching loop serves both.
    let pattern = match expect {
        Expect::Substring(needle) => regex::escape(needle),
        Expect::Regex(pattern) => pattern.clone(),
    };
    let regex = Regex::new(&pattern).map_err(|e| ProbeFailure::Regex {
        pattern,
        message: e.to_string(),
    })?;
    let mut stream = connect(addr).await?;
    send(&mut stream, addr, payload.as_bytes()).await?;
    let mut reply = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|source| ProbeFailure::Read { addr, source })?;
        reply.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&reply);
        if regex.is_match(&text) {
            return Ok(());
        }
        // Each pass either ends here or grows the reply towards the cap.
        if n == 0 || reply.len() >= MAX_REPLY {
            let got = excerpt(&text);
            return Err(match expect {
                Expect::Substring(needle) => ProbeFailure::ReplyLacks {
                    addr,
                    needle: needle.clone(),
                    got,
                },
                Expect::Regex(pattern) => ProbeFailure::ReplyMismatch {
                    addr,
                    pattern: pattern.clone(),
                    got,
                },
            });
        }
    }
}

async fn http_get(addr: Endpoint, http: &HttpCheck) -> Result<(), ProbeFailure> {
    let host = http.host.clone().unwrap_or_else(|| addr.to_string());
    let request = format!(
        "GET {} HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: {host}\r\n\r\n",
        http.path
    );
    let mut stream = connect(addr).await?;
    send(&mut stream, addr, request.as_bytes()).await?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut response)
        .await
        .map_err(|source| ProbeFailure::Read { addr, source })?;
    if response.len() > MAX_RESPONSE {
        return Err(ProbeFailure::TooLarge { addr });
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let malformed = |reason: String| ProbeFailure::Malformed { addr, reason };
    let body = match head.parse(&response) {
        Ok(httparse::Status::Complete(len)) => &response[len..],
        Ok(httparse::Status::Partial) => return Err(malformed("it ends inside its head".into())),
        Err(e) => return Err(malformed(e.to_string())),
    };
    // A complete parse always sets the code.
    let status = head.code.unwrap_or_default();
    let accepted = match http.status.as_slice() {
        [] => &[HttpCheck::DEFAULT_STATUS][..],
        ranges => ranges,
    };
    if !accepted.iter().any(|&(lo, hi)| (lo..=hi).contains(&status)) {
        return Err(ProbeFailure::Status {
            addr,
            status,
            expected: ranges(accepted),
        });
    }
    if let Some(needle) = &http.body {
        if !String::from_utf8_lossy(body).contains(needle.as_str()) {
            return Err(ProbeFailure::BodyLacks {
                addr,
                needle: needle.clone(),
            });
        }
    }
    if let Some(expected) = &http.digest {
        let digest = format!("{:x}", Md5::digest(body));
        if !digest.eq_ignore_ascii_case(expected) {
            return Err(ProbeFailure::Digest {
                addr,
                digest,
                expected: expected.clone(),
            });
        }
    }
    Ok(())
}

/// `200-299, 404` as an operator would write it.
fn ranges(accepted: &[(u16, u16)]) -> String {
    let each: Vec<String> = accepted
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    each.join(", ")
}

/// The start of a reply, quoted and escaped so that a failure stays on one
/// line.
fn excerpt(reply: &str) -> String {
    let start: String = reply.chars().take(EXCERPT_CHARS).collect();
    match reply.chars().nth(EXCERPT_CHARS) {
        Some(_) => format!("{start:?}..."),
        None => format!("{start:?}"),
    }
}

async fn exec(
    program: &str,
    args: &[String],
    target: &Target,
    timeout_ms: u64,
) -> Result<(), ProbeFailure> {
    let protocol = match target.service.protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    let mut child = Command::new(program)
        .args(args)
        .env("LVS_REAL_ADDR", target.real.addr.to_string())
        .env("LVS_REAL_PORT", target.real.port.to_string())
        .env("LVS_VIRTUAL_ADDR", target.service.vip.addr.to_string())
        .env("LVS_VIRTUAL_PORT", target.service.vip.port.to_string())
        .env("LVS_PROTOCOL", protocol)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, so that a timeout reaches whatever it started too.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ProbeFailure::Spawn {
            program: program.to_string(),
            source,
        })?;
    let wait_failed = |source| ProbeFailure::Wait {
        program: program.to_string(),
        source,
    };
    let status = match timeout(Duration::from_millis(timeout_ms), child.wait()).await {
        Ok(status) => status.map_err(wait_failed)?,
        Err(_) => {
            let signal = stop(&mut child).await.map_err(wait_failed)?;
            return Err(ProbeFailure::ExecTimeout {
                program: program.to_string(),
                signal,
                timeout_ms,
            });
        }
    };
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => Err(ProbeFailure::Exit {
            program: program.to_string(),
            code,
        }),
        // On Unix a status without an exit code is a signal's.
        None => Err(ProbeFailure::Signalled {
            program: program.to_string(),
            signal: signal_name(status),
        }),
    }
}

/// SIGTERM to the group, SIGKILL if the program outlives the grace, then
/// reap it. Returns the last signal sent.
async fn stop(child: &mut Child) -> io::Result<Signal> {
    // The group's id is the child's pid; `id` is `None` only once the child
    // has been reaped, and then its pid may belong to someone else.
    let signal_group = |child: &Child, signal| {
        if let Some(pid) = child.id() {
            // ESRCH: the whole group has already gone.
            let _ = killpg(Pid::from_raw(pid as i32), signal);
        }
    };
    signal_group(child, Signal::SIGTERM);
    if let Ok(reaped) = timeout(KILL_GRACE, child.wait()).await {
        return reaped.map(|_| Signal::SIGTERM);
    }
    signal_group(child, Signal::SIGKILL);
    child.wait().await?;
    Ok(Signal::SIGKILL)
}

fn signal_name(status: ExitStatus) -> String {
    match status.signal().map(Signal::try_from) {
        Some(Ok(signal)) => signal.to_string(),
        Some(Err(_)) | None => format!("{status}"),
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, time::Instant};

    use tokio::{net::TcpListener, task::JoinHandle};

    use super::*;

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

    fn target(port: u16) -> Target {
        Target {
            service: ServiceId {
                protocol: Protocol::Tcp,
                vip: Endpoint {
                    addr: Ipv4Addr::new(198, 18, 0, 10).into(),
                    port: 80,
                },
            },
            real: Endpoint {
                addr: std::net::IpAddr::V4(LOCALHOST),
                port,
            },
        }
    }

    fn check(kind: CheckKind, timeout_ms: u64) -> Check {
        Check {
            timeout_ms,
            ..Check::new(kind)
        }
    }

    /// A one-connection server on 127.0.0.1: reads the request up to and
    /// including `until` (or EOF), writes `reply`, closes, and returns
    /// what it read.
    async fn serve(until: &'static [u8], reply: Vec<u8>) -> (u16, JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut chunk = [0; 1024];
            while !request.windows(until.len()).any(|w| w == until) && request.len() < 65536 {
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&chunk[..n]);
            }
            stream.write_all(&reply).await.unwrap();
            request
        });
        (port, task)
    }

    /// A port with nothing listening on it.
    async fn closed_port() -> u16 {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        listener.local_addr().unwrap().port()
    }

    fn http(path: &str) -> HttpCheck {
        HttpCheck {
            path: path.into(),
            status: vec![],
            body: None,
            digest: None,
            host: None,
        }
    }

    fn ok_response(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_connect_succeeds() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        probe(&check(CheckKind::Tcp, 1000), &target(port))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tcp_refused_names_the_address() {
        let port = closed_port().await;
        let err = probe(&check(CheckKind::Tcp, 1000), &target(port))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ProbeFailure::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn connect_override_with_port_zero_keeps_the_real_port() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = check(CheckKind::Tcp, 1000);
        c.connect = Some(Endpoint {
            addr: std::net::IpAddr::V4(LOCALHOST),
            port: 0,
        });
        let mut t = target(port);
        // Never contacted: the override replaces it.
        t.real.addr = Ipv4Addr::new(198, 18, 11, 2).into();
        probe(&c, &t).await.unwrap();
    }

    fn send_expect(expect: Expect) -> CheckKind {
        CheckKind::SendExpect {
            send: "PING\r\n".into(),
            expect,
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn send_expect_substring_matches() {
        let (port, server) = serve(b"\r\n", b"+PONG\r\n".to_vec()).await;
        let c = check(send_expect(Expect::Substring("PONG".into())), 1000);
        probe(&c, &target(port)).await.unwrap();
        assert_eq!(server.await.unwrap(), b"PING\r\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn send_expect_regex_matches() {
        let (port, _server) = serve(b"\r\n", b"+PONG 42\r\n".to_vec()).await;
        let c = check(send_expect(Expect::Regex(r"^\+PONG \d+".into())), 1000);
        probe(&c, &target(port)).await.unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn send_expect_mismatch_quotes_the_reply() {
        let (port, _server) = serve(b"\r\n", b"-ERR busy\r\n".to_vec()).await;
        let c = check(send_expect(Expect::Regex("^\\+PONG".into())), 1000);
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reply from 127.0.0.1:{port} did not match regex \"^\\\\+PONG\"; got \"-ERR busy\\r\\n\""
            )
        );
        let (port, _server) = serve(b"\r\n", vec![b'x'; 200]).await;
        let c = check(send_expect(Expect::Substring("PONG".into())), 1000);
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "reply from 127.0.0.1:{port} lacks \"PONG\"; got \"{}\"...",
                "x".repeat(80)
            )
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn silent_server_times_out() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepted by the kernel's backlog, and never answered.
        let c = check(send_expect(Expect::Substring("PONG".into())), 200);
        let start = Instant::now();
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert_eq!(
            err.to_string(),
            format!("no answer from 127.0.0.1:{port} within 200 ms")
        );
        drop(listener);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_sends_keepalived_request_with_default_host() {
        let (port, server) = serve(b"\r\n\r\n", ok_response("OK\n")).await;
        probe(
            &check(CheckKind::Http(http("/health")), 1000),
            &target(port),
        )
        .await
        .unwrap();
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert_eq!(
            request,
            format!(
                "GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{port}\r\n\r\n"
            )
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_sends_the_configured_host() {
        let (port, server) = serve(b"\r\n\r\n", ok_response("OK\n")).await;
        let mut h = http("/");
        h.host = Some("www.example.com".into());
        probe(&check(CheckKind::Http(h), 1000), &target(port))
            .await
            .unwrap();
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(
            request.contains("\r\nHost: www.example.com\r\n"),
            "{request:?}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_status_outside_the_ranges_fails() {
        let reply = b"HTTP/1.0 503 Service Unavailable\r\n\r\n".to_vec();
        let (port, _server) = serve(b"\r\n\r\n", reply).await;
        let err = probe(&check(CheckKind::Http(http("/")), 1000), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("HTTP status 503 from 127.0.0.1:{port}, expected 200-299")
        );
        let reply = b"HTTP/1.0 503 Service Unavailable\r\n\r\n".to_vec();
        let (port, _server) = serve(b"\r\n\r\n", reply).await;
        let mut h = http("/");
        h.status = vec![(200, 200), (500, 503)];
        probe(&check(CheckKind::Http(h), 1000), &target(port))
            .await
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_body_must_contain_the_text() {
        let mut h = http("/");
        h.body = Some("OK".into());
        let (port, _server) = serve(b"\r\n\r\n", ok_response("all OK\n")).await;
        probe(&check(CheckKind::Http(h.clone()), 1000), &target(port))
            .await
            .unwrap();
        let (port, _server) = serve(b"\r\n\r\n", ok_response("degraded\n")).await;
        let err = probe(&check(CheckKind::Http(h), 1000), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("body from 127.0.0.1:{port} lacks \"OK\"")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_digest_is_the_body_md5() {
        // `printf 'OK\n' | md5sum`
        let md5_ok = "d36f8f9425c4a8000ad9c4a97185aca5";
        let mut h = http("/");
        h.digest = Some(md5_ok.to_ascii_uppercase());
        let (port, _server) = serve(b"\r\n\r\n", ok_response("OK\n")).await;
        probe(&check(CheckKind::Http(h.clone()), 1000), &target(port))
            .await
            .unwrap();
        let (port, _server) = serve(b"\r\n\r\n", ok_response("KO\n")).await;
        let err = probe(&check(CheckKind::Http(h), 1000), &target(port))
            .await
            .unwrap_err();
        // `printf 'KO\n' | md5sum`
        assert_eq!(
            err.to_string(),
            format!(
                "body digest 7cb826770d716977fdc946ff9d3dfc69 from 127.0.0.1:{port}, expected {}",
                md5_ok.to_ascii_uppercase()
            )
        );
    }

    fn exec(program: &str, args: &[&str]) -> CheckKind {
        CheckKind::Exec {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exec_status_decides() {
        probe(&check(exec("/bin/true", &[]), 5000), &target(8080))
            .await
            .unwrap();
        let err = probe(&check(exec("/bin/false", &[]), 5000), &target(8080))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "/bin/false exited with status 1");
        let err = probe(
            &check(exec("/bin/sh", &["-c", "kill -TERM $$"]), 5000),
            &target(8080),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "/bin/sh killed by SIGTERM");
        let err = probe(&check(exec("/nonexistent/check", &[]), 5000), &target(8080))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot run /nonexistent/check: "),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exec_gets_the_target_in_its_environment() {
        let script = r#"test "$LVS_REAL_ADDR" = 127.0.0.1 && test "$LVS_REAL_PORT" = 8080 &&
            test "$LVS_VIRTUAL_ADDR" = 198.18.0.10 && test "$LVS_VIRTUAL_PORT" = 80 &&
            test "$LVS_PROTOCOL" = tcp"#;
        probe(
            &check(exec("/bin/sh", &["-c", script]), 5000),
            &target(8080),
        )
        .await
        .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exec_timeout_terminates_the_program() {
        let start = Instant::now();
        let err = probe(&check(exec("sleep", &["30"]), 200), &target(8080))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(3));
        assert_eq!(
            err.to_string(),
            "sleep killed by SIGTERM after the 200 ms timeout"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn exec_ignoring_sigterm_is_killed_with_its_group() {
        // The ignored SIGTERM is inherited by `sleep`, so only SIGKILL to
        // the whole group ends both.
        let start = Instant::now();
        let script = "trap '' TERM; sleep 30; exit 0";
        let err = probe(&check(exec("/bin/sh", &["-c", script]), 200), &target(8080))
            .await
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "/bin/sh killed by SIGKILL after the 200 ms timeout"
        );
    }
}
