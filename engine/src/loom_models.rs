//! Loom models of the SPSC ring and the doorbell, through the `engine::sync` shim.
//!
//! These are unit tests of the library compiled with `--cfg engine_loom`, passed to the
//! engine crate alone (so no other crate is rebuilt) by `scripts/loom.sh`:
//!
//! ```text
//! cargo rustc -p engine --lib --profile test -- --cfg engine_loom   # then run the binary
//! ```
//!
//! Preemptions are bounded at 3 by default (`LOOM_MAX_PREEMPTIONS` overrides it). Without
//! `--cfg engine_loom` this module is not compiled, so a plain `cargo test` never runs it.

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Notify};
use loom::thread;

use crate::park::Doorbell;
use crate::ring::{ring, Consumer, Producer};

/// Default preemption bound: every model below finishes in seconds with it, and the bugs these
/// models target (a missing Release/Acquire, a lost wake-up) need at most two preemptions.
const DEFAULT_MAX_PREEMPTIONS: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_MAX_PREEMPTIONS);
    }
    builder.check(f);
}

/// Pushes `items` one by one, yielding while the ring is full.
fn push_all(tx: &mut Producer<usize>, items: std::ops::Range<usize>) {
    for mut value in items {
        while let Err(full) = tx.try_push(value) {
            value = full.0;
            thread::yield_now();
        }
    }
}

/// Pops until `n` items arrived, checking they come in order `0..n`.
fn pop_in_order(rx: &mut Consumer<usize>, n: usize) {
    let mut next = 0;
    while next < n {
        match rx.try_pop() {
            Some(v) => {
                assert_eq!(v, next);
                next += 1;
            }
            None => thread::yield_now(),
        }
    }
    assert_eq!(rx.try_pop(), None);
}

#[test]
fn push_pop_in_order() {
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(4);
        let producer = thread::spawn(move || push_all(&mut tx, 0..3));
        pop_in_order(&mut rx, 3);
        producer.join().unwrap(); // the producer thread does not panic
    });
}

#[test]
fn wrap_around_with_capacity_two() {
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(2);
        let producer = thread::spawn(move || push_all(&mut tx, 0..5));
        pop_in_order(&mut rx, 5);
        producer.join().unwrap(); // the producer thread does not panic
    });
}

#[test]
fn deferred_pushes_commit_and_pop_batch() {
    model(|| {
        let (mut tx, mut rx) = ring::<usize>(2);
        let producer = thread::spawn(move || {
            let mut next = 0;
            while next < 4 {
                // Fill whatever is free without publishing, then publish it all at once.
                while next < 4 && tx.try_push_deferred(next).is_ok() {
                    next += 1;
                }
                tx.commit();
                if tx.free_slots() == 0 {
                    thread::yield_now();
                }
            }
        });
        let mut next = 0;
        while next < 4 {
            let popped = rx.pop_batch(usize::MAX, |v| {
                assert_eq!(v, next);
                next += 1;
            });
            if popped == 0 {
                thread::yield_now();
            }
        }
        producer.join().unwrap(); // the producer thread does not panic
    });
}

/// Counts its drops in a shared counter.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn remaining_items_are_dropped_exactly_once() {
    model(|| {
        let drops = Arc::new(AtomicUsize::new(0));
        let (mut tx, mut rx) = ring::<Counted>(2);
        let counter = Arc::clone(&drops);
        let producer = thread::spawn(move || {
            // One published, one deferred (committed by the drop), one maybe refused.
            let _ = tx.try_push(Counted(Arc::clone(&counter)));
            let _ = tx.try_push_deferred(Counted(Arc::clone(&counter)));
            let _ = tx.try_push(Counted(counter)); // dropped on the spot if the ring is full
        });
        // Races with the producer: pops zero, one or two items, then drops the consumer
        // (possibly before the producer is done).
        drop(rx.try_pop());
        drop(rx.try_pop());
        drop(rx);
        producer.join().unwrap(); // the producer thread does not panic
        assert_eq!(drops.load(Ordering::Relaxed), 3);
    });
}

/// The doorbell's core claim: after the worker announces parking and finds its ring empty,
/// the producer's `ring` returns true; so either the worker sees the item, or it gets woken.
#[test]
fn doorbell_no_lost_wake_up() {
    model(|| {
        let bell = Arc::new(Doorbell::new());
        let (mut tx, mut rx) = ring::<usize>(2);
        let producer = {
            let bell = Arc::clone(&bell);
            thread::spawn(move || {
                tx.try_push(7).unwrap(); // an empty ring of 2 is not full
                bell.ring()
            })
        };
        bell.prepare_park();
        let saw_item = !rx.is_empty();
        if saw_item {
            bell.cancel_park();
        }
        let woke = producer.join().unwrap(); // the producer thread does not panic
        assert!(
            saw_item || woke,
            "lost wake-up: worker parked and nobody woke it"
        );
    });
}

/// The whole park loop with a real blocking wait (loom's `Notify`, which also models spurious
/// wake-ups) and two producers on two rings: a lost wake-up shows up as a deadlock.
#[test]
fn doorbell_park_loop_two_producers() {
    model(|| {
        let bell = Arc::new(Doorbell::new());
        let notify = Arc::new(Notify::new());
        let mut rings = Vec::new();
        let mut producers = Vec::new();
        for id in 0..2 {
            let (mut tx, rx) = ring::<usize>(2);
            rings.push(rx);
            let (bell, notify) = (Arc::clone(&bell), Arc::clone(&notify));
            producers.push(thread::spawn(move || {
                tx.try_push(id).unwrap(); // an empty ring of 2 is not full
                if bell.ring() {
                    notify.notify();
                }
            }));
        }
        let mut received = 0;
        loop {
            for rx in &mut rings {
                while rx.try_pop().is_some() {
                    received += 1;
                }
            }
            if received == 2 {
                break;
            }
            bell.prepare_park();
            if rings.iter_mut().any(|rx| !rx.is_empty()) {
                bell.cancel_park();
                continue;
            }
            notify.wait();
            bell.cancel_park();
        }
        for producer in producers {
            producer.join().unwrap(); // producer threads do not panic
        }
    });
}
