//! One attempt of a checker, bounded by its timeout. Whether a run of
//! results takes a server up or down is decided elsewhere; this module only
//! says whether one attempt succeeded and, if not, what went wrong in a line
//! an operator can act on. Each follows keepalived's checker of the same
//! kind byte for byte (keepalived/check/check_*.c).
//!
//! * `tcp`: a connect within the timeout (TCP_CHECK).
//! * `send_expect`: connect, write `send` as it is configured (in TOML, a
//!   basic string's escapes such as `"PING\r\n"` are how to get CRLF), then
//!   read until the reply contains the substring or matches the regex. The
//!   reply is read as lossy UTF-8, up to 64 KiB.
//! * `http`: HTTP_GET's request, byte for byte, in the `version` asked (so
//!   that the server closes the connection; a chunked body is therefore not
//!   decoded), over TLS with `tls` (SSL_GET, see `tls`). The response is
//!   read to EOF, up to 1 MiB.
//! * `smtp`, `dns`, `udp`, `ping`: see their modules.
//! * `exec`: MISC_CHECK: a program in its own process group, told who is
//!   being checked in its environment; on timeout the group gets SIGTERM,
//!   then SIGKILL 2 s later. With `dynamic`, exit 2 to 255 is success and
//!   sets the weight to the status minus 2 (`Shift::To`).
//!
//! `bind` sets the source address of the socket of every kind but `exec`.

use std::{
    future::Future,
    io,
    net::{IpAddr, SocketAddr},
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
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    process::{Child, Command},
    time::timeout,
};

use super::{condition::Shift, dns, ping, smtp, tls, udp};
use lvs_state::health::{Check, CheckKind, Expect, HttpCheck, HttpVersion};
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
    #[error("binding the probe of {addr} to {bind}: {source}")]
    Bind {
        addr: Endpoint,
        bind: IpAddr,
        source: io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Tls { addr: Endpoint, source: io::Error },
    #[error("body from {addr} does not match regex {pattern:?}")]
    BodyMismatch { addr: Endpoint, pattern: String },
    #[error("SMTP {after} from {addr} is not {expected}; got {got}")]
    SmtpReply {
        addr: Endpoint,
        after: &'static str,
        expected: u16,
        got: String,
    },
    #[error("{addr} closed the connection before the SMTP {awaited}")]
    SmtpClosed {
        addr: Endpoint,
        awaited: &'static str,
    },
    #[error("DNS answer from {addr} has rcode {rcode} ({}), expected 0 (NOERROR)", dns::rcode_name(*rcode))]
    DnsRcode { addr: Endpoint, rcode: u8 },
    #[error("ICMP {what} for {addr}")]
    Unreachable { addr: Endpoint, what: String },
    #[error("no reply from {addr} within {timeout_ms} ms (require_reply)")]
    NoReply { addr: Endpoint, timeout_ms: u64 },
    #[error("reply from {addr} {reason}; got {got}")]
    UdpReply {
        addr: Endpoint,
        reason: String,
        got: String,
    },
    #[error("opening a raw {protocol} socket (ping checks need CAP_NET_RAW): {source}")]
    RawSocket {
        protocol: &'static str,
        source: io::Error,
    },
    #[error("ping {addr}: {source}")]
    Ping { addr: IpAddr, source: io::Error },
    #[error("no echo reply from {addr} within {timeout_ms} ms")]
    NoEcho { addr: IpAddr, timeout_ms: u64 },
    /// Validation refuses what this says; a check that skipped it lands
    /// here.
    #[error("{0}")]
    Invalid(String),
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

/// One attempt of `check` against `target`: on success, how the checker
/// moves the server's weight, if it does (a dynamic exec). A file check is
/// no attempt: `supervisor` watches its file.
pub async fn probe(check: &Check, target: &Target) -> Result<Option<Shift>, ProbeFailure> {
    let addr = match check.connect {
        Some(Endpoint { addr, port: 0 }) => Endpoint {
            addr,
            port: target.real.port,
        },
        Some(connect) => connect,
        None => target.real,
    };
    let ms = check.timeout_ms;
    let bind = check.bind;
    let done = match &check.kind {
        CheckKind::Tcp => within(addr, ms, connect(addr, bind)).await.map(drop),
        CheckKind::SendExpect { send, expect } => {
            within(addr, ms, send_expect(addr, bind, send, expect)).await
        }
        CheckKind::Http(http) => within(addr, ms, http_get(addr, bind, http)).await,
        CheckKind::Smtp { helo } => within(addr, ms, smtp::check(addr, bind, helo)).await,
        CheckKind::Dns { query_type, name } => {
            within(addr, ms, dns::check(addr, bind, *query_type, name)).await
        }
        // Silence is success unless a reply is required: UDP keeps time.
        CheckKind::Udp(spec) => udp::check(addr, bind, spec, ms).await,
        CheckKind::Ping => ping::check(addr.addr, bind, ms).await,
        // A program is not simply dropped on timeout: it is signalled.
        CheckKind::Exec {
            program,
            args,
            dynamic,
        } => return exec(program, args, *dynamic, target, ms).await,
        CheckKind::File(_) => unreachable!("file checks are watched, not probed"),
    };
    done.map(|()| None)
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

/// A TCP connection to `addr`, from `bind` if given (keepalived's
/// `tcp_bind_connect`).
pub(super) async fn connect(
    addr: Endpoint,
    bind: Option<IpAddr>,
) -> Result<TcpStream, ProbeFailure> {
    let connect_failed = |source| ProbeFailure::Connect { addr, source };
    let socket = match addr.addr {
        IpAddr::V4(_) => TcpSocket::new_v4(),
        IpAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(connect_failed)?;
    if let Some(bind) = bind {
        socket
            .bind(SocketAddr::new(bind, 0))
            .map_err(|source| ProbeFailure::Bind { addr, bind, source })?;
    }
    socket
        .connect(SocketAddr::new(addr.addr, addr.port))
        .await
        .map_err(connect_failed)
}

pub(super) async fn send(
    stream: &mut (impl AsyncWrite + Unpin),
    addr: Endpoint,
    bytes: &[u8],
) -> Result<(), ProbeFailure> {
    stream
        .write_all(bytes)
        .await
        .map_err(|source| ProbeFailure::Send { addr, source })
}

async fn send_expect(
    addr: Endpoint,
    bind: Option<IpAddr>,
    payload: &str,
    expect: &Expect,
) -> Result<(), ProbeFailure> {
    // A substring is an escaped regex: one matching loop serves both.
    let pattern = match expect {
        Expect::Substring(needle) => regex::escape(needle),
        Expect::Regex(pattern) => pattern.clone(),
    };
    let regex = Regex::new(&pattern).map_err(|e| ProbeFailure::Regex {
        pattern,
        message: e.to_string(),
    })?;
    let mut stream = connect(addr, bind).await?;
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

/// keepalived's request template: HTTP/1.0, or 1.1, with `Connection:
/// close` for 1.0C and 1.1; the Host is the connect address and port
/// (`[v6]:port`) unless configured.
fn http_request(addr: Endpoint, http: &HttpCheck) -> String {
    let host = http.host.clone().unwrap_or_else(|| addr.to_string());
    let (minor, close) = match http.version {
        HttpVersion::Http10 => (0, ""),
        HttpVersion::Http10Close => (0, "Connection: close\r\n"),
        HttpVersion::Http11 => (1, "Connection: close\r\n"),
    };
    format!(
        "GET {} HTTP/1.{minor}\r\nUser-Agent: KeepAliveClient\r\n{close}Host: {host}\r\n\r\n",
        http.path
    )
}

async fn http_get(
    addr: Endpoint,
    bind: Option<IpAddr>,
    http: &HttpCheck,
) -> Result<(), ProbeFailure> {
    let request = http_request(addr, http);
    let stream = connect(addr, bind).await?;
    let response = if http.tls {
        let mut stream = tls::handshake(stream, addr, http.sni.as_deref()).await?;
        exchange(&mut stream, addr, &request, true).await?
    } else {
        let mut stream = stream;
        exchange(&mut stream, addr, &request, false).await?
    };
    judge(addr, http, &response)
}

/// Send the request and read the response to EOF. Over TLS a close
/// without close_notify ends the response too: keepalived (SSL_read's
/// SSL_ERROR_SYSCALL) judges what came.
async fn exchange(
    stream: &mut (impl AsyncRead + AsyncWrite + Unpin),
    addr: Endpoint,
    request: &str,
    tls: bool,
) -> Result<Vec<u8>, ProbeFailure> {
    send(stream, addr, request.as_bytes()).await?;
    let mut response = Vec::new();
    let read = stream
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut response)
        .await;
    match read {
        Err(e) if tls && e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(source) => return Err(ProbeFailure::Read { addr, source }),
        Ok(_) => {}
    }
    if response.len() > MAX_RESPONSE {
        return Err(ProbeFailure::TooLarge { addr });
    }
    Ok(response)
}

fn judge(addr: Endpoint, http: &HttpCheck, response: &[u8]) -> Result<(), ProbeFailure> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut headers);
    let malformed = |reason: String| ProbeFailure::Malformed { addr, reason };
    let body = match head.parse(response) {
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
    if let Some(pattern) = &http.body_regex {
        let regex = regex::bytes::Regex::new(pattern).map_err(|e| ProbeFailure::Regex {
            pattern: pattern.clone(),
            message: e.to_string(),
        })?;
        if !regex.is_match(body) {
            return Err(ProbeFailure::BodyMismatch {
                addr,
                pattern: pattern.clone(),
            });
        }
    }
    Ok(())
}

/// A fresh random number, for a DNS id or an echo identifier (the
/// standard library's hasher keys are random per process and per hasher).
pub(super) fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish() as u16
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
pub(super) fn excerpt(reply: &str) -> String {
    let start: String = reply.chars().take(EXCERPT_CHARS).collect();
    match reply.chars().nth(EXCERPT_CHARS) {
        Some(_) => format!("{start:?}..."),
        None => format!("{start:?}"),
    }
}

async fn exec(
    program: &str,
    args: &[String],
    dynamic: bool,
    target: &Target,
    timeout_ms: u64,
) -> Result<Option<Shift>, ProbeFailure> {
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
        Some(0) => Ok(None),
        // misc_dynamic: the weight becomes the status minus 2.
        Some(code @ 2..=255) if dynamic => Ok(Some(Shift::To(code as u32 - 2))),
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
pub(crate) mod tests {
    use std::{net::Ipv4Addr, time::Instant};

    use tokio::{net::TcpListener, task::JoinHandle};

    use super::*;

    const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

    pub(crate) fn target(port: u16) -> Target {
        Target {
            service: ServiceId {
                protocol: Protocol::Tcp,
                vip: Endpoint {
                    addr: Ipv4Addr::new(198, 18, 0, 10).into(),
                    port: 80,
                },
            },
            real: Endpoint {
                addr: IpAddr::V4(LOCALHOST),
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
            status: vec![],
            ..HttpCheck::new(path)
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
            addr: IpAddr::V4(LOCALHOST),
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
            dynamic: false,
        }
    }

    /// keepalived's misc_dynamic: 0 up as configured, 1 down, 2..=255 up
    /// with the weight set to the status minus 2.
    #[tokio::test(flavor = "current_thread")]
    async fn a_dynamic_exec_sets_the_weight() {
        let dynamic = |code: i32| CheckKind::Exec {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), format!("exit {code}")],
            dynamic: true,
        };
        let run = |code| probe_at(check(dynamic(code), 5000), 8080);
        assert_eq!(run(0).await.unwrap(), None);
        assert_eq!(run(2).await.unwrap(), Some(Shift::To(0)));
        assert_eq!(run(12).await.unwrap(), Some(Shift::To(10)));
        assert_eq!(run(255).await.unwrap(), Some(Shift::To(253)));
        assert_eq!(
            run(1).await.unwrap_err().to_string(),
            "/bin/sh exited with status 1"
        );
        // Without misc_dynamic, any status but 0 fails.
        let err = probe(
            &check(exec("/bin/sh", &["-c", "exit 12"]), 5000),
            &target(8080),
        )
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "/bin/sh exited with status 12");
    }

    async fn probe_at(check: Check, port: u16) -> Result<Option<Shift>, ProbeFailure> {
        probe(&check, &target(port)).await
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_versions_send_keepalived_s_request_lines() {
        for (version, head) in [
            (
                HttpVersion::Http10,
                "GET /v HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\n",
            ),
            (
                HttpVersion::Http10Close,
                "GET /v HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n",
            ),
            (
                HttpVersion::Http11,
                "GET /v HTTP/1.1\r\nUser-Agent: KeepAliveClient\r\nConnection: close\r\n",
            ),
        ] {
            let (port, server) = serve(b"\r\n\r\n", ok_response("OK\n")).await;
            let mut h = http("/v");
            h.version = version;
            probe(&check(CheckKind::Http(h), 1000), &target(port))
                .await
                .unwrap();
            let request = String::from_utf8(server.await.unwrap()).unwrap();
            assert_eq!(request, format!("{head}Host: 127.0.0.1:{port}\r\n\r\n"));
        }
        // An IPv6 address is bracketed in the Host header.
        let request = http_request("[::1]:8080".parse().unwrap(), &http("/"));
        assert!(request.ends_with("Host: [::1]:8080\r\n\r\n"), "{request:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn http_body_must_match_the_regex() {
        let mut h = http("/");
        h.body_regex = Some(r"^status: (ok|degraded)$".into());
        let (port, _server) = serve(b"\r\n\r\n", ok_response("status: ok")).await;
        probe(&check(CheckKind::Http(h.clone()), 1000), &target(port))
            .await
            .unwrap();
        let (port, _server) = serve(b"\r\n\r\n", ok_response("status: down")).await;
        let err = probe(&check(CheckKind::Http(h), 1000), &target(port))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("body from 127.0.0.1:{port} does not match regex \"^status: (ok|degraded)$\"")
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bind_sets_the_source_of_a_connection() {
        let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = check(CheckKind::Tcp, 1000);
        c.bind = Some(Ipv4Addr::new(127, 0, 0, 3).into());
        probe(&c, &target(port)).await.unwrap();
        let (_, peer) = listener.accept().await.unwrap();
        assert_eq!(peer.ip(), Ipv4Addr::new(127, 0, 0, 3));
        c.bind = Some(Ipv4Addr::new(192, 0, 2, 1).into());
        let err = probe(&c, &target(port)).await.unwrap_err();
        assert!(
            matches!(&err, ProbeFailure::Bind { source, .. } if source.kind() == io::ErrorKind::AddrNotAvailable),
            "{err}"
        );
    }

    mod ssl_get {
        use std::sync::Arc;

        use rustls::{
            pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer},
            ServerConfig,
        };
        use tokio_rustls::TlsAcceptor;

        use super::*;

        /// What the TLS server saw: the SNI and the request.
        type Seen = (Option<String>, String);

        /// A TLS server for one request with a certificate made for the
        /// test (self-signed, for a name the check never asks for). It
        /// answers `reply`, then closes with close_notify if `notify`.
        async fn tls_server(reply: Vec<u8>, notify: bool) -> (u16, JoinHandle<Seen>) {
            let certified = rcgen::generate_simple_self_signed(vec!["server.test".into()]).unwrap();
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
            #[allow(deprecated)]
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![certified.cert.der().clone()], key)
                .unwrap();
            let acceptor = TlsAcceptor::from(Arc::new(config));
            let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let task = tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                let sni = tls.get_ref().1.server_name().map(String::from);
                let mut request = Vec::new();
                let mut chunk = [0; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = tls.read(&mut chunk).await.unwrap();
                    assert_ne!(n, 0, "the request ends");
                    request.extend_from_slice(&chunk[..n]);
                }
                tls.write_all(&reply).await.unwrap();
                if notify {
                    tls.shutdown().await.unwrap();
                } else {
                    tls.flush().await.unwrap();
                }
                (sni, String::from_utf8(request).unwrap())
            });
            (port, task)
        }

        fn ssl_get(sni: Option<&str>) -> HttpCheck {
            HttpCheck {
                tls: true,
                sni: sni.map(String::from),
                ..http("/health")
            }
        }

        #[tokio::test(flavor = "current_thread")]
        async fn any_certificate_and_no_sni_by_default() {
            let (port, server) = tls_server(ok_response("OK\n"), true).await;
            probe(&check(CheckKind::Http(ssl_get(None)), 2000), &target(port))
                .await
                .unwrap();
            let (sni, request) = server.await.unwrap();
            assert_eq!(sni, None);
            assert_eq!(
                request,
                format!("GET /health HTTP/1.0\r\nUser-Agent: KeepAliveClient\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            );
        }

        #[tokio::test(flavor = "current_thread")]
        async fn the_configured_sni_is_sent() {
            let (port, server) = tls_server(ok_response("OK\n"), true).await;
            let mut h = ssl_get(Some("www.example.com"));
            h.version = HttpVersion::Http11;
            h.host = Some("www.example.com".into());
            probe(&check(CheckKind::Http(h), 2000), &target(port))
                .await
                .unwrap();
            let (sni, request) = server.await.unwrap();
            assert_eq!(sni.as_deref(), Some("www.example.com"));
            assert!(
                request.starts_with("GET /health HTTP/1.1\r\n"),
                "{request:?}"
            );
        }

        /// keepalived judges what came when the server closes without
        /// close_notify; the status and body still decide.
        #[tokio::test(flavor = "current_thread")]
        async fn a_close_without_notify_ends_the_response() {
            let (port, _server) = tls_server(ok_response("OK\n"), false).await;
            let mut h = ssl_get(None);
            h.body_regex = Some("^OK".into());
            probe(&check(CheckKind::Http(h.clone()), 2000), &target(port))
                .await
                .unwrap();
            let reply = b"HTTP/1.0 503 Unavailable\r\n\r\n".to_vec();
            let (port, _server) = tls_server(reply, false).await;
            let err = probe(&check(CheckKind::Http(h), 2000), &target(port))
                .await
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("HTTP status 503 from 127.0.0.1:{port}, expected 200-299")
            );
        }

        #[tokio::test(flavor = "current_thread")]
        async fn a_plain_server_fails_the_handshake() {
            // It answers the ClientHello with plain HTTP.
            let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let _server = tokio::spawn(async move {
                let (mut stream, _) = listener.accept().await.unwrap();
                stream.write_all(&ok_response("OK\n")).await.unwrap();
                let _ = stream.read(&mut [0; 1024]).await;
            });
            let err = probe(&check(CheckKind::Http(ssl_get(None)), 2000), &target(port))
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("TLS handshake with 127.0.0.1:{port}: ")),
                "{err}"
            );
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
