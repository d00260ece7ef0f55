//! The load-feedback agent: a small TCP service on (or beside) a real
//! server that says how much work the server wants, modelled on HAProxy's
//! `agent-check`.
//!
//! lvsd connects to the agent (`addr`, default the real server's address,
//! and `port`), writes `send` if one is configured, and reads one line: up
//! to `\n` (a `\r` before it is dropped) or to EOF, at most 512 bytes, all
//! within `timeout_ms`. The line holds words separated by commas, spaces or
//! tabs, in any case:
//!
//! * `N%`: the weight as an integer percentage of the configured one,
//!   0 to 256 (HAProxy's range; more is an error);
//! * `up` or `ready`: the server takes new connections;
//! * `drain`: weight 0, so existing connections continue (quiescent);
//! * `down`, `fail`, `stopped` or `maint`: the server is out.
//!
//! `#` starts a free-text description, which is ignored. When several
//! states (or percentages) appear, the last wins; a percentage alone leaves
//! the state as it is. Unlike HAProxy, which skips words it does not know
//! (such as `maxconn:N`), an unknown word is an error that names it, so that
//! a misspelt `dwon` is not silently taken as no change. A line with no word
//! at all is an error too.

use std::{io, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::timeout,
};

pub use super::condition::AgentState;
use lvs_state::health::AgentCheck;
use lvs_state::model::Endpoint;

/// HAProxy reads no more than this of an agent's reply.
const MAX_LINE: usize = 512;

/// What one reply asked for; `None` leaves that part as it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentReport {
    pub percent: Option<u32>,
    pub state: Option<AgentState>,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent {agent}: {source}")]
    Connect { agent: Endpoint, source: io::Error },
    #[error("agent {agent}: sending {send:?}: {source}")]
    Send {
        agent: Endpoint,
        send: String,
        source: io::Error,
    },
    #[error("agent {agent}: reading the reply: {source}")]
    Read { agent: Endpoint, source: io::Error },
    #[error("agent {agent}: no reply within {timeout_ms} ms")]
    Timeout { agent: Endpoint, timeout_ms: u64 },
    #[error("agent {agent}: reply longer than {MAX_LINE} bytes")]
    TooLong { agent: Endpoint },
    #[error("agent {agent}: {source}")]
    Reply { agent: Endpoint, source: ReplyError },
}

/// What is wrong with a reply line, whoever sent it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplyError {
    #[error("no weight or state in {line:?}")]
    Empty { line: String },
    #[error("unknown word {word:?} in {line:?}")]
    UnknownWord { word: String, line: String },
    #[error("weight {word} is not an integer percentage, in {line:?}")]
    Percent { word: String, line: String },
    #[error("weight {word} out of range 0..={}", AgentCheck::MAX_PERCENT)]
    PercentRange { word: String },
}

/// One reply line; anything from a `\r` or `\n` on is ignored.
pub fn parse(reply: &str) -> Result<AgentReport, ReplyError> {
    let line = reply.find(['\r', '\n']).map_or(reply, |end| &reply[..end]);
    let words = line.split_once('#').map_or(line, |(words, _)| words);
    let mut report = AgentReport::default();
    for word in words.split([',', ' ', '\t']).filter(|w| !w.is_empty()) {
        let lower = word.to_ascii_lowercase();
        if let Some(digits) = lower.strip_suffix('%') {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ReplyError::Percent {
                    word: word.into(),
                    line: line.into(),
                });
            }
            // All digits: only overflow fails to parse, and that is out of
            // range too.
            match digits.parse::<u32>() {
                Ok(percent) if percent <= AgentCheck::MAX_PERCENT => report.percent = Some(percent),
                Ok(_) | Err(_) => return Err(ReplyError::PercentRange { word: word.into() }),
            }
            continue;
        }
        report.state = Some(match lower.as_str() {
            "up" | "ready" => AgentState::Up,
            "drain" => AgentState::Drain,
            "down" | "fail" | "stopped" | "maint" => AgentState::Down,
            _ => {
                return Err(ReplyError::UnknownWord {
                    word: word.into(),
                    line: line.into(),
                })
            }
        });
    }
    // Every word sets something, so an unchanged report saw no word.
    if report == AgentReport::default() {
        return Err(ReplyError::Empty { line: line.into() });
    }
    Ok(report)
}

/// Ask the agent of the real server `real` once.
pub async fn query(agent: &AgentCheck, real: Endpoint) -> Result<AgentReport, AgentError> {
    let addr = Endpoint {
        addr: agent.addr.unwrap_or(real.addr),
        port: agent.port,
    };
    let line = timeout(
        Duration::from_millis(agent.timeout_ms),
        read_line(addr, agent.send.as_deref()),
    )
    .await
    .unwrap_or(Err(AgentError::Timeout {
        agent: addr,
        timeout_ms: agent.timeout_ms,
    }))?;
    parse(&line).map_err(|source| AgentError::Reply {
        agent: addr,
        source,
    })
}

async fn read_line(agent: Endpoint, send: Option<&str>) -> Result<String, AgentError> {
    let mut stream = TcpStream::connect((agent.addr, agent.port))
        .await
        .map_err(|source| AgentError::Connect { agent, source })?;
    if let Some(send) = send {
        stream
            .write_all(send.as_bytes())
            .await
            .map_err(|source| AgentError::Send {
                agent,
                send: send.into(),
                source,
            })?;
    }
    let mut line = Vec::new();
    let mut chunk = [0; MAX_LINE];
    // Each pass ends the line or grows it towards the cap.
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|source| AgentError::Read { agent, source })?;
        line.extend_from_slice(&chunk[..n]);
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            line.truncate(end);
            break;
        }
        if n == 0 || line.len() > MAX_LINE {
            break;
        }
    }
    if line.len() > MAX_LINE {
        return Err(AgentError::TooLong { agent });
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use tokio::net::TcpListener;

    use super::*;

    fn report(percent: Option<u32>, state: Option<AgentState>) -> AgentReport {
        AgentReport { percent, state }
    }

    #[test]
    fn replies_parse_like_haproxy() {
        use AgentState::*;
        for (reply, expected) in [
            ("75%\n", report(Some(75), None)),
            ("up 50%", report(Some(50), Some(Up))),
            ("drain", report(None, Some(Drain))),
            ("DOWN#maintenance window", report(None, Some(Down))),
            ("ready,80%", report(Some(80), Some(Up))),
            ("maint", report(None, Some(Down))),
            ("50% down up", report(Some(50), Some(Up))),
            ("\tstopped , 0%\r\n", report(Some(0), Some(Down))),
            ("256%", report(Some(256), None)),
        ] {
            assert_eq!(parse(reply), Ok(expected), "{reply:?}");
        }
    }

    #[test]
    fn bad_replies_name_the_problem() {
        for (reply, message) in [
            ("", r#"no weight or state in """#),
            (
                "# just a comment",
                r##"no weight or state in "# just a comment""##,
            ),
            ("banana", r#"unknown word "banana" in "banana""#),
            ("banana 50%", r#"unknown word "banana" in "banana 50%""#),
            ("300%", "weight 300% out of range 0..=256"),
            ("99999999999%", "weight 99999999999% out of range 0..=256"),
            (
                "-5%",
                r#"weight -5% is not an integer percentage, in "-5%""#,
            ),
            ("%", r#"weight % is not an integer percentage, in "%""#),
        ] {
            let err = parse(reply).unwrap_err();
            assert_eq!(err.to_string(), message, "{reply:?}");
        }
    }

    fn agent(port: u16, timeout_ms: u64) -> AgentCheck {
        AgentCheck {
            timeout_ms,
            ..AgentCheck::new(port)
        }
    }

    const REAL: Endpoint = Endpoint {
        addr: std::net::IpAddr::V4(Ipv4Addr::LOCALHOST),
        port: 8080,
    };

    #[tokio::test(flavor = "current_thread")]
    async fn query_reads_one_line_after_sending() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut hello = [0; 6];
            stream.read_exact(&mut hello).await.unwrap();
            // The second line must not be read.
            stream.write_all(b"42%\nup\n").await.unwrap();
            hello
        });
        let mut a = agent(port, 1000);
        a.send = Some("hello\n".into());
        assert_eq!(query(&a, REAL).await.unwrap(), report(Some(42), None));
        assert_eq!(&server.await.unwrap(), b"hello\n");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn query_failures_name_the_agent() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepted by the kernel's backlog, and never answered.
        let err = query(&agent(port, 200), REAL).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("agent 127.0.0.1:{port}: no reply within 200 ms")
        );
        drop(listener);
        let err = query(&agent(port, 200), REAL).await.unwrap_err();
        assert!(
            matches!(&err, AgentError::Connect { source, .. } if source.kind() == io::ErrorKind::ConnectionRefused),
            "{err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("agent 127.0.0.1:{port}: ")),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn query_refuses_an_endless_line() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // The agent may stop reading and close before all of it is sent.
            let _ = stream.write_all(&[b'9'; 4096]).await;
        });
        let err = query(&agent(port, 1000), REAL).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("agent 127.0.0.1:{port}: reply longer than 512 bytes")
        );
    }
}
