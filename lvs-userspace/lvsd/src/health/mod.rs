//! Health: checkers that decide whether a real server takes new
//! connections, load feedback that moves its weight, and slow start. What
//! is configured lives in `lvs_state::health`.
//!
//! * `probe`: one attempt of each checker kind, bounded by its timeout,
//!   with `tls` (SSL_GET), `smtp`, `dns`, `udp` and `ping` for keepalived's
//!   checkers of those names;
//! * `file`: keepalived's FILE_CHECK: the number in a file, watched;
//! * `agent`: the load-feedback agent's text protocol;
//! * `tally`: one checker's rise/fall state machine;
//! * `condition`: whether a server is in scheduling, and its effective
//!   weight (what checkers add, agent percentage, slow-start ramp);
//! * `supervisor`: the checker and agent tasks lvsd runs, paced as
//!   keepalived paces them, reporting transitions to the controller.

pub mod agent;
pub mod condition;
pub mod dns;
pub mod file;
pub mod ping;
pub mod probe;
pub mod smtp;
pub mod supervisor;
pub mod tally;
pub mod tls;
pub mod udp;
