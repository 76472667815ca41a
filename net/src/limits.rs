//! The caps of the wire protocol and of the outbound queue, with their unit in the name and
//! the reason for their value.
//!
//! Defined here once, in the lowest crate: the engine's `limits` and the load generator refer
//! to these rather than declaring their own copies.

/// Longest control line [`ParserLimits::default`](crate::proto::ParserLimits) accepts, in
/// bytes of arguments (after the op name and its blanks, up to the line end): nats-server's
/// default `max_control_line`.
pub const DEFAULT_MAX_CONTROL_LINE_BYTES: usize = 4096;

/// Largest `PUB`/`HPUB` (or `MSG`/`HMSG`) total size, headers and payload, that
/// [`ParserLimits::default`](crate::proto::ParserLimits) accepts: nats-server's default
/// `max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1024 * 1024;

/// Most iovecs one vectored write of an [`Outbound`](crate::outbound::Outbound) passes: the
/// length of the stack array [`Outbound::flush_to`](crate::outbound::Outbound::flush_to)
/// fills. 64 of the engine's 4 KiB chunks is 256 KiB per `writev`, far below Linux's `IOV_MAX`
/// (1024), and the array stays 1 KiB of stack.
pub const MAX_IOVECS: usize = 64;
