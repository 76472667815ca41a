//! The protocol error: every way a peer's bytes can break the NATS client protocol.
//!
//! Every variant means "close the connection". [`ProtoError::err_text`] says what
//! nats-server 2.9 sends first (`-ERR <text>`), or `None` where it closes silently.

use thiserror::Error;

/// Input that nats-server rejects by closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum ProtoError {
    /// The line does not start with an op this side accepts (unknown verb, empty line,
    /// leading whitespace, `MSG` from a client, `UNSUB` with no argument, ...).
    #[error("unknown protocol operation")]
    UnknownOp,
    /// A payload was not followed by exactly `\r\n`.
    #[error("payload not followed by CRLF")]
    PayloadEnd,
    /// A control line (op, arguments and line end) is longer than the cap.
    #[error("maximum control line exceeded")]
    MaxControlLine,
    /// A `PUB`/`HPUB` (or `MSG`/`HMSG`) announced more bytes than the payload cap.
    #[error("maximum payload exceeded")]
    MaxPayload,
    /// The op has the wrong number of arguments.
    #[error("wrong number of arguments for {op}")]
    ArgCount {
        /// The op name, upper case.
        op: &'static str,
    },
    /// A size is not 1 to 9 decimal digits (non-numeric, negative or too large).
    #[error("bad size argument for {op}")]
    BadSize {
        /// The op name, upper case.
        op: &'static str,
    },
    /// An `HPUB`/`HMSG` header size is larger than its total size.
    #[error("header size larger than total size")]
    HeaderSize,
    /// `HPUB` on a connection whose CONNECT did not ask for headers.
    #[error("message headers not supported")]
    HeadersNotSupported,
    /// The client sent `-ERR`; nats-server closes such a connection.
    #[error("client sent -ERR")]
    ClientErr,
    /// The `CONNECT` argument is not a JSON object with fields of the right types.
    #[error("bad CONNECT JSON")]
    BadConnect,
    /// `CONNECT` asked for a protocol version other than 0 or 1.
    #[error("invalid client protocol")]
    BadClientProtocol,
    /// `CONNECT` asked for `no_responders` without `headers`.
    #[error("no responders requires headers support")]
    NoRespondersRequiresHeaders,
    /// The `INFO` argument is not a JSON object with fields of the right types.
    #[error("bad INFO JSON")]
    BadInfo,
}

impl ProtoError {
    /// The exact text nats-server sends after `-ERR ` (quotes included) before it closes
    /// the connection, or `None` where it closes without a word.
    pub fn err_text(&self) -> Option<&'static str> {
        match self {
            Self::UnknownOp | Self::PayloadEnd => Some(UNKNOWN_OP_TEXT),
            Self::MaxControlLine => Some("'maximum control line exceeded'"),
            Self::MaxPayload => Some("'Maximum Payload Violation'"),
            Self::BadClientProtocol => Some("'invalid client protocol'"),
            Self::NoRespondersRequiresHeaders => Some("'no responders requires headers support'"),
            Self::ArgCount { .. }
            | Self::BadSize { .. }
            | Self::HeaderSize
            | Self::HeadersNotSupported
            | Self::ClientErr
            | Self::BadConnect
            | Self::BadInfo => None,
        }
    }
}

/// nats-server's reply to anything its parser cannot place.
const UNKNOWN_OP_TEXT: &str = "'Unknown Protocol Operation'";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_quoted() {
        for e in [
            ProtoError::UnknownOp,
            ProtoError::PayloadEnd,
            ProtoError::MaxControlLine,
            ProtoError::MaxPayload,
            ProtoError::BadClientProtocol,
            ProtoError::NoRespondersRequiresHeaders,
        ] {
            let t = e.err_text().unwrap_or_default();
            assert!(
                t.starts_with('\'') && t.ends_with('\'') && t.len() > 2,
                "{e:?}"
            );
        }
        assert_eq!(ProtoError::ClientErr.err_text(), None);
    }
}
