//! What health checking costs the controller: 1,000 real servers checked
//! once a second, by lvsd's own supervisor on one tokio thread, against
//! listeners on loopback in a private namespace.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use lvs::{eventloop::EventLoop, health::supervisor::Supervisor};
use lvs_datapath::Limits;
use lvs_state::api::{Request, Response};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{testbed, Plan};

pub const SERVERS: usize = 1000;
pub const INTERVAL_S: u64 = 1;

#[derive(Debug, Serialize)]
pub struct HealthRow {
    /// Checker type, as in the config (`tcp`, `http`).
    pub kind: String,
    pub seconds: f64,
    /// Probes the listeners answered.
    pub checks: u64,
    /// `SERVERS` × seconds / interval.
    pub expected: u64,
    /// CPU time of the thread running every checker, over wall time.
    pub controller_core_percent: f64,
    /// The whole bench process, the listeners included.
    pub process_core_percent: f64,
}

#[derive(Debug, Serialize)]
pub struct HealthReport {
    pub servers: usize,
    pub interval_s: u64,
    pub rows: Vec<HealthRow>,
}

fn thread_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

fn process_cpu() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(Duration::from)
        .unwrap_or_default()
}

/// Raise the open-file limit to its hard limit: a thousand listeners and as
/// many probe sockets.
fn more_files() -> Result<()> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit")?;
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")
}

/// `SERVERS` listeners on 127.0.0.1, each answering like a tiny web server,
/// on a thread of their own; every accepted probe is counted.
fn listeners(
    count: &Arc<AtomicU64>,
) -> Result<(Vec<SocketAddr>, tokio::sync::oneshot::Sender<()>)> {
    let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let count = count.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(async move {
            let mut addrs = Vec::new();
            for _ in 0..SERVERS {
                let l = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addrs_tx.send(Err(e));
                        return;
                    }
                };
                addrs.push(l.local_addr().expect("bound"));
                let count = count.clone();
                tokio::spawn(async move {
                    while let Ok((mut s, _)) = l.accept().await {
                        count.fetch_add(1, Ordering::Relaxed);
                        tokio::spawn(async move {
                            let mut buf = [0u8; 512];
                            // A TCP check sends nothing and closes; an HTTP
                            // check sends its request and reads to EOF.
                            if let Ok(n) = s.read(&mut buf).await {
                                if n > 0 {
                                    let _ = s
                                        .write_all(
                                            b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nOK\n",
                                        )
                                        .await;
                                }
                            }
                        });
                    }
                });
            }
            let _ = addrs_tx.send(Ok(addrs));
            let _ = stopped.await;
        });
    });
    let addrs = addrs_rx
        .recv()
        .context("the listener thread ended")?
        .context("binding a listener on 127.0.0.1")?;
    Ok((addrs, stop))
}

/// A config of `SERVERS` NAT real servers whose checks go to `addrs`.
fn config(kind: &str, addrs: &[SocketAddr]) -> String {
    let mut text = String::from(
        "[[service]]\nprotocol = \"tcp\"\naddress = \"198.18.0.10:80\"\nscheduler = \"wlc\"\n",
    );
    let extra = if kind == "http" { "path = \"/\"\n" } else { "" };
    for (i, addr) in addrs.iter().enumerate() {
        text += &format!(
            "[[service.real]]\naddress = \"10.{}.{}.{}:8080\"\nmethod = \"nat\"\n[[service.real.check]]\ntype = \"{kind}\"\nconnect = \"{addr}\"\ninterval = {INTERVAL_S}\ntimeout = 0.5\n{extra}",
            1 + i / 65536,
            (i / 256) % 256,
            i % 256
        );
    }
    text
}

fn one(kind: &str, seconds: u64) -> Result<HealthRow> {
    testbed::in_private_netns(|| {
        more_files()?;
        let count = Arc::new(AtomicU64::new(0));
        let (addrs, stop) = listeners(&count)?;
        let controller = testbed::director(1, Limits::default(), &config(kind, &addrs))?;
        let state = controller.state().clone();
        let configured = tokio::sync::watch::channel(state.clone()).0;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (row, down) = rt.block_on(async {
            let (handle, owner) = EventLoop::new(controller, Vec::new(), configured).spawn();
            let mut supervisor = Supervisor::new(handle.clone());
            supervisor.reconcile(&state);
            // One interval to spread the first probes, then measure.
            tokio::time::sleep(Duration::from_secs(INTERVAL_S)).await;
            let (cpu0, proc0, n0, t0) = (
                thread_cpu(),
                process_cpu(),
                count.load(Ordering::Relaxed),
                Instant::now(),
            );
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            let wall = t0.elapsed().as_secs_f64();
            let row = HealthRow {
                kind: kind.to_string(),
                seconds: wall,
                checks: count.load(Ordering::Relaxed) - n0,
                expected: SERVERS as u64 * seconds / INTERVAL_S,
                controller_core_percent: (thread_cpu() - cpu0).as_secs_f64() / wall * 100.0,
                process_core_percent: (process_cpu() - proc0).as_secs_f64() / wall * 100.0,
            };
            supervisor.stop();
            let listed = handle.request(Request::List).await;
            drop((supervisor, handle));
            let _ = tokio::task::spawn_blocking(move || owner.join()).await;
            let Response::Snapshot(snapshot) = listed else {
                anyhow::bail!("listing the servers: {listed:?}");
            };
            let down = snapshot
                .services
                .iter()
                .flat_map(|s| &s.reals)
                .filter(|r| r.health.as_ref().is_some_and(|h| h.state != "up"))
                .count();
            anyhow::Ok((row, down))
        })?;
        let _ = stop.send(());
        anyhow::ensure!(down == 0, "{down} of {SERVERS} servers were taken out: the bench would not measure steady checking");
        Ok(row)
    })
}

pub fn run(plan: Plan) -> Result<HealthReport> {
    let seconds = if plan.quick { 5 } else { 20 };
    let mut rows = Vec::new();
    for kind in ["tcp", "http"] {
        eprintln!("   {SERVERS} {kind} checks every {INTERVAL_S} s for {seconds} s");
        rows.push(one(kind, seconds)?);
    }
    Ok(HealthReport {
        servers: SERVERS,
        interval_s: INTERVAL_S,
        rows,
    })
}
