//! Health: checkers that decide whether a real server takes new
//! connections, load feedback that moves its weight, and slow start. What
//! is configured lives in `lvs_state::health`.
//!
//! * `probe`: one attempt of each checker kind, bounded by its timeout;
//! * `agent`: the load-feedback agent's text protocol;
//! * `tally`: one checker's rise/fall state machine;
//! * `condition`: whether a server is in scheduling, and its effective
//!   weight (agent percentage, slow-start ramp);
//! * `supervisor`: the checker and agent tasks lvsd runs, reporting
//!   transitions to the controller.

pub mod agent;
pub mod condition;
pub mod probe;
pub mod supervisor;
pub mod tally;
