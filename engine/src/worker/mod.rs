//! One worker thread: a mio `Poll` loop that owns a set of connections and a shard of
//! subjects, and talks to the other workers only through SPSC rings.
//!
//! One loop iteration: drain the inbound rings (deliveries, and publishes this shard owns);
//! adopt handed-over connections; read and parse every readable connection (publishes to
//! subjects owned here are matched and delivered at once, others go to their owner's ring);
//! commit the rings and ring the doorbells of parked peers; flush every connection that got
//! data, once, with vectored writes; then park in `poll` if there is nothing left to do.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use net::outbound::{ChunkPool, Flushed, Outbound};
use net::proto::{self, Op, Parser, ParserLimits, ProtoError, Publish, Side};
use tracing::{debug, info, warn};

use crate::chat::shard::{Effect, Shard, ShardLimits};
use crate::chat::Name;
use crate::config::{Auth, Config};
use crate::counters::{Counter, Counters};
use crate::envelope::{Admit, ConnKey, Envelope, Msg, MsgView, Origin, SubRef, SubState};
use crate::limits;
use crate::park::Doorbell;
use crate::ring::{Consumer, Full, Producer};
use crate::subject::{self, Pattern};
use crate::sublist::{Change, Placed, SubSet, Sublist};

mod chat;
mod info;
pub(crate) mod lame_duck;

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

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The client closed its end.
    #[error("client closed")]
    ClientClosed,
    /// The client sent bytes nats-server rejects.
    #[error("protocol error: {0}")]
    Protocol(ProtoError),
    /// HPUB from a client that did not enable headers.
    #[error("message headers not supported")]
    HeadersNotSupported,
    /// CONNECT asked for no_responders without headers.
    #[error("no responders requires headers support")]
    NoRespondersWithoutHeaders,
    /// Wrong or missing credentials.
    #[error("authorization violation")]
    AuthViolation,
    /// No CONNECT within the auth timeout.
    #[error("authentication timeout")]
    AuthTimeout,
    /// Pending outbound bytes passed `max_pending`.
    #[error("slow consumer")]
    SlowConsumer,
    /// Unanswered PINGs passed `ping_max`.
    #[error("stale connection")]
    StaleConnection,
    /// Too many connections on the server.
    #[error("maximum connections exceeded")]
    MaxConnections,
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(io::ErrorKind),
    /// The server is shutting down.
    #[error("server shutdown")]
    ServerShutdown,
}

impl CloseReason {
    /// The `-ERR` text sent before closing, where nats-server sends one.
    fn err_text(&self) -> Option<&'static str> {
        match self {
            CloseReason::Protocol(e) => e.err_text(),
            CloseReason::NoRespondersWithoutHeaders => {
                Some("'no responders requires headers support'")
            }
            CloseReason::AuthViolation => Some("'Authorization Violation'"),
            CloseReason::AuthTimeout => Some("'Authentication Timeout'"),
            CloseReason::StaleConnection => Some("'Stale Connection'"),
            CloseReason::MaxConnections => Some("'maximum connections exceeded'"),
            _ => None,
        }
    }
}

/// A client's CONNECT options (nats-server's defaults before any CONNECT).
#[derive(Debug, Clone)]
struct Opts {
    verbose: bool,
    pedantic: bool,
    echo: bool,
    headers: bool,
    no_responders: bool,
    authed: bool,
}

/// One client connection owned by this worker.
#[derive(Debug)]
struct Client {
    key: ConnKey,
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    parser: Parser,
    /// The unparsed tail of earlier reads (empty unless a read split an op).
    partial: Vec<u8>,
    out: Outbound,
    opts: Opts,
    /// The options of the last CONNECT (nats-server's defaults before any).
    connect: proto::Connect,
    /// Whether a CONNECT has been accepted.
    connected: bool,
    subs: HashMap<Box<[u8]>, SubRef>,
    pings_out: u32,
    /// Bytes arrived since the last ping check.
    active: bool,
    next_ping: Instant,
    auth_deadline: Option<Instant>,
    close: Option<CloseReason>,
    dirty: bool,
    write_blocked: bool,
    /// Bit w set: this client published to a subject owned by worker w since its last
    /// barrier.
    remote_owners: u64,
    /// Barriers sent and not yet acknowledged; while non-zero, parsing is paused.
    barriers_out: u32,
    /// PONGs to send when the barriers are acknowledged.
    pongs_owed: u32,
    /// Whether the slot is already queued in `Worker::deferred`.
    in_deferred: bool,
    /// Who the client is, for chat (from its first CONNECT).
    identity: Identity,
    /// Rooms this session joined (`room.join`), to leave their presence when it closes.
    chat_rooms: HashSet<Name>,
    /// Gathered chat requests of this client still waiting for answers.
    gathers: usize,
}

/// A connection's chat identity.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// CONNECT named no user.
    Anonymous,
    /// CONNECT named a user that is not a valid chat name.
    Invalid,
    /// A valid user name.
    User(Name),
}

struct Slot {
    gen: u32,
    client: Option<Client>,
}

/// The worker's connection table: slots reused through a free list, each with a
/// generation so that a stale [`ConnKey`] never reaches a newer client.
struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

impl Slab {
    fn get_mut(&mut self, key: ConnKey) -> Option<&mut Client> {
        let slot = self.slots.get_mut(key.slot as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.client.as_mut()
    }

    fn at(&mut self, slot: usize) -> Option<&mut Client> {
        self.slots.get_mut(slot)?.client.as_mut()
    }

    fn vacant(&mut self) -> (u32, u32) {
        if let Some(i) = self.free.pop() {
            let gen = self.slots[i as usize].gen;
            return (i, gen);
        }
        self.slots.push(Slot {
            gen: 0,
            client: None,
        });
        ((self.slots.len() - 1) as u32, 0)
    }

    fn remove(&mut self, slot: usize) -> Option<Client> {
        let s = self.slots.get_mut(slot)?;
        let c = s.client.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot as u32);
        Some(c)
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
    inbound: Vec<Consumer<Envelope>>,
    /// The worker each inbound ring comes from.
    inbound_from: Vec<usize>,
    /// Bytes consumed from each inbound ring so far (mirrors `Shared::consumed`).
    consumed_local: Vec<u64>,
    producers: Vec<Option<Producer<Envelope>>>,
    /// Bytes pushed to each outbound ring so far.
    produced: Vec<u64>,
    overflow: Vec<VecDeque<Envelope>>,
    overflowing: usize,
    /// Bit w set: something was pushed to worker w's ring and not yet committed.
    pushed: u64,
    clients: Slab,
    rbuf: Vec<u8>,
    pool: ChunkPool,
    dirty: Vec<usize>,
    closing: Vec<usize>,
    deferred: VecDeque<usize>,
    scratch: Vec<Arc<SubSet<SubRef>>>,
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
            consumed_local: vec![0; parts.inbound.len()],
            inbound: parts.inbound,
            inbound_from: parts.inbound_from,
            producers: parts.producers,
            produced: vec![0; workers],
            overflow: (0..workers).map(|_| VecDeque::new()).collect(),
            overflowing: 0,
            pushed: 0,
            clients: Slab {
                slots: Vec::new(),
                free: Vec::new(),
            },
            rbuf: vec![0; limits::READ_BUFFER_BYTES],
            pool: ChunkPool::new(limits::OUTBOUND_CHUNK_BYTES, limits::OUTBOUND_POOL_CHUNKS),
            dirty: Vec::new(),
            closing: Vec::new(),
            deferred: VecDeque::new(),
            scratch: Vec::with_capacity(64),
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
            self.drain_inbound();
            self.adopt_handoffs();
            self.retry_overflow();
            self.read_deferred();
            self.end_of_batch();
            let now = Instant::now();
            if now >= self.next_tick {
                self.next_tick = now + self.tick;
                self.on_tick(now);
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
                } else if self.overflowing > 0 {
                    // Waiting for a peer to drain a full ring: nap, but stay wakeable.
                    Some(limits::OVERFLOW_NAP)
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
        (!self.deferred.is_empty() && self.overflowing == 0)
            || self.inbound.iter_mut().any(|c| !c.is_empty())
    }

    /// Flushes, closes what must close, and publishes ring pushes.
    fn end_of_batch(&mut self) {
        self.commit();
        self.flush_dirty();
        self.reap();
        self.commit();
    }

    // ----- rings ------------------------------------------------------------------------

    fn drain_inbound(&mut self) {
        let mut inbound = std::mem::take(&mut self.inbound);
        for (i, consumer) in inbound.iter_mut().enumerate() {
            let mut bytes = 0;
            consumer.pop_batch(limits::RING_CAPACITY_ITEMS, |env| {
                bytes += env.weight();
                self.handle_envelope(env);
            });
            if bytes > 0 {
                self.consumed_local[i] += bytes;
                let cell = &self.shared.consumed
                    [self.inbound_from[i] * self.shared.config.workers + self.id];
                // Relaxed: a flow-control figure only; the ring's own indices order the data.
                cell.store(self.consumed_local[i], Ordering::Relaxed);
            }
        }
        self.inbound = inbound;
    }

    fn handle_envelope(&mut self, env: Envelope) {
        match env {
            Envelope::Publish(msg) => {
                let view = msg.view();
                self.dispatch(&view, Some(&msg));
            }
            Envelope::Deliver { msg, set } => {
                let view = msg.view();
                let me = self.id;
                for sub in set.plain.iter().filter(|s| s.worker() == me) {
                    self.deliver(sub, &view, true);
                }
            }
            Envelope::DeliverOne { msg, sub, tries } => {
                let view = msg.view();
                if !self.deliver(&sub, &view, true) {
                    self.repick(&sub, &view, &msg, tries);
                }
            }
            Envelope::NoResponders(msg) => self.no_responders_here(&msg.view()),
            Envelope::Barrier(conn) => {
                self.send(usize::from(conn.worker), Envelope::BarrierAck(conn))
            }
            Envelope::BarrierAck(conn) => self.barrier_acked(conn),
            Envelope::Chat(c) => self.handle_chat_envelope(*c),
        }
    }

    /// Queues `env` for worker `to`: on its ring, or behind earlier overflow.
    fn send(&mut self, to: usize, env: Envelope) {
        if !self.overflow[to].is_empty() {
            // Behind earlier overflow, to keep the ring's FIFO order.
            self.overflow[to].push_back(env);
            self.overflowing += 1;
            return;
        }
        if let Err(env) = self.try_send(to, env) {
            self.counters().add(Counter::RingFull, 1);
            self.overflow[to].push_back(env);
            self.overflowing += 1;
        }
    }

    /// Pushes onto the ring toward `to` unless it is full in slots or in bytes.
    fn try_send(&mut self, to: usize, env: Envelope) -> Result<(), Envelope> {
        let weight = env.weight();
        let cell = &self.shared.consumed[self.id * self.shared.config.workers + to];
        // Relaxed: see `drain_inbound`; a stale value only makes the budget stricter.
        let in_flight = self.produced[to] - cell.load(Ordering::Relaxed);
        if in_flight > 0 && in_flight + weight > limits::RING_BUDGET_BYTES {
            return Err(env);
        }
        let Some(producer) = self.producers[to].as_mut() else {
            return Ok(());
        };
        match producer.try_push_deferred(env) {
            Ok(()) => {
                self.pushed |= 1 << to;
                self.produced[to] += weight;
                Ok(())
            }
            Err(Full(env)) => Err(env),
        }
    }

    /// Publishes deferred pushes and wakes peers that are parked.
    fn commit(&mut self) {
        let mut mask = std::mem::take(&mut self.pushed);
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(p) = self.producers[w].as_mut() {
                p.commit();
            }
            if self.shared.doorbells[w].ring() {
                let _ = self.shared.wakers[w].wake();
            }
        }
    }

    fn retry_overflow(&mut self) {
        if self.overflowing == 0 {
            return;
        }
        for to in 0..self.overflow.len() {
            while let Some(env) = self.overflow[to].pop_front() {
                match self.try_send(to, env) {
                    Ok(()) => self.overflowing -= 1,
                    Err(env) => {
                        self.overflow[to].push_front(env);
                        break;
                    }
                }
            }
        }
        self.commit();
    }

    // ----- matching and delivery --------------------------------------------------------

    /// Matches a publish this shard owns and fans it out. `shared` is the message already in
    /// an `Arc` if it came over a ring; a local publish is copied only if another worker
    /// needs it.
    fn dispatch(&mut self, view: &MsgView<'_>, shared: Option<&Arc<Msg>>) {
        let mut sets = std::mem::take(&mut self.scratch);
        self.shared.sublist.matches(view.subject, &mut sets);
        // Nobody to answer: no match at all, or (echo off) only the requester itself.
        let nobody = sets.is_empty()
            || (view.reply.is_some()
                && view.origin.no_responders
                && !view.origin.echo
                && sets.iter().all(|s| {
                    s.plain
                        .iter()
                        .chain(s.queues.iter().flat_map(|g| g.members.iter()))
                        .all(|m| m.0.conn == view.origin.conn)
                }));
        if nobody {
            sets.clear();
            self.scratch = sets;
            if view.reply.is_some() && view.origin.no_responders {
                let origin = usize::from(view.origin.conn.worker);
                if origin == self.id {
                    self.no_responders_here(view);
                } else {
                    let msg = shared
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Msg::from_view(view)));
                    self.send(origin, Envelope::NoResponders(msg));
                }
            }
            return;
        }
        let mut owned: Option<Arc<Msg>> = shared.cloned();
        self.fan_out(&sets, view, &mut owned, true);
        sets.clear();
        self.scratch = sets;
    }

    /// Delivers `view` to every plain subscriber of `sets` and one member of each queue
    /// group. A queue member found gone is replaced by another only when `repick` (chat
    /// deliveries go to filtered sets, which a fresh match would not respect).
    fn fan_out(
        &mut self,
        sets: &[Arc<SubSet<SubRef>>],
        view: &MsgView<'_>,
        owned: &mut Option<Arc<Msg>>,
        repick: bool,
    ) {
        let me = self.id;
        let mut any_queue = false;
        for set in sets {
            any_queue |= !set.queues.is_empty();
            let mut mask = set.plain_workers;
            while mask != 0 {
                let w = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if w == me {
                    for sub in set.plain.iter().filter(|s| s.worker() == me) {
                        self.deliver(sub, view, true);
                    }
                } else {
                    let msg = owned
                        .get_or_insert_with(|| Arc::new(Msg::from_view(view)))
                        .clone();
                    self.send(
                        w,
                        Envelope::Deliver {
                            msg,
                            set: set.clone(),
                        },
                    );
                }
            }
        }
        if any_queue {
            self.pick_queue_members(sets, view, owned, repick);
        }
    }

    /// Delivers to one member of each queue group, merging groups of the same name across
    /// the matched sets (as nats-server does), chosen at random for an even spread. Members
    /// that would not receive it (the publisher itself with echo off) are not candidates.
    fn pick_queue_members(
        &mut self,
        sets: &[Arc<SubSet<SubRef>>],
        view: &MsgView<'_>,
        owned: &mut Option<Arc<Msg>>,
        repick: bool,
    ) {
        if let [set] = sets {
            // One matched set (the common case): its group names are distinct.
            for group in set.queues.iter() {
                if let Some(sub) = self.choose(&[&group.members[..]], view, None) {
                    self.deliver_queued(sub, view, owned, repick);
                }
            }
            return;
        }
        // Several sets: gather each name's member lists once (linear in the groups).
        let mut by_name: HashMap<&[u8], Vec<&[SubRef]>> = HashMap::new();
        for set in sets {
            for group in set.queues.iter() {
                by_name.entry(&group.name).or_default().push(&group.members);
            }
        }
        for lists in by_name.values() {
            if let Some(sub) = self.choose(lists, view, None) {
                self.deliver_queued(sub, view, owned, repick);
            }
        }
    }

    /// One member, at random, among `lists` (one group's members, possibly from several
    /// sets), skipping `exclude` and the publisher when it does not want its own messages.
    fn choose(
        &mut self,
        lists: &[&[SubRef]],
        view: &MsgView<'_>,
        exclude: Option<&SubRef>,
    ) -> Option<SubRef> {
        let eligible =
            |s: &SubRef| (view.origin.echo || s.0.conn != view.origin.conn) && Some(s) != exclude;
        let total: usize = lists
            .iter()
            .map(|l| l.iter().filter(|s| eligible(s)).count())
            .sum();
        if total == 0 {
            return None;
        }
        let mut k = (self.next_random() % total as u64) as usize;
        for sub in lists.iter().flat_map(|l| l.iter()).filter(|s| eligible(s)) {
            if k == 0 {
                return Some(sub.clone());
            }
            k -= 1;
        }
        None
    }

    fn deliver_queued(
        &mut self,
        sub: SubRef,
        view: &MsgView<'_>,
        owned: &mut Option<Arc<Msg>>,
        repick: bool,
    ) {
        let w = sub.worker();
        let tries = if repick { 0 } else { limits::QUEUE_REPICKS };
        if w == self.id {
            if !self.deliver(&sub, view, true) && repick {
                let msg = owned
                    .get_or_insert_with(|| Arc::new(Msg::from_view(view)))
                    .clone();
                self.repick(&sub, view, &msg, 0);
            }
        } else {
            let msg = owned
                .get_or_insert_with(|| Arc::new(Msg::from_view(view)))
                .clone();
            self.send(w, Envelope::DeliverOne { msg, sub, tries });
        }
    }

    /// The chosen queue member is gone: offer the message to another member of its group,
    /// from a fresh snapshot, as nats-server would have (it picks among live members).
    fn repick(&mut self, gone: &SubRef, view: &MsgView<'_>, msg: &Arc<Msg>, tries: u8) {
        let Some(queue) = gone.0.queue.as_deref() else {
            return;
        };
        if tries >= limits::QUEUE_REPICKS {
            return;
        }
        let mut sets = std::mem::take(&mut self.scratch);
        self.shared.sublist.matches(view.subject, &mut sets);
        let lists: Vec<&[SubRef]> = sets
            .iter()
            .flat_map(|s| s.queues.iter())
            .filter(|g| *g.name == *queue)
            .map(|g| &g.members[..])
            .collect();
        let next = self.choose(&lists, view, Some(gone));
        drop(lists);
        sets.clear();
        self.scratch = sets;
        let Some(sub) = next else { return };
        let w = sub.worker();
        if w == self.id {
            if !self.deliver(&sub, view, true) {
                self.repick(&sub, view, msg, tries + 1);
            }
        } else {
            self.send(
                w,
                Envelope::DeliverOne {
                    msg: Arc::clone(msg),
                    sub,
                    tries: tries + 1,
                },
            );
        }
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
    fn deliver(&mut self, sub: &SubRef, view: &MsgView<'_>, check_echo: bool) -> bool {
        let st = &*sub.0;
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
            match view.headers {
                Some(h) if c.opts.headers => {
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
        self.queued(slot);
        true
    }

    /// Called after bytes were queued for a client: marks it for the end-of-batch flush, or,
    /// past `max_pending`, writes now and closes it as a slow consumer if the socket will not
    /// take the excess. Every path that queues bytes (deliveries and the server's own replies)
    /// goes through here, so no client can grow its queue past the cap.
    fn queued(&mut self, slot: usize) {
        let max_pending = self.shared.config.max_pending;
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.out.pending_bytes() <= max_pending {
            self.mark_dirty(slot);
            return;
        }
        // The cap is on what the socket will not take, not on what this batch has not
        // flushed yet: write now (even if the last write would have blocked: the reader may
        // have drained since), and judge by what is left.
        match c
            .out
            .flush_to(&mut c.stream, &mut self.pool, limits::MAX_IOVECS)
        {
            Ok(Flushed::All) => {}
            Ok(Flushed::Blocked) => {
                c.write_blocked = true;
                if c.out.pending_bytes() > max_pending {
                    self.fail(slot, CloseReason::SlowConsumer);
                } else {
                    self.mark_dirty(slot);
                }
            }
            Err(e) => {
                let kind = e.kind();
                self.fail(slot, CloseReason::Io(kind));
            }
        }
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
            self.deliver(sub, view, false);
        }
    }

    // ----- connections ------------------------------------------------------------------

    fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, _peer)) => {
                    let workers = self.shared.config.workers;
                    let to = self.next_assign % workers;
                    self.next_assign = self.next_assign.wrapping_add(1);
                    if to == self.id {
                        self.adopt(stream);
                    } else if self.shared.handoff[to].send(stream).is_ok() {
                        let _ = self.shared.wakers[to].wake();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) =>
                {
                    // That one connection failed; the rest of the backlog is still there.
                    continue;
                }
                Err(e) => {
                    // Out of file descriptors, typically: leave the rest in the backlog
                    // until a close frees one (the next tick retries). Logged once a second
                    // at most.
                    let now = Instant::now();
                    if self
                        .last_accept_warning
                        .is_none_or(|t| now - t >= Duration::from_secs(1))
                    {
                        self.last_accept_warning = Some(now);
                        warn!(error = %e, "accept failed");
                    }
                    return;
                }
            }
        }
    }

    fn adopt_handoffs(&mut self) {
        while let Ok(stream) = self.handoff.try_recv() {
            self.adopt(stream);
        }
    }

    fn adopt(&mut self, mut stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => return,
        };
        let _ = stream.set_nodelay(true);
        let (slot, gen) = self.clients.vacant();
        let token = Token(slot as usize + FIRST_CONN);
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            warn!(error = %e, "register failed");
            self.clients.free.push(slot);
            return;
        }
        let cfg = &self.shared.config;
        // Relaxed: a unique id is all that is needed; no other memory depends on it.
        let id = self.shared.next_client_id.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let key = ConnKey {
            worker: self.id as u16,
            slot,
            gen,
        };
        let mut client = Client {
            key,
            id,
            stream,
            peer,
            parser: {
                let mut p = Parser::new(
                    Side::Server,
                    ParserLimits {
                        max_control_line_bytes: cfg.max_control_line,
                        max_payload_bytes: cfg.max_payload,
                    },
                );
                // HPUB is refused (silently, as nats-server) until CONNECT enables headers.
                p.set_headers_allowed(false);
                p
            },
            partial: Vec::new(),
            out: Outbound::default(),
            opts: Opts {
                verbose: true,
                pedantic: true,
                echo: true,
                headers: false,
                no_responders: false,
                authed: !cfg.auth.required(),
            },
            connect: proto::Connect::default(),
            connected: false,
            subs: HashMap::new(),
            pings_out: 0,
            active: false,
            next_ping: now + cfg.ping_interval,
            auth_deadline: cfg.auth.required().then(|| now + cfg.auth_timeout),
            close: None,
            dirty: false,
            write_blocked: false,
            remote_owners: 0,
            barriers_out: 0,
            pongs_owed: 0,
            in_deferred: false,
            identity: Identity::Anonymous,
            chat_rooms: HashSet::new(),
            gathers: 0,
        };
        let info = self.shared.info(id, peer.ip());
        proto::encode_info(&mut client.out.writer(&mut self.pool), &info);
        // AcqRel-free: a plain counter for the connection cap. Relaxed: no other memory
        // depends on it, and a momentary overshoot of one is harmless.
        let open = self.shared.open.fetch_add(1, Ordering::Relaxed) + 1;
        self.clients.slots[slot as usize].client = Some(client);
        self.counters().add(Counter::Accepted, 1);
        debug!(cid = id, %peer, worker = self.id, "accepted");
        if open > limits::MAX_CONNECTIONS {
            self.fail(slot as usize, CloseReason::MaxConnections);
        }
        self.mark_dirty(slot as usize);
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.clients.at(slot) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Reads until the socket would block, a budget runs out, or the rings push back.
    fn handle_readable(&mut self, slot: usize) {
        for _ in 0..limits::READS_PER_EVENT {
            if self.overflowing > 0 {
                // Backpressure: leave the bytes in the kernel (and so throttle the
                // publisher through TCP) until the rings drain.
                self.defer(slot);
                return;
            }
            let Some(c) = self.clients.at(slot) else {
                return;
            };
            if c.close.is_some() || c.barriers_out > 0 {
                // Closing, or paused behind a barrier (resumed by `barrier_acked`).
                return;
            }
            let n = match c.stream.read(&mut self.rbuf) {
                Ok(0) => {
                    self.fail(slot, CloseReason::ClientClosed);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.fail(slot, CloseReason::Io(e.kind()));
                    return;
                }
            };
            c.active = true;
            self.handle_input(slot, n);
            self.commit();
        }
        self.defer(slot);
    }

    /// Queues a client for reading on a later loop iteration (once, however often asked).
    fn defer(&mut self, slot: usize) {
        if let Some(c) = self.clients.at(slot) {
            if !c.in_deferred {
                c.in_deferred = true;
                self.deferred.push_back(slot);
            }
        }
    }

    fn read_deferred(&mut self) {
        let n = self.deferred.len();
        for _ in 0..n {
            if self.overflowing > 0 {
                return;
            }
            let Some(slot) = self.deferred.pop_front() else {
                return;
            };
            if let Some(c) = self.clients.at(slot) {
                c.in_deferred = false;
            }
            self.handle_readable(slot);
        }
    }

    /// Parses `n` fresh bytes in `rbuf` (after any partial op kept from earlier reads).
    fn handle_input(&mut self, slot: usize, n: usize) {
        let rbuf = std::mem::take(&mut self.rbuf);
        let partial = match self.clients.at(slot) {
            Some(c) => std::mem::take(&mut c.partial),
            None => Vec::new(),
        };
        if partial.is_empty() {
            let used = self.parse_ops(slot, &rbuf[..n]);
            if used < n {
                if let Some(c) = self.clients.at(slot) {
                    if c.close.is_none() {
                        c.partial.extend_from_slice(&rbuf[used..n]);
                    }
                }
            }
            // Reuse the (empty) vector's allocation only if small.
            drop(partial);
        } else {
            let mut partial = partial;
            partial.extend_from_slice(&rbuf[..n]);
            let used = self.parse_ops(slot, &partial);
            partial.drain(..used);
            if partial.is_empty() && partial.capacity() > limits::READ_BUFFER_BYTES {
                partial = Vec::new();
            }
            if let Some(c) = self.clients.at(slot) {
                if c.close.is_none() {
                    c.partial = partial;
                }
            }
        }
        self.rbuf = rbuf;
    }

    /// Handles every complete op at the front of `data`; returns the bytes consumed.
    fn parse_ops(&mut self, slot: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(c) = self.clients.at(slot) else {
                self.apply_pending_subs();
                return pos;
            };
            if c.close.is_some() || c.barriers_out > 0 {
                self.apply_pending_subs();
                return pos;
            }
            match c.parser.parse(&data[pos..]) {
                Ok(Some((op, used))) => {
                    pos += used;
                    if !matches!(op, Op::Sub(_)) {
                        self.apply_pending_subs();
                    }
                    self.handle_op(slot, op);
                }
                Ok(None) => {
                    self.apply_pending_subs();
                    return pos;
                }
                Err(e) => {
                    self.apply_pending_subs();
                    self.fail(slot, CloseReason::Protocol(e));
                    return pos;
                }
            }
        }
    }

    fn handle_op(&mut self, slot: usize, op: Op<'_>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if !c.opts.authed && !matches!(op, Op::Connect(_)) {
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        match op {
            Op::Connect(json) => self.handle_connect(slot, json),
            Op::Ping => {
                if c.remote_owners == 0 {
                    self.reply(slot, |w| proto::encode_pong(w));
                } else {
                    c.pongs_owed += 1;
                    self.barrier(slot);
                }
            }
            Op::Pong => c.pings_out = 0,
            Op::Info(_) | Op::Ok => {}
            Op::Pub(p) => self.handle_pub(slot, &p),
            Op::Sub(s) => self.handle_sub(slot, s.subject, s.queue, s.sid),
            Op::Unsub(u) => self.handle_unsub(slot, u.sid, u.max),
            Op::Err(_) | Op::Msg(_) => {
                self.fail(slot, CloseReason::Protocol(ProtoError::ClientErr))
            }
        }
    }

    fn reply(&mut self, slot: usize, f: impl FnOnce(&mut net::outbound::OutboundWriter<'_>)) {
        if let Some(c) = self.clients.at(slot) {
            f(&mut c.out.writer(&mut self.pool));
            self.queued(slot);
        }
    }

    fn ok(&mut self, slot: usize) {
        let verbose = self.clients.at(slot).is_some_and(|c| c.opts.verbose);
        if verbose {
            self.reply(slot, |w| proto::encode_ok(w));
        }
    }

    fn handle_connect(&mut self, slot: usize, json: &[u8]) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        // As nats-server, a later CONNECT updates the options of an earlier one.
        let mut connect = c.connect.clone();
        if let Err(e) = connect.update(json) {
            self.fail(slot, CloseReason::Protocol(e));
            return;
        }
        let authed = match &self.shared.config.auth {
            Auth::None => true,
            Auth::Token(t) => connect.auth_token.as_deref() == Some(t.as_str()),
            Auth::Users(users) => users.iter().any(|(u, p)| {
                connect.user.as_deref() == Some(u.as_str())
                    && connect.pass.as_deref() == Some(p.as_str())
            }),
        };
        if !authed {
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        if connect.no_responders && !connect.headers {
            self.fail(slot, CloseReason::NoRespondersWithoutHeaders);
            return;
        }
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let first = !c.connected;
        if !first && connect.user != c.connect.user {
            // A session's user is fixed by its first CONNECT: chat state (presence,
            // subscriptions' owner) was built on it.
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        c.identity = match connect.user.as_deref() {
            None | Some("") => Identity::Anonymous,
            Some(u) => {
                crate::chat::parse_name(u.as_bytes()).map_or(Identity::Invalid, Identity::User)
            }
        };
        c.opts = Opts {
            verbose: connect.verbose,
            pedantic: connect.pedantic,
            echo: connect.echo,
            headers: connect.headers,
            no_responders: connect.no_responders,
            authed: true,
        };
        c.parser.set_headers_allowed(connect.headers);
        c.auth_deadline = None;
        c.connected = true;
        if first {
            info!(cid = c.id, peer = %c.peer, name = connect.name.as_deref().unwrap_or(""),
                lang = connect.lang.as_deref().unwrap_or(""),
                user = connect.user.as_deref().unwrap_or(""), "client connected");
        }
        c.connect = connect;
        self.ok(slot);
    }

    fn handle_pub(&mut self, slot: usize, p: &Publish<'_>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if p.headers.is_some() && !c.opts.headers {
            self.fail(slot, CloseReason::HeadersNotSupported);
            return;
        }
        let origin = Origin {
            conn: c.key,
            no_responders: c.opts.no_responders,
            echo: c.opts.echo,
        };
        let strict = c.opts.verbose || c.opts.pedantic;
        let chat = crate::chat::is_chat(p.subject);
        // As nats-server: a pedantic client is told about a wildcard or malformed subject,
        // then gets its +OK; a wildcard subject is still delivered (literally), and one with
        // an empty token matches no subscription (the index's rule).
        if !chat && c.opts.pedantic && subject::check_publish(p.subject, true).is_err() {
            self.reply(slot, |w| proto::encode_err(w, "'Invalid Publish Subject'"));
        }
        if !chat {
            // A chat publish gets its +OK from the chat layer, which may refuse it first.
            self.ok(slot);
        }
        let counters = &self.shared.counters[self.id];
        counters.add(Counter::InMsgs, 1);
        counters.add(Counter::InBytes, p.payload.len() as u64);
        if chat {
            self.handle_chat_pub(slot, p, origin, strict);
            return;
        }
        let view = MsgView {
            subject: p.subject,
            reply: p.reply,
            headers: p.headers,
            payload: p.payload,
            origin,
        };
        let owner = subject::owner(p.subject, self.shared.config.workers);
        if owner == self.id {
            self.dispatch(&view, None);
            return;
        }
        self.send(owner, Envelope::Publish(Arc::new(Msg::from_view(&view))));
        if let Some(c) = self.clients.at(slot) {
            c.remote_owners |= 1 << owner;
            if strict {
                // Verbose and pedantic sessions (people typing, conformance tests) get
                // nats-server's strict sequencing: the publish's own deliveries land before
                // the reply to the next op.
                self.barrier(slot);
            }
        }
    }

    /// Pauses the client's parsing until every shard it published to since the last
    /// barrier has dispatched those publishes.
    fn barrier(&mut self, slot: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let key = c.key;
        let mut mask = std::mem::take(&mut c.remote_owners);
        c.barriers_out += mask.count_ones();
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.send(w, Envelope::Barrier(key));
        }
    }

    fn barrier_acked(&mut self, conn: ConnKey) {
        let Some(c) = self.clients.get_mut(conn) else {
            return;
        };
        c.barriers_out = c.barriers_out.saturating_sub(1);
        if c.barriers_out > 0 {
            return;
        }
        let pongs = std::mem::take(&mut c.pongs_owed);
        {
            let mut w = c.out.writer(&mut self.pool);
            for _ in 0..pongs {
                proto::encode_pong(&mut w);
            }
        }
        let slot = conn.slot as usize;
        self.mark_dirty(slot);
        // Resume: parse what was held back, then read the socket again (its readiness
        // edge may have been consumed while paused).
        self.resume(slot);
        self.defer(slot);
    }

    /// Parses the ops held in a client's partial buffer (after a pause).
    fn resume(&mut self, slot: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.partial.is_empty() {
            return;
        }
        let mut partial = std::mem::take(&mut c.partial);
        let used = self.parse_ops(slot, &partial);
        partial.drain(..used);
        if let Some(c) = self.clients.at(slot) {
            if c.close.is_none() {
                c.partial = partial;
            }
        }
    }

    fn handle_sub(&mut self, slot: usize, subj: &[u8], queue: Option<&[u8]>, sid: &[u8]) {
        let Ok(pattern) = Pattern::parse(subj) else {
            self.reply(slot, |w| proto::encode_err(w, "'Invalid Subject'"));
            return;
        };
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if !c.subs.contains_key(sid) {
            if c.subs.len() >= self.shared.config.max_subscriptions {
                // As nats-server (max_subscriptions): refuse this SUB, keep the connection.
                self.reply(slot, |w| {
                    proto::encode_err(w, "'maximum subscriptions exceeded'")
                });
                return;
            }
            let user = match &c.identity {
                Identity::User(u) => Some(u.clone()),
                _ => None,
            };
            let sub = SubRef(Arc::new(
                SubState::new(c.key, sid, pattern.clone(), queue).with_user(user),
            ));
            c.subs.insert(sid.into(), sub.clone());
            self.pending_subs.push(Change::Insert {
                pattern,
                queue: queue.map(Arc::from),
                sub,
            });
        }
        self.ok(slot);
    }

    fn apply_pending_subs(&mut self) {
        if !self.pending_subs.is_empty() {
            self.shared.sublist.apply(self.pending_subs.drain(..));
        }
    }

    fn handle_unsub(&mut self, slot: usize, sid: &[u8], max: Option<u64>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if let Some(sub) = c.subs.get(sid) {
            let end_now = match max {
                None | Some(0) => true,
                Some(n) => sub.0.limit(n),
            };
            if end_now {
                self.end_subscription(slot, sid);
            }
        }
        self.ok(slot);
    }

    fn end_subscription(&mut self, slot: usize, sid: &[u8]) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if let Some(sub) = c.subs.remove(sid) {
            sub.0.close();
            self.shared
                .sublist
                .remove(&sub.0.pattern, sub.0.queue.as_deref(), &sub);
        }
    }

    /// Marks a connection for closing (at the end of this batch), queueing its `-ERR`.
    fn fail(&mut self, slot: usize, reason: CloseReason) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.close.is_some() {
            return;
        }
        if reason == CloseReason::SlowConsumer {
            // Nothing more can reach it; free the memory at once.
            c.out.clear(&mut self.pool);
            self.shared.counters[self.id].add(Counter::SlowConsumers, 1);
            warn!(cid = c.id, peer = %c.peer, "slow consumer: pending bytes over max_pending, closing");
        } else if let Some(text) = reason.err_text() {
            proto::encode_err(&mut c.out.writer(&mut self.pool), text);
        }
        c.close = Some(reason);
        self.closing.push(slot);
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(c) = self.clients.at(slot) else {
                continue;
            };
            c.dirty = false;
            if c.write_blocked || c.out.is_empty() {
                continue;
            }
            match c
                .out
                .flush_to(&mut c.stream, &mut self.pool, limits::MAX_IOVECS)
            {
                Ok(Flushed::All) => {}
                Ok(Flushed::Blocked) => c.write_blocked = true,
                Err(e) => {
                    let kind = e.kind();
                    self.fail(slot, CloseReason::Io(kind));
                }
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Closes every connection marked by [`Worker::fail`].
    fn reap(&mut self) {
        while let Some(slot) = self.closing.pop() {
            let Some(mut c) = self.clients.remove(slot) else {
                continue;
            };
            // One last non-blocking attempt to send what is pending (the -ERR).
            if !c.out.is_empty() {
                let _ = c
                    .out
                    .flush_to(&mut c.stream, &mut self.pool, limits::MAX_IOVECS);
            }
            c.out.clear(&mut self.pool);
            let _ = self.poll.registry().deregister(&mut c.stream);
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
            // One batch: each touched set is rebuilt once, however many subscriptions the
            // connection held on it.
            let removals: Vec<Change<SubRef>> = c
                .subs
                .values()
                .map(|sub| {
                    sub.0.close();
                    Change::Remove {
                        pattern: sub.0.pattern.clone(),
                        queue: sub.0.queue.as_deref().map(Arc::from),
                        sub: sub.clone(),
                    }
                })
                .collect();
            self.shared.sublist.apply(removals);
            self.chat_session_gone(&c);
            // Relaxed: see `adopt`.
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.counters[self.id].add(Counter::Closed, 1);
            let reason = c.close.unwrap_or(CloseReason::ClientClosed);
            debug!(cid = c.id, peer = %c.peer, %reason, "closed");
        }
    }

    fn on_tick(&mut self, now: Instant) {
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
