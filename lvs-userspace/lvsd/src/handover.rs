//! Restart and upgrade without loss. A datapath that can outlive lvsd
//! (attached by netlink, its tables pinned in bpffs) goes on forwarding
//! when lvsd stops, as IPVS outlives ipvsadm; lvsd leaves beside it a
//! record of where each service's and server's counters are and which map
//! layout its tables have. The next lvsd loads its own datapath, applies
//! its configuration, carries the connections, templates and counters
//! over by address (`Controller::adopt`), then replaces the old datapath on
//! each interface, carries what the old one made meanwhile, and removes
//! the old pins. Tables of another layout are refused, never dropped.

use lvs_common::Counters;
use lvs_datapath::{previous::Previous, KernelDatapath};
use lvs_ha::conn::{SyncConn, SyncTemplate};
use lvs_state::model::{Endpoint, ServiceId};
use serde::{Deserialize, Serialize};

use crate::controller::Controller;

/// The layout of the tables this lvsd pins (their keys and values). A
/// change to any of `HANDED_OVER`'s types moves it on, with a migration
/// from the layout before or a refusal.
pub const LAYOUT: u32 = 1;

/// What a stopping lvsd writes beside its pinned tables.
#[derive(Debug, Serialize, Deserialize)]
pub struct Record {
    pub layout: u32,
    pub services: Vec<(ServiceId, u32)>,
    pub reals: Vec<(ServiceId, Endpoint, u32)>,
}

/// At a clean stop: the record, then the datapath left forwarding.
pub fn hand_over(controller: Controller<KernelDatapath>) -> std::io::Result<()> {
    let record = Record {
        layout: LAYOUT,
        services: controller.service_indexes(),
        reals: controller.real_server_indexes(),
    };
    let datapath = controller.into_datapath();
    if let Some(pins) = datapath.pin_dir() {
        let path = lvs_datapath::handover_record(pins);
        std::fs::create_dir_all("/run/lvs")?;
        std::fs::write(
            &path,
            serde_json::to_vec(&record).expect("records serialize"),
        )?;
    }
    datapath.hand_over();
    Ok(())
}

/// What the previous datapath holds, read by address.
pub struct Carried {
    pub conns: Vec<SyncConn>,
    pub templates: Vec<SyncTemplate>,
    pub services: Vec<(ServiceId, Counters)>,
    pub reals: Vec<(ServiceId, Endpoint, Counters)>,
}

#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error(
        "the datapath an earlier lvsd left in {dir} has map layout {found}; this lvsd reads layout \
         {LAYOUT} and cannot migrate it. It goes on forwarding; run the earlier lvsd again, or \
         `lvsd --clean` to remove it with its connections, before starting this one"
    )]
    Layout { dir: String, found: u32 },
    #[error("reading {path}: {message}")]
    Record { path: String, message: String },
    #[error(transparent)]
    Datapath(#[from] lvs_datapath::DatapathError),
}

/// Read the previous datapath's record and tables. Its counters are found
/// by the record's indexes (a killed lvsd wrote none: they start over).
pub fn read(previous: &Previous, now_ns: u64) -> Result<Carried, HandoverError> {
    let path = lvs_datapath::handover_record(previous.dir());
    let record: Option<Record> = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes).map_err(|e| HandoverError::Record {
                path: path.display().to_string(),
                message: e.to_string(),
            })?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(HandoverError::Record {
                path: path.display().to_string(),
                message: e.to_string(),
            })
        }
    };
    if let Some(r) = &record {
        if r.layout != LAYOUT {
            return Err(HandoverError::Layout {
                dir: previous.dir().display().to_string(),
                found: r.layout,
            });
        }
    }
    let mut carried = Carried {
        conns: previous.connections(now_ns)?,
        templates: previous.templates(now_ns)?,
        services: Vec::new(),
        reals: Vec::new(),
    };
    if let Some(r) = record {
        for (id, index) in r.services {
            carried
                .services
                .push((id, previous.service_counters(index)?));
        }
        for (id, server, index) in r.reals {
            carried
                .reals
                .push((id, server, previous.real_counters(index)?));
        }
    }
    Ok(carried)
}

/// Forget the record of a datapath that was just replaced.
pub fn remove_record(previous: &Previous) {
    let _ = std::fs::remove_file(lvs_datapath::handover_record(previous.dir()));
}
