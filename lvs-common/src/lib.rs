//! Types and pure helpers shared by the XDP datapath and the controller.
//!
//! Everything here is `no_std`, `#[repr(C)]` with explicit padding, and keeps
//! network-order fields as byte arrays behind accessors, so both sides read
//! the same bytes the same way.
#![no_std]

pub mod addr;
pub mod checksum;
pub mod hash;
pub mod maps;
pub mod tcp_state;

pub use maps::*;
pub use tcp_state::ConnState;
