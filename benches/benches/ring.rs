//! The engine's SPSC ring against rtrb, crossbeam's `ArrayQueue`, flume and
//! `std::sync::mpsc::sync_channel`, all with 4096 slots of `u64`:
//!
//! - `ring/throughput/single/*`: the producer thread pushes items one at a time, the
//!   consumer thread pops them one at a time.
//! - `ring/throughput/batched/*`: each side uses its queue's batch API where it has one
//!   (engine: `try_push_deferred` + `commit` per 64 items, `pop_batch`; rtrb: write and
//!   read chunks; flume: `drain`; std: `try_iter`). crossbeam's `ArrayQueue` has none.
//! - `ring/latency/*`: one item in flight, bounced between two threads over a pair of
//!   queues; the figure is the round trip divided by two.
//!
//! Quote the median sample (`estimates.json`), not the mean: on a busy machine a few samples
//! catch a descheduled thread and are off by orders of magnitude.
//!
//! Both sides wait through `benches::Spin` (spin, then yield), so no queue gains from a
//! different waiting policy. Every run checks the sum of what it received.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use benches::{size, Spin};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use crossbeam::queue::ArrayQueue;

/// A bounded single-producer single-consumer queue of `u64`, as the benchmark drives it.
trait Queue {
    /// Name in the report.
    const NAME: &'static str;
    /// The sending half.
    type Tx: Send;
    /// The receiving half.
    type Rx: Send;

    /// A queue of `cap` slots.
    fn pair(cap: usize) -> (Self::Tx, Self::Rx);
    /// Sends one value, visible to the receiver at once; hands it back when full.
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64>;
    /// Receives one value.
    fn try_recv(rx: &mut Self::Rx) -> Option<u64>;

    /// Sends `0..total` using the queue's batch API, if any.
    fn send_batched(tx: &mut Self::Tx, total: u64) {
        send_single::<Self>(tx, total);
    }
    /// Receives `total` values using the queue's batch API, if any; returns their sum.
    fn recv_batched(rx: &mut Self::Rx, total: u64) -> u64 {
        recv_single::<Self>(rx, total)
    }
}

fn send_single<Q: Queue + ?Sized>(tx: &mut Q::Tx, total: u64) {
    let mut spin = Spin::new();
    for i in 0..total {
        let mut v = i;
        while let Err(back) = Q::try_send(tx, v) {
            v = back;
            spin.wait();
        }
        spin.reset();
    }
}

fn recv_single<Q: Queue + ?Sized>(rx: &mut Q::Rx, total: u64) -> u64 {
    let mut spin = Spin::new();
    let mut sum = 0u64;
    let mut got = 0;
    while got < total {
        match Q::try_recv(rx) {
            Some(v) => {
                sum = sum.wrapping_add(v);
                got += 1;
                spin.reset();
            }
            None => spin.wait(),
        }
    }
    sum
}

/// The engine's ring.
struct Engine;

impl Queue for Engine {
    const NAME: &'static str = "engine";
    type Tx = engine::ring::Producer<u64>;
    type Rx = engine::ring::Consumer<u64>;

    fn pair(cap: usize) -> (Self::Tx, Self::Rx) {
        engine::ring::ring(cap)
    }
    #[inline]
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64> {
        tx.try_push(v).map_err(|full| full.into_inner())
    }
    #[inline]
    fn try_recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.try_pop()
    }
    fn send_batched(tx: &mut Self::Tx, total: u64) {
        let mut spin = Spin::new();
        let mut i = 0;
        while i < total {
            let end = (i + BATCH).min(total);
            while i < end {
                match tx.try_push_deferred(i) {
                    Ok(()) => i += 1,
                    Err(_) => {
                        // Full: publish what is written so the consumer can make room.
                        tx.commit();
                        spin.wait();
                    }
                }
            }
            tx.commit();
            spin.reset();
        }
    }
    fn recv_batched(rx: &mut Self::Rx, total: u64) -> u64 {
        let mut spin = Spin::new();
        let mut sum = 0u64;
        let mut got = 0;
        while got < total {
            let n = rx.pop_batch(CAP, |v| sum = sum.wrapping_add(v));
            if n == 0 {
                spin.wait();
            } else {
                got += n as u64;
                spin.reset();
            }
        }
        sum
    }
}

/// rtrb, the SPSC ring the engine's is most like.
struct Rtrb;

impl Queue for Rtrb {
    const NAME: &'static str = "rtrb";
    type Tx = rtrb::Producer<u64>;
    type Rx = rtrb::Consumer<u64>;

    fn pair(cap: usize) -> (Self::Tx, Self::Rx) {
        rtrb::RingBuffer::new(cap)
    }
    #[inline]
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64> {
        tx.push(v).map_err(|rtrb::PushError::Full(v)| v)
    }
    #[inline]
    fn try_recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.pop().ok()
    }
    fn send_batched(tx: &mut Self::Tx, total: u64) {
        let mut spin = Spin::new();
        let mut i = 0;
        while i < total {
            let want = BATCH.min(total - i) as usize;
            let n = want.min(tx.slots());
            if n == 0 {
                spin.wait();
                continue;
            }
            // `slots()` said `n` are free, and only this thread fills them.
            if let Ok(chunk) = tx.write_chunk_uninit(n) {
                i += chunk.fill_from_iter(i..) as u64;
            }
            spin.reset();
        }
    }
    fn recv_batched(rx: &mut Self::Rx, total: u64) -> u64 {
        let mut spin = Spin::new();
        let mut sum = 0u64;
        let mut got = 0;
        while got < total {
            let n = rx.slots();
            if n == 0 {
                spin.wait();
                continue;
            }
            if let Ok(chunk) = rx.read_chunk(n) {
                for v in chunk {
                    sum = sum.wrapping_add(v);
                }
                got += n as u64;
            }
            spin.reset();
        }
        sum
    }
}

/// crossbeam's bounded MPMC queue (no batch API).
struct Crossbeam;

impl Queue for Crossbeam {
    const NAME: &'static str = "crossbeam_arrayqueue";
    type Tx = Arc<ArrayQueue<u64>>;
    type Rx = Arc<ArrayQueue<u64>>;

    fn pair(cap: usize) -> (Self::Tx, Self::Rx) {
        let q = Arc::new(ArrayQueue::new(cap));
        (Arc::clone(&q), q)
    }
    #[inline]
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64> {
        tx.push(v)
    }
    #[inline]
    fn try_recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.pop()
    }
}

/// flume's bounded MPMC channel.
struct Flume;

impl Queue for Flume {
    const NAME: &'static str = "flume";
    type Tx = flume::Sender<u64>;
    type Rx = flume::Receiver<u64>;

    fn pair(cap: usize) -> (Self::Tx, Self::Rx) {
        flume::bounded(cap)
    }
    #[inline]
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64> {
        tx.try_send(v).map_err(|e| e.into_inner())
    }
    #[inline]
    fn try_recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.try_recv().ok()
    }
    fn recv_batched(rx: &mut Self::Rx, total: u64) -> u64 {
        let mut spin = Spin::new();
        let mut sum = 0u64;
        let mut got = 0;
        while got < total {
            let mut n = 0u64;
            for v in rx.drain() {
                sum = sum.wrapping_add(v);
                n += 1;
            }
            if n == 0 {
                spin.wait();
            } else {
                got += n;
                spin.reset();
            }
        }
        sum
    }
}

/// std's bounded MPSC channel.
struct Std;

impl Queue for Std {
    const NAME: &'static str = "std_sync_channel";
    type Tx = mpsc::SyncSender<u64>;
    type Rx = mpsc::Receiver<u64>;

    fn pair(cap: usize) -> (Self::Tx, Self::Rx) {
        mpsc::sync_channel(cap)
    }
    #[inline]
    fn try_send(tx: &mut Self::Tx, v: u64) -> Result<(), u64> {
        tx.try_send(v).map_err(|e| match e {
            mpsc::TrySendError::Full(v) | mpsc::TrySendError::Disconnected(v) => v,
        })
    }
    #[inline]
    fn try_recv(rx: &mut Self::Rx) -> Option<u64> {
        rx.try_recv().ok()
    }
    fn recv_batched(rx: &mut Self::Rx, total: u64) -> u64 {
        let mut spin = Spin::new();
        let mut sum = 0u64;
        let mut got = 0;
        while got < total {
            let mut n = 0u64;
            for v in rx.try_iter() {
                sum = sum.wrapping_add(v);
                n += 1;
            }
            if n == 0 {
                spin.wait();
            } else {
                got += n;
                spin.reset();
            }
        }
        sum
    }
}

/// Moves `total` items from this thread to a consumer thread; returns the time from the
/// consumer being ready to it having received the last item.
fn transfer<Q: Queue>(total: u64, batched: bool) -> Duration {
    let (mut tx, mut rx) = Q::pair(CAP);
    let ready = &AtomicBool::new(false);
    thread::scope(|s| {
        // `move`: the consumer half lives on its own thread's stack. Borrowed from this
        // stack, it would share a cache line with the producer half, and each side's private
        // index updates would bounce that line between the cores (false sharing).
        let consumer = s.spawn(move || {
            ready.store(true, Ordering::Release);
            let sum = if batched {
                Q::recv_batched(&mut rx, total)
            } else {
                recv_single::<Q>(&mut rx, total)
            };
            (Instant::now(), sum)
        });
        let mut spin = Spin::new();
        while !ready.load(Ordering::Acquire) {
            spin.wait();
        }
        let start = Instant::now();
        if batched {
            Q::send_batched(&mut tx, total);
        } else {
            send_single::<Q>(&mut tx, total);
        }
        let (end, sum) = consumer.join().expect("consumer thread panicked");
        assert_eq!(
            sum,
            total * total.saturating_sub(1) / 2,
            "{} lost items",
            Q::NAME
        );
        end - start
    })
}

/// Bounces one item `rounds` times between this thread and an echo thread; returns half
/// the total time (the one-way latency times `rounds`).
fn ping_pong<Q: Queue>(rounds: u64) -> Duration {
    let (mut ping_tx, mut ping_rx) = Q::pair(CAP);
    let (mut pong_tx, mut pong_rx) = Q::pair(CAP);
    let ready = &AtomicBool::new(false);
    thread::scope(|s| {
        // `move`: the echo side's halves live on its own stack (see `transfer`).
        s.spawn(move || {
            ready.store(true, Ordering::Release);
            let mut spin = Spin::new();
            for _ in 0..rounds {
                let v = loop {
                    if let Some(v) = Q::try_recv(&mut ping_rx) {
                        break v;
                    }
                    spin.wait();
                };
                spin.reset();
                let mut v = v;
                while let Err(back) = Q::try_send(&mut pong_tx, v) {
                    v = back;
                    spin.wait();
                }
            }
        });
        let mut spin = Spin::new();
        while !ready.load(Ordering::Acquire) {
            spin.wait();
        }
        let start = Instant::now();
        for i in 0..rounds {
            let mut v = i;
            while let Err(back) = Q::try_send(&mut ping_tx, v) {
                v = back;
                spin.wait();
            }
            let got = loop {
                if let Some(got) = Q::try_recv(&mut pong_rx) {
                    break got;
                }
                spin.wait();
            };
            spin.reset();
            assert_eq!(got, i, "{} reordered items", Q::NAME);
        }
        start.elapsed() / 2
    })
}

fn throughput(c: &mut Criterion) {
    let items = size(1 << 16, 1 << 10) as u64;
    for (mode, batched) in [("single", false), ("batched", true)] {
        let mut g = c.benchmark_group(format!("ring/throughput/{mode}"));
        g.throughput(Throughput::Elements(items))
            .sampling_mode(SamplingMode::Flat)
            .sample_size(SAMPLES)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        macro_rules! run {
            ($q:ty) => {
                g.bench_function(BenchmarkId::from_parameter(<$q>::NAME), |b| {
                    b.iter_custom(|iters| transfer::<$q>(iters * items, batched))
                });
            };
        }
        run!(Engine);
        run!(Rtrb);
        if !batched {
            // No batch API: its batched figure would repeat this one.
            run!(Crossbeam);
        }
        run!(Flume);
        run!(Std);
        g.finish();
    }
}

fn latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring/latency");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    macro_rules! run {
        ($q:ty) => {
            g.bench_function(BenchmarkId::from_parameter(<$q>::NAME), |b| {
                b.iter_custom(ping_pong::<$q>)
            });
        };
    }
    run!(Engine);
    run!(Rtrb);
    run!(Crossbeam);
    run!(Flume);
    run!(Std);
    g.finish();
}

/// Slots in every queue: the engine's `RING_CAPACITY_ITEMS`.
const CAP: usize = engine::limits::RING_CAPACITY_ITEMS;

/// Samples per benchmark: many short ones (flat sampling), so that on a shared machine the
/// median sample is one the scheduler left alone.
const SAMPLES: usize = 50;

/// Items per deferred-push batch: about one read buffer's worth of small publishes.
const BATCH: u64 = 64;

criterion_group!(benches, throughput, latency);
criterion_main!(benches);
