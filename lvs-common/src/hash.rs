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
}
