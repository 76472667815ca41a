//! One worker thread: a mio `Poll` loop that owns a set of connections and a shard of chat
//! conversations, and talks to the other workers only through SPSC rings.
//!
//! One loop iteration: drain the inbound rings (deliveries, chat requests and answers);
//! adopt handed-over connections; read and parse every readable connection (each publish is
//! matched here and fanned out at once by [`fanout`]: local subscribers written, one envelope
//! per set for each other worker); commit the rings and ring the doorbells of parked peers;
//! flush every connection that got data, once, with vectored writes; then park in `poll` if
//! there is nothing left to do.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Poll, Token, Waker};
use net::outbound::{ChunkPool, Flushed};
use net::proto;

use crate::chat::shard::{Effect, Shard, ShardLimits};
use crate::config::Config;
use crate::counters::{Counter, Counters};
use crate::envelope::{Admit, Envelope, Msg, MsgView, SubRef};
use crate::limits;
use crate::park::Doorbell;
use crate::ring::{Consumer, Producer};
use crate::router::Router;
use crate::sublist::{Change, Placed, SubSet, Sublist};
use crate::uring::{Send, SendRing};

mod chat;
mod conn;
mod fanout;
mod info;
pub(crate) mod js;
mod js_log;
mod jsc;
pub(crate) mod lame_duck;
mod links;
mod session;
mod sids;
mod stall;

use conn::{CloseReason, Slab};
use links::Links;

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// The header block of a no-responders status message.
const NO_RESPONDERS_HDR: &[u8] = b"NATS/1.0 503\r\n\r\n";

/// State every worker shares, read-mostly.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Config,
    pub sublist: Sublist<SubRef>,
    pub doorbells: Vec<Doorbell>,
    pub wakers: Vec<Waker>,
    pub counters: Vec<CachePadded<Counters>>,
    /// `consumed[from * workers + to]`: message bytes worker `to` has taken off the ring
    /// from `from`. Written only by `to`; read by `from` for the ring's byte budget.
    pub consumed: Vec<CachePadded<AtomicU64>>,
    pub handoff: Vec<flume::Sender<TcpStream>>,
    pub shutdown: AtomicBool,
    pub server_id: String,
    pub addr: SocketAddr,
    /// Next `client_id` (touched once per accept, not per message).
    pub next_client_id: AtomicU64,
    /// Open connections, for the `max_connections` cap (touched per accept/close only).
    pub open: AtomicUsize,
    /// Lame-duck mode's request and progress (see `lame_duck`).
    pub lame_duck: lame_duck::LameDuck,
    /// Some JetStream push consumer waits for a subscriber to its deliver subject: a worker
    /// that adds subscriptions tells the JetStream owner (`Envelope::Interest`). Relaxed: a
    /// hint, set and cleared by the owner only; a stale "no" costs one tick of delay, a
    /// stale "yes" one needless envelope.
    pub js_waiting_interest: AtomicBool,
}

impl Shared {
    /// Asks every worker to stop.
    pub fn stop(&self) {
        // Release pairs with the Acquire load at the top of each worker's loop iteration.
        self.shutdown.store(true, Ordering::Release);
        for w in &self.wakers {
            let _ = w.wake();
        }
    }
}

/// One worker: everything its thread owns.
pub(crate) struct Worker {
    id: usize,
    poll: Poll,
    shared: Arc<Shared>,
    listener: Option<TcpListener>,
    next_assign: usize,
    handoff: flume::Receiver<TcpStream>,
    /// The rings to and from every other worker.
    links: Links,
    /// Who owns each conversation.
    router: Router,
    /// Subscriptions inserted since the last `apply_retiring`: removals keep at least that
    /// pace, so churn (subscribe, close, again) cannot grow the backlog without bound.
    inserted: usize,
    /// Subscriptions of closed connections still to be taken out of the index, one
    /// connection's at a time.
    retiring: VecDeque<sids::SidsIntoValues>,
    /// Slots of stalled connections, each listed once (checked against the write deadline).
    stalled: Vec<usize>,
    /// The time at the top of this loop iteration.
    now: Instant,
    clients: Slab,
    rbuf: Vec<u8>,
    pool: ChunkPool,
    /// io_uring send path: the ring, and the batch handed to it (reused).
    send_ring: Option<SendRing>,
    send_batch: Vec<Send>,
    dirty: Vec<usize>,
    closing: Vec<usize>,
    deferred: VecDeque<usize>,
    scratch: Vec<Arc<SubSet<SubRef>>>,
    /// The frame of the message being delivered to a set (reused).
    template: proto::MsgTemplate,
    /// SUBs parsed but not yet in the index: applied as one batch before the client's next
    /// other op and at the end of its read, so a SUB flood rebuilds each set once.
    pending_subs: Vec<Change<SubRef>>,
    /// The rooms and direct conversations this worker owns.
    chat: Shard,
    /// Effects of the chat operation being applied (reused).
    effects: Vec<Effect>,
    /// Chat requests waiting for several workers' answers, by id.
    gathers: HashMap<u64, chat::Gather>,
    next_gather: u64,
    rng: u64,
    tick: Duration,
    next_tick: Instant,
    last_accept_warning: Option<Instant>,
    /// This worker's lame-duck schedule, once lame-duck mode has started here.
    lame_duck: Option<lame_duck::Drain>,
    /// JetStream's streams, on their owner.
    js: Option<Box<js::JetStream>>,
}

/// The worker as the fan-out core sees it.
impl fanout::Sink for Worker {
    fn worker(&self) -> usize {
        self.id
    }

    fn matches(&self, subject: &[u8], out: &mut Vec<fanout::Set>) {
        self.shared.sublist.matches(subject, out);
    }

    fn deliver(&mut self, sub: &SubRef, view: &MsgView<'_>, check_echo: bool) -> bool {
        Worker::deliver(self, sub, view, check_echo, None)
    }

    fn deliver_plain(&mut self, set: &SubSet<SubRef>, view: &MsgView<'_>) {
        // One frame for the whole set when it has several subscribers (only the sid differs
        // between their copies); a lone subscriber is encoded directly, since preparing the
        // template would be one more copy of the message.
        let mut template = std::mem::take(&mut self.template);
        let framed = set.plain.len() > 1
            && template.prepare(view.subject, view.reply, view.headers, view.payload);
        let frame = framed.then_some(&template);
        let me = self.id;
        for sub in set.plain.iter().filter(|s| s.worker() == me) {
            Worker::deliver(self, sub, view, true, frame);
        }
        self.template = template;
    }

    fn send(&mut self, to: usize, env: Envelope) {
        Worker::send(self, to, env);
    }

    fn send_deliver(
        &mut self,
        to: usize,
        set: &fanout::Set,
        view: &MsgView<'_>,
        owned: &mut Option<Msg>,
    ) {
        if owned.is_none() && Msg::encoded_len(view) <= limits::BATCH_MSG_MAX_BYTES {
            self.links.send_batched(to, set, view);
        } else {
            let msg = fanout::shared(owned, view);
            self.links.send(
                to,
                Envelope::Deliver {
                    msg,
                    set: set.clone(),
                },
            );
        }
    }

    fn no_responders(&mut self, request: &MsgView<'_>) {
        self.no_responders_here(request);
    }

    fn random(&mut self) -> u64 {
        self.next_random()
    }
}

/// The parts of a worker built on the spawning thread, before it moves to its own.
pub(crate) struct Parts {
    pub id: usize,
    pub poll: Poll,
    pub listener: Option<TcpListener>,
    pub handoff: flume::Receiver<TcpStream>,
    pub inbound: Vec<Consumer<Envelope>>,
    pub inbound_from: Vec<usize>,
    pub producers: Vec<Option<Producer<Envelope>>>,
    /// The io_uring send ring, when the send path is io_uring.
    pub send_ring: Option<SendRing>,
    /// JetStream, on its owner when it is on.
    pub jetstream: Option<Box<js::JetStream>>,
}

impl Worker {
    pub(crate) fn new(parts: Parts, shared: Arc<Shared>) -> Worker {
        let workers = shared.config.workers;
        let c = &shared.config;
        let mut tick = (c.ping_interval / 2).min(Duration::from_millis(250));
        if c.auth.required() {
            tick = tick.min(c.auth_timeout / 4);
        }
        let tick = tick.max(Duration::from_millis(5));
        Worker {
            id: parts.id,
            poll: parts.poll,
            listener: parts.listener,
            next_assign: 0,
            handoff: parts.handoff,
            router: Router::new(workers),
            inserted: 0,
            retiring: VecDeque::new(),
            stalled: Vec::new(),
            now: Instant::now(),
            links: Links::new(
                parts.id,
                Arc::clone(&shared),
                parts.inbound,
                parts.inbound_from,
                parts.producers,
            ),
            clients: Slab {
                slots: Vec::new(),
                free: Vec::new(),
            },
            rbuf: vec![0; limits::READ_BUFFER_BYTES],
            pool: ChunkPool::new(limits::OUTBOUND_CHUNK_BYTES, limits::OUTBOUND_POOL_CHUNKS),
            send_ring: parts.send_ring,
            send_batch: Vec::new(),
            dirty: Vec::new(),
            closing: Vec::new(),
            deferred: VecDeque::new(),
            scratch: Vec::with_capacity(64),
            template: proto::MsgTemplate::default(),
            pending_subs: Vec::new(),
            chat: Shard::new(ShardLimits {
                history: c.history,
                history_bytes: (c.history_bytes / workers) as u64,
                rooms: limits::MAX_ROOMS.div_ceil(workers),
                dms: limits::MAX_DM_CONVERSATIONS.div_ceil(workers),
                page_bytes: c.max_payload,
                rooms_per_user: limits::MAX_ROOMS_PER_USER.div_ceil(workers) as u32,
                dms_per_user: limits::MAX_DMS_PER_USER.div_ceil(workers) as u32,
                memberships: limits::MAX_MEMBERSHIPS.div_ceil(workers),
            }),
            effects: Vec::new(),
            gathers: HashMap::new(),
            next_gather: 0,
            rng: 0x9E37_79B9_7F4A_7C15 ^ (parts.id as u64 + 1),
            tick,
            next_tick: Instant::now() + tick,
            last_accept_warning: None,
            lame_duck: None,
            js: parts.jetstream,
            shared,
        }
    }

    fn counters(&self) -> &Counters {
        &self.shared.counters[self.id]
    }

    /// Runs the loop until shutdown.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            // Acquire pairs with the Release store in `Shared::stop`.
            if self.shared.shutdown.load(Ordering::Acquire) {
                return self.finish();
            }
            self.now = Instant::now();
            self.drain_inbound();
            self.adopt_handoffs();
            self.links.retry_overflow();
            self.apply_retiring();
            self.read_deferred();
            self.end_of_batch();
            if !self.stalled.is_empty() {
                self.check_write_deadlines();
                self.end_of_batch();
            }
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + self.tick;
                self.on_tick(now);
                self.end_of_batch();
            }
            if self.run_js_timers() {
                self.end_of_batch();
            }
            self.poll_lame_duck(now);
            let timeout = if self.busy() {
                Some(Duration::ZERO)
            } else {
                self.shared.doorbells[self.id].prepare_park();
                if self.busy() || !self.handoff.is_empty() {
                    self.shared.doorbells[self.id].cancel_park();
                    Some(Duration::ZERO)
                } else if self.links.overflowing() {
                    // Waiting for a peer to drain a full ring: nap, but stay wakeable.
                    Some(limits::OVERFLOW_NAP)
                } else if !self.stalled.is_empty() {
                    // A stalled connection's write deadline is checked this often.
                    Some(
                        self.park_until()
                            .saturating_duration_since(now)
                            .min(limits::STALL_CHECK_INTERVAL),
                    )
                } else {
                    Some(self.park_until().saturating_duration_since(now))
                }
            };
            let polled = self.poll.poll(&mut events, timeout);
            self.shared.doorbells[self.id].cancel_park();
            match polled {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(t) => {
                        let slot = t - FIRST_CONN;
                        if ev.is_writable() {
                            if let Some(c) = self.clients.at(slot) {
                                c.write_blocked = false;
                                self.mark_dirty(slot);
                            }
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.handle_readable(slot);
                        }
                    }
                }
            }
            self.end_of_batch();
        }
    }

    /// Whether there is work that must not wait for an event: inbound envelopes, or reads
    /// that were deferred and may go ahead (not while a ring is overflowing).
    fn busy(&mut self) -> bool {
        (!self.deferred.is_empty() && !self.links.overflowing())
            || self.links.has_inbound()
            || !self.retiring.is_empty()
    }

    /// Flushes, closes what must close, and publishes ring pushes.
    fn end_of_batch(&mut self) {
        self.flush_js_answers();
        self.commit();
        self.flush_dirty();
        self.reap();
        self.commit();
    }

    fn drain_inbound(&mut self) {
        let mut inbound = self.links.take_inbound();
        for (i, consumer) in inbound.iter_mut().enumerate() {
            let mut bytes = 0;
            consumer.pop_batch(limits::RING_CAPACITY_ITEMS, |env| {
                bytes += env.weight();
                self.handle_envelope(env);
            });
            self.links.consumed(i, bytes);
        }
        self.links.return_inbound(inbound);
    }

    fn handle_envelope(&mut self, env: Envelope) {
        match env {
            Envelope::Deliver { msg, set } => {
                for view in msg.views() {
                    fanout::deliver_set(self, &set, &view);
                }
            }
            Envelope::DeliverOne { msg, sub, tries } => {
                fanout::deliver_one(self, &sub, &msg, tries)
            }
            Envelope::Barrier(conn) => {
                self.send(usize::from(conn.worker), Envelope::BarrierAck(conn))
            }
            Envelope::BarrierAck(conn) => self.barrier_acked(conn),
            Envelope::Throttle(conn) => self.handle_throttle(conn),
            Envelope::Unthrottle(conn) => self.handle_unthrottle(conn),
            Envelope::Chat(c) => self.handle_chat_envelope(*c),
            Envelope::Interest => self.tick_consumers(),
        }
        // Before the next envelope (a barrier among them): a JetStream answer goes out
        // ahead of the PONG of a PING sent after its request.
        self.flush_js_answers();
    }

    /// Queues `env` for worker `to`: on its ring, or behind earlier overflow.
    fn send(&mut self, to: usize, env: Envelope) {
        self.links.send(to, env);
    }

    fn commit(&mut self) {
        self.links.commit();
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64: fast, no state shared between workers; only used to spread queue picks.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Writes one MSG/HMSG for `sub` (a subscription of a client on this worker).
    /// Returns false when the subscription is gone (its connection closed or closing, or the
    /// subscription ended), so a queue message can be offered to another member; true when
    /// the message was written or deliberately not (echo).
    /// `frame`, when given, is `view` prepared as a template (with its headers, if any).
    fn deliver(
        &mut self,
        sub: &SubRef,
        view: &MsgView<'_>,
        check_echo: bool,
        frame: Option<&proto::MsgTemplate>,
    ) -> bool {
        let st = &*sub.0;
        if st.conn.is_internal() {
            return self.deliver_internal(sub, view);
        }
        let Some(c) = self.clients.get_mut(st.conn) else {
            return false;
        };
        if c.close.is_some() {
            return false;
        }
        if check_echo && !c.opts.echo && view.origin.conn == st.conn {
            return true;
        }
        let admit = st.admit();
        if admit == Admit::Drop {
            return false;
        }
        {
            let mut w = c.out.writer(&mut self.pool);
            // The template holds the headers, if any; a client that did not ask for headers
            // gets the plain MSG below.
            match (frame, view.headers) {
                (Some(t), None) => t.put(&mut w, &st.sid),
                (Some(t), Some(_)) if c.opts.headers => t.put(&mut w, &st.sid),
                (_, Some(h)) if c.opts.headers => {
                    proto::encode_hmsg(&mut w, view.subject, &st.sid, view.reply, h, view.payload)
                }
                _ => proto::encode_msg(&mut w, view.subject, &st.sid, view.reply, view.payload),
            }
        }
        let slot = st.conn.slot as usize;
        let counters = &self.shared.counters[self.id];
        counters.add(Counter::OutMsgs, 1);
        counters.add(Counter::OutBytes, view.payload.len() as u64);
        if admit == Admit::DeliverLast {
            let sid = st.sid.clone();
            self.end_subscription(slot, &sid);
        }
        // The stall check looks the client up again only past its mark.
        if self.queued(slot) > self.shared.config.max_pending / limits::STALL_DIVISOR {
            self.check_stall(slot, view.origin.conn);
        }
        true
    }

    /// Called after bytes were queued for a client: marks it for the end-of-batch flush, or,
    /// past `max_pending`, writes now and closes it as a slow consumer if the socket will not
    /// take the excess. Every path that queues bytes (deliveries and the server's own replies)
    /// goes through here, so no client can grow its queue past the cap. Returns the bytes
    /// still pending for it (0 once it is closing).
    fn queued(&mut self, slot: usize) -> usize {
        let max_pending = self.shared.config.max_pending;
        let Some(c) = self.clients.at(slot) else {
            return 0;
        };
        let pending = c.out.pending_bytes();
        if pending <= max_pending {
            self.mark_dirty(slot);
            return pending;
        }
        // The cap is on what the socket will not take, not on what this batch has not
        // flushed yet: write now (even if the last write would have blocked: the reader may
        // have drained since), and judge by what is left.
        let before = pending;
        match c.transport.flush(&mut c.out, &mut self.pool) {
            Ok(Flushed::All) => c.write_blocked = false,
            Ok(Flushed::Blocked) => {
                c.write_blocked = true;
                if c.out.pending_bytes() > max_pending {
                    self.fail(slot, CloseReason::SlowConsumer);
                    return 0;
                }
                self.mark_dirty(slot);
            }
            Err(e) => {
                let kind = e.kind();
                self.fail(slot, CloseReason::Io(kind));
                return 0;
            }
        }
        let Some(c) = self.clients.at(slot) else {
            return 0;
        };
        let after = c.out.pending_bytes();
        if c.stall.is_some() {
            self.after_flush(slot, before, after);
        }
        after
    }

    /// Sends the no-responders status to the requester's subscriptions matching the reply.
    fn no_responders_here(&mut self, request: &MsgView<'_>) {
        let Some(reply) = request.reply else { return };
        let status = MsgView {
            subject: reply,
            reply: None,
            headers: Some(NO_RESPONDERS_HDR),
            payload: &[],
            origin: request.origin,
        };
        self.deliver_to_own(&status);
    }

    /// Delivers `view` to the subscriptions of its origin's own connection that match its
    /// subject, and to nobody else (server answers to one requester).
    fn deliver_to_own(&mut self, view: &MsgView<'_>) {
        let Some(c) = self.clients.get_mut(view.origin.conn) else {
            return;
        };
        let subs: Vec<SubRef> = c
            .subs
            .values()
            .filter(|s| s.0.pattern.matches(view.subject))
            .cloned()
            .collect();
        for sub in &subs {
            self.deliver(sub, view, false, None);
        }
    }

    fn on_tick(&mut self, now: Instant) {
        self.expire_streams();
        self.tick_consumers();
        let cfg_interval = self.shared.config.ping_interval;
        let ping_max = self.shared.config.ping_max;
        if self.listener.is_some() {
            self.accept();
        }
        for slot in 0..self.clients.slots.len() {
            let Some(c) = self.clients.at(slot) else {
                continue;
            };
            if c.close.is_some() {
                continue;
            }
            if let Some(deadline) = c.auth_deadline {
                if now >= deadline {
                    self.fail(slot, CloseReason::AuthTimeout);
                    continue;
                }
            }
            if now < c.next_ping {
                continue;
            }
            c.next_ping = now + cfg_interval;
            if std::mem::take(&mut c.active) && c.pings_out == 0 {
                continue;
            }
            if c.pings_out + 1 > ping_max {
                self.fail(slot, CloseReason::StaleConnection);
                continue;
            }
            c.pings_out += 1;
            self.reply(slot, |w| proto::encode_ping(w));
        }
    }

    /// Graceful end: stop accepting, flush what is pending within the grace period, close.
    fn finish(mut self) -> io::Result<()> {
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.drain_inbound();
        self.end_of_batch();
        let deadline = Instant::now() + self.shared.config.shutdown_grace;
        let mut events = Events::with_capacity(256);
        loop {
            let pending = self
                .clients
                .slots
                .iter()
                .filter_map(|s| s.client.as_ref())
                .any(|c| !c.out.is_empty());
            let now = Instant::now();
            if !pending || now >= deadline {
                break;
            }
            let _ = self.poll.poll(&mut events, Some(deadline - now));
            for slot in 0..self.clients.slots.len() {
                if let Some(c) = self.clients.at(slot) {
                    c.write_blocked = false;
                }
                self.mark_dirty(slot);
            }
            self.flush_dirty();
        }
        for slot in 0..self.clients.slots.len() {
            if self.clients.at(slot).is_some() {
                self.fail(slot, CloseReason::ServerShutdown);
            }
        }
        self.reap();
        Ok(())
    }
}
