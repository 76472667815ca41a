//! `engine`: a thread-per-core pub/sub server that speaks the NATS client protocol.
//!
//! # Layout
//! - [`sync`]: std atomics, or loom's under `cfg(engine_loom)`, for the ring and the doorbell.
//! - [`ring`]: the bounded lock-free SPSC ring between two workers (the only unsafe code).
//! - [`park`]: the doorbell a worker rings to wake a parked peer, never per message.
//! - [`subject`]: validated [`subject::Pattern`]s and publish-subject checks.
//! - [`sublist`]: the subscription index: immutable snapshots swapped with arc-swap.
//! - [`limits`]: every cap, with its unit and why it has that value.
//! - [`config`]: the server's settings, with embedded defaults.
//!
//! # Never
//! The core modules (`ring`, `park`, `subject`, `sublist`, `limits`) import no mio and read
//! no clock. Unsafe code lives only in `ring`.
#![deny(unsafe_code)]

pub mod config;
pub mod limits;
#[cfg(all(test, engine_loom))]
mod loom_models;
pub mod park;
#[allow(unsafe_code)]
pub mod ring;
pub mod server;
pub mod subject;
pub mod sublist;
pub mod sync;
