//! lvsd's own threads.

/// Raise the calling thread's priority (nice -10; threads it starts
/// inherit it): lvsd answers the datapath's low-water signals, and its
/// liveness stamp must never lapse while the machine is busy. Refused
/// without CAP_SYS_NICE.
pub fn favour_this_thread() -> std::io::Result<()> {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: plain syscall on this thread's id.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, -10) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}
