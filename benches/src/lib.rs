//! Criterion micro-benchmarks of the engine's hot components, and the helpers they share.
//!
//! The benchmarks themselves live in `benches/benches/*.rs` (each a `harness = false`
//! criterion binary); this library only holds what several of them need: how big to make
//! inputs, a spin-then-yield wait, and builders for protocol input.
//!
//! # Layout
//! - `benches/ring.rs`: the engine's SPSC ring against rtrb, crossbeam's `ArrayQueue`,
//!   flume and `std::sync::mpsc`: two-thread throughput (single and batched) and one-way
//!   latency.
//! - `benches/parser.rs`: the protocol parser on pipelined `PUB`/`HPUB` streams, whole and
//!   in small split reads.
//! - `benches/encoder.rs`: `MSG`/`HMSG` building per subscriber, into a `Vec` and into
//!   outbound chunks, against `write!` formatting.
//! - `benches/sublist.rs`: the subscription index against a naive scan, 10k and 100k
//!   subscriptions.
//! - `benches/snapshot.rs`: arc-swap snapshot loads against `RwLock<Arc<_>>` reads under
//!   concurrent updates.
//! - `benches/fanout.rs`: one publish to 1,000 subscribers on two workers, without sockets.
//! - `benches/flush.rs`: flushing 1,000 dirty loopback connections, a `writev` each against
//!   one io_uring batch.
//! - `benches/store.rs`: the write-ahead log's committer on the real file system, 128-byte
//!   records in batches of 1, 64 and 1024 under each fsync policy.
//!
//! Results and how to run them: `results/criterion.md`.
//!
//! This crate must never be a dependency of the engine: it only measures.

#![forbid(unsafe_code)]

use std::hint;
use std::thread;

/// True when criterion runs in its quick test mode (`cargo test --benches`, or
/// `cargo bench -- --test`), where each benchmark runs once: benchmarks then shrink their
/// inputs so the whole suite stays fast in a debug build.
///
/// This follows criterion's own rule: test mode unless `--bench` is given without `--test`.
pub fn quick_mode() -> bool {
    let mut bench = false;
    let mut test = false;
    for arg in std::env::args() {
        match arg.as_str() {
            "--bench" => bench = true,
            "--test" => test = true,
            _ => {}
        }
    }
    test || !bench
}

/// True when the benchmark runs under `cargo criterion`, which does its own reporting.
///
/// cargo-criterion 1.1 predates criterion's `Throughput::ElementsAndBytes` and drops the
/// connection when it meets one, so benchmarks that report both figures fall back to bytes
/// alone there (the element count per iteration is in each benchmark's docs).
pub fn under_cargo_criterion() -> bool {
    std::env::var_os("CARGO_CRITERION_PORT").is_some()
}

/// Picks `full` for a measurement run and `quick` in test mode (see [`quick_mode`]).
pub fn size(full: usize, quick: usize) -> usize {
    if quick_mode() {
        quick
    } else {
        full
    }
}

/// A wait loop for one side of a two-thread benchmark: spins briefly, then yields.
///
/// The yield matters on a small shared machine: when the other side has been descheduled,
/// spinning on would only burn the time slice it needs. Every alternative in a comparison
/// waits through the same `Spin`, so none gains from a different waiting policy.
#[derive(Debug, Default)]
pub struct Spin {
    rounds: u32,
}

impl Spin {
    /// A fresh wait.
    pub fn new() -> Spin {
        Spin { rounds: 0 }
    }

    /// Waits a little longer than last time.
    #[inline]
    pub fn wait(&mut self) {
        if self.rounds < SPINS_BEFORE_YIELD {
            hint::spin_loop();
        } else {
            thread::yield_now();
        }
        self.rounds = self.rounds.saturating_add(1);
    }

    /// Starts over after progress was made.
    #[inline]
    pub fn reset(&mut self) {
        self.rounds = 0;
    }
}

/// A payload of `len` bytes of printable filler.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A pipelined stream of `frames` `PUB` frames on `subject` with `payload_len`-byte
/// payloads.
pub fn pub_stream(subject: &[u8], payload_len: usize, frames: usize) -> Vec<u8> {
    let body = payload(payload_len);
    let mut out = Vec::new();
    for _ in 0..frames {
        out.extend_from_slice(b"PUB ");
        out.extend_from_slice(subject);
        out.extend_from_slice(format!(" {payload_len}\r\n").as_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A pipelined stream of `frames` `HPUB` frames on `subject`, each with `headers` (a full
/// `NATS/1.0` block) and a `payload_len`-byte payload.
pub fn hpub_stream(subject: &[u8], headers: &[u8], payload_len: usize, frames: usize) -> Vec<u8> {
    let body = payload(payload_len);
    let mut out = Vec::new();
    for _ in 0..frames {
        out.extend_from_slice(b"HPUB ");
        out.extend_from_slice(subject);
        out.extend_from_slice(
            format!(" {} {}\r\n", headers.len(), headers.len() + payload_len).as_bytes(),
        );
        out.extend_from_slice(headers);
        out.extend_from_slice(&body);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Consecutive spins of [`Spin::wait`] before it starts yielding: a few microseconds, longer
/// than a cross-core round trip, so a peer that is running is waited for without a syscall.
const SPINS_BEFORE_YIELD: u32 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_have_the_advertised_sizes() {
        let s = pub_stream(b"a.b", 16, 3);
        assert_eq!(s.len(), 3 * (b"PUB a.b 16\r\n".len() + 16 + 2));
        let h = hpub_stream(b"a.b", b"NATS/1.0\r\n\r\n", 4, 2);
        assert_eq!(h.len(), 2 * (b"HPUB a.b 12 16\r\n".len() + 16 + 2));
    }

    #[test]
    fn spin_eventually_yields() {
        let mut spin = Spin::new();
        for _ in 0..=SPINS_BEFORE_YIELD {
            spin.wait();
        }
        spin.reset();
        assert_eq!(spin.rounds, 0);
    }
}
