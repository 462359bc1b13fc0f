//! Figures of a process from /proc: memory, CPU time and bytes read, of
//! this process (`None`) or of a child (its pid).

#![allow(dead_code, reason = "each benchmark uses part of it")]

fn path(pid: Option<u32>, file: &str) -> String {
    match pid {
        Some(pid) => format!("/proc/{pid}/{file}"),
        None => format!("/proc/self/{file}"),
    }
}

/// A `/proc/<pid>/status` field in kB, as MB.
fn status_mb(pid: Option<u32>, field: &str) -> f64 {
    std::fs::read_to_string(path(pid, "status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident memory so far (VmHWM), MB.
pub fn peak_rss_mb(pid: Option<u32>) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// Resident memory now (VmRSS), MB.
pub fn rss_mb(pid: Option<u32>) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// User plus system CPU seconds so far.
pub fn cpu_seconds(pid: Option<u32>) -> f64 {
    let stat = std::fs::read_to_string(path(pid, "stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(") ")
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// Bytes read so far by `read`-like system calls (`rchar` in
/// `/proc/<pid>/io`: page-cache hits count too, unlike `read_bytes`).
pub fn read_chars(pid: Option<u32>) -> u64 {
    std::fs::read_to_string(path(pid, "io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
