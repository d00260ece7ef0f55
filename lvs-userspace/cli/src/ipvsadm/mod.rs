//! ipvsadm compatibility: its command line (`parse`) and its output
//! formats (`format`), so that an LVS administrator's commands and saved rule
//! files work unchanged.

pub mod format;
pub mod names;
pub mod parse;

pub use lvs_sched::{sched_flags, FlagError};
pub use parse::{parse, parse_restore, Action, Invocation, ListFormat, ListOptions, ParseError};
