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

use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::js_log::{insufficient_resources, JsLog};
use super::{fanout, Shared, Worker};
use crate::config::Config;
use crate::envelope::{ConnKey, MsgView, Origin, SubRef};
use crate::js::api::{Storage, StreamConfig};
use crate::js::{Answer as ApiAnswer, Record, Streams};
use crate::msg::SubState;
use crate::subject::Pattern;
use crate::sublist::{Change, Sublist};

/// Internal subscriber kind: the `$JS.API.>` subscription.
const KIND_API: u32 = 0;
/// Internal subscriber kind: a stream's subject (the sid is the stream's name).
const KIND_CAPTURE: u32 = 1;

/// Internal subscriber kind: the `$JS.ACK.>` subscription (consumers' acks).
const KIND_ACK: u32 = 2;
/// Internal subscriber kind: the `$JS.FC.>` subscription (push flow-control replies).
const KIND_FLOW: u32 = 3;

/// The subject every JetStream API request is published under.
const API_PATTERN: &[u8] = b"$JS.API.>";
/// The subjects of consumers' acks.
const ACK_PATTERN: &[u8] = b"$JS.ACK.>";
/// The subjects of push consumers' flow-control replies.
const FLOW_PATTERN: &[u8] = b"$JS.FC.>";

/// JetStream on its owner worker.
#[derive(Debug)]
pub(crate) struct JetStream {
    /// The owner's worker index.
    owner: u16,
    pub(super) streams: Streams,
    /// What the last operation changed (reused; written to the log once it exists).
    records: Vec<Record>,
    /// The internal subscriptions on each stream's subjects, by stream name, with the
    /// subjects they were made for.
    captures: HashMap<String, (Vec<String>, Vec<SubRef>)>,
    /// Answers to publish, in order, once the current delivery is done and what they wait
    /// for is durable.
    answers: VecDeque<Answer>,
    /// The write-ahead log, with `--data-dir`.
    pub(super) log: Option<JsLog>,
    /// The streams' consumers.
    pub(super) consumers: super::jsc::Consumers,
    /// When this server started, unix ns (seeds ephemeral consumer names).
    pub(super) started: i64,
    /// The log token the current operation's consumer records are in (0: none).
    pub(super) consumer_wait: u64,
    /// The server's shared state (the subscription index: who listens where).
    pub(super) shared: Arc<Shared>,
    /// When the next stream message expires (unix ns), if any does.
    next_expiry: Option<i64>,
    /// Failure answers by stream name or answer type ([`JetStream::failure`]); emptied
    /// whenever the streams change, so it holds at most one per stream and type.
    failures: HashMap<Box<[u8]>, Arc<[u8]>>,
    /// Emptied `Outgoing::to` buffers of sent answers, for the next answers (at most
    /// [`SPARE_SUBJECTS`], each of at most [`SPARE_SUBJECT_BYTES`]): a steady PubAck load
    /// allocates no subject per publish.
    spare_subjects: Vec<Vec<u8>>,
}

/// Sent answers' subject buffers kept for reuse: a window of PubAcks in flight.
const SPARE_SUBJECTS: usize = 4096;
/// A subject buffer larger than this is not kept.
const SPARE_SUBJECT_BYTES: usize = 256;

/// A message the owner publishes: an API answer, a PubAck, a consumer's delivery or status.
#[derive(Debug)]
pub(super) struct Outgoing {
    /// The subject it is routed by (the reply subject of the request it answers).
    pub to: Vec<u8>,
    /// The subject its MSG line shows, when not `to` (a delivery shows its stored subject).
    pub subject: Option<Box<[u8]>>,
    /// Its reply subject (a delivery's ack subject).
    pub reply: Option<Box<[u8]>>,
    /// Its header block, if any.
    pub headers: Option<Vec<u8>>,
    /// Its payload.
    pub body: Vec<u8>,
}

/// One message waiting to be published.
#[derive(Debug)]
struct Answer {
    out: Outgoing,
    /// The log batch it waits for (0: none).
    wait: u64,
    /// What to send instead if that batch fails (`None`: nothing).
    failed: Option<Arc<[u8]>>,
}

impl JetStream {
    /// JetStream for an owner on worker `owner`: its streams (recovered from the log in
    /// `--data-dir`), and the internal subscriptions in `shared`'s index. Called before the
    /// workers start, so no request can arrive before recovery is done and the
    /// subscriptions exist.
    pub(crate) fn start(shared: &Arc<Shared>, owner: usize) -> io::Result<JetStream> {
        let config: &Config = &shared.config;
        let mut streams = Streams::with_limits(crate::js::JsLimits {
            max_memory: config.js_max_memory,
            max_storage: config.js_max_storage,
            ..crate::js::JsLimits::default()
        });
        let log = match &config.data_dir {
            Some(dir) => Some(JsLog::open(
                &dir.join("jetstream"),
                config.fsync,
                Arc::clone(shared),
                owner,
                &mut streams,
            )?),
            None => None,
        };
        let sublist = &shared.sublist;
        let mut js = JetStream {
            owner: owner as u16,
            streams,
            records: Vec::new(),
            captures: HashMap::new(),
            answers: VecDeque::new(),
            log,
            consumers: Default::default(),
            started: unix_nanos(),
            consumer_wait: 0,
            shared: Arc::clone(shared),
            next_expiry: None,
            failures: HashMap::new(),
            spare_subjects: Vec::new(),
        };
        if let Some(recovered) = js.log.as_mut().map(JsLog::take_recovered) {
            js.restore_consumers(recovered);
        }
        for (kind, pattern) in [
            (KIND_API, API_PATTERN),
            (KIND_ACK, ACK_PATTERN),
            (KIND_FLOW, FLOW_PATTERN),
        ] {
            // Constant patterns: valid by construction.
            if let Ok(pattern) = Pattern::parse(pattern) {
                let sub = js.internal_sub(kind, pattern.as_bytes(), &pattern);
                sublist.insert(&pattern, None, sub);
            }
        }
        js.sync_captures(sublist);
        js.next_expiry = js.next_expiry();
        Ok(js)
    }

    /// Makes the internal subscriptions match the streams' subjects: new streams get theirs,
    /// deleted ones lose them, updated ones are replaced.
    fn sync_captures(&mut self, sublist: &Sublist<SubRef>) {
        self.failures.clear();
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

    /// Queues `body` for the reply subject `to` (nothing without one), waiting for log batch
    /// `wait` (0: none), with `failed` to send instead if that batch fails.
    fn queue(&mut self, to: Option<&[u8]>, body: Vec<u8>, wait: u64, failed: Option<Arc<[u8]>>) {
        if let Some(to) = to {
            let mut buf = self.spare_subjects.pop().unwrap_or_default();
            buf.extend_from_slice(to);
            let out = Outgoing {
                to: buf,
                subject: None,
                reply: None,
                headers: None,
                body,
            };
            let failed = failed.filter(|_| wait != 0);
            self.answers.push_back(Answer { out, wait, failed });
        }
    }

    /// What an operation gets if the log refuses its records ([`failure_answer`]), made
    /// once per stream (a publish) or answer type (a request) and shared by every answer
    /// that may need it, so a publish builds no second answer it almost never sends.
    fn failure(&mut self, kind: u32, sid: &[u8], subject: &[u8]) -> Arc<[u8]> {
        let key: &[u8] = match kind {
            KIND_CAPTURE => sid,
            _ => failure_type(subject).as_bytes(),
        };
        if let Some(failure) = self.failures.get(key) {
            return Arc::clone(failure);
        }
        let failure: Arc<[u8]> = failure_answer(kind, sid, subject).into();
        self.failures.insert(key.into(), Arc::clone(&failure));
        failure
    }

    /// Queues a consumer's message behind everything the log holds so far: it goes once the
    /// record of what it carries is durable (and not at all if that write fails).
    pub(super) fn send(&mut self, out: Outgoing) {
        let wait = self.log.as_ref().map_or(0, JsLog::latest_token);
        self.send_after(out, wait);
    }

    /// Queues a message that goes once log batch `wait` is durable (0: at once, behind
    /// the answers before it), and not at all if that batch fails.
    fn send_after(&mut self, out: Outgoing, wait: u64) {
        self.answers.push_back(Answer {
            out,
            wait,
            failed: None,
        });
    }

    /// A consumer is done with `seq` of `stream` (interest and work-queue retention). An
    /// interest stream lets the message go only once every consumer is done with it.
    pub(super) fn remove_message(&mut self, stream: &str, seq: u64) {
        if !self.all_consumers_done(stream, seq) {
            return;
        }
        let Some(mut s) = self.streams.stream_mut(stream) else {
            return;
        };
        let mut changes = Vec::new();
        if s.remove(seq, &mut changes) {
            let records: Vec<Record> = changes
                .into_iter()
                .map(|change| Record::Stream {
                    name: stream.to_owned(),
                    change,
                })
                .collect();
            if let Some(log) = &mut self.log {
                log.log(&records);
            }
        }
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
        let mut stored = None;
        let answer = match sub.0.conn.gen {
            KIND_API if view.subject.starts_with(b"$JS.API.CONSUMER.") => {
                js.handle_consumer_api(view.subject, view.reply, view.payload, now)
            }
            KIND_API => {
                let Ok(subject) = std::str::from_utf8(view.subject) else {
                    return true;
                };
                let refusal = match js.log {
                    Some(_) => None,
                    None => refuse_file_storage(subject, view.payload),
                };
                let answer = match refusal {
                    Some(refusal) => Some(refusal),
                    None => {
                        match js
                            .streams
                            .handle_request(subject, view.payload, now, &mut js.records)
                        {
                            Some(ApiAnswer::Json(body)) => Some(body),
                            Some(ApiAnswer::Msg { headers, payload }) => {
                                // A direct get: the stored message itself, as HMSG.
                                if let Some(to) = view.reply {
                                    js.send(Outgoing {
                                        to: to.into(),
                                        subject: None,
                                        reply: None,
                                        headers: Some(headers),
                                        body: payload,
                                    });
                                }
                                None
                            }
                            None => None,
                        }
                    }
                };
                if !js.records.is_empty() {
                    js.sync_captures(&self.shared.sublist);
                    js.next_expiry = js.next_expiry();
                    let deleted: Vec<String> = js
                        .records
                        .iter()
                        .filter_map(|r| match r {
                            Record::Delete { name } => Some(name.clone()),
                            _ => None,
                        })
                        .collect();
                    for name in deleted {
                        js.drop_consumers(&name);
                    }
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
                if js.log.as_ref().is_some_and(|log| log.refuses(name)) {
                    let refused = crate::js::pub_ack(name, Err(insufficient_resources()));
                    js.queue(view.reply, refused, 0, None);
                    return true;
                }
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
                stored = Some(name);
                ack
            }
            KIND_ACK => {
                js.handle_ack(view.subject, view.reply, view.payload, now);
                None
            }
            KIND_FLOW => {
                js.handle_flow_control(view.subject, now);
                None
            }
            _ => None,
        };
        let wait = match &mut js.log {
            Some(log) if !js.records.is_empty() => log.log(&js.records).unwrap_or(0),
            _ => 0,
        };
        let wait = wait.max(std::mem::take(&mut js.consumer_wait));
        if let Some(copy) = js.streams.take_republished() {
            // Before the PubAck, once what it copies is durable, as a delivery would be.
            let out = Outgoing {
                to: copy.subject.into_bytes(),
                subject: None,
                reply: None,
                headers: Some(copy.headers),
                body: copy.payload,
            };
            js.send_after(out, wait);
        }
        if let Some(body) = answer {
            let failed = (wait != 0).then(|| js.failure(sub.0.conn.gen, &sub.0.sid, view.subject));
            js.queue(view.reply, body, wait, failed);
        }
        if let Some(name) = stored {
            if !js.records.is_empty() {
                js.consumers_stored(name, now);
            }
        }
        true
    }

    /// Whether a publish on `subject` that reached workers `sent` was a JetStream API
    /// request sent to the JetStream owner on another worker.
    pub(super) fn js_request_sent(&self, subject: &[u8], sent: u64) -> bool {
        let crate::router::Route::Worker(owner) = self.router.jetstream();
        self.shared.config.jetstream && sent & (1 << owner) != 0 && subject.starts_with(b"$JS.API.")
    }

    /// Submits this iteration's log batch, takes the log's reports, and publishes, in
    /// order, the answers whose operations are durable (or failed).
    pub(super) fn flush_js_answers(&mut self) {
        let Some(js) = self.js.as_mut() else {
            return;
        };
        if let Some(log) = &mut js.log {
            if log.wants_checkpoint() {
                let consumers = js.consumers.durable();
                log.checkpoint(&js.streams, &consumers);
            }
            log.submit();
            log.poll();
            if log.reload(&mut js.streams) {
                let recovered = log.take_recovered();
                js.restore_consumers(recovered);
                js.sync_captures(&self.shared.sublist);
                js.next_expiry = js.next_expiry();
            }
        }
        if js.answers.is_empty() {
            return;
        }
        let origin = Origin {
            conn: ConnKey::internal(self.id as u16, KIND_API),
            no_responders: false,
            echo: true,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        while let Some(out) = self.next_js_answer() {
            let view = MsgView {
                subject: out.subject.as_deref().unwrap_or(&out.to),
                reply: out.reply.as_deref(),
                headers: out.headers.as_deref(),
                payload: &out.body,
                origin,
            };
            // Routed by `to`, shown with the stored subject (a consumer's delivery).
            scratch.clear();
            self.shared.sublist.matches(&out.to, &mut scratch);
            let mut owned = None;
            fanout::fan_out(self, &scratch, &view, &mut owned, false);
            let mut to = out.to;
            if let Some(js) = self.js.as_mut() {
                if js.spare_subjects.len() < SPARE_SUBJECTS && to.capacity() <= SPARE_SUBJECT_BYTES
                {
                    to.clear();
                    js.spare_subjects.push(to);
                }
            }
        }
        scratch.clear();
        self.scratch = scratch;
    }

    /// The first outgoing message, if it may go now (with its failure body if its batch
    /// failed; a message with none is dropped then).
    fn next_js_answer(&mut self) -> Option<Outgoing> {
        let js = self.js.as_mut()?;
        loop {
            let front = js.answers.front()?;
            if front.wait != 0 {
                let ok = js.log.as_mut()?.outcome(front.wait)?;
                if !ok {
                    let answer = js.answers.pop_front()?;
                    match answer.failed {
                        Some(body) => {
                            return Some(Outgoing {
                                body: body.to_vec(),
                                ..answer.out
                            })
                        }
                        None => continue,
                    }
                }
            }
            return js.answers.pop_front().map(|a| a.out);
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
        if let Some(log) = &mut js.log {
            log.log(&js.records);
        }
    }

    /// The instant the earliest consumer timer is due, if any (the loop parks no longer).
    pub(super) fn js_deadline(&self) -> Option<std::time::Instant> {
        let at = self.js.as_ref()?.consumer_deadline()?;
        let wait = u64::try_from(at.saturating_sub(unix_nanos())).unwrap_or(0);
        Some(std::time::Instant::now() + std::time::Duration::from_nanos(wait))
    }

    /// Runs the consumer timers that are due (a NAK's delay, a pull's expiry, a
    /// redelivery): precisely when they are due, not on the next tick.
    pub(super) fn run_js_timers(&mut self) -> bool {
        let due = self
            .js
            .as_ref()
            .and_then(|js| js.consumer_deadline())
            .is_some_and(|at| at <= unix_nanos());
        if due {
            self.tick_consumers();
        }
        due
    }

    /// Consumers' timers and push consumers' interest (called from the tick).
    pub(super) fn tick_consumers(&mut self) {
        let Some(js) = self.js.as_mut() else {
            return;
        };
        js.consumers_tick(unix_nanos());
    }
}

/// A stream CREATE or UPDATE asking for file storage, answered as nats-server answers one
/// when it has no file storage to give (10047), for a server without `--data-dir`: a file
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

/// The answer type of a logged API request's failure, by its subject.
fn failure_type(subject: &[u8]) -> &'static str {
    use crate::js::api::types;
    let tokens: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
    match tokens.get(3..5) {
        Some([b"CREATE", _]) => types::STREAM_CREATE,
        Some([b"UPDATE", _]) => types::STREAM_UPDATE,
        Some([b"DELETE", _]) => types::STREAM_DELETE,
        Some([b"PURGE", _]) => types::STREAM_PURGE,
        _ => types::MSG_DELETE,
    }
}

/// What an operation gets when the log refused its records: a PubAck error for a
/// publish, the API's error answer (with the answer type of its subject) for a request.
fn failure_answer(kind: u32, sid: &[u8], subject: &[u8]) -> Vec<u8> {
    let error = insufficient_resources();
    if kind == KIND_CAPTURE {
        return crate::js::pub_ack(&String::from_utf8_lossy(sid), Err(error));
    }
    let kind = failure_type(subject);
    format!(
        "{{\"type\":\"{kind}\",\"error\":{{\"code\":{},\"err_code\":{},\"description\":\"{}\"}}}}",
        error.code, error.err_code, error.description
    )
    .into_bytes()
}

/// The wall clock in unix nanoseconds (stream timestamps are wall-clock times, as
/// nats-server's).
fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
