//! The daemon as the capture benchmarks run it: the bench build of
//! `tidewater run --role capture` as its own process, stopped with SIGTERM.

#![allow(dead_code, reason = "each benchmark uses part of it")]

use std::path::Path;
use std::process::{Child, Command, Stdio};

pub fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

pub fn brokers() -> String {
    env_or("TIDEWATER_KAFKA_BROKERS", "127.0.0.1:9092")
}

/// Starts capture of the pipeline in `config`, logging to `log`, with the
/// admin endpoint on `admin` (`127.0.0.1:0`: any free port).
pub fn capture(config: &Path, log: &Path, admin: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidewater"))
        .args(["run", "--role", "capture", "--admin-addr", admin])
        .arg(config)
        .env("TIDEWATER_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGTERM, and the exit.
pub fn stop(child: &mut Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}
