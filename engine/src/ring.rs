//! The bounded lock-free single-producer single-consumer ring that carries messages from one
//! worker to another (one ring per ordered pair of workers).
//!
//! [`ring`] returns the two halves. The [`Producer`] pushes either one item at a time
//! ([`Producer::try_push`], visible at once) or in batches ([`Producer::try_push_deferred`]
//! then one [`Producer::commit`]); the [`Consumer`] pops one item ([`Consumer::try_pop`]) or a
//! batch ([`Consumer::pop_batch`], which releases all the slots with one store). Batching is
//! the point: a batch of `n` items costs one store of the shared index on each side, not `n`.
//!
//! ```
//! let (mut tx, mut rx) = engine::ring::ring::<u64>(4);
//! for i in 0..3 {
//!     tx.try_push_deferred(i).unwrap(); // the ring has room for 4: cannot fail here
//! }
//! assert!(rx.is_empty()); // nothing is published before `commit`
//! tx.commit();
//! let mut seen = Vec::new();
//! assert_eq!(rx.pop_batch(usize::MAX, |v| seen.push(v)), 3);
//! assert_eq!(seen, [0, 1, 2]);
//! ```
//!
//! Both halves are [`Send`] (for `T: Send`), so each can move to its own thread, but neither is
//! [`Sync`]: a half is used by exactly one thread at a time, which is what makes "single
//! producer, single consumer" hold. Sharing a half by reference does not compile:
//!
//! ```compile_fail
//! let (tx, _rx) = engine::ring::ring::<u32>(2);
//! std::thread::scope(|s| {
//!     s.spawn(|| tx.is_abandoned()); // `Producer<u32>` is not `Sync`
//! });
//! ```
//!
//! ```compile_fail
//! let (_tx, rx) = engine::ring::ring::<u32>(2);
//! std::thread::scope(|s| {
//!     s.spawn(|| rx.is_abandoned()); // `Consumer<u32>` is not `Sync`
//! });
//! ```
//!
//! whereas moving a half into a thread does:
//!
//! ```
//! let (mut tx, mut rx) = engine::ring::ring::<u32>(2);
//! std::thread::scope(|s| {
//!     s.spawn(move || tx.try_push(7).unwrap()); // empty ring of 2: cannot be full
//! });
//! assert_eq!(rx.try_pop(), Some(7));
//! ```
//!
//! # Capacity
//!
//! The requested capacity is rounded up to a power of two, and to at least 2 (a one-slot ring
//! would make every push wait for the previous pop). It may not exceed [`MAX_CAPACITY`]
//! (2^30 slots): [`ring`] panics beyond that. The engine's rings use
//! [`RING_CAPACITY_ITEMS`](crate::limits::RING_CAPACITY_ITEMS).
//!
//! # Invariants
//!
//! Shared state (the private `Shared`): `head` and `tail`, each on its own cache line, and
//! `cap` slots. Indices are free-running `usize` counters that wrap on overflow; index `i`
//! lives in slot `i & mask`. Distances below are wrapping differences (`b.wrapping_sub(a)`).
//!
//! 1. **Capacity.** `cap = mask + 1` is a power of two with `2 <= cap <= MAX_CAPACITY`, so a
//!    distance in `0..=cap` is never ambiguous modulo `2^usize::BITS`.
//! 2. **Writers.** Only the producer stores `tail`; only the consumer stores `head`. Each index
//!    only moves forward. Each side reads the other's index only to refresh its cache.
//! 3. **Order.** Along the ring, always
//!    `head <= consumer.head <= consumer.cached_tail <= tail <= producer.tail <= head + cap`
//!    and `producer.cached_head <= head`, where `head`/`tail` are the shared indices,
//!    `producer.tail` counts deferred (written but uncommitted) pushes and `consumer.head`
//!    counts popped items whose slots are not yet released.
//! 4. **Initialised slots.** Exactly the slots with indices in `[consumer.head, producer.tail)`
//!    hold a live `T`:
//!    - `[consumer.head, tail)` are published: owned by the consumer, which moves them out;
//!    - `[tail, producer.tail)` are deferred: owned by the producer until `commit`;
//!    - `[head, consumer.head)` were moved out but not yet released: still owned by the
//!      consumer, uninitialised;
//!    - `[producer.tail, head + cap)` are free: owned by the producer, uninitialised.
//! 5. **Handing over.** The producer writes a slot, then stores `tail` with `Release`; the
//!    consumer loads `tail` with `Acquire` before reading the slot. The consumer moves a value
//!    out, then stores `head` with `Release`; the producer loads `head` with `Acquire` before
//!    overwriting the slot. So every slot access is ordered after the previous owner's last
//!    access, and no slot is ever touched by both sides at once.
//! 6. **Dropping.** Dropping the producer commits its deferred pushes; dropping the consumer
//!    releases its popped slots. So when the last half goes, `[head, tail)` is exactly the set of
//!    live items, and the `Drop` of `Shared` drops each of them once.
//!
//! # Why these choices
//!
//! - Cached indices: each side reads the other side's cache line only when its cached view says
//!   full (producer) or empty (consumer), or cannot satisfy a whole batch (`pop_batch`), rather
//!   than on every operation as a plain Lamport queue does.
//! - Free-running indices rather than indices kept in `0..cap` plus a "full" flag: no extra
//!   shared state, and full/empty are two subtractions.
//! - Deferred pushes rather than a slice-based chunk API (as rtrb's `write_chunk`): the
//!   dispatch loop pushes items one by one as it matches subscriptions and commits once per
//!   destination per read batch, with no slice juggling around the wrap point.
//! - Rejected: crossbeam's `ArrayQueue` (MPMC: a CAS per operation and a stamp per slot),
//!   flume and std's mpsc (MPSC, locks or linked blocks). This ring is the engine's hot path
//!   and must earn its place against them and rtrb in the ring benchmark under `benches/`.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use crossbeam_utils::CachePadded;

use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use crate::sync::{Arc, UnsafeCell};

/// Largest capacity [`ring`] accepts: 2^30 slots. Far above any sensible inter-worker ring
/// (the engine uses [`RING_CAPACITY_ITEMS`](crate::limits::RING_CAPACITY_ITEMS)), and small
/// enough that the wrapping index arithmetic stays unambiguous even with a 32-bit `usize`.
pub const MAX_CAPACITY: usize = 1 << 30;

/// Creates a ring holding `capacity` items, rounded up to a power of two and to at least 2.
///
/// # Panics
///
/// If `capacity` exceeds [`MAX_CAPACITY`] once rounded up: that is a configuration bug, not
/// a runtime condition.
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = match capacity.max(2).checked_next_power_of_two() {
        Some(cap) if cap <= MAX_CAPACITY => cap,
        _ => panic!("ring capacity {capacity} exceeds MAX_CAPACITY ({MAX_CAPACITY})"),
    };
    let buffer: Box<[Slot<T>]> = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        closed: AtomicBool::new(false),
        mask: cap - 1,
        buffer,
    });
    let producer = Producer {
        shared: Arc::clone(&shared),
        tail: 0,
        committed: 0,
        cached_head: 0,
        _not_sync: PhantomData,
    };
    let consumer = Consumer {
        shared,
        head: 0,
        cached_tail: 0,
        _not_sync: PhantomData,
    };
    (producer, consumer)
}

/// The pushing half of a [`ring`].
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Next index to write, counting deferred pushes.
    tail: usize,
    /// Last value stored to `shared.tail`.
    committed: usize,
    /// A past value of `shared.head` (never ahead of it).
    cached_head: usize,
    /// `Cell` is `Send` but not `Sync`: the half may move between threads but not be shared.
    _not_sync: PhantomData<Cell<()>>,
}

/// The popping half of a [`ring`].
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Next index to read.
    head: usize,
    /// A past value of `shared.tail` (never ahead of it).
    cached_tail: usize,
    /// `Cell` is `Send` but not `Sync`: the half may move between threads but not be shared.
    _not_sync: PhantomData<Cell<()>>,
}

/// The ring had no free slot; the value is handed back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Full<T>(pub T);

impl<T> Full<T> {
    /// The value that could not be pushed.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Full(..)")
    }
}

impl<T> fmt::Display for Full<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ring is full")
    }
}

impl<T> std::error::Error for Full<T> {}

impl<T> Producer<T> {
    /// Pushes `value` and publishes it (and any earlier deferred pushes) at once.
    ///
    /// Returns [`Full`] with the value when every slot is taken.
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<(), Full<T>> {
        self.try_push_deferred(value)?;
        self.commit();
        Ok(())
    }

    /// Writes `value` into the next slot without publishing it: the consumer sees it only after
    /// the next [`commit`](Self::commit) (or [`try_push`](Self::try_push), or dropping the
    /// producer). A deferred push still takes its slot.
    ///
    /// Returns [`Full`] with the value when every slot is taken (deferred ones included).
    #[inline]
    pub fn try_push_deferred(&mut self, value: T) -> Result<(), Full<T>> {
        if self.cached_free() == 0 {
            self.refresh_head();
            if self.cached_free() == 0 {
                return Err(Full(value));
            }
        }
        // SAFETY: `cached_free() > 0`, so `self.tail` is in `[producer.tail, head + cap)`:
        // a free slot owned by the producer (invariant 4), not yet initialised. Our `Acquire`
        // load of `head` (in `refresh_head`, now or earlier) ordered the consumer's move out of
        // this slot before this write.
        unsafe { self.shared.write(self.tail, value) };
        self.tail = self.tail.wrapping_add(1);
        Ok(())
    }

    /// Publishes every deferred push with one `Release` store; does nothing if there are none.
    #[inline]
    pub fn commit(&mut self) {
        if self.committed != self.tail {
            debug_assert!(self.shared.distance(self.committed, self.tail) <= self.capacity());
            // Release: pairs with the consumer's Acquire load of `tail` in `refresh_tail`, so the
            // slot writes of `try_push_deferred` are visible before the consumer reads them.
            self.shared.tail.store(self.tail, Ordering::Release);
            self.committed = self.tail;
        }
    }

    /// How many slots are free, deferred pushes counting as taken.
    ///
    /// This is a lower bound: the consumer may have freed more since the producer last looked.
    /// The consumer's index is reloaded only when the cached view says the ring is full, so
    /// calling this does not touch the consumer's cache line in the common case. At least this
    /// many `try_push*` calls will succeed.
    #[inline]
    pub fn free_slots(&mut self) -> usize {
        if self.cached_free() == 0 {
            self.refresh_head();
        }
        self.cached_free()
    }

    /// Pushes written with [`try_push_deferred`](Self::try_push_deferred) and not yet
    /// committed.
    #[inline]
    pub fn uncommitted(&self) -> usize {
        self.shared.distance(self.committed, self.tail)
    }

    /// Number of slots (the requested capacity rounded up).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// True once the [`Consumer`] has been dropped: nothing pushed from now on will be read.
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        // Acquire: pairs with the Release store in `Consumer::drop`, for symmetry with
        // `Consumer::is_abandoned` (the producer reads no slot based on it).
        self.shared.closed.load(Ordering::Acquire)
    }

    fn cached_free(&self) -> usize {
        let used = self.shared.distance(self.cached_head, self.tail);
        debug_assert!(used <= self.capacity(), "producer ran past the consumer");
        self.capacity() - used
    }

    #[cold]
    fn refresh_head(&mut self) {
        // Acquire: pairs with the consumer's Release store of `head` (in `try_pop`,
        // `pop_batch` or `Consumer::drop`), so its moves out of the slots we are about to
        // reuse happen before our writes to them.
        let head = self.shared.head.load(Ordering::Acquire);
        debug_assert!(
            self.shared.distance(self.cached_head, head) <= self.capacity(),
            "head moved backwards or past the producer"
        );
        self.cached_head = head;
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        // Publish deferred pushes so that they are read or, if the consumer is gone too,
        // dropped by `Shared::drop` (invariant 6).
        self.commit();
        // Release: pairs with the Acquire load in `Consumer::is_abandoned`, so a consumer that
        // sees the producer gone also sees the `commit` above.
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl<T> Consumer<T> {
    /// Pops the oldest published item, or `None` if there is none.
    #[inline]
    pub fn try_pop(&mut self) -> Option<T> {
        if self.head == self.cached_tail {
            self.refresh_tail();
            if self.head == self.cached_tail {
                return None;
            }
        }
        // SAFETY: `head != cached_tail <= tail`, so `self.head` is in `[consumer.head, tail)`:
        // a published, initialised slot owned by the consumer (invariant 4). Our Acquire load
        // of `tail` in `refresh_tail` ordered the producer's write of it before this read.
        let value = unsafe { self.shared.read(self.head) };
        self.head = self.head.wrapping_add(1);
        self.release();
        Some(value)
    }

    /// Pops up to `max` items, oldest first, passing each to `f`, then releases all their slots
    /// with one `Release` store. Returns how many were popped.
    ///
    /// The producer's index is reloaded only if the cached view holds fewer than `max` items.
    /// If `f` panics, the items already handed over are not dropped twice: their slots are
    /// released by the next pop or by dropping the consumer.
    #[inline]
    pub fn pop_batch(&mut self, max: usize, mut f: impl FnMut(T)) -> usize {
        let mut available = self.shared.distance(self.head, self.cached_tail);
        if available < max {
            self.refresh_tail();
            available = self.shared.distance(self.head, self.cached_tail);
        }
        let n = available.min(max);
        for _ in 0..n {
            // SAFETY: fewer than `n <= cached_tail - head` items were taken so far in this loop,
            // so `self.head` is in `[consumer.head, tail)`: published and initialised, owned by
            // the consumer (invariant 4); the Acquire load of `tail` that made `cached_tail`
            // ordered the producer's write of it before this read.
            let value = unsafe { self.shared.read(self.head) };
            // Advance before calling `f`: if it unwinds, this slot is already counted as moved
            // out and will not be read (or dropped) again.
            self.head = self.head.wrapping_add(1);
            f(value);
        }
        if n > 0 {
            self.release();
        }
        n
    }

    /// True if no published item is waiting. Reloads the producer's index when the cached view
    /// says empty, so a `false` from an earlier call is never contradicted and a `true` is
    /// current as of this call.
    #[inline]
    pub fn is_empty(&mut self) -> bool {
        if self.head == self.cached_tail {
            self.refresh_tail();
        }
        self.head == self.cached_tail
    }

    /// Number of slots (the requested capacity rounded up).
    #[inline]
    pub fn capacity(&self) -> usize {
        self.shared.mask + 1
    }

    /// True once the [`Producer`] has been dropped. Items it pushed before that are still
    /// poppable: drain until [`try_pop`](Self::try_pop) returns `None` after seeing this.
    #[inline]
    pub fn is_abandoned(&self) -> bool {
        // Acquire: pairs with the Release store in `Producer::drop`, which comes after its final
        // `commit`; so once this is true, a subsequent `refresh_tail` sees every item.
        self.shared.closed.load(Ordering::Acquire)
    }

    #[cold]
    fn refresh_tail(&mut self) {
        // Acquire: pairs with the producer's Release store of `tail` in `commit`, so its writes
        // to the published slots happen before our reads of them.
        let tail = self.shared.tail.load(Ordering::Acquire);
        debug_assert!(
            self.shared.distance(self.head, tail) <= self.capacity(),
            "tail moved backwards or past the consumer's capacity"
        );
        self.cached_tail = tail;
    }

    /// Hands the slots before `self.head` back to the producer.
    #[inline]
    fn release(&self) {
        debug_assert!(self.shared.distance(self.head, self.cached_tail) <= self.capacity());
        // Release: pairs with the producer's Acquire load of `head` in `refresh_head`, so our
        // moves out of the released slots happen before it overwrites them.
        self.shared.head.store(self.head, Ordering::Release);
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        // Release the slots popped by a `pop_batch` whose callback unwound, so `Shared::drop`
        // sees `head == consumer.head` (invariant 6).
        self.release();
        // Release: pairs with the Acquire load in `Producer::is_abandoned`.
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.capacity())
            .field("tail", &self.tail)
            .field("committed", &self.committed)
            .field("cached_head", &self.cached_head)
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.capacity())
            .field("head", &self.head)
            .field("cached_tail", &self.cached_tail)
            .finish()
    }
}

/// One slot: uninitialised or holding a live `T`, as invariant 4 says.
type Slot<T> = UnsafeCell<MaybeUninit<T>>;

/// The state both halves point to.
struct Shared<T> {
    /// Next index the consumer will release: every slot before it is free. Written only by the
    /// consumer.
    head: CachePadded<AtomicUsize>,
    /// Next index the producer will publish: every slot before it (and from `head`) holds an
    /// item. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
    /// Set by whichever half is dropped first (see `is_abandoned`).
    closed: AtomicBool,
    /// `cap - 1`; `cap` is a power of two.
    mask: usize,
    buffer: Box<[Slot<T>]>,
}

// SAFETY: `Shared` is reached from two threads only through one `Producer` and one `Consumer`,
// neither of which is `Sync`. Each slot is accessed by one side at a time, with ownership handed
// over through the Release/Acquire pairs on `head` and `tail` (invariants 4 and 5), so sharing
// `&Shared<T>` moves `T` values between threads but never shares one: `T: Send` suffices.
unsafe impl<T: Send> Sync for Shared<T> {}

// SAFETY: as for `Sync` above: a `T` is only ever moved between threads, never shared, and the
// atomics are `Send`. Spelt out because loom's `UnsafeCell` is not `Send` for every `T`.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Shared<T> {
    /// Wrapping distance from index `from` to index `to`.
    #[inline(always)]
    fn distance(&self, from: usize, to: usize) -> usize {
        to.wrapping_sub(from)
    }

    /// Moves `value` into the slot of `index`.
    ///
    /// # Safety
    ///
    /// The slot must be free (uninitialised) and owned by the producer, the caller being the
    /// producer (invariant 4), and the consumer's last read of it must happen before this call.
    #[inline(always)]
    unsafe fn write(&self, index: usize, value: T) {
        self.buffer[index & self.mask].with_mut(|slot| {
            // SAFETY: the caller owns the slot exclusively (this function's contract), so no
            // other reference to it exists while we write.
            unsafe { slot.write(MaybeUninit::new(value)) }
        });
    }

    /// Moves the value out of the slot of `index`, leaving it logically uninitialised.
    ///
    /// # Safety
    ///
    /// The slot must hold a live `T` owned by the caller (invariant 4), its write must happen
    /// before this call, and the caller must not read it again before it is rewritten.
    #[inline(always)]
    unsafe fn read(&self, index: usize) -> T {
        self.buffer[index & self.mask].with(|slot| {
            // SAFETY: the caller owns the slot exclusively and it is initialised (this
            // function's contract); ownership of the value moves to the caller, who never reads
            // the slot again, so it is not duplicated.
            unsafe { (*slot).assume_init_read() }
        })
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Relaxed: `&mut self` means both halves are gone; the Arc's last decrement synchronised
        // with the other half's (Release decrement, Acquire before drop), so their final stores
        // of `head` and `tail` are already visible.
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        debug_assert!(self.distance(head, tail) <= self.mask + 1);
        let mut index = head;
        while index != tail {
            // SAFETY: both halves are dropped, so `head == consumer.head` and
            // `tail == producer.tail` (invariant 6): `[head, tail)` is exactly the set of live
            // items, each dropped once here, and nothing else can touch them.
            drop(unsafe { self.read(index) });
            index = index.wrapping_add(1);
        }
    }
}

#[cfg(all(test, not(engine_loom)))]
mod tests {
    use std::rc::Rc;

    use super::*;

    #[test]
    fn capacity_is_rounded_up_to_a_power_of_two_at_least_two() {
        for (asked, got) in [(0, 2), (1, 2), (2, 2), (3, 4), (4, 4), (5, 8), (1000, 1024)] {
            let (tx, rx) = ring::<u8>(asked);
            assert_eq!((tx.capacity(), rx.capacity()), (got, got), "asked {asked}");
        }
    }

    #[test]
    #[should_panic(expected = "exceeds MAX_CAPACITY")]
    fn capacity_above_the_cap_panics() {
        let _ = ring::<()>(MAX_CAPACITY + 1);
    }

    #[test]
    #[should_panic(expected = "exceeds MAX_CAPACITY")]
    fn capacity_that_overflows_when_rounded_panics() {
        let _ = ring::<()>(usize::MAX);
    }

    #[test]
    fn push_until_full_then_pop_in_order() {
        let (mut tx, mut rx) = ring(4);
        for i in 0..4 {
            tx.try_push(i).unwrap(); // 4 slots, i < 4: not full
        }
        assert_eq!(tx.free_slots(), 0);
        assert_eq!(tx.try_push(9), Err(Full(9)));
        assert_eq!(rx.try_pop(), Some(0));
        assert_eq!(tx.free_slots(), 1);
        tx.try_push(4).unwrap(); // one slot was just freed
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(10, |v| out.push(v)), 4);
        assert_eq!(out, [1, 2, 3, 4]);
        assert_eq!(rx.try_pop(), None);
        assert!(rx.is_empty());
    }

    #[test]
    fn deferred_pushes_are_invisible_until_commit() {
        let (mut tx, mut rx) = ring(2);
        tx.try_push_deferred('a').unwrap(); // empty ring of 2
        tx.try_push_deferred('b').unwrap(); // second of 2 slots
        assert_eq!(tx.uncommitted(), 2);
        assert_eq!(tx.try_push_deferred('c'), Err(Full('c')));
        assert!(rx.is_empty());
        assert_eq!(rx.try_pop(), None);
        tx.commit();
        assert_eq!(tx.uncommitted(), 0);
        assert!(!rx.is_empty());
        assert_eq!(rx.try_pop(), Some('a'));
        assert_eq!(rx.try_pop(), Some('b'));
    }

    #[test]
    fn pop_batch_respects_max_and_zero() {
        let (mut tx, mut rx) = ring(8);
        for i in 0..6 {
            tx.try_push_deferred(i).unwrap(); // 6 < 8
        }
        tx.commit();
        assert_eq!(rx.pop_batch(0, |_| unreachable!()), 0);
        let mut out = Vec::new();
        assert_eq!(rx.pop_batch(4, |v| out.push(v)), 4);
        assert_eq!(rx.pop_batch(4, |v| out.push(v)), 2);
        assert_eq!(rx.pop_batch(4, |v| out.push(v)), 0);
        assert_eq!(out, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn indices_wrap_around_usize_max() {
        let (mut tx, mut rx) = ring::<usize>(4);
        // Start both sides just below the wrap point; the state is consistent (empty ring).
        let start = usize::MAX - 5;
        tx.shared.head.store(start, Ordering::Relaxed);
        tx.shared.tail.store(start, Ordering::Relaxed);
        (tx.tail, tx.committed, tx.cached_head) = (start, start, start);
        (rx.head, rx.cached_tail) = (start, start);
        let mut next_out = 0;
        for i in 0..100 {
            tx.try_push(i).unwrap(); // at most 2 items are ever queued in a ring of 4
            if i % 2 == 1 {
                rx.pop_batch(usize::MAX, |v| {
                    assert_eq!(v, next_out);
                    next_out += 1;
                });
            }
        }
        assert_eq!(next_out, 100);
    }

    #[test]
    fn abandoned_is_seen_from_both_sides() {
        let (tx, rx) = ring::<u8>(2);
        assert!(!tx.is_abandoned() && !rx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());
        let (mut tx, rx) = ring::<u8>(2);
        tx.try_push_deferred(1).unwrap(); // empty ring
        drop(tx);
        assert!(rx.is_abandoned());
        let mut rx = rx;
        assert_eq!(rx.try_pop(), Some(1), "dropping the producer commits");
    }

    #[test]
    fn remaining_items_are_dropped_once_whatever_the_drop_order() {
        for producer_first in [false, true] {
            let token = Rc::new(());
            let (mut tx, mut rx) = ring(4);
            for _ in 0..3 {
                tx.try_push(Rc::clone(&token)).unwrap(); // 3 < 4
            }
            tx.try_push_deferred(Rc::clone(&token)).unwrap(); // 4th of 4 slots
            drop(rx.try_pop());
            assert_eq!(Rc::strong_count(&token), 4);
            if producer_first {
                drop(tx);
                drop(rx);
            } else {
                drop(rx);
                drop(tx);
            }
            assert_eq!(Rc::strong_count(&token), 1);
        }
    }

    #[test]
    fn panicking_callback_neither_leaks_nor_double_drops() {
        let token = Rc::new(());
        let (mut tx, mut rx) = ring(8);
        for _ in 0..6 {
            tx.try_push(Rc::clone(&token)).unwrap(); // 6 < 8
        }
        let mut calls = 0;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rx.pop_batch(usize::MAX, |v| {
                calls += 1;
                drop(v);
                assert!(calls < 3, "boom");
            })
        }));
        assert!(result.is_err());
        assert_eq!(Rc::strong_count(&token), 4, "three popped and dropped");
        assert!(rx.try_pop().is_some());
        assert_eq!(Rc::strong_count(&token), 3);
        drop((tx, rx));
        assert_eq!(Rc::strong_count(&token), 1);
    }

    #[test]
    fn zero_sized_items() {
        let (mut tx, mut rx) = ring::<()>(3);
        while tx.try_push(()).is_ok() {}
        assert_eq!(rx.pop_batch(usize::MAX, drop), 4);
    }

    #[test]
    fn full_formats_without_needing_debug_on_the_item() {
        struct Opaque;
        let err = Full(Opaque);
        assert_eq!(format!("{err} {err:?}"), "ring is full Full(..)");
    }
}
