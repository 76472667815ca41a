//! Confirmed publishes with at most W PubAcks outstanding.
//!
//! Message `n` is published with the reply subject `<inbox>.k.<n>`; the time its latency is
//! measured from waits in slot `n % slots` until its PubAck names `n` again.
//!
//! - Closed loop (no `--rate`): a new publish goes out as soon as the window has room. The
//!   issue asks for confirms/s at a fixed number in flight, and the confirm latency is
//!   measured from the actual send (coordinated omission by construction, said in the
//!   report).
//! - Open loop (`--rate R`): publish `n` is scheduled at `start + n / R` ([`OpenLoop`]) and
//!   sent once that time has come, never before; a sender that fell behind sends its backlog
//!   at once. Its latency is measured from the scheduled time, so a stall, whether the
//!   server's or a full window's, shows as latency of every publish it held back
//!   (coordinated omission avoided, as in the core-NATS runs). The window stays the cap: a
//!   due publish waits for a PubAck when W are outstanding, and is counted as held back by
//!   it (`Paced`). Every publish scheduled before the end is sent, even after the end;
//!   what is still unsent `--drain` seconds after it is given up and counted as unsent.
//!
//! Waiting for a due publish: mio's poll timeouts are whole milliseconds, rounded up, and
//! sleeping the sub-millisecond rest (what the core-NATS worker does) would leave every
//! PubAck that arrives meanwhile unread until the sleep ends — at 2000/s, with confirms
//! and periods both around half a millisecond, that added most of a period to nearly every
//! latency measured. Spinning instead would take a core from the server. So an `Alarm`
//! thread sleeps until the due time and wakes the poll; the connection's thread waits in
//! poll throughout and reads each PubAck as it arrives.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use net::proto;
use serde::Serialize;

use crate::js::api::PubAck;
use crate::js::client::{ack_number, Client, ACK_SID};
use crate::js::{JsConfig, Measured, Ticker};
use crate::limits::{JS_ERRORS_KEPT, JS_HIGH_WATER_BYTES, JS_STALL_SECS};
use crate::report::fmt_us;
use crate::schedule::OpenLoop;
use crate::stats::{new_histogram, summarise, LatencySummary};
use crate::worker::Clock;
use crate::Error;

/// When publishing stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After a warmup and a measured window (publish mode).
    Window {
        /// Seconds published before the window, not counted.
        warmup_secs: f64,
        /// Seconds of the window.
        measure_secs: f64,
        /// Open loop at this many publishes per second; `None`: closed loop.
        rate_per_sec: Option<f64>,
    },
    /// After this many publishes, all measured (a consume run's fill).
    Count(u64),
}

/// What one publish phase measured.
pub type Published = Measured<PublishFigures>;

/// The JSON's `publish` section.
#[derive(Debug, Clone, Serialize)]
pub struct PublishFigures {
    /// `closed` (a new publish waits for a free slot in the window) or `open` (scheduled at
    /// `rate_per_sec`, the window as a cap).
    pub mode: String,
    /// Open loop: the publishes per second scheduled (`--rate`); `null` in closed loop.
    pub rate_per_sec: Option<f64>,
    /// The window (W).
    pub window: u64,
    /// Confirmed publishes per second of the measured window: the achieved rate (those sent,
    /// in open loop: scheduled, inside the window and confirmed, over its length).
    pub confirmed_per_sec: f64,
    /// Open loop: publishes scheduled inside the measured window (exactly the schedule's
    /// ticks due in it); `null` in closed loop.
    pub scheduled_in_window: Option<u64>,
    /// Publishes sent inside the measured window (open loop: scheduled inside it, whenever
    /// sent).
    pub sent_in_window: u64,
    /// Of those, confirmed.
    pub confirmed_in_window: u64,
    /// Publishes sent in total (warmup included).
    pub sent_total: u64,
    /// PubAcks naming a stream sequence, in total.
    pub confirmed_total: u64,
    /// PubAcks that were errors (JetStream `{"error":…}`, a status message such as 503
    /// no responders, or unreadable). A run with any fails unless `--allow-errors`.
    pub errors: u64,
    /// The first few errors' texts.
    pub first_errors: Vec<String>,
    /// PubAcks with `"duplicate":true` (none expected: no `Nats-Msg-Id` is sent).
    pub duplicates: u64,
    /// Publishes never confirmed within `--drain`.
    pub unconfirmed: u64,
    /// Open loop: of the publishes scheduled inside the measured window, those a full
    /// window (W PubAcks outstanding) held back after their scheduled time; `null` in
    /// closed loop, where every publish waits for the window by design.
    pub delayed_by_window: Option<u64>,
    /// Open loop: scheduled publishes still unsent `--drain` seconds after the end, given up
    /// (a run with any fails unless `--allow-errors`); 0 in closed loop.
    pub unsent: u64,
    /// Open loop: how late each publish scheduled inside the window was queued after its
    /// scheduled time, in microseconds. Part of every open-loop latency: large values mean
    /// the load generator or the window, not the confirm path, was behind. `null` in closed
    /// loop, where the send time is the time measured from.
    pub send_lag: Option<LatencySummary>,
    /// Largest stream sequence confirmed.
    pub last_seq: u64,
    /// Seconds spent waiting for the outstanding PubAcks after publishing stopped.
    pub drain_secs: f64,
}

/// A publish waiting for its PubAck.
#[derive(Debug, Clone, Copy)]
struct Slot {
    n: u64,
    /// What its latency is measured from: the actual send (closed loop) or the scheduled
    /// time (open loop).
    from_ns: u64,
    in_window: bool,
}

/// The open-loop schedule under the window's cap: each tick is handed out once it is due
/// and the window has room, in order, with whether the cap held it back after it was due.
/// No clock and no I/O: the caller passes the time and the room in.
#[derive(Debug, Clone)]
struct Paced {
    schedule: OpenLoop,
    /// The last time a due tick was refused because the window was full.
    capped_ns: Option<u64>,
}

impl Paced {
    fn new(schedule: OpenLoop) -> Paced {
        Paced {
            schedule,
            capped_ns: None,
        }
    }

    /// The next tick, `(index, scheduled time, held back by the cap)`, if it is due at
    /// `now_ns` and `room` says the window can take it. A due tick refused for lack of room
    /// stays next; ticks are never handed out early, and a backlog is handed out at once.
    fn poll_send(&mut self, now_ns: u64, room: bool) -> Option<(u64, u64, bool)> {
        let due = self.schedule.next_due_ns()?;
        if due > now_ns {
            return None;
        }
        if !room {
            self.capped_ns = Some(now_ns);
            return None;
        }
        let (n, due) = self.schedule.poll_due(now_ns)?;
        // Ticks go in order, so one due by the last refusal was still unsent then: held
        // back by the cap (and a tick due only after it was not, whatever came before).
        let held = self.capped_ns.is_some_and(|at| at >= due);
        Some((n, due, held))
    }

    /// The index the next tick will have.
    fn next_index(&self) -> u64 {
        self.schedule.ticks()
    }
}

/// Wakes a [`Client::pump`] at a set time, to the precision of a thread's timed park (tens
/// of microseconds), which mio's millisecond timeouts do not give. One thread, idle but for
/// a wake per due publish the schedule waits for; it ends when the alarm is dropped.
struct Alarm {
    /// Deadlines for the thread; dropped (disconnecting it) when the alarm is.
    tx: Option<flume::Sender<Instant>>,
    /// The schedule time (ns) the thread was last set for, so a wait that ends early (a
    /// PubAck) does not set it again.
    set_for_ns: Option<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Alarm {
    fn start(waker: Arc<mio::Waker>) -> Result<Alarm, Error> {
        let (tx, rx) = flume::unbounded::<Instant>();
        let thread = std::thread::Builder::new()
            .name("loadgen-js-alarm".to_string())
            .spawn(move || {
                let mut deadline = None;
                loop {
                    let got = match deadline {
                        Some(at) => rx.recv_deadline(at),
                        None => rx.recv().map_err(|_| flume::RecvTimeoutError::Disconnected),
                    };
                    match got {
                        Ok(at) => deadline = Some(at),
                        Err(flume::RecvTimeoutError::Timeout) => {
                            deadline = None;
                            // A failed wake only means the poll waits for its own timeout.
                            let _ = waker.wake();
                        }
                        Err(flume::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Alarm {
            tx: Some(tx),
            set_for_ns: None,
            thread: Some(thread),
        })
    }

    /// Wakes the poll at `due_ns` on `clock`, the time a publish is scheduled at.
    fn set(&mut self, due_ns: u64, clock: Clock) {
        if self.set_for_ns == Some(due_ns) {
            return;
        }
        self.set_for_ns = Some(due_ns);
        if let Some(tx) = &self.tx {
            // Unbounded, and the thread only ends once `tx` is dropped: cannot fail.
            let _ = tx.send(clock.instant_at(due_ns));
        }
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How publishes are paced.
#[derive(Debug)]
enum Pacing {
    /// As fast as the window has room.
    Closed,
    /// On a schedule, the window as a cap.
    Open(Paced),
}

/// Publishes until `stop`, then waits up to `--drain` for the outstanding PubAcks.
pub(crate) fn run(
    client: &mut Client,
    cfg: &JsConfig,
    stop: Stop,
    clock: Clock,
    say: &dyn Fn(String),
) -> Result<Published, Error> {
    let subjects: Vec<Vec<u8>> = (0..cfg.subjects)
        .map(|i| format!("{}.{i}", cfg.stream_subjects.trim_end_matches(".>")).into_bytes())
        .collect();
    let payload = vec![b'x'; cfg.size];
    let slots_len = (cfg.window as usize).next_power_of_two() * 2;
    let mut slots: Vec<Option<Slot>> = vec![None; slots_len];
    let mask = slots_len as u64 - 1;
    let mut reply = Vec::new();

    let start_ns = clock.now_ns();
    let (measure_ns, end_ns, rate) = match stop {
        Stop::Window {
            warmup_secs,
            measure_secs,
            rate_per_sec,
        } => {
            let m = start_ns + (warmup_secs * 1e9) as u64;
            (m, m + (measure_secs * 1e9) as u64, rate_per_sec)
        }
        Stop::Count(_) => (start_ns, u64::MAX, None),
    };
    let limit = match stop {
        Stop::Count(n) => n,
        Stop::Window { .. } => u64::MAX,
    };
    let drain_ns = (cfg.drain * 1e9) as u64;
    let mut pacing = match rate {
        Some(r) => Pacing::Open(Paced::new(OpenLoop::new(start_ns, end_ns, r))),
        None => Pacing::Closed,
    };
    let mut alarm = match pacing {
        Pacing::Open(_) => Some(Alarm::start(client.waker()?)?),
        Pacing::Closed => None,
    };
    // Open loop: a backlog still unsent this long after the end is given up.
    let give_up_ns = end_ns.saturating_add(drain_ns);
    let mut p = PublishFigures {
        mode: if rate.is_some() { "open" } else { "closed" }.to_string(),
        rate_per_sec: rate,
        window: cfg.window,
        confirmed_per_sec: 0.0,
        scheduled_in_window: match &pacing {
            Pacing::Open(paced) => {
                Some(paced.schedule.ticks_before(end_ns) - paced.schedule.ticks_before(measure_ns))
            }
            Pacing::Closed => None,
        },
        sent_in_window: 0,
        confirmed_in_window: 0,
        sent_total: 0,
        confirmed_total: 0,
        errors: 0,
        first_errors: Vec::new(),
        duplicates: 0,
        unconfirmed: 0,
        delayed_by_window: rate.map(|_| 0),
        unsent: 0,
        send_lag: None,
        last_seq: 0,
        drain_secs: 0.0,
    };
    let mut hist = new_histogram();
    let mut lag_hist = new_histogram();
    let mut timeline = Vec::new();
    let mut cpu = None;
    let mut window_secs = 0.0;
    let mut ticker = Ticker::new(start_ns);
    let mut in_flight = 0u64;
    let mut last_progress_ns = start_ns;
    let mut cpu_begin = None;
    let mut cpu_taken = false;
    let mut stopped_ns = None;
    loop {
        let now = clock.now_ns();
        if !cpu_taken && now >= measure_ns {
            cpu_taken = true;
            cpu_begin = Some(crate::sysinfo::CpuMark::take(cfg.server_pid));
        }
        let sending = match &pacing {
            Pacing::Closed => now < end_ns && p.sent_total < limit,
            Pacing::Open(paced) => {
                !paced.schedule.is_done() && p.sent_total < limit && now < give_up_ns
            }
        };
        if !sending && stopped_ns.is_none() {
            stopped_ns = Some(now);
            window_secs = window_secs_of(stop, start_ns, now);
            if let Pacing::Open(paced) = &pacing {
                p.unsent = paced.schedule.ticks_before(end_ns) - paced.next_index();
            }
        }
        // The CPU window is the measured one, also when an open loop's backlog outlasts it.
        let cpu_done = match stop {
            Stop::Window { .. } => now >= end_ns,
            Stop::Count(_) => stopped_ns.is_some(),
        };
        if cpu_done {
            if let Some(begin) = cpu_begin.take() {
                cpu = Some(begin.finish(window_secs_of(stop, start_ns, now)));
            }
        }
        // Open loop: when the next scheduled publish is due, if the schedule is what waits.
        let mut next_due_ns = None;
        if sending {
            while p.sent_total < limit && client.backlog() < JS_HIGH_WATER_BYTES {
                // Publishes are numbered in sending order, in either loop.
                let n = p.sent_total;
                // A slot still taken is a PubAck outstanding from a window ago that never
                // came while the window went around: the cap too.
                let room = in_flight < cfg.window && slots[(n & mask) as usize].is_none();
                let from_ns = match &mut pacing {
                    Pacing::Closed if room => now,
                    Pacing::Closed => break,
                    Pacing::Open(paced) => {
                        let Some((tick, due, held)) = paced.poll_send(now, room) else {
                            next_due_ns = paced.schedule.next_due_ns().filter(|&d| d > now);
                            break;
                        };
                        debug_assert_eq!(tick, n, "one publish per tick, in order");
                        if due >= measure_ns {
                            lag_hist.saturating_record(now - due);
                            if let (true, Some(d)) = (held, p.delayed_by_window.as_mut()) {
                                *d += 1;
                            }
                        }
                        due
                    }
                };
                let in_window = from_ns >= measure_ns;
                slots[(n & mask) as usize] = Some(Slot {
                    n,
                    from_ns,
                    in_window,
                });
                client.ack_reply(n, &mut reply);
                let subject = &subjects[(n % subjects.len() as u64) as usize];
                proto::encode_pub(&mut client.out, subject, Some(&reply), &payload);
                if in_flight == 0 {
                    // The stall clock runs only while something is outstanding (an open
                    // loop at a low rate may have had nothing outstanding for long).
                    last_progress_ns = now;
                }
                p.sent_total += 1;
                p.sent_in_window += u64::from(in_window);
                ticker.sent += 1;
                in_flight += 1;
            }
        } else if in_flight == 0 {
            break;
        } else if let Some(at) = stopped_ns {
            if now.saturating_sub(at) > drain_ns {
                break;
            }
        }
        if in_flight > 0 && now.saturating_sub(last_progress_ns) > JS_STALL_SECS * 1_000_000_000 {
            return Err(Error::Js(format!(
                "no PubAck for {JS_STALL_SECS} s with {in_flight} publishes outstanding \
                 (does a stream capture {}?)",
                cfg.stream_subjects
            )));
        }
        // Wait for I/O until the next second's line or, in open loop, the next due publish:
        // the alarm wakes the poll then (its own timeout, rounded up to a millisecond, is
        // only the fallback).
        let mut timeout = ticker.wait(now);
        if let (Some(due), Some(alarm)) = (next_due_ns, alarm.as_mut()) {
            alarm.set(due, clock);
            timeout = timeout.min(Duration::from_nanos(due - now));
        }
        let got = client.pump(timeout, |_, m| {
            if m.sid != ACK_SID {
                return Ok(());
            }
            let now = clock.now_ns();
            let Some(n) = ack_number(m.subject) else {
                return Ok(());
            };
            let Some(slot) = slots[(n & mask) as usize].filter(|s| s.n == n) else {
                return Ok(());
            };
            slots[(n & mask) as usize] = None;
            in_flight -= 1;
            let latency = now.saturating_sub(slot.from_ns);
            match PubAck::parse(m.headers, m.payload) {
                PubAck::Stored { seq, duplicate } => {
                    p.confirmed_total += 1;
                    ticker.delivered += 1;
                    p.duplicates += u64::from(duplicate);
                    p.last_seq = p.last_seq.max(seq);
                    ticker.record(latency);
                    if slot.in_window && slot.from_ns < end_ns {
                        p.confirmed_in_window += 1;
                        hist.saturating_record(latency);
                    }
                }
                other => {
                    p.errors += 1;
                    if p.first_errors.len() < JS_ERRORS_KEPT {
                        p.first_errors.push(match other {
                            PubAck::Refused(e) => e.to_string(),
                            PubAck::Status(code) => format!("status {code} instead of a PubAck"),
                            PubAck::Unexpected(text) => format!("unreadable PubAck {text}"),
                            PubAck::Stored { .. } => String::new(),
                        });
                    }
                }
            }
            Ok(())
        })?;
        if got > 0 {
            last_progress_ns = clock.now_ns();
        }
        let phase = |at: u64| {
            if stopped_ns.is_some_and(|s| at > s) {
                "drain"
            } else if at <= measure_ns {
                "warmup"
            } else if at <= end_ns {
                "measure"
            } else {
                // Open loop: publishes scheduled in the window still being sent.
                "backlog"
            }
        };
        if let Some(sec) = ticker.poll_second(clock.now_ns(), phase) {
            say(format!(
                "  [{:>3}s {:<7}] publish {:>8}/s  confirmed {:>8}/s  p99 {:>9}  max {:>9}",
                sec.t,
                sec.phase,
                sec.sent,
                sec.delivered,
                fmt_us(sec.p99_us),
                fmt_us(sec.max_us)
            ));
            timeline.push(sec);
        }
    }
    p.unconfirmed = in_flight;
    p.confirmed_per_sec = p.confirmed_in_window as f64 / window_secs.max(1e-9);
    if rate.is_some() {
        p.send_lag = Some(summarise(&lag_hist));
    }
    if let Some(at) = stopped_ns {
        p.drain_secs = (clock.now_ns() - at) as f64 / 1e9;
    }
    Ok(Measured {
        figures: p,
        hist,
        timeline,
        cpu,
    })
}

/// The seconds a phase's CPU is divided by: the measured window, or for a fill the time
/// from its start.
fn window_secs_of(stop: Stop, start_ns: u64, now: u64) -> f64 {
    match stop {
        Stop::Window { measure_secs, .. } => measure_secs,
        Stop::Count(_) => (now - start_ns) as f64 / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    /// 1000 publishes/s for 10 ms: tick k is due at k ms.
    fn paced() -> Paced {
        Paced::new(OpenLoop::new(0, 10 * MS, 1000.0))
    }

    #[test]
    fn never_early_and_a_backlog_goes_at_once_with_its_scheduled_times() {
        let mut p = paced();
        assert_eq!(p.poll_send(0, true), Some((0, 0, false)));
        assert_eq!(p.poll_send(MS - 1, true), None, "tick 1 is due at 1 ms");
        // Back 4.5 ms late: ticks 1..=4 at once, each stamped with its own time.
        let late: Vec<_> = std::iter::from_fn(|| p.poll_send(4 * MS + MS / 2, true)).collect();
        assert_eq!(
            late,
            [
                (1, MS, false),
                (2, 2 * MS, false),
                (3, 3 * MS, false),
                (4, 4 * MS, false)
            ]
        );
        assert_eq!(p.next_index(), 5);
        assert_eq!(p.schedule.next_due_ns(), Some(5 * MS));
    }

    #[test]
    fn a_full_window_holds_due_ticks_back_and_they_are_counted() {
        let mut p = paced();
        assert_eq!(p.poll_send(0, true), Some((0, 0, false)));
        // Window full from 1 ms to 3 ms: tick 1 due, refused twice; it stays next.
        assert_eq!(p.poll_send(MS, false), None);
        assert_eq!(p.poll_send(3 * MS, false), None);
        assert_eq!(p.next_index(), 1);
        // Room at 3.5 ms: ticks 1..=3 were due at the last refusal, so held back; none
        // is handed out before its time, and tick 4 (due 4 ms) was not held back.
        let after: Vec<_> = std::iter::from_fn(|| p.poll_send(3 * MS + MS / 2, true)).collect();
        assert_eq!(after, [(1, MS, true), (2, 2 * MS, true), (3, 3 * MS, true)]);
        assert_eq!(p.poll_send(4 * MS, true), Some((4, 4 * MS, false)));
        // A refusal while nothing is due is no refusal: the schedule is what waits.
        assert_eq!(p.poll_send(4 * MS + 1, false), None);
        assert_eq!(p.poll_send(5 * MS, true), Some((5, 5 * MS, false)));
    }

    #[test]
    fn the_schedule_ends_with_every_tick_handed_out_once() {
        let mut p = paced();
        let mut got = Vec::new();
        // Room only every other look: every tick still goes out, in order, exactly once.
        for (i, now) in (0..40).map(|i| (i, i * MS / 2)).collect::<Vec<_>>() {
            while let Some((n, due, _)) = p.poll_send(now, i % 2 == 0) {
                assert!(due <= now, "never early");
                got.push(n);
            }
        }
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert!(p.schedule.is_done());
        assert_eq!(p.poll_send(u64::MAX, true), None);
        assert_eq!(p.schedule.ticks_before(10 * MS), p.next_index());
    }
}
