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
