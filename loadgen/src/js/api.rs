//! The JetStream API as the load generator speaks it: request subjects and bodies, and the
//! few fields read back from the answers (nats-server 2.9's shapes, docs/streams.md).
//!
//! Pure code: no sockets, no clock. Frames go through `net::proto`; only the JSON bodies
//! (and the status line of a status message's header block) are read here.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::js::Storage;

/// An error object from a JetStream answer: `{"error":{"code","err_code","description"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize, thiserror::Error)]
#[error("{code}/{err_code} {description}")]
pub struct ApiError {
    /// The HTTP-like status (400, 404, 500, 503, …).
    #[serde(default)]
    pub code: u16,
    /// JetStream's own error code (10059 stream not found, …).
    #[serde(default)]
    pub err_code: u32,
    /// The server's description.
    #[serde(default)]
    pub description: String,
}

/// What a JetStream API request came back with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnswerError {
    /// The answer carried an error object.
    #[error("{0}")]
    Refused(ApiError),
    /// The answer was not a JSON object.
    #[error("unexpected answer {0}")]
    Unexpected(String),
}

/// `stream not found`: the stream has to be created.
pub const STREAM_NOT_FOUND: u32 = 10059;

/// `consumer not found`.
pub const CONSUMER_NOT_FOUND: u32 = 10014;

/// The answer to one publish to a stream's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubAck {
    /// Stored as sequence `seq` of the stream (`duplicate`: an earlier copy was).
    Stored {
        /// The stream sequence.
        seq: u64,
        /// `"duplicate":true`: de-duplicated, not stored again.
        duplicate: bool,
    },
    /// A JetStream error (`{"error":…}`).
    Refused(ApiError),
    /// A status message instead of a PubAck (503: no stream captured the subject).
    Status(u16),
    /// Neither.
    Unexpected(String),
}

impl PubAck {
    /// Reads the answer to a publish: `body` of a `MSG`, or an `HMSG` whose `headers`
    /// carry a status line (`NATS/1.0 503`).
    pub fn parse(headers: Option<&[u8]>, body: &[u8]) -> PubAck {
        if let Some(code) = headers.and_then(status_code) {
            return PubAck::Status(code);
        }
        #[derive(Deserialize)]
        struct Wire {
            seq: Option<u64>,
            #[serde(default)]
            duplicate: bool,
            error: Option<ApiError>,
        }
        match serde_json::from_slice::<Wire>(body) {
            Ok(Wire { error: Some(e), .. }) => PubAck::Refused(e),
            Ok(Wire {
                seq: Some(seq),
                duplicate,
                ..
            }) => PubAck::Stored { seq, duplicate },
            _ => PubAck::Unexpected(String::from_utf8_lossy(body).into_owned()),
        }
    }
}

/// The status code of a status message (`NATS/1.0 404 No Messages\r\n…`), if its header
/// block has one: nats-server answers pull requests and unanswered requests that way.
pub fn status_code(headers: &[u8]) -> Option<u16> {
    let line = headers.split(|&b| b == b'\r' || b == b'\n').next()?;
    let rest = line.strip_prefix(b"NATS/1.0")?;
    let code = rest
        .split(|&b| b == b' ' || b == b'\t')
        .find(|t| !t.is_empty())?;
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// Reads an API answer: the JSON object, or the error it carries.
pub fn answer(body: &[u8]) -> Result<Value, AnswerError> {
    let unexpected = || AnswerError::Unexpected(String::from_utf8_lossy(body).into_owned());
    let value: Value = serde_json::from_slice(body).map_err(|_| unexpected())?;
    if !value.is_object() {
        return Err(unexpected());
    }
    if let Some(err) = value.get("error") {
        return Err(serde_json::from_value::<ApiError>(err.clone())
            .map_or_else(|_| unexpected(), AnswerError::Refused));
    }
    Ok(value)
}

/// Whether an answer failed with JetStream error code `err_code`.
pub fn is_error(result: &Result<Value, AnswerError>, err_code: u32) -> bool {
    matches!(result, Err(AnswerError::Refused(e)) if e.err_code == err_code)
}

/// `$JS.API.STREAM.<op>.<stream>`.
pub fn stream_subject(op: &str, stream: &str) -> String {
    format!("$JS.API.STREAM.{op}.{stream}")
}

/// `$JS.API.CONSUMER.DURABLE.CREATE.<stream>.<durable>` (nats-server 2.9's durable create).
pub fn consumer_create_subject(stream: &str, durable: &str) -> String {
    format!("$JS.API.CONSUMER.DURABLE.CREATE.{stream}.{durable}")
}

/// `$JS.API.CONSUMER.<op>.<stream>.<consumer>` (`INFO`, `DELETE`).
pub fn consumer_subject(op: &str, stream: &str, consumer: &str) -> String {
    format!("$JS.API.CONSUMER.{op}.{stream}.{consumer}")
}

/// `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`: a pull request.
pub fn next_subject(stream: &str, consumer: &str) -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}")
}

/// The body of a `STREAM.CREATE`: limits retention, one replica, discard old, the stream's
/// subjects, its storage and a byte cap (a stream without one grows until memory runs out).
pub fn stream_config(name: &str, subjects: &str, storage: Storage, max_bytes: u64) -> Vec<u8> {
    let storage = match storage {
        Storage::File => "file",
        Storage::Memory => "memory",
    };
    json!({
        "name": name,
        "subjects": [subjects],
        "retention": "limits",
        "storage": storage,
        "max_bytes": max_bytes,
        "discard": "old",
        "num_replicas": 1,
    })
    .to_string()
    .into_bytes()
}

/// The body of a durable pull consumer's create: every message from the start, explicit
/// acks, `max_ack_pending` as given.
pub fn consumer_config(
    stream: &str,
    durable: &str,
    max_ack_pending: u64,
    ack_wait_ns: u64,
) -> Vec<u8> {
    json!({
        "stream_name": stream,
        "config": {
            "durable_name": durable,
            "deliver_policy": "all",
            "ack_policy": "explicit",
            "ack_wait": ack_wait_ns,
            "max_ack_pending": max_ack_pending,
            "replay_policy": "instant",
        }
    })
    .to_string()
    .into_bytes()
}

/// The body of a pull request for `batch` messages that expires after `expires_ns`.
pub fn next_request(batch: u64, expires_ns: u64) -> Vec<u8> {
    json!({ "batch": batch, "expires": expires_ns })
        .to_string()
        .into_bytes()
}

/// The figures of a `STREAM.INFO` answer the report keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamState {
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored (as the server accounts them).
    pub bytes: u64,
    /// First sequence stored.
    pub first_seq: u64,
    /// Last sequence stored.
    pub last_seq: u64,
}

impl StreamState {
    /// Reads `state` from a `STREAM.INFO` (or `STREAM.CREATE`) answer.
    pub fn from_info(info: &Value) -> Option<StreamState> {
        let state = info.get("state")?;
        let n = |k: &str| state.get(k).and_then(Value::as_u64);
        Some(StreamState {
            messages: n("messages")?,
            bytes: n("bytes").unwrap_or(0),
            first_seq: n("first_seq").unwrap_or(0),
            last_seq: n("last_seq").unwrap_or(0),
        })
    }
}

/// The figures of a `CONSUMER.INFO` answer the drain checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConsumerState {
    /// Stream sequence below which every message is acknowledged (`ack_floor.stream_seq`).
    pub ack_floor_stream_seq: u64,
    /// Delivered and not acknowledged yet.
    pub num_ack_pending: u64,
    /// Messages of the stream not delivered yet.
    pub num_pending: u64,
    /// Deliveries made again after `ack_wait`.
    pub num_redelivered: u64,
}

impl ConsumerState {
    /// Reads a `CONSUMER.INFO` answer.
    pub fn from_info(info: &Value) -> Option<ConsumerState> {
        let n = |p: &str| info.pointer(p).and_then(Value::as_u64);
        Some(ConsumerState {
            ack_floor_stream_seq: n("/ack_floor/stream_seq")?,
            num_ack_pending: n("/num_ack_pending").unwrap_or(0),
            num_pending: n("/num_pending").unwrap_or(0),
            num_redelivered: n("/num_redelivered").unwrap_or(0),
        })
    }
}

/// What an ack reply subject says about one delivery:
/// `$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>`
/// (nats-server 2.9; the fields are counted from the end, so a domain and an account hash
/// inserted after `ACK` change nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// How many times this message has been delivered (1 the first time).
    pub delivered: u64,
    /// Its stream sequence.
    pub stream_seq: u64,
}

impl Delivery {
    /// Reads an ack reply subject; `None` if it is not one.
    pub fn parse(reply: &[u8]) -> Option<Delivery> {
        let rest = reply.strip_prefix(b"$JS.ACK.")?;
        let tokens: Vec<&[u8]> = rest.split(|&b| b == b'.').collect();
        if tokens.len() < 7 {
            return None;
        }
        let num = |t: &[u8]| std::str::from_utf8(t).ok()?.parse::<u64>().ok();
        let at = tokens.len() - 5;
        Some(Delivery {
            delivered: num(tokens[at])?,
            stream_seq: num(tokens[at + 1])?,
        })
    }
}

/// The body of a positive acknowledgement.
pub const ACK: &[u8] = b"+ACK";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pub_acks_are_told_apart() {
        assert_eq!(
            PubAck::parse(None, br#"{"stream":"S","seq":7}"#),
            PubAck::Stored {
                seq: 7,
                duplicate: false
            }
        );
        assert_eq!(
            PubAck::parse(None, br#"{"stream":"S","seq":7,"duplicate":true}"#),
            PubAck::Stored {
                seq: 7,
                duplicate: true
            }
        );
        let err = br#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"S","seq":0}"#;
        assert_eq!(
            PubAck::parse(None, err),
            PubAck::Refused(ApiError {
                code: 503,
                err_code: 10077,
                description: "maximum messages exceeded".to_string()
            })
        );
        assert_eq!(
            PubAck::parse(Some(b"NATS/1.0 503\r\n\r\n"), b""),
            PubAck::Status(503)
        );
        for junk in [&b""[..], b"nope", b"{}", b"[1]"] {
            assert!(
                matches!(PubAck::parse(None, junk), PubAck::Unexpected(_)),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_code(b"NATS/1.0 404 No Messages\r\n\r\n"), Some(404));
        assert_eq!(
            status_code(b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 1\r\n\r\n"),
            Some(408)
        );
        assert_eq!(status_code(b"NATS/1.0 503\r\n\r\n"), Some(503));
        assert_eq!(status_code(b"NATS/1.0\r\nX: 1\r\n\r\n"), None);
        assert_eq!(status_code(b"HTTP/1.1 200\r\n"), None);
    }

    #[test]
    fn answers_and_errors() {
        let ok =
            answer(br#"{"type":"x","state":{"messages":3,"bytes":99,"first_seq":1,"last_seq":3}}"#)
                .unwrap();
        assert_eq!(
            StreamState::from_info(&ok),
            Some(StreamState {
                messages: 3,
                bytes: 99,
                first_seq: 1,
                last_seq: 3
            })
        );
        let missing = answer(
            br#"{"type":"x","error":{"code":404,"err_code":10059,"description":"stream not found"}}"#,
        );
        assert!(is_error(&missing, STREAM_NOT_FOUND));
        assert!(!is_error(&missing, CONSUMER_NOT_FOUND));
        assert_eq!(
            missing.unwrap_err().to_string(),
            "404/10059 stream not found"
        );
        assert!(matches!(answer(b"[]"), Err(AnswerError::Unexpected(_))));
        assert!(matches!(
            answer(br#"{"error":"x"}"#),
            Err(AnswerError::Unexpected(_))
        ));
    }

    #[test]
    fn consumer_info() {
        let info = answer(
            br#"{"ack_floor":{"consumer_seq":5,"stream_seq":5},"num_ack_pending":0,"num_pending":2,"num_redelivered":1}"#,
        )
        .unwrap();
        assert_eq!(
            ConsumerState::from_info(&info),
            Some(ConsumerState {
                ack_floor_stream_seq: 5,
                num_ack_pending: 0,
                num_pending: 2,
                num_redelivered: 1
            })
        );
    }

    #[test]
    fn ack_subjects() {
        assert_eq!(
            Delivery::parse(b"$JS.ACK.LOADGEN.lg.1.42.40.1700000000000000000.9"),
            Some(Delivery {
                delivered: 1,
                stream_seq: 42
            })
        );
        // With a domain and an account hash in front, the tail is the same.
        assert_eq!(
            Delivery::parse(b"$JS.ACK.dom.hash.LOADGEN.lg.2.43.41.1700000000000000000.9"),
            Some(Delivery {
                delivered: 2,
                stream_seq: 43
            })
        );
        assert_eq!(Delivery::parse(b"_INBOX.x.1"), None);
        assert_eq!(Delivery::parse(b"$JS.ACK.S.c.x.1.1.1.1"), None);
    }

    #[test]
    fn bodies_are_the_shapes_nats_server_reads() {
        let v: Value =
            serde_json::from_slice(&stream_config("S", "loadgen.>", Storage::Memory, 1024))
                .unwrap();
        assert_eq!(v["subjects"][0], "loadgen.>");
        assert_eq!(v["storage"], "memory");
        assert_eq!(v["max_bytes"], 1024);
        let v: Value = serde_json::from_slice(&consumer_config("S", "lg", 100, 30)).unwrap();
        assert_eq!(v["config"]["ack_policy"], "explicit");
        assert_eq!(v["config"]["durable_name"], "lg");
        let v: Value = serde_json::from_slice(&next_request(256, 1_000_000_000)).unwrap();
        assert_eq!(v["batch"], 256);
        assert_eq!(stream_subject("INFO", "S"), "$JS.API.STREAM.INFO.S");
        assert_eq!(
            consumer_create_subject("S", "lg"),
            "$JS.API.CONSUMER.DURABLE.CREATE.S.lg"
        );
        assert_eq!(next_subject("S", "lg"), "$JS.API.CONSUMER.MSG.NEXT.S.lg");
    }
}
