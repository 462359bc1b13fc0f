//! How the daemon's allocator (mimalloc) is configured.
//!
//! A sink commit allocates and frees gigabytes of short-lived buffers
//! (decoded base files, encoded Parquet). By default mimalloc returns freed
//! memory to the operating system after a second, so the next file job
//! takes fresh pages again: each one faulted in and zeroed by the kernel,
//! and on a virtual machine whose host backs guest memory lazily, also
//! faulted on the host. Measured on this project's VM (`cargo bench --bench
//! lake`, apply alone): 8.7–11.0 s with the default, 7.2 s with freed
//! memory kept for reuse.
//!
//! So the daemon keeps what it freed: its resident memory stays at its peak,
//! which the sink's buffer limits bound. mimalloc reads its options from the
//! environment before `main` runs, so the binary starts itself again once
//! with [`ALLOCATOR_ENV`] set (the same process: `exec` keeps the pid),
//! unless the variable is already set: `MIMALLOC_PURGE_DELAY=<ms>` chooses
//! another delay.
//!
//! Kept memory is fast only from its second use: the first touch of a page
//! is a fault (on this VM, one the host serves too: 2.3–2.5 s per GB of
//! memory the guest had freed, against 10 GB/s for memory touched before).
//! A started sink would pay that inside its first commit: the lake
//! benchmark's apply took 3.90–4.14 s without the memory touched first,
//! 3.59–3.73 s with it (by hand, in turn, a first version of
//! [`reserve`]; docs/MEASUREMENTS.md).
//! So a sink touches its buffer budget once when it starts, before it
//! reads from Kafka ([`reserve`]), as a JVM does with
//! `-XX:+AlwaysPreTouch`: the memory is then held, backed, for the changes
//! and file jobs of its first commit. With freed memory returned to the
//! system (`MIMALLOC_PURGE_DELAY` set otherwise) that would be undone, and
//! nothing is touched.

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The allocator option the daemon runs with: never return freed memory.
pub const ALLOCATOR_ENV: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "-1");

/// Replaces the process with itself, [`ALLOCATOR_ENV`] set, unless it is
/// set already. Returns only when that is not needed or not possible (the
/// process then runs with mimalloc's defaults, which are correct, only
/// slower); the reason is returned for the log.
pub fn reexec_with_allocator_options() -> Option<String> {
    use std::os::unix::process::CommandExt;
    let (name, value) = ALLOCATOR_ENV;
    if std::env::var_os(name).is_some() {
        return None;
    }
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return Some(format!("cannot find the running executable: {e}")),
    };
    let mut args = std::env::args_os();
    let mut command = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        command.arg0(arg0);
    }
    let error = command.args(args).env(name, value).exec();
    Some(format!("cannot start again with {name}={value}: {error}"))
}

/// What [`reserve`] touched.
#[derive(Debug, Clone, Copy)]
pub struct Reserved {
    pub bytes: usize,
    pub took: Duration,
}

/// Touches `bytes` of memory and frees it again, on up to four threads, so
/// that the allocator holds it, already faulted in, for what the process
/// allocates next (on any thread: emptied segments go back to mimalloc's
/// arena, which keeps them committed). At most half the memory the system
/// (and the process's cgroup, where it has a limit) has available is
/// touched: a budget set larger than the machine must not kill the daemon
/// at start. `None` when the process returns freed memory (see the module
/// doc) or nothing could be touched.
pub fn reserve(bytes: usize) -> Option<Reserved> {
    let (name, value) = ALLOCATOR_ENV;
    if std::env::var(name).ok().as_deref() != Some(value) {
        return None;
    }
    const CHUNK: usize = 1 << 20;
    let bytes = available_bytes().map_or(bytes, |free| bytes.min(free / 2));
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let total = bytes.div_ceil(CHUNK);
    // Thread n's share of the chunks: they add up to `total`.
    let share = |n: usize| total / threads + usize::from(n < total % threads);
    // Every thread holds its chunks until all are touched: a thread that
    // freed its own first would hand them to the others, which would then
    // touch the same memory again (seen as a resident set of 350-480 MB
    // after reserving 512 MiB). How many threads wait is known once they
    // are started: one the system refused is not waited for.
    let gate = (Mutex::new((0usize, None::<usize>)), Condvar::new());
    let start = Instant::now();
    let (gate, share) = (&gate, &share);
    let chunks = std::thread::scope(|scope| {
        let (mut spawned, mut chunks) = (0, 0);
        for n in 0..threads {
            let thread = std::thread::Builder::new()
                .name(format!("tidewater-reserve-{n}"))
                .spawn_scoped(scope, move || {
                    let held = touch(share(n), CHUNK);
                    let (lock, all) = gate;
                    let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
                    state.0 += 1;
                    all.notify_all();
                    while state.1.is_none_or(|expected| state.0 < expected) {
                        state = all.wait(state).unwrap_or_else(PoisonError::into_inner);
                    }
                    drop(state);
                    std::hint::black_box(&held);
                });
            if thread.is_ok() {
                spawned += 1;
                chunks += share(n);
            }
        }
        let (lock, all) = gate;
        lock.lock().unwrap_or_else(PoisonError::into_inner).1 = Some(spawned);
        all.notify_all();
        chunks
    });
    (chunks > 0).then(|| Reserved {
        bytes: chunks * CHUNK,
        took: start.elapsed(),
    })
}

/// `chunks` allocations of `size` bytes, a byte written in every page of
/// each (not zero: an allocation written with zeros may be taken as
/// already zeroed and never touched).
fn touch(chunks: usize, size: usize) -> Vec<Vec<u8>> {
    const PAGE: usize = 4096;
    (0..chunks)
        .map(|_| {
            let mut chunk = Vec::<u8>::with_capacity(size);
            for byte in chunk.spare_capacity_mut().iter_mut().step_by(PAGE) {
                byte.write(1);
            }
            chunk
        })
        .collect()
}

/// Memory the process could still take, in bytes: the system's
/// `MemAvailable`, and no more than its cgroup's limit less its usage
/// where it has one (cgroup v2). `None` where `/proc/meminfo` is not there.
fn available_bytes() -> Option<usize> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: usize = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let system = kib.saturating_mul(1024);
    let cgroup = || -> Option<usize> {
        let membership = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let path = membership.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
        let read = |file: &str| std::fs::read_to_string(format!("{dir}/{file}")).ok();
        // "max" when there is no limit: no number, no cap.
        let max: usize = read("memory.max")?.trim().parse().ok()?;
        let current: usize = read("memory.current")?.trim().parse().ok()?;
        Some(max.saturating_sub(current))
    };
    Some(cgroup().map_or(system, |free| free.min(system)))
}
