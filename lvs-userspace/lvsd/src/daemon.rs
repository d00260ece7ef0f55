//! `lvsd`'s event loop, mini-redis style: `run` serves the control socket
//! until the shutdown future resolves, then returns so the caller can
//! detach cleanly.

use std::{
    collections::BTreeSet,
    future::Future,
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use lvs_common::NextHop;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use lvs_datapath::{netconf, Attachment, Datapath, DatapathChoice, KernelDatapath, Lifetime};
use lvs_state::{
    api::{AttachmentView, DatapathView, HaView, IpvsTimeouts, Request, Response},
    config,
    model::{Method, State},
};

use crate::{controller::Controller, ha::Ha, health::supervisor::Supervisor};

/// How often expired connections are swept and neighbours reconciled. An
/// expired entry is already dead to the datapath; the sweep frees its slot.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// What `lvsd` is asked to do.
pub struct Options {
    pub interfaces: Vec<String>,
    pub config: Option<PathBuf>,
    pub socket: PathBuf,
    /// Outer source address for IP-in-IP; `None` lets the route choose.
    pub tunnel_source: Option<Ipv4Addr>,
    /// lblc/lblcr entry lifetimes.
    pub expirations: crate::controller::Expirations,
    /// Table sizes for the XDP maps.
    pub limits: lvs_datapath::Limits,
    /// Which director each interface gets.
    pub datapath: DatapathChoice,
}

/// The whole daemon: check the config, bind the socket, attach, apply,
/// serve until `shutdown`, then detach and remove the socket. Anything that
/// fails before serving leaves nothing attached and no socket behind.
pub async fn start(options: Options, shutdown: impl Future) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // Everything that can be checked before touching the kernel is checked first.
    let (commands, ha) = match &options.config {
        Some(path) => (config::load(path)?, config::load_ha(path)?),
        None => (Vec::new(), None),
    };
    let listener = bind(&options.socket)?;
    let prepared = (|| {
        let settings = lvs_common::Settings {
            tunnel_source: options.tunnel_source.map_or([0; 4], |a| a.octets()),
        };
        // A router of a pair leaves its datapath forwarding if it is
        // killed, so what still reaches it is not reset before the peer's
        // gratuitous ARPs move the traffic.
        let lifetime = if ha.is_some() {
            Lifetime::Kernel
        } else {
            Lifetime::Lvsd
        };
        let datapath = KernelDatapath::attach_for(
            &options.interfaces,
            settings,
            options.limits,
            lifetime,
            options.datapath,
        )?;
        let mut controller = Controller::new(datapath);
        controller.set_expirations(options.expirations);
        controller
            .apply(&commands)
            .context("applying the configuration")?;
        warn_forwarding(&controller.datapath().attachments, controller.state());
        anyhow::Ok(controller)
    })();
    // A router of a pair binds its links and gives up floating addresses
    // it may still hold before it serves anything.
    let prepared = prepared.and_then(|c| {
        let ha = ha.map(Ha::prepare).transpose()?;
        anyhow::Ok((c, ha))
    });
    let (controller, ha) = match prepared {
        Ok(c) => c,
        Err(e) => {
            unbind(&options.socket);
            return Err(e);
        }
    };
    tracing::info!(socket = %options.socket.display(), services = controller.state().len(), "lvsd ready");
    let interfaces = controller.datapath().attachments.clone();
    let events = controller.datapath().watch_events();
    let (configured, watched) = tokio::sync::watch::channel(controller.state().clone());
    let shared = Arc::new(Mutex::new(controller));
    let (stop_ha, ha_stopped) = tokio::sync::oneshot::channel();
    let ha_status = ha.as_ref().map(Ha::status);
    let pairing = ha.map(|ha| tokio::spawn(ha.run(shared.clone(), ha_stopped)));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let maintenance = tokio::spawn(maintain(shared.clone(), stopped));
    let (stop_events, events_stopped) = tokio::sync::oneshot::channel();
    let listening = tokio::spawn(listen(shared.clone(), events, events_stopped));
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let checking = tokio::spawn(supervise(shared.clone(), watched, health_stopped));
    let context = Arc::new(Context {
        controller: shared.clone(),
        configured,
        ha: ha_status,
        interfaces,
    });
    run(context, listener, shutdown).await;
    let _ = stop_ha.send(());
    if let Some(pairing) = pairing {
        let _ = pairing.await;
    }
    let _ = stop_health.send(());
    let _ = checking.await;
    let _ = stop_events.send(());
    let _ = listening.await;
    let _ = stop.send(());
    if let Ok(neighbours) = maintenance.await {
        let _ = tokio::task::spawn_blocking(move || neighbours.forget_all()).await;
    }
    unbind(&options.socket);
    drop(shared);
    tracing::info!("detached; bye");
    Ok(())
}

pub type Shared<D> = Arc<Mutex<Controller<D>>>;

/// What a control request may reach.
pub struct Context<D> {
    pub controller: Shared<D>,
    /// Each applied configuration, for the health supervisor.
    pub configured: tokio::sync::watch::Sender<State>,
    /// The router pair's state, when lvsd is one of a pair.
    pub ha: Option<Arc<Mutex<HaView>>>,
    /// Which director each interface runs.
    pub interfaces: Vec<Attachment>,
}

/// Bind the control socket: its directory root-only, the socket 0600, a
/// stale socket replaced, a live one refused.
fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; refusing to replace it",
                path.display()
            );
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another lvsd is already listening on {}", path.display());
        }
        std::fs::remove_file(path)
            .map_err(|e| anyhow::anyhow!("removing stale socket {}: {e}", path.display()))?;
    }
    // Root-only from the start: no window with the umask's permissions.
    let previous = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(previous);
    let listener = bound.map_err(|e| anyhow::anyhow!("bind {}: {e}", path.display()))?;
    Ok(listener)
}

/// Serve requests until `shutdown` completes.
pub async fn run<D: Datapath + 'static>(
    context: Arc<Context<D>>,
    listener: UnixListener,
    shutdown: impl Future,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let context = context.clone();
                    tokio::spawn(async move {
                        if let Err(e) = serve(context, stream).await {
                            tracing::warn!("control connection: {e}");
                        }
                    });
                }
                Err(e) => tracing::warn!("accept on control socket: {e}"),
            },
        }
    }
}

async fn serve<D: Datapath + 'static>(
    context: Arc<Context<D>>,
    stream: UnixStream,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let context = context.clone();
                tokio::task::spawn_blocking(move || handle(&context, request))
                    .await
                    .unwrap_or_else(|e| Response::Error {
                        message: format!("request handler failed: {e}"),
                    })
            }
            Err(e) => Response::Error {
                message: format!("malformed request: {e}"),
            },
        };
        let mut out = serde_json::to_string(&response).expect("responses serialize");
        out.push('\n');
        write.write_all(out.as_bytes()).await?;
    }
    Ok(())
}

/// One request against the controller. An applied change goes to
/// `configured`, so health checking follows the new configuration.
pub fn handle<D: Datapath>(context: &Context<D>, request: Request) -> Response {
    if let Request::Ha = request {
        return match &context.ha {
            Some(status) => Response::Ha(status.lock().unwrap_or_else(|p| p.into_inner()).clone()),
            None => Response::Error {
                message: "lvsd is not one of a router pair (no [ha] in its config)".into(),
            },
        };
    }
    let mut c = context
        .controller
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let result = match request {
        Request::Apply { commands } => {
            let r = c.apply(&commands).map(|()| Response::Ok);
            if r.is_ok() {
                match commands.as_slice() {
                    few @ [_] | few @ [_, _] | few @ [_, _, _] => {
                        tracing::info!(commands = ?few, "applied")
                    }
                    many => tracing::info!(commands = many.len(), "applied a batch"),
                }
                context.configured.send_replace(c.state().clone());
                warn_forwarding(&context.interfaces, c.state());
            }
            r
        }
        Request::Datapath => c.datapath().verdicts().map_err(Into::into).map(|verdicts| {
            Response::Datapath(DatapathView {
                interfaces: context.interfaces.iter().map(attachment_view).collect(),
                verdicts: verdicts
                    .into_iter()
                    .map(|(v, n)| (v.name().to_string(), n))
                    .collect(),
                warnings: forwarding_warnings(&context.interfaces, c.state()),
            })
        }),
        Request::Zero { service } => c.zero(service).map(|()| Response::Ok),
        Request::List => c.snapshot().map(Response::Snapshot),
        Request::SetTimeouts(set) => match set.applied_to(&c.timeouts()) {
            Ok(next) => c.set_timeouts(next).map(|()| {
                tracing::info!(?set, "set timeouts");
                Response::Ok
            }),
            Err(e) => Ok(Response::Error {
                message: e.to_string(),
            }),
        },
        Request::Timeouts => Ok(Response::Timeouts(IpvsTimeouts::of(&c.timeouts()))),
        Request::Connections => c
            .connection_views()
            .map(|rows| Response::Connections { rows }),
        Request::Ha => unreachable!("answered above"),
    };
    result.unwrap_or_else(|e| Response::Error {
        message: e.to_string(),
    })
}

/// Once a second: sample the rate estimators (every other second), sweep
/// expired connections, count the live ones (and refill the rings that
/// depend on the counts), and keep the next hops of DR and TUN real
/// servers resolved. Returns the neighbours it manages, for
/// the caller to forget on shutdown.
async fn maintain<D: Datapath + 'static>(
    controller: Shared<D>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> Neighbours {
    let mut neighbours = Neighbours::default();
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut stop => return neighbours,
            _ = tick.tick() => {}
        }
        let shared = controller.clone();
        let mut current = std::mem::take(&mut neighbours);
        neighbours = tokio::task::spawn_blocking(move || {
            let wanted = {
                let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
                // First, so that the sweep's and count's time does not
                // stretch the estimator's period.
                if let Err(e) = c.estimate() {
                    tracing::warn!("sampling the rate estimators: {e}");
                }
                match c.sweep() {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(removed = n, "swept expired connections"),
                    Err(e) => tracing::warn!("sweeping the connection table: {e}"),
                }
                match c.recount() {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(rings = n, "refilled count-driven rings"),
                    Err(e) => tracing::warn!("counting connections: {e}"),
                }
                match c.advance_ramps() {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(services = n, "slow start moved on"),
                    Err(e) => tracing::warn!("moving slow start on: {e}"),
                }
                forwarded_reals(c.state())
            };
            let changes = current.reconcile(&wanted);
            if !changes.is_empty() {
                let mut c = shared.lock().unwrap_or_else(|p| p.into_inner());
                for (real, hop) in changes {
                    let written = match hop {
                        Some(hop) => c.datapath_mut().set_next_hop(real, hop),
                        None => c.datapath_mut().remove_next_hop(real),
                    };
                    if let Err(e) = written {
                        tracing::warn!(%real, "next hop for the datapath: {e}");
                    }
                }
            }
            current
        })
        .await
        .unwrap_or_default();
    }
}

/// Answer the datapath's notices as they come: a ring at low water is
/// refilled within one wake-up, not at the next maintenance tick.
async fn listen<D: Datapath + 'static>(
    controller: Shared<D>,
    events: std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let events = match events {
        Ok(fd) => fd,
        Err(e) => {
            tracing::warn!("cannot poll the EVENTS ring buffer (epoll_ctl: {e}); refills wait for the 1 s maintenance");
            return;
        }
    };
    loop {
        let mut ready = tokio::select! {
            _ = &mut stop => return,
            ready = events.readable() => match ready {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("polling the EVENTS ring buffer: {e}");
                    return;
                }
            },
        };
        // Cleared before draining: a notice queued meanwhile wakes us again.
        ready.clear_ready();
        let shared = controller.clone();
        let handled = tokio::task::spawn_blocking(move || {
            shared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .process_events()
        })
        .await;
        match handled {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::debug!(services = n, "answered datapath events"),
            Ok(Err(e)) => tracing::warn!("handling datapath events: {e}"),
            Err(e) => tracing::warn!("event handler failed: {e}"),
        }
    }
}

/// Run the configured checkers, following each applied configuration,
/// until `stop`.
async fn supervise<D: Datapath + Send + 'static>(
    controller: Shared<D>,
    mut configured: tokio::sync::watch::Receiver<State>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut supervisor = Supervisor::new(controller);
    loop {
        let state = configured.borrow_and_update().clone();
        supervisor.reconcile(&state);
        tokio::select! {
            _ = &mut stop => break,
            changed = configured.changed() => if changed.is_err() { break },
        }
    }
    supervisor.stop();
}

/// NAT needs forwarding on every interface its packets arrive on, as IPVS's
/// does (DR and TUN do not): one line per interface where it is off, naming
/// the sysctl and the services it breaks. Read at every apply, not once.
fn attachment_view(a: &Attachment) -> AttachmentView {
    AttachmentView {
        iface: a.iface.clone(),
        ifindex: a.ifindex,
        datapath: a.datapath.clone(),
        mode: a.mode.clone(),
        reason: a.reason.clone(),
    }
}

fn forwarding_warnings(interfaces: &[Attachment], state: &State) -> Vec<String> {
    let nat: Vec<String> = state
        .services()
        .filter(|s| {
            s.reals.iter().any(|r| r.method == Method::Nat)
                || s.health.sorry.is_some_and(|x| x.method == Method::Nat)
        })
        .map(|s| s.spec.id.to_string())
        .collect();
    if nat.is_empty() {
        return Vec::new();
    }
    let named = if nat.len() > 3 {
        format!("{} and {} more", nat[..3].join(", "), nat.len() - 3)
    } else {
        nat.join(", ")
    };
    interfaces
        .iter()
        .filter(|a| {
            let sysctl = netconf::ipv4_conf(&a.iface, "forwarding");
            netconf::read_sysctl(&sysctl).is_ok_and(|v| v.trim() == "0")
        })
        .map(|a| {
            format!(
                "net.ipv4.conf.{iface}.forwarding is 0: NAT packets arriving on {iface} are dropped \
                 (drop_forwarding_disabled) for {named}; sysctl -w net.ipv4.conf.{iface}.forwarding=1 \
                 (or net.ipv4.ip_forward=1 for every interface)",
                iface = a.iface
            )
        })
        .collect()
}

fn warn_forwarding(interfaces: &[Attachment], state: &State) {
    for warning in forwarding_warnings(interfaces, state) {
        tracing::warn!("{warning}");
    }
}

/// Real servers (and sorry servers) reached by DR or TUN: the datapath
/// needs their next hop's MAC.
fn forwarded_reals(state: &State) -> BTreeSet<Ipv4Addr> {
    state
        .services()
        .flat_map(|s| {
            s.reals
                .iter()
                .map(|r| (r.server, r.method))
                .chain(s.health.sorry.map(|x| (x.server, x.method)))
        })
        .filter(|(_, method)| *method != Method::Nat)
        .map(|(server, _)| server.addr)
        .collect()
}

/// Next hops lvsd asked the kernel to keep resolved ("managed" neighbours).
/// The XDP FIB lookup then finds the MAC; until it does, DR and TUN frames
/// go through `lvs_neigh`, so none is lost.
#[derive(Default)]
struct Neighbours {
    /// Real server -> (next hop, interface), or `None` when an operator's
    /// static entry already resolves it (not ours to change or delete).
    managed: std::collections::BTreeMap<Ipv4Addr, Option<(Ipv4Addr, String)>>,
    /// Reported once, retried every pass.
    failing: BTreeSet<Ipv4Addr>,
}

impl Neighbours {
    /// Resolve what is new, release what is gone. Returns the changes for
    /// the datapath's `NEXT_HOPS` (which DR and TUN use while forwarding
    /// is off): a real server's next hop, or `None` to forget it.
    fn reconcile(&mut self, wanted: &BTreeSet<Ipv4Addr>) -> Vec<(Ipv4Addr, Option<NextHop>)> {
        let mut changes = Vec::new();
        for real in wanted {
            if self.managed.contains_key(real) {
                continue;
            }
            let result = netconf::route_to(*real).and_then(|route| {
                let ifindex = nix::net::if_::if_nametoindex(route.dev.as_str()).unwrap_or(0);
                let hop = NextHop {
                    ifindex,
                    gateway: route.next_hop.octets(),
                    source: route.source.map_or([0; 4], |a| a.octets()),
                };
                // An operator's static entry is always resolved: leave it be.
                if netconf::static_neighbour(route.next_hop, &route.dev)? {
                    return Ok((hop, None));
                }
                netconf::manage_neighbour(route.next_hop, &route.dev)
                    .map(|()| (hop, Some((route.next_hop, route.dev))))
            });
            match result {
                Ok((next_hop, managed)) => {
                    if let Some((hop, dev)) = &managed {
                        tracing::info!(%real, next_hop = %hop, %dev, "keeping next hop resolved");
                    }
                    self.failing.remove(real);
                    self.managed.insert(*real, managed);
                    changes.push((*real, Some(next_hop)));
                }
                Err(e) => {
                    if self.failing.insert(*real) {
                        tracing::warn!(%real, "cannot keep the next hop resolved: {e}");
                    }
                }
            }
        }
        self.failing.retain(|real| wanted.contains(real));
        let gone: Vec<Ipv4Addr> = self
            .managed
            .keys()
            .filter(|real| !wanted.contains(real))
            .copied()
            .collect();
        for real in gone {
            changes.push((real, None));
            if let Some(Some(hop)) = self.managed.remove(&real) {
                self.release(hop);
            }
        }
        changes
    }

    /// Forget a next hop no remaining real server uses.
    fn release(&self, (hop, dev): (Ipv4Addr, String)) {
        if self
            .managed
            .values()
            .flatten()
            .any(|h| h.0 == hop && h.1 == dev)
        {
            return;
        }
        if let Err(e) = netconf::forget_neighbour(hop, &dev) {
            tracing::debug!("forgetting neighbour {hop} on {dev}: {e}");
        }
    }

    fn forget_all(mut self) {
        for hop in std::mem::take(&mut self.managed).into_values().flatten() {
            self.release(hop);
        }
    }
}

/// Remove the socket file on the way out.
fn unbind(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_datapath::fake::FakeDatapath;

    #[test]
    fn set_timeouts_reaches_the_datapath_and_reads_back() {
        let context = Context {
            interfaces: Vec::new(),
            controller: Arc::new(Mutex::new(Controller::new(FakeDatapath::default()))),
            configured: tokio::sync::watch::channel(State::default()).0,
            ha: None,
        };
        let handle = |c: &Context<FakeDatapath>, r| handle(c, r);
        let shown = |c: &Context<FakeDatapath>| match handle(c, Request::Timeouts) {
            Response::Timeouts(t) => (t.tcp, t.tcp_fin, t.udp),
            other => panic!("{other:?}"),
        };
        assert_eq!(shown(&context), (900, 120, 300));
        let set = |tcp, tcp_fin, udp| {
            handle(
                &context,
                Request::SetTimeouts(IpvsTimeouts { tcp, tcp_fin, udp }),
            )
        };
        assert!(matches!(set(3600, 0, 60), Response::Ok));
        assert_eq!(shown(&context), (3600, 120, 60));
        let written = context.controller.lock().unwrap().datapath().timeouts;
        assert_eq!(IpvsTimeouts::of(&written).tcp, 3600);
        // A bad value changes nothing and names its field.
        let Response::Error { message } = set(1, 1, u32::MAX) else {
            panic!()
        };
        assert!(message.starts_with("invalid udp timeout"), "{message}");
        assert_eq!(shown(&context), (3600, 120, 60));
    }

    #[test]
    fn every_response_serializes() {
        // An internally tagged newtype variant holding a list does not.
        let context = Context {
            interfaces: Vec::new(),
            controller: Arc::new(Mutex::new(Controller::new(FakeDatapath::default()))),
            configured: tokio::sync::watch::channel(State::default()).0,
            ha: None,
        };
        for request in [
            Request::List,
            Request::Timeouts,
            Request::Connections,
            Request::Ha,
        ] {
            let response = handle(&context, request);
            let text = serde_json::to_string(&response).unwrap();
            serde_json::from_str::<Response>(&text).unwrap();
        }
    }
}
