//! The rooms and direct conversations one worker owns, and how an operation changes them.
//!
//! [`Shard::handle`] applies one operation and says what must happen as [`Effect`]s: messages
//! to fan out (to subscriber sets already filtered down to who may receive them) and answers
//! to send. The worker carries them out in order, so the effects of one operation reach each
//! destination worker in the order they were produced, behind everything produced earlier.
//!
//! # Who receives what
//! A room message or event is matched against the subscription index like any subject, then
//! each matched set is filtered to the subscriptions whose user is a member *now*; a direct
//! message's sets are filtered to the addressed user's subscriptions. The filtered sets are
//! cached per conversation and reused while neither the matched sets (compared by pointer:
//! the index replaces a set whenever it changes) nor the membership (a version number) have
//! changed, so a steady room costs one index match and a few pointer compares per message.
//!
//! # Bounds
//! Each window keeps at most `history` messages; all windows of the shard together keep at
//! most `history_bytes`: past it the shard's oldest kept message goes first, whichever
//! conversation it belongs to (a queue of what was kept, in order, finds it). Rooms and
//! direct conversations per shard, members per room and broadcast targets are capped in
//! [`crate::limits`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};

use serde_json::{json, Value};

use super::history::{Entry, Window};
use super::request::{Conv, NamePage, Op};
use super::{ChatError, Name, Outcome, ReplyTo, Requester, EVT_PREFIX, MSG_PREFIX};
use crate::limits;
use crate::msg::{ConnKey, Msg, MsgView, Origin, SubRef};
use crate::sublist::{Placed, QueueGroup, SubSet, Sublist};

/// Filtered subscriber sets for one delivery, shared by every worker it reaches.
pub type Audience = Arc<[Arc<SubSet<SubRef>>]>;

/// What the worker must do after an operation.
#[derive(Debug)]
pub enum Effect {
    /// Deliver `msg` to every subscriber in `sets` (already filtered).
    Fanout {
        /// The message, stamped.
        msg: Msg,
        /// Who may receive it.
        sets: Audience,
    },
    /// Answer a requester.
    Answer {
        /// The requester's connection.
        conn: ConnKey,
        /// Where the answer goes.
        to: ReplyTo,
        /// The result or the error.
        outcome: Outcome,
    },
}

/// What an operation needs from the worker: the time, the subscription index, and where to
/// put its effects.
pub struct Ctx<'a> {
    /// Milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The subscription index.
    pub index: &'a Sublist<SubRef>,
    /// Effects, appended in order.
    pub out: &'a mut Vec<Effect>,
}

/// Settings of one shard.
#[derive(Debug, Clone, Copy)]
pub struct ShardLimits {
    /// Messages each window keeps.
    pub history: usize,
    /// Bytes all windows of this shard keep together.
    pub history_bytes: u64,
    /// Rooms this shard holds.
    pub rooms: usize,
    /// Direct conversations this shard holds.
    pub dms: usize,
    /// Largest history page, in payload bytes (the server's `max_payload`).
    pub page_bytes: usize,
    /// Rooms one user may have created (and not closed) on this shard.
    pub rooms_per_user: u32,
    /// Direct conversations one user may have started on this shard.
    pub dms_per_user: u32,
    /// Room memberships this shard holds, over all its rooms.
    pub memberships: usize,
}

/// The chat state one worker owns.
pub struct Shard {
    limits: ShardLimits,
    rooms: HashMap<Name, Room>,
    dms: HashMap<(Name, Name), Dm>,
    /// What was kept, oldest first, to find the shard's oldest message.
    kept: VecDeque<Kept>,
    /// Messages in all windows.
    kept_len: usize,
    /// Bytes in all windows.
    kept_bytes: u64,
    next_incarnation: u64,
    /// Rooms created and direct conversations started, per user (for the per-user caps).
    started: HashMap<Name, Started>,
    /// Memberships over all rooms.
    memberships: usize,
    scratch: Vec<Arc<SubSet<SubRef>>>,
    /// The header block being stamped (reused).
    headers: Vec<u8>,
}

#[derive(Default)]
struct Started {
    rooms: u32,
    dms: u32,
}

struct Room {
    incarnation: u64,
    /// Who created it (their per-user room count goes down when it closes).
    creator: Name,
    private: bool,
    limit: Option<u32>,
    /// Hashed, not sorted: the audience filter looks every subscriber's user up here.
    members: HashSet<Name>,
    admins: BTreeSet<Name>,
    /// Present sessions per user: (connection, session id), in join order.
    present: BTreeMap<Name, Vec<(ConnKey, u64)>>,
    window: Window,
    /// Bumped on every membership change (invalidates the cached audiences).
    version: u64,
    msg_subject: Box<[u8]>,
    evt_subject: Box<[u8]>,
    msg_cache: Option<Cached>,
    evt_cache: Option<Cached>,
}

struct Dm {
    incarnation: u64,
    window: Window,
    /// Cached audiences toward the lower and the higher user name.
    caches: [Option<Cached>; 2],
}

struct Cached {
    /// The index's sets the audience was built from. Weak: a cache must not keep old
    /// versions of big sets (`>`) alive for a room that has gone quiet; a weak pointer
    /// still keeps the address from being reused, so comparing addresses stays exact.
    sources: Vec<Weak<SubSet<SubRef>>>,
    version: u64,
    sets: Option<Audience>,
}

#[derive(Clone)]
enum Key {
    Room(Name),
    Dm(Name, Name),
}

struct Kept {
    key: Key,
    incarnation: u64,
    seq: u64,
}

/// The origin of server-made messages (events): no connection, so no echo rule applies.
const SERVER_ORIGIN: Origin = Origin {
    conn: ConnKey {
        worker: u16::MAX,
        slot: u32::MAX,
        gen: u32::MAX,
    },
    no_responders: false,
    echo: true,
};

impl Shard {
    /// An empty shard.
    pub fn new(limits: ShardLimits) -> Shard {
        Shard {
            limits,
            rooms: HashMap::new(),
            dms: HashMap::new(),
            kept: VecDeque::new(),
            kept_len: 0,
            kept_bytes: 0,
            next_incarnation: 0,
            started: HashMap::new(),
            memberships: 0,
            scratch: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Rooms held.
    pub fn rooms(&self) -> usize {
        self.rooms.len()
    }

    /// Direct conversations held.
    pub fn dms(&self) -> usize {
        self.dms.len()
    }

    /// Messages and bytes kept in all windows.
    pub fn kept(&self) -> (usize, u64) {
        (self.kept_len, self.kept_bytes)
    }

    /// Applies `op` from `from`, answering to `to`.
    pub fn handle(&mut self, from: &Requester, op: Op, to: ReplyTo, ctx: &mut Ctx<'_>) {
        let outcome = match op {
            Op::Publish(conv, msg) => {
                let seq = match &conv {
                    Conv::Room(room) => self.publish_room(from, room, &msg, ctx),
                    Conv::Dm(peer) => self.publish_dm(from, peer, &msg, ctx),
                };
                // The acknowledgement is built only for a requester that will read it: most
                // messages are published without a reply subject.
                match (&to, seq) {
                    (ReplyTo::Nobody | ReplyTo::ErrOnly, Ok(_)) => return,
                    (_, Ok(seq)) => Ok(match &conv {
                        Conv::Room(room) => json!({"room": &**room, "seq": seq}),
                        Conv::Dm(peer) => json!({"user": &**peer, "seq": seq}),
                    }),
                    (_, Err(e)) => {
                        let to = to.for_error(|| conv.subject().into());
                        ctx.out.push(Effect::Answer {
                            conn: from.conn,
                            to,
                            outcome: Err(e),
                        });
                        return;
                    }
                }
            }
            Op::History(conv, q) => self.history(from, &conv, &q),
            Op::List(page) => Ok(self.list(&from.user, &page)),
            Op::Create {
                room,
                private,
                limit,
            } => self.create(from, room, private, limit),
            op => self.room_op(from, op, ctx),
        };
        match (&to, &outcome) {
            (ReplyTo::Nobody, _) | (ReplyTo::ErrOnly, Ok(_)) => {}
            _ => ctx.out.push(Effect::Answer {
                conn: from.conn,
                to,
                outcome,
            }),
        }
    }

    /// A session has closed: it leaves the presence of `rooms` (those it joined here).
    pub fn handle_gone(
        &mut self,
        conn: ConnKey,
        session: u64,
        user: &Name,
        rooms: &[Name],
        ctx: &mut Ctx<'_>,
    ) {
        for name in rooms {
            let Some(room) = self.rooms.get_mut(name) else {
                continue;
            };
            let Some(sessions) = room.present.get_mut(user) else {
                continue;
            };
            let Some(i) = sessions.iter().position(|&(c, _)| c == conn) else {
                continue;
            };
            sessions.remove(i);
            let event = if sessions.is_empty() {
                room.present.remove(user);
                json!({"event": "leave", "room": &**name, "user": &**user,
                    "reason": "disconnected", "session": session})
            } else {
                json!({"event": "remove", "room": &**name, "user": &**user, "session": session})
            };
            room.event(&event, &mut self.scratch, ctx);
        }
    }

    fn create(
        &mut self,
        from: &Requester,
        name: Name,
        private: bool,
        limit: Option<u32>,
    ) -> Outcome {
        if self.rooms.contains_key(&name) {
            return Err(ChatError::Conflict(format!("room {name} exists")));
        }
        if self.rooms.len() >= self.limits.rooms {
            return Err(ChatError::TooMany("too many rooms"));
        }
        if self.memberships >= self.limits.memberships {
            return Err(too_many_memberships());
        }
        let started = self.started.entry(from.user.clone()).or_default();
        if started.rooms >= self.limits.rooms_per_user {
            return Err(ChatError::TooMany(
                "too many rooms created by this user: close some first",
            ));
        }
        started.rooms += 1;
        self.memberships += 1;
        let incarnation = self.incarnation();
        let room = Room {
            incarnation,
            creator: from.user.clone(),
            private,
            limit,
            members: HashSet::from([from.user.clone()]),
            admins: BTreeSet::from([from.user.clone()]),
            present: BTreeMap::new(),
            window: Window::default(),
            version: 0,
            msg_subject: [MSG_PREFIX, name.as_bytes()].concat().into(),
            evt_subject: [EVT_PREFIX, name.as_bytes()].concat().into(),
            msg_cache: None,
            evt_cache: None,
        };
        self.rooms.insert(name.clone(), room);
        Ok(json!({"room": &*name, "private": private, "limit": limit}))
    }

    /// The operations on one existing room, other than publishing and history.
    fn room_op(&mut self, from: &Requester, op: Op, ctx: &mut Ctx<'_>) -> Outcome {
        let Some(name) = op.room().cloned() else {
            return Err(ChatError::bad("not a room operation"));
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return Err(no_such_room(&name));
        };
        let me = &from.user;
        let is_member = room.members.contains(me);
        let is_admin = room.admins.contains(me);
        let scratch = &mut self.scratch;
        match op {
            Op::Join(_) => {
                if !is_member {
                    if room.private {
                        return Err(ChatError::Forbidden(format!(
                            "room {name} is private: an admin must add you"
                        )));
                    }
                    let cap = self.limits.memberships;
                    room.admit(me, &name, &mut self.memberships, cap)?;
                }
                let sessions = room.present.entry(me.clone()).or_default();
                if !sessions.iter().any(|&(c, _)| c == from.conn) {
                    let first = sessions.is_empty();
                    sessions.push((from.conn, from.session));
                    let event = if first { "join" } else { "add" };
                    let event = json!({"event": event, "room": &*name, "user": &**me,
                        "session": from.session});
                    room.event(&event, scratch, ctx);
                }
                Ok(json!({"room": &*name, "seq": room.window.last(),
                    "members": room.members.len(), "epoch": room.incarnation}))
            }
            Op::Part(_) => {
                let sessions = room.present.get_mut(me);
                let Some(sessions) = sessions.filter(|s| s.iter().any(|&(c, _)| c == from.conn))
                else {
                    return Err(ChatError::Conflict(format!(
                        "this session has not joined {name}"
                    )));
                };
                sessions.retain(|&(c, _)| c != from.conn);
                let event = if sessions.is_empty() {
                    room.present.remove(me);
                    json!({"event": "leave", "room": &*name, "user": &**me, "reason": "parted",
                        "session": from.session})
                } else {
                    json!({"event": "remove", "room": &*name, "user": &**me,
                        "session": from.session})
                };
                room.event(&event, scratch, ctx);
                Ok(json!({"room": &*name, "session": from.session}))
            }
            Op::Leave(_) => {
                if !is_member {
                    return Err(not_member(&name));
                }
                if room.is_last_admin(me) {
                    return Err(ChatError::Conflict(
                        "the last admin cannot leave: promote another member or close the room"
                            .into(),
                    ));
                }
                room.remove_member(me);
                self.memberships -= 1;
                let event = json!({"event": "leave", "room": &*name, "user": &**me,
                    "reason": "left"});
                room.event(&event, scratch, ctx);
                Ok(json!({"room": &*name}))
            }
            Op::Add(_, user) => {
                require_admin(is_admin, &name)?;
                if room.members.contains(&user) {
                    return Err(ChatError::Conflict(format!(
                        "{user} is already a member of {name}"
                    )));
                }
                let cap = self.limits.memberships;
                room.admit(&user, &name, &mut self.memberships, cap)?;
                Ok(json!({"room": &*name, "user": &*user}))
            }
            Op::Kick(_, user) => {
                room.require_admin_over(is_admin, &user, &name)?;
                if room.is_last_admin(&user) {
                    return Err(ChatError::Conflict(
                        "the last admin cannot be removed".into(),
                    ));
                }
                room.remove_member(&user);
                self.memberships -= 1;
                let event = json!({"event": "leave", "room": &*name, "user": &*user,
                    "reason": "kicked", "by": &**me});
                room.event(&event, scratch, ctx);
                Ok(json!({"room": &*name, "user": &*user}))
            }
            Op::Promote(_, user) => {
                room.require_admin_over(is_admin, &user, &name)?;
                room.admins.insert(user.clone());
                Ok(json!({"room": &*name, "user": &*user}))
            }
            Op::Demote(_, user) => {
                room.require_admin_over(is_admin, &user, &name)?;
                if room.is_last_admin(&user) {
                    return Err(ChatError::Conflict(
                        "a room keeps at least one admin: promote another member first".into(),
                    ));
                }
                room.admins.remove(&user);
                Ok(json!({"room": &*name, "user": &*user}))
            }
            Op::Limit(_, limit) => {
                require_admin(is_admin, &name)?;
                if let Some(n) = limit {
                    if (n as usize) < room.members.len() {
                        return Err(ChatError::Conflict(format!(
                            "limit {n} is below the {} current members",
                            room.members.len()
                        )));
                    }
                }
                room.limit = limit;
                Ok(json!({"room": &*name, "limit": limit}))
            }
            Op::Close(_) => {
                require_admin(is_admin, &name)?;
                let event = json!({"event": "close", "room": &*name, "by": &**me});
                room.event(&event, scratch, ctx);
                if let Some(room) = self.rooms.remove(&name) {
                    self.kept_len -= room.window.len();
                    self.kept_bytes -= room.window.bytes();
                    self.memberships -= room.members.len();
                    if let Some(s) = self.started.get_mut(&room.creator) {
                        s.rooms -= 1;
                        if s.rooms == 0 && s.dms == 0 {
                            self.started.remove(&room.creator);
                        }
                    }
                }
                Ok(json!({"room": &*name}))
            }
            Op::Info(_, page) => {
                if room.private && !is_member {
                    return Err(not_member(&name));
                }
                let (members, more_members) = page.cut(room.members.iter().map(|m| &**m));
                let (admins, more_admins) = page.cut(room.admins.iter().map(|m| &**m));
                Ok(
                    json!({"room": &*name, "private": room.private, "limit": room.limit,
                    "seq": room.window.last(), "epoch": room.incarnation,
                    "members": members, "admins": admins,
                    "more": more_members || more_admins}),
                )
            }
            Op::Presence(_) => {
                if !is_member {
                    return Err(not_member(&name));
                }
                let online: Vec<Value> = room
                    .present
                    .iter()
                    .map(|(u, s)| json!({"user": &**u, "sessions": s.len()}))
                    .collect();
                Ok(json!({"room": &*name, "online": online}))
            }
            _ => Err(ChatError::bad("not a room operation")),
        }
    }

    /// This shard's part of a `rooms.list` page: `{"rooms": [...], "more": bool}`.
    fn list(&self, me: &Name, page: &NamePage) -> Value {
        let visible = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.private || r.members.contains(me))
            .map(|(name, _)| &**name);
        let (names, more) = page.cut(visible);
        let rooms: Vec<Value> = names
            .into_iter()
            .filter_map(|name| {
                let r = self.rooms.get(name)?;
                Some(json!({"room": name, "private": r.private, "limit": r.limit,
                    "members": r.members.len(), "member": r.members.contains(me),
                    "admin": r.admins.contains(me)}))
            })
            .collect();
        json!({"rooms": rooms, "more": more})
    }

    fn history(&self, from: &Requester, conv: &Conv, q: &super::request::HistoryQuery) -> Outcome {
        let (label, window) = match conv {
            Conv::Room(name) => {
                let room = self.rooms.get(name).ok_or_else(|| no_such_room(name))?;
                if !room.members.contains(&from.user) {
                    return Err(not_member(name));
                }
                (
                    json!({"room": &**name}),
                    Some((room.incarnation, &room.window)),
                )
            }
            Conv::Dm(peer) => (
                json!({"user": &**peer}),
                self.dms
                    .get(&pair(&from.user, peer))
                    // A direct conversation is never closed: its epoch is always 0 (its
                    // incarnation only tells its kept entries apart internally).
                    .map(|d| (0, &d.window)),
            ),
        };
        let empty = Window::default();
        let (epoch, window) = window.unwrap_or((0, &empty));
        if q.epoch.is_some_and(|e| e != epoch) {
            return Err(ChatError::Gone(format!(
                "the conversation was closed and created again (epoch now {epoch})"
            )));
        }
        let page = window.page(q, self.limits.page_bytes)?;
        let mut out = label;
        out["epoch"] = json!(epoch);
        out["first"] = json!(window.first());
        out["last"] = json!(window.last());
        out["more"] = json!(page.more);
        out["messages"] = Value::Array(page.entries.iter().map(|e| e.to_json()).collect());
        Ok(out)
    }

    fn publish_room(
        &mut self,
        from: &Requester,
        name: &Name,
        msg: &Msg,
        ctx: &mut Ctx<'_>,
    ) -> Result<u64, ChatError> {
        let Some(room) = self.rooms.get_mut(name) else {
            return Err(no_such_room(name));
        };
        if !room.members.contains(&from.user) {
            return Err(not_member(name));
        }
        let seq = room.window.next_seq();
        let time_ms = room.window.time(ctx.now_ms);
        let stamped = stamp(
            &room.msg_subject,
            msg,
            &from.user,
            seq,
            time_ms,
            &mut self.headers,
        );
        let Room {
            members,
            msg_cache,
            version,
            msg_subject,
            window,
            incarnation,
            ..
        } = room;
        let keep = |s: &SubRef| s.0.user.as_ref().is_some_and(|u| members.contains(u));
        let sets = audience(
            msg_cache,
            *version,
            msg_subject,
            ctx.index,
            &mut self.scratch,
            keep,
        );
        let entry = Entry {
            seq,
            from: from.user.clone(),
            time_ms,
            msg: stamped,
        };
        let (before, after) = keep_and_fan_out(window, entry, sets, self.limits.history, ctx);
        let incarnation = *incarnation;
        self.account(before, after, Key::Room(name.clone()), incarnation, seq);
        Ok(seq)
    }

    fn publish_dm(
        &mut self,
        from: &Requester,
        peer: &Name,
        msg: &Msg,
        ctx: &mut Ctx<'_>,
    ) -> Result<u64, ChatError> {
        let key = pair(&from.user, peer);
        if !self.dms.contains_key(&key) {
            if self.dms.len() >= self.limits.dms {
                return Err(ChatError::TooMany("too many direct conversations"));
            }
            let started = self.started.entry(from.user.clone()).or_default();
            if started.dms >= self.limits.dms_per_user {
                return Err(ChatError::TooMany(
                    "too many direct conversations started by this user",
                ));
            }
            started.dms += 1;
            let incarnation = self.incarnation();
            self.dms.insert(
                key.clone(),
                Dm {
                    incarnation,
                    window: Window::default(),
                    caches: [None, None],
                },
            );
        }
        let Some(dm) = self.dms.get_mut(&key) else {
            return Err(ChatError::TooMany("too many direct conversations"));
        };
        let seq = dm.window.next_seq();
        let time_ms = dm.window.time(ctx.now_ms);
        let subject: Vec<u8> = Conv::Dm(peer.clone()).subject();
        let stamped = stamp(&subject, msg, &from.user, seq, time_ms, &mut self.headers);
        let side = usize::from(**peer != *key.0);
        let keep = |s: &SubRef| s.0.user.as_ref() == Some(peer);
        let sets = audience(
            &mut dm.caches[side],
            0,
            &subject,
            ctx.index,
            &mut self.scratch,
            keep,
        );
        let entry = Entry {
            seq,
            from: from.user.clone(),
            time_ms,
            msg: stamped,
        };
        let (before, after) =
            keep_and_fan_out(&mut dm.window, entry, sets, self.limits.history, ctx);
        let incarnation = dm.incarnation;
        self.account(before, after, Key::Dm(key.0, key.1), incarnation, seq);
        Ok(seq)
    }

    /// Records a kept message and enforces the shard's byte budget.
    fn account(
        &mut self,
        before: (usize, u64),
        after: (usize, u64),
        key: Key,
        incarnation: u64,
        seq: u64,
    ) {
        self.kept_len = self.kept_len + after.0 - before.0;
        self.kept_bytes = self.kept_bytes + after.1 - before.1;
        self.kept.push_back(Kept {
            key,
            incarnation,
            seq,
        });
        while self.kept_bytes > self.limits.history_bytes {
            let Some(k) = self.kept.pop_front() else {
                break;
            };
            let Some(window) = self.window_of(&k) else {
                continue;
            };
            if window.first() == k.seq && !window.is_empty() {
                if let Some(w) = window.pop_oldest() {
                    self.kept_len -= 1;
                    self.kept_bytes -= w;
                }
            }
        }
        // Entries for messages that already left their window (count cap, closed room) are
        // skipped above when they come up; compact when they dominate, so the queue stays
        // within a constant factor of what is kept.
        if self.kept.len() > 2 * self.kept_len + 1024 {
            let mut kept = std::mem::take(&mut self.kept);
            kept.retain(|k| {
                self.window_of(k)
                    .is_some_and(|w| !w.is_empty() && w.first() <= k.seq)
            });
            self.kept = kept;
        }
    }

    fn window_of(&mut self, k: &Kept) -> Option<&mut Window> {
        match &k.key {
            Key::Room(name) => self
                .rooms
                .get_mut(name)
                .filter(|r| r.incarnation == k.incarnation)
                .map(|r| &mut r.window),
            Key::Dm(a, b) => self
                .dms
                .get_mut(&(a.clone(), b.clone()))
                .filter(|d| d.incarnation == k.incarnation)
                .map(|d| &mut d.window),
        }
    }

    fn incarnation(&mut self) -> u64 {
        self.next_incarnation += 1;
        self.next_incarnation
    }
}

impl Room {
    /// Makes `user` a member, unless the room is at its limit (or the hard cap), or the
    /// shard at its cap of `memberships`.
    fn admit(
        &mut self,
        user: &Name,
        name: &Name,
        memberships: &mut usize,
        cap: usize,
    ) -> Result<(), ChatError> {
        let n = self.members.len();
        if n >= limits::MAX_ROOM_MEMBERS || self.limit.is_some_and(|l| n >= l as usize) {
            return Err(ChatError::Conflict(format!("room {name} is full")));
        }
        if *memberships >= cap {
            return Err(too_many_memberships());
        }
        *memberships += 1;
        self.members.insert(user.clone());
        self.version += 1;
        Ok(())
    }

    /// Whether `user` is the room's only admin.
    fn is_last_admin(&self, user: &Name) -> bool {
        self.admins.len() == 1 && self.admins.contains(user)
    }

    /// The requester must be an admin, and `user` (whom the operation is about) a member.
    fn require_admin_over(
        &self,
        is_admin: bool,
        user: &Name,
        name: &Name,
    ) -> Result<(), ChatError> {
        require_admin(is_admin, name)?;
        if !self.members.contains(user) {
            return Err(user_not_member(user, name));
        }
        Ok(())
    }

    fn remove_member(&mut self, user: &Name) {
        self.members.remove(user);
        self.admins.remove(user);
        self.present.remove(user);
        self.version += 1;
    }

    /// Sends a presence event to the members subscribed to the room's events.
    fn event(&mut self, event: &Value, scratch: &mut Vec<Arc<SubSet<SubRef>>>, ctx: &mut Ctx<'_>) {
        let Room {
            members,
            evt_cache,
            version,
            evt_subject,
            ..
        } = self;
        let keep = |s: &SubRef| s.0.user.as_ref().is_some_and(|u| members.contains(u));
        let Some(sets) = audience(evt_cache, *version, evt_subject, ctx.index, scratch, keep)
        else {
            return;
        };
        let payload = event.to_string();
        let msg = Msg::from_view(&MsgView {
            subject: evt_subject,
            reply: None,
            headers: None,
            payload: payload.as_bytes(),
            origin: SERVER_ORIGIN,
        });
        ctx.out.push(Effect::Fanout { msg, sets });
    }
}

/// Fans an ordered message out to `sets` (if anyone) and keeps it in `window` (at most `cap`
/// messages); returns the window's (messages, bytes) before and after, for the shard's
/// accounting.
fn keep_and_fan_out(
    window: &mut Window,
    entry: Entry,
    sets: Option<Audience>,
    cap: usize,
    ctx: &mut Ctx<'_>,
) -> ((usize, u64), (usize, u64)) {
    if let Some(sets) = sets {
        ctx.out.push(Effect::Fanout {
            msg: entry.msg.clone(),
            sets,
        });
    }
    let before = (window.len(), window.bytes());
    window.push(entry, cap);
    (before, (window.len(), window.bytes()))
}

/// The subscriber sets `subject` reaches, filtered by `keep`; from `cache` when neither the
/// index's sets nor `version` changed since it was filled. `None`: nobody.
fn audience(
    cache: &mut Option<Cached>,
    version: u64,
    subject: &[u8],
    index: &Sublist<SubRef>,
    scratch: &mut Vec<Arc<SubSet<SubRef>>>,
    keep: impl Fn(&SubRef) -> bool,
) -> Option<Audience> {
    scratch.clear();
    index.matches(subject, scratch);
    if let Some(c) = cache {
        let same = c.version == version
            && c.sources.len() == scratch.len()
            && c.sources
                .iter()
                .zip(scratch.iter())
                .all(|(a, b)| std::ptr::eq(a.as_ptr(), Arc::as_ptr(b)));
        if same {
            scratch.clear();
            return c.sets.clone();
        }
    }
    let filtered: Vec<Arc<SubSet<SubRef>>> = scratch
        .iter()
        .filter_map(|set| filter(set, &keep))
        .map(Arc::new)
        .collect();
    let sets = (!filtered.is_empty()).then(|| Audience::from(filtered));
    let sources = scratch.iter().map(Arc::downgrade).collect();
    scratch.clear();
    *cache = Some(Cached {
        sources,
        version,
        sets: sets.clone(),
    });
    sets
}

/// The part of `set` that `keep` admits, or `None` if that is nobody.
fn filter(set: &SubSet<SubRef>, keep: &impl Fn(&SubRef) -> bool) -> Option<SubSet<SubRef>> {
    let plain: Box<[SubRef]> = set.plain.iter().filter(|s| keep(s)).cloned().collect();
    let queues: Box<[QueueGroup<SubRef>]> = set
        .queues
        .iter()
        .filter_map(|g| {
            let members: Box<[SubRef]> = g.members.iter().filter(|s| keep(s)).cloned().collect();
            (!members.is_empty()).then(|| QueueGroup {
                name: g.name.clone(),
                workers: workers_of(&members),
                members,
            })
        })
        .collect();
    if plain.is_empty() && queues.is_empty() {
        return None;
    }
    Some(SubSet {
        pattern: set.pattern.clone(),
        plain_workers: workers_of(&plain),
        plain,
        queues,
    })
}

fn workers_of(subs: &[SubRef]) -> u64 {
    subs.iter().fold(0, |m, s| m | 1 << s.worker())
}

/// The message as delivered: on `subject`, without a reply subject, with the sender,
/// sequence and time stamped in its headers (replacing any `Chat-` header it carried).
fn stamp(
    subject: &[u8],
    msg: &Msg,
    from: &str,
    seq: u64,
    now_ms: u64,
    headers: &mut Vec<u8>,
) -> Msg {
    use std::io::Write as _;
    let view = msg.view();
    headers.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(
        headers,
        "NATS/1.0\r\nChat-From: {from}\r\nChat-Seq: {seq}\r\nChat-Time: {now_ms}\r\n"
    );
    if let Some(h) = view.headers {
        // Skip the version line; keep only well-formed header lines that are not `Chat-`
        // ones. Anything a client's header parser could read differently from ours is
        // dropped: a line starting with a space or tab (obsolete folding: it would continue
        // the line before it, a stamp), a control byte such as a lone CR or LF (some parsers
        // end a line there and would read a forged `Chat-From` after it), a line without a
        // name. Lines end at CRLF only, so a lone CR or LF stays inside its line and drops
        // it whole (splitting at LF too would keep `X: a` of `X: a\nChat-From: …`: safe, as
        // the `Chat-` line after it is dropped, but not what docs/chat.md says).
        for line in crlf_lines(h).skip(1) {
            if kept_header(line) {
                headers.extend_from_slice(line);
                headers.extend_from_slice(b"\r\n");
            }
        }
    }
    headers.extend_from_slice(b"\r\n");
    Msg::from_view(&MsgView {
        subject,
        reply: None,
        headers: Some(headers),
        payload: view.payload,
        origin: view.origin,
    })
}

/// The lines of a header block, each up to its CRLF (a lone CR or LF stays in its line).
fn crlf_lines(block: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(block);
    std::iter::from_fn(move || {
        let r = rest?;
        match r.windows(2).position(|w| w == b"\r\n") {
            Some(end) => {
                rest = Some(&r[end + 2..]);
                Some(&r[..end])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// Whether a client's header line is passed on: `name: value`, the name a token (RFC 9110)
/// not starting with `Chat-`, no control byte but tab anywhere.
fn kept_header(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &line[..colon];
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let clean = |b: &u8| *b == b'\t' || (*b >= 0x20 && *b != 0x7f);
    !name.is_empty()
        && name.iter().all(token)
        && !name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case(b"chat-"))
        && line.iter().all(clean)
}

/// The two users of a direct conversation, lower name first.
fn pair(a: &Name, b: &Name) -> (Name, Name) {
    if a <= b {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

fn require_admin(is_admin: bool, room: &Name) -> Result<(), ChatError> {
    if is_admin {
        Ok(())
    } else {
        Err(ChatError::Forbidden(format!(
            "only an admin of {room} may do that"
        )))
    }
}

fn too_many_memberships() -> ChatError {
    ChatError::TooMany("too many room memberships on this server")
}

fn no_such_room(room: &Name) -> ChatError {
    ChatError::NoSuchRoom(room.clone())
}

fn not_member(room: &Name) -> ChatError {
    ChatError::NotMember(room.clone())
}

fn user_not_member(user: &Name, room: &Name) -> ChatError {
    ChatError::UserNotMember {
        user: user.clone(),
        room: room.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{MsgView, SubState};
    use crate::subject::Pattern;

    const LIMITS: ShardLimits = ShardLimits {
        history: 1000,
        history_bytes: 1 << 30,
        rooms: 100,
        dms: 100,
        page_bytes: 1 << 20,
        rooms_per_user: 100,
        dms_per_user: 100,
        memberships: 1000,
    };

    fn conn(slot: u32) -> ConnKey {
        ConnKey {
            worker: 0,
            slot,
            gen: 0,
        }
    }

    fn who(user: &str, slot: u32) -> Requester {
        Requester {
            conn: conn(slot),
            session: u64::from(slot),
            user: user.into(),
        }
    }

    fn sub(index: &Sublist<SubRef>, user: &str, slot: u32, subject: &str) -> SubRef {
        let pattern = Pattern::parse(subject.as_bytes()).unwrap();
        let s = SubRef(Arc::new(
            SubState::new(conn(slot), b"1", pattern.clone(), None).with_user(Some(user.into())),
        ));
        index.insert(&pattern, None, s.clone());
        s
    }

    fn msg(subject: &str, headers: Option<&[u8]>, payload: &str) -> Msg {
        Msg::from_view(&MsgView {
            subject: subject.as_bytes(),
            reply: None,
            headers,
            payload: payload.as_bytes(),
            origin: Origin {
                conn: conn(999),
                no_responders: false,
                echo: true,
            },
        })
    }

    /// Applies `op` and returns (answer, the payloads fanned out with who gets them).
    fn run(
        shard: &mut Shard,
        index: &Sublist<SubRef>,
        from: &Requester,
        op: Op,
    ) -> (Outcome, Vec<(String, Vec<u32>)>) {
        let mut out = Vec::new();
        let mut ctx = Ctx {
            now_ms: 7,
            index,
            out: &mut out,
        };
        shard.handle(
            from,
            op,
            ReplyTo::Subject(b"_INBOX.x".as_slice().into()),
            &mut ctx,
        );
        let mut answer = None;
        let mut fanned = Vec::new();
        for e in out {
            match e {
                Effect::Answer { outcome, .. } => answer = Some(outcome),
                Effect::Fanout { msg, sets } => {
                    let v = msg.view();
                    let mut slots: Vec<u32> = sets
                        .iter()
                        .flat_map(|s| s.plain.iter().map(|s| s.0.conn.slot))
                        .collect();
                    slots.sort_unstable();
                    let text = match v.headers {
                        Some(h) => format!(
                            "{}{}",
                            String::from_utf8_lossy(h),
                            String::from_utf8_lossy(v.payload)
                        ),
                        None => String::from_utf8_lossy(v.payload).into_owned(),
                    };
                    fanned.push((text, slots));
                }
            }
        }
        (answer.expect("no answer"), fanned)
    }

    fn room(name: &str) -> Name {
        name.into()
    }

    #[test]
    fn room_messages_reach_members_only_and_are_stamped() {
        let index = Sublist::new();
        let mut shard = Shard::new(LIMITS);
        let (alice, bob, eve) = (who("alice", 1), who("bob", 2), who("eve", 3));
        sub(&index, "alice", 1, "$CHAT.MSG.r");
        sub(&index, "bob", 2, "$CHAT.MSG.*");
        sub(&index, "eve", 3, ">");
        let create = Op::Create {
            room: room("r"),
            private: true,
            limit: None,
        };
        run(&mut shard, &index, &alice, create).0.unwrap();
        let forged = b"NATS/1.0\r\nchat-from: mallory\r\nX-Id: 9\r\n\tChat-Seq: 1\r\n x\r\n\
            X: a\rChat-From: mallory\r\nnocolon\r\n: empty\r\nY\x01: z\r\n\r\n";
        let (ok, fanned) = run(
            &mut shard,
            &index,
            &alice,
            Op::Publish(
                Conv::Room(room("r")),
                msg("$CHAT.MSG.r", Some(forged), "hi"),
            ),
        );
        assert_eq!(ok.unwrap(), json!({"room": "r", "seq": 1}));
        assert_eq!(
            fanned,
            vec![(
                "NATS/1.0\r\nChat-From: alice\r\nChat-Seq: 1\r\nChat-Time: 7\r\nX-Id: 9\r\n\r\nhi"
                    .to_string(),
                vec![1]
            )]
        );
        // Not a member: refused, nothing delivered.
        let (err, fanned) = run(
            &mut shard,
            &index,
            &eve,
            Op::Publish(Conv::Room(room("r")), msg("$CHAT.MSG.r", None, "x")),
        );
        assert_eq!(err.unwrap_err().code(), 403);
        assert!(fanned.is_empty());
        // Added: bob's wildcard now receives; eve's `>` never does.
        run(&mut shard, &index, &alice, Op::Add(room("r"), "bob".into()))
            .0
            .unwrap();
        let (_, fanned) = run(
            &mut shard,
            &index,
            &bob,
            Op::Publish(Conv::Room(room("r")), msg("$CHAT.MSG.r", None, "yo")),
        );
        assert_eq!(fanned[0].1, vec![1, 2]);
        assert!(fanned[0].0.contains("Chat-From: bob\r\nChat-Seq: 2\r\n"));
        // Kicked: bob receives nothing ordered after it.
        run(
            &mut shard,
            &index,
            &alice,
            Op::Kick(room("r"), "bob".into()),
        )
        .0
        .unwrap();
        let (_, fanned) = run(
            &mut shard,
            &index,
            &alice,
            Op::Publish(Conv::Room(room("r")), msg("$CHAT.MSG.r", None, "bye")),
        );
        assert_eq!(fanned[0].1, vec![1]);
    }

    #[test]
    fn client_header_lines_end_only_at_crlf_and_any_control_byte_drops_its_line() {
        // The client's lines that pass, after the stamp.
        let kept = |block: &[u8]| -> Vec<String> {
            let m = msg("$CHAT.MSG.r", Some(block), "p");
            let out = stamp(b"$CHAT.MSG.r", &m, "alice", 1, 7, &mut Vec::new());
            let h = String::from_utf8(out.view().headers.unwrap().to_vec()).unwrap();
            let lines: Vec<&str> = h.split("\r\n").collect();
            assert_eq!(
                lines[..4],
                [
                    "NATS/1.0",
                    "Chat-From: alice",
                    "Chat-Seq: 1",
                    "Chat-Time: 7"
                ]
            );
            assert!(h.ends_with("\r\n\r\n"), "{h:?}");
            lines[4..]
                .iter()
                .filter(|l| !l.is_empty())
                .map(|l| (*l).to_owned())
                .collect()
        };
        for (block, expected) in [
            (
                &b"NATS/1.0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"[..],
                &["X-A: 1", "X-B: 2"][..],
            ),
            // A bare LF inside a line: the whole line goes, the forged sender with it.
            (
                b"NATS/1.0\r\nX-A: 1\nChat-From: m\r\nX-B: 2\r\n\r\n",
                &["X-B: 2"],
            ),
            (b"NATS/1.0\r\nX-A: 1\nX-C: 3\r\n\r\n", &[]),
            (b"NATS/1.0\r\nX-A: 1\n\r\nX-B: 2\r\n\r\n", &["X-B: 2"]),
            (b"NATS/1.0\r\n\nX-A: 1\r\n\r\n", &[]),
            (b"NATS/1.0\r\nX-A: 1\r\nX-B: 2\n\n", &["X-A: 1"]),
            // A version line ending in a bare LF takes the next line with it.
            (b"NATS/1.0\nX-A: 1\r\nX-B: 2\r\n\r\n", &["X-B: 2"]),
            // A lone CR, as before, and other control bytes; a tab is fine.
            (b"NATS/1.0\r\nX-A: a\rChat-From: m\r\n\r\n", &[]),
            (
                b"NATS/1.0\r\nX-A: a\x00b\r\nX-B: a\tb\r\nX-C: \x7f\r\n\r\n",
                &["X-B: a\tb"],
            ),
            // Folding, no name, `Chat-` in any case.
            (
                b"NATS/1.0\r\n Chat-Seq: 9\r\n\tX: y\r\n: v\r\nnocolon\r\nCHAT-Seq: 1\r\n\r\n",
                &[],
            ),
        ] {
            assert_eq!(
                kept(block),
                expected,
                "{:?}",
                String::from_utf8_lossy(block)
            );
        }
    }

    #[test]
    fn presence_events_follow_sessions() {
        let index = Sublist::new();
        let mut shard = Shard::new(LIMITS);
        sub(&index, "alice", 1, "$CHAT.EVT.r");
        let alice = who("alice", 1);
        let (bob1, bob2) = (who("bob", 2), who("bob", 3));
        let create = Op::Create {
            room: room("r"),
            private: false,
            limit: None,
        };
        run(&mut shard, &index, &alice, create).0.unwrap();
        let events =
            |f: Vec<(String, Vec<u32>)>| -> Vec<String> { f.into_iter().map(|e| e.0).collect() };
        let (_, f) = run(&mut shard, &index, &bob1, Op::Join(room("r")));
        assert_eq!(
            events(f),
            [r#"{"event":"join","room":"r","session":2,"user":"bob"}"#]
        );
        let (_, f) = run(&mut shard, &index, &bob2, Op::Join(room("r")));
        assert_eq!(
            events(f),
            [r#"{"event":"add","room":"r","session":3,"user":"bob"}"#]
        );
        let (_, f) = run(&mut shard, &index, &bob2, Op::Join(room("r")));
        assert!(
            f.is_empty(),
            "a second join of the same session is no event"
        );
        let mut out = Vec::new();
        let mut ctx = Ctx {
            now_ms: 7,
            index: &index,
            out: &mut out,
        };
        shard.handle_gone(conn(2), 2, &"bob".into(), &[room("r")], &mut ctx);
        shard.handle_gone(conn(3), 3, &"bob".into(), &[room("r")], &mut ctx);
        shard.handle_gone(conn(3), 3, &"bob".into(), &[room("r")], &mut ctx);
        let texts: Vec<String> = out
            .into_iter()
            .filter_map(|e| match e {
                Effect::Fanout { msg, .. } => {
                    Some(String::from_utf8_lossy(msg.view().payload).into_owned())
                }
                Effect::Answer { .. } => None,
            })
            .collect();
        assert_eq!(
            texts,
            [
                r#"{"event":"remove","room":"r","session":2,"user":"bob"}"#,
                r#"{"event":"leave","reason":"disconnected","room":"r","session":3,"user":"bob"}"#
            ]
        );
        let (online, _) = run(&mut shard, &index, &alice, Op::Presence(room("r")));
        assert_eq!(online.unwrap(), json!({"room": "r", "online": []}));
    }

    #[test]
    fn member_limit_is_exact_and_admins_never_run_out() {
        let index = Sublist::new();
        let mut shard = Shard::new(LIMITS);
        let admin = who("admin", 0);
        let create = Op::Create {
            room: room("r"),
            private: false,
            limit: Some(3),
        };
        run(&mut shard, &index, &admin, create).0.unwrap();
        let codes: Vec<Option<u16>> = (1..=5)
            .map(|i| {
                let u = who(&format!("u{i}"), i);
                run(&mut shard, &index, &u, Op::Join(room("r")))
                    .0
                    .err()
                    .map(|e| e.code())
            })
            .collect();
        assert_eq!(codes, [None, None, Some(409), Some(409), Some(409)]);
        let limit = Op::Limit(room("r"), Some(2));
        assert_eq!(
            run(&mut shard, &index, &admin, limit).0.unwrap_err().code(),
            409
        );
        let leave = run(&mut shard, &index, &admin, Op::Leave(room("r"))).0;
        assert_eq!(leave.unwrap_err().code(), 409);
        let demote = Op::Demote(room("r"), "admin".into());
        assert_eq!(
            run(&mut shard, &index, &admin, demote)
                .0
                .unwrap_err()
                .code(),
            409
        );
        let u1 = who("u1", 1);
        let kick = Op::Kick(room("r"), "u2".into());
        assert_eq!(
            run(&mut shard, &index, &u1, kick).0.unwrap_err().code(),
            403
        );
        run(
            &mut shard,
            &index,
            &admin,
            Op::Promote(room("r"), "u1".into()),
        )
        .0
        .unwrap();
        run(&mut shard, &index, &admin, Op::Leave(room("r")))
            .0
            .unwrap();
        let page = NamePage {
            after: None,
            limit: 1000,
        };
        let (info, _) = run(&mut shard, &index, &u1, Op::Info(room("r"), page));
        let info = info.unwrap();
        assert_eq!(info["members"], json!(["u1", "u2"]));
        assert_eq!(info["admins"], json!(["u1"]));
    }

    #[test]
    fn per_user_and_membership_caps_hold_and_free_on_close() {
        let index = Sublist::new();
        let mut shard = Shard::new(ShardLimits {
            rooms_per_user: 2,
            dms_per_user: 2,
            memberships: 4,
            ..LIMITS
        });
        let eve = who("eve", 1);
        let create = |shard: &mut Shard, r: &str| {
            let op = Op::Create {
                room: room(r),
                private: false,
                limit: None,
            };
            run(shard, &index, &eve, op).0.err().map(|e| e.code())
        };
        assert_eq!(create(&mut shard, "a"), None);
        assert_eq!(create(&mut shard, "b"), None);
        assert_eq!(create(&mut shard, "c"), Some(429), "eve's third room");
        let add = |shard: &mut Shard, u: &str| {
            let op = Op::Add(room("a"), u.into());
            run(shard, &index, &eve, op).0.err().map(|e| e.code())
        };
        assert_eq!(add(&mut shard, "x"), None);
        assert_eq!(add(&mut shard, "y"), None);
        assert_eq!(add(&mut shard, "z"), Some(429), "a fifth membership");
        run(&mut shard, &index, &eve, Op::Close(room("a")))
            .0
            .unwrap();
        assert_eq!(create(&mut shard, "c"), None, "closing frees both caps");
        let dm = |shard: &mut Shard, u: &str| {
            let op = Op::Publish(Conv::Dm(u.into()), msg("$CHAT.DM.x", None, "hi"));
            run(shard, &index, &eve, op).0.err().map(|e| e.code())
        };
        assert_eq!(dm(&mut shard, "p"), None);
        assert_eq!(dm(&mut shard, "q"), None);
        assert_eq!(
            dm(&mut shard, "p"),
            None,
            "an existing conversation goes on"
        );
        assert_eq!(dm(&mut shard, "r"), Some(429), "eve's third conversation");
        let p = who("p", 2);
        let op = Op::Publish(Conv::Dm("eve".into()), msg("$CHAT.DM.eve", None, "yo"));
        assert!(
            run(&mut shard, &index, &p, op).0.is_ok(),
            "p answers in the same one"
        );
    }

    #[test]
    fn the_byte_budget_drops_the_shards_oldest_messages_first() {
        let index = Sublist::new();
        let one = {
            let mut w = Window::default();
            let seq = w.next_seq();
            let m = msg("$CHAT.MSG.a", None, "0123456789");
            let m = stamp(b"$CHAT.MSG.a", &m, "u", seq, 7, &mut Vec::new());
            Entry {
                seq,
                from: "u".into(),
                time_ms: 7,
                msg: m,
            }
            .weight()
        };
        let mut shard = Shard::new(ShardLimits {
            history_bytes: 4 * one,
            history: 3,
            ..LIMITS
        });
        let u = who("u", 1);
        for r in ["a", "b"] {
            let create = Op::Create {
                room: room(r),
                private: false,
                limit: None,
            };
            run(&mut shard, &index, &u, create).0.unwrap();
        }
        let publish = |shard: &mut Shard, r: &str| {
            let m = msg(&format!("$CHAT.MSG.{r}"), None, "0123456789");
            run(shard, &index, &u, Op::Publish(Conv::Room(room(r)), m))
                .0
                .unwrap();
        };
        for _ in 0..3 {
            publish(&mut shard, "a");
        }
        publish(&mut shard, "b");
        publish(&mut shard, "b");
        // 5 kept would pass 4 entries' bytes: a's oldest went first.
        assert_eq!(shard.kept(), (4, 4 * one));
        // The count cap (3) drops b's own oldest; their queue entries go stale.
        for _ in 0..4 {
            publish(&mut shard, "b");
        }
        let first = |shard: &Shard, r: &str| shard.rooms[r].window.first();
        assert_eq!((first(&shard, "a"), first(&shard, "b")), (3, 4));
        assert_eq!(shard.kept(), (4, 4 * one));
        // Over budget again: a3 goes, then b1..b3 (already gone) are skipped and b4 goes.
        publish(&mut shard, "a");
        publish(&mut shard, "a");
        assert_eq!((first(&shard, "a"), first(&shard, "b")), (4, 5));
        assert_eq!(shard.kept(), (4, 4 * one));
        run(&mut shard, &index, &u, Op::Close(room("b"))).0.unwrap();
        assert_eq!(shard.kept(), (2, 2 * one));
    }
}
