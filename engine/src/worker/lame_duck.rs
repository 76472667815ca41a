//! Lame-duck mode, as nats-server's (SIGUSR2, or `ServerHandle::lame_duck`): stop accepting,
//! tell the clients, wait a grace period, close the connections a few at a time, then stop.
//!
//! Spreading the closes out is the point: clients reconnect elsewhere gradually, not all at
//! once. [`LameDuck`] is the part every worker shares; [`Drain`] is one worker's schedule.
//! Each worker closes only its own connections, at its own pace, so no worker ever looks at
//! another's, and none walks its connections more than twice (once to send the `ldm` INFO,
//! once, with a cursor, to close them).
//!
//! The steps, per worker:
//!
//! 1. Worker 0, which owns the listener, deregisters and closes it (new connections are now
//!    refused) and says so in [`LameDuck::listener_closed`]. The others wait for that, so that
//!    no connection handed over before it is missed.
//! 2. The worker adopts what was handed over, sends each of its clients that sent CONNECT
//!    with `protocol` 1 (every client library) its INFO again with `"ldm":true` (nats-server
//!    sends no async INFO to protocol 0; it also waits for the client's first PING, which
//!    every library sends right after CONNECT), and computes its pace: the closes of the whole server
//!    fill `lame_duck_duration` minus the grace period (1 s if that leaves nothing), but are at
//!    most [`limits::LAME_DUCK_MAX_CLOSE_INTERVAL`] apart (nats-server's rule); a worker with n
//!    of the server's connections closes one every `span / n`.
//! 3. After `lame_duck_grace_period`, it closes one connection every interval, without an
//!    `-ERR` (`CloseReason::ServerShutdown`, as nats-server). A connection with bytes still
//!    pending is written first and closed once they are out (or after `shutdown_grace`).
//! 4. With none left, the worker counts itself out of [`LameDuck::workers_left`], but keeps
//!    serving its rings (other workers' clients still publish to subjects it owns). The last
//!    one stops the server; `ServerHandle::wait` then returns and the binary exits 0.
//!
//! nats-server picks each pause at random between half and all of its interval; the engine
//! spaces the closes evenly (the brief pauses are what matter, not their jitter).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net::outbound::Flushed;
use net::proto;
use tracing::info;

use super::{CloseReason, Shared, Slab, Worker};
use crate::envelope::ConnKey;
use crate::limits;

/// What the workers share about lame-duck mode.
#[derive(Debug)]
pub(crate) struct LameDuck {
    /// Lame-duck mode was asked for.
    requested: AtomicBool,
    /// Worker 0 has closed the listener: no connection is accepted or handed over any more.
    listener_closed: AtomicBool,
    /// Workers that still have connections to close.
    workers_left: AtomicUsize,
}

impl LameDuck {
    /// The state before any request, for a server of `workers` workers.
    pub(crate) fn new(workers: usize) -> LameDuck {
        LameDuck {
            requested: AtomicBool::new(false),
            listener_closed: AtomicBool::new(false),
            workers_left: AtomicUsize::new(workers),
        }
    }
}

impl Shared {
    /// Asks every worker to enter lame-duck mode; a second request changes nothing.
    pub(crate) fn enter_lame_duck(&self) {
        // Release pairs with the Acquire load in `Worker::poll_lame_duck`: the request carries
        // no data of its own, but the ordering costs nothing on this once-only path.
        if !self.lame_duck.requested.swap(true, Ordering::Release) {
            for w in &self.wakers {
                let _ = w.wake();
            }
        }
    }
}

/// One worker's lame-duck schedule.
#[derive(Debug)]
pub(super) struct Drain {
    /// When the next connection is due to close; `None` once every one has been started.
    next_close: Option<Instant>,
    /// Time between two closes on this worker.
    every: Duration,
    /// The next connection slot to look at: every slot below it has been dealt with, and no
    /// connection arrives any more, so the slots are walked once in all.
    cursor: usize,
    /// Connections chosen for closing whose pending bytes are still going out, with the time
    /// they are closed anyway. In the order they were chosen, so the first deadline is the
    /// earliest.
    flushing: Vec<(ConnKey, Instant)>,
    /// This worker has closed all its connections and counted itself out.
    done: bool,
}

impl Worker {
    /// The run loop's hook, once per iteration: enters lame-duck mode when asked (one atomic
    /// load until then), then closes the connections that are due.
    pub(super) fn poll_lame_duck(&mut self, now: Instant) {
        if self.lame_duck.is_none() {
            // Acquire pairs with the Release swap in `Shared::enter_lame_duck`.
            if !self.shared.lame_duck.requested.load(Ordering::Acquire) || !self.start_drain(now) {
                return;
            }
        }
        self.close_due(now);
    }

    /// When the loop must wake at the latest: the next tick, or a JetStream consumer's timer
    /// or lame-duck mode's next close or flush deadline if sooner.
    pub(super) fn park_until(&self) -> Instant {
        let next = match self.js_deadline() {
            Some(at) => at.min(self.next_tick),
            None => self.next_tick,
        };
        let Some(d) = &self.lame_duck else {
            return next;
        };
        [d.next_close, d.flushing.first().map(|&(_, at)| at)]
            .into_iter()
            .flatten()
            .fold(next, Instant::min)
    }

    /// Steps 1 and 2 of the module doc. False while this worker waits for worker 0 to close
    /// the listener.
    fn start_drain(&mut self, now: Instant) -> bool {
        let ld = &self.shared.lame_duck;
        if self.id == 0 {
            if let Some(mut listener) = self.listener.take() {
                let _ = self.poll.registry().deregister(&mut listener);
            }
            info!("entering lame duck mode, no longer accepting connections");
            // Release pairs with the Acquire load below, on the other workers: the connections
            // this worker handed them before closing the listener are in their channels then.
            ld.listener_closed.store(true, Ordering::Release);
            for (w, waker) in self.shared.wakers.iter().enumerate() {
                if w != self.id {
                    let _ = waker.wake();
                }
            }
        } else if !ld.listener_closed.load(Ordering::Acquire) {
            return false;
        }
        self.adopt_handoffs();
        let here = self.clients.live();
        // Relaxed: see `adopt`. The other workers' connections only set the pace.
        let total = self.shared.open.load(Ordering::Relaxed).max(here);
        let cfg = &self.shared.config;
        let grace = cfg.lame_duck_grace_period;
        let every = close_interval(cfg.lame_duck_duration, grace, total, here);
        let informed = self.send_ldm_info();
        if here > 0 {
            info!(
                worker = self.id,
                connections = here,
                informed,
                ?grace,
                ?every,
                "lame duck mode: closing connections after the grace period"
            );
        }
        self.lame_duck = Some(Drain {
            next_close: (here > 0).then(|| now + grace),
            every,
            cursor: 0,
            flushing: Vec::new(),
            done: false,
        });
        self.end_of_batch();
        true
    }

    /// Queues the INFO with `"ldm":true` for every client of this worker that sent CONNECT
    /// with protocol 1 or more; returns how many.
    fn send_ldm_info(&mut self) -> usize {
        let mut informed = 0;
        for slot in 0..self.clients.slots.len() {
            let Some(c) = self.clients.at(slot) else {
                continue;
            };
            if c.close.is_some() || !c.connected || c.connect.protocol < 1 {
                continue;
            }
            let mut info = self.shared.info(c.id, c.peer.ip());
            info.lame_duck_mode = true;
            proto::encode_info(&mut c.out.writer(&mut self.pool), &info);
            self.queued(slot);
            informed += 1;
        }
        informed
    }

    /// Steps 3 and 4 of the module doc.
    fn close_due(&mut self, now: Instant) {
        let Some(mut drain) = self.lame_duck.take() else {
            return;
        };
        if !drain.done {
            self.finish_flushing(&mut drain, now);
            while let Some(due) = drain.next_close.filter(|&t| now >= t) {
                match self.next_to_close(&mut drain) {
                    Some(slot) => {
                        self.begin_close(slot, &mut drain, now);
                        drain.next_close = Some(due + drain.every);
                    }
                    None => drain.next_close = None,
                }
            }
            if !self.closing.is_empty() {
                self.end_of_batch();
            }
            if self.clients.live() == 0 {
                drain.done = true;
                // AcqRel: the last worker's `stop` comes after every other worker's closes.
                if self
                    .shared
                    .lame_duck
                    .workers_left
                    .fetch_sub(1, Ordering::AcqRel)
                    == 1
                {
                    info!("lame duck mode: every connection closed, stopping");
                    self.shared.stop();
                }
            }
        }
        self.lame_duck = Some(drain);
    }

    /// The next open connection at or after the cursor.
    fn next_to_close(&mut self, drain: &mut Drain) -> Option<usize> {
        while drain.cursor < self.clients.slots.len() {
            let slot = drain.cursor;
            drain.cursor += 1;
            if self.clients.at(slot).is_some_and(|c| c.close.is_none()) {
                return Some(slot);
            }
        }
        None
    }

    /// Closes a connection once its pending bytes are out: now if they can be written at
    /// once, else when `finish_flushing` sees them gone (or its deadline passes).
    fn begin_close(&mut self, slot: usize, drain: &mut Drain, now: Instant) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if !c.out.is_empty() {
            match c.transport.flush(&mut c.out, &mut self.pool) {
                Ok(Flushed::All) => {}
                Ok(Flushed::Blocked) => {
                    // Writability wakes the loop, which flushes the rest.
                    c.write_blocked = true;
                    let deadline = now + self.shared.config.shutdown_grace;
                    drain.flushing.push((c.key, deadline));
                    return;
                }
                Err(e) => {
                    let kind = e.kind();
                    self.fail(slot, CloseReason::Io(kind));
                    return;
                }
            }
        }
        self.fail(slot, CloseReason::ServerShutdown);
    }

    /// Closes the connections waiting in `flushing` whose bytes are out or whose time is up.
    fn finish_flushing(&mut self, drain: &mut Drain, now: Instant) {
        drain.flushing.retain(|&(key, deadline)| {
            let Some(c) = self.clients.get_mut(key) else {
                return false;
            };
            if c.close.is_some() {
                return false;
            }
            if c.out.is_empty() || now >= deadline {
                self.fail(key.slot as usize, CloseReason::ServerShutdown);
                return false;
            }
            true
        });
    }
}

impl Slab {
    /// Connections in the table.
    fn live(&self) -> usize {
        self.slots.len() - self.free.len()
    }
}

/// How long one worker waits between two closes: the server's closes fill `duration` minus
/// `grace` (1 s when that leaves nothing, as nats-server), at most
/// [`limits::LAME_DUCK_MAX_CLOSE_INTERVAL`] apart; this worker has `here` of the `total`
/// connections, so it closes one every `span / here`.
fn close_interval(duration: Duration, grace: Duration, total: usize, here: usize) -> Duration {
    let window = duration
        .checked_sub(grace)
        .filter(|w| !w.is_zero())
        .unwrap_or(Duration::from_secs(1));
    let total = u32::try_from(total.max(here)).unwrap_or(u32::MAX);
    let span = window.min(limits::LAME_DUCK_MAX_CLOSE_INTERVAL.saturating_mul(total));
    span / u32::try_from(here.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);
    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn closes_fill_the_duration_after_the_grace_period() {
        // nats-server's defaults, 10,000 clients on one worker: 110 s / 10,000.
        assert_eq!(
            close_interval(2 * MIN, 10 * SEC, 10_000, 10_000),
            Duration::from_millis(11)
        );
        // The same clients on 4 workers: each closes its 2,500 over the same 110 s.
        assert_eq!(
            close_interval(2 * MIN, 10 * SEC, 10_000, 2_500),
            Duration::from_millis(44)
        );
    }

    #[test]
    fn closes_are_at_most_a_second_apart_server_wide() {
        // 10 clients need not take 110 s: 1 s apart in all, so 2 s apart on a worker with 5.
        assert_eq!(close_interval(2 * MIN, 10 * SEC, 10, 10), SEC);
        assert_eq!(close_interval(2 * MIN, 10 * SEC, 10, 5), 2 * SEC);
    }

    #[test]
    fn no_time_left_after_the_grace_period_means_one_second() {
        assert_eq!(close_interval(SEC, 2 * SEC, 4, 4), SEC / 4);
        assert_eq!(close_interval(SEC, SEC, 2, 1), SEC);
    }

    #[test]
    fn short_durations_for_tests() {
        assert_eq!(
            close_interval(Duration::from_millis(300), Duration::from_millis(100), 2, 2),
            Duration::from_millis(100)
        );
        // No connection here, or a total that lags behind: never a division by zero.
        assert_eq!(close_interval(2 * MIN, 10 * SEC, 0, 0), Duration::ZERO);
        assert_eq!(close_interval(2 * MIN, 10 * SEC, 1, 3), SEC);
    }
}
