//! The NATS client line protocol: parser, op types and encoder.
//!
//! Pure code: no mio, no clocks, no allocation on the hot path, so it can be
//! fuzzed and benchmarked alone. Byte-compatible with nats-server 2.9.
//!
//! - [`Parser::parse`] looks at the front of a buffer and returns
//!   `Ok(Some((op, consumed)))` for one complete op, `Ok(None)` when more bytes are
//!   needed (nothing consumed; call again with the same bytes plus more), or
//!   `Err(ProtoError)` for input that nats-server rejects (close the connection, after
//!   sending [`ProtoError::err_text`] if there is one).
//! - `encode_*` functions append one frame to a [`Put`] sink.
//!
//! # Layout
//! - `parser.rs`: recognises an op and cuts out its argument line; framing, caps.
//! - `publish.rs` (`PUB`/`HPUB`), `subscribe.rs` (`SUB`), `unsubscribe.rs` (`UNSUB`),
//!   `message.rs` (`MSG`/`HMSG`), `connect.rs` (CONNECT JSON), `info.rs` (INFO JSON):
//!   each interprets its op's arguments.
//! - `args.rs`: token splitting and sizes shared by those files.
//! - `encode.rs`: the encoder. `error.rs`: [`ProtoError`]. `op.rs`: the [`Op`] types.
//!
//! # Example
//! ```
//! use net::proto::{Op, Parser, ParserLimits, Side};
//!
//! let mut parser = Parser::new(Side::Server, ParserLimits::default());
//! let mut buf = b"PUB foo 5\r\nhel".to_vec();
//! assert_eq!(parser.parse(&buf), Ok(None)); // payload incomplete
//! buf.extend_from_slice(b"lo\r\nPING\r\n");
//! let Ok(Some((Op::Pub(p), n))) = parser.parse(&buf) else { panic!() };
//! assert_eq!((p.subject, p.payload, n), (&b"foo"[..], &b"hello"[..], 18));
//! assert_eq!(parser.parse(&buf[n..]), Ok(Some((Op::Ping, 6))));
//! ```

mod args;
mod connect;
mod encode;
mod error;
mod info;
mod json;
mod message;
mod op;
mod parser;
mod publish;
mod subscribe;
mod unsubscribe;

use crate::limits;

pub use connect::Connect;
pub use encode::{
    encode_connect, encode_err, encode_hmsg, encode_hpub, encode_info, encode_msg, encode_ok,
    encode_ping, encode_pong, encode_pub, encode_sub, encode_unsub, MsgTemplate, Put,
};
pub use error::ProtoError;
pub use info::Info;
pub use op::{Message, Op, Publish, Subscribe, Unsubscribe};
pub use parser::Parser;

/// Which end of the connection this parser serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Parses what clients send (`CONNECT`, `PUB`, `HPUB`, `SUB`, `UNSUB`, `PING`, `PONG`,
    /// and the `INFO`/`+OK` that nats-server ignores). `MSG`/`HMSG` are unknown ops and
    /// `-ERR` closes the connection.
    Server,
    /// Parses what servers send (`INFO`, `MSG`, `HMSG`, `PING`, `PONG`, `+OK`, `-ERR`).
    Client,
}

/// Caps the parser enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// Longest control line accepted, in bytes of arguments: what follows the op name and
    /// its blanks, up to the line end (nats-server's `max_control_line`; the blanks may not
    /// exceed it either). Values below [`ParserLimits::MIN_CONTROL_LINE_BYTES`] are raised
    /// to it.
    pub max_control_line_bytes: usize,
    /// Largest `PUB`/`HPUB` (or `MSG`/`HMSG`) total size (headers + payload) accepted,
    /// in bytes (nats-server's `max_payload`).
    pub max_payload_bytes: usize,
}

impl ParserLimits {
    /// Smallest control-line cap: room for any op name and its separator, so the op is
    /// always recognised before the cap can be hit.
    pub const MIN_CONTROL_LINE_BYTES: usize = 32;

    /// The most bytes a caller ever needs to buffer before [`Parser::parse`] returns an
    /// op or an error: a full control line (the longest op name, up to a cap of blanks, up
    /// to a cap of arguments, CRLF), the largest payload and its CRLF.
    pub fn max_buffered_bytes(&self) -> usize {
        let cap = self
            .max_control_line_bytes
            .max(Self::MIN_CONTROL_LINE_BYTES);
        Self::MAX_OP_NAME_BYTES + 2 * cap + 2 + self.max_payload_bytes + 2
    }

    /// The longest op name with its separator (`CONNECT `).
    pub const MAX_OP_NAME_BYTES: usize = 8;
}

impl Default for ParserLimits {
    /// nats-server's defaults: 4096-byte control lines, 1 MiB payloads
    /// ([`crate::limits`]).
    fn default() -> Self {
        Self {
            max_control_line_bytes: limits::DEFAULT_MAX_CONTROL_LINE_BYTES,
            max_payload_bytes: limits::DEFAULT_MAX_PAYLOAD_BYTES,
        }
    }
}
