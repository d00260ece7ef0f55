//! Health: checkers that decide whether a real server takes new
//! connections, load feedback that moves its weight, and slow start.
//!
//! * `spec`: what is configured (checkers, agent, sorry server, slow start);
//! * `probe`: one attempt of each checker kind, bounded by its timeout;
//! * `agent`: the load-feedback agent's text protocol.

pub mod agent;
pub mod probe;
pub mod spec;
