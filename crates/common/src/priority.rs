//! Background work at a lower CPU priority, so that a server's searches
//! preempt its indexing and graph building on a machine with few cores.

/// The niceness background threads run at (0 normal, 19 lowest).
pub const BACKGROUND_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority to `niceness` (Linux
/// keeps a niceness per thread, and threads started from this one inherit
/// it). Best effort: where that is not possible it does nothing, and the
/// work simply runs at normal priority.
pub fn lower_current_thread(niceness: i32) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; with
        // PRIO_PROCESS and a thread id, setpriority changes only this
        // thread's niceness.
        let rc = unsafe {
            let tid = libc::gettid();
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, niceness)
        };
        if rc != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower a background thread's priority"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = niceness;
}

/// A rayon pool of `threads` threads (0: one per core) that run at
/// [`BACKGROUND_NICENESS`]: parallel work installed in it (graph builds,
/// embedding batches) yields the CPU to normal-priority threads.
pub fn background_pool(name: &str, threads: usize) -> Result<rayon::ThreadPool, std::io::Error> {
    let name = name.to_string();
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("{name}-{i}"))
        .start_handler(|_| lower_current_thread(BACKGROUND_NICENESS))
        .build()
        .map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn a_background_pool_runs_at_the_lower_priority() {
        let pool = background_pool("t", 1).unwrap();
        // SAFETY: getpriority of the calling thread (a pool thread) only.
        let nice = pool.install(|| unsafe {
            *libc::__errno_location() = 0;
            libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t)
        });
        // Raising niceness is always allowed; start from what we run at.
        // SAFETY: as above, for this thread.
        let ours = unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        assert_eq!(nice, BACKGROUND_NICENESS.max(ours));
    }
}
