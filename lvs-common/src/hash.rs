//! The kernel's bucket hashes for sh, dh, lblc and lblcr (ipvs-semantics
//! §2.7–2.10). One definition serves the controller, which builds the
//! tables, and the datapath, which indexes them.

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

#[cfg(test)]
mod tests {
    use super::*;

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
