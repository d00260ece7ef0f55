//! lvsd: the controller. It owns the desired state (`lvs_state`), runs the
//! schedulers (`lvs_sched`) and writes their decisions through the datapath
//! (`lvs_datapath`).
//!
//! * `controller`: applies commands transactionally and writes the maps;
//! * `conntable`: when a connection entry is dead (the sweeper's rule);
//! * `replies`: which NAT connections keep one entry (`REPLY_SERVICES`);
//! * `threshold`: when `-x`/`-y` set and clear a server's OVERLOAD;
//! * `rate`: IPVS's rate estimator (`--rate`);
//! * `health`: checkers, the load agent, slow start;
//! * `ha`: the router pair over UDP (formats and election in `lvs_ha`);
//! * `eventloop`: the controller's one owner, fed by messages;
//! * `daemon`: lvsd's tasks: the control socket, the datapath's notices,
//!   the maintenance tick.

#![forbid(unsafe_code)]

pub mod conntable;
pub mod controller;
pub mod daemon;
pub mod eventloop;
pub mod ha;
pub mod handover;
pub mod health;
pub mod rate;
pub mod relevance;
pub mod replies;
pub mod threshold;
