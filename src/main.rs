//! The `tidewater` binary: parse the command line, set up logging, run the
//! command, map the outcome to an exit code (see `cli`).

use std::process::ExitCode;

use clap::Parser;
use tidewater::cli::{self, Cli, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc: lower fragmentation than glibc's per-thread arenas for the
/// sink's large, short-lived batches, and faster small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before anything else: the allocator's options (see `alloc`).
    let reexec = tidewater::alloc::reexec_with_allocator_options();
    let cli = Cli::parse();
    let filter = EnvFilter::try_new(&cli.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(reason) = reexec {
        tracing::warn!(%reason, "running with the allocator's default options");
    }
    cli::run(cli)
}
