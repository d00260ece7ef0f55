//! The kernel's bucket hashes for sh, dh, lblc and lblcr (ipvs-semantics
//! §2.7–2.10), and mh's (`ip_vs_mh.c`). One definition serves the
//! controller, which builds the tables, and the datapath, which indexes
//! them.

/// `GOLDEN_RATIO_32` from `include/linux/hash.h`.
const GOLDEN_RATIO_32: u32 = 0x61C8_8647;

/// `hash_32(v, bits)`: the top `bits` bits of `v * GOLDEN_RATIO_32`.
#[inline(always)]
pub const fn hash_32(v: u32, bits: u32) -> u32 {
    v.wrapping_mul(GOLDEN_RATIO_32) >> (32 - bits)
}

/// An IPv6 address folded to the 32 bits the hashes take, as IPVS folds
/// it: the XOR of its four 32-bit words (network order).
#[inline(always)]
pub const fn fold_ipv6(addr: [u8; 16]) -> [u8; 4] {
    let mut folded = [0u8; 4];
    let mut i = 0;
    while i < 16 {
        folded[i % 4] ^= addr[i];
        i += 1;
    }
    folded
}

/// Buckets of an sh or dh table.
pub const HASH_BUCKETS: u32 = 256;

/// sh: the bucket of a source address (with its port when the service has
/// `sh-port`, else 0), before any fallback probing.
#[inline(always)]
pub const fn sh_bucket(addr: [u8; 4], port: u16) -> u32 {
    hash_32(u32::from_be_bytes(addr).wrapping_add(port as u32), 8)
}

/// dh: the bucket of a destination address.
#[inline(always)]
pub const fn dh_bucket(addr: [u8; 4]) -> u32 {
    hash_32(u32::from_be_bytes(addr), 8)
}

/// lblc/lblcr: the bucket of a destination address in the 1024-bucket table.
#[inline(always)]
pub const fn locality_bucket(addr: [u8; 4]) -> u32 {
    hash_32(u32::from_be_bytes(addr), 10)
}

/// Slots of an mh table: the kernel's default (`CONFIG_IP_VS_MH_TAB_INDEX`
/// 12 picks the prime 4093).
pub const MH_TABLE_SIZE: u32 = 4093;

/// mh's two hsiphash keys (`generate_hash_secret`): fixed, not per host,
/// so every director computes the same table and the same lookups.
pub const MH_KEY_OFFSET: [u64; 2] = [2_654_435_761, 2_654_435_761];
pub const MH_KEY_SKIP: [u64; 2] = [2_654_446_892, 2_654_446_892];

/// `hsiphash(&v, 4, key)` as a 64-bit kernel computes it: SipHash-1-3
/// over the word's four bytes in host (little-endian) order, the 64-bit
/// result truncated.
#[inline(always)]
pub const fn hsiphash_u32(v: u32, key: [u64; 2]) -> u32 {
    let mut s = [
        0x736f_6d65_7073_6575 ^ key[0],
        0x646f_7261_6e64_6f6d ^ key[1],
        0x6c79_6765_6e65_7261 ^ key[0],
        0x7465_6462_7974_6573 ^ key[1],
    ];
    let b = (4u64 << 56) | v as u64;
    s[3] ^= b;
    s = sipround(s);
    s[0] ^= b;
    s[2] ^= 0xff;
    s = sipround(sipround(sipround(s)));
    (s[0] ^ s[1] ^ s[2] ^ s[3]) as u32
}

#[inline(always)]
const fn sipround(mut v: [u64; 4]) -> [u64; 4] {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
    v
}

/// What `ip_vs_mh_hashkey` hashes, before its offset: the port (0 unless
/// `mh-port`) plus the folded address, as host-order integers.
#[inline(always)]
pub const fn mh_key(addr: [u8; 4], port: u16) -> u32 {
    (port as u32).wrapping_add(u32::from_be_bytes(addr))
}

/// The slot `ip_vs_mh_hashkey(.., hash1, offset) % size` names: offset 0
/// for the lookup (and a server's first preference), the probe's offset
/// for `mh-fallback`.
#[inline(always)]
pub const fn mh_slot(key: u32, offset: u32) -> u32 {
    hsiphash_u32(key.wrapping_add(offset), MH_KEY_OFFSET) % MH_TABLE_SIZE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel's own vector (`lib/tests/siphash_kunit.c`, 64-bit
    /// `test_vectors_hsiphash[4]`): bytes 0, 1, 2, 3 under key
    /// 0x0706050403020100, 0x0f0e0d0c0b0a0908.
    #[test]
    fn hsiphash_matches_the_kernels_self_test() {
        let key = [0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908];
        assert_eq!(
            hsiphash_u32(u32::from_le_bytes([0, 1, 2, 3]), key),
            0x88d3_8328
        );
    }

    #[test]
    fn reference_buckets() {
        // §2.10's table (current hash_32 variant) and §2.9's dh example.
        assert_eq!(sh_bucket([10, 0, 0, 1], 0), 39);
        assert_eq!(sh_bucket([10, 0, 0, 2], 0), 137);
        assert_eq!(sh_bucket([192, 168, 1, 10], 0), 248);
        assert_eq!(sh_bucket([192, 168, 1, 11], 0), 90);
        assert_eq!(sh_bucket([203, 0, 113, 7], 0), 124);
        assert_eq!(sh_bucket([10, 0, 0, 1], 1234), 128);
        assert_eq!(dh_bucket([192, 168, 1, 10]), 248);
    }

    /// IPVS's `ip_vs_sh_hashkey` for IPv6: `addr->ip6[0] ^ ... ^ ip6[3]`,
    /// then `ntohl`, computed here on words independently.
    #[test]
    fn ipv6_folds_its_four_words() {
        let addr: [u8; 16] = [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let words: u32 = (0..4)
            .map(|w| {
                u32::from_be_bytes([
                    addr[4 * w],
                    addr[4 * w + 1],
                    addr[4 * w + 2],
                    addr[4 * w + 3],
                ])
            })
            .fold(0, |a, b| a ^ b);
        assert_eq!(u32::from_be_bytes(fold_ipv6(addr)), words);
        assert_eq!(words, 0x2001_0da8);
        assert_eq!(sh_bucket(fold_ipv6(addr), 0), hash_32(0x2001_0da8, 8));
    }
}
