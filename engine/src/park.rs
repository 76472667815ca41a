//! The doorbell: how a producer learns that the worker it just pushed to is asleep, so that a
//! wake-up syscall is issued only when the destination is parked, never per message, and never
//! lost.
//!
//! One [`Doorbell`] per worker, shared (in an `Arc`) between that worker, which parks, and the
//! producers on every other worker, which ring it. This module only decides *whether* to wake;
//! the wake-up itself (a mio `Waker`) and the blocking poll belong to the caller, so the core
//! stays free of mio.
//!
//! # Protocol
//!
//! Worker (the consumer of its inbound rings), when it runs out of work:
//!
//! 1. [`Doorbell::prepare_park`]: announce the intent to sleep;
//! 2. re-check every inbound ring ([`Consumer::is_empty`](crate::ring::Consumer::is_empty));
//! 3. if any is non-empty: [`Doorbell::cancel_park`] and go back to work; otherwise block in
//!    the poll, and after waking (for whatever reason) call [`Doorbell::cancel_park`].
//!
//! Producer, after [`Producer::commit`](crate::ring::Producer::commit) (or `try_push`) to that
//! worker's ring:
//!
//! 4. if [`Doorbell::ring`] returns true, issue the real wake-up. It returns true only when the
//!    worker had announced parking, and clears the announcement, so of several producers racing
//!    only one issues the syscall, and a busy worker costs producers no syscall at all.
//!
//! ```
//! use engine::park::Doorbell;
//! use engine::ring::ring;
//!
//! let bell = Doorbell::new();
//! let (mut tx, mut rx) = ring::<u32>(8);
//!
//! // Worker: nothing to do, announce parking, re-check.
//! bell.prepare_park();
//! assert!(rx.is_empty()); // would now block in its poll
//!
//! // Producer on another worker: push, commit, ring.
//! tx.try_push(1).unwrap(); // empty ring of 8
//! assert!(bell.ring()); // the worker is parked: the caller must wake it
//! assert!(!bell.ring()); // already being woken: no second syscall
//!
//! // Worker, woken up.
//! bell.cancel_park();
//! assert_eq!(rx.try_pop(), Some(1));
//! ```
//!
//! # Why no wake-up is lost
//!
//! This is Dekker's pattern: each side writes its own variable, issues a `SeqCst` fence, then
//! reads the other side's variable. The worker writes `parked = true` (step 1), fences, then
//! loads each ring's `tail` (step 2). The producer stores `tail` with its commit, fences (in
//! [`Doorbell::ring`]), then loads `parked` (step 4).
//!
//! All `SeqCst` fences are totally ordered. Take the worker's fence `Fw` and the producer's
//! fence `Fp`:
//!
//! - If `Fw` comes first, the producer's load of `parked` (after `Fp`) observes the worker's
//!   `parked = true` (before `Fw`) or a later store (C++20 \[atomics.order\]: a store before
//!   one `SeqCst` fence is visible to a load after a later one). A later store is either another
//!   producer's clearing swap, and that producer then issues the wake-up, or the worker's own
//!   `cancel_park`, made while it is awake and about to look at its rings again.
//! - If `Fp` comes first, the worker's re-check (after `Fw`) observes the producer's `tail` store
//!   (before `Fp`), sees the item, and cancels instead of blocking.
//!
//! So the worker blocks only if every producer that committed before its re-check either rings
//! it awake or committed late enough to see `parked = true` and ring it awake. The cost is one
//! `SeqCst` fence per `ring` call (once per destination per batch) and one per park.
//!
//! Rejected: a `SeqCst` store/load pair without fences (the same argument holds in C++20, but
//! loom models `SeqCst` accesses as `AcqRel` and could not check it, while it models `SeqCst`
//! fences exactly); a per-message wake-up (a syscall per message); `Release`/`Acquire` alone
//! (allows both loads to read stale values: the classic lost wake-up, which the loom model of
//! this protocol finds in a few iterations without the fences).
//!
//! The flag itself is accessed with `Relaxed`: it carries no data (the items travel through the
//! ring's own `Release`/`Acquire` pairs) and the fences above give the cross-variable ordering.

use std::fmt;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{fence, AtomicBool, Ordering};

/// A parked worker's "wake me" flag. See the [module docs](self) for the protocol.
pub struct Doorbell {
    /// True between the worker's `prepare_park` and the first of its `cancel_park` or a
    /// producer's successful `ring`. Padded: producers on every worker read it.
    parked: CachePadded<AtomicBool>,
}

impl Doorbell {
    /// A doorbell for a worker that is awake.
    pub fn new() -> Self {
        Self {
            parked: CachePadded::new(AtomicBool::new(false)),
        }
    }

    /// Worker side: announce the intent to park. Re-check every inbound ring afterwards, then
    /// either [`cancel_park`](Self::cancel_park) or block.
    #[inline]
    pub fn prepare_park(&self) {
        // Relaxed: the flag carries no data; the fence below orders it before the re-check.
        // A swap rather than a store: an RMW is ordered after every earlier write of the flag,
        // including a producer's clearing swap from the previous park. C++ already implies
        // that for a plain store (the clearing swap read our `cancel_park`, so it sits right
        // after it in the modification order), but loom's partial model of the modification
        // order does not derive it and reports a lost wake-up that cannot happen. Parking is
        // rare, so the RMW costs nothing that matters.
        let _ = self.parked.swap(true, Ordering::Relaxed);
        // SeqCst: pairs with the SeqCst fence in `ring` (Dekker's pattern, see the module docs):
        // either the producer's load of `parked` sees the store above, or our re-check of the
        // rings sees its commit.
        fence(Ordering::SeqCst);
    }

    /// Worker side: withdraw the announcement, because the re-check found work or because the
    /// worker woke up. A producer that read the flag just before this may still issue a
    /// wake-up; it only makes the worker's next poll return at once.
    #[inline]
    pub fn cancel_park(&self) {
        // Relaxed: being awake needs no ordering against the rings; at worst a producer reads
        // the stale `true` and issues one spurious wake-up.
        self.parked.store(false, Ordering::Relaxed);
    }

    /// Producer side, after committing pushes to this worker's ring: true exactly when the
    /// worker had announced parking, in which case the announcement is cleared and the caller
    /// must issue the real wake-up. Pushes not yet committed are not covered.
    #[inline]
    #[must_use = "true means the caller must wake the worker"]
    pub fn ring(&self) -> bool {
        // SeqCst: pairs with the SeqCst fence in `prepare_park` (see the module docs): either
        // the load below sees the worker's `parked = true`, or the worker's re-check sees the
        // commit that preceded this call.
        fence(Ordering::SeqCst);
        // Relaxed: ordered by the fence above. A plain load first keeps the common case (worker
        // awake) free of a read-modify-write on a line every producer shares.
        if !self.parked.load(Ordering::Relaxed) {
            return false;
        }
        // Relaxed: ordered by the fence above. The swap makes exactly one of several racing
        // producers see `true`.
        self.parked.swap(false, Ordering::Relaxed)
    }
}

impl Default for Doorbell {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell")
            // Relaxed: a diagnostic snapshot.
            .field("parked", &self.parked.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(all(test, not(engine_loom)))]
mod tests {
    use super::*;

    #[test]
    fn ring_is_false_while_the_worker_is_awake() {
        let bell = Doorbell::new();
        assert!(!bell.ring());
        bell.prepare_park();
        bell.cancel_park();
        assert!(!bell.ring());
    }

    #[test]
    fn only_one_ring_per_park() {
        let bell = Doorbell::default();
        bell.prepare_park();
        assert!(bell.ring());
        assert!(!bell.ring());
        bell.cancel_park();
        bell.prepare_park();
        assert!(bell.ring(), "a new park can be rung again");
    }

    #[test]
    fn racing_producers_wake_once() {
        let bell = Doorbell::new();
        bell.prepare_park();
        let woken: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| usize::from(bell.ring())))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum() // no thread panics
        });
        assert_eq!(woken, 1);
    }
}
