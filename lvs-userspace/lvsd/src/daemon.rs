//! `lvsd`'s tasks, mini-redis style: `run` serves the control socket until
//! the shutdown future resolves, then returns so the caller can detach
//! cleanly. The controller itself belongs to the event loop
//! (`eventloop.rs`); every task here reaches it through a `Handle`.

use std::{
    collections::BTreeSet,
    future::Future,
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use lvs_datapath::{netconf, Attachment, DatapathChoice, KernelDatapath, Lifetime, ResolvedHop};
use lvs_state::{
    api::{AttachmentView, HaView, Request, Response},
    config,
    ha::HaConfig,
    model::{Method, State},
};

use crate::{
    controller::Controller,
    eventloop::{EventLoop, Handle, Message},
    ha::Ha,
    handover,
    health::supervisor::Supervisor,
};

/// How long the datapath of a router of a pair trusts lvsd's last liveness
/// stamp (refreshed four times as often): a connection it accepts after
/// lvsd died, in this window, is one nobody syncs.
const LIVENESS_GRACE: Duration = Duration::from_millis(100);

/// How often expired connections are swept and neighbours reconciled. An
/// expired entry is already dead to the datapath; the sweep frees its slot.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// What `lvsd` is asked to do.
pub struct Options {
    pub interfaces: Vec<String>,
    pub config: Option<config::Source>,
    pub socket: PathBuf,
    /// Outer source address for IP-in-IP; `None` lets the route choose.
    pub tunnel_source: Option<Ipv4Addr>,
    /// lblc/lblcr entry lifetimes.
    pub expirations: crate::controller::Expirations,
    /// Table sizes for the XDP maps.
    pub limits: lvs_datapath::Limits,
    /// Which director each interface gets.
    pub datapath: DatapathChoice,
    pub icmp_errors: IcmpErrors,
    /// IPVS's `sloppy_tcp`: schedule a TCP segment with no connection entry
    /// whatever its flags (a flow ECMP moved from another director).
    pub sloppy_tcp: bool,
    /// Route health injection: the TUN device that holds each VIP with
    /// its quorum, for the routing daemon to announce.
    pub announce: Option<String>,
    /// On a clean stop with `announce`: how long the datapath keeps
    /// forwarding after the VIPs are withdrawn, while routers converge.
    pub announce_drain: Duration,
    /// The bpffs where a router of a pair pins what must outlive it.
    pub bpffs: PathBuf,
}

/// Where ICMP errors about connections go (`lvsd --icmp-errors`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IcmpErrors {
    /// To the host that owns the connection, translated for NAT.
    #[default]
    Translate,
    /// To the kernel, untouched.
    Kernel,
}

/// The whole daemon: check the config, bind the socket, attach, apply,
/// serve until `shutdown`, then detach and remove the socket. Anything that
/// fails before serving leaves nothing attached and no socket behind.
pub async fn start(options: Options, shutdown: impl Future) -> anyhow::Result<()> {
    use anyhow::Context as _;
    // SIGHUP's handler first: its default action would end lvsd (a reload
    // asked for while it starts is done once it serves).
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing SIGHUP's handler")?;
    // Everything that can be checked before touching the kernel is checked first.
    let (commands, ha) = match &options.config {
        Some(source) => {
            let loaded = source.load()?;
            for warning in &loaded.warnings {
                tracing::warn!("{warning}");
            }
            (loaded.commands, loaded.ha)
        }
        None => (Vec::new(), None),
    };
    let reloadable = options.config.clone().map(|source| Reloadable {
        source,
        ha: ha.clone(),
    });
    let listener = bind(&options.socket)?;
    let prepared = (|| {
        let settings = lvs_common::Settings {
            tunnel_source: options.tunnel_source.map_or([0; 4], |a| a.octets()),
            // A router of a pair syncs each new connection at once.
            flags: if ha.is_some() {
                lvs_common::Settings::SYNC_CHANGES
            } else {
                0
            } | match options.icmp_errors {
                IcmpErrors::Translate => 0,
                IcmpErrors::Kernel => lvs_common::Settings::ICMP_ERRORS_TO_KERNEL,
            } | if options.sloppy_tcp {
                lvs_common::Settings::SLOPPY_TCP
            } else {
                0
            },
        };
        // The datapath outlives lvsd (attached by netlink) where its tables
        // can be pinned, for the next lvsd to take over without losing a
        // connection. A router of a pair also when killed, so what still
        // reaches it is not reset before the peer's gratuitous ARPs move
        // the traffic; so does a director of a fleet: until its routes are
        // withdrawn, routers still send it flows of other directors' real
        // servers.
        let pinnable = lvs_datapath::is_bpffs(&options.bpffs);
        if let Err(e) = &pinnable {
            tracing::info!("{e}: lvsd's datapath stops with it, and a restart starts with an empty connection table");
        }
        let lifetime = if pinnable.is_ok() || ha.is_some() || options.announce.is_some() {
            Lifetime::Kernel
        } else {
            Lifetime::Lvsd
        };
        let mut datapath = KernelDatapath::load_for(
            &options.interfaces,
            settings,
            options.limits,
            lifetime,
            options.datapath,
            Some(&options.bpffs),
        )?;
        // What an lvsd before this one left forwarding, read before ours
        // replaces it.
        let previous = datapath.previous()?;
        if let Some(iface) = &options.announce {
            datapath.announce_on(iface)?;
        }
        let mut controller = Controller::new(datapath);
        controller.set_expirations(options.expirations);
        controller
            .apply(&commands)
            .context("applying the configuration")?;
        if let Some(previous) = &previous {
            let now = lvs_datapath::Datapath::now_ns(controller.datapath())?;
            let carried = handover::read(previous, now)?;
            let conns = controller
                .adopt(
                    &carried.conns,
                    &carried.templates,
                    &carried.services,
                    &carried.reals,
                )
                .context("carrying over the previous datapath's tables")?;
            tracing::info!(
                dir = %previous.dir().display(),
                conns,
                templates = carried.templates.len(),
                "took over the tables of the lvsd before this one"
            );
        }
        controller.datapath_mut().attach_interfaces()?;
        if let Some(previous) = &previous {
            // What the old datapath made between the read and its
            // replacement.
            let now = lvs_datapath::Datapath::now_ns(controller.datapath())?;
            let late = controller
                .adopt_missing(&previous.connections(now)?)
                .context("carrying over the previous datapath's last connections")?;
            tracing::info!(
                conns = late,
                "took over the connections made while it was replaced"
            );
            handover::remove_record(previous);
        }
        drop(previous);
        controller.datapath().forget_the_dead();
        warn_forwarding(&controller.datapath().attachments, controller.state());
        anyhow::Ok(controller)
    })();
    // A router of a pair binds its links and gives up floating addresses
    // it may still hold before it serves anything.
    let prepared = prepared.and_then(|c| {
        let ha = ha.map(Ha::prepare).transpose()?;
        anyhow::Ok((c, ha))
    });
    let (mut controller, ha) = match prepared {
        Ok(c) => c,
        Err(e) => {
            unbind(&options.socket);
            return Err(e);
        }
    };
    // A router of a pair stamps its liveness into the datapath, so that if
    // lvsd dies, its datapath stops taking connections nobody will sync and
    // stops answering ARP (and IPv6 neighbour solicitations) for the
    // floating addresses.
    let stamping = match &ha {
        Some(ha) => {
            let floating: Vec<IpAddr> = ha.config().addresses.iter().map(|f| f.addr).collect();
            if let Err(e) = controller.datapath_mut().set_floating(&floating) {
                unbind(&options.socket);
                return Err(e.into());
            }
            controller
                .datapath_mut()
                .liveness()
                .map(|l| Stamping::start(l, LIVENESS_GRACE))
        }
        None => None,
    };
    tracing::info!(socket = %options.socket.display(), services = controller.state().len(), "lvsd ready");
    let interfaces = controller.datapath().attachments.clone();
    let events = controller.datapath().watch_events();
    let conn_changes = match &ha {
        Some(_) => controller.datapath_mut().conn_changes(),
        None => None,
    };
    let (configured, watched) = tokio::sync::watch::channel(controller.state().clone());
    let (handle, owner) = EventLoop::new(controller, interfaces.clone(), configured).spawn();
    let (stop_ha, ha_stopped) = tokio::sync::oneshot::channel();
    let ha_status = ha.as_ref().map(Ha::status);
    let pairing = ha.map(|ha| {
        let conn_changes = match conn_changes {
            Some(Ok(reader)) => Some(reader),
            Some(Err(e)) => {
                tracing::warn!("HA: cannot poll the datapath's new connections (epoll_ctl: {e}); they are synced each round");
                None
            }
            None => None,
        };
        tokio::spawn(ha.run(handle.clone(), conn_changes, ha_stopped))
    });
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let maintenance = tokio::spawn(maintain(handle.clone(), stopped));
    let (stop_events, events_stopped) = tokio::sync::oneshot::channel();
    let listening = tokio::spawn(listen(handle.clone(), events, events_stopped));
    let (stop_health, health_stopped) = tokio::sync::oneshot::channel();
    let checking = tokio::spawn(supervise(handle.clone(), watched, health_stopped));
    let context = Arc::new(Context {
        controller: handle,
        ha: ha_status,
        reload: reloadable,
    });
    let hangups = tokio::spawn(reload_on_hangup(context.clone(), hangups));
    notify(&[sd_notify::NotifyState::Ready]);
    run(context, listener, shutdown).await;
    notify(&[sd_notify::NotifyState::Stopping]);
    hangups.abort();
    let _ = stop_ha.send(());
    if let Some(pairing) = pairing {
        let _ = pairing.await;
    }
    let _ = stop_health.send(());
    let _ = checking.await;
    let _ = stop_events.send(());
    let _ = listening.await;
    let _ = stop.send(());
    let neighbours = maintenance.await.unwrap_or_default();
    // Every handle is gone now: the owner returns the controller, which
    // detaches when dropped.
    let controller = tokio::task::spawn_blocking(move || {
        neighbours.forget_all();
        owner.join()
    })
    .await;
    drop(stamping);
    unbind(&options.socket);
    match controller {
        Ok(Ok(mut controller)) => {
            // keepalived's omega: started, not waited for.
            for command in controller.omega_commands() {
                if let Err(e) = std::process::Command::new("/bin/sh")
                    .arg("-c")
                    .arg(&command)
                    .spawn()
                {
                    tracing::warn!("omega: quorum_down `{command}`: {e}");
                }
            }
            // Withdraw first, then keep forwarding while routers move the
            // flows to other directors.
            if options.announce.is_some() {
                match controller.datapath_mut().withdraw_announcements() {
                    Ok(()) => tokio::time::sleep(options.announce_drain).await,
                    Err(e) => tracing::error!("withdrawing the announced VIPs: {e}"),
                }
            }
            if controller.datapath().can_hand_over() {
                match handover::hand_over(controller) {
                    Ok(()) => tracing::info!(
                        "the datapath goes on forwarding; the next lvsd takes it over \
                         (`lvsd --clean` removes it)"
                    ),
                    Err(e) => tracing::error!("writing the handover record: {e}; the next lvsd carries the connections, not the counters"),
                }
            } else {
                drop(controller)
            }
        }
        _ => tracing::error!("the controller thread ended in a panic"),
    }
    tracing::info!("bye");
    Ok(())
}

/// The thread that keeps lvsd's liveness stamp fresh: its own thread, so
/// that a long task on the controller (a big apply) never lets it lapse.
/// Dropping it stops the stamping (the datapath then treats lvsd as gone).
struct Stamping {
    stop: std::sync::mpsc::Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Stamping {
    fn start(mut liveness: lvs_datapath::Liveness, grace: Duration) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lvsd-liveness".into())
            .spawn(move || {
                let mut failing = false;
                loop {
                    match liveness.refresh(grace) {
                        Ok(()) => failing = false,
                        Err(e) if !failing => {
                            failing = true;
                            tracing::error!("HA: refreshing the datapath's liveness stamp: {e}");
                        }
                        Err(_) => {}
                    }
                    // Four refreshes per grace period.
                    match stopped.recv_timeout(grace / 4) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        _ => return,
                    }
                }
            })
            .expect("spawning the liveness thread");
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Stamping {
    fn drop(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a control connection may reach.
pub struct Context {
    pub controller: Handle,
    /// The router pair's state, when lvsd is one of a pair.
    pub ha: Option<Arc<Mutex<HaView>>>,
    /// The configuration file, when lvsd was started with one.
    pub reload: Option<Reloadable>,
}

/// What a reload reads again, and what it may not change.
pub struct Reloadable {
    pub source: config::Source,
    /// The router pair as lvsd started: a reload that changes it is
    /// refused (its links, addresses and datapath settings are set up at
    /// start).
    pub ha: Option<HaConfig>,
}

/// Tell systemd (`Type=notify`), if it started us; nothing otherwise.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!("telling systemd {state:?}: {e}");
    }
}

/// Read the configuration file again and apply what changed, as one
/// transaction; a file with an error, or one that changes what a reload
/// cannot, changes nothing.
pub async fn reload(context: &Context) -> Response {
    let Some(reloadable) = &context.reload else {
        return Response::Error {
            message: "lvsd runs without a configuration file (--config or --keepalived-conf): there is nothing to reload".into(),
        };
    };
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
    notify(&reloading);
    let source = reloadable.source.clone();
    let path = source.path().display().to_string();
    let loaded = tokio::task::spawn_blocking(move || source.load()).await;
    let refused = |message: String| Response::Error {
        message: format!("{message}\nnothing changed"),
    };
    let response = match loaded {
        Err(e) => refused(format!("reading {path}: {e}")),
        Ok(Err(e)) => refused(e.to_string()),
        Ok(Ok(loaded)) if loaded.ha != reloadable.ha => refused(format!(
            "{path}: the router pair's settings ([ha], or keepalived's vrrp_instance) changed, and a reload does not change them: restart lvsd to apply them"
        )),
        Ok(Ok(loaded)) => {
            let desired = loaded.commands;
            match context
                .controller
                .call(|reply| Message::Reload(desired, reply))
                .await
            {
                None => refused("the controller stopped".into()),
                Some(Err(e)) => refused(format!("{path}: {e}")),
                Some(Ok(changes)) => Response::Reloaded {
                    changes: changes.iter().map(ToString::to_string).collect(),
                    warnings: loaded.warnings,
                },
            }
        }
    };
    notify(&[sd_notify::NotifyState::Ready]);
    response
}

/// SIGHUP reloads, as it does keepalived; the outcome goes to the log.
async fn reload_on_hangup(context: Arc<Context>, mut hangups: tokio::signal::unix::Signal) {
    while hangups.recv().await.is_some() {
        match reload(&context).await {
            Response::Reloaded { changes, warnings } => {
                for w in &warnings {
                    tracing::warn!("{w}");
                }
                for c in &changes {
                    tracing::info!("reload: {c}");
                }
                tracing::info!(changes = changes.len(), "reloaded");
            }
            Response::Error { message } => tracing::error!("reload refused: {message}"),
            other => tracing::error!("reload: unexpected answer {other:?}"),
        }
    }
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
pub async fn run(context: Arc<Context>, listener: UnixListener, shutdown: impl Future) {
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

async fn serve(context: Arc<Context>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Ha) => match &context.ha {
                Some(status) => {
                    Response::Ha(status.lock().unwrap_or_else(|p| p.into_inner()).clone())
                }
                None => Response::Error {
                    message: "lvsd is not one of a router pair (no [ha] in its config)".into(),
                },
            },
            Ok(Request::Reload) => reload(&context).await,
            Ok(request @ Request::ListPacked { .. }) => {
                // Packed here, off the controller's thread.
                match context.controller.request(request).await {
                    Response::Snapshot(snapshot) => {
                        let packed = lvs_state::packed::pack(&snapshot);
                        let header = Response::PackedSnapshot {
                            bytes: packed.len(),
                        };
                        let mut line = serde_json::to_vec(&header).expect("responses serialize");
                        line.push(b'\n');
                        write.write_all(&line).await?;
                        write.write_all(&packed).await?;
                        continue;
                    }
                    other => other,
                }
            }
            Ok(request) => context.controller.request(request).await,
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

/// Once a second: the controller's upkeep (rates, sweep, counts, slow
/// start), then the next hops of DR and TUN real servers kept resolved;
/// the neighbour work runs here, off the controller. Returns the
/// neighbours it manages, for the caller to forget on shutdown.
async fn maintain(controller: Handle, mut stop: tokio::sync::oneshot::Receiver<()>) -> Neighbours {
    let mut neighbours = Neighbours::default();
    let mut tick = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        tokio::select! {
            _ = &mut stop => return neighbours,
            _ = tick.tick() => {}
        }
        let Some(wanted) = controller.call(Message::Maintain).await else {
            return neighbours;
        };
        let mut current = std::mem::take(&mut neighbours);
        let (current, changes) = tokio::task::spawn_blocking(move || {
            let changes = current.reconcile(&wanted);
            (current, changes)
        })
        .await
        .unwrap_or_default();
        neighbours = current;
        if !changes.is_empty() {
            controller.send(Message::NextHops(changes)).await;
        }
    }
}

/// Answer the datapath's notices (`EVENTS`, `EVENTS6`) as they come: a ring
/// at low water is refilled within one wake-up, not at the next maintenance
/// tick.
async fn listen(
    controller: Handle,
    events: std::io::Result<[tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>; 2]>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let [events, events6] = match events {
        Ok(fds) => fds,
        Err(e) => {
            tracing::warn!("cannot poll the EVENTS ring buffers (epoll_ctl: {e}); refills wait for the 1 s maintenance");
            return;
        }
    };
    loop {
        let ready = tokio::select! {
            _ = &mut stop => return,
            ready = events.readable() => ready,
            ready = events6.readable() => ready,
        };
        match ready {
            // Cleared before draining: a notice queued meanwhile wakes us
            // again.
            Ok(mut ready) => ready.clear_ready(),
            Err(e) => {
                tracing::warn!("polling the EVENTS ring buffers: {e}");
                return;
            }
        }
        if !controller.send(Message::DatapathEvents).await {
            return;
        }
    }
}

/// Run the configured checkers, following each applied configuration,
/// until `stop`.
async fn supervise(
    controller: Handle,
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

pub(crate) fn attachment_view(a: &Attachment) -> AttachmentView {
    AttachmentView {
        iface: a.iface.clone(),
        ifindex: a.ifindex,
        datapath: a.datapath.clone(),
        mode: a.mode.clone(),
        reason: a.reason.clone(),
    }
}

/// NAT needs forwarding on every interface its packets arrive on, as IPVS's
/// does (DR and TUN do not), in the service's family: one line per
/// interface where it is off, naming the sysctl and the services it
/// breaks. Read at every apply, not once.
pub(crate) fn forwarding_warnings(interfaces: &[Attachment], state: &State) -> Vec<String> {
    let mut warnings = Vec::new();
    for ipv6 in [false, true] {
        let nat: Vec<String> = state
            .services()
            .filter(|s| s.spec.id.vip.addr.is_ipv6() == ipv6)
            .filter(|s| {
                s.reals.iter().any(|r| r.method == Method::Nat)
                    || s.health.sorry.is_some_and(|x| x.method == Method::Nat)
            })
            .map(|s| s.spec.id.to_string())
            .collect();
        if nat.is_empty() {
            continue;
        }
        let named = if nat.len() > 3 {
            format!("{} and {} more", nat[..3].join(", "), nat.len() - 3)
        } else {
            nat.join(", ")
        };
        let (family, all) = if ipv6 {
            ("ipv6", "net.ipv6.conf.all.forwarding=1")
        } else {
            ("ipv4", "net.ipv4.ip_forward=1")
        };
        for a in interfaces {
            let sysctl = if ipv6 {
                netconf::ipv6_conf(&a.iface, "forwarding")
            } else {
                netconf::ipv4_conf(&a.iface, "forwarding")
            };
            if netconf::read_sysctl(&sysctl).is_ok_and(|v| v.trim() == "0") {
                warnings.push(format!(
                    "net.{family}.conf.{iface}.forwarding is 0: NAT packets arriving on {iface} are \
                     dropped (drop_forwarding_disabled) for {named}; sysctl -w \
                     net.{family}.conf.{iface}.forwarding=1 (or {all} for every interface)",
                    iface = a.iface
                ));
            }
        }
    }
    warnings
}

pub(crate) fn warn_forwarding(interfaces: &[Attachment], state: &State) {
    for warning in forwarding_warnings(interfaces, state) {
        tracing::warn!("{warning}");
    }
}

/// Real servers (and sorry servers) reached by DR or TUN: the datapath
/// needs their next hop's MAC.
pub(crate) fn forwarded_reals(state: &State) -> BTreeSet<IpAddr> {
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
    managed: std::collections::BTreeMap<IpAddr, Option<(IpAddr, String)>>,
    /// Reported once, retried every pass.
    failing: BTreeSet<IpAddr>,
}

impl Neighbours {
    /// Resolve what is new, release what is gone. Returns the changes for
    /// the datapath's `NEXT_HOPS` (which DR and TUN use while forwarding
    /// is off): a real server's next hop, or `None` to forget it.
    fn reconcile(&mut self, wanted: &BTreeSet<IpAddr>) -> Vec<(IpAddr, Option<ResolvedHop>)> {
        let mut changes = Vec::new();
        for real in wanted {
            if self.managed.contains_key(real) {
                continue;
            }
            let result = netconf::route_to(*real).and_then(|route| {
                let ifindex = nix::net::if_::if_nametoindex(route.dev.as_str()).unwrap_or(0);
                let hop = ResolvedHop {
                    ifindex,
                    gateway: route.next_hop,
                    source: route.source,
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
        let gone: Vec<IpAddr> = self
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
    fn release(&self, (hop, dev): (IpAddr, String)) {
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
