//! A client connection: its state, the transport its bytes travel on, and the worker's
//! connection lifecycle (accept, adopt, read, flush, fail, reap).
//!
//! The [`Transport`] is the seam for other fronts: TCP today; a WebSocket connection becomes
//! one more variant (its framing applied in `read` and `flush`), not a fork of the worker
//! loop. Everything above it (parser, outbound chunks, options, subscriptions) is the same
//! for every transport.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use net::outbound::{ChunkPool, Flushed, Outbound};
use net::proto::{self, Parser, ParserLimits, ProtoError, Side};
use tracing::{debug, warn};

use super::sids::Sids;
use super::stall::Stall;
use super::{Worker, FIRST_CONN};
use crate::chat::Name;
use crate::counters::Counter;
use crate::envelope::{ConnKey, SubRef};
use crate::limits;
use crate::sublist::Change;
use crate::uring::Send;

/// How a connection's bytes travel.
#[derive(Debug)]
pub(super) enum Transport {
    /// A plain TCP socket.
    Tcp(TcpStream),
}

impl Transport {
    /// Reads what the socket has (0: the peer closed).
    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
        }
    }

    /// Writes as much of `out` as the socket takes, with vectored writes.
    pub(super) fn flush(
        &mut self,
        out: &mut Outbound,
        pool: &mut ChunkPool,
    ) -> io::Result<Flushed> {
        match self {
            Transport::Tcp(s) => out.flush_to(s, pool, limits::MAX_IOVECS),
        }
    }

    /// The socket's descriptor, for the batched send path.
    pub(super) fn raw_fd(&self) -> RawFd {
        match self {
            Transport::Tcp(s) => s.as_raw_fd(),
        }
    }

    /// Registers for readable and writable events under `token`.
    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => {
                registry.register(s, token, Interest::READABLE | Interest::WRITABLE)
            }
        }
    }

    /// Deregisters and shuts the connection down (what is unsent is dropped).
    pub(super) fn close(&mut self, registry: &Registry) {
        match self {
            Transport::Tcp(s) => {
                let _ = registry.deregister(s);
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Why a connection was closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The client closed its end.
    #[error("client closed")]
    ClientClosed,
    /// The client sent bytes nats-server rejects (the parser and `Connect::update` say
    /// which: an HPUB before CONNECT enabled headers, no_responders without headers, …).
    #[error("protocol error: {0}")]
    Protocol(ProtoError),
    /// Wrong or missing credentials.
    #[error("authorization violation")]
    AuthViolation,
    /// No CONNECT within the auth timeout.
    #[error("authentication timeout")]
    AuthTimeout,
    /// Pending outbound bytes passed `max_pending`.
    #[error("slow consumer (max pending exceeded)")]
    SlowConsumer,
    /// Stalled, and took no bytes within the write deadline.
    #[error("slow consumer (write deadline exceeded)")]
    WriteDeadline,
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
    pub(super) fn err_text(&self) -> Option<&'static str> {
        match self {
            CloseReason::Protocol(e) => e.err_text(),
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
pub(super) struct Opts {
    pub(super) verbose: bool,
    pub(super) pedantic: bool,
    pub(super) echo: bool,
    pub(super) headers: bool,
    pub(super) no_responders: bool,
    pub(super) authed: bool,
}

/// One client connection owned by this worker.
#[derive(Debug)]
pub(super) struct Client {
    pub(super) key: ConnKey,
    pub(super) id: u64,
    /// How its bytes travel.
    pub(super) transport: Transport,
    pub(super) peer: SocketAddr,
    pub(super) parser: Parser,
    /// The unparsed tail of earlier reads (empty unless a read split an op).
    pub(super) partial: Vec<u8>,
    pub(super) out: Outbound,
    pub(super) opts: Opts,
    /// The options of the last CONNECT (nats-server's defaults before any).
    pub(super) connect: proto::Connect,
    /// Whether a CONNECT has been accepted.
    pub(super) connected: bool,
    pub(super) subs: Sids,
    pub(super) pings_out: u32,
    /// Bytes arrived since the last ping check.
    pub(super) active: bool,
    pub(super) next_ping: Instant,
    pub(super) auth_deadline: Option<Instant>,
    pub(super) close: Option<CloseReason>,
    pub(super) dirty: bool,
    pub(super) write_blocked: bool,
    /// Bit w set: this client's publishes or chat requests sent something to worker w
    /// since its last barrier (a `PING` then waits for w).
    pub(super) sent_to: u64,
    /// Bytes its chat requests to other workers since its last barrier may occupy (see
    /// `limits::CHAT_IN_FLIGHT_BYTES_PER_CONN`).
    pub(super) chat_in_flight: u64,
    /// Barriers sent and not yet acknowledged; while non-zero, parsing is paused.
    pub(super) barriers_out: u32,
    /// PONGs to send when the barriers are acknowledged.
    pub(super) pongs_owed: u32,
    /// Whether the slot is already queued in `Worker::deferred`.
    pub(super) in_deferred: bool,
    /// Who the client is, for chat (from its first CONNECT).
    pub(super) identity: Identity,
    /// Rooms this session joined (`room.join`), to leave their presence when it closes.
    pub(super) chat_rooms: HashSet<Name>,
    /// Gathered chat requests of this client still waiting for answers.
    pub(super) gathers: usize,
    /// Stalled connections currently holding this one's reading back (see `stall`).
    pub(super) throttles: u32,
    /// Set while this connection is stalled (too much queued for it).
    pub(super) stall: Option<Box<Stall>>,
    /// Whether its slot is in `Worker::stalled` (listed once, however often it stalls).
    pub(super) in_stalled: bool,
    /// SUBs and UNSUBs handled in this connection's current turn (see `handle_readable`).
    pub(super) turn_changes: usize,
    /// Set when it closes; every one of its subscriptions holds it (`SubState::is_closed`).
    pub(super) gone: Arc<AtomicBool>,
}

impl Client {
    /// Whether its input must wait: behind a `PING` barrier, or throttled by a stalled
    /// subscriber of its messages.
    pub(super) fn paused(&self) -> bool {
        self.barriers_out > 0 || self.throttles > 0 || self.turn_over()
    }

    /// Whether it has used up this turn's budget of index changes.
    pub(super) fn turn_over(&self) -> bool {
        self.turn_changes >= limits::INDEX_CHANGES_PER_TURN
    }
}

/// A connection's chat identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Identity {
    /// CONNECT named no user.
    Anonymous,
    /// CONNECT named a user that is not a valid chat name.
    Invalid,
    /// A valid user name.
    User(Name),
}

pub(super) struct Slot {
    pub(super) gen: u32,
    pub(super) client: Option<Client>,
}

/// The worker's connection table: slots reused through a free list, each with a
/// generation so that a stale [`ConnKey`] never reaches a newer client.
pub(super) struct Slab {
    pub(super) slots: Vec<Slot>,
    pub(super) free: Vec<u32>,
}

impl Slab {
    pub(super) fn get_mut(&mut self, key: ConnKey) -> Option<&mut Client> {
        let slot = self.slots.get_mut(key.slot as usize)?;
        if slot.gen != key.gen {
            return None;
        }
        slot.client.as_mut()
    }

    pub(super) fn at(&mut self, slot: usize) -> Option<&mut Client> {
        self.slots.get_mut(slot)?.client.as_mut()
    }

    /// The client at `slot`, taken off the dirty list, if it has bytes to send and a socket
    /// that may take them.
    pub(super) fn due_flush(&mut self, slot: usize) -> Option<&mut Client> {
        let c = self.at(slot)?;
        c.dirty = false;
        (!c.write_blocked && !c.out.is_empty()).then_some(c)
    }

    pub(super) fn vacant(&mut self) -> (u32, u32) {
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

    pub(super) fn remove(&mut self, slot: usize) -> Option<Client> {
        let s = self.slots.get_mut(slot)?;
        let c = s.client.take()?;
        s.gen = s.gen.wrapping_add(1);
        self.free.push(slot as u32);
        Some(c)
    }
}

impl Worker {
    pub(super) fn accept(&mut self) {
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

    pub(super) fn adopt_handoffs(&mut self) {
        while let Ok(stream) = self.handoff.try_recv() {
            self.adopt(stream);
        }
    }

    pub(super) fn adopt(&mut self, stream: TcpStream) {
        let peer = match stream.peer_addr() {
            Ok(p) => p,
            Err(_) => return,
        };
        let _ = stream.set_nodelay(true);
        let mut transport = Transport::Tcp(stream);
        let (slot, gen) = self.clients.vacant();
        let token = Token(slot as usize + FIRST_CONN);
        if let Err(e) = transport.register(self.poll.registry(), token) {
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
            transport,
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
            subs: Sids::default(),
            pings_out: 0,
            active: false,
            next_ping: now + cfg.ping_interval,
            auth_deadline: cfg.auth.required().then(|| now + cfg.auth_timeout),
            close: None,
            dirty: false,
            write_blocked: false,
            sent_to: 0,
            chat_in_flight: 0,
            barriers_out: 0,
            pongs_owed: 0,
            in_deferred: false,
            identity: Identity::Anonymous,
            chat_rooms: HashSet::new(),
            gathers: 0,
            throttles: 0,
            stall: None,
            in_stalled: false,
            turn_changes: 0,
            gone: Arc::new(AtomicBool::new(false)),
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

    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.clients.at(slot) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// One turn of a connection: the ops its last turn held back, then reads until the
    /// socket would block, a budget runs out, or the rings push back. Two budgets keep one
    /// connection from taking the worker away from the others: `READS_PER_EVENT` reads, and
    /// `INDEX_CHANGES_PER_TURN` SUBs/UNSUBs (an index change costs far more than a publish:
    /// a million-SUB flood in one turn held its worker for seconds). A connection that used
    /// up a budget goes to the back of the line, its unparsed ops kept.
    pub(super) fn handle_readable(&mut self, slot: usize) {
        if let Some(c) = self.clients.at(slot) {
            let held_back = c.turn_over();
            c.turn_changes = 0;
            if held_back {
                self.resume(slot);
            }
        }
        for _ in 0..limits::READS_PER_EVENT {
            if self.links.overflowing() {
                // Backpressure: leave the bytes in the kernel (and so throttle the
                // publisher through TCP) until the rings drain.
                self.defer(slot);
                return;
            }
            let Some(c) = self.clients.at(slot) else {
                return;
            };
            if c.turn_over() {
                self.defer(slot);
                return;
            }
            if c.close.is_some() || c.paused() {
                // Closing, or paused behind a barrier (resumed by `barrier_acked`) or a
                // stalled subscriber (resumed by `handle_unthrottle`).
                return;
            }
            let n = match c.transport.read(&mut self.rbuf) {
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
    pub(super) fn defer(&mut self, slot: usize) {
        if let Some(c) = self.clients.at(slot) {
            if !c.in_deferred {
                c.in_deferred = true;
                self.deferred.push_back(slot);
            }
        }
    }

    pub(super) fn read_deferred(&mut self) {
        let n = self.deferred.len();
        for _ in 0..n {
            if self.links.overflowing() {
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

    /// Marks a connection for closing (at the end of this batch), queueing its `-ERR`.
    pub(super) fn fail(&mut self, slot: usize, reason: CloseReason) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.close.is_some() {
            return;
        }
        if matches!(
            reason,
            CloseReason::SlowConsumer | CloseReason::WriteDeadline
        ) {
            // As nats-server: no -ERR. Nothing more can reach it; free the memory at once.
            let pending = c.out.pending_bytes();
            c.out.clear(&mut self.pool);
            self.shared.counters[self.id].add(Counter::SlowConsumers, 1);
            warn!(cid = c.id, peer = %c.peer, pending, %reason, "slow consumer, closing");
        } else if let Some(text) = reason.err_text() {
            proto::encode_err(&mut c.out.writer(&mut self.pool), text);
        }
        c.close = Some(reason);
        self.closing.push(slot);
    }

    /// Writes what every dirty connection has pending: one `writev` each, or one io_uring
    /// batch for all of them.
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        if self.send_ring.is_some() {
            self.flush_batched(&dirty);
        } else {
            for &slot in &dirty {
                let Some(c) = self.clients.due_flush(slot) else {
                    continue;
                };
                let before = c.out.pending_bytes();
                let outcome = c.transport.flush(&mut c.out, &mut self.pool);
                self.flushed(slot, outcome, before);
            }
        }
        // Connections marked dirty meanwhile (publishers a flush released) wait for the next.
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Flushes `dirty` through the io_uring send ring: every due connection's pending bytes
    /// in one batch, one kernel entry per round of the ring's size.
    fn flush_batched(&mut self, dirty: &[usize]) {
        let mut batch = std::mem::take(&mut self.send_batch);
        for &slot in dirty {
            let Some(c) = self.clients.due_flush(slot) else {
                continue;
            };
            let fd = c.transport.raw_fd();
            batch.push(Send::new(fd, std::mem::take(&mut c.out), slot));
        }
        if let Some(ring) = self.send_ring.as_mut() {
            ring.flush(&mut batch, &mut self.pool);
            if ring.is_broken() {
                warn!("the io_uring send ring failed; writing with writev from now on");
                self.send_ring = None;
            }
        }
        for s in batch.drain(..) {
            let Some(c) = self.clients.at(s.key) else {
                continue;
            };
            c.out = s.out;
            let before = c.out.pending_bytes() + s.sent;
            self.flushed(s.key, s.outcome, before);
        }
        self.send_batch = batch;
    }

    /// Applies what a flush of `slot` achieved: wait for writability, close on an error, or
    /// let a stalled connection release its publishers. Releases may mark more clients
    /// dirty: those land in the fresh `self.dirty`, kept for the next flush.
    fn flushed(&mut self, slot: usize, outcome: io::Result<Flushed>, before: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        match outcome {
            Ok(Flushed::All) => {}
            Ok(Flushed::Blocked) => c.write_blocked = true,
            Err(e) => {
                self.fail(slot, CloseReason::Io(e.kind()));
                return;
            }
        }
        let after = c.out.pending_bytes();
        if c.stall.is_some() {
            self.after_flush(slot, before, after);
        }
    }

    /// Takes the next batch of ended subscriptions out of the index. Batched, so each touched
    /// set is rebuilt once per batch however many of the batch's subscriptions it held.
    pub(super) fn apply_retiring(&mut self) {
        let budget = std::mem::take(&mut self.inserted).max(limits::INDEX_REMOVALS_PER_TURN);
        let Some(subs) = self.retiring.front_mut() else {
            return;
        };
        let removals: Vec<Change<SubRef>> = subs
            .by_ref()
            .take(budget)
            .map(|sub| {
                sub.0.close();
                Change::Remove {
                    pattern: sub.0.pattern.clone(),
                    queue: sub.0.queue.as_deref().map(Arc::from),
                    sub,
                }
            })
            .collect();
        if removals.len() < budget {
            self.retiring.pop_front();
        }
        self.shared.sublist.apply(removals);
    }

    /// Closes every connection marked by [`Worker::fail`].
    pub(super) fn reap(&mut self) {
        while let Some(slot) = self.closing.pop() {
            // Publishers it held back go on.
            self.release_stall(slot);
            let Some(mut c) = self.clients.remove(slot) else {
                continue;
            };
            // One last non-blocking attempt to send what is pending (the -ERR).
            if !c.out.is_empty() {
                let _ = c.transport.flush(&mut c.out, &mut self.pool);
            }
            c.out.clear(&mut self.pool);
            c.transport.close(self.poll.registry());
            // Relaxed: a hint for queue picks on other workers (see `SubState::is_closed`).
            c.gone.store(true, Ordering::Relaxed);
            self.chat_session_gone(&c);
            // Out of the index over the next loop iterations, `INDEX_REMOVALS_PER_TURN` at a
            // time, so closing costs what each iteration touches (walking or freeing a
            // million subscriptions at once held the worker for a second). Meanwhile nothing
            // reaches them: their connection's slot is gone, which `deliver` checks.
            self.retiring
                .push_back(std::mem::take(&mut c.subs).into_values());
            // Relaxed: see `adopt`.
            self.shared.open.fetch_sub(1, Ordering::Relaxed);
            self.shared.counters[self.id].add(Counter::Closed, 1);
            let reason = c.close.unwrap_or(CloseReason::ClientClosed);
            debug!(cid = c.id, peer = %c.peer, %reason, "closed");
        }
    }
}
