//! Two-thread stress tests of the SPSC ring and the doorbell: millions of items through small
//! rings (so the ring is full or empty all the time), checking order, that nothing is lost or
//! duplicated, and, with a drop-counting item, that nothing leaks or is dropped twice.
//!
//! Item counts are scaled down in debug builds so `cargo test -p engine` stays fast; run with
//! `--release` for the full counts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::Backoff;

use engine::park::Doorbell;
use engine::ring::{ring, Consumer, Producer};

use common::Rng;

/// Items per test: a few million in release, fewer in debug builds (about 20x slower).
const ITEMS: u64 = if cfg!(debug_assertions) {
    200_000
} else {
    2_000_000
};

/// A park longer than this means a lost wake-up (a real one takes microseconds).
const LOST_WAKE_UP_TIMEOUT: Duration = Duration::from_secs(20);

/// Creation and drop counters shared by every [`Tracked`] item of one test.
#[derive(Default)]
struct Counters {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl Counters {
    fn new() -> &'static Self {
        // Leaked so items can point at it without a reference count on the hot path; a few
        // bytes per test.
        Box::leak(Box::default())
    }

    fn assert_balanced(&self) {
        // Relaxed: read after the threads were joined, which synchronises with their updates.
        let (created, dropped) = (
            self.created.load(Ordering::Relaxed),
            self.dropped.load(Ordering::Relaxed),
        );
        assert_eq!(dropped, created, "items leaked or dropped twice");
    }
}

/// An item that counts its creations and drops.
struct Tracked {
    seq: u64,
    counters: &'static Counters,
}

impl Tracked {
    fn new(seq: u64, counters: &'static Counters) -> Self {
        // Relaxed: a counter, read only after joining.
        counters.created.fetch_add(1, Ordering::Relaxed);
        Self { seq, counters }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // Relaxed: a counter, read only after joining.
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
    }
}

fn push_one_by_one(mut tx: Producer<Tracked>, counters: &'static Counters) {
    let backoff = Backoff::new();
    for seq in 0..ITEMS {
        let mut item = Tracked::new(seq, counters);
        loop {
            match tx.try_push(item) {
                Ok(()) => break,
                Err(full) => {
                    item = full.0;
                    backoff.snooze();
                }
            }
        }
        backoff.reset();
    }
}

fn push_batched(mut tx: Producer<Tracked>, counters: &'static Counters) {
    let backoff = Backoff::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seq = 0;
    while seq < ITEMS {
        let want = 1 + rng.below(12);
        let mut pushed = 0;
        while pushed < want && seq < ITEMS {
            match tx.try_push_deferred(Tracked::new(seq, counters)) {
                Ok(()) => {
                    seq += 1;
                    pushed += 1;
                }
                // The item handed back is dropped (and counted); it is pushed again next round.
                Err(_) => break,
            }
        }
        tx.commit();
        if pushed == 0 {
            backoff.snooze();
        } else {
            backoff.reset();
        }
    }
}

fn pop_one_by_one(mut rx: Consumer<Tracked>) {
    let backoff = Backoff::new();
    let mut next = 0;
    while next < ITEMS {
        match rx.try_pop() {
            Some(item) => {
                assert_eq!(item.seq, next, "out of order, lost or duplicated");
                next += 1;
                backoff.reset();
            }
            None => backoff.snooze(),
        }
    }
    assert!(rx.try_pop().is_none(), "more items than were pushed");
}

fn pop_batched(mut rx: Consumer<Tracked>) {
    let backoff = Backoff::new();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next = 0;
    while next < ITEMS {
        let max = 1 + rng.below(16) as usize;
        let popped = rx.pop_batch(max, |item| {
            assert_eq!(item.seq, next, "out of order, lost or duplicated");
            next += 1;
        });
        if popped == 0 {
            backoff.snooze();
        } else {
            backoff.reset();
        }
    }
    assert!(rx.is_empty(), "more items than were pushed");
}

fn run(
    capacity: usize,
    producer: fn(Producer<Tracked>, &'static Counters),
    consumer: fn(Consumer<Tracked>),
) {
    let counters = Counters::new();
    let (tx, rx) = ring(capacity);
    let handle = thread::spawn(move || producer(tx, counters));
    consumer(rx);
    handle.join().unwrap(); // re-raises a producer panic
    counters.assert_balanced();
}

#[test]
fn unbatched_through_a_ring_of_two() {
    run(2, push_one_by_one, pop_one_by_one);
}

#[test]
fn unbatched_through_a_ring_of_64() {
    run(64, push_one_by_one, pop_one_by_one);
}

#[test]
fn batched_through_a_ring_of_eight() {
    run(8, push_batched, pop_batched);
}

#[test]
fn batched_producer_single_consumer() {
    run(8, push_batched, pop_one_by_one);
}

#[test]
fn single_producer_batched_consumer() {
    run(8, push_one_by_one, pop_batched);
}

/// The consumer leaves half-way with items in flight; the producer keeps pushing (some of it
/// deferred) until it notices. Every item is still dropped exactly once.
#[test]
fn consumer_leaves_early_and_nothing_leaks() {
    let counters = Counters::new();
    let (mut tx, mut rx) = ring::<Tracked>(16);
    let producer = thread::spawn(move || {
        let mut seq = 0;
        while !tx.is_abandoned() {
            // Fill, leaving the last push deferred: `Producer::drop` must commit it.
            while tx.try_push_deferred(Tracked::new(seq, counters)).is_ok() {
                seq += 1;
                if seq % 3 == 0 {
                    tx.commit();
                }
            }
            thread::yield_now();
        }
    });
    let mut next = 0;
    while next < ITEMS / 2 {
        if let Some(item) = rx.try_pop() {
            assert_eq!(item.seq, next);
            next += 1;
        } else {
            thread::yield_now();
        }
    }
    drop(rx);
    producer.join().unwrap(); // re-raises a producer panic
    counters.assert_balanced();
}

/// A worker that parks whenever its two inbound rings are empty, and two producers that ring
/// its doorbell after each batch: every item arrives (no lost wake-up), and wake-ups are far
/// fewer than items.
#[test]
fn doorbell_wakes_a_parked_worker_without_losing_wake_ups() {
    const PRODUCERS: u64 = 2;
    let items = ITEMS / 4;
    let bell = Arc::new(Doorbell::new());
    let wake_ups = Arc::new(AtomicUsize::new(0));
    let counters = Counters::new();
    let mut rings = Vec::new();
    let mut txs = Vec::new();
    for _ in 0..PRODUCERS {
        let (tx, rx) = ring::<Tracked>(32);
        txs.push(tx);
        rings.push(rx);
    }
    let worker = thread::current();
    let producers: Vec<_> = txs
        .into_iter()
        .map(|mut tx| {
            let (bell, wake_ups, worker) =
                (Arc::clone(&bell), Arc::clone(&wake_ups), worker.clone());
            thread::spawn(move || {
                let mut rng = Rng(0x1234_5678_9abc_def1);
                let mut seq = 0;
                while seq < items {
                    let batch = 1 + rng.below(8);
                    let mut pushed = 0;
                    while pushed < batch && seq < items {
                        if tx.try_push_deferred(Tracked::new(seq, counters)).is_err() {
                            break;
                        }
                        seq += 1;
                        pushed += 1;
                    }
                    tx.commit();
                    if bell.ring() {
                        // Relaxed: a counter, read after joining.
                        wake_ups.fetch_add(1, Ordering::Relaxed);
                        worker.unpark();
                    }
                    if pushed == 0 || rng.below(64) == 0 {
                        // Ring full, or now and then: let the worker drain and park.
                        thread::yield_now();
                    }
                }
            })
        })
        .collect();

    let mut next = vec![0; rings.len()];
    let mut prepares = 0usize;
    while next.iter().any(|&n| n < items) {
        for (rx, next) in rings.iter_mut().zip(&mut next) {
            rx.pop_batch(usize::MAX, |item| {
                assert_eq!(item.seq, *next, "out of order, lost or duplicated");
                *next += 1;
            });
        }
        if next.iter().all(|&n| n == items) {
            break;
        }
        bell.prepare_park();
        prepares += 1;
        if rings.iter_mut().any(|rx| !rx.is_empty()) {
            bell.cancel_park();
            continue;
        }
        let started = Instant::now();
        // `park_timeout` may also return spuriously; the loop re-checks the rings either way.
        thread::park_timeout(LOST_WAKE_UP_TIMEOUT);
        assert!(
            started.elapsed() < LOST_WAKE_UP_TIMEOUT,
            "lost wake-up: parked with items pending ({next:?} of {items} received)"
        );
        bell.cancel_park();
    }
    for producer in producers {
        producer.join().unwrap(); // re-raises a producer panic
    }
    drop(rings);
    counters.assert_balanced();
    // Relaxed: read after joining the producers.
    let wake_ups = wake_ups.load(Ordering::Relaxed);
    let total = (items * PRODUCERS) as usize;
    assert!(
        wake_ups <= prepares,
        "{wake_ups} wake-ups for {prepares} parks"
    );
    assert!(
        wake_ups < total / 2,
        "{wake_ups} wake-ups for {total} items"
    );
}
