//! The desired state and the ways it comes in.
//!
//! * `model`: virtual services, real servers and the commands that change
//!   them, validated once for every way in;
//! * `health`: what is configured for health checks, load agents, the
//!   sorry server and slow start;
//! * `ha`: what is configured for the router pair;
//! * `config`: the TOML file, with file, line and field in every error;
//! * `keepalived`: keepalived.conf, translated to that TOML;
//! * `api`: lvsd's control socket: requests, the views lvsadm prints, and
//!   the client.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod ha;
pub mod health;
pub mod keepalived;
pub mod model;
pub mod packed;
