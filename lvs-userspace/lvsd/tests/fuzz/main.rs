//! Tier 2: malformed and hostile frames through the real director.
//!
//! Random and mutated frames go through both entry points of the director
//! (`lvs_director` on XDP, `lvs_director_tc` on tc) with
//! `BPF_PROG_TEST_RUN`, in a lab router with NAT, DR and TUN services
//! (`lab.rs`). After every frame the verdict counters and the connection
//! table are read back and the oracle (`oracle.rs`) judges the outcome:
//! exactly one known verdict counted, its action returned, and the frame
//! passed unchanged, dropped, or rewritten into exactly the frame the
//! flow's entry and the lab's routes call for, with every checksum as right
//! as it came (checked with etherparse's sum, not ours). A frame that went
//! by an entry must also show in its service's and real server's counters
//! (packets, bytes, connections), followed here in a model.
//!
//! First come systematic sweeps, each bounded by its count: truncation at
//! every offset, every TCP flag combination on new flows, established
//! flows and NAT replies, every IHL against a range of total lengths,
//! fragments, VLAN and QinQ tags, ICMP errors quoting truncated or garbage
//! headers, known flows with every entry expired, and with forwarding off.
//! Then random frames with random mutations (`frames.rs`) until the budget
//! runs out.
//!
//! `LVS_FUZZ_SEED` (decimal or 0x-hex; default from the clock, always
//! printed) makes a run repeatable; `LVS_FUZZ_SECONDS` (default 5) bounds
//! the random phase, `LVS_FUZZ_FRAMES` its frame count. Needs root:
//! `cargo xtask test` runs it briefly, `cargo xtask fuzz` for longer.

mod frames;
mod lab;
mod oracle;

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

/// Longest a coarse clock read lags the precise clock.
const COARSE_TICK_NS: u64 = 10_000_000;

use lvs_common::{
    tcp_state::{TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
    Conn, Counters, Direction, FlowKey, Method, ReplyKey, Verdict, IPPROTO_TCP,
};
use lvs_datapath::{Datapath, KernelDatapath};

use frames::{Rng, Spec, ETH_LEN, ICMP, MUTATIONS, TCP, UDP};
use lab::{Lab, ServiceSpec, CLIENT, LINKS, LOOPBACK};
use oracle::{Context, Counted, Observed, Program};

const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 1, 2];
/// Flows remembered for follow-up packets and replies.
const FLOWS_KEPT: usize = 512;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// A frame in hex, cut after 256 bytes (the seed replays it whole).
fn hex(b: &[u8]) -> String {
    let shown: String = b.iter().take(256).map(|x| format!("{x:02x}")).collect();
    if b.len() > 256 {
        format!("{shown}... ({} bytes)", b.len())
    } else {
        shown
    }
}

/// Frames `BPF_PROG_TEST_RUN` does not take: none shorter than an
/// Ethernet header, and no socket buffer whose ethertype promises an IPv4
/// or IPv6 header it does not hold.
fn refused(program: Program, f: &[u8]) -> bool {
    let l3 = match (program, f.get(12..14)) {
        (_, None) => return true,
        (Program::Tc, Some([0x08, 0x00])) => 20,
        (Program::Tc, Some([0x86, 0xdd])) => 40,
        _ => 0,
    };
    f.len() < ETH_LEN + l3
}

/// A flow the director took, for follow-up packets and replies.
#[derive(Clone, Copy)]
struct KnownFlow {
    key: FlowKey,
    conn: Conn,
}

#[derive(Default)]
struct Stats {
    frames: u64,
    /// Frames `BPF_PROG_TEST_RUN` refuses (see `refused`).
    refused: u64,
    verdicts: BTreeMap<(&'static str, &'static str), u64>,
    stale_replies: u64,
    shared_replies: u64,
    /// ICMP errors that went to the owner of the connection they quote,
    /// by program.
    icmp_errors_owned: BTreeMap<&'static str, u64>,
    per_phase: Vec<(&'static str, u64, Duration)>,
}

struct Fuzzer {
    lab: Lab,
    rng: Rng,
    seed: u64,
    stats: Stats,
    flows: Vec<KnownFlow>,
    verdict_totals: Vec<u64>,
    phase: &'static str,
    /// Next client port handed out for a fresh flow.
    next_port: u16,
    /// `net.ipv4.ip_forward` as this test set it.
    forwarding: bool,
    /// What each service's (`false`) and real server's (`true`) counters
    /// must read, from every packet that went by an entry.
    counters: HashMap<(bool, u32), Counters>,
}

impl Fuzzer {
    fn new(seed: u64) -> Self {
        let lab = Lab::new();
        let verdict_totals = vec![0; Verdict::ALL.len()];
        let mut f = Self {
            lab,
            rng: Rng::new(seed),
            seed,
            stats: Stats::default(),
            flows: Vec::new(),
            verdict_totals,
            phase: "setup",
            next_port: 10_000,
            forwarding: true,
            counters: HashMap::new(),
        };
        f.verdict_totals = f.read_verdicts();
        f
    }

    fn dp(&self) -> &KernelDatapath {
        self.lab.controller.datapath()
    }

    fn read_verdicts(&self) -> Vec<u64> {
        let v = self.dp().verdicts().expect("read VERDICTS");
        assert_eq!(v.len(), Verdict::ALL.len());
        v.into_iter().map(|(_, n)| n).collect()
    }

    fn fresh_port(&mut self) -> u16 {
        self.next_port = if self.next_port >= 65_000 {
            10_000
        } else {
            self.next_port + 1
        };
        self.next_port
    }

    /// Run `input` through `program` as if it arrived on `ingress` (a lab
    /// link, or loopback), and judge the outcome; a wrong one fails the
    /// test with everything needed to replay it.
    fn run(&mut self, program: Program, ingress: Option<usize>, input: &[u8]) {
        let ingress_ifindex = ingress.map_or(LOOPBACK, |l| self.lab.ifindex[l]);
        let key = oracle::flow_key(input);
        let controller = &self.lab.controller;
        let lookup = |k: &FlowKey| controller.datapath().connection(k).expect("read CONNS");
        let reply_services = |s: &ReplyKey| controller.datapath().reply_services(s);
        // What the program finds for the packet.
        let entry_of = |k: &FlowKey| {
            oracle::one_entry_reply(k, &lookup, &reply_services).or_else(|| lookup(k))
        };
        let before = key.as_ref().and_then(entry_of);
        let now_before = self.dp().now_ns().expect("clock");
        let result = match program {
            Program::Xdp => self
                .dp()
                .test_run_from(ingress.map(|l| self.lab.ifindex[l]), input),
            Program::Tc => self.dp().test_run_tc(ingress_ifindex, input),
        };
        self.stats.frames += 1;
        let run = match result {
            Ok(run) => run,
            Err(_) if refused(program, input) => {
                self.stats.refused += 1;
                return;
            }
            Err(e) => self.fail(
                program,
                ingress,
                input,
                None,
                None,
                None,
                &format!("BPF_PROG_TEST_RUN: {e}"),
            ),
        };
        let now_after = self.dp().now_ns().expect("clock");
        let totals = self.read_verdicts();
        let moved: Vec<(usize, u64)> = totals
            .iter()
            .zip(&self.verdict_totals)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| (i, a - b))
            .collect();
        self.verdict_totals = totals;
        let verdict = match moved.as_slice() {
            [(i, 1)] => Verdict::ALL[*i],
            _ => self.fail(
                program,
                ingress,
                input,
                Some(&run.frame),
                before,
                None,
                &format!("the run moved the verdict counters by {moved:?}, not exactly one verdict by one"),
            ),
        };
        let after = key.as_ref().and_then(entry_of);
        let neighbour_note = self
            .lab
            .controller
            .datapath()
            .neighbour_note(&run.frame)
            .map(|n| (n.next_hop, n.ifindex));
        let obs = Observed {
            action: run.action,
            verdict,
            output: run.frame,
            neighbour_note,
        };
        let ctx = Context {
            program,
            services: &self.lab.services,
            ifindex: self.lab.ifindex,
            ingress_ifindex,
            // The program reads the coarse clock: up to a tick (10 ms at
            // HZ=100) behind the precise one read around the run.
            now_ns: (now_before.saturating_sub(COARSE_TICK_NS), now_after),
            timeouts: self.lab.controller.timeouts(),
            forwarding: self.forwarding,
            next_hops: &self.lab.next_hops,
            reply_services: &reply_services,
        };
        match oracle::check(&ctx, input, &obs, before, after, &lookup) {
            Ok(notes) => {
                self.stats.stale_replies += notes.stale_reply as u64;
                self.stats.shared_replies += notes.shared_reply as u64;
                if notes.owner.is_some() {
                    let name = match program {
                        Program::Xdp => "xdp",
                        Program::Tc => "tc",
                    };
                    *self.stats.icmp_errors_owned.entry(name).or_default() += 1;
                }
                if let Some(conn) = notes.owner.or(after) {
                    if let Err(e) = self.count(&conn, notes.counted) {
                        self.fail(
                            program,
                            ingress,
                            input,
                            Some(&obs.output),
                            before,
                            after,
                            &e,
                        );
                    }
                }
            }
            Err(e) => self.fail(
                program,
                ingress,
                input,
                Some(&obs.output),
                before,
                after,
                &format!(
                    "{} (verdict {}, action {})",
                    e,
                    verdict.name(),
                    obs.action as i32
                ),
            ),
        }
        let program_name = match program {
            Program::Xdp => "xdp",
            Program::Tc => "tc",
        };
        *self
            .stats
            .verdicts
            .entry((program_name, verdict.name()))
            .or_default() += 1;
        if let (Some(key), Some(conn)) = (key, after) {
            if conn.direction == Direction::Inbound as u8 && before.is_none() {
                let flow = KnownFlow { key, conn };
                if self.flows.len() < FLOWS_KEPT {
                    self.flows.push(flow);
                } else {
                    let i = self.rng.below(FLOWS_KEPT);
                    self.flows[i] = flow;
                }
            }
        }
    }

    /// Follow what a frame added to the counters of its entry's (`conn`)
    /// service and real server in the model, and compare with the
    /// datapath's: a frame that did not go by the entry added nothing.
    fn count(&mut self, conn: &Conn, counted: Counted) -> Result<(), String> {
        for (real, index) in [(false, conn.service_index), (true, conn.real_index)] {
            let model = self.counters.entry((real, index)).or_default();
            match counted {
                Counted::No => {}
                Counted::Packet { bytes, new_conn } => {
                    model.conns += new_conn as u64;
                    if conn.direction == Direction::Inbound as u8 {
                        model.in_packets += 1;
                        model.in_bytes += bytes;
                    } else {
                        model.out_packets += 1;
                        model.out_bytes += bytes;
                    }
                }
                Counted::Unsure => {
                    // Rare (the deadline fell within the run): take the
                    // datapath's word for this one.
                    let actual = self.counters_of(real, index);
                    self.counters.insert((real, index), actual);
                    continue;
                }
            }
            let model = *model;
            let actual = self.counters_of(real, index);
            if actual != model {
                let what = if real { "real server" } else { "service" };
                return Err(format!(
                    "{what} {index}'s counters read {actual:?}, expected {model:?}"
                ));
            }
        }
        Ok(())
    }

    fn counters_of(&self, real: bool, index: u32) -> Counters {
        let dp = self.dp();
        if real {
            dp.real_counters(index)
        } else {
            dp.service_counters(index)
        }
        .expect("read counters")
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "everything a failure report shows"
    )]
    fn fail(
        &self,
        program: Program,
        ingress: Option<usize>,
        input: &[u8],
        output: Option<&[u8]>,
        before: Option<Conn>,
        after: Option<Conn>,
        why: &str,
    ) -> ! {
        panic!(
            "\nfuzz: WRONG in phase `{}`, frame {} ({program:?} from {}):\n  {why}\n  in:  {}\n  out: {}\n  entry before: {before:?}\n  entry after:  {after:?}\n  replay: LVS_FUZZ_SEED={} (cargo xtask fuzz --seed {})\n",
            self.phase,
            self.stats.frames,
            ingress.map_or("lo", |l| LINKS[l].name),
            hex(input),
            output.map_or("-".into(), hex),
            self.seed,
            self.seed,
        )
    }

    /// Both programs, from a random ingress.
    fn run_both(&mut self, input: &[u8]) {
        for program in [Program::Xdp, Program::Tc] {
            let ingress = self.ingress();
            self.run(program, ingress, input);
        }
    }

    fn ingress(&mut self) -> Option<usize> {
        match self.rng.below(6) {
            0 => None,
            // Most traffic comes from the clients' side.
            1 | 2 => Some(0),
            n => Some(n - 2),
        }
    }

    fn program(&mut self) -> Program {
        if self.rng.chance(1, 2) {
            Program::Xdp
        } else {
            Program::Tc
        }
    }

    fn start(&mut self, phase: &'static str) -> (Instant, u64) {
        self.phase = phase;
        (Instant::now(), self.stats.frames)
    }

    fn end(&mut self, (t, frames): (Instant, u64)) {
        self.stats
            .per_phase
            .push((self.phase, self.stats.frames - frames, t.elapsed()));
    }

    // ---- frames ----

    fn client(&mut self) -> [u8; 4] {
        match self.rng.below(20) {
            0..=7 => CLIENT,
            8..=11 => [198, 18, 1, 2 + self.rng.below(253) as u8],
            12..=16 => [10, self.rng.byte(), self.rng.byte(), self.rng.byte()],
            _ => [
                172,
                16 | (self.rng.byte() & 0x0f),
                self.rng.byte(),
                self.rng.byte(),
            ],
        }
    }

    fn payload(&mut self) -> Vec<u8> {
        let n = match self.rng.below(20) {
            0..=13 => self.rng.below(64),
            14..=17 => self.rng.below(1400),
            // Beyond the links' MTU: NAT goes to the kernel, TUN answers
            // or drops.
            _ => 1400 + self.rng.below(1500),
        };
        self.rng.bytes(n)
    }

    fn tcp_flags(&mut self) -> u8 {
        match self.rng.below(10) {
            0..=3 => TCP_SYN,
            4 => TCP_ACK,
            5 => TCP_ACK | 0x08,
            6 => TCP_FIN | TCP_ACK,
            7 => TCP_RST,
            8 => TCP_SYN | TCP_ACK,
            _ => self.rng.byte(),
        }
    }

    fn spec(&mut self, src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Spec {
        let tcp_flags = self.tcp_flags();
        let payload = self.payload();
        Spec {
            src_mac: CLIENT_MAC,
            dst_mac: LINKS[0].mac,
            src,
            dst,
            proto,
            sport,
            dport,
            tcp_flags,
            ttl: if self.rng.chance(9, 10) {
                64
            } else {
                *self.rng.pick(&[0, 1, 2, 255])
            },
            tos: if self.rng.chance(1, 5) {
                self.rng.byte()
            } else {
                0
            },
            id: self.rng.u16(),
            dont_fragment: self.rng.chance(1, 2),
            payload,
        }
    }

    fn service(&mut self) -> ServiceSpec {
        let i = self.rng.below(self.lab.services.len());
        self.lab.services[i].clone()
    }

    /// A client's packet for a service, on a new or reused client port.
    fn for_service(&mut self) -> Vec<u8> {
        let svc = self.service();
        let client = self.client();
        let sport = if self.rng.chance(1, 2) {
            self.fresh_port()
        } else {
            1024 + self.rng.below(32) as u16
        };
        let dport = if svc.port == 0 {
            *self.rng.pick(&[22, 80, 443, 8443, 1])
        } else {
            svc.port
        };
        frames::build(&self.spec(client, svc.vip, svc.proto, sport, dport))
    }

    fn known_flow(&mut self) -> Option<KnownFlow> {
        (!self.flows.is_empty()).then(|| self.flows[self.rng.below(self.flows.len())])
    }

    /// The next packet of a flow the director took.
    fn on_flow(&mut self) -> Vec<u8> {
        let Some(f) = self.known_flow() else {
            return self.for_service();
        };
        let k = f.key;
        let mut spec = self.spec(k.src(), k.dst(), k.proto(), k.sport(), k.dport());
        if self.rng.chance(2, 3) {
            spec.tcp_flags = TCP_ACK | if self.rng.chance(1, 2) { 0x08 } else { 0 };
        }
        frames::build(&spec)
    }

    /// A real server's reply on a NAT flow (or a DR/TUN flow's, which
    /// never comes back through the director).
    fn reply(&mut self) -> Vec<u8> {
        let Some(f) = self.known_flow() else {
            return self.for_service();
        };
        let (k, c) = (f.key, f.conn);
        let mut spec = self.spec(c.addr(), k.src(), k.proto(), c.port(), k.sport());
        spec.src_mac = lab::neighbour_mac(c.addr());
        let any = self.rng.byte();
        spec.tcp_flags = *self.rng.pick(&[
            TCP_SYN | TCP_ACK,
            TCP_ACK,
            TCP_ACK | 0x08,
            TCP_FIN | TCP_ACK,
            TCP_RST,
            any,
        ]);
        frames::build(&spec)
    }

    /// Traffic that is not for any service: other addresses and ports,
    /// other protocols, ARP, IPv6.
    fn stray(&mut self) -> Vec<u8> {
        let client = self.client();
        match self.rng.below(6) {
            0 => {
                let svc = self.service();
                let port = 1 + self.rng.u16() % 1000;
                let sport = self.fresh_port();
                frames::build(&self.spec(client, svc.vip, svc.proto, sport, port))
            }
            1 => {
                let dst = [198, 18, self.rng.byte() % 16, self.rng.byte()];
                let proto = if self.rng.chance(1, 2) { TCP } else { UDP };
                let (sport, dport) = (self.rng.u16(), self.rng.u16());
                frames::build(&self.spec(client, dst, proto, sport, dport))
            }
            2 => {
                // Another IP protocol (ICMP echo, GRE, IPIP, ...) to a VIP.
                let svc = self.service();
                let mut f = frames::build(&self.spec(client, svc.vip, TCP, 1, 2));
                let any = self.rng.byte();
                f[ETH_LEN + 9] = *self.rng.pick(&[ICMP, 4, 47, 50, 51, 132, any]);
                frames::fix_checksums(&mut f);
                f
            }
            3 => {
                let mut arp = vec![0xff; 6];
                arp.extend_from_slice(&CLIENT_MAC);
                arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
                arp.extend_from_slice(&CLIENT_MAC);
                arp.extend_from_slice(&client);
                arp.extend_from_slice(&[0; 6]);
                arp.extend_from_slice(&[198, 18, 0, 10]);
                arp
            }
            4 => {
                let mut f = frames::build(&self.spec(client, [198, 18, 0, 10], TCP, 1, 80));
                f[12..14].copy_from_slice(&[0x86, 0xdd]);
                f
            }
            _ => {
                let n = 14 + self.rng.below(120);
                let mut f = self.rng.bytes(n);
                if self.rng.chance(1, 2) {
                    f[12..14].copy_from_slice(&[0x08, 0x00]);
                    if f.len() > ETH_LEN {
                        f[ETH_LEN] = 0x40 | (f[ETH_LEN] & 0x0f);
                    }
                }
                f
            }
        }
    }

    /// An ICMP error about a flow (client to VIP, or real server to
    /// client), quoting its header whole, cut short, or garbage. Half of
    /// them quote the flow the other way round, as errors the director must
    /// take to the connection's owner do: a packet from the VIP to the
    /// client (a reply as the director sent it), or from the client to a
    /// NAT real server (as the director DNATed it).
    fn icmp_error(&mut self) -> Vec<u8> {
        let mut quoted_frame = match self.known_flow() {
            Some(_) if self.rng.chance(1, 2) => self.on_flow(),
            Some(_) => self.reply(),
            None => self.for_service(),
        };
        if self.rng.chance(1, 2) {
            frames::swap_ends(&mut quoted_frame);
        }
        let quoted_ip = &quoted_frame[ETH_LEN..];
        let quoted = match self.rng.below(4) {
            0 => quoted_ip[..quoted_ip.len().min(28)].to_vec(),
            1 => quoted_ip[..self.rng.below(quoted_ip.len().min(60) + 1)].to_vec(),
            2 => {
                let n = self.rng.below(64);
                self.rng.bytes(n)
            }
            _ => quoted_ip.to_vec(),
        };
        // From the quoted packet's destination back to its source.
        let src: [u8; 4] = quoted_ip[16..20].try_into().unwrap();
        let dst: [u8; 4] = quoted_ip[12..16].try_into().unwrap();
        let spec = self.spec(src, dst, ICMP, 0, 0);
        let (t, code) = *self
            .rng
            .pick(&[(3, 4), (3, 1), (3, 3), (11, 0), (12, 0), (5, 1)]);
        let rest = [0, 0, 0x05, 0xc8];
        frames::icmp_error(&spec, t, code, rest, &quoted)
    }

    /// One base frame of any kind.
    fn any_frame(&mut self) -> Vec<u8> {
        match self.rng.below(20) {
            0..=6 => self.for_service(),
            7..=10 => self.on_flow(),
            11..=13 => self.reply(),
            14..=16 => self.stray(),
            _ => self.icmp_error(),
        }
    }

    // ---- phases ----

    /// A SYN (or UDP datagram) on a fresh client port to `svc`.
    fn opening(&mut self, svc: &ServiceSpec, payload: usize) -> Vec<u8> {
        let sport = self.fresh_port();
        let dport = if svc.port == 0 { 443 } else { svc.port };
        let mut spec = self.spec(CLIENT, svc.vip, svc.proto, sport, dport);
        spec.tcp_flags = TCP_SYN;
        spec.ttl = 64;
        spec.payload = self.rng.bytes(payload);
        frames::build(&spec)
    }

    /// Every service's opening packet, a follow-up and a NAT reply, an ICMP
    /// error, ARP, a tagged frame and one with options, each cut at every
    /// offset. The whole frame goes last, so each cut is judged on its own.
    fn truncations(&mut self) {
        let services = self.lab.services.clone();
        let mut bases = Vec::new();
        for svc in &services {
            bases.push(self.opening(svc, 12));
            // Established first, then its truncated follow-ups.
            let open = self.opening(svc, 0);
            self.run(Program::Xdp, Some(0), &open);
            let key = oracle::flow_key(&open).unwrap();
            let mut spec = self.spec(key.src(), key.dst(), key.proto(), key.sport(), key.dport());
            spec.tcp_flags = TCP_ACK;
            spec.ttl = 64;
            spec.payload = b"GET / HTTP/1.0\r\n\r\n".to_vec();
            bases.push(frames::build(&spec));
            if let Some(conn) = self.dp().connection(&key).unwrap() {
                let mut r = spec.clone();
                (r.src, r.dst, r.sport, r.dport) =
                    (conn.addr(), key.src(), conn.port(), key.sport());
                r.tcp_flags = TCP_SYN | TCP_ACK;
                bases.push(frames::build(&r));
            }
        }
        bases.push(self.icmp_error());
        bases.push(self.stray());
        let tagged = frames::with_vlan_tags(&bases[0], &mut self.rng, true);
        bases.push(tagged);
        let options = frames::ip_options(&mut self.rng);
        bases.push(frames::with_ip_options(&bases[0], &options));
        for base in bases {
            for cut in 0..=base.len() {
                self.run_both(&base[..cut]);
            }
        }
    }

    /// Every TCP flag byte: opening a flow of each TCP service, on an
    /// established flow of each, and on each NAT flow's replies.
    fn tcp_flags_sweep(&mut self) {
        let services: Vec<ServiceSpec> = self
            .lab
            .services
            .iter()
            .filter(|s| s.proto == IPPROTO_TCP)
            .cloned()
            .collect();
        for svc in &services {
            for flags in 0..=255u8 {
                for program in [Program::Xdp, Program::Tc] {
                    let mut f = self.opening(svc, 0);
                    f[ETH_LEN + 20 + 13] = flags;
                    frames::fix_checksums(&mut f);
                    self.run(program, Some(0), &f);
                }
            }
            let open = self.opening(svc, 0);
            self.run(Program::Xdp, Some(0), &open);
            let key = oracle::flow_key(&open).unwrap();
            let conn = self.dp().connection(&key).unwrap();
            for flags in 0..=255u8 {
                let mut spec = self.spec(key.src(), key.dst(), TCP, key.sport(), key.dport());
                (spec.tcp_flags, spec.ttl) = (flags, 64);
                let program = self.program();
                self.run(program, Some(0), &frames::build(&spec));
                if let Some(c) = conn.filter(|c| c.method == Method::Nat as u8) {
                    let mut r = spec.clone();
                    (r.src, r.dst, r.sport, r.dport) = (c.addr(), key.src(), c.port(), key.sport());
                    let program = self.program();
                    let link = LINKS
                        .iter()
                        .position(|l| l.addr[2] == c.addr()[2])
                        .unwrap_or(0);
                    self.run(program, Some(link), &frames::build(&r));
                }
            }
        }
    }

    /// Every IHL against total lengths around every boundary, with real
    /// options where the IHL allows them, for each service's opening
    /// packet (TUN's too big with DF too).
    fn lengths(&mut self) {
        let services = self.lab.services.clone();
        for svc in &services {
            for (big, df) in [(false, false), (true, true), (true, false)] {
                let mut base = self.opening(svc, if big { 1600 } else { 10 });
                base[ETH_LEN + 6] = if df { 0x40 } else { 0 };
                frames::fix_checksums(&mut base);
                for ihl in 0..16usize {
                    let with_options = if (6..16).contains(&ihl) && self.rng.chance(1, 2) {
                        let options = vec![1u8; (ihl - 5) * 4];
                        let mut f = frames::with_ip_options(&base, &options);
                        // Another client port: each variant is a new flow.
                        let port = self.fresh_port().to_be_bytes();
                        f[ETH_LEN + ihl * 4..ETH_LEN + ihl * 4 + 2].copy_from_slice(&port);
                        frames::fix_checksums(&mut f);
                        f
                    } else {
                        let mut f = base.clone();
                        f[ETH_LEN] = 0x40 | ihl as u8;
                        let port = self.fresh_port().to_be_bytes();
                        f[ETH_LEN + 20..ETH_LEN + 22].copy_from_slice(&port);
                        frames::fix_checksums(&mut f);
                        f
                    };
                    let actual = with_options.len() - ETH_LEN;
                    let h = ihl * 4;
                    for total in [
                        0,
                        19,
                        20,
                        h.saturating_sub(1),
                        h,
                        h + 7,
                        h + 8,
                        h + 19,
                        h + 20,
                        actual - 1,
                        actual,
                        actual + 1,
                        actual + 100,
                        65535,
                    ] {
                        let mut f = with_options.clone();
                        f[ETH_LEN + 2..ETH_LEN + 4].copy_from_slice(&(total as u16).to_be_bytes());
                        frames::fix_checksums(&mut f);
                        let program = self.program();
                        self.run(program, Some(0), &f);
                    }
                }
            }
        }
    }

    /// More-fragments and offsets, with and without DF, on every service.
    fn fragments(&mut self) {
        let services = self.lab.services.clone();
        for svc in &services {
            for (flags, offset) in [
                (0x20u16, 0u16),
                (0x20, 1),
                (0, 1),
                (0, 185),
                (0x20, 8191),
                (0x60, 0),
                (0x40, 0),
                (0x80, 0),
            ] {
                let mut f = self.opening(svc, 24);
                let v = flags << 8 | offset;
                f[ETH_LEN + 6..ETH_LEN + 8].copy_from_slice(&v.to_be_bytes());
                frames::fix_checksums(&mut f);
                self.run_both(&f);
            }
        }
    }

    /// Tags in front of every service's opening packet.
    fn vlans(&mut self) {
        let services = self.lab.services.clone();
        for svc in &services {
            for qinq in [false, true] {
                let f = self.opening(svc, 8);
                let tagged = frames::with_vlan_tags(&f, &mut self.rng, qinq);
                self.run_both(&tagged);
            }
        }
    }

    /// ICMP errors about known flows, their quotes cut at every offset.
    fn icmp_quotes(&mut self) {
        for _ in 0..8 {
            let f = self.icmp_error();
            let l3 = ETH_LEN + 28;
            for cut in l3..f.len().min(l3 + 64) {
                let spec = Spec {
                    src_mac: CLIENT_MAC,
                    dst_mac: LINKS[0].mac,
                    src: f[ETH_LEN + 12..ETH_LEN + 16].try_into().unwrap(),
                    dst: f[ETH_LEN + 16..ETH_LEN + 20].try_into().unwrap(),
                    proto: ICMP,
                    sport: 0,
                    dport: 0,
                    tcp_flags: 0,
                    ttl: 64,
                    tos: 0,
                    id: 0,
                    dont_fragment: false,
                    payload: Vec::new(),
                };
                let g = frames::icmp_error(
                    &spec,
                    f[ETH_LEN + 20],
                    f[ETH_LEN + 21],
                    [0; 4],
                    &f[l3..cut],
                );
                self.run_both(&g);
            }
        }
    }

    /// A random frame with up to three random mutations, through either
    /// program, from any ingress.
    fn random_frame(&mut self) {
        let mut f = self.any_frame();
        for _ in 0..self.rng.below(4) {
            let which = self.rng.below(MUTATIONS.len());
            frames::mutate(&mut f, which, &mut self.rng);
        }
        let program = self.program();
        let ingress = self.ingress();
        self.run(program, ingress, &f);
    }

    /// A frame of a known flow, either way, or a new one; now and then
    /// mutated once.
    fn flow_frame(&mut self) {
        let mut f = match self.rng.below(10) {
            0..=4 => self.on_flow(),
            5..=8 => self.reply(),
            _ => self.for_service(),
        };
        if self.rng.chance(1, 4) {
            let which = self.rng.below(MUTATIONS.len());
            frames::mutate(&mut f, which, &mut self.rng);
        }
        let program = self.program();
        let ingress = self.ingress();
        self.run(program, ingress, &f);
    }

    /// Every entry dead on arrival (every timeout 0): known flows are
    /// scheduled afresh, replies meet stale reply entries, and the sweeper
    /// runs in between.
    fn expiry(&mut self) {
        let defaults = self.lab.controller.timeouts();
        self.lab.controller.set_timeouts([0; 12]).expect("timeouts");
        for i in 0..2000 {
            if i % 250 == 0 {
                self.lab.controller.sweep().expect("sweep");
            }
            self.flow_frame();
        }
        self.lab
            .controller
            .set_timeouts(defaults)
            .expect("timeouts");
    }

    /// Forwarding off: the FIB refuses everything, NAT is dropped and
    /// counted, DR and TUN go to lvsd's next hops through the neighbour
    /// layer (one TUN real server has none: dropped).
    fn forwarding_off(&mut self) {
        lab::sh("sysctl -qw net.ipv4.ip_forward=0");
        // What the datapath cached of the routes is renewed, as lvsd's
        // maintenance does within a second.
        self.renew_egress();
        self.forwarding = false;
        // New flows to every server of every rr service, by each program.
        let services = self.lab.services.clone();
        for svc in &services {
            for program in [Program::Xdp, Program::Tc] {
                for _ in 0..svc.reals.len() {
                    let f = self.opening(svc, 16);
                    self.run(program, Some(0), &f);
                }
            }
        }
        for _ in 0..2000 {
            self.flow_frame();
        }
        lab::sh("sysctl -qw net.ipv4.ip_forward=1");
        self.renew_egress();
        self.forwarding = true;
    }

    fn renew_egress(&mut self) {
        self.lab
            .controller
            .renew_egress()
            .expect("renewing the cached egress");
    }

    /// Random frames until `deadline` or `max_frames`.
    fn random(&mut self, deadline: Instant, max_frames: u64) {
        let start = self.stats.frames;
        while self.stats.frames - start < max_frames && Instant::now() < deadline {
            self.random_frame();
        }
    }

    fn report(&self, elapsed: Duration) {
        eprintln!(
            "fuzz: seed {} — {} frames in {:.1} s ({:.0} frames/s), {} too short for BPF_PROG_TEST_RUN, {} NAT replies through a stale reply entry, {} NAT flows whose real-server side another flow took over, ICMP errors taken to their connection's owner {:?}",
            self.seed,
            self.stats.frames,
            elapsed.as_secs_f64(),
            self.stats.frames as f64 / elapsed.as_secs_f64(),
            self.stats.refused,
            self.stats.stale_replies,
            self.stats.shared_replies,
            self.stats.icmp_errors_owned,
        );
        for (phase, n, t) in &self.stats.per_phase {
            eprintln!("  {phase:<12} {n:>8} frames in {:>6.2} s", t.as_secs_f64());
        }
        for ((program, verdict), n) in &self.stats.verdicts {
            eprintln!("  {program:<3} {verdict:<26} {n:>8}");
        }
    }
}

#[test]
#[ignore = "needs root; run by `cargo xtask test` and `cargo xtask fuzz`"]
fn hostile_frames_are_passed_dropped_or_rewritten_exactly() {
    let seed = env_u64("LVS_FUZZ_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    });
    let seconds = env_u64("LVS_FUZZ_SECONDS").unwrap_or(5);
    let max_frames = env_u64("LVS_FUZZ_FRAMES").unwrap_or(u64::MAX);
    eprintln!("fuzz: LVS_FUZZ_SEED={seed} LVS_FUZZ_SECONDS={seconds}");
    let started = Instant::now();
    let mut fuzzer = Fuzzer::new(seed);
    type Phase = fn(&mut Fuzzer);
    let phases: [(&'static str, Phase); 8] = [
        ("truncations", Fuzzer::truncations),
        ("tcp flags", Fuzzer::tcp_flags_sweep),
        ("lengths", Fuzzer::lengths),
        ("fragments", Fuzzer::fragments),
        ("vlans", Fuzzer::vlans),
        ("icmp quotes", Fuzzer::icmp_quotes),
        ("expiry", Fuzzer::expiry),
        ("no forwarding", Fuzzer::forwarding_off),
    ];
    for (name, phase) in phases {
        let t = fuzzer.start(name);
        phase(&mut fuzzer);
        fuzzer.end(t);
    }
    let t = fuzzer.start("random");
    fuzzer.random(Instant::now() + Duration::from_secs(seconds), max_frames);
    fuzzer.end(t);
    fuzzer.report(started.elapsed());
    if std::env::var_os("LVS_FUZZ_FRAMES").is_some() {
        return;
    }
    // Every verdict the lab can produce was produced, by each program.
    for v in [
        Verdict::PassNotIpv4,
        Verdict::PassNoService,
        Verdict::PassNotSyn,
        Verdict::PassUnsupported,
        Verdict::PassMalformed,
        Verdict::PassToKernel,
        Verdict::DropNoDestination,
        Verdict::Redirect,
        Verdict::Transmit,
        Verdict::PassResolveNeighbour,
        Verdict::DropTooBig,
        Verdict::PassNoRoute,
        Verdict::PassTooBig,
        Verdict::PassLocal,
        Verdict::DropForwardingDisabled,
        Verdict::DropNoRoute,
    ] {
        for program in ["xdp", "tc"] {
            assert!(
                fuzzer.stats.verdicts.contains_key(&(program, v.name())),
                "{program} never gave {} (seed {seed})",
                v.name()
            );
        }
    }
    assert!(fuzzer
        .stats
        .verdicts
        .contains_key(&("xdp", Verdict::IcmpTooBig.name())));
    // Both directors took ICMP errors to their connections.
    assert_eq!(fuzzer.stats.icmp_errors_owned.len(), 2);
}
