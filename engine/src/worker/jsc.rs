//! The worker's side of JetStream consumers: the consumer API (`$JS.API.CONSUMER.…`), pull
//! requests, acks (`$JS.ACK.>`) and flow-control replies (`$JS.FC.>`) reach the JetStream
//! owner through its internal subscriptions; each goes to the [`Consumer`] it names, which
//! reads its stream through [`crate::jsc::Source`] and says what to send as [`Effect`]s.
//!
//! Every outgoing message (a delivery, a status, a confirmation) joins the owner's answer
//! queue behind what is waiting for the log, so a consumer never hands out a message before
//! the write that stored it is durable.

use std::collections::BTreeMap;

use super::js::{JetStream, Outgoing};
use super::js_log::Recovered;
use crate::js::api::Retention as StreamRetention;
use crate::js::record::ConsumerRecord;
use crate::js::stream::Stream;
use crate::jsc::api::{self as capi, ApiError, ResponseType};
use crate::jsc::{Consumer, Effect, Retention, StreamCtx};
use crate::limits;
use crate::msg::SubRef;
use crate::subject::Pattern;
use crate::sublist::Sublist;

/// The consumers of every stream, by stream then consumer name.
#[derive(Debug, Default)]
pub(super) struct Consumers {
    by_stream: BTreeMap<String, BTreeMap<String, Consumer>>,
    effects: Vec<Effect>,
    next_ephemeral: u64,
    /// No consumer has a timer due before this (unix ns); it may be early, never late.
    next_timer: Option<i64>,
    /// Push consumers whose deliver subject nobody subscribes to, by (stream, name).
    unbound: std::collections::BTreeSet<(String, String)>,
    /// The index's generation when waiting pull requests were last checked for listeners.
    interest_generation: u64,
}

impl Consumers {
    /// Every durable consumer, as the log record of its whole self (for a checkpoint).
    pub(super) fn durable(&self) -> Vec<ConsumerRecord> {
        let mut records = Vec::new();
        for (name, consumers) in &self.by_stream {
            for c in consumers.values() {
                if !c.config().durable_name.is_empty() {
                    records.push(JetStream::upsert(name, c));
                }
            }
        }
        records
    }
}

impl JetStream {
    /// Puts back the durable consumers recovery found (after the streams).
    pub(super) fn restore_consumers(&mut self, recovered: Recovered) {
        self.consumers.by_stream.clear();
        for ((stream, name), (config, created, state)) in recovered {
            let Some(s) = self.streams.stream(&stream) else {
                continue;
            };
            let patterns = stream_patterns(s);
            let ctx = stream_ctx(s, &patterns);
            match Consumer::restore(&ctx, &name, config, created, state) {
                Ok(c) => {
                    self.consumers
                        .by_stream
                        .entry(stream)
                        .or_default()
                        .insert(name, c);
                }
                Err(e) => {
                    tracing::error!(%stream, %name, error = %e, "a durable consumer could not be restored")
                }
            }
        }
        let counts: Vec<(String, u64)> = self
            .consumers
            .by_stream
            .iter()
            .map(|(s, cs)| (s.clone(), cs.len() as u64))
            .collect();
        for (stream, count) in counts {
            if let Some(mut s) = self.streams.stream_mut(&stream) {
                s.set_consumer_count(count);
            }
        }
    }

    /// Logs a durable consumer's record; the answer to the operation waits for it.
    fn log_consumer(&mut self, record: ConsumerRecord) {
        if let Some(token) = self.log.as_mut().and_then(|log| log.log_consumer(&record)) {
            self.consumer_wait = token;
        }
    }

    /// The consumer as a log record of its whole self.
    fn upsert(stream: &str, c: &Consumer) -> ConsumerRecord {
        ConsumerRecord::Upsert {
            stream: stream.to_owned(),
            name: c.name().to_owned(),
            config: Box::new(c.config().clone()),
            created: c.created_ns(),
            state: Box::new(c.state().clone()),
        }
    }

    /// A `$JS.API.CONSUMER.…` request; `None` where nats-server sends nothing.
    pub(super) fn handle_consumer_api(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(subject).ok()?;
        let tokens: Vec<&str> = text.split('.').collect();
        let answer = match tokens.get(3..)? {
            ["CREATE", ..] | ["DURABLE", "CREATE", ..] => self.create_consumer(subject, body, now),
            ["INFO", stream, name] => {
                let result = self.with_consumer(stream, name, |c, s| Ok(c.info(s)));
                capi::response(ResponseType::Info, result.as_ref())
            }
            ["DELETE", stream, name] => self.delete_consumer(stream, name, now),
            ["NAMES", stream] => self.consumer_page(stream, body, false),
            ["LIST", stream] => self.consumer_page(stream, body, true),
            ["MSG", "NEXT", stream, name] => {
                let reply = reply?;
                // Nobody listens for the messages (a subscription given up before its
                // fetch arrived): nats-server skips such a request, so nothing is pulled
                // into ack-pending for nobody.
                if !has_interest(&self.shared.sublist, reply) {
                    return None;
                }
                self.drive(stream, name, now, |c, s, now, out| {
                    c.handle_next(reply, body, now, s, out)
                });
                return None;
            }
            _ => return None,
        };
        Some(answer)
    }

    /// A message on `$JS.ACK.<stream>.<consumer>.…`.
    pub(super) fn handle_ack(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        body: &[u8],
        now: i64,
    ) {
        let Some(ack) = crate::jsc::parse_ack_subject(subject) else {
            return;
        };
        let (Ok(stream), Ok(name)) = (
            std::str::from_utf8(ack.stream),
            std::str::from_utf8(ack.consumer),
        ) else {
            return;
        };
        let (stream, name) = (stream.to_owned(), name.to_owned());
        self.drive(&stream, &name, now, |c, s, now, out| {
            c.handle_ack(subject, reply, body, now, s, out)
        });
    }

    /// A message on `$JS.FC.<stream>.<consumer>.<id>` (a push consumer's flow-control reply).
    pub(super) fn handle_flow_control(&mut self, subject: &[u8], now: i64) {
        let Ok(text) = std::str::from_utf8(subject) else {
            return;
        };
        let tokens: Vec<&str> = text.split('.').collect();
        let [_, _, stream, name, ..] = tokens.as_slice() else {
            return;
        };
        let (stream, name) = ((*stream).to_owned(), (*name).to_owned());
        self.drive(&stream, &name, now, |c, s, now, out| {
            c.handle_flow_control(subject, now, s, out)
        });
    }

    /// Stream `stream` stored something: its consumers may deliver.
    pub(super) fn consumers_stored(&mut self, stream: &str, now: i64) {
        let names: Vec<String> = match self.consumers.by_stream.get(stream) {
            Some(cs) => cs.keys().cloned().collect(),
            None => return,
        };
        for name in names {
            let shared = std::sync::Arc::clone(&self.shared);
            self.drive(stream, &name, now, |c, s, now, out| {
                // A push consumer learns of its subscriber when it has something to send,
                // not a tick later (nats-server is told by its sublist at once).
                let deliver = &c.config().deliver_subject;
                if !deliver.is_empty() {
                    let bound = has_interest(&shared.sublist, deliver.as_bytes());
                    c.handle_interest(bound, now, s, out);
                }
                c.handle_stored(now, s, out)
            });
            self.note_binding(stream, &name);
        }
    }

    /// Records whether push consumer `name` of `stream` has a subscriber, and tells the
    /// workers whether any push consumer waits for one (`Shared::js_waiting_interest`).
    fn note_binding(&mut self, stream: &str, name: &str) {
        let key = (stream.to_owned(), name.to_owned());
        let deliver = self
            .consumers
            .by_stream
            .get(stream)
            .and_then(|cs| cs.get(name))
            .map(|c| c.config().deliver_subject.clone());
        match deliver {
            Some(d) if !d.is_empty() && !has_interest(&self.shared.sublist, d.as_bytes()) => {
                self.consumers.unbound.insert(key);
            }
            _ => {
                self.consumers.unbound.remove(&key);
            }
        }
        let waiting = !self.consumers.unbound.is_empty();
        // Relaxed: a hint (see `Shared::js_waiting_interest`).
        self.shared
            .js_waiting_interest
            .store(waiting, std::sync::atomic::Ordering::Relaxed);
    }

    /// When the next consumer timer (a pull's expiry, a redelivery, a heartbeat) is due.
    pub(super) fn consumer_deadline(&self) -> Option<i64> {
        self.consumers.next_timer
    }

    /// Expiries, redeliveries and heartbeats that are due, and push consumers' interest.
    pub(super) fn consumers_tick(&mut self, now: i64) {
        self.consumers.next_timer = None;
        let mut due = Vec::new();
        for (stream, cs) in &self.consumers.by_stream {
            for (name, c) in cs {
                due.push((
                    stream.clone(),
                    name.clone(),
                    c.config().deliver_subject.clone(),
                ));
            }
        }
        for (stream, name, deliver) in due {
            if !deliver.is_empty() {
                let bound = has_interest(&self.shared.sublist, deliver.as_bytes());
                self.drive(&stream, &name, now, |c, s, now, out| {
                    c.handle_interest(bound, now, s, out)
                });
                self.note_binding(&stream, &name);
            }
            let at = self
                .consumers
                .by_stream
                .get(&stream)
                .and_then(|cs| cs.get(&name))
                .and_then(Consumer::poll_timeout);
            match at {
                Some(at) if at <= now as u64 => {
                    self.drive(&stream, &name, now, |c, s, now, out| {
                        c.handle_timeout(now, s, out)
                    });
                }
                // Not due yet: keep its deadline (`drive` records the new ones it makes).
                Some(at) => {
                    let at = i64::try_from(at).unwrap_or(i64::MAX);
                    let next = self.consumers.next_timer.map_or(at, |t| t.min(at));
                    self.consumers.next_timer = Some(next);
                }
                None => {}
            }
        }
    }

    /// Whether no consumer of interest stream `stream` still needs `seq` (any other
    /// retention: true, the consumer that says so is the only one that counts). A consumer
    /// is done with a message it has gone past and does not hold pending, or whose subject
    /// its filter does not take.
    pub(super) fn all_consumers_done(&self, stream: &str, seq: u64) -> bool {
        let Some(s) = self.streams.stream(stream) else {
            return true;
        };
        if s.config().retention != StreamRetention::Interest {
            return true;
        }
        let subject = s.msg(seq).map(|m| m.subject.clone());
        let Some(cs) = self.consumers.by_stream.get(stream) else {
            return true;
        };
        cs.values().all(|c| {
            let state = c.state();
            let passed = seq < state.sseq && !state.pending.contains_key(&seq);
            let filter = &c.config().filter_subject;
            let wanted = filter.is_empty()
                || subject.as_deref().is_none_or(|subject| {
                    Pattern::parse(filter.as_bytes()).is_ok_and(|p| p.matches(subject.as_bytes()))
                });
            passed || !wanted
        })
    }

    /// After a consumer of interest stream `stream` went: what no consumer left still
    /// wants goes too (every message, once none is left), as nats-server lets go of it.
    fn release_unwanted(&mut self, stream: &str) {
        let Some(s) = self.streams.stream(stream) else {
            return;
        };
        if s.config().retention != StreamRetention::Interest {
            return;
        }
        let kept: Vec<u64> = s.kept_seqs().collect();
        for seq in kept {
            self.remove_message(stream, seq);
        }
    }

    /// Stream `stream` was deleted: its consumers go, their waiting pulls told so.
    pub(super) fn drop_consumers(&mut self, stream: &str) {
        self.consumers.unbound.retain(|(s, _)| s != stream);
        if let Some(cs) = self.consumers.by_stream.remove(stream) {
            let mut effects = std::mem::take(&mut self.consumers.effects);
            for (_, mut c) in cs {
                c.handle_delete(&mut effects);
            }
            self.carry_out(stream, None, &mut effects);
            self.consumers.effects = effects;
        }
    }

    fn create_consumer(&mut self, subject: &[u8], body: &[u8], now: i64) -> Vec<u8> {
        let result = self.try_create_consumer(subject, body, now);
        capi::response(ResponseType::Create, result.as_ref())
    }

    fn try_create_consumer(
        &mut self,
        subject: &[u8],
        body: &[u8],
        now: i64,
    ) -> Result<capi::ConsumerInfo, ApiError> {
        let Some((cs, req)) = capi::check_create(subject, body)? else {
            return Err(ApiError::new(capi::INVALID_JSON));
        };
        let stream = self
            .streams
            .stream(&cs.stream)
            .ok_or_else(|| ApiError::new(capi::STREAM_NOT_FOUND))?;
        let patterns = stream_patterns(stream);
        let ctx = stream_ctx(stream, &patterns);
        let consumers = self
            .consumers
            .by_stream
            .entry(cs.stream.clone())
            .or_default();
        let name = [&req.config.durable_name, &req.config.name]
            .into_iter()
            .find(|n| !n.is_empty())
            .cloned();
        if let Some(existing) = name.as_deref().and_then(|n| consumers.get_mut(n)) {
            existing.update(&ctx, req.config)?;
            let info = existing.info(stream);
            let record = (!existing.config().durable_name.is_empty())
                .then(|| JetStream::upsert(&cs.stream, existing));
            if let Some(record) = record {
                self.log_consumer(record);
            }
            return Ok(info);
        }
        if consumers.len() >= limits::JS_MAX_CONSUMERS_PER_STREAM {
            return Err(ApiError::with(
                capi::CONSUMER_CREATE,
                "maximum consumers limit reached",
            ));
        }
        let ephemeral = loop {
            self.consumers.next_ephemeral += 1;
            let name = ephemeral_name(self.consumers.next_ephemeral, self.started);
            if !consumers.contains_key(&name) {
                break name;
            }
        };
        let c = Consumer::create(&ctx, req.config, &ephemeral, now as u64, stream)?;
        let info = c.info(stream);
        let record =
            (!c.config().durable_name.is_empty()).then(|| JetStream::upsert(&cs.stream, &c));
        consumers.insert(c.name().to_owned(), c);
        let count = consumers.len() as u64;
        if let Some(mut s) = self.streams.stream_mut(&cs.stream) {
            s.set_consumer_count(count);
        }
        if let Some(record) = record {
            self.log_consumer(record);
        }
        // A new consumer may have messages to hand out at once (a waiting push subscriber).
        self.consumers_stored(&cs.stream, now);
        Ok(info)
    }

    fn delete_consumer(&mut self, stream: &str, name: &str, _now: i64) -> Vec<u8> {
        let Some(cs) = self.consumers.by_stream.get_mut(stream) else {
            let e = match self.streams.stream(stream) {
                Some(_) => ApiError::new(capi::CONSUMER_NOT_FOUND),
                None => ApiError::new(capi::STREAM_NOT_FOUND),
            };
            return capi::response::<capi::Deleted>(ResponseType::Delete, Err(&e));
        };
        let Some(mut c) = cs.remove(name) else {
            let e = ApiError::new(capi::CONSUMER_NOT_FOUND);
            return capi::response::<capi::Deleted>(ResponseType::Delete, Err(&e));
        };
        let count = cs.len() as u64;
        let mut effects = std::mem::take(&mut self.consumers.effects);
        c.handle_delete(&mut effects);
        self.carry_out(stream, None, &mut effects);
        if !c.config().durable_name.is_empty() {
            self.log_consumer(ConsumerRecord::Delete {
                stream: stream.to_owned(),
                name: name.to_owned(),
            });
        }
        self.consumers.effects = effects;
        if let Some(mut s) = self.streams.stream_mut(stream) {
            s.set_consumer_count(count);
        }
        self.release_unwanted(stream);
        self.note_binding(stream, name);
        capi::response(ResponseType::Delete, Ok(&capi::Deleted { success: true }))
    }

    fn consumer_page(&self, stream: &str, body: &[u8], full: bool) -> Vec<u8> {
        let kind = if full {
            ResponseType::List
        } else {
            ResponseType::Names
        };
        let Some(s) = self.streams.stream(stream) else {
            let e = ApiError::new(capi::STREAM_NOT_FOUND);
            return capi::response::<capi::NamesPage>(kind, Err(&e));
        };
        let req = match capi::parse_page_request(body) {
            Ok(r) => r,
            Err(e) => return capi::response::<capi::NamesPage>(kind, Err(&e)),
        };
        let empty = BTreeMap::new();
        let cs = self.consumers.by_stream.get(stream).unwrap_or(&empty);
        if full {
            let infos: Vec<capi::ConsumerInfo> = cs.values().map(|c| c.info(s)).collect();
            let limit = limits::JS_API_LIST_LIMIT;
            let (total, consumers) = capi::page(&infos, req.offset, limit);
            let page = capi::ListPage {
                total,
                offset: req.offset,
                limit,
                consumers,
            };
            capi::response(kind, Ok(&page))
        } else {
            let names: Vec<String> = cs.keys().cloned().collect();
            let limit = limits::JS_API_NAMES_LIMIT;
            let (total, consumers) = capi::page(&names, req.offset, limit);
            let page = capi::NamesPage {
                total,
                offset: req.offset,
                limit,
                consumers,
            };
            capi::response(kind, Ok(&page))
        }
    }

    fn with_consumer<T>(
        &self,
        stream: &str,
        name: &str,
        f: impl FnOnce(&Consumer, &Stream) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let s = self
            .streams
            .stream(stream)
            .ok_or_else(|| ApiError::new(capi::STREAM_NOT_FOUND))?;
        let c = self
            .consumers
            .by_stream
            .get(stream)
            .and_then(|cs| cs.get(name))
            .ok_or_else(|| ApiError::new(capi::CONSUMER_NOT_FOUND))?;
        f(c, s)
    }

    /// Runs one operation of consumer `name` of `stream` and carries out its effects.
    fn drive(
        &mut self,
        stream: &str,
        name: &str,
        now: i64,
        op: impl FnOnce(&mut Consumer, &Stream, u64, &mut Vec<Effect>),
    ) {
        let sublist = &self.shared.sublist;
        // Waiting pull requests lose their listener only when the index changes: look again
        // at every consumer's then, not at every operation (an ack is one).
        let generation = sublist.generation();
        if generation != self.consumers.interest_generation {
            self.consumers.interest_generation = generation;
            for c in self
                .consumers
                .by_stream
                .values_mut()
                .flat_map(|cs| cs.values_mut())
            {
                if c.has_waiting() {
                    c.drop_unwanted_requests(|reply| has_interest(sublist, reply));
                }
            }
        }
        let Some(s) = self.streams.stream(stream) else {
            return;
        };
        let Some(c) = self
            .consumers
            .by_stream
            .get_mut(stream)
            .and_then(|cs| cs.get_mut(name))
        else {
            return;
        };
        let mut effects = std::mem::take(&mut self.consumers.effects);
        op(c, s, now.max(0) as u64, &mut effects);
        if let Some(at) = c.poll_timeout() {
            let at = i64::try_from(at).unwrap_or(i64::MAX);
            self.consumers.next_timer = Some(self.consumers.next_timer.map_or(at, |t| t.min(at)));
        }
        let durable = (!c.config().durable_name.is_empty()).then_some(name);
        self.carry_out(stream, durable, &mut effects);
        self.consumers.effects = effects;
    }

    /// Turns effects into outgoing messages (queued behind the log), stream removals and,
    /// for durable consumer `durable`, log records of its state.
    fn carry_out(&mut self, stream: &str, durable: Option<&str>, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Deliver(d) => self.send(Outgoing {
                    to: d.to.as_ref().into(),
                    subject: Some(d.subject.into()),
                    reply: Some(d.ack.into()),
                    headers: (!d.headers.is_empty()).then_some(d.headers),
                    body: d.payload,
                }),
                Effect::Status { to, reply, headers } => self.send(Outgoing {
                    to: to.as_ref().into(),
                    subject: None,
                    reply: reply.map(Into::into),
                    headers: Some(headers),
                    body: Vec::new(),
                }),
                Effect::Confirm { to } => self.send(Outgoing {
                    to,
                    subject: None,
                    reply: None,
                    headers: None,
                    body: Vec::new(),
                }),
                Effect::Remove { seq } => self.remove_message(stream, seq),
                Effect::Persist(change) => {
                    if let Some(name) = durable {
                        self.log_consumer(ConsumerRecord::Change {
                            stream: stream.to_owned(),
                            name: name.to_owned(),
                            change,
                        });
                    }
                }
                // Advisories are not published yet (docs/streams.md).
                Effect::MaxDeliveries { .. } => {}
            }
        }
    }
}

/// Whether anyone subscribes to `subject` (a pull request's reply, a deliver subject).
fn has_interest(sublist: &Sublist<SubRef>, subject: &[u8]) -> bool {
    let mut sets = Vec::new();
    sublist.matches(subject, &mut sets);
    sets.iter()
        .any(|s| !s.plain.is_empty() || !s.queues.is_empty())
}

/// The stream's subjects as patterns (validated when the stream was made).
fn stream_patterns(stream: &Stream) -> Vec<Pattern> {
    stream
        .config()
        .subjects
        .iter()
        .filter_map(|s| Pattern::parse(s.as_bytes()).ok())
        .collect()
}

fn stream_ctx<'a>(stream: &'a Stream, patterns: &'a [Pattern]) -> StreamCtx<'a> {
    StreamCtx {
        name: stream.name(),
        subjects: patterns,
        retention: match stream.config().retention {
            StreamRetention::Limits => Retention::Limits,
            StreamRetention::Interest => Retention::Interest,
            StreamRetention::WorkQueue => Retention::WorkQueue,
        },
    }
}

/// An ephemeral consumer's name: eight characters of `A-Z0-9`, as nats-server's; the
/// `n`-th of a run (its start time shifts where the run begins, so two runs rarely repeat).
fn ephemeral_name(n: u64, start: i64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    const SPACE: u64 = 36u64.pow(8);
    let mut x = ((start as u64) % SPACE + n) % SPACE;
    (0..8)
        .map(|_| {
            let c = ALPHABET[(x % 36) as usize] as char;
            x /= 36;
            c
        })
        .collect()
}
