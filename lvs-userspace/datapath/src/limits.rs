//! Table sizes, chosen when the XDP object is loaded (as IPVS's
//! `conn_tab_bits`): the object's compiled sizes are only the defaults.

use lvs_common::{
    hash::MH_TABLE_SIZE, CONN_TABLE_SIZE, MAX_MH_SERVICES, MAX_REALS, MAX_SERVICES, RING_SLOTS,
};

/// How many services, real servers and connection-table entries the maps
/// hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub services: u32,
    pub reals: u32,
    pub connections: u32,
    /// Services that may use mh at once (each holds a table in `MAGLEV`).
    pub mh_services: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            services: MAX_SERVICES,
            reals: MAX_REALS,
            connections: CONN_TABLE_SIZE,
            mh_services: MAX_MH_SERVICES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("table size `{field}` = {value} is out of range (1 to {max})")]
pub struct LimitsError {
    pub field: &'static str,
    pub value: u32,
    pub max: u32,
}

/// Each service owns two ring halves of `RING_SLOTS` slots in one array.
pub const MAX_SERVICES_LIMIT: u32 = u32::MAX / (2 * RING_SLOTS);
/// Real indexes must stay clear of `NO_REAL`.
pub const MAX_REALS_LIMIT: u32 = 1 << 24;
/// The kernel caps a hash map's entries well below this anyway.
pub const MAX_CONNECTIONS_LIMIT: u32 = 1 << 30;
/// Each mh service owns two table halves in one array.
pub const MAX_MH_SERVICES_LIMIT: u32 = u32::MAX / (2 * MH_TABLE_SIZE);

impl Limits {
    pub fn check(self) -> Result<Self, LimitsError> {
        let Limits {
            services,
            reals,
            connections,
            mh_services,
        } = self;
        for (field, value, max) in [
            ("max-services", services, MAX_SERVICES_LIMIT),
            ("max-reals", reals, MAX_REALS_LIMIT),
            ("conn-table-size", connections, MAX_CONNECTIONS_LIMIT),
            ("max-mh-services", mh_services, MAX_MH_SERVICES_LIMIT),
        ] {
            if value == 0 || value > max {
                return Err(LimitsError { field, value, max });
            }
        }
        Ok(self)
    }

    /// `(map, entries)` for every map whose size follows a limit. The IPv6
    /// maps take the IPv4 ones' sizes (IPVS's table holds both families);
    /// `CONNS6` takes memory only as it fills.
    pub fn map_sizes(self) -> [(&'static str, u32); 19] {
        let Limits {
            services,
            reals,
            connections,
            mh_services,
        } = self;
        [
            ("SERVICES", services),
            ("RINGS", services * 2 * RING_SLOTS),
            ("CURSORS", services),
            ("BUCKETS", services * 2 * lvs_common::hash::HASH_BUCKETS),
            ("MAGLEV", mh_services * 2 * MH_TABLE_SIZE),
            ("SERVICE_STATS", services),
            ("REALS", reals),
            ("REAL_STATS", reals),
            ("REAL_CONNS", reals),
            ("EGRESS_CACHE", reals),
            ("REPLY_SERVICES", reals),
            ("CONNS", connections),
            ("HALF_OPEN", lvs_common::half_open_slots(connections)),
            ("SERVICES6", services),
            ("REALS6", reals),
            ("EGRESS_CACHE6", reals),
            ("REPLY_SERVICES6", reals),
            ("CONNS6", connections),
            // The same slots as HALF_OPEN's: one turn runs through both.
            ("HALF_OPEN6", lvs_common::half_open_slots(connections)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_compiled_sizes_and_out_of_range_sizes_name_their_flag() {
        let d = Limits::default();
        assert_eq!(d.check().unwrap(), d);
        assert_eq!(d.map_sizes()[1], ("RINGS", MAX_SERVICES * 2 * RING_SLOTS));
        let err = Limits { reals: 0, ..d }.check().unwrap_err();
        assert_eq!(
            err.to_string(),
            "table size `max-reals` = 0 is out of range (1 to 16777216)"
        );
        let huge = Limits {
            services: MAX_SERVICES_LIMIT + 1,
            ..d
        };
        assert!(huge
            .check()
            .unwrap_err()
            .to_string()
            .contains("max-services"));
    }
}
