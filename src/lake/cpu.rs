//! The threads that decode, merge and encode base files: one per core (up
//! to four), started once and shared by every table of the process.
//!
//! Why not tokio's blocking pool: that pool also runs the local file
//! system's reads and writes, and starts a new thread whenever none is idle,
//! so over a commit the CPU work wanders over many threads. The allocator
//! keeps freed memory per thread, so every thread a file job lands on grows
//! its own working set of decoded pages and encoded files. Measured on this
//! project's VM (`cargo bench --bench lake`, apply alone, 90 file jobs): the
//! resident set grew by 330 MB after the first two jobs on the blocking
//! pool, and by 65 MB on two fixed threads; fresh pages are the costly kind
//! on a VM (faulted in and zeroed: about 2.5 CPU seconds per GB here).
//!
//! A fixed pool also bounds the CPU work of all tables together: a sink
//! committing many tables at once queues their file jobs instead of running
//! them all at once.
//!
//! Memory: a file job holds its stored file, its decoded rows and its
//! encoded file, so the pool has at most [`MAX_THREADS`] threads (and a
//! table at most one job more under way) whatever the core count: on a
//! large machine, one job per core would multiply a commit's memory.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};

type Task = Box<dyn FnOnce() + Send + 'static>;

/// The pool's queue (started on first use). It is unbounded: each table
/// has at most one file job more than the pool has threads under way (see
/// `Table::run_jobs`).
struct Pool {
    queue: Sender<Task>,
}

/// The most threads the pool starts.
pub const MAX_THREADS: usize = 4;

/// The pool's size: one thread per core, at most [`MAX_THREADS`].
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(MAX_THREADS)
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = threads();
        let (queue, tasks) = channel::<Task>();
        let tasks = Arc::new(Mutex::new(tasks));
        for n in 0..threads {
            let tasks = tasks.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("tidewater-lake-cpu-{n}"))
                .spawn(move || work(&tasks));
            if let Err(e) = spawned {
                // With no thread at all every `run` reports the failure;
                // with fewer threads the pool is only slower.
                tracing::error!(error = %e, "cannot start a lake worker thread");
            }
        }
        Pool { queue }
    })
}

fn work(tasks: &Mutex<Receiver<Task>>) {
    loop {
        // The lock is held only to take a task; a poisoned lock (a panic
        // while taking one cannot happen) still hands out tasks.
        let task = match tasks.lock() {
            Ok(queue) => queue.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match task {
            Ok(task) => task(),
            Err(_) => return,
        }
    }
}

/// Why a task gave no result.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("a lake worker thread panicked: {0}")]
    Panicked(String),
    #[error("no lake worker thread is running")]
    Stopped,
}

/// Runs `f` on the pool and waits for its result without blocking the
/// async runtime. A panic in `f` is returned as an error (the thread goes
/// on with the next task).
pub async fn run<T, F>(f: F) -> Result<T, PoolError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task: Task = Box::new(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".to_string());
            PoolError::Panicked(text)
        });
        // The caller may have gone (its commit was cancelled): nothing to do.
        let _ = tx.send(result);
    });
    pool().queue.send(task).map_err(|_| PoolError::Stopped)?;
    rx.await.map_err(|_| PoolError::Stopped)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_tasks_on_the_pool_threads_and_survives_a_panic() {
        let name = run(|| std::thread::current().name().map(str::to_string))
            .await
            .unwrap();
        assert!(
            name.as_deref()
                .is_some_and(|n| n.starts_with("tidewater-lake-cpu-")),
            "{name:?}"
        );
        let err = run(|| -> u32 { panic!("boom in a task") })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("boom in a task"), "{err}");
        // The threads go on after a panic: many tasks at once all finish.
        let results = futures::future::join_all((0..200u64).map(|i| run(move || i * 2))).await;
        let sum: u64 = results.into_iter().map(Result::unwrap).sum();
        assert_eq!(sum, (0..200u64).map(|i| i * 2).sum::<u64>());
    }
}
