//! JetStream's stream API and stream state, byte-compatible with nats-server 2.9 (issue 11).
//!
//! This is the I/O-free core the worker calls: one [`Streams`] per account, owned by one
//! worker. A request on `$JS.API.…` goes to [`Streams::handle`], which answers with the
//! exact JSON nats-server sends; a publish to a subject a stream captures
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
//!
//! # Deviation
//! nats-server 2.9.10 accepts an *update* to `num_replicas` > 1 on a non-clustered server
//! and echoes it; this refuses it with the create's error (10074), so a stream never claims
//! copies that do not exist.

pub mod api;
pub mod headers;
pub mod record;
mod source;
pub mod stream;

#[cfg(test)]
mod fixtures;

use std::collections::BTreeMap;

use serde::Serialize;

use self::api::{ApiError, Paged, StreamInfo};
use self::stream::{Change, Published, Stream};
use crate::limits;

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
}

impl Streams {
    /// No streams.
    pub fn new() -> Streams {
        Streams::default()
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&Stream> {
        self.streams.get(name)
    }

    /// The stream named `name`, to change (the consumer layer's seam: consumer counts,
    /// removing acknowledged messages).
    pub fn stream_mut(&mut self, name: &str) -> Option<&mut Stream> {
        self.streams.get_mut(name)
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
        let stream = self.streams.get_mut(name)?;
        let mut changes = Vec::new();
        let result = stream.publish(subject, headers, payload, now, &mut changes);
        push_changes(out, name, changes);
        if stream.config().no_ack {
            return None;
        }
        Some(pub_ack(name, result))
    }

    /// Expires old messages in every stream; returns the earliest next deadline.
    pub fn expire(&mut self, now: i64, out: &mut Vec<Record>) -> Option<i64> {
        let mut next: Option<i64> = None;
        for (name, stream) in &mut self.streams {
            let mut changes = Vec::new();
            if let Some(at) = stream.expire(now, &mut changes) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            push_changes(out, name, changes);
        }
        next
    }

    /// Answers a `$JS.API.…` request with the JSON nats-server sends, or `None` where
    /// nats-server sends nothing.
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
                self.streams.insert(
                    config.name.clone(),
                    Stream::new((**config).clone(), *created),
                );
            }
            Record::Delete { name } => {
                self.streams.remove(name);
            }
            Record::Stream { name, change } => {
                if let Some(stream) = self.streams.get_mut(name) {
                    stream.apply(change);
                }
            }
        }
    }

    fn account_info(&self) -> Vec<u8> {
        let (mut memory, mut storage, mut consumers) = (0, 0, 0);
        for s in self.streams.values() {
            match s.config().storage {
                api::Storage::Memory => memory += s.bytes(),
                api::Storage::File => storage += s.bytes(),
            }
            consumers += s.consumer_count();
        }
        respond(
            api::types::ACCOUNT_INFO,
            None,
            api::AccountInfo {
                memory,
                storage,
                streams: self.streams.len(),
                consumers,
                limits: api::AccountLimits::UNLIMITED,
                api: self.api,
            },
        )
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
        if self.overlaps(&config.subjects, Some(name)) {
            return Err(api::SUBJECT_OVERLAP);
        }
        let stream = self.streams.get_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        stream.update(config, &mut changes);
        let info = stream.info();
        push_changes(out, name, changes);
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
        let stream = self.streams.get_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        let purged = stream.purge(&req, &mut changes)?;
        push_changes(out, name, changes);
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
        let stream = self.streams.get_mut(name).ok_or(api::STREAM_NOT_FOUND)?;
        let mut changes = Vec::new();
        let result = stream.delete(req.seq, &mut changes);
        push_changes(out, name, changes);
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
    let quoted = api::to_go_json(&stream);
    match result {
        Ok(p) => {
            let mut out = b"{\"stream\":".to_vec();
            out.extend_from_slice(&quoted);
            out.extend_from_slice(format!(", \"seq\":{}", p.seq).as_bytes());
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

fn push_changes(out: &mut Vec<Record>, name: &str, changes: Vec<Change>) {
    out.extend(changes.into_iter().map(|change| Record::Stream {
        name: name.to_owned(),
        change,
    }));
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
