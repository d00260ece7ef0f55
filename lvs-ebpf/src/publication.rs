//! The scheduler's published decision for a new flow, in the service's
//! form: the next ring slot, a hash bucket, an mh slot, or a locality
//! entry. No algorithm runs here; the controller wrote every answer
//! beforehand, except mh-fallback's probe past an unusable server's slot,
//! which depends on the client's hash and not on the slot alone.

use core::intrinsics::{atomic_xadd, AtomicOrdering};
use lvs_common::{
    addr::Addr,
    hash::{dh_bucket, mh_key, mh_slot, sh_bucket, MH_TABLE_SIZE},
    service_flags, EventKind, FlowKey, Form, LocalityEntry, LocalityKey, Service, Verdict,
    MH_PROBE, NO_REAL,
};

use crate::{
    events,
    family::Family,
    maps::{BUCKETS, CURSORS, MAGLEV, RINGS},
};

/// The real server index the service's publication names for `flow`.
#[inline(always)]
pub fn choose<P: Family>(
    service: &Service<P::Addr>,
    flow: &FlowKey<P::Addr>,
    now: u64,
) -> Result<u32, Verdict> {
    let real_index = if service.form == Form::Buckets as u8 {
        bucket(service, flow)?
    } else if service.form == Form::Maglev as u8 {
        maglev(service, flow)?
    } else if service.form == Form::Locality as u8 {
        locality::<P>(service, flow, now)?
    } else {
        ring::<P>(service)?
    };
    if real_index == NO_REAL {
        return Err(Verdict::DropNoDestination);
    }
    Ok(real_index)
}

/// Claim the next ring slot with one atomic add.
#[inline(always)]
fn ring<P: Family>(service: &Service<P::Addr>) -> Result<u32, Verdict> {
    if service.ring_len == 0 {
        return Err(Verdict::DropNoDestination);
    }
    let cursor = CURSORS
        .get_ptr_mut(service.index)
        .ok_or(Verdict::DropNoDestination)?;
    // SeqCst, not Relaxed: for a relaxed add LLVM 22's BPF backend emits a
    // plain locked add and the fetched ticket is lost (every flow got slot 1).
    // SAFETY: a 4-byte aligned u32 slot in an array map, live for the run.
    let ticket = unsafe { atomic_xadd::<u32, u32, { AtomicOrdering::SeqCst }>(cursor, 1) };
    let offset = ticket.wrapping_sub(service.cursor_origin) % service.ring_len;
    // Exactly one claim per pass crosses the middle of a forecast ring.
    if service.has(service_flags::SIGNAL_LOW_WATER) && offset == service.ring_len / 2 {
        events::send::<P>(
            EventKind::LowWater,
            service.index,
            P::Addr::UNSPECIFIED,
            offset,
        );
    }
    RINGS
        .get(service.ring_base + offset)
        .copied()
        .ok_or(Verdict::DropNoDestination)
}

/// sh (source address, with the port for sh-port) or dh (destination).
#[inline(always)]
fn bucket<A: Addr>(service: &Service<A>, flow: &FlowKey<A>) -> Result<u32, Verdict> {
    let b = if service.has(service_flags::HASH_DESTINATION) {
        dh_bucket(flow.dst().folded())
    } else if service.has(service_flags::HASH_PORT) {
        sh_bucket(flow.src().folded(), flow.sport())
    } else {
        sh_bucket(flow.src().folded(), 0)
    };
    BUCKETS
        .get(service.bucket_base + b)
        .copied()
        .ok_or(Verdict::DropNoDestination)
}

/// mh: the slot of the source's hash (with its port for mh-port); with
/// mh-fallback, a slot of an unusable server sends the probe on.
#[inline(always)]
fn maglev<A: Addr>(service: &Service<A>, flow: &FlowKey<A>) -> Result<u32, Verdict> {
    let port = if service.has(service_flags::HASH_PORT) {
        flow.sport()
    } else {
        0
    };
    let key = mh_key(flow.src().folded(), port);
    let slot = mh_slot(key, 0);
    let real = MAGLEV
        .get(service.bucket_base + slot)
        .copied()
        .ok_or(Verdict::DropNoDestination)?;
    if real != MH_PROBE {
        return Ok(real);
    }
    Ok(probe(service.bucket_base, key, slot))
}

/// What `ip_vs_mh_get_fallback` finds: rehash with offsets from the
/// slot on until a usable server's slot. The controller publishes probe
/// marks only while some slot is usable, so the walk is as long as the
/// kernel's (about one slot in the share of usable ones).
#[inline(never)]
fn probe(base: u32, key: u32, slot: u32) -> u32 {
    let mut walk = Probe {
        base,
        key,
        slot,
        found: NO_REAL,
    };
    // SAFETY: the callback gets `walk` back as its context, on this stack.
    unsafe {
        aya_ebpf::helpers::bpf_loop(
            MH_TABLE_SIZE,
            probe_step as *mut core::ffi::c_void,
            &mut walk as *mut Probe as *mut core::ffi::c_void,
            0,
        );
    }
    walk.found
}

#[repr(C)]
struct Probe {
    base: u32,
    key: u32,
    slot: u32,
    found: u32,
}

/// One probe: 1 stops the loop.
extern "C" fn probe_step(offset: u64, walk: *mut core::ffi::c_void) -> i64 {
    // SAFETY: `probe` passes its own `Probe`.
    let walk = unsafe { &mut *(walk as *mut Probe) };
    let at = mh_slot(walk.key, (offset as u32 + walk.slot) % MH_TABLE_SIZE);
    match MAGLEV.get(walk.base + at).copied() {
        Some(MH_PROBE) => 0,
        Some(real) => {
            walk.found = real;
            1
        }
        None => 1,
    }
}

/// lblc/lblcr: the controller's choice for this destination; a new one
/// takes the ring's (wlc) pick, as IPVS does, and is reported.
#[inline(always)]
fn locality<P: Family>(
    service: &Service<P::Addr>,
    flow: &FlowKey<P::Addr>,
    now: u64,
) -> Result<u32, Verdict> {
    let key = LocalityKey::new(service.index, flow.dst());
    let locality = P::locality();
    if let Some(entry) = locality.get_ptr_mut(key) {
        // SAFETY: the pointer comes from a successful map lookup; a racing
        // writer can only store another whole u64 timestamp.
        let entry = unsafe { &mut *entry };
        entry.last_use_ns = now;
        return Ok(entry.real_index);
    }
    let real_index = ring::<P>(service)?;
    // NOEXIST: a concurrent first packet, or the controller, wrote first.
    const BPF_NOEXIST: u64 = 1;
    if locality
        .insert(key, LocalityEntry::new(real_index, now), BPF_NOEXIST)
        .is_ok()
    {
        events::send::<P>(
            EventKind::NewDestination,
            service.index,
            flow.dst(),
            real_index,
        );
    }
    Ok(real_index)
}
