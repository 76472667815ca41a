//! One stream's messages and limits: a state machine with no I/O and no clock.
//!
//! Every operation takes the time (unix nanoseconds) from its caller and, when it changes
//! the stream, appends the [`Change`]s it made to `out`. Every change is made *through*
//! [`Stream::apply`], so applying the same changes to a stream created with the same
//! config rebuilds the same state: the owner writes them to its log before it acknowledges,
//! and recovery replays them. [`Change::encode`]/[`Change::decode`] is their compact binary
//! form (a tag byte, then integers as LEB128 varints and byte strings length-prefixed).
//!
//! # What nats-server does that this follows
//! - Byte accounting is the store's: a file stream counts each message as
//!   `fileStoreMsgSize` (a 22-byte record head, the subject, a 4-byte header length when
//!   there are headers, the headers, the payload and an 8-byte hash), a memory stream as
//!   `memStoreMsgSize` (subject + headers + payload + 16), so `state.bytes` and `max_bytes`
//!   agree with nats-server's.
//! - Publish checks run in `processJetStreamMsg`'s order: sealed, `Nats-Expected-Stream`,
//!   `Nats-Msg-Id` duplicate, `Nats-Expected-Last-Subject-Sequence`,
//!   `Nats-Expected-Last-Sequence`, `Nats-Expected-Last-Msg-Id`, `Nats-Rollup`,
//!   `max_msg_size`, the 64 KiB header cap, then the store's discard-new checks.
//! - Discard old removes per subject first, then by count, then by bytes, oldest first.
//! - Purge is the store's `PurgeEx`: without a filter, `seq` compacts below it (moving the
//!   sequence forward past the end if need be) and `keep` compacts below `last - keep + 1`;
//!   with a filter both count matching messages only.
//!
//! # Missing (needs consumers)
//! Retention `interest` stores nothing while [`Stream::consumer_count`] is 0 (nats-server
//! skips the sequence in that case) and otherwise keeps messages like `limits`; `workqueue`
//! keeps them like `limits`. The consumer layer removes acknowledged messages through
//! [`Stream::remove`], which records a [`Change::Delete`] like any other removal.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use super::api::{
    self, ApiError, Discard, PurgeRequest, Retention, Storage, StreamConfig, StreamInfo,
    StreamState,
};
use super::headers;
use crate::codec::{self, put_bytes, put_varint, CodecError};
use crate::limits;
use crate::subject::Pattern;

/// A message as the stream keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMsg {
    /// Its sequence.
    pub seq: u64,
    /// The subject it was published to.
    pub subject: Arc<str>,
    /// Its header block, as published (empty if none).
    pub headers: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it was stored, unix nanoseconds.
    pub time: i64,
}

/// A state change of one stream, to be logged before it is acknowledged and replayed on
/// recovery with [`Stream::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A message was stored; limits of the discard-old kind are enforced as it is applied.
    Append {
        /// Its sequence.
        seq: u64,
        /// Its subject.
        subject: String,
        /// Its header block.
        headers: Vec<u8>,
        /// Its payload.
        payload: Vec<u8>,
        /// When it was stored.
        time: i64,
        /// Its `Nats-Msg-Id`, empty if none (for de-duplication and expected-last-msg-id).
        msg_id: String,
    },
    /// A sequence was used without storing a message (interest retention, no consumers).
    Skip {
        /// The sequence.
        seq: u64,
        /// When.
        time: i64,
        /// Its `Nats-Msg-Id`, empty if none.
        msg_id: String,
    },
    /// One message was removed (API delete, or the consumer layer's seam).
    Delete {
        /// Its sequence.
        seq: u64,
    },
    /// A purge, as requested.
    Purge(PurgeRequest),
    /// Messages stored at or before `cutoff` (unix nanoseconds) expired by `max_age`.
    Expire {
        /// The newest time that expires.
        cutoff: i64,
    },
    /// The config was updated (already validated); new limits are enforced as it is applied.
    Config(Box<StreamConfig>),
    /// The message just appended as `seq` took the account past its limit and was taken
    /// back, as nats-server does after storing (`processJetStreamMsg`): it is removed (its
    /// sequence stays used, and what its append evicted stays evicted), its `Nats-Msg-Id` is
    /// forgotten and the last msg id is the one before it again.
    Withdraw {
        /// Its sequence.
        seq: u64,
    },
}

/// The bound a publish is checked against: what the streams of the same storage other than
/// this one keep, and the most all of them may keep (the server's [`crate::js::JsLimits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes the other streams of this storage keep.
    pub others: u64,
    /// Most bytes all streams of this storage may keep.
    pub max: u64,
}

impl Budget {
    /// No bound.
    pub const UNLIMITED: Budget = Budget {
        others: 0,
        max: u64::MAX,
    };
}

/// What a successful publish gives back, for the PubAck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// The message's sequence (the original one for a duplicate).
    pub seq: u64,
    /// The `Nats-Msg-Id` was seen within the duplicate window: nothing was stored.
    pub duplicate: bool,
}

/// Why a change record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The record ends before its last field.
    #[error("change record truncated")]
    Truncated,
    /// The tag byte is not one of [`Change`]'s.
    #[error("unknown change tag {0}")]
    Tag(u8),
    /// A string is not UTF-8 or an embedded config is not valid JSON.
    #[error("malformed field in change record")]
    Field,
    /// Bytes are left after the record.
    #[error("trailing bytes after change record")]
    Trailing,
}

/// One stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    config: StreamConfig,
    created: i64,
    msgs: BTreeMap<u64, StoredMsg>,
    /// Sequences per subject, oldest first.
    subjects: HashMap<Arc<str>, BTreeSet<u64>, KeyedState>,
    bytes: u64,
    first_seq: u64,
    first_ts: Option<i64>,
    last_seq: u64,
    last_ts: Option<i64>,
    /// `Nats-Msg-Id` → (sequence, time), and the ids in the order they were stored.
    dedupe: HashMap<String, (u64, i64), KeyedState>,
    dedupe_order: VecDeque<(i64, String)>,
    /// The `Nats-Msg-Id` of the last stored message ("" if it had none).
    last_msg_id: String,
    /// The one before it, which a [`Change::Withdraw`] restores.
    previous_msg_id: String,
    consumer_count: u64,
}

impl Stream {
    /// A new, empty stream with a config [`validate`] returned.
    pub fn new(config: StreamConfig, created: i64) -> Stream {
        Stream {
            config,
            created,
            msgs: BTreeMap::new(),
            subjects: HashMap::default(),
            bytes: 0,
            first_seq: 0,
            first_ts: None,
            last_seq: 0,
            last_ts: None,
            dedupe: HashMap::default(),
            dedupe_order: VecDeque::new(),
            last_msg_id: String::new(),
            previous_msg_id: String::new(),
            consumer_count: 0,
        }
    }

    /// The config, defaults applied.
    pub fn config(&self) -> &StreamConfig {
        &self.config
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// When the stream was created, unix nanoseconds.
    pub fn created(&self) -> i64 {
        self.created
    }

    /// Consumers on the stream, as the consumer layer last set it.
    pub fn consumer_count(&self) -> u64 {
        self.consumer_count
    }

    /// Sets the consumer count (reported in state; interest retention skips without any).
    pub fn set_consumer_count(&mut self, count: u64) {
        self.consumer_count = count;
    }

    /// Stores a message published to `subject` (one of the stream's), after nats-server's
    /// checks, and expires what `max_age` says is too old at `now`; no server-wide bound
    /// (see [`Stream::publish_within`]).
    ///
    /// # Errors
    /// The API error nats-server puts in the PubAck; nothing is changed then.
    pub fn publish(
        &mut self,
        subject: &str,
        hdrs: &[u8],
        payload: &[u8],
        now: i64,
        out: &mut Vec<Change>,
    ) -> Result<Published, ApiError> {
        self.publish_within(subject, hdrs, payload, now, Budget::UNLIMITED, out)
    }

    /// [`Stream::publish`] within `budget`, checked as nats-server 2.9.10 checks a server
    /// and an account with equal limits: already past the limit before the message →
    /// [`api::INSUFFICIENT_RESOURCES`], nothing stored; past it once the message is stored
    /// (after discard old made room) → the message is taken back ([`Change::Withdraw`]) and
    /// [`api::ACCOUNT_RESOURCES_EXCEEDED`].
    ///
    /// # Errors
    /// The API error nats-server puts in the PubAck; nothing is changed then, except for
    /// [`api::ACCOUNT_RESOURCES_EXCEEDED`], after which the sequence stays used.
    pub fn publish_within(
        &mut self,
        subject: &str,
        hdrs: &[u8],
        payload: &[u8],
        now: i64,
        budget: Budget,
        out: &mut Vec<Change>,
    ) -> Result<Published, ApiError> {
        self.expire_into(now, out);
        if self.config.sealed {
            return Err(api::STREAM_SEALED);
        }
        let mut msg_id = "";
        let mut rollup = None;
        if !hdrs.is_empty() {
            let h = JsHeaders::scan(hdrs);
            let get = |name: &str| h.get(name);
            if let Some(name) = get(EXPECTED_STREAM) {
                if !name.is_empty() && name != self.config.name.as_bytes() {
                    return Err(api::STREAM_NOT_MATCH);
                }
            }
            msg_id = get(MSG_ID)
                .and_then(|v| std::str::from_utf8(v).ok())
                .unwrap_or("");
            if let Some(&(seq, time)) = self.dedupe.get(msg_id) {
                if now < time.saturating_add(self.config.duplicate_window) {
                    return Ok(Published {
                        seq,
                        duplicate: true,
                    });
                }
            }
            if let Some(want) = get(EXPECTED_LAST_SUBJECT_SEQ).filter(|v| !v.is_empty()) {
                let last = self.last_on_subject(subject);
                if parse_int64(want) != last {
                    return Err(ApiError::wrong_last_sequence(last));
                }
            }
            if let Some(want) = get(EXPECTED_LAST_SEQ).filter(|v| !v.is_empty()) {
                if parse_int64(want) != self.last_seq {
                    return Err(ApiError::wrong_last_sequence(self.last_seq));
                }
            }
            if let Some(want) = get(EXPECTED_LAST_MSG_ID).filter(|v| !v.is_empty()) {
                if want != self.last_msg_id.as_bytes() {
                    return Err(ApiError::wrong_last_msg_id(&self.last_msg_id));
                }
            }
            if let Some(value) = get(ROLLUP).filter(|v| !v.is_empty()) {
                if !self.config.allow_rollup_hdrs || self.config.deny_purge {
                    return Err(api::ROLLUP_NOT_PERMITTED);
                }
                rollup = Some(match value.to_ascii_lowercase().as_slice() {
                    b"sub" => Rollup::Subject,
                    b"all" => Rollup::All,
                    _ => return Err(api::BAD_REQUEST),
                });
            }
        }
        let size = hdrs.len() + payload.len();
        if self.config.max_msg_size >= 0 && size > self.config.max_msg_size as usize {
            return Err(api::MESSAGE_TOO_BIG);
        }
        if hdrs.len() > limits::JS_MAX_HEADER_BYTES {
            return Err(api::HEADER_TOO_BIG);
        }
        let over = |bytes: u64| budget.others.saturating_add(bytes) > budget.max;
        if over(self.bytes) {
            return Err(api::INSUFFICIENT_RESOURCES);
        }
        let seq = self.last_seq + 1;
        if self.config.retention == Retention::Interest && self.consumer_count == 0 {
            self.record(
                Change::Skip {
                    seq,
                    time: now,
                    msg_id: msg_id.to_owned(),
                },
                out,
            );
            return Ok(Published {
                seq,
                duplicate: false,
            });
        }
        self.check_discard_new(subject, size)?;
        self.record(
            Change::Append {
                seq,
                subject: subject.to_owned(),
                headers: hdrs.to_vec(),
                payload: payload.to_vec(),
                time: now,
                msg_id: msg_id.to_owned(),
            },
            out,
        );
        if over(self.bytes) {
            self.record(Change::Withdraw { seq }, out);
            return Err(api::ACCOUNT_RESOURCES_EXCEEDED);
        }
        match rollup {
            Some(Rollup::Subject) => self.record(
                Change::Purge(PurgeRequest {
                    filter: subject.to_owned(),
                    keep: 1,
                    seq: 0,
                }),
                out,
            ),
            Some(Rollup::All) => self.record(
                Change::Purge(PurgeRequest {
                    keep: 1,
                    ..PurgeRequest::default()
                }),
                out,
            ),
            None => {}
        }
        Ok(Published {
            seq,
            duplicate: false,
        })
    }

    /// Expires messages older than `max_age` at `now`; returns when the next one expires
    /// (the owner's timer deadline), if any.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Change>) -> Option<i64> {
        self.expire_into(now, out);
        self.next_expiry()
    }

    /// When the oldest message expires, if the stream has a `max_age` and a message.
    pub fn next_expiry(&self) -> Option<i64> {
        if self.config.max_age <= 0 {
            return None;
        }
        let (_, first) = self.msgs.first_key_value()?;
        Some(first.time.saturating_add(self.config.max_age))
    }

    /// `STREAM.PURGE`: removes messages as `req` says; returns how many.
    ///
    /// # Errors
    /// Sealed stream, `deny_purge`, or both `seq` and `keep` set (bad request).
    pub fn purge(&mut self, req: &PurgeRequest, out: &mut Vec<Change>) -> Result<u64, ApiError> {
        if req.seq > 0 && req.keep > 0 {
            return Err(api::BAD_REQUEST);
        }
        if self.config.sealed {
            return Err(api::STREAM_SEALED);
        }
        if self.config.deny_purge {
            return Err(api::PURGE_NOT_PERMITTED);
        }
        let before = self.msgs.len();
        self.record(Change::Purge(req.clone()), out);
        Ok((before - self.msgs.len()) as u64)
    }

    /// `STREAM.MSG.DELETE`: removes message `seq`.
    ///
    /// # Errors
    /// Sealed stream, `deny_delete`, or no message `seq`.
    pub fn delete(&mut self, seq: u64, out: &mut Vec<Change>) -> Result<(), ApiError> {
        if self.config.sealed {
            return Err(api::STREAM_SEALED);
        }
        if self.config.deny_delete {
            return Err(api::DELETE_NOT_PERMITTED);
        }
        if self.remove(seq, out) {
            Ok(())
        } else {
            Err(ApiError::sequence_not_found(seq))
        }
    }

    /// Removes message `seq` with no permission check: the seam the consumer layer uses to
    /// drop an acknowledged work-queue message. False if there is no such message.
    pub fn remove(&mut self, seq: u64, out: &mut Vec<Change>) -> bool {
        if !self.msgs.contains_key(&seq) {
            return false;
        }
        self.record(Change::Delete { seq }, out);
        true
    }

    /// Replaces the config with `config` (already checked by [`check_update`]); tighter
    /// limits take effect at once.
    pub fn update(&mut self, config: StreamConfig, out: &mut Vec<Change>) {
        self.record(Change::Config(Box::new(config)), out);
    }

    /// Message `seq`.
    pub fn msg(&self, seq: u64) -> Option<&StoredMsg> {
        self.msgs.get(&seq)
    }

    /// The last message whose subject matches `filter` (a literal subject, or a pattern
    /// as nats-server's `LoadLastMsg` takes it).
    pub fn last_by_subject(&self, filter: &str) -> Option<&StoredMsg> {
        let f = Filter::new(filter);
        let seq = if f.pattern.is_none() {
            self.subjects.get(filter)?.last().copied()?
        } else {
            self.subjects
                .iter()
                .filter(|(subject, _)| f.matches(subject))
                .filter_map(|(_, seqs)| seqs.last().copied())
                .max()?
        };
        self.msgs.get(&seq)
    }

    /// The first message at or after `from` whose subject matches `filter`.
    pub fn next_by_subject(&self, filter: &str, from: u64) -> Option<&StoredMsg> {
        let filter = Filter::new(filter);
        self.msgs
            .range(from..)
            .map(|(_, m)| m)
            .find(|m| filter.matches(&m.subject))
    }

    /// Messages per subject for the subjects matching `filter`.
    pub fn subject_counts(&self, filter: &str) -> BTreeMap<String, u64> {
        let filter = Filter::new(filter);
        self.subjects
            .iter()
            .filter(|(s, _)| filter.matches(s))
            .map(|(s, seqs)| (s.to_string(), seqs.len() as u64))
            .collect()
    }

    /// The sequences between first and last that are gone.
    pub fn deleted(&self) -> Vec<u64> {
        if self.msgs.is_empty() {
            return Vec::new();
        }
        (self.first_seq..=self.last_seq)
            .filter(|s| !self.msgs.contains_key(s))
            .collect()
    }

    /// Messages, bytes, sequences and times, as `STREAM.INFO`'s `state`.
    pub fn state(&self) -> StreamState {
        let messages = self.msgs.len() as u64;
        let span = (self.last_seq + 1).saturating_sub(self.first_seq);
        StreamState {
            messages,
            bytes: self.bytes,
            first_seq: self.first_seq,
            first_ts: api::GoTime(self.first_ts),
            last_seq: self.last_seq,
            last_ts: api::GoTime(self.last_ts),
            num_subjects: self.subjects.len() as u64,
            subjects: None,
            num_deleted: if messages == 0 { 0 } else { span - messages },
            deleted: None,
            consumer_count: self.consumer_count,
        }
    }

    /// Config, creation time and state.
    pub fn info(&self) -> StreamInfo {
        StreamInfo {
            config: self.config.clone(),
            created: api::GoTime(Some(self.created)),
            state: self.state(),
        }
    }

    /// Bytes kept, as the store counts them.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Applies one change: how every operation changes the stream, and how recovery
    /// replays the log.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Append {
                seq,
                subject,
                headers,
                payload,
                time,
                msg_id,
            } => {
                self.append(
                    *seq,
                    subject,
                    headers.clone(),
                    payload.clone(),
                    *time,
                    msg_id,
                );
            }
            Change::Skip { seq, time, msg_id } => {
                self.note_msg_id(msg_id, *seq, *time);
                self.last_seq = *seq;
                self.last_ts = Some(*time);
                if self.msgs.is_empty() {
                    self.first_seq = *seq + 1;
                }
            }
            Change::Delete { seq } => {
                self.remove_msg(*seq);
            }
            Change::Purge(req) => self.apply_purge(req),
            Change::Expire { cutoff } => {
                while let Some((&seq, first)) = self.msgs.first_key_value() {
                    if first.time > *cutoff {
                        break;
                    }
                    self.remove_msg(seq);
                }
            }
            Change::Withdraw { seq } => {
                if self
                    .dedupe
                    .get(&self.last_msg_id)
                    .is_some_and(|&(s, _)| s == *seq)
                {
                    self.dedupe.remove(&self.last_msg_id);
                }
                self.last_msg_id = std::mem::take(&mut self.previous_msg_id);
                self.remove_msg(*seq);
            }
            Change::Config(config) => {
                self.config = (**config).clone();
                let subjects: Vec<Arc<str>> = self.subjects.keys().cloned().collect();
                for subject in subjects {
                    self.enforce_subject_limit(&subject);
                }
                self.enforce_count_and_bytes();
            }
        }
    }

    /// Keeps message `seq` (the newest so far) with no check and no limit enforced; returns
    /// its subject, shared with the messages already kept on it.
    fn insert(
        &mut self,
        seq: u64,
        subject: &str,
        headers: Vec<u8>,
        payload: Vec<u8>,
        time: i64,
    ) -> Arc<str> {
        let subject: Arc<str> = match self.subjects.get_key_value(subject) {
            Some((name, _)) => Arc::clone(name),
            None => Arc::from(subject),
        };
        self.bytes += self.stored_size(&subject, &headers, &payload);
        if self.msgs.is_empty() {
            self.first_seq = seq;
            self.first_ts = Some(time);
        }
        self.last_seq = seq;
        self.last_ts = Some(time);
        self.subjects
            .entry(Arc::clone(&subject))
            .or_default()
            .insert(seq);
        self.msgs.insert(
            seq,
            StoredMsg {
                seq,
                subject: Arc::clone(&subject),
                headers,
                payload,
                time,
            },
        );
        subject
    }

    /// The sequences kept, ascending.
    pub fn kept_seqs(&self) -> impl Iterator<Item = u64> + '_ {
        self.msgs.keys().copied()
    }

    /// The last sequence kept on `subject` (0: none).
    pub fn last_on_subject(&self, subject: &str) -> u64 {
        self.subjects
            .get(subject)
            .and_then(|seqs| seqs.last().copied())
            .unwrap_or(0)
    }

    /// The lowest sequence kept, if any message is.
    pub fn first_kept(&self) -> Option<u64> {
        self.msgs.first_key_value().map(|(&seq, _)| seq)
    }

    /// Appends the stream's checkpoint to `out`: everything [`Base::restore`] needs to
    /// rebuild it except its messages' contents, which stay where the log holds them
    /// (config, creation time, sequences and times, the de-duplication window and msg
    /// ids, and which sequences are kept, as runs).
    pub fn encode_base(&self, out: &mut Vec<u8>) {
        // A StreamConfig holds strings, numbers and enums only: it always serializes.
        put_bytes(out, &serde_json::to_vec(&self.config).unwrap_or_default());
        put_varint(out, self.created as u64);
        put_varint(out, self.first_seq);
        put_time(out, self.first_ts);
        put_varint(out, self.last_seq);
        put_time(out, self.last_ts);
        put_bytes(out, self.last_msg_id.as_bytes());
        put_bytes(out, self.previous_msg_id.as_bytes());
        let mut runs: Vec<(u64, u64)> = Vec::new();
        let span = (self.last_seq + 1).saturating_sub(self.first_seq);
        if self.msgs.len() as u64 == span {
            // Nothing deleted inside: one run, without a pass over the messages.
            if span > 0 {
                runs.push((self.first_seq, span));
            }
        } else {
            for &seq in self.msgs.keys() {
                match runs.last_mut() {
                    Some((start, len)) if *start + *len == seq => *len += 1,
                    _ => runs.push((seq, 1)),
                }
            }
        }
        put_varint(out, runs.len() as u64);
        for (start, len) in runs {
            put_varint(out, start);
            put_varint(out, len);
        }
        put_varint(out, self.dedupe.len() as u64);
        for (id, &(seq, time)) in &self.dedupe {
            put_bytes(out, id.as_bytes());
            put_varint(out, seq);
            put_varint(out, time as u64);
        }
        put_varint(out, self.dedupe_order.len() as u64);
        for (time, id) in &self.dedupe_order {
            put_varint(out, *time as u64);
            put_bytes(out, id.as_bytes());
        }
    }

    /// [`Stream::apply`] for a change the caller is done with (recovery): an append's
    /// buffers become the stored message's instead of being copied.
    pub fn apply_owned(&mut self, change: Change) {
        match change {
            Change::Append {
                seq,
                subject,
                headers,
                payload,
                time,
                msg_id,
            } => {
                self.append(seq, &subject, headers, payload, time, &msg_id);
            }
            other => self.apply(&other),
        }
    }

    /// An append as applied: its msg id noted, the message kept, limits enforced.
    fn append(
        &mut self,
        seq: u64,
        subject: &str,
        headers: Vec<u8>,
        payload: Vec<u8>,
        time: i64,
        msg_id: &str,
    ) {
        self.note_msg_id(msg_id, seq, time);
        let subject = self.insert(seq, subject, headers, payload, time);
        self.enforce_subject_limit(&subject);
        self.enforce_count_and_bytes();
    }

    fn record(&mut self, change: Change, out: &mut Vec<Change>) {
        self.apply(&change);
        out.push(change);
    }

    fn expire_into(&mut self, now: i64, out: &mut Vec<Change>) {
        if self.config.max_age <= 0 {
            return;
        }
        let cutoff = now.saturating_sub(self.config.max_age);
        if matches!(self.msgs.first_key_value(), Some((_, m)) if m.time <= cutoff) {
            self.record(Change::Expire { cutoff }, out);
        }
    }

    /// The store's refusals with discard new (`fileStore`/`memStore.storeRawMsg`).
    fn check_discard_new(&self, subject: &str, size: usize) -> Result<(), ApiError> {
        if self.config.discard != Discard::New {
            return Ok(());
        }
        let max_per = self.config.max_msgs_per_subject;
        let of_subject = self.subjects.get(subject);
        // At the per-subject limit the new message replaces the subject's oldest one.
        let replaces = match of_subject {
            Some(seqs) if max_per > 0 && seqs.len() as u64 >= max_per as u64 => {
                if self.config.discard_new_per_subject {
                    return Err(ApiError::store_failed(api::MAX_MSGS_PER_SUBJECT_TEXT));
                }
                seqs.first().and_then(|seq| self.msgs.get(seq))
            }
            _ => None,
        };
        let max_msgs = self.config.max_msgs;
        if max_msgs > 0 && self.msgs.len() as u64 >= max_msgs as u64 && replaces.is_none() {
            return Err(ApiError::store_failed(api::MAX_MSGS_TEXT));
        }
        let max_bytes = self.config.max_bytes;
        if max_bytes > 0 && self.bytes + size as u64 >= max_bytes as u64 {
            let room = match replaces {
                None => false,
                Some(old) => {
                    let freed = self.stored_size(&old.subject, &old.headers, &old.payload);
                    match self.config.storage {
                        Storage::File => freed > size as u64,
                        Storage::Memory => freed >= size as u64,
                    }
                }
            };
            if !room {
                return Err(ApiError::store_failed(api::MAX_BYTES_TEXT));
            }
        }
        Ok(())
    }

    fn note_msg_id(&mut self, msg_id: &str, seq: u64, time: i64) {
        let horizon = time.saturating_sub(self.config.duplicate_window);
        while let Some((stored, _)) = self.dedupe_order.front() {
            if *stored > horizon {
                break;
            }
            if let Some((_, id)) = self.dedupe_order.pop_front() {
                if self.dedupe.get(&id).is_some_and(|&(_, t)| t <= horizon) {
                    self.dedupe.remove(&id);
                }
            }
        }
        self.previous_msg_id = std::mem::replace(&mut self.last_msg_id, msg_id.to_owned());
        if !msg_id.is_empty() {
            self.dedupe.insert(msg_id.to_owned(), (seq, time));
            self.dedupe_order.push_back((time, msg_id.to_owned()));
        }
    }

    fn stored_size(&self, subject: &str, hdrs: &[u8], payload: &[u8]) -> u64 {
        stored_size(self.config.storage, subject, hdrs, payload)
    }

    fn enforce_subject_limit(&mut self, subject: &str) {
        let max = self.config.max_msgs_per_subject;
        if max <= 0 {
            return;
        }
        while let Some(seqs) = self.subjects.get(subject) {
            if seqs.len() as u64 <= max as u64 {
                break;
            }
            match seqs.first().copied() {
                Some(seq) => self.remove_msg(seq),
                None => break,
            }
        }
    }

    fn enforce_count_and_bytes(&mut self) {
        let max_msgs = self.config.max_msgs;
        while max_msgs > 0 && self.msgs.len() as u64 > max_msgs as u64 {
            self.remove_first();
        }
        let max_bytes = self.config.max_bytes;
        while max_bytes > 0 && self.bytes > max_bytes as u64 && !self.msgs.is_empty() {
            self.remove_first();
        }
    }

    fn remove_first(&mut self) {
        if let Some((&seq, _)) = self.msgs.first_key_value() {
            self.remove_msg(seq);
        }
    }

    fn remove_msg(&mut self, seq: u64) {
        let Some(msg) = self.msgs.remove(&seq) else {
            return;
        };
        self.bytes -= self.stored_size(&msg.subject, &msg.headers, &msg.payload);
        if let Some(seqs) = self.subjects.get_mut(&msg.subject) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.subjects.remove(&msg.subject);
            }
        }
        if seq == self.first_seq {
            self.reset_first();
        }
    }

    /// First sequence and time from the first kept message, or past the last when empty.
    fn reset_first(&mut self) {
        match self.msgs.first_key_value() {
            Some((&seq, m)) => {
                self.first_seq = seq;
                self.first_ts = Some(m.time);
            }
            None => {
                self.first_seq = self.last_seq + 1;
                self.first_ts = None;
            }
        }
    }

    fn apply_purge(&mut self, req: &PurgeRequest) {
        if req.filter.is_empty() || req.filter == ">" {
            if req.keep == 0 && req.seq <= 1 {
                self.compact(u64::MAX);
            } else if req.seq > 1 {
                self.compact(req.seq);
            } else if req.keep < self.msgs.len() as u64 {
                self.compact(self.last_seq - req.keep + 1);
            }
            return;
        }
        let filter = Filter::new(&req.filter);
        let matching: Vec<u64> = self
            .msgs
            .values()
            .filter(|m| filter.matches(&m.subject))
            .map(|m| m.seq)
            .collect();
        let count = matching.len() as u64;
        let most = if req.keep > 0 {
            if req.keep >= count {
                return;
            }
            count - req.keep
        } else {
            count
        };
        let below = if req.seq > 1 { req.seq } else { u64::MAX };
        for seq in matching
            .into_iter()
            .filter(|&s| s < below)
            .take(most as usize)
        {
            self.remove_msg(seq);
        }
    }

    /// Removes every message below `seq`; `u64::MAX` empties the stream. Past the last
    /// sequence, the next message gets `seq` (nats-server's `Compact`).
    fn compact(&mut self, seq: u64) {
        let keep = if seq == u64::MAX {
            BTreeMap::new()
        } else {
            self.msgs.split_off(&seq)
        };
        let gone = std::mem::replace(&mut self.msgs, keep);
        for msg in gone.values() {
            self.bytes -= self.stored_size(&msg.subject, &msg.headers, &msg.payload);
            if let Some(seqs) = self.subjects.get_mut(&msg.subject) {
                seqs.remove(&msg.seq);
                if seqs.is_empty() {
                    self.subjects.remove(&msg.subject);
                }
            }
        }
        if seq != u64::MAX && seq > self.last_seq + 1 {
            self.last_seq = seq - 1;
        }
        self.reset_first();
    }
}

/// A stream read back from its checkpoint ([`Stream::encode_base`]), waiting for the
/// contents of the messages it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    /// The stream with everything but its messages.
    empty: Stream,
    /// The kept sequences, as (first, count) runs, ascending.
    runs: Vec<(u64, u64)>,
}

/// A kept message's content, as its append logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The subject it was published to.
    pub subject: String,
    /// Its header block.
    pub headers: Vec<u8>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When it was stored, unix nanoseconds.
    pub time: i64,
}

impl Base {
    /// Reads a checkpoint written by [`Stream::encode_base`]; never panics on any bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for a truncated or malformed checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Base, DecodeError> {
        let mut r = Reader(codec::Reader::new(bytes));
        let config: StreamConfig =
            serde_json::from_slice(r.bytes()?).map_err(|_| DecodeError::Field)?;
        let mut s = Stream::new(config, r.varint()? as i64);
        s.first_seq = r.varint()?;
        s.first_ts = r.time()?;
        s.last_seq = r.varint()?;
        s.last_ts = r.time()?;
        s.last_msg_id = r.string()?;
        s.previous_msg_id = r.string()?;
        // Runs ascend, apart, inside first..=last: anything else (a run no stream could
        // have) is refused, so a bad checkpoint cannot make recovery walk billions of
        // sequences.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for _ in 0..r.count()? {
            let (start, len) = (r.varint()?, r.varint()?);
            let lowest = runs.last().map_or(s.first_seq, |&(a, n)| a + n + 1);
            let end = start.checked_add(len).ok_or(DecodeError::Field)?;
            if len == 0 || start < lowest || end > s.last_seq.saturating_add(1) {
                return Err(DecodeError::Field);
            }
            runs.push((start, len));
        }
        for _ in 0..r.count()? {
            let id = r.string()?;
            let seq = r.varint()?;
            s.dedupe.insert(id, (seq, r.varint()? as i64));
        }
        for _ in 0..r.count()? {
            let time = r.varint()? as i64;
            s.dedupe_order.push_back((time, r.string()?));
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(Base { empty: s, runs })
    }

    /// The stream's name.
    pub fn name(&self) -> &str {
        self.empty.name()
    }

    /// The sequences it keeps, ascending.
    pub fn kept(&self) -> impl Iterator<Item = u64> + '_ {
        self.runs
            .iter()
            .flat_map(|&(start, len)| start..start.saturating_add(len))
    }

    /// The stream, with the content `content` gives for each kept sequence.
    ///
    /// # Errors
    /// The first kept sequence `content` has nothing for.
    pub fn restore(self, mut content: impl FnMut(u64) -> Option<Content>) -> Result<Stream, u64> {
        let mut s = self.empty;
        let (first_seq, first_ts, last_seq, last_ts) =
            (s.first_seq, s.first_ts, s.last_seq, s.last_ts);
        for &(start, len) in &self.runs {
            for seq in start..start.saturating_add(len) {
                let c = content(seq).ok_or(seq)?;
                s.insert(seq, &c.subject, c.headers, c.payload, c.time);
            }
        }
        (s.first_seq, s.first_ts, s.last_seq, s.last_ts) = (first_seq, first_ts, last_seq, last_ts);
        Ok(s)
    }
}

impl Change {
    /// Appends the binary form of the change to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Change::Append {
                seq,
                subject,
                headers,
                payload,
                time,
                msg_id,
            } => {
                out.push(TAG_APPEND);
                put_varint(out, *seq);
                put_varint(out, *time as u64);
                put_bytes(out, subject.as_bytes());
                put_bytes(out, headers);
                put_bytes(out, payload);
                put_bytes(out, msg_id.as_bytes());
            }
            Change::Skip { seq, time, msg_id } => {
                out.push(TAG_SKIP);
                put_varint(out, *seq);
                put_varint(out, *time as u64);
                put_bytes(out, msg_id.as_bytes());
            }
            Change::Delete { seq } => {
                out.push(TAG_DELETE);
                put_varint(out, *seq);
            }
            Change::Purge(req) => {
                out.push(TAG_PURGE);
                put_varint(out, req.seq);
                put_varint(out, req.keep);
                put_bytes(out, req.filter.as_bytes());
            }
            Change::Expire { cutoff } => {
                out.push(TAG_EXPIRE);
                put_varint(out, *cutoff as u64);
            }
            Change::Config(config) => {
                out.push(TAG_CONFIG);
                put_bytes(out, &api::to_go_json(config));
            }
            Change::Withdraw { seq } => {
                out.push(TAG_WITHDRAW);
                put_varint(out, *seq);
            }
        }
    }

    /// Reads one change written by [`Change::encode`]; never panics on any bytes.
    ///
    /// # Errors
    /// [`DecodeError`] for a truncated or malformed record.
    pub fn decode(bytes: &[u8]) -> Result<Change, DecodeError> {
        let mut r = Reader(codec::Reader::new(bytes));
        let tag = r.byte()?;
        let change = match tag {
            TAG_APPEND => Change::Append {
                seq: r.varint()?,
                time: r.varint()? as i64,
                subject: r.string()?,
                headers: r.bytes()?.to_vec(),
                payload: r.bytes()?.to_vec(),
                msg_id: r.string()?,
            },
            TAG_SKIP => Change::Skip {
                seq: r.varint()?,
                time: r.varint()? as i64,
                msg_id: r.string()?,
            },
            TAG_DELETE => Change::Delete { seq: r.varint()? },
            TAG_PURGE => Change::Purge(PurgeRequest {
                seq: r.varint()?,
                keep: r.varint()?,
                filter: r.string()?,
            }),
            TAG_EXPIRE => Change::Expire {
                cutoff: r.varint()? as i64,
            },
            TAG_CONFIG => Change::Config(Box::new(
                serde_json::from_slice(r.bytes()?).map_err(|_| DecodeError::Field)?,
            )),
            TAG_WITHDRAW => Change::Withdraw { seq: r.varint()? },
            other => return Err(DecodeError::Tag(other)),
        };
        if !r.0.is_empty() {
            return Err(DecodeError::Trailing);
        }
        Ok(change)
    }
}

/// nats-server's `checkStreamCfg` for a non-clustered server: checks `config` and returns
/// it with defaults applied.
///
/// # Errors
/// nats-server's error for the first fault found, in its order; mirrors, sources and
/// templates are refused as not supported.
pub fn validate(config: &StreamConfig) -> Result<StreamConfig, ApiError> {
    if !is_valid_name(&config.name) {
        return Err(ApiError::invalid_config(
            "stream name is required and can not contain '.', '*', '>'",
        ));
    }
    if config.name.len() > limits::JS_MAX_NAME_BYTES {
        return Err(ApiError::invalid_config(format!(
            "stream name is too long, maximum allowed is {}",
            limits::JS_MAX_NAME_BYTES
        )));
    }
    if config.description.len() > limits::JS_MAX_DESCRIPTION_BYTES {
        return Err(ApiError::invalid_config(format!(
            "stream description is too long, maximum allowed is {}",
            limits::JS_MAX_DESCRIPTION_BYTES
        )));
    }
    let mut cfg = config.clone();
    if cfg.num_replicas == 0 {
        cfg.num_replicas = 1;
    }
    if cfg.num_replicas > limits::JS_MAX_REPLICAS {
        return Err(ApiError::invalid_config(format!(
            "maximum replicas is {}",
            limits::JS_MAX_REPLICAS
        )));
    }
    if cfg.num_replicas < 0 {
        return Err(api::REPLICAS_NEGATIVE);
    }
    for limit in [
        &mut cfg.max_msgs,
        &mut cfg.max_msgs_per_subject,
        &mut cfg.max_bytes,
    ] {
        if *limit == 0 {
            *limit = -1;
        }
    }
    if cfg.max_msg_size == 0 {
        cfg.max_msg_size = -1;
    }
    if cfg.max_consumers == 0 {
        cfg.max_consumers = -1;
    }
    if cfg.duplicate_window == 0 {
        cfg.duplicate_window =
            if cfg.max_age != 0 && cfg.max_age < limits::JS_DEFAULT_DUPLICATE_WINDOW_NS {
                cfg.max_age
            } else {
                limits::JS_DEFAULT_DUPLICATE_WINDOW_NS
            };
    }
    if cfg.max_age > 0 && cfg.max_age < limits::JS_MIN_WINDOW_NS {
        return Err(ApiError::invalid_config("max age needs to be >= 100ms"));
    }
    if cfg.duplicate_window < 0 {
        return Err(ApiError::invalid_config(
            "duplicates window can not be negative",
        ));
    }
    if cfg.max_age != 0 && cfg.duplicate_window > cfg.max_age {
        return Err(ApiError::invalid_config(
            "duplicates window can not be larger then max age",
        ));
    }
    if cfg.duplicate_window > 0 && cfg.duplicate_window < limits::JS_MIN_WINDOW_NS {
        return Err(ApiError::invalid_config(
            "duplicates window needs to be >= 100ms",
        ));
    }
    if cfg.deny_purge && cfg.allow_rollup_hdrs {
        return Err(ApiError::invalid_config(
            "roll-ups require the purge permission",
        ));
    }
    if cfg.discard_new_per_subject {
        if cfg.discard != Discard::New {
            return Err(ApiError::invalid_config(
                "discard new per subject requires discard new policy to be set",
            ));
        }
        if cfg.max_msgs_per_subject <= 0 {
            return Err(ApiError::invalid_config(
                "discard new per subject requires max msgs per subject > 0",
            ));
        }
    }
    if cfg.mirror.is_some() {
        return Err(ApiError::invalid_config("stream mirrors are not supported"));
    }
    if !cfg.sources.is_empty() {
        return Err(ApiError::invalid_config("stream sources are not supported"));
    }
    if let Some(rp) = cfg.republish.take() {
        cfg.republish = Some(super::republish::validate(rp, &cfg.subjects)?);
    }
    if !cfg.template_owner.is_empty() {
        return Err(ApiError::invalid_config(
            "stream templates are not supported",
        ));
    }
    if cfg.subjects.is_empty() {
        cfg.subjects.push(cfg.name.clone());
    } else {
        for (i, subject) in cfg.subjects.iter().enumerate() {
            if cfg.subjects[..i].contains(subject) {
                return Err(ApiError::invalid_config("duplicate subjects detected"));
            }
            if is_subset(subject, "$JS.API.>") {
                return Err(ApiError::invalid_config(
                    "subjects overlap with jetstream api",
                ));
            }
            if !is_valid_subject(subject) {
                return Err(ApiError::invalid_config("invalid subject"));
            }
        }
    }
    for subject in &cfg.subjects {
        for other in &cfg.subjects {
            if other != subject && subjects_collide(other, subject) {
                return Err(ApiError::invalid_config(format!(
                    "subject {subject:?} overlaps with {other:?}"
                )));
            }
        }
    }
    if cfg.num_replicas > 1 {
        return Err(api::REPLICAS_NOT_SUPPORTED);
    }
    Ok(cfg)
}

/// nats-server's `configUpdateCheck`: what an update may not change, and the adjustments
/// for sealing. `new` has been through [`validate`].
///
/// # Errors
/// nats-server's error for the first change refused.
pub fn check_update(old: &StreamConfig, new: &StreamConfig) -> Result<StreamConfig, ApiError> {
    if new.name != old.name {
        return Err(ApiError::invalid_config(
            "stream configuration name must match original",
        ));
    }
    if new.max_consumers != old.max_consumers {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change MaxConsumers",
        ));
    }
    if new.storage != old.storage {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change storage type",
        ));
    }
    if new.retention != old.retention {
        return Err(ApiError::invalid_config(
            "stream configuration update can not change retention policy",
        ));
    }
    if !new.sealed && old.sealed {
        return Err(ApiError::invalid_config(
            "stream configuration update can not unseal a sealed stream",
        ));
    }
    if !new.deny_delete && old.deny_delete {
        return Err(ApiError::invalid_config(
            "stream configuration update can not cancel deny message deletes",
        ));
    }
    if !new.deny_purge && old.deny_purge {
        return Err(ApiError::invalid_config(
            "stream configuration update can not cancel deny purge",
        ));
    }
    let mut cfg = new.clone();
    if cfg.sealed {
        cfg.max_age = 0;
        cfg.discard = Discard::New;
        cfg.deny_delete = true;
        cfg.deny_purge = true;
        cfg.allow_rollup_hdrs = false;
    }
    Ok(cfg)
}

/// nats-server's `SubjectsCollide`: whether some literal subject matches both patterns.
pub fn subjects_collide(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let (ta, tb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    let (pa, fa) = wildcards(&ta);
    let (pb, fb) = wildcards(&tb);
    let (la, lb) = (!(pa || fa), !(pb || fb));
    if la && lb {
        return false;
    }
    if la {
        return is_subset(a, b);
    }
    if lb {
        return is_subset(b, a);
    }
    if !fa && !fb && ta.len() != tb.len() {
        return false;
    }
    if ta.len() < tb.len() && !fa || tb.len() < ta.len() && !fb {
        return false;
    }
    ta.iter()
        .zip(&tb)
        .all(|(x, y)| !x.is_empty() && !y.is_empty() && (is_wild(x) || is_wild(y) || x == y))
}

/// nats-server's `subjectIsSubsetMatch`: every subject `subject` matches, `test` matches.
pub fn is_subset(subject: &str, test: &str) -> bool {
    let tokens: Vec<&str> = subject.split('.').collect();
    let mut n = 0;
    for (i, t2) in test.split('.').enumerate() {
        n = i + 1;
        let Some(&t1) = tokens.get(i) else {
            return false;
        };
        if t2.is_empty() || t1.is_empty() {
            return false;
        }
        if t2 == ">" {
            return true;
        }
        if t1 == ">" {
            return false;
        }
        if t2 == "*" {
            continue;
        }
        if t1 == "*" || t1 != t2 {
            return false;
        }
    }
    tokens.len() == n
}

/// The bytes a stored message counts for in `state.bytes` and `max_bytes`.
pub fn stored_size(storage: Storage, subject: &str, hdrs: &[u8], payload: &[u8]) -> u64 {
    let (subject, hdrs, payload) = (
        subject.len() as u64,
        hdrs.len() as u64,
        payload.len() as u64,
    );
    match storage {
        Storage::File if hdrs == 0 => FILE_RECORD_HEAD_BYTES + subject + payload + FILE_HASH_BYTES,
        Storage::File => FILE_RECORD_HEAD_BYTES + subject + 4 + hdrs + payload + FILE_HASH_BYTES,
        Storage::Memory => subject + hdrs + payload + MEMORY_OVERHEAD_BYTES,
    }
}

/// nats-server's `isValidName` for streams: not empty, no blank, `.`, `*` or `>`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([' ', '\t', '\r', '\n', '\x0c', '.', '*', '>'])
}

/// nats-server's `IsValidSubject`: no empty token, `>` only last, no blank in a token.
pub fn is_valid_subject(subject: &str) -> bool {
    Pattern::parse(subject.as_bytes()).is_ok() && !subject.contains([' ', '\t', '\r', '\n', '\x0c'])
}

/// A subject filter as nats-server's `compareFn`: a pattern when it has wildcards, exact
/// equality otherwise (and for a filter that is no valid pattern).
struct Filter<'a> {
    raw: &'a str,
    pattern: Option<Pattern>,
}

impl<'a> Filter<'a> {
    fn new(raw: &'a str) -> Filter<'a> {
        let pattern = Pattern::parse(raw.as_bytes())
            .ok()
            .filter(|p| !p.is_literal());
        Filter { raw, pattern }
    }

    fn matches(&self, subject: &str) -> bool {
        match &self.pattern {
            Some(p) => p.matches(subject.as_bytes()),
            None => self.raw == subject,
        }
    }
}

enum Rollup {
    Subject,
    All,
}

/// The hash of the maps keyed by a client's bytes (subjects, `Nats-Msg-Id`s): keyed per
/// stream from std's random keys, so a client cannot aim its keys at one bucket, and eight
/// bytes per multiply.
///
/// NB: std's SipHash was 11 % of a publish with `Nats-Msg-Id` (two lookups of the id, one
/// of the subject); results/criterion.md, "JetStream publish".
#[derive(Debug, Clone)]
struct KeyedState(u64);

impl Default for KeyedState {
    fn default() -> KeyedState {
        KeyedState(RandomState::new().hash_one(0u64) | 1)
    }
}

impl BuildHasher for KeyedState {
    type Hasher = KeyedHasher;

    fn build_hasher(&self) -> KeyedHasher {
        KeyedHasher(self.0)
    }
}

/// See [`KeyedState`]: each eight-byte word is mixed in with a folded 128-bit multiply
/// (foldhash's step).
struct KeyedHasher(u64);

impl Hasher for KeyedHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.mix(u64::from_le_bytes(word) ^ (rest.len() as u64) << 59);
    }

    fn write_u8(&mut self, byte: u8) {
        self.mix(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl KeyedHasher {
    fn mix(&mut self, word: u64) {
        let product = u128::from(self.0 ^ word) * u128::from(HASH_MULTIPLIER);
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }
}

/// The first value of each header a publish checks, found in one pass over the block.
///
/// NB: six `Headers::get` calls scanned the block six times; one pass is what the
/// `streams/publish/dedupe` benchmark asked for (results/criterion.md, "JetStream publish").
#[derive(Default)]
struct JsHeaders<'a> {
    values: [Option<&'a [u8]>; JS_HEADERS.len()],
}

impl<'a> JsHeaders<'a> {
    /// The headers of `block`; none at all if its version line is not `NATS/1.0`.
    fn scan(block: &'a [u8]) -> JsHeaders<'a> {
        let mut found = JsHeaders::default();
        let Ok(h) = headers::Headers::parse(block) else {
            return found;
        };
        for (name, value) in h.iter() {
            if let Some(i) = JS_HEADERS.iter().position(|n| n.as_bytes() == name) {
                found.values[i].get_or_insert(value);
            }
        }
        found
    }

    /// The first value of `name` (one of [`JS_HEADERS`]).
    fn get(&self, name: &str) -> Option<&'a [u8]> {
        let i = JS_HEADERS.iter().position(|n| *n == name)?;
        self.values[i]
    }
}

/// A change record's field reader: the shared codec's, with its errors as [`DecodeError`].
struct Reader<'a>(codec::Reader<'a>);

impl From<CodecError> for DecodeError {
    fn from(e: CodecError) -> DecodeError {
        match e {
            CodecError::Truncated => DecodeError::Truncated,
            CodecError::Overlong => DecodeError::Field,
        }
    }
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.0.byte()?)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        Ok(self.0.varint()?)
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        Ok(self.0.bytes()?)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Field)
    }

    /// A time written by [`put_time`].
    fn time(&mut self) -> Result<Option<i64>, DecodeError> {
        Ok(match self.byte()? {
            0 => None,
            _ => Some(self.varint()? as i64),
        })
    }

    /// A count of entries that each take at least one more byte: never more than are left,
    /// so a hostile count cannot make a loop run long.
    fn count(&mut self) -> Result<u64, DecodeError> {
        let n = self.varint()?;
        if n > self.0.rest().len() as u64 {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
}

/// An optional time: a presence byte, then the time.
fn put_time(out: &mut Vec<u8>, time: Option<i64>) {
    match time {
        None => out.push(0),
        Some(t) => {
            out.push(1);
            put_varint(out, t as u64);
        }
    }
}

/// nats-server's `parseInt64` as a sequence: digits only, else -1 (all ones as u64);
/// overflow wraps as in Go.
fn parse_int64(digits: &[u8]) -> u64 {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return u64::MAX;
    }
    digits.iter().fold(0i64, |n, d| {
        n.wrapping_mul(10).wrapping_add(i64::from(d - b'0'))
    }) as u64
}

fn wildcards(tokens: &[&str]) -> (bool, bool) {
    (tokens.contains(&"*"), tokens.contains(&">"))
}

fn is_wild(token: &str) -> bool {
    token.starts_with(['*', '>'])
}

const EXPECTED_STREAM: &str = "Nats-Expected-Stream";
const MSG_ID: &str = "Nats-Msg-Id";
const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";
const ROLLUP: &str = "Nats-Rollup";
/// Every header a publish checks.
const JS_HEADERS: [&str; 6] = [
    EXPECTED_STREAM,
    MSG_ID,
    EXPECTED_LAST_SEQ,
    EXPECTED_LAST_SUBJECT_SEQ,
    EXPECTED_LAST_MSG_ID,
    ROLLUP,
];

/// An odd constant (digits of pi) for [`KeyedHasher`].
const HASH_MULTIPLIER: u64 = 0x243f_6a88_85a3_08d3;

/// `fileStoreMsgSize`'s record head: length (4), sequence (8), time (8), subject length (2).
const FILE_RECORD_HEAD_BYTES: u64 = 22;
/// `fileStoreMsgSize`'s trailing hash.
const FILE_HASH_BYTES: u64 = 8;
/// `memStoreMsgSize`'s sequence and time.
const MEMORY_OVERHEAD_BYTES: u64 = 16;

const TAG_APPEND: u8 = 1;
const TAG_SKIP: u8 = 2;
const TAG_DELETE: u8 = 3;
const TAG_PURGE: u8 = 4;
const TAG_EXPIRE: u8 = 5;
const TAG_CONFIG: u8 = 6;
const TAG_WITHDRAW: u8 = 7;

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_796_190_352_000_000_000;
    const SEC: i64 = 1_000_000_000;

    fn stream(json: &str) -> Stream {
        let config: StreamConfig = serde_json::from_str(json).unwrap();
        Stream::new(validate(&config).unwrap(), T0)
    }

    fn publish(
        s: &mut Stream,
        subject: &str,
        hdrs: &str,
        payload: &str,
        now: i64,
    ) -> Result<Published, ApiError> {
        let block = if hdrs.is_empty() {
            Vec::new()
        } else {
            format!("NATS/1.0\r\n{hdrs}\r\n\r\n").into_bytes()
        };
        s.publish(subject, &block, payload.as_bytes(), now, &mut Vec::new())
    }

    fn stored(seq: u64) -> Result<Published, ApiError> {
        Ok(Published {
            seq,
            duplicate: false,
        })
    }

    fn seqs(s: &Stream) -> Vec<u64> {
        s.msgs.keys().copied().collect()
    }

    #[test]
    fn defaults_follow_nats_server() {
        let cfg = validate(&StreamConfig {
            name: "S".into(),
            ..StreamConfig::default()
        })
        .unwrap();
        assert_eq!(cfg.subjects, ["S"]);
        assert_eq!(
            (cfg.max_msgs, cfg.max_bytes, cfg.max_msgs_per_subject),
            (-1, -1, -1)
        );
        assert_eq!(
            (cfg.max_msg_size, cfg.max_consumers, cfg.num_replicas),
            (-1, -1, 1)
        );
        assert_eq!(cfg.duplicate_window, limits::JS_DEFAULT_DUPLICATE_WINDOW_NS);
        let short = validate(&StreamConfig {
            name: "S".into(),
            max_age: SEC,
            ..StreamConfig::default()
        });
        assert_eq!(short.unwrap().duplicate_window, SEC);
        for (name, text) in [
            (
                "",
                "stream name is required and can not contain '.', '*', '>'",
            ),
            (
                "a b",
                "stream name is required and can not contain '.', '*', '>'",
            ),
        ] {
            let err = validate(&StreamConfig {
                name: name.into(),
                ..StreamConfig::default()
            })
            .unwrap_err();
            assert_eq!(err.description, text);
        }
        let mirror = StreamConfig {
            name: "S".into(),
            mirror: Some(serde_json::json!({"name": "O"})),
            ..StreamConfig::default()
        };
        assert_eq!(validate(&mirror).unwrap_err().err_code, 10052);
    }

    #[test]
    fn subjects_collide_as_nats_server() {
        let cases = [
            ("a", "a", true),
            ("a", "b", false),
            ("a.*", "a.b", true),
            ("a.>", "a", false),
            ("a.>", "a.b.c", true),
            (">", "x", true),
            ("a.*", "*.b", true),
            ("a.*", "b.*", false),
            ("a.*", "a.*.c", false),
            ("a.>", "*.b.c", true),
            ("a.*.c", "a.>", true),
            ("*", "a.b", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(subjects_collide(a, b), want, "{a} {b}");
            assert_eq!(subjects_collide(b, a), want, "{b} {a}");
        }
        assert!(is_subset("$JS.API.x", "$JS.API.>"));
        assert!(!is_subset("$JS.>", "$JS.API.>"));
        assert!(is_subset("a.*", "a.>") && !is_subset("a.>", "a.*"));
    }

    #[test]
    fn byte_accounting_matches_the_stores() {
        assert_eq!(stored_size(Storage::File, "lb", b"", &[b'x'; 40]), 72);
        assert_eq!(
            stored_size(Storage::File, "lo.b", b"NATS/1.0\r\nk: v\r\n\r\n", b"3"),
            57
        );
        assert_eq!(
            stored_size(Storage::Memory, "M", b"NATS/1.0\r\na: b\r\n\r\n", b"memory"),
            41
        );
    }

    #[test]
    fn discard_new_refuses_at_each_limit() {
        let mut s = stream(
            r#"{"name":"L","subjects":["l.*"],"discard":"new","max_msgs":2,"max_msg_size":10}"#,
        );
        assert_eq!(
            publish(&mut s, "l.a", "", "12345678901", T0),
            Err(api::MESSAGE_TOO_BIG)
        );
        assert_eq!(publish(&mut s, "l.a", "", "1", T0), stored(1));
        assert_eq!(publish(&mut s, "l.b", "", "1", T0), stored(2));
        assert_eq!(
            publish(&mut s, "l.c", "", "1", T0),
            Err(ApiError::store_failed(api::MAX_MSGS_TEXT))
        );
        let mut s = stream(r#"{"name":"B","discard":"new","max_bytes":100}"#);
        assert_eq!(publish(&mut s, "B", "", &"x".repeat(40), T0), stored(1));
        assert_eq!(
            publish(&mut s, "B", "", &"x".repeat(40), T0),
            Err(ApiError::store_failed(api::MAX_BYTES_TEXT))
        );
        let mut s = stream(
            r#"{"name":"P","subjects":["p.*"],"discard":"new","max_msgs_per_subject":1,"discard_new_per_subject":true}"#,
        );
        assert_eq!(publish(&mut s, "p.a", "", "1", T0), stored(1));
        assert_eq!(
            publish(&mut s, "p.a", "", "2", T0),
            Err(ApiError::store_failed(api::MAX_MSGS_PER_SUBJECT_TEXT))
        );
        assert_eq!(publish(&mut s, "p.b", "", "2", T0), stored(2));
        // Without discard_new_per_subject a full subject replaces its oldest message.
        let mut s = stream(
            r#"{"name":"R","subjects":["r.*"],"discard":"new","max_msgs":2,"max_msgs_per_subject":1}"#,
        );
        for (i, subject) in ["r.a", "r.b", "r.b"].into_iter().enumerate() {
            assert_eq!(publish(&mut s, subject, "", "x", T0), stored(i as u64 + 1));
        }
        assert_eq!(seqs(&s), [1, 3]);
        assert_eq!(
            publish(&mut s, "r.c", "", "x", T0),
            Err(ApiError::store_failed(api::MAX_MSGS_TEXT))
        );
    }

    #[test]
    fn discard_old_drops_oldest() {
        let mut s =
            stream(r#"{"name":"O","subjects":["o.*"],"max_msgs":3,"max_msgs_per_subject":2}"#);
        for subject in ["o.a", "o.a", "o.a", "o.b", "o.c"] {
            publish(&mut s, subject, "", "x", T0).unwrap();
        }
        assert_eq!(seqs(&s), [3, 4, 5]);
        let state = s.state();
        assert_eq!(
            (
                state.first_seq,
                state.last_seq,
                state.messages,
                state.num_subjects
            ),
            (3, 5, 3, 3)
        );
        let mut s = stream(r#"{"name":"B","max_bytes":100}"#);
        for _ in 0..3 {
            publish(&mut s, "B", "", &"x".repeat(40), T0).unwrap();
        }
        assert_eq!((seqs(&s), s.bytes()), (vec![3], 71));
    }

    #[test]
    fn max_age_expires_on_calls_and_on_the_timer() {
        let mut s = stream(r#"{"name":"A","max_age":10000000000}"#);
        let mut out = Vec::new();
        assert_eq!(s.expire(T0, &mut out), None);
        publish(&mut s, "A", "", "1", T0).unwrap();
        publish(&mut s, "A", "", "2", T0 + SEC).unwrap();
        assert_eq!(s.expire(T0 + 5 * SEC, &mut out), Some(T0 + 10 * SEC));
        assert!(out.is_empty());
        assert_eq!(s.expire(T0 + 10 * SEC, &mut out), Some(T0 + 11 * SEC));
        assert_eq!(out, [Change::Expire { cutoff: T0 }]);
        publish(&mut s, "A", "", "3", T0 + 30 * SEC).unwrap();
        assert_eq!(seqs(&s), [3]);
        assert_eq!(s.state().first_seq, 3);
    }

    #[test]
    fn duplicates_inside_the_window_only() {
        let mut s = stream(r#"{"name":"D","duplicate_window":1000000000}"#);
        assert_eq!(publish(&mut s, "D", "Nats-Msg-Id: a", "1", T0), stored(1));
        let dup = Ok(Published {
            seq: 1,
            duplicate: true,
        });
        assert_eq!(
            publish(&mut s, "D", "Nats-Msg-Id: a", "1", T0 + SEC / 2),
            dup
        );
        assert_eq!(
            publish(&mut s, "D", "Nats-Msg-Id: b", "2", T0 + SEC / 2),
            stored(2)
        );
        assert_eq!(
            publish(&mut s, "D", "Nats-Msg-Id: a", "1", T0 + SEC),
            stored(3)
        );
        assert_eq!(s.state().messages, 3);
    }

    #[test]
    fn expected_headers() {
        let mut s = stream(r#"{"name":"E","subjects":["e.*"]}"#);
        let cases = [
            ("e.a", "Nats-Expected-Last-Sequence: 0", stored(1)),
            ("e.a", "Nats-Expected-Stream: F", Err(api::STREAM_NOT_MATCH)),
            ("e.a", "Nats-Expected-Stream: E", stored(2)),
            (
                "e.a",
                "Nats-Expected-Last-Sequence: 1",
                Err(ApiError::wrong_last_sequence(2)),
            ),
            ("e.b", "Nats-Expected-Last-Subject-Sequence: 0", stored(3)),
            (
                "e.a",
                "Nats-Expected-Last-Subject-Sequence: 3",
                Err(ApiError::wrong_last_sequence(2)),
            ),
            ("e.a", "Nats-Msg-Id: m", stored(4)),
            (
                "e.a",
                "Nats-Expected-Last-Msg-Id: n",
                Err(ApiError::wrong_last_msg_id("m")),
            ),
            ("e.a", "Nats-Expected-Last-Msg-Id: m", stored(5)),
            (
                "e.a",
                "Nats-Expected-Last-Sequence: x",
                Err(ApiError::wrong_last_sequence(5)),
            ),
            ("e.a", "Nats-Rollup: sub", Err(api::ROLLUP_NOT_PERMITTED)),
        ];
        for (subject, header, want) in cases {
            assert_eq!(publish(&mut s, subject, header, "1", T0), want, "{header}");
        }
    }

    #[test]
    fn rollup_and_sealed() {
        let mut s = stream(r#"{"name":"R","subjects":["r.*"],"allow_rollup_hdrs":true}"#);
        for subject in ["r.a", "r.a", "r.b"] {
            publish(&mut s, subject, "", "x", T0).unwrap();
        }
        publish(&mut s, "r.a", "Nats-Rollup: sub", "x", T0).unwrap();
        assert_eq!(seqs(&s), [3, 4]);
        publish(&mut s, "r.c", "Nats-Rollup: all", "x", T0).unwrap();
        assert_eq!(seqs(&s), [5]);
        let sealed = check_update(
            s.config(),
            &StreamConfig {
                sealed: true,
                ..s.config().clone()
            },
        )
        .unwrap();
        assert!(sealed.deny_delete && sealed.deny_purge && !sealed.allow_rollup_hdrs);
        s.update(sealed, &mut Vec::new());
        assert_eq!(publish(&mut s, "r.a", "", "x", T0), Err(api::STREAM_SEALED));
        assert_eq!(s.delete(5, &mut Vec::new()), Err(api::STREAM_SEALED));
    }

    #[test]
    fn purge_variants() {
        let fill = || {
            let mut s = stream(r#"{"name":"P","subjects":["p.*"]}"#);
            for subject in ["p.a", "p.b", "p.a", "p.b", "p.a"] {
                publish(&mut s, subject, "", "x", T0).unwrap();
            }
            s
        };
        let purge = |s: &mut Stream, json: &str| {
            s.purge(&serde_json::from_str(json).unwrap(), &mut Vec::new())
        };
        let cases: [(&str, u64, Vec<u64>, u64, u64); 7] = [
            ("{}", 5, vec![], 6, 5),
            (r#"{"seq":3}"#, 2, vec![3, 4, 5], 3, 5),
            (r#"{"seq":9}"#, 5, vec![], 9, 8),
            (r#"{"keep":2}"#, 3, vec![4, 5], 4, 5),
            (r#"{"filter":"p.a"}"#, 3, vec![2, 4], 2, 5),
            (r#"{"filter":"p.a","keep":1}"#, 2, vec![2, 4, 5], 2, 5),
            (r#"{"filter":"p.*","seq":4}"#, 3, vec![4, 5], 4, 5),
        ];
        for (json, purged, left, first, last) in cases {
            let mut s = fill();
            assert_eq!(purge(&mut s, json), Ok(purged), "{json}");
            assert_eq!(seqs(&s), left, "{json}");
            assert_eq!(
                (s.state().first_seq, s.state().last_seq),
                (first, last),
                "{json}"
            );
        }
        let mut s = fill();
        assert_eq!(
            purge(&mut s, r#"{"seq":2,"keep":1}"#),
            Err(api::BAD_REQUEST)
        );
        purge(&mut s, r#"{"seq":9}"#).unwrap();
        assert_eq!(publish(&mut s, "p.a", "", "x", T0), stored(9));
    }

    #[test]
    fn delete_and_the_removal_seam() {
        let mut s = stream(r#"{"name":"D","deny_delete":true}"#);
        publish(&mut s, "D", "", "x", T0).unwrap();
        assert_eq!(s.delete(1, &mut Vec::new()), Err(api::DELETE_NOT_PERMITTED));
        let mut out = Vec::new();
        assert!(s.remove(1, &mut out));
        assert!(!s.remove(1, &mut out));
        assert_eq!(out, [Change::Delete { seq: 1 }]);
        let state = s.state();
        assert_eq!(
            (state.messages, state.first_seq, state.last_seq, state.bytes),
            (0, 2, 1, 0)
        );
    }

    #[test]
    fn interest_without_consumers_skips_the_sequence() {
        let mut s = stream(r#"{"name":"I","retention":"interest"}"#);
        assert_eq!(publish(&mut s, "I", "", "x", T0), stored(1));
        assert_eq!(s.state().messages, 0);
        s.set_consumer_count(1);
        assert_eq!(publish(&mut s, "I", "", "x", T0), stored(2));
        assert_eq!(seqs(&s), [2]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Publish {
            subject: u8,
            id: Option<u8>,
            expect_last: Option<u64>,
            size: u8,
            dt: i64,
        },
        Delete(u64),
        Purge {
            filter: Option<u8>,
            seq: u64,
            keep: u64,
        },
        Expire(i64),
        Limits {
            max_msgs: i64,
            max_per: i64,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..4, proptest::option::of(0u8..6), proptest::option::weighted(0.2, 0u64..10), 0u8..40, 0i64..3)
                .prop_map(|(subject, id, expect_last, size, dt)| Op::Publish { subject, id, expect_last, size, dt }),
            1 => (0u64..12).prop_map(Op::Delete),
            1 => (proptest::option::of(0u8..4), 0u64..12, 0u64..4).prop_map(|(filter, seq, keep)| Op::Purge { filter, seq: if keep > 0 { 0 } else { seq }, keep }),
            1 => (0i64..5).prop_map(Op::Expire),
            1 => (0i64..6, 0i64..4).prop_map(|(max_msgs, max_per)| Op::Limits { max_msgs, max_per }),
        ]
    }

    proptest! {
        #[test]
        fn replaying_changes_rebuilds_the_same_state(ops in proptest::collection::vec(op(), 0..60), discard_new in any::<bool>(), memory in any::<bool>(), max in prop_oneof![Just(u64::MAX), 100u64..500], checkpoint_at in 0usize..60) {
            let discard = if discard_new { "new" } else { "old" };
            let storage = if memory { "memory" } else { "file" };
            let json = format!(r#"{{"name":"P","subjects":["p.*"],"max_bytes":400,"max_age":5000000000,"duplicate_window":2000000000,"discard":"{discard}","storage":"{storage}"}}"#);
            let mut live = stream(&json);
            let initial = live.clone();
            let mut log = Vec::new();
            let mut now = T0;
            let mut checkpoint = None;
            for (i, op) in ops.into_iter().enumerate() {
                if i == checkpoint_at {
                    let mut base = Vec::new();
                    live.encode_base(&mut base);
                    checkpoint = Some((base, live.clone(), log.len()));
                }
                match op {
                    Op::Publish { subject, id, expect_last, size, dt } => {
                        now += dt * SEC;
                        let mut hdrs = String::new();
                        if let Some(id) = id { hdrs.push_str(&format!("Nats-Msg-Id: {id}\r\n")); }
                        if let Some(seq) = expect_last { hdrs.push_str(&format!("Nats-Expected-Last-Sequence: {seq}\r\n")); }
                        let block = if hdrs.is_empty() { Vec::new() } else { format!("NATS/1.0\r\n{hdrs}\r\n").into_bytes() };
                        let budget = Budget { others: 50, max };
                        let _ = live.publish_within(&format!("p.{subject}"), &block, &vec![b'x'; size as usize], now, budget, &mut log);
                    }
                    Op::Delete(seq) => { let _ = live.delete(seq, &mut log); }
                    Op::Purge { filter, seq, keep } => {
                        let req = PurgeRequest { filter: filter.map(|f| format!("p.{f}")).unwrap_or_default(), seq, keep };
                        let _ = live.purge(&req, &mut log);
                    }
                    Op::Expire(dt) => { now += dt * SEC; live.expire(now, &mut log); }
                    Op::Limits { max_msgs, max_per } => {
                        let mut cfg = live.config().clone();
                        cfg.max_msgs = if max_msgs == 0 { -1 } else { max_msgs };
                        cfg.max_msgs_per_subject = if max_per == 0 { -1 } else { max_per };
                        live.update(cfg, &mut log);
                    }
                }
                let st = live.state();
                prop_assert_eq!(st.messages as usize, live.msgs.len());
                prop_assert_eq!(st.bytes, live.msgs.values().map(|m| live.stored_size(&m.subject, &m.headers, &m.payload)).sum::<u64>());
                prop_assert!(st.bytes <= 400 || discard_new);
            }
            let mut replayed = initial;
            for change in &log {
                let mut bytes = Vec::new();
                change.encode(&mut bytes);
                let decoded = Change::decode(&bytes).unwrap();
                prop_assert_eq!(&decoded, change);
                replayed.apply_owned(decoded);
            }
            prop_assert_eq!(&replayed, &live);
            // A checkpoint taken midway, restored with its kept messages' contents, then
            // the changes made after it: the same stream again.
            if let Some((base, then, mark)) = checkpoint {
                let base = Base::decode(&base).unwrap();
                let first = then.msgs.keys().next().copied();
                prop_assert_eq!(base.clone().restore(|_| None).err(), first);
                prop_assert_eq!(base.kept().collect::<Vec<_>>(), then.msgs.keys().copied().collect::<Vec<_>>());
                let mut restored = base
                    .restore(|seq| then.msgs.get(&seq).map(|m| Content {
                        subject: m.subject.to_string(),
                        headers: m.headers.clone(),
                        payload: m.payload.clone(),
                        time: m.time,
                    }))
                    .unwrap();
                prop_assert_eq!(&restored, &then);
                for change in &log[mark..] {
                    restored.apply(change);
                }
                prop_assert_eq!(restored, live);
            }
        }

        #[test]
        fn a_checkpoint_with_runs_outside_its_sequences_is_refused(extra in 1u64..u64::MAX) {
            let mut s = stream(r#"{"name":"R","subjects":["r"]}"#);
            publish(&mut s, "r", "", "x", T0).unwrap();
            let mut base = Vec::new();
            s.encode_base(&mut base);
            prop_assert!(Base::decode(&base).is_ok());
            // The same checkpoint, its one run (1, 1) made longer than the stream.
            let at = base.len() - 5;
            prop_assert_eq!(&base[at..], &[1, 1, 1, 0, 0][..], "one run (1, 1), no dedupe entries");
            let mut longer = base[..at].to_vec();
            longer.extend_from_slice(&[1, 1]);
            put_varint(&mut longer, 1 + extra);
            longer.extend_from_slice(&[0, 0]);
            prop_assert_eq!(Base::decode(&longer), Err(DecodeError::Field));
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Change::decode(&bytes);
            let _ = Base::decode(&bytes);
        }
    }
}
