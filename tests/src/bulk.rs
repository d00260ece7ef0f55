//! Bulk TCP traffic both ways at once, checked byte for byte: an echo
//! server that returns everything it reads, and a client that streams a
//! counter pattern on several connections for a while and checks that
//! every byte comes back, in order, on a connection that never resets.
//! `lvs-lab bulk-server` and `lvs-lab bulk-client` run these.
//!
//! Everything is bounded: the client writes for the given time, then shuts
//! its side down and reads (each read bounded) until the echo ends; the
//! server drops a connection idle for 30 s.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

const CHUNK: usize = 64 * 1024;

/// Echo every connection's bytes back until it closes; one thread each.
pub fn server(listen: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        thread::spawn(move || echo(stream));
    }
    Ok(())
}

fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(30)))?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            // The client is done: end the echo too.
            return stream.shutdown(Shutdown::Write);
        }
        stream.write_all(&buf[..n])?;
    }
}

/// The byte at `offset` of connection `conn`'s stream: little-endian
/// 64-bit words counting up, the connection's number in the top byte, so
/// that a byte lost, repeated, reordered or from another connection shows.
fn pattern_word(conn: u8, word: u64) -> [u8; 8] {
    (word ^ (u64::from(conn) << 56)).to_le_bytes()
}

/// Fill `buf` with the pattern from stream offset `offset`.
fn fill(conn: u8, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0;
    while i < buf.len() {
        let word = pattern_word(conn, pos / 8);
        let start = (pos % 8) as usize;
        let take = (8 - start).min(buf.len() - i);
        buf[i..i + take].copy_from_slice(&word[start..start + take]);
        i += take;
        pos += take as u64;
    }
}

/// What one connection moved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub sent: u64,
    pub echoed: u64,
}

/// Stream to `target` on `connections` connections at once for
/// `duration`, each checking its echo; fail on the first reset, error,
/// timeout, wrong byte or short echo, naming the connection.
pub fn client(target: SocketAddr, connections: u8, duration: Duration) -> Result<Vec<Transfer>> {
    let streams = (0..connections)
        .map(|c| {
            TcpStream::connect_timeout(&target, Duration::from_secs(3))
                .with_context(|| format!("connection {c}: connect {target}"))
        })
        .collect::<Result<Vec<_>>>()?;
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = streams
        .into_iter()
        .zip(0u8..)
        .map(|(stream, c)| thread::spawn(move || one(c, stream, deadline)))
        .collect();
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for (c, worker) in workers.into_iter().enumerate() {
        match worker.join() {
            Ok(Ok(t)) => results.push(t),
            Ok(Err(e)) => errors.push(format!("connection {c}: {e:#}")),
            Err(_) => errors.push(format!("connection {c}: its thread panicked")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    Ok(results)
}

fn one(conn: u8, stream: TcpStream, deadline: Instant) -> Result<Transfer> {
    let timeout = Duration::from_secs(5);
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut writer = stream.try_clone()?;
    let sending = thread::spawn(move || -> Result<u64> {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while Instant::now() < deadline {
            fill(conn, sent, &mut buf);
            writer
                .write_all(&buf)
                .with_context(|| format!("writing at byte {sent}"))?;
            sent += buf.len() as u64;
        }
        writer.shutdown(Shutdown::Write).context("shutting down")?;
        Ok(sent)
    });

    let mut reader = stream;
    let mut buf = vec![0u8; CHUNK];
    let mut want = vec![0u8; CHUNK];
    let mut echoed = 0u64;
    // Bounded: the writer stops at the deadline, and every read waits at
    // most `timeout`; the last reads may take that long after it.
    let read_result: Result<()> = loop {
        if Instant::now() > deadline + Duration::from_secs(30) {
            break Err(anyhow::anyhow!("echo still running 30 s after the end"));
        }
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                fill(conn, echoed, &mut want[..n]);
                if buf[..n] != want[..n] {
                    let at = buf[..n]
                        .iter()
                        .zip(&want[..n])
                        .position(|(a, b)| a != b)
                        .unwrap_or(0);
                    break Err(anyhow::anyhow!(
                        "echo differs at byte {}",
                        echoed + at as u64
                    ));
                }
                echoed += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e).with_context(|| format!("reading at byte {echoed}")),
        }
    };
    let sent = sending
        .join()
        .map_err(|_| anyhow::anyhow!("the writer panicked"))?;
    // A reset usually shows on both sides; report the writer's first.
    let sent = sent?;
    read_result?;
    if echoed != sent {
        bail!("sent {sent} bytes, {echoed} came back");
    }
    Ok(Transfer { sent, echoed })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_is_the_same_whatever_the_split() {
        let mut whole = vec![0u8; 100];
        fill(3, 5, &mut whole);
        let mut parts = vec![0u8; 100];
        fill(3, 5, &mut parts[..13]);
        fill(3, 18, &mut parts[13..]);
        assert_eq!(whole, parts);
        assert_eq!(&whole[3..11], &pattern_word(3, 1));
        let mut other = vec![0u8; 100];
        fill(4, 5, &mut other);
        assert_ne!(whole, other);
    }
}
