//! Requests on `$CHAT.API.<op>`: parsed and validated on the requester's worker, so that an
//! owner only ever sees well-formed operations.

use serde_json::{Map, Value};

use super::{parse_name, ChatError, Name};
use crate::limits;
use crate::msg::Msg;

/// A room or a direct conversation, as named by a requester.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conv {
    /// A room.
    Room(Name),
    /// The conversation between the requester and this user.
    Dm(Name),
}

impl Conv {
    /// The subject a message to this conversation is delivered on.
    pub fn subject(&self) -> Vec<u8> {
        let (prefix, name) = match self {
            Conv::Room(room) => (super::MSG_PREFIX, room),
            Conv::Dm(user) => (super::DM_PREFIX, user),
        };
        let mut s = Vec::with_capacity(prefix.len() + name.len());
        s.extend_from_slice(prefix);
        s.extend_from_slice(name.as_bytes());
        s
    }
}

/// Which way a history page runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first, from just after a sequence.
    Forward,
    /// Newest first, from just before a sequence.
    Backward,
}

/// One history page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Which way to page.
    pub direction: Direction,
    /// Forward: messages after this sequence (`None`: from the oldest kept). Backward:
    /// before this one (`None`: from the newest).
    pub cursor: Option<u64>,
    /// At most this many messages.
    pub limit: usize,
    /// The conversation's epoch the cursor belongs to, if the requester knows it: a
    /// different one means the room was closed and created again (`410`).
    pub epoch: Option<u64>,
}

/// A page of a list of names (members, admins, rooms), in name order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePage {
    /// Only names after this one (`None`: from the first).
    pub after: Option<String>,
    /// At most this many names.
    pub limit: usize,
}

impl NamePage {
    /// Up to `limit` of `names` (sorted) that come after the cursor, and whether more do.
    pub fn cut<'a>(&self, names: impl Iterator<Item = &'a str>) -> (Vec<&'a str>, bool) {
        let mut page: Vec<&str> = names
            .filter(|n| self.after.as_deref().is_none_or(|a| *n > a))
            .collect();
        page.sort_unstable();
        let more = page.len() > self.limit;
        page.truncate(self.limit);
        (page, more)
    }
}

/// One operation on one room or conversation, applied by its owner.
#[derive(Debug, Clone)]
pub enum Op {
    /// `room.create`.
    Create {
        /// The room.
        room: Name,
        /// Whether joining needs an admin's `room.add`.
        private: bool,
        /// The member limit, if any.
        limit: Option<u32>,
    },
    /// `room.join`.
    Join(Name),
    /// `room.leave`: the user leaves the room.
    Leave(Name),
    /// `room.leave` with `"session": true`: only this session leaves the room's presence;
    /// the user stays a member.
    Part(Name),
    /// `room.add`.
    Add(Name, Name),
    /// `room.kick`.
    Kick(Name, Name),
    /// `room.promote`.
    Promote(Name, Name),
    /// `room.demote`.
    Demote(Name, Name),
    /// `room.limit`.
    Limit(Name, Option<u32>),
    /// `room.close`.
    Close(Name),
    /// `room.info`: one page of its members and admins.
    Info(Name, NamePage),
    /// `room.presence`.
    Presence(Name),
    /// `rooms.list`: this shard's part of one page of the list.
    List(NamePage),
    /// `history`.
    History(Conv, HistoryQuery),
    /// A message to a room or a user, as published (the owner stamps it).
    Publish(Conv, Msg),
}

impl Op {
    /// The room this operation is about, if it is about one room.
    pub fn room(&self) -> Option<&Name> {
        match self {
            Op::Create { room, .. }
            | Op::Join(room)
            | Op::Leave(room)
            | Op::Part(room)
            | Op::Add(room, _)
            | Op::Kick(room, _)
            | Op::Promote(room, _)
            | Op::Demote(room, _)
            | Op::Limit(room, _)
            | Op::Close(room)
            | Op::Info(room, _)
            | Op::Presence(room)
            | Op::History(Conv::Room(room), _)
            | Op::Publish(Conv::Room(room), _) => Some(room),
            Op::List(_) | Op::History(Conv::Dm(_), _) | Op::Publish(Conv::Dm(_), _) => None,
        }
    }

    /// The most bytes the owner's answer to this operation can take as JSON, known before it
    /// is built: what a requester counts against [`limits::CHAT_IN_FLIGHT_BYTES_PER_CONN`].
    /// `page_bytes` is the history page cap (the server's `max_payload`).
    ///
    /// A history page stops before `page_bytes`, except that it always holds one message:
    /// one message whose JSON form is larger (control bytes are escaped six-fold) is the one
    /// answer that can pass its count, by that message.
    pub fn answer_bytes(&self, page_bytes: usize) -> u64 {
        let names = |n: usize, lists: u64| {
            lists
                * n as u64
                * (limits::MAX_CHAT_NAME_BYTES as u64 + limits::NAME_ITEM_OVERHEAD_BYTES)
        };
        limits::CHAT_SMALL_ANSWER_BYTES
            + match self {
                Op::History(..) => page_bytes as u64,
                // Members and admins.
                Op::Info(_, page) => names(page.limit, 2),
                Op::List(page) => names(page.limit, 1),
                // Not paged: every present member.
                Op::Presence(_) => names(limits::MAX_ROOM_MEMBERS, 1),
                _ => 0,
            }
    }
}

/// A request, as the requester's worker carries it out.
#[derive(Debug, Clone)]
pub enum Request {
    /// One operation for one owner (every worker's shard, for [`Op::List`]).
    Op(Op),
    /// `broadcast`: the same text to several rooms and users.
    Broadcast {
        /// The targets, in request order.
        targets: Vec<Conv>,
        /// The message.
        data: Vec<u8>,
    },
    /// `whoami`: answered by the requester's own worker.
    Whoami,
}

/// Parses `$CHAT.API.<op>` with its JSON body (empty means `{}`).
pub fn parse(op: &[u8], body: &[u8]) -> Result<Request, ChatError> {
    let map = parse_body(body)?;
    let room = || name_field(&map, "room");
    let user = || name_field(&map, "user");
    let op = match op {
        b"room.create" => Op::Create {
            room: room()?,
            private: match map.get("private") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(ChatError::bad("\"private\" must be true or false")),
            },
            limit: limit_field(&map)?,
        },
        b"room.join" => Op::Join(room()?),
        b"room.leave" => match map.get("session") {
            None | Some(Value::Null | Value::Bool(false)) => Op::Leave(room()?),
            Some(Value::Bool(true)) => Op::Part(room()?),
            Some(_) => return Err(ChatError::bad("\"session\" must be true or false")),
        },
        b"room.add" => Op::Add(room()?, user()?),
        b"room.kick" => Op::Kick(room()?, user()?),
        b"room.promote" => Op::Promote(room()?, user()?),
        b"room.demote" => Op::Demote(room()?, user()?),
        b"room.limit" => {
            if !map.contains_key("limit") {
                return Err(ChatError::bad("missing \"limit\" (a number, or null)"));
            }
            Op::Limit(room()?, limit_field(&map)?)
        }
        b"room.close" => Op::Close(room()?),
        b"room.info" => Op::Info(room()?, name_page(&map)?),
        b"room.presence" => Op::Presence(room()?),
        b"rooms.list" => Op::List(name_page(&map)?),
        b"history" => Op::History(conv_field(&map)?, history_query(&map)?),
        b"broadcast" => return broadcast(&map),
        b"whoami" => return Ok(Request::Whoami),
        _ => {
            return Err(ChatError::bad(format!(
                "unknown operation \"{}\"",
                String::from_utf8_lossy(op)
            )))
        }
    };
    Ok(Request::Op(op))
}

fn parse_body(body: &[u8]) -> Result<Map<String, Value>, ChatError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ChatError::bad("the request must be a JSON object")),
        Err(e) => Err(ChatError::bad(format!("invalid JSON: {e}"))),
    }
}

fn name_field(map: &Map<String, Value>, field: &str) -> Result<Name, ChatError> {
    match map.get(field) {
        Some(Value::String(s)) => parse_name(s.as_bytes()).ok_or_else(|| invalid_name(field)),
        Some(_) => Err(invalid_name(field)),
        None => Err(ChatError::bad(format!("missing \"{field}\""))),
    }
}

fn invalid_name(field: &str) -> ChatError {
    ChatError::bad(format!(
        "\"{field}\" must be 1 to {} characters of A-Z a-z 0-9 _ -",
        limits::MAX_CHAT_NAME_BYTES
    ))
}

fn limit_field(map: &Map<String, Value>) -> Result<Option<u32>, ChatError> {
    match map.get("limit") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (1..=limits::MAX_ROOM_MEMBERS as u64).contains(&n) => Ok(Some(n as u32)),
            _ => Err(ChatError::bad(format!(
                "\"limit\" must be null or a number from 1 to {}",
                limits::MAX_ROOM_MEMBERS
            ))),
        },
    }
}

fn name_page(map: &Map<String, Value>) -> Result<NamePage, ChatError> {
    let after = match map.get("after") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ChatError::bad("\"after\" must be a name")),
    };
    let limit = match map.get("limit") {
        None | Some(Value::Null) => limits::MAX_LIST_PAGE,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=limits::MAX_LIST_PAGE as u64).contains(&n) => n as usize,
            _ => {
                return Err(ChatError::bad(format!(
                    "\"limit\" must be a number from 1 to {}",
                    limits::MAX_LIST_PAGE
                )))
            }
        },
    };
    Ok(NamePage { after, limit })
}

fn conv_field(map: &Map<String, Value>) -> Result<Conv, ChatError> {
    match (map.contains_key("room"), map.contains_key("user")) {
        (true, false) => Ok(Conv::Room(name_field(map, "room")?)),
        (false, true) => Ok(Conv::Dm(name_field(map, "user")?)),
        _ => Err(ChatError::bad("name exactly one of \"room\" and \"user\"")),
    }
}

fn seq_field(map: &Map<String, Value>, field: &str) -> Result<Option<u64>, ChatError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| ChatError::bad(format!("\"{field}\" must be a sequence number"))),
    }
}

fn history_query(map: &Map<String, Value>) -> Result<HistoryQuery, ChatError> {
    let after = seq_field(map, "after")?;
    let before = seq_field(map, "before")?;
    let direction = match map.get("direction") {
        None | Some(Value::Null) => {
            if before.is_some() && after.is_none() {
                Direction::Backward
            } else {
                Direction::Forward
            }
        }
        Some(Value::String(s)) if s == "forward" => Direction::Forward,
        Some(Value::String(s)) if s == "backward" => Direction::Backward,
        Some(_) => {
            return Err(ChatError::bad(
                "\"direction\" must be \"forward\" or \"backward\"",
            ))
        }
    };
    let cursor = match (direction, after, before) {
        (_, Some(_), Some(_)) => {
            return Err(ChatError::bad("give \"after\" or \"before\", not both"))
        }
        (Direction::Forward, a, None) => a,
        (Direction::Backward, None, b) => b,
        (Direction::Forward, None, Some(_)) => {
            return Err(ChatError::bad("\"before\" pages backward"))
        }
        (Direction::Backward, Some(_), None) => {
            return Err(ChatError::bad("\"after\" pages forward"))
        }
    };
    let limit = match map.get("limit") {
        None | Some(Value::Null) => limits::DEFAULT_HISTORY_PAGE,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=limits::MAX_HISTORY_PAGE as u64).contains(&n) => n as usize,
            _ => {
                return Err(ChatError::bad(format!(
                    "\"limit\" must be a number from 1 to {}",
                    limits::MAX_HISTORY_PAGE
                )))
            }
        },
    };
    Ok(HistoryQuery {
        direction,
        cursor,
        limit,
        epoch: seq_field(map, "epoch")?,
    })
}

fn broadcast(map: &Map<String, Value>) -> Result<Request, ChatError> {
    let names = |field: &str, conv: fn(Name) -> Conv| -> Result<Vec<Conv>, ChatError> {
        match map.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => parse_name(s.as_bytes())
                        .map(conv)
                        .ok_or_else(|| invalid_name(field)),
                    _ => Err(invalid_name(field)),
                })
                .collect(),
            Some(_) => Err(ChatError::bad(format!(
                "\"{field}\" must be a list of names"
            ))),
        }
    };
    let mut targets = names("rooms", Conv::Room)?;
    targets.extend(names("users", Conv::Dm)?);
    if targets.is_empty() {
        return Err(ChatError::bad(
            "name at least one of \"rooms\" and \"users\"",
        ));
    }
    if targets.len() > limits::MAX_BROADCAST_TARGETS {
        // A cap, so a 429 as every other cap (docs/chat.md), not a malformed request.
        return Err(ChatError::TooMany(TOO_MANY_TARGETS));
    }
    let data = match map.get("data") {
        Some(Value::String(s)) => s.clone().into_bytes(),
        _ => return Err(ChatError::bad("missing \"data\" (a string)")),
    };
    Ok(Request::Broadcast { targets, data })
}

/// The refusal of a `broadcast` past [`limits::MAX_BROADCAST_TARGETS`] (a test checks that
/// it names the cap).
const TOO_MANY_TARGETS: &str = "too many targets: a broadcast names at most 1024";

#[cfg(test)]
mod tests {

    #[test]
    fn the_broadcast_cap_message_names_the_cap() {
        let cap = crate::limits::MAX_BROADCAST_TARGETS.to_string();
        assert!(super::TOO_MANY_TARGETS.ends_with(&cap));
    }

    use super::*;

    #[test]
    fn parses_room_ops_and_refuses_bad_names() {
        let Ok(Request::Op(Op::Create {
            room,
            private,
            limit,
        })) = parse(
            b"room.create",
            br#"{"room":"lobby","private":true,"limit":10}"#,
        )
        else {
            panic!("not a create");
        };
        assert_eq!((&*room, private, limit), ("lobby", true, Some(10)));
        for body in [
            &br#"{"room":"a.b"}"#[..],
            br#"{"room":"*"}"#,
            br#"{"room":""}"#,
            br#"{"room":5}"#,
            br#"{}"#,
            b"[1]",
            b"{",
        ] {
            let e = parse(b"room.join", body).unwrap_err();
            assert_eq!(e.code(), 400, "{}", String::from_utf8_lossy(body));
        }
        assert_eq!(parse(b"room.nope", b"").unwrap_err().code(), 400);
        assert!(matches!(parse(b"whoami", b""), Ok(Request::Whoami)));
    }

    #[test]
    fn history_defaults_follow_the_cursor_given() {
        let q = |body: &[u8]| match parse(b"history", body) {
            Ok(Request::Op(Op::History(_, q))) => Ok(q),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.code()),
        };
        let fwd = q(br#"{"room":"r"}"#).unwrap();
        assert_eq!((fwd.direction, fwd.cursor), (Direction::Forward, None));
        let back = q(br#"{"room":"r","before":9,"limit":3}"#).unwrap();
        assert_eq!(
            (back.direction, back.cursor, back.limit),
            (Direction::Backward, Some(9), 3)
        );
        let newest = q(br#"{"user":"bob","direction":"backward"}"#).unwrap();
        assert_eq!(newest.cursor, None);
        assert_eq!(q(br#"{"room":"r","after":1,"before":3}"#), Err(400));
        assert_eq!(q(br#"{"room":"r","user":"u"}"#), Err(400));
        assert_eq!(q(br#"{"room":"r","limit":0}"#), Err(400));
    }

    #[test]
    fn answers_are_counted_at_their_largest_before_they_are_built() {
        let op = |name: &[u8], body: &[u8]| match parse(name, body) {
            Ok(Request::Op(op)) => op,
            other => panic!("{other:?}"),
        };
        let small = limits::CHAT_SMALL_ANSWER_BYTES;
        let history = op(b"history", br#"{"room":"r","limit":1}"#);
        assert_eq!(history.answer_bytes(1 << 20), small + (1 << 20));
        assert_eq!(history.answer_bytes(4096), small + 4096);
        let name = (limits::MAX_CHAT_NAME_BYTES as u64) + limits::NAME_ITEM_OVERHEAD_BYTES;
        let info = op(b"room.info", br#"{"room":"r","limit":10}"#);
        assert_eq!(info.answer_bytes(1 << 20), small + 2 * 10 * name);
        let list = op(b"rooms.list", b"");
        let full = limits::MAX_LIST_PAGE as u64 * name;
        assert_eq!(list.answer_bytes(1 << 20), small + full);
        let presence = op(b"room.presence", br#"{"room":"r"}"#);
        let everyone = limits::MAX_ROOM_MEMBERS as u64 * name;
        assert_eq!(presence.answer_bytes(1 << 20), small + everyone);
        for (name, body) in [
            (&b"room.join"[..], &br#"{"room":"r"}"#[..]),
            (b"room.create", br#"{"room":"r"}"#),
            (b"room.kick", br#"{"room":"r","user":"u"}"#),
        ] {
            assert_eq!(op(name, body).answer_bytes(1 << 20), small);
        }
        // The largest error the owner sends fits a small answer.
        let e = ChatError::UserNotMember {
            user: "u".repeat(limits::MAX_CHAT_NAME_BYTES).into(),
            room: "r".repeat(limits::MAX_CHAT_NAME_BYTES).into(),
        };
        assert!((e.to_json().to_string().len() as u64) < small);
    }

    #[test]
    fn broadcast_targets_past_the_cap_are_a_429() {
        let body = |n: usize| {
            let users: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
            serde_json::json!({"rooms": ["r"], "users": users, "data": "x"}).to_string()
        };
        let cap = limits::MAX_BROADCAST_TARGETS;
        assert!(matches!(
            parse(b"broadcast", body(cap - 1).as_bytes()),
            Ok(Request::Broadcast { targets, .. }) if targets.len() == cap
        ));
        let e = parse(b"broadcast", body(cap).as_bytes()).unwrap_err();
        assert_eq!(e.code(), 429);
        assert!(e.to_string().ends_with(&format!(" {cap}")), "{e}");
        // One invalid name still makes the whole request malformed, however many there are.
        let mut bad: Value = serde_json::from_str(&body(cap)).unwrap();
        bad["users"][0] = Value::from("a.b");
        let e = parse(b"broadcast", bad.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.code(), 400);
    }

    #[test]
    fn broadcast_keeps_request_order_rooms_first() {
        let Ok(Request::Broadcast { targets, data }) = parse(
            b"broadcast",
            br#"{"users":["u"],"rooms":["a","b"],"data":"hi"}"#,
        ) else {
            panic!("not a broadcast");
        };
        assert_eq!(
            targets,
            vec![
                Conv::Room("a".into()),
                Conv::Room("b".into()),
                Conv::Dm("u".into())
            ]
        );
        assert_eq!(data, b"hi");
    }
}
