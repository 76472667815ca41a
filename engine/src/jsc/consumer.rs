//! One JetStream consumer: its configuration check, its pull and push delivery, its acks and
//! redeliveries, as nats-server 2.9's `consumer.go` does them.
//!
//! Operation in, effects out: every `handle_*` method takes the time (Unix nanoseconds) and
//! the stream ([`Source`]), changes the consumer, and appends [`Effect`]s that the driver
//! carries out in order. Nothing here reads a clock or does I/O. [`Consumer::poll_timeout`]
//! says when [`Consumer::handle_timeout`] is next due (pull request expiries and
//! heartbeats, ack deadlines, push heartbeats), quinn-style.
//!
//! # Delivery
//! Redeliveries go first, in the order they became due (those whose ack wait passed in the
//! same check by stream sequence); then, unless `max_ack_pending` messages are
//! already pending, the next stored message the filter matches. A pull consumer delivers
//! only to a waiting request (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`), the oldest
//! first, rotating between requests; a push consumer delivers to its deliver subject while
//! someone listens ([`Consumer::handle_interest`]) and its flow-control window is open.
//! Every message goes out with the reply subject
//! `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time ns>.<pending>`
//! (nine tokens in 2.9).
//!
//! # Guarantee
//! At least once: a message stays pending until acknowledged (`+ACK`, `+NXT`, `+TERM`, or
//! a later ack under ack policy all) and is redelivered after `ack_wait` (or its `backoff`
//! step, or a `-NAK` delay), with its delivery count, until `max_deliver` deliveries.
//!
//! # Retention seam
//! On interest and work-queue streams the consumer emits [`Effect::Remove`] for a sequence
//! once *it* is done with it: acknowledged (explicitly, by a later ack under ack policy all,
//! or `+TERM`), or delivered under ack policy none. A work-queue stream removes the message
//! at once (its consumers' filters do not overlap); an interest stream removes it once every
//! consumer whose filter matches its subject has said so, which only the stream can tell.
//! A message given up after `max_deliver` deliveries is not removed, as in nats-server.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::api::{self, AckPolicy, ApiError, ConsumerConfig, ConsumerInfo, DeliverPolicy};
use super::source::{Source, StoredRef};
use super::state::{State, StateChange};
use super::time;
use crate::limits;
use crate::subject::Pattern;

/// How the stream keeps its messages (`retention`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Retention {
    /// By its limits only: consumers do not affect it.
    #[default]
    Limits,
    /// Until every interested consumer has acknowledged.
    Interest,
    /// Until one consumer has acknowledged.
    WorkQueue,
}

/// What a consumer needs to know of its stream's configuration.
#[derive(Debug, Clone, Copy)]
pub struct StreamCtx<'a> {
    /// The stream's name.
    pub name: &'a str,
    /// Its subjects.
    pub subjects: &'a [Pattern],
    /// Its retention.
    pub retention: Retention,
}

/// What the driver must do after an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a stored message (as MSG, or HMSG with headers).
    Deliver(Delivery),
    /// Send a status message: HMSG with `headers` and no payload.
    Status {
        /// The subject.
        to: Arc<[u8]>,
        /// The reply subject (flow-control requests only).
        reply: Option<Vec<u8>>,
        /// The header block, e.g. `NATS/1.0 404 No Messages\r\n\r\n`.
        headers: Vec<u8>,
    },
    /// Send an empty message: the confirmation of an ack sent with a reply subject.
    Confirm {
        /// The ack's reply subject.
        to: Vec<u8>,
    },
    /// This consumer is done with a stream sequence (interest and work-queue streams only;
    /// see the module docs).
    Remove {
        /// The stream sequence.
        seq: u64,
    },
    /// A message reached `max_deliver` and will not be delivered again: nats-server
    /// publishes `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`.
    MaxDeliveries {
        /// The stream sequence.
        stream_seq: u64,
        /// Its deliveries.
        deliveries: u64,
    },
    /// Make this change durable (append it to the consumer's log).
    Persist(StateChange),
}

/// One message going out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Where: the pull request's reply subject, or the deliver subject.
    pub to: Arc<[u8]>,
    /// For a push consumer with `deliver_group`: only that queue group's subscribers.
    pub group: Option<Arc<[u8]>>,
    /// The stream sequence.
    pub seq: u64,
    /// The subject it was published to (the MSG's subject).
    pub subject: Vec<u8>,
    /// Its header block (with `Nats-Msg-Size` under `headers_only`); empty for MSG.
    pub headers: Vec<u8>,
    /// Its payload (empty under `headers_only`).
    pub payload: Vec<u8>,
    /// The reply subject: the ack subject.
    pub ack: Vec<u8>,
}

/// The numbers an ack subject carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckRef<'a> {
    /// The stream token.
    pub stream: &'a [u8],
    /// The consumer token.
    pub consumer: &'a [u8],
    /// Delivery count (`u64::MAX` when the token is not a number, as nats-server's `-1`).
    pub deliveries: u64,
    /// Stream sequence.
    pub stream_seq: u64,
    /// Consumer sequence.
    pub consumer_seq: u64,
    /// Message time, Unix nanoseconds.
    pub time_ns: u64,
    /// Messages pending after this one when it was sent.
    pub pending: u64,
}

/// Parses `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`; `None`
/// unless it has exactly nine tokens starting `$JS.ACK`. Never panics.
pub fn parse_ack_subject(subject: &[u8]) -> Option<AckRef<'_>> {
    let mut t = subject.split(|&b| b == b'.');
    let mut next = || t.next();
    if next()? != b"$JS" || next()? != b"ACK" {
        return None;
    }
    let stream = next()?;
    let consumer = next()?;
    let nums = [next()?, next()?, next()?, next()?, next()?];
    if next().is_some() {
        return None;
    }
    let [deliveries, stream_seq, consumer_seq, time_ns, pending] = nums.map(ack_number);
    Some(AckRef {
        stream,
        consumer,
        deliveries,
        stream_seq,
        consumer_seq,
        time_ns,
        pending,
    })
}

/// One consumer.
#[derive(Debug)]
pub struct Consumer {
    stream: String,
    name: String,
    cfg: ConsumerConfig,
    filter: Option<Pattern>,
    retention: Retention,
    created_ns: u64,
    /// `$JS.ACK.<stream>.<name>.`
    ack_prefix: String,
    deliver: Option<Arc<[u8]>>,
    group: Option<Arc<[u8]>>,
    state: State,
    /// Pending messages due for redelivery, in order (a subset of the pending map).
    rdq: VecDeque<u64>,
    rdq_set: BTreeSet<u64>,
    /// Pull requests, oldest first (at most `max_waiting`).
    waiting: VecDeque<Waiting>,
    /// Push: someone subscribes to the deliver subject.
    active: bool,
    /// Push with `idle_heartbeat`: when the next one is due.
    next_heartbeat_ns: Option<u64>,
    flow: Option<Flow>,
    /// Delivery stopped at the per-call cap: more is due at once (this time).
    backlog_ns: Option<u64>,
}

/// Flow-control accounting of a push consumer (nats-server's `pbytes`/`maxpb`/`fcid`).
#[derive(Debug)]
struct Flow {
    /// Bytes delivered and not yet covered by a flow-control answer.
    pending_bytes: u64,
    /// The current window.
    window: u64,
    /// The outstanding request's reply subject and the bytes it covers.
    outstanding: Option<(Vec<u8>, u64)>,
    /// Makes each request's reply subject distinct.
    counter: u64,
}

#[derive(Debug)]
struct Waiting {
    reply: Arc<[u8]>,
    /// Messages still wanted (nats-server's `n`, which may start at 0 or below: one message).
    n: i64,
    /// Messages delivered to it.
    d: i64,
    /// Bytes still allowed (0: no limit).
    b: i64,
    expires_ns: Option<u64>,
    no_wait: bool,
    heartbeat_ns: u64,
    next_heartbeat_ns: Option<u64>,
}

/// Why delivery stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stall {
    /// Nothing more to deliver now.
    Eof,
    /// `max_ack_pending` messages are pending.
    MaxAckPending,
}

enum Pick {
    Redeliver { seq: u64, deliveries: u64 },
    Fresh { seq: u64 },
}

impl Consumer {
    /// Creates a consumer as `addConsumer` does: defaults applied, the configuration checked
    /// against the stream, the start position chosen from `src`. `ephemeral_name` names a
    /// consumer with neither `durable_name` nor `name` (the caller picks it at random, as
    /// nats-server's 8-character names).
    ///
    /// # Errors
    /// The [`ApiError`] nats-server answers for the same configuration.
    pub fn create<S: Source + ?Sized>(
        stream: &StreamCtx<'_>,
        mut cfg: ConsumerConfig,
        ephemeral_name: &str,
        now_ns: u64,
        src: &S,
    ) -> Result<Consumer, ApiError> {
        set_defaults(&mut cfg);
        check_config(&cfg, stream)?;
        let name = if !cfg.durable_name.is_empty() {
            if cfg.durable_name.len() > limits::JS_MAX_NAME_BYTES {
                return Err(ApiError::with(
                    api::NAME_TOO_LONG,
                    limits::JS_MAX_NAME_BYTES,
                ));
            }
            cfg.durable_name.clone()
        } else if !cfg.name.is_empty() {
            cfg.name.clone()
        } else {
            // As nats-server, the generated name is not written into the config.
            ephemeral_name.to_owned()
        };
        if !valid_name(&name) {
            return Err(ApiError::new(api::BAD_DURABLE_NAME));
        }
        let filter = parse_filter(&cfg)?;
        let mut c = Consumer::build(stream, name, cfg, filter, now_ns);
        c.select_start(src)?;
        Ok(c)
    }

    /// Rebuilds a consumer named `name` from its configuration (as [`Consumer::config`]
    /// returned it) and its recovered state: the last snapshot with every later [`StateChange`] applied.
    ///
    /// # Errors
    /// A filter subject that no longer parses.
    pub fn restore(
        stream: &StreamCtx<'_>,
        name: &str,
        cfg: ConsumerConfig,
        created_ns: u64,
        state: State,
    ) -> Result<Consumer, ApiError> {
        let filter = parse_filter(&cfg)?;
        let name = if !cfg.durable_name.is_empty() {
            cfg.durable_name.clone()
        } else if !cfg.name.is_empty() {
            cfg.name.clone()
        } else {
            name.to_owned()
        };
        let mut c = Consumer::build(stream, name, cfg, filter, created_ns);
        c.state = state;
        Ok(c)
    }

    /// Replaces the configuration of an existing consumer, as `updateConfig` allows: the
    /// same configuration is a no-op, a change nats-server refuses is refused with its text.
    ///
    /// # Errors
    /// [`api::CONSUMER_CREATE`] with nats-server's reason, or a configuration error.
    pub fn update(
        &mut self,
        stream: &StreamCtx<'_>,
        mut cfg: ConsumerConfig,
    ) -> Result<(), ApiError> {
        set_defaults(&mut cfg);
        check_config(&cfg, stream)?;
        if cfg == self.cfg {
            return Ok(());
        }
        let old = self.cfg.clone();
        let refuse = |why: &str| Err(ApiError::with(api::CONSUMER_CREATE, why));
        if old.deliver_policy != cfg.deliver_policy {
            return refuse("deliver policy can not be updated");
        }
        if old.opt_start_seq != cfg.opt_start_seq {
            return refuse("start sequence can not be updated");
        }
        if old.opt_start_time != cfg.opt_start_time {
            return refuse("start time can not be updated");
        }
        if old.ack_policy != cfg.ack_policy {
            return refuse("ack policy can not be updated");
        }
        if old.replay_policy != cfg.replay_policy {
            return refuse("replay policy can not be updated");
        }
        if old.idle_heartbeat != cfg.idle_heartbeat {
            return refuse("heart beats can not be updated");
        }
        if old.flow_control != cfg.flow_control {
            return refuse("flow control can not be updated");
        }
        if old.max_waiting != cfg.max_waiting {
            return refuse("max waiting can not be updated");
        }
        if old.deliver_subject != cfg.deliver_subject {
            if old.deliver_subject.is_empty() {
                return refuse("can not update pull consumer to push based");
            }
            if cfg.deliver_subject.is_empty() {
                return refuse("can not update push consumer to pull based");
            }
            if self.active {
                return Err(ApiError::new(api::CONSUMER_NAME_EXIST));
            }
            // A new deliver subject gets every pending message again, as nats-server's
            // forceExpirePending.
            let pending: Vec<u64> = self.state.pending.keys().copied().collect();
            for seq in pending {
                self.queue_redelivery(seq);
            }
        }
        // nats-server 2.9 lets the filter change too (later messages are matched by the new
        // one); the pending ones stay pending.
        self.filter = parse_filter(&cfg)?;
        self.deliver = (!cfg.deliver_subject.is_empty()).then(|| arc(&cfg.deliver_subject));
        self.cfg = cfg;
        Ok(())
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its configuration, defaults applied.
    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
    }

    /// When it was created, unix ns.
    pub fn created_ns(&self) -> u64 {
        self.created_ns
    }

    /// Its recoverable state (what a snapshot encodes).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Applies a recovered change (replay after [`Consumer::restore`]).
    pub fn apply(&mut self, change: &StateChange) {
        self.state.apply(change);
    }

    /// What `CONSUMER.INFO` answers now.
    pub fn info<S: Source + ?Sized>(&self, src: &S) -> ConsumerInfo {
        let s = &self.state;
        ConsumerInfo {
            stream_name: self.stream.clone(),
            name: self.name.clone(),
            created: i64::try_from(self.created_ns).unwrap_or(i64::MAX),
            config: self.cfg.clone(),
            delivered: api::SequenceInfo {
                consumer_seq: s.dseq.saturating_sub(1),
                stream_seq: s.sseq.saturating_sub(1),
                last_active: s.last_delivered_ns.map(clamp_i64),
            },
            ack_floor: api::SequenceInfo {
                consumer_seq: s.adflr,
                stream_seq: s.asflr,
                last_active: s.last_ack_ns.map(clamp_i64),
            },
            num_ack_pending: s.pending.len() as u64,
            num_redelivered: s.pending.values().filter(|p| p.deliveries > 1).count() as u64,
            num_waiting: self.waiting.len() as u64,
            num_pending: self.num_pending_from(s.sseq, src),
            push_bound: self.deliver.is_some() && self.active,
        }
    }

    /// A pull request arrived on `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>` with reply
    /// subject `reply` and `body` (empty, a batch size, or `{"batch", "expires", "no_wait",
    /// "max_bytes", "idle_heartbeat"}`).
    pub fn handle_next<S: Source + ?Sized>(
        &mut self,
        reply: &[u8],
        body: &[u8],
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        let to = arc_bytes(reply);
        if self.deliver.is_some() {
            out.push(status(&to, 409, "Consumer is push based"));
            return;
        }
        let req = match parse_next(body) {
            Ok(req) => req,
            Err(why) => {
                out.push(status(&to, 400, &format!("Bad Request - {why}")));
                return;
            }
        };
        if self.cfg.max_batch > 0 && req.batch > self.cfg.max_batch {
            let text = format!("Exceeded MaxRequestBatch of {}", self.cfg.max_batch);
            out.push(status(&to, 409, &text));
            return;
        }
        if req.expires_ns > 0 && self.cfg.max_expires > 0 && req.expires_ns > self.cfg.max_expires {
            let text = format!(
                "Exceeded MaxRequestExpires of {}",
                time::go_duration(self.cfg.max_expires)
            );
            out.push(status(&to, 409, &text));
            return;
        }
        if req.max_bytes > 0 && self.cfg.max_bytes > 0 && req.max_bytes > self.cfg.max_bytes {
            let text = format!("Exceeded MaxRequestMaxBytes of {}", self.cfg.max_bytes);
            out.push(status(&to, 409, &text));
            return;
        }
        if self.waiting_full() {
            self.process_waiting(now_ns, false, out);
        }
        if req.no_wait {
            let msgs_pending = self.num_pending_from(self.state.sseq, src) + self.rdq.len() as u64;
            if msgs_pending == 0 && req.expires_ns <= 0 {
                out.push(status(&to, 404, "No Messages"));
                return;
            }
            if msgs_pending > 0 {
                let batch_pending = self.process_waiting(now_ns, false, out);
                if (msgs_pending as i128) < i128::from(batch_pending) {
                    out.push(status(&to, 408, "Requests Pending"));
                    return;
                }
            }
        }
        if self.waiting_full() {
            out.push(status(&to, 409, "Exceeded MaxWaiting"));
            return;
        }
        let after = |ns: i64| (ns > 0).then(|| now_ns.saturating_add(ns.unsigned_abs()));
        self.waiting.push_back(Waiting {
            reply: to,
            n: req.batch,
            d: 0,
            b: req.max_bytes,
            expires_ns: after(req.expires_ns),
            no_wait: req.no_wait,
            heartbeat_ns: req.heartbeat_ns.max(0).unsigned_abs(),
            next_heartbeat_ns: after(req.heartbeat_ns),
        });
        self.pump(now_ns, src, out);
    }

    /// A message arrived on an ack subject of this consumer, with its optional reply
    /// subject and its payload (`+ACK`, `-NAK`, `-NAK {"delay": ns}`, `+WPI`, `+TERM`,
    /// `+NXT [request]`; empty is `+ACK`).
    pub fn handle_ack<S: Source + ?Sized>(
        &mut self,
        subject: &[u8],
        reply: Option<&[u8]>,
        body: &[u8],
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        let (sseq, dseq) =
            parse_ack_subject(subject).map_or((0, 0), |a| (a.stream_seq, a.consumer_seq));
        let mut confirm = sseq != 0;
        match body {
            b"" | b"+ACK" | b"+OK" => self.ack(sseq, dseq, now_ns, out),
            _ if body.starts_with(b"+NXT") => {
                self.ack(sseq, dseq, now_ns, out);
                confirm = false;
                if let Some(reply) = reply.filter(|r| !r.is_empty()) {
                    let rest = body.get(4..).unwrap_or(&[]);
                    self.handle_next(reply, rest, now_ns, src, out);
                }
            }
            _ if body.starts_with(b"-NAK") => {
                self.nak(sseq, dseq, body.get(4..).unwrap_or(&[]), now_ns, out)
            }
            b"+WPI" => self.progress(sseq, now_ns, out),
            b"+TERM" => self.ack(sseq, dseq, now_ns, out),
            _ => {}
        }
        if let Some(reply) = reply.filter(|r| confirm && !r.is_empty()) {
            out.push(Effect::Confirm { to: reply.to_vec() });
        }
        self.pump(now_ns, src, out);
    }

    /// A push consumer's client answered a flow-control request (a message to its reply
    /// subject `$JS.FC.<stream>.<consumer>.<id>`).
    pub fn handle_flow_control<S: Source + ?Sized>(
        &mut self,
        subject: &[u8],
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        let Some(flow) = &mut self.flow else {
            return;
        };
        match &flow.outstanding {
            Some((id, covered)) if id.as_slice() == subject => {
                flow.pending_bytes = flow.pending_bytes.saturating_sub(*covered);
                flow.outstanding = None;
                flow.window = (flow.window * 2).min(limits::JS_FLOW_CONTROL_MAX_PENDING_BYTES);
            }
            _ => return,
        }
        self.pump(now_ns, src, out);
    }

    /// The deliver subject of a push consumer gained (`true`) or lost its last subscriber.
    pub fn handle_interest<S: Source + ?Sized>(
        &mut self,
        bound: bool,
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        if self.deliver.is_none() {
            return;
        }
        self.active = bound;
        self.pump(now_ns, src, out);
    }

    /// The stream stored new messages: deliver what can be.
    pub fn handle_stored<S: Source + ?Sized>(
        &mut self,
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        self.pump(now_ns, src, out);
    }

    /// Forgets the waiting pull requests whose reply subject nobody subscribes to any more
    /// (`has_interest` says who does), as nats-server's `nextWaiting` skips them: a fetch
    /// its client gave up on must not pull messages into ack-pending. The driver calls it
    /// before an operation that may deliver.
    pub fn drop_unwanted_requests(&mut self, has_interest: impl Fn(&[u8]) -> bool) {
        self.waiting.retain(|w| has_interest(&w.reply));
    }

    /// Whether pull requests are waiting.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The consumer is being deleted: every waiting pull request gets `409 Consumer
    /// Deleted`.
    pub fn handle_delete(&mut self, out: &mut Vec<Effect>) {
        for w in self.waiting.drain(..) {
            out.push(status(&w.reply, 409, "Consumer Deleted"));
        }
    }

    /// When [`Consumer::handle_timeout`] is next due, Unix nanoseconds.
    ///
    /// NB: it scans the pending map (at most [`limits::JS_MAX_ACK_PENDING`] entries), as
    /// nats-server's ack timer does; a driver calls it once per operation, not per message.
    pub fn poll_timeout(&self) -> Option<u64> {
        let waits = self
            .waiting
            .iter()
            .flat_map(|w| [w.expires_ns, w.next_heartbeat_ns])
            .flatten();
        let acks = self
            .state
            .pending
            .iter()
            .filter(|(seq, _)| !self.rdq_set.contains(seq))
            .map(|(_, p)| p.deadline_ns);
        let heartbeat = self.next_heartbeat_ns.filter(|_| self.deliver.is_some());
        waits
            .chain(acks)
            .chain(heartbeat)
            .chain(self.backlog_ns)
            .min()
    }

    /// Time has passed: expire pull requests (`408 Request Timeout`), send heartbeats,
    /// queue expired acks for redelivery, and deliver.
    pub fn handle_timeout<S: Source + ?Sized>(
        &mut self,
        now_ns: u64,
        src: &S,
        out: &mut Vec<Effect>,
    ) {
        self.check_pending(now_ns, src, out);
        if let (Some(due), Some(to)) = (self.next_heartbeat_ns, self.deliver.clone()) {
            if now_ns >= due {
                if self.active {
                    let headers = self.heartbeat_headers();
                    out.push(Effect::Status {
                        to,
                        reply: None,
                        headers,
                    });
                }
                self.next_heartbeat_ns = Some(now_ns.saturating_add(self.heartbeat_interval()));
            }
        }
        if self.deliver.is_none() {
            // On a timer nats-server processes its waiting requests as at the end of the
            // stream: a `no_wait` request that got part of its batch and then stalled (at
            // `max_ack_pending`) is finished with `408` at its first heartbeat, not kept
            // (seen on 2.9.10: five messages, then `408 Request Timeout` 100 ms later).
            self.process_waiting(now_ns, true, out);
        }
        self.pump(now_ns, src, out);
    }

    fn build(
        stream: &StreamCtx<'_>,
        name: String,
        cfg: ConsumerConfig,
        filter: Option<Pattern>,
        created_ns: u64,
    ) -> Consumer {
        let deliver = (!cfg.deliver_subject.is_empty()).then(|| arc(&cfg.deliver_subject));
        let group = (!cfg.deliver_group.is_empty()).then(|| arc(&cfg.deliver_group));
        let flow = (deliver.is_some() && cfg.flow_control).then_some(Flow {
            pending_bytes: 0,
            window: limits::JS_FLOW_CONTROL_MAX_PENDING_BYTES / 16,
            outstanding: None,
            counter: 0,
        });
        let hb = cfg.idle_heartbeat.max(0).unsigned_abs();
        Consumer {
            stream: stream.name.to_owned(),
            ack_prefix: format!("$JS.ACK.{}.{}.", stream.name, name),
            name,
            filter,
            retention: stream.retention,
            created_ns,
            deliver: deliver.clone(),
            group,
            state: State::default(),
            rdq: VecDeque::new(),
            rdq_set: BTreeSet::new(),
            waiting: VecDeque::new(),
            active: false,
            next_heartbeat_ns: (deliver.is_some() && hb > 0).then(|| created_ns.saturating_add(hb)),
            flow,
            backlog_ns: None,
            cfg,
        }
    }

    /// nats-server's `selectStartingSeqNo`.
    fn select_start<S: Source + ?Sized>(&mut self, src: &S) -> Result<(), ApiError> {
        let (first, last) = (src.first_seq(), src.last_seq());
        let f = self.filter.as_ref();
        let mut sseq = match self.cfg.deliver_policy {
            DeliverPolicy::All => first,
            DeliverPolicy::Last if f.is_some() => src.last_matching(f).unwrap_or(0),
            DeliverPolicy::Last => last,
            DeliverPolicy::New => last + 1,
            DeliverPolicy::ByStartSequence => self.cfg.opt_start_seq,
            DeliverPolicy::ByStartTime => src.seq_at_time(self.cfg.opt_start_time.unwrap_or(0)),
            DeliverPolicy::LastPerSubject => {
                let mut seqs = Vec::new();
                if !src.last_per_subject(f, limits::JS_MAX_LAST_PER_SUBJECT, &mut seqs) {
                    return Err(ApiError::with(
                        api::CONSUMER_CREATE,
                        format!(
                            "last per subject start is limited to {} subjects",
                            limits::JS_MAX_LAST_PER_SUBJECT
                        ),
                    ));
                }
                self.state.lss = seqs.into();
                self.state.lss_resume = last;
                self.state.lss.front().copied().unwrap_or(last)
            }
        };
        if last == 0 {
            sseq = 1;
        } else if sseq < first {
            sseq = first;
        } else if sseq > last {
            sseq = last + 1;
        }
        self.state.sseq = sseq;
        self.state.dseq = 1;
        // nats-server sets the stream ack floor to `sseq - 1` here, then reloads it from the
        // new consumer's empty store: 0 is what its info shows.
        self.state.adflr = 0;
        self.state.asflr = 0;
        Ok(())
    }

    /// Delivers while there is something to deliver and somewhere to deliver it
    /// (nats-server's `loopAndGatherMsgs`, one pass).
    ///
    /// One call delivers at most [`limits::JS_MAX_DELIVERIES_PER_OP`] messages and
    /// [`limits::JS_MAX_DELIVERY_BYTES_PER_OP`] bytes; the rest is due at once
    /// ([`Consumer::poll_timeout`] answers `now_ns`), so a large batch or a push consumer
    /// behind a long stream never builds an unbounded effect list.
    fn pump<S: Source + ?Sized>(&mut self, now_ns: u64, src: &S, out: &mut Vec<Effect>) {
        let mut stall = Stall::Eof;
        let (mut sent, mut bytes) = (0usize, 0usize);
        self.backlog_ns = None;
        if self.deliver.is_none() {
            // Once per call, not per message: `now_ns` is the same for the whole call, so
            // nothing expires in between (`next_waiting` skips what is already past).
            self.process_waiting(now_ns, false, out);
        }
        loop {
            if sent >= limits::JS_MAX_DELIVERIES_PER_OP
                || bytes >= limits::JS_MAX_DELIVERY_BYTES_PER_OP
            {
                self.backlog_ns = Some(now_ns);
                return;
            }
            if self.deliver.is_some() {
                let closed = self
                    .flow
                    .as_ref()
                    .is_some_and(|f| f.pending_bytes > f.window);
                if !self.active || closed {
                    break;
                }
            } else if self.waiting.is_empty() {
                break;
            }
            let pick = match self.pick(src, out) {
                Ok(pick) => pick,
                Err(why) => {
                    stall = why;
                    break;
                }
            };
            let (seq, deliveries, fresh) = match pick {
                Pick::Redeliver { seq, deliveries } => (seq, deliveries, false),
                Pick::Fresh { seq } => (seq, 1, true),
            };
            let Some(msg) = src.load(seq) else {
                break;
            };
            let next_sseq = if !fresh {
                self.state.sseq
            } else if self.state.lss.len() == 1 && self.state.lss.front() == Some(&seq) {
                self.state.lss_resume.max(seq + 1)
            } else {
                self.state.sseq.max(seq + 1)
            };
            let pending = self.num_pending_from(next_sseq, src);
            let dseq = self.state.dseq;
            let ack = self.ack_subject(deliveries, seq, dseq, msg.time_ns, pending);
            let (headers, payload) = self.body(&msg);
            let size = msg.subject.len() + ack.len() + headers.len() + payload.len();
            let to = match &self.deliver {
                Some(to) => to.clone(),
                None => match self.next_waiting(size, now_ns, out) {
                    Some(to) => to,
                    None => break,
                },
            };
            if !fresh {
                self.rdq.pop_front();
                self.rdq_set.remove(&seq);
            }
            let no_ack = self.cfg.ack_policy == AckPolicy::None;
            let change = StateChange::Delivered {
                sseq: seq,
                dseq,
                deliveries,
                deadline_ns: if no_ack {
                    0
                } else {
                    now_ns.saturating_add(self.wait_for(deliveries))
                },
                next_sseq,
                now_ns,
                no_ack,
            };
            self.record(change, out);
            out.push(Effect::Deliver(Delivery {
                to,
                group: self.group.clone(),
                seq,
                subject: msg.subject.to_vec(),
                headers,
                payload,
                ack: ack.into_bytes(),
            }));
            if no_ack && self.retention != Retention::Limits {
                out.push(Effect::Remove { seq });
            }
            sent += 1;
            bytes += size;
            if self.deliver.is_some() {
                self.after_push(size as u64, out);
                let hb = self.heartbeat_interval();
                if hb > 0 {
                    self.next_heartbeat_ns = Some(now_ns.saturating_add(hb));
                }
            }
        }
        if self.deliver.is_none() {
            self.process_waiting(now_ns, stall != Stall::MaxAckPending, out);
        }
    }

    /// The next message to deliver, without taking it (nats-server's `getNextMsg`).
    fn pick<S: Source + ?Sized>(&mut self, src: &S, out: &mut Vec<Effect>) -> Result<Pick, Stall> {
        while let Some(&seq) = self.rdq.front() {
            let Some(p) = self.state.pending.get(&seq) else {
                self.rdq.pop_front();
                self.rdq_set.remove(&seq);
                continue;
            };
            let deliveries = p.deliveries + 1;
            let max = self.cfg.max_deliver;
            let exceeded = max > 0 && deliveries > max.unsigned_abs();
            if exceeded || src.load(seq).is_none() {
                self.rdq.pop_front();
                self.rdq_set.remove(&seq);
                if exceeded {
                    out.push(Effect::MaxDeliveries {
                        stream_seq: seq,
                        deliveries: deliveries - 1,
                    });
                }
                self.record(StateChange::Dropped { sseq: seq }, out);
                continue;
            }
            return Ok(Pick::Redeliver { seq, deliveries });
        }
        let max = self.cfg.max_ack_pending;
        if self.cfg.ack_policy != AckPolicy::None
            && max > 0
            && self.state.pending.len() as u64 >= max.unsigned_abs()
        {
            return Err(Stall::MaxAckPending);
        }
        let from = self.state.lss.front().copied().unwrap_or(self.state.sseq);
        match src.next_matching(from, self.filter.as_ref()) {
            Some(seq) => Ok(Pick::Fresh { seq }),
            None => Err(Stall::Eof),
        }
    }

    /// The request the next message of `size` bytes goes to (nats-server's `nextWaiting`).
    fn next_waiting(
        &mut self,
        size: usize,
        now_ns: u64,
        out: &mut Vec<Effect>,
    ) -> Option<Arc<[u8]>> {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        while let Some(w) = self.waiting.front_mut() {
            if w.b > 0 {
                if size <= w.b {
                    w.b -= size;
                    if w.b == 0 {
                        w.n = 1;
                    }
                } else {
                    let headers = pending_headers("409 Message Size Exceeds MaxBytes", w.n, w.b);
                    out.push(Effect::Status {
                        to: w.reply.clone(),
                        reply: None,
                        headers,
                    });
                    self.waiting.pop_front();
                    continue;
                }
            }
            if w.expires_ns.is_some_and(|e| now_ns >= e) {
                self.waiting.pop_front();
                continue;
            }
            w.d += 1;
            w.n -= 1;
            let reply = w.reply.clone();
            if w.n > 0 && w.heartbeat_ns > 0 {
                w.next_heartbeat_ns = Some(now_ns.saturating_add(w.heartbeat_ns));
            }
            if w.n <= 0 {
                self.waiting.pop_front();
            } else if self.waiting.len() > 1 {
                if let Some(w) = self.waiting.pop_front() {
                    self.waiting.push_back(w);
                }
            }
            return Some(reply);
        }
        None
    }

    /// Expires requests and sends their heartbeats; returns the messages the remaining ones
    /// still want (nats-server's `processWaiting`). With `eos` (nothing more to deliver), a
    /// `no_wait` request that got something is finished with `408`.
    fn process_waiting(&mut self, now_ns: u64, eos: bool, out: &mut Vec<Effect>) -> i64 {
        let mut batch_pending = 0i64;
        let hb_headers = self.heartbeat_headers();
        self.waiting.retain_mut(|w| {
            if (eos && w.no_wait && w.d > 0) || w.expires_ns.is_some_and(|e| now_ns >= e) {
                out.push(Effect::Status {
                    to: w.reply.clone(),
                    reply: None,
                    headers: pending_headers("408 Request Timeout", w.n, w.b),
                });
                return false;
            }
            batch_pending = batch_pending.saturating_add(w.n);
            if let Some(due) = w.next_heartbeat_ns {
                if now_ns >= due {
                    out.push(Effect::Status {
                        to: w.reply.clone(),
                        reply: None,
                        headers: hb_headers.clone(),
                    });
                    w.next_heartbeat_ns = Some(now_ns.saturating_add(w.heartbeat_ns));
                }
            }
            true
        });
        batch_pending
    }

    /// Queues every pending message past its deadline for redelivery, oldest sequence first,
    /// and gives up those no longer stored (nats-server's `checkPending`).
    fn check_pending<S: Source + ?Sized>(&mut self, now_ns: u64, src: &S, out: &mut Vec<Effect>) {
        let first = src.first_seq();
        let gone: Vec<u64> = self.state.pending.range(..first).map(|(&s, _)| s).collect();
        for seq in gone {
            self.rdq_set.remove(&seq);
            self.rdq.retain(|&s| s != seq);
            self.record(StateChange::Dropped { sseq: seq }, out);
        }
        let expired: Vec<u64> = self
            .state
            .pending
            .iter()
            .filter(|(seq, p)| now_ns >= p.deadline_ns && !self.rdq_set.contains(seq))
            .map(|(&s, _)| s)
            .collect();
        for seq in expired {
            self.queue_redelivery(seq);
        }
    }

    fn queue_redelivery(&mut self, seq: u64) {
        if self.rdq_set.insert(seq) {
            self.rdq.push_back(seq);
        }
    }

    /// nats-server's `processAckMsg` (ack, `+NXT` and `+TERM`).
    fn ack(&mut self, sseq: u64, dseq: u64, now_ns: u64, out: &mut Vec<Effect>) {
        let s = &self.state;
        let change = match self.cfg.ack_policy {
            AckPolicy::None => return,
            AckPolicy::Explicit => {
                let was = s.pending.get(&sseq).copied();
                let dseq = was.map_or(dseq, |p| p.dseq);
                let remaining = s.pending.len() - usize::from(was.is_some());
                let (mut adflr, mut asflr) = (s.adflr, s.asflr);
                if remaining == 0 {
                    adflr = s.dseq.saturating_sub(1);
                    asflr = s.sseq.saturating_sub(1);
                } else if dseq == s.adflr.wrapping_add(1) {
                    adflr = dseq;
                    asflr = sseq;
                    let next = s
                        .pending
                        .range(sseq.saturating_add(1)..s.sseq.max(sseq.saturating_add(1)))
                        .next();
                    if let Some((&ss, p)) = next {
                        if p.dseq > 0 {
                            adflr = p.dseq - 1;
                            asflr = ss - 1;
                        }
                    }
                }
                if was.is_some() && self.retention != Retention::Limits {
                    out.push(Effect::Remove { seq: sseq });
                }
                // An ack of a message not pending removes nothing (an empty range).
                let (from, to) = if was.is_some() { (sseq, sseq) } else { (1, 0) };
                StateChange::Acked {
                    from,
                    to,
                    adflr,
                    asflr,
                    now_ns,
                }
            }
            AckPolicy::All => {
                if dseq <= s.adflr || sseq <= s.asflr {
                    return;
                }
                if self.retention != Retention::Limits {
                    for (&seq, _) in s.pending.range(s.asflr + 1..=sseq) {
                        out.push(Effect::Remove { seq });
                    }
                }
                StateChange::Acked {
                    from: s.asflr + 1,
                    to: sseq,
                    adflr: dseq,
                    asflr: sseq,
                    now_ns,
                }
            }
        };
        if let StateChange::Acked { from, to, .. } = change {
            let mut queued = false;
            for seq in self.state.pending_in(from, to) {
                queued |= self.rdq_set.remove(&seq);
            }
            if queued {
                let rdq_set = &self.rdq_set;
                self.rdq.retain(|s| rdq_set.contains(s));
            }
        }
        self.record(change, out);
    }

    /// nats-server's `processNak`.
    fn nak(&mut self, sseq: u64, dseq: u64, arg: &[u8], now_ns: u64, out: &mut Vec<Effect>) {
        if dseq <= self.state.adflr || dseq > self.state.dseq {
            return;
        }
        if !self.state.pending.is_empty() && !self.state.pending.contains_key(&sseq) {
            return;
        }
        if let Some(delay) = parse_nak_delay(arg) {
            if self.rdq_set.remove(&sseq) {
                self.rdq.retain(|&s| s != sseq);
            }
            if self.state.pending.contains_key(&sseq) {
                let deadline_ns = if delay <= 0 {
                    now_ns
                } else {
                    now_ns.saturating_add(delay.unsigned_abs())
                };
                let change = StateChange::Deadline {
                    sseq,
                    deadline_ns,
                    now_ns,
                };
                self.record(change, out);
            }
            return;
        }
        self.queue_redelivery(sseq);
    }

    /// nats-server's `progressUpdate` (`+WPI`): the ack wait starts again.
    fn progress(&mut self, sseq: u64, now_ns: u64, out: &mut Vec<Effect>) {
        let Some(p) = self.state.pending.get(&sseq) else {
            return;
        };
        let deadline_ns = now_ns.saturating_add(self.wait_for(p.deliveries));
        self.record(
            StateChange::Deadline {
                sseq,
                deadline_ns,
                now_ns,
            },
            out,
        );
    }

    fn record(&mut self, change: StateChange, out: &mut Vec<Effect>) {
        self.state.apply(&change);
        out.push(Effect::Persist(change));
    }

    /// After a push delivery of `size` bytes: flow-control accounting and, past half the
    /// window, a flow-control request (nats-server's `needFlowControl`/`sendFlowControl`).
    fn after_push(&mut self, size: u64, out: &mut Vec<Effect>) {
        let Some(flow) = &mut self.flow else {
            return;
        };
        flow.pending_bytes += size;
        match &mut flow.outstanding {
            None if flow.pending_bytes > flow.window / 2 => {
                flow.counter += 1;
                let id = format!(
                    "$JS.FC.{}.{}.{}",
                    self.stream,
                    self.name,
                    fc_token(flow.counter)
                );
                flow.outstanding = Some((id.clone().into_bytes(), flow.pending_bytes));
                if let Some(to) = &self.deliver {
                    out.push(Effect::Status {
                        to: to.clone(),
                        reply: Some(id.into_bytes()),
                        headers: b"NATS/1.0 100 FlowControl Request\r\n\r\n".to_vec(),
                    });
                }
            }
            Some((_, covered)) if flow.pending_bytes - *covered >= flow.window => *covered += size,
            _ => {}
        }
    }

    fn heartbeat_headers(&self) -> Vec<u8> {
        let mut h = format!(
            "NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: {}\r\nNats-Last-Stream: {}\r\n",
            self.state.dseq.saturating_sub(1),
            self.state.sseq.saturating_sub(1)
        );
        if let Some((id, _)) = self.flow.as_ref().and_then(|f| f.outstanding.as_ref()) {
            h.push_str("Nats-Consumer-Stalled: ");
            h.push_str(&String::from_utf8_lossy(id));
            h.push_str("\r\n");
        }
        h.push_str("\r\n");
        h.into_bytes()
    }

    fn heartbeat_interval(&self) -> u64 {
        self.cfg.idle_heartbeat.max(0).unsigned_abs()
    }

    /// The ack wait before redelivery number `deliveries + 1`: `ack_wait`, or the backoff
    /// step for this delivery (the last one repeating).
    fn wait_for(&self, deliveries: u64) -> u64 {
        let b = &self.cfg.backoff;
        let step = usize::try_from(deliveries.saturating_sub(1)).unwrap_or(usize::MAX);
        let wait = match b.get(step).or(b.last()) {
            Some(&w) => w,
            None => self.cfg.ack_wait,
        };
        wait.max(0).unsigned_abs()
    }

    fn waiting_full(&self) -> bool {
        self.waiting.len() as u64 >= self.cfg.max_waiting.max(0).unsigned_abs()
    }

    fn num_pending_from<S: Source + ?Sized>(&self, from: u64, src: &S) -> u64 {
        if self.cfg.deliver_policy == DeliverPolicy::LastPerSubject {
            let mut seqs = Vec::new();
            src.last_per_subject(
                self.filter.as_ref(),
                limits::JS_MAX_LAST_PER_SUBJECT,
                &mut seqs,
            );
            return seqs.iter().filter(|&&s| s >= from).count() as u64;
        }
        src.count_matching(from, self.filter.as_ref())
    }

    fn ack_subject(
        &self,
        deliveries: u64,
        sseq: u64,
        dseq: u64,
        time_ns: i64,
        pending: u64,
    ) -> String {
        format!(
            "{}{deliveries}.{sseq}.{dseq}.{time_ns}.{pending}",
            self.ack_prefix
        )
    }

    /// The header block and payload a delivery carries (`headers_only` adds
    /// `Nats-Msg-Size` and drops the payload, as nats-server's `convertToHeadersOnly`).
    fn body(&self, msg: &StoredRef<'_>) -> (Vec<u8>, Vec<u8>) {
        if !self.cfg.headers_only {
            return (msg.headers.to_vec(), msg.payload.to_vec());
        }
        let mut h = if msg.headers.len() >= 2 {
            msg.headers
                .get(..msg.headers.len() - 2)
                .unwrap_or(b"")
                .to_vec()
        } else {
            b"NATS/1.0\r\n".to_vec()
        };
        h.extend_from_slice(format!("Nats-Msg-Size: {}\r\n\r\n", msg.payload.len()).as_bytes());
        (h, Vec::new())
    }
}

/// `setConsumerConfigDefaults`, with the engine's caps in place of nats-server's account
/// limits.
fn set_defaults(cfg: &mut ConsumerConfig) {
    let acked = cfg.ack_policy != AckPolicy::None;
    if cfg.deliver_subject.is_empty() && cfg.max_waiting == 0 {
        cfg.max_waiting = limits::JS_DEFAULT_MAX_WAITING;
    }
    if cfg.ack_wait == 0 && acked {
        cfg.ack_wait = limits::JS_DEFAULT_ACK_WAIT_NS;
    }
    if cfg.max_deliver == 0 {
        cfg.max_deliver = -1;
    }
    if let Some(&first) = cfg.backoff.first() {
        cfg.ack_wait = first;
    }
    if acked && cfg.max_ack_pending == 0 {
        cfg.max_ack_pending = limits::JS_DEFAULT_MAX_ACK_PENDING;
    }
    if cfg.durable_name.is_empty() && cfg.inactive_threshold == 0 {
        cfg.inactive_threshold = limits::JS_DEFAULT_INACTIVE_THRESHOLD_NS;
    }
}

/// `checkConsumerCfg` and the work-queue checks of `addConsumer`, in nats-server's order.
fn check_config(cfg: &ConsumerConfig, stream: &StreamCtx<'_>) -> Result<(), ApiError> {
    let err = |kind| Err(ApiError::new(kind));
    if cfg.num_replicas > 1 {
        return err(api::REPLICAS_NOT_SUPPORTED);
    }
    if cfg.num_replicas < 0 {
        return err(api::REPLICAS_NEGATIVE);
    }
    let backoff = cfg.backoff.len() as i64;
    if backoff > 0 && cfg.max_deliver <= backoff {
        return err(api::MAX_DELIVER_BACKOFF);
    }
    if cfg.description.len() > limits::JS_MAX_DESCRIPTION_BYTES {
        return Err(ApiError::with(
            api::DESCRIPTION_TOO_LONG,
            limits::JS_MAX_DESCRIPTION_BYTES,
        ));
    }
    if cfg.is_push() {
        let Ok(deliver) = Pattern::parse(cfg.deliver_subject.as_bytes()) else {
            return err(api::INVALID_DELIVER_SUBJECT);
        };
        if !deliver.is_literal() {
            return err(api::DELIVER_TO_WILDCARDS);
        }
        if stream.subjects.iter().any(|s| subset(&deliver, s)) {
            return err(api::DELIVER_CYCLE);
        }
        if cfg.max_waiting != 0 {
            return err(api::PUSH_MAX_WAITING);
        }
        if cfg.max_ack_pending > 0 && cfg.ack_policy == AckPolicy::None {
            return err(api::MAX_PENDING_ACK_POLICY_REQUIRED);
        }
        if cfg.idle_heartbeat > 0 && cfg.idle_heartbeat < limits::JS_MIN_HEARTBEAT_NS {
            return err(api::SMALL_HEARTBEAT);
        }
    } else {
        if cfg.ack_policy == AckPolicy::None && stream.retention == Retention::WorkQueue {
            return err(api::PULL_REQUIRES_ACK);
        }
        if cfg.rate_limit_bps > 0 {
            return err(api::PULL_WITH_RATE_LIMIT);
        }
        if cfg.max_waiting < 0 {
            return err(api::MAX_WAITING_NEGATIVE);
        }
        if cfg.idle_heartbeat > 0 {
            return err(api::HEARTBEAT_REQUIRES_PUSH);
        }
        if cfg.flow_control {
            return err(api::FLOW_CONTROL_REQUIRES_PUSH);
        }
        if cfg.max_batch < 0 {
            return err(api::MAX_REQUEST_BATCH_NEGATIVE);
        }
        if cfg.max_expires != 0 && cfg.max_expires < 1_000_000 {
            return err(api::MAX_REQUEST_EXPIRES_TOO_SMALL);
        }
        if cfg.max_waiting > limits::JS_MAX_WAITING {
            let why = format!(
                "consumer max waiting exceeds limit of {}",
                limits::JS_MAX_WAITING
            );
            return Err(ApiError::with(api::CONSUMER_CREATE, why));
        }
    }
    let acked = cfg.ack_policy != AckPolicy::None;
    if acked && (cfg.max_ack_pending < 0 || cfg.max_ack_pending > limits::JS_MAX_ACK_PENDING) {
        return Err(ApiError::with(
            api::MAX_PENDING_ACK_EXCESS,
            limits::JS_MAX_ACK_PENDING,
        ));
    }
    if cfg.direct && !cfg.is_push() {
        return err(api::DIRECT_REQUIRES_PUSH);
    }
    if !cfg.filter_subject.is_empty() {
        let ok = Pattern::parse(cfg.filter_subject.as_bytes()).is_ok_and(|f| {
            stream
                .subjects
                .iter()
                .any(|s| subset(&f, s) || (!f.is_literal() && subset(s, &f)))
        });
        if !ok {
            return err(api::FILTER_NOT_SUBSET);
        }
    }
    check_start(cfg)?;
    if !cfg.sample_freq.is_empty() {
        let s = cfg
            .sample_freq
            .strip_suffix('%')
            .unwrap_or(&cfg.sample_freq);
        match s.parse::<i64>() {
            Ok(v) if v >= 0 => {}
            Ok(_) => return Err(ApiError::with(api::INVALID_SAMPLING, "<nil>")),
            Err(_) => {
                let why = format!("strconv.Atoi: parsing {s:?}: invalid syntax");
                return Err(ApiError::with(api::INVALID_SAMPLING, why));
            }
        }
    }
    if cfg.flow_control && cfg.idle_heartbeat == 0 {
        return err(api::FLOW_CONTROL_NEEDS_HEARTBEATS);
    }
    if !cfg.durable_name.is_empty() && !cfg.name.is_empty() && cfg.name != cfg.durable_name {
        return err(api::DURABLE_AND_NAME_MISMATCH);
    }
    if cfg.replay_policy != api::ReplayPolicy::Instant {
        let why = "replay policy original is not supported";
        return Err(ApiError::with(api::CONSUMER_CREATE, why));
    }
    if cfg.rate_limit_bps > 0 {
        let why = "rate limit is not supported";
        return Err(ApiError::with(api::CONSUMER_CREATE, why));
    }
    if stream.retention == Retention::WorkQueue && !cfg.direct {
        if cfg.ack_policy != AckPolicy::Explicit {
            return err(api::WQ_REQUIRES_EXPLICIT_ACK);
        }
        if cfg.deliver_policy != DeliverPolicy::All {
            return err(api::WQ_NOT_DELIVER_ALL);
        }
    }
    Ok(())
}

/// The start-position conflicts of `checkConsumerCfg`.
fn check_start(cfg: &ConsumerConfig) -> Result<(), ApiError> {
    let seq = cfg.opt_start_seq > 0;
    let time = cfg.opt_start_time.is_some();
    let bad = |dp: &str, what: &str| {
        let why = format!(
            "consumer delivery policy is deliver {dp}, but optional start {what} is also set"
        );
        Err(ApiError::with(api::INVALID_POLICY, why))
    };
    let unset = |dp: &str, what: &str| {
        let why =
            format!("consumer delivery policy is deliver {dp}, but optional {what} is not set");
        Err(ApiError::with(api::INVALID_POLICY, why))
    };
    let dp = match cfg.deliver_policy {
        DeliverPolicy::All => "all",
        DeliverPolicy::Last => "last",
        DeliverPolicy::New => "new",
        DeliverPolicy::LastPerSubject => "last per subject",
        DeliverPolicy::ByStartSequence => {
            if !seq {
                return unset("by start sequence", "start sequence");
            }
            if time {
                return bad("by start sequence", "time");
            }
            return Ok(());
        }
        DeliverPolicy::ByStartTime => {
            if !time {
                return unset("by start time", "start time");
            }
            if seq {
                return bad("by start time", "start sequence");
            }
            return Ok(());
        }
    };
    if seq {
        return bad(dp, "sequence");
    }
    if time {
        return bad(dp, "time");
    }
    if cfg.deliver_policy == DeliverPolicy::LastPerSubject && cfg.filter_subject.is_empty() {
        return unset("last per subject", "filter subject");
    }
    Ok(())
}

fn parse_filter(cfg: &ConsumerConfig) -> Result<Option<Pattern>, ApiError> {
    if cfg.filter_subject.is_empty() {
        return Ok(None);
    }
    Pattern::parse(cfg.filter_subject.as_bytes())
        .map(Some)
        .map_err(|_| ApiError::new(api::FILTER_NOT_SUBSET))
}

/// nats-server's `subjectIsSubsetMatch(a, b)`: every subject `a` matches, `b` matches too.
fn subset(a: &Pattern, b: &Pattern) -> bool {
    use crate::subject::Token;
    let mut a = a.tokens();
    for tb in b.tokens() {
        let Some(ta) = a.next() else {
            return false;
        };
        match (ta, tb) {
            (_, Token::Tail) => return true,
            (Token::Tail, _) => return false,
            (_, Token::One) => {}
            (Token::One, Token::Literal(_)) => return false,
            (Token::Literal(x), Token::Literal(y)) if x == y => {}
            _ => return false,
        }
    }
    a.next().is_none()
}

/// nats-server's `isValidName`.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains([' ', '\t', '\r', '\n', '\u{c}', '.', '*', '>'])
}

/// A pull request's fields.
struct NextRequest {
    batch: i64,
    expires_ns: i64,
    max_bytes: i64,
    no_wait: bool,
    heartbeat_ns: i64,
}

/// nats-server's `nextReqFromMsg`: empty is one message, a number is a batch, JSON is the
/// full request, anything else is one message.
fn parse_next(body: &[u8]) -> Result<NextRequest, String> {
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct Json {
        expires: i64,
        batch: i64,
        max_bytes: i64,
        no_wait: bool,
        idle_heartbeat: i64,
    }
    let req = body.trim_ascii();
    let one = NextRequest {
        batch: 1,
        expires_ns: 0,
        max_bytes: 0,
        no_wait: false,
        heartbeat_ns: 0,
    };
    if req.first() == Some(&b'{') {
        let j: Json = serde_json::from_slice(req).map_err(|e| e.to_string())?;
        if j.idle_heartbeat > 0 && j.idle_heartbeat.saturating_mul(2) > j.expires {
            return Err("heartbeat value too large".into());
        }
        return Ok(NextRequest {
            batch: j.batch,
            expires_ns: j.expires,
            max_bytes: j.max_bytes,
            no_wait: j.no_wait,
            heartbeat_ns: j.idle_heartbeat,
        });
    }
    let n = std::str::from_utf8(req)
        .ok()
        .and_then(|s| s.parse::<i64>().ok());
    Ok(NextRequest {
        batch: n.unwrap_or(1),
        ..one
    })
}

/// The delay of `-NAK <arg>`: `{"delay": ns}` or a Go duration; `None` is a plain NAK.
fn parse_nak_delay(arg: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Delay {
        #[serde(default)]
        delay: i64,
    }
    let arg = arg.trim_ascii();
    if arg.is_empty() {
        return None;
    }
    if arg.first() == Some(&b'{') {
        return serde_json::from_slice::<Delay>(arg).ok().map(|d| d.delay);
    }
    time::parse_go_duration(std::str::from_utf8(arg).ok()?)
}

/// nats-server's `parseAckReplyNum`, with its `-1` for a bad token read as `u64::MAX`.
fn ack_number(token: &[u8]) -> u64 {
    if token.is_empty() || !token.iter().all(u8::is_ascii_digit) {
        return u64::MAX;
    }
    token.iter().fold(0u64, |n, &d| {
        n.wrapping_mul(10).wrapping_add(u64::from(d - b'0'))
    })
}

fn status(to: &Arc<[u8]>, code: u16, text: &str) -> Effect {
    Effect::Status {
        to: to.clone(),
        reply: None,
        headers: format!("NATS/1.0 {code} {text}\r\n\r\n").into_bytes(),
    }
}

fn pending_headers(status: &str, n: i64, b: i64) -> Vec<u8> {
    format!("NATS/1.0 {status}\r\nNats-Pending-Messages: {n}\r\nNats-Pending-Bytes: {b}\r\n\r\n")
        .into_bytes()
}

/// Four base-62 characters for a flow-control reply subject (nats-server uses random ones;
/// a counter is as unique and keeps the machine deterministic).
fn fc_token(n: u64) -> String {
    const DIGITS: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut v = n;
    let mut s = String::with_capacity(4);
    for _ in 0..4 {
        s.push(char::from(DIGITS[(v % 62) as usize]));
        v /= 62;
    }
    s
}

fn arc(s: &str) -> Arc<[u8]> {
    Arc::from(s.as_bytes())
}

fn arc_bytes(b: &[u8]) -> Arc<[u8]> {
    Arc::from(b)
}

fn clamp_i64(ns: u64) -> i64 {
    i64::try_from(ns).unwrap_or(i64::MAX)
}
