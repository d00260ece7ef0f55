//! Health: checkers that decide whether a real server takes new
//! connections, load feedback that moves its weight, and slow start.
//!
//! * `spec`: what is configured (checkers, agent, sorry server, slow start);
//! * `tally`: one checker's rise/fall state machine;
//! * `condition`: whether a server is in scheduling, and its effective
//!   weight (agent percentage, slow-start ramp);
//! * `probe`: one attempt of each checker kind, bounded by its timeout;
//! * `agent`: the load-feedback agent's text protocol;

pub mod condition;
pub mod spec;
pub mod tally;
