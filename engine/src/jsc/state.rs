//! A consumer's recoverable state, the records that change it, and their encodings.
//!
//! The durable part of a consumer is [`State`]: where it is in the stream, its ack floors and
//! the messages delivered and not yet acknowledged. The consumer changes it only through
//! [`State::apply`], with a [`StateChange`] it also hands to its driver
//! ([`super::Effect::Persist`]); so replaying the records in order onto the last snapshot
//! ([`State::encode`] / [`State::decode`]) rebuilds exactly the state the consumer had.
//!
//! What is *not* recovered, on purpose, as in nats-server: waiting pull requests (their
//! clients retry), the redelivery queue (every pending message is redelivered once its
//! deadline passes, which the restored deadlines say), and flow-control accounting.
//!
//! # Encoding
//! Unsigned LEB128 varints throughout. A record is a tag byte and its fields in declaration
//! order; a snapshot is `JSC1`, the scalar fields, the pending entries ordered by stream
//! sequence and the skip list. Decoding checks lengths against the limits and never panics.

use std::collections::{BTreeMap, VecDeque};

use crate::codec::{self, put_varint, CodecError};
use crate::limits;

/// Why bytes did not decode as a record or snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The bytes end inside a field.
    #[error("truncated consumer state")]
    Truncated,
    /// A varint longer than ten bytes.
    #[error("overlong varint in consumer state")]
    Overlong,
    /// An unknown record tag.
    #[error("unknown consumer state record {0}")]
    BadTag(u8),
    /// A snapshot without the `JSC1` magic.
    #[error("not a consumer snapshot")]
    BadMagic,
    /// More entries than the limits allow.
    #[error("consumer state larger than its limits")]
    TooLarge,
    /// Bytes left over after the last field.
    #[error("trailing bytes after consumer state")]
    Trailing,
}

/// One message delivered and not yet acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    /// Consumer sequence of its latest delivery.
    pub dseq: u64,
    /// Times it has been delivered.
    pub deliveries: u64,
    /// When it is due for redelivery, Unix nanoseconds.
    pub deadline_ns: u64,
}

/// A consumer's recoverable state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// Next stream sequence to look at.
    pub sseq: u64,
    /// Next consumer sequence to assign.
    pub dseq: u64,
    /// Consumer sequence up to which everything is acknowledged.
    pub adflr: u64,
    /// Stream sequence up to which everything is acknowledged.
    pub asflr: u64,
    /// Last delivery (or deadline change), Unix nanoseconds.
    pub last_delivered_ns: Option<u64>,
    /// Last acknowledgement, Unix nanoseconds.
    pub last_ack_ns: Option<u64>,
    /// Delivered, not acknowledged, by stream sequence (bounded by `max_ack_pending`).
    pub pending: BTreeMap<u64, Pending>,
    /// `last_per_subject` start: sequences still to deliver, ascending.
    pub lss: VecDeque<u64>,
    /// Where a `last_per_subject` consumer resumes after its skip list.
    pub lss_resume: u64,
}

/// One change to a [`State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateChange {
    /// A message went out (first delivery or a redelivery).
    Delivered {
        /// Its stream sequence.
        sseq: u64,
        /// The consumer sequence it went out with.
        dseq: u64,
        /// Its delivery count, this one included.
        deliveries: u64,
        /// When it is due for redelivery (0 under ack policy none: nothing is pending).
        deadline_ns: u64,
        /// The consumer's next stream sequence afterwards.
        next_sseq: u64,
        /// When.
        now_ns: u64,
        /// Ack policy none: the floors move to this delivery instead of a pending entry.
        no_ack: bool,
    },
    /// Acknowledged: pending entries in `from..=to` are gone and the floors are these.
    Acked {
        /// Lowest stream sequence acknowledged.
        from: u64,
        /// Highest stream sequence acknowledged.
        to: u64,
        /// Consumer ack floor afterwards.
        adflr: u64,
        /// Stream ack floor afterwards.
        asflr: u64,
        /// When.
        now_ns: u64,
    },
    /// A pending message's deadline moved (`-NAK` with a delay, `+WPI`).
    Deadline {
        /// Its stream sequence.
        sseq: u64,
        /// The new deadline.
        deadline_ns: u64,
        /// When.
        now_ns: u64,
    },
    /// A pending message given up without an ack (delivered `max_deliver` times, or no
    /// longer in the stream).
    Dropped {
        /// Its stream sequence.
        sseq: u64,
    },
}

impl State {
    /// Applies one change.
    pub fn apply(&mut self, change: &StateChange) {
        match *change {
            StateChange::Delivered {
                sseq,
                dseq,
                deliveries,
                deadline_ns,
                next_sseq,
                now_ns,
                no_ack,
            } => {
                self.dseq = self.dseq.max(dseq.saturating_add(1));
                self.sseq = next_sseq;
                while self.lss.front().is_some_and(|&s| s <= sseq) {
                    self.lss.pop_front();
                }
                if no_ack {
                    self.adflr = dseq;
                    self.asflr = sseq;
                } else {
                    self.pending.insert(
                        sseq,
                        Pending {
                            dseq,
                            deliveries,
                            deadline_ns,
                        },
                    );
                }
                self.last_delivered_ns = Some(now_ns);
            }
            StateChange::Acked {
                from,
                to,
                adflr,
                asflr,
                now_ns,
            } => {
                // One removal at a time: no list of what goes (an ack removes one entry, or
                // a short run under ack policy all).
                loop {
                    let Some(seq) = self.pending_in(from, to).next() else {
                        break;
                    };
                    self.pending.remove(&seq);
                }
                self.adflr = adflr;
                self.asflr = asflr;
                self.last_ack_ns = Some(now_ns);
            }
            StateChange::Deadline {
                sseq,
                deadline_ns,
                now_ns,
            } => {
                if let Some(p) = self.pending.get_mut(&sseq) {
                    p.deadline_ns = deadline_ns;
                }
                self.last_delivered_ns = Some(now_ns);
            }
            StateChange::Dropped { sseq } => {
                self.pending.remove(&sseq);
            }
        }
    }

    /// The stream sequences pending in `from..=to` (none when `from > to`).
    pub fn pending_in(&self, from: u64, to: u64) -> impl Iterator<Item = u64> + '_ {
        let range = if from <= to {
            Some(self.pending.range(from..=to))
        } else {
            None
        };
        range.into_iter().flatten().map(|(&seq, _)| seq)
    }

    /// Appends the snapshot encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        for v in [self.sseq, self.dseq, self.adflr, self.asflr] {
            put_varint(out, v);
        }
        put_varint(
            out,
            self.last_delivered_ns.map_or(0, |t| t.saturating_add(1)),
        );
        put_varint(out, self.last_ack_ns.map_or(0, |t| t.saturating_add(1)));
        put_varint(out, self.pending.len() as u64);
        for (&s, p) in &self.pending {
            for v in [s, p.dseq, p.deliveries, p.deadline_ns] {
                put_varint(out, v);
            }
        }
        put_varint(out, self.lss.len() as u64);
        for &s in &self.lss {
            put_varint(out, s);
        }
        put_varint(out, self.lss_resume);
    }

    /// Decodes a snapshot made by [`State::encode`].
    ///
    /// # Errors
    /// A [`StateError`] for bytes that are not one whole snapshot within the limits.
    pub fn decode(bytes: &[u8]) -> Result<State, StateError> {
        let mut r = Reader(codec::Reader::new(bytes));
        if r.take(MAGIC.len())? != MAGIC {
            return Err(StateError::BadMagic);
        }
        let mut s = State {
            sseq: r.var()?,
            dseq: r.var()?,
            adflr: r.var()?,
            asflr: r.var()?,
            ..State::default()
        };
        s.last_delivered_ns = r.var()?.checked_sub(1);
        s.last_ack_ns = r.var()?.checked_sub(1);
        let n = r.var()?;
        if n > limits::JS_MAX_ACK_PENDING as u64 {
            return Err(StateError::TooLarge);
        }
        for _ in 0..n {
            let seq = r.var()?;
            let p = Pending {
                dseq: r.var()?,
                deliveries: r.var()?,
                deadline_ns: r.var()?,
            };
            s.pending.insert(seq, p);
        }
        let n = r.var()?;
        if n > limits::JS_MAX_LAST_PER_SUBJECT as u64 {
            return Err(StateError::TooLarge);
        }
        for _ in 0..n {
            s.lss.push_back(r.var()?);
        }
        s.lss_resume = r.var()?;
        r.end()?;
        Ok(s)
    }
}

impl StateChange {
    /// Appends the record's encoding to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            StateChange::Delivered {
                sseq,
                dseq,
                deliveries,
                deadline_ns,
                next_sseq,
                now_ns,
                no_ack,
            } => {
                out.push(1);
                for v in [sseq, dseq, deliveries, deadline_ns, next_sseq, now_ns] {
                    put_varint(out, v);
                }
                out.push(u8::from(no_ack));
            }
            StateChange::Acked {
                from,
                to,
                adflr,
                asflr,
                now_ns,
            } => {
                out.push(2);
                for v in [from, to, adflr, asflr, now_ns] {
                    put_varint(out, v);
                }
            }
            StateChange::Deadline {
                sseq,
                deadline_ns,
                now_ns,
            } => {
                out.push(3);
                for v in [sseq, deadline_ns, now_ns] {
                    put_varint(out, v);
                }
            }
            StateChange::Dropped { sseq } => {
                out.push(4);
                put_varint(out, sseq);
            }
        }
    }

    /// Decodes one record made by [`StateChange::encode`].
    ///
    /// # Errors
    /// A [`StateError`] for bytes that are not exactly one record.
    pub fn decode(bytes: &[u8]) -> Result<StateChange, StateError> {
        let mut r = Reader(codec::Reader::new(bytes));
        let tag = r.take(1)?.first().copied().unwrap_or(0);
        let change = match tag {
            1 => StateChange::Delivered {
                sseq: r.var()?,
                dseq: r.var()?,
                deliveries: r.var()?,
                deadline_ns: r.var()?,
                next_sseq: r.var()?,
                now_ns: r.var()?,
                no_ack: r.take(1)? != [0],
            },
            2 => StateChange::Acked {
                from: r.var()?,
                to: r.var()?,
                adflr: r.var()?,
                asflr: r.var()?,
                now_ns: r.var()?,
            },
            3 => StateChange::Deadline {
                sseq: r.var()?,
                deadline_ns: r.var()?,
                now_ns: r.var()?,
            },
            4 => StateChange::Dropped { sseq: r.var()? },
            other => return Err(StateError::BadTag(other)),
        };
        r.end()?;
        Ok(change)
    }
}

const MAGIC: &[u8] = b"JSC1";

/// A consumer record's field reader: the shared codec's, with its errors as [`StateError`].
struct Reader<'a>(codec::Reader<'a>);

impl From<CodecError> for StateError {
    fn from(e: CodecError) -> StateError {
        match e {
            CodecError::Truncated => StateError::Truncated,
            CodecError::Overlong => StateError::Overlong,
        }
    }
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StateError> {
        Ok(self.0.take(n)?)
    }

    fn var(&mut self) -> Result<u64, StateError> {
        Ok(self.0.varint()?)
    }

    fn end(&self) -> Result<(), StateError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(StateError::Trailing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change() -> impl Strategy<Value = StateChange> {
        prop_oneof![
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<bool>()
            )
                .prop_map(
                    |(sseq, dseq, deliveries, deadline_ns, next_sseq, now_ns, no_ack)| {
                        StateChange::Delivered {
                            sseq,
                            dseq: dseq >> 1,
                            deliveries,
                            deadline_ns,
                            next_sseq,
                            now_ns,
                            no_ack,
                        }
                    }
                ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>()
            )
                .prop_map(|(from, to, adflr, asflr, now_ns)| StateChange::Acked {
                    from,
                    to,
                    adflr,
                    asflr,
                    now_ns
                }),
            (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(sseq, deadline_ns, now_ns)| {
                StateChange::Deadline {
                    sseq,
                    deadline_ns,
                    now_ns,
                }
            }),
            any::<u64>().prop_map(|sseq| StateChange::Dropped { sseq }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(c in change()) {
            let mut bytes = Vec::new();
            c.encode(&mut bytes);
            prop_assert_eq!(StateChange::decode(&bytes), Ok(c));
        }

        #[test]
        fn snapshots_round_trip(changes in proptest::collection::vec(change(), 0..40)) {
            let mut s = State::default();
            for c in &changes {
                s.apply(c);
            }
            let mut bytes = Vec::new();
            s.encode(&mut bytes);
            prop_assert_eq!(State::decode(&bytes), Ok(s));
        }

        #[test]
        fn decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = StateChange::decode(&bytes);
            let _ = State::decode(&bytes);
            let mut magic = b"JSC1".to_vec();
            magic.extend_from_slice(&bytes);
            let _ = State::decode(&magic);
        }
    }
}
