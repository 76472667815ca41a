//! Per-worker counters: written only by their own worker (no shared writes, no atomic
//! read-modify-write), readable by anyone at run time.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// One worker's counters. Each field is written by that worker alone, so an increment is a
/// Relaxed load and a Relaxed store (no `lock`-prefixed instruction); readers on other threads
/// may see a slightly old value, which is all a counter promises.
#[derive(Debug, Default)]
pub struct Counters {
    in_msgs: AtomicU64,
    in_bytes: AtomicU64,
    out_msgs: AtomicU64,
    out_bytes: AtomicU64,
    accepted: AtomicU64,
    closed: AtomicU64,
    slow_consumers: AtomicU64,
    ring_full: AtomicU64,
}

/// Which counter to bump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Messages published by this worker's clients.
    InMsgs,
    /// Payload bytes published by this worker's clients.
    InBytes,
    /// Messages delivered to this worker's clients.
    OutMsgs,
    /// Payload bytes delivered to this worker's clients.
    OutBytes,
    /// Connections accepted onto this worker.
    Accepted,
    /// Connections closed on this worker.
    Closed,
    /// Connections closed as slow consumers.
    SlowConsumers,
    /// Pushes that found a ring full and went to the overflow queue.
    RingFull,
}

/// A point-in-time copy of counters (one worker's, or summed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Messages published.
    pub in_msgs: u64,
    /// Payload bytes published.
    pub in_bytes: u64,
    /// Messages delivered.
    pub out_msgs: u64,
    /// Payload bytes delivered.
    pub out_bytes: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed.
    pub closed: u64,
    /// Slow consumers cut off.
    pub slow_consumers: u64,
    /// Ring-full events.
    pub ring_full: u64,
}

impl Counters {
    fn cell(&self, which: Counter) -> &AtomicU64 {
        match which {
            Counter::InMsgs => &self.in_msgs,
            Counter::InBytes => &self.in_bytes,
            Counter::OutMsgs => &self.out_msgs,
            Counter::OutBytes => &self.out_bytes,
            Counter::Accepted => &self.accepted,
            Counter::Closed => &self.closed,
            Counter::SlowConsumers => &self.slow_consumers,
            Counter::RingFull => &self.ring_full,
        }
    }

    /// Adds `n`. Must only be called by the owning worker.
    pub fn add(&self, which: Counter, n: u64) {
        let cell = self.cell(which);
        // Relaxed load + store: this worker is the only writer, so no update can be lost;
        // readers only need an eventually-current value.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> Snapshot {
        // Relaxed: counters are independent statistics; no ordering with other memory.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            in_msgs: get(&self.in_msgs),
            in_bytes: get(&self.in_bytes),
            out_msgs: get(&self.out_msgs),
            out_bytes: get(&self.out_bytes),
            accepted: get(&self.accepted),
            closed: get(&self.closed),
            slow_consumers: get(&self.slow_consumers),
            ring_full: get(&self.ring_full),
        }
    }
}

impl Snapshot {
    /// Field-wise sum.
    pub fn merge(self, o: Snapshot) -> Snapshot {
        Snapshot {
            in_msgs: self.in_msgs + o.in_msgs,
            in_bytes: self.in_bytes + o.in_bytes,
            out_msgs: self.out_msgs + o.out_msgs,
            out_bytes: self.out_bytes + o.out_bytes,
            accepted: self.accepted + o.accepted,
            closed: self.closed + o.closed,
            slow_consumers: self.slow_consumers + o.slow_consumers,
            ring_full: self.ring_full + o.ring_full,
        }
    }
}
