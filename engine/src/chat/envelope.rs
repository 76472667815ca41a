//! Chat traffic between workers: requests to a conversation's owner, answers back, and a
//! closed session's departure. Carried by [`crate::envelope::Envelope::Chat`].

use super::request::Op;
use super::{Name, Outcome, ReplyTo, Requester};
use crate::msg::ConnKey;

/// Chat traffic between workers (see [`crate::chat`]).
#[derive(Debug)]
pub enum ChatEnvelope {
    /// To a conversation's owner: apply `op` for `from`, answer to `to`.
    Request {
        /// The requesting session.
        from: Requester,
        /// The operation.
        op: Op,
        /// Where the answer goes.
        to: ReplyTo,
    },
    /// To the requester's worker: the answer to a request.
    Answer {
        /// The requesting connection.
        conn: ConnKey,
        /// Where the answer goes.
        to: ReplyTo,
        /// The result or the error.
        outcome: Outcome,
        /// The answer's size as JSON, for the ring's byte budget (a history page or a
        /// member list can be megabytes).
        bytes: u64,
    },
    /// To an owner: a session closed; it leaves the presence of these rooms.
    Gone {
        /// The closed connection.
        conn: ConnKey,
        /// Its session id.
        session: u64,
        /// Its user.
        user: Name,
        /// The rooms it joined that this owner holds.
        rooms: Vec<Name>,
    },
}

impl ChatEnvelope {
    /// Bytes kept alive (messages ride along in publishes; the rest is small and counted
    /// by its slot).
    pub fn weight(&self) -> u64 {
        match self {
            ChatEnvelope::Request {
                op: Op::Publish(_, msg),
                ..
            } => msg.weight(),
            ChatEnvelope::Answer { bytes, .. } => *bytes,
            _ => 256,
        }
    }
}
