//! Reading a subscriber-list snapshot: arc-swap against `RwLock<Arc<_>>`, with no writer
//! and while another thread replaces the list continuously.
//!
//! Each read takes the snapshot, reads its length and one element, and lets it go:
//!
//! - `arcswap_load`: `ArcSwap::load` (a guard, as a worker uses once per dispatch);
//! - `arcswap_load_full`: `ArcSwap::load_full` (an owned `Arc`);
//! - `rwlock_read_clone`: `RwLock::read` then clone the `Arc` and drop the lock, the usual
//!   hand-rolled snapshot;
//! - `rwlock_read_hold`: read through the lock guard without cloning.
//!
//! Groups: `snapshot/idle` and `snapshot/updating` (the writer stores a new list, then spins
//! about 100 ns, in a loop; on this 2-core machine it takes the other core).

#![forbid(unsafe_code)]

use std::hint::{self, black_box};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::Duration;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};

/// A subscriber list of `n` ids.
fn list(n: u64) -> Arc<Vec<u64>> {
    Arc::new((0..n).collect())
}

fn reads(c: &mut Criterion) {
    let swap = ArcSwap::new(list(LIST_LEN));
    let lock = RwLock::new(list(LIST_LEN));
    let lists = [list(LIST_LEN), list(LIST_LEN + 1)];
    for updating in [false, true] {
        let name = if updating {
            "snapshot/updating"
        } else {
            "snapshot/idle"
        };
        let stop = AtomicBool::new(false);
        let updates = AtomicU64::new(0);
        thread::scope(|s| {
            if updating {
                s.spawn(|| {
                    // Alternate between two prebuilt lists: the cost measured is the swap, not
                    // the allocator.
                    let mut i = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let next = Arc::clone(&lists[i % 2]);
                        swap.store(Arc::clone(&next));
                        // A poisoned lock means a reader panicked; the run is lost anyway.
                        if let Ok(mut w) = lock.write() {
                            *w = next;
                        }
                        i += 1;
                        for _ in 0..WRITER_PAUSE_SPINS {
                            hint::spin_loop();
                        }
                    }
                    updates.store(i as u64, Ordering::Relaxed);
                });
            }
            let mut g = c.benchmark_group(name);
            g.sample_size(30)
                .warm_up_time(Duration::from_millis(300))
                .measurement_time(Duration::from_secs(1));
            g.bench_function("arcswap_load", |b| {
                b.iter(|| {
                    let snap = swap.load();
                    black_box((snap.len(), snap.first().copied()))
                })
            });
            g.bench_function("arcswap_load_full", |b| {
                b.iter(|| {
                    let snap = swap.load_full();
                    black_box((snap.len(), snap.first().copied()))
                })
            });
            g.bench_function("rwlock_read_clone", |b| {
                b.iter(|| {
                    let snap = lock.read().map(|g| Arc::clone(&g)).ok();
                    black_box(snap.map(|s| (s.len(), s.first().copied())))
                })
            });
            g.bench_function("rwlock_read_hold", |b| {
                b.iter(|| {
                    let g = lock.read().ok();
                    black_box(g.map(|s| (s.len(), s.first().copied())))
                })
            });
            g.finish();
            stop.store(true, Ordering::Relaxed);
        });
        if updating {
            eprintln!(
                "snapshot/updating: the writer replaced the list {} times",
                updates.load(Ordering::Relaxed)
            );
        }
    }
}

/// Subscribers in the list.
const LIST_LEN: u64 = 100;

/// Spin hints between two updates (about 100 ns).
const WRITER_PAUSE_SPINS: u32 = 32;

criterion_group!(benches, reads);
criterion_main!(benches);
