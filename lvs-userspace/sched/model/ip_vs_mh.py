#!/usr/bin/env python3
"""An independent model of the kernel's mh scheduler (net/netfilter/ipvs/
ip_vs_mh.c), written from the C, line by line, in another language, to check
lvs-sched's Rust against it. It prints the vectors `maglev.rs` tests read:

    python3 lvs-userspace/sched/model/ip_vs_mh.py > lvs-userspace/sched/src/maglev-vectors.txt

Servers are listed in IPVS list order (svc->destinations: the newest
first). Each scenario prints the whole lookup table (one character per
slot, the server's label, `-` for NULL) and lookups with and without
mh-fallback.
"""

import ipaddress
import math

MASK64 = (1 << 64) - 1
TAB_SIZE = 4093  # primes[CONFIG_IP_VS_MH_TAB_INDEX - 8], CONFIG_ default 12
TAB_BITS = 12 // 2
HASH1 = (2654435761, 2654435761)
HASH2 = (2654446892, 2654446892)


def rotl(x, b):
    return ((x << b) | (x >> (64 - b))) & MASK64


def sipround(v):
    v0, v1, v2, v3 = v
    v0 = (v0 + v1) & MASK64; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32)
    v2 = (v2 + v3) & MASK64; v3 = rotl(v3, 16); v3 ^= v2
    v0 = (v0 + v3) & MASK64; v3 = rotl(v3, 21); v3 ^= v0
    v2 = (v2 + v1) & MASK64; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32)
    return [v0, v1, v2, v3]


def hsiphash(data: bytes, key) -> int:
    """lib/siphash.c, BITS_PER_LONG == 64: HalfSipHash is SipHash-1-3."""
    v = [0x736f6d6570736575 ^ key[0], 0x646f72616e646f6d ^ key[1],
         0x6c7967656e657261 ^ key[0], 0x7465646279746573 ^ key[1]]
    b = (len(data) << 56) & MASK64
    whole = len(data) - len(data) % 8
    for i in range(0, whole, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v[3] ^= m
        v = sipround(v)
        v[0] ^= m
    b |= int.from_bytes(data[whole:], "little")
    v[3] ^= b
    v = sipround(v)
    v[0] ^= b
    v[2] ^= 0xff
    for _ in range(3):
        v = sipround(v)
    return (v[0] ^ v[1] ^ v[2] ^ v[3]) & 0xffffffff


# lib/tests/siphash_kunit.c, 64-bit test_vectors_hsiphash[0..12]
KUNIT_KEY = (0x0706050403020100, 0x0f0e0d0c0b0a0908)
KUNIT = [0x050fc4dc, 0x7d57ca93, 0x4dc7d44d, 0xe7ddf7fb, 0x88d38328, 0x49533b67,
         0xc59f22a7, 0x9bb11140, 0x8d299a8e, 0x6c063de4, 0x92ff097f, 0xf94dc352]
for n, want in enumerate(KUNIT):
    assert hsiphash(bytes(range(n)), KUNIT_KEY) == want, n


def fold(addr: str) -> int:
    a = ipaddress.ip_address(addr)
    if a.version == 4:
        return int(a)
    raw = a.packed
    words = [int.from_bytes(raw[i:i + 4], "big") for i in range(0, 16, 4)]
    return words[0] ^ words[1] ^ words[2] ^ words[3]


def hashkey(addr, port, key, offset):
    v = (offset + port + fold(addr)) & 0xffffffff
    return hsiphash(v.to_bytes(4, "little"), key)


def fls(x):
    return x.bit_length()


class Dest:
    def __init__(self, label, addr, port, weight, last_weight=None):
        self.label, self.addr, self.port = label, addr, port
        self.weight = weight
        self.last_weight = weight if last_weight is None else last_weight
        self.overloaded = False


def gcd_weight(dests):
    g = 0
    for d in dests:
        if d.last_weight > 0:
            g = math.gcd(d.last_weight, g) if g > 0 else d.last_weight
    return g


def shift_weight(dests, gcd):
    if gcd < 1:
        return 0
    weight = max([0] + [d.last_weight for d in dests])
    shift = fls(weight // gcd) - TAB_BITS
    return shift if shift >= 0 else 0


def reassign(dests):
    """ip_vs_mh_permutate then ip_vs_mh_populate; the table's labels."""
    gcd = gcd_weight(dests)
    rshift = shift_weight(dests, gcd)
    lookup = [None] * TAB_SIZE
    if gcd < 1:
        return lookup
    setup = []
    for d in dests:
        offset = hashkey(d.addr, d.port, HASH1, 0) % TAB_SIZE
        skip = hashkey(d.addr, d.port, HASH2, 0) % (TAB_SIZE - 1) + 1
        lw = d.last_weight
        turns = (lw // gcd) >> rshift
        if turns == 0:
            turns = 1 if lw != 0 else 0
        setup.append({"perm": offset, "skip": skip, "turns": turns})
    used = [False] * TAB_SIZE
    n = 0
    dt_count = 0
    while n < TAB_SIZE:
        p = 0
        while p < len(dests):
            ds = setup[p]
            if ds["turns"] < 1:
                p += 1
                continue
            c = ds["perm"]
            while used[c]:
                ds["perm"] += ds["skip"]
                if ds["perm"] >= TAB_SIZE:
                    ds["perm"] -= TAB_SIZE
                c = ds["perm"]
            used[c] = True
            lookup[c] = dests[p]
            n += 1
            if n == TAB_SIZE:
                return lookup
            dt_count += 1
            if dt_count >= ds["turns"]:
                dt_count = 0
                p += 1
    return lookup


def unavailable(d):
    return d.weight <= 0 or d.overloaded


def get(lookup, addr, port):
    d = lookup[hashkey(addr, port, HASH1, 0) % TAB_SIZE]
    return None if d is None or unavailable(d) else d


def get_fallback(lookup, addr, port):
    ihash = hashkey(addr, port, HASH1, 0) % TAB_SIZE
    d = lookup[ihash]
    if d is None:
        return None
    if not unavailable(d):
        return d
    for offset in range(TAB_SIZE):
        roffset = (offset + ihash) % TAB_SIZE
        d = lookup[hashkey(addr, port, HASH1, roffset) % TAB_SIZE]
        if d is None:
            break
        if not unavailable(d):
            return d
    return None


CLIENTS = ["10.0.0.1", "10.0.0.2", "192.168.1.10", "203.0.113.7", "198.51.100.77",
           "2001:db8::1", "2001:db8::a00:1", "172.16.5.4"] + \
          ["10.1.%d.%d" % (i // 7, (i * 37) % 251) for i in range(40)]


def scenario(name, dests, ports=(0, 40000)):
    lookup = reassign(dests)
    print("scenario", name)
    for d in dests:
        flag = " overloaded" if d.overloaded else ""
        print("server %s %s %d %d %d%s" % (d.label, d.addr, d.port, d.weight, d.last_weight, flag))
    print("table", "".join("-" if d is None else d.label for d in lookup))
    for client in CLIENTS:
        for port in ports:
            plain = get(lookup, client, port)
            fb = get_fallback(lookup, client, port)
            print("pick %s %d %s %s" % (client, port, plain.label if plain else "-",
                                        fb.label if fb else "-"))
    print("end")


def main():
    print("# Generated by model/ip_vs_mh.py; do not edit.")
    # Added A, then B, then C: the list is C, B, A.
    scenario("three-equal", [Dest("C", "192.168.10.3", 80, 1), Dest("B", "192.168.10.2", 80, 1),
                             Dest("A", "192.168.10.1", 80, 1)])
    scenario("weighted", [Dest("C", "192.168.10.3", 80, 1), Dest("B", "192.168.10.2", 80, 2),
                          Dest("A", "192.168.10.1", 80, 3)])
    # fls(1000) = 10: shifted by 4; 7 >> 4 = 0 still takes one turn.
    scenario("shifted", [Dest("A", "10.9.0.1", 8080, 1000), Dest("B", "10.9.0.2", 8080, 300),
                         Dest("C", "10.9.0.3", 8081, 7), Dest("D", "10.9.0.4", 8080, 40)])
    # B edited to 0 keeps its last weight (and its slots); D added at 0 takes none.
    scenario("quiesced", [Dest("D", "192.168.10.4", 80, 0, 0), Dest("C", "192.168.10.3", 80, 1),
                          Dest("B", "192.168.10.2", 80, 0, 1), Dest("A", "192.168.10.1", 80, 1)])
    over = [Dest("B", "192.168.10.2", 80, 1), Dest("A", "192.168.10.1", 80, 1)]
    over[0].overloaded = True
    scenario("overloaded", over)
    scenario("ipv6", [Dest("B", "2001:db8:10::2", 443, 1), Dest("A", "2001:db8:10::1", 443, 2)])
    scenario("none-available", [Dest("A", "192.168.10.1", 80, 0, 5)])
    scenario("empty", [Dest("A", "192.168.10.1", 80, 0, 0)])


if __name__ == "__main__":
    main()
