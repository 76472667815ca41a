//! In-process fan-out, without sockets: one publish to 1,000 subscribers of one subject.
//!
//! This follows the engine's worker (`dispatch`, `handle_envelope`, `deliver`,
//! `flush_dirty`): the publishing worker matches the subject on a `Sublist<SubRef>`,
//! writes one `MSG` per local subscriber into that subscriber's `Outbound`, and sends one
//! `Envelope::Deliver { msg, set }` over an engine ring to each other worker holding
//! subscribers; that worker pops it and writes one `MSG` per subscriber of its own. Each
//! worker then flushes the touched `Outbound`s into a sink that takes everything, as it
//! does once per read batch. A publish counts as done when both workers have flushed.
//!
//! - `fanout/1000_subs/2_workers`: subscribers alternate between the two workers; the
//!   benchmark thread is worker 0, a second thread is worker 1.
//! - `fanout/1000_subs/1_worker`: every subscriber on the publishing worker, for reference.
//!
//! Throughput is in deliveries (`MSG` frames written) per second.

#![forbid(unsafe_code)]

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use benches::{payload, Spin};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crossbeam::utils::CachePadded;
use engine::envelope::{Admit, ConnKey, Envelope, Msg, MsgView, Origin, SubRef, SubState};
use engine::limits::{
    DEFAULT_MAX_PENDING_BYTES, MAX_IOVECS, OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS,
    RING_CAPACITY_ITEMS,
};
use engine::ring::{ring, Consumer, Producer};
use engine::subject::Pattern;
use engine::sublist::{Placed, SubSet, Sublist};
use net::outbound::{ChunkPool, Outbound};
use net::proto::encode_msg;

/// One worker's connections, reduced to what delivery touches.
struct Worker {
    id: usize,
    /// Outbound queue per connection slot.
    outs: Vec<Outbound>,
    pool: ChunkPool,
    /// Slots written to since the last flush.
    dirty: Vec<usize>,
    delivered: u64,
}

impl Worker {
    fn new(id: usize, conns: usize) -> Worker {
        Worker {
            id,
            outs: (0..conns).map(|_| Outbound::default()).collect(),
            pool: ChunkPool::new(OUTBOUND_CHUNK_BYTES, OUTBOUND_POOL_CHUNKS),
            dirty: Vec::with_capacity(conns),
            delivered: 0,
        }
    }

    /// The worker's `deliver`: admit, encode, check the pending cap, mark dirty.
    fn deliver(&mut self, sub: &SubRef, view: &MsgView<'_>) {
        let st = &*sub.0;
        if (!view.origin.echo && view.origin.conn == st.conn) || st.admit() == Admit::Drop {
            return;
        }
        let slot = st.conn.slot as usize;
        let Some(out) = self.outs.get_mut(slot) else {
            return;
        };
        let was_empty = out.is_empty();
        encode_msg(
            &mut out.writer(&mut self.pool),
            view.subject,
            &st.sid,
            view.reply,
            view.payload,
        );
        assert!(out.pending_bytes() <= DEFAULT_MAX_PENDING_BYTES);
        if was_empty {
            self.dirty.push(slot);
        }
        self.delivered += 1;
    }

    /// Delivers to every plain subscriber of `set` that lives on this worker.
    fn deliver_set(&mut self, set: &SubSet<SubRef>, view: &MsgView<'_>) {
        let me = self.id;
        for sub in set.plain.iter().filter(|s| s.worker() == me) {
            self.deliver(sub, view);
        }
    }

    /// The worker's `flush_dirty`, into a sink that takes everything.
    fn flush_dirty(&mut self) {
        for slot in self.dirty.drain(..) {
            if let Some(out) = self.outs.get_mut(slot) {
                // `io::sink` never fails nor blocks.
                let _ = out.flush_to(&mut io::sink(), &mut self.pool, MAX_IOVECS);
            }
        }
    }
}

/// The subscriptions: `subs` subscribers of `SUBJECT`, alternating over `workers` workers.
fn subscribe(subs: usize, workers: usize) -> Sublist<SubRef> {
    let sublist = Sublist::new();
    // The benchmark's subject is well-formed by construction.
    let pattern = Pattern::parse(SUBJECT).expect("benchmark subject is valid");
    for i in 0..subs {
        let conn = ConnKey {
            worker: (i % workers) as u16,
            slot: (i / workers) as u32,
            gen: 0,
        };
        let sid = (i + 1).to_string();
        let sub = SubRef(Arc::new(SubState::new(
            conn,
            sid.as_bytes(),
            pattern.clone(),
            None,
        )));
        sublist.insert(&pattern, None, sub);
    }
    sublist
}

/// The publishing worker's `dispatch` for one message; returns the envelopes sent.
fn dispatch(
    w0: &mut Worker,
    sublist: &Sublist<SubRef>,
    sets: &mut Vec<Arc<SubSet<SubRef>>>,
    to_w1: Option<&mut Producer<Envelope>>,
    view: &MsgView<'_>,
) -> u64 {
    sublist.matches(view.subject, sets);
    let mut owned: Option<Msg> = None;
    let mut sent = 0;
    let mut to_w1 = to_w1;
    for set in sets.iter() {
        let mut mask = set.plain_workers;
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if w == w0.id {
                w0.deliver_set(set, view);
            } else if let Some(tx) = to_w1.as_deref_mut() {
                let msg = owned.get_or_insert_with(|| Msg::from_view(view)).clone();
                let mut env = Envelope::Deliver {
                    msg,
                    set: set.clone(),
                };
                let mut spin = Spin::new();
                while let Err(full) = tx.try_push_deferred(env) {
                    env = full.into_inner();
                    tx.commit();
                    spin.wait();
                }
                sent += 1;
            }
        }
    }
    if let Some(tx) = to_w1 {
        tx.commit();
    }
    sets.clear();
    w0.flush_dirty();
    sent
}

/// Worker 1's loop: drain the ring, deliver, flush, report progress, until told to stop.
fn run_worker(mut w1: Worker, mut rx: Consumer<Envelope>, done: &AtomicU64, stop: &AtomicBool) {
    let mut handled = 0u64;
    let mut spin = Spin::new();
    loop {
        let n = rx.pop_batch(RING_CAPACITY_ITEMS, |env| {
            if let Envelope::Deliver { msg, set } = env {
                let view = msg.view();
                w1.deliver_set(&set, &view);
            }
        });
        if n == 0 {
            // Relaxed: the flag only ends the loop; nothing is read on its account.
            if stop.load(Ordering::Relaxed) && rx.is_empty() {
                return;
            }
            spin.wait();
            continue;
        }
        spin.reset();
        w1.flush_dirty();
        handled += n as u64;
        // Release: pairs with the benchmark thread's Acquire load, which then knows these
        // deliveries are flushed.
        done.store(handled, Ordering::Release);
    }
}

fn fanout(c: &mut Criterion) {
    let subs = SUBSCRIBERS;
    let body = payload(PAYLOAD_BYTES);
    let view = MsgView {
        subject: SUBJECT,
        reply: None,
        headers: None,
        payload: &body,
        origin: Origin {
            // The publisher: a connection on worker 0 that subscribed to nothing.
            conn: ConnKey {
                worker: 0,
                slot: u32::MAX,
                gen: 0,
            },
            no_responders: false,
            echo: true,
        },
    };
    let mut g = c.benchmark_group(format!("fanout/{subs}_subs"));
    g.throughput(Throughput::Elements(subs as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));

    // Two workers: this thread publishes and is worker 0; worker 1 runs on its own thread.
    {
        let sublist = subscribe(subs, 2);
        let (mut tx, rx) = ring::<Envelope>(RING_CAPACITY_ITEMS);
        // Padded: written by worker 1 per batch, so it must not share a line with this
        // thread's locals.
        let done = CachePadded::new(AtomicU64::new(0));
        let stop = AtomicBool::new(false);
        let mut w0 = Worker::new(0, subs.div_ceil(2));
        let w1 = Worker::new(1, subs.div_ceil(2));
        let mut sets = Vec::with_capacity(4);
        let mut sent = 0u64;
        thread::scope(|s| {
            let (done, stop) = (&*done, &stop);
            s.spawn(move || run_worker(w1, rx, done, stop));
            g.bench_function(BenchmarkId::from_parameter("2_workers"), |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        sent += dispatch(&mut w0, &sublist, &mut sets, Some(&mut tx), &view);
                    }
                    let mut spin = Spin::new();
                    // Acquire: pairs with worker 1's Release store of its progress.
                    while done.load(Ordering::Acquire) < sent {
                        spin.wait();
                    }
                    start.elapsed()
                })
            });
            // Relaxed: see `run_worker`; the ring carries the data.
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(w0.delivered, w0_expected(&sublist, sent, &w0));
    }

    // One worker: everything local.
    {
        let sublist = subscribe(subs, 1);
        let mut w0 = Worker::new(0, subs);
        let mut sets = Vec::with_capacity(4);
        g.bench_function(BenchmarkId::from_parameter("1_worker"), |b| {
            b.iter(|| dispatch(&mut w0, &sublist, &mut sets, None, &view))
        });
    }
    g.finish();
}

/// Sanity check: worker 0 wrote one frame per local subscriber per publish. (Worker 1's
/// count is checked through `done`, which counts envelopes it delivered.)
fn w0_expected(sublist: &Sublist<SubRef>, sent: u64, w0: &Worker) -> u64 {
    let mut sets = Vec::new();
    sublist.matches(SUBJECT, &mut sets);
    let local: usize = sets
        .iter()
        .map(|s| s.plain.iter().filter(|p| p.worker() == w0.id).count())
        .sum();
    // One envelope went to worker 1 per publish, so `sent` counts publishes.
    sent * local as u64
}

/// The subject every subscriber listens on.
const SUBJECT: &[u8] = b"chat.room.1";

/// Subscribers of that subject.
const SUBSCRIBERS: usize = 1000;

/// Payload size: a chat message.
const PAYLOAD_BYTES: usize = 128;

criterion_group!(benches, fanout);
criterion_main!(benches);
