//! The seam between a consumer and the stream it reads: [`Source`].
//!
//! A consumer never owns messages. It asks its stream for sequence numbers and for the message
//! stored at one, and it is told (by its driver) when the stream has grown. The stream layer
//! implements [`Source`] over its own store; [`MemSource`] is the small in-memory version the
//! tests use, and the reference for what each method must answer.
//!
//! # What an implementation must guarantee
//! - Sequences start at 1, only grow, and are never reused. Deleted messages leave gaps.
//! - [`Source::first_seq`] is the lowest stored sequence, or `last_seq() + 1` when nothing is
//!   stored (after a purge); [`Source::last_seq`] is the highest sequence ever assigned (0 for
//!   a new stream), as nats-server's `FirstSeq`/`LastSeq`.
//! - Times are Unix nanoseconds and never decrease with the sequence.
//!
//! Only the four required methods are needed; the provided ones are written on top of them by
//! scanning, which costs time linear in the span they cover. A store with a per-subject index
//! should override [`Source::count_matching`] at least: a consumer calls it for every
//! delivered message (the `pending` token of the ack subject).

use crate::subject::Pattern;

/// One stored message, borrowed from the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredRef<'a> {
    /// Its stream sequence.
    pub seq: u64,
    /// The subject it was published to.
    pub subject: &'a [u8],
    /// Its header block as published (`NATS/1.0\r\n...\r\n\r\n`), empty without headers.
    pub headers: &'a [u8],
    /// Its payload.
    pub payload: &'a [u8],
    /// When the stream stored it, in Unix nanoseconds.
    pub time_ns: i64,
}

/// Read access to one stream, as a consumer needs it.
pub trait Source {
    /// The lowest stored sequence, or `last_seq() + 1` when the stream holds nothing.
    fn first_seq(&self) -> u64;

    /// The highest sequence assigned so far (0 before the first message).
    fn last_seq(&self) -> u64;

    /// The message stored at `seq`, if it is still stored.
    fn load(&self, seq: u64) -> Option<StoredRef<'_>>;

    /// The lowest stored sequence `>= from` whose subject `filter` matches (any subject
    /// without a filter).
    fn next_matching(&self, from: u64, filter: Option<&Pattern>) -> Option<u64>;

    /// How many stored messages with sequence `>= from` `filter` matches.
    fn count_matching(&self, from: u64, filter: Option<&Pattern>) -> u64 {
        let mut n = 0;
        let mut at = from;
        while let Some(seq) = self.next_matching(at, filter) {
            n += 1;
            at = seq + 1;
        }
        n
    }

    /// The highest stored sequence whose subject `filter` matches.
    fn last_matching(&self, filter: Option<&Pattern>) -> Option<u64> {
        let mut last = None;
        let mut at = self.first_seq();
        while let Some(seq) = self.next_matching(at, filter) {
            last = Some(seq);
            at = seq + 1;
        }
        last
    }

    /// Appends to `out`, in ascending order, the last sequence of every distinct subject
    /// `filter` matches, and at most `cap` of them; returns false (with `out` holding the
    /// first `cap`) when there are more.
    fn last_per_subject(&self, filter: Option<&Pattern>, cap: usize, out: &mut Vec<u64>) -> bool {
        let mut last: std::collections::HashMap<&[u8], u64> = std::collections::HashMap::new();
        let mut at = self.first_seq();
        while let Some(seq) = self.next_matching(at, filter) {
            if let Some(m) = self.load(seq) {
                if !last.contains_key(m.subject) && last.len() >= cap {
                    return false;
                }
                last.insert(m.subject, seq);
            }
            at = seq + 1;
        }
        let start = out.len();
        out.extend(last.into_values());
        out[start..].sort_unstable();
        true
    }

    /// The first stored sequence whose time is `>= time_ns`, or `last_seq() + 1`.
    fn seq_at_time(&self, time_ns: i64) -> u64 {
        let mut at = self.first_seq();
        while let Some(seq) = self.next_matching(at, None) {
            match self.load(seq) {
                Some(m) if m.time_ns >= time_ns => return seq,
                _ => at = seq + 1,
            }
        }
        self.last_seq() + 1
    }
}

/// One message kept by a [`MemSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemMsg {
    /// Subject.
    pub subject: Vec<u8>,
    /// Header block, empty without headers.
    pub headers: Vec<u8>,
    /// Payload.
    pub payload: Vec<u8>,
    /// Unix nanoseconds.
    pub time_ns: i64,
}

/// A stream kept in memory: a [`Source`] for tests and a reference for implementers.
#[derive(Debug, Default, Clone)]
pub struct MemSource {
    /// Sequence of `msgs[0]` (the deque may start past deleted messages).
    base: u64,
    msgs: std::collections::VecDeque<Option<MemMsg>>,
}

impl MemSource {
    /// An empty stream (first sequence 1).
    pub fn new() -> MemSource {
        MemSource {
            base: 1,
            msgs: std::collections::VecDeque::new(),
        }
    }

    /// Stores a message and returns its sequence.
    pub fn push(&mut self, subject: &[u8], headers: &[u8], payload: &[u8], time_ns: i64) -> u64 {
        self.msgs.push_back(Some(MemMsg {
            subject: subject.to_vec(),
            headers: headers.to_vec(),
            payload: payload.to_vec(),
            time_ns,
        }));
        self.base + self.msgs.len() as u64 - 1
    }

    /// Deletes the message at `seq`; true if it was stored.
    pub fn delete(&mut self, seq: u64) -> bool {
        let Some(i) = seq.checked_sub(self.base) else {
            return false;
        };
        let Ok(i) = usize::try_from(i) else {
            return false;
        };
        let had = matches!(self.msgs.get(i), Some(Some(_)));
        if let Some(slot) = self.msgs.get_mut(i) {
            *slot = None;
        }
        while matches!(self.msgs.front(), Some(None)) {
            self.msgs.pop_front();
            self.base += 1;
        }
        had
    }

    fn slot(&self, seq: u64) -> Option<&MemMsg> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        self.msgs.get(i)?.as_ref()
    }
}

impl Source for MemSource {
    fn first_seq(&self) -> u64 {
        self.base
    }

    fn last_seq(&self) -> u64 {
        self.base + self.msgs.len() as u64 - 1
    }

    fn load(&self, seq: u64) -> Option<StoredRef<'_>> {
        self.slot(seq).map(|m| StoredRef {
            seq,
            subject: &m.subject,
            headers: &m.headers,
            payload: &m.payload,
            time_ns: m.time_ns,
        })
    }

    fn next_matching(&self, from: u64, filter: Option<&Pattern>) -> Option<u64> {
        let start = from.max(self.base);
        (start..=self.last_seq()).find(|&seq| {
            self.slot(seq)
                .is_some_and(|m| filter.is_none_or(|f| f.matches(&m.subject)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> Pattern {
        Pattern::parse(s.as_bytes()).unwrap()
    }

    #[test]
    fn empty_stream_bounds() {
        let s = MemSource::new();
        assert_eq!((s.first_seq(), s.last_seq()), (1, 0));
        assert_eq!(s.next_matching(1, None), None);
        assert_eq!(s.seq_at_time(0), 1);
    }

    #[test]
    fn provided_methods_follow_the_required_ones() {
        let mut s = MemSource::new();
        s.push(b"a.1", b"", b"x", 10);
        s.push(b"b.1", b"", b"y", 20);
        s.push(b"a.2", b"", b"z", 30);
        s.push(b"a.1", b"", b"w", 40);
        let a = pat("a.*");
        assert_eq!(s.next_matching(2, Some(&a)), Some(3));
        assert_eq!(s.count_matching(1, Some(&a)), 3);
        assert_eq!(s.last_matching(Some(&pat("b.>"))), Some(2));
        let mut out = Vec::new();
        assert!(s.last_per_subject(Some(&a), 10, &mut out));
        assert_eq!(out, vec![3, 4]);
        out.clear();
        assert!(!s.last_per_subject(None, 2, &mut out));
        assert_eq!(s.seq_at_time(25), 3);
        assert_eq!(s.seq_at_time(41), 5);
        assert!(s.delete(1));
        assert!(!s.delete(1));
        assert_eq!(s.first_seq(), 2);
        assert!(s.delete(3));
        assert_eq!(s.next_matching(1, Some(&a)), Some(4));
        assert!(!s.delete(u64::MAX));
    }
}
