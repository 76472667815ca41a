//! `engine`: a thread-per-core pub/sub server that speaks the NATS client protocol.
//!
//! # Layout
//! - [`sync`]: std atomics, or loom's under `cfg(engine_loom)`, for the ring and the doorbell.
//! - [`ring`]: the bounded lock-free SPSC ring between two workers (unsafe code, with
//!   [`uring`]).
//! - [`uring`]: batched sends through io_uring, one kernel entry per loop iteration's writes
//!   (the only other unsafe code).
//! - [`park`]: the doorbell a worker rings to wake a parked peer, never per message.
//! - [`subject`]: validated [`subject::Pattern`]s and publish-subject checks.
//! - [`sublist`]: the subscription index: immutable snapshots swapped with arc-swap.
//! - [`limits`]: every cap, with its unit and why it has that value.
//! - [`router`]: who owns a conversation: a local worker today, a remote node later.
//! - [`chat`]: users, rooms, direct messages, presence and history on `$CHAT.` subjects.
//! - [`js`]: JetStream's stream API and stream state machines, I/O-free (issue 11).
//! - [`jsc`]: JetStream consumers (pull, push, acks, redelivery) as an I/O-free state machine.
//! - [`cli`]: the `engine` command line and its translation into a [`config::Config`].
//! - [`config`]: the server's settings, with embedded defaults.
//! - [`counters`]: per-worker counters, written by their worker only.
//! - [`msg`]: the messages, addresses and subscription handles the rings carry (a leaf).
//! - [`envelope`]: what crosses the rings: deliveries, barriers, throttles, chat traffic.
//! - `worker`: one thread's mio loop (`mod.rs`), split along its seams: `conn` (a
//!   connection's state behind its transport, accept/read/flush/close), `links` (the rings,
//!   overflow, byte budget and doorbells), `fanout` (matching and fan-out, no I/O, behind a
//!   `Sink`), `session` (op handling and the `PING` barrier), `chat` (the chat layer's
//!   requests, effects and answers).
//! - [`store`]: the per-shard write-ahead log: segments of CRC-framed records, recovery,
//!   and group commit on a thread of its own (the file seam below it is simulated in tests).
//! - [`server`]: runs the workers on an already-bound listener until shutdown.
//!
//! # Never
//! The core modules (`ring`, `park`, `subject`, `sublist`, `limits`, `jsc`) import no mio
//! and read no clock. Unsafe code lives only in `ring` and `uring`.
#![deny(unsafe_code)]

pub mod chat;
pub mod cli;
pub mod codec;
pub mod config;
pub mod counters;
pub mod envelope;
mod gotime;
pub mod js;
pub mod jsc;
pub mod limits;
#[cfg(all(test, engine_loom))]
mod loom_models;
pub mod msg;
pub mod park;
#[allow(unsafe_code)]
pub mod ring;
pub mod router;
pub mod server;
pub mod store;
pub mod subject;
pub mod sublist;
pub mod sync;
#[allow(unsafe_code)]
pub mod uring;
mod worker;
