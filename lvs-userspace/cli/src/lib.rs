//! lvsadm's library: ipvsadm's grammar (`ipvsadm::parse`) and output
//! formats (`ipvsadm::format`), so that an LVS administrator's commands and
//! saved rule files work unchanged.

#![forbid(unsafe_code)]

pub mod ipvsadm;
