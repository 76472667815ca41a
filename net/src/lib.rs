//! `net`: the wire. The NATS client protocol codec and the per-connection I/O state
//! shared by the engine (server side) and the load generator (client side).
//!
//! # Layout
//! - [`limits`]: the protocol's default caps (control line, payload) and the iovecs per
//!   vectored write, defined once.
//! - [`proto`]: the resumable parser, the [`proto::Op`] types and the encoder. Pure code.
//! - [`outbound`]: a connection's pending outbound bytes in pooled fixed-size chunks,
//!   flushed with vectored writes.
//!
//! # Never
//! `net` knows nothing of subjects' meaning, shards or subscriptions, and has no
//! unsafe code.
#![forbid(unsafe_code)]

pub mod limits;
pub mod outbound;
pub mod proto;
