//! JetStream consumers: nats-server 2.9's consumer semantics as an I/O-free state machine.
//!
//! A [`Consumer`] reads one stream through the [`Source`] seam, takes operations with the
//! time passed in (`handle_next` for a pull request, `handle_ack` for a message on its ack
//! subject, `handle_flow_control`, `handle_interest`, `handle_stored` when the stream grew,
//! `handle_timeout`), and appends [`Effect`]s: deliveries, status messages, ack
//! confirmations, retention hints and the state changes to persist. The driver (the worker
//! that owns the stream) routes subjects to the consumer and carries the effects out in
//! order, exactly as it does for [`crate::chat::shard::Shard`].
//!
//! - [`source`]: the [`Source`] trait the stream layer implements, and [`MemSource`].
//! - [`api`]: the `$JS.API.CONSUMER.*` JSON (config, info, pages, errors with their codes).
//! - [`consumer`]: one consumer: create-time checks, pull and push delivery, acks,
//!   redelivery, heartbeats and flow control.
//! - [`state`]: the recoverable state, its change records and snapshot encoding.
//!
//! Which parts of nats-server's behaviour were checked against captured traffic, and what is
//! not supported, is in `docs/consumers.md`; the captures are in `testdata/`, made by
//! `scripts/jsc-capture.py`.

pub mod api;
pub mod consumer;
pub mod source;
pub mod state;
#[cfg(test)]
mod testdata;
#[cfg(test)]
mod tests;
use crate::gotime as time;

pub use consumer::{parse_ack_subject, AckRef, Consumer, Delivery, Effect, Retention, StreamCtx};
pub use source::{MemSource, Source, StoredRef};
pub use state::{State, StateChange};
