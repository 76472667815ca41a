//! The worker's side of JetStream: the JetStream owner ([`Router::jetstream`]) holds the
//! account's [`Streams`] and two kinds of *internal subscriptions* in the subscription index,
//! so JetStream traffic travels the same fan-out, rings and order as any message:
//!
//! - one on `$JS.API.>`: a request from any connection is matched on its publisher's worker
//!   and reaches the owner behind everything that connection published before it;
//! - one per subject of each stream: a publish a stream captures reaches the owner the same
//!   way, in publish order, while plain subscribers of that subject get it as usual.
//!
//! An internal subscriber's [`ConnKey`] has the slot [`ConnKey::INTERNAL_SLOT`] and its kind in
//! `gen`; `Worker::deliver` hands such a delivery to [`Worker::deliver_internal`] instead of a
//! connection. Answers (API replies, PubAcks) are published on the request's reply subject
//! like any message, by the owner, once the current delivery is done (so an answer never
//! re-enters the fan-out that produced it) and before the owner takes its next envelope: a
//! client's `PING` after a request gets its `PONG` after the answer, as with chat requests.
//!
//! [`Router::jetstream`]: crate::router::Router::jetstream

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{fanout, Worker};
use crate::envelope::{ConnKey, MsgView, Origin, SubRef};
use crate::js::api::{Storage, StreamConfig};
use crate::js::{Record, Streams};
use crate::msg::SubState;
use crate::subject::Pattern;
use crate::sublist::{Change, Sublist};

/// Internal subscriber kind: the `$JS.API.>` subscription.
const KIND_API: u32 = 0;
/// Internal subscriber kind: a stream's subject (the sid is the stream's name).
const KIND_CAPTURE: u32 = 1;

/// The subject every JetStream API request is published under.
const API_PATTERN: &[u8] = b"$JS.API.>";

/// JetStream on its owner worker.
#[derive(Debug)]
pub(crate) struct JetStream {
    /// The owner's worker index.
    owner: u16,
    streams: Streams,
    /// What the last operation changed (reused; written to the log once it exists).
    records: Vec<Record>,
    /// The internal subscriptions on each stream's subjects, by stream name, with the
    /// subjects they were made for.
    captures: HashMap<String, (Vec<String>, Vec<SubRef>)>,
    /// Answers to publish once the current delivery is done: subject, body.
    answers: Vec<(Box<[u8]>, Vec<u8>)>,
    /// When the next stream message expires (unix ns), if any does.
    next_expiry: Option<i64>,
}

impl JetStream {
    /// JetStream for an owner on worker `owner`: its streams, and the API's internal
    /// subscription in `sublist`. Called before the workers start, so no request can
    /// arrive before the subscription exists.
    pub(crate) fn start(sublist: &Sublist<SubRef>, owner: usize) -> JetStream {
        let mut js = JetStream {
            owner: owner as u16,
            streams: Streams::new(),
            records: Vec::new(),
            captures: HashMap::new(),
            answers: Vec::new(),
            next_expiry: None,
        };
        // A constant pattern: valid by construction.
        if let Ok(pattern) = Pattern::parse(API_PATTERN) {
            let sub = js.internal_sub(KIND_API, b"$JS.API", &pattern);
            sublist.insert(&pattern, None, sub);
        }
        js.sync_captures(sublist);
        js
    }

    /// Makes the internal subscriptions match the streams' subjects: new streams get theirs,
    /// deleted ones lose them, updated ones are replaced.
    fn sync_captures(&mut self, sublist: &Sublist<SubRef>) {
        let mut changes = Vec::new();
        let streams = &self.streams;
        self.captures.retain(|name, (subjects, subs)| {
            let keep = streams
                .stream(name)
                .is_some_and(|s| &s.config().subjects == subjects);
            if !keep {
                for sub in subs.drain(..) {
                    changes.push(Change::Remove {
                        pattern: sub.0.pattern.clone(),
                        queue: None,
                        sub,
                    });
                }
            }
            keep
        });
        let added: Vec<(String, Vec<String>)> = streams
            .names()
            .filter(|name| !self.captures.contains_key(*name))
            .filter_map(|name| {
                let subjects = streams.stream(name)?.config().subjects.clone();
                Some((name.to_string(), subjects))
            })
            .collect();
        for (name, subjects) in added {
            let mut subs = Vec::new();
            for subject in &subjects {
                // A stream's subjects were validated when it was created.
                let Ok(pattern) = Pattern::parse(subject.as_bytes()) else {
                    continue;
                };
                let sub = self.internal_sub(KIND_CAPTURE, name.as_bytes(), &pattern);
                changes.push(Change::Insert {
                    pattern,
                    queue: None,
                    sub: sub.clone(),
                });
                subs.push(sub);
            }
            self.captures.insert(name, (subjects, subs));
        }
        sublist.apply(changes);
    }

    /// The earliest time any stream has a message to expire.
    fn next_expiry(&self) -> Option<i64> {
        self.streams
            .names()
            .filter_map(|n| self.streams.stream(n)?.next_expiry())
            .min()
    }

    fn internal_sub(&self, kind: u32, sid: &[u8], pattern: &Pattern) -> SubRef {
        let key = ConnKey::internal(self.owner, kind);
        SubRef(Arc::new(SubState::new(key, sid, pattern.clone(), None)))
    }
}

impl Worker {
    /// A delivery to an internal subscriber of this worker. Always true: the subscriber
    /// took it (an internal subscription is never a queue member to repick).
    pub(super) fn deliver_internal(&mut self, sub: &SubRef, view: &MsgView<'_>) -> bool {
        let Some(js) = self.js.as_mut() else {
            return true;
        };
        let now = unix_nanos();
        js.records.clear();
        let answer = match sub.0.conn.gen {
            KIND_API => {
                let Ok(subject) = std::str::from_utf8(view.subject) else {
                    return true;
                };
                let answer = match refuse_file_storage(subject, view.payload) {
                    Some(refusal) => Some(refusal),
                    None => js
                        .streams
                        .handle(subject, view.payload, now, &mut js.records),
                };
                if !js.records.is_empty() {
                    js.sync_captures(&self.shared.sublist);
                    js.next_expiry = js.next_expiry();
                }
                answer
            }
            KIND_CAPTURE => {
                let (Ok(name), Ok(subject)) = (
                    std::str::from_utf8(&sub.0.sid),
                    std::str::from_utf8(view.subject),
                ) else {
                    return true;
                };
                let ack = js.streams.publish(
                    name,
                    subject,
                    view.headers.unwrap_or_default(),
                    view.payload,
                    now,
                    &mut js.records,
                );
                if let Some(at) = js.streams.stream(name).and_then(|s| s.next_expiry()) {
                    js.next_expiry = Some(js.next_expiry.map_or(at, |n| n.min(at)));
                }
                ack
            }
            _ => None,
        };
        if let (Some(body), Some(to)) = (answer, view.reply) {
            js.answers.push((to.into(), body));
        }
        true
    }

    /// Whether a publish on `subject` that reached workers `sent` was a JetStream API
    /// request sent to the JetStream owner on another worker.
    pub(super) fn js_request_sent(&self, subject: &[u8], sent: u64) -> bool {
        let crate::router::Route::Worker(owner) = self.router.jetstream();
        self.shared.config.jetstream && sent & (1 << owner) != 0 && subject.starts_with(b"$JS.API.")
    }

    /// Publishes the answers the last deliveries produced, in order.
    pub(super) fn flush_js_answers(&mut self) {
        if self.js.as_ref().is_none_or(|js| js.answers.is_empty()) {
            return;
        }
        let Some(js) = self.js.as_mut() else {
            return;
        };
        let answers = std::mem::take(&mut js.answers);
        let origin = Origin {
            conn: ConnKey::internal(self.id as u16, KIND_API),
            no_responders: false,
            echo: true,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        for (subject, body) in &answers {
            let view = MsgView {
                subject,
                reply: None,
                headers: None,
                payload: body,
                origin,
            };
            fanout::publish(self, &view, &mut scratch);
        }
        self.scratch = scratch;
        if let Some(js) = self.js.as_mut() {
            // Keep the vector's room for the next batch.
            let mut answers = answers;
            answers.clear();
            js.answers = answers;
        }
    }

    /// Expires stream messages past their `max_age` (called from the tick).
    pub(super) fn expire_streams(&mut self) {
        let Some(js) = self.js.as_mut() else {
            return;
        };
        let now = unix_nanos();
        if js.next_expiry.is_none_or(|at| at > now) {
            return;
        }
        js.records.clear();
        js.next_expiry = js.streams.expire(now, &mut js.records);
    }
}

/// A stream CREATE or UPDATE asking for file storage, answered as nats-server answers one
/// when it has no file storage to give (10047): this server keeps no files yet, so a file
/// stream would be a memory stream that claims to survive a restart. `None` for anything
/// else (including a body that does not parse: the API's own answer says why).
fn refuse_file_storage(subject: &str, body: &[u8]) -> Option<Vec<u8>> {
    let kind = if subject.starts_with("$JS.API.STREAM.CREATE.") {
        crate::js::api::types::STREAM_CREATE
    } else if subject.starts_with("$JS.API.STREAM.UPDATE.") {
        crate::js::api::types::STREAM_UPDATE
    } else {
        return None;
    };
    let config: StreamConfig = serde_json::from_slice(body).ok()?;
    if config.storage != Storage::File {
        return None;
    }
    Some(
        format!(
            "{{\"type\":\"{kind}\",\"error\":{{\"code\":500,\"err_code\":10047,\
             \"description\":\"insufficient storage resources available\"}}}}"
        )
        .into_bytes(),
    )
}

/// The wall clock in unix nanoseconds (stream timestamps are wall-clock times, as
/// nats-server's).
fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
