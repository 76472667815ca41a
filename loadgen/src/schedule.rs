//! When to publish: the open-loop schedule and the closed-loop in-flight window.
//!
//! Open loop: tick `k` is due at `start + k * period`, whatever happened to earlier ticks.
//! A message's latency is measured from its tick's due time, not from when it was finally
//! written, so a stall (in the server or in this process) shows up as latency for every
//! message that should have been sent during it. Measuring from the actual send time instead
//! would hide the stall ("coordinated omission").
//!
//! Closed loop (`--max`): publish as fast as deliveries come back, with at most a window of
//! messages the publishing user's own subscription has not yet received.

/// An open-loop schedule of evenly spaced ticks between a start and an end time.
#[derive(Debug, Clone)]
pub struct OpenLoop {
    start_ns: u64,
    end_ns: u64,
    period_ns: f64,
    next: u64,
}

impl OpenLoop {
    /// Ticks at `rate_per_sec` from `start_ns` (inclusive) to `end_ns` (exclusive).
    /// A rate of zero (or less) yields no ticks.
    pub fn new(start_ns: u64, end_ns: u64, rate_per_sec: f64) -> OpenLoop {
        let period_ns = if rate_per_sec > 0.0 {
            1e9 / rate_per_sec
        } else {
            f64::INFINITY
        };
        OpenLoop {
            start_ns,
            end_ns,
            period_ns,
            next: 0,
        }
    }

    /// The due time of tick `k`.
    pub fn due_ns(&self, k: u64) -> u64 {
        // f64 keeps sub-nanosecond periods exact enough: 2^53 ns is 104 days.
        self.start_ns
            .saturating_add((k as f64 * self.period_ns) as u64)
    }

    /// When the next tick is due, or `None` once the schedule has ended.
    pub fn next_due_ns(&self) -> Option<u64> {
        if !self.period_ns.is_finite() {
            return None;
        }
        let due = self.due_ns(self.next);
        (due < self.end_ns).then_some(due)
    }

    /// Takes the next tick if it is due at `now_ns`: `(tick index, scheduled time)`.
    pub fn poll_due(&mut self, now_ns: u64) -> Option<(u64, u64)> {
        let due = self.next_due_ns()?;
        if due > now_ns {
            return None;
        }
        let k = self.next;
        self.next += 1;
        Some((k, due))
    }

    /// How many ticks are due before `t_ns` (and before the schedule's end): the first
    /// index whose due time is `t_ns` or later. Computed from the same [`OpenLoop::due_ns`]
    /// that [`OpenLoop::poll_due`] hands out, so it is exactly the number of ticks a sender
    /// that keeps up has sent by then (a report's count of scheduled messages in a window
    /// is `ticks_before(end) - ticks_before(start)`).
    pub fn ticks_before(&self, t_ns: u64) -> u64 {
        let t = t_ns.min(self.end_ns);
        if t <= self.start_ns || !self.period_ns.is_finite() {
            return 0;
        }
        // The estimate can be one off either way after rounding; due_ns decides.
        let mut k = ((t - self.start_ns) as f64 / self.period_ns).ceil() as u64;
        while k > 0 && self.due_ns(k - 1) >= t {
            k -= 1;
        }
        while self.due_ns(k) < t {
            k += 1;
        }
        k
    }

    /// Ticks handed out so far.
    pub fn ticks(&self) -> u64 {
        self.next
    }

    /// Whether every tick before `end_ns` has been handed out.
    pub fn is_done(&self) -> bool {
        self.next_due_ns().is_none()
    }
}

/// A bounded window of messages sent but not yet acknowledged.
///
/// The load generator acknowledges by receipt ([`Window::handle_ack_upto`]): a publisher's
/// message counts as done when the publishing user's own subscription has received it, so
/// the window bounds messages in the server, not just bytes in a socket. The mark-based
/// variant ([`Window::handle_mark_ack`], a `PING` after every [`Window::ack_every`] messages
/// answered in order by `PONG`) only proves the server has read the messages.
#[derive(Debug, Clone)]
pub struct Window {
    cap: u64,
    sent: u64,
    acked: u64,
    marks: std::collections::VecDeque<u64>,
    ack_every: u64,
}

impl Window {
    /// A window of at most `cap` unacknowledged messages (at least 1).
    pub fn new(cap: u64) -> Window {
        let cap = cap.max(1);
        Window {
            cap,
            sent: 0,
            acked: 0,
            marks: std::collections::VecDeque::new(),
            ack_every: (cap / 4).max(1),
        }
    }

    /// Whether one more message may be sent now.
    pub fn has_room(&self) -> bool {
        self.sent - self.acked < self.cap
    }

    /// Records a sent message. Returns `true` when the caller must now send an
    /// acknowledgement request (a `PING`) whose answer is passed to [`Window::handle_mark_ack`].
    pub fn handle_sent(&mut self, needs_marks: bool) -> bool {
        self.sent += 1;
        if needs_marks && self.sent % self.ack_every == 0 {
            self.marks.push_back(self.sent);
            return true;
        }
        false
    }

    /// Handles the answer to the oldest acknowledgement request (a `PONG`).
    pub fn handle_mark_ack(&mut self) {
        if let Some(mark) = self.marks.pop_front() {
            self.acked = self.acked.max(mark);
        }
    }

    /// Handles an acknowledgement of every message before the `n`th (receipt of message
    /// `n - 1`, counting from 0). Older or duplicate acknowledgements change nothing.
    pub fn handle_ack_upto(&mut self, n: u64) {
        self.acked = self.acked.max(n.min(self.sent));
    }

    /// Handles one per-message acknowledgement.
    pub fn handle_ack(&mut self) {
        if self.acked < self.sent {
            self.acked += 1;
        }
    }

    /// Outstanding acknowledgement requests.
    pub fn pending_marks(&self) -> usize {
        self.marks.len()
    }

    /// Messages sent per acknowledgement request.
    pub fn ack_every(&self) -> u64 {
        self.ack_every
    }

    /// Messages sent but not acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent - self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_evenly_spaced_and_scheduled_not_sent() {
        let mut s = OpenLoop::new(1_000, 1_000 + 1_000_000_000, 1000.0);
        assert_eq!(s.next_due_ns(), Some(1_000));
        assert_eq!(s.poll_due(999), None);
        assert_eq!(s.poll_due(1_000), Some((0, 1_000)));
        // A stall: we come back 10 ms late. Every missed tick is still handed out, each with
        // its own scheduled time (that is what avoids coordinated omission).
        let late = 1_000 + 10_000_000;
        let mut got = Vec::new();
        while let Some((k, due)) = s.poll_due(late) {
            got.push((k, due));
        }
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], (1, 1_000 + 1_000_000));
        assert_eq!(got[9], (10, 1_000 + 10_000_000));
        assert_eq!(s.next_due_ns(), Some(1_000 + 11_000_000));
    }

    #[test]
    fn schedule_ends_exactly() {
        let mut s = OpenLoop::new(0, 1_000_000_000, 10.0);
        let mut n = 0;
        while s.poll_due(u64::MAX).is_some() {
            n += 1;
        }
        assert_eq!(n, 10);
        assert!(s.is_done());
        assert_eq!(s.ticks(), 10);
    }

    #[test]
    fn fractional_rates_do_not_drift() {
        // 3 per second: 0, 333_333_333, 666_666_666, ... tick 3000 lands on exactly 1000 s.
        let s = OpenLoop::new(0, u64::MAX, 3.0);
        assert_eq!(s.due_ns(3000), 1_000_000_000_000);
    }

    #[test]
    fn ticks_before_counts_what_poll_due_hands_out() {
        // 2000/s for 1 s: ticks 0, 0.5 ms, ..., 999.5 ms; the one at 1 s is past the end.
        let s = OpenLoop::new(0, 1_000_000_000, 2000.0);
        assert_eq!(s.ticks_before(u64::MAX), 2000);
        assert_eq!(s.ticks_before(1_000_000_000), 2000);
        assert_eq!(s.ticks_before(0), 0);
        assert_eq!(s.ticks_before(1), 1, "tick 0 is due at the start");
        assert_eq!(
            s.ticks_before(500_000),
            1,
            "tick 1 is due at 0.5 ms, not before"
        );
        assert_eq!(s.ticks_before(500_001), 2);
        // A warmup of 0.3 s and a window of 1 s after it, from a start that is not 0.
        let s = OpenLoop::new(7, 7 + 1_300_000_000, 2000.0);
        let in_window = s.ticks_before(7 + 1_300_000_000) - s.ticks_before(7 + 300_000_000);
        assert_eq!(in_window, 2000);
        // Fractional periods: 3/s for 1 s is 3 ticks (0, 333.3 ms, 666.7 ms), 7/s is 7.
        assert_eq!(
            OpenLoop::new(0, 1_000_000_000, 3.0).ticks_before(u64::MAX),
            3
        );
        assert_eq!(
            OpenLoop::new(0, 1_000_000_000, 7.0).ticks_before(u64::MAX),
            7
        );
        // Below one tick per window: the tick at the start only.
        assert_eq!(
            OpenLoop::new(0, 1_000_000_000, 0.5).ticks_before(u64::MAX),
            1
        );
        assert_eq!(OpenLoop::new(0, u64::MAX, 0.0).ticks_before(u64::MAX), 0);
    }

    proptest::proptest! {
        #[test]
        fn ticks_before_agrees_with_polling(
            start in 0u64..1_000_000_000,
            len in 0u64..20_000_000,
            rate in 1.0f64..200_000.0,
            at in 0u64..25_000_000,
        ) {
            let s = OpenLoop::new(start, start + len, rate);
            let mut polled = s.clone();
            let mut before = 0;
            while polled.poll_due(start + at).is_some() {
                before += 1;
            }
            // poll_due hands out ticks due at or before a time: those before the next ns.
            proptest::prop_assert_eq!(s.ticks_before(start + at + 1), before);
            let mut all = s.clone();
            while all.poll_due(u64::MAX).is_some() {}
            proptest::prop_assert_eq!(s.ticks_before(u64::MAX), all.ticks());
        }
    }

    #[test]
    fn zero_rate_never_ticks() {
        let mut s = OpenLoop::new(0, u64::MAX, 0.0);
        assert_eq!(s.next_due_ns(), None);
        assert_eq!(s.poll_due(u64::MAX), None);
    }

    #[test]
    fn window_bounds_in_flight_with_marks() {
        let mut w = Window::new(8);
        assert_eq!(w.ack_every(), 2);
        let mut pings = 0;
        while w.has_room() {
            if w.handle_sent(true) {
                pings += 1;
            }
        }
        assert_eq!(w.in_flight(), 8);
        assert_eq!(pings, 4);
        w.handle_mark_ack();
        assert_eq!(w.in_flight(), 6);
        assert!(w.has_room());
    }

    #[test]
    fn window_acked_by_receipt() {
        let mut w = Window::new(3);
        for _ in 0..3 {
            w.handle_sent(false);
        }
        assert!(!w.has_room());
        w.handle_ack_upto(2);
        assert_eq!(w.in_flight(), 1);
        w.handle_ack_upto(1); // stale
        assert_eq!(w.in_flight(), 1);
        w.handle_ack_upto(99); // never past what was sent
        assert_eq!(w.in_flight(), 0);
    }

    #[test]
    fn window_with_per_message_acks() {
        let mut w = Window::new(2);
        assert!(!w.handle_sent(false));
        assert!(!w.handle_sent(false));
        assert!(!w.has_room());
        w.handle_ack();
        assert!(w.has_room());
        w.handle_ack();
        w.handle_ack();
        assert_eq!(w.in_flight(), 0);
    }
}
