//! Incremental Internet checksum updates (RFC 1624, eqn. 3).
//!
//! The datapath rewrites a few bytes of a header and must patch the checksum
//! without re-reading the whole packet; these helpers do exactly that and are
//! checked below against a full recomputation.

/// One's-complement fold of a 32-bit accumulator into 16 bits.
#[inline(always)]
pub const fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// `HC' = ~(~HC + ~m + m')` for one 16-bit word. `check` and the words are
/// the big-endian values as they appear on the wire.
#[inline(always)]
pub const fn replace_u16(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}

/// Patch a checksum for a changed 4-byte field (an IPv4 address).
#[inline(always)]
pub const fn replace_addr(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let sum = (!check) as u32
        + (!u16::from_be_bytes([old[0], old[1]])) as u32
        + (!u16::from_be_bytes([old[2], old[3]])) as u32
        + u16::from_be_bytes([new[0], new[1]]) as u32
        + u16::from_be_bytes([new[2], new[3]]) as u32;
    !fold(sum)
}

/// Patch a UDP checksum, where zero means "no checksum" and a computed zero
/// is sent as 0xffff (RFC 768).
#[inline(always)]
pub const fn udp_fixup(original: u16, patched: u16) -> u16 {
    if original == 0 {
        0
    } else if patched == 0 {
        0xffff
    } else {
        patched
    }
}

/// A checksum change not applied yet: the one's-complement sum of `~m + m'`
/// over every changed 16-bit word (RFC 1624). The datapath keeps the
/// pseudo-header's changes (addresses) apart from the covered bytes' (ports):
/// a socket buffer whose transport checksum was left to offload
/// (`CHECKSUM_PARTIAL`) holds only the pseudo-header's sum, so the kernel's
/// helper applies the first and skips the second.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u32);

impl Delta {
    pub const NONE: Delta = Delta(0);

    /// Add the change of one word.
    #[inline(always)]
    pub const fn word(self, old: u16, new: u16) -> Self {
        Delta(fold(self.0 + (!old) as u32 + new as u32) as u32)
    }

    /// Add the change of a 4-byte field (an IPv4 address).
    #[inline(always)]
    pub const fn addr(self, old: [u8; 4], new: [u8; 4]) -> Self {
        self.word(
            u16::from_be_bytes([old[0], old[1]]),
            u16::from_be_bytes([new[0], new[1]]),
        )
        .word(
            u16::from_be_bytes([old[2], old[3]]),
            u16::from_be_bytes([new[2], new[3]]),
        )
    }

    /// Both changes together.
    #[inline(always)]
    pub const fn and(self, other: Delta) -> Self {
        Delta(fold(self.0 + other.0) as u32)
    }

    /// The sum as the kernel's `bpf_l4_csum_replace` takes a diff.
    #[inline(always)]
    pub const fn sum(self) -> u32 {
        self.0
    }

    /// The checksum after the change.
    #[inline(always)]
    pub const fn apply(self, check: u16) -> u16 {
        !fold((!check) as u32 + self.0)
    }
}

/// Full one's-complement checksum over `data` plus an initial sum (for tests
/// and for building frames in userspace).
pub fn full(data: &[u8], initial: u32) -> u16 {
    let mut sum = initial;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += u16::from_be_bytes([*last, 0]) as u32;
    }
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_matches_the_one_step_helpers() {
        let (old, new) = ([192, 0, 2, 1], [198, 18, 11, 2]);
        for check in [0u16, 1, 0x1234, 0xfffe, 0xffff] {
            let delta = Delta::NONE.addr(old, new).word(80, 8080);
            assert_eq!(
                delta.apply(check),
                replace_u16(replace_addr(check, old, new), 80, 8080)
            );
            let split = Delta::NONE.addr(old, new).and(Delta::NONE.word(80, 8080));
            assert_eq!(split.apply(check), delta.apply(check));
        }
    }

    fn ipv4_header(src: [u8; 4], dst: [u8; 4], ttl: u8) -> [u8; 20] {
        let mut h = [
            0x45, 0, 0, 60, 0x12, 0x34, 0x40, 0, ttl, 6, 0, 0, src[0], src[1], src[2], src[3],
            dst[0], dst[1], dst[2], dst[3],
        ];
        let c = full(&h, 0);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn address_rewrite_matches_full_recomputation() {
        let cases = [
            ([192, 0, 2, 1], [198, 18, 0, 10], [198, 18, 11, 2]),
            ([0, 0, 0, 0], [255, 255, 255, 255], [0, 0, 0, 1]),
            ([10, 1, 2, 3], [1, 2, 3, 4], [255, 255, 0, 0]),
        ];
        for (src, old_dst, new_dst) in cases {
            let before = ipv4_header(src, old_dst, 64);
            let old_check = u16::from_be_bytes([before[10], before[11]]);
            let patched = replace_addr(old_check, old_dst, new_dst);
            let expected = ipv4_header(src, new_dst, 64);
            assert_eq!(
                patched.to_be_bytes(),
                [expected[10], expected[11]],
                "{old_dst:?}->{new_dst:?}"
            );
        }
    }

    #[test]
    fn ttl_decrement_matches_full_recomputation() {
        for ttl in [2u8, 64, 255] {
            let before = ipv4_header([1, 2, 3, 4], [5, 6, 7, 8], ttl);
            let after = ipv4_header([1, 2, 3, 4], [5, 6, 7, 8], ttl - 1);
            let old_word = u16::from_be_bytes([ttl, 6]);
            let new_word = u16::from_be_bytes([ttl - 1, 6]);
            let check = replace_u16(
                u16::from_be_bytes([before[10], before[11]]),
                old_word,
                new_word,
            );
            assert_eq!(check.to_be_bytes(), [after[10], after[11]]);
        }
    }

    #[test]
    fn port_rewrite_matches_full_recomputation() {
        // A pseudo-header-free toy segment: the port is the first word.
        let mut seg = [0u8; 12];
        seg[0..2].copy_from_slice(&80u16.to_be_bytes());
        seg[4..8].copy_from_slice(&[9, 8, 7, 6]);
        let c0 = full(&seg, 0);
        seg[0..2].copy_from_slice(&8080u16.to_be_bytes());
        let c1 = full(&seg, 0);
        assert_eq!(replace_u16(c0, 80, 8080), c1);
    }

    #[test]
    fn udp_zero_checksum_rules() {
        assert_eq!(udp_fixup(0, 0x1234), 0);
        assert_eq!(udp_fixup(0x1111, 0), 0xffff);
        assert_eq!(udp_fixup(0x1111, 0x2222), 0x2222);
    }
}
