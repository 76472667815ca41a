//! A [`Stream`] as the consumer layer reads it: the [`Source`] seam of [`crate::jsc`].
//!
//! Written on the stream's public reads only, so the stream's own indexes may change
//! underneath. `count_matching` without a filter (the `pending` token of every ack subject a
//! consumer sends) is answered in constant time when the stream has no interior gaps, the
//! common case; with gaps or a filter it scans, linear in what it covers.

use super::stream::Stream;
use crate::jsc::{Source, StoredRef};
use crate::subject::Pattern;

impl Source for Stream {
    fn first_seq(&self) -> u64 {
        let s = self.state();
        if s.messages == 0 {
            s.last_seq + 1
        } else {
            s.first_seq
        }
    }

    fn last_seq(&self) -> u64 {
        self.state().last_seq
    }

    fn load(&self, seq: u64) -> Option<StoredRef<'_>> {
        self.msg(seq).map(|m| StoredRef {
            seq,
            subject: m.subject.as_bytes(),
            headers: &m.headers,
            payload: &m.payload,
            time_ns: m.time,
        })
    }

    fn next_matching(&self, from: u64, filter: Option<&Pattern>) -> Option<u64> {
        // `>` matches every subject a stream can hold (a valid subject has a token).
        let filter = filter.map_or(Some(">"), |p| std::str::from_utf8(p.as_bytes()).ok())?;
        self.next_by_subject(filter, from).map(|m| m.seq)
    }

    fn count_matching(&self, from: u64, filter: Option<&Pattern>) -> u64 {
        let s = self.state();
        if s.messages == 0 {
            return 0;
        }
        if filter.is_none() && s.num_deleted == 0 {
            return (s.last_seq + 1).saturating_sub(from.max(s.first_seq));
        }
        let mut n = 0;
        let mut at = from;
        while let Some(seq) = self.next_matching(at, filter) {
            n += 1;
            at = seq + 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::Streams;

    #[test]
    fn a_stream_reads_as_a_source_with_and_without_gaps() {
        let mut streams = Streams::new();
        let mut out = Vec::new();
        let create = br#"{"name":"S","subjects":["s.*"],"storage":"memory"}"#;
        streams.handle("$JS.API.STREAM.CREATE.S", create, 1, &mut out);
        for i in 0..10 {
            let subject = if i % 2 == 0 { "s.even" } else { "s.odd" };
            streams.publish(
                "S",
                subject,
                b"",
                format!("{i}").as_bytes(),
                10 + i,
                &mut out,
            );
        }
        let s = streams.stream("S").unwrap();
        assert_eq!((s.first_seq(), s.last_seq()), (1, 10));
        assert_eq!(s.count_matching(4, None), 7);
        let odd = Pattern::parse(b"s.odd").unwrap();
        assert_eq!(s.next_matching(4, Some(&odd)), Some(4));
        assert_eq!(s.count_matching(1, Some(&odd)), 5);
        assert_eq!(s.load(3).unwrap().payload, b"2");
        streams.handle("$JS.API.STREAM.MSG.DELETE.S", br#"{"seq":5}"#, 30, &mut out);
        let s = streams.stream("S").unwrap();
        assert_eq!(s.count_matching(4, None), 6);
        assert_eq!(s.next_matching(5, None), Some(6));
        assert!(s.load(5).is_none());
    }
}
