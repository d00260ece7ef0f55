//! Frames: a deterministic PRNG, builders for well-formed frames, the
//! mutations that make them hostile, and checksums computed with
//! etherparse's one's-complement sum (not lvs-common's).

use etherparse::checksum::Sum16BitWords;

pub const ETH_LEN: usize = 14;
pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const ICMP: u8 = 1;

/// SplitMix64: small, fast, and the same sequence for the same seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `num` in `den`.
    pub fn chance(&mut self, num: usize, den: usize) -> bool {
        self.below(den) < num
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
    pub fn u16(&mut self) -> u16 {
        self.next_u64() as u16
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next_u64().to_ne_bytes());
        }
        v.truncate(n);
        v
    }
}

/// Everything a builder needs for one IPv4 TCP or UDP frame.
#[derive(Clone, Debug)]
pub struct Spec {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: u8,
    pub ttl: u8,
    pub tos: u8,
    pub id: u16,
    pub dont_fragment: bool,
    pub payload: Vec<u8>,
}

/// A well-formed Ethernet + IPv4 + TCP/UDP frame, checksums right.
pub fn build(spec: &Spec) -> Vec<u8> {
    let l4_len = if spec.proto == TCP { 20 } else { 8 };
    let total = 20 + l4_len + spec.payload.len();
    let mut f = Vec::with_capacity(ETH_LEN + total);
    f.extend_from_slice(&spec.dst_mac);
    f.extend_from_slice(&spec.src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(&[0x45, spec.tos]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&spec.id.to_be_bytes());
    f.extend_from_slice(&[if spec.dont_fragment { 0x40 } else { 0 }, 0]);
    f.extend_from_slice(&[spec.ttl, spec.proto, 0, 0]);
    f.extend_from_slice(&spec.src);
    f.extend_from_slice(&spec.dst);
    f.extend_from_slice(&spec.sport.to_be_bytes());
    f.extend_from_slice(&spec.dport.to_be_bytes());
    if spec.proto == TCP {
        f.extend_from_slice(&0x0102_0304u32.to_be_bytes()); // seq
        f.extend_from_slice(&0x0a0b_0c0du32.to_be_bytes()); // ack
        f.extend_from_slice(&[0x50, spec.tcp_flags, 0xfa, 0xf0, 0, 0, 0, 0]);
    } else {
        f.extend_from_slice(&((8 + spec.payload.len()) as u16).to_be_bytes());
        // Not 0 (none): fix_checksums fills it in.
        f.extend_from_slice(&[0xff, 0xff]);
    }
    f.extend_from_slice(&spec.payload);
    fix_checksums(&mut f);
    f
}

/// Offset of the IPv4 header behind any 802.1Q / 802.1ad tags, if the
/// frame says IPv4.
pub fn ip_offset(f: &[u8]) -> Option<usize> {
    let mut at = 12;
    loop {
        let ethertype = f.get(at..at + 2)?;
        match ethertype {
            [0x81, 0x00] | [0x88, 0xa8] => at += 4,
            [0x08, 0x00] => return Some(at + 2),
            _ => return None,
        }
    }
}

/// One's-complement residual of `words` (0 when a checksum inside is right).
pub fn residual(sum: Sum16BitWords) -> u16 {
    // 0 and 0xffff are the same number in one's complement.
    sum.ones_complement() % 0xffff
}

/// Where an IPv4 packet's transport checksum lives and what it covers.
pub struct L4Region {
    /// The pseudo-header (TCP and UDP; nothing for ICMP).
    pub pseudo: Sum16BitWords,
    pub range: std::ops::Range<usize>,
    pub check_at: usize,
    pub proto: u8,
}

/// The transport checksum's region of the IPv4 packet at `l3`: the
/// payload as the total length delimits it (or the frame, when it lies).
pub fn l4_region(f: &[u8], l3: usize) -> Option<L4Region> {
    let ihl = (*f.get(l3)? & 0x0f) as usize * 4;
    if ihl < 20 || f.len() < l3 + ihl {
        return None;
    }
    let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) as usize;
    let end = if total >= ihl && l3 + total <= f.len() {
        l3 + total
    } else {
        f.len()
    };
    let start = l3 + ihl;
    let proto = f[l3 + 9];
    let check = match proto {
        TCP => 16,
        UDP => 6,
        ICMP => 2,
        _ => return None,
    };
    if start + check + 2 > end {
        return None;
    }
    let pseudo = if proto == ICMP {
        Sum16BitWords::new()
    } else {
        Sum16BitWords::new()
            .add_slice(&f[l3 + 12..l3 + 20])
            .add_2bytes([0, proto])
            .add_2bytes(((end - start) as u16).to_be_bytes())
    };
    Some(L4Region {
        pseudo,
        range: start..end,
        check_at: start + check,
        proto,
    })
}

/// The header checksum's residual of the IPv4 header at `l3`.
pub fn ip_residual(f: &[u8], l3: usize) -> Option<u16> {
    let ihl = (*f.get(l3)? & 0x0f) as usize * 4;
    let header = f.get(l3..l3 + ihl.max(20))?;
    Some(residual(Sum16BitWords::new().add_slice(header)))
}

pub fn l4_residual(f: &[u8], l3: usize) -> Option<u16> {
    let r = l4_region(f, l3)?;
    Some(residual(r.pseudo.add_slice(&f[r.range])))
}

/// Make the IPv4 header checksum and the TCP, UDP or ICMP checksum right,
/// as far as the frame's lengths let them be defined.
pub fn fix_checksums(f: &mut [u8]) {
    let Some(l3) = ip_offset(f) else { return };
    let Some(&vihl) = f.get(l3) else { return };
    let ihl = (vihl & 0x0f) as usize * 4;
    if ihl >= 20 && f.len() >= l3 + ihl {
        f[l3 + 10..l3 + 12].fill(0);
        let c = Sum16BitWords::new()
            .add_slice(&f[l3..l3 + ihl])
            .ones_complement();
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_ne_bytes());
    }
    let Some(region) = l4_region(f, l3) else {
        return;
    };
    if region.proto == UDP && f[region.check_at..region.check_at + 2] == [0, 0] {
        // No checksum stays no checksum.
        return;
    }
    f[region.check_at..region.check_at + 2].fill(0);
    let mut c = region
        .pseudo
        .add_slice(&f[region.range.clone()])
        .ones_complement();
    if region.proto == UDP && c == 0 {
        c = 0xffff;
    }
    f[region.check_at..region.check_at + 2].copy_from_slice(&c.to_ne_bytes());
}

/// Rebuild `f` with `options` (a multiple of 4 bytes, at most 40) as the
/// IPv4 header's options: IHL and total length follow.
pub fn with_ip_options(f: &[u8], options: &[u8]) -> Vec<u8> {
    let l3 = ETH_LEN;
    let ihl = (f[l3] & 0x0f) as usize * 4;
    let mut out = f[..l3 + 20].to_vec();
    out.extend_from_slice(options);
    out.extend_from_slice(&f[l3 + ihl..]);
    out[l3] = 0x40 | ((20 + options.len()) / 4) as u8;
    // The total length grows by as much as the header (whatever it was).
    let total = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]) as i64;
    let total = (total - ihl as i64 + 20 + options.len() as i64).clamp(0, 65535);
    out[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
    fix_checksums(&mut out);
    out
}

/// IPv4 options that a router may meet: NOPs, record route, timestamp,
/// router alert, end of list, or garbage. Padded to a multiple of 4.
pub fn ip_options(rng: &mut Rng) -> Vec<u8> {
    let mut o = match rng.below(6) {
        0 => vec![1; 4 * (1 + rng.below(10))],
        1 => {
            let slots = 1 + rng.below(9);
            let mut v = vec![7, (3 + 4 * slots) as u8, 4];
            v.extend(std::iter::repeat_n(0, 4 * slots));
            v
        }
        2 => vec![68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        3 => vec![148, 4, 0, 0],
        4 => vec![0; 4 * (1 + rng.below(10))],
        _ => {
            let n = 4 * (1 + rng.below(10));
            rng.bytes(n)
        }
    };
    o.truncate(40);
    while o.len() % 4 != 0 {
        o.push(0);
    }
    o
}

/// 802.1Q (and, for QinQ, an outer 802.1ad) tags after the MACs.
pub fn with_vlan_tags(f: &[u8], rng: &mut Rng, qinq: bool) -> Vec<u8> {
    let mut out = f[..12].to_vec();
    if qinq {
        out.extend_from_slice(&[0x88, 0xa8]);
        out.extend_from_slice(&(rng.u16() & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&(rng.u16() & 0x0fff).to_be_bytes());
    out.extend_from_slice(&f[12..]);
    out
}

/// Swap an IPv4 TCP or UDP frame's source and destination (addresses and
/// ports); every checksum stays as it was, and as right.
pub fn swap_ends(f: &mut [u8]) {
    let l3 = ETH_LEN;
    if f.len() < l3 + 20 {
        return;
    }
    let ihl = (f[l3] & 0x0f) as usize * 4;
    let (src, dst) = f[l3 + 12..l3 + 20].split_at_mut(4);
    src.swap_with_slice(dst);
    let l4 = l3 + ihl;
    if f.len() >= l4 + 4 {
        let (sport, dport) = f[l4..l4 + 4].split_at_mut(2);
        sport.swap_with_slice(dport);
    }
}

/// An ICMP error from `src` to `dst` quoting `quoted` (an IPv4 packet, or
/// garbage, or a truncated header).
pub fn icmp_error(spec: &Spec, icmp_type: u8, code: u8, rest: [u8; 4], quoted: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + quoted.len();
    let mut f = Vec::with_capacity(ETH_LEN + total);
    f.extend_from_slice(&spec.dst_mac);
    f.extend_from_slice(&spec.src_mac);
    f.extend_from_slice(&[0x08, 0x00, 0x45, spec.tos]);
    f.extend_from_slice(&(total as u16).to_be_bytes());
    f.extend_from_slice(&spec.id.to_be_bytes());
    f.extend_from_slice(&[0, 0, spec.ttl, ICMP, 0, 0]);
    f.extend_from_slice(&spec.src);
    f.extend_from_slice(&spec.dst);
    f.extend_from_slice(&[icmp_type, code, 0, 0]);
    f.extend_from_slice(&rest);
    f.extend_from_slice(quoted);
    fix_checksums(&mut f);
    f
}

/// The mutations, each named for the failure report.
pub const MUTATIONS: [&str; 21] = [
    "truncate",
    "append trailing bytes",
    "total length off by a little",
    "total length anything",
    "IHL anything",
    "IP options",
    "fragment",
    "TCP flags anything",
    "TCP data offset anything",
    "UDP length anything",
    "UDP checksum none",
    "TTL low",
    "version not 4",
    "protocol anything",
    "flip bytes",
    "flip a header byte",
    "break the IP checksum",
    "break the L4 checksum",
    "VLAN tag",
    "QinQ tags",
    "ethertype anything",
];

/// Apply mutation `which` (an index into `MUTATIONS`) to `f`. Most leave
/// the checksums right afterwards, so that what is left wrong is the
/// mutation itself.
pub fn mutate(f: &mut Vec<u8>, which: usize, rng: &mut Rng) {
    let l3 = ETH_LEN;
    let ihl = |f: &[u8]| (f.get(l3).copied().unwrap_or(0x45) & 0x0f) as usize * 4;
    let has_ip = f.len() >= l3 + 20 && f[12..14] == [0x08, 0x00];
    let l4 = l3 + ihl(f);
    let set_total = |f: &mut Vec<u8>, total: u16| {
        if f.len() >= l3 + 4 {
            f[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        }
    };
    match MUTATIONS[which] {
        "truncate" => {
            let cut = rng.below(f.len() + 1);
            f.truncate(cut);
        }
        "append trailing bytes" => {
            let n = 1 + rng.below(64);
            let tail = rng.bytes(n);
            f.extend_from_slice(&tail);
        }
        "total length off by a little" if has_ip => {
            let total = (f.len() - l3) as i64 + rng.below(9) as i64 - 4;
            set_total(f, total.clamp(0, 65535) as u16);
            fix_checksums(f);
        }
        "total length anything" if has_ip => {
            let total = match rng.below(5) {
                0 => 0,
                1 => rng.below(ihl(f) + 21) as u16,
                2 => 65535,
                _ => rng.u16(),
            };
            set_total(f, total);
            fix_checksums(f);
        }
        "IHL anything" if has_ip => {
            f[l3] = (f[l3] & 0xf0) | rng.below(16) as u8;
            fix_checksums(f);
        }
        "IP options" if has_ip && ihl(f) == 20 && f.len() >= l3 + 20 => {
            let options = ip_options(rng);
            *f = with_ip_options(f, &options);
        }
        "fragment" if has_ip => {
            let (flags, offset) = match rng.below(4) {
                0 => (0x20, 0),
                1 => (0, 1 + rng.below(8191)),
                2 => (0x20, 1 + rng.below(8191)),
                _ => (0x20 | 0x40, rng.below(8192)),
            };
            let v = flags << 8 | offset as u16;
            f[l3 + 6..l3 + 8].copy_from_slice(&v.to_be_bytes());
            fix_checksums(f);
        }
        "TCP flags anything" if has_ip && f.len() > l4 + 13 => {
            f[l4 + 13] = rng.byte();
            fix_checksums(f);
        }
        "TCP data offset anything" if has_ip && f.len() > l4 + 12 => {
            f[l4 + 12] = (rng.below(16) as u8) << 4 | (f[l4 + 12] & 0x0f);
            fix_checksums(f);
        }
        "UDP length anything" if has_ip && f.len() >= l4 + 6 => {
            let len = rng.u16() % 2048;
            f[l4 + 4..l4 + 6].copy_from_slice(&len.to_be_bytes());
            fix_checksums(f);
        }
        "UDP checksum none" if has_ip && f.len() >= l4 + 8 && f[l3 + 9] == UDP => {
            f[l4 + 6..l4 + 8].fill(0);
            fix_checksums(f);
        }
        "TTL low" if has_ip => {
            f[l3 + 8] = rng.below(4) as u8;
            fix_checksums(f);
        }
        "version not 4" if has_ip => {
            f[l3] = (rng.byte() & 0xf0) | (f[l3] & 0x0f);
            fix_checksums(f);
        }
        "protocol anything" if has_ip => {
            f[l3 + 9] = rng.byte();
            fix_checksums(f);
        }
        "flip bytes" => {
            for _ in 0..1 + rng.below(4) {
                if !f.is_empty() {
                    let at = rng.below(f.len());
                    f[at] ^= 1 << rng.below(8);
                }
            }
        }
        "flip a header byte" if !f.is_empty() => {
            let at = rng.below(f.len().min(l4 + 20));
            f[at] = rng.byte();
            if rng.chance(1, 2) {
                fix_checksums(f);
            }
        }
        "break the IP checksum" if has_ip => {
            f[l3 + 10] ^= 1 + rng.below(255) as u8;
        }
        "break the L4 checksum" if has_ip => {
            if let Some(region) = l4_region(f, l3) {
                f[region.check_at + 1] ^= 1 + rng.below(255) as u8;
            }
        }
        "VLAN tag" if f.len() >= 14 => *f = with_vlan_tags(f, rng, false),
        "QinQ tags" if f.len() >= 14 => *f = with_vlan_tags(f, rng, true),
        "ethertype anything" if f.len() >= 14 => {
            f[12] = rng.byte();
            f[13] = rng.byte();
        }
        // Not applicable to this frame: leave it.
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(proto: u8, payload: &[u8]) -> Spec {
        Spec {
            src_mac: [2, 0, 0, 0, 1, 2],
            dst_mac: [2, 0, 0, 0, 1, 1],
            src: [198, 18, 1, 2],
            dst: [198, 18, 0, 10],
            proto,
            sport: 40000,
            dport: 80,
            tcp_flags: 0x02,
            ttl: 64,
            tos: 0,
            id: 7,
            dont_fragment: false,
            payload: payload.to_vec(),
        }
    }

    /// The builder's checksums agree with etherparse's own header types.
    #[test]
    fn built_frames_have_the_checksums_etherparse_computes() {
        for proto in [TCP, UDP] {
            for payload in [&b""[..], b"x", b"hello world"] {
                let f = build(&spec(proto, payload));
                let packet = etherparse::SlicedPacket::from_ethernet(&f).unwrap();
                let Some(etherparse::NetSlice::Ipv4(ip)) = &packet.net else {
                    panic!("not IPv4")
                };
                let header = ip.header().to_header();
                assert_eq!(header.header_checksum, header.calc_header_checksum());
                match packet.transport.unwrap() {
                    etherparse::TransportSlice::Tcp(tcp) => assert_eq!(
                        tcp.checksum(),
                        tcp.to_header()
                            .calc_checksum_ipv4(&header, tcp.payload())
                            .unwrap()
                    ),
                    etherparse::TransportSlice::Udp(udp) => assert_eq!(
                        udp.checksum(),
                        udp.to_header()
                            .calc_checksum_ipv4(&header, udp.payload())
                            .unwrap()
                    ),
                    _ => panic!("not TCP or UDP"),
                }
                assert_eq!(ip_residual(&f, ETH_LEN), Some(0));
                assert_eq!(l4_residual(&f, ETH_LEN), Some(0));
            }
        }
    }

    #[test]
    fn options_keep_the_frame_well_formed() {
        let mut rng = Rng::new(1);
        for _ in 0..100 {
            let f = build(&spec(TCP, b"data"));
            let o = ip_options(&mut rng);
            let g = with_ip_options(&f, &o);
            let ip = etherparse::Ipv4Slice::from_slice(&g[ETH_LEN..]).unwrap();
            assert_eq!(ip.header().options().len(), o.len());
            assert_eq!(
                (ip_residual(&g, ETH_LEN), l4_residual(&g, ETH_LEN)),
                (Some(0), Some(0))
            );
        }
    }
}
