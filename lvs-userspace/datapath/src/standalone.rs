//! XDP programs that run on their own, away from the director: `lvs_decap`
//! on real servers, and `lvs_pass` on veth peers that must receive XDP
//! frames. Attached so that they outlive the process that attached them.

use std::os::fd::{AsFd, AsRawFd};

use aya::{
    maps::{DevMap, MapData, PerCpuArray},
    programs::Xdp,
    Ebpf, EbpfLoader,
};
use lvs_common::{DecapVerdict, BENCH_FRAME_LEN, DECAP_VERDICT_COUNT};
use serde::{Deserialize, Serialize};

use crate::{
    kernel::{map_err, program_stats, test_run_xdp, ProgramStats, EBPF_OBJECT},
    DatapathError, TestRun,
};

const DECAP: &str = "lvs_decap";
const PASS: &str = "lvs_pass";

/// How `lvs_decap` runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpAttachMode {
    Native,
    Generic,
}

fn ifindex(iface: &str) -> Result<u32, DatapathError> {
    nix::net::if_::if_nametoindex(iface).map_err(|e| DatapathError::NoInterface {
        iface: iface.to_string(),
        call: "if_nametoindex",
        source: e.into(),
    })
}

/// The director's big maps are created with every load of the object; a
/// real server never touches them, so they shrink to one entry.
const UNUSED_MAPS: [&str; 5] = ["CONNS", "RINGS", "REALS", "SERVICE_STATS", "REAL_STATS"];

pub struct StandaloneXdp {
    ebpf: Ebpf,
    name: &'static str,
}

impl StandaloneXdp {
    /// The real server's IP-in-IP decapsulation.
    pub fn decap() -> Result<Self, DatapathError> {
        Self::load(DECAP)
    }

    /// The no-op program: a veth runs the XDP receive path, which frames
    /// sent with `XDP_TX` or a redirect need, only when its peer has one.
    pub fn pass() -> Result<Self, DatapathError> {
        Self::load(PASS)
    }

    /// The bench's frame generator: writes `frame` and sends it with
    /// `XDP_TX`, every run.
    pub fn generator(frame: &[u8; BENCH_FRAME_LEN]) -> Result<Self, DatapathError> {
        let mut this = Self::load("lvs_bench_tx")?;
        let words: [u64; BENCH_FRAME_LEN / 8] = std::array::from_fn(|i| {
            u64::from_ne_bytes(frame[i * 8..i * 8 + 8].try_into().expect("8 bytes"))
        });
        let map = this
            .ebpf
            .map_mut("BENCH_FRAME")
            .ok_or(DatapathError::MissingMap { map: "BENCH_FRAME" })?;
        aya::maps::Array::<_, [u64; BENCH_FRAME_LEN / 8]>::try_from(map)
            .map_err(map_err("open", "BENCH_FRAME"))?
            .set(0, words, 0)
            .map_err(map_err("bpf_map_update_elem", "BENCH_FRAME"))?;
        Ok(this)
    }

    /// The bench's sink: `XDP_DROP` for every frame.
    pub fn sink() -> Result<Self, DatapathError> {
        Self::load("lvs_bench_drop")
    }

    /// The bench's ceiling: every frame redirected, unparsed, to `target`
    /// (an interface name in the calling thread's namespace).
    pub fn bare_redirect(target: &str) -> Result<Self, DatapathError> {
        let mut this = Self::load("lvs_bench_redirect")?;
        let ifindex = ifindex(target)?;
        let map = this
            .ebpf
            .map_mut("BENCH_PORT")
            .ok_or(DatapathError::MissingMap { map: "BENCH_PORT" })?;
        DevMap::try_from(map)
            .map_err(map_err("open", "BENCH_PORT"))?
            .set(0, ifindex, None, 0)
            .map_err(|source| DatapathError::Egress {
                iface: target.to_string(),
                source,
            })?;
        Ok(this)
    }

    fn load(name: &'static str) -> Result<Self, DatapathError> {
        let mut loader = EbpfLoader::new();
        for map in UNUSED_MAPS {
            loader.map_max_entries(map, 1);
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        program_mut(&mut ebpf, name)?
            .load()
            .map_err(|source| DatapathError::Program {
                program: name,
                source,
            })?;
        Ok(Self { ebpf, name })
    }

    /// Attach to `iface`, native mode first, generic as the fallback, the
    /// legacy (netlink) way: the interface itself then holds the program,
    /// which stays attached after this process exits, with no bpffs needed.
    /// Returns the mode. Fails if the interface already has an XDP program.
    pub fn attach_persistent(&mut self, iface: &str) -> Result<XdpAttachMode, DatapathError> {
        let ifindex = ifindex(iface)?;
        let program = program_mut(&mut self.ebpf, self.name)?;
        let fd = program
            .fd()
            .map_err(|source| DatapathError::Program {
                program: self.name,
                source,
            })?
            .as_fd()
            .as_raw_fd();
        attach_by_netlink(iface, ifindex, fd, false)
    }

    /// Remove what `attach_persistent` attached.
    pub fn detach_persistent(iface: &str, mode: XdpAttachMode) -> Result<(), DatapathError> {
        netlink::set_xdp(ifindex(iface)?, -1, mode).map_err(|source| DatapathError::Netlink {
            iface: iface.to_string(),
            call: "RTM_SETLINK IFLA_XDP (detach)",
            source,
        })
    }

    pub fn test_run(&mut self, frame: &[u8]) -> Result<TestRun, DatapathError> {
        test_run_xdp(program_mut(&mut self.ebpf, self.name)?, None, frame)
    }

    /// `BPF_PROG_TEST_RUN` in live-frames mode: run the program `repeat`
    /// times on `frame` as if it arrived on `ingress` (in the calling
    /// thread's namespace), and really transmit what it sends with
    /// `XDP_TX` or a redirect.
    pub fn live_frames(
        &mut self,
        ingress: &str,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(), DatapathError> {
        use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex, ...
        let ctx: Vec<u8> = [0, frame.len() as u32, 0, ifindex(ingress)?, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let program = program_mut(&mut self.ebpf, self.name)?;
        program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ctx_in: Some(&ctx),
                repeat,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..Default::default()
            })
            .map_err(|source| DatapathError::Program {
                program: "BPF_PROG_TEST_RUN (live frames)",
                source,
            })?;
        Ok(())
    }

    /// What the verifier made of the program.
    pub fn program_stats(&mut self) -> Result<ProgramStats, DatapathError> {
        let name = self.name;
        let program = program_mut(&mut self.ebpf, name)?;
        program_stats(name, program.info())
    }

    /// This load's decapsulation counters, summed over CPUs, in
    /// `DecapVerdict` order.
    pub fn counters(&self) -> Result<[u64; DECAP_VERDICT_COUNT as usize], DatapathError> {
        let map = self
            .ebpf
            .map("DECAP_STATS")
            .ok_or(DatapathError::MissingMap { map: "DECAP_STATS" })?;
        let stats =
            PerCpuArray::<&MapData, u64>::try_from(map).map_err(map_err("open", "DECAP_STATS"))?;
        let mut out = [0; DECAP_VERDICT_COUNT as usize];
        for verdict in [
            DecapVerdict::Decapsulated,
            DecapVerdict::PassNotIpip,
            DecapVerdict::PassMalformed,
        ] {
            let per_cpu = stats
                .get(&(verdict as u32), 0)
                .map_err(map_err("bpf_map_lookup_elem", "DECAP_STATS"))?;
            out[verdict as usize] = per_cpu.iter().sum();
        }
        Ok(out)
    }
}

/// `BPF_PROG_TEST_RUN` of the XDP program attached to `iface` (in the
/// calling thread's network namespace) on each of `frames` in turn: the
/// XDP actions, in order. The program is whichever the interface holds,
/// found through netlink (`IFLA_XDP_PROG_ID`) — for the bench, the director
/// a running lvsd attached, so the runs read and write that lvsd's maps
/// (a SYN puts a connection in its table). The program is looked up once
/// per call; `frames` may be produced lazily (and paced) as it is consumed.
///
/// aya can run a loaded program only through an `Xdp` it loaded itself
/// (taking one over from its id needs a type aya does not export), so the
/// run is the raw `BPF_PROG_TEST_RUN`, with no output buffer.
pub fn test_run_attached<I>(iface: &str, frames: I) -> Result<Vec<u32>, DatapathError>
where
    I: IntoIterator,
    I::Item: AsRef<[u8]>,
{
    const BPF_PROG_TEST_RUN: libc::c_long = 10;
    /// `union bpf_attr`'s `test` member, up to the context fields.
    #[repr(C)]
    #[derive(Default)]
    struct TestAttr {
        prog_fd: u32,
        retval: u32,
        data_size_in: u32,
        data_size_out: u32,
        data_in: u64,
        data_out: u64,
        repeat: u32,
        duration: u32,
        ctx_size_in: u32,
        ctx_size_out: u32,
        ctx_in: u64,
        ctx_out: u64,
        flags: u32,
        cpu: u32,
        batch_size: u32,
        _pad: u32,
    }
    let ifindex = ifindex(iface)?;
    let lookup = |source| DatapathError::Netlink {
        iface: iface.to_string(),
        call: "RTM_GETLINK IFLA_XDP",
        source,
    };
    let id = netlink::xdp_program_id(ifindex)
        .map_err(lookup)?
        .ok_or_else(|| lookup(std::io::Error::other("no XDP program is attached")))?;
    let info = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .ok_or_else(|| lookup(std::io::Error::other(format!("XDP program {id} is gone"))))?;
    let fd = info.fd().map_err(|source| DatapathError::Program {
        program: "the attached XDP program",
        source,
    })?;
    let prog_fd = fd.as_fd().as_raw_fd() as u32;
    frames
        .into_iter()
        .map(|frame| {
            let frame = frame.as_ref();
            let mut attr = TestAttr {
                prog_fd,
                data_size_in: frame.len() as u32,
                data_in: frame.as_ptr() as u64,
                repeat: 1,
                ..TestAttr::default()
            };
            // SAFETY: the attribute points at `frame`, live and of the size
            // given, which the kernel only reads; no output buffer is given.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_PROG_TEST_RUN,
                    &mut attr as *mut TestAttr,
                    size_of::<TestAttr>(),
                )
            };
            match rc {
                0 => Ok(attr.retval),
                _ => Err(lookup(std::io::Error::other(format!(
                    "BPF_PROG_TEST_RUN of XDP program {id}: {}",
                    std::io::Error::last_os_error()
                )))),
            }
        })
        .collect()
}

fn program_mut<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, DatapathError> {
    ebpf.program_mut(name)
        .ok_or(DatapathError::MissingProgram { program: name })?
        .try_into()
        .map_err(|source| DatapathError::Program {
            program: name,
            source,
        })
}

/// Attach program `fd` to `iface` by netlink, native mode first, generic as
/// the fallback; `replace` swaps out a program already there.
pub(super) fn attach_by_netlink(
    iface: &str,
    ifindex: u32,
    fd: i32,
    replace: bool,
) -> Result<XdpAttachMode, DatapathError> {
    let set = |mode| {
        if replace {
            netlink::replace_xdp(ifindex, fd, mode)
        } else {
            netlink::set_xdp(ifindex, fd, mode)
        }
    };
    let native = match set(XdpAttachMode::Native) {
        Ok(()) => return Ok(XdpAttachMode::Native),
        Err(e) => e,
    };
    set(XdpAttachMode::Generic)
        .map(|()| XdpAttachMode::Generic)
        .map_err(|generic| DatapathError::Netlink {
            iface: iface.to_string(),
            call: "RTM_SETLINK IFLA_XDP (attach)",
            source: std::io::Error::new(
                generic.kind(),
                format!("native mode: {native}; generic mode: {generic}"),
            ),
        })
}

/// The netlink requests aya does not expose: a legacy XDP attach, and the
/// id of the XDP program an interface holds.
pub(super) mod netlink {
    use crate::XdpAttachMode;
    use nix::sys::socket::{
        bind, recv, send, socket, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol,
        SockType,
    };
    use std::os::fd::AsRawFd;

    const RTM_SETLINK: u16 = 19;
    const NLM_F_REQUEST: u16 = 0x1;
    const NLM_F_ACK: u16 = 0x4;
    const NLMSG_ERROR: u16 = 0x2;
    const NLA_F_NESTED: u16 = 0x8000;
    const IFLA_XDP: u16 = 43;
    const IFLA_XDP_FD: u16 = 1;
    const IFLA_XDP_FLAGS: u16 = 3;
    const XDP_FLAGS_UPDATE_IF_NOEXIST: u32 = 1;
    const XDP_FLAGS_SKB_MODE: u32 = 2;
    const XDP_FLAGS_DRV_MODE: u32 = 4;

    /// An `ifinfomsg` naming `ifindex`: family, pad, type, index, flags,
    /// change.
    fn link_body(ifindex: u32) -> Vec<u8> {
        let mut body = vec![0u8; 16];
        body[4..8].copy_from_slice(&(ifindex as i32).to_ne_bytes());
        body
    }

    /// Send one request of `kind` with `body` on a fresh rtnetlink socket;
    /// the first reply, of at most `room` bytes.
    fn exchange(kind: u16, flags: u16, body: &[u8], room: usize) -> std::io::Result<Vec<u8>> {
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        msg.extend_from_slice(body);
        let sock = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(sock.as_raw_fd(), &NetlinkAddr::new(0, 0))?;
        send(sock.as_raw_fd(), &msg, MsgFlags::empty())?;
        let mut reply = vec![0u8; room];
        let n = recv(sock.as_raw_fd(), &mut reply, MsgFlags::empty())?;
        reply.truncate(n);
        Ok(reply)
    }

    fn attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
        out.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(4), 0);
    }

    /// `fd` -1 detaches. Attaching never replaces another program.
    pub fn set_xdp(ifindex: u32, fd: i32, mode: XdpAttachMode) -> std::io::Result<()> {
        request(ifindex, fd, mode, fd >= 0)
    }

    /// Attach `fd`, replacing whatever program is attached in `mode`.
    pub fn replace_xdp(ifindex: u32, fd: i32, mode: XdpAttachMode) -> std::io::Result<()> {
        request(ifindex, fd, mode, false)
    }

    /// The id of the XDP program attached to `ifindex`, if any: the
    /// `IFLA_XDP_PROG_ID` of an `RTM_GETLINK`, else the first program of
    /// the driver, generic or offload mode.
    pub fn xdp_program_id(ifindex: u32) -> std::io::Result<Option<u32>> {
        const RTM_GETLINK: u16 = 18;
        const RTM_NEWLINK: u16 = 16;
        const NLA_TYPE_MASK: u16 = 0x3fff;
        // IFLA_XDP_PROG_ID, then the driver, generic and offload modes'.
        const IDS: [u16; 4] = [4, 5, 6, 7];
        let reply = exchange(RTM_GETLINK, NLM_F_REQUEST, &link_body(ifindex), 65_536)?;
        let (reply, n) = (&reply[..], reply.len());
        let u16_at = |at: usize| u16::from_ne_bytes([reply[at], reply[at + 1]]);
        let u32_at = |at: usize| {
            u32::from_ne_bytes([reply[at], reply[at + 1], reply[at + 2], reply[at + 3]])
        };
        if n < 20 {
            return Err(std::io::Error::other("short netlink reply"));
        }
        match u16_at(4) {
            RTM_NEWLINK => {}
            NLMSG_ERROR => {
                let errno = u32_at(16) as i32;
                return Err(std::io::Error::from_raw_os_error(-errno));
            }
            other => {
                return Err(std::io::Error::other(format!(
                    "unexpected netlink reply type {other}"
                )))
            }
        }
        let end = (u32_at(0) as usize).min(n);
        // The attributes (4-byte header each, 4-aligned) in `from..to`.
        let attrs = |from: usize, to: usize| {
            let mut at = from;
            std::iter::from_fn(move || {
                if at + 4 > to {
                    return None;
                }
                let len = u16_at(at) as usize;
                if len < 4 || at + len > to {
                    return None;
                }
                let found = (u16_at(at + 2) & NLA_TYPE_MASK, at + 4, at + len);
                at += len.next_multiple_of(4);
                Some(found)
            })
        };
        let Some((_, from, to)) = attrs(32, end).find(|a| a.0 == IFLA_XDP) else {
            return Ok(None);
        };
        let xdp: Vec<(u16, usize, usize)> = attrs(from, to).collect();
        Ok(IDS.iter().find_map(|id| {
            xdp.iter()
                .find(|a| a.0 == *id && a.2 - a.1 >= 4)
                .map(|a| u32_at(a.1))
                .filter(|&v| v != 0)
        }))
    }

    fn request(ifindex: u32, fd: i32, mode: XdpAttachMode, exclusive: bool) -> std::io::Result<()> {
        let mut flags = match mode {
            XdpAttachMode::Native => XDP_FLAGS_DRV_MODE,
            XdpAttachMode::Generic => XDP_FLAGS_SKB_MODE,
        };
        if exclusive {
            flags |= XDP_FLAGS_UPDATE_IF_NOEXIST;
        }
        let mut xdp = Vec::new();
        attr(&mut xdp, IFLA_XDP_FD, &fd.to_ne_bytes());
        attr(&mut xdp, IFLA_XDP_FLAGS, &flags.to_ne_bytes());
        let mut body = link_body(ifindex);
        attr(&mut body, IFLA_XDP | NLA_F_NESTED, &xdp);
        let reply = exchange(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK, &body, 4096)?;
        let n = reply.len();
        // nlmsghdr (16 bytes) then, for NLMSG_ERROR, the negated errno.
        if n < 20 || u16::from_ne_bytes([reply[4], reply[5]]) != NLMSG_ERROR {
            return Err(std::io::Error::other("no netlink acknowledgement"));
        }
        let errno = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        match errno {
            0 => Ok(()),
            e => Err(std::io::Error::from_raw_os_error(-e)),
        }
    }
}
