//! Per-CPU counters: no atomics, the controller sums the CPUs.

use aya_ebpf::helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns};
use lvs_common::{Counters, DecapVerdict, IcmpCase, Verdict};

use crate::maps::{
    DECAP_STATS, HALF_OPEN_EVICTED, ICMP_ERRORS, REAL_STATS, SERVICE_STATS, VERDICTS,
};

/// The clock entries are stamped with: the coarse one (CLOCK_MONOTONIC at
/// the last tick), a fraction of the precise read's cost; IPVS's timeouts
/// are in seconds.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The precise clock, for the rare notices whose latency lvsd measures.
#[inline(always)]
pub fn precise_now() -> u64 {
    // SAFETY: a plain helper call with no arguments.
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
pub fn count_verdict(verdict: Verdict) {
    if let Some(slot) = VERDICTS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *slot += 1 };
    }
}

/// A half-open entry gave its place to a newer SYN (`conntrack`).
#[inline(always)]
pub fn count_half_open_evicted() {
    if let Some(slot) = HALF_OPEN_EVICTED.get_ptr_mut(0) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count_icmp(case: IcmpCase) {
    if let Some(slot) = ICMP_ERRORS.get_ptr_mut(case as u32) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count_decap(verdict: DecapVerdict) {
    if let Some(slot) = DECAP_STATS.get_ptr_mut(verdict as u32) {
        // SAFETY: per-CPU slot from a successful lookup.
        unsafe { *slot += 1 };
    }
}

/// Which way a packet travels, for the in/out columns.
#[derive(Clone, Copy)]
pub enum Way {
    In,
    Out,
}

#[inline(always)]
pub fn count_packet(service_index: u32, real_index: u32, way: Way, bytes: u64, new_conn: bool) {
    if let Some(c) = SERVICE_STATS.get_ptr_mut(service_index) {
        // SAFETY: per-CPU slot from a successful lookup.
        bump(unsafe { &mut *c }, way, bytes, new_conn);
    }
    if let Some(c) = REAL_STATS.get_ptr_mut(real_index) {
        // SAFETY: per-CPU slot from a successful lookup.
        bump(unsafe { &mut *c }, way, bytes, new_conn);
    }
}

#[inline(always)]
fn bump(c: &mut Counters, way: Way, bytes: u64, new_conn: bool) {
    if new_conn {
        c.conns += 1;
    }
    match way {
        Way::In => {
            c.in_packets += 1;
            c.in_bytes += bytes;
        }
        Way::Out => {
            c.out_packets += 1;
            c.out_bytes += bytes;
        }
    }
}
