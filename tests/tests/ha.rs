//! Tier 3: the router pair end to end. A client, two directors on a shared
//! LAN with the VIP floating between them, and real servers (`Pair`). For
//! NAT and for DR: a long-lived TCP stream and new connections every
//! 100 ms run while the active lvsd is killed with SIGKILL; the stream
//! continues with no reset and no lost bytes, new connections succeed again
//! within the measured takeover time, and the old active, restarted,
//! becomes the backup and takes no addresses. A forged heartbeat from a
//! third namespace causes no takeover. A split (blackhole routes between the
//! routers, both up) makes two actives holding the addresses; once it heals
//! the lower-ranked one steps down and releases them. A client of a
//! persistent service keeps its real server across a takeover (the backup
//! had the persistence template by sync), where the backup's own round robin
//! would have picked another. Needs root; `cargo xtask test` runs these
//! (`--include-ignored`). Run with `--nocapture` to see the measured
//! takeover, split and heal times.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use anyhow::{bail, ensure, Context, Result};
use lvs_ha::wire::Role;
use lvs_lab::{
    bin,
    pair::{HttpService, Pair, CLIENT, GATEWAY, HA_PORT, HOLD_PORT, HTTP_PORT, KEY, OUTSIDER},
    Held, Method, VIP,
};
use lvs_state::api::HaView;

/// Between two lines of the stream.
const STREAM_PERIOD: Duration = Duration::from_millis(20);
/// Between two new connections.
const CONNECT_PERIOD: Duration = Duration::from_millis(100);
/// No worker runs longer than this, whatever happens.
const WORKER_LIMIT: Duration = Duration::from_secs(30);
/// New connections must work again this soon after the kill (the dead
/// time is 0.5 s).
const RECOVERY_LIMIT: Duration = Duration::from_secs(2);

/// Line `n` of the stream: the counter and a pattern derived from it, so
/// that a lost, repeated or damaged byte shows as a mismatch.
fn line(n: u64) -> String {
    let digit = char::from(b'0' + (n % 10) as u8);
    format!(
        "{n:08} {}",
        String::from(digit).repeat(40 + (n % 23) as usize)
    )
}

#[derive(Debug, Default)]
struct StreamReport {
    /// Lines sent and echoed intact.
    count: u64,
    /// How long it ran.
    ran: Duration,
    /// Longest time between two echoes, and when it ended.
    max_gap: Duration,
    max_gap_end: Option<Instant>,
    last_echo: Option<Instant>,
    error: Option<String>,
}

/// Send a counter line every `STREAM_PERIOD` on `held`, checking each echo,
/// until `stop` (or `WORKER_LIMIT`); the first error ends it.
fn stream(mut held: Held, stop: Arc<AtomicBool>) -> StreamReport {
    let start = Instant::now();
    let mut report = StreamReport::default();
    let mut previous = start;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < WORKER_LIMIT {
        n += 1;
        let sent = line(n);
        match held.echo(&sent) {
            Ok(echo) if echo == sent => {}
            Ok(echo) => {
                report.error = Some(format!("line {n}: sent `{sent}`, echoed `{echo}`"));
                break;
            }
            Err(e) => {
                report.error = Some(format!("line {n}: {e:#}"));
                break;
            }
        }
        let now = Instant::now();
        if now - previous > report.max_gap {
            report.max_gap = now - previous;
            report.max_gap_end = Some(now);
        }
        previous = now;
        report.count = n;
        report.last_echo = Some(now);
        thread::sleep(STREAM_PERIOD);
    }
    report.ran = start.elapsed();
    report
}

/// One new connection's fate.
#[derive(Debug)]
struct Attempt {
    at: Instant,
    took: Duration,
    /// The client's port, once connected.
    port: Option<u16>,
    /// The answering server's name, or what went wrong.
    result: Result<String, String>,
}

/// One HTTP/1.0 request on a new connection (1 s for each step); the
/// answering server's name.
fn http_get(target: SocketAddr) -> Result<String> {
    let stream = TcpStream::connect_timeout(&target, HTTP_TIMEOUT)
        .with_context(|| format!("connect {target}"))?;
    lvs_lab::http_request(stream, target, HTTP_TIMEOUT)
}

/// For each step of a request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(1);
/// For a new connection during a failover: long enough for one SYN
/// retransmission (1 s), which reaches the new active router when the
/// killed router's datapath dropped the first SYN.
const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `http_get` from `source`, one of the namespace's addresses (any port).
fn http_get_from(source: Ipv4Addr, target: SocketAddr) -> Result<String> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket
        .bind(&SockAddr::from(SocketAddr::from((source, 0))))
        .with_context(|| format!("bind {source}"))?;
    socket
        .connect_timeout(&SockAddr::from(target), HTTP_TIMEOUT)
        .with_context(|| format!("connect {target} from {source}"))?;
    lvs_lab::http_request(socket.into(), target, HTTP_TIMEOUT)
}

/// A new connection to `target` every `CONNECT_PERIOD` until `stop` (or
/// `WORKER_LIMIT`). Runs inside the client's namespace.
fn connections(target: SocketAddr, stop: Arc<AtomicBool>) -> Vec<Attempt> {
    let start = Instant::now();
    let mut attempts = Vec::new();
    let mut k = 0u32;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < WORKER_LIMIT {
        let at = Instant::now();
        let mut port = None;
        let result = TcpStream::connect_timeout(&target, FAILOVER_CONNECT_TIMEOUT)
            .with_context(|| format!("connect {target}"))
            .and_then(|stream| {
                port = stream.local_addr().ok().map(|a| a.port());
                lvs_lab::http_request(stream, target, HTTP_TIMEOUT)
            })
            .map_err(|e| format!("{e:#}"));
        attempts.push(Attempt {
            at,
            took: at.elapsed(),
            port,
            result,
        });
        k += 1;
        // On a fixed schedule: a slow attempt does not shift the rest.
        let next = start + CONNECT_PERIOD * k;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    attempts
}

/// The stream and new-connection workers, stopped and joined on drop too
/// (a failing test must not leave them running).
struct Workers {
    stop: Arc<AtomicBool>,
    stream: Option<JoinHandle<StreamReport>>,
    connections: Option<JoinHandle<Result<Vec<Attempt>>>>,
}

impl Workers {
    /// Run the stream on `held`, and new connections from the client.
    fn start(pair: &Pair, held: Held) -> Result<Workers> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Workers {
            stop: stop.clone(),
            stream: None,
            connections: None,
        };
        let s = stop.clone();
        workers.stream = Some(thread::spawn(move || stream(held, s)));
        let target = SocketAddr::new(pair.vip(), HTTP_PORT);
        workers.connections = Some(pair.client.thread(move || connections(target, stop))?);
        Ok(workers)
    }

    fn finish(&mut self) -> Result<(StreamReport, Vec<Attempt>)> {
        self.stop.store(true, Ordering::Relaxed);
        let stream = self
            .stream
            .take()
            .context("already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("the stream thread panicked"))?;
        let attempts = self
            .connections
            .take()
            .context("already finished")?
            .join()
            .map_err(|_| anyhow::anyhow!("the connection thread panicked"))??;
        Ok((stream, attempts))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.stream.take() {
            let _ = h.join();
        }
        if let Some(h) = self.connections.take() {
            let _ = h.join();
        }
    }
}

/// How long before the kill the late stream opens, and when in the
/// detection window (the dead time is 0.5 s) the window stream does.
const LATE: Duration = Duration::from_millis(50);
const WINDOW: Duration = Duration::from_millis(250);

/// Open a held connection to `target` at `at` and echo one line; the
/// server's name. Runs in the client's namespace.
fn window_stream(target: SocketAddr, at: Instant) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    thread::sleep(at.saturating_duration_since(Instant::now()));
    let stream = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .context("connecting in the detection window")?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut greeting = String::new();
    reader.read_line(&mut greeting)?;
    (&stream).write_all(b"window\n")?;
    let mut echo = String::new();
    reader.read_line(&mut echo)?;
    ensure!(
        echo.trim_end() == "window",
        "the window stream echoed `{}`",
        echo.trim_end()
    );
    Ok(greeting.trim_end().to_string())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Build the pair, start servers and both lvsds; `(active, backup)`.
fn pair_up(tag: &str, method: Method, reals: usize) -> (Pair, usize, usize) {
    pair_up_with(tag, method, reals, &[])
}

/// `pair_up` with `services` added to the pair's.
fn pair_up_with(
    tag: &str,
    method: Method,
    reals: usize,
    services: &[HttpService],
) -> (Pair, usize, usize) {
    let pair = Pair::new(tag, method, reals).unwrap_or_else(|e| panic!("building: {e:#}"));
    start_pair(pair, tag, reals, services)
}

/// Start the real servers (with `services` added) and both lvsds of
/// `pair`; `(pair, active, backup)`.
fn start_pair(
    mut pair: Pair,
    tag: &str,
    reals: usize,
    services: &[HttpService],
) -> (Pair, usize, usize) {
    for service in services {
        pair.add_service(service.clone())
            .unwrap_or_else(|e| panic!("adding {service:?}: {e:#}"));
    }
    if reals > 0 {
        pair.start_servers()
            .unwrap_or_else(|e| panic!("starting the servers: {e:#}"));
    }
    pair.start_lvsds()
        .unwrap_or_else(|e| panic!("starting lvsd: {e:#}"));
    let (active, backup) = pair
        .wait_for_roles(Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e:#}{}", pair.logs()));
    println!(
        "{}: active {} ({}), backup {} ({})",
        tag,
        pair.directors[active].name,
        pair.directors[active].lan,
        pair.directors[backup].name,
        pair.directors[backup].lan
    );
    (pair, active, backup)
}

/// The NAT failover of `nat_failover_keeps_the_stream_and_new_connections_resume`,
/// both routers run from keepalived.confs with a unicast vrrp_instance.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_keepalived_vrrp_pair_fails_over_as_an_ha_pair_does() {
    let tag = "hakeep";
    let mut pair = Pair::new(tag, Method::Nat, 2).unwrap_or_else(|e| panic!("building: {e:#}"));
    pair.use_keepalived_conf()
        .unwrap_or_else(|e| panic!("writing keepalived.conf: {e:#}"));
    // The pair it makes: keepalived's timing (three adverts and the
    // version 3 skew: 300 + 156 × 100 / 256 ms), no preemption.
    let loaded = lvs_state::config::Source::Keepalived(pair.directors[0].config.clone())
        .load()
        .unwrap_or_else(|e| panic!("{e}"));
    let ha = loaded.ha.expect("an [ha] from the vrrp_instance");
    assert_eq!(
        (
            ha.priority,
            ha.preempt,
            ha.interval_ms,
            ha.dead_ms,
            ha.links.len()
        ),
        (100, false, 100, 361, 1)
    );
    let (mut pair, active, backup) = start_pair(pair, tag, 2, &[]);
    let view = pair.ha(active).unwrap_or_else(|e| panic!("{e:#}"));
    println!("{tag}: the pair from keepalived.conf: {view:?}");
    match failover_steps(&mut pair, active, backup) {
        Ok(summary) => println!("{tag} passed: {summary}"),
        Err(e) => panic!("{tag}: {e:#}\n{}", pair.report()),
    }
}

fn failover(tag: &str, method: Method, ipv6: bool) {
    let test_start = Instant::now();
    let (mut pair, active, backup) = if ipv6 {
        let pair = Pair::new6(tag, method, 2).unwrap_or_else(|e| panic!("building: {e:#}"));
        start_pair(pair, tag, 2, &[])
    } else {
        pair_up(tag, method, 2)
    };
    let result = failover_steps(&mut pair, active, backup);
    match result {
        Ok(summary) => println!(
            "{tag} ({method:?}) passed in {:.1} s: {summary}",
            test_start.elapsed().as_secs_f64()
        ),
        Err(e) => panic!("{tag} ({method:?}): {e:#}\n{}", pair.report()),
    }
}

fn failover_steps(pair: &mut Pair, active: usize, backup: usize) -> Result<String> {
    let names = |d: usize| pair.directors[d].name.clone();
    let (old, new) = (names(active), names(backup));
    let (vip, client, gateway) = (pair.vip(), pair.client_addr(), pair.gateway());
    let (http, hold) = (
        SocketAddr::new(vip, HTTP_PORT),
        SocketAddr::new(vip, HOLD_PORT),
    );

    // New connections work through the active router before anything.
    let before = pair
        .client
        .run(|| http_get(http))
        .context("a new connection before the kill")?;
    println!("before the kill: a new connection answered by {before}");

    // Let its sync pass (a round is 0.2 s), so that what the backup
    // applies next is the stream.
    thread::sleep(Duration::from_millis(600));
    let applied_before = pair.ha(backup)?.counters.sync_records_applied;
    let held =
        Held::open(&pair.client, hold, Duration::from_secs(5)).context("opening the stream")?;
    println!("stream: connected, served by {}", held.server);
    // The backup must have the stream's connection before the kill.
    lvs_lab::wait_for(
        "the backup to apply the sync of the stream",
        Duration::from_secs(10),
        || {
            pair.ha(backup)
                .is_ok_and(|v| v.counters.sync_records_applied > applied_before)
        },
    )?;
    let synced = pair.ha(backup)?.counters.sync_records_applied;
    println!("backup {new} applied {synced} sync records ({applied_before} before the stream)");
    // The administrator's view of it: `-L -n -c` on the backup lists the
    // stream, synced, on the server it has on the active.
    // It is sent as it is created (SYN_RECV), then as it changes state.
    let source = SocketAddr::new(client, held.local_port()?).to_string();
    let listed = |pair: &Pair| -> Result<(String, String)> {
        let listing = pair.lvsadm(backup, &["-L", "-n", "-c"])?;
        let row = listing
            .lines()
            .find(|l| l.contains(&format!(" {source} ")))
            .map(str::to_string);
        Ok((row.unwrap_or_default(), listing))
    };
    let _ = lvs_lab::wait_for(
        "the backup to list the stream established",
        Duration::from_secs(5),
        || listed(pair).is_ok_and(|(row, _)| row.contains("ESTABLISHED")),
    );
    let (row, listing) = listed(pair)?;
    ensure!(
        !row.is_empty(),
        "the backup's -L -n -c does not list {source}:\n{listing}"
    );
    ensure!(
        row.starts_with("TCP") && row.contains("ESTABLISHED") && row.contains(&hold.to_string()),
        "the backup lists the stream as `{row}`"
    );
    println!("backup {new} lists the stream: {row}");
    let mut workers = Workers::start(pair, held)?;
    thread::sleep(Duration::from_secs(1));

    let survivor_mac = pair.mac(backup, "lan0")?;
    let takeovers_before = pair.ha(backup)?.counters.takeovers;
    // A stream opened 50 ms before the kill: synced as it was created, not
    // at the next round.
    let mut late = Held::open(&pair.client, hold, Duration::from_secs(5))
        .context("opening the stream just before the kill")?;
    thread::sleep(LATE.saturating_sub(late.opened.elapsed()));
    let killed_at = Instant::now();
    pair.kill9(active)?;
    println!(
        "SIGKILLed lvsd on {old} (the active router), {} after a stream opened",
        ms(killed_at - late.opened)
    );
    // One opened in the detection window: the killed router's datapath,
    // its lvsd's liveness stamp run out, drops the SYN; the retransmission
    // reaches the new active.
    let window = pair
        .client
        .thread(move || window_stream(hold, killed_at + WINDOW))?;

    // The survivor takes over: poll its role; its last transition's age
    // dates the takeover more precisely than the poll.
    let mut took_over = None;
    while killed_at.elapsed() < Duration::from_secs(5) {
        if let Ok(view) = pair.ha(backup) {
            if view.role == Role::Active {
                let ago = view.last_transition.as_ref().map_or(0, |t| t.ms_ago);
                let at = Instant::now() - Duration::from_millis(ago);
                took_over = Some((at.max(killed_at), view));
                break;
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    let (took_over_at, view) =
        took_over.with_context(|| format!("{new} did not become active within 5 s of the kill"))?;
    let election = took_over_at - killed_at;
    println!(
        "takeover: {new} active {} after the kill ({})",
        ms(election),
        view.last_transition
            .as_ref()
            .map_or(String::new(), |t| t.reason.clone())
    );
    // The client's ARP entry for the VIP moves to the survivor (gratuitous
    // ARP).
    let mut redirected = None;
    while killed_at.elapsed() < Duration::from_secs(5) {
        if Pair::neighbour(&pair.client, vip)? == Some(survivor_mac) {
            redirected = Some(killed_at.elapsed());
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let redirected = redirected
        .with_context(|| format!("the client's ARP entry for the VIP never moved to {new}"))?;
    println!(
        "the client's ARP entry for the VIP names {new} {} after the kill",
        ms(redirected)
    );
    let redirected_at = killed_at + redirected;
    if pair.method == Method::Nat {
        // And the real servers' entries for their gateway.
        let survivor_priv = pair.mac(backup, "priv0")?;
        lvs_lab::wait_for(
            "the real servers' ARP entries for their gateway to move to the survivor",
            Duration::from_secs(3),
            || {
                pair.reals.iter().all(|rs| {
                    Pair::neighbour(&rs.ns, gateway).is_ok_and(|m| m == Some(survivor_priv))
                })
            },
        )?;
        println!(
            "the real servers' ARP entries for {gateway} name {new} {} after the kill",
            ms(killed_at.elapsed())
        );
    }
    // Only the survivor answers ARP for the VIP: the killed router's
    // datapath, its lvsd's liveness stamp run out, drops the requests its
    // kernel would answer. The client asks afresh each time.
    let client_dev = "eth0";
    for attempt in 0..5 {
        let _ = pair
            .client
            .exec(&["ip", "neigh", "del", &vip.to_string(), "dev", client_dev]);
        let _ = pair
            .client
            .exec(&["ping", "-c", "1", "-W", "1", &vip.to_string()]);
        let answered = Pair::neighbour(&pair.client, vip)?;
        ensure!(
            answered == Some(survivor_mac),
            "ARP for the VIP, asked afresh (attempt {}), was answered by {answered:02x?}, not \
             the survivor {new} ({survivor_mac:02x?})",
            attempt + 1
        );
    }
    println!("ARP for the VIP, asked afresh five times: only {new} answers");
    let (stream_stats, http_stats) = (
        pair.service_stats(backup, HOLD_PORT)?,
        pair.service_stats(backup, HTTP_PORT)?,
    );
    let stats_at = Instant::now();

    // The stream runs on for at least 2 s after the takeover.
    let settle = took_over_at + Duration::from_millis(2500);
    if let Some(wait) = settle.checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }

    // Both streams opened around the kill work through the new active.
    ensure!(
        late.echo("late")? == "late",
        "the stream opened {} before the kill does not echo",
        ms(LATE)
    );
    let window_server = window
        .join()
        .map_err(|_| anyhow::anyhow!("the window stream's thread panicked"))???;
    println!(
        "streams opened {} before and {} after the kill: both echo through {new} (served by {} and {window_server})",
        ms(LATE),
        ms(WINDOW),
        late.server
    );

    // The old active, restarted, becomes the backup and gets a full resync.
    pair.start_lvsd(active)?;
    let restarted_at = Instant::now();
    lvs_lab::wait_for(
        "the restarted router to become backup with a full resync",
        Duration::from_secs(15),
        || {
            pair.ha(active).is_ok_and(|v| {
                v.role == Role::Backup
                    && v.peer
                        .as_ref()
                        .is_some_and(|p| p.alive && p.role == Role::Active)
                    && v.counters.sync_records_applied >= 1
            })
        },
    )?;
    let restarted = pair.ha(active)?;
    println!(
        "restarted {old}: backup, {} sync records applied {} after the restart",
        restarted.counters.sync_records_applied,
        ms(restarted_at.elapsed())
    );
    let held = pair.floating_held(active)?;
    ensure!(
        held.is_empty(),
        "the restarted router {old} holds floating addresses {held:?}"
    );
    let survivor = pair.ha(backup)?;
    ensure!(
        survivor.role == Role::Active,
        "{new} is no longer active after {old} restarted"
    );
    ensure!(
        survivor.counters.takeovers == takeovers_before + 1,
        "{new} took over {} times, expected once",
        survivor.counters.takeovers - takeovers_before
    );
    let survivor_held = pair.floating_held(backup)?;
    ensure!(
        survivor_held.len() == pair.floating().len(),
        "the active router {new} holds {survivor_held:?}, not every floating address"
    );

    // Both keep working after the restart.
    thread::sleep(Duration::from_secs(1));
    let (stream, attempts) = workers.finish()?;
    let (stream_end, http_end) = (
        pair.service_stats(backup, HOLD_PORT)?,
        pair.service_stats(backup, HTTP_PORT)?,
    );

    // The stream: no reset, no lost or damaged byte, and it ran on.
    println!(
        "stream: {} lines echoed intact in {}, longest gap {} (ending {} after the kill){}",
        stream.count,
        ms(stream.ran),
        ms(stream.max_gap),
        stream
            .max_gap_end
            .map_or("-".into(), |t| ms(t.saturating_duration_since(killed_at))),
        stream
            .error
            .as_ref()
            .map_or(String::new(), |e| format!(", error: {e}"))
    );
    if let Some(e) = &stream.error {
        bail!("the stream broke: {e}");
    }
    let last = stream.last_echo.context("the stream echoed nothing")?;
    ensure!(
        last >= took_over_at + Duration::from_secs(2),
        "the stream's last echo came {} after the takeover; it must run on at least 2 s",
        ms(last.saturating_duration_since(took_over_at))
    );
    // At least half the nominal rate over its whole run.
    let expected = (stream.ran.as_millis() / (2 * STREAM_PERIOD.as_millis())) as u64;
    ensure!(
        stream.count >= expected,
        "the stream echoed only {} lines in {} (expected at least {expected})",
        stream.count,
        ms(stream.ran)
    );

    // New connections: when they work again after the kill, and that they
    // all do from then on.
    let after: Vec<&Attempt> = attempts.iter().filter(|a| a.at >= killed_at).collect();
    ensure!(
        after.len() >= 30,
        "only {} new connections after the kill",
        after.len()
    );
    let failures: Vec<String> = after
        .iter()
        .filter_map(|a| {
            a.result
                .as_ref()
                .err()
                .map(|e| format!("at +{} (took {}): {e}", ms(a.at - killed_at), ms(a.took)))
        })
        .collect();
    let recovered = after
        .iter()
        .rposition(|a| a.result.is_err())
        .map_or(0, |i| i + 1);
    let first_ok = after.get(recovered).with_context(|| {
        format!(
            "no new connection succeeded after the kill:\n{}",
            failures.join("\n")
        )
    })?;
    let recovery = first_ok.at + first_ok.took - killed_at;
    // With no failure, new connections never stopped working: the killed
    // lvsd's datapath forwards until the client's ARP entry moves.
    let outage = if failures.is_empty() {
        "none failed".to_string()
    } else {
        format!("working again {} after the kill", ms(recovery))
    };
    // The first answer that came through the new active router: sent
    // after the client's ARP entry for the VIP moved to it.
    let first_after_takeover = after
        .iter()
        .find(|a| a.at >= redirected_at && a.result.is_ok())
        .map(|a| a.at + a.took - killed_at);
    let served: std::collections::BTreeSet<&str> = after
        .iter()
        .filter_map(|a| a.result.as_deref().ok())
        .collect();
    println!(
        "new connections: {} after the kill, {} failed{}; {outage}; \
         first success after the takeover {} after the kill; served by {served:?}",
        after.len(),
        failures.len(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", failures.join("; "))
        },
        first_after_takeover.map_or("-".into(), ms),
    );
    // No new connection fails: one the killed router's datapath could not
    // hand over (its lvsd is gone) is dropped there, and the client's SYN
    // retransmission lands on the new active router.
    ensure!(
        failures.is_empty(),
        "{} new connections failed after the kill:\n{}",
        failures.len(),
        failures.join("\n")
    );
    ensure!(
        recovery <= RECOVERY_LIMIT,
        "new connections worked again only {} after the kill (limit {}); failures:\n{}",
        ms(recovery),
        ms(RECOVERY_LIMIT),
        failures.join("\n")
    );
    // What the client sent after its ARP entry moved went through the
    // survivor: the stream's packets and every new connection (counted from
    // the survivor's first reading of its counters). A connection from a
    // port the client used before in the run is not new to IPVS when the
    // old one has not expired (a DR connection after FIN: IPVS's
    // `conn_reuse_mode` reopens only TIME_WAIT), so it is not counted.
    let reused = |a: &Attempt| {
        attempts
            .iter()
            .any(|b| b.at < a.at && b.port.is_some() && b.port == a.port)
    };
    let through_survivor = attempts
        .iter()
        .filter(|a| a.at > stats_at && a.result.is_ok() && !reused(a))
        .count() as u64;
    let (stream_packets, new_conns) = (
        stream_end.in_packets - stream_stats.in_packets,
        http_end.conns - http_stats.conns,
    );
    println!(
        "through {new} from {} after the kill: {stream_packets} packets of the stream, \
         {new_conns} new connections ({through_survivor} made by the client)",
        ms(stats_at - killed_at)
    );
    ensure!(
        stream_packets > 0,
        "no packet of the stream went through the new active router {new}"
    );
    if new_conns < through_survivor {
        // Which connections, and what the survivor's table holds of them.
        let ports: Vec<String> = attempts
            .iter()
            .filter(|a| a.at > stats_at && a.result.is_ok())
            .map(|a| format!("+{} :{:?}", ms(a.at - killed_at), a.port))
            .collect();
        bail!(
            "{new} counted {new_conns} new connections, the client made {through_survivor} \
             (attempts after its first reading: {ports:?})\n{}",
            pair.lvsadm(backup, &["-L", "-n", "-c"]).unwrap_or_default()
        );
    }
    ensure!(
        served.len() == pair.reals.len(),
        "new connections after the kill reached only {served:?}"
    );
    Ok(format!(
        "takeover {} (election), client redirected {}, first new connection through the new \
         active {}, new connections: {outage}; stream {} lines, longest gap {}",
        ms(election),
        ms(redirected),
        first_after_takeover.map_or("-".into(), ms),
        stream.count,
        ms(stream.max_gap)
    ))
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn nat_failover_keeps_the_stream_and_new_connections_resume() {
    failover("hanat", Method::Nat, false);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn dr_failover_keeps_the_stream_and_new_connections_resume() {
    failover("hadr", Method::Route, false);
}

/// The same failover with an IPv6 client, VIP and NAT66 real servers: the
/// stream's connection is synced in an IPv6 record, the survivor announces
/// the VIP and the servers' gateway with unsolicited Neighbor
/// Advertisements, and the killed router's datapath, its program arrays
/// pinned, keeps forwarding IPv6 and stops answering neighbour
/// solicitations for the floating addresses.
#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_nat_failover_keeps_the_stream_and_new_connections_resume() {
    failover("ha6nat", Method::Nat, true);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn ipv6_dr_failover_keeps_the_stream_and_new_connections_resume() {
    failover("ha6dr", Method::Route, true);
}

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_forged_heartbeat_from_a_third_namespace_causes_no_takeover() {
    let (mut pair, active, backup) = pair_up("haforge", Method::Nat, 1);
    if let Err(e) = forged_steps(&mut pair, active, backup) {
        panic!("{e:#}\n{}", pair.report());
    }
}

fn forged_steps(pair: &mut Pair, active: usize, backup: usize) -> Result<()> {
    let before = [pair.ha(0)?, pair.ha(1)?];
    let lab_bin = bin("lvs-lab").display().to_string();
    let targets: Vec<(String, String)> = (0..2)
        .map(|d| {
            (
                format!("{}:{HA_PORT}", pair.directors[d].lan),
                // Each claims to be the other router.
                pair.directors[1 - d].lan.to_string(),
            )
        })
        .collect();
    let outsider = pair.add_outsider()?;
    println!("forging heartbeats from {OUTSIDER} for 1.5 s (wrong key, active, priority 255)");
    // Both directors at once, for 1.5 s.
    thread::scope(|s| -> Result<()> {
        let forgers: Vec<_> = targets
            .iter()
            .map(|(to, node)| {
                s.spawn(|| {
                    outsider.exec(&[
                        &lab_bin,
                        "forge-heartbeat",
                        "--to",
                        to,
                        "--node",
                        node,
                        "--count",
                        "75",
                        "--interval-ms",
                        "20",
                    ])
                })
            })
            .collect();
        for f in forgers {
            f.join()
                .map_err(|_| anyhow::anyhow!("a forger thread panicked"))??;
        }
        Ok(())
    })?;
    // And one with the right key, from where the peer is not.
    println!("one correctly keyed heartbeat to each from {OUTSIDER}, claiming to be its peer");
    for (to, node) in &targets {
        outsider.exec(&[
            &lab_bin,
            "forge-heartbeat",
            "--to",
            to,
            "--node",
            node,
            "--key",
            KEY,
        ])?;
    }
    // Twice the dead time for anything to happen.
    thread::sleep(Duration::from_secs(1));
    let after = [pair.ha(0)?, pair.ha(1)?];
    for d in 0..2 {
        let (b, a) = (&before[d].counters, &after[d].counters);
        println!(
            "{}: role {} -> {}, takeovers {} -> {}, rejected_auth {} -> {}, \
             rejected_source {} -> {}, heartbeats_received {} -> {}",
            pair.directors[d].name,
            before[d].role,
            after[d].role,
            b.takeovers,
            a.takeovers,
            b.rejected_auth,
            a.rejected_auth,
            b.rejected_source,
            a.rejected_source,
            b.heartbeats_received,
            a.heartbeats_received
        );
        ensure!(
            after[d].role == before[d].role,
            "{} changed role: {} -> {}",
            pair.directors[d].name,
            before[d].role,
            after[d].role
        );
        ensure!(
            a.takeovers == b.takeovers,
            "{} took over ({} -> {})",
            pair.directors[d].name,
            b.takeovers,
            a.takeovers
        );
        ensure!(
            a.rejected_auth > b.rejected_auth,
            "{} rejected no forged heartbeat for its key",
            pair.directors[d].name
        );
        ensure!(
            a.rejected_source > b.rejected_source,
            "{} did not reject the keyed heartbeat from {OUTSIDER} by its source",
            pair.directors[d].name
        );
        ensure!(
            a.heartbeats_received > b.heartbeats_received,
            "{} stopped hearing its peer",
            pair.directors[d].name
        );
    }
    let active_held = pair.floating_held(active)?;
    ensure!(
        active_held.len() == pair.floating().len(),
        "the active router holds {active_held:?}, not every floating address"
    );
    let backup_held = pair.floating_held(backup)?;
    ensure!(
        backup_held.is_empty(),
        "the backup router holds {backup_held:?}"
    );
    // And the VIP still answers.
    let name = pair
        .client
        .run(|| http_get(SocketAddr::from((VIP, HTTP_PORT))))
        .context("a new connection after the forgeries")?;
    println!("after the forgeries, VIP:{HTTP_PORT} answers: {name}");
    Ok(())
}

/// Two actives must show this soon after the split (the dead time is 0.5 s).
const SPLIT_LIMIT: Duration = Duration::from_secs(3);
/// One of them must step down this soon after the heal.
const HEAL_LIMIT: Duration = Duration::from_secs(3);

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_healed_split_leaves_one_active_router_with_the_addresses() {
    let test_start = Instant::now();
    let (pair, active, backup) = pair_up("hasplit", Method::Nat, 2);
    match split_steps(&pair, active, backup) {
        Ok(summary) => println!(
            "hasplit passed in {:.1} s: {summary}",
            test_start.elapsed().as_secs_f64()
        ),
        Err(e) => panic!("hasplit: {e:#}\n{}", pair.report()),
    }
}

/// When a router last changed role, by its own account (the transition's
/// age): more precise than the poll that saw it.
fn transition_at(view: &HaView) -> Option<Instant> {
    let t = view.last_transition.as_ref()?;
    Instant::now().checked_sub(Duration::from_millis(t.ms_ago))
}

/// Poll both routers' `lvsadm ha` every 10 ms until `done` holds for them
/// (and the floating addresses each holds), or `limit` passes.
fn poll_both(
    pair: &Pair,
    limit: Duration,
    mut done: impl FnMut(&[HaView; 2], &[Vec<IpAddr>; 2]) -> bool,
) -> Option<[HaView; 2]> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let (Ok(a), Ok(b)) = (pair.ha(0), pair.ha(1)) {
            if let (Ok(ha), Ok(hb)) = (pair.floating_held(0), pair.floating_held(1)) {
                let views = [a, b];
                if done(&views, &[ha, hb]) {
                    return Some(views);
                }
            }
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Which director's MAC on `dev` `mac` is, by name.
fn whose_mac(pair: &Pair, dev: &str, mac: Option<[u8; 6]>) -> Result<String> {
    for d in 0..2 {
        if Some(pair.mac(d, dev)?) == mac {
            return Ok(pair.directors[d].name.clone());
        }
    }
    Ok(format!("{mac:02x?}"))
}

fn split_steps(pair: &Pair, active: usize, backup: usize) -> Result<String> {
    let names: Vec<String> = pair.directors.iter().map(|d| d.name.clone()).collect();
    let everything = pair.floating().len();
    let before = [pair.ha(0)?, pair.ha(1)?];
    ensure!(
        before[0].priority == before[1].priority,
        "the test expects equal priorities, not {} and {}",
        before[0].priority,
        before[1].priority
    );
    // Equal priorities: the higher address ranks higher (d2, 198.18.1.4).
    let (winner, loser) = if pair.directors[1].lan > pair.directors[0].lan {
        (1, 0)
    } else {
        (0, 1)
    };

    // Traffic before the split: the client and the real servers have ARP
    // entries for the VIP and the gateway, as in service.
    let server = pair
        .client
        .run(|| http_get(SocketAddr::from((VIP, HTTP_PORT))))
        .context("a new connection to the VIP before the split")?;
    println!(
        "before the split VIP:{HTTP_PORT} answers: {server}; the client's ARP entry for the VIP \
         names {}",
        whose_mac(pair, "lan0", Pair::neighbour(&pair.client, pair.vip())?)?
    );

    // The split: neither router can reach the other, both stay up. The
    // backup's routes first, then the active's: the backup takes over once
    // it stops hearing the active, so the split counts from those.
    pair.cut_off(backup, true)?;
    let split_at = Instant::now();
    pair.cut_off(active, true)?;
    println!("split: blackhole routes to the peer's link addresses in both directors' namespaces");
    let views = poll_both(pair, SPLIT_LIMIT, |views, held| {
        views.iter().all(|v| v.role == Role::Active) && held.iter().all(|h| h.contains(&pair.vip()))
    })
    .with_context(|| {
        format!(
            "no two active routers both holding the VIP within {} of the split",
            ms(SPLIT_LIMIT)
        )
    })?;
    let took_over_at = transition_at(&views[backup]).map_or_else(Instant::now, |t| t.max(split_at));
    let split_took = took_over_at - split_at;
    println!(
        "split: {} active too {} after the split ({}); {} still active",
        names[backup],
        ms(split_took),
        views[backup]
            .last_transition
            .as_ref()
            .map_or(String::new(), |t| t.reason.clone()),
        names[active]
    );
    for (d, name) in names.iter().enumerate() {
        let held = pair.floating_held(d)?;
        ensure!(
            held.len() == everything,
            "during the split {name} holds {held:?}, not every floating address"
        );
    }
    // The split lasts long enough for the new active's gratuitous ARPs
    // (5, 100 ms apart) to end; neither hears the other meanwhile.
    let heard = [
        views[0].counters.heartbeats_received,
        views[1].counters.heartbeats_received,
    ];
    thread::sleep(Duration::from_secs(1));
    let during = [pair.ha(0)?, pair.ha(1)?];
    for d in 0..2 {
        ensure!(
            during[d].role == Role::Active,
            "{} gave up during the split: {}",
            names[d],
            during[d].role
        );
        ensure!(
            during[d].counters.heartbeats_received == heard[d],
            "{} heard {} heartbeats during the split: the blackhole routes do not split the pair",
            names[d],
            during[d].counters.heartbeats_received - heard[d]
        );
    }
    println!(
        "during the split the client's ARP entry for the VIP names {}",
        whose_mac(pair, "lan0", Pair::neighbour(&pair.client, pair.vip())?)?
    );

    // The heal: the lower-ranked router steps down once it hears the
    // higher-ranked one, so the heal counts from the winner's routes going.
    pair.cut_off(loser, false)?;
    let healed_at = Instant::now();
    pair.cut_off(winner, false)?;
    println!("healed: the blackhole routes are gone");
    let views = poll_both(pair, HEAL_LIMIT, |views, held| {
        views[winner].role == Role::Active
            && views[loser].role == Role::Backup
            && held[winner].len() == everything
            && held[loser].is_empty()
    })
    .with_context(|| {
        format!(
            "within {} of the heal, {} is not the only active router with every floating \
             address",
            ms(HEAL_LIMIT),
            names[winner]
        )
    })?;
    let stepped_down = views[loser]
        .last_transition
        .as_ref()
        .context("the router that stepped down shows no transition")?;
    let heal_took = transition_at(&views[loser])
        .map_or_else(|| healed_at.elapsed(), |t| t.max(healed_at) - healed_at);
    println!(
        "heal: {} backup {} after the heal ({}); {} active with {:?}",
        names[loser],
        ms(heal_took),
        stepped_down.reason,
        names[winner],
        pair.floating_held(winner)?
    );
    ensure!(
        stepped_down.from == Role::Active && stepped_down.to == Role::Backup,
        "{}'s last transition is {} -> {}, not a step down",
        names[loser],
        stepped_down.from,
        stepped_down.to
    );
    ensure!(
        stepped_down.reason.contains("outranks us"),
        "{} stepped down for `{}`, not because {} outranks it",
        names[loser],
        stepped_down.reason,
        names[winner]
    );

    // It stays settled: twice the dead time on, the same roles, each
    // hearing the other, no address back on the backup.
    thread::sleep(Duration::from_secs(1));
    let after = [pair.ha(0)?, pair.ha(1)?];
    for d in 0..2 {
        ensure!(
            after[d].role == views[d].role,
            "{} changed role after the heal: {} -> {}",
            names[d],
            views[d].role,
            after[d].role
        );
        ensure!(
            after[d].peer.as_ref().is_some_and(|p| p.alive),
            "{} does not hear its peer after the heal",
            names[d]
        );
        ensure!(
            after[d].counters.takeovers == views[d].counters.takeovers,
            "{} took over again after the heal",
            names[d]
        );
    }
    let loser_held = pair.floating_held(loser)?;
    ensure!(
        loser_held.is_empty(),
        "the backup {} holds {loser_held:?} a second after the heal",
        names[loser]
    );

    // The winner announced its addresses again when it heard its peer come
    // back, so the client's entry for the VIP and the real servers' for the
    // gateway name it, and every new connection goes through it.
    let path = || -> Result<Vec<String>> {
        let mut entries = vec![whose_mac(
            pair,
            "lan0",
            Pair::neighbour(&pair.client, pair.vip())?,
        )?];
        for rs in &pair.reals {
            entries.push(whose_mac(
                pair,
                "priv0",
                Pair::neighbour(&rs.ns, pair.gateway())?,
            )?);
        }
        Ok(entries)
    };
    let owned = lvs_lab::wait_for(
        "the client's and the real servers' ARP entries to name the winner",
        Duration::from_secs(3),
        // A server with no entry asks, and only the winner holds it.
        || path().is_ok_and(|e| e.iter().all(|n| *n == names[winner] || n == "None")),
    );
    if let Err(e) = owned {
        bail!(
            "{e}: the client's entry for the VIP, then the real servers' for the gateway: {:?}",
            path()
        );
    }
    let conns_before = [
        pair.service_stats(0, HTTP_PORT)?.conns,
        pair.service_stats(1, HTTP_PORT)?.conns,
    ];
    let mut answers = Vec::new();
    for n in 0..6 {
        let server = pair
            .client
            .run(|| http_get(SocketAddr::from((VIP, HTTP_PORT))))
            .with_context(|| format!("new connection {n} to the VIP after the heal"))?;
        answers.push(server);
    }
    let carried = [
        pair.service_stats(0, HTTP_PORT)?.conns - conns_before[0],
        pair.service_stats(1, HTTP_PORT)?.conns - conns_before[1],
    ];
    ensure!(
        carried[winner] == 6 && carried[loser] == 0,
        "after the heal {} carried {} and {} carried {} of 6 new connections",
        names[winner],
        carried[winner],
        names[loser],
        carried[loser]
    );
    println!(
        "after the heal: 6 new connections through {}, answered by {answers:?}",
        names[winner]
    );
    Ok(format!(
        "split: two actives {} after the split; heal: {} backup {} after the heal, {} the one \
         active",
        ms(split_took),
        names[loser],
        ms(heal_took),
        names[winner]
    ))
}

/// The persistent service: VIP:9000, round robin, 60 s templates per
/// client address.
const PERSISTENT_PORT: u16 = 9000;
/// A second address on the client's namespace: another client network
/// (the netmask is /32).
const OTHER_CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 22);
/// A third, only after the takeover: a client network the survivor has no
/// template for.
const NEWCOMER: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 23);

#[test]
#[ignore = "needs root; run by `cargo xtask test`"]
fn a_persistent_client_keeps_its_server_across_a_failover() {
    let test_start = Instant::now();
    let persistent = HttpService {
        port: PERSISTENT_PORT,
        scheduler: "rr".into(),
        persistent: Some(60),
    };
    let (mut pair, active, backup) = pair_up_with("hapersist", Method::Nat, 2, &[persistent]);
    match persist_steps(&mut pair, active, backup) {
        Ok(summary) => println!(
            "hapersist passed in {:.1} s: {summary}",
            test_start.elapsed().as_secs_f64()
        ),
        Err(e) => panic!("hapersist: {e:#}\n{}", pair.report()),
    }
}

/// `count` requests to the persistent service from `source`; the
/// answering servers' names.
fn persistent_gets(pair: &Pair, source: Ipv4Addr, count: usize, when: &str) -> Result<Vec<String>> {
    let target = SocketAddr::from((VIP, PERSISTENT_PORT));
    (0..count)
        .map(|n| {
            pair.client
                .run(|| http_get_from(source, target))
                .with_context(|| format!("request {} of {count} from {source} {when}", n + 1))
        })
        .collect()
}

fn persist_steps(pair: &mut Pair, active: usize, backup: usize) -> Result<String> {
    let names = |d: usize| pair.directors[d].name.clone();
    let (old, new) = (names(active), names(backup));
    for addr in [OTHER_CLIENT, NEWCOMER] {
        pair.client
            .exec(&["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"])?;
    }

    // The other client first: it takes the active's first round-robin pick,
    // so the main client gets the other server there. A backup scheduling
    // by itself would give the main client its first pick instead.
    let other = persistent_gets(pair, OTHER_CLIENT, 1, "before the kill")?.remove(0);
    println!("before the kill: {OTHER_CLIENT} answered by {other}");
    // Let its sync pass (a round is 0.2 s), so that what the backup applies
    // next is the main client's.
    thread::sleep(Duration::from_millis(600));
    let applied_before = pair.ha(backup)?.counters.sync_records_applied;
    let requests_at = Instant::now();
    let before = persistent_gets(pair, CLIENT, 3, "before the kill")?;
    let server = before[0].clone();
    println!("before the kill: {CLIENT} answered by {before:?}");
    ensure!(
        before.iter().all(|s| *s == server),
        "{CLIENT} did not keep its server before the kill: {before:?}"
    );
    ensure!(
        server != other,
        "{CLIENT} and {OTHER_CLIENT} were both given {server}: round robin should have given \
         {CLIENT} the other server, and the test proves nothing without that"
    );

    // The backup has the main client's template: the active reads its
    // templates with its connections, so the first sync round that carries
    // the client's connections carries its template too.
    lvs_lab::wait_for(
        "the backup to apply the sync of the client's connections and template",
        Duration::from_secs(10),
        || {
            pair.ha(backup)
                .is_ok_and(|v| v.counters.sync_records_applied > applied_before)
        },
    )?;
    let synced_after = requests_at.elapsed();
    // And whatever round was still in flight.
    thread::sleep(Duration::from_millis(500));
    let applied = pair.ha(backup)?.counters.sync_records_applied;
    println!(
        "backup {new} applied {} sync records within {} of the client's requests",
        applied - applied_before,
        ms(synced_after)
    );

    let survivor_mac = pair.mac(backup, "lan0")?;
    let killed_at = Instant::now();
    pair.kill9(active)?;
    println!("SIGKILLed lvsd on {old} (the active router)");
    lvs_lab::wait_for(
        &format!("{new} to become active"),
        Duration::from_secs(5),
        || pair.ha(backup).is_ok_and(|v| v.role == Role::Active),
    )?;
    let took_over = killed_at.elapsed();
    // The client's ARP entry for the VIP, and the real servers' for their
    // gateway, move to the survivor (gratuitous ARP): the dead lvsd's
    // datapath would carry the requests otherwise.
    lvs_lab::wait_for(
        "the client's ARP entry for the VIP to name the survivor",
        Duration::from_secs(5),
        || Pair::neighbour(&pair.client, pair.vip()).is_ok_and(|m| m == Some(survivor_mac)),
    )?;
    let redirected = killed_at.elapsed();
    let survivor_priv = pair.mac(backup, "priv0")?;
    lvs_lab::wait_for(
        "the real servers' ARP entries for their gateway to name the survivor",
        Duration::from_secs(3),
        || {
            pair.reals.iter().all(|rs| {
                Pair::neighbour(&rs.ns, pair.gateway()).is_ok_and(|m| m == Some(survivor_priv))
            })
        },
    )?;
    println!(
        "takeover: {new} active {} after the kill; the client's ARP entry for the VIP names it \
         {} after, the real servers' for {GATEWAY} {} after",
        ms(took_over),
        ms(redirected),
        ms(killed_at.elapsed())
    );

    let conns_before = pair.service_stats(backup, PERSISTENT_PORT)?.conns;
    let after = persistent_gets(pair, CLIENT, 3, "after the takeover")?;
    let conns = pair.service_stats(backup, PERSISTENT_PORT)?.conns - conns_before;
    println!(
        "after the takeover: {CLIENT} answered by {after:?}; {new} counted {conns} new \
         connections on VIP:{PERSISTENT_PORT}"
    );
    ensure!(
        after.iter().all(|s| *s == server),
        "{CLIENT} lost its server {server} across the takeover: answered by {after:?} (the \
         backup's round robin, not the synced template)"
    );
    ensure!(
        conns == 3,
        "{new} counted {conns} new connections on VIP:{PERSISTENT_PORT}, the client made 3"
    );
    // The premise, on the survivor itself: its round robin (untouched, as
    // the client's connections followed the template) gives a client
    // network without a template its first pick, the other server.
    let newcomer = persistent_gets(pair, NEWCOMER, 1, "after the takeover")?.remove(0);
    println!("after the takeover: {NEWCOMER} (no template) answered by {newcomer}");
    ensure!(
        newcomer == other,
        "{NEWCOMER} got {newcomer} from {new}'s round robin, not its first pick {other}: the \
         backup by itself would not have moved {CLIENT} off {server}"
    );
    Ok(format!(
        "{CLIENT} kept {server} ({OTHER_CLIENT} had {other}) across the takeover by {new}, \
         active {} after the kill, the client redirected {} after",
        ms(took_over),
        ms(redirected)
    ))
}
