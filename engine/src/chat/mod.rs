//! The chat layer: users, rooms, direct messages, presence and history, on reserved
//! `$CHAT.` subjects (the contract is docs/chat.md).
//!
//! - [`request`]: what a client asked, parsed and validated on the client's own worker.
//! - [`shard`]: the rooms and conversations one worker owns, and the plain method that
//!   applies an operation to them. It reads no clock (time is passed in) and does no I/O:
//!   it answers with [`shard::Effect`]s the worker carries out.
//! - [`envelope`]: chat's traffic between workers (requests, answers, departures).
//! - [`history`]: the bounded window of recent messages each conversation keeps.
//!
//! Every room and direct conversation has one owner worker, chosen by hashing its name (the
//! [`crate::router::Router`] answers). Everything that touches a
//! conversation is applied there, one at a time, which is what gives a room one total order
//! with gap-free sequence numbers, exact member limits and presence without locks.

pub mod envelope;
pub mod history;
pub mod request;
pub mod shard;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::limits;
use crate::msg::ConnKey;

/// A user or room name: validated by [`parse_name`].
pub type Name = Arc<str>;

/// Every chat subject starts with this.
pub const PREFIX: &[u8] = b"$CHAT.";
/// Requests: `$CHAT.API.<op>`.
pub const API_PREFIX: &[u8] = b"$CHAT.API.";
/// Room messages: `$CHAT.MSG.<room>`.
pub const MSG_PREFIX: &[u8] = b"$CHAT.MSG.";
/// Room events: `$CHAT.EVT.<room>`.
pub const EVT_PREFIX: &[u8] = b"$CHAT.EVT.";
/// Direct messages to a user: `$CHAT.DM.<user>`.
pub const DM_PREFIX: &[u8] = b"$CHAT.DM.";

/// Whether a subject is in the chat namespace (handled by the chat layer, never delivered
/// through the plain path).
pub fn is_chat(subject: &[u8]) -> bool {
    subject.starts_with(PREFIX)
}

/// Validates a user or room name: 1 to [`limits::MAX_CHAT_NAME_BYTES`] bytes of
/// `A-Z a-z 0-9 _ -`, so that it is always exactly one subject token.
pub fn parse_name(b: &[u8]) -> Option<Name> {
    let ok = !b.is_empty()
        && b.len() <= limits::MAX_CHAT_NAME_BYTES
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    // The alphabet is ASCII, so the bytes are UTF-8.
    ok.then(|| Arc::from(std::str::from_utf8(b).unwrap_or_default()))
}

/// What a PUB to a `$CHAT.` subject asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// A request: `$CHAT.API.<op>` (the op may contain dots).
    Api(&'a [u8]),
    /// A room message: `$CHAT.MSG.<room>`.
    Room(&'a [u8]),
    /// A direct message: `$CHAT.DM.<user>`.
    Dm(&'a [u8]),
    /// Anything else in the namespace (events, unknown kinds): nobody may publish there.
    Refused,
}

/// Sorts a `$CHAT.` subject into what publishing to it means.
pub fn classify(subject: &[u8]) -> Target<'_> {
    if let Some(op) = subject.strip_prefix(API_PREFIX) {
        Target::Api(op)
    } else if let Some(room) = subject.strip_prefix(MSG_PREFIX) {
        Target::Room(room)
    } else if let Some(user) = subject.strip_prefix(DM_PREFIX) {
        Target::Dm(user)
    } else {
        Target::Refused
    }
}

/// A refused chat operation, by the codes of docs/chat.md. The refusals a published message
/// can meet on the hot path (no user, not a member, no such room) carry names, not text:
/// nothing is formatted unless the error is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the connection has no user.
    #[error("chat needs a user: CONNECT with \"user\"")]
    NoUser,
    /// 403: the requester is not a member of this room.
    #[error("not a member of {0}")]
    NotMember(Name),
    /// 403: anything else not allowed (not an admin, a private room, a forbidden subject).
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such room.
    #[error("no such room: {0}")]
    NoSuchRoom(Name),
    /// 404: the named user is not a member.
    #[error("{user} is not a member of {room}")]
    UserNotMember {
        /// The user named.
        user: Name,
        /// The room.
        room: Name,
    },
    /// 409: the room exists, is full, the last admin cannot go, …
    #[error("{0}")]
    Conflict(String),
    /// 410: the history window or epoch no longer reaches the cursor.
    #[error("{0}")]
    Gone(String),
    /// 429: a cap was reached.
    #[error("{0}")]
    TooMany(&'static str),
}

impl ChatError {
    /// 400: the request is malformed.
    pub fn bad(description: impl Into<String>) -> ChatError {
        ChatError::BadRequest(description.into())
    }

    /// The code of docs/chat.md's table.
    pub fn code(&self) -> u16 {
        match self {
            ChatError::BadRequest(_) => 400,
            ChatError::NoUser => 401,
            ChatError::NotMember(_) | ChatError::Forbidden(_) => 403,
            ChatError::NoSuchRoom(_) | ChatError::UserNotMember { .. } => 404,
            ChatError::Conflict(_) => 409,
            ChatError::Gone(_) => 410,
            ChatError::TooMany(_) => 429,
        }
    }

    /// The error as its JSON reply object.
    pub fn to_json(&self) -> Value {
        json!({"error": {"code": self.code(), "description": self.to_string()}})
    }
}

/// What an answer carries: a JSON result or an error.
pub type Outcome = Result<Value, ChatError>;

/// Who sent a request: the session and its (validated) user.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The session's connection.
    pub conn: ConnKey,
    /// The session's id (`client_id` in INFO).
    pub session: u64,
    /// The session's user.
    pub user: Name,
}

/// Where the answer to a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyTo {
    /// Nowhere: a message published without a reply subject that was accepted.
    Nobody,
    /// To the requester's subscriptions matching this reply subject.
    Subject(Box<[u8]>),
    /// Part `index` of gathered request `id` on the requester's worker.
    Part {
        /// The request's id on the requester's worker.
        id: u64,
        /// The part's position in the answer.
        index: u32,
    },
    /// A message published without a reply subject: nothing if accepted; if refused, the
    /// owner names the subject ([`ReplyTo::Refused`]). The subject is not carried along,
    /// so that an accepted message (the common case) costs no copy of it.
    ErrOnly,
    /// The publisher gets `-ERR 'Permissions Violation for Publish to "<subject>"'`.
    Refused(Box<[u8]>),
}

impl ReplyTo {
    /// Where an error goes: [`ReplyTo::ErrOnly`] becomes a refusal naming `subject`.
    pub fn for_error(self, subject: impl FnOnce() -> Box<[u8]>) -> ReplyTo {
        match self {
            ReplyTo::ErrOnly => ReplyTo::Refused(subject()),
            to => to,
        }
    }
}
