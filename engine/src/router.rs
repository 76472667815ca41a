//! The router: where the work for a conversation goes (and, with durable streams, a
//! stream). Every place that needs an owner asks it, so a remote owner (another node, in
//! cluster mode) becomes one more [`Route`], not a change in each caller.
//!
//! Plain subjects are not routed: a publish is matched on the publisher's own worker and
//! fanned out from there (ARCHITECTURE.md, "Ordering guarantees"). What is routed is what
//! needs a single sequencer: a chat room, a direct conversation.
//!
//! The hash is [`subject::owner`]'s: fixed and unseeded, so every worker (and every run)
//! agrees on every answer.

use crate::chat::request::{Conv, Op};
use crate::subject;

/// Where a piece of work goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A worker of this server, by index.
    Worker(usize),
}

/// Answers "who owns this" for a server of `workers` workers.
#[derive(Debug, Clone, Copy)]
pub struct Router {
    workers: usize,
}

impl Router {
    /// A router over `workers` local workers.
    pub fn new(workers: usize) -> Router {
        Router { workers }
    }

    /// The owner of a room.
    pub fn room(&self, room: &str) -> Route {
        Route::Worker(subject::owner(room.as_bytes(), self.workers))
    }

    /// The owner of every stream and of JetStream's API. One owner for the whole account:
    /// the overlap check between streams' subjects and the API's names and lists need one
    /// view of all streams; spreading streams over workers needs that view shared first
    /// (docs/streams.md, "Where streams live").
    pub fn jetstream(&self) -> Route {
        Route::Worker(0)
    }

    /// The owner of the direct conversation between two users (either order).
    pub fn dm(&self, a: &str, b: &str) -> Route {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let mut key = Vec::with_capacity(lo.len() + hi.len() + 1);
        key.extend_from_slice(lo.as_bytes());
        key.push(b' ');
        key.extend_from_slice(hi.as_bytes());
        Route::Worker(subject::owner(&key, self.workers))
    }

    /// The owner of a conversation, for a requester named `me`.
    pub fn conversation(&self, conv: &Conv, me: &str) -> Route {
        match conv {
            Conv::Room(room) => self.room(room),
            Conv::Dm(peer) => self.dm(me, peer),
        }
    }

    /// The owner that applies `op` for a requester named `me`; `None` for an operation every
    /// owner answers a part of (`rooms.list`).
    pub fn op(&self, op: &Op, me: &str) -> Option<Route> {
        match op {
            Op::List(_) => None,
            Op::History(conv, _) | Op::Publish(conv, _) => Some(self.conversation(conv, me)),
            op => op.room().map(|room| self.room(room)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direct_conversation_has_one_owner_whichever_side_asks() {
        let r = Router::new(7);
        for (a, b) in [("alice", "bob"), ("x", "y"), ("same", "same")] {
            assert_eq!(r.dm(a, b), r.dm(b, a));
        }
    }

    #[test]
    fn routes_stay_within_the_workers_and_agree_with_the_subject_hash() {
        for workers in 1..9 {
            let r = Router::new(workers);
            for room in ["lobby", "ops", "a", "room-42"] {
                let Route::Worker(w) = r.room(room);
                assert!(w < workers);
                assert_eq!(w, subject::owner(room.as_bytes(), workers));
            }
        }
    }
}
