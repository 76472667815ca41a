//! JetStream's stream API and stream state, byte-compatible with nats-server 2.9 (issue 11).
//!
//! This is the I/O-free core the worker calls: one [`Streams`] per account, owned by one
//! worker. A request on `$JS.API.…` goes to [`Streams::handle_request`], which answers with
//! the exact JSON nats-server sends ([`Answer::Json`]) or, for a direct get, the stored
//! message itself ([`Answer::Msg`]); [`Streams::handle`] is the same for the JSON answers
//! alone. A publish to a subject a stream captures
//! ([`Streams::capture`]) goes to [`Streams::publish`], which answers with the PubAck. Both
//! take the time from the caller and append what they changed to `out` as [`Record`]s: the
//! owner writes those to its log, and sends the answer only once they are durable. On
//! recovery, [`Streams::apply`] replays the records into the same state.
//!
//! # Layout
//! - [`api`]: the request and response shapes, error codes, Go-style times and JSON.
//! - [`stream`]: one stream's state machine (limits, de-duplication, expected headers,
//!   purge, expiry) and its [`stream::Change`]s.
//! - [`headers`]: the NATS header block parser.
//! - [`record`]: a [`Record`]'s encoding in the write-ahead log.
//!
//! # What answers what
//! - `$JS.API.INFO` and `$JS.API.STREAM.CREATE|UPDATE|INFO|DELETE|PURGE|NAMES|LIST|MSG.GET|
//!   MSG.DELETE` are served here. A subject with the wrong number of tokens
//!   (`STREAM.CREATE` without a name, `STREAM.CREATE.A.B`) or an unknown `$JS.API` subject
//!   gets no answer at all ([`Streams::handle`] returns `None`), as from nats-server.
//! - The consumer API (`CONSUMER.CREATE|DURABLE.CREATE|INFO|DELETE|NAMES|LIST`) is reserved
//!   for the consumer layer: until it exists, those subjects answer `stream not found` for a
//!   missing stream (as nats-server), an empty page for names and lists, `consumer not found`
//!   for info and delete, and a create error (10012) for creates.
//! - `api.total` and `api.errors` in `$JS.API.INFO` count the requests answered before it.
//! - `$JS.API.DIRECT.GET.<stream>` (body `{"seq"}`, `{"last_by_subj"}` or `{"next_by_subj"}`)
//!   and `$JS.API.DIRECT.GET.<stream>.<subject>` (last message on a subject, empty body),
//!   for a stream with `allow_direct`, answer with the stored message as nats-server sends
//!   it: its header block with `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
//!   `Nats-Time-Stamp` appended, and its payload; or with a status message and no payload
//!   (`NATS/1.0 404 Message Not Found`, `408 Empty Request`, `408 Malformed Request`, `408
//!   Bad Request`). A stream without `allow_direct`, or none, gets no answer: nats-server
//!   has no subscriber there, and its `$JS.API.>` import swallows the request (no 503
//!   either). Direct gets do not count in `api`.
//!
//! # Resource bounds
//! [`JsLimits`] bound the bytes all memory streams and all file streams keep, and the stream
//! count, for the whole server (it has one account). They are reported and enforced as
//! nats-server 2.9.10 reports and enforces an account whose `jetstream { max_mem, max_file,
//! max_streams }` equal the server's `max_memory_store`/`max_file_store` (captured in
//! `testdata/capture-limits.json`):
//! - a create when `max_streams` streams exist (even one repeating an existing stream's
//!   config) → 10027; this is checked before the config is validated, as nats-server does;
//! - a create or update whose `max_bytes` does not fit beside the other streams'
//!   reservations (a stream reserves its `max_bytes` when it has one; one without reserves a
//!   byte) → 10028 (memory) or 10047 (file). nats-server checks two reservation totals: the
//!   account's, summed from the other streams' configs, and the server's, a running counter
//!   changed by `new - old max_bytes` on each update (so updates to and from unlimited, -1,
//!   move it by a byte each); both are kept here with the same arithmetic;
//! - a publish when the storage's bytes are already past the limit → 10023 `insufficient
//!   resources` (503), nothing stored; a publish that takes them past it → stored, taken
//!   back ([`stream::Change::Withdraw`]; the sequence stays used) and 10002 `resource limits
//!   exceeded for account` (400).
//! # Deviation
//! nats-server 2.9.10 accepts an *update* to `num_replicas` > 1 on a non-clustered server
//! and echoes it; this refuses it with the create's error (10074), so a stream never claims
//! copies that do not exist.

pub mod api;
pub mod headers;
pub mod record;
pub mod republish;
mod source;
pub mod stream;

#[cfg(test)]
mod fixtures;

use std::collections::BTreeMap;
use std::io::Write as _;

use serde::Serialize;

use self::api::{ApiError, Paged, Storage, StreamInfo};
use self::stream::{Budget, Change, Published, Stream};
use crate::limits;

/// The server-wide bounds on what JetStream keeps. Bytes are counted as `state.bytes`
/// counts them (nats-server's store sizes), which is what is reported and enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsLimits {
    /// Bytes all memory streams keep together (nats-server's `max_memory_store`).
    pub max_memory: u64,
    /// Bytes all file streams keep together (nats-server's `max_file_store`).
    pub max_storage: u64,
    /// Streams (an account's `max_streams` in nats-server, which has no server-wide count);
    /// 0 refuses every create.
    pub max_streams: usize,
}

impl Default for JsLimits {
    fn default() -> JsLimits {
        JsLimits {
            max_memory: limits::JS_DEFAULT_MAX_MEMORY_BYTES,
            max_storage: limits::JS_DEFAULT_MAX_STORAGE_BYTES,
            max_streams: limits::JS_DEFAULT_MAX_STREAMS,
        }
    }
}

impl JsLimits {
    /// The bound for streams of `storage`.
    pub fn max_bytes(&self, storage: Storage) -> u64 {
        match storage {
            Storage::Memory => self.max_memory,
            Storage::File => self.max_storage,
        }
    }
}

/// What to send to a request's reply subject ([`Streams::handle_request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A JSON API answer, sent as a plain message (what [`Streams::handle`] returns).
    Json(Vec<u8>),
    /// A message with headers: a direct get's stored message, or a status message
    /// (`NATS/1.0 404 Message Not Found\r\n\r\n`) with an empty payload.
    Msg {
        /// The complete header block, ending in the empty line.
        headers: Vec<u8>,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// A stream borrowed to change, from [`Streams::stream_mut`]: when it is dropped, the
/// account's byte totals and reservations are brought up to date with what was done to it.
#[derive(Debug)]
pub struct StreamMut<'a> {
    stream: &'a mut Stream,
    used: &'a mut PerStorage<u64>,
    reserved: &'a mut PerStorage<i64>,
    /// The stream's bytes and `max_bytes` when it was borrowed.
    bytes: u64,
    max_bytes: i64,
}

impl StreamMut<'_> {
    /// The budget a publish to this stream has under `limits`.
    fn budget(&self, limits: &JsLimits) -> Budget {
        let storage = self.stream.config().storage;
        Budget {
            others: self.used.of(storage).saturating_sub(self.bytes),
            max: limits.max_bytes(storage),
        }
    }
}

impl std::ops::Deref for StreamMut<'_> {
    type Target = Stream;

    fn deref(&self) -> &Stream {
        self.stream
    }
}

impl std::ops::DerefMut for StreamMut<'_> {
    fn deref_mut(&mut self) -> &mut Stream {
        self.stream
    }
}

impl Drop for StreamMut<'_> {
    fn drop(&mut self) {
        let storage = self.stream.config().storage;
        let used = self.used.of_mut(storage);
        *used = used.saturating_sub(self.bytes) + self.stream.bytes();
        // nats-server's server-wide reservation moves by `new - old` on an update.
        *self.reserved.of_mut(storage) += self.stream.config().max_bytes - self.max_bytes;
    }
}

/// A change to an account's streams, as logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A stream was created with this (validated) config.
    Create {
        /// The config, defaults applied.
        config: Box<api::StreamConfig>,
        /// Creation time, unix nanoseconds.
        created: i64,
    },
    /// A stream was deleted with its messages.
    Delete {
        /// Its name.
        name: String,
    },
    /// A stream changed.
    Stream {
        /// Its name.
        name: String,
        /// The change.
        change: Change,
    },
}

/// One account's streams.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Streams {
    /// By name: sorted, as names and lists page in name order.
    streams: BTreeMap<String, Stream>,
    api: api::ApiStats,
    limits: JsLimits,
    /// Bytes kept, per storage (the sum of the streams' `state.bytes`).
    used: PerStorage<u64>,
    /// nats-server's server-wide reservation counters (`memReserved`, `storeReserved`).
    reserved: PerStorage<i64>,
    /// A publish's changes, empty between calls: kept so that a publish allocates no list.
    scratch: Vec<Change>,
    /// The copy the last publish's stream republishes, for the owner to take.
    republished: Option<republish::Republished>,
}

impl Streams {
    /// No streams, under the default [`JsLimits`].
    pub fn new() -> Streams {
        Streams::default()
    }

    /// No streams, under `limits`.
    pub fn with_limits(limits: JsLimits) -> Streams {
        Streams {
            limits,
            ..Streams::default()
        }
    }

    /// The bounds.
    pub fn limits(&self) -> JsLimits {
        self.limits
    }

    /// Bytes the streams of `storage` keep together.
    pub fn used(&self, storage: Storage) -> u64 {
        *self.used.of(storage)
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.get(name)
    }

    /// The stream named `name`, to change (the consumer layer's seam: consumer counts,
    /// removing acknowledged messages); the account's totals follow when it is dropped.
    pub fn stream_mut(&mut self, name: &str) -> Option<StreamMut<'_>> {
        let stream = self.streams.get_mut(name)?;
        let (bytes, max_bytes) = (stream.bytes(), stream.config().max_bytes);
        Some(StreamMut {
            stream,
            used: &mut self.used,
            reserved: &mut self.reserved,
            bytes,
            max_bytes,
        })
    }

    /// Stream names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.streams.keys().map(String::as_str)
    }

    /// The stream whose subjects match the literal `subject`, if any (at most one can:
    /// streams' subjects never overlap).
    pub fn capture(&self, subject: &str) -> Option<&str> {
        self.streams
            .values()
            .find(|s| {
                s.config()
                    .subjects
                    .iter()
                    .any(|p| p == subject || stream::is_subset(subject, p))
            })
            .map(Stream::name)
    }

    /// Stores a publish to `subject` in stream `name` (see [`Streams::capture`]) and gives
    /// the PubAck to send, or `None` when the stream is `no_ack` or does not exist.
    pub fn publish(
        &mut self,
        name: &str,
        subject: &str,
        headers: &[u8],
        payload: &[u8],
        now: i64,
        out: &mut Vec<Record>,
    ) -> Option<Vec<u8>> {
        let limits = self.limits;
        let mut changes = std::mem::take(&mut self.scratch);
        let Some(mut stream) = self.stream_mut(name) else {
            self.scratch = changes;
            return None;
        };
        let budget = stream.budget(&limits);
        // Only a republishing stream needs the subject's previous sequence.
        let previous = stream
            .config()
            .republish
            .is_some()
            .then(|| stream.last_on_subject(subject));
        let result = stream.publish_within(subject, headers, payload, now, budget, &mut changes);
        let no_ack = stream.config().no_ack;
        let republished = match (&result, &stream.config().republish) {
            (Ok(p), Some(rp)) if !p.duplicate => stream
                .msg(p.seq)
                .and_then(|msg| republish::message(rp, name, msg, previous.unwrap_or(0))),
            _ => None,
        };
        drop(stream);
        self.republished = republished;
        push_changes(out, name, &mut changes);
        self.scratch = changes;
        if no_ack {
            return None;
        }
        Some(pub_ack(name, result))
    }

    /// The copy of the message the last [`Streams::publish`] stored, if its stream
    /// republishes it (published before the PubAck, as nats-server does).
    pub fn take_republished(&mut self) -> Option<republish::Republished> {
        self.republished.take()
    }

    /// Expires old messages in every stream; returns the earliest next deadline.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Record>) -> Option<i64> {
        let mut next: Option<i64> = None;
        for (name, stream) in &mut self.streams {
            let mut changes = Vec::new();
            let before = stream.bytes();
            if let Some(at) = stream.expire(now, &mut changes) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            let used = self.used.of_mut(stream.config().storage);
            *used = used.saturating_sub(before) + stream.bytes();
            push_changes(out, name, &mut changes);
        }
        next
    }

    /// Answers a `$JS.API.…` request: [`Streams::handle`]'s JSON, or for
    /// `$JS.API.DIRECT.GET.…` a message with headers; `None` where nats-server sends
    /// nothing (see the module doc).
    pub fn handle_request(
        &mut self,
        subject: &str,
        body: &[u8],
        now: i64,
        out: &mut Vec<Record>,
    ) -> Option<Answer> {
        if let Some(rest) = subject.strip_prefix(DIRECT_GET_PREFIX) {
            return self.direct_get(rest, body);
        }
        self.handle(subject, body, now, out).map(Answer::Json)
    }

    /// Answers a `$JS.API.…` request with the JSON nats-server sends, or `None` where
    /// nats-server sends nothing (direct gets included: they answer through
    /// [`Streams::handle_request`]).
    pub fn handle(
        &mut self,
        subject: &str,
        body: &[u8],
        now: i64,
        out: &mut Vec<Record>,
    ) -> Option<Vec<u8>> {
        let tokens: Vec<&str> = subject.split('.').collect();
        let (reply, tally) = match tokens.as_slice() {
            ["$JS", "API", "INFO"] => (self.account_info(), Tally::Success),
            ["$JS", "API", "STREAM", rest @ ..] => self.handle_stream(rest, body, now, out)?,
            ["$JS", "API", "CONSUMER", rest @ ..] => self.handle_consumer(rest)?,
            _ => return None,
        };
        match tally {
            Tally::Success => self.api.total += 1,
            Tally::Error => {
                self.api.total += 1;
                self.api.errors += 1;
            }
            Tally::Uncounted => {}
        }
        Some(reply)
    }

    /// Rebuilds state from a logged record.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Create { config, created } => {
                self.restore(Stream::new((**config).clone(), *created));
            }
            Record::Delete { name } => {
                if let Some(old) = self.streams.remove(name) {
                    self.forget(&old);
                }
            }
            Record::Stream { name, change } => {
                if let Some(mut stream) = self.stream_mut(name) {
                    stream.apply(change);
                }
            }
        }
    }

    /// Puts in a stream, new or rebuilt from a checkpoint (replacing one of its name),
    /// counting its bytes and reservation.
    pub fn restore(&mut self, stream: Stream) {
        let storage = stream.config().storage;
        if stream.config().max_bytes > 0 {
            *self.reserved.of_mut(storage) += stream.config().max_bytes;
        }
        *self.used.of_mut(storage) += stream.bytes();
        if let Some(old) = self.streams.insert(stream.name().to_owned(), stream) {
            self.forget(&old);
        }
    }

    /// [`Streams::apply`] for a record the caller is done with (recovery): a stored
    /// message keeps the record's buffers.
    pub fn apply_owned(&mut self, record: Record) {
        match record {
            Record::Stream { name, change } => {
                if let Some(mut stream) = self.stream_mut(&name) {
                    stream.apply_owned(change);
                }
            }
            other => self.apply(&other),
        }
    }

    /// Takes a removed stream's bytes and reservation out of the totals.
    fn forget(&mut self, stream: &Stream) {
        let storage = stream.config().storage;
        let used = self.used.of_mut(storage);
        *used = used.saturating_sub(stream.bytes());
        if stream.config().max_bytes > 0 {
            *self.reserved.of_mut(storage) -= stream.config().max_bytes;
        }
    }

    /// The account limits `$JS.API.INFO` reports.
    pub fn account_limits(&self) -> api::AccountLimits {
        let report = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        api::AccountLimits {
            max_memory: report(self.limits.max_memory),
            max_storage: report(self.limits.max_storage),
            max_streams: report(self.limits.max_streams as u64),
            ..api::AccountLimits::UNLIMITED
        }
    }

    fn account_info(&self) -> Vec<u8> {
        let consumers = self.streams.values().map(Stream::consumer_count).sum();
        respond(
            api::types::ACCOUNT_INFO,
            None,
            api::AccountInfo {
                memory: self.used.memory,
                storage: self.used.file,
                streams: self.streams.len(),
                consumers,
                limits: self.account_limits(),
                api: self.api,
            },
        )
    }

    /// nats-server's `checkBytesLimits` for one replica: `add` more bytes of `storage` must
    /// fit beside the account's `reserved` (its other streams') and the server's counter.
    fn check_bytes(&self, storage: Storage, add: i64, reserved: i64) -> Result<(), ApiError> {
        let max = i64::try_from(self.limits.max_bytes(storage)).unwrap_or(i64::MAX);
        let add = if add < 0 { 1 } else { add };
        if reserved.saturating_add(add) > max || self.reserved.of(storage).saturating_add(add) > max
        {
            return Err(match storage {
                Storage::Memory => api::MEMORY_RESOURCES_EXCEEDED,
                Storage::File => api::STORAGE_RESOURCES_EXCEEDED,
            });
        }
        Ok(())
    }

    /// nats-server's `tieredReservation`: the `max_bytes` the streams of `storage` other
    /// than `except` reserve.
    fn reservation(&self, storage: Storage, except: &str) -> i64 {
        self.streams
            .values()
            .map(Stream::config)
            .filter(|c| c.max_bytes > 0 && c.storage == storage && c.name != except)
            .map(|c| c.max_bytes)
            .sum()
    }

    /// nats-server's `jsNonClusteredStreamLimitsCheck`, on the config as sent.
    fn check_create_limits(&self, config: &api::StreamConfig) -> Result<(), ApiError> {
        if self.streams.len() >= self.limits.max_streams {
            return Err(api::MAX_STREAMS_REACHED);
        }
        let reserved = self.reservation(config.storage, &config.name);
        self.check_bytes(config.storage, config.max_bytes, reserved)
    }

    /// `$JS.API.DIRECT.GET.<rest>`: nats-server's `processDirectGetRequest` and
    /// `processDirectGetLastBySubjectRequest`, then `getDirectRequest`.
    fn direct_get(&self, rest: &str, body: &[u8]) -> Option<Answer> {
        let (name, key) = match rest.split_once('.') {
            Some((name, key)) => (name, Some(key)),
            None => (rest, None),
        };
        let stream = self.streams.get(name)?;
        if !stream.config().allow_direct {
            return None;
        }
        let msg = match key {
            // An empty key is an invalid subject, which the worker never routes here.
            Some("") => return None,
            Some(_) if !body.is_empty() => return Some(status(DIRECT_BAD_REQUEST)),
            Some(key) => stream.last_by_subject(key),
            None => {
                if body.is_empty() {
                    return Some(status(DIRECT_EMPTY_REQUEST));
                }
                let Ok(req) = api::parse_request::<api::MsgGetRequest>(body) else {
                    return Some(status(DIRECT_MALFORMED_REQUEST));
                };
                let (by_last, by_next) =
                    (!req.last_by_subj.is_empty(), !req.next_by_subj.is_empty());
                if req.seq == 0 && !by_last && !by_next {
                    return Some(status(DIRECT_EMPTY_REQUEST));
                }
                if by_last && (req.seq > 0 || by_next) {
                    return Some(status(DIRECT_BAD_REQUEST));
                }
                if by_next {
                    stream.next_by_subject(&req.next_by_subj, req.seq)
                } else if req.seq > 0 {
                    stream.msg(req.seq)
                } else {
                    stream.last_by_subject(&req.last_by_subj)
                }
            }
        };
        let Some(msg) = msg else {
            return Some(status(DIRECT_NOT_FOUND));
        };
        // nats-server's `genHeader`: the stored block without its final CRLF (or a bare
        // version line), one line per header, and the closing CRLF.
        let mut headers = Vec::with_capacity(msg.headers.len() + 128);
        match msg.headers.len() {
            0..=2 => headers.extend_from_slice(b"NATS/1.0\r\n"),
            n => headers.extend_from_slice(&msg.headers[..n - 2]),
        }
        for (key, value) in [
            ("Nats-Stream", stream.name()),
            ("Nats-Subject", &msg.subject),
            ("Nats-Sequence", &msg.seq.to_string()),
            ("Nats-Time-Stamp", &api::format_time(msg.time)),
        ] {
            headers.extend_from_slice(key.as_bytes());
            headers.extend_from_slice(b": ");
            headers.extend_from_slice(value.as_bytes());
            headers.extend_from_slice(b"\r\n");
        }
        headers.extend_from_slice(b"\r\n");
        Some(Answer::Msg {
            headers,
            payload: msg.payload.clone(),
        })
    }

    fn handle_stream(
        &mut self,
        rest: &[&str],
        body: &[u8],
        now: i64,
        out: &mut Vec<Record>,
    ) -> Option<(Vec<u8>, Tally)> {
        use api::types;
        Some(match rest {
            ["CREATE", name] => reply(
                types::STREAM_CREATE,
                self.create(name, body, now, out),
                CreateBody::default(),
            ),
            ["UPDATE", name] => reply(
                types::STREAM_UPDATE,
                self.update(name, body, out),
                Option::<StreamInfo>::None,
            ),
            ["INFO", name] => reply(
                types::STREAM_INFO,
                self.info(name, body),
                InfoBody::default(),
            ),
            ["DELETE", name] => reply(
                types::STREAM_DELETE,
                self.delete(name, body, out),
                Success::default(),
            ),
            ["PURGE", name] => reply(
                types::STREAM_PURGE,
                self.purge(name, body, out),
                PurgeBody::default(),
            ),
            ["NAMES"] => reply(
                types::STREAM_NAMES,
                self.list_names(body),
                NamesBody::default(),
            ),
            ["LIST"] => reply(types::STREAM_LIST, self.list(body), ListBody::default()),
            ["MSG", "GET", name] => match reply(
                types::MSG_GET,
                self.msg_get(name, body),
                Option::<MsgBody>::None,
            ) {
                // nats-server sends a found message around its API accounting.
                (bytes, Tally::Success) => (bytes, Tally::Uncounted),
                other => other,
            },
            ["MSG", "DELETE", name] => {
                let result = self.msg_delete(name, body, out);
                // nats-server sends a failed removal as a plain response (not an error).
                let plain = matches!(&result, Err(e) if e.err_code == api::SEQUENCE_NOT_FOUND);
                match reply(types::MSG_DELETE, result, Success::default()) {
                    (bytes, Tally::Error) if plain => (bytes, Tally::Success),
                    other => other,
                }
            }
            _ => return None,
        })
    }

    fn handle_consumer(&self, rest: &[&str]) -> Option<(Vec<u8>, Tally)> {
        use api::types;
        let (kind, stream) = match rest {
            ["CREATE", stream] | ["CREATE", stream, ..] => (types::CONSUMER_CREATE, *stream),
            ["DURABLE", "CREATE", stream, _] => (types::CONSUMER_CREATE, *stream),
            ["INFO", stream, _] => (types::CONSUMER_INFO, *stream),
            ["DELETE", stream, _] => (types::CONSUMER_DELETE, *stream),
            ["NAMES", stream] => (types::CONSUMER_NAMES, *stream),
            ["LIST", stream] => (types::CONSUMER_LIST, *stream),
            _ => return None,
        };
        let error = if !self.streams.contains_key(stream) {
            Some(api::STREAM_NOT_FOUND)
        } else if kind == types::CONSUMER_CREATE {
            Some(api::CONSUMERS_NOT_SUPPORTED)
        } else if kind == types::CONSUMER_INFO || kind == types::CONSUMER_DELETE {
            Some(api::CONSUMER_NOT_FOUND)
        } else {
            None
        };
        let ok = error.is_none();
        let bytes = match kind {
            types::CONSUMER_NAMES | types::CONSUMER_LIST => {
                let limit = if ok { limits::JS_NAMES_PAGE_STREAMS } else { 0 };
                respond(
                    kind,
                    error,
                    ConsumersBody {
                        paged: Paged {
                            limit,
                            ..Paged::default()
                        },
                        consumers: Vec::new(),
                    },
                )
            }
            _ => respond(kind, error, Option::<()>::None),
        };
        Some((bytes, if ok { Tally::Success } else { Tally::Error }))
    }

    fn create(
        &mut self,
        name: &str,
        body: &[u8],
        now: i64,
        out: &mut Vec<Record>,
    ) -> Result<CreateBody, ApiError> {
        let config: api::StreamConfig = api::parse_request(body)?;
        if config.name != name {
            return Err(api::STREAM_MISMATCH);
        }
        if name.contains(['\\', '/']) {
            return Err(api::NAME_HAS_PATH_SEPARATORS);
        }
        if config.sealed {
            return Err(ApiError::invalid_config(
                "stream configuration for create can not be sealed",
            ));
        }
        if config.mirror_direct && config.mirror.is_none() {
            return Err(ApiError::invalid_config(
                "stream has no mirror but does have mirror direct",
            ));
        }
        self.check_create_limits(&config)?;
        let config = stream::validate(&config)?;
        if let Some(existing) = self.streams.get(name) {
            if *existing.config() != config {
                return Err(api::STREAM_NAME_IN_USE);
            }
            return Ok(CreateBody {
                info: Some(existing.info()),
                did_create: true,
            });
        }
        let reserved = self.reservation(config.storage, name);
        self.check_bytes(config.storage, config.max_bytes, reserved)?;
        if self.overlaps(&config.subjects, None) {
            return Err(api::SUBJECT_OVERLAP);
        }
        let record = Record::Create {
            config: Box::new(config),
            created: now,
        };
        self.apply(&record);
        out.push(record);
        Ok(CreateBody {
            info: self.streams.get(name).map(Stream::info),
            did_create: true,
        })
    }

    fn update(
        &mut self,
        name: &str,
        body: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<Option<StreamInfo>, ApiError> {
        let config: api::StreamConfig = api::parse_request(body)?;
        let config = stream::validate(&config)?;
        if config.name != name {
            return Err(api::STREAM_MISMATCH);
        }
        let old = self.streams.get(name).ok_or(api::STREAM_NOT_FOUND)?;
        let config = stream::check_update(old.config(), &config)?;
        // nats-server's update check: only growth of `max_bytes` is asked for, beside the
        // others' reservations and the stream's old one (-1 when it had none).
        let old_max = old.config().max_bytes;
        let reserved = self.reservation(config.storage, name) + old_max;
        self.check_bytes(
            config.storage,
            (config.max_bytes - old_max).max(0),
            reserved,
        )?;
        if self.overlaps(&config.subjects, Some(name)) {
            return Err(api::SUBJECT_OVERLAP);
        }
        let mut stream = self.stream_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        stream.update(config, &mut changes);
        let info = stream.info();
        drop(stream);
        push_changes(out, name, &mut changes);
        Ok(Some(info))
    }

    fn info(&self, name: &str, body: &[u8]) -> Result<InfoBody, ApiError> {
        let req: api::InfoRequest = api::parse_optional(body)?;
        let stream = self.streams.get(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut info = stream.info();
        let mut paged = Paged::default();
        if req.deleted_details {
            info.state.deleted = Some(stream.deleted());
        }
        if !req.subjects_filter.is_empty() {
            let counts = stream.subject_counts(&req.subjects_filter);
            if !counts.is_empty() {
                let offset = req.offset.min(counts.len());
                paged = Paged {
                    total: counts.len(),
                    offset,
                    limit: limits::JS_INFO_PAGE_SUBJECTS,
                };
                let page: BTreeMap<String, u64> = counts
                    .into_iter()
                    .skip(offset)
                    .take(limits::JS_INFO_PAGE_SUBJECTS)
                    .collect();
                info.state.subjects = (!page.is_empty()).then_some(page);
            }
        }
        Ok(InfoBody {
            paged,
            info: Some(info),
        })
    }

    fn delete(
        &mut self,
        name: &str,
        body: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<Success, ApiError> {
        if !api::is_empty_request(body) {
            return Err(api::NOT_EMPTY_REQUEST);
        }
        if !self.streams.contains_key(name) {
            return Err(api::STREAM_NOT_FOUND);
        }
        let record = Record::Delete {
            name: name.to_owned(),
        };
        self.apply(&record);
        out.push(record);
        Ok(Success { success: true })
    }

    fn purge(
        &mut self,
        name: &str,
        body: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<PurgeBody, ApiError> {
        let req: api::PurgeRequest = api::parse_optional(body)?;
        if req.seq > 0 && req.keep > 0 {
            return Err(api::BAD_REQUEST);
        }
        let mut stream = self.stream_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        let purged = stream.purge(&req, &mut changes)?;
        drop(stream);
        push_changes(out, name, &mut changes);
        Ok(PurgeBody {
            success: true,
            purged,
        })
    }

    fn list_names(&self, body: &[u8]) -> Result<NamesBody, ApiError> {
        let (paged, page) = self.page(body, limits::JS_NAMES_PAGE_STREAMS)?;
        let streams: Vec<String> = page.map(|s| s.name().to_owned()).collect();
        Ok(NamesBody {
            paged,
            streams: (!streams.is_empty()).then_some(streams),
        })
    }

    fn list(&self, body: &[u8]) -> Result<ListBody, ApiError> {
        let (paged, page) = self.page(body, limits::JS_LIST_PAGE_STREAMS)?;
        Ok(ListBody {
            paged,
            streams: page.map(Stream::info).collect(),
        })
    }

    /// One page of the streams matching a `NAMES`/`LIST` request, in name order.
    fn page(
        &self,
        body: &[u8],
        limit: usize,
    ) -> Result<(Paged, impl Iterator<Item = &Stream>), ApiError> {
        let req: api::ListRequest = api::parse_optional(body)?;
        let filter = req.subject;
        let matching: Vec<&Stream> = self
            .streams
            .values()
            .filter(|s| {
                filter.is_empty()
                    || s.config()
                        .subjects
                        .iter()
                        .any(|subject| stream::subjects_collide(&filter, subject))
            })
            .collect();
        let total = matching.len();
        let offset = req.offset.min(total);
        let paged = Paged {
            total,
            offset,
            limit,
        };
        Ok((paged, matching.into_iter().skip(offset).take(limit)))
    }

    fn msg_get(&self, name: &str, body: &[u8]) -> Result<Option<MsgBody>, ApiError> {
        if api::is_empty_request(body) {
            return Err(api::BAD_REQUEST);
        }
        let req: api::MsgGetRequest = api::parse_request(body)?;
        let (by_last, by_next) = (!req.last_by_subj.is_empty(), !req.next_by_subj.is_empty());
        if req.seq > 0 && by_last || req.seq == 0 && !by_last && !by_next || by_last && by_next {
            return Err(api::BAD_REQUEST);
        }
        let stream = self.streams.get(name).ok_or(api::STREAM_NOT_FOUND)?;
        let msg = if by_next {
            stream.next_by_subject(&req.next_by_subj, req.seq)
        } else if by_last {
            stream.last_by_subject(&req.last_by_subj)
        } else {
            stream.msg(req.seq)
        };
        let msg = msg.ok_or(api::NO_MESSAGE_FOUND)?;
        Ok(Some(MsgBody {
            message: api::StoredMsgJson {
                subject: msg.subject.to_string(),
                seq: msg.seq,
                hdrs: (!msg.headers.is_empty()).then(|| api::base64(&msg.headers)),
                data: (!msg.payload.is_empty()).then(|| api::base64(&msg.payload)),
                time: api::GoTime(Some(msg.time)),
            },
        }))
    }

    fn msg_delete(
        &mut self,
        name: &str,
        body: &[u8],
        out: &mut Vec<Record>,
    ) -> Result<Success, ApiError> {
        if api::is_empty_request(body) {
            return Err(api::BAD_REQUEST);
        }
        let req: api::MsgDeleteRequest = api::parse_request(body)?;
        let mut stream = self.stream_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        let result = stream.delete(req.seq, &mut changes);
        drop(stream);
        push_changes(out, name, &mut changes);
        result.map(|()| Success { success: true })
    }

    /// Whether `subjects` collide with another stream's (`except` is the stream updated).
    fn overlaps(&self, subjects: &[String], except: Option<&str>) -> bool {
        self.streams
            .values()
            .filter(|s| Some(s.name()) != except)
            .any(|s| {
                s.config().subjects.iter().any(|theirs| {
                    subjects
                        .iter()
                        .any(|ours| stream::subjects_collide(ours, theirs))
                })
            })
    }
}

/// The PubAck nats-server sends for a publish to a stream, byte for byte:
/// `{"stream":"S", "seq":1}`, `{"stream":"S", "seq":1,"duplicate": true}`, or
/// `{"error":{…},"stream":"S","seq":0}`.
pub fn pub_ack(stream: &str, result: Result<Published, ApiError>) -> Vec<u8> {
    match result {
        Ok(p) => {
            let mut out = Vec::with_capacity(stream.len() + 48);
            out.extend_from_slice(b"{\"stream\":");
            // A plain name needs no escaping; serde handles the rest as Go does.
            if stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                out.push(b'"');
                out.extend_from_slice(stream.as_bytes());
                out.push(b'"');
            } else {
                out.extend_from_slice(&api::to_go_json(&stream));
            }
            // Writing into a Vec cannot fail.
            let _ = write!(out, ", \"seq\":{}", p.seq);
            if p.duplicate {
                out.extend_from_slice(b",\"duplicate\": true");
            }
            out.push(b'}');
            out
        }
        Err(error) => {
            #[derive(Serialize)]
            struct Failed<'a> {
                error: ApiError,
                stream: &'a str,
                seq: u64,
            }
            api::to_go_json(&Failed {
                error,
                stream,
                seq: 0,
            })
        }
    }
}

fn push_changes(out: &mut Vec<Record>, name: &str, changes: &mut Vec<Change>) {
    out.extend(changes.drain(..).map(|change| Record::Stream {
        name: name.to_owned(),
        change,
    }));
}

/// A value per storage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PerStorage<T> {
    memory: T,
    file: T,
}

impl<T> PerStorage<T> {
    fn of(&self, storage: Storage) -> &T {
        match storage {
            Storage::Memory => &self.memory,
            Storage::File => &self.file,
        }
    }

    fn of_mut(&mut self, storage: Storage) -> &mut T {
        match storage {
            Storage::Memory => &mut self.memory,
            Storage::File => &mut self.file,
        }
    }
}

/// A direct get's status answer: the header block alone, no payload.
fn status(line: &[u8]) -> Answer {
    Answer::Msg {
        headers: line.to_vec(),
        payload: Vec::new(),
    }
}

/// `{"type":…,"error":…, …body}`: nats-server's `ApiResponse` with its embedded body.
#[derive(Serialize)]
struct Response<T> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ApiError>,
    #[serde(flatten)]
    body: T,
}

fn respond<T: Serialize>(kind: &'static str, error: Option<ApiError>, body: T) -> Vec<u8> {
    api::to_go_json(&Response { kind, error, body })
}

/// The answer to a request, and whether it succeeded; an error carries the body's empty
/// form, as nats-server's response structs keep their non-omitted fields.
fn reply<T: Serialize>(
    kind: &'static str,
    result: Result<T, ApiError>,
    empty: T,
) -> (Vec<u8>, Tally) {
    match result {
        Ok(body) => (respond(kind, None, body), Tally::Success),
        Err(error) => (respond(kind, Some(error), empty), Tally::Error),
    }
}

/// How a request counts in `$JS.API.INFO`'s `api` (see [`api::AccountInfo::api`]).
enum Tally {
    Success,
    Error,
    Uncounted,
}

#[derive(Serialize, Default)]
struct CreateBody {
    #[serde(flatten)]
    info: Option<StreamInfo>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    did_create: bool,
}

#[derive(Serialize, Default)]
struct InfoBody {
    #[serde(flatten)]
    paged: Paged,
    #[serde(flatten)]
    info: Option<StreamInfo>,
}

#[derive(Serialize, Default)]
struct Success {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    success: bool,
}

#[derive(Serialize, Default)]
struct PurgeBody {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    success: bool,
    purged: u64,
}

#[derive(Serialize, Default)]
struct NamesBody {
    #[serde(flatten)]
    paged: Paged,
    streams: Option<Vec<String>>,
}

#[derive(Serialize, Default)]
struct ListBody {
    #[serde(flatten)]
    paged: Paged,
    streams: Vec<StreamInfo>,
}

#[derive(Serialize)]
struct ConsumersBody {
    #[serde(flatten)]
    paged: Paged,
    consumers: Vec<()>,
}

#[derive(Serialize)]
struct MsgBody {
    message: api::StoredMsgJson,
}

const DIRECT_GET_PREFIX: &str = "$JS.API.DIRECT.GET.";
const DIRECT_NOT_FOUND: &[u8] = b"NATS/1.0 404 Message Not Found\r\n\r\n";
const DIRECT_EMPTY_REQUEST: &[u8] = b"NATS/1.0 408 Empty Request\r\n\r\n";
const DIRECT_MALFORMED_REQUEST: &[u8] = b"NATS/1.0 408 Malformed Request\r\n\r\n";
const DIRECT_BAD_REQUEST: &[u8] = b"NATS/1.0 408 Bad Request\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_796_190_352_000_000_000;

    fn small() -> Streams {
        Streams::with_limits(JsLimits {
            max_memory: 1000,
            max_storage: 1000,
            max_streams: 2,
        })
    }

    fn request(s: &mut Streams, subject: &str, body: &str) -> String {
        let answer = s.handle(subject, body.as_bytes(), T0, &mut Vec::new());
        String::from_utf8(answer.unwrap_or_default()).unwrap_or_default()
    }

    fn err_code(json: &str) -> Option<u64> {
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        v["error"]["err_code"].as_u64()
    }

    fn publish(s: &mut Streams, name: &str, subject: &str, payload: &[u8]) -> serde_json::Value {
        let ack = s.publish(name, subject, b"", payload, T0, &mut Vec::new());
        serde_json::from_slice(&ack.unwrap_or_default()).unwrap_or_default()
    }

    #[test]
    fn max_streams_is_checked_before_anything_else() {
        let mut s = small();
        let create = "$JS.API.STREAM.CREATE.";
        for name in ["A", "B"] {
            let body = format!(r#"{{"name":"{name}","storage":"memory"}}"#);
            assert_eq!(
                err_code(&request(&mut s, &format!("{create}{name}"), &body)),
                None
            );
        }
        // Even a create repeating an existing config, or an invalid one.
        for (name, body) in [
            ("A", r#"{"name":"A","storage":"memory"}"#),
            ("C", r#"{"name":"C","max_age":1}"#),
        ] {
            let answer = request(&mut s, &format!("{create}{name}"), body);
            assert_eq!(err_code(&answer), Some(10027), "{body}");
        }
        request(&mut s, "$JS.API.STREAM.DELETE.B", "");
        assert_eq!(
            err_code(&request(
                &mut s,
                "$JS.API.STREAM.CREATE.C",
                r#"{"name":"C"}"#
            )),
            None
        );
    }

    #[test]
    fn max_bytes_must_fit_in_what_is_left() {
        let mut s = small();
        // (request, stream, storage, max_bytes, error)
        let cases = [
            ("CREATE", "M", "memory", 1001, Some(10028)),
            ("CREATE", "F", "file", 1001, Some(10047)),
            ("CREATE", "M", "memory", 600, None),
            // The server's counter already holds M's 600.
            ("CREATE", "M", "memory", 600, Some(10028)),
            ("CREATE", "N", "memory", 401, Some(10028)),
            ("CREATE", "N", "memory", 400, None),
            ("UPDATE", "N", "memory", 401, Some(10028)),
            ("UPDATE", "N", "memory", 10, None),
        ];
        for (api, name, storage, max_bytes, want) in cases {
            let body =
                format!(r#"{{"name":"{name}","storage":"{storage}","max_bytes":{max_bytes}}}"#);
            let answer = request(&mut s, &format!("$JS.API.STREAM.{api}.{name}"), &body);
            assert_eq!(err_code(&answer), want, "{api} {body}: {answer}");
        }
        assert_eq!(
            s.reserved,
            PerStorage {
                memory: 610,
                file: 0
            }
        );
        // Replaying the records rebuilds the counters.
        let mut log = Vec::new();
        let mut live = small();
        for body in [
            r#"{"name":"M","storage":"memory","max_bytes":600}"#,
            r#"{"name":"N","storage":"memory"}"#,
        ] {
            let name = if body.contains("\"M\"") { "M" } else { "N" };
            live.handle(
                &format!("$JS.API.STREAM.CREATE.{name}"),
                body.as_bytes(),
                T0,
                &mut log,
            );
        }
        live.handle(
            "$JS.API.STREAM.UPDATE.N",
            br#"{"name":"N","storage":"memory","max_bytes":5}"#,
            T0,
            &mut log,
        );
        live.handle("$JS.API.STREAM.DELETE.M", b"", T0, &mut log);
        let mut replayed = small();
        for record in &log {
            replayed.apply(record);
        }
        assert_eq!(replayed.reserved, live.reserved);
        // nats-server's arithmetic: -1 → 5 reserves 6.
        assert_eq!(live.reserved.memory, 6);
    }

    #[test]
    fn a_publish_past_the_total_is_taken_back() {
        let mut s = small();
        let mut log = Vec::new();
        for name in ["M", "O"] {
            let body = format!(r#"{{"name":"{name}","storage":"memory"}}"#);
            s.handle(
                &format!("$JS.API.STREAM.CREATE.{name}"),
                body.as_bytes(),
                T0,
                &mut log,
            );
        }
        // 400 + 1 + 16 bytes each: two fit in 1000, a third does not.
        let big = [b'x'; 400];
        for (name, want) in [("M", 1), ("O", 1)] {
            let ack = s.publish(name, name, b"", &big, T0, &mut log);
            assert_eq!(
                ack,
                Some(format!(r#"{{"stream":"{name}", "seq":{want}}}"#).into_bytes())
            );
        }
        let refused = publish(&mut s, "M", "M", &big);
        assert_eq!(refused["error"]["err_code"], 10002);
        assert_eq!(refused["error"]["code"], 400);
        assert_eq!(s.used(Storage::Memory), 834);
        // The sequence stays used.
        assert_eq!(publish(&mut s, "M", "M", b"x")["seq"], 3);
        let state = s.stream("M").map(Stream::state).unwrap_or_default();
        assert_eq!(
            (state.messages, state.last_seq, state.num_deleted),
            (2, 3, 1)
        );
        // Limits lowered (a restart with a smaller bound): already past it, nothing stored.
        let mut lower = Streams::with_limits(JsLimits {
            max_memory: 100,
            ..small().limits()
        });
        for record in &log {
            lower.apply(record);
        }
        let refused = publish(&mut lower, "M", "M", b"x");
        assert_eq!(refused["error"]["err_code"], 10023);
        assert_eq!(refused["error"]["code"], 503);
        assert_eq!(lower.stream("M").map(|m| m.state().last_seq), Some(1));
    }

    #[test]
    fn totals_follow_every_change() {
        let mut s = Streams::new();
        let mut log = Vec::new();
        s.handle(
            "$JS.API.STREAM.CREATE.F",
            br#"{"name":"F","subjects":["f.*"]}"#,
            T0,
            &mut log,
        );
        for subject in ["f.a", "f.b", "f.a"] {
            s.publish("F", subject, b"", b"123", T0, &mut log);
        }
        assert_eq!(s.used(Storage::File), 3 * (22 + 3 + 3 + 8));
        s.handle("$JS.API.STREAM.MSG.DELETE.F", br#"{"seq":1}"#, T0, &mut log);
        s.handle(
            "$JS.API.STREAM.PURGE.F",
            br#"{"filter":"f.b"}"#,
            T0,
            &mut log,
        );
        assert_eq!(s.used(Storage::File), 36);
        if let Some(mut f) = s.stream_mut("F") {
            f.remove(3, &mut Vec::new());
        }
        assert_eq!(s.used(Storage::File), 0);
        s.publish("F", "f.c", b"", b"1", T0, &mut log);
        s.handle("$JS.API.STREAM.DELETE.F", b"", T0, &mut log);
        assert_eq!(s.used(Storage::File), 0);
    }

    #[test]
    fn direct_get_answers() {
        let mut s = Streams::new();
        let mut out = Vec::new();
        s.handle(
            "$JS.API.STREAM.CREATE.D",
            br#"{"name":"D","subjects":["d.>"],"allow_direct":true}"#,
            T0,
            &mut out,
        );
        s.handle(
            "$JS.API.STREAM.CREATE.N",
            br#"{"name":"N","subjects":["n"]}"#,
            T0,
            &mut out,
        );
        s.publish("D", "d.a", b"NATS/1.0\r\nk: v\r\n\r\n", b"1", T0, &mut out);
        s.publish("D", "d.b", b"", b"2", T0 + 5, &mut out);
        s.publish("N", "n", b"", b"3", T0, &mut out);
        let mut get = |subject: &str, body: &str| {
            s.handle_request(subject, body.as_bytes(), T0, &mut Vec::new())
        };
        let msg = |headers: &str, payload: &[u8]| {
            Some(Answer::Msg {
                headers: headers.as_bytes().to_vec(),
                payload: payload.to_vec(),
            })
        };
        assert_eq!(
            get("$JS.API.DIRECT.GET.D", r#"{"seq":1}"#),
            msg(
                "NATS/1.0\r\nk: v\r\nNats-Stream: D\r\nNats-Subject: d.a\r\nNats-Sequence: 1\r\nNats-Time-Stamp: 2026-12-02T05:45:52Z\r\n\r\n",
                b"1"
            )
        );
        let second = msg(
            "NATS/1.0\r\nNats-Stream: D\r\nNats-Subject: d.b\r\nNats-Sequence: 2\r\nNats-Time-Stamp: 2026-12-02T05:45:52.000000005Z\r\n\r\n",
            b"2",
        );
        assert_eq!(get("$JS.API.DIRECT.GET.D.d.b", ""), second);
        assert_eq!(get("$JS.API.DIRECT.GET.D.d.*", ""), second);
        assert_eq!(
            get("$JS.API.DIRECT.GET.D", r#"{"last_by_subj":"d.>"}"#),
            second
        );
        assert_eq!(
            get("$JS.API.DIRECT.GET.D", r#"{"next_by_subj":"d.*","seq":2}"#),
            second
        );
        let status = |line: &str| msg(&format!("NATS/1.0 {line}\r\n\r\n"), b"");
        let cases = [
            (
                "$JS.API.DIRECT.GET.D",
                r#"{"seq":3}"#,
                "404 Message Not Found",
            ),
            ("$JS.API.DIRECT.GET.D.d.x", "", "404 Message Not Found"),
            ("$JS.API.DIRECT.GET.D", "", "408 Empty Request"),
            ("$JS.API.DIRECT.GET.D", "{}", "408 Empty Request"),
            ("$JS.API.DIRECT.GET.D", "null", "408 Empty Request"),
            ("$JS.API.DIRECT.GET.D", "{bad", "408 Malformed Request"),
            ("$JS.API.DIRECT.GET.D", "[1]", "408 Malformed Request"),
            (
                "$JS.API.DIRECT.GET.D",
                r#"{"seq":1,"last_by_subj":"d.a"}"#,
                "408 Bad Request",
            ),
            (
                "$JS.API.DIRECT.GET.D",
                r#"{"last_by_subj":"d.a","next_by_subj":"d.a"}"#,
                "408 Bad Request",
            ),
            ("$JS.API.DIRECT.GET.D.d.a", "x", "408 Bad Request"),
        ];
        for (subject, body, line) in cases {
            assert_eq!(get(subject, body), status(line), "{subject} {body}");
        }
        for subject in [
            "$JS.API.DIRECT.GET.N",
            "$JS.API.DIRECT.GET.N.n",
            "$JS.API.DIRECT.GET.X",
            "$JS.API.DIRECT.GET",
            "$JS.API.DIRECT.GET.D.",
        ] {
            assert_eq!(get(subject, r#"{"seq":1}"#), None, "{subject}");
        }
        // JSON answers come through unchanged, and direct gets are not counted.
        let Some(Answer::Json(info)) = get("$JS.API.INFO", "") else {
            panic!("no account info");
        };
        let info: serde_json::Value = serde_json::from_slice(&info).unwrap_or_default();
        assert_eq!(info["api"]["total"], 2);
    }
}
