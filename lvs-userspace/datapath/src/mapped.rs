//! An array map of `u32` created with `BPF_F_MMAPABLE`, mapped into lvsd's
//! memory: writing a 512-slot ring is 512 stores, not a syscall per slot
//! (or a batch the kernel copies element by element). A 10,000-service
//! apply writes 10,000 rings.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::maps::MapData;

use crate::DatapathError;

/// The kernel keeps array values 8-byte aligned (`round_up(value_size, 8)`).
const SLOT_BYTES: usize = 8;

pub(crate) struct MappedArray {
    /// Kept open: the programs are loaded against this descriptor.
    _map: MapData,
    base: NonNull<u8>,
    bytes: usize,
    entries: u32,
    name: &'static str,
}

// SAFETY: the mapping is plain shared memory owned by this value; every
// access goes through atomics, so moving it to another thread is sound.
unsafe impl Send for MappedArray {}

impl MappedArray {
    /// Map `map` (an mmapable array of `entries` u32 values).
    pub(crate) fn new(
        map: MapData,
        entries: u32,
        name: &'static str,
    ) -> Result<Self, DatapathError> {
        let page = page_size();
        let bytes = (entries as usize * SLOT_BYTES).div_ceil(page) * page;
        let fd = map.fd().as_fd().as_raw_fd();
        // SAFETY: a fresh shared mapping of the map's memory; the kernel
        // checks the length against the map and the map's mmapable flag.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(DatapathError::Record {
                call: "mmap",
                path: name.into(),
                source: std::io::Error::last_os_error(),
            });
        }
        let base = NonNull::new(base.cast::<u8>()).expect("mmap returned a mapping");
        Ok(Self {
            _map: map,
            base,
            bytes,
            entries,
            name,
        })
    }

    /// Store `values` at `first..`; the datapath sees them once the write
    /// that publishes them (a `SERVICES` update) is made.
    pub(crate) fn write(&mut self, first: u32, values: &[u32]) -> Result<(), DatapathError> {
        let end = first as usize + values.len();
        if end > self.entries as usize {
            return Err(DatapathError::Record {
                call: "write past the end of the mapped array",
                path: self.name.into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        for (i, value) in values.iter().enumerate() {
            let offset = (first as usize + i) * SLOT_BYTES;
            // SAFETY: `offset` is within the mapping (checked above), 8-byte
            // aligned, and the kernel shares the word only as a u32 that BPF
            // programs read; an atomic store is the way to share it.
            let slot = unsafe { &*self.base.as_ptr().add(offset).cast::<AtomicU32>() };
            slot.store(*value, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl MappedArray {
    /// Load `first..first + count`.
    pub(crate) fn read(&self, first: u32, count: u32) -> Result<Vec<u32>, DatapathError> {
        if first as usize + count as usize > self.entries as usize {
            return Err(DatapathError::Record {
                call: "read past the end of the mapped array",
                path: self.name.into(),
                source: std::io::Error::from(std::io::ErrorKind::InvalidInput),
            });
        }
        Ok((first..first + count)
            .map(|i| {
                // SAFETY: in bounds (checked above) and 8-byte aligned, as
                // in `write`; BPF programs update the word atomically.
                let slot = unsafe {
                    &*self
                        .base
                        .as_ptr()
                        .add(i as usize * SLOT_BYTES)
                        .cast::<AtomicU32>()
                };
                slot.load(Ordering::Relaxed)
            })
            .collect())
    }
}

impl Drop for MappedArray {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this length and is not
        // used after this.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}
