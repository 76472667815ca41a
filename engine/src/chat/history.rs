//! The window of recent messages a room or direct conversation keeps, and its pages.
//!
//! Sequence numbers in a window are contiguous (messages only ever leave from the oldest
//! end), so a sequence's position is plain arithmetic. The window is bounded in messages by
//! `--history`; the shard bounds all of its windows together in bytes (see
//! [`super::shard`]).

use std::collections::VecDeque;

use serde_json::{json, Value};

use super::request::{Direction, HistoryQuery};
use super::{ChatError, Name};
use crate::limits;
use crate::msg::Msg;

/// One kept message.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence in the conversation.
    pub seq: u64,
    /// The sender.
    pub from: Name,
    /// Server time when it was ordered, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The message as delivered (stamped headers and payload).
    pub msg: Msg,
}

impl Entry {
    /// Bytes this entry counts against the history budget.
    pub fn weight(&self) -> u64 {
        self.msg.weight() + self.from.len() as u64 + limits::HISTORY_ENTRY_OVERHEAD_BYTES
    }

    /// The entry as a history result item.
    pub fn to_json(&self) -> Value {
        let payload = self.msg.view().payload;
        match std::str::from_utf8(payload) {
            Ok(text) => json!({"seq": self.seq, "from": &*self.from, "time": self.time_ms,
                "data": text}),
            Err(_) => json!({"seq": self.seq, "from": &*self.from, "time": self.time_ms,
                "data_base64": base64(payload)}),
        }
    }
}

/// A conversation's sequence counter and its kept messages.
#[derive(Debug, Default)]
pub struct Window {
    entries: VecDeque<Entry>,
    last: u64,
    bytes: u64,
    /// The last time stamped, so that time never goes back as the sequence goes up.
    last_time_ms: u64,
}

/// One page of history, oldest or newest first as asked.
#[derive(Debug)]
pub struct Page<'a> {
    /// The messages, in the page's direction.
    pub entries: Vec<&'a Entry>,
    /// Whether the same direction has more messages after this page.
    pub more: bool,
}

impl Window {
    /// The last sequence assigned (0 before the first message).
    pub fn last(&self) -> u64 {
        self.last
    }

    /// The oldest sequence kept (0 when nothing is kept).
    pub fn first(&self) -> u64 {
        self.entries.front().map_or(0, |e| e.seq)
    }

    /// Bytes of the kept entries.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Messages kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The next sequence number, and counts it as assigned.
    pub fn next_seq(&mut self) -> u64 {
        self.last += 1;
        self.last
    }

    /// The time to stamp on the next message: `now_ms`, or the last one stamped if the
    /// clock went back.
    pub fn time(&mut self, now_ms: u64) -> u64 {
        self.last_time_ms = self.last_time_ms.max(now_ms);
        self.last_time_ms
    }

    /// Keeps `entry` (whose sequence is the last assigned); drops the oldest past `cap`
    /// messages, returning the bytes dropped.
    pub fn push(&mut self, entry: Entry, cap: usize) -> u64 {
        debug_assert_eq!(entry.seq, self.last);
        self.bytes += entry.weight();
        self.entries.push_back(entry);
        let mut dropped = 0;
        while self.entries.len() > cap {
            dropped += self.pop_oldest().unwrap_or(0);
        }
        dropped
    }

    /// Drops the oldest kept message, returning its bytes.
    pub fn pop_oldest(&mut self) -> Option<u64> {
        let e = self.entries.pop_front()?;
        let w = e.weight();
        self.bytes -= w;
        Some(w)
    }

    /// One page for `q`, at most `max_bytes` of payload (but at least one message).
    ///
    /// A forward page from an explicit sequence that the window no longer reaches is a
    /// `410`, never a partial replay.
    pub fn page(&self, q: &HistoryQuery, max_bytes: usize) -> Result<Page<'_>, ChatError> {
        // Oldest kept; when nothing is kept, one past the last (an empty window).
        let oldest = self.entries.front().map_or(self.last + 1, |e| e.seq);
        // The positions of the page's candidates, in page order.
        let (range, forward): (std::ops::Range<usize>, bool) = match q.direction {
            Direction::Forward => {
                let start = match q.cursor {
                    None => 0,
                    Some(after) if after > self.last => {
                        return Err(ChatError::Gone(format!(
                            "sequence {after} is past the last one ({}): the conversation \
                                 was closed and created again",
                            self.last
                        )))
                    }
                    Some(after) if after == self.last => self.entries.len(),
                    Some(after) if after + 1 < oldest => {
                        return Err(ChatError::Gone(format!(
                            "history no longer reaches back to sequence {} (oldest kept: {})",
                            after + 1,
                            oldest
                        )))
                    }
                    Some(after) => (after + 1 - oldest) as usize,
                };
                (start..self.entries.len(), true)
            }
            Direction::Backward => {
                let before = q.cursor.unwrap_or(self.last + 1).min(self.last + 1);
                let end = before.saturating_sub(oldest) as usize;
                (0..end.min(self.entries.len()), false)
            }
        };
        let available = range.len();
        let mut entries = Vec::with_capacity(available.min(q.limit));
        let mut bytes = 0usize;
        let mut pick = |e: &'_ Entry, entries: &mut Vec<&'_ Entry>| -> bool {
            let n = encoded_len(e.msg.view().payload)
                + e.from.len()
                + limits::HISTORY_PAGE_ITEM_OVERHEAD_BYTES;
            if entries.len() >= q.limit || (!entries.is_empty() && bytes + n > max_bytes) {
                return false;
            }
            bytes += n;
            true
        };
        if forward {
            for e in self.entries.range(range) {
                if !pick(e, &mut entries) {
                    break;
                }
                entries.push(e);
            }
        } else {
            for e in self.entries.range(range).rev() {
                if !pick(e, &mut entries) {
                    break;
                }
                entries.push(e);
            }
        }
        let more = entries.len() < available;
        Ok(Page { entries, more })
    }
}

/// The length of a payload as it appears in a page: a JSON string (escapes included) when
/// it is UTF-8, its base64 otherwise.
fn encoded_len(payload: &[u8]) -> usize {
    match std::str::from_utf8(payload) {
        Ok(text) => text
            .bytes()
            .map(|b| match b {
                b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                0..=0x1f => 6,
                _ => 1,
            })
            .sum(),
        Err(_) => payload.len().div_ceil(3) * 4,
    }
}

/// Standard base64 with padding, for payloads that are not UTF-8.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{ConnKey, MsgView, Origin};

    fn window(n: u64, cap: usize) -> Window {
        let mut w = Window::default();
        for _ in 0..n {
            let seq = w.next_seq();
            let body = format!("m{seq}");
            let msg = Msg::from_view(&MsgView {
                subject: b"$CHAT.MSG.r",
                reply: None,
                headers: None,
                payload: body.as_bytes(),
                origin: Origin {
                    conn: ConnKey {
                        worker: 0,
                        slot: 0,
                        gen: 0,
                    },
                    no_responders: false,
                    echo: true,
                },
            });
            let entry = Entry {
                seq,
                from: "a".into(),
                time_ms: 0,
                msg,
            };
            w.push(entry, cap);
        }
        w
    }

    fn seqs(p: &Page<'_>) -> Vec<u64> {
        p.entries.iter().map(|e| e.seq).collect()
    }

    fn q(direction: Direction, cursor: Option<u64>, limit: usize) -> HistoryQuery {
        HistoryQuery {
            direction,
            cursor,
            limit,
            epoch: None,
        }
    }

    #[test]
    fn pages_forward_and_backward() {
        let w = window(10, 100);
        let p = w.page(&q(Direction::Forward, Some(3), 4), 1 << 20).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![4, 5, 6, 7], true));
        let p = w.page(&q(Direction::Forward, Some(7), 4), 1 << 20).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![8, 9, 10], false));
        let p = w
            .page(&q(Direction::Forward, Some(10), 4), 1 << 20)
            .unwrap();
        assert_eq!((seqs(&p), p.more), (vec![], false));
        let past = w.page(&q(Direction::Forward, Some(11), 4), 1 << 20);
        assert_eq!(past.unwrap_err().code(), 410);
        let p = w.page(&q(Direction::Backward, None, 4), 1 << 20).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![10, 9, 8, 7], true));
        let p = w
            .page(&q(Direction::Backward, Some(4), 4), 1 << 20)
            .unwrap();
        assert_eq!((seqs(&p), p.more), (vec![3, 2, 1], false));
    }

    #[test]
    fn resume_past_the_window_is_gone_not_partial() {
        let w = window(10, 5);
        assert_eq!((w.first(), w.last(), w.len()), (6, 10, 5));
        assert_eq!(
            w.page(&q(Direction::Forward, Some(4), 100), 1 << 20)
                .unwrap_err()
                .code(),
            410
        );
        let p = w
            .page(&q(Direction::Forward, Some(5), 100), 1 << 20)
            .unwrap();
        assert_eq!((seqs(&p), p.more), (vec![6, 7, 8, 9, 10], false));
        let p = w.page(&q(Direction::Forward, None, 2), 1 << 20).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![6, 7], true));
    }

    #[test]
    fn pages_stop_at_the_byte_cap_but_never_empty() {
        let w = window(10, 100);
        let item = 2 + 1 + limits::HISTORY_PAGE_ITEM_OVERHEAD_BYTES;
        let p = w.page(&q(Direction::Forward, None, 100), 3 * item).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![1, 2, 3], true));
        let p = w.page(&q(Direction::Forward, None, 100), 1).unwrap();
        assert_eq!((seqs(&p), p.more), (vec![1], true));
    }

    #[test]
    fn encoded_length_is_the_json_length() {
        for payload in [
            &b"plain"[..],
            b"quote\" back\\slash",
            b"\x01\x02 ctl \n\t",
            "\u{e9}t\u{e9}".as_bytes(),
            b"\xff\xfe not utf-8",
        ] {
            let json = match std::str::from_utf8(payload) {
                Ok(t) => serde_json::to_string(t).unwrap().len() - 2,
                Err(_) => base64(payload).len(),
            };
            assert_eq!(encoded_len(payload), json, "{payload:?}");
        }
    }

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }
}
