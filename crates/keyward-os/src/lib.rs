//! Operating-system calls that the standard library does not offer, each
//! behind a safe function. This is the only crate of the workspace allowed
//! `unsafe` code, and only inside the functions that make a foreign call;
//! each says why the call is sound.

#![deny(unsafe_code)]

use std::io;

/// Puts the calling thread under `SCHED_BATCH` (Linux), keeping its nice
/// value and so its share of the CPU.
///
/// A batch thread that wakes does not preempt the thread running on its
/// core: it waits for that thread's slice to end or for it to sleep. For a
/// relay that wakes whenever a peer on the same machine writes to it, that
/// turns one switch per message into one switch per batch of messages.
///
/// Elsewhere it does nothing and answers `Unsupported`.
pub fn set_batch_scheduling() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid, initialised `sched_param` that lives
        // across the call, which only reads it; pid 0 names the calling
        // thread, and SCHED_BATCH takes priority 0. The call has no other
        // effect on memory.
        #[allow(unsafe_code)]
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "batch scheduling needs Linux",
        ))
    }
}

/// Whether an error (of `accept`, say) means the process or the system has
/// run out of file descriptors or of the memory sockets need (`EMFILE`,
/// `ENFILE`, `ENOBUFS`, `ENOMEM`): closing something frees the way, waiting
/// alone does not.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        matches!(
            error.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = error;
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Field `n` (from 1, as in proc(5)) of `/proc/self/task/TID/stat`.
    fn stat_field(tid: u32, n: usize) -> i64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // The command name, field 2, is in parentheses and may hold spaces.
        let rest = stat.rsplit_once(')').unwrap().1;
        rest.split_whitespace().nth(n - 3).unwrap().parse().unwrap()
    }

    const POLICY: usize = 41;
    const NICE: usize = 19;

    fn this_thread() -> u32 {
        std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_thread_moves_to_batch_and_its_siblings_stay_normal() {
        let main = this_thread();
        let main_policy = stat_field(main, POLICY);
        let (tid, policy, nice_before, nice_after) = std::thread::spawn(|| {
            let tid = this_thread();
            let before = stat_field(tid, NICE);
            set_batch_scheduling().unwrap();
            (tid, stat_field(tid, POLICY), before, stat_field(tid, NICE))
        })
        .join()
        .unwrap();
        assert_ne!(tid, main);
        assert_eq!(policy, 3, "SCHED_BATCH");
        assert_eq!(nice_before, nice_after, "the nice value is kept");
        assert_eq!(
            stat_field(main, POLICY),
            main_policy,
            "other threads untouched"
        );
    }
}
