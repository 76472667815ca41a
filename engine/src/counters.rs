//! Per-worker counters: written only by their own worker (no shared writes, no atomic
//! read-modify-write), readable by anyone at run time.
//!
//! The counters are one list, the `counters!` invocation below: it declares each [`Counter`]
//! with its doc and its snake_case [`Counter::name`], and [`Counter::ALL`] in index order.
//! [`Counters`] holds one atomic per counter and a [`Snapshot`] one value per counter, both
//! arrays indexed by [`Counter`], so whatever exports them (the SIGUSR1 log, a metrics
//! endpoint) walks [`Snapshot::iter`] and a new counter is one new entry in that list.

use std::fmt;
use std::ops::Index;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Serialize, Serializer};

/// Declares [`Counter`], [`Counter::ALL`], [`Counter::COUNT`] and [`Counter::name`] from one
/// list, so that the variants, their order and their names cannot disagree (the rejected
/// alternative, a hand-kept `ALL` array beside the enum, compiles with a variant missing).
macro_rules! counters {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// Which counter to bump.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Counter {
            $($(#[$doc])* $variant,)+
        }

        impl Counter {
            /// Every counter, in index order (`Counter::ALL[c as usize] == c`).
            pub const ALL: [Counter; Counter::COUNT] = [$(Counter::$variant,)+];

            /// How many counters there are.
            pub const COUNT: usize = [$($name,)+].len();

            /// The counter's snake_case name, as logs and exporters print it.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Counter::$variant => $name,)+
                }
            }
        }
    };
}

counters! {
    /// Messages published by this worker's clients.
    InMsgs => "in_msgs",
    /// Payload bytes published by this worker's clients.
    InBytes => "in_bytes",
    /// Messages delivered to this worker's clients.
    OutMsgs => "out_msgs",
    /// Payload bytes delivered to this worker's clients.
    OutBytes => "out_bytes",
    /// Connections accepted onto this worker.
    Accepted => "accepted",
    /// Connections closed on this worker.
    Closed => "closed",
    /// Connections closed as slow consumers.
    SlowConsumers => "slow_consumers",
    /// Pushes that found a ring full and went to the overflow queue.
    RingFull => "ring_full",
}

/// One worker's counters. Each cell is written by that worker alone, so an increment is a
/// Relaxed load and a Relaxed store (no `lock`-prefixed instruction); readers on other threads
/// may see a slightly old value, which is all a counter promises.
#[derive(Debug)]
pub struct Counters {
    cells: [AtomicU64; Counter::COUNT],
}

/// A point-in-time copy of counters (one worker's, or summed): one value per [`Counter`],
/// read with `snapshot[Counter::InMsgs]` or walked with [`Snapshot::iter`].
///
/// `Debug` prints it as a struct with a field per counter name
/// (`Snapshot { in_msgs: 1, in_bytes: 5, .. }`), and it serializes as a map from name to value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    values: [u64; Counter::COUNT],
}

impl Counters {
    /// Adds `n`. Must only be called by the owning worker.
    pub fn add(&self, which: Counter, n: u64) {
        let cell = &self.cells[which as usize];
        // Relaxed load + store: this worker is the only writer, so no update can be lost;
        // readers only need an eventually-current value.
        cell.store(
            cell.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// A copy of the current values.
    pub fn snapshot(&self) -> Snapshot {
        // Relaxed: counters are independent statistics; no ordering with other memory.
        Snapshot {
            values: std::array::from_fn(|i| self.cells[i].load(Ordering::Relaxed)),
        }
    }
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Snapshot {
    /// Counter-wise sum.
    pub fn merge(self, o: Snapshot) -> Snapshot {
        Snapshot {
            values: std::array::from_fn(|i| self.values[i] + o.values[i]),
        }
    }

    /// Every counter's name and value, in [`Counter::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Counter::ALL.iter().map(|&c| (c.name(), self[c]))
    }
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            values: [0; Counter::COUNT],
        }
    }
}

impl Index<Counter> for Snapshot {
    type Output = u64;

    fn index(&self, which: Counter) -> &u64 {
        &self.values[which as usize]
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Snapshot");
        for (name, value) in self.iter() {
            s.field(name, &value);
        }
        s.finish()
    }
}

impl Serialize for Snapshot {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_is_in_index_order_and_names_are_distinct_snake_case() {
        assert_eq!(Counter::ALL.len(), Counter::COUNT);
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            let name = c.name();
            assert!(
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(Counter::ALL[..i].iter().all(|o| o.name() != name), "{name}");
        }
    }

    #[test]
    fn add_snapshot_merge_and_iter() {
        let a = Counters::default();
        a.add(Counter::InMsgs, 2);
        a.add(Counter::InMsgs, 1);
        a.add(Counter::RingFull, 7);
        let b = Counters::default();
        b.add(Counter::InMsgs, 10);
        let sum = a.snapshot().merge(b.snapshot());
        assert_eq!(sum[Counter::InMsgs], 13);
        assert_eq!(sum[Counter::RingFull], 7);
        assert_eq!(sum[Counter::OutMsgs], 0);
        let listed: Vec<_> = sum.iter().collect();
        assert_eq!(listed.len(), Counter::COUNT);
        assert_eq!(listed[0], ("in_msgs", 13));
        assert_eq!(listed[Counter::RingFull as usize], ("ring_full", 7));
        assert_eq!(Snapshot::default().iter().map(|(_, v)| v).sum::<u64>(), 0);
    }

    #[test]
    fn debug_and_json_name_every_counter() {
        let c = Counters::default();
        c.add(Counter::InMsgs, 1);
        c.add(Counter::SlowConsumers, 3);
        let s = c.snapshot();
        // The SIGUSR1 log prints `?snapshot`; the fan-out test reads `in_msgs: N,` from it.
        let debug = format!("{s:?}");
        assert!(
            debug.starts_with("Snapshot { in_msgs: 1, in_bytes: 0,"),
            "{debug}"
        );
        assert!(debug.contains("slow_consumers: 3,"), "{debug}");
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["in_msgs"], 1);
        assert_eq!(json["slow_consumers"], 3);
        assert_eq!(json.as_object().unwrap().len(), Counter::COUNT);
    }
}
