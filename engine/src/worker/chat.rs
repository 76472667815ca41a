//! The worker's side of the chat layer: turning a client's PUB on a `$CHAT.` subject into an
//! operation for the conversation's owner, applying operations this worker owns, carrying
//! out their effects, and answering the requester.

use std::time::{SystemTime, UNIX_EPOCH};

use net::proto::{self, Publish};
use serde_json::{json, Value};

use super::conn::{Client, Identity};
use super::Worker;
use crate::chat::request::{self, Conv, Op, Request};
use crate::chat::shard::{Ctx, Effect};
use crate::chat::{self as chat_layer, ChatError, Name, Outcome, ReplyTo, Requester, Target};
use crate::envelope::{ChatEnvelope, ConnKey, Envelope, Msg, MsgView, Origin};
use crate::limits;
use crate::router::Route;

/// A request waiting for several workers' answers.
#[derive(Debug)]
pub(super) struct Gather {
    conn: ConnKey,
    reply: Option<Box<[u8]>>,
    kind: GatherKind,
    parts: Vec<Option<Outcome>>,
    remaining: usize,
}

#[derive(Debug)]
enum GatherKind {
    /// `rooms.list`: one part per worker, merged into a page of at most this many.
    List(usize),
    /// `broadcast`: one part per target.
    Broadcast(Vec<Conv>),
}

impl Worker {
    /// A PUB or HPUB on a `$CHAT.` subject.
    pub(super) fn handle_chat_pub(
        &mut self,
        slot: usize,
        p: &Publish<'_>,
        origin: Origin,
        strict: bool,
    ) {
        let target = chat_layer::classify(p.subject);
        let to = match (p.reply, target) {
            (Some(r), _) => ReplyTo::Subject(r.into()),
            (None, Target::Api(_)) => ReplyTo::Nobody,
            (None, _) => ReplyTo::ErrOnly,
        };
        // Refused here: a message's -ERR names the subject as published, and (as
        // nats-server's permission errors) comes without a +OK before it.
        let refuse = |to: ReplyTo| to.for_error(|| p.subject.into());
        if !matches!(to, ReplyTo::ErrOnly) {
            // Requests, and messages with a reply subject, are taken: any refusal is an
            // answer on the reply subject.
            self.ok(slot);
        }
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let from = match &c.identity {
            Identity::User(user) => Requester {
                conn: c.key,
                session: c.id,
                user: user.clone(),
            },
            Identity::Anonymous => {
                let e = ChatError::NoUser;
                return self.handle_answer(origin.conn, refuse(to), Err(e));
            }
            Identity::Invalid => {
                let e = ChatError::bad(format!(
                    "the CONNECT user is not a valid chat name (1 to {} characters of \
                     A-Z a-z 0-9 _ -)",
                    limits::MAX_CHAT_NAME_BYTES
                ));
                return self.handle_answer(origin.conn, refuse(to), Err(e));
            }
        };
        let message = |conv: Conv| {
            let msg = Msg::from_view(&MsgView {
                subject: p.subject,
                reply: None,
                headers: p.headers,
                payload: p.payload,
                origin,
            });
            Request::Op(Op::Publish(conv, msg))
        };
        let parsed = match target {
            Target::Api(op) => request::parse(op, p.payload),
            Target::Room(room) => chat_layer::parse_name(room)
                .map(|r| message(Conv::Room(r)))
                .ok_or_else(|| ChatError::bad("not a room name")),
            Target::Dm(user) => chat_layer::parse_name(user)
                .map(|u| message(Conv::Dm(u)))
                .ok_or_else(|| ChatError::bad("not a user name")),
            Target::Refused => Err(ChatError::Forbidden("nobody may publish there".into())),
        };
        let request = match parsed {
            Ok(r) => r,
            Err(e) => return self.handle_answer(origin.conn, refuse(to), Err(e)),
        };
        if matches!(to, ReplyTo::ErrOnly) {
            self.ok(slot);
        }
        match request {
            Request::Whoami => {
                let me = json!({"user": &*from.user, "session": from.session});
                self.handle_answer(origin.conn, to, Ok(me));
            }
            Request::Op(Op::List(page)) => {
                let workers = self.shared.config.workers;
                let kind = GatherKind::List(page.limit);
                if let Some(id) = self.start_gather(slot, to, kind, workers) {
                    for w in 0..workers {
                        let part = ReplyTo::Part {
                            id,
                            index: w as u32,
                        };
                        let op = Op::List(page.clone());
                        self.chat_request(slot, w, from.clone(), op, part);
                    }
                }
            }
            Request::Op(op) => {
                let Some(Route::Worker(owner)) = self.router.op(&op, &from.user) else {
                    return;
                };
                if let Op::Join(room) = &op {
                    // Noted before the owner answers, so that the `Gone` sent when the
                    // session closes always follows the join on the same ring. Refused
                    // joins stay noted too (the owner ignores them): hence the cap.
                    let Some(c) = self.clients.at(slot) else {
                        return;
                    };
                    if !c.chat_rooms.contains(room) {
                        if c.chat_rooms.len() >= limits::MAX_JOINED_ROOMS_PER_SESSION {
                            let e = ChatError::TooMany("too many rooms joined on this session");
                            return self.handle_answer(origin.conn, to, Err(e));
                        }
                        c.chat_rooms.insert(room.clone());
                    }
                }
                self.chat_request(slot, owner, from, op, to);
            }
            Request::Broadcast { targets, data } => {
                let n = targets.len();
                let kind = GatherKind::Broadcast(targets.clone());
                let Some(id) = self.start_gather(slot, to, kind, n) else {
                    return;
                };
                // One copy of the text for every target: each owner stamps its own delivery
                // (subject, sender, sequence) from it.
                let msg = Msg::from_view(&MsgView {
                    subject: p.subject,
                    reply: None,
                    headers: None,
                    payload: &data,
                    origin,
                });
                for (i, conv) in targets.into_iter().enumerate() {
                    let Route::Worker(owner) = self.router.conversation(&conv, &from.user);
                    let part = ReplyTo::Part {
                        id,
                        index: i as u32,
                    };
                    let op = Op::Publish(conv, msg.clone());
                    self.chat_request(slot, owner, from.clone(), op, part);
                }
            }
        }
        if strict {
            // As for plain publishes: a verbose or pedantic session sees the effects of
            // this op before the reply to its next one.
            self.barrier(slot);
        }
    }

    /// Chat traffic from another worker.
    pub(super) fn handle_chat_envelope(&mut self, env: ChatEnvelope) {
        match env {
            ChatEnvelope::Request { from, op, to } => self.apply_chat(&from, op, to),
            ChatEnvelope::Answer {
                conn, to, outcome, ..
            } => self.handle_answer(conn, to, outcome),
            ChatEnvelope::Gone {
                conn,
                session,
                user,
                rooms,
            } => self.handle_gone(conn, session, &user, &rooms),
        }
    }

    /// Sends `op` to its owner (or applies it here), behind this client's earlier publishes
    /// to that owner; a later PING's barrier covers it.
    ///
    /// A request sent to another worker counts what it carries and the most its answer can
    /// take against the client's in-flight bytes; past
    /// [`limits::CHAT_IN_FLIGHT_BYTES_PER_CONN`] the client's parsing pauses behind a
    /// barrier until every owner has answered (the answers are then in its outbound, where
    /// the stall mark and the write deadline take over). A request applied here needs no
    /// barrier: its answer is in the outbound already. Rejected: a cap on requests in flight
    /// answered `429`, which would refuse a client that pipelines many small requests while
    /// still letting a few history requests build megabytes each.
    fn chat_request(&mut self, slot: usize, owner: usize, from: Requester, op: Op, to: ReplyTo) {
        if owner == self.id {
            self.apply_chat(&from, op, to);
            return;
        }
        let answer = op.answer_bytes(self.shared.config.max_payload);
        let env = Envelope::Chat(Box::new(ChatEnvelope::Request { from, op, to }));
        let mut full = false;
        if let Some(c) = self.clients.at(slot) {
            c.sent_to |= 1 << owner;
            c.chat_in_flight += env.weight() + answer;
            full = c.chat_in_flight >= limits::CHAT_IN_FLIGHT_BYTES_PER_CONN;
        }
        self.send(owner, env);
        if full {
            // Behind the request on its ring, so its answer comes before the ack.
            self.barrier(slot);
        }
    }

    /// Applies an operation on a conversation this worker owns.
    fn apply_chat(&mut self, from: &Requester, op: Op, to: ReplyTo) {
        let mut effects = std::mem::take(&mut self.effects);
        {
            let mut ctx = Ctx {
                now_ms: now_ms(),
                index: &self.shared.sublist,
                out: &mut effects,
            };
            self.chat.handle(from, op, to, &mut ctx);
        }
        self.run_effects(&mut effects);
        self.effects = effects;
    }

    fn handle_gone(&mut self, conn: ConnKey, session: u64, user: &Name, rooms: &[Name]) {
        let mut effects = std::mem::take(&mut self.effects);
        {
            let mut ctx = Ctx {
                now_ms: now_ms(),
                index: &self.shared.sublist,
                out: &mut effects,
            };
            self.chat.handle_gone(conn, session, user, rooms, &mut ctx);
        }
        self.run_effects(&mut effects);
        self.effects = effects;
    }

    fn run_effects(&mut self, effects: &mut Vec<Effect>) {
        for effect in effects.drain(..) {
            match effect {
                Effect::Fanout { msg, sets } => {
                    let mut owned = Some(msg.clone());
                    super::fanout::fan_out(self, &sets, &msg.view(), &mut owned, false);
                }
                Effect::Answer { conn, to, outcome } => {
                    let w = usize::from(conn.worker);
                    if w == self.id {
                        self.handle_answer(conn, to, outcome);
                    } else {
                        let bytes = match &outcome {
                            Ok(v) => json_len(v),
                            Err(_) => 128,
                        };
                        let env = ChatEnvelope::Answer {
                            conn,
                            to,
                            outcome,
                            bytes,
                        };
                        self.send(w, Envelope::Chat(Box::new(env)));
                    }
                }
            }
        }
    }

    /// Delivers an answer to a connection of this worker.
    fn handle_answer(&mut self, conn: ConnKey, to: ReplyTo, outcome: Outcome) {
        match to {
            ReplyTo::Nobody => {}
            ReplyTo::Subject(reply) => {
                let body = match outcome {
                    Ok(v) => v.to_string(),
                    Err(e) => e.to_json().to_string(),
                };
                self.deliver_reply(conn, &reply, body.as_bytes());
            }
            ReplyTo::ErrOnly => {}
            ReplyTo::Refused(subject) => {
                if outcome.is_err() {
                    let Some(c) = self.clients.get_mut(conn) else {
                        return;
                    };
                    if c.close.is_some() {
                        return;
                    }
                    let text = format!(
                        "'Permissions Violation for Publish to \"{}\"'",
                        String::from_utf8_lossy(&subject)
                    );
                    let slot = conn.slot as usize;
                    self.reply(slot, |w| proto::encode_err(w, &text));
                }
            }
            ReplyTo::Part { id, index } => self.handle_part(id, index as usize, outcome),
        }
    }

    /// Sends `payload` to the requester's own subscriptions matching `reply`, and to nobody
    /// else: an answer never travels through the shared index.
    fn deliver_reply(&mut self, conn: ConnKey, reply: &[u8], payload: &[u8]) {
        let view = MsgView {
            subject: reply,
            reply: None,
            headers: None,
            payload,
            origin: Origin {
                conn,
                no_responders: false,
                echo: true,
            },
        };
        self.deliver_to_own(&view);
    }

    /// Registers a request that waits for `parts` answers; `None` (answered `429`) when
    /// the client has too many waiting already.
    fn start_gather(
        &mut self,
        slot: usize,
        to: ReplyTo,
        kind: GatherKind,
        parts: usize,
    ) -> Option<u64> {
        let c = self.clients.at(slot)?;
        let conn = c.key;
        if c.gathers >= limits::MAX_GATHERS_PER_CONN {
            let e = ChatError::TooMany("too many requests in flight on this connection");
            self.handle_answer(conn, to, Err(e));
            return None;
        }
        c.gathers += 1;
        let reply = match to {
            ReplyTo::Subject(r) => Some(r),
            _ => None,
        };
        self.next_gather += 1;
        let id = self.next_gather;
        self.gathers.insert(
            id,
            Gather {
                conn,
                reply,
                kind,
                parts: (0..parts).map(|_| None).collect(),
                remaining: parts,
            },
        );
        Some(id)
    }

    fn handle_part(&mut self, id: u64, index: usize, outcome: Outcome) {
        let Some(g) = self.gathers.get_mut(&id) else {
            return;
        };
        let Some(part) = g.parts.get_mut(index) else {
            return;
        };
        if part.is_none() {
            *part = Some(outcome);
            g.remaining -= 1;
        }
        if g.remaining > 0 {
            return;
        }
        let Some(g) = self.gathers.remove(&id) else {
            return;
        };
        if let Some(c) = self.clients.get_mut(g.conn) {
            c.gathers = c.gathers.saturating_sub(1);
        }
        let parts = g.parts.into_iter().flatten();
        let body = match g.kind {
            GatherKind::List(limit) => {
                // Each shard sent its first `limit` rooms after the cursor: the page is the
                // first `limit` of them all, and there is more if any shard had more or
                // some were cut here.
                let mut more = false;
                let mut rooms: Vec<Value> = Vec::new();
                for mut part in parts.filter_map(Result::ok) {
                    more |= part["more"].as_bool().unwrap_or(false);
                    if let Value::Array(items) = part["rooms"].take() {
                        rooms.extend(items);
                    }
                }
                rooms.sort_by(|a, b| a["room"].as_str().cmp(&b["room"].as_str()));
                more |= rooms.len() > limit;
                rooms.truncate(limit);
                json!({ "rooms": rooms, "more": more })
            }
            GatherKind::Broadcast(targets) => {
                let results: Vec<Value> = targets
                    .iter()
                    .zip(parts)
                    .map(|(conv, outcome)| match outcome {
                        Ok(v) => v,
                        Err(e) => {
                            let mut v = e.to_json();
                            match conv {
                                Conv::Room(r) => v["room"] = json!(&**r),
                                Conv::Dm(u) => v["user"] = json!(&**u),
                            }
                            v
                        }
                    })
                    .collect();
                json!({ "results": results })
            }
        };
        if let Some(reply) = g.reply {
            self.deliver_reply(g.conn, &reply, body.to_string().as_bytes());
        }
    }

    /// A closing client leaves the presence of every room its session joined.
    pub(super) fn chat_session_gone(&mut self, c: &Client) {
        let Identity::User(user) = &c.identity else {
            return;
        };
        if c.chat_rooms.is_empty() {
            return;
        }
        let workers = self.shared.config.workers;
        let mut by_owner: Vec<Vec<Name>> = vec![Vec::new(); workers];
        for room in &c.chat_rooms {
            let Route::Worker(w) = self.router.room(room);
            by_owner[w].push(room.clone());
        }
        for (w, rooms) in by_owner.into_iter().enumerate() {
            if rooms.is_empty() {
                continue;
            }
            if w == self.id {
                self.handle_gone(c.key, c.id, user, &rooms);
            } else {
                let env = ChatEnvelope::Gone {
                    conn: c.key,
                    session: c.id,
                    user: user.clone(),
                    rooms,
                };
                self.send(w, Envelope::Chat(Box::new(env)));
            }
        }
    }
}

/// The length of `v` as JSON, counted without building it.
fn json_len(v: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut n = Count(0);
    // Writing a Value into a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut n, v);
    n.0
}

/// Server time for stamps, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
