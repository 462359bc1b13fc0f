//! Wiring of pipelines: the sink worker that keeps lake tables in step with
//! Kafka ([`sink`]), and the supervision of a pipeline's parts by the
//! daemon ([`supervise`]).

pub mod sink;

use std::future::Future;
use std::time::{Duration, Instant};

use crate::admin::{PartState, Registry};

/// How a run of a part ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Worth another try (a service was unreachable); otherwise an operator
    /// must act (G6) and the part stops.
    pub retryable: bool,
}

/// Backoff between tries of a failing part: `first` doubling to `max`,
/// back to `first` after a run that lasted a minute.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// The daemon's: 0.5 s doubling to 30 s.
pub const BACKOFF: Backoff = Backoff {
    first: Duration::from_millis(500),
    max: Duration::from_secs(30),
};
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs one part of a pipeline (`attempt` is one run of it) until it ends
/// well, fails for good, or `stop` is set. A retryable failure is reported
/// (state `retrying`, with the error) and the part runs again after the
/// backoff; the other pipelines never wait for it. The registry follows
/// every state.
pub async fn supervise<F, Fut>(
    registry: &Registry,
    pipeline: &str,
    part: &'static str,
    policy: Backoff,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut attempt: F,
) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), Failure>>,
{
    let mut backoff = policy.first;
    loop {
        registry.set_state(pipeline, part, PartState::Running);
        let started = Instant::now();
        match attempt().await {
            Ok(()) => {
                registry.set_state(pipeline, part, PartState::Stopped);
                return Ok(());
            }
            Err(f) if f.retryable && !*stop.borrow() => {
                if started.elapsed() >= HEALTHY_RUN {
                    backoff = policy.first;
                }
                tracing::warn!(pipeline, part, error = %f.message, retry_in = ?backoff, "failed; trying again");
                registry.set_state(pipeline, part, PartState::Retrying(f.message));
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {
                        registry.set_state(pipeline, part, PartState::Stopped);
                        return Ok(());
                    }
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(policy.max);
            }
            Err(f) => {
                registry.set_state(pipeline, part, PartState::Failed(f.message.clone()));
                return Err(f.message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    const QUICK: Backoff = Backoff {
        first: Duration::from_millis(20),
        max: Duration::from_millis(50),
    };

    fn fail(retryable: bool) -> Failure {
        Failure {
            message: format!("broker down (retryable: {retryable})"),
            retryable,
        }
    }

    #[tokio::test]
    async fn retryable_failures_are_tried_again_with_growing_backoff() {
        let registry = Registry::default();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let tries = Arc::new(AtomicU32::new(0));
        let started = Instant::now();
        let result = supervise(&registry, "p", "sink", QUICK, stop, || {
            let tries = tries.clone();
            async move {
                match tries.fetch_add(1, Ordering::SeqCst) {
                    0..=3 => Err(fail(true)),
                    _ => Ok(()),
                }
            }
        })
        .await;
        assert_eq!(result, Ok(()));
        assert_eq!(tries.load(Ordering::SeqCst), 5);
        // 20 + 40 + 50 + 50 ms of backoff (doubling, capped).
        assert!(started.elapsed() >= Duration::from_millis(160));
        assert_eq!(
            registry.status()["pipelines"][0]["parts"]["sink"]["state"],
            "stopped"
        );
    }

    #[tokio::test]
    async fn an_operator_error_stops_the_part_at_once() {
        let registry = Registry::default();
        let (_stop_tx, stop) = tokio::sync::watch::channel(false);
        let tries = AtomicU32::new(0);
        let result = supervise(&registry, "p", "capture", QUICK, stop, || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err(fail(false)) }
        })
        .await;
        assert_eq!(result, Err(fail(false).message));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
        let status = registry.status();
        assert_eq!(
            status["pipelines"][0]["parts"]["capture"]["state"],
            "failed"
        );
        assert!(!registry.healthy());
    }

    #[tokio::test]
    async fn a_stop_during_the_backoff_ends_the_part() {
        let registry = Arc::new(Registry::default());
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let task = {
            let registry = registry.clone();
            tokio::spawn(async move {
                let slow = Backoff {
                    first: Duration::from_secs(60),
                    max: Duration::from_secs(60),
                };
                supervise(&registry, "p", "sink", slow, stop, || async {
                    Err(fail(true))
                })
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = registry.status();
        assert_eq!(status["pipelines"][0]["parts"]["sink"]["state"], "retrying");
        assert!(!registry.healthy(), "a retrying part is not healthy");
        stop_tx.send(true).unwrap();
        assert_eq!(task.await.unwrap(), Ok(()));
    }
}
