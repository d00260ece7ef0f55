//! lvsd's side of the router pair: heartbeats on every link, the election,
//! taking and releasing the floating addresses, and connection sync (the
//! active router streams its table; the backup writes it into its own).

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle, time::MissedTickBehavior};

use lvs_common::addr::{Addr, In6};
use lvs_datapath::{netconf, ConnChanges, ConnEntries};
use lvs_ha::{
    conn::{SyncConn, SyncTemplate},
    election::{Admission, Election, Freshness, Peer, Settings, Transition},
    sync::TemplateExporter,
    wire::{
        max_records, method_from_wire, method_to_wire, Header, Kind, Message, Op, Record, Role,
    },
};
use lvs_state::{
    api::{HaCounters, HaPeerView, HaTransitionView, HaView},
    ha::{Floating, HaConfig},
};

use crate::eventloop::{self, Handle, Imported};

#[derive(Debug, thiserror::Error)]
pub enum HaError {
    #[error("binding the HA socket {addr} on link `{iface}` failed: {source}")]
    Bind {
        iface: String,
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    #[error("releasing floating address {floating} at start failed: {source}")]
    Release {
        floating: Floating,
        source: netconf::NetconfError,
    },
}

/// A router of the pair, ready to run.
pub struct Ha {
    config: HaConfig,
    sockets: Vec<Arc<UdpSocket>>,
    /// This run's boot id: a restarted router's is larger.
    boot: u64,
    status: Arc<Mutex<HaView>>,
}

impl Ha {
    /// Bind every link's socket and give up any floating address this
    /// router still holds (it starts as backup, and a router killed while
    /// active leaves them configured). Must run inside the tokio runtime.
    pub fn prepare(config: HaConfig) -> Result<Ha, HaError> {
        let mut sockets = Vec::new();
        for link in &config.links {
            let addr = SocketAddrV4::new(link.local, config.port);
            let bind = |source| HaError::Bind {
                iface: link.iface.clone(),
                addr,
                source,
            };
            let std = std::net::UdpSocket::bind(addr).map_err(bind)?;
            std.set_nonblocking(true).map_err(bind)?;
            sockets.push(Arc::new(UdpSocket::from_std(std).map_err(bind)?));
        }
        for floating in &config.addresses {
            release(floating).map_err(|source| HaError::Release {
                floating: floating.clone(),
                source,
            })?;
        }
        let boot = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let status = Arc::new(Mutex::new(HaView {
            role: Role::Backup,
            node: config.node(),
            priority: config.priority,
            preempt: config.preempt,
            addresses: config.addresses.iter().map(|f| f.to_string()).collect(),
            peer: None,
            last_transition: None,
            counters: HaCounters::default(),
        }));
        Ok(Ha {
            config,
            sockets,
            boot,
            status,
        })
    }

    /// The configured pair: floating addresses and timing.
    pub fn config(&self) -> &HaConfig {
        &self.config
    }

    /// What `lvsadm ha` shows, kept current by `run`.
    pub fn status(&self) -> Arc<Mutex<HaView>> {
        self.status.clone()
    }

    /// Run the pair's protocol until `stop`. `conn_changes`, the datapath's
    /// record of each new connection and state change, lets the active
    /// router send them at once.
    pub async fn run(
        self,
        controller: Handle,
        mut conn_changes: Option<(ConnChanges, ConnChanges<In6>)>,
        mut stop: tokio::sync::oneshot::Receiver<()>,
    ) {
        let (tx, mut rx) = mpsc::channel(1024);
        let readers: Vec<JoinHandle<()>> = self
            .sockets
            .iter()
            .enumerate()
            .map(|(link, socket)| tokio::spawn(read(link, socket.clone(), tx.clone())))
            .collect();
        let mut node = Node::new(self, controller);
        let mut heartbeat = ticker(node.config.interval_ms);
        let mut sync = ticker(node.config.sync_interval_ms);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = heartbeat.tick() => node.beat().await,
                _ = sync.tick() => node.sync_round().await,
                flows = next_changes(&mut conn_changes) => node.sync_changed(flows).await,
                Some((link, datagram, from)) = rx.recv() => node.receive(link, &datagram, from).await,
            }
            node.publish_status();
        }
        for r in readers {
            r.abort();
        }
        // A clean stop gives the addresses up at once; the peer takes
        // over after the dead time.
        if node.election.role() == Role::Active {
            for f in &node.config.addresses {
                if let Err(e) = release(f) {
                    tracing::warn!("HA: releasing {f} on the way out: {e}");
                }
            }
        }
    }
}

/// The next connection changes the datapath reports, of either family, as
/// the pair names them; never, without them.
async fn next_changes(flows: &mut Option<(ConnChanges, ConnChanges<In6>)>) -> Vec<SyncConn> {
    /// Just created or moved: idle for no time.
    fn named<A: Addr>(batch: ConnEntries<A>) -> Vec<SyncConn> {
        batch
            .iter()
            .filter_map(|(key, conn)| SyncConn::of(key, conn, conn.last_seen_ns))
            .collect()
    }
    if let Some((v4, v6)) = flows {
        let batch = tokio::select! {
            batch = v4.next() => batch.map(named),
            batch = v6.next() => batch.map(named),
        };
        match batch {
            Ok(batch) => return batch,
            Err(e) => {
                tracing::warn!("HA: reading connection changes from the datapath: {e}; they wait for the sweeper");
                *flows = None;
            }
        }
    }
    std::future::pending().await
}

fn ticker(ms: u64) -> tokio::time::Interval {
    let mut t = tokio::time::interval(Duration::from_millis(ms.max(1)));
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

async fn read(link: usize, socket: Arc<UdpSocket>, tx: mpsc::Sender<(usize, Vec<u8>, SocketAddr)>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match socket.recv_from(&mut buf).await {
            Ok((n, from)) => {
                if tx.send((link, buf[..n].to_vec(), from)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("HA: receiving on link {link}: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn release(f: &Floating) -> Result<(), netconf::NetconfError> {
    if netconf::has_address(&f.iface, f.addr)? {
        netconf::remove_address(&f.iface, f.addr, f.prefix)?;
        tracing::info!("HA: released {f}");
    }
    Ok(())
}

struct Node {
    config: HaConfig,
    sockets: Vec<Arc<UdpSocket>>,
    boot: u64,
    seq: u64,
    epoch: Instant,
    election: Election,
    freshness: Freshness,
    templates: TemplateExporter,
    /// Backup: the active peer boot whose full resync arrived, and when it
    /// was last asked for.
    resynced_boot: Option<u64>,
    asked_resync: Option<Instant>,
    counters: HaCounters,
    /// The gratuitous ARP burst under way, and when a healed split last
    /// made this router announce again.
    announcing: Option<JoinHandle<()>>,
    reasserted: Option<Instant>,
    peer_was_live: bool,
    /// When the last sync round started, and how long reading took.
    last_round: Option<(Instant, Duration)>,
    status: Arc<Mutex<HaView>>,
    controller: Handle,
}

impl Node {
    fn new(ha: Ha, controller: Handle) -> Self {
        let settings = Settings {
            node: ha.config.node(),
            priority: ha.config.priority,
            preempt: ha.config.preempt,
            dead_ns: ha.config.dead_ms * 1_000_000,
        };
        Self {
            election: Election::new(settings, 0),
            config: ha.config,
            sockets: ha.sockets,
            boot: ha.boot,
            seq: 0,
            epoch: Instant::now(),
            freshness: Freshness::default(),
            templates: TemplateExporter::default(),
            resynced_boot: None,
            asked_resync: None,
            counters: HaCounters::default(),
            announcing: None,
            reasserted: None,
            peer_was_live: false,
            last_round: None,
            status: ha.status,
            controller,
        }
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn header(&mut self, kind: Kind) -> Header {
        self.seq += 1;
        Header {
            kind,
            role: self.election.role(),
            priority: self.config.priority,
            node: self.config.node(),
            boot: self.boot,
            seq: self.seq,
            full: false,
            last: false,
            ipv6: false,
        }
    }

    /// The same datagram on every link; the peer drops the copies.
    async fn send(&mut self, message: &Message) -> bool {
        let datagram = match message.try_emit(&self.config.key) {
            Ok(datagram) => datagram,
            Err(e) => {
                tracing::error!("HA: not sending a {} message: {e}", message.header.kind);
                return false;
            }
        };
        let mut delivered = false;
        for (link, socket) in self.config.links.iter().zip(&self.sockets) {
            match socket
                .send_to(&datagram, (link.peer, self.config.port))
                .await
            {
                Ok(_) => delivered = true,
                Err(e) => tracing::debug!("HA: sending on {}: {e}", link.iface),
            }
        }
        delivered
    }

    async fn beat(&mut self) {
        let header = self.header(Kind::Heartbeat);
        if self
            .send(&Message {
                header,
                records: Vec::new(),
            })
            .await
        {
            self.counters.heartbeats_sent += 1;
        }
        let now = self.now_ns();
        if let Some(t) = self.election.on_tick(now) {
            self.transition(t).await;
        }
        // An active router stays active when its peer falls silent; say so,
        // or a split would leave no trace on this side.
        let live = self.election.live_peer(now);
        if let (true, None, Some(p)) = (self.peer_was_live, live, self.election.peer()) {
            tracing::warn!(peer = %p.node, role = ?self.election.role(), "HA: no heartbeat from the peer for the dead time");
        }
        self.peer_was_live = live.is_some();
        self.ask_resync().await;
    }

    /// Backup: ask the live active peer for its whole table, once per
    /// boot of it, again each second until the last batch arrives.
    async fn ask_resync(&mut self) {
        let Some(peer) = self.election.live_peer(self.now_ns()) else {
            return;
        };
        let due = self.election.role() == Role::Backup
            && peer.role == Role::Active
            && self.resynced_boot != Some(peer.boot)
            && self
                .asked_resync
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            let header = self.header(Kind::ResyncRequest);
            self.send(&Message {
                header,
                records: Vec::new(),
            })
            .await;
            self.asked_resync = Some(Instant::now());
            tracing::info!(peer = %peer.node, "HA: asked the active peer for a full resync");
        }
    }

    /// The active's connections and persistence templates, read under
    /// one lock.
    async fn export(&self) -> (Vec<SyncConn>, Vec<SyncTemplate>) {
        match self.controller.call(eventloop::Message::HaExport).await {
            Some(Ok(both)) => both,
            Some(Err(e)) => {
                tracing::warn!("HA: reading the tables for sync: {e}");
                Default::default()
            }
            None => {
                tracing::warn!("HA: sync export failed (the controller is gone)");
                Default::default()
            }
        }
    }

    /// Active: send connections as the datapath creates them or moves their
    /// state, so that a takeover a few milliseconds later keeps them as
    /// they are.
    async fn sync_changed(&mut self, flows: Vec<SyncConn>) {
        if self.election.role() != Role::Active || self.election.live_peer(self.now_ns()).is_none()
        {
            return;
        }
        let records = flows
            .iter()
            .filter_map(|c| conn_record(Op::Upsert, c))
            .collect();
        self.send_records(records, false).await;
    }

    /// Active: send what changed since the last round: the connections
    /// the sweeper found used since it last passed them (so the backup's
    /// copies of busy ones never expire), those it removed, and the
    /// templates that changed. New connections went as they were created.
    /// Templates are read whole, so rounds are spaced to at least four
    /// times the last read.
    async fn sync_round(&mut self) {
        if self.election.role() != Role::Active || self.election.live_peer(self.now_ns()).is_none()
        {
            return;
        }
        if let Some((at, took)) = self.last_round {
            if at.elapsed() < took * 4 {
                return;
            }
        }
        let started = Instant::now();
        let changes = match self.controller.call(eventloop::Message::HaChanges).await {
            Some(Ok(changes)) => changes,
            Some(Err(e)) => {
                tracing::warn!("HA: reading the changes for sync: {e}");
                return;
            }
            None => {
                tracing::warn!("HA: sync round failed (the controller is gone)");
                return;
            }
        };
        self.last_round = Some((started, started.elapsed()));
        let now_ms = self.now_ns() / 1_000_000;
        let mut records: Vec<Record> = changes
            .used
            .iter()
            .filter_map(|c| conn_record(Op::Upsert, c))
            .chain(
                changes
                    .removed
                    .iter()
                    .filter_map(|c| conn_record(Op::Remove, c)),
            )
            .collect();
        records.extend(
            self.templates
                .changes(now_ms, &changes.templates)
                .iter()
                .filter_map(|(op, t)| template_record(*op, t)),
        );
        self.send_records(records, false).await;
    }

    async fn full_resync(&mut self) {
        let (conns, templates) = self.export().await;
        let now_ms = self.now_ns() / 1_000_000;
        let mut records: Vec<Record> = conns
            .iter()
            .filter_map(|c| conn_record(Op::Upsert, c))
            .collect();
        records.extend(
            self.templates
                .full(now_ms, &templates)
                .iter()
                .filter_map(|t| template_record(Op::TemplateUpsert, t)),
        );
        self.send_records(records, true).await;
        self.counters.full_resyncs_sent += 1;
        tracing::info!(
            connections = conns.len(),
            templates = templates.len(),
            "HA: sent a full resync"
        );
    }

    /// Send `records` in as few datagrams as hold them, IPv4 and IPv6
    /// records apart (a message carries one family). A full resync ends
    /// with a LAST batch, even an empty one.
    async fn send_records(&mut self, records: Vec<Record>, full: bool) {
        if records.is_empty() && !full {
            return;
        }
        let (v6, v4): (Vec<Record>, Vec<Record>) = records.into_iter().partition(Record::ipv6);
        let mut batches: Vec<&[Record]> = v4
            .chunks(max_records(false))
            .chain(v6.chunks(max_records(true)))
            .collect();
        if batches.is_empty() {
            batches.push(&[]);
        }
        let count = batches.len();
        for (i, batch) in batches.into_iter().enumerate() {
            let mut header = self.header(Kind::Sync);
            header.full = full;
            header.last = full && i + 1 == count;
            let message = Message {
                header,
                records: batch.to_vec(),
            };
            if self.send(&message).await {
                self.counters.sync_records_sent += batch.len() as u64;
            }
        }
    }

    async fn receive(&mut self, link: usize, datagram: &[u8], from: SocketAddr) {
        let message = match Message::parse(datagram, &self.config.key) {
            Ok(m) => m,
            Err(e) => {
                self.counters.rejected_auth += 1;
                if self.counters.rejected_auth.is_power_of_two() {
                    tracing::warn!(%from, link = %self.config.links[link].iface, count = self.counters.rejected_auth, "HA: rejected a message: {e}");
                }
                return;
            }
        };
        // Authenticated, but from where the peer is not: a replay.
        if from.ip() != std::net::IpAddr::V4(self.config.links[link].peer) {
            self.counters.rejected_source += 1;
            return;
        }
        let h = message.header;
        match self.freshness.admit(h.boot, h.seq) {
            Admission::Fresh => {}
            Admission::Late => return,
            Admission::Stale => {
                self.counters.rejected_stale += 1;
                return;
            }
        }
        match h.kind {
            Kind::Heartbeat => {
                self.counters.heartbeats_received += 1;
                let peer = Peer {
                    node: h.node,
                    role: h.role,
                    priority: h.priority,
                    boot: h.boot,
                    heard_ns: self.now_ns(),
                };
                let was_live = self.election.live_peer(peer.heard_ns).is_some();
                match self.election.on_heartbeat(peer) {
                    Some(t) => self.transition(t).await,
                    // A peer back from silence (a healed split) may have
                    // taken our addresses meanwhile, and one that is active
                    // steps down on our heartbeat, but clients and real
                    // servers still send to it. Announce the addresses
                    // again (keepalived's garp_lower_prio), at most once a
                    // second.
                    None if self.election.role() == Role::Active
                        && (!was_live || peer.role == Role::Active)
                        && self
                            .reasserted
                            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) =>
                    {
                        tracing::warn!(peer = %peer.node, role = ?peer.role, "HA: the peer is back; announcing our addresses again");
                        self.reasserted = Some(Instant::now());
                        self.announce();
                    }
                    None => {}
                }
            }
            Kind::ResyncRequest if self.election.role() == Role::Active => self.full_resync().await,
            Kind::ResyncRequest => {}
            Kind::Sync if self.election.role() == Role::Backup => self.import(&message).await,
            Kind::Sync => {}
        }
    }

    /// Backup: write the active's connections and templates into this
    /// router's tables.
    async fn import(&mut self, message: &Message) {
        self.counters.sync_records_received += message.records.len() as u64;
        let (mut upserts, mut removes) = (Vec::new(), Vec::new());
        let (mut templates, mut expired) = (Vec::new(), Vec::new());
        for r in &message.records {
            match r.op {
                Op::Upsert => upserts.push(conn_of(r)),
                Op::Remove => removes.push(conn_of(r)),
                Op::TemplateUpsert => templates.push(template_of(r)),
                Op::TemplateRemove => expired.push(template_of(r)),
            }
        }
        let sync = Imported {
            upserts,
            removes,
            templates,
            expired,
        };
        match self
            .controller
            .call(|reply| eventloop::Message::HaImport(sync, reply))
            .await
        {
            Some(Ok(n)) => self.counters.sync_records_applied += n as u64,
            Some(Err(e)) => tracing::warn!("HA: writing synced connections: {e}"),
            None => tracing::warn!("HA: sync import failed (the controller is gone)"),
        }
        if message.header.last {
            self.resynced_boot = Some(message.header.boot);
            tracing::info!(
                records = self.counters.sync_records_applied,
                "HA: full resync received"
            );
        }
    }

    async fn transition(&mut self, t: Transition) {
        tracing::warn!(from = ?t.from, to = ?t.to, "HA: {}", t.reason);
        // Floating addresses move: routes may change under established
        // flows (and the next maintenance tick renews again, after the
        // address work below has run).
        self.controller.send(eventloop::Message::RenewEgress).await;
        match t.to {
            Role::Active => {
                self.counters.takeovers += 1;
                // Everything the new backup (whoever it is) should hear.
                self.templates = TemplateExporter::default();
                let addresses = self.config.addresses.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for f in &addresses {
                        match netconf::add_address(&f.iface, f.addr, f.prefix) {
                            Ok(()) => tracing::info!("HA: took {f}"),
                            Err(e) => tracing::error!("HA: taking {f}: {e}"),
                        }
                    }
                })
                .await;
                self.announce();
            }
            Role::Backup => {
                // Announcing addresses this router no longer holds would
                // pull traffic back to it.
                if let Some(task) = self.announcing.take() {
                    task.abort();
                }
                self.resynced_boot = None;
                self.asked_resync = None;
                let addresses = self.config.addresses.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    for f in &addresses {
                        if let Err(e) = release(f) {
                            tracing::error!("HA: releasing {f}: {e}");
                        }
                    }
                })
                .await;
            }
        }
        self.publish_status();
    }

    /// Gratuitous ARPs for every floating address, in the background,
    /// replacing a burst still under way.
    fn announce(&mut self) {
        if let Some(task) = self.announcing.take() {
            task.abort();
        }
        self.announcing = Some(tokio::spawn(announce(
            self.config.addresses.clone(),
            self.config.garp_repeat,
            self.config.garp_spacing_ms,
        )));
    }

    fn publish_status(&self) {
        let now = self.now_ns();
        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
        s.role = self.election.role();
        s.peer = self.election.peer().map(|p| HaPeerView {
            node: p.node,
            role: p.role,
            priority: p.priority,
            heard_ms_ago: now.saturating_sub(p.heard_ns) / 1_000_000,
            alive: self.election.live_peer(now).is_some(),
        });
        s.last_transition = self.election.last_transition().map(|t| HaTransitionView {
            from: t.from,
            to: t.to,
            reason: t.reason.clone(),
            ms_ago: now.saturating_sub(t.at_ns) / 1_000_000,
        });
        s.counters = self.counters;
    }
}

/// Gratuitous ARPs (IPv6: unsolicited Neighbor Advertisements) for every
/// taken address, `repeat` rounds apart.
async fn announce(addresses: Vec<Floating>, repeat: u32, spacing_ms: u64) {
    for round in 0..repeat {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(spacing_ms)).await;
        }
        let all: Vec<(&str, std::net::IpAddr)> = addresses
            .iter()
            .map(|f| (f.iface.as_str(), f.addr))
            .collect();
        if let Err(e) = netconf::announce_addresses(&all) {
            tracing::warn!("HA: announcing the floating addresses: {e}");
        }
    }
}

/// The wire numbers methods as IPVS does; the datapath has its own.
fn wire_method(method: u8) -> Option<u8> {
    method_to_wire(lvs_common::Method::from_u8(method)?)
}

/// `parse` accepted only known methods.
fn datapath_method(wire: u8) -> u8 {
    method_from_wire(wire).map_or(u8::MAX, |m| m as u8)
}

/// `None` for a method the wire does not carry (a local real server's
/// connection is not sent).
fn conn_record(op: Op, c: &SyncConn) -> Option<Record> {
    let SyncConn {
        protocol,
        client,
        virtual_addr,
        real,
        method,
        state,
        idle_ms,
    } = *c;
    Some(Record {
        op,
        protocol,
        method: wire_method(method)?,
        state,
        client,
        virtual_addr,
        real,
        idle_ms,
    })
}

fn conn_of(r: &Record) -> SyncConn {
    let Record {
        op: _,
        protocol,
        method,
        state,
        client,
        virtual_addr,
        real,
        idle_ms,
    } = *r;
    SyncConn {
        protocol,
        client,
        virtual_addr,
        real,
        method: datapath_method(method),
        state,
        idle_ms,
    }
}

/// A template in a record: the client network with port 0, the time left
/// in `idle_ms` (see `wire`).
fn template_record(op: Op, t: &SyncTemplate) -> Option<Record> {
    let SyncTemplate {
        protocol,
        client_net,
        service,
        real,
        method,
        remaining_ms,
    } = *t;
    Some(Record {
        op,
        protocol,
        method: wire_method(method)?,
        state: 0,
        client: SocketAddr::new(client_net, 0),
        virtual_addr: service,
        real,
        idle_ms: remaining_ms,
    })
}

fn template_of(r: &Record) -> SyncTemplate {
    SyncTemplate {
        protocol: r.protocol,
        client_net: r.client.ip(),
        service: r.virtual_addr,
        real: r.real,
        method: datapath_method(r.method),
        remaining_ms: r.idle_ms,
    }
}
