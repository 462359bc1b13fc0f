//! Failpoints for crash tests: named places where a test can make the process
//! die as `kill -9` would, at an exact step (between data files and the
//! commit, after the claim, ...).
//!
//! `TIDEWATER_FAILPOINTS=lake.after_data_files=abort` aborts at the first hit;
//! `name=abort@3` at the third. Without the variable every failpoint is a
//! relaxed atomic load and a branch.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Point {
    name: String,
    at: u64,
    hits: AtomicU64,
}

fn points() -> &'static [Point] {
    static POINTS: OnceLock<Vec<Point>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("TIDEWATER_FAILPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|spec| {
                let (name, action) = spec.trim().split_once('=')?;
                let at = match action.strip_prefix("abort") {
                    Some("") => 1,
                    Some(rest) => rest.strip_prefix('@')?.parse().ok()?,
                    None => return None,
                };
                Some(Point {
                    name: name.to_string(),
                    at,
                    hits: AtomicU64::new(0),
                })
            })
            .collect()
    })
}

/// Passes the failpoint `name`.
pub fn hit(name: &str) {
    for p in points() {
        if p.name == name && p.hits.fetch_add(1, Ordering::SeqCst) + 1 == p.at {
            eprintln!("failpoint {name}: aborting");
            std::process::abort();
        }
    }
}
