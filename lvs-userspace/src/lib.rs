//! lvs: the Linux Virtual Server director on XDP — controller library.
//!
//! Where a decision is made:
//! * `model`: the desired state (services, real servers) and its validation;
//! * `sched`: the IPVS scheduling algorithms, in plain Rust;
//! * `publish`: turns a scheduler into the ring of picks the datapath reads
//!   (the controller also writes sh/dh buckets and lblc/lblcr destinations);
//! * `simulate`: runs any scheduler offline (`lvsadm --simulate`);
//! * `controller`: applies commands transactionally and writes the maps;
//! * `conntable`: when a connection entry has expired (the sweeper's rule);
//! * `threshold`: when `-x`/`-y` set and clear a server's OVERLOAD;
//! * `rate`: IPVS's rate estimator (`--rate`'s connections, packets and
//!   bytes per second);
//! * `realserver`, `netconf`: preparing a real server for DR and TUN, and
//!   every address, neighbour and sysctl change, in one place;
//! * `datapath`: every BPF syscall (load, attach, map access) in one place;
//! * `config`, `api`, `ipvsadm`: the ways commands come in;
//! * `ha`: high availability between two directors (heartbeats, address
//!   takeover, connection sync);
//! * `daemon`: `lvsd`'s event loop.

pub mod api;
pub mod config;
pub mod conntable;
pub mod controller;
pub mod daemon;
pub mod datapath;
pub mod ha;
pub mod health;
pub mod ipvsadm;
pub mod model;
pub mod netconf;
pub mod publish;
pub mod rate;
pub mod realserver;
pub mod sched;
pub mod simulate;
pub mod threshold;
