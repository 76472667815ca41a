//! A session's ops: parsing a connection's input and handling each op (CONNECT, PUB, SUB,
//! UNSUB, PING, …) in order, including the `PING` barrier that makes `PONG` follow every
//! delivery the connection's earlier publishes made on other workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use net::proto::{self, Op, Publish};
use tracing::info;

use super::conn::{CloseReason, Identity, Opts};
use super::{fanout, Worker};
use crate::config::Auth;
use crate::counters::Counter;
use crate::envelope::{ConnKey, Envelope, MsgView, Origin, SubRef, SubState};
use crate::limits;
use crate::subject::{self, Pattern};
use crate::sublist::Change;

impl Worker {
    /// Parses `n` fresh bytes in `rbuf` (after any partial op kept from earlier reads).
    pub(super) fn handle_input(&mut self, slot: usize, n: usize) {
        let rbuf = std::mem::take(&mut self.rbuf);
        let partial = match self.clients.at(slot) {
            Some(c) => std::mem::take(&mut c.partial),
            None => Vec::new(),
        };
        if partial.is_empty() {
            let used = self.parse_ops(slot, &rbuf[..n]);
            if used < n {
                if let Some(c) = self.clients.at(slot) {
                    if c.close.is_none() {
                        // The tail of a split op, into the (empty) vector's allocation.
                        let mut partial = partial;
                        partial.extend_from_slice(&rbuf[used..n]);
                        c.partial = partial;
                    }
                }
            }
            // Otherwise the empty vector is dropped: a connection between ops keeps no
            // buffer.
        } else {
            let mut partial = partial;
            partial.extend_from_slice(&rbuf[..n]);
            let used = self.parse_ops(slot, &partial);
            partial.drain(..used);
            if partial.is_empty() && partial.capacity() > limits::READ_BUFFER_BYTES {
                partial = Vec::new();
            }
            if let Some(c) = self.clients.at(slot) {
                if c.close.is_none() {
                    c.partial = partial;
                }
            }
        }
        self.rbuf = rbuf;
    }

    /// Handles every complete op at the front of `data`; returns the bytes consumed.
    pub(super) fn parse_ops(&mut self, slot: usize, data: &[u8]) -> usize {
        let mut pos = 0;
        loop {
            let Some(c) = self.clients.at(slot) else {
                self.apply_pending_subs();
                return pos;
            };
            if c.close.is_some() || c.paused() {
                self.apply_pending_subs();
                return pos;
            }
            match c.parser.parse(&data[pos..]) {
                Ok(Some((op, used))) => {
                    pos += used;
                    if !matches!(op, Op::Sub(_)) {
                        self.apply_pending_subs();
                    }
                    self.handle_op(slot, op);
                }
                Ok(None) => {
                    self.apply_pending_subs();
                    return pos;
                }
                Err(e) => {
                    self.apply_pending_subs();
                    self.fail(slot, CloseReason::Protocol(e));
                    return pos;
                }
            }
        }
    }

    pub(super) fn handle_op(&mut self, slot: usize, op: Op<'_>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if !c.opts.authed && !matches!(op, Op::Connect(_)) {
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        match op {
            Op::Connect(json) => self.handle_connect(slot, json),
            Op::Ping => {
                if c.sent_to == 0 {
                    self.reply(slot, |w| proto::encode_pong(w));
                } else {
                    c.pongs_owed += 1;
                    self.barrier(slot);
                }
            }
            Op::Pong => c.pings_out = 0,
            Op::Info(_) | Op::Ok => {}
            Op::Pub(p) => self.handle_pub(slot, &p),
            Op::Sub(s) => self.handle_sub(slot, s.subject, s.queue, s.sid),
            Op::Unsub(u) => self.handle_unsub(slot, u.sid, u.max),
            // The server-side parser refuses both (ProtoError::ClientErr, unknown op).
            Op::Err(_) | Op::Msg(_) => {}
        }
    }

    pub(super) fn reply(
        &mut self,
        slot: usize,
        f: impl FnOnce(&mut net::outbound::OutboundWriter<'_>),
    ) {
        if let Some(c) = self.clients.at(slot) {
            f(&mut c.out.writer(&mut self.pool));
            self.queued(slot);
        }
    }

    pub(super) fn ok(&mut self, slot: usize) {
        let verbose = self.clients.at(slot).is_some_and(|c| c.opts.verbose);
        if verbose {
            self.reply(slot, |w| proto::encode_ok(w));
        }
    }

    pub(super) fn handle_connect(&mut self, slot: usize, json: &[u8]) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        // As nats-server, a later CONNECT updates the options of an earlier one.
        let mut connect = c.connect.clone();
        if let Err(e) = connect.update(json) {
            self.fail(slot, CloseReason::Protocol(e));
            return;
        }
        let authed = match &self.shared.config.auth {
            Auth::None => true,
            Auth::Token(t) => connect.auth_token.as_deref() == Some(t.as_str()),
            Auth::Users(users) => users.iter().any(|(u, p)| {
                connect.user.as_deref() == Some(u.as_str())
                    && connect.pass.as_deref() == Some(p.as_str())
            }),
        };
        if !authed {
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let first = !c.connected;
        if !first && connect.user != c.connect.user {
            // A session's user is fixed by its first CONNECT: chat state (presence,
            // subscriptions' owner) was built on it.
            self.fail(slot, CloseReason::AuthViolation);
            return;
        }
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        c.identity = match connect.user.as_deref() {
            None | Some("") => Identity::Anonymous,
            Some(u) => {
                crate::chat::parse_name(u.as_bytes()).map_or(Identity::Invalid, Identity::User)
            }
        };
        c.opts = Opts {
            verbose: connect.verbose,
            pedantic: connect.pedantic,
            echo: connect.echo,
            headers: connect.headers,
            no_responders: connect.no_responders,
            authed: true,
        };
        c.parser.set_headers_allowed(connect.headers);
        c.auth_deadline = None;
        c.connected = true;
        if first {
            info!(cid = c.id, peer = %c.peer, name = connect.name.as_deref().unwrap_or(""),
                lang = connect.lang.as_deref().unwrap_or(""),
                user = connect.user.as_deref().unwrap_or(""), "client connected");
        }
        c.connect = connect;
        self.ok(slot);
    }

    pub(super) fn handle_pub(&mut self, slot: usize, p: &Publish<'_>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let origin = Origin {
            conn: c.key,
            no_responders: c.opts.no_responders,
            echo: c.opts.echo,
        };
        let strict = c.opts.verbose || c.opts.pedantic;
        let chat = crate::chat::is_chat(p.subject);
        // As nats-server: a pedantic client is told about a wildcard or malformed subject,
        // then gets its +OK; a wildcard subject is still delivered (literally), and one with
        // an empty token matches no subscription (the index's rule).
        if !chat && c.opts.pedantic && subject::check_publish(p.subject, true).is_err() {
            self.reply(slot, |w| proto::encode_err(w, "'Invalid Publish Subject'"));
        }
        if !chat {
            // A chat publish gets its +OK from the chat layer, which may refuse it first.
            self.ok(slot);
        }
        let counters = &self.shared.counters[self.id];
        counters.add(Counter::InMsgs, 1);
        counters.add(Counter::InBytes, p.payload.len() as u64);
        if chat {
            self.handle_chat_pub(slot, p, origin, strict);
            return;
        }
        let view = MsgView {
            subject: p.subject,
            reply: p.reply,
            headers: p.headers,
            payload: p.payload,
            origin,
        };
        let mut scratch = std::mem::take(&mut self.scratch);
        let sent = fanout::publish(self, &view, &mut scratch);
        self.scratch = scratch;
        self.flush_js_answers();
        if sent != 0 {
            if let Some(c) = self.clients.at(slot) {
                c.sent_to |= sent;
            }
            if self.js_request_sent(p.subject, sent) {
                // One JetStream API request in flight per connection: its answer (a stream
                // list, a message, up to megabytes) is built before the next is read, so a
                // client that pipelines requests and never reads cannot have answers piled
                // up between workers for it (the chat layer's rule, with one request's
                // answer as the budget: limits::CHAT_IN_FLIGHT_BYTES_PER_CONN).
                self.barrier(slot);
            }
        }
    }

    /// Pauses the client's parsing until every worker its publishes and requests reached
    /// since the last barrier has handled them (their deliveries are in the subscribers'
    /// outbound queues, chat owners have answered).
    pub(super) fn barrier(&mut self, slot: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        let key = c.key;
        c.chat_in_flight = 0;
        let mut mask = std::mem::take(&mut c.sent_to);
        c.barriers_out += mask.count_ones();
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            self.send(w, Envelope::Barrier(key));
        }
    }

    pub(super) fn barrier_acked(&mut self, conn: ConnKey) {
        let Some(c) = self.clients.get_mut(conn) else {
            return;
        };
        c.barriers_out = c.barriers_out.saturating_sub(1);
        if c.barriers_out > 0 {
            return;
        }
        let pongs = std::mem::take(&mut c.pongs_owed);
        {
            let mut w = c.out.writer(&mut self.pool);
            for _ in 0..pongs {
                proto::encode_pong(&mut w);
            }
        }
        let slot = conn.slot as usize;
        self.mark_dirty(slot);
        // Resume: parse what was held back, then read the socket again (its readiness
        // edge may have been consumed while paused).
        self.resume(slot);
        self.defer(slot);
    }

    /// Parses the ops held in a client's partial buffer (after a pause).
    pub(super) fn resume(&mut self, slot: usize) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if c.partial.is_empty() {
            return;
        }
        let mut partial = std::mem::take(&mut c.partial);
        let used = self.parse_ops(slot, &partial);
        partial.drain(..used);
        if let Some(c) = self.clients.at(slot) {
            if c.close.is_none() {
                c.partial = partial;
            }
        }
    }

    pub(super) fn handle_sub(
        &mut self,
        slot: usize,
        subj: &[u8],
        queue: Option<&[u8]>,
        sid: &[u8],
    ) {
        let Ok(pattern) = Pattern::parse(subj) else {
            self.reply(slot, |w| proto::encode_err(w, "'Invalid Subject'"));
            return;
        };
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if !c.subs.contains_key(sid) {
            if c.subs.len() >= self.shared.config.max_subscriptions {
                // As nats-server (max_subscriptions): refuse this SUB, keep the connection.
                self.reply(slot, |w| {
                    proto::encode_err(w, "'maximum subscriptions exceeded'")
                });
                return;
            }
            let user = match &c.identity {
                Identity::User(u) => Some(u.clone()),
                _ => None,
            };
            let sub = SubRef(Arc::new(
                SubState::new(c.key, sid, pattern.clone(), queue)
                    .with_user(user)
                    .with_conn_flag(Arc::clone(&c.gone)),
            ));
            c.subs.insert(sid.into(), sub.clone());
            c.turn_changes += 1;
            self.inserted += 1;
            self.pending_subs.push(Change::Insert {
                pattern,
                queue: queue.map(Arc::from),
                sub,
            });
        }
        self.ok(slot);
    }

    pub(super) fn apply_pending_subs(&mut self) {
        if !self.pending_subs.is_empty() {
            self.shared.sublist.apply(self.pending_subs.drain(..));
            // Relaxed: see `Shared::js_waiting_interest`.
            if self.shared.js_waiting_interest.load(Ordering::Relaxed) {
                let crate::router::Route::Worker(owner) = self.router.jetstream();
                if owner == self.id {
                    self.tick_consumers();
                } else {
                    self.send(owner, Envelope::Interest);
                }
            }
        }
    }

    pub(super) fn handle_unsub(&mut self, slot: usize, sid: &[u8], max: Option<u64>) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if let Some(sub) = c.subs.get(sid) {
            let end_now = match max {
                None | Some(0) => true,
                Some(n) => sub.0.limit(n),
            };
            if end_now {
                self.end_subscription(slot, sid);
            }
        }
        self.ok(slot);
    }

    pub(super) fn end_subscription(&mut self, slot: usize, sid: &[u8]) {
        let Some(c) = self.clients.at(slot) else {
            return;
        };
        if let Some(sub) = c.subs.remove(sid) {
            c.turn_changes += 1;
            sub.0.close();
            self.shared
                .sublist
                .remove(&sub.0.pattern, sub.0.queue.as_deref(), &sub);
        }
    }
}
