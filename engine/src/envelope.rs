//! What crosses the rings between workers: one [`Envelope`] per item.
//!
//! An [`Envelope`] is three words: a tag and two pointers. The payload travels once per
//! destination worker as an `Msg`, never copied per subscriber. The message types live in
//! [`crate::msg`] and chat's own traffic in [`crate::chat::envelope`]; both are re-exported here
//! for the worker.

use std::sync::Arc;

pub use crate::chat::envelope::ChatEnvelope;
pub use crate::msg::{Admit, ConnKey, Msg, MsgView, Origin, SubRef, SubState};
use crate::sublist::SubSet;

impl Envelope {
    /// What this envelope counts against its ring's byte budget: the message bytes it
    /// keeps alive plus a fixed cost for the slot itself.
    pub fn weight(&self) -> u64 {
        const SLOT: u64 = 64;
        SLOT + match self {
            Envelope::Deliver { msg, .. } | Envelope::DeliverOne { msg, .. } => msg.weight(),
            Envelope::Barrier(_)
            | Envelope::BarrierAck(_)
            | Envelope::Throttle(_)
            | Envelope::Unthrottle(_)
            | Envelope::Interest => 0,
            Envelope::Chat(c) => c.weight(),
        }
    }
}

/// One item on an inter-worker ring.
#[derive(Debug)]
pub enum Envelope {
    /// To a subscribers' worker: deliver to every plain subscriber of `set` that lives here.
    Deliver {
        /// The message, or a run of messages to the same set, in publish order.
        msg: Msg,
        /// The matched subscriber set (a snapshot).
        set: Arc<SubSet<SubRef>>,
    },
    /// To a queue member's worker: deliver to that one subscription.
    DeliverOne {
        /// The message.
        msg: Msg,
        /// The chosen queue member.
        sub: SubRef,
        /// Members already tried and found gone (bounded by `limits::QUEUE_REPICKS`).
        tries: u8,
    },
    /// From a connection's worker, behind everything that connection's publishes and
    /// requests sent on the same ring: answer with [`Envelope::BarrierAck`] (all of it has
    /// been handled: deliveries written to the subscribers' outbound, requests applied).
    Barrier(ConnKey),
    /// Back to the connection's worker: what was sent before the barrier has been handled,
    /// and anything it sent back to this worker (chat answers) is ahead of this ack.
    BarrierAck(ConnKey),
    /// To a publisher's worker: a stalled connection was reached by this publisher's
    /// messages; stop reading it until the matching [`Envelope::Unthrottle`].
    Throttle(ConnKey),
    /// To a publisher's worker: a stall that throttled it has ended.
    Unthrottle(ConnKey),
    /// Chat traffic: requests to a conversation's owner and answers back.
    Chat(Box<ChatEnvelope>),
    /// To the JetStream owner, from a worker that just added subscriptions while a push
    /// consumer waited for a subscriber to its deliver subject: look again (nats-server's
    /// consumers hear of new interest from the sublist at once, not on a timer).
    Interest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn an_envelope_is_five_words() {
        assert_eq!(std::mem::size_of::<Envelope>(), 40);
    }
}
