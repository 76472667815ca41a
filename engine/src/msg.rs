//! The messages and addresses that cross the rings, with no knowledge of what carries them:
//! a leaf module (it imports only the core `subject` and `sublist`), so the envelope, the
//! chat layer and the worker all build on it without importing one another.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::subject::Pattern;
use crate::sublist::Placed;

/// The address of a connection: the worker that owns it, its slot there, and the slot's
/// generation (a reused slot gets a new one, so a stale key never reaches a new client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The worker that owns the connection.
    pub worker: u16,
    /// The connection's slot in that worker's table.
    pub slot: u32,
    /// The slot's generation when the connection was placed there.
    pub gen: u32,
}

/// Where a message came from, as needed by delivery (echo) and no-responders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The publishing connection.
    pub conn: ConnKey,
    /// Whether that connection asked for no-responders status messages.
    pub no_responders: bool,
    /// Whether that connection receives its own messages (CONNECT `echo`).
    pub echo: bool,
}

/// A published message, owned, shared by every worker that delivers it.
#[derive(Debug)]
pub struct Msg {
    /// subject, then reply, then headers, then payload.
    data: Box<[u8]>,
    subject_end: usize,
    reply_end: usize,
    headers_end: usize,
    has_reply: bool,
    has_headers: bool,
    /// The publisher.
    pub origin: Origin,
}

/// A message seen through borrowed slices: from the read buffer, or from a [`Msg`].
#[derive(Debug, Clone, Copy)]
pub struct MsgView<'a> {
    /// The subject published to.
    pub subject: &'a [u8],
    /// The reply subject.
    pub reply: Option<&'a [u8]>,
    /// The header block, for HPUB.
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
    /// The publisher.
    pub origin: Origin,
}

impl Msg {
    /// Copies a view into one owned allocation.
    pub fn from_view(v: &MsgView<'_>) -> Msg {
        let reply = v.reply.unwrap_or(&[]);
        let headers = v.headers.unwrap_or(&[]);
        let mut data =
            Vec::with_capacity(v.subject.len() + reply.len() + headers.len() + v.payload.len());
        data.extend_from_slice(v.subject);
        data.extend_from_slice(reply);
        data.extend_from_slice(headers);
        data.extend_from_slice(v.payload);
        Msg {
            subject_end: v.subject.len(),
            reply_end: v.subject.len() + reply.len(),
            headers_end: v.subject.len() + reply.len() + headers.len(),
            has_reply: v.reply.is_some(),
            has_headers: v.headers.is_some(),
            data: data.into_boxed_slice(),
            origin: v.origin,
        }
    }

    /// Bytes this message occupies (for the rings' byte budget).
    pub fn weight(&self) -> u64 {
        self.data.len() as u64
    }

    /// The borrowed view of this message.
    pub fn view(&self) -> MsgView<'_> {
        MsgView {
            subject: &self.data[..self.subject_end],
            reply: self
                .has_reply
                .then(|| &self.data[self.subject_end..self.reply_end]),
            headers: self
                .has_headers
                .then(|| &self.data[self.reply_end..self.headers_end]),
            payload: &self.data[self.headers_end..],
            origin: self.origin,
        }
    }
}

/// One subscription, shared between its connection's worker and the subscription index.
#[derive(Debug)]
pub struct SubState {
    /// The subscribing connection.
    pub conn: ConnKey,
    /// The client's subscription id.
    pub sid: Box<[u8]>,
    /// The subject or pattern.
    pub pattern: Pattern,
    /// The queue group, if any.
    pub queue: Option<Box<[u8]>>,
    /// The subscribing connection's chat user, if it has one (chat deliveries are filtered
    /// by it).
    pub user: Option<Arc<str>>,
    /// Messages delivered so far. Relaxed: only the connection's worker touches it.
    delivered: AtomicU64,
    /// Auto-unsubscribe after this many (`u64::MAX`: never). Relaxed: only the connection's
    /// worker touches it.
    max: AtomicU64,
    /// Set once the subscription has ended, so in-flight deliveries are dropped. Relaxed:
    /// written only by the connection's worker, which alone relies on it; other workers read
    /// it only as a hint (a queue pick skips members already ended; a stale "live" is
    /// caught when the delivery reaches the member's worker).
    closed: AtomicBool,
    /// Set once its connection has closed: its subscriptions leave the index over several
    /// loop iterations, and queue picks skip them meanwhile. Shared by all of the
    /// connection's subscriptions, so closing costs one store. Relaxed, as `closed`.
    conn_closed: Option<Arc<AtomicBool>>,
}

/// A handle to a [`SubState`]; equality is identity.
#[derive(Debug, Clone)]
pub struct SubRef(pub Arc<SubState>);

/// What a delivery attempt decided for an auto-unsubscribing subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Deliver; the subscription goes on.
    Deliver,
    /// Deliver; this was the last message, end the subscription.
    DeliverLast,
    /// Drop: the subscription has ended.
    Drop,
}

impl SubState {
    /// A new live subscription.
    pub fn new(conn: ConnKey, sid: &[u8], pattern: Pattern, queue: Option<&[u8]>) -> SubState {
        SubState {
            conn,
            sid: sid.into(),
            pattern,
            queue: queue.map(Into::into),
            user: None,
            delivered: AtomicU64::new(0),
            max: AtomicU64::new(u64::MAX),
            closed: AtomicBool::new(false),
            conn_closed: None,
        }
    }

    /// The same subscription, ended as soon as `flag` (its connection's) is set.
    pub fn with_conn_flag(mut self, flag: Arc<AtomicBool>) -> SubState {
        self.conn_closed = Some(flag);
        self
    }

    /// The same subscription, owned by chat user `user`.
    pub fn with_user(mut self, user: Option<Arc<str>>) -> SubState {
        self.user = user;
        self
    }

    /// Counts one delivery if the subscription is live and under its max.
    pub fn admit(&self) -> Admit {
        // Relaxed (all three): only the owning worker reads or writes these fields.
        if self.closed.load(Ordering::Relaxed) {
            return Admit::Drop;
        }
        let delivered = self.delivered.load(Ordering::Relaxed);
        let max = self.max.load(Ordering::Relaxed);
        if delivered >= max {
            return Admit::Drop;
        }
        self.delivered.store(delivered + 1, Ordering::Relaxed);
        if delivered + 1 == max {
            Admit::DeliverLast
        } else {
            Admit::Deliver
        }
    }

    /// Sets the auto-unsubscribe limit; true when it is already reached (end now).
    pub fn limit(&self, max: u64) -> bool {
        // Relaxed: only the owning worker touches these fields.
        self.max.store(max, Ordering::Relaxed);
        self.delivered.load(Ordering::Relaxed) >= max
    }

    /// Marks the subscription ended.
    pub fn close(&self) {
        // Relaxed: only the owning worker reads it.
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether the subscription has ended (from another worker: as a hint, see the field).
    pub fn is_closed(&self) -> bool {
        // Relaxed (both): only the owning worker writes them, and no other memory is read
        // on the strength of them.
        self.closed.load(Ordering::Relaxed)
            || self
                .conn_closed
                .as_ref()
                .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

impl PartialEq for SubRef {
    fn eq(&self, other: &SubRef) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SubRef {}

impl Placed for SubRef {
    fn worker(&self) -> usize {
        usize::from(self.0.conn.worker)
    }
}
