//! One load-generator thread: its own mio `Poll`, its share of the connections, its own
//! histograms and counters. Threads share nothing while running; they report to the
//! coordinator ([`crate::run`]) over a channel once per second and at the end.
//!
//! A thread goes through four phases, each ended by the coordinator:
//! 1. connect: open its connections (a bounded number at a time) and confirm every one
//!    (NATS: `SUB` + `PING`, answered by `PONG`; Redis: the `SUBSCRIBE` reply or `PONG`;
//!    chat: `SUB` + the `room.join` request, whose successful answer is followed by `PING`;
//!    a NATS client speaks first, without waiting for INFO);
//! 2. wait for the start time, answering server `PING`s;
//! 3. publish on schedule and receive until the end time;
//! 4. drain: keep receiving until every expected delivery arrived or nothing came for a while.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use net::proto::{self, Op, Parser, ParserLimits, Side};

use crate::chat;
use crate::config::{room_subject, Protocol, Resolved};
use crate::limits::{
    DRAIN_QUIET_SECS, MAX_CONNECTING_PER_THREAD, MAX_PARTIAL_FRAME_BYTES,
    MAX_PUBLISHER_BACKLOG_BYTES, READ_CHUNK_BYTES,
};
use crate::payload::Stamp;
use crate::resp;
use crate::schedule::{OpenLoop, Window};
use crate::seq::{Arrival, SeqTracker};
use crate::stats::new_histogram;
use crate::Error;

/// The monotonic clock every thread stamps and measures with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    pub(crate) fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// The instant `ns` on this clock (for a thread that waits until then).
    pub(crate) fn instant_at(&self, ns: u64) -> std::time::Instant {
        self.origin + std::time::Duration::from_nanos(ns)
    }
}

/// Which connections a thread owns.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// The subscribing users this thread owns: (user id, room).
    pub(crate) subscribers: Vec<(u32, usize)>,
    /// Global ids of the publishers this thread owns.
    pub(crate) publishers: Vec<u32>,
}

/// What the coordinator tells a thread.
#[derive(Debug)]
pub(crate) enum Cmd {
    /// Publish from `start_ns`, measure from `measure_ns`, stop publishing at `end_ns`.
    Start {
        start_ns: u64,
        measure_ns: u64,
        end_ns: u64,
    },
    /// Publishing has stopped everywhere: each publisher's messages sent inside the window.
    Drain { sent_in_window: Arc<Vec<u64>> },
    /// Stop now.
    Abort,
}

/// What a thread tells the coordinator.
#[derive(Debug)]
pub(crate) enum Report {
    /// Connections confirmed so far (sent when the number changes, at most every 100 ms).
    Confirmed { thread: usize, confirmed: usize },
    /// Every connection of this thread is confirmed.
    Ready { thread: usize },
    /// One second of the run.
    Tick(Box<Tick>),
    /// Publishing stopped: messages each of this thread's publishers sent inside the window.
    Published {
        sent_in_window: Vec<(u32, u64)>,
        sent_total: u64,
        dropped: u64,
    },
    /// The thread's final figures.
    Done(Box<ThreadResult>),
    /// The thread failed and stopped.
    Failed(Error),
}

/// One second of one thread.
#[derive(Debug)]
pub(crate) struct Tick {
    pub(crate) second: u64,
    pub(crate) sent: u64,
    pub(crate) delivered: u64,
    pub(crate) hist: Histogram<u64>,
}

/// A thread's final figures.
#[derive(Debug)]
pub(crate) struct ThreadResult {
    /// Latencies of deliveries of messages scheduled inside the window.
    pub(crate) hist: Histogram<u64>,
    /// How late this thread queued its window messages relative to their schedule.
    pub(crate) lag_hist: Histogram<u64>,
    /// Distinct deliveries of messages scheduled inside the window.
    pub(crate) delivered_in_window: u64,
    /// All distinct deliveries (warmup included).
    pub(crate) delivered_total: u64,
    /// Payload bytes of `delivered_in_window`.
    pub(crate) bytes_in_window: u64,
    /// Deliveries expected inside the window (from the publishers' counts).
    pub(crate) expected_in_window: u64,
    /// Deliveries of a sequence number already received.
    pub(crate) duplicates: u64,
    /// Deliveries that filled a gap (arrived after a later number).
    pub(crate) reordered: u64,
    /// Sequence numbers skipped when they were skipped (some may have been filled later).
    pub(crate) gaps: u64,
    /// Window messages never delivered, summed over pairs.
    pub(crate) lost: u64,
    /// (publisher, subscriber) pairs tracked.
    pub(crate) pairs: u64,
    /// Pairs that lost at least one window message.
    pub(crate) pairs_with_loss: u64,
    /// Largest loss of one pair.
    pub(crate) max_pair_loss: u64,
    /// Payloads without a valid stamp or from an unknown publisher.
    pub(crate) bad_payloads: u64,
    /// Subscriber connections the server closed during the run.
    pub(crate) sub_disconnects: u64,
    /// Publisher connections the server closed during the run.
    pub(crate) pub_disconnects: u64,
    /// `-ERR` texts that named a slow consumer.
    pub(crate) slow_consumer_errs: u64,
    /// The first few errors the server sent, or close reasons.
    pub(crate) errors: Vec<String>,
    /// Connections opened.
    pub(crate) connections: usize,
    /// Seconds spent draining.
    pub(crate) drain_secs: f64,
}

/// Runs one thread to completion, reporting on `tx`.
pub(crate) fn run_thread(
    thread: usize,
    plan: Plan,
    cfg: Arc<Resolved>,
    clock: Clock,
    cmds: flume::Receiver<Cmd>,
    tx: flume::Sender<Report>,
) {
    let outcome = Worker::new(thread, plan, cfg, clock, &tx).and_then(|mut w| w.run(&cmds));
    let report = match outcome {
        Ok(Some(result)) => Report::Done(Box::new(result)),
        Ok(None) => return,
        Err(e) => Report::Failed(e),
    };
    let _ = tx.send(report);
}

/// Events handled between two looks at the open-loop schedule while handling a poll's events
/// (a clock read costs ~20 ns; 32 reads of a few microseconds each keep sends within ~0.1 ms).
const EVENTS_PER_SCHEDULE_CHECK: usize = 32;

/// Errors texts kept per thread.
const MAX_ERRORS_KEPT: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnState {
    /// Not opened yet.
    Idle,
    /// TCP connect or handshake in progress.
    Handshake,
    /// Confirmed.
    Ready,
    /// Closed by the server or by an error.
    Closed,
}

#[derive(Debug, Default)]
struct Pair {
    seq: SeqTracker,
    in_window: u64,
}

#[derive(Debug)]
enum Role {
    Sub {
        user: u32,
        room: usize,
        pairs: Vec<Pair>,
    },
    Pub {
        id: u32,
        subject: Vec<u8>,
        window: Window,
        seq: u32,
    },
}

#[derive(Debug)]
struct Conn {
    stream: Option<TcpStream>,
    role: Role,
    state: ConnState,
    connected: bool,
    parser: Option<Parser>,
    partial: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    dirty: bool,
    /// NATS: the server's INFO arrived.
    info_seen: bool,
    /// Chat: the `room.join` request is sent and its answer has not arrived yet.
    joining: bool,
}

#[derive(Debug, Default)]
struct Counters {
    delivered_in_window: u64,
    delivered_total: u64,
    bytes_in_window: u64,
    duplicates: u64,
    reordered: u64,
    gaps: u64,
    bad_payloads: u64,
    sub_disconnects: u64,
    pub_disconnects: u64,
    slow_consumer_errs: u64,
    errors: Vec<String>,
    sent_total: u64,
    dropped: u64,
    tick_sent: u64,
    tick_delivered: u64,
    last_delivery_ns: u64,
}

impl Counters {
    fn note_error(&mut self, text: String) {
        if self.errors.len() < MAX_ERRORS_KEPT {
            self.errors.push(text);
        }
    }
}

/// The measurement window, in clock ns (all zero until started).
#[derive(Debug, Clone, Copy, Default)]
struct Times {
    start_ns: u64,
    measure_ns: u64,
    end_ns: u64,
}

struct Worker<'t> {
    thread: usize,
    cfg: Arc<Resolved>,
    clock: Clock,
    tx: &'t flume::Sender<Report>,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    scratch: Vec<u8>,
    template: Vec<u8>,
    hist: Histogram<u64>,
    tick_hist: Histogram<u64>,
    /// How late window messages were queued relative to their schedule.
    lag_hist: Histogram<u64>,
    counters: Counters,
    times: Times,
    /// Each publisher's messages sent inside the window, indexed like `publishers`.
    sent_in_window: Vec<u64>,
    /// Indices into `conns` of this thread's publishers.
    publishers: Vec<usize>,
    dirty: Vec<usize>,
    /// When the next per-second report is due (0 before the start).
    next_tick_ns: u64,
    /// Reused list of (token, readable, writable) of one poll.
    ready: Vec<(usize, bool, bool)>,
    /// Closed loop: (publisher id, messages received back) seen by publishers' own users.
    acks: Vec<(u32, u32)>,
    /// Open loop, while publishing: this thread's schedule.
    schedule: Option<OpenLoop>,
}

impl<'t> Worker<'t> {
    fn new(
        thread: usize,
        plan: Plan,
        cfg: Arc<Resolved>,
        clock: Clock,
        tx: &'t flume::Sender<Report>,
    ) -> Result<Worker<'t>, Error> {
        let mut conns = Vec::with_capacity(plan.subscribers.len() + plan.publishers.len());
        let rooms = cfg.rooms;
        for &(user, room) in &plan.subscribers {
            // Publishers of room r are r, r + rooms, r + 2*rooms, ...: pair index p / rooms.
            let in_room = (0..cfg.publishers).filter(|p| p % rooms == room).count();
            let pairs = (0..in_room).map(|_| Pair::default()).collect();
            conns.push(Conn::new(cfg.protocol, Role::Sub { user, room, pairs }));
        }
        let mut publishers = Vec::new();
        for &id in &plan.publishers {
            publishers.push(conns.len());
            let subject = cfg.room_subject(id as usize % rooms).into_bytes();
            let role = Role::Pub {
                id,
                subject,
                window: Window::new(cfg.window),
                seq: 0,
            };
            conns.push(Conn::new(cfg.protocol, role));
        }
        Ok(Worker {
            thread,
            template: vec![b'x'; cfg.payload],
            cfg,
            clock,
            tx,
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            conns,
            scratch: vec![0; READ_CHUNK_BYTES],
            hist: new_histogram(),
            tick_hist: new_histogram(),
            lag_hist: new_histogram(),
            counters: Counters::default(),
            times: Times::default(),
            sent_in_window: vec![0; plan.publishers.len()],
            publishers,
            dirty: Vec::new(),
            next_tick_ns: 0,
            ready: Vec::new(),
            acks: Vec::new(),
            schedule: None,
        })
    }

    fn run(&mut self, cmds: &flume::Receiver<Cmd>) -> Result<Option<ThreadResult>, Error> {
        if self.connect_all(cmds)?.is_none() {
            return Ok(None);
        }
        // Wait for the start time, keeping connections serviced.
        let times = loop {
            match cmds.try_recv() {
                Ok(Cmd::Start {
                    start_ns,
                    measure_ns,
                    end_ns,
                }) => {
                    break Times {
                        start_ns,
                        measure_ns,
                        end_ns,
                    }
                }
                Ok(Cmd::Abort) | Err(flume::TryRecvError::Disconnected) => return Ok(None),
                Ok(Cmd::Drain { .. }) | Err(flume::TryRecvError::Empty) => {}
            }
            self.poll_once(Some(Duration::from_millis(2)))?;
        };
        self.times = times;
        if !self.publish_phase(cmds)? {
            return Ok(None);
        }
        let sent: Vec<(u32, u64)> = self
            .publishers
            .iter()
            .zip(&self.sent_in_window)
            .filter_map(|(&ci, &n)| match self.conns[ci].role {
                Role::Pub { id, .. } => Some((id, n)),
                Role::Sub { .. } => None,
            })
            .collect();
        let _ = self.tx.send(Report::Published {
            sent_in_window: sent,
            sent_total: self.counters.sent_total,
            dropped: self.counters.dropped,
        });
        let sent_in_window = loop {
            match cmds.try_recv() {
                Ok(Cmd::Drain { sent_in_window }) => break sent_in_window,
                Ok(Cmd::Abort) | Err(flume::TryRecvError::Disconnected) => return Ok(None),
                Ok(Cmd::Start { .. }) | Err(flume::TryRecvError::Empty) => {}
            }
            self.poll_once(Some(Duration::from_millis(2)))?;
            self.maybe_tick();
        };
        let drain_secs = self.drain(&sent_in_window, cmds)?;
        Ok(Some(self.finish(&sent_in_window, drain_secs)))
    }

    /// Opens every connection, at most MAX_CONNECTING_PER_THREAD at a time, and waits until
    /// each is confirmed. Returns when the last was confirmed (`None` if aborted).
    fn connect_all(&mut self, cmds: &flume::Receiver<Cmd>) -> Result<Option<u64>, Error> {
        let total = self.conns.len();
        let mut next = 0;
        let mut reported = usize::MAX;
        let mut last_report_ns = 0;
        let deadline = self.clock.now_ns()
            + Duration::from_secs(crate::limits::CONNECT_TIMEOUT_SECS).as_nanos() as u64;
        loop {
            let ready = self
                .conns
                .iter()
                .filter(|c| c.state == ConnState::Ready)
                .count();
            let in_progress = self
                .conns
                .iter()
                .take(next)
                .filter(|c| c.state == ConnState::Handshake)
                .count();
            let mut room = MAX_CONNECTING_PER_THREAD.saturating_sub(in_progress);
            while room > 0 && next < total {
                self.open(next)?;
                next += 1;
                room -= 1;
            }
            let now = self.clock.now_ns();
            if ready != reported && (ready == total || now - last_report_ns > 100_000_000) {
                reported = ready;
                last_report_ns = now;
                let _ = self.tx.send(Report::Confirmed {
                    thread: self.thread,
                    confirmed: ready,
                });
            }
            if ready == total {
                let _ = self.tx.send(Report::Ready {
                    thread: self.thread,
                });
                return Ok(Some(now));
            }
            if now > deadline {
                return Err(Error::Connect(format!(
                    "only {ready} of {total} connections confirmed after {} s ({})",
                    crate::limits::CONNECT_TIMEOUT_SECS,
                    self.unconfirmed()
                )));
            }
            match cmds.try_recv() {
                Ok(Cmd::Abort) | Err(flume::TryRecvError::Disconnected) => return Ok(None),
                _ => {}
            }
            self.poll_once(Some(Duration::from_millis(5)))?;
            if let Some(c) = self.conns.iter().find(|c| c.state == ConnState::Closed) {
                let what = match c.role {
                    Role::Sub { .. } => "subscriber",
                    Role::Pub { .. } => "publisher",
                };
                let why = self.counters.errors.last().cloned().unwrap_or_default();
                return Err(Error::Connect(format!(
                    "a {what} connection to {} was closed during its handshake: {why}",
                    self.cfg.addr
                )));
            }
        }
    }

    /// Where the unconfirmed connections are stuck, for the connect-timeout error.
    fn unconfirmed(&self) -> String {
        let (mut tcp, mut info, mut join, mut pong) = (0, 0, 0, 0);
        for c in self
            .conns
            .iter()
            .filter(|c| c.state == ConnState::Handshake)
        {
            if !c.connected {
                tcp += 1;
            } else if self.cfg.protocol == Protocol::Nats && !c.info_seen {
                info += 1;
            } else if c.joining {
                join += 1;
            } else {
                pong += 1;
            }
        }
        let mut s = format!("TCP connect pending: {tcp}");
        if self.cfg.protocol == Protocol::Nats {
            s += &format!(", no INFO: {info}");
        }
        if self.cfg.chat {
            s += &format!(", room.join unanswered: {join}");
        }
        s + &format!(", confirmation unanswered: {pong}")
    }

    fn open(&mut self, i: usize) -> Result<(), Error> {
        let mut stream = TcpStream::connect(self.cfg.addr)
            .map_err(|e| Error::Connect(format!("cannot connect to {}: {e}", self.cfg.addr)))?;
        self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let conn = &mut self.conns[i];
        conn.stream = Some(stream);
        conn.state = ConnState::Handshake;
        Ok(())
    }

    /// The publishing phase. Returns `false` if aborted.
    fn publish_phase(&mut self, cmds: &flume::Receiver<Cmd>) -> Result<bool, Error> {
        let Times {
            start_ns, end_ns, ..
        } = self.times;
        let n_pubs = self.publishers.len();
        let rate = self.cfg.rate.unwrap_or(0.0) * n_pubs as f64 / self.cfg.publishers as f64;
        if !self.cfg.max && n_pubs > 0 {
            self.schedule = Some(OpenLoop::new(start_ns, end_ns, rate));
        }
        self.next_tick_ns = start_ns + 1_000_000_000;
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Abort) | Err(flume::TryRecvError::Disconnected) => return Ok(false),
                _ => {}
            }
            let now = self.clock.now_ns();
            let mut busy = false;
            if now >= start_ns {
                if self.cfg.max {
                    if now < end_ns {
                        busy = self.publish_closed_loop(now)?;
                    }
                } else {
                    // Every tick due before the end is sent, even if we woke after the end.
                    self.publish_due(now);
                }
            }
            if now >= end_ns {
                self.schedule = None;
                self.flush_dirty()?;
                return Ok(true);
            }
            self.flush_dirty()?;
            self.maybe_tick();
            // Wait for I/O until the next due tick. mio rounds timeouts up to whole
            // milliseconds, so the last sub-millisecond stretch is slept precisely instead,
            // but only when no I/O is waiting.
            let next_due = if self.cfg.max || now < start_ns {
                if busy {
                    now
                } else {
                    start_ns.max(now + 1_000_000).min(end_ns)
                }
            } else {
                self.schedule
                    .as_ref()
                    .and_then(OpenLoop::next_due_ns)
                    .unwrap_or(end_ns)
                    .min(end_ns)
            }
            .min(self.next_tick_ns);
            let wait = next_due.saturating_sub(now);
            if wait >= 1_000_000 {
                self.poll_once(Some(Duration::from_millis(wait / 1_000_000)))?;
            } else {
                let got = self.poll_once(Some(Duration::ZERO))?;
                if got == 0 && wait > 0 {
                    let now = self.clock.now_ns();
                    if next_due > now {
                        std::thread::sleep(Duration::from_nanos(next_due - now));
                    }
                }
            }
        }
    }

    /// Open loop: queues every message due at `now`. Returns whether any was.
    fn publish_due(&mut self, now: u64) -> bool {
        let Some(mut schedule) = self.schedule.take() else {
            return false;
        };
        let n_pubs = self.publishers.len() as u64;
        let mut any = false;
        while let Some((k, due)) = schedule.poll_due(now) {
            self.publish_one((k % n_pubs) as usize, due, now);
            any = true;
        }
        self.schedule = Some(schedule);
        any
    }

    /// Queues publisher `local`'s next message, stamped with `scheduled_ns` (queued at `now`).
    fn publish_one(&mut self, local: usize, scheduled_ns: u64, now: u64) {
        let ci = self.publishers[local];
        let conn = &mut self.conns[ci];
        let Role::Pub {
            id,
            ref subject,
            ref mut seq,
            ..
        } = conn.role
        else {
            return;
        };
        let this_seq = *seq;
        *seq = seq.wrapping_add(1);
        if conn.state != ConnState::Ready
            || conn.out.len() - conn.out_pos > MAX_PUBLISHER_BACKLOG_BYTES
        {
            self.counters.dropped += 1;
            return;
        }
        let stamp = Stamp {
            scheduled_ns,
            publisher: id,
            seq: this_seq,
        };
        stamp.write(&mut self.template);
        match self.cfg.protocol {
            Protocol::Nats => proto::encode_pub(&mut conn.out, subject, None, &self.template),
            Protocol::Redis => {
                resp::encode_command(&mut conn.out, &[b"PUBLISH", subject, &self.template])
            }
        }
        self.counters.sent_total += 1;
        self.counters.tick_sent += 1;
        if scheduled_ns >= self.times.measure_ns && scheduled_ns < self.times.end_ns {
            self.sent_in_window[local] += 1;
            self.lag_hist
                .saturating_record(now.saturating_sub(scheduled_ns));
        }
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(ci);
        }
    }

    /// Closed loop: every publisher sends while its window has room. Returns whether any
    /// publisher could still send more right now.
    fn publish_closed_loop(&mut self, now: u64) -> Result<bool, Error> {
        /// Unsent bytes past which a publisher waits for the socket instead of queueing more.
        const HIGH_WATER_BYTES: usize = 256 * 1024;
        let mut more = false;
        for local in 0..self.publishers.len() {
            let ci = self.publishers[local];
            let mut budget = 256;
            loop {
                let conn = &self.conns[ci];
                let Role::Pub { ref window, .. } = conn.role else {
                    break;
                };
                if conn.state != ConnState::Ready
                    || !window.has_room()
                    || conn.out.len() - conn.out_pos > HIGH_WATER_BYTES
                {
                    break;
                }
                if budget == 0 {
                    more = true;
                    break;
                }
                budget -= 1;
                self.publish_one(local, now, now);
                if let Role::Pub { ref mut window, .. } = self.conns[ci].role {
                    window.handle_sent(false);
                }
            }
        }
        Ok(more)
    }

    fn send_tick(&mut self, second: u64) {
        let hist = std::mem::replace(&mut self.tick_hist, new_histogram());
        let tick = Tick {
            second,
            sent: std::mem::take(&mut self.counters.tick_sent),
            delivered: std::mem::take(&mut self.counters.tick_delivered),
            hist,
        };
        let _ = self.tx.send(Report::Tick(Box::new(tick)));
    }

    /// Sends the per-second report when a second boundary has passed. Ticks continue while
    /// draining, so the progress lines show a backlog clearing.
    fn maybe_tick(&mut self) {
        let now = self.clock.now_ns();
        if self.next_tick_ns == 0 || now < self.next_tick_ns {
            return;
        }
        let second = (self.next_tick_ns - self.times.start_ns) / 1_000_000_000;
        self.next_tick_ns += 1_000_000_000;
        self.send_tick(second);
    }

    /// Receives until every expected delivery arrived, nothing arrived for a while, or the
    /// drain limit passed. Returns the seconds spent.
    fn drain(&mut self, sent: &Arc<Vec<u64>>, cmds: &flume::Receiver<Cmd>) -> Result<f64, Error> {
        let expected = self.expected(sent);
        let began = self.clock.now_ns();
        let limit = began + (self.cfg.drain * 1e9) as u64;
        let quiet = (DRAIN_QUIET_SECS * 1e9) as u64;
        self.counters.last_delivery_ns = self.counters.last_delivery_ns.max(began);
        loop {
            if self.counters.delivered_in_window >= expected {
                break;
            }
            let now = self.clock.now_ns();
            if now >= limit || now.saturating_sub(self.counters.last_delivery_ns) >= quiet {
                break;
            }
            if matches!(cmds.try_recv(), Ok(Cmd::Abort)) {
                break;
            }
            self.poll_once(Some(Duration::from_millis(5)))?;
            self.maybe_tick();
        }
        Ok((self.clock.now_ns() - began) as f64 / 1e9)
    }

    /// Deliveries this thread's subscribers should receive inside the window.
    fn expected(&self, sent: &[u64]) -> u64 {
        let rooms = self.cfg.rooms;
        let mut per_room = vec![0u64; rooms];
        for (p, n) in sent.iter().enumerate() {
            per_room[p % rooms] += n;
        }
        self.conns
            .iter()
            .map(|c| match c.role {
                Role::Sub { room, .. } => per_room[room],
                Role::Pub { .. } => 0,
            })
            .sum()
    }

    fn finish(&mut self, sent: &[u64], drain_secs: f64) -> ThreadResult {
        let rooms = self.cfg.rooms;
        let mut lost = 0;
        let mut pairs_n = 0;
        let mut pairs_with_loss = 0;
        let mut max_pair_loss = 0;
        for c in &self.conns {
            if let Role::Sub {
                room, ref pairs, ..
            } = c.role
            {
                for (i, pair) in pairs.iter().enumerate() {
                    let publisher = room + i * rooms;
                    let want = sent.get(publisher).copied().unwrap_or(0);
                    let missing = want.saturating_sub(pair.in_window);
                    pairs_n += 1;
                    lost += missing;
                    if missing > 0 {
                        pairs_with_loss += 1;
                        max_pair_loss = max_pair_loss.max(missing);
                    }
                }
            }
        }
        let c = std::mem::take(&mut self.counters);
        ThreadResult {
            hist: std::mem::replace(&mut self.hist, new_histogram()),
            lag_hist: std::mem::replace(&mut self.lag_hist, new_histogram()),
            delivered_in_window: c.delivered_in_window,
            delivered_total: c.delivered_total,
            bytes_in_window: c.bytes_in_window,
            expected_in_window: self.expected(sent),
            duplicates: c.duplicates,
            reordered: c.reordered,
            gaps: c.gaps,
            lost,
            pairs: pairs_n,
            pairs_with_loss,
            max_pair_loss,
            bad_payloads: c.bad_payloads,
            sub_disconnects: c.sub_disconnects,
            pub_disconnects: c.pub_disconnects,
            slow_consumer_errs: c.slow_consumer_errs,
            errors: c.errors,
            connections: self.conns.len(),
            drain_secs,
        }
    }

    fn flush_dirty(&mut self) -> Result<(), Error> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &ci in &dirty {
            self.conns[ci].dirty = false;
            self.flush(ci);
        }
        dirty.clear();
        // Keep the allocation for the next round.
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        Ok(())
    }

    fn flush(&mut self, ci: usize) {
        let conn = &mut self.conns[ci];
        if !conn.connected {
            return;
        }
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        while conn.out_pos < conn.out.len() {
            match stream.write(&conn.out[conn.out_pos..]) {
                Ok(0) => break,
                Ok(n) => conn.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let text = format!("write: {e}");
                    self.close(ci, text);
                    return;
                }
            }
        }
        if conn.out_pos == conn.out.len() {
            conn.out.clear();
            conn.out_pos = 0;
        } else if conn.out_pos > 1024 * 1024 {
            conn.out.drain(..conn.out_pos);
            conn.out_pos = 0;
        }
    }

    /// Polls once and handles every event; returns how many there were.
    fn poll_once(&mut self, timeout: Option<Duration>) -> Result<usize, Error> {
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e.into()),
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter().map(|e| {
            let readable = e.is_readable() || e.is_read_closed() || e.is_error();
            (e.token().0, readable, e.is_writable())
        }));
        let n = ready.len();
        for (i, &(ci, readable, writable)) in ready.iter().enumerate() {
            // A large batch of reads can take milliseconds: keep the open-loop schedule
            // (sending late would charge our own delay to the server).
            if i % EVENTS_PER_SCHEDULE_CHECK == EVENTS_PER_SCHEDULE_CHECK - 1 {
                if self.schedule.is_some() {
                    let now = self.clock.now_ns();
                    if now < self.times.end_ns && self.publish_due(now) {
                        self.flush_dirty()?;
                    }
                }
                self.maybe_tick();
            }
            if ci >= self.conns.len() || self.conns[ci].state == ConnState::Closed {
                continue;
            }
            if !self.conns[ci].connected && !self.check_connected(ci) {
                continue;
            }
            if readable {
                self.handle_readable(ci);
            }
            if writable || self.conns[ci].out.len() > self.conns[ci].out_pos {
                self.flush(ci);
            }
        }
        self.ready = ready;
        self.apply_acks();
        self.flush_dirty()?;
        Ok(n)
    }

    /// Closed loop: opens publishers' windows for what their own users received back.
    fn apply_acks(&mut self) {
        let threads = self.cfg.threads as u32;
        let thread = self.thread as u32;
        for (id, upto) in self.acks.drain(..) {
            // Publisher id = thread + j * threads (see the plan in `run`).
            let j = (id.wrapping_sub(thread) / threads.max(1)) as usize;
            let Some(&ci) = self.publishers.get(j) else {
                continue;
            };
            if let Role::Pub { ref mut window, .. } = self.conns[ci].role {
                window.handle_ack_upto(u64::from(upto));
            }
        }
    }

    /// Completes a non-blocking connect; returns whether the connection is now usable.
    fn check_connected(&mut self, ci: usize) -> bool {
        let conn = &mut self.conns[ci];
        let Some(stream) = conn.stream.as_ref() else {
            return false;
        };
        if let Ok(Some(e)) | Err(e) = stream.take_error() {
            let text = format!("connect to {}: {e}", self.cfg.addr);
            self.close(ci, text);
            return false;
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return false,
            Err(e) => {
                let text = format!("connect to {}: {e}", self.cfg.addr);
                self.close(ci, text);
                return false;
            }
        }
        let _ = stream.set_nodelay(true);
        conn.connected = true;
        match self.cfg.protocol {
            // Redis speaks only when spoken to: open with the confirming command.
            Protocol::Redis => match conn.role {
                Role::Sub { room, .. } => {
                    let channel = room_subject(room);
                    resp::encode_command(&mut conn.out, &[b"SUBSCRIBE", channel.as_bytes()]);
                }
                Role::Pub { .. } => resp::encode_command(&mut conn.out, &[b"PING"]),
            },
            // NATS: speak first too, rather than wait for INFO (nothing sent depends on it).
            // A connect that overflowed the server's listen queue can look established to
            // us while the server holds nothing (a SYN cookie whose ACK was dropped): a
            // client waiting for INFO would wait forever, but bytes sent now are
            // retransmitted until the server accepts the connection.
            Protocol::Nats => conn.greet(self.cfg.chat),
        }
        true
    }

    fn handle_readable(&mut self, ci: usize) {
        loop {
            let Some(stream) = self.conns[ci].stream.as_mut() else {
                return;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.close(ci, "closed by the server".to_string());
                    return;
                }
                Ok(n) => {
                    let now = self.clock.now_ns();
                    if let Err(text) = self.handle_bytes(ci, n, now) {
                        self.close(ci, text);
                        return;
                    }
                    if n < self.scratch.len() {
                        // A short read means the socket is (very likely) drained; one more
                        // read would only return WouldBlock.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.close(ci, format!("read: {e}"));
                    return;
                }
            }
        }
    }

    /// Parses the `n` bytes just read into `scratch` (after any partial frame kept from the
    /// previous read).
    fn handle_bytes(&mut self, ci: usize, n: usize, now: u64) -> Result<(), String> {
        let Worker {
            conns,
            scratch,
            counters,
            hist,
            tick_hist,
            times,
            cfg,
            dirty,
            acks,
            ..
        } = self;
        let conn = &mut conns[ci];
        let mut partial = std::mem::take(&mut conn.partial);
        let used_partial = !partial.is_empty();
        if used_partial {
            partial.extend_from_slice(&scratch[..n]);
        }
        let buf: &[u8] = if used_partial {
            &partial
        } else {
            &scratch[..n]
        };
        let mut ctx = Ctx {
            counters,
            hist,
            tick_hist,
            times: *times,
            rooms: cfg.rooms,
            chat: cfg.chat,
            now,
            acks: cfg.max.then_some(acks),
        };
        let mut at = 0;
        let result = loop {
            let rest = &buf[at..];
            if rest.is_empty() {
                break Ok(());
            }
            let step = match cfg.protocol {
                Protocol::Nats => conn.handle_nats(rest, &mut ctx),
                Protocol::Redis => conn.handle_redis(rest, &mut ctx),
            };
            match step {
                Ok(Some(used)) => at += used,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let leftover = buf.len() - at;
        if leftover > MAX_PARTIAL_FRAME_BYTES {
            return Err(format!(
                "a frame larger than {MAX_PARTIAL_FRAME_BYTES} bytes"
            ));
        }
        // Only a frame split across reads is copied; the partial buffer keeps its capacity.
        if used_partial {
            partial.drain(..at);
            conn.partial = partial;
        } else if leftover > 0 {
            partial.extend_from_slice(&scratch[at..n]);
            conn.partial = partial;
        } else {
            conn.partial = partial;
        }
        if conn.out.len() > conn.out_pos && !conn.dirty {
            conn.dirty = true;
            dirty.push(ci);
        }
        result
    }

    fn close(&mut self, ci: usize, why: String) {
        let conn = &mut self.conns[ci];
        if conn.state == ConnState::Closed {
            return;
        }
        let was_ready = conn.state == ConnState::Ready;
        conn.state = ConnState::Closed;
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        if was_ready {
            match conn.role {
                Role::Sub { .. } => self.counters.sub_disconnects += 1,
                Role::Pub { .. } => self.counters.pub_disconnects += 1,
            }
        }
        self.counters.note_error(why);
    }
}

/// What frame handlers need besides their connection.
struct Ctx<'a> {
    counters: &'a mut Counters,
    hist: &'a mut Histogram<u64>,
    tick_hist: &'a mut Histogram<u64>,
    times: Times,
    rooms: usize,
    /// Rooms of the chat layer (`--chat`).
    chat: bool,
    now: u64,
    /// Closed loop only: where a publisher's own user notes what it received back.
    acks: Option<&'a mut Vec<(u32, u32)>>,
}

impl Conn {
    fn new(protocol: Protocol, role: Role) -> Conn {
        Conn {
            stream: None,
            role,
            state: ConnState::Idle,
            connected: false,
            parser: (protocol == Protocol::Nats)
                .then(|| Parser::new(Side::Client, ParserLimits::default())),
            partial: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            dirty: false,
            info_seen: false,
            joining: false,
        }
    }

    /// Handles one NATS op from the front of `buf`: bytes used, or `None` if incomplete.
    fn handle_nats(&mut self, buf: &[u8], ctx: &mut Ctx<'_>) -> Result<Option<usize>, String> {
        let Some(parser) = self.parser.as_mut() else {
            return Err("no parser".to_string());
        };
        let (op, used) = match parser.parse(buf) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("protocol error from the server: {e}")),
        };
        match op {
            Op::Info(_) => self.info_seen = true,
            Op::Ping => proto::encode_pong(&mut self.out),
            Op::Pong if self.state == ConnState::Handshake => self.state = ConnState::Ready,
            Op::Msg(m) if ctx.chat => {
                if m.sid == chat::ROOM_SID {
                    // A room message through the chat layer carries the server's stamps; one
                    // without them did not go through it.
                    if m.headers.is_none() {
                        ctx.counters.bad_payloads += 1;
                        return Ok(Some(used));
                    }
                    self.handle_payload(m.payload, ctx);
                } else if m.sid == chat::INBOX_SID && self.joining {
                    self.handle_join_reply(m.payload)?;
                }
            }
            Op::Msg(m) => self.handle_payload(m.payload, ctx),
            Op::Err(text) => {
                let text = String::from_utf8_lossy(text).to_string();
                if text.to_ascii_lowercase().contains("slow consumer") {
                    ctx.counters.slow_consumer_errs += 1;
                }
                ctx.counters.note_error(format!("-ERR {text}"));
                if self.state == ConnState::Handshake {
                    return Err(format!("server refused the handshake: -ERR {text}"));
                }
            }
            _ => {}
        }
        Ok(Some(used))
    }

    /// NATS: opens the session: CONNECT, a subscriber's SUB, and PING to confirm (chat:
    /// see [`Conn::greet_chat`]).
    fn greet(&mut self, chat: bool) {
        if chat {
            self.greet_chat();
            return;
        }
        let connect = proto::Connect {
            verbose: false,
            pedantic: false,
            echo: true,
            name: Some("loadgen".to_string()),
            lang: Some("rust".to_string()),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            protocol: 1,
            ..proto::Connect::default()
        };
        proto::encode_connect(&mut self.out, &connect);
        if let Role::Sub { room, .. } = self.role {
            proto::encode_sub(&mut self.out, room_subject(room).as_bytes(), None, b"1");
        }
        proto::encode_ping(&mut self.out);
    }

    /// Chat: CONNECT as this connection's user; a subscriber also subscribes to its inbox
    /// and its room and asks to join the room (confirmed once the join is answered), a
    /// publisher confirms at once.
    fn greet_chat(&mut self) {
        match self.role {
            Role::Sub { user, room, .. } => {
                let inbox = chat::inbox(user);
                proto::encode_connect(&mut self.out, &chat::connect(user));
                proto::encode_sub(&mut self.out, inbox.as_bytes(), None, chat::INBOX_SID);
                let subject = chat::room_subject(room);
                proto::encode_sub(&mut self.out, subject.as_bytes(), None, chat::ROOM_SID);
                proto::encode_pub(
                    &mut self.out,
                    chat::JOIN_SUBJECT,
                    Some(inbox.as_bytes()),
                    &chat::request_body(room),
                );
                self.joining = true;
            }
            Role::Pub { id, .. } => {
                // The same user as the publishing user's subscriber: a member once that
                // session has joined, which every thread confirms before publishing starts.
                proto::encode_connect(&mut self.out, &chat::connect(id));
                proto::encode_ping(&mut self.out);
            }
        }
    }

    /// Chat: the answer to this subscriber's `room.join`. On success the subscription is
    /// confirmed with `PING`; a refusal fails the connection, and with it the run.
    fn handle_join_reply(&mut self, body: &[u8]) -> Result<(), String> {
        let Role::Sub { user, room, .. } = self.role else {
            return Ok(());
        };
        self.joining = false;
        match chat::check_reply(body, room) {
            Ok(()) => {
                proto::encode_ping(&mut self.out);
                Ok(())
            }
            Err(e) => Err(format!(
                "joining room {} as {} was refused: {e}",
                chat::room_name(room),
                chat::user_name(user)
            )),
        }
    }

    /// Handles one RESP frame from the front of `buf`.
    fn handle_redis(&mut self, buf: &[u8], ctx: &mut Ctx<'_>) -> Result<Option<usize>, String> {
        let (frame, used) = match resp::parse(buf) {
            Ok(Some(x)) => x,
            Ok(None) => return Ok(None),
            Err(e) => return Err(format!("RESP error from the server: {e}")),
        };
        match frame {
            resp::Frame::Array { .. } => {
                let items = frame.items();
                let kind = match items.first() {
                    Some(resp::Item::Bulk(Some(k))) => *k,
                    _ => &b""[..],
                };
                match (kind, items.get(2)) {
                    (b"message", Some(resp::Item::Bulk(Some(payload)))) => {
                        self.handle_payload(payload, ctx)
                    }
                    (b"subscribe", _) if self.state == ConnState::Handshake => {
                        self.state = ConnState::Ready;
                    }
                    _ => {}
                }
            }
            resp::Frame::Item(resp::Item::Simple(s)) => {
                if self.state == ConnState::Handshake && s.eq_ignore_ascii_case(b"PONG") {
                    self.state = ConnState::Ready;
                }
            }
            // PUBLISH replies (receiver counts): the window is acknowledged by receipt instead.
            resp::Frame::Item(resp::Item::Integer(_)) => {}
            resp::Frame::Item(resp::Item::Error(text)) => {
                let text = String::from_utf8_lossy(text).to_string();
                ctx.counters.note_error(format!("-{text}"));
                if self.state == ConnState::Handshake {
                    return Err(format!("server refused the handshake: -{text}"));
                }
            }
            resp::Frame::Item(resp::Item::Bulk(_)) => {}
        }
        Ok(Some(used))
    }

    /// Accounts one delivered payload.
    fn handle_payload(&mut self, payload: &[u8], ctx: &mut Ctx<'_>) {
        let Role::Sub {
            ref mut pairs,
            user,
            ..
        } = self.role
        else {
            ctx.counters.bad_payloads += 1;
            return;
        };
        let Some(stamp) = Stamp::parse(payload) else {
            ctx.counters.bad_payloads += 1;
            return;
        };
        let Some(pair) = pairs.get_mut(stamp.publisher as usize / ctx.rooms.max(1)) else {
            ctx.counters.bad_payloads += 1;
            return;
        };
        let c = &mut *ctx.counters;
        match pair.seq.handle(stamp.seq) {
            Arrival::Duplicate => {
                c.duplicates += 1;
                return;
            }
            Arrival::Late => c.reordered += 1,
            Arrival::Gap(n) => c.gaps += u64::from(n),
            Arrival::InOrder => {}
        }
        if stamp.publisher == user {
            if let Some(acks) = ctx.acks.as_deref_mut() {
                acks.push((user, stamp.seq.wrapping_add(1)));
            }
        }
        let latency = ctx.now.saturating_sub(stamp.scheduled_ns);
        c.delivered_total += 1;
        c.tick_delivered += 1;
        c.last_delivery_ns = ctx.now;
        ctx.tick_hist.saturating_record(latency);
        if stamp.scheduled_ns >= ctx.times.measure_ns && stamp.scheduled_ns < ctx.times.end_ns {
            pair.in_window += 1;
            c.delivered_in_window += 1;
            c.bytes_in_window += payload.len() as u64;
            ctx.hist.saturating_record(latency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a [`Ctx`] borrows, owned by a test.
    struct Sinks {
        counters: Counters,
        hist: Histogram<u64>,
        tick_hist: Histogram<u64>,
    }

    impl Default for Sinks {
        fn default() -> Sinks {
            Sinks {
                counters: Counters::default(),
                hist: new_histogram(),
                tick_hist: new_histogram(),
            }
        }
    }

    impl Sinks {
        /// A chat-mode context over `rooms` rooms, at `now` within `times`.
        fn chat_ctx(&mut self, rooms: usize, times: Times, now: u64) -> Ctx<'_> {
            Ctx {
                counters: &mut self.counters,
                hist: &mut self.hist,
                tick_hist: &mut self.tick_hist,
                times,
                rooms,
                chat: true,
                now,
                acks: None,
            }
        }
    }

    /// Feeds `input` to `conn` as the server's bytes; returns the ops it queued in reply
    /// (as the server would parse them) and clears its outbound buffer.
    fn feed(conn: &mut Conn, ctx: &mut Ctx<'_>, input: &[u8]) -> Result<Vec<String>, String> {
        let mut at = 0;
        while at < input.len() {
            match conn.handle_nats(&input[at..], ctx)? {
                Some(used) => at += used,
                None => return Err("incomplete input".to_string()),
            }
        }
        let out = std::mem::take(&mut conn.out);
        let mut parser = Parser::new(Side::Server, ParserLimits::default());
        let mut ops = Vec::new();
        let mut at = 0;
        while let Ok(Some((op, used))) = parser.parse(&out[at..]) {
            ops.push(match op {
                Op::Connect(json) => format!("CONNECT {}", String::from_utf8_lossy(json)),
                Op::Sub(s) => format!(
                    "SUB {} {}",
                    String::from_utf8_lossy(s.subject),
                    String::from_utf8_lossy(s.sid)
                ),
                Op::Pub(p) => format!(
                    "PUB {} {:?} {}",
                    String::from_utf8_lossy(p.subject),
                    p.reply.map(|r| String::from_utf8_lossy(r).into_owned()),
                    String::from_utf8_lossy(p.payload)
                ),
                other => format!("{other:?}"),
            });
            at += used;
        }
        assert_eq!(at, out.len(), "every queued byte is a whole frame");
        Ok(ops)
    }

    fn stamped(publisher: u32, seq: u32) -> Vec<u8> {
        let mut payload = vec![b'x'; 32];
        Stamp {
            scheduled_ns: 5,
            publisher,
            seq,
        }
        .write(&mut payload);
        payload
    }

    #[test]
    fn chat_subscriber_joins_before_confirming_and_counts_hmsg() {
        let mut sinks = Sinks::default();
        let mut ctx = sinks.chat_ctx(
            2,
            Times {
                start_ns: 0,
                measure_ns: 0,
                end_ns: 1_000,
            },
            10,
        );
        // User 3 is in room 1, with the room's two publishers 1 and 3.
        let pairs = vec![Pair::default(), Pair::default()];
        let role = Role::Sub {
            user: 3,
            room: 1,
            pairs,
        };
        let mut conn = Conn::new(Protocol::Nats, role);
        conn.state = ConnState::Handshake;

        conn.greet(true);
        let ops = feed(&mut conn, &mut ctx, b"INFO {\"server_id\":\"x\"}\r\n").unwrap();
        assert!(conn.info_seen);
        assert_eq!(ops.len(), 4, "{ops:?}");
        assert!(ops[0].contains(r#""user":"u3""#), "{ops:?}");
        assert!(ops[0].contains(r#""headers":true"#), "{ops:?}");
        assert_eq!(ops[1], "SUB _INBOX.loadgen.u3 2");
        assert_eq!(ops[2], "SUB $CHAT.MSG.lg1 1");
        assert_eq!(
            ops[3],
            r#"PUB $CHAT.API.room.join Some("_INBOX.loadgen.u3") {"room":"lg1"}"#
        );
        assert!(conn.joining);

        // The join's answer: confirmed with PING, then PONG makes the connection ready.
        let reply = br#"{"room":"lg1","seq":0,"members":2}"#;
        let mut frame = Vec::new();
        proto::encode_msg(&mut frame, b"_INBOX.loadgen.u3", b"2", None, reply);
        let ops = feed(&mut conn, &mut ctx, &frame).unwrap();
        assert_eq!(ops, ["Ping"]);
        assert!(!conn.joining);
        assert_eq!(conn.state, ConnState::Handshake);
        feed(&mut conn, &mut ctx, b"PONG\r\n").unwrap();
        assert_eq!(conn.state, ConnState::Ready);

        // A stamped HMSG from publisher 3 counts; the same payload without headers did not
        // go through the chat layer.
        let headers = b"NATS/1.0\r\nChat-From: u3\r\nChat-Seq: 1\r\nChat-Time: 1\r\n\r\n";
        let mut frame = Vec::new();
        proto::encode_hmsg(
            &mut frame,
            b"$CHAT.MSG.lg1",
            b"1",
            None,
            headers,
            &stamped(3, 0),
        );
        proto::encode_msg(&mut frame, b"$CHAT.MSG.lg1", b"1", None, &stamped(3, 1));
        feed(&mut conn, &mut ctx, &frame).unwrap();
        assert_eq!(ctx.counters.delivered_in_window, 1);
        assert_eq!(ctx.counters.bad_payloads, 1);
    }

    #[test]
    fn chat_join_refusal_fails_the_connection() {
        let mut sinks = Sinks::default();
        let mut ctx = sinks.chat_ctx(1, Times::default(), 0);
        let role = Role::Sub {
            user: 0,
            room: 0,
            pairs: vec![Pair::default()],
        };
        let mut conn = Conn::new(Protocol::Nats, role);
        conn.state = ConnState::Handshake;
        conn.greet(true);
        feed(&mut conn, &mut ctx, b"INFO {}\r\n").unwrap();
        let reply = br#"{"error":{"code":403,"description":"room lg0 is private"}}"#;
        let mut frame = Vec::new();
        proto::encode_msg(&mut frame, b"_INBOX.loadgen.u0", b"2", None, reply);
        let err = feed(&mut conn, &mut ctx, &frame).unwrap_err();
        assert_eq!(
            err,
            "joining room lg0 as u0 was refused: 403 room lg0 is private"
        );
    }

    #[test]
    fn chat_publisher_is_its_user_and_confirms_at_once() {
        let mut sinks = Sinks::default();
        let mut ctx = sinks.chat_ctx(1, Times::default(), 0);
        let role = Role::Pub {
            id: 7,
            subject: chat::room_subject(0).into_bytes(),
            window: Window::new(1),
            seq: 0,
        };
        let mut conn = Conn::new(Protocol::Nats, role);
        conn.state = ConnState::Handshake;
        conn.greet(true);
        let ops = feed(&mut conn, &mut ctx, b"INFO {}\r\n").unwrap();
        assert_eq!(ops.len(), 2, "{ops:?}");
        assert!(ops[0].contains(r#""user":"u7""#), "{ops:?}");
        assert_eq!(ops[1], "Ping");
    }
}
