//! Backpressure from a slow subscriber to its publishers, and the write deadline.
//!
//! A connection with more than `max_pending / STALL_DIVISOR` bytes queued is **stalled**.
//! Each publisher whose message then reaches it is **throttled**: its socket is read no
//! further (so TCP slows it to what the subscriber takes) until the stalled connection
//! drains below half of that mark, or is closed. A stalled connection that takes no bytes at
//! all for `--write-deadline` is closed as a slow consumer, which releases its publishers.
//! So a subscriber that keeps reading, however slowly, is never cut (its publishers slow
//! down instead), and one that has stopped holds its publishers up for the deadline at most.
//! The `max_pending` hard cap stays as the last resort.
//!
//! The stalled connection's worker keeps the list of publishers it throttled and sends each
//! exactly one [`Envelope::Unthrottle`] after its [`Envelope::Throttle`], on the same FIFO
//! ring (or directly, for a local publisher), so a publisher's count of throttles can never
//! go wrong. Throttling only stops *reading* a publisher: its own outbound, and every ring,
//! keep draining, so no wait depends on another wait (no deadlock).
//!
//! Rejected: stalling the whole worker (every publisher that sends to a worker holding a
//! stalled connection) is one atomic load per publish and needs no lists, but one slow
//! reader would then slow every unrelated subject on that worker.

use std::time::Instant;

use super::conn::CloseReason;
use super::Worker;
use crate::envelope::{ConnKey, Envelope};
use crate::limits;

/// What a stalled connection remembers.
#[derive(Debug)]
pub(super) struct Stall {
    /// When it last took any bytes (or became stalled).
    last_progress: Instant,
    /// Publishers it has throttled, each exactly once, to be released when it drains.
    publishers: Vec<ConnKey>,
}

impl Worker {
    /// After a delivery from `publisher` to the connection in `slot`: past the stall mark,
    /// throttle that publisher (once per stall).
    pub(super) fn check_stall(&mut self, slot: usize, publisher: ConnKey) {
        let high = self.shared.config.max_pending / limits::STALL_DIVISOR;
        let now = self.now;
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.close.is_some() || c.out.pending_bytes() <= high {
            return;
        }
        if !c.in_stalled {
            c.in_stalled = true;
            self.stalled.push(slot);
        }
        let stall = match &mut c.stall {
            Some(s) => s,
            None => c.stall.insert(Box::new(Stall {
                last_progress: now,
                publishers: Vec::new(),
            })),
        };
        if stall.publishers.len() >= limits::MAX_STALLED_PUBLISHERS
            || stall.publishers.contains(&publisher)
        {
            return;
        }
        stall.publishers.push(publisher);
        if usize::from(publisher.worker) == self.id {
            self.handle_throttle(publisher);
        } else {
            self.send(usize::from(publisher.worker), Envelope::Throttle(publisher));
        }
    }

    /// After a flush of the connection in `slot` that took it from `before` to `after`
    /// pending bytes: progress resets its write deadline, and below the low mark its
    /// publishers are released.
    pub(super) fn after_flush(&mut self, slot: usize, before: usize, after: usize) {
        let low = self.shared.config.max_pending / limits::STALL_DIVISOR / 2;
        let now = self.now;
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let Some(stall) = c.stall.as_mut() else {
            return;
        };
        if after < before {
            stall.last_progress = now;
        }
        if after <= low {
            self.release_stall(slot);
        }
    }

    /// Ends the stall of the connection in `slot` (drained, or closing): every publisher it
    /// throttled is released.
    pub(super) fn release_stall(&mut self, slot: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let Some(stall) = c.stall.take() else {
            return;
        };
        for publisher in stall.publishers {
            if usize::from(publisher.worker) == self.id {
                self.handle_unthrottle(publisher);
            } else {
                self.send(
                    usize::from(publisher.worker),
                    Envelope::Unthrottle(publisher),
                );
            }
        }
    }

    /// A stalled connection somewhere holds `publisher` (on this worker) back.
    pub(super) fn handle_throttle(&mut self, publisher: ConnKey) {
        if let Some(c) = self.clients.get_mut(publisher) {
            c.throttles += 1;
        }
    }

    /// One stall holding `publisher` back has ended; with none left it is read again.
    pub(super) fn handle_unthrottle(&mut self, publisher: ConnKey) {
        let Some(c) = self.clients.get_mut(publisher) else {
            return;
        };
        c.throttles = c.throttles.saturating_sub(1);
        if c.throttles == 0 && c.barriers_out == 0 {
            let slot = publisher.slot as usize;
            self.resume(slot);
            self.defer(slot);
        }
    }

    /// Closes every stalled connection that has taken nothing for the write deadline.
    pub(super) fn check_write_deadlines(&mut self) {
        let deadline = self.shared.config.write_deadline;
        let now = self.now;
        let mut stalled = std::mem::take(&mut self.stalled);
        stalled.retain(|&slot| {
            let Some(c) = self.clients.at(slot) else {
                return false;
            };
            let Some(stall) = &c.stall else {
                c.in_stalled = false;
                return false;
            };
            if now.duration_since(stall.last_progress) < deadline {
                return true;
            }
            c.in_stalled = false;
            self.fail(slot, CloseReason::WriteDeadline);
            false
        });
        // `fail` never adds to `stalled`, so nothing was pushed meanwhile.
        self.stalled = stalled;
    }
}
