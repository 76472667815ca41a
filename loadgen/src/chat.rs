//! The chat scenario (`loadgen run --chat`): the same users, rooms and publishers, but every
//! room is a room of the engine's chat layer (docs/chat.md) instead of a plain subject.
//!
//! - User `u` is `u<u>` (CONNECT `user`, with `headers`); a publishing user's publishing
//!   connection uses the same name as its subscribing connection: one user, two sessions.
//! - Room `r` is `lg<r>`, published to and subscribed on `$CHAT.MSG.lg<r>`.
//! - Setup, before any connection of the run opens: [`create_rooms`] creates every room as its
//!   first member (user `r` is the first member of room `r`), one short-lived connection per
//!   room, and waits for every answer (`409` "exists" is accepted, so a long-running server
//!   can be measured again). Then each subscribing connection joins its room with a request
//!   (`$CHAT.API.room.join`) and subscribes to its messages; the worker waits for the join's
//!   answer ([`check_reply`]) before confirming the subscription with `PING`/`PONG`.
//! - Deliveries arrive as `HMSG` with the server's `Chat-*` headers; the payload is the
//!   publisher's, so latency, loss and ordering are accounted exactly as for plain subjects.
//!
//! The requests and replies go through `net::proto` like every other frame; only the JSON
//! bodies of the replies are read here.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use net::proto::{self, Op, Parser, ParserLimits, Side};
use serde::Serialize;

use crate::limits::{CHAT_REPLY_TIMEOUT_SECS, MAX_CONNECTING_PER_THREAD};
use crate::Error;

/// The request subject that creates a room.
pub const CREATE_SUBJECT: &[u8] = b"$CHAT.API.room.create";

/// The request subject that joins a room.
pub const JOIN_SUBJECT: &[u8] = b"$CHAT.API.room.join";

/// The subscription id of a chat subscriber's room subscription (plain runs use the same).
pub const ROOM_SID: &[u8] = b"1";

/// The subscription id of a chat connection's reply inbox.
pub const INBOX_SID: &[u8] = b"2";

/// A chat operation the server refused, or answered with something unexpected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The answer was an error object (`{"error":{"code":…,"description":…}}`).
    #[error("{code} {description}")]
    Refused {
        /// The error code (docs/chat.md: 400, 401, 403, 404, 409, 410, 429).
        code: u16,
        /// The server's description.
        description: String,
    },
    /// The answer was neither the expected result nor an error object.
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

/// How the chat rooms were set up, as recorded in the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatSetup {
    /// Rooms this run created.
    pub rooms_created: usize,
    /// Rooms that already existed (`409` on create, e.g. a long-running server measured
    /// again): they may hold members and history from earlier runs.
    pub rooms_existed: usize,
    /// Seconds spent creating the rooms (before the connections of the run opened).
    pub create_secs: f64,
}

/// The chat user name of user `user`.
pub fn user_name(user: u32) -> String {
    format!("u{user}")
}

/// The chat room name of room `room`.
pub fn room_name(room: usize) -> String {
    format!("lg{room}")
}

/// The subject room `room`'s messages are published to and delivered on.
pub fn room_subject(room: usize) -> String {
    format!("$CHAT.MSG.{}", room_name(room))
}

/// The reply subject of user `user`'s requests. Replies reach only the requesting
/// connection, so the publishing and subscribing sessions of one user may share it.
pub fn inbox(user: u32) -> String {
    format!("_INBOX.loadgen.{}", user_name(user))
}

/// The body of a `room.create` or `room.join` request for room `room`.
pub fn request_body(room: usize) -> Vec<u8> {
    format!("{{\"room\":\"{}\"}}", room_name(room)).into_bytes()
}

/// The CONNECT of a chat session of user `user`.
pub fn connect(user: u32) -> proto::Connect {
    proto::Connect {
        verbose: false,
        pedantic: false,
        echo: true,
        headers: true,
        name: Some("loadgen".to_string()),
        lang: Some("rust".to_string()),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        protocol: 1,
        user: Some(user_name(user)),
        ..proto::Connect::default()
    }
}

/// Checks the answer to a `room.create` or `room.join` of room `room`: a result object that
/// names the room, or the error it carries.
pub fn check_reply(body: &[u8], room: usize) -> Result<(), ReplyError> {
    let unexpected = || ReplyError::Unexpected(String::from_utf8_lossy(body).into_owned());
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| unexpected())?;
    if let Some(err) = value.get("error") {
        let code = err.get("code").and_then(serde_json::Value::as_u64);
        let description = err.get("description").and_then(serde_json::Value::as_str);
        return match (code.and_then(|c| u16::try_from(c).ok()), description) {
            (Some(code), Some(d)) => Err(ReplyError::Refused {
                code,
                description: d.to_string(),
            }),
            _ => Err(unexpected()),
        };
    }
    match value.get("room").and_then(serde_json::Value::as_str) {
        Some(name) if name == room_name(room) => Ok(()),
        _ => Err(unexpected()),
    }
}

/// What a `room.create` answer means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This run created the room.
    New,
    /// The room already existed (`409`).
    Existed,
}

/// Classifies a `room.create` answer: created, already there (`409`), or a failure.
pub fn check_create(body: &[u8], room: usize) -> Result<Created, ReplyError> {
    match check_reply(body, room) {
        Ok(()) => Ok(Created::New),
        Err(ReplyError::Refused { code: 409, .. }) => Ok(Created::Existed),
        Err(e) => Err(e),
    }
}

/// Creates rooms `0..rooms` on the server at `addr`, each by its first member (user `r`),
/// at most [`MAX_CONNECTING_PER_THREAD`] connections at a time, and waits for every answer.
pub fn create_rooms(addr: SocketAddr, rooms: usize) -> Result<ChatSetup, Error> {
    let began = Instant::now();
    let mut setup = ChatSetup::default();
    let mut first = 0;
    while first < rooms {
        let last = rooms.min(first + MAX_CONNECTING_PER_THREAD);
        // Send every request of the batch first, then collect the answers: the requests
        // are answered concurrently and the waits overlap.
        let mut batch = Vec::with_capacity(last - first);
        for room in first..last {
            batch.push((room, send_create(addr, room)?));
        }
        for (room, mut stream) in batch {
            let body = read_reply(&mut stream).map_err(|e| {
                Error::Chat(format!(
                    "creating room {} as {}: {e}",
                    room_name(room),
                    user_name(room as u32)
                ))
            })?;
            match check_create(&body, room) {
                Ok(Created::New) => setup.rooms_created += 1,
                Ok(Created::Existed) => setup.rooms_existed += 1,
                Err(e) => {
                    return Err(Error::Chat(format!(
                        "creating room {} as {} was refused: {e}",
                        room_name(room),
                        user_name(room as u32)
                    )))
                }
            }
        }
        first = last;
    }
    setup.create_secs = began.elapsed().as_secs_f64();
    Ok(setup)
}

/// Opens a connection as user `room` and sends it the `room.create` of room `room`.
fn send_create(addr: SocketAddr, room: usize) -> Result<TcpStream, Error> {
    let what = |e: std::io::Error| Error::Chat(format!("connecting to {addr}: {e}"));
    let mut stream = TcpStream::connect(addr).map_err(what)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(CHAT_REPLY_TIMEOUT_SECS)))
        .map_err(what)?;
    let _ = stream.set_nodelay(true);
    let user = room as u32;
    let inbox = inbox(user);
    let mut out = Vec::new();
    // A NATS server reads CONNECT whether or not the client has read INFO yet.
    proto::encode_connect(&mut out, &connect(user));
    proto::encode_sub(&mut out, inbox.as_bytes(), None, INBOX_SID);
    proto::encode_pub(
        &mut out,
        CREATE_SUBJECT,
        Some(inbox.as_bytes()),
        &request_body(room),
    );
    stream.write_all(&out).map_err(what)?;
    Ok(stream)
}

/// Reads frames until the answer on the inbox subscription arrives; returns its body.
fn read_reply(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut parser = Parser::new(Side::Client, ParserLimits::default());
    let mut buf = Vec::new();
    let mut at = 0;
    let mut chunk = [0u8; 4096];
    loop {
        match parser.parse(&buf[at..]) {
            Ok(Some((op, used))) => {
                match op {
                    Op::Msg(m) if m.sid == INBOX_SID => return Ok(m.payload.to_vec()),
                    Op::Err(text) => {
                        return Err(format!("-ERR {}", String::from_utf8_lossy(text)));
                    }
                    Op::Ping => {
                        let mut pong = Vec::new();
                        proto::encode_pong(&mut pong);
                        stream.write_all(&pong).map_err(|e| format!("write: {e}"))?;
                    }
                    _ => {}
                }
                at += used;
            }
            Ok(None) => {
                buf.drain(..at);
                at = 0;
                match stream.read(&mut chunk) {
                    Ok(0) => return Err("closed by the server before answering".to_string()),
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(format!(
                            "no answer within {CHAT_REPLY_TIMEOUT_SECS} s (only the engine \
                             has a chat layer; nats-server and Redis do not)"
                        ));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            Err(e) => return Err(format!("protocol error from the server: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_chat_names() {
        // docs/chat.md: 1 to 64 bytes of A-Z a-z 0-9 _ -.
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        for n in [0, 7, 99_999, u32::MAX] {
            assert!(ok(&user_name(n)), "{}", user_name(n));
            assert!(ok(&room_name(n as usize)), "{}", room_name(n as usize));
        }
        assert_eq!(room_subject(3), "$CHAT.MSG.lg3");
        assert_eq!(request_body(12), br#"{"room":"lg12"}"#);
        assert_eq!(inbox(5), "_INBOX.loadgen.u5");
    }

    #[test]
    fn connect_names_the_user_and_asks_for_headers() {
        let c = connect(42);
        assert_eq!(c.user.as_deref(), Some("u42"));
        assert!(c.headers);
        assert!(!c.verbose);
        let mut out = Vec::new();
        proto::encode_connect(&mut out, &c);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(r#""user":"u42""#), "{text}");
        assert!(text.contains(r#""headers":true"#), "{text}");
    }

    #[test]
    fn replies_are_told_apart() {
        let join = br#"{"room":"lg3","seq":0,"members":4}"#;
        assert_eq!(check_reply(join, 3), Ok(()));
        // The answer for another room is not this join's.
        assert!(matches!(
            check_reply(join, 4),
            Err(ReplyError::Unexpected(_))
        ));
        let refused = br#"{"error":{"code":404,"description":"no such room lg3"}}"#;
        assert_eq!(
            check_reply(refused, 3),
            Err(ReplyError::Refused {
                code: 404,
                description: "no such room lg3".to_string()
            })
        );
        for junk in [&b"not json"[..], b"[]", b"{}", br#"{"error":"x"}"#, b""] {
            assert!(
                matches!(check_reply(junk, 3), Err(ReplyError::Unexpected(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn create_tolerates_exists_only() {
        let made = br#"{"room":"lg0","private":false,"limit":null}"#;
        assert_eq!(check_create(made, 0), Ok(Created::New));
        let exists = br#"{"error":{"code":409,"description":"room lg0 exists"}}"#;
        assert_eq!(check_create(exists, 0), Ok(Created::Existed));
        let unauth = br#"{"error":{"code":401,"description":"no user"}}"#;
        assert!(matches!(
            check_create(unauth, 0),
            Err(ReplyError::Refused { code: 401, .. })
        ));
        let full = br#"{"error":{"code":429,"description":"too many rooms"}}"#;
        assert!(check_create(full, 0).is_err());
    }
}
