//! What differs between IPv4 and IPv6 on the packet's path: the IP header,
//! the FIB's and the neighbour layer's address fields, the outer header of
//! a tunnel, and the maps keyed by address. The path itself is written once,
//! generic over `Family`; the director runs it for `V4` and, by a tail call
//! on an IPv6 frame, for `V6` (`lvs_director6`), each program with a stack
//! of its own.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup as FibParams, bpf_redir_neigh, bpf_redir_neigh__bindgen_ty_1,
        BPF_F_ADJ_ROOM_ENCAP_L3_IPV4, BPF_F_ADJ_ROOM_ENCAP_L3_IPV6,
    },
    maps::{Array, HashMap, LruHashMap, RingBuf},
    programs::XdpContext,
};
use lvs_common::{
    addr::{Addr, In6},
    checksum::Delta,
    CachedEgress, Conn, FlowKey, HalfOpenSlot, LocalityEntry, LocalityKey, NeighKey, NeighNote,
    NextHop, Real, ReplyKey, ReplyServices, Service, ServiceKey, Template, TemplateKey, Verdict,
    IPPROTO_ICMP,
};

use crate::{
    decision::Decision,
    frame::Frame,
    headers::{
        pinned_ptr_at, Ipv4, Ipv6, Packet, ETH_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN,
    },
    maps,
};

/// The IP header's fields the path reads and writes, in either family.
pub trait IpHeader<A: Addr> {
    fn src(&self) -> A;
    fn dst(&self) -> A;
    fn set_src(&mut self, addr: A);
    fn set_dst(&mut self, addr: A);
    /// TTL or hop limit.
    fn hop_limit(&self) -> u8;
    /// Take one from the TTL (patching IPv4's header checksum).
    fn decrement_hop_limit(&mut self);
    /// Patch the header checksum for a change to the header (IPv6 has none).
    fn patch_check(&mut self, change: Delta);
    /// `patch_check`, returning the checksum field's own change: what a
    /// checksum over the header (ICMP's, over its quote) sees.
    fn patch_check_seen(&mut self, change: Delta) -> Delta;
    /// May not be fragmented on the way: DF, or IPv6, which routers never
    /// fragment.
    fn dont_fragment(&self) -> bool;
    /// The whole packet's length, headers included, as the header says.
    fn packet_len(&self) -> u16;
    /// TOS or traffic class.
    fn class(&self) -> u8;
    /// The identification a tunnel's IPv4 header copies (IPv6 has none).
    fn id(&self) -> [u8; 2];
}

pub trait Family: Sized + 'static {
    type Addr: Addr;
    type Ip: IpHeader<Self::Addr>;
    /// The other family: a tunnel may cross to it, as IPVS's does.
    type Other: Family;
    /// The protocol number of this family's packet inside a tunnel.
    const TUNNELLED: u8;
    const ETHERTYPE: [u8; 2];
    /// The ICMP of this family (its errors and, for IPv6, neighbour
    /// discovery): never balanced.
    const ICMP: u8;
    /// The ICMP errors IPVS takes to a connection's owner: destination
    /// unreachable, time exceeded, and ICMP's source quench or ICMPv6's
    /// packet too big.
    const ICMP_ERRORS: [u8; 3];
    /// ICMPv6's checksum covers the IPv6 pseudo-header; ICMP's does not.
    const ICMP_PSEUDO_HEADER: bool;
    /// `AF_INET` or `AF_INET6`, for the FIB and the neighbour layer.
    const AF: u8;
    /// The outer header a tunnel pushes: its length, and the flag that
    /// tells the kernel what a socket buffer then carries.
    const TUNNEL_HEADER_LEN: usize;
    const ENCAP_FLAG: u64;

    /// Find the IP header after the Ethernet header: its pointer, the
    /// length of its headers (IPv6's extension headers included) and the
    /// protocol they lead to.
    fn parse_ip(frame: &impl Frame) -> Result<(*mut Self::Ip, usize, u8), Verdict>;
    /// The IP header an ICMP error quotes, at `at` in the frame, the quote
    /// ending at `end`: its pointer, length and protocol. Only a quote of a
    /// packet the director could have sent is the director's (a first
    /// fragment; no IPv6 extension headers), else `PassUnsupported`.
    fn parse_quote(
        frame: &impl Frame,
        at: usize,
        end: usize,
    ) -> Result<(*mut Self::Ip, usize, u8), Verdict>;
    /// The `NEIGH_NOTES` key of the packet after the Ethernet header at
    /// `data`.
    fn neigh_key(data: usize, data_end: usize) -> Option<NeighKey>;
    /// `bpf_redirect_neigh`'s next hop.
    fn redirect_neighbour(next_hop: Self::Addr) -> bpf_redir_neigh;
    /// XDP: a DF packet too big for the egress; the sender is told.
    fn too_big_xdp(ctx: &XdpContext, packet: &Packet<Self>, mtu: u16) -> Result<Verdict, Verdict>;
    /// Fill the FIB lookup's addresses for a packet of family `I` (this
    /// one, or the inner packet of a tunnel across families) to `dst`: the
    /// source (the packet's, unless the route is to select it) and the
    /// destination; and TOS or flow label.
    fn fib_addresses<I: Family>(
        fib: &mut FibParams,
        ip: &I::Ip,
        dst: Self::Addr,
        want_source: bool,
    );
    /// The next hop and the selected source the FIB returned.
    fn fib_result(fib: &FibParams) -> (Self::Addr, Self::Addr);
    /// The outer header of a tunnel from `source` to `real` around `inner`,
    /// a packet of family `I` (whose hop limit is already decremented).
    fn tunnel_header<I: Family>(inner: &I::Ip, source: Self::Addr, real: Self::Addr) -> Self::Ip;

    fn services() -> &'static HashMap<ServiceKey<Self::Addr>, Service<Self::Addr>>;
    fn conns() -> &'static HashMap<FlowKey<Self::Addr>, Conn<Self::Addr>>;
    fn reals() -> &'static Array<Real<Self::Addr>>;
    fn templates() -> &'static LruHashMap<TemplateKey<Self::Addr>, Template>;
    fn locality() -> &'static LruHashMap<LocalityKey<Self::Addr>, LocalityEntry>;
    fn reply_services() -> &'static HashMap<ReplyKey<Self::Addr>, ReplyServices<Self::Addr>>;
    fn half_open() -> &'static Array<HalfOpenSlot<Self::Addr>>;
    fn next_hops() -> &'static HashMap<Self::Addr, NextHop<Self::Addr>>;
    fn egress_cache() -> &'static Array<CachedEgress<Self::Addr>>;
    fn client_egress() -> &'static Array<CachedEgress<Self::Addr>>;
    fn events() -> &'static RingBuf;
    fn conn_changes() -> &'static RingBuf;
    fn neigh_notes() -> &'static LruHashMap<NeighKey, NeighNote<Self::Addr>>;
    /// An IPv4 address as this family's (none for IPv6).
    fn ipv4(addr: [u8; 4]) -> Option<Self::Addr>;
    /// Byte offset of `Conn::state` (the word the datapath swaps).
    const CONN_STATE_OFFSET: usize;
    /// The path runs in stages, joined by tail calls (`decision`).
    const STAGED: bool;
    /// Keep a decision for the next stage, on this CPU.
    fn keep(decision: &Decision<Self::Addr>);
    /// The decision the previous stage kept.
    fn kept() -> Option<Decision<Self::Addr>>;
}

pub struct V4;
pub struct V6;

impl IpHeader<[u8; 4]> for Ipv4 {
    #[inline(always)]
    fn src(&self) -> [u8; 4] {
        self.src
    }
    #[inline(always)]
    fn dst(&self) -> [u8; 4] {
        self.dst
    }
    #[inline(always)]
    fn set_src(&mut self, addr: [u8; 4]) {
        self.src = addr;
    }
    #[inline(always)]
    fn set_dst(&mut self, addr: [u8; 4]) {
        self.dst = addr;
    }
    #[inline(always)]
    fn hop_limit(&self) -> u8 {
        self.ttl
    }
    #[inline(always)]
    fn decrement_hop_limit(&mut self) {
        let old = u16::from_be_bytes([self.ttl, self.proto]);
        self.ttl -= 1;
        let new = u16::from_be_bytes([self.ttl, self.proto]);
        self.patch_check(Delta::NONE.word(old, new));
    }
    #[inline(always)]
    fn patch_check(&mut self, change: Delta) {
        Ipv4::patch_check(self, change);
    }
    #[inline(always)]
    fn patch_check_seen(&mut self, change: Delta) -> Delta {
        let old = u16::from_be_bytes(self.check);
        Ipv4::patch_check(self, change);
        Delta::NONE.word(old, u16::from_be_bytes(self.check))
    }
    #[inline(always)]
    fn dont_fragment(&self) -> bool {
        Ipv4::dont_fragment(self)
    }
    #[inline(always)]
    fn packet_len(&self) -> u16 {
        u16::from_be_bytes(self.total_len)
    }
    #[inline(always)]
    fn class(&self) -> u8 {
        self.tos
    }
    #[inline(always)]
    fn id(&self) -> [u8; 2] {
        self.id
    }
}

impl IpHeader<In6> for Ipv6 {
    #[inline(always)]
    fn src(&self) -> In6 {
        self.src
    }
    #[inline(always)]
    fn dst(&self) -> In6 {
        self.dst
    }
    #[inline(always)]
    fn set_src(&mut self, addr: In6) {
        self.src = addr;
    }
    #[inline(always)]
    fn set_dst(&mut self, addr: In6) {
        self.dst = addr;
    }
    #[inline(always)]
    fn hop_limit(&self) -> u8 {
        self.hop_limit
    }
    #[inline(always)]
    fn decrement_hop_limit(&mut self) {
        self.hop_limit -= 1;
    }
    #[inline(always)]
    fn patch_check(&mut self, _change: Delta) {}
    #[inline(always)]
    fn patch_check_seen(&mut self, _change: Delta) -> Delta {
        Delta::NONE
    }
    #[inline(always)]
    fn dont_fragment(&self) -> bool {
        true
    }
    #[inline(always)]
    fn packet_len(&self) -> u16 {
        u16::from_be_bytes(self.payload_len).saturating_add(crate::headers::IPV6_HEADER_LEN as u16)
    }
    #[inline(always)]
    fn class(&self) -> u8 {
        self.version_class_flow[0] << 4 | self.version_class_flow[1] >> 4
    }
    #[inline(always)]
    fn id(&self) -> [u8; 2] {
        [0; 2]
    }
}

impl Family for V4 {
    type Addr = [u8; 4];
    type Ip = Ipv4;
    type Other = V6;
    const TUNNELLED: u8 = lvs_common::IPPROTO_IPIP;
    const ETHERTYPE: [u8; 2] = crate::headers::ETH_P_IPV4;
    const ICMP: u8 = IPPROTO_ICMP;
    const ICMP_ERRORS: [u8; 3] = [3, 4, 11];
    const ICMP_PSEUDO_HEADER: bool = false;
    const AF: u8 = 2;
    const TUNNEL_HEADER_LEN: usize = IPV4_HEADER_LEN;
    const ENCAP_FLAG: u64 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 as u64;
    const CONN_STATE_OFFSET: usize = lvs_common::CONN_STATE_OFFSET;
    const STAGED: bool = false;

    #[inline(always)]
    fn ipv4(addr: [u8; 4]) -> Option<[u8; 4]> {
        Some(addr)
    }

    /// One program decides and sends: nothing to keep.
    #[inline(always)]
    fn keep(_decision: &Decision<[u8; 4]>) {}
    #[inline(always)]
    fn kept() -> Option<Decision<[u8; 4]>> {
        None
    }

    #[inline(always)]
    fn parse_ip(frame: &impl Frame) -> Result<(*mut Ipv4, usize, u8), Verdict> {
        crate::headers::parse_ipv4(frame)
    }
    #[inline(always)]
    fn parse_quote(
        frame: &impl Frame,
        at: usize,
        end: usize,
    ) -> Result<(*mut Ipv4, usize, u8), Verdict> {
        if at + IPV4_HEADER_LEN > end {
            return Err(Verdict::PassUnsupported);
        }
        let ip: *mut Ipv4 = pinned_ptr_at(frame, at).map_err(|_| Verdict::PassUnsupported)?;
        // SAFETY: bounds-checked by pinned_ptr_at.
        let ipr = unsafe { &*ip };
        let ihl = ipr.header_len();
        if ipr.version_ihl >> 4 != 4 || ihl < IPV4_HEADER_LEN {
            return Err(Verdict::PassUnsupported);
        }
        // Only a first fragment carries the ports.
        if (ipr.frag[0] & 0x1f) != 0 || ipr.frag[1] != 0 {
            return Err(Verdict::PassUnsupported);
        }
        Ok((ip, ihl, ipr.proto))
    }
    #[inline(always)]
    fn neigh_key(data: usize, data_end: usize) -> Option<NeighKey> {
        let ip = data + ETH_HEADER_LEN;
        if ip + IPV4_HEADER_LEN > data_end {
            return None;
        }
        // SAFETY: the header's 20 bytes are within the packet (checked above).
        Some(NeighKey::of_ipv4_header(unsafe {
            &*(ip as *const [u8; IPV4_HEADER_LEN])
        }))
    }
    #[inline(always)]
    fn redirect_neighbour(next_hop: [u8; 4]) -> bpf_redir_neigh {
        bpf_redir_neigh {
            nh_family: 2,
            __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 {
                ipv4_nh: u32::from_ne_bytes(next_hop),
            },
        }
    }
    #[inline(always)]
    fn too_big_xdp(ctx: &XdpContext, packet: &Packet<V4>, mtu: u16) -> Result<Verdict, Verdict> {
        crate::icmp::frag_needed(ctx, packet, mtu)
    }
    #[inline(always)]
    fn fib_addresses<I: Family>(fib: &mut FibParams, ip: &I::Ip, dst: [u8; 4], want_source: bool) {
        fib.__bindgen_anon_2.tos = ip.class();
        if let Some(src) = same_family::<I::Addr, [u8; 4]>(ip.src()).filter(|_| !want_source) {
            fib.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(src);
        }
        fib.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(dst);
    }
    #[inline(always)]
    fn fib_result(fib: &FibParams) -> ([u8; 4], [u8; 4]) {
        // SAFETY: the IPv4 members are the ones in use for AF_INET.
        unsafe {
            (
                fib.__bindgen_anon_4.ipv4_dst.to_ne_bytes(),
                fib.__bindgen_anon_3.ipv4_src.to_ne_bytes(),
            )
        }
    }
    /// IPVS's `ip_vs_tunnel_xmit`: TOS, identification and DF copied from
    /// the inner header (DF always for IPv6 inside, which routers never
    /// fragment), TTL the inner one's, protocol 4 (41 for IPv6 inside).
    #[inline(always)]
    fn tunnel_header<I: Family>(inner: &I::Ip, source: [u8; 4], real: [u8; 4]) -> Ipv4 {
        let mut header = Ipv4 {
            version_ihl: 0x45,
            tos: inner.class(),
            total_len: (inner.packet_len() + IPV4_HEADER_LEN as u16).to_be_bytes(),
            id: inner.id(),
            frag: [if inner.dont_fragment() { 0x40 } else { 0 }, 0],
            ttl: inner.hop_limit(),
            proto: I::TUNNELLED,
            check: [0; 2],
            src: source,
            dst: real,
        };
        // SAFETY: the header's 20 bytes, all initialised.
        let bytes = unsafe { &*(&header as *const Ipv4 as *const [u8; IPV4_HEADER_LEN]) };
        header.check = lvs_common::checksum::full(bytes, 0).to_be_bytes();
        header
    }

    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKey, Service> {
        &maps::SERVICES
    }
    #[inline(always)]
    fn conns() -> &'static HashMap<FlowKey, Conn> {
        &maps::CONNS
    }
    #[inline(always)]
    fn reals() -> &'static Array<Real> {
        &maps::REALS
    }
    #[inline(always)]
    fn templates() -> &'static LruHashMap<TemplateKey, Template> {
        &maps::TEMPLATES
    }
    #[inline(always)]
    fn locality() -> &'static LruHashMap<LocalityKey, LocalityEntry> {
        &maps::LOCALITY
    }
    #[inline(always)]
    fn reply_services() -> &'static HashMap<ReplyKey, ReplyServices> {
        &maps::REPLY_SERVICES
    }
    #[inline(always)]
    fn half_open() -> &'static Array<HalfOpenSlot> {
        &maps::HALF_OPEN
    }
    #[inline(always)]
    fn next_hops() -> &'static HashMap<[u8; 4], NextHop> {
        &maps::NEXT_HOPS
    }
    #[inline(always)]
    fn egress_cache() -> &'static Array<CachedEgress> {
        &maps::EGRESS_CACHE
    }
    #[inline(always)]
    fn client_egress() -> &'static Array<CachedEgress> {
        &maps::CLIENT_EGRESS
    }
    #[inline(always)]
    fn events() -> &'static RingBuf {
        &maps::EVENTS
    }
    #[inline(always)]
    fn conn_changes() -> &'static RingBuf {
        &maps::CONN_CHANGES
    }
    #[inline(always)]
    fn neigh_notes() -> &'static LruHashMap<NeighKey, NeighNote> {
        &maps::NEIGH_NOTES
    }
}

/// `a` as the address type `B`, if it is of the same family. (`Addr` is
/// sealed: two address types of one size are the same type.)
#[inline(always)]
fn same_family<A: Addr, B: Addr>(a: A) -> Option<B> {
    if core::mem::size_of::<A>() != core::mem::size_of::<B>() {
        return None;
    }
    // SAFETY: the same type (see above), copied.
    Some(unsafe { core::mem::transmute_copy::<A, B>(&a) })
}

/// IPv6's first word for a packet of family `I`: its own, or version 6
/// with an IPv4 packet's TOS as the traffic class.
#[inline(always)]
fn class_flow<I: Family>(ip: &I::Ip) -> [u8; 4] {
    if let Some(ip) = same_family_header::<I>(ip) {
        return ip.version_class_flow;
    }
    let class = ip.class();
    [0x60 | class >> 4, class << 4, 0, 0]
}

/// The header as IPv6's, if `I` is IPv6.
#[inline(always)]
fn same_family_header<I: Family>(ip: &I::Ip) -> Option<&Ipv6> {
    if I::AF != V6::AF {
        return None;
    }
    // SAFETY: `I` is `V6` (the one family with AF_INET6): `I::Ip` is `Ipv6`.
    Some(unsafe { &*(ip as *const I::Ip as *const Ipv6) })
}

/// Next header of ICMPv6; of an IPv6 packet inside an IPv6 tunnel.
pub const IPPROTO_ICMPV6: u8 = 58;
const IPPROTO_IPV6: u8 = 41;

impl Family for V6 {
    type Addr = In6;
    type Ip = Ipv6;
    type Other = V4;
    const TUNNELLED: u8 = IPPROTO_IPV6;
    const ETHERTYPE: [u8; 2] = crate::headers::ETH_P_IPV6;
    const ICMP: u8 = IPPROTO_ICMPV6;
    const ICMP_ERRORS: [u8; 3] = [1, 2, 3];
    const ICMP_PSEUDO_HEADER: bool = true;
    const AF: u8 = 10;
    const TUNNEL_HEADER_LEN: usize = IPV6_HEADER_LEN;
    const ENCAP_FLAG: u64 = BPF_F_ADJ_ROOM_ENCAP_L3_IPV6 as u64;
    const CONN_STATE_OFFSET: usize = lvs_common::CONN6_STATE_OFFSET;
    const STAGED: bool = true;

    #[inline(always)]
    fn ipv4(_addr: [u8; 4]) -> Option<In6> {
        None
    }

    #[inline(always)]
    fn keep(decision: &Decision<In6>) {
        if let Some(slot) = maps::DECIDED6.get_ptr_mut(0) {
            // SAFETY: this CPU's slot; the next stage runs on this CPU
            // before any other packet does.
            unsafe { *slot = *decision };
        }
    }
    #[inline(always)]
    fn kept() -> Option<Decision<In6>> {
        maps::DECIDED6.get(0).copied()
    }

    #[inline(always)]
    fn parse_ip(frame: &impl Frame) -> Result<(*mut Ipv6, usize, u8), Verdict> {
        crate::headers::parse_ipv6(frame)
    }
    /// The director sends no extension headers of its own, and a quote
    /// with a fragment header is not a first fragment's but for its
    /// offset: both pass.
    #[inline(always)]
    fn parse_quote(
        frame: &impl Frame,
        at: usize,
        end: usize,
    ) -> Result<(*mut Ipv6, usize, u8), Verdict> {
        if at + IPV6_HEADER_LEN > end {
            return Err(Verdict::PassUnsupported);
        }
        let ip: *mut Ipv6 = pinned_ptr_at(frame, at).map_err(|_| Verdict::PassUnsupported)?;
        // SAFETY: bounds-checked by pinned_ptr_at.
        let ipr = unsafe { &*ip };
        if ipr.version_class_flow[0] >> 4 != 6 {
            return Err(Verdict::PassUnsupported);
        }
        Ok((ip, IPV6_HEADER_LEN, ipr.next_header))
    }
    #[inline(always)]
    fn neigh_key(data: usize, data_end: usize) -> Option<NeighKey> {
        let ip = data + ETH_HEADER_LEN;
        if ip + IPV6_HEADER_LEN > data_end {
            return None;
        }
        // SAFETY: the header's 40 bytes are within the packet (checked above).
        Some(NeighKey::of_ipv6_header(unsafe {
            &*(ip as *const [u8; IPV6_HEADER_LEN])
        }))
    }
    #[inline(always)]
    fn redirect_neighbour(next_hop: In6) -> bpf_redir_neigh {
        bpf_redir_neigh {
            nh_family: 10,
            __bindgen_anon_1: bpf_redir_neigh__bindgen_ty_1 {
                ipv6_nh: next_hop.words(),
            },
        }
    }
    /// In a stage of its own (`Stage::TooBig`): building the answer here
    /// would not fit the sending stage's stack.
    #[inline(always)]
    fn too_big_xdp(ctx: &XdpContext, _packet: &Packet<V6>, mtu: u16) -> Result<Verdict, Verdict> {
        if let Some(slot) = maps::DECIDED6.get_ptr_mut(0) {
            // SAFETY: this CPU's slot, as in `keep`.
            unsafe { (*slot).mtu = mtu };
        }
        ctx.to_ipv6_stage(crate::decision::Stage::TooBig);
        Err(Verdict::DropTooBig)
    }
    #[inline(always)]
    fn fib_addresses<I: Family>(fib: &mut FibParams, ip: &I::Ip, dst: In6, want_source: bool) {
        // The flow label (with the traffic class, as the helper takes it).
        fib.__bindgen_anon_2.flowinfo = u32::from_ne_bytes(class_flow::<I>(ip)) & 0xffff_ff0f;
        if let Some(src) = same_family::<I::Addr, In6>(ip.src()).filter(|_| !want_source) {
            fib.__bindgen_anon_3.ipv6_src = src.words();
        }
        fib.__bindgen_anon_4.ipv6_dst = dst.words();
    }
    #[inline(always)]
    fn fib_result(fib: &FibParams) -> (In6, In6) {
        // SAFETY: the IPv6 members are the ones in use for AF_INET6.
        unsafe {
            (
                In6::from_words(fib.__bindgen_anon_4.ipv6_dst),
                In6::from_words(fib.__bindgen_anon_3.ipv6_src),
            )
        }
    }
    /// As `ip6_tnl_xmit`: traffic class and flow label copied from the inner
    /// header (an IPv4 one's TOS as the class), hop limit the inner one's,
    /// next header 41 (4 for IPv4 inside).
    #[inline(always)]
    fn tunnel_header<I: Family>(inner: &I::Ip, source: In6, real: In6) -> Ipv6 {
        Ipv6 {
            version_class_flow: class_flow::<I>(inner),
            payload_len: inner.packet_len().to_be_bytes(),
            next_header: I::TUNNELLED,
            hop_limit: inner.hop_limit(),
            src: source,
            dst: real,
        }
    }

    #[inline(always)]
    fn services() -> &'static HashMap<ServiceKey<In6>, Service<In6>> {
        &maps::SERVICES6
    }
    #[inline(always)]
    fn conns() -> &'static HashMap<FlowKey<In6>, Conn<In6>> {
        &maps::CONNS6
    }
    #[inline(always)]
    fn reals() -> &'static Array<Real<In6>> {
        &maps::REALS6
    }
    #[inline(always)]
    fn templates() -> &'static LruHashMap<TemplateKey<In6>, Template> {
        &maps::TEMPLATES6
    }
    #[inline(always)]
    fn locality() -> &'static LruHashMap<LocalityKey<In6>, LocalityEntry> {
        &maps::LOCALITY6
    }
    #[inline(always)]
    fn reply_services() -> &'static HashMap<ReplyKey<In6>, ReplyServices<In6>> {
        &maps::REPLY_SERVICES6
    }
    #[inline(always)]
    fn half_open() -> &'static Array<HalfOpenSlot<In6>> {
        &maps::HALF_OPEN6
    }
    #[inline(always)]
    fn next_hops() -> &'static HashMap<In6, NextHop<In6>> {
        &maps::NEXT_HOPS6
    }
    #[inline(always)]
    fn egress_cache() -> &'static Array<CachedEgress<In6>> {
        &maps::EGRESS_CACHE6
    }
    #[inline(always)]
    fn client_egress() -> &'static Array<CachedEgress<In6>> {
        &maps::CLIENT_EGRESS6
    }
    #[inline(always)]
    fn events() -> &'static RingBuf {
        &maps::EVENTS6
    }
    #[inline(always)]
    fn conn_changes() -> &'static RingBuf {
        &maps::CONN_CHANGES6
    }
    #[inline(always)]
    fn neigh_notes() -> &'static LruHashMap<NeighKey, NeighNote<In6>> {
        &maps::NEIGH_NOTES6
    }
}
