//! The operations of the NATS client protocol, borrowed from the read buffer.
//!
//! An [`Op`] is what the parser recognised; the argument line has already been
//! interpreted by the file of its op (`publish.rs`, `subscribe.rs`, ...). Every
//! slice borrows from the buffer handed to [`Parser::parse`](super::Parser::parse),
//! so an `Op` never outlives one parse pass.

/// One protocol operation, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op<'a> {
    /// `CONNECT {json}`: the raw JSON text (parse it with [`Connect::parse`](super::Connect::parse)).
    Connect(&'a [u8]),
    /// `PUB` or `HPUB` (client to server).
    Pub(Publish<'a>),
    /// `SUB <subject> [queue] <sid>` (client to server).
    Sub(Subscribe<'a>),
    /// `UNSUB <sid> [max]` (client to server).
    Unsub(Unsubscribe<'a>),
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
    /// `INFO {json}` (server to client): the raw JSON text.
    Info(&'a [u8]),
    /// `+OK`.
    Ok,
    /// `-ERR <text>`: the text as sent, quotes included.
    Err(&'a [u8]),
    /// `MSG` or `HMSG` (server to client).
    Msg(Message<'a>),
}

/// A `PUB`/`HPUB` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// The subject, unvalidated (the engine validates).
    pub subject: &'a [u8],
    /// The optional reply subject.
    pub reply: Option<&'a [u8]>,
    /// The header block (`NATS/1.0 ...\r\n\r\n`) for `HPUB`; `None` for `PUB`, and for
    /// an `HPUB` with an empty header block (nats-server delivers that as a plain `MSG`).
    pub headers: Option<&'a [u8]>,
    /// The payload (without headers and without the trailing CRLF).
    pub payload: &'a [u8],
}

/// A `SUB` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// The subject or pattern, unvalidated.
    pub subject: &'a [u8],
    /// The optional queue group.
    pub queue: Option<&'a [u8]>,
    /// The subscription id: an opaque token chosen by the client.
    pub sid: &'a [u8],
}

/// An `UNSUB` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// The subscription id.
    pub sid: &'a [u8],
    /// Deliver at most this many messages in total, then end the subscription.
    /// `None` ends it at once. A non-numeric max is ignored, as nats-server does.
    pub max: Option<u64>,
}

/// A `MSG`/`HMSG` frame (server to client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The subject the message was published to.
    pub subject: &'a [u8],
    /// The subscription id it is delivered for.
    pub sid: &'a [u8],
    /// The optional reply subject.
    pub reply: Option<&'a [u8]>,
    /// The header block for `HMSG`, `None` for `MSG`.
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}
