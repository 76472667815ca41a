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

impl ConnKey {
    /// The slot of the server's own subscribers (JetStream's API, a stream's subjects): no
    /// connection ever has it (a worker's slots are bounded by its open files).
    pub const INTERNAL_SLOT: u32 = u32::MAX;

    /// The key of an internal subscriber of kind `kind` on worker `worker`.
    pub fn internal(worker: u16, kind: u32) -> ConnKey {
        ConnKey {
            worker,
            slot: Self::INTERNAL_SLOT,
            gen: kind,
        }
    }

    /// Whether this is an internal subscriber's key (its kind is `gen`).
    pub fn is_internal(&self) -> bool {
        self.slot == Self::INTERNAL_SLOT
    }
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

/// A published message, owned, shared by every worker that delivers it: a range of a
/// reference-counted byte block holding a small fixed header (where each part ends, the
/// publisher) followed by subject, reply, headers and payload. Cloning it bumps a count.
///
/// The block is the message's own ([`Msg::from_view`]: one allocation, not a boxed slice
/// inside an `Arc`), or shared by a batch of small messages sent to one worker in one loop
/// iteration ([`Msg::encode`] then [`Msg::in_block`]: one allocation per batch). A
/// cross-worker message is freed on the destination's thread, and a free on another thread
/// than the allocation's is the expensive kind (results/2026-12-02-one-allocation.md,
/// results/2026-12-02-batched-messages.md).
#[derive(Debug, Clone)]
pub struct Msg {
    bytes: Arc<[u8]>,
    start: u32,
    end: u32,
}

/// Bytes of [`Msg`]'s fixed header: three `u32` ends and the parts' length, a flags byte, the
/// publisher's worker (`u16`), slot and generation (`u32` each).
pub const MSG_HEADER: usize = 27;
/// Messages up to this size are assembled on the stack before their one allocation; larger
/// ones in a temporary vector freed on the spot (the same thread, so cheap).
const MSG_STACK_BYTES: usize = 1024;

const FLAG_REPLY: u8 = 1;
const FLAG_HEADERS: u8 = 2;
const FLAG_NO_RESPONDERS: u8 = 4;
const FLAG_ECHO: u8 = 8;

/// What [`Msg::view`] gives for an empty range (which no caller builds).
const EMPTY_VIEW: MsgView<'static> = MsgView {
    subject: &[],
    reply: None,
    headers: None,
    payload: &[],
    origin: Origin {
        conn: ConnKey {
            worker: 0,
            slot: 0,
            gen: 0,
        },
        no_responders: false,
        echo: false,
    },
};

/// The message at the start of `raw` and the bytes it takes; `None` when `raw` is empty (or,
/// which [`Msg`] never builds, shorter than the header says).
fn decode(raw: &[u8]) -> Option<(MsgView<'_>, usize)> {
    let h = raw.get(..MSG_HEADER)?;
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as usize;
    let (subject_end, reply_end, headers_end, total) =
        (u32_at(0), u32_at(4), u32_at(8), u32_at(12));
    let parts = raw.get(MSG_HEADER..MSG_HEADER + total)?;
    let flags = h[16];
    let view = MsgView {
        subject: parts.get(..subject_end)?,
        reply: (flags & FLAG_REPLY != 0)
            .then(|| parts.get(subject_end..reply_end))
            .flatten(),
        headers: (flags & FLAG_HEADERS != 0)
            .then(|| parts.get(reply_end..headers_end))
            .flatten(),
        payload: parts.get(headers_end..)?,
        origin: Origin {
            conn: ConnKey {
                worker: u16::from_le_bytes([h[17], h[18]]),
                slot: u32_at(19) as u32,
                gen: u32_at(23) as u32,
            },
            no_responders: flags & FLAG_NO_RESPONDERS != 0,
            echo: flags & FLAG_ECHO != 0,
        },
    };
    Some((view, MSG_HEADER + total))
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
    /// The bytes `v` takes as a message: header and parts.
    pub fn encoded_len(v: &MsgView<'_>) -> usize {
        MSG_HEADER
            + v.subject.len()
            + v.reply.map_or(0, <[u8]>::len)
            + v.headers.map_or(0, <[u8]>::len)
            + v.payload.len()
    }

    fn header(v: &MsgView<'_>) -> [u8; MSG_HEADER] {
        let mut header = [0u8; MSG_HEADER];
        // The parts' ends fit in u32: a message is bounded by the 1 MiB payload limit and the
        // 4 KiB control line.
        let subject_end = v.subject.len() as u32;
        let reply_end = subject_end + v.reply.map_or(0, <[u8]>::len) as u32;
        let headers_end = reply_end + v.headers.map_or(0, <[u8]>::len) as u32;
        let total = headers_end + v.payload.len() as u32;
        header[0..4].copy_from_slice(&subject_end.to_le_bytes());
        header[4..8].copy_from_slice(&reply_end.to_le_bytes());
        header[8..12].copy_from_slice(&headers_end.to_le_bytes());
        header[12..16].copy_from_slice(&total.to_le_bytes());
        let mut flags = 0;
        for (on, flag) in [
            (v.reply.is_some(), FLAG_REPLY),
            (v.headers.is_some(), FLAG_HEADERS),
            (v.origin.no_responders, FLAG_NO_RESPONDERS),
            (v.origin.echo, FLAG_ECHO),
        ] {
            if on {
                flags |= flag;
            }
        }
        header[16] = flags;
        header[17..19].copy_from_slice(&v.origin.conn.worker.to_le_bytes());
        header[19..23].copy_from_slice(&v.origin.conn.slot.to_le_bytes());
        header[23..27].copy_from_slice(&v.origin.conn.gen.to_le_bytes());
        header
    }

    /// The header and parts of `v`, in their order in a block.
    fn parts<'a>(v: &MsgView<'a>, header: &'a [u8; MSG_HEADER]) -> [&'a [u8]; 5] {
        [
            &header[..],
            v.subject,
            v.reply.unwrap_or(&[]),
            v.headers.unwrap_or(&[]),
            v.payload,
        ]
    }

    /// Appends `v` as a message to `block` (to be shared later through [`Msg::in_block`]);
    /// returns where it starts and ends there.
    pub fn encode(v: &MsgView<'_>, block: &mut Vec<u8>) -> (u32, u32) {
        let start = block.len();
        let header = Msg::header(v);
        for part in Msg::parts(v, &header) {
            block.extend_from_slice(part);
        }
        (start as u32, block.len() as u32)
    }

    /// The message [`Msg::encode`] put at `start..end` of what became `block`; or, where
    /// several were encoded back to back there, all of them, as a run (see [`Msg::views`]).
    pub fn in_block(block: &Arc<[u8]>, start: u32, end: u32) -> Msg {
        Msg {
            bytes: Arc::clone(block),
            start,
            end,
        }
    }

    /// Copies a view into one owned allocation.
    pub fn from_view(v: &MsgView<'_>) -> Msg {
        let len = Msg::encoded_len(v);
        let header = Msg::header(v);
        let parts = Msg::parts(v, &header);
        let bytes: Arc<[u8]> = if len <= MSG_STACK_BYTES {
            let mut buf = [0u8; MSG_STACK_BYTES];
            let mut at = 0;
            for part in parts {
                buf[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Arc::from(&buf[..len])
        } else {
            Arc::from(parts.concat())
        };
        Msg {
            bytes,
            start: 0,
            end: len as u32,
        }
    }

    fn raw(&self) -> &[u8] {
        &self.bytes[self.start as usize..self.end as usize]
    }

    /// Bytes this message (or run) occupies, headers included (for the rings' byte budget
    /// and history's).
    pub fn weight(&self) -> u64 {
        u64::from(self.end - self.start)
    }

    /// The borrowed view of this message (the first one, for a run).
    pub fn view(&self) -> MsgView<'_> {
        decode(self.raw()).map_or(EMPTY_VIEW, |(v, _)| v)
    }

    /// Every message of the run, in order (one for a message of its own).
    pub fn views(&self) -> impl Iterator<Item = MsgView<'_>> {
        let mut rest = self.raw();
        std::iter::from_fn(move || {
            let (v, len) = decode(rest)?;
            rest = &rest[len..];
            Some(v)
        })
    }

    /// Whether `self` and `other` are the same message of the same allocation (not merely
    /// equal bytes).
    #[cfg(test)]
    fn same(&self, other: &Msg) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes) && self.start == other.start
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

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(worker: u16, no_responders: bool, echo: bool) -> Origin {
        Origin {
            conn: ConnKey {
                worker,
                slot: 0x0102_0304,
                gen: u32::MAX,
            },
            no_responders,
            echo,
        }
    }

    fn assert_views_equal(got: &MsgView<'_>, v: &MsgView<'_>) {
        assert_eq!(got.subject, v.subject);
        assert_eq!(got.reply, v.reply);
        assert_eq!(got.headers, v.headers);
        assert_eq!(got.payload, v.payload);
        assert_eq!(got.origin, v.origin);
    }

    fn round_trip(v: MsgView<'_>) {
        let m = Msg::from_view(&v);
        assert_views_equal(&m.view(), &v);
        let parts = v.subject.len()
            + v.reply.map_or(0, <[u8]>::len)
            + v.headers.map_or(0, <[u8]>::len)
            + v.payload.len();
        assert_eq!(m.weight(), (MSG_HEADER + parts) as u64);
        assert_eq!(m.views().count(), 1);
        let copy = m.clone();
        assert!(copy.same(&m));
        assert!(!Msg::from_view(&v).same(&m));
    }

    #[test]
    fn every_part_and_flag_survives_the_one_allocation() {
        round_trip(MsgView {
            subject: b"a.b",
            reply: None,
            headers: None,
            payload: b"",
            origin: origin(0, false, true),
        });
        // An empty reply or header block is kept apart from an absent one.
        round_trip(MsgView {
            subject: b"s",
            reply: Some(b""),
            headers: Some(b""),
            payload: b"x",
            origin: origin(7, true, false),
        });
        round_trip(MsgView {
            subject: b"orders.created",
            reply: Some(b"_INBOX.1"),
            headers: Some(b"NATS/1.0\r\nA: b\r\n\r\n"),
            payload: b"hello",
            origin: origin(u16::MAX, true, true),
        });
    }

    #[test]
    fn messages_in_one_block_are_each_whole_and_apart() {
        let views = [
            MsgView {
                subject: b"a",
                reply: None,
                headers: None,
                payload: b"first",
                origin: origin(0, false, true),
            },
            MsgView {
                subject: b"b.c",
                reply: Some(b"_INBOX.9"),
                headers: Some(b"NATS/1.0\r\n\r\n"),
                payload: b"",
                origin: origin(3, true, false),
            },
        ];
        let mut block = Vec::new();
        let ranges: Vec<(u32, u32)> = views.iter().map(|v| Msg::encode(v, &mut block)).collect();
        assert_eq!(
            block.len(),
            views.iter().map(Msg::encoded_len).sum::<usize>()
        );
        let block: Arc<[u8]> = Arc::from(&block[..]);
        let msgs: Vec<Msg> = ranges
            .iter()
            .map(|&(start, end)| Msg::in_block(&block, start, end))
            .collect();
        for (m, v) in msgs.iter().zip(&views) {
            assert_views_equal(&m.view(), v);
            assert_eq!(m.weight(), Msg::encoded_len(v) as u64);
        }
        // The whole block as one run: both messages, in order.
        let run = Msg::in_block(&block, 0, block.len() as u32);
        let got: Vec<MsgView<'_>> = run.views().collect();
        assert_eq!(got.len(), 2);
        for (g, v) in got.iter().zip(&views) {
            assert_views_equal(g, v);
        }
        assert_views_equal(&run.view(), &views[0]);
        assert!(!msgs[0].same(&msgs[1]));
        assert!(msgs[1].same(&msgs[1].clone()));
    }

    #[test]
    fn messages_past_the_stack_buffer_are_whole() {
        // "big" and "r" take 4 bytes: the first fills the stack buffer exactly.
        let fits = MSG_STACK_BYTES - MSG_HEADER - 4;
        for len in [fits, fits + 1, 1 << 20] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            round_trip(MsgView {
                subject: b"big",
                reply: Some(b"r"),
                headers: None,
                payload: &payload,
                origin: origin(1, false, true),
            });
        }
    }
}
