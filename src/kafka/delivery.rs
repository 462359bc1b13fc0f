//! Delivery tracking: which source position Kafka has acknowledged
//! everything up to.
//!
//! # The contract
//!
//! Capture hands events to the producer in source order. The tracker numbers
//! every message it sends and the end of every source transaction, in that
//! order. A broker acknowledgement (acks=all) marks one message done; the
//! *low-watermark* is the position of the last entry such that it and every
//! entry before it are done. Since acknowledgements arrive in any order across
//! partitions, the watermark only moves over a contiguous prefix.
//!
//! - [`DeliveryTracker::acknowledged`]: every event at or below it is durable
//!   in Kafka.
//! - [`DeliveryTracker::acknowledged_commit`]: the last source transaction
//!   whose events are all durable; this is what a source may confirm
//!   (Postgres `confirmed_flush_lsn`, the persisted MySQL GTID set).
//! - A failed or ambiguous delivery (timeout, fatal idempotence error) poisons
//!   the tracker: the watermark never moves again, and the owner must tear the
//!   producer down, rebuild it, and replay from the acknowledged position.
//!   Never advancing is what keeps G1: no position is confirmed past an event
//!   Kafka may not hold.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::event::change::Position;

#[derive(Debug, Clone, Copy)]
struct Entry {
    position: Position,
    done: bool,
    /// The end of a source transaction, not a Kafka message.
    commit_marker: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Sequence number of `pending.front()`.
    base: u64,
    pending: VecDeque<Entry>,
    acknowledged: Option<Position>,
    acknowledged_commit: Option<Position>,
    failure: Option<String>,
}

impl State {
    fn advance(&mut self) {
        while let Some(front) = self.pending.front() {
            if !front.done {
                break;
            }
            if front.commit_marker {
                self.acknowledged_commit = Some(front.position);
            } else {
                self.acknowledged = Some(front.position);
            }
            self.pending.pop_front();
            self.base += 1;
        }
    }
}

/// Shared between the sending task and librdkafka's delivery callbacks.
#[derive(Debug, Default)]
pub struct DeliveryTracker {
    state: Mutex<State>,
    changed: Notify,
}

impl DeliveryTracker {
    pub fn new() -> DeliveryTracker {
        DeliveryTracker::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        // A poisoned lock means a callback panicked; the state itself is still
        // consistent (every mutation is a single step), so keep using it.
        let mut guard = match self.state.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Registers a message about to be sent; returns its sequence number.
    pub fn track(&self, position: Position) -> u64 {
        self.with(|s| {
            let seq = s.base + s.pending.len() as u64;
            s.pending.push_back(Entry {
                position,
                done: false,
                commit_marker: false,
            });
            seq
        })
    }

    /// Records the end of a source transaction after its last event was
    /// tracked. `commit` carries the transaction's commit position.
    pub fn end_of_transaction(&self, commit: Position) {
        self.with(|s| {
            s.pending.push_back(Entry {
                position: commit,
                done: true,
                commit_marker: true,
            });
            s.advance();
        });
        self.changed.notify_waiters();
    }

    /// The broker acknowledged message `seq`.
    pub fn delivered(&self, seq: u64) {
        self.with(|s| {
            if let Some(i) = seq.checked_sub(s.base)
                && let Some(e) = s.pending.get_mut(i as usize)
            {
                e.done = true;
            }
            if s.failure.is_none() {
                s.advance();
            }
        });
        self.changed.notify_waiters();
    }

    /// Message `seq` failed, or its fate is unknown. The watermark stops for
    /// good.
    pub fn failed(&self, seq: Option<u64>, reason: String) {
        self.with(|s| {
            if s.failure.is_none() {
                let at = seq
                    .and_then(|q| q.checked_sub(s.base))
                    .and_then(|i| s.pending.get(i as usize))
                    .map(|e| format!(" (event at {})", e.position))
                    .unwrap_or_default();
                s.failure = Some(format!("{reason}{at}"));
            }
        });
        self.changed.notify_waiters();
    }

    /// Everything at or below this position is durable in Kafka.
    pub fn acknowledged(&self) -> Option<Position> {
        self.with(|s| s.acknowledged)
    }

    /// The last source transaction all of whose events are durable.
    pub fn acknowledged_commit(&self) -> Option<Position> {
        self.with(|s| s.acknowledged_commit)
    }

    /// The first delivery failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.with(|s| s.failure.clone())
    }

    /// Messages sent and not yet acknowledged (commit markers excluded).
    pub fn in_flight(&self) -> usize {
        self.with(|s| {
            s.pending
                .iter()
                .filter(|e| !e.commit_marker && !e.done)
                .count()
        })
    }

    /// Waits until nothing is in flight, or a delivery failed.
    ///
    /// # Cancel safety
    /// Cancel safe: it only observes the state.
    pub async fn drained(&self) -> Result<(), String> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(f) = self.failure() {
                return Err(f);
            }
            if self.with(|s| s.pending.is_empty()) {
                return Ok(());
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(c: u64, o: u64) -> Position {
        Position::new(c, o)
    }

    #[test]
    fn watermark_moves_only_over_a_contiguous_prefix() {
        let t = DeliveryTracker::new();
        let a = t.track(p(10, 0));
        let b = t.track(p(10, 1));
        t.end_of_transaction(p(10, u64::MAX));
        let c = t.track(p(11, 0));
        t.end_of_transaction(p(11, u64::MAX));
        // Out-of-order acknowledgements (different partitions).
        t.delivered(c);
        assert_eq!(t.acknowledged(), None);
        t.delivered(b);
        assert_eq!(t.acknowledged(), None);
        assert_eq!(t.acknowledged_commit(), None);
        t.delivered(a);
        assert_eq!(t.acknowledged(), Some(p(11, 0)));
        assert_eq!(t.acknowledged_commit(), Some(p(11, u64::MAX)));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_transaction_is_confirmed_only_when_all_its_events_are() {
        let t = DeliveryTracker::new();
        let a = t.track(p(20, 0));
        let _b = t.track(p(20, 1));
        t.end_of_transaction(p(20, u64::MAX));
        t.delivered(a);
        assert_eq!(t.acknowledged(), Some(p(20, 0)));
        assert_eq!(
            t.acknowledged_commit(),
            None,
            "event 20#1 is still in flight"
        );
    }

    #[test]
    fn a_failure_freezes_the_watermark_forever() {
        let t = DeliveryTracker::new();
        let a = t.track(p(1, 0));
        let b = t.track(p(2, 0));
        let c = t.track(p(3, 0));
        t.delivered(a);
        t.failed(Some(b), "message timed out".into());
        t.delivered(c);
        t.delivered(b); // a late success after an ambiguous error changes nothing
        assert_eq!(t.acknowledged(), Some(p(1, 0)));
        assert!(
            t.failure()
                .unwrap()
                .contains("message timed out (event at 0/2#0)")
        );
    }

    #[tokio::test]
    async fn drained_waits_for_acknowledgements() {
        let t = std::sync::Arc::new(DeliveryTracker::new());
        let a = t.track(p(1, 0));
        let t2 = t.clone();
        let waiter = tokio::spawn(async move { t2.drained().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        t.delivered(a);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }
}
