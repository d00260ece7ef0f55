//! The controller's one owner, as firezone's relay `Eventloop` owns its
//! server: control requests, the datapath's notices, health transitions,
//! HA sync and the maintenance tick are messages to one thread that holds
//! the `Controller`. Nothing else reaches it, so no task waits on a lock
//! held across work; and a panic while it writes the maps is caught here,
//! logged, and followed by `Controller::recover` (the batch in flight put
//! back, every service republished) before the next message.

use std::{collections::BTreeSet, panic::AssertUnwindSafe};

use lvs_datapath::{Attachment, Datapath};
use lvs_ha::conn::{SyncConn, SyncTemplate};
use lvs_state::{
    api::{DatapathView, IpvsTimeouts, Request, Response},
    model::{Command, Endpoint, Method, ServiceId, State},
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{
    controller::{ControlError, Controller},
    daemon::{attachment_view, forwarded_reals, forwarding_warnings, warn_forwarding},
    health::condition::{AgentState, Shift},
};

/// How many messages may wait; senders wait beyond that.
const QUEUE: usize = 1024;

/// What the owner is asked to do.
pub enum Message {
    /// An `lvsadm` request (all but `Ha`, which the HA task answers).
    Request(Request, oneshot::Sender<Response>),
    /// The datapath's ring buffer holds notices (low water, destinations).
    DatapathEvents,
    /// A checker of a real server went up (`failure: None`) or down, or,
    /// up, moved the server's weight (`shift`).
    Check {
        service: ServiceId,
        server: Endpoint,
        index: usize,
        /// `Check::fingerprint` of the checker that reports.
        fingerprint: u64,
        failure: Option<String>,
        shift: Option<Shift>,
    },
    /// A load agent's new report.
    Agent {
        service: ServiceId,
        server: Endpoint,
        percent: Option<u32>,
        state: Option<AgentState>,
    },
    /// HA, active: the whole tables, for a backup that asked for a resync.
    HaExport(oneshot::Sender<Result<Exported, ControlError>>),
    /// HA, active: what changed since the last call, for a sync round.
    HaChanges(oneshot::Sender<Result<Changes, ControlError>>),
    /// HA, backup: what the peer sent. Answers how many records were written.
    HaImport(Imported, oneshot::Sender<Result<usize, ControlError>>),
    /// The once-a-second upkeep. Answers the real servers whose next hop
    /// lvsd keeps resolved.
    Maintain(oneshot::Sender<BTreeSet<std::net::IpAddr>>),
    /// Next hops resolved (or forgotten) for the datapath.
    NextHops(Vec<(std::net::IpAddr, Option<lvs_datapath::ResolvedHop>)>),
    /// Routes may have changed (an HA takeover or release moved addresses):
    /// established flows look their way up again.
    RenewEgress,
    /// A reload: the commands that build the configuration file's state.
    /// The owner applies only what differs from its own, as one
    /// transaction; answers the commands it applied.
    Reload(Vec<Command>, oneshot::Sender<Result<Vec<Command>, String>>),
}

/// The active's connections and templates.
pub type Exported = (Vec<SyncConn>, Vec<SyncTemplate>);

/// A sync round's share: the connections the sweeper found used since it
/// last passed them and those it removed (no table walk), and every
/// persistence template.
#[derive(Debug, Default)]
pub struct Changes {
    pub used: Vec<SyncConn>,
    pub removed: Vec<SyncConn>,
    pub templates: Vec<SyncTemplate>,
}

/// A sync datagram's records, by what they ask.
#[derive(Debug, Default)]
pub struct Imported {
    pub upserts: Vec<SyncConn>,
    pub removes: Vec<SyncConn>,
    pub templates: Vec<SyncTemplate>,
    pub expired: Vec<SyncTemplate>,
}

impl Message {
    fn name(&self) -> &'static str {
        match self {
            Message::Request(..) => "control request",
            Message::DatapathEvents => "datapath events",
            Message::Check { .. } => "health check",
            Message::Agent { .. } => "agent report",
            Message::HaExport(_) => "HA export",
            Message::HaChanges(_) => "HA changes",
            Message::HaImport(..) => "HA import",
            Message::Maintain(_) => "maintenance",
            Message::NextHops(_) => "next hops",
            Message::RenewEgress => "renew egress",
            Message::Reload(..) => "reload",
        }
    }
}

/// The way to the owner; cheap to clone.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Message>,
}

impl Handle {
    /// A handle whose messages a test reads itself.
    #[cfg(test)]
    pub(crate) fn for_test() -> (Handle, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Handle { tx }, rx)
    }

    /// Send without waiting for an answer; false once the owner is gone.
    pub async fn send(&self, message: Message) -> bool {
        self.tx.send(message).await.is_ok()
    }

    /// Send and wait for the answer; `None` if the owner is gone or failed
    /// while handling it.
    pub async fn call<T>(&self, message: impl FnOnce(oneshot::Sender<T>) -> Message) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        if !self.send(message(reply)).await {
            return None;
        }
        answer.await.ok()
    }

    pub async fn request(&self, request: Request) -> Response {
        self.call(|reply| Message::Request(request, reply))
            .await
            .unwrap_or_else(|| Response::Error {
                message: "lvsd's controller failed while handling the request (see its log); \
                          nothing of it was kept"
                    .into(),
            })
    }
}

/// The owner and what it needs besides the controller.
pub struct EventLoop<D> {
    controller: Controller<D>,
    /// Which director each interface runs.
    interfaces: Vec<Attachment>,
    /// The configuration the health supervisor follows.
    configured: watch::Sender<State>,
}

impl<D: Datapath + Send + 'static> EventLoop<D> {
    /// Start the owner on its own thread. It runs until every `Handle` is
    /// dropped, then hands the controller back through the join handle.
    pub fn spawn(self) -> (Handle, std::thread::JoinHandle<Controller<D>>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let owner = std::thread::Builder::new()
            .name("lvsd-controller".into())
            .spawn(move || self.run(rx))
            .expect("spawning the controller thread");
        (Handle { tx }, owner)
    }
}

impl<D: Datapath> EventLoop<D> {
    pub fn new(
        controller: Controller<D>,
        interfaces: Vec<Attachment>,
        configured: watch::Sender<State>,
    ) -> Self {
        Self {
            controller,
            interfaces,
            configured,
        }
    }

    fn run(mut self, mut inbox: mpsc::Receiver<Message>) -> Controller<D> {
        loop {
            // The sweeper's steps run while nothing else waits.
            let message = if self.controller.sweep_pending() {
                match inbox.try_recv() {
                    Ok(message) => message,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.guarded("sweep", |this| this.sweep_step());
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                }
            } else {
                match inbox.blocking_recv() {
                    Some(message) => message,
                    None => break,
                }
            };
            let name = message.name();
            self.guarded(name, |this| this.handle(message));
            for change in self.controller.take_quorum_changes() {
                run_quorum_command(change);
            }
        }
        self.controller
    }

    /// Run `work`; after a panic, put back the change in flight and
    /// republish.
    fn guarded(&mut self, name: &'static str, work: impl FnOnce(&mut Self)) {
        // The reply channel, if any, is dropped by the unwind: the sender
        // learns that its message failed.
        let handled = std::panic::catch_unwind(AssertUnwindSafe(|| work(self)));
        if handled.is_err() {
            tracing::error!(
                message = name,
                "the controller panicked; putting back the change in flight and \
                 republishing every service"
            );
            match self.controller.recover() {
                Ok(()) => tracing::info!("maps match the configuration again"),
                Err(e) => tracing::error!("republishing after the panic failed: {e}"),
            }
        }
    }

    fn sweep_step(&mut self) {
        match self.controller.sweep_step() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "swept expired connections"),
            Err(e) => tracing::warn!("sweeping the connection table: {e}"),
        }
    }

    pub fn handle(&mut self, message: Message) {
        let c = &mut self.controller;
        match message {
            Message::Request(request, reply) => {
                let _ = reply.send(self.request(request));
            }
            Message::DatapathEvents => match c.process_events() {
                Ok(0) => {}
                Ok(n) => tracing::debug!(services = n, "answered datapath events"),
                Err(e) => tracing::warn!("handling datapath events: {e}"),
            },
            Message::Check {
                service,
                server,
                index,
                fingerprint,
                failure,
                shift,
            } => {
                if !c.is_current_checker(service, server, index, fingerprint) {
                    tracing::debug!(%service, %server, check = index + 1, "a replaced checker's report, ignored");
                } else if let Err(e) = c.set_check(service, server, index, failure, shift) {
                    tracing::warn!("applying a health change: {e}");
                }
            }
            Message::Agent {
                service,
                server,
                percent,
                state,
            } => {
                if !c.has_agent(service, server) {
                    tracing::debug!(%service, %server, "a removed agent's report, ignored");
                } else if let Err(e) = c.set_agent(service, server, percent, state) {
                    tracing::warn!("applying an agent report: {e}");
                }
            }
            Message::HaExport(reply) => {
                let both = c
                    .export_connections()
                    .and_then(|conns| Ok((conns, c.export_templates()?)));
                let _ = reply.send(both);
            }
            Message::HaChanges(reply) => {
                let changes = c.export_templates().map(|templates| {
                    let (used, removed) = c.sync_changes();
                    Changes {
                        used,
                        removed,
                        templates,
                    }
                });
                let _ = reply.send(changes);
            }
            Message::HaImport(sync, reply) => {
                let written = (|| {
                    c.forget_connections(&sync.removes)?;
                    c.forget_templates(&sync.expired)?;
                    Ok(c.import_connections(&sync.upserts)?
                        + c.import_templates(&sync.templates)?)
                })();
                let _ = reply.send(written);
            }
            Message::Maintain(reply) => {
                self.maintain();
                let _ = reply.send(forwarded_reals(self.controller.state()));
            }
            Message::NextHops(changes) => {
                for (real, hop) in changes {
                    let written = match hop {
                        Some(hop) => c.datapath_mut().set_next_hop(real, hop),
                        None => c.datapath_mut().remove_next_hop(real),
                    };
                    if let Err(e) = written {
                        tracing::warn!(%real, "next hop for the datapath: {e}");
                    }
                }
                if let Err(e) = c.renew_egress() {
                    tracing::warn!("renewing the cached egress: {e}");
                }
            }
            Message::RenewEgress => {
                if let Err(e) = c.renew_egress() {
                    tracing::warn!("renewing the cached egress: {e}");
                }
            }
            Message::Reload(desired, reply) => {
                let _ = reply.send(self.reload(&desired));
            }
        }
    }

    /// The difference between the running state and `desired`, applied as
    /// one `Apply` (so checkers hear of it as of any change).
    fn reload(&mut self, desired: &[Command]) -> Result<Vec<Command>, String> {
        let mut wanted = State::default();
        wanted.apply_all(desired).map_err(|e| e.to_string())?;
        let changes = self.controller.state().changes_to(&wanted);
        if changes.is_empty() {
            return Ok(changes);
        }
        match self.request(Request::Apply {
            commands: changes.clone(),
        }) {
            Response::Ok => Ok(changes),
            Response::Error { message } => Err(message),
            other => Err(format!(
                "unexpected answer to the reload's batch: {other:?}"
            )),
        }
    }

    /// Sample the rate estimators (every other second), sweep expired
    /// connections, count the live ones (and refill the rings that depend
    /// on the counts), and move slow start on.
    fn maintain(&mut self) {
        let c = &mut self.controller;
        // First, so that the sweep's and count's time does not stretch
        // the estimator's period.
        if let Err(e) = c.estimate() {
            tracing::warn!("sampling the rate estimators: {e}");
        }
        // The tick's share of the table is read in steps between messages.
        c.begin_sweep();
        match c.recount() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rings = n, "refilled count-driven rings"),
            Err(e) => tracing::warn!("counting connections: {e}"),
        }
        // Routes and neighbours change without telling: what established
        // flows cached is at most a second old.
        if let Err(e) = c.renew_egress() {
            tracing::warn!("renewing the cached egress: {e}");
        }
        match c.advance_ramps() {
            Ok(0) => {}
            Ok(n) => tracing::debug!(services = n, "slow start moved on"),
            Err(e) => tracing::warn!("moving slow start on: {e}"),
        }
        // An announcement that failed is tried again.
        c.announce();
    }

    /// One control request. An applied change that concerns health checks
    /// goes to the supervisor.
    pub fn request(&mut self, request: Request) -> Response {
        let c = &mut self.controller;
        let result = match request {
            Request::Apply { commands } => {
                let checked_before = concerns_checks(c.state(), &commands);
                let r = c.apply(&commands).map(|()| Response::Ok);
                if r.is_ok() {
                    match commands.as_slice() {
                        few @ ([_] | [_, _] | [_, _, _]) => {
                            tracing::info!(commands = ?few, "applied")
                        }
                        many => tracing::info!(commands = many.len(), "applied a batch"),
                    }
                    if checked_before || concerns_checks(c.state(), &commands) {
                        self.configured.send_replace(c.state().clone());
                    }
                    if adds_nat(&commands) {
                        warn_forwarding(&self.interfaces, c.state());
                    }
                }
                r
            }
            Request::Datapath => (|| {
                let verdicts = c.datapath().verdicts()?;
                let half_open_evicted = c.datapath().half_open_evicted()?;
                let icmp_errors = c.datapath().icmp_errors()?;
                Ok(Response::Datapath(DatapathView {
                    interfaces: self.interfaces.iter().map(attachment_view).collect(),
                    verdicts: verdicts
                        .into_iter()
                        .map(|(v, n)| (v.name().to_string(), n))
                        .collect(),
                    half_open_evicted,
                    icmp_errors: icmp_errors
                        .into_iter()
                        .map(|(case, n)| (case.name().to_string(), n))
                        .collect(),
                    warnings: forwarding_warnings(&self.interfaces, c.state()),
                    sloppy_tcp: c.datapath().settings().sloppy_tcp(),
                }))
            })(),
            Request::Zero { service } => c.zero(service).map(|()| Response::Ok),
            Request::List => c.snapshot().map(Response::Snapshot),
            Request::ListPacked { counters } => c.snapshot_with(counters).map(Response::Snapshot),
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
            Request::Ha => Ok(Response::Error {
                message: "lvsd is not one of a router pair (no [ha] in its config)".into(),
            }),
            // The daemon reads the file, off this thread, and sends `Reload`.
            Request::Reload => Ok(Response::Error {
                message: "a reload is answered by the daemon, not the controller".into(),
            }),
        };
        result.unwrap_or_else(|e| Response::Error {
            message: e.to_string(),
        })
    }

    pub fn controller(&self) -> &Controller<D> {
        &self.controller
    }
}

/// Whether `commands` touch a service with health checks in `state`, or
/// configure some: only then does the supervisor need the new state.
fn concerns_checks(state: &State, commands: &[Command]) -> bool {
    commands.iter().any(|command| {
        matches!(command, Command::SetRealHealth { .. })
            || state
                .affected(command)
                .iter()
                .any(|id| state.service(id).is_some_and(|s| !s.checks.is_empty()))
    })
}

/// Whether `commands` add or change a NAT real or sorry server: only then
/// can a forwarding sysctl newly matter.
fn adds_nat(commands: &[Command]) -> bool {
    commands.iter().any(|command| match command {
        Command::AddReal { real, .. } | Command::EditReal { real, .. } => {
            real.method == Method::Nat
        }
        Command::SetServiceHealth { health, .. } => {
            health.sorry.is_some_and(|s| s.method == Method::Nat)
        }
        _ => false,
    })
}

/// keepalived's `quorum_up`/`quorum_down`: the service's command, by
/// `/bin/sh -c`, waited for on a thread of its own (the controller never
/// waits for a script).
fn run_quorum_command(change: crate::controller::QuorumChange) {
    let Some(command) = change.command else {
        return;
    };
    let what = if change.up {
        "quorum_up"
    } else {
        "quorum_down"
    };
    let service = change.service;
    let spawned = std::thread::Builder::new()
        .name("lvsd-quorum".into())
        .spawn(move || {
            match std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg(&command)
                .status()
            {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    tracing::warn!(service = %service, "{what} `{command}` exited with {status}")
                }
                Err(e) => tracing::warn!(service = %service, "{what} `{command}`: {e}"),
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("spawning a thread for {what}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lvs_datapath::fake::FakeDatapath;

    #[test]
    fn set_timeouts_reaches_the_datapath_and_reads_back() {
        let mut context = EventLoop::new(
            Controller::new(FakeDatapath::default()),
            Vec::new(),
            watch::channel(State::default()).0,
        );

        let shown = |c: &mut EventLoop<FakeDatapath>| match c.request(Request::Timeouts) {
            Response::Timeouts(t) => (t.tcp, t.tcp_fin, t.udp),
            other => panic!("{other:?}"),
        };
        assert_eq!(shown(&mut context), (900, 120, 300));
        let set = |c: &mut EventLoop<FakeDatapath>, tcp, tcp_fin, udp| {
            c.request(Request::SetTimeouts(IpvsTimeouts { tcp, tcp_fin, udp }))
        };
        assert!(matches!(set(&mut context, 3600, 0, 60), Response::Ok));
        assert_eq!(shown(&mut context), (3600, 120, 60));
        let written = context.controller().datapath().timeouts;
        assert_eq!(IpvsTimeouts::of(&written).tcp, 3600);
        // A bad value changes nothing and names its field.
        let Response::Error { message } = set(&mut context, 1, 1, u32::MAX) else {
            panic!()
        };
        assert!(message.starts_with("invalid udp timeout"), "{message}");
        assert_eq!(shown(&mut context), (3600, 120, 60));
    }

    #[test]
    fn every_response_serializes() {
        // An internally tagged newtype variant holding a list does not.
        let mut context = EventLoop::new(
            Controller::new(FakeDatapath::default()),
            Vec::new(),
            watch::channel(State::default()).0,
        );
        for request in [
            Request::List,
            Request::Timeouts,
            Request::Connections,
            Request::Ha,
        ] {
            let response = context.request(request);
            let text = serde_json::to_string(&response).unwrap();
            serde_json::from_str::<Response>(&text).unwrap();
        }
    }

    #[test]
    fn takeovers_next_hops_and_every_tick_renew_the_cached_egress() {
        let mut context = EventLoop::new(
            Controller::new(FakeDatapath::default()),
            Vec::new(),
            watch::channel(State::default()).0,
        );
        let generation = |c: &EventLoop<FakeDatapath>| c.controller().datapath().egress_generation;
        context.handle(Message::RenewEgress);
        assert_eq!(generation(&context), 1);
        context.handle(Message::NextHops(Vec::new()));
        assert_eq!(generation(&context), 2);
        let (reply, _answer) = oneshot::channel();
        context.handle(Message::Maintain(reply));
        assert_eq!(generation(&context), 3);
    }
}
