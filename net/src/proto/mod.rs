//! The NATS client line protocol: parser, op types and encoder.
//!
//! Pure code: no mio, no clocks, no allocation on the hot path, so it can be
//! fuzzed and benchmarked alone. CONTRACT (fixed; implementations fill the bodies):
//!
//! - [`Parser::parse`] looks at the front of a buffer and returns
//!   `Ok(Some((op, consumed)))` for one complete op, `Ok(None)` when more bytes are
//!   needed (nothing consumed; call again with the same bytes plus more), or
//!   `Err(ProtoError)` for input that nats-server rejects.
//! - `encode_*` functions append one frame to a [`Put`] sink.

mod op;

pub use op::{Message, Op, Publish, Subscribe, Unsubscribe};

/// Which end of the connection this parser serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Parses what clients send (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`,
    /// and the `INFO`/`+OK`/`-ERR` that nats-server tolerates). `MSG`/`HMSG` are unknown ops.
    Server,
    /// Parses what servers send (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`).
    Client,
}

/// Caps the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest control line accepted, in bytes, CRLF excluded.
    pub max_control_line_bytes: usize,
    /// Largest `PUB`/`HPUB` total size (headers + payload) accepted, in bytes.
    pub max_payload_bytes: usize,
}
