//! A worker's links to the other workers: one SPSC ring in each direction per peer, the
//! byte budget that caps what one ring keeps alive, the local overflow queues used while a
//! ring is full, and the doorbells that wake a parked peer.
//!
//! Pushes are deferred and published per destination with one store at [`Links::commit`];
//! a peer is woken (one `eventfd` write) only when it announced that it is parking. A full
//! ring never blocks: the envelope waits in this worker's overflow queue for that peer, and
//! later envelopes queue behind it so the ring's FIFO order holds (ARCHITECTURE.md, "When a
//! ring is full").
//!
//! Small plain deliveries toward a peer are batched: their messages are copied one after
//! another into that peer's pending block, and the block becomes one allocation shared by
//! all of them when it is sealed — before anything else is sent to that peer (so the ring's
//! order is the order of the sends), when it passes `limits::BATCH_BLOCK_BYTES`, and at every
//! commit (so nothing waits beyond the loop iteration that produced it).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::Shared;
use crate::counters::Counter;
use crate::envelope::{Envelope, Msg, MsgView, SubRef};
use crate::limits;
use crate::ring::{Consumer, Full, Producer};
use crate::sublist::SubSet;

/// Plain deliveries toward one peer, not pushed yet: their messages back to back, and each
/// one's matched set and place in `bytes`.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    items: Vec<(Arc<SubSet<SubRef>>, u32, u32)>,
}

/// The rings of one worker, both directions.
pub(super) struct Links {
    me: usize,
    shared: Arc<Shared>,
    /// One consumer per peer (the ring peer → me).
    inbound: Vec<Consumer<Envelope>>,
    /// The worker each inbound ring comes from.
    inbound_from: Vec<usize>,
    /// Bytes consumed from each inbound ring so far (mirrors `Shared::consumed`).
    consumed_local: Vec<u64>,
    /// `producers[w]`: the ring me → w (`None` for me).
    producers: Vec<Option<Producer<Envelope>>>,
    /// Bytes pushed to each outbound ring so far.
    produced: Vec<u64>,
    /// The last value read of each peer's consumed counter for our ring.
    consumed_seen: Vec<u64>,
    overflow: Vec<VecDeque<Envelope>>,
    /// Envelopes in all overflow queues.
    overflowing: usize,
    /// Bit w set: something was pushed to worker w's ring and not yet committed.
    pushed: u64,
    /// `pending[w]`: batched deliveries toward w, not sealed yet.
    pending: Vec<Pending>,
    /// Bit w set: `pending[w]` holds something.
    pending_mask: u64,
}

impl Links {
    pub(super) fn new(
        me: usize,
        shared: Arc<Shared>,
        inbound: Vec<Consumer<Envelope>>,
        inbound_from: Vec<usize>,
        producers: Vec<Option<Producer<Envelope>>>,
    ) -> Links {
        let workers = shared.config.workers;
        Links {
            me,
            consumed_local: vec![0; inbound.len()],
            inbound,
            inbound_from,
            producers,
            produced: vec![0; workers],
            consumed_seen: vec![0; workers],
            overflow: (0..workers).map(|_| VecDeque::new()).collect(),
            overflowing: 0,
            pushed: 0,
            pending: (0..workers).map(|_| Pending::default()).collect(),
            pending_mask: 0,
            shared,
        }
    }

    /// Whether any envelope is waiting for a full ring.
    pub(super) fn overflowing(&self) -> bool {
        self.overflowing > 0
    }

    /// Whether any inbound ring has envelopes.
    pub(super) fn has_inbound(&mut self) -> bool {
        self.inbound.iter_mut().any(|c| !c.is_empty())
    }

    /// Lends out the inbound rings, so their envelopes can be handled by code that sends on
    /// these links; give them back with [`Links::return_inbound`].
    pub(super) fn take_inbound(&mut self) -> Vec<Consumer<Envelope>> {
        std::mem::take(&mut self.inbound)
    }

    /// Takes back the inbound rings.
    pub(super) fn return_inbound(&mut self, inbound: Vec<Consumer<Envelope>>) {
        self.inbound = inbound;
    }

    /// Reports `bytes` more taken off inbound ring `i`, for its producer's byte budget.
    pub(super) fn consumed(&mut self, i: usize, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.consumed_local[i] += bytes;
        let cell =
            &self.shared.consumed[self.inbound_from[i] * self.shared.config.workers + self.me];
        // Relaxed: a flow-control figure only; the ring's own indices order the data.
        cell.store(self.consumed_local[i], Ordering::Relaxed);
    }

    /// Queues `env` for worker `to`: on its ring, or behind earlier overflow, behind every
    /// delivery batched for `to` before it.
    pub(super) fn send(&mut self, to: usize, env: Envelope) {
        self.seal(to);
        self.send_now(to, env);
    }

    /// Queues a delivery of `view` to the subscribers of `set` on worker `to`, in `to`'s
    /// pending block (see the module doc). For messages of at most
    /// `limits::BATCH_MSG_MAX_BYTES`.
    pub(super) fn send_batched(
        &mut self,
        to: usize,
        set: &Arc<SubSet<SubRef>>,
        view: &MsgView<'_>,
    ) {
        let p = &mut self.pending[to];
        let (start, end) = Msg::encode(view, &mut p.bytes);
        p.items.push((Arc::clone(set), start, end));
        self.pending_mask |= 1 << to;
        if p.bytes.len() >= limits::BATCH_BLOCK_BYTES {
            self.seal(to);
        }
    }

    /// Turns the deliveries pending for `to` into envelopes sharing one allocation: one
    /// envelope per run of consecutive deliveries to the same matched set (a [`Msg`] run,
    /// delivered in order by the receiver), so a stream of messages to one subject costs one
    /// ring slot and one reference count per batch, not per message.
    fn seal(&mut self, to: usize) {
        if self.pending_mask & (1 << to) == 0 {
            return;
        }
        self.pending_mask &= !(1 << to);
        let mut p = std::mem::take(&mut self.pending[to]);
        let block: Arc<[u8]> = Arc::from(&p.bytes[..]);
        let mut items = p.items.drain(..).peekable();
        while let Some((set, start, mut end)) = items.next() {
            while let Some((_, _, next_end)) =
                items.next_if(|(next, s, _)| *s == end && Arc::ptr_eq(next, &set))
            {
                end = next_end;
            }
            let msg = Msg::in_block(&block, start, end);
            self.send_now(to, Envelope::Deliver { msg, set });
        }
        drop(items);
        p.bytes.clear();
        if p.bytes.capacity() > 2 * limits::BATCH_BLOCK_BYTES {
            // One large batch (many messages just under the size limit) must not pin its
            // buffer for good.
            p.bytes = Vec::new();
        }
        self.pending[to] = p;
    }

    fn send_now(&mut self, to: usize, env: Envelope) {
        if !self.overflow[to].is_empty() {
            // Behind earlier overflow, to keep the ring's FIFO order.
            self.overflow[to].push_back(env);
            self.overflowing += 1;
            return;
        }
        if let Err(env) = self.try_send(to, env) {
            self.shared.counters[self.me].add(Counter::RingFull, 1);
            self.overflow[to].push_back(env);
            self.overflowing += 1;
        }
    }

    /// Pushes onto the ring toward `to` unless it is full in slots or in bytes.
    fn try_send(&mut self, to: usize, env: Envelope) -> Result<(), Envelope> {
        debug_assert_ne!(to, self.me, "a worker never sends to itself");
        let weight = env.weight();
        if self.over_budget(to, weight) {
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

    /// Whether `weight` more bytes would take the ring toward `to` past its byte budget
    /// (one envelope always fits an empty ring). Judged first against the consumer's counter
    /// as last read, which can only be behind (so the answer errs on "over"); only then is
    /// the shared counter read again. So a push in steady state touches no cache line the
    /// consumer writes, as the ring's own cached indices intend; reading it on every push
    /// undid that.
    fn over_budget(&mut self, to: usize, weight: u64) -> bool {
        let over = |consumed: u64| {
            let in_flight = self.produced[to] - consumed;
            in_flight > 0 && in_flight + weight > limits::RING_BUDGET_BYTES
        };
        if !over(self.consumed_seen[to]) {
            return false;
        }
        let cell = &self.shared.consumed[self.me * self.shared.config.workers + to];
        // Relaxed: see `consumed`; a stale value only makes the budget stricter.
        self.consumed_seen[to] = cell.load(Ordering::Relaxed);
        over(self.consumed_seen[to])
    }

    /// Seals every pending batch, publishes deferred pushes and wakes peers that are parked.
    pub(super) fn commit(&mut self) {
        let mut pending = self.pending_mask;
        while pending != 0 {
            let w = pending.trailing_zeros() as usize;
            pending &= pending - 1;
            self.seal(w);
        }
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

    /// Moves what the rings now take from the overflow queues onto them, in order.
    pub(super) fn retry_overflow(&mut self) {
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
}
