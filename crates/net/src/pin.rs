//! Pinning a shard's thread to one CPU core.

use std::io;

/// Pin the calling thread to CPU `core` (`sched_setaffinity`). Fails with `EINVAL` when that
/// core does not exist or is not allowed to this process (cpuset); the caller decides whether
/// to log and go on unpinned.
pub fn pin_current_thread(core: usize) -> io::Result<()> {
    if core >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is a plain bit array, for which all zeroes is a valid (empty) value.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `core` < CPU_SETSIZE, so the bit CPU_SET touches lies inside `set`.
    unsafe { libc::CPU_SET(core, &mut set) };
    // SAFETY: `set` is a valid, initialised cpu_set_t and the size passed is its size; pid 0
    // means the calling thread.
    let result = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed_cores() -> Vec<usize> {
        // SAFETY: all zeroes is a valid cpu_set_t.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid cpu_set_t of the size passed; pid 0 is this thread.
        let result = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
        assert_eq!(result, 0, "{}", io::Error::last_os_error());
        (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `core` < CPU_SETSIZE, so the bit read lies inside `set`.
            .filter(|&core| unsafe { libc::CPU_ISSET(core, &set) })
            .collect()
    }

    #[test]
    fn pins_to_an_allowed_core() {
        // Runs on the test's own thread, which ends with the test.
        std::thread::spawn(|| {
            let cores = allowed_cores();
            let core = *cores.last().expect("at least one allowed core");
            pin_current_thread(core).unwrap();
            assert_eq!(allowed_cores(), [core]);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn missing_core_is_an_error() {
        let error = pin_current_thread(usize::MAX).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        // A core number inside the set size but (on any machine this runs on) not online.
        std::thread::spawn(|| {
            let error = pin_current_thread(libc::CPU_SETSIZE as usize - 1).unwrap_err();
            assert_eq!(error.raw_os_error(), Some(libc::EINVAL));
        })
        .join()
        .unwrap();
    }
}
