//! IPVS connection states and the transition tables of `ip_vs_proto_tcp.c`
//! (ipvs-semantics.md §3.4), shared so the datapath and the controller's
//! sweeper agree on what a state is and how long it lives.

/// IPVS TCP states, in the kernel's order (the tables' column order), plus
/// UDP's single state.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnState {
    None = 0,
    Established = 1,
    SynSent = 2,
    SynRecv = 3,
    FinWait = 4,
    TimeWait = 5,
    Close = 6,
    CloseWait = 7,
    LastAck = 8,
    Listen = 9,
    SynAck = 10,
    Udp = 11,
}

/// Entries in the `TIMEOUTS` map, one per state.
pub const STATE_COUNT: u32 = 12;

impl ConnState {
    pub const ALL: [ConnState; STATE_COUNT as usize] = [
        ConnState::None,
        ConnState::Established,
        ConnState::SynSent,
        ConnState::SynRecv,
        ConnState::FinWait,
        ConnState::TimeWait,
        ConnState::Close,
        ConnState::CloseWait,
        ConnState::LastAck,
        ConnState::Listen,
        ConnState::SynAck,
        ConnState::Udp,
    ];

    pub const fn from_u8(v: u8) -> Option<Self> {
        if (v as u32) < STATE_COUNT {
            Some(Self::ALL[v as usize])
        } else {
            None
        }
    }

    /// The name `ipvsadm -L -c` prints.
    pub const fn name(self) -> &'static str {
        match self {
            ConnState::None => "NONE",
            ConnState::Established => "ESTABLISHED",
            ConnState::SynSent => "SYN_SENT",
            ConnState::SynRecv => "SYN_RECV",
            ConnState::FinWait => "FIN_WAIT",
            ConnState::TimeWait => "TIME_WAIT",
            ConnState::Close => "CLOSE",
            ConnState::CloseWait => "CLOSE_WAIT",
            ConnState::LastAck => "LAST_ACK",
            ConnState::Listen => "LISTEN",
            ConnState::SynAck => "SYNACK",
            ConnState::Udp => "UDP",
        }
    }

    /// Current mainline's `tcp_state_active_table`: these count as ActiveConn.
    pub const fn is_active(self) -> bool {
        matches!(
            self,
            ConnState::Established | ConnState::SynSent | ConnState::SynRecv | ConnState::SynAck
        )
    }
}

/// IPVS default timeouts in seconds, indexed by state (§3.5).
pub const DEFAULT_TIMEOUTS: [u32; STATE_COUNT as usize] =
    [2, 900, 120, 60, 120, 120, 10, 60, 30, 120, 120, 300];

/// Which table a packet is judged by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// Client to director, NAT (the director sees both ways).
    Input = 0,
    /// Real server back through the director (NAT replies).
    Output = 1,
    /// Client to director for DR and TUN, whose replies bypass the director.
    InputOnly = 2,
}

const ES: u8 = ConnState::Established as u8;
const SS: u8 = ConnState::SynSent as u8;
const SR: u8 = ConnState::SynRecv as u8;
const FW: u8 = ConnState::FinWait as u8;
const TW: u8 = ConnState::TimeWait as u8;
const CL: u8 = ConnState::Close as u8;
const CW: u8 = ConnState::CloseWait as u8;
const LA: u8 = ConnState::LastAck as u8;
const LI: u8 = ConnState::Listen as u8;

/// `tcp_states`: [table][event syn/fin/ack/rst][current state].
const TCP_STATES: [[[u8; 11]; 4]; 3] = [
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, CW, SS, TW, TW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, SR],
    ],
    [
        [SS, ES, SS, SR, SS, SS, SS, SS, SS, LI, SR],
        [TW, FW, SS, TW, FW, TW, CL, TW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, LA, ES, ES],
        [CL, CL, SS, CL, CL, TW, CL, CL, CL, CL, CL],
    ],
    [
        [SR, ES, ES, SR, SR, SR, SR, SR, SR, SR, SR],
        [CL, FW, SS, TW, FW, TW, CL, CW, LA, LI, TW],
        [ES, ES, SS, ES, FW, TW, CL, CW, CL, LI, ES],
        [CL, CL, CL, SR, CL, CL, CL, CL, LA, LI, CL],
    ],
];

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// `set_tcp_state`: the state after a segment with `flags` seen through
/// `table`. Event priority is RST, SYN, FIN, ACK; no flag at all closes.
#[inline(always)]
pub fn tcp_next(table: Table, current: u8, flags: u8) -> u8 {
    let event = if flags & TCP_RST != 0 {
        3
    } else if flags & TCP_SYN != 0 {
        0
    } else if flags & TCP_FIN != 0 {
        1
    } else if flags & TCP_ACK != 0 {
        2
    } else {
        return CL;
    };
    match TCP_STATES[table as usize][event].get(current as usize) {
        Some(next) => *next,
        // UDP or garbage: a TCP segment restarts tracking from NONE.
        None => TCP_STATES[table as usize][event][0],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO: u8 = ConnState::None as u8;
    const SA: u8 = ConnState::SynAck as u8;

    fn walk(table_for: &[(Table, u8)]) -> [u8; 8] {
        let mut out = [0u8; 8];
        let mut state = NO;
        for (i, (table, flags)) in table_for.iter().enumerate() {
            state = tcp_next(*table, state, *flags);
            out[i] = state;
        }
        out
    }

    #[test]
    fn nat_clean_close_vector() {
        use Table::*;
        let seen = walk(&[
            (Input, TCP_SYN),
            (Output, TCP_SYN | TCP_ACK),
            (Input, TCP_ACK),
            (Input, TCP_FIN | TCP_ACK),
            (Output, TCP_ACK),
            (Output, TCP_FIN | TCP_ACK),
            (Input, TCP_ACK),
        ]);
        assert_eq!(&seen[..7], &[SR, SR, ES, CW, CW, TW, TW]);
    }

    #[test]
    fn input_only_vector() {
        use Table::*;
        let seen = walk(&[
            (InputOnly, TCP_SYN),
            (InputOnly, TCP_ACK),
            (InputOnly, TCP_FIN | TCP_ACK),
            (InputOnly, TCP_ACK),
        ]);
        assert_eq!(&seen[..4], &[SR, ES, FW, FW]);
        assert_eq!(DEFAULT_TIMEOUTS[SR as usize], 60);
        assert_eq!(DEFAULT_TIMEOUTS[ES as usize], 900);
        assert_eq!(DEFAULT_TIMEOUTS[FW as usize], 120);
        assert!(!ConnState::FinWait.is_active());
        assert!(ConnState::SynRecv.is_active());
    }

    #[test]
    fn rst_and_flagless() {
        for table in [Table::Input, Table::InputOnly] {
            assert_eq!(tcp_next(table, ES, TCP_RST | TCP_ACK), CL);
        }
        assert_eq!(tcp_next(Table::InputOnly, ES, 0), CL);
        // The one column where INPUT-ONLY differs for rst: SYNACK.
        assert_eq!(tcp_next(Table::Input, SA, TCP_RST), SR);
        assert_eq!(tcp_next(Table::InputOnly, SA, TCP_RST), CL);
        // INPUT-ONLY's fin in ES goes to FIN_WAIT, INPUT's to CLOSE_WAIT.
        assert_eq!(tcp_next(Table::Input, ES, TCP_FIN), CW);
        assert_eq!(tcp_next(Table::InputOnly, ES, TCP_FIN), FW);
    }

    #[test]
    fn every_cell_is_a_tcp_state() {
        for table in TCP_STATES {
            for row in table {
                for cell in row {
                    assert!(cell <= SA);
                }
            }
        }
        assert_eq!(ConnState::from_u8(11), Some(ConnState::Udp));
        assert_eq!(ConnState::from_u8(12), None);
    }
}
