//! ipvsadm compatibility: its command line (`parse`) and its output
//! formats (`format`), so that an LVS administrator's commands and saved rule
//! files work unchanged.

pub mod format;
pub mod names;
pub mod parse;

pub use parse::{
    parse, parse_restore, sched_flags, Action, FlagError, Invocation, ListFormat, ListOptions,
    ParseError,
};
