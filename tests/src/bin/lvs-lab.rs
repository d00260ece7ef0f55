//! Tiny, bounded traffic programs for the lab: an HTTP server and a UDP
//! server that answer with their name, a TCP server that holds connections
//! open, clients that report who answered, and a forger of HA heartbeats.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// The `cargo xtask demo` lab.
    Demo {
        #[arg(long, default_value_t = 12)]
        requests: usize,
        /// Forwarding method: nat, dr, tun, or mixed (one of each).
        #[arg(long, default_value = "nat")]
        method: String,
        /// The fleet instead: three directors behind a BIRD router.
        #[arg(long)]
        fleet: bool,
    },
    /// Attach the no-op XDP program to a veth, so that it receives frames
    /// its peer sends with XDP_TX (a bridge port facing the director).
    XdpPass { iface: String },
    /// Print `yes` if an lvs director runs on IFACE (XDP, or tc ingress),
    /// else `no`: for tests that a refused or stopped lvsd left none.
    DirectorOn { iface: String },
    /// Answer every HTTP request with `NAME client=IP:PORT`, then BODY_BYTES
    /// more bytes of body (a large response, for path-MTU tests).
    HttpServer {
        listen: SocketAddr,
        name: String,
        #[arg(long, default_value_t = 0)]
        body_bytes: usize,
    },
    /// Answer every datagram with `NAME`.
    UdpServer { listen: SocketAddr, name: String },
    /// Greet every connection with `NAME`, then echo its lines until the
    /// client closes; one thread per connection, so many stay open at once.
    HoldServer { listen: SocketAddr, name: String },
    /// COUNT sequential requests, one connection each; print each answer's name.
    HttpGet {
        target: SocketAddr,
        #[arg(long, default_value_t = 1)]
        count: usize,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// One datagram; print the answer's name and the address it came from.
    UdpQuery {
        target: SocketAddr,
        #[arg(long, default_value_t = 3000)]
        timeout_ms: u64,
    },
    /// Echo everything every connection sends until it closes.
    BulkServer { listen: SocketAddr },
    /// CONNECTIONS connections to TARGET at once, each streaming a counter
    /// pattern for SECONDS and checking that every byte is echoed back
    /// intact; fails on any reset, timeout or wrong byte. Prints one line
    /// per connection: `conn N sent BYTES echoed BYTES`.
    BulkClient {
        target: SocketAddr,
        #[arg(long, default_value_t = 4)]
        connections: u8,
        #[arg(long, default_value_t = 8)]
        seconds: u64,
    },
    /// COUNT well-formed HA heartbeats (`ha::wire`) to every TO, claiming
    /// `role active, priority 255` as NODE, signed with KEY (by default a
    /// key no router has), INTERVAL_MS apart.
    ForgeHeartbeat {
        #[arg(long, required = true)]
        to: Vec<SocketAddr>,
        #[arg(long)]
        node: std::net::Ipv4Addr,
        #[arg(long, default_value_t = 1)]
        count: u64,
        #[arg(long, default_value_t = 20)]
        interval_ms: u64,
        #[arg(long, default_value = "not the pair's key, but long enough")]
        key: String,
    },
}

fn main() -> Result<()> {
    match Args::parse().command {
        Cmd::Demo { fleet: true, .. } => lvs_lab::demo::run_fleet(300),
        Cmd::Demo {
            requests, method, ..
        } => lvs_lab::demo::run(requests, &method),
        Cmd::XdpPass { iface } => {
            lvs_datapath::StandaloneXdp::pass()?.attach_persistent(&iface)?;
            Ok(())
        }
        Cmd::DirectorOn { iface } => {
            let on = lvs_datapath::director_attached(&iface)?;
            println!("{}", if on { "yes" } else { "no" });
            Ok(())
        }
        Cmd::HttpServer {
            listen,
            name,
            body_bytes,
        } => http_server(listen, &name, body_bytes),
        Cmd::UdpServer { listen, name } => udp_server(listen, &name),
        Cmd::HoldServer { listen, name } => hold_server(listen, &name),
        Cmd::HttpGet {
            target,
            count,
            timeout_ms,
        } => {
            for i in 0..count {
                let name = http_get(target, Duration::from_millis(timeout_ms))
                    .with_context(|| format!("request {} of {count}", i + 1))?;
                println!("{name}");
            }
            Ok(())
        }
        Cmd::UdpQuery { target, timeout_ms } => {
            udp_query(target, Duration::from_millis(timeout_ms))
        }
        Cmd::BulkServer { listen } => lvs_lab::bulk::server(listen),
        Cmd::BulkClient {
            target,
            connections,
            seconds,
        } => {
            let done =
                lvs_lab::bulk::client(target, connections, Duration::from_secs(seconds.min(600)))?;
            for (c, t) in done.iter().enumerate() {
                println!("conn {c} sent {} echoed {}", t.sent, t.echoed);
            }
            Ok(())
        }
        Cmd::ForgeHeartbeat {
            to,
            node,
            count,
            interval_ms,
            key,
        } => forge_heartbeat(&to, node, count, Duration::from_millis(interval_ms), &key),
    }
}

fn forge_heartbeat(
    to: &[SocketAddr],
    node: std::net::Ipv4Addr,
    count: u64,
    interval: Duration,
    key: &str,
) -> Result<()> {
    use lvs_ha::wire::{Header, Kind, Message, Role};
    let socket = UdpSocket::bind("0.0.0.0:0")?;
    // A boot id later than any real router's: the most convincing claim.
    let boot = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    for seq in 1..=count.min(10_000) {
        if seq > 1 {
            std::thread::sleep(interval);
        }
        let datagram = Message {
            header: Header {
                kind: Kind::Heartbeat,
                role: Role::Active,
                priority: 255,
                node,
                boot,
                seq,
                full: false,
                last: false,
                ipv6: false,
            },
            records: Vec::new(),
        }
        .emit(key.as_bytes());
        for target in to {
            socket
                .send_to(&datagram, target)
                .with_context(|| format!("sending to {target}"))?;
        }
    }
    Ok(())
}

fn http_server(listen: SocketAddr, name: &str, body_bytes: usize) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let name = name.to_string();
        // One thread each: a client that stalls (a path-MTU black hole)
        // must not hold up the next.
        std::thread::spawn(move || http_answer(stream, &name, body_bytes));
    }
    Ok(())
}

fn http_answer(mut stream: TcpStream, name: &str, body_bytes: usize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(30)));
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16384 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let mut body = format!("{name} client={peer}\n");
    body.extend(std::iter::repeat_n('x', body_bytes));
    let reply = format!(
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn udp_server(listen: SocketAddr, name: &str) -> Result<()> {
    let socket = UdpSocket::bind(listen).with_context(|| format!("bind {listen}"))?;
    let mut buf = [0u8; 2048];
    loop {
        let (_, from) = socket.recv_from(&mut buf)?;
        let _ = socket.send_to(name.as_bytes(), from);
    }
}

fn hold_server(listen: SocketAddr, name: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("bind {listen}"))?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let greeting = format!("{name}\n");
        std::thread::spawn(move || hold(stream, &greeting));
    }
    Ok(())
}

fn hold(mut stream: TcpStream, greeting: &str) -> std::io::Result<()> {
    // Far beyond any test, so that an abandoned connection cannot keep its
    // thread forever.
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.write_all(greeting.as_bytes())?;
    let mut lines = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    while lines.read_line(&mut line)? > 0 {
        stream.write_all(line.as_bytes())?;
        line.clear();
    }
    Ok(())
}

fn http_get(target: SocketAddr, timeout: Duration) -> Result<String> {
    let stream = TcpStream::connect_timeout(&target, timeout)
        .with_context(|| format!("connect {target}"))?;
    // The handshake completed, so the SYN-ACK came from `target` itself:
    // a reply from any other address would have been answered with a reset.
    lvs_lab::http_request(stream, target, timeout)
}

fn udp_query(target: SocketAddr, timeout: Duration) -> Result<()> {
    let any = if target.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = UdpSocket::bind(any)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.send_to(b"who?", target)?;
    let mut buf = [0u8; 2048];
    let (n, from) = socket
        .recv_from(&mut buf)
        .with_context(|| format!("no answer from {target}"))?;
    println!("{} {from}", String::from_utf8_lossy(&buf[..n]));
    Ok(())
}
